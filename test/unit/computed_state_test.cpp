// The binary aggregate state (core/computed_state.hpp) against the JSON form
// it replaces: the same buckets after a round trip, the same answers read in
// place as decoded, the same memberships and computed values from either
// form for every aggregate kind and every operator over random profiles, at
// most half the bytes, and bytes it did not write refused.
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/audience.hpp"
#include "core/computed_state.hpp"
#include "core/error.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using test::at;
using test::Event;
using test::ev;
using test::json;

constexpr Micros kSecond = 1000000;
constexpr Micros kDay = 86400 * kSecond;
const Micros kT0 = at("2025-03-01T00:00:00Z");

// Every kind, all time and windowed, over properties the random events carry.
const std::vector<ComputedSpec> kTraits = {
    {"n", R"({"kind":"count"})"},
    {"n_7d", R"({"kind":"count","within":{"days":7}})"},
    {"sum", R"({"kind":"sum","property":"revenue"})"},
    {"sum_3d", R"({"kind":"sum","property":"revenue","within":{"days":3}})"},
    {"min", R"({"kind":"min","property":"revenue","within":{"days":10}})"},
    {"max", R"({"kind":"max","property":"revenue"})"},
    {"avg", R"({"kind":"avg","property":"revenue","within":{"days":5}})"},
    {"first", R"({"kind":"first","property":"sku"})"},
    {"last", R"({"kind":"last","property":"sku","within":{"days":2}})"},
    {"top", R"({"kind":"most_frequent","property":"sku","within":{"days":20}})"},
    {"skus", R"({"kind":"unique","property":"sku","limit":3})"},
};

// Every operator, on traits and on computed traits, and event counters.
std::vector<SegmentSpec> segments() {
  const char* rules[] = {
      R"({"trait":"plan","op":"=","value":"pro"})",
      R"({"trait":"plan","op":"!=","value":"free"})",
      R"({"trait":"age","op":"<","value":30})",
      R"({"trait":"age","op":"<=","value":30})",
      R"({"trait":"ltv","op":">","value":500.5})",
      R"({"trait":"ltv","op":">=","value":500})",
      R"({"trait":"country","op":"in","value":["FR","DE"]})",
      R"({"trait":"tags","op":"contains","value":"golf"})",
      R"({"trait":"email","op":"starts_with","value":"a"})",
      R"({"trait":"address.city","op":"exists"})",
      R"({"trait":"age","op":"between","value":[20,40]})",
      R"({"trait":"signup","op":">=","value":"2025-02-01"})",
      R"({"computed":"n","op":">=","value":3})",
      R"({"computed":"n_7d","op":"=","value":0})",
      R"({"computed":"sum","op":">","value":150})",
      R"({"computed":"sum_3d","op":"between","value":[10,200]})",
      R"({"computed":"min","op":"<","value":20})",
      R"({"computed":"max","op":"!=","value":99})",
      R"({"computed":"avg","op":"<=","value":40.5})",
      R"({"computed":"first","op":"=","value":"a"})",
      R"({"computed":"last","op":"in","value":["b","c"]})",
      R"({"computed":"top","op":"starts_with","value":"b"})",
      R"({"computed":"skus","op":"contains","value":"c"})",
      R"({"computed":"last","op":"exists"})",
      R"({"event":"Order Completed","count":{"op":">=","value":2},"within":{"days":4},"where":[{"property":"revenue","op":">","value":30}]})",
      R"({"not":{"event":"Signed In","within":{"days":1}}})",
      R"({"and":[{"segment":"s0"},{"or":[{"segment":"s12"},{"segment":"s24"}]}]})",
  };
  std::vector<SegmentSpec> out;
  int64_t id = 0;
  for (const char* r : rules) out.push_back({id, "s" + std::to_string(id), r}), id++;
  return out;
}

std::string random_traits(std::mt19937_64& rng) {
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  const char* plans[] = {"free", "pro", "team"};
  const char* countries[] = {"FR", "DE", "US"};
  std::string t = "{";
  if (pick(4)) t += R"("plan":")" + std::string(plans[pick(3)]) + "\",";
  if (pick(4)) t += R"("age":)" + std::to_string(15 + pick(40)) + ",";
  if (pick(4)) t += R"("ltv":)" + std::to_string(pick(1000)) + (pick(2) ? ".5," : ",");
  t += R"("country":")" + std::string(countries[pick(3)]) + "\",";
  if (pick(2)) t += R"("tags":["chess",)" + std::string(pick(2) ? R"("golf"])" : R"("go"])") + ",";
  t += R"("email":")" + std::string(pick(2) ? "ada" : "bob") + "@x.org\",";
  if (pick(2)) t += R"("address":{"city":"Paris"},)";
  t += R"("signup":"2025-0)" + std::to_string(1 + pick(3)) + "-15\"}";
  return t;
}

std::vector<Event> random_events(std::mt19937_64& rng, int64_t& id) {
  const char* skus[] = {"a", "b", "c", "d"};
  std::vector<Event> out;
  int n = static_cast<int>(rng() % 12);
  for (int i = 0; i < n; i++) {
    Micros t = kT0 + static_cast<Micros>(rng() % (30 * kDay));
    std::string props = R"({"revenue":)" + std::to_string(rng() % 100) + (rng() % 3 ? "" : ".25") +
                        R"(,"sku":")" + skus[rng() % 4] + "\"}";
    out.push_back(ev(++id, t, props, rng() % 4 ? "Order Completed" : "Signed In"));
  }
  return out;
}

// Calls f(spec, definition, state) for 50 random states of every kind.
template <typename F>
void each_random_state(uint64_t seed, F&& f) {
  std::mt19937_64 rng(seed);
  int64_t id = 0;
  for (const ComputedSpec& spec : kTraits) {
    computed::Definition d = computed::Definition::compile(spec.definition);
    for (int round = 0; round < 50; round++) {
      computed::State s;
      for (const Event& e : random_events(rng, id))
        if (d.matches(e.input())) computed::fold(d, s, e.input());
      f(spec, d, s);
    }
  }
}

TEST(BinaryState, RoundTripsEveryKind) {
  each_random_state(7, [](const ComputedSpec& spec, const computed::Definition& d, const computed::State& s) {
    std::string bytes, json1, json2;
    computed::encode_state(d, s, bytes);
    computed::State back = computed::decode_state(d, bytes);
    computed::write_state(d, s, json1);
    computed::write_state(d, back, json2);
    ASSERT_EQ(json1, json2) << spec.name;
    EXPECT_EQ(bytes.empty(), s.empty());
  });
}

TEST(BinaryState, InPlaceAnswersEqualDecodedOnes) {
  each_random_state(11, [](const ComputedSpec& spec, const computed::Definition& d, const computed::State& s) {
    std::string bytes;
    computed::encode_state(d, s, bytes);
    computed::StateView v{bytes};
    EXPECT_EQ(computed::next_expiry(d, v), computed::next_expiry(d, s)) << spec.name;
    for (Micros now = kT0; now < kT0 + 45 * kDay; now += kDay / 3) {
      EXPECT_EQ(computed::count(d, v, now), computed::count(d, s, now)) << spec.name;
      std::string text = computed::value(d, s, now);
      EXPECT_EQ(computed::value(d, v, now), text) << spec.name;
      if (auto n = computed::number_value(d, v, now)) {
        rapidjson::Document parsed = json(text);
        if (n->integral) EXPECT_TRUE(parsed.IsInt64() && parsed.GetInt64() == n->integer) << text;
        else EXPECT_TRUE(parsed.IsDouble() && parsed.GetDouble() == n->real) << text;
      }
      computed::State expired = s;
      computed::expire(d, expired, now);
      EXPECT_EQ(computed::any_expired(d, v, now), expired.buckets.size() != s.buckets.size()) << spec.name;
    }
  });
}

// The property the issue asks for: whichever form the state was stored in,
// every segment and computed trait gives the same answer.
TEST(BinaryState, BinaryAndJsonFormsEvaluateAlike) {
  Audience a(segments(), kTraits);
  std::mt19937_64 rng(2025);
  int64_t id = 0;
  size_t binary_bytes = 0, json_bytes = 0, in = 0;
  for (int profile = 0; profile < 400; profile++) {
    Audience::ProfileState p = a.fresh();
    for (const Event& e : random_events(rng, id)) a.fold(p, e.input());
    rapidjson::Document traits = json(random_traits(rng));
    std::string bin = a.write(p), text = a.write_json(p);
    binary_bytes += bin.size();
    json_bytes += text.size();
    for (Micros now = kT0 + 10 * kDay; now < kT0 + 50 * kDay; now += 5 * kDay) {
      Audience::ProfileState x = a.read(bin), y = a.read(text);
      EXPECT_FALSE(x.changed) << "the binary form is read in place";
      EXPECT_TRUE(y.changed) << "the JSON form is to be written back";
      Audience::Outcome ox = a.evaluate(x, &traits, {}, now), oy = a.evaluate(y, &traits, {}, now);
      ASSERT_EQ(ox.members, oy.members) << "profile " << profile << " at day " << (now - kT0) / kDay;
      EXPECT_EQ(ox.computed, oy.computed);
      EXPECT_EQ(ox.next_expiry, oy.next_expiry);
      EXPECT_EQ(a.write_json(x), a.write_json(y)) << "the same buckets expired";
      for (bool m : ox.members) in += m;
    }
  }
  EXPECT_GT(in, 0u);
  EXPECT_LE(binary_bytes * 2, json_bytes) << "binary " << binary_bytes << " bytes, JSON " << json_bytes;
}

TEST(BinaryState, UnchangedStateIsNotRewritten) {
  Audience a(segments(), kTraits);
  Audience::ProfileState p = a.fresh();
  a.fold(p, ev(1, kT0, R"({"revenue":10,"sku":"a"})").input());
  std::string bin = a.write(p);
  Audience::ProfileState q = a.read(bin);
  a.evaluate(q, nullptr, {}, kT0 + kSecond);
  EXPECT_FALSE(q.changed) << "nothing left a window";
  EXPECT_EQ(a.write(q), bin) << "untouched states are copied as they are";
  a.evaluate(q, nullptr, {}, kT0 + 8 * kDay);
  EXPECT_TRUE(q.changed) << "a bucket left the 7-day window";
  EXPECT_NE(a.write(q), bin);
}

TEST(BinaryState, BytesItDidNotWriteAreRefused) {
  Audience a({}, kTraits);
  Audience::ProfileState p = a.fresh();
  a.fold(p, ev(1, kT0, R"({"revenue":10,"sku":"a"})").input());
  std::string bin = a.write(p);
  EXPECT_THROW(a.read(std::string("\xCD\x02", 2)), Error) << "another version";
  EXPECT_THROW(a.read(bin.substr(0, 7)), Error) << "cut inside a key";
  EXPECT_THROW(a.read(bin.substr(0, 11)), Error) << "cut inside an aggregate";
  const computed::Definition& d = a.aggregates()[0].definition;
  std::string bytes;
  computed::encode_state(d, computed::State{}, bytes);
  EXPECT_TRUE(bytes.empty());
  EXPECT_THROW(computed::decode_state(d, "\x80"), Error) << "a varint that never ends";
  EXPECT_EQ(a.write(a.fresh()), std::string("\xCD\x01", 2));
  Audience::ProfileState none = a.read("");
  EXPECT_FALSE(none.changed);
}

}  // namespace
}  // namespace cdp
