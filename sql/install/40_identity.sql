------------------------------------------------------------------------------
-- Identity resolution and profiles: identifier types and trait rules, the
-- identity graph, profiles, merges, accounts, the processor's state and the
-- functions and views that process and look up people.
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
select pg_catalog.pg_extension_config_dump('cdp.identifier_types', '');

insert into cdp.identifier_types (type, paths, normalise, max_per_profile, priority, blocked_values, blocked_patterns, default_country_code)
select t.type, t.paths, t.normalise, t.max_per_profile, t.priority,
       array['null', 'undefined', 'unknown', 'none', 'nan', 'anonymous', 'guest', '-1', '0', 'n/a', 'test@test.com'],
       array['^[0\-]+$'], t.cc
  from (values ('user_id', array['userId'], 'none', 1, 1, ''),
               ('email', array['traits.email', 'context.traits.email'], 'email', 5, 2, ''),
               ('phone', array['traits.phone', 'context.traits.phone'], 'phone', 5, 3, '1'),
               ('anonymous_id', array['anonymousId'], 'none', null, 100, '')) as t(type, paths, normalise, max_per_profile, priority, cc);
-- A restore's dumped rows replace these (05_restore.sql).
create trigger identifier_types_restore before insert on cdp.identifier_types
  for each row execute function cdp.replace_default_row('type');

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
select pg_catalog.pg_extension_config_dump('cdp.trait_rules', '');

create sequence cdp.profile_id_seq;
comment on sequence cdp.profile_id_seq is 'Profile numbers.';
select pg_catalog.pg_extension_config_dump('cdp.profile_id_seq', '');

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
select pg_catalog.pg_extension_config_dump('cdp.profiles', '');

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
select pg_catalog.pg_extension_config_dump('cdp.identities', '');

create table cdp.profile_map (
  profile_id   bigint primary key,
  canonical_id bigint not null
);
create index profile_map_canonical_idx on cdp.profile_map (canonical_id);
comment on table cdp.profile_map is 'Every profile ever created, mapped to the profile that survives it now (itself if never merged): one lookup, however long the chain of merges.';
comment on column cdp.profile_map.profile_id is 'A profile number, surviving or merged.';
comment on column cdp.profile_map.canonical_id is 'The surviving profile.';
select pg_catalog.pg_extension_config_dump('cdp.profile_map', '');

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
select pg_catalog.pg_extension_config_dump('cdp.profile_merges', '');
select pg_catalog.pg_extension_config_dump('cdp.profile_merges_merge_id_seq', '');

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
comment on column cdp.identity_refusals.type is 'The identifier type, or "trait" (new trait keys refused by cdp.max_traits_per_profile, listed in value), or "group_id" (a groupId over 1 KB; its first 64 bytes in value).';
comment on column cdp.identity_refusals.value is 'The identifier''s value.';
comment on column cdp.identity_refusals.rule is 'The rule, e.g. "user_id: at most 1 per profile".';
comment on column cdp.identity_refusals.refused_at is 'When.';
select pg_catalog.pg_extension_config_dump('cdp.identity_refusals', '');
select pg_catalog.pg_extension_config_dump('cdp.identity_refusals_id_seq', '');

create table cdp.event_profiles (
  event_id   bigint primary key,
  profile_id bigint not null
);
-- A person's recent events (the Profile API): their event numbers by profile, newest first.
create index event_profiles_profile_idx on cdp.event_profiles (profile_id, event_id);
comment on table cdp.event_profiles is 'Early binding: the profile each processed event was bound to when it was processed. Merges never rewrite it; cdp.events_resolved follows cdp.profile_map to the survivor.';
comment on column cdp.event_profiles.event_id is 'cdp.events.id.';
comment on column cdp.event_profiles.profile_id is 'The profile at processing time.';
select pg_catalog.pg_extension_config_dump('cdp.event_profiles', '');

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
select pg_catalog.pg_extension_config_dump('cdp.accounts', '');

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
select pg_catalog.pg_extension_config_dump('cdp.profile_accounts', '');

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
select pg_catalog.pg_extension_config_dump('cdp.processor_state', '');
-- A restore's dumped cursor replaces this one (05_restore.sql).
create trigger processor_state_restore before insert on cdp.processor_state
  for each row execute function cdp.replace_default_row('id');

-- With its owner's rights, like every function that removes events or ledger
-- rows (an event it sets aside moves to cdp.quarantine).
create function cdp.process_pending() returns bigint
as 'MODULE_PATHNAME', 'cdp_process_pending' language c volatile security definer
  set jit = off  -- many short statements: JIT compiling them costs more than it saves
  set search_path = pg_catalog, pg_temp;
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
