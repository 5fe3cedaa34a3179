// Kind "mixpanel" (core/connectors/mixpanel.cpp): its config, the mapping of
// every message type to an Import API record (or a skip or a rejection with
// the rule), the request build() makes, and read() of every answer /import
// gives: 200, a strict-mode 400 that lists failed records, a 400 that lists
// none, 401/403, 413, 429 and 5xx.
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "core/connectors/connector.hpp"
#include "core/delivery.hpp"
#include "core/error.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using connectors::Answer;
using connectors::Config;
using connectors::Connector;
using connectors::Item;
using connectors::Mapping;
using connectors::Response;
using connectors::Verdict;
using test::at;
using test::json;
using test::same_json;

constexpr Micros kSecond = 1000000;
constexpr Micros kHour = 3600 * kSecond;
const Micros kNow = at("2025-03-10T12:00:05Z");
constexpr const char* kT0ms = "1741608000000";  // 2025-03-10T12:00:00Z in Unix milliseconds

const Connector& mixpanel() { return *connectors::find("mixpanel"); }

const char* const kConfig =
    R"({"project_id": "3141592", "service_account_username": "cdp.9f1c.mp-service-account",
        "service_account_secret": "s3cr3t"})";

Config config() { return mixpanel().check_config(json(kConfig)); }

// The field check_config refuses, or "<no error>".
std::string config_error(std::string_view options) {
  try {
    mixpanel().check_config(json(options));
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput) << e.what();
    return e.field();
  }
  return "<no error>";
}

Mapping map(std::string_view message, Micros now = kNow) { return mixpanel().map(json(message), config(), now); }

// The one record a message maps to, as text.
std::string record(std::string_view message) {
  Mapping m = map(message);
  EXPECT_EQ(m.kind, Mapping::Kind::Items) << m.reason;
  EXPECT_EQ(m.items.size(), 1u);
  return m.items.empty() ? "{}" : m.items[0].json;
}

// The records' properties.
rapidjson::Document properties(std::string_view message) {
  rapidjson::Document d = json(record(message));
  rapidjson::Document p;
  if (d.IsObject() && d.HasMember("properties")) p.CopyFrom(d["properties"], p.GetAllocator());
  return p;
}

std::string reject_reason(std::string_view message, Micros now = kNow) {
  Mapping m = map(message, now);
  EXPECT_EQ(m.kind, Mapping::Kind::Reject) << message;
  return m.reason;
}

std::string skip_reason(std::string_view message) {
  Mapping m = map(message);
  EXPECT_EQ(m.kind, Mapping::Kind::Skip) << message;
  return m.reason;
}

// A track call; `extra` (", \"key\": value, ...") comes first, so that its keys
// win over the same keys after them (the first of two members is the one read).
std::string track(std::string_view extra = "") {
  std::string base = R"("type": "track", "event": "Order Completed", "userId": "u-42", "anonymousId": "a-7f3c",
                         "messageId": "ajs-3f1c9d0e", "timestamp": "2025-03-10T12:00:00+00:00")";
  if (extra.empty()) return "{" + base + "}";
  return "{" + std::string(extra.substr(1)) + ", " + base + "}";
}

// Items and the pointers build() and read() take.
struct Batch {
  std::vector<Item> items;
  std::vector<const Item*> ptrs() const {
    std::vector<const Item*> out;
    for (const Item& i : items) out.push_back(&i);
    return out;
  }
};

Batch batch(size_t n) {
  Batch b;
  for (size_t i = 0; i < n; i++) {
    Mapping m = map(track(R"(, "messageId": "m-)" + std::to_string(i) + "\""));
    b.items.push_back(m.items.at(0));
  }
  return b;
}

Answer read(long status, std::string body, size_t n = 3, std::string retry_after = "") {
  Batch b = batch(n);
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.retry_after = std::move(retry_after);
  return mixpanel().read(r, b.ptrs(), kNow);
}

// ---------------------------------------------------------------------------
// The kind and its config
// ---------------------------------------------------------------------------

TEST(MixpanelKind, RegisteredWithItsDefaultUrlAndCaps) {
  ASSERT_NE(connectors::find("mixpanel"), nullptr);
  EXPECT_EQ(mixpanel().kind(), "mixpanel");
  EXPECT_EQ(mixpanel().default_url(), "https://api.mixpanel.com");
  connectors::Caps caps = mixpanel().caps();
  EXPECT_EQ(caps.max_items, 2000);
  EXPECT_EQ(caps.max_bytes, 10u * 1000 * 1000);
  EXPECT_EQ(caps.max_item_bytes, 1000u * 1000 - 1);
  EXPECT_EQ(caps.requests_per_second, 0);
  EXPECT_NE(connectors::kinds().find("mixpanel"), std::string::npos);
}

TEST(MixpanelConfig, TheThreeKeysAreRead) {
  Config c = config();
  EXPECT_EQ(c.at("project_id"), "3141592");
  EXPECT_EQ(c.at("service_account_username"), "cdp.9f1c.mp-service-account");
  EXPECT_EQ(c.at("service_account_secret"), "s3cr3t");
  EXPECT_EQ(mixpanel().secrets(c), std::vector<std::string>{"s3cr3t"});
}

TEST(MixpanelConfig, EachKeyIsRequired) {
  EXPECT_EQ(config_error(R"({"service_account_username": "u", "service_account_secret": "s"})"), "project_id");
  EXPECT_EQ(config_error(R"({"project_id": "1", "service_account_secret": "s"})"), "service_account_username");
  EXPECT_EQ(config_error(R"({"project_id": "1", "service_account_username": "u"})"), "service_account_secret");
  EXPECT_EQ(config_error(R"({"project_id": "", "service_account_username": "u", "service_account_secret": "s"})"),
            "project_id");
  EXPECT_EQ(config_error("{}"), "project_id");
}

TEST(MixpanelConfig, UnknownKeysAndBadValuesRefused) {
  EXPECT_EQ(config_error(R"({"project_id": "1", "service_account_username": "u", "service_account_secret": "s",
                             "region": "eu"})"),
            "region");
  EXPECT_EQ(config_error(R"({"project_id": "1", "service_account_username": "u", "service_account_secret": "s",
                             "token": "t"})"),
            "token");
  EXPECT_EQ(config_error(R"({"project_id": "31a", "service_account_username": "u", "service_account_secret": "s"})"),
            "project_id");
  EXPECT_EQ(config_error(R"({"project_id": 3141592, "service_account_username": "u", "service_account_secret": "s"})"),
            "project_id");
  EXPECT_EQ(config_error(R"({"project_id": "1", "service_account_username": "u", "service_account_secret": "a\nb"})"),
            "service_account_secret");
  EXPECT_EQ(config_error("[]"), "");
}

// ---------------------------------------------------------------------------
// map(): events
// ---------------------------------------------------------------------------

TEST(MixpanelMap, TrackBecomesAnEventWithTheRequiredProperties) {
  std::string r = record(track(R"(, "properties": {"total": 129.9, "currency": "EUR"},
      "context": {"ip": "203.0.113.7", "page": {"url": "https://shop.example/cart", "referrer": "https://a.example/"},
                  "os": {"name": "iOS", "version": "17.2"}, "device": {"model": "iPhone15,2", "manufacturer": "Apple"},
                  "app": {"version": "4.1.0", "build": "410"}, "locale": "de-DE",
                  "campaign": {"source": "news", "medium": "email", "name": "spring"},
                  "library": {"name": "analytics.js", "version": "5.2.0"}, "userAgent": "Mozilla/5.0"})"));
  EXPECT_TRUE(same_json(r, std::string(R"({"event": "Order Completed", "properties": {
      "total": 129.9, "currency": "EUR",
      "time": )") + kT0ms + R"(, "distinct_id": "u-42", "$insert_id": "ajs-3f1c9d0e",
      "$user_id": "u-42", "$device_id": "a-7f3c", "mp_lib": "cdp",
      "ip": "203.0.113.7", "$current_url": "https://shop.example/cart", "$referrer": "https://a.example/",
      "$os": "iOS", "$os_version": "17.2", "$model": "iPhone15,2", "$manufacturer": "Apple",
      "$app_version_string": "4.1.0", "$app_build_number": "410", "$locale": "de-DE",
      "utm_source": "news", "utm_medium": "email", "utm_campaign": "spring"}})"))
      << r;
}

TEST(MixpanelMap, AnonymousEventsUseTheAnonymousIdAsDistinctId) {
  rapidjson::Document p = properties(R"({"type": "track", "event": "Signed Up", "anonymousId": "a-7f3c",
                                         "messageId": "m1", "timestamp": "2025-03-10T12:00:00Z"})");
  EXPECT_STREQ(p["distinct_id"].GetString(), "a-7f3c");
  EXPECT_STREQ(p["$device_id"].GetString(), "a-7f3c");
  EXPECT_FALSE(p.HasMember("$user_id"));
}

TEST(MixpanelMap, PropertiesOverrideContextAndRequiredFieldsOverrideProperties) {
  rapidjson::Document p = properties(track(R"(, "context": {"ip": "203.0.113.7"},
      "properties": {"ip": "198.51.100.1", "time": 5, "distinct_id": "someone-else", "$insert_id": "x", "mp_lib": "web"})"));
  EXPECT_STREQ(p["ip"].GetString(), "198.51.100.1");
  EXPECT_EQ(p["time"].GetInt64(), 1741608000000);
  EXPECT_STREQ(p["distinct_id"].GetString(), "u-42");
  EXPECT_STREQ(p["$insert_id"].GetString(), "ajs-3f1c9d0e");
  EXPECT_STREQ(p["mp_lib"].GetString(), "cdp");
}

TEST(MixpanelMap, TimeIsUnixMillisecondsOfTheTimestamp) {
  rapidjson::Document p = properties(track().replace(track().find("2025-03-10T12:00:00+00:00"), 25,
                                                     "2025-03-10T13:00:00.25+01:00"));
  EXPECT_EQ(p["time"].GetInt64(), 1741608000250);
}

TEST(MixpanelMap, InsertIdIsTheMessageIdWhenMixpanelTakesIt) {
  EXPECT_STREQ(properties(track(R"(, "messageId": "0f8e3c2a-4b1d-4c5e-9a7b-123456789abc")"))["$insert_id"].GetString(),
               "0f8e3c2a-4b1d-4c5e-9a7b-123456789abc");  // 36 characters
  EXPECT_STREQ(properties(track(R"(, "messageId": "cdp-outbox-255")"))["$insert_id"].GetString(), "cdp-outbox-255");
}

TEST(MixpanelMap, OtherMessageIdsBecomeAStableDigest) {
  for (const char* id : {"cdp-erase-8e9c6397-125f-4d6e-b6f5-fb9d7186c0dc",  // over 36 characters
                         "ajs_3f1c9d0e", "order:1001", "null"}) {
    std::string message = track(std::string(R"(, "messageId": ")") + id + "\"");
    std::string got = properties(message)["$insert_id"].GetString();
    EXPECT_EQ(got, delivery::sha256_hex(id).substr(0, 32)) << id;
    EXPECT_EQ(got, properties(message)["$insert_id"].GetString()) << "the same in every attempt";
  }
}

TEST(MixpanelMap, PageIsViewedNameOrLoadedAPage) {
  std::string r = record(R"({"type": "page", "name": "Pricing", "category": "Docs", "userId": "u-42",
      "messageId": "p1", "timestamp": "2025-03-10T12:00:00Z",
      "properties": {"title": "Pricing | Initech", "url": "https://initech.example/pricing"},
      "context": {"page": {"url": "https://initech.example/pricing"}}})");
  EXPECT_TRUE(same_json(r, std::string(R"({"event": "Viewed Pricing", "properties": {
      "title": "Pricing | Initech", "url": "https://initech.example/pricing", "name": "Pricing", "category": "Docs",
      "$current_url": "https://initech.example/pricing",
      "time": )") + kT0ms + R"(, "distinct_id": "u-42", "$insert_id": "p1", "$user_id": "u-42", "mp_lib": "cdp"}})"))
      << r;
  rapidjson::Document unnamed = json(record(R"({"type": "page", "userId": "u-42", "messageId": "p2",
                                                "timestamp": "2025-03-10T12:00:00Z"})"));
  EXPECT_STREQ(unnamed["event"].GetString(), "Loaded a Page");
}

TEST(MixpanelMap, ScreenIsViewedNameOrLoadedAScreen) {
  rapidjson::Document named = json(record(R"({"type": "screen", "name": "Cart", "anonymousId": "a-1",
      "messageId": "s1", "timestamp": "2025-03-10T12:00:00Z", "context": {"os": {"name": "Android"}}})"));
  EXPECT_STREQ(named["event"].GetString(), "Viewed Cart");
  EXPECT_STREQ(named["properties"]["name"].GetString(), "Cart");
  EXPECT_STREQ(named["properties"]["$os"].GetString(), "Android");
  rapidjson::Document unnamed = json(record(R"({"type": "screen", "anonymousId": "a-1", "messageId": "s2",
                                                "timestamp": "2025-03-10T12:00:00Z"})"));
  EXPECT_STREQ(unnamed["event"].GetString(), "Loaded a Screen");
}

TEST(MixpanelMap, SegmentChangesBecomeAudienceEvents) {
  std::string enter = record(R"({"type": "segment_enter", "segment": "vip", "segment_id": 3, "profile_id": 1,
      "at": "2025-03-10T12:00:00+00:00", "messageId": "cdp-outbox-255", "userId": "u-42",
      "traits": {"email": "ada@example.com"}})");
  EXPECT_TRUE(same_json(enter, std::string(R"({"event": "Audience Entered", "properties": {
      "audience_key": "vip", "segment_id": 3, "entered": true,
      "time": )") + kT0ms + R"(, "distinct_id": "u-42", "$insert_id": "cdp-outbox-255", "$user_id": "u-42",
      "mp_lib": "cdp"}})"))
      << enter;
  rapidjson::Document exit = json(record(R"({"type": "segment_exit", "segment": "vip", "segment_id": 3,
      "profile_id": 1, "at": "2025-03-10T12:00:00Z", "messageId": "cdp-outbox-256", "userId": "u-42"})"));
  EXPECT_STREQ(exit["event"].GetString(), "Audience Exited");
  EXPECT_TRUE(exit["properties"]["exited"].GetBool());
  EXPECT_FALSE(exit["properties"].HasMember("entered"));
}

TEST(MixpanelMap, ASegmentChangeOfAProfileWithoutUserIdIsRejected) {
  EXPECT_EQ(reject_reason(R"({"type": "segment_enter", "segment": "vip", "segment_id": 3, "profile_id": 1,
                               "at": "2025-03-10T12:00:00Z", "messageId": "cdp-outbox-9"})"),
            "userId: Mixpanel needs a distinct_id: the message has neither userId nor anonymousId");
}

TEST(MixpanelMap, IdentifyGroupAliasAndDeleteAreSkipped) {
  EXPECT_NE(skip_reason(R"({"type": "identify", "userId": "u-42", "traits": {"plan": "pro"},
                             "timestamp": "2025-03-10T12:00:00Z"})")
                .find("Engage API"),
            std::string::npos);
  EXPECT_NE(skip_reason(R"({"type": "group", "userId": "u-42", "groupId": "g-1"})").find("Groups API"),
            std::string::npos);
  EXPECT_NE(skip_reason(R"({"type": "alias", "userId": "u-42", "previousId": "a-1"})").find("alias"),
            std::string::npos);
  EXPECT_NE(skip_reason(R"({"type": "delete", "userId": "u-42", "userIds": ["u-42"], "messageId": "cdp-erase-1",
                             "timestamp": "2025-03-10T12:00:00Z"})")
                .find("GDPR"),
            std::string::npos);
  EXPECT_NE(skip_reason(R"({"type": "bogus", "userId": "u-42"})").find("\"bogus\""), std::string::npos);
}

// ---------------------------------------------------------------------------
// map(): rejections, each naming the field and the rule
// ---------------------------------------------------------------------------

TEST(MixpanelReject, NoUserIdNorAnonymousId) {
  EXPECT_EQ(reject_reason(R"({"type": "track", "event": "X", "messageId": "m", "timestamp": "2025-03-10T12:00:00Z"})"),
            "userId: Mixpanel needs a distinct_id: the message has neither userId nor anonymousId");
}

TEST(MixpanelReject, PlaceholderDistinctIds) {
  for (const char* id : {"null", "Anonymous", "undefined", "00000000-0000-0000-0000-000000000000"})
    EXPECT_EQ(reject_reason(track(std::string(R"(, "userId": ")") + id + "\"")),
              std::string("userId: Mixpanel refuses \"") + id + "\" as a distinct_id (a placeholder value)");
}

TEST(MixpanelReject, EventNames) {
  EXPECT_EQ(reject_reason(track(R"(, "event": "")")), "event: Mixpanel needs a non-empty event name");
  EXPECT_EQ(reject_reason(R"({"type": "track", "userId": "u-42", "timestamp": "2025-03-10T12:00:00Z"})"),
            "event: Mixpanel needs a non-empty event name");
  EXPECT_EQ(reject_reason(track(R"(, "event": ")" + std::string(256, 'e') + "\"")),
            "event: Mixpanel takes event names of at most 255 characters");
  // 255 characters of two bytes each are fine.
  std::string wide;
  for (int i = 0; i < 255; i++) wide += "\xc3\xa9";
  EXPECT_EQ(map(track(R"(, "event": ")" + wide + "\"")).kind, Mapping::Kind::Items);
}

TEST(MixpanelReject, Times) {
  EXPECT_EQ(reject_reason(R"({"type": "track", "event": "X", "userId": "u-42"})"),
            "timestamp: Mixpanel requires properties.time and the message has no time");
  EXPECT_EQ(reject_reason(track().replace(track().find("2025-03-10T12:00:00+00:00"), 25, "1970-12-31T23:59:59Z")),
            "timestamp: Mixpanel refuses events dated before 1971-01-01");
  EXPECT_EQ(reject_reason(track(), at("2025-03-10T12:00:00Z") - kHour - kSecond),
            "timestamp: Mixpanel refuses events more than 1 hour in the future");
  EXPECT_EQ(map(track(), at("2025-03-10T12:00:00Z") - kHour).kind, Mapping::Kind::Items);
  EXPECT_EQ(map(track().replace(track().find("2025-03-10T12:00:00+00:00"), 25, "1971-01-01T00:00:00Z")).kind,
            Mapping::Kind::Items);
}

TEST(MixpanelReject, TooManyProperties) {
  auto with = [](int n) {
    std::string props;
    for (int i = 0; i < n; i++) props += (i ? ", \"p" : "\"p") + std::to_string(i) + "\": " + std::to_string(i);
    return track(", \"properties\": {" + props + "}");
  };
  EXPECT_EQ(reject_reason(with(255)), "properties: Mixpanel takes fewer than 255 properties an event");
  EXPECT_EQ(reject_reason(with(250)),
            "properties: Mixpanel takes fewer than 255 properties an event (with those cdp adds)");
  EXPECT_EQ(map(with(248)).kind, Mapping::Kind::Items);  // + time, distinct_id, $insert_id, $user_id, $device_id, mp_lib
}

TEST(MixpanelReject, NothingThrowsOnOddMessages) {
  for (const char* m : {"{}", "[]", "1", R"({"type": 3})", R"({"type": "track", "event": 5, "userId": 7})",
                        R"({"type": "track", "event": "X", "userId": "u", "timestamp": "yesterday"})",
                        R"({"type": "page", "userId": "u", "timestamp": "2025-03-10T12:00:00Z", "properties": [1],
                            "context": {"page": {"url": {"nested": true}}}})"})
    EXPECT_NO_THROW(map(m)) << m;
}

// ---------------------------------------------------------------------------
// build()
// ---------------------------------------------------------------------------

TEST(MixpanelBuild, PostImportStrictWithBasicAuthAndAnArrayBody) {
  Batch b = batch(2);
  connectors::Request r = mixpanel().build(b.ptrs(), config(), kNow);
  EXPECT_EQ(r.path, "/import?strict=1&project_id=3141592");
  EXPECT_EQ(r.headers, (std::vector<std::string>{
                           "Content-Type: application/json",
                           "Authorization: Basic " + connectors::base64("cdp.9f1c.mp-service-account:s3cr3t")}));
  EXPECT_TRUE(same_json(r.body, "[" + b.items[0].json + "," + b.items[1].json + "]")) << r.body;
  rapidjson::Document body = json(r.body);
  ASSERT_TRUE(body.IsArray());
  EXPECT_STREQ(body[1]["properties"]["$insert_id"].GetString(), "m-1");
}

// ---------------------------------------------------------------------------
// read()
// ---------------------------------------------------------------------------

TEST(MixpanelRead, OkIsDeliveredWhole) {
  Answer a = read(200, R"({"code": 200, "num_records_imported": 3, "status": "OK"})");
  EXPECT_TRUE(a.items.empty());
  EXPECT_EQ(a.whole.verdict, Verdict::Delivered);
  EXPECT_FALSE(a.outage);
  EXPECT_FALSE(a.split);
}

TEST(MixpanelRead, StrictFailedRecordsAreDeadTheOthersImported) {
  Answer a = read(400, R"({"code": 400, "error": "some data points in the request failed validation",
      "failed_records": [{"index": 1, "insert_id": "m-1", "field": "properties.time",
                          "message": "'properties.time' is invalid: must be specified as seconds since epoch"}],
      "num_records_imported": 2, "status": "Bad Request"})");
  ASSERT_EQ(a.items.size(), 3u);
  EXPECT_EQ(a.items[0].verdict, Verdict::Delivered);
  EXPECT_EQ(a.items[1].verdict, Verdict::Dead);
  EXPECT_EQ(a.items[1].reason,
            "HTTP 400: properties.time: 'properties.time' is invalid: must be specified as seconds since epoch");
  EXPECT_EQ(a.items[2].verdict, Verdict::Delivered);
  EXPECT_FALSE(a.outage);
  EXPECT_FALSE(a.split);
}

TEST(MixpanelRead, FailedRecordsOutOfRangeOrMalformedAreIgnored) {
  Answer a = read(400, R"({"code": 400, "failed_records": [{"index": 7}, {"index": -1}, {"index": "0"}, 3,
                                                          {"index": 2}]})");
  ASSERT_EQ(a.items.size(), 3u);
  EXPECT_EQ(a.items[0].verdict, Verdict::Delivered);
  EXPECT_EQ(a.items[1].verdict, Verdict::Delivered);
  EXPECT_EQ(a.items[2].verdict, Verdict::Dead);
  EXPECT_EQ(a.items[2].reason, "HTTP 400: failed validation");
}

TEST(MixpanelRead, A400ThatListsNothingIsSplitOrDeadWhenAlone) {
  for (const char* body : {R"({"code": 400, "error": "invalid JSON", "status": "Bad Request"})",
                           R"({"code": 400, "failed_records": []})", "<html>bad request</html>", ""}) {
    Answer many = read(400, body);
    EXPECT_TRUE(many.items.empty()) << body;
    EXPECT_TRUE(many.split) << body;
    EXPECT_EQ(many.whole.verdict, Verdict::Dead);
    EXPECT_FALSE(many.outage);
    Answer one = read(400, body, 1);
    EXPECT_FALSE(one.split) << body;
    EXPECT_EQ(one.whole.verdict, Verdict::Dead);
    EXPECT_EQ(one.whole.reason.rfind("HTTP 400", 0), 0u);
  }
}

TEST(MixpanelRead, BadCredentialsAreDeadNotAnOutage) {
  for (long status : {401L, 403L}) {
    Answer a = read(status, R"({"code": 401, "error": "Invalid credentials", "status": "Unauthorized"})");
    EXPECT_EQ(a.whole.verdict, Verdict::Dead);
    EXPECT_NE(a.whole.reason.find("Invalid credentials"), std::string::npos);
    EXPECT_FALSE(a.split);
    EXPECT_FALSE(a.outage);
  }
}

TEST(MixpanelRead, TooLargeIsSplit) {
  Answer a = read(413, R"({"code": 413, "error": "request exceeds max limit of 10485760 bytes"})");
  EXPECT_TRUE(a.split);
  EXPECT_FALSE(a.outage);
  EXPECT_FALSE(read(413, "", 1).split);
  EXPECT_EQ(read(413, "", 1).whole.verdict, Verdict::Dead);
}

TEST(MixpanelRead, RateLimitAndServerErrorsAreRetriedAsAnOutage) {
  Answer limited = read(429, R"({"code": 429, "status": "Too Many Requests",
      "error": "Project exceeded rate limits. Please retry the request with exponential backoff."})");
  EXPECT_EQ(limited.whole.verdict, Verdict::Retry);
  EXPECT_TRUE(limited.outage);
  EXPECT_TRUE(limited.items.empty());
  EXPECT_EQ(limited.whole.delay, 0);
  EXPECT_EQ(read(429, "", 3, "7").whole.delay, 7 * kSecond);
  for (long status : {500L, 502L, 503L, 0L}) {
    Answer a = read(status, "");
    EXPECT_EQ(a.whole.verdict, Verdict::Retry) << status;
    EXPECT_TRUE(a.outage) << status;
    EXPECT_FALSE(a.split);
  }
}

}  // namespace
}  // namespace cdp
