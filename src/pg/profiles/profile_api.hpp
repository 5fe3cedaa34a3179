// The Profile API's committer side: an HTTP worker's main thread answers every
// lookup waiting in its loop with one statement (cdp.profile_lookups), after
// checking each bearer token against its snapshot of cdp.access_tokens.
#pragma once
#include <vector>

namespace cdp {
struct PendingRequest;
struct HttpMetrics;
}  // namespace cdp

namespace cdp::pg::profiles {

// Fills in each lookup's status and body (its own read-only transaction;
// every answer sees the last committed processor batch). Never throws: if the
// database fails, each lookup gets a 503.
void answer_lookups(const std::vector<PendingRequest*>& lookups, HttpMetrics* metrics);

}  // namespace cdp::pg::profiles
