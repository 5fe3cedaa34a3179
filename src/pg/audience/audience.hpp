// Computed traits and segments in the database (see audience.cpp). Every
// function here needs an SPI connection and the processor's advisory lock.
#pragma once
#include <cstdint>
#include <vector>

#include "core/identity.hpp"

namespace cdp::pg::audience {

// After a processor batch wrote its profiles: merges the state of merged-away
// profiles into their survivors, folds the batch's events (`bound[i]` is the
// surviving profile of events[i], 0 if none), and re-evaluates every touched
// profile in the same transaction.
void after_batch(const std::vector<EventFacts>& events, const std::vector<int64_t>& bound,
                 const std::vector<int64_t>& merged_away, const std::vector<int64_t>& merged_into);
// Recomputes the state of these profiles from their events and re-evaluates
// them (after an unmerge).
void refresh_profiles(const std::vector<int64_t>& profiles);
// After rebuild_identities (which truncated the state with everything else):
// evaluates every profile and closes memberships of profiles gone.
void rebuild_all();
// Profiles whose windows moved on, and (every cdp.segment_sweep_interval) all
// profiles when a segment uses relative dates. Returns profiles evaluated.
int64_t sweep(bool from_worker);

void define_gucs();

}  // namespace cdp::pg::audience
