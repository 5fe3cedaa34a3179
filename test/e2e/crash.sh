#!/usr/bin/env bash
# End-to-end: kill -9 of the postmaster under HTTP load loses no acknowledged
# event and duplicates none. 16 keep-alive clients (test/e2e/crash_client.mjs)
# send /v1/track and /v1/batch requests with unique messageIds; the postmaster
# is killed with SIGKILL mid-load and the cluster restarted, twice; the clients
# retry every request that did not get a 200, with the same messageIds, until
# all are acknowledged (only connection errors, timeouts and 503 may happen and
# be retried: any other answer fails the test). Then every acknowledged messageId, and every messageId
# sent, must be in cdp.events exactly once. Bounded well under 2 minutes; the
# cluster is left running and healthy.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"
SCRIPT_START=$(now_ms)
elapsed() { echo "$(( ($(now_ms) - SCRIPT_START) / 1000 )) s"; }

PGDATA_DIR="$CLUSTER_DIR/data"
postmaster_pid() { head -1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null; }
# children_of PID: the processes whose parent is PID (from /proc: no procps needed).
children_of() {
  local stat line rest
  for stat in /proc/[0-9]*/stat; do
    { read -r line <"$stat"; } 2>/dev/null || continue
    rest=${line##*) }  # after "pid (comm) ": state ppid ...
    rest=${rest#* }
    [ "${rest%% *}" = "$1" ] && { stat=${stat#/proc/}; echo "${stat%/stat}"; }
  done
}
cluster_running() { as_cluster_user "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; }
# Whatever happens, leave the cluster running for the scripts that follow.
ensure_cluster_up() {
  if ! cluster_running; then
    echo "(restarting the cluster for the scripts that follow)"
    start_cluster "$CLUSTER_DIR" || true
  fi
}
E2E_CLEANUP+=("ensure_cluster_up")
CLIENT_PID=""
E2E_CLEANUP+=('[ -z "$CLIENT_PID" ] || kill "$CLIENT_PID" 2>/dev/null')

say "$E2E_NAME: kill -9 of the postmaster under load at $BASE"
section "setup"
command -v node >/dev/null || die "node is required (./dev installs it)"
setup_extension
SRC="crash_$RUN_ID"
KEY=$(sql "select cdp.create_source('$SRC')") || die "cdp.create_source failed"
SRC_ID=$(sql "select id from cdp.sources where name = '$SRC'")
pass "source $SRC created (id $SRC_ID)"
source_events() { sql "select count(*) from cdp.events where source_id = $SRC_ID" 2>/dev/null || echo "?"; }
progress() { node -e '
  const p = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`        t=${p.seconds.toFixed(1)}s sent=${p.sent} acked=${p.acked} requests=${p.requests} attempts=${p.attempts} failures=${JSON.stringify(p.failures)}`);
' "$E2E_TMP/progress.json" 2>/dev/null || true; }

###############################################################################
section "load: 16 keep-alive clients, /v1/track and /v1/batch"
node "$ROOT/test/e2e/crash_client.mjs" "$BASE" "$KEY" "$RUN_ID-crash" "$E2E_TMP" 16 90 >"$E2E_TMP/client.out" 2>&1 &
CLIENT_PID=$!
# wait_for_load MIN_EVENTS: until the source has that many events (and 2 s have passed).
wait_for_load() {
  local deadline=$(($(now_ms) + 15000)) earliest=$(($(now_ms) + 2000)) n
  while [ "$(now_ms)" -lt "$deadline" ]; do
    n=$(source_events)
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge "$1" ] && [ "$(now_ms)" -ge "$earliest" ] && break
    kill -0 "$CLIENT_PID" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$CLIENT_PID" 2>/dev/null || die "the load client stopped early: $(cat "$E2E_TMP/client.out")"
  check_ge "events committed under load" "$(source_events)" "$1"
  progress
}

# crash_and_restart: kill -9 the postmaster (and any child that lingers), restart, wait for /health.
crash_and_restart() {
  local pm children alive acked p restart_start
  pm=$(postmaster_pid)
  [[ "$pm" =~ ^[0-9]+$ ]] || die "no postmaster pid in $PGDATA_DIR/postmaster.pid"
  children=$(children_of "$pm" | tr '\n' ' ')
  acked=$(node -p 'require(process.argv[1]).acked' "$E2E_TMP/progress.json" 2>/dev/null || echo "?")
  kill -9 "$pm" || die "kill -9 $pm failed"
  say "  killed postmaster $pm (children: $children) with about $acked messages acknowledged so far"
  # The children notice the postmaster's death and exit; any that linger get SIGKILL too.
  local deadline=$(($(now_ms) + 5000))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    alive=""
    for p in $pm $children; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  if [ -n "$alive" ]; then
    say "  still alive after 5 s:$alive; kill -9"
    for p in $alive; do kill -9 "$p" 2>/dev/null || true; done
    sleep 0.5
  fi
  for p in $pm $children; do kill -0 "$p" 2>/dev/null && die "process $p of the old cluster survived kill -9"; done
  pass "postmaster and all its children are gone"
  check_eq "nothing answers on the HTTP port while the cluster is down" "$(health_status)" 000
  sleep 1  # the clients keep retrying against a dead port
  progress
  restart_start=$(now_ms)
  start_cluster "$CLUSTER_DIR" 2>/dev/null || die "the cluster did not restart after kill -9 (see $CLUSTER_DIR/server.log)"
  pass "cluster restarted after $(( $(now_ms) - restart_start )) ms (crash recovery included)"
  wait_healthy 30 || die "GET /health not 200 within 30 s of the restart (last: $(health_status))"
  pass "GET /health answers 200 again $(( $(now_ms) - restart_start )) ms after the restart began"
}

wait_for_load 3000
section "kill -9 the postmaster under load, restart"
crash_and_restart
section "a second crash: more load on the recovered server, kill -9 again"
wait_for_load $(( $(source_events) + 3000 ))
crash_and_restart

section "the clients finish"
# More load on the recovered server, then the clients only finish what they have.
sleep 2
progress
kill -USR2 "$CLIENT_PID"
say "  clients told to stop starting new requests; waiting for every pending one to be acknowledged"
deadline=$(($(now_ms) + 45000))
while kill -0 "$CLIENT_PID" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.2; done
if kill -0 "$CLIENT_PID" 2>/dev/null; then
  kill "$CLIENT_PID"
  die "the clients did not get every request acknowledged within 45 s: $(progress)"
fi
wait "$CLIENT_PID"
client_rc=$?
CLIENT_PID=""
summary=$(cat "$E2E_TMP/summary.json" 2>/dev/null || cat "$E2E_TMP/client.out")
say "  client summary: $summary"
check_eq "every request sent was acknowledged by a 200 (client exit status)" "$client_rc" 0
check_eq "no 200 body with wrong counts" "$(jget "$summary" bad_bodies)" "[]"
check_eq "no failure but refused or reset connections, timeouts and 503 (the ones a client may retry)" \
  "$(jget "$summary" unexpected)" "{}"
check_ge "requests that needed retries across the crash" "$(jget "$summary" retried)" 1
check_eq "partly committed requests (accepted and duplicate in one answer)" "$(jget "$summary" partial)" 0

###############################################################################
section "every acknowledged and every sent messageId stored exactly once"
sent_n=$(grep -c . "$E2E_TMP/sent.txt")
acked_n=$(grep -c . "$E2E_TMP/acked.txt")
check_eq "the client's sent messageIds are unique" "$(sort "$E2E_TMP/sent.txt" | uniq -d | grep -c .)" 0
result=$({
  echo "create temp table sent (id text primary key);"
  echo "create temp table acked (id text primary key);"
  echo "copy sent from stdin;"
  cat "$E2E_TMP/sent.txt"
  echo '\.'
  echo "copy acked from stdin;"
  cat "$E2E_TMP/acked.txt"
  echo '\.'
  echo "create temp table stored as select message_id, count(*) as n from cdp.events where source_id = $SRC_ID group by 1;"
  echo "select 'sent', count(*) from sent;"
  echo "select 'acked', count(*) from acked;"
  echo "select 'acked_missing', count(*) from acked a where not exists (select 1 from stored s where s.message_id = a.id);"
  echo "select 'sent_missing', count(*) from sent a where not exists (select 1 from stored s where s.message_id = a.id);"
  echo "select 'duplicated', count(*) from stored where n > 1;"
  echo "select 'unexpected', count(*) from stored s where not exists (select 1 from sent a where a.id = s.message_id);"
  echo "select 'events', coalesce(sum(n), 0) from stored;"
  echo "select 'ledger', count(*) from cdp.message_ids where source_id = $SRC_ID;"
  echo "select 'quarantined', count(*) from cdp.quarantine where source_id = $SRC_ID;"
  echo "select 'missing_sample', coalesce(string_agg(id, ' '), '') from (select id from acked a where not exists (select 1 from stored s where s.message_id = a.id) limit 5) x;"
  echo "select 'dup_sample', coalesce(string_agg(message_id || 'x' || n, ' '), '') from (select * from stored where n > 1 limit 5) x;"
} | cluster_psql "$CLUSTER_DIR" cdp -tA -F ' ' 2>&1)
get() { printf '%s\n' "$result" | awk -v k="$1" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }'; }
[ -n "$(get sent)" ] || die "the check query failed: $result"
check_eq "SQL saw every messageId the client sent" "$(get sent)" "$sent_n"
check_eq "SQL saw every messageId acknowledged" "$(get acked)" "$acked_n"
check_ge "messageIds acknowledged" "$acked_n" 1000
check_eq "acknowledged messageIds missing from cdp.events (lost)" "$(get acked_missing)" 0
check_eq "sent messageIds missing from cdp.events" "$(get sent_missing)" 0
check_eq "messageIds stored more than once (duplicated by retries)" "$(get duplicated)" 0
check_eq "events of this source that nobody sent" "$(get unexpected)" 0
check_eq "events stored = messageIds sent" "$(get events)" "$sent_n"
check_eq "dedup ledger (cdp.message_ids) has each once" "$(get ledger)" "$sent_n"
check_eq "nothing quarantined" "$(get quarantined)" 0
[ -z "$(get missing_sample)" ] || say "  lost, e.g.: $(get missing_sample)"
[ -z "$(get dup_sample)" ] || say "  duplicated, e.g.: $(get dup_sample)"

###############################################################################
section "the cluster is left healthy"
check_eq "GET /health" "$(health_status)" 200
post_id="$RUN_ID-crash-after"
check_eq "POST /v1/track after recovery" \
  "$(curl -s -m 10 -o /dev/null -w '%{http_code}' -u "$KEY:" -H 'Content-Type: application/json' \
      --data-binary '{"userId":"u","event":"After","messageId":"'"$post_id"'"}' "$BASE/v1/track")" 200
check_eq "...and it is stored" "$(sql "select count(*) from cdp.events where source_id = $SRC_ID and message_id = '$post_id'")" 1
check_ge "cdp.workers lists the HTTP worker" "$(sql "select count(*) from cdp.workers where backend_type = 'cdp http'")" 1
say "  total time $(elapsed)"
if [ $(( ($(now_ms) - SCRIPT_START) / 1000 )) -lt 120 ]; then pass "finished within 2 minutes"; else fail "took $(elapsed), more than 2 minutes"; fi

finish
