// Tracking plans: the contract a source's events are held to. A plan version
// is compiled once (a JSON Schema per track event name, for identify and group,
// and a common one over every message) and then applied to each message that
// passed the Tracking API's own rules, in the HTTP worker's request threads and
// in cdp.ingest alike. What happens to a message that breaks it depends on the
// source's options, as in Segment Protocols: unplanned events allowed or
// blocked, unplanned properties kept or omitted, other violations kept or blocked.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "core/json_schema.hpp"

namespace cdp {

struct Event;

namespace plans {

// RudderStack's violation types.
enum class ViolationType : uint8_t { UnplannedEvent, RequiredMissing, DatatypeMismatch, AdditionalProperties, Unknown };
constexpr int kNumViolationTypes = 5;
const char* violation_type_name(ViolationType t);  // "Unplanned-Event", ...

struct Violation {
  ViolationType type = ViolationType::Unknown;
  std::string path;        // in the message: "properties.revenue", "event"
  std::string rule;        // the schema keyword broken: "#/events/Order Completed/properties/properties/required"
  std::string message;     // "must be number"
  std::string value_type;  // the JSON type that arrived; "" when missing
  bool omitted = false;    // an unplanned property removed under unplanned_properties = omit
};

// What a plan made of one message. plan_id 0: the source has no plan.
struct Verdict {
  int64_t plan_id = 0;
  int version = 0;
  std::string message_type, event;  // "track" and its event name, as checked
  std::vector<Violation> violations;
  bool blocked = false;
};

struct Options {
  bool block_unplanned_events = false;     // unplanned_events: allow | block
  bool omit_unplanned_properties = false;  // unplanned_properties: keep | omit
  bool block_violations = false;           // violations: keep | block
  bool context_violations = false;         // context_violations: true writes context.violations
};

// One compiled plan version.
class Plan {
 public:
  // `doc` is the plan: {"events": {"<name>": schema, ...}, "identify": schema,
  // "group": schema, "common": schema}, every member optional. Throws
  // cdp::Error naming the JSON path of what is wrong ("events.Signed Up.type").
  static std::shared_ptr<const Plan> compile(const rapidjson::Value& doc);
  static std::shared_ptr<const Plan> compile(std::string_view json);

  const schema::Schema* event(std::string_view name) const;  // nullptr: unplanned
  const schema::Schema* identify() const { return identify_.get(); }
  const schema::Schema* group() const { return group_.get(); }
  const schema::Schema* common() const { return common_.get(); }
  size_t events() const { return events_.size(); }

 private:
  std::map<std::string, std::shared_ptr<const schema::Schema>, std::less<>> events_;
  std::shared_ptr<const schema::Schema> identify_, group_, common_;
};

// A plan version as attached to a source, with the source's options.
struct Attached {
  int64_t plan_id = 0;
  int version = 0;
  std::string name;
  std::shared_ptr<const Plan> plan;
  Options options;
};

// Checks one message that passed the Tracking API's rules: `msg` as sent,
// `event` what validation made of it. Unplanned properties (or traits) are
// removed from `event` when the options say omit, and context.violations is
// added when they ask for it. A blocked verdict's message is to be rejected
// with rejection_of(); the caller does that.
Verdict apply(const Attached& plan, const rapidjson::Value& msg, Event& event);

// The field and rule a blocked message is quarantined (and answered) with.
std::pair<std::string, std::string> rejection_of(const Attached& plan, const Verdict& v);

// Bounds that keep one message's verdict small.
constexpr size_t kMaxViolations = 20;

}  // namespace plans
}  // namespace cdp
