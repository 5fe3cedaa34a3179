// What browser SDKs fetch before they send anything, answered by the
// collector itself so that the SDKs work unchanged: analytics-next's settings
// (GET /v1/projects/{writeKey}/settings), RudderStack v3's source config
// (GET /sourceConfig), and a page showing each SDK's snippet pointed at this
// server. Pure functions; docs/http-api.md#sdk-settings describes the answers.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace cdp::sdk {

// Where SDKs reach this server: "http" or "https", and host[:port][/path]
// without a trailing slash ("cdp.example.com", "127.0.0.1:8765/collect").
struct PublicUrl {
  std::string scheme;
  std::string host_path;
  std::string text() const { return scheme + "://" + host_path; }
};

// cdp.public_url: "http(s)://host[:port][/path]" with only URL-safe
// characters, no query, no fragment, no user info; nullopt otherwise.
std::optional<PublicUrl> parse_public_url(std::string_view url);
// The request's Host header (a host name or IP literal, optional port),
// taken as http://Host; nullopt when it is not one.
std::optional<PublicUrl> from_host(std::string_view host);

// analytics-next's CDN settings: the Segment.io integration sends to this
// server; nothing else is loaded (no device-mode destinations, no remote
// plugins, no metrics sampling). Room for later features: consentSettings.
std::string segment_settings(std::string_view write_key, const PublicUrl& url);
// RudderStack v3's source config: an enabled source with no device-mode
// destinations and SDK stats collection off.
std::string rudderstack_source_config(std::string_view write_key, int source_id, const PublicUrl& url);
// An HTML page with the snippet of each SDK pointed at `url`.
std::string snippet_page(const PublicUrl& url);

// A strong ETag of a document ("\"<16 hex digits>\""), and whether an
// If-None-Match header names it (or is "*").
std::string etag(std::string_view body);
bool etag_matches(std::string_view if_none_match, std::string_view tag);

}  // namespace cdp::sdk
