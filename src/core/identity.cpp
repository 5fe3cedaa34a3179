#include "core/identity.hpp"

#include <algorithm>
#include <cctype>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::optional<std::string> normalise_email(std::string_view raw) {
  std::string v = lower(trim(raw));
  size_t at = v.find('@');
  if (at == 0 || at == std::string::npos || at + 1 >= v.size() || v.find('@', at + 1) != std::string::npos)
    return std::nullopt;
  return v;
}

std::optional<std::string> normalise_phone(std::string_view raw, const std::string& country) {
  raw = trim(raw);
  bool international = !raw.empty() && raw.front() == '+';
  std::string digits;
  for (char c : raw)
    if (c >= '0' && c <= '9') digits += c;
  if (!international && digits.rfind("00", 0) == 0) {
    digits.erase(0, 2);
    international = true;
  }
  if (!international && !country.empty() && digits.size() <= 10) digits = country + digits;
  if (digits.size() < 7 || digits.size() > 15) return std::nullopt;
  return digits;
}

// A value at a dotted path of a JSON object text ("traits.email" -> traits' email).
struct JsonFields {
  rapidjson::Document traits, context, properties;
  bool parsed = false;
  void parse(const EventFacts& e) {
    if (parsed) return;
    parsed = true;
    if (!e.traits.empty()) traits.Parse<kParseFlags>(e.traits.data(), e.traits.size());
    if (!e.context.empty()) context.Parse<kParseFlags>(e.context.data(), e.context.size());
    if (!e.properties.empty()) properties.Parse<kParseFlags>(e.properties.data(), e.properties.size());
  }
};

std::optional<std::string> path_value(const EventFacts& e, JsonFields& json, std::string_view path) {
  if (path == "userId" || path == "user_id") return e.user_id;
  if (path == "anonymousId" || path == "anonymous_id") return e.anonymous_id;
  if (path == "groupId" || path == "group_id") return e.group_id;
  size_t dot = path.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  std::string_view root = path.substr(0, dot);
  json.parse(e);
  const rapidjson::Value* v = root == "traits"       ? &json.traits
                              : root == "context"    ? &json.context
                              : root == "properties" ? &json.properties
                                                     : nullptr;
  path.remove_prefix(dot + 1);
  while (v && v->IsObject() && !path.empty()) {
    size_t next = path.find('.');
    std::string_view key = path.substr(0, next);
    auto it = v->FindMember(rapidjson::Value(rapidjson::StringRef(key.data(), key.size())));
    v = it == v->MemberEnd() ? nullptr : &it->value;
    path = next == std::string_view::npos ? std::string_view() : path.substr(next + 1);
  }
  if (!v || !path.empty()) return std::nullopt;
  if (v->IsString()) return std::string(v->GetString(), v->GetStringLength());
  if (v->IsNumber()) return to_json(*v);
  return std::nullopt;
}

}  // namespace

std::optional<Normalise> parse_normalise(std::string_view name) {
  if (name == "none") return Normalise::None;
  if (name == "lower") return Normalise::Lower;
  if (name == "email") return Normalise::Email;
  if (name == "phone") return Normalise::Phone;
  return std::nullopt;
}

IdentityRules::IdentityRules(std::vector<IdentifierType> types, GuardRails rails)
    : types_(std::move(types)), rails_(rails) {
  std::stable_sort(types_.begin(), types_.end(),
                   [](auto& a, auto& b) { return a.priority < b.priority; });
  for (auto& t : types_) {
    patterns_.emplace_back();
    for (auto& p : t.blocked_patterns) {
      try {
        patterns_.back().emplace_back(p, std::regex::ECMAScript | std::regex::icase | std::regex::optimize);
      } catch (const std::regex_error& e) {
        throw Error(ErrorKind::InvalidInput, "blocked_patterns",
                    "\"" + p + "\" of identifier type " + t.name + " is not a valid regular expression");
      }
    }
    for (auto& v : t.blocked_values) v = lower(v);
  }
}

int IdentityRules::find(std::string_view name) const {
  for (size_t i = 0; i < types_.size(); i++)
    if (types_[i].name == name) return static_cast<int>(i);
  return -1;
}

std::optional<std::string> IdentityRules::normalise(int type, std::string_view raw) const {
  const IdentifierType& t = types_[type];
  std::optional<std::string> v;
  switch (t.normalise) {
    case Normalise::None: v = std::string(raw); break;
    case Normalise::Lower: v = lower(trim(raw)); break;
    case Normalise::Email: v = normalise_email(raw); break;
    case Normalise::Phone: v = normalise_phone(raw, t.default_country_code); break;
  }
  if (!v || is_blank(*v) || v->size() > kMaxIdentifierBytes) return std::nullopt;
  std::string folded = lower(*v);
  for (auto& b : t.blocked_values)
    if (b == folded) return std::nullopt;
  for (auto& re : patterns_[type])
    if (std::regex_match(*v, re)) return std::nullopt;
  return v;
}

std::vector<Identifier> IdentityRules::extract(const EventFacts& e) const {
  std::vector<Identifier> out;
  JsonFields json;
  for (size_t t = 0; t < types_.size(); t++)
    for (auto& path : types_[t].paths) {
      auto raw = path_value(e, json, path);
      if (!raw || raw->empty()) continue;
      auto v = normalise(static_cast<int>(t), *raw);
      if (!v) continue;
      Identifier id{static_cast<int>(t), std::move(*v)};
      if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(std::move(id));
    }
  return out;  // types_ is sorted by priority, so out is too
}

std::string IdentityRules::to_json(const std::vector<Identifier>& ids) const {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartArray();
  for (auto& id : ids) {
    w.StartObject();
    w.Key("type");
    w.String(types_[id.type].name.c_str());
    w.Key("value");
    w.String(id.value.data(), static_cast<rapidjson::SizeType>(id.value.size()));
    w.EndObject();
  }
  w.EndArray();
  return std::string(buf.GetString(), buf.GetSize());
}

std::vector<IdentifierType> IdentityRules::defaults() {
  std::vector<std::string> blocked = {"null", "undefined", "unknown", "none", "nan", "anonymous",
                                      "guest", "-1", "test@test.com", "n/a", "0"};
  std::vector<std::string> patterns = {"^[0\\-]+$"};
  std::vector<IdentifierType> t(4);
  t[0] = {"user_id", {"userId"}, Normalise::None, 1, 0, 1, blocked, patterns, ""};
  t[1] = {"email", {"traits.email", "context.traits.email"}, Normalise::Email, 5, 0, 2, blocked, patterns, ""};
  t[2] = {"phone", {"traits.phone", "context.traits.phone"}, Normalise::Phone, 5, 0, 3, blocked, patterns, "1"};
  t[3] = {"anonymous_id", {"anonymousId"}, Normalise::None, 0, 0, 100, blocked, patterns, ""};
  return t;
}

// ---------------------------------------------------------------------------

std::size_t Resolver::Key::operator()(const std::pair<int, std::string>& k) const noexcept {
  return std::hash<std::string>()(k.second) * 31 + static_cast<std::size_t>(k.first);
}

Resolver::Resolver(const IdentityRules& rules, NewProfileId new_profile_id)
    : rules_(rules), new_profile_id_(std::move(new_profile_id)) {}

uint32_t Resolver::node_of(int64_t profile) {
  auto [it, fresh] = node_of_profile_.try_emplace(profile, static_cast<uint32_t>(nodes_.size()));
  if (fresh) nodes_.push_back(Node{profile, it->second, 1});
  return it->second;
}

uint32_t Resolver::find(uint32_t n) {
  uint32_t root = n;
  while (nodes_[root].parent != root) root = nodes_[root].parent;
  while (nodes_[n].parent != root) {  // path compression
    uint32_t next = nodes_[n].parent;
    nodes_[n].parent = root;
    n = next;
  }
  return root;
}

int64_t Resolver::canonical(int64_t profile) {
  auto it = node_of_profile_.find(profile);
  return it == node_of_profile_.end() ? profile : nodes_[find(it->second)].canonical;
}

std::optional<int64_t> Resolver::lookup(const Identifier& id) {
  auto it = identities_.find({id.type, id.value});
  if (it == identities_.end()) return std::nullopt;
  return nodes_[find(it->second.node)].canonical;
}

void Resolver::add_profile(int64_t profile, int merges, int identifiers, bool flagged) {
  Node& n = nodes_[find(node_of(profile))];
  n.merges = merges;
  n.identifiers = identifiers;
  n.flagged = flagged;
}

void Resolver::add_identity(const Identifier& id, int64_t profile, Micros first_seen) {
  uint32_t root = find(node_of(profile));
  if (!identities_.try_emplace({id.type, id.value}, Seen{root, first_seen}).second) return;
  if (rules_.types()[id.type].limit > 0)
    limited_[uint64_t(root) << 16 | uint64_t(id.type)].push_back(first_seen);
}

int Resolver::count_in_window(uint32_t root, int type, Micros now) {
  auto it = limited_.find(uint64_t(root) << 16 | uint64_t(type));
  if (it == limited_.end()) return 0;
  Micros window = rules_.types()[type].window;
  if (window == 0) return static_cast<int>(it->second.size());
  return static_cast<int>(std::count_if(it->second.begin(), it->second.end(),
                                        [&](Micros t) { return t >= now - window; }));
}

std::optional<std::string> Resolver::merge_blocker(uint32_t a, uint32_t b, Micros now) {
  const auto& types = rules_.types();
  for (size_t t = 0; t < types.size(); t++) {
    if (types[t].limit <= 0) continue;
    int type = static_cast<int>(t);
    if (count_in_window(a, type, now) + count_in_window(b, type, now) > types[t].limit)
      return types[t].name + ": at most " + std::to_string(types[t].limit) + " per profile" +
             (types[t].window ? " in its window" : "");
  }
  const GuardRails& g = rules_.rails();
  if (nodes_[a].flagged || nodes_[b].flagged) return "profile is flagged for review";
  if (static_cast<int>(nodes_[a].merges + nodes_[b].merges) + 1 > g.max_merges)
    return "profile would pass " + std::to_string(g.max_merges) + " merges";
  if (static_cast<int>(nodes_[a].identifiers + nodes_[b].identifiers) > g.max_identifiers)
    return "profile would pass " + std::to_string(g.max_identifiers) + " identifiers";
  return std::nullopt;
}

uint32_t Resolver::unite(uint32_t into, uint32_t from) {
  int64_t survivor = nodes_[into].canonical;
  uint32_t big = nodes_[into].size >= nodes_[from].size ? into : from;  // union by size
  uint32_t small = big == into ? from : into;
  nodes_[small].parent = big;
  nodes_[big].size += nodes_[small].size;
  nodes_[big].merges = nodes_[into].merges + nodes_[from].merges + 1;
  nodes_[big].identifiers = nodes_[into].identifiers + nodes_[from].identifiers;
  nodes_[big].flagged = nodes_[into].flagged || nodes_[from].flagged;
  nodes_[big].canonical = survivor;
  for (size_t t = 0; t < rules_.types().size(); t++) {
    auto it = limited_.find(uint64_t(small) << 16 | t);
    if (it == limited_.end()) continue;
    auto& dst = limited_[uint64_t(big) << 16 | t];
    dst.insert(dst.end(), it->second.begin(), it->second.end());
    limited_.erase(uint64_t(small) << 16 | t);
  }
  return big;
}

Decision Resolver::resolve(const EventFacts& e) { return resolve(e, rules_.extract(e)); }

Decision Resolver::resolve(const EventFacts& e, std::vector<Identifier> ids) {
  Decision d;
  d.event_id = e.id;
  // alias: previousId names an identifier the person had before; it is the
  // user_id or anonymous_id already known by that value, else an anonymous_id.
  if (e.type == MessageType::Alias && !e.previous_id.empty()) {
    std::optional<Identifier> prev;
    for (const char* name : {"user_id", "anonymous_id"}) {
      int t = rules_.find(name);
      if (t < 0) continue;
      auto v = rules_.normalise(t, e.previous_id);
      if (!v) continue;
      Identifier cand{t, *v};
      if (identities_.count({t, *v})) {
        prev = cand;
        break;
      }
      prev = cand;  // known as neither: the last candidate, the anonymous_id, stands
    }
    if (prev && std::find(ids.begin(), ids.end(), *prev) == ids.end()) ids.push_back(*prev);
  }
  if (ids.empty()) return d;  // every identifier was blocked: the event binds to no one

  // The event stays with the profile of its strongest identifier. When that
  // one is new, it joins the profile of the strongest known identifier only if
  // every new identifier stronger than it fits there; else a new profile.
  std::optional<uint32_t> primary;
  size_t first_known = 0;
  for (; first_known < ids.size(); first_known++)
    if (auto it = identities_.find({ids[first_known].type, ids[first_known].value}); it != identities_.end()) {
      primary = find(it->second.node);
      break;
    }
  if (primary && first_known > 0) {
    std::vector<int> adding(rules_.types().size(), 0);
    for (size_t j = 0; j < first_known && primary; j++) {
      const IdentifierType& t = rules_.types()[ids[j].type];
      if (t.limit > 0 && count_in_window(*primary, ids[j].type, e.timestamp) + ++adding[ids[j].type] > t.limit)
        primary.reset();
    }
  }
  if (!primary) {
    primary = find(node_of(new_profile_id_()));
    d.new_profile = true;
  }
  uint32_t root = *primary;
  bool refused = false;
  const auto& types = rules_.types();
  for (auto& id : ids) {
    auto it = identities_.find({id.type, id.value});
    if (it != identities_.end()) {
      uint32_t other = find(it->second.node);
      if (other == root) continue;
      auto blocker = refused ? std::optional<std::string>("an earlier merge of this event was refused")
                             : merge_blocker(root, other, e.timestamp);
      if (blocker) {
        d.refusals.push_back({nodes_[root].canonical, nodes_[other].canonical, id, *blocker});
        if (blocker->rfind("profile would pass", 0) == 0) nodes_[root].flagged = d.flagged = true;
        refused = true;
        continue;
      }
      d.merges.push_back({nodes_[other].canonical, nodes_[root].canonical});
      root = unite(root, other);
      continue;
    }
    if (refused) {
      d.refusals.push_back({nodes_[root].canonical, 0, id, "not attached: this event's merge was refused"});
      continue;
    }
    const IdentifierType& t = types[id.type];
    if (t.limit > 0 && count_in_window(root, id.type, e.timestamp) + 1 > t.limit) {
      d.refusals.push_back({nodes_[root].canonical, 0, id,
                            t.name + ": at most " + std::to_string(t.limit) + " per profile" +
                                (t.window ? " in its window" : "")});
      continue;
    }
    if (static_cast<int>(nodes_[root].identifiers) + 1 > rules_.rails().max_identifiers) {
      d.refusals.push_back({nodes_[root].canonical, 0, id,
                            "profile would pass " + std::to_string(rules_.rails().max_identifiers) +
                                " identifiers"});
      nodes_[root].flagged = d.flagged = true;
      continue;
    }
    identities_.emplace(std::pair{id.type, id.value}, Seen{root, e.timestamp});
    nodes_[root].identifiers++;
    if (t.limit > 0) limited_[uint64_t(root) << 16 | uint64_t(id.type)].push_back(e.timestamp);
    d.attached.push_back(id);
  }
  d.profile = nodes_[root].canonical;
  d.flagged = d.flagged || nodes_[root].flagged;
  return d;
}

void Resolver::for_each_identity(const std::function<void(const Identifier&, int64_t, Micros)>& f) {
  for (auto& [key, seen] : identities_)
    f(Identifier{key.first, key.second}, nodes_[find(seen.node)].canonical, seen.first_seen);
}

size_t Resolver::memory_bytes() const {
  size_t bytes = nodes_.capacity() * sizeof(Node) +
                 node_of_profile_.size() * (sizeof(int64_t) + sizeof(uint32_t) + 2 * sizeof(void*));
  for (auto& [key, seen] : identities_)
    bytes += sizeof(key) + sizeof(seen) + 2 * sizeof(void*) +
             (key.second.capacity() > 15 ? key.second.capacity() + 1 : 0);
  return bytes + identities_.bucket_count() * sizeof(void*);
}

}  // namespace cdp
