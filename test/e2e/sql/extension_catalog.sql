-- Everything the cdp extension defines, one line per fact, in a stable order:
-- what test/e2e/upgrade.sh compares between an upgraded and a fresh install.
-- Daily partitions of cdp.events are user data (not members) and left out.
-- Columns are numbered among the live ones (what SELECT * and a restore see),
-- so a column an upgrade dropped leaves no gap to tell the two apart.
with members as (
  select d.classid, d.objid
    from pg_depend d join pg_extension x on x.oid = d.refobjid
   where d.refclassid = 'pg_extension'::regclass and d.deptype = 'e' and x.extname = 'cdp'
), rels as (
  select c.oid, c.relname, c.relkind from pg_class c join members m on m.classid = 'pg_class'::regclass and m.objid = c.oid
), parts as (
  -- Objects that belong to a member relation without being members themselves.
  select 'pg_constraint'::regclass as classid, co.oid as objid from rels r join pg_constraint co on co.conrelid = r.oid
  union all
  select 'pg_trigger'::regclass, t.oid from rels r join pg_trigger t on t.tgrelid = r.oid
  union all
  select 'pg_class'::regclass, i.indexrelid from rels r join pg_index i on i.indrelid = r.oid
  union all
  select 'pg_policy'::regclass, p.oid from rels r join pg_policy p on p.polrelid = r.oid
  union all
  select 'pg_rewrite'::regclass, w.oid from rels r join pg_rewrite w on w.ev_class = r.oid where w.rulename <> '_RETURN'
)
select 'member ' || pg_describe_object(classid, objid, 0) from members
union all
select 'function ' || p.oid::regprocedure || ' ' || md5(pg_get_functiondef(p.oid)) || ' acl=' || coalesce(p.proacl::text, '')
       || ' owner=' || p.proowner::regrole
  from pg_proc p join members m on m.classid = 'pg_proc'::regclass and m.objid = p.oid where p.prokind <> 'a'
union all
select 'column ' || r.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || case when a.attcollation <> t.typcollation then ' collate ' || a.attcollation::regcollation else '' end
       || case when a.attnotnull then ' not null' else '' end
       || case when a.attgenerated <> '' then ' generated ' || a.attgenerated::text else '' end
       || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
       || case when a.attidentity <> '' then ' identity ' || a.attidentity::text else '' end
       || case when a.attstorage <> t.typstorage then ' storage ' || a.attstorage::text else '' end
       || case when a.attcompression <> '' then ' compression ' || a.attcompression::text else '' end
       || case when a.attstattarget >= 0 then ' statistics ' || a.attstattarget else '' end
       -- (pg_attver, set by some builds of Postgres, differs from database to database)
       || coalesce(' options=' || nullif(array(select o from unnest(a.attoptions) o where o !~ '^pg_attver=')::text, '{}'), '')
       || ' acl=' || coalesce(a.attacl::text, '')
       || ' #' || row_number() over (partition by a.attrelid order by a.attnum)
  from rels r join pg_attribute a on a.attrelid = r.oid and a.attnum > 0 and not a.attisdropped
  join pg_type t on t.oid = a.atttypid
  left join pg_attrdef ad on ad.adrelid = r.oid and ad.adnum = a.attnum
union all
select 'relation ' || r.relname || ' ' || r.relkind::text || ' acl=' || coalesce(c.relacl::text, '')
       || ' options=' || coalesce(c.reloptions::text, '') || ' owner=' || c.relowner::regrole
       || ' persistence=' || c.relpersistence::text || ' replident=' || c.relreplident::text
       || case when c.relrowsecurity then ' rls' else '' end || case when c.relforcerowsecurity then ' forcerls' else '' end
       || coalesce(' ' || pg_get_partkeydef(c.oid), '')
       || coalesce(' inherits ' || (select string_agg(i.inhparent::regclass::text, ', ' order by i.inhseqno)
                                      from pg_inherits i where i.inhrelid = c.oid), '')
  from rels r join pg_class c on c.oid = r.oid
union all
select 'sequence ' || r.relname || ' ' || s.seqtypid::regtype || ' start ' || s.seqstart || ' increment ' || s.seqincrement
       || ' min ' || s.seqmin || ' max ' || s.seqmax || ' cache ' || s.seqcache || case when s.seqcycle then ' cycle' else '' end
       || coalesce(' owned by ' || (select pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) || ' (' || d.deptype::text || ')'
                                      from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = r.oid
                                       and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')), '')
  from rels r join pg_sequence s on s.seqrelid = r.oid
union all
select 'constraint ' || r.relname || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
  from rels r join pg_constraint co on co.conrelid = r.oid
union all
select 'index ' || pg_get_indexdef(i.indexrelid) || case when i.indisclustered then ' clustered' else '' end
  from rels r join pg_index i on i.indrelid = r.oid
union all
select 'trigger ' || pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
  from rels r join pg_trigger t on t.tgrelid = r.oid where not t.tgisinternal
union all
select 'policy ' || r.relname || ' ' || p.polname || ' ' || p.polcmd::text || ' ' || p.polpermissive::text
       || ' to ' || p.polroles::regrole[]::text || coalesce(' using ' || pg_get_expr(p.polqual, p.polrelid), '')
       || coalesce(' check ' || pg_get_expr(p.polwithcheck, p.polrelid), '')
  from rels r join pg_policy p on p.polrelid = r.oid
union all
select 'view ' || r.relname || ' ' || md5(pg_get_viewdef(r.oid)) from rels r where r.relkind in ('v', 'm')
union all
select 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || ' ' || md5(d.description)
  from pg_description d
  join (select classid, objid from members union all select classid, objid from parts) o
    on o.classid = d.classoid and o.objid = d.objoid
union all
select 'dumped ' || c::regclass || ' where ' || coalesce(w, '')
  from pg_extension x, unnest(x.extconfig, x.extcondition) as u(c, w) where x.extname = 'cdp'
union all
select 'schema ' || n.nspname || ' acl=' || coalesce(n.nspacl::text, '') || ' owner=' || n.nspowner::regrole
  from pg_namespace n where n.nspname = 'cdp'
union all
-- The rows CREATE EXTENSION writes, by the columns that use does not change.
select 'row cdp.sources ' || jsonb_build_object('id', id, 'name', name, 'keyless', write_key_hash is null)::text
  from cdp.sources where name = 'sql'
union all
select 'row cdp.identifier_types ' || to_jsonb(t)::text from cdp.identifier_types t
union all
select 'row cdp.retention ' || kind || ' ' || keep from cdp.retention
union all
select 'row cdp.processor_state ' || id from cdp.processor_state
union all
select 'row cdp.trait_rules ' || to_jsonb(t)::text from cdp.trait_rules t
order by 1;
