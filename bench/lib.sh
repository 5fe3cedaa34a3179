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
