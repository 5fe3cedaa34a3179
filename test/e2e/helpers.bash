# shellcheck disable=SC2034  # globals used by the scripts that source this
# Shared by the end-to-end scripts in test/e2e/ (sourced, not run: the test
# runner only runs test/e2e/*.sh). Expects CLUSTER_DIR and ROOT in the
# environment, as run_e2e_tests in test/lib.sh sets them.
: "${ROOT:?ROOT must be the project folder}"
: "${CLUSTER_DIR:?CLUSTER_DIR must be a running cluster made by init_cluster}"
# shellcheck source=../lib.sh
source "$ROOT/test/lib.sh"

E2E_NAME=$(basename "$0" .sh)
HTTP_PORT=$(cat "$CLUSTER_DIR/http_port")
BASE="http://127.0.0.1:$HTTP_PORT"
# A suffix that makes source names and messageIds unique to this run.
RUN_ID="$(date +%s)$$"
E2E_TMP=$(mktemp -d "/tmp/cdp-e2e-$E2E_NAME.XXXXXX")
E2E_CLEANUP=()
e2e_exit() {
  local rc=$?
  for c in "${E2E_CLEANUP[@]}"; do eval "$c" || true; done
  rm -rf "$E2E_TMP"
  return $rc
}
trap e2e_exit EXIT

FAILS=0
CHECKS=0
say() { printf '%s\n' "$*"; }
section() { printf '\n--- %s\n' "$*"; }
pass() { CHECKS=$((CHECKS + 1)); printf '  ok    %s\n' "$1"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); printf '  FAIL  %s\n' "$1"; }
# Stops at once: for failures that make every later check meaningless.
die() { printf '  FATAL %s\n' "$*"; printf '%s: FAILED\n' "$E2E_NAME"; exit 1; }
check_eq() { # check_eq WHAT GOT WANT
  if [ "$2" == "$3" ]; then pass "$1"; else fail "$1: expected [$3], got [$2]"; fi
}
check_ge() { # check_ge WHAT GOT MIN (integers)
  if [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge "$3" ]; then pass "$1 ($2)"; else fail "$1: expected >= $3, got [$2]"; fi
}
check_match() { # check_match WHAT GOT REGEX
  if [[ "$2" =~ $3 ]]; then pass "$1"; else fail "$1: expected to match /$3/, got [$2]"; fi
}
finish() {
  echo
  if [ "$FAILS" -gt 0 ]; then
    printf '%s: %d of %d checks FAILED\n' "$E2E_NAME" "$FAILS" "$CHECKS"
    exit 1
  fi
  printf '%s: all %d checks passed\n' "$E2E_NAME" "$CHECKS"
  exit 0
}

sql() { cluster_psql "$CLUSTER_DIR" cdp -tAc "$1"; }

# ensure_segment_sdk: @segment/analytics-node installed in test/e2e/sdk/ (npm, on first use).
ensure_segment_sdk() {
  local sdk="$ROOT/test/e2e/sdk"
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then die "node and npm are required (./dev installs them)"; fi
  if [ ! -f "$sdk/node_modules/@segment/analytics-node/package.json" ]; then
    say "installing @segment/analytics-node in $sdk"
    (cd "$sdk" && timeout 180 npm install --no-audit --no-fund --loglevel=error) || die "npm install in $sdk failed"
  fi
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# health_status: the HTTP status of GET /health ("000" when nothing answers).
health_status() { curl -s -m 2 -o /dev/null -w '%{http_code}' "$BASE/health" 2>/dev/null || true; }

# wait_healthy SECONDS: until GET /health answers 200; false after SECONDS.
wait_healthy() {
  local deadline=$(($(now_ms) + ${1:-15} * 1000))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    [ "$(health_status)" = 200 ] && return 0
    sleep 0.2
  done
  return 1
}

# Creates the extension if needed and waits for the HTTP worker to answer.
setup_extension() {
  sql "set client_min_messages = warning; create extension if not exists cdp" >/dev/null || die "create extension cdp failed"
  wait_healthy 20 || die "GET $BASE/health did not answer 200 within 20 s after CREATE EXTENSION (last: $(health_status))"
  pass "GET /health answers 200 after CREATE EXTENSION"
}

# http METHOD PATH [curl args...]: sets STATUS, BODY and HEADERS.
http() {
  local method=$1 path=$2
  shift 2
  : >"$E2E_TMP/body"
  : >"$E2E_TMP/headers"
  STATUS=$(curl -sS -m 15 -o "$E2E_TMP/body" -D "$E2E_TMP/headers" -w '%{http_code}' \
    -X "$method" "$@" "$BASE$path" 2>"$E2E_TMP/curl.err") || STATUS="curl failed ($(tr '\n' ' ' <"$E2E_TMP/curl.err"))"
  BODY=$(cat "$E2E_TMP/body")
  HEADERS=$(tr -d '\r' <"$E2E_TMP/headers")
}

# header NAME: a header of the last response (case-insensitive name).
header() { printf '%s\n' "$HEADERS" | awk -v n="$(echo "$1" | tr '[:upper:]' '[:lower:]')" -F': ' \
  'tolower($1) == n { sub(/^[^:]*: /, ""); print; exit }'; }

# jget JSON PATH...: the values at dotted paths ("messages.0.status"), joined
# by spaces; strings bare, other values as JSON, "<missing>" if absent,
# "<not json>" if the JSON is invalid.
jget() {
  node -e '
    let doc;
    try { doc = JSON.parse(process.argv[1]); } catch { process.stdout.write("<not json>"); process.exit(0); }
    const paths = process.argv.slice(2);
    process.stdout.write((paths.length ? paths : [""]).map((p) => {
      let v = doc;
      for (const k of p.split(".").filter(Boolean)) v = v == null ? undefined : v[k];
      return v === undefined ? "<missing>" : typeof v === "string" ? v : JSON.stringify(v);
    }).join(" "));
  ' "$@"
}

# wait_sql SECONDS QUERY WANT: polls QUERY until it returns WANT; prints the
# last result and fails (returns 1) after SECONDS. For work a worker does in
# the background (the processor, the delivery worker).
wait_sql() {
  local deadline=$(($(now_ms) + $1 * 1000)) got
  while :; do
    got=$(sql "$2" 2>&1)
    [ "$got" == "$3" ] && { printf '%s' "$got"; return 0; }
    [ "$(now_ms)" -ge "$deadline" ] && { printf '%s' "$got"; return 1; }
    sleep 0.1
  done
}
