// The Segment Tracking-API rules for one message (core/message.hpp), as
// https://segment.com/docs/connections/spec/ states them: a known type, who
// (userId or anonymousId), the fields each type needs, object-shaped
// properties/traits/context/integrations, ISO-8601 times, size limits, and
// the clock-skew correction of the event time.
#include <regex>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace cdp {
namespace {

using test::at;
using test::same_json;
using test::validate;

// Expects a rejection of `field` whose rule mentions `rule_part`.
void expect_rejected(const MessageOutcome& out, const std::string& field,
                     const std::string& rule_part = "") {
  ASSERT_FALSE(out.ok()) << "accepted, expected a rejection of " << field;
  EXPECT_EQ(out.rejection.field, field) << out.rejection.reason();
  EXPECT_NE(out.rejection.rule.find(rule_part), std::string::npos) << out.rejection.reason();
}

// The accepted event (a copy); an empty one, and a test failure, if rejected.
Event accepted(const MessageOutcome& out) {
  EXPECT_TRUE(out.ok()) << "rejected: " << out.rejection.reason();
  return out.ok() ? *out.event : Event{};
}

// ---------------------------------------------------------------- types

TEST(MessageType, NamesRoundTrip) {
  for (auto t : {MessageType::Track, MessageType::Identify, MessageType::Page, MessageType::Screen,
                 MessageType::Group, MessageType::Alias})
    EXPECT_EQ(parse_message_type(message_type_name(t)), t) << message_type_name(t);
}

TEST(MessageType, NamesAreLowerCaseAndExact) {
  EXPECT_EQ(parse_message_type("Track"), std::nullopt);
  EXPECT_EQ(parse_message_type("track "), std::nullopt);
  EXPECT_EQ(parse_message_type(""), std::nullopt);
  EXPECT_EQ(parse_message_type("batch"), std::nullopt);
}

// RudderStack's SDKs put an identify's traits only in context.traits.
TEST(MessageRules, IdentifyTraitsFromContextWhenThereAreNoneAtTheTop) {
  Event e = accepted(validate(R"({"type":"identify","userId":"u1","context":{"traits":{"email":"a@b.c"}}})"));
  EXPECT_EQ(e.traits, R"({"email":"a@b.c"})");
  e = accepted(validate(R"({"type":"identify","userId":"u1","traits":{"plan":"pro"},"context":{"traits":{"x":1}}})"));
  EXPECT_EQ(e.traits, R"({"plan":"pro"})") << "top-level traits win";
  e = accepted(validate(R"({"type":"track","userId":"u1","event":"e","context":{"traits":{"x":1}}})"));
  EXPECT_EQ(e.traits, "") << "a track's context.traits describe the user, not the event";
  e = accepted(validate(R"({"type":"identify","userId":"u1","context":{"traits":"vip"}})"));
  EXPECT_EQ(e.traits, "") << "context is free-form: a context.traits that is not an object is left there";
}

// RudderStack's consent (context.consentManagement) is read as Segment's
// categoryPreferences, which cdp.consent and destinations' consent rules use.
TEST(MessageRules, RudderStackConsentBecomesCategoryPreferences) {
  Event e = accepted(validate(R"({"type":"track","userId":"u1","event":"e","context":{"consentManagement":)"
                              R"({"provider":"custom","allowedConsentIds":["analytics","ads"],"deniedConsentIds":["ads","marketing"]}}})"));
  EXPECT_EQ(e.context, R"({"consentManagement":{"provider":"custom","allowedConsentIds":["analytics","ads"],)"
                       R"("deniedConsentIds":["ads","marketing"]},"consent":{"categoryPreferences":)"
                       R"({"analytics":true,"ads":false,"marketing":false}}})")
      << "denied wins over allowed; consentManagement stays as sent";
  e = accepted(validate(R"({"type":"track","userId":"u1","event":"e","context":{"consent":{"categoryPreferences":{"x":true}},)"
                        R"("consentManagement":{"deniedConsentIds":["x"]}}})"));
  EXPECT_NE(e.context.find(R"("categoryPreferences":{"x":true})"), std::string::npos) << "Segment's own statement wins";
  e = accepted(validate(R"({"type":"track","userId":"u1","event":"e","context":{"consentManagement":{"allowedConsentIds":[1,""]}}})"));
  EXPECT_EQ(e.context.find("categoryPreferences"), std::string::npos) << "no usable id: nothing added";
  rapidjson::Document exact;  // as payloads are parsed: every digit kept
  ASSERT_FALSE(parse_json(exact, R"({"type":"track","userId":"u1","event":"e","context":{"n":12345678901234567890123,)"
                                 R"("consentManagement":{"allowedConsentIds":["a"]}}})", Numbers::Exact).IsError());
  e = accepted(validate_message(exact, {}));
  EXPECT_NE(e.context.find(R"("n":12345678901234567890123)"), std::string::npos) << "the copy keeps numbers exact: " << e.context;
}

TEST(MessageRules, EachTypeWithItsRequiredFieldsIsAccepted) {
  EXPECT_EQ(accepted(validate(R"({"type":"track","userId":"u1","event":"Signed Up"})")).type,
            MessageType::Track);
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":"u1"})")).type, MessageType::Identify);
  EXPECT_EQ(accepted(validate(R"({"type":"page","anonymousId":"a1"})")).type, MessageType::Page);
  EXPECT_EQ(accepted(validate(R"({"type":"screen","anonymousId":"a1"})")).type, MessageType::Screen);
  EXPECT_EQ(accepted(validate(R"({"type":"group","userId":"u1","groupId":"g1"})")).type,
            MessageType::Group);
  EXPECT_EQ(accepted(validate(R"({"type":"alias","userId":"u1","previousId":"a1"})")).type,
            MessageType::Alias);
}

TEST(MessageRules, TypeIsRequired) {
  expect_rejected(validate(R"({"userId":"u1","event":"x"})"), "type", "is required");
  expect_rejected(validate(R"({"type":null,"userId":"u1","event":"x"})"), "type", "is required");
}

TEST(MessageRules, TypeMustBeAKnownName) {
  expect_rejected(validate(R"({"type":"purchase","userId":"u1"})"), "type", "must be one of");
  expect_rejected(validate(R"({"type":"Track","userId":"u1","event":"x"})"), "type");
  expect_rejected(validate(R"({"type":1,"userId":"u1"})"), "type", "must be one of");
}

TEST(MessageRules, ImpliedTypeFromTheEndpointWinsOverTheBody) {
  MessageContext ctx;
  ctx.implied_type = MessageType::Track;
  // Posted to /v1/track, so it is a track whatever "type" says...
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":"u1","event":"x"})", ctx)).type,
            MessageType::Track);
  // ...and held to the track rules.
  expect_rejected(validate(R"({"type":"identify","userId":"u1"})", ctx), "event");
  // No "type" at all is fine, and a nonsense one is not looked at.
  EXPECT_TRUE(validate(R"({"userId":"u1","event":"x"})", ctx).ok());
  EXPECT_TRUE(validate(R"({"type":42,"userId":"u1","event":"x"})", ctx).ok());
}

TEST(MessageRules, MessageMustBeAnObject) {
  for (const char* m : {"[]", "42", R"("track")", "true"})
    expect_rejected(validate(m), "message", "must be a JSON object");
}

// ---------------------------------------------------------------- who

TEST(IdRules, UserIdOrAnonymousIdIsRequired) {
  expect_rejected(validate(R"({"type":"identify"})"), "userId", "userId or anonymousId is required");
  expect_rejected(validate(R"({"type":"identify","traits":{"email":"a@b.c"}})"), "userId");
}

TEST(IdRules, EitherOneIsEnough) {
  Event e1 = accepted(validate(R"({"type":"identify","userId":"u1"})"));
  EXPECT_EQ(e1.user_id, "u1");
  EXPECT_EQ(e1.anonymous_id, "");
  Event e2 = accepted(validate(R"({"type":"identify","anonymousId":"a1"})"));
  EXPECT_EQ(e2.user_id, "");
  EXPECT_EQ(e2.anonymous_id, "a1");
}

TEST(IdRules, BlankIdsCountAsMissing) {
  expect_rejected(validate(R"({"type":"identify","userId":"","anonymousId":"  "})"), "userId");
  expect_rejected(validate(R"({"type":"identify","userId":"\t\n"})"), "userId");
  expect_rejected(validate(R"({"type":"identify","userId":null,"anonymousId":null})"), "userId");
  // A blank userId next to a real anonymousId is simply absent.
  Event e = accepted(validate(R"({"type":"identify","userId":" ","anonymousId":"a1"})"));
  EXPECT_EQ(e.user_id, "");
  EXPECT_EQ(e.anonymous_id, "a1");
}

TEST(IdRules, NonBlankIdsAreKeptVerbatim) {
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":" u1 "})")).user_id, " u1 ");
}

TEST(IdRules, NumberIdsAreNormalisedToText) {
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":42})")).user_id, "42");
  EXPECT_EQ(accepted(validate(R"({"type":"identify","anonymousId":7})")).anonymous_id, "7");
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":-3})")).user_id, "-3");
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":0})")).user_id, "0")
      << "0 is a real id, not a blank one";
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":18446744073709551615})")).user_id,
            "18446744073709551615");
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":9223372036854775807})")).user_id,
            "9223372036854775807");
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":1.5})")).user_id, "1.5");
}

TEST(IdRules, OtherIdShapesAreRejectedByName) {
  expect_rejected(validate(R"({"type":"identify","userId":true})"), "userId",
                  "must be a string or a number");
  expect_rejected(validate(R"({"type":"identify","userId":{"id":1}})"), "userId");
  expect_rejected(validate(R"({"type":"identify","userId":["u1"]})"), "userId");
  expect_rejected(validate(R"({"type":"identify","userId":"u1","anonymousId":false})"),
                  "anonymousId", "must be a string or a number");
}

// ---------------------------------------------------------------- per type

TEST(TrackRules, EventIsRequired) {
  expect_rejected(validate(R"({"type":"track","userId":"u1"})"), "event", "is required for track");
  expect_rejected(validate(R"({"type":"track","userId":"u1","event":""})"), "event",
                  "is required for track");
  expect_rejected(validate(R"({"type":"track","userId":"u1","event":"   "})"), "event");
  expect_rejected(validate(R"({"type":"track","userId":"u1","event":null})"), "event");
}

TEST(TrackRules, EventMustBeAString) {
  expect_rejected(validate(R"({"type":"track","userId":"u1","event":5})"), "event",
                  "must be a string");
  expect_rejected(validate(R"({"type":"track","userId":"u1","event":["x"]})"), "event");
}

TEST(TrackRules, FieldsAreCarriedOver) {
  Event e = accepted(validate(
      R"({"type":"track","userId":"u1","anonymousId":"a1","event":"Order Completed",
          "properties":{ "total" : 9.5, "items":[1,2] },"groupId":"g7"})"));
  EXPECT_EQ(e.event, "Order Completed");
  EXPECT_EQ(e.user_id, "u1");
  EXPECT_EQ(e.anonymous_id, "a1");
  EXPECT_EQ(e.group_id, "g7") << "any call may carry the group";
  EXPECT_EQ(e.properties, R"({"total":9.5,"items":[1,2]})") << "compact JSON";
  EXPECT_EQ(e.traits, "") << "absent means SQL NULL";
  EXPECT_EQ(e.context, "");
  EXPECT_EQ(e.integrations, "");
}

TEST(AliasRules, PreviousIdIsRequired) {
  expect_rejected(validate(R"({"type":"alias","userId":"u1"})"), "previousId",
                  "is required for alias");
  expect_rejected(validate(R"({"type":"alias","userId":"u1","previousId":" "})"), "previousId");
  expect_rejected(validate(R"({"type":"alias","userId":"u1","previousId":true})"), "previousId",
                  "must be a string or a number");
  EXPECT_EQ(accepted(validate(R"({"type":"alias","userId":"u1","previousId":99})")).previous_id,
            "99");
}

TEST(GroupRules, GroupIdIsRequired) {
  expect_rejected(validate(R"({"type":"group","userId":"u1"})"), "groupId", "is required for group");
  expect_rejected(validate(R"({"type":"group","userId":"u1","groupId":""})"), "groupId");
  expect_rejected(validate(R"({"type":"group","userId":"u1","groupId":[]})"), "groupId");
  Event e = accepted(validate(R"({"type":"group","userId":"u1","groupId":12,"traits":{"plan":"pro"}})"));
  EXPECT_EQ(e.group_id, "12");
  EXPECT_EQ(e.traits, R"({"plan":"pro"})");
}

TEST(GroupRules, GroupIdOnOtherCallsIsCheckedToo) {
  expect_rejected(validate(R"({"type":"identify","userId":"u1","groupId":{}})"), "groupId");
}

TEST(PageRules, NameAndCategoryAreOptionalStrings) {
  Event e = accepted(validate(
      R"({"type":"page","anonymousId":"a1","name":"Pricing","category":"Docs","properties":{"path":"/pricing"}})"));
  EXPECT_EQ(e.name, "Pricing");
  EXPECT_EQ(e.category, "Docs");
  EXPECT_EQ(e.properties, R"({"path":"/pricing"})");
  expect_rejected(validate(R"({"type":"page","anonymousId":"a1","name":3})"), "name", "must be a string");
  expect_rejected(validate(R"({"type":"screen","anonymousId":"a1","category":{}})"), "category");
}

// ---------------------------------------------------------------- objects

TEST(ObjectFields, MustBeObjectsWhenPresent) {
  expect_rejected(validate(R"({"type":"track","userId":"u1","event":"x","properties":[1]})"),
                  "properties", "must be a JSON object");
  expect_rejected(validate(R"({"type":"identify","userId":"u1","traits":"vip"})"), "traits",
                  "must be a JSON object");
  expect_rejected(validate(R"({"type":"identify","userId":"u1","context":1})"), "context",
                  "must be a JSON object");
  expect_rejected(validate(R"({"type":"identify","userId":"u1","integrations":[]})"),
                  "integrations", "must be a JSON object");
}

TEST(ObjectFields, NullMeansAbsent) {
  Event e = accepted(validate(
      R"({"type":"track","userId":"u1","event":"x","properties":null,"context":null})"));
  EXPECT_EQ(e.properties, "");
  EXPECT_EQ(e.context, "");
}

TEST(ObjectFields, EmptyObjectsAreKept) {
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":"u1","traits":{}})")).traits, "{}");
}

// ---------------------------------------------------------------- messageId

TEST(MessageId, KeptWhenGiven) {
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":"u1","messageId":"m-1"})")).message_id,
            "m-1");
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":"u1","messageId":123})")).message_id,
            "123");
}

TEST(MessageId, GeneratedWhenAbsentOrBlank) {
  const std::regex uuid4("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  for (const char* m : {R"({"type":"identify","userId":"u1"})",
                        R"({"type":"identify","userId":"u1","messageId":""})",
                        R"({"type":"identify","userId":"u1","messageId":null})"}) {
    Event e = accepted(validate(m));
    EXPECT_TRUE(std::regex_match(e.message_id, uuid4)) << e.message_id;
  }
}

TEST(MessageId, AtMost255Characters) {
  std::string ok(255, 'm'), too_long(256, 'm');
  EXPECT_TRUE(validate(R"({"type":"identify","userId":"u1","messageId":")" + ok + "\"}").ok());
  expect_rejected(validate(R"({"type":"identify","userId":"u1","messageId":")" + too_long + "\"}"),
                  "messageId", "at most 255");
}

TEST(MessageId, MustBeAStringOrNumber) {
  expect_rejected(validate(R"({"type":"identify","userId":"u1","messageId":true})"), "messageId",
                  "must be a string or a number");
}

TEST(MessageId, RejectionRemembersAUsableMessageId) {
  auto out = validate(R"({"type":"track","userId":"u1","messageId":"m-9"})");
  expect_rejected(out, "event");
  EXPECT_EQ(out.rejection.message_id, "m-9");
  EXPECT_EQ(validate(R"({"type":"track","userId":"u1"})").rejection.message_id, "")
      << "no id is made up for a rejected message";
}

TEST(NewMessageId, IsAVersion4Uuid) {
  const std::regex uuid4("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  for (int i = 0; i < 1000; i++) {
    std::string id = new_message_id();
    ASSERT_TRUE(std::regex_match(id, uuid4)) << id;
  }
}

TEST(NewMessageId, IsUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 100'000; i++) ids.insert(new_message_id());
  EXPECT_EQ(ids.size(), 100'000u);
}

// ---------------------------------------------------------------- times

TEST(Times, MustBeIso8601Strings) {
  expect_rejected(validate(R"({"type":"identify","userId":"u1","timestamp":"yesterday"})"),
                  "timestamp", "ISO-8601");
  expect_rejected(validate(R"({"type":"identify","userId":"u1","timestamp":1714566600})"),
                  "timestamp", "ISO-8601");
  expect_rejected(validate(R"({"type":"identify","userId":"u1","originalTimestamp":"2023-02-29T00:00:00Z"})"),
                  "originalTimestamp", "ISO-8601");
  expect_rejected(validate(R"({"type":"identify","userId":"u1","sentAt":"2024-05-01T12:00:00Zjunk"})"),
                  "sentAt", "ISO-8601");
}

TEST(Times, ReceivedAtIsTheServersNeverTheClients) {
  MessageContext ctx;
  ctx.received_at = at("2024-05-01T12:00:00Z");
  Event e = accepted(validate(
      R"({"type":"identify","userId":"u1","receivedAt":"1999-01-01T00:00:00Z"})", ctx));
  EXPECT_EQ(e.received_at, at("2024-05-01T12:00:00Z"));
}

TEST(Times, NoClientTimeMeansReceivedAt) {
  MessageContext ctx;
  ctx.received_at = at("2024-05-01T12:00:00Z");
  Event e = accepted(validate(R"({"type":"identify","userId":"u1"})", ctx));
  EXPECT_EQ(e.timestamp, ctx.received_at);
  EXPECT_EQ(e.original_timestamp, std::nullopt);
  EXPECT_EQ(e.sent_at, std::nullopt);
}

TEST(Times, WithoutSentAtTheClientTimeIsTakenAsIs) {
  MessageContext ctx;
  ctx.received_at = at("2024-05-01T12:00:00Z");
  Event e = accepted(validate(
      R"({"type":"identify","userId":"u1","timestamp":"2024-04-30T08:00:00+02:00"})", ctx));
  EXPECT_EQ(e.timestamp, at("2024-04-30T06:00:00Z")) << "a historical import keeps its time";
  EXPECT_EQ(e.original_timestamp, at("2024-04-30T06:00:00Z"));
}

TEST(ClockSkew, CorrectedWithConcreteNumbers) {
  // The client's clock runs 5 minutes fast. It says the event happened at
  // 12:04:00 and was sent at 12:05:00 (its clock); the server received it at
  // 12:00:10 (true time). The event happened 60 s before the send, so at
  // 12:00:10 - 60 s = 11:59:10 true time.
  MessageContext ctx;
  ctx.received_at = at("2024-05-01T12:00:10Z");
  Event e = accepted(validate(R"({"type":"track","userId":"u1","event":"x",
      "originalTimestamp":"2024-05-01T12:04:00Z","sentAt":"2024-05-01T12:05:00Z"})", ctx));
  EXPECT_EQ(e.timestamp, at("2024-05-01T11:59:10Z"));
  EXPECT_EQ(format_iso8601(e.timestamp), "2024-05-01T11:59:10.000000Z");
  EXPECT_EQ(e.original_timestamp, at("2024-05-01T12:04:00Z")) << "kept uncorrected";
  EXPECT_EQ(e.sent_at, at("2024-05-01T12:05:00Z")) << "kept uncorrected";
  EXPECT_EQ(e.received_at, at("2024-05-01T12:00:10Z"));
}

TEST(ClockSkew, SlowClockAndMilliseconds) {
  // Clock 1 h slow, in another zone: event at 10:59:59.250+01:00 (= 09:59:59.250Z),
  // sent at 11:00:00.000+01:00 (= 10:00:00Z); 750 ms between them.
  MessageContext ctx;
  ctx.received_at = at("2024-05-01T11:00:00.100Z");
  Event e = accepted(validate(R"({"type":"identify","userId":"u1",
      "originalTimestamp":"2024-05-01T10:59:59.250+01:00","sentAt":"2024-05-01T11:00:00.000+01:00"})",
                              ctx));
  EXPECT_EQ(e.timestamp, at("2024-05-01T10:59:59.350Z"));
  EXPECT_EQ(ctx.received_at - e.timestamp, 750'000) << "the client's interval is kept exactly";
}

TEST(ClockSkew, TimestampServesAsOriginalTimestampWhenThatIsAbsent) {
  MessageContext ctx;
  ctx.received_at = at("2024-05-01T12:00:00Z");
  Event e = accepted(validate(R"({"type":"identify","userId":"u1",
      "timestamp":"2030-01-01T00:00:00Z","sentAt":"2030-01-01T00:00:30Z"})", ctx));
  EXPECT_EQ(e.original_timestamp, at("2030-01-01T00:00:00Z"));
  EXPECT_EQ(e.timestamp, at("2024-05-01T11:59:30Z"));
}

TEST(ClockSkew, OriginalTimestampWinsOverTimestamp) {
  MessageContext ctx;
  ctx.received_at = at("2024-05-01T12:00:00Z");
  Event e = accepted(validate(R"({"type":"identify","userId":"u1",
      "timestamp":"2000-01-01T00:00:00Z",
      "originalTimestamp":"2024-05-01T12:09:00Z","sentAt":"2024-05-01T12:10:00Z"})", ctx));
  EXPECT_EQ(e.original_timestamp, at("2024-05-01T12:09:00Z"));
  EXPECT_EQ(e.timestamp, at("2024-05-01T11:59:00Z"));
}

TEST(ClockSkew, SentAtWithoutAnEventTimeChangesNothing) {
  MessageContext ctx;
  ctx.received_at = at("2024-05-01T12:00:00Z");
  Event e = accepted(validate(R"({"type":"identify","userId":"u1","sentAt":"2024-05-01T13:00:00Z"})",
                              ctx));
  EXPECT_EQ(e.timestamp, ctx.received_at);
  EXPECT_EQ(e.sent_at, at("2024-05-01T13:00:00Z"));
}

TEST(ClockSkew, EnvelopeSentAtAppliesToMessagesWithoutTheirOwn) {
  MessageContext ctx;
  ctx.received_at = at("2024-05-01T12:00:00Z");
  ctx.batch_sent_at = at("2024-05-01T12:02:00Z");
  Event e = accepted(validate(
      R"({"type":"identify","userId":"u1","timestamp":"2024-05-01T12:01:00Z"})", ctx));
  EXPECT_EQ(e.sent_at, at("2024-05-01T12:02:00Z"));
  EXPECT_EQ(e.timestamp, at("2024-05-01T11:59:00Z"));

  Event own = accepted(validate(R"({"type":"identify","userId":"u1",
      "timestamp":"2024-05-01T12:01:00Z","sentAt":"2024-05-01T12:01:30Z"})", ctx));
  EXPECT_EQ(own.sent_at, at("2024-05-01T12:01:30Z")) << "the message's own sentAt wins";
  EXPECT_EQ(own.timestamp, at("2024-05-01T11:59:30Z"));
}

TEST(ClockSkew, ACorrectionOutsideYears1To9999IsRejected) {
  // sentAt eight thousand years after the event would put it before year 1:
  // nothing a database can store, so the message goes to quarantine.
  MessageContext ctx;
  ctx.received_at = at("2024-05-01T12:00:00Z");
  auto out = validate(R"({"type":"identify","userId":"u1",
      "originalTimestamp":"0001-01-01T00:00:00Z","sentAt":"9999-01-01T00:00:00Z"})", ctx);
  expect_rejected(out, "timestamp");
}

// ---------------------------------------------------------------- envelope

TEST(Envelope, ContextIsMergedAndTheMessagesKeysWin) {
  auto env = test::json(R"({"library":{"name":"analytics-node","version":"1"},"ip":"10.0.0.1"})");
  MessageContext ctx;
  ctx.batch_context = &env;
  Event e = accepted(validate(
      R"({"type":"identify","userId":"u1","context":{"ip":"192.0.2.7","locale":"fr-FR"}})", ctx));
  EXPECT_TRUE(same_json(e.context, R"({"ip":"192.0.2.7","locale":"fr-FR",
      "library":{"name":"analytics-node","version":"1"}})")) << e.context;
}

TEST(Envelope, MergeIsByTopLevelKeyOnly) {
  auto env = test::json(R"({"library":{"name":"analytics-node","version":"1"}})");
  MessageContext ctx;
  ctx.batch_context = &env;
  Event e = accepted(validate(
      R"({"type":"identify","userId":"u1","context":{"library":{"name":"mine"}}})", ctx));
  EXPECT_TRUE(same_json(e.context, R"({"library":{"name":"mine"}})")) << e.context;
}

TEST(Envelope, ContextIsInheritedWhenTheMessageHasNone) {
  auto env = test::json(R"({"ip":"10.0.0.1"})");
  MessageContext ctx;
  ctx.batch_context = &env;
  EXPECT_TRUE(same_json(accepted(validate(R"({"type":"identify","userId":"u1"})", ctx)).context,
                        R"({"ip":"10.0.0.1"})"));
}

TEST(Envelope, IntegrationsAreMergedTheSameWay) {
  auto env = test::json(R"({"All":false,"Mixpanel":true})");
  MessageContext ctx;
  ctx.batch_integrations = &env;
  Event e = accepted(
      validate(R"({"type":"identify","userId":"u1","integrations":{"Mixpanel":false}})", ctx));
  EXPECT_TRUE(same_json(e.integrations, R"({"All":false,"Mixpanel":false})")) << e.integrations;
}

TEST(Envelope, EmptyEnvelopeObjectsChangeNothing) {
  auto env = test::json("{}");
  MessageContext ctx;
  ctx.batch_context = &env;
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":"u1"})", ctx)).context, "");
  EXPECT_EQ(accepted(validate(R"({"type":"identify","userId":"u1","context":{"a":1}})", ctx)).context,
            R"({"a":1})");
}

// ---------------------------------------------------------------- limits

TEST(MessageLimits, AMessageOver32KbIsRejectedWithItsRawText) {
  std::string big(33 * 1024, 'x');
  std::string msg = R"({"type":"track","userId":"u1","event":"x","properties":{"blob":")" + big + "\"}}";
  auto out = validate(msg);
  expect_rejected(out, "message", "more than the limit of 32768");
  EXPECT_EQ(out.rejection.raw, msg) << "nothing silently dropped: the raw text is kept";
}

TEST(MessageLimits, TheLimitCountsTheMessageNotItsWriteKey) {
  Limits lim;
  std::string base = R"({"type":"track","userId":"u1","event":"x","properties":{"p":")";
  std::string fill(lim.max_message_bytes - base.size() - 3, 'x');  // exactly at the limit
  std::string msg = base + fill + R"("}})";
  ASSERT_EQ(msg.size(), lim.max_message_bytes);
  EXPECT_TRUE(validate(msg).ok());
  std::string with_key = msg.substr(0, msg.size() - 1) + R"(,"writeKey":"k"})";
  EXPECT_TRUE(validate(with_key).ok()) << "the writeKey is not part of the stored message";
  std::string one_more = base + fill + R"(x"}})";
  expect_rejected(validate(one_more), "message");
}

TEST(MessageLimits, AreConfigurable) {
  MessageContext ctx;
  ctx.limits.max_message_bytes = 64;
  expect_rejected(validate(R"({"type":"track","userId":"u1","event":"a fairly long event name here"})", ctx),
                  "message", "more than the limit of 64");
}

// ---------------------------------------------------------------- NUL

TEST(MessageNul, RejectedWithTheJsonPath) {
  expect_rejected(validate(R"({"type":"track","userId":"u1","event":"x",
      "properties":{"items":[{"name":"a"},{"name":"b"},{"name":"c\u0000"}]}})"),
                  "properties.items[2].name", "NUL");
  expect_rejected(validate(R"({"type":"track","userId":"u\u0000","event":"x"})"), "userId", "NUL");
  expect_rejected(validate(R"({"type":"track","userId":"u1","event":"x\u0000"})"), "event", "NUL");
  expect_rejected(validate(R"({"type":"identify","userId":"u1","context":{"ip":"\u0000"}})"),
                  "context.ip", "NUL");
}

TEST(MessageNul, AMessageIdWithANulIsNotKeptAsTheRejectionsId) {
  auto out = validate(R"({"type":"track","userId":"u1","event":"x","messageId":"m\u0000"})");
  expect_rejected(out, "messageId", "NUL");
  EXPECT_EQ(out.rejection.message_id, "") << "cdp.quarantine.message_id is text";
}

TEST(MessageNul, RawTextOfTheRejectionHoldsAnEscapeNotANul) {
  auto out = validate(R"({"type":"track","userId":"u1","event":"x\u0000"})");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.rejection.raw.find('\0'), std::string::npos);
  EXPECT_NE(out.rejection.raw.find("\\u0000"), std::string::npos);
}

TEST(MessageNul, InABareStringMessageTheFieldIsMessage) {
  auto out = validate(R"("a\u0000b")");
  expect_rejected(out, "message", "NUL");
}

// ---------------------------------------------------------------- raw text

TEST(Rejection, RawIsTheMessageWithoutItsWriteKey) {
  auto out = validate(R"({"writeKey":"secret-key","type":"track","userId":"u1","properties":{"a":1}})");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.rejection.raw.find("secret-key"), std::string::npos) << out.rejection.raw;
  EXPECT_EQ(out.rejection.raw.find("writeKey"), std::string::npos) << out.rejection.raw;
  EXPECT_TRUE(same_json(out.rejection.raw, R"({"type":"track","userId":"u1","properties":{"a":1}})"));
}

TEST(Rejection, ReasonIsFieldThenRule) {
  auto out = validate(R"({"type":"track","userId":"u1"})");
  EXPECT_EQ(out.rejection.reason(), "event: is required for track");
}

TEST(Rejection, TheFirstBrokenRuleIsReported) {
  // No type, no id, bad properties: the type is checked first.
  expect_rejected(validate(R"({"properties":1})"), "type");
  // Good type, no id: the id comes before the type's own fields.
  expect_rejected(validate(R"({"type":"track"})"), "userId");
}

}  // namespace
}  // namespace cdp
