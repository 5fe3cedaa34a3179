// Issue 11: no single input may crash or stall a worker. Each test is one
// input that did: a pattern that backtracks for ever, a profile with half a
// million trait keys, numbers that lost their digits, times outside years
// 1..9999 and times Postgres calls 'infinity'.
#include <chrono>
#include <climits>
#include <string>

#include <gtest/gtest.h>

#include "core/computed.hpp"
#include "core/delivery.hpp"
#include "core/error.hpp"
#include "core/identity.hpp"
#include "core/traits.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using test::at;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

IdentityRules email_rules(std::vector<std::string> patterns) {
  IdentifierType t;
  t.name = "email";
  t.paths = {"traits.email"};
  t.blocked_patterns = std::move(patterns);
  return IdentityRules({t});
}

// ------------------------------------------------------------ blocked_patterns (RE2)

TEST(PoisonPattern, NestedQuantifierDoesNotBacktrack) {
  // With std::regex this ran for ever (the processor at 100% CPU, deaf to SIGTERM).
  IdentityRules r = email_rules({R"(^([a-z0-9]+[._-]?)+@mailinator\.com$)"});
  auto start = Clock::now();
  std::string value(40, 'a');
  EXPECT_EQ(r.normalise(0, value), value);
  EXPECT_EQ(r.normalise(0, std::string(1000, 'a') + "!"), std::string(1000, 'a') + "!");
  EXPECT_LT(seconds_since(start), 1.0);
}

TEST(PoisonPattern, StillWholeValueAndCaseInsensitive) {
  IdentityRules r = email_rules({R"(^([a-z0-9]+[._-]?)+@mailinator\.com$)", "temp_[0-9]+"});
  EXPECT_EQ(r.normalise(0, "Bob.Smith@MAILINATOR.com"), std::nullopt);
  EXPECT_EQ(r.normalise(0, "TEMP_42"), std::nullopt);
  EXPECT_EQ(r.normalise(0, "xtemp_42"), "xtemp_42") << "whole value, not a search";
  EXPECT_EQ(r.normalise(0, "bob@example.com"), "bob@example.com");
}

TEST(PoisonPattern, PatternsRe2CannotRunAreRefusedClearly) {
  for (const char* p : {R"((a)\1)", "(?=a)b", "([unclosed"}) {
    try {
      email_rules({p});
      ADD_FAILURE() << p << " compiled";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("RE2"), std::string::npos) << e.what();
    }
  }
}

// ------------------------------------------------------------ traits

std::string many_keys(size_t n, const char* prefix, bool meta) {
  std::string out = "{";
  for (size_t i = 0; i < n; i++) {
    if (i) out += ",";
    out += "\"" + std::string(prefix) + std::to_string(i) + "\":";
    out += meta ? R"({"at":"2024-05-01T12:30:00Z","source":1,"messageId":"m"})" : "1";
  }
  return out + "}";
}

TEST(PoisonTraits, ReadingAHugeProfileIsLinear) {
  // One userId with ~500k keys took 257 s per batch: meta was looked up with a linear scan.
  const size_t n = 100000;
  std::string traits = many_keys(n, "k", false), meta = many_keys(n, "k", true);
  auto start = Clock::now();
  TraitSet set = TraitSet::from_json(traits, meta);
  EXPECT_LT(seconds_since(start), 3.0);
  ASSERT_EQ(set.fields.size(), n);
  EXPECT_EQ(set.fields["k99999"].message_id, "m");
  EXPECT_EQ(set.fields["k99999"].ts, at("2024-05-01T12:30:00Z"));
}

EventFacts identify(std::string traits, std::string_view when, std::string id) {
  EventFacts e;
  e.type = MessageType::Identify;
  e.traits = std::move(traits);
  e.timestamp = at(when);
  e.message_id = std::move(id);
  return e;
}

TEST(PoisonTraits, KeysPastTheLimitAreRefusedKnownKeysStillUpdate) {
  TraitRules rules({}, 3);
  TraitSet set;
  rules.fold_event(set, identify(R"({"a":1,"b":2})", "2024-05-01T00:00:00Z", "m1"));
  EXPECT_TRUE(set.refused.empty());
  rules.fold_event(set, identify(R"({"a":10,"c":3,"d":4,"e":5})", "2024-05-02T00:00:00Z", "m2"));
  EXPECT_EQ(set.fields.size(), 3u);
  EXPECT_EQ(set.fields["a"].json, "10") << "a key it has still updates";
  EXPECT_EQ(set.fields.count("c"), 1u);
  EXPECT_EQ(set.refused, (std::vector<std::string>{"d", "e"}));
  rules.fold_event(set, identify(R"({"b":20})", "2024-05-03T00:00:00Z", "m3"));
  EXPECT_TRUE(set.refused.empty()) << "cleared by each fold";
  EXPECT_EQ(set.fields["b"].json, "20");
}

TEST(PoisonTraits, DefaultLimitIsAThousand) {
  TraitRules rules;
  TraitSet set;
  rules.fold_event(set, identify(many_keys(1500, "t", false), "2024-05-01T00:00:00Z", "m1"));
  EXPECT_EQ(set.fields.size(), kDefaultMaxTraits);
  EXPECT_EQ(set.refused.size(), 500u);
}

// ------------------------------------------------------------ exact numbers

// One message through parse_payload, the entry point of HTTP and cdp.ingest.
MessageOutcome one(const std::string& json, Limits limits = {}) {
  PayloadOptions opts;
  opts.received_at = at("2024-05-01T12:30:00Z");
  opts.limits = limits;
  Payload p = parse_payload(json, opts);
  EXPECT_EQ(p.messages.size(), 1u);
  return p.messages.at(0);
}

TEST(PoisonNumbers, BigIntegerIdsKeepTheirDigits) {
  // Both were stored as 1.2345678901234568e22 and merged into one person.
  auto a = one(R"({"type":"identify","userId":12345678901234567890123})");
  auto b = one(R"({"type":"identify","userId":12345678901234567890124})");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.event->user_id, "12345678901234567890123");
  EXPECT_EQ(b.event->user_id, "12345678901234567890124");
  auto c = one(R"({"type":"track","event":"x","anonymousId":100000000000000000000})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.event->anonymous_id, "100000000000000000000");
}

TEST(PoisonNumbers, PropertiesAndTraitsAreStoredExactly) {
  auto m = one(
      R"({"type":"identify","userId":"u","traits":{"big":12345678901234567890123,"n":-98765432109876543210},)"
      R"("properties":{"pi":3.14159265358979323846264,"x":1.5,"small":42,"tiny":1e-7},)"
      R"("context":{"order":{"total":123456789012345678.25}}})");
  ASSERT_TRUE(m.ok()) << m.rejection.reason();
  EXPECT_EQ(m.event->traits, R"({"big":12345678901234567890123,"n":-98765432109876543210})");
  EXPECT_EQ(m.event->properties, R"({"pi":3.14159265358979323846264,"x":1.5,"small":42,"tiny":1e-7})");
  EXPECT_NE(m.event->context.find("123456789012345678.25"), std::string::npos) << m.event->context;
}

TEST(PoisonNumbers, NumbersJsonbCannotHoldStayDoubles) {
  // jsonb refuses more than 16,383 digits after the point: kept as text, this
  // would make the whole payload fail to store.
  std::string long_fraction = "0." + std::string(20000, '3');
  auto m = one(R"({"type":"track","userId":"u","event":"e","properties":{"a":)" + long_fraction +
               R"(,"b":1.2345678901234567890e-99999,"c":)" + "1" + std::string(150, '0') + "1}}");
  ASSERT_TRUE(m.ok()) << m.rejection.reason();
  EXPECT_LT(m.event->properties.size(), 300u) << m.event->properties;
  EXPECT_NE(m.event->properties.find("\"a\":0.3333333333333333"), std::string::npos) << m.event->properties;
  EXPECT_NE(m.event->properties.find("\"b\":0.0"), std::string::npos) << m.event->properties;
}

TEST(PoisonNumbers, ANumberIsNotTakenForAString) {
  auto m = one(R"({"type":"track","userId":"u","event":12345678901234567890123})");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.rejection.field, "event");
  EXPECT_EQ(m.rejection.rule, "must be a string");
  auto t = one(R"({"type":"track","userId":"u","event":"e","timestamp":12345678901234567890123})");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.rejection.field, "timestamp");
}

TEST(PoisonNumbers, SizeLimitCountsEveryDigit) {
  Limits ctx;
  ctx.max_message_bytes = 120;
  std::string digits(80, '7');
  auto m = one(R"({"type":"track","userId":"u","event":"e","properties":{"n":)" + digits + "}}", ctx);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.rejection.field, "message");
  EXPECT_NE(m.rejection.raw.find(digits), std::string::npos);
}

TEST(PoisonNumbers, TraitsFoldedByTheProcessorKeepTheirDigits) {
  TraitRules rules;
  TraitSet set;
  rules.fold_event(set, identify(R"({"account":98765432109876543210987,"r":0.1000000000000000000001})",
                                 "2024-05-01T00:00:00Z", "m1"));
  EXPECT_EQ(set.traits_json(), R"({"account":98765432109876543210987,"r":0.1000000000000000000001})");
  TraitSet back = TraitSet::from_json(set.traits_json(), set.meta_json());
  EXPECT_EQ(back.traits_json(), set.traits_json());
}

TEST(PoisonNumbers, BigNumberIdentifierFromTraits) {
  IdentifierType t;
  t.name = "crm_id";
  t.paths = {"traits.crm"};
  IdentityRules r({t});
  EventFacts e = identify(R"({"crm":12345678901234567890123})", "2024-05-01T00:00:00Z", "m");
  auto ids = r.extract(e);
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(ids[0].value, "12345678901234567890123");
}

TEST(PoisonNumbers, PiiPolicyKeepsOtherNumbersAndHashesDigits) {
  // A destination with a PII policy rewrites the stored payload: its numbers stay as stored.
  rapidjson::Document d;
  ASSERT_FALSE(parse_json(d, R"({"traits":{"email":"a@b.com","crm":12345678901234567890123},"n":0.1000000000000000000001})",
                          Numbers::Exact)
                   .IsError());
  delivery::apply_pii(d, delivery::Options::parse(R"({"pii":{"drop":["traits.email"],"hash":["traits.crm"]}})"));
  EXPECT_EQ(to_json(d), R"({"traits":{"crm":")" + delivery::sha256_hex("12345678901234567890123") +
                            R"("},"n":0.1000000000000000000001})");
}

// ------------------------------------------------------------ times

TEST(PoisonTime, OffsetsPastYearsOneTo9999AreRefused) {
  // The 22 bytes the payload fuzzer aborted on: year 1 at +01:00 is year 0 in UTC.
  bool out = false;
  EXPECT_EQ(parse_iso8601("0001-01-01T00:00+01:00", &out), std::nullopt);
  EXPECT_TRUE(out);
  EXPECT_EQ(parse_iso8601("9999-12-31T23:30:00-01:00", &out), std::nullopt);
  EXPECT_TRUE(out);
  EXPECT_EQ(parse_iso8601("0001-01-01T01:00+01:00", &out), kEarliest);
  EXPECT_FALSE(out);
  EXPECT_EQ(parse_iso8601("9999-12-31T23:59:59.999999Z"), kLatest);
  EXPECT_EQ(parse_iso8601("0001-13-01", &out), std::nullopt);
  EXPECT_FALSE(out) << "malformed is not out of range";
}

TEST(PoisonTime, EveryClientTimeFieldNamesTheRule) {
  for (const char* field : {"timestamp", "originalTimestamp", "sentAt"}) {
    auto m = one(std::string(R"({"type":"track","userId":"u","event":"e",")") + field +
                            R"(":"0001-01-01T00:00+01:00"})");
    ASSERT_FALSE(m.ok()) << field;
    EXPECT_EQ(m.rejection.field, field);
    EXPECT_EQ(m.rejection.rule, "must fall within years 1 to 9999 (UTC)");
  }
  PayloadOptions opts;
  opts.received_at = at("2024-05-01T12:30:00Z");
  try {
    parse_payload(R"({"sentAt":"9999-12-31T23:59:00-01:00","batch":[]})", opts);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("years 1 to 9999"), std::string::npos) << e.what();
  }
}

TEST(PoisonTime, InfiniteEventTimesDoNotOverflowWindows) {
  // 'infinity' read from Postgres came through as a time near INT64_MIN (UBSan: computed.hpp:84).
  computed::Definition d = computed::Definition::compile(std::string_view(R"({"kind":"count","within":{"days":7}})"));
  rapidjson::Document props;
  props.SetObject();
  computed::State s;
  for (Micros t : {INT64_MIN + 1, INT64_MAX - 1, kLatest}) computed::fold(d, s, {1, MessageType::Track, "e", t, &props});
  for (auto& b : s.buckets) {
    EXPECT_GE(b.start, kEarliest - d.bucket) << "floored to its bucket, no further";
    EXPECT_LE(b.start, kLatest);
  }
  Micros now = at("2024-05-01T12:30:00Z");
  EXPECT_EQ(computed::count(d, s, now), 2) << "the future buckets count; the year-1 one expired";
  EXPECT_FALSE(d.live(INT64_MIN, INT64_MAX));
  EXPECT_TRUE(d.live(INT64_MAX, INT64_MIN)) << "a bucket in the future";
  EXPECT_TRUE(computed::next_expiry(d, s).has_value());
}

}  // namespace
}  // namespace cdp
