// cdp's one shared-memory segment (see shared.hpp), and the transaction
// callback that turns this backend's commits into wake-ups.
#include "pg/runtime/shared.hpp"

#include <new>
#include <string>

#include "core/http_metrics.hpp"
#include "pg/runtime/guard.hpp"

extern "C" {
#include "access/xact.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(cdp_http_metrics);
}

namespace cdp::pg {
namespace {

struct Segment {
  int processor_procno = -1;  // the processor worker's PGPROC number, or -1
  int delivery_procno = -1;   // the delivery worker's PGPROC number, or -1
  pg_atomic_uint64 rules_version;  // bumped when a change to the rule tables commits
  pg_atomic_uint32 database_seen;   // 1 once cdp.database was seen to exist
  pg_atomic_uint32 waiting_told;    // 1 once a worker logged that it waits for it
  HttpMetrics metrics;  // lock-free atomics only
  Segment() {
    pg_atomic_init_u64(&rules_version, 0);
    pg_atomic_init_u32(&database_seen, 0);
    pg_atomic_init_u32(&waiting_told, 0);
  }
};
Segment* segment = nullptr;
shmem_request_hook_type prev_request = nullptr;
shmem_startup_hook_type prev_startup = nullptr;

void request_shmem() {
  if (prev_request) prev_request();
  RequestAddinShmemSpace(MAXALIGN(sizeof(Segment)));
}

void startup_shmem() {
  if (prev_startup) prev_startup();
  LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
  bool found;
  void* mem = ShmemInitStruct("cdp", sizeof(Segment), &found);
  segment = found ? static_cast<Segment*>(mem) : new (mem) Segment();
  LWLockRelease(AddinShmemInitLock);
}

// What this backend's open transaction calls for when it commits.
bool wake_processor = false;  // it wrote events
bool wake_delivery = false;   // it queued deliveries
bool rules_changed = false;   // it changed rule tables
bool callback_registered = false;

void wake(int procno) {
  if (procno >= 0) SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

// A commit wakes the workers its writes concern; a rollback wakes nobody.
// Called after the commit is visible to new snapshots, so a processor that
// sees the new rules version also sees the new rules.
void on_xact(XactEvent event, void*) {
  if (event == XACT_EVENT_COMMIT && wake_processor && segment) wake(segment->processor_procno);
  if (event == XACT_EVENT_COMMIT && wake_delivery && segment) wake(segment->delivery_procno);
  if (event == XACT_EVENT_COMMIT && rules_changed && segment) pg_atomic_fetch_add_u64(&segment->rules_version, 1);
  if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT) wake_processor = rules_changed = wake_delivery = false;
}

void register_xact_callback() {
  if (callback_registered) return;
  RegisterXactCallback(on_xact, nullptr);
  callback_registered = true;
}

int* procno_of(Wakeup which) {
  if (!segment) return nullptr;
  return which == Wakeup::Processor ? &segment->processor_procno : &segment->delivery_procno;
}

void forget_procno(int, Datum which) {
  int* procno = procno_of(static_cast<Wakeup>(DatumGetInt32(which)));
  if (procno && *procno == MyProc->pgprocno) *procno = -1;
}

}  // namespace

void install_shared_memory() {
  prev_request = shmem_request_hook;
  shmem_request_hook = request_shmem;
  prev_startup = shmem_startup_hook;
  shmem_startup_hook = startup_shmem;
}

void note_events_written() {
  register_xact_callback();
  wake_processor = true;
}

void note_deliveries_queued() {
  register_xact_callback();
  wake_delivery = true;
}

void note_rules_changed() {
  register_xact_callback();
  rules_changed = true;
}

void receive_wakeups(Wakeup which) {
  if (int* procno = procno_of(which)) *procno = MyProc->pgprocno;
  before_shmem_exit(forget_procno, Int32GetDatum(static_cast<int>(which)));
}

uint64_t rules_version() { return segment ? pg_atomic_read_u64(&segment->rules_version) : 0; }

RulesStamp RulesStamp::of(const char* table) {
  RulesStamp s;
  s.version = rules_version();
  call([&] { s.relid = get_relname_relid(table, get_namespace_oid("cdp", false)); });
  return s;
}

bool database_known() { return segment && pg_atomic_read_u32(&segment->database_seen) != 0; }
void note_database_exists() {
  if (segment) pg_atomic_write_u32(&segment->database_seen, 1);
}
bool first_to_tell_waiting() { return !segment || pg_atomic_exchange_u32(&segment->waiting_told, 1) == 0; }

HttpMetrics* shared_metrics() { return segment ? &segment->metrics : nullptr; }

}  // namespace cdp::pg

// cdp.http_metrics(): the text /metrics serves.
Datum cdp_http_metrics(PG_FUNCTION_ARGS) {
  return cdp::pg::entry([&] {
    cdp::HttpMetrics* metrics = cdp::pg::shared_metrics();
    std::string rendered = metrics ? metrics->render() : std::string();
    text* result = nullptr;
    cdp::pg::call([&] { result = cstring_to_text_with_len(rendered.data(), rendered.size()); });
    PG_RETURN_TEXT_P(result);
  });
}
