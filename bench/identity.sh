#!/usr/bin/env bash
# Identity benchmarks (issue 4), each side by side with its baseline, same run:
#  1. cdp.rebuild_identities() over a graph of 1M identifiers and 700k edges
#     (300k people with 3 or 4 identifiers each), versus ../shared/peers/sql_label_propagation.sql (iterative label
#     propagation in plain SQL) over the same edges. Both must find the same
#     number of connected components. Target: >= 50x faster.
#  2. Identity graph memory per identifier, as the resolver measures it.
#     Target: <= 64 bytes.
#  3. Processor throughput: N generated Segment events (users, anonymous ids,
#     emails, identify traits) ingested with the processor paused, then one
#     cdp.process_pending(). Target: >= 20k events/s.
#
# Usage: bench/identity.sh [EDGES] [EVENTS]   (defaults 700000 and 200000)
# The graph has EDGES * 10/7 identifiers (1M for 700k edges).
# Needs: make install done, build/cdp-eventgen built (./dev bench does both).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/test/lib.sh"
source "$ROOT/bench/lib.sh"
EDGES=${1:-700000}
EVENTS=${2:-200000}
PEER="$ROOT/../shared/peers/sql_label_propagation.sql"
[ -f "$PEER" ] || { echo "missing $PEER (../shared/peers beside the repo)" >&2; exit 1; }

DIR=""
trap 'bench_cluster_down "$DIR"' EXIT
# Guard rails off: a random graph this dense has a giant component, and the
# peer knows no rules; the comparison is about the graph algorithm.
bench_cluster_up DIR "cdp.max_identifiers_per_profile = 10000000" "cdp.max_merges_per_profile = 1000000" \
  "work_mem = 256MB" "maintenance_work_mem = 512MB"
q() { cluster_psql "$DIR" cdp -tA "$@"; }
now_ms() { date +%s%3N; }

# ---- 1. the graph: people with 3 or 4 identifiers each, every identifier
# linked to its person's first one (1M identifiers -> 300k people, 700k edges),
# names hashed so that no order helps either side ----
IDS=$((EDGES * 10 / 7))
log "identity: generating $IDS identifiers, $EDGES edges"
q -c "
  create table nodes as
  select i, i * 3 / 10 as person, 'n' || md5(i::text) as name from generate_series(0, $IDS - 1) i;
  create table edges as
  select n.name as a, f.name as b
    from nodes n join (select distinct on (person) person, name from nodes order by person, i) f using (person)
   where n.name <> f.name;
  analyze edges;"
# The same edges as events: one identifier type 'node', unlimited, read from
# anonymousId and properties.b, so each event joins its two nodes.
q -c "
  delete from cdp.identifier_types;
  insert into cdp.identifier_types (type, paths, priority) values ('node', '{anonymousId,properties.b}', 1);
  insert into cdp.events (received_at, source_id, message_id, type, event, anonymous_id, \"timestamp\", properties)
  select now(), 1, 'edge-' || row_number() over (), 'track', 'Edge', a, now(), jsonb_build_object('b', b) from edges;
  update cdp.processor_state set paused = true;" -c "vacuum analyze cdp.events"
identifiers=$(q -c "select count(*) from (select a from edges union select b from edges) n")

log "identity: peer label propagation"
t0=$(now_ms)
peer_out=$(cluster_psql "$DIR" cdp -tA -f "$PEER" 2>&1)
t1=$(now_ms)
peer_ms=$((t1 - t0))
peer_components=$(printf '%s\n' "$peer_out" | grep -E '^[0-9]+$' | tail -1)

log "identity: cdp.rebuild_identities()"
t0=$(now_ms)
rebuild_out=$(cluster_psql "$DIR" cdp -tA -c "select cdp.rebuild_identities()" 2>&1)
t1=$(now_ms)
cdp_ms=$((t1 - t0))
cdp_components=$(q -c "select count(distinct profile_id) from cdp.identities")
graph_line=$(printf '%s\n' "$rebuild_out" | grep -o 'identity graph.*' || true)
bytes_each=$(printf '%s\n' "$graph_line" | sed -nE 's/.*: ([0-9.]+) bytes of structure.*/\1/p')
text_each=$(printf '%s\n' "$graph_line" | sed -nE 's/.* \+ ([0-9.]+) bytes of identifier text.*/\1/p')

# ---- 3. processor throughput on realistic events ----
log "identity: processor throughput over $EVENTS generated events"
q -c "truncate cdp.events, cdp.message_ids, cdp.identities, cdp.profiles, cdp.profile_map, cdp.event_profiles,
        cdp.profile_merges, cdp.identity_refusals, cdp.accounts, cdp.profile_accounts;
      delete from cdp.identifier_types;
      update cdp.processor_state set cursor_txid = '0', cursor_event = 0;" >/dev/null
cluster_psql "$DIR" cdp -c "drop extension cdp" -c "create extension cdp" -c "update cdp.processor_state set paused = true" >/dev/null
"$ROOT/build/cdp-eventgen" --count "$EVENTS" --batch 500 --users $((EVENTS / 20)) >"$DIR/events.jsonl"
while IFS= read -r line; do
  printf "select count(*) from cdp.ingest(\$j\$%s\$j\$);\n" "$line"
done <"$DIR/events.jsonl" | cluster_psql "$DIR" cdp -tA >/dev/null
q -c "vacuum analyze cdp.events" >/dev/null
t0=$(now_ms)
processed=$(q -c "select cdp.process_pending()")
t1=$(now_ms)
proc_ms=$((t1 - t0))
profiles=$(q -c "select count(*) from cdp.profiles")

speedup=$(awk -v p="$peer_ms" -v c="$cdp_ms" 'BEGIN { printf "%.1f", p / (c > 0 ? c : 1) }')
rate=$(awk -v n="$processed" -v ms="$proc_ms" 'BEGIN { printf "%.0f", n * 1000 / (ms > 0 ? ms : 1) }')
same=$([ "$peer_components" = "$cdp_components" ] && echo yes || echo NO)
cat <<EOF

identity benchmark: $EDGES edges, $identifiers identifiers
                         cdp                     baseline (label propagation, SQL)
  graph rebuild          ${cdp_ms} ms              ${peer_ms} ms
  components             ${cdp_components}         ${peer_components}   (same: $same)
  speedup                ${speedup}x  (target >= 50x)
  graph memory           ${bytes_each:-?} bytes of structure + ${text_each:-?} bytes of identifier text, per identifier  (target <= 64)
processor: $processed events -> $profiles profiles in ${proc_ms} ms = ${rate} events/s  (target >= 20000)
EOF
bench_summary "identity rebuild, ${EDGES} edges" "${cdp_ms} ms" "${peer_ms} ms" "${speedup}x" ">= 50x" \
  "$(awk -v s="$speedup" 'BEGIN { print (s >= 50) ? "yes" : "no" }')"
bench_summary "graph memory per identifier" "${bytes_each:-?} B + ${text_each:-?} B text" "-" "-" "<= 64 B" \
  "$(awk -v b="${bytes_each:-999}" 'BEGIN { print (b <= 64) ? "yes" : "no" }')"
bench_summary "processor throughput" "${rate} ev/s" "-" "-" ">= 20000/s" \
  "$(awk -v r="$rate" 'BEGIN { print (r >= 20000) ? "yes" : "no" }')"
[ "$same" = yes ]
