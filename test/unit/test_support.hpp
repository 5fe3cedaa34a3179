// Helpers shared by the unit tests: build JSON texts and run them through the
// core the way the HTTP worker and cdp.ingest do.
#pragma once
#include <string>
#include <string_view>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "core/computed.hpp"
#include "core/json_util.hpp"
#include "core/message.hpp"
#include "core/payload.hpp"
#include "core/timestamp.hpp"

namespace cdp::test {

// A timestamp the tests know is valid; fails the test (not the process) if not.
inline Micros at(std::string_view iso) {
  auto t = parse_iso8601(iso);
  EXPECT_TRUE(t.has_value()) << "test fixture timestamp does not parse: " << iso;
  return t.value_or(0);
}

// Validates one message given as JSON text.
inline MessageOutcome validate(std::string_view json, const MessageContext& ctx = {}) {
  rapidjson::Document doc;
  EXPECT_FALSE(parse_json(doc, json).IsError()) << "test fixture is not JSON: " << json;
  return validate_message(doc, ctx);
}

// Parses a JSON text as a rapidjson document (for comparing JSON by value,
// whatever the key order or spacing).
inline rapidjson::Document json(std::string_view text) {
  rapidjson::Document doc;
  doc.Parse<kParseFlags>(text.data(), text.size());
  EXPECT_FALSE(doc.HasParseError()) << "not JSON: " << text;
  return doc;
}

// True when two JSON texts hold the same value.
inline bool same_json(std::string_view a, std::string_view b) { return json(a) == json(b); }

// One event of a profile, held in memory, for the computed-trait and
// audience tests.
struct Event {
  int64_t id;
  MessageType type;
  std::string name;
  Micros time;
  rapidjson::Document properties;

  computed::EventInput input() const { return {id, type, name, time, &properties}; }
};

inline Event ev(int64_t id, Micros time, std::string_view properties = "{}", std::string name = "Order Completed",
                MessageType type = MessageType::Track) {
  return Event{id, type, std::move(name), time, json(properties)};
}

}  // namespace cdp::test
