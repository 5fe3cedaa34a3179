#!/usr/bin/env bash
# End-to-end: a standard pg_dump of a database using cdp holds all of its data,
# and a restore into a new database gives back every row and keeps working.
# A populated database (events over several days, profiles, identities, a
# merge, computed traits, segments and memberships, a destination with its
# secret and queued deliveries, consent, an erasure with its suppressions and
# ledger, quarantine, the dedup ledger, the audit log) is dumped with plain
# pg_dump, restored with `psql -1`, and compared table by table. Then the
# restored copy takes new events: ids continue, duplicates are still refused,
# and the processor carries on from where the original stopped.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"

SRC_DB="backup_src_$RUN_ID"
DST_DB="backup_dst_$RUN_ID"
db() { local d=$1; shift; cluster_psql "$CLUSTER_DIR" "$d" -tA "$@"; }
E2E_CLEANUP+=("cluster_psql '$CLUSTER_DIR' postgres -c 'drop database if exists $SRC_DB' -c 'drop database if exists $DST_DB' >/dev/null 2>&1")

say "$E2E_NAME: pg_dump and restore of a populated cdp database"
section "populate $SRC_DB"
cluster_psql "$CLUSTER_DIR" postgres -c "create database $SRC_DB" -c "create database $DST_DB" >/dev/null ||
  die "could not create the databases"
db "$SRC_DB" -q >/dev/null <<'SQL' || die "populating failed"
\set ON_ERROR_STOP 1
set client_min_messages = warning;
create extension cdp;
select cdp.create_source('web');
select cdp.create_access_token('site', array['profiles:read']) is not null as token_made;
-- Days apart, so several partitions hold rows.
set cdp.test_clock = '2026-11-28T10:00:00Z';
select * from cdp.ingest('{"batch": [
  {"type": "identify", "userId": "ada", "anonymousId": "a-1", "traits": {"email": "ada@example.com", "plan": "pro"}, "messageId": "m1"},
  {"type": "track", "userId": "ada", "event": "Order Completed", "properties": {"revenue": 42.5}, "messageId": "m2"},
  {"type": "identify", "userId": "bob", "traits": {"email": "bob@example.com"}, "messageId": "m3"},
  {"type": "track", "anonymousId": "a-2", "event": "Viewed", "messageId": "m4"},
  {"type": "track", "userId": "nobody", "messageId": "bad-1"},
  {"type": "group", "userId": "ada", "groupId": "acme", "traits": {"name": "Acme"}, "messageId": "m9"}
]}');
insert into cdp.trait_rules (trait, strategy) values ('plan', 'first');
update cdp.identifier_types set max_per_profile = 1 where type = 'email';
set cdp.test_clock = '2026-11-30T10:00:00Z';
select * from cdp.ingest('{"batch": [
  {"type": "track", "userId": "ada", "event": "Order Completed", "properties": {"revenue": 10}, "messageId": "m5"},
  {"type": "alias", "userId": "bob", "previousId": "a-2", "messageId": "m6"},
  {"type": "identify", "userId": "eve", "traits": {"email": "eve@example.com"},
   "context": {"consent": {"categoryPreferences": {"marketing": false}}}, "messageId": "m7"}
]}');
select cdp.process_pending();
select cdp.create_computed_trait('orders', '{"kind": "count", "event": "Order Completed"}');
select cdp.create_segment('buyers', '{"computed": "orders", "op": ">=", "value": 1}', 'Ordered once');
select cdp.create_destination('crm', 'http://127.0.0.1:9/hook', '{
  "secret": "whsec_backup_test_secret", "headers": {"Authorization": "Bearer backup-token"},
  "subscribe": {"events": [{"type": "track"}], "segments": ["buyers"]}}');
select cdp.set_retention('quarantine', '45 days');
-- A second email for bob is refused by the limit of one: a refusal on record.
select * from cdp.ingest('{"type": "identify", "userId": "bob", "traits": {"email": "bob2@example.com"}, "messageId": "m10"}');
select cdp.set_consent('user_id', 'bob', '{"analytics": true}');
-- A tracking plan on the SQL source: m8 lacks the revenue it requires, a violation on record.
select cdp.create_tracking_plan('shop', '{"events": {"Order Completed": {"properties": {"revenue": {"type": "number"}}, "required": ["revenue"]}}}');
select cdp.attach_tracking_plan('sql', 'shop');
set cdp.test_clock = '2026-12-01T10:00:00Z';
select * from cdp.ingest('{"type": "track", "userId": "ada", "event": "Order Completed", "messageId": "m8"}');
select cdp.process_pending();
select cdp.erase('user_id', 'eve', 'ticket 42');
-- Rows only the delivery worker and retention write, written here directly.
insert into cdp.dead_letters (id, destination_id, profile_id, kind, payload, created_at, attempts, status, response)
select 1, destination_id, 1, 'event', '{"type": "track"}', now(), 3, 410, 'HTTP 410: gone' from cdp.destinations;
insert into cdp.retention_log (kind, cutoff, removed) values ('quarantine', '2026-10-01', 0);
SQL
pass "populated: $(db "$SRC_DB" -c "select count(*) from cdp.events") events in $(db "$SRC_DB" -c "select count(*) from pg_inherits where inhparent = 'cdp.events'::regclass") partitions"

# Every table of the extension must hold rows here, or the comparison below
# would prove nothing for it.
EMPTY=$(db "$SRC_DB" -c "
  select string_agg(c.relname, ' ' order by c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where n.nspname = 'cdp' and c.relkind in ('r', 'p') and not c.relispartition
     and (xpath('/row/n/text()', query_to_xml(format('select count(*) as n from cdp.%I', c.relname), false, true, '')))[1]::text = '0'")
EXPECTED_EMPTY=""
check_eq "every table holds rows" "$EMPTY" "$EXPECTED_EMPTY"

section "dump and restore"
PGDUMP=(pg_dump -h "$CLUSTER_DIR" -p "$(cat "$CLUSTER_DIR/port")" -U "$(cluster_user)")
"${PGDUMP[@]}" "$SRC_DB" >"$E2E_TMP/dump.sql" 2>"$E2E_TMP/dump.err" || die "pg_dump failed: $(cat "$E2E_TMP/dump.err")"
check_match "the dump holds the events' rows" "$(grep -c '^COPY cdp.events_' "$E2E_TMP/dump.sql")" '^[1-9]'
check_match "the dump holds the destination's secret" "$(grep -c 'whsec_backup_test_secret' "$E2E_TMP/dump.sql")" '^[1-9]'
if cluster_psql "$CLUSTER_DIR" "$DST_DB" -1 -v ON_ERROR_STOP=1 -f "$E2E_TMP/dump.sql" >"$E2E_TMP/restore.out" 2>&1; then
  pass "psql -1 restores the dump without an error"
else
  fail "restore failed: $(grep -m3 ERROR "$E2E_TMP/restore.out")"
fi

section "every row came back"
TABLES=$(db "$SRC_DB" -c "
  select string_agg(c.relname, ' ' order by c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where n.nspname = 'cdp' and c.relkind in ('r', 'p') and not c.relispartition")
for t in $TABLES; do
  q="select count(*) || ' ' || coalesce(md5(string_agg(x::text, E'\n' order by x::text)), '-') from cdp.$t x"
  check_eq "cdp.$t: same rows" "$(db "$DST_DB" -c "$q" 2>&1)" "$(db "$SRC_DB" -c "$q")"
done
q="select string_agg(c.relname, ' ' order by c.relname) from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'cdp.events'::regclass"
check_eq "the same partitions of cdp.events" "$(db "$DST_DB" -c "$q")" "$(db "$SRC_DB" -c "$q")"
for s in events_id_seq profile_id_seq audit_log_id_seq sources_id_seq; do
  q="select last_value from cdp.$s"
  check_eq "sequence $s continues where it was" "$(db "$DST_DB" -c "$q")" "$(db "$SRC_DB" -c "$q")"
done
check_eq "nothing new in the restored audit log" \
  "$(db "$DST_DB" -c "select count(*) from cdp.audit_log")" "$(db "$SRC_DB" -c "select count(*) from cdp.audit_log")"
check_eq "no delivery queued twice" \
  "$(db "$DST_DB" -c "select count(*) from cdp.deliveries")" "$(db "$SRC_DB" -c "select count(*) from cdp.deliveries")"

section "the restored database keeps working"
out=$(db "$DST_DB" -c "select status from cdp.ingest('{\"type\": \"track\", \"userId\": \"ada\", \"event\": \"Order Completed\", \"messageId\": \"m2\"}')")
check_eq "a messageId seen before the dump is still a duplicate" "$out" "duplicate"
out=$(db "$DST_DB" -c "select status from cdp.ingest('{\"type\": \"track\", \"userId\": \"ada\", \"event\": \"Order Completed\", \"messageId\": \"after-restore\"}')")
check_eq "a new event is accepted" "$out" "accepted"
check_eq "its id follows the restored ones" \
  "$(db "$DST_DB" -c "select id > (select max(id) from cdp.events where message_id <> 'after-restore') from cdp.events where message_id = 'after-restore'")" "t"
check_eq "the processor takes only the new event" "$(db "$DST_DB" -c "select cdp.process_pending()")" "1"
check_eq "it joins ada's profile" \
  "$(db "$DST_DB" -c "select count(distinct m.canonical_id) from cdp.event_profiles ep join cdp.profile_map m using (profile_id) join cdp.events e on e.id = ep.event_id where e.user_id = 'ada'")" "1"
check_eq "ada's computed trait counts it" "$(db "$DST_DB" -c "select cdp.profile('user_id', 'ada') -> 'computed' ->> 'orders'")" "4"
out=$(db "$DST_DB" -c "select status, error from cdp.ingest('{\"type\": \"identify\", \"userId\": \"eve\", \"messageId\": \"eve-again\"}')")
check_eq "the erased person is still suppressed" \
  "$(db "$DST_DB" -c "select cdp.process_pending(); select count(*) from cdp.quarantine where message_id = 'eve-again' and reason = 'suppressed'" | tail -1)" "1"
check_eq "a new source gets a fresh id" "$(db "$DST_DB" -c "select cdp.create_source('app') is not null")" "t"
check_eq "the Profile API's token is restored, hash and all" \
  "$(db "$DST_DB" -c "select name, scopes, encode(token_hash, 'hex') from cdp.access_tokens")" \
  "$(db "$SRC_DB" -c "select name, scopes, encode(token_hash, 'hex') from cdp.access_tokens")"
check_eq "the restored copy answers lookups" "$(db "$DST_DB" -c "select cdp.lookup_profile('user_id:ada') ? 'traits'")" "t"
finish
