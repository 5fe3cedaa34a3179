// The glue's one way to SPI. sql:: (below) runs statements and reads their
// results; spi::connected brackets a connection; spi::check_interrupts serves
// a pending interrupt. The SPI calls themselves (the plan cache, marshalling,
// result access) live in spi.cpp only: the glue runs its statements through
// sql::, never inside a pg::call body of its own.
#pragma once
extern "C" {
#include "postgres.h"
#include "executor/spi.h"
#include "miscadmin.h"
}
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/timestamp.hpp"
#include "pg/runtime/guard.hpp"

namespace cdp::pg::spi {

// Runs f (C++ that reaches Postgres through pg::call) inside an SPI connection
// and returns its result. If f throws, the aborting transaction closes SPI.
template <class F>
auto connected(F&& f) {
  call([] {
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "cdp: SPI_connect failed");
  });
  auto result = f();
  call([] { SPI_finish(); });
  return result;
}

// For long C++ loops of a worker: serves a pending interrupt (SIGTERM: exit;
// a cancel or a budget timeout: an ERROR, thrown here as PgError). Cheap
// when nothing is pending.
inline void check_interrupts() {
  if (unlikely(InterruptPending)) call([] { CHECK_FOR_INTERRUPTS(); });
}

}  // namespace cdp::pg::spi

// ---------------------------------------------------------------------------
// The error wall by construction. select/run/each take their parameters as
// Params (a pointer or a value, no Postgres memory: built anywhere) and run
// the statement inside pg::call themselves; a result comes back as Rows,
// copied out of SPI inside the guard into plain buffers, read outside it.
// Code using these needs no pg::call of its own, so no C++ object can be
// declared where a Postgres error would longjmp over it.

namespace cdp::pg::sql {

// Row `row` of a column the caller keeps in its own objects (see text_column).
using TextAt = std::string_view (*)(const void* ctx, size_t row);     // "": NULL
using TimeAt = std::optional<Micros> (*)(const void* ctx, size_t row);  // nullopt: NULL
using Int4At = int (*)(const void* ctx, size_t row);

struct Param {
  enum Kind : uint8_t { Null, Text, Int8, Int4, Float8, Timestamptz, Bool, Texts, TextsOrNull, Int8s, Int4s,
                        Timestamptzs, Bools, TextColumn, TimestamptzColumn, Int4Column, Byteas };
  union At {
    TextAt text;
    TimeAt time;
    Int4At int4;
  };
  Kind kind = Null;
  int64_t i = 0;            // a value; a column: its rows
  double f = 0;
  const void* p = nullptr;  // the caller's string, vector or column context: must outlive the call
  bool null = false;        // a NULL of this kind's type (null_if)
  At at = {nullptr};        // a column's reader
};
inline Param text(const std::string& s) { return {s.empty() ? Param::Null : Param::Text, 0, 0, &s}; }  // "": NULL
inline Param int8(int64_t v) { return {Param::Int8, v}; }
inline Param int4(int v) { return {Param::Int4, v}; }
inline Param float8(double v) { return {Param::Float8, 0, v}; }
inline Param timestamptz(Micros t) { return {Param::Timestamptz, t}; }
inline Param boolean(bool b) { return {Param::Bool, b}; }
inline Param null() { return {}; }  // a text NULL
// p's type with a NULL value when `cond`: for `$1::int8[] is null or ...`,
// where a text NULL would not plan.
inline Param null_if(bool cond, Param p) {
  p.null = cond;
  return p;
}
inline Param texts(const std::vector<std::string>& v, bool empty_is_null = false) {
  return {empty_is_null ? Param::TextsOrNull : Param::Texts, 0, 0, &v};
}
inline Param int8s(const std::vector<int64_t>& v) { return {Param::Int8s, 0, 0, &v}; }
// A bytea[]: each string's raw bytes.
inline Param byteas(const std::vector<std::string>& v) { return {Param::Byteas, 0, 0, &v}; }
inline Param int4s(const std::vector<int>& v) { return {Param::Int4s, 0, 0, &v}; }
inline Param timestamptzs(const std::vector<Micros>& v) { return {Param::Timestamptzs, 0, 0, &v}; }
inline Param bools(const std::vector<bool>& v) { return {Param::Bools, 0, 0, &v}; }
// Arrays read straight from the caller's objects, for a batch's payload
// strings: the marshalling calls read(ctx, r) for r in [0, rows) inside the
// guard and copies each value into Postgres memory, with no C++ copy first.
// read returns a view of what ctx holds and declares nothing with a destructor.
inline Param text_column(size_t rows, const void* ctx, TextAt read) {
  Param p{Param::TextColumn, static_cast<int64_t>(rows), 0, ctx};
  p.at.text = read;
  return p;
}
inline Param timestamptz_column(size_t rows, const void* ctx, TimeAt read) {
  Param p{Param::TimestamptzColumn, static_cast<int64_t>(rows), 0, ctx};
  p.at.time = read;
  return p;
}
inline Param int4_column(size_t rows, const void* ctx, Int4At read) {
  Param p{Param::Int4Column, static_cast<int64_t>(rows), 0, ctx};
  p.at.int4 = read;
  return p;
}

// A result copied out of SPI. Columns are numbered from 0. Columns of types
// int2/int4/int8, bool, float4/float8 and timestamptz read as numbers; text,
// varchar and bytea (its raw bytes) as text; any other type in its text form.
// NULL reads as 0, false or "". Reading a row or column the result does not
// have is a cdp::Error(Internal), never a crash.
class Rows {
 public:
  // A result's buffers come from a small pool and go back to it: a batch's
  // rows then land in memory the process has touched before, not in fresh
  // pages the kernel must zero each time (which cost the processor 5%).
  Rows();
  ~Rows();
  Rows(Rows&&) noexcept = default;
  Rows& operator=(Rows&&) noexcept = default;
  Rows(const Rows&) = delete;
  Rows& operator=(const Rows&) = delete;

  size_t size() const { return rows_; }
  bool empty() const { return rows_ == 0; }
  int columns() const { return columns_; }
  bool is_null(size_t row, int col) const { return cell(row, col).null; }
  int64_t int8(size_t row, int col, int64_t if_null = 0) const;
  int int4(size_t row, int col, int if_null = 0) const { return static_cast<int>(int8(row, col, if_null)); }
  bool boolean(size_t row, int col) const { return int8(row, col) != 0; }
  double float8(size_t row, int col) const;
  Micros timestamptz(size_t row, int col) const { return int8(row, col); }  // clamped to the core's range
  std::string_view text(size_t row, int col) const;
  std::string str(size_t row, int col) const { return std::string(text(row, col)); }

  struct Cell {  // plain data: filled inside the guard
    int64_t i;   // integers, bool, timestamptz (Micros); text: offset into text_
    double f;
    uint32_t len;  // text only
    bool null;
  };
  // Filled by spi.cpp inside pg::call: no method here raises a Postgres error.
  std::vector<Cell> cells_;
  std::string text_;
  size_t rows_ = 0;
  int columns_ = 0;

 private:
  const Cell& cell(size_t row, int col) const;
};

// Runs `sql` (a string literal: it keys a plan kept for the backend's life)
// inside pg::call and checks the result code; returns the rows affected.
uint64 run(const char* sql, std::initializer_list<Param> params, int expected);
inline uint64 run(const char* sql, int expected) { return run(sql, {}, expected); }
// The same for a statement that returns rows (SELECT, or ... RETURNING with
// expected = SPI_OK_INSERT_RETURNING and so on).
Rows select(const char* sql, std::initializer_list<Param> params = {}, int expected = SPI_OK_SELECT);
// For results too large to hold: fetches `batch` rows at a time through a
// cursor, calling read(rows) outside the guard after each fetch. read may run
// statements of its own; if it throws, the cursor closes with the transaction.
void each(const char* sql, std::initializer_list<Param> params, long batch, const std::function<void(const Rows&)>& read);

}  // namespace cdp::pg::sql
