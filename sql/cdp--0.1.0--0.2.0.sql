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
  strip text[] := array['write_key_hash', 'token_hash'];
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
comment on function cdp.audit_change() is 'Trigger: writes each change to a configuration table into cdp.audit_log (write key and access token hashes and destination secrets left out); a pg_dump restore (cdp.restoring()) is not recorded again.';

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

------------------------------------------------------------------------------
-- The Profile API: read tokens, the grouped lookup, a person's recent events.
------------------------------------------------------------------------------
-- The one walk over a document for PII members (cdp.pii_traits), at any
-- depth and inside arrays: mode 1 hashes each one's value, 0 leaves it out,
-- 2 shows the document as it is. Analysts' masking and the Profile API's
-- tokens both see documents through it.
create function cdp.pii_view(doc jsonb, mode int) returns jsonb
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare pii text[]; out jsonb; k text; v jsonb;
begin
  if doc is null or mode = 2 then return doc; end if;
  if jsonb_typeof(doc) = 'array' then
    -- Arrays are walked too: {"recipients": [{"email": ...}]} hides the email.
    select coalesce(jsonb_agg(cdp.pii_view(e, mode) order by i), '[]') into out from jsonb_array_elements(doc) with ordinality x(e, i);
    return out;
  end if;
  if jsonb_typeof(doc) <> 'object' then return doc; end if;
  pii := cdp.pii_traits();
  out := '{}';
  for k, v in select * from jsonb_each(doc) loop
    if k = any(pii) and mode = 0 then
      continue;
    elsif k = any(pii) and jsonb_typeof(v) <> 'null' then
      -- The whole value, whatever its type, becomes one hash.
      v := to_jsonb('sha256:' || encode(sha256(convert_to(lower(btrim(
             case when jsonb_typeof(v) = 'string' then v #>> '{}' else v::text end)), 'UTF8')), 'hex'));
    elsif jsonb_typeof(v) in ('object', 'array') then
      v := cdp.pii_view(v, mode);
    end if;
    out := out || jsonb_build_object(k, v);
  end loop;
  return out;
end $$;
comment on function cdp.pii_view(jsonb, int) is 'doc with its PII members (cdp.pii_traits, at any depth and inside arrays) hashed (mode 1, as cdp.mask), left out (mode 0) or shown (mode 2): how analysts and Profile API tokens see documents.';

create or replace function cdp.mask(doc jsonb) returns jsonb
language sql stable
set search_path = pg_catalog, pg_temp
as $$ select cdp.pii_view(doc, 1) $$;
revoke all on function cdp.pii_view(jsonb, int) from public;
grant execute on function cdp.pii_view(jsonb, int) to cdp_admin, cdp_analyst;

-- A person's recent events (the Profile API): their event numbers by profile, newest first.
create index event_profiles_profile_idx on cdp.event_profiles (profile_id, event_id);


create table cdp.access_tokens (
  token_id   int generated always as identity primary key,
  name       text not null check (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
  token_hash bytea not null unique,
  token_hint text not null,
  scopes     text[] not null,
  created_at timestamptz not null default now(),
  revoked_at timestamptz
);
create unique index access_tokens_active_name_idx on cdp.access_tokens (name) where revoked_at is null;
comment on table cdp.access_tokens is 'Read tokens of the Profile API (Authorization: Bearer). Only the SHA-256 of each token is stored; cdp.create_access_token shows the token once.';
comment on column cdp.access_tokens.token_id is 'Token number.';
comment on column cdp.access_tokens.name is 'Name chosen by the administrator, unique among active tokens (letters, digits, _ . -; at most 64); /metrics counts lookups by it.';
comment on column cdp.access_tokens.token_hash is 'SHA-256 of the token.';
comment on column cdp.access_tokens.token_hint is 'The first characters of the token, to tell tokens apart.';
comment on column cdp.access_tokens.scopes is 'What it may read: profiles:read, identities:read, events:read, consent:read; pii:hashed or pii:clear for PII traits (else they are left out).';
comment on column cdp.access_tokens.created_at is 'When the token was made.';
comment on column cdp.access_tokens.revoked_at is 'When it was revoked; the HTTP workers refuse it within a second.';
select pg_catalog.pg_extension_config_dump('cdp.access_tokens', '');
select pg_catalog.pg_extension_config_dump('cdp.access_tokens_token_id_seq', '');
create trigger access_tokens_audit after insert or update or delete on cdp.access_tokens
  for each row execute function cdp.audit_change();

create function cdp.create_access_token(name text, scopes text[]) returns text
language plpgsql volatile strict
set search_path = pg_catalog, pg_temp
as $$
declare
  token text := 'cdpr_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
  known text[] := array['profiles:read', 'identities:read', 'events:read', 'consent:read', 'pii:hashed', 'pii:clear'];
  s text;
begin
  if name !~ '^[A-Za-z0-9_.-]{1,64}$' then
    raise exception 'name: "%" is not 1 to 64 letters, digits, "_", "." or "-"', name using errcode = '22023';
  end if;
  foreach s in array scopes loop
    if s is null or not s = any(known) then
      raise exception 'scopes: "%" is not a scope', s
        using errcode = '22023', hint = 'Scopes: ' || array_to_string(known, ', ') || '.';
    end if;
  end loop;
  if not scopes && array['profiles:read', 'identities:read', 'events:read', 'consent:read'] then
    raise exception 'scopes: must grant at least one part to read (profiles:read, identities:read, events:read, consent:read)'
      using errcode = '22023';
  end if;
  if scopes @> array['pii:hashed', 'pii:clear'] then
    raise exception 'scopes: pii:hashed and pii:clear exclude each other' using errcode = '22023';
  end if;
  insert into cdp.access_tokens (name, token_hash, token_hint, scopes)
  values (create_access_token.name, sha256(convert_to(token, 'UTF8')), left(token, 10),
          (select array_agg(distinct x order by x) from unnest(scopes) x));
  return token;
exception when unique_violation then
  raise exception 'name: an active access token "%" exists already', name using errcode = '42710';
end $$;
comment on function cdp.create_access_token(text, text[]) is 'Makes a Profile API read token with these scopes and returns it: it is shown only this once.';

create function cdp.revoke_access_token(name text) returns void
language plpgsql volatile strict
set search_path = pg_catalog, pg_temp
as $$
begin
  update cdp.access_tokens t set revoked_at = now()
   where t.name = revoke_access_token.name and t.revoked_at is null;
  if not found then
    raise exception 'name: no active access token "%"', name using errcode = '42704';
  end if;
end $$;
comment on function cdp.revoke_access_token(text) is 'Revokes a Profile API token: the HTTP workers refuse it within a second.';

-- Every lookup of one loop in one statement. Row k of the arrays is lookup k:
-- an identifier (type, value, normalised here as ingestion does) or a profile
-- number (followed through merges), the parts wanted (bits: 1 traits,
-- 2 computed, 4 segments; the others are cdp.profile_extras'), the trait keys
-- (comma-separated; null or '': all), the PII mode (2 clear, 1 hashed, 0 left
-- out). A null or '' type means a lookup by number.
-- Answers status 200 with the parts asked (each null when not asked), 404 (no
-- such person: also after erasure) or 400 (an identifier type that does not
-- exist) with the error. The HTTP worker splices the parts' text into its
-- answer, so no document is built twice; cdp.lookup_profile builds the same
-- answer as jsonb. Joins, not subqueries, and plain SQL without SET, so that
-- the planner inlines it into the worker's one prepared statement.
create function cdp.profile_lookups(types text[], vals text[], ids bigint[], parts int[], fields text[], pii int[])
returns table (ord int, status int, error text, profile_id bigint, traits jsonb, computed jsonb, segments jsonb)
language sql stable
as $$
  with given as (
    select x.ord::int as ord, nullif(x.type, '') as type, x.val, x.pid, x.parts, nullif(x.fields, '') as fields, x.pii
      from unnest(types, vals, ids, parts, fields, pii) with ordinality as x(type, val, pid, parts, fields, pii, ord)
  ), asked as (
    select g.*, g.type is not null and t.type is null as unknown_type, coalesce(i.profile_id, m.canonical_id) as found
      from given g
      left join cdp.identifier_types t on t.type = g.type
      left join cdp.identities i on i.type = t.type  -- CASE: only a known type is normalised
                                and i.value = case when t.type is not null then cdp.normalise_identifier(t.type, g.val) end
      left join cdp.profile_map m on g.type is null and m.profile_id = g.pid
  )
  select a.ord,
         case when a.unknown_type then 400 when p.profile_id is null then 404 else 200 end,
         case when a.unknown_type then 'type "' || a.type || '" is not an identifier type (cdp.identifier_types)'
              when p.profile_id is null then 'no profile has it' end,
         p.profile_id,
         case when a.parts & 1 <> 0 and p.profile_id is not null then
           case when a.fields is null and a.pii = 2 then p.traits
                else cdp.pii_view(case when a.fields is null then p.traits
                       else (select coalesce(jsonb_object_agg(k, v), '{}') from jsonb_each(p.traits) e(k, v)
                              where k = any(string_to_array(a.fields, ','))) end, a.pii) end end,
         case when a.parts & 2 <> 0 and p.profile_id is not null then
           case when pc.computed is null then '{}' when a.pii = 2 then pc.computed else cdp.pii_view(pc.computed, a.pii) end end,
         case when a.parts & 4 <> 0 and p.profile_id is not null then coalesce(seg.names, '[]') end
    from asked a
    left join cdp.profiles p on p.profile_id = a.found
    left join cdp.profile_computed pc on a.parts & 2 <> 0 and pc.profile_id = p.profile_id
    left join lateral (select jsonb_agg(s.name order by s.name) as names
                         from cdp.segment_membership sm join cdp.segments s on s.segment_id = sm.segment_id
                        where a.parts & 4 <> 0 and sm.profile_id = p.profile_id and sm.exited_at is null) seg on true
   order by a.ord
$$;
comment on function cdp.profile_lookups(text[], text[], bigint[], int[], text[], int[]) is 'Internal: the Profile API''s lookups of one HTTP worker loop (traits, computed traits, segment names), answered in one statement (see cdp.lookup_profile for SQL callers).';

-- The rarer parts of found profiles, in one statement: row k is profile k,
-- the parts wanted (bits: 8 memberships, 16 identities, 32 events, 64
-- consent), events per page, the events cursor (older than it; null or 0: the
-- newest) and the PII mode. Answers one object of those members.
create function cdp.profile_extras(profile_ids bigint[], parts int[], limits int[], cursors bigint[], pii int[])
returns table (ord int, extra jsonb)
language sql stable
as $$
  select x.ord::int, '{}'::jsonb
         || case when x.parts & 8 = 0 then '{}' else jsonb_build_object('memberships', coalesce(
              (select jsonb_agg(jsonb_build_object('segment', s.name, 'entered_at', sm.entered_at) order by s.name)
                 from cdp.segment_membership sm join cdp.segments s on s.segment_id = sm.segment_id
                where sm.profile_id = x.pid and sm.exited_at is null), '[]')) end
         || case when x.parts & 16 = 0 then '{}' else jsonb_build_object('identities', coalesce(
              (select jsonb_agg(jsonb_build_object('type', i.type, 'first_seen', i.first_seen, 'value',
                        case when x.pii = 2 or not i.type = any(cdp.pii_traits()) then i.value
                             else 'sha256:' || encode(sha256(convert_to(lower(btrim(i.value)), 'UTF8')), 'hex') end)
                        order by i.type, i.value)
                 from cdp.identities i
                where i.profile_id = x.pid and (x.pii > 0 or not i.type = any(cdp.pii_traits()))), '[]')) end
         || case when x.parts & 32 = 0 then '{}' else (
              -- One row past the page says whether there is a next one.
              select jsonb_build_object('events', coalesce(jsonb_agg(ev.doc order by ev.id desc) filter (where ev.n <= x.lim), '[]'),
                                        'next_cursor', case when count(*) > x.lim then min(ev.id) filter (where ev.n <= x.lim) end)
                from (select ep.event_id as id, row_number() over (order by ep.event_id desc) as n, jsonb_strip_nulls(jsonb_build_object(
                               'id', e.id, 'type', e.type, 'event', e.event, 'name', e.name,
                               'timestamp', e."timestamp", 'received_at', e.received_at,
                               'properties', cdp.pii_view(e.properties, x.pii), 'traits', cdp.pii_view(e.traits, x.pii))) as doc
                        from cdp.profile_map m
                        join cdp.event_profiles ep on ep.profile_id = m.profile_id
                        join cdp.events e on e.id = ep.event_id
                       where m.canonical_id = x.pid and (coalesce(x.cur, 0) = 0 or ep.event_id < x.cur)
                       order by ep.event_id desc limit x.lim + 1) ev) end
         || case when x.parts & 64 = 0 then '{}' else jsonb_build_object('consent',
              (select jsonb_build_object('preferences', c.preferences, 'updated_at', c.updated_at, 'source', c.source)
                 from cdp.consent c where c.profile_id = x.pid)) end
    from unnest(profile_ids, parts, limits, cursors, pii) with ordinality as x(pid, parts, lim, cur, pii, ord)
   order by x.ord
$$;
comment on function cdp.profile_extras(bigint[], int[], int[], bigint[], int[]) is 'Internal: the Profile API''s rarer parts (memberships, identities, recent events, consent) of profiles found by cdp.profile_lookups, in one statement.';

-- The Profile API for apps that talk SQL: the same answer as
-- GET /v1/profiles/<identifier>?include=...&fields=..., or null for nobody.
create function cdp.lookup_profile(identifier text, include text[] default array['traits', 'computed', 'segments'],
                                   fields text[] default null, "limit" int default 20, cursor bigint default null,
                                   pii text default 'clear')
returns jsonb
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  names text[] := array['traits', 'computed', 'segments', 'memberships', 'identities', 'events', 'consent'];
  bits int := 0; n text; pos int; mode int; id_type text; id_value text; pid bigint; answer record;
begin
  if identifier is null or identifier = '' then
    raise exception 'identifier: is missing: <type>:<value> or a profile number' using errcode = '22023';
  end if;
  if octet_length(identifier) > 1024 then
    raise exception 'identifier: is longer than 1024 bytes' using errcode = '22023';
  end if;
  if identifier ~ '^[0-9]{1,18}$' then
    pid := identifier::bigint;
  elsif identifier ~ '^[a-z][a-z0-9_]{0,62}:.' then
    id_type := split_part(identifier, ':', 1);
    id_value := substr(identifier, length(id_type) + 2);
  else
    raise exception 'identifier: must be <type>:<value> (e.g. email:ada@example.com) or a profile number'
      using errcode = '22023';
  end if;
  foreach n in array coalesce(include, '{}') loop
    pos := array_position(names, n);
    if pos is null then
      raise exception 'include: "%" is not one of %', n, array_to_string(names, ', ') using errcode = '22023';
    end if;
    bits := bits | (1 << (pos - 1));
  end loop;
  if bits = 0 then
    raise exception 'include: must name at least one of %', array_to_string(names, ', ') using errcode = '22023';
  end if;
  if "limit" is null or "limit" < 1 or "limit" > 100 then
    raise exception 'limit: must be a whole number from 1 to 100' using errcode = '22023';
  end if;
  mode := array_position(array['omit', 'hashed', 'clear'], pii) - 1;
  if mode is null then
    raise exception 'pii: must be omit, hashed or clear' using errcode = '22023';
  end if;
  select * into answer from cdp.profile_lookups(array[id_type], array[id_value], array[pid], array[bits],
    array[array_to_string(fields, ',')], array[mode]);
  if answer.status = 400 then
    raise exception 'identifier: %', answer.error using errcode = '22023';
  end if;
  if answer.status <> 200 then
    return null;
  end if;
  -- The members in the order the HTTP answer has them.
  return jsonb_build_object('profile_id', answer.profile_id)
    || case when answer.traits is null then '{}' else jsonb_build_object('traits', answer.traits) end
    || case when answer.computed is null then '{}' else jsonb_build_object('computed', answer.computed) end
    || case when answer.segments is null then '{}' else jsonb_build_object('segments', answer.segments) end
    || case when bits & 120 = 0 then '{}' else (select e.extra from cdp.profile_extras(array[answer.profile_id],
         array[bits], array["limit"], array[cursor], array[mode]) e) end;
end $$;
comment on function cdp.lookup_profile(text, text[], text[], int, bigint, text) is 'A person''s profile as the Profile API answers it (GET /v1/profiles/<identifier>): by "type:value" (normalised as ingestion does) or profile number, following merges; null for nobody. pii: omit, hashed or clear.';

revoke all on function cdp.create_access_token(text, text[]), cdp.revoke_access_token(text), cdp.profile_lookups(text[], text[], bigint[], int[], text[], int[]),
  cdp.profile_extras(bigint[], int[], int[], bigint[], int[]),
  cdp.lookup_profile(text, text[], text[], int, bigint, text) from public;
grant select, insert, update, delete, truncate on cdp.access_tokens to cdp_admin;
grant all on sequence cdp.access_tokens_token_id_seq to cdp_admin;
grant execute on function cdp.create_access_token(text, text[]), cdp.revoke_access_token(text), cdp.profile_lookups(text[], text[], bigint[], int[], text[], int[]),
  cdp.profile_extras(bigint[], int[], int[], bigint[], int[]),
  cdp.lookup_profile(text, text[], text[], int, bigint, text) to cdp_admin;

-- Tracking plans (sql/install/75_tracking_plans.sql): plans and their
-- versions, which source follows which, the violations found.
create table cdp.tracking_plans (
  id         int generated always as identity primary key,
  name       text not null unique check (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
  version    int not null default 1,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table cdp.tracking_plans is 'Tracking plans: the contract a source''s events are held to (cdp.create_tracking_plan). Every change is a new version (cdp.tracking_plan_versions).';
comment on column cdp.tracking_plans.id is 'Plan number.';
comment on column cdp.tracking_plans.name is 'Unique name (letters, digits, _ . -; at most 64).';
comment on column cdp.tracking_plans.version is 'The current version: the one messages arriving now are checked against.';
comment on column cdp.tracking_plans.created_at is 'When the plan was created.';
comment on column cdp.tracking_plans.updated_at is 'When its current version was made.';
select pg_catalog.pg_extension_config_dump('cdp.tracking_plans', '');
select pg_catalog.pg_extension_config_dump('cdp.tracking_plans_id_seq', '');

create table cdp.tracking_plan_versions (
  plan_id    int not null references cdp.tracking_plans (id) on delete cascade,
  version    int not null check (version >= 1),
  plan       jsonb not null,
  created_at timestamptz not null default now(),
  primary key (plan_id, version)
);
comment on table cdp.tracking_plan_versions is 'Every version of every tracking plan, kept: a violation names the version it broke.';
comment on column cdp.tracking_plan_versions.plan_id is 'The plan.';
comment on column cdp.tracking_plan_versions.version is 'Version number, from 1.';
comment on column cdp.tracking_plan_versions.plan is 'The plan document: {"events": {"<event name>": <JSON Schema of the message>}, "identify": <schema>, "group": <schema>, "common": <schema of every message>}.';
comment on column cdp.tracking_plan_versions.created_at is 'When this version was made.';
select pg_catalog.pg_extension_config_dump('cdp.tracking_plan_versions', '');

create table cdp.source_tracking_plans (
  source_id            int primary key references cdp.sources (id) on delete cascade,
  plan_id              int not null references cdp.tracking_plans (id),
  unplanned_events     text not null default 'allow' check (unplanned_events in ('allow', 'block')),
  unplanned_properties text not null default 'keep' check (unplanned_properties in ('keep', 'omit')),
  violations           text not null default 'keep' check (violations in ('keep', 'block')),
  context_violations   boolean not null default false,
  attached_at          timestamptz not null default now()
);
comment on table cdp.source_tracking_plans is 'Which tracking plan a source follows, and what happens to a message that breaks it (cdp.attach_tracking_plan).';
comment on column cdp.source_tracking_plans.source_id is 'The source.';
comment on column cdp.source_tracking_plans.plan_id is 'The plan; its current version applies.';
comment on column cdp.source_tracking_plans.unplanned_events is 'allow: a track event the plan does not name is stored (and its violation recorded); block: it is quarantined.';
comment on column cdp.source_tracking_plans.unplanned_properties is 'keep: properties (traits) the event''s schema does not declare are stored; omit: they are removed before storing.';
comment on column cdp.source_tracking_plans.violations is 'keep: a message breaking its schema is stored with its violations recorded; block: it is quarantined.';
comment on column cdp.source_tracking_plans.context_violations is 'true: a stored message with violations carries them in context.violations.';
comment on column cdp.source_tracking_plans.attached_at is 'When the plan was attached or its options last set.';
select pg_catalog.pg_extension_config_dump('cdp.source_tracking_plans', '');

create table cdp.violations (
  id           bigint generated always as identity primary key,
  received_at  timestamptz not null,
  source_id    int not null,
  message_id   text,
  message_type text not null,
  event        text,
  plan_id      int not null,
  plan_version int not null,
  type         text not null check (type in ('Unplanned-Event', 'Required-Missing', 'Datatype-Mismatch',
                                             'Additional-Properties', 'Unknown-Violation')),
  path         text not null,
  rule         text not null,
  value_type   text,
  message      text not null,
  blocked      boolean not null
);
create index violations_received_idx on cdp.violations (received_at);
comment on table cdp.violations is 'What tracking plans found: one row per broken rule of a message that was stored (blocked = false) or quarantined for it (blocked = true). Values themselves are not copied here.';
comment on column cdp.violations.id is 'Row number.';
comment on column cdp.violations.received_at is 'When the message arrived.';
comment on column cdp.violations.source_id is 'The source that sent it.';
comment on column cdp.violations.message_id is 'Its messageId (in cdp.events, or in cdp.quarantine when blocked).';
comment on column cdp.violations.message_type is 'track, identify, group, page, screen or alias.';
comment on column cdp.violations.event is 'The track event name.';
comment on column cdp.violations.plan_id is 'The plan.';
comment on column cdp.violations.plan_version is 'The plan version current when the message arrived.';
comment on column cdp.violations.type is 'RudderStack''s violation types: Unplanned-Event, Required-Missing, Datatype-Mismatch, Additional-Properties, Unknown-Violation (any other rule: enum, pattern, minimum, format...).';
comment on column cdp.violations.path is 'Where in the message, as a JSON path: "properties.revenue", "traits.email", "event".';
comment on column cdp.violations.rule is 'The schema keyword broken, as a JSON Pointer into the plan: "#/events/Order Completed/properties/properties/properties/revenue/type".';
comment on column cdp.violations.value_type is 'The JSON type that arrived (string, integer, number, object, array, boolean, null); NULL when the value is missing.';
comment on column cdp.violations.message is 'The rule in words: "must be number".';
comment on column cdp.violations.blocked is 'Whether the message was quarantined for it.';
select pg_catalog.pg_extension_config_dump('cdp.violations', '');
select pg_catalog.pg_extension_config_dump('cdp.violations_id_seq', '');

create view cdp.violation_counts as
select s.name as source, v.message_type, v.event, v.type, count(*) as violations,
       count(*) filter (where v.blocked) as blocked, min(v.received_at) as first_seen, max(v.received_at) as last_seen
  from cdp.violations v left join cdp.sources s on s.id = v.source_id
 group by s.name, v.message_type, v.event, v.type;
comment on view cdp.violation_counts is 'Violations per source, event and type, with how many were blocked and when they were first and last seen.';

-- Compiles a plan in the core (the same code ingestion runs): raises, with the
-- JSON path of what is wrong, for a plan it cannot use. Returns its event count.
create function cdp.check_tracking_plan(plan jsonb) returns int
as 'MODULE_PATHNAME', 'cdp_check_tracking_plan' language c immutable strict;
comment on function cdp.check_tracking_plan(jsonb) is 'Checks a tracking plan document: raises an error naming the JSON path of anything the validator cannot use (an unsupported keyword or format, a remote or dangling $ref, a $ref cycle, a pattern RE2 cannot run). Returns the number of events it plans.';

create function cdp.create_tracking_plan(name text, plan jsonb) returns int
language plpgsql volatile strict
set search_path = pg_catalog, pg_temp
as $$
declare
  id int;
begin
  if name !~ '^[A-Za-z0-9_.-]{1,64}$' then
    raise exception 'tracking plan name "%" is invalid', name
      using errcode = '22023', hint = 'Use 1 to 64 letters, digits, "_", "." or "-".';
  end if;
  perform cdp.check_tracking_plan(plan);
  insert into cdp.tracking_plans (name) values (create_tracking_plan.name) returning tracking_plans.id into id;
  insert into cdp.tracking_plan_versions (plan_id, version, plan) values (id, 1, plan);
  return 1;
exception when unique_violation then
  raise exception 'tracking plan "%" already exists', name
    using errcode = '42710', hint = 'cdp.update_tracking_plan makes a new version of it.';
end $$;
comment on function cdp.create_tracking_plan(text, jsonb) is 'Creates a tracking plan (version 1) after checking it. Attach it to sources with cdp.attach_tracking_plan.';

create function cdp.update_tracking_plan(name text, plan jsonb) returns int
language plpgsql volatile strict
set search_path = pg_catalog, pg_temp
as $$
declare
  p cdp.tracking_plans;
begin
  perform cdp.check_tracking_plan(plan);
  update cdp.tracking_plans t set version = t.version + 1, updated_at = now()
   where t.name = update_tracking_plan.name returning * into p;
  if not found then
    raise exception 'no tracking plan named "%"', name using errcode = '42704';
  end if;
  insert into cdp.tracking_plan_versions (plan_id, version, plan) values (p.id, p.version, plan);
  return p.version;
end $$;
comment on function cdp.update_tracking_plan(text, jsonb) is 'Makes a new version of a tracking plan and returns its number. Messages arriving from now on are checked against it (the HTTP collector within a second); older versions are kept.';

create function cdp.drop_tracking_plan(name text) returns void
language plpgsql volatile strict
set search_path = pg_catalog, pg_temp
as $$
declare
  used text;
begin
  select string_agg(s.name, ', ' order by s.name) into used
    from cdp.source_tracking_plans a join cdp.tracking_plans p on p.id = a.plan_id
    join cdp.sources s on s.id = a.source_id
   where p.name = drop_tracking_plan.name;
  if used is not null then
    raise exception 'tracking plan "%" is attached to %', name, used
      using errcode = '2BP01', hint = 'cdp.detach_tracking_plan(source) first.';
  end if;
  delete from cdp.tracking_plans p where p.name = drop_tracking_plan.name;
  if not found then
    raise exception 'no tracking plan named "%"', name using errcode = '42704';
  end if;
end $$;
comment on function cdp.drop_tracking_plan(text) is 'Drops a tracking plan and its versions (not while a source follows it). Violations recorded against it are kept.';

create function cdp.attach_tracking_plan(source text, plan text, options jsonb default '{}') returns void
language plpgsql volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  src int;
  pid int;
  k text;
  o jsonb := coalesce(options, '{}');
begin
  select s.id into src from cdp.sources s where s.name = attach_tracking_plan.source and s.revoked_at is null;
  if src is null then
    raise exception 'no active source named "%"', source using errcode = '42704';
  end if;
  select p.id into pid from cdp.tracking_plans p where p.name = attach_tracking_plan.plan;
  if pid is null then
    raise exception 'no tracking plan named "%"', plan using errcode = '42704';
  end if;
  if jsonb_typeof(o) <> 'object' then
    raise exception 'options: must be a JSON object' using errcode = '22023';
  end if;
  for k in select jsonb_object_keys(o) loop
    if k not in ('unplanned_events', 'unplanned_properties', 'violations', 'context_violations') then
      raise exception 'options.%: is not a tracking plan option (unplanned_events, unplanned_properties, violations, context_violations)', k
        using errcode = '22023';
    end if;
  end loop;
  if coalesce(o->>'unplanned_events', 'allow') not in ('allow', 'block') then
    raise exception 'options.unplanned_events: must be "allow" or "block"' using errcode = '22023';
  end if;
  if coalesce(o->>'unplanned_properties', 'keep') not in ('keep', 'omit') then
    raise exception 'options.unplanned_properties: must be "keep" or "omit"' using errcode = '22023';
  end if;
  if coalesce(o->>'violations', 'keep') not in ('keep', 'block') then
    raise exception 'options.violations: must be "keep" or "block"' using errcode = '22023';
  end if;
  if coalesce(jsonb_typeof(o->'context_violations'), 'boolean') <> 'boolean' then
    raise exception 'options.context_violations: must be true or false' using errcode = '22023';
  end if;
  insert into cdp.source_tracking_plans as a
         (source_id, plan_id, unplanned_events, unplanned_properties, violations, context_violations)
  values (src, pid, coalesce(o->>'unplanned_events', 'allow'), coalesce(o->>'unplanned_properties', 'keep'),
          coalesce(o->>'violations', 'keep'), coalesce((o->'context_violations')::boolean, false))
  on conflict (source_id) do update
     set plan_id = excluded.plan_id, unplanned_events = excluded.unplanned_events,
         unplanned_properties = excluded.unplanned_properties, violations = excluded.violations,
         context_violations = excluded.context_violations, attached_at = now();
end $$;
comment on function cdp.attach_tracking_plan(text, text, jsonb) is 'Makes a source follow a tracking plan (replacing any other), with options {"unplanned_events": "allow"|"block", "unplanned_properties": "keep"|"omit", "violations": "keep"|"block", "context_violations": true|false}.';

create function cdp.detach_tracking_plan(source text) returns void
language plpgsql volatile strict
set search_path = pg_catalog, pg_temp
as $$
begin
  delete from cdp.source_tracking_plans a using cdp.sources s
   where s.id = a.source_id and s.name = detach_tracking_plan.source;
  if not found then
    raise exception 'source "%" follows no tracking plan', source using errcode = '42704';
  end if;
end $$;
comment on function cdp.detach_tracking_plan(text) is 'Stops checking a source''s messages against a tracking plan.';

-- A first plan from what a source already sends: per track event (and for
-- identify and group traits) the keys seen, the JSON types seen for each, and
-- as required the keys present in at least required_share of the messages.
create function cdp.propose_tracking_plan(source text default null, days int default 30,
                                          required_share float8 default 1.0, sample int default 100000)
returns jsonb
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  src int;
  result jsonb;
begin
  if days is null or days < 1 then raise exception 'days: must be at least 1' using errcode = '22023'; end if;
  if required_share is null or required_share <= 0 or required_share > 1 then
    raise exception 'required_share: must be more than 0 and at most 1' using errcode = '22023';
  end if;
  if sample is null or sample < 1 then raise exception 'sample: must be at least 1' using errcode = '22023'; end if;
  if source is not null then
    select s.id into src from cdp.sources s where s.name = propose_tracking_plan.source;
    if src is null then raise exception 'no source named "%"', source using errcode = '42704'; end if;
  end if;
  with recent as (
    select e.type, e.event, case when e.type = 'track' then e.properties else e.traits end as doc
      from cdp.events e
     where e.received_at >= cdp.now() - make_interval(days => days)
       and (src is null or e.source_id = src)
       and e.type in ('track', 'identify', 'group') and (e.type <> 'track' or e.event is not null)
     order by e.received_at desc
     limit sample
  ), totals as (
    select type, coalesce(event, '') as event, count(*) as n from recent group by 1, 2
  ), keys as (
    select r.type, coalesce(r.event, '') as event, kv.key, count(*) as seen,
           array_agg(distinct case when jsonb_typeof(kv.value) = 'number' and kv.value::numeric = trunc(kv.value::numeric)
                                   then 'integer' else jsonb_typeof(kv.value) end) as types
      from recent r, jsonb_each(case when jsonb_typeof(r.doc) = 'object' then r.doc else '{}' end) kv
     group by 1, 2, 3
  ), typed as (  -- integer is a number: both seen say number
    select k.*, case when 'number' = any(k.types) then array_remove(k.types, 'integer') else k.types end as t from keys k
  ), schemas as (
    select t.type, t.event,
           jsonb_build_object('type', 'object', 'properties', jsonb_build_object(
             case when t.type = 'track' then 'properties' else 'traits' end,
             jsonb_build_object('type', 'object',
               'properties', coalesce(jsonb_object_agg(k.key, jsonb_build_object('type',
                   case when cardinality(k.t) = 1 then to_jsonb(k.t[1]) else to_jsonb(k.t) end))
                 filter (where k.key is not null), '{}'),
               'required', jsonb_agg(k.key order by k.key) filter (where k.seen >= required_share * t.n)))) as s
      from totals t left join typed k on k.type = t.type and k.event = t.event
     group by t.type, t.event, t.n
  )
  select jsonb_strip_nulls(jsonb_build_object(
           'events', (select jsonb_object_agg(event, s) from schemas where type = 'track'),
           'identify', (select s from schemas where type = 'identify'),
           'group', (select s from schemas where type = 'group')))
    into result;
  return result;
end $$;
comment on function cdp.propose_tracking_plan(text, int, float8, int) is 'Proposes a tracking plan from the last `days` days of a source''s events (all sources when NULL; at most `sample` messages, newest first): per event the properties seen with their JSON types, required when present in at least `required_share` of them. A start to edit, then pass to cdp.create_tracking_plan.';

create trigger tracking_plans_audit after insert or update or delete on cdp.tracking_plans
  for each row execute function cdp.audit_change();
create trigger tracking_plan_versions_audit after insert or delete on cdp.tracking_plan_versions
  for each row execute function cdp.audit_change();
create trigger source_tracking_plans_audit after insert or update or delete on cdp.source_tracking_plans
  for each row execute function cdp.audit_change();
create trigger tracking_plans_audit_truncate after truncate on cdp.tracking_plans
  for each statement execute function cdp.audit_change();
create trigger tracking_plan_versions_audit_truncate after truncate on cdp.tracking_plan_versions
  for each statement execute function cdp.audit_change();
create trigger source_tracking_plans_audit_truncate after truncate on cdp.source_tracking_plans
  for each statement execute function cdp.audit_change();

-- Violations are kept 30 days by default, like the quarantine.
alter table cdp.retention drop constraint retention_kind_check,
  add constraint retention_kind_check check (kind in ('events', 'quarantine', 'outbox', 'dead_letters', 'segment_history', 'consent_history', 'violations'));
insert into cdp.retention (kind, keep) values ('violations', '30 days');
comment on column cdp.retention.kind is 'events (whole daily partitions are dropped), quarantine, outbox, dead_letters, segment_history (ended memberships), consent_history, violations (of tracking plans).';
comment on function cdp.set_retention(text, interval) is 'Sets how long a kind of data is kept: events, quarantine, outbox, dead_letters, segment_history, consent_history, violations.';
create or replace function cdp.run_retention(batch int default 10000) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  r record;
  cutoff timestamptz;
  n bigint;
  total bigint;
  dropped text[];
  part record;
  result jsonb := '{}';
begin
  if batch is null or batch < 1 then
    raise exception 'batch: must be at least 1' using errcode = '22023';
  end if;
  for r in select * from cdp.retention order by kind loop
    cutoff := cdp.now() - r.keep;
    total := 0;
    dropped := '{}';
    if r.kind = 'events' then
      -- Whole daily partitions whose every row is older than the cutoff.
      for part in
        select c.relname, (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz as hi
          from pg_inherits i join pg_class c on c.oid = i.inhrelid
         where i.inhparent = 'cdp.events'::regclass
      loop
        if part.hi <= cutoff then
          execute format('select count(*) from cdp.%I', part.relname) into n;
          -- Partitions made by CREATE EXTENSION belong to it until released.
          if exists (select from pg_depend where classid = 'pg_class'::regclass
                      and objid = ('cdp.' || quote_ident(part.relname))::regclass and deptype = 'e') then
            execute format('alter extension cdp drop table cdp.%I', part.relname);
          end if;
          execute format('drop table cdp.%I', part.relname);
          total := total + n;
          dropped := dropped || part.relname::text;
        end if;
      end loop;
    else
      loop
        if r.kind = 'quarantine' then
          delete from cdp.quarantine where id in (select id from cdp.quarantine where received_at < cutoff limit batch);
        elsif r.kind = 'outbox' then
          delete from cdp.outbox where id in (select id from cdp.outbox where created_at < cutoff limit batch);
        elsif r.kind = 'dead_letters' then
          delete from cdp.dead_letters where id in (select id from cdp.dead_letters where failed_at < cutoff limit batch);
        elsif r.kind = 'segment_history' then
          delete from cdp.segment_membership where ctid in
            (select ctid from cdp.segment_membership where exited_at < cutoff limit batch);
        elsif r.kind = 'violations' then
          delete from cdp.violations where id in (select id from cdp.violations where received_at < cutoff limit batch);
        elsif r.kind = 'consent_history' then
          -- The statement that is still in force stays, however old.
          delete from cdp.consent_history h where h.id in (
            select h2.id from cdp.consent_history h2 where h2.expressed_at < cutoff
               and exists (select from cdp.consent_history h3 where h3.profile_id = h2.profile_id
                            and h3.expressed_at > h2.expressed_at)
             limit batch);
        end if;
        get diagnostics n = row_count;
        total := total + n;
        exit when n < batch;
      end loop;
    end if;
    if total > 0 then
      insert into cdp.retention_log (kind, cutoff, removed, partitions)
      values (r.kind, cutoff, total, nullif(dropped, '{}'));
      raise log 'cdp retention: removed % % older than % %', total, r.kind, cutoff,
        case when dropped = '{}' then '' else '(partitions ' || array_to_string(dropped, ', ') || ')' end;
      result := result || jsonb_build_object(r.kind, total);
    end if;
  end loop;
  return result;
end $$;
comment on function cdp.run_retention(int) is 'Applies cdp.retention now: drops whole expired partitions of cdp.events (never row by row) and trims the other kinds in batches; logs what it removed in cdp.retention_log. The processor runs it once a minute.';

revoke all on function cdp.check_tracking_plan(jsonb), cdp.create_tracking_plan(text, jsonb), cdp.update_tracking_plan(text, jsonb),
  cdp.drop_tracking_plan(text), cdp.attach_tracking_plan(text, text, jsonb), cdp.detach_tracking_plan(text),
  cdp.propose_tracking_plan(text, int, float8, int) from public;
grant execute on function cdp.check_tracking_plan(jsonb), cdp.create_tracking_plan(text, jsonb), cdp.update_tracking_plan(text, jsonb),
  cdp.drop_tracking_plan(text), cdp.attach_tracking_plan(text, text, jsonb), cdp.detach_tracking_plan(text),
  cdp.propose_tracking_plan(text, int, float8, int) to cdp_admin;
grant select, insert, update, delete, truncate on cdp.tracking_plans, cdp.tracking_plan_versions, cdp.source_tracking_plans,
  cdp.violations, cdp.violation_counts to cdp_admin;
grant all on sequence cdp.tracking_plans_id_seq, cdp.violations_id_seq to cdp_admin;
grant select on cdp.tracking_plans, cdp.tracking_plan_versions, cdp.source_tracking_plans, cdp.violations,
  cdp.violation_counts to cdp_analyst;

-- The audience engine reads aggregate state in place: a compact binary form
-- instead of JSON text. Existing JSON state keeps its bytes (the engine
-- still reads it, and rewrites it in the binary form the next time the profile is evaluated).
alter table cdp.profile_computed alter column state drop default,
  alter column state type bytea using convert_to(state, 'UTF8'),
  alter column state set default '';
comment on column cdp.profile_computed.state is 'Aggregate state by definition (buckets of window/100) in cdp''s binary form, read in place by evaluation; internal, rebuilt by cdp.recompute_traits. State of 0.1.0 (JSON text) is still read and rewritten in this form.';

create function cdp.profile_state_json(profile_id bigint) returns text
as 'MODULE_PATHNAME', 'cdp_profile_state_json' language c stable strict;
comment on function cdp.profile_state_json(bigint) is 'A profile''s aggregate state (cdp.profile_computed.state, stored in binary) in the JSON form of 0.1.0, for inspection: {"<aggregate key>": [[bucket start, count, ...], ...]}. Null when the profile has no state row.';
revoke all on function cdp.profile_state_json(bigint) from public;
grant execute on function cdp.profile_state_json(bigint) to cdp_admin;

-- Destinations of built-in kinds (segment, ga4, meta_capi, mixpanel,
-- amplitude, braze) and transformations: options.kind/config/transform need
-- no column, but a transformation runs with its owner's rights, and what a
-- transformation or a kind drops is counted.
alter table cdp.destinations add column owner name not null default current_user,
  add column dropped bigint not null default 0;
comment on column cdp.destinations.owner is 'The role that created it: its transformation (options.transform) runs with this role''s privileges, or with cdp_admin''s when the owner is a superuser, never with a superuser''s.';
comment on column cdp.destinations.dropped is 'Messages not sent by choice: the transformation returned null, or the kind has no counterpart for the message (docs/connectors/).';
drop trigger destinations_check on cdp.destinations;
create trigger destinations_check before insert or update of url, options, owner on cdp.destinations
  for each row execute function cdp.check_destination();
comment on function cdp.check_destination() is 'Trigger: a destination''s URL must be http(s) with a host, its options must parse, and its transformation must be a function (jsonb) returns jsonb that its owner may execute, however the row is written (22023 naming the field).';
create or replace view cdp.destination_stats as
  select d.name, d.paused, coalesce(d.circuit_open_until > now(), false) as circuit_open, d.delivered,
         (select count(*) from cdp.deliveries q where q.destination_id = d.destination_id) as queued,
         (select count(*) from cdp.deliveries q where q.destination_id = d.destination_id and q.attempts > 0) as retrying,
         d.dead, d.failed_attempts, d.consent_blocked, d.latency_p50_ms, d.latency_p99_ms,
         (select now() - min(q.created_at) from cdp.deliveries q where q.destination_id = d.destination_id) as lag,
         d.last_delivery_at, d.last_error, d.dropped, coalesce(d.options->>'kind', 'webhook') as kind
    from cdp.destinations d;
comment on view cdp.destination_stats is 'Per destination: delivered, queued, retrying, dead, consent-blocked, dropped (by its transformation or its kind), latency (p50/p99 from queueing to acknowledgement), lag (age of the oldest queued delivery) and kind.';

create function cdp.test_destination(destination text, message jsonb, debug boolean default false) returns jsonb
as 'MODULE_PATHNAME', 'cdp_test_destination' language c volatile;
comment on function cdp.test_destination(text, jsonb, boolean) is 'What the destination would send for one message, without sending it: {"kind", "outcome": "send" | "skip" | "reject", "reason", "request": {"url", "headers", "body"}} with secrets shown as <secret>; the transformation is not run. With debug => true a ga4 destination posts it to GA4''s validation server (/debug/mp/collect) and adds its "validation" answer. docs/connectors/.';
revoke all on function cdp.test_destination(text, jsonb, boolean) from public;
grant execute on function cdp.test_destination(text, jsonb, boolean) to cdp_admin;

-- The audit log keeps a kind's config key names, not its values (API secrets, tokens).
create or replace function cdp.without_secrets(r jsonb) returns jsonb
language sql immutable
set search_path = pg_catalog, pg_temp
as $$ select case when r ? 'options' then
  jsonb_set(r, '{options}', ((r->'options') - 'secret' - 'headers' - 'config')
    || jsonb_build_object('secret_set', (r->'options') ? 'secret')
    || jsonb_strip_nulls(jsonb_build_object('header_names',
         (select jsonb_agg(k order by k) from jsonb_object_keys(r->'options'->'headers') k),
         'config_keys',
         (select jsonb_agg(k order by k) from jsonb_object_keys(r->'options'->'config') k))))
  else r end $$;
comment on function cdp.without_secrets(jsonb) is 'A configuration row as the audit log keeps it: a destination''s secret, header values and kind config left out (header and config key names, and whether a secret is set, stay).';
comment on function cdp.create_destination(text, text, jsonb) is 'Creates a destination (a webhook, or a built-in kind: options.kind; a NULL url takes the kind''s published address) owned by the calling role, and returns its id. Options are checked: a bad one is refused naming its JSON path. From the next processed event on, what it subscribes to is queued for it.';
