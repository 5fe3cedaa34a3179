#include "pg/spi.hpp"

#include <unordered_map>

#include "pg/clock.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
}

namespace cdp::pg::spi {
namespace {

Datum array(Datum* values, bool* nulls, int n, Oid elem) {
  int16 len;
  bool byval;
  char align;
  get_typlenbyvalalign(elem, &len, &byval, &align);
  int dims[1] = {n}, lbs[1] = {1};
  return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, elem, len, byval, align));
}

template <class T, class F>
Arg make_array(const std::vector<T>& v, Oid array_type, Oid elem, F to_datum, bool empty_is_null = false) {
  int n = static_cast<int>(v.size());
  Datum* values = static_cast<Datum*>(palloc(sizeof(Datum) * (n + 1)));
  bool* nulls = static_cast<bool*>(palloc0(sizeof(bool) * (n + 1)));
  for (int i = 0; i < n; i++) {
    if constexpr (std::is_same_v<T, std::string>) {
      nulls[i] = empty_is_null && v[i].empty();
      if (nulls[i]) continue;
    }
    values[i] = to_datum(v[i]);
  }
  return {array_type, array(values, nulls, n, elem), false};
}

struct Plan {
  SPIPlanPtr plan;
  std::vector<Oid> types;
};
std::unordered_map<const char*, Plan>& plans() {
  static std::unordered_map<const char*, Plan> p;
  return p;
}

SPIPlanPtr plan_for(const char* sql, const Arg* args, int nargs) {
  auto& cache = plans();
  auto it = cache.find(sql);
  if (it != cache.end()) {
    bool same = static_cast<int>(it->second.types.size()) == nargs;
    for (int i = 0; same && i < nargs; i++) same = it->second.types[i] == args[i].type;
    if (same) return it->second.plan;
    SPI_freeplan(it->second.plan);
    cache.erase(it);
  }
  Oid types[64];
  for (int i = 0; i < nargs; i++) types[i] = args[i].type;
  SPIPlanPtr p = SPI_prepare(sql, nargs, types);
  if (!p) elog(ERROR, "cdp: could not prepare: %s", SPI_result_code_string(SPI_result));
  SPI_keepplan(p);
  cache[sql] = Plan{p, std::vector<Oid>(types, types + nargs)};
  return p;
}

void marshal(const Arg* args, int nargs, Datum* values, char* nulls) {
  for (int i = 0; i < nargs; i++) {
    values[i] = args[i].value;
    nulls[i] = args[i].isnull ? 'n' : ' ';
  }
}

}  // namespace

Arg str(const std::string& s) {
  if (s.empty()) return {TEXTOID, 0, true};
  return {TEXTOID, PointerGetDatum(cstring_to_text_with_len(s.data(), s.size())), false};
}
Arg int8(int64_t v) { return {INT8OID, Int64GetDatum(v), false}; }
Arg int4(int v) { return {INT4OID, Int32GetDatum(v), false}; }
Arg float8(double v) { return {FLOAT8OID, Float8GetDatum(v), false}; }
Arg timestamptz(Micros t) { return {TIMESTAMPTZOID, TimestampTzGetDatum(to_pg(t)), false}; }

Arg text_array(const std::vector<std::string>& v, bool empty_is_null) {
  return make_array(v, TEXTARRAYOID, TEXTOID, [](const std::string& s) {
    return PointerGetDatum(cstring_to_text_with_len(s.data(), s.size()));
  }, empty_is_null);
}
Arg int8_array(const std::vector<int64_t>& v) {
  return make_array(v, INT8ARRAYOID, INT8OID, [](int64_t x) { return Int64GetDatum(x); });
}
Arg int4_array(const std::vector<int>& v) {
  return make_array(v, INT4ARRAYOID, INT4OID, [](int x) { return Int32GetDatum(x); });
}
Arg timestamptz_array(const std::vector<Micros>& v) {
  return make_array(v, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID, [](Micros t) { return TimestampTzGetDatum(to_pg(t)); });
}
Arg bool_array(const std::vector<bool>& v) {
  return make_array(v, BOOLARRAYOID, BOOLOID, [](bool b) { return BoolGetDatum(b); });
}

uint64 exec(const char* sql, const Arg* args, int nargs, int expected) {
  SPIPlanPtr p = plan_for(sql, args, nargs);
  Datum values[64];
  char nulls[64];
  marshal(args, nargs, values, nulls);
  int rc = SPI_execute_plan(p, values, nulls, false, 0);
  if (rc != expected) elog(ERROR, "cdp: statement failed (%s): %s", SPI_result_code_string(rc), sql);
  return SPI_processed;
}

uint64 exec(const char* sql, int expected) { return exec(sql, nullptr, 0, expected); }

void each_batch(const char* sql, const Arg* args, int nargs, long batch, void (*read)(uint64, void*), void* ctx) {
  SPIPlanPtr p = plan_for(sql, args, nargs);
  Datum values[64];
  char nulls[64];
  marshal(args, nargs, values, nulls);
  // read_only = false: a fresh snapshot that sees what this transaction wrote so far.
  Portal portal = SPI_cursor_open(nullptr, p, values, nulls, false);
  if (!portal) elog(ERROR, "cdp: could not open a cursor: %s", sql);
  for (;;) {
    SPI_cursor_fetch(portal, true, batch);
    uint64 n = SPI_processed;
    if (n == 0) break;
    read(n, ctx);  // may throw C++: no PG_TRY frame between here and the caller's pg::call
    SPI_freetuptable(SPI_tuptable);
  }
  SPI_cursor_close(portal);
}

// A row past the end of the result (a singleton row someone deleted, a
// statement that returned nothing) is an error, never a read of vals[row].
static Datum value(uint64 row, int col, bool* isnull) {
  if (!SPI_tuptable || row >= SPI_tuptable->numvals || col < 1 || col > SPI_tuptable->tupdesc->natts)
    ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
                    errmsg("cdp: row %llu, column %d of a result of %llu rows read", (unsigned long long)row, col,
                           (unsigned long long)(SPI_tuptable ? SPI_tuptable->numvals : 0))));
  return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}
int64_t get_int8(uint64 row, int col, int64_t if_null) {
  bool n;
  Datum d = value(row, col, &n);
  return n ? if_null : DatumGetInt64(d);
}
int get_int4(uint64 row, int col, int if_null) {
  bool n;
  Datum d = value(row, col, &n);
  return n ? if_null : DatumGetInt32(d);
}
bool get_bool(uint64 row, int col) {
  bool n;
  Datum d = value(row, col, &n);
  return !n && DatumGetBool(d);
}
bool is_null(uint64 row, int col) {
  bool n;
  value(row, col, &n);
  return n;
}
std::string get_text(uint64 row, int col) {
  bool n;
  Datum d = value(row, col, &n);
  if (n) return {};
  auto* t = reinterpret_cast<::text*>(PG_DETOAST_DATUM_PACKED(d));
  return std::string(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}
Micros get_timestamptz(uint64 row, int col) {
  bool n;
  Datum d = value(row, col, &n);
  if (n) return 0;
  // 'infinity', '-infinity' and times past year 9999 (a direct insert) are
  // clamped into the core's range: window arithmetic on them must not overflow.
  TimestampTz t = DatumGetTimestampTz(d);
  if (t > to_pg(kLatest)) return kLatest;
  if (t < to_pg(kEarliest)) return kEarliest;
  return from_pg(t);
}

}  // namespace cdp::pg::spi
