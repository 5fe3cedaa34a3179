// Destinations in the database: creating them, and queueing events for them
// in the processor's batch transaction (segment changes are queued by the
// trigger on cdp.outbox). The delivery worker (worker.cpp) sends.
#include "pg/delivery/delivery.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <map>
#include <memory>

#include "core/delivery.hpp"
#include "core/json_util.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/shared.hpp"
#include "pg/runtime/spi.hpp"

extern "C" {
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "commands/trigger.h"
#include "executor/spi.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(cdp_create_destination);
PG_FUNCTION_INFO_V1(cdp_check_destination);
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
  std::vector<std::pair<int, std::string>> rows;
  call([&] {
    uint64 n = spi::exec("select destination_id, options::text from cdp.destinations order by destination_id", SPI_OK_SELECT);
    for (uint64 r = 0; r < n; r++) rows.emplace_back(spi::get_int4(r, 1), spi::get_text(r, 2));
  });
  cache.destinations.clear();
  cache.any = !rows.empty();
  for (auto& [id, options] : rows) {
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
    std::vector<std::pair<int64_t, std::string>> rows;
    call([&] {
      uint64 n = spi::exec("select profile_id, preferences::text from cdp.consent where profile_id = any($1)",
                           {spi::int8_array(bound)}, SPI_OK_SELECT);
      for (uint64 r = 0; r < n; r++) rows.emplace_back(spi::get_int8(r, 1), spi::get_text(r, 2));
    });
    for (auto& [p, text] : rows) parse_json(consent[p], text);
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
  call([&] {
    // The Segment-spec message, rebuilt from the stored columns.
    spi::exec("insert into cdp.deliveries (destination_id, profile_id, kind, payload)"
              " select x.d, x.p, 'event', jsonb_strip_nulls(jsonb_build_object("
              "   'type', e.type, 'event', e.event, 'name', e.name, 'category', e.category,"
              "   'userId', e.user_id, 'anonymousId', e.anonymous_id, 'groupId', e.group_id,"
              "   'previousId', e.previous_id, 'properties', e.properties, 'traits', e.traits,"
              "   'context', e.context, 'integrations', e.integrations, 'timestamp', e.\"timestamp\","
              "   'originalTimestamp', e.original_timestamp, 'sentAt', e.sent_at, 'receivedAt', e.received_at,"
              "   'messageId', e.message_id))"
              " from unnest($1::int4[], $2::int8[], $3::text[], $4::int8[]) with ordinality x(d, p, t, id, n)"
              " join cdp.events e on e.txid = x.t::xid8 and e.id = x.id order by x.n",
              {spi::int4_array(dest), spi::int8_array(profile), spi::text_array(txid), spi::int8_array(event_id)},
              SPI_OK_INSERT);
    spi::exec("update cdp.destinations d set consent_blocked = consent_blocked + x.n"
              " from unnest($1::int4[], $2::int8[]) x(id, n) where d.destination_id = x.id",
              {spi::int4_array(blocked_dest), spi::int8_array(blocked_n)}, SPI_OK_UPDATE);
  });
}

void check_url(const std::string& url) {
  auto bad = [](const std::string& rule) { throw Error(ErrorKind::InvalidInput, "url", rule); };
  for (unsigned char c : url)
    if (c <= 0x20 || c == 0x7f) bad("must not contain spaces or control characters (percent-encode them)");
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) bad("must start with http:// or https://");
  // libcurl's own parser: what it refuses here it would refuse at every attempt.
  CURLU* h = curl_url();
  if (!h) throw std::bad_alloc();
  CURLUcode rc = curl_url_set(h, CURLUPART_URL, url.c_str(), 0);
  char* host = nullptr;
  if (rc == CURLUE_OK) rc = curl_url_get(h, CURLUPART_HOST, &host, 0);
  bool has_host = rc == CURLUE_OK && host && *host;
  std::string why = rc == CURLUE_OK ? "" : curl_url_strerror(rc);
  curl_free(host);
  curl_url_cleanup(h);
  if (!has_host) bad("is not a URL with a host" + (why.empty() ? std::string() : " (" + why + ")"));
}

void check_options(const std::string& options) {
  try {
    cdp::delivery::Options::parse(options);
  } catch (const cdp::Error& e) {
    throw e.under("options");
  }
}

}  // namespace cdp::pg::delivery

using namespace cdp::pg;

namespace {

// Runs body; an error it raises leaves the statement and its context out of
// the server log. The statement that creates or changes a destination holds
// its secret and header values in its text (log_min_error_statement would
// write it under STATEMENT:); the error itself names the field and the rule
// only. No C++ object with a destructor lives in this frame.
Datum without_statement(FunctionCallInfo fcinfo, Datum (*body)(FunctionCallInfo)) {
  MemoryContext mcx = CurrentMemoryContext;
  Datum result = 0;
  PG_TRY();
  {
    result = body(fcinfo);
  }
  PG_CATCH();
  {
    MemoryContextSwitchTo(mcx);
    ErrorData* e = CopyErrorData();
    FlushErrorState();
    e->hide_stmt = true;
    e->hide_ctx = true;
    ReThrowError(e);
  }
  PG_END_TRY();
  return result;
}

Datum check_destination(FunctionCallInfo fcinfo);
Datum create_destination(FunctionCallInfo fcinfo);

}  // namespace

// Row trigger on cdp.destinations: the URL and options must be usable.
Datum cdp_check_destination(PG_FUNCTION_ARGS) { return without_statement(fcinfo, check_destination); }

// cdp.create_destination(name, url, options).
Datum cdp_create_destination(PG_FUNCTION_ARGS) { return without_statement(fcinfo, create_destination); }

namespace {

Datum check_destination(FunctionCallInfo fcinfo) {
  return entry([&] {
    auto* data = reinterpret_cast<TriggerData*>(fcinfo->context);
    HeapTuple row = TRIGGER_FIRED_BY_UPDATE(data->tg_event) ? data->tg_newtuple : data->tg_trigtuple;
    std::string options, url;
    call([&] {
      bool isnull;
      TupleDesc desc = data->tg_relation->rd_att;
      Datum d = heap_getattr(row, SPI_fnumber(desc, "options"), desc, &isnull);
      if (!isnull) options = DatumGetCString(DirectFunctionCall1(jsonb_out, d));
      d = heap_getattr(row, SPI_fnumber(desc, "url"), desc, &isnull);
      if (!isnull) url = TextDatumGetCString(d);
    });
    delivery::check_url(url);
    if (!options.empty()) delivery::check_options(options);
    return PointerGetDatum(row);
  });
}

// cdp.create_destination(name, url, options): checks the options with the
// same parser the worker uses, so a stored destination always parses.
Datum create_destination(FunctionCallInfo fcinfo) {
  return entry([&] {
    std::string name, url, options = "{}";
    for (int i = 0; i < 2; i++)
      if (PG_ARGISNULL(i)) throw cdp::Error(cdp::ErrorKind::InvalidInput, i ? "url" : "name", "must not be null");
    call([&] {
      name = text_to_cstring(PG_GETARG_TEXT_PP(0));
      url = text_to_cstring(PG_GETARG_TEXT_PP(1));
      if (!PG_ARGISNULL(2)) options = DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(2)));
    });
    if (name.empty()) throw cdp::Error(cdp::ErrorKind::InvalidInput, "name", "must be a non-empty string");
    delivery::check_url(url);
    delivery::check_options(options);
    int id = spi::connected([&] {
      int out = 0;
      call([&] {
        if (spi::exec("select 1 from cdp.destinations where name = $1", {spi::str(name)}, SPI_OK_SELECT) > 0)
          return;
        spi::exec("insert into cdp.destinations (name, url, options) values ($1, $2, $3::jsonb) returning destination_id",
                  {spi::str(name), spi::str(url), spi::str(options)}, SPI_OK_INSERT_RETURNING);
        out = spi::get_int4(0, 1);
      });
      if (out == 0) throw cdp::Error(cdp::ErrorKind::InvalidInput, "name", "a destination named \"" + name + "\" already exists");
      return out;
    });
    PG_RETURN_INT32(id);
  });
}

}  // namespace
