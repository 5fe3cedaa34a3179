// One round of the delivery worker (core/delivery_round.hpp): how claimed
// rows become requests (batches, idempotency keys, resends with the same
// companions, partial batches that wait, room per destination), what each
// answer does to the queue (delete, retry with backoff, dead letter, expiry)
// and the circuit breaker's state after a round.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/delivery_round.hpp"
#include "test_support.hpp"

namespace cdp::delivery {
namespace {

using test::at;
using test::same_json;

constexpr Micros kSecond = 1000000;
const Micros kNow = at("2025-03-01T12:00:00Z");

QueuedRow row(int64_t id, int dest, std::string key = "", Micros age = 10 * kSecond, int attempts = 0) {
  QueuedRow r;
  r.id = id;
  r.profile = id % 3;
  r.dest = dest;
  r.attempts = attempts;
  r.payload = R"({"type":"track","event":"E)" + std::to_string(id) + R"(","traits":{"email":"Ada@X.com"}})";
  r.batch_key = std::move(key);
  r.created = kNow - age;
  return r;
}

Options options(std::string_view json) { return Options::parse(json); }

TEST(DeliveryRound, OneRowPerRequestWithoutBatching) {
  Options o = options("{}");
  std::vector<QueuedRow> rows{row(1, 7), row(2, 7)};
  ClaimPlan p = plan_claim(rows, {{7, {&o, 10}}}, 100, kNow);
  ASSERT_EQ(p.requests.size(), 2u);
  EXPECT_EQ(p.requests[0].key, "cdp-1-1");
  EXPECT_EQ(p.requests[1].key, "cdp-2-1");
  EXPECT_EQ(p.requests[0].body, rows[0].payload);  // sent as stored
  EXPECT_EQ(p.key_ids, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(p.keys, (std::vector<std::string>{"cdp-1-1", "cdp-2-1"}));
}

TEST(DeliveryRound, BatchesUpToMaxEventsAndAPartialOneWaits) {
  Options o = options(R"({"batch":{"max_events":2,"max_wait_ms":60000}})");
  std::vector<QueuedRow> rows{row(1, 7), row(2, 7), row(3, 7)};
  ClaimPlan p = plan_claim(rows, {{7, {&o, 10}}}, 100, kNow);
  ASSERT_EQ(p.requests.size(), 1u);  // row 3 waits: 10 s old, max_wait 60 s
  EXPECT_EQ(p.requests[0].rows, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(p.requests[0].key, "cdp-1-2");
  auto body = test::json(p.requests[0].body);
  ASSERT_TRUE(body.HasMember("batch"));
  EXPECT_EQ(body["batch"].Size(), 2u);
  rows[2].created = kNow - 61 * kSecond;  // now it has waited long enough
  p = plan_claim(rows, {{7, {&o, 10}}}, 100, kNow);
  EXPECT_EQ(p.requests.size(), 2u);
}

TEST(DeliveryRound, ResendKeepsItsKeyAndWaitsForMissingCompanions) {
  Options o = options(R"({"batch":{"max_events":3}})");
  std::vector<QueuedRow> rows{row(4, 7, "cdp-4-2", 10 * kSecond, 1), row(5, 7, "cdp-4-2", 10 * kSecond, 2),
                              row(8, 7, "cdp-8-3")};  // two of its three rows were not claimed
  ClaimPlan p = plan_claim(rows, {{7, {&o, 10}}}, 100, kNow);
  ASSERT_EQ(p.requests.size(), 1u);
  EXPECT_EQ(p.requests[0].key, "cdp-4-2");
  EXPECT_EQ(p.requests[0].attempts, 2);
  EXPECT_TRUE(p.key_ids.empty());  // its key is stored already
}

TEST(DeliveryRound, RoomAndFreeSlotsBoundTheRequests) {
  Options o = options("{}");
  std::vector<QueuedRow> rows{row(1, 7), row(2, 7), row(3, 8), row(4, 8)};
  ClaimPlan p = plan_claim(rows, {{7, {&o, 1}}, {8, {&o, 5}}}, 2, kNow);
  ASSERT_EQ(p.requests.size(), 2u);
  EXPECT_EQ(p.requests[0].dest, 7);
  EXPECT_EQ(p.requests[1].dest, 8);
}

TEST(DeliveryRound, PiiPolicyAppliesToBodies) {
  Options o = options(R"({"pii":{"hash":["traits.email"]}})");
  ClaimPlan p = plan_claim({row(1, 7)}, {{7, {&o, 1}}}, 1, kNow);
  ASSERT_EQ(p.requests.size(), 1u);
  auto body = test::json(p.requests[0].body);
  EXPECT_EQ(std::string(body["traits"]["email"].GetString()), sha256_hex("ada@x.com"));
}

Answer answer(int dest, std::vector<int64_t> ids, long status, Micros age = 10 * kSecond, int attempts = 0) {
  Answer a;
  a.dest = dest;
  a.ids = ids;
  a.created.assign(ids.size(), kNow - age);
  a.attempts = attempts;
  a.status = status;
  a.response = "nope";
  return a;
}

TEST(DeliveryRound, RecordSortsAnswersIntoDeletesRetriesAndDeadLetters) {
  Options o = options(R"({"max_age":{"hours":1}})");
  auto of = [&](int dest) -> const Options* { return dest == 7 ? &o : nullptr; };
  Answer transport = answer(7, {6}, 0);
  transport.transport_error = "Connection refused";
  std::vector<Answer> answers{answer(7, {1, 2}, 200), answer(7, {3}, 503, 10 * kSecond, 2), answer(7, {4}, 400),
                              answer(7, {5}, 500, 2 * 3600 * kSecond), transport};
  RecordWrites w = plan_record(answers, of, kNow, [] { return 0.5; });
  EXPECT_EQ(w.delivered, (std::vector<int64_t>{1, 2}));
  ASSERT_EQ(w.retries.size(), 2u);
  EXPECT_EQ(w.retries[0].id, 3);
  EXPECT_EQ(w.retries[0].status, 503);
  EXPECT_EQ(w.retries[0].error, "HTTP 503: nope");
  EXPECT_EQ(w.retries[0].at, kNow + backoff(3, 0.5, std::nullopt));
  EXPECT_EQ(w.retries[1].id, 6);
  EXPECT_EQ(w.retries[1].error, "Connection refused");
  ASSERT_EQ(w.dead.size(), 2u);
  EXPECT_EQ(w.dead[0].id, 4);  // refused: dead at once
  EXPECT_EQ(w.dead[1].id, 5);  // older than max_age: given up
  const auto& c = w.per_destination.at(7);
  EXPECT_EQ(c.delivered, 2);
  EXPECT_EQ(c.failed, 4);
  EXPECT_EQ(c.dead, 2);
  EXPECT_TRUE(c.success);
  EXPECT_TRUE(c.failure);
  EXPECT_EQ(c.latencies_ms, (std::vector<double>{10000.0, 10000.0}));
}

TEST(DeliveryRound, RetryAfterIsHonoured) {
  Answer a = answer(7, {1}, 429);
  a.retry_after = " 120\r\n";
  RecordWrites w = plan_record({a}, [](int) { return nullptr; }, kNow, [] { return 0.0; });
  ASSERT_EQ(w.retries.size(), 1u);
  EXPECT_GE(w.retries[0].at, kNow + 120 * kSecond);
}

TEST(DeliveryRound, CircuitOpensAfterRoundsOfFailuresAndASuccessClosesIt) {
  RecordWrites::PerDestination failing;
  failing.failure = true;
  Circuit c{kCircuitFailures - 1, 0};
  c = next_circuit(c.failures, failing, kNow);
  EXPECT_EQ(c.failures, kCircuitFailures);
  EXPECT_EQ(c.open_until, kNow + circuit_pause(kCircuitFailures));
  RecordWrites::PerDestination refused;  // a refused payload is not an outage
  EXPECT_EQ(next_circuit(2, refused, kNow).failures, 2);
  RecordWrites::PerDestination ok;
  ok.success = ok.failure = true;
  EXPECT_EQ(next_circuit(c.failures, ok, kNow).failures, 0);
  EXPECT_EQ(next_circuit(c.failures, ok, kNow).open_until, 0);
}

}  // namespace
}  // namespace cdp::delivery
