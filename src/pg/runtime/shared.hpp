// cdp's one shared-memory segment: which worker a commit wakes, the rules
// version, and the counters /metrics serves. Every hand-off between processes
// that is not a table goes through here (docs/architecture.md, "One event from
// HTTP to a webhook").
#pragma once
#include <cstdint>

namespace cdp {
struct HttpMetrics;
}

namespace cdp::pg {

// From _PG_init: chains the shmem_request/startup hooks that make the segment.
void install_shared_memory();

// Wake-ups on commit. Each marks the current transaction; when it commits
// (after the commit is visible to new snapshots) the worker concerned has its
// latch set. A rollback wakes nobody.
void note_events_written();     // wakes the processor
void note_deliveries_queued();  // wakes the delivery worker
void note_rules_changed();      // moves rules_version

// The workers a commit wakes.
enum class Wakeup { Processor, Delivery };
// At a worker's start: until this process exits, the commits that call for
// `which` set its latch.
void receive_wakeups(Wakeup which);

// Moves when a change to identifier_types, trait_rules, segments,
// computed_traits or destinations commits: caches of them are stale.
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

// Whether cdp.database has been seen to exist since the server started (a
// worker then connects to it directly), and whether a worker already said it
// waits for it. See worker::connect.
bool database_known();
void note_database_exists();
// True for the first caller only (one LOG line per server start, not one per worker).
bool first_to_tell_waiting();

// The counters /metrics and cdp.http_metrics() serve, added to by every HTTP
// worker (and its threads) and the delivery worker (nullptr before startup).
HttpMetrics* shared_metrics();

}  // namespace cdp::pg
