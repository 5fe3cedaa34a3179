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

// A numeric as the JSON parser would read its text: an int64 when it prints
// without a fraction (display scale 0) and fits, else the double strtod
// would give, when that is exact to compute (Clinger's fast path: a
// mantissa below 2^53 and a power of ten up to 10^22, one rounding).
// Reads the stored form (src/backend/utils/adt/numeric.c: a 16-bit header
// with sign, display scale and, for the short form, the weight; then base
// 10000 digits). False: take the slow path (its text).
bool numeric_value(Numeric n, bool& integral, int64_t& integer, double& real) {
  const char* p = VARDATA_ANY(n);
  size_t size = VARSIZE_ANY_EXHDR(n);
  if (size < 2) return false;
  uint16_t header;
  std::memcpy(&header, p, 2);
  bool negative;
  int weight, dscale;
  size_t at = 2;
  if ((header & 0xC000) == 0x8000) {  // short
    negative = (header & 0x2000) != 0;
    dscale = (header & 0x1F80) >> 7;
    weight = (header & 0x0040) ? static_cast<int>(header | ~0x003F) : (header & 0x003F);
  } else if ((header & 0xC000) == 0x0000 || (header & 0xC000) == 0x4000) {  // long
    if (size < 4) return false;
    int16_t w;
    std::memcpy(&w, p + 2, 2);
    negative = (header & 0xC000) == 0x4000;
    dscale = header & 0x3FFF;
    weight = w;
    at = 4;
  } else {
    return false;  // NaN, infinities: not in a jsonb
  }
  size_t ndigits = (size - at) / 2;
  if (ndigits > 4) return false;
  uint64_t mantissa = 0;  // the digits as one base-10000 integer
  for (size_t i = 0; i < ndigits; i++) {
    int16_t d;
    std::memcpy(&d, p + at + 2 * i, 2);
    mantissa = mantissa * 10000 + static_cast<uint64_t>(d);
  }
  int exp4 = weight - static_cast<int>(ndigits) + 1;  // value = mantissa * 10000^exp4
  if (ndigits == 0) exp4 = 0;
  static const double kPow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  if (dscale == 0) {
    if (exp4 < 0 || exp4 > 4) return false;
    unsigned __int128 v = mantissa;
    for (int i = 0; i < exp4; i++) v *= 10000;
    if (v > static_cast<unsigned __int128>(INT64_MAX)) return false;
    integral = true;
    integer = negative ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
    return true;
  }
  if (mantissa >= (uint64_t(1) << 53)) return false;
  integral = false;
  if (exp4 >= 0) {
    if (4 * exp4 > 22) return false;
    real = static_cast<double>(mantissa) * kPow10[4 * exp4];
    if (real >= 9007199254740992.0) return false;  // exact only below 2^53
  } else {
    if (-4 * exp4 > 22) return false;
    real = static_cast<double>(mantissa) / kPow10[-4 * exp4];
  }
  if (negative) real = -real;
  return true;
}

// A scalar, tagged: z null, t / f, s string, i int64, d double, N a number
// the fast path leaves (its digits as numeric_out writes them).
void put_scalar(std::string& out, const JsonbValue& v) {
  switch (v.type) {
    case jbvNull: out += 'z'; break;
    case jbvBool: out += v.val.boolean ? 't' : 'f'; break;
    case jbvString: put_text(out, 's', v.val.string.val, static_cast<size_t>(v.val.string.len)); break;
    case jbvNumeric: {
      bool integral = false;
      int64_t integer = 0;
      double real = 0;
      if (numeric_value(v.val.numeric, integral, integer, real)) {
        out += integral ? 'i' : 'd';
        out.append(integral ? reinterpret_cast<const char*>(&integer) : reinterpret_cast<const char*>(&real), 8);
        break;
      }
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
  TableScanDesc heap_scan;  // traits only: cdp.profiles in heap order, no index
  bool started;
  bool full;  // a pass over every profile (not probes)
};

namespace {

using Impl = ProfileScan::Impl;

bool advance_profiles(Impl& m) {
  if (!m.heap_scan) return advance(m.profiles);
  m.profiles.has = table_scan_getnextslot(m.heap_scan, ForwardScanDirection, m.profiles.slot);
  if (m.profiles.has) {
    bool null = false;
    m.profiles.id = DatumGetInt64(slot_getattr(m.profiles.slot, m.profiles.column, &null));
  }
  return m.profiles.has;
}

// Copies what evaluation needs of the profile whose cdp.profiles tuple is in
// m.profiles (computed and members positioned at or past it).
void copy_profile(Impl& m, const char* const* keys, const int* lens, int nkeys, ProfileRows& rows) {
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
        if (!getKeyJsonValueFromContainer(&j->root, keys[k], lens[k], &v)) continue;
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
  for (const std::string& k : keys_) {
    key_ptrs_.push_back(k.c_str());
    key_lens_.push_back(static_cast<int>(k.size()));
  }
}

void ProfileScan::open(bool traits_only) { open_impl(false, traits_only); }

void ProfileScan::open_impl(bool probe, bool traits_only) {
  call([&] {
    Impl* m = static_cast<Impl*>(palloc0(sizeof(Impl)));
    m->scratch = AllocSetContextCreate(CurrentMemoryContext, "cdp audience scan", ALLOCSET_DEFAULT_SIZES);
    Oid ns = get_namespace_oid("cdp", false);
    // Our own later writes (the batches' memberships and state) have later
    // command ids: this snapshot never sees them, so no row is read twice.
    m->snapshot = RegisterSnapshot(GetTransactionSnapshot());
    int keys = probe ? 1 : 0;
    open_index_scan(m->profiles, ns, m->snapshot, "profiles", "profiles_pkey", keys, "profile_id");
    m->traits = column(RelationGetRelid(m->profiles.heap), "traits");
    m->full = !probe;
    impl_ = m;
    if (traits_only) {  // no state, no memberships: the heap in its own order is cheapest
      m->heap_scan = table_beginscan(m->profiles.heap, m->snapshot, 0, nullptr);
      return;
    }
    open_index_scan(m->computed, ns, m->snapshot, "profile_computed", "profile_computed_pkey", keys, "profile_id");
    open_index_scan(m->members, ns, m->snapshot, "segment_membership", "segment_membership_profile_idx", keys, "profile_id");
    Oid computed = RelationGetRelid(m->computed.heap);
    m->state = column(computed, "state");
    m->computed_values = column(computed, "computed");
    m->next_expiry = column(computed, "next_expiry");
    m->segment = column(RelationGetRelid(m->members.heap), "segment_id");
    if (!probe) {
      index_rescan(m->profiles.scan, nullptr, 0, nullptr, 0);
      index_rescan(m->computed.scan, nullptr, 0, nullptr, 0);
      index_rescan(m->members.scan, nullptr, 0, nullptr, 0);
    }
  });
}

bool ProfileScan::next(ProfileRows& rows, size_t max) {
  rows.clear();
  rows.keys = &keys_;
  Impl* m = impl_;
  const char* const* keys = key_ptrs_.data();
  const int* lens = key_lens_.data();
  int nkeys = static_cast<int>(key_ptrs_.size());
  call([&] {
    MemoryContextReset(m->scratch);
    if (!m->started) {
      advance_profiles(*m);
      if (!m->heap_scan) {
        advance(m->computed);
        advance(m->members);
      }
      m->started = true;
    }
    while (rows.ids.size() < max && m->profiles.has) {
      copy_profile(*m, keys, lens, nkeys, rows);
      advance_profiles(*m);
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
  open_impl(true, false);
  Impl* m = impl_;
  const char* const* keys = key_ptrs_.data();
  const int* lens = key_lens_.data();
  int nkeys = static_cast<int>(key_ptrs_.size());
  call([&] {
    for (int64_t id : ids) {
      if (!seek(m->profiles, id)) continue;
      seek(m->computed, id);
      seek(m->members, id);
      copy_profile(*m, keys, lens, nkeys, rows);
    }
  });
  close();
}

void ProfileScan::close() {
  if (!impl_) return;
  Impl* m = impl_;
  impl_ = nullptr;
  call([&] {
    if (m->heap_scan) table_endscan(m->heap_scan);
    if (m->members.heap) close_index_scan(m->members);
    if (m->computed.heap) close_index_scan(m->computed);
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
    case 's': {  // by reference: the buffer outlives the evaluation (readers use the length)
      std::string_view s = get_text(b, at);
      v.SetString(rapidjson::StringRef(s.data(), static_cast<rapidjson::SizeType>(s.size())));
      return;
    }
    case 'N': set_number(v, get_text(b, at)); return;
    case 'i': {
      int64_t i;
      std::memcpy(&i, b.data() + at, 8);
      at += 8;
      v.SetInt64(i);
      return;
    }
    case 'd': {
      double d;
      std::memcpy(&d, b.data() + at, 8);
      at += 8;
      v.SetDouble(d);
      return;
    }
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
    doc.AddMember(rapidjson::Value(rapidjson::StringRef(name.data(), static_cast<rapidjson::SizeType>(name.size()))), v,
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
