#include "pg/runtime/worker.hpp"

#include "pg/runtime/guard.hpp"

extern "C" {
#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
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

void connect(const char* name) {
  BackgroundWorkerInitializeConnection(database_name, nullptr, 0);
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
