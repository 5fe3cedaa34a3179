// The writes of one processor batch (core/batch_writes.hpp): from the
// resolver's decisions, the stored profiles and accounts, and the trait rules,
// fold_batch gives every row the batch writes. These tests run a batch the way
// the processor does (extract, seed, resolve, fold) and read the rows.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/batch_writes.hpp"
#include "core/identity.hpp"
#include "core/traits.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using test::at;
using test::same_json;

const Micros kT0 = at("2025-01-01T00:00:00Z");
constexpr Micros kSecond = 1000000;

EventFacts event(int64_t id, MessageType type, std::string user, std::string anon, std::string traits = "") {
  EventFacts e;
  e.id = id;
  e.type = type;
  e.timestamp = kT0 + id * kSecond;
  e.message_id = "m" + std::to_string(id);
  e.source_id = 1;
  e.user_id = std::move(user);
  e.anonymous_id = std::move(anon);
  e.traits = std::move(traits);
  return e;
}

Decision bound_to(int64_t event, int64_t profile) {
  Decision d;
  d.event_id = event;
  d.profile = profile;
  return d;
}

EventFacts group(int64_t id, std::string user, std::string group_id, std::string traits = "") {
  EventFacts e = event(id, MessageType::Group, std::move(user), "", std::move(traits));
  e.group_id = std::move(group_id);
  return e;
}

// A batch as the processor runs it: the database's profiles and identities
// seeded, new profiles numbered from `next_id`.
struct Batch {
  IdentityRules rules{IdentityRules::defaults()};
  TraitRules traits;
  std::vector<EventFacts> events;
  std::vector<StoredProfile> stored;
  std::vector<std::pair<Identifier, int64_t>> stored_identities;
  std::vector<StoredAccount> accounts;
  int64_t next_id = 100;
  int ticks = 0;

  Identifier id(const char* type, std::string value) const { return {rules.find(type), std::move(value)}; }

  BatchWrites run() {
    int64_t next_temp = 0;
    Resolver resolver(rules, [&] { return --next_temp; });
    for (auto& p : stored) resolver.add_profile(p.id, p.merges, 1, p.flagged);
    for (auto& [ident, profile] : stored_identities) resolver.add_identity(ident, profile, kT0);
    std::vector<std::vector<Identifier>> ids;
    std::vector<Decision> decisions;
    for (auto& e : events) {
      ids.push_back(rules.extract(e));
      decisions.push_back(resolver.resolve(e, ids.back()));
    }
    BatchInput in;
    in.rules = &rules;
    in.traits = &traits;
    in.events = &events;
    in.identifiers = &ids;
    in.decisions = &decisions;
    for (int64_t t = -1; t >= next_temp; t--) in.fresh_ids.push_back(next_id++);
    in.canonical = [&](int64_t p) { return resolver.canonical(p); };
    in.profiles = stored;
    for (auto& a : accounts)
      for (auto& g : batch_groups(events, decisions))
        if (a.group_id == g) in.accounts.push_back(a);
    in.check_interrupts = [&] { ticks++; };
    return fold_batch(in);
  }
};

TEST(BatchWrites, NewVisitorThenIdentifyMakesOneProfile) {
  Batch b;
  b.events = {event(1, MessageType::Page, "", "a1"),
              event(2, MessageType::Identify, "u1", "a1", R"({"email":"Ada@Example.com","plan":"pro"})")};
  BatchWrites w = b.run();
  ASSERT_EQ(w.new_profiles.size(), 1u);
  EXPECT_EQ(w.new_profiles[0].profile, 100);
  EXPECT_EQ(w.new_profiles[0].canonical, 100);
  EXPECT_EQ(w.bound, (std::vector<int64_t>{100, 100}));
  ASSERT_EQ(w.event_profiles.size(), 2u);
  EXPECT_EQ(w.event_profiles[1].event_id, 2);
  EXPECT_EQ(w.event_profiles[1].profile, 100);
  std::vector<std::string> attached;
  for (auto& i : w.identities) {
    attached.push_back(i.type + "=" + i.value);
    EXPECT_EQ(i.profile, 100);
  }
  std::sort(attached.begin(), attached.end());
  EXPECT_EQ(attached, (std::vector<std::string>{"anonymous_id=a1", "email=ada@example.com", "user_id=u1"}));
  ASSERT_EQ(w.profiles.size(), 1u);
  EXPECT_EQ(w.profiles[0].events, 2);
  EXPECT_EQ(w.profiles[0].first_seen, kT0 + kSecond);
  EXPECT_EQ(w.profiles[0].last_seen, kT0 + 2 * kSecond);
  EXPECT_TRUE(same_json(w.profiles[0].traits, R"({"email":"Ada@Example.com","plan":"pro"})")) << w.profiles[0].traits;
  EXPECT_TRUE(w.merges.empty());
  EXPECT_TRUE(w.merged.empty());
  EXPECT_TRUE(w.refusals.empty());
  EXPECT_EQ(b.ticks, 2);
}

TEST(BatchWrites, AnEventJoiningTwoStoredProfilesMergesThem) {
  Batch b;
  b.stored = {{10, R"({"plan":"pro"})", "{}", kT0, kT0, 5, 0, false},
              {20, R"({"city":"Paris"})", "{}", kT0 - kSecond, kT0, 3, 1, false}};
  b.stored_identities = {{b.id("user_id", "u1"), 10}, {b.id("anonymous_id", "a2"), 20}};
  b.events = {event(7, MessageType::Identify, "u1", "a2")};
  BatchWrites w = b.run();
  EXPECT_TRUE(w.new_profiles.empty());
  ASSERT_EQ(w.merges.size(), 1u);
  ASSERT_EQ(w.merged.size(), 1u);
  int64_t survivor = w.merged[0].into, away = w.merged[0].from;
  EXPECT_EQ(std::min(survivor, away), 10);
  EXPECT_EQ(std::max(survivor, away), 20);
  EXPECT_EQ(w.merges[0].event_id, 7);
  EXPECT_EQ(w.merges[0].into, survivor);
  EXPECT_NE(w.merges[0].identifiers.find("\"u1\""), std::string::npos);
  EXPECT_EQ(w.bound, (std::vector<int64_t>{survivor}));
  ASSERT_EQ(w.profiles.size(), 1u);  // the merged-away row is not written again
  const auto& p = w.profiles[0];
  EXPECT_EQ(p.id, survivor);
  EXPECT_EQ(p.events, 5 + 3 + 1);
  EXPECT_EQ(p.merges, 0 + 1 + 1);
  EXPECT_EQ(p.first_seen, kT0 - kSecond);
  EXPECT_EQ(p.last_seen, kT0 + 7 * kSecond);
  EXPECT_TRUE(same_json(p.traits, R"({"plan":"pro","city":"Paris"})")) << p.traits;
}

TEST(BatchWrites, BlockedIdentifiersBindToNoOne) {
  Batch b;
  b.events = {event(1, MessageType::Track, "undefined", "null")};
  BatchWrites w = b.run();
  EXPECT_EQ(w.bound, (std::vector<int64_t>{0}));
  EXPECT_TRUE(w.event_profiles.empty());
  EXPECT_TRUE(w.profiles.empty());
  EXPECT_TRUE(w.new_profiles.empty());
}

TEST(BatchWrites, GroupCallsFoldIntoStoredAccounts) {
  Batch b;
  b.accounts = {{"acme", R"({"employees":10,"name":"Acme"})", R"({"employees":{"at":"2024-01-01T00:00:00Z"}})",
                 kT0 - 100 * kSecond, kT0 - 50 * kSecond},
                {"other", R"({"x":1})", "{}", kT0, kT0}};
  b.events = {event(1, MessageType::Identify, "u1", ""), group(2, "u1", "acme", R"({"employees":42})")};
  BatchWrites w = b.run();
  ASSERT_EQ(w.accounts.size(), 1u);  // only the account the batch touched
  const auto& a = w.accounts[0];
  EXPECT_EQ(a.group_id, "acme");
  EXPECT_TRUE(same_json(a.traits, R"({"employees":42,"name":"Acme"})")) << a.traits;
  EXPECT_EQ(a.first_seen, kT0 - 100 * kSecond);
  EXPECT_EQ(a.last_seen, kT0 + 2 * kSecond);
  ASSERT_EQ(w.profile_accounts.size(), 1u);
  EXPECT_EQ(w.profile_accounts[0].group_id, "acme");
  EXPECT_EQ(w.profile_accounts[0].profile, w.bound[0]);
}

TEST(BatchWrites, ALongGroupIdJoinsNoAccountAndIsRefused) {
  Batch b;
  std::string long_id(kMaxIdentifierBytes + 1, 'g');
  b.events = {group(1, "u1", long_id)};
  BatchWrites w = b.run();
  EXPECT_TRUE(batch_groups(b.events, {bound_to(1, 100)}).empty());
  EXPECT_TRUE(w.accounts.empty());
  EXPECT_TRUE(w.profile_accounts.empty());
  ASSERT_EQ(w.refusals.size(), 1u);
  EXPECT_EQ(w.refusals[0].type, "group_id");
  EXPECT_EQ(w.refusals[0].value, std::string(64, 'g') + "...");
  EXPECT_EQ(w.refusals[0].rule, "groupId: longer than 1024 bytes (1025); the event joins no account");
}

TEST(BatchWrites, TheTraitKeyLimitFlagsTheProfileAndListsTheKeys) {
  Batch b;
  b.traits = TraitRules({}, 2);
  b.events = {event(1, MessageType::Identify, "u1", "", R"({"a":1,"b":2,"c":3,"d":4})")};
  BatchWrites w = b.run();
  ASSERT_EQ(w.profiles.size(), 1u);
  EXPECT_TRUE(w.profiles[0].flagged);
  ASSERT_EQ(w.refusals.size(), 1u);
  EXPECT_EQ(w.refusals[0].type, "trait");
  EXPECT_EQ(w.refusals[0].value, "c, d");
  EXPECT_EQ(w.refusals[0].rule, "traits: the profile has 2 keys (cdp.max_traits_per_profile); 2 new keys refused");
}

TEST(BatchWrites, AProfileMadeAndMergedAwayInOneBatchStillGetsAMapRow) {
  Batch b;
  b.events = {event(1, MessageType::Page, "", "a1"), event(2, MessageType::Page, "", "a2"),
              event(3, MessageType::Alias, "", "a2")};
  b.events[2].previous_id = "a1";
  b.events[2].anonymous_id = "a2";
  BatchWrites w = b.run();
  ASSERT_EQ(w.new_profiles.size(), 2u);
  EXPECT_EQ(w.new_profiles[0].canonical, w.new_profiles[1].canonical);
  EXPECT_TRUE(w.merged.empty());  // neither was stored
  ASSERT_EQ(w.profiles.size(), 1u);
  EXPECT_EQ(w.profiles[0].events, 3);
}

TEST(BatchWrites, AnInterruptAbandonsTheFold) {
  Batch b;
  b.events = {event(1, MessageType::Track, "u1", "")};
  BatchInput in;
  std::vector<std::vector<Identifier>> ids{b.rules.extract(b.events[0])};
  std::vector<Decision> decisions{bound_to(1, 5)};
  in.rules = &b.rules;
  in.traits = &b.traits;
  in.events = &b.events;
  in.identifiers = &ids;
  in.decisions = &decisions;
  in.canonical = [](int64_t p) { return p; };
  in.check_interrupts = [] { throw std::runtime_error("cancelled"); };
  EXPECT_THROW(fold_batch(in), std::runtime_error);
}

}  // namespace
}  // namespace cdp
