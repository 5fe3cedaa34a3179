// The writes of one processor batch, decided in the core. The processor reads
// a batch of events and what the database knows of their identifiers, the
// resolver decides each event (core/identity.hpp), and fold_batch turns those
// decisions, the stored profiles and accounts they touch and the trait rules
// into one typed value: every row the batch inserts, updates or deletes. The
// glue ships it with one set-based statement per table (src/pg/processor/).
#pragma once
#include <algorithm>
#include <climits>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/identity.hpp"
#include "core/traits.hpp"

namespace cdp {

// What a profile's row becomes: its traits and counters, folded (by
// fold_batch, and by the processor's refold after an unmerge).
struct ProfileAgg {
  TraitSet traits;
  Micros first_seen = INT64_MAX, last_seen = INT64_MIN;
  int64_t events = 0;
  int merges = 0;
  bool flagged = false;
  void seen(Micros t) {
    first_seen = std::min(first_seen, t);
    last_seen = std::max(last_seen, t);
  }
};

// A row of cdp.profiles as the batch reads it (traits as stored JSON text).
struct StoredProfile {
  int64_t id = 0;
  std::string traits, sources;
  Micros first_seen = 0, last_seen = 0;  // 0: never
  int64_t events = 0;
  int merges = 0;
  bool flagged = false;
};

// A row of cdp.accounts as the batch reads it.
struct StoredAccount {
  std::string group_id, traits, sources;
  Micros first_seen = 0, last_seen = 0;
};

struct BatchInput {
  const IdentityRules* rules = nullptr;
  const TraitRules* traits = nullptr;
  // The batch, one entry per event in processing order.
  const std::vector<EventFacts>* events = nullptr;
  const std::vector<std::vector<Identifier>>* identifiers = nullptr;  // rules->extract(event)
  const std::vector<Decision>* decisions = nullptr;
  // Real ids of the profiles the resolver made: temporary id -k is fresh_ids[k - 1].
  std::vector<int64_t> fresh_ids;
  // The resolver's canonical profile (temporary or real) of a profile.
  std::function<int64_t(int64_t)> canonical;
  // The stored profiles the batch touched (seeded into the resolver) and the
  // stored accounts of batch_groups().
  std::vector<StoredProfile> profiles;
  std::vector<StoredAccount> accounts;
  // Called once per event and per stored profile: the glue serves interrupts
  // here (it may throw to abandon the batch).
  std::function<void()> check_interrupts;
};

struct BatchWrites {
  struct MapRow {  // cdp.profile_map: a profile made in this batch
    int64_t profile, canonical;
  };
  struct Merged {  // a stored profile merged away into a survivor
    int64_t from, into;
  };
  struct IdentityRow {  // cdp.identities
    std::string type, value;
    int64_t profile, origin_profile, event_id;
    Micros first_seen;
  };
  struct MergeRow {  // cdp.profile_merges
    int64_t from, into, event_id;
    std::string identifiers;  // JSON: [{"type":..,"value":..},...]
  };
  struct ProfileRow {  // cdp.profiles, inserted or replaced
    int64_t id;
    std::string traits, sources;
    Micros first_seen, last_seen;  // 0: never
    int64_t events;
    int merges;
    bool flagged;
  };
  struct EventProfile {  // cdp.event_profiles: the early binding
    int64_t event_id, profile;
  };
  struct RefusalRow {  // cdp.identity_refusals
    int64_t event_id, profile, other_profile;  // other_profile 0: none
    std::string type, value, rule;
  };
  struct AccountRow {  // cdp.accounts, inserted or replaced
    std::string group_id, traits, sources;
    Micros first_seen, last_seen;
  };
  struct ProfileAccount {  // cdp.profile_accounts
    int64_t profile;
    std::string group_id;
    Micros first_seen;
  };

  std::vector<MapRow> new_profiles;
  std::vector<Merged> merged;
  std::vector<IdentityRow> identities;
  std::vector<MergeRow> merges;
  std::vector<ProfileRow> profiles;  // by profile id
  std::vector<EventProfile> event_profiles;
  std::vector<RefusalRow> refusals;
  std::vector<AccountRow> accounts;  // by group id
  std::vector<ProfileAccount> profile_accounts;
  // Per event of the batch: the surviving profile it now belongs to, 0 when
  // every identifier was blocked and it is bound to no one.
  std::vector<int64_t> bound;
};

// The group ids whose stored accounts fold_batch needs: those of the batch's
// group calls bound to a profile, with a groupId short enough to identify.
std::vector<std::string> batch_groups(const std::vector<EventFacts>& events, const std::vector<Decision>& decisions);

// Throws what the trait rules or the JSON of a stored row throw (cdp::Error),
// and whatever in.check_interrupts throws.
BatchWrites fold_batch(const BatchInput& in);

}  // namespace cdp
