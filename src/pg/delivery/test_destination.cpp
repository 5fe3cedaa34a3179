// cdp.test_destination(destination, message, debug): what a destination
// would send for one message, read off the same code the worker uses
// (options, PII policy, the kind's mapping and request), without sending it.
// Secrets are shown as <secret>. For ga4, debug => true asks GA4's
// validation server, since /mp/collect answers 2xx even to events it drops.
#include <curl/curl.h>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/connectors/connector.hpp"
#include "core/connectors/ga4.hpp"
#include "core/delivery.hpp"
#include "core/json_util.hpp"
#include "pg/delivery/delivery.hpp"
#include "pg/runtime/clock.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/spi.hpp"

extern "C" {
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(cdp_test_destination);
}

namespace cdp::pg::delivery {
namespace {

using rapidjson::Value;

std::string redacted(std::string s, const std::vector<std::string>& secrets) {
  for (const std::string& secret : secrets)
    for (const std::string& form : {secret, cdp::connectors::url_encode(secret)}) {
      if (form.empty()) continue;
      for (size_t at = s.find(form); at != std::string::npos; at = s.find(form, at + 8)) s.replace(at, form.size(), "<secret>");
    }
  return s;
}

size_t collect(char* data, size_t size, size_t n, void* out) {
  auto* body = static_cast<std::string*>(out);
  if (body->size() < (1 << 20)) body->append(data, size * n);
  return size * n;
}

// POSTs body to url, synchronously (a DBA's one-off check, not the worker).
long post(const std::string& url, const std::string& body, std::string* answer, std::string* error) {
  CURL* h = curl_easy_init();
  if (!h) throw std::bad_alloc();
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, answer);
  CURLcode rc = curl_easy_perform(h);
  long status = 0;
  if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  else *error = curl_easy_strerror(rc);
  curl_slist_free_all(headers);
  curl_easy_cleanup(h);
  return status;
}

struct Result {
  rapidjson::Document doc{rapidjson::kObjectType};
  void set(const char* key, const std::string& value) {
    doc.AddMember(rapidjson::StringRef(key), Value(value.c_str(), static_cast<rapidjson::SizeType>(value.size()), doc.GetAllocator()),
                  doc.GetAllocator());
  }
};

std::string test(const std::string& url_base, const std::string& options_text, const std::string& message, bool debug,
                 Micros now) {
  cdp::delivery::Options o = cdp::delivery::Options::parse(options_text);
  // Refused before anything else: a message the kind skips or refuses would return early.
  if (debug && (!o.connector || o.connector->kind() != "ga4"))
    throw Error(ErrorKind::InvalidInput, "debug", "only a ga4 destination has a validation server");
  rapidjson::Document msg;
  if (parse_json(msg, message, Numbers::Exact).IsError() || !msg.IsObject())
    throw Error(ErrorKind::InvalidInput, "message", "must be a JSON object (a message as cdp queues it)");
  cdp::delivery::apply_pii(msg, o);
  Result out;
  auto& al = out.doc.GetAllocator();
  out.set("kind", o.connector ? std::string(o.connector->kind()) : "webhook");
  std::string url = url_base, body;
  std::vector<std::string> headers, secrets;
  if (o.secret.size()) secrets.push_back(o.secret);
  for (auto& [name, value] : o.headers) secrets.push_back(value);
  if (!o.connector) {
    out.set("outcome", "send");
    headers.push_back("Content-Type: application/json");
    body = cdp::delivery::request_body({to_json(msg)}, o.max_events > 1, now);
  } else {
    for (auto& s : o.connector->secrets(o.config)) secrets.push_back(s);
    cdp::connectors::Mapping m = o.connector->map(msg, o.config, now);
    using K = cdp::connectors::Mapping::Kind;
    out.set("outcome", m.kind == K::Items ? "send" : m.kind == K::Skip ? "skip" : "reject");
    if (m.kind != K::Items) {
      out.set("reason", m.reason);
      return to_json(out.doc);
    }
    std::vector<const cdp::connectors::Item*> items;
    for (auto& item : m.items) items.push_back(&item);
    cdp::connectors::Request r = o.connector->build(items, o.config, now);
    while (!url.empty() && url.back() == '/') url.pop_back();
    url += r.path;
    headers = r.headers;
    body = r.body;
  }
  for (auto& [name, value] : o.headers) headers.push_back(name + ": <secret>");
  Value request(rapidjson::kObjectType), hv(rapidjson::kArrayType);
  std::string shown_url = redacted(url, secrets);
  request.AddMember("url", Value(shown_url.c_str(), al), al);
  for (auto& h : headers) {
    std::string name = h.substr(0, h.find(':'));
    std::string line = name == "Authorization" ? name + ": <secret>" : redacted(h, secrets);
    hv.PushBack(Value(line.c_str(), al), al);
  }
  request.AddMember("headers", hv, al);
  rapidjson::Document parsed;
  std::string shown_body = redacted(body, secrets);
  if (parse_json(parsed, shown_body, Numbers::Exact).IsError())
    request.AddMember("body", Value(shown_body.c_str(), al), al);
  else
    request.AddMember("body", Value(parsed, al), al);
  out.doc.AddMember("request", request, al);
  if (debug) {
    std::string base = url_base, answer, error;
    while (!base.empty() && base.back() == '/') base.pop_back();
    long status = post(base + cdp::connectors::ga4_debug_path(o.config), body, &answer, &error);
    Value v(rapidjson::kObjectType);
    v.AddMember("status", static_cast<int64_t>(status), al);
    if (status == 0) v.AddMember("error", Value(error.c_str(), al), al);
    std::string summary = status ? cdp::connectors::ga4_validation(answer) : error;
    v.AddMember("valid", status >= 200 && status < 300 && summary.empty(), al);
    v.AddMember("summary", Value(summary.c_str(), al), al);
    if (!parse_json(parsed, answer, Numbers::Exact).IsError()) v.AddMember("answer", Value(parsed, al), al);
    out.doc.AddMember("validation", v, al);
  }
  return to_json(out.doc);
}

}  // namespace
}  // namespace cdp::pg::delivery

using namespace cdp::pg;

Datum cdp_test_destination(PG_FUNCTION_ARGS) {
  return entry([&] {
    if (PG_ARGISNULL(0)) throw cdp::Error(cdp::ErrorKind::InvalidInput, "destination", "must not be null");
    if (PG_ARGISNULL(1)) throw cdp::Error(cdp::ErrorKind::InvalidInput, "message", "must not be null");
    std::string name, message;
    bool debug = !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);
    cdp::Micros now = 0;
    call([&] {
      name = text_to_cstring(PG_GETARG_TEXT_PP(0));
      message = DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(1)));
      now = from_pg(GetCurrentTimestamp());
    });
    sql::Rows d = spi::connected([&] {
      return sql::select("select url, options::text from cdp.destinations where name = $1", {sql::text(name)});
    });
    if (d.empty())
      throw cdp::Error(cdp::ErrorKind::InvalidInput, "destination", "no destination named \"" + name + "\"");
    std::string json = delivery::test(d.str(0, 0), d.str(0, 1), message, debug, now);
    Datum result = 0;
    call([&] { result = DirectFunctionCall1(jsonb_in, CStringGetDatum(json.c_str())); });
    PG_RETURN_DATUM(result);
  });
}
