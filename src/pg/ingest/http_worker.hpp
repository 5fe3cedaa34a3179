// The HTTP collector's background workers (see http_worker.cpp).
#pragma once

namespace cdp::pg {

void define_http_gucs();
void register_http_workers();

}  // namespace cdp::pg
