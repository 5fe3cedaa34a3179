// Kind "amplitude" (core/connectors/amplitude.cpp): its config, the mapping of
// every message type to an HTTP V2 event (or a skip or a rejection with the
// rule), the request build() makes, and read() of every answer /2/httpapi
// gives: 200, a 400 that names events (the whole batch refused), a 400 about
// the api_key or naming nothing, 413, a 429 that names throttled users and
// devices (or none) and 5xx.
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "core/connectors/connector.hpp"
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
const Micros kNow = at("2025-03-10T12:00:05Z");

const Connector& amplitude() { return *connectors::find("amplitude"); }

Config config(std::string_view text = R"({"api_key": "0123456789abcdef0123456789abcdef"})") {
  return amplitude().check_config(json(text));
}

std::string config_error(std::string_view options) {
  try {
    amplitude().check_config(json(options));
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput) << e.what();
    return e.field();
  }
  return "<no error>";
}

Mapping map(std::string_view message, const Config& c = config()) { return amplitude().map(json(message), c, kNow); }

std::string event(std::string_view message, const Config& c = config()) {
  Mapping m = map(message, c);
  EXPECT_EQ(m.kind, Mapping::Kind::Items) << m.reason;
  EXPECT_EQ(m.items.size(), 1u);
  return m.items.empty() ? "{}" : m.items[0].json;
}

std::string reject_reason(std::string_view message, const Config& c = config()) {
  Mapping m = map(message, c);
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
  std::string base = R"("type": "track", "event": "Order Completed", "userId": "u-42-ada", "anonymousId": "a-7f3c9",
                         "messageId": "ajs-3f1c9d0e", "timestamp": "2025-03-10T12:00:00+00:00")";
  if (extra.empty()) return "{" + base + "}";
  return "{" + std::string(extra.substr(1)) + ", " + base + "}";
}

struct Batch {
  std::vector<Item> items;
  std::vector<const Item*> ptrs() const {
    std::vector<const Item*> out;
    for (const Item& i : items) out.push_back(&i);
    return out;
  }
};

// Events of users u-0000 ... and devices d-0000 ...
Batch batch(size_t n) {
  Batch b;
  for (size_t i = 0; i < n; i++) {
    std::string n4 = std::to_string(1000 + i).substr(1);
    Mapping m = map(R"({"type": "track", "event": "E", "userId": "u-0)" + n4 + R"(", "anonymousId": "d-0)" + n4 +
                    R"(", "messageId": "m-)" + n4 + R"(", "timestamp": "2025-03-10T12:00:00Z"})");
    b.items.push_back(m.items.at(0));
  }
  return b;
}

Answer read(long status, std::string body, size_t n = 4, Micros now = kNow, std::string retry_after = "") {
  Batch b = batch(n);
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.retry_after = std::move(retry_after);
  return amplitude().read(r, b.ptrs(), now);
}

// ---------------------------------------------------------------------------
// The kind and its config
// ---------------------------------------------------------------------------

TEST(AmplitudeKind, RegisteredWithItsDefaultUrlAndCaps) {
  ASSERT_NE(connectors::find("amplitude"), nullptr);
  EXPECT_EQ(amplitude().kind(), "amplitude");
  EXPECT_EQ(amplitude().default_url(), "https://api2.amplitude.com");
  connectors::Caps caps = amplitude().caps();
  EXPECT_EQ(caps.max_items, 2000);
  EXPECT_LT(caps.max_bytes, 1000u * 1000);
  EXPECT_EQ(caps.max_item_bytes, 0u);
  EXPECT_EQ(caps.requests_per_second, 100);
}

TEST(AmplitudeConfig, ApiKeyRequiredMinIdLengthOptional) {
  Config c = config();
  EXPECT_EQ(c.at("api_key"), "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(c.count("min_id_length"), 0u);
  EXPECT_EQ(amplitude().secrets(c), std::vector<std::string>{"0123456789abcdef0123456789abcdef"});
  EXPECT_EQ(config(R"({"api_key": "k", "min_id_length": "3"})").at("min_id_length"), "3");
  EXPECT_EQ(config_error(R"({"api_key": "k", "min_id_length": "255"})"), "<no error>");
  EXPECT_EQ(config_error("{}"), "api_key");
  EXPECT_EQ(config_error(R"({"api_key": ""})"), "api_key");
  EXPECT_EQ(config_error(R"({"min_id_length": "3"})"), "api_key");
}

TEST(AmplitudeConfig, UnknownKeysAndBadValuesRefused) {
  EXPECT_EQ(config_error(R"({"api_key": "k", "secret_key": "s"})"), "secret_key");
  EXPECT_EQ(config_error(R"({"api_key": "k", "region": "eu"})"), "region");
  for (const char* n : {"0", "256", "-1", "3.5", "abc", "", " 3", "0003"})
    EXPECT_EQ(config_error(std::string(R"({"api_key": "k", "min_id_length": ")") + n + "\"}"), "min_id_length") << n;
  EXPECT_EQ(config_error(R"({"api_key": "k", "min_id_length": 3})"), "min_id_length");
  EXPECT_EQ(config_error(R"({"api_key": 12})"), "api_key");
}

// ---------------------------------------------------------------------------
// map(): events
// ---------------------------------------------------------------------------

TEST(AmplitudeMap, TrackBecomesAnEvent) {
  std::string e = event(track(R"(, "properties": {"total": 129.9, "currency": "EUR"},
      "context": {"ip": "203.0.113.7", "os": {"name": "iOS", "version": "17.2"},
                  "device": {"model": "iPhone15,2", "manufacturer": "Apple", "type": "ios"},
                  "network": {"carrier": "T-Mobile"}, "app": {"version": "4.1.0"}, "locale": "de-DE",
                  "location": {"country": "Germany", "city": "Berlin", "latitude": 52.52, "longitude": 13.4},
                  "traits": {"plan": "pro"}, "library": {"name": "analytics-ios"}})"));
  EXPECT_TRUE(same_json(e, R"({"event_type": "Order Completed", "user_id": "u-42-ada", "device_id": "a-7f3c9",
      "time": 1741608000000, "insert_id": "ajs-3f1c9d0e",
      "event_properties": {"total": 129.9, "currency": "EUR"}, "user_properties": {"plan": "pro"},
      "ip": "203.0.113.7", "os_name": "iOS", "os_version": "17.2", "device_model": "iPhone15,2",
      "device_manufacturer": "Apple", "carrier": "T-Mobile", "app_version": "4.1.0", "language": "de-DE",
      "country": "Germany", "city": "Berlin", "location_lat": 52.52, "location_lng": 13.4,
      "platform": "ios", "library": "cdp"})"))
      << e;
}

TEST(AmplitudeMap, AnEventWithoutPropertiesOrContextKeepsTheRequiredFields) {
  std::string e = event(R"({"type": "track", "event": "Signed Up", "anonymousId": "a-7f3c9", "messageId": "m1",
                            "timestamp": "2025-03-10T12:00:00.25Z"})");
  EXPECT_TRUE(same_json(e, R"({"event_type": "Signed Up", "device_id": "a-7f3c9", "time": 1741608000250,
      "insert_id": "m1", "event_properties": {}, "library": "cdp"})"))
      << e;
}

TEST(AmplitudeMap, ItemUserIsTheUserIdElseTheDeviceId) {
  EXPECT_EQ(map(track()).items.at(0).user, "u-42-ada");
  EXPECT_EQ(map(R"({"type": "track", "event": "X", "anonymousId": "a-7f3c9", "timestamp": "2025-03-10T12:00:00Z"})")
                .items.at(0)
                .user,
            "a-7f3c9");
}

TEST(AmplitudeMap, PageIsViewedNameOrLoadedAPage) {
  std::string e = event(R"({"type": "page", "name": "Pricing", "category": "Docs", "userId": "u-42-ada",
      "messageId": "p1", "timestamp": "2025-03-10T12:00:00Z", "properties": {"url": "https://initech.example/pricing"},
      "context": {"page": {"url": "https://initech.example/pricing"}}})");
  EXPECT_TRUE(same_json(e, R"({"event_type": "Viewed Pricing", "user_id": "u-42-ada", "time": 1741608000000,
      "insert_id": "p1", "event_properties": {"url": "https://initech.example/pricing", "name": "Pricing",
      "category": "Docs"}, "platform": "Web", "library": "cdp"})"))
      << e;
  EXPECT_STREQ(json(event(R"({"type": "page", "userId": "u-42-ada", "timestamp": "2025-03-10T12:00:00Z"})"))["event_type"]
                   .GetString(),
               "Loaded a Page");
}

TEST(AmplitudeMap, ScreenIsViewedNameOrLoadedAScreen) {
  rapidjson::Document named = json(event(R"({"type": "screen", "name": "Cart", "anonymousId": "a-7f3c9",
      "timestamp": "2025-03-10T12:00:00Z", "context": {"device": {"type": "android"}}})"));
  EXPECT_STREQ(named["event_type"].GetString(), "Viewed Cart");
  EXPECT_STREQ(named["event_properties"]["name"].GetString(), "Cart");
  EXPECT_STREQ(named["platform"].GetString(), "android");
  EXPECT_STREQ(json(event(R"({"type": "screen", "anonymousId": "a-7f3c9", "timestamp": "2025-03-10T12:00:00Z"})"))
                   ["event_type"]
                       .GetString(),
               "Loaded a Screen");
}

TEST(AmplitudeMap, IdentifySetsUserProperties) {
  std::string e = event(R"({"type": "identify", "userId": "u-42-ada", "anonymousId": "a-7f3c9", "messageId": "i1",
      "timestamp": "2025-03-10T12:00:00Z", "traits": {"plan": "pro", "name": "Ada"},
      "context": {"traits": {"ignored": true}}})");
  EXPECT_TRUE(same_json(e, R"({"event_type": "$identify", "user_id": "u-42-ada", "device_id": "a-7f3c9",
      "time": 1741608000000, "insert_id": "i1", "user_properties": {"$set": {"plan": "pro", "name": "Ada"}},
      "library": "cdp"})"))
      << e;
  EXPECT_EQ(skip_reason(R"({"type": "identify", "userId": "u-42-ada", "timestamp": "2025-03-10T12:00:00Z"})"),
            "identify: no traits to set");
  EXPECT_EQ(skip_reason(R"({"type": "identify", "userId": "u-42-ada", "traits": {}})"), "identify: no traits to set");
}

TEST(AmplitudeMap, SegmentChangesBecomeAudienceEvents) {
  std::string enter = event(R"({"type": "segment_enter", "segment": "vip", "segment_id": 3, "profile_id": 1,
      "at": "2025-03-10T12:00:00+00:00", "messageId": "cdp-outbox-255", "userId": "u-42-ada",
      "traits": {"email": "ada@example.com"}})");
  EXPECT_TRUE(same_json(enter, R"({"event_type": "Audience Entered", "user_id": "u-42-ada", "time": 1741608000000,
      "insert_id": "cdp-outbox-255", "event_properties": {"audience_key": "vip", "segment_id": 3, "entered": true},
      "library": "cdp"})"))
      << enter;
  rapidjson::Document exit = json(event(R"({"type": "segment_exit", "segment": "vip", "segment_id": 3,
      "at": "2025-03-10T12:00:00Z", "messageId": "cdp-outbox-256", "userId": "u-42-ada"})"));
  EXPECT_STREQ(exit["event_type"].GetString(), "Audience Exited");
  EXPECT_TRUE(exit["event_properties"]["exited"].GetBool());
}

TEST(AmplitudeMap, GroupAliasAndDeleteAreSkipped) {
  EXPECT_NE(skip_reason(R"({"type": "group", "userId": "u-42-ada", "groupId": "g-1"})").find("group type"),
            std::string::npos);
  EXPECT_NE(skip_reason(R"({"type": "alias", "userId": "u-42-ada", "previousId": "a-7f3c9"})").find("no alias"),
            std::string::npos);
  EXPECT_NE(skip_reason(R"({"type": "delete", "userId": "u-42-ada", "userIds": ["u-42-ada"],
                             "messageId": "cdp-erase-1", "timestamp": "2025-03-10T12:00:00Z"})")
                .find("User Privacy API"),
            std::string::npos);
  EXPECT_NE(skip_reason(R"({"userId": "u-42-ada"})").find("no counterpart"), std::string::npos);
}

// ---------------------------------------------------------------------------
// map(): rejections, each naming the field and the rule
// ---------------------------------------------------------------------------

TEST(AmplitudeReject, NoIds) {
  EXPECT_EQ(reject_reason(R"({"type": "track", "event": "X", "timestamp": "2025-03-10T12:00:00Z"})"),
            "userId: Amplitude needs a user_id or a device_id: the message has neither userId nor anonymousId");
  EXPECT_EQ(reject_reason(R"({"type": "segment_enter", "segment": "vip", "at": "2025-03-10T12:00:00Z"})"),
            "userId: Amplitude needs a user_id or a device_id: the message has neither userId nor anonymousId");
}

TEST(AmplitudeReject, IdsShorterThanMinIdLength) {
  EXPECT_EQ(reject_reason(track(R"(, "userId": "u-42")")),
            "userId: Amplitude refuses a user_id shorter than 5 characters (config min_id_length)");
  EXPECT_EQ(reject_reason(track(R"(, "anonymousId": "a-7f")")),
            "anonymousId: Amplitude refuses a device_id shorter than 5 characters (config min_id_length)");
  Config three = config(R"({"api_key": "k", "min_id_length": "3"})");
  EXPECT_EQ(map(track(R"(, "userId": "u-4", "anonymousId": "a-7")"), three).kind, Mapping::Kind::Items);
  EXPECT_EQ(reject_reason(track(R"(, "userId": "u4")"), three),
            "userId: Amplitude refuses a user_id shorter than 3 characters (config min_id_length)");
  // Characters, not bytes.
  EXPECT_EQ(reject_reason(track(R"(, "userId": "\u00e9\u00e9\u00e9\u00e9")")),
            "userId: Amplitude refuses a user_id shorter than 5 characters (config min_id_length)");
}

TEST(AmplitudeReject, AllZeroDeviceIdsEventNamesAndTimes) {
  EXPECT_EQ(reject_reason(track(R"(, "anonymousId": "00000000-0000-0000-0000-000000000000")")),
            "anonymousId: Amplitude refuses an all-zero device_id");
  EXPECT_EQ(reject_reason(track(R"(, "event": "")")), "event: Amplitude needs a non-empty event_type");
  EXPECT_EQ(reject_reason(track(R"(, "event": "$identify")")),
            "event: \"$identify\" is an event_type Amplitude reserves");
  EXPECT_EQ(reject_reason(track(R"(, "timestamp": "1969-12-31T23:59:59Z")")),
            "timestamp: Amplitude takes times after 1970-01-01 only");
  // No time at all: Amplitude takes the upload time.
  EXPECT_FALSE(json(event(R"({"type": "track", "event": "X", "userId": "u-42-ada"})")).HasMember("time"));
}

TEST(AmplitudeReject, NothingThrowsOnOddMessages) {
  Config bad_number{{"api_key", "k"}, {"min_id_length", "lots"}};  // not through check_config
  for (const char* m : {"{}", "[]", "null", R"({"type": ["track"]})", R"({"type": "track", "event": 5, "userId": 7})",
                        R"({"type": "identify", "userId": "u-42-ada", "traits": "plan"})",
                        R"({"type": "page", "userId": "u-42-ada", "properties": 3, "context": {"traits": [1]}})"}) {
    EXPECT_NO_THROW(map(m)) << m;
    EXPECT_NO_THROW(map(m, bad_number)) << m;
  }
}

// ---------------------------------------------------------------------------
// build()
// ---------------------------------------------------------------------------

TEST(AmplitudeBuild, PostHttpApiWithTheKeyInTheBody) {
  Batch b = batch(2);
  connectors::Request r = amplitude().build(b.ptrs(), config(), kNow);
  EXPECT_EQ(r.path, "/2/httpapi");
  EXPECT_EQ(r.headers, std::vector<std::string>{"Content-Type: application/json"});
  EXPECT_TRUE(same_json(r.body, R"({"api_key": "0123456789abcdef0123456789abcdef", "events": [)" + b.items[0].json +
                                    "," + b.items[1].json + "]}"))
      << r.body;
}

TEST(AmplitudeBuild, MinIdLengthGoesInOptionsAndTheKeyIsEscaped) {
  Batch b = batch(1);
  connectors::Request r =
      amplitude().build(b.ptrs(), config(R"({"api_key": "k\"ey\\", "min_id_length": "3"})"), kNow);
  EXPECT_TRUE(same_json(r.body, R"({"api_key": "k\"ey\\", "events": [)" + b.items[0].json +
                                    R"(], "options": {"min_id_length": 3}})"))
      << r.body;
}

// ---------------------------------------------------------------------------
// read()
// ---------------------------------------------------------------------------

TEST(AmplitudeRead, OkIsDeliveredWhole) {
  Answer a = read(200, R"({"code": 200, "events_ingested": 4, "payload_size_bytes": 812,
                           "server_upload_time": 1741608005000})");
  EXPECT_TRUE(a.items.empty());
  EXPECT_EQ(a.whole.verdict, Verdict::Delivered);
  EXPECT_FALSE(a.outage);
}

TEST(AmplitudeRead, A400NamingEventsKillsThemAndResendsTheRest) {
  Answer a = read(400, R"({"code": 400, "error": "Invalid field values on some events",
      "events_with_invalid_fields": {"time": [1, 2]}, "events_with_missing_fields": {"event_type": [2]},
      "events_with_invalid_id_lengths": {"user_id": [9]}})");
  ASSERT_EQ(a.items.size(), 4u);
  EXPECT_EQ(a.items[0].verdict, Verdict::RetryNow);
  EXPECT_EQ(a.items[1].verdict, Verdict::Dead);
  EXPECT_EQ(a.items[1].reason, "HTTP 400: Invalid field values on some events (events_with_invalid_fields: time)");
  EXPECT_EQ(a.items[2].verdict, Verdict::Dead);
  EXPECT_EQ(a.items[2].reason,
            "HTTP 400: Invalid field values on some events (events_with_invalid_fields: time, "
            "events_with_missing_fields: event_type)");
  EXPECT_EQ(a.items[3].verdict, Verdict::RetryNow);
  EXPECT_FALSE(a.outage);
  EXPECT_FALSE(a.split);
}

TEST(AmplitudeRead, InvalidIdLengthsAndSilencedEvents) {
  Answer a = read(400, R"({"code": 400, "error": "Invalid id length for user_id or device_id",
      "events_with_invalid_id_lengths": {"device_id": [0]}, "silenced_events": [3]})");
  ASSERT_EQ(a.items.size(), 4u);
  EXPECT_EQ(a.items[0].reason,
            "HTTP 400: Invalid id length for user_id or device_id (events_with_invalid_id_lengths: device_id)");
  EXPECT_EQ(a.items[3].verdict, Verdict::Dead);
  EXPECT_EQ(a.items[3].reason, "HTTP 400: Invalid id length for user_id or device_id (silenced_events)");
  EXPECT_EQ(a.items[1].verdict, Verdict::RetryNow);
}

TEST(AmplitudeRead, A400AboutTheApiKeyIsDeadWhole) {
  for (const char* body : {R"({"code": 400, "error": "Invalid API key: 0123"})",
                           R"({"code": 400, "error": "Request missing required field", "missing_field": "api_key"})"}) {
    Answer a = read(400, body);
    EXPECT_TRUE(a.items.empty()) << body;
    EXPECT_EQ(a.whole.verdict, Verdict::Dead);
    EXPECT_NE(a.whole.reason.find("HTTP 400"), std::string::npos);
    EXPECT_FALSE(a.split) << body;
    EXPECT_FALSE(a.outage);
  }
}

TEST(AmplitudeRead, A400NamingNothingIsSplitOrDeadWhenAlone) {
  for (const char* body : {R"({"code": 400, "error": "Invalid request"})", "not json",
                           R"({"code": 400, "events_with_invalid_fields": {"time": [7]}})"}) {
    Answer many = read(400, body);
    EXPECT_TRUE(many.items.empty()) << body;
    EXPECT_TRUE(many.split) << body;
    Answer one = read(400, body, 1);
    EXPECT_FALSE(one.split);
    EXPECT_EQ(one.whole.verdict, Verdict::Dead);
  }
}

TEST(AmplitudeRead, TooLargeIsSplit) {
  EXPECT_TRUE(read(413, R"({"code": 413, "error": "Payload too large"})").split);
  EXPECT_FALSE(read(413, "", 1).split);
  EXPECT_EQ(read(413, "", 1).whole.verdict, Verdict::Dead);
}

TEST(AmplitudeRead, ThrottledUsersWaitTheOthersGoAtOnce) {
  Answer a = read(429, R"({"code": 429, "error": "Too many requests for some devices and users", "eps_threshold": 30,
      "throttled_devices": {"d-0003": 41}, "throttled_users": {"u-0001": 45}, "throttled_events": [1, 3],
      "exceeded_daily_quota_users": {}, "exceeded_daily_quota_devices": {}})");
  ASSERT_EQ(a.items.size(), 4u);
  EXPECT_EQ(a.items[0].verdict, Verdict::RetryNow);
  EXPECT_EQ(a.items[1].verdict, Verdict::Throttled);
  EXPECT_EQ(a.items[1].delay, 30 * kSecond);
  EXPECT_EQ(a.items[1].reason, "HTTP 429: Too many requests for some devices and users (throttled)");
  EXPECT_EQ(a.items[2].verdict, Verdict::RetryNow);
  EXPECT_EQ(a.items[3].verdict, Verdict::Throttled);
  EXPECT_FALSE(a.outage) << "a throttled user is not the destination's outage";
}

TEST(AmplitudeRead, ThrottledByIndexOrDeviceAlone) {
  Answer by_index = read(429, R"({"code": 429, "error": "Too many requests", "throttled_events": [2]})");
  ASSERT_EQ(by_index.items.size(), 4u);
  EXPECT_EQ(by_index.items[2].verdict, Verdict::Throttled);
  EXPECT_EQ(by_index.items[0].verdict, Verdict::RetryNow);
  Answer by_device = read(429, R"({"code": 429, "error": "Too many requests", "throttled_devices": {"d-0000": 31}})");
  ASSERT_EQ(by_device.items.size(), 4u);
  EXPECT_EQ(by_device.items[0].verdict, Verdict::Throttled);
  EXPECT_EQ(by_device.items[1].verdict, Verdict::RetryNow);
}

TEST(AmplitudeRead, OverTheDailyQuotaWaitsForTheNextUtcDay) {
  Micros now = at("2025-03-10T18:00:00Z");
  Answer a = read(429, R"({"code": 429, "error": "Too many requests for some devices and users",
      "exceeded_daily_quota_users": {"u-0000": 500001}, "exceeded_daily_quota_devices": {"d-0002": 500001},
      "throttled_events": [0]})",
                  4, now);
  ASSERT_EQ(a.items.size(), 4u);
  EXPECT_EQ(a.items[0].verdict, Verdict::Throttled);
  EXPECT_EQ(a.items[0].delay, at("2025-03-11T00:00:00Z") - now);
  EXPECT_EQ(a.items[0].reason, "HTTP 429: Too many requests for some devices and users (over the daily quota)");
  EXPECT_EQ(a.items[2].delay, 6 * 3600 * kSecond);
  EXPECT_EQ(a.items[1].verdict, Verdict::RetryNow);
  EXPECT_FALSE(a.outage);
}

TEST(AmplitudeRead, A429NamingNoneOfOursIsRetriedAsAnOutage) {
  for (const char* body : {R"({"code": 429, "error": "Too many requests"})", "",
                           R"({"code": 429, "throttled_users": {"someone-else": 99}, "throttled_events": [12]})"}) {
    Answer a = read(429, body);
    EXPECT_TRUE(a.items.empty()) << body;
    EXPECT_EQ(a.whole.verdict, Verdict::Retry);
    EXPECT_TRUE(a.outage) << body;
  }
  EXPECT_EQ(read(429, "", 2, kNow, "12").whole.delay, 12 * kSecond);
}

TEST(AmplitudeRead, ServerErrorsAndNoAnswerAreRetriedAsAnOutage) {
  for (long status : {500L, 502L, 503L, 504L, 0L}) {
    Answer a = read(status, R"({"code": 500, "error": "Internal Server Error"})");
    EXPECT_EQ(a.whole.verdict, Verdict::Retry) << status;
    EXPECT_TRUE(a.outage) << status;
    EXPECT_TRUE(a.items.empty());
  }
  Answer forbidden = read(403, "");
  EXPECT_EQ(forbidden.whole.verdict, Verdict::Dead);
  EXPECT_FALSE(forbidden.outage);
}

}  // namespace
}  // namespace cdp
