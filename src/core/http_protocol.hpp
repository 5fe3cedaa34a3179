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

enum class Route { Ingest, Health, Metrics, NotFound };

struct RouteMatch {
  Route route = Route::NotFound;
  std::optional<MessageType> implied_type;  // /v1/track, /v1/t...; none for /v1/batch
};

// "/v1/track", "/v1/t", "/v1/batch", "/v1/import", "/health", "/metrics"...
// A trailing slash or a query string is ignored.
RouteMatch match_route(std::string_view path);

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
