#!/bin/sh
# SQL ingestion benchmark: cdp.ingest against plain multi-row INSERT, same rows,
# same run. Builds build/bench/cdp-ingest-bench (when out of date), then runs it.
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
#   --prepared       named prepared statements for both (the default: the
#                    baseline is an application's prepared multi-row INSERT)
#   --unprepared     one-shot PQexecParams instead, parsed and planned per call
#
# Target (docs: BRIEF.md): cdp.ingest >= 70% of the plain INSERT rate.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/build/bench"
mkdir -p "$out"
bin="$out/cdp-ingest-bench"
srcs="$root/bench/ingest_bench.cpp $root/src/testing/event_generator.cpp $root/src/core/timestamp.cpp $root/src/core/json_util.cpp"
# Rebuilt only when a source or header is newer than the binary.
stale=0
[ -x "$bin" ] || stale=1
# shellcheck disable=SC3013 # -nt: dash and bash both have it
for f in $srcs "$root"/src/core/*.hpp "$root"/src/testing/*.hpp; do [ "$f" -nt "$bin" ] && stale=1; done
if [ "$stale" = 1 ]; then
  # No -Werror here: warnings are gated by the CMake and PGXS builds, and a
  # benchmark should not stop on a new warning in a file it merely links.
  # shellcheck disable=SC2086
  ${CXX:-g++} -O2 -std=c++20 -Wall -Wextra -pthread \
    -I"$root/src" -I"$(pg_config --includedir)" $srcs \
    -L"$(pg_config --libdir)" -lpq -o "$bin.tmp"
  mv "$bin.tmp" "$bin"
fi
exec "$bin" "$@"
