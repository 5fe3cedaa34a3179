// Profile traits, merged field by field. Each field keeps its value and where
// it came from (event time, source, messageId), so the outcome of a fold does
// not depend on the order events are processed in: a late-arriving old event
// never overwrites a newer value under last-write-wins.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/identity.hpp"

namespace cdp {

enum class TraitStrategy { Last, First, Max, Min, SourcePriority };
std::optional<TraitStrategy> parse_trait_strategy(std::string_view name);

// One row of cdp.trait_rules.
struct TraitRule {
  std::string trait;
  TraitStrategy strategy = TraitStrategy::Last;
  std::vector<int> source_priority;  // for SourcePriority: first listed wins
  std::string from_path;             // also fill from this event path ("properties.plan")
};

struct TraitValue {
  std::string json;  // compact JSON of the value
  Micros ts = 0;
  int source = 0;
  std::string message_id;
};

// Keys a profile (or account) takes from events before new ones are refused
// (cdp.max_traits_per_profile). Known keys still update past it.
constexpr size_t kDefaultMaxTraits = 1000;

class TraitSet {
 public:
  std::map<std::string, TraitValue> fields;
  // Keys refused by the limit in the last fold_event (cleared by each call).
  std::vector<std::string> refused;

  std::string traits_json() const;  // {"plan":"pro",...}
  std::string meta_json() const;    // {"plan":{"at":"2025-...Z","source":1,"messageId":"m1"},...}
  // From the two stored columns; a field missing from meta counts as oldest.
  static TraitSet from_json(std::string_view traits, std::string_view meta);
};

class TraitRules {
 public:
  explicit TraitRules(std::vector<TraitRule> rules = {}, size_t max_traits = kDefaultMaxTraits);
  // Folds the traits an event carries (identify/group traits, and mapped paths)
  // into `set`; returns whether anything changed. A key the set lacks is
  // refused (listed in set.refused) once the set has max_traits keys.
  bool fold_event(TraitSet& set, const EventFacts& e, bool group_traits = false) const;
  size_t max_traits() const { return max_traits_; }
  // Folds another profile's traits into `set` (a merge).
  bool fold_set(TraitSet& set, const TraitSet& other) const;
  bool offer(TraitSet& set, const std::string& name, TraitValue v) const;

 private:
  const TraitRule* rule(const std::string& name) const;
  bool offer_new(TraitSet& set, std::string name, TraitValue v) const;  // within the limit
  std::vector<TraitRule> rules_;
  std::unordered_map<std::string, size_t> by_name_;  // index into rules_
  size_t max_traits_;
};

}  // namespace cdp
