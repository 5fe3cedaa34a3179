# shellcheck shell=bash
# Shared shell functions for the benchmarks in bench/ (sourced by bench/run and
# bench/*.sh, after test/lib.sh). Expects ROOT (the project folder).

# Ports away from the ones ./dev test and the e2e tests pick.
BENCH_PG_PORT_FROM=${CDP_BENCH_PG_PORT:-57000}
BENCH_HTTP_PORT_FROM=${CDP_BENCH_HTTP_PORT:-19000}

# bench_cluster_up VAR [SETTING...]: a throwaway cluster in /tmp with cdp
# preloaded, database cdp and the extension created; its folder is stored in
# VAR. The processor worker is off unless CDP_BENCH_PROCESSOR=on: the
# collection benchmarks measure collection, as their baselines only insert
# (the processor has its own benchmark). SETTINGs ("name = value") come last.
bench_cluster_up() {
  local var=$1 dir
  shift
  dir=$(mktemp -d /tmp/cdp-bench.XXXXXX)
  chmod 755 "$dir"
  printf -v "$var" '%s' "$dir"
  init_cluster "$dir" "$(free_port "$BENCH_PG_PORT_FROM")" "$(free_port "$BENCH_HTTP_PORT_FROM")"
  # No checkpoint and no autovacuum lands inside one run and not the other:
  # the benchmarks checkpoint and truncate between runs themselves.
  {
    echo "max_wal_size = 4GB"
    echo "checkpoint_timeout = 30min"
    echo "autovacuum = off"
    echo "cdp.processor_enabled = ${CDP_BENCH_PROCESSOR:-off}"
    [ $# = 0 ] || printf '%s\n' "$@"
  } | as_cluster_user tee -a "$dir/data/postgresql.conf" >/dev/null
  start_cluster "$dir"
  cluster_psql "$dir" postgres -c "create database cdp"
  bench_create_extension "$dir"
}

# bench_create_extension DIR: CREATE EXTENSION cdp, and today's partitions:
# the benchmarks write straight into cdp.events, and since 0.2.0 partitions
# are made by the first write or the processor's maintenance, not at install.
bench_create_extension() {
  cluster_psql "$1" cdp -c "create extension cdp" -c "select cdp.ensure_partitions(cdp.now())" >/dev/null
}

# bench_cluster_down DIR: stops the cluster and removes its folder.
bench_cluster_down() {
  local dir=$1
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  stop_cluster "$dir"
  rm -rf "$dir"
}

# bench_cluster_set DIR "name = value"...: appends settings (the last one wins)
# and restarts the cluster.
bench_cluster_set() {
  local dir=$1
  shift
  printf '%s\n' "$@" | as_cluster_user tee -a "$dir/data/postgresql.conf" >/dev/null
  stop_cluster "$dir"
  start_cluster "$dir"
}

# bench_teardown RC SCRIPT CLUSTER WORK: on failure (RC not 0) the tail of the
# cluster's server log, then the cluster stopped and removed, and WORK too.
bench_teardown() {
  local rc=$1 script=$2 cluster=$3 work=$4
  if [ "$rc" != 0 ] && [ -n "$cluster" ] && [ -f "$cluster/server.log" ]; then
    echo "$script failed; server log tail:" >&2
    tail -20 "$cluster/server.log" >&2 || true
  fi
  bench_cluster_down "$cluster"
  rm -rf "$work"
}

# bench_with_pg DIR COMMAND...: runs COMMAND with the libpq environment that
# reaches database cdp of the cluster in DIR.
bench_with_pg() {
  local dir=$1
  shift
  env PGHOST="$dir" PGPORT="$(cat "$dir/port")" PGUSER="$(cluster_user)" PGDATABASE=cdp "$@"
}

# bench_summary WHAT CDP BASELINE RATIO TARGET [MET]: one row of bench/run's
# final table, appended to $CDP_BENCH_SUMMARY when bench/run collects them.
bench_summary() {
  [ -n "${CDP_BENCH_SUMMARY:-}" ] || return 0
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:--}" >>"$CDP_BENCH_SUMMARY"
}

# --- wrk (bench/http.sh, bench/profiles.sh); the caller defines die MESSAGE. ---

# Seconds to milliseconds for wrk's "1.23ms" / "456.00us" / "1.02s".
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.0f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.0f", v * 1000 }
    else printf "?" }'
}

# run_wrk OUT ARGS...: wrk, bounded in time, its output in OUT.
run_wrk() {
  local out=$1
  shift
  timeout 120 wrk "$@" >"$out" 2>&1 || die "wrk failed: $(cat "$out")"
  [ "${CDP_BENCH_VERBOSE:-0}" = 1 ] && sed 's/^/    | /' "$out" >&2
  return 0
}

# shellcheck disable=SC2034 # the caller reads them
# Reads a wrk output into RPS REQUESTS SECS P50 P99 NON2XX SOCKERR OK2XX.
# RPS is wrk's rate of all answers, whatever their status; OK2XX is the
# requests answered 2xx (from bench/batch.lua's counts by status when the
# script printed them, else wrk's requests minus its non-2xx answers); SECS
# the run's length as wrk measured it.
parse_wrk() {
  local out=$1
  RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
  REQUESTS=$(awk '/ requests in / {print $1}' "$out")
  SECS=$(awk '/ requests in / {v = $4; sub(/,$/, "", v); print v}' "$out")
  SECS=$(awk -v ms="$(to_ms "$SECS")" 'BEGIN { printf "%.3f", ms / 1000 }')
  P50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
  P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
  NON2XX=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  NON2XX=${NON2XX:-0}
  SOCKERR=$(sed -nE 's/.*Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+).*/\1 \2 \3 \4/p' "$out" |
    awk '{print $1 + $2 + $3 + $4}')
  SOCKERR=${SOCKERR:-0}
  if [ -z "$RPS" ] || [ -z "$REQUESTS" ]; then die "could not read wrk's output: $(cat "$out")"; fi
  if grep -q '^status ' "$out"; then
    OK2XX=$(awk '/^status 2[0-9][0-9]:/ {n += $3} END {print n + 0}' "$out")
  else
    OK2XX=$((REQUESTS - NON2XX))
  fi
}

# ratio A B [DIGITS]: A / B.
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b > 0) printf "%.*f", d, a / b; else printf "-" }'; }

wait_tcp() { # wait_tcp PORT SECONDS
  local deadline=$(($(date +%s) + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# --- runs judged by what was stored (bench/http.sh, bench/tracking_plans.sh).
# The caller defines sql, die and reset_tables, and sets CLUSTER, WORK, BATCH,
# BATCH_CONNECTIONS, WARMUP, DURATION and TARGET_URL.

# per_sec N: N / SECS (the last parse_wrk's run length), rounded.
per_sec() { awk -v n="$1" -v s="$SECS" 'BEGIN { printf "%.0f", (s > 0) ? n / s : 0 }'; }

count_rows() { sql -c "select count(*) from $1"; }

# settled_count TABLE: the table's row count once it has stopped growing (the
# requests a finished wrk left in flight commit after it stopped), within 10 s.
settled_count() {
  local deadline=$(($(date +%s) + 10)) n m
  n=$(count_rows "$1")
  while :; do
    sleep 0.5
    m=$(count_rows "$1")
    [ "$m" != "$n" ] || break
    [ "$(date +%s)" -lt "$deadline" ] || die "$1 still growing 10 s after wrk stopped ($n, then $m rows)"
    n=$m
  done
  echo "$m"
}

# check_run STORED PER_REQUEST CONNECTIONS: whether the last parsed run was
# clean, in RUN_OK (yes or NO) and RUN_WHY. It is not when any answer was not
# 2xx, any socket error occurred, fewer rows were stored than the 2xx answers
# acknowledged (acknowledged events lost), or more than those plus what the
# connections could have had in flight when wrk stopped (rows stored for
# requests that were not acknowledged).
check_run() {
  local stored=$1 per=$2 conns=$3 why=()
  [ "$NON2XX" = 0 ] || why+=("$NON2XX non-2xx answers")
  [ "$SOCKERR" = 0 ] || why+=("$SOCKERR socket errors")
  [ "$stored" -ge $((OK2XX * per)) ] || why+=("$stored rows stored < $((OK2XX * per)) acknowledged")
  [ "$stored" -le $(((OK2XX + conns) * per)) ] ||
    why+=("$stored rows stored > $((OK2XX * per)) acknowledged + $((conns * per)) in flight")
  RUN_WHY=$(IFS=';'; echo "${why[*]:-}")
  RUN_WHY=${RUN_WHY//;/, }
  if [ ${#why[@]} = 0 ]; then RUN_OK=yes; else RUN_OK=NO; fi
}

# meets A OP B: "yes" or "NO".
meets() { awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? a >= b : a <= b; print ok ? "yes" : "NO" }'; }

# batch_run LABEL OUT: warm-up, then the measured run; sets BATCH_ROWS (rows/s:
# the rows both acknowledged by a 2xx and stored, the smaller of the two
# counts) and BATCH_OK / BATCH_WHY (check_run).
batch_run() {
  local label=$1 out=$2 rows acked
  CDP_BENCH_BODIES=$WORK/bodies.jsonl CDP_BENCH_TAG="w$RANDOM" \
    run_wrk "$WORK/warmup.txt" -t1 -c"$BATCH_CONNECTIONS" -d"${WARMUP}s" -s "$ROOT/bench/batch.lua" "$TARGET_URL"
  reset_tables
  CDP_BENCH_BODIES=$WORK/bodies.jsonl CDP_BENCH_TAG="m$RANDOM" \
    run_wrk "$out" -t1 -c"$BATCH_CONNECTIONS" -d"${DURATION}s" --latency -s "$ROOT/bench/batch.lua" "$TARGET_URL"
  parse_wrk "$out"
  rows=$(settled_count cdp.events)
  check_run "$rows" "$BATCH" "$BATCH_CONNECTIONS"
  acked=$((OK2XX * BATCH))
  BATCH_ROWS=$(per_sec $((rows < acked ? rows : acked)))
  printf '  %-34s %7s rows/s (%s req/s 2xx)   p50 %7s ms   p99 %7s ms   non-2xx %s   socket errors %s   (%s answers, %s rows stored)\n' \
    "$label" "$BATCH_ROWS" "$(per_sec "$OK2XX")" "$P50" "$P99" "$NON2XX" "$SOCKERR" "$REQUESTS" "$rows"
  if [ "$RUN_OK" != yes ]; then
    grep '^status' "$out" | sed 's/^/    /'
    echo "    !! FAILED: $RUN_WHY; server log tail:"
    tail -5 "$CLUSTER/server.log" | sed 's/^/    /'
  fi
  BATCH_OK=$RUN_OK BATCH_WHY=$RUN_WHY
}
