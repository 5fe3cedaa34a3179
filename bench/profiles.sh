#!/usr/bin/env bash
# Profile API benchmark (issue 16), beside its peer, same run, same data, on a
# throwaway cluster this script creates and removes:
#
#   GET /v1/profiles/<type>:<value> of a random profile per request (user_id
#   or email, at random; bench/profiles.lua), keep-alive, wrk -t1 -c64,
#   against cdp's HTTP listener (its defaults: cdp.http_workers and
#   cdp.http_threads unset) and against bench/profile_peer (Fastify +
#   node-postgres, one SQL query per request) over the same tables.
#   a) alone; b) while bench/profiles_ingest.js sends RATE events/s to cdp's
#   /v1/batch with the processor on (it resolves, folds traits, keeps the
#   computed traits and segments of the very profiles being read).
#   Lookups/s count only 200 answers; any non-2xx answer or socket error, or
#   (b) an ingest rate below 90% of RATE, marks the run FAILED.
#   Before the load, ~100 random profiles are looked up on both and the
#   answers compared as parsed JSON: any difference fails the benchmark.
#   Target: >= 20,000 lookups/s, p99 < 5 ms, >= 3x the peer.
#
# Data, written straight to the tables (set-based SQL, no ingestion):
# PROFILES profiles with 21 traits, 5 computed traits (defined with
# cdp.create_computed_trait) in cdp.profile_computed.computed for 90% of
# them (values only: the aggregate state behind them is left empty), 10
# segments (cdp.create_segment on the empty database) with the memberships
# their rules give, identities user_id u<i>, email user<i>@<domain> and an
# anonymous_id per profile, profile_map i -> i.
# The cluster has shared_buffers = 4GB (this benchmark only; cdp and the peer
# share the cluster and so the setting): the 1M database (~1.8 GB) fits, as a
# DBA serving lookups from these tables would size it; with bench/lib.sh's
# 256 MB, ~30% of the pages every lookup reads came from the OS page cache.
#
# Usage: bench/profiles.sh [PROFILES] [RATE]   (defaults 1000000 5000)
# Environment: CDP_BENCH_DURATION (seconds per measured run, default 15),
#   CDP_BENCH_WARMUP (default 5), CDP_BENCH_PEER_WORKERS (default 2),
#   CDP_BENCH_PEER_POOL (connections per peer worker, default 8),
#   CDP_BENCH_VERBOSE=1 (wrk's own output), CDP_BENCH_SUMMARY (bench/run),
#   CDP_BENCH_HTTP_WORKERS (cdp.http_workers for cdp; default: cdp's default, 1).
# Needs: make install done, node, npm (the peer is installed with npm ci in
# a temporary folder), wrk, curl.
# shellcheck source-path=SCRIPTDIR/..
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=test/lib.sh
source "$ROOT/test/lib.sh"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

PROFILES=${1:-1000000}
RATE=${2:-5000}
DURATION=${CDP_BENCH_DURATION:-15}
WARMUP=${CDP_BENCH_WARMUP:-5}
PEER_WORKERS=${CDP_BENCH_PEER_WORKERS:-2}
PEER_POOL=${CDP_BENCH_PEER_POOL:-8}
CONNS=64
PEER_TOKEN=peer-bench-token
SIZE=$(awk -v n="$PROFILES" 'BEGIN { if (n >= 1000000 && n % 1000000 == 0) printf "%dM", n / 1000000;
  else if (n >= 1000 && n % 1000 == 0) printf "%dk", n / 1000; else print n }')

die() { printf 'bench/profiles.sh: %s\n' "$*" >&2; exit 1; }
[[ "$PROFILES" =~ ^[1-9][0-9]*$ ]] || die "PROFILES must be a positive number (got $PROFILES)"
[[ "$RATE" =~ ^[1-9][0-9]*$ ]] || die "RATE must be a positive number (got $RATE)"
for tool in wrk node npm curl psql; do
  command -v "$tool" >/dev/null || die "$tool is required (./dev deps installs it)"
done

START=$(date +%s)
WORK=$(mktemp -d /tmp/cdp-bench-profiles.XXXXXX)
chmod 755 "$WORK"
CLUSTER=""
PEER_PID=""
INGEST_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$INGEST_PID" ] || kill "$INGEST_PID" 2>/dev/null || true
  # The peer forks its workers: it runs in its own process group.
  [ -z "$PEER_PID" ] || kill -- "-$PEER_PID" 2>/dev/null || true
  bench_teardown "$rc" bench/profiles.sh "$CLUSTER" "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sql() { cluster_psql "$CLUSTER" cdp -tA "$@"; }

# CPU use by who, over a run: cpu_snap FILE writes "pid comm ticks" of every
# process; cpu_report BEFORE AFTER SECS prints the busiest groups (>= 1%) in %
# of one core, the groups named from $WORK/labels ("pid label", from
# pg_stat_activity and the pids this script started) and the command names.
cpu_labels() {
  {
    sql -F ' ' -c "select pid, case when backend_type <> 'client backend' then replace(backend_type, ' ', '_')
                                    when application_name = 'profile-peer' then 'peer_postgres_backends'
                                    else 'other_postgres_backends' end from pg_stat_activity"
    [ -z "$PEER_PID" ] || ps -o pid= -g "$PEER_PID" | awk '{print $1, "peer_node"}'
    [ -z "$INGEST_PID" ] || echo "$INGEST_PID ingest_sender"
  } >"$WORK/labels"
}
cpu_snap() {
  local out=$1 f line comm
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    f=${f#/proc/}
    comm=${line#*\(}
    comm=${comm%\)*}
    # After "pid (comm) ": state is field 1, utime 12, stime 13.
    # shellcheck disable=SC2086
    set -- ${line##*) }
    printf '%s %s %s\n' "${f%/stat}" "${comm// /_}" "$((${12} + ${13}))"
  done >"$out"
  head -1 /proc/stat >"$out.machine"
}
cpu_report() {
  local hz
  hz=$(getconf CLK_TCK)
  awk -v hz="$hz" -v secs="$3" '
    FILENAME == ARGV[1] { label[$1] = $2; next }
    FILENAME == ARGV[2] { before[$1] = $3; next }
    { d = $3 - before[$1]; if (d <= 0) next
      g = ($1 in label) ? label[$1] : ($2 ~ /^postgres/ ? "postgres_other" : $2); use[g] += d }
    END { for (g in use) printf "%s %.0f\n", g, 100 * use[g] / hz / secs }' "$WORK/labels" "$1" "$2" |
    sort -k2 -rn | awk '$2 >= 1' | head -8 | awk '{ printf "%s%s %s%%", sep, $1, $2; sep = ", " } END { printf "; " }'
  # The whole machine (anything else running shows here), from /proc/stat.
  cat "$1.machine" "$2.machine" | awk -v n="$(nproc)" '
    { idle = $5 + $6; total = 0; for (i = 2; i <= NF; i++) total += $i
      if (NR == 1) { i0 = idle; t0 = total } else { printf "machine busy %.0f%% of %d%%\n", 100 * n * (1 - (idle - i0) / (total - t0)), 100 * n } }'
}

###############################################################################
echo "Profile API benchmark (issue 16): $PROFILES profiles, $(nproc) cores shared by wrk, the servers and Postgres"
log "setting up a throwaway cluster (processor on)"
HTTP_SETTINGS=()
[ -z "${CDP_BENCH_HTTP_WORKERS:-}" ] || HTTP_SETTINGS+=("cdp.http_workers = $CDP_BENCH_HTTP_WORKERS")
CDP_BENCH_PROCESSOR=on bench_cluster_up CLUSTER "shared_buffers = 4GB" "work_mem = 256MB" "maintenance_work_mem = 512MB" \
  "${HTTP_SETTINGS[@]}"
HTTP_PORT=$(cat "$CLUSTER/http_port")
CDP_URL="http://127.0.0.1:$HTTP_PORT"
sql -c "insert into cdp.sources(name, write_key_hash, write_key_hint) values ('bench', sha256('wk'::bytea), 'wk')" >/dev/null

# Computed traits and segments first, on the empty database, so their rows
# (definitions, aggregates_built) are those cdp makes; the data follows.
log "profiles: 5 computed traits and 10 segments (on the empty database)"
while IFS='|' read -r name def; do
  sql -c "select cdp.create_computed_trait('$name', '$def')" >/dev/null
done <<'EOF'
orders|{"kind": "count", "event": "Order Completed"}
orders_30d|{"kind": "count", "event": "Order Completed", "within": {"days": 30}}
revenue|{"kind": "sum", "event": "Order Completed", "property": "revenue"}
avg_order|{"kind": "avg", "event": "Order Completed", "property": "revenue", "within": {"days": 90}}
last_page|{"kind": "last", "type": "page", "property": "path"}
EOF
# name|rule|the same rule in SQL over p (cdp.profiles). Trait rules only: the
# computed values are written without the aggregate state cdp evaluates
# computed-trait rules from (cdp.profile_computed.state, internal).
SEGMENTS=$(cat <<'EOF'
pro|{"trait": "plan", "op": "=", "value": "pro"}|p.traits->>'plan' = 'pro'
enterprise|{"trait": "plan", "op": "=", "value": "enterprise"}|p.traits->>'plan' = 'enterprise'
eu|{"trait": "country", "op": "in", "value": ["FR", "DE", "IT", "ES", "NL"]}|p.traits->>'country' in ('FR', 'DE', 'IT', 'ES', 'NL')
us|{"trait": "country", "op": "=", "value": "US"}|p.traits->>'country' = 'US'
newsletter|{"trait": "newsletter", "op": "=", "value": true}|p.traits->'newsletter' = 'true'
beta_testers|{"trait": "beta_tester", "op": "=", "value": true}|p.traits->'beta_tester' = 'true'
young|{"trait": "age", "op": "<", "value": 25}|(p.traits->>'age')::numeric < 25
big_spenders|{"trait": "ltv", "op": ">=", "value": 1500}|(p.traits->>'ltv')::numeric >= 1500
ios_users|{"trait": "device", "op": "=", "value": "ios"}|p.traits->>'device' = 'ios'
verified|{"trait": "is_verified", "op": "=", "value": true}|p.traits->'is_verified' = 'true'
EOF
)
while IFS='|' read -r name rule _; do
  sql -c "select cdp.create_segment('$name', '$rule')" >/dev/null
done <<<"$SEGMENTS"

log "profiles: generating $PROFILES profiles, their identities, computed traits and memberships"
gen_start=$(date +%s)
MEMBERSHIPS=$(while IFS='|' read -r name _ cond; do
  printf "select s.segment_id, p.profile_id from cdp.profiles p, cdp.segments s where s.name = '%s' and %s\n" "$name" "$cond"
done <<<"$SEGMENTS" | paste -sd'#' | sed 's/#/ union all /g')
sql >/dev/null <<EOF
insert into cdp.profiles (profile_id, traits, first_seen, last_seen, event_count, identifier_count)
select i, jsonb_build_object(
    'email', 'user' || i || '@' || (array['example.com', 'mail.test', 'corp.example', 'shop.test', 'web.example'])[1 + i % 5],
    'first_name', (array['Ada', 'Grace', 'Alan', 'Linus', 'Barbara', 'Ken', 'Margaret', 'Dennis'])[1 + (i * 7) % 8],
    'last_name', (array['Lovelace', 'Hopper', 'Turing', 'Torvalds', 'Liskov', 'Thompson', 'Hamilton', 'Ritchie', 'Knuth', 'Wirth'])[1 + (i * 11) % 10],
    'plan', (array['free', 'free', 'pro', 'enterprise'])[1 + (i / 3) % 4],
    'country', (array['FR', 'DE', 'US', 'GB', 'IT', 'ES', 'NL', 'BR'])[1 + (i / 7) % 8],
    'city', (array['Paris', 'Berlin', 'New York', 'London', 'Rome', 'Madrid', 'Amsterdam', 'São Paulo'])[1 + (i / 7) % 8],
    'language', (array['fr', 'de', 'en', 'en', 'it', 'es', 'nl', 'pt'])[1 + (i / 7) % 8],
    'timezone', (array['Europe/Paris', 'Europe/Berlin', 'America/New_York', 'Europe/London', 'Europe/Rome', 'Europe/Madrid', 'Europe/Amsterdam', 'America/Sao_Paulo'])[1 + (i / 7) % 8],
    'age', 18 + (i * 37) % 60,
    'ltv', round(((i::int8 * 7919) % 200000) / 100.0, 2),
    'sessions', (i * 13) % 500,
    'score', round(((i::int8 * 104729) % 1000) / 1000.0, 3),
    'is_verified', i % 3 <> 0,
    'newsletter', (i * 5) % 7 < 3,
    'beta_tester', i % 11 = 0,
    'company', 'Company ' || (i % 5000),
    'title', (array['Engineer', 'Designer', 'Manager', 'Founder', 'Analyst', 'Student'])[1 + (i * 3) % 6],
    'phone', '+336' || lpad(((i::int8 * 7919) % 100000000)::text, 8, '0'),
    'signup_at', to_char(date '2023-01-01' + i % 700, 'YYYY-MM-DD'),
    'last_login_at', to_char(timestamptz '2026-01-01 00:00:00+00' + ((i::int8 * 7919) % 8000000) * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'device', (array['ios', 'android', 'web'])[1 + (i * 17) % 3]),
  timestamptz '2023-01-01 00:00:00+00' + (i % 700) * interval '1 day', now(), 3 + i % 40, 3
from generate_series(1, $PROFILES) i;
insert into cdp.profile_map select i, i from generate_series(1, $PROFILES) i;
select setval('cdp.profile_id_seq', $PROFILES);
insert into cdp.identities (type, value, profile_id, origin_profile, first_seen)
select t.type, t.value, i, i, now()
  from generate_series(1, $PROFILES) i,
       lateral (values ('user_id', 'u' || i),
                       ('email', 'user' || i || '@' || (array['example.com', 'mail.test', 'corp.example', 'shop.test', 'web.example'])[1 + i % 5]),
                       ('anonymous_id', md5('anon' || i)::uuid::text)) t(type, value);
insert into cdp.profile_computed (profile_id, computed)
select i, jsonb_strip_nulls(jsonb_build_object(
    'orders', (i * 7) % 12,
    'orders_30d', ((i * 7) % 12) / 4,
    'revenue', round(((i * 7) % 12) * 42.5, 2),
    'avg_order', case when ((i * 7) % 12) / 4 > 0 then round(42.5 + i % 10, 2) end,
    'last_page', (array['/', '/pricing', '/docs', '/blog', '/account'])[1 + i % 5]))
  from generate_series(1, $PROFILES) i where i % 10 <> 0;
insert into cdp.segment_membership (segment_id, profile_id, entered_at)
select segment_id, profile_id, now() from ($MEMBERSHIPS) m;
EOF
sql -c "vacuum analyze cdp.profiles, cdp.profile_map, cdp.identities, cdp.profile_computed, cdp.segment_membership, cdp.segments" \
  -c "checkpoint" >/dev/null
read -r n_ident n_comp n_memb db_size < <(sql -F ' ' -c "select (select count(*) from cdp.identities), (select count(*) from cdp.profile_computed),
  (select count(*) from cdp.segment_membership), pg_size_pretty(pg_database_size('cdp'))")
log "profiles: generated in $(($(date +%s) - gen_start)) s: $PROFILES profiles, $n_ident identities, $n_comp computed rows, $n_memb memberships; database $db_size"

# The identifiers must be stored as the identity graph normalises them
# (emails trimmed and lower-cased; none blocked), or lookups would miss.
bad=$(sql -c "select count(*) from cdp.identities where value is distinct from cdp.normalise_identifier(type, value)")
[ "$bad" = 0 ] || die "$bad generated identifiers differ from cdp.normalise_identifier()'s form"
# Spot check that the memberships are the ones the rules give (cdp.evaluate on a sample).
bad=$(sql -c "select count(*) from (select p.profile_id from cdp.profiles p tablesample system (1) limit 200) x, cdp.segments s
               where cdp.evaluate(s.rule, x.profile_id) <> exists (select 1 from cdp.segment_membership m
                       where m.segment_id = s.segment_id and m.profile_id = x.profile_id and m.exited_at is null)")
[ "$bad" = 0 ] || die "$bad sampled memberships differ from what the segment rules give (cdp.evaluate)"

###############################################################################
# cdp's side: a token for the Profile API. Without cdp.create_access_token
# (no Profile API in this build) the cdp rows are FAILED and the peer's
# figures are still measured.
CDP_TOKEN="" CDP_MISSING=""
if ! CDP_TOKEN=$(sql -c "select cdp.create_access_token('bench', array['profiles:read', 'pii:clear'])" 2>"$WORK/token.err"); then
  CDP_MISSING="no Profile API: $(head -1 "$WORK/token.err" | sed 's/^psql:[^ ]* //')"
  CDP_TOKEN=""
fi
LOG_FROM=$(stat -c %s "$CLUSTER/server.log")

log "installing the peer (bench/profile_peer, npm ci in $WORK) and starting it: $PEER_WORKERS workers, pool $PEER_POOL each"
mkdir "$WORK/peer"
cp "$ROOT/bench/profile_peer/package.json" "$ROOT/bench/profile_peer/package-lock.json" "$ROOT/bench/profile_peer/server.js" "$WORK/peer/"
(cd "$WORK/peer" && timeout 180 npm ci --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1) ||
  die "npm ci of the peer failed: $(tail -5 "$WORK/npm.log")"
PEER_PORT=$(free_port $((HTTP_PORT + 1)))
PEER_URL="http://127.0.0.1:$PEER_PORT"
(cd "$WORK/peer" && exec env PGHOST="$CLUSTER" PGPORT="$(cat "$CLUSTER/port")" PGUSER="$(cluster_user)" PGDATABASE=cdp \
  PGAPPNAME=profile-peer PORT="$PEER_PORT" WORKERS="$PEER_WORKERS" POOL="$PEER_POOL" TOKEN="$PEER_TOKEN" \
  setsid node server.js >"$WORK/peer.log" 2>&1) &
PEER_PID=$!
wait_tcp "$PEER_PORT" 30 || die "the peer did not start: $(cat "$WORK/peer.log")"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $PEER_TOKEN" "$PEER_URL/v1/profiles/user_id:u1")" = 200 ] ||
  die "the peer does not answer: $(cat "$WORK/peer.log")"

SAME=yes SAME_WHY=""
if [ -z "$CDP_MISSING" ]; then
  log "profiles: comparing cdp's and the peer's answers for 100 random profiles"
  if ! node "$ROOT/bench/profiles_compare.js" "$CDP_URL" "$CDP_TOKEN" "$PEER_URL" "$PEER_TOKEN" "$PROFILES" 100 >"$WORK/compare.txt" 2>&1; then
    SAME=NO SAME_WHY="answers differ from the peer's"
  fi
  sed 's/^/  /' "$WORK/compare.txt"
fi

###############################################################################
# lookup_run LABEL URL TOKEN: warm-up, then the measured run; sets RUN_RPS,
# RUN_P50, RUN_P99, RUN_OK (yes or NO), RUN_WHY, RUN_CPU.
lookup_run() {
  local label=$1 url=$2 token=$3 out="$WORK/wrk.txt" why=()
  CDP_BENCH_PROFILES=$PROFILES CDP_BENCH_TOKEN=$token \
    run_wrk "$WORK/warmup.txt" -t1 -c"$CONNS" -d"${WARMUP}s" -s "$ROOT/bench/profiles.lua" "$url"
  # CPU is sampled while wrk runs (from 2 s in to 2 s before its end), so
  # that wrk itself is counted.
  CDP_BENCH_PROFILES=$PROFILES CDP_BENCH_TOKEN=$token \
    run_wrk "$out" -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$ROOT/bench/profiles.lua" "$url" &
  local wrk_job=$! t0 t1
  sleep 2
  cpu_labels
  local blks0 blks1
  blks0=$(sql -F ' ' -c "select blks_hit, blks_read from pg_stat_database where datname = 'cdp'")
  cpu_snap "$WORK/cpu_before"
  t0=$(date +%s%N)
  sleep $((DURATION > 6 ? DURATION - 4 : 1))
  cpu_snap "$WORK/cpu_after"
  t1=$(date +%s%N)
  blks1=$(sql -F ' ' -c "select blks_hit, blks_read from pg_stat_database where datname = 'cdp'")
  wait "$wrk_job" || die "wrk failed"
  parse_wrk "$out"
  RUN_CPU=$(cpu_report "$WORK/cpu_before" "$WORK/cpu_after" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')")
  [ "$NON2XX" = 0 ] || why+=("$NON2XX non-2xx answers")
  [ "$SOCKERR" = 0 ] || why+=("$SOCKERR socket errors")
  [ "$OK2XX" -gt 0 ] || why+=("no 200 answer")
  RUN_RPS=$(awk -v n="$OK2XX" -v s="$SECS" 'BEGIN { printf "%.0f", (s > 0) ? n / s : 0 }')
  RUN_P50=$P50 RUN_P99=$P99
  RUN_WHY=$(IFS=';'; echo "${why[*]:-}")
  RUN_WHY=${RUN_WHY//;/, }
  if [ ${#why[@]} = 0 ]; then RUN_OK=yes; else RUN_OK=NO; fi
  printf '  %-28s %7s lookups/s (200s)   p50 %6s ms   p99 %6s ms   non-2xx %s   socket errors %s   (%s answers in %s s)\n' \
    "$label" "$RUN_RPS" "$RUN_P50" "$RUN_P99" "$NON2XX" "$SOCKERR" "$REQUESTS" "$SECS"
  printf '  %-28s CPU, %% of one core: %s\n' "" "$RUN_CPU"
  # Shared buffers: pages found there, and read from the OS (its page cache
  # or the disk), over the same window, as pg_stat_database has them.
  printf '  %-28s database cdp: %s\n' "" "$(awk -v a="$blks0" -v b="$blks1" 'BEGIN { split(a, x, " "); split(b, y, " ")
    h = y[1] - x[1]; r = y[2] - x[2]; printf "%d buffer hits, %d reads (%.1f%% read) while sampled", h, r, (h + r) ? 100 * r / (h + r) : 0 }')"
  if [ "$RUN_OK" != yes ]; then
    echo "    !! FAILED: $RUN_WHY"
    [ -z "${CDP_BENCH_VERBOSE:-}" ] || sed 's/^/    | /' "$out"
  fi
}

# with_ingest LABEL URL TOKEN: lookup_run while bench/profiles_ingest.js sends
# RATE events/s to cdp's /v1/batch; sets ING_RATE, ING_OK, ING_WHY too.
with_ingest() {
  local res before after pending acked why=()
  before=$(sql -c "select count(*) from cdp.events")
  # It sends until stopped (SIGTERM), within a bound, then reports.
  node "$ROOT/bench/profiles_ingest.js" "$CDP_URL" wk "$RATE" $((WARMUP + DURATION + 120)) "$PROFILES" 50 >"$WORK/ingest.json" 2>&1 &
  INGEST_PID=$!
  sleep 3  # the processor reaches its pace
  lookup_run "$@"
  kill -TERM "$INGEST_PID" 2>/dev/null || true
  wait "$INGEST_PID" || die "the ingest sender failed: $(cat "$WORK/ingest.json")"
  INGEST_PID=""
  res=$(cat "$WORK/ingest.json")
  read -r ING_RATE acked < <(node -e 'const r = JSON.parse(process.argv[1]); console.log(r.rate, r.acked)' "$res") ||
    die "could not read the ingest sender's report: $res"
  after=$(sql -c "select count(*) from cdp.events")
  pending=$(sql -c "select events_pending from cdp.processor_stats")
  [ $((after - before)) -ge "$acked" ] || why+=("$((after - before)) events stored < $acked acknowledged")
  awk -v a="$ING_RATE" -v r="$RATE" 'BEGIN { exit !(a >= 0.9 * r) }' || why+=("ingest $ING_RATE ev/s < 90% of $RATE")
  ING_WHY=$(IFS=';'; echo "${why[*]:-}")
  ING_WHY=${ING_WHY//;/, }
  if [ ${#why[@]} = 0 ]; then ING_OK=yes; else ING_OK=NO; fi
  # shellcheck disable=SC2016 # JavaScript's template literal
  printf '  %-28s ingest: %s ev/s acknowledged (asked %s), %s; processor %s events behind at the end\n' "" "$ING_RATE" "$RATE" \
    "$(node -e 'const r = JSON.parse(process.argv[1]); console.log(`${r.acked} of ${r.sent} events in ${r.seconds} s, statuses ${JSON.stringify(r.statuses)}, errors ${r.errors}`)' "$res")" "$pending"
  [ "$ING_OK" = yes ] || echo "    !! FAILED: $ING_WHY"
}

CDP_SETTINGS="cdp.http_workers = $(sql -c "show cdp.http_workers"), cdp.http_threads = $(sql -c "show cdp.http_threads" 2>/dev/null || echo '?')"
[ ${#HTTP_SETTINGS[@]} -gt 0 ] && CDP_SETTINGS+=" (CDP_BENCH_HTTP_WORKERS)" || CDP_SETTINGS+=" (defaults)"
echo
echo "a) GET /v1/profiles/<user_id|email>:<value>, random profile per request, wrk -t1 -c$CONNS -d${DURATION}s after ${WARMUP}s of warm-up"
echo "   cdp: $CDP_SETTINGS; peer: $PEER_WORKERS Node workers, pg Pool of $PEER_POOL each; shared_buffers = $(sql -c "show shared_buffers")"
lookup_run "peer (Fastify + pg)" "$PEER_URL" "$PEER_TOKEN"
PEER_RPS=$RUN_RPS PEER_P50=$RUN_P50 PEER_P99=$RUN_P99 PEER_OK=$RUN_OK PEER_WHY=$RUN_WHY
if [ -z "$CDP_MISSING" ]; then
  lookup_run "cdp" "$CDP_URL" "$CDP_TOKEN"
  CDP_RPS=$RUN_RPS CDP_P50=$RUN_P50 CDP_P99=$RUN_P99 CDP_OK=$RUN_OK CDP_WHY=$RUN_WHY
else
  echo "  cdp: not measured ($CDP_MISSING)"
  CDP_RPS=0 CDP_P50=- CDP_P99=- CDP_OK=NO CDP_WHY=$CDP_MISSING
fi

echo
echo "b) the same while $RATE events/s go to cdp's /v1/batch (50 per request, processor on: it updates the profiles read)"
echo "   order reversed: cdp first, then the peer"
if [ -z "$CDP_MISSING" ]; then
  with_ingest "cdp, ingesting" "$CDP_URL" "$CDP_TOKEN"
  ICDP_RPS=$RUN_RPS ICDP_P50=$RUN_P50 ICDP_P99=$RUN_P99 ICDP_OK=$RUN_OK ICDP_WHY=$RUN_WHY
  ICDP_ING=$ING_RATE ICDP_ING_OK=$ING_OK ICDP_ING_WHY=$ING_WHY
else
  echo "  cdp: not measured ($CDP_MISSING)"
  ICDP_RPS=0 ICDP_P50=- ICDP_P99=- ICDP_OK=NO ICDP_WHY=$CDP_MISSING ICDP_ING=- ICDP_ING_OK=yes ICDP_ING_WHY=""
fi
with_ingest "peer, ingesting" "$PEER_URL" "$PEER_TOKEN"
IPEER_RPS=$RUN_RPS IPEER_P50=$RUN_P50 IPEER_P99=$RUN_P99 IPEER_OK=$RUN_OK IPEER_WHY=$RUN_WHY
IPEER_ING=$ING_RATE IPEER_ING_OK=$ING_OK IPEER_ING_WHY=$ING_WHY

errors=$(tail -c +"$((LOG_FROM + 1))" "$CLUSTER/server.log" | grep -E 'ERROR|FATAL|PANIC|WARNING|terminated by signal' || true)
echo
echo "server log since setup: $(printf '%s' "$errors" | grep -c . || true) ERROR/FATAL/PANIC/WARNING lines"
[ -z "$errors" ] || printf '%s\n' "$errors" | sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] //' | sort | uniq -c | sort -rn | head -10 | sed 's/^/  /'

###############################################################################
# summary_row LABEL CDP P50 P99 OK WHY PEER PP50 PP99 POK PWHY [ING_NOTE]
failed_note() { [ "$1" = yes ] || printf ' FAILED (%s)' "$2"; }
summary_row() {
  local r met
  r=$(ratio "$2" "$7" 2)
  met=$(awk -v c="$2" -v p99="$4" -v r="$r" -v ok="$5${10}$SAME" 'BEGIN {
    print (c >= 20000 && p99 != "-" && p99 < 5 && r != "-" && r >= 3 && ok == "yesyesyes") ? "yes" : "NO" }')
  printf '  %-44s %7s/s (p50 %s / p99 %s ms)%s   peer %7s/s (p50 %s / p99 %s ms)%s   %sx   %s\n' "$1" "$2" "$3" "$4" \
    "$(failed_note "$5" "$6")" "$7" "$8" "$9" "$(failed_note "${10}" "${11}")" "$r" "$met"
  bench_summary "$1" "$2/s (p50 $3 / p99 $4 ms)$(failed_note "$5" "$6")$(failed_note "$SAME" "$SAME_WHY")" \
    "$7/s peer (p50 $8 / p99 $9 ms)$(failed_note "${10}" "${11}")" "${r}x" ">= 20k/s, p99 < 5 ms, >= 3x peer" "$met"
}
# An ingest below 90% fails the row of the side it ran beside.
join_why() { local a=$1 b=$2; printf '%s' "$a${a:+${b:+, }}$b"; }
[ "$ICDP_ING_OK" = yes ] || { ICDP_OK=NO; ICDP_WHY=$(join_why "$ICDP_WHY" "$ICDP_ING_WHY"); }
[ "$IPEER_ING_OK" = yes ] || { IPEER_OK=NO; IPEER_WHY=$(join_why "$IPEER_WHY" "$IPEER_ING_WHY"); }

echo
echo "Profile API summary (target: >= 20,000 lookups/s, p99 < 5 ms, >= 3x the peer; same JSON as the peer: $SAME)"
WORKERS_LABEL=""
[ -z "${CDP_BENCH_HTTP_WORKERS:-}" ] || WORKERS_LABEL=", cdp.http_workers = $CDP_BENCH_HTTP_WORKERS"
summary_row "profile API lookups, $SIZE profiles, $CONNS conns$WORKERS_LABEL" "$CDP_RPS" "$CDP_P50" "$CDP_P99" "$CDP_OK" "$CDP_WHY" \
  "$PEER_RPS" "$PEER_P50" "$PEER_P99" "$PEER_OK" "$PEER_WHY"
summary_row "profile API lookups, $SIZE profiles, $CONNS conns, ingesting $RATE ev/s$WORKERS_LABEL" "$ICDP_RPS" "$ICDP_P50" "$ICDP_P99" \
  "$ICDP_OK" "$ICDP_WHY" "$IPEER_RPS" "$IPEER_P50" "$IPEER_P99" "$IPEER_OK" "$IPEER_WHY"
echo "  ingest achieved: $ICDP_ING ev/s beside cdp, $IPEER_ING ev/s beside the peer (asked $RATE)"
echo "(bench/profiles.sh took $(($(date +%s) - START)) s)"
[ "$SAME" = yes ] && [ -z "$CDP_MISSING" ]
