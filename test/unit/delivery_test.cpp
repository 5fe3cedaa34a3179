// Destinations (core/delivery.hpp): options parsed with their defaults and
// refused with the JSON path of the bad member, event subscriptions, consent,
// the PII policy (drop and hash, with the normalisation ad platforms expect),
// SHA-256 and HMAC-SHA256 against published test vectors, request bodies,
// response classification, Retry-After, backoff and the circuit breaker.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "core/delivery.hpp"
#include "core/error.hpp"
#include "core/json_util.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using delivery::Options;
using delivery::Outcome;
using test::at;
using test::Event;
using test::ev;
using test::json;
using test::same_json;

constexpr Micros kSecond = 1000000;
constexpr Micros kMinute = 60 * kSecond;
constexpr Micros kHour = 60 * kMinute;
constexpr Micros kDay = 24 * kHour;

const Micros kT0 = at("2025-03-01T00:00:00Z");

struct Refusal {
  ErrorKind kind;
  std::string field, message;
};

// The error parse raises, or a refusal with kind Internal and field "<no error>".
Refusal refusal(std::string_view options) {
  try {
    Options::parse(options);
  } catch (const Error& e) {
    return {e.kind(), e.field(), e.what()};
  }
  return {ErrorKind::Internal, "<no error>", ""};
}

std::string error_field(std::string_view options) {
  Refusal r = refusal(options);
  EXPECT_TRUE(r.kind == ErrorKind::InvalidInput || r.field == "<no error>") << options << ": " << r.message;
  return r.field;
}

// ---------------------------------------------------------------------------
// Options::parse
// ---------------------------------------------------------------------------

TEST(DeliveryOptions, EmptyObjectGivesTheDefaults) {
  Options o = Options::parse("{}");
  EXPECT_TRUE(o.headers.empty());
  EXPECT_EQ(o.secret, "");
  EXPECT_FALSE(o.all_events);
  EXPECT_TRUE(o.event_filters.empty());
  EXPECT_FALSE(o.wants_events());
  EXPECT_TRUE(o.segments.empty());
  EXPECT_EQ(o.max_events, 1);
  EXPECT_EQ(o.max_wait_ms, 0);
  EXPECT_TRUE(o.consent.empty());
  EXPECT_TRUE(o.drop.empty());
  EXPECT_TRUE(o.hash.empty());
  EXPECT_EQ(o.max_age, 24 * kHour);
  EXPECT_EQ(o.timeout_ms, 10000);
}

TEST(DeliveryOptions, EveryKeyParsed) {
  Options o = Options::parse(R"({
    "headers": {"Authorization": "Bearer abc", "X-Team_1": ""},
    "secret": "whsec_0123456789abcdef",
    "subscribe": {"events": [{"type": "track", "event": "Order Completed"}, {"type": "page"}],
                  "segments": ["vip", "churn_risk"]},
    "batch": {"max_events": 100, "max_wait_ms": 2500},
    "consent": ["marketing", "analytics"],
    "pii": {"drop": ["context.ip", "traits.phone"], "hash": ["traits.email"]},
    "max_age": {"days": 3},
    "timeout_ms": 2000})");
  ASSERT_EQ(o.headers.size(), 2u);
  EXPECT_EQ(o.headers[0], (std::pair<std::string, std::string>{"Authorization", "Bearer abc"}));
  EXPECT_EQ(o.headers[1], (std::pair<std::string, std::string>{"X-Team_1", ""}));
  EXPECT_EQ(o.secret, "whsec_0123456789abcdef");
  EXPECT_FALSE(o.all_events);
  ASSERT_EQ(o.event_filters.size(), 2u);
  EXPECT_EQ(o.event_filters[0].type, MessageType::Track);
  EXPECT_EQ(o.event_filters[0].event, "Order Completed");
  EXPECT_EQ(o.event_filters[1].type, MessageType::Page);
  EXPECT_FALSE(o.event_filters[1].event.has_value());
  EXPECT_TRUE(o.wants_events());
  EXPECT_EQ(o.segments, (std::vector<std::string>{"vip", "churn_risk"}));
  EXPECT_EQ(o.max_events, 100);
  EXPECT_EQ(o.max_wait_ms, 2500);
  EXPECT_EQ(o.consent, (std::vector<std::string>{"marketing", "analytics"}));
  EXPECT_EQ(o.drop, (std::vector<std::string>{"context.ip", "traits.phone"}));
  EXPECT_EQ(o.hash, (std::vector<std::string>{"traits.email"}));
  EXPECT_EQ(o.max_age, 3 * kDay);
  EXPECT_EQ(o.timeout_ms, 2000);
}

TEST(DeliveryOptions, SubscribeEventsTrueOrFalse) {
  Options all = Options::parse(R"({"subscribe": {"events": true}})");
  EXPECT_TRUE(all.all_events);
  EXPECT_TRUE(all.wants_events());
  Options none = Options::parse(R"({"subscribe": {"events": false}})");
  EXPECT_FALSE(none.all_events);
  EXPECT_FALSE(none.wants_events());
  Options empty = Options::parse(R"({"subscribe": {"events": []}})");
  EXPECT_FALSE(empty.wants_events());
  Options segments_only = Options::parse(R"({"subscribe": {"segments": ["vip"]}})");
  EXPECT_FALSE(segments_only.wants_events());
  EXPECT_EQ(segments_only.segments, std::vector<std::string>{"vip"});
}

TEST(DeliveryOptions, MaxAgeUnits) {
  EXPECT_EQ(Options::parse(R"({"max_age": {"days": 2}})").max_age, 2 * kDay);
  EXPECT_EQ(Options::parse(R"({"max_age": {"hours": 6}})").max_age, 6 * kHour);
  EXPECT_EQ(Options::parse(R"({"max_age": {"minutes": 90}})").max_age, 90 * kMinute);
  // The largest count, in days, does not overflow.
  EXPECT_EQ(Options::parse(R"({"max_age": {"days": 1000000}})").max_age, 1000000 * kDay);
}

TEST(DeliveryOptions, BoundsInclusive) {
  EXPECT_EQ(Options::parse(R"({"batch": {"max_events": 1}})").max_events, 1);
  EXPECT_EQ(Options::parse(R"({"batch": {"max_events": 500}})").max_events, delivery::kMaxBatch);
  EXPECT_EQ(Options::parse(R"({"batch": {"max_wait_ms": 0}})").max_wait_ms, 0);
  EXPECT_EQ(Options::parse(R"({"batch": {"max_wait_ms": 60000}})").max_wait_ms, 60000);
  EXPECT_EQ(Options::parse(R"({"timeout_ms": 100})").timeout_ms, 100);
  EXPECT_EQ(Options::parse(R"({"timeout_ms": 300000})").timeout_ms, 300000);
  EXPECT_EQ(Options::parse(R"({"secret": "0123456789abcdef"})").secret, "0123456789abcdef");  // 16
  // A batch with only one of its keys keeps the other's default.
  Options o = Options::parse(R"({"batch": {"max_events": 50}})");
  EXPECT_EQ(o.max_events, 50);
  EXPECT_EQ(o.max_wait_ms, 0);
}

TEST(DeliveryOptions, ParsesAValueAsWellAsText) {
  rapidjson::Document d = json(R"({"batch": {"max_events": 7}})");
  EXPECT_EQ(Options::parse(d).max_events, 7);
}

TEST(DeliveryOptionsErrors, NotJsonOrNotAnObject) {
  Refusal r = refusal("{");
  EXPECT_EQ(r.kind, ErrorKind::MalformedJson);
  EXPECT_EQ(r.field, "");
  EXPECT_EQ(error_field("[]"), "");
  EXPECT_EQ(error_field("null"), "");
  EXPECT_EQ(error_field(R"("x")"), "");
}

TEST(DeliveryOptionsErrors, UnknownKeysNamed) {
  EXPECT_EQ(error_field(R"({"url": "http://x"})"), "url");
  EXPECT_EQ(error_field(R"({"subscribe": {"traits": true}})"), "subscribe.traits");
  EXPECT_EQ(error_field(R"({"batch": {"size": 10}})"), "batch.size");
  EXPECT_EQ(error_field(R"({"pii": {"mask": ["traits.email"]}})"), "pii.mask");
  EXPECT_EQ(error_field(R"({"subscribe": {"events": [{"kind": "count"}]}})"), "subscribe.events[0].kind");
  EXPECT_EQ(error_field(R"({"subscribe": {"events": [{"event": "A"}, {"property": "x"}]}})"),
            "subscribe.events[1].property");
  EXPECT_EQ(error_field(R"({"subscribe": {"events": [{"within": {"days": 1}}]}})"), "subscribe.events[0].within");
  Refusal r = refusal(R"({"nonsense": 1})");
  EXPECT_EQ(r.message,
            "nonsense: unknown key: options are headers, secret, subscribe, batch, consent, pii, max_age, timeout_ms, "
            "kind, config, transform, transform_timeout_ms, rate_limit");
}

TEST(DeliveryOptionsErrors, Headers) {
  EXPECT_EQ(error_field(R"({"headers": []})"), "headers");
  EXPECT_EQ(error_field(R"({"headers": "Authorization: x"})"), "headers");
  EXPECT_EQ(error_field(R"({"headers": {"X Y": "z"}})"), "headers.X Y");
  EXPECT_EQ(error_field(R"({"headers": {"X:Y": "z"}})"), "headers.X:Y");
  EXPECT_EQ(error_field(R"({"headers": {"": "z"}})"), "headers.");
  EXPECT_EQ(error_field(R"({"headers": {"X-Count": 3}})"), "headers.X-Count");
  EXPECT_EQ(error_field(R"({"headers": {"X-Evil": "a\r\nHost: b"}})"), "headers.X-Evil");
  EXPECT_EQ(error_field(R"({"headers": {"X-Evil": "a\nb"}})"), "headers.X-Evil");
  EXPECT_EQ(refusal(R"({"headers": {"X Y": "z"}})").message, "headers.X Y: a header name is letters, digits, - and _");
}

TEST(DeliveryOptionsErrors, Secret) {
  EXPECT_EQ(error_field(R"({"secret": "0123456789abcde"})"), "secret");  // 15 characters
  EXPECT_EQ(error_field(R"({"secret": ""})"), "secret");
  EXPECT_EQ(error_field(R"({"secret": 1234567890123456789})"), "secret");
  EXPECT_EQ(refusal(R"({"secret": "short"})").message, "secret: must be a string of at least 16 characters");
}

TEST(DeliveryOptionsErrors, Subscribe) {
  EXPECT_EQ(error_field(R"({"subscribe": true})"), "subscribe");
  EXPECT_EQ(error_field(R"({"subscribe": {"events": "all"}})"), "subscribe.events");
  EXPECT_EQ(error_field(R"({"subscribe": {"events": {"event": "A"}}})"), "subscribe.events");
  EXPECT_EQ(error_field(R"({"subscribe": {"events": ["Order Completed"]}})"), "subscribe.events[0]");
  EXPECT_EQ(error_field(R"({"subscribe": {"events": [{"type": "alias"}]}})"), "subscribe.events[0].type");
  EXPECT_EQ(error_field(R"({"subscribe": {"events": [{"type": "track"}, {"event": ""}]}})"),
            "subscribe.events[1].event");
  EXPECT_EQ(error_field(R"({"subscribe": {"events": [{"where": [{"property": "x", "op": "~", "value": 1}]}]}})"),
            "subscribe.events[0].where[0].op");
  EXPECT_EQ(error_field(R"({"subscribe": {"events": [{}, {"where": [{"op": "exists"}]}]}})"),
            "subscribe.events[1].where[0].property");
  EXPECT_EQ(error_field(R"({"subscribe": {"segments": "vip"}})"), "subscribe.segments");
  EXPECT_EQ(error_field(R"({"subscribe": {"segments": ["vip", ""]}})"), "subscribe.segments[1]");
  EXPECT_EQ(error_field(R"({"subscribe": {"segments": ["vip", 3]}})"), "subscribe.segments[1]");
  // A filter's error keeps its own wording under the longer path, said once.
  Refusal r = refusal(R"({"subscribe": {"events": [{"type": "alias"}]}})");
  EXPECT_EQ(r.message, "subscribe.events[0].type: must be one of track, page, screen, identify, group");
}

TEST(DeliveryOptionsErrors, Batch) {
  EXPECT_EQ(error_field(R"({"batch": 100})"), "batch");
  EXPECT_EQ(error_field(R"({"batch": {"max_events": 0}})"), "batch.max_events");
  EXPECT_EQ(error_field(R"({"batch": {"max_events": 501}})"), "batch.max_events");
  EXPECT_EQ(error_field(R"({"batch": {"max_events": 10.5}})"), "batch.max_events");
  EXPECT_EQ(error_field(R"({"batch": {"max_events": "10"}})"), "batch.max_events");
  EXPECT_EQ(error_field(R"({"batch": {"max_wait_ms": -1}})"), "batch.max_wait_ms");
  EXPECT_EQ(error_field(R"({"batch": {"max_wait_ms": 60001}})"), "batch.max_wait_ms");
  EXPECT_EQ(refusal(R"({"batch": {"max_events": 0}})").message, "batch.max_events: must be a whole number from 1 to 500");
}

TEST(DeliveryOptionsErrors, ConsentAndPii) {
  EXPECT_EQ(error_field(R"({"consent": "marketing"})"), "consent");
  EXPECT_EQ(error_field(R"({"consent": ["marketing", null]})"), "consent[1]");
  EXPECT_EQ(error_field(R"({"pii": ["traits.email"]})"), "pii");
  EXPECT_EQ(error_field(R"({"pii": {"drop": "context.ip"}})"), "pii.drop");
  EXPECT_EQ(error_field(R"({"pii": {"drop": [""]}})"), "pii.drop[0]");
  EXPECT_EQ(error_field(R"({"pii": {"hash": ["traits.email", 7]}})"), "pii.hash[1]");
}

TEST(DeliveryOptionsErrors, MaxAgeAndTimeout) {
  EXPECT_EQ(error_field(R"({"max_age": 24})"), "max_age");
  EXPECT_EQ(error_field(R"({"max_age": {}})"), "max_age");
  EXPECT_EQ(error_field(R"({"max_age": {"days": 1, "hours": 2}})"), "max_age");
  EXPECT_EQ(error_field(R"({"max_age": {"weeks": 1}})"), "max_age.weeks");
  EXPECT_EQ(error_field(R"({"max_age": {"hours": 0}})"), "max_age.hours");
  EXPECT_EQ(error_field(R"({"max_age": {"minutes": 1000001}})"), "max_age.minutes");
  EXPECT_EQ(error_field(R"({"max_age": {"days": "1"}})"), "max_age.days");
  EXPECT_EQ(error_field(R"({"timeout_ms": 99})"), "timeout_ms");
  EXPECT_EQ(error_field(R"({"timeout_ms": 300001})"), "timeout_ms");
  EXPECT_EQ(error_field(R"({"timeout_ms": "5000"})"), "timeout_ms");
  EXPECT_EQ(refusal(R"({"max_age": {"weeks": 1}})").message,
            "max_age.weeks: unknown key: max_age is one of days, hours, minutes");
}

// ---------------------------------------------------------------------------
// Options::wants
// ---------------------------------------------------------------------------

TEST(DeliveryWants, AllEventsTakesEveryType) {
  Options o = Options::parse(R"({"subscribe": {"events": true}})");
  for (MessageType t : {MessageType::Track, MessageType::Page, MessageType::Screen, MessageType::Identify,
                        MessageType::Group, MessageType::Alias}) {
    Event e = ev(1, kT0, "{}", "", t);
    EXPECT_TRUE(o.wants(e.input()));
  }
}

TEST(DeliveryWants, NothingWithoutASubscription) {
  Options o = Options::parse("{}");
  EXPECT_FALSE(o.wants(ev(1, kT0).input()));
  Options segments_only = Options::parse(R"({"subscribe": {"segments": ["vip"]}})");
  EXPECT_FALSE(segments_only.wants(ev(1, kT0).input()));
}

TEST(DeliveryWants, ByType) {
  Options o = Options::parse(R"({"subscribe": {"events": [{"type": "identify"}]}})");
  EXPECT_TRUE(o.wants(ev(1, kT0, "{}", "", MessageType::Identify).input()));
  EXPECT_FALSE(o.wants(ev(2, kT0, "{}", "Order Completed", MessageType::Track).input()));
  EXPECT_FALSE(o.wants(ev(3, kT0, "{}", "", MessageType::Page).input()));
}

TEST(DeliveryWants, ByEventName) {
  Options o = Options::parse(R"({"subscribe": {"events": [{"event": "Order Completed"}]}})");
  EXPECT_TRUE(o.wants(ev(1, kT0).input()));
  EXPECT_FALSE(o.wants(ev(2, kT0, "{}", "Order Refunded").input()));
  EXPECT_FALSE(o.wants(ev(3, kT0, "{}", "order completed").input()));  // names are exact
  // Without a type, a page of that name matches too.
  EXPECT_TRUE(o.wants(ev(4, kT0, "{}", "Order Completed", MessageType::Page).input()));
  Options track = Options::parse(R"({"subscribe": {"events": [{"type": "track", "event": "Order Completed"}]}})");
  EXPECT_FALSE(track.wants(ev(4, kT0, "{}", "Order Completed", MessageType::Page).input()));
}

TEST(DeliveryWants, ByWhere) {
  Options o = Options::parse(R"({"subscribe": {"events": [{"event": "Order Completed",
      "where": [{"property": "total", "op": ">=", "value": 100}, {"property": "shipping.country", "op": "=", "value": "FR"}]}]}})");
  EXPECT_TRUE(o.wants(ev(1, kT0, R"({"total": 150, "shipping": {"country": "FR"}})").input()));
  EXPECT_TRUE(o.wants(ev(2, kT0, R"({"total": 100, "shipping": {"country": "FR"}})").input()));
  EXPECT_FALSE(o.wants(ev(3, kT0, R"({"total": 99, "shipping": {"country": "FR"}})").input()));
  EXPECT_FALSE(o.wants(ev(4, kT0, R"({"total": 150, "shipping": {"country": "DE"}})").input()));
  EXPECT_FALSE(o.wants(ev(5, kT0, R"({"total": 150})").input()));
  EXPECT_FALSE(o.wants(ev(6, kT0, R"({"total": 150, "shipping": {"country": "FR"}})", "Cart Viewed").input()));
  // No properties at all.
  computed::EventInput bare{7, MessageType::Track, "Order Completed", kT0, nullptr};
  EXPECT_FALSE(o.wants(bare));
}

TEST(DeliveryWants, AnyFilterSuffices) {
  Options o = Options::parse(R"({"subscribe": {"events": [{"type": "page"}, {"event": "Signed Up"}]}})");
  EXPECT_TRUE(o.wants(ev(1, kT0, "{}", "Home", MessageType::Page).input()));
  EXPECT_TRUE(o.wants(ev(2, kT0, "{}", "Signed Up").input()));
  EXPECT_FALSE(o.wants(ev(3, kT0, "{}", "Home", MessageType::Screen).input()));
  EXPECT_FALSE(o.wants(ev(4, kT0).input()));
  // An empty filter matches every event.
  Options any = Options::parse(R"({"subscribe": {"events": [{}]}})");
  EXPECT_TRUE(any.wants(ev(5, kT0, "{}", "", MessageType::Group).input()));
}

// ---------------------------------------------------------------------------
// consented
// ---------------------------------------------------------------------------

bool consent_of(std::string_view context, const std::vector<std::string>& required) {
  rapidjson::Document c = json(context);
  return delivery::consented(&c, required);
}

TEST(DeliveryConsent, NothingRequiredIsAlwaysGranted) {
  EXPECT_TRUE(delivery::consented(nullptr, {}));
  EXPECT_TRUE(consent_of("{}", {}));
  EXPECT_TRUE(consent_of(R"({"consent": {"categoryPreferences": {"marketing": false}}})", {}));
}

TEST(DeliveryConsent, EveryCategoryMustBeTrue) {
  const char* ctx = R"({"consent": {"categoryPreferences": {"marketing": true, "analytics": true, "ads": false}}})";
  EXPECT_TRUE(consent_of(ctx, {"marketing"}));
  EXPECT_TRUE(consent_of(ctx, {"marketing", "analytics"}));
  EXPECT_FALSE(consent_of(ctx, {"ads"}));                    // false
  EXPECT_FALSE(consent_of(ctx, {"marketing", "ads"}));       // one false
  EXPECT_FALSE(consent_of(ctx, {"marketing", "personal"}));  // one missing
}

TEST(DeliveryConsent, OnlyTheBooleanTrueGrants) {
  EXPECT_FALSE(consent_of(R"({"consent": {"categoryPreferences": {"marketing": "true"}}})", {"marketing"}));
  EXPECT_FALSE(consent_of(R"({"consent": {"categoryPreferences": {"marketing": 1}}})", {"marketing"}));
  EXPECT_FALSE(consent_of(R"({"consent": {"categoryPreferences": {"marketing": null}}})", {"marketing"}));
}

TEST(DeliveryConsent, AbsentPreferencesGrantNothing) {
  EXPECT_FALSE(delivery::consented(nullptr, {"marketing"}));
  EXPECT_FALSE(consent_of("{}", {"marketing"}));
  EXPECT_FALSE(consent_of(R"({"consent": {}})", {"marketing"}));
  EXPECT_FALSE(consent_of(R"({"consent": {"categoryPreferences": ["marketing"]}})", {"marketing"}));
  EXPECT_FALSE(consent_of(R"({"consent": true})", {"marketing"}));
  EXPECT_FALSE(consent_of(R"({"categoryPreferences": {"marketing": true}})", {"marketing"}));  // not under consent
}

// ---------------------------------------------------------------------------
// apply_pii and sha256_hex
// ---------------------------------------------------------------------------

// SHA-256 of "a@b.com" (sha256sum).
constexpr const char* kHashAtB = "fb98d44ad7501a959f3f4f4a3f004fe2d9e581ea6207e218c4b02c08a4d75adf";

std::string pii(std::string_view payload, std::string_view options) {
  rapidjson::Document d = json(payload);
  delivery::apply_pii(d, Options::parse(options));
  return to_json(d);
}

TEST(DeliverySha256, PublishedVectors) {
  // FIPS 180-2 / NIST examples.
  EXPECT_EQ(delivery::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(delivery::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(delivery::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(delivery::sha256_hex("a@b.com"), kHashAtB);
}

TEST(DeliveryPii, DropsDottedPaths) {
  EXPECT_TRUE(same_json(pii(R"({"context": {"ip": "1.2.3.4", "locale": "fr"}, "traits": {"phone": "+33", "name": "Ada"}})",
                            R"({"pii": {"drop": ["context.ip", "traits.phone"]}})"),
                        R"({"context": {"locale": "fr"}, "traits": {"name": "Ada"}})"));
  // A top-level member, and a whole object.
  EXPECT_TRUE(same_json(pii(R"({"userId": "u1", "context": {"ip": "1.2.3.4"}, "event": "A"})",
                            R"({"pii": {"drop": ["userId", "context"]}})"),
                        R"({"event": "A"})"));
  // Null is dropped like any value.
  EXPECT_TRUE(same_json(pii(R"({"traits": {"phone": null, "a": 1}})", R"({"pii": {"drop": ["traits.phone"]}})"),
                        R"({"traits": {"a": 1}})"));
}

TEST(DeliveryPii, MissingPathsAreIgnored) {
  const char* payload = R"({"traits": {"email": "a@b.com"}, "context": "not an object"})";
  EXPECT_TRUE(same_json(pii(payload, R"({"pii": {"drop": ["traits.phone", "properties.card", "context.ip",
      "traits.email.local"], "hash": ["traits.phone", "context.ip", "nothing"]}})"),
                        payload));
}

TEST(DeliveryPii, HashesTrimmedLowerCasedText) {
  EXPECT_TRUE(same_json(pii(R"({"traits": {"email": "a@b.com"}})", R"({"pii": {"hash": ["traits.email"]}})"),
                        std::string(R"({"traits": {"email": ")") + kHashAtB + "\"}}"));
  EXPECT_TRUE(same_json(pii(R"({"traits": {"email": "  A@B.Com\t\n"}})", R"({"pii": {"hash": ["traits.email"]}})"),
                        std::string(R"({"traits": {"email": ")") + kHashAtB + "\"}}"));
  // Deeper paths, top-level paths.
  rapidjson::Document d = json(pii(R"({"context": {"traits": {"email": "A@b.com"}}, "userId": "a@b.com"})",
                                   R"({"pii": {"hash": ["context.traits.email", "userId"]}})"));
  EXPECT_EQ(string_of(d["context"]["traits"]["email"]), kHashAtB);
  EXPECT_EQ(string_of(d["userId"]), kHashAtB);
}

TEST(DeliveryPii, NumbersHashedAsWritten) {
  rapidjson::Document d = json(pii(R"({"traits": {"phone": 15551234567, "score": 2.5, "vip": true}})",
                                   R"({"pii": {"hash": ["traits.phone", "traits.score", "traits.vip"]}})"));
  EXPECT_EQ(string_of(d["traits"]["phone"]), delivery::sha256_hex("15551234567"));
  EXPECT_EQ(string_of(d["traits"]["phone"]), "d6736136ea896c1bfdc553e0e86e702c70d060d805696ca3e4e9e0961353860a");
  EXPECT_EQ(string_of(d["traits"]["score"]), delivery::sha256_hex("2.5"));
  EXPECT_EQ(string_of(d["traits"]["vip"]), delivery::sha256_hex("true"));
  // "As written" means as the number's compact JSON: a decimal is read as a
  // double first, so trailing zeros do not survive (documented).
  rapidjson::Document z = json(pii(R"({"traits": {"score": 1.50}})", R"({"pii": {"hash": ["traits.score"]}})"));
  EXPECT_EQ(string_of(z["traits"]["score"]), delivery::sha256_hex("1.5"));
}

TEST(DeliveryPii, NullObjectsAndArraysLeftAlone) {
  const char* payload = R"({"traits": {"email": null, "address": {"city": "Paris"}, "emails": ["a@b.com"]}})";
  EXPECT_TRUE(same_json(pii(payload, R"({"pii": {"hash": ["traits.email", "traits.address", "traits.emails"]}})"),
                        payload));
}

TEST(DeliveryPii, DropBeforeHashAndEmptyPolicy) {
  // A path both dropped and hashed is dropped.
  EXPECT_TRUE(same_json(pii(R"({"traits": {"email": "a@b.com", "n": 1}})",
                            R"({"pii": {"drop": ["traits.email"], "hash": ["traits.email"]}})"),
                        R"({"traits": {"n": 1}})"));
  const char* payload = R"({"traits": {"email": "a@b.com"}, "context": {"ip": "1.2.3.4"}})";
  EXPECT_TRUE(same_json(pii(payload, "{}"), payload));
}

// ---------------------------------------------------------------------------
// signature (HMAC-SHA256 of timestamp + "." + body)
// ---------------------------------------------------------------------------

TEST(DeliverySignature, Rfc4231TestCase7) {
  // RFC 4231 test case 7: key = 131 bytes of 0xaa, data = the sentence below,
  // HMAC-SHA-256 = 9b09ff...35e2. The data holds a ".", so it splits into a
  // timestamp and a body that the signature joins back with ".".
  std::string key(131, '\xaa');
  std::string data =
      "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be "
      "hashed before being used by the HMAC algorithm.";
  size_t dot = data.find('.');
  ASSERT_NE(dot, std::string::npos);
  std::string ts = data.substr(0, dot), body = data.substr(dot + 1);
  EXPECT_EQ(delivery::signature(key, ts, body), "v1=9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

TEST(DeliverySignature, AsAReceiverComputesIt) {
  // Python: hmac.new(b"whsec_0123456789abcdef", b'1700000000.{"type":"track","event":"Signed Up"}',
  //                  hashlib.sha256).hexdigest()
  EXPECT_EQ(delivery::signature("whsec_0123456789abcdef", "1700000000", R"({"type":"track","event":"Signed Up"})"),
            "v1=f62e4fc3fb7183a327d9f519e8484522716d048829adb0a64c97eb60d809de91");
}

TEST(DeliverySignature, EveryInputCounts) {
  std::string s = delivery::signature("whsec_0123456789abcdef", "1700000000", "{}");
  EXPECT_EQ(s.size(), 3u + 64u);
  EXPECT_EQ(s.rfind("v1=", 0), 0u);
  EXPECT_NE(s, delivery::signature("whsec_0123456789abcdeF", "1700000000", "{}"));
  EXPECT_NE(s, delivery::signature("whsec_0123456789abcdef", "1700000001", "{}"));
  EXPECT_NE(s, delivery::signature("whsec_0123456789abcdef", "1700000000", "{ }"));
  // What is signed is the plain concatenation timestamp + "." + body (so the
  // split is unambiguous only because the worker's timestamp is all digits).
  EXPECT_EQ(delivery::signature("whsec_0123456789abcdef", "1.2", "3"),
            delivery::signature("whsec_0123456789abcdef", "1", "2.3"));
  EXPECT_EQ(delivery::signature("whsec_0123456789abcdef", "", "1700000000.{}"),
            delivery::signature("whsec_0123456789abcdef", ".1700000000", "{}"));
}

// ---------------------------------------------------------------------------
// request_body
// ---------------------------------------------------------------------------

TEST(DeliveryRequestBody, OnePayloadAsItIs) {
  std::string p = R"({"type":"track","event":"A","messageId":"m1"})";
  EXPECT_EQ(delivery::request_body({p}, false, kT0), p);
}

TEST(DeliveryRequestBody, ABatchingDestinationAlwaysGetsTheEnvelope) {
  rapidjson::Document d = json(delivery::request_body({R"({"messageId":"m1"})"}, true, kT0));
  ASSERT_TRUE(d.IsObject());
  ASSERT_TRUE(d["batch"].IsArray());
  ASSERT_EQ(d["batch"].Size(), 1u);
  EXPECT_EQ(string_of(d["batch"][0]["messageId"]), "m1");
}

TEST(DeliveryRequestBody, SeveralInABatchWithSentAt) {
  std::string body = delivery::request_body({R"({"messageId":"m1"})", R"({"messageId":"m2"})", R"({"messageId":"m3"})"}, true,
                                            at("2025-03-01T12:34:56.789Z"));
  rapidjson::Document d = json(body);
  ASSERT_TRUE(d.IsObject());
  EXPECT_EQ(d.MemberCount(), 2u);
  ASSERT_TRUE(d["batch"].IsArray());
  ASSERT_EQ(d["batch"].Size(), 3u);
  EXPECT_EQ(string_of(d["batch"][0]["messageId"]), "m1");
  EXPECT_EQ(string_of(d["batch"][2]["messageId"]), "m3");
  ASSERT_TRUE(d["sentAt"].IsString());
  EXPECT_EQ(parse_iso8601(string_of(d["sentAt"])), at("2025-03-01T12:34:56.789Z"));
  EXPECT_TRUE(same_json(body, R"({"batch": [{"messageId":"m1"},{"messageId":"m2"},{"messageId":"m3"}],
                                  "sentAt": ")" + format_iso8601(at("2025-03-01T12:34:56.789Z")) + "\"}"));
}

// ---------------------------------------------------------------------------
// classify
// ---------------------------------------------------------------------------

TEST(DeliveryClassify, Statuses) {
  EXPECT_EQ(delivery::classify(200), Outcome::Delivered);
  EXPECT_EQ(delivery::classify(202), Outcome::Delivered);
  EXPECT_EQ(delivery::classify(204), Outcome::Delivered);
  EXPECT_EQ(delivery::classify(299), Outcome::Delivered);
  EXPECT_EQ(delivery::classify(301), Outcome::Dead);  // redirects are not followed
  EXPECT_EQ(delivery::classify(400), Outcome::Dead);
  EXPECT_EQ(delivery::classify(401), Outcome::Dead);
  EXPECT_EQ(delivery::classify(404), Outcome::Dead);
  EXPECT_EQ(delivery::classify(408), Outcome::Retry);
  EXPECT_EQ(delivery::classify(413), Outcome::Dead);
  EXPECT_EQ(delivery::classify(429), Outcome::Retry);
  EXPECT_EQ(delivery::classify(500), Outcome::Retry);
  EXPECT_EQ(delivery::classify(502), Outcome::Retry);
  EXPECT_EQ(delivery::classify(503), Outcome::Retry);
  EXPECT_EQ(delivery::classify(0), Outcome::Retry);  // no answer (transport error)
}

// ---------------------------------------------------------------------------
// parse_retry_after
// ---------------------------------------------------------------------------

TEST(DeliveryRetryAfter, Seconds) {
  EXPECT_EQ(delivery::parse_retry_after("120", kT0), 120 * kSecond);
  EXPECT_EQ(delivery::parse_retry_after("0", kT0), 0);
  // As the worker's header callback hands it over: after "Retry-After:".
  EXPECT_EQ(delivery::parse_retry_after(" 30\r\n", kT0), 30 * kSecond);
  // More than an hour is read as an hour: a destination cannot park a profile's queue for years.
  EXPECT_EQ(delivery::parse_retry_after("3601", kT0), delivery::kMaxRetryAfter);
  EXPECT_EQ(delivery::parse_retry_after("999999999", kT0), delivery::kMaxRetryAfter);
  EXPECT_EQ(delivery::parse_retry_after("1000000000", kT0), delivery::kMaxRetryAfter);
}

TEST(DeliveryRetryAfter, HttpDate) {
  Micros now = at("2015-10-21T07:28:00Z");
  EXPECT_EQ(delivery::parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now), 120 * kSecond);
  EXPECT_EQ(delivery::parse_retry_after(" Wed, 21 Oct 2015 08:28:00 GMT\r\n", now), kHour);
  // A date already past: no wait.
  EXPECT_EQ(delivery::parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), 0);
  // Relative to the given now.
  EXPECT_EQ(delivery::parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now + 30 * kSecond), 90 * kSecond);
}

TEST(DeliveryRetryAfter, Garbage) {
  Micros now = kT0;
  EXPECT_EQ(delivery::parse_retry_after("", now), std::nullopt);
  EXPECT_EQ(delivery::parse_retry_after("   \r\n", now), std::nullopt);
  EXPECT_EQ(delivery::parse_retry_after("soon", now), std::nullopt);
  EXPECT_EQ(delivery::parse_retry_after("-5", now), std::nullopt);
  EXPECT_EQ(delivery::parse_retry_after("1.5", now), std::nullopt);
  EXPECT_EQ(delivery::parse_retry_after("12abc", now), std::nullopt);
  EXPECT_EQ(delivery::parse_retry_after("2025-03-01T00:00:00Z", now), std::nullopt);
  EXPECT_EQ(delivery::parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT trailing", now), std::nullopt);
  EXPECT_EQ(delivery::parse_retry_after("Wed, 21 Oct 2015 07:30:00", now), std::nullopt);
}

// ---------------------------------------------------------------------------
// backoff and circuit_pause
// ---------------------------------------------------------------------------

TEST(DeliveryBackoff, DoublesFromOneSecond) {
  // jitter01 = 0.5 is the factor 1.
  EXPECT_EQ(delivery::backoff(1, 0.5, std::nullopt), 1 * kSecond);
  EXPECT_EQ(delivery::backoff(2, 0.5, std::nullopt), 2 * kSecond);
  EXPECT_EQ(delivery::backoff(3, 0.5, std::nullopt), 4 * kSecond);
  EXPECT_EQ(delivery::backoff(4, 0.5, std::nullopt), 8 * kSecond);
  EXPECT_EQ(delivery::backoff(10, 0.5, std::nullopt), 512 * kSecond);
  EXPECT_EQ(delivery::backoff(12, 0.5, std::nullopt), 2048 * kSecond);
  // Fewer than one failure counts as one.
  EXPECT_EQ(delivery::backoff(0, 0.5, std::nullopt), 1 * kSecond);
  EXPECT_EQ(delivery::backoff(-3, 0.5, std::nullopt), 1 * kSecond);
}

TEST(DeliveryBackoff, CappedAtOneHourBeforeJitter) {
  EXPECT_EQ(delivery::backoff(13, 0.5, std::nullopt), kHour);  // 4096 s capped
  EXPECT_EQ(delivery::backoff(20, 0.5, std::nullopt), kHour);
  EXPECT_EQ(delivery::backoff(1000000, 0.5, std::nullopt), kHour);
  EXPECT_EQ(delivery::backoff(1000000, 0.0, std::nullopt), kHour / 2);
  EXPECT_LT(delivery::backoff(1000000, 0.999999, std::nullopt), kHour * 3 / 2);
}

TEST(DeliveryBackoff, JitterRange) {
  for (int attempts : {1, 2, 5, 9, 13}) {
    Micros base = delivery::backoff(attempts, 0.5, std::nullopt);
    EXPECT_EQ(delivery::backoff(attempts, 0.0, std::nullopt), base / 2) << attempts;
    for (double j = 0.0; j < 1.0; j += 0.0625) {
      Micros d = delivery::backoff(attempts, j, std::nullopt);
      EXPECT_GE(d, base / 2) << attempts << " " << j;
      EXPECT_LT(d, base * 3 / 2) << attempts << " " << j;
    }
    EXPECT_EQ(delivery::backoff(attempts, 0.25, std::nullopt), base * 3 / 4) << attempts;
  }
}

TEST(DeliveryBackoff, RetryAfterIsAFloor) {
  EXPECT_EQ(delivery::backoff(1, 0.5, 30 * kSecond), 30 * kSecond);
  EXPECT_EQ(delivery::backoff(1, 0.5, 0), 1 * kSecond);  // a shorter ask does not hurry it
  EXPECT_EQ(delivery::backoff(5, 0.5, 3 * kSecond), 16 * kSecond);
  // Past the cap too: the destination's ask wins.
  EXPECT_EQ(delivery::backoff(20, 0.5, 2 * kHour), 2 * kHour);
}

TEST(DeliveryCircuit, PauseDoublesFrom30SecondsTo10Minutes) {
  EXPECT_EQ(delivery::kCircuitFailures, 5);
  EXPECT_EQ(delivery::circuit_pause(5), 30 * kSecond);
  EXPECT_EQ(delivery::circuit_pause(6), 60 * kSecond);
  EXPECT_EQ(delivery::circuit_pause(7), 120 * kSecond);
  EXPECT_EQ(delivery::circuit_pause(8), 240 * kSecond);
  EXPECT_EQ(delivery::circuit_pause(9), 480 * kSecond);
  EXPECT_EQ(delivery::circuit_pause(10), 600 * kSecond);
  EXPECT_EQ(delivery::circuit_pause(11), 600 * kSecond);
  EXPECT_EQ(delivery::circuit_pause(1000), 600 * kSecond);
  // Below the threshold (the worker does not ask): the first pause.
  EXPECT_EQ(delivery::circuit_pause(0), 30 * kSecond);
}

}  // namespace
}  // namespace cdp
