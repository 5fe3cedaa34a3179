// libFuzzer target: the Tracking API's socket-free rules (core/http_protocol.hpp).
// The input is split at newlines into a request path, the peer address, an
// X-Forwarded-For header, the trusted proxies (a comma list), an Origin, the
// allowed origins (a comma list), and what remains, read as a request body.
//
// - parse_lookup (the path line as what follows /v1/profiles/) throws only
//   cdp::Error naming a field, and what it parses is whole (see check_lookup);
// - match_route agrees with a plain model (the query and trailing slashes
//   ignored, then an exact name) and gives the same answer with a query or
//   a trailing slash added;
// - split_list gives non-empty items without commas or surrounding blanks;
// - client_ip is the peer, unless the peer is trusted, and then the right-most
//   untrusted hop (the first hop when all are trusted);
// - origin_allowed is "listed, or * is"; cors_policy allows the same origins
//   (never an empty one), credentials only for one listed exactly, and
//   allows headers that are the known set or tokens separated by ", ";
// - a public URL that parses (the peer line) and a Host (the X-Forwarded-For
//   line) yield settings documents that are JSON naming it, and a snippet page
//   with no placeholder left;
// - error_response and ingest_response are JSON that reads back to what was
//   put in: the error text and field byte for byte, counts that add up, and
//   one entry per message not accepted, in order.
// Anything else aborts. Build and run: docs/testing.md, "Fuzzing".
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "core/error.hpp"
#include "core/http_protocol.hpp"
#include "core/payload.hpp"
#include "core/profile_api.hpp"
#include "core/sdk_settings.hpp"

namespace {

[[noreturn]] void fail(const char* what, std::string_view text) {
  std::fprintf(stderr, "invariant broken: %s: [%.*s]\n", what, static_cast<int>(text.size()), text.data());
  std::abort();
}

// The next line of `in` (without its newline); empty once `in` is.
std::string_view next_line(std::string_view& in) {
  size_t nl = in.find('\n');
  std::string_view line = in.substr(0, nl);
  in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
  return line;
}

cdp::RouteMatch model_route(std::string_view path) {
  if (auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  using T = cdp::MessageType;
  static const struct {
    const char* path;
    cdp::Route route;
    std::optional<T> type;
  } kRoutes[] = {
      {"/health", cdp::Route::Health, {}},     {"/metrics", cdp::Route::Metrics, {}},
      {"/v1/batch", cdp::Route::Ingest, {}},   {"/v1/import", cdp::Route::Ingest, {}},
      {"/v1/track", cdp::Route::Ingest, T::Track},       {"/v1/t", cdp::Route::Ingest, T::Track},
      {"/v1/identify", cdp::Route::Ingest, T::Identify}, {"/v1/i", cdp::Route::Ingest, T::Identify},
      {"/v1/page", cdp::Route::Ingest, T::Page},         {"/v1/p", cdp::Route::Ingest, T::Page},
      {"/v1/screen", cdp::Route::Ingest, T::Screen},     {"/v1/s", cdp::Route::Ingest, T::Screen},
      {"/v1/group", cdp::Route::Ingest, T::Group},       {"/v1/g", cdp::Route::Ingest, T::Group},
      {"/v1/alias", cdp::Route::Ingest, T::Alias},       {"/v1/a", cdp::Route::Ingest, T::Alias},
  };
  static const struct {
    const char* path;
    cdp::Route route;
  } kUntyped[] = {{"/v1/b", cdp::Route::Ingest},          {"/beacon/v1/batch", cdp::Route::Ingest},
                  {"/v1/m", cdp::Route::SdkReport},        {"/sourceConfig", cdp::Route::SourceConfig},
                  {"/", cdp::Route::Snippets},             {"/sdk", cdp::Route::Snippets}};
  for (auto& r : kRoutes)
    if (path == r.path) return {r.route, r.type, {}};
  for (auto& r : kUntyped)
    if (path == r.path) return {r.route, {}, {}};
  // /v1/profiles and anything under it: the Profile API (its path parsed by parse_lookup).
  if (path == "/v1/profiles" || path.substr(0, 13) == "/v1/profiles/") return {cdp::Route::Profile, {}, {}};
  // /v1/projects/{key}/settings, the key percent-decoded, non-empty, no slash.
  std::string_view pre = "/v1/projects/", post = "/settings";
  if (path.size() > pre.size() + post.size() && path.substr(0, pre.size()) == pre &&
      path.substr(path.size() - post.size()) == post) {
    auto key = cdp::percent_decode(path.substr(pre.size(), path.size() - pre.size() - post.size()), false);
    if (key && !key->empty() && key->find('/') == std::string::npos) return {cdp::Route::Settings, {}, *key};
  }
  return {};
}

bool same(const cdp::RouteMatch& a, const cdp::RouteMatch& b) {
  return a.route == b.route && a.implied_type == b.implied_type && a.write_key == b.write_key;
}

void check_route(std::string_view path) {
  cdp::RouteMatch got = cdp::match_route(path);
  if (!same(got, model_route(path))) fail("match_route disagrees with the model", path);
  if (!same(got, cdp::match_route(std::string(path) + "?x=1"))) fail("a query string changes the route", path);
  // (An empty path plus a slash is "/", the snippet page: HTTP paths are never empty.)
  if (!path.empty() && path.find('?') == std::string_view::npos && !same(got, cdp::match_route(std::string(path) + "/")))
    fail("a trailing slash changes the route", path);
}

bool blank(char c) { return c == ' ' || c == '\t'; }

// parse_lookup on what follows /v1/profiles/ (the path line) and a query (the
// Origin line as include, the allowed line as fields): only cdp::Error, and
// what parses is whole: a type name and a value without control characters
// of at most 1,024 bytes, or a positive number; parts known; a limit in range.
void check_lookup(std::string_view rest, std::string_view include, std::string_view fields) {
  auto query = [&](const char* name) -> std::optional<std::string> {
    std::string_view v = std::string_view(name) == "include" ? include : std::string_view(name) == "fields" ? fields : "";
    if (v.empty()) return std::nullopt;
    return std::string(v);
  };
  cdp::profiles::Lookup l;
  try {
    l = cdp::profiles::parse_lookup(rest, query);
  } catch (const cdp::Error& e) {
    if (e.field().empty()) fail("parse_lookup refused without naming a field", rest);
    return;
  }
  if (l.type.empty() ? l.profile_id <= 0 : l.profile_id != 0) fail("a lookup is by identifier or by number", rest);
  if (!l.type.empty() && (l.value.empty() || l.value.size() > cdp::profiles::kMaxIdentifierBytes))
    fail("an identifier value is empty or too long", rest);
  for (unsigned char c : l.value)
    if (c < 0x20 || c == 0x7f) fail("a control character in an identifier", rest);
  if (l.parts == 0 || (l.parts & ~cdp::profiles::kAllParts)) fail("parts", rest);
  if (l.limit < 1 || l.limit > cdp::profiles::kMaxEventLimit) fail("limit", rest);
  if (l.fields.size() > cdp::profiles::kMaxFields) fail("fields", rest);
}

std::vector<std::string> checked_list(std::string_view text) {
  std::vector<std::string> items = cdp::split_list(text);
  if (items.size() > static_cast<size_t>(std::count(text.begin(), text.end(), ',')) + 1) fail("split_list: too many items", text);
  for (auto& i : items) {
    if (i.empty()) fail("split_list: an empty item", text);
    if (i.find(',') != std::string::npos) fail("split_list: a comma in an item", i);
    if (blank(i.front()) || blank(i.back())) fail("split_list: an item not trimmed", i);
    if (text.find(i) == std::string_view::npos) fail("split_list: an item not in the text", i);
  }
  return items;
}

bool listed(const std::string& s, const std::vector<std::string>& list) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

void check_client_ip(std::string_view peer, std::string_view xff, const std::vector<std::string>& trusted) {
  std::string ip = cdp::client_ip(peer, xff, trusted);
  std::vector<std::string> hops = cdp::split_list(xff);
  std::string p(peer);
  if (xff.empty() || !listed(p, trusted)) {
    if (ip != peer) fail("client_ip: not the untrusted peer", ip);
    return;
  }
  std::string expect = p;
  if (!hops.empty()) {
    expect = hops.front();
    for (auto it = hops.rbegin(); it != hops.rend(); ++it)
      if (!listed(*it, trusted)) {
        expect = *it;
        break;
      }
  }
  if (ip != expect) fail("client_ip: not the right-most untrusted hop", ip);
}

rapidjson::Document read_json(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.data(), text.size());
  if (d.HasParseError() || !d.IsObject()) fail("response is not a JSON object", text);
  return d;
}

std::string_view text_of(const rapidjson::Value& v) { return {v.GetString(), v.GetStringLength()}; }

void check_error_response(std::string_view error, std::string_view field) {
  std::string out = cdp::error_response(error, field);
  rapidjson::Document d = read_json(out);
  if (!d.HasMember("success") || !d["success"].IsFalse()) fail("error_response: success is not false", out);
  if (!d.HasMember("error") || !d["error"].IsString() || text_of(d["error"]) != error)
    fail("error_response: error does not read back", out);
  if (field.empty() ? d.HasMember("field") : !d.HasMember("field") || text_of(d["field"]) != field)
    fail("error_response: field does not read back", out);
}

void check_ingest_response(std::string_view body, std::string_view choice) {
  cdp::PayloadOptions opts;
  opts.received_at = 1'714'566'600'000'000;
  cdp::Payload p;
  try {
    p = cdp::parse_payload(body, opts);
  } catch (const cdp::Error&) {
    return;
  }
  std::vector<cdp::MessageStatus> statuses;
  size_t counts[3] = {0, 0, 0};
  for (size_t i = 0; i < p.messages.size(); i++) {
    bool dup = i < choice.size() && (choice[i] & 1);
    auto s = !p.messages[i].ok() ? cdp::MessageStatus::Rejected
             : dup               ? cdp::MessageStatus::Duplicate
                                 : cdp::MessageStatus::Accepted;
    statuses.push_back(s);
    counts[static_cast<int>(s)]++;
  }
  std::string out = cdp::ingest_response(p, statuses);
  rapidjson::Document d = read_json(out);
  const char* names[] = {"accepted", "duplicate", "rejected"};
  for (int k = 0; k < 3; k++)
    if (!d.HasMember(names[k]) || !d[names[k]].IsUint64() || d[names[k]].GetUint64() != counts[k])
      fail("ingest_response: a count is wrong", out);
  size_t listed_count = counts[1] + counts[2];
  if (!listed_count) {
    if (d.HasMember("messages")) fail("ingest_response: messages without a reason", out);
    return;
  }
  if (!d.HasMember("messages") || !d["messages"].IsArray() || d["messages"].Size() != listed_count)
    fail("ingest_response: not one entry per message not accepted", out);
  int64_t last = -1;
  for (auto& m : d["messages"].GetArray()) {
    if (!m.IsObject() || !m.HasMember("index") || !m["index"].IsUint64()) fail("ingest_response: entry without index", out);
    uint64_t i = m["index"].GetUint64();
    if (static_cast<int64_t>(i) <= last || i >= statuses.size() || statuses[i] == cdp::MessageStatus::Accepted)
      fail("ingest_response: wrong index", out);
    last = static_cast<int64_t>(i);
    if (!m.HasMember("messageId") || !m["messageId"].IsString()) fail("ingest_response: entry without messageId", out);
    if ((statuses[i] == cdp::MessageStatus::Rejected) != m.HasMember("error"))
      fail("ingest_response: error on the wrong entry", out);
  }
}

void check_cors(std::string_view origin, const std::vector<std::string>& origins, std::string_view asked) {
  cdp::CorsAnswer a = cdp::cors_policy(origin, origins, asked);
  bool want = !origin.empty() && cdp::origin_allowed(origin, origins);
  if (a.allowed != want) fail("cors_policy: allowed differs from origin_allowed", origin);
  if (a.credentials != (!origin.empty() && origin != "*" && listed(std::string(origin), origins)))
    fail("cors_policy: credentials not exactly for listed origins", origin);
  if (!a.allowed) return;
  if (a.allow_headers == cdp::kCorsKnownHeaders) return;
  for (char c : a.allow_headers)
    if (c == '\r' || c == '\n' || c == '\0' || c == ':' || c == '"' || c == '(' || c == ';')
      fail("cors_policy: a header list that is not tokens", a.allow_headers);
  if (a.allow_headers.size() > asked.size() + 64) fail("cors_policy: allowed more than asked", a.allow_headers);
}

void check_documents(std::string_view url_text, std::string_view host) {
  for (auto url : {cdp::sdk::parse_public_url(url_text), cdp::sdk::from_host(host)}) {
    if (!url) continue;
    const std::string u = url->text();
    for (char c : u)
      if (c == '"' || c == '<' || c == '>' || c == '\'' || c == '\\' || c == ' ' || static_cast<unsigned char>(c) < 0x20)
        fail("a public URL with a character that needs escaping", u);
    rapidjson::Document d = read_json(cdp::sdk::segment_settings("k\"ey", *url));
    if (text_of(d["integrations"]["Segment.io"]["apiHost"]) != url->host_path + "/v1")
      fail("segment_settings: apiHost is not the URL", u);
    rapidjson::Document r = read_json(cdp::sdk::rudderstack_source_config("k", 1, *url));
    if (!r["source"]["destinations"].IsArray()) fail("source config without destinations", u);
    if (cdp::sdk::snippet_page(*url).find("{{URL}}") != std::string::npos) fail("snippet page placeholder", u);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string_view path = next_line(in);
  std::string_view peer = next_line(in);
  std::string_view xff = next_line(in);
  std::string_view trusted = next_line(in);
  std::string_view origin = next_line(in);
  std::string_view allowed = next_line(in);
  std::string_view body = in;

  check_route(path);
  check_lookup(path, origin, allowed);
  std::vector<std::string> proxies = checked_list(trusted);
  (void)checked_list(xff);
  check_client_ip(peer, xff, proxies);
  std::vector<std::string> origins = checked_list(allowed);
  bool ok = cdp::origin_allowed(origin, origins);
  if (ok != (listed("*", origins) || listed(std::string(origin), origins))) fail("origin_allowed", origin);
  check_cors(origin, origins, trusted);
  check_documents(peer, xff);
  check_error_response(body, peer);
  if (!body.empty()) check_ingest_response(body, xff);
  return 0;
}
