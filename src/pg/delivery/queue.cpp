// Queueing events for destinations, in the processor's batch transaction:
// each event bound to a profile goes into cdp.deliveries for every destination
// whose filters and consent categories it passes. Segment changes are queued
// by the trigger on cdp.outbox; the delivery worker (worker.cpp) sends.
#include "pg/delivery/delivery.hpp"

#include <algorithm>
#include <map>
#include <memory>

#include "core/delivery.hpp"
#include "core/json_util.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/shared.hpp"
#include "pg/runtime/spi.hpp"

extern "C" {
#include "executor/spi.h"
#include "utils/builtins.h"
}

namespace cdp::pg::delivery {
namespace {

struct Destination {
  int id;
  cdp::delivery::Options options;
};

// Destinations that take events, cached until a change to them commits.
struct Cache {
  RulesStamp stamp;
  std::vector<Destination> destinations;
  bool any = false;  // any destination at all (segment subscriptions too)
};
Cache cache;

const Cache& destinations() {
  RulesStamp stamp = RulesStamp::of("destinations");
  if (cache.stamp == stamp) return cache;
  sql::Rows rows = sql::select("select destination_id, options::text from cdp.destinations order by destination_id");
  cache.destinations.clear();
  cache.any = !rows.empty();
  for (size_t r = 0; r < rows.size(); r++) {
    int id = rows.int4(r, 0);
    std::string_view options = rows.text(r, 1);
    cdp::delivery::Options o;
    try {
      o = cdp::delivery::Options::parse(options);
    } catch (const Error& e) {  // written by hand and broken: it gets nothing rather than stopping the processor
      call([&] { elog(WARNING, "cdp: destination %d has bad options (%s): it is skipped", id, e.what()); });
      continue;
    }
    if (o.wants_events()) cache.destinations.push_back({id, std::move(o)});
  }
  cache.stamp = stamp;
  return cache;
}

}  // namespace

void queue_events(const std::vector<EventFacts>& events, const std::vector<std::string>& txids,
                  const std::vector<int64_t>& bound) {
  const Cache& c = destinations();
  if (c.any) call([] { note_deliveries_queued(); });
  if (c.destinations.empty()) return;
  std::vector<int> dest;
  std::vector<int64_t> profile, event_id;
  std::vector<std::string> txid;
  std::map<int, int64_t> blocked;
  // An event without consent preferences of its own is judged by its
  // profile's latest known consent (cdp.consent).
  std::map<int64_t, rapidjson::Document> consent;
  if (std::any_of(c.destinations.begin(), c.destinations.end(), [](auto& d) { return !d.options.consent.empty(); })) {
    sql::Rows rows = sql::select("select profile_id, preferences::text from cdp.consent where profile_id = any($1)",
                                 {sql::int8s(bound)});
    for (size_t r = 0; r < rows.size(); r++) parse_json(consent[rows.int8(r, 0)], rows.text(r, 1));
  }
  for (size_t i = 0; i < events.size(); i++) {
    if (bound[i] == 0) continue;
    const EventFacts& e = events[i];
    rapidjson::Document props, context;
    bool has_props = !e.properties.empty() && !parse_json(props, e.properties).IsError();
    bool has_context = !e.context.empty() && !parse_json(context, e.context).IsError();
    computed::EventInput in{e.id, e.type, e.name, e.timestamp, has_props ? &props : nullptr};
    const rapidjson::Value* prefs = has_context ? segments::find_path(&context, "consent.categoryPreferences") : nullptr;
    if (!prefs) {
      auto it = consent.find(bound[i]);
      if (it != consent.end()) prefs = &it->second;
    }
    for (const Destination& d : c.destinations) {
      if (!d.options.wants(in)) continue;
      if (!cdp::delivery::granted(prefs, d.options.consent)) {
        blocked[d.id]++;
        continue;
      }
      dest.push_back(d.id);
      profile.push_back(bound[i]);
      event_id.push_back(e.id);
      txid.push_back(txids[i]);
    }
  }
  std::vector<int> blocked_dest;
  std::vector<int64_t> blocked_n;
  for (auto& [d, n] : blocked) {
    blocked_dest.push_back(d);
    blocked_n.push_back(n);
  }
  // The Segment-spec message, rebuilt from the stored columns.
  sql::run("insert into cdp.deliveries (destination_id, profile_id, kind, payload)"
           " select x.d, x.p, 'event', jsonb_strip_nulls(jsonb_build_object("
           "   'type', e.type, 'event', e.event, 'name', e.name, 'category', e.category,"
           "   'userId', e.user_id, 'anonymousId', e.anonymous_id, 'groupId', e.group_id,"
           "   'previousId', e.previous_id, 'properties', e.properties, 'traits', e.traits,"
           "   'context', e.context, 'integrations', e.integrations, 'timestamp', e.\"timestamp\","
           "   'originalTimestamp', e.original_timestamp, 'sentAt', e.sent_at, 'receivedAt', e.received_at,"
           "   'messageId', e.message_id))"
           " from unnest($1::int4[], $2::int8[], $3::text[], $4::int8[]) with ordinality x(d, p, t, id, n)"
           " join cdp.events e on e.txid = x.t::xid8 and e.id = x.id order by x.n",
           {sql::int4s(dest), sql::int8s(profile), sql::texts(txid), sql::int8s(event_id)},
           SPI_OK_INSERT);
  sql::run("update cdp.destinations d set consent_blocked = consent_blocked + x.n"
           " from unnest($1::int4[], $2::int8[]) x(id, n) where d.destination_id = x.id",
           {sql::int4s(blocked_dest), sql::int8s(blocked_n)}, SPI_OK_UPDATE);
}

}  // namespace cdp::pg::delivery
