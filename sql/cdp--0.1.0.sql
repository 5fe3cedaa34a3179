-- cdp 0.1.0: schema, collection tables and the SQL ingestion API.
\echo Use "CREATE EXTENSION cdp" to load this file. \quit

------------------------------------------------------------------------------
-- Sources: where events come from, and the write keys that prove it.
------------------------------------------------------------------------------
create table cdp.sources (
  id             int generated always as identity primary key,
  name           text not null unique check (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
  write_key_hash bytea unique,
  write_key_hint text,
  created_at     timestamptz not null default now(),
  revoked_at     timestamptz
);
comment on table cdp.sources is 'Named event sources (an app, a website, an ETL job). Each has a write key; only its SHA-256 hash is stored.';
comment on column cdp.sources.id is 'Source number, stored on every event and quarantined message.';
comment on column cdp.sources.name is 'Unique name chosen by the administrator (letters, digits, _ . -; at most 64).';
comment on column cdp.sources.write_key_hash is 'SHA-256 of the write key. The key itself is returned once by cdp.create_source and never stored. NULL for the built-in "sql" source, which needs no key.';
comment on column cdp.sources.write_key_hint is 'The first characters of the write key, to tell keys apart in logs and UIs.';
comment on column cdp.sources.created_at is 'When the source was created.';
comment on column cdp.sources.revoked_at is 'When the write key was revoked; a revoked source accepts nothing.';

-- SQL ingestion without a write key is attributed to this source.
insert into cdp.sources (name) values ('sql');

create function cdp.create_source(name text) returns text
language plpgsql volatile strict
set search_path = pg_catalog, pg_temp
as $$
declare
  key text := 'cdp_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
begin
  if name !~ '^[A-Za-z0-9_.-]{1,64}$' then
    raise exception 'source name "%" is invalid', name
      using errcode = '22023', hint = 'Use 1 to 64 letters, digits, "_", "." or "-".';
  end if;
  insert into cdp.sources (name, write_key_hash, write_key_hint)
  values (create_source.name, sha256(convert_to(key, 'UTF8')), left(key, 10));
  return key;
exception when unique_violation then
  raise exception 'source "%" already exists', name using errcode = '42710';
end $$;
comment on function cdp.create_source(text) is 'Creates a source and returns its write key. The key is shown only this once.';

create function cdp.revoke_source(name text) returns void
language plpgsql volatile strict
set search_path = pg_catalog, pg_temp
as $$
begin
  update cdp.sources s set revoked_at = now()
   where s.name = revoke_source.name and s.revoked_at is null;
  if not found then
    raise exception 'no active source named "%"', name using errcode = '42704';
  end if;
end $$;
comment on function cdp.revoke_source(text) is 'Revokes a source''s write key: from now on its events are refused.';

-- Resolves a write key (or, with NULL, the built-in "sql" source) to a source id.
create function cdp.source_for_key(write_key text) returns int
language sql stable parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select id from cdp.sources
   where revoked_at is null
     and case when write_key is null then name = 'sql' and write_key_hash is null
              else write_key_hash = sha256(convert_to(write_key, 'UTF8')) end
$$;
comment on function cdp.source_for_key(text) is 'The active source a write key belongs to (NULL key: the built-in "sql" source), or NULL.';

------------------------------------------------------------------------------
-- Events: one row per accepted message, partitioned by day of arrival.
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
  primary key (id, received_at)
) partition by range (received_at);
alter sequence cdp.events_id_seq owned by cdp.events.id;
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

create index events_type_event_idx on cdp.events (type, event);
create index events_user_idx on cdp.events (user_id) where user_id is not null;
create index events_anonymous_idx on cdp.events (anonymous_id) where anonymous_id is not null;

-- Deduplication: one row per (source, messageId) seen within the window.
create table cdp.message_ids (
  source_id   int not null,
  message_id  text not null,
  received_at timestamptz not null,
  primary key (source_id, message_id)
);
create index message_ids_received_idx on cdp.message_ids (received_at);
comment on table cdp.message_ids is 'Deduplication ledger: every (source, messageId) accepted within the window set by cdp.dedup_window_hours (at least 24). A repeated messageId is reported as duplicate and stored once, whatever its timestamp or partition.';
comment on column cdp.message_ids.source_id is 'The source that sent the message.';
comment on column cdp.message_ids.message_id is 'The messageId.';
comment on column cdp.message_ids.received_at is 'When it was first accepted; rows older than the window are trimmed by cdp.run_maintenance().';

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
comment on column cdp.quarantine.field is 'The field that broke a rule ("userId", "timestamp", "message"...).';
comment on column cdp.quarantine.reason is 'The field and the rule, e.g. "event: is required for track".';
comment on column cdp.quarantine.raw is 'The message as received (JSON text), without any writeKey.';

------------------------------------------------------------------------------
-- Partitions
------------------------------------------------------------------------------
create function cdp.ensure_partitions(upto timestamptz, days_ahead int default 7)
returns timestamptz
language plpgsql volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  day0 timestamptz := date_trunc('day', upto at time zone 'UTC') at time zone 'UTC';
  lo timestamptz;
  part text;
begin
  -- Serialise creators: two sessions racing at midnight must not both create.
  perform pg_advisory_xact_lock(hashtext('cdp.ensure_partitions'));
  for d in 0 .. days_ahead loop
    lo := day0 + make_interval(days => d);
    part := 'events_' || to_char(lo at time zone 'UTC', 'YYYYMMDD');
    if to_regclass('cdp.' || part) is null then
      execute format('create table cdp.%I partition of cdp.events for values from (%L) to (%L)',
                     part, lo, lo + interval '1 day');
    end if;
  end loop;
  return day0 + make_interval(days => days_ahead + 1);
end $$;
comment on function cdp.ensure_partitions(timestamptz, int) is 'Creates the daily partitions of cdp.events from the day of upto to days_ahead days later, if missing; returns the end of the covered range. Ingestion calls it before it runs out of partitions.';

------------------------------------------------------------------------------
-- Maintenance
------------------------------------------------------------------------------
create function cdp.run_maintenance() returns jsonb
language plpgsql volatile
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

------------------------------------------------------------------------------
-- SQL ingestion
------------------------------------------------------------------------------
create function cdp.now() returns timestamptz
as 'MODULE_PATHNAME', 'cdp_now' language c stable;
comment on function cdp.now() is 'The server clock as cdp sees it: now(), unless cdp.test_clock is set (tests only).';

create function cdp.ingest(payload jsonb, write_key text default null)
returns table (message_id text, status text, error text)
as 'MODULE_PATHNAME', 'cdp_ingest' language c volatile called on null input;
comment on function cdp.ingest(jsonb, text) is 'Validates and stores one Segment-spec message or a {"batch": [...]} envelope. One row per message: accepted, duplicate, or rejected (kept in cdp.quarantine with the error).';

-- The typed conveniences: build a message, ingest it, raise if it is invalid.
create function cdp.ingest_one(message jsonb, write_key text) returns text
language plpgsql volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  r record;
begin
  select * into r from cdp.ingest(message, write_key);
  if r.status = 'rejected' then
    raise exception 'invalid %: %', message->>'type', r.error using errcode = '22023';
  end if;
  return r.message_id;
end $$;
comment on function cdp.ingest_one(jsonb, text) is 'Ingests one message and returns its messageId; raises 22023 naming the field if it breaks a rule (nothing is stored then).';

create function cdp.track(
  event text, user_id text default null, anonymous_id text default null,
  properties jsonb default null, context jsonb default null, "timestamp" timestamptz default null,
  message_id text default null, integrations jsonb default null, write_key text default null)
returns text language sql volatile
as $$ select cdp.ingest_one(jsonb_build_object('type', 'track', 'event', event, 'userId', user_id,
  'anonymousId', anonymous_id, 'properties', properties, 'context', context, 'timestamp', "timestamp",
  'messageId', message_id, 'integrations', integrations), write_key) $$;
comment on function cdp.track(text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text) is 'Records a track event (what a person did). Returns the messageId.';

create function cdp.identify(
  user_id text default null, anonymous_id text default null, traits jsonb default null,
  context jsonb default null, "timestamp" timestamptz default null, message_id text default null,
  integrations jsonb default null, write_key text default null)
returns text language sql volatile
as $$ select cdp.ingest_one(jsonb_build_object('type', 'identify', 'userId', user_id,
  'anonymousId', anonymous_id, 'traits', traits, 'context', context, 'timestamp', "timestamp",
  'messageId', message_id, 'integrations', integrations), write_key) $$;
comment on function cdp.identify(text, text, jsonb, jsonb, timestamptz, text, jsonb, text) is 'Records who a person is and their traits. Returns the messageId.';

create function cdp.page(
  name text default null, user_id text default null, anonymous_id text default null,
  category text default null, properties jsonb default null, context jsonb default null,
  "timestamp" timestamptz default null, message_id text default null, integrations jsonb default null,
  write_key text default null)
returns text language sql volatile
as $$ select cdp.ingest_one(jsonb_build_object('type', 'page', 'name', name, 'userId', user_id,
  'anonymousId', anonymous_id, 'category', category, 'properties', properties, 'context', context,
  'timestamp', "timestamp", 'messageId', message_id, 'integrations', integrations), write_key) $$;
comment on function cdp.page(text, text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text) is 'Records a web page view. Returns the messageId.';

create function cdp.screen(
  name text default null, user_id text default null, anonymous_id text default null,
  category text default null, properties jsonb default null, context jsonb default null,
  "timestamp" timestamptz default null, message_id text default null, integrations jsonb default null,
  write_key text default null)
returns text language sql volatile
as $$ select cdp.ingest_one(jsonb_build_object('type', 'screen', 'name', name, 'userId', user_id,
  'anonymousId', anonymous_id, 'category', category, 'properties', properties, 'context', context,
  'timestamp', "timestamp", 'messageId', message_id, 'integrations', integrations), write_key) $$;
comment on function cdp.screen(text, text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text) is 'Records a mobile app screen view. Returns the messageId.';

create function cdp."group"(
  group_id text, user_id text default null, anonymous_id text default null, traits jsonb default null,
  context jsonb default null, "timestamp" timestamptz default null, message_id text default null,
  integrations jsonb default null, write_key text default null)
returns text language sql volatile
as $$ select cdp.ingest_one(jsonb_build_object('type', 'group', 'groupId', group_id, 'userId', user_id,
  'anonymousId', anonymous_id, 'traits', traits, 'context', context, 'timestamp', "timestamp",
  'messageId', message_id, 'integrations', integrations), write_key) $$;
comment on function cdp."group"(text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text) is 'Links a person to an account (group) and records the account''s traits. Returns the messageId.';

create function cdp.alias(
  previous_id text, user_id text, context jsonb default null, "timestamp" timestamptz default null,
  message_id text default null, integrations jsonb default null, write_key text default null)
returns text language sql volatile
as $$ select cdp.ingest_one(jsonb_build_object('type', 'alias', 'previousId', previous_id,
  'userId', user_id, 'context', context, 'timestamp', "timestamp", 'messageId', message_id,
  'integrations', integrations), write_key) $$;
comment on function cdp.alias(text, text, jsonb, timestamptz, text, jsonb, text) is 'Declares that previous_id and user_id are the same person. Returns the messageId.';

------------------------------------------------------------------------------
-- Operations
------------------------------------------------------------------------------
create function cdp.http_metrics() returns text
as 'MODULE_PATHNAME', 'cdp_http_metrics' language c volatile;
comment on function cdp.http_metrics() is 'The HTTP collector''s counters in Prometheus text format, as served on GET /metrics.';

create view cdp.workers as
  select pid, backend_type, application_name, state, backend_start, state_change
    from pg_stat_activity where backend_type like 'cdp %';
comment on view cdp.workers is 'The cdp background workers running now (one row each): check here that the HTTP collector is up.';

select cdp.ensure_partitions(now());
