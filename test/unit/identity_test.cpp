// Identity resolution (core/identity.hpp): identifier rules (normalisation,
// blocked values and patterns, limits, priorities, guard rails), extraction of
// identifiers from an event, and the Resolver's identity graph: which profile
// an event binds to, which merges happen and which are refused. Ends with a
// property test: the same conflict-free events in thousands of random orders
// give the same final graph and the same traits.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/identity.hpp"
#include "core/traits.hpp"
#include "test_support.hpp"

namespace cdp {
namespace {

using test::at;

constexpr Micros kSecond = 1000000;
constexpr Micros kDay = 86400 * kSecond;

const IdentityRules& default_rules() {
  static const IdentityRules rules(IdentityRules::defaults());
  return rules;
}

int type_of(const IdentityRules& r, const char* name) {
  int t = r.find(name);
  EXPECT_GE(t, 0) << "no identifier type " << name;
  return t;
}

Identifier id(const IdentityRules& r, const char* type, std::string value) {
  return Identifier{type_of(r, type), std::move(value)};
}

std::optional<std::string> norm(const IdentityRules& r, const char* type, std::string_view raw) {
  return r.normalise(type_of(r, type), raw);
}

IdentifierType type(std::string name, std::vector<std::string> paths, Normalise n = Normalise::None,
                    int limit = 0, Micros window = 0, int priority = 100) {
  IdentifierType t;
  t.name = std::move(name);
  t.paths = std::move(paths);
  t.normalise = n;
  t.limit = limit;
  t.window = window;
  t.priority = priority;
  return t;
}

TraitRule rule(std::string trait, TraitStrategy s, std::vector<int> priority = {}, std::string from_path = "") {
  TraitRule r;
  r.trait = std::move(trait);
  r.strategy = s;
  r.source_priority = std::move(priority);
  r.from_path = std::move(from_path);
  return r;
}

// An event with the fields the resolver reads.
struct Ev {
  EventFacts e;
  explicit Ev(int64_t id, MessageType type = MessageType::Track) {
    e.id = id;
    e.type = type;
    e.timestamp = at("2025-01-01T00:00:00Z") + id * kSecond;
    e.message_id = "m" + std::to_string(id);
  }
  Ev& user(std::string v) { e.user_id = std::move(v); return *this; }
  Ev& anon(std::string v) { e.anonymous_id = std::move(v); return *this; }
  Ev& prev(std::string v) { e.previous_id = std::move(v); return *this; }
  Ev& traits(std::string v) { e.traits = std::move(v); return *this; }
  Ev& context(std::string v) { e.context = std::move(v); return *this; }
  Ev& props(std::string v) { e.properties = std::move(v); return *this; }
  Ev& ts(Micros t) { e.timestamp = t; return *this; }
  Ev& source(int s) { e.source_id = s; return *this; }
  operator const EventFacts&() const { return e; }
};

// A resolver whose new profiles are numbered 1, 2, 3...
struct Graph {
  const IdentityRules& rules;
  int64_t next = 0;
  Resolver r;
  explicit Graph(const IdentityRules& rules = default_rules())
      : rules(rules), r(rules, [this] { return ++next; }) {}
  Decision resolve(const EventFacts& e) { return r.resolve(e); }
  std::optional<int64_t> owner(const char* type, std::string value) { return r.lookup(id(rules, type, std::move(value))); }
  // Every identifier of a (canonical) profile, as "type:value".
  std::set<std::string> identifiers_of(int64_t profile) {
    std::set<std::string> out;
    r.for_each_identity([&](const Identifier& i, int64_t p, Micros) {
      if (p == profile) out.insert(rules.types()[i.type].name + ":" + i.value);
    });
    return out;
  }
  std::set<int64_t> profiles() {
    std::set<int64_t> out;
    r.for_each_identity([&](const Identifier&, int64_t p, Micros) { out.insert(p); });
    return out;
  }
};

bool mentions(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ------------------------------------------------------------ normalisation

TEST(IdentityNormalise, ParsesNormaliserNames) {
  EXPECT_EQ(parse_normalise("none"), Normalise::None);
  EXPECT_EQ(parse_normalise("lower"), Normalise::Lower);
  EXPECT_EQ(parse_normalise("email"), Normalise::Email);
  EXPECT_EQ(parse_normalise("phone"), Normalise::Phone);
  EXPECT_EQ(parse_normalise("Email"), std::nullopt);
  EXPECT_EQ(parse_normalise(""), std::nullopt);
}

TEST(IdentityNormalise, EmailIsTrimmedAndLowerCased) {
  auto& r = default_rules();
  EXPECT_EQ(norm(r, "email", "  Alice.Smith@Example.COM \t"), "alice.smith@example.com");
  EXPECT_EQ(norm(r, "email", "bob@example.com"), "bob@example.com");
  EXPECT_EQ(norm(r, "email", "BOB@EXAMPLE.COM"), norm(r, "email", " bob@example.com"));
}

TEST(IdentityNormalise, InvalidEmailsAreNoIdentifier) {
  auto& r = default_rules();
  for (const char* bad : {"", "   ", "no-at-sign", "@example.com", "bob@", "a@b@c.com", " @ "})
    EXPECT_EQ(norm(r, "email", bad), std::nullopt) << "\"" << bad << "\"";
}

TEST(IdentityNormalise, PhoneWithPlusKeepsItsCountryCode) {
  auto& r = default_rules();  // phone: default country code 1
  EXPECT_EQ(norm(r, "phone", "+44 20 7946 0958"), "442079460958");
  EXPECT_EQ(norm(r, "phone", " +1 (415) 555-2671 "), "14155552671");
}

TEST(IdentityNormalise, PhoneWithDoubleZeroIsInternational) {
  auto& r = default_rules();
  EXPECT_EQ(norm(r, "phone", "0044 20 7946 0958"), "442079460958");
  EXPECT_EQ(norm(r, "phone", "0044 20 7946 0958"), norm(r, "phone", "+44 20 7946 0958"));
}

TEST(IdentityNormalise, PhoneWithoutCountryCodeGetsTheDefault) {
  auto& r = default_rules();
  EXPECT_EQ(norm(r, "phone", "(415) 555-2671"), "14155552671");
  EXPECT_EQ(norm(r, "phone", "415.555.2671"), norm(r, "phone", "+1 415 555 2671"));

  std::vector<IdentifierType> types{type("phone", {"traits.phone"}, Normalise::Phone)};  // no default country
  IdentityRules plain(types);
  EXPECT_EQ(plain.normalise(0, "(415) 555-2671"), "4155552671");
}

TEST(IdentityNormalise, PhoneTooShortOrTooLongIsNoIdentifier) {
  auto& r = default_rules();
  EXPECT_EQ(norm(r, "phone", "12345"), std::nullopt);
  EXPECT_EQ(norm(r, "phone", "+12345"), std::nullopt);
  EXPECT_EQ(norm(r, "phone", "+123456"), std::nullopt);
  EXPECT_EQ(norm(r, "phone", "123456"), std::nullopt) << "6 digits stay too short even with a country code";
  EXPECT_EQ(norm(r, "phone", "+1234567"), "1234567");
  EXPECT_EQ(norm(r, "phone", "+1234567890123456"), std::nullopt) << "16 digits: longer than E.164";
  EXPECT_EQ(norm(r, "phone", "no digits at all"), std::nullopt);
}

TEST(IdentityNormalise, LowerTrimsAndLowerCases_NoneKeepsTheValue) {
  std::vector<IdentifierType> types{type("device", {"context.device.id"}, Normalise::Lower),
                                    type("raw", {"userId"}, Normalise::None)};
  IdentityRules r(types);
  EXPECT_EQ(norm(r, "device", "  AbC-123 "), "abc-123");
  EXPECT_EQ(norm(r, "raw", "AbC"), "AbC");
  EXPECT_EQ(norm(r, "raw", "   "), std::nullopt) << "blank";
  EXPECT_EQ(norm(r, "raw", ""), std::nullopt);
}

// ------------------------------------------------------------ blocked values

TEST(IdentityBlocked, DefaultBlockedValuesIgnoringCase) {
  auto& r = default_rules();
  for (const char* v : {"null", "NULL", "Undefined", "unknown", "None", "NaN", "anonymous", "GUEST", "-1", "n/a", "0"})
    EXPECT_EQ(norm(r, "user_id", v), std::nullopt) << v;
  EXPECT_EQ(norm(r, "user_id", "nullify"), "nullify") << "whole value only";
  EXPECT_EQ(norm(r, "user_id", "u-1"), "u-1");
}

TEST(IdentityBlocked, BlockedEmailIsComparedAfterNormalisation) {
  auto& r = default_rules();
  EXPECT_EQ(norm(r, "email", "test@test.com"), std::nullopt);
  EXPECT_EQ(norm(r, "email", "  TEST@Test.COM "), std::nullopt);
  EXPECT_EQ(norm(r, "email", "test@test.co"), "test@test.co");
}

TEST(IdentityBlocked, CustomBlockedValuesAreCaseInsensitive) {
  IdentifierType t = type("user_id", {"userId"});
  t.blocked_values = {"Admin", "DEMO-USER"};
  IdentityRules r({t});
  EXPECT_EQ(r.normalise(0, "admin"), std::nullopt);
  EXPECT_EQ(r.normalise(0, "ADMIN"), std::nullopt);
  EXPECT_EQ(r.normalise(0, "demo-user"), std::nullopt);
  EXPECT_EQ(r.normalise(0, "administrator"), "administrator");
}

TEST(IdentityBlocked, DefaultPatternBlocksZerosAndDashes) {
  auto& r = default_rules();
  for (const char* v : {"0000", "00000000-0000-0000-0000-000000000000", "---", "0-0"})
    EXPECT_EQ(norm(r, "anonymous_id", v), std::nullopt) << v;
  EXPECT_EQ(norm(r, "anonymous_id", "00000000-0000-0000-0000-000000000001"), "00000000-0000-0000-0000-000000000001");
  EXPECT_EQ(norm(r, "user_id", "100"), "100");
}

TEST(IdentityBlocked, CustomRegexMatchesTheWholeValueIgnoringCase) {
  IdentifierType t = type("user_id", {"userId"});
  t.blocked_patterns = {"temp_[0-9]+", "^qa-.*$"};
  IdentityRules r({t});
  EXPECT_EQ(r.normalise(0, "temp_42"), std::nullopt);
  EXPECT_EQ(r.normalise(0, "TEMP_42"), std::nullopt);
  EXPECT_EQ(r.normalise(0, "qa-bot"), std::nullopt);
  EXPECT_EQ(r.normalise(0, "x_temp_42"), "x_temp_42") << "a pattern must match the whole value";
  EXPECT_EQ(r.normalise(0, "temp_42x"), "temp_42x");
}

TEST(IdentityBlocked, BadRegexThrowsNamingTheType) {
  IdentifierType good = type("email", {"traits.email"}, Normalise::Email);
  IdentifierType bad = type("crm_id", {"properties.crm_id"});
  bad.blocked_patterns = {"([unclosed"};
  try {
    IdentityRules r({good, bad});
    FAIL() << "a bad regular expression was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
    EXPECT_TRUE(mentions(e.what(), "crm_id")) << e.what();
    EXPECT_TRUE(mentions(e.what(), "([unclosed")) << e.what();
  }
}

TEST(IdentityBlocked, OverLongValuesAreRefused) {
  auto& r = default_rules();
  std::string max(kMaxIdentifierBytes, 'a'), over(kMaxIdentifierBytes + 1, 'a');
  EXPECT_EQ(norm(r, "user_id", max), max);
  EXPECT_EQ(norm(r, "user_id", over), std::nullopt);
  std::string long_email = std::string(kMaxIdentifierBytes, 'x') + "@example.com";
  EXPECT_EQ(norm(r, "email", long_email), std::nullopt);
  // An event carrying only an over-long identifier binds to no one.
  Graph g;
  Decision d = g.resolve(Ev(1).user(over));
  EXPECT_EQ(d.profile, 0);
  EXPECT_EQ(g.r.identity_count(), 0u);
}

// ------------------------------------------------------------ extract

TEST(IdentityExtract, TypesAreOrderedByPriority) {
  std::vector<IdentifierType> types{type("anonymous_id", {"anonymousId"}, Normalise::None, 0, 0, 100),
                                    type("crm_id", {"properties.crm_id"}, Normalise::None, 1, 0, 0),
                                    type("email", {"traits.email"}, Normalise::Email, 5, 0, 2)};
  IdentityRules r(types);
  ASSERT_EQ(r.types().size(), 3u);
  EXPECT_EQ(r.types()[0].name, "crm_id");
  EXPECT_EQ(r.types()[1].name, "email");
  EXPECT_EQ(r.types()[2].name, "anonymous_id");
  EXPECT_EQ(r.find("email"), 1);
  EXPECT_EQ(r.find("nope"), -1);
}

TEST(IdentityExtract, FromUserIdAnonymousIdAndTraitsEmail) {
  auto& r = default_rules();
  auto ids = r.extract(Ev(1, MessageType::Identify).user("u1").anon("a1").traits(R"({"email":" Ann@Example.com "})"));
  std::vector<Identifier> want{id(r, "user_id", "u1"), id(r, "email", "ann@example.com"), id(r, "anonymous_id", "a1")};
  EXPECT_EQ(ids, want);
  EXPECT_EQ(r.to_json(ids),
            R"([{"type":"user_id","value":"u1"},{"type":"email","value":"ann@example.com"},)"
            R"({"type":"anonymous_id","value":"a1"}])");
}

TEST(IdentityExtract, FromContextTraitsEmailWithoutRepeats) {
  auto& r = default_rules();
  auto only_context = r.extract(Ev(1).anon("a1").context(R"({"traits":{"email":"B@x.org"}})"));
  EXPECT_EQ(only_context, (std::vector<Identifier>{id(r, "email", "b@x.org"), id(r, "anonymous_id", "a1")}));

  auto same = r.extract(Ev(2).anon("a1").traits(R"({"email":"b@x.org"})").context(R"({"traits":{"email":" B@X.ORG"}})"));
  EXPECT_EQ(same, (std::vector<Identifier>{id(r, "email", "b@x.org"), id(r, "anonymous_id", "a1")}))
      << "the same email twice is one identifier";

  auto two = r.extract(Ev(3).traits(R"({"email":"b@x.org"})").context(R"({"traits":{"email":"c@x.org"}})"));
  EXPECT_EQ(two, (std::vector<Identifier>{id(r, "email", "b@x.org"), id(r, "email", "c@x.org")}));
}

TEST(IdentityExtract, CustomPathsStringsAndNumbers) {
  auto types = IdentityRules::defaults();
  types.push_back(type("crm_id", {"properties.crm_id", "traits.crm.id"}, Normalise::None, 1, 0, 0));
  types.push_back(type("device_id", {"context.device.id"}, Normalise::Lower, 0, 0, 50));
  IdentityRules r(types);
  auto ids = r.extract(Ev(1).anon("a1").props(R"({"crm_id":12345})").context(R"({"device":{"id":" DEV-9 "}})"));
  EXPECT_EQ(ids, (std::vector<Identifier>{id(r, "crm_id", "12345"), id(r, "device_id", "dev-9"),
                                          id(r, "anonymous_id", "a1")}));
  EXPECT_EQ(r.extract(Ev(2).props(R"({"crm_id":"C-7"})")), (std::vector<Identifier>{id(r, "crm_id", "C-7")}));
  EXPECT_EQ(r.extract(Ev(3).traits(R"({"crm":{"id":42}})")), (std::vector<Identifier>{id(r, "crm_id", "42")}));
  // Objects, arrays, booleans and null identify no one; nor does a missing path.
  for (const char* p : {R"({"crm_id":{"a":1}})", R"({"crm_id":[1]})", R"({"crm_id":true})", R"({"crm_id":null})",
                        R"({"other":1})", "not json"})
    EXPECT_TRUE(r.extract(Ev(4).props(p)).empty()) << p;
  EXPECT_TRUE(r.extract(Ev(5).traits(R"({"crm":"x"})")).empty()) << "path through a non-object";
}

TEST(IdentityExtract, BlockedAndEmptyValuesAreLeftOut) {
  auto& r = default_rules();
  EXPECT_TRUE(r.extract(Ev(1).user("null").anon("undefined").traits(R"({"email":"test@test.com"})")).empty());
  EXPECT_EQ(r.extract(Ev(2).user("").anon("a1")), (std::vector<Identifier>{id(r, "anonymous_id", "a1")}));
  EXPECT_TRUE(r.extract(Ev(3)).empty());
}

// ------------------------------------------------------------ resolver scenarios

TEST(Resolver, NewIdentifiersMakeANewProfile) {
  Graph g;
  Decision d = g.resolve(Ev(7).anon("a1"));
  EXPECT_EQ(d.event_id, 7);
  EXPECT_EQ(d.profile, 1);
  EXPECT_TRUE(d.new_profile);
  EXPECT_EQ(d.attached, (std::vector<Identifier>{id(g.rules, "anonymous_id", "a1")}));
  EXPECT_TRUE(d.merges.empty());
  EXPECT_TRUE(d.refusals.empty());
  Decision again = g.resolve(Ev(8).anon("a1"));
  EXPECT_EQ(again.profile, 1);
  EXPECT_FALSE(again.new_profile);
  EXPECT_TRUE(again.attached.empty());
  EXPECT_EQ(g.resolve(Ev(9).anon("a2")).profile, 2);
  EXPECT_EQ(g.next, 2);
}

TEST(Resolver, EventWithOnlyBlockedIdentifiersBindsToNoOne) {
  Graph g;
  Decision d = g.resolve(Ev(1).user("null").anon("00000000-0000-0000-0000-000000000000"));
  EXPECT_EQ(d.profile, 0);
  EXPECT_FALSE(d.new_profile);
  EXPECT_EQ(g.next, 0) << "no profile made";
}

// Anonymous visit -> form fill (email) -> app login (user_id) -> CRM record (crm_id): one profile.
TEST(Resolver, CustomerJourneyBecomesOneProfile) {
  auto types = IdentityRules::defaults();
  types.push_back(type("crm_id", {"traits.crm_id"}, Normalise::None, 1, 0, 4));
  IdentityRules rules(types);
  Graph g(rules);

  Decision visit = g.resolve(Ev(1, MessageType::Page).anon("web-anon"));
  ASSERT_TRUE(visit.new_profile);
  int64_t web = visit.profile;

  Decision form = g.resolve(Ev(2, MessageType::Identify).anon("web-anon").traits(R"({"email":" Jane.Doe@Example.com"})"));
  EXPECT_EQ(form.profile, web);
  EXPECT_FALSE(form.new_profile);
  EXPECT_EQ(form.attached, (std::vector<Identifier>{id(rules, "email", "jane.doe@example.com")}));

  // The app, on a phone, knows the user only by user_id at first: a second profile.
  Decision app = g.resolve(Ev(3, MessageType::Identify).user("u-jane").anon("app-anon"));
  ASSERT_TRUE(app.new_profile);
  int64_t appp = app.profile;
  EXPECT_NE(appp, web);

  // Then the app sends her email: the web profile merges into the identified one.
  Decision login = g.resolve(Ev(4, MessageType::Identify).user("u-jane").traits(R"({"email":"JANE.DOE@example.com "})"));
  EXPECT_EQ(login.profile, appp);
  ASSERT_EQ(login.merges.size(), 1u);
  EXPECT_EQ(login.merges[0].from, web);
  EXPECT_EQ(login.merges[0].into, appp);
  EXPECT_TRUE(login.refusals.empty());
  EXPECT_EQ(g.r.canonical(web), appp);

  // The CRM record carries the email and a crm_id.
  Decision crm = g.resolve(Ev(5, MessageType::Identify).traits(R"({"email":"jane.doe@example.com","crm_id":"CRM-1"})"));
  EXPECT_EQ(crm.profile, appp);
  EXPECT_EQ(crm.attached, (std::vector<Identifier>{id(rules, "crm_id", "CRM-1")}));

  EXPECT_EQ(g.profiles(), std::set<int64_t>{appp});
  EXPECT_EQ(g.identifiers_of(appp),
            (std::set<std::string>{"anonymous_id:web-anon", "anonymous_id:app-anon", "email:jane.doe@example.com",
                                   "user_id:u-jane", "crm_id:CRM-1"}));
  // Any later event with any of them binds there.
  EXPECT_EQ(g.resolve(Ev(6).anon("web-anon")).profile, appp);
}

TEST(Resolver, SharedLaptopKeepsTwoPeopleApart) {
  Graph g;
  Decision alice = g.resolve(Ev(1, MessageType::Identify).user("alice").anon("laptop"));
  int64_t pa = alice.profile;
  Decision bob = g.resolve(Ev(2, MessageType::Identify).user("bob").anon("laptop"));
  int64_t pb = bob.profile;
  EXPECT_NE(pa, pb);
  EXPECT_TRUE(bob.new_profile) << "bob's user_id does not fit alice's profile";
  EXPECT_TRUE(bob.merges.empty());
  EXPECT_EQ(bob.attached, (std::vector<Identifier>{id(g.rules, "user_id", "bob")}));
  ASSERT_EQ(bob.refusals.size(), 1u);
  EXPECT_EQ(bob.refusals[0].profile, pb);
  EXPECT_EQ(bob.refusals[0].other_profile, pa);
  EXPECT_EQ(bob.refusals[0].identifier, id(g.rules, "anonymous_id", "laptop"));
  EXPECT_TRUE(mentions(bob.refusals[0].rule, "user_id: at most 1 per profile")) << bob.refusals[0].rule;

  EXPECT_EQ(g.owner("anonymous_id", "laptop"), pa);
  EXPECT_EQ(g.owner("user_id", "bob"), pb);
  EXPECT_EQ(g.r.canonical(pa), pa);
  EXPECT_EQ(g.r.canonical(pb), pb);
  // Bob's later events, on the laptop, still go to bob; anonymous ones to the laptop's owner.
  EXPECT_EQ(g.resolve(Ev(3).user("bob").anon("laptop")).profile, pb);
  EXPECT_EQ(g.resolve(Ev(4).anon("laptop")).profile, pa);
  EXPECT_EQ(g.identifiers_of(pa), (std::set<std::string>{"user_id:alice", "anonymous_id:laptop"}));
  EXPECT_EQ(g.identifiers_of(pb), (std::set<std::string>{"user_id:bob"}));
}

TEST(Resolver, RefusedMergeLeavesWeakerIdentifiersUnattached) {
  Graph g;
  int64_t pa = g.resolve(Ev(1).user("alice").traits(R"({"email":"a@x.com"})")).profile;
  int64_t pb = g.resolve(Ev(2).user("bob")).profile;
  // Bob's event carries alice's email and a new anonymous id.
  Decision d = g.resolve(Ev(3, MessageType::Identify).user("bob").anon("new-anon").traits(R"({"email":"A@x.com"})"));
  EXPECT_EQ(d.profile, pb) << "the event stays with the profile of its strongest identifier";
  EXPECT_TRUE(d.merges.empty());
  EXPECT_TRUE(d.attached.empty());
  ASSERT_EQ(d.refusals.size(), 2u);
  EXPECT_EQ(d.refusals[0].identifier, id(g.rules, "email", "a@x.com"));
  EXPECT_EQ(d.refusals[0].other_profile, pa);
  EXPECT_EQ(d.refusals[1].identifier, id(g.rules, "anonymous_id", "new-anon"));
  EXPECT_EQ(d.refusals[1].other_profile, 0);
  EXPECT_TRUE(mentions(d.refusals[1].rule, "not attached")) << d.refusals[1].rule;
  EXPECT_EQ(g.owner("anonymous_id", "new-anon"), std::nullopt);
  EXPECT_EQ(g.owner("email", "a@x.com"), pa);
}

TEST(Resolver, StrongerNewIdentifiersAreStillAttachedBeforeARefusal) {
  Graph g;
  int64_t pa = g.resolve(Ev(1).user("alice").anon("laptop")).profile;
  g.resolve(Ev(2).user("bob"));
  // email (new, priority 2) comes before the anonymous id (priority 100) whose merge is refused.
  Decision d = g.resolve(Ev(3).user("bob").anon("laptop").traits(R"({"email":"bob@x.com"})"));
  EXPECT_EQ(d.attached, (std::vector<Identifier>{id(g.rules, "email", "bob@x.com")}));
  ASSERT_EQ(d.refusals.size(), 1u);
  EXPECT_EQ(d.refusals[0].other_profile, pa);
  EXPECT_EQ(g.owner("email", "bob@x.com"), d.profile);
}

TEST(Resolver, BlockedValuesNeverMergeStrangers) {
  Graph g;
  int64_t p1 = g.resolve(Ev(1).user("null").anon("a1").traits(R"({"email":"test@test.com"})")).profile;
  int64_t p2 = g.resolve(Ev(2).user("NULL").anon("a2").traits(R"({"email":" TEST@test.com"})")).profile;
  int64_t p3 = g.resolve(Ev(3).user("0000").anon("a3")).profile;
  EXPECT_NE(p1, p2);
  EXPECT_NE(p2, p3);
  EXPECT_NE(p1, p3);
  EXPECT_EQ(g.r.identity_count(), 3u) << "only the three anonymous ids";
  EXPECT_EQ(g.owner("user_id", "null"), std::nullopt);
  EXPECT_EQ(g.owner("email", "test@test.com"), std::nullopt);
}

TEST(Resolver, EmailCaseAndSpacesMatch) {
  Graph g;
  int64_t p1 = g.resolve(Ev(1, MessageType::Identify).anon("a1").traits(R"({"email":" Bob@Example.com"})")).profile;
  Decision d = g.resolve(Ev(2, MessageType::Identify).anon("a2").traits(R"({"email":"bob@example.COM  "})"));
  EXPECT_EQ(d.profile, p1);
  EXPECT_EQ(d.attached, (std::vector<Identifier>{id(g.rules, "anonymous_id", "a2")}));
  EXPECT_EQ(g.identifiers_of(p1),
            (std::set<std::string>{"email:bob@example.com", "anonymous_id:a1", "anonymous_id:a2"}));
}

TEST(Resolver, SurvivorIsTheProfileOfTheStrongestIdentifier) {
  Graph g;
  // The anonymous profile is older and bigger: two profiles merged already, so
  // union by size puts the user's node under its node.
  int64_t anon = g.resolve(Ev(1).anon("a1").traits(R"({"email":"x@y.com"})")).profile;
  int64_t anon2 = g.resolve(Ev(2).anon("a2")).profile;
  ASSERT_EQ(g.resolve(Ev(3).anon("a2").traits(R"({"email":"x@y.com"})")).merges.size(), 1u);
  ASSERT_EQ(g.r.canonical(anon2), anon);
  int64_t user = g.resolve(Ev(4).user("u1")).profile;
  ASSERT_NE(anon, user);
  Decision d = g.resolve(Ev(5).user("u1").anon("a1"));
  EXPECT_EQ(d.profile, user);
  ASSERT_EQ(d.merges.size(), 1u);
  EXPECT_EQ(d.merges[0].from, anon);
  EXPECT_EQ(d.merges[0].into, user);
  EXPECT_EQ(g.r.canonical(anon), user);
  EXPECT_EQ(g.r.canonical(anon2), user);
  EXPECT_EQ(g.r.canonical(user), user);
  EXPECT_EQ(g.owner("email", "x@y.com"), user);
  EXPECT_EQ(g.owner("anonymous_id", "a2"), user);
  EXPECT_EQ(g.profiles(), std::set<int64_t>{user});

  // An event whose strongest identifier is an email merges the anonymous profile into the email's.
  Graph h;
  int64_t pa = h.resolve(Ev(1).anon("a9")).profile;
  int64_t pe = h.resolve(Ev(2).traits(R"({"email":"e@x.com"})")).profile;
  Decision m = h.resolve(Ev(3).anon("a9").traits(R"({"email":"e@x.com"})"));
  EXPECT_EQ(m.profile, pe);
  EXPECT_EQ(h.r.canonical(pa), pe);
}

TEST(Resolver, NewStrongIdentifierJoinsTheKnownProfile) {
  Graph g;
  int64_t p = g.resolve(Ev(1).anon("a1")).profile;
  Decision d = g.resolve(Ev(2).user("u1").anon("a1"));
  EXPECT_EQ(d.profile, p) << "a new user_id joins the anonymous profile that has none";
  EXPECT_FALSE(d.new_profile);
  EXPECT_EQ(d.attached, (std::vector<Identifier>{id(g.rules, "user_id", "u1")}));
  EXPECT_EQ(g.next, 1);
}

TEST(Resolver, CanonicalFollowsChainsOfMerges) {
  Graph g;
  int64_t p1 = g.resolve(Ev(1).anon("a1")).profile;
  int64_t p2 = g.resolve(Ev(2).anon("a2")).profile;
  int64_t p3 = g.resolve(Ev(3).traits(R"({"email":"c@x.com"})")).profile;
  int64_t p4 = g.resolve(Ev(4).user("u1")).profile;
  EXPECT_EQ(g.resolve(Ev(5).anon("a1").context(R"({"traits":{"email":"c2@x.com"}})")).profile, p1);
  // p1 into p3 (email is stronger than anonymous id), then p2 into p3, then p3 into p4.
  Decision first = g.resolve(Ev(6).anon("a1").traits(R"({"email":"c@x.com"})"));
  EXPECT_EQ(first.profile, p3);
  ASSERT_EQ(first.merges.size(), 1u);
  EXPECT_EQ(first.merges[0].from, p1);
  EXPECT_EQ(first.merges[0].into, p3);
  EXPECT_EQ(g.r.canonical(p1), p3);
  g.resolve(Ev(7).anon("a2").traits(R"({"email":"c@x.com"})"));
  EXPECT_EQ(g.r.canonical(p2), p3);
  Decision last = g.resolve(Ev(8).user("u1").traits(R"({"email":"c2@x.com"})"));
  ASSERT_EQ(last.merges.size(), 1u);
  EXPECT_EQ(last.merges[0].from, p3);
  EXPECT_EQ(last.merges[0].into, p4);
  for (int64_t p : {p1, p2, p3, p4}) EXPECT_EQ(g.r.canonical(p), p4) << p;
  EXPECT_EQ(g.r.canonical(999), 999) << "an unknown profile is its own canonical";
  EXPECT_EQ(g.identifiers_of(p4).size(), 5u);
}

// ------------------------------------------------------------ alias

TEST(ResolverAlias, PreviousAnonymousIdMergesIntoTheUser) {
  Graph g;
  int64_t anon = g.resolve(Ev(1).anon("a1")).profile;
  int64_t user = g.resolve(Ev(2).user("u1").anon("a2")).profile;
  Decision d = g.resolve(Ev(3, MessageType::Alias).user("u1").prev("a1"));
  EXPECT_EQ(d.profile, user);
  ASSERT_EQ(d.merges.size(), 1u);
  EXPECT_EQ(d.merges[0].from, anon);
  EXPECT_EQ(d.merges[0].into, user);
  EXPECT_EQ(g.r.canonical(anon), user);
}

TEST(ResolverAlias, UnknownPreviousIdIsAnAnonymousId) {
  Graph g;
  int64_t user = g.resolve(Ev(1).user("u1")).profile;
  Decision d = g.resolve(Ev(2, MessageType::Alias).user("u1").prev("old-anon"));
  EXPECT_EQ(d.profile, user);
  EXPECT_TRUE(d.refusals.empty()) << (d.refusals.empty() ? "" : d.refusals[0].rule);
  EXPECT_EQ(d.attached, (std::vector<Identifier>{id(g.rules, "anonymous_id", "old-anon")}));
  EXPECT_EQ(g.owner("anonymous_id", "old-anon"), user);
  EXPECT_EQ(g.owner("user_id", "old-anon"), std::nullopt);
  // So a later anonymous event with that id binds to the user.
  EXPECT_EQ(g.resolve(Ev(3).anon("old-anon")).profile, user);
}

TEST(ResolverAlias, UnknownPreviousIdWithAnonymousIdOnly) {
  Graph g;
  Decision d = g.resolve(Ev(1, MessageType::Alias).anon("a-new").prev("a-old"));
  EXPECT_EQ(g.owner("anonymous_id", "a-old"), d.profile);
  EXPECT_EQ(g.owner("user_id", "a-old"), std::nullopt) << "an unknown previousId is not a user_id";
  // The person logs in later with the old anonymous id: no user_id conflict.
  Decision login = g.resolve(Ev(2).user("u1").anon("a-old"));
  EXPECT_TRUE(login.refusals.empty());
  EXPECT_EQ(login.profile, d.profile);
}

TEST(ResolverAlias, PreviousIdKnownAsUserIdIsAUserId) {
  // With at most one user_id per profile, aliasing one user_id to another is refused.
  {
    Graph g;
    int64_t old_user = g.resolve(Ev(1).user("old-id").anon("a1")).profile;
    Decision d = g.resolve(Ev(2, MessageType::Alias).user("new-id").prev("old-id"));
    EXPECT_NE(d.profile, old_user);
    EXPECT_TRUE(d.merges.empty());
    ASSERT_EQ(d.refusals.size(), 1u);
    EXPECT_EQ(d.refusals[0].identifier, id(g.rules, "user_id", "old-id"));
    EXPECT_EQ(d.refusals[0].other_profile, old_user);
    EXPECT_EQ(g.owner("anonymous_id", "old-id"), std::nullopt) << "not taken for an anonymous id";
    EXPECT_EQ(g.owner("user_id", "new-id"), d.profile);
  }
  // With two user_ids allowed, the alias links them.
  {
    auto types = IdentityRules::defaults();
    types[0].limit = 2;
    IdentityRules rules(types);
    Graph g(rules);
    int64_t old_user = g.resolve(Ev(1).user("old-id").anon("a1")).profile;
    int64_t new_user = g.resolve(Ev(2).user("new-id")).profile;
    Decision d = g.resolve(Ev(3, MessageType::Alias).user("new-id").prev("old-id"));
    EXPECT_EQ(d.profile, new_user);
    ASSERT_EQ(d.merges.size(), 1u);
    EXPECT_EQ(d.merges[0].from, old_user);
    EXPECT_EQ(g.r.canonical(old_user), new_user);
    EXPECT_EQ(g.identifiers_of(new_user),
              (std::set<std::string>{"user_id:old-id", "user_id:new-id", "anonymous_id:a1"}));
  }
}

TEST(ResolverAlias, PreviousIdKnownAsAnonymousIdIsNotTakenForAUserId) {
  auto types = IdentityRules::defaults();
  types[0].limit = 2;  // would let a wrong user_id in unnoticed
  IdentityRules rules(types);
  Graph g(rules);
  int64_t anon = g.resolve(Ev(1).anon("shared-name")).profile;
  Decision d = g.resolve(Ev(2, MessageType::Alias).user("u1").prev("shared-name"));
  EXPECT_EQ(d.profile, anon) << "u1 joins the anonymous profile";
  EXPECT_EQ(g.owner("user_id", "shared-name"), std::nullopt);
  EXPECT_EQ(g.owner("user_id", "u1"), anon);
}

TEST(ResolverAlias, ChainOfAliases) {
  Graph g;
  int64_t p1 = g.resolve(Ev(1).anon("a1")).profile;
  int64_t p2 = g.resolve(Ev(2).anon("a2")).profile;
  int64_t pu = g.resolve(Ev(3).user("u1").anon("a3")).profile;
  // a1 -> a2 (anonymous to anonymous), then a2 -> u1.
  Decision d1 = g.resolve(Ev(4, MessageType::Alias).anon("a2").prev("a1"));
  EXPECT_EQ(d1.profile, p2);
  EXPECT_EQ(g.r.canonical(p1), p2);
  Decision d2 = g.resolve(Ev(5, MessageType::Alias).user("u1").prev("a2"));
  EXPECT_EQ(d2.profile, pu);
  EXPECT_EQ(g.r.canonical(p1), pu);
  EXPECT_EQ(g.r.canonical(p2), pu);
  EXPECT_EQ(g.identifiers_of(pu),
            (std::set<std::string>{"user_id:u1", "anonymous_id:a1", "anonymous_id:a2", "anonymous_id:a3"}));
  EXPECT_EQ(g.resolve(Ev(6).anon("a1")).profile, pu);
}

TEST(ResolverAlias, PreviousIdOnNonAliasEventsIsIgnored) {
  Graph g;
  int64_t p1 = g.resolve(Ev(1).anon("a1")).profile;
  Decision d = g.resolve(Ev(2, MessageType::Track).user("u1").prev("a1"));
  EXPECT_NE(d.profile, p1);
  EXPECT_TRUE(d.merges.empty());
}

// ------------------------------------------------------------ limits and guard rails

TEST(ResolverLimits, AtMostTwoAnonymousIdsPerSevenDays) {
  auto types = IdentityRules::defaults();
  types[3].limit = 2;
  types[3].window = 7 * kDay;
  IdentityRules rules(types);
  Graph g(rules);
  Micros t0 = at("2025-03-01T00:00:00Z");
  int64_t p = g.resolve(Ev(1).user("u1").anon("a1").ts(t0)).profile;
  EXPECT_EQ(g.resolve(Ev(2).user("u1").anon("a2").ts(t0 + 1 * kDay)).attached.size(), 1u);

  Decision third = g.resolve(Ev(3).user("u1").anon("a3").ts(t0 + 2 * kDay));
  EXPECT_EQ(third.profile, p);
  EXPECT_TRUE(third.attached.empty());
  ASSERT_EQ(third.refusals.size(), 1u);
  EXPECT_EQ(third.refusals[0].identifier, id(rules, "anonymous_id", "a3"));
  EXPECT_TRUE(mentions(third.refusals[0].rule, "anonymous_id: at most 2 per profile in its window"))
      << third.refusals[0].rule;
  EXPECT_EQ(g.owner("anonymous_id", "a3"), std::nullopt);

  // 8.5 days after the first: a1 and a2 have left the window.
  Decision later = g.resolve(Ev(4).user("u1").anon("a4").ts(t0 + 8 * kDay + kDay / 2));
  EXPECT_EQ(later.attached, (std::vector<Identifier>{id(rules, "anonymous_id", "a4")}));
  EXPECT_TRUE(later.refusals.empty());
  EXPECT_EQ(g.owner("anonymous_id", "a4"), p);
  EXPECT_EQ(g.resolve(Ev(5).user("u1").anon("a5").ts(t0 + 8 * kDay + kDay / 2 + kSecond)).attached.size(), 1u);
  EXPECT_EQ(g.resolve(Ev(6).user("u1").anon("a6").ts(t0 + 8 * kDay + kDay / 2 + 2 * kSecond)).refusals.size(), 1u)
      << "a4 and a5 are in the window";
  // Known identifiers still bind their events.
  EXPECT_EQ(g.resolve(Ev(7).anon("a1").ts(t0 + 30 * kDay)).profile, p);
}

TEST(ResolverLimits, WindowLimitAlsoBlocksMerges) {
  auto types = IdentityRules::defaults();
  types[3].limit = 2;
  types[3].window = 7 * kDay;
  IdentityRules rules(types);
  Graph g(rules);
  Micros t0 = at("2025-03-01T00:00:00Z");
  int64_t p = g.resolve(Ev(1).user("u1").anon("a1").ts(t0)).profile;
  g.resolve(Ev(2).user("u1").anon("a2").ts(t0 + kDay));
  int64_t q = g.resolve(Ev(3).anon("a3").ts(t0 + kDay)).profile;
  Decision d = g.resolve(Ev(4).user("u1").anon("a3").ts(t0 + 2 * kDay));
  EXPECT_EQ(d.profile, p);
  EXPECT_TRUE(d.merges.empty());
  ASSERT_EQ(d.refusals.size(), 1u);
  EXPECT_EQ(d.refusals[0].other_profile, q);
  // Once the window has passed, the same event merges.
  Decision later = g.resolve(Ev(5).user("u1").anon("a3").ts(t0 + 8 * kDay + kDay / 2));
  EXPECT_EQ(later.merges.size(), 1u);
  EXPECT_EQ(g.r.canonical(q), p);
}

TEST(ResolverLimits, SeededIdentitiesCountTowardsLimits) {
  Graph g;
  g.r.add_profile(500, 3, 2, false);
  g.r.add_identity(id(g.rules, "user_id", "u1"), 500, at("2024-01-01T00:00:00Z"));
  g.r.add_identity(id(g.rules, "anonymous_id", "a1"), 500, at("2024-01-01T00:00:00Z"));
  EXPECT_EQ(g.owner("user_id", "u1"), 500);
  Decision d = g.resolve(Ev(1).user("u2").anon("a1"));
  EXPECT_NE(d.profile, 500);
  EXPECT_TRUE(d.new_profile);
  ASSERT_EQ(d.refusals.size(), 1u);
  EXPECT_TRUE(mentions(d.refusals[0].rule, "user_id"));
  EXPECT_EQ(g.resolve(Ev(2).anon("a1")).profile, 500);
}

TEST(ResolverGuardRails, MaxMergesFlagsTheProfile) {
  IdentityRules rules(IdentityRules::defaults(), GuardRails{2, 1000});
  Graph g(rules);
  int64_t user = g.resolve(Ev(1).user("u1")).profile;
  int64_t a1 = g.resolve(Ev(2).anon("a1")).profile;
  int64_t a2 = g.resolve(Ev(3).anon("a2")).profile;
  int64_t a3 = g.resolve(Ev(4).anon("a3")).profile;
  EXPECT_EQ(g.resolve(Ev(5).user("u1").anon("a1")).merges.size(), 1u);
  Decision second = g.resolve(Ev(6).user("u1").anon("a2"));
  EXPECT_EQ(second.merges.size(), 1u);
  EXPECT_FALSE(second.flagged);
  Decision third = g.resolve(Ev(7).user("u1").anon("a3"));
  EXPECT_TRUE(third.merges.empty());
  EXPECT_TRUE(third.flagged);
  EXPECT_EQ(third.profile, user);
  ASSERT_EQ(third.refusals.size(), 1u);
  EXPECT_EQ(third.refusals[0].other_profile, a3);
  EXPECT_TRUE(mentions(third.refusals[0].rule, "would pass 2 merges")) << third.refusals[0].rule;
  EXPECT_EQ(g.r.canonical(a1), user);
  EXPECT_EQ(g.r.canonical(a2), user);
  EXPECT_EQ(g.r.canonical(a3), a3);
  // Flagged: it stays flagged and takes no more merges.
  Decision after = g.resolve(Ev(8).user("u1"));
  EXPECT_TRUE(after.flagged);
  g.resolve(Ev(9).anon("a4"));
  Decision more = g.resolve(Ev(10).user("u1").anon("a4"));
  EXPECT_TRUE(more.merges.empty());
  ASSERT_EQ(more.refusals.size(), 1u);
  EXPECT_TRUE(mentions(more.refusals[0].rule, "flagged")) << more.refusals[0].rule;
}

TEST(ResolverGuardRails, SeededMergeCountCounts) {
  IdentityRules rules(IdentityRules::defaults(), GuardRails{5, 1000});
  Graph g(rules);
  g.r.add_profile(77, 5, 1, false);
  g.r.add_identity(id(rules, "user_id", "u1"), 77, 0);
  g.resolve(Ev(1).anon("a1"));
  Decision d = g.resolve(Ev(2).user("u1").anon("a1"));
  EXPECT_TRUE(d.merges.empty());
  EXPECT_TRUE(d.flagged);
}

TEST(ResolverGuardRails, MaxIdentifiersFlagsTheProfile) {
  IdentityRules rules(IdentityRules::defaults(), GuardRails{100, 3});
  Graph g(rules);
  Decision d = g.resolve(Ev(1).user("u1").anon("a1").traits(R"({"email":"u1@x.com"})"));
  EXPECT_EQ(d.attached.size(), 3u);
  EXPECT_FALSE(d.flagged);
  Decision over = g.resolve(Ev(2).user("u1").anon("a2"));
  EXPECT_TRUE(over.attached.empty());
  EXPECT_TRUE(over.flagged);
  ASSERT_EQ(over.refusals.size(), 1u);
  EXPECT_TRUE(mentions(over.refusals[0].rule, "would pass 3 identifiers")) << over.refusals[0].rule;
  EXPECT_EQ(g.owner("anonymous_id", "a2"), std::nullopt);

  // A merge that would pass the cap is refused too.
  Graph h(rules);
  int64_t p = h.resolve(Ev(1).user("u1").anon("a1")).profile;
  int64_t q = h.resolve(Ev(2).anon("b1").traits(R"({"email":"b@x.com"})")).profile;
  Decision m = h.resolve(Ev(3).user("u1").anon("b1"));
  EXPECT_TRUE(m.merges.empty());
  EXPECT_TRUE(m.flagged);
  EXPECT_EQ(h.r.canonical(q), q);
  EXPECT_EQ(m.profile, p);
}

TEST(Resolver, MemoryIsAccounted) {
  Graph g;
  size_t empty = g.r.memory_bytes();
  for (int i = 0; i < 100; i++) g.resolve(Ev(i).anon("anonymous-" + std::to_string(i)));
  EXPECT_EQ(g.r.identity_count(), 100u);
  EXPECT_GT(g.r.memory_bytes(), empty);
}

// ------------------------------------------------------------ property test
//
// Random conflict-free event sets: each event carries identifiers of one
// person only, and each person has one user_id and one email, so no limit is
// ever hit. Whatever order the events are resolved in, the final partition of
// identifiers into profiles and each profile's traits must be the same.

struct Person {
  std::string user, email;
  std::vector<std::string> anons;
};

std::string email_variant(const std::string& email, std::mt19937_64& rng) {
  std::string v = email;
  for (char& c : v)
    if (rng() % 2) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (rng() % 3 == 0) v = " " + v;
  if (rng() % 3 == 0) v += "  ";
  return v;
}

std::vector<EventFacts> random_events(std::mt19937_64& rng, std::vector<Person>& people) {
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  size_t np = 10 + pick(21);
  people.clear();
  for (size_t i = 0; i < np; i++) {
    Person p;
    p.user = "user-" + std::to_string(i);
    p.email = "Person" + std::to_string(i) + "@Example.com";
    size_t na = 1 + pick(3);
    for (size_t k = 0; k < na; k++) p.anons.push_back("anon-" + std::to_string(i) + "-" + std::to_string(k));
    people.push_back(std::move(p));
  }
  const char* plans[] = {"free", "pro", "team", "enterprise"};
  size_t ne = 50 + pick(151);
  Micros base = at("2025-01-01T00:00:00Z");
  std::vector<EventFacts> out;
  for (size_t j = 0; j < ne; j++) {
    const Person& p = people[pick(np)];
    EventFacts e;
    e.id = static_cast<int64_t>(j + 1);
    e.message_id = std::to_string(rng() % 1000000) + "-" + std::to_string(j);  // unique, random order
    e.timestamp = base + static_cast<Micros>(pick(40)) * kSecond;  // few distinct times: many ties
    e.source_id = 1 + static_cast<int>(pick(3));
    int kind = static_cast<int>(pick(10));
    bool with_user = pick(2), with_anon = pick(3) != 0, with_email = pick(3) == 0;
    if (!with_user && !with_anon && !with_email) with_anon = true;
    if (with_user) e.user_id = p.user;
    if (with_anon) e.anonymous_id = p.anons[pick(p.anons.size())];
    if (pick(8) == 0) e.user_id = "null";                                   // blocked: shared by everyone
    std::string email = with_email ? email_variant(p.email, rng) : pick(10) == 0 ? "test@test.com" : "";
    if (kind < 5) {
      e.type = MessageType::Identify;
      std::string t = "{";
      if (!email.empty()) t += "\"email\":\"" + email + "\",";
      t += "\"plan\":\"" + std::string(plans[pick(4)]) + "\",";
      t += "\"score\":" + (pick(8) == 0 ? std::string("\"n/a\"") : std::to_string(pick(1000))) + ",";
      t += "\"lowest\":" + std::to_string(pick(1000)) + ",";
      t += "\"tier\":\"t" + std::to_string(pick(5)) + "\",";
      t += "\"name\":\"n" + std::to_string(pick(100)) + "\"}";
      e.traits = t;
    } else if (kind < 8) {
      e.type = MessageType::Track;
      e.properties = R"({"page":"/p)" + std::to_string(pick(20)) + "\"}";
      if (!email.empty()) e.context = R"({"traits":{"email":")" + email + "\"}}";
    } else {
      // alias: previousId one of the person's anonymous ids
      e.type = MessageType::Alias;
      e.previous_id = p.anons[pick(p.anons.size())];
      if (e.user_id.empty() && e.anonymous_id.empty()) e.user_id = p.user;
    }
    out.push_back(std::move(e));
  }
  return out;
}

TraitRules property_trait_rules() {
  return TraitRules({rule("plan", TraitStrategy::Last, {}, ""),
                     rule("score", TraitStrategy::Max, {}, ""),
                     rule("lowest", TraitStrategy::Min, {}, ""),
                     rule("name", TraitStrategy::First, {}, ""),
                     rule("tier", TraitStrategy::SourcePriority, {3, 1}, ""),
                     rule("last_page", TraitStrategy::Last, {}, "properties.page")});
}

// The outcome of one order: identifier sets -> traits and provenance of their profile.
using Outcome = std::map<std::set<std::string>, std::string>;

// `merges` (if given) counts the profile merges on the way.
Outcome resolve_in_order(const IdentityRules& rules, const TraitRules& traits, const std::vector<EventFacts>& events,
                         const std::vector<size_t>& order, size_t& refusals, size_t* merges = nullptr) {
  int64_t next = 0;
  Resolver r(rules, [&] { return ++next; });
  std::map<int64_t, TraitSet> bound;  // traits per profile as bound at processing time
  for (size_t i : order) {
    Decision d = r.resolve(events[i]);
    refusals += d.refusals.size();
    if (merges) *merges += d.merges.size();
    if (d.profile != 0) traits.fold_event(bound[d.profile], events[i]);
  }
  std::map<int64_t, TraitSet> final_sets;  // merged profiles' sets folded into their survivors
  for (auto& [p, set] : bound) traits.fold_set(final_sets[r.canonical(p)], set);
  std::map<int64_t, std::set<std::string>> members;
  r.for_each_identity([&](const Identifier& i, int64_t p, Micros) {
    members[p].insert(rules.types()[i.type].name + ":" + i.value);
  });
  Outcome out;
  for (auto& [p, ids] : members) {
    const TraitSet& s = final_sets[p];
    out[ids] = s.traits_json() + " " + s.meta_json();
  }
  return out;
}

// Whose identifier this is: "user_id:user-3", "anonymous_id:anon-3-1" and
// "email:person3@example.com" are all person 3's.
std::string person_of(const std::string& key) {
  std::string v = key.substr(key.find(':') + 1);
  if (v.rfind("person", 0) == 0) return v.substr(6, v.find('@') - 6);
  size_t dash = v.find('-');
  return v.substr(dash + 1, v.find('-', dash + 1) - dash - 1);
}

// The identifiers an event links: those it carries, and an alias's previousId.
std::vector<std::string> linked_keys(const IdentityRules& rules, const EventFacts& e) {
  auto ids = rules.extract(e);
  if (e.type == MessageType::Alias) ids.push_back(Identifier{rules.find("anonymous_id"), e.previous_id});
  std::vector<std::string> keys;
  for (auto& i : ids) keys.push_back(rules.types()[i.type].name + ":" + i.value);
  return keys;
}

// The expected partition: connected components of "appear in the same event".
std::set<std::set<std::string>> expected_partition(const IdentityRules& rules, const std::vector<EventFacts>& events) {
  std::map<std::string, std::string> parent;
  std::function<std::string(const std::string&)> root = [&](const std::string& x) {
    return parent[x] == x ? x : parent[x] = root(parent[x]);
  };
  for (auto& e : events) {
    auto ids = linked_keys(rules, e);
    for (auto& k : ids) parent.try_emplace(k, k);
    for (size_t k = 1; k < ids.size(); k++) parent[root(ids[k])] = root(ids[0]);
  }
  std::map<std::string, std::set<std::string>> comps;
  for (auto& [k, _] : parent) comps[root(k)].insert(k);
  std::set<std::set<std::string>> out;
  for (auto& [_, c] : comps) out.insert(c);
  return out;
}

// The expected traits of each component, as resolve_in_order gives them: every
// event of the component folded into one set, with no resolver in between
// (the fold is independent of order and of how the events were split among
// profiles: traits_test checks that).
Outcome expected_traits(const IdentityRules& rules, const TraitRules& traits, const std::vector<EventFacts>& events,
                        const std::set<std::set<std::string>>& partition) {
  std::map<std::string, const std::set<std::string>*> component;
  for (auto& c : partition)
    for (auto& k : c) component[k] = &c;
  std::map<const std::set<std::string>*, TraitSet> sets;
  for (auto& e : events) {
    auto ids = linked_keys(rules, e);
    if (!ids.empty()) traits.fold_event(sets[component.at(ids[0])], e);
  }
  Outcome out;
  for (auto& c : partition) out[c] = sets[&c].traits_json() + " " + sets[&c].meta_json();
  return out;
}

TEST(ResolverProperty, ShuffledOrdersGiveTheSameGraphAndTraits) {
  const IdentityRules& rules = default_rules();
  TraitRules traits = property_trait_rules();
  std::mt19937_64 rng(20250401);
  constexpr int kSets = 8, kOrdersPerSet = 250;  // 2,000 orders in all
  for (int s = 0; s < kSets; s++) {
    std::vector<Person> people;
    std::vector<EventFacts> events = random_events(rng, people);
    std::vector<size_t> order(events.size());
    std::iota(order.begin(), order.end(), 0);
    size_t refusals = 0, merges = 0;
    Outcome first = resolve_in_order(rules, traits, events, order, refusals, &merges);
    ASSERT_EQ(refusals, 0u) << "set " << s << ": conflict-free events must never be refused";

    // The partition is the connected components, and no profile mixes two people.
    std::set<std::set<std::string>> partition;
    for (auto& [ids, _] : first) partition.insert(ids);
    ASSERT_EQ(partition, expected_partition(rules, events)) << "set " << s;
    for (auto& ids : partition) {
      std::set<std::string> owners;
      for (auto& i : ids) owners.insert(person_of(i));
      EXPECT_EQ(owners.size(), 1u) << "a profile holds identifiers of two people";
    }
    // Each profile's traits are its events' traits, and the set is no trivial
    // one: profiles were merged on the way, and most have traits.
    size_t with_traits = 0;
    for (auto& [ids, t] : expected_traits(rules, traits, events, partition)) {
      auto it = first.find(ids);
      ASSERT_NE(it, first.end()) << "set " << s;
      EXPECT_EQ(it->second, t) << "set " << s << ": a profile's traits are not those of its events";
      with_traits += t.rfind("{} ", 0) != 0;
    }
    EXPECT_GT(merges, 0u) << "set " << s << ": no profile merge, so orders cannot differ in merges";
    EXPECT_GT(with_traits * 2, partition.size()) << "set " << s << ": most profiles should have traits";

    for (int k = 0; k < kOrdersPerSet; k++) {
      std::shuffle(order.begin(), order.end(), rng);
      size_t shuffled_refusals = 0;
      Outcome o = resolve_in_order(rules, traits, events, order, shuffled_refusals);
      ASSERT_EQ(shuffled_refusals, 0u) << "set " << s << " order " << k;
      ASSERT_EQ(o.size(), first.size()) << "set " << s << " order " << k << ": a different number of profiles";
      for (auto& [ids, t] : first) {
        auto it = o.find(ids);
        ASSERT_NE(it, o.end()) << "set " << s << " order " << k << ": a profile is split or joined differently";
        ASSERT_EQ(it->second, t) << "set " << s << " order " << k << ": traits depend on the order";
      }
    }
  }
}

}  // namespace
}  // namespace cdp
