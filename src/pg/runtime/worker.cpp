#include "pg/runtime/worker.hpp"

#include "pg/runtime/guard.hpp"
#include "pg/runtime/shared.hpp"

extern "C" {
#include "access/xact.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
}

extern "C" {
PGDLLEXPORT void cdp_database_probe_main(Datum arg);
}

namespace cdp::pg::worker {

volatile sig_atomic_t shutdown_requested = false;
static char* database_name = nullptr;

static void on_sigterm(SIGNAL_ARGS) {
  int save = errno;
  shutdown_requested = true;
  SetLatch(MyLatch);
  errno = save;
}

void install_signals() {
  pqsignal(SIGHUP, SignalHandlerForConfigReload);
  pqsignal(SIGTERM, on_sigterm);
  BackgroundWorkerUnblockSignals();
}

void define_gucs() {
  DefineCustomStringVariable("cdp.database", "Database the cdp background workers connect to.",
                             "CREATE EXTENSION cdp must have run there.", &database_name,
                             "postgres", PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
}

const char* database() { return database_name; }

namespace {

enum class Probe { Exists, Missing, Unavailable };

// Asks a short-lived helper worker whether cdp.database exists. A process can
// connect only once, and connecting to a missing database is FATAL, so the
// question goes to a process that connects to no database (shared catalogs
// only) and answers through shared memory. Unavailable: no free worker slot
// (max_worker_processes) or the postmaster could not start it.
Probe probe_database() {
  BackgroundWorker w = {};
  snprintf(w.bgw_name, BGW_MAXLEN, "cdp database probe");
  snprintf(w.bgw_type, BGW_MAXLEN, "cdp probe");
  snprintf(w.bgw_library_name, BGW_MAXLEN, "cdp");
  snprintf(w.bgw_function_name, BGW_MAXLEN, "cdp_database_probe_main");
  w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
  w.bgw_start_time = BgWorkerStart_RecoveryFinished;
  w.bgw_restart_time = BGW_NEVER_RESTART;
  w.bgw_notify_pid = MyProcPid;  // the postmaster sets our latch when it starts and stops
  BackgroundWorkerHandle* handle = nullptr;
  if (!RegisterDynamicBackgroundWorker(&w, &handle)) return Probe::Unavailable;
  for (;;) {
    pid_t pid;
    BgwHandleStatus status = GetBackgroundWorkerPid(handle, &pid);
    if (status == BGWH_STOPPED) break;
    if (status == BGWH_POSTMASTER_DIED) proc_exit(1);
    if (shutdown_requested) {  // at shutdown the postmaster may never start it
      TerminateBackgroundWorker(handle);
      proc_exit(1);
    }
    (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100, PG_WAIT_EXTENSION);
    ResetLatch(MyLatch);
  }
  pfree(handle);
  return database_known() ? Probe::Exists : Probe::Missing;
}

// Until cdp.database exists: ask once a second, quietly (one LOG line per
// server start), honouring SIGTERM and SIGHUP. Once one worker has seen it,
// the others (and restarts) connect straight away. If no probe can run, the
// worker connects anyway, as it did before there were probes.
void wait_for_database() {
  int unavailable = 0;
  while (!database_known()) {
    Probe p = probe_database();
    if (p == Probe::Exists) return;
    if (p == Probe::Unavailable && ++unavailable >= 10) return;
    if (p == Probe::Missing && first_to_tell_waiting())
      ereport(LOG, (errmsg("cdp: waiting for database \"%s\" (cdp.database) to be created", database_name),
                    errhint("The cdp workers connect within a second of CREATE DATABASE %s.", database_name)));
    (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000, PG_WAIT_EXTENSION);
    ResetLatch(MyLatch);
    if (shutdown_requested) proc_exit(1);
    if (ConfigReloadPending) {
      ConfigReloadPending = false;
      ProcessConfigFile(PGC_SIGHUP);
    }
  }
}

}  // namespace

void connect(const char* name) {
  wait_for_database();
  BackgroundWorkerInitializeConnection(database_name, nullptr, 0);
  note_database_exists();
  SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);
  pgstat_report_appname(name);
}

void begin(const char* activity) {
  call([&] {
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "cdp: SPI_connect failed");
    PushActiveSnapshot(GetTransactionSnapshot());
    pgstat_report_activity(STATE_RUNNING, activity);
  });
}

// The identity the transaction runs as, when begin_as switched it.
static bool switched = false;
static Oid saved_user = InvalidOid;
static int saved_context = 0;

void begin_as(const char* activity, const char* role) {
  begin(activity);
  call([&] {
    Oid id = get_role_oid(role, true);
    if (!OidIsValid(id)) {
      // No such role before CREATE EXTENSION (nothing is written then); after
      // it, running on with more rights than the role would be wrong.
      if (OidIsValid(get_extension_oid("cdp", true)))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("cdp: role \"%s\" is missing; the worker will not write with more rights", role)));
      return;
    }
    GetUserIdAndSecContext(&saved_user, &saved_context);
    SetUserIdAndSecContext(id, saved_context | SECURITY_LOCAL_USERID_CHANGE);
    switched = true;
  });
}

void commit() {
  call([] {
    if (switched) SetUserIdAndSecContext(saved_user, saved_context);
    switched = false;
    SPI_finish();
    PopActiveSnapshot();
    CommitTransactionCommand();
    pgstat_report_stat(false);
    pgstat_report_activity(STATE_IDLE, nullptr);
  });
}

bool extension_installed() {
  bool installed = false;
  call([&] { installed = OidIsValid(get_extension_oid("cdp", true)); });
  return installed;
}

void abort(const char* who, const std::string& why) {
  call([&] {
    switched = false;  // the abort restores the user itself
    AbortCurrentTransaction();
    ereport(LOG, (errmsg("%s failed: %s", who, why.c_str())));
  });
}

void register_worker(const char* name, const char* type, const char* function, int arg) {
  BackgroundWorker w = {};
  snprintf(w.bgw_name, BGW_MAXLEN, "%s", name);
  snprintf(w.bgw_type, BGW_MAXLEN, "%s", type);
  snprintf(w.bgw_library_name, BGW_MAXLEN, "cdp");
  snprintf(w.bgw_function_name, BGW_MAXLEN, "%s", function);
  w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
  w.bgw_start_time = BgWorkerStart_RecoveryFinished;
  w.bgw_restart_time = 2;
  w.bgw_main_arg = Int32GetDatum(arg);
  RegisterBackgroundWorker(&w);
}

}  // namespace cdp::pg::worker

// The probe behind wait_for_database: connected to no database, it reads the
// shared catalog pg_database and exits (0: a dynamic worker is never restarted).
void cdp_database_probe_main(Datum) {
  using namespace cdp::pg;
  worker::install_signals();  // a SIGTERM lets it finish: it takes milliseconds
  BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);
  // A heap scan, as the autovacuum launcher does: without a database only the
  // shared catalogs and their nailed indexes can be read, and the index on
  // datname is not one of them.
  StartTransactionCommand();
  Relation rel = table_open(DatabaseRelationId, AccessShareLock);
  TableScanDesc scan = table_beginscan_catalog(rel, 0, nullptr);
  bool exists = false;
  for (HeapTuple tuple; !exists && (tuple = heap_getnext(scan, ForwardScanDirection)) != nullptr;)
    exists = strcmp(NameStr(reinterpret_cast<Form_pg_database>(GETSTRUCT(tuple))->datname), worker::database()) == 0;
  table_endscan(scan);
  table_close(rel, AccessShareLock);
  CommitTransactionCommand();
  if (exists) note_database_exists();
  proc_exit(0);
}
