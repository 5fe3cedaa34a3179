// SPI helpers for set-based statements with array parameters. Every function
// here calls Postgres and must run inside pg::call (it may ereport).
#pragma once
extern "C" {
#include "postgres.h"
#include "executor/spi.h"
#include "miscadmin.h"
}
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/timestamp.hpp"
#include "pg/guard.hpp"

namespace cdp::pg::spi {

struct Arg {
  Oid type;
  Datum value;
  bool isnull;
};

Arg str(const std::string& s);  // text; empty string: NULL
Arg int8(int64_t v);
Arg int4(int v);
Arg float8(double v);
Arg timestamptz(Micros t);
Arg text_array(const std::vector<std::string>& v, bool empty_is_null = false);
Arg int8_array(const std::vector<int64_t>& v);
Arg int4_array(const std::vector<int>& v);
Arg timestamptz_array(const std::vector<Micros>& v);
Arg bool_array(const std::vector<bool>& v);

// Runs `sql` (a string literal: its address keys a plan kept for the backend's
// life) and checks the result code. Returns SPI_processed.
uint64 exec(const char* sql, const Arg* args, int nargs, int expected);
inline uint64 exec(const char* sql, std::initializer_list<Arg> args, int expected) {
  return exec(sql, args.begin(), static_cast<int>(args.size()), expected);
}
uint64 exec(const char* sql, int expected);

// Runs `sql` through a cursor, `batch` rows at a time, and calls
// read(n) after each fetch while the rows are the current result (read them
// with get_*; read must copy them out and run no statement itself). For
// results too large to hold at once.
void each_batch(const char* sql, const Arg* args, int nargs, long batch, void (*read)(uint64 n, void* ctx), void* ctx);
template <class F>
void each_batch(const char* sql, std::initializer_list<Arg> args, long batch, F&& read) {
  each_batch(sql, args.begin(), static_cast<int>(args.size()), batch,
             [](uint64 n, void* f) { (*static_cast<F*>(f))(n); }, &read);
}

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

// Result access for the last statement. Reading a row the result does not
// have is an ERROR (not a crash).
int64_t get_int8(uint64 row, int col, int64_t if_null = 0);
int get_int4(uint64 row, int col, int if_null = 0);
bool get_bool(uint64 row, int col);
bool is_null(uint64 row, int col);
std::string get_text(uint64 row, int col);  // NULL: empty
Micros get_timestamptz(uint64 row, int col);

}  // namespace cdp::pg::spi
