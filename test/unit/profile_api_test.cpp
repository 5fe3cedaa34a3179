// The Profile API's rules: what a path asks for, what a token may read.
#include "core/profile_api.hpp"

#include <gtest/gtest.h>

#include <map>

#include "core/error.hpp"

namespace cdp::profiles {
namespace {

Lookup parse(std::string_view rest, std::map<std::string, std::string> query = {}) {
  return parse_lookup(rest, [&](const char* name) -> std::optional<std::string> {
    auto it = query.find(name);
    if (it == query.end()) return std::nullopt;
    return it->second;
  });
}

std::string refusal(std::string_view rest, std::map<std::string, std::string> query = {}) {
  try {
    parse(rest, std::move(query));
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(ProfileLookup, AnIdentifierIsTypeColonValuePercentDecoded) {
  Lookup l = parse("email:Ada%40Example.com");
  EXPECT_EQ(l.type, "email");
  EXPECT_EQ(l.value, "Ada@Example.com");  // normalised by the database, as ingestion does
  EXPECT_EQ(l.parts, kDefaultParts);
  EXPECT_EQ(parse("user_id:a:b").value, "a:b");  // only the first colon separates
  EXPECT_EQ(parse("email:a%2Fb").value, "a/b");
}

TEST(ProfileLookup, DigitsAreAProfileNumber) {
  Lookup l = parse("42");
  EXPECT_EQ(l.profile_id, 42);
  EXPECT_TRUE(l.type.empty());
  EXPECT_EQ(refusal("0"), "identifier: must be a whole number from 1 to 999999999999999999");
  EXPECT_EQ(refusal("1234567890123456789"), "identifier: must be a whole number from 1 to 999999999999999999");
}

TEST(ProfileLookup, PartsComeFromThePathOrInclude) {
  EXPECT_EQ(parse("7/identities").parts, kIdentities);
  EXPECT_EQ(parse("7/events/").parts, kEvents);
  EXPECT_EQ(parse("7", {{"include", "traits, segments,consent"}}).parts, kTraits | kSegments | kConsent);
  EXPECT_EQ(parse("7/events", {{"include", "traits"}}).parts, kEvents | kTraits);
  EXPECT_EQ(part_names(kAllParts), "traits,computed,segments,memberships,identities,events,consent");
}

TEST(ProfileLookup, FieldsLimitAndCursor) {
  Lookup l = parse("7", {{"fields", "plan,email"}, {"limit", "50"}, {"cursor", "991"}});
  EXPECT_EQ(l.fields, (std::vector<std::string>{"plan", "email"}));
  EXPECT_EQ(l.limit, 50);
  EXPECT_EQ(l.cursor, 991);
  EXPECT_EQ(parse("7").limit, kDefaultEventLimit);
}

TEST(ProfileLookup, BadInputNamesTheFieldAndTheRule) {
  EXPECT_EQ(refusal(""), "identifier: is missing: /v1/profiles/<type>:<value> or /v1/profiles/<profile_id>");
  EXPECT_EQ(refusal(".."), "identifier: must be <type>:<value> (e.g. email:ada%40example.com) or a profile number");
  EXPECT_EQ(refusal("Email:a"), "identifier: type \"Email\" is not an identifier type name (a-z, 0-9, _)");
  EXPECT_EQ(refusal("email:"), "identifier: value is empty");
  EXPECT_EQ(refusal("email:%zz"), "identifier: has a broken percent-escape");
  EXPECT_EQ(refusal("email:a%00b"), "identifier: must not hold control characters");
  EXPECT_EQ(refusal("email:" + std::string(1025, 'a')), "identifier: is longer than 1024 bytes");
  EXPECT_EQ(refusal("7/secrets"),
            "part: must be one of traits,computed,segments,memberships,identities,events,consent, as "
            "/v1/profiles/<identifier>/<part>");
  EXPECT_EQ(refusal("7/traits/x"), refusal("7/secrets"));
  EXPECT_EQ(refusal("7", {{"include", "traits,secrets"}}),
            "include: \"secrets\" is not one of traits,computed,segments,memberships,identities,events,consent");
  EXPECT_EQ(refusal("7", {{"include", ""}}),
            "include: must name at least one of traits,computed,segments,memberships,identities,events,consent");
  EXPECT_EQ(refusal("7", {{"limit", "101"}}), "limit: must be a whole number from 1 to 100");
  EXPECT_EQ(refusal("7", {{"limit", "-1"}}), "limit: must be a whole number from 1 to 100");
  EXPECT_EQ(refusal("7", {{"cursor", "x"}}), "cursor: must be a whole number from 1 to 999999999999999999");
  EXPECT_EQ(refusal("7", {{"fields", ","}}), "fields: must name at least one trait");
}

TEST(ProfileGrant, ScopesSayWhichPartsAndHowPiiComesBack) {
  Grant g = grant_of({"profiles:read"});
  EXPECT_EQ(g.parts, kTraits | kComputed | kSegments | kMemberships);
  EXPECT_EQ(g.pii, Pii::Omit);
  EXPECT_EQ(grant_of({"profiles:read", "pii:hashed"}).pii, Pii::Hash);
  EXPECT_EQ(grant_of({"events:read", "pii:clear"}).pii, Pii::Clear);
  EXPECT_EQ(missing_scope(kDefaultParts, g), "");
  EXPECT_EQ(missing_scope(kTraits | kEvents, g), "events:read");
  EXPECT_EQ(missing_scope(kIdentities, g), "identities:read");
  EXPECT_EQ(missing_scope(kConsent, grant_of({"events:read"})), "consent:read");
  EXPECT_EQ(missing_scope(kTraits, grant_of({"events:read"})), "profiles:read");
}

TEST(ProfileGrant, BearerTokens) {
  EXPECT_EQ(bearer_token("Bearer cdpr_abc"), "cdpr_abc");
  EXPECT_EQ(bearer_token("bearer   cdpr_abc "), "cdpr_abc");
  EXPECT_EQ(bearer_token("Basic eDo="), "");
  EXPECT_EQ(bearer_token("Bearer"), "");
  EXPECT_EQ(bearer_token(""), "");
}

TEST(ProfileDocument, PartsAreSplicedAsPrinted) {
  EXPECT_EQ(profile_document(7, {R"({"plan": "pro"})", "{}", R"(["vip"])"}),
            R"({"profile_id": 7, "traits": {"plan": "pro"}, "computed": {}, "segments": ["vip"]})");
  EXPECT_EQ(profile_document(7, {"", "", R"([])"}), R"({"profile_id": 7, "segments": []})");
  std::string d = profile_document(7, {});
  add_members(d, R"({"consent": null, "events": []})");
  EXPECT_EQ(d, R"({"profile_id": 7, "consent": null, "events": []})");
  add_members(d, "{}");
  EXPECT_EQ(d, R"({"profile_id": 7, "consent": null, "events": []})");
}

}  // namespace
}  // namespace cdp::profiles
