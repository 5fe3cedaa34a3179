// The processor's SQL functions: cdp.process_pending, cdp.unmerge,
// cdp.rebuild_identities, cdp.normalise_identifier, and the triggers that
// check identifier types and announce rule changes. They run the worker's
// batches and rules (batch.cpp, rules.cpp) in the caller's transaction.
#include <map>

#include "pg/audience/audience.hpp"
#include "pg/processor/internal.hpp"
#include "pg/runtime/guard.hpp"

extern "C" {
#include "utils/builtins.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(cdp_process_pending);
PG_FUNCTION_INFO_V1(cdp_normalise_identifier);
PG_FUNCTION_INFO_V1(cdp_unmerge);
PG_FUNCTION_INFO_V1(cdp_check_identifier_types);
PG_FUNCTION_INFO_V1(cdp_rules_changed);
PG_FUNCTION_INFO_V1(cdp_rebuild_identities);
}

namespace cdp::pg::processor {
namespace {

// Recomputes traits and counters of the given surviving profiles from every
// event bound to them (through cdp.profile_map), as if processed afresh.
void refold(const std::vector<int64_t>& profiles) {
  TraitRules trait_rules = load_trait_rules();
  std::map<int64_t, ProfileAgg> agg;
  for (int64_t p : profiles) agg[p];
  sql::Rows rows = sql::select(
      "select m.canonical_id," EVENT_FACTS_COLUMNS
      " from cdp.event_profiles ep join cdp.profile_map m on m.profile_id = ep.profile_id"
      " join cdp.events e on e.id = ep.event_id where m.canonical_id = any($1)",
      {sql::int8s(profiles)});
  for (size_t r = 0; r < rows.size(); r++) {
    EventFacts e = event_facts(rows, r, 1);
    ProfileAgg& a = agg[rows.int8(r, 0)];
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
  sql::run("insert into cdp.profiles as p (profile_id, traits, trait_sources, first_seen, last_seen, event_count)"
           " select id, t::jsonb, s::jsonb, nullif(f, 'epoch'), nullif(l, 'epoch'), c"
           " from unnest($1::int8[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int8[])"
           "   x(id, t, s, f, l, c)"
           " on conflict (profile_id) do update set traits = excluded.traits,"
           "   trait_sources = excluded.trait_sources, first_seen = excluded.first_seen,"
           "   last_seen = excluded.last_seen, event_count = excluded.event_count, updated_at = now()",
           {sql::int8s(ids), sql::texts(traits), sql::texts(sources), sql::timestamptzs(first),
            sql::timestamptzs(last), sql::int8s(counts)},
           SPI_OK_INSERT);
  sql::run("update cdp.profiles p set"
           " identifier_count = (select count(*) from cdp.identities i where i.profile_id = p.profile_id),"
           " merge_count = (select count(*) from cdp.profile_merges pm join cdp.profile_map m"
           "   on m.profile_id = pm.into_profile where m.canonical_id = p.profile_id and pm.unmerged_at is null)"
           " where profile_id = any($1)",
           {sql::int8s(ids)}, SPI_OK_UPDATE);
}

// Splits merge `merge_id` apart: the merged-away profile (with every profile
// that had merged into it before) gets back its identifiers, its events
// (through the map: early binding was never rewritten) and traits from them.
int64_t unmerge(int64_t merge_id) {
  sql::run("select pg_advisory_xact_lock(hashtext('cdp.processor'))", SPI_OK_SELECT);
  sql::Rows m = sql::select("select m.from_profile, cdp.canonical_profile(m.into_profile), m.unmerged_at is not null"
                            " from cdp.profile_merges m where m.merge_id = $1 for update",
                            {sql::int8(merge_id)});
  if (m.empty()) throw Error(ErrorKind::InvalidInput, "merge_id", "no merge " + std::to_string(merge_id));
  if (m.boolean(0, 2))
    throw Error(ErrorKind::InvalidInput, "merge_id", "merge " + std::to_string(merge_id) + " was already undone");
  int64_t from = m.int8(0, 0), survivor = m.int8(0, 1);
  sql::run(
      "with recursive under(p) as ("
      "  select $1::int8"
      "  union select pm.from_profile from cdp.profile_merges pm join under u on pm.into_profile = u.p"
      "   where pm.merge_id < $2 and pm.unmerged_at is null)"
      ", remap as (update cdp.profile_map set canonical_id = $1 where profile_id in (select p from under) returning 1)"
      " update cdp.identities set profile_id = $1"
      "  where profile_id = $3 and origin_profile in (select p from under)",
      {sql::int8(from), sql::int8(merge_id), sql::int8(survivor)}, SPI_OK_UPDATE);
  sql::run("update cdp.profile_merges set unmerged_at = now() where merge_id = $1", {sql::int8(merge_id)},
           SPI_OK_UPDATE);
  refold({from, survivor});
  audience::refresh_profiles({from, survivor});
  return from;
}

// Rebuilds the whole graph, profiles and traits from the events table in one
// pass through the same resolver as incremental processing.
int64_t rebuild() {
  sql::run("select pg_advisory_xact_lock(hashtext('cdp.processor'))", SPI_OK_SELECT);
  // Consent is kept by profile number, and the numbers change: statements
  // made through cdp.set_consent are carried over by identifier; those from
  // events are recorded again as the events are processed.
  sql::run("create temp table cdp_rebuild_consent on commit drop as"
           " select distinct on (h.id) i.type, i.value, h.preferences, h.event_id, h.expressed_at, h.recorded_at"
           "   from cdp.consent_history h join cdp.profile_map m on m.profile_id = h.profile_id"
           "   join cdp.identities i on i.profile_id = m.canonical_id where h.source = 'api'"
           "  order by h.id, i.first_seen",
           SPI_OK_UTILITY);
  sql::run("truncate cdp.consent, cdp.consent_history", SPI_OK_UTILITY);
  sql::run("truncate cdp.identities, cdp.profiles, cdp.profile_map, cdp.profile_merges,"
           " cdp.identity_refusals, cdp.event_profiles, cdp.accounts, cdp.profile_accounts,"
           " cdp.profile_computed, cdp.aggregates_built", SPI_OK_UTILITY);
  ensure_processor_state();
  sql::run("update cdp.processor_state set cursor_txid = '0', cursor_event = 0", SPI_OK_UPDATE);
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
  sql::run("insert into cdp.consent_history (profile_id, preferences, source, event_id, expressed_at, recorded_at)"
           " select i.profile_id, r.preferences, 'api', r.event_id, r.expressed_at, r.recorded_at"
           "   from cdp_rebuild_consent r join cdp.identities i using (type, value)",
           SPI_OK_INSERT);
  sql::run("insert into cdp.consent as c (profile_id, preferences, updated_at, source)"
           " select distinct on (i.profile_id) i.profile_id, r.preferences, r.expressed_at, 'api'"
           "   from cdp_rebuild_consent r join cdp.identities i using (type, value)"
           "  order by i.profile_id, r.expressed_at desc"
           " on conflict (profile_id) do update set preferences = excluded.preferences,"
           "   updated_at = excluded.updated_at, source = excluded.source where excluded.updated_at >= c.updated_at",
           SPI_OK_INSERT);
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
}  // namespace
}  // namespace cdp::pg::processor

Datum cdp_process_pending(PG_FUNCTION_ARGS) {
  return cdp::pg::entry([&] {
    PG_RETURN_INT64(cdp::pg::spi::connected([] { return cdp::pg::processor::process_all(INT32_MAX); }));
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
      cdp::pg::processor::refresh_rules();
      return cdp::pg::processor::rules_cache.identity.get();
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
    PG_RETURN_INT64(cdp::pg::spi::connected([&] { return cdp::pg::processor::unmerge(merge_id); }));
  });
}

Datum cdp_rebuild_identities(PG_FUNCTION_ARGS) {
  return cdp::pg::entry([&] { PG_RETURN_INT64(cdp::pg::spi::connected([] { return cdp::pg::processor::rebuild(); })); });
}

// Statement trigger on cdp.identifier_types: the rules must compile (a bad
// regular expression would otherwise fail every batch of the processor).
Datum cdp_check_identifier_types(PG_FUNCTION_ARGS) {
  return cdp::pg::entry([&] {
    // Compiling throws cdp::Error naming the type and pattern.
    cdp::pg::spi::connected([] { return cdp::pg::processor::load_identity_rules().types().size(); });
    cdp::pg::call([] { cdp::pg::note_rules_changed(); });
    return PointerGetDatum(nullptr);
  });
}

// Statement trigger on cdp.trait_rules: its commit makes processors reload.
Datum cdp_rules_changed(PG_FUNCTION_ARGS) {
  cdp::pg::note_rules_changed();
  return PointerGetDatum(nullptr);
}
