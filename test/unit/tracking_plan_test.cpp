// Tracking plans (core/tracking_plan.hpp) as ingestion applies them: each of
// the source's options, what a kept message carries, how a blocked one is
// named, and the plans refused at creation. The validator underneath has its
// own tests (json_schema_test, json_schema_suite_test).
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/tracking_plan.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using plans::Attached;
using plans::Options;
using plans::ViolationType;
using test::same_json;

// A plan: "Order Completed" needs a numeric revenue and declares currency;
// identify needs a string email; any message's context.app is an object.
constexpr const char* kShop = R"({
  "events": {
    "Order Completed": {
      "type": "object",
      "properties": {
        "properties": {
          "type": "object",
          "properties": {"revenue": {"type": "number"}, "currency": {"type": "string", "enum": ["EUR", "USD"]}},
          "required": ["revenue"]
        }
      }
    },
    "Signed Up": {}
  },
  "identify": {
    "properties": {"traits": {"properties": {"email": {"type": "string", "format": "email"}}, "required": ["email"]}}
  },
  "common": {"properties": {"context": {"properties": {"app": {"type": "object"}}}}}
})";

std::shared_ptr<const Attached> attached(Options o = {}, const char* plan = kShop) {
  auto a = std::make_shared<Attached>();
  a->plan_id = 7;
  a->version = 3;
  a->name = "shop";
  a->plan = plans::Plan::compile(std::string_view(plan));
  a->options = o;
  return a;
}

Payload ingest(std::string_view body, std::shared_ptr<const Attached> plan) {
  PayloadOptions o;
  o.received_at = test::at("2024-05-01T12:00:00Z");
  o.plan_for = [&](const std::string&) { return plan; };
  return parse_payload(body, o);
}

MessageOutcome one(std::string_view msg, std::shared_ptr<const Attached> plan) {
  Payload p = ingest(msg, std::move(plan));
  EXPECT_EQ(p.messages.size(), 1u);
  return p.messages.front();
}

Error compile_error(const char* plan) {
  try {
    plans::Plan::compile(std::string_view(plan));
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "plan compiled: " << plan;
  return Error(ErrorKind::Internal, "", "no error");
}

TEST(TrackingPlan, AMessageThatFollowsThePlanCarriesNoViolation) {
  auto m = one(R"({"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":9.5,"currency":"EUR"}})",
               attached());
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m.plan.plan_id, 7);
  EXPECT_EQ(m.plan.version, 3);
  EXPECT_TRUE(m.plan.violations.empty());
  EXPECT_FALSE(m.plan.blocked);
}

TEST(TrackingPlan, WithoutAPlanNothingIsChecked) {
  auto m = one(R"({"type":"track","userId":"u1","event":"Anything"})", nullptr);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m.plan.plan_id, 0);
}

TEST(TrackingPlan, ViolationsAreKeptWithTheirTypePathRuleAndValueType) {
  auto m = one(R"({"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":"9.50","currency":"GBP"}})",
               attached());
  ASSERT_TRUE(m.ok()) << "violations: keep stores the message";
  ASSERT_EQ(m.plan.violations.size(), 2u);
  const auto& type = m.plan.violations[0];
  EXPECT_EQ(type.type, ViolationType::DatatypeMismatch);
  EXPECT_EQ(type.path, "properties.revenue");
  EXPECT_EQ(type.rule, "#/events/Order Completed/properties/properties/properties/revenue/type");
  EXPECT_EQ(type.value_type, "string");
  EXPECT_EQ(m.plan.violations[1].type, ViolationType::Unknown);  // enum: RudderStack's Unknown-Violation
  EXPECT_EQ(m.plan.violations[1].path, "properties.currency");
  EXPECT_EQ(m.plan.message_type, "track");
  EXPECT_EQ(m.plan.event, "Order Completed");
}

TEST(TrackingPlan, AMissingRequiredPropertyIsRequiredMissing) {
  auto m = one(R"({"type":"track","userId":"u1","event":"Order Completed","properties":{}})", attached());
  ASSERT_EQ(m.plan.violations.size(), 1u);
  EXPECT_EQ(m.plan.violations[0].type, ViolationType::RequiredMissing);
  EXPECT_EQ(m.plan.violations[0].value_type, "");
}

TEST(TrackingPlan, UnplannedEventsAreAllowedOrBlocked) {
  const char* msg = R"({"type":"track","userId":"u1","event":"Cart Viewed","messageId":"m1"})";
  auto allowed = one(msg, attached());
  ASSERT_TRUE(allowed.ok());
  ASSERT_EQ(allowed.plan.violations.size(), 1u);
  EXPECT_EQ(allowed.plan.violations[0].type, ViolationType::UnplannedEvent);
  EXPECT_EQ(allowed.plan.violations[0].path, "event");

  auto blocked = one(msg, attached({.block_unplanned_events = true}));
  ASSERT_FALSE(blocked.ok());
  EXPECT_TRUE(blocked.plan.blocked);
  EXPECT_EQ(blocked.rejection.message_id, "m1");
  EXPECT_EQ(blocked.rejection.field, "event");
  EXPECT_EQ(blocked.rejection.rule,
            "\"Cart Viewed\" is not in the tracking plan (Unplanned-Event, tracking plan \"shop\" version 3)");
  EXPECT_NE(blocked.rejection.raw.find("Cart Viewed"), std::string::npos) << "quarantined as sent";
}

TEST(TrackingPlan, BlockingViolationsLeavesUnplannedEventsToTheirOwnOption) {
  auto o = attached({.block_violations = true});
  EXPECT_TRUE(one(R"({"type":"track","userId":"u1","event":"Cart Viewed"})", o).ok());
  auto m = one(R"({"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":"x"}})", o);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.rejection.field, "properties.revenue");
  EXPECT_EQ(m.rejection.reason(),
            "properties.revenue: must be number (Datatype-Mismatch, tracking plan \"shop\" version 3)");
}

TEST(TrackingPlan, UnplannedPropertiesAreOmittedAndRecorded) {
  auto m = one(R"({"type":"track","userId":"u1","event":"Order Completed",
                   "properties":{"revenue":5,"coupon":"X1","nested":{"a":1}}})",
               attached({.omit_unplanned_properties = true, .block_violations = true}));
  ASSERT_TRUE(m.ok()) << "an omitted property never blocks";
  EXPECT_TRUE(same_json(m.event->properties, R"({"revenue":5})")) << m.event->properties;
  ASSERT_EQ(m.plan.violations.size(), 2u);
  EXPECT_EQ(m.plan.violations[0].type, ViolationType::AdditionalProperties);
  EXPECT_EQ(m.plan.violations[0].path, "properties.coupon");
  EXPECT_TRUE(m.plan.violations[0].omitted);
  EXPECT_EQ(m.plan.violations[1].value_type, "object");
}

TEST(TrackingPlan, KeptPropertiesStayWhenTheOptionIsKeep) {
  auto m = one(R"({"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":5,"coupon":"X1"}})",
               attached());
  EXPECT_TRUE(same_json(m.event->properties, R"({"revenue":5,"coupon":"X1"})"));
  EXPECT_TRUE(m.plan.violations.empty());
}

TEST(TrackingPlan, ContextViolationsAreWrittenWhenAsked) {
  auto m = one(R"({"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":"9"},
                   "context":{"app":{"name":"web"}}})",
               attached({.context_violations = true}));
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(same_json(m.event->context, R"({"app":{"name":"web"},"violations":[{"type":"Datatype-Mismatch",
      "path":"properties.revenue","rule":"#/events/Order Completed/properties/properties/properties/revenue/type",
      "message":"must be number"}]})"))
      << m.event->context;
  auto clean = one(R"({"type":"track","userId":"u1","event":"Signed Up","context":{"app":{"name":"web"}}})",
                   attached({.context_violations = true}));
  EXPECT_TRUE(same_json(clean.event->context, R"({"app":{"name":"web"}})")) << "nothing added without violations";
}

TEST(TrackingPlan, IdentifyTraitsAreCheckedWhereverTheyArrived) {
  auto a = attached();
  auto top = one(R"({"type":"identify","userId":"u1","traits":{"email":"not an email"}})", a);
  ASSERT_EQ(top.plan.violations.size(), 1u);
  EXPECT_EQ(top.plan.violations[0].path, "traits.email");
  // RudderStack's SDKs send them in context.traits only.
  auto rudder = one(R"({"type":"identify","userId":"u1","context":{"traits":{"name":"Ada"}}})", a);
  ASSERT_EQ(rudder.plan.violations.size(), 1u);
  EXPECT_EQ(rudder.plan.violations[0].type, ViolationType::RequiredMissing);
}

TEST(TrackingPlan, TheCommonSchemaAppliesToEveryMessage) {
  auto page = one(R"({"type":"page","anonymousId":"a1","name":"Home","context":{"app":"web"}})", attached());
  ASSERT_EQ(page.plan.violations.size(), 1u);
  EXPECT_EQ(page.plan.violations[0].path, "context.app");
  EXPECT_EQ(page.plan.violations[0].rule, "#/common/properties/context/properties/app/type");
  auto track = one(R"({"type":"track","userId":"u","event":"Signed Up","context":{"app":{"name":"ios"}}})", attached());
  EXPECT_TRUE(track.plan.violations.empty());
}

TEST(TrackingPlan, ABatchIsCheckedMessageByMessage) {
  Payload p = ingest(R"({"batch":[
      {"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":1}},
      {"type":"track","userId":"u1","event":"Nope"},
      {"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":2}}]})",
                     attached({.block_unplanned_events = true}));
  ASSERT_EQ(p.messages.size(), 3u);
  EXPECT_TRUE(p.messages[0].ok());
  EXPECT_FALSE(p.messages[1].ok());
  EXPECT_TRUE(p.messages[2].ok());
}

TEST(TrackingPlan, TheSpecsRulesComeFirst) {
  auto m = one(R"({"type":"track","userId":"u1"})", attached({.block_unplanned_events = true}));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.rejection.field, "event");
  EXPECT_EQ(m.plan.plan_id, 0) << "a message the Tracking API refuses is not checked against the plan";
}

TEST(TrackingPlan, ViolationsPerMessageAreBounded) {
  std::string props;
  for (int i = 0; i < 50; i++) props += (i ? "," : "") + std::string("\"p") + std::to_string(i) + "\":1";
  auto m = one(R"({"type":"track","userId":"u1","event":"Order Completed","properties":{"revenue":1,)" + props + "}}",
               attached({.omit_unplanned_properties = true}));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m.plan.violations.size(), plans::kMaxViolations);
  EXPECT_TRUE(same_json(m.event->properties, R"({"revenue":1})")) << "every unplanned one is omitted all the same";
}

TEST(TrackingPlan, PlansThatCannotBeUsedAreRefusedWithThePath) {
  EXPECT_STREQ(compile_error("[]").what(), "plan: must be a JSON object");
  EXPECT_EQ(compile_error(R"({"evnts":{}})").field(), "evnts");
  EXPECT_EQ(compile_error(R"({"events":[]})").field(), "events");
  EXPECT_EQ(compile_error(R"({"events":{"  ":{}}})").field(), "events");
  Error e = compile_error(R"({"events":{"Signed Up":{"properties":{"x":{"typo":1}}}}})");
  EXPECT_EQ(e.field(), "events.Signed Up.properties.x.typo") << e.what();
  EXPECT_EQ(compile_error(R"({"identify":{"$ref":"#/definitions/none"}})").field().rfind("identify", 0), 0u);
  EXPECT_EQ(compile_error("{").kind(), ErrorKind::MalformedJson);
}

}  // namespace
}  // namespace cdp
