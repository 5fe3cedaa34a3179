// Computed traits and segments in the database: loads the definitions into a
// cdp::Audience, keeps each profile's aggregate state in cdp.profile_computed,
// and turns evaluations into membership rows, outbox rows and notifications.
//
// Three paths reach a profile, all through evaluate_and_write:
//   real time  the processor's batch (after_batch), in the batch's transaction;
//   the sweep  profiles whose event windows moved on (next_expiry <= now);
//   bulk       every profile, in chunks (create_segment, evaluate_segments).
// State is built from the events table once per definition (build) and kept
// by the processor from then on; cdp.aggregates_built records which.
#include "pg/audience/audience.hpp"

#include <map>
#include <memory>
#include <set>
#include <unordered_map>

#include "core/audience.hpp"
#include "core/json_util.hpp"
#include "pg/audience/profile_scan.hpp"
#include "pg/runtime/clock.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/shared.hpp"
#include "pg/runtime/spi.hpp"

extern "C" {
#include "catalog/namespace.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(cdp_create_segment);
PG_FUNCTION_INFO_V1(cdp_drop_segment);
PG_FUNCTION_INFO_V1(cdp_create_computed_trait);
PG_FUNCTION_INFO_V1(cdp_drop_computed_trait);
PG_FUNCTION_INFO_V1(cdp_recompute_traits);
PG_FUNCTION_INFO_V1(cdp_evaluate_segments);
PG_FUNCTION_INFO_V1(cdp_run_segment_sweep);
PG_FUNCTION_INFO_V1(cdp_evaluate);
PG_FUNCTION_INFO_V1(cdp_preview_segment);
PG_FUNCTION_INFO_V1(cdp_check_audience);
PG_FUNCTION_INFO_V1(cdp_profile_state_json);
}

namespace cdp::pg::audience {
namespace {

int sweep_interval_s = 300;
constexpr size_t kChunk = 5000;       // profiles per bulk step
constexpr size_t kNotifyEach = 100;   // more changes than this in one write: one summary per segment

void lock_processor() {
  sql::run("select pg_advisory_xact_lock(hashtext('cdp.processor'))", SPI_OK_SELECT);
}

Micros now_micros() { return from_pg(pg::now()); }

// ---------------------------------------------------------------------------
// Definitions

struct Definitions {
  std::vector<SegmentSpec> segments;
  std::vector<ComputedSpec> computed;
};

Definitions read_definitions() {
  Definitions d;
  sql::Rows segments = sql::select("select segment_id, name, rule::text from cdp.segments order by segment_id");
  for (size_t r = 0; r < segments.size(); r++)
    d.segments.push_back({segments.int8(r, 0), segments.str(r, 1), segments.str(r, 2)});
  sql::Rows computed = sql::select("select name, definition::text from cdp.computed_traits order by name");
  for (size_t r = 0; r < computed.size(); r++) d.computed.push_back({computed.str(r, 0), computed.str(r, 1)});
  return d;
}

// The stored definitions, cached per process until a change to them commits
// (the rules version, runtime/shared.hpp) or the tables are re-created.
struct Cache {
  RulesStamp stamp;
  std::unique_ptr<Audience> audience;
};
Cache cache;

const Audience& cached() {
  RulesStamp stamp = RulesStamp::of("segments");
  if (!cache.audience || !(cache.stamp == stamp)) {
    cache.audience.reset();
    Definitions d = read_definitions();
    cache.audience = std::make_unique<Audience>(std::move(d.segments), std::move(d.computed));
    cache.stamp = stamp;
  }
  return *cache.audience;
}

// ---------------------------------------------------------------------------
// Building state from the events table

using States = std::unordered_map<int64_t, Audience::ProfileState>;

// Folds every processed event into the aggregates `which` of the profiles it
// belongs to now (`only`: just these profiles; empty: all). One scan.
States build(const Audience& a, const std::vector<size_t>& which, const std::vector<int64_t>& only, Micros now) {
  States out;
  if (which.empty()) return out;
  std::vector<std::string> names;
  bool all_named = true, all_windowed = true;
  Micros oldest = now;
  for (size_t i : which) {
    const computed::Definition& d = a.aggregates()[i].definition;
    if (d.event) names.push_back(*d.event);
    else all_named = false;
    if (d.window == 0) all_windowed = false;
    else oldest = std::min(oldest, now - d.window - d.bucket);
  }
  sql::each(
      "select m.canonical_id, e.id, e.type, coalesce(e.event, e.name, ''), e.\"timestamp\","
      " coalesce(e.properties::text, '')"
      " from cdp.events e join cdp.event_profiles ep on ep.event_id = e.id"
      " join cdp.profile_map m on m.profile_id = ep.profile_id"
      " where ($1::text[] is null or coalesce(e.event, e.name) = any($1))"
      "   and ($2::timestamptz is null or e.\"timestamp\" >= $2)"
      "   and ($3::int8[] is null or m.canonical_id = any($3))",
      {sql::null_if(!all_named, sql::texts(names)), sql::null_if(!all_windowed, sql::timestamptz(oldest)),
       sql::null_if(only.empty(), sql::int8s(only))},
      10000, [&](const sql::Rows& rows) {
        for (size_t r = 0; r < rows.size(); r++) {
          rapidjson::Document props;
          std::string_view properties = rows.text(r, 5);
          bool parsed = !properties.empty() && !parse_json(props, properties).IsError();
          computed::EventInput e{rows.int8(r, 1), parse_message_type(rows.text(r, 2)).value_or(MessageType::Track),
                                 rows.text(r, 3), rows.timestamptz(r, 4), parsed ? &props : nullptr};
          int64_t profile = rows.int8(r, 0);
          auto it = out.find(profile);
          if (it == out.end()) it = out.emplace(profile, a.fresh()).first;
          for (size_t i : which) a.fold(it->second, i, e);
        }
      });
  return out;
}

// Aggregates the database has no state for yet.
std::vector<size_t> unbuilt(const Audience& a) {
  std::set<std::string> built;
  sql::Rows rows = sql::select("select key from cdp.aggregates_built");
  for (size_t r = 0; r < rows.size(); r++) built.insert(rows.str(r, 0));
  std::vector<size_t> out;
  for (size_t i = 0; i < a.aggregates().size(); i++)
    if (!built.count(a.aggregates()[i].key)) out.push_back(i);
  return out;
}

void record_built(const Audience& a, const std::vector<size_t>& which) {
  std::vector<std::string> keys, defs, live;
  for (size_t i : which) {
    keys.push_back(a.aggregates()[i].key);
    defs.push_back(a.aggregates()[i].definition.key);
  }
  for (auto& agg : a.aggregates()) live.push_back(agg.key);
  sql::run("delete from cdp.aggregates_built where key <> all($1)", {sql::texts(live)}, SPI_OK_DELETE);
  sql::run("insert into cdp.aggregates_built (key, definition) select k, d::jsonb from unnest($1::text[], $2::text[])"
           " x(k, d) on conflict (key) do nothing",
           {sql::texts(keys), sql::texts(defs)}, SPI_OK_INSERT);
}

// ---------------------------------------------------------------------------
// Loading, evaluating and writing profiles

using Accounts = std::unordered_map<int64_t, std::vector<AccountData>>;

// The accounts of these profiles, when a rule reads accounts (rare: SQL is fine).
Accounts load_accounts(const Audience& a, const std::vector<int64_t>& ids) {
  Accounts out;
  if (!a.uses_accounts() || ids.empty()) return out;
  sql::Rows accounts = sql::select(
      "select distinct m.canonical_id, a.group_id, a.traits::text from cdp.profile_accounts pa"
      " join cdp.profile_map m on m.profile_id = pa.profile_id join cdp.accounts a on a.group_id = pa.group_id"
      " where m.canonical_id = any($1)",
      {sql::int8s(ids)});
  for (size_t r = 0; r < accounts.size(); r++) {
    AccountData acc;
    acc.id = accounts.str(r, 1);
    if (parse_json(acc.traits, accounts.text(r, 2)).IsError() || !acc.traits.IsObject()) acc.traits.SetObject();
    out[accounts.int8(r, 0)].push_back(std::move(acc));
  }
  return out;
}

// Whether cdp.profile_computed.state is bytea. A 0.1.0 schema (the new
// library before ALTER EXTENSION cdp UPDATE) has it as text, which takes
// the JSON form. A catalog cache lookup, no statement.
bool binary_state() {
  bool binary = true;
  call([&] {
    Oid ns = get_namespace_oid("cdp", true);
    Oid rel = OidIsValid(ns) ? get_relname_relid("profile_computed", ns) : InvalidOid;
    AttrNumber att = OidIsValid(rel) ? get_attnum(rel, "state") : InvalidAttrNumber;
    binary = att == InvalidAttrNumber || get_atttype(rel, att) == BYTEAOID;
  });
  return binary;
}

// What one write sends to the database.
struct Writes {
  bool binary = binary_state();
  std::vector<int64_t> ids;
  std::vector<std::string> computed, state;  // JSON text; the state (binary, or JSON on a 0.1.0 schema)
  std::vector<Micros> expiry;
  std::vector<int64_t> enter_segment, enter_profile, exit_segment, exit_profile;
};

// What a bulk pass or a batch folds into the stored state: `built`, fresh
// state for the aggregates in `which` (replacing what is stored); `extra`,
// state to merge in.
struct Changes {
  const States* built = nullptr;
  const std::vector<size_t>* which = nullptr;
  States* extra = nullptr;
};

// Evaluates one profile of `rows`. Its computed values can change only with
// its state (a window moving on drops a bucket, which changes the state), so
// a row is written only when the state changed, the expiry moved, or the
// stored computed object lacks a trait.
void evaluate_one(const Audience& a, const ProfileRows& rows, size_t i, const Accounts& accounts,
                  rapidjson::Document& traits, const Changes& c, Micros now, Writes& w) {
  static const std::vector<AccountData> none;
  int64_t id = rows.ids[i];
  Audience::ProfileState state = a.read(rows.state_of(i));
  if (c.built && c.which) {
    auto it = c.built->find(id);
    for (size_t k : *c.which) a.replace(state, k, it == c.built->end() ? computed::State{} : it->second.states[k]);
  }
  if (c.extra)
    if (auto it = c.extra->find(id); it != c.extra->end()) a.merge(state, it->second);
  rows.traits_of(i, traits);
  auto acc = accounts.find(id);
  Audience::Outcome o = a.evaluate(state, &traits, acc == accounts.end() ? none : acc->second, now, false);
  Micros expiry = o.next_expiry.value_or(0);
  if (state.changed || !rows.has_row[i] || expiry != rows.next_expiry[i] ||
      rows.computed_keys[i] != static_cast<int32_t>(a.computed_count())) {
    w.ids.push_back(id);
    w.computed.push_back(a.computed_json(state, now));
    w.state.push_back(w.binary ? a.write(state) : a.write_json(state));
    w.expiry.push_back(expiry);
  }
  for (size_t s = 0; s < a.segments().size(); s++) {
    int64_t seg = a.segments()[s].id;
    bool was = rows.member(i, seg);
    if (o.members[s] && !was) {
      w.enter_segment.push_back(seg);
      w.enter_profile.push_back(id);
    } else if (!o.members[s] && was) {
      w.exit_segment.push_back(seg);
      w.exit_profile.push_back(id);
    }
  }
}

// Membership rows, outbox rows and notifications for changes already decided.
void write_changes(const std::vector<int64_t>& enter_segment, const std::vector<int64_t>& enter_profile,
                   const std::vector<int64_t>& exit_segment, const std::vector<int64_t>& exit_profile, Micros now) {
  if (enter_segment.empty() && exit_segment.empty()) return;
  std::vector<std::string> kinds;
  std::vector<int64_t> segs, profiles;
  for (size_t i = 0; i < exit_segment.size(); i++) {
    kinds.push_back("segment_exit");
    segs.push_back(exit_segment[i]);
    profiles.push_back(exit_profile[i]);
  }
  for (size_t i = 0; i < enter_segment.size(); i++) {
    kinds.push_back("segment_enter");
    segs.push_back(enter_segment[i]);
    profiles.push_back(enter_profile[i]);
  }
  bool each = kinds.size() <= kNotifyEach;
  call([] { note_deliveries_queued(); });  // the outbox trigger may queue deliveries
  sql::run("update cdp.segment_membership sm set exited_at = $3 from unnest($1::int8[], $2::int8[]) x(s, p)"
           " where sm.segment_id = x.s and sm.profile_id = x.p and sm.exited_at is null",
           {sql::int8s(exit_segment), sql::int8s(exit_profile), sql::timestamptz(now)}, SPI_OK_UPDATE);
  sql::run("insert into cdp.segment_membership (segment_id, profile_id, entered_at)"
           " select s, p, $3 from unnest($1::int8[], $2::int8[]) x(s, p)",
           {sql::int8s(enter_segment), sql::int8s(enter_profile), sql::timestamptz(now)}, SPI_OK_INSERT);
  sql::run("with x as (select k, p, s, n from unnest($1::text[], $2::int8[], $3::int8[]) with ordinality x(k, p, s, n)),"
           " named as (select x.*, sg.name from x left join cdp.segments sg on sg.segment_id = x.s),"
           " o as (insert into cdp.outbox (kind, profile_id, segment_id, payload, occurred_at)"
           "   select k, p, s, jsonb_build_object('type', k, 'segment', name, 'segment_id', s, 'profile_id', p,"
           "     'at', $4::timestamptz), $4 from named order by n returning 1)"
           " select pg_notify('cdp_segment', m) from ("
           "   select jsonb_build_object('type', k, 'segment', name, 'segment_id', s, 'profile_id', p)::text m, n"
           "     from named where $5"
           "   union all"
           "   select jsonb_build_object('segment', name, 'segment_id', s,"
           "     'entered', count(*) filter (where k = 'segment_enter'),"
           "     'exited', count(*) filter (where k = 'segment_exit'))::text, min(n)"
           "     from named where not $5 group by s, name) y order by n",
           {sql::texts(kinds), sql::int8s(profiles), sql::int8s(segs), sql::timestamptz(now),
            sql::boolean(each)},
           SPI_OK_SELECT);
}

void write(const Writes& w, Micros now) {
  if (!w.ids.empty() && !w.binary)
    sql::run("insert into cdp.profile_computed as pc (profile_id, computed, state, next_expiry)"
             " select id, c::jsonb, s, nullif(e, 'epoch') from unnest($1::int8[], $2::text[], $3::text[],"
             " $4::timestamptz[]) x(id, c, s, e)"
             " on conflict (profile_id) do update set computed = excluded.computed, state = excluded.state,"
             "   next_expiry = excluded.next_expiry, updated_at = now()",
             {sql::int8s(w.ids), sql::texts(w.computed), sql::texts(w.state), sql::timestamptzs(w.expiry)},
             SPI_OK_INSERT);
  else if (!w.ids.empty())
    sql::run("insert into cdp.profile_computed as pc (profile_id, computed, state, next_expiry)"
             " select id, c::jsonb, s, nullif(e, 'epoch') from unnest($1::int8[], $2::text[], $3::bytea[],"
             " $4::timestamptz[]) x(id, c, s, e)"
             " on conflict (profile_id) do update set computed = excluded.computed, state = excluded.state,"
             "   next_expiry = excluded.next_expiry, updated_at = now()",
             {sql::int8s(w.ids), sql::texts(w.computed), sql::byteas(w.state),
              sql::timestamptzs(w.expiry)},
             SPI_OK_INSERT);
  write_changes(w.enter_segment, w.enter_profile, w.exit_segment, w.exit_profile, now);
}

constexpr size_t kInterruptEach = 256;  // profiles between checks for SIGTERM or the batch budget

// Evaluates and writes one batch of rows.
int64_t evaluate_rows(const Audience& a, const ProfileRows& rows, const Changes& c, Micros now) {
  Accounts accounts = load_accounts(a, rows.ids);
  Writes w;
  w.exit_segment = rows.orphan_segments;  // memberships of profiles gone end
  w.exit_profile = rows.orphan_profiles;
  rapidjson::Document traits;  // its pool holds the batch's trait values
  for (size_t i = 0; i < rows.size(); i++) {
    if (i % kInterruptEach == 0) spi::check_interrupts();
    evaluate_one(a, rows, i, accounts, traits, c, now, w);
  }
  write(w, now);
  return static_cast<int64_t>(rows.size());
}

// Loads, evaluates and writes these profiles (the processor's batch, the sweep).
int64_t evaluate_and_write(const Audience& a, std::vector<int64_t> ids, Micros now, const Changes& c = {}) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  ProfileScan scan(a.trait_keys());
  ProfileRows rows;
  scan.read(ids, rows);
  return evaluate_rows(a, rows, c, now);
}

// Every profile, kChunk at a time, as one scan: in profile_id order with
// state and memberships, or (traits_only) just the traits in heap order.
template <class F>
void each_profile_batch(const Audience& a, F&& f, bool traits_only = false) {
  ProfileScan scan(a.trait_keys());
  ProfileRows rows;
  scan.open(traits_only);
  while (scan.next(rows, kChunk)) f(rows);
  scan.close();
}

// Ends the open memberships `sql` selects (segment_id, profile_id); returns how many.
size_t exit_selected(const char* statement, std::initializer_list<sql::Param> params, Micros now) {
  std::vector<int64_t> segs, profiles;
  sql::Rows rows = sql::select(statement, params);
  for (size_t r = 0; r < rows.size(); r++) {
    segs.push_back(rows.int8(r, 0));
    profiles.push_back(rows.int8(r, 1));
  }
  write_changes({}, {}, segs, profiles, now);
  return profiles.size();
}

// Open memberships of these profiles end (they were merged away).
void close_memberships(const std::vector<int64_t>& ids, Micros now) {
  exit_selected("select segment_id, profile_id from cdp.segment_membership"
                " where profile_id = any($1) and exited_at is null",
                {sql::int8s(ids)}, now);
}

// One pass over every profile: builds what is missing (or `rebuild`), then
// evaluates everything. Returns profiles evaluated.
int64_t evaluate_all(const Audience& a, std::vector<size_t> rebuild = {}) {
  Micros now = now_micros();
  for (size_t i : unbuilt(a))
    if (std::find(rebuild.begin(), rebuild.end(), i) == rebuild.end()) rebuild.push_back(i);
  States built = build(a, rebuild, {}, now);
  int64_t total = 0;
  Changes c{&built, &rebuild, nullptr};
  each_profile_batch(a, [&](const ProfileRows& rows) { total += evaluate_rows(a, rows, c, now); });
  record_built(a, rebuild);  // (the scan closed the memberships of profiles gone)
  return total;
}

int64_t changes_since(int64_t outbox_before) {
  return sql::select("select count(*) from cdp.outbox where id > $1", {sql::int8(outbox_before)}).int8(0, 0);
}

int64_t outbox_head() { return sql::select("select coalesce(max(id), 0) from cdp.outbox").int8(0, 0); }

TimestampTz last_full_sweep = 0;

// ---------------------------------------------------------------------------
// SQL entry points

std::string arg_text(FunctionCallInfo fcinfo, int n, const char* field) {
  if (PG_ARGISNULL(n)) throw Error(ErrorKind::InvalidInput, field, "must not be null");
  std::string out;
  call([&] {
    char* s = text_to_cstring(PG_GETARG_TEXT_PP(n));
    out = s;
    pfree(s);
  });
  return out;
}

std::string arg_jsonb(FunctionCallInfo fcinfo, int n, const char* field) {
  if (PG_ARGISNULL(n)) throw Error(ErrorKind::InvalidInput, field, "must not be null");
  std::string out;
  call([&] {
    Datum d = DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(n));
    out = DatumGetCString(d);
  });
  return out;
}

// Compile errors carry the path inside the rule; the caller sees it under the argument's name.
template <class F>
auto under(const char* arg, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    throw e.under(arg);
  }
}

bool exists(const char* statement, const std::string& name) {
  return !sql::select(statement, {sql::text(name)}).empty();
}

// An ad-hoc rule evaluated beside the stored definitions it needs: an
// audience of the rule, the segments it refers to (through others too) and
// the computed traits those read, whose missing counters are built on the fly.
struct Adhoc {
  std::unique_ptr<Audience> audience;
  size_t segment = 0;           // index in audience->segments()
  std::vector<size_t> missing;  // aggregates with no stored state

  // Whether profile i of rows is in the rule's audience; `traits` is scratch
  // (its pool holds the values of the rows' profiles).
  bool member(const ProfileRows& rows, size_t i, const States& built, const Accounts& accounts, Micros now,
              rapidjson::Document& traits) const {
    static const std::vector<AccountData> none;
    const Audience& a = *audience;
    Audience::ProfileState state = a.read(rows.state_of(i));
    if (auto b = built.find(rows.ids[i]); b != built.end())
      for (size_t k : missing) a.replace(state, k, b->second.states[k]);
    rows.traits_of(i, traits);
    auto acc = accounts.find(rows.ids[i]);
    return a.evaluate(state, &traits, acc == accounts.end() ? none : acc->second, now, false).members[segment];
  }
};

// The stored definitions a rule needs: the segments it reaches and the computed traits they read.
Definitions needed_by(const std::string& rule, Definitions all) {
  std::map<std::string, segments::Rule> rules;
  for (auto& s : all.segments) rules.emplace(s.name, segments::Rule::compile(s.rule));
  std::set<std::string> segs, traits;
  std::vector<segments::Rule> todo{segments::Rule::compile(rule)};
  while (!todo.empty()) {
    segments::Rule r = todo.back();
    todo.pop_back();
    for (const std::string& c : r.computed_referenced()) traits.insert(c);
    for (const std::string& name : r.segments_referenced())
      if (segs.insert(name).second)
        if (auto it = rules.find(name); it != rules.end()) todo.push_back(it->second);
  }
  Definitions out;
  for (auto& s : all.segments)
    if (segs.count(s.name)) out.segments.push_back(std::move(s));
  for (auto& c : all.computed)
    if (traits.count(c.name)) out.computed.push_back(std::move(c));
  return out;
}

Adhoc adhoc(const std::string& rule) {
  under("rule", [&] { return segments::Rule::compile(rule); });
  Definitions d = needed_by(rule, read_definitions());
  const std::string name = "(preview)";
  d.segments.push_back({0, name, rule});
  Adhoc out;
  under("rule", [&] {
    try {
      out.audience = std::make_unique<Audience>(std::move(d.segments), std::move(d.computed));
    } catch (const Error& e) {  // a missing segment or computed trait: name the argument, not "(preview)"
      throw e.on("");
    }
    return 0;
  });
  for (size_t i = 0; i < out.audience->segments().size(); i++)
    if (out.audience->segments()[i].name == name && out.audience->segments()[i].id == 0) out.segment = i;
  out.missing = unbuilt(*out.audience);
  return out;
}

int64_t create_segment(const std::string& name, const std::string& rule, const std::string& description, bool has_description) {
  lock_processor();
  if (name.empty()) throw Error(ErrorKind::InvalidInput, "name", "must be a non-empty string");
  under("rule", [&] { return segments::Rule::compile(rule); });
  if (exists("select 1 from cdp.segments where name = $1", name))
    throw Error(ErrorKind::InvalidInput, "name", "a segment named \"" + name + "\" already exists");
  // References and cycles are checked before the insert, so that the error
  // names the argument ("rule") rather than the stored row.
  Definitions with = read_definitions();
  with.segments.push_back({0, name, rule});
  under("rule", [&] {
    try {
      return Audience(with.segments, with.computed).segments().size();
    } catch (const Error& e) {  // the new rule refers to a missing segment, or closes a cycle
      throw e.on("");
    }
  });
  sql::run("insert into cdp.segments (name, rule, description) values ($1, $2::jsonb, $3)",
           {sql::text(name), sql::text(rule), sql::null_if(!has_description, sql::text(description))}, SPI_OK_INSERT);
  Definitions d = read_definitions();
  Audience a(d.segments, d.computed);
  evaluate_all(a);
  return sql::select("select count(*) from cdp.segment_membership sm join cdp.segments s using (segment_id)"
                     " where s.name = $1 and sm.exited_at is null",
                     {sql::text(name)})
      .int8(0, 0);
}

int64_t drop_segment(const std::string& name) {
  lock_processor();
  if (!exists("select 1 from cdp.segments where name = $1", name))
    throw Error(ErrorKind::InvalidInput, "name", "no segment named \"" + name + "\"");
  Definitions d = read_definitions();
  for (auto& s : d.segments) {
    if (s.name == name) continue;
    auto refs = segments::Rule::compile(s.rule).segments_referenced();
    if (std::find(refs.begin(), refs.end(), name) != refs.end())
      throw Error(ErrorKind::InvalidInput, "name", "segment \"" + s.name + "\" refers to \"" + name + "\": drop or change it first");
  }
  size_t exited = exit_selected("select sm.segment_id, sm.profile_id from cdp.segment_membership sm join cdp.segments s"
                                " using (segment_id) where s.name = $1 and sm.exited_at is null",
                                {sql::text(name)}, now_micros());
  sql::run("delete from cdp.segments where name = $1", {sql::text(name)}, SPI_OK_DELETE);
  Definitions after = read_definitions();
  record_built(Audience(after.segments, after.computed), {});  // forgets counters no rule uses now
  return static_cast<int64_t>(exited);
}

int64_t create_computed_trait(const std::string& name, const std::string& definition) {
  lock_processor();
  if (name.empty()) throw Error(ErrorKind::InvalidInput, "name", "must be a non-empty string");
  under("definition", [&] { return computed::Definition::compile(definition); });
  if (exists("select 1 from cdp.computed_traits where name = $1", name))
    throw Error(ErrorKind::InvalidInput, "name", "a computed trait named \"" + name + "\" already exists");
  sql::run("insert into cdp.computed_traits (name, definition) values ($1, $2::jsonb)",
           {sql::text(name), sql::text(definition)}, SPI_OK_INSERT);
  Definitions d = read_definitions();
  Audience a(d.segments, d.computed);
  // A definition may equal an old one whose key is still recorded: build it afresh.
  std::vector<size_t> which;
  for (size_t i = 0; i < a.aggregates().size(); i++)
    if (a.aggregates()[i].computed == name) which.push_back(i);
  return evaluate_all(a, which);
}

void drop_computed_trait(const std::string& name) {
  lock_processor();
  if (!exists("select 1 from cdp.computed_traits where name = $1", name))
    throw Error(ErrorKind::InvalidInput, "name", "no computed trait named \"" + name + "\"");
  Definitions d = read_definitions();
  for (auto& s : d.segments) {
    auto refs = segments::Rule::compile(s.rule).computed_referenced();
    if (std::find(refs.begin(), refs.end(), name) != refs.end())
      throw Error(ErrorKind::InvalidInput, "name", "segment \"" + s.name + "\" uses \"" + name + "\": drop or change it first");
  }
  sql::run("delete from cdp.computed_traits where name = $1", {sql::text(name)}, SPI_OK_DELETE);
  sql::run("update cdp.profile_computed set computed = computed - $1 where computed ? $1", {sql::text(name)},
           SPI_OK_UPDATE);
  Definitions after = read_definitions();
  record_built(Audience(after.segments, after.computed), {});
}

int64_t recompute(const std::string& name, bool all) {
  lock_processor();
  Definitions d = read_definitions();
  Audience a(d.segments, d.computed);
  std::vector<size_t> which;
  for (size_t i = 0; i < a.aggregates().size(); i++)
    if (all || a.aggregates()[i].computed == name) which.push_back(i);
  if (!all && which.empty()) throw Error(ErrorKind::InvalidInput, "name", "no computed trait named \"" + name + "\"");
  return evaluate_all(a, which);
}

}  // namespace

// ---------------------------------------------------------------------------
// The processor's side

void after_batch(const std::vector<EventFacts>& events, const std::vector<int64_t>& bound,
                 const std::vector<int64_t>& merged_away, const std::vector<int64_t>& merged_into) {
  const Audience& a = cached();
  if (a.empty()) return;
  Micros now = now_micros();
  if (std::vector<size_t> missing = unbuilt(a); !missing.empty()) {
    // Definitions written straight into the tables: build them (the batch's
    // own events are already bound, so the build counts them).
    evaluate_all(a);
    return;
  }
  // Merged-away profiles: their state goes to the survivor, their memberships end.
  States extra;
  std::set<int64_t> touched;
  if (!merged_away.empty()) {
    sql::Rows deleted = sql::select("delete from cdp.profile_computed where profile_id = any($1)"
                                    " returning profile_id, state",
                                    {sql::int8s(merged_away)}, SPI_OK_DELETE_RETURNING);
    std::map<int64_t, std::string_view> away;
    for (size_t r = 0; r < deleted.size(); r++) away[deleted.int8(r, 0)] = deleted.text(r, 1);
    for (size_t i = 0; i < merged_away.size(); i++) {
      auto it = away.find(merged_away[i]);
      if (it == away.end()) continue;
      auto [e, fresh] = extra.try_emplace(merged_into[i], a.fresh());
      a.merge(e->second, a.read(it->second));
    }
    close_memberships(merged_away, now);
  }
  for (size_t i = 0; i < events.size(); i++) {
    spi::check_interrupts();
    if (bound[i] == 0) continue;
    touched.insert(bound[i]);
    const EventFacts& e = events[i];
    if (!a.wants(e.type, e.name)) continue;
    rapidjson::Document props;
    bool parsed = !e.properties.empty() && !parse_json(props, e.properties).IsError();
    computed::EventInput in{e.id, e.type, e.name, e.timestamp, parsed ? &props : nullptr};
    auto [it, fresh] = extra.try_emplace(bound[i], a.fresh());
    a.fold(it->second, in);
  }
  for (auto& [p, s] : extra) touched.insert(p);
  if (a.uses_accounts()) {
    // A group call may change the account's traits: every member is evaluated again.
    std::vector<std::string> groups;
    for (const EventFacts& e : events)
      if (e.type == MessageType::Group && !e.group_id.empty()) groups.push_back(e.group_id);
    if (!groups.empty()) {
      sql::Rows members = sql::select("select distinct m.canonical_id from cdp.profile_accounts pa"
                                      " join cdp.profile_map m on m.profile_id = pa.profile_id where pa.group_id = any($1)",
                                      {sql::texts(groups)});
      for (size_t r = 0; r < members.size(); r++) touched.insert(members.int8(r, 0));
    }
  }
  evaluate_and_write(a, std::vector<int64_t>(touched.begin(), touched.end()), now, Changes{nullptr, nullptr, &extra});
}

void refresh_profiles(const std::vector<int64_t>& profiles) {
  const Audience& a = cached();
  if (a.empty()) return;
  std::vector<size_t> all;
  for (size_t i = 0; i < a.aggregates().size(); i++) all.push_back(i);
  Micros now = now_micros();
  States built = build(a, all, profiles, now);
  evaluate_and_write(a, profiles, now, Changes{&built, &all, nullptr});
}

void rebuild_all() {
  const Audience& a = cached();
  if (a.empty()) return;
  evaluate_all(a);
}

int64_t sweep(bool from_worker) {
  lock_processor();
  if (from_worker) {
    // No row (someone deleted it): not paused; the processor makes it again.
    if (sql::select("select coalesce((select paused from cdp.processor_state), false)").boolean(0, 0)) return 0;
  }
  const Audience& a = cached();
  if (a.empty()) return 0;
  if (!unbuilt(a).empty()) return evaluate_all(a);
  if (a.uses_relative_dates() && (!from_worker || GetCurrentTimestamp() - last_full_sweep >= sweep_interval_s * USECS_PER_SEC)) {
    last_full_sweep = GetCurrentTimestamp();
    return evaluate_all(a);
  }
  Micros now = now_micros();
  int64_t total = 0;
  // State of profiles gone (merged away, erased) would be picked up forever.
  sql::run("delete from cdp.profile_computed pc where pc.next_expiry <= $1"
           " and not exists (select from cdp.profiles p where p.profile_id = pc.profile_id)",
           {sql::timestamptz(now)}, SPI_OK_DELETE);
  for (int round = 0; round < 200; round++) {  // bounded: the next sweep goes on
    std::vector<int64_t> ids;
    sql::Rows due = sql::select("select profile_id from cdp.profile_computed where next_expiry <= $1"
                                " order by next_expiry limit $2",
                                {sql::timestamptz(now), sql::int4(static_cast<int>(kChunk))});
    for (size_t r = 0; r < due.size(); r++) ids.push_back(due.int8(r, 0));
    if (ids.empty()) break;
    total += evaluate_and_write(a, ids, now);
    if (ids.size() < size_t(kChunk)) break;
  }
  return total;
}

void define_gucs() {
  DefineCustomIntVariable("cdp.segment_sweep_interval",
                          "Seconds between re-evaluations of every profile for segments that use relative dates.",
                          "Event windows need no full pass: profiles are re-evaluated when their windows move on.",
                          &sweep_interval_s, 300, 1, 86400, PGC_SIGHUP, GUC_UNIT_S, nullptr, nullptr, nullptr);
}

}  // namespace cdp::pg::audience

using namespace cdp::pg;

Datum cdp_create_segment(PG_FUNCTION_ARGS) {
  return entry([&] {
    std::string name = audience::arg_text(fcinfo, 0, "name");
    std::string rule = audience::arg_jsonb(fcinfo, 1, "rule");
    bool has_description = !PG_ARGISNULL(2);
    std::string description = has_description ? audience::arg_text(fcinfo, 2, "description") : "";
    PG_RETURN_INT64(spi::connected([&] { return audience::create_segment(name, rule, description, has_description); }));
  });
}

Datum cdp_drop_segment(PG_FUNCTION_ARGS) {
  return entry([&] {
    std::string name = audience::arg_text(fcinfo, 0, "name");
    PG_RETURN_INT64(spi::connected([&] { return audience::drop_segment(name); }));
  });
}

Datum cdp_create_computed_trait(PG_FUNCTION_ARGS) {
  return entry([&] {
    std::string name = audience::arg_text(fcinfo, 0, "name");
    std::string definition = audience::arg_jsonb(fcinfo, 1, "definition");
    PG_RETURN_INT64(spi::connected([&] { return audience::create_computed_trait(name, definition); }));
  });
}

Datum cdp_drop_computed_trait(PG_FUNCTION_ARGS) {
  return entry([&] {
    std::string name = audience::arg_text(fcinfo, 0, "name");
    spi::connected([&] {
      audience::drop_computed_trait(name);
      return 0;
    });
    PG_RETURN_VOID();
  });
}

Datum cdp_recompute_traits(PG_FUNCTION_ARGS) {
  return entry([&] {
    bool all = PG_ARGISNULL(0);
    std::string name = all ? "" : audience::arg_text(fcinfo, 0, "name");
    PG_RETURN_INT64(spi::connected([&] { return audience::recompute(name, all); }));
  });
}

Datum cdp_evaluate_segments(PG_FUNCTION_ARGS) {
  return entry([&] {
    PG_RETURN_INT64(spi::connected([] {
      audience::lock_processor();
      int64_t before = audience::outbox_head();
      audience::Definitions d = audience::read_definitions();
      audience::evaluate_all(cdp::Audience(d.segments, d.computed));
      return audience::changes_since(before);
    }));
  });
}

Datum cdp_run_segment_sweep(PG_FUNCTION_ARGS) {
  return entry([&] { PG_RETURN_INT64(spi::connected([] { return audience::sweep(false); })); });
}

Datum cdp_evaluate(PG_FUNCTION_ARGS) {
  return entry([&] {
    std::string rule = audience::arg_jsonb(fcinfo, 0, "rule");
    int64_t profile = PG_GETARG_INT64(1);
    bool result = spi::connected([&] {
      audience::Adhoc h = audience::adhoc(rule);
      cdp::Micros now = audience::now_micros();
      std::vector<int64_t> ids{
          sql::select("select cdp.canonical_profile($1)", {sql::int8(profile)}).int8(0, 0, profile)};
      audience::ProfileScan scan(h.audience->trait_keys());
      audience::ProfileRows rows;
      scan.read(ids, rows);
      if (rows.size() == 0)
        throw cdp::Error(cdp::ErrorKind::InvalidInput, "profile_id", "no profile " + std::to_string(profile));
      audience::States built = audience::build(*h.audience, h.missing, ids, now);
      audience::Accounts accounts = audience::load_accounts(*h.audience, ids);
      rapidjson::Document traits;
      return h.member(rows, 0, built, accounts, now, traits);
    });
    PG_RETURN_BOOL(result);
  });
}

Datum cdp_preview_segment(PG_FUNCTION_ARGS) {
  return entry([&] {
    std::string rule = audience::arg_jsonb(fcinfo, 0, "rule");
    int sample = PG_GETARG_INT32(1);
    if (sample < 0 || sample > 10000)
      throw cdp::Error(cdp::ErrorKind::InvalidInput, "sample", "must be from 0 to 10000");
    int64_t members = 0;
    std::vector<int64_t> picked;
    spi::connected([&] {
      audience::Adhoc h = audience::adhoc(rule);
      cdp::Micros now = audience::now_micros();
      audience::States built = audience::build(*h.audience, h.missing, {}, now);
      // The sample is the lowest ids: a max-heap of them, as the scan may go in heap order.
      audience::each_profile_batch(
          *h.audience,
          [&](const audience::ProfileRows& rows) {
            audience::Accounts accounts = audience::load_accounts(*h.audience, rows.ids);
            rapidjson::Document traits;
            for (size_t i = 0; i < rows.size(); i++) {
              if (i % audience::kInterruptEach == 0) spi::check_interrupts();
              if (!h.member(rows, i, built, accounts, now, traits)) continue;
              members++;
              if (sample == 0) continue;
              if (picked.size() < size_t(sample)) {
                picked.push_back(rows.ids[i]);
                std::push_heap(picked.begin(), picked.end());
              } else if (rows.ids[i] < picked.front()) {
                std::pop_heap(picked.begin(), picked.end());
                picked.back() = rows.ids[i];
                std::push_heap(picked.begin(), picked.end());
              }
            }
          },
          h.audience->aggregates().empty());
      std::sort_heap(picked.begin(), picked.end());
      return 0;
    });
    Datum result = 0;
    call([&] {
      TupleDesc desc;
      if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE) elog(ERROR, "cdp: preview_segment: no row type");
      desc = BlessTupleDesc(desc);
      Datum* elems = static_cast<Datum*>(palloc(sizeof(Datum) * (picked.size() + 1)));
      for (size_t i = 0; i < picked.size(); i++) elems[i] = Int64GetDatum(picked[i]);
      ArrayType* arr = construct_array(elems, static_cast<int>(picked.size()), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
      Datum values[2] = {Int64GetDatum(members), PointerGetDatum(arr)};
      bool nulls[2] = {false, false};
      result = HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
    });
    return result;
  });
}

// Statement trigger on cdp.segments and cdp.computed_traits: what is stored
// must compile together (a bad rule written straight into the table would
// otherwise fail every processor batch); its commit makes processors reload.
Datum cdp_check_audience(PG_FUNCTION_ARGS) {
  return entry([&] {
    spi::connected([] {
      audience::Definitions d = audience::read_definitions();
      cdp::Audience check(d.segments, d.computed);  // throws naming the segment or trait and the path
      return check.segments().size();
    });
    call([] { note_rules_changed(); });
    return PointerGetDatum(nullptr);
  });
}

// A profile's aggregate state in the JSON form of 0.1.0, for people: the
// stored form is binary (core/computed_state.hpp). Null without a row.
Datum cdp_profile_state_json(PG_FUNCTION_ARGS) {
  return entry([&] {
    int64_t profile = PG_GETARG_INT64(0);
    std::string out;
    bool found = spi::connected([&] {
      sql::Rows r = sql::select("select state from cdp.profile_computed where profile_id = $1", {sql::int8(profile)});
      if (r.empty()) return false;
      const cdp::Audience& a = audience::cached();
      out = a.write_json(a.read(r.text(0, 0)));
      return true;
    });
    if (!found) PG_RETURN_NULL();
    text* result = nullptr;
    call([&] { result = cstring_to_text_with_len(out.data(), static_cast<int>(out.size())); });
    PG_RETURN_TEXT_P(result);
  });
}
