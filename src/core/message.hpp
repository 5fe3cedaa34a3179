// One Segment-spec message: the validation rules of the Tracking API and the
// normalised event they produce. Shared by SQL ingestion and the HTTP worker.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

#include "core/timestamp.hpp"
#include "core/tracking_plan.hpp"

namespace cdp {

enum class MessageType : uint8_t { Track, Identify, Page, Screen, Group, Alias };

std::optional<MessageType> parse_message_type(std::string_view name);
const char* message_type_name(MessageType t);

struct Limits {
  size_t max_message_bytes = 32 * 1024;   // Segment: 32 KB per message
  size_t max_payload_bytes = 500 * 1024;  // Segment: 500 KB per request
  size_t max_batch_messages = 2500;
  size_t max_message_id_length = 255;
};

// A message that passed every rule, ready to store. Empty strings stand for
// SQL NULL in the optional text fields; JSON fields hold compact JSON text.
struct Event {
  std::string message_id;
  MessageType type = MessageType::Track;
  std::string user_id, anonymous_id, event, name, category, group_id, previous_id;
  Micros timestamp = 0;    // after clock-skew correction
  Micros received_at = 0;  // set by the server, never by the client
  std::optional<Micros> original_timestamp, sent_at;
  std::string properties, traits, context, integrations;
};

// A message that broke a rule: which field, which rule, and what arrived.
struct Rejection {
  std::string message_id;  // as sent, if it was usable; else empty
  std::string field;       // "userId", "properties", "timestamp", "message", ...
  std::string rule;        // "must be a string or a number", ...
  std::string raw;         // the message as received (minus any writeKey)
  std::string reason() const { return field + ": " + rule; }
};

struct MessageOutcome {
  std::optional<Event> event;  // set when accepted by validation
  Rejection rejection;         // set when not
  bool duplicate_in_payload = false;  // same messageId earlier in this payload
  plans::Verdict plan;                // what the source's tracking plan found (plan_id 0: none)
  bool ok() const { return event.has_value(); }
};

// What a message inherits from where it arrived.
struct MessageContext {
  Micros received_at = 0;
  std::optional<MessageType> implied_type;  // from the endpoint (/v1/track); wins over "type"
  const rapidjson::Value* batch_context = nullptr;       // merged under the message's own
  const rapidjson::Value* batch_integrations = nullptr;  // likewise
  std::optional<Micros> batch_sent_at;                   // the envelope's sentAt
  std::string client_ip;  // the sender's address: fills context.ip if absent or context.direct
  const plans::Attached* plan = nullptr;  // the source's tracking plan, checked last
  Limits limits;
};

// What became of a message once storage had its say.
enum class MessageStatus { Accepted, Duplicate, Rejected };
const char* message_status_name(MessageStatus s);

// Applies every rule to one message, the source's tracking plan last (a
// message it blocks is a Rejection; one it keeps carries its violations).
// `msg` is not modified.
MessageOutcome validate_message(const rapidjson::Value& msg, const MessageContext& ctx);

// A random (version 4) UUID for messages that arrive without a messageId.
std::string new_message_id();

}  // namespace cdp
