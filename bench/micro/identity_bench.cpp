// Identity graph size and speed (core/identity.hpp), without Postgres: the
// graph bench/identity.sh builds through cdp.rebuild_identities(), 1M
// identifiers of 300k people (3 or 4 each, md5-like 33-character values,
// every one linked to its person's first), built through the Resolver's
// public API. Reports bytes per identifier, structure and identifier text
// apart (target: <= 64 bytes of graph per identifier).
// Run: build/cdp_microbench --benchmark_filter=Identity
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "core/identity.hpp"

namespace {

using cdp::EventFacts;
using cdp::Identifier;
using cdp::IdentityRules;
using cdp::Resolver;

constexpr size_t kIdentifiers = 1000000;  // 300k people, 700k edges

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// 'n' || md5(i::text), near enough: 'n' and 32 hex digits.
std::string name(uint64_t i) {
  static const char* hex = "0123456789abcdef";
  std::string s(33, 'n');
  uint64_t a = mix(i), b = mix(i ^ 0x5555555555555555ULL);
  for (int k = 0; k < 16; k++) {
    s[1 + k] = hex[(a >> (4 * k)) & 15];
    s[17 + k] = hex[(b >> (4 * k)) & 15];
  }
  return s;
}

struct Graph {
  std::vector<std::string> names;                 // identifier i
  std::vector<std::pair<uint32_t, uint32_t>> edges;  // (i, first identifier of i's person), shuffled
  size_t text = 0;                                // bytes of all names
};

const Graph& graph() {
  static const Graph g = [] {
    Graph g;
    g.names.reserve(kIdentifiers);
    for (uint64_t i = 0; i < kIdentifiers; i++) g.text += g.names.emplace_back(name(i)).size();
    uint64_t first = 0;
    for (uint64_t i = 0; i < kIdentifiers; i++) {
      if (i * 3 / 10 != first * 3 / 10) first = i;
      else if (i != first) g.edges.emplace_back(static_cast<uint32_t>(i), static_cast<uint32_t>(first));
    }
    std::mt19937_64 rng(42);
    std::shuffle(g.edges.begin(), g.edges.end(), rng);
    return g;
  }();
  return g;
}

// One unlimited type, guard rails off: bench/identity.sh's rules.
const IdentityRules& node_rules() {
  static const IdentityRules rules = [] {
    cdp::IdentifierType t;
    t.name = "node";
    t.paths = {"anonymousId", "properties.b"};
    t.priority = 1;
    return IdentityRules({t}, cdp::GuardRails{1000000, 10000000});
  }();
  return rules;
}

void report(benchmark::State& state, const char* what, Resolver& r, size_t profiles) {
  double n = static_cast<double>(r.identity_count());
  double text = static_cast<double>(r.text_bytes());
  double structure = static_cast<double>(r.memory_bytes()) - text;
  state.counters["ids"] = n;
  state.counters["profiles"] = static_cast<double>(profiles);
  state.counters["struct_B/id"] = structure / n;
  state.counters["text_B/id"] = text / n;
  state.counters["total_B/id"] = (structure + text) / n;
  std::fprintf(stderr, "%s: %zu identifiers, %zu profiles: %.1f bytes of structure + %.1f bytes of text = %.1f bytes per identifier\n",
               what, r.identity_count(), profiles, structure / n, text / n, (structure + text) / n);
}

// Every edge as an event carrying its two identifiers, in random order, the
// way cdp.rebuild_identities() resolves them.
void BM_IdentityGraphFromEvents(benchmark::State& state) {
  const Graph& g = graph();
  for (auto _ : state) {
    int64_t next = 0;
    Resolver r(node_rules(), [&] { return ++next; });
    EventFacts e;
    int64_t k = 0;
    for (auto [a, b] : g.edges) {
      e.id = ++k;
      e.timestamp = 1700000000000000 + k;
      r.resolve(e, {Identifier{0, g.names[a]}, Identifier{0, g.names[b]}});
    }
    state.PauseTiming();
    if (r.identity_count() != kIdentifiers) state.SkipWithError("wrong identifier count");
    report(state, "from events", r, static_cast<size_t>(next));
    state.ResumeTiming();
  }
}
BENCHMARK(BM_IdentityGraphFromEvents)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();

// The same graph seeded the way the processor seeds a batch: profiles, then
// their identifiers.
void BM_IdentityGraphSeeded(benchmark::State& state) {
  const Graph& g = graph();
  for (auto _ : state) {
    Resolver r(node_rules(), [] { return int64_t{0}; });
    for (uint64_t i = 0; i < kIdentifiers; i++) {
      int64_t person = static_cast<int64_t>(i * 3 / 10) + 1;
      if (i == 0 || i * 3 / 10 != (i - 1) * 3 / 10) r.add_profile(person, 0, 4, false);
      r.add_identity(Identifier{0, g.names[i]}, person, 1700000000000000);
    }
    state.PauseTiming();
    report(state, "seeded", r, kIdentifiers * 3 / 10);
    state.ResumeTiming();
  }
}
BENCHMARK(BM_IdentityGraphSeeded)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();

// Default rules (limited user_id and email): 250k people with a user_id, an
// email and two anonymous ids, in four events each.
void BM_IdentityGraphDefaultRules(benchmark::State& state) {
  static const IdentityRules rules(IdentityRules::defaults());
  const int user = rules.find("user_id"), email = rules.find("email"), anon = rules.find("anonymous_id");
  const Graph& g = graph();
  std::vector<uint32_t> people(kIdentifiers / 4);
  for (uint32_t p = 0; p < people.size(); p++) people[p] = p;
  std::mt19937_64 rng(7);
  std::shuffle(people.begin(), people.end(), rng);
  for (auto _ : state) {
    int64_t next = 0;
    Resolver r(rules, [&] { return ++next; });
    EventFacts e;
    int64_t k = 0;
    for (int step = 0; step < 4; step++)
      for (uint32_t p : people) {
        const std::string& u = g.names[4 * p];
        std::string m = g.names[4 * p + 1] + "@example.com";
        const std::string &a1 = g.names[4 * p + 2], &a2 = g.names[4 * p + 3];
        e.id = ++k;
        e.timestamp = 1700000000000000 + k;
        switch (step) {
          case 0: r.resolve(e, {Identifier{anon, a1}}); break;
          case 1: r.resolve(e, {Identifier{user, u}, Identifier{anon, a1}}); break;
          case 2: r.resolve(e, {Identifier{user, u}, Identifier{email, m}, Identifier{anon, a2}}); break;
          case 3: r.resolve(e, {Identifier{user, u}, Identifier{email, m}}); break;
        }
      }
    state.PauseTiming();
    if (r.identity_count() != kIdentifiers) state.SkipWithError("wrong identifier count");
    report(state, "default rules", r, static_cast<size_t>(next));
    state.ResumeTiming();
  }
}
BENCHMARK(BM_IdentityGraphDefaultRules)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();

// Lookups of known identifiers in the 1M graph.
void BM_IdentityLookup(benchmark::State& state) {
  const Graph& g = graph();
  static Resolver* r = [&] {
    auto* r = new Resolver(node_rules(), [] { return int64_t{0}; });
    for (uint64_t i = 0; i < kIdentifiers; i++)
      r->add_identity(Identifier{0, g.names[i]}, static_cast<int64_t>(i * 3 / 10) + 1, 0);
    return r;
  }();
  uint64_t i = 0;
  Identifier id{0, {}};
  for (auto _ : state) {
    id.value = g.names[mix(i++) % kIdentifiers];
    benchmark::DoNotOptimize(r->lookup(id));
  }
}
BENCHMARK(BM_IdentityLookup);

}  // namespace
