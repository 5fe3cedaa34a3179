// The HTTP collector's background workers (see http_worker.cpp).
#pragma once

namespace cdp {
struct HttpMetrics;
}

namespace cdp::pg {

void define_http_gucs();
// Also installs the shared-memory hooks for the HTTP metrics.
void register_http_workers();
// The counters /metrics serves, in shared memory (nullptr before startup).
HttpMetrics* shared_metrics();

}  // namespace cdp::pg
