// Kind "ga4" (core/connectors/ga4.cpp): its config, the mapping of every
// message type to Measurement Protocol events, the rules GA4 documents but
// never reports (names, parameter counts and lengths, the 72-hour window),
// the request it builds, how it reads answers, and the validation server's.
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "core/connectors/connector.hpp"
#include "core/connectors/ga4.hpp"
#include "core/error.hpp"
#include "core/json_util.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using connectors::Answer;
using connectors::Config;
using connectors::Item;
using connectors::Mapping;
using connectors::Response;
using connectors::Verdict;
using test::at;
using test::json;
using test::same_json;

constexpr Micros kSecond = 1000000;
constexpr Micros kMinute = 60 * kSecond;
constexpr Micros kHour = 60 * kMinute;

const Micros kNow = at("2025-03-10T12:00:00Z");
const Micros kT = at("2025-03-10T11:00:00Z");  // the events' time

const connectors::Connector& ga4() { return *connectors::find("ga4"); }

Config config() { return ga4().check_config(json(R"({"measurement_id": "G-ABC123", "api_secret": "s3 cr&t"})")); }

Mapping map(std::string_view message, Micros now = kNow) { return ga4().map(json(message), config(), now); }

// The one item a message maps to (an empty item when it does not map to one).
Item item(std::string_view message) {
  Mapping m = map(message);
  EXPECT_EQ(m.kind, Mapping::Kind::Items) << message << ": " << m.reason;
  EXPECT_EQ(m.items.size(), 1u);
  return m.items.empty() ? Item{} : m.items[0];
}

std::string rejection(std::string_view message, Micros now = kNow) {
  Mapping m = map(message, now);
  EXPECT_EQ(m.kind, Mapping::Kind::Reject) << message;
  return m.reason;
}

// The field a config error names, and its message.
std::pair<std::string, std::string> config_error(std::string_view config) {
  try {
    ga4().check_config(json(config));
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
    return {e.field(), e.what()};
  }
  return {"<no error>", ""};
}

std::string track(std::string_view event, std::string_view properties = "{}") {
  return R"({"type": "track", "event": ")" + std::string(event) + R"(", "anonymousId": "a-1", "userId": "u-1",
             "messageId": "m-1", "timestamp": "2025-03-10T11:00:00+00:00", "properties": )" +
         std::string(properties) + "}";
}

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

TEST(Ga4Config, BothKeysRequired) {
  EXPECT_EQ(config_error(R"({"api_secret": "s"})").first, "measurement_id");
  EXPECT_EQ(config_error(R"({"measurement_id": "G-ABC123"})").first, "api_secret");
  EXPECT_EQ(config_error(R"({"measurement_id": "G-ABC123", "api_secret": ""})").first, "api_secret");
  EXPECT_EQ(config_error("{}").first, "measurement_id");
}

TEST(Ga4Config, UnknownKeysAndNonStringsRefused) {
  auto [field, message] = config_error(R"({"measurement_id": "G-ABC123", "api_secret": "s", "write_key": "k"})");
  EXPECT_EQ(field, "write_key");
  EXPECT_NE(message.find("measurement_id, api_secret"), std::string::npos) << message;
  EXPECT_EQ(config_error(R"({"measurement_id": "G-ABC123", "api_secret": 42})").first, "api_secret");
  EXPECT_EQ(config_error(R"(["G-ABC123"])").first, "");
}

TEST(Ga4Config, MeasurementIdMustBeAGa4One) {
  for (const char* id : {"UA-12345-1", "G-", "G-AB C", "123", "g-abc"})
    EXPECT_EQ(config_error(R"({"measurement_id": ")" + std::string(id) + R"(", "api_secret": "s"})").first,
              "measurement_id")
        << id;
}

TEST(Ga4Config, SecretsUrlAndCaps) {
  EXPECT_EQ(ga4().kind(), "ga4");
  EXPECT_EQ(ga4().secrets(config()), std::vector<std::string>{"s3 cr&t"});
  EXPECT_EQ(ga4().default_url(), "https://www.google-analytics.com");
  connectors::Caps caps = ga4().caps();
  EXPECT_EQ(caps.max_items, 25);
  EXPECT_LT(caps.max_bytes, 130000u);  // "smaller than 130kB"
  EXPECT_GT(caps.max_bytes, 120000u);
  EXPECT_EQ(caps.requests_per_second, 0);
}

// ---------------------------------------------------------------------------
// Mapping, type by type
// ---------------------------------------------------------------------------

TEST(Ga4Map, OrderCompletedIsAPurchaseWithItems) {
  Item i = item(track("Order Completed", R"({"order_id": "o-1", "revenue": 25.5, "total": 30, "currency": "EUR",
      "coupon": "SPRING", "shipping": 3, "tax": 1.5, "affiliation": "shop",
      "products": [{"product_id": "p-1", "sku": "S1", "name": "Mug", "price": 12.75, "quantity": 2,
                    "category": "Kitchen", "brand": "Acme"},
                   {"sku": "S2", "name": "Tea"}]})"));
  EXPECT_TRUE(same_json(i.json, R"({"name": "purchase", "params": {
      "value": 25.5, "currency": "EUR", "transaction_id": "o-1", "coupon": "SPRING", "shipping": 3, "tax": 1.5,
      "items": [{"item_id": "p-1", "item_name": "Mug", "price": 12.75, "quantity": 2, "item_category": "Kitchen",
                 "item_brand": "Acme"},
                {"item_id": "S2", "item_name": "Tea"}],
      "affiliation": "shop"}})"))
      << i.json;
  EXPECT_EQ(i.group, "\"a-1\"\n\"u-1\"\n" + std::to_string(kT));
  EXPECT_EQ(i.user, "a-1");
  EXPECT_EQ(i.array, "");
}

TEST(Ga4Map, EverySpecNameHasItsRecommendedEvent) {
  const std::pair<const char*, const char*> names[] = {
      {"Products Searched", "search"},      {"Product List Viewed", "view_item_list"},
      {"Product Clicked", "select_item"},   {"Product Viewed", "view_item"},
      {"Product Added", "add_to_cart"},     {"Product Removed", "remove_from_cart"},
      {"Cart Viewed", "view_cart"},         {"Checkout Started", "begin_checkout"},
      {"Payment Info Entered", "add_payment_info"}, {"Order Completed", "purchase"},
      {"Order Refunded", "refund"},         {"Product Added to Wishlist", "add_to_wishlist"},
      {"Promotion Viewed", "view_promotion"}, {"Promotion Clicked", "select_promotion"},
      {"Signed Up", "sign_up"},             {"Logged In", "login"}};
  for (auto [spec, ga] : names) {
    rapidjson::Document d = json(item(track(spec)).json);
    EXPECT_EQ(std::string(d["name"].GetString()), ga) << spec;
  }
}

TEST(Ga4Map, SearchQueryIsTheSearchTerm) {
  EXPECT_TRUE(same_json(item(track("Products Searched", R"({"query": "blue mug"})")).json,
                        R"({"name": "search", "params": {"search_term": "blue mug"}})"));
}

TEST(Ga4Map, OtherNamesAreSnakeCasedAndPropertiesKeptFlat) {
  Item i = item(track("Video Played!", R"({"Play Count": 3, "title": "Intro", "autoplay": true,
      "player": {"size": "large"}, "tags": ["a", "b"], "ok_name": "x"})"));
  EXPECT_TRUE(same_json(i.json, R"({"name": "video_played", "params": {
      "play_count": 3, "title": "Intro", "autoplay": "true", "ok_name": "x"}})"))
      << i.json;
}

TEST(Ga4Map, PageIsAPageView) {
  Item i = item(R"({"type": "page", "name": "Pricing", "anonymousId": "a-1", "timestamp": "2025-03-10T11:00:00Z",
      "context": {"page": {"url": "https://example.com/pricing?x=1", "referrer": "https://google.com/"}},
      "properties": {"url": "https://example.com/pricing", "path": "/pricing", "plan": "pro"}})");
  EXPECT_TRUE(same_json(i.json, R"({"name": "page_view", "params": {
      "page_location": "https://example.com/pricing?x=1", "page_title": "Pricing",
      "page_referrer": "https://google.com/", "plan": "pro"}})"))
      << i.json;
  EXPECT_EQ(i.group, "\"a-1\"\n\n" + std::to_string(kT));  // no userId: no user_id
}

TEST(Ga4Map, PageFallsBackToProperties) {
  Item i = item(R"({"type": "page", "anonymousId": "a-1", "timestamp": "2025-03-10T11:00:00Z",
      "properties": {"url": "https://example.com/a", "title": "A", "referrer": "https://b.example/"}})");
  EXPECT_TRUE(same_json(i.json, R"({"name": "page_view", "params": {
      "page_location": "https://example.com/a", "page_title": "A", "page_referrer": "https://b.example/"}})"))
      << i.json;
}

TEST(Ga4Map, ScreenIsAScreenView) {
  Item i = item(R"({"type": "screen", "name": "Settings", "userId": "u-1", "timestamp": "2025-03-10T11:00:00Z",
                    "properties": {"section": "privacy"}})");
  EXPECT_TRUE(same_json(i.json, R"({"name": "screen_view", "params": {"screen_name": "Settings", "section": "privacy"}})"))
      << i.json;
  EXPECT_EQ(i.group, "\"u-1\"\n\"u-1\"\n" + std::to_string(kT));  // client_id falls back to the userId
}

TEST(Ga4Map, SegmentChangesAreAudienceEvents) {
  const char* change = R"({"type": "%s", "segment": "vip", "segment_id": 3, "profile_id": 9,
      "at": "2025-03-10T11:00:00+00:00", "messageId": "cdp-outbox-5", "userId": "u-9", "traits": {"plan": "pro"}})";
  char text[512];
  std::snprintf(text, sizeof text, change, "segment_enter");
  Item enter = item(text);
  EXPECT_TRUE(same_json(enter.json, R"({"name": "cdp_audience_entered", "params": {"audience_key": "vip"}})"));
  EXPECT_EQ(enter.group, "\"u-9\"\n\"u-9\"\n" + std::to_string(kT));
  std::snprintf(text, sizeof text, change, "segment_exit");
  EXPECT_TRUE(same_json(item(text).json, R"({"name": "cdp_audience_exited", "params": {"audience_key": "vip"}})"));
}

TEST(Ga4Map, IdentifyGroupAliasAndDeletionsAreSkipped) {
  for (const char* message : {
           R"({"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}, "timestamp": "2025-03-10T11:00:00Z"})",
           R"({"type": "group", "userId": "u-1", "groupId": "g-1", "timestamp": "2025-03-10T11:00:00Z"})",
           R"({"type": "alias", "userId": "u-1", "previousId": "a-1", "timestamp": "2025-03-10T11:00:00Z"})",
           R"({"type": "delete", "userId": "u-1", "userIds": ["u-1"], "messageId": "cdp-erase-1",
               "timestamp": "2025-03-10T11:00:00Z"})"}) {
    Mapping m = map(message);
    EXPECT_EQ(m.kind, Mapping::Kind::Skip) << message;
    EXPECT_FALSE(m.reason.empty());
  }
  EXPECT_NE(map(R"({"type": "identify", "userId": "u-1"})").reason.find("user_properties"), std::string::npos);
}

TEST(Ga4Map, GroupSeparatesWhatARequestShares) {
  Item a = item(track("A")), b = item(track("B"));
  EXPECT_EQ(a.group, b.group);
  Item other_time = item(R"({"type": "track", "event": "A", "anonymousId": "a-1", "userId": "u-1",
                             "timestamp": "2025-03-10T11:00:01Z"})");
  EXPECT_NE(a.group, other_time.group);
  Item other_user = item(R"({"type": "track", "event": "A", "anonymousId": "a-1",
                             "timestamp": "2025-03-10T11:00:00Z"})");
  EXPECT_NE(a.group, other_user.group);
}

TEST(Ga4Map, NumbersKeptExact) {
  rapidjson::Document d;
  ASSERT_FALSE(parse_json(d, track("Order Completed", R"({"value": 0.12345678901234567890123, "currency": "EUR"})"),
                          Numbers::Exact)
                   .IsError());
  Mapping m = ga4().map(d, config(), kNow);
  ASSERT_EQ(m.kind, Mapping::Kind::Items) << m.reason;
  EXPECT_NE(m.items[0].json.find("\"value\":0.12345678901234567890123"), std::string::npos) << m.items[0].json;
}

// ---------------------------------------------------------------------------
// What GA4 would drop without a word: refused before sending
// ---------------------------------------------------------------------------

TEST(Ga4Reject, NoClientId) {
  EXPECT_NE(rejection(R"({"type": "track", "event": "A", "timestamp": "2025-03-10T11:00:00Z"})").find("anonymousId: GA4 needs a client_id"),
            std::string::npos);
}

TEST(Ga4Reject, EventNames) {
  EXPECT_NE(rejection(track("Session Start")).find("reserves"), std::string::npos);
  EXPECT_NE(rejection(track("error")).find("reserves"), std::string::npos);
  EXPECT_NE(rejection(track("user_engagement")).find("reserves"), std::string::npos);
  EXPECT_NE(rejection(track("Google Sync")).find("\"google_\""), std::string::npos);
  EXPECT_NE(rejection(track("firebase_thing")).find("\"firebase_\""), std::string::npos);
  EXPECT_NE(rejection(track("GA Test")).find("\"ga_\""), std::string::npos);
  EXPECT_NE(rejection(track("3D View")).find("must start with a letter"), std::string::npos);
  EXPECT_NE(rejection(track("!!!")).find("must start with a letter"), std::string::npos);
  std::string long_name(41, 'a');
  EXPECT_NE(rejection(track(long_name)).find("40 characters"), std::string::npos);
  EXPECT_EQ(map(track(std::string(40, 'a'))).kind, Mapping::Kind::Items);
  EXPECT_EQ(rejection(track("")), "event: a track call needs an event name");
  EXPECT_EQ(rejection(track("Error")).rfind("event: ", 0), 0u);
}

TEST(Ga4Reject, ParameterNames) {
  std::string why = rejection(track("A", R"({"google_campaign": "x"})"));
  EXPECT_EQ(why.rfind("properties.google_campaign: ", 0), 0u) << why;
  why = rejection(track("A", R"({"1st": "x"})"));
  EXPECT_EQ(why.rfind("properties.1st: ", 0), 0u) << why;
  why = rejection(track("A", R"({")" + std::string(41, 'p') + R"(": "x"})"));
  EXPECT_NE(why.find("40 characters"), std::string::npos) << why;
}

TEST(Ga4Reject, ValuesOver100Characters) {
  std::string why = rejection(track("A", R"({"note": ")" + std::string(101, 'x') + R"("})"));
  EXPECT_EQ(why, "properties.note: GA4 takes values of at most 100 characters for note; this one has 101");
  EXPECT_EQ(map(track("A", R"({"note": ")" + std::string(100, 'x') + R"("})")).kind, Mapping::Kind::Items);
  // Characters, not bytes: 100 two-byte letters pass.
  std::string e_acute;
  for (int i = 0; i < 100; i++) e_acute += "\xC3\xA9";
  EXPECT_EQ(map(track("A", R"({"note": ")" + e_acute + R"("})")).kind, Mapping::Kind::Items);
  why = rejection(track("A", R"({"products": [{"product_id": "p", "name": ")" + std::string(101, 'n') + R"("}]})"));
  EXPECT_EQ(why.rfind("properties.products[0].name: ", 0), 0u) << why;
}

TEST(Ga4Reject, PageParametersHaveTheirOwnLimits) {
  auto page = [](size_t n) {
    return R"({"type": "page", "anonymousId": "a", "timestamp": "2025-03-10T11:00:00Z",
               "context": {"page": {"url": "https://e.com/)" + std::string(n - 14, 'x') + R"("}}})";
  };
  EXPECT_EQ(map(page(1000)).kind, Mapping::Kind::Items);
  EXPECT_EQ(rejection(page(1001)).rfind("context.page.url: ", 0), 0u);
}

TEST(Ga4Reject, AtMost25Parameters) {
  auto props = [](int n) {
    std::string out = "{";
    for (int i = 0; i < n; i++) out += std::string(i ? "," : "") + "\"p" + std::to_string(i) + "\": " + std::to_string(i);
    return out + "}";
  };
  EXPECT_EQ(map(track("A", props(25))).kind, Mapping::Kind::Items);
  EXPECT_EQ(rejection(track("A", props(26))),
            "properties: GA4 takes at most 25 parameters an event; this one would have 26");
  // Nested objects are not parameters and do not count.
  EXPECT_EQ(map(track("A", props(25).substr(0, props(25).size() - 1) + R"(, "o": {"a": 1}})")).kind,
            Mapping::Kind::Items);
}

TEST(Ga4Reject, Items) {
  EXPECT_NE(rejection(track("A", R"({"products": [{"price": 3}]})")).find("properties.products[0].product_id: GA4 needs an item_id"),
            std::string::npos);
  EXPECT_NE(rejection(track("A", R"({"products": [7]})")).find("properties.products[0]: an item must be an object"),
            std::string::npos);
  std::string many = "[";
  for (int i = 0; i < 201; i++) many += std::string(i ? "," : "") + R"({"sku": "s"})";
  EXPECT_NE(rejection(track("A", R"({"products": )" + many + "]}")).find("200 items"), std::string::npos);
}

TEST(Ga4Reject, UserIdOver256Characters) {
  std::string m = R"({"type": "track", "event": "A", "userId": ")" + std::string(257, 'u') +
                  R"(", "timestamp": "2025-03-10T11:00:00Z"})";
  EXPECT_EQ(rejection(m), "userId: GA4 takes a user_id of at most 256 characters");
}

TEST(Ga4Reject, OnlyThePast72HoursAndNotTheFuture) {
  std::string m = track("A");
  EXPECT_EQ(map(m, kT + 72 * kHour).kind, Mapping::Kind::Items);
  EXPECT_EQ(rejection(m, kT + 72 * kHour + kSecond), "timestamp: GA4 accepts events at most 72 hours old");
  EXPECT_EQ(map(m, kT - 15 * kMinute).kind, Mapping::Kind::Items);
  EXPECT_EQ(rejection(m, kT - 15 * kMinute - kSecond).rfind("timestamp: more than 15 minutes in the future", 0), 0u);
  EXPECT_EQ(rejection(R"({"type": "track", "event": "A", "anonymousId": "a"})").rfind("timestamp: ", 0), 0u);
}

TEST(Ga4Reject, UnknownTypesAndNonObjects) {
  EXPECT_EQ(rejection(R"({"type": "purchase", "anonymousId": "a", "timestamp": "2025-03-10T11:00:00Z"})").rfind("type: ", 0),
            0u);
  EXPECT_EQ(map("[1, 2]").kind, Mapping::Kind::Reject);
  EXPECT_EQ(map("\"track\"").kind, Mapping::Kind::Reject);
  EXPECT_EQ(rejection(R"({"type": "segment_enter", "userId": "u", "at": "2025-03-10T11:00:00Z"})").rfind("segment: ", 0),
            0u);
}

// ---------------------------------------------------------------------------
// build and read
// ---------------------------------------------------------------------------

TEST(Ga4Build, PathQueryHeadersAndBody) {
  Item a = item(track("Order Completed", R"({"revenue": 5, "currency": "EUR"})")), b = item(track("Signed Up"));
  connectors::Request r = ga4().build({&a, &b}, config(), kNow);
  EXPECT_EQ(r.path, "/mp/collect?measurement_id=G-ABC123&api_secret=s3%20cr%26t");
  EXPECT_EQ(r.headers, std::vector<std::string>{"Content-Type: application/json"});
  EXPECT_TRUE(same_json(r.body, R"({"client_id": "a-1", "user_id": "u-1", "timestamp_micros": )" + std::to_string(kT) +
                                    R"(, "events": [{"name": "purchase", "params": {"value": 5, "currency": "EUR"}},
                                                    {"name": "sign_up", "params": {}}]})"))
      << r.body;
}

TEST(Ga4Build, NoUserIdAndIdsThatNeedEscaping) {
  Item i = item(R"({"type": "track", "event": "A", "anonymousId": "a\n\"1\"", "timestamp": "2025-03-10T11:00:00Z"})");
  connectors::Request r = ga4().build({&i}, config(), kNow);
  EXPECT_TRUE(same_json(r.body, R"({"client_id": "a\n\"1\"", "timestamp_micros": )" + std::to_string(kT) +
                                    R"(, "events": [{"name": "a", "params": {}}]})"))
      << r.body;
}

Answer read(long status, std::string body = "") {
  Response r;
  r.status = status;
  r.body = std::move(body);
  if (status == 0) r.transport_error = "Connection refused";
  Item i = item(track("A"));
  return ga4().read(r, {&i, &i}, kNow);
}

TEST(Ga4Read, AnyTwoHundredIsDelivered) {
  for (long status : {200L, 204L}) {
    Answer a = read(status);
    EXPECT_TRUE(a.items.empty());
    EXPECT_EQ(a.whole.verdict, Verdict::Delivered);
    EXPECT_FALSE(a.outage);
    EXPECT_FALSE(a.split);
  }
}

TEST(Ga4Read, ThrottlingOutagesAndNoAnswerAreRetried) {
  for (long status : {0L, 429L, 500L, 503L}) {
    Answer a = read(status, "busy");
    EXPECT_EQ(a.whole.verdict, Verdict::Retry) << status;
    EXPECT_TRUE(a.outage) << status;
    EXPECT_FALSE(a.split);
  }
}

TEST(Ga4Read, OtherStatusesAreDead) {
  for (long status : {400L, 401L, 403L, 404L}) {
    Answer a = read(status, "nope");
    EXPECT_EQ(a.whole.verdict, Verdict::Dead) << status;
    EXPECT_EQ(a.whole.reason, "HTTP " + std::to_string(status) + ": nope");
    EXPECT_FALSE(a.outage);
    EXPECT_FALSE(a.split);
  }
}

// ---------------------------------------------------------------------------
// The validation server
// ---------------------------------------------------------------------------

TEST(Ga4Debug, PathUnderTheSameUrl) {
  EXPECT_EQ(connectors::ga4_debug_path(config()), "/debug/mp/collect?measurement_id=G-ABC123&api_secret=s3%20cr%26t");
}

TEST(Ga4Debug, ValidationMessagesInOneLine) {
  EXPECT_EQ(connectors::ga4_validation(R"({"validationMessages": []})"), "");
  EXPECT_EQ(connectors::ga4_validation("{}"), "");
  EXPECT_EQ(connectors::ga4_validation(R"({"validationMessages": [
      {"fieldPath": "events", "description": "Event at index: [0] has invalid name [_bad].\nNames must start with a letter.",
       "validationCode": "NAME_INVALID"},
      {"fieldPath": "client_id", "description": "Missing client_id.", "validationCode": "VALUE_REQUIRED"}]})"),
            "events: Event at index: [0] has invalid name [_bad]. Names must start with a letter. (NAME_INVALID); "
            "client_id: Missing client_id. (VALUE_REQUIRED)");
  EXPECT_NE(connectors::ga4_validation("<html>502</html>").find("not JSON"), std::string::npos);
}

}  // namespace
}  // namespace cdp
