// The processor: identity resolution, profiles and traits (see processor.cpp).
#pragma once
#include <cstdint>

namespace cdp::pg {

void define_processor_gucs();
// Also installs the shared-memory hooks the commit wake-up needs.
void register_processor();
// Call when this transaction wrote events: its commit wakes the processor.
void note_events_written();
// Moves when a change to identifier_types, trait_rules, segments or
// computed_traits commits: caches of them are stale.
uint64_t rules_version();
// This transaction queued deliveries: its commit wakes the delivery worker.
void note_deliveries_queued();
void set_delivery_procno(int procno);  // -1 when it exits
int delivery_procno();
// This transaction changed rule tables: its commit moves rules_version.
void note_rules_changed();

}  // namespace cdp::pg
