------------------------------------------------------------------------------
-- Privacy: consent, erasure and access, retention, audit (consent and its
-- history, suppressions, the deletion ledger, the audit log and its
-- triggers, retention settings and their log, and the functions over them).
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
select pg_catalog.pg_extension_config_dump('cdp.consent', '');

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
select pg_catalog.pg_extension_config_dump('cdp.consent_history', '');
select pg_catalog.pg_extension_config_dump('cdp.consent_history_id_seq', '');

create table cdp.suppressions (
  identifier_hash text primary key,
  type            text not null,
  created_at      timestamptz not null default now()
);
comment on table cdp.suppressions is 'Identifiers of erased people, as SHA-256 hashes only: events carrying one are quarantined with reason "suppressed" instead of re-creating the profile (until cdp.unsuppress).';
comment on column cdp.suppressions.identifier_hash is 'hex SHA-256 of type || '':'' || normalised value (cdp.identifier_hash).';
comment on column cdp.suppressions.type is 'The identifier type.';
comment on column cdp.suppressions.created_at is 'When the erasure happened.';
select pg_catalog.pg_extension_config_dump('cdp.suppressions', '');

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
select pg_catalog.pg_extension_config_dump('cdp.deletion_ledger', '');
select pg_catalog.pg_extension_config_dump('cdp.deletion_ledger_id_seq', '');

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
select pg_catalog.pg_extension_config_dump('cdp.audit_log', '');
select pg_catalog.pg_extension_config_dump('cdp.audit_log_id_seq', '');

create table cdp.retention (
  kind       text primary key check (kind in ('events', 'quarantine', 'outbox', 'dead_letters', 'segment_history', 'consent_history', 'violations')),
  keep       interval not null check (keep >= interval '1 day'),
  updated_at timestamptz not null default now()
);
insert into cdp.retention (kind, keep) values
  ('events', '395 days'), ('quarantine', '30 days'), ('outbox', '7 days'), ('dead_letters', '30 days'),
  ('segment_history', '395 days'), ('consent_history', '1825 days'), ('violations', '30 days');
-- A restore's dumped rows replace these (05_restore.sql).
create trigger retention_restore before insert on cdp.retention
  for each row execute function cdp.replace_default_row('kind');
comment on table cdp.retention is 'How long each kind of data is kept (cdp.set_retention). The processor''s maintenance applies it once a minute (cdp.run_retention).';
comment on column cdp.retention.kind is 'events (whole daily partitions are dropped), quarantine, outbox, dead_letters, segment_history (ended memberships), consent_history, violations (of tracking plans).';
comment on column cdp.retention.keep is 'How long to keep it (at least a day).';
comment on column cdp.retention.updated_at is 'When it was last set.';
select pg_catalog.pg_extension_config_dump('cdp.retention', '');

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
select pg_catalog.pg_extension_config_dump('cdp.retention_log', '');
select pg_catalog.pg_extension_config_dump('cdp.retention_log_id_seq', '');

create function cdp.identifier_hash(type text, value text) returns text
language sql stable strict
as $$ select encode(sha256(convert_to(type || ':' || cdp.normalise_identifier(type, value), 'UTF8')), 'hex') $$;
comment on function cdp.identifier_hash(text, text) is 'hex SHA-256 of type:normalised value: how suppressions, the deletion ledger and the audit log name an identifier without holding it.';

-- True when a string anywhere in the JSON value equals one of `exact` (trimmed)
-- or, lower-cased, one of `folded` (values of types that ignore case). In C,
-- walking iteratively: one deeply nested document cannot block an erasure.
create function cdp.json_mentions(doc jsonb, exact text[], folded text[]) returns boolean
as 'MODULE_PATHNAME', 'cdp_json_mentions' language c immutable parallel safe;
comment on function cdp.json_mentions(jsonb, text[], text[]) is 'Whether any string in the JSON value, at any depth, equals one of the exact values (trimmed) or, lower-cased, one of the folded values: how erasure finds a person in payloads. Walks iteratively, so no nesting depth stops it.';

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

-- With its owner's rights: it removes events and ledger rows, which no role
-- deletes itself.
create function cdp.erase(type text, value text, reason text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
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
comment on function cdp.set_retention(text, interval) is 'Sets how long a kind of data is kept: events, quarantine, outbox, dead_letters, segment_history, consent_history, violations.';

-- Retention drops partitions, which only their owner may do: with its owner's
-- rights, so cdp_admin can run it by hand.
create function cdp.run_retention(batch int default 10000) returns jsonb
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

-- A destination row without its signing secret, header values and kind
-- config (which may hold credentials); header and config key names stay,
-- and whether a secret is set.
create function cdp.without_secrets(r jsonb) returns jsonb
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

-- Configuration changes are audited, secrets left out. The audit log is
-- restored as it was; restoring configuration is not a change.
create function cdp.audit_change() returns trigger
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
