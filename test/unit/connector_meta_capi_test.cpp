// Kind "meta_capi" (core/connectors/meta_capi.cpp): its config, the mapping
// of every message type to Conversions API events, the hashing of customer
// information against Meta's published examples, the rules checked before
// sending (one bad event fails a whole request), the request it builds, and
// how it reads Meta's answers: success, refusals, bad tokens, throttling.
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "core/connectors/connector.hpp"
#include "core/delivery.hpp"
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
constexpr Micros kDay = 86400 * kSecond;

const Micros kNow = at("2025-03-10T12:00:00Z");
const Micros kT = at("2025-03-10T11:00:00Z");  // the events' time
const std::string kTime = std::to_string(kT / kSecond);

// Meta's own examples (Customer Information Parameters).
const char* const kJohnEmail = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";  // john_smith@gmail.com
const char* const kPhone = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176";      // 16505551212
const char* const kMary = "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec";       // mary

const connectors::Connector& meta() { return *connectors::find("meta_capi"); }

Config config(std::string_view extra = "") {
  return meta().check_config(json(R"({"pixel_id": "1234567890", "access_token": "EAAB-token")" + std::string(extra) + "}"));
}

Mapping map(std::string_view message, const Config& c = config(), Micros now = kNow) {
  return meta().map(json(message), c, now);
}

Item item(std::string_view message, const Config& c = config()) {
  Mapping m = map(message, c);
  EXPECT_EQ(m.kind, Mapping::Kind::Items) << message << ": " << m.reason;
  EXPECT_EQ(m.items.size(), 1u);
  return m.items.empty() ? Item{} : m.items[0];
}

std::string rejection(std::string_view message, const Config& c = config(), Micros now = kNow) {
  Mapping m = map(message, c, now);
  EXPECT_EQ(m.kind, Mapping::Kind::Reject) << message;
  return m.reason;
}

std::pair<std::string, std::string> config_error(std::string_view config) {
  try {
    meta().check_config(json(config));
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
    return {e.field(), e.what()};
  }
  return {"<no error>", ""};
}

// A website track call with what Meta requires of one.
std::string track(std::string_view event, std::string_view properties = "{}",
                  std::string_view context = R"({"userAgent": "Mozilla/5.0", "page": {"url": "https://shop.example/cart"}})") {
  return R"({"type": "track", "event": ")" + std::string(event) + R"(", "userId": "u-1", "anonymousId": "a-1",
             "messageId": "m-1", "timestamp": "2025-03-10T11:00:00+00:00", "context": )" +
         std::string(context) + R"(, "properties": )" + std::string(properties) + "}";
}

rapidjson::Document event_of(std::string_view message, const Config& c = config()) { return json(item(message, c).json); }

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

TEST(MetaCapiConfig, PixelAndTokenRequired) {
  EXPECT_EQ(config_error(R"({"access_token": "t"})").first, "pixel_id");
  EXPECT_EQ(config_error(R"({"pixel_id": "123"})").first, "access_token");
  EXPECT_EQ(config_error(R"({"pixel_id": "123", "access_token": ""})").first, "access_token");
}

TEST(MetaCapiConfig, UnknownKeysRefused) {
  auto [field, message] = config_error(R"({"pixel_id": "123", "access_token": "t", "dataset": "x"})");
  EXPECT_EQ(field, "dataset");
  EXPECT_NE(message.find("pixel_id, access_token, api_version, action_source, test_event_code"), std::string::npos)
      << message;
  EXPECT_EQ(config_error(R"({"pixel_id": 123, "access_token": "t"})").first, "pixel_id");
}

TEST(MetaCapiConfig, ValuesChecked) {
  EXPECT_EQ(config_error(R"({"pixel_id": "12a", "access_token": "t"})").first, "pixel_id");
  for (const char* v : {"21.0", "v21", "v21.", "va.b", "v21.0.1"})
    EXPECT_EQ(config_error(R"({"pixel_id": "1", "access_token": "t", "api_version": ")" + std::string(v) + "\"}").first,
              "api_version")
        << v;
  EXPECT_EQ(config_error(R"({"pixel_id": "1", "access_token": "t", "action_source": "web"})").first, "action_source");
}

TEST(MetaCapiConfig, DefaultsFilledIn) {
  Config c = config();
  EXPECT_EQ(c.at("api_version"), "v21.0");
  EXPECT_EQ(c.at("action_source"), "website");
  EXPECT_EQ(c.count("test_event_code"), 0u);
  Config d = config(R"(, "api_version": "v19.0", "action_source": "physical_store", "test_event_code": "TEST1")");
  EXPECT_EQ(d.at("api_version"), "v19.0");
  EXPECT_EQ(d.at("action_source"), "physical_store");
  EXPECT_EQ(d.at("test_event_code"), "TEST1");
}

TEST(MetaCapiConfig, SecretsUrlAndCaps) {
  EXPECT_EQ(meta().kind(), "meta_capi");
  EXPECT_EQ(meta().secrets(config()), std::vector<std::string>{"EAAB-token"});
  EXPECT_EQ(meta().default_url(), "https://graph.facebook.com");
  EXPECT_EQ(meta().caps().max_items, 1000);
  EXPECT_EQ(meta().caps().max_bytes, 1u << 20);
}

// ---------------------------------------------------------------------------
// Mapping
// ---------------------------------------------------------------------------

TEST(MetaCapiMap, OrderCompletedIsAPurchase) {
  Item i = item(track("Order Completed", R"({"order_id": "o-1", "revenue": 25.5, "currency": "EUR", "coupon": "SPRING",
      "email": "ignored@example.com", "products": [{"product_id": "p-1", "price": 12.75, "quantity": 2},
                                                   {"sku": "S2", "price": 3}, {"name": "no id"}],
      "details": {"nested": true}})",
                      R"({"ip": "203.0.113.9", "userAgent": "Mozilla/5.0", "fbp": "fb.1.1.1", "fbc": "fb.1.1.abc",
                          "page": {"url": "https://shop.example/thanks"},
                          "traits": {"email": " John_Smith@gmail.com ", "phone": "+1 (650) 555-1212",
                                     "firstName": "Mary", "last_name": "O'Neil"}})"));
  std::string external = delivery::sha256_hex("u-1"), oneil = delivery::sha256_hex("oneil");
  EXPECT_TRUE(same_json(i.json, R"({"event_name": "Purchase", "event_time": )" + kTime + R"(, "event_id": "m-1",
      "action_source": "website", "event_source_url": "https://shop.example/thanks",
      "user_data": {"em": [")" + kJohnEmail + R"("], "ph": [")" + kPhone + R"("], "fn": [")" + kMary + R"("],
                    "ln": [")" + oneil + R"("], "external_id": [")" + external + R"("],
                    "client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0",
                    "fbp": "fb.1.1.1", "fbc": "fb.1.1.abc"},
      "custom_data": {"value": 25.5, "currency": "EUR", "order_id": "o-1", "content_ids": ["p-1", "S2"],
                      "contents": [{"id": "p-1", "quantity": 2, "item_price": 12.75}, {"id": "S2", "item_price": 3}],
                      "content_type": "product", "num_items": 3, "coupon": "SPRING"}})"))
      << i.json;
  EXPECT_EQ(i.group, "");
  EXPECT_EQ(i.user, "u-1");
}

TEST(MetaCapiMap, EverySpecNameHasItsStandardEvent) {
  const std::pair<const char*, const char*> names[] = {
      {"Order Completed", "Purchase"},          {"Product Added", "AddToCart"},
      {"Checkout Started", "InitiateCheckout"}, {"Product Viewed", "ViewContent"},
      {"Signed Up", "CompleteRegistration"},    {"Products Searched", "Search"},
      {"Payment Info Entered", "AddPaymentInfo"}, {"Product Added to Wishlist", "AddToWishlist"},
      {"Lead Generated", "Lead"},               {"Subscription Started", "Subscribe"},
      {"Video Played", "Video Played"}};
  for (auto [spec, standard] : names)
    EXPECT_EQ(std::string(event_of(track(spec, R"({"value": 1, "currency": "EUR"})"))["event_name"].GetString()),
              standard)
        << spec;
}

TEST(MetaCapiMap, SearchStringAndCustomProperties) {
  rapidjson::Document d = event_of(track("Products Searched", R"({"query": "mug", "page": 2, "in_stock": true})"));
  EXPECT_TRUE(same_json(to_json(d["custom_data"]), R"({"search_string": "mug", "page": 2, "in_stock": true})"));
}

TEST(MetaCapiMap, PageIsAPageView) {
  rapidjson::Document d = event_of(R"({"type": "page", "name": "Pricing", "anonymousId": "a-1", "messageId": "m-2",
      "timestamp": "2025-03-10T11:00:00Z", "properties": {"url": "https://shop.example/pricing", "plan": "pro"},
      "context": {"userAgent": "Mozilla/5.0", "ip": "203.0.113.9"}})");
  EXPECT_TRUE(same_json(to_json(d), R"({"event_name": "PageView", "event_time": )" + kTime + R"(, "event_id": "m-2",
      "action_source": "website", "event_source_url": "https://shop.example/pricing",
      "user_data": {"client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0"},
      "custom_data": {"plan": "pro"}})"))
      << to_json(d);
}

TEST(MetaCapiMap, SegmentChangesAreSystemGeneratedAudienceEvents) {
  for (auto [type, name] : {std::pair{"segment_enter", "AudienceEntered"}, std::pair{"segment_exit", "AudienceExited"}}) {
    rapidjson::Document d = event_of(R"({"type": ")" + std::string(type) + R"(", "segment": "vip", "segment_id": 3,
        "profile_id": 9, "at": "2025-03-10T11:00:00+00:00", "messageId": "cdp-outbox-5", "userId": "u-9",
        "traits": {"email": "john_smith@gmail.com", "plan": "pro"}})");
    EXPECT_TRUE(same_json(to_json(d), R"({"event_name": ")" + std::string(name) + R"(", "event_time": )" + kTime +
                                          R"(, "event_id": "cdp-outbox-5", "action_source": "system_generated",
        "user_data": {"em": [")" + kJohnEmail + R"("], "external_id": [")" + delivery::sha256_hex("u-9") + R"("]},
        "custom_data": {"audience_key": "vip"}})"))
        << to_json(d);
  }
}

TEST(MetaCapiMap, OtherTypesAreSkipped) {
  for (const char* type : {"identify", "group", "alias", "screen", "delete"}) {
    Mapping m = map(R"({"type": ")" + std::string(type) + R"(", "userId": "u-1", "messageId": "m",
                       "timestamp": "2025-03-10T11:00:00Z"})");
    EXPECT_EQ(m.kind, Mapping::Kind::Skip) << type;
    EXPECT_FALSE(m.reason.empty()) << type;
  }
}

TEST(MetaCapiMap, HashedValuesAreNotHashedAgain) {
  // As the destination's PII policy leaves them ("pii": {"hash": ["context.traits.email", "userId"]}).
  std::string hashed_user = delivery::sha256_hex("u-1");
  rapidjson::Document d = event_of(R"({"type": "track", "event": "A", "userId": ")" + hashed_user + R"(",
      "messageId": "m", "timestamp": "2025-03-10T11:00:00Z", "context": {"userAgent": "UA",
      "page": {"url": "https://e.com/"}, "traits": {"email": ")" + kJohnEmail + R"(", "phone": 16505551212}}})");
  EXPECT_TRUE(same_json(to_json(d["user_data"]), R"({"em": [")" + std::string(kJohnEmail) + R"("], "ph": [")" + kPhone +
                                                    R"("], "external_id": [")" + hashed_user + R"("],
                                                    "client_user_agent": "UA"})"))
      << to_json(d["user_data"]);
}

TEST(MetaCapiMap, PhoneDigitsWithoutLeadingZeros) {
  rapidjson::Document d = event_of(track("A", R"({"phone": "00 1-650-555-1212"})"));
  EXPECT_EQ(std::string(d["user_data"]["ph"][0].GetString()), kPhone);
  // No digits at all: no ph.
  EXPECT_FALSE(event_of(track("A", R"({"phone": "n/a"})"))["user_data"].HasMember("ph"));
}

TEST(MetaCapiMap, ActionSourceFromConfig) {
  Config c = config(R"(, "action_source": "physical_store")");
  rapidjson::Document d = event_of(R"({"type": "track", "event": "Checkout Started", "userId": "u-1", "messageId": "m",
                                       "timestamp": "2025-03-10T11:00:00Z"})",
                                   c);
  EXPECT_EQ(std::string(d["action_source"].GetString()), "physical_store");
  EXPECT_FALSE(d.HasMember("event_source_url"));
}

// ---------------------------------------------------------------------------
// Refused before sending
// ---------------------------------------------------------------------------

TEST(MetaCapiReject, OnlyTheLastSevenDaysAndNotTheFuture) {
  std::string m = track("A");
  EXPECT_EQ(map(m, config(), kT + 7 * kDay).kind, Mapping::Kind::Items);
  EXPECT_EQ(rejection(m, config(), kT + 7 * kDay + kSecond).rfind("timestamp: Meta refuses events over 7 days old", 0), 0u);
  EXPECT_EQ(map(m, config(), kT - 60 * kSecond).kind, Mapping::Kind::Items);
  EXPECT_EQ(rejection(m, config(), kT - 61 * kSecond).rfind("timestamp: more than 1 minute in the future", 0), 0u);
  EXPECT_EQ(rejection(R"({"type": "track", "event": "A", "userId": "u", "messageId": "m"})").rfind("timestamp: ", 0), 0u);
}

TEST(MetaCapiReject, WebsiteEventsNeedUserAgentAndUrl) {
  EXPECT_EQ(rejection(R"({"type": "track", "event": "A", "userId": "u", "messageId": "m",
                          "timestamp": "2025-03-10T11:00:00Z", "context": {"page": {"url": "https://e.com/"}}})"),
            "context.userAgent: Meta requires client_user_agent for action_source website");
  EXPECT_EQ(rejection(R"({"type": "track", "event": "A", "userId": "u", "messageId": "m",
                          "timestamp": "2025-03-10T11:00:00Z", "context": {"userAgent": "UA"}})")
                .rfind("context.page.url: Meta requires event_source_url", 0),
            0u);
}

TEST(MetaCapiReject, NoCustomerParameter) {
  Config other = config(R"(, "action_source": "other")");
  EXPECT_EQ(rejection(R"({"type": "track", "event": "A", "anonymousId": "a", "messageId": "m",
                          "timestamp": "2025-03-10T11:00:00Z"})",
                      other)
                .rfind("user_data: Meta needs at least one customer parameter", 0),
            0u);
}

TEST(MetaCapiReject, PurchasesNeedValueAndCurrency) {
  for (const char* props : {R"({"currency": "EUR"})", R"({"revenue": 5})", R"({"revenue": "5", "currency": "EUR"})"})
    EXPECT_EQ(rejection(track("Order Completed", props)).rfind("properties.currency: Meta requires a value", 0), 0u)
        << props;
  EXPECT_EQ(map(track("Order Completed", R"({"total": 5, "currency": "EUR"})")).kind, Mapping::Kind::Items);
  EXPECT_EQ(map(track("Product Added", "{}")).kind, Mapping::Kind::Items);
}

TEST(MetaCapiReject, EventNamesAndIds) {
  EXPECT_EQ(rejection(track(std::string(51, 'e'))), "event: Meta takes custom event names of at most 50 characters");
  EXPECT_EQ(map(track(std::string(50, 'e'))).kind, Mapping::Kind::Items);
  EXPECT_EQ(rejection(track("")), "event: a track call needs an event name");
  EXPECT_EQ(rejection(R"({"type": "track", "event": "A", "userId": "u", "timestamp": "2025-03-10T11:00:00Z"})")
                .rfind("messageId: ", 0),
            0u);
  EXPECT_EQ(rejection(R"({"type": "checkout", "userId": "u"})").rfind("type: ", 0), 0u);
  EXPECT_EQ(map("[]").kind, Mapping::Kind::Reject);
  EXPECT_EQ(rejection(R"({"type": "segment_exit", "userId": "u", "messageId": "m", "at": "2025-03-10T11:00:00Z"})")
                .rfind("segment: ", 0),
            0u);
}

// ---------------------------------------------------------------------------
// build
// ---------------------------------------------------------------------------

TEST(MetaCapiBuild, PathHeadersAndBody) {
  Item a = item(track("A")), b = item(track("B"));
  connectors::Request r = meta().build({&a, &b}, config(), kNow);
  EXPECT_EQ(r.path, "/v21.0/1234567890/events");
  EXPECT_EQ(r.headers, std::vector<std::string>{"Content-Type: application/json"});
  EXPECT_TRUE(same_json(r.body, R"({"data": [)" + a.json + "," + b.json + R"(], "access_token": "EAAB-token"})"))
      << r.body;
}

TEST(MetaCapiBuild, TestEventCodeAndVersion) {
  Config c = config(R"(, "api_version": "v19.0", "test_event_code": "TEST\"1")");
  Item a = item(track("A"), c);
  connectors::Request r = meta().build({&a}, c, kNow);
  EXPECT_EQ(r.path, "/v19.0/1234567890/events");
  EXPECT_TRUE(same_json(r.body, R"({"data": [)" + a.json +
                                    R"(], "access_token": "EAAB-token", "test_event_code": "TEST\"1"})"))
      << r.body;
}

// ---------------------------------------------------------------------------
// read
// ---------------------------------------------------------------------------

std::string meta_error(int code, int subcode = 0, std::string_view title = "", std::string_view msg = "") {
  return R"({"error": {"message": "Invalid parameter", "type": "OAuthException", "code": )" + std::to_string(code) +
         (subcode ? R"(, "error_subcode": )" + std::to_string(subcode) : "") + R"(, "error_user_title": ")" +
         std::string(title) + R"(", "error_user_msg": ")" + std::string(msg) + R"(", "fbtrace_id": "AbC"}})";
}

Answer read(long status, std::string body, size_t n = 2, Micros now = kNow) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  if (status == 0) r.transport_error = "Operation timed out";
  static Item i = item(track("A"));
  std::vector<const Item*> items(n, &i);
  return meta().read(r, items, now);
}

TEST(MetaCapiRead, EventsReceivedIsDelivered) {
  Answer a = read(200, R"({"events_received": 2, "messages": [], "fbtrace_id": "AbC"})");
  EXPECT_EQ(a.whole.verdict, Verdict::Delivered);
  EXPECT_TRUE(a.items.empty());
  EXPECT_FALSE(a.split);
  EXPECT_FALSE(a.outage);
}

TEST(MetaCapiRead, ARefusedRequestIsSplit) {
  Answer a = read(400, meta_error(100, 2804019, "Invalid Parameter", "The parameter is invalid."));
  EXPECT_TRUE(a.split);
  EXPECT_EQ(a.whole.verdict, Verdict::Dead);
  EXPECT_FALSE(a.outage);
}

TEST(MetaCapiRead, ALoneRefusedEventIsDeadWithMetasWords) {
  Answer a = read(400, meta_error(100, 2804019, "Invalid Parameter", "The parameter is invalid."), 1);
  EXPECT_FALSE(a.split);
  EXPECT_EQ(a.whole.verdict, Verdict::Dead);
  EXPECT_EQ(a.whole.reason,
            "HTTP 400: Meta error 100/2804019: Invalid Parameter: The parameter is invalid. (fbtrace_id AbC)");
}

TEST(MetaCapiRead, BadTokenOrNoPermissionIsDeadWithoutSplitting) {
  for (auto [status, body] : {std::pair{400L, meta_error(190, 0, "", "")}, std::pair{401L, std::string("{}")},
                              std::pair{403L, meta_error(200, 0, "Permissions error", "")}}) {
    Answer a = read(status, body);
    EXPECT_EQ(a.whole.verdict, Verdict::Dead) << status;
    EXPECT_FALSE(a.split) << status;
    EXPECT_FALSE(a.outage) << status;
  }
  EXPECT_EQ(read(400, meta_error(190)).whole.reason, "HTTP 400: Meta error 190: Invalid parameter (fbtrace_id AbC)");
}

TEST(MetaCapiRead, RateLimitsAndOutagesAreRetried) {
  std::vector<std::pair<long, std::string>> answers = {
      {429, "{}"},          {400, meta_error(4)},   {400, meta_error(17)}, {400, meta_error(32)},
      {400, meta_error(613)}, {500, "oops"},        {503, ""},             {0, ""},
      {400, R"({"error": {"code": 999, "is_transient": true}})"}};
  for (auto& [status, body] : answers) {
    Answer a = read(status, body);
    EXPECT_EQ(a.whole.verdict, Verdict::Retry) << status << " " << body;
    EXPECT_TRUE(a.outage) << status << " " << body;
    EXPECT_FALSE(a.split) << status << " " << body;
  }
}

TEST(MetaCapiRead, StaleEventsInARetriedRequestAreDeadAndTheOthersResent) {
  Item fresh = item(track("A"));
  Item old = fresh;
  old.json = R"({"event_name": "A", "event_time": )" + std::to_string((kNow - 8 * kDay) / kSecond) + "}";
  Response r;
  r.status = 400;
  r.body = meta_error(100, 2804003, "Event Timestamp Too Old", "The timestamp for this event is too far in the past.");
  Answer a = meta().read(r, {&fresh, &old}, kNow);
  ASSERT_EQ(a.items.size(), 2u);
  EXPECT_EQ(a.items[0].verdict, Verdict::RetryNow);
  EXPECT_EQ(a.items[1].verdict, Verdict::Dead);
  EXPECT_NE(a.items[1].reason.find("Event Timestamp Too Old"), std::string::npos);
  // None of them stale by our clock: split to find it.
  Answer b = meta().read(r, {&fresh, &fresh}, kNow);
  EXPECT_TRUE(b.items.empty());
  EXPECT_TRUE(b.split);
}

TEST(MetaCapiRead, AnAnswerThatIsNotMetasShape) {
  Answer a = read(400, "<html>Bad Request</html>", 1);
  EXPECT_EQ(a.whole.verdict, Verdict::Dead);
  EXPECT_EQ(a.whole.reason, "HTTP 400: <html>Bad Request</html>");
}

}  // namespace
}  // namespace cdp
