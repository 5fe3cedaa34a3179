#include "core/identity.hpp"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstring>

#include <rapidjson/document.h>
#include <re2/re2.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp {
namespace {

// Memory one compiled pattern may use (RE2's budget for its automata).
constexpr int64_t kMaxPatternMemory = 1 << 20;

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
  if (digits.size() < 7) return std::nullopt;  // before any country code is added
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
    // Exact numbers: an identifier that is a big number keeps its digits.
    if (!e.traits.empty()) parse_json(traits, e.traits, Numbers::Exact);
    if (!e.context.empty()) parse_json(context, e.context, Numbers::Exact);
    if (!e.properties.empty()) parse_json(properties, e.properties, Numbers::Exact);
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
  if (is_number(*v)) return to_json(*v);  // a number kept as text comes back as its digits
  if (v->IsString()) return std::string(v->GetString(), v->GetStringLength());
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
      RE2::Options options;
      options.set_case_sensitive(false);
      options.set_log_errors(false);
      options.set_max_mem(kMaxPatternMemory);
      auto re = std::make_shared<const RE2>(p, options);
      if (!re->ok())
        throw Error(ErrorKind::InvalidInput, "blocked_patterns",
                    "\"" + p + "\" of identifier type " + t.name +
                        " is not a valid RE2 regular expression (" + re->error() +
                        "; back-references and look-arounds are not supported)");
      patterns_.back().push_back(std::move(re));
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
    if (RE2::FullMatch(*v, *re)) return std::nullopt;
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

namespace {

constexpr unsigned kChunkBits = 18;  // arena chunks of 256 KiB
constexpr size_t kChunk = size_t{1} << kChunkBits;
constexpr size_t kMaxChunks = (size_t{1} << 32) >> kChunkBits;  // offsets are 32-bit
constexpr size_t kFirstSlots = 16;
constexpr uint32_t kMaxNodes = 0x7FFFFFFF;  // Node::size has 31 bits

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Slot index of a hash in a table of 2^bits slots: its top bits (the tag is
// its low 32 bits, so the two are independent).
size_t home(uint64_t h, size_t capacity) {
  return static_cast<size_t>(h >> (64 - std::countr_zero(capacity)));
}

bool over_load(size_t count, size_t capacity) { return count * 10 > capacity * 7; }

// Grows a vector by half when full, not twice: less slack in large graphs.
template <class V>
void make_room(V& v) {
  if (v.size() == v.capacity()) v.reserve(v.capacity() + v.capacity() / 2 + 16);
}

size_t put_varint(char* p, uint32_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = static_cast<char>(0x80 | (v & 0x7F));
    v >>= 7;
  }
  p[n++] = static_cast<char>(v);
  return n;
}

uint32_t get_varint(const char*& p) {
  uint32_t v = 0;
  for (unsigned shift = 0;; shift += 7) {
    auto b = static_cast<unsigned char>(*p++);
    v |= uint32_t(b & 0x7F) << shift;
    if (b < 0x80) return v;
  }
}

size_t varint_size(uint32_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, n++;
  return n;
}

}  // namespace

Resolver::Resolver(const IdentityRules& rules, NewProfileId new_profile_id)
    : rules_(rules), new_profile_id_(std::move(new_profile_id)) {
  for (auto& t : rules_.types()) {
    limited_type_.push_back(t.limit > 0);
    any_limited_ = any_limited_ || t.limit > 0;
  }
  slots_.assign(kFirstSlots, Slot{kNone, 0});
  profile_slots_.assign(kFirstSlots, kNone);
}

// --- identifiers: arena records indexed by an open-addressing table

uint64_t Resolver::hash(int type, std::string_view value) {
  return mix(std::hash<std::string_view>()(value) ^ (uint64_t(uint32_t(type)) + 1) * 0x9e3779b97f4a7c15ULL);
}

const char* Resolver::record_at(uint32_t offset) const {
  return arena_[offset >> kChunkBits].data() + (offset & (kChunk - 1));
}

Resolver::Record Resolver::decode(const char* p) const {
  const char* start = p;
  Record r;
  std::memcpy(&r.node, p, sizeof r.node);
  p += sizeof r.node;
  r.type = static_cast<int>(get_varint(p));
  uint32_t len = get_varint(p);
  r.limited = kNone;
  if (limited_type_[r.type]) {
    std::memcpy(&r.limited, p, sizeof r.limited);
    p += sizeof r.limited;
  }
  r.value = std::string_view(p, len);
  r.size = static_cast<size_t>(p - start) + len;
  return r;
}

Resolver::Probe Resolver::probe(int type, std::string_view value, uint64_t h) const {
  const size_t mask = slots_.size() - 1;
  const auto tag = static_cast<uint32_t>(h);
  for (size_t i = home(h, slots_.size());; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.offset == kNone) return {i, false};
    if (s.tag != tag) continue;
    // The tag only rejects: a match is confirmed on the value itself.
    const char* p = record_at(s.offset) + sizeof(uint32_t);
    if (get_varint(p) != uint32_t(type) || get_varint(p) != value.size()) continue;
    if (limited_type_[type]) p += sizeof(uint32_t);
    if (std::memcmp(p, value.data(), value.size()) == 0) return {i, true};
  }
}

std::optional<uint32_t> Resolver::node_of_identity(const Identifier& id) const {
  Probe at = probe(id.type, id.value, hash(id.type, id.value));
  if (!at.found) return std::nullopt;
  return decode(record_at(slots_[at.slot].offset)).node;
}

// Appends the identifier's record and fills `slot`, the free one probe() gave.
void Resolver::insert_identity(const Identifier& id, uint32_t node, Micros first_seen, uint64_t h, size_t slot) {
  if (id.value.size() > kChunk / 2)  // never so: values are at most kMaxIdentifierBytes
    throw Error(ErrorKind::TooLarge, "identifier", "a value of " + std::to_string(id.value.size()) +
                                                       " bytes is too long for the identity graph");
  if (over_load(identities_ + 1, slots_.size())) {
    grow_identities();
    slot = probe(id.type, id.value, h).slot;
  }
  const bool limited = limited_type_[id.type];
  const auto type = static_cast<uint32_t>(id.type);
  const auto len = static_cast<uint32_t>(id.value.size());
  const size_t size = sizeof node + varint_size(type) + varint_size(len) + (limited ? sizeof(uint32_t) : 0) + len;
  if (arena_.empty() || arena_.back().size() + size > kChunk) {
    if (arena_.size() == kMaxChunks)
      throw Error(ErrorKind::TooLarge, "identity graph", "more than 4 GiB of identifiers");
    const size_t first = arena_.empty() ? 4096 : kChunk;  // the first chunk grows as needed, the others do not
    make_room(arena_);
    arena_.emplace_back().reserve(first);
  }
  std::vector<char>& chunk = arena_.back();
  if (chunk.size() + size > chunk.capacity())
    chunk.reserve(std::min(kChunk, std::max(2 * chunk.capacity(), chunk.size() + size)));
  const auto offset = static_cast<uint32_t>(((arena_.size() - 1) << kChunkBits) | chunk.size());
  char head[4 + 5 + 5 + 4];
  size_t n = 0;
  std::memcpy(head, &node, sizeof node);
  n += sizeof node;
  n += put_varint(head + n, type);
  n += put_varint(head + n, len);
  if (limited) {
    uint32_t index = static_cast<uint32_t>(limited_.size());
    make_room(limited_);
    limited_.push_back(Limited{first_seen, limited_head_[node], type});
    limited_head_[node] = index;
    std::memcpy(head + n, &index, sizeof index);
    n += sizeof index;
  }
  chunk.insert(chunk.end(), head, head + n);
  chunk.insert(chunk.end(), id.value.begin(), id.value.end());
  slots_[slot] = Slot{offset, static_cast<uint32_t>(h)};
  identities_++;
  text_bytes_ += len;
}

// Doubles the table and places every record again, in arena order.
void Resolver::grow_identities() {
  std::vector<Slot> slots(slots_.size() * 2, Slot{kNone, 0});
  const size_t mask = slots.size() - 1;
  for (size_t c = 0; c < arena_.size(); c++)
    for (size_t pos = 0; pos < arena_[c].size();) {
      Record r = decode(arena_[c].data() + pos);
      uint64_t h = hash(r.type, r.value);
      size_t i = home(h, slots.size());
      while (slots[i].offset != kNone) i = (i + 1) & mask;
      slots[i] = Slot{static_cast<uint32_t>(c << kChunkBits | pos), static_cast<uint32_t>(h)};
      pos += r.size;
    }
  slots_.swap(slots);
}

// --- profiles: nodes indexed by an open-addressing table of node numbers

// The slot holding the profile's node, or the free one it would take.
size_t Resolver::profile_slot(int64_t profile) const {
  const size_t mask = profile_slots_.size() - 1;
  for (size_t i = home(mix(uint64_t(profile)), profile_slots_.size());; i = (i + 1) & mask)
    if (profile_slots_[i] == kNone || nodes_[profile_slots_[i]].profile == profile) return i;
}

void Resolver::grow_profiles() {
  std::vector<uint32_t> slots(profile_slots_.size() * 2, kNone);
  const size_t mask = slots.size() - 1;
  for (uint32_t n = 0; n < nodes_.size(); n++) {
    size_t i = home(mix(uint64_t(nodes_[n].profile)), slots.size());
    while (slots[i] != kNone) i = (i + 1) & mask;
    slots[i] = n;
  }
  profile_slots_.swap(slots);
}

uint32_t Resolver::node_of(int64_t profile) {
  size_t slot = profile_slot(profile);
  if (profile_slots_[slot] != kNone) return profile_slots_[slot];
  if (nodes_.size() >= kMaxNodes) throw Error(ErrorKind::TooLarge, "identity graph", "too many profiles");
  if (over_load(nodes_.size() + 1, profile_slots_.size())) {
    grow_profiles();
    slot = profile_slot(profile);
  }
  const auto n = static_cast<uint32_t>(nodes_.size());
  make_room(nodes_);
  nodes_.push_back(Node{profile, n, 1, false, 0, 0});
  if (any_limited_) {
    make_room(limited_head_);
    limited_head_.push_back(kNone);
  }
  profile_slots_[slot] = n;
  return n;
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
  uint32_t n = profile_slots_[profile_slot(profile)];
  return n == kNone ? profile : nodes_[find(n)].profile;
}

std::optional<int64_t> Resolver::lookup(const Identifier& id) {
  auto n = node_of_identity(id);
  if (!n) return std::nullopt;
  return nodes_[find(*n)].profile;
}

void Resolver::add_profile(int64_t profile, int merges, int identifiers, bool flagged) {
  Node& n = nodes_[find(node_of(profile))];
  n.merges = merges;
  n.identifiers = identifiers;
  n.flagged = flagged;
}

void Resolver::add_identity(const Identifier& id, int64_t profile, Micros first_seen) {
  uint32_t root = find(node_of(profile));
  uint64_t h = hash(id.type, id.value);
  Probe at = probe(id.type, id.value, h);
  if (!at.found) insert_identity(id, root, first_seen, h, at.slot);
}

int Resolver::count_in_window(uint32_t root, int type, Micros now) {
  if (!limited_type_[type]) return 0;
  Micros window = rules_.types()[type].window;
  int n = 0;
  for (uint32_t i = limited_head_[root]; i != kNone; i = limited_[i].next)
    if (limited_[i].type == uint32_t(type) && (window == 0 || limited_[i].first_seen >= now - window)) n++;
  return n;
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
  uint32_t big = nodes_[into].size >= nodes_[from].size ? into : from;  // union by size
  uint32_t small = big == into ? from : into;
  Node& b = nodes_[big];
  Node& s = nodes_[small];
  s.parent = big;
  b.size = b.size + s.size;
  b.merges = nodes_[into].merges + nodes_[from].merges + 1;
  b.identifiers = nodes_[into].identifiers + nodes_[from].identifiers;
  b.flagged = nodes_[into].flagged || nodes_[from].flagged;
  if (big != into) {
    // The root must carry the survivor, into's profile: the two nodes trade
    // profiles (both stay in the set) and the profile table follows.
    size_t at_into = profile_slot(nodes_[into].profile), at_from = profile_slot(nodes_[from].profile);
    std::swap(nodes_[into].profile, nodes_[from].profile);
    std::swap(profile_slots_[at_into], profile_slots_[at_from]);
  }
  if (any_limited_ && limited_head_[small] != kNone) {  // splice small's first-seen list before big's
    uint32_t tail = limited_head_[small];
    while (limited_[tail].next != kNone) tail = limited_[tail].next;
    limited_[tail].next = limited_head_[big];
    limited_head_[big] = limited_head_[small];
    limited_head_[small] = kNone;
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
      if (node_of_identity(cand)) {
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
    if (auto n = node_of_identity(ids[first_known])) {
      primary = find(*n);
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
    uint64_t h = hash(id.type, id.value);
    Probe at = probe(id.type, id.value, h);
    if (at.found) {
      uint32_t other = find(decode(record_at(slots_[at.slot].offset)).node);
      if (other == root) continue;
      auto blocker = refused ? std::optional<std::string>("an earlier merge of this event was refused")
                             : merge_blocker(root, other, e.timestamp);
      if (blocker) {
        d.refusals.push_back({nodes_[root].profile, nodes_[other].profile, id, *blocker});
        if (blocker->rfind("profile would pass", 0) == 0) nodes_[root].flagged = d.flagged = true;
        refused = true;
        continue;
      }
      d.merges.push_back({nodes_[other].profile, nodes_[root].profile});
      root = unite(root, other);
      continue;
    }
    if (refused) {
      d.refusals.push_back({nodes_[root].profile, 0, id, "not attached: this event's merge was refused"});
      continue;
    }
    const IdentifierType& t = types[id.type];
    if (t.limit > 0 && count_in_window(root, id.type, e.timestamp) + 1 > t.limit) {
      d.refusals.push_back({nodes_[root].profile, 0, id,
                            t.name + ": at most " + std::to_string(t.limit) + " per profile" +
                                (t.window ? " in its window" : "")});
      continue;
    }
    if (static_cast<int>(nodes_[root].identifiers) + 1 > rules_.rails().max_identifiers) {
      d.refusals.push_back({nodes_[root].profile, 0, id,
                            "profile would pass " + std::to_string(rules_.rails().max_identifiers) +
                                " identifiers"});
      nodes_[root].flagged = d.flagged = true;
      continue;
    }
    insert_identity(id, root, e.timestamp, h, at.slot);
    nodes_[root].identifiers++;
    d.attached.push_back(id);
  }
  d.profile = nodes_[root].profile;
  d.flagged = d.flagged || nodes_[root].flagged;
  return d;
}

void Resolver::for_each_identity(const std::function<void(const Identifier&, int64_t, Micros)>& f) {
  for (auto& chunk : arena_)
    for (size_t pos = 0; pos < chunk.size();) {
      Record r = decode(chunk.data() + pos);
      pos += r.size;
      f(Identifier{r.type, std::string(r.value)}, nodes_[find(r.node)].profile,
        r.limited == kNone ? 0 : limited_[r.limited].first_seen);
    }
}

size_t Resolver::memory_bytes() const {
  size_t bytes = nodes_.capacity() * sizeof(Node) + profile_slots_.capacity() * sizeof(uint32_t) +
                 slots_.capacity() * sizeof(Slot) + arena_.capacity() * sizeof(std::vector<char>) +
                 limited_.capacity() * sizeof(Limited) + limited_head_.capacity() * sizeof(uint32_t) +
                 limited_type_.capacity() / 8;
  for (auto& chunk : arena_) bytes += chunk.capacity();
  return bytes;
}

}  // namespace cdp
