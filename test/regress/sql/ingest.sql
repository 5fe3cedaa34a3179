-- cdp.ingest: one Segment message or a batch, validated and stored.
\i test/regress/sql/setup.sql

-- A settable clock makes receivedAt predictable.
set cdp.test_clock = '2025-03-01T12:00:00Z';

-- Each of the six message types.
select * from cdp.ingest('{"type":"track","userId":"u1","event":"Order Completed","messageId":"t1",
  "properties":{"revenue":42.5,"currency":"USD","products":[{"sku":"a1","price":10}]}}');
select * from cdp.ingest('{"type":"identify","userId":"u1","messageId":"i1","traits":{"email":"ada@example.com","plan":"pro"}}');
select * from cdp.ingest('{"type":"page","anonymousId":"anon-1","messageId":"p1","name":"Pricing","category":"Docs","properties":{"path":"/pricing"}}');
select * from cdp.ingest('{"type":"screen","userId":"u1","messageId":"s1","name":"Home"}');
select * from cdp.ingest('{"type":"group","userId":"u1","groupId":"acme","messageId":"g1","traits":{"name":"Acme"}}');
select * from cdp.ingest('{"type":"alias","userId":"u1","previousId":"anon-1","messageId":"a1"}');

select message_id, type, event, name, category, user_id, anonymous_id, group_id, previous_id,
       received_at, "timestamp", properties, traits
  from cdp.events order by id;

-- Numbers are accepted as ids and stored as text.
select * from cdp.ingest('{"type":"track","userId":12345,"anonymousId":9.5,"event":"Num","messageId":777}');
select message_id, user_id, anonymous_id from cdp.events where event = 'Num';

-- Without a messageId one is generated (a UUID), and reported.
select status, message_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' as uuid
  from cdp.ingest('{"type":"track","userId":"u1","event":"No Id"}');

-- A batch: statuses in order; the envelope's context and integrations are merged
-- into each message (the message's own keys win).
select * from cdp.ingest('{
  "batch": [
    {"type":"track","userId":"u2","event":"Viewed","messageId":"b1","context":{"ip":"9.9.9.9"}},
    {"type":"track","userId":"u2","messageId":"b2"},
    {"type":"identify","anonymousId":"anon-2","messageId":"b3","integrations":{"All":false}}
  ],
  "context": {"ip":"1.2.3.4","library":{"name":"analytics-node"}},
  "integrations": {"Mixpanel":false}
}');
select message_id, context, integrations from cdp.events where message_id in ('b1', 'b3') order by 1;
-- The rejected one is in quarantine, raw, with its reason.
select message_id, field, reason, raw, received_at from cdp.quarantine;

-- An empty batch stores nothing and returns no rows.
select * from cdp.ingest('{"batch": []}');

-- Clock skew: the client's clock is only trusted for the interval between the
-- event and sending it. Sent 10 s after the event by a clock one hour fast:
-- timestamp = receivedAt - (sentAt - originalTimestamp) = 11:59:50.
select status from cdp.ingest('{"type":"track","userId":"u3","event":"Skewed","messageId":"c1",
  "timestamp":"2025-03-01T13:00:00Z","sentAt":"2025-03-01T13:00:10Z"}');
select "timestamp", original_timestamp, sent_at, received_at from cdp.events where message_id = 'c1';
-- A batch's sentAt applies to messages that carry none.
select status from cdp.ingest('{"sentAt":"2025-03-01T13:00:10Z","batch":[
  {"type":"track","userId":"u3","event":"Skewed","messageId":"c2","timestamp":"2025-03-01T13:00:05Z"}]}');
select "timestamp" from cdp.events where message_id = 'c2';
-- Without sentAt the client's timestamp is kept as is (historical imports).
select status from cdp.ingest('{"type":"track","userId":"u3","event":"Old","messageId":"c3","timestamp":"2024-12-24T18:00:00+01:00"}');
select "timestamp" from cdp.events where message_id = 'c3';
-- receivedAt is always the server's: a client's receivedAt is ignored.
select status from cdp.ingest('{"type":"track","userId":"u3","event":"X","messageId":"c4","receivedAt":"2001-01-01T00:00:00Z"}');
select received_at from cdp.events where message_id = 'c4';

-- Strings shaped like SQL injection are data, stored verbatim.
select status from cdp.ingest($j${"type":"track","userId":"u4'); drop table cdp.events; --","event":"Robert'); DROP TABLE students;--","messageId":"x1","properties":{"q":"' or 1=1 --"}}$j$);
select user_id, event, properties->>'q' as q from cdp.events where message_id = 'x1';
select count(*) > 0 as events_table_still_there from cdp.events;

-- Unicode survives the round trip.
select status from cdp.ingest('{"type":"track","userId":"ü-名前-🎉","event":"Ünïcödé","messageId":"uni"}');
select user_id, event from cdp.events where message_id = 'uni';
reset cdp.test_clock;
