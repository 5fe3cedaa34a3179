------------------------------------------------------------------------------
-- Tracking plans: a JSON Schema per event, checked at ingestion (the plans
-- and their versions, which source follows which and how, the violations
-- found, a count of them, and a plan proposed from what sources already send).
------------------------------------------------------------------------------
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
