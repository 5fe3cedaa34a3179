-- cdp 0.1.0 -> 0.2.0: trust. Backups that hold the data, roles that cannot
-- write past the ingestion functions, inputs that cannot stop a worker.
-- A fresh install of 0.2.0 runs sql/install/*.sql, which state the same schema
-- directly; the upgrade test (test/e2e/upgrade.sh) checks that both ways to
-- 0.2.0 give the same extension.
\echo Use "ALTER EXTENSION cdp UPDATE TO '0.2.0'" to load this file. \quit

------------------------------------------------------------------------------
-- Backups: pg_dump must dump every row of user data.
------------------------------------------------------------------------------
-- The daily partitions of cdp.events are user data, not part of the
-- extension's code: as ordinary tables pg_dump dumps them with their rows, and
-- a restore's CREATE EXTENSION creates none that could clash with them
-- (0.1.0 created a week of partitions while installing, as members).
do $$
declare r record;
begin
  for r in select i.inhrelid::regclass as part
             from pg_inherits i
             join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = i.inhrelid
                             and d.refclassid = 'pg_extension'::regclass and d.deptype = 'e'
            where i.inhparent = 'cdp.events'::regclass
  loop
    execute format('alter extension cdp drop table %s', r.part);
  end loop;
end $$;

-- Keys live on each partition, not on cdp.events itself. A key on the parent
-- (an extension member, so created by the restore's CREATE EXTENSION) would
-- be re-created on each partition when the restore attaches it, and clash
-- with the partition's key that pg_dump restores next. Per partition, the
-- processor's (txid, id) reads use the same index as before. Upgrading
-- rebuilds each existing partition's key once.
alter table cdp.events drop constraint events_pkey;
do $$
declare r record;
begin
  for r in select i.inhrelid::regclass as part from pg_inherits i where i.inhparent = 'cdp.events'::regclass loop
    execute format('alter table %s add primary key (txid, id, received_at)', r.part);
  end loop;
end $$;

-- Every other table and sequence of the extension holds user data or state
-- (configuration, profiles, the ledger, queues, the audit log): pg_dump dumps
-- their rows. A later version that adds a table registers it too; the schema
-- suite fails on one that is not.
do $$
declare r record;
begin
  for r in select c.oid::regclass as rel
             from pg_class c
             join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = c.oid
                             and d.refclassid = 'pg_extension'::regclass and d.deptype = 'e'
            where d.refobjid = (select oid from pg_extension where extname = 'cdp')
              and c.relkind in ('r', 'S')
            order by c.oid
  loop
    perform pg_catalog.pg_extension_config_dump(r.rel, '');
  end loop;
end $$;

-- Is this statement a superuser's COPY, as pg_dump's restores are? Then rows
-- arrive as they were dumped, with the effects they had already (audit rows,
-- deliveries) restored beside them, so triggers must not add those again. A
-- COPY by anyone else is audited like any write.
create function cdp.restoring() returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$ select current_query() ~* '^\s*copy\s' and (select rolsuper from pg_roles where rolname = session_user) $$;
comment on function cdp.restoring() is 'True inside a superuser''s COPY (a pg_dump restore): the triggers that replace default rows, queue deliveries and audit changes use it.';

-- A restore first runs CREATE EXTENSION, which puts default rows into four
-- tables (the "sql" source, the identifier types, retention, the processor's
-- cursor), and then COPYs the dumped rows. The dumped row replaces the
-- default one instead of failing on its key: only in a restore, so an INSERT
-- of a key that exists still fails as it should.
create function cdp.replace_default_row() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  key text := tg_argv[0];
begin
  if cdp.restoring() then
    execute format('delete from %I.%I where %I = $1.%I', tg_table_schema, tg_table_name, key, key) using new;
  end if;
  return new;
end $$;
comment on function cdp.replace_default_row() is 'Trigger (restores only): a dumped row being restored replaces the default row CREATE EXTENSION put in its place, so pg_dump backups restore cdp.sources, cdp.identifier_types, cdp.retention and cdp.processor_state as they were.';
create trigger sources_restore before insert on cdp.sources
  for each row execute function cdp.replace_default_row('id');
create trigger identifier_types_restore before insert on cdp.identifier_types
  for each row execute function cdp.replace_default_row('type');
create trigger retention_restore before insert on cdp.retention
  for each row execute function cdp.replace_default_row('kind');
create trigger processor_state_restore before insert on cdp.processor_state
  for each row execute function cdp.replace_default_row('id');

-- Restored outbox rows were turned into deliveries already, and those are
-- restored too: a restore queues nothing again.
create or replace function cdp.queue_segment_deliveries() returns trigger language plpgsql
set search_path = pg_catalog, pg_temp as $$
begin
  if cdp.restoring() then
    return null;
  end if;
  insert into cdp.deliveries (destination_id, profile_id, kind, payload)
  select d.destination_id, o.profile_id, o.kind,
         jsonb_strip_nulls(o.payload || jsonb_build_object(
           'messageId', 'cdp-outbox-' || o.id,
           'userId', (select i.value from cdp.identities i where i.profile_id = o.profile_id and i.type = 'user_id'
                       order by i.first_seen limit 1),
           'traits', (select p.traits from cdp.profiles p where p.profile_id = o.profile_id)))
    from added o join cdp.destinations d
      on d.options->'subscribe'->'segments' ? (o.payload->>'segment')
   where cdp.consented(o.profile_id, d.options->'consent')
   order by o.id;
  -- Not delivered for want of consent: counted, not lost silently.
  update cdp.destinations d set consent_blocked = consent_blocked + x.n
    from (select d2.destination_id, count(*) as n from added o join cdp.destinations d2
            on d2.options->'subscribe'->'segments' ? (o.payload->>'segment')
           where not cdp.consented(o.profile_id, d2.options->'consent') group by 1) x
   where d.destination_id = x.destination_id;
  return null;
end $$;
comment on function cdp.queue_segment_deliveries() is 'Trigger: queues each segment enter/exit for the destinations subscribed to that segment (not for rows a restore brings back: their deliveries are restored with them).';

-- The audit log is restored as it was; restoring configuration is not a change.
create or replace function cdp.audit_change() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  strip text[] := array['write_key_hash'];
  old_row jsonb;
  new_row jsonb;
begin
  if cdp.restoring() then
    return null;
  end if;
  if tg_op = 'TRUNCATE' then
    insert into cdp.audit_log (action, target) values ('truncate', tg_table_name);
    return null;
  end if;
  if tg_op <> 'INSERT' then old_row := cdp.without_secrets(to_jsonb(old) - strip); end if;
  if tg_op <> 'DELETE' then new_row := cdp.without_secrets(to_jsonb(new) - strip); end if;
  insert into cdp.audit_log (action, target, details)
  values (lower(tg_op), tg_table_name, jsonb_strip_nulls(jsonb_build_object('old', old_row, 'new', new_row)));
  return null;
end $$;
comment on function cdp.audit_change() is 'Trigger: writes each change to a configuration table into cdp.audit_log (write key hashes and destination secrets left out); a pg_dump restore (cdp.restoring()) is not recorded again.';

------------------------------------------------------------------------------
-- Roles: ingestion only through the functions. They set ids, txids, times and
-- ledger rows themselves; no role writes cdp.events or cdp.message_ids directly.
------------------------------------------------------------------------------
alter function cdp.ingest(jsonb, text) security definer set search_path = pg_catalog, pg_temp;
revoke insert on cdp.events, cdp.quarantine from cdp_ingest;
revoke select, insert on cdp.message_ids from cdp_ingest;
revoke usage on sequence cdp.events_id_seq from cdp_ingest;
revoke execute on function cdp.source_for_key(text), cdp.ensure_partitions(timestamptz, int) from cdp_ingest;

-- Administrators configure, erase and replay; the events table and the ledger
-- are written by the extension's own functions only (a forged id or txid would
-- bind a later event to someone else's profile; a forged ledger row would
-- answer "duplicate" to a real event for ever).
revoke insert, update, delete, truncate on cdp.events, cdp.message_ids from cdp_admin;
revoke update on sequence cdp.events_id_seq, cdp.profile_id_seq from cdp_admin;
-- So the functions that remove events or ledger rows run with the owner's rights.
alter function cdp.erase(text, text, text) security definer set search_path = pg_catalog, pg_temp;
alter function cdp.run_maintenance() security definer;
alter function cdp.process_pending() security definer set search_path = pg_catalog, pg_temp;

-- Partitions for dates far from now are a superuser's business: thousands of
-- tables made through this function stall every writer.
-- (CREATE OR REPLACE resets a function's attributes: SECURITY DEFINER is
-- stated again, as 0.1.0's ALTER FUNCTION gave it.)
create or replace function cdp.ensure_partitions(upto timestamptz, days_ahead int default 7)
returns timestamptz
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  day0 timestamptz := date_trunc('day', upto at time zone 'UTC') at time zone 'UTC';
  lo timestamptz;
  part text;
begin
  if days_ahead is null or days_ahead < 0 or days_ahead > 31 then
    raise exception 'days_ahead: must be from 0 to 31' using errcode = '22023';
  end if;
  if upto is null or not isfinite(upto) then
    raise exception 'upto: must be a finite time' using errcode = '22023';
  end if;
  -- The caller (not this security-definer function's owner): the role SET ROLE
  -- chose, or else the session's user.
  if abs(extract(epoch from upto - cdp.now())) > 2 * 86400
     and not (select rolsuper from pg_roles
               where rolname = coalesce(nullif(current_setting('role'), 'none'), session_user)) then
    raise exception 'upto: must be within 2 days of now (% given); only a superuser makes partitions for other dates', upto
      using errcode = '22023';
  end if;
  for d in 0 .. days_ahead loop
    lo := day0 + make_interval(days => d);
    part := 'events_' || to_char(lo at time zone 'UTC', 'YYYYMMDD');
    if to_regclass('cdp.' || part) is null then
      -- Serialise creators (two sessions racing at midnight), but only when one
      -- is missing: the lock is held to commit and would stall other writers.
      perform pg_advisory_xact_lock(hashtext('cdp.ensure_partitions'));
      -- "if not exists": the session we waited for may have just created it.
      -- The key comes with the table (one statement), so no partition is ever without it.
      execute format('create table if not exists cdp.%I partition of cdp.events (primary key (txid, id, received_at))'
                     ' for values from (%L) to (%L)', part, lo, lo + interval '1 day');
    end if;
  end loop;
  return day0 + make_interval(days => days_ahead + 1);
end $$;
comment on function cdp.ensure_partitions(timestamptz, int) is 'Creates the daily partitions of cdp.events from the day of upto to days_ahead (0 to 31) days later, if missing; returns the end of the covered range. Ingestion calls it before it runs out of partitions. Except for superusers, upto must be within 2 days of now.';

------------------------------------------------------------------------------
-- Times are real times: no infinity, no year outside 1-9999, however a row is
-- written (the ingestion functions refuse them with a clear error first).
------------------------------------------------------------------------------
-- One flat AND of comparisons (no BETWEEN, no OR): pg_dump prints it back in a
-- form that parses to the same tree, so restored partitions attach. A NULL
-- original_timestamp or sent_at makes its comparisons unknown, which passes.
-- 0.1.0 stored such times (an offset past year 1 or 9999, a direct insert of
-- 'infinity'): then the update stops with an error saying so, and changes
-- nothing, instead of Postgres's bare "violated by some row".
do $$
begin
  alter table cdp.events add constraint events_times_in_range check (
    received_at >= '0001-01-01 00:00:00+00' and received_at <= '9999-12-31 23:59:59.999999+00' and
    "timestamp" >= '0001-01-01 00:00:00+00' and "timestamp" <= '9999-12-31 23:59:59.999999+00' and
    original_timestamp >= '0001-01-01 00:00:00+00' and original_timestamp <= '9999-12-31 23:59:59.999999+00' and
    sent_at >= '0001-01-01 00:00:00+00' and sent_at <= '9999-12-31 23:59:59.999999+00');
exception when check_violation then
  raise exception 'cdp.events: holds events with a time outside years 1 to 9999 (infinity, or a year before 1 or after 9999), which 0.2.0 refuses'
    using errcode = '23514', detail = sqlerrm,
          hint = 'Delete or correct those events, then update again (docs/backup.md, "Upgrade").';
end $$;

------------------------------------------------------------------------------
-- Erasure: one deeply nested document cannot block it.
------------------------------------------------------------------------------
create or replace function cdp.json_mentions(doc jsonb, exact text[], folded text[]) returns boolean
as 'MODULE_PATHNAME', 'cdp_json_mentions' language c immutable parallel safe;
comment on function cdp.json_mentions(jsonb, text[], text[]) is 'Whether any string in the JSON value, at any depth, equals one of the exact values (trimmed) or, lower-cased, one of the folded values: how erasure finds a person in payloads. Walks iteratively, so no nesting depth stops it.';

------------------------------------------------------------------------------
-- Privileges of what this version adds: nothing is open to everyone.
------------------------------------------------------------------------------
revoke all on function cdp.restoring(), cdp.replace_default_row() from public;
grant execute on function cdp.restoring(), cdp.replace_default_row() to cdp_admin;

------------------------------------------------------------------------------
-- What the processor sets aside, and what it refuses, has a name.
------------------------------------------------------------------------------
comment on column cdp.quarantine.field is 'The field that broke a rule ("userId", "timestamp", "message"...); "processor" for an event the processor set aside (see reason).';
comment on column cdp.identity_refusals.type is 'The identifier type, or "trait" (new trait keys refused by cdp.max_traits_per_profile, listed in value), or "group_id" (a groupId over 1 KB; its first 64 bytes in value).';
