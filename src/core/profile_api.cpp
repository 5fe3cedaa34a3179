#include "core/profile_api.hpp"

#include <strings.h>

#include <cstring>

#include "core/error.hpp"
#include "core/http_protocol.hpp"

namespace cdp::profiles {
namespace {

const struct {
  const char* name;
  Part part;
} kParts[] = {{"traits", kTraits},         {"computed", kComputed},     {"segments", kSegments},
              {"memberships", kMemberships}, {"identities", kIdentities}, {"events", kEvents},
              {"consent", kConsent}};

Error bad(const char* field, const std::string& rule) { return Error(ErrorKind::InvalidInput, field, rule); }

bool is_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char ch : s)
    if (ch < '0' || ch > '9') return false;
  return true;
}

// As cdp.identifier_types.type: ^[a-z][a-z0-9_]{0,62}$.
bool is_type_name(std::string_view s) {
  if (s.empty() || s.size() > 63 || s[0] < 'a' || s[0] > 'z') return false;
  for (char ch : s)
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) return false;
  return true;
}

int64_t positive(std::string_view s, const char* field, int64_t most) {
  if (!is_digits(s) || s.size() > 18) throw bad(field, "must be a whole number from 1 to " + std::to_string(most));
  int64_t n = std::stoll(std::string(s));
  if (n < 1 || n > most) throw bad(field, "must be a whole number from 1 to " + std::to_string(most));
  return n;
}

std::vector<std::string> items(const std::string& list) {
  std::vector<std::string> out;
  for (auto& item : split_list(list))
    if (!item.empty()) out.push_back(item);
  return out;
}

void parse_identifier(Lookup& l, std::string_view raw) {
  if (raw.empty()) throw bad("identifier", "is missing: /v1/profiles/<type>:<value> or /v1/profiles/<profile_id>");
  if (raw.size() > 3 * kMaxIdentifierBytes)
    throw bad("identifier", "is longer than " + std::to_string(kMaxIdentifierBytes) + " bytes");
  auto decoded = percent_decode(raw, false);
  if (!decoded) throw bad("identifier", "has a broken percent-escape");
  std::string id = std::move(*decoded);
  if (id.size() > kMaxIdentifierBytes)
    throw bad("identifier", "is longer than " + std::to_string(kMaxIdentifierBytes) + " bytes");
  for (unsigned char ch : id)
    if (ch < 0x20 || ch == 0x7f) throw bad("identifier", "must not hold control characters");
  if (is_digits(id)) {
    l.profile_id = positive(id, "identifier", INT64_C(999999999999999999));
    return;
  }
  size_t colon = id.find(':');
  if (colon == std::string::npos)
    throw bad("identifier", "must be <type>:<value> (e.g. email:ada%40example.com) or a profile number");
  l.type = id.substr(0, colon);
  l.value = id.substr(colon + 1);
  if (!is_type_name(l.type))
    throw bad("identifier", "type \"" + l.type + "\" is not an identifier type name (a-z, 0-9, _)");
  if (l.value.empty()) throw bad("identifier", "value is empty");
}

}  // namespace

const char* const kScopes[] = {"profiles:read", "identities:read", "events:read", "consent:read",
                               "pii:hashed",    "pii:clear",       nullptr};

unsigned part_named(std::string_view name) {
  for (auto& p : kParts)
    if (name == p.name) return p.part;
  return 0;
}

std::string part_names(unsigned parts) {
  std::string out;
  for (auto& p : kParts)
    if (parts & p.part) out += (out.empty() ? "" : ",") + std::string(p.name);
  return out;
}

Lookup parse_lookup(std::string_view rest, const QueryArg& query) {
  Lookup l;
  size_t slash = rest.find('/');
  parse_identifier(l, rest.substr(0, slash));
  if (slash != std::string_view::npos) {
    std::string_view part = rest.substr(slash + 1);
    while (!part.empty() && part.back() == '/') part.remove_suffix(1);
    if (!part.empty()) {
      l.parts = part_named(part);
      if (l.parts == 0 || part.find('/') != std::string_view::npos)
        throw bad("part", "must be one of " + part_names(kAllParts) + ", as /v1/profiles/<identifier>/<part>");
    }
  }
  if (auto include = query("include")) {
    unsigned asked = 0;
    for (auto& name : items(*include)) {
      unsigned p = part_named(name);
      if (!p) throw bad("include", "\"" + name + "\" is not one of " + part_names(kAllParts));
      asked |= p;
    }
    if (!asked) throw bad("include", "must name at least one of " + part_names(kAllParts));
    l.parts = slash == std::string_view::npos ? asked : l.parts | asked;
  }
  if (auto fields = query("fields")) {
    l.fields = items(*fields);
    if (l.fields.empty()) throw bad("fields", "must name at least one trait");
    if (l.fields.size() > kMaxFields) throw bad("fields", "may name at most " + std::to_string(kMaxFields) + " traits");
    for (auto& f : l.fields)
      if (f.size() > 255) throw bad("fields", "a trait name is longer than 255 bytes");
  }
  if (auto limit = query("limit")) l.limit = static_cast<int>(positive(*limit, "limit", kMaxEventLimit));
  if (auto cursor = query("cursor")) l.cursor = positive(*cursor, "cursor", INT64_C(999999999999999999));
  return l;
}

Grant grant_of(const std::vector<std::string>& scopes) {
  Grant g;
  for (auto& s : scopes) {
    if (s == "profiles:read") g.parts |= kTraits | kComputed | kSegments | kMemberships;
    else if (s == "identities:read") g.parts |= kIdentities;
    else if (s == "events:read") g.parts |= kEvents;
    else if (s == "consent:read") g.parts |= kConsent;
    else if (s == "pii:clear") g.pii = Pii::Clear;
    else if (s == "pii:hashed" && g.pii != Pii::Clear) g.pii = Pii::Hash;
  }
  return g;
}

std::string missing_scope(unsigned asked, const Grant& grant) {
  unsigned lacking = asked & ~grant.parts;
  if (lacking & (kTraits | kComputed | kSegments | kMemberships)) return "profiles:read";
  if (lacking & kIdentities) return "identities:read";
  if (lacking & kEvents) return "events:read";
  if (lacking & kConsent) return "consent:read";
  return "";
}

std::string profile_document(int64_t profile_id, const PartTexts& parts) {
  std::string out;
  out.reserve(64 + parts.traits.size() + parts.computed.size() + parts.segments.size());
  out += "{\"profile_id\": ";
  out += std::to_string(profile_id);
  auto member = [&out](const char* name, std::string_view json) {
    if (json.empty()) return;
    out += ", \"";
    out += name;
    out += "\": ";
    out += json;
  };
  member("traits", parts.traits);
  member("computed", parts.computed);
  member("segments", parts.segments);
  out += '}';
  return out;
}

void add_members(std::string& document, std::string_view object) {
  if (object.size() <= 2 || object.front() != '{' || object.back() != '}') return;  // "{}": none
  if (document.empty() || document.back() != '}') return;
  document.pop_back();
  document += ", ";
  document += object.substr(1, object.size() - 2);
  document += '}';
}

std::string bearer_token(std::string_view h) {
  while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
  if (h.size() < 7 || strncasecmp(h.data(), "Bearer ", 7) != 0) return "";
  h.remove_prefix(7);
  while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
  while (!h.empty() && h.back() == ' ') h.remove_suffix(1);
  return std::string(h);
}

}  // namespace cdp::profiles
