// The audience (core/audience.hpp): segments and computed traits compiled
// together, evaluated in dependency order, with the counters their event
// conditions need shared between segments; what a profile keeps, folded,
// merged, expired, written and read back; and bad specs refused with the
// name of the segment or computed trait in the error's path.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "core/audience.hpp"
#include "core/error.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using test::at;
using test::Event;
using test::ev;
using test::json;
using test::same_json;

constexpr Micros kSecond = 1000000;
constexpr Micros kHour = 3600 * kSecond;
constexpr Micros kDay = 24 * kHour;

const Micros kT0 = at("2025-03-01T00:00:00Z");

// "did Order Completed >= 2 times within 30 days where revenue > 50"
constexpr const char* kTwoOrders = R"({"event":"Order Completed","count":{"op":">=","value":2},
    "within":{"days":30},"where":[{"property":"revenue","op":">","value":50}]})";


Event order(int64_t id, Micros time, int revenue, std::string_view sku = "a") {
  return ev(id, time, R"({"revenue":)" + std::to_string(revenue) + R"(,"sku":")" + std::string(sku) + "\"}");
}

SegmentSpec seg(int64_t id, std::string name, std::string rule) { return {id, std::move(name), std::move(rule)}; }
ComputedSpec trait(std::string name, std::string definition) { return {std::move(name), std::move(definition)}; }

AccountData account(std::string id, std::string_view traits) { return {std::move(id), json(traits)}; }

void fold(const Audience& a, Audience::ProfileState& p, const Event& e) { a.fold(p, e.input()); }

// The error the constructor raises, as "field" (or "<no error>").
std::string error_field(std::vector<SegmentSpec> segments, std::vector<ComputedSpec> computed = {}) {
  try {
    Audience a(std::move(segments), std::move(computed));
  } catch (const Error& e) {
    return e.field();
  }
  return "<no error>";
}

std::string error_text(std::vector<SegmentSpec> segments, std::vector<ComputedSpec> computed = {}) {
  try {
    Audience a(std::move(segments), std::move(computed));
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

std::vector<std::string> names(const Audience& a) {
  std::vector<std::string> out;
  for (const Audience::Segment& s : a.segments()) out.push_back(s.name);
  return out;
}

const Audience::Segment& segment(const Audience& a, std::string_view name) {
  for (const Audience::Segment& s : a.segments())
    if (s.name == name) return s;
  ADD_FAILURE() << "no segment " << name;
  return a.segments().at(0);
}

// Whether the outcome has the profile in the named segment.
bool in(const Audience& a, const Audience::Outcome& o, std::string_view name) {
  for (size_t i = 0; i < a.segments().size(); i++)
    if (a.segments()[i].name == name) return o.members.at(i);
  ADD_FAILURE() << "no segment " << name;
  return false;
}

Audience::Outcome evaluate(const Audience& a, Audience::ProfileState& p, Micros now,
                           std::string_view traits = "{}", const std::vector<AccountData>& accounts = {}) {
  rapidjson::Document t = json(traits);
  return a.evaluate(p, &t, accounts, now);
}

// ---------------------------------------------------------------------------
// Compiling: order, references, errors
// ---------------------------------------------------------------------------

TEST(AudienceCompile, SegmentsComeAfterThoseTheyReferTo) {
  Audience a({seg(1, "top", R"({"and":[{"segment":"mid"},{"trait":"ltv","op":">","value":1000}]})"),
              seg(2, "mid", R"({"and":[{"segment":"base"},{"trait":"ltv","op":">","value":100}]})"),
              seg(3, "base", R"({"trait":"plan","op":"=","value":"pro"})")},
             {});
  EXPECT_EQ(names(a), (std::vector<std::string>{"base", "mid", "top"}));
  EXPECT_EQ(a.segments()[0].id, 3) << "ids follow their segments";
  EXPECT_EQ(a.segments()[2].id, 1);
}

TEST(AudienceEvaluate, SegmentsOfSegmentsSeeThisEvaluation) {
  Audience a({seg(1, "top", R"({"and":[{"segment":"mid"},{"trait":"ltv","op":">","value":1000}]})"),
              seg(2, "mid", R"({"and":[{"segment":"base"},{"trait":"ltv","op":">","value":100}]})"),
              seg(3, "base", R"({"trait":"plan","op":"=","value":"pro"})"),
              seg(4, "not_base", R"({"not":{"segment":"base"}})")},
             {});
  Audience::ProfileState p = a.fresh();
  auto o = evaluate(a, p, kT0, R"({"plan":"pro","ltv":2000})");
  EXPECT_TRUE(in(a, o, "base") && in(a, o, "mid") && in(a, o, "top"));
  EXPECT_FALSE(in(a, o, "not_base"));

  o = evaluate(a, p, kT0, R"({"plan":"pro","ltv":500})");
  EXPECT_TRUE(in(a, o, "mid"));
  EXPECT_FALSE(in(a, o, "top"));

  o = evaluate(a, p, kT0, R"({"plan":"free","ltv":2000})");
  EXPECT_FALSE(in(a, o, "base") || in(a, o, "mid") || in(a, o, "top"));
  EXPECT_TRUE(in(a, o, "not_base"));
}

TEST(AudienceCompile, MissingSegmentIsRefused) {
  EXPECT_EQ(error_field({seg(1, "a", R"({"segment":"ghost"})")}), "segments.a.rule");
  EXPECT_NE(error_text({seg(1, "a", R"({"segment":"ghost"})")}).find("\"ghost\""), std::string::npos);
}

TEST(AudienceCompile, MissingComputedTraitIsRefused) {
  std::vector<ComputedSpec> computed = {trait("ltv", R"({"kind":"sum","property":"revenue"})")};
  EXPECT_EQ(error_field({seg(1, "a", R"({"computed":"ghost","op":">","value":1})")}, computed), "segments.a.rule");
  EXPECT_NE(error_text({seg(1, "a", R"({"computed":"ghost","op":">","value":1})")}).find("\"ghost\""),
            std::string::npos);
  EXPECT_EQ(error_field({seg(1, "a", R"({"computed":"ltv","op":">","value":1})")}, computed), "<no error>");
}

TEST(AudienceCompile, BadRulePathIsPrefixed) {
  EXPECT_EQ(error_field({seg(1, "vip", R"({"and":[{"trait":"x","op":"~","value":1}]})")}),
            "segments.vip.rule.and[0].op");
  EXPECT_EQ(error_field({seg(1, "vip", R"({"event":"E","within":{"days":0}})")}), "segments.vip.rule.within.days");
  EXPECT_EQ(error_field({seg(1, "vip", "[]")}), "segments.vip.rule") << "the rule itself";
  EXPECT_EQ(error_text({seg(1, "vip", R"({"and":[{"trait":"x","op":"~","value":1}]})")}).rfind(
                "segments.vip.rule.and[0].op: ", 0),
            0u)
      << "the message keeps the rule's explanation after the new path";
}

TEST(AudienceCompile, MalformedRuleKeepsItsKind) {
  try {
    Audience a({seg(1, "vip", "{")}, {});
    FAIL() << "malformed JSON was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::MalformedJson);
    EXPECT_EQ(e.field(), "segments.vip.rule");
  }
}

TEST(AudienceCompile, BadComputedDefinitionPathIsPrefixed) {
  EXPECT_EQ(error_field({}, {trait("ltv", R"({"kind":"sum"})")}), "computed_traits.ltv.definition.property");
  EXPECT_EQ(error_field({}, {trait("ltv", R"({"kind":"count","where":[{"property":"x","op":"~","value":1}]})")}),
            "computed_traits.ltv.definition.where[0].op");
}

TEST(AudienceCompile, MalformedDefinitionNamesTheDefinition) {
  try {
    Audience a({}, {trait("ltv", "{")});
    FAIL() << "malformed JSON was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::MalformedJson);
    EXPECT_EQ(e.field(), "computed_traits.ltv.definition");
  }
}

TEST(AudienceCompile, CycleIsRefused) {
  EXPECT_EQ(error_field({seg(1, "a", R"({"segment":"b"})"), seg(2, "b", R"({"segment":"a"})")}), "segments.a.rule");
  EXPECT_NE(error_text({seg(1, "a", R"({"segment":"b"})"), seg(2, "b", R"({"segment":"a"})")}).find("a -> b -> a"),
            std::string::npos);
  EXPECT_EQ(error_field({seg(1, "a", R"({"or":[{"segment":"a"},{"trait":"x","op":"exists"}]})")}), "segments.a.rule")
      << "a segment referring to itself";
}

TEST(AudienceCompile, EmptyAudience) {
  Audience a;
  EXPECT_TRUE(a.empty());
  EXPECT_TRUE(a.segments().empty());
  EXPECT_TRUE(a.aggregates().empty());
  Audience::ProfileState p = a.fresh();
  auto o = evaluate(a, p, kT0);
  EXPECT_EQ(o.computed, "{}");
  EXPECT_TRUE(o.members.empty());
  EXPECT_EQ(o.next_expiry, std::nullopt);
  EXPECT_FALSE(a.wants(MessageType::Track, "Order Completed"));
}

// ---------------------------------------------------------------------------
// Aggregates: shared counters and keys
// ---------------------------------------------------------------------------

TEST(AudienceAggregates, SameEventConditionSharesOneCounter) {
  // The same condition, its where written in another order and counted to another bound.
  const char* loyal = R"({"and":[{"trait":"plan","op":"exists"},
      {"event":"Order Completed","count":{"op":">=","value":5},"within":{"days":30},
       "where":[{"property":"revenue","op":">","value":50}]}]})";
  Audience a({seg(1, "buyers", kTwoOrders), seg(2, "loyal", loyal)}, {});
  ASSERT_EQ(a.aggregates().size(), 1u);
  EXPECT_EQ(a.aggregates()[0].computed, "") << "a counter, not a computed trait";
  EXPECT_EQ(a.segments()[0].counters, std::vector<size_t>{0});
  EXPECT_EQ(a.segments()[1].counters, std::vector<size_t>{0});
}

TEST(AudienceAggregates, DifferentConditionsGetTheirOwnCounters) {
  Audience a({seg(1, "buyers", kTwoOrders),
              seg(2, "recent", R"({"event":"Order Completed","within":{"days":7},
                                   "where":[{"property":"revenue","op":">","value":50}]})"),
              seg(3, "both", R"({"or":[{"event":"Signed Up"},{"event":"Order Completed","within":{"days":7},
                                        "where":[{"property":"revenue","op":">","value":50}]}]})")},
             {trait("orders", R"({"kind":"count","event":"Order Completed","within":{"days":30},
                                  "where":[{"property":"revenue","op":">","value":50}]})")});
  EXPECT_EQ(a.aggregates().size(), 4u) << "computed trait, 30-day and 7-day counters, Signed Up";
  const Audience::Segment& both = segment(a, "both");
  ASSERT_EQ(both.counters.size(), 2u);
  EXPECT_EQ(both.counters[1], segment(a, "recent").counters[0]) << "shared with \"recent\"";
  EXPECT_NE(both.counters[1], segment(a, "buyers").counters[0]) << "another window";
}

TEST(AudienceAggregates, KeysAreShortHashesOfDefinitions) {
  // Published FNV-1a (64-bit) test vectors.
  EXPECT_EQ(short_key(""), "acbf29ce484222325") << "the offset basis";
  EXPECT_EQ(short_key("a"), "aaf63dc4c8601ec8c");
  EXPECT_EQ(short_key("foobar"), "a85944171f73967e8");
  Audience a({seg(1, "buyers", kTwoOrders)}, {trait("ltv", R"({"kind":"sum","property":"revenue"})")});
  for (const Aggregate& agg : a.aggregates()) {
    EXPECT_EQ(agg.key, short_key(agg.definition.key));
    EXPECT_EQ(agg.key.size(), 17u);
  }
  EXPECT_EQ(a.aggregates()[0].computed, "ltv");
}

TEST(AudienceAggregates, FoldOneAggregateOnly) {
  Audience a({seg(1, "buyers", kTwoOrders)}, {trait("ltv", R"({"kind":"sum","property":"revenue"})")});
  Audience::ProfileState p = a.fresh();
  a.fold(p, 0, order(1, kT0, 100).input());
  EXPECT_FALSE(p.states[0].empty());
  EXPECT_TRUE(p.states[1].empty());
  a.fold(p, 0, ev(2, kT0, R"({"revenue":"x"})").input());
  EXPECT_EQ(p.states[0].buckets.at(0).count, 1) << "an event the aggregate does not match is skipped";
}

// ---------------------------------------------------------------------------
// Fold and evaluate
// ---------------------------------------------------------------------------

TEST(AudienceEvaluate, TwoOrdersWithinThirtyDaysEntersAndExits) {
  Audience a({seg(1, "buyers", kTwoOrders)}, {});
  const computed::Definition& d = a.aggregates().at(0).definition;
  Micros start = d.bucket_start(kT0);
  Micros second = start + 10 * d.bucket;
  Audience::ProfileState p = a.fresh();

  fold(a, p, order(1, start, 60));
  EXPECT_FALSE(evaluate(a, p, start + 1).members[0]) << "one qualifying order";

  fold(a, p, order(2, start + d.bucket, 40));
  fold(a, p, ev(3, start + d.bucket, R"({"revenue":100})", "Order Refunded"));
  fold(a, p, ev(4, start + d.bucket, R"({"revenue":100})", "Order Completed", MessageType::Page));
  EXPECT_FALSE(evaluate(a, p, start + 2 * d.bucket).members[0]) << "revenue 40, another event, a page";

  fold(a, p, order(5, second, 75));
  Audience::Outcome o = evaluate(a, p, second);
  EXPECT_TRUE(o.members[0]) << "the second qualifying order";
  EXPECT_EQ(o.next_expiry, start + d.window);

  EXPECT_TRUE(evaluate(a, p, start + d.window - 1).members[0]);
  o = evaluate(a, p, start + d.window);
  EXPECT_FALSE(o.members[0]) << "the first order's bucket has left the window";
  EXPECT_EQ(o.next_expiry, second + d.window);

  o = evaluate(a, p, second + d.window);
  EXPECT_FALSE(o.members[0]);
  EXPECT_EQ(o.next_expiry, std::nullopt);
  EXPECT_EQ(a.write_json(p), "{}") << "evaluate expired every bucket";
}

TEST(AudienceEvaluate, NextExpiryIsTheEarliestOverAggregates) {
  Audience a({seg(1, "week", R"({"event":"Order Completed","within":{"days":7}})")},
             {trait("month", R"({"kind":"count","within":{"days":30}})"), trait("ever", R"({"kind":"count"})")});
  const computed::Definition& week = a.aggregates().at(2).definition;
  ASSERT_EQ(week.window, 7 * kDay);
  Micros start = week.bucket_start(kT0);
  Audience::ProfileState p = a.fresh();
  fold(a, p, order(1, start, 10));
  EXPECT_EQ(evaluate(a, p, start).next_expiry, start + 7 * kDay);
}

TEST(AudienceEvaluate, ComputedValuesAsJson) {
  Audience a({}, {trait("skus", R"({"kind":"unique","property":"sku","event":"Order Completed"})"),
                  trait("orders", R"({"kind":"count","event":"Order Completed"})"),
                  trait("revenue", R"({"kind":"sum","property":"revenue"})"),
                  trait("last_sku", R"({"kind":"last","property":"sku"})")});
  Audience::ProfileState p = a.fresh();
  EXPECT_EQ(evaluate(a, p, kT0).computed, R"({"last_sku":null,"orders":0,"revenue":0,"skus":[]})");
  fold(a, p, order(1, kT0, 10, "a"));
  fold(a, p, order(2, kT0 + kHour, 30, "b"));
  fold(a, p, order(3, kT0 + 2 * kHour, 20, "c"));
  fold(a, p, ev(4, kT0 + 3 * kHour, R"({"plan":"pro"})", "Signed Up"));
  EXPECT_EQ(evaluate(a, p, kT0 + kDay).computed, R"({"last_sku":"c","orders":3,"revenue":60,"skus":["c","b","a"]})")
      << "by name";
}

TEST(AudienceEvaluate, ComputedNamesAreJsonEscaped) {
  Audience a({}, {trait("say \"hi\"", R"({"kind":"count"})")});
  Audience::ProfileState p = a.fresh();
  std::string computed = evaluate(a, p, kT0).computed;
  EXPECT_TRUE(same_json(computed, R"({"say \"hi\"":0})")) << computed;
}

TEST(AudienceEvaluate, SegmentOnAComputedTrait) {
  Audience a({seg(1, "big", R"({"computed":"ltv","op":">=","value":100})")},
             {trait("ltv", R"({"kind":"sum","property":"revenue","event":"Order Completed"})")});
  Audience::ProfileState p = a.fresh();
  EXPECT_FALSE(evaluate(a, p, kT0).members[0]);
  fold(a, p, order(1, kT0, 60));
  EXPECT_FALSE(evaluate(a, p, kT0).members[0]);
  fold(a, p, order(2, kT0 + kHour, 40));
  Audience::Outcome o = evaluate(a, p, kT0 + kHour);
  EXPECT_EQ(o.computed, R"({"ltv":100})");
  EXPECT_TRUE(o.members[0]);
}

TEST(AudienceEvaluate, ComputedComparisonSeesTheExactValue) {
  // 8/3 shows as 2.66666666666667 (15 significant digits); the segment
  // compares that shown value, read back at full precision.
  const char* exact = R"({"computed":"avg","op":"=","value":2.66666666666667})";
  Audience a({seg(1, "exact", exact)}, {trait("avg", R"({"kind":"avg","property":"revenue"})")});
  Audience::ProfileState p = a.fresh();
  fold(a, p, order(1, kT0, 2));
  fold(a, p, order(2, kT0, 3));
  fold(a, p, order(3, kT0, 3));
  Audience::Outcome o = evaluate(a, p, kT0);
  EXPECT_EQ(o.computed, R"({"avg":2.66666666666667})");
  EXPECT_TRUE(o.members[0]) << "the segment compares the value the profile shows";
  EXPECT_TRUE(a.evaluate(segments::Rule::compile(exact), p, nullptr, {}, kT0));
}

TEST(AudienceEvaluate, SegmentOnAWindowedComputedTrait) {
  Audience a({seg(1, "active", R"({"computed":"orders_7d","op":">","value":0})")},
             {trait("orders_7d", R"({"kind":"count","event":"Order Completed","within":{"days":7}})")});
  const computed::Definition& d = a.aggregates().at(0).definition;
  Micros start = d.bucket_start(kT0);
  Audience::ProfileState p = a.fresh();
  fold(a, p, order(1, start, 10));
  EXPECT_TRUE(evaluate(a, p, start + d.window - 1).members[0]);
  Audience::Outcome o = evaluate(a, p, start + d.window);
  EXPECT_FALSE(o.members[0]);
  EXPECT_EQ(o.computed, R"({"orders_7d":0})");
}

TEST(AudienceEvaluate, TraitsNullMeansNone) {
  Audience a({seg(1, "pro", R"({"trait":"plan","op":"=","value":"pro"})")}, {});
  Audience::ProfileState p = a.fresh();
  EXPECT_FALSE(a.evaluate(p, nullptr, {}, kT0).members[0]);
}

TEST(AudienceEvaluate, AccountConditions) {
  Audience a({seg(1, "enterprise", R"({"account":{"trait":"plan","op":"=","value":"enterprise"}})"),
              seg(2, "acme", R"({"account":{"id":"acme"}})"),
              seg(3, "plain", R"({"trait":"plan","op":"exists"})")},
             {});
  EXPECT_TRUE(a.uses_accounts());
  Audience::ProfileState p = a.fresh();

  std::vector<AccountData> accounts;
  EXPECT_FALSE(in(a, evaluate(a, p, kT0, "{}", accounts), "acme")) << "no accounts";

  accounts.push_back(account("acme", R"({"plan":"pro"})"));
  Audience::Outcome o = evaluate(a, p, kT0, "{}", accounts);
  EXPECT_TRUE(in(a, o, "acme"));
  EXPECT_FALSE(in(a, o, "enterprise"));

  accounts.push_back(account("globex", R"({"plan":"enterprise"})"));
  o = evaluate(a, p, kT0, R"({"plan":"free"})", accounts);
  EXPECT_TRUE(in(a, o, "enterprise")) << "any one account";
  EXPECT_TRUE(in(a, o, "plain")) << "profile traits are not account traits";
}

TEST(AudienceEvaluate, AdHocRuleSharesTheAudienceCounter) {
  Audience a({seg(1, "buyers", kTwoOrders)}, {});
  segments::Rule three = segments::Rule::compile(R"({"event":"Order Completed","count":{"op":">=","value":3},
      "within":{"days":30},"where":[{"property":"revenue","op":">","value":50}]})");
  segments::Rule buyer_pro = segments::Rule::compile(R"({"and":[{"segment":"buyers"},
      {"trait":"plan","op":"=","value":"pro"}]})");
  Audience::ProfileState p = a.fresh();
  rapidjson::Document traits = json(R"({"plan":"pro"})");
  fold(a, p, order(1, kT0, 60));
  fold(a, p, order(2, kT0 + kHour, 70));
  EXPECT_FALSE(a.evaluate(three, p, &traits, {}, kT0 + kHour));
  EXPECT_TRUE(a.evaluate(buyer_pro, p, &traits, {}, kT0 + kHour)) << "segments of the audience are known";
  fold(a, p, order(3, kT0 + 2 * kHour, 80));
  EXPECT_TRUE(a.evaluate(three, p, &traits, {}, kT0 + 2 * kHour));
}

TEST(AudienceEvaluate, AdHocRuleWithAnUnknownConditionCountsNothing) {
  Audience a({seg(1, "buyers", kTwoOrders)}, {});
  Audience::ProfileState p = a.fresh();
  fold(a, p, ev(1, kT0, "{}", "Trial Started"));
  segments::Rule trial = segments::Rule::compile(R"({"event":"Trial Started"})");
  EXPECT_FALSE(a.evaluate(trial, p, nullptr, {}, kT0)) << "no counter is kept for it";
}

TEST(AudienceEvaluate, MergedProfilesEqualOneProfile) {
  Audience a({seg(1, "buyers", kTwoOrders)},
             {trait("ltv", R"({"kind":"sum","property":"revenue"})"), trait("last", R"({"kind":"last","property":"sku"})")});
  Audience::ProfileState x = a.fresh(), y = a.fresh(), all = a.fresh();
  for (int i = 0; i < 6; i++) {
    Event e = order(i + 1, kT0 + i * kHour, 40 + 10 * i, i % 2 ? "odd" : "even");
    fold(a, i % 2 ? x : y, e);
    fold(a, all, e);
  }
  a.merge(x, y);
  EXPECT_EQ(a.write_json(x), a.write_json(all));
  EXPECT_EQ(evaluate(a, x, kT0 + kDay).computed, evaluate(a, all, kT0 + kDay).computed);
  EXPECT_TRUE(evaluate(a, x, kT0 + kDay).members[0]);
}

// ---------------------------------------------------------------------------
// Stored state
// ---------------------------------------------------------------------------

Audience stored_audience() {
  return Audience({seg(1, "buyers", kTwoOrders)},
                  {trait("ltv", R"({"kind":"sum","property":"revenue"})"),
                   trait("skus", R"({"kind":"unique","property":"sku","within":{"days":30}})"),
                   trait("top", R"({"kind":"most_frequent","property":"sku"})"),
                   trait("first", R"({"kind":"first","property":"sku"})")});
}

TEST(AudienceState, FreshStateWritesAsEmptyObject) {
  Audience a = stored_audience();
  EXPECT_EQ(a.write_json(a.fresh()), "{}");
  EXPECT_EQ(a.write_json(a.read("")), "{}");
  EXPECT_EQ(a.read("").states.size(), a.aggregates().size());
}

TEST(AudienceState, ReadWriteRoundTrip) {
  Audience a = stored_audience();
  Audience::ProfileState p = a.fresh();
  for (int i = 0; i < 5; i++) fold(a, p, order(i + 1, kT0 + i * kDay, 30 * i, i % 2 ? "x" : "y"));
  std::string written = a.write_json(p);
  rapidjson::Document doc = json(written);
  ASSERT_TRUE(doc.IsObject());
  EXPECT_EQ(doc.MemberCount(), a.aggregates().size()) << "one member per aggregate with a state";
  for (const Aggregate& agg : a.aggregates()) EXPECT_TRUE(doc.HasMember(agg.key.c_str())) << agg.key;

  Audience::ProfileState back = a.read(written);
  EXPECT_EQ(a.write_json(back), written);
  Audience::Outcome o1 = evaluate(a, p, kT0 + 5 * kDay), o2 = evaluate(a, back, kT0 + 5 * kDay);
  EXPECT_EQ(o1.computed, o2.computed);
  EXPECT_EQ(o1.members, o2.members);
  EXPECT_EQ(o1.next_expiry, o2.next_expiry);
}

TEST(AudienceState, EmptyStatesAreLeftOut) {
  Audience a = stored_audience();
  Audience::ProfileState p = a.fresh();
  fold(a, p, ev(1, kT0, R"({"revenue":5})", "Viewed"));  // only ltv takes it
  rapidjson::Document doc = json(a.write_json(p));
  ASSERT_EQ(doc.MemberCount(), 1u);
  EXPECT_TRUE(doc.HasMember(a.aggregates()[1].key.c_str()));
  ASSERT_EQ(a.aggregates()[1].computed, "ltv");
}

TEST(AudienceState, ReadIgnoresUnknownKeys) {
  Audience a = stored_audience();
  Audience::ProfileState p = a.fresh();
  fold(a, p, order(1, kT0, 60, "x"));
  std::string written = a.write_json(p);
  std::string with_extra = R"({"a0123456789abcdef":[[0,1]],"dropped":"anything",)" + written.substr(1);
  EXPECT_EQ(a.write_json(a.read(with_extra)), written);
}

TEST(AudienceState, StateOfAnotherAudienceKeepsOnlyWhatIsShared) {
  Audience before({seg(1, "buyers", kTwoOrders)}, {trait("ltv", R"({"kind":"sum","property":"revenue"})")});
  Audience after({}, {trait("ltv", R"({"kind":"sum","property":"revenue"})"),
                      trait("n", R"({"kind":"count"})")});
  Audience::ProfileState p = before.fresh();
  fold(before, p, order(1, kT0, 60));
  Audience::ProfileState q = after.read(before.write_json(p));
  EXPECT_EQ(evaluate(after, q, kT0).computed, R"({"ltv":60,"n":0})") << "the counter is dropped, n is new";
}

TEST(AudienceState, TwoTraitsWithOneDefinition) {
  Audience a({}, {trait("b", R"({"kind":"sum","property":"revenue"})"),
                  trait("a", R"({"kind":"sum","property":"revenue"})")});
  Audience::ProfileState p = a.fresh();
  fold(a, p, order(1, kT0, 60));
  EXPECT_EQ(evaluate(a, p, kT0).computed, R"({"a":60,"b":60})");
  Audience::ProfileState back = a.read(a.write_json(p));
  EXPECT_EQ(evaluate(a, back, kT0).computed, R"({"a":60,"b":60})");
}

TEST(AudienceState, ReadRefusesGarbage) {
  Audience a = stored_audience();
  EXPECT_THROW(a.read("[]"), Error);
  EXPECT_THROW(a.read("{"), Error);
  EXPECT_THROW(a.read("42"), Error);
  std::string bad_state = "{\"" + a.aggregates()[0].key + "\":{}}";
  EXPECT_THROW(a.read(bad_state), Error) << "a known key whose state is not a state";
}

// ---------------------------------------------------------------------------
// What the audience needs
// ---------------------------------------------------------------------------

TEST(AudienceNeeds, RelativeDatesAndAccounts) {
  Audience windows({seg(1, "buyers", kTwoOrders)}, {});
  EXPECT_FALSE(windows.uses_relative_dates()) << "an event window is kept in buckets";
  EXPECT_FALSE(windows.uses_accounts());

  Audience relative({seg(1, "lapsed", R"({"trait":"last_seen","op":"<","value":{"days_ago":7}})")}, {});
  EXPECT_TRUE(relative.uses_relative_dates());
  EXPECT_FALSE(relative.uses_accounts());

  Audience accounts({seg(1, "acme", R"({"account":{"id":"acme"}})")}, {});
  EXPECT_TRUE(accounts.uses_accounts());
  EXPECT_FALSE(accounts.uses_relative_dates());
}

TEST(AudienceNeeds, WantsEventsSomeAggregateTakes) {
  Audience a({seg(1, "buyers", kTwoOrders)}, {trait("views", R"({"kind":"count","type":"page"})")});
  EXPECT_TRUE(a.wants(MessageType::Track, "Order Completed"));
  EXPECT_FALSE(a.wants(MessageType::Track, "Signed Up"));
  EXPECT_FALSE(a.wants(MessageType::Screen, "Order Completed")) << "the counter is for track events";
  EXPECT_TRUE(a.wants(MessageType::Page, "Pricing")) << "views takes any page";
  EXPECT_FALSE(a.wants(MessageType::Identify, ""));

  Audience everything({}, {trait("n", R"({"kind":"count"})")});
  EXPECT_TRUE(everything.wants(MessageType::Identify, ""));
  EXPECT_TRUE(everything.wants(MessageType::Track, "Anything"));

  Audience traits_only({seg(1, "pro", R"({"trait":"plan","op":"=","value":"pro"})")}, {});
  EXPECT_FALSE(traits_only.wants(MessageType::Track, "Order Completed"));
  EXPECT_FALSE(traits_only.empty());
}

}  // namespace
}  // namespace cdp
