#!/usr/bin/env bash
# Built-in destination kinds (issue 18): deliveries per second to the local
# contract sink of the segment kind (test/e2e/contracts/, the same Node server
# for every row), beside the plain webhook in the same run:
#   webhook, batches of 100            the generic webhook, {"batch": [...]} envelope
#   segment, batches of 100            kind "segment": mapped, Basic auth, /v1/batch
#   segment, batches of 100 + transform  the same with a SQL transformation on every event
#   segment, its own batches           up to the claim size (1000 rows a round)
# COUNT deliveries for COUNT different profiles are queued while the
# destination is paused, then it is resumed and timed until the queue is
# empty; every one must be taken by the sink and none dead-lettered.
# Target: the transformation costs at most 30% (>= 0.70 of the rate without).
#
# Usage: bench/connectors.sh [COUNT]   (default 50000)
# Needs: make install done (./dev bench does it), node.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/test/lib.sh"
source "$ROOT/bench/lib.sh"
COUNT=${1:-50000}

DIR=""
SINK_PID=""
cleanup() {
  if [ -n "$SINK_PID" ]; then kill "$SINK_PID" 2>/dev/null || true; fi
  bench_cluster_down "$DIR"
}
trap cleanup EXIT
die() { printf 'bench/connectors.sh: %s\n' "$*" >&2; exit 1; }
bench_cluster_up DIR
q() { cluster_psql "$DIR" cdp -tA "$@"; }
now_ms() { date +%s%3N; }

node "$ROOT/test/e2e/contracts/server.mjs" "$DIR/sink_port" >"$DIR/sink.out" 2>&1 &
SINK_PID=$!
for _ in $(seq 100); do [ -s "$DIR/sink_port" ] && break; sleep 0.1; done
[ -s "$DIR/sink_port" ] || die "the contract sinks did not start: $(cat "$DIR/sink.out")"
SINK="http://127.0.0.1:$(cat "$DIR/sink_port")"

# The transformation: a typical reshape (rename a property, add one, drop
# internal ones), as a SQL function the planner can inline.
q -c "create function public.bench_reshape(e jsonb) returns jsonb language sql immutable as \$\$
  select e || jsonb_build_object('properties',
    ((e->'properties') - 'internal') || jsonb_build_object('amount', e->'properties'->'n', 'source', 'cdp'))
\$\$" >/dev/null

# run NAME KIND OPTIONS: sets RATE_OUT (taken per second), OK_OUT, WHY_OUT.
run() {
  local name=$1 kind=$2 options=$3 t0 t1 left got dead limit
  q -c "select cdp.drop_destination(name) from cdp.destinations" >/dev/null
  curl -fsS -m 5 -X POST "$SINK/_reset" >/dev/null
  q -c "select cdp.create_destination('$name', '$SINK/$kind', '$options')" >/dev/null
  q -c "select cdp.pause_destination('$name')" >/dev/null
  q -c "insert into cdp.deliveries (destination_id, profile_id, kind, payload)
        select d.destination_id, i, 'event', jsonb_build_object('type', 'track', 'event', 'Bench',
               'userId', 'u' || i, 'messageId', 'bench-' || i, 'timestamp', now(),
               'properties', jsonb_build_object('n', i, 'internal', 'x'))
          from cdp.destinations d, generate_series(1, $COUNT) i" >/dev/null
  limit=$((60000 + COUNT))
  t0=$(now_ms)
  q -c "select cdp.resume_destination('$name')" >/dev/null
  while :; do
    left=$(q -c "select count(*) from cdp.deliveries")
    [ "$left" != 0 ] || break
    [ $(($(now_ms) - t0)) -lt "$limit" ] || break
    sleep 0.05
  done
  t1=$(now_ms)
  dead=$(q -c "select count(*) from cdp.dead_letters")
  got=$(curl -fsS -m 5 "$SINK/_count/$kind" | sed -E 's/.*"accepted":([0-9]+).*/\1/')
  RATE_OUT=$(awk -v n="$got" -v ms="$((t1 - t0))" 'BEGIN { printf "%.0f", n * 1000 / (ms > 0 ? ms : 1) }')
  OK_OUT=yes WHY_OUT=""
  if [ "$left" != 0 ] || [ "$got" != "$COUNT" ] || [ "$dead" != 0 ]; then
    OK_OUT=NO WHY_OUT="$got of $COUNT taken, $dead dead-lettered, $left still queued after $((t1 - t0)) ms"
  fi
  log "connectors: $name: $RATE_OUT deliveries/s $WHY_OUT"
}

SEG='"kind": "segment", "config": {"write_key": "bench"}'
run webhook webhook '{"batch": {"max_events": 100}}'
web=$RATE_OUT web_ok=$OK_OUT web_why=$WHY_OUT
run segment segment "{$SEG, \"batch\": {\"max_events\": 100}}"
seg=$RATE_OUT seg_ok=$OK_OUT seg_why=$WHY_OUT
run segment_tf segment "{$SEG, \"batch\": {\"max_events\": 100}, \"transform\": \"public.bench_reshape\"}"
tf=$RATE_OUT tf_ok=$OK_OUT tf_why=$WHY_OUT
run segment_own segment "{$SEG}"
own=$RATE_OUT own_ok=$OK_OUT own_why=$WHY_OUT

failed_note() { [ "$1" = yes ] || printf ' FAILED (%s)' "$2"; }
cost=$(ratio "$tf" "$seg")
met=$(awk -v r="$cost" -v a="$tf_ok" -v b="$seg_ok" 'BEGIN { print (r >= 0.70 && a == "yes" && b == "yes") ? "yes" : "NO" }')
cat <<EOF

connectors benchmark ($COUNT deliveries, $COUNT profiles, local contract sink)
  webhook, batches of 100               ${web} deliveries/s$(failed_note "$web_ok" "$web_why")
  segment, batches of 100               ${seg} deliveries/s ($(ratio "$seg" "$web") of the webhook)$(failed_note "$seg_ok" "$seg_why")
  segment, batches of 100 + transform   ${tf} deliveries/s ($cost of segment without; target >= 0.70)$(failed_note "$tf_ok" "$tf_why")
  segment, its own batches              ${own} deliveries/s$(failed_note "$own_ok" "$own_why")
EOF
bench_summary "segment kind, batches of 100" "${seg}/s$(failed_note "$seg_ok" "$seg_why")" "${web}/s webhook" "$(ratio "$seg" "$web")" "-" \
  "$([ "$seg_ok" = yes ] && echo - || echo NO)"
bench_summary "segment kind + SQL transform" "${tf}/s$(failed_note "$tf_ok" "$tf_why")" "${seg}/s without" "$cost" ">= 0.70" "$met"
[ "$met" = yes ] && [ "$web_ok" = yes ] && [ "$own_ok" = yes ]
