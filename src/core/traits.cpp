#include "core/traits.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/json_util.hpp"

namespace cdp {
namespace {

using Writer = JsonWriter;

// (ts, messageId) orders writes the same way whatever order they arrive in.
bool newer(const TraitValue& a, const TraitValue& b) {
  return a.ts != b.ts ? a.ts > b.ts : a.message_id > b.message_id;
}

// Numbers compare as numbers, strings as strings; -1, 0, 1, or nullopt if not comparable.
std::optional<int> compare_values(const std::string& a, const std::string& b) {
  rapidjson::Document x, y;
  x.Parse(a.data(), a.size());
  y.Parse(b.data(), b.size());
  if (x.HasParseError() || y.HasParseError()) return std::nullopt;
  if (x.IsNumber() && y.IsNumber()) {
    double p = x.GetDouble(), q = y.GetDouble();
    return p < q ? -1 : p > q ? 1 : 0;
  }
  if (x.IsString() && y.IsString()) {
    int c = std::string_view(x.GetString(), x.GetStringLength())
                .compare(std::string_view(y.GetString(), y.GetStringLength()));
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  return std::nullopt;
}

// For max/min, values of kinds that do not compare with each other: numbers
// beat strings, strings beat the rest (objects, arrays, booleans, null), so
// that the winner does not depend on the order the values arrive in.
int kind_rank(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.data(), json.size());
  return d.HasParseError() ? 0 : d.IsNumber() ? 2 : d.IsString() ? 1 : 0;
}

int rank(const std::vector<int>& priority, int source) {
  auto it = std::find(priority.begin(), priority.end(), source);
  return it == priority.end() ? static_cast<int>(priority.size()) : static_cast<int>(it - priority.begin());
}

// Whether `candidate` should replace `current` under `strategy`.
bool wins(const TraitValue& candidate, const TraitValue& current, const TraitRule* rule) {
  TraitStrategy s = rule ? rule->strategy : TraitStrategy::Last;
  switch (s) {
    case TraitStrategy::Last: return newer(candidate, current);
    case TraitStrategy::First: return newer(current, candidate);
    case TraitStrategy::Max:
    case TraitStrategy::Min: {
      auto c = compare_values(candidate.json, current.json);
      if (!c) {
        int a = kind_rank(candidate.json), b = kind_rank(current.json);
        return a != b ? a > b : newer(candidate, current);
      }
      if (*c == 0) return newer(candidate, current);
      return s == TraitStrategy::Max ? *c > 0 : *c < 0;
    }
    case TraitStrategy::SourcePriority: {
      int a = rank(rule->source_priority, candidate.source), b = rank(rule->source_priority, current.source);
      return a != b ? a < b : newer(candidate, current);
    }
  }
  return false;
}

const rapidjson::Value* at_path(const rapidjson::Value& root, std::string_view path) {
  const rapidjson::Value* v = &root;
  while (v && v->IsObject() && !path.empty()) {
    size_t dot = path.find('.');
    std::string_view key = path.substr(0, dot);
    auto it = v->FindMember(rapidjson::Value(rapidjson::StringRef(key.data(), key.size())));
    v = it == v->MemberEnd() ? nullptr : &it->value;
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
  }
  return path.empty() ? v : nullptr;
}

}  // namespace

std::optional<TraitStrategy> parse_trait_strategy(std::string_view name) {
  if (name == "last") return TraitStrategy::Last;
  if (name == "first") return TraitStrategy::First;
  if (name == "max") return TraitStrategy::Max;
  if (name == "min") return TraitStrategy::Min;
  if (name == "source_priority") return TraitStrategy::SourcePriority;
  return std::nullopt;
}

std::string TraitSet::traits_json() const {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  for (auto& [name, v] : fields) {
    w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
    w.RawValue(v.json.data(), v.json.size(), rapidjson::kObjectType);
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

std::string TraitSet::meta_json() const {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  for (auto& [name, v] : fields) {
    w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
    w.StartObject();
    w.Key("at");
    if (v.ts == INT64_MIN) {  // unknown (from_json without meta): stays unknown
      w.Null();
    } else {
      std::string at = format_iso8601(v.ts);
      w.String(at.data(), static_cast<rapidjson::SizeType>(at.size()));
    }
    w.Key("source");
    w.Int(v.source);
    w.Key("messageId");
    w.String(v.message_id.data(), static_cast<rapidjson::SizeType>(v.message_id.size()));
    w.EndObject();
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

TraitSet TraitSet::from_json(std::string_view traits, std::string_view meta) {
  TraitSet set;
  rapidjson::Document t, m;
  if (traits.empty() || parse_json(t, traits, Numbers::Exact).IsError() || !t.IsObject()) return set;
  if (!meta.empty()) parse_json(m, meta);
  // Meta by key through a hash index: FindMember is a linear scan, and a
  // profile with n keys would cost n^2 (500k keys: minutes).
  std::unordered_map<std::string_view, const rapidjson::Value*> meta_of;
  if (m.IsObject()) {
    meta_of.reserve(m.MemberCount());
    for (auto& p : m.GetObject())
      if (p.value.IsObject()) meta_of.emplace(string_of(p.name), &p.value);
  }
  for (auto& f : t.GetObject()) {
    std::string name(f.name.GetString(), f.name.GetStringLength());
    TraitValue v;
    v.json = to_json(f.value);
    v.ts = INT64_MIN;
    if (auto it = meta_of.find(name); it != meta_of.end()) {
      const rapidjson::Value& p = *it->second;
      const rapidjson::Value* at = member_of(p, "at");
      const rapidjson::Value* source = member_of(p, "source");
      const rapidjson::Value* id = member_of(p, "messageId");
      if (at && at->IsString()) v.ts = parse_iso8601(string_of(*at)).value_or(INT64_MIN);
      if (source && source->IsInt()) v.source = source->GetInt();
      if (id && id->IsString()) v.message_id = std::string(string_of(*id));
    }
    set.fields.emplace_hint(set.fields.end(), std::move(name), std::move(v));  // jsonb keys come sorted
  }
  return set;
}

TraitRules::TraitRules(std::vector<TraitRule> rules, size_t max_traits)
    : rules_(std::move(rules)), max_traits_(max_traits) {
  for (size_t i = 0; i < rules_.size(); i++) by_name_.emplace(rules_[i].trait, i);
}

const TraitRule* TraitRules::rule(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &rules_[it->second];
}

bool TraitRules::offer_new(TraitSet& set, std::string name, TraitValue v) const {
  if (set.fields.size() >= max_traits_ && !set.fields.count(name)) {
    set.refused.push_back(std::move(name));
    return false;
  }
  return offer(set, name, std::move(v));
}

bool TraitRules::offer(TraitSet& set, const std::string& name, TraitValue v) const {
  auto it = set.fields.find(name);
  if (it == set.fields.end()) {
    set.fields.emplace(name, std::move(v));
    return true;
  }
  if (!wins(v, it->second, rule(name))) return false;
  bool changed = it->second.json != v.json;
  it->second = std::move(v);
  return changed;
}

bool TraitRules::fold_event(TraitSet& set, const EventFacts& e, bool group_traits) const {
  bool wants = group_traits ? e.type == MessageType::Group : e.type == MessageType::Identify;
  bool changed = false;
  set.refused.clear();
  TraitValue base{"", e.timestamp, e.source_id, e.message_id};
  if (wants && !e.traits.empty()) {
    rapidjson::Document t;
    if (!parse_json(t, e.traits, Numbers::Exact).IsError() && t.IsObject())
      for (auto& f : t.GetObject()) {
        TraitValue v = base;
        v.json = to_json(f.value);
        changed |= offer_new(set, std::string(f.name.GetString(), f.name.GetStringLength()), std::move(v));
      }
  }
  if (group_traits) return changed;
  for (auto& r : rules_) {  // mapped paths, e.g. properties.plan -> plan
    if (r.from_path.empty()) continue;
    std::string_view path = r.from_path;
    size_t dot = path.find('.');
    std::string_view root = path.substr(0, dot);
    const std::string* text = root == "properties" ? &e.properties : root == "context" ? &e.context
                              : root == "traits"   ? &e.traits     : nullptr;
    if (!text || text->empty() || dot == std::string_view::npos) continue;
    rapidjson::Document d;
    if (parse_json(d, *text, Numbers::Exact).IsError()) continue;
    if (const rapidjson::Value* v = at_path(d, path.substr(dot + 1)); v && !v->IsNull()) {
      TraitValue tv = base;
      tv.json = to_json(*v);
      changed |= offer_new(set, r.trait, std::move(tv));
    }
  }
  return changed;
}

bool TraitRules::fold_set(TraitSet& set, const TraitSet& other) const {
  bool changed = false;
  for (auto& [name, v] : other.fields) changed |= offer(set, name, v);
  return changed;
}

}  // namespace cdp
