// What browser SDKs fetch and send before and around their events: the
// routes they use, the CORS policy, and the settings documents that point
// them at this server.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "core/http_protocol.hpp"
#include "core/sdk_settings.hpp"

namespace cdp {
namespace {

TEST(SdkRoutes, EveryPathTheSdksUse) {
  EXPECT_EQ(match_route("/v1/b").route, Route::Ingest);  // analytics-next batching
  EXPECT_FALSE(match_route("/v1/b").implied_type);
  EXPECT_EQ(match_route("/beacon/v1/batch").route, Route::Ingest);  // RudderStack beacons
  EXPECT_EQ(match_route("/v1/m").route, Route::SdkReport);
  EXPECT_EQ(match_route("/sourceConfig/").route, Route::SourceConfig);
  EXPECT_EQ(match_route("/sourceConfig?p=npm&writeKey=k").route, Route::SourceConfig);
  EXPECT_EQ(match_route("/").route, Route::Snippets);
  EXPECT_EQ(match_route("/sdk").route, Route::Snippets);
  RouteMatch m = match_route("/v1/projects/cdp_abc%2Dd/settings");
  EXPECT_EQ(m.route, Route::Settings);
  EXPECT_EQ(m.write_key, "cdp_abc-d");
}

TEST(SdkRoutes, BrokenSettingsPathsAreNotFound) {
  EXPECT_EQ(match_route("/v1/projects//settings").route, Route::NotFound);
  EXPECT_EQ(match_route("/v1/projects/settings").route, Route::NotFound);
  EXPECT_EQ(match_route("/v1/projects/a%2Fb/settings").route, Route::NotFound);  // an encoded slash
  EXPECT_EQ(match_route("/v1/projects/a/b/settings").route, Route::NotFound);
  EXPECT_EQ(match_route("/v1/projects/a%zz/settings").route, Route::NotFound);
  EXPECT_EQ(match_route("/beacon/v1/track").route, Route::NotFound);
}

TEST(PercentDecode, DecodesAndRefusesBrokenEscapes) {
  EXPECT_EQ(percent_decode("a%41+b", true), "aA b");
  EXPECT_EQ(percent_decode("a%41+b", false), "aA+b");
  EXPECT_FALSE(percent_decode("a%4", false));
  EXPECT_FALSE(percent_decode("%", false));
  EXPECT_FALSE(percent_decode("%g1", false));
}

TEST(Cors, AnyOriginThroughStarButNoCredentials) {
  CorsAnswer a = cors_policy("https://shop.test", {"*"}, "");
  EXPECT_TRUE(a.allowed);
  EXPECT_FALSE(a.credentials);
  EXPECT_EQ(a.allow_headers, kCorsKnownHeaders);
}

TEST(Cors, CredentialsOnlyForOriginsListedExactly) {
  EXPECT_TRUE(cors_policy("https://shop.test", {"*", "https://shop.test"}, "").credentials);
  EXPECT_FALSE(cors_policy("https://evil.test", {"https://shop.test"}, "").allowed);
  EXPECT_FALSE(cors_policy("", {"*"}, "").allowed);
  // An "Origin: *" (no browser sends one) is let in by "*" but is no listed origin.
  CorsAnswer star = cors_policy("*", {"*"}, "");
  EXPECT_TRUE(star.allowed);
  EXPECT_FALSE(star.credentials);
}

TEST(Cors, EchoesTheHeadersAskedForWhenTheyAreTokens) {
  // RudderStack v3's and analytics-next's retries.
  EXPECT_EQ(cors_policy("https://a.test", {"*"}, "anonymousid,sentat, rsa-retry-attempt").allow_headers,
            "anonymousid, sentat, rsa-retry-attempt");
  EXPECT_EQ(cors_policy("https://a.test", {"*"}, "x-retry-count").allow_headers, "x-retry-count");
  // Not a token, too many, too long: the known set instead, which still lets
  // through every header RudderStack v3 puts on a retried or reclaimed event.
  for (const char* h : {"AnonymousId", "SentAt", "Rsa-Retry-Attempt", "Rsa-Retry-Reason", "Rsa-Since-First-Attempt",
                        "Rsa-Since-Last-Attempt", "Rsa-Recovered", "X-Retry-Count", "Authorization"})
    EXPECT_NE(std::string(kCorsKnownHeaders).find(h), std::string::npos) << h;
  EXPECT_EQ(cors_policy("https://a.test", {"*"}, "bad header").allow_headers, kCorsKnownHeaders);
  EXPECT_EQ(cors_policy("https://a.test", {"*"}, "a\r\nSet-Cookie: x").allow_headers, kCorsKnownHeaders);
  std::string many;
  for (int i = 0; i < 33; i++) many += "h" + std::to_string(i) + ",";
  EXPECT_EQ(cors_policy("https://a.test", {"*"}, many).allow_headers, kCorsKnownHeaders);
  EXPECT_EQ(cors_policy("https://a.test", {"*"}, std::string(1100, 'x')).allow_headers, kCorsKnownHeaders);
}

TEST(PublicUrl, AcceptsHttpAndHttpsWithPortAndPath) {
  auto u = sdk::parse_public_url("https://cdp.example.com/collect/");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host_path, "cdp.example.com/collect");
  EXPECT_EQ(sdk::parse_public_url("http://127.0.0.1:8765")->text(), "http://127.0.0.1:8765");
  EXPECT_EQ(sdk::parse_public_url("http://[::1]:8765")->host_path, "[::1]:8765");
}

TEST(PublicUrl, RefusesWhatCouldBreakTheDocuments) {
  for (const char* bad : {"", "cdp.example.com", "ftp://x", "https://", "https://a.test?x=1", "https://a.test#f",
                          "https://u@a.test", "https://a.test/\"><script>", "https://:80", "https://a test"})
    EXPECT_FALSE(sdk::parse_public_url(bad)) << bad;
  EXPECT_EQ(sdk::from_host("shop.test:8765")->text(), "http://shop.test:8765");
  EXPECT_FALSE(sdk::from_host("a.test/x"));
  EXPECT_FALSE(sdk::from_host("a\"b"));
  EXPECT_FALSE(sdk::from_host(""));
}

rapidjson::Document parse(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str());
  EXPECT_FALSE(d.HasParseError()) << text;
  return d;
}

TEST(SegmentSettings, PointTheSegmentIntegrationHere) {
  auto d = parse(sdk::segment_settings("cdp_k", *sdk::parse_public_url("https://cdp.example.com")));
  const auto& s = d["integrations"]["Segment.io"];
  EXPECT_STREQ(s["apiKey"].GetString(), "cdp_k");
  EXPECT_STREQ(s["apiHost"].GetString(), "cdp.example.com/v1");
  EXPECT_STREQ(s["protocol"].GetString(), "https");
  EXPECT_EQ(d["integrations"].MemberCount(), 1u);  // no device-mode destination to load
  EXPECT_TRUE(d["plan"]["track"]["__default"]["enabled"].GetBool());
  EXPECT_EQ(d["metrics"]["sampleRate"].GetInt(), 0);
  EXPECT_TRUE(d["remotePlugins"].IsArray());
  EXPECT_TRUE(d["consentSettings"]["allCategories"].IsArray());
}

TEST(RudderStackSourceConfig, HasWhatTheSdkValidates) {
  auto d = parse(sdk::rudderstack_source_config("cdp_k", 3, *sdk::from_host("127.0.0.1:8765")));
  // analytics-js v3's isValidSourceConfig: source.id, source.config, source.destinations.
  const auto& s = d["source"];
  EXPECT_STREQ(s["id"].GetString(), "cdp-source-3");
  EXPECT_TRUE(s["config"].IsObject());
  EXPECT_TRUE(s["destinations"].IsArray());
  EXPECT_TRUE(s["enabled"].GetBool());
  EXPECT_STREQ(s["writeKey"].GetString(), "cdp_k");
  EXPECT_FALSE(s["config"]["statsCollection"]["errors"]["enabled"].GetBool());
  EXPECT_STREQ(s["dataplanes"]["default"][0]["url"].GetString(), "http://127.0.0.1:8765");
}

TEST(SnippetPage, NamesThisServerInEverySnippet) {
  std::string page = sdk::snippet_page(*sdk::parse_public_url("https://cdp.example.com"));
  EXPECT_NE(page.find("cdnURL: 'https://cdp.example.com'"), std::string::npos);
  EXPECT_NE(page.find("configUrl: 'https://cdp.example.com'"), std::string::npos);
  EXPECT_NE(page.find("dataPlaneUrl: 'https://cdp.example.com'"), std::string::npos);
  EXPECT_NE(page.find("https://cdp.example.com/v1/track"), std::string::npos);
  EXPECT_EQ(page.find("{{URL}}"), std::string::npos);
}

TEST(ETag, StableAndMatchedLikeIfNoneMatch) {
  std::string t = sdk::etag("{\"a\":1}");
  EXPECT_EQ(t, sdk::etag("{\"a\":1}"));
  EXPECT_NE(t, sdk::etag("{\"a\":2}"));
  EXPECT_EQ(t.front(), '"');
  EXPECT_TRUE(sdk::etag_matches(t, t));
  EXPECT_TRUE(sdk::etag_matches("\"x\", W/" + t, t));
  EXPECT_TRUE(sdk::etag_matches("*", t));
  EXPECT_FALSE(sdk::etag_matches("\"x\"", t));
  EXPECT_FALSE(sdk::etag_matches("", t));
}

}  // namespace
}  // namespace cdp
