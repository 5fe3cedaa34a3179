// A deterministic, seeded source of realistic Segment Tracking-API messages for
// benchmarks and tests. The same options give byte-identical output on every
// platform: only std::mt19937_64 (whose sequence the standard fixes) and our
// own arithmetic on it, never the library's distributions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>

namespace cdp {

struct GeneratorOptions {
  uint64_t seed = 42;
  size_t users = 100000;          // distinct people; low numbers are more active
  double identify_share = 0.1;    // of messages; identified people only
  double page_share = 0.2;        // of messages; the rest are track
  double anonymous_share = 0.15;  // of people: never sign in, so no userId
  int64_t start_micros = 1735689600000000;  // first timestamp: 2025-01-01T00:00:00Z
  int64_t mean_gap_micros = 1000;           // mean time between messages
};

class EventGenerator {
 public:
  explicit EventGenerator(GeneratorOptions options = {});

  // One compact JSON message: track, identify or page (~670 bytes on average).
  std::string next();
  // {"batch":[...]} of the next n messages.
  std::string batch(size_t n);
  // Messages produced so far.
  uint64_t count() const { return count_; }

  // A person's stable identifiers, so tests can predict what must resolve
  // to whom. user is in [0, users); device is 0 or 1 (people use two).
  std::string user_id(uint64_t user) const;
  std::string anonymous_id(uint64_t user, unsigned device) const;
  std::string email(uint64_t user) const;
  // Whether this person never signs in (all their messages are anonymous).
  bool is_anonymous(uint64_t user) const;

 private:
  int64_t advance_clock();

  GeneratorOptions opts_;
  std::mt19937_64 rng_;
  uint64_t count_ = 0;
  int64_t clock_;
};

}  // namespace cdp
