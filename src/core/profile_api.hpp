// The Profile API's rules that need no socket and no database: what a lookup
// path and its query ask for, what an access token's scopes grant, and the
// bearer token of a request. Pure functions, unit-tested; the HTTP server
// parses with them, the worker answers with one query per loop
// (src/pg/profiles/profile_api.cpp). See docs/profile-api.md.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cdp::profiles {

// The parts of a profile a lookup can ask for (bits, as the SQL side reads them).
enum Part : unsigned {
  kTraits = 1,
  kComputed = 2,
  kSegments = 4,      // names of current memberships
  kMemberships = 8,   // current memberships with entered_at
  kIdentities = 16,
  kEvents = 32,       // recent events, newest first, with a cursor
  kConsent = 64,
};
constexpr unsigned kDefaultParts = kTraits | kComputed | kSegments;
constexpr unsigned kAllParts = 127;

// How PII traits (cdp.pii_traits) come back: left out, hashed as cdp.mask does, or clear.
enum class Pii : int { Omit = 0, Hash = 1, Clear = 2 };

constexpr size_t kMaxIdentifierBytes = 1024;
constexpr size_t kMaxFields = 100;
constexpr int kDefaultEventLimit = 20;
constexpr int kMaxEventLimit = 100;

struct Lookup {
  std::string type;        // identifier type; empty: by profile number
  std::string value;       // decoded, not yet normalised (the database does that as ingestion does)
  int64_t profile_id = 0;  // by profile number (merged numbers lead to the survivor)
  unsigned parts = kDefaultParts;
  std::vector<std::string> fields;  // trait keys to return; empty: all
  int limit = kDefaultEventLimit;   // events per page
  int64_t cursor = 0;               // events older than this one; 0: the newest
};

// A query parameter's decoded value, or nullopt when absent.
using QueryArg = std::function<std::optional<std::string>(const char* name)>;

// Parses what follows "/v1/profiles/" (still percent-encoded, so that an
// encoded slash stays inside a value) and the query (include, fields, limit,
// cursor). Throws cdp::Error naming the field and the rule (a 400).
Lookup parse_lookup(std::string_view rest, const QueryArg& query);

// The part named `name` ("traits", "events"...), or 0.
unsigned part_named(std::string_view name);
// "traits,computed,segments" for a part set.
std::string part_names(unsigned parts);

// What an access token's scopes allow. profiles:read gives traits, computed
// traits and memberships; identities:read, events:read and consent:read add
// their part; pii:hashed or pii:clear say how PII traits come back (else they
// are left out).
struct Grant {
  unsigned parts = 0;
  Pii pii = Pii::Omit;
};
Grant grant_of(const std::vector<std::string>& scopes);
// The scope a lookup lacks ("events:read"), or "" when the grant covers it.
std::string missing_scope(unsigned asked, const Grant& grant);
// Every scope create_access_token accepts.
extern const char* const kScopes[];

// The answer to a lookup, spliced from the JSON text of its parts as
// Postgres printed them (an empty part was not asked for):
// {"profile_id": N, "traits": ..., "computed": ..., "segments": [...]}.
struct PartTexts {
  std::string_view traits, computed, segments;
};
std::string profile_document(int64_t profile_id, const PartTexts& parts);
// Appends the members of `object` (JSON text of an object, as jsonb prints
// it) to the document: memberships, identities, events, consent.
void add_members(std::string& document, std::string_view object);

// The token of an "Authorization: Bearer <token>" header, or "" when there is
// none or it is not a bearer token.
std::string bearer_token(std::string_view authorization);

}  // namespace cdp::profiles
