// The server clock as cdp sees it: the real one, or cdp.test_clock in tests.
#pragma once
extern "C" {
#include "postgres.h"
#include "utils/timestamp.h"
}
#include "core/timestamp.hpp"

namespace cdp::pg {

TimestampTz now();

// Postgres timestamps count from 2000-01-01; the core counts from 1970-01-01.
constexpr int64 kUnixToPgMicros = INT64CONST(946684800000000);
inline TimestampTz to_pg(Micros t) { return t - kUnixToPgMicros; }
inline Micros from_pg(TimestampTz t) { return t + kUnixToPgMicros; }

}  // namespace cdp::pg
