#!/usr/bin/env bash
# End-to-end: the ./dev commands a new user meets first, on a local cluster of
# their own (CDP_DEV_DIR), without building (--no-build): help lists every
# command; psql, key, stop and reset say what is wrong before there is a
# cluster; up refuses a taken HTTP port and reports a worker that cannot
# listen, with what to do, and CDP_HTTP_PORT moves it; up loads the demo
# dataset once; stop and reset say what they did, and reset needs --yes when
# it cannot ask. CLUSTER_DIR is not touched.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"

chmod 755 "$E2E_TMP"  # as root, the cluster belongs to postgres, who must reach it
export CDP_DEV_DIR="$E2E_TMP/dev"
E2E_CLEANUP+=("stop_cluster '$CDP_DEV_DIR'")
DEV="$ROOT/dev"
# run ARGS...: runs ./dev; its output (stdout and stderr) in OUT, status in RC.
run() { OUT=$("$DEV" "$@" 2>&1 </dev/null); RC=$?; }

say "$E2E_NAME: ./dev against $CDP_DEV_DIR"

section "help"
run help
check_eq "./dev help exits 0" "$RC" 0
for c in deps build up stop reset psql key demo test bench help; do
  check_match "help lists $c" "$OUT" $'(^|\n)  '"$c"'( |\n|$)'
done
stray=$(printf '%s\n' "$OUT" | grep -vE '^(usage: \./dev COMMAND|  .*|)$' || true)
check_eq "help has no stray line" "$stray" ""
run frobnicate
check_eq "an unknown command exits 2" "$RC" 2
check_match "... and says so, with the list" "$OUT" 'unknown command "frobnicate".*usage:'

section "before ./dev up"
run psql -c 'select 1'
check_eq "./dev psql exits 1" "$RC" 1
check_eq "./dev psql says what to do" "$OUT" "no local cluster: run ./dev up"
run key
check_eq "./dev key says the same" "$OUT" "no local cluster: run ./dev up"
run stop
check_eq "./dev stop says there is nothing to stop" "$OUT" "no local cluster in $CDP_DEV_DIR: nothing to stop"
run reset --yes
check_eq "./dev reset says there is nothing to reset" "$OUT" "no local cluster in $CDP_DEV_DIR: nothing to reset"

section "up, with the HTTP port in trouble"
HTTP1=$(free_port 19065)
CDP_HTTP_PORT=$HTTP1 run up --no-build --no-demo
check_eq "./dev up --no-demo exits 0" "$RC" 0
check_match "it says cdp is running, with the HTTP address" "$OUT" "cdp is running.*HTTP: +http://127\.0\.0\.1:$HTTP1 "
KEY=$(printf '%s\n' "$OUT" | sed -nE 's/^  Write key: +(cdp_[0-9a-f]+).*/\1/p')
check_match "it prints a write key" "$KEY" '^cdp_[0-9a-f]{64}$'
run key
check_eq "./dev key prints that key" "$OUT" "$KEY"
run token
TOKEN=$OUT
check_match "./dev token prints a read token" "$TOKEN" '^cdpr_[0-9a-f]{64}$'
run token
check_eq "... the same one again" "$OUT" "$TOKEN"
run stop
check_match "./dev stop says it stopped the cluster" "$OUT" "^stopped the local cluster in $CDP_DEV_DIR"
run stop
check_match "a second ./dev stop says it is already stopped" "$OUT" "already stopped"
run psql -c 'select 1'
check_eq "./dev psql on a stopped cluster says so" "$OUT" "the local cluster in $CDP_DEV_DIR is stopped: run ./dev up"

node -e 'require("net").createServer().listen(Number(process.argv[1]), "127.0.0.1")' "$HTTP1" &
squatter=$!
E2E_CLEANUP+=("kill $squatter 2>/dev/null")
for _ in $(seq 50); do port_in_use "$HTTP1" && break; sleep 0.1; done
run up --no-build --no-demo
check_eq "./dev up with its HTTP port taken exits 1" "$RC" 1
check_match "... says so and how to pick another" "$OUT" "HTTP port is taken: it was not started.*CDP_HTTP_PORT=[0-9]+ \./dev up"
check_eq "... and does not start the server" "$(cluster_running "$CDP_DEV_DIR" && echo running)" ""
kill "$squatter"
wait "$squatter" 2>/dev/null

# An address the worker cannot bind (TEST-NET-1, on no interface here).
run up --no-build --no-demo
cluster_psql "$CDP_DEV_DIR" postgres -c "alter system set cdp.http_listen = '192.0.2.1:$HTTP1'" >/dev/null
"$DEV" stop >/dev/null
run up --no-build --no-demo
check_eq "./dev up when the worker cannot listen exits 1" "$RC" 1
check_match "... quotes the server log and says how to pick another port" "$OUT" \
  "cannot listen on 192\.0\.2\.1:$HTTP1.*could not listen on 192\.0\.2\.1:$HTTP1.*CDP_HTTP_PORT=[0-9]+ \./dev up"
HTTP2=$(free_port $((HTTP1 + 1)))
CDP_HTTP_PORT=$HTTP2 run up --no-build --no-demo
check_eq "CDP_HTTP_PORT=$HTTP2 ./dev up exits 0" "$RC" 0
check_match "... moved the worker there" "$OUT" "cdp is running.*http://127\.0\.0\.1:$HTTP2 "
check_eq "... it answers /health" "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP2/health")" 200

section "the demo dataset, once"
run up --no-build
check_eq "./dev up exits 0" "$RC" 0
check_match "it loaded the demo dataset" "$OUT" "demo: [0-9]+ messages .* 0 rejected"
dsql() { cluster_psql "$CDP_DEV_DIR" cdp -tAc "$1"; }
events=$(dsql "select count(*) from cdp.events where message_id like 'demo-%'")
check_ge "demo events stored" "$events" 2000
check_eq "... and processed" "$(dsql "select events_pending from cdp.processor_stats")" 0
check_ge "demo people" "$(dsql "select count(*) from cdp.profiles")" 300
check_ge "demo merges" "$(dsql "select count(*) from cdp.profile_merges")" 1
check_eq "ada's events" "$(dsql "select cdp.profile('user_id', 'ada') -> 'event_count'")" 8
run up --no-build
check_eq "a second ./dev up exits 0" "$RC" 0
check_eq "... loads nothing again" "$(printf '%s\n' "$OUT" | grep -c 'demo: ')" 0
check_eq "... the events are as they were" "$(dsql "select count(*) from cdp.events where message_id like 'demo-%'")" "$events"
run demo
check_match "./dev demo sends it again, all duplicates" "$OUT" "0 accepted, $events duplicate, 0 rejected"

section "reset"
run reset
check_eq "./dev reset without a terminal or --yes exits 2" "$RC" 2
check_match "... says to add --yes" "$OUT" "add --yes"
check_eq "... and deletes nothing" "$([ -d "$CDP_DEV_DIR/data" ] && echo kept)" kept
run reset --yes
check_eq "./dev reset --yes exits 0" "$RC" 0
check_eq "... says what it did" "$OUT" "deleted the local cluster in $CDP_DEV_DIR (./dev up makes a new one)"
check_eq "... the folder is gone" "$([ -e "$CDP_DEV_DIR" ] && echo still there)" ""
finish
