#include "core/http_protocol.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace cdp {

RouteMatch match_route(std::string_view path) {
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (path == "/health") return {Route::Health, {}};
  if (path == "/metrics") return {Route::Metrics, {}};
  if (path.substr(0, 4) != "/v1/") return {};
  std::string_view name = path.substr(4);
  if (name == "batch" || name == "import") return {Route::Ingest, {}};
  static const struct {
    const char *full, *brief;
    MessageType type;
  } kTyped[] = {{"track", "t", MessageType::Track},   {"identify", "i", MessageType::Identify},
                {"page", "p", MessageType::Page},     {"screen", "s", MessageType::Screen},
                {"group", "g", MessageType::Group},   {"alias", "a", MessageType::Alias}};
  for (auto& t : kTyped)
    if (name == t.full || name == t.brief) return {Route::Ingest, t.type};
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
