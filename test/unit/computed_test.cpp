// Computed-trait aggregates (core/computed.hpp): the value of every kind, the
// filters, sliding windows kept in buckets (down to the exact microsecond a
// bucket stops counting), unique's limit, tie-breaks, the same answer
// whatever order events are folded or merged in, states written and read
// back, and bad definitions refused with the JSON path of the bad member.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "core/computed.hpp"
#include "core/error.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using computed::Definition;
using computed::Kind;
using computed::State;
using test::at;
using test::Event;
using test::ev;
using test::json;

constexpr Micros kSecond = 1000000;
constexpr Micros kMinute = 60 * kSecond;
constexpr Micros kHour = 60 * kMinute;
constexpr Micros kDay = 24 * kHour;

const Micros kT0 = at("2025-03-01T00:00:00Z");
const Micros kNow = kT0 + kDay;


// A list of events (Documents cannot be copied out of an initializer list).
template <typename... E>
std::vector<Event> events_of(E&&... e) {
  std::vector<Event> out;
  (out.push_back(std::move(e)), ...);
  return out;
}

Definition def(std::string_view text) { return Definition::compile(text); }

// Folds the events that match, in the given order (default: as listed).
State fold_all(const Definition& d, const std::vector<Event>& events, const std::vector<size_t>& order = {}) {
  State s;
  for (size_t i = 0; i < events.size(); i++) {
    const Event& e = events[order.empty() ? i : order[i]];
    if (d.matches(e.input())) computed::fold(d, s, e.input());
  }
  return s;
}

std::string text(const Definition& d, const State& s) {
  std::string out;
  computed::write_state(d, s, out);
  return out;
}

std::string value_of(std::string_view definition, const std::vector<Event>& events, Micros now = kNow) {
  Definition d = def(definition);
  return computed::value(d, fold_all(d, events), now);
}

// The path of the error compile raises, or "<no error>".
std::string error_field(std::string_view definition) {
  try {
    Definition::compile(definition);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput) << e.what();
    return e.field();
  }
  return "<no error>";
}

// A shuffled order of n indexes.
std::vector<size_t> shuffled(size_t n, unsigned seed) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

// Three orders, a sign-up and a page view, an hour apart from kT0.
std::vector<Event> shop() {
  return events_of(
      ev(1, kT0, R"({"revenue": 10, "currency": "EUR", "sku": "a"})"),
      ev(2, kT0 + kHour, R"({"revenue": 30, "currency": "USD", "sku": "b"})"),
      ev(3, kT0 + 2 * kHour, R"({"revenue": 20, "currency": "EUR", "sku": "c"})"),
      ev(4, kT0 + 3 * kHour, R"({"plan": "pro"})", "Signed Up"),
      ev(5, kT0 + 4 * kHour, R"({"url": "/pricing"})", "Pricing", MessageType::Page));
}

// Sixty events over five days: repeated timestamps (ties for first/last),
// ids not in time order, a few values repeated, some events without a
// numeric revenue. Revenues are halves, so sums are exact in any order.
std::vector<Event> mixed() {
  const char* skus[] = {R"("a")", R"("b")", R"("c")", R"("d")", "7", "true", R"({"x":1})"};
  std::vector<Event> out;
  for (int i = 0; i < 60; i++) {
    Micros t = kT0 + (i % 17) * 7 * kHour + (i % 3) * kSecond;
    int64_t id = (i * 31) % 61 + 1;
    std::string revenue = i % 10 == 0 ? "" : i % 11 == 0 ? R"("n/a")" : std::to_string((i * 37 % 23) * 0.5 - 3);
    std::string props = std::string(R"({"sku":)") + skus[(i * 5) % 7];
    if (!revenue.empty()) props += R"(,"revenue":)" + revenue;
    props += "}";
    out.push_back(ev(id, t, props, i % 4 == 0 ? "Viewed" : "Order Completed"));
  }
  return out;
}

// Every kind, over all time and over a window that has expired some events
// at kMixedNow.
std::vector<std::string> all_kinds() {
  std::vector<std::string> bodies = {
      R"("kind":"count")",
      R"("kind":"count","event":"Order Completed")",
      R"("kind":"sum","property":"revenue")",
      R"("kind":"min","property":"revenue")",
      R"("kind":"max","property":"revenue")",
      R"("kind":"avg","property":"revenue")",
      R"("kind":"first","property":"sku")",
      R"("kind":"last","property":"sku")",
      R"("kind":"most_frequent","property":"sku")",
      R"("kind":"unique","property":"sku")",
      R"("kind":"unique","property":"sku","limit":3)",
  };
  std::vector<std::string> out;
  for (const std::string& b : bodies) {
    out.push_back("{" + b + "}");
    out.push_back("{" + b + R"(,"within":{"days":3}})");
  }
  return out;
}

const Micros kMixedNow = kT0 + 4 * kDay;

// ---------------------------------------------------------------------------
// Values of each kind
// ---------------------------------------------------------------------------

TEST(ComputedValue, Count) {
  EXPECT_EQ(value_of(R"({"kind":"count"})", shop()), "5");
  EXPECT_EQ(value_of(R"({"kind":"count","event":"Order Completed"})", shop()), "3");
}

TEST(ComputedValue, SumMinMaxAvg) {
  const char* props = R"(,"event":"Order Completed","property":"revenue"})";
  EXPECT_EQ(value_of(std::string(R"({"kind":"sum")") + props, shop()), "60");
  EXPECT_EQ(value_of(std::string(R"({"kind":"min")") + props, shop()), "10");
  EXPECT_EQ(value_of(std::string(R"({"kind":"max")") + props, shop()), "30");
  EXPECT_EQ(value_of(std::string(R"({"kind":"avg")") + props, shop()), "20");
}

TEST(ComputedValue, FractionalNumbers) {
  auto events = events_of(ev(1, kT0, R"({"revenue": 10})"), ev(2, kT0 + 1, R"({"revenue": 25})"),
                           ev(3, kT0 + 2, R"({"revenue": -0.5})"));
  EXPECT_EQ(value_of(R"({"kind":"avg","property":"revenue"})", events), "11.5");
  EXPECT_EQ(value_of(R"({"kind":"sum","property":"revenue"})", events), "34.5");
  EXPECT_EQ(value_of(R"({"kind":"min","property":"revenue"})", events), "-0.5");
}

TEST(ComputedValue, FirstAndLast) {
  EXPECT_EQ(value_of(R"({"kind":"first","property":"sku"})", shop()), R"("a")");
  EXPECT_EQ(value_of(R"({"kind":"last","property":"sku"})", shop()), R"("c")");
  EXPECT_EQ(value_of(R"({"kind":"last","property":"url"})", shop()), R"("/pricing")");
}

TEST(ComputedValue, FirstAndLastKeepAnyJsonValue) {
  auto events = events_of(ev(1, kT0, R"({"cart": {"items": [1, 2]}})"), ev(2, kT0 + 1, R"({"cart": 5})"));
  EXPECT_EQ(value_of(R"({"kind":"first","property":"cart"})", events), R"({"items":[1,2]})");
  EXPECT_EQ(value_of(R"({"kind":"last","property":"cart"})", events), "5");
}

TEST(ComputedValue, MostFrequent) {
  EXPECT_EQ(value_of(R"({"kind":"most_frequent","property":"currency"})", shop()), R"("EUR")");
}

TEST(ComputedValue, UniqueMostRecentFirst) {
  EXPECT_EQ(value_of(R"({"kind":"unique","property":"sku"})", shop()), R"(["c","b","a"])");
  EXPECT_EQ(value_of(R"({"kind":"unique","property":"currency"})", shop()), R"(["EUR","USD"])")
      << "EUR was seen last at +2h, after USD";
}

TEST(ComputedValue, NothingMatched) {
  const char* none = R"(,"event":"Never Happened")";
  auto v = [&](const char* kind, const char* property) {
    std::string d = std::string(R"({"kind":")") + kind + "\"" + none;
    if (property[0]) d += std::string(R"(,"property":")") + property + "\"";
    return value_of(d + "}", shop());
  };
  EXPECT_EQ(v("count", ""), "0");
  EXPECT_EQ(v("sum", "revenue"), "0");
  EXPECT_EQ(v("min", "revenue"), "null");
  EXPECT_EQ(v("max", "revenue"), "null");
  EXPECT_EQ(v("avg", "revenue"), "null");
  EXPECT_EQ(v("first", "sku"), "null");
  EXPECT_EQ(v("last", "sku"), "null");
  EXPECT_EQ(v("most_frequent", "sku"), "null");
  EXPECT_EQ(v("unique", "sku"), "[]");
}

TEST(ComputedValue, EmptyStateValues) {
  State empty;
  EXPECT_EQ(computed::value(def(R"({"kind":"count"})"), empty, kNow), "0");
  EXPECT_EQ(computed::value(def(R"({"kind":"sum","property":"x"})"), empty, kNow), "0");
  EXPECT_EQ(computed::value(def(R"({"kind":"avg","property":"x"})"), empty, kNow), "null");
  EXPECT_EQ(computed::value(def(R"({"kind":"unique","property":"x"})"), empty, kNow), "[]");
  EXPECT_EQ(computed::count(def(R"({"kind":"count"})"), empty, kNow), 0);
}

// ---------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------

TEST(ComputedFilter, ByType) {
  EXPECT_EQ(value_of(R"({"kind":"count","type":"page"})", shop()), "1");
  EXPECT_EQ(value_of(R"({"kind":"count","type":"track"})", shop()), "4");
  EXPECT_EQ(value_of(R"({"kind":"count","type":"screen"})", shop()), "0");
}

TEST(ComputedFilter, ByEventNameOfAnyType) {
  EXPECT_EQ(value_of(R"({"kind":"count","event":"Pricing"})", shop()), "1") << "a page's name is its event name";
  EXPECT_EQ(value_of(R"({"kind":"count","event":"Pricing","type":"track"})", shop()), "0");
  EXPECT_EQ(value_of(R"({"kind":"count","event":"Signed Up"})", shop()), "1");
  EXPECT_EQ(value_of(R"({"kind":"count","event":"signed up"})", shop()), "0") << "names are case sensitive";
}

TEST(ComputedFilter, WhereConditions) {
  EXPECT_EQ(value_of(R"({"kind":"sum","property":"revenue",
                         "where":[{"property":"currency","op":"=","value":"EUR"}]})",
                     shop()),
            "30");
  EXPECT_EQ(value_of(R"({"kind":"count","where":[{"property":"currency","op":"=","value":"EUR"},
                                                   {"property":"revenue","op":">","value":15}]})",
                     shop()),
            "1")
      << "all conditions must hold";
  EXPECT_EQ(value_of(R"({"kind":"count","where":[{"property":"currency","op":"exists"}]})", shop()), "3")
      << "events without the property fail the condition";
}

TEST(ComputedFilter, DottedPropertyPath) {
  auto events = events_of(ev(1, kT0, R"({"order": {"total": 5}})"), ev(2, kT0 + 1, R"({"order": {"total": 7}})"));
  EXPECT_EQ(value_of(R"({"kind":"sum","property":"order.total"})", events), "12");
}

TEST(ComputedFilter, NumericKindsSkipNonNumbers) {
  auto events = events_of(
      ev(1, kT0, R"({"revenue": 10})"),
      ev(2, kT0 + 1, R"({"revenue": "12"})"),
      ev(3, kT0 + 2, R"({})"),
      ev(4, kT0 + 3, R"({"revenue": null})"),
      ev(5, kT0 + 4, R"({"revenue": true})"),
      ev(6, kT0 + 5, R"({"revenue": [1]})"),
      ev(7, kT0 + 6, R"({"revenue": 5.5})"));
  Definition sum = def(R"({"kind":"sum","property":"revenue"})");
  for (const Event& e : events)
    EXPECT_EQ(sum.matches(e.input()), e.id == 1 || e.id == 7) << "event " << e.id;
  EXPECT_EQ(computed::count(sum, fold_all(sum, events), kNow), 2);
  EXPECT_EQ(value_of(R"({"kind":"sum","property":"revenue"})", events), "15.5");
  EXPECT_EQ(value_of(R"({"kind":"min","property":"revenue"})", events), "5.5");
  EXPECT_EQ(value_of(R"({"kind":"max","property":"revenue"})", events), "10");
  EXPECT_EQ(value_of(R"({"kind":"avg","property":"revenue"})", events), "7.75");
}

TEST(ComputedFilter, OtherKindsSkipOnlyMissingAndNull) {
  auto events = events_of(
      ev(1, kT0, R"({"x": null})"),
      ev(2, kT0 + 1, R"({})"),
      ev(3, kT0 + 2, R"({"x": "s"})"),
      ev(4, kT0 + 3, R"({"x": false})"));
  EXPECT_EQ(value_of(R"({"kind":"first","property":"x"})", events), R"("s")");
  EXPECT_EQ(value_of(R"({"kind":"last","property":"x"})", events), "false");
  EXPECT_EQ(value_of(R"({"kind":"unique","property":"x"})", events), R"([false,"s"])");
  EXPECT_EQ(value_of(R"({"kind":"count"})", events), "4") << "count reads no property";
}

// ---------------------------------------------------------------------------
// Windows and buckets
// ---------------------------------------------------------------------------

TEST(ComputedWindow, BucketIsOneHundredthInWholeSeconds) {
  EXPECT_EQ(def(R"({"kind":"count","within":{"days":30}})").bucket, 25920 * kSecond);
  EXPECT_EQ(def(R"({"kind":"count","within":{"days":1}})").bucket, 864 * kSecond);
  EXPECT_EQ(def(R"({"kind":"count","within":{"hours":1}})").bucket, 36 * kSecond);
  EXPECT_EQ(def(R"({"kind":"count","within":{"minutes":7}})").bucket, 4 * kSecond) << "4.2 s rounds down";
  EXPECT_EQ(def(R"({"kind":"count","within":{"minutes":1}})").bucket, kSecond) << "at least one second";
  Definition all = def(R"({"kind":"count"})");
  EXPECT_EQ(all.window, 0);
  EXPECT_EQ(all.bucket, 0);
  EXPECT_EQ(def(R"({"kind":"count","within":{"days":30}})").window, 30 * kDay);
}

TEST(ComputedWindow, BucketStartIsAlignedToTheEpoch) {
  Definition d = def(R"({"kind":"count","within":{"hours":1}})");
  Micros t = kT0 + 7 * kMinute + 123;
  Micros start = d.bucket_start(t);
  EXPECT_EQ(start % d.bucket, 0);
  EXPECT_LE(start, t);
  EXPECT_LT(t - start, d.bucket);
  EXPECT_EQ(d.bucket_start(start), start);
  EXPECT_EQ(d.bucket_start(-1), -d.bucket) << "floor before 1970";
  EXPECT_EQ(def(R"({"kind":"count"})").bucket_start(t), 0) << "all time: one bucket";
}

TEST(ComputedWindow, AlignedEventCountsUntilOneMicrosecondBeforeTheWindowEnds) {
  Definition d = def(R"({"kind":"count","within":{"days":1}})");
  Micros start = d.bucket_start(kT0 + 5 * kHour);
  State s = fold_all(d, events_of(ev(1, start)));
  EXPECT_EQ(computed::value(d, s, start), "1");
  EXPECT_EQ(computed::value(d, s, start + d.window - 1), "1");
  EXPECT_EQ(computed::value(d, s, start + d.window), "0");
  EXPECT_EQ(computed::count(d, s, start + d.window - 1), 1);
  EXPECT_EQ(computed::count(d, s, start + d.window), 0);
}

TEST(ComputedWindow, EventLaterInItsBucketLeavesWithTheBucket) {
  Definition d = def(R"({"kind":"sum","property":"n","within":{"days":1}})");
  Micros start = d.bucket_start(kT0 + 5 * kHour);
  State s = fold_all(d, events_of(ev(1, start + d.bucket - 1, R"({"n": 4})")));
  EXPECT_EQ(computed::value(d, s, start + d.window - 1), "4");
  EXPECT_EQ(computed::value(d, s, start + d.window), "0") << "up to one bucket (1%) early";
}

TEST(ComputedWindow, OnlyLiveBucketsCount) {
  Definition d = def(R"({"kind":"unique","property":"sku","within":{"days":1}})");
  Micros start = d.bucket_start(kT0);
  State s = fold_all(d, events_of(ev(1, start, R"({"sku":"old"})"), ev(2, start + 10 * d.bucket, R"({"sku":"new"})")));
  EXPECT_EQ(computed::value(d, s, start + d.window - 1), R"(["new","old"])");
  EXPECT_EQ(computed::value(d, s, start + d.window), R"(["new"])");
  EXPECT_EQ(computed::value(d, s, start + 10 * d.bucket + d.window), "[]");
}

TEST(ComputedWindow, ExpireDropsDeadBucketsAndNextExpiryFollows) {
  Definition d = def(R"({"kind":"count","within":{"days":1}})");
  Micros b0 = d.bucket_start(kT0);
  Micros b1 = b0 + 3 * d.bucket;
  State s = fold_all(d, events_of(ev(1, b0), ev(2, b0 + 5), ev(3, b1)));
  ASSERT_EQ(s.buckets.size(), 2u);
  EXPECT_EQ(computed::next_expiry(d, s), b0 + d.window);

  computed::expire(d, s, b0 + d.window - 1);
  EXPECT_EQ(s.buckets.size(), 2u) << "still live";

  computed::expire(d, s, b0 + d.window);
  ASSERT_EQ(s.buckets.size(), 1u);
  EXPECT_EQ(s.buckets.front().start, b1);
  EXPECT_EQ(computed::next_expiry(d, s), b1 + d.window);
  EXPECT_EQ(computed::count(d, s, b0 + d.window), 1);

  computed::expire(d, s, b1 + d.window);
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(computed::next_expiry(d, s), std::nullopt);
}

TEST(ComputedWindow, AllTimeNeverExpires) {
  Definition d = def(R"({"kind":"count"})");
  State s = fold_all(d, events_of(ev(1, kT0), ev(2, kT0 + 400 * kDay)));
  ASSERT_EQ(s.buckets.size(), 1u);
  EXPECT_EQ(computed::next_expiry(d, s), std::nullopt);
  computed::expire(d, s, kT0 + 100000 * kDay);
  EXPECT_EQ(s.buckets.size(), 1u);
  EXPECT_EQ(computed::value(d, s, kT0 + 100000 * kDay), "2");
}

// ---------------------------------------------------------------------------
// unique, first/last, most_frequent: limits and ties
// ---------------------------------------------------------------------------

TEST(ComputedUnique, KeepsTheLimitMostRecentlySeen) {
  auto events = events_of(
      ev(1, kT0, R"({"v":"a"})"),
      ev(2, kT0 + kMinute, R"({"v":"b"})"),
      ev(3, kT0 + 2 * kMinute, R"({"v":"c"})"),
      ev(4, kT0 + 3 * kMinute, R"({"v":"a"})"));
  EXPECT_EQ(value_of(R"({"kind":"unique","property":"v","limit":2})", events), R"(["a","c"])")
      << "a seen again last; b is the least recent";
  EXPECT_EQ(value_of(R"({"kind":"unique","property":"v","limit":1})", events), R"(["a"])");
  EXPECT_EQ(value_of(R"({"kind":"unique","property":"v"})", events), R"(["a","c","b"])");
}

TEST(ComputedUnique, LimitHoldsWhenOlderEventsArriveLate) {
  auto events = events_of(
      ev(4, kT0 + 3 * kMinute, R"({"v":"a"})"),
      ev(3, kT0 + 2 * kMinute, R"({"v":"c"})"),
      ev(2, kT0 + kMinute, R"({"v":"b"})"),
      ev(1, kT0, R"({"v":"a"})"));
  EXPECT_EQ(value_of(R"({"kind":"unique","property":"v","limit":2})", events), R"(["a","c"])");
}

TEST(ComputedUnique, DefaultLimitIsOneHundred) {
  std::vector<Event> events;
  for (int i = 0; i < 150; i++) events.push_back(ev(i + 1, kT0 + i * kSecond, "{\"v\":" + std::to_string(i) + "}"));
  Definition d = def(R"({"kind":"unique","property":"v"})");
  EXPECT_EQ(d.limit, computed::kDefaultUniqueLimit);
  rapidjson::Document v = json(computed::value(d, fold_all(d, events), kNow));
  ASSERT_TRUE(v.IsArray());
  ASSERT_EQ(v.Size(), 100u);
  EXPECT_EQ(v[0].GetInt(), 149) << "most recent first";
  EXPECT_EQ(v[99].GetInt(), 50);
}

TEST(ComputedUnique, ValuesAreJsonSoTypesStayDistinct) {
  auto events = events_of(ev(1, kT0, R"({"v":1})"), ev(2, kT0 + 1, R"({"v":"1"})"), ev(3, kT0 + 2, R"({"v":1})"));
  EXPECT_EQ(value_of(R"({"kind":"unique","property":"v"})", events), R"([1,"1"])");
}

TEST(ComputedUnique, TiesInTimeKeepAndListTheSmallerValueFirst) {
  auto events = events_of(ev(1, kT0, R"({"v":"c"})"), ev(2, kT0, R"({"v":"a"})"), ev(3, kT0, R"({"v":"b"})"));
  EXPECT_EQ(value_of(R"({"kind":"unique","property":"v","limit":2})", events), R"(["a","b"])");
  EXPECT_EQ(value_of(R"({"kind":"unique","property":"v"})", events), R"(["a","b","c"])");
}

TEST(ComputedFirstLast, TiesInTimeBrokenByEventId) {
  auto events = events_of(ev(5, kT0, R"({"v":"x"})"), ev(2, kT0, R"({"v":"y"})"), ev(9, kT0, R"({"v":"z"})"));
  for (unsigned seed = 1; seed <= 4; seed++) {
    Definition first = def(R"({"kind":"first","property":"v"})");
    Definition last = def(R"({"kind":"last","property":"v"})");
    auto order = shuffled(events.size(), seed);
    EXPECT_EQ(computed::value(first, fold_all(first, events, order), kNow), R"("y")") << "smallest id";
    EXPECT_EQ(computed::value(last, fold_all(last, events, order), kNow), R"("z")") << "largest id";
  }
}

TEST(ComputedFirstLast, TimeWinsOverEventId) {
  auto events = events_of(ev(1, kT0 + kHour, R"({"v":"late"})"), ev(100, kT0, R"({"v":"early"})"));
  EXPECT_EQ(value_of(R"({"kind":"first","property":"v"})", events), R"("early")");
  EXPECT_EQ(value_of(R"({"kind":"last","property":"v"})", events), R"("late")");
}

TEST(ComputedFirstLast, AcrossBuckets) {
  Definition first = def(R"({"kind":"first","property":"v","within":{"days":1}})");
  Definition last = def(R"({"kind":"last","property":"v","within":{"days":1}})");
  Micros start = first.bucket_start(kT0);
  auto events = events_of(ev(1, start + 5 * first.bucket, R"({"v":"newest"})"), ev(2, start, R"({"v":"oldest"})"),
                           ev(3, start + 2 * first.bucket, R"({"v":"middle"})"));
  State f = fold_all(first, events), l = fold_all(last, events);
  EXPECT_EQ(computed::value(first, f, start + 6 * first.bucket), R"("oldest")");
  EXPECT_EQ(computed::value(last, l, start + 6 * first.bucket), R"("newest")");
  EXPECT_EQ(computed::value(first, f, start + first.window), R"("middle")")
      << "once the oldest bucket has gone, the first is in the next one";
}

TEST(ComputedMostFrequent, TiesGoToTheSmallerJsonValue) {
  auto events = events_of(ev(1, kT0, R"({"v":"b"})"), ev(2, kT0 + 1, R"({"v":"a"})"), ev(3, kT0 + 2, R"({"v":"b"})"),
                           ev(4, kT0 + 3, R"({"v":"a"})"));
  EXPECT_EQ(value_of(R"({"kind":"most_frequent","property":"v"})", events), R"("a")");
  auto numbers = events_of(ev(1, kT0, R"({"v":9})"), ev(2, kT0 + 1, R"({"v":10})"));
  EXPECT_EQ(value_of(R"({"kind":"most_frequent","property":"v"})", numbers), "10") << "compared as JSON bytes";
}

TEST(ComputedMostFrequent, CountsAcrossBuckets) {
  Definition d = def(R"({"kind":"most_frequent","property":"v","within":{"days":1}})");
  Micros start = d.bucket_start(kT0);
  auto events = events_of(ev(1, start, R"({"v":"a"})"), ev(2, start + d.bucket, R"({"v":"a"})"),
                           ev(3, start + 2 * d.bucket, R"({"v":"a"})"), ev(4, start + 3 * d.bucket, R"({"v":"b"})"),
                           ev(5, start + 4 * d.bucket, R"({"v":"b"})"));
  State s = fold_all(d, events);
  EXPECT_EQ(computed::value(d, s, start + 5 * d.bucket), R"("a")") << "a 3, b 2";
  EXPECT_EQ(computed::value(d, s, start + d.window), R"("a")") << "a 2, b 2: the smaller value";
  EXPECT_EQ(computed::value(d, s, start + d.window + d.bucket), R"("b")") << "a 1, b 2";
}

// ---------------------------------------------------------------------------
// Order independence, merge and stored states
// ---------------------------------------------------------------------------

TEST(ComputedOrder, EveryKindGivesTheSameStateInAnyOrder) {
  std::vector<Event> events = mixed();
  for (const std::string& text_def : all_kinds()) {
    Definition d = def(text_def);
    State ref = fold_all(d, events);
    ASSERT_FALSE(ref.empty()) << text_def;
    for (unsigned seed = 1; seed <= 6; seed++) {
      State s = fold_all(d, events, shuffled(events.size(), seed));
      EXPECT_EQ(text(d, s), text(d, ref)) << text_def << " seed " << seed;
      EXPECT_EQ(computed::value(d, s, kMixedNow), computed::value(d, ref, kMixedNow)) << text_def << " seed " << seed;
    }
  }
}

TEST(ComputedOrder, WindowedValuesDifferFromAllTime) {
  // Guards the test above: the window really drops events at kMixedNow.
  std::vector<Event> events = mixed();
  Definition all = def(R"({"kind":"count"})");
  Definition win = def(R"({"kind":"count","within":{"days":3}})");
  EXPECT_EQ(computed::value(all, fold_all(all, events), kMixedNow), "60");
  EXPECT_NE(computed::value(win, fold_all(win, events), kMixedNow), "60");
  EXPECT_NE(computed::value(win, fold_all(win, events), kMixedNow), "0");
}

TEST(ComputedMerge, SplitAndMergedEqualsFoldedTogether) {
  std::vector<Event> events = mixed();
  for (const std::string& text_def : all_kinds()) {
    Definition d = def(text_def);
    std::string whole = text(d, fold_all(d, events));
    for (unsigned seed = 1; seed <= 4; seed++) {
      std::mt19937 rng(seed);
      std::vector<size_t> left, right;
      for (size_t i : shuffled(events.size(), seed)) (rng() % 2 ? left : right).push_back(i);
      State a, b;
      for (size_t i : left)
        if (d.matches(events[i].input())) computed::fold(d, a, events[i].input());
      for (size_t i : right)
        if (d.matches(events[i].input())) computed::fold(d, b, events[i].input());
      State ab = a, ba = b;
      computed::merge(d, ab, b);
      computed::merge(d, ba, a);
      EXPECT_EQ(text(d, ab), whole) << text_def << " seed " << seed;
      EXPECT_EQ(text(d, ba), whole) << text_def << " seed " << seed << " (merged the other way)";
    }
  }
}

TEST(ComputedMerge, IntoAnEmptyState) {
  Definition d = def(R"({"kind":"max","property":"revenue","within":{"days":3}})");
  State full = fold_all(d, mixed());
  State empty;
  computed::merge(d, empty, full);
  EXPECT_EQ(text(d, empty), text(d, full));
  State same = full;
  computed::merge(d, same, State{});
  EXPECT_EQ(text(d, same), text(d, full));
}

TEST(ComputedState, RoundTripsForEveryKind) {
  std::vector<Event> events = mixed();
  for (const std::string& text_def : all_kinds()) {
    Definition d = def(text_def);
    State s = fold_all(d, events);
    std::string written = text(d, s);
    rapidjson::Document doc = json(written);
    State back = computed::read_state(d, doc);
    EXPECT_EQ(text(d, back), written) << text_def;
    EXPECT_EQ(computed::value(d, back, kMixedNow), computed::value(d, s, kMixedNow)) << text_def;
  }
}

TEST(ComputedState, EmptyStateIsAnEmptyArray) {
  Definition d = def(R"({"kind":"count"})");
  EXPECT_EQ(text(d, State{}), "[]");
  EXPECT_TRUE(computed::read_state(d, json("[]")).empty());
}

TEST(ComputedState, LayoutPerKind) {
  Definition count = def(R"({"kind":"count"})");
  Definition sum = def(R"({"kind":"sum","property":"revenue"})");
  Definition last = def(R"({"kind":"last","property":"sku"})");
  Definition mf = def(R"({"kind":"most_frequent","property":"currency"})");
  EXPECT_EQ(text(count, fold_all(count, shop())), "[[0,5]]");
  EXPECT_EQ(text(sum, fold_all(sum, shop())), "[[0,3,60.0]]");
  EXPECT_EQ(text(last, fold_all(last, shop())), "[[0,3," + std::to_string(kT0 + 2 * kHour) + R"(,3,"\"c\""]])");
  EXPECT_EQ(text(mf, fold_all(mf, shop())), R"([[0,3,{"\"EUR\"":2,"\"USD\"":1}]])");
}

TEST(ComputedState, ReadRefusesGarbage) {
  Definition count = def(R"({"kind":"count"})");
  Definition sum = def(R"({"kind":"sum","property":"x"})");
  Definition first = def(R"({"kind":"first","property":"x"})");
  Definition uniq = def(R"({"kind":"unique","property":"x"})");
  struct Bad {
    const Definition& d;
    const char* state;
  };
  const Bad bad[] = {
      {count, "{}"},
      {count, "3"},
      {count, "[1]"},
      {count, "[[1]]"},
      {count, R"([["0",1]])"},
      {count, "[[0,1.5]]"},
      {count, "[[0,1,2]]"},
      {count, "[[5,1],[5,1]]"},
      {count, "[[5,1],[4,1]]"},
      {sum, "[[0,1]]"},
      {sum, R"([[0,1,"3"]])"},
      {first, "[[0,1,5,2]]"},
      {first, "[[0,1,5,2,3]]"},
      {uniq, "[[0,1,[]]]"},
      {uniq, R"([[0,1,{"\"a\"":"x"}]])"},
  };
  for (const Bad& b : bad) EXPECT_THROW(computed::read_state(b.d, json(b.state)), Error) << b.state;
}

// ---------------------------------------------------------------------------
// Definitions: compile errors and keys
// ---------------------------------------------------------------------------

TEST(ComputedCompile, AcceptsEveryKind) {
  const std::pair<const char*, Kind> kinds[] = {
      {R"({"kind":"count"})", Kind::Count},
      {R"({"kind":"sum","property":"x"})", Kind::Sum},
      {R"({"kind":"min","property":"x"})", Kind::Min},
      {R"({"kind":"max","property":"x"})", Kind::Max},
      {R"({"kind":"avg","property":"x"})", Kind::Avg},
      {R"({"kind":"first","property":"x"})", Kind::First},
      {R"({"kind":"last","property":"x"})", Kind::Last},
      {R"({"kind":"most_frequent","property":"x"})", Kind::MostFrequent},
      {R"({"kind":"unique","property":"x","limit":1000})", Kind::Unique},
  };
  for (auto& [text_def, kind] : kinds) {
    Definition d = def(text_def);
    EXPECT_EQ(d.kind, kind) << text_def;
    EXPECT_STREQ(computed::kind_name(d.kind), json(text_def)["kind"].GetString());
  }
}

TEST(ComputedCompile, CompilesEveryMember) {
  Definition d = def(R"({"kind":"unique","type":"page","event":"Pricing","property":"url",
                         "within":{"hours":12},"limit":20,
                         "where":[{"property":"ref","op":"starts_with","value":"ads"}]})");
  EXPECT_EQ(d.type, MessageType::Page);
  EXPECT_EQ(d.event, "Pricing");
  EXPECT_EQ(d.property, "url");
  EXPECT_EQ(d.window, 12 * kHour);
  EXPECT_EQ(d.limit, 20u);
  ASSERT_EQ(d.where.size(), 1u);
  EXPECT_EQ(d.where[0].property, "ref");
  Definition any = def(R"({"kind":"count"})");
  EXPECT_EQ(any.type, std::nullopt);
  EXPECT_EQ(any.event, std::nullopt);
  EXPECT_TRUE(any.where.empty());
}

TEST(ComputedCompile, UnknownKey) {
  EXPECT_EQ(error_field(R"({"kind":"count","vlaue":1})"), "vlaue");
}

TEST(ComputedCompile, MissingKind) {
  EXPECT_EQ(error_field(R"({})"), "kind");
  EXPECT_EQ(error_field(R"({"property":"x"})"), "kind");
}

TEST(ComputedCompile, BadKind) {
  EXPECT_EQ(error_field(R"({"kind":"median","property":"x"})"), "kind");
  EXPECT_EQ(error_field(R"({"kind":"Count"})"), "kind");
  EXPECT_EQ(error_field(R"({"kind":3})"), "kind");
}

TEST(ComputedCompile, CountTakesNoProperty) {
  EXPECT_EQ(error_field(R"({"kind":"count","property":"x"})"), "property");
}

TEST(ComputedCompile, OtherKindsNeedAProperty) {
  for (const char* kind : {"sum", "min", "max", "avg", "first", "last", "most_frequent", "unique"})
    EXPECT_EQ(error_field(std::string(R"({"kind":")") + kind + "\"}"), "property") << kind;
  EXPECT_EQ(error_field(R"({"kind":"sum","property":""})"), "property");
  EXPECT_EQ(error_field(R"({"kind":"sum","property":5})"), "property");
}

TEST(ComputedCompile, OnlyUniqueTakesALimit) {
  EXPECT_EQ(error_field(R"({"kind":"first","property":"x","limit":5})"), "limit");
  EXPECT_EQ(error_field(R"({"kind":"count","limit":5})"), "limit");
}

TEST(ComputedCompile, LimitRange) {
  EXPECT_EQ(error_field(R"({"kind":"unique","property":"x","limit":0})"), "limit");
  EXPECT_EQ(error_field(R"({"kind":"unique","property":"x","limit":1001})"), "limit");
  EXPECT_EQ(error_field(R"({"kind":"unique","property":"x","limit":2.5})"), "limit");
  EXPECT_EQ(error_field(R"({"kind":"unique","property":"x","limit":"5"})"), "limit");
  EXPECT_EQ(error_field(R"({"kind":"unique","property":"x","limit":1})"), "<no error>");
  EXPECT_EQ(error_field(R"({"kind":"unique","property":"x","limit":1000})"), "<no error>");
}

TEST(ComputedCompile, BadWindowUnit) {
  EXPECT_EQ(error_field(R"({"kind":"count","within":{"weeks":1}})"), "within.weeks");
  EXPECT_EQ(error_field(R"({"kind":"count","within":{"days":1,"hours":2}})"), "within");
  EXPECT_EQ(error_field(R"({"kind":"count","within":30})"), "within");
}

TEST(ComputedCompile, BadWindowValue) {
  EXPECT_EQ(error_field(R"({"kind":"count","within":{"days":0}})"), "within.days");
  EXPECT_EQ(error_field(R"({"kind":"count","within":{"hours":-1}})"), "within.hours");
  EXPECT_EQ(error_field(R"({"kind":"count","within":{"minutes":1.5}})"), "within.minutes");
  EXPECT_EQ(error_field(R"({"kind":"count","within":{"days":36501}})"), "within.days");
  EXPECT_EQ(error_field(R"({"kind":"count","within":{"days":36500}})"), "<no error>");
}

TEST(ComputedCompile, BadWhere) {
  EXPECT_EQ(error_field(R"({"kind":"count","where":[{"property":"x","op":"~","value":1}]})"), "where[0].op");
  EXPECT_EQ(error_field(R"({"kind":"count","where":[{"property":"x","op":"=","value":1},
                                                   {"property":"y","op":"=","vlaue":1}]})"),
            "where[1].vlaue");
  EXPECT_EQ(error_field(R"({"kind":"count","where":{"property":"x"}})"), "where");
  EXPECT_EQ(error_field(R"({"kind":"count","where":[{"property":"t","op":"<","value":{"days_ago":1}}]})"),
            "where[0].value")
      << "no relative dates in where";
}

TEST(ComputedCompile, BadTypeOrEvent) {
  EXPECT_EQ(error_field(R"({"kind":"count","type":"alias"})"), "type");
  EXPECT_EQ(error_field(R"({"kind":"count","type":"Track"})"), "type");
  EXPECT_EQ(error_field(R"({"kind":"count","event":""})"), "event");
  EXPECT_EQ(error_field(R"({"kind":"count","type":"identify"})"), "<no error>");
  EXPECT_EQ(error_field(R"({"kind":"count","type":"group"})"), "<no error>");
}

TEST(ComputedCompile, NotAnObjectOrNotJson) {
  EXPECT_EQ(error_field("[]"), "");
  EXPECT_EQ(error_field(R"("count")"), "");
  try {
    Definition::compile(std::string_view("{\"kind\":"));
    FAIL() << "malformed JSON was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::MalformedJson);
    EXPECT_EQ(e.field(), "") << "the caller names the definition";
  }
}

TEST(ComputedKey, MemberOrderAndWhereOrderDoNotMatter) {
  Definition a = def(R"({"kind":"sum","property":"revenue","event":"Order Completed","within":{"days":30},
                         "where":[{"property":"currency","op":"=","value":"EUR"},
                                  {"property":"revenue","op":">","value":5}]})");
  Definition b = def(R"({"where":[{"property":"revenue","op":">","value":5},
                                  {"property":"currency","op":"=","value":"EUR"}],
                         "within":{"days":30},"event":"Order Completed","property":"revenue","kind":"sum"})");
  EXPECT_EQ(a.key, b.key);
  Definition c = def(R"({"kind":"sum","property":"revenue","event":"Order Completed","within":{"hours":720},
                         "where":[{"property":"revenue","op":">","value":5},
                                  {"property":"currency","op":"=","value":"EUR"},
                                  {"property":"currency","op":"=","value":"EUR"}]})");
  EXPECT_EQ(a.key, c.key) << "the same window in hours, a duplicate condition";
}

TEST(ComputedKey, DefaultLimitEqualsExplicitDefault) {
  EXPECT_EQ(def(R"({"kind":"unique","property":"x"})").key, def(R"({"kind":"unique","property":"x","limit":100})").key);
}

TEST(ComputedKey, DifferentDefinitionsDifferentKeys) {
  const char* defs[] = {
      R"({"kind":"sum","property":"revenue"})",
      R"({"kind":"avg","property":"revenue"})",
      R"({"kind":"sum","property":"price"})",
      R"({"kind":"sum","property":"revenue","within":{"days":30}})",
      R"({"kind":"sum","property":"revenue","within":{"days":7}})",
      R"({"kind":"sum","property":"revenue","event":"Order Completed"})",
      R"({"kind":"sum","property":"revenue","type":"track"})",
      R"({"kind":"sum","property":"revenue","where":[{"property":"currency","op":"=","value":"EUR"}]})",
      R"({"kind":"unique","property":"revenue","limit":5})",
      R"({"kind":"unique","property":"revenue","limit":6})",
  };
  for (size_t i = 0; i < std::size(defs); i++)
    for (size_t j = i + 1; j < std::size(defs); j++)
      EXPECT_NE(def(defs[i]).key, def(defs[j]).key) << defs[i] << " vs " << defs[j];
}

TEST(ComputedCounter, CountsWhatTheEventConditionMatches) {
  segments::Rule r = segments::Rule::compile(R"({"event":"Order Completed","within":{"days":30},
                                                 "where":[{"property":"revenue","op":">","value":50}]})");
  const segments::EventCondition& c = r.event_conditions().at(0);
  Definition d = Definition::counter(c);
  EXPECT_EQ(d.kind, Kind::Count);
  EXPECT_EQ(d.window, 30 * kDay);
  EXPECT_EQ(d.bucket, 25920 * kSecond);
  EXPECT_EQ(d.key, "{\"counter\":" + c.key + "}");
  auto events = events_of(
      ev(1, kT0, R"({"revenue": 60})"),
      ev(2, kT0, R"({"revenue": 40})"),
      ev(3, kT0, R"({"revenue": 60})", "Other"),
      ev(4, kT0, R"({"revenue": 60})", "Order Completed", MessageType::Page));
  for (const Event& e : events)
    EXPECT_EQ(d.matches(e.input()), c.matches(e.type, e.name, &e.properties)) << "event " << e.id;
  EXPECT_EQ(computed::count(d, fold_all(d, events), kT0), 1);
}

}  // namespace
}  // namespace cdp

TEST(ComputedValue, SumOfDecimalsDoesNotDependOnOrder) {
  // 0.1 + 0.2 + 0.3 is 0.6000000000000001 added one way and 0.6 the other:
  // the value shows 15 significant digits, so both orders show 0.6.
  cdp::computed::Definition d = cdp::computed::Definition::compile(R"({"kind":"sum","property":"x"})");
  auto sum_in = [&](std::vector<double> xs) {
    cdp::computed::State s;
    int64_t id = 1;
    for (double x : xs) {
      rapidjson::Document props;
      props.SetObject();
      props.AddMember("x", x, props.GetAllocator());
      cdp::computed::fold(d, s, cdp::computed::EventInput{id++, cdp::MessageType::Track, "e", 0, &props});
    }
    return cdp::computed::value(d, s, 0);
  };
  EXPECT_EQ(sum_in({0.1, 0.2, 0.3}), "0.6");
  EXPECT_EQ(sum_in({0.3, 0.2, 0.1}), "0.6");
}
