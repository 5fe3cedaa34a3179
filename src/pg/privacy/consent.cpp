// Consent in the processor's batch: what events say in
// context.consent.categoryPreferences goes into cdp.consent_history and
// cdp.consent, and merges carry a profile's consent to its survivor
// (docs/privacy.md).
#include "pg/privacy/privacy.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/spi.hpp"

namespace cdp::pg::privacy {

// Consent: a merged-away profile's consent goes to its survivor (the latest
// statement wins), then each event carrying context.consent.categoryPreferences
// is recorded in the history and, if it is the latest, as the profile's consent.
void record_consent(const std::vector<EventFacts>& events, const std::vector<std::string>& txids,
                    const std::vector<int64_t>& bound, const std::vector<int64_t>& merged_away,
                    const std::vector<int64_t>& merged_into) {
  std::vector<int64_t> profiles, ids;
  std::vector<std::string> consented_txids;
  for (size_t i = 0; i < events.size(); i++)
    if (bound[i] != 0 && events[i].context.find("categoryPreferences") != std::string::npos) {
      profiles.push_back(bound[i]);
      consented_txids.push_back(txids[i]);
      ids.push_back(events[i].id);
    }
  if (profiles.empty() && merged_away.empty()) return;
  sql::run("with gone as (delete from cdp.consent c using unnest($1::int8[], $2::int8[]) x(away, into_)"
           "   where c.profile_id = x.away returning x.into_, c.*)"
           " insert into cdp.consent as c (profile_id, preferences, updated_at, source)"
           " select distinct on (into_) into_, preferences, updated_at, source from gone order by into_, updated_at desc"
           " on conflict (profile_id) do update set preferences = excluded.preferences,"
           "   updated_at = excluded.updated_at, source = excluded.source where excluded.updated_at >= c.updated_at",
           {sql::int8s(merged_away), sql::int8s(merged_into)}, SPI_OK_INSERT);
  sql::run("with ev as (select x.p, e.id, e.\"timestamp\" as at, e.context->'consent'->'categoryPreferences' as prefs"
           "   from unnest($1::int8[], $2::text[], $3::int8[]) x(p, t, id)"
           "   join cdp.events e on e.txid = x.t::xid8 and e.id = x.id"
           "  where jsonb_typeof(e.context->'consent'->'categoryPreferences') = 'object'),"
           " h as (insert into cdp.consent_history (profile_id, preferences, source, event_id, expressed_at)"
           "   select p, prefs, 'event', id, at from ev)"
           " insert into cdp.consent as c (profile_id, preferences, updated_at, source)"
           " select distinct on (p) p, prefs, at, 'event' from ev order by p, at desc, id desc"
           " on conflict (profile_id) do update set preferences = excluded.preferences,"
           "   updated_at = excluded.updated_at, source = excluded.source where excluded.updated_at >= c.updated_at",
           {sql::int8s(profiles), sql::texts(consented_txids), sql::int8s(ids)}, SPI_OK_INSERT);
}

}  // namespace cdp::pg::privacy
