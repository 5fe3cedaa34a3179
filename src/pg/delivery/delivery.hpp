// Destinations: made and checked in destinations.cpp, events queued for them
// in queue.cpp, sent by the delivery worker (worker.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/identity.hpp"

namespace cdp::pg::delivery {

// In the processor's batch transaction: queues each event for the
// destinations that subscribe to it and whose consent it carries.
// `bound[i]` is the profile of events[i] (0: none); `txids[i]` its txid.
void queue_events(const std::vector<EventFacts>& events, const std::vector<std::string>& txids,
                  const std::vector<int64_t>& bound);

// Throws cdp::Error (field "url") unless libcurl reads the URL as http(s) with a host.
void check_url(const std::string& url);
// Throws cdp::Error naming options.<path> when the options do not parse.
void check_options(const std::string& options);

void define_gucs();
void register_workers();

}  // namespace cdp::pg::delivery
