#!/bin/sh
# SQL ingestion benchmark: cdp.ingest against plain multi-row INSERT, same rows,
# same run. Builds build/bench/cdp-ingest-bench, then runs it.
#
# Usage:
#   PGHOST=/tmp PGPORT=5432 PGDATABASE=cdp PGUSER=postgres bench/ingest.sh [options]
#
# The cluster comes from the usual PG* variables (or --dsn 'conninfo', or
# CDP_BENCH_DSN). The database needs `CREATE EXTENSION cdp` (with cdp in
# shared_preload_libraries); without it only the plain INSERT is measured.
# Running as a superuser (or a pg_checkpoint member) lets each phase start
# after a CHECKPOINT. The table bench_plain is dropped and recreated, and
# cdp.events, cdp.message_ids and cdp.quarantine are TRUNCATED: use a
# throwaway database.
#
# Options:
#   --count N        events to load per phase (default 200000)
#   --batch B        events per statement / per cdp.ingest call (default 100)
#   --clients C      concurrent connections, each in its own thread (default 1)
#   --rounds R       repeat both phases R times, alternating which goes first (default 1)
#   --seed S --users U   generator seed and number of distinct people
#   --ingest-sql SQL statement for one batch, $1 = the {"batch":[...]} text
#                    (default: select count(*) from cdp.ingest($1::jsonb))
#   --plain-only     skip cdp.ingest
#   --prepared       use named prepared statements for both (default: one-shot
#                    PQexecParams, parsed and planned per call, like most drivers)
#
# Target (docs: BRIEF.md): cdp.ingest >= 70% of the plain INSERT rate.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build/bench"
mkdir -p "$out"
# No -Werror here: warnings are gated by the CMake and PGXS builds, and a
# benchmark should not stop on a new warning in a file it merely links.
${CXX:-g++} -O2 -std=c++20 -Wall -Wextra -pthread \
  -I"$root/src" -I"$(pg_config --includedir)" \
  "$root/bench/ingest_bench.cpp" \
  "$root/src/core/event_generator.cpp" \
  "$root/src/core/timestamp.cpp" \
  "$root/src/core/json_util.cpp" \
  -L"$(pg_config --libdir)" -lpq -o "$out/cdp-ingest-bench"
exec "$out/cdp-ingest-bench" "$@"
