#include "pg/ingest/store.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "core/http_metrics.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/shared.hpp"
#include "pg/runtime/spi.hpp"

extern "C" {
#include "access/xact.h"
#include "catalog/namespace.h"
#include "utils/lsyscache.h"
}

namespace cdp::pg {
namespace {

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

constexpr const char* kQuarantine = R"SQL(
insert into cdp.quarantine (source_id, received_at, message_id, field, reason, raw)
select * from unnest($1::int4[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[])
)SQL";

constexpr const char* kViolations = R"SQL(
insert into cdp.violations (received_at, source_id, message_id, message_type, event, plan_id, plan_version,
                            type, path, rule, value_type, message, blocked)
select * from unnest($1::timestamptz[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::int4[],
                     $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bool[])
)SQL";

// The days the partitions of cdp.events are known to cover. Partitions made
// by a transaction that aborts do not exist, nor do those of an events table
// dropped with the extension and created again (it then has a new OID): the
// range is forgotten then. (The statements' plans are sql::'s, kept for the
// backend's life; Postgres plans them again when the tables change.)
struct Coverage {
  Oid events_relid = InvalidOid;
  TimestampTz from = 0, until = 0;
  bool callbacks_registered = false;
};
Coverage coverage;

void on_xact(XactEvent event, void*) {
  if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT) coverage.from = coverage.until = 0;
}

// Likewise a rolled-back savepoint (or PL/pgSQL exception block).
void on_subxact(SubXactEvent event, SubTransactionId, SubTransactionId, void*) {
  if (event == SUBXACT_EVENT_ABORT_SUB) coverage.from = coverage.until = 0;
}

void check_events_table() {
  call([] {
    Oid ns = get_namespace_oid("cdp", false);
    Oid relid = get_relname_relid("events", ns);
    if (!OidIsValid(relid)) elog(ERROR, "cdp: table cdp.events is missing");
    if (relid == coverage.events_relid) return;
    if (!coverage.callbacks_registered) {
      RegisterXactCallback(on_xact, nullptr);
      RegisterSubXactCallback(on_subxact, nullptr);
      coverage.callbacks_registered = true;
    }
    coverage.from = coverage.until = 0;
    coverage.events_relid = relid;
  });
}

// The statements' columns, read by sql:: straight from the messages (no copy
// of a payload string on the C++ side): ctx is the batch, a Batch.
using Batch = std::vector<const Incoming*>;
const Incoming& incoming_at(const void* batch, size_t r) { return *(*static_cast<const Batch*>(batch))[r]; }
const Event& event_at(const void* batch, size_t r) { return *incoming_at(batch, r).outcome->event; }
const Rejection& rejection_at(const void* batch, size_t r) { return incoming_at(batch, r).outcome->rejection; }

int source_of(const void* batch, size_t r) { return incoming_at(batch, r).source_id; }
std::optional<Micros> received_of(const void* batch, size_t r) { return incoming_at(batch, r).received_at; }
std::string_view type_of(const void* batch, size_t r) { return message_type_name(event_at(batch, r).type); }
std::optional<Micros> timestamp_of(const void* batch, size_t r) { return event_at(batch, r).timestamp; }
template <std::string Event::*field>
std::string_view event_text(const void* batch, size_t r) {
  return event_at(batch, r).*field;
}
template <std::optional<Micros> Event::*field>
std::optional<Micros> event_time(const void* batch, size_t r) {
  return event_at(batch, r).*field;
}
template <std::string Rejection::*field>
std::string_view rejection_text(const void* batch, size_t r) {
  return rejection_at(batch, r).*field;
}

// The Params of a batch's columns.
struct Columns {
  const Batch& batch;
  sql::Param text(sql::TextAt read) const { return sql::text_column(batch.size(), &batch, read); }
  sql::Param time(sql::TimeAt read) const { return sql::timestamptz_column(batch.size(), &batch, read); }
  sql::Param int4(sql::Int4At read) const { return sql::int4_column(batch.size(), &batch, read); }
};

std::string dedup_key(int source_id, std::string_view message_id) {
  std::string key = std::to_string(source_id);
  key += '\x1f';
  key += message_id;
  return key;
}

// Claims the rows' (source, messageId) in the dedup ledger; returns those that were new.
std::unordered_set<std::string> claim_ids(const Batch& rows) {
  Columns c{rows};
  sql::Rows claimed = sql::select(
      kClaimIds, {c.int4(source_of), c.text(event_text<&Event::message_id>), c.time(received_of)},
      SPI_OK_INSERT_RETURNING);
  std::unordered_set<std::string> out;
  for (size_t r = 0; r < claimed.size(); r++) out.insert(dedup_key(claimed.int4(r, 0), claimed.text(r, 1)));
  return out;
}

void insert_events(const Batch& rows) {
  Columns c{rows};
  sql::run(kInsertEvents,
           {c.int4(source_of), c.time(received_of), c.text(event_text<&Event::message_id>), c.text(type_of),
            c.text(event_text<&Event::event>), c.text(event_text<&Event::name>),
            c.text(event_text<&Event::category>), c.text(event_text<&Event::user_id>),
            c.text(event_text<&Event::anonymous_id>), c.text(event_text<&Event::group_id>),
            c.text(event_text<&Event::previous_id>), c.time(timestamp_of),
            c.time(event_time<&Event::original_timestamp>), c.time(event_time<&Event::sent_at>),
            c.text(event_text<&Event::properties>), c.text(event_text<&Event::traits>),
            c.text(event_text<&Event::context>), c.text(event_text<&Event::integrations>)},
           SPI_OK_INSERT);
}

void quarantine(const Batch& rows) {
  Columns c{rows};
  std::vector<std::string> reasons;
  reasons.reserve(rows.size());
  for (const Incoming* in : rows) reasons.push_back(in->outcome->rejection.reason());
  sql::run(kQuarantine,
           {c.int4(source_of), c.time(received_of), c.text(rejection_text<&Rejection::message_id>),
            c.text(rejection_text<&Rejection::field>), sql::texts(reasons), c.text(rejection_text<&Rejection::raw>)},
           SPI_OK_INSERT);
}

// What the tracking plans found in the messages stored (kept) and in those
// they blocked, a row per violation. Duplicates and other rejections: none.
struct ViolationRows {
  std::vector<Micros> received;
  std::vector<int> source, plan, version;
  std::vector<std::string> message_id, type_of_message, event, type, path, rule, value_type, message;
  std::vector<bool> blocked;

  std::vector<const Incoming*> messages;

  void add(const Incoming& in, MessageStatus status) {
    const MessageOutcome& m = *in.outcome;
    if (m.plan.violations.empty() || status == MessageStatus::Duplicate) return;
    if (!m.ok() && !m.plan.blocked) return;
    messages.push_back(&in);
    for (const plans::Violation& v : m.plan.violations) {
      received.push_back(in.received_at);
      source.push_back(in.source_id);
      plan.push_back(static_cast<int>(m.plan.plan_id));
      version.push_back(m.plan.version);
      message_id.push_back(m.ok() ? m.event->message_id : m.rejection.message_id);
      type_of_message.push_back(m.plan.message_type);
      event.push_back(m.plan.event);
      type.push_back(plans::violation_type_name(v.type));
      path.push_back(v.path);
      rule.push_back(v.rule);
      value_type.push_back(v.value_type);
      message.push_back(v.message);
      blocked.push_back(m.plan.blocked);
    }
  }

  void store() const {
    if (received.empty()) return;
    sql::run(kViolations,
             {sql::timestamptzs(received), sql::int4s(source), sql::texts(message_id, true), sql::texts(type_of_message),
              sql::texts(event, true), sql::int4s(plan), sql::int4s(version), sql::texts(type), sql::texts(path),
              sql::texts(rule), sql::texts(value_type, true), sql::texts(message), sql::bools(blocked)},
             SPI_OK_INSERT);
    count();
  }

  // Into /metrics (cdp_tracking_plan_violations_total), once stored.
  void count() const {
    HttpMetrics* metrics = nullptr;
    call([&] { metrics = shared_metrics(); });
    if (!metrics) return;
    sql::Rows names = sql::select("select id, name from cdp.sources where id = any($1)", {sql::int4s(source)});
    std::unordered_map<int, std::string> name_of;
    for (size_t r = 0; r < names.size(); r++) name_of.emplace(names.int4(r, 0), names.str(r, 1));
    for (const Incoming* in : messages)
      metrics->count_violations(in->source_id, [&] { return name_of[in->source_id]; }, in->outcome->plan);
  }
};

}  // namespace

std::vector<MessageStatus> store_messages(const std::vector<Incoming>& in) {
  std::vector<MessageStatus> status(in.size(), MessageStatus::Rejected);
  Batch fresh, rejected;
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
    Batch rows;
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
  ViolationRows violations;
  for (size_t i = 0; i < in.size(); i++) violations.add(in[i], status[i]);
  violations.store();
  return status;
}

void ensure_partition_for(TimestampTz at) {
  check_events_table();
  if (at >= coverage.from && at + USECS_PER_DAY < coverage.until) return;
  Micros until = sql::select("select cdp.ensure_partitions($1)", {sql::timestamptz(from_pg(at))}).timestamptz(0, 0);
  coverage.until = to_pg(until);
  coverage.from = at - at % USECS_PER_DAY;
}

int source_for_key(const std::string& write_key) {
  sql::Rows source = sql::select("select cdp.source_for_key($1)", {sql::text(write_key)});  // "": NULL
  if (source.is_null(0, 0))
    throw Error(ErrorKind::Unauthorized, write_key.empty() ? "source" : "writeKey",
                write_key.empty() ? "the built-in \"sql\" source is revoked" : "is unknown or revoked");
  return source.int4(0, 0);
}

}  // namespace cdp::pg
