// The segment rule language (core/segments.hpp): each operator, dates absolute
// and relative to a settable `now`, event conditions with their windows (up to
// the exact moment a window expires), nested rules, segments of segments and
// their cycles, account conditions, and bad rules refused with the JSON path
// of the bad node.
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/segments.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using segments::EventCondition;
using segments::Rule;
using segments::SegmentGraph;
using test::at;
using test::json;

constexpr Micros kMinute = 60LL * 1000000;
constexpr Micros kHour = 60 * kMinute;
constexpr Micros kDay = 24 * kHour;

// A profile held in memory: what the glue would read from its tables.
class FakeProfile : public segments::ProfileView {
 public:
  struct Event {
    MessageType type;
    std::string name;
    Micros at;
    rapidjson::Document properties;
  };
  struct Account {
    std::string id;
    rapidjson::Document traits;
  };

  rapidjson::Document traits = json("{}");
  rapidjson::Document computed_traits = json("{}");
  std::vector<Event> events;
  std::set<std::string, std::less<>> segments;
  std::vector<Account> accounts;
  mutable int event_count_calls = 0;

  void track(std::string name, Micros when, std::string_view properties = "{}",
             MessageType type = MessageType::Track) {
    events.push_back(Event{type, std::move(name), when, json(properties)});
  }
  void account(std::string id, std::string_view traits_json = "{}") {
    accounts.push_back(Account{std::move(id), json(traits_json)});
  }

  const rapidjson::Value* trait(std::string_view name) const override {
    return segments::find_path(&traits, name);
  }
  const rapidjson::Value* computed(std::string_view name) const override {
    return segments::find_path(&computed_traits, name);
  }
  int64_t event_count(const EventCondition& c, Micros now) const override {
    event_count_calls++;
    int64_t n = 0;
    for (const Event& e : events)
      if (c.matches(e.type, e.name, &e.properties) && c.in_window(e.at, now)) n++;
    return n;
  }
  bool in_segment(std::string_view name) const override { return segments.count(name) > 0; }
  size_t account_count() const override { return accounts.size(); }
  std::string_view account_id(size_t i) const override { return accounts[i].id; }
  const rapidjson::Value* account_trait(size_t i, std::string_view name) const override {
    return segments::find_path(&accounts[i].traits, name);
  }
};

const Micros kNow = at("2025-03-10T12:00:00Z");

FakeProfile with_traits(std::string_view traits) {
  FakeProfile p;
  p.traits = json(traits);
  return p;
}

bool eval(std::string_view rule, const segments::ProfileView& p, Micros now = kNow) {
  return Rule::compile(rule).evaluate(p, now);
}

// A trait condition {"trait": "x", "op": OP, "value": VALUE} against {"x": TRAIT}.
bool trait_test(std::string_view trait_json, std::string_view op, std::string_view value_json,
                Micros now = kNow) {
  FakeProfile p = with_traits(std::string(R"({"x":)") + std::string(trait_json) + "}");
  std::string rule = std::string(R"({"trait":"x","op":")") + std::string(op) + "\"";
  if (!value_json.empty()) rule += std::string(R"(,"value":)") + std::string(value_json);
  rule += "}";
  return eval(rule, p, now);
}

// ---------------------------------------------------------------------------
// Operators
// ---------------------------------------------------------------------------

TEST(SegmentOps, Equal) {
  EXPECT_TRUE(trait_test(R"("pro")", "=", R"("pro")"));
  EXPECT_FALSE(trait_test(R"("pro")", "=", R"("Pro")")) << "case sensitive";
  EXPECT_TRUE(trait_test("42", "=", "42"));
  EXPECT_TRUE(trait_test("42.0", "=", "42")) << "numbers compare as numbers";
  EXPECT_FALSE(trait_test("42.5", "=", "42"));
  EXPECT_TRUE(trait_test("true", "=", "true"));
  EXPECT_FALSE(trait_test("false", "=", "true"));
  EXPECT_TRUE(trait_test("9007199254740993", "=", "9007199254740993")) << "int64 compared exactly";
  EXPECT_FALSE(trait_test("9007199254740992", "=", "9007199254740993")) << "not through a double";
}

TEST(SegmentOps, NotEqual) {
  EXPECT_TRUE(trait_test(R"("free")", "!=", R"("pro")"));
  EXPECT_FALSE(trait_test(R"("pro")", "!=", R"("pro")"));
  EXPECT_TRUE(trait_test("1", "!=", "2"));
  EXPECT_FALSE(trait_test("2", "!=", "2.0"));
  EXPECT_FALSE(trait_test("null", "!=", R"("pro")")) << "null is no value";
  EXPECT_FALSE(trait_test("5", "!=", R"("pro")")) << "another type compares false, even for !=";
  FakeProfile none;
  EXPECT_FALSE(eval(R"({"trait":"plan","op":"!=","value":"pro"})", none)) << "missing compares false";
  EXPECT_TRUE(eval(R"({"not":{"trait":"plan","op":"=","value":"pro"}})", none)) << "the way to include missing";
}

TEST(SegmentOps, Ordering) {
  EXPECT_TRUE(trait_test("29", "<", "30"));
  EXPECT_FALSE(trait_test("30", "<", "30"));
  EXPECT_TRUE(trait_test("30", "<=", "30"));
  EXPECT_FALSE(trait_test("30.01", "<=", "30"));
  EXPECT_TRUE(trait_test("100", ">", "99.5"));
  EXPECT_FALSE(trait_test("99.5", ">", "99.5"));
  EXPECT_TRUE(trait_test("-1", ">=", "-1"));
  EXPECT_FALSE(trait_test("-2", ">=", "-1"));
  EXPECT_TRUE(trait_test("10", ">", "9")) << "numerically, not as text";
  EXPECT_TRUE(trait_test(R"("apple")", "<", R"("banana")")) << "strings lexicographically";
  EXPECT_FALSE(trait_test(R"("banana")", "<", R"("apple")"));
  EXPECT_TRUE(trait_test(R"("10")", "<", R"("9")")) << "strings are not read as numbers";
  EXPECT_TRUE(trait_test(R"("b")", ">=", R"("b")"));
  EXPECT_FALSE(trait_test(R"("10")", ">", "9")) << "a string against a number is false";
  EXPECT_FALSE(trait_test("true", ">", "0"));
  EXPECT_FALSE(trait_test(R"([1,2])", ">", "0"));
}

TEST(SegmentOps, In) {
  EXPECT_TRUE(trait_test(R"("DE")", "in", R"(["FR","DE","IT"])"));
  EXPECT_FALSE(trait_test(R"("ES")", "in", R"(["FR","DE","IT"])"));
  EXPECT_FALSE(trait_test(R"("de")", "in", R"(["FR","DE","IT"])"));
  EXPECT_TRUE(trait_test("3", "in", "[1,2,3]"));
  EXPECT_TRUE(trait_test("3.0", "in", "[1,2,3]"));
  EXPECT_FALSE(trait_test("4", "in", "[1,2,3]"));
  EXPECT_TRUE(trait_test("false", "in", R"(["a",1,false])")) << "mixed lists";
  EXPECT_TRUE(trait_test(R"("a")", "in", R"(["a",1,false])"));
  EXPECT_FALSE(trait_test(R"("1")", "in", R"([1])")) << "\"1\" is not 1";
  EXPECT_TRUE(trait_test(R"("2024-05-01T02:00:00+02:00")", "in", R"(["2024-05-01","2024-06-01"])"))
      << "dates in the list compare as times";
}

TEST(SegmentOps, Contains) {
  EXPECT_TRUE(trait_test(R"("jane@acme.com")", "contains", R"("@acme.")"));
  EXPECT_FALSE(trait_test(R"("jane@globex.com")", "contains", R"("@acme.")"));
  EXPECT_TRUE(trait_test(R"(["golf","tennis"])", "contains", R"("golf")")) << "a list element";
  EXPECT_FALSE(trait_test(R"(["golfing","tennis"])", "contains", R"("golf")")) << "whole elements only";
  EXPECT_TRUE(trait_test(R"([1,2,3])", "contains", "2"));
  EXPECT_FALSE(trait_test(R"([1,2,3])", "contains", "4"));
  EXPECT_TRUE(trait_test(R"([false])", "contains", "false"));
  EXPECT_FALSE(trait_test("12345", "contains", R"("23")")) << "a number is not text";
  EXPECT_FALSE(trait_test(R"("123")", "contains", "2")) << "a number is not found in text";
}

TEST(SegmentOps, StartsWith) {
  EXPECT_TRUE(trait_test(R"("+33612345678")", "starts_with", R"("+33")"));
  EXPECT_FALSE(trait_test(R"("+44612345678")", "starts_with", R"("+33")"));
  EXPECT_FALSE(trait_test(R"("+3")", "starts_with", R"("+33")"));
  EXPECT_FALSE(trait_test("33612", "starts_with", R"("33")"));
}

TEST(SegmentOps, Exists) {
  EXPECT_TRUE(trait_test(R"("a@b.c")", "exists", ""));
  EXPECT_TRUE(trait_test("0", "exists", ""));
  EXPECT_TRUE(trait_test(R"("")", "exists", "")) << "an empty string is a value";
  EXPECT_TRUE(trait_test("false", "exists", ""));
  EXPECT_FALSE(trait_test("null", "exists", ""));
  EXPECT_FALSE(eval(R"({"trait":"email","op":"exists"})", FakeProfile{}));
}

TEST(SegmentOps, Between) {
  EXPECT_TRUE(trait_test("18", "between", "[18,34]")) << "low end included";
  EXPECT_TRUE(trait_test("34", "between", "[18,34]")) << "high end included";
  EXPECT_TRUE(trait_test("25.5", "between", "[18,34]"));
  EXPECT_FALSE(trait_test("17.99", "between", "[18,34]"));
  EXPECT_FALSE(trait_test("35", "between", "[18,34]"));
  EXPECT_TRUE(trait_test(R"("m")", "between", R"(["a","n"])"));
  EXPECT_FALSE(trait_test(R"("z")", "between", R"(["a","n"])"));
  EXPECT_TRUE(trait_test(R"("2024-03-15T10:00:00Z")", "between", R"(["2024-03-01","2024-04-01"])"));
  EXPECT_FALSE(trait_test(R"("2024-04-01T00:00:01Z")", "between", R"(["2024-03-01","2024-04-01"])"));
  EXPECT_FALSE(trait_test(R"("25")", "between", "[18,34]"));
}

TEST(SegmentOps, ComputedTraits) {
  FakeProfile p;
  p.computed_traits = json(R"({"orders_30d":3,"favourite":"shoes"})");
  EXPECT_TRUE(eval(R"({"computed":"orders_30d","op":">=","value":3})", p));
  EXPECT_FALSE(eval(R"({"computed":"orders_30d","op":">","value":3})", p));
  EXPECT_TRUE(eval(R"({"computed":"favourite","op":"in","value":["shoes","hats"]})", p));
  EXPECT_FALSE(eval(R"({"trait":"orders_30d","op":"exists"})", p)) << "traits and computed traits are apart";
}

TEST(SegmentOps, NestedTraitPaths) {
  FakeProfile p = with_traits(R"({"address":{"city":"Lyon"},"a.b":1})");
  EXPECT_TRUE(eval(R"({"trait":"address.city","op":"=","value":"Lyon"})", p));
  EXPECT_TRUE(eval(R"({"trait":"a.b","op":"=","value":1})", p)) << "an exact key first";
  EXPECT_FALSE(eval(R"({"trait":"address.zip","op":"exists"})", p));
  EXPECT_FALSE(eval(R"({"trait":"address.city.x","op":"exists"})", p));
}

// ---------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------

TEST(SegmentDates, AbsoluteDatesCompareAsTimes) {
  EXPECT_TRUE(trait_test(R"("2024-05-01T01:00:00+02:00")", "<", R"("2024-05-01")"))
      << "23:00 UTC the day before, although the text sorts after";
  EXPECT_FALSE(trait_test(R"("2024-05-01T01:00:00+02:00")", "<", R"({"date":"2024-04-30T23:00:00Z"})"));
  EXPECT_TRUE(trait_test(R"("2024-05-01T00:00:00Z")", "=", R"("2024-05-01")"));
  EXPECT_TRUE(trait_test(R"("2024-05-01 12:00:00")", ">=", R"({"date":"2024-05-01T12:00:00Z"})"));
  EXPECT_FALSE(trait_test(R"("not a date")", "<", R"("2024-05-01")")) << "not a date: false";
  EXPECT_FALSE(trait_test("1714521600", "<", R"("2024-05-01")")) << "a number is not a date";
}

TEST(SegmentDates, RelativeDateAtTheExactMoment) {
  // last_seen < 7 days ago: the profile leaves "active" exactly 7 days after.
  const Micros seen = at("2025-03-01T08:30:00Z");
  FakeProfile p = with_traits(R"({"last_seen":"2025-03-01T08:30:00Z"})");
  Rule inactive = Rule::compile(std::string_view(R"({"trait":"last_seen","op":"<","value":{"days_ago":7}})"));
  EXPECT_TRUE(inactive.depends_on_time());
  EXPECT_FALSE(inactive.evaluate(p, seen + 6 * kDay));
  EXPECT_FALSE(inactive.evaluate(p, seen + 7 * kDay)) << "at exactly 7 days it is not yet older";
  EXPECT_TRUE(inactive.evaluate(p, seen + 7 * kDay + 1));
  Rule recent = Rule::compile(std::string_view(R"({"trait":"last_seen","op":">=","value":{"hours_ago":2}})"));
  EXPECT_TRUE(recent.evaluate(p, seen + 2 * kHour));
  EXPECT_FALSE(recent.evaluate(p, seen + 2 * kHour + 1));
  Rule minutes = Rule::compile(std::string_view(R"({"trait":"last_seen","op":">","value":{"minutes_ago":30}})"));
  EXPECT_TRUE(minutes.evaluate(p, seen + 30 * kMinute - 1));
  EXPECT_FALSE(minutes.evaluate(p, seen + 30 * kMinute));
}

TEST(SegmentDates, FutureWindow) {
  FakeProfile p = with_traits(R"({"renews_at":"2025-04-01T00:00:00Z"})");
  Rule soon = Rule::compile(std::string_view(
      R"({"trait":"renews_at","op":"between","value":[{"days_from_now":0},{"days_from_now":30}]})"));
  EXPECT_FALSE(soon.evaluate(p, at("2025-03-01T23:59:59Z")));
  EXPECT_TRUE(soon.evaluate(p, at("2025-03-02T00:00:00Z")));
  EXPECT_TRUE(soon.evaluate(p, at("2025-04-01T00:00:00Z")));
  EXPECT_FALSE(soon.evaluate(p, at("2025-04-01T00:00:00.000001Z")));
  EXPECT_TRUE(eval(R"({"trait":"renews_at","op":">","value":{"hours_from_now":1}})", p, at("2025-03-31T22:59:59Z")));
  EXPECT_FALSE(eval(R"({"trait":"renews_at","op":">","value":{"minutes_from_now":60}})", p, at("2025-03-31T23:00:00Z")));
}

// ---------------------------------------------------------------------------
// Nesting
// ---------------------------------------------------------------------------

TEST(SegmentNesting, AndOrNot) {
  FakeProfile p = with_traits(R"({"plan":"pro","age":30,"country":"FR"})");
  EXPECT_TRUE(eval(R"({"and":[{"trait":"plan","op":"=","value":"pro"},{"trait":"age","op":">","value":18}]})", p));
  EXPECT_FALSE(eval(R"({"and":[{"trait":"plan","op":"=","value":"pro"},{"trait":"age","op":">","value":40}]})", p));
  EXPECT_TRUE(eval(R"({"or":[{"trait":"plan","op":"=","value":"free"},{"trait":"age","op":">","value":18}]})", p));
  EXPECT_FALSE(eval(R"({"or":[{"trait":"plan","op":"=","value":"free"},{"trait":"age","op":">","value":40}]})", p));
  EXPECT_FALSE(eval(R"({"not":{"trait":"plan","op":"=","value":"pro"}})", p));
  EXPECT_TRUE(eval(R"({"not":{"not":{"trait":"plan","op":"=","value":"pro"}}})", p));
  const char* deep = R"({"and":[
      {"or":[{"trait":"country","op":"in","value":["DE","IT"]},
             {"and":[{"trait":"country","op":"=","value":"FR"},{"not":{"trait":"age","op":"<","value":21}}]}]},
      {"not":{"or":[{"trait":"plan","op":"=","value":"free"},{"trait":"banned","op":"exists"}]}}]})";
  EXPECT_TRUE(eval(deep, p));
  p.traits = json(R"({"plan":"pro","age":30,"country":"FR","banned":true})");
  EXPECT_FALSE(eval(deep, p));
  p.traits = json(R"({"plan":"pro","age":20,"country":"FR"})");
  EXPECT_FALSE(eval(deep, p));
  p.traits = json(R"({"plan":"pro","age":20,"country":"IT"})");
  EXPECT_TRUE(eval(deep, p));
}

TEST(SegmentNesting, CheapConditionsAreEvaluatedFirst) {
  FakeProfile p = with_traits(R"({"plan":"free"})");
  p.track("Order Completed", kNow);
  Rule r = Rule::compile(std::string_view(
      R"({"and":[{"event":"Order Completed"},{"trait":"plan","op":"=","value":"pro"}]})"));
  EXPECT_FALSE(r.evaluate(p, kNow));
  EXPECT_EQ(p.event_count_calls, 0) << "the trait decided; no event count was needed";
  p.traits = json(R"({"plan":"pro"})");
  EXPECT_TRUE(r.evaluate(p, kNow));
  EXPECT_EQ(p.event_count_calls, 1);
}

TEST(SegmentNesting, TheIssueExample) {
  const char* rule = R"({"and": [{"trait": "plan", "op": "=", "value": "pro"},
      {"event": "Order Completed", "count": {"op": ">=", "value": 2}, "within": {"days": 30},
       "where": [{"property": "revenue", "op": ">", "value": 50}]},
      {"not": {"event": "Trial Started", "within": {"days": 7}}}]})";
  FakeProfile p = with_traits(R"({"plan":"pro"})");
  p.track("Order Completed", kNow - 3 * kDay, R"({"revenue":80})");
  EXPECT_FALSE(eval(rule, p)) << "one order";
  p.track("Order Completed", kNow - 2 * kDay, R"({"revenue":20})");
  EXPECT_FALSE(eval(rule, p)) << "the second is too small";
  p.track("Order Completed", kNow - kDay, R"({"revenue":50.01})");
  EXPECT_TRUE(eval(rule, p));
  p.track("Trial Started", kNow - 6 * kDay);
  EXPECT_FALSE(eval(rule, p)) << "a trial 6 days ago";
  EXPECT_TRUE(eval(rule, p, kNow + kDay)) << "a day later that trial is 7 days old";
  EXPECT_FALSE(eval(rule, p, kNow + 27 * kDay + 1)) << "and the first order is more than 30 days old";
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

TEST(SegmentEvents, DidAtLeastOnceByDefault) {
  FakeProfile p;
  Rule r = Rule::compile(std::string_view(R"({"event":"Signed Up"})"));
  EXPECT_FALSE(r.depends_on_time()) << "all time";
  EXPECT_FALSE(r.evaluate(p, kNow));
  p.track("Signed Up", at("2001-01-01"));
  EXPECT_TRUE(r.evaluate(p, kNow)) << "without a window, events never expire";
  p.track("Signed Up", kNow, "{}", MessageType::Page);
  EXPECT_EQ(p.event_count(r.event_conditions()[0], kNow), 1) << "a page of the same name is another thing";
}

TEST(SegmentEvents, AtLeastNTimesInTheLastNDaysWhere) {
  Rule r = Rule::compile(std::string_view(R"({"event":"Order Completed","count":{"op":">=","value":2},
      "within":{"days":30},"where":[{"property":"revenue","op":">","value":50}]})"));
  ASSERT_EQ(r.event_conditions().size(), 1u);
  const EventCondition& c = r.event_conditions()[0];
  EXPECT_EQ(c.window, 30 * kDay);
  EXPECT_EQ(c.event, "Order Completed");
  EXPECT_EQ(c.type, MessageType::Track);
  const Micros t1 = at("2025-02-01T10:00:00Z"), t2 = at("2025-02-05T10:00:00Z");
  FakeProfile p;
  p.track("Order Completed", t1, R"({"revenue":60})");
  p.track("Order Completed", t1 + kHour, R"({"revenue":50})");   // not > 50
  p.track("Order Completed", t1 + 2 * kHour, R"({"total":99})");  // no revenue
  p.track("Order Completed", t1 + 3 * kHour, R"({"revenue":"99"})");  // a string
  p.track("Order Shipped", t1 + 4 * kHour, R"({"revenue":99})");
  EXPECT_FALSE(r.evaluate(p, t2)) << "one qualifying order only";
  p.track("Order Completed", t2, R"({"revenue":51})");
  EXPECT_TRUE(r.evaluate(p, t2));
  EXPECT_TRUE(r.evaluate(p, t1 + 30 * kDay - 1)) << "the first order still counts";
  EXPECT_FALSE(r.evaluate(p, t1 + 30 * kDay)) << "at exactly 30 days it has expired";
  EXPECT_EQ(c.expires_at(t1), t1 + 30 * kDay);
}

TEST(SegmentEvents, DidNotDoInTheLastNDays) {
  const Micros t = at("2025-03-01T00:00:00Z");
  FakeProfile p;
  Rule r = Rule::compile(std::string_view(R"({"not":{"event":"Trial Started","within":{"days":7}}})"));
  EXPECT_TRUE(r.evaluate(p, t)) << "never did it";
  p.track("Trial Started", t);
  EXPECT_FALSE(r.evaluate(p, t));
  EXPECT_FALSE(r.evaluate(p, t + 7 * kDay - 1));
  EXPECT_TRUE(r.evaluate(p, t + 7 * kDay)) << "the window expires at exactly 7 days";
  Rule zero = Rule::compile(std::string_view(
      R"({"event":"Trial Started","within":{"days":7},"count":{"op":"=","value":0}})"));
  EXPECT_FALSE(zero.evaluate(p, t + 7 * kDay - 1));
  EXPECT_TRUE(zero.evaluate(p, t + 7 * kDay));
}

TEST(SegmentEvents, CountOperators) {
  FakeProfile p;
  for (int i = 0; i < 3; i++) p.track("Viewed", kNow - i * kMinute);
  auto count_is = [&](const char* op, int n) {
    return eval(std::string(R"({"event":"Viewed","count":{"op":")") + op + R"(","value":)" +
                    std::to_string(n) + "}}",
                p);
  };
  EXPECT_TRUE(count_is("=", 3));
  EXPECT_FALSE(count_is("=", 2));
  EXPECT_TRUE(count_is("!=", 2));
  EXPECT_FALSE(count_is("!=", 3));
  EXPECT_TRUE(count_is("<", 4));
  EXPECT_FALSE(count_is("<", 3));
  EXPECT_TRUE(count_is("<=", 3));
  EXPECT_FALSE(count_is("<=", 2));
  EXPECT_TRUE(count_is(">", 2));
  EXPECT_FALSE(count_is(">", 3));
  EXPECT_TRUE(count_is(">=", 3));
  EXPECT_FALSE(count_is(">=", 4));
}

TEST(SegmentEvents, PagesInTheLastHoursAndMinutes) {
  // "viewed pricing 3+ times in the last 12 hours"
  Rule r = Rule::compile(std::string_view(
      R"({"event":"Pricing","type":"page","count":{"op":">=","value":3},"within":{"hours":12}})"));
  EXPECT_EQ(r.event_conditions()[0].type, MessageType::Page);
  const Micros t = at("2025-03-10T00:00:00Z");
  FakeProfile p;
  p.track("Pricing", t, "{}", MessageType::Page);
  p.track("Pricing", t + kHour, "{}", MessageType::Page);
  p.track("Pricing", t + 2 * kHour, "{}", MessageType::Track);  // a track of that name: not a page
  EXPECT_FALSE(r.evaluate(p, t + 2 * kHour));
  p.track("Pricing", t + 3 * kHour, "{}", MessageType::Page);
  EXPECT_TRUE(r.evaluate(p, t + 3 * kHour));
  EXPECT_TRUE(r.evaluate(p, t + 12 * kHour - 1));
  EXPECT_FALSE(r.evaluate(p, t + 12 * kHour));
  Rule m = Rule::compile(std::string_view(R"({"event":"Home","type":"screen","within":{"minutes":15}})"));
  p.track("Home", t, "{}", MessageType::Screen);
  EXPECT_TRUE(m.evaluate(p, t + 15 * kMinute - 1));
  EXPECT_FALSE(m.evaluate(p, t + 15 * kMinute));
}

TEST(SegmentEvents, WhereFiltersUseEveryOperatorAndNestedProperties) {
  Rule r = Rule::compile(std::string_view(R"({"event":"Order Completed","where":[
      {"property":"product.category","op":"in","value":["shoes","hats"]},
      {"property":"coupon","op":"exists"},
      {"property":"placed_at","op":">=","value":"2025-01-01"},
      {"property":"currency","op":"starts_with","value":"EU"}]})"));
  const EventCondition& c = r.event_conditions()[0];
  auto props = json(R"({"product":{"category":"hats"},"coupon":"X","placed_at":"2025-02-01T00:00:00Z","currency":"EUR"})");
  EXPECT_TRUE(c.matches(MessageType::Track, "Order Completed", &props));
  EXPECT_FALSE(c.matches(MessageType::Track, "Order Completed ", &props));
  EXPECT_FALSE(c.matches(MessageType::Page, "Order Completed", &props));
  auto no_coupon = json(R"({"product":{"category":"hats"},"placed_at":"2025-02-01","currency":"EUR"})");
  EXPECT_FALSE(c.matches(MessageType::Track, "Order Completed", &no_coupon));
  auto old = json(R"({"product":{"category":"hats"},"coupon":"X","placed_at":"2024-12-31","currency":"EUR"})");
  EXPECT_FALSE(c.matches(MessageType::Track, "Order Completed", &old));
  EXPECT_FALSE(c.matches(MessageType::Track, "Order Completed", nullptr)) << "no properties";
}

TEST(SegmentEvents, DistinctConditionsAreSharedWithStableKeys) {
  Rule r = Rule::compile(std::string_view(R"({"or":[
      {"event":"Order Completed","within":{"days":30},"count":{"op":">=","value":5},
       "where":[{"property":"revenue","op":">","value":50},{"property":"currency","op":"=","value":"EUR"}]},
      {"and":[{"event":"Order Completed","within":{"days":30},
               "where":[{"property":"currency","op":"=","value":"EUR"},{"property":"revenue","op":">","value":50}]},
              {"event":"Order Completed","within":{"hours":720}}]},
      {"not":{"event":"Order Completed","within":{"days":30}}},
      {"event":"Order Completed","type":"page","within":{"days":30}}]})"));
  const auto& conds = r.event_conditions();
  ASSERT_EQ(conds.size(), 3u) << "the same count, whatever the count op or the order of where";
  for (size_t i = 0; i < conds.size(); i++) EXPECT_EQ(conds[i].index, i);
  EXPECT_EQ(conds[0].key,
            R"({"type":"track","event":"Order Completed","window_us":2592000000000,"where":[)"
            R"({"property":"currency","op":"=","value":"EUR"},{"property":"revenue","op":">","value":50}]})");
  EXPECT_EQ(conds[1].key, R"({"type":"track","event":"Order Completed","window_us":2592000000000,"where":[]})")
      << "720 hours is 30 days";
  EXPECT_EQ(conds[2].type, MessageType::Page);
  Rule other = Rule::compile(std::string_view(R"({"event":"Order Completed","within":{"days":30}})"));
  EXPECT_EQ(other.event_conditions()[0].key, conds[1].key) << "keys name counters across rules";
}

TEST(SegmentEvents, ConditionPointersOutliveCopiesOfTheRule) {
  Rule* r = new Rule(Rule::compile(std::string_view(R"({"event":"A","within":{"days":1}})")));
  const EventCondition* c = &r->event_conditions()[0];
  Rule copy = *r;
  delete r;
  EXPECT_EQ(&copy.event_conditions()[0], c);
  EXPECT_EQ(c->event, "A");
}

// ---------------------------------------------------------------------------
// Segments of segments
// ---------------------------------------------------------------------------

TEST(SegmentOfSegment, Membership) {
  Rule r = Rule::compile(std::string_view(
      R"({"and":[{"segment":"vip"},{"not":{"segment":"churned"}},{"or":[{"segment":"vip"},{"segment":"beta"}]}]})"));
  EXPECT_EQ(r.segments_referenced(), (std::vector<std::string>{"beta", "churned", "vip"}));
  FakeProfile p;
  EXPECT_FALSE(r.evaluate(p, kNow));
  p.segments = {"vip"};
  EXPECT_TRUE(r.evaluate(p, kNow));
  p.segments = {"vip", "churned"};
  EXPECT_FALSE(r.evaluate(p, kNow));
}

TEST(SegmentOfSegment, CyclesAreFoundWithTheirPath) {
  SegmentGraph ok{{"a", {"b", "c"}}, {"b", {"c", "unknown"}}, {"c", {}}};
  EXPECT_EQ(segments::find_segment_cycle(ok), std::nullopt);
  EXPECT_NO_THROW(segments::check_segment_cycles(ok));
  EXPECT_EQ(segments::segment_order(ok), (std::vector<std::string>{"c", "b", "a"}))
      << "each segment after those it refers to";

  SegmentGraph self{{"vip", {"vip"}}};
  EXPECT_EQ(segments::find_segment_cycle(self), (std::vector<std::string>{"vip", "vip"}));

  SegmentGraph three{{"a", {"x"}}, {"x", {"b"}}, {"b", {"c"}}, {"c", {"x"}}};
  EXPECT_EQ(segments::find_segment_cycle(three), (std::vector<std::string>{"x", "b", "c", "x"}));
  try {
    segments::check_segment_cycles(three);
    FAIL() << "a cycle was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
    EXPECT_EQ(e.field(), "segment");
    EXPECT_STREQ(e.what(), "segment: must not refer to itself through other segments: x -> b -> c -> x");
  }
  EXPECT_THROW(segments::segment_order(three), Error);
}

TEST(SegmentOfSegment, CycleFromCompiledRules) {
  // What create_segment would do: the new rule's references plus the stored ones.
  SegmentGraph graph;
  graph["engaged"] = Rule::compile(std::string_view(R"({"event":"Login","within":{"days":7}})")).segments_referenced();
  graph["vip"] = Rule::compile(std::string_view(
      R"({"and":[{"segment":"engaged"},{"segment":"big_spender"}]})")).segments_referenced();
  graph["big_spender"] = Rule::compile(std::string_view(R"({"trait":"ltv","op":">","value":1000})")).segments_referenced();
  EXPECT_NO_THROW(segments::check_segment_cycles(graph));
  graph["big_spender"] = Rule::compile(std::string_view(
      R"({"or":[{"trait":"ltv","op":">","value":1000},{"segment":"vip"}]})")).segments_referenced();
  EXPECT_EQ(segments::find_segment_cycle(graph), (std::vector<std::string>{"big_spender", "vip", "big_spender"}));
}

TEST(SegmentOfSegment, LongChainsDoNotOverflowTheStack) {
  SegmentGraph g;
  const int n = 100000;
  for (int i = 0; i < n; i++) g["s" + std::to_string(i)] = {"s" + std::to_string(i + 1)};
  EXPECT_EQ(segments::find_segment_cycle(g), std::nullopt);
  g["s" + std::to_string(n)] = {"s0"};
  auto cycle = segments::find_segment_cycle(g);
  ASSERT_TRUE(cycle.has_value());
  EXPECT_EQ(cycle->size(), static_cast<size_t>(n + 2));
  EXPECT_EQ(cycle->front(), cycle->back());
}

// ---------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------

TEST(SegmentAccounts, TraitsAndIds) {
  Rule enterprise = Rule::compile(std::string_view(R"({"account":{"trait":"plan","op":"=","value":"enterprise"}})"));
  EXPECT_TRUE(enterprise.uses_accounts());
  EXPECT_EQ(enterprise.account_traits_referenced(), (std::vector<std::string>{"plan"}));
  EXPECT_TRUE(enterprise.traits_referenced().empty());
  FakeProfile p = with_traits(R"({"plan":"enterprise"})");
  EXPECT_FALSE(enterprise.evaluate(p, kNow)) << "the profile's own plan is not the account's";
  p.account("acme", R"({"plan":"startup","seats":5})");
  EXPECT_FALSE(enterprise.evaluate(p, kNow));
  p.account("globex", R"({"plan":"enterprise","seats":500})");
  EXPECT_TRUE(enterprise.evaluate(p, kNow)) << "any of the profile's accounts";

  EXPECT_TRUE(eval(R"({"account":{"id":"acme"}})", p));
  EXPECT_FALSE(eval(R"({"account":{"id":"initech"}})", p));
  EXPECT_TRUE(eval(R"({"account":{"id":["initech","globex"]}})", p));
  EXPECT_FALSE(eval(R"({"account":{"id":["initech","hooli"]}})", p));
  // Both conditions on one account, not spread over two.
  EXPECT_FALSE(eval(R"({"account":{"and":[{"id":"acme"},{"trait":"seats","op":">","value":100}]}})", p));
  EXPECT_TRUE(eval(R"({"account":{"and":[{"id":"globex"},{"trait":"seats","op":">","value":100}]}})", p));
  EXPECT_TRUE(eval(R"({"account":{"not":{"id":"acme"}}})", p)) << "globex is not acme";
  EXPECT_FALSE(eval(R"({"not":{"account":{"id":"acme"}}})", p));
  EXPECT_TRUE(eval(R"({"account":{"or":[{"id":"x"},{"trait":"plan","op":"starts_with","value":"start"}]}})", p));

  FakeProfile alone;
  EXPECT_FALSE(eval(R"({"account":{"not":{"id":"acme"}}})", alone)) << "no account matches nothing";
  EXPECT_TRUE(eval(R"({"not":{"account":{"id":"acme"}}})", alone));
}

// ---------------------------------------------------------------------------
// What a rule needs
// ---------------------------------------------------------------------------

TEST(SegmentRule, ReferencedNamesAndTime) {
  Rule r = Rule::compile(std::string_view(R"({"and":[{"trait":"plan","op":"=","value":"pro"},
      {"trait":"age","op":">","value":1},{"trait":"plan","op":"exists"},
      {"computed":"orders","op":">","value":1},{"segment":"vip"}]})"));
  EXPECT_EQ(r.traits_referenced(), (std::vector<std::string>{"age", "plan"}));
  EXPECT_EQ(r.computed_referenced(), (std::vector<std::string>{"orders"}));
  EXPECT_EQ(r.segments_referenced(), (std::vector<std::string>{"vip"}));
  EXPECT_TRUE(r.event_conditions().empty());
  EXPECT_FALSE(r.uses_accounts());
  EXPECT_FALSE(r.depends_on_time());
  EXPECT_TRUE(Rule::compile(std::string_view(R"({"event":"A","within":{"days":1}})")).depends_on_time());
}

TEST(SegmentRule, CompilesFromAParsedDocument) {
  rapidjson::Document doc = json(R"({"trait":"plan","op":"=","value":"pro"})");
  Rule r = Rule::compile(doc);
  doc.SetNull();  // the rule keeps no reference to the document
  EXPECT_TRUE(r.evaluate(with_traits(R"({"plan":"pro"})"), kNow));
}

// ---------------------------------------------------------------------------
// Bad rules
// ---------------------------------------------------------------------------

struct BadRule {
  const char* rule;
  const char* field;
  const char* message;  // e.what(), or "" to check the field only
};

class SegmentBadRules : public ::testing::TestWithParam<BadRule> {};

TEST_P(SegmentBadRules, AreRefusedWithTheJsonPath) {
  const BadRule& b = GetParam();
  try {
    Rule::compile(std::string_view(b.rule));
    FAIL() << "accepted: " << b.rule;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput) << b.rule;
    EXPECT_EQ(e.field(), b.field) << b.rule << "\n" << e.what();
    if (*b.message) {
      EXPECT_STREQ(e.what(), b.message) << b.rule;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Paths, SegmentBadRules,
    ::testing::Values(
        BadRule{R"({"and":[{"trait":"a","op":"exists"},{"segment":"b"},
                   {"event":"Order Completed","count":{"op":"~","value":2}}]})",
                "and[2].count.op", "and[2].count.op: must be one of =, !=, <, <=, >, >="},
        BadRule{R"([{"trait":"plan"}])", "",
                "must be an object with one of the keys and, or, not, trait, computed, event, segment, account"},
        BadRule{R"({"plan":"pro"})", "",
                "must have one of the keys and, or, not, trait, computed, event, segment, account"},
        BadRule{R"({"trait":"plan","op":"equals","value":"pro"})", "op",
                "op: must be one of =, !=, <, <=, >, >=, in, contains, starts_with, exists, between"},
        BadRule{R"({"trait":"plan","value":"pro"})", "op", ""},
        BadRule{R"({"trait":"plan","op":"=","vlaue":"pro"})", "vlaue",
                "vlaue: unknown key: a trait condition has trait, op and value"},
        BadRule{R"({"trait":"plan","op":"="})", "value",
                "value: missing: must be a string, a number, a boolean or a date"},
        BadRule{R"({"trait":"","op":"exists"})", "trait", "trait: must be a non-empty string (the trait's name)"},
        BadRule{R"({"computed":7,"op":"exists"})", "computed", ""},
        BadRule{R"({"trait":"a","op":"=","value":null})", "value", ""},
        BadRule{R"({"trait":"a","op":"=","value":[1]})", "value", ""},
        BadRule{R"({"and":[]})", "and", "and: must be a non-empty array of rules"},
        BadRule{R"({"or":{"trait":"a","op":"exists"}})", "or", ""},
        BadRule{R"({"or":[{"trait":"a","op":"exists"},{"trait":"b","op":"exists","value":true}]})",
                "or[1].value", "or[1].value: exists takes no value"},
        BadRule{R"({"trait":"age","op":"between","value":[34,18]})", "value",
                "value: must be [low, high] with low <= high"},
        BadRule{R"({"trait":"age","op":"between","value":[18,"34"]})", "value",
                "value: must be two numbers, two strings or two dates"},
        BadRule{R"({"trait":"age","op":"between","value":[18]})", "value", ""},
        BadRule{R"({"trait":"d","op":"between","value":[{"days_ago":1},{"days_ago":7}]})", "value",
                "value: must be [low, high] with low <= high"},
        BadRule{R"({"trait":"x","op":"in","value":[]})", "value", ""},
        BadRule{R"({"trait":"x","op":"in","value":["a",null]})", "value[1]", ""},
        BadRule{R"({"trait":"x","op":"<","value":true})", "value",
                "value: must be a number, a string, a date or a relative date such as {\"days_ago\": 7}"},
        BadRule{R"({"trait":"x","op":"starts_with","value":""})", "value", ""},
        BadRule{R"({"trait":"x","op":"contains","value":{"a":1}})", "value", ""},
        BadRule{R"({"trait":"x","op":"=","value":{"days_ago":7}})", "value",
                "value: a relative date compares with <, <=, >, >= or between, not with ="},
        BadRule{R"({"trait":"x","op":"<","value":{"days_ago":-1}})", "value.days_ago",
                "value.days_ago: must be a whole number from 0 to 36500"},
        BadRule{R"({"trait":"x","op":"<","value":{"days_ago":1.5}})", "value.days_ago", ""},
        BadRule{R"({"trait":"x","op":"<","value":{"weeks_ago":1}})", "value.weeks_ago",
                "value.weeks_ago: unknown key: a date is {\"date\": \"2024-05-01\"} or relative: days_ago, "
                "hours_ago, minutes_ago, days_from_now, hours_from_now or minutes_from_now"},
        BadRule{R"({"trait":"x","op":"<","value":{"days_ago":1,"hours_ago":2}})", "value", ""},
        BadRule{R"({"trait":"x","op":">","value":{"date":"2023-02-29"}})", "value.date",
                "value.date: must be an ISO-8601 date such as 2024-05-01 or 2024-05-01T12:00:00Z"},
        BadRule{R"({"event":""})", "event", ""},
        BadRule{R"({"event":"X","type":"identify"})", "type", "type: must be one of track, page, screen"},
        BadRule{R"({"event":"X","count":2})", "count", ""},
        BadRule{R"({"event":"X","count":{"op":"in","value":2}})", "count.op", ""},
        BadRule{R"({"event":"X","count":{"op":">="}})", "count.value", ""},
        BadRule{R"({"event":"X","count":{"op":">=","value":-1}})", "count.value",
                "count.value: must be a whole number from 0 to 1000000000"},
        BadRule{R"({"event":"X","count":{"op":">=","value":2,"unit":"times"}})", "count.unit", ""},
        BadRule{R"({"event":"X","within":{"weeks":2}})", "within.weeks",
                "within.weeks: unknown key: a window is one of days, hours, minutes"},
        BadRule{R"({"event":"X","within":{"days":0}})", "within.days",
                "within.days: must be a whole number from 1 to 36500"},
        BadRule{R"({"event":"X","within":{"days":1,"hours":2}})", "within", ""},
        BadRule{R"({"event":"X","where":{"property":"a","op":"exists"}})", "where", ""},
        BadRule{R"({"event":"X","where":[{"property":"a","op":"exists"},{"prop":"revenue","op":">","value":1}]})",
                "where[1].prop", ""},
        BadRule{R"({"event":"X","where":[{"op":"exists"}]})", "where[0].property", ""},
        BadRule{R"({"event":"X","where":[{"property":"at","op":">","value":{"days_ago":1}}]})", "where[0].value",
                "where[0].value: relative dates are not allowed in where (an event is counted once, when it "
                "arrives): use a date such as \"2024-05-01\""},
        BadRule{R"({"event":"X","within":{"days":7},"trait":"a"})", "trait",
                "trait: cannot be combined with \"event\" in one rule: put each in its own rule inside \"and\" or \"or\""},
        BadRule{R"({"not":{"segment":7}})", "not.segment", ""},
        BadRule{R"({"not":{"segment":"a","op":"="}})", "not.op", ""},
        BadRule{R"({"not":[{"segment":"a"}]})", "not", ""},
        BadRule{R"({"and":[{"segment":"a"}],"and":[{"segment":"b"}]})", "and", "and: duplicate key"},
        BadRule{R"({"trait":"a","op":"exists","op":"exists"})", "op", "op: duplicate key"},
        BadRule{R"({"account":"acme"})", "account", ""},
        BadRule{R"({"account":{"event":"X"}})", "account.event",
                "account.event: not allowed inside account: an account rule uses and, or, not, trait, id"},
        BadRule{R"({"account":{"and":[{"id":"a"},{"account":{"id":"b"}}]}})", "account.and[1].account", ""},
        BadRule{R"({"account":{"id":[]}})", "account.id", ""},
        BadRule{R"({"account":{"id":["a",""]}})", "account.id[1]", ""},
        BadRule{R"({"account":{"computed":"x","op":"exists"}})", "account.computed", ""}));

TEST(SegmentBadRule, NotJson) {
  try {
    Rule::compile(std::string_view(R"({"trait":"plan",)"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::MalformedJson);
  }
}

TEST(SegmentBadRule, TooDeep) {
  std::string rule = R"({"trait":"a","op":"exists"})";
  for (int i = 1; i < segments::kMaxRuleDepth; i++) rule = R"({"not":)" + rule + "}";
  EXPECT_NO_THROW(Rule::compile(std::string_view(rule)));
  std::string deeper = R"({"not":)" + rule + "}";
  try {
    Rule::compile(std::string_view(deeper));
    FAIL();
  } catch (const Error& e) {
    std::string path = "not";
    for (int i = 1; i < segments::kMaxRuleDepth; i++) path += ".not";
    EXPECT_EQ(e.field(), path);
    EXPECT_STREQ(e.what(), (path + ": rules nest at most 32 levels deep").c_str());
  }
}

TEST(SegmentBadRule, TooManyConditions) {
  std::string rule = R"({"or":[)";
  for (size_t i = 0; i < segments::kMaxRuleNodes; i++) rule += std::string(i ? "," : "") + R"({"segment":"s"})";
  rule += "]}";
  try {
    Rule::compile(std::string_view(rule));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), "or[999]");
    EXPECT_STREQ(e.what(), "or[999]: a rule holds at most 1000 conditions");
  }
}

}  // namespace
}  // namespace cdp
