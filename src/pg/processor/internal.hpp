// What the processor's files share (not for use outside src/pg/processor/):
// worker.cpp runs batches (batch.cpp) with the rules of rules.cpp, and
// identity.cpp's SQL functions run the same batches and rules.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/batch_writes.hpp"
#include "core/identity.hpp"
#include "core/traits.hpp"
#include "pg/runtime/shared.hpp"
#include "pg/runtime/spi.hpp"

namespace cdp::pg::processor {

// cdp.processor_batch_size (worker.cpp): the most events a batch reads.
extern int batch_size;

// ---------------------------------------------------------------------------
// Rules (rules.cpp)

IdentityRules load_identity_rules();
TraitRules load_trait_rules();

// Rules are cached per process and read again only when a change to the rule
// tables has committed (the version in shared memory moved), the tables were
// re-created, or the guard-rail settings changed: loading them costs two
// queries and compiling regular expressions, too much for every small batch.
struct RulesCache {
  RulesStamp stamp;
  int merges = -1, identifiers = -1, traits_limit = -1;
  std::unique_ptr<IdentityRules> identity;
  std::unique_ptr<TraitRules> traits;
};
extern RulesCache rules_cache;
// Loads the rules into rules_cache unless it is current. Needs SPI.
void refresh_rules();
void define_rules_gucs();

// ---------------------------------------------------------------------------
// The batch (batch.cpp)

// The columns an EventFacts is read from, in order (13 of them), and the reader
// (row r of rows, the first of them in column `first`, counted from 0).
#define EVENT_FACTS_COLUMNS                                                                      \
  " e.id, e.type, e.source_id, e.message_id, coalesce(e.user_id, ''),"                          \
  " coalesce(e.anonymous_id, ''), coalesce(e.previous_id, ''), coalesce(e.group_id, ''),"       \
  " e.\"timestamp\", coalesce(e.traits::text, ''), coalesce(e.context::text, ''),"             \
  " coalesce(e.properties::text, ''), coalesce(e.event, e.name, '') "
EventFacts event_facts(const sql::Rows& rows, size_t r, int first);

// The first event of the batch being processed, kept when its transaction
// aborts: the suspect if a batch of one keeps failing (see run_one_batch).
struct FirstEvent {
  std::string txid;
  int64_t id = 0;
  size_t batch = 0;  // events the batch read
};
extern FirstEvent batch_first;

// cdp.rebuild_identities() is running: nothing is queued for delivery again.
extern bool rebuilding;
// Size of the last batch's identity graph, reported by cdp.rebuild_identities().
extern size_t last_graph_identities, last_graph_bytes, last_graph_text;

// cdp.processor_state has one row. If someone deleted it, it is made again
// (WARNING) with the cursor after the last event bound to a profile, the
// closest the tables tell to where the processor was; then the caller reads it.
// Needs SPI.
void ensure_processor_state();

// Processes one batch inside the caller's transaction; returns events processed.
int64_t process_batch(int limit, bool from_worker);

}  // namespace cdp::pg::processor
