#include "core/computed.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp::computed {
namespace {

using rapidjson::Value;

constexpr Micros kSecond = 1000000;
constexpr Micros kMinute = 60 * kSecond, kHour = 60 * kMinute, kDay = 24 * kHour;
constexpr int64_t kMaxDays = 36500;
constexpr size_t kMaxUniqueLimit = 1000;

[[noreturn]] void fail(std::string path, const std::string& rule) {
  throw Error(ErrorKind::InvalidInput, std::move(path), rule);
}

std::string_view view_of(const Value& v) { return string_of(v); }
const Value* member(const Value& obj, const char* key) { return member_of(obj, key); }

std::string non_empty(const Value& v, const char* path, const char* what) {
  if (!v.IsString() || v.GetStringLength() == 0) fail(path, std::string("must be a non-empty string (") + what + ")");
  return std::string(view_of(v));
}

std::optional<Kind> parse_kind(std::string_view s) {
  for (Kind k : {Kind::Count, Kind::Sum, Kind::Min, Kind::Max, Kind::Avg, Kind::First, Kind::Last,
                 Kind::MostFrequent, Kind::Unique})
    if (s == kind_name(k)) return k;
  return std::nullopt;
}

bool numeric(Kind k) { return k == Kind::Sum || k == Kind::Min || k == Kind::Max || k == Kind::Avg; }

// Window/100 in whole seconds, at least one second.
Micros bucket_width(Micros window) {
  if (window == 0) return 0;
  return std::max<Micros>(kSecond, window / 100 / kSecond * kSecond);
}

// The number compared the way Postgres prints it back: doubles only.
std::optional<double> number_of(const Value* v) {
  if (!v || !v->IsNumber()) return std::nullopt;
  double d = v->GetDouble();
  if (!std::isfinite(d)) return std::nullopt;
  return d;
}

template <typename F>
std::string write_json(F&& body) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  body(w);
  return std::string(buf.GetString(), buf.GetSize());
}

// first/last: is (t, id) a better pick than the bucket's?
bool better(Kind k, Micros t, int64_t id, const Bucket& b) {
  if (b.count == 0) return true;
  if (k == Kind::First) return t < b.at || (t == b.at && id < b.event_id);
  return t > b.at || (t == b.at && id > b.event_id);
}

// unique: keeps the `limit` most recently seen values (ties: the smaller value).
void trim_unique(std::map<std::string, int64_t>& values, size_t limit) {
  while (values.size() > limit) {
    auto worst = values.begin();
    for (auto it = values.begin(); it != values.end(); ++it)
      if (it->second < worst->second || (it->second == worst->second && it->first > worst->first)) worst = it;
    values.erase(worst);
  }
}

Bucket& bucket_for(const Definition& d, State& s, Micros start) {
  auto it = std::lower_bound(s.buckets.begin(), s.buckets.end(), start,
                             [](const Bucket& b, Micros t) { return b.start < t; });
  if (it == s.buckets.end() || it->start != start) {
    it = s.buckets.insert(it, Bucket{});
    it->start = start;
    if (d.kind == Kind::Min) it->number = INFINITY;
    if (d.kind == Kind::Max) it->number = -INFINITY;
  }
  return *it;
}

// Folds bucket `o` into `b` (same start).
void combine(const Definition& d, Bucket& b, const Bucket& o) {
  switch (d.kind) {
    case Kind::Count:
      break;
    case Kind::Sum:
    case Kind::Avg:
      b.number += o.number;
      break;
    case Kind::Min:
      b.number = std::min(b.number, o.number);
      break;
    case Kind::Max:
      b.number = std::max(b.number, o.number);
      break;
    case Kind::First:
    case Kind::Last:
      if (o.count > 0 && better(d.kind, o.at, o.event_id, b)) {
        b.at = o.at;
        b.event_id = o.event_id;
        b.value = o.value;
      }
      break;
    case Kind::MostFrequent:
      for (auto& [v, n] : o.values) {
        auto it = b.values.find(v);
        if (it != b.values.end()) it->second += n;
        else if (b.values.size() < kMaxDistinct) b.values.emplace(v, n);
      }
      break;
    case Kind::Unique:
      for (auto& [v, t] : o.values) {
        auto [it, fresh] = b.values.emplace(v, t);
        if (!fresh) it->second = std::max(it->second, t);
      }
      trim_unique(b.values, d.limit);
      break;
  }
  b.count += o.count;
}

}  // namespace

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Count: return "count";
    case Kind::Sum: return "sum";
    case Kind::Min: return "min";
    case Kind::Max: return "max";
    case Kind::Avg: return "avg";
    case Kind::First: return "first";
    case Kind::Last: return "last";
    case Kind::MostFrequent: return "most_frequent";
    case Kind::Unique: return "unique";
  }
  return "count";
}

Definition Definition::compile(const Value& def) {
  if (!def.IsObject()) fail("", "a computed trait definition must be a JSON object such as {\"kind\": \"count\", \"event\": \"Order Completed\"}");
  static constexpr const char* kKeys[] = {"kind", "type", "event", "property", "within", "where", "limit"};
  for (auto m = def.MemberBegin(); m != def.MemberEnd(); ++m) {
    std::string_view k = view_of(m->name);
    if (std::find_if(std::begin(kKeys), std::end(kKeys), [&](const char* a) { return k == a; }) == std::end(kKeys))
      fail(std::string(k), "unknown key: a definition has kind, type, event, property, within, where and limit");
  }
  Definition d;
  const Value* kind = member(def, "kind");
  const char* kinds = "must be one of count, sum, min, max, avg, first, last, most_frequent, unique";
  if (!kind) fail("kind", std::string("missing: ") + kinds);
  std::optional<Kind> k = kind->IsString() ? parse_kind(view_of(*kind)) : std::nullopt;
  if (!k) fail("kind", kinds);
  d.kind = *k;

  if (const Value* type = member(def, "type")) {
    std::optional<MessageType> t = type->IsString() ? parse_message_type(view_of(*type)) : std::nullopt;
    if (!t || *t == MessageType::Alias) fail("type", "must be one of track, page, screen, identify, group");
    d.type = *t;
  }
  if (const Value* event = member(def, "event")) d.event = non_empty(*event, "event", "the event's name");

  const Value* property = member(def, "property");
  if (d.kind == Kind::Count) {
    if (property) fail("property", "count takes no property (it counts events)");
  } else {
    if (!property) fail("property", std::string("missing: ") + kind_name(d.kind) + " reads an event property");
    d.property = non_empty(*property, "property", "the property's name, a dotted path into properties");
  }

  if (const Value* limit = member(def, "limit")) {
    if (d.kind != Kind::Unique) fail("limit", "only unique takes a limit");
    if (!limit->IsInt64() || limit->GetInt64() < 1 || limit->GetInt64() > int64_t(kMaxUniqueLimit))
      fail("limit", "must be a whole number from 1 to " + std::to_string(kMaxUniqueLimit));
    d.limit = static_cast<size_t>(limit->GetInt64());
  }

  if (const Value* w = member(def, "within")) {
    if (!w->IsObject() || w->MemberCount() != 1)
      fail("within", "must be an object with one key: days, hours or minutes, such as {\"days\": 30}");
    auto m = w->MemberBegin();
    std::string_view unit = view_of(m->name);
    Micros micros = unit == "days" ? kDay : unit == "hours" ? kHour : unit == "minutes" ? kMinute : 0;
    std::string path = "within." + std::string(unit);
    if (!micros) fail(path, "unknown key: a window is one of days, hours, minutes");
    int64_t hi = kMaxDays * kDay / micros;
    if (!m->value.IsInt64() || m->value.GetInt64() < 1 || m->value.GetInt64() > hi)
      fail(path, "must be a whole number from 1 to " + std::to_string(hi));
    d.window = m->value.GetInt64() * micros;
    d.bucket = bucket_width(d.window);
  }

  std::string where_json = "[]";
  if (const Value* where = member(def, "where")) {
    // The segment compiler owns the property-condition language; a rule with
    // only this condition gives the same paths ("where[0].op").
    rapidjson::Document rule;
    rule.SetObject();
    rule.AddMember("event", "x", rule.GetAllocator());
    rule.AddMember("where", Value(*where, rule.GetAllocator()), rule.GetAllocator());
    segments::Rule r = segments::Rule::compile(rule);
    d.where = r.event_conditions().at(0).where;
    rapidjson::Document key;
    key.Parse(r.event_conditions()[0].key.c_str());
    where_json = to_json(key["where"]);
  }

  d.key = write_json([&](auto& w) {
    w.StartObject();
    w.Key("kind");
    w.String(kind_name(d.kind));
    w.Key("type");
    if (d.type) w.String(message_type_name(*d.type));
    else w.Null();
    w.Key("event");
    if (d.event) w.String(d.event->data(), static_cast<rapidjson::SizeType>(d.event->size()));
    else w.Null();
    w.Key("property");
    w.String(d.property.data(), static_cast<rapidjson::SizeType>(d.property.size()));
    w.Key("window_us");
    w.Int64(d.window);
    w.Key("limit");
    w.Uint64(d.kind == Kind::Unique ? d.limit : 0);
    w.Key("where");
    w.RawValue(where_json.data(), where_json.size(), rapidjson::kArrayType);
    w.EndObject();
  });
  return d;
}

Definition Definition::compile(std::string_view json_text) {
  rapidjson::Document doc;
  // No field: the caller names the definition (Audience: "computed_traits.NAME.definition").
  if (parse_json(doc, json_text).IsError()) throw Error(ErrorKind::MalformedJson, "", "the definition is not valid JSON");
  return compile(doc);
}

Definition Definition::counter(const segments::EventCondition& c) {
  Definition d;
  d.kind = Kind::Count;
  d.type = c.type;
  d.event = c.event;
  d.where = c.where;
  d.window = c.window;
  d.bucket = bucket_width(c.window);
  d.key = "{\"counter\":" + c.key + "}";
  return d;
}

bool Definition::matches(const EventInput& e) const noexcept {
  if (type && e.type != *type) return false;
  if (event && e.name != *event) return false;
  for (const segments::PropertyFilter& f : where)
    if (!f.cmp.test(segments::find_path(e.properties, f.property), 0)) return false;
  if (kind == Kind::Count) return true;
  const Value* v = segments::find_path(e.properties, property);
  if (!v || v->IsNull()) return false;
  return !numeric(kind) || number_of(v).has_value();
}

Micros Definition::bucket_start(Micros t) const noexcept {
  if (bucket == 0) return 0;
  Micros q = t / bucket;
  if (t % bucket < 0) q--;  // floor for times before 1970
  return q * bucket;
}

void fold(const Definition& d, State& s, const EventInput& in) {
  EventInput e = in;
  e.time = clamp_time(e.time);  // 'infinity' or year 0 from a direct insert: no overflow below
  Bucket& b = bucket_for(d, s, d.bucket_start(e.time));
  const Value* v = d.kind == Kind::Count ? nullptr : segments::find_path(e.properties, d.property);
  switch (d.kind) {
    case Kind::Count:
      break;
    case Kind::Sum:
    case Kind::Avg:
      b.number += *number_of(v);
      break;
    case Kind::Min:
      b.number = std::min(b.number, *number_of(v));
      break;
    case Kind::Max:
      b.number = std::max(b.number, *number_of(v));
      break;
    case Kind::First:
    case Kind::Last:
      if (better(d.kind, e.time, e.id, b)) {
        b.at = e.time;
        b.event_id = e.id;
        b.value = to_json(*v);
      }
      break;
    case Kind::MostFrequent: {
      std::string key = to_json(*v);
      auto it = b.values.find(key);
      if (it != b.values.end()) it->second++;
      else if (b.values.size() < kMaxDistinct) b.values.emplace(std::move(key), 1);
      break;
    }
    case Kind::Unique: {
      auto [it, fresh] = b.values.emplace(to_json(*v), e.time);
      if (!fresh) it->second = std::max(it->second, e.time);
      trim_unique(b.values, d.limit);
      break;
    }
  }
  b.count++;
}

void merge(const Definition& d, State& s, const State& other) {
  for (const Bucket& o : other.buckets) combine(d, bucket_for(d, s, o.start), o);
}

void expire(const Definition& d, State& s, Micros now) {
  if (d.window == 0) return;
  auto live = std::find_if(s.buckets.begin(), s.buckets.end(), [&](const Bucket& b) { return d.live(b.start, now); });
  s.buckets.erase(s.buckets.begin(), live);
}

std::optional<Micros> next_expiry(const Definition& d, const State& s) {
  if (d.window == 0 || s.buckets.empty()) return std::nullopt;
  Micros start = clamp_time(s.buckets.front().start);  // as read back: any value
  return start + d.window;
}

int64_t count(const Definition& d, const State& s, Micros now) {
  int64_t n = 0;
  for (const Bucket& b : s.buckets)
    if (d.live(b.start, now)) n += b.count;
  return n;
}

// 15 significant digits: a sum of decimals can differ in the 17th digit
// with the order it was added in (0.1 + 0.2 + 0.3), and the value must not.
std::string number_text(double x) {
  if (x == std::trunc(x) && std::fabs(x) < 9.0e15) return std::to_string(static_cast<int64_t>(x));
  char buf[32];
  snprintf(buf, sizeof buf, "%.15g", x);
  return buf;
}

std::string value(const Definition& d, const State& s, Micros now) {
  Bucket total;
  total.start = 0;
  if (d.kind == Kind::Min) total.number = INFINITY;
  if (d.kind == Kind::Max) total.number = -INFINITY;
  for (const Bucket& b : s.buckets)
    if (d.live(b.start, now)) combine(d, total, b);
  auto number = [](double x) { return number_text(x); };
  switch (d.kind) {
    case Kind::Count:
      return std::to_string(total.count);
    case Kind::Sum:
      return number(total.number);
    case Kind::Min:
    case Kind::Max:
      return total.count ? number(total.number) : "null";
    case Kind::Avg:
      return total.count ? number(total.number / double(total.count)) : "null";
    case Kind::First:
    case Kind::Last:
      return total.count ? total.value : "null";
    case Kind::MostFrequent: {
      const std::string* best = nullptr;
      int64_t n = 0;
      for (auto& [v, c] : total.values)  // sorted: the smaller value wins ties
        if (c > n) best = &v, n = c;
      return best ? *best : "null";
    }
    case Kind::Unique: {
      std::vector<std::pair<int64_t, const std::string*>> order;  // most recent first
      for (auto& [v, t] : total.values) order.emplace_back(t, &v);
      std::sort(order.begin(), order.end(), [](auto& a, auto& b) {
        return a.first != b.first ? a.first > b.first : *a.second < *b.second;
      });
      std::string out = "[";
      for (size_t i = 0; i < order.size(); i++) out += (i ? "," : "") + *order[i].second;
      return out + "]";
    }
  }
  return "null";
}

// State layout: an array of buckets, each an array:
//   count [start, n]; sum/avg/min/max [start, n, number];
//   first/last [start, n, at, event_id, "value json"];
//   most_frequent/unique [start, n, {"value json": count or latest time}]
void write_state(const Definition& d, const State& s, std::string& out) {
  out = write_json([&](auto& w) {
    w.StartArray();
    for (const Bucket& b : s.buckets) {
      w.StartArray();
      w.Int64(b.start);
      w.Int64(b.count);
      if (numeric(d.kind)) w.Double(b.number);
      if (d.kind == Kind::First || d.kind == Kind::Last) {
        w.Int64(b.at);
        w.Int64(b.event_id);
        w.String(b.value.data(), static_cast<rapidjson::SizeType>(b.value.size()));
      }
      if (d.kind == Kind::MostFrequent || d.kind == Kind::Unique) {
        w.StartObject();
        for (auto& [v, n] : b.values) {
          w.Key(v.data(), static_cast<rapidjson::SizeType>(v.size()));
          w.Int64(n);
        }
        w.EndObject();
      }
      w.EndArray();
    }
    w.EndArray();
  });
}

State read_state(const Definition& d, const Value& v) {
  auto bad = [] { throw Error(ErrorKind::InvalidInput, "state", "is not a state this version wrote"); };
  State s;
  if (!v.IsArray()) bad();
  for (const Value& e : v.GetArray()) {
    if (!e.IsArray() || e.Size() < 2 || !e[0].IsInt64() || !e[1].IsInt64()) bad();
    Bucket b;
    b.start = e[0].GetInt64();
    b.count = e[1].GetInt64();
    if (numeric(d.kind)) {
      if (e.Size() != 3 || !e[2].IsNumber()) bad();
      b.number = e[2].GetDouble();
    } else if (d.kind == Kind::First || d.kind == Kind::Last) {
      if (e.Size() != 5 || !e[2].IsInt64() || !e[3].IsInt64() || !e[4].IsString()) bad();
      b.at = e[2].GetInt64();
      b.event_id = e[3].GetInt64();
      b.value.assign(e[4].GetString(), e[4].GetStringLength());
    } else if (d.kind == Kind::MostFrequent || d.kind == Kind::Unique) {
      if (e.Size() != 3 || !e[2].IsObject()) bad();
      for (auto m = e[2].MemberBegin(); m != e[2].MemberEnd(); ++m) {
        if (!m->value.IsInt64()) bad();
        b.values.emplace(std::string(m->name.GetString(), m->name.GetStringLength()), m->value.GetInt64());
      }
    } else if (e.Size() != 2) {
      bad();
    }
    if (!s.buckets.empty() && s.buckets.back().start >= b.start) bad();
    s.buckets.push_back(std::move(b));
  }
  return s;
}

}  // namespace cdp::computed
