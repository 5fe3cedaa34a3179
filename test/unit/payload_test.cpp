// Whole request bodies (core/payload.hpp): one message or a {"batch": [...]}
// envelope. Payload-level faults throw cdp::Error and keep nothing;
// message-level faults reject that message and the others go on.
#include <regex>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using test::at;
using test::same_json;

PayloadOptions options() {
  PayloadOptions o;
  o.received_at = at("2024-05-01T12:00:00Z");
  return o;
}

Payload parse(std::string_view body, const PayloadOptions& opts = options()) {
  return parse_payload(body, opts);
}

// Runs parse_payload and returns the Error it throws; fails the test if none.
Error error_of(std::string_view body, const PayloadOptions& opts = options()) {
  try {
    parse_payload(body, opts);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no cdp::Error for: " << body.substr(0, 200);
  return Error(ErrorKind::Internal, "", "no error");
}

std::string track(int i) {
  return R"({"type":"track","userId":"u)" + std::to_string(i) + R"(","event":"e"})";
}

std::string batch_of(int n) {
  std::string body = R"({"batch":[)";
  for (int i = 0; i < n; i++) {
    if (i) body += ',';
    body += track(i);
  }
  return body + "]}";
}

// ---------------------------------------------------------------- shapes

TEST(Payload, ASingleMessage) {
  Payload p = parse(R"({"type":"track","userId":"u1","event":"Signed Up"})");
  EXPECT_FALSE(p.is_batch);
  ASSERT_EQ(p.messages.size(), 1u);
  ASSERT_TRUE(p.messages[0].ok());
  EXPECT_EQ(p.messages[0].event->event, "Signed Up");
  EXPECT_EQ(p.messages[0].event->received_at, at("2024-05-01T12:00:00Z"));
  EXPECT_EQ(p.accepted(), 1u);
}

TEST(Payload, ASingleBadMessageIsRejectedNotThrown) {
  Payload p = parse(R"({"type":"track","userId":"u1"})");
  ASSERT_EQ(p.messages.size(), 1u);
  EXPECT_FALSE(p.messages[0].ok());
  EXPECT_EQ(p.messages[0].rejection.field, "event");
  EXPECT_EQ(p.accepted(), 0u);
}

TEST(Payload, ABatchKeepsItsOrderAndRejectsOnlyTheBadOnes) {
  Payload p = parse(R"({"batch":[
      {"type":"identify","userId":"u1"},
      {"type":"track","userId":"u1"},
      {"type":"page","anonymousId":"a1"}]})");
  EXPECT_TRUE(p.is_batch);
  ASSERT_EQ(p.messages.size(), 3u);
  EXPECT_EQ(p.messages[0].event->type, MessageType::Identify);
  EXPECT_FALSE(p.messages[1].ok());
  EXPECT_EQ(p.messages[1].rejection.field, "event");
  EXPECT_EQ(p.messages[2].event->type, MessageType::Page);
  EXPECT_EQ(p.accepted(), 2u);
}

TEST(Payload, AnEmptyBatchIsFine) {
  Payload p = parse(R"({"batch":[]})");
  EXPECT_TRUE(p.is_batch);
  EXPECT_TRUE(p.messages.empty());
}

TEST(Payload, BatchMustBeAnArray) {
  Error e = error_of(R"({"batch":{"type":"track"}})");
  EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
  EXPECT_EQ(e.field(), "batch");
}

TEST(Payload, ANonObjectBatchElementIsRejectedAlone) {
  Payload p = parse(R"({"batch":[42,{"type":"identify","userId":"u1"}]})");
  ASSERT_EQ(p.messages.size(), 2u);
  EXPECT_EQ(p.messages[0].rejection.field, "message");
  EXPECT_EQ(p.messages[0].rejection.raw, "42");
  EXPECT_TRUE(p.messages[1].ok());
}

TEST(Payload, MalformedJsonThrowsMalformedJson) {
  for (const char* body : {"", "{", R"({"type":"track",})", R"({"a":})", "{'a':1}", "nul",
                           R"({"type":"track"} {"type":"track"})", R"({"a":"unterminated)",
                           "[1,2", "{}}"}) {
    Error e = error_of(body);
    EXPECT_EQ(e.kind(), ErrorKind::MalformedJson) << body << " -> " << e.what();
    EXPECT_EQ(e.field(), "payload");
  }
}

TEST(Payload, MalformedJsonNamesTheOffset) {
  Error e = error_of(R"({"type":"track",})");
  EXPECT_NE(std::string(e.what()).find("offset 16"), std::string::npos) << e.what();
}

TEST(Payload, InvalidUtf8IsMalformed) {
  EXPECT_EQ(error_of("{\"userId\":\"\xC3\x28\"}").kind(), ErrorKind::MalformedJson);
  EXPECT_EQ(error_of("{\"userId\":\"\xED\xA0\x80\"}").kind(), ErrorKind::MalformedJson)
      << "raw surrogate bytes";
}

TEST(Payload, UnpairedSurrogateEscapesAreMalformed) {
  // Postgres refuses both in jsonb, and a lone low surrogate would otherwise
  // decode into bytes that are not UTF-8 at all.
  EXPECT_EQ(error_of(R"({"type":"identify","userId":"\ud800"})").kind(), ErrorKind::MalformedJson);
  EXPECT_EQ(error_of(R"({"type":"identify","userId":"\udc00"})").kind(), ErrorKind::MalformedJson);
  EXPECT_EQ(error_of(R"({"batch":[{"type":"identify","userId":"u1","traits":{"\uDFFF":1}}]})").kind(),
            ErrorKind::MalformedJson);
  // A proper pair is an ordinary character.
  Payload p = parse(R"({"type":"identify","userId":"\ud83d\ude00"})");
  ASSERT_TRUE(p.messages[0].ok());
  EXPECT_EQ(p.messages[0].event->user_id, "\xF0\x9F\x98\x80");
}

TEST(Payload, NumbersKeepTheirValue) {
  // RapidJSON 1.1.0 alone reads 0e-101 as -4.7e21 and 0e40 as -2.4e229.
  Payload p = parse(R"({"type":"track","userId":"u1","event":"x","properties":{
      "a":0e-101,"b":0.0000000000000000000000000,"c":-0E-30,"d":0e40,"e":0.0,"s":"0e-101",
      "f":1e-30,"g":0.5e-30,"h":129.95,"i":-7,"j":1e-400}})");
  ASSERT_TRUE(p.messages[0].ok());
  EXPECT_EQ(p.messages[0].event->properties,
            R"({"a":0.0,"b":0.0,"c":-0.0,"d":0.0,"e":0.0,"s":"0e-101","f":1e-30,"g":5e-31,)"
            R"("h":129.95,"i":-7,"j":0.0})");
}

TEST(Payload, ANumberPastTheDoubleRangeIsMalformed) {
  // Rather than infinity (which has no JSON text) or garbage.
  Error e = error_of(R"({"type":"track","userId":"u1","event":"x","properties":{"n":1.8e308}})");
  EXPECT_EQ(e.kind(), ErrorKind::MalformedJson);
  EXPECT_NE(std::string(e.what()).find("Number too big"), std::string::npos) << e.what();
  EXPECT_EQ(error_of(R"({"type":"identify","userId":20000000000000000000e308})").kind(),
            ErrorKind::MalformedJson);
}

TEST(Payload, NonObjectPayloadsAreInvalidInput) {
  for (const char* body : {"[]", R"([{"type":"track","userId":"u1","event":"x"}])", R"("track")",
                           "42", "null", "true"}) {
    Error e = error_of(body);
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput) << body;
    EXPECT_EQ(e.field(), "payload") << body;
    EXPECT_NE(std::string(e.what()).find("must be a JSON object"), std::string::npos);
  }
}

// ---------------------------------------------------------------- nesting

std::string nested_properties(int levels) {
  // {"type":..,"properties": {"a":{"a":...{}}}}: the payload object is level 1,
  // properties level 2, so `levels` objects in properties give depth levels + 1.
  std::string open, close;
  for (int i = 1; i < levels; i++) {
    open += R"({"a":)";
    close += "}";
  }
  return R"({"type":"track","userId":"u1","event":"x","properties":)" + open + "{}" + close + "}";
}

TEST(Nesting, SixtyFourLevelsAreAccepted) {
  std::string body = nested_properties(63);
  ASSERT_EQ(json_depth(body), kMaxJsonDepth);
  Payload p = parse(body);
  EXPECT_TRUE(p.messages[0].ok()) << p.messages[0].rejection.reason();
}

TEST(Nesting, SixtyFiveLevelsAreRefused) {
  std::string body = nested_properties(64);
  ASSERT_EQ(json_depth(body), kMaxJsonDepth + 1);
  Error e = error_of(body);
  EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
  EXPECT_EQ(e.field(), "payload");
  EXPECT_NE(std::string(e.what()).find("deeper than 64"), std::string::npos) << e.what();
}

TEST(Nesting, AHundredThousandBracketsDoNotOverflowTheStack) {
  std::string body = std::string(100'000, '[') + std::string(100'000, ']');
  EXPECT_EQ(error_of(body).kind(), ErrorKind::InvalidInput);
  EXPECT_EQ(error_of(std::string(200'000, '[')).kind(), ErrorKind::InvalidInput);
}

TEST(Nesting, BracketsInsideStringsDoNotCount) {
  std::string body = R"({"type":"track","userId":"u1","event":")" + std::string(1000, '[') + "\"}";
  EXPECT_TRUE(parse(body).messages[0].ok());
}

// ---------------------------------------------------------------- limits

TEST(PayloadLimits, TwoThousandFiveHundredMessagesAreAccepted) {
  Payload p = parse(batch_of(2500));
  EXPECT_EQ(p.messages.size(), 2500u);
  EXPECT_EQ(p.accepted(), 2500u);
}

TEST(PayloadLimits, TwoThousandFiveHundredAndOneMessagesAreTooLarge) {
  Error e = error_of(batch_of(2501));
  EXPECT_EQ(e.kind(), ErrorKind::TooLarge);
  EXPECT_EQ(e.field(), "batch");
  EXPECT_NE(std::string(e.what()).find("2501"), std::string::npos) << e.what();
}

TEST(PayloadLimits, APayloadOf500KbIsAcceptedAndOneByteMoreIsTooLarge) {
  std::string body = batch_of(100);
  ASSERT_LT(body.size(), 500u * 1024);
  body.resize(500 * 1024, ' ');  // trailing whitespace is valid JSON
  EXPECT_EQ(parse(body).accepted(), 100u);
  body += ' ';
  Error e = error_of(body);
  EXPECT_EQ(e.kind(), ErrorKind::TooLarge);
  EXPECT_EQ(e.field(), "payload");
  EXPECT_NE(std::string(e.what()).find("512001 bytes"), std::string::npos) << e.what();
}

TEST(PayloadLimits, SizeIsCheckedBeforeParsing) {
  // Not even JSON, but too big is what it is told.
  EXPECT_EQ(error_of(std::string(600 * 1024, '{')).kind(), ErrorKind::TooLarge);
}

TEST(PayloadLimits, A33KbMessageInABatchIsRejectedAndTheOthersAccepted) {
  std::string big = R"({"type":"track","userId":"big","event":"x","properties":{"blob":")" +
                    std::string(33 * 1024, 'x') + "\"}}";
  std::string body = R"({"batch":[)" + track(1) + "," + big + "," + track(2) + "]}";
  Payload p = parse(body);
  ASSERT_EQ(p.messages.size(), 3u);
  EXPECT_TRUE(p.messages[0].ok());
  EXPECT_FALSE(p.messages[1].ok());
  EXPECT_EQ(p.messages[1].rejection.field, "message");
  EXPECT_NE(p.messages[1].rejection.rule.find("limit of 32768"), std::string::npos);
  EXPECT_EQ(p.messages[1].rejection.raw, big);
  EXPECT_TRUE(p.messages[2].ok());
  EXPECT_EQ(p.accepted(), 2u);
}

TEST(PayloadLimits, LimitsComeFromTheOptions) {
  PayloadOptions o = options();
  o.limits.max_batch_messages = 2;
  EXPECT_EQ(error_of(batch_of(3), o).kind(), ErrorKind::TooLarge);
  o.limits.max_payload_bytes = 10;
  EXPECT_EQ(error_of(track(1), o).kind(), ErrorKind::TooLarge);
}

// ---------------------------------------------------------------- writeKey

TEST(WriteKey, TakenFromTheBodyOfASingleMessage) {
  Payload p = parse(R"({"writeKey":"wk_123","type":"identify","userId":"u1"})");
  EXPECT_EQ(p.write_key, "wk_123");
  EXPECT_TRUE(p.messages[0].ok());
}

TEST(WriteKey, TakenFromTheBatchEnvelope) {
  Payload p = parse(R"({"writeKey":"wk_456","batch":[{"type":"identify","userId":"u1"}]})");
  EXPECT_EQ(p.write_key, "wk_456");
}

TEST(WriteKey, AbsentOrNullIsEmpty) {
  EXPECT_EQ(parse(R"({"type":"identify","userId":"u1"})").write_key, "");
  EXPECT_EQ(parse(R"({"writeKey":null,"type":"identify","userId":"u1"})").write_key, "");
}

TEST(WriteKey, MustBeAString) {
  Error e = error_of(R"({"writeKey":123,"type":"identify","userId":"u1"})");
  EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
  EXPECT_EQ(e.field(), "writeKey");
}

TEST(WriteKey, ANulIsRefusedRatherThanCutShort) {
  // As a C string "wk_123\u0000x" would read "wk_123", someone else's key.
  Error e = error_of(R"({"writeKey":"wk_123\u0000x","type":"identify","userId":"u1"})");
  EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
  EXPECT_EQ(e.field(), "writeKey");
}

TEST(WriteKey, RemovedFromQuarantinedRawText) {
  Payload p = parse(R"({"writeKey":"wk_secret","type":"track","userId":"u1"})");
  ASSERT_FALSE(p.messages[0].ok());
  EXPECT_EQ(p.write_key, "wk_secret");
  EXPECT_EQ(p.messages[0].rejection.raw.find("wk_secret"), std::string::npos)
      << p.messages[0].rejection.raw;
  EXPECT_TRUE(same_json(p.messages[0].rejection.raw, R"({"type":"track","userId":"u1"})"));
}

TEST(WriteKey, RemovedFromQuarantinedBatchMessagesToo) {
  Payload p = parse(R"({"batch":[{"writeKey":"wk_inner","type":"track","userId":"u1"}]})");
  ASSERT_FALSE(p.messages[0].ok());
  EXPECT_EQ(p.messages[0].rejection.raw.find("wk_inner"), std::string::npos);
}

// ---------------------------------------------------------------- implied type

TEST(ImpliedType, TheEndpointWinsForASingleMessage) {
  PayloadOptions o = options();
  o.implied_type = MessageType::Identify;
  Payload p = parse(R"({"type":"track","userId":"u1"})", o);
  ASSERT_TRUE(p.messages[0].ok()) << p.messages[0].rejection.reason();
  EXPECT_EQ(p.messages[0].event->type, MessageType::Identify);
}

TEST(ImpliedType, BatchMessagesNameTheirOwnType) {
  PayloadOptions o = options();
  o.implied_type = MessageType::Identify;
  Payload p = parse(R"({"batch":[{"type":"track","userId":"u1","event":"x"},{"userId":"u2"}]})", o);
  EXPECT_EQ(p.messages[0].event->type, MessageType::Track);
  EXPECT_EQ(p.messages[1].rejection.field, "type");
}

// ---------------------------------------------------------------- envelope

TEST(BatchEnvelope, ContextIsMergedIntoEachMessageAndMessageKeysWin) {
  Payload p = parse(R"({"context":{"library":{"name":"analytics-python"},"ip":"10.0.0.1"},
      "integrations":{"All":true},
      "batch":[{"type":"identify","userId":"u1","context":{"ip":"192.0.2.1"}},
               {"type":"identify","userId":"u2","integrations":{"All":false}}]})");
  ASSERT_EQ(p.accepted(), 2u);
  EXPECT_TRUE(same_json(p.messages[0].event->context,
                        R"({"ip":"192.0.2.1","library":{"name":"analytics-python"}})"))
      << p.messages[0].event->context;
  EXPECT_TRUE(same_json(p.messages[0].event->integrations, R"({"All":true})"));
  EXPECT_TRUE(same_json(p.messages[1].event->context,
                        R"({"ip":"10.0.0.1","library":{"name":"analytics-python"}})"));
  EXPECT_TRUE(same_json(p.messages[1].event->integrations, R"({"All":false})"));
}

TEST(BatchEnvelope, ContextAndIntegrationsMustBeObjects) {
  Error e = error_of(R"({"context":"x","batch":[]})");
  EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
  EXPECT_EQ(e.field(), "context");
  EXPECT_EQ(error_of(R"({"integrations":[],"batch":[]})").field(), "integrations");
  EXPECT_NO_THROW(parse(R"({"context":null,"batch":[]})"));
}

TEST(BatchEnvelope, ANulInTheEnvelopeIsRefusedWithItsPath) {
  // It would be copied into every message's context, which jsonb cannot hold.
  Error e = error_of(R"({"context":{"page":{"title":"a\u0000b"}},
      "batch":[{"type":"identify","userId":"u1"}]})");
  EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
  EXPECT_EQ(e.field(), "context.page.title");
  EXPECT_EQ(error_of(R"({"integrations":{"\u0000":true},"batch":[]})").field(),
            R"(integrations.\u0000)");
}

TEST(BatchEnvelope, SentAtAppliesToMessagesWithoutTheirOwn) {
  // receivedAt 12:00:00; the envelope was sent at 12:10:00 by the client's
  // clock; events at 12:09:00 and 12:09:30 by that clock.
  Payload p = parse(R"({"sentAt":"2024-05-01T12:10:00Z","batch":[
      {"type":"identify","userId":"u1","timestamp":"2024-05-01T12:09:00Z"},
      {"type":"identify","userId":"u2","originalTimestamp":"2024-05-01T12:09:30Z"},
      {"type":"identify","userId":"u3","timestamp":"2024-05-01T12:09:00Z",
       "sentAt":"2024-05-01T12:09:10Z"}]})");
  ASSERT_EQ(p.accepted(), 3u);
  EXPECT_EQ(p.messages[0].event->timestamp, at("2024-05-01T11:59:00Z"));
  EXPECT_EQ(p.messages[0].event->sent_at, at("2024-05-01T12:10:00Z"));
  EXPECT_EQ(p.messages[1].event->timestamp, at("2024-05-01T11:59:30Z"));
  EXPECT_EQ(p.messages[2].event->timestamp, at("2024-05-01T11:59:50Z")) << "its own sentAt wins";
  EXPECT_EQ(p.messages[2].event->sent_at, at("2024-05-01T12:09:10Z"));
}

TEST(BatchEnvelope, SentAtMustBeIso8601) {
  for (const char* body : {R"({"sentAt":"soon","batch":[]})", R"({"sentAt":17,"batch":[]})"}) {
    Error e = error_of(body);
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput) << body;
    EXPECT_EQ(e.field(), "sentAt") << body;
  }
}

// ---------------------------------------------------------------- NUL

TEST(PayloadNul, InABatchMessageRejectsThatMessageWithItsPath) {
  Payload p = parse(R"({"batch":[
      {"type":"track","userId":"u1","event":"x","properties":{"tags":["ok","bad\u0000"]}},
      {"type":"track","userId":"u2","event":"x"}]})");
  ASSERT_EQ(p.messages.size(), 2u);
  EXPECT_FALSE(p.messages[0].ok());
  EXPECT_EQ(p.messages[0].rejection.field, "properties.tags[1]");
  EXPECT_TRUE(p.messages[1].ok());
}

// ---------------------------------------------------------------- messageId

TEST(PayloadMessageIds, GeneratedIdsAreUuidV4AndUniqueWithinABatch) {
  const std::regex uuid4("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  Payload p = parse(batch_of(500));
  std::set<std::string> ids;
  for (auto& m : p.messages) {
    ASSERT_TRUE(m.ok());
    EXPECT_TRUE(std::regex_match(m.event->message_id, uuid4)) << m.event->message_id;
    ids.insert(m.event->message_id);
    EXPECT_FALSE(m.duplicate_in_payload);
  }
  EXPECT_EQ(ids.size(), 500u);
}

TEST(PayloadMessageIds, RepeatsWithinABatchAreFlaggedButNotTheFirst) {
  Payload p = parse(R"({"batch":[
      {"type":"identify","userId":"u1","messageId":"m1"},
      {"type":"identify","userId":"u2","messageId":"m2"},
      {"type":"identify","userId":"u3","messageId":"m1"},
      {"type":"identify","userId":"u4","messageId":"m1"}]})");
  ASSERT_EQ(p.messages.size(), 4u);
  EXPECT_FALSE(p.messages[0].duplicate_in_payload);
  EXPECT_FALSE(p.messages[1].duplicate_in_payload);
  EXPECT_TRUE(p.messages[2].duplicate_in_payload);
  EXPECT_TRUE(p.messages[3].duplicate_in_payload);
  EXPECT_TRUE(p.messages[2].ok()) << "a duplicate is valid; it is just not stored twice";
  EXPECT_EQ(p.accepted(), 2u);
}

TEST(PayloadMessageIds, ANumberAndItsTextAreTheSameId) {
  Payload p = parse(R"({"batch":[{"type":"identify","userId":"u1","messageId":7},
                                 {"type":"identify","userId":"u1","messageId":"7"}]})");
  EXPECT_FALSE(p.messages[0].duplicate_in_payload);
  EXPECT_TRUE(p.messages[1].duplicate_in_payload);
}

TEST(PayloadMessageIds, ARejectedMessageDoesNotMakeTheNextADuplicate) {
  Payload p = parse(R"({"batch":[{"type":"track","userId":"u1","messageId":"m1"},
                                 {"type":"track","userId":"u1","messageId":"m1","event":"x"}]})");
  EXPECT_FALSE(p.messages[0].ok());
  EXPECT_TRUE(p.messages[1].ok());
  EXPECT_FALSE(p.messages[1].duplicate_in_payload);
  EXPECT_EQ(p.accepted(), 1u);
}

// ---------------------------------------------------------------- numbers and ids

TEST(PayloadIds, NumberUserIdBecomesText) {
  Payload p = parse(R"({"type":"identify","userId":42})");
  EXPECT_EQ(p.messages[0].event->user_id, "42");
}

TEST(PayloadIds, BlankIdsCountAsMissing) {
  Payload p = parse(R"({"type":"identify","userId":"","anonymousId":" "})");
  EXPECT_EQ(p.messages[0].rejection.reason(), "userId: userId or anonymousId is required");
}

}  // namespace
}  // namespace cdp
