// The processor: identity resolution, profiles and traits (see batch.cpp).
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
// Where a per-process cache of rule tables was built. It is stale once a
// change to those tables commits (rules_version) or cdp.<table> is re-created
// (DROP/CREATE EXTENSION): compare with RulesStamp::of(table).
struct RulesStamp {
  uint64_t version = UINT64_MAX;
  unsigned int relid = 0;
  static RulesStamp of(const char* table);  // needs a transaction
  bool operator==(const RulesStamp&) const = default;
};
// This transaction queued deliveries: its commit wakes the delivery worker.
void note_deliveries_queued();
void set_delivery_procno(int procno);  // -1 when it exits
int delivery_procno();
// This transaction changed rule tables: its commit moves rules_version.
void note_rules_changed();
// Makes the row of cdp.processor_state again (with a WARNING) if it is
// missing. Inside pg::call, with SPI connected.
void ensure_processor_state();

}  // namespace cdp::pg
