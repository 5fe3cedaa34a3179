-- Behaviour of SQL ingestion, checked as assertions.
begin;
create extension if not exists pgtap;
create extension if not exists cdp;
select plan(14);
set local cdp.test_clock = '2025-06-01T08:00:00Z';

select results_eq(
  $$select status from cdp.ingest('{"batch":[
      {"type":"track","userId":"u1","event":"A","messageId":"1"},
      {"type":"track","userId":"u1","messageId":"2"},
      {"type":"track","userId":"u1","event":"A","messageId":"1"}]}')$$,
  array['accepted', 'rejected', 'duplicate'],
  'a batch reports one status per message, in order');
select is((select count(*)::int from cdp.events), 1, 'only the accepted message is stored');
select is((select count(*)::int from cdp.quarantine), 1, 'the rejected one is quarantined');
select is((select reason from cdp.quarantine), 'event: is required for track', 'with the field and the rule');
select is((select received_at from cdp.events), '2025-06-01T08:00:00Z'::timestamptz, 'receivedAt is the server clock');

select throws_ok($$select * from cdp.ingest('[]')$$, '22023', 'payload: must be a JSON object',
  'a payload that is not an object is refused');
select throws_ok($$select * from cdp.ingest('{"type":"track","userId":"u","event":"E"}', 'nope')$$, '28000',
  'writeKey: is unknown or revoked', 'an unknown write key is refused');
select throws_ok($$select cdp.track(event => 'E')$$, '22023', null, 'typed calls raise 22023 when invalid');
select throws_like($$select cdp.group(group_id => '', user_id => 'u')$$, '%groupId%', 'and name the field');
select lives_ok($$select cdp.identify(user_id => 'u9', traits => '{"plan":"pro"}')$$, 'a valid identify');
select is((select traits->>'plan' from cdp.events where user_id = 'u9'), 'pro', 'stores its traits');

-- Concurrent-safe dedup is enforced by the ledger's primary key, not by a lookup.
select is((select count(*)::int from cdp.message_ids), 2, 'every accepted message claims its id');
select lives_ok($$select cdp.run_maintenance()$$, 'maintenance runs');
select cmp_ok((select count(*)::int from pg_inherits where inhparent = 'cdp.events'::regclass), '>=', 8,
  'partitions exist a week ahead');

select * from finish();
rollback;
