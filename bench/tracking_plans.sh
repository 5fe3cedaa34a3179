#!/usr/bin/env bash
# Tracking plans benchmark (issue 19): what checking every message against a
# 20-event plan costs, on a throwaway cluster this script creates and removes.
# Same run, same data, alternating so that the machine's drift falls on both:
#
#   a) POST /v1/batch, 100 events per request (bench/batch.lua over
#      build/cdp-eventgen bodies, wrk -t1 -c32, cdp.http_workers = 1): rows/s
#      stored without a plan, with one, without, with.
#   b) SQL cdp.ingest, 100-event batches, one connection (bench/ingest.sh,
#      its cdp.ingest phase): the same four runs.
#
# The plan: cdp.propose_tracking_plan over the generator's own traffic (its 6
# events and identify traits, with the property types seen) plus 14 more
# planned events to make 20, attached with the default options (violations
# kept and recorded). After each run with the plan, a probe with an unplanned
# event must be recorded as a violation (the plan was in force).
# Target: with the plan, >= 0.80 of the rate without it (at most 20% cost).
#
# Usage: bench/tracking_plans.sh   (after make install and cmake --build build)
# Environment: CDP_BENCH_DURATION (seconds per wrk run, default 15),
#   CDP_BENCH_SUMMARY (bench/run), CDP_BENCH_VERBOSE=1.
# shellcheck source-path=SCRIPTDIR/..
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=test/lib.sh
source "$ROOT/test/lib.sh"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION=${CDP_BENCH_DURATION:-15}
WARMUP=2
BATCH=100
BATCH_CONNECTIONS=32
SQL_COUNT=100000

die() { printf 'bench/tracking_plans.sh: %s\n' "$*" >&2; exit 1; }
for tool in wrk curl psql; do
  command -v "$tool" >/dev/null || die "$tool is required (./dev deps installs it)"
done
[ -x "$ROOT/build/cdp-eventgen" ] || die "build/cdp-eventgen is missing: run cmake --build build (or ./dev bench)"

START=$(date +%s)
WORK=$(mktemp -d /tmp/cdp-bench-plans.XXXXXX)
chmod 755 "$WORK"
CLUSTER=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  bench_teardown "$rc" bench/tracking_plans.sh "$CLUSTER" "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sql() { cluster_psql "$CLUSTER" cdp -tA "$@"; }
reset_tables() {
  sleep 1  # requests of a finished wrk may still be committing
  sql -c "truncate cdp.events, cdp.message_ids, cdp.quarantine, cdp.violations" -c "checkpoint" >/dev/null
}
mean() { echo $((($1 + $2) / 2)); }

echo "Tracking plan benchmark (issue 19): $(nproc) cores shared by wrk and Postgres"
log "setting up a throwaway cluster"
bench_cluster_up CLUSTER
TARGET_URL="http://127.0.0.1:$(cat "$CLUSTER/http_port")"
sql -c "insert into cdp.sources(name, write_key_hash, write_key_hint) values ('bench', sha256('wk'::bytea), 'wk')" >/dev/null
deadline=$(($(date +%s) + 30))
until curl -fsS -o /dev/null "$TARGET_URL/health" 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || die "cdp's HTTP worker did not come up on $TARGET_URL"
  sleep 0.2
done

log "generating /v1/batch bodies ($BATCH events each) and the plan"
"$ROOT/build/cdp-eventgen" --seed 42 --count 30000 --batch "$BATCH" >"$WORK/bodies.jsonl"
# The plan is proposed from 5,000 of the generator's events, sent first.
head -50 "$WORK/bodies.jsonl" | while IFS= read -r body; do
  code=$(printf '%s' "$body" | curl -s -o /dev/null -w '%{http_code}' -u wk: -H 'Content-Type: application/json' \
    --data-binary @- "$TARGET_URL/v1/batch")
  [ "$code" = 200 ] || die "sending the sample for the plan: answered $code"
done
sql -c "select cdp.create_tracking_plan('bench20', p || jsonb_build_object('events', (p->'events') ||
          (select jsonb_object_agg('Planned Event ' || i, jsonb_build_object('properties', jsonb_build_object(
             'properties', jsonb_build_object('type', 'object', 'required', jsonb_build_array('id'),
               'properties', jsonb_build_object('id', jsonb_build_object('type', 'string'),
                 'value', jsonb_build_object('type', 'number', 'minimum', 0))))))
             from generate_series(1, 20 - (select count(*) from jsonb_object_keys(p->'events'))::int) i)))
          from (select cdp.propose_tracking_plan() as p) s" >/dev/null || die "could not make the plan"
EVENTS=$(sql -c "select count(*) from cdp.tracking_plan_versions, jsonb_object_keys(plan->'events')")
PLANNED=$(sql -c "select string_agg(k, ', ' order by k) from cdp.tracking_plan_versions, jsonb_object_keys(plan->'events') k where k not like 'Planned Event %'")
echo "  plan bench20: $EVENTS events ($PLANNED, and $((EVENTS - 6)) the generator never sends), identify traits typed"

plan() { # plan on|off: attach to (or detach from) both sources; the HTTP worker's snapshot follows within a second
  if [ "$1" = on ]; then
    sql -c "select cdp.attach_tracking_plan('bench', 'bench20'), cdp.attach_tracking_plan('sql', 'bench20')" >/dev/null
  else
    sql -c "delete from cdp.source_tracking_plans" >/dev/null
  fi
  sleep 1.5
}
# probe: the plan was in force during the run that just ended.
probe() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -u wk: -H 'Content-Type: application/json' \
    -d '{"userId": "probe", "event": "Not In The Plan", "messageId": "probe-'"$RANDOM"'"}' "$TARGET_URL/v1/track")
  [ "$code" = 200 ] || die "the probe was answered $code"
  [ "$(sql -c "select count(*) from cdp.violations where type = 'Unplanned-Event' and event = 'Not In The Plan'")" -ge 1 ] ||
    die "the plan was not in force: the probe's unplanned event left no violation"
}

###############################################################################
echo
echo "a) POST /v1/batch, $BATCH events per request, wrk -t1 -c$BATCH_CONNECTIONS -d${DURATION}s: without the plan, with, without, with"
declare -A HTTP OK
for run in off1 on1 off2 on2; do
  plan "${run%?}"
  batch_run "cdp, plan ${run%?}" "$WORK/batch_$run.txt"
  HTTP[$run]=$BATCH_ROWS OK[$run]=$BATCH_OK
  [ "$BATCH_OK" = yes ] || echo "    !! $BATCH_WHY"
  if [ "${run%?}" = on ]; then
    echo "    violations recorded in this run: $(sql -c "select count(*) from cdp.violations") ($(sql -c "select coalesce(string_agg(type || ' ' || n, ', '), 'none') from (select type, count(*) n from cdp.violations group by 1 order by 1) t"))"
    probe
  fi
done
HTTP_OFF=$(mean "${HTTP[off1]}" "${HTTP[off2]}")
HTTP_ON=$(mean "${HTTP[on1]}" "${HTTP[on2]}")
HTTP_CLEAN=$([ "${OK[off1]}${OK[on1]}${OK[off2]}${OK[on2]}" = yesyesyesyes ] && echo yes || echo NO)

###############################################################################
echo
echo "b) SQL cdp.ingest, $BATCH-event batches, 1 connection, $SQL_COUNT events a run: without the plan, with, without, with"
declare -A SQLR
for run in off1 on1 off2 on2; do
  plan "${run%?}"
  out="$WORK/ingest_$run.txt"
  bench_with_pg "$CLUSTER" timeout 300 "$ROOT/bench/ingest.sh" --count "$SQL_COUNT" --batch "$BATCH" >"$out" 2>&1 ||
    die "bench/ingest.sh failed: $(cat "$out")"
  SQLR[$run]=$(awk '/^cdp.ingest/ {print $2}' "$out")
  [ -n "${SQLR[$run]}" ] || die "could not read bench/ingest.sh's output: $(cat "$out")"
  printf '  %-34s %7s rows/s\n' "cdp.ingest, plan ${run%?}" "${SQLR[$run]}"
  [ "${run%?}" = off ] || probe
done
SQL_OFF=$(mean "${SQLR[off1]}" "${SQLR[off2]}")
SQL_ON=$(mean "${SQLR[on1]}" "${SQLR[on2]}")

###############################################################################
echo
echo "Summary (means of two runs each)                  with plan   without  ratio  target"
line() { # LABEL ON OFF WHAT CLEAN
  local r met
  r=$(ratio "$2" "$3" 2)
  met=$([ "$(meets "$r" '>=' 0.80)" = yes ] && [ "$5" = yes ] && echo yes || echo NO)
  printf '  %-46s %9s %9s  %5s  >= 0.80: %s\n' "$1" "$2" "$3" "$r" "$met"
  bench_summary "$4 with a 20-event tracking plan" "$2 rows/s" "$3 rows/s without the plan" "$r" ">= 0.80" "$met"
}
line "/v1/batch, 100 events/request (rows/s)" "$HTTP_ON" "$HTTP_OFF" "HTTP /v1/batch, 100 events/request," "$HTTP_CLEAN"
line "cdp.ingest, 100-event batches (rows/s)" "$SQL_ON" "$SQL_OFF" "SQL cdp.ingest, 100-event batches," yes
echo "(bench/tracking_plans.sh took $(($(date +%s) - START)) s)"
