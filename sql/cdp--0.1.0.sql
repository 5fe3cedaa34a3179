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
  txid               xid8 not null default pg_current_xact_id(),
  -- (txid, id) first: the processor's reading order, so one index serves both.
  primary key (txid, id, received_at)
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
  -- It runs with its owner's rights for cdp_ingest: no one makes thousands of tables through it.
  if days_ahead is null or days_ahead < 0 or days_ahead > 31 then
    raise exception 'days_ahead: must be from 0 to 31' using errcode = '22023';
  end if;
  for d in 0 .. days_ahead loop
    lo := day0 + make_interval(days => d);
    part := 'events_' || to_char(lo at time zone 'UTC', 'YYYYMMDD');
    if to_regclass('cdp.' || part) is null then
      -- Serialise creators (two sessions racing at midnight), but only when one
      -- is missing: the lock is held to commit and would stall other writers.
      perform pg_advisory_xact_lock(hashtext('cdp.ensure_partitions'));
      -- "if not exists": the session we waited for may have just created it.
      execute format('create table if not exists cdp.%I partition of cdp.events for values from (%L) to (%L)',
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
as 'MODULE_PATHNAME', 'cdp_now' language c volatile;
comment on function cdp.now() is 'The server clock as cdp sees it: clock_timestamp(), unless cdp.test_clock is set (tests only).';

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
-- Identity resolution and profiles
------------------------------------------------------------------------------
create table cdp.identifier_types (
  type                 text primary key check (type ~ '^[a-z][a-z0-9_]{0,62}$'),
  paths                text[] not null check (cardinality(paths) > 0),
  normalise            text not null default 'none' check (normalise in ('none', 'lower', 'email', 'phone')),
  max_per_profile      int check (max_per_profile > 0),
  limit_window         interval,
  priority             int not null default 50,
  blocked_values       text[] not null default '{}',
  blocked_patterns     text[] not null default '{}',
  default_country_code text not null default '' check (default_country_code ~ '^[0-9]{0,3}$')
);
comment on table cdp.identifier_types is 'The kinds of identifier that tie events to a person, and the merge rules of each.';
comment on column cdp.identifier_types.type is 'Name of the identifier type (user_id, email, device_id...).';
comment on column cdp.identifier_types.paths is 'Where events carry it: userId, anonymousId, groupId, or a dotted path under traits, context or properties (traits.email, context.device.id).';
comment on column cdp.identifier_types.normalise is 'none (as sent), lower (trimmed, lower case), email (trimmed, lower case, must hold one @), phone (digits only, with country code).';
comment on column cdp.identifier_types.max_per_profile is 'At most this many identifiers of the type per profile (NULL: unlimited). A merge that would pass it is refused.';
comment on column cdp.identifier_types.limit_window is 'The limit counts only identifiers first seen within this interval (NULL: ever).';
comment on column cdp.identifier_types.priority is 'Lower is stronger: an event whose merge is refused stays with the profile of its strongest identifier.';
comment on column cdp.identifier_types.blocked_values is 'Values that never identify anyone (compared after normalisation, ignoring case).';
comment on column cdp.identifier_types.blocked_patterns is 'Regular expressions (whole value, ignoring case) of values that never identify anyone.';
comment on column cdp.identifier_types.default_country_code is 'For phone: the country code given to numbers sent without one.';

insert into cdp.identifier_types (type, paths, normalise, max_per_profile, priority, blocked_values, blocked_patterns, default_country_code)
select t.type, t.paths, t.normalise, t.max_per_profile, t.priority,
       array['null', 'undefined', 'unknown', 'none', 'nan', 'anonymous', 'guest', '-1', '0', 'n/a', 'test@test.com'],
       array['^[0\-]+$'], t.cc
  from (values ('user_id', array['userId'], 'none', 1, 1, ''),
               ('email', array['traits.email', 'context.traits.email'], 'email', 5, 2, ''),
               ('phone', array['traits.phone', 'context.traits.phone'], 'phone', 5, 3, '1'),
               ('anonymous_id', array['anonymousId'], 'none', null, 100, '')) as t(type, paths, normalise, max_per_profile, priority, cc);

create function cdp.check_identifier_types() returns trigger
as 'MODULE_PATHNAME', 'cdp_check_identifier_types' language c;
comment on function cdp.check_identifier_types() is 'Trigger: refuses a change to cdp.identifier_types whose rules do not compile (e.g. a bad regular expression), naming the type and pattern.';
create trigger identifier_types_compile after insert or update or delete or truncate on cdp.identifier_types
  for each statement execute function cdp.check_identifier_types();

create table cdp.trait_rules (
  trait           text primary key,
  strategy        text not null default 'last' check (strategy in ('last', 'first', 'max', 'min', 'source_priority')),
  source_priority int[] not null default '{}',
  from_path       text check (from_path ~ '^(traits|context|properties)\.')
);
comment on table cdp.trait_rules is 'How each profile trait merges when values disagree (the default for a trait not listed is last).';
comment on column cdp.trait_rules.trait is 'The trait name (a top-level key of profiles.traits).';
comment on column cdp.trait_rules.strategy is 'last: latest event timestamp wins; first: earliest wins; max / min: largest or smallest value; source_priority: the first listed source wins.';
comment on column cdp.trait_rules.source_priority is 'For source_priority: source ids, strongest first; unlisted sources rank last.';
create function cdp.rules_changed() returns trigger
as 'MODULE_PATHNAME', 'cdp_rules_changed' language c;
comment on function cdp.rules_changed() is 'Trigger: when the transaction commits, processors read cdp.trait_rules again (they cache the rules between batches).';
create trigger trait_rules_changed after insert or update or delete or truncate on cdp.trait_rules
  for each statement execute function cdp.rules_changed();
comment on column cdp.trait_rules.from_path is 'Also take the trait from this path of any event (properties.plan, context.traits.plan).';

create sequence cdp.profile_id_seq;
comment on sequence cdp.profile_id_seq is 'Profile numbers.';

create table cdp.profiles (
  profile_id       bigint primary key,
  traits           jsonb not null default '{}',
  trait_sources    jsonb not null default '{}',
  first_seen       timestamptz,
  last_seen        timestamptz,
  event_count      bigint not null default 0,
  identifier_count int not null default 0,
  merge_count      int not null default 0,
  flagged          boolean not null default false,
  updated_at       timestamptz not null default now()
);
comment on table cdp.profiles is 'One row per surviving profile (person). Profiles merged into another are gone from here; cdp.profile_map leads to their survivor.';
comment on column cdp.profiles.profile_id is 'Profile number.';
comment on column cdp.profiles.traits is 'The person''s traits, merged field by field under cdp.trait_rules.';
comment on column cdp.profiles.trait_sources is 'Provenance of each trait: {"plan": {"at": event time, "source": source id, "messageId": ...}}.';
comment on column cdp.profiles.first_seen is 'Timestamp of the earliest event bound to the profile.';
comment on column cdp.profiles.last_seen is 'Timestamp of the latest event bound to the profile.';
comment on column cdp.profiles.event_count is 'Events bound to the profile (including those of profiles merged into it).';
comment on column cdp.profiles.identifier_count is 'Identifiers of the profile.';
comment on column cdp.profiles.merge_count is 'Merges the profile has absorbed.';
comment on column cdp.profiles.flagged is 'Hit a guard rail (cdp.max_merges_per_profile, cdp.max_identifiers_per_profile): takes no more merges until reviewed.';
comment on column cdp.profiles.updated_at is 'Last change.';

create table cdp.identities (
  type           text not null,
  value          text not null,
  profile_id     bigint not null,
  origin_profile bigint not null,
  first_seen     timestamptz not null,
  event_id       bigint,
  primary key (type, value)
);
create index identities_profile_idx on cdp.identities (profile_id);
create index identities_origin_idx on cdp.identities (origin_profile);
comment on table cdp.identities is 'The identity graph: each identifier (type, normalised value) belongs to one profile.';
comment on column cdp.identities.type is 'Identifier type (cdp.identifier_types.type).';
comment on column cdp.identities.value is 'Normalised value.';
comment on column cdp.identities.profile_id is 'The surviving profile it belongs to now.';
comment on column cdp.identities.origin_profile is 'The profile it was first attached to; cdp.unmerge uses it to split a merge.';
comment on column cdp.identities.first_seen is 'Timestamp of the event that first carried it.';
comment on column cdp.identities.event_id is 'That event (cdp.events.id).';

create table cdp.profile_map (
  profile_id   bigint primary key,
  canonical_id bigint not null
);
create index profile_map_canonical_idx on cdp.profile_map (canonical_id);
comment on table cdp.profile_map is 'Every profile ever created, mapped to the profile that survives it now (itself if never merged): one lookup, however long the chain of merges.';
comment on column cdp.profile_map.profile_id is 'A profile number, surviving or merged.';
comment on column cdp.profile_map.canonical_id is 'The surviving profile.';

create table cdp.profile_merges (
  merge_id     bigint generated always as identity primary key,
  from_profile bigint not null,
  into_profile bigint not null,
  event_id     bigint,
  identifiers  jsonb not null default '[]',
  merged_at    timestamptz not null default now(),
  unmerged_at  timestamptz
);
comment on table cdp.profile_merges is 'Every merge: which profile went into which, the event that caused it and the identifiers that joined them.';
comment on column cdp.profile_merges.merge_id is 'Merge number, for cdp.unmerge.';
comment on column cdp.profile_merges.from_profile is 'The profile merged away.';
comment on column cdp.profile_merges.into_profile is 'The surviving profile.';
comment on column cdp.profile_merges.event_id is 'The event whose identifiers joined them.';
comment on column cdp.profile_merges.identifiers is 'The identifiers of that event: [{"type":..., "value":...}].';
comment on column cdp.profile_merges.merged_at is 'When.';
comment on column cdp.profile_merges.unmerged_at is 'When cdp.unmerge split it again, if it did.';

create table cdp.identity_refusals (
  id            bigint generated always as identity primary key,
  event_id      bigint,
  profile_id    bigint,
  other_profile bigint,
  type          text not null,
  value         text not null,
  rule          text not null,
  refused_at    timestamptz not null default now()
);
comment on table cdp.identity_refusals is 'Merges and attachments that a rule refused: the evidence for review.';
comment on column cdp.identity_refusals.id is 'Row number.';
comment on column cdp.identity_refusals.event_id is 'The event that asked for it.';
comment on column cdp.identity_refusals.profile_id is 'The profile the event stayed with.';
comment on column cdp.identity_refusals.other_profile is 'The profile it would have merged with (NULL for a refused attachment).';
comment on column cdp.identity_refusals.type is 'The identifier''s type.';
comment on column cdp.identity_refusals.value is 'The identifier''s value.';
comment on column cdp.identity_refusals.rule is 'The rule, e.g. "user_id: at most 1 per profile".';
comment on column cdp.identity_refusals.refused_at is 'When.';

create table cdp.event_profiles (
  event_id   bigint primary key,
  profile_id bigint not null
);
comment on table cdp.event_profiles is 'Early binding: the profile each processed event was bound to when it was processed. Merges never rewrite it; cdp.events_resolved follows cdp.profile_map to the survivor.';
comment on column cdp.event_profiles.event_id is 'cdp.events.id.';
comment on column cdp.event_profiles.profile_id is 'The profile at processing time.';

create table cdp.accounts (
  group_id      text primary key,
  traits        jsonb not null default '{}',
  trait_sources jsonb not null default '{}',
  first_seen    timestamptz,
  last_seen     timestamptz
);
comment on table cdp.accounts is 'Accounts (companies, teams) named by group calls, with their traits.';
comment on column cdp.accounts.group_id is 'The groupId.';
comment on column cdp.accounts.traits is 'Traits from group calls, merged like profile traits.';
comment on column cdp.accounts.trait_sources is 'Provenance of each trait.';
comment on column cdp.accounts.first_seen is 'First group call.';
comment on column cdp.accounts.last_seen is 'Latest group call.';

create table cdp.profile_accounts (
  profile_id bigint not null,
  group_id   text not null,
  first_seen timestamptz not null,
  primary key (profile_id, group_id)
);
create index profile_accounts_group_idx on cdp.profile_accounts (group_id);
comment on table cdp.profile_accounts is 'Which profiles belong to which accounts (from group calls).';
comment on column cdp.profile_accounts.profile_id is 'The profile (as bound when the group call was processed).';
comment on column cdp.profile_accounts.group_id is 'The account.';
comment on column cdp.profile_accounts.first_seen is 'When the link was first made.';

create table cdp.processor_state (
  id              int primary key default 1 check (id = 1),
  cursor_txid     xid8 not null default '0',
  cursor_event    bigint not null default 0,
  processed_total bigint not null default 0,
  last_batch      int not null default 0,
  last_run_at     timestamptz,
  last_batch_ms   float8 not null default 0,
  paused          boolean not null default false
);
insert into cdp.processor_state default values;
comment on table cdp.processor_state is 'Where the processor is: every event at or before (cursor_txid, cursor_event) is processed.';
comment on column cdp.processor_state.id is 'Always 1.';
comment on column cdp.processor_state.cursor_txid is 'txid of the last processed event.';
comment on column cdp.processor_state.cursor_event is 'id of the last processed event.';
comment on column cdp.processor_state.processed_total is 'Events processed since the extension was created.';
comment on column cdp.processor_state.last_batch is 'Events in the last batch.';
comment on column cdp.processor_state.last_run_at is 'When the last batch committed.';
comment on column cdp.processor_state.last_batch_ms is 'How long the last batch took, in milliseconds (from reading its events to writing its results).';
comment on column cdp.processor_state.paused is 'When true the processor worker waits; cdp.process_pending() still processes.';

create function cdp.process_pending() returns bigint
as 'MODULE_PATHNAME', 'cdp_process_pending' language c volatile
  set jit = off;  -- many short statements: JIT compiling them costs more than it saves
comment on function cdp.process_pending() is 'Processes every event committed so far (identities, profiles, traits) and returns how many. Safe to run beside the processor worker: they take turns.';

create function cdp.unmerge(merge_id bigint) returns bigint
as 'MODULE_PATHNAME', 'cdp_unmerge' language c volatile strict
  set jit = off;  -- many short statements: JIT compiling them costs more than it saves
comment on function cdp.unmerge(bigint) is 'Splits a bad merge apart: the merged-away profile gets back its identifiers, events and traits. Returns its profile id. To stop the same identifiers merging them again, block the bridging value in cdp.identifier_types.';

create function cdp.rebuild_identities() returns bigint
as 'MODULE_PATHNAME', 'cdp_rebuild_identities' language c volatile
  set jit = off;  -- many short statements: JIT compiling them costs more than it saves
comment on function cdp.rebuild_identities() is 'Rebuilds identities, profiles, traits and accounts from the events table in one pass (same rules and results as incremental processing). Returns the events processed.';

create function cdp.canonical_profile(profile_id bigint) returns bigint
language sql stable strict parallel safe
as $$ select canonical_id from cdp.profile_map where profile_map.profile_id = canonical_profile.profile_id $$;
comment on function cdp.canonical_profile(bigint) is 'The surviving profile of any profile number, merged or not (one lookup).';

create function cdp.normalise_identifier(type text, value text) returns text
as 'MODULE_PATHNAME', 'cdp_normalise_identifier' language c stable strict;
comment on function cdp.normalise_identifier(text, text) is 'The value as the identity graph stores it (trimmed, lower-cased, digits...), or NULL if it is blocked.';

create function cdp.profile_id(type text, value text) returns bigint
language sql stable strict
as $$ select profile_id from cdp.identities
       where identities.type = profile_id.type and identities.value = cdp.normalise_identifier(profile_id.type, profile_id.value) $$;
comment on function cdp.profile_id(text, text) is 'The profile of an identifier (normalised the same way as events), or NULL when unknown.';

create view cdp.events_resolved as
  select e.*, m.canonical_id as profile_id, ep.profile_id as bound_profile_id
    from cdp.events e
    join cdp.event_profiles ep on ep.event_id = e.id
    join cdp.profile_map m on m.profile_id = ep.profile_id;
comment on view cdp.events_resolved is 'Processed events with the profile they belong to now (profile_id, through every merge since) and the one they were bound to (bound_profile_id).';

create view cdp.processor_stats as
  select (select count(*) from cdp.events e where (e.txid, e.id) > (s.cursor_txid, s.cursor_event)) as events_pending,
         (select now() - min(e.received_at) from cdp.events e where (e.txid, e.id) > (s.cursor_txid, s.cursor_event)) as oldest_pending_age,
         s.processed_total, s.last_batch, s.last_run_at,
         round((s.last_batch / nullif(s.last_batch_ms, 0) * 1000)::numeric) as events_per_second
    from cdp.processor_state s;
comment on view cdp.processor_stats is 'Processor lag: events committed but not yet processed, the age of the oldest, totals, and the speed of the last batch (events_per_second).';

------------------------------------------------------------------------------
-- Computed traits and audience segments
------------------------------------------------------------------------------
create table cdp.computed_traits (
  name       text primary key check (name <> '' and length(name) <= 200),
  definition jsonb not null,
  created_at timestamptz not null default now()
);
comment on table cdp.computed_traits is 'Computed traits: aggregates over each profile''s events (count, sum, min, max, avg, first, last, most_frequent, unique), kept incrementally by the processor. Create them with cdp.create_computed_trait; see docs/segments.md.';
comment on column cdp.computed_traits.name is 'The name segments and cdp.profile_computed.computed use.';
comment on column cdp.computed_traits.definition is 'The definition: {"kind": ..., "event": ..., "property": ..., "within": ..., "where": [...]}.';
comment on column cdp.computed_traits.created_at is 'When it was created.';

create table cdp.segments (
  segment_id  bigint generated always as identity primary key,
  name        text not null unique check (name <> '' and length(name) <= 200),
  rule        jsonb not null,
  description text,
  created_at  timestamptz not null default now()
);
comment on table cdp.segments is 'Audience segments: a rule in the JSON rule language (docs/segments.md), evaluated per profile in real time. Create them with cdp.create_segment.';
comment on column cdp.segments.segment_id is 'Segment number (never reused: membership history and the outbox refer to it).';
comment on column cdp.segments.name is 'The segment''s name, as rules ({"segment": name}) and cdp.segment_members use it.';
comment on column cdp.segments.rule is 'The rule, as given.';
comment on column cdp.segments.description is 'Free text for people.';
comment on column cdp.segments.created_at is 'When it was created.';

create table cdp.segment_membership (
  segment_id bigint not null,
  profile_id bigint not null,
  entered_at timestamptz not null,
  exited_at  timestamptz
);
create unique index segment_membership_current_idx on cdp.segment_membership (segment_id, profile_id) where exited_at is null;
create index segment_membership_profile_idx on cdp.segment_membership (profile_id) where exited_at is null;
comment on table cdp.segment_membership is 'Who is in which segment, with history: one row per stay; the open row (exited_at null) is the current membership.';
comment on column cdp.segment_membership.segment_id is 'The segment (cdp.segments.segment_id).';
comment on column cdp.segment_membership.profile_id is 'The profile.';
comment on column cdp.segment_membership.entered_at is 'When the profile entered (cdp.now() of the evaluation).';
comment on column cdp.segment_membership.exited_at is 'When it left, or null while it is a member. A profile merged into another leaves; its survivor is evaluated afresh.';

create table cdp.outbox (
  id          bigint generated always as identity primary key,
  kind        text not null check (kind in ('segment_enter', 'segment_exit')),
  profile_id  bigint not null,
  segment_id  bigint,
  payload     jsonb not null,
  occurred_at timestamptz not null,
  created_at  timestamptz not null default clock_timestamp()
);
comment on table cdp.outbox is 'Activations waiting for delivery: each segment enter and exit, written in the same transaction as the membership change. The trigger cdp.queue_segment_deliveries turns each row into deliveries for subscribed destinations; rows are kept for cdp.retention (outbox, 7 days by default).';
comment on column cdp.outbox.id is 'Write order.';
comment on column cdp.outbox.kind is 'segment_enter or segment_exit.';
comment on column cdp.outbox.profile_id is 'The profile.';
comment on column cdp.outbox.segment_id is 'The segment.';
comment on column cdp.outbox.payload is '{"type": "segment_enter", "segment": name, "segment_id": n, "profile_id": n, "at": time}.';
comment on column cdp.outbox.occurred_at is 'When the change happened (cdp.now() of the evaluation).';
comment on column cdp.outbox.created_at is 'When the row was written (clock_timestamp()).';

create table cdp.profile_computed (
  profile_id  bigint primary key,
  computed    jsonb not null default '{}',
  state       text not null default '{}',  -- text: written and read by cdp alone, so no jsonb round trip
  next_expiry timestamptz,
  updated_at  timestamptz not null default now()
);
create index profile_computed_expiry_idx on cdp.profile_computed (next_expiry) where next_expiry is not null;
comment on table cdp.profile_computed is 'Per profile: computed trait values and the time-bucketed state they (and segment event conditions) are kept in.';
comment on column cdp.profile_computed.profile_id is 'The profile.';
comment on column cdp.profile_computed.computed is 'Computed trait values: {"orders_30d": 3, ...}.';
comment on column cdp.profile_computed.state is 'Aggregate state by definition (buckets of window/100), as JSON text; internal, rebuilt by cdp.recompute_traits.';
comment on column cdp.profile_computed.next_expiry is 'When a window next drops a bucket: the sweep re-evaluates the profile then, without reading events.';
comment on column cdp.profile_computed.updated_at is 'Last change.';

create table cdp.aggregates_built (
  key        text primary key,
  definition jsonb not null,
  built_at   timestamptz not null default now()
);
comment on table cdp.aggregates_built is 'Which aggregate states (computed traits, event counters of segments) have been backfilled from the events table; the processor keeps them up to date from then on.';
comment on column cdp.aggregates_built.key is 'Short key of the definition, as in cdp.profile_computed.state.';
comment on column cdp.aggregates_built.definition is 'The canonical definition.';
comment on column cdp.aggregates_built.built_at is 'When it was backfilled.';

create function cdp.check_audience() returns trigger
as 'MODULE_PATHNAME', 'cdp_check_audience' language c;
comment on function cdp.check_audience() is 'Trigger: segments and computed traits must compile together (rules, references, no cycles), however they are written; the commit makes processors reload them.';
create trigger segments_check after insert or update or delete on cdp.segments
  for each statement execute function cdp.check_audience();
create trigger segments_changed after truncate on cdp.segments
  for each statement execute function cdp.rules_changed();
create trigger computed_traits_check after insert or update or delete on cdp.computed_traits
  for each statement execute function cdp.check_audience();
create trigger computed_traits_changed after truncate on cdp.computed_traits
  for each statement execute function cdp.rules_changed();

create function cdp.create_computed_trait(name text, definition jsonb) returns bigint
as 'MODULE_PATHNAME', 'cdp_create_computed_trait' language c volatile strict
  set jit = off;  -- many short statements: JIT compiling them costs more than it saves
comment on function cdp.create_computed_trait(text, jsonb) is 'Defines a computed trait, computes it for every profile from the events table in one pass, and returns the profiles evaluated. A bad definition is refused naming the JSON path.';

create function cdp.drop_computed_trait(name text) returns void
as 'MODULE_PATHNAME', 'cdp_drop_computed_trait' language c volatile strict;
comment on function cdp.drop_computed_trait(text) is 'Removes a computed trait (refused while a segment uses it).';

create function cdp.recompute_traits(name text default null) returns bigint
as 'MODULE_PATHNAME', 'cdp_recompute_traits' language c volatile
  set jit = off;  -- many short statements: JIT compiling them costs more than it saves
comment on function cdp.recompute_traits(text) is 'Recomputes one computed trait (or, with no name, every computed trait and segment counter) from the events table, then re-evaluates every profile. Gives the same values as incremental processing. Returns the profiles evaluated.';

create function cdp.create_segment(name text, rule jsonb, description text default null) returns bigint
as 'MODULE_PATHNAME', 'cdp_create_segment' language c volatile called on null input
  set jit = off;  -- many short statements: JIT compiling them costs more than it saves
comment on function cdp.create_segment(text, jsonb, text) is 'Creates a segment, backfills its membership over every profile in one pass, and returns its member count. A bad rule is refused with the JSON path of the bad node; so is a reference to a missing segment or a cycle.';

create function cdp.drop_segment(name text) returns bigint
as 'MODULE_PATHNAME', 'cdp_drop_segment' language c volatile strict;
comment on function cdp.drop_segment(text) is 'Removes a segment: its members exit (history and outbox rows are written) and it is deleted. Refused while another segment refers to it. Returns the members that exited.';

create function cdp.evaluate_segments() returns bigint
as 'MODULE_PATHNAME', 'cdp_evaluate_segments' language c volatile
  set jit = off;  -- many short statements: JIT compiling them costs more than it saves
comment on function cdp.evaluate_segments() is 'Re-evaluates every segment and computed trait over every profile in one pass; writes only what changed. Returns the membership changes.';

create function cdp.run_segment_sweep() returns bigint
as 'MODULE_PATHNAME', 'cdp_run_segment_sweep' language c volatile
  set jit = off;  -- many short statements: JIT compiling them costs more than it saves
comment on function cdp.run_segment_sweep() is 'Re-evaluates the profiles whose event windows have moved on (cdp.profile_computed.next_expiry <= cdp.now()); the processor worker runs it every second. Returns the profiles evaluated.';

create function cdp.evaluate(rule jsonb, profile_id bigint) returns boolean
as 'MODULE_PATHNAME', 'cdp_evaluate' language c volatile strict;
comment on function cdp.evaluate(jsonb, bigint) is 'Whether one profile matches a rule now, without saving anything. Event conditions are counted from the events table.';

create function cdp.preview_segment(rule jsonb, sample int default 10, out members bigint, out sample_profiles bigint[])
as 'MODULE_PATHNAME', 'cdp_preview_segment' language c volatile strict
  set jit = off;  -- many short statements: JIT compiling them costs more than it saves
comment on function cdp.preview_segment(jsonb, int) is 'How many profiles a rule would hold now, and a sample of them (the lowest profile ids), without saving anything.';

create function cdp.segment_members(name text) returns setof bigint
language sql stable strict
as $$
  select sm.profile_id from cdp.segment_membership sm join cdp.segments s using (segment_id)
   where s.name = segment_members.name and sm.exited_at is null order by sm.profile_id
$$;
comment on function cdp.segment_members(text) is 'The profiles in a segment now, in profile order.';

create view cdp.segment_sizes as
  select s.segment_id, s.name, count(sm.profile_id) as members, s.created_at
    from cdp.segments s left join cdp.segment_membership sm on sm.segment_id = s.segment_id and sm.exited_at is null
   group by s.segment_id;
comment on view cdp.segment_sizes is 'Each segment with its current member count.';

create function cdp.profile(type text, value text) returns jsonb
language sql stable strict
as $$
  select jsonb_build_object(
    'profile_id', p.profile_id, 'traits', p.traits, 'trait_sources', p.trait_sources,
    'first_seen', p.first_seen, 'last_seen', p.last_seen, 'event_count', p.event_count,
    'flagged', p.flagged,
    'identifiers', (select coalesce(jsonb_agg(jsonb_build_object('type', i.type, 'value', i.value, 'first_seen', i.first_seen)
                                     order by i.type, i.value), '[]') from cdp.identities i where i.profile_id = p.profile_id),
    'accounts', coalesce((select jsonb_agg(distinct pa.group_id) from cdp.profile_accounts pa
                  join cdp.profile_map m on m.profile_id = pa.profile_id where m.canonical_id = p.profile_id), '[]'),
    'merged_profiles', coalesce((select jsonb_agg(m.profile_id order by m.profile_id) from cdp.profile_map m
                         where m.canonical_id = p.profile_id and m.profile_id <> p.profile_id), '[]'),
    'computed', coalesce((select pc.computed from cdp.profile_computed pc where pc.profile_id = p.profile_id), '{}'),
    'segments', coalesce((select jsonb_agg(s.name order by s.name) from cdp.segment_membership sm
                  join cdp.segments s using (segment_id) where sm.profile_id = p.profile_id and sm.exited_at is null), '[]'))
  from cdp.profiles p where p.profile_id = cdp.profile_id(type, value)
$$;
comment on function cdp.profile(text, text) is 'Everything known about a person, found by any of their identifiers: traits with provenance, identifiers, accounts, merged profiles, computed traits and current segments.';

------------------------------------------------------------------------------
-- Destinations and delivery
------------------------------------------------------------------------------
create table cdp.destinations (
  destination_id   int generated always as identity primary key,
  name             text not null unique check (name <> '' and length(name) <= 200),
  url              text not null check (url ~ '^https?://'),
  options          jsonb not null default '{}',
  paused           boolean not null default false,
  failures         int not null default 0,
  circuit_open_until timestamptz,
  delivered        bigint not null default 0,
  failed_attempts  bigint not null default 0,
  dead             bigint not null default 0,
  consent_blocked  bigint not null default 0,
  latency_p50_ms   float8,
  latency_p99_ms   float8,
  last_delivery_at timestamptz,
  last_error       text,
  created_at       timestamptz not null default now()
);
comment on table cdp.destinations is 'Where activations go: a webhook URL with its options (headers, signing secret, subscriptions, batching, consent, PII policy, maximum age). Create them with cdp.create_destination; see docs/destinations.md.';
comment on column cdp.destinations.destination_id is 'Destination number.';
comment on column cdp.destinations.name is 'The destination''s name.';
comment on column cdp.destinations.url is 'Where requests are POSTed (http or https; TLS certificates are verified).';
comment on column cdp.destinations.options is 'Options as given to cdp.create_destination (the secret included: this table is for administrators only).';
comment on column cdp.destinations.paused is 'When true nothing is sent; deliveries wait (cdp.pause_destination, cdp.resume_destination).';
comment on column cdp.destinations.failures is 'Consecutive failed requests; at 5 the circuit opens.';
comment on column cdp.destinations.circuit_open_until is 'While in the future, the destination is left alone; after it, one probe request decides.';
comment on column cdp.destinations.delivered is 'Deliveries acknowledged with 2xx.';
comment on column cdp.destinations.failed_attempts is 'Requests that failed (each retry counts).';
comment on column cdp.destinations.dead is 'Deliveries moved to cdp.dead_letters.';
comment on column cdp.destinations.consent_blocked is 'Activations (events and segment changes) not queued because the person had not granted a consent category the destination requires.';
comment on column cdp.destinations.latency_p50_ms is 'Median time from queueing to acknowledgement over the recent deliveries.';
comment on column cdp.destinations.latency_p99_ms is '99th percentile of the same.';
comment on column cdp.destinations.last_delivery_at is 'When a delivery was last acknowledged.';
comment on column cdp.destinations.last_error is 'The last failure: status and the start of the response body, or the transport error.';
comment on column cdp.destinations.created_at is 'When it was created.';

create table cdp.deliveries (
  id              bigint generated always as identity primary key,
  destination_id  int not null,
  profile_id      bigint not null,
  kind            text not null check (kind in ('event', 'segment_enter', 'segment_exit', 'deletion')),
  payload         jsonb not null,
  created_at      timestamptz not null default clock_timestamp(),
  next_attempt_at timestamptz not null default '-infinity',
  attempts        int not null default 0,
  batch_key       text,
  last_status     int,
  last_error      text
);
create index deliveries_order_idx on cdp.deliveries (destination_id, profile_id, id);
-- A queue: rows come and go all the time, so vacuum it early.
alter table cdp.deliveries set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
  autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0.02);
create index deliveries_due_idx on cdp.deliveries (destination_id, next_attempt_at, id);
comment on table cdp.deliveries is 'The delivery queue: one row per activation and destination, written in the same transaction as the event processing or membership change it comes from. A row leaves when it is acknowledged (or moved to cdp.dead_letters). Per destination, a profile''s rows are sent in id order.';
comment on column cdp.deliveries.id is 'Queue order.';
comment on column cdp.deliveries.destination_id is 'The destination.';
comment on column cdp.deliveries.profile_id is 'The profile it is about (ordering is per profile).';
comment on column cdp.deliveries.kind is 'event, segment_enter, segment_exit or deletion (a notice from cdp.erase).';
comment on column cdp.deliveries.payload is 'What is sent (before the PII policy, applied at sending).';
comment on column cdp.deliveries.created_at is 'When it was queued (clock_timestamp()).';
comment on column cdp.deliveries.next_attempt_at is 'Not sent before this time (backoff after a failure).';
comment on column cdp.deliveries.attempts is 'Failed attempts so far.';
comment on column cdp.deliveries.batch_key is 'The Idempotency-Key of the request it was first sent in; retries resend the same rows with the same key.';
comment on column cdp.deliveries.last_status is 'HTTP status of the last failed attempt (0: no answer).';
comment on column cdp.deliveries.last_error is 'The last failure, cut to 1 KB.';

create table cdp.dead_letters (
  id             bigint primary key,
  destination_id int not null,
  profile_id     bigint not null,
  kind           text not null,
  payload        jsonb not null,
  created_at     timestamptz not null,
  failed_at      timestamptz not null default clock_timestamp(),
  attempts       int not null,
  status         int,
  response       text
);
create index dead_letters_destination_idx on cdp.dead_letters (destination_id, id);
comment on table cdp.dead_letters is 'Deliveries given up on: a 4xx other than 408/429 at once, or retries past the destination''s max_age. cdp.replay_dead_letters queues them again.';
comment on column cdp.dead_letters.id is 'The delivery''s id.';
comment on column cdp.dead_letters.destination_id is 'The destination.';
comment on column cdp.dead_letters.profile_id is 'The profile.';
comment on column cdp.dead_letters.kind is 'event, segment_enter, segment_exit or deletion.';
comment on column cdp.dead_letters.payload is 'What was to be sent.';
comment on column cdp.dead_letters.created_at is 'When it was first queued.';
comment on column cdp.dead_letters.failed_at is 'When it was given up on.';
comment on column cdp.dead_letters.attempts is 'Attempts made.';
comment on column cdp.dead_letters.status is 'The last HTTP status (0: no answer).';
comment on column cdp.dead_letters.response is 'The last failure: "HTTP <status>: <start of the response body>", or the transport error.';

create trigger destinations_changed after insert or update of url, options or delete or truncate on cdp.destinations
  for each statement execute function cdp.rules_changed();
create function cdp.check_destination() returns trigger
as 'MODULE_PATHNAME', 'cdp_check_destination' language c;
comment on function cdp.check_destination() is 'Trigger: a destination''s URL must be http(s) with a host and its options must parse, however the row is written (22023 naming the field).';
create trigger destinations_check before insert or update of url, options on cdp.destinations
  for each row execute function cdp.check_destination();

-- Segment changes reach subscribed destinations in the same transaction as the change.
create function cdp.queue_segment_deliveries() returns trigger language plpgsql
set search_path = pg_catalog, pg_temp as $$
begin
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
comment on function cdp.queue_segment_deliveries() is 'Trigger: queues each segment enter/exit for the destinations subscribed to that segment.';
create trigger outbox_deliveries after insert on cdp.outbox referencing new table as added
  for each statement execute function cdp.queue_segment_deliveries();

create function cdp.create_destination(name text, url text, options jsonb default '{}') returns int
as 'MODULE_PATHNAME', 'cdp_create_destination' language c volatile;
comment on function cdp.create_destination(text, text, jsonb) is 'Creates a destination (a webhook) and returns its id. Options are checked: a bad one is refused naming its JSON path. From the next processed event on, what it subscribes to is queued for it.';

create function cdp.drop_destination(name text) returns bigint
language plpgsql as $$
declare d int; n bigint;
begin
  select destination_id into d from cdp.destinations where destinations.name = drop_destination.name;
  if d is null then raise exception 'name: no destination named "%"', name using errcode = '22023'; end if;
  delete from cdp.deliveries where destination_id = d;
  get diagnostics n = row_count;
  delete from cdp.dead_letters where destination_id = d;
  delete from cdp.destinations where destination_id = d;
  return n;
end $$;
comment on function cdp.drop_destination(text) is 'Removes a destination with its queue and dead letters; returns the deliveries dropped from the queue.';

create function cdp.pause_destination(name text) returns void
language plpgsql as $$
begin
  update cdp.destinations set paused = true where destinations.name = pause_destination.name;
  if not found then raise exception 'name: no destination named "%"', name using errcode = '22023'; end if;
end $$;
comment on function cdp.pause_destination(text) is 'Stops sending to a destination; its deliveries keep queueing.';

create function cdp.resume_destination(name text) returns void
language plpgsql as $$
begin
  update cdp.destinations set paused = false, failures = 0, circuit_open_until = null
   where destinations.name = resume_destination.name;
  if not found then raise exception 'name: no destination named "%"', name using errcode = '22023'; end if;
end $$;
comment on function cdp.resume_destination(text) is 'Sends to a paused (or circuit-broken) destination again, starting with what queued meanwhile.';

create function cdp.replay_dead_letters(destination text, since timestamptz default null, ids bigint[] default null)
returns bigint language plpgsql as $$
declare d int; n bigint;
begin
  select destination_id into d from cdp.destinations where name = destination;
  if d is null then raise exception 'destination: no destination named "%"', destination using errcode = '22023'; end if;
  with moved as (
    delete from cdp.dead_letters l
     where l.destination_id = d and (since is null or l.failed_at >= since) and (ids is null or l.id = any(ids))
    returning l.*)
  insert into cdp.deliveries (destination_id, profile_id, kind, payload)
  select destination_id, profile_id, kind, payload from moved order by id;
  get diagnostics n = row_count;
  return n;
end $$;
comment on function cdp.replay_dead_letters(text, timestamptz, bigint[]) is 'Queues a destination''s dead letters again (all, those failed since a time, or the given ids), as new deliveries after what is queued now. Returns how many.';

create view cdp.destination_stats as
  select d.name, d.paused, coalesce(d.circuit_open_until > now(), false) as circuit_open, d.delivered,
         (select count(*) from cdp.deliveries q where q.destination_id = d.destination_id) as queued,
         (select count(*) from cdp.deliveries q where q.destination_id = d.destination_id and q.attempts > 0) as retrying,
         d.dead, d.failed_attempts, d.consent_blocked, d.latency_p50_ms, d.latency_p99_ms,
         (select now() - min(q.created_at) from cdp.deliveries q where q.destination_id = d.destination_id) as lag,
         d.last_delivery_at, d.last_error
    from cdp.destinations d;
comment on view cdp.destination_stats is 'Per destination: delivered, queued, retrying, dead, consent-blocked, latency (p50/p99 from queueing to acknowledgement) and lag (age of the oldest queued delivery).';

------------------------------------------------------------------------------
-- Privacy: consent, erasure and access, retention, audit
------------------------------------------------------------------------------
create table cdp.consent (
  profile_id  bigint primary key,
  preferences jsonb not null,
  updated_at  timestamptz not null,
  source      text not null check (source in ('event', 'api'))
);
comment on table cdp.consent is 'The latest known consent of each profile: {"analytics": true, "marketing": false, ...}, from events'' context.consent.categoryPreferences or cdp.set_consent.';
comment on column cdp.consent.profile_id is 'The profile.';
comment on column cdp.consent.preferences is 'Category -> granted (true) or refused (false). A category not listed is not granted.';
comment on column cdp.consent.updated_at is 'When these preferences were expressed (the event''s timestamp, or cdp.now() for cdp.set_consent).';
comment on column cdp.consent.source is 'event or api.';

-- Whether a profile's latest consent grants every category of `required` (a JSON array).
create function cdp.consented(profile_id bigint, required jsonb) returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$ select required is null or jsonb_array_length(required) = 0 or coalesce((
  select bool_and(coalesce(c.preferences->r = 'true'::jsonb, false))
    from cdp.consent c, jsonb_array_elements_text(required) r where c.profile_id = consented.profile_id), false) $$;
comment on function cdp.consented(bigint, jsonb) is 'Whether the profile''s latest consent grants every listed category (a profile with no consent on record grants none).';

create table cdp.consent_history (
  id          bigint generated always as identity primary key,
  profile_id  bigint not null,
  preferences jsonb not null,
  source      text not null check (source in ('event', 'api')),
  event_id    bigint,
  expressed_at timestamptz not null,
  recorded_at timestamptz not null default now()
);
create index consent_history_profile_idx on cdp.consent_history (profile_id, expressed_at);
comment on table cdp.consent_history is 'Every consent statement received, so that consent at any past moment can be shown.';
comment on column cdp.consent_history.id is 'Row number.';
comment on column cdp.consent_history.profile_id is 'The profile (as bound when recorded).';
comment on column cdp.consent_history.preferences is 'The preferences stated.';
comment on column cdp.consent_history.source is 'event or api.';
comment on column cdp.consent_history.event_id is 'The event that carried them (source event).';
comment on column cdp.consent_history.expressed_at is 'When they were expressed.';
comment on column cdp.consent_history.recorded_at is 'When cdp recorded them.';

create table cdp.suppressions (
  identifier_hash text primary key,
  type            text not null,
  created_at      timestamptz not null default now()
);
comment on table cdp.suppressions is 'Identifiers of erased people, as SHA-256 hashes only: events carrying one are quarantined with reason "suppressed" instead of re-creating the profile (until cdp.unsuppress).';
comment on column cdp.suppressions.identifier_hash is 'hex SHA-256 of type || '':'' || normalised value (cdp.identifier_hash).';
comment on column cdp.suppressions.type is 'The identifier type.';
comment on column cdp.suppressions.created_at is 'When the erasure happened.';

create table cdp.deletion_ledger (
  id                bigint generated always as identity primary key,
  requested_at      timestamptz not null default now(),
  requested_by      text not null default session_user,
  reason            text not null,
  identifier_hashes text[] not null,
  profiles          bigint[] not null,
  removed           jsonb not null
);
comment on table cdp.deletion_ledger is 'Proof of erasure (GDPR Art. 17): who asked, when, why, the hashed identifiers and what was removed, table by table. Holds no identifier in clear.';
comment on column cdp.deletion_ledger.id is 'Request number.';
comment on column cdp.deletion_ledger.requested_at is 'When it was carried out.';
comment on column cdp.deletion_ledger.requested_by is 'The database user who ran cdp.erase.';
comment on column cdp.deletion_ledger.reason is 'Why (ticket number, legal basis).';
comment on column cdp.deletion_ledger.identifier_hashes is 'cdp.identifier_hash of every identifier of the person.';
comment on column cdp.deletion_ledger.profiles is 'The profile numbers removed (the survivor and those merged into it).';
comment on column cdp.deletion_ledger.removed is 'Rows removed per table: {"events": 12, "identities": 3, ...}.';

create table cdp.audit_log (
  id      bigint generated always as identity primary key,
  at      timestamptz not null default clock_timestamp(),
  actor   text not null default session_user,
  action  text not null,
  target  text,
  reason  text,
  details jsonb
);
create index audit_log_at_idx on cdp.audit_log (at);
comment on table cdp.audit_log is 'Who did what, when and why: erasures, subject exports, consent set by API, suppressions lifted, role grants and every change to configuration (sources, destinations, identity and trait rules, segments, computed traits, retention). Secrets are left out.';
comment on column cdp.audit_log.id is 'Row number.';
comment on column cdp.audit_log.at is 'When.';
comment on column cdp.audit_log.actor is 'The database user (session_user).';
comment on column cdp.audit_log.action is 'erase, export, set_consent, unsuppress, grant_role, or insert/update/delete/truncate on a configuration table.';
comment on column cdp.audit_log.target is 'What it was done to: a table, or type:hash of an identifier.';
comment on column cdp.audit_log.reason is 'Why, when given.';
comment on column cdp.audit_log.details is 'The change (rows before and after, secrets removed) or the counts.';

create table cdp.retention (
  kind       text primary key check (kind in ('events', 'quarantine', 'outbox', 'dead_letters', 'segment_history', 'consent_history')),
  keep       interval not null check (keep >= interval '1 day'),
  updated_at timestamptz not null default now()
);
insert into cdp.retention (kind, keep) values
  ('events', '395 days'), ('quarantine', '30 days'), ('outbox', '7 days'), ('dead_letters', '30 days'),
  ('segment_history', '395 days'), ('consent_history', '1825 days');
comment on table cdp.retention is 'How long each kind of data is kept (cdp.set_retention). The processor''s maintenance applies it once a minute (cdp.run_retention).';
comment on column cdp.retention.kind is 'events (whole daily partitions are dropped), quarantine, outbox, dead_letters, segment_history (ended memberships), consent_history.';
comment on column cdp.retention.keep is 'How long to keep it (at least a day).';
comment on column cdp.retention.updated_at is 'When it was last set.';

create table cdp.retention_log (
  id         bigint generated always as identity primary key,
  ran_at     timestamptz not null default clock_timestamp(),
  kind       text not null,
  cutoff     timestamptz not null,
  removed    bigint not null,
  partitions text[]
);
comment on table cdp.retention_log is 'What retention removed: one row per kind and run that removed anything.';
comment on column cdp.retention_log.id is 'Row number.';
comment on column cdp.retention_log.ran_at is 'When.';
comment on column cdp.retention_log.kind is 'The kind of data.';
comment on column cdp.retention_log.cutoff is 'Data older than this went.';
comment on column cdp.retention_log.removed is 'Rows removed (for events: rows in the dropped partitions).';
comment on column cdp.retention_log.partitions is 'Partitions of cdp.events dropped.';

create function cdp.identifier_hash(type text, value text) returns text
language sql stable strict
as $$ select encode(sha256(convert_to(type || ':' || cdp.normalise_identifier(type, value), 'UTF8')), 'hex') $$;
comment on function cdp.identifier_hash(text, text) is 'hex SHA-256 of type:normalised value: how suppressions, the deletion ledger and the audit log name an identifier without holding it.';

-- True when a string anywhere in the JSON value equals one of `exact` (trimmed)
-- or, lower-cased, one of `folded` (values of types that ignore case).
create function cdp.json_mentions(doc jsonb, exact text[], folded text[]) returns boolean
language sql immutable parallel safe
as $$ select doc is not null and exists (
  select from jsonb_path_query(doc, 'strict $.**') v
   where jsonb_typeof(v) = 'string'
     and (btrim(v #>> '{}') = any(exact) or lower(btrim(v #>> '{}')) = any(folded))) $$;
comment on function cdp.json_mentions(jsonb, text[], text[]) is 'Whether any string in the JSON value, at any depth, equals one of the exact values (trimmed) or, lower-cased, one of the folded values: how erasure finds a person in payloads.';

create function cdp.set_consent(type text, value text, preferences jsonb) returns bigint
language plpgsql volatile
as $$
#variable_conflict use_column
declare p bigint := cdp.canonical_profile(cdp.profile_id(type, value));
begin
  if jsonb_typeof(preferences) is distinct from 'object'
     or exists (select from jsonb_each(preferences) e where jsonb_typeof(e.value) <> 'boolean') then
    raise exception 'preferences: must be an object of category -> true/false, such as {"marketing": false}'
      using errcode = '22023';
  end if;
  if p is null then
    raise exception 'value: no profile has the % identifier given', type using errcode = '22023';
  end if;
  insert into cdp.consent_history (profile_id, preferences, source, expressed_at) values (p, set_consent.preferences, 'api', cdp.now());
  insert into cdp.consent as c (profile_id, preferences, updated_at, source) values (p, set_consent.preferences, cdp.now(), 'api')
  on conflict (profile_id) do update set preferences = excluded.preferences, updated_at = excluded.updated_at,
    source = excluded.source;
  insert into cdp.audit_log (action, target, details)
  values ('set_consent', set_consent.type || ':' || cdp.identifier_hash(set_consent.type, set_consent.value), jsonb_build_object('profile_id', p, 'preferences', set_consent.preferences));
  return p;
end $$;
comment on function cdp.set_consent(text, text, jsonb) is 'Records consent captured outside events (CRM, support) for the person with this identifier; it becomes their latest preferences. Returns the profile.';

create function cdp.erase(type text, value text, reason text) returns jsonb
language plpgsql volatile
as $$
#variable_conflict use_column
declare
  norm text := cdp.normalise_identifier(type, value);
  p bigint;
  person_profiles bigint[] := '{}';
  vals text[];    -- identifier values as stored (case kept for case-sensitive types)
  folded text[];  -- values of types that ignore case (lower, email), lower-cased
  hashes text[];
  user_ids text[];
  removed jsonb := '{}';
  n bigint;
begin
  if coalesce(btrim(reason), '') = '' then
    raise exception 'reason: must say why (a ticket, the legal basis)' using errcode = '22023';
  end if;
  if norm is null then
    raise exception 'value: not a usable % identifier (empty or blocked)', type using errcode = '22023';
  end if;
  -- No processor batch runs meanwhile: nothing is re-created half-way, and
  -- the profile found is the one removed.
  perform pg_advisory_xact_lock(hashtext('cdp.processor'));
  p := cdp.canonical_profile(cdp.profile_id(erase.type, erase.value));
  if p is not null then
    person_profiles := array(select profile_id from cdp.profile_map where canonical_id = p);
  end if;
  select coalesce(array_agg(distinct i.value), '{}'),
         coalesce(array_agg(distinct lower(i.value)) filter (where t.normalise in ('lower', 'email')), '{}'),
         -- Stored values are normalised already: hashed as they are (normalising twice is not always a no-op).
         coalesce(array_agg(distinct encode(sha256(convert_to(i.type || ':' || i.value, 'UTF8')), 'hex')), '{}'),
         coalesce(array_agg(i.value) filter (where i.type = 'user_id'), '{}')
    into vals, folded, hashes, user_ids
    from cdp.identities i left join cdp.identifier_types t using (type) where i.profile_id = p;
  vals := array(select distinct unnest(vals || norm));
  if (select t.normalise in ('lower', 'email') from cdp.identifier_types t where t.type = erase.type) then
    folded := array(select distinct unnest(folded || lower(norm)));
  end if;
  hashes := array(select distinct unnest(hashes || cdp.identifier_hash(erase.type, erase.value)));
  insert into cdp.suppressions (identifier_hash, type)
  select encode(sha256(convert_to(i.type || ':' || i.value, 'UTF8')), 'hex'), i.type from cdp.identities i where i.profile_id = p
  union select cdp.identifier_hash(erase.type, erase.value), erase.type
  on conflict do nothing;

  delete from cdp.events e
   where e.id in (select event_id from cdp.event_profiles where profile_id = any(person_profiles))
      or btrim(e.user_id) = any(vals) or btrim(e.anonymous_id) = any(vals) or btrim(e.previous_id) = any(vals)
      or cdp.json_mentions(e.traits, vals, folded) or cdp.json_mentions(e.context, vals, folded)
      or cdp.json_mentions(e.properties, vals, folded);
  get diagnostics n = row_count; removed := removed || jsonb_build_object('events', n);
  delete from cdp.event_profiles where profile_id = any(person_profiles);
  get diagnostics n = row_count; removed := removed || jsonb_build_object('event_profiles', n);
  delete from cdp.quarantine q where exists (select from unnest(vals) v where strpos(q.raw, v) > 0)
     or exists (select from unnest(folded) v where strpos(lower(q.raw), v) > 0);
  get diagnostics n = row_count; removed := removed || jsonb_build_object('quarantine', n);
  delete from cdp.identities i where i.profile_id = p;
  get diagnostics n = row_count; removed := removed || jsonb_build_object('identities', n);
  delete from cdp.identity_refusals where profile_id = any(person_profiles) or other_profile = any(person_profiles)
     or value = any(vals) or lower(value) = any(folded);
  get diagnostics n = row_count; removed := removed || jsonb_build_object('identity_refusals', n);
  delete from cdp.profile_merges where from_profile = any(person_profiles) or into_profile = any(person_profiles)
     or cdp.json_mentions(identifiers, vals, folded);
  get diagnostics n = row_count; removed := removed || jsonb_build_object('profile_merges', n);
  delete from cdp.profiles where profile_id = any(person_profiles);
  get diagnostics n = row_count; removed := removed || jsonb_build_object('profiles', n);
  delete from cdp.profile_map where profile_id = any(person_profiles);
  delete from cdp.profile_accounts where profile_id = any(person_profiles);
  delete from cdp.profile_computed where profile_id = any(person_profiles);
  delete from cdp.segment_membership where profile_id = any(person_profiles);
  get diagnostics n = row_count; removed := removed || jsonb_build_object('segment_membership', n);
  delete from cdp.outbox where profile_id = any(person_profiles) or cdp.json_mentions(payload, vals, folded);
  delete from cdp.deliveries where profile_id = any(person_profiles) or cdp.json_mentions(payload, vals, folded);
  get diagnostics n = row_count; removed := removed || jsonb_build_object('deliveries', n);
  delete from cdp.dead_letters where profile_id = any(person_profiles) or cdp.json_mentions(payload, vals, folded);
  get diagnostics n = row_count; removed := removed || jsonb_build_object('dead_letters', n);
  delete from cdp.consent where profile_id = any(person_profiles);
  delete from cdp.consent_history where profile_id = any(person_profiles);
  get diagnostics n = row_count; removed := removed || jsonb_build_object('consent_history', n);

  -- Destinations subscribed to deletions are told whom to forget; the notice
  -- leaves cdp.deliveries once delivered.
  insert into cdp.deliveries (destination_id, profile_id, kind, payload)
  select d.destination_id, coalesce(p, 0), 'deletion',
         jsonb_build_object('type', 'delete', 'userId', user_ids[1], 'userIds', to_jsonb(user_ids),
                            'messageId', 'cdp-erase-' || gen_random_uuid(), 'timestamp', cdp.now())
    from cdp.destinations d where (d.options->'subscribe'->>'deletions')::boolean is true;
  insert into cdp.deletion_ledger (reason, identifier_hashes, profiles, removed)
  values (erase.reason, hashes, person_profiles, removed);
  insert into cdp.audit_log (action, target, reason, details)
  values ('erase', erase.type || ':' || cdp.identifier_hash(erase.type, erase.value), erase.reason, removed);
  return removed;
end $$;
comment on function cdp.erase(text, text, text) is 'Erases a person (GDPR Art. 17, CCPA): finds their profile through the identity graph and removes the profile, identities, traits, events (every partition), memberships, consent, queued and dead-lettered deliveries and quarantine rows carrying their identifiers; suppresses their identifiers; records the request in cdp.deletion_ledger and cdp.audit_log. Returns what was removed, per table.';

create function cdp.unsuppress(type text, value text, reason text) returns boolean
language plpgsql volatile
as $$
#variable_conflict use_column
declare n bigint;
begin
  delete from cdp.suppressions where identifier_hash = cdp.identifier_hash(unsuppress.type, unsuppress.value);
  get diagnostics n = row_count;
  insert into cdp.audit_log (action, target, reason) values ('unsuppress', unsuppress.type || ':' || cdp.identifier_hash(unsuppress.type, unsuppress.value), unsuppress.reason);
  return n > 0;
end $$;
comment on function cdp.unsuppress(text, text, text) is 'Lets events for an erased identifier be processed again (for instance when the person signs up anew). Returns whether it was suppressed.';

create function cdp.export_subject(type text, value text) returns jsonb
language plpgsql volatile
as $$
#variable_conflict use_column
declare
  p bigint := cdp.canonical_profile(cdp.profile_id(type, value));
  person_profiles bigint[] := array(select profile_id from cdp.profile_map where canonical_id = p);
  result jsonb;
begin
  if p is null then
    raise exception 'value: no profile has the % identifier given', type using errcode = '22023';
  end if;
  result := jsonb_build_object(
    'exported_at', cdp.now(),
    'profile', cdp.profile(export_subject.type, export_subject.value),
    'identities', (select coalesce(jsonb_agg(jsonb_build_object('type', i.type, 'value', i.value, 'first_seen', i.first_seen)
                    order by i.type, i.value), '[]') from cdp.identities i where i.profile_id = p),
    'consent', (select to_jsonb(c) - 'profile_id' from cdp.consent c where c.profile_id = p),
    'consent_history', (select coalesce(jsonb_agg(to_jsonb(h) - 'profile_id' order by h.expressed_at), '[]')
                         from cdp.consent_history h where h.profile_id = any(person_profiles)),
    'events', (select coalesce(jsonb_agg(to_jsonb(e) - 'txid' - 'profile_id' - 'bound_profile_id' order by e."timestamp", e.id), '[]')
                from cdp.events_resolved e where e.profile_id = p),
    'segments', (select coalesce(jsonb_agg(jsonb_build_object('segment', s.name, 'entered_at', m.entered_at, 'exited_at', m.exited_at)
                  order by m.entered_at), '[]')
                  from cdp.segment_membership m left join cdp.segments s using (segment_id) where m.profile_id = any(person_profiles)),
    'computed', (select pc.computed from cdp.profile_computed pc where pc.profile_id = p),
    'deliveries', (select coalesce(jsonb_agg(jsonb_build_object('destination', d.name, 'kind', q.kind, 'queued_at', q.created_at,
                     'attempts', q.attempts, 'payload', q.payload) order by q.id), '[]')
                    from cdp.deliveries q join cdp.destinations d using (destination_id) where q.profile_id = any(person_profiles)),
    'dead_letters', (select coalesce(jsonb_agg(jsonb_build_object('destination', d.name, 'kind', l.kind, 'failed_at', l.failed_at,
                     'status', l.status, 'payload', l.payload) order by l.id), '[]')
                    from cdp.dead_letters l join cdp.destinations d using (destination_id) where l.profile_id = any(person_profiles)));
  insert into cdp.audit_log (action, target, details)
  values ('export', export_subject.type || ':' || cdp.identifier_hash(export_subject.type, export_subject.value), jsonb_build_object('profile_id', p));
  return result;
end $$;
comment on function cdp.export_subject(text, text) is 'Everything held about a person (GDPR Art. 15): profile, identities, consent and its history, events, segment history, computed traits, queued and dead-lettered deliveries. Audited.';

create function cdp.set_retention(kind text, keep interval) returns void
language plpgsql volatile
as $$
#variable_conflict use_column
begin
  if not exists (select from cdp.retention r where r.kind = set_retention.kind) then
    raise exception 'kind: must be one of %', (select string_agg(r.kind, ', ' order by r.kind) from cdp.retention r)
      using errcode = '22023';
  end if;
  if keep is null or keep < interval '1 day' then
    raise exception 'keep: must be at least 1 day' using errcode = '22023';
  end if;
  update cdp.retention r set keep = set_retention.keep, updated_at = now() where r.kind = set_retention.kind;
end $$;
comment on function cdp.set_retention(text, interval) is 'Sets how long a kind of data is kept: events, quarantine, outbox, dead_letters, segment_history, consent_history.';

create function cdp.run_retention(batch int default 10000) returns jsonb
language plpgsql volatile
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

-- A destination row without its signing secret and header values (which
-- may hold credentials); header names stay, and whether a secret is set.
create function cdp.without_secrets(r jsonb) returns jsonb
language sql immutable
set search_path = pg_catalog, pg_temp
as $$ select case when r ? 'options' then
  jsonb_set(r, '{options}', ((r->'options') - 'secret' - 'headers')
    || jsonb_build_object('secret_set', (r->'options') ? 'secret')
    || jsonb_strip_nulls(jsonb_build_object('header_names',
         (select jsonb_agg(k order by k) from jsonb_object_keys(r->'options'->'headers') k))))
  else r end $$;
comment on function cdp.without_secrets(jsonb) is 'A configuration row as the audit log keeps it: a destination''s secret and header values left out (header names and whether a secret is set stay).';

-- Configuration changes are audited, secrets left out.
create function cdp.audit_change() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  strip text[] := array['write_key_hash'];
  old_row jsonb;
  new_row jsonb;
begin
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
comment on function cdp.audit_change() is 'Trigger: writes each change to a configuration table into cdp.audit_log (write key hashes and destination secrets left out).';
create trigger sources_audit after insert or update or delete on cdp.sources for each row execute function cdp.audit_change();
create trigger destinations_audit after insert or update of name, url, options, paused or delete on cdp.destinations
  for each row execute function cdp.audit_change();
create trigger identifier_types_audit after insert or update or delete on cdp.identifier_types for each row execute function cdp.audit_change();
create trigger trait_rules_audit after insert or update or delete on cdp.trait_rules for each row execute function cdp.audit_change();
create trigger segments_audit after insert or update or delete on cdp.segments for each row execute function cdp.audit_change();
create trigger computed_traits_audit after insert or update or delete on cdp.computed_traits for each row execute function cdp.audit_change();
create trigger retention_audit after insert or update or delete on cdp.retention for each row execute function cdp.audit_change();
create trigger sources_audit_truncate after truncate on cdp.sources for each statement execute function cdp.audit_change();
create trigger destinations_audit_truncate after truncate on cdp.destinations for each statement execute function cdp.audit_change();
create trigger identifier_types_audit_truncate after truncate on cdp.identifier_types for each statement execute function cdp.audit_change();
create trigger trait_rules_audit_truncate after truncate on cdp.trait_rules for each statement execute function cdp.audit_change();
create trigger segments_audit_truncate after truncate on cdp.segments for each statement execute function cdp.audit_change();
create trigger computed_traits_audit_truncate after truncate on cdp.computed_traits for each statement execute function cdp.audit_change();

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

------------------------------------------------------------------------------
-- Roles and what analysts see
------------------------------------------------------------------------------
-- The PII trait names (GUC cdp.pii_traits), as an array.
create function cdp.pii_traits() returns text[]
language sql stable
set search_path = pg_catalog, pg_temp
as $$ select coalesce(string_to_array(replace(current_setting('cdp.pii_traits', true), ' ', ''), ','), '{}') $$;
comment on function cdp.pii_traits() is 'The trait names cdp.pii_traits lists (default email, phone, first_name, last_name, address, ip).';

create function cdp.mask(doc jsonb) returns jsonb
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare pii text[] := cdp.pii_traits(); out jsonb; k text; v jsonb;
begin
  if doc is null then return null; end if;
  if jsonb_typeof(doc) = 'array' then
    -- Arrays are walked too: {"recipients": [{"email": ...}]} hides the email.
    select coalesce(jsonb_agg(cdp.mask(e) order by i), '[]') into out from jsonb_array_elements(doc) with ordinality x(e, i);
    return out;
  end if;
  if jsonb_typeof(doc) <> 'object' then return doc; end if;
  out := '{}';
  for k, v in select * from jsonb_each(doc) loop
    if k = any(pii) and jsonb_typeof(v) <> 'null' then
      -- The whole value, whatever its type, becomes one hash.
      v := to_jsonb('sha256:' || encode(sha256(convert_to(lower(btrim(
             case when jsonb_typeof(v) = 'string' then v #>> '{}' else v::text end)), 'UTF8')), 'hex'));
    elsif jsonb_typeof(v) in ('object', 'array') then
      v := cdp.mask(v);
    end if;
    out := out || jsonb_build_object(k, v);
  end loop;
  return out;
end $$;
comment on function cdp.mask(jsonb) is 'The value with every member named in cdp.pii_traits, at any depth and inside arrays, replaced by "sha256:" and the hex SHA-256 of its trimmed, lower-cased text: analysts can count and join on it, not read it.';

create view cdp.analyst_profiles with (security_barrier) as
  select p.profile_id, cdp.mask(p.traits) as traits, cdp.mask(pc.computed) as computed, p.first_seen, p.last_seen, p.event_count,
         p.identifier_count, p.merge_count, p.flagged, p.updated_at
    from cdp.profiles p left join cdp.profile_computed pc using (profile_id);
comment on view cdp.analyst_profiles is 'Profiles for analysts: PII traits hashed (cdp.mask), computed traits too when named in cdp.pii_traits (a computed trait that copies an email under another name is shown: name it accordingly or keep it out).';

create view cdp.analyst_identities with (security_barrier) as
  select i.profile_id, i.type, encode(sha256(convert_to(i.value, 'UTF8')), 'hex') as value_hash, i.first_seen
    from cdp.identities i;
comment on view cdp.analyst_identities is 'Identifiers for analysts: the type and a SHA-256 of the normalised value, never the value.';

create view cdp.analyst_events with (security_barrier) as
  select e.id, e.received_at, e."timestamp", e.type, e.event, e.name, e.category, e.source_id,
         m.canonical_id as profile_id, e.group_id,
         encode(sha256(convert_to(e.user_id, 'UTF8')), 'hex') as user_id_hash,
         encode(sha256(convert_to(e.anonymous_id, 'UTF8')), 'hex') as anonymous_id_hash,
         cdp.mask(e.properties) as properties, cdp.mask(e.traits) as traits, cdp.mask(e.context) as context
    from cdp.events e
    join cdp.event_profiles ep on ep.event_id = e.id
    join cdp.profile_map m on m.profile_id = ep.profile_id;
comment on view cdp.analyst_events is 'Processed events for analysts: user and anonymous ids hashed, PII members of properties, traits and context hashed (cdp.mask).';

do $$
begin
  if not exists (select from pg_roles where rolname = 'cdp_admin') then create role cdp_admin nologin; end if;
  if not exists (select from pg_roles where rolname = 'cdp_ingest') then create role cdp_ingest nologin; end if;
  if not exists (select from pg_roles where rolname = 'cdp_analyst') then create role cdp_analyst nologin; end if;
end $$;

-- Nothing is open to everyone; each role gets what it needs.
revoke all on all functions in schema cdp from public;
grant usage on schema cdp to cdp_admin, cdp_ingest, cdp_analyst;

-- Not ALL: TRIGGER on tables the workers write would run code as the superuser.
grant select, insert, update, delete, truncate on all tables in schema cdp to cdp_admin;
-- The audit log and the deletion ledger are append-only, for administrators too.
revoke update, delete, truncate on cdp.audit_log, cdp.deletion_ledger from cdp_admin;
grant all on all sequences in schema cdp to cdp_admin;
grant execute on all functions in schema cdp to cdp_admin;

-- Ingest: the ingest functions and the rows they write; sources and
-- partitions are reached through security-definer functions.
grant execute on function cdp.ingest(jsonb, text), cdp.ingest_one(jsonb, text),
  cdp.track(text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text),
  cdp.identify(text, text, jsonb, jsonb, timestamptz, text, jsonb, text),
  cdp.page(text, text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text),
  cdp.screen(text, text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text),
  cdp.alias(text, text, jsonb, timestamptz, text, jsonb, text),
  cdp."group"(text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text),
  cdp.now(), cdp.source_for_key(text), cdp.ensure_partitions(timestamptz, int) to cdp_ingest;
grant insert on cdp.events, cdp.quarantine to cdp_ingest;
grant select (source_id, message_id), insert on cdp.message_ids to cdp_ingest;
grant usage on sequence cdp.events_id_seq to cdp_ingest;
alter function cdp.source_for_key(text) security definer;
alter function cdp.ensure_partitions(timestamptz, int) security definer;

-- Analysts: masked views and segments; no raw table, write key, secret or ledger.
grant select on cdp.analyst_profiles, cdp.analyst_identities, cdp.analyst_events, cdp.segments, cdp.segment_sizes,
  cdp.segment_membership, cdp.computed_traits to cdp_analyst;
grant execute on function cdp.mask(jsonb), cdp.pii_traits(), cdp.segment_members(text), cdp.now() to cdp_analyst;

create function cdp.grant_role(role text, member text) returns void
language plpgsql volatile
as $$
begin
  if role not in ('cdp_admin', 'cdp_ingest', 'cdp_analyst') then
    raise exception 'role: must be one of cdp_admin, cdp_ingest, cdp_analyst' using errcode = '22023';
  end if;
  execute format('grant %I to %I', role, member);
  insert into cdp.audit_log (action, target, details) values ('grant_role', member, jsonb_build_object('role', role));
end $$;
comment on function cdp.grant_role(text, text) is 'Grants one of the cdp roles to a database user and records it in cdp.audit_log. Runs with the extension owner''s rights; cdp_admin may call it.';
alter function cdp.grant_role(text, text) security definer set search_path = pg_catalog, pg_temp;
revoke all on function cdp.grant_role(text, text) from public;
grant execute on function cdp.grant_role(text, text) to cdp_admin;
-- Retention drops partitions, which only their owner may do; cdp_admin can run it by hand.
alter function cdp.run_retention(int) security definer set search_path = pg_catalog, pg_temp;

select cdp.ensure_partitions(now());
