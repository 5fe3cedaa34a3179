#include "core/tracking_plan.hpp"

#include <unordered_set>

#include <rapidjson/error/en.h>

#include "core/error.hpp"
#include "core/json_util.hpp"
#include "core/message.hpp"

namespace cdp::plans {
namespace {

using rapidjson::Value;

constexpr const char* kTypeNames[] = {"Unplanned-Event", "Required-Missing", "Datatype-Mismatch",
                                      "Additional-Properties", "Unknown-Violation"};

// A key as a path segment: events.Signed Up stays readable; only "." and "["
// would make the path ambiguous, and a key holding one is quoted.
std::string path_key(std::string_view parent, std::string_view key) {
  std::string out(parent);
  if (key.find_first_of(".[]\"") == std::string_view::npos && !key.empty()) {
    if (!out.empty()) out += '.';
    out += key;
  } else {
    rapidjson::Value k(key.data(), static_cast<rapidjson::SizeType>(key.size()));
    out += '[' + to_json(k) + ']';
  }
  return out;
}

// A JSON Pointer reference token: "~" and "/" escaped.
std::string pointer_token(std::string_view key) {
  std::string out;
  for (char c : key) out += c == '~' ? "~0" : c == '/' ? "~1" : std::string(1, c);
  return out;
}

std::shared_ptr<const schema::Schema> schema_at(const Value& doc, const char* member, const std::string& where) {
  auto it = doc.FindMember(member);
  if (it == doc.MemberEnd() || it->value.IsNull()) return nullptr;
  return schema::Schema::compile(it->value, where);
}

std::string json_type(const Value& v) {
  if (is_number(v)) {
    if (v.IsInt64() || v.IsUint64()) return "integer";
    auto raw = raw_number(v);
    return raw && raw->find_first_of(".eE") == std::string_view::npos ? "integer" : "number";
  }
  if (v.IsString()) return "string";
  if (v.IsObject()) return "object";
  if (v.IsArray()) return "array";
  if (v.IsBool()) return "boolean";
  return "null";
}

ViolationType type_of(const std::string& keyword) {
  if (keyword == "required") return ViolationType::RequiredMissing;
  if (keyword == "type") return ViolationType::DatatypeMismatch;
  if (keyword == "additionalProperties") return ViolationType::AdditionalProperties;
  return ViolationType::Unknown;
}

// The object member of a message that planned keys are looked up in.
const char* planned_member(MessageType t) {
  return t == MessageType::Track ? "properties" : (t == MessageType::Identify || t == MessageType::Group) ? "traits" : nullptr;
}

void add(Verdict& v, Violation x) {
  if (v.violations.size() < kMaxViolations) v.violations.push_back(std::move(x));
}

// Where a schema sits in the plan, as a JSON Pointer: "#/events/<name>",
// "#/identify". Made only when a violation needs it.
struct Where {
  const char* part;       // "#/events/", "#/identify", ...
  std::string_view name;  // the event's, for "#/events/"
  std::string text() const { return part + pointer_token(name); }
};

void add_schema_violations(Verdict& v, const schema::Schema& s, const Value& msg, const Where& where,
                           const std::unordered_set<std::string>& omitted) {
  std::vector<schema::Violation> found;
  if (s.validate(msg, &found, kMaxViolations)) return;
  const std::string base = where.text();
  for (auto& f : found) {
    if (f.keyword == "additionalProperties" && omitted.count(f.instance_path)) continue;  // already said
    std::string rule = base;
    rule += f.schema_path.size() > 1 ? f.schema_path.substr(1) : "";  // "#/properties/x" -> ".../properties/x"
    add(v, {type_of(f.keyword), f.instance_path, std::move(rule), f.message, f.value_type});
  }
}

// Rewrites an object's JSON text without the given keys.
std::string without_keys(const std::string& json, const std::unordered_set<std::string>& keys) {
  rapidjson::Document d;
  parse_json(d, json, Numbers::Exact);
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  w.StartObject();
  for (auto& m : d.GetObject()) {
    if (keys.count(std::string(m.name.GetString(), m.name.GetStringLength()))) continue;
    w.Key(m.name.GetString(), m.name.GetStringLength());
    m.value.Accept(w);
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

// context with "violations": [{type, path, rule, message}] (replacing any sent).
std::string with_violations(const std::string& context, const Verdict& v) {
  rapidjson::Document d;
  if (context.empty() || parse_json(d, context, Numbers::Exact).IsError() || !d.IsObject()) d.SetObject();
  auto& a = d.GetAllocator();
  d.RemoveMember("violations");
  Value list(rapidjson::kArrayType);
  for (auto& x : v.violations) {
    Value o(rapidjson::kObjectType);
    o.AddMember("type", Value(violation_type_name(x.type), a), a);
    o.AddMember("path", Value(x.path.c_str(), a), a);
    o.AddMember("rule", Value(x.rule.c_str(), a), a);
    o.AddMember("message", Value(x.message.c_str(), a), a);
    list.PushBack(o, a);
  }
  d.AddMember("violations", list, a);
  return to_json(d);
}

// The message as the plan sees it: an identify whose traits arrived only in
// context.traits (RudderStack's SDKs) is checked with them as "traits".
const Value& plan_view(const Value& msg, const Event& e, std::unique_ptr<rapidjson::Document>& copy) {
  if (e.type != MessageType::Identify || e.traits.empty() || msg.HasMember("traits")) return msg;
  copy = std::make_unique<rapidjson::Document>();
  copy->CopyFrom(msg, copy->GetAllocator());
  rapidjson::Document traits(&copy->GetAllocator());
  parse_json(traits, e.traits, Numbers::Exact);
  copy->AddMember("traits", Value(traits, copy->GetAllocator()), copy->GetAllocator());
  return *copy;
}

}  // namespace

const char* violation_type_name(ViolationType t) { return kTypeNames[static_cast<int>(t)]; }

std::shared_ptr<const Plan> Plan::compile(const Value& doc) {
  if (!doc.IsObject()) throw Error(ErrorKind::InvalidInput, "plan", "must be a JSON object");
  auto plan = std::make_shared<Plan>();
  for (auto& m : doc.GetObject()) {
    std::string_view k(m.name.GetString(), m.name.GetStringLength());
    if (k != "events" && k != "identify" && k != "group" && k != "common")
      throw Error(ErrorKind::InvalidInput, path_key("", k),
                  "is not a part of a tracking plan (events, identify, group, common)");
  }
  if (auto it = doc.FindMember("events"); it != doc.MemberEnd() && !it->value.IsNull()) {
    if (!it->value.IsObject())
      throw Error(ErrorKind::InvalidInput, "events", "must be an object of event name -> JSON Schema");
    for (auto& e : it->value.GetObject()) {
      std::string name(e.name.GetString(), e.name.GetStringLength());
      if (name.empty() || is_blank(name)) throw Error(ErrorKind::InvalidInput, "events", "an event name must not be blank");
      plan->events_.emplace(name, schema::Schema::compile(e.value, path_key("events", name)));
    }
  }
  plan->identify_ = schema_at(doc, "identify", "identify");
  plan->group_ = schema_at(doc, "group", "group");
  plan->common_ = schema_at(doc, "common", "common");
  return plan;
}

std::shared_ptr<const Plan> Plan::compile(std::string_view json) {
  rapidjson::Document d;
  rapidjson::ParseResult r = parse_json(d, json, Numbers::Exact);
  if (r.IsError())
    throw Error(ErrorKind::MalformedJson, "plan", std::string("is not valid JSON: ") + rapidjson::GetParseError_En(r.Code()));
  return compile(d);
}

const schema::Schema* Plan::event(std::string_view name) const {
  auto it = events_.find(name);
  return it == events_.end() ? nullptr : it->second.get();
}

Verdict apply(const Attached& a, const Value& msg, Event& e) {
  Verdict v;
  v.plan_id = a.plan_id;
  v.version = a.version;
  v.message_type = message_type_name(e.type);
  v.event = e.event;
  const Plan& p = *a.plan;
  const schema::Schema* s = nullptr;
  Where where{"", {}};
  bool unplanned_event = false;
  if (e.type == MessageType::Track) {
    s = p.event(e.event);
    where = {"#/events/", e.event};
    if (!s) {
      unplanned_event = true;
      add(v, {ViolationType::UnplannedEvent, "event", "#/events", "\"" + e.event + "\" is not in the tracking plan", "string"});
    }
  } else if (e.type == MessageType::Identify) {
    s = p.identify(), where = {"#/identify", {}};
  } else if (e.type == MessageType::Group) {
    s = p.group(), where = {"#/group", {}};
  }

  std::unique_ptr<rapidjson::Document> copy;  // made only when the view differs from msg
  const Value& seen = plan_view(msg, e, copy);
  std::unordered_set<std::string> omitted, omitted_keys;
  const char* member = planned_member(e.type);
  if (s && member && a.options.omit_unplanned_properties) {
    auto it = seen.FindMember(member);
    if (it != seen.MemberEnd() && it->value.IsObject())
      for (auto& m : it->value.GetObject()) {
        std::string key(m.name.GetString(), m.name.GetStringLength());
        if (s->declares(member, key)) continue;
        std::string path = path_key(member, key);
        add(v, {ViolationType::AdditionalProperties, path, where.text() + "/properties/" + member,
                "is not in the tracking plan: omitted", json_type(m.value), true});
        omitted.insert(path);
        omitted_keys.insert(std::move(key));
      }
  }
  if (s) add_schema_violations(v, *s, seen, where, omitted);
  if (const schema::Schema* c = p.common()) add_schema_violations(v, *c, seen, {"#/common", {}}, omitted);

  bool broken = false;
  for (auto& x : v.violations) broken |= !x.omitted && x.type != ViolationType::UnplannedEvent;
  v.blocked = (unplanned_event && a.options.block_unplanned_events) || (broken && a.options.block_violations);
  if (v.blocked) return v;
  if (!omitted_keys.empty()) {
    std::string& target = e.type == MessageType::Track ? e.properties : e.traits;
    target = without_keys(target, omitted_keys);
  }
  if (a.options.context_violations && !v.violations.empty()) e.context = with_violations(e.context, v);
  return v;
}

std::pair<std::string, std::string> rejection_of(const Attached& a, const Verdict& v) {
  // The first violation that blocks names the field: an unplanned event when
  // those are blocked, else the first broken rule.
  const Violation* first = nullptr;
  for (auto& x : v.violations) {
    bool blocks = x.type == ViolationType::UnplannedEvent ? a.options.block_unplanned_events
                                                          : a.options.block_violations && !x.omitted;
    if (blocks) {
      first = &x;
      break;
    }
  }
  if (!first) first = &v.violations.front();
  std::string rule = first->message + " (" + violation_type_name(first->type) + ", tracking plan \"" + a.name +
                     "\" version " + std::to_string(a.version) + ")";
  if (v.violations.size() > 1) rule += ", and " + std::to_string(v.violations.size() - 1) + " more";
  return {first->path.empty() ? "message" : first->path, rule};
}

}  // namespace cdp::plans
