------------------------------------------------------------------------------
-- Events: one row per accepted message, partitioned by day of arrival; the
-- deduplication ledger, the quarantine, the daily partitions and maintenance.
------------------------------------------------------------------------------
create sequence cdp.events_id_seq;
comment on sequence cdp.events_id_seq is 'Numbers events in the order they were written (not committed).';

create table cdp.events (
  id                 bigint not null default nextval('cdp.events_id_seq'),
  received_at        timestamptz not null,
  source_id          int not null,
  message_id         text not null,
  type               text not null check (type in ('track', 'identify', 'page', 'screen', 'group', 'alias')),
  event              text,
  name               text,
  category           text,
  user_id            text,
  anonymous_id       text,
  group_id           text,
  previous_id        text,
  "timestamp"        timestamptz not null,
  original_timestamp timestamptz,
  sent_at            timestamptz,
  properties         jsonb,
  traits             jsonb,
  context            jsonb,
  integrations       jsonb,
  txid               xid8 not null default pg_current_xact_id(),
  -- Times are real times: no infinity, no year outside 1-9999, however a row
  -- is written (the ingestion functions refuse them with a clear error first).
  -- One flat AND of comparisons (no BETWEEN, no OR): pg_dump prints it back in
  -- a form that parses to the same tree, so restored partitions attach. A NULL
  -- original_timestamp or sent_at makes its comparisons unknown, which passes.
  constraint events_times_in_range check (
    received_at >= '0001-01-01 00:00:00+00' and received_at <= '9999-12-31 23:59:59.999999+00' and
    "timestamp" >= '0001-01-01 00:00:00+00' and "timestamp" <= '9999-12-31 23:59:59.999999+00' and
    original_timestamp >= '0001-01-01 00:00:00+00' and original_timestamp <= '9999-12-31 23:59:59.999999+00' and
    sent_at >= '0001-01-01 00:00:00+00' and sent_at <= '9999-12-31 23:59:59.999999+00')
  -- No key here: each partition has its own, primary key (txid, id,
  -- received_at), made with it by cdp.ensure_partitions ((txid, id) first: the
  -- processor's reading order, so one index serves both). A key on this table
  -- (an extension member, so created by a restore's CREATE EXTENSION) would be
  -- re-created on each partition the restore attaches, and clash with the
  -- partition's key that pg_dump restores next.
) partition by range (received_at);
alter sequence cdp.events_id_seq owned by cdp.events.id;
select pg_catalog.pg_extension_config_dump('cdp.events_id_seq', '');
comment on table cdp.events is 'Every accepted message (track, identify, page, screen, group, alias), partitioned by day of received_at. Partitions are created ahead automatically.';
comment on column cdp.events.id is 'Write-order number of the event.';
comment on column cdp.events.received_at is 'When the server received the message (the server''s clock; the partition key).';
comment on column cdp.events.source_id is 'The source (cdp.sources.id) whose write key sent it.';
comment on column cdp.events.message_id is 'The client''s messageId, or a generated UUID. Unique per source within the deduplication window.';
comment on column cdp.events.type is 'Segment message type: track, identify, page, screen, group or alias.';
comment on column cdp.events.event is 'Event name of a track call ("Order Completed").';
comment on column cdp.events.name is 'Page or screen name.';
comment on column cdp.events.category is 'Page or screen category.';
comment on column cdp.events.user_id is 'userId: the app''s own id for a known person (numbers normalised to text).';
comment on column cdp.events.anonymous_id is 'anonymousId: a device or browser id for a person not yet known.';
comment on column cdp.events.group_id is 'groupId: the account or company (group calls, or carried by other calls).';
comment on column cdp.events.previous_id is 'previousId of an alias call: the id being merged into userId.';
comment on column cdp.events."timestamp" is 'When the event happened, corrected for client clock skew: received_at - (sent_at - original_timestamp).';
comment on column cdp.events.original_timestamp is 'The timestamp the client sent, uncorrected.';
comment on column cdp.events.sent_at is 'When the client says it sent the message (its own clock).';
comment on column cdp.events.properties is 'Properties of a track, page or screen call.';
comment on column cdp.events.traits is 'Traits of an identify or group call.';
comment on column cdp.events.context is 'Context (library, device, ip, page, consent...), with the batch envelope''s context merged in.';
comment on column cdp.events.integrations is 'Integrations object, with the batch envelope''s merged in.';
comment on column cdp.events.txid is 'The writing transaction. The processor reads events in (txid, id) order and only from finished transactions, so a late committer is never skipped.';


-- Deduplication: one row per (source, messageId) seen within the window.
create table cdp.message_ids (
  source_id   int not null,
  message_id  text not null,
  received_at timestamptz not null,
  primary key (source_id, message_id)
);
-- BRIN: rows arrive in received_at order, so it costs next to nothing per insert
-- and still finds the old rows run_maintenance trims.
create index message_ids_received_idx on cdp.message_ids using brin (received_at);
comment on table cdp.message_ids is 'Deduplication ledger: every (source, messageId) accepted within the window set by cdp.dedup_window_hours (at least 24). A repeated messageId is reported as duplicate and stored once, whatever its timestamp or partition.';
comment on column cdp.message_ids.source_id is 'The source that sent the message.';
comment on column cdp.message_ids.message_id is 'The messageId.';
comment on column cdp.message_ids.received_at is 'When it was first accepted; rows older than the window are trimmed by cdp.run_maintenance().';
select pg_catalog.pg_extension_config_dump('cdp.message_ids', '');

------------------------------------------------------------------------------
-- Quarantine: every message that broke a rule, as it arrived.
------------------------------------------------------------------------------
create table cdp.quarantine (
  id          bigint generated always as identity primary key,
  received_at timestamptz not null,
  source_id   int,
  message_id  text,
  field       text not null,
  reason      text not null,
  raw         text not null
);
create index quarantine_received_idx on cdp.quarantine (received_at);
comment on table cdp.quarantine is 'Messages refused by validation, kept raw with the rule they broke. Nothing that arrives is silently dropped.';
comment on column cdp.quarantine.id is 'Row number.';
comment on column cdp.quarantine.received_at is 'When the message arrived.';
comment on column cdp.quarantine.source_id is 'The source whose write key sent it.';
comment on column cdp.quarantine.message_id is 'The messageId it carried, if usable.';
comment on column cdp.quarantine.field is 'The field that broke a rule ("userId", "timestamp", "message"...); "processor" for an event the processor set aside (see reason).';
comment on column cdp.quarantine.reason is 'The field and the rule, e.g. "event: is required for track".';
comment on column cdp.quarantine.raw is 'The message as received (JSON text), without any writeKey.';
select pg_catalog.pg_extension_config_dump('cdp.quarantine', '');
select pg_catalog.pg_extension_config_dump('cdp.quarantine_id_seq', '');

------------------------------------------------------------------------------
-- Partitions
------------------------------------------------------------------------------
-- Partitions for dates far from now are a superuser's business: thousands of
-- tables made through this function stall every writer. With its owner's
-- rights, so that ingestion (and cdp_admin) can make today's.
create function cdp.ensure_partitions(upto timestamptz, days_ahead int default 7)
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
-- Maintenance
------------------------------------------------------------------------------
-- With its owner's rights: it removes ledger rows, which no role deletes itself.
create function cdp.run_maintenance() returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  horizon timestamptz := cdp.ensure_partitions(cdp.now());
  trimmed bigint;
begin
  delete from cdp.message_ids
   where received_at < cdp.now() - make_interval(hours => current_setting('cdp.dedup_window_hours')::int);
  get diagnostics trimmed = row_count;
  return jsonb_build_object('partitions_until', horizon, 'message_ids_trimmed', trimmed);
end $$;
comment on function cdp.run_maintenance() is 'Creates partitions ahead and trims the deduplication ledger to cdp.dedup_window_hours. Safe to run at any time.';
