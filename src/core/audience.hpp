// Everything a profile is evaluated against: the computed traits and the
// segments, compiled together, with the aggregates (computed traits and the
// event counters segment rules need) each profile keeps. The processor, the
// sweep and the bulk passes all go through this one class, so a profile gets
// the same answer whichever path reached it.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "core/computed.hpp"
#include "core/segments.hpp"

namespace cdp {

struct SegmentSpec {
  int64_t id = 0;
  std::string name;
  std::string rule;  // JSON text
};

struct ComputedSpec {
  std::string name;
  std::string definition;  // JSON text
};

// One aggregate every profile keeps: a computed trait, or the counter behind
// one or more segment event conditions.
struct Aggregate {
  computed::Definition definition;
  std::string key;       // short stable name of the definition ("a" + 16 hex digits of its hash)
  std::string computed;  // the computed trait's name, or "" for a counter
};

struct AccountData {
  std::string id;
  rapidjson::Document traits;  // an object
};

class Audience {
 public:
  struct Segment {
    int64_t id;
    std::string name;
    segments::Rule rule;
    std::vector<size_t> counters;  // event condition index -> aggregate index
  };

  // What one profile keeps: one state per aggregate, by index. A state read
  // from the binary form (core/computed_state.hpp) stays in its bytes,
  // stored[i], read in place by evaluation, until something changes it:
  // edit() decodes it into states[i] then. The bytes belong to the caller
  // and must outlive the ProfileState.
  struct ProfileState {
    std::vector<computed::State> states;   // decoded states
    std::vector<std::string_view> stored;  // undecoded bytes ("" once decoded, or when none)
    bool changed = false;                  // something changed since read(): write it back
  };

  struct Outcome {
    std::string computed;               // {"name": value, ...} (when asked for)
    std::vector<bool> members;          // by segment index (segments())
    std::optional<Micros> next_expiry;  // when a window next drops a bucket
  };

  // Throws cdp::Error naming the segment or computed trait ("segments.vip.rule.and[0].op").
  Audience(std::vector<SegmentSpec> segments, std::vector<ComputedSpec> computed);
  Audience() : Audience({}, {}) {}

  bool empty() const { return segments_.empty() && aggregates_.empty(); }
  // In evaluation order: each after the segments it refers to.
  const std::vector<Segment>& segments() const { return segments_; }
  const std::vector<Aggregate>& aggregates() const { return aggregates_; }
  bool uses_accounts() const { return accounts_; }
  bool uses_relative_dates() const { return relative_; }
  // Whether any aggregate could take an event of this type and name (saves
  // parsing the properties of events nothing counts).
  bool wants(MessageType type, std::string_view name) const;

  ProfileState fresh() const;
  // From what cdp.profile_computed.state holds: the binary form (kept in
  // place, see ProfileState), or the JSON text of 0.1.0 ({"key": state, ...},
  // decoded and marked changed so that it is written back in binary). Keys
  // of dropped definitions are ignored; "" is a fresh state.
  ProfileState read(std::string_view stored) const;
  // The binary form: a magic byte and a version, then per aggregate with a
  // state its key's 64-bit hash, the length and the bytes. Empty states are
  // left out; a fresh state is two bytes.
  std::string write(const ProfileState& p) const;
  // The JSON form of 0.1.0 (tests compare the two forms with it).
  std::string write_json(const ProfileState& p) const;
  // Aggregate i's state, decoded for a change (marks p changed).
  computed::State& edit(ProfileState& p, size_t i) const;
  // Replaces aggregate i's state (a rebuild from the events).
  void replace(ProfileState& p, size_t i, computed::State s) const;

  void fold(ProfileState& p, const computed::EventInput& e) const;
  void fold(ProfileState& p, size_t aggregate, const computed::EventInput& e) const;
  void merge(ProfileState& p, const ProfileState& other) const;

  // Expires old buckets, then gives the memberships and, with
  // `computed_text`, the computed values as JSON (computed_json).
  // `traits` is the profile's traits object (nullptr: none); it needs only
  // the members trait_keys() names.
  Outcome evaluate(ProfileState& p, const rapidjson::Value* traits, const std::vector<AccountData>& accounts,
                   Micros now, bool computed_text = true) const;
  // The computed trait values, {"name": value, ...} in name order.
  std::string computed_json(const ProfileState& p, Micros now) const;
  // The top-level trait keys the segment rules read (a dotted name adds its
  // first part), sorted: a reader need copy no other member of the traits.
  const std::vector<std::string>& trait_keys() const { return trait_keys_; }
  size_t computed_count() const { return computed_.size(); }
  // One segment rule against one profile (cdp.evaluate, preview).
  bool evaluate(const segments::Rule& rule, ProfileState& p, const rapidjson::Value* traits,
                const std::vector<AccountData>& accounts, Micros now) const;

 private:
  std::vector<Segment> segments_;
  std::vector<Aggregate> aggregates_;
  std::vector<size_t> computed_;  // aggregates that are computed traits, by name order
  std::map<std::string, size_t, std::less<>> counters_;  // EventCondition::key -> counter aggregate
  std::map<std::string, size_t, std::less<>> segment_index_;  // name -> index in segments_
  std::vector<std::pair<std::string, size_t>> computed_read_;  // computed traits rules read -> aggregate
  std::vector<uint64_t> hashes_;  // each aggregate's key hash, the binary form's name for it
  std::vector<std::string> trait_keys_;
  bool accounts_ = false, relative_ = false;
};

// 16 hex digits of a 64-bit FNV-1a hash: short names for definition keys.
std::string short_key(std::string_view text);
uint64_t key_hash(std::string_view text);  // that hash

}  // namespace cdp
