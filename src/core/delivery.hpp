// Destinations: what a destination subscribes to and how requests to it are
// made (options, PII policy, signatures, retry decisions). No I/O here: the
// delivery worker (src/pg/delivery/worker.cpp) sends with libcurl.
//
// Options (cdp.destinations.options), every key optional:
//   {"headers": {"Authorization": "Bearer abc"},        sent with every request
//    "secret": "whsec_...",                              HMAC-SHA256 signing key
//    "subscribe": {"events": true | [filter, ...],       filter: {"type", "event", "where"}
//                  "segments": ["vip", ...],             enter and exit of these segments
//                  "deletions": true},                   a notice when cdp.erase forgets someone
//    "batch": {"max_events": 1..500, "max_wait_ms": 0..60000},
//    "consent": ["marketing", ...],                      categories an event must grant
//    "pii": {"drop": [path, ...], "hash": [path, ...]},  dotted paths into the payload
//    "max_age": {"hours": 24},                           give up after (days|hours|minutes)
//    "timeout_ms": 10000,
//    "kind": "webhook" | "segment" | "ga4" | ...,         a built-in API (core/connectors/)
//    "config": {"write_key": "..."},                     that kind's settings and secrets
//    "transform": "schema.function",                     (event jsonb) returns jsonb, before mapping
//    "transform_timeout_ms": 1000,
//    "rate_limit": {"requests_per_second": 100}}
// Errors name the JSON path of the bad member ("subscribe.events[0].where[0].op").
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <rapidjson/document.h>

#include "core/computed.hpp"
#include "core/connectors/connector.hpp"
#include "core/timestamp.hpp"

namespace cdp::delivery {

constexpr int kMaxBatch = 500;

struct Options {
  std::vector<std::pair<std::string, std::string>> headers;
  std::string secret;
  bool all_events = false;
  std::vector<computed::Definition> event_filters;  // count definitions: type, event, where
  std::vector<std::string> segments;
  bool deletions = false;
  int max_events = 1;
  int max_wait_ms = 0;
  std::vector<std::string> consent;
  std::vector<std::string> drop, hash;
  Micros max_age = 24LL * 3600 * 1000000;
  int timeout_ms = 10000;
  // A built-in kind (nullptr: the generic webhook) and its checked config.
  const connectors::Connector* connector = nullptr;
  connectors::Config config;
  std::string transform;  // "schema.function", checked against the catalog by the glue
  int transform_timeout_ms = 1000;
  int requests_per_second = 0;  // 0: no limit

  static Options parse(const rapidjson::Value& options);
  static Options parse(std::string_view json_text);
  bool wants_events() const { return all_events || !event_filters.empty(); }
  bool wants(const computed::EventInput& e) const;
};

// Whether an event's context.consent.categoryPreferences grants every
// category in `required` (true for each). Absent preferences grant nothing.
bool consented(const rapidjson::Value* context, const std::vector<std::string>& required);
// The same for a preferences object ({"marketing": true, ...}); nullptr grants nothing.
bool granted(const rapidjson::Value* preferences, const std::vector<std::string>& required);

// Drops and hashes the policy's paths in place. A hashed value is the hex
// SHA-256 of its text trimmed and lower-cased (numbers as written), as ad
// platforms expect; null and missing values stay as they are.
void apply_pii(rapidjson::Document& payload, const Options& o);

std::string sha256_hex(std::string_view data);
// "v1=" + hex HMAC-SHA256(secret, timestamp + "." + body).
std::string signature(std::string_view secret, std::string_view timestamp, std::string_view body);

// The request body: for a batching destination (batch.max_events > 1) always
// {"batch": [...], "sentAt": ...}, even with one payload, so that its
// receiver sees one shape; otherwise the one payload as it is.
std::string request_body(const std::vector<std::string>& payloads, bool batching, Micros now);

enum class Outcome { Delivered, Retry, Dead };
// 2xx delivered; 408, 429, 5xx and transport errors (status 0) retried; other
// statuses dead at once.
Outcome classify(long status);

// Seconds or an HTTP-date, at most kMaxRetryAfter (a destination asking for
// more is retried after an hour); nullopt if neither.
constexpr Micros kMaxRetryAfter = 3600LL * 1000000;
std::optional<Micros> parse_retry_after(std::string_view value, Micros now);

// Delay before attempt `attempts + 1` after `attempts` failures: 1 s doubling
// to at most 1 h, times a jitter factor in [0.5, 1.5) given as `jitter01` in
// [0, 1); never less than a Retry-After the destination asked for.
Micros backoff(int attempts, double jitter01, std::optional<Micros> retry_after);

// How long a destination whose requests keep failing is left alone before one
// probe: 30 s doubling per further failure, at most 10 min. Circuit opens after
// kCircuitFailures consecutive failed requests.
constexpr int kCircuitFailures = 5;
Micros circuit_pause(int consecutive_failures);

}  // namespace cdp::delivery
