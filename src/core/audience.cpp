#include "core/audience.hpp"

#include <algorithm>
#include <map>
#include <cstring>
#include <set>

#include "core/computed_state.hpp"
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

constexpr char kMagic = static_cast<char>(0xCD);  // never the '{' of the JSON form
constexpr char kVersion = 1;

// The profile as the rule language sees it, for one evaluation.
class View : public segments::ProfileView {
 public:
  View(const Audience& a, const std::map<std::string, size_t, std::less<>>& counters,
       const std::map<std::string, size_t, std::less<>>& segment_index, const Audience::ProfileState& p,
       const Value* traits, const Value* computed, const std::vector<AccountData>& accounts,
       const std::vector<char>& members)
      : a_(a), counters_(counters), segment_index_(segment_index), p_(p), traits_(traits), computed_(computed),
        accounts_(accounts), members_(members) {}

  const Value* trait(std::string_view name) const override { return segments::find_path(traits_, name); }
  const Value* computed(std::string_view name) const override {
    if (!computed_) return nullptr;
    auto it = computed_->FindMember(Value(rapidjson::StringRef(name.data(), name.size())));
    return it == computed_->MemberEnd() ? nullptr : &it->value;
  }
  int64_t event_count(const segments::EventCondition& c, Micros now) const override {
    auto it = counters_.find(c.key);
    if (it == counters_.end()) return 0;  // not kept: the caller built no counter for it
    const computed::Definition& d = a_.aggregates()[it->second].definition;
    std::string_view stored = p_.stored[it->second];
    return stored.empty() ? computed::count(d, p_.states[it->second], now)
                          : computed::count(d, computed::StateView{stored}, now);
  }
  bool in_segment(std::string_view segment) const override {
    auto it = segment_index_.find(segment);
    return it != segment_index_.end() && it->second < members_.size() && members_[it->second];
  }
  size_t account_count() const override { return accounts_.size(); }
  std::string_view account_id(size_t i) const override { return accounts_[i].id; }
  const Value* account_trait(size_t i, std::string_view name) const override {
    return segments::find_path(&accounts_[i].traits, name);
  }

 private:
  const Audience& a_;
  const std::map<std::string, size_t, std::less<>>& counters_;
  const std::map<std::string, size_t, std::less<>>& segment_index_;
  const Audience::ProfileState& p_;
  const Value* traits_;
  const Value* computed_;
  const std::vector<AccountData>& accounts_;
  const std::vector<char>& members_;  // by segment index, filled in evaluation order
};

// Aggregate i's value at `now`, from the bytes or the decoded state.
std::string value_of(const computed::Definition& d, const Audience::ProfileState& p, size_t i, Micros now) {
  return p.stored[i].empty() ? computed::value(d, p.states[i], now)
                             : computed::value(d, computed::StateView{p.stored[i]}, now);
}

}  // namespace

uint64_t key_hash(std::string_view text) {
  uint64_t h = 14695981039346656037ULL;  // the FNV-1a 64-bit offset basis
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string short_key(std::string_view text) {
  uint64_t h = key_hash(text);
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
    segment_index_.emplace(name, segments_.size());
    segments_.push_back(std::move(seg));
  }
  std::set<std::string> keys, read;
  for (const Segment& seg : segments_) {
    for (const std::string& t : seg.rule.traits_referenced()) {
      keys.insert(t);
      if (size_t dot = t.find('.'); dot != std::string::npos) keys.insert(t.substr(0, dot));
    }
    for (const std::string& c : seg.rule.computed_referenced()) read.insert(c);
  }
  trait_keys_.assign(keys.begin(), keys.end());
  for (size_t i : computed_)
    if (read.count(aggregates_[i].computed)) computed_read_.emplace_back(aggregates_[i].computed, i);
  for (const Aggregate& agg : aggregates_) hashes_.push_back(key_hash(agg.definition.key));
}

bool Audience::wants(MessageType type, std::string_view name) const {
  for (const Aggregate& a : aggregates_) {
    const computed::Definition& d = a.definition;
    if ((!d.type || *d.type == type) && (!d.event || *d.event == name)) return true;
  }
  return false;
}

Audience::ProfileState Audience::fresh() const {
  ProfileState p;
  p.states.resize(aggregates_.size());
  p.stored.resize(aggregates_.size());
  return p;
}

Audience::ProfileState Audience::read(std::string_view stored) const {
  ProfileState p = fresh();
  if (stored.empty()) return p;
  if (stored[0] == kMagic) {
    if (stored.size() < 2 || stored[1] != kVersion)
      throw Error(ErrorKind::InvalidInput, "state", "is a binary state of another version");
    size_t at = 2, hint = 0;
    while (at < stored.size()) {
      if (stored.size() - at < 8) throw Error(ErrorKind::InvalidInput, "state", "ends inside a key");
      uint64_t h;
      std::memcpy(&h, stored.data() + at, 8);
      at += 8;
      uint64_t n = computed::get_varint(stored, at);
      if (n > stored.size() - at) throw Error(ErrorKind::InvalidInput, "state", "ends inside an aggregate");
      // Written in aggregate order: the next one is the likely match.
      size_t i = hint < hashes_.size() && hashes_[hint] == h ? hint
                 : static_cast<size_t>(std::find(hashes_.begin(), hashes_.end(), h) - hashes_.begin());
      if (i < hashes_.size() && n > 0) {
        p.stored[i] = stored.substr(at, n);
        hint = i + 1;
      }
      at += n;
    }
    return p;
  }
  rapidjson::Document doc;
  if (parse_json(doc, stored).IsError() || !doc.IsObject())
    throw Error(ErrorKind::InvalidInput, "state", "is not a JSON object");
  for (size_t i = 0; i < aggregates_.size(); i++) {
    auto it = doc.FindMember(aggregates_[i].key.c_str());
    if (it != doc.MemberEnd()) p.states[i] = computed::read_state(aggregates_[i].definition, it->value);
  }
  p.changed = true;  // the JSON form of 0.1.0: written back in binary
  return p;
}

std::string Audience::write(const ProfileState& p) const {
  std::string out;
  out += kMagic;
  out += kVersion;
  std::string one;
  for (size_t i = 0; i < aggregates_.size(); i++) {
    std::string_view bytes = p.stored[i];
    if (bytes.empty()) {
      if (p.states[i].empty()) continue;
      one.clear();
      computed::encode_state(aggregates_[i].definition, p.states[i], one);
      bytes = one;
    }
    char h[8];
    std::memcpy(h, &hashes_[i], 8);
    out.append(h, 8);
    computed::put_varint(out, bytes.size());
    out.append(bytes);
  }
  return out;
}

std::string Audience::write_json(const ProfileState& p) const {
  std::string out = "{", one;
  for (size_t i = 0; i < aggregates_.size(); i++) {
    computed::State decoded;
    const computed::State* s = &p.states[i];
    if (!p.stored[i].empty()) s = &(decoded = computed::decode_state(aggregates_[i].definition, p.stored[i]));
    if (s->empty()) continue;
    computed::write_state(aggregates_[i].definition, *s, one);
    if (out.size() > 1) out += ',';
    out += '"';
    out += aggregates_[i].key;
    out += "\":";
    out += one;
  }
  return out + "}";
}

computed::State& Audience::edit(ProfileState& p, size_t i) const {
  if (!p.stored[i].empty()) {
    p.states[i] = computed::decode_state(aggregates_[i].definition, p.stored[i]);
    p.stored[i] = {};
  }
  p.changed = true;
  return p.states[i];
}

void Audience::replace(ProfileState& p, size_t i, computed::State s) const {
  p.stored[i] = {};
  p.states[i] = std::move(s);
  p.changed = true;
}

void Audience::fold(ProfileState& p, const computed::EventInput& e) const {
  for (size_t i = 0; i < aggregates_.size(); i++)
    if (aggregates_[i].definition.matches(e)) computed::fold(aggregates_[i].definition, edit(p, i), e);
}

void Audience::fold(ProfileState& p, size_t aggregate, const computed::EventInput& e) const {
  if (aggregates_[aggregate].definition.matches(e))
    computed::fold(aggregates_[aggregate].definition, edit(p, aggregate), e);
}

void Audience::merge(ProfileState& p, const ProfileState& other) const {
  for (size_t i = 0; i < aggregates_.size(); i++) {
    const computed::Definition& d = aggregates_[i].definition;
    if (!other.stored[i].empty()) computed::merge(d, edit(p, i), computed::decode_state(d, other.stored[i]));
    else if (!other.states[i].empty()) computed::merge(d, edit(p, i), other.states[i]);
  }
}

std::string Audience::computed_json(const ProfileState& p, Micros now) const {
  std::string out(1, '{');  // (= "{" trips GCC 12's -Wrestrict false positive)
  for (size_t i : computed_) {
    if (out.size() > 1) out += ',';
    out += to_json(Value(rapidjson::StringRef(aggregates_[i].computed.c_str())));
    out += ':';
    out += value_of(aggregates_[i].definition, p, i, now);
  }
  return out + '}';
}

Audience::Outcome Audience::evaluate(ProfileState& p, const Value* traits, const std::vector<AccountData>& accounts,
                                     Micros now, bool computed_text) const {
  Outcome out;
  for (size_t i = 0; i < aggregates_.size(); i++) {
    const computed::Definition& d = aggregates_[i].definition;
    if (!p.stored[i].empty() && computed::any_expired(d, computed::StateView{p.stored[i]}, now)) edit(p, i);
    std::optional<Micros> t;
    if (p.stored[i].empty()) {
      size_t before = p.states[i].buckets.size();
      computed::expire(d, p.states[i], now);
      if (p.states[i].buckets.size() != before) p.changed = true;
      t = computed::next_expiry(d, p.states[i]);
    } else {
      t = computed::next_expiry(d, computed::StateView{p.stored[i]});
    }
    if (t && (!out.next_expiry || *t < *out.next_expiry)) out.next_expiry = t;
  }
  if (computed_text) out.computed = computed_json(p, now);
  if (segments_.empty()) return out;
  // Only the computed traits some rule reads, as values (numbers built directly).
  std::optional<rapidjson::Document> values;
  if (!computed_read_.empty()) values.emplace().SetObject();
  for (auto& [name, i] : computed_read_) {
    const computed::Definition& d = aggregates_[i].definition;
    Value v;
    std::optional<computed::Number> n =
        p.stored[i].empty() ? std::nullopt : computed::number_value(d, computed::StateView{p.stored[i]}, now);
    if (n && n->integral) v.SetInt64(n->integer);
    else if (n) v.SetDouble(n->real);
    else {
      rapidjson::Document one(&values->GetAllocator());
      parse_json(one, value_of(d, p, i, now));  // full precision: the text just written
      v.CopyFrom(one, values->GetAllocator());
    }
    values->AddMember(Value(rapidjson::StringRef(name.c_str())), v, values->GetAllocator());
  }
  std::vector<char> members(segments_.size(), 0);
  View view(*this, counters_, segment_index_, p, traits, values ? &*values : nullptr, accounts, members);
  out.members.resize(segments_.size());
  for (size_t s = 0; s < segments_.size(); s++) {
    bool in = segments_[s].rule.evaluate(view, now);
    members[s] = in;
    out.members[s] = in;
  }
  return out;
}

bool Audience::evaluate(const segments::Rule& rule, ProfileState& p, const Value* traits,
                        const std::vector<AccountData>& accounts, Micros now) const {
  Outcome o = evaluate(p, traits, accounts, now);
  rapidjson::Document values;
  parse_json(values, o.computed);
  std::vector<char> members(o.members.begin(), o.members.end());
  View view(*this, counters_, segment_index_, p, traits, &values, accounts, members);
  return rule.evaluate(view, now);
}

}  // namespace cdp
