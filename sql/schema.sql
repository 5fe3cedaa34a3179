-- The schema a DBA gets from CREATE EXTENSION cdp.
select c.relname, c.relkind
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = 'cdp' and c.relkind in ('r', 'p', 'S') and not c.relispartition
 order by 1;

-- Every table and every column is documented with COMMENT ON: none is missing.
select c.relname as undocumented_table
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = 'cdp' and c.relkind in ('r', 'p') and not c.relispartition
   and obj_description(c.oid, 'pg_class') is null;
select c.relname, a.attname as undocumented_column
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
 where n.nspname = 'cdp' and c.relkind in ('r', 'p') and not c.relispartition
   and col_description(c.oid, a.attnum) is null;
-- ... and so is every function.
select p.proname as undocumented_function
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where n.nspname = 'cdp' and obj_description(p.oid, 'pg_proc') is null;

-- The events table is partitioned by day of arrival, with partitions made ahead.
select pg_get_partkeydef('cdp.events'::regclass);
select count(*) >= 8 as partitions_ahead from pg_inherits where inhparent = 'cdp.events'::regclass;

-- The typed columns of an event.
select attname, format_type(atttypid, atttypmod)
  from pg_attribute where attrelid = 'cdp.events'::regclass and attnum > 0 order by attnum;

-- The extension refuses to be used without shared_preload_libraries (it is preloaded here).
select current_setting('shared_preload_libraries') ~ 'cdp' as preloaded;
