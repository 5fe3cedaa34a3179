#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2034,SC2317  # JS in single quotes; helpers the sourced sections use
# End-to-end: the built-in destination kinds and transformations
# (docs/connectors/). Real cluster, real processor and delivery workers; the
# tools' APIs are not reachable from CI, so each kind is sent to its contract
# sink (test/e2e/contracts/<kind>.mjs, all served by contracts/server.mjs):
# a local server that checks every request against the API's published
# contract and answers as the API documents. These are contract tests of the
# API shape, not tests against the vendors' servers.
#
# One file per kind, test/e2e/connectors/<kind>.bash, defines test_<kind>;
# transformations.bash defines test_transformations. With arguments, only
# those sections run: `connectors.sh ga4 braze`.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"
# Destinations here subscribe to every event: two runs on one cluster would
# see each other's. Runs wait for each other.
exec 9>"/tmp/cdp-e2e-connectors.lock"
flock 9
N="e2e_${RUN_ID}"  # destination name prefix
U="u-$RUN_ID"      # user id prefix

# lit TEXT: an SQL string literal.
lit() { printf "'%s'" "${1//\'/\'\'}"; }
# sqlq SQL: runs SQL, no output; errors on stderr.
sqlq() { cluster_psql "$CLUSTER_DIR" cdp -tAq -c "$1" >/dev/null; }
# sink_url KIND: the base URL a destination of KIND is created with.
sink_url() { printf 'http://127.0.0.1:%s/%s' "$SINK_PORT" "$1"; }
# sink_state KIND [JS_EXPR]: the sink's state {accepted, requests, violations, mode} as
# JSON, or a JavaScript expression of it as `s` (a string prints bare):
#   sink_state ga4 's.accepted.length'    sink_state braze 's.accepted.map(a => a.name)'
sink_state() {
  curl -s -m 5 "http://127.0.0.1:$SINK_PORT/_state/$1" |
    node -e 'let t = ""; process.stdin.on("data", (c) => (t += c)).on("end", () => {
      const s = JSON.parse(t); const v = eval(process.argv[1]);
      console.log(typeof v === "string" ? v : JSON.stringify(v)); });' "${2:-s}"
}
# sink_control KIND JSON: merged into the kind's mode (null resets it).
sink_control() { curl -s -m 5 -X POST --data "$2" "http://127.0.0.1:$SINK_PORT/_control/$1" >/dev/null; }
sink_reset() { curl -s -m 5 -X POST "http://127.0.0.1:$SINK_PORT/_reset" >/dev/null; }
# create_kind NAME KIND OPTIONS_JSON: a destination of KIND at its sink; sets DEST_ID.
create_kind() {
  DEST_ID=$(sql "select cdp.create_destination($(lit "$1"), $(lit "$(sink_url "$2")"), $(lit "$3")::jsonb)") ||
    die "cdp.create_destination($1, $2, $3) failed"
}
# wait_accepted KIND N [SECONDS]: waits until the sink accepted at least N items; prints the count.
wait_accepted() {
  local deadline=$(($(now_ms) + ${3:-20} * 1000)) got
  while :; do
    got=$(sink_state "$1" 's.accepted.length')
    [ "${got:-0}" -ge "$2" ] && { echo "$got"; return 0; }
    [ "$(now_ms)" -ge "$deadline" ] && { echo "${got:-0}"; return 1; }
    sleep 0.2
  done
}
# wait_state KIND JS_EXPR WANT [SECONDS]: waits until sink_state KIND JS_EXPR prints WANT; prints it.
wait_state() {
  local deadline=$(($(now_ms) + ${4:-20} * 1000)) got
  while :; do
    got=$(sink_state "$1" "$2")
    [ "$got" == "$3" ] && { echo "$got"; return 0; }
    [ "$(now_ms)" -ge "$deadline" ] && { echo "$got"; return 1; }
    sleep 0.2
  done
}
# wait_settled NAME [SECONDS]: waits until the destination's queue is empty.
wait_settled() {
  wait_sql "${2:-30}" "select count(*) from cdp.deliveries q join cdp.destinations d using (destination_id)
                       where d.name = $(lit "$1")" 0 >/dev/null
}
# dead_reasons NAME: the dead letters' responses, one per line, in id order.
dead_reasons() {
  sql "select response from cdp.dead_letters l join cdp.destinations d using (destination_id)
       where d.name = $(lit "$1") order by l.id"
}
# no_violations KIND: passes when the sink saw no request that broke the contract.
no_violations() {
  local v
  v=$(sink_state "$1" 's.violations')
  check_eq "$1: no request broke the published contract" "$v" "[]"
}

setup_extension
SINK_PORT_FILE="$E2E_TMP/sink_port"
node "$ROOT/test/e2e/contracts/server.mjs" "$SINK_PORT_FILE" &
SINK_PID=$!
# What the sections make is named "$N..." and goes when the script ends, so
# the scripts that run after it see none of it (profile_api.sh lists segments).
E2E_CLEANUP+=("kill $SINK_PID 2>/dev/null"
  "sql \"select cdp.drop_destination(name) from cdp.destinations where name like '$N%'\" >/dev/null 2>&1"
  "sql \"select cdp.drop_segment(name) from cdp.segments where name like '$N%'\" >/dev/null 2>&1")
for _ in $(seq 50); do [ -s "$SINK_PORT_FILE" ] && break; sleep 0.1; done
SINK_PORT=$(cat "$SINK_PORT_FILE")
[ -n "$SINK_PORT" ] || die "the contract sinks did not start"

SECTIONS=("$@")
[ ${#SECTIONS[@]} -gt 0 ] || SECTIONS=(segment ga4 meta_capi mixpanel amplitude braze transformations)
for s in "${SECTIONS[@]}"; do
  # shellcheck source=/dev/null
  source "$ROOT/test/e2e/connectors/$s.bash"
  section "$s"
  # Each section starts with none of this run's destinations: every one of
  # them takes all events, and would take the next section's too.
  sql "select cdp.drop_destination(name) from cdp.destinations where name like '$N%'" >/dev/null
  sink_reset
  "test_$s"
done
finish
