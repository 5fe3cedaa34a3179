// libFuzzer target: any bytes as a segment rule (core/segments.hpp).
// Rule::compile must either throw cdp::Error (never Internal, with a field
// and a rule that can be stored as text) or return a rule whose lists are
// sorted and distinct, whose event conditions are numbered in order with
// distinct keys, and that evaluates against a profile without crashing;
// {"not": rule} must give the opposite answer. The segments the rule refers
// to also go through the cycle checks, which must agree with each other.
// Anything else aborts. Build and run: docs/testing.md, "Fuzzing".
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

#include "core/error.hpp"
#include "core/segments.hpp"

namespace {

using cdp::Micros;
using cdp::segments::EventCondition;
using cdp::segments::Rule;

[[noreturn]] void fail(const char* what, std::string_view text) {
  std::fprintf(stderr, "invariant broken: %s: [%.*s]\n", what, static_cast<int>(text.size()), text.data());
  std::abort();
}

constexpr Micros kNow = 1'714'566'600'000'000;  // 2024-05-01T12:30:00Z

// A profile with a trait of every JSON type, nested and dotted names, a date,
// a list, two accounts, and event counts that depend on the condition.
const rapidjson::Document& doc() {
  static rapidjson::Document d = [] {
    rapidjson::Document x;
    x.Parse(R"({
      "traits": {"plan": "pro", "age": 30, "ltv": 99.5, "big": 9007199254740993, "neg": -4,
                 "vip": true, "none": null, "email": "ada@acme.io", "signup_at": "2024-01-15T10:00:00Z",
                 "last_seen": "2024-04-28", "interests": ["golf", "chess", 3],
                 "address": {"city": "Paris", "zip": "75001"}, "a.b": "dotted", "": "empty"},
      "computed": {"orders_30d": 2, "revenue": 120.25, "last_order": "2024-04-30T08:00:00Z"},
      "accounts": [{"plan": "enterprise", "seats": 40}, {"plan": "free", "seats": 1}],
      "properties": {"revenue": 75, "currency": "EUR", "items": [{"sku": "a"}], "coupon": null}
    })");
    if (x.HasParseError()) std::abort();
    return x;
  }();
  return d;
}

const rapidjson::Value* field(const rapidjson::Value& obj, std::string_view name) {
  return cdp::segments::find_path(&obj, name);
}

class Profile : public cdp::segments::ProfileView {
 public:
  const rapidjson::Value* trait(std::string_view name) const override { return field(doc()["traits"], name); }
  const rapidjson::Value* computed(std::string_view name) const override { return field(doc()["computed"], name); }
  int64_t event_count(const EventCondition& c, Micros) const override {
    return static_cast<int64_t>(c.key.size() % 4);
  }
  bool in_segment(std::string_view segment) const override { return segment.size() % 2 == 1; }
  size_t account_count() const override { return 2; }
  std::string_view account_id(size_t account) const override { return account ? "globex" : "acme"; }
  const rapidjson::Value* account_trait(size_t account, std::string_view name) const override {
    return field(doc()["accounts"][static_cast<rapidjson::SizeType>(account)], name);
  }
};

void storable(const char* what, const std::string& s) {
  if (s.find('\0') != std::string::npos) fail(what, s);
}

void sorted_distinct(const char* what, const std::vector<std::string>& v) {
  for (size_t i = 1; i < v.size(); i++)
    if (!(v[i - 1] < v[i])) fail(what, v[i]);
  for (auto& s : v)
    if (s.empty()) fail(what, "(empty name)");
}

void check_error(const cdp::Error& e, std::string_view body) {
  if (e.kind() == cdp::ErrorKind::Internal) fail("Internal error", e.what());
  if (e.kind() != cdp::ErrorKind::InvalidInput && e.kind() != cdp::ErrorKind::MalformedJson)
    fail("unexpected error kind", e.what());
  if (e.rule().empty()) fail("error without a rule", body);
}

const std::string kSelf = "\x01self";  // the rule's own segment

// The referenced segments as a chain s -> r0 -> r1 -> ... -> s when `loop`:
// a cycle unless the rule refers to none; without `loop` there is none.
void check_cycles(const std::vector<std::string>& refs, bool loop) {
  cdp::segments::SegmentGraph g;
  g[kSelf] = refs;
  for (size_t i = 0; i + 1 < refs.size(); i++) g[refs[i]] = {refs[i + 1]};
  if (loop && !refs.empty()) g[refs.back()] = {kSelf};
  auto cycle = cdp::segments::find_segment_cycle(g);
  bool expect = loop && !refs.empty();
  if (cycle.has_value() != expect) fail("find_segment_cycle", expect ? "missed a cycle" : "saw a cycle");
  if (cycle && (cycle->size() < 2 || cycle->front() != cycle->back())) fail("cycle is not a closed path", "");
  bool threw = false;
  try {
    cdp::segments::check_segment_cycles(g);
  } catch (const cdp::Error&) {
    threw = true;
  }
  if (threw != expect) fail("check_segment_cycles disagrees with find_segment_cycle", "");
  if (expect) return;
  std::vector<std::string> order = cdp::segments::segment_order(g);
  std::set<std::string> seen;
  for (auto& name : order) {
    if (!seen.insert(name).second) fail("segment_order lists a segment twice", name);
    auto it = g.find(name);
    if (it == g.end()) continue;
    for (auto& dep : it->second)
      if (g.count(dep) && !seen.count(dep)) fail("segment_order: a segment before one it refers to", name);
  }
  for (auto& [name, deps] : g)
    if (!seen.count(name)) fail("segment_order misses a segment", name);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  std::optional<Rule> compiled;
  try {
    compiled = Rule::compile(body);
  } catch (const cdp::Error& e) {
    check_error(e, body);
    return 0;
  }
  const Rule& rule = *compiled;
  sorted_distinct("segments_referenced", rule.segments_referenced());
  sorted_distinct("traits_referenced", rule.traits_referenced());
  sorted_distinct("computed_referenced", rule.computed_referenced());
  sorted_distinct("account_traits_referenced", rule.account_traits_referenced());
  std::set<std::string> keys;
  const auto& conds = rule.event_conditions();
  for (size_t i = 0; i < conds.size(); i++) {
    const EventCondition& c = conds[i];
    if (c.index != i) fail("event condition index", c.key);
    if (!keys.insert(c.key).second) fail("two event conditions with one key", c.key);
    if (c.window < 0) fail("negative window", c.key);
    if (c.window && !rule.depends_on_time()) fail("a window but no time dependence", c.key);
    storable("event condition key", c.key);
    // Filters run against fixed properties, and against none.
    (void)c.matches(c.type, c.event, &doc()["properties"]);
    (void)c.matches(c.type, c.event, nullptr);
  }
  if (rule.uses_relative_dates() && !rule.depends_on_time()) fail("relative dates but no time dependence", body);

  Profile profile;
  bool yes = rule.evaluate(profile, kNow);
  (void)rule.evaluate(profile, 0);
  (void)rule.evaluate(cdp::segments::ProfileView(), kNow);  // every default: missing

  // {"not": rule} is the opposite (unless wrapping passes the depth limit).
  std::string wrapped = "{\"not\": ";
  wrapped.append(body).append("}");
  try {
    if (Rule::compile(wrapped).evaluate(profile, kNow) == yes) fail("{\"not\": rule} agrees with rule", body);
  } catch (const cdp::Error& e) {
    check_error(e, wrapped);
  }

  const auto& refs = rule.segments_referenced();
  if (std::find(refs.begin(), refs.end(), kSelf) == refs.end()) {
    check_cycles(refs, true);
    check_cycles(refs, false);
  }
  return 0;
}
