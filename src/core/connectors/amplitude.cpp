// kind "amplitude": Amplitude's HTTP V2 API, POST /2/httpapi with the
// project's API key in the body. Track, page and screen calls and segment
// changes become events, identify calls "$identify" events; group, alias and
// deletion notices are not sent. Amplitude refuses a whole batch for one bad
// event (400) or one throttled user (429) and names them: those are dead or
// wait, the rest is sent again at once. docs/connectors/amplitude.md.
#include <cctype>
#include <charconv>
#include <set>
#include <string>

#include "core/connectors/connector.hpp"
#include "core/delivery.hpp"
#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp::connectors {
namespace {

using rapidjson::Value;
using Alloc = rapidjson::Document::AllocatorType;

constexpr size_t kMaxBody = 1000 * 1000 - 1;  // "under 1 MB", in the smaller reading of MB
constexpr Micros kSecond = 1000000;
constexpr Micros kDay = 86400 * kSecond;
// "Stop sending events for that user or device for 30 seconds" after a 429.
constexpr Micros kThrottle = 30 * kSecond;
constexpr int kDefaultMinIdLength = 5;

size_t characters(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// A whole number from 1 to 255 (check_config), else the default.
int number(std::string_view s) {
  int n = 0;
  auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), n);
  return err == std::errc() && end == s.data() + s.size() && s.size() <= 3 && n >= 1 && n <= 255 ? n : 0;
}

int min_id_length(const Config& c) {
  auto it = c.find("min_id_length");
  int n = it == c.end() ? 0 : number(it->second);
  return n ? n : kDefaultMinIdLength;
}

// Context members as the event fields Amplitude's own SDKs set.
const std::pair<const char*, const char*> kContext[] = {
    {"context.ip", "ip"},
    {"context.os.name", "os_name"},
    {"context.os.version", "os_version"},
    {"context.device.model", "device_model"},
    {"context.device.manufacturer", "device_manufacturer"},
    {"context.network.carrier", "carrier"},
    {"context.app.version", "app_version"},
    {"context.locale", "language"},
    {"context.location.country", "country"},
    {"context.location.region", "region"},
    {"context.location.city", "city"},
};

void add(Value& obj, const char* key, const std::string& s, Alloc& al) {
  obj.AddMember(Value(key, al), Value(s.c_str(), static_cast<rapidjson::SizeType>(s.size()), al), al);
}

// The ids of an event item, read back from its JSON.
struct Ids {
  std::string user, device;
};
Ids ids_of(const Item& item) {
  rapidjson::Document d;
  if (parse_json(d, item.json).IsError() || !d.IsObject()) return {};
  return {text(d, "user_id"), text(d, "device_id")};
}

// The keys of an object member ({"u-1": 45, ...}) of an answer.
std::set<std::string> keys_of(const Value& doc, const char* name) {
  std::set<std::string> out;
  const Value* v = member_of(doc, name);
  if (v && v->IsObject())
    for (auto it = v->MemberBegin(); it != v->MemberEnd(); ++it) out.insert(std::string(string_of(it->name)));
  return out;
}

std::set<size_t> indexes_of(const Value* list) {
  std::set<size_t> out;
  if (list && list->IsArray())
    for (const Value& i : list->GetArray())
      if (i.IsUint64()) out.insert(static_cast<size_t>(i.GetUint64()));
  return out;
}

class Amplitude final : public Connector {
 public:
  std::string_view kind() const override { return "amplitude"; }
  std::string_view default_url() const override { return "https://api2.amplitude.com"; }
  // Fewer than 2000 events and under 1 MB a request (413 beyond); 100
  // batches a second (the Starter plan's limit, the lowest documented).
  Caps caps() const override { return {2000, kMaxBody, 0, 100}; }

  Config check_config(const Value& config) const override {
    Config c = string_config(config, {"api_key", "min_id_length"}, {"api_key"});
    if (auto it = c.find("min_id_length"); it != c.end()) {
      if (!number(it->second))
        throw Error(ErrorKind::InvalidInput, "min_id_length", "must be a whole number from 1 to 255, as a string");
    }
    return c;
  }
  std::vector<std::string> secrets(const Config& c) const override { return {c.at("api_key")}; }

  Mapping map(const Value& m, const Config& c, Micros) const override {
    std::string type = type_of(m);
    if (!sent(type)) return Mapping::skip(skipped(type));
    if (type == "identify" && !has_members(at(m, "traits"))) return Mapping::skip("identify: no traits to set");
    std::string event_type = event_name(m, type), user = text(m, "userId"), device = text(m, "anonymousId");
    Micros t = time_of(m);
    std::string why = refusal(type, event_type, user, device, static_cast<size_t>(min_id_length(c)), t);
    if (!why.empty()) return Mapping::reject(why);
    return Mapping::one({to_json(event(m, type, event_type, user, device, t)), "", "", user.empty() ? device : user});
  }

  Request build(const std::vector<const Item*>& items, const Config& c, Micros) const override {
    Request r;
    r.path = "/2/httpapi";
    r.headers = {"Content-Type: application/json"};
    const std::string& key = c.at("api_key");
    r.body = "{\"api_key\":" + to_json(Value(rapidjson::StringRef(key.data(), key.size()))) + ",\"events\":[";
    for (size_t i = 0; i < items.size(); i++) r.body += (i ? "," : "") + items[i]->json;
    r.body += "]";
    if (c.count("min_id_length"))  // as a number: "010" would not be JSON
      r.body += ",\"options\":{\"min_id_length\":" + std::to_string(min_id_length(c)) + "}";
    r.body += "}";
    return r;
  }

  // 200 ingested. 400 and 429 refuse the whole batch and name the events at
  // fault; 413 split; 5xx and a 429 that names no one retried, as an outage.
  // A bad api_key is a 400 too.
  Answer read(const Response& r, const std::vector<const Item*>& items, Micros now) const override {
    if (r.status == 400) return bad_request(r, items);
    if (r.status == 429) return too_many(r, items, now);
    Answer a = by_status(r);
    if (r.status == 413) a.split = items.size() > 1;
    if (a.whole.verdict == Verdict::Retry)
      a.whole.delay = delivery::parse_retry_after(r.retry_after, now).value_or(0);
    return a;
  }

 private:
  static bool sent(const std::string& type) {
    return type == "track" || type == "page" || type == "screen" || type == "identify" ||
           type == "segment_enter" || type == "segment_exit";
  }

  static std::string event_name(const Value& m, const std::string& type) {
    if (type == "track") return text(m, "event");
    if (type == "page" || type == "screen") return viewed(m, type);
    if (type == "identify") return "$identify";
    return type == "segment_enter" ? "Audience Entered" : "Audience Exited";
  }

  // The Amplitude rule a message breaks, or "": one such event would make
  // Amplitude refuse the whole request.
  static std::string refusal(const std::string& type, const std::string& event_type, const std::string& user,
                             const std::string& device, size_t min, Micros t) {
    if (event_type.empty()) return "event: Amplitude needs a non-empty event_type";
    if (type == "track" && (event_type == "$identify" || event_type == "$groupidentify"))
      return "event: \"" + event_type + "\" is an event_type Amplitude reserves";
    if (user.empty() && device.empty())
      return "userId: Amplitude needs a user_id or a device_id: the message has neither userId nor anonymousId";
    std::string shortest = " characters (config min_id_length)";
    if (!user.empty() && characters(user) < min)
      return "userId: Amplitude refuses a user_id shorter than " + std::to_string(min) + shortest;
    if (!device.empty() && characters(device) < min)
      return "anonymousId: Amplitude refuses a device_id shorter than " + std::to_string(min) + shortest;
    if (device == "00000000-0000-0000-0000-000000000000") return "anonymousId: Amplitude refuses an all-zero device_id";
    if (t < 0) return "timestamp: Amplitude takes times after 1970-01-01 only";
    return "";
  }

  // Page and screen calls as Amplitude (Actions) sends them: "Viewed <name>";
  // unnamed ones as Segment's "Loaded a Page"/"Loaded a Screen".
  static std::string viewed(const Value& m, const std::string& type) {
    std::string name = text(m, "name");
    if (!name.empty()) return "Viewed " + name;
    return type == "page" ? "Loaded a Page" : "Loaded a Screen";
  }

  static std::string skipped(const std::string& type) {
    if (type == "group")
      return "group: Amplitude's groups need a group type (Accounts add-on) this kind has no config for "
             "(not in this wave)";
    if (type == "alias") return "alias: the HTTP V2 API has no alias (Amplitude links user_id and device_id itself)";
    if (type == "delete") return "delete: the HTTP V2 API has no deletion (use Amplitude's User Privacy API)";
    return "type: \"" + type + "\" has no counterpart in Amplitude's HTTP V2 API";
  }

  static bool has_members(const Value* v) { return v && v->IsObject() && v->MemberCount() > 0; }

  static rapidjson::Document event(const Value& m, const std::string& type, const std::string& event_type,
                                   const std::string& user, const std::string& device, Micros t) {
    rapidjson::Document d(rapidjson::kObjectType);
    Alloc& al = d.GetAllocator();
    add(d, "event_type", event_type, al);
    if (!user.empty()) add(d, "user_id", user, al);
    if (!device.empty()) add(d, "device_id", device, al);
    if (t > 0) d.AddMember("time", Value(static_cast<int64_t>(t / 1000)), al);
    if (std::string id = text(m, "messageId"); !id.empty()) add(d, "insert_id", id, al);
    if (type == "identify") {
      Value set(rapidjson::kObjectType);
      set.AddMember("$set", Value(*at(m, "traits"), al), al);
      d.AddMember("user_properties", set, al);
    } else {
      d.AddMember("event_properties", properties(m, type, al), al);
      if (const Value* traits = at(m, "context.traits"); has_members(traits))
        d.AddMember("user_properties", Value(*traits, al), al);
    }
    add_context(d, m, al);
    d.AddMember("library", "cdp", al);
    return d;
  }

  // Device, place and app fields, from the context, when it has them.
  static void add_context(Value& d, const Value& m, Alloc& al) {
    for (const auto& [path, key] : kContext)
      if (std::string s = text(m, path); !s.empty()) add(d, key, s, al);
    std::string platform = text(m, "context.device.type");
    if (platform.empty() && at(m, "context.page.url")) platform = "Web";
    if (!platform.empty()) add(d, "platform", platform, al);
    for (const auto& [path, key] : {std::pair{"context.location.latitude", "location_lat"},
                                    std::pair{"context.location.longitude", "location_lng"}})
      if (const Value* v = at(m, path); v && is_number(*v)) d.AddMember(Value(key, al), Value(*v, al), al);
  }

  static Value properties(const Value& m, const std::string& type, Alloc& al) {
    Value props(rapidjson::kObjectType);
    if (const Value* p = at(m, "properties"); p && p->IsObject()) props.CopyFrom(*p, al);
    if (type == "page" || type == "screen") {
      for (const char* key : {"name", "category"})
        if (const Value* v = at(m, key); v && !props.HasMember(key)) props.AddMember(Value(key, al), Value(*v, al), al);
    } else if (type == "segment_enter" || type == "segment_exit") {
      if (const Value* s = at(m, "segment")) props.AddMember("audience_key", Value(*s, al), al);
      if (const Value* s = at(m, "segment_id")) props.AddMember("segment_id", Value(*s, al), al);
      props.AddMember(rapidjson::StringRef(type == "segment_enter" ? "entered" : "exited"), true, al);
    }
    return props;
  }

  // Amplitude ingested none of the batch. The events it names are dead; the
  // others go again at once. A 400 about the request (its api_key, a missing
  // field of the request) is dead as a whole; one that names nothing is
  // split to find the event it could not read.
  static Answer bad_request(const Response& r, const std::vector<const Item*>& items) {
    Answer a;
    a.whole = {Verdict::Dead, describe(r), 0};
    rapidjson::Document doc;
    if (parse_json(doc, r.body).IsError() || !doc.IsObject()) {
      a.split = items.size() > 1;
      return a;
    }
    std::string error = text(doc, "error");
    std::vector<std::string> faults(items.size());
    for (const char* list :
         {"events_with_invalid_fields", "events_with_missing_fields", "events_with_invalid_id_lengths"}) {
      const Value* fields = member_of(doc, list);
      if (!fields || !fields->IsObject()) continue;
      for (auto f = fields->MemberBegin(); f != fields->MemberEnd(); ++f)
        for (size_t i : indexes_of(&f->value))
          if (i < items.size()) note(faults[i], std::string(list) + ": " + std::string(string_of(f->name)));
    }
    for (size_t i : indexes_of(member_of(doc, "silenced_events")))
      if (i < items.size()) note(faults[i], "silenced_events");
    bool named = false;
    for (const std::string& f : faults) named |= !f.empty();
    if (!named) {
      bool about_request = !text(doc, "missing_field").empty() || lower(error).find("api key") != std::string::npos ||
                           lower(error).find("api_key") != std::string::npos;
      a.split = !about_request && items.size() > 1;
      return a;
    }
    a.items.resize(items.size(), {Verdict::RetryNow, "", 0});
    for (size_t i = 0; i < items.size(); i++)
      if (!faults[i].empty()) a.items[i] = {Verdict::Dead, "HTTP 400: " + error + " (" + faults[i] + ")", 0};
    return a;
  }

  // Nothing was ingested. Events of the users and devices Amplitude names
  // (or at the indexes it names) wait 30 seconds, those over their daily
  // quota until the next UTC day; the others go again at once. That is
  // per-user throttling, not an outage; a 429 that names no one is.
  static Answer too_many(const Response& r, const std::vector<const Item*>& items, Micros now) {
    Answer a;
    a.whole = {Verdict::Retry, describe(r), delivery::parse_retry_after(r.retry_after, now).value_or(0)};
    a.outage = true;
    rapidjson::Document doc;
    if (parse_json(doc, r.body).IsError() || !doc.IsObject()) return a;
    std::string error = text(doc, "error");
    std::set<std::string> users = keys_of(doc, "throttled_users"), devices = keys_of(doc, "throttled_devices");
    std::set<std::string> quota_users = keys_of(doc, "exceeded_daily_quota_users");
    std::set<std::string> quota_devices = keys_of(doc, "exceeded_daily_quota_devices");
    std::set<size_t> events = indexes_of(member_of(doc, "throttled_events"));
    Micros tomorrow = (now / kDay + 1) * kDay - now;
    std::vector<ItemAnswer> out(items.size(), {Verdict::RetryNow, "", 0});
    bool named = false;
    for (size_t i = 0; i < items.size(); i++) {
      Ids id = ids_of(*items[i]);
      bool over_quota = (!id.user.empty() && quota_users.count(id.user)) ||
                        (!id.device.empty() && quota_devices.count(id.device));
      bool throttled = events.count(i) || (!id.user.empty() && users.count(id.user)) ||
                       (!id.device.empty() && devices.count(id.device));
      if (over_quota) out[i] = {Verdict::Throttled, "HTTP 429: " + error + " (over the daily quota)", tomorrow};
      else if (throttled) out[i] = {Verdict::Throttled, "HTTP 429: " + error + " (throttled)", kThrottle};
      named |= over_quota || throttled;
    }
    if (!named) return a;
    a.items = std::move(out);
    a.outage = false;
    return a;
  }

  static void note(std::string& fault, const std::string& what) { fault += (fault.empty() ? "" : ", ") + what; }

  static std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
};

}  // namespace

const Connector& amplitude_connector() {
  static const Amplitude c;
  return c;
}

}  // namespace cdp::connectors
