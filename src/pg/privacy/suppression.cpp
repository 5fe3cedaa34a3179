// Suppression in the processor's batch: the events of an erased person, found
// by the hashes of their identifiers in cdp.suppressions, are set aside in
// cdp.quarantine before they can make a profile again (docs/privacy.md).
#include <set>

#include "core/delivery.hpp"
#include "pg/privacy/privacy.hpp"
#include "pg/runtime/spi.hpp"

namespace cdp::pg::privacy {

// Events carrying an identifier of an erased person (cdp.suppressions) go to
// cdp.quarantine with reason "suppressed" and leave the batch, so that they
// re-create nothing.
void quarantine_suppressed(const IdentityRules& rules, std::vector<EventFacts>& events, std::vector<std::string>& txids,
                           std::vector<std::vector<Identifier>>& extracted) {
  if (!sql::select("select exists (select from cdp.suppressions)").boolean(0, 0)) return;
  std::vector<std::string> hashes;
  for (auto& ids : extracted)
    for (auto& id : ids) hashes.push_back(cdp::delivery::sha256_hex(rules.types()[id.type].name + ":" + id.value));
  sql::Rows found =
      sql::select("select identifier_hash from cdp.suppressions where identifier_hash = any($1)", {sql::texts(hashes)});
  std::set<std::string> hit;
  for (size_t r = 0; r < found.size(); r++) hit.insert(found.str(r, 0));
  if (hit.empty()) return;
  std::vector<EventFacts> kept_events;
  std::vector<std::string> kept_txids;
  std::vector<std::vector<Identifier>> kept_ids;
  std::vector<std::string> q_txid;
  std::vector<int64_t> q_id;
  size_t h = 0;
  for (size_t i = 0; i < events.size(); i++) {
    bool suppressed = false;
    for (size_t k = 0; k < extracted[i].size(); k++) suppressed |= hit.count(hashes[h++]) > 0;
    if (suppressed) {
      q_txid.push_back(txids[i]);
      q_id.push_back(events[i].id);
    } else {
      kept_events.push_back(std::move(events[i]));
      kept_txids.push_back(std::move(txids[i]));
      kept_ids.push_back(std::move(extracted[i]));
    }
  }
  sql::run("with moved as (delete from cdp.events e using unnest($1::text[], $2::int8[]) x(t, id)"
           "   where e.txid = x.t::xid8 and e.id = x.id returning e.*)"
           " insert into cdp.quarantine (received_at, source_id, message_id, field, reason, raw)"
           " select received_at, source_id, message_id, 'identifiers', 'suppressed',"
           "   (to_jsonb(moved) - 'txid' - 'id')::text from moved",
           {sql::texts(q_txid), sql::int8s(q_id)}, SPI_OK_INSERT);
  events = std::move(kept_events);
  txids = std::move(kept_txids);
  extracted = std::move(kept_ids);
}

}  // namespace cdp::pg::privacy
