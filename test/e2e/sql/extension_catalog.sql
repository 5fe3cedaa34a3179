-- Everything the cdp extension defines, one line per fact, in a stable order:
-- what test/e2e/upgrade.sh compares between an upgraded and a fresh install.
-- Daily partitions of cdp.events are user data (not members) and left out.
with members as (
  select d.classid, d.objid
    from pg_depend d join pg_extension x on x.oid = d.refobjid
   where d.refclassid = 'pg_extension'::regclass and d.deptype = 'e' and x.extname = 'cdp'
), rels as (
  select c.oid, c.relname, c.relkind from pg_class c join members m on m.classid = 'pg_class'::regclass and m.objid = c.oid
)
select 'member ' || pg_describe_object(classid, objid, 0) from members
union all
select 'function ' || p.oid::regprocedure || ' ' || md5(pg_get_functiondef(p.oid)) || ' acl=' || coalesce(p.proacl::text, '')
  from pg_proc p join members m on m.classid = 'pg_proc'::regclass and m.objid = p.oid where p.prokind <> 'a'
union all
select 'column ' || r.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || case when a.attnotnull then ' not null' else '' end
       || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
       || case when a.attidentity <> '' then ' identity ' || a.attidentity::text else '' end
       || ' acl=' || coalesce(a.attacl::text, '') || ' #' || a.attnum
  from rels r join pg_attribute a on a.attrelid = r.oid and a.attnum > 0 and not a.attisdropped
  left join pg_attrdef ad on ad.adrelid = r.oid and ad.adnum = a.attnum
union all
select 'relation ' || r.relname || ' ' || r.relkind::text || ' acl=' || coalesce(c.relacl::text, '')
       || ' options=' || coalesce(c.reloptions::text, '') || ' owner=' || c.relowner::regrole
  from rels r join pg_class c on c.oid = r.oid
union all
select 'constraint ' || r.relname || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
  from rels r join pg_constraint co on co.conrelid = r.oid
union all
select 'index ' || pg_get_indexdef(i.indexrelid) from rels r join pg_index i on i.indrelid = r.oid
union all
select 'trigger ' || pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
  from rels r join pg_trigger t on t.tgrelid = r.oid where not t.tgisinternal
union all
select 'view ' || r.relname || ' ' || md5(pg_get_viewdef(r.oid)) from rels r where r.relkind in ('v', 'm')
union all
select 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || ' ' || md5(d.description)
  from pg_description d join members m on m.classid = d.classoid and m.objid = d.objoid
union all
select 'dumped ' || c::regclass || ' where ' || coalesce(w, '')
  from pg_extension x, unnest(x.extconfig, x.extcondition) as u(c, w) where x.extname = 'cdp'
union all
select 'schema acl ' || coalesce(n.nspacl::text, '') from pg_namespace n where n.nspname = 'cdp'
order by 1;
