#!/usr/bin/env bash
# Delivery benchmarks (issue 6), against the real HTTP sink (test/e2e/sink.mjs,
# Node, answering at once; it records every request to a file):
#  1. Deliveries per second: COUNT deliveries queued for COUNT different
#     profiles, one request each, then with batches of 100. Target: >= 5k/s.
#  2. Added latency, queue commit -> sink receipt, at RATE events/s through
#     the processor (pgbench, 10 events per cdp.ingest): the processor's batch
#     commit (commit timestamp of the event's cdp.event_profiles row, written
#     in the same transaction as its delivery row) to the sink's clock on
#     receipt. Target: p99 < 50 ms at 1k/s.
#
# A row is failed (met NO, and the script exits 1) when a delivery is missing:
# the deliveries/s count only the messageIds the sink answered 200, and all
# COUNT must be answered, none dead-lettered, within a deadline; the latency
# counts every event sent, waits (with a deadline) until each has reached the
# sink, and needs the achieved rate to be at least 90% of RATE.
#
# Usage: bench/delivery.sh [COUNT] [RATE]   (defaults 50000 and 1000)
# Environment: CDP_DELIVERY_CONCURRENCY (cdp.delivery_concurrency),
#   CDP_BENCH_SINK_CONTROL (a JSON object POSTed to the sink's /_control
#   before each throughput run, e.g. {"mode": "fail", "status": 400, "times": 5}:
#   to see the benchmark fail when deliveries are lost).
# Needs: make install done (./dev bench does it), node.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/test/lib.sh"
source "$ROOT/bench/lib.sh"
COUNT=${1:-50000}
RATE=${2:-1000}

DIR=""
SINK_PID=""
cleanup() {
  if [ -n "$SINK_PID" ]; then kill "$SINK_PID" 2>/dev/null || true; fi
  bench_cluster_down "$DIR"
}
trap cleanup EXIT
die() { printf 'bench/delivery.sh: %s\n' "$*" >&2; exit 1; }
CDP_BENCH_PROCESSOR=on bench_cluster_up DIR "track_commit_timestamp = on" ${CDP_DELIVERY_CONCURRENCY:+"cdp.delivery_concurrency = $CDP_DELIVERY_CONCURRENCY"}
q() { cluster_psql "$DIR" cdp -tA "$@"; }
now_ms() { date +%s%3N; }

SINK_PORT=$(free_port 19500)
SINK_URL="http://127.0.0.1:$SINK_PORT"
node "$ROOT/test/e2e/sink.mjs" --port "$SINK_PORT" --log "$DIR/sink.log" >"$DIR/sink.out" 2>&1 &
SINK_PID=$!
deadline=$(($(now_ms) + 10000))
until grep -q '^sink listening on ' "$DIR/sink.out" 2>/dev/null; do
  kill -0 "$SINK_PID" 2>/dev/null || die "the sink exited: $(cat "$DIR/sink.out")"
  [ "$(now_ms)" -lt "$deadline" ] || die "the sink did not start listening within 10 s: $(cat "$DIR/sink.out")"
  sleep 0.1
done
# sink_control JSON: POST /_control, which must answer 200.
sink_control() {
  curl -fsS -m 5 -o /dev/null -H 'Content-Type: application/json' --data-binary "$1" "$SINK_URL/_control" ||
    die "the sink's /_control refused $1"
}

# receipts PREFIX: "messageId,time" of the first 200 the sink answered for
# each messageId starting with PREFIX (from its log, batches included).
receipts() {
  python3 - "$DIR/sink.log" "$1" <<'EOF'
import json, sys
seen = set()
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("status") != 200:
        continue
    j = e.get("json") or {}
    for m in (j["batch"] if isinstance(j.get("batch"), list) else [j]):
        i = m.get("messageId") if isinstance(m, dict) else None
        if isinstance(i, str) and i.startswith(sys.argv[2]) and i not in seen:
            seen.add(i)
            print(f"{i},{e['at']}")
EOF
}
# acked PREFIX: how many distinct messageIds starting with PREFIX the sink answered 200.
acked() { receipts "$1" | wc -l; }

# deliver_all MAX_EVENTS: COUNT deliveries queued while paused, then sets
# RATE_OUT (deliveries the sink answered 200, per second from the resume until
# the queue is empty), OK_OUT (yes, or NO with WHY_OUT).
deliver_all() {
  local max=$1 t0 t1 left got dead limit
  q -c "select cdp.drop_destination(name) from cdp.destinations" >/dev/null
  q -c "select cdp.create_destination('sink', '$SINK_URL/in',
          '{\"secret\": \"0123456789abcdef0123\", \"batch\": {\"max_events\": $max, \"max_wait_ms\": 0}}')" >/dev/null
  q -c "select cdp.pause_destination('sink')" >/dev/null
  q -c "insert into cdp.deliveries (destination_id, profile_id, kind, payload)
        select d.destination_id, i, 'event', jsonb_build_object('type', 'track', 'event', 'Bench',
               'userId', 'u' || i, 'messageId', 'bench-' || i, 'properties', jsonb_build_object('n', i))
          from cdp.destinations d, generate_series(1, $COUNT) i" >/dev/null
  : >"$DIR/sink.log"
  sink_control '{"reset": true, "mode": "ok"}'
  [ -z "${CDP_BENCH_SINK_CONTROL:-}" ] || sink_control "$CDP_BENCH_SINK_CONTROL"
  # A deadline far above the target's time (COUNT / 5000 s): a slow run is
  # still measured, a stuck one fails.
  limit=$((60000 + COUNT))
  t0=$(now_ms)
  q -c "select cdp.resume_destination('sink')" >/dev/null
  while :; do
    left=$(q -c "select count(*) from cdp.deliveries")
    [ "$left" != 0 ] || break
    [ $(($(now_ms) - t0)) -lt "$limit" ] || break
    sleep 0.05
  done
  t1=$(now_ms)
  dead=$(q -c "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id) where d.name = 'sink'")
  got=$(acked bench-)
  RATE_OUT=$(awk -v n="$got" -v ms="$((t1 - t0))" 'BEGIN { printf "%.0f", n * 1000 / (ms > 0 ? ms : 1) }')
  OK_OUT=yes WHY_OUT=""
  if [ "$left" != 0 ] || [ "$got" != "$COUNT" ] || [ "$dead" != 0 ]; then
    OK_OUT=NO
    WHY_OUT="$got of $COUNT answered 200, $dead dead-lettered, $left still queued after $((t1 - t0)) ms"
  fi
}
log "delivery: $COUNT deliveries, one per request"
deliver_all 1
single=$RATE_OUT single_ok=$OK_OUT single_why=$WHY_OUT
single_requests=$(wc -l <"$DIR/sink.log")
# Resent requests (at least once, with the same Idempotency-Key) show as repeated messageIds.
dups=$(python3 - "$DIR/sink.log" <<'EOF'
import collections, json, sys
seen, keys = collections.Counter(), collections.defaultdict(set)
for line in open(sys.argv[1]):
    e = json.loads(line)
    m = (e.get("json") or {}).get("messageId")
    seen[m] += 1
    keys[m].add(e["headers"].get("idempotency-key"))
d = [m for m, n in seen.items() if n > 1]
same = all(len(keys[m]) == 1 for m in d)
print(f"{len(d)} resent" + ("" if not d else (", same Idempotency-Key" if same else ", WITH ANOTHER KEY")))
EOF
)
grep -E "cdp delivery" "$DIR/server.log" | tail -3 >&2 || true
log "delivery: $COUNT deliveries, batches of 100"
deliver_all 100
batched=$RATE_OUT batched_ok=$OK_OUT batched_why=$WHY_OUT

# ---- 2. latency through the processor ----
log "delivery: latency at $RATE events/s for 20 s, processor and delivery workers on"
q -c "select cdp.drop_destination(name) from cdp.destinations" >/dev/null
q -c "select cdp.create_destination('sink', '$SINK_URL/in',
        '{\"secret\": \"0123456789abcdef0123\", \"subscribe\": {\"events\": true}}')" >/dev/null
: >"$DIR/sink.log"
sink_control '{"reset": true, "mode": "ok"}'
cat >"$DIR/ingest.sql" <<'EOF'
\set u random(1, 1000000000)
select count(*) from cdp.ingest(jsonb_build_object('batch', (select jsonb_agg(jsonb_build_object('type', 'track',
  'userId', 'lat-' || (:u::int8 * 10 + g), 'event', 'Order Completed', 'messageId', 'lat-' || (:u::int8 * 10 + g)))
  from generate_series(1, 10) g)));
EOF
chmod 644 "$DIR/ingest.sql"
bench_with_pg "$DIR" "$PG_BIN/pgbench" -n -c 2 -j 2 -R "$((RATE / 10))" -T 20 -f "$DIR/ingest.sql" cdp >"$DIR/pgbench.out" 2>&1 ||
  die "pgbench failed: $(tail -20 "$DIR/pgbench.out")"
achieved=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' "$DIR/pgbench.out" | head -1 | awk '{ printf "%.0f", $1 * 10 }')
[ -n "$achieved" ] || die "could not read pgbench's rate: $(cat "$DIR/pgbench.out")"
# Every event stored must reach the sink (counted in the table: two random
# users may collide); wait for the slowest, with a deadline.
sent=$(q -c "select count(*) from cdp.events where message_id like 'lat-%'")
deadline=$(($(now_ms) + 60000))
while [ "$(acked lat-)" -lt "$sent" ] && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.5; done
# The sink's receipts, as (messageId, time) rows.
receipts lat- >"$DIR/received.csv"
chmod 644 "$DIR/received.csv"
q -c "create temp table received (message_id text, at timestamptz)" \
  -c "\copy received from '$DIR/received.csv' with (format csv)" \
  -c "select count(*), round(percentile_cont(0.5) within group (order by ms)::numeric, 1),
             round(percentile_cont(0.99) within group (order by ms)::numeric, 1)
        from (select extract(epoch from (r.at - pg_xact_commit_timestamp(ep.xmin))) * 1000 as ms
                from received r join cdp.events e on e.message_id = r.message_id
                join cdp.event_profiles ep on ep.event_id = e.id
               where r.message_id like 'lat-%') l" >"$DIR/latency.out"
read -r lat_n lat_p50 lat_p99 < <(tail -1 "$DIR/latency.out" | tr '|' ' ')
lat_ok=yes lat_why=""
if [ "$lat_n" != "$sent" ]; then
  lat_ok=NO lat_why="$((sent - lat_n)) of $sent events sent not at the sink within 60 s"
fi
if awk -v a="$achieved" -v r="$RATE" 'BEGIN { exit !(a < 0.9 * r) }'; then
  lat_ok=NO lat_why="${lat_why:+$lat_why, }achieved $achieved events/s, < 90% of the $RATE asked"
fi

failed_note() { [ "$1" = yes ] || printf ' FAILED (%s)' "$2"; }
cat <<EOF

delivery benchmark ($COUNT deliveries to a local sink that answers at once)
  one delivery per request     ${single} deliveries/s  ($single_requests requests, $dups)  (target >= 5000)$(failed_note "$single_ok" "$single_why")
  batches of 100               ${batched} deliveries/s$(failed_note "$batched_ok" "$batched_why")
  latency at ${achieved} events/s (asked $RATE)  n=${lat_n} of $sent  p50 ${lat_p50} ms  p99 ${lat_p99} ms  (queue commit -> sink receipt; target p99 < 50 ms)$(failed_note "$lat_ok" "$lat_why")
EOF
bench_summary "deliveries/s, 1 per request" "${single}/s$(failed_note "$single_ok" "$single_why")" "-" "-" ">= 5000/s" \
  "$(awk -v r="$single" -v ok="$single_ok" 'BEGIN { print (r >= 5000 && ok == "yes") ? "yes" : "NO" }')"
bench_summary "deliveries/s, batches of 100" "${batched}/s$(failed_note "$batched_ok" "$batched_why")" "-" "-" "-" \
  "$([ "$batched_ok" = yes ] && echo - || echo NO)"
bench_summary "queue commit -> sink, ${achieved} of $RATE ev/s" "p99 ${lat_p99} ms (p50 ${lat_p50})$(failed_note "$lat_ok" "$lat_why")" \
  "-" "-" "p99 < 50 ms, >= 90% of the rate" \
  "$(awk -v p="${lat_p99:-999}" -v ok="$lat_ok" 'BEGIN { print (p < 50 && ok == "yes") ? "yes" : "NO" }')"
[ "$single_ok" = yes ] && [ "$batched_ok" = yes ] && [ "$lat_ok" = yes ]
