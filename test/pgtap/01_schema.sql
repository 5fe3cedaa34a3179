-- Schema: the tables, columns and functions a DBA and an app rely on.
begin;
create extension if not exists pgtap;
create extension if not exists cdp;
select plan(27);

select has_schema('cdp');
select has_table('cdp', t, 'table cdp.' || t) from unnest(array['sources', 'events', 'message_ids', 'quarantine']) t;
select is((select relkind::text from pg_class where oid = 'cdp.events'::regclass), 'p', 'events is partitioned');
select col_is_pk('cdp', 'sources', 'id', 'sources keyed by id');
select col_is_pk('cdp', 'message_ids', array['source_id', 'message_id'], 'dedup ledger keyed by (source, messageId)');
select col_not_null('cdp', 'events', c, 'events.' || c || ' is never null')
  from unnest(array['received_at', 'source_id', 'message_id', 'type', 'timestamp']) c;
select col_type_is('cdp', 'events', c, 'jsonb', 'events.' || c || ' is jsonb')
  from unnest(array['properties', 'traits', 'context', 'integrations']) c;
select col_type_is('cdp', 'events', 'timestamp', 'timestamp with time zone', 'events.timestamp is timestamptz');
select has_function('cdp', 'ingest', array['jsonb', 'text'], 'cdp.ingest(jsonb, text)');
select has_function('cdp', f, 'cdp.' || f) from unnest(array['track', 'identify', 'page', 'screen', 'group', 'alias']) f;
select has_function('cdp', 'create_source', array['text'], 'cdp.create_source(text)');
select has_function('cdp', 'revoke_source', array['text'], 'cdp.revoke_source(text)');

select * from finish();
rollback;
