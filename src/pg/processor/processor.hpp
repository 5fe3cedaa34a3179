// The processor: binds committed events to profiles and folds their traits
// (batch.cpp), in its own worker (worker.cpp) or in cdp.process_pending()
// (identity.cpp). What its files share is in internal.hpp.
#pragma once

namespace cdp::pg::processor {

void define_gucs();
void register_worker();

}  // namespace cdp::pg::processor
