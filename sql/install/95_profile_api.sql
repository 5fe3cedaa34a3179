------------------------------------------------------------------------------
-- The Profile API: read tokens, and the lookup the HTTP workers answer with
-- (one statement for every lookup waiting in a loop) and apps call from SQL.
-- After the roles: it masks with cdp.mask and grants its own privileges.
------------------------------------------------------------------------------
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
