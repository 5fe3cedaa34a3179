// The wall between C++ and Postgres errors, in both directions.
//
// Postgres -> C++: pg::call(f) runs Postgres code under its own sigsetjmp; an
// ereport(ERROR) inside becomes a C++ PgError exception, so C++ destructors
// on the way out still run (a longjmp would skip them).
//
// C++ -> Postgres: every SQL-callable function body runs in pg::entry(); any
// exception is caught, the C++ stack unwinds completely, and only then is the
// error raised with ereport and a proper SQLSTATE (or the original Postgres
// error rethrown). No exception ever crosses into Postgres.
//
// Inside f of pg::call, declare no C++ object with a destructor: a longjmp out
// of f skips it. Between a caught Postgres error and its rethrow only C++
// destructors run, never Postgres code.
#pragma once
extern "C" {
#include "postgres.h"
#include "fmgr.h"
}
#include <exception>

#include "core/error.hpp"

namespace cdp::pg {

// A Postgres error caught by pg::call, waiting to be rethrown by pg::entry.
class PgError : public std::exception {
 public:
  explicit PgError(ErrorData* e) : edata(e) {}
  const char* what() const noexcept override { return edata->message ? edata->message : "postgres error"; }
  ErrorData* edata;
};

[[noreturn]] void throw_pg_error(MemoryContext mcx);

template <class F>
void call(F&& f) {
  MemoryContext mcx = CurrentMemoryContext;
  volatile bool failed = false;
  std::exception_ptr cxx;  // a C++ exception must not unwind through PG_TRY's frame
  PG_TRY();
  {
    try {
      f();
    } catch (...) {
      cxx = std::current_exception();
    }
  }
  PG_CATCH();
  {
    failed = true;
  }
  PG_END_TRY();
  if (failed) throw_pg_error(mcx);
  if (cxx) std::rethrow_exception(cxx);
}

int sqlstate_for(ErrorKind kind);

// Raises the error described by the exception currently being handled.
// Copies what it needs into fixed buffers first, so nothing allocates here.
struct PendingError {
  ErrorData* pg = nullptr;
  int sqlstate = 0;
  char message[1024] = {0};
  char field[128] = {0};
};
void capture(PendingError& out) noexcept;
[[noreturn]] void raise(const PendingError& err);

template <class F>
Datum entry(F&& f) {
  PendingError err;
  try {
    return f();
  } catch (...) {
    capture(err);
  }
  raise(err);  // the C++ stack has unwound by now
}

}  // namespace cdp::pg
