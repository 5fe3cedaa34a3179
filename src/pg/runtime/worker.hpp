// What every cdp background worker shares: signal handling and the
// transaction bracket around a unit of work.
#pragma once
extern "C" {
#include "postgres.h"
}
#include <csignal>
#include <exception>
#include <string>

namespace cdp::pg::worker {

extern volatile sig_atomic_t shutdown_requested;

// SIGHUP: reload flag + latch; SIGTERM: shutdown_requested + latch (the worker
// finishes what it holds, then exits). Unblocks signals.
void install_signals();

// cdp.database: the database every cdp worker connects to.
void define_gucs();
const char* database();

// In a worker's main, after its signal handlers: waits quietly until
// cdp.database exists (a server may start before CREATE DATABASE, and
// connecting to a missing database is FATAL), then connects to it as
// application `name`, with the settings every cdp worker runs with. JIT is
// off: compiling a plan costs tens of milliseconds, more than the small,
// frequent statements of a worker ever win back, and it shows in latency.
void connect(const char* name);

// Start a transaction with an SPI connection and a snapshot; commit it.
// Both throw PgError on failure (see guard.hpp).
void begin(const char* activity);
// The same, running as `role` (when it exists) until commit or abort: a
// worker does its work with no more privileges than that role has.
void begin_as(const char* activity, const char* role);
void commit();
// Inside a transaction: whether CREATE EXTENSION cdp has run in this database.
bool extension_installed();
// Registers a background worker of this library, restarted 2 s after a
// crash, connecting to a database once recovery has finished.
void register_worker(const char* name, const char* type, const char* function, int arg = 0);

// After an exception: roll back whatever is open and log why.
void abort(const char* who, const std::string& why);

// One unit of a worker's work: f runs in its own transaction, if the
// extension exists in this database. An error rolls it back and is logged;
// returns whether f ran and committed.
template <class F>
bool in_transaction(const char* what, F&& f) {
  try {
    begin(what);
    bool installed = extension_installed();
    if (installed) f();
    commit();
    return installed;
  } catch (const std::exception& e) {
    abort(what, e.what());
    return false;
  }
}

}  // namespace cdp::pg::worker
