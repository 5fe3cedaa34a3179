// A delivery round for a built-in kind (core/delivery_round.hpp with a
// connectors::Connector): rows mapped, skipped or refused at claim; requests
// cut by the kind's caps (items per array, bytes, groups); the answer read item
// by item (dead, resent at once, throttled per user, retried together), and a
// batch the API refuses whole split in halves. A fake kind stands in for the
// real ones, which have tests of their own (connector_*_test.cpp).
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/delivery_round.hpp"
#include "core/error.hpp"
#include "core/json_util.hpp"
#include "test_support.hpp"

namespace cdp::delivery {
namespace {

using connectors::Verdict;
using test::at;

constexpr Micros kSecond = 1000000;
const Micros kNow = at("2025-03-01T12:00:00Z");

// Messages {"event", "group", "array", "items"}: "skip" and "bad" events are
// skipped and refused. Answers: 200 all delivered; 207 with a body of
// "<verdict letter><item index>" words (D dead, N retry now, T throttled);
// 400 refuses the whole batch (split); others by status.
class Fake final : public connectors::Connector {
 public:
  std::string_view kind() const override { return "fake"; }
  std::string_view default_url() const override { return ""; }
  connectors::Caps caps() const override { return {3, 1024 + 200, 60, 0}; }
  connectors::Config check_config(const rapidjson::Value&) const override { return {}; }
  std::vector<std::string> secrets(const connectors::Config&) const override { return {}; }
  connectors::Mapping map(const rapidjson::Value& m, const connectors::Config&, Micros) const override {
    std::string e = connectors::text(m, "event");
    if (e == "skip") return connectors::Mapping::skip("no counterpart");
    if (e == "bad") return connectors::Mapping::reject("event: bad");
    connectors::Mapping out;
    const rapidjson::Value* n = connectors::at(m, "items");
    for (int i = 0; i < (n ? n->GetInt() : 1); i++)
      out.items.push_back({R"({"e":")" + e + "\"}", connectors::text(m, "group"), connectors::text(m, "array"), e});
    return out;
  }
  connectors::Request build(const std::vector<const connectors::Item*>& items, const connectors::Config&,
                            Micros) const override {
    connectors::Request r{"/fake", {"Content-Type: application/x-fake"}, ""};
    for (auto* i : items) r.body += i->json;
    return r;
  }
  connectors::Answer read(const connectors::Response& r, const std::vector<const connectors::Item*>& items,
                          Micros) const override {
    if (r.status != 207) {
      connectors::Answer a = connectors::by_status(r);
      a.split = r.status == 400;
      return a;
    }
    connectors::Answer a;
    a.items.assign(items.size(), {});
    std::istringstream words(r.body);
    for (std::string w; words >> w;) {
      auto& v = a.items.at(std::stoul(w.substr(1)));
      v.verdict = w[0] == 'D' ? Verdict::Dead : w[0] == 'N' ? Verdict::RetryNow : Verdict::Throttled;
      v.reason = "item " + w.substr(1);
      v.delay = 30 * kSecond;
    }
    return a;
  }
};
const Fake fake;

Options fake_options(int max_events = 3, int max_wait_ms = 0) {
  Options o;
  o.connector = &fake;
  o.max_events = max_events;
  o.max_wait_ms = max_wait_ms;
  return o;
}

QueuedRow row(int64_t id, std::string event, std::string extra = "", std::string key = "") {
  QueuedRow r;
  r.id = id;
  r.profile = id;
  r.dest = 7;
  r.payload = R"({"type":"track","event":")" + event + "\"" + extra + "}";
  r.batch_key = std::move(key);
  r.created = kNow - 10 * kSecond;
  return r;
}

ClaimPlan claim(const Options& o, const std::vector<QueuedRow>& rows) {
  return plan_claim(rows, {{7, {&o, 100}}}, 100, kNow);
}

TEST(DeliveryKinds, SkippedRefusedAndFailedRowsSettleAtClaim) {
  Options o = fake_options();
  std::vector<QueuedRow> rows{row(1, "a"), row(2, "skip"), row(3, "bad"), row(4, "b")};
  rows.push_back(row(5, "c"));
  rows.back().fate = QueuedRow::Fate::Fail;
  rows.back().why = "transformation failed: x";
  ClaimPlan p = claim(o, rows);
  ASSERT_EQ(p.requests.size(), 1u);
  EXPECT_EQ(p.requests[0].rows, (std::vector<size_t>{0, 3}));
  EXPECT_EQ(p.requests[0].path, "/fake");
  EXPECT_EQ(p.requests[0].body, R"({"e":"a"}{"e":"b"})");
  EXPECT_EQ(p.requests[0].key, "cdp-1-2");
  ASSERT_EQ(p.settled.size(), 3u);
  EXPECT_FALSE(p.settled[0].dead);
  EXPECT_EQ(p.settled[0].why, "no counterpart");
  EXPECT_TRUE(p.settled[1].dead);
  EXPECT_EQ(p.settled[1].why, "event: bad");
  EXPECT_EQ(p.settled[2].why, "transformation failed: x");
}

TEST(DeliveryKinds, RequestsAreCutPerGroupAndPerArray) {
  Options o = fake_options(10);
  std::vector<QueuedRow> rows{row(1, "a", R"(,"group":"g1")"), row(2, "a", R"(,"group":"g2")"),
                              row(3, "a", R"(,"group":"g1")"), row(4, "a", R"(,"array":"x","items":2)"),
                              row(5, "a", R"(,"array":"x","items":2)"), row(6, "a", R"(,"array":"y")")};
  ClaimPlan p = claim(o, rows);
  std::vector<std::vector<size_t>> got;
  for (auto& r : p.requests) got.push_back(r.rows);
  // g1 (rows 1, 3); g2; then "": row 4 (2 x items) alone, since row 5 would make 4 x items; rows
  // 5 and 6 (y) together. Rows keep their order: a later row never jumps a request.
  EXPECT_EQ(got, (std::vector<std::vector<size_t>>{{0, 2}, {1}, {3}, {4, 5}}));
  EXPECT_EQ(p.requests[3].item_rows, (std::vector<size_t>{0, 0, 1}));  // item -> position in rows
}

TEST(DeliveryKinds, BytesCapARequestAndARowThatCanNeverFitIsDead) {
  Options o = fake_options(100);
  std::vector<QueuedRow> rows;
  for (int i = 1; i <= 30; i++) rows.push_back(row(i, "abcdefghij"));  // 19 bytes an item, 20 with the comma
  rows.push_back(row(31, std::string(70, 'z')));                        // over the 60-byte item limit
  ClaimPlan p = claim(o, rows);
  ASSERT_GE(p.requests.size(), 3u);
  for (auto& r : p.requests) EXPECT_LE(r.body.size() + 1024 + r.items.size(), 1024u + 200u + 30u);
  ASSERT_EQ(p.settled.size(), 1u);
  EXPECT_TRUE(p.settled[0].dead);
  EXPECT_NE(p.settled[0].why.find("limit of 60 bytes a message"), std::string::npos) << p.settled[0].why;
}

TEST(DeliveryKinds, AResendWhoseRowsWereSettledGetsAKeyForWhatIsLeft) {
  Options o = fake_options();
  std::vector<QueuedRow> rows{row(4, "a", "", "cdp-4-3"), row(5, "bad", "", "cdp-4-3"), row(6, "b", "", "cdp-4-3")};
  ClaimPlan p = claim(o, rows);
  ASSERT_EQ(p.requests.size(), 1u);
  EXPECT_EQ(p.requests[0].key, "cdp-4-r-2");
  EXPECT_EQ(p.key_ids, (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(p.keys, (std::vector<std::string>{"cdp-4-r-2", "cdp-4-r-2"}));
}

Answer answer(const ClaimPlan& p, const std::vector<QueuedRow>& rows, long status, std::string body) {
  const PlannedRequest& r = p.requests.at(0);
  Answer a;
  a.dest = 7;
  for (size_t k : r.rows) {
    a.ids.push_back(rows[k].id);
    a.created.push_back(rows[k].created);
  }
  a.status = status;
  a.response = std::move(body);
  a.items = r.items;
  a.item_rows = r.item_rows;
  return a;
}

RecordWrites record(const Options& o, const Answer& a) {
  return plan_record({a}, [&](int) { return &o; }, kNow, [] { return 0.5; });
}

TEST(DeliveryKinds, ItemVerdictsDecideEachRow) {
  Options o = fake_options(5);
  std::vector<QueuedRow> rows{row(1, "a"), row(2, "b", R"(,"items":2)"), row(3, "c", R"(,"array":"x")"),
                              row(4, "d", R"(,"array":"y")")};
  ClaimPlan p = claim(o, rows);
  // items: 0 (row 1), 1 and 2 (row 2), 3 (row 3), 4 (row 4)
  RecordWrites w = record(o, answer(p, rows, 207, "D2 N3 T4"));
  EXPECT_EQ(w.delivered, (std::vector<int64_t>{1}));
  ASSERT_EQ(w.dead.size(), 1u);
  EXPECT_EQ(w.dead[0].id, 2);  // one of its two items was refused
  EXPECT_EQ(w.dead[0].error, "item 2");
  ASSERT_EQ(w.rekeys.size(), 2u);
  EXPECT_EQ(w.rekeys[0].id, 3);  // resent at once, batched afresh, not an attempt
  EXPECT_EQ(w.rekeys[0].at, kNow);
  EXPECT_EQ(w.rekeys[0].key, "");
  EXPECT_FALSE(w.rekeys[0].attempt);
  EXPECT_EQ(w.rekeys[1].id, 4);  // throttled: waits, the destination is not paused
  EXPECT_EQ(w.rekeys[1].at, kNow + 30 * kSecond);
  EXPECT_TRUE(w.retries.empty());
  EXPECT_FALSE(w.per_destination[7].failure);
  EXPECT_TRUE(w.per_destination[7].success);
}

TEST(DeliveryKinds, ABatchRefusedWholeIsSplitInHalves) {
  Options o = fake_options(5);
  std::vector<QueuedRow> rows;
  for (int i = 1; i <= 5; i++) rows.push_back(row(i, "e", R"(,"array":")" + std::to_string(i) + R"(")"));
  RecordWrites w = record(o, answer(claim(o, rows), rows, 400, "bad batch"));
  ASSERT_EQ(w.rekeys.size(), 5u);
  std::vector<std::string> keys;
  for (auto& k : w.rekeys) {
    keys.push_back(k.key);
    EXPECT_EQ(k.at, kNow);
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"cdp-1-s-2", "cdp-1-s-2", "cdp-3-s-3", "cdp-3-s-3", "cdp-3-s-3"}));
  EXPECT_TRUE(w.dead.empty());
  EXPECT_FALSE(w.per_destination[7].failure);  // a refused payload is not an outage
  // Alone, the bad one is dead.
  std::vector<QueuedRow> one{row(3, "c", "", "cdp-3-s-1")};
  w = record(o, answer(claim(o, one), one, 400, "bad batch"));
  ASSERT_EQ(w.dead.size(), 1u);
  EXPECT_EQ(w.dead[0].error, "HTTP 400: bad batch");
}

TEST(DeliveryKinds, AnOutageRetriesTheRowsTogetherUnderTheirKey) {
  Options o = fake_options(5);
  std::vector<QueuedRow> rows{row(1, "a"), row(2, "b")};
  RecordWrites w = record(o, answer(claim(o, rows), rows, 503, "busy"));
  ASSERT_EQ(w.retries.size(), 2u);
  EXPECT_TRUE(w.rekeys.empty());
  EXPECT_GT(w.retries[0].at, kNow);
  EXPECT_TRUE(w.per_destination[7].failure);
}

TEST(DeliveryKinds, OptionsTakeAKindItsConfigAndItsCaps) {
  Options o = Options::parse(R"({"kind": "segment", "config": {"write_key": "k"}})");
  ASSERT_NE(o.connector, nullptr);
  EXPECT_EQ(o.connector->kind(), "segment");
  EXPECT_EQ(o.max_events, o.connector->caps().max_items);  // batches as the API allows by default
  EXPECT_EQ(o.config.at("write_key"), "k");
  auto error = [](std::string_view json) {
    try {
      Options::parse(json);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error(R"({"kind": "segment"})"), "config.write_key: is required");
  EXPECT_EQ(error(R"({"kind": "segment", "config": {"write_key": "k", "x": "y"}})"),
            "config.x: unknown key: this kind's config has write_key");
  EXPECT_EQ(error(R"({"kind": "nope"})").rfind("kind: must be one of webhook, segment, ga4", 0), 0u);
  EXPECT_EQ(error(R"({"config": {}})").rfind("config: only a built-in kind takes a config", 0), 0u);
  EXPECT_EQ(error(R"({"kind": "segment", "config": {"write_key": "k"}, "batch": {"max_events": 2501}})"),
            "batch.max_events: must be a whole number from 1 to 2500");
  EXPECT_EQ(error(R"({"transform": "reshape"})"),
            "transform: must be a schema-qualified function name such as \"public.reshape\"");
  EXPECT_EQ(error(R"({"transform_timeout_ms": 5})"), "transform_timeout_ms: must be a whole number from 10 to 60000");
  EXPECT_EQ(error(R"({"rate_limit": {"requests_per_second": 0}})"),
            "rate_limit.requests_per_second: must be a whole number from 1 to 100000");
  EXPECT_EQ(Options::parse(R"({"transform": "public.reshape"})").transform, "public.reshape");
}

}  // namespace
}  // namespace cdp::delivery
