// Destinations: made and checked in destinations.cpp, events queued for them
// in queue.cpp, reshaped by their transformations (transform.cpp), sent by the
// delivery worker (worker.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/delivery_round.hpp"
#include "core/identity.hpp"

namespace cdp::pg::delivery {

// In the processor's batch transaction: queues each event for the
// destinations that subscribe to it and whose consent it carries.
// `bound[i]` is the profile of events[i] (0: none); `txids[i]` its txid.
void queue_events(const std::vector<EventFacts>& events, const std::vector<std::string>& txids,
                  const std::vector<int64_t>& bound);

// Throws cdp::Error (field "url") unless libcurl reads the URL as http(s) with a host.
void check_url(const std::string& url);
// Throws cdp::Error naming options.<path> when the options do not parse, or
// when their transformation is no function (jsonb) returns jsonb that the
// destination's owner may run.
void check_options(const std::string& options, const std::string& owner);
void check_transform(const std::string& function, const std::string& owner);
// The URL of the options' kind, for create_destination(name, null, options);
// throws (field "url") when it has none.
std::string default_url(const std::string& options);

// In the worker's main, before connecting: the timeout transformations run under.
void register_transform_timeout();
// Inside a transaction: runs `function` (options.transform) over the rows'
// payloads as `owner` and sets each row's payload or fate (core/delivery_round.hpp).
void transform(const std::string& function, const std::string& owner, int timeout_ms,
               std::vector<cdp::delivery::QueuedRow*>& rows);

void define_gucs();
void register_workers();

}  // namespace cdp::pg::delivery
