// The privacy steps of the processor's batch (suppression.cpp, consent.cpp).
// Both need an SPI connection and run inside the batch's transaction, under
// the processor's advisory lock. (json_mentions.cpp holds cdp.json_mentions,
// which erasure calls from SQL.)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/identity.hpp"

namespace cdp::pg::privacy {

// Events carrying an identifier of an erased person (cdp.suppressions) go to
// cdp.quarantine with reason "suppressed" and leave the batch: they are taken
// out of `events`, `txids` and `extracted` (its identifiers), which stay
// parallel.
void quarantine_suppressed(const IdentityRules& rules, std::vector<EventFacts>& events, std::vector<std::string>& txids,
                           std::vector<std::vector<Identifier>>& extracted);

// Records the consent the batch's events state (`bound[i]`: the surviving
// profile of events[i], 0 if none), after moving the consent of the profiles
// merged away into their survivors.
void record_consent(const std::vector<EventFacts>& events, const std::vector<std::string>& txids,
                    const std::vector<int64_t>& bound, const std::vector<int64_t>& merged_away,
                    const std::vector<int64_t>& merged_into);

}  // namespace cdp::pg::privacy
