#!/usr/bin/env bash
# End-to-end: a server started with cdp preloaded before its database exists,
# as on anyone's first start. The workers must wait quietly (no FATAL or ERROR
# in the log), still stop at once on SIGTERM while waiting, and pick up the
# database within a few seconds of CREATE DATABASE: after CREATE EXTENSION an
# event sent over HTTP is stored and processed into a profile. Runs its own
# throwaway clusters; CLUSTER_DIR is not touched.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"

chmod 755 "$E2E_TMP"  # as root, the cluster belongs to postgres, who must reach it
FRESH="$E2E_TMP/fresh"
E2E_CLEANUP+=("stop_cluster '$FRESH'")
# errors_in LOG: the FATAL, ERROR and PANIC lines of a server log.
errors_in() { grep -E '(FATAL|ERROR|PANIC):' "$1" || true; }

say "$E2E_NAME: workers started before database cdp exists"

section "stopped while waiting"
init_cluster "$FRESH" "$(free_port 57532)" "$(free_port 19865)" || die "initdb failed"
start_cluster "$FRESH" || die "the server did not start"
sleep 2
check_eq "no FATAL or ERROR while the workers wait" "$(errors_in "$FRESH/server.log")" ""
check_match "one LOG line says what they wait for" "$(grep -c 'waiting for database "cdp"' "$FRESH/server.log")" '^1$'
t0=$(now_ms)
stop_cluster "$FRESH"
took=$(($(now_ms) - t0))
if [ "$took" -lt 5000 ]; then pass "a fast shutdown while they wait takes ${took} ms"; else fail "shutdown took ${took} ms"; fi
check_eq "no FATAL or ERROR at that shutdown" "$(errors_in "$FRESH/server.log")" ""
rm -rf "$FRESH"

section "the database created later"
init_cluster "$FRESH" "$(free_port 57532)" "$(free_port 19865)" || die "initdb failed"
start_cluster "$FRESH" || die "the server did not start"
sleep 3  # several rounds of waiting
cluster_psql "$FRESH" postgres -c "create database cdp" || die "create database cdp failed"
deadline=$(($(now_ms) + 10000))
connected=0
while [ "$(now_ms)" -lt "$deadline" ]; do
  connected=$(cluster_psql "$FRESH" postgres -tAc \
    "select count(*) from pg_stat_activity where datname = 'cdp' and backend_type in ('cdp http', 'cdp processor', 'cdp delivery')")
  [ "$connected" = 3 ] && break
  sleep 0.2
done
check_eq "the HTTP, processor and delivery workers connect within 10 s" "$connected" 3
cluster_psql "$FRESH" cdp -c "set client_min_messages = warning; create extension cdp" || die "create extension cdp failed"
BASE="http://127.0.0.1:$(cat "$FRESH/http_port")"
wait_healthy 20 && pass "GET /health answers 200" || die "GET $BASE/health: $(health_status)"
KEY=$(cluster_psql "$FRESH" cdp -tAc "select cdp.create_source('first_start')")
http POST /v1/track -u "$KEY:" -H 'Content-Type: application/json' \
  -d '{"userId": "first-user", "event": "Signed Up", "messageId": "first-1"}'
check_eq "POST /v1/track answers 200" "$STATUS" 200
deadline=$(($(now_ms) + 10000))
profile=""
while [ "$(now_ms)" -lt "$deadline" ]; do
  profile=$(cluster_psql "$FRESH" cdp -tAc "select cdp.profile_id('user_id', 'first-user')")
  [ -n "$profile" ] && break
  sleep 0.2
done
check_match "the processor worker made a profile of it within 10 s" "$profile" '^[0-9]+$'
check_eq "no FATAL or ERROR in the whole log" "$(errors_in "$FRESH/server.log")" ""
finish
