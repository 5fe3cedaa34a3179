// Microbenchmarks of the validation core: what one request costs before any
// database work. Run: build/cdp_microbench (Google Benchmark flags apply,
// e.g. --benchmark_repetitions=5 --benchmark_min_time=2).
#include <string>

#include <benchmark/benchmark.h>

#include "core/payload.hpp"
#include "core/timestamp.hpp"

namespace {

// A track call as analytics.js sends it, about 600 bytes.
std::string track_message(int i) {
  std::string n = std::to_string(i);
  return R"({"type":"track","event":"Order Completed","userId":"user-)" + n +
         R"(","anonymousId":"5a1e7f3c-2b0d-4f6e-9c8a-1d2e3f4a5b6c","messageId":"ajs-next-)" + n +
         R"(-9f8e7d6c5b4a39281706f5e4d3c2b1a0","timestamp":"2024-05-01T12:30:00.123Z",)"
         R"("sentAt":"2024-05-01T12:30:01.456Z","properties":{"orderId":"ord_)" + n +
         R"(","total":129.95,"currency":"EUR","coupon":"SPRING","products":[{"sku":"A-1","price":59.95},{"sku":"B-2","price":70}]},)"
         R"("context":{"library":{"name":"analytics.js","version":"next-1.64.0"},"ip":"203.0.113.7",)"
         R"("locale":"fr-FR","userAgent":"Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0",)"
         R"("page":{"path":"/checkout"}},"integrations":{"All":true}})";
}

std::string batch_body(int n) {
  std::string body = R"({"writeKey":"wk_0123456789abcdef","sentAt":"2024-05-01T12:30:02Z","batch":[)";
  for (int i = 0; i < n; i++) {
    if (i) body += ',';
    body += track_message(i);
  }
  return body + "]}";
}

cdp::PayloadOptions options() {
  cdp::PayloadOptions o;
  o.received_at = *cdp::parse_iso8601("2024-05-01T12:30:00Z");
  return o;
}

void BM_ParseSingleTrack(benchmark::State& state) {
  const std::string body = track_message(1);
  const cdp::PayloadOptions opts = options();
  for (auto _ : state) {
    cdp::Payload p = cdp::parse_payload(body, opts);
    if (p.accepted() != 1) state.SkipWithError("message rejected");
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
  state.counters["body_bytes"] = static_cast<double>(body.size());
}
BENCHMARK(BM_ParseSingleTrack);

void BM_ParseBatch100(benchmark::State& state) {
  const std::string body = batch_body(100);
  const cdp::PayloadOptions opts = options();
  for (auto _ : state) {
    cdp::Payload p = cdp::parse_payload(body, opts);
    if (p.accepted() != 100) state.SkipWithError("messages rejected");
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations() * 100);  // items/s = messages/s
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(body.size()));
  state.counters["body_bytes"] = static_cast<double>(body.size());
}
BENCHMARK(BM_ParseBatch100);

void BM_ParseIso8601(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(cdp::parse_iso8601("2024-05-01T12:30:00.123+02:00"));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseIso8601);

}  // namespace
