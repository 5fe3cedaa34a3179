// The braze kind (core/connectors/braze.cpp): its config, the mapping of every
// message type to /users/track objects (standard and custom attributes,
// events, purchases, segment membership), what it rejects and skips before
// sending, the 75-per-array cap, the request it builds, and how it reads
// every answer Braze documents: success, non-fatal errors by array and
// index, fatal 400s, bad keys, 429 with X-RateLimit-Reset, 5xx.
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "core/connectors/connector.hpp"
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
const Micros kNow = at("2025-03-10T12:00:00Z");

const connectors::Connector& braze() {
  const connectors::Connector* c = connectors::find("braze");
  EXPECT_NE(c, nullptr);
  return *c;
}

Config config(std::string_view text = R"({"api_key": "k-123"})") { return braze().check_config(json(text)); }

// "field: rule" of the error check_config raises, or "<no error>".
std::string config_error(std::string_view text) {
  try {
    braze().check_config(json(text));
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
    return e.field() + ": " + e.rule();
  }
  return "<no error>";
}

Mapping map(std::string_view message, const Config& c = config()) { return braze().map(json(message), c, kNow); }

// The items of a message that must map to items.
std::vector<Item> items(std::string_view message, const Config& c = config()) {
  Mapping m = map(message, c);
  EXPECT_EQ(m.kind, Mapping::Kind::Items) << message << ": " << m.reason;
  return m.items;
}

// The one item of a message, checked to go in `array`.
std::string one(std::string_view message, const char* array, const Config& c = config()) {
  std::vector<Item> list = items(message, c);
  EXPECT_EQ(list.size(), 1u) << message;
  if (list.size() != 1) return "{}";
  EXPECT_EQ(list[0].array, array);
  EXPECT_EQ(list[0].group, "");
  return list[0].json;
}

std::string rejected(std::string_view message) {
  Mapping m = map(message);
  EXPECT_EQ(m.kind, Mapping::Kind::Reject) << message;
  return m.reason;
}

std::string skipped(std::string_view message) {
  Mapping m = map(message);
  EXPECT_EQ(m.kind, Mapping::Kind::Skip) << message;
  return m.reason;
}

#define EXPECT_JSON(got, want) EXPECT_TRUE(same_json(got, want)) << "got:  " << (got) << "\nwant: " << (want)

std::vector<const Item*> pointers(const std::vector<Item>& list) {
  std::vector<const Item*> out;
  for (const Item& i : list) out.push_back(&i);
  return out;
}

Item of(const char* array, std::string json) { return {std::move(json), "", array, "u"}; }

Answer read(long status, std::string body, const std::vector<Item>& list, std::string reset = "",
            std::string retry_after = "") {
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.rate_limit_reset = std::move(reset);
  r.retry_after = std::move(retry_after);
  return braze().read(r, pointers(list), kNow);
}

// ---------------------------------------------------------------------------
// The kind and its config
// ---------------------------------------------------------------------------

TEST(BrazeConfig, TheKindHasNoDefaultUrlAndBrazesCaps) {
  EXPECT_EQ(braze().kind(), "braze");
  EXPECT_EQ(braze().default_url(), "");  // each Braze instance has its own REST endpoint
  connectors::Caps caps = braze().caps();
  EXPECT_EQ(caps.max_items, 75);
  EXPECT_EQ(caps.max_bytes, 4000000u);
  EXPECT_EQ(caps.requests_per_second, 1000);  // 3,000 requests per 3 seconds
}

TEST(BrazeConfig, ApiKeyRequiredAppIdOptional) {
  Config c = config(R"({"api_key": "k-123"})");
  EXPECT_EQ(c.at("api_key"), "k-123");
  EXPECT_EQ(c.count("app_id"), 0u);
  Config with_app = config(R"({"api_key": "k", "app_id": "app-1"})");
  EXPECT_EQ(with_app.at("app_id"), "app-1");
  EXPECT_EQ(braze().secrets(c), std::vector<std::string>{"k-123"});
}

TEST(BrazeConfig, Refusals) {
  EXPECT_EQ(config_error("{}"), "api_key: is required");
  EXPECT_EQ(config_error(R"({"api_key": ""})"), "api_key: is required");
  EXPECT_EQ(config_error(R"({"api_key": 12})"), "api_key: must be a string");
  EXPECT_EQ(config_error(R"({"api_key": "a\nb"})"), "api_key: must not contain a line break");
  EXPECT_EQ(config_error(R"({"api_key": "k", "app_id": ""})"), "app_id: must not be empty (leave it out to send no app_id)");
  EXPECT_EQ(config_error(R"({"api_key": "k", "region": "eu"})"), "region: unknown key: this kind's config has api_key, app_id");
  EXPECT_EQ(config_error("[]"), ": must be an object of strings");
}

// ---------------------------------------------------------------------------
// identify: attributes
// ---------------------------------------------------------------------------

TEST(BrazeIdentify, StandardFieldsAndCustomAttributes) {
  std::string got = one(R"({"type": "identify", "userId": "u-1", "anonymousId": "a-1",
    "timestamp": "2025-03-10T11:00:00+00:00",
    "traits": {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace", "phone": "+15551234567",
               "gender": "female", "birthday": "1815-12-10T00:00:00+01:00", "language": "en",
               "timezone": "Europe/London", "address": {"city": "London", "country": "GB", "street": "1 St James's Sq"},
               "plan": "pro", "logins": 3, "vip": true, "tags": ["a", "b"], "company": {"name": "Analytical", "size": 10}}})",
                        "attributes");
  EXPECT_JSON(got, R"({"external_id": "u-1", "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace",
    "phone": "+15551234567", "gender": "F", "dob": "1815-12-10", "country": "GB", "home_city": "London",
    "language": "en", "time_zone": "Europe/London",
    "address": {"city": "London", "country": "GB", "street": "1 St James's Sq"},
    "plan": "pro", "logins": 3, "vip": true, "tags": ["a", "b"], "company": {"name": "Analytical", "size": 10}})");
}

TEST(BrazeIdentify, SnakeCaseTraitsAndTopLevelCityWin) {
  std::string got = one(R"({"type": "identify", "userId": "u-1",
    "traits": {"first_name": "Ada", "last_name": "L", "city": "Paris", "country": "FR", "dob": "1990-05-01",
               "time_zone": "Europe/Paris", "phone": 15551234567, "address": {"city": "Lyon"}}})",
                        "attributes");
  EXPECT_JSON(got, R"({"external_id": "u-1", "first_name": "Ada", "last_name": "L", "phone": "15551234567",
    "dob": "1990-05-01", "country": "FR", "home_city": "Paris", "time_zone": "Europe/Paris",
    "address": {"city": "Lyon"}})");
}

TEST(BrazeIdentify, GenderCodes) {
  auto gender = [](const char* g) {
    rapidjson::Document d = json(one(std::string(R"({"type": "identify", "userId": "u", "traits": {"gender": ")") + g +
                                         "\"}}",
                                     "attributes"));
    return d.HasMember("gender") ? std::string(d["gender"].GetString()) : std::string("<none>");
  };
  EXPECT_EQ(gender("Male"), "M");
  EXPECT_EQ(gender("f"), "F");
  EXPECT_EQ(gender("non-binary"), "O");
  EXPECT_EQ(gender("prefer not to say"), "P");
  EXPECT_EQ(gender("N/A"), "N");
  EXPECT_EQ(gender("unicorn"), "<none>");  // not one of Braze's codes: left out, not sent as a custom attribute
}

TEST(BrazeIdentify, IdentityTraitsAreNotSent) {
  std::string got = one(R"({"type": "identify", "userId": "u-1",
    "traits": {"external_id": "other", "braze_id": "b", "user_alias": {"alias_name": "x", "alias_label": "y"},
               "_update_existing_only": true, "push_token_import": true, "plan": "pro"}})",
                        "attributes");
  EXPECT_JSON(got, R"({"external_id": "u-1", "plan": "pro"})");
}

TEST(BrazeIdentify, AnonymousGetsAnAliasThatCreatesTheProfile) {
  std::vector<Item> list = items(R"({"type": "identify", "anonymousId": "a-9", "traits": {"plan": "free"}})");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].user, "a-9");
  EXPECT_JSON(list[0].json, R"({"user_alias": {"alias_name": "a-9", "alias_label": "anonymous_id"},
    "_update_existing_only": false, "plan": "free"})");
}

TEST(BrazeIdentify, NoTraitsSendsTheIdentityAlone) {
  std::vector<Item> list = items(R"({"type": "identify", "userId": "u-2"})");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].user, "u-2");
  EXPECT_JSON(list[0].json, R"({"external_id": "u-2"})");
}

TEST(BrazeIdentify, Rejections) {
  EXPECT_EQ(rejected(R"({"type": "identify", "traits": {"plan": "x"}})"),
            "userId: Braze needs an external_id (userId) or a user alias (anonymousId)");
  EXPECT_EQ(rejected(R"({"type": "identify", "userId": "u", "traits": {"$plan": "x"}})"),
            "traits.$plan: Braze refuses names that start with $");
  EXPECT_EQ(rejected(R"({"type": "identify", "userId": "u", "traits": {"email": 42}})"),
            "traits.email: Braze's email is a string");
  EXPECT_EQ(rejected(R"({"type": "identify", "userId": "u", "traits": {"birthday": "May 1st"}})"),
            "traits.birthday: must be a date (YYYY-MM-DD, optionally with a time): Braze's dob is YYYY-MM-DD");
  EXPECT_EQ(rejected(R"({"type": "identify", "userId": "u", "traits": {"address": {"country": ["GB"]}}})"),
            "traits.address.country: Braze's country is a string");
  std::string long_key(256, 'k');
  EXPECT_EQ(rejected(R"({"type": "identify", "userId": "u", "traits": {")" + long_key + R"(": 1}})"),
            "traits." + long_key + ": Braze takes names of at most 255 characters");
}

// ---------------------------------------------------------------------------
// track, page, screen: events
// ---------------------------------------------------------------------------

TEST(BrazeTrack, AnEventWithTimeAndProperties) {
  std::vector<Item> list = items(R"({"type": "track", "event": "Signed Up", "userId": "u-1", "anonymousId": "a-1",
    "timestamp": "2025-03-10T13:00:00.5+01:00", "messageId": "m-1",
    "properties": {"plan": "pro", "seats": 3, "meta": {"source": "ad"}}, "context": {"ip": "1.2.3.4"}})");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].array, "events");
  EXPECT_EQ(list[0].user, "u-1");
  EXPECT_JSON(list[0].json, R"({"external_id": "u-1", "time": "2025-03-10T12:00:00.500000Z", "name": "Signed Up",
    "properties": {"plan": "pro", "seats": 3, "meta": {"source": "ad"}}})");
}

TEST(BrazeTrack, AppIdAndAnAliasForAnonymousEvents) {
  std::string got = one(R"({"type": "track", "event": "Viewed", "anonymousId": "a-1",
    "timestamp": "2025-03-10T12:00:00Z"})",
                        "events", config(R"({"api_key": "k", "app_id": "app-7"})"));
  EXPECT_JSON(got, R"({"user_alias": {"alias_name": "a-1", "alias_label": "anonymous_id"},
    "_update_existing_only": false, "app_id": "app-7", "time": "2025-03-10T12:00:00.000000Z", "name": "Viewed"})");
}

TEST(BrazeTrack, PageAndScreenViews) {
  EXPECT_JSON(one(R"({"type": "page", "name": "Pricing", "category": "Docs", "userId": "u",
    "timestamp": "2025-03-10T12:00:00Z", "properties": {"url": "https://x.test/pricing", "name": "old"}})",
                  "events"),
              R"({"external_id": "u", "time": "2025-03-10T12:00:00.000000Z", "name": "Page Viewed",
    "properties": {"url": "https://x.test/pricing", "name": "Pricing", "category": "Docs"}})");
  EXPECT_JSON(one(R"({"type": "screen", "name": "Home", "userId": "u", "timestamp": "2025-03-10T12:00:00Z"})",
                  "events"),
              R"({"external_id": "u", "time": "2025-03-10T12:00:00.000000Z", "name": "Screen Viewed",
    "properties": {"name": "Home"}})");
}

TEST(BrazeTrack, TheTimeOfASegmentChangeStyleMessageFallsBackToAt) {
  EXPECT_JSON(one(R"({"type": "track", "event": "E", "userId": "u", "at": "2025-03-10T12:00:00Z"})", "events"),
              R"({"external_id": "u", "time": "2025-03-10T12:00:00.000000Z", "name": "E"})");
}

TEST(BrazeTrack, Rejections) {
  EXPECT_EQ(rejected(R"({"type": "track", "userId": "u", "timestamp": "2025-03-10T12:00:00Z"})"),
            "event: a track call needs an event name");
  EXPECT_EQ(rejected(R"({"type": "track", "event": "E", "userId": "u"})"),
            "timestamp: Braze needs the event's time (an ISO-8601 date-time)");
  EXPECT_EQ(rejected(R"({"type": "track", "event": "E", "timestamp": "2025-03-10T12:00:00Z"})"),
            "userId: Braze needs an external_id (userId) or a user alias (anonymousId)");
  EXPECT_EQ(rejected(R"({"type": "track", "event": "E", "userId": "u", "timestamp": "2025-03-10T12:00:00Z",
    "properties": {"time": 1}})"),
            "properties.time: is reserved by Braze for events");
  EXPECT_EQ(rejected(R"({"type": "track", "event": "E", "userId": "u", "timestamp": "2025-03-10T12:00:00Z",
    "properties": {"event_name": "x"}})"),
            "properties.event_name: is reserved by Braze for events");
  EXPECT_EQ(rejected(R"({"type": "track", "event": "E", "userId": "u", "timestamp": "2025-03-10T12:00:00Z",
    "properties": {"$revenue": 1}})"),
            "properties.$revenue: Braze refuses names that start with $");
  EXPECT_EQ(rejected(R"({"type": "page", "userId": "u", "timestamp": "2025-03-10T12:00:00Z",
    "properties": {"": 1}})"),
            "properties.: Braze refuses empty names");
}

TEST(BrazeTrack, NestedPropertiesOver100KbRejected) {
  std::string big(101 * 1024, 'x');
  EXPECT_EQ(rejected(R"({"type": "track", "event": "E", "userId": "u", "timestamp": "2025-03-10T12:00:00Z",
    "properties": {"list": [")" + big + R"("]}})"),
            "properties: properties holding arrays or objects may be at most 100 KB in Braze");
  // Without arrays or objects, Braze sets no such limit.
  EXPECT_EQ(map(R"({"type": "track", "event": "E", "userId": "u", "timestamp": "2025-03-10T12:00:00Z",
    "properties": {"text": ")" + big + R"("}})")
                .kind,
            Mapping::Kind::Items);
}

// ---------------------------------------------------------------------------
// Order Completed: purchases
// ---------------------------------------------------------------------------

TEST(BrazePurchase, OnePurchasePerProduct) {
  std::vector<Item> list = items(R"({"type": "track", "event": "Order Completed", "userId": "u-1",
    "timestamp": "2025-03-10T12:00:00Z",
    "properties": {"order_id": "o-1", "currency": "eur", "revenue": 35,
      "products": [{"product_id": "p-1", "sku": "S-1", "name": "Shirt", "price": 10, "quantity": 2, "size": "L"},
                   {"sku": "S-2", "name": "Hat", "price": 15.5},
                   {"name": "Sticker", "price": 0, "order_id": "own"}]}})",
                                 config(R"({"api_key": "k", "app_id": "app-1"})"));
  ASSERT_EQ(list.size(), 3u);
  for (const Item& i : list) {
    EXPECT_EQ(i.array, "purchases");
    EXPECT_EQ(i.user, "u-1");
  }
  EXPECT_JSON(list[0].json, R"({"external_id": "u-1", "app_id": "app-1", "time": "2025-03-10T12:00:00.000000Z",
    "product_id": "p-1", "currency": "EUR", "price": 10, "quantity": 2,
    "properties": {"sku": "S-1", "name": "Shirt", "size": "L", "order_id": "o-1"}})");
  EXPECT_JSON(list[1].json, R"({"external_id": "u-1", "app_id": "app-1", "time": "2025-03-10T12:00:00.000000Z",
    "product_id": "S-2", "currency": "EUR", "price": 15.5, "quantity": 1,
    "properties": {"name": "Hat", "order_id": "o-1"}})");
  EXPECT_JSON(list[2].json, R"({"external_id": "u-1", "app_id": "app-1", "time": "2025-03-10T12:00:00.000000Z",
    "product_id": "Sticker", "currency": "EUR", "price": 0, "quantity": 1, "properties": {"order_id": "own"}})");
}

TEST(BrazePurchase, AnOrderWithoutProductsIsOnePurchase) {
  EXPECT_JSON(one(R"({"type": "track", "event": "Order Completed", "anonymousId": "a-1",
    "timestamp": "2025-03-10T12:00:00Z", "properties": {"order_id": "o-9", "total": 129.9, "coupon": "X"}})",
                  "purchases"),
              R"({"user_alias": {"alias_name": "a-1", "alias_label": "anonymous_id"}, "_update_existing_only": false,
    "time": "2025-03-10T12:00:00.000000Z", "product_id": "o-9", "currency": "USD", "price": 129.9, "quantity": 1,
    "properties": {"coupon": "X"}})");
  EXPECT_JSON(one(R"({"type": "track", "event": "Order Completed", "userId": "u",
    "timestamp": "2025-03-10T12:00:00Z", "properties": {"revenue": 5, "total": 6, "products": []}})",
                  "purchases"),
              R"({"external_id": "u", "time": "2025-03-10T12:00:00.000000Z", "product_id": "order", "currency": "USD",
    "price": 5, "quantity": 1, "properties": {"total": 6}})");
}

TEST(BrazePurchase, Rejections) {
  auto order = [](const char* props) {
    return rejected(std::string(R"({"type": "track", "event": "Order Completed", "userId": "u",
      "timestamp": "2025-03-10T12:00:00Z", "properties": )") + props + "}");
  };
  EXPECT_EQ(order(R"({"currency": "EURO", "revenue": 1})"),
            "properties.currency: Braze needs a 3-letter ISO 4217 currency code");
  EXPECT_EQ(order(R"({"currency": 978, "revenue": 1})"),
            "properties.currency: Braze needs a 3-letter ISO 4217 currency code");
  EXPECT_EQ(order(R"({"order_id": "o"})"),
            "properties.revenue: Braze needs a price: the order's revenue or total (a number), or products");
  EXPECT_EQ(order(R"({"revenue": "12.50"})"),
            "properties.revenue: Braze needs a price: the order's revenue or total (a number), or products");
  EXPECT_EQ(order(R"({"products": [{"price": 1}]})"),
            "properties.products[0]: Braze needs a product_id (product_id, sku or name)");
  EXPECT_EQ(order(R"({"products": [{"sku": "a", "price": 1}, {"sku": "b"}]})"),
            "properties.products[1].price: Braze needs a price (a number)");
  EXPECT_EQ(order(R"({"products": [{"sku": "a", "price": 1, "quantity": 101}]})"),
            "properties.products[0].quantity: Braze takes a whole number from 1 to 100");
  EXPECT_EQ(order(R"({"products": [{"sku": "a", "price": 1, "quantity": 1.5}]})"),
            "properties.products[0].quantity: Braze takes a whole number from 1 to 100");
  EXPECT_EQ(order(R"({"products": [{"sku": "a", "price": 1, "quantity": 0}]})"),
            "properties.products[0].quantity: Braze takes a whole number from 1 to 100");
  EXPECT_EQ(order(R"({"products": ["a"]})"), "properties.products[0]: must be an object");
  EXPECT_EQ(order(R"({"products": [{"sku": "a", "price": 1, "$color": "red"}]})"),
            "properties.products[0].$color: Braze refuses names that start with $");
  std::string big(51 * 1024, 'x');
  EXPECT_EQ(order((R"({"products": [{"sku": "a", "price": 1, "notes": [")" + big + R"("]}]})").c_str()),
            "properties.products[0]: properties holding arrays or objects may be at most 50 KB in Braze");
}

TEST(BrazePurchase, AtMost75ProductsSinceARowNeverSplitsAcrossRequests) {
  auto order = [](int n) {
    std::string products;
    for (int i = 0; i < n; i++) products += (i ? "," : "") + std::string(R"({"sku": "s)") + std::to_string(i) + R"(", "price": 1})";
    return map(R"({"type": "track", "event": "Order Completed", "userId": "u", "timestamp": "2025-03-10T12:00:00Z",
      "properties": {"products": [)" + products + "]}}");
  };
  Mapping fits = order(75);
  EXPECT_EQ(fits.kind, Mapping::Kind::Items);
  EXPECT_EQ(fits.items.size(), 75u);
  Mapping over = order(76);
  EXPECT_EQ(over.kind, Mapping::Kind::Reject);
  EXPECT_EQ(over.reason, "properties.products: more than 75 products; a /users/track request holds at most 75 purchases");
}

// ---------------------------------------------------------------------------
// Segment changes, and what has no counterpart
// ---------------------------------------------------------------------------

TEST(BrazeSegments, EnterAndExitEditTheArrayAttribute) {
  const char* enter = R"({"type": "segment_enter", "segment": "vip", "segment_id": 3, "profile_id": 7,
    "at": "2025-03-10T12:00:00+00:00", "messageId": "cdp-outbox-1", "userId": "u-1", "traits": {"plan": "pro"}})";
  std::vector<Item> list = items(enter);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].array, "attributes");
  EXPECT_EQ(list[0].user, "u-1");
  EXPECT_JSON(list[0].json, R"({"external_id": "u-1", "cdp_segments": {"add": ["vip"]}})");
  EXPECT_JSON(one(R"({"type": "segment_exit", "segment": "vip", "userId": "u-1", "at": "2025-03-10T12:00:00Z"})",
                  "attributes"),
              R"({"external_id": "u-1", "cdp_segments": {"remove": ["vip"]}})");
}

TEST(BrazeSegments, AProfileWithoutUserIdIsRejected) {
  EXPECT_EQ(rejected(R"({"type": "segment_enter", "segment": "vip", "profile_id": 7, "at": "2025-03-10T12:00:00Z"})"),
            "userId: Braze needs an external_id (userId) or a user alias (anonymousId)");
  EXPECT_EQ(rejected(R"({"type": "segment_exit", "userId": "u", "at": "2025-03-10T12:00:00Z"})"),
            "segment: a segment change needs the segment's name");
}

TEST(BrazeSkips, GroupAliasDeleteAndUnknownTypes) {
  EXPECT_EQ(skipped(R"({"type": "group", "userId": "u", "groupId": "g"})"), "a group call: /users/track has no groups");
  EXPECT_EQ(skipped(R"({"type": "alias", "userId": "u", "previousId": "a"})"),
            "an alias call: Braze merges users with /users/identify, not /users/track");
  EXPECT_EQ(skipped(R"({"type": "delete", "userId": "u", "userIds": ["u"], "messageId": "d-1"})"),
            "a deletion notice: Braze deletes users with /users/delete, not /users/track");
  EXPECT_EQ(skipped(R"({"type": "bogus", "userId": "u"})"), "a message of type \"bogus\": /users/track has no counterpart");
}

TEST(BrazeMap, NeverThrowsOnOddShapes) {
  for (const char* m : {"null", "[]", "42", R"({"type": 1})", R"({"type": "identify", "userId": "u", "traits": []})",
                        R"({"type": "track", "event": "Order Completed", "userId": "u", "timestamp": "2025-03-10T12:00:00Z",
                            "properties": []})",
                        R"({"type": "page", "userId": "u", "timestamp": "2025-03-10T12:00:00Z", "properties": 3})"}) {
    Mapping got;
    EXPECT_NO_THROW(got = map(m)) << m;
  }
}

// ---------------------------------------------------------------------------
// build
// ---------------------------------------------------------------------------

TEST(BrazeBuild, OneBodyWithAnArrayPerKindInRequestOrder) {
  std::vector<Item> list = {of("events", R"({"name":"e0"})"), of("attributes", R"({"a":0})"),
                            of("purchases", R"({"product_id":"p0"})"), of("events", R"({"name":"e1"})"),
                            of("attributes", R"({"a":1})")};
  connectors::Request r = braze().build(pointers(list), config(), kNow);
  EXPECT_EQ(r.path, "/users/track");
  EXPECT_EQ(r.headers, (std::vector<std::string>{"Content-Type: application/json", "Authorization: Bearer k-123"}));
  EXPECT_EQ(r.body, R"({"attributes":[{"a":0},{"a":1}],"events":[{"name":"e0"},{"name":"e1"}],"purchases":[{"product_id":"p0"}]})");
}

TEST(BrazeBuild, EmptyArraysLeftOut) {
  std::vector<Item> list = {of("events", R"({"name":"e0"})")};
  EXPECT_EQ(braze().build(pointers(list), config(), kNow).body, R"({"events":[{"name":"e0"}]})");
  std::vector<Item> attrs = {of("attributes", R"({"a":0})")};
  EXPECT_EQ(braze().build(pointers(attrs), config(), kNow).body, R"({"attributes":[{"a":0}]})");
}

TEST(BrazeBuild, CapsArePerArray) {
  // What the planner may put in one request: 75 of each array.
  std::vector<Item> list;
  for (int i = 0; i < 75; i++)
    for (const char* a : {"attributes", "events", "purchases"}) list.push_back(of(a, "{}"));
  rapidjson::Document body = json(braze().build(pointers(list), config(), kNow).body);
  for (const char* a : {"attributes", "events", "purchases"}) EXPECT_EQ(body[a].Size(), 75u) << a;
  // What map() gives each message type: the array the planner counts it in.
  EXPECT_EQ(items(R"({"type": "identify", "userId": "u"})")[0].array, "attributes");
  EXPECT_EQ(items(R"({"type": "segment_enter", "segment": "s", "userId": "u", "at": "2025-03-10T12:00:00Z"})")[0].array,
            "attributes");
  EXPECT_EQ(items(R"({"type": "page", "userId": "u", "timestamp": "2025-03-10T12:00:00Z"})")[0].array, "events");
  EXPECT_EQ(items(R"({"type": "track", "event": "Order Completed", "userId": "u", "timestamp": "2025-03-10T12:00:00Z",
    "properties": {"total": 1}})")[0]
                .array,
            "purchases");
}

TEST(BrazeBuild, MappedItemsMakeAValidBody) {
  std::vector<Item> list = items(R"({"type": "identify", "userId": "u", "traits": {"plan": "x"}})");
  std::vector<Item> more = items(R"({"type": "track", "event": "E", "userId": "u", "timestamp": "2025-03-10T12:00:00Z"})");
  list.insert(list.end(), more.begin(), more.end());
  EXPECT_JSON(braze().build(pointers(list), config(), kNow).body,
              R"({"attributes": [{"external_id": "u", "plan": "x"}],
                  "events": [{"external_id": "u", "time": "2025-03-10T12:00:00.000000Z", "name": "E"}]})");
}

// ---------------------------------------------------------------------------
// read
// ---------------------------------------------------------------------------

std::vector<Item> request() {
  return {of("events", "{}"), of("attributes", "{}"), of("events", "{}"), of("purchases", "{}"), of("events", "{}")};
}

TEST(BrazeRead, SuccessDeliversEverything) {
  Answer a = read(201, R"({"message": "success", "attributes_processed": 1, "events_processed": 3, "purchases_processed": 1})",
                  request());
  EXPECT_TRUE(a.items.empty());
  EXPECT_EQ(a.whole.verdict, Verdict::Delivered);
  EXPECT_FALSE(a.outage);
  EXPECT_FALSE(a.split);
  // A 202 "queued" (maintenance: Braze queued the call) and a body that is not JSON: delivered too.
  EXPECT_EQ(read(202, R"({"message": "queued"})", request()).whole.verdict, Verdict::Delivered);
  EXPECT_EQ(read(201, "ok", request()).whole.verdict, Verdict::Delivered);
}

TEST(BrazeRead, NonFatalErrorsNameTheItemByArrayAndIndex) {
  Answer a = read(201, R"({"message": "success", "events_processed": 2, "errors": [
      {"type": "'name' is required", "input_array": "events", "index": 1},
      {"type": "'product_id' must be a string", "input_array": "purchases", "index": 0},
      {"type": "out of range", "input_array": "events", "index": 9},
      {"type": "no array"}]})",
                  request());
  ASSERT_EQ(a.items.size(), 5u);
  EXPECT_EQ(a.items[0].verdict, Verdict::Delivered);
  EXPECT_EQ(a.items[1].verdict, Verdict::Delivered);
  EXPECT_EQ(a.items[2].verdict, Verdict::Dead);  // the second event
  EXPECT_EQ(a.items[2].reason, "'name' is required");
  EXPECT_EQ(a.items[3].verdict, Verdict::Dead);  // the first purchase
  EXPECT_EQ(a.items[3].reason, "'product_id' must be a string");
  EXPECT_EQ(a.items[4].verdict, Verdict::Delivered);
  EXPECT_FALSE(a.outage);
}

TEST(BrazeRead, ErrorsThatNameNoItemDeliverTheRequest) {
  // Braze processed the rest; events are not deduplicated, so nothing is resent.
  Answer a = read(201, R"({"message": "success", "errors": ["something minor"]})", request());
  EXPECT_TRUE(a.items.empty());
  EXPECT_EQ(a.whole.verdict, Verdict::Delivered);
}

TEST(BrazeRead, AFatal400KillsTheListedItemsAndResendsTheRest) {
  Answer a = read(400, R"({"message": "Invalid input", "errors": [
      {"type": "'time' must be a valid datetime", "input_array": "attributes", "index": 0}]})",
                  request());
  ASSERT_EQ(a.items.size(), 5u);
  EXPECT_EQ(a.items[1].verdict, Verdict::Dead);
  EXPECT_EQ(a.items[1].reason, "'time' must be a valid datetime");
  for (size_t i : {0u, 2u, 3u, 4u}) EXPECT_EQ(a.items[i].verdict, Verdict::RetryNow) << i;
  EXPECT_FALSE(a.split);
  EXPECT_FALSE(a.outage);
}

TEST(BrazeRead, AFatal400ThatNamesNothingSplitsTheRequest) {
  Answer a = read(400, R"({"message": "Bad Request"})", request());
  EXPECT_TRUE(a.items.empty());
  EXPECT_TRUE(a.split);
  EXPECT_FALSE(a.outage);
  // A lone item is dead, with Braze's words.
  std::vector<Item> lone = {of("events", "{}")};
  Answer b = read(400, R"({"message": "Invalid input", "errors": [{"type": "bad", "input_array": "events", "index": 0}]})",
                  lone);
  EXPECT_TRUE(b.items.empty());
  EXPECT_FALSE(b.split);
  EXPECT_EQ(b.whole.verdict, Verdict::Dead);
  EXPECT_EQ(b.whole.reason, R"(HTTP 400: {"message": "Invalid input", "errors": [{"type": "bad", "input_array": "events", "index": 0}]})");
}

TEST(BrazeRead, TooLargeSplits) {
  Answer a = read(413, "Request Entity Too Large", request());
  EXPECT_TRUE(a.split);
  std::vector<Item> lone = {of("events", "{}")};
  EXPECT_EQ(read(413, "Request Entity Too Large", lone).whole.verdict, Verdict::Dead);
}

TEST(BrazeRead, ABadKeyIsDead) {
  for (long status : {401L, 403L, 404L}) {
    Answer a = read(status, R"({"message": "Invalid API key: k-1"})", request());
    EXPECT_TRUE(a.items.empty());
    EXPECT_EQ(a.whole.verdict, Verdict::Dead) << status;
    EXPECT_EQ(a.whole.reason, "HTTP " + std::to_string(status) + R"(: {"message": "Invalid API key: k-1"})");
    EXPECT_FALSE(a.outage);
    EXPECT_FALSE(a.split);
  }
}

TEST(BrazeRead, RateLimitedWaitsForTheReset) {
  std::string reset = std::to_string(kNow / kSecond + 2);
  Answer a = read(429, R"({"message": "Rate limit exceeded"})", request(), reset);
  EXPECT_TRUE(a.items.empty());
  EXPECT_EQ(a.whole.verdict, Verdict::Retry);
  EXPECT_EQ(a.whole.delay, 2 * kSecond);
  EXPECT_TRUE(a.outage);  // the workspace's limit, not one user's
  EXPECT_EQ(a.whole.reason, R"(HTTP 429: {"message": "Rate limit exceeded"})");
  // A reset already past: the backoff decides. Retry-After when there is no reset.
  EXPECT_EQ(read(429, "", request(), std::to_string(kNow / kSecond - 5)).whole.delay, 0);
  EXPECT_EQ(read(429, "", request(), "", "7").whole.delay, 7 * kSecond);
  EXPECT_EQ(read(429, "", request(), "soon").whole.delay, 0);
  // At most an hour, whatever the header says.
  EXPECT_EQ(read(429, "", request(), std::to_string(kNow / kSecond + 86400)).whole.delay, 3600 * kSecond);
}

TEST(BrazeRead, ServerErrorsAndNoAnswerAreRetriedAsAnOutage) {
  for (long status : {500L, 502L, 503L, 0L}) {
    Answer a = read(status, "", request());
    EXPECT_EQ(a.whole.verdict, Verdict::Retry) << status;
    EXPECT_TRUE(a.outage) << status;
  }
}

}  // namespace
}  // namespace cdp
