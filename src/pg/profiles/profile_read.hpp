// The Profile API's direct read: the common lookup (traits, computed traits,
// segment names; PII clear or left out; no field list) answered by index scans from C,
// with no SQL statement to plan, initialise and run per loop. Everything
// else goes through cdp.profile_lookups, which gives the same answers
// (test/e2e/profile_api.sh compares both).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/profile_api.hpp"

namespace cdp::pg::profiles {

// Whether a lookup can be read directly.
bool reads_directly(const cdp::profiles::Lookup& l, cdp::profiles::Pii pii);

struct DirectAnswer {
  int status = 0;  // 200, 400 (no such identifier type) or 404
  int64_t profile_id = 0;
  std::string traits, computed, segments;  // JSON text; empty when not asked for
  std::string error;                       // for 400 and 404
};

// Inside a transaction: one answer per lookup, in order, read with a fresh
// snapshot (the last committed processor batch); omit_pii[i]: lookup i's
// token leaves PII members out (cdp.pii_view mode 0), else they are shown.
std::vector<DirectAnswer> read_directly(const std::vector<const cdp::profiles::Lookup*>& lookups,
                                        const std::vector<bool>& omit_pii);

}  // namespace cdp::pg::profiles
