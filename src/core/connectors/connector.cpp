// The kinds' registry and what they share: reading a message, checking a
// config, the encodings their requests need.
#include "core/connectors/connector.hpp"

#include <openssl/evp.h>

#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp::connectors {

// Each kind's file defines one of these.
const Connector& segment_connector();
const Connector& ga4_connector();
const Connector& meta_capi_connector();
const Connector& mixpanel_connector();
const Connector& amplitude_connector();
const Connector& braze_connector();

namespace {
const Connector* const* all() {
  static const Connector* const list[] = {&segment_connector(), &ga4_connector(),       &meta_capi_connector(),
                                          &mixpanel_connector(), &amplitude_connector(), &braze_connector(),
                                          nullptr};
  return list;
}
}  // namespace

const Connector* find(std::string_view kind) {
  for (const Connector* const* c = all(); *c; c++)
    if ((*c)->kind() == kind) return *c;
  return nullptr;
}

std::string kinds() {
  std::string out = "webhook";
  for (const Connector* const* c = all(); *c; c++) out += ", " + std::string((*c)->kind());
  return out;
}

const rapidjson::Value* at(const rapidjson::Value& message, std::string_view path) {
  const rapidjson::Value* v = &message;
  while (v) {
    size_t dot = path.find('.');
    std::string key(path.substr(0, dot));
    if (!v->IsObject()) return nullptr;
    auto it = v->FindMember(rapidjson::Value(rapidjson::StringRef(key.data(), key.size())));
    if (it == v->MemberEnd()) return nullptr;
    v = &it->value;
    if (dot == std::string_view::npos) return v;
    path.remove_prefix(dot + 1);
  }
  return nullptr;
}

std::string text(const rapidjson::Value& message, std::string_view path) {
  const rapidjson::Value* v = at(message, path);
  return v && v->IsString() ? std::string(v->GetString(), v->GetStringLength()) : std::string();
}

Micros time_of(const rapidjson::Value& message) {
  for (const char* key : {"timestamp", "at", "receivedAt"}) {
    std::string t = text(message, key);
    if (t.empty()) continue;
    if (auto micros = parse_iso8601(t)) return *micros;
  }
  return 0;
}

std::string type_of(const rapidjson::Value& message) { return text(message, "type"); }

const std::string& required(const Config& c, const std::string& key) {
  auto it = c.find(key);
  if (it == c.end() || it->second.empty()) throw Error(ErrorKind::InvalidInput, key, "is required");
  return it->second;
}

Config string_config(const rapidjson::Value& config, const std::vector<std::string>& keys,
                     const std::vector<std::string>& required_keys) {
  if (!config.IsObject()) throw Error(ErrorKind::InvalidInput, "", "must be an object of strings");
  Config out;
  for (auto m = config.MemberBegin(); m != config.MemberEnd(); ++m) {
    std::string key(m->name.GetString(), m->name.GetStringLength());
    bool known = false;
    for (const std::string& k : keys) known |= k == key;
    if (!known) {
      std::string list;
      for (const std::string& k : keys) list += (list.empty() ? "" : ", ") + k;
      throw Error(ErrorKind::InvalidInput, key, "unknown key: this kind's config has " + list);
    }
    if (!m->value.IsString()) throw Error(ErrorKind::InvalidInput, key, "must be a string");
    std::string value(m->value.GetString(), m->value.GetStringLength());
    if (value.find_first_of("\r\n") != std::string::npos)
      throw Error(ErrorKind::InvalidInput, key, "must not contain a line break");
    out[key] = std::move(value);
  }
  for (const std::string& k : required_keys) required(out, k);
  return out;
}

std::string base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

Answer by_status(const Response& r) {
  Answer a;
  if (r.status >= 200 && r.status < 300) return a;
  bool retry = r.status == 0 || r.status == 408 || r.status == 429 || r.status >= 500;
  a.whole.verdict = retry ? Verdict::Retry : Verdict::Dead;
  a.whole.reason = describe(r);
  a.outage = retry;
  return a;
}

std::string describe(const Response& r) {
  if (r.status == 0) return r.transport_error;
  return "HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 1024);
}

}  // namespace cdp::connectors
