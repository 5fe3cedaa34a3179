// ISO-8601 date-times as microseconds since the Unix epoch, UTC.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cdp {

using Micros = int64_t;  // microseconds since 1970-01-01T00:00:00Z

// Parses "2024-05-01T12:30:00.123Z", "...+02:00", "...+0200", "2024-05-01 12:30:00"
// (no offset means UTC) and plain dates "2024-05-01". Returns nullopt for
// anything else, including impossible dates (2023-02-29) and years outside 1..9999.
std::optional<Micros> parse_iso8601(std::string_view text);

// Formats as "2024-05-01T12:30:00.123000Z".
std::string format_iso8601(Micros t);

}  // namespace cdp
