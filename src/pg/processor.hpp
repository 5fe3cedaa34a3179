// The processor: identity resolution, profiles and traits (see processor.cpp).
#pragma once

namespace cdp::pg {

void define_processor_gucs();
// Also installs the shared-memory hooks the commit wake-up needs.
void register_processor();
// Call when this transaction wrote events: its commit wakes the processor.
void note_events_written();

}  // namespace cdp::pg
