------------------------------------------------------------------------------
-- Computed traits and audience segments: definitions, membership with its
-- history, the outbox of enter/exit changes, per-profile aggregate state,
-- and cdp.profile (everything known about a person).
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
select pg_catalog.pg_extension_config_dump('cdp.computed_traits', '');

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
select pg_catalog.pg_extension_config_dump('cdp.segments', '');
select pg_catalog.pg_extension_config_dump('cdp.segments_segment_id_seq', '');

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
select pg_catalog.pg_extension_config_dump('cdp.segment_membership', '');

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
select pg_catalog.pg_extension_config_dump('cdp.outbox', '');
select pg_catalog.pg_extension_config_dump('cdp.outbox_id_seq', '');

create table cdp.profile_computed (
  profile_id  bigint primary key,
  computed    jsonb not null default '{}',
  state       bytea not null default '',  -- binary, written and read by cdp alone (src/core/computed_state.hpp)
  next_expiry timestamptz,
  updated_at  timestamptz not null default now()
);
create index profile_computed_expiry_idx on cdp.profile_computed (next_expiry) where next_expiry is not null;
comment on table cdp.profile_computed is 'Per profile: computed trait values and the time-bucketed state they (and segment event conditions) are kept in.';
comment on column cdp.profile_computed.profile_id is 'The profile.';
comment on column cdp.profile_computed.computed is 'Computed trait values: {"orders_30d": 3, ...}.';
comment on column cdp.profile_computed.state is 'Aggregate state by definition (buckets of window/100) in cdp''s binary form, read in place by evaluation; internal, rebuilt by cdp.recompute_traits. State of 0.1.0 (JSON text) is still read and rewritten in this form.';
comment on column cdp.profile_computed.next_expiry is 'When a window next drops a bucket: the sweep re-evaluates the profile then, without reading events.';
comment on column cdp.profile_computed.updated_at is 'Last change.';
select pg_catalog.pg_extension_config_dump('cdp.profile_computed', '');

create table cdp.aggregates_built (
  key        text primary key,
  definition jsonb not null,
  built_at   timestamptz not null default now()
);
comment on table cdp.aggregates_built is 'Which aggregate states (computed traits, event counters of segments) have been backfilled from the events table; the processor keeps them up to date from then on.';
comment on column cdp.aggregates_built.key is 'Short key of the definition, as in cdp.profile_computed.state.';
comment on column cdp.aggregates_built.definition is 'The canonical definition.';
comment on column cdp.aggregates_built.built_at is 'When it was backfilled.';
select pg_catalog.pg_extension_config_dump('cdp.aggregates_built', '');

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

create function cdp.profile_state_json(profile_id bigint) returns text
as 'MODULE_PATHNAME', 'cdp_profile_state_json' language c stable strict;
comment on function cdp.profile_state_json(bigint) is 'A profile''s aggregate state (cdp.profile_computed.state, stored in binary) in the JSON form of 0.1.0, for inspection: {"<aggregate key>": [[bucket start, count, ...], ...]}. Null when the profile has no state row.';

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
