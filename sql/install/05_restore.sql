------------------------------------------------------------------------------
-- Restores: what lets a pg_dump of a database using cdp restore as it was.
-- The triggers of later pieces call these two functions.
------------------------------------------------------------------------------
-- Every table and sequence of the extension holds user data or state
-- (configuration, profiles, the ledger, queues, the audit log), so each piece
-- registers its tables and sequences with pg_extension_config_dump where it
-- creates them, and pg_dump dumps their rows; the schema suite fails on one
-- that is not. The daily partitions of cdp.events are user data, not members:
-- pg_dump dumps them as tables, and CREATE EXTENSION makes none.

-- Is this statement a superuser's COPY, as pg_dump's restores are? Then rows
-- arrive as they were dumped, with the effects they had already (audit rows,
-- deliveries) restored beside them, so triggers must not add those again. A
-- COPY by anyone else is audited like any write.
create function cdp.restoring() returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$ select current_query() ~* '^\s*copy\s' and (select rolsuper from pg_roles where rolname = session_user) $$;
comment on function cdp.restoring() is 'True inside a superuser''s COPY (a pg_dump restore): the triggers that replace default rows, queue deliveries and audit changes use it.';

-- A restore first runs CREATE EXTENSION, which puts default rows into four
-- tables (the "sql" source, the identifier types, retention, the processor's
-- cursor), and then COPYs the dumped rows. The dumped row replaces the
-- default one instead of failing on its key: only in a restore, so an INSERT
-- of a key that exists still fails as it should. Each of the four tables has
-- a BEFORE INSERT trigger <table>_restore calling it with its key column.
create function cdp.replace_default_row() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  key text := tg_argv[0];
begin
  if cdp.restoring() then
    execute format('delete from %I.%I where %I = $1.%I', tg_table_schema, tg_table_name, key, key) using new;
  end if;
  return new;
end $$;
comment on function cdp.replace_default_row() is 'Trigger (restores only): a dumped row being restored replaces the default row CREATE EXTENSION put in its place, so pg_dump backups restore cdp.sources, cdp.identifier_types, cdp.retention and cdp.processor_state as they were.';
