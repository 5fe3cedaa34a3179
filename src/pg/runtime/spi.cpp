#include "pg/runtime/spi.hpp"

#include <cstring>
#include <unordered_map>

#include "pg/runtime/clock.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
}

// Everything of the spi namespace here is this file's: plans, marshalling
// and the statement itself, run by sql:: inside its guard.
namespace cdp::pg::spi {
namespace {

struct Arg {
  Oid type;
  Datum value;
  bool isnull;
};

Datum array(Datum* values, bool* nulls, int n, Oid elem) {
  int16 len;
  bool byval;
  char align;
  get_typlenbyvalalign(elem, &len, &byval, &align);
  int dims[1] = {n}, lbs[1] = {1};
  return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, elem, len, byval, align));
}

// An array of n elements, element i being datum_at(i, nulls[i]).
template <class F>
Arg filled_array(size_t rows, Oid array_type, Oid elem, F datum_at) {
  if (rows > MaxArraySize) elog(ERROR, "cdp: an array parameter of %zu elements", rows);
  int n = static_cast<int>(rows);
  Datum* values = static_cast<Datum*>(palloc(sizeof(Datum) * (n + 1)));
  bool* nulls = static_cast<bool*>(palloc0(sizeof(bool) * (n + 1)));
  for (int i = 0; i < n; i++) values[i] = datum_at(static_cast<size_t>(i), nulls[i]);
  return {array_type, array(values, nulls, n, elem), false};
}

Datum text_datum(const char* s, size_t len) { return PointerGetDatum(cstring_to_text_with_len(s, static_cast<int>(len))); }

template <class T, class F>
Arg make_array(const std::vector<T>& v, Oid array_type, Oid elem, F to_datum, bool empty_is_null = false) {
  return filled_array(v.size(), array_type, elem, [&](size_t i, bool& null) -> Datum {
    if constexpr (std::is_same_v<T, std::string>) {
      null = empty_is_null && v[i].empty();
      if (null) return 0;
    }
    return to_datum(v[i]);
  });
}

constexpr int kMaxArgs = 64;

// Plain data, so that nothing with a destructor is made while Postgres may raise.
struct Plan {
  SPIPlanPtr plan;
  int nargs;
  Oid types[kMaxArgs];
};
std::unordered_map<const char*, Plan>& plans() {
  static std::unordered_map<const char*, Plan> p;
  return p;
}

SPIPlanPtr plan_for(const char* sql, const Arg* args, int nargs) {
  auto& cache = plans();
  auto it = cache.find(sql);
  if (nargs > kMaxArgs) elog(ERROR, "cdp: a statement with %d parameters (at most %d)", nargs, kMaxArgs);
  if (it != cache.end()) {
    bool same = it->second.nargs == nargs;
    for (int i = 0; same && i < nargs; i++) same = it->second.types[i] == args[i].type;
    if (same) return it->second.plan;
    SPI_freeplan(it->second.plan);
    cache.erase(it);
  }
  Plan plan{nullptr, nargs, {}};
  for (int i = 0; i < nargs; i++) plan.types[i] = args[i].type;
  plan.plan = SPI_prepare(sql, nargs, plan.types);
  if (!plan.plan) elog(ERROR, "cdp: could not prepare: %s", SPI_result_code_string(SPI_result));
  SPI_keepplan(plan.plan);
  cache[sql] = plan;
  return plan.plan;
}

void marshal(const Arg* args, int nargs, Datum* values, char* nulls) {
  for (int i = 0; i < nargs; i++) {
    values[i] = args[i].value;
    nulls[i] = args[i].isnull ? 'n' : ' ';
  }
}

Arg str(const std::string& s) {  // "": NULL
  if (s.empty()) return {TEXTOID, 0, true};
  return {TEXTOID, text_datum(s.data(), s.size()), false};
}
Arg int8(int64_t v) { return {INT8OID, Int64GetDatum(v), false}; }
Arg int4(int v) { return {INT4OID, Int32GetDatum(v), false}; }
Arg float8(double v) { return {FLOAT8OID, Float8GetDatum(v), false}; }
Arg timestamptz(Micros t) { return {TIMESTAMPTZOID, TimestampTzGetDatum(to_pg(t)), false}; }

Arg text_array(const std::vector<std::string>& v, bool empty_is_null = false) {
  return make_array(v, TEXTARRAYOID, TEXTOID, [](const std::string& s) { return text_datum(s.data(), s.size()); },
                    empty_is_null);
}
Arg bytea_array(const std::vector<std::string>& v) {  // bytea and text share the varlena layout
  return make_array(v, BYTEAARRAYOID, BYTEAOID, [](const std::string& s) { return text_datum(s.data(), s.size()); });
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

// Runs `sql` (a string literal: its address keys a plan kept for the backend's
// life) and checks the result code. Returns SPI_processed.
uint64 exec(const char* sql, const Arg* args, int nargs, int expected) {
  SPIPlanPtr p = plan_for(sql, args, nargs);
  Datum values[kMaxArgs];
  char nulls[kMaxArgs];
  marshal(args, nargs, values, nulls);
  int rc = SPI_execute_plan(p, values, nulls, false, 0);
  if (rc != expected) elog(ERROR, "cdp: statement failed (%s): %s", SPI_result_code_string(rc), sql);
  return SPI_processed;
}

}  // namespace
}  // namespace cdp::pg::spi

// ---------------------------------------------------------------------------
// select / run / each: the statement and the copy of its result run inside
// pg::call; nothing in these bodies has a destructor.

namespace cdp::pg::sql {

using spi::Arg;
using spi::kMaxArgs;

namespace {

Oid type_of(Param::Kind kind) {
  switch (kind) {
    case Param::Null:
    case Param::Text: return TEXTOID;
    case Param::Int8: return INT8OID;
    case Param::Int4: return INT4OID;
    case Param::Float8: return FLOAT8OID;
    case Param::Timestamptz: return TIMESTAMPTZOID;
    case Param::Bool: return BOOLOID;
    case Param::Texts:
    case Param::TextsOrNull: return TEXTARRAYOID;
    case Param::Int8s: return INT8ARRAYOID;
    case Param::Int4s: return INT4ARRAYOID;
    case Param::Timestamptzs: return TIMESTAMPTZARRAYOID;
    case Param::Bools: return BOOLARRAYOID;
    case Param::TextColumn: return TEXTARRAYOID;
    case Param::TimestamptzColumn: return TIMESTAMPTZARRAYOID;
    case Param::Int4Column: return INT4ARRAYOID;
    case Param::Byteas: return BYTEAARRAYOID;
  }
  elog(ERROR, "cdp: unknown parameter kind %d", static_cast<int>(kind));
}

Arg to_arg(const Param& p) {
  if (p.null) return {type_of(p.kind), 0, true};
  switch (p.kind) {
    case Param::Null: return {TEXTOID, 0, true};
    case Param::Text: return spi::str(*static_cast<const std::string*>(p.p));
    case Param::Int8: return spi::int8(p.i);
    case Param::Int4: return spi::int4(static_cast<int>(p.i));
    case Param::Float8: return spi::float8(p.f);
    case Param::Timestamptz: return spi::timestamptz(p.i);
    case Param::Bool: return {BOOLOID, BoolGetDatum(p.i != 0), false};
    case Param::Texts: return spi::text_array(*static_cast<const std::vector<std::string>*>(p.p));
    case Param::TextsOrNull: return spi::text_array(*static_cast<const std::vector<std::string>*>(p.p), true);
    case Param::Int8s: return spi::int8_array(*static_cast<const std::vector<int64_t>*>(p.p));
    case Param::Byteas: return spi::bytea_array(*static_cast<const std::vector<std::string>*>(p.p));
    case Param::Int4s: return spi::int4_array(*static_cast<const std::vector<int>*>(p.p));
    case Param::Timestamptzs: return spi::timestamptz_array(*static_cast<const std::vector<Micros>*>(p.p));
    case Param::Bools: return spi::bool_array(*static_cast<const std::vector<bool>*>(p.p));
    case Param::TextColumn:
      return spi::filled_array(static_cast<size_t>(p.i), TEXTARRAYOID, TEXTOID, [&](size_t r, bool& null) -> Datum {
        std::string_view s = p.at.text(p.p, r);
        null = s.empty();
        return null ? 0 : spi::text_datum(s.data(), s.size());
      });
    case Param::TimestamptzColumn:
      return spi::filled_array(static_cast<size_t>(p.i), TIMESTAMPTZARRAYOID, TIMESTAMPTZOID,
                               [&](size_t r, bool& null) -> Datum {
                                 std::optional<Micros> t = p.at.time(p.p, r);
                                 null = !t;
                                 return null ? 0 : TimestampTzGetDatum(to_pg(*t));
                               });
    case Param::Int4Column:
      return spi::filled_array(static_cast<size_t>(p.i), INT4ARRAYOID, INT4OID, [&](size_t r, bool&) -> Datum {
        return Int32GetDatum(p.at.int4(p.p, r));
      });
  }
  elog(ERROR, "cdp: unknown parameter kind %d", static_cast<int>(p.kind));
}

// Params -> Args, in a caller's plain array; returns the count.
int to_args(std::initializer_list<Param> params, Arg* out) {
  int n = 0;
  for (const Param& p : params) {
    if (n == kMaxArgs) elog(ERROR, "cdp: more than %d parameters", kMaxArgs);
    out[n++] = to_arg(p);
  }
  return n;
}

Micros clamp_timestamptz(TimestampTz t) {
  // 'infinity', '-infinity' and times past year 9999 (a direct insert) are
  // clamped into the core's range: window arithmetic on them must not overflow.
  if (t > to_pg(kLatest)) return kLatest;
  if (t < to_pg(kEarliest)) return kEarliest;
  return from_pg(t);
}

void copy_cell(Rows& out, HeapTuple tuple, TupleDesc desc, int col, Oid type) {
  bool isnull;
  Datum d = SPI_getbinval(tuple, desc, col, &isnull);
  Rows::Cell c{0, 0, 0, isnull};
  if (!isnull) switch (type) {
      case INT8OID: c.i = DatumGetInt64(d); break;
      case INT4OID: c.i = DatumGetInt32(d); break;
      case INT2OID: c.i = DatumGetInt16(d); break;
      case BOOLOID: c.i = DatumGetBool(d); break;
      case FLOAT8OID: c.f = DatumGetFloat8(d); break;
      case FLOAT4OID: c.f = DatumGetFloat4(d); break;
      case TIMESTAMPTZOID: c.i = clamp_timestamptz(DatumGetTimestampTz(d)); break;
      case TEXTOID:
      case VARCHAROID:
      case BPCHAROID:
      case BYTEAOID: {  // bytea: its raw bytes, not the \x text form
        auto* t = reinterpret_cast<::text*>(PG_DETOAST_DATUM_PACKED(d));
        c.i = static_cast<int64_t>(out.text_.size());
        c.len = VARSIZE_ANY_EXHDR(t);
        out.text_.append(VARDATA_ANY(t), c.len);
        break;
      }
      default: {  // anything else in its text form (jsonb, numeric, xid8, ...)
        char* s = SPI_getvalue(tuple, desc, col);
        c.i = static_cast<int64_t>(out.text_.size());
        c.len = static_cast<uint32_t>(strlen(s));
        out.text_.append(s, c.len);
        break;
      }
    }
  out.cells_.push_back(c);
}

// Appends the current SPI result to `out` (its columns must match).
void copy_result(Rows& out, uint64 n) {
  if (!SPI_tuptable) return;
  TupleDesc desc = SPI_tuptable->tupdesc;
  out.columns_ = desc->natts;
  Oid types[kMaxArgs * 4];
  if (desc->natts > kMaxArgs * 4) elog(ERROR, "cdp: a result of %d columns", desc->natts);
  for (int c = 0; c < desc->natts; c++) types[c] = SPI_gettypeid(desc, c + 1);
  out.cells_.reserve(out.cells_.size() + n * desc->natts);
  for (uint64 r = 0; r < n; r++)
    for (int c = 0; c < desc->natts; c++) copy_cell(out, SPI_tuptable->vals[r], desc, c + 1, types[c]);
  out.rows_ += n;
}

}  // namespace

namespace {

// Buffers of results gone, kept for the next ones (only the main thread runs
// SQL). Large ones are let go: a rebuild's million-event batch must not stay.
struct RowBuffers {
  std::vector<Rows::Cell> cells;
  std::string text;
};
constexpr size_t kPooledBuffers = 4;
constexpr size_t kPooledBytes = 32u << 20;
std::vector<RowBuffers>& row_pool() {
  static std::vector<RowBuffers> pool;
  return pool;
}

}  // namespace

Rows::Rows() {
  auto& pool = row_pool();
  if (pool.empty()) return;
  cells_ = std::move(pool.back().cells);
  text_ = std::move(pool.back().text);
  pool.pop_back();
  cells_.clear();
  text_.clear();
}

Rows::~Rows() {
  auto& pool = row_pool();
  size_t bytes = text_.capacity() + cells_.capacity() * sizeof(Cell);
  if (bytes == 0 || bytes > kPooledBytes || pool.size() >= kPooledBuffers) return;
  try {
    pool.push_back({std::move(cells_), std::move(text_)});
  } catch (...) {  // out of memory: the buffers are simply freed
  }
}

const Rows::Cell& Rows::cell(size_t row, int col) const {
  if (row >= rows_ || col < 0 || col >= columns_)
    throw Error(ErrorKind::Internal, "",
                "cdp: row " + std::to_string(row) + ", column " + std::to_string(col) + " of a result of " +
                    std::to_string(rows_) + " rows and " + std::to_string(columns_) + " columns read");
  return cells_[row * columns_ + col];
}

int64_t Rows::int8(size_t row, int col, int64_t if_null) const {
  const Cell& c = cell(row, col);
  return c.null ? if_null : c.i;
}

double Rows::float8(size_t row, int col) const {
  const Cell& c = cell(row, col);
  return c.null ? 0 : c.f;
}

std::string_view Rows::text(size_t row, int col) const {
  const Cell& c = cell(row, col);
  if (c.null || c.len == 0) return {};
  return std::string_view(text_).substr(static_cast<size_t>(c.i), c.len);
}

uint64 run(const char* sql, std::initializer_list<Param> params, int expected) {
  uint64 n = 0;
  call([&] {
    Arg args[kMaxArgs];
    n = spi::exec(sql, args, to_args(params, args), expected);
  });
  return n;
}

Rows select(const char* sql, std::initializer_list<Param> params, int expected) {
  Rows out;
  call([&] {
    Arg args[kMaxArgs];
    copy_result(out, spi::exec(sql, args, to_args(params, args), expected));
  });
  return out;
}

void each(const char* sql, std::initializer_list<Param> params, long batch,
          const std::function<void(const Rows&)>& read) {
  Portal portal = nullptr;
  call([&] {
    Arg args[kMaxArgs];
    int nargs = to_args(params, args);
    SPIPlanPtr p = spi::plan_for(sql, args, nargs);
    Datum values[kMaxArgs];
    char nulls[kMaxArgs];
    spi::marshal(args, nargs, values, nulls);
    // read_only = false: a fresh snapshot that sees what this transaction wrote so far.
    portal = SPI_cursor_open(nullptr, p, values, nulls, false);
    if (!portal) elog(ERROR, "cdp: could not open a cursor: %s", sql);
  });
  for (;;) {
    Rows rows;
    call([&] {
      SPI_cursor_fetch(portal, true, batch);
      copy_result(rows, SPI_processed);
      SPI_freetuptable(SPI_tuptable);
    });
    if (rows.empty()) break;
    read(rows);
  }
  call([&] { SPI_cursor_close(portal); });
}

}  // namespace cdp::pg::sql
