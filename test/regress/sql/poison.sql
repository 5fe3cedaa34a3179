-- Issue 11: no single input or state may crash or stall the processor.
\i test/regress/sql/setup.sql
-- A regression must fail here, not hang the suite.
set statement_timeout = '30s';
set cdp.test_clock = '2025-03-01T10:00:00Z';

------------------------------------------------------------------------------
-- 1. Someone deletes the processor's row: it is made again (WARNING), the
--    cursor after the last bound event, so nothing is counted twice.
------------------------------------------------------------------------------
select cdp.identify(user_id => 'u-state', traits => '{"plan": "pro"}', message_id => 's1');
select cdp.process_pending() as processed;
delete from cdp.processor_state;
select cdp.track('Tick', user_id => 'u-state', message_id => 's2');
select cdp.process_pending() as processed;
select count(*) as rows, bool_and(cursor_event > 0) as cursor_kept from cdp.processor_state;
select event_count from cdp.profiles where profile_id = cdp.profile_id('user_id', 'u-state');
update cdp.processor_state set paused = true;
-- Gone again with nothing pending: made again all the same.
delete from cdp.processor_state;
select cdp.process_pending() as processed;
select count(*) as rows from cdp.processor_state;
update cdp.processor_state set paused = true;

------------------------------------------------------------------------------
-- 2. A blocked pattern that backtracks for ever under std::regex: RE2 matches
--    in linear time, whole value, ignoring case.
------------------------------------------------------------------------------
insert into cdp.identifier_types (type, paths, normalise, priority, blocked_patterns)
  values ('work_email', '{traits.work_email}', 'lower', 4, array['^([a-z0-9]+[._-]?)+@mailinator\.com$']);
select cdp.identify(user_id => 'u-regex', traits => jsonb_build_object('work_email', repeat('a', 40)), message_id => 'r1');
select cdp.identify(user_id => 'u-regex2', traits => '{"work_email": "Bob.Smith@MAILINATOR.com"}', message_id => 'r2');
select cdp.process_pending() as processed;
select type, value from cdp.identities where type = 'work_email' order by value;
-- Patterns RE2 cannot run in linear time are refused when written.
select pg_temp.err($$insert into cdp.identifier_types (type, paths, blocked_patterns) values ('x1', '{traits.x}', array['(a)\1'])$$);
select pg_temp.err($$insert into cdp.identifier_types (type, paths, blocked_patterns) values ('x2', '{traits.x}', array['(?=a)b'])$$);
delete from cdp.identifier_types where type = 'work_email';

------------------------------------------------------------------------------
-- 3. Trait keys per profile are capped (cdp.max_traits_per_profile): new keys
--    past it are refused and recorded, the profile flagged; known keys update.
------------------------------------------------------------------------------
set cdp.max_traits_per_profile = 3;
select cdp.identify(user_id => 'u-traits', traits => '{"a": 1, "b": 2}', message_id => 't1');
select cdp.identify(user_id => 'u-traits', traits => '{"a": 10, "c": 3, "d": 4, "e": 5}', message_id => 't2');
select cdp.process_pending() as processed;
select traits, flagged from cdp.profiles where profile_id = cdp.profile_id('user_id', 'u-traits');
select r.type, r.value, r.rule, e.message_id from cdp.identity_refusals r join cdp.events e on e.id = r.event_id
 where r.type = 'trait';
reset cdp.max_traits_per_profile;

------------------------------------------------------------------------------
-- 4. Big numbers keep their digits: two ids that differ in the 23rd digit
--    are two people; properties and traits are stored exactly.
------------------------------------------------------------------------------
select message_id, status from cdp.ingest('{"type": "identify", "userId": 12345678901234567890123, "messageId": "n1",
  "traits": {"account": 98765432109876543210987, "ratio": 0.1000000000000000000001}}');
select message_id, status from cdp.ingest('{"type": "identify", "userId": 12345678901234567890124, "messageId": "n2"}');
select message_id, status from cdp.ingest('{"type": "track", "event": "Paid", "userId": 12345678901234567890124, "messageId": "n3",
  "properties": {"amount": 123456789012345678.25, "pi": 3.14159265358979323846264}}');
select user_id, properties from cdp.events where message_id in ('n1', 'n2', 'n3') order by message_id;
select cdp.process_pending() as processed;
select value from cdp.identities where type = 'user_id' and value like '1234%' order by value;
select cdp.profile_id('user_id', '12345678901234567890123') <> cdp.profile_id('user_id', '12345678901234567890124') as two_people;
select traits from cdp.profiles where profile_id = cdp.profile_id('user_id', '12345678901234567890123');

------------------------------------------------------------------------------
-- 5. Times outside years 1 to 9999 are refused with the field and the rule.
------------------------------------------------------------------------------
select message_id, status, error from cdp.ingest('{"type": "track", "event": "Old", "userId": "u-time", "messageId": "y1",
  "timestamp": "0001-01-01T00:00+01:00"}');
select message_id, status, error from cdp.ingest('{"type": "track", "event": "New", "userId": "u-time", "messageId": "y2",
  "originalTimestamp": "9999-12-31T23:59:00-01:00"}');
select pg_temp.err($$select * from cdp.ingest('{"sentAt": "9999-12-31T23:30:00-01:00", "batch": []}')$$);

------------------------------------------------------------------------------
-- 6. An event stored with timestamp 'infinity' (a direct insert) does not
--    overflow window arithmetic; cdp.profile_computed stays readable.
------------------------------------------------------------------------------
select cdp.create_computed_trait('recent_events', '{"kind": "count", "within": {"days": 7}}') >= 0 as created;
do $$ begin
  insert into cdp.events (received_at, source_id, message_id, type, event, user_id, "timestamp")
    values ('2025-03-01T10:00:00Z', 1, 'inf1', 'track', 'Forever', 'u-inf', 'infinity'),
           ('2025-03-01T10:00:00Z', 1, 'inf2', 'track', 'Never', 'u-inf', '-infinity');
exception when check_violation then null;  -- refused outright once the table has the CHECK
end $$;
select cdp.process_pending() >= 0 as processed;
select count(*) >= 0 as readable from (select computed::text, next_expiry::text from cdp.profile_computed) c;
select count(*) >= 0 as readable from (select first_seen::text, last_seen::text from cdp.profiles) p;

------------------------------------------------------------------------------
-- 7. A groupId over 1 KB joins no account, and the refusal is recorded.
------------------------------------------------------------------------------
select status from cdp.ingest(jsonb_build_object('type', 'group', 'userId', 'u-group', 'messageId', 'g1',
  'groupId', repeat('g', 1100)));
select cdp.process_pending() as processed;
select count(*) as accounts from cdp.accounts;
select type, length(value) as value_length, rule from cdp.identity_refusals where type = 'group_id';

------------------------------------------------------------------------------
-- 8. A refused destination does not put its secret or headers in the log:
--    the error names the field and the rule, the statement is left out.
------------------------------------------------------------------------------
select pg_temp.err($$select cdp.create_destination('leaky', 'https://example.com/hook',
  '{"secret": "short-s3cr3t", "headers": {"Authorization": "Bearer tok-123"}}')$$);
select pg_temp.err($$select cdp.create_destination('leaky', 'https://example.com/hook',
  '{"secret": "a-long-enough-s3cr3t", "headers": {"Authorization": "Bearer tok-123\nX: y"}}')$$);
