# Shared shell functions for ./dev, .ci/run, the end-to-end tests and bench/.
# Expects ROOT (the project folder) to be set by the caller.

# PG_BIN may point at a private install (a copy of the server with this build in it).
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DEB_PACKAGES=(
  build-essential cmake pkg-config git curl ca-certificates
  postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
  libpq-dev rapidjson-dev libcurl4-openssl-dev zlib1g-dev libmicrohttpd-dev libssl-dev libre2-dev
  libgtest-dev libgmock-dev libbenchmark-dev wrk json-schema-test-suite
  clang
  chromium
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs the Debian packages that are missing (and Node.js for the SDK tests).
ensure_deps() {
  local missing=()
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Builds the extension (PGXS) and the core with its tests (CMake), installs the extension.
build_all() {
  log "building cdp"
  # Explicit returns: callers test this function, which switches off set -e inside it.
  make -s -j"$(nproc)" >/dev/null || return 1
  as_root make -s install >/dev/null || return 1
  cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || return 1
  cmake --build "$ROOT/build" -j"$(nproc)" >/dev/null || return 1
}

# initdb refuses to run as root: clusters then belong to the postgres user.
cluster_user() { if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi; }
as_cluster_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# port_in_use PORT: something accepts connections on 127.0.0.1:PORT.
port_in_use() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

free_port() {
  local p=${1:-55432}
  while port_in_use "$p"; do p=$((p + 1)); done
  echo "$p"
}

# init_cluster DIR PORT [HTTP_PORT]: a new cluster in DIR with cdp preloaded.
init_cluster() {
  local dir=$1 port=$2 http_port=${3:-8765}
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  as_cluster_user "$PG_BIN/initdb" -D "$dir/data" -U "$(cluster_user)" --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null || return 1
  cat >>"$dir/data/postgresql.conf" <<EOF || return 1
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'cdp'
cdp.http_listen = '127.0.0.1:$http_port'
cdp.database = 'cdp'
max_connections = 200
shared_buffers = 256MB
logging_collector = off
log_min_messages = warning
EOF
  echo "$port" | as_cluster_user tee "$dir/port" >/dev/null
  echo "$http_port" | as_cluster_user tee "$dir/http_port" >/dev/null
}

start_cluster() {
  local dir=$1
  as_cluster_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
}

stop_cluster() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_cluster_user "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || true
}

cluster_psql() {
  local dir=$1 db=$2
  shift 2
  psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$(cat "$dir/port")" -U "$(cluster_user)" -d "$db" "$@"
}

# ---------------------------------------------------------------------------
# The local development cluster (./dev up, stop, reset, psql, key, demo).
# ---------------------------------------------------------------------------
# It lives in CDP_DEV_DIR if set (the tests use that, to keep theirs apart),
# else under the project folder. As root, it must be reachable by the
# postgres user; if the project folder is not, it lives in /var/tmp instead.
dev_cluster_dir() {
  if [ -n "${CDP_DEV_DIR:-}" ]; then
    echo "$CDP_DEV_DIR"
  elif [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$ROOT"; then
    echo "/var/tmp/cdp-dev-$(echo "$ROOT" | md5sum | cut -c1-8)"
  else
    echo "$ROOT/.cdp"
  fi
}

cluster_running() { as_cluster_user "$PG_BIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1; }

# require_dev_cluster: the dev cluster's folder, or a message saying what to
# do and a non-zero return when there is none or it is stopped.
require_dev_cluster() {
  local dir
  dir=$(dev_cluster_dir)
  if [ ! -d "$dir/data" ]; then
    echo "no local cluster: run ./dev up" >&2
    return 1
  fi
  if ! cluster_running "$dir"; then
    echo "the local cluster in $dir is stopped: run ./dev up" >&2
    return 1
  fi
  echo "$dir"
}

# http_url DIR: where the cluster's HTTP worker listens, read from the server
# (cdp.http_listen), with a wildcard address replaced by loopback; empty when
# the HTTP worker is off.
http_url() {
  local listen host
  listen=$(cluster_psql "$1" postgres -tA -c "show cdp.http_listen") || return 1
  [ -n "$listen" ] || return 0
  host=${listen%:*}
  case "$host" in
    0.0.0.0) host=127.0.0.1 ;;
    "[::]") host="[::1]" ;;
  esac
  echo "http://$host:${listen##*:}"
}

# port_advice PORT: what to do when another program has the HTTP port.
port_advice() {
  cat <<MSG
Another program has port $1 (ss -ltnp 'sport = :$1' shows which). Stop it, or move this
cluster's HTTP worker to a free port and start again:
  CDP_HTTP_PORT=$(free_port $(($1 + 1))) ./dev up
which runs ALTER SYSTEM SET cdp.http_listen = '127.0.0.1:<port>' and restarts the cluster.
MSG
}

# wait_for_http DIR LOG_OFFSET URL: until the HTTP worker says it listens (in
# the server log written after LOG_OFFSET) and GET URL/health answers 200.
# Fails at once, saying why and what to do, when the worker cannot listen;
# fails after 30 s otherwise.
wait_for_http() {
  local dir=$1 offset=$2 url=$3 last deadline=$((SECONDS + 30)) port
  port=${url##*:}
  while [ "$SECONDS" -lt "$deadline" ]; do
    last=$(tail -c +$((offset + 1)) "$dir/server.log" 2>/dev/null |
      grep -E 'cdp http: listening on|ERROR: +cdp http:' | tail -1 || true)
    case "$last" in
      *ERROR*)
        {
          echo
          echo "cdp's HTTP worker cannot listen on ${url#http://}. The server log says:"
          echo "  ${last#*ERROR:  }"
          port_advice "$port"
          echo "The cluster is running meanwhile (SQL works: ./dev psql); only HTTP is down."
        } >&2
        return 1
        ;;
      *listening*)
        curl -fsS -m 2 -o /dev/null "$url/health" 2>/dev/null && return 0
        ;;
    esac
    sleep 0.2
  done
  cat >&2 <<MSG

cdp's HTTP worker did not answer $url/health within 30 s. The end of $dir/server.log:
$(tail -15 "$dir/server.log" 2>/dev/null | sed 's/^/  /')
MSG
  return 1
}

# dev_write_key DIR: the write key ./dev up prints, kept in DIR/write_key (the
# table holds only its hash); a new source when there is none or it was revoked.
dev_write_key() {
  local dir=$1 key="" name
  [ -f "$dir/write_key" ] && key=$(cat "$dir/write_key")
  if [ -n "$key" ] && [ -n "$(cluster_psql "$dir" cdp -tA -c "select cdp.source_for_key('$key')")" ]; then
    echo "$key"
    return 0
  fi
  name=$(cluster_psql "$dir" cdp -tA -c "select case when exists (select 1 from cdp.sources where name = 'demo')
                                          then 'demo-' || extract(epoch from now())::bigint else 'demo' end") || return 1
  key=$(cluster_psql "$dir" cdp -tA -c "select cdp.create_source('$name')") || return 1
  (umask 077 && echo "$key" >"$dir/write_key") || return 1
  echo "$key"
}

# dev_read_token DIR: a Profile API read token of the local cluster (every
# scope, PII clear: it is the developer's own), kept in DIR/read_token; a new
# one when there is none or it was revoked.
dev_read_token() {
  local dir=$1 token="" name
  [ -f "$dir/read_token" ] && token=$(cat "$dir/read_token")
  if [ -n "$token" ] && [ "$(cluster_psql "$dir" cdp -tA -c "select count(*) from cdp.access_tokens
       where token_hash = sha256(convert_to('$token', 'UTF8')) and revoked_at is null")" = 1 ]; then
    echo "$token"
    return 0
  fi
  name="dev-$(date +%s)"
  token=$(cluster_psql "$dir" cdp -tA -c "select cdp.create_access_token('$name',
            array['profiles:read', 'identities:read', 'events:read', 'consent:read', 'pii:clear'])") || return 1
  (umask 077 && echo "$token" >"$dir/read_token") || return 1
  echo "$token"
}

# load_demo DIR URL KEY: the demo dataset (demo/load.mjs, docs/demo.md), sent
# over HTTP, then processed; DIR/demo_loaded marks it done.
load_demo() {
  local dir=$1 url=$2 key=$3
  log "loading the demo dataset (demo/load.mjs; skip with ./dev up --no-demo)"
  node "$ROOT/demo/load.mjs" --url "$url" --key "$key" || return 1
  cluster_psql "$dir" cdp -tA -c "select cdp.process_pending()" >/dev/null || return 1
  date -u +%FT%TZ >"$dir/demo_loaded"
}

# dev_start DIR: starts the cluster; prints the server log's size before, so
# that what this start logs can be told from older lines.
dev_start() {
  local dir=$1 offset
  offset=$(stat -c %s "$dir/server.log" 2>/dev/null || echo 0)
  log "starting the cluster in $dir"
  if ! start_cluster "$dir"; then
    echo "the server did not start; the end of $dir/server.log:" >&2
    tail -c +$((offset + 1)) "$dir/server.log" | tail -15 | sed 's/^/  /' >&2
    return 1
  fi
  echo "$offset"
}

# start_dev_cluster [--no-demo]: creates the cluster on first use, starts it,
# creates database and extension, checks the HTTP worker answers, loads the
# demo dataset once, and prints how to reach it all.
start_dev_cluster() {
  local demo=1 dir offset=0 url key port
  [ "${1:-}" = --no-demo ] && demo=0
  dir=$(dev_cluster_dir)
  if [ ! -d "$dir/data" ]; then
    log "creating a cluster in $dir"
    init_cluster "$dir" "$(free_port "${CDP_PORT:-55432}")" "$(free_port "${CDP_HTTP_PORT:-8765}")" || return 1
  fi
  if ! cluster_running "$dir"; then
    # The HTTP workers bind with SO_REUSEPORT: a port another cdp cluster of
    # the same user holds would be shared, silently, so look before starting.
    if [ "${CDP_HTTP_PORT:-}" = "" ] && port_in_use "$(cat "$dir/http_port")"; then
      { echo; echo "The local cluster's HTTP port is taken: it was not started."; port_advice "$(cat "$dir/http_port")"; } >&2
      return 1
    fi
    offset=$(dev_start "$dir") || return 1
  fi
  url=$(http_url "$dir") || return 1
  # On an existing cluster CDP_HTTP_PORT moves the HTTP worker (a postmaster setting).
  if [ -n "${CDP_HTTP_PORT:-}" ] && [ "${url##*:}" != "$CDP_HTTP_PORT" ]; then
    if port_in_use "$CDP_HTTP_PORT"; then
      { echo; echo "CDP_HTTP_PORT=$CDP_HTTP_PORT is taken too."; port_advice "$CDP_HTTP_PORT"; } >&2
      return 1
    fi
    log "moving the HTTP worker to 127.0.0.1:$CDP_HTTP_PORT (alter system set cdp.http_listen, restart)"
    cluster_psql "$dir" postgres -c "alter system set cdp.http_listen = '127.0.0.1:$CDP_HTTP_PORT'" || return 1
    stop_cluster "$dir"
    offset=$(dev_start "$dir") || return 1
    url=$(http_url "$dir") || return 1
  fi
  cluster_psql "$dir" postgres -tA -c "select 1 from pg_database where datname = 'cdp'" | grep -q 1 ||
    cluster_psql "$dir" postgres -c "create database cdp" || return 1
  cluster_psql "$dir" cdp -c "set client_min_messages = warning; create extension if not exists cdp" || return 1
  key=$(dev_write_key "$dir") || return 1
  port=$(cat "$dir/port")
  if [ -z "$url" ]; then
    log "cdp.http_listen is empty: no HTTP worker, so no demo dataset either"
  else
    echo "${url##*:}" | as_cluster_user tee "$dir/http_port" >/dev/null
    log "waiting for the HTTP worker at $url"
    wait_for_http "$dir" "$offset" "$url" || return 1
    if [ "$demo" = 1 ] && [ ! -f "$dir/demo_loaded" ]; then
      load_demo "$dir" "$url" "$key" || { echo "loading the demo dataset failed" >&2; return 1; }
    fi
  fi
  cat <<MSG

cdp is running.
  SQL:        psql -h $dir -p $port -U $(cluster_user) -d cdp     (or ./dev psql)
  HTTP:       $([ -n "$url" ] && echo "$url  (Segment Tracking API; GET /health answered 200)" || echo "off (cdp.http_listen is empty)")
  Write key:  $key     (source "demo"; ./dev key prints it again)
  Demo data:  $([ -f "$dir/demo_loaded" ] && echo "loaded $(cat "$dir/demo_loaded") (docs/demo.md)" || echo "not loaded (./dev demo loads it)")
  Stop:       ./dev stop     Delete it all: ./dev reset
MSG
}

# stop_dev_cluster / reset_dev_cluster [--yes]: say what they did.
stop_dev_cluster() {
  local dir
  dir=$(dev_cluster_dir)
  if [ ! -d "$dir/data" ]; then
    echo "no local cluster in $dir: nothing to stop"
  elif ! cluster_running "$dir"; then
    echo "the local cluster in $dir is already stopped"
  else
    stop_cluster "$dir"
    if cluster_running "$dir"; then
      echo "the local cluster in $dir did not stop (see $dir/server.log)" >&2
      return 1
    fi
    echo "stopped the local cluster in $dir (its data is kept: ./dev up starts it again, ./dev reset deletes it)"
  fi
}

reset_dev_cluster() {
  local dir answer
  dir=$(dev_cluster_dir)
  if [ ! -e "$dir" ]; then
    echo "no local cluster in $dir: nothing to reset"
    return 0
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    echo "$dir holds no cluster (no data/PG_VERSION): not deleting it" >&2
    return 1
  fi
  if [ "${1:-}" != --yes ]; then
    if [ ! -t 0 ]; then
      echo "./dev reset deletes $dir and every event, profile and setting in it; add --yes to do it" >&2
      return 2
    fi
    read -r -p "Delete the local cluster in $dir, with all its data? [y/N] " answer
    case "$answer" in
      y | Y | yes) ;;
      *) echo "nothing deleted"; return 0 ;;
    esac
  fi
  if cluster_running "$dir"; then stop_cluster "$dir"; fi
  rm -rf "$dir" || return 1
  echo "deleted the local cluster in $dir (./dev up makes a new one)"
}

# ---------------------------------------------------------------------------
# Every suite against a throwaway cluster. Counts every test case; prints
# "N passed, N failed" last and returns non-zero if anything failed.
# ---------------------------------------------------------------------------
PASSED=0
FAILED=0
FAILURES=()
tally() { # tally SUITE PASSED FAILED
  PASSED=$((PASSED + $2))
  FAILED=$((FAILED + $3))
  [ "$3" = 0 ] || FAILURES+=("$1: $3 failed")
  log "$1: $2 passed, $3 failed"
}

# ctest_suite SUITE BUILD_DIR [CTEST_ARGS...]: runs ctest in BUILD_DIR and
# tallies its "N% tests passed, N tests failed out of N" line; no such line
# (ctest could not run, or found no test) counts as one failure.
ctest_suite() {
  local suite=$1 build=$2 out line failed total
  shift 2
  out=$(ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@" 2>&1) || true
  printf '%s\n' "$out" | grep -E 'tests passed|Failed|\*\*\*|runtime error|ERROR: AddressSanitizer' | tail -20 >&2 || true
  line=$(printf '%s\n' "$out" | sed -nE 's/.*tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/p' | tail -1)
  if [ -z "$line" ]; then
    printf '%s\n' "$out" | tail -20 >&2
    tally "$suite" 0 1
    return 0
  fi
  read -r failed total <<<"$line"
  tally "$suite" $((total - failed)) "$failed"
}

run_unit_tests() { ctest_suite unit "$ROOT/build"; }

# ---------------------------------------------------------------------------
# The sanitized build: the core, its unit tests and the fuzzers compiled by
# clang with AddressSanitizer, UndefinedBehaviorSanitizer and libFuzzer's
# coverage (CMake option CDP_FUZZ) into build-asan/. No cluster needed.
# ---------------------------------------------------------------------------
SAN_BUILD=build-asan
FUZZ_TARGETS=(payload segments delivery http gzip)
# Unit tests not run under ASan (a ctest -E regex), each with its reason:
# - core_has_no_postgres_includes, testing_doc_names_every_suite: source
#   checks, already counted in `unit`.
ASAN_EXCLUDE='^(core_has_no_postgres_includes|testing_doc_names_every_suite)$'

build_sanitized() {
  log "building the sanitized core, unit tests and fuzzers ($SAN_BUILD/)"
  # -O1 with line tables only: a third less compile time than RelWithDebInfo,
  # stack traces still name file and line. No NDEBUG, so assert() and
  # RapidJSON's own assertions are checked too. Warnings are build/'s job (gcc).
  cmake -S "$ROOT" -B "$ROOT/$SAN_BUILD" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=None \
    -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" -DCDP_FUZZ=ON -DCDP_WERROR=OFF >/dev/null || return 1
  cmake --build "$ROOT/$SAN_BUILD" -j"$(nproc)" --target cdp_unit_tests fuzzers >/dev/null || return 1
}

# The sanitizers' settings, for the fuzzers (ctest sets the same for the unit tests).
sanitizer_env() {
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$ROOT/test/sanitize/ubsan.supp"
  export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1"
}

# fuzz_one NAME SECONDS WORK: runs NAME_fuzz for SECONDS from its seed corpus
# (test/fuzz/NAME_corpus, read only; new inputs go to WORK/NAME) with its
# dictionary, if any. Leaves the output in WORK/NAME.log, the exit status in
# WORK/NAME.rc and a crashing input as WORK/NAME-crash-*.
fuzz_one() {
  local name=$1 secs=$2 work=$3 rc=0
  # A fixed seed (CDP_FUZZ_SEED, 1 by default; 0 draws one) makes a run
  # repeatable: CI fails on a bug found before, not on this run's luck.
  # Exploring for new bugs: CDP_FUZZ_SEED=0 CDP_FUZZ_SECONDS=600.
  local args=(-max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1
    -seed="${CDP_FUZZ_SEED:-1}" -artifact_prefix="$work/$name-")
  [ -f "$ROOT/test/fuzz/$name.dict" ] && args+=(-dict="$ROOT/test/fuzz/$name.dict")
  mkdir -p "$work/$name"
  "$ROOT/$SAN_BUILD/${name}_fuzz" "${args[@]}" "$work/$name" "$ROOT/test/fuzz/${name}_corpus" \
    >"$work/$name.log" 2>&1 || rc=$?
  echo "$rc" >"$work/$name.rc"
}

# One case per fuzzer: passed when it ran its time (CDP_FUZZ_SECONDS, 60 by
# default) without a crash, a leak, a timeout or a broken invariant. Runs as
# many at once as there are cores.
run_fuzz_tests() {
  local secs=${CDP_FUZZ_SECONDS:-60} work="$ROOT/$SAN_BUILD/fuzz-run" ok=0 bad=0 name rc
  rm -rf "$work" && mkdir -p "$work"
  sanitizer_env
  log "fuzz: ${FUZZ_TARGETS[*]}, ${secs} s each, $(nproc) at a time"
  for name in "${FUZZ_TARGETS[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n || true; done
    fuzz_one "$name" "$secs" "$work" &
  done
  wait || true
  for name in "${FUZZ_TARGETS[@]}"; do
    rc=$(cat "$work/$name.rc" 2>/dev/null || echo missing)
    if [ "$rc" = 0 ] && grep -qE '^Done [0-9]+ runs' "$work/$name.log"; then
      ok=$((ok + 1))
      log "fuzz $name: $(fuzz_stats "$work/$name.log")"
    else
      bad=$((bad + 1))
      FAILURES+=("fuzz $name")
      log "fuzz $name FAILED (exit $rc); input: $(ls "$work/$name"-* 2>/dev/null | tr '\n' ' ')"
      grep -vE '^(#[0-9]+|	NEW_FUNC)' "$work/$name.log" | tail -40 >&2 || true
    fi
  done
  tally fuzz "$ok" "$bad"
}

# "N runs, N exec/s, cov N, N new inputs" from a libFuzzer log.
fuzz_stats() {
  local log=$1 runs eps cov units
  runs=$(sed -nE 's/^stat::number_of_executed_units:[[:space:]]+([0-9]+).*/\1/p' "$log" | tail -1)
  eps=$(sed -nE 's/^stat::average_exec_per_sec:[[:space:]]+([0-9]+).*/\1/p' "$log" | tail -1)
  cov=$(sed -nE 's/^#[0-9]+[[:space:]]+DONE[[:space:]]+cov: ([0-9]+).*/\1/p' "$log" | tail -1)
  units=$(sed -nE 's/^stat::new_units_added:[[:space:]]+([0-9]+).*/\1/p' "$log" | tail -1)
  echo "${runs:-?} runs, ${eps:-?} exec/s, cov ${cov:-?}, ${units:-?} new inputs"
}

run_sanitized_tests() {
  if ! build_sanitized; then
    log "the sanitized build failed"
    tally unit-asan 0 1
    tally fuzz 0 1
    return 0
  fi
  ctest_suite unit-asan "$ROOT/$SAN_BUILD" -E "$ASAN_EXCLUDE"
  run_fuzz_tests
}

run_regress_tests() {
  local dir=$1 out rc=0
  out=$(make -s installcheck PGHOST="$dir" PGPORT="$(cat "$dir/port")" PGUSER="$(cluster_user)" 2>&1) || rc=$?
  printf '%s\n' "$out" | grep -E '^(ok|not ok|test| [a-z_]+ +\.\.\.)|tests (passed|failed)' >&2 || true
  local ok bad
  ok=$(printf '%s\n' "$out" | grep -cE '\.\.\. ok|^ok ' || true)
  bad=$(printf '%s\n' "$out" | grep -cE '\.\.\. FAILED|^not ok ' || true)
  if [ "$rc" != 0 ] && [ "$bad" = 0 ]; then bad=1; fi
  if [ "$bad" != 0 ] && [ -f regression.diffs ]; then head -100 regression.diffs >&2; fi
  tally pg_regress "$ok" "$bad"
}

run_pgtap_tests() {
  local dir=$1 out rc=0
  if ! cluster_psql "$dir" postgres -c "drop database if exists cdp_tap" -c "create database cdp_tap"; then
    tally pgTAP 0 1
    return 0
  fi
  out=$(pg_prove -h "$dir" -p "$(cat "$dir/port")" -U "$(cluster_user)" -d cdp_tap "$ROOT"/test/pgtap/*.sql 2>&1) || rc=$?
  printf '%s\n' "$out" | tail -15 >&2
  local total failed
  total=$(printf '%s\n' "$out" | sed -nE 's/^Files=[0-9]+, Tests=([0-9]+),.*/\1/p')
  failed=$(printf '%s\n' "$out" | sed -nE 's/.*Failed ([0-9]+)\/[0-9]+ subtests.*/\1/p' | awk '{s+=$1} END {print s+0}')
  failed=${failed:-0}
  [ -n "$total" ] || total=0
  if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
  tally pgTAP $((total - failed > 0 ? total - failed : 0)) "$failed"
}

run_e2e_tests() {
  local dir=$1 ok=0 bad=0
  for t in "$ROOT"/test/e2e/*.sh; do
    [ -e "$t" ] || continue
    log "e2e: $(basename "$t")"
    if CLUSTER_DIR=$dir ROOT=$ROOT bash "$t" >&2; then ok=$((ok + 1)); else
      bad=$((bad + 1))
      FAILURES+=("e2e $(basename "$t")")
    fi
  done
  tally e2e "$ok" "$bad"
}

# A throwaway cluster in DIR, started, with database cdp. Explicit returns:
# callers test this function, which switches off set -e inside it.
setup_test_cluster() {
  local dir=$1
  chmod 755 "$dir" || return 1
  init_cluster "$dir" "$(free_port 56432)" "$(free_port 18765)" || return 1
  # The suites move a settable clock through old dates; retention is tested by
  # calling cdp.run_retention() at chosen times, not by the worker's own tick.
  echo "cdp.retention_enabled = off" | as_cluster_user tee -a "$dir/data/postgresql.conf" >/dev/null || return 1
  start_cluster "$dir" || return 1
  cluster_psql "$dir" postgres -c "create database cdp" || return 1
}

run_all_tests() {
  run_unit_tests
  run_sanitized_tests
  local dir
  dir=$(mktemp -d /tmp/cdp-test.XXXXXX)
  trap 'stop_cluster "'"$dir"'"; rm -rf "'"$dir"'"' EXIT
  if setup_test_cluster "$dir"; then
    run_regress_tests "$dir"
    run_pgtap_tests "$dir"
    run_e2e_tests "$dir"
  else
    log "could not set up the test cluster: pg_regress, pgTAP and e2e did not run"
    tally cluster 0 1
  fi
  if [ "$FAILED" != 0 ]; then
    log "failures: ${FAILURES[*]}"
    log "server log tail:"
    tail -30 "$dir/server.log" >&2 || true
  fi
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" = 0 ]
}
