#include "pg/ingest/store.hpp"

#include <string>
#include <unordered_set>

#include "pg/runtime/guard.hpp"
#include "pg/runtime/shared.hpp"

extern "C" {
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
}

namespace cdp::pg {
namespace {

// One statement writes a whole batch: new (source, messageId) pairs claim their
// row in the dedup ledger, and only those go on into cdp.events. A concurrent
// writer of the same messageId waits on the ledger's unique index and then
// sees it as taken, so a message is stored once even across sessions.
// New (source, messageId) pairs claim their row in the dedup ledger first; only
// those go on into cdp.events. A concurrent writer of the same messageId waits
// on the ledger's unique index and then sees it as taken, so a message is
// stored once even across sessions. Two statements, no join: cheaper than one.
constexpr const char* kClaimIds = R"SQL(
insert into cdp.message_ids (source_id, message_id, received_at)
select * from unnest($1::int4[], $2::text[], $3::timestamptz[])
on conflict do nothing
returning source_id, message_id
)SQL";

constexpr const char* kInsertEvents = R"SQL(
insert into cdp.events (received_at, source_id, message_id, type, event, name, category,
                        user_id, anonymous_id, group_id, previous_id, "timestamp",
                        original_timestamp, sent_at, properties, traits, context, integrations)
select i.received_at, i.source_id, i.message_id, i.type, i.event, i.name, i.category,
       i.user_id, i.anonymous_id, i.group_id, i.previous_id, i.ts, i.original_timestamp,
       i.sent_at, i.properties::jsonb, i.traits::jsonb, i.context::jsonb, i.integrations::jsonb
  from unnest($1::int4[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
              $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
              $12::timestamptz[], $13::timestamptz[], $14::timestamptz[],
              $15::text[], $16::text[], $17::text[], $18::text[])
    as i(source_id, received_at, message_id, type, event, name, category, user_id,
         anonymous_id, group_id, previous_id, ts, original_timestamp, sent_at,
         properties, traits, context, integrations)
)SQL";
constexpr int kEventArgs = 18;

constexpr const char* kQuarantine = R"SQL(
insert into cdp.quarantine (source_id, received_at, message_id, field, reason, raw)
select * from unnest($1::int4[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[])
)SQL";
constexpr int kQuarantineArgs = 6;

struct Plans {
  Oid events_relid = InvalidOid;
  SPIPlanPtr claim_ids = nullptr, insert_events = nullptr, quarantine = nullptr, source = nullptr,
             partitions = nullptr;
  TimestampTz covered_from = 0, covered_until = 0;  // partitions known to exist
  bool callback_registered = false;
};
Plans plans;

// Partitions created by a transaction that aborts do not exist: forget them.
void on_xact(XactEvent event, void*) {
  if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
    plans.covered_from = plans.covered_until = 0;
}

// Likewise a rolled-back savepoint (or PL/pgSQL exception block).
void on_subxact(SubXactEvent event, SubTransactionId, SubTransactionId, void*) {
  if (event == SUBXACT_EVENT_ABORT_SUB) plans.covered_from = plans.covered_until = 0;
}

SPIPlanPtr prepare(const char* sql, int nargs, Oid* types) {
  SPIPlanPtr p = SPI_prepare(sql, nargs, types);
  if (p == nullptr)
    elog(ERROR, "cdp: could not prepare statement: %s", SPI_result_code_string(SPI_result));
  SPI_keepplan(p);
  return p;
}

// Plans are kept for the backend's life, and prepared again if the extension
// was dropped and created again (the events table then has a new OID).
void ensure_plans() {
  call([] {
    Oid ns = get_namespace_oid("cdp", false);
    Oid relid = get_relname_relid("events", ns);
    if (!OidIsValid(relid)) elog(ERROR, "cdp: table cdp.events is missing");
    if (relid == plans.events_relid) return;
    if (!plans.callback_registered) {
      RegisterXactCallback(on_xact, nullptr);
      RegisterSubXactCallback(on_subxact, nullptr);
      plans.callback_registered = true;
    }
    for (SPIPlanPtr p : {plans.claim_ids, plans.insert_events, plans.quarantine, plans.source, plans.partitions})
      if (p) SPI_freeplan(p);
    Oid ev[kEventArgs] = {INT4ARRAYOID, TIMESTAMPTZARRAYOID};
    for (int i = 2; i < kEventArgs; i++) ev[i] = TEXTARRAYOID;
    for (int i = 11; i < 14; i++) ev[i] = TIMESTAMPTZARRAYOID;
    Oid q[kQuarantineArgs] = {INT4ARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID,
                              TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
    Oid text_arg[1] = {TEXTOID}, ts_arg[1] = {TIMESTAMPTZOID};
    Oid claim[3] = {INT4ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};
    plans.claim_ids = prepare(kClaimIds, 3, claim);
    plans.insert_events = prepare(kInsertEvents, kEventArgs, ev);
    plans.quarantine = prepare(kQuarantine, kQuarantineArgs, q);
    plans.source = prepare("select cdp.source_for_key($1)", 1, text_arg);
    plans.partitions = prepare("select cdp.ensure_partitions($1)", 1, ts_arg);
    plans.covered_from = plans.covered_until = 0;
    plans.events_relid = relid;
  });
}

// Column arrays for SPI parameters. Only called inside pg::call.
struct Columns {
  int rows;
  Datum* values[kEventArgs];
  bool* nulls[kEventArgs];

  void init(int n, int ncols) {
    rows = n;
    for (int c = 0; c < ncols; c++) {
      values[c] = static_cast<Datum*>(palloc(sizeof(Datum) * (n ? n : 1)));
      nulls[c] = static_cast<bool*>(palloc0(sizeof(bool) * (n ? n : 1)));
    }
  }
  void text(int c, int r, const std::string& s) {
    nulls[c][r] = s.empty();
    values[c][r] = s.empty() ? 0 : PointerGetDatum(cstring_to_text_with_len(s.data(), s.size()));
  }
  void time(int c, int r, const std::optional<Micros>& t) {
    nulls[c][r] = !t;
    values[c][r] = t ? TimestampTzGetDatum(to_pg(*t)) : 0;
  }
  Datum array(int c, Oid elem) const {
    int dims[1] = {rows}, lbs[1] = {1};
    int16 len = elem == TEXTOID ? -1 : elem == INT4OID ? 4 : 8;
    char align = elem == TEXTOID || elem == INT4OID ? TYPALIGN_INT : TYPALIGN_DOUBLE;
    return PointerGetDatum(
        construct_md_array(values[c], nulls[c], 1, dims, lbs, elem, len, elem != TEXTOID, align));
  }
};

void execute(SPIPlanPtr plan, Datum* args, int expected) {
  int rc = SPI_execute_plan(plan, args, nullptr, false, 0);
  if (rc != expected) elog(ERROR, "cdp: statement failed: %s", SPI_result_code_string(rc));
}

std::string dedup_key(int source_id, const std::string& message_id) {
  return std::to_string(source_id) + '\x1f' + message_id;
}

// Claims the rows' (source, messageId) in the dedup ledger; returns those that were new.
std::unordered_set<std::string> claim_ids(const std::vector<const Incoming*>& rows) {
  int n = static_cast<int>(rows.size());
  int returned = 0;
  int* ret_source = nullptr;
  char** ret_id = nullptr;
  call([&] {
    Columns c;
    c.init(n, 3);
    for (int r = 0; r < n; r++) {
      c.values[0][r] = Int32GetDatum(rows[r]->source_id);
      c.text(1, r, rows[r]->outcome->event->message_id);
      c.time(2, r, rows[r]->received_at);
    }
    Datum args[3] = {c.array(0, INT4OID), c.array(1, TEXTOID), c.array(2, TIMESTAMPTZOID)};
    execute(plans.claim_ids, args, SPI_OK_INSERT_RETURNING);
    returned = static_cast<int>(SPI_processed);
    ret_source = static_cast<int*>(palloc(sizeof(int) * (returned + 1)));
    ret_id = static_cast<char**>(palloc(sizeof(char*) * (returned + 1)));
    for (int i = 0; i < returned; i++) {
      bool isnull;
      HeapTuple t = SPI_tuptable->vals[i];
      ret_source[i] = DatumGetInt32(SPI_getbinval(t, SPI_tuptable->tupdesc, 1, &isnull));
      ret_id[i] = TextDatumGetCString(SPI_getbinval(t, SPI_tuptable->tupdesc, 2, &isnull));
    }
  });
  std::unordered_set<std::string> claimed;
  for (int i = 0; i < returned; i++) claimed.insert(dedup_key(ret_source[i], ret_id[i]));
  return claimed;
}

void insert_events(const std::vector<const Incoming*>& rows) {
  int n = static_cast<int>(rows.size());
  call([&] {
    Columns c;
    c.init(n, kEventArgs);
    for (int r = 0; r < n; r++) {
      const Event& e = *rows[r]->outcome->event;
      c.values[0][r] = Int32GetDatum(rows[r]->source_id);
      c.time(1, r, rows[r]->received_at);
      c.text(2, r, e.message_id);
      c.values[3][r] = CStringGetTextDatum(message_type_name(e.type));
      c.text(4, r, e.event);
      c.text(5, r, e.name);
      c.text(6, r, e.category);
      c.text(7, r, e.user_id);
      c.text(8, r, e.anonymous_id);
      c.text(9, r, e.group_id);
      c.text(10, r, e.previous_id);
      c.time(11, r, e.timestamp);
      c.time(12, r, e.original_timestamp);
      c.time(13, r, e.sent_at);
      c.text(14, r, e.properties);
      c.text(15, r, e.traits);
      c.text(16, r, e.context);
      c.text(17, r, e.integrations);
    }
    Datum args[kEventArgs];
    args[0] = c.array(0, INT4OID);
    args[1] = c.array(1, TIMESTAMPTZOID);
    for (int i = 2; i < kEventArgs; i++) args[i] = c.array(i, i >= 11 && i < 14 ? TIMESTAMPTZOID : TEXTOID);
    execute(plans.insert_events, args, SPI_OK_INSERT);
  });
}

void quarantine(const std::vector<const Incoming*>& rows) {
  int n = static_cast<int>(rows.size());
  call([&] {
    Columns c;
    c.init(n, kQuarantineArgs);
    for (int r = 0; r < n; r++) {
      const MessageOutcome& m = *rows[r]->outcome;
      c.values[0][r] = Int32GetDatum(rows[r]->source_id);
      c.time(1, r, rows[r]->received_at);
      c.text(2, r, m.rejection.message_id);
      c.text(3, r, m.rejection.field);
      c.values[4][r] = CStringGetTextDatum(m.rejection.reason().c_str());
      c.text(5, r, m.rejection.raw);
    }
    Datum args[kQuarantineArgs] = {c.array(0, INT4OID), c.array(1, TIMESTAMPTZOID),
                                   c.array(2, TEXTOID), c.array(3, TEXTOID),
                                   c.array(4, TEXTOID), c.array(5, TEXTOID)};
    execute(plans.quarantine, args, SPI_OK_INSERT);
  });
}

}  // namespace

std::vector<MessageStatus> store_messages(const std::vector<Incoming>& in) {
  ensure_plans();
  std::vector<MessageStatus> status(in.size(), MessageStatus::Rejected);
  std::vector<const Incoming*> fresh, rejected;
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < in.size(); i++) {
    const MessageOutcome& m = *in[i].outcome;
    if (!m.ok()) {
      rejected.push_back(&in[i]);
    } else if (seen.insert(dedup_key(in[i].source_id, m.event->message_id)).second) {
      fresh.push_back(&in[i]);
      status[i] = MessageStatus::Accepted;  // until the ledger says otherwise
    } else {
      status[i] = MessageStatus::Duplicate;  // repeated within this write
    }
  }
  if (!fresh.empty()) {
    auto claimed = claim_ids(fresh);
    std::vector<const Incoming*> rows;
    rows.reserve(claimed.size());
    for (size_t i = 0; i < in.size(); i++) {
      if (status[i] != MessageStatus::Accepted) continue;
      if (claimed.count(dedup_key(in[i].source_id, in[i].outcome->event->message_id)))
        rows.push_back(&in[i]);
      else
        status[i] = MessageStatus::Duplicate;
    }
    if (!rows.empty()) {
      insert_events(rows);
      call([] { note_events_written(); });
    }
  }
  if (!rejected.empty()) quarantine(rejected);
  return status;
}

void ensure_partition_for(TimestampTz at) {
  ensure_plans();
  if (at >= plans.covered_from && at + USECS_PER_DAY < plans.covered_until) return;
  call([&] {
    Datum arg = TimestampTzGetDatum(at);
    execute(plans.partitions, &arg, SPI_OK_SELECT);
    bool isnull;
    Datum until = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
    plans.covered_until = DatumGetTimestampTz(until);
    plans.covered_from = at - at % USECS_PER_DAY;
  });
}

int source_for_key(const char* write_key) {
  ensure_plans();
  bool found = false;
  int id = 0;
  call([&] {
    Datum arg = write_key ? CStringGetTextDatum(write_key) : 0;
    int rc = SPI_execute_plan(plans.source, &arg, write_key ? " " : "n", false, 1);
    if (rc != SPI_OK_SELECT) elog(ERROR, "cdp: source lookup failed: %s", SPI_result_code_string(rc));
    bool isnull = true;
    Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
    found = !isnull;
    id = isnull ? 0 : DatumGetInt32(d);
  });
  if (!found)
    throw Error(ErrorKind::Unauthorized, write_key ? "writeKey" : "source",
                write_key ? "is unknown or revoked" : "the built-in \"sql\" source is revoked");
  return id;
}

}  // namespace cdp::pg
