#include "core/audience.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp {
namespace {

using rapidjson::Value;

// Re-raises a compile error with the definition's place in front of its path.
template <typename F>
auto within(const std::string& prefix, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    throw e.under(prefix);
  }
}

// The profile as the rule language sees it, for one evaluation.
class View : public segments::ProfileView {
 public:
  View(const Audience& a, const std::map<std::string, size_t, std::less<>>& counters,
       const Audience::ProfileState& p, const Value* traits, const Value* computed,
       const std::vector<AccountData>& accounts, const std::map<std::string, bool, std::less<>>& members)
      : a_(a), counters_(counters), p_(p), traits_(traits), computed_(computed), accounts_(accounts), members_(members) {}

  const Value* trait(std::string_view name) const override { return segments::find_path(traits_, name); }
  const Value* computed(std::string_view name) const override {
    if (!computed_) return nullptr;
    auto it = computed_->FindMember(Value(rapidjson::StringRef(name.data(), name.size())));
    return it == computed_->MemberEnd() ? nullptr : &it->value;
  }
  int64_t event_count(const segments::EventCondition& c, Micros now) const override {
    auto it = counters_.find(c.key);
    if (it == counters_.end()) return 0;  // not kept: the caller built no counter for it
    const Aggregate& agg = a_.aggregates()[it->second];
    return computed::count(agg.definition, p_.states[it->second], now);
  }
  bool in_segment(std::string_view segment) const override {
    auto it = members_.find(segment);
    return it != members_.end() && it->second;
  }
  size_t account_count() const override { return accounts_.size(); }
  std::string_view account_id(size_t i) const override { return accounts_[i].id; }
  const Value* account_trait(size_t i, std::string_view name) const override {
    return segments::find_path(&accounts_[i].traits, name);
  }

 private:
  const Audience& a_;
  const std::map<std::string, size_t, std::less<>>& counters_;
  const Audience::ProfileState& p_;
  const Value* traits_;
  const Value* computed_;
  const std::vector<AccountData>& accounts_;
  const std::map<std::string, bool, std::less<>>& members_;
};

}  // namespace

std::string short_key(std::string_view text) {
  uint64_t h = 14695981039346656037ULL;  // the FNV-1a 64-bit offset basis
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  static const char* hex = "0123456789abcdef";
  std::string out = "a";
  for (int i = 15; i >= 0; i--) out += hex[(h >> (i * 4)) & 15];
  return out;
}

Audience::Audience(std::vector<SegmentSpec> segments, std::vector<ComputedSpec> computed) {
  std::map<std::string, size_t> by_key;  // definition key -> aggregate
  std::sort(computed.begin(), computed.end(), [](auto& a, auto& b) { return a.name < b.name; });
  for (auto& c : computed) {
    computed::Definition d = within("computed_traits." + c.name + ".definition",
                                    [&] { return computed::Definition::compile(c.definition); });
    by_key.emplace(d.key, aggregates_.size());
    computed_.push_back(aggregates_.size());
    std::string key = short_key(d.key);
    aggregates_.push_back({std::move(d), std::move(key), c.name});
  }
  std::map<std::string, segments::Rule> rules;
  segments::SegmentGraph graph;
  std::map<std::string, int64_t> ids;
  for (auto& s : segments) {
    segments::Rule r = within("segments." + s.name + ".rule", [&] { return segments::Rule::compile(s.rule); });
    graph[s.name] = r.segments_referenced();
    rules.emplace(s.name, r);
    ids[s.name] = s.id;
  }
  for (auto& [name, refs] : graph)
    for (auto& ref : refs)
      if (!graph.count(ref))
        throw Error(ErrorKind::InvalidInput, "segments." + name + ".rule",
                    "refers to segment \"" + ref + "\", which does not exist");
  if (auto cycle = segments::find_segment_cycle(graph)) {
    std::string path;
    for (const std::string& n : *cycle) path += (path.empty() ? "" : " -> ") + n;
    throw Error(ErrorKind::InvalidInput, "segments." + cycle->front() + ".rule",
                "must not refer to itself through other segments: " + path);
  }
  for (const std::string& name : segments::segment_order(graph)) {
    const segments::Rule& r = rules.at(name);
    Segment seg{ids.at(name), name, r, {}};
    for (const segments::EventCondition& c : r.event_conditions()) {
      computed::Definition d = computed::Definition::counter(c);
      auto [it, fresh] = by_key.emplace(d.key, aggregates_.size());
      if (fresh) {
        std::string key = short_key(d.key);
        aggregates_.push_back({std::move(d), std::move(key), ""});
      }
      seg.counters.push_back(it->second);
      counters_.emplace(c.key, it->second);
    }
    for (const std::string& c : r.computed_referenced())
      if (!std::any_of(computed.begin(), computed.end(), [&](auto& x) { return x.name == c; }))
        throw Error(ErrorKind::InvalidInput, "segments." + name + ".rule",
                    "refers to computed trait \"" + c + "\", which does not exist");
    accounts_ |= r.uses_accounts();
    relative_ |= r.uses_relative_dates();
    segments_.push_back(std::move(seg));
  }
}

bool Audience::wants(MessageType type, std::string_view name) const {
  for (const Aggregate& a : aggregates_) {
    const computed::Definition& d = a.definition;
    if ((!d.type || *d.type == type) && (!d.event || *d.event == name)) return true;
  }
  return false;
}

Audience::ProfileState Audience::read(std::string_view json) const {
  ProfileState p = fresh();
  if (json.empty()) return p;
  rapidjson::Document doc;
  if (parse_json(doc, json).IsError() || !doc.IsObject())
    throw Error(ErrorKind::InvalidInput, "state", "is not a JSON object");
  for (size_t i = 0; i < aggregates_.size(); i++) {
    auto it = doc.FindMember(aggregates_[i].key.c_str());
    if (it != doc.MemberEnd()) p.states[i] = computed::read_state(aggregates_[i].definition, it->value);
  }
  return p;
}

std::string Audience::write(const ProfileState& p) const {
  std::string out = "{", one;
  for (size_t i = 0; i < aggregates_.size(); i++) {
    if (p.states[i].empty()) continue;
    computed::write_state(aggregates_[i].definition, p.states[i], one);
    if (out.size() > 1) out += ',';
    out += '"';
    out += aggregates_[i].key;
    out += "\":";
    out += one;
  }
  return out + "}";
}

void Audience::fold(ProfileState& p, const computed::EventInput& e) const {
  for (size_t i = 0; i < aggregates_.size(); i++)
    if (aggregates_[i].definition.matches(e)) computed::fold(aggregates_[i].definition, p.states[i], e);
}

void Audience::fold(ProfileState& p, size_t aggregate, const computed::EventInput& e) const {
  if (aggregates_[aggregate].definition.matches(e))
    computed::fold(aggregates_[aggregate].definition, p.states[aggregate], e);
}

void Audience::merge(ProfileState& p, const ProfileState& other) const {
  for (size_t i = 0; i < aggregates_.size(); i++)
    computed::merge(aggregates_[i].definition, p.states[i], other.states[i]);
}

Audience::Outcome Audience::evaluate(ProfileState& p, const Value* traits, const std::vector<AccountData>& accounts,
                                     Micros now) const {
  Outcome out;
  for (size_t i = 0; i < aggregates_.size(); i++) {
    const computed::Definition& d = aggregates_[i].definition;
    computed::expire(d, p.states[i], now);
    if (auto t = computed::next_expiry(d, p.states[i]); t && (!out.next_expiry || *t < *out.next_expiry))
      out.next_expiry = t;
  }
  out.computed.assign(1, '{');  // (= "{" trips GCC 12's -Wrestrict false positive)
  for (size_t i : computed_) {
    if (out.computed.size() > 1) out.computed += ',';
    out.computed += to_json(Value(rapidjson::StringRef(aggregates_[i].computed.c_str())));
    out.computed += ':';
    out.computed += computed::value(aggregates_[i].definition, p.states[i], now);
  }
  out.computed += '}';
  if (segments_.empty()) return out;
  rapidjson::Document values;
  parse_json(values, out.computed);  // full precision: the numbers just written
  std::map<std::string, bool, std::less<>> members;
  View view(*this, counters_, p, traits, &values, accounts, members);
  for (const Segment& s : segments_) {
    bool in = s.rule.evaluate(view, now);
    members[s.name] = in;
    out.members.push_back(in);
  }
  return out;
}

bool Audience::evaluate(const segments::Rule& rule, ProfileState& p, const Value* traits,
                        const std::vector<AccountData>& accounts, Micros now) const {
  Outcome o = evaluate(p, traits, accounts, now);
  rapidjson::Document values;
  parse_json(values, o.computed);
  std::map<std::string, bool, std::less<>> members;
  for (size_t i = 0; i < segments_.size(); i++) members[segments_[i].name] = o.members[i];
  View view(*this, counters_, p, traits, &values, accounts, members);
  return rule.evaluate(view, now);
}

}  // namespace cdp
