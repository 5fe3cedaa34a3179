#include "core/message.hpp"

#include <cinttypes>
#include <cstdio>
#include <random>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/json_util.hpp"

namespace cdp {
namespace {

using rapidjson::Value;

constexpr const char* kTypeNames[] = {"track", "identify", "page", "screen", "group", "alias"};

// Thrown inside validation only; turned into a Rejection below.
struct Broken {
  std::string field, rule;
};

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

const Value* member(const Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || it->value.IsNull()) return nullptr;
  return &it->value;
}

std::string number_text(const Value& v) {
  if (auto raw = raw_number(v)) return std::string(*raw);  // every digit, as sent
  char buf[64];
  if (v.IsInt64()) std::snprintf(buf, sizeof buf, "%" PRId64, v.GetInt64());
  else if (v.IsUint64()) std::snprintf(buf, sizeof buf, "%" PRIu64, v.GetUint64());
  else return to_json(v);  // shortest round-trip form of a double
  return buf;
}

// userId, anonymousId, groupId, previousId, messageId: a string or a number,
// normalised to text. Blank strings count as missing (returned empty).
std::string identifier(const Value& msg, const char* field) {
  const Value* v = member(msg, field);
  if (!v) return {};
  if (is_number(*v)) return number_text(*v);
  if (!v->IsString()) throw Broken{field, "must be a string or a number"};
  std::string s(v->GetString(), v->GetStringLength());
  return is_blank(s) ? std::string() : s;
}

std::string optional_string(const Value& msg, const char* field) {
  const Value* v = member(msg, field);
  if (!v) return {};
  if (!is_string(*v)) throw Broken{field, "must be a string"};
  return std::string(v->GetString(), v->GetStringLength());
}

std::optional<Micros> optional_time(const Value& msg, const char* field) {
  const Value* v = member(msg, field);
  if (!v) return std::nullopt;
  if (!v->IsString() || raw_number(*v)) throw Broken{field, iso8601_rule(false)};
  bool out_of_range = false;
  auto t = parse_iso8601(std::string_view(v->GetString(), v->GetStringLength()), &out_of_range);
  if (!t) throw Broken{field, iso8601_rule(out_of_range)};
  return t;
}

const Value* optional_object(const Value& msg, const char* field) {
  const Value* v = member(msg, field);
  if (v && !v->IsObject()) throw Broken{field, "must be a JSON object"};
  return v;
}

// The message's own object with the envelope's keys added where it has none.
std::string merged_json(const Value* own, const Value* inherited) {
  if (!inherited || !inherited->IsObject() || inherited->MemberCount() == 0)
    return own ? to_json(*own) : std::string();
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  w.StartObject();
  if (own)
    for (auto& m : own->GetObject()) {
      w.Key(m.name.GetString(), m.name.GetStringLength());
      m.value.Accept(w);
    }
  for (auto& m : inherited->GetObject()) {
    if (own && own->HasMember(m.name)) continue;
    w.Key(m.name.GetString(), m.name.GetStringLength());
    m.value.Accept(w);
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

// context: the message's own, the envelope's keys it lacks, and the client's
// address as "ip" when it has none or asks for it with "direct": true.
std::string context_json(const Value* own, const Value* inherited, const std::string& client_ip) {
  auto has = [](const Value* v, const char* k) { return v && v->IsObject() && v->HasMember(k); };
  bool direct = has(own, "direct") && (*own)["direct"].IsBool() && (*own)["direct"].GetBool();
  bool set_ip = !client_ip.empty() && (direct || !(has(own, "ip") || has(inherited, "ip")));
  if (!set_ip) return merged_json(own, inherited);
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  w.StartObject();
  for (const Value* v : {own, inherited}) {
    if (!v || !v->IsObject()) continue;
    for (auto& m : v->GetObject()) {
      std::string_view key(m.name.GetString(), m.name.GetStringLength());
      if (key == "ip" || (v == inherited && has(own, m.name.GetString()))) continue;
      w.Key(m.name.GetString(), m.name.GetStringLength());
      m.value.Accept(w);
    }
  }
  w.Key("ip");
  w.String(client_ip.data(), static_cast<rapidjson::SizeType>(client_ip.size()));
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

// RudderStack's SDKs state consent as context.consentManagement's
// allowedConsentIds / deniedConsentIds; everything in cdp (cdp.consent,
// destinations' consent rules) reads Segment's context.consent.
// categoryPreferences. A context with the first and not the second gets both,
// built in `copy`: each allowed id true, each denied id false (denied wins).
const Value* with_category_preferences(const Value* context, rapidjson::Document& copy) {
  if (!context || !context->IsObject()) return context;
  auto cm = context->FindMember("consentManagement");
  if (cm == context->MemberEnd() || !cm->value.IsObject()) return context;
  auto consent = context->FindMember("consent");
  if (consent != context->MemberEnd() &&
      (!consent->value.IsObject() || consent->value.HasMember("categoryPreferences")))
    return context;
  auto& a = copy.GetAllocator();
  Value prefs(rapidjson::kObjectType);
  for (auto [list, granted] : {std::pair{"allowedConsentIds", true}, std::pair{"deniedConsentIds", false}}) {
    auto ids = cm->value.FindMember(list);
    if (ids == cm->value.MemberEnd() || !ids->value.IsArray()) continue;
    for (auto& id : ids->value.GetArray()) {
      if (!is_string(id) || id.GetStringLength() == 0) continue;
      if (auto seen = prefs.FindMember(id); seen != prefs.MemberEnd()) {
        if (!granted) seen->value.SetBool(false);
      } else {
        prefs.AddMember(Value(id, a), Value(granted), a);
      }
    }
  }
  if (prefs.ObjectEmpty()) return context;
  copy.CopyFrom(*context, a);
  auto c = copy.FindMember("consent");
  if (c == copy.MemberEnd()) {
    copy.AddMember("consent", Value(rapidjson::kObjectType), a);
    c = copy.FindMember("consent");
  }
  c->value.AddMember("categoryPreferences", prefs, a);
  return &copy;
}

// The raw text kept in quarantine: the message as sent, without its writeKey.
std::string raw_without_key(const Value& msg) {
  if (!msg.IsObject() || !msg.HasMember("writeKey")) return to_json(msg);
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  w.StartObject();
  for (auto& m : msg.GetObject()) {
    if (std::string_view(m.name.GetString(), m.name.GetStringLength()) == "writeKey") continue;
    w.Key(m.name.GetString(), m.name.GetStringLength());
    m.value.Accept(w);
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

Event build_event(const Value& msg, const MessageContext& ctx, std::string& message_id) {
  if (!msg.IsObject()) throw Broken{"message", "must be a JSON object"};
  message_id = identifier(msg, "messageId");
  if (utf8_length(message_id) > ctx.limits.max_message_id_length)
    throw Broken{"messageId", "must be at most " + std::to_string(ctx.limits.max_message_id_length) +
                                  " characters"};
  Event e;
  if (ctx.implied_type) {
    e.type = *ctx.implied_type;
  } else {
    const Value* t = member(msg, "type");
    if (!t) throw Broken{"type", "is required (track, identify, page, screen, group or alias)"};
    auto type = is_string(*t) ? parse_message_type({t->GetString(), t->GetStringLength()})
                              : std::nullopt;
    if (!type) throw Broken{"type", "must be one of track, identify, page, screen, group, alias"};
    e.type = *type;
  }
  e.user_id = identifier(msg, "userId");
  e.anonymous_id = identifier(msg, "anonymousId");
  if (e.user_id.empty() && e.anonymous_id.empty())
    throw Broken{"userId", "userId or anonymousId is required"};

  switch (e.type) {
    case MessageType::Track: {
      const Value* ev = member(msg, "event");
      if (!ev) throw Broken{"event", "is required for track"};
      if (!is_string(*ev)) throw Broken{"event", "must be a string"};
      e.event.assign(ev->GetString(), ev->GetStringLength());
      if (is_blank(e.event)) throw Broken{"event", "is required for track"};
      break;
    }
    case MessageType::Alias:
      e.previous_id = identifier(msg, "previousId");
      if (e.previous_id.empty()) throw Broken{"previousId", "is required for alias"};
      break;
    case MessageType::Group:
      e.group_id = identifier(msg, "groupId");
      if (e.group_id.empty()) throw Broken{"groupId", "is required for group"};
      break;
    case MessageType::Page:
    case MessageType::Screen:
      e.name = optional_string(msg, "name");
      e.category = optional_string(msg, "category");
      break;
    case MessageType::Identify:
      break;
  }
  if (e.type != MessageType::Group) e.group_id = identifier(msg, "groupId");

  const Value* properties = optional_object(msg, "properties");
  const Value* traits = optional_object(msg, "traits");
  const Value* context = optional_object(msg, "context");
  // RudderStack's SDKs send an identify's traits only in context.traits.
  // (context is free-form: a context.traits that is not an object is left there.)
  if (!traits && context && e.type == MessageType::Identify)
    if (const Value* t = member(*context, "traits"); t && t->IsObject()) traits = t;
  const Value* integrations = optional_object(msg, "integrations");

  // Clock skew: the client's clock is trusted only for the interval between
  // the event and the send, never for the absolute time.
  auto timestamp = optional_time(msg, "timestamp");
  auto original = optional_time(msg, "originalTimestamp");
  auto sent_at = optional_time(msg, "sentAt");
  if (!sent_at) sent_at = ctx.batch_sent_at;
  e.received_at = ctx.received_at;
  e.original_timestamp = original ? original : timestamp;
  e.sent_at = sent_at;
  if (e.original_timestamp && sent_at)
    e.timestamp = ctx.received_at - (*sent_at - *e.original_timestamp);
  else if (e.original_timestamp)
    e.timestamp = *e.original_timestamp;
  else
    e.timestamp = ctx.received_at;
  // Years 1 to 9999, like every time parse_iso8601 accepts: an absurd sentAt
  // must not make an instant that cannot be stored or read back.
  if (!in_range(e.timestamp))
    throw Broken{"timestamp", "falls outside years 1 to 9999 after clock-skew correction "
                              "(receivedAt - (sentAt - originalTimestamp))"};

  if (properties) e.properties = to_json(*properties);
  if (traits) e.traits = to_json(*traits);
  rapidjson::Document consent_copy;
  e.context = context_json(with_category_preferences(context, consent_copy), ctx.batch_context, ctx.client_ip);
  e.integrations = merged_json(integrations, ctx.batch_integrations);
  return e;
}

}  // namespace

std::optional<MessageType> parse_message_type(std::string_view name) {
  for (size_t i = 0; i < std::size(kTypeNames); i++)
    if (name == kTypeNames[i]) return static_cast<MessageType>(i);
  return std::nullopt;
}

const char* message_type_name(MessageType t) { return kTypeNames[static_cast<size_t>(t)]; }

const char* message_status_name(MessageStatus s) {
  switch (s) {
    case MessageStatus::Accepted: return "accepted";
    case MessageStatus::Duplicate: return "duplicate";
    case MessageStatus::Rejected: break;
  }
  return "rejected";
}

MessageOutcome validate_message(const Value& msg, const MessageContext& ctx) {
  MessageOutcome out;
  std::string message_id;
  try {
    // Best effort first, so that even an oversize message is quarantined with its id.
    try {
      if (msg.IsObject()) message_id = identifier(msg, "messageId");
    } catch (const Broken&) {
    }
    if (message_id.size() > ctx.limits.max_message_id_length ||
        message_id.find('\0') != std::string::npos)  // quarantine.message_id is text
      message_id.clear();
    std::string raw = raw_without_key(msg);
    if (raw.size() > ctx.limits.max_message_bytes) {
      out.rejection.raw = std::move(raw);
      throw Broken{"message", "is " + std::to_string(out.rejection.raw.size()) +
                                  " bytes, more than the limit of " +
                                  std::to_string(ctx.limits.max_message_bytes)};
    }
    if (auto path = find_nul(msg, "")) {
      out.rejection.raw = std::move(raw);
      throw Broken{path->empty() ? "message" : *path,
                   "contains a NUL character (\\u0000), which cannot be stored"};
    }
    out.event = build_event(msg, ctx, message_id);
    if (out.event->message_id = message_id; message_id.empty())
      out.event->message_id = new_message_id();
    if (ctx.plan) {
      out.plan = plans::apply(*ctx.plan, msg, *out.event);
      if (out.plan.blocked) {
        auto [field, rule] = plans::rejection_of(*ctx.plan, out.plan);
        throw Broken{field, rule};
      }
    }
  } catch (const Broken& b) {
    out.event.reset();
    if (utf8_length(message_id) <= ctx.limits.max_message_id_length) out.rejection.message_id = message_id;
    out.rejection.field = b.field;
    out.rejection.rule = b.rule;
    if (out.rejection.raw.empty()) out.rejection.raw = raw_without_key(msg);
  }
  return out;
}

std::string new_message_id() {
  // Seeded with 256 bits: with one 32-bit seed, two processes could share a
  // sequence and their events would be taken for duplicates.
  thread_local std::mt19937_64 rng = [] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }();
  uint64_t hi = rng(), lo = rng();
  hi = (hi & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xFFFF), static_cast<unsigned>(hi & 0xFFFF),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL));
  return buf;
}

}  // namespace cdp
