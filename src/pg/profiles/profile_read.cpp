// Direct reads for the Profile API. The index scans run inside one pg::call,
// over plain data: the lookups' normalised keys go in, and each answer's
// JSON text and segment numbers are copied out into buffers made before the
// guard; the documents are assembled after it.
#include "pg/profiles/profile_read.hpp"

#include <algorithm>
#include <memory>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "pg/processor/internal.hpp"  // the identity rules cache: identifiers are normalised as ingestion does
#include "pg/runtime/guard.hpp"
#include "pg/runtime/index_scan.hpp"
#include "pg/runtime/shared.hpp"
#include "pg/runtime/spi.hpp"

extern "C" {
#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
}

namespace cdp::pg::profiles {
namespace {

using cdp::profiles::Lookup;

// What the guarded part reads for one lookup: plain data only.
struct Key {
  const char* type = nullptr;   // by identifier (normalised value below)
  const char* value = nullptr;
  int64_t profile_id = 0;       // by number
  unsigned parts = 0;
  bool omit_pii = false;        // PII members left out (else shown)
};
struct Read {
  int64_t profile_id = 0;       // 0: nobody
  std::string traits, computed;
  std::vector<int64_t> segments;
};

using Scan = IndexScan;

// A key on index column `att`, compared with the index's own collation.
void key(ScanKey k, const Scan& s, int att, RegProcedure eq, Datum value) {
  ScanKeyEntryInitialize(k, 0, att, BTEqualStrategyNumber, InvalidOid, s.index->rd_indcollation[att - 1], eq, value);
}

bool first(Scan& s, ScanKey keys, int n) {
  index_rescan(s.scan, keys, n, nullptr, 0);
  return index_getnext_slot(s.scan, ForwardScanDirection, s.slot);
}

int64_t int8_column(Scan& s) {
  bool null = false;
  Datum d = slot_getattr(s.slot, s.column, &null);
  return null ? 0 : DatumGetInt64(d);
}

// Whether a member name is one of the PII names (a plain array of C strings).
bool is_pii(const JsonbValue& k, const char* const* pii, int n) {
  for (int i = 0; i < n; i++)
    if (static_cast<size_t>(k.val.string.len) == strlen(pii[i]) && memcmp(k.val.string.val, pii[i], k.val.string.len) == 0)
      return true;
  return false;
}

// j without its PII members, at any depth and inside arrays, as
// cdp.pii_view(doc, 0) gives it: the tokens are pushed again but for a PII
// member's key and everything of its value.
Jsonb* without_pii(Jsonb* j, const char* const* pii, int n) {
  JsonbIterator* it = JsonbIteratorInit(&j->root);
  JsonbParseState* state = nullptr;
  JsonbValue v, *result = nullptr;
  int skip = 0;  // depth inside a PII member's value; 0: keep
  bool skip_next = false;
  for (JsonbIteratorToken t; (t = JsonbIteratorNext(&it, &v, false)) != WJB_DONE;) {
    bool opens = t == WJB_BEGIN_OBJECT || t == WJB_BEGIN_ARRAY, closes = t == WJB_END_OBJECT || t == WJB_END_ARRAY;
    if (skip > 0) {
      skip += opens ? 1 : closes ? -1 : 0;
      continue;
    }
    if (skip_next) {  // the value of a PII member: a scalar, or a container to skip whole
      skip_next = false;
      if (opens) skip = 1;
      continue;
    }
    if (t == WJB_KEY && n > 0 && is_pii(v, pii, n)) {
      skip_next = true;
      continue;
    }
    result = pushJsonbValue(&state, t, t == WJB_KEY || t == WJB_VALUE || t == WJB_ELEM ? &v : nullptr);
  }
  return JsonbValueToJsonb(result);
}

// The column's jsonb as text (PII members left out when pii is given),
// appended to out (which the caller made).
void jsonb_column(Scan& s, std::string& out, const char* const* pii = nullptr, int n = -1) {
  bool null = false;
  Datum d = slot_getattr(s.slot, s.column, &null);
  if (null) return;
  Jsonb* j = DatumGetJsonbP(d);
  if (n >= 0 && !JB_ROOT_IS_SCALAR(j)) j = without_pii(j, pii, n);
  char* text = JsonbToCString(nullptr, &j->root, VARSIZE(j));
  out.append(text);
  pfree(text);
}

// pii: the PII names (cdp.pii_traits), n of them.
void read_all(const std::vector<Key>& keys, std::vector<Read>& reads, const char* const* pii, int n) {
  call([&] {
    Oid ns = get_namespace_oid("cdp", false);
    Snapshot snapshot = RegisterSnapshot(GetLatestSnapshot());
    Scan identities, map, profiles, computed, members;
    open_index_scan(identities, ns, snapshot, "identities", "identities_pkey", 2, "profile_id");
    open_index_scan(map, ns, snapshot, "profile_map", "profile_map_pkey", 1, "canonical_id");
    open_index_scan(profiles, ns, snapshot, "profiles", "profiles_pkey", 1, "traits");
    open_index_scan(computed, ns, snapshot, "profile_computed", "profile_computed_pkey", 1, "computed");
    open_index_scan(members, ns, snapshot, "segment_membership", "segment_membership_profile_idx", 1, "segment_id");
    ScanKeyData k[2];
    for (size_t i = 0; i < keys.size(); i++) {
      const Key& in = keys[i];
      Read& out = reads[i];
      int64_t pid = 0;
      if (!in.type && in.profile_id <= 0) continue;  // refused before the read
      if (in.type) {
        if (!in.value) continue;  // blocked or empty after normalising: nobody has it
        key(&k[0], identities, 1, F_TEXTEQ, CStringGetTextDatum(in.type));
        key(&k[1], identities, 2, F_TEXTEQ, CStringGetTextDatum(in.value));
        if (first(identities, k, 2)) pid = int8_column(identities);
      } else {
        key(&k[0], map, 1, F_INT8EQ, Int64GetDatum(in.profile_id));
        if (first(map, k, 1)) pid = int8_column(map);
      }
      if (pid == 0) continue;
      key(&k[0], profiles, 1, F_INT8EQ, Int64GetDatum(pid));
      if (!first(profiles, k, 1)) continue;
      out.profile_id = pid;
      int omit = in.omit_pii ? n : -1;
      if (in.parts & cdp::profiles::kTraits) jsonb_column(profiles, out.traits, pii, omit);
      if (in.parts & cdp::profiles::kComputed) {
        key(&k[0], computed, 1, F_INT8EQ, Int64GetDatum(pid));
        if (first(computed, k, 1)) jsonb_column(computed, out.computed, pii, omit);
      }
      if (in.parts & cdp::profiles::kSegments) {
        key(&k[0], members, 1, F_INT8EQ, Int64GetDatum(pid));
        for (bool more = first(members, k, 1); more; more = index_getnext_slot(members.scan, ForwardScanDirection, members.slot))
          out.segments.push_back(int8_column(members));  // the partial index holds current memberships only
      }
    }
    close_index_scan(members);
    close_index_scan(computed);
    close_index_scan(profiles);
    close_index_scan(map);
    close_index_scan(identities);
    UnregisterSnapshot(snapshot);
  });
}

// Segment numbers -> their names as JSON strings, ranked by name as
// Postgres sorts them (the database's collation, as the SQL path does).
struct SegmentNames {
  std::unordered_map<int64_t, std::pair<size_t, std::string>> by_id;
  void load() {
    sql::Rows rows = sql::select("select segment_id, to_jsonb(name)::text from cdp.segments order by name");
    for (size_t r = 0; r < rows.size(); r++) by_id.emplace(rows.int8(r, 0), std::make_pair(r, rows.str(r, 1)));
  }
  // ["a", "b"], as jsonb prints an array.
  std::string json(std::vector<int64_t> ids) const {
    std::vector<const std::pair<size_t, std::string>*> names;
    for (int64_t id : ids)
      if (auto it = by_id.find(id); it != by_id.end()) names.push_back(&it->second);
    std::sort(names.begin(), names.end(), [](auto* a, auto* b) { return a->first < b->first; });
    std::string out = "[";
    for (size_t i = 0; i < names.size(); i++) out += (i ? ", " : "") + names[i]->second;
    return out + "]";
  }
};

// The names, read again only when a change to cdp.segments has committed:
// the rules stamp the audience step's own cache is keyed by.
struct NamesCache {
  RulesStamp stamp;
  std::unique_ptr<SegmentNames> names;
};
NamesCache names_cache;

const SegmentNames& segment_names() {
  RulesStamp stamp = RulesStamp::of("segments");
  if (!names_cache.names || !(names_cache.stamp == stamp)) {
    names_cache.names.reset();  // if loading throws, the next loop reads them again
    auto next = std::make_unique<SegmentNames>();
    next->load();
    names_cache.names = std::move(next);
    names_cache.stamp = stamp;
  }
  return *names_cache.names;
}

}  // namespace

bool reads_directly(const Lookup& l, cdp::profiles::Pii pii) {
  return pii != cdp::profiles::Pii::Hash && l.fields.empty() && (l.parts & ~cdp::profiles::kDefaultParts) == 0;
}

// The PII names as cdp.pii_traits() reads them: cdp.pii_traits split at
// commas, spaces removed (empty names kept out).
std::vector<std::string> pii_names() {
  const char* setting = nullptr;
  call([&] { setting = GetConfigOption("cdp.pii_traits", true, false); });
  std::string text = setting ? setting : "";
  text.erase(std::remove(text.begin(), text.end(), ' '), text.end());
  std::vector<std::string> names;
  for (size_t at = 0; at <= text.size();) {
    size_t comma = std::min(text.find(',', at), text.size());
    if (comma > at) names.push_back(text.substr(at, comma - at));
    at = comma + 1;
  }
  return names;
}

std::vector<DirectAnswer> read_directly(const std::vector<const Lookup*>& lookups, const std::vector<bool>& omit_pii) {
  std::vector<DirectAnswer> answers(lookups.size());
  if (lookups.empty()) return answers;
  processor::refresh_rules();
  const IdentityRules& rules = *processor::rules_cache.identity;
  std::vector<std::optional<std::string>> values(lookups.size());
  std::vector<Key> keys(lookups.size());
  bool segments = false;
  for (size_t i = 0; i < lookups.size(); i++) {
    const Lookup& l = *lookups[i];
    keys[i].parts = l.parts;
    keys[i].omit_pii = omit_pii[i];
    segments |= (l.parts & cdp::profiles::kSegments) != 0;
    if (l.type.empty()) {
      keys[i].profile_id = l.profile_id;
      continue;
    }
    int t = rules.find(l.type);
    if (t < 0) {
      answers[i].status = 400;
      answers[i].error = "type \"" + l.type + "\" is not an identifier type (cdp.identifier_types)";
      keys[i].type = nullptr;
      keys[i].profile_id = -1;  // read nothing
      continue;
    }
    values[i] = rules.normalise(t, l.value);
    keys[i].type = l.type.c_str();
    keys[i].value = values[i] ? values[i]->c_str() : nullptr;
  }
  std::vector<std::string> pii = pii_names();
  std::vector<const char*> pii_c;
  for (auto& name : pii) pii_c.push_back(name.c_str());
  std::vector<Read> reads(lookups.size());
  read_all(keys, reads, pii_c.data(), static_cast<int>(pii_c.size()));
  const SegmentNames* names = segments ? &segment_names() : nullptr;
  for (size_t i = 0; i < lookups.size(); i++) {
    DirectAnswer& a = answers[i];
    if (a.status == 400) continue;
    Read& r = reads[i];
    if (r.profile_id == 0) {
      a.status = 404;
      a.error = "no profile has it";
      continue;
    }
    a.status = 200;
    a.profile_id = r.profile_id;
    unsigned parts = lookups[i]->parts;
    if (parts & cdp::profiles::kTraits) a.traits = r.traits.empty() ? "{}" : std::move(r.traits);
    if (parts & cdp::profiles::kComputed) a.computed = r.computed.empty() ? "{}" : std::move(r.computed);
    if (parts & cdp::profiles::kSegments) a.segments = names->json(r.segments);
  }
  return answers;
}

}  // namespace cdp::pg::profiles
