// Audience segments: the JSON rule language, compiled once into an immutable
// tree and evaluated per profile without parsing, allocating or touching
// Postgres. The glue stores rules (cdp.segments), implements ProfileView over
// what it has of a profile, keeps the event counts the rules ask for
// (Rule::event_conditions) and decides what to do with the answer.
//
// ---------------------------------------------------------------------------
// The rule language
// ---------------------------------------------------------------------------
// A rule is a JSON object with exactly one of these keys:
//
//   {"and": [rule, ...]}            all hold (a non-empty array)
//   {"or":  [rule, ...]}            at least one holds (a non-empty array)
//   {"not": rule}                   the rule does not hold
//   {"trait": NAME, "op": OP, "value": V}      a profile trait
//   {"computed": NAME, "op": OP, "value": V}   a computed trait
//   {"event": NAME, "type": T, "count": {"op": CMP, "value": N},
//    "within": WINDOW, "where": [filter, ...]} the profile did an event
//   {"segment": NAME}               the profile is a member of that segment
//   {"account": account-rule}       some account (group) of the profile matches
//
// NAME is a non-empty string. A trait name is looked up as a whole first and,
// if missing, as a dotted path ("address.city"); see find_path. Unknown keys
// are refused (a typo such as "vlaue" is an error, not an ignored key).
//
// Operators, one example each (the rule's "value" decides how to compare):
//   =            {"trait": "plan", "op": "=", "value": "pro"}
//   !=           {"trait": "plan", "op": "!=", "value": "free"}
//   <            {"trait": "age", "op": "<", "value": 30}
//   <=           {"computed": "orders_30d", "op": "<=", "value": 2}
//   >            {"trait": "ltv", "op": ">", "value": 99.5}
//   >=           {"trait": "signup_at", "op": ">=", "value": "2024-01-01"}
//   in           {"trait": "country", "op": "in", "value": ["FR", "DE", "IT"]}
//   contains     {"trait": "email", "op": "contains", "value": "@acme."}      (text)
//                {"trait": "interests", "op": "contains", "value": "golf"}  (list element)
//   starts_with  {"trait": "phone", "op": "starts_with", "value": "+33"}
//   exists       {"trait": "email", "op": "exists"}                (takes no value)
//   between      {"trait": "age", "op": "between", "value": [18, 34]}       (both ends included)
//   relative     {"trait": "last_seen", "op": "<", "value": {"days_ago": 7}}
//                {"trait": "renews_at", "op": "between",
//                 "value": [{"days_from_now": 0}, {"days_from_now": 30}]}
//
// Values: strings, numbers and booleans; a date is a string that reads as
// ISO-8601 ("2024-05-01", "2024-05-01T12:00:00Z") or {"date": "2024-05-01"};
// a relative date is {"days_ago"|"hours_ago"|"minutes_ago"|"days_from_now"|
// "hours_from_now"|"minutes_from_now": N} (N a whole number, at most 100
// years), resolved against the `now` given to evaluate. `=`, `!=`, `in` take
// no relative dates; `<` `<=` `>` `>=` `between` take no booleans.
//
// Comparison: numbers numerically, strings by bytes (lexicographically, case
// sensitive), booleans by equality, and when the rule's value is a date, the
// trait's string read as ISO-8601 and compared as a time. A trait that is
// missing, null or of another type (a number against a string, a string that
// is not a date against a date) makes every operator false, `!=` included:
// {"trait": "plan", "op": "!=", "value": "pro"} needs a plan; write
// {"not": {"trait": "plan", "op": "=", "value": "pro"}} to include profiles
// without one. `exists` is true when the trait is present and not null.
//
// Events:
//   did `Order Completed` at least 2 times in the last 30 days where revenue > 50:
//     {"event": "Order Completed", "count": {"op": ">=", "value": 2},
//      "within": {"days": 30}, "where": [{"property": "revenue", "op": ">", "value": 50}]}
//   did not do `Trial Started` in the last 7 days:
//     {"not": {"event": "Trial Started", "within": {"days": 7}}}
//     (the same as "count": {"op": "=", "value": 0})
//   viewed the pricing page 3+ times in the last 12 hours:
//     {"event": "Pricing", "type": "page", "count": {"op": ">=", "value": 3}, "within": {"hours": 12}}
// "type" is track (the default), page or screen (the event's name for page
// and screen calls). "count" defaults to {"op": ">=", "value": 1}; its op is one
// of = != < <= > >=. "within" is {"days"|"hours"|"minutes": N} (N >= 1, at most
// 100 years); without it, all time. An event at time t counts while
// now < t + window (EventCondition::in_window): at exactly t + window it no
// longer does. (The database keeps counts in the time buckets of
// core/computed.hpp, where an event leaves up to 1% of the window early.)
// "where" filters are {"property": NAME, "op": OP, "value": V}
// on the event's properties (dotted paths allowed), all of which must hold;
// they take any operator but no relative dates.
//
// Segments: {"segment": "vip"}: true while the profile is a member of "vip".
// A segment may not refer to itself through others (find_segment_cycle).
//
// Accounts: {"account": account-rule} is true when at least one account the
// profile belongs to matches. An account-rule is and / or / not of
//   {"trait": NAME, "op": OP, "value": V}   a trait of the account
//   {"id": "acme"}  or  {"id": ["acme", "globex"]}   the account's groupId
// e.g. {"account": {"trait": "plan", "op": "=", "value": "enterprise"}}.
//
// A worked example ("pro users who ordered twice in 30 days, and no trial in 7"):
//   {"and": [{"trait": "plan", "op": "=", "value": "pro"},
//            {"event": "Order Completed", "count": {"op": ">=", "value": 2},
//             "within": {"days": 30}, "where": [{"property": "revenue", "op": ">", "value": 50}]},
//            {"not": {"event": "Trial Started", "within": {"days": 7}}}]}
//
// Limits: rules nest at most kMaxRuleDepth deep and hold at most
// kMaxRuleNodes conditions; an `in` list holds at most kMaxInValues values.
//
// Errors: compile throws cdp::Error(InvalidInput) with field = the JSON path of
// the bad node ("and[2].count.op", "" for the rule itself) and rule = what was
// expected ("must be one of =, !=, <, <=, >, >="). compile(text) throws
// MalformedJson when the text is not JSON.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "core/message.hpp"
#include "core/timestamp.hpp"

namespace cdp::segments {

constexpr int kMaxRuleDepth = 32;
constexpr size_t kMaxRuleNodes = 1000;
constexpr size_t kMaxInValues = 10000;

enum class Op : uint8_t { Eq, Ne, Lt, Le, Gt, Ge, In, Contains, StartsWith, Exists, Between };
const char* op_name(Op op);  // "=", "!=", ..., "between"

// A value from a rule, converted once.
struct Operand {
  enum class Kind : uint8_t { Bool, Number, String, Time, RelativeTime };
  Kind kind = Kind::String;
  bool boolean = false;
  bool integral = false;  // the number is an int64 (compared exactly against int64 traits)
  int64_t integer = 0;
  double number = 0;
  std::string string;
  Micros time = 0;  // Time: the instant; RelativeTime: the offset from now (negative = ago)
};

// An operator and its value(s): the test of one trait, computed trait or event property.
struct Comparison {
  Op op = Op::Exists;
  // One value for most operators; none for exists; [low, high] for between;
  // for in, the values not in `in_strings`.
  std::vector<Operand> values;
  std::vector<std::string> in_strings;  // in: the plain (non-date) strings, sorted
  std::string json;                     // the rule's value as written (compact JSON), "" for exists

  // Whether `v` (nullptr when missing) passes. Allocation-free.
  bool test(const rapidjson::Value* v, Micros now) const noexcept;
};

struct PropertyFilter {
  std::string property;  // a dotted path into the event's properties
  Comparison cmp;
};

// What the glue counts per profile: events of one type and name, within a
// sliding window, passing every filter. Two rules (or two places in one rule)
// that count the same thing share one EventCondition, with the same key.
struct EventCondition {
  MessageType type = MessageType::Track;
  std::string event;
  Micros window = 0;  // 0 = all time
  std::vector<PropertyFilter> where;  // sorted by their JSON, duplicates removed
  // Canonical JSON of all of the above, e.g.
  // {"type":"track","event":"Order Completed","window_us":2592000000000,"where":[{"property":"revenue","op":">","value":50}]}
  // Equal keys mean equal conditions, across rules: a name for stored counters.
  std::string key;
  size_t index = 0;  // position in Rule::event_conditions()

  // Whether an event counts towards this condition (the window aside).
  bool matches(MessageType t, std::string_view name, const rapidjson::Value* properties) const noexcept;
  // Whether an event at `event_time` is inside the window at `now`: now < event_time + window.
  bool in_window(Micros event_time, Micros now) const noexcept {
    return window == 0 || now - event_time < window;
  }
  // The first moment an event at `event_time` no longer counts (a sweep can
  // schedule re-evaluation then); nullopt for all-time conditions.
  std::optional<Micros> expires_at(Micros event_time) const noexcept {
    if (window == 0) return std::nullopt;
    return event_time + window;
  }
};

// What evaluation reads of one profile. Implement what your rules use; the
// defaults answer "missing". Returned pointers and views must stay valid until
// evaluate returns; evaluate keeps none of them.
class ProfileView {
 public:
  virtual ~ProfileView() = default;
  virtual const rapidjson::Value* trait(std::string_view name) const;
  virtual const rapidjson::Value* computed(std::string_view name) const;
  // Events that c.matches() and c.in_window(t, now). `&c` is stable for as
  // long as any copy of its Rule lives, and c.key names it across rules.
  virtual int64_t event_count(const EventCondition& c, Micros now) const;
  virtual bool in_segment(std::string_view segment) const;
  // The accounts (groups) of the profile: 0..account_count()-1.
  virtual size_t account_count() const;
  virtual std::string_view account_id(size_t account) const;
  virtual const rapidjson::Value* account_trait(size_t account, std::string_view name) const;
};

// A member of `object` by name: the exact key first, then, if there is none
// and the name has dots, the dotted path ("address.city"). nullptr if missing
// or if `object` is not an object. Allocation-free.
const rapidjson::Value* find_path(const rapidjson::Value* object, std::string_view name) noexcept;

// A compiled rule. Immutable; copies share one tree; evaluate is thread-safe.
class Rule {
 public:
  // Throws cdp::Error(InvalidInput) with the JSON path of the bad node.
  static Rule compile(const rapidjson::Value& rule);
  // The same from JSON text; MalformedJson if it is not JSON.
  static Rule compile(std::string_view json_text);

  bool evaluate(const ProfileView& profile, Micros now) const;

  // Distinct names, sorted.
  const std::vector<std::string>& segments_referenced() const;
  const std::vector<std::string>& traits_referenced() const;          // profile traits
  const std::vector<std::string>& computed_referenced() const;        // computed traits
  const std::vector<std::string>& account_traits_referenced() const;  // account traits
  // Distinct event conditions, in order of first appearance (index = position).
  const std::vector<EventCondition>& event_conditions() const;
  bool uses_accounts() const;
  // True when time alone can change the answer (relative dates, event
  // windows): such segments need the periodic sweep.
  bool depends_on_time() const;
  // True when a trait or computed comparison uses a relative date ("7 days
  // ago"): no stored state says when the answer flips, so such segments are
  // re-evaluated over all profiles periodically.
  bool uses_relative_dates() const;

  struct Impl;

 private:
  explicit Rule(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Segment name -> the segments its rule refers to (Rule::segments_referenced).
using SegmentGraph = std::map<std::string, std::vector<std::string>, std::less<>>;

// A cycle among the segments, as a path that starts and ends with the same
// name ({"a", "b", "a"}; {"a", "a"} for a rule that refers to itself), or
// nullopt. Names referred to but absent from the graph are leaves.
std::optional<std::vector<std::string>> find_segment_cycle(const SegmentGraph& graph);

// Throws cdp::Error(InvalidInput, "segment", "must not refer to itself through
// other segments: a -> b -> a") when there is a cycle.
void check_segment_cycles(const SegmentGraph& graph);

// Every segment of the graph, each after those it refers to (evaluate in this
// order in one pass); throws as check_segment_cycles on a cycle.
std::vector<std::string> segment_order(const SegmentGraph& graph);

}  // namespace cdp::segments
