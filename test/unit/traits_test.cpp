// Profile traits merged field by field (core/traits.hpp): each strategy
// (last, first, max, min, source_priority), provenance kept per field and
// stored as JSON, mapped paths, and the promise that the result does not
// depend on the order events are folded in: ties are broken by
// (timestamp, messageId).
#include <algorithm>
#include <climits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/traits.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using test::at;
using test::same_json;

EventFacts identify(std::string traits, std::string_view when, std::string message_id, int source = 1) {
  EventFacts e;
  e.type = MessageType::Identify;
  e.traits = std::move(traits);
  e.timestamp = at(when);
  e.message_id = std::move(message_id);
  e.source_id = source;
  return e;
}

TraitRule rule(std::string trait, TraitStrategy s, std::vector<int> priority = {}, std::string from_path = "") {
  TraitRule r;
  r.trait = std::move(trait);
  r.strategy = s;
  r.source_priority = std::move(priority);
  r.from_path = std::move(from_path);
  return r;
}

TraitValue value(std::string json, Micros ts, std::string message_id = "m", int source = 1) {
  return TraitValue{std::move(json), ts, source, std::move(message_id)};
}

// The traits JSON after folding `events` in the given order.
std::string fold(const TraitRules& rules, const std::vector<EventFacts>& events) {
  TraitSet set;
  for (auto& e : events) rules.fold_event(set, e);
  return set.traits_json();
}

// Folds in every order of `events` (all permutations: keep it small) and
// expects the same traits and provenance each time; returns the traits.
std::string fold_every_order(const TraitRules& rules, std::vector<EventFacts> events) {
  std::vector<size_t> order(events.size());
  std::iota(order.begin(), order.end(), 0);
  std::string traits, meta;
  bool first = true;
  do {
    TraitSet set;
    for (size_t i : order) rules.fold_event(set, events[i]);
    if (first) {
      traits = set.traits_json();
      meta = set.meta_json();
      first = false;
    } else {
      EXPECT_EQ(set.traits_json(), traits) << "the result depends on the order";
      EXPECT_EQ(set.meta_json(), meta) << "the provenance depends on the order";
    }
  } while (std::next_permutation(order.begin(), order.end()));
  return traits;
}

TEST(TraitStrategyNames, Parse) {
  EXPECT_EQ(parse_trait_strategy("last"), TraitStrategy::Last);
  EXPECT_EQ(parse_trait_strategy("first"), TraitStrategy::First);
  EXPECT_EQ(parse_trait_strategy("max"), TraitStrategy::Max);
  EXPECT_EQ(parse_trait_strategy("min"), TraitStrategy::Min);
  EXPECT_EQ(parse_trait_strategy("source_priority"), TraitStrategy::SourcePriority);
  EXPECT_EQ(parse_trait_strategy("Last"), std::nullopt);
  EXPECT_EQ(parse_trait_strategy("newest"), std::nullopt);
}

// ------------------------------------------------------------ last

TEST(TraitsLast, NewestEventWins) {
  TraitRules rules;  // no rule: last
  auto older = identify(R"({"plan":"free","name":"Ann"})", "2025-01-01T00:00:00Z", "m1");
  auto newer = identify(R"({"plan":"pro"})", "2025-01-02T00:00:00Z", "m2");
  EXPECT_TRUE(same_json(fold(rules, {older, newer}), R"({"plan":"pro","name":"Ann"})"));
}

TEST(TraitsLast, LateArrivingOlderEventDoesNotOverwrite) {
  TraitRules rules({rule("plan", TraitStrategy::Last)});
  TraitSet set;
  EXPECT_TRUE(rules.fold_event(set, identify(R"({"plan":"pro"})", "2025-01-02T00:00:00Z", "m2")));
  EXPECT_FALSE(rules.fold_event(set, identify(R"({"plan":"free"})", "2025-01-01T00:00:00Z", "m1")))
      << "an older event changes nothing";
  EXPECT_EQ(set.traits_json(), R"({"plan":"pro"})");
  EXPECT_EQ(set.fields.at("plan").message_id, "m2");
}

TEST(TraitsLast, SameTimeTieBrokenByMessageId) {
  TraitRules rules;
  auto a = identify(R"({"plan":"a"})", "2025-01-01T00:00:00Z", "m-a");
  auto b = identify(R"({"plan":"b"})", "2025-01-01T00:00:00Z", "m-b");
  EXPECT_EQ(fold(rules, {a, b}), R"({"plan":"b"})");
  EXPECT_EQ(fold(rules, {b, a}), R"({"plan":"b"})");
}

TEST(TraitsLast, OnlyIdentifyTraitsAreFolded) {
  TraitRules rules;
  EventFacts track = identify(R"({"plan":"pro"})", "2025-01-01T00:00:00Z", "m1");
  track.type = MessageType::Track;
  TraitSet set;
  EXPECT_FALSE(rules.fold_event(set, track));
  EXPECT_TRUE(set.fields.empty());
  EventFacts group = track;
  group.type = MessageType::Group;
  EXPECT_FALSE(rules.fold_event(set, group)) << "group traits belong to the account";
  EXPECT_TRUE(rules.fold_event(set, group, true));
  EXPECT_EQ(set.traits_json(), R"({"plan":"pro"})");
  TraitSet account;
  EventFacts id = identify(R"({"plan":"x"})", "2025-01-01T00:00:00Z", "m2");
  EXPECT_FALSE(rules.fold_event(account, id, true)) << "identify traits do not go to accounts";
}

TEST(TraitsLast, OfferReportsChangeOnlyWhenTheValueChanges) {
  TraitRules rules;
  TraitSet set;
  EXPECT_TRUE(rules.offer(set, "plan", value(R"("pro")", 10, "m1")));
  EXPECT_FALSE(rules.offer(set, "plan", value(R"("pro")", 20, "m2"))) << "same value, newer provenance";
  EXPECT_EQ(set.fields.at("plan").ts, 20) << "provenance still moves to the newer write";
  EXPECT_EQ(set.fields.at("plan").message_id, "m2");
  EXPECT_TRUE(rules.offer(set, "plan", value(R"("team")", 30, "m3")));
  EXPECT_FALSE(rules.offer(set, "plan", value(R"("free")", 5, "m0")));
  EXPECT_EQ(set.fields.at("plan").json, R"("team")");
}

TEST(TraitsLast, NestedValuesAreKeptAsJson) {
  TraitRules rules;
  auto e = identify(R"({"address":{"city":"Oslo","zip":"0150"},"tags":[1,"a",null],"vip":true,"n":null})",
                    "2025-01-01T00:00:00Z", "m1");
  EXPECT_TRUE(same_json(fold(rules, {e}), R"({"address":{"city":"Oslo","zip":"0150"},"tags":[1,"a",null],"vip":true,"n":null})"));
}

// ------------------------------------------------------------ first

TEST(TraitsFirst, OldestEventWinsInAnyOrder) {
  TraitRules rules({rule("signup_source", TraitStrategy::First)});
  std::vector<EventFacts> events{identify(R"({"signup_source":"ads"})", "2025-01-03T00:00:00Z", "m3"),
                                 identify(R"({"signup_source":"organic"})", "2025-01-01T00:00:00Z", "m1"),
                                 identify(R"({"signup_source":"email"})", "2025-01-02T00:00:00Z", "m2")};
  EXPECT_EQ(fold_every_order(rules, events), R"({"signup_source":"organic"})");
}

TEST(TraitsFirst, SameTimeTieBrokenByMessageId) {
  TraitRules rules({rule("x", TraitStrategy::First)});
  std::vector<EventFacts> events{identify(R"({"x":"b"})", "2025-01-01T00:00:00Z", "m-b"),
                                 identify(R"({"x":"a"})", "2025-01-01T00:00:00Z", "m-a")};
  EXPECT_EQ(fold_every_order(rules, events), R"({"x":"a"})") << "the smaller messageId counts as first";
}

// ------------------------------------------------------------ max / min

TEST(TraitsMaxMin, NumbersCompareAsNumbers) {
  TraitRules rules({rule("ltv", TraitStrategy::Max), rule("lowest", TraitStrategy::Min)});
  std::vector<EventFacts> events{identify(R"({"ltv":9,"lowest":9})", "2025-01-01T00:00:00Z", "m1"),
                                 identify(R"({"ltv":10,"lowest":10})", "2025-01-02T00:00:00Z", "m2"),
                                 identify(R"({"ltv":9.5,"lowest":-2.5})", "2025-01-03T00:00:00Z", "m3"),
                                 identify(R"({"ltv":1e2,"lowest":100})", "2024-12-01T00:00:00Z", "m0")};
  std::string t = fold_every_order(rules, events);
  EXPECT_TRUE(same_json(t, R"({"ltv":1e2,"lowest":-2.5})")) << t;
  EXPECT_EQ(test::json(t)["ltv"].GetDouble(), 100.0);
}

TEST(TraitsMaxMin, StringsCompareAsStrings) {
  TraitRules rules({rule("hi", TraitStrategy::Max), rule("lo", TraitStrategy::Min)});
  std::vector<EventFacts> events{identify(R"({"hi":"b","lo":"b"})", "2025-01-01T00:00:00Z", "m1"),
                                 identify(R"({"hi":"c","lo":"c"})", "2025-01-02T00:00:00Z", "m2"),
                                 identify(R"({"hi":"a","lo":"a"})", "2025-01-03T00:00:00Z", "m3")};
  EXPECT_EQ(fold_every_order(rules, events), R"({"hi":"c","lo":"a"})");
  // "9" > "10" as strings, 9 < 10 as numbers.
  std::vector<EventFacts> digits{identify(R"({"hi":"9"})", "2025-01-01T00:00:00Z", "m1"),
                                 identify(R"({"hi":"10"})", "2025-01-02T00:00:00Z", "m2")};
  EXPECT_EQ(fold_every_order(rules, digits), R"({"hi":"9"})");
}

TEST(TraitsMaxMin, EqualValuesKeepTheNewestProvenance) {
  TraitRules rules({rule("ltv", TraitStrategy::Max)});
  std::vector<EventFacts> events{identify(R"({"ltv":5})", "2025-01-01T00:00:00Z", "m1"),
                                 identify(R"({"ltv":5.0})", "2025-01-02T00:00:00Z", "m2")};
  TraitSet set;
  for (auto& e : events) rules.fold_event(set, e);
  EXPECT_EQ(set.fields.at("ltv").message_id, "m2");
  fold_every_order(rules, events);
}

TEST(TraitsMaxMin, MixedTypesDoNotDependOnOrder) {
  // A number and a string do not compare as values; the outcome must still be one
  // value whatever the order (5 newest, "x" in between, 7 oldest: folding 5, "x", 7
  // once gave 7 and folding "x", 7, 5 gave 5).
  TraitRules rules({rule("v", TraitStrategy::Max), rule("w", TraitStrategy::Min)});
  std::vector<EventFacts> events{identify(R"({"v":5,"w":5})", "2025-01-03T00:00:00Z", "m3"),
                                 identify(R"({"v":"x","w":"x"})", "2025-01-02T00:00:00Z", "m2"),
                                 identify(R"({"v":7,"w":3})", "2025-01-01T00:00:00Z", "m1")};
  // Numbers beat strings for both: the largest number, the smallest number.
  EXPECT_EQ(fold_every_order(rules, events), R"({"v":7,"w":3})");
  // Also with values that compare to nothing (objects, booleans, null): strings
  // and numbers beat them, so nothing changes.
  events.push_back(identify(R"({"v":{"o":1},"w":true})", "2025-01-04T00:00:00Z", "m4"));
  events.push_back(identify(R"({"v":null,"w":[1]})", "2024-01-04T00:00:00Z", "m0"));
  EXPECT_EQ(fold_every_order(rules, events), R"({"v":7,"w":3})");
  // Without numbers, a string beats the rest; with neither, the newest wins.
  std::vector<EventFacts> no_numbers{identify(R"({"v":"x","w":"x"})", "2025-01-02T00:00:00Z", "m2"),
                                     identify(R"({"v":{"o":1},"w":true})", "2025-01-04T00:00:00Z", "m4"),
                                     identify(R"({"v":null,"w":[1]})", "2024-01-04T00:00:00Z", "m0")};
  EXPECT_EQ(fold_every_order(rules, no_numbers), R"({"v":"x","w":"x"})");
  no_numbers.erase(no_numbers.begin());
  EXPECT_EQ(fold_every_order(rules, no_numbers), R"({"v":{"o":1},"w":true})");
}

// ------------------------------------------------------------ source priority

TEST(TraitsSourcePriority, FirstListedSourceWinsEvenWhenOlder) {
  TraitRules rules({rule("plan", TraitStrategy::SourcePriority, {3, 1})});  // CRM (3), then web (1)
  std::vector<EventFacts> events{identify(R"({"plan":"crm"})", "2025-01-01T00:00:00Z", "m1", 3),
                                 identify(R"({"plan":"web"})", "2025-01-05T00:00:00Z", "m2", 1),
                                 identify(R"({"plan":"app"})", "2025-01-09T00:00:00Z", "m3", 2)};
  EXPECT_EQ(fold_every_order(rules, events), R"({"plan":"crm"})");
  // Without the CRM, web beats the unlisted app source even though the app is newer.
  events.erase(events.begin());
  EXPECT_EQ(fold_every_order(rules, events), R"({"plan":"web"})");
}

TEST(TraitsSourcePriority, SameSourceNewestWins) {
  TraitRules rules({rule("plan", TraitStrategy::SourcePriority, {3, 1})});
  std::vector<EventFacts> events{identify(R"({"plan":"old"})", "2025-01-01T00:00:00Z", "m1", 3),
                                 identify(R"({"plan":"new"})", "2025-01-02T00:00:00Z", "m2", 3),
                                 identify(R"({"plan":"x"})", "2025-01-03T00:00:00Z", "m3", 7),
                                 identify(R"({"plan":"y"})", "2025-01-04T00:00:00Z", "m4", 8)};
  EXPECT_EQ(fold_every_order(rules, events), R"({"plan":"new"})");
  events.resize(2);
  events[0].source_id = events[1].source_id = 9;  // both unlisted: newest
  EXPECT_EQ(fold_every_order(rules, events), R"({"plan":"new"})");
}

// ------------------------------------------------------------ mapped paths

TEST(TraitsMapped, FromPathOfAnyEvent) {
  TraitRules rules({rule("plan", TraitStrategy::Last, {}, "properties.plan"),
                    rule("campaign", TraitStrategy::First, {}, "context.campaign.name")});
  EventFacts track;
  track.type = MessageType::Track;
  track.timestamp = at("2025-01-02T00:00:00Z");
  track.message_id = "t1";
  track.properties = R"({"plan":"pro","other":1})";
  track.context = R"({"campaign":{"name":"spring"}})";
  TraitSet set;
  EXPECT_TRUE(rules.fold_event(set, track));
  EXPECT_TRUE(same_json(set.traits_json(), R"({"plan":"pro","campaign":"spring"})"));
  EXPECT_EQ(set.fields.at("plan").message_id, "t1");

  // An identify with traits.plan older than the track does not win under last.
  EXPECT_FALSE(rules.fold_event(set, identify(R"({"plan":"free"})", "2025-01-01T00:00:00Z", "i1")));
  EXPECT_EQ(set.fields.at("plan").json, R"("pro")");
  // A newer track with a missing or null path changes nothing.
  EventFacts none = track;
  none.timestamp = at("2025-01-03T00:00:00Z");
  none.message_id = "t2";
  none.properties = R"({"plan":null})";
  none.context = R"({"campaign":"not an object"})";
  EXPECT_FALSE(rules.fold_event(set, none));
  none.properties = "";
  none.context = "not json";
  EXPECT_FALSE(rules.fold_event(set, none));
  EXPECT_TRUE(same_json(set.traits_json(), R"({"plan":"pro","campaign":"spring"})"));
  // A later campaign does not replace the first.
  none.context = R"({"campaign":{"name":"summer"}})";
  EXPECT_FALSE(rules.fold_event(set, none));
  none.properties = R"({"plan":{"tier":2}})";
  EXPECT_TRUE(rules.fold_event(set, none));
  EXPECT_EQ(set.fields.at("plan").json, R"({"tier":2})");
}

TEST(TraitsMapped, FromTraitsPath) {
  TraitRules rules({rule("city", TraitStrategy::Last, {}, "traits.address.city")});
  TraitSet set;
  rules.fold_event(set, identify(R"({"address":{"city":"Oslo"}})", "2025-01-01T00:00:00Z", "m1"));
  EXPECT_TRUE(same_json(set.traits_json(), R"({"address":{"city":"Oslo"},"city":"Oslo"})"));
}

// ------------------------------------------------------------ provenance JSON

TEST(TraitsProvenance, MetaJsonNamesTimeSourceAndMessageId) {
  TraitRules rules;
  TraitSet set;
  rules.fold_event(set, identify(R"({"plan":"pro","n":1.5})", "2025-01-02T03:04:05.123456Z", "msg-1", 4));
  EXPECT_EQ(set.traits_json(), R"({"n":1.5,"plan":"pro"})");
  EXPECT_EQ(set.meta_json(),
            R"({"n":{"at":"2025-01-02T03:04:05.123456Z","source":4,"messageId":"msg-1"},)"
            R"("plan":{"at":"2025-01-02T03:04:05.123456Z","source":4,"messageId":"msg-1"}})");
}

TEST(TraitsProvenance, RoundTripsThroughJson) {
  TraitRules rules({rule("first", TraitStrategy::First)});
  TraitSet set;
  rules.fold_event(set, identify(R"({"plan":"pro","obj":{"a":[1,2]},"big":12345678901234567890,"u":"é\n"})",
                                 "2025-01-02T03:04:05.000001Z", "m\"1", 2));
  rules.fold_event(set, identify(R"({"first":true})", "1999-12-31T23:59:59.999999Z", "m0", 3));
  TraitSet back = TraitSet::from_json(set.traits_json(), set.meta_json());
  ASSERT_EQ(back.fields.size(), set.fields.size());
  for (auto& [name, v] : set.fields) {
    const TraitValue& b = back.fields.at(name);
    EXPECT_EQ(b.json, v.json) << name;
    EXPECT_EQ(b.ts, v.ts) << name;
    EXPECT_EQ(b.source, v.source) << name;
    EXPECT_EQ(b.message_id, v.message_id) << name;
  }
  EXPECT_EQ(back.traits_json(), set.traits_json());
  EXPECT_EQ(back.meta_json(), set.meta_json());
  // And the reloaded set still orders writes: an older event does not overwrite.
  EXPECT_FALSE(rules.fold_event(back, identify(R"({"plan":"free"})", "2025-01-02T03:04:05Z", "m9")));
  EXPECT_TRUE(rules.fold_event(back, identify(R"({"plan":"team"})", "2025-01-02T03:04:05.000002Z", "m9")));
}

TEST(TraitsProvenance, MissingMetaCountsAsOldest) {
  TraitRules rules({rule("first", TraitStrategy::First)});
  TraitSet set = TraitSet::from_json(R"({"plan":"legacy","first":"legacy"})", R"({})");
  ASSERT_EQ(set.fields.size(), 2u);
  EXPECT_EQ(set.fields.at("plan").ts, INT64_MIN);
  EXPECT_TRUE(rules.fold_event(set, identify(R"({"plan":"pro","first":"new"})", "1970-01-01T00:00:00Z", "m1")));
  EXPECT_EQ(set.fields.at("plan").json, R"("pro")") << "any write is newer than an unknown one";
  EXPECT_EQ(set.fields.at("first").json, R"("legacy")") << "an unknown write is the first";

  TraitSet no_meta = TraitSet::from_json(R"({"a":1})", "");
  EXPECT_EQ(no_meta.fields.at("a").ts, INT64_MIN);
  TraitSet bad_meta = TraitSet::from_json(R"({"a":1})", R"({"a":{"at":"not a time","source":"x","messageId":5}})");
  EXPECT_EQ(bad_meta.fields.at("a").ts, INT64_MIN);
  EXPECT_EQ(bad_meta.fields.at("a").source, 0);
  EXPECT_EQ(bad_meta.fields.at("a").message_id, "");
}

TEST(TraitsProvenance, UnknownTimeSurvivesARoundTrip) {
  // A field whose time is unknown is stored and reloaded as unknown, not as some
  // other time: it must stay the oldest after a round trip.
  TraitRules rules({rule("first", TraitStrategy::First)});
  TraitSet set = TraitSet::from_json(R"({"first":"legacy"})", "");
  std::string meta = set.meta_json();
  auto doc = test::json(meta);
  ASSERT_TRUE(doc.IsObject() && doc.HasMember("first") && doc["first"].HasMember("at")) << meta;
  EXPECT_TRUE(doc["first"]["at"].IsNull()) << "not a made-up time: " << meta;
  TraitSet back = TraitSet::from_json(set.traits_json(), meta);
  EXPECT_EQ(back.fields.at("first").ts, INT64_MIN) << meta;
  EXPECT_FALSE(rules.fold_event(back, identify(R"({"first":"new"})", "0001-01-01T00:00:00Z", "m1")));
}

TEST(TraitsProvenance, BadTraitsTextGivesAnEmptySet) {
  EXPECT_TRUE(TraitSet::from_json("", "").fields.empty());
  EXPECT_TRUE(TraitSet::from_json("not json", "{}").fields.empty());
  EXPECT_TRUE(TraitSet::from_json("[1,2]", "{}").fields.empty());
  EXPECT_EQ(TraitSet().traits_json(), "{}");
  EXPECT_EQ(TraitSet().meta_json(), "{}");
}

// ------------------------------------------------------------ merging sets

TEST(TraitsFoldSet, MergeIsFieldByFieldAndSymmetric) {
  TraitRules rules({rule("plan", TraitStrategy::Last),
                    rule("signup", TraitStrategy::First),
                    rule("ltv", TraitStrategy::Max),
                    rule("tier", TraitStrategy::SourcePriority, {2})});
  TraitSet a, b;
  rules.fold_event(a, identify(R"({"plan":"pro","signup":"a","ltv":10,"tier":"gold","only_a":1})",
                               "2025-01-02T00:00:00Z", "ma", 1));
  rules.fold_event(b, identify(R"({"plan":"free","signup":"b","ltv":20,"tier":"silver","only_b":2})",
                               "2025-01-01T00:00:00Z", "mb", 2));
  TraitSet ab = a, ba = b;
  EXPECT_TRUE(rules.fold_set(ab, b));
  EXPECT_TRUE(rules.fold_set(ba, a));
  EXPECT_EQ(ab.traits_json(), ba.traits_json());
  EXPECT_EQ(ab.meta_json(), ba.meta_json());
  EXPECT_TRUE(same_json(ab.traits_json(),
                        R"({"plan":"pro","signup":"b","ltv":20,"tier":"silver","only_a":1,"only_b":2})"));
  EXPECT_FALSE(rules.fold_set(ab, b)) << "folding the same set again changes nothing";
}

// What each strategy keeps, written from its definition (docs/traits: the
// winner over all the values at once, ties broken by (timestamp, messageId)),
// not by folding: numbers and strings only here, numbers beating strings for
// max and min. Returns the winning event.
const EventFacts& expected_winner(const std::vector<EventFacts>& events, const std::vector<std::string>& values,
                                  TraitStrategy s, const std::vector<int>& priority) {
  auto newer = [&](size_t a, size_t b) {  // event a newer than event b
    return events[a].timestamp != events[b].timestamp ? events[a].timestamp > events[b].timestamp
                                                      : events[a].message_id > events[b].message_id;
  };
  auto is_number = [&](size_t i) { return values[i][0] != '"'; };
  auto rank = [&](size_t i) {
    auto it = std::find(priority.begin(), priority.end(), events[i].source_id);
    return static_cast<size_t>(it - priority.begin());  // unlisted: after every listed one
  };
  size_t best = 0;
  for (size_t i = 1; i < events.size(); i++) {
    bool better = false;
    switch (s) {
      case TraitStrategy::Last: better = newer(i, best); break;
      case TraitStrategy::First: better = newer(best, i); break;
      case TraitStrategy::Max:
      case TraitStrategy::Min:
        if (is_number(i) != is_number(best)) {
          better = is_number(i);
        } else {
          int c = is_number(i) ? (std::stoi(values[i]) > std::stoi(values[best])) - (std::stoi(values[i]) < std::stoi(values[best]))
                               : values[i].compare(values[best]);
          if (s == TraitStrategy::Min) c = -c;
          better = c > 0 || (c == 0 && newer(i, best));
        }
        break;
      case TraitStrategy::SourcePriority: better = rank(i) != rank(best) ? rank(i) < rank(best) : newer(i, best); break;
    }
    if (better) best = i;
  }
  return events[best];
}

// Random writes in random orders, per strategy, give one result: the one each
// strategy's definition picks.
TEST(TraitsProperty, RandomOrdersGiveOneResult) {
  TraitRules rules({rule("last", TraitStrategy::Last),
                    rule("first", TraitStrategy::First),
                    rule("max", TraitStrategy::Max),
                    rule("min", TraitStrategy::Min),
                    rule("src", TraitStrategy::SourcePriority, {2, 4})});
  std::mt19937_64 rng(7);
  Micros base = at("2025-01-01T00:00:00Z");
  for (int round = 0; round < 20; round++) {
    std::vector<EventFacts> events;
    std::vector<std::string> values;
    for (int i = 0; i < 30; i++) {
      std::string v = rng() % 4 == 0 ? "\"s" + std::to_string(rng() % 10) + "\"" : std::to_string(rng() % 20);
      values.push_back(v);
      EventFacts e;
      e.type = MessageType::Identify;
      e.timestamp = base + static_cast<Micros>(rng() % 5) * 1000000;
      e.message_id = "m" + std::to_string(i);
      e.source_id = static_cast<int>(rng() % 5);
      e.traits = "{\"last\":" + v + ",\"first\":" + v + ",\"max\":" + v + ",\"min\":" + v + ",\"src\":" + v + "}";
      events.push_back(e);
    }
    // The expected traits and provenance, from the definitions.
    const std::pair<const char*, TraitStrategy> fields[] = {{"first", TraitStrategy::First},
                                                            {"last", TraitStrategy::Last},
                                                            {"max", TraitStrategy::Max},
                                                            {"min", TraitStrategy::Min},
                                                            {"src", TraitStrategy::SourcePriority}};
    std::string want = "{";
    std::map<std::string, std::string> want_message_id;
    for (auto& [name, strategy] : fields) {
      const EventFacts& w = expected_winner(events, values, strategy, {2, 4});
      size_t at_value = static_cast<size_t>(&w - events.data());
      want += std::string(want.size() > 1 ? "," : "") + "\"" + name + "\":" + values[at_value];
      want_message_id[name] = w.message_id;
    }
    want += "}";
    std::string expected, expected_meta;
    for (int k = 0; k < 100; k++) {
      std::shuffle(events.begin(), events.end(), rng);
      // Half the time fold into two sets and merge them, as a profile merge does.
      TraitSet set, other;
      size_t split = k % 2 ? rng() % events.size() : events.size();
      for (size_t i = 0; i < events.size(); i++) rules.fold_event(i < split ? set : other, events[i]);
      rules.fold_set(set, other);
      if (k == 0) {
        expected = set.traits_json();
        expected_meta = set.meta_json();
        ASSERT_EQ(expected, want) << "round " << round;
        for (auto& [name, id] : want_message_id)
          ASSERT_EQ(set.fields.at(name).message_id, id) << "round " << round << ": provenance of " << name;
      }
      ASSERT_EQ(set.traits_json(), expected) << "round " << round << " order " << k;
      ASSERT_EQ(set.meta_json(), expected_meta) << "round " << round << " order " << k;
    }
  }
}

}  // namespace
}  // namespace cdp
