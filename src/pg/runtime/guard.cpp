#include "pg/runtime/guard.hpp"

#include <cstdio>
#include <new>

namespace cdp::pg {

void throw_pg_error(MemoryContext mcx) {
  MemoryContextSwitchTo(mcx);
  ErrorData* edata = CopyErrorData();
  FlushErrorState();
  throw PgError(edata);
}

int sqlstate_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidInput: return ERRCODE_INVALID_PARAMETER_VALUE;          // 22023
    case ErrorKind::MalformedJson: return ERRCODE_INVALID_TEXT_REPRESENTATION;     // 22P02
    case ErrorKind::TooLarge: return ERRCODE_PROGRAM_LIMIT_EXCEEDED;               // 54000
    case ErrorKind::Unauthorized: return ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;  // 28000
    case ErrorKind::Internal: break;
  }
  return ERRCODE_INTERNAL_ERROR;
}

void capture(PendingError& out) noexcept {
  try {
    throw;
  } catch (const PgError& e) {
    out.pg = e.edata;
  } catch (const Error& e) {
    out.sqlstate = sqlstate_for(e.kind());
    std::snprintf(out.message, sizeof out.message, "%s", e.what());
    std::snprintf(out.field, sizeof out.field, "%s", e.field().c_str());
  } catch (const std::bad_alloc&) {
    out.sqlstate = ERRCODE_OUT_OF_MEMORY;
    std::snprintf(out.message, sizeof out.message, "out of memory in cdp");
  } catch (const std::exception& e) {
    out.sqlstate = ERRCODE_INTERNAL_ERROR;
    std::snprintf(out.message, sizeof out.message, "cdp internal error: %s", e.what());
  } catch (...) {
    out.sqlstate = ERRCODE_INTERNAL_ERROR;
    std::snprintf(out.message, sizeof out.message, "cdp internal error: unknown exception");
  }
}

void raise(const PendingError& err) {
  if (err.pg) ReThrowError(err.pg);
  if (err.field[0])
    ereport(ERROR, (errcode(err.sqlstate), errmsg("%s", err.message),
                    errdetail("The field \"%s\" breaks a rule.", err.field)));
  ereport(ERROR, (errcode(err.sqlstate), errmsg("%s", err.message)));
  pg_unreachable();
}

}  // namespace cdp::pg
