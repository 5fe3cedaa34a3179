// The processor: binds committed events to profiles through the identity
// graph and folds their traits, one batch per transaction.
//
// No committed event is skipped, whatever order transactions commit in: events
// are read in (txid, id) order and only from transactions older than the
// snapshot's xmin, which have all finished, so nothing can still appear below
// the cursor. The cursor moves in the same transaction as the results.
#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <unordered_map>

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

struct Batch {
  std::vector<EventFacts> events;
  std::vector<std::string> txids;
};

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

}  // namespace

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
  privacy::quarantine_suppressed(rules, b.events, b.txids, extracted);
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
  privacy::record_consent(b.events, b.txids, bound, merged_away, merged_into);
  // Events first, then the segment changes they cause: a destination sees them in that order.
  if (!rebuilding) delivery::queue_events(b.events, b.txids, bound);
  call([&] { clock.mark("queue deliveries"); });
  audience::after_batch(b.events, bound, merged_away, merged_into);
  call([&] { clock.mark("segments"); });
  return batch_events;
}

}  // namespace cdp::pg::processor
