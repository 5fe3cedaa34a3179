#!/usr/bin/env bash
# End-to-end (issue 11): no single input or state may crash or stall the
# processor worker. Against the running worker of database cdp:
#  - SIGTERM ends it within seconds even mid-batch (here: blocked on a lock
#    held by another session), and it comes back;
#  - the row of cdp.processor_state deleted: no crash, the row is made again
#    and processing goes on;
#  - a batch past cdp.processor_batch_timeout: bisected down to the event,
#    which is set aside in cdp.quarantine with the reason, and the worker
#    goes on; a budget spent waiting for a lock sets nothing aside;
#  - a refused cdp.create_destination or insert into cdp.destinations does
#    not write the secret or header values to the server log.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"
LOG="$CLUSTER_DIR/server.log"

processor_pid() { sql "select pid from pg_stat_activity where backend_type = 'cdp processor'"; }
wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds
  local deadline=$(($(now_ms) + $1 * 1000))
  shift
  while [ "$(now_ms)" -lt "$deadline" ]; do
    "$@" && return 0
    sleep 0.2
  done
  return 1
}
processor_up() { [ -n "$(processor_pid)" ]; }
processed() { [ "$(sql "select count(*) from cdp.event_profiles ep join cdp.events e on e.id = ep.event_id where e.message_id = '$1'")" = 1 ]; }
set_conf() { # set_conf NAME VALUE (ALTER SYSTEM and a reload)
  sql "alter system set $1 = '$2'" >/dev/null && sql "select pg_reload_conf()" >/dev/null
  sleep 0.5
}
reset_conf() { sql "alter system reset $1" >/dev/null && sql "select pg_reload_conf()" >/dev/null; sleep 0.5; }
E2E_CLEANUP+=('reset_conf cdp.processor_batch_timeout')
LOCKER=""
E2E_CLEANUP+=('[ -z "$LOCKER" ] || kill "$LOCKER" 2>/dev/null')

say "$E2E_NAME: poison inputs and states against the processor worker"
section "setup"
setup_extension
sql "update cdp.processor_state set paused = false" >/dev/null
wait_for 20 processor_up && pass "the processor worker runs" || die "no cdp processor in pg_stat_activity"
log_start=$(wc -c <"$LOG")
crashes() { tail -c +"$((log_start + 1))" "$LOG" | grep -c "terminated by signal" || true; }

section "SIGTERM mid-batch"
# Another session holds cdp.profiles; the processor's batch waits for it when it
# writes. (Exclusive, not access exclusive: that one takes a transaction id,
# and the processor would not even read events committed after it.)
cluster_psql "$CLUSTER_DIR" cdp -c "begin; lock table cdp.profiles in exclusive mode; select pg_sleep(60);" \
  >/dev/null 2>&1 &
LOCKER=$!
sleep 0.5
sql "select cdp.identify(user_id => 'sig-$RUN_ID', message_id => 'sig-$RUN_ID')" >/dev/null
blocked() { [ "$(sql "select count(*) from pg_stat_activity where backend_type = 'cdp processor' and wait_event_type = 'Lock'")" = 1 ]; }
wait_for 10 blocked && pass "the processor's batch waits for the lock" || fail "the processor never waited for the lock"
old=$(processor_pid)
t0=$(now_ms)
sql "select pg_terminate_backend($old)" >/dev/null
gone() { [ "$(sql "select count(*) from pg_stat_activity where pid = $old")" = 0 ]; }
if wait_for 5 gone; then pass "SIGTERM ended it mid-batch in $(($(now_ms) - t0)) ms"; else fail "still running 5 s after SIGTERM"; fi
kill "$LOCKER" 2>/dev/null
sql "select pg_terminate_backend(pid) from pg_stat_activity where query like 'begin; lock table cdp.profiles%' and pid <> pg_backend_pid()" >/dev/null
LOCKER=""
wait_for 20 processor_up && pass "the postmaster started it again" || fail "no processor after SIGTERM"
wait_for 20 processed "sig-$RUN_ID" && pass "the rolled-back batch was processed again" || fail "sig-$RUN_ID never processed"

section "processor_state deleted"
sql "delete from cdp.processor_state" >/dev/null
sql "select cdp.track('After', user_id => 'st-$RUN_ID', message_id => 'st-$RUN_ID')" >/dev/null
wait_for 20 processed "st-$RUN_ID" && pass "events are still processed" || fail "st-$RUN_ID never processed"
check_eq "the row is back" "$(sql "select count(*) from cdp.processor_state")" 1
check_eq "no backend crashed" "$(crashes)" 0

section "batch budget"
# One event makes its batch slow: a trigger sleeps on the profile it writes.
sql "create function public.slow_profile() returns trigger language plpgsql as
  \$\$ begin if new.traits ? 'poison' then perform pg_sleep(3); end if; return new; end \$\$" >/dev/null
sql "create trigger slow_profile before insert or update on cdp.profiles for each row execute function public.slow_profile()" >/dev/null
E2E_CLEANUP+=('sql "set client_min_messages = warning; drop trigger if exists slow_profile on cdp.profiles; drop function if exists public.slow_profile()" >/dev/null')
set_conf cdp.processor_batch_timeout 1000
sql "update cdp.processor_state set paused = true" >/dev/null
sleep 0.5
sql "select cdp.identify(user_id => 'b-$RUN_ID', traits => '{\"poison\": true}', message_id => 'b-$RUN_ID')" >/dev/null
for i in 1 2 3; do sql "select cdp.track('Good', user_id => 'g$i-$RUN_ID', message_id => 'g$i-$RUN_ID')" >/dev/null; done
sql "update cdp.processor_state set paused = false" >/dev/null
quarantined() { [ "$(sql "select count(*) from cdp.quarantine where message_id = 'b-$RUN_ID' and field = 'processor'")" = 1 ]; }
if wait_for 60 quarantined; then
  pass "the event past a 1 s budget is set aside in cdp.quarantine"
  check_match "with the reason" "$(sql "select reason from cdp.quarantine where message_id = 'b-$RUN_ID'")" \
    "cdp.processor_batch_timeout"
else
  fail "b-$RUN_ID not quarantined within 60 s"
fi
wait_for 20 processed "g3-$RUN_ID" && pass "the events after it are processed" || fail "g3-$RUN_ID never processed"
check_eq "all of them" "$(sql "select count(*) from cdp.event_profiles ep join cdp.events e on e.id = ep.event_id where e.message_id like 'g_-$RUN_ID'")" 3
sql "drop trigger slow_profile on cdp.profiles" >/dev/null
reset_conf cdp.processor_batch_timeout
sql "select cdp.track('Fine', user_id => 'f-$RUN_ID', message_id => 'f-$RUN_ID')" >/dev/null
wait_for 20 processed "f-$RUN_ID" && pass "the next event is processed" || fail "f-$RUN_ID never processed"
# A budget spent waiting for a lock is nobody's fault: nothing is set aside.
set_conf cdp.processor_batch_timeout 300
cluster_psql "$CLUSTER_DIR" cdp -c "begin; lock table cdp.profiles in exclusive mode; select pg_sleep(3);" \
  >/dev/null 2>&1 &
LOCKER=$!
sleep 0.5
sql "select cdp.track('Waits', user_id => 'w-$RUN_ID', message_id => 'w-$RUN_ID')" >/dev/null
wait "$LOCKER" 2>/dev/null
LOCKER=""
reset_conf cdp.processor_batch_timeout
wait_for 20 processed "w-$RUN_ID" && pass "an event held up by a lock is processed once it is free" ||
  fail "w-$RUN_ID never processed"
check_eq "and was not quarantined" "$(sql "select count(*) from cdp.quarantine where message_id = 'w-$RUN_ID'")" 0
check_eq "no backend crashed" "$(crashes)" 0

section "SIGTERM with a delivery hanging"
# A receiver that accepts and never answers; the destination waits up to 5 minutes.
HANG_PORT=$(free_port 19900)
python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $HANG_PORT)); s.listen(64); held = []
while True: held.append(s.accept()[0])
" &
HANG=$!
E2E_CLEANUP+=('kill "$HANG" 2>/dev/null')
sql "select cdp.create_destination('hang-$RUN_ID', 'http://127.0.0.1:$HANG_PORT/hook',
  '{\"subscribe\": {\"events\": true}, \"timeout_ms\": 300000}')" >/dev/null
sql "select cdp.track('Hang', user_id => 'h-$RUN_ID', message_id => 'h-$RUN_ID')" >/dev/null
wait_for 20 processed "h-$RUN_ID" || fail "h-$RUN_ID never processed"
sleep 2  # the request is sent and waits
delivery_pid=$(sql "select pid from pg_stat_activity where backend_type = 'cdp delivery'")
t0=$(now_ms)
sql "select pg_terminate_backend($delivery_pid)" >/dev/null
delivery_gone() { [ "$(sql "select count(*) from pg_stat_activity where pid = $delivery_pid")" = 0 ]; }
if wait_for 10 delivery_gone; then pass "the delivery worker left within $(($(now_ms) - t0)) ms of SIGTERM"; else
  fail "the delivery worker still runs 10 s after SIGTERM"; fi
check_eq "the delivery is still queued" "$(sql "select count(*) from cdp.deliveries d join cdp.destinations t using (destination_id) where t.name = 'hang-$RUN_ID'")" 1
sql "select cdp.drop_destination('hang-$RUN_ID')" >/dev/null 2>&1 || sql "delete from cdp.destinations where name = 'hang-$RUN_ID'" >/dev/null
kill "$HANG" 2>/dev/null

section "destination secrets stay out of the log"
sql "select cdp.create_destination('leak-$RUN_ID', 'https://example.com/hook',
  '{\"secret\": \"short-SEKRIT\", \"headers\": {\"Authorization\": \"Bearer TOKEN-$RUN_ID\"}}')" >/dev/null 2>&1 &&
  fail "a 12-character secret was accepted"
sql "insert into cdp.destinations (name, url, options) values ('leak2-$RUN_ID', 'https://example.com/hook',
  '{\"headers\": {\"Authorization\": \"Bearer TOKEN-$RUN_ID\\nX: y\"}}')" >/dev/null 2>&1 &&
  fail "a header with a line break was accepted"
sleep 0.3
logged=$(tail -c +"$((log_start + 1))" "$LOG")
check_match "the refusals are logged" "$logged" "options.secret: must be a string of at least 16 characters"
check_eq "no secret in the log" "$(grep -c "short-SEKRIT" <<<"$logged")" 0
check_eq "no header value in the log" "$(grep -c "TOKEN-$RUN_ID" <<<"$logged")" 0

finish
