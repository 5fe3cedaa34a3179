// The processor: binds committed events to profiles through the identity
// graph and folds their traits, one batch per transaction.
//
// No committed event is skipped, whatever order transactions commit in: events
// are read in (txid, id) order and only from transactions older than the
// snapshot's xmin, which have all finished, so nothing can still appear below
// the cursor. The cursor moves in the same transaction as the results.
#include <set>
#include <string>
#include <vector>

#include "core/batch_writes.hpp"
#include "pg/audience/audience.hpp"
#include "pg/delivery/delivery.hpp"
#include "pg/privacy/privacy.hpp"
#include "pg/processor/internal.hpp"
#include "pg/runtime/guard.hpp"

extern "C" {
#include "utils/timestamp.h"
}

namespace cdp::pg::processor {

bool rebuilding = false;
size_t last_graph_identities = 0, last_graph_bytes = 0, last_graph_text = 0;
FirstEvent batch_first;

EventFacts event_facts(const sql::Rows& rows, size_t r, int first) {
  EventFacts e;
  e.id = rows.int8(r, first);
  e.type = parse_message_type(rows.text(r, first + 1)).value_or(MessageType::Track);
  e.source_id = rows.int4(r, first + 2);
  e.message_id = rows.str(r, first + 3);
  e.user_id = rows.str(r, first + 4);
  e.anonymous_id = rows.str(r, first + 5);
  e.previous_id = rows.str(r, first + 6);
  e.group_id = rows.str(r, first + 7);
  e.timestamp = rows.timestamptz(r, first + 8);
  e.traits = rows.str(r, first + 9);
  e.context = rows.str(r, first + 10);
  e.properties = rows.str(r, first + 11);
  e.name = rows.str(r, first + 12);
  return e;
}

void ensure_processor_state() {
  if (!sql::select("select 1 from cdp.processor_state").empty()) return;
  call([] {
    ereport(WARNING,
            (errmsg("cdp: the row of cdp.processor_state was missing; it is made again"),
             errdetail("The cursor restarts after the last event bound to a profile (cdp.event_profiles)."),
             errhint("Do not delete from cdp.processor_state; to stop the processor set paused = true.")));
  });
  sql::run("insert into cdp.processor_state (cursor_txid, cursor_event)"
           " (select e.txid, e.id from cdp.events e"
           "   where exists (select from cdp.event_profiles ep where ep.event_id = e.id)"
           "   order by e.txid desc, e.id desc limit 1)"
           " union all (select '0'::xid8, 0) limit 1"
           " on conflict do nothing",
           SPI_OK_INSERT);
}

namespace {

struct Batch {
  std::vector<EventFacts> events;
  std::vector<std::string> txids;
};

Batch read_events(int limit, bool from_worker) {
  Batch b;
  sql::run("select pg_advisory_xact_lock(hashtext('cdp.processor'))", SPI_OK_SELECT);
  const char* state = "select paused, cursor_txid::text, cursor_event, pg_snapshot_xmin(pg_current_snapshot())::text"
                      " from cdp.processor_state";
  sql::Rows st = sql::select(state);
  if (st.empty()) {  // someone deleted the row
    ensure_processor_state();
    st = sql::select(state);
  }
  if (from_worker && st.boolean(0, 0)) return b;
  std::string cursor_txid = st.str(0, 1), xmin = st.str(0, 3);
  // The cursor goes in as parameters, so that it bounds the index scan.
  sql::Rows rows = sql::select(
      "select e.txid::text," EVENT_FACTS_COLUMNS
      " from cdp.events e"
      " where (e.txid, e.id) > ($2::xid8, $3) and e.txid < $4::xid8"
      " order by e.txid, e.id limit $1",
      {sql::int4(limit), sql::text(cursor_txid), sql::int8(st.int8(0, 2)), sql::text(xmin)});
  b.events.reserve(rows.size());
  b.txids.reserve(rows.size());
  for (size_t r = 0; r < rows.size(); r++) {
    b.txids.push_back(rows.str(r, 0));
    b.events.push_back(event_facts(rows, r, 1));
  }
  if (!b.events.empty()) batch_first = {b.txids.front(), b.events.front().id, b.events.size()};
  return b;
}

// Seeds the resolver with what the database knows about the batch's
// identifiers; returns the stored profiles it found.
std::vector<int64_t> seed(Resolver& resolver, const IdentityRules& rules, const Batch& b,
                          const std::vector<std::vector<Identifier>>& extracted) {
  std::set<std::pair<int, std::string>> wanted;
  for (size_t i = 0; i < b.events.size(); i++) {
    const EventFacts& e = b.events[i];
    for (auto& id : extracted[i]) wanted.insert({id.type, id.value});
    if (e.type == MessageType::Alias && !e.previous_id.empty())
      for (const char* name : {"user_id", "anonymous_id"})
        if (int t = rules.find(name); t >= 0)
          if (auto v = rules.normalise(t, e.previous_id)) wanted.insert({t, *v});
  }
  std::vector<std::string> types, values, limited;
  for (auto& [t, v] : wanted) {
    types.push_back(rules.types()[t].name);
    values.push_back(v);
  }
  for (auto& t : rules.types())
    if (t.limit > 0) limited.push_back(t.name);
  sql::Rows found = sql::select(
      "with found as (select i.* from cdp.identities i"
      "   join unnest($1::text[], $2::text[]) k(type, value) using (type, value))"
      " select type, value, profile_id, first_seen from found"
      " union"  // array_position, not = any(): keeps the planner on the profile index
      " select i.type, i.value, i.profile_id, i.first_seen from cdp.identities i"
      "  where i.profile_id in (select profile_id from found)"
      "    and array_position($3::text[], i.type) is not null",
      {sql::texts(types), sql::texts(values), sql::texts(limited)});
  std::set<int64_t> known;
  for (size_t r = 0; r < found.size(); r++) known.insert(found.int8(r, 2));
  std::vector<int64_t> ids(known.begin(), known.end());
  sql::Rows profiles = sql::select(
      "select profile_id, merge_count, identifier_count, flagged from cdp.profiles where profile_id = any($1)",
      {sql::int8s(ids)});
  for (size_t r = 0; r < profiles.size(); r++)
    resolver.add_profile(profiles.int8(r, 0), profiles.int4(r, 1), profiles.int4(r, 2), profiles.boolean(r, 3));
  for (size_t r = 0; r < found.size(); r++)
    if (int t = rules.find(found.text(r, 0)); t >= 0)
      resolver.add_identity({t, found.str(r, 1)}, found.int8(r, 2), found.timestamptz(r, 3));
  return ids;
}

std::vector<StoredProfile> load_profiles(const std::vector<int64_t>& ids) {
  sql::Rows rows = sql::select(
      "select profile_id, traits::text, trait_sources::text, first_seen, last_seen, event_count,"
      " merge_count, flagged from cdp.profiles where profile_id = any($1)",
      {sql::int8s(ids)});
  std::vector<StoredProfile> out;
  for (size_t r = 0; r < rows.size(); r++)
    out.push_back({rows.int8(r, 0), rows.str(r, 1), rows.str(r, 2), rows.timestamptz(r, 3), rows.timestamptz(r, 4),
                   rows.int8(r, 5), rows.int4(r, 6), rows.boolean(r, 7)});
  return out;
}

std::vector<StoredAccount> load_accounts(const std::vector<std::string>& groups) {
  sql::Rows rows = sql::select("select group_id, traits::text, trait_sources::text, first_seen, last_seen"
                               " from cdp.accounts where group_id = any($1)",
                               {sql::texts(groups)});
  std::vector<StoredAccount> out;
  for (size_t r = 0; r < rows.size(); r++)
    out.push_back({rows.str(r, 0), rows.str(r, 1), rows.str(r, 2), rows.timestamptz(r, 3), rows.timestamptz(r, 4)});
  return out;
}

// Real ids for the `n` profiles the resolver made.
std::vector<int64_t> new_profile_ids(int64_t n) {
  sql::Rows rows = sql::select("select nextval('cdp.profile_id_seq') from generate_series(1, $1)", {sql::int8(n)});
  std::vector<int64_t> ids;
  for (size_t r = 0; r < rows.size(); r++) ids.push_back(rows.int8(r, 0));
  return ids;
}

// Column arrays of a vector of rows, for unnest().
template <class Row, class T>
std::vector<T> column(const std::vector<Row>& rows, T Row::*field) {
  std::vector<T> out;
  out.reserve(rows.size());
  for (const Row& r : rows) out.push_back(r.*field);
  return out;
}

void write_profile_map(const BatchWrites& w) {
  using M = BatchWrites::MapRow;
  using G = BatchWrites::Merged;
  auto map_ids = column(w.new_profiles, &M::profile), map_canonical = column(w.new_profiles, &M::canonical);
  auto away = column(w.merged, &G::from), into = column(w.merged, &G::into);
  sql::run("insert into cdp.profile_map (profile_id, canonical_id) select * from unnest($1::int8[], $2::int8[])",
           {sql::int8s(map_ids), sql::int8s(map_canonical)}, SPI_OK_INSERT);
  sql::run("update cdp.profile_map m set canonical_id = x.c from unnest($1::int8[], $2::int8[]) x(p, c)"
           " where m.canonical_id = x.p",
           {sql::int8s(away), sql::int8s(into)}, SPI_OK_UPDATE);
  sql::run("update cdp.identities i set profile_id = x.c from unnest($1::int8[], $2::int8[]) x(p, c)"
           " where i.profile_id = x.p",
           {sql::int8s(away), sql::int8s(into)}, SPI_OK_UPDATE);
  sql::run("delete from cdp.profiles where profile_id = any($1)", {sql::int8s(away)}, SPI_OK_DELETE);
}

void write_identities(const BatchWrites& w) {
  using I = BatchWrites::IdentityRow;
  using M = BatchWrites::MergeRow;
  auto type = column(w.identities, &I::type), value = column(w.identities, &I::value);
  auto profile = column(w.identities, &I::profile), origin = column(w.identities, &I::origin_profile);
  auto event = column(w.identities, &I::event_id);
  auto seen = column(w.identities, &I::first_seen);
  sql::run("insert into cdp.identities (type, value, profile_id, origin_profile, event_id, first_seen)"
           " select * from unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::timestamptz[])",
           {sql::texts(type), sql::texts(value), sql::int8s(profile), sql::int8s(origin), sql::int8s(event),
            sql::timestamptzs(seen)},
           SPI_OK_INSERT);
  auto from = column(w.merges, &M::from), into = column(w.merges, &M::into), merge_event = column(w.merges, &M::event_id);
  auto identifiers = column(w.merges, &M::identifiers);
  sql::run("insert into cdp.profile_merges (from_profile, into_profile, event_id, identifiers)"
           " select f, t, e, i::jsonb from unnest($1::int8[], $2::int8[], $3::int8[], $4::text[]) x(f, t, e, i)",
           {sql::int8s(from), sql::int8s(into), sql::int8s(merge_event), sql::texts(identifiers)}, SPI_OK_INSERT);
}

void write_profiles(const BatchWrites& w) {
  using P = BatchWrites::ProfileRow;
  auto id = column(w.profiles, &P::id), events = column(w.profiles, &P::events);
  auto traits = column(w.profiles, &P::traits), sources = column(w.profiles, &P::sources);
  auto first = column(w.profiles, &P::first_seen), last = column(w.profiles, &P::last_seen);
  auto merges = column(w.profiles, &P::merges);
  auto flagged = column(w.profiles, &P::flagged);
  sql::run("insert into cdp.profiles as p (profile_id, traits, trait_sources, first_seen, last_seen,"
           " event_count, merge_count, flagged, identifier_count)"
           " select id, t::jsonb, s::jsonb, nullif(f, 'epoch'), nullif(l, 'epoch'), ev, mg, fl,"
           "   (select count(*) from cdp.identities i where i.profile_id = x.id)"
           "   from unnest($1::int8[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],"
           "               $6::int8[], $7::int4[], $8::bool[]) x(id, t, s, f, l, ev, mg, fl)"
           " on conflict (profile_id) do update set traits = excluded.traits,"
           "   trait_sources = excluded.trait_sources, first_seen = excluded.first_seen,"
           "   last_seen = excluded.last_seen, event_count = excluded.event_count,"
           "   merge_count = excluded.merge_count, flagged = excluded.flagged,"
           "   identifier_count = excluded.identifier_count, updated_at = now()",
           {sql::int8s(id), sql::texts(traits), sql::texts(sources), sql::timestamptzs(first),
            sql::timestamptzs(last), sql::int8s(events), sql::int4s(merges), sql::bools(flagged)},
           SPI_OK_INSERT);
}

void write_bindings(const BatchWrites& w) {
  using E = BatchWrites::EventProfile;
  using R = BatchWrites::RefusalRow;
  auto ep_event = column(w.event_profiles, &E::event_id), ep_profile = column(w.event_profiles, &E::profile);
  sql::run("insert into cdp.event_profiles (event_id, profile_id) select * from unnest($1::int8[], $2::int8[])"
           " on conflict do nothing",
           {sql::int8s(ep_event), sql::int8s(ep_profile)}, SPI_OK_INSERT);
  auto event = column(w.refusals, &R::event_id), profile = column(w.refusals, &R::profile);
  auto other = column(w.refusals, &R::other_profile);
  auto type = column(w.refusals, &R::type), value = column(w.refusals, &R::value), rule = column(w.refusals, &R::rule);
  sql::run("insert into cdp.identity_refusals (event_id, profile_id, other_profile, type, value, rule)"
           " select e, p, nullif(o, 0), t, v, r from unnest($1::int8[], $2::int8[], $3::int8[], $4::text[],"
           " $5::text[], $6::text[]) x(e, p, o, t, v, r)",
           {sql::int8s(event), sql::int8s(profile), sql::int8s(other), sql::texts(type), sql::texts(value),
            sql::texts(rule)},
           SPI_OK_INSERT);
}

void write_accounts(const BatchWrites& w) {
  using A = BatchWrites::AccountRow;
  using PA = BatchWrites::ProfileAccount;
  auto group = column(w.accounts, &A::group_id), traits = column(w.accounts, &A::traits);
  auto sources = column(w.accounts, &A::sources);
  auto first = column(w.accounts, &A::first_seen), last = column(w.accounts, &A::last_seen);
  sql::run("insert into cdp.accounts as a (group_id, traits, trait_sources, first_seen, last_seen)"
           " select g, t::jsonb, s::jsonb, f, l from unnest($1::text[], $2::text[], $3::text[],"
           " $4::timestamptz[], $5::timestamptz[]) x(g, t, s, f, l)"
           " on conflict (group_id) do update set traits = excluded.traits,"
           "   trait_sources = excluded.trait_sources, first_seen = excluded.first_seen,"
           "   last_seen = excluded.last_seen",
           {sql::texts(group), sql::texts(traits), sql::texts(sources), sql::timestamptzs(first),
            sql::timestamptzs(last)},
           SPI_OK_INSERT);
  auto pa_profile = column(w.profile_accounts, &PA::profile);
  auto pa_group = column(w.profile_accounts, &PA::group_id);
  auto pa_seen = column(w.profile_accounts, &PA::first_seen);
  sql::run("insert into cdp.profile_accounts (profile_id, group_id, first_seen)"
           " select * from unnest($1::int8[], $2::text[], $3::timestamptz[]) on conflict do nothing",
           {sql::int8s(pa_profile), sql::texts(pa_group), sql::timestamptzs(pa_seen)}, SPI_OK_INSERT);
}

// Ships the batch's writes: one set-based statement per table.
void write_batch(const BatchWrites& w) {
  write_profile_map(w);
  write_identities(w);
  write_profiles(w);
  write_bindings(w);
  write_accounts(w);
}

// The cursor moves past the batch in its transaction (`ms`: how long it took).
void move_cursor(const std::string& txid, int64_t event, int events) {
  sql::run("update cdp.processor_state set cursor_txid = $1::xid8, cursor_event = $2,"
           " processed_total = processed_total + $3, last_batch = $3, last_run_at = clock_timestamp()",
           {sql::text(txid), sql::int8(event), sql::int4(events)}, SPI_OK_UPDATE);
}
void move_cursor(const std::string& txid, int64_t event, int events, double ms) {
  sql::run("update cdp.processor_state set cursor_txid = $1::xid8, cursor_event = $2,"
           " processed_total = processed_total + $3, last_batch = $3, last_run_at = clock_timestamp(),"
           " last_batch_ms = $4",
           {sql::text(txid), sql::int8(event), sql::int4(events), sql::float8(ms)}, SPI_OK_UPDATE);
}

// Logs how long each phase of a batch took (log_min_messages = debug1).
struct PhaseClock {
  TimestampTz start = GetCurrentTimestamp();
  TimestampTz at = start;
  double total_ms() const { return (GetCurrentTimestamp() - start) / 1000.0; }
  void mark(const char* phase) {
    call([&] {
      TimestampTz now = GetCurrentTimestamp();
      elog(DEBUG1, "cdp processor: %s took %.1f ms", phase, (now - at) / 1000.0);
      at = now;
    });
  }
};

}  // namespace

// read -> extract -> set aside the suppressed -> seed -> resolve -> fold
// (core/batch_writes) -> write -> consent, deliveries, audiences.
int64_t process_batch(int limit, bool from_worker) {
  PhaseClock clock;
  Batch b = read_events(limit, from_worker);
  if (b.events.empty()) return 0;
  clock.mark("read events");
  refresh_rules();
  const IdentityRules& rules = *rules_cache.identity;

  std::vector<std::vector<Identifier>> extracted;  // once per event: it parses JSON
  extracted.reserve(b.events.size());
  for (auto& e : b.events) {
    spi::check_interrupts();
    extracted.push_back(rules.extract(e));
  }
  // The cursor moves past the whole batch, suppressed events included.
  const std::string cursor_txid = b.txids.back();
  const int64_t cursor_event = b.events.back().id;
  const int batch_events = static_cast<int>(b.events.size());
  privacy::quarantine_suppressed(rules, b.events, b.txids, extracted);
  if (b.events.empty()) {
    move_cursor(cursor_txid, cursor_event, batch_events);
    return batch_events;
  }

  int64_t next_temp = 0;
  Resolver resolver(rules, [&] { return --next_temp; });  // new profiles get temporary negative ids
  std::vector<int64_t> known = seed(resolver, rules, b, extracted);
  clock.mark("rules and seed");
  std::vector<Decision> decisions;
  decisions.reserve(b.events.size());
  for (size_t i = 0; i < b.events.size(); i++) {
    spi::check_interrupts();
    decisions.push_back(resolver.resolve(b.events[i], extracted[i]));
  }
  clock.mark("resolve");
  last_graph_identities = resolver.identity_count();
  last_graph_bytes = resolver.memory_bytes();
  last_graph_text = resolver.text_bytes();

  BatchInput in;
  in.rules = &rules;
  in.traits = rules_cache.traits.get();
  in.events = &b.events;
  in.identifiers = &extracted;
  in.decisions = &decisions;
  in.fresh_ids = new_profile_ids(-next_temp);
  in.canonical = [&](int64_t p) { return resolver.canonical(p); };
  in.profiles = load_profiles(known);
  in.accounts = load_accounts(batch_groups(b.events, decisions));
  in.check_interrupts = [] { spi::check_interrupts(); };
  BatchWrites w = fold_batch(in);
  clock.mark("fold traits");

  write_batch(w);
  move_cursor(cursor_txid, cursor_event, batch_events, clock.total_ms());
  clock.mark("write");
  std::vector<int64_t> merged_away, merged_into;
  for (auto& m : w.merged) {
    merged_away.push_back(m.from);
    merged_into.push_back(m.into);
  }
  privacy::record_consent(b.events, b.txids, w.bound, merged_away, merged_into);
  // Events first, then the segment changes they cause: a destination sees them in that order.
  if (!rebuilding) delivery::queue_events(b.events, b.txids, w.bound);
  clock.mark("queue deliveries");
  audience::after_batch(b.events, w.bound, merged_away, merged_into);
  clock.mark("segments");
  return batch_events;
}

}  // namespace cdp::pg::processor
