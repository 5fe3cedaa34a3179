-- Sources and write keys.
\i test/regress/sql/setup.sql

-- The built-in "sql" source takes SQL ingestion without a key.
select id, name, write_key_hash is null as keyless from cdp.sources;

-- create_source returns a key once; only its hash is stored.
select cdp.create_source('web') as key \gset
select length(:'key') as key_length, :'key' like 'cdp\_%' as prefixed;
select name, write_key_hash = sha256(convert_to(:'key', 'UTF8')) as hash_matches,
       write_key_hint = left(:'key', 10) as hint_matches
  from cdp.sources where name = 'web';
select count(*) as rows_holding_the_key from cdp.sources
 where write_key_hint = :'key' or encode(write_key_hash, 'escape') = :'key';

-- Two calls never return the same key.
select cdp.create_source('ios') <> :'key' as distinct_keys;

-- Names are unique and well-formed.
select pg_temp.err($$select cdp.create_source('web')$$);
select pg_temp.err($$select cdp.create_source('bad name; drop table x')$$);
select pg_temp.err($$select cdp.create_source('')$$);

-- The key routes events to its source: as an argument, or as writeKey in the body.
select status from cdp.ingest('{"type":"track","userId":"u1","event":"A","messageId":"k1"}', :'key');
select status from cdp.ingest(jsonb_build_object('writeKey', :'key', 'type', 'track', 'userId', 'u1', 'event', 'B', 'messageId', 'k2'));
select e.message_id, s.name from cdp.events e join cdp.sources s on s.id = e.source_id order by 1;
-- The body's writeKey is not stored anywhere.
select count(*) as events_carrying_key from cdp.events e where e::text like '%' || :'key' || '%';

-- An unknown key is refused and nothing is stored.
select pg_temp.err($$select * from cdp.ingest('{"type":"track","userId":"u1","event":"A"}', 'cdp_wrong')$$);

-- A revoked key stops working.
select cdp.revoke_source('web');
select pg_temp.err(format($$select * from cdp.ingest('{"type":"track","userId":"u1","event":"A"}', %L)$$, :'key'));
select pg_temp.err($$select cdp.revoke_source('web')$$);
select pg_temp.err($$select cdp.revoke_source('nope')$$);
select count(*) as events from cdp.events;
