// libFuzzer target: any bytes as a request body. parse_payload must either
// throw cdp::Error or return outcomes that can be stored as they are: no NUL
// and only UTF-8 in any text, a messageId on every event, times that format
// and parse back to the same instant. Anything else aborts. Half the inputs
// are checked against a tracking plan too (every kind of keyword, each option
// picked by the last byte): its violations must be storable and bounded, and
// a blocked message rejected.
//
// Build and run: docs/testing.md, "Fuzzing" (CMake option CDP_FUZZ, which
// also instruments the core: without that libFuzzer sees no coverage inside
// the parser and AddressSanitizer does not check it).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/payload.hpp"
#include "core/timestamp.hpp"
#include "core/tracking_plan.hpp"

namespace {

// A plan using most of the validator: types, enums, patterns, formats,
// bounds, combinators, $ref, items, additionalProperties.
constexpr const char* kPlan = R"({
  "events": {
    "Order Completed": {"properties": {"properties": {"type": "object", "required": ["revenue"],
      "properties": {"revenue": {"type": "number", "minimum": 0, "multipleOf": 0.01},
                     "currency": {"enum": ["EUR", "USD"]}, "coupon": {"type": "string", "pattern": "^[A-Z]{2}[0-9]+$"},
                     "items": {"type": "array", "maxItems": 5, "items": {"$ref": "#/definitions/item"}}},
      "additionalProperties": false}},
      "definitions": {"item": {"type": "object", "required": ["sku"],
        "properties": {"sku": {"type": "string", "minLength": 3}, "price": {"oneOf": [{"type": "integer"}, {"type": "null"}]}}}}},
    "e": {"properties": {"properties": {"not": {"required": ["secret"]}, "propertyNames": {"maxLength": 8}}}}
  },
  "identify": {"properties": {"traits": {"properties": {"email": {"type": "string", "format": "email"},
                                                          "age": {"type": "integer", "exclusiveMaximum": 150}},
                                          "patternProperties": {"^x_": {"type": "boolean"}}}}},
  "common": {"properties": {"context": {"properties": {"page": {"properties": {"url": {"format": "uri"}}}}},
                            "timestamp": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}}}
})";

[[noreturn]] void fail(const char* what, std::string_view text) {
  std::fprintf(stderr, "invariant broken: %s: [%.*s]\n", what, static_cast<int>(text.size()),
               text.data());
  std::abort();
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (n < 0 || i + n >= s.size()) return false;
    uint32_t cp = n == 0 ? c : c & (0x3F >> n);
    for (int k = 1; k <= n; k++) {
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

void storable(const char* what, const std::string& s) {
  if (s.find('\0') != std::string::npos) fail(what, s);
  if (!valid_utf8(s)) fail(what, s);
}

void check_time(const char* what, cdp::Micros t) {
  std::string text = cdp::format_iso8601(t);
  auto back = cdp::parse_iso8601(text);
  if (!back || *back != t) fail(what, text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);

  // Timestamps on their own: whatever parses must format and parse back.
  if (size <= 64) {
    if (auto t = cdp::parse_iso8601(body)) check_time("parse_iso8601 round trip", *t);
  }

  // The last byte picks the endpoint (none, or one of the six typed ones)
  // and whether limits are tiny, so size checks get exercised too.
  cdp::PayloadOptions opts;
  opts.received_at = 1'714'566'600'000'000;  // 2024-05-01T12:30:00Z
  if (size > 0) {
    unsigned sel = data[size - 1];
    if (sel % 7) opts.implied_type = static_cast<cdp::MessageType>(sel % 7 - 1);
    if (sel & 0x80) {
      opts.limits.max_message_bytes = 96;
      opts.limits.max_batch_messages = 3;
      opts.limits.max_message_id_length = 8;
    }
  }

  static const auto plan = cdp::plans::Plan::compile(std::string_view(kPlan));
  std::shared_ptr<cdp::plans::Attached> attached;
  if (size > 0 && (data[size - 1] & 0x40)) {
    unsigned sel = data[0];
    attached = std::make_shared<cdp::plans::Attached>();
    attached->plan_id = 1, attached->version = 1, attached->name = "fuzz", attached->plan = plan;
    attached->options = {(sel & 1) != 0, (sel & 2) != 0, (sel & 4) != 0, (sel & 8) != 0};
    opts.plan_for = [&](const std::string&) { return attached; };
  }

  cdp::Payload p;
  try {
    p = cdp::parse_payload(body, opts);
  } catch (const cdp::Error& e) {
    if (e.kind() == cdp::ErrorKind::Internal) fail("Internal error", e.what());
    storable("error text", e.what());
    return 0;
  }
  if (!p.is_batch && p.messages.size() != 1) fail("single payload", body);
  if (p.messages.size() > opts.limits.max_batch_messages) fail("batch limit", body);
  storable("writeKey", p.write_key);
  for (auto& m : p.messages) {
    if (m.plan.violations.size() > cdp::plans::kMaxViolations) fail("too many violations", body);
    if (m.plan.blocked && m.ok()) fail("blocked message accepted", body);
    for (auto& v : m.plan.violations) {
      storable("violation path", v.path);
      storable("violation rule", v.rule);
      storable("violation message", v.message);
      storable("violation value type", v.value_type);
    }
    if (!m.ok()) {
      const cdp::Rejection& r = m.rejection;
      if (r.field.empty() || r.rule.empty()) fail("rejection without field or rule", r.raw);
      storable("rejection field", r.field);
      storable("rejection raw", r.raw);
      storable("rejection messageId", r.message_id);
      if (m.duplicate_in_payload) fail("rejected message flagged duplicate", r.raw);
      continue;
    }
    const cdp::Event& e = *m.event;
    if (e.message_id.empty()) fail("event without messageId", body);
    if (e.message_id.size() > opts.limits.max_message_id_length && e.message_id.size() != 36)
      fail("messageId too long", e.message_id);
    if (e.user_id.empty() && e.anonymous_id.empty()) fail("event without userId/anonymousId", body);
    if (e.type == cdp::MessageType::Track && e.event.empty()) fail("track without event", body);
    if (e.type == cdp::MessageType::Alias && e.previous_id.empty()) fail("alias without previousId", body);
    if (e.type == cdp::MessageType::Group && e.group_id.empty()) fail("group without groupId", body);
    for (const std::string* s : {&e.message_id, &e.user_id, &e.anonymous_id, &e.event, &e.name,
                                 &e.category, &e.group_id, &e.previous_id, &e.properties,
                                 &e.traits, &e.context, &e.integrations})
      storable("event field", *s);
    for (const std::string* s : {&e.properties, &e.traits, &e.context, &e.integrations})
      if (!s->empty() && (s->front() != '{' || s->back() != '}')) fail("JSON field not an object", *s);
    if (e.received_at != opts.received_at) fail("receivedAt not the server's", body);
    check_time("timestamp", e.timestamp);
    if (e.original_timestamp) check_time("originalTimestamp", *e.original_timestamp);
    if (e.sent_at) check_time("sentAt", *e.sent_at);
  }
  return 0;
}
