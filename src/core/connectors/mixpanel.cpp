// kind "mixpanel": Mixpanel's Import API, POST /import?strict=1, with a
// service account. Track, page and screen calls and segment changes become
// Mixpanel events; identify, group, alias and deletion notices have no
// counterpart in /import (profiles are the Engage API: not in this wave).
// With strict=1 Mixpanel imports a batch's valid records and lists the
// others, so one bad record never holds back the rest. docs/connectors/mixpanel.md.
#include <cctype>
#include <string>

#include "core/connectors/connector.hpp"
#include "core/delivery.hpp"
#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp::connectors {
namespace {

using rapidjson::Value;
using Alloc = rapidjson::Document::AllocatorType;

constexpr size_t kMB = 1000 * 1000;  // the smaller reading of Mixpanel's "MB"
constexpr Micros kHour = 3600LL * 1000000;
constexpr Micros k1971 = 365LL * 24 * kHour;  // 1971-01-01T00:00:00Z: Mixpanel refuses earlier events
constexpr size_t kMaxProperties = 254;        // "fewer than 255 properties"
constexpr size_t kMaxEventName = 255;

// Values Mixpanel refuses as distinct_id and $insert_id (placeholders that
// betray a bug), compared without case.
const char* const kPlaceholders[] = {"00000000-0000-0000-0000-000000000000",
                                     "<nil>", "[]", "{}", "anon", "anonymous", "false", "lmy47d", "n/a",
                                     "na", "nil", "none", "null", "true", "undefined", "unknown"};

bool placeholder(std::string_view id) {
  std::string lower;
  for (char c : id) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* p : kPlaceholders)
    if (lower == p) return true;
  return false;
}

size_t characters(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Mixpanel's rule for $insert_id: at most 36 of [A-Za-z0-9-].
bool valid_insert_id(std::string_view id) {
  if (id.empty() || id.size() > 36 || placeholder(id)) return false;
  for (unsigned char c : id)
    if (!std::isalnum(c) && c != '-') return false;
  return true;
}

// The messageId when Mixpanel takes it as it is, else a digest of it: the
// same in every attempt, so Mixpanel's deduplication still works.
std::string insert_id(const std::string& message_id) {
  if (valid_insert_id(message_id)) return message_id;
  return delivery::sha256_hex(message_id).substr(0, 32);
}

// Sets obj[key] = v, replacing a member of that name.
void put(Value& obj, std::string_view key, Value v, Alloc& al) {
  auto it = obj.FindMember(Value(rapidjson::StringRef(key.data(), key.size())));
  if (it != obj.MemberEnd()) {
    it->value = v;
    return;
  }
  obj.AddMember(Value(key.data(), static_cast<rapidjson::SizeType>(key.size()), al), v, al);
}

// Context members as the properties Mixpanel's own SDKs set.
const std::pair<const char*, const char*> kContext[] = {
    {"context.ip", "ip"},
    {"context.page.url", "$current_url"},
    {"context.page.referrer", "$referrer"},
    {"context.os.name", "$os"},
    {"context.os.version", "$os_version"},
    {"context.device.name", "$device"},
    {"context.device.model", "$model"},
    {"context.device.manufacturer", "$manufacturer"},
    {"context.app.name", "$app_name"},
    {"context.app.version", "$app_version_string"},
    {"context.app.build", "$app_build_number"},
    {"context.network.carrier", "$carrier"},
    {"context.screen.width", "$screen_width"},
    {"context.screen.height", "$screen_height"},
    {"context.locale", "$locale"},
    {"context.campaign.source", "utm_source"},
    {"context.campaign.medium", "utm_medium"},
    {"context.campaign.name", "utm_campaign"},
    {"context.campaign.term", "utm_term"},
    {"context.campaign.content", "utm_content"},
};

class Mixpanel final : public Connector {
 public:
  std::string_view kind() const override { return "mixpanel"; }
  std::string_view default_url() const override { return "https://api.mixpanel.com"; }
  // 2000 events and 10 MB a request, each event under 1 MB (uncompressed).
  // The rate limit (2 GB a minute, ~30k events/s, a project) is not per request.
  Caps caps() const override { return {2000, 10 * kMB, kMB - 1, 0}; }

  Config check_config(const Value& config) const override {
    Config c = string_config(config, {"project_id", "service_account_username", "service_account_secret"},
                             {"project_id", "service_account_username", "service_account_secret"});
    for (unsigned char ch : c["project_id"])
      if (!std::isdigit(ch)) throw Error(ErrorKind::InvalidInput, "project_id", "must be digits (the project's id)");
    return c;
  }
  std::vector<std::string> secrets(const Config& c) const override { return {c.at("service_account_secret")}; }

  Mapping map(const Value& m, const Config&, Micros now) const override {
    std::string type = type_of(m);
    if (!sent(type)) return Mapping::skip(skipped(type));
    std::string event = event_name(m, type), distinct = text(m, "userId");
    if (distinct.empty()) distinct = text(m, "anonymousId");
    Micros t = time_of(m);
    if (std::string why = refusal(m, event, distinct, t, now); !why.empty()) return Mapping::reject(why);
    rapidjson::Document d = record(m, type, event, distinct, t);
    if (d["properties"].MemberCount() > kMaxProperties)
      return Mapping::reject("properties: Mixpanel takes fewer than 255 properties an event (with those cdp adds)");
    return Mapping::one({to_json(d), "", "", ""});
  }

  Request build(const std::vector<const Item*>& items, const Config& c, Micros) const override {
    Request r;
    r.path = "/import?strict=1&project_id=" + url_encode(c.at("project_id"));
    std::string credentials = c.at("service_account_username") + ":" + c.at("service_account_secret");
    r.headers = {"Content-Type: application/json", "Authorization: Basic " + base64(credentials)};
    r.body = "[";
    for (size_t i = 0; i < items.size(); i++) r.body += (i ? "," : "") + items[i]->json;
    r.body += "]";
    return r;
  }

  // 200: all imported. 400: with strict=1 the valid records ARE imported and
  // failed_records lists the others. 401/403 (credentials) dead; 413 split;
  // 429 (the project's rate limit) and 5xx retried, as an outage.
  Answer read(const Response& r, const std::vector<const Item*>& items, Micros now) const override {
    if (r.status == 400) return bad_request(r, items);
    Answer a = by_status(r);
    if (r.status == 413) a.split = items.size() > 1;
    if (a.whole.verdict == Verdict::Retry)
      a.whole.delay = delivery::parse_retry_after(r.retry_after, now).value_or(0);
    return a;
  }

 private:
  static bool sent(const std::string& type) {
    return type == "track" || type == "page" || type == "screen" || type == "segment_enter" ||
           type == "segment_exit";
  }

  static std::string event_name(const Value& m, const std::string& type) {
    if (type == "track") return text(m, "event");
    if (type == "page" || type == "screen") return viewed(m, type);
    return type == "segment_enter" ? "Audience Entered" : "Audience Exited";
  }

  // The Mixpanel rule a message breaks, or "": /import would refuse it.
  static std::string refusal(const Value& m, const std::string& event, const std::string& distinct, Micros t,
                             Micros now) {
    if (event.empty()) return "event: Mixpanel needs a non-empty event name";
    if (characters(event) > kMaxEventName) return "event: Mixpanel takes event names of at most 255 characters";
    if (distinct.empty()) return "userId: Mixpanel needs a distinct_id: the message has neither userId nor anonymousId";
    if (placeholder(distinct))
      return "userId: Mixpanel refuses \"" + distinct + "\" as a distinct_id (a placeholder value)";
    if (t == 0) return "timestamp: Mixpanel requires properties.time and the message has no time";
    if (t < k1971) return "timestamp: Mixpanel refuses events dated before 1971-01-01";
    if (t > now + kHour) return "timestamp: Mixpanel refuses events more than 1 hour in the future";
    const Value* props = at(m, "properties");
    if (props && props->IsObject() && props->MemberCount() > kMaxProperties)
      return "properties: Mixpanel takes fewer than 255 properties an event";
    return "";
  }

  // Page and screen calls as Mixpanel (Actions) sends them: "Viewed <name>";
  // unnamed ones as Segment's consolidated "Loaded a Page"/"Loaded a Screen".
  static std::string viewed(const Value& m, const std::string& type) {
    std::string name = text(m, "name");
    if (!name.empty()) return "Viewed " + name;
    return type == "page" ? "Loaded a Page" : "Loaded a Screen";
  }

  static std::string skipped(const std::string& type) {
    if (type == "identify")
      return "identify: profile traits belong to Mixpanel's Engage API, not /import (not in this wave)";
    if (type == "group") return "group: group profiles belong to Mixpanel's Groups API, not /import (not in this wave)";
    if (type == "alias")
      return "alias: /import has no alias (each event carries $user_id and $device_id for Mixpanel's ID merge)";
    if (type == "delete") return "delete: /import has no deletion (use Mixpanel's GDPR API)";
    return "type: \"" + type + "\" has no counterpart in Mixpanel's /import";
  }

  // {"event", "properties"}: context first, the message's properties over
  // them, and the fields Mixpanel requires over both.
  static rapidjson::Document record(const Value& m, const std::string& type, const std::string& event,
                                    const std::string& distinct, Micros t) {
    rapidjson::Document d(rapidjson::kObjectType);
    Alloc& al = d.GetAllocator();
    Value props(rapidjson::kObjectType);
    for (const auto& [path, key] : kContext)
      if (const Value* v = at(m, path); v && !v->IsObject() && !v->IsArray()) put(props, key, Value(*v, al), al);
    if (const Value* p = at(m, "properties"); p && p->IsObject())
      for (auto it = p->MemberBegin(); it != p->MemberEnd(); ++it)
        put(props, string_of(it->name), Value(it->value, al), al);
    if (type == "page" || type == "screen") {
      for (const char* key : {"name", "category"})
        if (const Value* v = at(m, key); v && !props.HasMember(key)) put(props, key, Value(*v, al), al);
    } else if (type != "track") {
      bool enter = type == "segment_enter";
      if (const Value* s = at(m, "segment")) put(props, "audience_key", Value(*s, al), al);
      if (const Value* s = at(m, "segment_id")) put(props, "segment_id", Value(*s, al), al);
      put(props, enter ? "entered" : "exited", Value(true), al);
    }
    put(props, "time", Value(static_cast<int64_t>(t / 1000)), al);
    put(props, "distinct_id", Value(distinct.c_str(), al), al);
    put(props, "$insert_id", Value(insert_id(id_source(m, event, distinct, t)).c_str(), al), al);
    std::string user = text(m, "userId"), anonymous = text(m, "anonymousId");
    if (!user.empty()) put(props, "$user_id", Value(user.c_str(), al), al);
    if (!anonymous.empty()) put(props, "$device_id", Value(anonymous.c_str(), al), al);
    put(props, "mp_lib", Value("cdp"), al);
    d.AddMember("event", Value(event.c_str(), al), al);
    d.AddMember("properties", props, al);
    return d;
  }

  // What $insert_id is made of: the messageId (every message cdp queues has
  // one), else what makes the event unique.
  static std::string id_source(const Value& m, const std::string& event, const std::string& distinct, Micros t) {
    std::string id = text(m, "messageId");
    return id.empty() ? event + "\n" + distinct + "\n" + std::to_string(t) : id;
  }

  // failed_records names the refused records by index: those are dead with
  // Mixpanel's words, the others were imported. Without a list Mixpanel
  // refused the request as a whole for a reason it does not place: split it,
  // so that a record it cannot read is found and the others still go.
  static Answer bad_request(const Response& r, const std::vector<const Item*>& items) {
    Answer a;
    rapidjson::Document doc;
    const Value* failed = nullptr;
    if (!parse_json(doc, r.body).IsError() && doc.IsObject()) failed = member_of(doc, "failed_records");
    std::vector<ItemAnswer> out(items.size());
    bool any = false;
    if (failed && failed->IsArray())
      for (const Value& f : failed->GetArray()) {
        const Value* index = f.IsObject() ? member_of(f, "index") : nullptr;
        if (!index || !index->IsUint64() || index->GetUint64() >= items.size()) continue;
        out[index->GetUint64()] = {Verdict::Dead, failure(f), 0};
        any = true;
      }
    if (any) {
      a.items = std::move(out);
      return a;
    }
    a.whole = {Verdict::Dead, describe(r), 0};
    a.split = items.size() > 1;
    return a;
  }

  // "HTTP 400: properties.time: 'properties.time' is invalid: ...".
  static std::string failure(const Value& f) {
    std::string field = text(f, "field"), message = text(f, "message");
    if (message.empty()) message = "failed validation";
    return "HTTP 400: " + (field.empty() ? "" : field + ": ") + message;
  }
};

}  // namespace

const Connector& mixpanel_connector() {
  static const Mixpanel c;
  return c;
}

}  // namespace cdp::connectors
