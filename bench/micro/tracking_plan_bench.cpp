// Microbenchmarks of tracking plans: what checking one message against a
// plan adds to validating it (bench/micro/payload_bench.cpp's track call,
// a 20-event plan). Run: build/cdp_microbench --benchmark_filter=Validate
#include <string>

#include <benchmark/benchmark.h>
#include <rapidjson/document.h>

#include "core/json_util.hpp"
#include "core/message.hpp"
#include "core/tracking_plan.hpp"

namespace {

constexpr const char* kMessage =
    R"({"type":"track","event":"Order Completed","userId":"user-1","anonymousId":"5a1e7f3c-2b0d-4f6e-9c8a-1d2e3f4a5b6c",)"
    R"("messageId":"ajs-next-1-9f8e7d6c5b4a39281706f5e4d3c2b1a0","timestamp":"2024-05-01T12:30:00.123Z",)"
    R"("sentAt":"2024-05-01T12:30:01.456Z","properties":{"orderId":"ord_1","total":129.95,"currency":"EUR",)"
    R"("coupon":"SPRING","products":[{"sku":"A-1","price":59.95},{"sku":"B-2","price":70}]},)"
    R"("context":{"library":{"name":"analytics.js","version":"next-1.64.0"},"ip":"203.0.113.7",)"
    R"("locale":"fr-FR","userAgent":"Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0","page":{"path":"/checkout"}},)"
    R"("integrations":{"All":true}})";

// Order Completed as a team would plan it, and 19 other events.
std::string plan_text(bool strict_total) {
  std::string order = R"({"properties":{"properties":{"type":"object","required":["orderId","total"],"properties":{
      "orderId":{"type":"string","pattern":"^ord_"},"total":{"type":)" +
                      std::string(strict_total ? R"("integer")" : R"("number","minimum":0)") + R"(},
      "currency":{"enum":["EUR","USD","GBP"]},"coupon":{"type":"string","maxLength":20},
      "products":{"type":"array","items":{"type":"object","required":["sku"],
        "properties":{"sku":{"type":"string"},"price":{"type":"number","minimum":0}}}}}}}})";
  std::string events = "\"Order Completed\":" + order;
  for (int i = 1; i < 20; i++)
    events += ",\"Event " + std::to_string(i) +
              R"(":{"properties":{"properties":{"type":"object","required":["id"],"properties":{"id":{"type":"string"},"value":{"type":"number"}}}}})";
  return R"({"events":{)" + events + R"(},"common":{"properties":{"context":{"type":"object"}}}})";
}

void run(benchmark::State& state, const cdp::plans::Attached* plan, size_t want_violations) {
  rapidjson::Document msg;
  cdp::parse_json(msg, kMessage, cdp::Numbers::Exact);
  cdp::MessageContext ctx;
  ctx.received_at = 1'714'566'600'000'000;
  ctx.plan = plan;
  for (auto _ : state) {
    cdp::MessageOutcome m = cdp::validate_message(msg, ctx);
    if (!m.ok() || m.plan.violations.size() != want_violations) state.SkipWithError("unexpected verdict");
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(state.iterations());
}

cdp::plans::Attached attached(bool strict) {
  cdp::plans::Attached a;
  a.plan_id = 1, a.version = 1, a.name = "bench";
  a.plan = cdp::plans::Plan::compile(std::string_view(plan_text(strict)));
  return a;
}

void BM_ValidateWithoutPlan(benchmark::State& state) { run(state, nullptr, 0); }
BENCHMARK(BM_ValidateWithoutPlan);

void BM_ValidateWithPlan(benchmark::State& state) {
  static const cdp::plans::Attached a = attached(false);
  run(state, &a, 0);
}
BENCHMARK(BM_ValidateWithPlan);

// total 129.95 breaks "integer": one violation recorded per message.
void BM_ValidateWithPlanOneViolation(benchmark::State& state) {
  static const cdp::plans::Attached a = attached(true);
  run(state, &a, 1);
}
BENCHMARK(BM_ValidateWithPlanOneViolation);

}  // namespace
