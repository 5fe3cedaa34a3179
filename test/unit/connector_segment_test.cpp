// kind "segment" (core/connectors/segment.cpp): messages go to /v1/batch as
// they are, segment changes as Engage's "Audience Entered/Exited" track
// calls, deletion notices are skipped; Basic auth with the write key; a 400
// for the batch is split to find the bad message.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/connectors/connector.hpp"
#include "core/error.hpp"
#include "test_support.hpp"

namespace cdp::connectors {
namespace {

using test::at;
using test::json;
using test::same_json;

const Connector& seg() { return *find("segment"); }
const Micros kNow = at("2026-12-03T12:00:00Z");

Config config() { return seg().check_config(json(R"({"write_key": "wk"})")); }

Mapping map(std::string_view message) { return seg().map(json(message), config(), kNow); }

TEST(SegmentConnector, ConfigNeedsAWriteKeyAndNothingElse) {
  EXPECT_EQ(config().at("write_key"), "wk");
  EXPECT_THROW(seg().check_config(json("{}")), Error);
  try {
    seg().check_config(json(R"({"write_key": "wk", "region": "eu"})"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), "region");
  }
  EXPECT_EQ(seg().secrets(config()), (std::vector<std::string>{"wk"}));
  EXPECT_EQ(seg().default_url(), "https://api.segment.io");
}

TEST(SegmentConnector, EventsGoAsTheyAre) {
  for (const char* m : {R"({"type":"track","event":"A","userId":"u","messageId":"m1"})",
                        R"({"type":"identify","anonymousId":"a","traits":{"x":1},"messageId":"m2"})",
                        R"({"type":"page","name":"P","userId":"u","messageId":"m3"})",
                        R"({"type":"screen","name":"S","userId":"u","messageId":"m4"})",
                        R"({"type":"group","groupId":"g","userId":"u","messageId":"m5"})",
                        R"({"type":"alias","previousId":"a","userId":"u","messageId":"m6"})"}) {
    Mapping r = map(m);
    ASSERT_EQ(r.kind, Mapping::Kind::Items) << m;
    ASSERT_EQ(r.items.size(), 1u);
    EXPECT_TRUE(same_json(r.items[0].json, m)) << r.items[0].json;
  }
}

TEST(SegmentConnector, SegmentChangesAreAudienceTracks) {
  Mapping r = map(R"({"type":"segment_enter","segment":"vip","segment_id":3,"profile_id":9,"userId":"u",
                      "messageId":"cdp-outbox-7","at":"2026-12-03T11:00:00+00:00","traits":{"plan":"pro"}})");
  ASSERT_EQ(r.kind, Mapping::Kind::Items);
  EXPECT_TRUE(same_json(r.items[0].json, R"({"type":"track","event":"Audience Entered",
      "properties":{"audience_key":"vip","segment_id":3,"entered":true},"userId":"u","messageId":"cdp-outbox-7",
      "timestamp":"2026-12-03T11:00:00+00:00",
      "context":{"traits":{"plan":"pro"},"personas":{"computation_key":"vip","computation_class":"audience"}}})"))
      << r.items[0].json;
  r = map(R"({"type":"segment_exit","segment":"vip","userId":"u","messageId":"x"})");
  EXPECT_NE(r.items[0].json.find("\"Audience Exited\""), std::string::npos);
  EXPECT_NE(r.items[0].json.find("\"exited\":true"), std::string::npos);
}

TEST(SegmentConnector, DeletionsAreSkippedAndAnonymousNobodiesRefused) {
  EXPECT_EQ(map(R"({"type":"delete","userId":"u","userIds":["u"],"messageId":"e"})").kind, Mapping::Kind::Skip);
  Mapping r = map(R"({"type":"track","event":"A","messageId":"m"})");
  EXPECT_EQ(r.kind, Mapping::Kind::Reject);
  EXPECT_EQ(r.reason, "userId: a message needs a userId or an anonymousId");
}

TEST(SegmentConnector, OneBatchRequestWithBasicAuth) {
  Item a{R"({"n":1})", "", "", ""}, b{R"({"n":2})", "", "", ""};
  Request r = seg().build({&a, &b}, config(), kNow);
  EXPECT_EQ(r.path, "/v1/batch");
  EXPECT_EQ(r.headers, (std::vector<std::string>{"Content-Type: application/json", "Authorization: Basic d2s6"}));
  EXPECT_TRUE(same_json(r.body, R"({"batch":[{"n":1},{"n":2}],"sentAt":"2026-12-03T12:00:00.000000Z"})")) << r.body;
  Caps c = seg().caps();
  EXPECT_EQ(c.max_bytes, 500u * 1024);
  EXPECT_EQ(c.max_item_bytes, 32u * 1024);
}

TEST(SegmentConnector, AnswersByStatusAndA400SplitsTheBatch) {
  Item a{"{}", "", "", ""}, b{"{}", "", "", ""};
  EXPECT_EQ(seg().read({200, "{\"success\":true}", "", "", ""}, {&a, &b}, kNow).whole.verdict, Verdict::Delivered);
  Answer r = seg().read({400, "bad", "", "", ""}, {&a, &b}, kNow);
  EXPECT_TRUE(r.split);
  EXPECT_FALSE(r.outage);
  EXPECT_FALSE(seg().read({400, "bad", "", "", ""}, {&a}, kNow).split);
  EXPECT_EQ(seg().read({400, "bad", "", "", ""}, {&a}, kNow).whole.verdict, Verdict::Dead);
  r = seg().read({503, "", "", "", ""}, {&a}, kNow);
  EXPECT_EQ(r.whole.verdict, Verdict::Retry);
  EXPECT_TRUE(r.outage);
  EXPECT_EQ(seg().read({401, "no", "", "", ""}, {&a}, kNow).whole.verdict, Verdict::Dead);
  EXPECT_EQ(seg().read({0, "", "", "", "Connection refused"}, {&a}, kNow).whole.reason, "Connection refused");
}

}  // namespace
}  // namespace cdp::connectors
