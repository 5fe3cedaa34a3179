#!/usr/bin/env bash
# HTTP collector benchmarks (issue 3), each beside its baseline from the same
# run, on a throwaway cluster this script creates and removes:
#
#   a) POST /v1/track, one event per request, keep-alive, 64 connections
#      (wrk -t1 -c64 with ../shared/peers/track.lua): cdp's HTTP worker with
#      cdp.http_workers = 1 and = 2, against peers/node-collector (Fastify +
#      node-postgres, group commit) on the same Postgres. Both answer 200 only
#      after commit. Target: >= 3x the peer and >= 25k req/s.
#   b) POST /v1/batch, 100 events per request (bench/batch.lua over bodies from
#      build/cdp-eventgen, messageIds made unique per request), against a plain
#      prepared multi-row INSERT of rows from the same generator into a bare
#      table (bench/ingest.sh --plain-only) with as many connections as cdp has
#      committers, just before and just after cdp's run (the baseline is their
#      mean). Target: >= 0.80 of the baseline's rows/s.
#   c) Worker memory under sustained overload: batch requests on 256
#      connections for 20 s, once with the default settings and once with
#      cdp.http_max_queue_messages = 2000, sampling the HTTP worker's RSS every
#      second. Prints peak RSS and the 503 answers (each must carry Retry-After).
#
# a) and b) run with the processor worker off (cdp.processor_enabled = off, see
# bench/lib.sh): the baselines only insert, and the processor has its own
# benchmark. One more /v1/track run (a') and c) have it on, as in production.
#
# Usage: bench/http.sh            (after `cmake --build build` and `make install`;
#                                  ./dev bench does both, then runs bench/run)
# Environment: CDP_PEERS (default ../shared/peers from the project folder),
#   CDP_BENCH_DURATION (seconds per measured run, default 15),
#   CDP_BENCH_OVERLOAD_DURATION (default 20), CDP_BENCH_VERBOSE=1 (print wrk's
#   own output), CDP_BENCH_SUMMARY (file bench/run collects summary rows in).
# Servers listen on 127.0.0.1 only; everything started here is stopped on exit.
# shellcheck source-path=SCRIPTDIR/..
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=test/lib.sh
source "$ROOT/test/lib.sh"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

PEERS=${CDP_PEERS:-$ROOT/../shared/peers}
DURATION=${CDP_BENCH_DURATION:-15}
OVERLOAD_DURATION=${CDP_BENCH_OVERLOAD_DURATION:-20}
WARMUP=2
BATCH=100
BATCH_CONNECTIONS=32
NODE_WORKERS=${CDP_BENCH_NODE_WORKERS:-2}

die() { printf 'bench/http.sh: %s\n' "$*" >&2; exit 1; }

if [ ! -f "$PEERS/track.lua" ] || [ ! -f "$PEERS/node-collector/server.js" ]; then
  die "the baselines are missing: expected $PEERS/track.lua and $PEERS/node-collector/ (the peers folder of the shared workspace, ../shared/peers from the project folder; or set CDP_PEERS)"
fi
for tool in wrk node npm curl psql; do
  command -v "$tool" >/dev/null || die "$tool is required (./dev deps installs it)"
done
[ -x "$ROOT/build/cdp-eventgen" ] || die "build/cdp-eventgen is missing: run cmake --build build (or ./dev bench)"

START=$(date +%s)
WORK=$(mktemp -d /tmp/cdp-bench-http.XXXXXX)
chmod 755 "$WORK"
CLUSTER=""
NODE_PID=""
SAMPLER_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$SAMPLER_PID" ] || kill "$SAMPLER_PID" 2>/dev/null || true
  # node-collector forks its workers: it runs in its own process group.
  [ -z "$NODE_PID" ] || kill -- "-$NODE_PID" 2>/dev/null || true
  bench_teardown "$rc" bench/http.sh "$CLUSTER" "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sql() { cluster_psql "$CLUSTER" cdp -tA "$@"; }

# Until the HTTP workers answer /health (after a start or a restart).
wait_cdp_http() {
  local deadline=$(($(date +%s) + 30))
  until curl -fsS -o /dev/null "$CDP_URL/health" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || die "cdp's HTTP worker did not come up on $CDP_URL"
    sleep 0.2
  done
}

restart_cdp() { # restart_cdp "guc = value"...
  bench_cluster_set "$CLUSTER" "$@"
  wait_cdp_http
  local n
  n=$(sql -c "select count(*) from cdp.workers where backend_type = 'cdp http'")
  printf '  (restarted with %s: %s HTTP worker process(es))\n' "$*" "$n"
}

# Empties what the previous run wrote, so each run starts equal and no
# messageId of an earlier run counts as a duplicate.
reset_tables() {
  sleep 1  # requests of a finished wrk may still be committing
  sql -c "truncate cdp.events, cdp.message_ids, cdp.quarantine, peer_events" -c "checkpoint" >/dev/null
}

###############################################################################
echo "HTTP benchmarks (issue 3): $(nproc) cores shared by wrk, the servers and Postgres"
log "setting up a throwaway cluster"
bench_cluster_up CLUSTER
HTTP_PORT=$(cat "$CLUSTER/http_port")
CDP_URL="http://127.0.0.1:$HTTP_PORT"
# Where the measured load goes: cdp, unless CDP_BENCH_TARGET_URL names another
# server (to check that the benchmark reports a failing server as failed).
TARGET_URL=${CDP_BENCH_TARGET_URL:-$CDP_URL}
sql -c "insert into cdp.sources(name, write_key_hash, write_key_hint) values ('bench', sha256('wk'::bytea), 'wk')" >/dev/null
sql -c "create table peer_events(id bigserial primary key, message_id text unique, type text, event text,
          anonymous_id text, user_id text, ts timestamptz, received_at timestamptz default now(),
          properties jsonb, context jsonb)" >/dev/null
wait_cdp_http
[ "$(curl -s -o /dev/null -w '%{http_code}' -u wk: -H 'Content-Type: application/json' \
  -d '{"userId":"u","event":"Probe","messageId":"probe-1"}' "$CDP_URL/v1/track")" = 200 ] ||
  die "cdp does not accept the write key wk"

log "installing and starting peers/node-collector (a copy in $WORK)"
cp -r "$PEERS/node-collector" "$WORK/node-collector"
(cd "$WORK/node-collector" && timeout 180 npm install --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1) ||
  die "npm install of node-collector failed: $(tail -5 "$WORK/npm.log")"
NODE_PORT=$(free_port $((HTTP_PORT + 1)))
NODE_URL="http://127.0.0.1:$NODE_PORT"
# setsid: node-collector forks WORKERS processes; its own process group lets
# cleanup stop them all by the group's id.
(cd "$WORK/node-collector" && exec env PGHOST="$CLUSTER" PGPORT="$(cat "$CLUSTER/port")" \
  PGUSER="$(cluster_user)" PGDATABASE=cdp PORT="$NODE_PORT" WRITE_KEY=wk WORKERS="$NODE_WORKERS" \
  setsid node server.js >"$WORK/node.log" 2>&1) &
NODE_PID=$!
wait_tcp "$NODE_PORT" 30 || die "node-collector did not start: $(cat "$WORK/node.log")"
[ "$(curl -s -o /dev/null -w '%{http_code}' -u wk: -H 'Content-Type: application/json' \
  -d '{"userId":"u","event":"Probe","messageId":"probe-1"}' "$NODE_URL/v1/track")" = 200 ] ||
  die "node-collector does not answer: $(cat "$WORK/node.log")"

LOG_FROM=$(stat -c %s "$CLUSTER/server.log")
log "generating /v1/batch bodies ($BATCH events each)"
"$ROOT/build/cdp-eventgen" --seed 42 --count 30000 --batch "$BATCH" >"$WORK/bodies.jsonl"
BODY_BYTES=$(awk '{n += length($0)} END {printf "%.0f", n / NR}' "$WORK/bodies.jsonl")

###############################################################################
# a) /v1/track
# track_run LABEL URL TABLE OUT: warm-up, then the measured run; sets TRACK_*.
# req/s counts only the requests answered 2xx; TRACK_OK is NO (TRACK_WHY says
# why) when the run was not clean (check_run).
track_run() {
  local label=$1 url=$2 table=$3 out=$4 rows
  run_wrk "$WORK/warmup.txt" -t1 -c64 -d"${WARMUP}s" -s "$PEERS/track.lua" "$url"
  reset_tables
  run_wrk "$out" -t1 -c64 -d"${DURATION}s" --latency -s "$PEERS/track.lua" "$url"
  parse_wrk "$out"
  rows=$(settled_count "$table")
  check_run "$rows" 1 64
  TRACK_RPS=$(per_sec "$OK2XX")
  printf '  %-34s %7s req/s (2xx)   p50 %7s ms   p99 %7s ms   non-2xx %s   socket errors %s   (%s answers, %s rows stored)\n' \
    "$label" "$TRACK_RPS" "$P50" "$P99" "$NON2XX" "$SOCKERR" "$REQUESTS" "$rows"
  if [ "$RUN_OK" != yes ]; then
    echo "    !! FAILED: $RUN_WHY; server log tail:"
    tail -5 "$CLUSTER/server.log" | sed 's/^/    /'
  fi
  TRACK_P50=$P50 TRACK_P99=$P99 TRACK_OK=$RUN_OK TRACK_WHY=$RUN_WHY
}

echo
echo "a) POST /v1/track, 1 event per request, keep-alive, wrk -t1 -c64 -d${DURATION}s, 200 only after commit"
track_run "node-collector (WORKERS=$NODE_WORKERS)" "$NODE_URL" peer_events "$WORK/track_node.txt"
NODE_RPS=$TRACK_RPS NODE_P50=$TRACK_P50 NODE_P99=$TRACK_P99 NODE_OK=$TRACK_OK NODE_WHY=$TRACK_WHY
track_run "cdp (cdp.http_workers = 1)" "$TARGET_URL" cdp.events "$WORK/track_cdp1.txt"
CDP1_RPS=$TRACK_RPS CDP1_P50=$TRACK_P50 CDP1_P99=$TRACK_P99 CDP1_OK=$TRACK_OK CDP1_WHY=$TRACK_WHY

###############################################################################
# b) /v1/batch
# plain_run CLIENTS WHEN: the baseline's rows/s with CLIENTS connections.
plain_run() {
  local out="$WORK/plain$1.txt"
  bench_with_pg "$CLUSTER" timeout 120 "$ROOT/bench/ingest.sh" --plain-only --count 150000 \
    --batch "$BATCH" --clients "$1" >"$out" 2>&1 || die "bench/ingest.sh failed: $(cat "$out")"
  PLAIN_ROWS=$(awk '/^plain INSERT/ {print $3}' "$out")
  [ -n "$PLAIN_ROWS" ] || die "could not read bench/ingest.sh's output: $(cat "$out")"
  printf '  %-34s %7s rows/s\n' "plain INSERT, $1 connection(s), $2" "$PLAIN_ROWS"
}

# batch_vs_plain LABEL CLIENTS OUT: the baseline just before and just after
# cdp's run (their mean is the baseline: the machine drifts); sets BATCH_ROWS
# and PLAIN_MEAN.
batch_vs_plain() {
  local before
  plain_run "$2" before
  before=$PLAIN_ROWS
  batch_run "$1" "$3"
  plain_run "$2" after
  PLAIN_MEAN=$(((before + PLAIN_ROWS) / 2))
  printf '  %-34s %7s rows/s, mean of before and after\n' "plain INSERT baseline" "$PLAIN_MEAN"
}

echo
echo "b) POST /v1/batch, $BATCH events per request (~$BODY_BYTES bytes), wrk -t1 -c$BATCH_CONNECTIONS -d${DURATION}s,"
echo "   against a prepared $BATCH-row INSERT of the same generator's rows into a bare table (bench/ingest.sh --plain-only)"
batch_vs_plain "cdp (cdp.http_workers = 1)" 1 "$WORK/batch_cdp1.txt"
CDP1_BATCH=$BATCH_ROWS PLAIN1=$PLAIN_MEAN CDP1_BATCH_OK=$BATCH_OK CDP1_BATCH_WHY=$BATCH_WHY

echo
echo "a+b) again with cdp.http_workers = 2 (two committers; the baseline with two connections)"
restart_cdp "cdp.http_workers = 2"
track_run "cdp (cdp.http_workers = 2)" "$TARGET_URL" cdp.events "$WORK/track_cdp2.txt"
CDP2_RPS=$TRACK_RPS CDP2_P50=$TRACK_P50 CDP2_P99=$TRACK_P99 CDP2_OK=$TRACK_OK CDP2_WHY=$TRACK_WHY
batch_vs_plain "cdp (cdp.http_workers = 2)" 2 "$WORK/batch_cdp2.txt"
CDP2_BATCH=$BATCH_ROWS PLAIN2=$PLAIN_MEAN CDP2_BATCH_OK=$BATCH_OK CDP2_BATCH_WHY=$BATCH_WHY

###############################################################################
# c) memory under sustained overload
# rss_kb PID FIELD: a field of /proc/PID/status in kB.
rss_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || true; }

# overload_run LABEL: 256 connections of batch requests; sets OVER_*.
overload_run() {
  local label=$1 out="$WORK/overload.txt" pid samples="$WORK/rss.txt"
  pid=$(sql -c "select pid from cdp.workers where backend_type = 'cdp http' limit 1")
  [ -n "$pid" ] || die "no HTTP worker in cdp.workers"
  reset_tables
  : >"$samples"
  (while kill -0 "$pid" 2>/dev/null; do
    echo "$(rss_kb "$pid" VmRSS) $(rss_kb "$pid" RssAnon)" >>"$samples"
    sleep 1
  done) &
  SAMPLER_PID=$!
  local idle_rss idle_anon
  read -r idle_rss idle_anon < <(echo "$(rss_kb "$pid" VmRSS) $(rss_kb "$pid" RssAnon)")
  CDP_BENCH_BODIES=$WORK/bodies.jsonl CDP_BENCH_TAG="o$RANDOM" \
    run_wrk "$out" -t1 -c256 -d"${OVERLOAD_DURATION}s" --latency --timeout 10s -s "$ROOT/bench/batch.lua" "$TARGET_URL"
  sleep 2
  kill "$SAMPLER_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=""
  kill -0 "$pid" 2>/dev/null || die "the HTTP worker $pid died under overload: $(tail -20 "$CLUSTER/server.log")"
  parse_wrk "$out"
  OVER_PEAK_RSS=$(awk '$1 > m {m = $1} END {printf "%.0f", m / 1024}' "$samples")
  OVER_PEAK_ANON=$(awk '$2 > m {m = $2} END {printf "%.0f", m / 1024}' "$samples")
  OVER_LAST_ANON=$(awk 'NF == 2 {v = $2} END {printf "%.0f", v / 1024}' "$samples")
  OVER_HWM=$(( $(rss_kb "$pid" VmHWM) / 1024 ))
  OVER_503=$(awk '/^status 503:/ {print $3}' "$out")
  OVER_503=${OVER_503:-0}
  OVER_200=$(awk '/^status 200:/ {print $3}' "$out")
  OVER_200=${OVER_200:-0}
  local other no_ra anon_series
  other=$(awk '/^status / && $2 != "200:" && $2 != "503:" {printf "%s%s %s", sep, $2, $3; sep = ", "}' "$out")
  no_ra=$(awk '/^503 without Retry-After:/ {print $NF}' "$out")
  anon_series=$(awk '{printf "%s%.0f", sep, $2 / 1024; sep = " "}' "$samples")
  printf '  %s\n' "$label"
  printf '    answers: %s x 200, %s x 503 (%s without Retry-After)%s; %s req/s; p50 %s ms, p99 %s ms; socket errors %s\n' \
    "$OVER_200" "$OVER_503" "${no_ra:-?}" "${other:+, other: $other}" "$RPS" "$P50" "$P99" "$SOCKERR"
  printf '    worker pid %s: RSS idle %s MB, peak %s MB (VmHWM %s MB); private (RssAnon) idle %s MB, peak %s MB, at the end %s MB\n' \
    "$pid" "$((idle_rss / 1024))" "$OVER_PEAK_RSS" "$OVER_HWM" "$((idle_anon / 1024))" "$OVER_PEAK_ANON" "$OVER_LAST_ANON"
  printf '    RssAnon each second (MB): %s\n' "$anon_series"
  # Bounded: at least one RssAnon sample for every two seconds of the run (no
  # samples prove nothing), the second half of the run peaks no higher than
  # the first half (+10% and 2 MB of noise), every 503 carries Retry-After, no
  # other status, no socket error, the worker alive.
  local nsamples
  nsamples=$(awk '$2 ~ /^[0-9]+$/' "$samples" | wc -l)
  OVER_OK=$(awk -v no_ra="${no_ra:-1}" -v other="$other" -v sockerr="$SOCKERR" -v min=$(((OVERLOAD_DURATION + 1) / 2)) '
    $2 ~ /^[0-9]+$/ { v[++n] = $2 } END {
      h = int(n / 2); for (i = 1; i <= n; i++) if (i <= h) { if (v[i] > a) a = v[i] } else if (v[i] > b) b = v[i]
      print (n >= min && n >= 2 && b <= a * 1.1 + 2048 && no_ra == 0 && other == "" && sockerr == 0) ? "yes" : "NO" }' "$samples")
  printf '    bounded (%s samples; second half peaks no higher than the first), every 503 with Retry-After, no other status: %s\n' \
    "$nsamples" "$OVER_OK"
}

echo
echo "a') /v1/track again with the processor worker on too (it resolves identities and folds traits of"
echo "   every event on the same cores; the collector's own figures above are without it, like the baseline)"
restart_cdp "cdp.http_workers = 1" "cdp.processor_enabled = on"
track_run "cdp (http_workers = 1, processor on)" "$TARGET_URL" cdp.events "$WORK/track_cdp_proc.txt"
PROC_RPS=$TRACK_RPS PROC_P50=$TRACK_P50 PROC_P99=$TRACK_P99 PROC_OK=$TRACK_OK PROC_WHY=$TRACK_WHY

echo
echo "c) HTTP worker memory under sustained overload: /v1/batch x $BATCH events on 256 connections for ${OVERLOAD_DURATION}s"
echo "   (processor on: everything at its default)"
overload_run "default settings (cdp.http_max_queue_messages = 50000)"
DEF_PEAK=$OVER_PEAK_RSS DEF_ANON=$OVER_PEAK_ANON DEF_503=$OVER_503 DEF_OK=$OVER_OK
restart_cdp "cdp.http_max_queue_messages = 2000"
overload_run "cdp.http_max_queue_messages = 2000"
LOW_PEAK=$OVER_PEAK_RSS LOW_ANON=$OVER_PEAK_ANON LOW_503=$OVER_503 LOW_OK=$OVER_OK
[ "$LOW_503" -gt 0 ] || LOW_OK=NO

# What the server logged since setup (before it, the HTTP worker may log that
# database cdp does not exist yet).
errors=$(tail -c +"$((LOG_FROM + 1))" "$CLUSTER/server.log" | grep -E 'ERROR|FATAL|PANIC|WARNING|terminated by signal' || true)
echo
echo "server log since setup: $(printf '%s' "$errors" | grep -c . || true) ERROR/FATAL/PANIC/WARNING lines"
[ -z "$errors" ] || printf '%s\n' "$errors" | sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] //' | sort | uniq -c | sort -rn | head -10 | sed 's/^/  /'

###############################################################################
echo
echo "HTTP summary                          cdp        baseline     ratio  target"
# failed_note OK WHY [WHOSE]: " FAILED (WHOSE: WHY)" when OK is not yes.
failed_note() { [ "$1" = yes ] || printf ' FAILED (%s%s)' "${3:+$3: }" "$2"; }
# A row is met only when both its runs were clean: a baseline with errors
# would be slower and flatter cdp.
track_line() { # LABEL CDP BASE WHAT P50 P99 OK WHY
  local r met note
  r=$(ratio "$2" "$3" 2)
  met=$([ "$(meets "$r" '>=' 3)" = yes ] && [ "$(meets "$2" '>=' 25000)" = yes ] && [ "$7" = yes ] &&
    [ "$NODE_OK" = yes ] && echo yes || echo NO)
  note="$(failed_note "$7" "$8" cdp)$(failed_note "$NODE_OK" "$NODE_WHY" node-collector)"
  printf '  %-34s %7s req/s %7s req/s  %5sx  >= 3x and >= 25000 req/s: %s%s\n' "$1" "$2" "$3" "$r" "$met" "$note"
  bench_summary "HTTP /v1/track, 1 event/request, 64 conns ($4)" "$2 req/s (p50 $5 / p99 $6 ms)$(failed_note "$7" "$8")" \
    "$3 req/s node-collector (p50 $NODE_P50 / p99 $NODE_P99 ms)$(failed_note "$NODE_OK" "$NODE_WHY")" "${r}x" \
    ">= 3x, >= 25k req/s" "$met"
}
batch_line() { # LABEL CDP BASE WHAT CONNS OK WHY
  local r met
  r=$(ratio "$2" "$3" 2)
  met=$([ "$(meets "$r" '>=' 0.80)" = yes ] && [ "$6" = yes ] && echo yes || echo NO)
  printf '  %-34s %7s rows/s %6s rows/s %5s   >= 0.80: %s%s\n' "$1" "$2" "$3" "$r" "$met" "$(failed_note "$6" "$7" cdp)"
  bench_summary "HTTP /v1/batch, 100 events/request ($4)" "$2 rows/s$(failed_note "$6" "$7")" "$3 rows/s plain INSERT ($5)" \
    "$r" ">= 0.80" "$met"
}
track_line "/v1/track, http_workers = 1" "$CDP1_RPS" "$NODE_RPS" "http_workers=1" "$CDP1_P50" "$CDP1_P99" "$CDP1_OK" "$CDP1_WHY"
track_line "/v1/track, http_workers = 2" "$CDP2_RPS" "$NODE_RPS" "http_workers=2" "$CDP2_P50" "$CDP2_P99" "$CDP2_OK" "$CDP2_WHY"
track_line "/v1/track, processor on" "$PROC_RPS" "$NODE_RPS" "http_workers=1, processor on" "$PROC_P50" "$PROC_P99" \
  "$PROC_OK" "$PROC_WHY"
printf '  %-34s p50 %s / p99 %s ms (workers=1), %s / %s ms (workers=2); node-collector %s / %s ms\n' \
  "/v1/track latency" "$CDP1_P50" "$CDP1_P99" "$CDP2_P50" "$CDP2_P99" "$NODE_P50" "$NODE_P99"
batch_line "/v1/batch, http_workers = 1" "$CDP1_BATCH" "$PLAIN1" "http_workers=1" "1 conn" "$CDP1_BATCH_OK" "$CDP1_BATCH_WHY"
batch_line "/v1/batch, http_workers = 2" "$CDP2_BATCH" "$PLAIN2" "http_workers=2" "2 conns" "$CDP2_BATCH_OK" "$CDP2_BATCH_WHY"
printf '  %-34s peak RSS %s MB (private %s MB), %s x 503 with defaults; %s MB (private %s MB), %s x 503 with a 2000-message queue\n' \
  "worker memory under overload" "$DEF_PEAK" "$DEF_ANON" "$DEF_503" "$LOW_PEAK" "$LOW_ANON" "$LOW_503"
bench_summary "HTTP worker RSS, ${OVERLOAD_DURATION} s overload, defaults" \
  "peak ${DEF_PEAK} MB (private ${DEF_ANON} MB), ${DEF_503} x 503" "-" "-" "bounded" "$DEF_OK"
bench_summary "HTTP worker RSS, ${OVERLOAD_DURATION} s overload, queue 2000" \
  "peak ${LOW_PEAK} MB (private ${LOW_ANON} MB), ${LOW_503} x 503" "-" "-" "bounded, 503 + Retry-After" "$LOW_OK"
echo "(bench/http.sh took $(($(date +%s) - START)) s)"
