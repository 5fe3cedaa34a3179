// Destinations in the database: cdp.create_destination and the row trigger
// on cdp.destinations check a URL and options with the same parsers the
// delivery worker uses, so a stored destination always parses.
#include <curl/curl.h>

#include "core/delivery.hpp"
#include "pg/delivery/delivery.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/spi.hpp"

extern "C" {
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(cdp_create_destination);
PG_FUNCTION_INFO_V1(cdp_check_destination);
}

namespace cdp::pg::delivery {

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

void check_options(const std::string& options, const std::string& owner) {
  cdp::delivery::Options o;
  try {
    o = cdp::delivery::Options::parse(options);
  } catch (const cdp::Error& e) {
    throw e.under("options");
  }
  if (!o.transform.empty()) check_transform(o.transform, owner);
}

// The transformation must take one jsonb, return jsonb, and be executable by
// the role it will run as (the owner, or cdp_admin for a superuser owner).
void check_transform(const std::string& function, const std::string& owner) {
  auto bad = [&](const std::string& rule) { throw Error(ErrorKind::InvalidInput, "options.transform", rule); };
  sql::Rows r = spi::connected([&] {
    return sql::select(
        "select p.oid is not null, coalesce(p.prorettype = 'jsonb'::regtype, false), p.prokind = 'f',"
        "  coalesce(has_function_privilege(a.role, f.oid, 'execute'), false), a.role"
        " from (select to_regprocedure($1 || '(jsonb)') as oid) f left join pg_proc p on p.oid = f.oid,"
        "  (select case when coalesce((select not rolsuper from pg_roles where rolname = $2), false)"
        "   then $2 else 'cdp_admin' end as role) a",
        {sql::text(function), sql::text(owner.empty() ? std::string("cdp_admin") : owner)});
  });
  std::string signature = function + "(jsonb)";
  if (!r.boolean(0, 0)) bad("no function " + signature + " (a transformation takes one jsonb and returns jsonb)");
  if (!r.boolean(0, 1)) bad(signature + " must return jsonb");
  if (!r.boolean(0, 2)) bad(signature + " must be a plain function, not an aggregate or procedure");
  if (!r.boolean(0, 3)) bad("role " + r.str(0, 4) + " may not execute " + signature + " (it runs as that role)");
}

std::string default_url(const std::string& options) {
  cdp::delivery::Options o;
  try {
    o = cdp::delivery::Options::parse(options);
  } catch (const cdp::Error& e) {
    throw e.under("options");
  }
  if (!o.connector || o.connector->default_url().empty())
    throw Error(ErrorKind::InvalidInput, "url",
                o.connector ? "must not be null: " + std::string(o.connector->kind()) + " has no default URL"
                            : "must not be null (only a built-in kind has a default URL)");
  return std::string(o.connector->default_url());
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
    std::string options, url, owner;
    call([&] {
      bool isnull;
      TupleDesc desc = data->tg_relation->rd_att;
      Datum d = heap_getattr(row, SPI_fnumber(desc, "options"), desc, &isnull);
      if (!isnull) options = DatumGetCString(DirectFunctionCall1(jsonb_out, d));
      d = heap_getattr(row, SPI_fnumber(desc, "url"), desc, &isnull);
      if (!isnull) url = TextDatumGetCString(d);
      int owner_at = SPI_fnumber(desc, "owner");  // (no such column before 0.2.0)
      d = owner_at > 0 ? heap_getattr(row, owner_at, desc, &isnull) : 0;
      if (owner_at > 0 && !isnull) owner = NameStr(*DatumGetName(d));
    });
    delivery::check_url(url);
    if (!options.empty()) delivery::check_options(options, owner);
    return PointerGetDatum(row);
  });
}

// cdp.create_destination(name, url, options): checks the options with the
// same parser the worker uses, so a stored destination always parses.
Datum create_destination(FunctionCallInfo fcinfo) {
  return entry([&] {
    std::string name, url, options = "{}", owner;
    if (PG_ARGISNULL(0)) throw cdp::Error(cdp::ErrorKind::InvalidInput, "name", "must not be null");
    call([&] {
      name = text_to_cstring(PG_GETARG_TEXT_PP(0));
      if (!PG_ARGISNULL(1)) url = text_to_cstring(PG_GETARG_TEXT_PP(1));
      if (!PG_ARGISNULL(2)) options = DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(2)));
      owner = GetUserNameFromId(GetUserId(), false);
    });
    if (name.empty()) throw cdp::Error(cdp::ErrorKind::InvalidInput, "name", "must be a non-empty string");
    if (PG_ARGISNULL(1)) url = delivery::default_url(options);
    delivery::check_url(url);
    delivery::check_options(options, owner);
    int id = spi::connected([&] {
      if (!sql::select("select 1 from cdp.destinations where name = $1", {sql::text(name)}).empty())
        throw cdp::Error(cdp::ErrorKind::InvalidInput, "name", "a destination named \"" + name + "\" already exists");
      return sql::select("insert into cdp.destinations (name, url, options) values ($1, $2, $3::jsonb)"
                         " returning destination_id",
                         {sql::text(name), sql::text(url), sql::text(options)}, SPI_OK_INSERT_RETURNING)
          .int4(0, 0);
    });
    PG_RETURN_INT32(id);
  });
}

}  // namespace
