// Transformations: a destination's options.transform names a SQL or PL/pgSQL
// function (event jsonb) returns jsonb that reshapes each message before the
// kind maps it, or returns null to drop it. The delivery worker runs it over
// a round's rows in one statement, as the destination's owner (a superuser
// owner's as cdp_admin: never with a superuser's rights), in a
// subtransaction under transform_timeout_ms. When that statement fails, each
// row runs alone so that only the rows that raise (or run out of time) are
// set aside, with the error, for the dead letters; the queue goes on.
#include "pg/delivery/delivery.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/spi.hpp"

extern "C" {
#include "access/xact.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/resowner.h"
#include "utils/timeout.h"
}

#include <deque>
#include <map>

namespace cdp::pg::delivery {
namespace {

TimeoutId timeout_id = MAX_TIMEOUTS;
volatile sig_atomic_t timed_out = false;

// In the SIGALRM handler: flags and a wake-up only.
void on_timeout() {
  timed_out = true;
  QueryCancelPending = true;
  InterruptPending = true;
  SetLatch(MyLatch);
}

// spi's plan cache is keyed by the statement's address: each text is kept
// for the life of the worker, one copy per distinct text.
const char* statement_for(const std::string& function) {
  static std::map<std::string, std::string> texts;
  auto [it, fresh] = texts.try_emplace(function);
  if (fresh)
    it->second = "select (" + function + "(x.p::jsonb))::text from unnest($1::text[]) with ordinality x(p, n) order by n";
  return it->second.c_str();
}

struct Saved {
  MemoryContext mcx;
  ResourceOwner owner;
  Oid user;
  int context;
};

// Runs the statement over `payloads` in a subtransaction as `role`; "" and
// the results, or the error (the subtransaction rolled back).
std::string run_once(const char* statement, Oid role, int timeout_ms, const std::vector<std::string>& payloads,
                     sql::Rows* out) {
  Saved s{};
  call([&] {
    s.mcx = CurrentMemoryContext;
    s.owner = CurrentResourceOwner;
    BeginInternalSubTransaction(nullptr);
    MemoryContextSwitchTo(s.mcx);
    GetUserIdAndSecContext(&s.user, &s.context);
    SetUserIdAndSecContext(role, s.context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
    timed_out = false;
    if (timeout_id != MAX_TIMEOUTS) enable_timeout_after(timeout_id, timeout_ms);
  });
  std::string error;
  try {
    *out = sql::select(statement, {sql::texts(payloads)});
  } catch (const PgError& e) {
    error = timed_out ? "transformation ran longer than transform_timeout_ms (" + std::to_string(timeout_ms) + " ms)"
                      : std::string("transformation failed: ") + e.what();
  }
  bool failed = !error.empty();
  call([&] {
    if (timeout_id != MAX_TIMEOUTS) disable_timeout(timeout_id, false);
    if (timed_out) QueryCancelPending = false;  // ran out after the statement ended
    if (failed) {
      RollbackAndReleaseCurrentSubTransaction();  // restores the user as it was
    } else {
      SetUserIdAndSecContext(s.user, s.context);
      ReleaseCurrentSubTransaction();
    }
    MemoryContextSwitchTo(s.mcx);
    CurrentResourceOwner = s.owner;
  });
  return error;
}

Oid run_as(const std::string& owner) {
  Oid role = InvalidOid;
  call([&] {
    role = get_role_oid(owner.c_str(), true);
    if (!OidIsValid(role) || superuser_arg(role)) role = get_role_oid("cdp_admin", false);
  });
  return role;
}

void apply(cdp::delivery::QueuedRow& row, const sql::Rows& result, size_t r) {
  if (result.is_null(r, 0)) {
    row.fate = cdp::delivery::QueuedRow::Fate::Drop;
    row.why = "dropped by the transformation";
  } else {
    row.payload = result.str(r, 0);
  }
}

}  // namespace

void register_transform_timeout() { timeout_id = RegisterTimeout(USER_TIMEOUT, on_timeout); }

void transform(const std::string& function, const std::string& owner, int timeout_ms,
               std::vector<cdp::delivery::QueuedRow*>& rows) {
  if (rows.empty()) return;
  // The name is checked to be two plain identifiers (core/delivery.cpp), so it
  // goes in as written and folds to lower case as it did when it was checked.
  const char* statement = statement_for(function);
  Oid role = run_as(owner);
  std::vector<std::string> payloads;
  for (auto* r : rows) payloads.push_back(r->payload);
  sql::Rows result;
  if (run_once(statement, role, timeout_ms, payloads, &result).empty() && result.size() == rows.size()) {
    for (size_t i = 0; i < rows.size(); i++) apply(*rows[i], result, i);
    return;
  }
  // Something raised: find which rows, each alone.
  for (auto* r : rows) {
    sql::Rows one;
    std::string error = run_once(statement, role, timeout_ms, {r->payload}, &one);
    if (error.empty() && one.size() == 1) {
      apply(*r, one, 0);
    } else {
      r->fate = cdp::delivery::QueuedRow::Fate::Fail;
      r->why = error.empty() ? "transformation returned no row" : error;
    }
  }
}

}  // namespace cdp::pg::delivery
