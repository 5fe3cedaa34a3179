// A request body or a cdp.ingest argument: one message, or a {"batch": [...]}
// envelope. Payload-level problems (not JSON, too big, wrong shape) throw
// cdp::Error and nothing of the payload is kept; message-level problems
// become Rejections, and the other messages go on.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/message.hpp"

namespace cdp {

struct PayloadOptions {
  Micros received_at = 0;
  std::optional<MessageType> implied_type;  // set by typed endpoints (/v1/track)
  std::string client_ip;                    // see MessageContext::client_ip
  Limits limits;
  // The tracking plan of the source writing, asked once the body's writeKey
  // (empty if none) is known; nullptr: no plan. Unset: no plan either.
  std::function<std::shared_ptr<const plans::Attached>(const std::string& body_write_key)> plan_for;
};

struct Payload {
  std::vector<MessageOutcome> messages;  // in the order they arrived
  std::string write_key;                 // "writeKey" from the body, if any
  bool is_batch = false;
  std::shared_ptr<const plans::Attached> plan;  // the plan the messages were checked against
  size_t accepted() const;
};

Payload parse_payload(std::string_view json, const PayloadOptions& opts);

}  // namespace cdp
