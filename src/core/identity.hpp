// Identity resolution: which identifiers an event carries, how they are
// normalised and which are refused, and the deterministic identity graph that
// decides which profile each event belongs to and when two profiles merge.
//
// The graph is a union-find over profiles (path compression, union by size):
// each identifier (type, value) belongs to one profile; an event that carries
// identifiers of two profiles merges them unless a rule forbids it.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/message.hpp"

namespace re2 {
class RE2;
}

namespace cdp {

enum class Normalise { None, Lower, Email, Phone };

// Longer values identify no one: they could not be indexed (B-tree rows are
// limited to about 2.7 KB) and no real identifier is that long.
constexpr size_t kMaxIdentifierBytes = 1024;
std::optional<Normalise> parse_normalise(std::string_view name);

// One row of cdp.identifier_types.
struct IdentifierType {
  std::string name;                     // "user_id", "email", "device_id"...
  std::vector<std::string> paths;       // "userId", "traits.email", "context.device.id"...
  Normalise normalise = Normalise::None;
  int limit = 0;                        // identifiers of this type per profile; 0 = unlimited
  Micros window = 0;                    // the limit counts only those first seen this recently; 0 = ever
  int priority = 100;                   // lower wins: decides which profile an event stays with
  std::vector<std::string> blocked_values;    // compared after normalisation, ignoring case
  std::vector<std::string> blocked_patterns;  // RE2 regular expressions, whole value, any case
  std::string default_country_code;     // phones without one get it (e.g. "1")
};

// Guard rails per profile (Segment caps them the same way).
struct GuardRails {
  int max_merges = 100;
  int max_identifiers = 1000;
};

struct Identifier {
  int type;  // index into IdentityRules::types()
  std::string value;
  bool operator==(const Identifier&) const = default;
};

// What the resolver needs of one event.
struct EventFacts {
  int64_t id = 0;
  MessageType type = MessageType::Track;
  Micros timestamp = 0;
  std::string message_id;
  int source_id = 0;
  std::string user_id, anonymous_id, previous_id, group_id;
  std::string traits, context, properties;  // JSON text or empty
  std::string name;  // track: the event; page/screen: the name; else empty
};

class IdentityRules {
 public:
  // Throws cdp::Error(InvalidInput) naming the type and pattern of a bad regex.
  // Patterns are RE2 (linear time in the value, whatever the pattern: no
  // catastrophic backtracking), so back-references and look-arounds are refused.
  explicit IdentityRules(std::vector<IdentifierType> types, GuardRails rails = {});
  const std::vector<IdentifierType>& types() const { return types_; }
  const GuardRails& rails() const { return rails_; }
  int find(std::string_view name) const;  // -1 when unknown

  // The normalised value, or nullopt when empty or blocked.
  std::optional<std::string> normalise(int type, std::string_view raw) const;
  // Every identifier the event carries, normalised, unblocked, without
  // repeats, strongest (lowest priority number) first. previousId is not
  // included: see Resolver::resolve.
  std::vector<Identifier> extract(const EventFacts& e) const;

  // [{"type":"email","value":"a@b.c"},...]
  std::string to_json(const std::vector<Identifier>& ids) const;

  static std::vector<IdentifierType> defaults();

 private:
  std::vector<IdentifierType> types_;
  std::vector<std::vector<std::shared_ptr<const re2::RE2>>> patterns_;
  GuardRails rails_;
};

struct Merge {
  int64_t from, into;  // canonical profiles at the time of the merge
};

struct Refusal {
  int64_t profile;        // the profile the event stayed with
  int64_t other_profile;  // the one it would have merged, or 0
  Identifier identifier;  // the identifier not attached or not merged
  std::string rule;       // "user_id: at most 1 per profile", ...
};

// What became of one event.
struct Decision {
  int64_t event_id = 0;
  int64_t profile = 0;  // bound at processing time (early binding)
  bool new_profile = false;
  std::vector<Identifier> attached;  // new identifiers given to `profile`
  std::vector<Merge> merges;
  std::vector<Refusal> refusals;
  bool flagged = false;  // the profile hit a guard rail
};

// The identity graph. Seed it with what the database knows about the
// identifiers of a batch (or with nothing, to rebuild from all events), then
// resolve events in order.
//
// Layout, for millions of identifiers in little memory (see memory_bytes()):
//  - identifier values are stored once, in an arena of 256 KiB chunks, one
//    record each: node (4 bytes), type and length (1 byte each when under
//    128), for limited types the index of its first-seen time (4 bytes), then
//    the value's bytes;
//  - an open-addressing hash table (linear probing, power-of-two capacity,
//    load at most 0.7) of 8-byte slots {arena offset, 32-bit hash tag} finds
//    them: a slot whose tag matches is confirmed by comparing type and value;
//  - profiles are nodes of 24 bytes (profile id, parent, size and flag,
//    merges, identifiers), found by profile id through an open-addressing
//    table of 4-byte node indexes (the key is the node's own profile id). A
//    root's profile is its set's canonical profile;
//  - first-seen times are kept only for identifiers of limited types: a list
//    per root node, spliced when sets merge.
class Resolver {
 public:
  using NewProfileId = std::function<int64_t()>;
  Resolver(const IdentityRules& rules, NewProfileId new_profile_id);

  void add_profile(int64_t profile, int merges, int identifiers, bool flagged);
  void add_identity(const Identifier& id, int64_t profile, Micros first_seen);

  Decision resolve(const EventFacts& e);
  // The same, with the event's identifiers already extracted (rules.extract(e)).
  Decision resolve(const EventFacts& e, std::vector<Identifier> ids);

  int64_t canonical(int64_t profile);
  std::optional<int64_t> lookup(const Identifier& id);
  // Every identifier known to the graph with its canonical profile and, for
  // types with a limit, when it was first seen (0 for unlimited types: their
  // times are not kept). In the order the identifiers became known.
  void for_each_identity(const std::function<void(const Identifier&, int64_t, Micros)>& f);
  size_t identity_count() const { return identities_; }
  // Bytes allocated by the graph (capacities of all its structures), text
  // included.
  size_t memory_bytes() const;
  // Of which bytes of identifier values (in the arena).
  size_t text_bytes() const { return text_bytes_; }

 private:
  static constexpr uint32_t kNone = 0xFFFFFFFF;

  struct Node {
    int64_t profile;        // at a root: the set's canonical profile
    uint32_t parent;
    uint32_t size : 31;     // nodes in the set (meaningful at roots)
    uint32_t flagged : 1;
    uint32_t merges, identifiers;
  };
  struct Slot {
    uint32_t offset;  // of the record in the arena; kNone: free
    uint32_t tag;     // low 32 bits of the identifier's hash
  };
  struct Limited {
    Micros first_seen;
    uint32_t next;  // in the root's list; kNone ends it
    uint32_t type;
  };
  // A decoded arena record.
  struct Record {
    uint32_t node;
    int type;
    uint32_t limited;  // index into limited_, or kNone
    std::string_view value;
    size_t size;       // bytes of the whole record
  };
  struct Probe {
    size_t slot;  // the identifier's slot, or the free one it would take
    bool found;
  };

  static uint64_t hash(int type, std::string_view value);
  const char* record_at(uint32_t offset) const;
  Record decode(const char* p) const;
  Probe probe(int type, std::string_view value, uint64_t h) const;
  std::optional<uint32_t> node_of_identity(const Identifier& id) const;
  void insert_identity(const Identifier& id, uint32_t node, Micros first_seen, uint64_t h, size_t slot);
  void grow_identities();

  size_t profile_slot(int64_t profile) const;
  void grow_profiles();

  uint32_t node_of(int64_t profile);
  uint32_t find(uint32_t n);
  int count_in_window(uint32_t root, int type, Micros now);
  std::optional<std::string> merge_blocker(uint32_t a, uint32_t b, Micros now);
  uint32_t unite(uint32_t into, uint32_t from);

  const IdentityRules& rules_;
  NewProfileId new_profile_id_;
  std::vector<bool> limited_type_;  // per type: has a limit
  bool any_limited_ = false;

  std::vector<Node> nodes_;
  std::vector<uint32_t> profile_slots_;  // node indexes by hash of their profile; kNone: free

  std::vector<std::vector<char>> arena_;  // chunks of records
  std::vector<Slot> slots_;
  size_t identities_ = 0, text_bytes_ = 0;

  std::vector<Limited> limited_;        // first-seen times of identifiers of limited types
  std::vector<uint32_t> limited_head_;  // per node (when a type is limited): its list in limited_
};

}  // namespace cdp
