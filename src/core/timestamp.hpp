// ISO-8601 date-times as microseconds since the Unix epoch, UTC.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cdp {

using Micros = int64_t;  // microseconds since 1970-01-01T00:00:00Z

// The instants cdp stores: years 1 to 9999, UTC (what Postgres can store and
// print as ISO 8601 both ways).
constexpr Micros kEarliest = -62'135'596'800'000'000;  // 0001-01-01T00:00:00Z
constexpr Micros kLatest = 253'402'300'799'999'999;    // 9999-12-31T23:59:59.999999Z
inline bool in_range(Micros t) { return t >= kEarliest && t <= kLatest; }
// Clamped into [kEarliest, kLatest] (a time read from storage that is out of
// range, such as Postgres' 'infinity', must not overflow arithmetic on it).
inline Micros clamp_time(Micros t) { return t < kEarliest ? kEarliest : t > kLatest ? kLatest : t; }

// Parses "2024-05-01T12:30:00.123Z", "...+02:00", "...+0200", "2024-05-01 12:30:00"
// (no offset means UTC) and plain dates "2024-05-01". Returns nullopt for
// anything else, including impossible dates (2023-02-29) and instants outside
// years 1..9999 in UTC ("0001-01-01T00:00+01:00" is in year 0); when
// `out_of_range` is given it tells the last case apart.
std::optional<Micros> parse_iso8601(std::string_view text, bool* out_of_range = nullptr);

// The rule a rejected date-time broke, for error messages.
inline const char* iso8601_rule(bool out_of_range) {
  return out_of_range ? "must fall within years 1 to 9999 (UTC)" : "must be an ISO-8601 date-time string";
}

// Formats as "2024-05-01T12:30:00.123000Z".
std::string format_iso8601(Micros t);

}  // namespace cdp
