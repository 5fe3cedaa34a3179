#include "pg/audience/profile_scan.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "pg/runtime/clock.hpp"
#include "pg/runtime/guard.hpp"
#include "pg/runtime/index_scan.hpp"

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
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
}

namespace cdp::pg::audience {

// ---------------------------------------------------------------------------
// The Postgres side: plain data, called inside pg::call only.

namespace {

// One index of one table, open for the pass (its column: profile_id); `id`
// is the profile_id of the tuple in `slot` while `has`.
struct Scan : IndexScan {
  bool has = false;
  int64_t id = 0;
};

AttrNumber column(Oid table, const char* name) { return column_of(table, name); }

bool advance(Scan& s) {
  s.has = index_getnext_slot(s.scan, ForwardScanDirection, s.slot);
  if (s.has) {
    bool null = false;
    s.id = DatumGetInt64(slot_getattr(s.slot, s.column, &null));
  }
  return s.has;
}

// Positions s on the first tuple of profile `id`.
bool seek(Scan& s, int64_t id) {
  ScanKeyData k;
  ScanKeyInit(&k, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
  index_rescan(s.scan, &k, 1, nullptr, 0);
  return advance(s);
}

void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

void put_text(std::string& out, char tag, const char* s, size_t n) {
  out += tag;
  put_u32(out, static_cast<uint32_t>(n));
  out.append(s, n);
}

// A scalar, tagged: z null, t / f, s string, N number (its digits as numeric_out writes them).
void put_scalar(std::string& out, const JsonbValue& v) {
  switch (v.type) {
    case jbvNull: out += 'z'; break;
    case jbvBool: out += v.val.boolean ? 't' : 'f'; break;
    case jbvString: put_text(out, 's', v.val.string.val, static_cast<size_t>(v.val.string.len)); break;
    case jbvNumeric: {
      char* digits = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
      put_text(out, 'N', digits, strlen(digits));
      break;
    }
    default: out += 'z'; break;  // no other scalar comes out of a stored jsonb
  }
}

// A value, scalars tagged as above and containers as [ ... ] and { k key value ... }.
void put_value(std::string& out, JsonbValue& v) {
  if (v.type != jbvBinary) return put_scalar(out, v);
  JsonbIterator* it = JsonbIteratorInit(v.val.binary.data);
  JsonbValue x;
  for (JsonbIteratorToken t; (t = JsonbIteratorNext(&it, &x, false)) != WJB_DONE;) {
    switch (t) {
      case WJB_BEGIN_ARRAY: out += '['; break;
      case WJB_END_ARRAY: out += ']'; break;
      case WJB_BEGIN_OBJECT: out += '{'; break;
      case WJB_END_OBJECT: out += '}'; break;
      case WJB_KEY: put_text(out, 'k', x.val.string.val, static_cast<size_t>(x.val.string.len)); break;
      default: put_scalar(out, x); break;
    }
  }
}

}  // namespace

struct ProfileScan::Impl {
  MemoryContext scratch;  // detoasted values and digits; reset every batch
  Snapshot snapshot;
  Scan profiles, computed, members;
  AttrNumber traits, state, computed_values, next_expiry, segment;
  bool started;
  bool full;  // a pass over every profile (not probes)
};

namespace {

using Impl = ProfileScan::Impl;

// Copies what evaluation needs of the profile whose cdp.profiles tuple is in
// m.profiles (computed and members positioned at or past it).
void copy_profile(Impl& m, const char* const* keys, int nkeys, ProfileRows& rows) {
  int64_t id = m.profiles.id;
  rows.ids.push_back(id);
  MemoryContext outer = MemoryContextSwitchTo(m.scratch);
  bool null = false;
  Datum t = slot_getattr(m.profiles.slot, m.traits, &null);
  ProfileRows::Span span{static_cast<uint32_t>(rows.bytes.size()), 0};
  if (!null && nkeys > 0) {
    Jsonb* j = DatumGetJsonbP(t);
    if (JsonContainerIsObject(&j->root)) {
      for (int k = 0; k < nkeys; k++) {
        JsonbValue v;
        if (!getKeyJsonValueFromContainer(&j->root, keys[k], static_cast<int>(strlen(keys[k])), &v)) continue;
        uint16_t index = static_cast<uint16_t>(k);
        rows.bytes.append(reinterpret_cast<const char*>(&index), 2);
        put_value(rows.bytes, v);
      }
    }
  }
  span.size = static_cast<uint32_t>(rows.bytes.size() - span.at);
  rows.traits.push_back(span);
  while (m.computed.has && m.computed.id < id) advance(m.computed);  // state of a profile gone: not ours
  ProfileRows::Span state{static_cast<uint32_t>(rows.bytes.size()), 0};
  if (m.computed.has && m.computed.id == id) {
    Datum s = slot_getattr(m.computed.slot, m.state, &null);
    if (!null) {
      struct varlena* b = pg_detoast_datum_packed(reinterpret_cast<struct varlena*>(DatumGetPointer(s)));
      rows.bytes.append(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
    }
    Datum e = slot_getattr(m.computed.slot, m.next_expiry, &null);
    rows.next_expiry.push_back(null ? 0 : from_pg(DatumGetTimestampTz(e)));
    Datum c = slot_getattr(m.computed.slot, m.computed_values, &null);
    rows.computed_keys.push_back(null ? 0 : static_cast<int32_t>(JsonContainerSize(&DatumGetJsonbP(c)->root)));
    rows.has_row.push_back(1);
    advance(m.computed);
  } else {
    rows.next_expiry.push_back(0);
    rows.computed_keys.push_back(-1);
    rows.has_row.push_back(0);
  }
  state.size = static_cast<uint32_t>(rows.bytes.size() - state.at);
  rows.state.push_back(state);
  while (m.members.has && m.members.id < id) {  // a profile gone (merged away, erased, rebuilt)
    if (m.full) {
      rows.orphan_segments.push_back(DatumGetInt64(slot_getattr(m.members.slot, m.segment, &null)));
      rows.orphan_profiles.push_back(m.members.id);
    }
    advance(m.members);
  }
  while (m.members.has && m.members.id == id) {
    rows.member_segments.push_back(DatumGetInt64(slot_getattr(m.members.slot, m.segment, &null)));
    advance(m.members);
  }
  rows.members_at.push_back(static_cast<uint32_t>(rows.member_segments.size()));
  MemoryContextSwitchTo(outer);
}

}  // namespace

// ---------------------------------------------------------------------------
// The C++ side

ProfileScan::ProfileScan(const std::vector<std::string>& keys) : keys_(keys) {
  for (const std::string& k : keys_) key_ptrs_.push_back(k.c_str());
}

void ProfileScan::open() { open_impl(false); }

void ProfileScan::open_impl(bool probe) {
  call([&] {
    Impl* m = static_cast<Impl*>(palloc0(sizeof(Impl)));
    m->scratch = AllocSetContextCreate(CurrentMemoryContext, "cdp audience scan", ALLOCSET_DEFAULT_SIZES);
    Oid ns = get_namespace_oid("cdp", false);
    // Our own later writes (the batches' memberships and state) have later
    // command ids: this snapshot never sees them, so no row is read twice.
    m->snapshot = RegisterSnapshot(GetTransactionSnapshot());
    int keys = probe ? 1 : 0;
    open_index_scan(m->profiles, ns, m->snapshot, "profiles", "profiles_pkey", keys, "profile_id");
    open_index_scan(m->computed, ns, m->snapshot, "profile_computed", "profile_computed_pkey", keys, "profile_id");
    open_index_scan(m->members, ns, m->snapshot, "segment_membership", "segment_membership_profile_idx", keys, "profile_id");
    Oid profiles = RelationGetRelid(m->profiles.heap), computed = RelationGetRelid(m->computed.heap);
    m->traits = column(profiles, "traits");
    m->state = column(computed, "state");
    m->computed_values = column(computed, "computed");
    m->next_expiry = column(computed, "next_expiry");
    m->segment = column(RelationGetRelid(m->members.heap), "segment_id");
    m->full = !probe;
    if (!probe) {
      index_rescan(m->profiles.scan, nullptr, 0, nullptr, 0);
      index_rescan(m->computed.scan, nullptr, 0, nullptr, 0);
      index_rescan(m->members.scan, nullptr, 0, nullptr, 0);
    }
    impl_ = m;
  });
}

bool ProfileScan::next(ProfileRows& rows, size_t max) {
  rows.clear();
  rows.keys = &keys_;
  Impl* m = impl_;
  const char* const* keys = key_ptrs_.data();
  int nkeys = static_cast<int>(key_ptrs_.size());
  call([&] {
    MemoryContextReset(m->scratch);
    if (!m->started) {
      advance(m->profiles);
      advance(m->computed);
      advance(m->members);
      m->started = true;
    }
    while (rows.ids.size() < max && m->profiles.has) {
      copy_profile(*m, keys, nkeys, rows);
      advance(m->profiles);
    }
    for (bool null = false; !m->profiles.has && m->members.has; advance(m->members)) {  // past the last profile
      rows.orphan_segments.push_back(DatumGetInt64(slot_getattr(m->members.slot, m->segment, &null)));
      rows.orphan_profiles.push_back(m->members.id);
    }
  });
  return !rows.ids.empty() || !rows.orphan_profiles.empty();
}

void ProfileScan::read(const std::vector<int64_t>& ids, ProfileRows& rows) {
  rows.clear();
  rows.keys = &keys_;
  if (ids.empty()) return;
  open_impl(true);
  Impl* m = impl_;
  const char* const* keys = key_ptrs_.data();
  int nkeys = static_cast<int>(key_ptrs_.size());
  call([&] {
    for (int64_t id : ids) {
      if (!seek(m->profiles, id)) continue;
      seek(m->computed, id);
      seek(m->members, id);
      copy_profile(*m, keys, nkeys, rows);
    }
  });
  close();
}

void ProfileScan::close() {
  if (!impl_) return;
  Impl* m = impl_;
  impl_ = nullptr;
  call([&] {
    close_index_scan(m->members);
    close_index_scan(m->computed);
    close_index_scan(m->profiles);
    UnregisterSnapshot(m->snapshot);
    MemoryContextDelete(m->scratch);
    pfree(m);
  });
}

// ---------------------------------------------------------------------------
// Reading the buffers back

namespace {

uint32_t get_u32(std::string_view b, size_t& at) {
  uint32_t v = 0;
  std::memcpy(&v, b.data() + at, 4);
  at += 4;
  return v;
}

std::string_view get_text(std::string_view b, size_t& at) {
  uint32_t n = get_u32(b, at);
  std::string_view s = b.substr(at, n);
  at += n;
  return s;
}

// numeric_out's digits as the JSON parser would read them: an int64 (or
// uint64) when there is no fraction or exponent and it fits, else a double.
void set_number(rapidjson::Value& v, std::string_view digits) {
  std::string s(digits);
  if (s.find_first_of(".eE") == std::string::npos) {
    errno = 0;
    long long i = std::strtoll(s.c_str(), nullptr, 10);
    if (errno == 0) return void(v.SetInt64(i));
    if (s[0] != '-') {
      errno = 0;
      unsigned long long u = std::strtoull(s.c_str(), nullptr, 10);
      if (errno == 0) return void(v.SetUint64(u));
    }
  }
  v.SetDouble(std::strtod(s.c_str(), nullptr));
}

void get_value(std::string_view b, size_t& at, rapidjson::Value& v, rapidjson::Document::AllocatorType& a) {
  char tag = b[at++];
  switch (tag) {
    case 't': v.SetBool(true); return;
    case 'f': v.SetBool(false); return;
    case 's': {
      std::string_view s = get_text(b, at);
      v.SetString(s.data(), static_cast<rapidjson::SizeType>(s.size()), a);
      return;
    }
    case 'N': set_number(v, get_text(b, at)); return;
    case '[':
      v.SetArray();
      while (b[at] != ']') {
        rapidjson::Value e;
        get_value(b, at, e, a);
        v.PushBack(e, a);
      }
      at++;
      return;
    case '{':
      v.SetObject();
      while (b[at] != '}') {
        at++;  // 'k'
        std::string_view k = get_text(b, at);
        rapidjson::Value key(k.data(), static_cast<rapidjson::SizeType>(k.size()), a), e;
        get_value(b, at, e, a);
        v.AddMember(key, e, a);
      }
      at++;
      return;
    default: v.SetNull(); return;
  }
}

}  // namespace

void ProfileRows::traits_of(size_t i, rapidjson::Document& doc) const {
  doc.SetObject();
  std::string_view b = std::string_view(bytes).substr(traits[i].at, traits[i].size);
  for (size_t at = 0; at < b.size();) {
    uint16_t k;
    std::memcpy(&k, b.data() + at, 2);
    at += 2;
    rapidjson::Value v;
    get_value(b, at, v, doc.GetAllocator());
    const std::string& name = (*keys)[k];
    doc.AddMember(rapidjson::Value(name.data(), static_cast<rapidjson::SizeType>(name.size()), doc.GetAllocator()), v,
                  doc.GetAllocator());
  }
}

bool ProfileRows::member(size_t i, int64_t segment) const {
  uint32_t from = i == 0 ? 0 : members_at[i - 1], to = members_at[i];
  for (uint32_t k = from; k < to; k++)
    if (member_segments[k] == segment) return true;
  return false;
}

void ProfileRows::clear() {
  ids.clear();
  has_row.clear();
  next_expiry.clear();
  computed_keys.clear();
  state.clear();
  traits.clear();
  members_at.clear();
  member_segments.clear();
  orphan_segments.clear();
  orphan_profiles.clear();
  bytes.clear();
}

}  // namespace cdp::pg::audience
