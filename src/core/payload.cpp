#include "core/payload.hpp"

#include <unordered_set>

#include <rapidjson/error/en.h>

#include "core/error.hpp"
#include "core/json_util.hpp"

namespace cdp {

size_t Payload::accepted() const {
  size_t n = 0;
  for (auto& m : messages) n += m.ok() && !m.duplicate_in_payload;
  return n;
}

static std::string take_write_key(const rapidjson::Value& root) {
  auto it = root.FindMember("writeKey");
  if (it == root.MemberEnd() || it->value.IsNull()) return {};
  if (!is_string(it->value)) throw Error(ErrorKind::InvalidInput, "writeKey", "must be a string");
  std::string key(it->value.GetString(), it->value.GetStringLength());
  if (key.find('\0') != std::string::npos)  // a C string would end there: "wk\u0000x" is not "wk"
    throw Error(ErrorKind::InvalidInput, "writeKey", "contains a NUL character (\\u0000)");
  return key;
}

static const rapidjson::Value* envelope_object(const rapidjson::Value& root, const char* field) {
  auto it = root.FindMember(field);
  if (it == root.MemberEnd() || it->value.IsNull()) return nullptr;
  if (!it->value.IsObject()) throw Error(ErrorKind::InvalidInput, field, "must be a JSON object");
  // Copied into every message, so checked here: validate_message sees only the message.
  if (auto path = find_nul(it->value, field))
    throw Error(ErrorKind::InvalidInput, *path,
                "contains a NUL character (\\u0000), which cannot be stored");
  return &it->value;
}

Payload parse_payload(std::string_view json, const PayloadOptions& opts) {
  const Limits& lim = opts.limits;
  if (json.size() > lim.max_payload_bytes)
    throw Error(ErrorKind::TooLarge, "payload",
                "is " + std::to_string(json.size()) + " bytes, more than the limit of " +
                    std::to_string(lim.max_payload_bytes));
  if (json_depth(json) > kMaxJsonDepth)
    throw Error(ErrorKind::InvalidInput, "payload",
                "nests objects or arrays deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  rapidjson::Document doc;
  rapidjson::ParseResult parsed = parse_json(doc, json, Numbers::Exact);  // stored: every digit kept
  if (parsed.IsError())
    throw Error(ErrorKind::MalformedJson, "payload",
                std::string("is not valid JSON: ") + rapidjson::GetParseError_En(parsed.Code()) +
                    " at offset " + std::to_string(parsed.Offset()));
  if (has_lone_surrogate(doc))
    throw Error(ErrorKind::MalformedJson, "payload",
                "is not valid JSON: a \\u escape holds an unpaired UTF-16 surrogate");
  if (!doc.IsObject()) throw Error(ErrorKind::InvalidInput, "payload", "must be a JSON object");

  Payload out;
  out.write_key = take_write_key(doc);
  MessageContext ctx;
  ctx.received_at = opts.received_at;
  ctx.implied_type = opts.implied_type;
  ctx.client_ip = opts.client_ip;
  ctx.limits = lim;
  if (opts.plan_for) out.plan = opts.plan_for(out.write_key);
  ctx.plan = out.plan.get();

  auto batch = doc.FindMember("batch");
  if (batch == doc.MemberEnd()) {
    out.messages.push_back(validate_message(doc, ctx));
    return out;
  }
  if (!batch->value.IsArray()) throw Error(ErrorKind::InvalidInput, "batch", "must be an array");
  if (batch->value.Size() > lim.max_batch_messages)
    throw Error(ErrorKind::TooLarge, "batch",
                "has " + std::to_string(batch->value.Size()) + " messages, more than the limit of " +
                    std::to_string(lim.max_batch_messages));
  out.is_batch = true;
  ctx.implied_type.reset();  // every message of a batch names its own type
  ctx.batch_context = envelope_object(doc, "context");
  ctx.batch_integrations = envelope_object(doc, "integrations");
  auto sent = doc.FindMember("sentAt");
  if (sent != doc.MemberEnd() && !sent->value.IsNull()) {
    bool out_of_range = false;
    auto t = sent->value.IsString() && !raw_number(sent->value)
                 ? parse_iso8601({sent->value.GetString(), sent->value.GetStringLength()}, &out_of_range)
                 : std::nullopt;
    if (!t) throw Error(ErrorKind::InvalidInput, "sentAt", iso8601_rule(out_of_range));
    ctx.batch_sent_at = t;
  }

  out.messages.reserve(batch->value.Size());
  std::unordered_set<std::string_view> seen;
  for (auto& msg : batch->value.GetArray()) out.messages.push_back(validate_message(msg, ctx));
  for (auto& m : out.messages)  // after the vector stops moving: views into it stay valid
    if (m.ok() && !seen.insert(m.event->message_id).second) m.duplicate_in_payload = true;
  return out;
}

}  // namespace cdp
