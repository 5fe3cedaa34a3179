// libFuzzer target: any bytes as a destination's options (core/delivery.hpp,
// cdp.destinations.options). Options::parse must either throw cdp::Error
// (InvalidInput or MalformedJson, with a rule) or return options inside the
// documented ranges: header names that are tokens and values without line
// breaks, a secret of 16 characters or more, non-empty names and paths,
// batch.max_events 1..500, max_wait_ms 0..60000, timeout_ms 100..300000,
// max_age positive. The parsed options are then used as the delivery worker
// uses them: filters against an event, consent, the PII policy on a payload
// (hashed values are 64 hex digits, dropped paths are gone), the signature.
// Short inputs are also read as a Retry-After header: never negative, never
// more than kMaxRetryAfter. Anything else aborts.
// Build and run: docs/testing.md, "Fuzzing".
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

#include "core/delivery.hpp"
#include "core/error.hpp"
#include "core/segments.hpp"

namespace {

using cdp::Micros;
namespace delivery = cdp::delivery;

[[noreturn]] void fail(const char* what, std::string_view text) {
  std::fprintf(stderr, "invariant broken: %s: [%.*s]\n", what, static_cast<int>(text.size()), text.data());
  std::abort();
}

constexpr Micros kNow = 1'714'566'600'000'000;  // 2024-05-01T12:30:00Z

const char kPayload[] = R"({"type":"track","event":"Order Completed","userId":"u1",
  "properties":{"revenue":75,"email":" Ada@Example.COM ","items":[1,2],"nested":{"a":{"b":"c"}}},
  "traits":{"email":"ada@example.com","phone":null,"age":30},
  "context":{"ip":"192.0.2.1","consent":{"categoryPreferences":{"marketing":true,"ads":false}}}})";

bool hex64(const rapidjson::Value& v) {
  if (!v.IsString() || v.GetStringLength() != 64) return false;
  for (const char* p = v.GetString(); *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
  return true;
}

void check_options(const delivery::Options& o, std::string_view body) {
  for (auto& [name, value] : o.headers) {
    if (name.empty()) fail("empty header name", body);
    for (char c : name)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) fail("header name not a token", name);
    if (value.find_first_of("\r\n") != std::string::npos) fail("line break in a header value", value);
  }
  if (!o.secret.empty() && o.secret.size() < 16) fail("short secret", o.secret);
  for (auto* list : {&o.segments, &o.consent, &o.drop, &o.hash})
    for (auto& s : *list)
      if (s.empty()) fail("empty name or path", body);
  if (o.max_events < 1 || o.max_events > delivery::kMaxBatch) fail("batch.max_events out of range", body);
  if (o.max_wait_ms < 0 || o.max_wait_ms > 60000) fail("batch.max_wait_ms out of range", body);
  if (o.timeout_ms < 100 || o.timeout_ms > 300000) fail("timeout_ms out of range", body);
  if (o.max_age <= 0) fail("max_age not positive", body);
  if (o.all_events && !o.wants_events()) fail("all events but wants none", body);
}

void use_options(const delivery::Options& o, std::string_view body) {
  rapidjson::Document payload;
  payload.Parse(kPayload);
  if (payload.HasParseError()) std::abort();
  cdp::computed::EventInput e;
  e.id = 1;
  e.name = "Order Completed";
  e.time = kNow;
  e.properties = &payload["properties"];
  bool wanted = o.wants(e);
  if (o.all_events && !wanted) fail("all events but not this one", body);
  e.properties = nullptr;
  (void)o.wants(e);
  (void)delivery::consented(&payload["context"], o.consent);
  if (!delivery::granted(nullptr, o.consent) && o.consent.empty()) fail("no consent needed, none granted", body);

  delivery::apply_pii(payload, o);
  for (auto& path : o.hash) {
    const rapidjson::Value* v = cdp::segments::find_path(&payload, path);
    // A hashed path was a string, number or bool (now 64 hex digits); or
    // missing, null, an object, an array, or dropped: left as it is.
    if (v && !(v->IsNull() || v->IsObject() || v->IsArray() || hex64(*v))) {
      bool dropped = false;
      for (auto& d : o.drop) dropped |= d == path;
      if (!dropped) fail("hashed value is not 64 hex digits", path);
    }
  }
  (void)delivery::signature(o.secret, "1714566600", body);
}

void check_retry_after(std::string_view text) {
  auto r = delivery::parse_retry_after(text, kNow);
  if (r && (*r < 0 || *r > delivery::kMaxRetryAfter)) fail("Retry-After out of range", text);
  for (int attempts : {0, 1, 5, 40}) {
    Micros d = delivery::backoff(attempts, 0.999, r);
    if (d <= 0 || (r && d < *r)) fail("backoff shorter than Retry-After", text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  if (size <= 64) check_retry_after(body);
  delivery::Options o;
  try {
    o = delivery::Options::parse(body);
  } catch (const cdp::Error& e) {
    if (e.kind() != cdp::ErrorKind::InvalidInput && e.kind() != cdp::ErrorKind::MalformedJson)
      fail("unexpected error kind", e.what());
    if (e.rule().empty()) fail("error without a rule", body);
    return 0;
  }
  check_options(o, body);
  use_options(o, body);
  return 0;
}
