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

  // What one profile keeps: one state per aggregate, by index.
  struct ProfileState {
    std::vector<computed::State> states;
  };

  struct Outcome {
    std::string computed;               // {"name": value, ...}
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

  ProfileState fresh() const { return ProfileState{std::vector<computed::State>(aggregates_.size())}; }
  // From stored JSON ({"key": state, ...}); keys of dropped definitions are ignored.
  ProfileState read(std::string_view json) const;
  std::string write(const ProfileState& p) const;  // empty states left out

  void fold(ProfileState& p, const computed::EventInput& e) const;
  void fold(ProfileState& p, size_t aggregate, const computed::EventInput& e) const;
  void merge(ProfileState& p, const ProfileState& other) const;

  // Expires old buckets, then gives the computed values and memberships.
  // `traits` is the profile's traits object (nullptr: none).
  Outcome evaluate(ProfileState& p, const rapidjson::Value* traits, const std::vector<AccountData>& accounts,
                   Micros now) const;
  // One segment rule against one profile (cdp.evaluate, preview).
  bool evaluate(const segments::Rule& rule, ProfileState& p, const rapidjson::Value* traits,
                const std::vector<AccountData>& accounts, Micros now) const;

 private:
  std::vector<Segment> segments_;
  std::vector<Aggregate> aggregates_;
  std::vector<size_t> computed_;  // aggregates that are computed traits, by name order
  std::map<std::string, size_t, std::less<>> counters_;  // EventCondition::key -> counter aggregate
  bool accounts_ = false, relative_ = false;
};

// 16 hex digits of a 64-bit FNV-1a hash: short names for definition keys.
std::string short_key(std::string_view text);

}  // namespace cdp
