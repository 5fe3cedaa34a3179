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
