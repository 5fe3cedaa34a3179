// The Resolver's compact layout (core/identity.hpp): identifier values in an
// arena found through an open-addressing table of hash tags, profiles in an
// open-addressing table of node numbers. Checks that it keeps every
// identifier apart (same value of two types, values that differ by one byte,
// equal hash tags), that it agrees with a plain model over random events,
// that a union by size keeps the right canonical profile, and what the
// layout costs per identifier. The 1M-identifier measurement is
// bench/micro/identity_bench.cpp.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <gtest/gtest.h>

#include "core/identity.hpp"

namespace cdp {
namespace {

constexpr Micros kSecond = 1000000;

IdentifierType type(std::string name, int limit = 0, Micros window = 0) {
  IdentifierType t;
  t.name = std::move(name);
  t.paths = {"userId"};
  t.limit = limit;
  t.window = window;
  return t;
}

// Several types, two of them limited (one with a window).
const IdentityRules& rules() {
  static const IdentityRules r({type("a"), type("b", 2, 10 * kSecond), type("c", 3), type("d")},
                               GuardRails{1000, 200});
  return r;
}

EventFacts event(int64_t id) {
  EventFacts e;
  e.id = id;
  e.timestamp = 1700000000 * kSecond + id * kSecond;
  return e;
}

using Key = std::pair<int, std::string>;

std::map<Key, std::pair<int64_t, Micros>> dump(Resolver& r) {
  std::map<Key, std::pair<int64_t, Micros>> out;
  r.for_each_identity([&](const Identifier& i, int64_t p, Micros t) {
    EXPECT_TRUE(out.emplace(Key{i.type, i.value}, std::pair{p, t}).second) << "reported twice: " << i.value;
  });
  return out;
}

TEST(CompactGraph, SameValueOfTwoTypesIsTwoIdentifiers) {
  int64_t next = 0;
  Resolver r(rules(), [&] { return ++next; });
  Decision a = r.resolve(event(1), {Identifier{0, "x"}});
  Decision d = r.resolve(event(2), {Identifier{3, "x"}});
  EXPECT_NE(a.profile, d.profile);
  EXPECT_TRUE(d.merges.empty());
  EXPECT_EQ(r.lookup({0, "x"}), a.profile);
  EXPECT_EQ(r.lookup({3, "x"}), d.profile);
  EXPECT_EQ(r.lookup({1, "x"}), std::nullopt);
  EXPECT_EQ(r.identity_count(), 2u);
  EXPECT_EQ(r.text_bytes(), 2u);
}

TEST(CompactGraph, ValuesThatDifferByOneByteOrLengthAreApart) {
  Resolver r(rules(), [] { return int64_t{0}; });
  std::vector<std::string> values = {"", std::string(1, '\0'), std::string(2, '\0'), "a", "ab", "abc",
                                     std::string("a\0b", 3), std::string("a\0c", 3), std::string(127, 'z'),
                                     std::string(128, 'z'), std::string(129, 'z'), std::string(kMaxIdentifierBytes, 'z'),
                                     std::string(kMaxIdentifierBytes - 1, 'z') + "y"};
  for (size_t i = 0; i < values.size(); i++) r.add_identity({0, values[i]}, static_cast<int64_t>(i) + 1, 0);
  ASSERT_EQ(r.identity_count(), values.size());
  size_t text = 0;
  for (size_t i = 0; i < values.size(); i++) {
    EXPECT_EQ(r.lookup({0, values[i]}), static_cast<int64_t>(i) + 1) << i;
    text += values[i].size();
  }
  EXPECT_EQ(r.text_bytes(), text);
  auto all = dump(r);
  ASSERT_EQ(all.size(), values.size());
  for (size_t i = 0; i < values.size(); i++) EXPECT_EQ(all.at(Key{0, values[i]}).first, static_cast<int64_t>(i) + 1);
  // Known again: nothing changes.
  r.add_identity({0, "ab"}, 99, 0);
  EXPECT_EQ(r.lookup({0, "ab"}), 5);
  EXPECT_EQ(r.identity_count(), values.size());
}

// The table's hash, as identity.cpp computes it (if the two ever differ, the
// test still passes; it only no longer makes the tags collide).
uint64_t hash_as_resolver(int type, std::string_view value) {
  uint64_t x = std::hash<std::string_view>()(value) ^ (uint64_t(uint32_t(type)) + 1) * 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

TEST(CompactGraph, EqualHashTagsNeverMergeTwoIdentifiers) {
  // Two values with the same 32-bit tag and the same home slot in the first
  // 16-slot table: the second is compared with the first on its value.
  std::unordered_map<uint64_t, std::string> seen;
  std::string a, b;
  for (uint64_t i = 0; a.empty(); i++) {
    std::string v = "tag-" + std::to_string(i);
    uint64_t h = hash_as_resolver(0, v);
    auto [it, fresh] = seen.emplace((h >> 60) << 32 | (h & 0xFFFFFFFF), v);
    if (!fresh) a = it->second, b = v;
  }
  int64_t next = 0;
  Resolver r(rules(), [&] { return ++next; });
  Decision first = r.resolve(event(1), {Identifier{0, a}});
  Decision second = r.resolve(event(2), {Identifier{0, b}});
  EXPECT_TRUE(second.new_profile);
  EXPECT_NE(first.profile, second.profile);
  EXPECT_EQ(r.lookup({0, a}), first.profile);
  EXPECT_EQ(r.lookup({0, b}), second.profile);
  EXPECT_EQ(r.identity_count(), 2u);
  Decision both = r.resolve(event(3), {Identifier{0, a}, Identifier{0, b}});
  EXPECT_EQ(both.merges.size(), 1u);
  EXPECT_EQ(r.identity_count(), 2u);
}

// The root of a union by size is the bigger set's node, but the survivor is
// always the profile the event stays with.
TEST(CompactGraph, TheSurvivorIsCanonicalWhicheverNodeIsTheRoot) {
  int64_t next = 0;
  Resolver r(rules(), [&] { return ++next; });
  int64_t small = r.resolve(event(1), {Identifier{0, "s"}}).profile;
  std::vector<int64_t> others;
  for (int i = 0; i < 3; i++) others.push_back(r.resolve(event(2 + i), {Identifier{0, "o" + std::to_string(i)}}).profile);
  for (int i = 1; i < 3; i++) r.resolve(event(10 + i), {Identifier{0, "o0"}, Identifier{0, "o" + std::to_string(i)}});
  int64_t big = others[0];
  for (int64_t p : others) EXPECT_EQ(r.canonical(p), big);
  Decision m = r.resolve(event(20), {Identifier{0, "s"}, Identifier{0, "o1"}});  // the 3-node set merges into 1 node
  ASSERT_EQ(m.merges.size(), 1u);
  EXPECT_EQ(m.merges[0].from, big);
  EXPECT_EQ(m.merges[0].into, small);
  EXPECT_EQ(m.profile, small);
  for (int64_t p : others) EXPECT_EQ(r.canonical(p), small);
  EXPECT_EQ(r.canonical(small), small);
  EXPECT_EQ(r.canonical(12345), 12345);  // unknown: itself
  for (const char* v : {"s", "o0", "o1", "o2"}) EXPECT_EQ(r.lookup({0, v}), small) << v;
  // Later events and seeds about either profile reach the merged set.
  r.add_identity({0, "late"}, big, 0);
  EXPECT_EQ(r.lookup({0, "late"}), small);
  r.add_profile(big, 0, 0, true);
  Decision f = r.resolve(event(30), {Identifier{0, "late"}, Identifier{0, "fresh"}});
  EXPECT_EQ(f.profile, small);
  EXPECT_TRUE(f.flagged);
  // A new set merging into the big one keeps the big one's survivor.
  int64_t lone = r.resolve(event(40), {Identifier{0, "lone"}}).profile;
  Decision g = r.resolve(event(41), {Identifier{0, "o2"}, Identifier{0, "lone"}});
  EXPECT_TRUE(g.refusals.size() == 1u);  // flagged: refused, not merged
  EXPECT_EQ(r.canonical(lone), lone);
}

TEST(CompactGraph, FirstSeenIsKeptForLimitedTypesOnly) {
  Resolver r(rules(), [] { return int64_t{0}; });
  r.add_identity({0, "a"}, 1, 111);
  r.add_identity({1, "b"}, 1, 222);
  r.add_identity({2, "c"}, 1, 333);
  r.add_identity({3, "d"}, 1, 444);
  auto all = dump(r);
  EXPECT_EQ(all.at(Key{0, "a"}).second, 0);
  EXPECT_EQ(all.at(Key{1, "b"}).second, 222);
  EXPECT_EQ(all.at(Key{2, "c"}).second, 333);
  EXPECT_EQ(all.at(Key{3, "d"}).second, 0);
}

// Random events and seeds over a small universe of values of all types: what
// the decisions attached is exactly what the graph knows, each identifier
// once, with the canonical profile of the one it was attached to.
TEST(CompactGraph, AgreesWithAModelOverRandomEvents) {
  std::mt19937_64 rng(20251122);
  std::vector<std::string> values;
  for (int i = 0; i < 600; i++) {
    std::string v = std::to_string(i);
    switch (i % 4) {
      case 0: break;
      case 1: v = std::string(i % 7, 'x') + v; break;
      case 2: v = std::string(40 + i % 100, 'p') + v; break;  // long, sharing a prefix
      case 3: v = std::string(kMaxIdentifierBytes - v.size(), 'q') + v; break;
    }
    values.push_back(v);
  }
  int64_t next = 1000000;
  Resolver r(rules(), [&] { return ++next; });
  std::map<Key, std::pair<int64_t, Micros>> model;  // profile attached to, first seen (limited types)
  auto pick = [&] {
    int t = static_cast<int>(rng() % 4);
    return Identifier{t, values[rng() % values.size()]};
  };
  for (int64_t k = 1; k <= 4000; k++) {
    if (rng() % 10 == 0) {  // a seed
      Identifier id = pick();
      int64_t p = static_cast<int64_t>(rng() % 300) + 1;
      if (rng() % 2) r.add_profile(p, static_cast<int>(rng() % 3), static_cast<int>(rng() % 5), false);
      r.add_identity(id, p, k);
      model.emplace(Key{id.type, id.value}, std::pair{p, rules().types()[id.type].limit ? k : 0});
      continue;
    }
    std::vector<Identifier> ids;
    for (int n = 1 + static_cast<int>(rng() % 3); n > 0; n--) {
      Identifier id = pick();
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end(), [](auto& a, auto& b) { return a.type < b.type; });  // by priority
    EventFacts e = event(k);
    Decision d = r.resolve(e, ids);
    for (auto& id : d.attached)
      EXPECT_TRUE(model.emplace(Key{id.type, id.value}, std::pair{d.profile, rules().types()[id.type].limit ? e.timestamp : 0})
                      .second);
  }
  ASSERT_EQ(r.identity_count(), model.size());
  size_t text = 0;
  for (auto& [key, seen] : model) {
    EXPECT_EQ(r.lookup({key.first, key.second}), r.canonical(seen.first));
    text += key.second.size();
  }
  EXPECT_EQ(r.text_bytes(), text);
  for (int t = 0; t < 4; t++)
    for (auto& v : values) {
      if (!model.count(Key{t, v})) {
        EXPECT_EQ(r.lookup({t, v}), std::nullopt);
      }
    }
  auto all = dump(r);
  ASSERT_EQ(all.size(), model.size());
  for (auto& [key, seen] : model) {
    auto& got = all.at(key);
    EXPECT_EQ(got.first, r.canonical(seen.first));
    EXPECT_EQ(got.second, seen.second);
  }
}

// What the layout costs: 100k md5-like identifiers (33 characters) in 30k
// profiles. The slots cost 8 bytes at a load between 0.35 and 0.7, records
// 6 bytes besides their text, profiles 24 bytes and a slot of 4.
TEST(CompactGraph, CostsAFewDozenBytesPerIdentifierBesidesItsText) {
  Resolver r(rules(), [] { return int64_t{0}; });
  size_t empty = r.memory_bytes();
  EXPECT_LT(empty, 1024u);
  auto start = std::chrono::steady_clock::now();
  constexpr uint64_t kIds = 100000;
  for (uint64_t i = 0; i < kIds; i++) {
    char v[34];
    std::snprintf(v, sizeof v, "n%016llx%016llx", static_cast<unsigned long long>(hash_as_resolver(1, std::to_string(i))),
                  static_cast<unsigned long long>(hash_as_resolver(2, std::to_string(i))));
    r.add_identity({0, v}, static_cast<int64_t>(i * 3 / 10), 0);
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.identity_count(), kIds);
  EXPECT_EQ(r.text_bytes(), kIds * 33);
  double structure = double(r.memory_bytes() - r.text_bytes()) / kIds;
  std::printf("100k identifiers in 30k profiles: %.1f bytes of structure + %.1f bytes of text per identifier, %.0f ms\n",
              structure, double(r.text_bytes()) / kIds, ms);
  EXPECT_GE(structure, 8 + 6);  // capacities are counted
  EXPECT_LE(structure, 48);
}

}  // namespace
}  // namespace cdp
