// kind "ga4": Google Analytics 4's Measurement Protocol, POST /mp/collect.
// GA4 answers 2xx even for an event it throws away, so every rule it
// documents (names, parameter counts and lengths, the 72-hour window) is
// checked here, before sending: a message that breaks one becomes a dead
// letter that names the rule, not an event silently lost.
// docs/connectors/ga4.md.
#include "core/connectors/ga4.hpp"

#include <cctype>
#include <map>
#include <set>

#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp::connectors {
namespace {

using rapidjson::Value;
using Alloc = rapidjson::Document::AllocatorType;

constexpr Micros kMinute = 60'000'000;
constexpr Micros kHour = 60 * kMinute;
constexpr size_t kMaxName = 40;      // event and parameter names
constexpr size_t kMaxValue = 100;    // parameter values, item parameters included
constexpr size_t kMaxParams = 25;    // per event
constexpr size_t kMaxUserId = 256;
constexpr size_t kMaxItems = 200;    // the items array


// Segment's e-commerce spec names, as GA4's recommended events.
const std::map<std::string, std::string, std::less<>>& spec_names() {
  static const std::map<std::string, std::string, std::less<>> names = {
      {"Products Searched", "search"},         {"Product List Viewed", "view_item_list"},
      {"Product Clicked", "select_item"},      {"Product Viewed", "view_item"},
      {"Product Added", "add_to_cart"},        {"Product Removed", "remove_from_cart"},
      {"Cart Viewed", "view_cart"},            {"Checkout Started", "begin_checkout"},
      {"Payment Info Entered", "add_payment_info"}, {"Order Completed", "purchase"},
      {"Order Refunded", "refund"},            {"Product Added to Wishlist", "add_to_wishlist"},
      {"Promotion Viewed", "view_promotion"},  {"Promotion Clicked", "select_promotion"},
      {"Signed Up", "sign_up"},                {"Logged In", "login"},
  };
  return names;
}

// Names GA4 keeps for the events it collects itself.
bool reserved_event(std::string_view name) {
  static const std::set<std::string, std::less<>> names = {
      "ad_activeview", "ad_click", "ad_exposure", "ad_query", "ad_reward", "adunit_exposure",
      "app_background", "app_clear_data", "app_exception", "app_remove", "app_store_refund",
      "app_store_subscription_cancel", "app_store_subscription_convert", "app_store_subscription_renew",
      "app_update", "app_upgrade", "dynamic_link_app_open", "dynamic_link_app_update",
      "dynamic_link_first_open", "error", "first_open", "first_visit", "in_app_purchase",
      "notification_dismiss", "notification_foreground", "notification_open", "notification_receive",
      "os_update", "session_start", "session_start_with_rollout", "user_engagement"};
  return names.count(name) > 0;
}

size_t chars(std::string_view s) {  // UTF-8 code points: GA4 counts characters
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Lower case; each run of anything but ASCII letters and digits becomes one
// "_"; no "_" at either end. "Video Played!" -> "video_played".
std::string snake_case(std::string_view s) {
  std::string out;
  bool gap = false;
  for (unsigned char c : s) {
    if (std::isalnum(c)) {
      if (gap && !out.empty()) out += '_';
      out += static_cast<char>(std::tolower(c));
      gap = false;
    } else {
      gap = true;
    }
  }
  return out;
}

// Why `name` cannot be a GA4 event or parameter name; "" when it can.
std::string name_rule(const std::string& name) {
  for (const char* prefix : {"_", "firebase_", "ga_", "google_", "gtag."})
    if (name.rfind(prefix, 0) == 0)
      return std::string("starts with \"") + prefix + "\", a prefix GA4 reserves (_, firebase_, ga_, google_, gtag.)";
  bool shape = !name.empty() && std::isalpha(static_cast<unsigned char>(name[0]));
  for (unsigned char c : name) shape &= std::isalnum(c) || c == '_';
  if (!shape) return "must start with a letter and hold only letters, digits and _";
  if (name.size() > kMaxName) return "is over GA4's limit of 40 characters";
  return "";
}

std::string event_name(const std::string& event) {
  if (event.empty()) refuse("event: a track call needs an event name");
  auto spec = spec_names().find(event);
  if (spec != spec_names().end()) return spec->second;
  std::string name = snake_case(event);
  std::string rule = name_rule(name);
  if (rule.empty() && reserved_event(name)) rule = "is an event name GA4 reserves";
  if (!rule.empty()) refuse("event: \"" + event + "\" becomes the GA4 event name \"" + name + "\", which " + rule);
  return name;
}

// Adds params[name] = v (a string, number or boolean; anything else is not a
// GA4 parameter and is left out), unless the name is taken already. `field`
// names the value's origin for the reason; `max` is the value's limit.
void add(Value& params, Alloc& al, const std::string& name, const Value& v, const std::string& field,
         size_t max = kMaxValue) {
  if (params.HasMember(name.c_str())) return;
  Value copy;
  if (is_string(v)) {
    if (chars(string_of(v)) > max)
      refuse(field + ": GA4 takes values of at most " + std::to_string(max) + " characters for " + name +
             "; this one has " + std::to_string(chars(string_of(v))));
    copy.CopyFrom(v, al);
  } else if (is_number(v)) {
    copy.CopyFrom(v, al);
  } else if (v.IsBool()) {
    copy.SetString(v.GetBool() ? "true" : "false", al);  // GA4 parameters are strings or numbers
  } else {
    return;
  }
  params.AddMember(Value(name.c_str(), al), copy, al);
}

// Adds the first of `paths` that is present.
void add_first(Value& params, Alloc& al, const std::string& name, const Value& m,
               std::initializer_list<std::string_view> paths, size_t max = kMaxValue) {
  for (std::string_view path : paths)
    if (const Value* v = at(m, path); v && !v->IsNull()) return add(params, al, name, *v, std::string(path), max);
}

// A product of Segment's spec as a GA4 item.
Value item_of(const Value& p, Alloc& al) {
  Value item(rapidjson::kObjectType);
  add_first(item, al, "item_id", p, {"product_id", "sku", "item_id"});
  add_first(item, al, "item_name", p, {"name", "item_name"});
  if (!item.HasMember("item_id") && !item.HasMember("item_name"))
    refuse("product_id: GA4 needs an item_id (product_id or sku) or an item_name (name)");
  add_first(item, al, "price", p, {"price"});
  add_first(item, al, "quantity", p, {"quantity"});
  add_first(item, al, "item_category", p, {"category", "item_category"});
  add_first(item, al, "item_brand", p, {"brand", "item_brand"});
  add_first(item, al, "item_variant", p, {"variant", "item_variant"});
  add_first(item, al, "coupon", p, {"coupon"});
  add_first(item, al, "index", p, {"position", "index"});
  return item;
}

// properties.products (Segment's spec) or properties.items, as GA4 items.
void add_items(Value& params, Alloc& al, const Value& m) {
  const char* key = at(m, "properties.products") ? "products" : "items";
  const Value* list = at(m, std::string("properties.") + key);
  if (!list || !list->IsArray()) return;
  if (list->Size() > kMaxItems) refuse(std::string("properties.") + key + ": GA4 takes at most 200 items an event");
  Value items(rapidjson::kArrayType);
  for (rapidjson::SizeType i = 0; i < list->Size(); i++) {
    std::string field = std::string("properties.") + key + "[" + std::to_string(i) + "]";
    const Value& p = (*list)[i];
    if (!p.IsObject()) refuse(field + ": an item must be an object");
    try {
      items.PushBack(item_of(p, al), al);
    } catch (Refusal& r) {
      r.why = field + "." + r.why;
      throw;
    }
  }
  params.AddMember("items", items, al);
}

// Segment's e-commerce properties under GA4's names.
void add_ecommerce(Value& params, Alloc& al, const Value& m) {
  for (const char* path : {"properties.revenue", "properties.total", "properties.value"})
    if (const Value* v = at(m, path); v && is_number(*v)) {
      add(params, al, "value", *v, path);
      break;
    }
  add_first(params, al, "currency", m, {"properties.currency"});
  add_first(params, al, "transaction_id", m, {"properties.order_id"});
  add_first(params, al, "coupon", m, {"properties.coupon"});
  add_first(params, al, "shipping", m, {"properties.shipping"});
  add_first(params, al, "tax", m, {"properties.tax"});
  add_first(params, al, "search_term", m, {"properties.query"});
  add_items(params, al, m);
}

// The other top-level properties (strings, numbers, booleans) as parameters
// under their own name, or its snake_case when that is not a GA4 name.
void add_properties(Value& params, Alloc& al, const Value& m, const std::set<std::string, std::less<>>& taken) {
  const Value* props = at(m, "properties");
  if (!props || !props->IsObject()) return;
  for (auto p = props->MemberBegin(); p != props->MemberEnd(); ++p) {
    std::string key(string_of(p->name));
    if (taken.count(key) || p->value.IsObject() || p->value.IsArray() || p->value.IsNull()) continue;
    std::string name = name_rule(key).empty() ? key : snake_case(key);
    if (std::string rule = name_rule(name); !rule.empty())
      refuse("properties." + key + ": as the GA4 parameter \"" + name + "\", " + rule);
    add(params, al, name, p->value, "properties." + key);
  }
}

const std::set<std::string, std::less<>> kEcommerceKeys = {"revenue", "total", "value", "currency", "order_id", "coupon",
                                                           "shipping", "tax", "query", "products", "items"};

// {"name": ..., "params": {...}} for a track, page, screen or segment change.
rapidjson::Document make_event(const Value& m, const std::string& type) {
  rapidjson::Document d(rapidjson::kObjectType);
  Alloc& al = d.GetAllocator();
  Value params(rapidjson::kObjectType);
  std::string name;
  if (type == "track") {
    name = event_name(text(m, "event"));
    add_ecommerce(params, al, m);
    add_properties(params, al, m, kEcommerceKeys);
  } else if (type == "page") {
    name = "page_view";  // GA4's own limits for these three (Event collection limits)
    add_first(params, al, "page_location", m, {"context.page.url", "properties.url"}, 1000);
    add_first(params, al, "page_title", m, {"properties.title", "name"}, 300);
    add_first(params, al, "page_referrer", m, {"context.page.referrer", "properties.referrer"}, 420);
    add_properties(params, al, m, {"url", "title", "referrer", "path", "search"});
  } else if (type == "screen") {
    name = "screen_view";
    add_first(params, al, "screen_name", m, {"name", "properties.name"});
    add_properties(params, al, m, {"name"});
  } else if (type == "segment_enter" || type == "segment_exit") {
    name = type == "segment_enter" ? "cdp_audience_entered" : "cdp_audience_exited";
    const Value* segment = at(m, "segment");
    if (!segment || !is_string(*segment) || !segment->GetStringLength())
      refuse("segment: a segment change needs the segment's name");
    add_first(params, al, "audience_key", m, {"segment"});
  } else {
    refuse("type: ga4 sends track, page, screen, segment_enter and segment_exit, not \"" + type + "\"");
  }
  if (params.MemberCount() > kMaxParams)
    refuse("properties: GA4 takes at most 25 parameters an event; this one would have " +
           std::to_string(params.MemberCount()));
  d.AddMember("name", Value(name.c_str(), al), al);
  d.AddMember("params", params, al);
  return d;
}

Micros checked_time(const Value& m, Micros now) {
  Micros t = time_of(m);
  if (!t) refuse("timestamp: GA4 needs the event's time; the message has no ISO-8601 timestamp");
  if (now - t > 72 * kHour) refuse("timestamp: GA4 accepts events at most 72 hours old");
  if (t - now > 15 * kMinute) refuse("timestamp: more than 15 minutes in the future; GA4 does not take events from the future");
  return t;
}

std::string quoted(const std::string& s) {  // as a JSON string
  return to_json(Value(rapidjson::StringRef(s.data(), s.size())));
}

// What a request's events share, in JSON: client_id, user_id ("" : none),
// timestamp_micros. JSON strings hold no raw line break, so build() can cut it.
std::string group_of(const std::string& client, const std::string& user, Micros t) {
  return quoted(client) + "\n" + (user.empty() ? "" : quoted(user)) + "\n" + std::to_string(t);
}

std::string skip_reason(const std::string& type) {
  if (type == "identify")
    return "an identify call: the Measurement Protocol has no profile call (traits are not sent as user_properties)";
  if (type == "group") return "a group call: GA4 has no groups";
  if (type == "alias") return "an alias call: GA4 cannot merge users";
  if (type == "delete") return "a deletion notice: the Measurement Protocol has no deletion (use GA4's User Deletion API)";
  return "";
}

std::string value_of(const Config& c, const std::string& key) {
  auto it = c.find(key);
  return it == c.end() ? "" : it->second;
}

std::string query(const Config& c) {
  return "measurement_id=" + url_encode(value_of(c, "measurement_id")) +
         "&api_secret=" + url_encode(value_of(c, "api_secret"));
}

class Ga4 final : public Connector {
 public:
  std::string_view kind() const override { return "ga4"; }
  std::string_view default_url() const override { return "https://www.google-analytics.com"; }
  // 25 events a request; the body "must be smaller than 130kB", read as
  // 130,000 bytes. GA4 documents no rate limit for the Measurement Protocol.
  Caps caps() const override { return {25, 130'000 - 1, 0, 0}; }

  Config check_config(const Value& config) const override {
    Config c = string_config(config, {"measurement_id", "api_secret"}, {"measurement_id", "api_secret"});
    const std::string& id = c.at("measurement_id");
    bool shape = id.size() > 2 && id.rfind("G-", 0) == 0;
    for (unsigned char ch : id.substr(2)) shape &= std::isalnum(ch) != 0;
    if (!shape) throw Error(ErrorKind::InvalidInput, "measurement_id", "must be a GA4 measurement ID such as G-XXXXXXXXXX");
    return c;
  }
  std::vector<std::string> secrets(const Config& c) const override { return {value_of(c, "api_secret")}; }

  Mapping map(const Value& m, const Config&, Micros now) const override {
    try {
      return map_message(m, now);
    } catch (const Refusal& r) {
      return Mapping::reject(r.why);
    } catch (const std::exception& e) {
      return Mapping::reject(std::string("message: cannot be mapped (") + e.what() + ")");
    }
  }

  Request build(const std::vector<const Item*>& items, const Config& c, Micros) const override {
    Request r;
    r.path = "/mp/collect?" + query(c);
    r.headers = {"Content-Type: application/json"};
    std::string group = items.empty() ? "\"\"\n\n0" : items[0]->group;
    size_t a = group.find('\n'), b = group.find('\n', a + 1);
    std::string user = group.substr(a + 1, b - a - 1);
    r.body = "{\"client_id\":" + group.substr(0, a) + (user.empty() ? "" : ",\"user_id\":" + user) +
             ",\"timestamp_micros\":" + group.substr(b + 1) + ",\"events\":[";
    for (size_t i = 0; i < items.size(); i++) r.body += (i ? "," : "") + items[i]->json;
    r.body += "]}";
    return r;
  }

  // GA4 says nothing of an event's fate: any 2xx is delivered. 429, 5xx and
  // no answer are retried as an outage; other statuses are dead.
  Answer read(const Response& r, const std::vector<const Item*>&, Micros) const override { return by_status(r); }

 private:
  static Mapping map_message(const Value& m, Micros now) {
    std::string type = type_of(m);
    if (std::string why = skip_reason(type); !why.empty()) return Mapping::skip(why);
    std::string user = text(m, "userId");
    std::string client = text(m, "anonymousId");
    if (client.empty()) client = user;  // segment changes carry only the userId
    if (client.empty()) refuse("anonymousId: GA4 needs a client_id (the anonymousId, else the userId); the message has neither");
    if (chars(user) > kMaxUserId) refuse("userId: GA4 takes a user_id of at most 256 characters");
    Micros t = checked_time(m, now);
    return Mapping::one({to_json(make_event(m, type)), group_of(client, user, t), "", client});
  }
};

}  // namespace

const Connector& ga4_connector() {
  static const Ga4 c;
  return c;
}

std::string ga4_debug_path(const Config& c) { return "/debug/mp/collect?" + query(c); }

std::string ga4_validation(std::string_view debug_body) {
  rapidjson::Document d;
  if (parse_json(d, debug_body).IsError() || !d.IsObject())
    return "the validation server's answer is not JSON: " + std::string(debug_body.substr(0, 200));
  const Value* list = member_of(d, "validationMessages");
  if (!list || !list->IsArray() || list->Empty()) return "";
  std::string out;
  for (const Value& v : list->GetArray()) {
    out += out.empty() ? "" : "; ";
    out += text(v, "fieldPath") + ": " + text(v, "description") + " (" + text(v, "validationCode") + ")";
  }
  for (char& ch : out)
    if (ch == '\n' || ch == '\r') ch = ' ';
  return out;
}

}  // namespace cdp::connectors
