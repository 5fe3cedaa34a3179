// Direct reads for the Profile API. The index scans run inside one pg::call,
// over plain data: the lookups' normalised keys go in, and each answer's
// JSON text and segment numbers are copied out into buffers made before the
// guard; the documents are assembled after it.
#include "pg/profiles/profile_read.hpp"

#include <algorithm>
#include <optional>
#include <unordered_map>

#include "pg/processor/internal.hpp"  // the identity rules cache: identifiers are normalised as ingestion does
#include "pg/runtime/guard.hpp"
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
};
struct Read {
  int64_t profile_id = 0;       // 0: nobody
  std::string traits, computed;
  std::vector<int64_t> segments;
};

// One index of one table, open for the batch.
struct Scan {
  Relation heap = nullptr, index = nullptr;
  IndexScanDesc scan = nullptr;
  TupleTableSlot* slot = nullptr;
  AttrNumber column = InvalidAttrNumber;
};

// Postgres code only (called inside pg::call).
void open_scan(Scan& s, Oid ns, Snapshot snapshot, const char* table, const char* index, int keys,
               const char* column) {
  Oid heap_id = get_relname_relid(table, ns), index_id = get_relname_relid(index, ns);
  if (!OidIsValid(heap_id) || !OidIsValid(index_id)) elog(ERROR, "cdp: cdp.%s or its index %s is missing", table, index);
  s.heap = table_open(heap_id, AccessShareLock);
  s.index = index_open(index_id, AccessShareLock);
  s.scan = index_beginscan(s.heap, s.index, snapshot, keys, 0);
  s.slot = table_slot_create(s.heap, nullptr);
  s.column = get_attnum(heap_id, column);
  if (s.column == InvalidAttrNumber) elog(ERROR, "cdp: cdp.%s has no column %s", table, column);
}

void close_scan(Scan& s) {
  ExecDropSingleTupleTableSlot(s.slot);
  index_endscan(s.scan);
  index_close(s.index, NoLock);
  table_close(s.heap, NoLock);
}

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

// The column's jsonb as text, appended to out (which the caller made).
void jsonb_column(Scan& s, std::string& out) {
  bool null = false;
  Datum d = slot_getattr(s.slot, s.column, &null);
  if (null) return;
  Jsonb* j = DatumGetJsonbP(d);
  char* text = JsonbToCString(nullptr, &j->root, VARSIZE(j));
  out.append(text);
  pfree(text);
}

void read_all(const std::vector<Key>& keys, std::vector<Read>& reads) {
  call([&] {
    Oid ns = get_namespace_oid("cdp", false);
    Snapshot snapshot = RegisterSnapshot(GetLatestSnapshot());
    Scan identities, map, profiles, computed, members;
    open_scan(identities, ns, snapshot, "identities", "identities_pkey", 2, "profile_id");
    open_scan(map, ns, snapshot, "profile_map", "profile_map_pkey", 1, "canonical_id");
    open_scan(profiles, ns, snapshot, "profiles", "profiles_pkey", 1, "traits");
    open_scan(computed, ns, snapshot, "profile_computed", "profile_computed_pkey", 1, "computed");
    open_scan(members, ns, snapshot, "segment_membership", "segment_membership_profile_idx", 1, "segment_id");
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
      if (in.parts & cdp::profiles::kTraits) jsonb_column(profiles, out.traits);
      if (in.parts & cdp::profiles::kComputed) {
        key(&k[0], computed, 1, F_INT8EQ, Int64GetDatum(pid));
        if (first(computed, k, 1)) jsonb_column(computed, out.computed);
      }
      if (in.parts & cdp::profiles::kSegments) {
        key(&k[0], members, 1, F_INT8EQ, Int64GetDatum(pid));
        for (bool more = first(members, k, 1); more; more = index_getnext_slot(members.scan, ForwardScanDirection, members.slot))
          out.segments.push_back(int8_column(members));  // the partial index holds current memberships only
      }
    }
    close_scan(members);
    close_scan(computed);
    close_scan(profiles);
    close_scan(map);
    close_scan(identities);
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

}  // namespace

bool reads_directly(const Lookup& l, cdp::profiles::Pii pii) {
  return pii == cdp::profiles::Pii::Clear && l.fields.empty() && (l.parts & ~cdp::profiles::kDefaultParts) == 0;
}

std::vector<DirectAnswer> read_directly(const std::vector<const Lookup*>& lookups) {
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
  std::vector<Read> reads(lookups.size());
  read_all(keys, reads);
  SegmentNames names;
  if (segments) names.load();
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
    if (parts & cdp::profiles::kSegments) a.segments = names.json(r.segments);
  }
  return answers;
}

}  // namespace cdp::pg::profiles
