// The processor: binds committed events to profiles through the identity
// graph and folds their traits, one batch per transaction.
//
// No committed event is skipped, whatever order transactions commit in: events
// are read in (txid, id) order and only from transactions older than the
// snapshot's xmin, which have all finished, so nothing can still appear below
// the cursor. The cursor moves in the same transaction as the results.
#include "pg/processor/processor.hpp"

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>

#include "core/delivery.hpp"
#include "core/identity.hpp"
#include "core/traits.hpp"
#include "pg/audience/audience.hpp"
#include "pg/delivery/delivery.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/shared.hpp"
#include "pg/runtime/spi.hpp"
#include "pg/runtime/worker.hpp"

extern "C" {
#include "access/xact.h"
#include "catalog/namespace.h"
#include "port/atomics.h"
#include "utils/lsyscache.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/timeout.h"
#include "utils/guc.h"
#include "tcop/tcopprot.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"
}

extern "C" {
PGDLLEXPORT void cdp_processor_main(Datum arg);
PG_FUNCTION_INFO_V1(cdp_process_pending);
PG_FUNCTION_INFO_V1(cdp_normalise_identifier);
PG_FUNCTION_INFO_V1(cdp_unmerge);
PG_FUNCTION_INFO_V1(cdp_check_identifier_types);
PG_FUNCTION_INFO_V1(cdp_rules_changed);
PG_FUNCTION_INFO_V1(cdp_rebuild_identities);
}

namespace cdp::pg {
namespace {

bool processor_enabled = true;
bool retention_enabled = true;
bool rebuilding = false;  // cdp.rebuild_identities() is running: nothing is queued for delivery again
int batch_size = 5000;
int max_merges = 100;
int max_identifiers = 1000;
int max_traits = static_cast<int>(kDefaultMaxTraits);
int batch_timeout_ms = 10000;  // cdp.processor_batch_timeout; 0: none
using worker::shutdown_requested;
// Size of the last batch's identity graph, reported by cdp.rebuild_identities().
size_t last_graph_identities = 0, last_graph_bytes = 0, last_graph_text = 0;

// ---------------------------------------------------------------------------
// Rules, read at the start of each batch (small tables; changes apply at once).

IdentityRules load_identity_rules() {
  std::vector<IdentifierType> types;
  std::vector<std::string> paths, values, patterns;  // arrays as JSON text, parsed below
  call([&] {
    uint64 n = spi::exec(
        "select type, array_to_json(paths)::text, normalise, coalesce(max_per_profile, 0),"
        " coalesce((extract(epoch from limit_window) * 1000000)::int8, 0), priority,"
        " array_to_json(blocked_values)::text, array_to_json(blocked_patterns)::text,"
        " default_country_code from cdp.identifier_types order by priority, type",
        SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++) {
      IdentifierType t;
      t.name = spi::get_text(r, 1);
      t.normalise = parse_normalise(spi::get_text(r, 3)).value_or(Normalise::None);
      t.limit = spi::get_int4(r, 4);
      t.window = spi::get_int8(r, 5);
      t.priority = spi::get_int4(r, 6);
      t.default_country_code = spi::get_text(r, 9);
      types.push_back(std::move(t));
      paths.push_back(spi::get_text(r, 2));
      values.push_back(spi::get_text(r, 7));
      patterns.push_back(spi::get_text(r, 8));
    }
  });
  auto list = [](const std::string& json) {
    std::vector<std::string> out;
    rapidjson::Document d;
    if (!d.Parse(json.data(), json.size()).HasParseError() && d.IsArray())
      for (auto& v : d.GetArray())
        if (v.IsString()) out.emplace_back(v.GetString(), v.GetStringLength());
    return out;
  };
  for (size_t i = 0; i < types.size(); i++) {
    types[i].paths = list(paths[i]);
    types[i].blocked_values = list(values[i]);
    types[i].blocked_patterns = list(patterns[i]);
  }
  return IdentityRules(std::move(types), GuardRails{max_merges, max_identifiers});
}

TraitRules load_trait_rules() {
  std::vector<TraitRule> rules;
  std::vector<std::string> priorities;
  call([&] {
    uint64 n = spi::exec(
        "select trait, strategy, array_to_json(source_priority)::text, coalesce(from_path, '')"
        " from cdp.trait_rules order by trait",
        SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++) {
      TraitRule t;
      t.trait = spi::get_text(r, 1);
      t.strategy = parse_trait_strategy(spi::get_text(r, 2)).value_or(TraitStrategy::Last);
      t.from_path = spi::get_text(r, 4);
      priorities.push_back(spi::get_text(r, 3));
      rules.push_back(std::move(t));
    }
  });
  for (size_t i = 0; i < rules.size(); i++) {
    rapidjson::Document d;
    if (!d.Parse(priorities[i].data(), priorities[i].size()).HasParseError() && d.IsArray())
      for (auto& v : d.GetArray())
        if (v.IsInt()) rules[i].source_priority.push_back(v.GetInt());
  }
  return TraitRules(std::move(rules), static_cast<size_t>(max_traits));
}

// Rules are cached per process and read again only when a change to the rule
// tables has committed (the version in shared memory moved), the tables were
// re-created, or the guard-rail settings changed: loading them costs two
// queries and compiling regular expressions, too much for every small batch.
struct RulesCache {
  RulesStamp stamp;
  int merges = -1, identifiers = -1, traits_limit = -1;
  std::unique_ptr<IdentityRules> identity;
  std::unique_ptr<TraitRules> traits;
};
RulesCache rules_cache;

void refresh_rules() {
  RulesStamp stamp = RulesStamp::of("identifier_types");
  RulesCache& c = rules_cache;
  if (c.identity && c.stamp == stamp && c.merges == max_merges && c.identifiers == max_identifiers &&
      c.traits_limit == max_traits)
    return;
  c.identity.reset();  // if loading throws, the next batch tries again
  c.traits = std::make_unique<TraitRules>(load_trait_rules());
  c.identity = std::make_unique<IdentityRules>(load_identity_rules());
  c.stamp = stamp;
  c.merges = max_merges;
  c.identifiers = max_identifiers;
  c.traits_limit = max_traits;
}

// ---------------------------------------------------------------------------

struct Batch {
  std::vector<EventFacts> events;
  std::vector<std::string> txids;
};

// The columns an EventFacts is read from, in order (13 of them), and the reader.
#define EVENT_FACTS_COLUMNS                                                                      \
  " e.id, e.type, e.source_id, e.message_id, coalesce(e.user_id, ''),"                          \
  " coalesce(e.anonymous_id, ''), coalesce(e.previous_id, ''), coalesce(e.group_id, ''),"       \
  " e.\"timestamp\", coalesce(e.traits::text, ''), coalesce(e.context::text, ''),"             \
  " coalesce(e.properties::text, ''), coalesce(e.event, e.name, '') "

EventFacts event_facts(uint64 r, int first) {
  EventFacts e;
  e.id = spi::get_int8(r, first);
  e.type = parse_message_type(spi::get_text(r, first + 1)).value_or(MessageType::Track);
  e.source_id = spi::get_int4(r, first + 2);
  e.message_id = spi::get_text(r, first + 3);
  e.user_id = spi::get_text(r, first + 4);
  e.anonymous_id = spi::get_text(r, first + 5);
  e.previous_id = spi::get_text(r, first + 6);
  e.group_id = spi::get_text(r, first + 7);
  e.timestamp = spi::get_timestamptz(r, first + 8);
  e.traits = spi::get_text(r, first + 9);
  e.context = spi::get_text(r, first + 10);
  e.properties = spi::get_text(r, first + 11);
  e.name = spi::get_text(r, first + 12);
  return e;
}

}  // namespace

// cdp.processor_state has one row. If someone deleted it, it is made again
// (WARNING) with the cursor after the last event bound to a profile, the
// closest the tables tell to where the processor was; then the caller reads it.
// Must run inside pg::call.
void ensure_processor_state() {
  if (spi::exec("select 1 from cdp.processor_state", SPI_OK_SELECT) > 0) return;
  ereport(WARNING,
          (errmsg("cdp: the row of cdp.processor_state was missing; it is made again"),
           errdetail("The cursor restarts after the last event bound to a profile (cdp.event_profiles)."),
           errhint("Do not delete from cdp.processor_state; to stop the processor set paused = true.")));
  spi::exec("insert into cdp.processor_state (cursor_txid, cursor_event)"
            " (select e.txid, e.id from cdp.events e"
            "   where exists (select from cdp.event_profiles ep where ep.event_id = e.id)"
            "   order by e.txid desc, e.id desc limit 1)"
            " union all (select '0'::xid8, 0) limit 1"
            " on conflict do nothing",
            SPI_OK_INSERT);
}

namespace {

// The first event of the batch being processed, kept when its transaction
// aborts: the suspect if a batch of one keeps failing (see run_one_batch).
struct FirstEvent {
  std::string txid;
  int64_t id = 0;
  size_t batch = 0;  // events the batch read
};
FirstEvent batch_first;

Batch read_events(int limit, bool from_worker) {
  Batch b;
  call([&] {
    spi::exec("select pg_advisory_xact_lock(hashtext('cdp.processor'))", SPI_OK_SELECT);
    const char* state = "select paused, cursor_txid::text, cursor_event, pg_snapshot_xmin(pg_current_snapshot())::text"
                        " from cdp.processor_state";
    if (spi::exec(state, SPI_OK_SELECT) == 0) {  // someone deleted the row
      ensure_processor_state();
      spi::exec(state, SPI_OK_SELECT);
    }
    if (from_worker && spi::get_bool(0, 1)) return;
    std::string cursor_txid = spi::get_text(0, 2), xmin = spi::get_text(0, 4);
    int64_t cursor_event = spi::get_int8(0, 3);
    // The cursor goes in as parameters, so that it bounds the index scan.
    uint64 n = spi::exec(
        "select e.txid::text," EVENT_FACTS_COLUMNS
        " from cdp.events e"
        " where (e.txid, e.id) > ($2::xid8, $3) and e.txid < $4::xid8"
        " order by e.txid, e.id limit $1",
        {spi::int4(limit), spi::str(cursor_txid), spi::int8(cursor_event), spi::str(xmin)}, SPI_OK_SELECT);
    b.events.resize(n);
    b.txids.resize(n);
    for (uint64 r = 0; r < n; r++) {
      b.txids[r] = spi::get_text(r, 1);
      b.events[r] = event_facts(r, 2);
    }
  });
  if (!b.events.empty()) batch_first = {b.txids.front(), b.events.front().id, b.events.size()};
  return b;
}

// Seeds the resolver with what the database knows about the batch's identifiers.
void seed(Resolver& resolver, const IdentityRules& rules, const Batch& b,
          const std::vector<std::vector<Identifier>>& extracted, std::set<int64_t>& known_profiles) {
  std::vector<std::string> types, values;
  std::set<std::pair<int, std::string>> wanted;
  for (size_t i = 0; i < b.events.size(); i++) {
    const EventFacts& e = b.events[i];
    for (auto& id : extracted[i]) wanted.insert({id.type, id.value});
    if (e.type == MessageType::Alias && !e.previous_id.empty())
      for (const char* name : {"user_id", "anonymous_id"})
        if (int t = rules.find(name); t >= 0)
          if (auto v = rules.normalise(t, e.previous_id)) wanted.insert({t, *v});
  }
  for (auto& [t, v] : wanted) {
    types.push_back(rules.types()[t].name);
    values.push_back(v);
  }
  std::vector<std::string> limited;
  for (auto& t : rules.types())
    if (t.limit > 0) limited.push_back(t.name);
  struct Row {
    std::string type, value;
    int64_t profile;
    Micros first_seen;
  };
  std::vector<Row> rows;
  struct ProfileRow {
    int64_t id;
    int merges, identifiers;
    bool flagged;
  };
  std::vector<ProfileRow> profiles;
  call([&] {
    uint64 n = spi::exec(
        "with found as (select i.* from cdp.identities i"
        "   join unnest($1::text[], $2::text[]) k(type, value) using (type, value))"
        " select type, value, profile_id, first_seen from found"
        " union"  // array_position, not = any(): keeps the planner on the profile index
        " select i.type, i.value, i.profile_id, i.first_seen from cdp.identities i"
        "  where i.profile_id in (select profile_id from found)"
        "    and array_position($3::text[], i.type) is not null",
        {spi::text_array(types), spi::text_array(values), spi::text_array(limited)},
        SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++)
      rows.push_back({spi::get_text(r, 1), spi::get_text(r, 2), spi::get_int8(r, 3), spi::get_timestamptz(r, 4)});
  });
  std::vector<int64_t> ids;
  for (auto& r : rows) known_profiles.insert(r.profile);
  ids.assign(known_profiles.begin(), known_profiles.end());
  call([&] {
    uint64 n = spi::exec(
        "select profile_id, merge_count, identifier_count, flagged from cdp.profiles where profile_id = any($1)",
        {spi::int8_array(ids)}, SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++)
      profiles.push_back({spi::get_int8(r, 1), spi::get_int4(r, 2), spi::get_int4(r, 3), spi::get_bool(r, 4)});
  });
  for (auto& p : profiles) resolver.add_profile(p.id, p.merges, p.identifiers, p.flagged);
  for (auto& r : rows)
    if (int t = rules.find(r.type); t >= 0) resolver.add_identity({t, r.value}, r.profile, r.first_seen);
}

// At most `n` bytes of `s`, not cutting a UTF-8 character.
std::string cut(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) n--;
  return s.substr(0, n);
}

// The refused keys as one value of cdp.identity_refusals: the first few, comma-separated.
std::string key_list(const std::vector<std::string>& keys) {
  std::string out;
  for (auto& k : keys) {
    if (out.size() + k.size() > 200) return out + (out.empty() ? "" : ", ") + "...";
    out += out.empty() ? k : ", " + k;
  }
  return out;
}

struct ProfileAgg {
  TraitSet traits;
  Micros first_seen = INT64_MAX, last_seen = INT64_MIN;
  int64_t events = 0;
  int merges = 0;
  bool flagged = false;
  void seen(Micros t) {
    first_seen = std::min(first_seen, t);
    last_seen = std::max(last_seen, t);
  }
};

// Processes one batch inside the caller's transaction; returns events processed.
// Logs how long each phase of a batch took (log_min_messages = debug1).
struct PhaseClock {
  TimestampTz start = GetCurrentTimestamp();
  TimestampTz at = start;
  double total_ms() const { return (GetCurrentTimestamp() - start) / 1000.0; }
  void mark(const char* phase) {
    TimestampTz now = GetCurrentTimestamp();
    elog(DEBUG1, "cdp processor: %s took %.1f ms", phase, (now - at) / 1000.0);
    at = now;
  }
};

// Events carrying an identifier of an erased person (cdp.suppressions) go to
// cdp.quarantine with reason "suppressed" and leave the batch, so that they
// re-create nothing.
void quarantine_suppressed(const IdentityRules& rules, Batch& b, std::vector<std::vector<Identifier>>& extracted) {
  bool any = false;
  call([&] {
    spi::exec("select exists (select from cdp.suppressions)", SPI_OK_SELECT);
    any = spi::get_bool(0, 1);
  });
  if (!any) return;
  std::vector<std::string> hashes;
  for (auto& ids : extracted)
    for (auto& id : ids) hashes.push_back(cdp::delivery::sha256_hex(rules.types()[id.type].name + ":" + id.value));
  std::set<std::string> hit;
  call([&] {
    uint64 n = spi::exec("select identifier_hash from cdp.suppressions where identifier_hash = any($1)",
                         {spi::text_array(hashes)}, SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++) hit.insert(spi::get_text(r, 1));
  });
  if (hit.empty()) return;
  Batch kept;
  std::vector<std::vector<Identifier>> kept_ids;
  std::vector<std::string> q_txid;
  std::vector<int64_t> q_id;
  size_t h = 0;
  for (size_t i = 0; i < b.events.size(); i++) {
    bool suppressed = false;
    for (size_t k = 0; k < extracted[i].size(); k++) suppressed |= hit.count(hashes[h++]) > 0;
    if (suppressed) {
      q_txid.push_back(b.txids[i]);
      q_id.push_back(b.events[i].id);
    } else {
      kept.events.push_back(std::move(b.events[i]));
      kept.txids.push_back(std::move(b.txids[i]));
      kept_ids.push_back(std::move(extracted[i]));
    }
  }
  call([&] {
    spi::exec("with moved as (delete from cdp.events e using unnest($1::text[], $2::int8[]) x(t, id)"
              "   where e.txid = x.t::xid8 and e.id = x.id returning e.*)"
              " insert into cdp.quarantine (received_at, source_id, message_id, field, reason, raw)"
              " select received_at, source_id, message_id, 'identifiers', 'suppressed',"
              "   (to_jsonb(moved) - 'txid' - 'id')::text from moved",
              {spi::text_array(q_txid), spi::int8_array(q_id)}, SPI_OK_INSERT);
  });
  b = std::move(kept);
  extracted = std::move(kept_ids);
}

// Consent: a merged-away profile's consent goes to its survivor (the latest
// statement wins), then each event carrying context.consent.categoryPreferences
// is recorded in the history and, if it is the latest, as the profile's consent.
void record_consent(const Batch& b, const std::vector<int64_t>& bound, const std::vector<int64_t>& merged_away,
                    const std::vector<int64_t>& merged_into) {
  std::vector<int64_t> profiles, ids;
  std::vector<std::string> txids;
  for (size_t i = 0; i < b.events.size(); i++)
    if (bound[i] != 0 && b.events[i].context.find("categoryPreferences") != std::string::npos) {
      profiles.push_back(bound[i]);
      txids.push_back(b.txids[i]);
      ids.push_back(b.events[i].id);
    }
  if (profiles.empty() && merged_away.empty()) return;
  call([&] {
    spi::exec("with gone as (delete from cdp.consent c using unnest($1::int8[], $2::int8[]) x(away, into_)"
              "   where c.profile_id = x.away returning x.into_, c.*)"
              " insert into cdp.consent as c (profile_id, preferences, updated_at, source)"
              " select distinct on (into_) into_, preferences, updated_at, source from gone order by into_, updated_at desc"
              " on conflict (profile_id) do update set preferences = excluded.preferences,"
              "   updated_at = excluded.updated_at, source = excluded.source where excluded.updated_at >= c.updated_at",
              {spi::int8_array(merged_away), spi::int8_array(merged_into)}, SPI_OK_INSERT);
    spi::exec("with ev as (select x.p, e.id, e.\"timestamp\" as at, e.context->'consent'->'categoryPreferences' as prefs"
              "   from unnest($1::int8[], $2::text[], $3::int8[]) x(p, t, id)"
              "   join cdp.events e on e.txid = x.t::xid8 and e.id = x.id"
              "  where jsonb_typeof(e.context->'consent'->'categoryPreferences') = 'object'),"
              " h as (insert into cdp.consent_history (profile_id, preferences, source, event_id, expressed_at)"
              "   select p, prefs, 'event', id, at from ev)"
              " insert into cdp.consent as c (profile_id, preferences, updated_at, source)"
              " select distinct on (p) p, prefs, at, 'event' from ev order by p, at desc, id desc"
              " on conflict (profile_id) do update set preferences = excluded.preferences,"
              "   updated_at = excluded.updated_at, source = excluded.source where excluded.updated_at >= c.updated_at",
              {spi::int8_array(profiles), spi::text_array(txids), spi::int8_array(ids)}, SPI_OK_INSERT);
  });
}

int64_t process_batch(int limit, bool from_worker) {
  PhaseClock clock;
  Batch b = read_events(limit, from_worker);
  if (b.events.empty()) return 0;
  call([&] { clock.mark("read events"); });
  refresh_rules();
  const IdentityRules& rules = *rules_cache.identity;
  const TraitRules& trait_rules = *rules_cache.traits;

  int64_t next_temp = 0;
  Resolver resolver(rules, [&] { return --next_temp; });  // new profiles get temporary negative ids
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
  quarantine_suppressed(rules, b, extracted);
  if (b.events.empty()) {
    call([&] {
      spi::exec("update cdp.processor_state set cursor_txid = $1::xid8, cursor_event = $2,"
                " processed_total = processed_total + $3, last_batch = $3, last_run_at = clock_timestamp()",
                {spi::str(cursor_txid), spi::int8(cursor_event), spi::int4(batch_events)}, SPI_OK_UPDATE);
    });
    return batch_events;
  }
  std::set<int64_t> known;
  seed(resolver, rules, b, extracted, known);
  std::vector<Decision> decisions;
  decisions.reserve(b.events.size());
  call([&] { clock.mark("rules and seed"); });
  for (size_t i = 0; i < b.events.size(); i++) {
    spi::check_interrupts();
    decisions.push_back(resolver.resolve(b.events[i], extracted[i]));
  }
  call([&] { clock.mark("resolve"); });
  last_graph_identities = resolver.identity_count();
  last_graph_bytes = resolver.memory_bytes();
  last_graph_text = resolver.text_bytes();

  // Real ids for the new profiles.
  std::unordered_map<int64_t, int64_t> real;
  std::vector<int64_t> fresh;
  call([&] {
    uint64 n = spi::exec("select nextval('cdp.profile_id_seq') from generate_series(1, $1)",
                         {spi::int8(-next_temp)}, SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++) fresh.push_back(spi::get_int8(r, 1));
  });
  for (int64_t t = -1; t >= next_temp; t--) real[t] = fresh[static_cast<size_t>(-t - 1)];
  auto id_of = [&](int64_t p) { return p < 0 ? real.at(p) : p; };
  auto final_of = [&](int64_t p) { return id_of(resolver.canonical(p)); };

  // Existing profiles touched: their rows fold into their survivors.
  std::vector<int64_t> existing(known.begin(), known.end());
  std::map<int64_t, ProfileAgg> agg;
  struct Loaded {
    int64_t id;
    std::string traits, sources;
    Micros first, last;
    int64_t events;
    int merges;
    bool flagged;
  };
  std::vector<Loaded> loaded;
  call([&] {
    uint64 n = spi::exec(
        "select profile_id, traits::text, trait_sources::text, first_seen, last_seen, event_count,"
        " merge_count, flagged from cdp.profiles where profile_id = any($1)",
        {spi::int8_array(existing)}, SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++)
      loaded.push_back({spi::get_int8(r, 1), spi::get_text(r, 2), spi::get_text(r, 3),
                        spi::get_timestamptz(r, 4), spi::get_timestamptz(r, 5), spi::get_int8(r, 6),
                        spi::get_int4(r, 7), spi::get_bool(r, 8)});
  });
  std::vector<int64_t> merged_away, merged_into;
  for (auto& l : loaded) {
    spi::check_interrupts();
    ProfileAgg& a = agg[final_of(l.id)];
    trait_rules.fold_set(a.traits, TraitSet::from_json(l.traits, l.sources));
    if (l.first != 0) a.seen(l.first);
    if (l.last != 0) a.seen(l.last);
    a.events += l.events;
    a.merges += l.merges;
    a.flagged |= l.flagged;
    if (final_of(l.id) != l.id) {
      merged_away.push_back(l.id);
      merged_into.push_back(final_of(l.id));
    }
  }

  // Per event: binding, traits, merges, new identifiers, refusals, accounts.
  std::vector<int64_t> ep_event, ep_profile;
  std::vector<std::string> id_type, id_value;
  std::vector<int64_t> id_profile, id_origin, id_event;
  std::vector<Micros> id_seen;
  std::vector<int64_t> m_from, m_into, m_event;
  std::vector<std::string> m_ids;
  std::vector<int64_t> r_event, r_profile, r_other;
  std::vector<std::string> r_type, r_value, r_rule;
  auto refuse = [&](int64_t event, int64_t profile, std::string type, std::string value, std::string rule) {
    r_event.push_back(event);
    r_profile.push_back(profile);
    r_other.push_back(0);
    r_type.push_back(std::move(type));
    r_value.push_back(std::move(value));
    r_rule.push_back(std::move(rule));
  };
  std::map<std::string, TraitSet> accounts;
  std::map<std::string, std::pair<Micros, Micros>> account_seen;
  std::vector<int64_t> pa_profile;
  std::vector<std::string> pa_group;
  std::vector<Micros> pa_seen;
  for (size_t i = 0; i < b.events.size(); i++) {
    spi::check_interrupts();
    const EventFacts& e = b.events[i];
    const Decision& d = decisions[i];
    for (auto& m : d.merges) {
      m_from.push_back(id_of(m.from));
      m_into.push_back(id_of(m.into));
      m_event.push_back(e.id);
      m_ids.push_back(rules.to_json(extracted[i]));
      agg[final_of(m.into)].merges++;
    }
    for (auto& r : d.refusals) {
      r_event.push_back(e.id);
      r_profile.push_back(id_of(r.profile));
      r_other.push_back(r.other_profile ? id_of(r.other_profile) : 0);
      r_type.push_back(rules.types()[r.identifier.type].name);
      r_value.push_back(r.identifier.value);
      r_rule.push_back(r.rule);
    }
    if (d.profile == 0) continue;  // every identifier blocked: bound to no one
    int64_t bound = id_of(d.profile);
    ProfileAgg& a = agg[final_of(d.profile)];
    a.events++;
    a.seen(e.timestamp);
    a.flagged |= d.flagged;
    trait_rules.fold_event(a.traits, e);
    if (!a.traits.refused.empty()) {  // the trait-key limit: the keys it refused, for review
      a.flagged = true;
      refuse(e.id, bound, "trait", key_list(a.traits.refused),
             "traits: the profile has " + std::to_string(trait_rules.max_traits()) +
                 " keys (cdp.max_traits_per_profile); " + std::to_string(a.traits.refused.size()) +
                 " new keys refused");
    }
    ep_event.push_back(e.id);
    ep_profile.push_back(bound);
    for (auto& id : d.attached) {
      id_type.push_back(rules.types()[id.type].name);
      id_value.push_back(id.value);
      id_profile.push_back(final_of(d.profile));
      id_origin.push_back(bound);
      id_event.push_back(e.id);
      id_seen.push_back(e.timestamp);
    }
    if (e.type == MessageType::Group && e.group_id.size() > kMaxIdentifierBytes) {
      refuse(e.id, bound, "group_id", cut(e.group_id, 64) + "...",
             "groupId: longer than " + std::to_string(kMaxIdentifierBytes) + " bytes (" +
                 std::to_string(e.group_id.size()) + "); the event joins no account");
    } else if (e.type == MessageType::Group && !e.group_id.empty()) {
      TraitSet& account = accounts[e.group_id];
      trait_rules.fold_event(account, e, true);
      if (!account.refused.empty())
        refuse(e.id, bound, "trait", key_list(account.refused),
               "traits: the account has " + std::to_string(trait_rules.max_traits()) +
                   " keys (cdp.max_traits_per_profile); " + std::to_string(account.refused.size()) +
                   " new keys refused");
      auto& seen = account_seen.try_emplace(e.group_id, e.timestamp, e.timestamp).first->second;
      seen.first = std::min(seen.first, e.timestamp);
      seen.second = std::max(seen.second, e.timestamp);
      pa_profile.push_back(bound);
      pa_group.push_back(e.group_id);
      pa_seen.push_back(e.timestamp);
    }
  }
  // Profiles made in this batch and merged away in it still need a map row.
  std::vector<int64_t> new_ids, new_canonical;
  for (auto& [temp, id] : real) {
    new_ids.push_back(id);
    new_canonical.push_back(final_of(temp));
  }
  std::vector<int64_t> p_id, p_events;
  std::vector<std::string> p_traits, p_sources;
  std::vector<Micros> p_first, p_last;
  std::vector<int> p_merges;
  std::vector<bool> p_flagged;
  for (auto& [id, a] : agg) {
    p_id.push_back(id);
    p_traits.push_back(a.traits.traits_json());
    p_sources.push_back(a.traits.meta_json());
    p_first.push_back(a.first_seen == INT64_MAX ? 0 : a.first_seen);
    p_last.push_back(a.last_seen == INT64_MIN ? 0 : a.last_seen);
    p_events.push_back(a.events);
    p_merges.push_back(a.merges);
    p_flagged.push_back(a.flagged);
  }
  // Accounts already stored fold in too, so their traits merge by the same rules.
  std::vector<std::string> groups;
  for (auto& [group, set] : accounts) groups.push_back(group);
  std::vector<std::array<std::string, 3>> stored;
  std::vector<std::pair<Micros, Micros>> stored_seen;
  call([&] {
    uint64 n = spi::exec("select group_id, traits::text, trait_sources::text, first_seen, last_seen"
                         " from cdp.accounts where group_id = any($1)",
                         {spi::text_array(groups)}, SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++) {
      stored.push_back({spi::get_text(r, 1), spi::get_text(r, 2), spi::get_text(r, 3)});
      stored_seen.push_back({spi::get_timestamptz(r, 4), spi::get_timestamptz(r, 5)});
    }
  });
  for (size_t i = 0; i < stored.size(); i++) {
    trait_rules.fold_set(accounts[stored[i][0]], TraitSet::from_json(stored[i][1], stored[i][2]));
    auto& seen = account_seen[stored[i][0]];
    seen.first = std::min(seen.first, stored_seen[i].first);
    seen.second = std::max(seen.second, stored_seen[i].second);
  }
  call([&] { clock.mark("fold traits"); });
  std::vector<std::string> acc_id, acc_traits, acc_sources;
  std::vector<Micros> acc_first, acc_last;
  for (auto& [group, set] : accounts) {
    acc_id.push_back(group);
    acc_traits.push_back(set.traits_json());
    acc_sources.push_back(set.meta_json());
    acc_first.push_back(account_seen[group].first);
    acc_last.push_back(account_seen[group].second);
  }

  call([&] {
    spi::exec("insert into cdp.profile_map (profile_id, canonical_id) select * from unnest($1::int8[], $2::int8[])",
              {spi::int8_array(new_ids), spi::int8_array(new_canonical)}, SPI_OK_INSERT);
    spi::exec("update cdp.profile_map m set canonical_id = x.c from unnest($1::int8[], $2::int8[]) x(p, c)"
              " where m.canonical_id = x.p",
              {spi::int8_array(merged_away), spi::int8_array(merged_into)}, SPI_OK_UPDATE);
    spi::exec("update cdp.identities i set profile_id = x.c from unnest($1::int8[], $2::int8[]) x(p, c)"
              " where i.profile_id = x.p",
              {spi::int8_array(merged_away), spi::int8_array(merged_into)}, SPI_OK_UPDATE);
    spi::exec("delete from cdp.profiles where profile_id = any($1)",
              {spi::int8_array(merged_away)}, SPI_OK_DELETE);
    spi::exec("insert into cdp.identities (type, value, profile_id, origin_profile, event_id, first_seen)"
              " select * from unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::timestamptz[])",
              {spi::text_array(id_type), spi::text_array(id_value), spi::int8_array(id_profile),
                           spi::int8_array(id_origin), spi::int8_array(id_event), spi::timestamptz_array(id_seen)},
              SPI_OK_INSERT);
    spi::exec("insert into cdp.profile_merges (from_profile, into_profile, event_id, identifiers)"
              " select f, t, e, i::jsonb from unnest($1::int8[], $2::int8[], $3::int8[], $4::text[]) x(f, t, e, i)",
              {spi::int8_array(m_from), spi::int8_array(m_into), spi::int8_array(m_event),
                           spi::text_array(m_ids)},
              SPI_OK_INSERT);
    spi::exec("insert into cdp.profiles as p (profile_id, traits, trait_sources, first_seen, last_seen,"
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
              {spi::int8_array(p_id), spi::text_array(p_traits), spi::text_array(p_sources),
                           spi::timestamptz_array(p_first), spi::timestamptz_array(p_last),
                           spi::int8_array(p_events), spi::int4_array(p_merges), spi::bool_array(p_flagged)},
              SPI_OK_INSERT);
    spi::exec("insert into cdp.event_profiles (event_id, profile_id) select * from unnest($1::int8[], $2::int8[])"
              " on conflict do nothing",
              {spi::int8_array(ep_event), spi::int8_array(ep_profile)}, SPI_OK_INSERT);
    spi::exec("insert into cdp.identity_refusals (event_id, profile_id, other_profile, type, value, rule)"
              " select e, p, nullif(o, 0), t, v, r from unnest($1::int8[], $2::int8[], $3::int8[], $4::text[],"
              " $5::text[], $6::text[]) x(e, p, o, t, v, r)",
              {spi::int8_array(r_event), spi::int8_array(r_profile), spi::int8_array(r_other),
                           spi::text_array(r_type), spi::text_array(r_value), spi::text_array(r_rule)},
              SPI_OK_INSERT);
    spi::exec("insert into cdp.accounts as a (group_id, traits, trait_sources, first_seen, last_seen)"
              " select g, t::jsonb, s::jsonb, f, l from unnest($1::text[], $2::text[], $3::text[],"
              " $4::timestamptz[], $5::timestamptz[]) x(g, t, s, f, l)"
              " on conflict (group_id) do update set traits = excluded.traits,"
              "   trait_sources = excluded.trait_sources, first_seen = excluded.first_seen,"
              "   last_seen = excluded.last_seen",
              {spi::text_array(acc_id), spi::text_array(acc_traits), spi::text_array(acc_sources),
                           spi::timestamptz_array(acc_first), spi::timestamptz_array(acc_last)},
              SPI_OK_INSERT);
    spi::exec("insert into cdp.profile_accounts (profile_id, group_id, first_seen)"
              " select * from unnest($1::int8[], $2::text[], $3::timestamptz[]) on conflict do nothing",
              {spi::int8_array(pa_profile), spi::text_array(pa_group), spi::timestamptz_array(pa_seen)},
              SPI_OK_INSERT);
    spi::exec("update cdp.processor_state set cursor_txid = $1::xid8, cursor_event = $2,"
              " processed_total = processed_total + $3, last_batch = $3, last_run_at = clock_timestamp(),"
              " last_batch_ms = $4",
              {spi::str(cursor_txid), spi::int8(cursor_event), spi::int4(batch_events), spi::float8(clock.total_ms())},
              SPI_OK_UPDATE);
  });
  call([&] { clock.mark("write"); });
  std::vector<int64_t> bound(b.events.size(), 0);
  for (size_t i = 0; i < b.events.size(); i++)
    if (decisions[i].profile != 0) bound[i] = final_of(decisions[i].profile);
  record_consent(b, bound, merged_away, merged_into);
  // Events first, then the segment changes they cause: a destination sees them in that order.
  if (!rebuilding) delivery::queue_events(b.events, b.txids, bound);
  call([&] { clock.mark("queue deliveries"); });
  audience::after_batch(b.events, bound, merged_away, merged_into);
  call([&] { clock.mark("segments"); });
  return batch_events;
}

// Recomputes traits and counters of the given surviving profiles from every
// event bound to them (through cdp.profile_map), as if processed afresh.
void refold(const std::vector<int64_t>& profiles) {
  TraitRules trait_rules = load_trait_rules();
  std::map<int64_t, ProfileAgg> agg;
  for (int64_t p : profiles) agg[p];
  std::vector<std::pair<int64_t, EventFacts>> events;
  call([&] {
    uint64 n = spi::exec(
        "select m.canonical_id," EVENT_FACTS_COLUMNS
        " from cdp.event_profiles ep join cdp.profile_map m on m.profile_id = ep.profile_id"
        " join cdp.events e on e.id = ep.event_id where m.canonical_id = any($1)",
        {spi::int8_array(profiles)}, SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++) events.emplace_back(spi::get_int8(r, 1), event_facts(r, 2));
  });
  for (auto& [p, e] : events) {
    ProfileAgg& a = agg[p];
    a.events++;
    a.seen(e.timestamp);
    trait_rules.fold_event(a.traits, e);
  }
  std::vector<int64_t> ids, counts;
  std::vector<std::string> traits, sources;
  std::vector<Micros> first, last;
  for (auto& [p, a] : agg) {
    ids.push_back(p);
    traits.push_back(a.traits.traits_json());
    sources.push_back(a.traits.meta_json());
    first.push_back(a.first_seen == INT64_MAX ? 0 : a.first_seen);
    last.push_back(a.last_seen == INT64_MIN ? 0 : a.last_seen);
    counts.push_back(a.events);
  }
  call([&] {
    spi::exec("insert into cdp.profiles as p (profile_id, traits, trait_sources, first_seen, last_seen, event_count)"
              " select id, t::jsonb, s::jsonb, nullif(f, 'epoch'), nullif(l, 'epoch'), c"
              " from unnest($1::int8[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int8[])"
              "   x(id, t, s, f, l, c)"
              " on conflict (profile_id) do update set traits = excluded.traits,"
              "   trait_sources = excluded.trait_sources, first_seen = excluded.first_seen,"
              "   last_seen = excluded.last_seen, event_count = excluded.event_count, updated_at = now()",
              {spi::int8_array(ids), spi::text_array(traits), spi::text_array(sources),
               spi::timestamptz_array(first), spi::timestamptz_array(last), spi::int8_array(counts)},
              SPI_OK_INSERT);
    spi::exec("update cdp.profiles p set"
              " identifier_count = (select count(*) from cdp.identities i where i.profile_id = p.profile_id),"
              " merge_count = (select count(*) from cdp.profile_merges pm join cdp.profile_map m"
              "   on m.profile_id = pm.into_profile where m.canonical_id = p.profile_id and pm.unmerged_at is null)"
              " where profile_id = any($1)",
              {spi::int8_array(ids)}, SPI_OK_UPDATE);
  });
}

// Splits merge `merge_id` apart: the merged-away profile (with every profile
// that had merged into it before) gets back its identifiers, its events
// (through the map: early binding was never rewritten) and traits from them.
int64_t unmerge(int64_t merge_id) {
  int64_t from = 0, survivor = 0;
  bool found = false, undone = false;
  call([&] {
    spi::exec("select pg_advisory_xact_lock(hashtext('cdp.processor'))", SPI_OK_SELECT);
    uint64 n = spi::exec("select m.from_profile, cdp.canonical_profile(m.into_profile), m.unmerged_at is not null"
                         " from cdp.profile_merges m where m.merge_id = $1 for update",
                         {spi::int8(merge_id)}, SPI_OK_SELECT);
    if (n == 0) return;
    found = true;
    from = spi::get_int8(0, 1);
    survivor = spi::get_int8(0, 2);
    undone = spi::get_bool(0, 3);
  });
  if (!found) throw Error(ErrorKind::InvalidInput, "merge_id", "no merge " + std::to_string(merge_id));
  if (undone) throw Error(ErrorKind::InvalidInput, "merge_id", "merge " + std::to_string(merge_id) + " was already undone");
  call([&] {
    spi::exec(
        "with recursive under(p) as ("
        "  select $1::int8"
        "  union select pm.from_profile from cdp.profile_merges pm join under u on pm.into_profile = u.p"
        "   where pm.merge_id < $2 and pm.unmerged_at is null)"
        ", remap as (update cdp.profile_map set canonical_id = $1 where profile_id in (select p from under) returning 1)"
        " update cdp.identities set profile_id = $1"
        "  where profile_id = $3 and origin_profile in (select p from under)",
        {spi::int8(from), spi::int8(merge_id), spi::int8(survivor)}, SPI_OK_UPDATE);
    spi::exec("update cdp.profile_merges set unmerged_at = now() where merge_id = $1", {spi::int8(merge_id)},
              SPI_OK_UPDATE);
  });
  refold({from, survivor});
  audience::refresh_profiles({from, survivor});
  return from;
}

// Rebuilds the whole graph, profiles and traits from the events table in one
// pass through the same resolver as incremental processing.
int64_t rebuild() {
  call([] {
    spi::exec("select pg_advisory_xact_lock(hashtext('cdp.processor'))", SPI_OK_SELECT);
    // Consent is kept by profile number, and the numbers change: statements
    // made through cdp.set_consent are carried over by identifier; those from
    // events are recorded again as the events are processed.
    spi::exec("create temp table cdp_rebuild_consent on commit drop as"
              " select distinct on (h.id) i.type, i.value, h.preferences, h.event_id, h.expressed_at, h.recorded_at"
              "   from cdp.consent_history h join cdp.profile_map m on m.profile_id = h.profile_id"
              "   join cdp.identities i on i.profile_id = m.canonical_id where h.source = 'api'"
              "  order by h.id, i.first_seen",
              SPI_OK_UTILITY);
    spi::exec("truncate cdp.consent, cdp.consent_history", SPI_OK_UTILITY);
    spi::exec("truncate cdp.identities, cdp.profiles, cdp.profile_map, cdp.profile_merges,"
              " cdp.identity_refusals, cdp.event_profiles, cdp.accounts, cdp.profile_accounts,"
              " cdp.profile_computed, cdp.aggregates_built", SPI_OK_UTILITY);
    ensure_processor_state();
    spi::exec("update cdp.processor_state set cursor_txid = '0', cursor_event = 0", SPI_OK_UPDATE);
  });
  int64_t total = 0;
  rebuilding = true;  // the events were delivered when first processed
  try {
    for (;;) {
      int64_t n = process_batch(1000000, false);
      total += n;
      if (n < 1000000) break;
    }
  } catch (...) {
    rebuilding = false;
    throw;
  }
  rebuilding = false;
  call([] {
    spi::exec("insert into cdp.consent_history (profile_id, preferences, source, event_id, expressed_at, recorded_at)"
              " select i.profile_id, r.preferences, 'api', r.event_id, r.expressed_at, r.recorded_at"
              "   from cdp_rebuild_consent r join cdp.identities i using (type, value)",
              SPI_OK_INSERT);
    spi::exec("insert into cdp.consent as c (profile_id, preferences, updated_at, source)"
              " select distinct on (i.profile_id) i.profile_id, r.preferences, r.expressed_at, 'api'"
              "   from cdp_rebuild_consent r join cdp.identities i using (type, value)"
              "  order by i.profile_id, r.expressed_at desc"
              " on conflict (profile_id) do update set preferences = excluded.preferences,"
              "   updated_at = excluded.updated_at, source = excluded.source where excluded.updated_at >= c.updated_at",
              SPI_OK_INSERT);
  });
  audience::rebuild_all();
  call([&] {
    double n = last_graph_identities ? double(last_graph_identities) : 1.0;
    ereport(NOTICE, (errmsg("cdp: identity graph of the last pass: %zu identifiers in %zu bytes: "
                            "%.1f bytes of structure + %.1f bytes of identifier text each",
                            last_graph_identities, last_graph_bytes,
                            (last_graph_bytes - last_graph_text) / n, last_graph_text / n)));
  });
  return total;
}

}  // namespace
}  // namespace cdp::pg

namespace cdp::pg {
namespace {

// Runs batches until none is left (or until `max_batches`); each batch is a
// subtransaction-free unit inside the caller's transaction.
int64_t process_all(int max_batches) {
  int64_t total = 0;
  for (int i = 0; i < max_batches; i++) {
    int64_t n = process_batch(batch_size, false);
    total += n;
    if (n < batch_size) break;
  }
  return total;
}

// ---------------------------------------------------------------------------
// One bad event must not stop the processor. Each batch of the worker runs
// under a time budget (cdp.processor_batch_timeout): when it runs out, the
// statement or loop running is cancelled (an ERROR) and the batch rolls back.
// After a failure the next batch is half as big, down to one event; a single
// event that fails twice in a row with an error the event itself can cause
// (the budget, bad data: SQLSTATE classes 22, 23 and 54, or an error of the
// C++ core) is moved to cdp.quarantine with the reason, and the rest goes on.
// Errors of the system (locks, disk, privileges, a missing table) never
// quarantine: the batch is retried after a pause, as before.

TimeoutId budget_timeout = MAX_TIMEOUTS;  // registered by the worker
volatile sig_atomic_t budget_expired = false;
// It ran out while the worker waited for a lock (someone else's transaction,
// or cdp.process_pending() holding the processor's advisory lock): no event's fault.
volatile sig_atomic_t budget_in_lock_wait = false;

// A timeout handler runs in the SIGALRM handler: set flags, wake, nothing more.
void on_budget_expired() {
  budget_expired = true;
  budget_in_lock_wait = MyProc != nullptr && MyProc->waitLock != nullptr;
  QueryCancelPending = true;
  InterruptPending = true;
  SetLatch(MyLatch);
}

void start_budget() {
  budget_expired = false;
  budget_in_lock_wait = false;
  QueryCancelPending = false;  // a cancel left over from the last batch's end
  if (batch_timeout_ms > 0 && budget_timeout != MAX_TIMEOUTS) enable_timeout_after(budget_timeout, batch_timeout_ms);
}

void stop_budget() {
  if (budget_timeout != MAX_TIMEOUTS) disable_timeout(budget_timeout, false);
  // Ran out after the last check: the batch is done. A cancel left pending
  // would raise at the loop's CHECK_FOR_INTERRUPTS, outside any handler, and
  // end the worker.
  if (budget_expired) QueryCancelPending = false;
}

int batch_limit = -1;  // the size of the next batch: batch_size, less after failures
int suspect_failures = 0;
FirstEvent suspect;

// Whether an error can come from the event being processed rather than from
// the system around it.
bool event_can_cause(const std::exception& e) {
  auto* pg = dynamic_cast<const PgError*>(&e);
  if (!pg) return true;  // the C++ core: it only sees the events
  int code = pg->edata->sqlerrcode;
  if (code == ERRCODE_QUERY_CANCELED) return budget_expired && !budget_in_lock_wait;
  int cls = ERRCODE_TO_CATEGORY(code);
  return cls == ERRCODE_DATA_EXCEPTION || cls == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION ||
         cls == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

// Moves one event from cdp.events to cdp.quarantine (field "processor").
void quarantine_event(const FirstEvent& ev, const std::string& reason) {
  worker::in_transaction("cdp processor: quarantine", [&] {
    call([&] {
      uint64 n = spi::exec(
          "with moved as (delete from cdp.events e where e.txid = $1::xid8 and e.id = $2 returning e.*)"
          " insert into cdp.quarantine (received_at, source_id, message_id, field, reason, raw)"
          " select received_at, source_id, message_id, 'processor', $3,"
          "   (to_jsonb(moved) - 'txid' - 'id')::text from moved",
          {spi::str(ev.txid), spi::int8(ev.id), spi::str(reason)}, SPI_OK_INSERT);
      if (n > 0)
        ereport(WARNING, (errmsg("cdp processor: event %lld set aside in cdp.quarantine: %s",
                                 static_cast<long long>(ev.id), reason.c_str())));
    });
  });
}

// One transaction: a batch. Errors roll it back and are logged; the worker
// goes on (a persistent error is retried after a pause, never crash-looped).
bool run_one_batch() {
  int64_t n = 0;
  if (batch_limit < 1 || batch_limit > batch_size) batch_limit = batch_size;
  int limit = batch_limit;
  batch_first = {};
  try {
    worker::begin("cdp processor: processing events");
    start_budget();
    if (worker::extension_installed()) n = process_batch(limit, true);  // else: not created yet
    stop_budget();
    worker::commit();
  } catch (const std::exception& e) {
    stop_budget();
    bool expired = budget_expired;
    bool attributable = event_can_cause(e);
    std::string why = !expired ? std::string(e.what())
                      : budget_in_lock_wait
                          ? "the batch waited for a lock longer than cdp.processor_batch_timeout (" +
                                std::to_string(batch_timeout_ms) + " ms)"
                          : "the batch took longer than cdp.processor_batch_timeout (" +
                                std::to_string(batch_timeout_ms) + " ms)";
    worker::abort("cdp processor: batch (will retry)", why);
    budget_expired = false;
    QueryCancelPending = false;
    if (!attributable || batch_first.txid.empty()) return false;  // the system, not an event: pause, retry
    if (batch_first.batch > 1) {
      batch_limit = static_cast<int>(batch_first.batch / 2);  // narrow down to the event that fails
      return true;
    }
    bool same = suspect.txid == batch_first.txid && suspect.id == batch_first.id;
    suspect = batch_first;
    suspect_failures = same ? suspect_failures + 1 : 1;
    if (suspect_failures >= 2) {
      quarantine_event(suspect, "processor: " + why);
      suspect_failures = 0;
      return true;
    }
    return false;
  }
  if (batch_limit < batch_size) batch_limit = std::min(batch_size, batch_limit * 2);  // back to full size
  return n >= limit;  // more waiting
}

// Partitions ahead, the dedup window and retention, once a minute: without this nothing
// would trim cdp.message_ids when only the SQL API is used.
void run_maintenance() {
  worker::in_transaction("cdp processor: maintenance",
                         [] { call([] { spi::exec("select cdp.run_maintenance()", SPI_OK_SELECT); }); });
  // Its own transaction: a failure here does not undo the partitions made above.
  if (retention_enabled)
    worker::in_transaction("cdp processor: retention",
                           [] { call([] { spi::exec("select cdp.run_retention()", SPI_OK_SELECT); }); });
}

// Segments whose windows moved on, once a second.
void run_sweep() { worker::in_transaction("cdp processor: segment sweep", [] { audience::sweep(true); }); }

void worker_loop() {
  TimestampTz last_maintenance = 0, last_sweep = 0;
  while (!shutdown_requested) {
    bool more = true;
    while (more && !shutdown_requested) {
      if (GetCurrentTimestamp() - last_maintenance > 60 * USECS_PER_SEC) {  // even under a backlog
        run_maintenance();
        last_maintenance = GetCurrentTimestamp();
      }
      more = run_one_batch();
      if (GetCurrentTimestamp() - last_sweep >= USECS_PER_SEC) {
        run_sweep();
        last_sweep = GetCurrentTimestamp();
      }
      CHECK_FOR_INTERRUPTS();
    }
    int rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000, PG_WAIT_EXTENSION);
    (void)rc;
    ResetLatch(MyLatch);
    CHECK_FOR_INTERRUPTS();
    if (ConfigReloadPending) {
      ConfigReloadPending = false;
      ProcessConfigFile(PGC_SIGHUP);
    }
  }
}

}  // namespace

void define_processor_gucs() {
  DefineCustomBoolVariable("cdp.processor_enabled", "Run the processor background worker.",
                           "Without it, call cdp.process_pending() to process events.",
                           &processor_enabled, true, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
  DefineCustomBoolVariable("cdp.retention_enabled", "Apply cdp.retention once a minute in the processor worker.",
                           "Off: run cdp.run_retention() yourself (the test clusters do, with a settable clock).",
                           &retention_enabled, true, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.processor_batch_size", "Most events the processor handles in one transaction.",
                          nullptr, &batch_size, 5000, 1, 100000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.max_merges_per_profile",
                          "Guard rail: a profile that would pass this many merges takes no more and is flagged.",
                          nullptr, &max_merges, 100, 1, 1000000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.max_traits_per_profile",
                          "Guard rail: trait keys a profile or account takes from events.",
                          "Past it, new keys are refused (recorded in cdp.identity_refusals, the profile flagged);"
                          " keys it has still update.",
                          &max_traits, static_cast<int>(kDefaultMaxTraits), 1, 100000, PGC_SUSET, 0, nullptr,
                          nullptr, nullptr);
  DefineCustomIntVariable("cdp.processor_batch_timeout",
                          "Time budget of one batch of the processor worker; 0 turns it off.",
                          "A batch past it rolls back and is retried smaller; a single event past it"
                          " (twice) is set aside in cdp.quarantine.",
                          &batch_timeout_ms, 10000, 0, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("cdp.max_identifiers_per_profile",
                          "Guard rail: a profile that would pass this many identifiers takes no more and is flagged.",
                          nullptr, &max_identifiers, 1000, 1, 10000000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
}

void register_processor() {
  if (processor_enabled) worker::register_worker("cdp processor", "cdp processor", "cdp_processor_main");
}

}  // namespace cdp::pg

namespace cdp::pg {
namespace {
// SIGTERM: the shared flag for the loop, and Postgres' die() so that the next
// CHECK_FOR_INTERRUPTS (in a statement, or spi::check_interrupts in the
// loops over events and profiles) ends the worker within moments, even in
// the middle of a long batch, which rolls back.
void on_sigterm(SIGNAL_ARGS) {
  worker::shutdown_requested = true;
  die(postgres_signal_arg);
}
}  // namespace
}  // namespace cdp::pg

void cdp_processor_main(Datum) {
  cdp::pg::worker::install_signals();
  pqsignal(SIGTERM, cdp::pg::on_sigterm);
  cdp::pg::budget_timeout = RegisterTimeout(USER_TIMEOUT, cdp::pg::on_budget_expired);
  cdp::pg::worker::connect("cdp processor");
  cdp::pg::receive_wakeups(cdp::pg::Wakeup::Processor);
  cdp::pg::worker_loop();
  proc_exit(1);
}

Datum cdp_process_pending(PG_FUNCTION_ARGS) {
  return cdp::pg::entry([&] {
    PG_RETURN_INT64(cdp::pg::spi::connected([] { return cdp::pg::process_all(INT32_MAX); }));
  });
}

Datum cdp_normalise_identifier(PG_FUNCTION_ARGS) {
  return cdp::pg::entry([&]() -> Datum {
    char* type = nullptr;
    char* value = nullptr;
    cdp::pg::call([&] {
      type = text_to_cstring(PG_GETARG_TEXT_PP(0));
      value = text_to_cstring(PG_GETARG_TEXT_PP(1));
    });
    const cdp::IdentityRules& rules = *cdp::pg::spi::connected([] {
      cdp::pg::refresh_rules();
      return cdp::pg::rules_cache.identity.get();
    });
    int t = rules.find(type);
    if (t < 0) throw cdp::Error(cdp::ErrorKind::InvalidInput, "type", std::string("\"") + type + "\" is not an identifier type");
    auto v = rules.normalise(t, value);
    if (!v) PG_RETURN_NULL();
    text* result = nullptr;
    cdp::pg::call([&] { result = cstring_to_text_with_len(v->data(), v->size()); });
    PG_RETURN_TEXT_P(result);
  });
}

Datum cdp_unmerge(PG_FUNCTION_ARGS) {
  return cdp::pg::entry([&] {
    int64_t merge_id = PG_GETARG_INT64(0);
    PG_RETURN_INT64(cdp::pg::spi::connected([&] { return cdp::pg::unmerge(merge_id); }));
  });
}

Datum cdp_rebuild_identities(PG_FUNCTION_ARGS) {
  return cdp::pg::entry([&] { PG_RETURN_INT64(cdp::pg::spi::connected([] { return cdp::pg::rebuild(); })); });
}

// Statement trigger on cdp.identifier_types: the rules must compile (a bad
// regular expression would otherwise fail every batch of the processor).
Datum cdp_check_identifier_types(PG_FUNCTION_ARGS) {
  return cdp::pg::entry([&] {
    // Compiling throws cdp::Error naming the type and pattern.
    cdp::pg::spi::connected([] { return cdp::pg::load_identity_rules().types().size(); });
    cdp::pg::call([] { cdp::pg::note_rules_changed(); });
    return PointerGetDatum(nullptr);
  });
}

// Statement trigger on cdp.trait_rules: its commit makes processors reload.
Datum cdp_rules_changed(PG_FUNCTION_ARGS) {
  cdp::pg::note_rules_changed();
  return PointerGetDatum(nullptr);
}
