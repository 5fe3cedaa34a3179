#include "core/delivery.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <regex>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp::delivery {
namespace {

using rapidjson::Value;

constexpr Micros kSecond = 1000000;

[[noreturn]] void fail(std::string path, const std::string& rule) {
  throw Error(ErrorKind::InvalidInput, std::move(path), rule);
}

std::string_view view_of(const Value& v) { return string_of(v); }
const Value* member(const Value& obj, const char* key) { return member_of(obj, key); }

void check_keys(const Value& obj, const std::string& path, std::initializer_list<std::string_view> allowed,
                const char* what) {
  for (auto m = obj.MemberBegin(); m != obj.MemberEnd(); ++m) {
    std::string_view k = view_of(m->name);
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
      fail((path.empty() ? "" : path + ".") + std::string(k), std::string("unknown key: ") + what);
  }
}

std::string at(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

std::vector<std::string> strings(const Value& v, const std::string& path, const char* what) {
  if (!v.IsArray()) fail(path, std::string("must be an array of ") + what);
  std::vector<std::string> out;
  for (rapidjson::SizeType i = 0; i < v.Size(); i++) {
    if (!v[i].IsString() || v[i].GetStringLength() == 0) fail(at(path, i), std::string("must be a non-empty string (") + what + ")");
    out.emplace_back(view_of(v[i]));
  }
  return out;
}

int whole(const Value& v, const std::string& path, int lo, int hi) {
  if (!v.IsInt() || v.GetInt() < lo || v.GetInt() > hi)
    fail(path, "must be a whole number from " + std::to_string(lo) + " to " + std::to_string(hi));
  return v.GetInt();
}

// A definition's compile error, re-raised under `path`.
computed::Definition filter(const Value& f, const std::string& path) {
  if (!f.IsObject()) fail(path, "must be an object such as {\"type\": \"track\", \"event\": \"Order Completed\"}");
  check_keys(f, path, {"type", "event", "where"}, "an event filter has type, event and where");
  rapidjson::Document def;
  def.CopyFrom(f, def.GetAllocator());
  def.AddMember("kind", "count", def.GetAllocator());
  try {
    return computed::Definition::compile(def);
  } catch (const Error& e) {
    throw e.under(path);
  }
}

// The value at a dotted path, and the object holding it (for removal).
Value* find(Value& root, std::string_view path, Value** parent, std::string* last) {
  Value* cur = &root;
  *parent = nullptr;
  while (true) {
    size_t dot = path.find('.');
    std::string_view key = path.substr(0, dot);
    if (!cur->IsObject()) return nullptr;
    auto it = cur->FindMember(Value(rapidjson::StringRef(key.data(), key.size())));
    if (it == cur->MemberEnd()) return nullptr;
    if (dot == std::string_view::npos) {
      *parent = cur;
      *last = std::string(key);
      return &it->value;
    }
    cur = &it->value;
    path = path.substr(dot + 1);
  }
}

std::string hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; i++) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

std::string normalised(const Value& v) {
  std::string s = is_string(v) ? std::string(view_of(v)) : to_json(v);  // a number kept as text: its digits
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) b++;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) e--;
  s = s.substr(b, e - b);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// kind, config and rate_limit: a built-in kind batches as its API allows by default.
void parse_kind(const Value& v, Options& o) {
  if (const Value* k = member(v, "kind")) {
    std::string kind = k->IsString() ? std::string(view_of(*k)) : "";
    o.connector = connectors::find(kind);
    if (!o.connector && kind != "webhook") fail("kind", "must be one of " + connectors::kinds());
  }
  const Value* c = member(v, "config");
  if (c && !o.connector) fail("config", "only a built-in kind takes a config (set kind: one of " + connectors::kinds() + ")");
  if (o.connector) {
    Value empty(rapidjson::kObjectType);
    try {
      o.config = o.connector->check_config(c ? *c : empty);
    } catch (const Error& e) {
      throw e.under("config");
    }
    o.max_events = o.connector->caps().max_items;
    o.requests_per_second = o.connector->caps().requests_per_second;
  }
  if (const Value* r = member(v, "rate_limit")) {
    if (!r->IsObject()) fail("rate_limit", "must be an object such as {\"requests_per_second\": 100}");
    check_keys(*r, "rate_limit", {"requests_per_second"}, "a rate limit has requests_per_second");
    if (const Value* n = member(*r, "requests_per_second"))
      o.requests_per_second = whole(*n, "rate_limit.requests_per_second", 1, 100000);
  }
}

// transform: a schema-qualified function name; that it exists, takes one
// jsonb and returns jsonb is checked against the catalog by the glue.
void parse_transform(const Value& v, Options& o) {
  if (const Value* t = member(v, "transform")) {
    static const std::regex name(R"([A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*)");
    std::string s = t->IsString() ? std::string(view_of(*t)) : "";
    if (!std::regex_match(s, name)) fail("transform", "must be a schema-qualified function name such as \"public.reshape\"");
    o.transform = s;
  }
  if (const Value* t = member(v, "transform_timeout_ms"))
    o.transform_timeout_ms = whole(*t, "transform_timeout_ms", 10, 60000);
}

}  // namespace

Options Options::parse(const Value& v) {
  if (!v.IsObject()) fail("", "options must be a JSON object");
  check_keys(v, "",
             {"headers", "secret", "subscribe", "batch", "consent", "pii", "max_age", "timeout_ms", "kind", "config",
              "transform", "transform_timeout_ms", "rate_limit"},
             "options are headers, secret, subscribe, batch, consent, pii, max_age, timeout_ms, kind, config, "
             "transform, transform_timeout_ms, rate_limit");
  Options o;
  parse_kind(v, o);
  if (const Value* h = member(v, "headers")) {
    if (!h->IsObject()) fail("headers", "must be an object of header names to string values");
    for (auto m = h->MemberBegin(); m != h->MemberEnd(); ++m) {
      std::string name(view_of(m->name));
      std::string path = "headers." + name;
      bool token = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
      });
      if (!token) fail(path, "a header name is letters, digits, - and _");
      if (!m->value.IsString()) fail(path, "must be a string");
      std::string value(view_of(m->value));
      if (value.find_first_of("\r\n") != std::string::npos) fail(path, "must not contain a line break");
      o.headers.emplace_back(std::move(name), std::move(value));
    }
  }
  if (const Value* s = member(v, "secret")) {
    if (!s->IsString() || s->GetStringLength() < 16) fail("secret", "must be a string of at least 16 characters");
    o.secret = view_of(*s);
  }
  if (const Value* s = member(v, "subscribe")) {
    if (!s->IsObject()) fail("subscribe", "must be an object with events and/or segments");
    check_keys(*s, "subscribe", {"events", "segments", "deletions"}, "a subscription has events, segments and deletions");
    if (const Value* e = member(*s, "events")) {
      if (e->IsBool()) {
        o.all_events = e->GetBool();
      } else if (e->IsArray()) {
        for (rapidjson::SizeType i = 0; i < e->Size(); i++) o.event_filters.push_back(filter((*e)[i], at("subscribe.events", i)));
      } else {
        fail("subscribe.events", "must be true (every event) or an array of filters such as {\"event\": \"Order Completed\"}");
      }
    }
    if (const Value* g = member(*s, "segments")) o.segments = strings(*g, "subscribe.segments", "a segment name");
    if (const Value* d = member(*s, "deletions")) {
      if (!d->IsBool()) fail("subscribe.deletions", "must be true or false");
      o.deletions = d->GetBool();
    }
  }
  if (const Value* b = member(v, "batch")) {
    if (!b->IsObject()) fail("batch", "must be an object such as {\"max_events\": 100, \"max_wait_ms\": 1000}");
    check_keys(*b, "batch", {"max_events", "max_wait_ms"}, "a batch has max_events and max_wait_ms");
    int most = o.connector ? o.connector->caps().max_items : kMaxBatch;
    if (const Value* n = member(*b, "max_events")) o.max_events = whole(*n, "batch.max_events", 1, most);
    if (const Value* w = member(*b, "max_wait_ms")) o.max_wait_ms = whole(*w, "batch.max_wait_ms", 0, 60000);
  }
  if (const Value* c = member(v, "consent")) o.consent = strings(*c, "consent", "a consent category");
  if (const Value* p = member(v, "pii")) {
    if (!p->IsObject()) fail("pii", "must be an object such as {\"drop\": [\"context.ip\"], \"hash\": [\"traits.email\"]}");
    check_keys(*p, "pii", {"drop", "hash"}, "a PII policy has drop and hash");
    if (const Value* d = member(*p, "drop")) o.drop = strings(*d, "pii.drop", "a dotted path such as context.ip");
    if (const Value* h = member(*p, "hash")) o.hash = strings(*h, "pii.hash", "a dotted path such as traits.email");
  }
  if (const Value* a = member(v, "max_age")) {
    if (!a->IsObject() || a->MemberCount() != 1) fail("max_age", "must be an object with one key: days, hours or minutes, such as {\"hours\": 24}");
    auto m = a->MemberBegin();
    std::string_view unit = view_of(m->name);
    Micros micros = unit == "days" ? 86400 * kSecond : unit == "hours" ? 3600 * kSecond : unit == "minutes" ? 60 * kSecond : 0;
    std::string path = "max_age." + std::string(unit);
    if (!micros) fail(path, "unknown key: max_age is one of days, hours, minutes");
    o.max_age = whole(m->value, path, 1, 1000000) * micros;
  }
  if (const Value* t = member(v, "timeout_ms")) o.timeout_ms = whole(*t, "timeout_ms", 100, 300000);
  parse_transform(v, o);
  return o;
}

Options Options::parse(std::string_view json_text) {
  rapidjson::Document doc;
  if (parse_json(doc, json_text).IsError()) throw Error(ErrorKind::MalformedJson, "", "options are not valid JSON");
  return parse(doc);
}

bool Options::wants(const computed::EventInput& e) const {
  if (all_events) return true;
  for (const computed::Definition& f : event_filters)
    if (f.matches(e)) return true;
  return false;
}

bool consented(const Value* context, const std::vector<std::string>& required) {
  return granted(segments::find_path(context, "consent.categoryPreferences"), required);
}

bool granted(const Value* prefs, const std::vector<std::string>& required) {
  if (required.empty()) return true;
  if (!prefs || !prefs->IsObject()) return false;
  for (const std::string& c : required) {
    auto it = prefs->FindMember(c.c_str());
    if (it == prefs->MemberEnd() || !it->value.IsBool() || !it->value.GetBool()) return false;
  }
  return true;
}

void apply_pii(rapidjson::Document& payload, const Options& o) {
  Value* parent;
  std::string last;
  for (const std::string& path : o.drop)
    if (find(payload, path, &parent, &last)) parent->RemoveMember(last.c_str());
  for (const std::string& path : o.hash) {
    Value* v = find(payload, path, &parent, &last);
    if (!v || v->IsNull() || v->IsObject() || v->IsArray()) continue;
    std::string h = sha256_hex(normalised(*v));
    v->SetString(h.c_str(), static_cast<rapidjson::SizeType>(h.size()), payload.GetAllocator());
  }
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return hex(md, sizeof md);
}

std::string signature(std::string_view secret, std::string_view timestamp, std::string_view body) {
  std::string message;
  message.reserve(timestamp.size() + 1 + body.size());
  message.append(timestamp).append(".").append(body);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), md, &len);
  return "v1=" + hex(md, len);
}

std::string request_body(const std::vector<std::string>& payloads, bool batching, Micros now) {
  if (!batching && payloads.size() == 1) return payloads[0];
  std::string out = "{\"batch\":[";
  for (size_t i = 0; i < payloads.size(); i++) {
    if (i) out += ',';
    out += payloads[i];
  }
  out += "],\"sentAt\":\"";
  out += format_iso8601(now);
  out += "\"}";
  return out;
}

Outcome classify(long status) {
  if (status >= 200 && status < 300) return Outcome::Delivered;
  if (status == 0 || status == 408 || status == 429 || status >= 500) return Outcome::Retry;
  return Outcome::Dead;
}

std::optional<Micros> parse_retry_after(std::string_view value, Micros now) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\r' || value.back() == '\n')) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) return kMaxRetryAfter;
    return std::min<Micros>(kMaxRetryAfter, std::stoll(std::string(value)) * kSecond);
  }
  struct tm tm = {};
  std::string text(value);
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end) return std::nullopt;
  Micros when = static_cast<Micros>(timegm(&tm)) * kSecond;
  return std::clamp<Micros>(when - now, 0, kMaxRetryAfter);
}

Micros backoff(int attempts, double jitter01, std::optional<Micros> retry_after) {
  double base = std::min(3600.0, std::ldexp(1.0, std::clamp(attempts, 1, 13) - 1));
  Micros delay = static_cast<Micros>(base * (0.5 + jitter01) * kSecond);
  if (retry_after && *retry_after > delay) delay = *retry_after;
  return delay;
}

Micros circuit_pause(int consecutive_failures) {
  int extra = std::clamp(consecutive_failures - kCircuitFailures, 0, 5);
  return std::min<Micros>(600 * kSecond, (30 * kSecond) << extra);
}

}  // namespace cdp::delivery
