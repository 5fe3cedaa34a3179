-- The schema a DBA gets from CREATE EXTENSION cdp.
\i test/regress/sql/setup.sql
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

-- The events table is partitioned by day of arrival. Partitions are user data,
-- made as events arrive (and a week ahead by the processor's maintenance), so
-- CREATE EXTENSION makes none: a restore's CREATE EXTENSION cannot clash with
-- the partitions pg_dump saved.
select pg_get_partkeydef('cdp.events'::regclass);
select count(*) as partitions_at_install from pg_inherits where inhparent = 'cdp.events'::regclass;

-- pg_dump saves the rows of every table and sequence of the extension (the
-- events' rows through their partitions, which pg_dump saves as tables).
select c.relname as not_saved_by_pg_dump
  from pg_class c
  join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e'
  join pg_extension x on x.oid = d.refobjid and x.extname = 'cdp'
 where c.relkind in ('r', 'S') and c.oid <> all (x.extconfig);

-- The typed columns of an event.
select attname, format_type(atttypid, atttypmod)
  from pg_attribute where attrelid = 'cdp.events'::regclass and attnum > 0 order by attnum;

-- The extension refuses to be used without shared_preload_libraries (it is preloaded here).
select current_setting('shared_preload_libraries') ~ 'cdp' as preloaded;
