// The Tracking API's rules that do not need a socket: routes, who the client
// is, and what the answers look like. Pure functions, unit-tested.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/message.hpp"
#include "core/payload.hpp"

namespace cdp {

enum class Route {
  Ingest,        // /v1/track, /v1/t, ..., /v1/batch, /v1/b, /v1/import, /beacon/v1/batch
  SdkReport,     // /v1/m: analytics-next's reports about itself, counted and dropped
  Settings,      // /v1/projects/{writeKey}/settings: analytics-next's settings
  SourceConfig,  // /sourceConfig: RudderStack's source configuration
  Snippets,      // / and /sdk: how to point each SDK at this server
  Profile,       // /v1/profiles/{identifier}[/{part}]: the Profile API (reads)
  Health,
  Metrics,
  NotFound
};

struct RouteMatch {
  Route route = Route::NotFound;
  std::optional<MessageType> implied_type;  // /v1/track, /v1/t...; none for /v1/batch
  std::string write_key;                    // Settings: the key in the path
};

// The paths above, as they arrived (percent-encoded). A trailing slash or a
// query string is ignored; the key in a settings path is percent-decoded.
RouteMatch match_route(std::string_view path);

// "%41b+" -> "Ab " (query values); nullopt for a broken escape.
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space);

// CORS for one request: whether the Origin may read answers, whether it may
// send credentials (only origins listed exactly, never through "*"), and the
// headers a preflight allows: the ones asked for when every name is an HTTP
// token and there are at most 32 of them in at most 1,024 bytes, else the SDKs'
// known set.
struct CorsAnswer {
  bool allowed = false;
  bool credentials = false;
  std::string allow_headers;
};
CorsAnswer cors_policy(std::string_view origin, const std::vector<std::string>& allowed,
                       std::string_view requested_headers);
extern const char* const kCorsKnownHeaders;

// The client's address: the peer itself, unless the peer is a trusted proxy,
// in which case the right-most address of X-Forwarded-For that is not one.
std::string client_ip(std::string_view peer, std::string_view forwarded_for,
                      const std::vector<std::string>& trusted_proxies);

// Whether an Origin may call us: "*" in the list allows any.
bool origin_allowed(std::string_view origin, const std::vector<std::string>& allowed);

// {"success":true,"accepted":N,"duplicate":N,"rejected":N,"messages":[...]}, listing
// each message that was not accepted with its index, messageId and reason.
std::string ingest_response(const Payload& payload, const std::vector<MessageStatus>& statuses);

// {"success":false,"error":"...","field":"..."}
std::string error_response(std::string_view error, std::string_view field = {});

// /health's body: {"status":"ok"}, or {"status":"overloaded","reason":"..."}.
std::string status_response(std::string_view status, std::string_view reason = {});

// Splits "a, b,c" into {"a","b","c"}.
std::vector<std::string> split_list(std::string_view text);

}  // namespace cdp
