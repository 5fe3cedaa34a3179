#!/usr/bin/env bash
# End-to-end: the upgrade path. A database created at 0.1.0 (the frozen
# release) and filled with events is brought to the current version with
# ALTER EXTENSION cdp UPDATE; it must then be the same extension as a fresh
# CREATE EXTENSION (every member object, definition, privilege, comment and
# pg_dump registration: test/e2e/sql/extension_catalog.sql), keep its data,
# take new events, and back up and restore like a fresh one. A 0.1.0 database
# holding a time 0.2.0 refuses is not updated, with an error that says why.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"

OLD_DB="upgrade_old_$RUN_ID"
NEW_DB="upgrade_new_$RUN_ID"
COPY_DB="upgrade_copy_$RUN_ID"
BAD_DB="upgrade_bad_$RUN_ID"
db() { local d=$1; shift; cluster_psql "$CLUSTER_DIR" "$d" -tA "$@"; }
E2E_CLEANUP+=("cluster_psql '$CLUSTER_DIR' postgres -c 'drop database if exists $OLD_DB' -c 'drop database if exists $NEW_DB' -c 'drop database if exists $COPY_DB' -c 'drop database if exists $BAD_DB' >/dev/null 2>&1")
CURRENT=$(sed -nE "s/^default_version = '([^']+)'/\1/p" "$ROOT/cdp.control")

say "$E2E_NAME: 0.1.0 -> $CURRENT"
cluster_psql "$CLUSTER_DIR" postgres -c "create database $OLD_DB" -c "create database $NEW_DB" -c "create database $COPY_DB" -c "create database $BAD_DB" >/dev/null ||
  die "could not create the databases"

section "0.1.0 with data"
db "$OLD_DB" -q >/dev/null <<'SQL' || die "installing 0.1.0 and ingesting failed"
\set ON_ERROR_STOP 1
set client_min_messages = warning;
create extension cdp version '0.1.0';
select * from cdp.ingest('{"batch": [
  {"type": "identify", "userId": "ada", "traits": {"email": "ada@example.com"}, "messageId": "o1"},
  {"type": "track", "userId": "ada", "event": "Order Completed", "messageId": "o2"}]}');
select cdp.process_pending();
select cdp.create_computed_trait('orders', '{"kind": "count", "event": "Order Completed"}');
select cdp.create_segment('buyers', '{"event": "Order Completed", "count": {"op": ">=", "value": 2}}');
SQL
check_eq "installed at 0.1.0" "$(db "$OLD_DB" -c "select extversion from pg_extension where extname = 'cdp'")" "0.1.0"
BEFORE=$(db "$OLD_DB" -c "select count(*) || ' events, ' || (select count(*) from cdp.profiles) || ' profiles' from cdp.events")

section "ALTER EXTENSION cdp UPDATE"
if db "$OLD_DB" -c "alter extension cdp update" >"$E2E_TMP/update.out" 2>&1; then pass "the update runs"; else
  fail "the update failed: $(cat "$E2E_TMP/update.out")"
fi
check_eq "now at $CURRENT" "$(db "$OLD_DB" -c "select extversion from pg_extension where extname = 'cdp'")" "$CURRENT"
check_eq "the data is all there" "$(db "$OLD_DB" -c "select count(*) || ' events, ' || (select count(*) from cdp.profiles) || ' profiles' from cdp.events")" "$BEFORE"

section "aggregate state kept as 0.1.0 wrote it (JSON text) is read, then rewritten in binary"
check_eq "the state column is bytea, holding 0.1.0's JSON" \
  "$(db "$OLD_DB" -c "select format_type(atttypid, atttypmod) from pg_attribute where attrelid = 'cdp.profile_computed'::regclass and attname = 'state'") $(db "$OLD_DB" -c "select string_agg(distinct chr(get_byte(state, 0)), '') from cdp.profile_computed")" \
  "bytea {"
check_eq "a full evaluation reads it: nothing changes" "$(db "$OLD_DB" -c "select cdp.evaluate_segments()")" "0"
check_eq "the computed value is intact" "$(db "$OLD_DB" -c "select computed->>'orders' from cdp.profile_computed")" "1"
check_eq "and the state is now binary (0xCD, version 1)" "$(db "$OLD_DB" -c "select string_agg(distinct substr(encode(state, 'hex'), 1, 4), '') from cdp.profile_computed")" "cd01"

section "0.1.0 holding a time 0.2.0 refuses"
# 0.1.0 stored times outside years 1-9999 (as a direct insert still shows).
db "$BAD_DB" -q >/dev/null <<'SQL' || die "installing 0.1.0 with a bad time failed"
\set ON_ERROR_STOP 1
set client_min_messages = warning;
create extension cdp version '0.1.0';
select cdp.ensure_partitions(now());
insert into cdp.events (received_at, source_id, message_id, type, event, user_id, "timestamp")
values (now(), 1, 'far', 'track', 'E', 'u', '-infinity'), (now(), 1, 'near', 'track', 'E', 'u', now());
SQL
out=$(db "$BAD_DB" -c "alter extension cdp update" 2>&1) && fail "the update ran over an event at -infinity"
check_match "the update stops, naming the table and the rule" "$out" \
  'ERROR: +cdp.events: holds events with a time outside years 1 to 9999'
check_eq "and changes nothing" "$(db "$BAD_DB" -c "select extversion from pg_extension where extname = 'cdp'")" "0.1.0"
# The query docs/backup.md gives finds exactly the event to fix.
FIND="select message_id from cdp.events
 where greatest(received_at, \"timestamp\", original_timestamp, sent_at) > '9999-12-31 23:59:59.999999+00'
    or least(received_at, \"timestamp\", original_timestamp, sent_at) < '0001-01-01 00:00:00+00'"
check_eq "backup.md's query finds it" "$(db "$BAD_DB" -c "$FIND")" "far"
db "$BAD_DB" -c "delete from cdp.events where message_id in ($FIND)" >/dev/null
if out=$(db "$BAD_DB" -c "alter extension cdp update" 2>&1); then pass "once it is deleted, the update runs"; else
  fail "the update failed after the fix: $out"
fi

section "the same extension as a fresh install"
db "$NEW_DB" -c "set client_min_messages = warning; create extension cdp" >/dev/null || die "fresh create extension failed"
db "$OLD_DB" -f "$ROOT/test/e2e/sql/extension_catalog.sql" >"$E2E_TMP/upgraded.txt" || die "describing the upgraded extension failed"
db "$NEW_DB" -f "$ROOT/test/e2e/sql/extension_catalog.sql" >"$E2E_TMP/fresh.txt" || die "describing the fresh extension failed"
check_match "the description covers the extension ($(wc -l <"$E2E_TMP/fresh.txt") facts)" "$(wc -l <"$E2E_TMP/fresh.txt")" '^[0-9]{4,}$'
if diff "$E2E_TMP/upgraded.txt" "$E2E_TMP/fresh.txt" >"$E2E_TMP/diff.txt"; then
  pass "upgraded and fresh are the same, object by object"
else
  fail "upgraded and fresh differ ($(grep -c '^[<>]' "$E2E_TMP/diff.txt") lines; < upgraded, > fresh):"
  head -20 "$E2E_TMP/diff.txt"
fi

section "the upgraded database keeps working"
check_eq "its partitions are user data now, each with its own key" \
  "$(db "$OLD_DB" -c "select count(*) filter (where d.objid is not null) || ' members, ' || count(*) filter (where not exists (select from pg_index x where x.indrelid = i.inhrelid and x.indisprimary)) || ' without a key' from pg_inherits i left join pg_depend d on d.objid = i.inhrelid and d.deptype = 'e' where i.inhparent = 'cdp.events'::regclass")" \
  "0 members, 0 without a key"
check_eq "a messageId from before the update is a duplicate" \
  "$(db "$OLD_DB" -c "select status from cdp.ingest('{\"type\": \"track\", \"userId\": \"ada\", \"event\": \"Order Completed\", \"messageId\": \"o2\"}')")" "duplicate"
check_eq "a new event is accepted" \
  "$(db "$OLD_DB" -c "select status from cdp.ingest('{\"type\": \"track\", \"userId\": \"ada\", \"event\": \"Order Completed\", \"messageId\": \"o3\"}')")" "accepted"
check_eq "and processed into ada's profile" "$(db "$OLD_DB" -c "select cdp.process_pending(); select (cdp.profile('user_id', 'ada') ->> 'event_count')" | tail -1)" "3"
check_eq "her second order counts, and she enters buyers" \
  "$(db "$OLD_DB" -c "select computed->>'orders' from cdp.profile_computed") $(db "$OLD_DB" -c "select string_agg(s.name, ',') from cdp.segment_membership m join cdp.segments s using (segment_id) where m.exited_at is null")" \
  "2 buyers"
check_eq "recompute_traits agrees with the incremental state" \
  "$(db "$OLD_DB" -c "select computed::text || encode(state, 'hex') from cdp.profile_computed")" \
  "$(db "$OLD_DB" -c "select cdp.recompute_traits(); select computed::text || encode(state, 'hex') from cdp.profile_computed" | tail -1)"
"${PG_BIN:-/usr/lib/postgresql/15/bin}/pg_dump" -h "$CLUSTER_DIR" -p "$(cat "$CLUSTER_DIR/port")" -U "$(cluster_user)" "$OLD_DB" >"$E2E_TMP/dump.sql" 2>/dev/null ||
  pg_dump -h "$CLUSTER_DIR" -p "$(cat "$CLUSTER_DIR/port")" -U "$(cluster_user)" "$OLD_DB" >"$E2E_TMP/dump.sql" || die "pg_dump failed"
if cluster_psql "$CLUSTER_DIR" "$COPY_DB" -1 -v ON_ERROR_STOP=1 -f "$E2E_TMP/dump.sql" >"$E2E_TMP/restore.out" 2>&1; then
  pass "its dump restores without an error"
else
  fail "its dump does not restore: $(grep -m3 ERROR "$E2E_TMP/restore.out")"
fi
check_eq "with every event" "$(db "$COPY_DB" -c "select count(*) from cdp.events")" "$(db "$OLD_DB" -c "select count(*) from cdp.events")"
finish
