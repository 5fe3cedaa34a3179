// kind "meta_capi": Meta's Conversions API, POST /<api_version>/<pixel_id>/events.
// Meta refuses a whole request for one bad event (one over 7 days old, above
// all), so the rules it documents are checked here before sending; a request
// it refuses all the same is split until the bad event is alone. Customer
// information is hashed as Meta requires, unless the destination's PII
// policy hashed it already. docs/connectors/meta_capi.md.
#include <cctype>
#include <map>
#include <set>

#include "core/connectors/connector.hpp"
#include "core/delivery.hpp"
#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp::connectors {
namespace {

using rapidjson::Value;
using Alloc = rapidjson::Document::AllocatorType;

constexpr Micros kSecond = 1'000'000;
constexpr Micros kDay = 86'400 * kSecond;
constexpr size_t kMaxEventName = 50;  // Meta's limit for custom event names


// Segment's spec names, as Meta's standard events.
const std::map<std::string, std::string, std::less<>>& spec_names() {
  static const std::map<std::string, std::string, std::less<>> names = {
      {"Order Completed", "Purchase"},           {"Product Added", "AddToCart"},
      {"Checkout Started", "InitiateCheckout"},  {"Product Viewed", "ViewContent"},
      {"Signed Up", "CompleteRegistration"},     {"Products Searched", "Search"},
      {"Payment Info Entered", "AddPaymentInfo"}, {"Product Added to Wishlist", "AddToWishlist"},
      {"Lead Generated", "Lead"},                {"Subscription Started", "Subscribe"},
  };
  return names;
}

const char* const kActionSources[] = {"email", "website", "app", "phone_call", "chat", "physical_store",
                                      "system_generated", "business_messaging", "other"};

bool is_hex64(std::string_view s) {  // a lower-case hex SHA-256: hashed already
  if (s.size() != 64) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c)) && (c < 'a' || c > 'f')) return false;
  return true;
}

std::string trim_lower(std::string_view s) {
  size_t a = s.find_first_not_of(" \t\r\n\v\f"), b = s.find_last_not_of(" \t\r\n\v\f");
  std::string out(a == std::string_view::npos ? std::string_view() : s.substr(a, b - a + 1));
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Meta's normalisations, before hashing.
std::string email_norm(std::string_view s) { return trim_lower(s); }
std::string phone_norm(std::string_view s) {  // digits only, no leading zeros
  std::string out;
  for (char c : s)
    if (std::isdigit(static_cast<unsigned char>(c)) && !(out.empty() && c == '0')) out += c;
  return out;
}
std::string name_norm(std::string_view s) {  // lower case, no punctuation
  std::string out;
  for (char c : trim_lower(s))
    if (!std::ispunct(static_cast<unsigned char>(c))) out += c;
  return out;
}

// A string or number as text ("" for anything else).
std::string scalar(const Value& v) {
  if (auto raw = raw_number(v)) return std::string(*raw);
  if (v.IsString()) return std::string(string_of(v));
  if (v.IsNumber()) return to_json(v);
  return "";
}

std::string first_of(const Value& m, std::initializer_list<std::string_view> paths) {
  for (std::string_view path : paths)
    if (const Value* v = at(m, path))
      if (std::string s = scalar(*v); !s.empty()) return s;
  return "";
}

void put(Value& obj, Alloc& al, const char* key, const std::string& s) {
  obj.AddMember(Value(key, al), Value(s.c_str(), static_cast<rapidjson::SizeType>(s.size()), al), al);
}

// key: [sha256(normalised value)], or [value] when it is a hash already.
void put_hashed(Value& user, Alloc& al, const char* key, const std::string& raw, std::string (*norm)(std::string_view)) {
  if (raw.empty()) return;
  std::string n = is_hex64(raw) ? raw : norm(raw);
  if (n.empty()) return;
  Value list(rapidjson::kArrayType);
  std::string h = is_hex64(n) ? n : delivery::sha256_hex(n);
  list.PushBack(Value(h.c_str(), al), al);
  user.AddMember(Value(key, al), list, al);
}

// Meta's customer information, from where a message keeps a person's
// details: a segment change's traits, a track's context.traits, the properties.
Value user_data(const Value& m, Alloc& al) {
  Value u(rapidjson::kObjectType);
  put_hashed(u, al, "em", first_of(m, {"traits.email", "context.traits.email", "properties.email"}), email_norm);
  put_hashed(u, al, "ph", first_of(m, {"traits.phone", "context.traits.phone", "properties.phone"}), phone_norm);
  put_hashed(u, al, "fn",
             first_of(m, {"traits.first_name", "traits.firstName", "context.traits.first_name",
                          "context.traits.firstName", "properties.first_name", "properties.firstName"}),
             name_norm);
  put_hashed(u, al, "ln",
             first_of(m, {"traits.last_name", "traits.lastName", "context.traits.last_name",
                          "context.traits.lastName", "properties.last_name", "properties.lastName"}),
             name_norm);
  put_hashed(u, al, "external_id", text(m, "userId"), trim_lower);
  if (std::string ip = text(m, "context.ip"); !ip.empty()) put(u, al, "client_ip_address", ip);
  if (std::string ua = text(m, "context.userAgent"); !ua.empty()) put(u, al, "client_user_agent", ua);
  if (std::string fbp = first_of(m, {"context.fbp", "properties.fbp"}); !fbp.empty()) put(u, al, "fbp", fbp);
  if (std::string fbc = first_of(m, {"context.fbc", "properties.fbc"}); !fbc.empty()) put(u, al, "fbc", fbc);
  return u;
}

// properties.products as content_ids and contents; num_items their quantities.
void add_products(Value& custom, Alloc& al, const Value& m) {
  const Value* products = at(m, "properties.products");
  if (!products || !products->IsArray()) return;
  Value ids(rapidjson::kArrayType), contents(rapidjson::kArrayType);
  double quantities = 0;
  for (const Value& p : products->GetArray()) {
    std::string id = p.IsObject() ? first_of(p, {"product_id", "sku", "id"}) : "";
    if (id.empty()) continue;
    Value content(rapidjson::kObjectType);
    put(content, al, "id", id);
    const Value* q = at(p, "quantity");
    if (q && is_number(*q)) content.AddMember("quantity", Value(*q, al), al);
    quantities += q && q->IsNumber() ? q->GetDouble() : 1;
    if (const Value* price = at(p, "price"); price && is_number(*price))
      content.AddMember("item_price", Value(*price, al), al);
    ids.PushBack(Value(id.c_str(), al), al);
    contents.PushBack(content, al);
  }
  if (ids.Empty()) return;
  custom.AddMember("content_ids", ids, al);
  custom.AddMember("contents", contents, al);
  custom.AddMember("content_type", "product", al);
  if (!at(m, "properties.num_items")) custom.AddMember("num_items", Value(static_cast<int64_t>(quantities)), al);
}

// Keys read into user_data or under Meta's own names: not sent again as they are.
const std::set<std::string, std::less<>> kTaken = {
    "revenue", "total",     "value",     "currency",  "order_id", "products", "num_items", "query", "url",
    "email",   "phone",     "first_name", "firstName", "last_name", "lastName", "fbp",      "fbc"};

Value custom_data(const Value& m, Alloc& al) {
  Value c(rapidjson::kObjectType);
  for (const char* path : {"properties.revenue", "properties.total", "properties.value"})
    if (const Value* v = at(m, path); v && is_number(*v)) {
      c.AddMember("value", Value(*v, al), al);
      break;
    }
  if (std::string s = text(m, "properties.currency"); !s.empty()) put(c, al, "currency", s);
  if (std::string s = first_of(m, {"properties.order_id"}); !s.empty()) put(c, al, "order_id", s);
  if (const Value* n = at(m, "properties.num_items"); n && is_number(*n)) c.AddMember("num_items", Value(*n, al), al);
  if (std::string s = text(m, "properties.query"); !s.empty()) put(c, al, "search_string", s);
  add_products(c, al, m);
  const Value* props = at(m, "properties");
  if (!props || !props->IsObject()) return c;
  for (auto p = props->MemberBegin(); p != props->MemberEnd(); ++p) {
    std::string_view key = string_of(p->name);
    bool plain = p->value.IsString() || p->value.IsNumber() || p->value.IsBool();
    if (!plain || kTaken.count(key) || c.HasMember(p->name)) continue;
    c.AddMember(Value(p->name, al), Value(p->value, al), al);
  }
  return c;
}

std::string event_name(const Value& m, const std::string& type) {
  if (type == "page") return "PageView";
  if (type == "segment_enter") return "AudienceEntered";
  if (type == "segment_exit") return "AudienceExited";
  if (type != "track") refuse("type: meta_capi sends track, page, segment_enter and segment_exit, not \"" + type + "\"");
  std::string event = text(m, "event");
  if (event.empty()) refuse("event: a track call needs an event name");
  auto spec = spec_names().find(event);
  if (spec != spec_names().end()) return spec->second;
  if (event.size() > kMaxEventName) refuse("event: Meta takes custom event names of at most 50 characters");
  return event;
}

int64_t event_time(const Value& m, Micros now) {
  Micros t = time_of(m);
  if (!t) refuse("timestamp: Meta needs the event's time; the message has no ISO-8601 timestamp");
  // One such event makes Meta refuse the whole request: it is never sent.
  if (now - t > 7 * kDay) refuse("timestamp: Meta refuses events over 7 days old (and the whole request holding one)");
  if (t - now > 60 * kSecond) refuse("timestamp: more than 1 minute in the future; Meta refuses events from the future");
  return t / kSecond;
}

std::string skip_reason(const std::string& type) {
  if (type == "identify") return "an identify call: the Conversions API takes events, not profiles";
  if (type == "group") return "a group call: the Conversions API has no groups";
  if (type == "alias") return "an alias call: the Conversions API cannot merge users";
  if (type == "screen") return "a screen call: app events need the app's own data (extinfo), which cdp does not have";
  if (type == "delete") return "a deletion notice: the Conversions API has no deletion";
  return "";
}

rapidjson::Document make_event(const Value& m, const Config& c, Micros now) {
  std::string type = type_of(m);
  rapidjson::Document d(rapidjson::kObjectType);
  Alloc& al = d.GetAllocator();
  put(d, al, "event_name", event_name(m, type));
  d.AddMember("event_time", Value(static_cast<int64_t>(event_time(m, now))), al);
  std::string id = text(m, "messageId");
  if (id.empty()) refuse("messageId: meta_capi sends it as event_id, which deduplicates against the pixel");
  put(d, al, "event_id", id);
  // A segment change is computed, not something the person did on the site.
  bool computed = type == "segment_enter" || type == "segment_exit";
  std::string source = computed ? "system_generated" : c.at("action_source");
  put(d, al, "action_source", source);
  std::string url = first_of(m, {"context.page.url", "properties.url"});
  if (!url.empty()) put(d, al, "event_source_url", url);
  Value user = user_data(m, al);
  if (user.ObjectEmpty())
    refuse("user_data: Meta needs at least one customer parameter (email, phone, userId, name, "
           "context.ip, context.userAgent, fbp or fbc); the message has none");
  if (source == "website" && !user.HasMember("client_user_agent"))
    refuse("context.userAgent: Meta requires client_user_agent for action_source website");
  if (source == "website" && url.empty())
    refuse("context.page.url: Meta requires event_source_url (context.page.url or properties.url) for action_source website");
  d.AddMember("user_data", user, al);
  Value custom = computed ? Value(rapidjson::kObjectType) : custom_data(m, al);
  if (computed) {
    std::string segment = text(m, "segment");
    if (segment.empty()) refuse("segment: a segment change needs the segment's name");
    put(custom, al, "audience_key", segment);
  }
  if (text(d, "event_name") == "Purchase" && !(custom.HasMember("value") && custom.HasMember("currency")))
    refuse("properties.currency: Meta requires a value (revenue, total or value) and a currency for Purchase events");
  if (!custom.ObjectEmpty()) d.AddMember("custom_data", custom, al);
  return d;
}

// Meta's error object ({"error": {...}}), as far as it is there.
struct MetaError {
  int64_t code = 0, subcode = 0;
  bool transient = false;
  std::string text;
};

MetaError meta_error(const std::string& body) {
  MetaError e;
  rapidjson::Document d;
  if (parse_json(d, body).IsError() || !d.IsObject()) return e;
  const Value* err = member_of(d, "error");
  if (!err || !err->IsObject()) return e;
  if (const Value* v = at(*err, "code"); v && v->IsInt64()) e.code = v->GetInt64();
  if (const Value* v = at(*err, "error_subcode"); v && v->IsInt64()) e.subcode = v->GetInt64();
  if (const Value* v = at(*err, "is_transient"); v && v->IsBool()) e.transient = v->GetBool();
  std::string title = text(*err, "error_user_title"), msg = text(*err, "error_user_msg");
  e.text = title.empty() ? text(*err, "message") : title + (msg.empty() ? "" : ": " + msg);
  e.text = "Meta error " + std::to_string(e.code) + (e.subcode ? "/" + std::to_string(e.subcode) : "") + ": " + e.text;
  if (std::string trace = text(*err, "fbtrace_id"); !trace.empty()) e.text += " (fbtrace_id " + trace + ")";
  return e;
}

// Codes Meta documents for rate limits (4, 17, 32, 613) and for trouble on
// its side (1 unknown, 2 temporarily unavailable).
bool retryable(const MetaError& e) {
  for (int64_t code : {1, 2, 4, 17, 32, 613})
    if (e.code == code) return true;
  return e.transient;
}

// "Event Timestamp Too Old" for a request that got stale while it waited
// for a retry: the stale items are dead, the others go again at once.
bool stale_items(Answer& a, const std::vector<const Item*>& items, Micros now, const std::string& why) {
  std::vector<ItemAnswer> out;
  bool any = false;
  for (const Item* item : items) {
    rapidjson::Document d;
    const Value* t = parse_json(d, item->json).IsError() ? nullptr : at(d, "event_time");
    bool stale = t && t->IsInt64() && now / kSecond - t->GetInt64() > 7 * 86'400;
    any |= stale;
    out.push_back(stale ? ItemAnswer{Verdict::Dead, why, 0} : ItemAnswer{Verdict::RetryNow, "", 0});
  }
  if (any) a.items = std::move(out);
  return any;
}

std::string quoted(const std::string& s) { return to_json(Value(rapidjson::StringRef(s.data(), s.size()))); }

class MetaCapi final : public Connector {
 public:
  std::string_view kind() const override { return "meta_capi"; }
  std::string_view default_url() const override { return "https://graph.facebook.com"; }
  // 1,000 events a request (Meta's limit for data). Meta documents no body
  // size limit: 1 MB is ours, room for 1,000 typical events. No fixed rate
  // limit is documented; throttling answers are read instead.
  Caps caps() const override { return {1000, 1 << 20, 0, 0}; }

  Config check_config(const Value& config) const override {
    Config c = string_config(config, {"pixel_id", "access_token", "api_version", "action_source", "test_event_code"},
                             {"pixel_id", "access_token"});
    bool digits = true;
    for (unsigned char ch : c.at("pixel_id")) digits &= std::isdigit(ch) != 0;
    if (!digits) throw Error(ErrorKind::InvalidInput, "pixel_id", "must be the pixel's (dataset's) number, digits only");
    c.try_emplace("api_version", "v21.0");
    if (!version_shape(c.at("api_version")))
      throw Error(ErrorKind::InvalidInput, "api_version", "must be a Graph API version such as v21.0");
    c.try_emplace("action_source", "website");
    bool known = false;
    for (const char* s : kActionSources) known |= c.at("action_source") == s;
    if (!known)
      throw Error(ErrorKind::InvalidInput, "action_source",
                  "must be one of email, website, app, phone_call, chat, physical_store, system_generated, "
                  "business_messaging, other");
    if (auto t = c.find("test_event_code"); t != c.end() && t->second.empty()) c.erase(t);
    return c;
  }
  std::vector<std::string> secrets(const Config& c) const override {
    auto t = c.find("access_token");
    return {t == c.end() ? "" : t->second};
  }

  Mapping map(const Value& m, const Config& c, Micros now) const override {
    try {
      std::string type = type_of(m);
      if (std::string why = skip_reason(type); !why.empty()) return Mapping::skip(why);
      std::string user = text(m, "userId");
      return Mapping::one({to_json(make_event(m, c, now)), "", "", user.empty() ? text(m, "anonymousId") : user});
    } catch (const Refusal& r) {
      return Mapping::reject(r.why);
    } catch (const std::exception& e) {
      return Mapping::reject(std::string("message: cannot be mapped (") + e.what() + ")");
    }
  }

  Request build(const std::vector<const Item*>& items, const Config& c, Micros) const override {
    Request r;
    auto get = [&](const char* key) {
      auto it = c.find(key);
      return it == c.end() ? std::string() : it->second;
    };
    r.path = "/" + get("api_version") + "/" + get("pixel_id") + "/events";
    r.headers = {"Content-Type: application/json"};
    r.body = "{\"data\":[";
    for (size_t i = 0; i < items.size(); i++) r.body += (i ? "," : "") + items[i]->json;
    r.body += "],\"access_token\":" + quoted(get("access_token"));
    if (std::string code = get("test_event_code"); !code.empty()) r.body += ",\"test_event_code\":" + quoted(code);
    r.body += "}";
    return r;
  }

  // 200 {"events_received": n}: all taken. Meta takes or refuses a request
  // whole: a 400 for one event is split until that event is alone.
  Answer read(const Response& r, const std::vector<const Item*>& items, Micros now) const override {
    if (r.status == 0 || r.status == 408 || r.status >= 500 || (r.status >= 200 && r.status < 300))
      return by_status(r);
    MetaError e = meta_error(r.body);
    Answer a;
    a.whole.reason = e.text.empty() ? describe(r) : "HTTP " + std::to_string(r.status) + ": " + e.text;
    if (r.status == 429 || retryable(e)) {
      a.whole.verdict = Verdict::Retry;
      a.outage = true;
      return a;
    }
    a.whole.verdict = Verdict::Dead;
    // A bad token (190) or no permission fails every request: nothing to split.
    if (r.status == 401 || r.status == 403 || e.code == 190) return a;
    if (e.subcode == 2804003 && stale_items(a, items, now, a.whole.reason)) return a;
    a.split = items.size() > 1;
    return a;
  }

 private:
  static bool version_shape(const std::string& v) {  // v<digits>.<digits>
    size_t dot = v.find('.');
    auto digits = [](std::string_view s) {
      if (s.empty()) return false;
      for (unsigned char ch : s)
        if (!std::isdigit(ch)) return false;
      return true;
    };
    return v.size() > 3 && v[0] == 'v' && dot != std::string::npos &&
           digits(std::string_view(v).substr(1, dot - 1)) && digits(std::string_view(v).substr(dot + 1));
  }
};

}  // namespace

const Connector& meta_capi_connector() {
  static const MetaCapi c;
  return c;
}

}  // namespace cdp::connectors
