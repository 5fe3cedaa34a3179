// The processor: identity resolution, profiles and traits (see batch.cpp).
#pragma once

namespace cdp::pg {

void define_processor_gucs();
void register_processor();
// Makes the row of cdp.processor_state again (with a WARNING) if it is
// missing. Inside pg::call, with SPI connected.
void ensure_processor_state();

}  // namespace cdp::pg
