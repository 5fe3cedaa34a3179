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
# Usage: bench/delivery.sh [COUNT] [RATE]   (defaults 50000 and 1000)
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
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null || true
  bench_cluster_down "$DIR"
}
trap cleanup EXIT
CDP_BENCH_PROCESSOR=on bench_cluster_up DIR "track_commit_timestamp = on" ${CDP_DELIVERY_CONCURRENCY:+"cdp.delivery_concurrency = $CDP_DELIVERY_CONCURRENCY"}
q() { cluster_psql "$DIR" cdp -tA "$@"; }
now_ms() { date +%s%3N; }

SINK_PORT=$(free_port 19500)
node "$ROOT/test/e2e/sink.mjs" --port "$SINK_PORT" --log "$DIR/sink.log" >"$DIR/sink.out" 2>&1 &
SINK_PID=$!
for _ in $(seq 50); do grep -q listening "$DIR/sink.out" 2>/dev/null && break; sleep 0.1; done

# deliver_all MAX_EVENTS -> deliveries/s for COUNT queued deliveries
deliver_all() {
  local max=$1 t0 t1 left
  q -c "select cdp.drop_destination(name) from cdp.destinations" >/dev/null
  q -c "select cdp.create_destination('sink', 'http://127.0.0.1:$SINK_PORT/in',
          '{\"secret\": \"0123456789abcdef0123\", \"batch\": {\"max_events\": $max, \"max_wait_ms\": 0}}')" >/dev/null
  q -c "select cdp.pause_destination('sink')" >/dev/null
  q -c "insert into cdp.deliveries (destination_id, profile_id, kind, payload)
        select d.destination_id, i, 'event', jsonb_build_object('type', 'track', 'event', 'Bench',
               'userId', 'u' || i, 'messageId', 'bench-' || i, 'properties', jsonb_build_object('n', i))
          from cdp.destinations d, generate_series(1, $COUNT) i" >/dev/null
  : >"$DIR/sink.log"
  t0=$(now_ms)
  q -c "select cdp.resume_destination('sink')" >/dev/null
  while :; do
    left=$(q -c "select count(*) from cdp.deliveries")
    [ "$left" = 0 ] && break
    sleep 0.05
  done
  t1=$(now_ms)
  awk -v n="$COUNT" -v ms="$((t1 - t0))" 'BEGIN { printf "%.0f", n * 1000 / (ms > 0 ? ms : 1) }'
}
log "delivery: $COUNT deliveries, one per request"
single=$(deliver_all 1)
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
batched=$(deliver_all 100)

# ---- 2. latency through the processor ----
log "delivery: latency at $RATE events/s for 20 s, processor and delivery workers on"
q -c "select cdp.drop_destination(name) from cdp.destinations" >/dev/null
q -c "select cdp.create_destination('sink', 'http://127.0.0.1:$SINK_PORT/in',
        '{\"secret\": \"0123456789abcdef0123\", \"subscribe\": {\"events\": true}}')" >/dev/null
: >"$DIR/sink.log"
cat >"$DIR/ingest.sql" <<'EOF'
\set u random(1, 1000000000)
select count(*) from cdp.ingest(jsonb_build_object('batch', (select jsonb_agg(jsonb_build_object('type', 'track',
  'userId', 'lat-' || (:u::int8 * 10 + g), 'event', 'Order Completed', 'messageId', 'lat-' || (:u::int8 * 10 + g)))
  from generate_series(1, 10) g)));
EOF
chmod 644 "$DIR/ingest.sql"
bench_with_pg "$DIR" "$PG_BIN/pgbench" -n -c 2 -j 2 -R "$((RATE / 10))" -T 20 -f "$DIR/ingest.sql" cdp >"$DIR/pgbench.out" 2>&1 || true
sleep 3
achieved=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' "$DIR/pgbench.out" | head -1 | awk '{ printf "%.0f", $1 * 10 }')
# The sink's receipts, as (messageId, time) rows.
python3 - "$DIR/sink.log" >"$DIR/received.csv" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    j = e.get("json") or {}
    for m in j.get("batch", [j]):
        if isinstance(m, dict) and m.get("messageId"):
            print(f'{m["messageId"]},{e["at"]}')
EOF
chmod 644 "$DIR/received.csv"
q -c "create temp table received (message_id text, at timestamptz)" \
  -c "\copy received from '$DIR/received.csv' with (format csv)" \
  -c "select count(*), round(percentile_cont(0.5) within group (order by ms)::numeric, 1),
             round(percentile_cont(0.99) within group (order by ms)::numeric, 1)
        from (select extract(epoch from (r.at - pg_xact_commit_timestamp(ep.xmin))) * 1000 as ms
                from received r join cdp.events e on e.message_id = r.message_id
                join cdp.event_profiles ep on ep.event_id = e.id) l" >"$DIR/latency.out"
read -r lat_n lat_p50 lat_p99 < <(tail -1 "$DIR/latency.out" | tr '|' ' ')

cat <<EOF

delivery benchmark ($COUNT deliveries to a local sink that answers at once)
  one delivery per request     ${single} deliveries/s  ($single_requests requests, $dups)  (target >= 5000)
  batches of 100               ${batched} deliveries/s
  latency at ${achieved:-?} events/s   n=${lat_n} p50 ${lat_p50} ms  p99 ${lat_p99} ms  (queue commit -> sink receipt; target p99 < 50 ms)
EOF
bench_summary "deliveries/s, 1 per request" "${single}/s" "-" "-" ">= 5000/s" \
  "$(awk -v r="$single" 'BEGIN { print (r >= 5000) ? "yes" : "no" }')"
bench_summary "deliveries/s, batches of 100" "${batched}/s" "-" "-" "-" "-"
bench_summary "queue commit -> sink, ${achieved:-?} ev/s" "p99 ${lat_p99} ms (p50 ${lat_p50})" "-" "-" "p99 < 50 ms" \
  "$(awk -v p="${lat_p99:-999}" 'BEGIN { print (p < 50) ? "yes" : "no" }')"
