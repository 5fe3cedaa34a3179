-- Trust: what no role may do since 0.2.0, each refusal proven as that role.
-- Ingestion goes through the functions, which set ids, txids, times and ledger
-- rows themselves; nobody forges an event, a ledger row, or a thousand
-- partitions; times are real times; erasure walks any document.
begin;
create extension if not exists pgtap;
create extension if not exists cdp;
select plan(29);

update cdp.processor_state set paused = true;
select cdp.create_source('trust_web');
select status from cdp.ingest('{"type": "identify", "userId": "victim", "traits": {"email": "victim@example.com"}, "messageId": "t-1"}');

-------------------------------------------------------------------------------
-- cdp_ingest: the functions, and nothing under them.
-------------------------------------------------------------------------------
set role cdp_ingest;
select throws_ok($$insert into cdp.events (id, received_at, source_id, message_id, type, "timestamp", txid)
                   values (1000000, now(), 1, 'forged', 'track', now(), '1')$$,
  '42501', null, 'cdp_ingest cannot insert an event with its own id and txid');
select throws_ok($$insert into cdp.events (received_at, source_id, message_id, type, "timestamp")
                   values (now(), 1, 'forged', 'track', now())$$,
  '42501', null, 'nor any event at all');
select throws_ok($$insert into cdp.message_ids values (1, 'order-1001', 'infinity')$$,
  '42501', null, 'cdp_ingest cannot claim a messageId in the ledger for ever');
select throws_ok(format($$insert into cdp.%I (id, received_at, source_id, message_id, type, "timestamp", txid)
                          values (1000000, now(), 1, 'forged', 'track', now(), '1')$$,
                        'events_' || to_char(cdp.now() at time zone 'UTC', 'YYYYMMDD')),
  '42501', null, 'nor into today''s partition, past cdp.events');
select throws_ok($$select * from cdp.message_ids$$, '42501', null, 'nor read the ledger');
select throws_ok($$select nextval('cdp.events_id_seq')$$, '42501', null, 'nor draw event ids');
select throws_ok($$select cdp.ensure_partitions('2031-01-01', 31)$$,
  '42501', null, 'cdp_ingest cannot make partitions');
select throws_ok($$select cdp.source_for_key('anything')$$, '42501', null, 'nor probe write keys');
select is((select status from cdp.ingest('{"type": "track", "userId": "u-ingest", "event": "Signed Up", "messageId": "t-2"}')),
  'accepted', 'cdp.ingest still works for cdp_ingest');
select is((select status from cdp.ingest('{"type": "track", "userId": "u-ingest", "event": "Signed Up", "messageId": "t-2"}')),
  'duplicate', 'and the ledger it cannot touch still deduplicates');
select lives_ok($$select cdp.track('Viewed', user_id => 'u-ingest')$$, 'so do the typed functions');
reset role;
select ok((select id from cdp.events where message_id = 't-2') > (select id from cdp.events where message_id = 't-1'),
  'the event''s id came from the sequence, after the earlier one');

-------------------------------------------------------------------------------
-- cdp_admin: configures, erases and replays, but writes no event or ledger row.
-------------------------------------------------------------------------------
set role cdp_admin;
select throws_ok($$insert into cdp.events (received_at, source_id, message_id, type, "timestamp")
                   values (now(), 1, 'forged', 'track', now())$$,
  '42501', null, 'cdp_admin cannot insert events');
select throws_ok($$update cdp.events set txid = '1'$$, '42501', null, 'nor rewrite their txids');
select throws_ok(format($$update cdp.%I set txid = '1'$$, 'events_' || to_char(cdp.now() at time zone 'UTC', 'YYYYMMDD')),
  '42501', null, 'not even in a partition (partitions get no grant of their own)');
select throws_ok($$delete from cdp.message_ids$$, '42501', null, 'nor delete ledger rows');
select throws_ok($$insert into cdp.message_ids values (1, 'order-1001', 'infinity')$$, '42501', null, 'nor add them');
select throws_ok($$select setval('cdp.events_id_seq', 1)$$, '42501', null, 'nor move the event ids back');
select throws_ok($$select cdp.ensure_partitions('2031-01-01', 1)$$, '22023', null,
  'cdp_admin makes partitions only for dates near now');
select lives_ok($$select cdp.ensure_partitions(cdp.now(), 1)$$, 'and near now it may');
select lives_ok($$select cdp.run_maintenance()$$, 'maintenance still runs for cdp_admin');
select lives_ok($$select cdp.process_pending()$$, 'so does the processor');
reset role;

-------------------------------------------------------------------------------
-- Times outside years 1-9999 cannot be stored, whoever writes the row.
-------------------------------------------------------------------------------
select throws_ok($$insert into cdp.events (received_at, source_id, message_id, type, "timestamp")
                   values (now(), 1, 'inf', 'track', 'infinity')$$,
  '23514', null, 'an event at infinity breaks events_times_in_range, even for the owner');
select throws_ok($$insert into cdp.events (received_at, source_id, message_id, type, "timestamp", sent_at)
                   values (now(), 1, 'old', 'track', now(), '0001-01-01 00:00:00+00'::timestamptz - interval '1 second')$$,
  '23514', null, 'so does a time in 1 BC');

-------------------------------------------------------------------------------
-- Restores: only a superuser's COPY replaces default rows; an INSERT does not.
-------------------------------------------------------------------------------
select is(cdp.restoring(), false, 'an ordinary statement is not a restore');
select throws_ok($$insert into cdp.retention (kind, keep) values ('events', '1 day')$$, '23505', null,
  'an INSERT of a default row''s key still fails on the key');

-------------------------------------------------------------------------------
-- Erasure walks documents of any depth.
-------------------------------------------------------------------------------
select is(cdp.json_mentions((repeat('[', 14000) || '" victim@example.com "' || repeat(']', 14000))::jsonb,
                            '{}', '{victim@example.com}'),
  true, 'json_mentions finds a value 14,000 levels deep');
insert into cdp.events (received_at, source_id, message_id, type, event, "timestamp", properties)
values (now(), 1, 'deep', 'track', 'Deep', now(), (repeat('[', 14000) || '1' || repeat(']', 14000))::jsonb);
select lives_ok($$select cdp.erase('user_id', 'victim', 'trust test')$$,
  'one event nested 14,000 levels deep does not block an erasure');
select is((select count(*)::int from cdp.events where user_id = 'victim'), 0, 'and the person''s events are gone');

select * from finish();
rollback;
