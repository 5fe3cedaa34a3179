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
}

namespace cdp::pg::audience {
namespace {

int sweep_interval_s = 300;
constexpr int kChunk = 5000;          // profiles per bulk step
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

struct Stored {
  std::string traits, state, computed;
  bool has_row = false;
  Micros next_expiry = 0;
  std::vector<AccountData> accounts;
  std::set<int64_t> segments;  // open memberships
};

// Everything evaluation reads of these profiles. `contiguous`: the ids are
// every profile from ids.front() to ids.back() (a bulk chunk), read as one
// index range instead of one probe each.
std::map<int64_t, Stored> load(const Audience& a, const std::vector<int64_t>& ids, bool contiguous = false) {
  std::map<int64_t, Stored> out;
  if (ids.empty()) return out;
  sql::Param list = sql::int8s(ids), lo = sql::int8(ids.front()), hi = sql::int8(ids.back());
  sql::Rows profiles =
      contiguous
          ? sql::select("select p.profile_id, p.traits::text, coalesce(pc.state::text, ''),"
                        " coalesce(pc.computed::text, ''), pc.next_expiry, pc.profile_id is not null"
                        " from cdp.profiles p left join cdp.profile_computed pc on pc.profile_id = p.profile_id"
                        " where p.profile_id between $1 and $2",
                        {lo, hi})
          : sql::select("select p.profile_id, p.traits::text, coalesce(pc.state::text, ''),"
                        " coalesce(pc.computed::text, ''), pc.next_expiry, pc.profile_id is not null"
                        " from cdp.profiles p left join cdp.profile_computed pc on pc.profile_id = p.profile_id"
                        " where p.profile_id = any($1)",
                        {list});
  for (size_t r = 0; r < profiles.size(); r++) {
    Stored& s = out[profiles.int8(r, 0)];
    s.traits = profiles.str(r, 1);
    s.state = profiles.str(r, 2);
    s.computed = profiles.str(r, 3);
    s.next_expiry = profiles.timestamptz(r, 4);
    s.has_row = profiles.boolean(r, 5);
  }
  sql::Rows members = contiguous ? sql::select("select profile_id, segment_id from cdp.segment_membership"
                                               " where profile_id between $1 and $2 and exited_at is null",
                                               {lo, hi})
                                 : sql::select("select profile_id, segment_id from cdp.segment_membership"
                                               " where profile_id = any($1) and exited_at is null",
                                               {list});
  for (size_t r = 0; r < members.size(); r++) {
    auto it = out.find(members.int8(r, 0));
    if (it != out.end()) it->second.segments.insert(members.int8(r, 1));
  }
  if (!a.uses_accounts()) return out;
  sql::Rows accounts = sql::select(
      "select distinct m.canonical_id, a.group_id, a.traits::text from cdp.profile_accounts pa"
      " join cdp.profile_map m on m.profile_id = pa.profile_id join cdp.accounts a on a.group_id = pa.group_id"
      " where m.canonical_id = any($1)",
      {sql::int8s(ids)});
  for (size_t r = 0; r < accounts.size(); r++) {
    auto it = out.find(accounts.int8(r, 0));
    if (it == out.end()) continue;
    AccountData acc;
    acc.id = accounts.str(r, 1);
    if (parse_json(acc.traits, accounts.text(r, 2)).IsError() || !acc.traits.IsObject()) acc.traits.SetObject();
    it->second.accounts.push_back(std::move(acc));
  }
  return out;
}

// What one write sends to the database.
struct Writes {
  std::vector<int64_t> ids;
  std::vector<std::string> computed, state;
  std::vector<Micros> expiry;
  std::vector<int64_t> enter_segment, enter_profile, exit_segment, exit_profile;
};

bool same_json(const std::string& stored, const std::string& fresh) {
  if (stored.empty()) return false;
  rapidjson::Document x, y;
  if (parse_json(x, stored).IsError() || parse_json(y, fresh).IsError()) return false;
  return x == y;
}

size_t bucket_total(const Audience::ProfileState& p) {
  size_t n = 0;
  for (auto& s : p.states) n += s.buckets.size();
  return n;
}

// Evaluates one profile; `dirty`: its state changed before this call.
void evaluate_one(const Audience& a, int64_t id, const Stored& s, Audience::ProfileState& state, bool dirty,
                  Micros now, Writes& w) {
  rapidjson::Document traits;
  bool has_traits = !s.traits.empty() && !parse_json(traits, s.traits).IsError() && traits.IsObject();
  size_t before = bucket_total(state);
  Audience::Outcome o = a.evaluate(state, has_traits ? &traits : nullptr, s.accounts, now);
  dirty |= bucket_total(state) != before;
  Micros expiry = o.next_expiry.value_or(0);
  if (dirty || !s.has_row || expiry != s.next_expiry || !same_json(s.computed, o.computed)) {
    w.ids.push_back(id);
    w.computed.push_back(std::move(o.computed));
    w.state.push_back(a.write(state));
    w.expiry.push_back(expiry);
  }
  for (size_t i = 0; i < a.segments().size(); i++) {
    int64_t seg = a.segments()[i].id;
    bool was = s.segments.count(seg) > 0;
    if (o.members[i] && !was) {
      w.enter_segment.push_back(seg);
      w.enter_profile.push_back(id);
    } else if (!o.members[i] && was) {
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
  if (!w.ids.empty())
    sql::run("insert into cdp.profile_computed as pc (profile_id, computed, state, next_expiry)"
             " select id, c::jsonb, s, nullif(e, 'epoch') from unnest($1::int8[], $2::text[], $3::text[],"
             " $4::timestamptz[]) x(id, c, s, e)"
             " on conflict (profile_id) do update set computed = excluded.computed, state = excluded.state,"
             "   next_expiry = excluded.next_expiry, updated_at = now()",
             {sql::int8s(w.ids), sql::texts(w.computed), sql::texts(w.state),
              sql::timestamptzs(w.expiry)},
             SPI_OK_INSERT);
  write_changes(w.enter_segment, w.enter_profile, w.exit_segment, w.exit_profile, now);
}

// Loads, evaluates and writes these profiles. `built`: fresh state for the
// aggregates in `which` (replacing what is stored); `extra`: state to fold in.
int64_t evaluate_and_write(const Audience& a, const std::vector<int64_t>& ids, Micros now,
                           const States* built = nullptr, const std::vector<size_t>* which = nullptr,
                           States* extra = nullptr, bool contiguous = false) {
  std::map<int64_t, Stored> stored = load(a, ids, contiguous);
  Writes w;
  for (auto& [id, s] : stored) {
    spi::check_interrupts();  // SIGTERM or the processor's batch budget, between profiles
    Audience::ProfileState state = a.read(s.state);
    bool dirty = false;
    if (built && which) {
      auto it = built->find(id);
      for (size_t i : *which) state.states[i] = it == built->end() ? computed::State{} : it->second.states[i];
      dirty = !which->empty();
    }
    if (extra) {
      auto it = extra->find(id);
      if (it != extra->end()) {
        a.merge(state, it->second);
        dirty = true;
      }
    }
    evaluate_one(a, id, s, state, dirty, now, w);
  }
  write(w, now);
  return static_cast<int64_t>(stored.size());
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

// Open memberships of profiles that no longer exist (merged away, rebuilt) end.
void close_orphans(Micros now) {
  exit_selected("select sm.segment_id, sm.profile_id from cdp.segment_membership sm"
                " where sm.exited_at is null and not exists"
                "  (select from cdp.profiles p where p.profile_id = sm.profile_id)",
                {}, now);
}

// Every profile, in chunks of kChunk.
template <class F>
void each_profile_chunk(F&& f) {
  int64_t after = INT64_MIN;
  for (;;) {
    std::vector<int64_t> ids;
    sql::Rows rows = sql::select("select profile_id from cdp.profiles where profile_id > $1 order by profile_id limit $2",
                                 {sql::int8(after), sql::int4(kChunk)});
    for (size_t r = 0; r < rows.size(); r++) ids.push_back(rows.int8(r, 0));
    if (ids.empty()) return;
    after = ids.back();
    f(ids);
  }
}

// One pass over every profile: builds what is missing (or `rebuild`), then
// evaluates everything. Returns profiles evaluated.
int64_t evaluate_all(const Audience& a, std::vector<size_t> rebuild = {}) {
  Micros now = now_micros();
  for (size_t i : unbuilt(a))
    if (std::find(rebuild.begin(), rebuild.end(), i) == rebuild.end()) rebuild.push_back(i);
  States built = build(a, rebuild, {}, now);
  int64_t total = 0;
  each_profile_chunk([&](const std::vector<int64_t>& ids) {
    total += evaluate_and_write(a, ids, now, &built, &rebuild, nullptr, true);
  });
  record_built(a, rebuild);
  close_orphans(now);
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

// An ad-hoc rule evaluated beside the stored definitions: an audience with
// the rule as one more segment, whose missing counters are built on the fly.
struct Adhoc {
  std::unique_ptr<Audience> audience;
  size_t segment = 0;           // index in audience->segments()
  std::vector<size_t> missing;  // aggregates with no stored state
};

Adhoc adhoc(const std::string& rule) {
  under("rule", [&] { return segments::Rule::compile(rule); });
  Definitions d = read_definitions();
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
                                    " returning profile_id, state::text",
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
  evaluate_and_write(a, std::vector<int64_t>(touched.begin(), touched.end()), now, nullptr, nullptr, &extra);
}

void refresh_profiles(const std::vector<int64_t>& profiles) {
  const Audience& a = cached();
  if (a.empty()) return;
  std::vector<size_t> all;
  for (size_t i = 0; i < a.aggregates().size(); i++) all.push_back(i);
  Micros now = now_micros();
  States built = build(a, all, profiles, now);
  evaluate_and_write(a, profiles, now, &built, &all);
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
                                {sql::timestamptz(now), sql::int4(kChunk)});
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
      const cdp::Audience& a = *h.audience;
      cdp::Micros now = audience::now_micros();
      std::vector<int64_t> ids{
          sql::select("select cdp.canonical_profile($1)", {sql::int8(profile)}).int8(0, 0, profile)};
      std::map<int64_t, audience::Stored> stored = audience::load(a, ids);
      auto it = stored.find(ids[0]);
      if (it == stored.end())
        throw cdp::Error(cdp::ErrorKind::InvalidInput, "profile_id", "no profile " + std::to_string(profile));
      cdp::Audience::ProfileState state = a.read(it->second.state);
      audience::States built = audience::build(a, h.missing, ids, now);
      if (auto b = built.find(ids[0]); b != built.end())
        for (size_t i : h.missing) state.states[i] = b->second.states[i];
      rapidjson::Document traits;
      bool has = !cdp::parse_json(traits, it->second.traits).IsError() && traits.IsObject();
      bool in = a.evaluate(state, has ? &traits : nullptr, it->second.accounts, now).members[h.segment];
      return in;  // (not the vector<bool> proxy: its vector is a temporary)
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
      const cdp::Audience& a = *h.audience;
      cdp::Micros now = audience::now_micros();
      audience::States built = audience::build(a, h.missing, {}, now);
      audience::each_profile_chunk([&](const std::vector<int64_t>& ids) {
        std::map<int64_t, audience::Stored> stored = audience::load(a, ids, true);
        for (auto& [id, s] : stored) {
          cdp::Audience::ProfileState state = a.read(s.state);
          if (auto b = built.find(id); b != built.end())
            for (size_t i : h.missing) state.states[i] = b->second.states[i];
          rapidjson::Document traits;
          bool has = !cdp::parse_json(traits, s.traits).IsError() && traits.IsObject();
          if (a.evaluate(state, has ? &traits : nullptr, s.accounts, now).members[h.segment]) {
            members++;
            if (picked.size() < size_t(sample)) picked.push_back(id);
          }
        }
      });
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
