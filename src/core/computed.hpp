// Computed traits and the event counters segments need: aggregates over a
// profile's events, kept incrementally in time buckets so that a sliding
// window drops old events without reading them again.
//
// A definition (cdp.computed_traits.definition) is a JSON object:
//   {"kind": "count"}                                        every event
//   {"kind": "sum", "event": "Order Completed", "property": "revenue",
//    "within": {"days": 30}, "where": [{"property": "currency", "op": "=", "value": "EUR"}]}
//   {"kind": "unique", "type": "page", "property": "url", "limit": 20}
// kind:     count | sum | min | max | avg | first | last | most_frequent | unique
// property: the event property (a dotted path into properties) the kind reads;
//           required by every kind but count. sum/min/max/avg read numbers and
//           skip events where it is not a number; the others take any JSON
//           value but null.
// type:     track | page | screen | identify | group; default: any.
// event:    the event's name (track) or page/screen name; default: any.
// within:   {"days"|"hours"|"minutes": N}; default: all time.
// where:    property conditions, as in segment rules (all must hold).
// limit:    unique: how many values to keep (the most recently seen), 1..1000,
//           default 100.
//
// Windows are kept in buckets of window/100 (at least one second, in whole
// seconds, aligned to the epoch). A bucket counts while now < bucket start +
// window, so an event drops out of the window up to 1% of it early, at the
// same moment for every path (incremental, recompute, segments).
//
// Values, when nothing matched in the window: count and sum 0, unique [],
// the others null. first/last order events by (timestamp, event id), so the
// result does not depend on the order events are folded in; so does unique.
// most_frequent breaks ties by the smaller value (compact JSON, bytes) and
// tracks at most kMaxDistinct values per bucket (more are ignored).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "core/message.hpp"
#include "core/segments.hpp"
#include "core/timestamp.hpp"

namespace cdp::computed {

enum class Kind : uint8_t { Count, Sum, Min, Max, Avg, First, Last, MostFrequent, Unique };
const char* kind_name(Kind k);

constexpr size_t kMaxDistinct = 1000;
constexpr size_t kDefaultUniqueLimit = 100;

// What one event offers an aggregate.
struct EventInput {
  int64_t id = 0;
  MessageType type = MessageType::Track;
  std::string_view name;                         // track: event; page/screen: name
  Micros time = 0;                               // the event's timestamp
  const rapidjson::Value* properties = nullptr;  // nullptr when none
};

struct Definition {
  Kind kind = Kind::Count;
  std::optional<MessageType> type;  // nullopt: any
  std::optional<std::string> event;
  std::vector<segments::PropertyFilter> where;
  std::string property;  // empty for count
  Micros window = 0;     // 0 = all time
  Micros bucket = 0;     // bucket width (0 for all time)
  size_t limit = kDefaultUniqueLimit;
  // Canonical JSON of everything above: equal keys, equal state.
  std::string key;

  // Throws cdp::Error(InvalidInput) with the JSON path of the bad member.
  static Definition compile(const rapidjson::Value& def);
  static Definition compile(std::string_view json_text);
  // The counter behind a segment's event condition.
  static Definition counter(const segments::EventCondition& c);

  bool matches(const EventInput& e) const noexcept;
  Micros bucket_start(Micros t) const noexcept;
  // The state's buckets still count at `now`.
  // In 128 bits: a state read back from storage may hold any time, and the
  // difference must not overflow.
  bool live(Micros bucket_start, Micros now) const noexcept {
    return window == 0 || static_cast<__int128>(now) - bucket_start < window;
  }
};

// The state of one aggregate for one profile: its buckets, oldest first.
struct Bucket {
  Micros start = 0;
  int64_t count = 0;
  double number = 0;                      // sum (sum, avg), min or max
  Micros at = 0;                          // first/last: the chosen event's time
  int64_t event_id = 0;                   // and id
  std::string value;                      // and its value (compact JSON)
  std::map<std::string, int64_t> values;  // most_frequent: value -> count; unique: value -> latest time
};

struct State {
  std::vector<Bucket> buckets;
  bool empty() const { return buckets.empty(); }
};

// Folds one event (which must match) into `s`.
void fold(const Definition& d, State& s, const EventInput& e);
// Folds another profile's state into `s` (a merge); the result is the state
// of all events of both.
void merge(const Definition& d, State& s, const State& other);
// Drops buckets that no longer count at `now`.
void expire(const Definition& d, State& s, Micros now);
// When the oldest live bucket stops counting (nullopt: never).
std::optional<Micros> next_expiry(const Definition& d, const State& s);
// Matching events in the window (count of events that passed the filters).
int64_t count(const Definition& d, const State& s, Micros now);
// The value at `now`, as compact JSON.
std::string value(const Definition& d, const State& s, Micros now);
// A numeric value as value() prints it: an integer when it is one (below
// 9e15), else 15 significant digits.
std::string number_text(double x);

// State as compact JSON, and back (throws MalformedJson / InvalidInput on a
// state this version did not write).
void write_state(const Definition& d, const State& s, std::string& out);
State read_state(const Definition& d, const rapidjson::Value& v);

}  // namespace cdp::computed
