#include "core/http_protocol.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace cdp {

std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += plus_is_space && s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

RouteMatch match_route(std::string_view path) {
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (path == "/health") return {Route::Health, {}, {}};
  if (path == "/metrics") return {Route::Metrics, {}, {}};
  if (path == "/" || path == "/sdk") return {Route::Snippets, {}, {}};
  if (path == "/sourceConfig") return {Route::SourceConfig, {}, {}};
  if (path == "/beacon/v1/batch") return {Route::Ingest, {}, {}};
  if (path.substr(0, 4) != "/v1/") return {};
  std::string_view name = path.substr(4);
  if (name == "batch" || name == "b" || name == "import") return {Route::Ingest, {}, {}};
  if (name == "m") return {Route::SdkReport, {}, {}};
  constexpr std::string_view kProfiles = "profiles";
  if (name.substr(0, kProfiles.size()) == kProfiles && (name.size() == kProfiles.size() || name[kProfiles.size()] == '/'))
    return {Route::Profile, {}, {}};
  constexpr std::string_view kProjects = "projects/", kSettings = "/settings";
  if (name.substr(0, kProjects.size()) == kProjects && name.size() > kProjects.size() + kSettings.size() &&
      name.substr(name.size() - kSettings.size()) == kSettings) {
    std::string_view key = name.substr(kProjects.size(), name.size() - kProjects.size() - kSettings.size());
    auto decoded = percent_decode(key, false);
    if (!decoded || decoded->empty() || decoded->find('/') != std::string::npos) return {};
    return {Route::Settings, {}, std::move(*decoded)};
  }
  static const struct {
    const char *full, *brief;
    MessageType type;
  } kTyped[] = {{"track", "t", MessageType::Track},   {"identify", "i", MessageType::Identify},
                {"page", "p", MessageType::Page},     {"screen", "s", MessageType::Screen},
                {"group", "g", MessageType::Group},   {"alias", "a", MessageType::Alias}};
  for (auto& t : kTyped)
    if (name == t.full || name == t.brief) return {Route::Ingest, t.type, {}};
  return {};
}

static std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view item = trim(text.substr(0, comma));
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

static bool listed(std::string_view ip, const std::vector<std::string>& list) {
  for (auto& t : list)
    if (t == ip) return true;
  return false;
}

std::string client_ip(std::string_view peer, std::string_view forwarded_for,
                      const std::vector<std::string>& trusted_proxies) {
  if (forwarded_for.empty() || !listed(peer, trusted_proxies)) return std::string(peer);
  std::vector<std::string> hops = split_list(forwarded_for);
  for (auto it = hops.rbegin(); it != hops.rend(); ++it)
    if (!listed(*it, trusted_proxies)) return *it;
  return hops.empty() ? std::string(peer) : hops.front();
}

bool origin_allowed(std::string_view origin, const std::vector<std::string>& allowed) {
  for (auto& a : allowed)
    if (a == "*" || a == origin) return true;
  return false;
}

// What analytics-next, RudderStack v3 and the server SDKs are seen to send:
// RudderStack v3's XhrQueue adds the Rsa-Since-* pair to every retry and
// Rsa-Recovered to events reclaimed from another tab's storage.
const char* const kCorsKnownHeaders =
    "Content-Type, Authorization, Content-Encoding, X-Retry-Count, AnonymousId, SentAt, "
    "Rsa-Retry-Attempt, Rsa-Retry-Reason, Rsa-Since-First-Attempt, Rsa-Since-Last-Attempt, Rsa-Recovered";

static bool token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

CorsAnswer cors_policy(std::string_view origin, const std::vector<std::string>& allowed,
                       std::string_view requested_headers) {
  CorsAnswer a;
  if (origin.empty()) return a;
  for (auto& o : allowed) {
    if (o == "*" || o == origin) a.allowed = true;
    // Credentials only for an origin listed by name: "*" names none, even sent as the Origin.
    if (o == origin && o != "*") a.credentials = true;
  }
  if (!a.allowed) return a;
  a.allow_headers = kCorsKnownHeaders;
  if (requested_headers.empty() || requested_headers.size() > 1024) return a;
  std::vector<std::string> names = split_list(requested_headers);
  if (names.empty() || names.size() > 32) return a;
  std::string echoed;
  for (auto& n : names) {
    for (char c : n)
      if (!token_char(c)) return a;
    if (!echoed.empty()) echoed += ", ";
    echoed += n;
  }
  a.allow_headers = std::move(echoed);
  return a;
}

namespace {
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;
void str(Writer& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}
}  // namespace

std::string ingest_response(const Payload& payload, const std::vector<MessageStatus>& statuses) {
  size_t counts[3] = {0, 0, 0};
  for (auto s : statuses) counts[static_cast<int>(s)]++;
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("success");
  w.Bool(true);
  w.Key("accepted");
  w.Uint64(counts[0]);
  w.Key("duplicate");
  w.Uint64(counts[1]);
  w.Key("rejected");
  w.Uint64(counts[2]);
  if (counts[1] + counts[2] > 0) {
    w.Key("messages");
    w.StartArray();
    for (size_t i = 0; i < statuses.size(); i++) {
      if (statuses[i] == MessageStatus::Accepted) continue;
      const MessageOutcome& m = payload.messages[i];
      w.StartObject();
      w.Key("index");
      w.Uint64(i);
      w.Key("messageId");
      str(w, m.ok() ? m.event->message_id : m.rejection.message_id);
      w.Key("status");
      w.String(message_status_name(statuses[i]));
      if (!m.ok()) {
        w.Key("error");
        str(w, m.rejection.reason());
      }
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

namespace {
// {["success":false,] key: value[, optional_key: optional]}: the small answers.
std::string small_object(bool failure, const char* key, std::string_view value, const char* optional_key,
                         std::string_view optional) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  if (failure) {
    w.Key("success");
    w.Bool(false);
  }
  w.Key(key);
  str(w, value);
  if (!optional.empty()) {
    w.Key(optional_key);
    str(w, optional);
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}
}  // namespace

std::string error_response(std::string_view error, std::string_view field) {
  return small_object(true, "error", error, "field", field);
}

std::string status_response(std::string_view status, std::string_view reason) {
  return small_object(false, "status", status, "reason", reason);
}

}  // namespace cdp
