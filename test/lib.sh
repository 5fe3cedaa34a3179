# Shared shell functions for ./dev, .ci/run, the end-to-end tests and bench/.
# Expects ROOT (the project folder) to be set by the caller.

PG_BIN=/usr/lib/postgresql/15/bin
DEB_PACKAGES=(
  build-essential cmake pkg-config git curl ca-certificates
  postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
  libpq-dev rapidjson-dev libcurl4-openssl-dev zlib1g-dev libmicrohttpd-dev libssl-dev libre2-dev
  libgtest-dev libgmock-dev libbenchmark-dev wrk
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

free_port() {
  local p=${1:-55432}
  while (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# init_cluster DIR PORT [HTTP_PORT]: a new cluster in DIR with cdp preloaded.
init_cluster() {
  local dir=$1 port=$2 http_port=${3:-8765}
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  as_cluster_user "$PG_BIN/initdb" -D "$dir/data" -U "$(cluster_user)" --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  cat >>"$dir/data/postgresql.conf" <<EOF
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

# The dev cluster lives under the project folder. As root, it must be reachable by
# the postgres user; if the project folder is not, it lives in /var/tmp instead.
dev_cluster_dir() {
  if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$ROOT"; then
    echo "/var/tmp/cdp-dev-$(echo "$ROOT" | md5sum | cut -c1-8)"
  else
    echo "$ROOT/.cdp"
  fi
}

start_dev_cluster() {
  local dir
  dir=$(dev_cluster_dir)
  if [ ! -d "$dir/data" ]; then
    log "creating a cluster in $dir"
    init_cluster "$dir" "$(free_port "${CDP_PORT:-55432}")" "$(free_port "${CDP_HTTP_PORT:-8765}")"
  fi
  if ! as_cluster_user "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    start_cluster "$dir"
  fi
  cluster_psql "$dir" postgres -tA -c "select 1 from pg_database where datname = 'cdp'" | grep -q 1 ||
    cluster_psql "$dir" postgres -c "create database cdp"
  cluster_psql "$dir" cdp -c "create extension if not exists cdp"
  local key
  key=$(cluster_psql "$dir" cdp -tA -c \
    "select cdp.create_source('demo') where not exists (select 1 from cdp.sources where name = 'demo')")
  local port
  port=$(cat "$dir/port")
  cat <<EOF

cdp is running.
  SQL:        psql -h $dir -p $port -U $(cluster_user) -d cdp     (or ./dev psql)
  HTTP:       http://127.0.0.1:$(cat "$dir/http_port")  (Segment Tracking API)
  Demo source write key: ${key:-(already created earlier: run cdp.create_source('name') for a new one)}
  Stop:       ./dev stop
EOF
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

run_unit_tests() {
  local out
  out=$(ctest --test-dir "$ROOT/build" --output-on-failure -j"$(nproc)" 2>&1) || true
  printf '%s\n' "$out" | grep -E 'tests passed|Failed|\*\*\*' | tail -20 >&2
  local total failed
  total=$(printf '%s\n' "$out" | sed -nE 's/.*tests passed, ([0-9]+) tests failed out of ([0-9]+).*/\2/p')
  failed=$(printf '%s\n' "$out" | sed -nE 's/.*tests passed, ([0-9]+) tests failed out of ([0-9]+).*/\1/p')
  if [ -z "$total" ]; then tally unit 0 1; else tally unit $((total - failed)) "$failed"; fi
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
  cluster_psql "$dir" postgres -c "drop database if exists cdp_tap" -c "create database cdp_tap"
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

run_all_tests() {
  local dir
  dir=$(mktemp -d /tmp/cdp-test.XXXXXX)
  chmod 755 "$dir"
  trap 'stop_cluster "'"$dir"'"; rm -rf "'"$dir"'"' EXIT
  init_cluster "$dir" "$(free_port 56432)" "$(free_port 18765)"
  # The suites move a settable clock through old dates; retention is tested by
  # calling cdp.run_retention() at chosen times, not by the worker's own tick.
  echo "cdp.retention_enabled = off" | as_cluster_user tee -a "$dir/data/postgresql.conf" >/dev/null
  start_cluster "$dir"
  cluster_psql "$dir" postgres -c "create database cdp"
  run_unit_tests
  run_regress_tests "$dir"
  run_pgtap_tests "$dir"
  run_e2e_tests "$dir"
  if [ "$FAILED" != 0 ]; then
    log "failures: ${FAILURES[*]}"
    log "server log tail:"
    tail -30 "$dir/server.log" >&2 || true
  fi
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" = 0 ]
}
