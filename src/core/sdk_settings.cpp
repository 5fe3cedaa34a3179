#include "core/sdk_settings.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/audience.hpp"  // short_key

namespace cdp::sdk {

namespace {
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void str(Writer& w, std::string_view s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); }
void key_str(Writer& w, const char* k, std::string_view v) {
  w.Key(k);
  str(w, v);
}
void empty_object(Writer& w, const char* k) {
  w.Key(k);
  w.StartObject();
  w.EndObject();
}
void empty_array(Writer& w, const char* k) {
  w.Key(k);
  w.StartArray();
  w.EndArray();
}

// Letters, digits and the characters a host, port and path may use; nothing
// that could end a JSON string, an HTML attribute or a URL's path.
bool url_safe(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("-._~/:[]%").find(c) != std::string_view::npos;
}

bool host_port(std::string_view s) {
  if (s.empty() || s.size() > 255 || s.front() == ':') return false;
  for (char c : s)
    if (!url_safe(c) || c == '/' || c == '%') return false;
  return true;
}
}  // namespace

std::optional<PublicUrl> parse_public_url(std::string_view url) {
  PublicUrl u;
  for (const char* scheme : {"https", "http"}) {
    std::string prefix = std::string(scheme) + "://";
    if (url.substr(0, prefix.size()) == prefix) {
      u.scheme = scheme;
      url.remove_prefix(prefix.size());
      break;
    }
  }
  if (u.scheme.empty() || url.size() > 1024) return std::nullopt;
  while (!url.empty() && url.back() == '/') url.remove_suffix(1);
  for (char c : url)
    if (!url_safe(c)) return std::nullopt;
  if (!host_port(url.substr(0, url.find('/')))) return std::nullopt;
  u.host_path = std::string(url);
  return u;
}

std::optional<PublicUrl> from_host(std::string_view host) {
  if (!host_port(host)) return std::nullopt;
  return PublicUrl{"http", std::string(host)};
}

std::string segment_settings(std::string_view write_key, const PublicUrl& url) {
  const std::string api_host = url.host_path + "/v1";
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("integrations");
  w.StartObject();
  w.Key("Segment.io");
  w.StartObject();
  key_str(w, "apiKey", write_key);
  key_str(w, "apiHost", api_host);
  key_str(w, "protocol", url.scheme);
  empty_array(w, "unbundledIntegrations");
  w.Key("addBundledMetadata");
  w.Bool(true);
  empty_object(w, "maybeBundledConfigIds");
  w.Key("versionSettings");
  w.StartObject();
  w.Key("componentTypes");
  w.StartArray();
  w.String("browser");
  w.EndArray();
  w.EndObject();
  w.EndObject();
  w.EndObject();
  // Every event type enabled, as a source without a tracking plan is.
  w.Key("plan");
  w.StartObject();
  for (const char* type : {"track", "identify", "group"}) {
    w.Key(type);
    w.StartObject();
    w.Key("__default");
    w.StartObject();
    w.Key("enabled");
    w.Bool(true);
    empty_object(w, "integrations");
    w.EndObject();
    w.EndObject();
  }
  w.EndObject();
  empty_object(w, "edgeFunction");
  w.Key("analyticsNextEnabled");
  w.Bool(true);
  w.Key("middlewareSettings");
  w.StartObject();
  empty_array(w, "routingRules");
  w.EndObject();
  empty_object(w, "enabledMiddleware");
  // The SDK's own error reports (/v1/m) are not asked for.
  w.Key("metrics");
  w.StartObject();
  w.Key("sampleRate");
  w.Int(0);
  key_str(w, "host", api_host);
  w.EndObject();
  w.Key("legacyVideoPluginsEnabled");
  w.Bool(false);
  empty_array(w, "remotePlugins");
  w.Key("consentSettings");
  w.StartObject();
  empty_array(w, "allCategories");
  w.Key("hasUnmappedDestinations");
  w.Bool(false);
  w.EndObject();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

std::string rudderstack_source_config(std::string_view write_key, int source_id, const PublicUrl& url) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("isHosted");
  w.Bool(false);
  w.Key("source");
  w.StartObject();
  key_str(w, "id", "cdp-source-" + std::to_string(source_id));
  key_str(w, "name", "cdp source " + std::to_string(source_id));
  key_str(w, "writeKey", write_key);
  w.Key("enabled");
  w.Bool(true);
  key_str(w, "workspaceId", "cdp");
  w.Key("config");
  w.StartObject();
  w.Key("statsCollection");
  w.StartObject();
  for (const char* kind : {"errors", "metrics"}) {
    w.Key(kind);
    w.StartObject();
    w.Key("enabled");
    w.Bool(false);
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
  w.Key("dataplanes");
  w.StartObject();
  w.Key("default");
  w.StartArray();
  w.StartObject();
  key_str(w, "url", url.text());
  w.Key("default");
  w.Bool(true);
  w.EndObject();
  w.EndArray();
  w.EndObject();
  empty_array(w, "destinations");
  w.EndObject();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

std::string snippet_page(const PublicUrl& url) {
  // Every character of the URL is url_safe: none needs escaping in HTML or JS.
  const std::string u = url.text();
  std::string page =
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<title>cdp: point your SDKs here</title>\n"
      "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}"
      "pre{background:#f4f4f4;padding:1rem;overflow:auto}</style></head><body>\n"
      "<h1>Send events to this cdp</h1>\n"
      "<p>This server speaks the Segment Tracking API and RudderStack's. Use your SDK unchanged: point it at "
      "<code>{{URL}}</code> and use a source's write key (<code>select cdp.create_source('web')</code>).</p>\n"
      "<h2>Segment analytics-next (browser)</h2>\n"
      "<pre>import { AnalyticsBrowser } from '@segment/analytics-next'\n"
      "// Settings come from {{URL}}/v1/projects/&lt;writeKey&gt;/settings\n"
      "const analytics = AnalyticsBrowser.load({ writeKey: 'WRITE_KEY', cdnURL: '{{URL}}' })\n"
      "analytics.track('Signed Up', { plan: 'pro' })</pre>\n"
      "<h2>RudderStack JavaScript SDK v3 (browser)</h2>\n"
      "<pre>import { RudderAnalytics } from '@rudderstack/analytics-js/bundled'\n"
      "const analytics = new RudderAnalytics()\n"
      "// The source config comes from {{URL}}/sourceConfig\n"
      "analytics.load('WRITE_KEY', '{{URL}}', { configUrl: '{{URL}}' })\n"
      "analytics.track('Signed Up', { plan: 'pro' })</pre>\n"
      "<h2>Segment Node.js</h2>\n"
      "<pre>import { Analytics } from '@segment/analytics-node'\n"
      "const analytics = new Analytics({ writeKey: 'WRITE_KEY', host: '{{URL}}' })\n"
      "analytics.track({ userId: 'u1', event: 'Signed Up' })\n"
      "await analytics.closeAndFlush()</pre>\n"
      "<h2>RudderStack Node.js</h2>\n"
      "<pre>import Analytics from '@rudderstack/rudder-sdk-node'\n"
      "const client = new Analytics('WRITE_KEY', { dataPlaneUrl: '{{URL}}' })\n"
      "client.track({ userId: 'u1', event: 'Signed Up' })\n"
      "await client.flush()</pre>\n"
      "<h2>curl</h2>\n"
      "<pre>curl -u WRITE_KEY: {{URL}}/v1/track -H 'Content-Type: application/json' \\\n"
      "  -d '{\"userId\": \"u1\", \"event\": \"Signed Up\"}'</pre>\n"
      "</body></html>\n";
  const std::string_view mark = "{{URL}}";
  for (size_t at = page.find(mark); at != std::string::npos; at = page.find(mark, at + u.size()))
    page.replace(at, mark.size(), u);
  return page;
}

std::string etag(std::string_view body) { return "\"" + short_key(body) + "\""; }

bool etag_matches(std::string_view if_none_match, std::string_view tag) {
  while (!if_none_match.empty()) {
    size_t comma = if_none_match.find(',');
    std::string_view item = if_none_match.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.substr(0, 2) == "W/") item.remove_prefix(2);  // weak comparison, as for GET
    if (item == "*" || item == tag) return true;
    if (comma == std::string_view::npos) break;
    if_none_match.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace cdp::sdk
