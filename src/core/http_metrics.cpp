#include "core/http_metrics.hpp"

#include <cstdio>
#include <string>

namespace cdp {

namespace {

template <class Slot, size_t K>
void clear_slots(Slot (&slots)[K]) {
  for (auto& t : slots) {
    t.id = 0;
    t.named = false;
    t.name[0] = '\0';
    for (auto& a : t.counts) a = 0;
  }
  std::snprintf(slots[K - 1].name, sizeof slots[K - 1].name, "%s", "(other)");  // the overflow
  slots[K - 1].named = true;
}

// The slot of `id`: its own, a free one it takes now, or the overflow.
template <class Slot, size_t K, class Name>
Slot& claim_slot(Slot (&slots)[K], int64_t id, const Name& name) {
  for (size_t k = 0; k < K - 1; k++) {
    Slot& t = slots[k];
    int64_t seen = t.id.load(std::memory_order_acquire);
    if (seen == 0 && t.id.compare_exchange_strong(seen, id)) {  // this process takes the slot
      std::snprintf(t.name, sizeof t.name, "%s", name().c_str());
      t.named.store(true, std::memory_order_release);
      return t;
    }
    if (seen == id) return t;
  }
  return slots[K - 1];
}

}  // namespace

void HttpMetrics::reset() {
  for (auto& a : requests) a = 0;
  for (auto& a : events) a = 0;
  for (auto& a : batch_buckets) a = 0;
  for (auto& a : commit_buckets) a = 0;
  batch_sum = batch_count = commit_sum_micros = commit_count = 0;
  queue_messages = open_connections = buffered_bytes = 0;
  connections_refused = requests_timed_out = sdk_reports = 0;
  for (auto& a : deliveries) a = 0;
  for (auto& a : delivery_buckets) a = 0;
  delivery_sum_micros = delivery_count = 0;
  clear_slots(tokens);
  clear_slots(plan_sources);
  lookups_unauthorized = 0;
}

void HttpMetrics::count_lookup(int64_t token_id, const std::string& token_name, int http_status) {
  auto& slot = claim_slot(tokens, token_id, [&] { return token_name; });
  int i = 0;
  while (i < kNumLookupCodes && kLookupCodes[i] != http_status) i++;
  slot.counts[i].fetch_add(1, std::memory_order_relaxed);
}

void HttpMetrics::count_violations(int64_t source_id, const std::function<std::string()>& source_name,
                                   const plans::Verdict& verdict) {
  if (verdict.violations.empty()) return;
  auto& slot = claim_slot(plan_sources, source_id, source_name);
  for (auto& v : verdict.violations) slot.counts[static_cast<int>(v.type)].fetch_add(1, std::memory_order_relaxed);
  if (verdict.blocked) slot.counts[plans::kNumViolationTypes].fetch_add(1, std::memory_order_relaxed);
}

void HttpMetrics::count_deliveries(DeliveryOutcome outcome, uint64_t n) {
  if (n) deliveries[outcome].fetch_add(n, std::memory_order_relaxed);
}

void HttpMetrics::observe_delivery(double seconds) {
  int i = 0;
  while (i < kNumDeliveryBuckets && seconds > kDeliveryBuckets[i]) i++;
  delivery_buckets[i].fetch_add(1, std::memory_order_relaxed);
  delivery_sum_micros.fetch_add(static_cast<uint64_t>(seconds * 1e6), std::memory_order_relaxed);
  delivery_count.fetch_add(1, std::memory_order_relaxed);
}

void HttpMetrics::count_request(int http_status) {
  int i = 0;
  while (i < kNumCodes && kCodes[i] != http_status) i++;
  requests[i].fetch_add(1, std::memory_order_relaxed);
}

void HttpMetrics::count_events(int status_index, uint64_t n) {
  if (n) events[status_index].fetch_add(n, std::memory_order_relaxed);
}

void HttpMetrics::observe_batch(size_t messages) {
  int i = 0;
  while (i < kNumBatchBuckets && messages > kBatchBuckets[i]) i++;
  batch_buckets[i].fetch_add(1, std::memory_order_relaxed);
  batch_sum.fetch_add(messages, std::memory_order_relaxed);
  batch_count.fetch_add(1, std::memory_order_relaxed);
}

void HttpMetrics::observe_commit(double seconds) {
  int i = 0;
  while (i < kNumCommitBuckets && seconds > kCommitBuckets[i]) i++;
  commit_buckets[i].fetch_add(1, std::memory_order_relaxed);
  commit_sum_micros.fetch_add(static_cast<uint64_t>(seconds * 1e6), std::memory_order_relaxed);
  commit_count.fetch_add(1, std::memory_order_relaxed);
}

namespace {

void line(std::string& out, const char* fmt, auto... args) {
  char buf[1024];
  std::snprintf(buf, sizeof buf, fmt, args...);
  out += buf;
}

template <size_t N>
void histogram(std::string& out, const char* name, const char* help, const double (&bounds)[N],
               const std::atomic<uint64_t>* buckets, double sum, uint64_t count) {
  line(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < N; i++) {
    cumulative += buckets[i].load(std::memory_order_relaxed);
    line(out, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], static_cast<unsigned long long>(cumulative));
  }
  cumulative += buckets[N].load(std::memory_order_relaxed);
  line(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %g\n%s_count %llu\n", name,
       static_cast<unsigned long long>(cumulative), name, sum, name,
       static_cast<unsigned long long>(count));
}

}  // namespace

std::string HttpMetrics::render() const {
  std::string out;
  out.reserve(4096);
  out += "# HELP cdp_http_requests_total HTTP requests answered, by status code.\n"
         "# TYPE cdp_http_requests_total counter\n";
  for (int i = 0; i <= kNumCodes; i++) {
    uint64_t n = requests[i].load(std::memory_order_relaxed);
    if (i < kNumCodes)
      line(out, "cdp_http_requests_total{code=\"%d\"} %llu\n", kCodes[i], static_cast<unsigned long long>(n));
    else
      line(out, "cdp_http_requests_total{code=\"other\"} %llu\n", static_cast<unsigned long long>(n));
  }
  out += "# HELP cdp_http_events_total Messages received over HTTP, by outcome.\n"
         "# TYPE cdp_http_events_total counter\n";
  const char* names[] = {"accepted", "duplicate", "rejected"};
  for (int i = 0; i < 3; i++)
    line(out, "cdp_http_events_total{status=\"%s\"} %llu\n", names[i],
         static_cast<unsigned long long>(events[i].load(std::memory_order_relaxed)));
  histogram(out, "cdp_http_request_messages", "Messages per request.", kBatchBuckets, batch_buckets,
            static_cast<double>(batch_sum.load()), batch_count.load());
  histogram(out, "cdp_http_commit_seconds", "Time from a request queued to its transaction committed.",
            kCommitBuckets, commit_buckets, commit_sum_micros.load() / 1e6, commit_count.load());
  line(out,
       "# HELP cdp_http_queue_messages Messages validated and waiting for commit.\n"
       "# TYPE cdp_http_queue_messages gauge\ncdp_http_queue_messages %lld\n"
       "# HELP cdp_http_open_connections Open client connections.\n"
       "# TYPE cdp_http_open_connections gauge\ncdp_http_open_connections %lld\n"
       "# HELP cdp_http_buffered_bytes Request bytes held in memory.\n"
       "# TYPE cdp_http_buffered_bytes gauge\ncdp_http_buffered_bytes %lld\n",
       static_cast<long long>(queue_messages.load()), static_cast<long long>(open_connections.load()),
       static_cast<long long>(buffered_bytes.load()));
  line(out,
       "# HELP cdp_http_connections_refused_total Connections answered 503 at once: past cdp.http_max_connections.\n"
       "# TYPE cdp_http_connections_refused_total counter\ncdp_http_connections_refused_total %llu\n"
       "# HELP cdp_http_requests_timed_out_total Requests cut for not arriving whole within cdp.http_request_timeout.\n"
       "# TYPE cdp_http_requests_timed_out_total counter\ncdp_http_requests_timed_out_total %llu\n"
       "# HELP cdp_http_sdk_reports_total Reports SDKs sent about themselves (/v1/m): counted, not stored.\n"
       "# TYPE cdp_http_sdk_reports_total counter\ncdp_http_sdk_reports_total %llu\n",
       static_cast<unsigned long long>(connections_refused.load()),
       static_cast<unsigned long long>(requests_timed_out.load()),
       static_cast<unsigned long long>(sdk_reports.load()));
  line(out,
       "# HELP cdp_deliveries_total Delivery outcomes, all destinations (per destination: cdp.destination_stats).\n"
       "# TYPE cdp_deliveries_total counter\n"
       "cdp_deliveries_total{outcome=\"delivered\"} %llu\ncdp_deliveries_total{outcome=\"failed_attempt\"} %llu\n"
       "cdp_deliveries_total{outcome=\"dead\"} %llu\n",
       static_cast<unsigned long long>(deliveries[0].load()), static_cast<unsigned long long>(deliveries[1].load()),
       static_cast<unsigned long long>(deliveries[2].load()));
  out += "# HELP cdp_profile_lookups_total Profile API lookups by access token and HTTP status.\n"
         "# TYPE cdp_profile_lookups_total counter\n";
  for (const auto& t : tokens) {
    if (!t.named.load(std::memory_order_acquire)) continue;
    for (int i = 0; i <= kNumLookupCodes; i++) {
      uint64_t n = t.counts[i].load(std::memory_order_relaxed);
      if (n == 0) continue;
      line(out, "cdp_profile_lookups_total{token=\"%s\",status=\"%s\"} %llu\n", t.name,
           i < kNumLookupCodes ? std::to_string(kLookupCodes[i]).c_str() : "other",
           static_cast<unsigned long long>(n));
    }
  }
  line(out,
       "# HELP cdp_profile_lookups_unauthorized_total Profile API lookups with an unknown or revoked token (401).\n"
       "# TYPE cdp_profile_lookups_unauthorized_total counter\ncdp_profile_lookups_unauthorized_total %llu\n",
       static_cast<unsigned long long>(lookups_unauthorized.load()));
  out += "# HELP cdp_tracking_plan_violations_total Tracking plan violations found in stored or blocked messages, by source and type.\n"
         "# TYPE cdp_tracking_plan_violations_total counter\n";
  std::string blocked;
  for (const auto& t : plan_sources) {
    if (!t.named.load(std::memory_order_acquire)) continue;
    for (int i = 0; i < plans::kNumViolationTypes; i++)
      if (uint64_t n = t.counts[i].load(std::memory_order_relaxed))
        line(out, "cdp_tracking_plan_violations_total{source=\"%s\",type=\"%s\"} %llu\n", t.name,
             plans::violation_type_name(static_cast<plans::ViolationType>(i)), static_cast<unsigned long long>(n));
    if (uint64_t n = t.counts[plans::kNumViolationTypes].load(std::memory_order_relaxed))
      line(blocked, "cdp_tracking_plan_blocked_total{source=\"%s\"} %llu\n", t.name, static_cast<unsigned long long>(n));
  }
  out += "# HELP cdp_tracking_plan_blocked_total Messages quarantined for breaking their source's tracking plan.\n"
         "# TYPE cdp_tracking_plan_blocked_total counter\n" + blocked;
  histogram(out, "cdp_delivery_seconds", "Time from queueing a delivery to its acknowledgement.", kDeliveryBuckets,
            delivery_buckets, delivery_sum_micros.load() / 1e6, delivery_count.load());
  return out;
}

}  // namespace cdp
