// Counters of the HTTP collector and the delivery worker, in Prometheus text format. The struct holds
// only lock-free atomics, so the glue can place one in shared memory and every
// HTTP worker process (and each of its threads) adds to the same figures.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "core/tracking_plan.hpp"

namespace cdp {

struct HttpMetrics {
  static constexpr int kCodes[] = {200, 204, 304, 400, 401, 403, 404, 405, 413, 414, 415, 431, 500, 501, 503, 505};
  static constexpr int kNumCodes = sizeof(kCodes) / sizeof(kCodes[0]);
  static constexpr double kBatchBuckets[] = {1, 10, 50, 100, 500, 1000, 2500};
  static constexpr int kNumBatchBuckets = sizeof(kBatchBuckets) / sizeof(kBatchBuckets[0]);
  static constexpr double kCommitBuckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                              0.05,  0.1,    0.25,  0.5,  1.0};
  static constexpr int kNumCommitBuckets = sizeof(kCommitBuckets) / sizeof(kCommitBuckets[0]);

  std::atomic<uint64_t> requests[kNumCodes + 1];  // last slot: any other code
  std::atomic<uint64_t> events[3];                // by MessageStatus
  std::atomic<uint64_t> batch_buckets[kNumBatchBuckets + 1];
  std::atomic<uint64_t> batch_sum, batch_count;
  std::atomic<uint64_t> commit_buckets[kNumCommitBuckets + 1];
  std::atomic<uint64_t> commit_sum_micros, commit_count;
  std::atomic<int64_t> queue_messages, open_connections, buffered_bytes;
  // Connections answered 503 at once for being past the cap; requests cut for
  // not arriving whole within cdp.http_request_timeout.
  std::atomic<uint64_t> connections_refused, requests_timed_out;
  // Reports browser SDKs send about themselves (analytics-next's /v1/m): counted, not stored.
  std::atomic<uint64_t> sdk_reports;
  // The delivery worker's outcomes (all destinations; per destination in
  // cdp.destination_stats): delivered, failed attempts, dead-lettered.
  static constexpr double kDeliveryBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300};
  static constexpr int kNumDeliveryBuckets = sizeof(kDeliveryBuckets) / sizeof(kDeliveryBuckets[0]);
  std::atomic<uint64_t> deliveries[3];
  std::atomic<uint64_t> delivery_buckets[kNumDeliveryBuckets + 1];
  std::atomic<uint64_t> delivery_sum_micros, delivery_count;

  // Profile API lookups by access token and answer (a token is a slot, taken
  // on its first use; the last slot, "(other)", counts the tokens past them)
  // and lookups refused for an unknown or revoked token.
  static constexpr int kLookupCodes[] = {200, 400, 403, 404};
  static constexpr int kNumLookupCodes = sizeof(kLookupCodes) / sizeof(kLookupCodes[0]);
  static constexpr int kTokenSlots = 64;
  static constexpr int kTokenNameBytes = 64;
  // Counters of one named thing (an access token, a source), in a slot taken
  // on first use by whichever process gets there first.
  template <int N>
  struct NamedSlot {
    std::atomic<int64_t> id;    // 0: free
    std::atomic<bool> named;    // name is written
    char name[kTokenNameBytes + 1];
    std::atomic<uint64_t> counts[N];
  };
  using TokenSlot = NamedSlot<kNumLookupCodes + 1>;  // by kLookupCodes; last: any other code
  TokenSlot tokens[kTokenSlots];
  std::atomic<uint64_t> lookups_unauthorized;

  // Tracking plan violations by source and violation type (plans::ViolationType),
  // and the messages blocked (last count); the last slot is "(other)".
  static constexpr int kSourceSlots = 64;
  using SourceSlot = NamedSlot<plans::kNumViolationTypes + 1>;
  SourceSlot plan_sources[kSourceSlots];

  HttpMetrics() { reset(); }
  void reset();
  void count_request(int http_status);
  void count_events(int status_index, uint64_t n);
  void observe_batch(size_t messages);
  void observe_commit(double seconds);
  enum DeliveryOutcome { kDelivered = 0, kFailedAttempt = 1, kDead = 2 };
  void count_deliveries(DeliveryOutcome outcome, uint64_t n);
  // Queued -> acknowledged, for each delivered message.
  void observe_delivery(double seconds);
  void count_lookup(int64_t token_id, const std::string& token_name, int http_status);
  // The violations of one message of a source (its name asked only when the
  // source takes a slot).
  void count_violations(int64_t source_id, const std::function<std::string()>& source_name,
                        const plans::Verdict& verdict);
  std::string render() const;
};

static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared-memory counters need lock-free atomics");

}  // namespace cdp
