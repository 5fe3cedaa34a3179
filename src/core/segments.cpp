#include "core/segments.hpp"

#include <algorithm>
#include <initializer_list>
#include <map>

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp::segments {

using rapidjson::Value;

// ---------------------------------------------------------------------------
// Comparing values
// ---------------------------------------------------------------------------
namespace {

template <typename T>
int three_way(T a, T b) {
  return a < b ? -1 : b < a ? 1 : 0;
}

std::string_view view_of(const Value& v) { return {v.GetString(), v.GetStringLength()}; }

// -1, 0, 1; nullopt when the two are not of comparable types.
std::optional<int> compare(const Value& v, const Operand& o, Micros now) noexcept {
  switch (o.kind) {
    case Operand::Kind::Bool:
      if (!v.IsBool()) return std::nullopt;
      return three_way<int>(v.GetBool(), o.boolean);
    case Operand::Kind::Number:
      if (!v.IsNumber()) return std::nullopt;
      if (o.integral && v.IsInt64()) return three_way(v.GetInt64(), o.integer);
      return three_way(v.GetDouble(), o.number);
    case Operand::Kind::String:
      if (!v.IsString()) return std::nullopt;
      return three_way(view_of(v).compare(o.string), 0);
    case Operand::Kind::Time:
    case Operand::Kind::RelativeTime: {
      if (!v.IsString()) return std::nullopt;
      std::optional<Micros> t = parse_iso8601(view_of(v));
      if (!t) return std::nullopt;
      return three_way(*t, o.kind == Operand::Kind::Time ? o.time : now + o.time);
    }
  }
  return std::nullopt;
}

}  // namespace

const char* op_name(Op op) {
  switch (op) {
    case Op::Eq: return "=";
    case Op::Ne: return "!=";
    case Op::Lt: return "<";
    case Op::Le: return "<=";
    case Op::Gt: return ">";
    case Op::Ge: return ">=";
    case Op::In: return "in";
    case Op::Contains: return "contains";
    case Op::StartsWith: return "starts_with";
    case Op::Exists: return "exists";
    case Op::Between: return "between";
  }
  return "?";
}

bool Comparison::test(const Value* v, Micros now) const noexcept {
  if (!v || v->IsNull()) return false;
  std::optional<int> c;
  switch (op) {
    case Op::Exists: return true;
    case Op::Eq: c = compare(*v, values[0], now); return c && *c == 0;
    case Op::Ne: c = compare(*v, values[0], now); return c && *c != 0;
    case Op::Lt: c = compare(*v, values[0], now); return c && *c < 0;
    case Op::Le: c = compare(*v, values[0], now); return c && *c <= 0;
    case Op::Gt: c = compare(*v, values[0], now); return c && *c > 0;
    case Op::Ge: c = compare(*v, values[0], now); return c && *c >= 0;
    case Op::In:
      if (v->IsString() && std::binary_search(in_strings.begin(), in_strings.end(), view_of(*v),
                                              std::less<>()))
        return true;
      for (const Operand& o : values) {
        c = compare(*v, o, now);
        if (c && *c == 0) return true;
      }
      return false;
    case Op::Contains: {
      const Operand& o = values[0];
      if (v->IsString())
        return o.kind == Operand::Kind::String && view_of(*v).find(o.string) != std::string_view::npos;
      if (v->IsArray()) {
        for (const Value& e : v->GetArray()) {
          c = compare(e, o, now);
          if (c && *c == 0) return true;
        }
      }
      return false;
    }
    case Op::StartsWith:
      return v->IsString() && view_of(*v).starts_with(values[0].string);
    case Op::Between: {
      std::optional<int> lo = compare(*v, values[0], now);
      if (!lo || *lo < 0) return false;
      std::optional<int> hi = compare(*v, values[1], now);
      return hi && *hi <= 0;
    }
  }
  return false;
}

bool EventCondition::matches(MessageType t, std::string_view name, const Value* properties) const noexcept {
  if (t != type || name != event) return false;
  for (const PropertyFilter& f : where)
    if (!f.cmp.test(find_path(properties, f.property), 0)) return false;
  return true;
}

const Value* ProfileView::trait(std::string_view) const { return nullptr; }
const Value* ProfileView::computed(std::string_view) const { return nullptr; }
int64_t ProfileView::event_count(const EventCondition&, Micros) const { return 0; }
bool ProfileView::in_segment(std::string_view) const { return false; }
size_t ProfileView::account_count() const { return 0; }
std::string_view ProfileView::account_id(size_t) const { return {}; }
const Value* ProfileView::account_trait(size_t, std::string_view) const { return nullptr; }

const Value* find_path(const Value* object, std::string_view name) noexcept {
  if (!object || !object->IsObject()) return nullptr;
  Value key(rapidjson::StringRef(name.data(), name.size()));
  auto it = object->FindMember(key);
  if (it != object->MemberEnd()) return &it->value;
  if (name.find('.') == std::string_view::npos) return nullptr;
  const Value* cur = object;
  size_t start = 0;
  for (;;) {
    size_t dot = name.find('.', start);
    std::string_view part = name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!cur->IsObject()) return nullptr;
    Value k(rapidjson::StringRef(part.data(), part.size()));
    auto m = cur->FindMember(k);
    if (m == cur->MemberEnd()) return nullptr;
    cur = &m->value;
    if (dot == std::string_view::npos) return cur;
    start = dot + 1;
  }
}

// ---------------------------------------------------------------------------
// The compiled tree
// ---------------------------------------------------------------------------
namespace {

enum class Kind : uint8_t { And, Or, Not, Trait, Computed, AccountTrait, AccountId, Event, Segment, Account };

struct Node {
  Kind kind = Kind::And;
  int cost = 1;  // a rough price of evaluating it: cheap children of and/or go first
  std::string name;
  Comparison cmp;
  Op count_op = Op::Ge;
  int64_t count = 1;
  size_t event = 0;
  std::vector<uint32_t> children;
};

constexpr size_t kNoAccount = static_cast<size_t>(-1);

}  // namespace

struct Rule::Impl {
  std::vector<Node> nodes;
  uint32_t root = 0;
  std::vector<std::string> segments, traits, computed, account_traits;
  std::vector<EventCondition> events;
  bool accounts = false;
  bool time = false;
  bool relative = false;  // relative dates in trait comparisons

  bool eval(uint32_t n, const ProfileView& p, Micros now, size_t account) const {
    const Node& node = nodes[n];
    switch (node.kind) {
      case Kind::And:
        for (uint32_t c : node.children)
          if (!eval(c, p, now, account)) return false;
        return true;
      case Kind::Or:
        for (uint32_t c : node.children)
          if (eval(c, p, now, account)) return true;
        return false;
      case Kind::Not: return !eval(node.children[0], p, now, account);
      case Kind::Trait: return node.cmp.test(p.trait(node.name), now);
      case Kind::Computed: return node.cmp.test(p.computed(node.name), now);
      case Kind::AccountTrait: return node.cmp.test(p.account_trait(account, node.name), now);
      case Kind::AccountId: {
        std::string_view id = p.account_id(account);
        Value v(rapidjson::StringRef(id.data(), id.size()));
        return node.cmp.test(&v, now);
      }
      case Kind::Event: {
        int64_t c = p.event_count(events[node.event], now);
        switch (node.count_op) {
          case Op::Eq: return c == node.count;
          case Op::Ne: return c != node.count;
          case Op::Lt: return c < node.count;
          case Op::Le: return c <= node.count;
          case Op::Gt: return c > node.count;
          default: return c >= node.count;
        }
      }
      case Kind::Segment: return p.in_segment(node.name);
      case Kind::Account: {
        size_t n_accounts = p.account_count();
        for (size_t a = 0; a < n_accounts; a++)
          if (eval(node.children[0], p, now, a)) return true;
        return false;
      }
    }
    return false;
  }
};

// ---------------------------------------------------------------------------
// Compiling
// ---------------------------------------------------------------------------
namespace {

constexpr int64_t kMinute = 60LL * 1000000;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kMaxDays = 36500;  // 100 years bounds every duration
constexpr int64_t kMaxCount = 1000000000;

const char* const kOpsText = "must be one of =, !=, <, <=, >, >=, in, contains, starts_with, exists, between";
const char* const kCountOpsText = "must be one of =, !=, <, <=, >, >=";
const char* const kRuleKeys = "and, or, not, trait, computed, event, segment, account";
const char* const kAccountKeys = "and, or, not, trait, id";
const char* const kDateKeys =
    "date, days_ago, hours_ago, minutes_ago, days_from_now, hours_from_now, minutes_from_now";

std::string sub(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string at(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

[[noreturn]] void fail(std::string path, const std::string& rule) {
  throw Error(ErrorKind::InvalidInput, std::move(path), rule);
}

std::string_view key_of(const Value::ConstMemberIterator& m) { return view_of(m->name); }

std::optional<Op> parse_op(std::string_view s) {
  static constexpr Op kAll[] = {Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge,
                                Op::In, Op::Contains, Op::StartsWith, Op::Exists, Op::Between};
  for (Op op : kAll)
    if (s == op_name(op)) return op;
  return std::nullopt;
}

bool is_ordering(Op op) { return op == Op::Lt || op == Op::Le || op == Op::Gt || op == Op::Ge; }

// Refuses keys other than `allowed`, and repeated keys.
void check_keys(const Value& obj, const std::string& path, std::initializer_list<std::string_view> allowed,
                const std::string& what) {
  for (auto m = obj.MemberBegin(); m != obj.MemberEnd(); ++m) {
    std::string_view k = key_of(m);
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
      fail(sub(path, k), "unknown key: " + what);
    for (auto n = obj.MemberBegin(); n != m; ++n)
      if (key_of(n) == k) fail(sub(path, k), "duplicate key");
  }
}

const Value* member(const Value& obj, const char* key) {
  auto it = obj.FindMember(key);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

std::string non_empty_string(const Value& v, const std::string& path, const std::string& what) {
  if (!v.IsString() || v.GetStringLength() == 0) fail(path, "must be a non-empty string (" + what + ")");
  return std::string(view_of(v));
}

// A whole number in [lo, hi].
int64_t whole(const Value& v, const std::string& path, int64_t lo, int64_t hi) {
  if (!v.IsInt64() || v.GetInt64() < lo || v.GetInt64() > hi)
    fail(path, "must be a whole number from " + std::to_string(lo) + " to " + std::to_string(hi));
  return v.GetInt64();
}

// What a value may be, for one operator.
struct Accept {
  bool boolean = false, number = false, string = false, date = false, relative = false;
  const char* expected = "";       // "must be ..." when the value is none of these
  const char* no_relative = "";    // why a relative date is refused here
};

Operand date_object(const Value& v, const std::string& path, const Accept& a) {
  if (v.MemberCount() != 1) fail(path, std::string("must have exactly one key: ") + kDateKeys);
  auto m = v.MemberBegin();
  std::string_view k = key_of(m);
  std::string kpath = sub(path, k);
  Operand o;
  if (k == "date") {
    std::optional<Micros> t = m->value.IsString() ? parse_iso8601(view_of(m->value)) : std::nullopt;
    if (!t) fail(kpath, "must be an ISO-8601 date such as 2024-05-01 or 2024-05-01T12:00:00Z");
    if (!a.date) fail(path, a.expected);
    o.kind = Operand::Kind::Time;
    o.time = *t;
    return o;
  }
  struct Unit {
    std::string_view key;
    int64_t micros, sign;
  };
  static constexpr Unit kUnits[] = {
      {"days_ago", kDay, -1},         {"hours_ago", kHour, -1},         {"minutes_ago", kMinute, -1},
      {"days_from_now", kDay, 1},     {"hours_from_now", kHour, 1},     {"minutes_from_now", kMinute, 1}};
  for (const Unit& u : kUnits) {
    if (k != u.key) continue;
    if (!a.relative) fail(path, a.no_relative);
    int64_t n = whole(m->value, kpath, 0, kMaxDays * kDay / u.micros);
    o.kind = Operand::Kind::RelativeTime;
    o.time = u.sign * n * u.micros;
    return o;
  }
  fail(kpath, "unknown key: a date is {\"date\": \"2024-05-01\"} or relative: days_ago, hours_ago, minutes_ago, "
              "days_from_now, hours_from_now or minutes_from_now");
}

Operand operand(const Value& v, const std::string& path, const Accept& a) {
  Operand o;
  if (v.IsBool() && a.boolean) {
    o.kind = Operand::Kind::Bool;
    o.boolean = v.GetBool();
  } else if (v.IsNumber() && a.number) {
    o.kind = Operand::Kind::Number;
    o.number = v.GetDouble();
    o.integral = v.IsInt64();
    if (o.integral) o.integer = v.GetInt64();
  } else if (v.IsString() && (a.string || a.date)) {
    std::optional<Micros> t = a.date ? parse_iso8601(view_of(v)) : std::nullopt;
    if (t) {
      o.kind = Operand::Kind::Time;
      o.time = *t;
    } else if (a.string) {
      o.kind = Operand::Kind::String;
      o.string = std::string(view_of(v));
    } else {
      fail(path, a.expected);
    }
  } else if (v.IsObject() && a.date) {
    return date_object(v, path, a);
  } else {
    fail(path, a.expected);
  }
  return o;
}

enum class Family { Number, String, Time };
Family family(const Operand& o) {
  switch (o.kind) {
    case Operand::Kind::Number: return Family::Number;
    case Operand::Kind::String: return Family::String;
    default: return Family::Time;
  }
}

// Parses {"op": ..., "value": ...} in `obj` (the other keys are checked by the caller).
// `no_relative`: why relative dates are refused here, or nullptr if allowed.
Comparison comparison(const Value& obj, const std::string& path, const char* no_relative) {
  Comparison c;
  std::string op_path = sub(path, "op"), value_path = sub(path, "value");
  const Value* op = member(obj, "op");
  if (!op) fail(op_path, std::string("missing: ") + kOpsText);
  std::optional<Op> parsed = op->IsString() ? parse_op(view_of(*op)) : std::nullopt;
  if (!parsed) fail(op_path, kOpsText);
  c.op = *parsed;
  const Value* value = member(obj, "value");
  if (c.op == Op::Exists) {
    if (value) fail(value_path, "exists takes no value");
    return c;
  }

  std::string eq_refusal = std::string("a relative date compares with <, <=, >, >= or between, not with ") +
                           op_name(c.op);

  Accept scalar;  // =, !=, and the elements of in
  scalar.boolean = scalar.number = scalar.string = scalar.date = true;
  scalar.expected = "must be a string, a number, a boolean or a date";
  scalar.no_relative = no_relative ? no_relative : eq_refusal.c_str();

  Accept ordered;  // <, <=, >, >=, and the ends of between
  ordered.number = ordered.string = ordered.date = true;
  ordered.relative = no_relative == nullptr;
  ordered.expected = no_relative ? "must be a number, a string or a date"
                                 : "must be a number, a string, a date or a relative date such as {\"days_ago\": 7}";
  ordered.no_relative = no_relative ? no_relative : "";

  const char* missing_expected = "";
  switch (c.op) {
    case Op::Eq:
    case Op::Ne: missing_expected = scalar.expected; break;
    case Op::In: missing_expected = "must be a non-empty array of strings, numbers, booleans or dates"; break;
    case Op::Contains: missing_expected = "must be a string, a number or a boolean"; break;
    case Op::StartsWith: missing_expected = "must be a non-empty string"; break;
    case Op::Between: missing_expected = "must be [low, high]: two numbers, two strings or two dates"; break;
    default: missing_expected = ordered.expected; break;
  }
  if (!value) fail(value_path, std::string("missing: ") + missing_expected);
  c.json = to_json(*value);

  switch (c.op) {
    case Op::Eq:
    case Op::Ne: c.values.push_back(operand(*value, value_path, scalar)); break;
    case Op::Lt:
    case Op::Le:
    case Op::Gt:
    case Op::Ge: c.values.push_back(operand(*value, value_path, ordered)); break;
    case Op::In: {
      if (!value->IsArray() || value->Empty()) fail(value_path, missing_expected);
      if (value->Size() > kMaxInValues)
        fail(value_path, "holds at most " + std::to_string(kMaxInValues) + " values");
      for (rapidjson::SizeType i = 0; i < value->Size(); i++) {
        Operand o = operand((*value)[i], at(value_path, i), scalar);
        if (o.kind == Operand::Kind::String) c.in_strings.push_back(std::move(o.string));
        else c.values.push_back(std::move(o));
      }
      std::sort(c.in_strings.begin(), c.in_strings.end());
      c.in_strings.erase(std::unique(c.in_strings.begin(), c.in_strings.end()), c.in_strings.end());
      break;
    }
    case Op::Contains: {
      Accept a;
      a.boolean = a.number = a.string = true;
      a.expected = missing_expected;
      c.values.push_back(operand(*value, value_path, a));
      break;
    }
    case Op::StartsWith: {
      if (!value->IsString() || value->GetStringLength() == 0) fail(value_path, missing_expected);
      Operand o;
      o.string = std::string(view_of(*value));
      c.values.push_back(std::move(o));
      break;
    }
    case Op::Between: {
      if (!value->IsArray() || value->Size() != 2) fail(value_path, missing_expected);
      Operand lo = operand((*value)[0], at(value_path, 0), ordered);
      Operand hi = operand((*value)[1], at(value_path, 1), ordered);
      if (family(lo) != family(hi)) fail(value_path, "must be two numbers, two strings or two dates");
      bool reversed = false;
      if (lo.kind == hi.kind) {
        switch (lo.kind) {
          case Operand::Kind::Number:
            reversed = lo.integral && hi.integral ? lo.integer > hi.integer : lo.number > hi.number;
            break;
          case Operand::Kind::String: reversed = lo.string > hi.string; break;
          default: reversed = lo.time > hi.time; break;
        }
      }
      if (reversed) fail(value_path, "must be [low, high] with low <= high");
      c.values.push_back(std::move(lo));
      c.values.push_back(std::move(hi));
      break;
    }
    case Op::Exists: break;
  }
  return c;
}

std::string write_json(const auto& body) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  body(w);
  return std::string(buf.GetString(), buf.GetSize());
}

void add_name(std::vector<std::string>& names, const std::string& name) {
  auto it = std::lower_bound(names.begin(), names.end(), name);
  if (it == names.end() || *it != name) names.insert(it, name);
}

class Compiler {
 public:
  explicit Compiler(Rule::Impl& out) : out_(out) {}

  uint32_t rule(const Value& v, const std::string& path, int depth, bool in_account) {
    if (depth > kMaxRuleDepth) fail(path, "rules nest at most " + std::to_string(kMaxRuleDepth) + " levels deep");
    const char* keys = in_account ? kAccountKeys : kRuleKeys;
    if (!v.IsObject()) fail(path, std::string("must be an object with one of the keys ") + keys);
    if (out_.nodes.size() >= kMaxRuleNodes)
      fail(path, "a rule holds at most " + std::to_string(kMaxRuleNodes) + " conditions");

    // The key that says what kind of rule this is.
    std::string_view kind;
    for (auto m = v.MemberBegin(); m != v.MemberEnd(); ++m) {
      std::string_view k = key_of(m);
      if (!is_kind(k, in_account)) continue;
      if (kind == k) fail(sub(path, k), "duplicate key");
      if (!kind.empty())
        fail(sub(path, k), "cannot be combined with \"" + std::string(kind) +
                               "\" in one rule: put each in its own rule inside \"and\" or \"or\"");
      kind = k;
    }
    if (kind.empty()) {
      if (in_account)
        for (auto m = v.MemberBegin(); m != v.MemberEnd(); ++m)
          if (is_kind(key_of(m), false))
            fail(sub(path, key_of(m)), std::string("not allowed inside account: an account rule uses ") + keys);
      fail(path, std::string("must have one of the keys ") + keys);
    }

    std::string kpath = sub(path, kind);
    const Value& body = v.FindMember(Value(rapidjson::StringRef(kind.data(), kind.size())))->value;
    if (kind == "and" || kind == "or") {
      check_keys(v, path, {kind}, "\"" + std::string(kind) + "\" stands alone in its object");
      if (!body.IsArray() || body.Empty()) fail(kpath, "must be a non-empty array of rules");
      uint32_t n = add(kind == "and" ? Kind::And : Kind::Or);
      std::vector<uint32_t> children;
      for (rapidjson::SizeType i = 0; i < body.Size(); i++)
        children.push_back(rule(body[i], at(kpath, i), depth + 1, in_account));
      // Cheap conditions first: the answer is the same in any order.
      std::stable_sort(children.begin(), children.end(),
                       [&](uint32_t a, uint32_t b) { return out_.nodes[a].cost < out_.nodes[b].cost; });
      int cost = 0;
      for (uint32_t c : children) cost = std::min(cost + out_.nodes[c].cost, 1000000);
      out_.nodes[n].children = std::move(children);
      out_.nodes[n].cost = cost;
      return n;
    }
    if (kind == "not") {
      check_keys(v, path, {kind}, "\"not\" stands alone in its object");
      uint32_t n = add(Kind::Not);
      uint32_t child = rule(body, kpath, depth + 1, in_account);
      out_.nodes[n].children = {child};
      out_.nodes[n].cost = out_.nodes[child].cost;
      return n;
    }
    if (kind == "trait" || kind == "computed") {
      check_keys(v, path, {kind, "op", "value"},
                 "a " + std::string(kind) + " condition has " + std::string(kind) + ", op and value");
      std::string name = non_empty_string(body, kpath, std::string("the ") + (kind == "trait" ? "trait" : "computed trait") + "'s name");
      Comparison cmp = comparison(v, path, nullptr);
      note_time(cmp);
      uint32_t n = add(in_account ? Kind::AccountTrait : kind == "trait" ? Kind::Trait : Kind::Computed);
      add_name(in_account ? out_.account_traits : kind == "trait" ? out_.traits : out_.computed, name);
      out_.nodes[n].name = std::move(name);
      out_.nodes[n].cmp = std::move(cmp);
      return n;
    }
    if (kind == "id") {
      check_keys(v, path, {kind}, "an account id condition is {\"id\": \"acme\"} or {\"id\": [\"acme\", ...]}");
      const char* expected = "must be an account id (a non-empty string) or a non-empty array of them";
      Comparison cmp;
      cmp.json = to_json(body);
      if (body.IsString() && body.GetStringLength() > 0) {
        cmp.op = Op::Eq;
        Operand o;
        o.string = std::string(view_of(body));
        cmp.values.push_back(std::move(o));
      } else if (body.IsArray() && !body.Empty() && body.Size() <= kMaxInValues) {
        cmp.op = Op::In;
        for (rapidjson::SizeType i = 0; i < body.Size(); i++) {
          if (!body[i].IsString() || body[i].GetStringLength() == 0) fail(at(kpath, i), "must be a non-empty string");
          cmp.in_strings.emplace_back(view_of(body[i]));
        }
        std::sort(cmp.in_strings.begin(), cmp.in_strings.end());
        cmp.in_strings.erase(std::unique(cmp.in_strings.begin(), cmp.in_strings.end()), cmp.in_strings.end());
      } else {
        fail(kpath, expected);
      }
      uint32_t n = add(Kind::AccountId);
      out_.nodes[n].cmp = std::move(cmp);
      return n;
    }
    if (kind == "segment") {
      check_keys(v, path, {kind}, "a segment condition is {\"segment\": \"name\"}");
      std::string name = non_empty_string(body, kpath, "the segment's name");
      uint32_t n = add(Kind::Segment);
      add_name(out_.segments, name);
      out_.nodes[n].name = std::move(name);
      return n;
    }
    if (kind == "account") {
      check_keys(v, path, {kind}, "\"account\" stands alone in its object");
      if (!body.IsObject()) fail(kpath, std::string("must be an object with one of the keys ") + kAccountKeys);
      out_.accounts = true;
      uint32_t n = add(Kind::Account);
      uint32_t child = rule(body, kpath, depth + 1, true);
      out_.nodes[n].children = {child};
      out_.nodes[n].cost = 2 + out_.nodes[child].cost;
      return n;
    }
    return event(v, path);  // kind == "event"
  }

 private:
  static bool is_kind(std::string_view k, bool in_account) {
    if (k == "and" || k == "or" || k == "not" || k == "trait") return true;
    if (in_account) return k == "id";
    return k == "computed" || k == "event" || k == "segment" || k == "account";
  }

  uint32_t add(Kind kind) {
    out_.nodes.emplace_back();
    out_.nodes.back().kind = kind;
    return static_cast<uint32_t>(out_.nodes.size() - 1);
  }

  void note_time(const Comparison& c) {
    for (const Operand& o : c.values)
      if (o.kind == Operand::Kind::RelativeTime) out_.time = out_.relative = true;
  }

  uint32_t event(const Value& v, const std::string& path) {
    check_keys(v, path, {"event", "type", "count", "within", "where"},
               "an event condition has event, type, count, within and where");
    EventCondition ec;
    ec.event = non_empty_string(v["event"], sub(path, "event"), "the event's name");

    if (const Value* type = member(v, "type")) {
      std::optional<MessageType> t = type->IsString() ? parse_message_type(view_of(*type)) : std::nullopt;
      if (!t || (*t != MessageType::Track && *t != MessageType::Page && *t != MessageType::Screen))
        fail(sub(path, "type"), "must be one of track, page, screen");
      ec.type = *t;
    }

    Op count_op = Op::Ge;
    int64_t count = 1;
    if (const Value* c = member(v, "count")) {
      std::string cpath = sub(path, "count");
      if (!c->IsObject()) fail(cpath, "must be an object such as {\"op\": \">=\", \"value\": 2}");
      check_keys(*c, cpath, {"op", "value"}, "a count has op and value");
      const Value* op = member(*c, "op");
      if (!op) fail(sub(cpath, "op"), std::string("missing: ") + kCountOpsText);
      std::optional<Op> parsed = op->IsString() ? parse_op(view_of(*op)) : std::nullopt;
      if (!parsed || !(is_ordering(*parsed) || *parsed == Op::Eq || *parsed == Op::Ne))
        fail(sub(cpath, "op"), kCountOpsText);
      count_op = *parsed;
      const Value* value = member(*c, "value");
      if (!value) fail(sub(cpath, "value"), "missing: must be a whole number from 0 to " + std::to_string(kMaxCount));
      count = whole(*value, sub(cpath, "value"), 0, kMaxCount);
    }

    if (const Value* w = member(v, "within")) {
      std::string wpath = sub(path, "within");
      if (!w->IsObject() || w->MemberCount() != 1)
        fail(wpath, "must be an object with one key: days, hours or minutes, such as {\"days\": 30}");
      auto m = w->MemberBegin();
      std::string_view unit = key_of(m);
      int64_t micros = unit == "days" ? kDay : unit == "hours" ? kHour : unit == "minutes" ? kMinute : 0;
      if (!micros) fail(sub(wpath, unit), "unknown key: a window is one of days, hours, minutes");
      ec.window = whole(m->value, sub(wpath, unit), 1, kMaxDays * kDay / micros) * micros;
      out_.time = true;
    }

    std::vector<std::pair<std::string, PropertyFilter>> filters;  // (canonical JSON, filter)
    if (const Value* where = member(v, "where")) {
      std::string wpath = sub(path, "where");
      if (!where->IsArray())
        fail(wpath, "must be an array of property conditions such as {\"property\": \"revenue\", \"op\": \">\", \"value\": 50}");
      for (rapidjson::SizeType i = 0; i < where->Size(); i++) {
        const Value& f = (*where)[i];
        std::string fpath = at(wpath, i);
        if (!f.IsObject()) fail(fpath, "must be an object with property, op and value");
        check_keys(f, fpath, {"property", "op", "value"}, "a property condition has property, op and value");
        const Value* prop = member(f, "property");
        if (!prop) fail(sub(fpath, "property"), "missing: must be a non-empty string (the property's name)");
        PropertyFilter pf;
        pf.property = non_empty_string(*prop, sub(fpath, "property"), "the property's name");
        pf.cmp = comparison(f, fpath,
                            "relative dates are not allowed in where (an event is counted once, when it "
                            "arrives): use a date such as \"2024-05-01\"");
        std::string canon = write_json([&](auto& w) {
          w.StartObject();
          w.Key("property");
          w.String(pf.property.data(), static_cast<rapidjson::SizeType>(pf.property.size()));
          w.Key("op");
          w.String(op_name(pf.cmp.op));
          if (pf.cmp.op != Op::Exists) {
            w.Key("value");
            w.RawValue(pf.cmp.json.data(), pf.cmp.json.size(), rapidjson::kObjectType);
          }
          w.EndObject();
        });
        filters.emplace_back(std::move(canon), std::move(pf));
      }
    }
    std::sort(filters.begin(), filters.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    filters.erase(std::unique(filters.begin(), filters.end(), [](const auto& a, const auto& b) { return a.first == b.first; }),
                  filters.end());
    ec.key = write_json([&](auto& w) {
      w.StartObject();
      w.Key("type");
      w.String(message_type_name(ec.type));
      w.Key("event");
      w.String(ec.event.data(), static_cast<rapidjson::SizeType>(ec.event.size()));
      w.Key("window_us");
      w.Int64(ec.window);
      w.Key("where");
      w.StartArray();
      for (auto& [canon, f] : filters) w.RawValue(canon.data(), canon.size(), rapidjson::kObjectType);
      w.EndArray();
      w.EndObject();
    });
    for (auto& [canon, f] : filters) ec.where.push_back(std::move(f));

    size_t index;
    auto known = event_index_.find(ec.key);
    if (known != event_index_.end()) {
      index = known->second;
    } else {
      index = out_.events.size();
      ec.index = index;
      event_index_.emplace(ec.key, index);
      out_.events.push_back(std::move(ec));
    }
    uint32_t n = add(Kind::Event);
    out_.nodes[n].event = index;
    out_.nodes[n].count_op = count_op;
    out_.nodes[n].count = count;
    out_.nodes[n].cost = 4;
    return n;
  }

  Rule::Impl& out_;
  std::map<std::string, size_t> event_index_;
};

}  // namespace

Rule Rule::compile(const Value& rule) {
  auto impl = std::make_shared<Impl>();
  Compiler compiler(*impl);
  impl->root = compiler.rule(rule, "", 1, false);
  return Rule(std::move(impl));
}

Rule Rule::compile(std::string_view json_text) {
  rapidjson::Document doc;
  rapidjson::ParseResult parsed = parse_json(doc, json_text);
  if (parsed.IsError())
    throw Error(ErrorKind::MalformedJson, "",
                std::string("the rule is not valid JSON: ") + rapidjson::GetParseError_En(parsed.Code()) +
                    " at offset " + std::to_string(parsed.Offset()));
  return compile(doc);
}

bool Rule::evaluate(const ProfileView& profile, Micros now) const {
  return impl_->eval(impl_->root, profile, now, kNoAccount);
}

const std::vector<std::string>& Rule::segments_referenced() const { return impl_->segments; }
const std::vector<std::string>& Rule::traits_referenced() const { return impl_->traits; }
const std::vector<std::string>& Rule::computed_referenced() const { return impl_->computed; }
const std::vector<std::string>& Rule::account_traits_referenced() const { return impl_->account_traits; }
const std::vector<EventCondition>& Rule::event_conditions() const { return impl_->events; }
bool Rule::uses_accounts() const { return impl_->accounts; }
bool Rule::depends_on_time() const { return impl_->time; }
bool Rule::uses_relative_dates() const { return impl_->relative; }

// ---------------------------------------------------------------------------
// Segments that refer to segments
// ---------------------------------------------------------------------------
namespace {

// Depth-first over the graph (iteratively: a long chain of segments cannot
// overflow the stack). Appends each segment to `order` once those it refers
// to are in; returns the first cycle found.
std::optional<std::vector<std::string>> walk(const SegmentGraph& graph, std::vector<std::string>* order) {
  enum State { Unseen, Open, Done };
  std::map<std::string_view, State> state;
  struct Frame {
    std::string_view name;
    const std::vector<std::string>* refs;
    size_t next;
  };
  std::vector<Frame> stack;
  for (const auto& [start, start_refs] : graph) {
    if (state[start] != Unseen) continue;
    state[start] = Open;
    stack.push_back({start, &start_refs, 0});
    while (!stack.empty()) {
      Frame& top = stack.back();
      if (top.next == top.refs->size()) {
        state[top.name] = Done;
        if (order) order->emplace_back(top.name);
        stack.pop_back();
        continue;
      }
      const std::string& to = (*top.refs)[top.next++];
      auto it = graph.find(to);
      if (it == graph.end()) continue;  // not a segment we know: a leaf
      State& s = state[it->first];
      if (s == Open) {
        std::vector<std::string> cycle;
        bool on = false;
        for (const Frame& f : stack) {
          on = on || f.name == to;
          if (on) cycle.emplace_back(f.name);
        }
        cycle.push_back(to);
        return cycle;
      }
      if (s == Unseen) {
        s = Open;
        stack.push_back({it->first, &it->second, 0});  // `top` is not used after this
      }
    }
  }
  return std::nullopt;
}

[[noreturn]] void cycle_error(const std::vector<std::string>& cycle) {
  std::string path;
  for (const std::string& name : cycle) path += (path.empty() ? "" : " -> ") + name;
  throw Error(ErrorKind::InvalidInput, "segment", "must not refer to itself through other segments: " + path);
}

}  // namespace

std::optional<std::vector<std::string>> find_segment_cycle(const SegmentGraph& graph) {
  return walk(graph, nullptr);
}

void check_segment_cycles(const SegmentGraph& graph) {
  if (auto cycle = walk(graph, nullptr)) cycle_error(*cycle);
}

std::vector<std::string> segment_order(const SegmentGraph& graph) {
  std::vector<std::string> order;
  if (auto cycle = walk(graph, &order)) cycle_error(*cycle);
  return order;
}

}  // namespace cdp::segments
