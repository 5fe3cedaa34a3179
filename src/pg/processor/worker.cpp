// The processor worker, "cdp processor": runs a batch (batch.cpp) whenever a
// commit of events wakes it and at least once a second, under a time budget
// that sets a failing event aside; between batches, the segment sweep (once a
// second) and maintenance and retention (once a minute).
#include <algorithm>
#include <string>

#include "pg/audience/audience.hpp"
#include "pg/processor/internal.hpp"
#include "pg/processor/processor.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/worker.hpp"

extern "C" {
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"
}

extern "C" {
PGDLLEXPORT void cdp_processor_main(Datum arg);
}

namespace cdp::pg::processor {

int batch_size = 5000;

namespace {

bool processor_enabled = true;
bool retention_enabled = true;
int batch_timeout_ms = 10000;  // cdp.processor_batch_timeout; 0: none
using worker::shutdown_requested;

// ---------------------------------------------------------------------------
// One bad event must not stop the processor. Each batch of the worker runs
// under a time budget (cdp.processor_batch_timeout): when it runs out, the
// statement or loop running is cancelled (an ERROR) and the batch rolls back.
// After a failure the next batch is half as big, down to one event; a single
// event that fails twice in a row with an error the event itself can cause
// (the budget, bad data: SQLSTATE classes 22, 23 and 54, or an error of the
// C++ core) is moved to cdp.quarantine with the reason, and the rest goes on.
// Errors of the system (locks, disk, privileges, a missing table) never
// quarantine: the batch is retried after a pause, as before.

TimeoutId budget_timeout = MAX_TIMEOUTS;  // registered by the worker
volatile sig_atomic_t budget_expired = false;
// It ran out while the worker waited for a lock (someone else's transaction,
// or cdp.process_pending() holding the processor's advisory lock): no event's fault.
volatile sig_atomic_t budget_in_lock_wait = false;

// A timeout handler runs in the SIGALRM handler: set flags, wake, nothing more.
void on_budget_expired() {
  budget_expired = true;
  budget_in_lock_wait = MyProc != nullptr && MyProc->waitLock != nullptr;
  QueryCancelPending = true;
  InterruptPending = true;
  SetLatch(MyLatch);
}

void start_budget() {
  budget_expired = false;
  budget_in_lock_wait = false;
  QueryCancelPending = false;  // a cancel left over from the last batch's end
  if (batch_timeout_ms > 0 && budget_timeout != MAX_TIMEOUTS) enable_timeout_after(budget_timeout, batch_timeout_ms);
}

void stop_budget() {
  if (budget_timeout != MAX_TIMEOUTS) disable_timeout(budget_timeout, false);
  // Ran out after the last check: the batch is done. A cancel left pending
  // would raise at the loop's CHECK_FOR_INTERRUPTS, outside any handler, and
  // end the worker.
  if (budget_expired) QueryCancelPending = false;
}

int batch_limit = -1;  // the size of the next batch: batch_size, less after failures
int suspect_failures = 0;
FirstEvent suspect;

// Whether an error can come from the event being processed rather than from
// the system around it.
bool event_can_cause(const std::exception& e) {
  auto* pg = dynamic_cast<const PgError*>(&e);
  if (!pg) return true;  // the C++ core: it only sees the events
  int code = pg->edata->sqlerrcode;
  if (code == ERRCODE_QUERY_CANCELED) return budget_expired && !budget_in_lock_wait;
  int cls = ERRCODE_TO_CATEGORY(code);
  return cls == ERRCODE_DATA_EXCEPTION || cls == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION ||
         cls == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

// Moves one event from cdp.events to cdp.quarantine (field "processor").
void quarantine_event(const FirstEvent& ev, const std::string& reason) {
  worker::in_transaction("cdp processor: quarantine", [&] {
    uint64 n = sql::run(
        "with moved as (delete from cdp.events e where e.txid = $1::xid8 and e.id = $2 returning e.*)"
        " insert into cdp.quarantine (received_at, source_id, message_id, field, reason, raw)"
        " select received_at, source_id, message_id, 'processor', $3,"
        "   (to_jsonb(moved) - 'txid' - 'id')::text from moved",
        {sql::text(ev.txid), sql::int8(ev.id), sql::text(reason)}, SPI_OK_INSERT);
    if (n > 0)
      call([&] {
        ereport(WARNING, (errmsg("cdp processor: event %lld set aside in cdp.quarantine: %s",
                                 static_cast<long long>(ev.id), reason.c_str())));
      });
  });
}

// One transaction: a batch. Errors roll it back and are logged; the worker
// goes on (a persistent error is retried after a pause, never crash-looped).
bool run_one_batch() {
  int64_t n = 0;
  if (batch_limit < 1 || batch_limit > batch_size) batch_limit = batch_size;
  int limit = batch_limit;
  batch_first = {};
  try {
    worker::begin("cdp processor: processing events");
    start_budget();
    if (worker::extension_installed()) n = process_batch(limit, true);  // else: not created yet
    stop_budget();
    worker::commit();
  } catch (const std::exception& e) {
    stop_budget();
    bool expired = budget_expired;
    bool attributable = event_can_cause(e);
    std::string why = !expired ? std::string(e.what())
                      : budget_in_lock_wait
                          ? "the batch waited for a lock longer than cdp.processor_batch_timeout (" +
                                std::to_string(batch_timeout_ms) + " ms)"
                          : "the batch took longer than cdp.processor_batch_timeout (" +
                                std::to_string(batch_timeout_ms) + " ms)";
    worker::abort("cdp processor: batch (will retry)", why);
    budget_expired = false;
    QueryCancelPending = false;
    if (!attributable || batch_first.txid.empty()) return false;  // the system, not an event: pause, retry
    if (batch_first.batch > 1) {
      batch_limit = static_cast<int>(batch_first.batch / 2);  // narrow down to the event that fails
      return true;
    }
    bool same = suspect.txid == batch_first.txid && suspect.id == batch_first.id;
    suspect = batch_first;
    suspect_failures = same ? suspect_failures + 1 : 1;
    if (suspect_failures >= 2) {
      quarantine_event(suspect, "processor: " + why);
      suspect_failures = 0;
      return true;
    }
    return false;
  }
  if (batch_limit < batch_size) batch_limit = std::min(batch_size, batch_limit * 2);  // back to full size
  return n >= limit;  // more waiting
}

// Partitions ahead, the dedup window and retention, once a minute: without this nothing
// would trim cdp.message_ids when only the SQL API is used.
void run_maintenance() {
  worker::in_transaction("cdp processor: maintenance",
                         [] { sql::run("select cdp.run_maintenance()", SPI_OK_SELECT); });
  // Its own transaction: a failure here does not undo the partitions made above.
  if (retention_enabled)
    worker::in_transaction("cdp processor: retention",
                           [] { sql::run("select cdp.run_retention()", SPI_OK_SELECT); });
}

// Segments whose windows moved on, once a second.
void run_sweep() { worker::in_transaction("cdp processor: segment sweep", [] { audience::sweep(true); }); }

void worker_loop() {
  TimestampTz last_maintenance = 0, last_sweep = 0;
  while (!shutdown_requested) {
    bool more = true;
    while (more && !shutdown_requested) {
      if (GetCurrentTimestamp() - last_maintenance > 60 * USECS_PER_SEC) {  // even under a backlog
        run_maintenance();
        last_maintenance = GetCurrentTimestamp();
      }
      more = run_one_batch();
      if (GetCurrentTimestamp() - last_sweep >= USECS_PER_SEC) {
        run_sweep();
        last_sweep = GetCurrentTimestamp();
      }
      CHECK_FOR_INTERRUPTS();
    }
    int rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000, PG_WAIT_EXTENSION);
    (void)rc;
    ResetLatch(MyLatch);
    CHECK_FOR_INTERRUPTS();
    if (ConfigReloadPending) {
      ConfigReloadPending = false;
      ProcessConfigFile(PGC_SIGHUP);
    }
  }
}

// SIGTERM: the shared flag for the loop, and Postgres' die() so that the next
// CHECK_FOR_INTERRUPTS (in a statement, or spi::check_interrupts in the
// loops over events and profiles) ends the worker within moments, even in
// the middle of a long batch, which rolls back.
void on_sigterm(SIGNAL_ARGS) {
  worker::shutdown_requested = true;
  die(postgres_signal_arg);
}

}  // namespace

void define_gucs() {
  DefineCustomBoolVariable("cdp.processor_enabled", "Run the processor background worker.",
                           "Without it, call cdp.process_pending() to process events.",
                           &processor_enabled, true, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
  DefineCustomBoolVariable("cdp.retention_enabled", "Apply cdp.retention once a minute in the processor worker.",
                           "Off: run cdp.run_retention() yourself (the test clusters do, with a settable clock).",
                           &retention_enabled, true, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.processor_batch_size", "Most events the processor handles in one transaction.",
                          nullptr, &batch_size, 5000, 1, 100000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.processor_batch_timeout",
                          "Time budget of one batch of the processor worker; 0 turns it off.",
                          "A batch past it rolls back and is retried smaller; a single event past it"
                          " (twice) is set aside in cdp.quarantine.",
                          &batch_timeout_ms, 10000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);
  define_rules_gucs();
}

void register_worker() {
  if (processor_enabled) worker::register_worker("cdp processor", "cdp processor", "cdp_processor_main");
}

}  // namespace cdp::pg::processor

void cdp_processor_main(Datum) {
  using namespace cdp::pg;
  worker::install_signals();
  pqsignal(SIGTERM, processor::on_sigterm);
  processor::budget_timeout = RegisterTimeout(USER_TIMEOUT, processor::on_budget_expired);
  worker::connect("cdp processor");
  receive_wakeups(Wakeup::Processor);
  processor::worker_loop();
  proc_exit(1);
}
