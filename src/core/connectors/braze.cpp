// kind "braze": Braze's REST API POST /users/track. Identifies become user
// attribute objects (Braze's standard profile fields where it has one, custom
// attributes for the rest), tracks become custom events, "Order Completed"
// becomes one purchase per product (Braze counts revenue from purchases
// only), segment changes add to or remove from the array attribute
// cdp_segments. docs/connectors/braze.md.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/connectors/connector.hpp"
#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp::connectors {
namespace {

using rapidjson::Document;
using rapidjson::Value;

constexpr Micros kSecond = 1000000;
constexpr size_t kMaxName = 255;         // property and attribute names, product ids
constexpr int kMaxPerArray = 75;         // objects per array in one request
constexpr int kMaxQuantity = 100;        // a purchase's quantity
constexpr size_t kMaxEventNested = 100 * 1024;    // event properties holding arrays or objects
constexpr size_t kMaxPurchaseNested = 50 * 1024;  // purchase properties holding arrays or objects
const char* const kArrays[] = {"attributes", "events", "purchases"};

// Whom an object is about: an external_id, or else an alias of the anonymousId.
struct Who {
  std::string id;
  bool alias = false;
};

std::optional<Who> who_of(const Value& m) {
  if (std::string id = text(m, "userId"); !id.empty()) return Who{id, false};
  if (std::string anon = text(m, "anonymousId"); !anon.empty()) return Who{anon, true};
  return std::nullopt;
}

// The identifier members. An alias-only profile exists only if an object
// says _update_existing_only: false, so alias objects always say it.
void add_identity(Document& d, const Who& who) {
  auto& al = d.GetAllocator();
  if (!who.alias) {
    d.AddMember("external_id", Value(who.id.c_str(), al), al);
    return;
  }
  Value alias(rapidjson::kObjectType);
  alias.AddMember("alias_name", Value(who.id.c_str(), al), al);
  alias.AddMember("alias_label", "anonymous_id", al);
  d.AddMember("user_alias", alias, al);
  d.AddMember("_update_existing_only", false, al);
}

Item item(const Document& d, const char* array, const Who& who) { return {to_json(d), "", array, who.id}; }

// The message's time, from the first of its time members that parses.
std::optional<Micros> time_in(const Value& m) {
  for (const char* key : {"timestamp", "at", "receivedAt"})
    if (auto t = parse_iso8601(text(m, key))) return t;
  return std::nullopt;
}

// Braze's rule for a property or custom attribute name, or "" when it keeps it.
std::string name_rule(std::string_view key, bool event) {
  if (key.empty()) return "Braze refuses empty names";
  if (key.size() > kMaxName) return "Braze takes names of at most 255 characters";
  if (key[0] == '$') return "Braze refuses names that start with $";
  if (event && (key == "time" || key == "event_name")) return "is reserved by Braze for events";
  return "";
}

// "" when every top-level name of `props` is one Braze takes and nested
// values stay within `nested_limit`; else the reason, naming the member.
std::string check_properties(const Value& props, const std::string& path, bool event, size_t nested_limit) {
  bool nested = false;
  for (auto p = props.MemberBegin(); p != props.MemberEnd(); ++p) {
    std::string key(string_of(p->name));
    if (std::string rule = name_rule(key, event); !rule.empty()) return path + "." + key + ": " + rule;
    nested |= p->value.IsObject() || p->value.IsArray();
  }
  if (nested && to_json(props).size() > nested_limit)
    return path + ": properties holding arrays or objects may be at most " + std::to_string(nested_limit / 1024) +
           " KB in Braze";
  return "";
}

// Segment spec traits and the Braze standard profile field each becomes.
struct Standard {
  const char* field;
  std::vector<const char*> traits;  // the first present wins; all are consumed
};
const std::vector<Standard>& standards() {
  static const std::vector<Standard> list = {
      {"email", {"email"}},
      {"first_name", {"firstName", "first_name"}},
      {"last_name", {"lastName", "last_name"}},
      {"phone", {"phone"}},
      {"gender", {"gender"}},
      {"dob", {"birthday", "dob"}},
      {"country", {"country", "address.country"}},
      {"home_city", {"city", "home_city", "address.city"}},
      {"language", {"language"}},
      {"time_zone", {"timezone", "time_zone"}},
  };
  return list;
}
// Traits that would change whom the object is about: never sent.
bool identity_key(std::string_view k) {
  return k == "external_id" || k == "braze_id" || k == "user_alias" || k == "alias_name" || k == "alias_label" ||
         k == "_update_existing_only" || k == "push_token_import";
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Braze's gender codes; "" for a value that is none of them (left out).
std::string gender_code(const std::string& g) {
  static const std::map<std::string, std::string> codes = {
      {"m", "M"}, {"male", "M"}, {"man", "M"}, {"f", "F"}, {"female", "F"}, {"woman", "F"},
      {"o", "O"}, {"other", "O"}, {"non-binary", "O"}, {"nonbinary", "O"},
      {"n", "N"}, {"not applicable", "N"}, {"n/a", "N"},
      {"p", "P"}, {"prefer not to say", "P"}};
  auto it = codes.find(lower(g));
  return it == codes.end() ? "" : it->second;
}

// A standard field's value as Braze wants it: "" to leave it out, nullopt
// with `why` set when the value breaks Braze's type.
std::optional<std::string> standard_value(const Standard& s, const Value& v, std::string& why) {
  std::string field = s.field;
  if (field == "phone" && is_number(v)) return to_json(v);  // a phone stored as a number: its digits
  if (!is_string(v)) {
    why = "Braze's " + field + " is a string";
    return std::nullopt;
  }
  std::string value(string_of(v));
  if (field == "gender") return gender_code(value);
  if (field == "dob") {
    // The date as written: converting the instant to UTC could change the day.
    if (value.size() < 10 || !parse_iso8601(value.substr(0, 10))) {
      why = "must be a date (YYYY-MM-DD, optionally with a time): Braze's dob is YYYY-MM-DD";
      return std::nullopt;
    }
    return value.substr(0, 10);
  }
  return value;
}

// identify: one attributes object.
Mapping attributes(const Value& m, const Who& who) {
  Document d(rapidjson::kObjectType);
  auto& al = d.GetAllocator();
  add_identity(d, who);
  const Value* traits = at(m, "traits");
  if (!traits || !traits->IsObject()) return Mapping::one(item(d, "attributes", who));
  std::vector<std::string> consumed;
  for (const Standard& s : standards()) {
    for (const char* path : s.traits) {
      const Value* v = at(*traits, path);
      if (std::string_view(path).find('.') == std::string_view::npos) consumed.emplace_back(path);
      if (!v || v->IsNull() || d.HasMember(s.field)) continue;
      std::string why;
      std::optional<std::string> value = standard_value(s, *v, why);
      if (!value) return Mapping::reject("traits." + std::string(path) + ": " + why);
      if (!value->empty()) d.AddMember(Value(s.field, al), Value(value->c_str(), al), al);
    }
  }
  for (auto t = traits->MemberBegin(); t != traits->MemberEnd(); ++t) {
    std::string key(string_of(t->name));
    if (identity_key(key) || std::find(consumed.begin(), consumed.end(), key) != consumed.end()) continue;
    if (std::string rule = name_rule(key, false); !rule.empty()) return Mapping::reject("traits." + key + ": " + rule);
    d.AddMember(Value(key.c_str(), al), Value(t->value, al), al);
  }
  return Mapping::one(item(d, "attributes", who));
}

// segment_enter / segment_exit: add to or remove from the array attribute cdp_segments.
Mapping segment_change(const Value& m, const Who& who, bool enter) {
  std::string segment = text(m, "segment");
  if (segment.empty()) return Mapping::reject("segment: a segment change needs the segment's name");
  Document d(rapidjson::kObjectType);
  auto& al = d.GetAllocator();
  add_identity(d, who);
  Value names(rapidjson::kArrayType);
  names.PushBack(Value(segment.c_str(), al), al);
  Value change(rapidjson::kObjectType);
  change.AddMember(rapidjson::StringRef(enter ? "add" : "remove"), names, al);
  d.AddMember("cdp_segments", change, al);
  return Mapping::one(item(d, "attributes", who));
}

// Identity, app_id and time: what every event and purchase object starts with.
Document behaviour(const Who& who, const Config& c, Micros t) {
  Document d(rapidjson::kObjectType);
  auto& al = d.GetAllocator();
  add_identity(d, who);
  if (auto app = c.find("app_id"); app != c.end()) d.AddMember("app_id", Value(app->second.c_str(), al), al);
  d.AddMember("time", Value(format_iso8601(t).c_str(), al), al);
  return d;
}

// track, page, screen: one custom event. Page and screen calls add their name
// (and category) to the properties.
Mapping event(const Value& m, const Who& who, const Config& c, Micros t, const std::string& name) {
  Document d = behaviour(who, c, t);
  auto& al = d.GetAllocator();
  d.AddMember("name", Value(name.c_str(), al), al);
  Value props(rapidjson::kObjectType);
  if (const Value* p = at(m, "properties"); p && p->IsObject()) props.CopyFrom(*p, al);
  if (type_of(m) != "track") {
    for (const char* key : {"name", "category"}) {
      const Value* v = at(m, key);
      if (!v || !v->IsString()) continue;
      props.RemoveMember(key);
      props.AddMember(Value(key, al), Value(*v, al), al);
    }
  }
  if (std::string why = check_properties(props, "properties", true, kMaxEventNested); !why.empty())
    return Mapping::reject(why);
  if (props.MemberCount()) d.AddMember("properties", props, al);
  return Mapping::one(item(d, "events", who));
}

// The first member of `obj` among `keys` that is a number, or nullptr; `key` says which.
const Value* number_of(const Value& obj, std::initializer_list<const char*> keys, std::string& key) {
  for (const char* k : keys) {
    const Value* v = member_of(obj, k);
    if (v && is_number(*v)) {
      key = k;
      return v;
    }
  }
  return nullptr;
}

// An id member as text (a number as its digits); "" when absent, empty or not a string or number.
std::string id_of(const Value& obj, const char* key) {
  const Value* v = member_of(obj, key);
  if (!v) return "";
  if (is_string(*v)) return std::string(string_of(*v));
  return is_number(*v) ? to_json(*v) : "";
}

// One purchase object to be: its properties are `fields` but for `drop`,
// with the order's id added when `fields` lack one.
struct Purchase {
  std::string path;  // where `fields` are in the message, for reasons
  std::string product_id;
  const Value* price = nullptr;
  int quantity = 1;
  const Value* fields = nullptr;
  std::vector<std::string> drop;
  const Value* order_id = nullptr;
};

Mapping purchase_items(const std::vector<Purchase>& list, const Who& who, const Config& c, Micros t,
                       const std::string& currency) {
  Mapping out;
  for (const Purchase& p : list) {
    Document d = behaviour(who, c, t);
    auto& al = d.GetAllocator();
    d.AddMember("product_id", Value(p.product_id.c_str(), al), al);
    d.AddMember("currency", Value(currency.c_str(), al), al);
    d.AddMember("price", Value(*p.price, al), al);
    d.AddMember("quantity", p.quantity, al);
    Value props(rapidjson::kObjectType);
    for (auto f = p.fields->MemberBegin(); f != p.fields->MemberEnd(); ++f)
      if (std::find(p.drop.begin(), p.drop.end(), std::string(string_of(f->name))) == p.drop.end())
        props.AddMember(Value(f->name, al), Value(f->value, al), al);
    if (p.order_id && !props.HasMember("order_id")) props.AddMember("order_id", Value(*p.order_id, al), al);
    if (std::string why = check_properties(props, p.path, false, kMaxPurchaseNested); !why.empty())
      return Mapping::reject(why);
    if (props.MemberCount()) d.AddMember("properties", props, al);
    out.items.push_back(item(d, "purchases", who));
  }
  return out;
}

// A product's quantity: 1 when absent, else a whole number from 1 to 100.
std::optional<int> quantity_of(const Value& product) {
  const Value* q = member_of(product, "quantity");
  if (!q) return 1;
  if (!q->IsNumber()) return std::nullopt;
  double n = q->GetDouble();
  if (n != static_cast<double>(static_cast<int64_t>(n)) || n < 1 || n > kMaxQuantity) return std::nullopt;
  return static_cast<int>(n);
}

// A product of an order as a purchase, or the reason it cannot be one.
std::optional<Purchase> product(const Value& p, const std::string& path, std::string& why) {
  if (!p.IsObject()) {
    why = path + ": must be an object";
    return std::nullopt;
  }
  Purchase one{path, "", nullptr, 1, &p, {"price", "quantity"}, nullptr};
  for (const char* key : {"product_id", "sku", "name"}) {
    if ((one.product_id = id_of(p, key)).empty()) continue;
    one.drop.emplace_back(key);
    break;
  }
  if (one.product_id.empty()) why = path + ": Braze needs a product_id (product_id, sku or name)";
  else if (one.product_id.size() > kMaxName) why = path + ": Braze takes product ids of at most 255 characters";
  else if (!(one.price = member_of(p, "price")) || !is_number(*one.price)) why = path + ".price: Braze needs a price (a number)";
  else if (std::optional<int> q = quantity_of(p)) one.quantity = *q;
  else why = path + ".quantity: Braze takes a whole number from 1 to 100";
  if (!why.empty()) return std::nullopt;
  return one;
}

// "Order Completed": one purchase per product, or one for the whole order.
Mapping order(const Value& m, const Who& who, const Config& c, Micros t) {
  static const Value empty(rapidjson::kObjectType);
  const Value* props = at(m, "properties");
  if (!props || !props->IsObject()) props = &empty;
  std::string currency = "USD";
  if (const Value* cur = member_of(*props, "currency")) {
    currency = is_string(*cur) ? std::string(string_of(*cur)) : "";
    bool letters = currency.size() == 3 && std::all_of(currency.begin(), currency.end(), [](char ch) {
      return std::isalpha(static_cast<unsigned char>(ch));
    });
    if (!letters) return Mapping::reject("properties.currency: Braze needs a 3-letter ISO 4217 currency code");
    for (char& ch : currency) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  }
  const Value* order_id = member_of(*props, "order_id");
  const Value* products = member_of(*props, "products");
  std::vector<Purchase> list;
  if (products && products->IsArray() && !products->Empty()) {
    if (products->Size() > static_cast<rapidjson::SizeType>(kMaxPerArray))
      return Mapping::reject("properties.products: more than 75 products; a /users/track request holds at most 75 purchases");
    for (rapidjson::SizeType i = 0; i < products->Size(); i++) {
      std::string why;
      std::optional<Purchase> one = product((*products)[i], "properties.products[" + std::to_string(i) + "]", why);
      if (!one) return Mapping::reject(why);
      one->order_id = order_id;  // the products of one order can be told apart
      list.push_back(std::move(*one));
    }
    return purchase_items(list, who, c, t, currency);
  }
  Purchase whole{"properties", "order", nullptr, 1, props, {"products", "currency"}, nullptr};
  if (std::string id = id_of(*props, "order_id"); !id.empty() && id.size() <= kMaxName) {
    whole.product_id = id;
    whole.drop.emplace_back("order_id");
  }
  std::string key;
  if (!(whole.price = number_of(*props, {"revenue", "total"}, key)))
    return Mapping::reject("properties.revenue: Braze needs a price: the order's revenue or total (a number), or products");
  whole.drop.push_back(key);
  return purchase_items({whole}, who, c, t, currency);
}

// The Unix seconds of X-RateLimit-Reset (or the seconds of Retry-After) as a delay from `now`.
Micros reset_delay(const Response& r, Micros now) {
  auto number = [](const std::string& s) -> std::optional<int64_t> {
    int64_t n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return n;
  };
  constexpr Micros kHour = 3600 * kSecond;
  if (auto reset = number(r.rate_limit_reset); reset && *reset < kLatest / kSecond)
    return std::clamp(*reset * kSecond - now, Micros{0}, kHour);
  if (auto after = number(r.retry_after); after && *after >= 0) return std::min(*after, kHour / kSecond) * kSecond;
  return 0;
}

class Braze final : public Connector {
 public:
  std::string_view kind() const override { return "braze"; }
  // Each Braze instance has its own REST endpoint (rest.iad-01.braze.com, rest.fra-01.braze.eu, ...).
  std::string_view default_url() const override { return ""; }
  // 75 objects per array (per request: 75 attributes, 75 events, 75
  // purchases); 4,000,000 bytes, under the 4 MB Braze's user data endpoints
  // take (413 above); 3,000 requests per 3 seconds per workspace.
  Caps caps() const override { return {kMaxPerArray, 4000000, 0, 1000}; }
  Config check_config(const Value& config) const override {
    Config c = string_config(config, {"api_key", "app_id"}, {"api_key"});
    if (auto app = c.find("app_id"); app != c.end() && app->second.empty())
      throw Error(ErrorKind::InvalidInput, "app_id", "must not be empty (leave it out to send no app_id)");
    return c;
  }
  std::vector<std::string> secrets(const Config& c) const override { return {c.at("api_key")}; }

  Mapping map(const Value& m, const Config& c, Micros) const override {
    try {
      return map_message(m, c);
    } catch (const std::exception& e) {
      return Mapping::reject(std::string("the message could not be mapped: ") + e.what());
    }
  }

  // Items in request order within each array, so that an error's
  // input_array and index name the item again in read().
  Request build(const std::vector<const Item*>& items, const Config& c, Micros) const override {
    Request r;
    r.path = "/users/track";
    r.headers = {"Content-Type: application/json", "Authorization: Bearer " + c.at("api_key")};
    r.body = "{";
    for (const char* array : kArrays) {
      std::string list;
      for (const Item* i : items)
        if (i->array == array) list += (list.empty() ? "" : ",") + i->json;
      if (!list.empty()) r.body += (r.body.size() > 1 ? ",\"" : "\"") + std::string(array) + "\":[" + list + "]";
    }
    r.body += "}";
    return r;
  }

  Answer read(const Response& r, const std::vector<const Item*>& items, Micros now) const override {
    try {
      if (r.status >= 200 && r.status < 300) return listed(r, items, Verdict::Delivered);
      if (r.status == 400 || r.status == 413) return refused(r, items);
      if (r.status == 429) {
        Answer a;
        a.whole = {Verdict::Retry, describe(r), reset_delay(r, now)};
        a.outage = true;  // the workspace's limit: every request waits
        return a;
      }
      return by_status(r);  // 401, 403, 404: a bad key, dead; 5xx and no answer retried
    } catch (const std::exception& e) {
      Answer a;
      a.whole = {Verdict::Retry, std::string("the answer could not be read: ") + e.what(), 0};
      return a;
    }
  }

 private:
  static Mapping map_message(const Value& m, const Config& c) {
    std::string type = type_of(m);
    if (type == "delete") return Mapping::skip("a deletion notice: Braze deletes users with /users/delete, not /users/track");
    if (type == "group") return Mapping::skip("a group call: /users/track has no groups");
    if (type == "alias") return Mapping::skip("an alias call: Braze merges users with /users/identify, not /users/track");
    bool known = type == "identify" || type == "track" || type == "page" || type == "screen" ||
                 type == "segment_enter" || type == "segment_exit";
    if (!known) return Mapping::skip("a message of type \"" + type + "\": /users/track has no counterpart");
    std::optional<Who> who = who_of(m);
    if (!who) return Mapping::reject("userId: Braze needs an external_id (userId) or a user alias (anonymousId)");
    if (type == "identify") return attributes(m, *who);
    if (type == "segment_enter" || type == "segment_exit") return segment_change(m, *who, type == "segment_enter");
    std::optional<Micros> t = time_in(m);
    if (!t) return Mapping::reject("timestamp: Braze needs the event's time (an ISO-8601 date-time)");
    if (type == "page") return event(m, *who, c, *t, "Page Viewed");
    if (type == "screen") return event(m, *who, c, *t, "Screen Viewed");
    std::string name = text(m, "event");
    if (name.empty()) return Mapping::reject("event: a track call needs an event name");
    if (name == "Order Completed") return order(m, *who, c, *t);
    return event(m, *who, c, *t, name);
  }

  // Which request item an error's input_array and index name; -1 for none.
  static long item_at(const std::vector<const Item*>& items, std::string_view array, uint64_t index) {
    for (size_t i = 0; i < items.size(); i++)
      if (items[i]->array == array && index-- == 0) return static_cast<long>(i);
    return -1;
  }

  // The answer's "errors" that name an item, each made Dead with Braze's
  // words; the other items get `rest`. Empty when none names an item.
  static std::vector<ItemAnswer> errors_of(const Response& r, const std::vector<const Item*>& items, Verdict rest) {
    Document d;
    if (parse_json(d, r.body).IsError() || !d.IsObject()) return {};
    const Value* errors = member_of(d, "errors");
    if (!errors || !errors->IsArray()) return {};
    std::vector<ItemAnswer> out(items.size(), ItemAnswer{rest, "", 0});
    bool any = false;
    for (const Value& e : errors->GetArray()) {
      if (!e.IsObject()) continue;
      const Value* array = member_of(e, "input_array");
      const Value* index = member_of(e, "index");
      if (!array || !array->IsString() || !index || !index->IsUint64()) continue;
      long i = item_at(items, string_of(*array), index->GetUint64());
      if (i < 0) continue;
      const Value* type = member_of(e, "type");
      out[static_cast<size_t>(i)] = {Verdict::Dead, type && type->IsString() ? std::string(string_of(*type)) : to_json(e), 0};
      any = true;
    }
    return any ? out : std::vector<ItemAnswer>{};
  }

  // 2xx: Braze took every object but those its "errors" list. Errors that
  // name no item cannot be told apart: the rest was processed, and events are
  // not deduplicated, so nothing is sent again.
  static Answer listed(const Response& r, const std::vector<const Item*>& items, Verdict rest) {
    Answer a;
    a.items = errors_of(r, items, rest);
    return a;
  }

  // 400 (a body Braze will not process) and 413: nothing was processed. The
  // objects its "errors" name are dead and the rest is sent again at once;
  // when it names none, the request is split to find the bad object.
  static Answer refused(const Response& r, const std::vector<const Item*>& items) {
    Answer a;
    if (items.size() > 1) a.items = errors_of(r, items, Verdict::RetryNow);
    if (!a.items.empty()) return a;
    a.whole = {Verdict::Dead, describe(r), 0};
    a.split = items.size() > 1;
    return a;
  }
};

}  // namespace

const Connector& braze_connector() {
  static const Braze c;
  return c;
}

}  // namespace cdp::connectors
