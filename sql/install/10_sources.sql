------------------------------------------------------------------------------
-- Sources: where events come from, and the write keys that prove it
-- (cdp.sources and its built-in "sql" source, creating and revoking keys).
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
select pg_catalog.pg_extension_config_dump('cdp.sources', '');
select pg_catalog.pg_extension_config_dump('cdp.sources_id_seq', '');

-- SQL ingestion without a write key is attributed to this source.
insert into cdp.sources (name) values ('sql');
-- A restore's dumped "sql" row replaces this one (05_restore.sql).
create trigger sources_restore before insert on cdp.sources
  for each row execute function cdp.replace_default_row('id');

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
-- With its owner's rights: the roles read no write key hash themselves.
create function cdp.source_for_key(write_key text) returns int
language sql stable parallel safe security definer
set search_path = pg_catalog, pg_temp
as $$
  select id from cdp.sources
   where revoked_at is null
     and case when write_key is null then name = 'sql' and write_key_hash is null
              else write_key_hash = sha256(convert_to(write_key, 'UTF8')) end
$$;
comment on function cdp.source_for_key(text) is 'The active source a write key belongs to (NULL key: the built-in "sql" source), or NULL.';
