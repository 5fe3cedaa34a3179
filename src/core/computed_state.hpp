// The binary form of aggregate state (cdp.profile_computed.state, bytea):
// what a profile keeps per computed trait and per segment event counter,
// written and read by cdp alone. It replaces the JSON text of 0.1.0, which is
// still read (Audience::read) and rewritten in this form.
//
// One aggregate's buckets, oldest first, as LEB128 varints (signed ones
// zigzag-coded):
//   start (delta from the previous bucket's start), count, then by kind:
//   sum / avg / min / max   the number, 8 bytes little-endian IEEE 754
//   first / last            at, event_id, value length, value (compact JSON)
//   most_frequent / unique  n, then n times: length, value, number
// A bucket of a count counter is two or three bytes; the JSON it replaces
// was about twenty.
//
// Evaluation reads it in place (StateView): counts, sums, expiry and the
// window check walk the bytes without allocating; only a change (a new
// event, a merge, a bucket leaving its window) decodes it into a State.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/computed.hpp"

namespace cdp::computed {

// Appends the state's bytes to `out` (nothing for an empty state).
void encode_state(const Definition& d, const State& s, std::string& out);
// Throws cdp::Error(InvalidInput, "state") on bytes this version did not write.
State decode_state(const Definition& d, std::string_view bytes);

// One aggregate's encoded state, read in place. Empty: no buckets.
struct StateView {
  std::string_view bytes;
  bool empty() const { return bytes.empty(); }
};

// The same answers as the functions of computed.hpp over decode_state(v),
// without decoding (value() decodes for first, last, most_frequent and
// unique, whose values are JSON text anyway).
bool any_expired(const Definition& d, StateView v, Micros now);  // expire() would drop a bucket
std::optional<Micros> next_expiry(const Definition& d, StateView v);
int64_t count(const Definition& d, StateView v, Micros now);
std::string value(const Definition& d, StateView v, Micros now);
// The value as a number when the kind is numeric (count, sum, min, max,
// avg): int64 when value() prints an integer, else the double it prints;
// nullopt when value() is null or the kind is not numeric.
struct Number {
  bool integral = false;
  int64_t integer = 0;
  double real = 0;
};
std::optional<Number> number_value(const Definition& d, StateView v, Micros now);

// Little-endian LEB128 helpers, shared with the profile state's framing.
void put_varint(std::string& out, uint64_t v);
// Reads one varint at `at` (advancing it); throws as decode_state when the bytes end early.
uint64_t get_varint(std::string_view bytes, size_t& at);
inline uint64_t zigzag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
inline int64_t unzigzag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

}  // namespace cdp::computed
