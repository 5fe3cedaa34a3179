------------------------------------------------------------------------------
-- Roles and what analysts see: masking, the analysts' views, the roles
-- cdp_admin, cdp_ingest and cdp_analyst and every privilege. Last, because
-- the grants by schema below cover what the earlier pieces created.
------------------------------------------------------------------------------
-- The PII trait names (GUC cdp.pii_traits), as an array.
create function cdp.pii_traits() returns text[]
language sql stable
set search_path = pg_catalog, pg_temp
as $$ select coalesce(string_to_array(replace(current_setting('cdp.pii_traits', true), ' ', ''), ','), '{}') $$;
comment on function cdp.pii_traits() is 'The trait names cdp.pii_traits lists (default email, phone, first_name, last_name, address, ip).';

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

create function cdp.mask(doc jsonb) returns jsonb
language sql stable
set search_path = pg_catalog, pg_temp
as $$ select cdp.pii_view(doc, 1) $$;
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

-- Nothing is open to everyone; each role gets what it needs. (A function
-- created after these grants by schema needs its own, as cdp.grant_role below.)
revoke all on all functions in schema cdp from public;
grant usage on schema cdp to cdp_admin, cdp_ingest, cdp_analyst;

-- Administrators configure, erase and replay.
-- Not ALL: TRIGGER on tables the workers write would run code as the superuser.
grant select, insert, update, delete, truncate on all tables in schema cdp to cdp_admin;
-- The audit log and the deletion ledger are append-only, for administrators too.
revoke update, delete, truncate on cdp.audit_log, cdp.deletion_ledger from cdp_admin;
-- The events table and the ledger are written by the extension's own functions
-- only (a forged id or txid would bind a later event to someone else's
-- profile; a forged ledger row would answer "duplicate" to a real event for
-- ever); the functions that remove events or ledger rows run with their
-- owner's rights.
revoke insert, update, delete, truncate on cdp.events, cdp.message_ids from cdp_admin;
grant all on all sequences in schema cdp to cdp_admin;
-- No setval of the event and profile numbers either.
revoke update on sequence cdp.events_id_seq, cdp.profile_id_seq from cdp_admin;
grant execute on all functions in schema cdp to cdp_admin;

-- Ingest: only through the functions. They set ids, txids, times and ledger
-- rows themselves (cdp.ingest runs with its owner's rights), so the role has no
-- privilege on any table or sequence.
grant execute on function cdp.ingest(jsonb, text), cdp.ingest_one(jsonb, text),
  cdp.track(text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text),
  cdp.identify(text, text, jsonb, jsonb, timestamptz, text, jsonb, text),
  cdp.page(text, text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text),
  cdp.screen(text, text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text),
  cdp.alias(text, text, jsonb, timestamptz, text, jsonb, text),
  cdp."group"(text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text),
  cdp.now() to cdp_ingest;

-- Analysts: masked views and segments; no raw table, write key, secret or ledger.
grant select on cdp.analyst_profiles, cdp.analyst_identities, cdp.analyst_events, cdp.segments, cdp.segment_sizes,
  cdp.segment_membership, cdp.computed_traits, cdp.tracking_plans, cdp.tracking_plan_versions, cdp.source_tracking_plans,
  cdp.violations, cdp.violation_counts to cdp_analyst;
grant execute on function cdp.mask(jsonb), cdp.pii_view(jsonb, int), cdp.pii_traits(), cdp.segment_members(text), cdp.now() to cdp_analyst;

create function cdp.grant_role(role text, member text) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if role not in ('cdp_admin', 'cdp_ingest', 'cdp_analyst') then
    raise exception 'role: must be one of cdp_admin, cdp_ingest, cdp_analyst' using errcode = '22023';
  end if;
  execute format('grant %I to %I', role, member);
  insert into cdp.audit_log (action, target, details) values ('grant_role', member, jsonb_build_object('role', role));
end $$;
comment on function cdp.grant_role(text, text) is 'Grants one of the cdp roles to a database user and records it in cdp.audit_log. Runs with the extension owner''s rights; cdp_admin may call it.';
revoke all on function cdp.grant_role(text, text) from public;
grant execute on function cdp.grant_role(text, text) to cdp_admin;
