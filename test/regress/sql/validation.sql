-- Every rule of the Tracking API, and what breaking it does.
\i test/regress/sql/setup.sql

set cdp.test_clock = '2025-03-01T12:00:00Z';

-- Payload-level problems raise an error and store nothing.
-- Malformed JSON never gets past the jsonb cast.
select pg_temp.err($$select * from cdp.ingest('{"type": "track", ')$$);
select pg_temp.err($$select * from cdp.ingest('{bad json}')$$);
select pg_temp.err($$select * from cdp.ingest(null)$$);
select pg_temp.err($$select * from cdp.ingest('[1, 2]')$$);
select pg_temp.err($$select * from cdp.ingest('"track"')$$);
select pg_temp.err($$select * from cdp.ingest('{"batch": {"type": "track"}}')$$);
select pg_temp.err($$select * from cdp.ingest('{"batch": [], "context": "web"}')$$);
select pg_temp.err($$select * from cdp.ingest('{"batch": [], "sentAt": "yesterday"}')$$);
select pg_temp.err($$select * from cdp.ingest('{"batch": [], "writeKey": 42}')$$);
-- More than 2,500 messages.
select pg_temp.err($$select * from cdp.ingest(jsonb_build_object('batch',
  (select jsonb_agg(jsonb_build_object('type', 'track', 'userId', 'u', 'event', 'E')) from generate_series(1, 2501))))$$);
-- More than 500 KB.
select pg_temp.err($$select * from cdp.ingest(jsonb_build_object('batch',
  (select jsonb_agg(jsonb_build_object('type', 'track', 'userId', 'u', 'event', 'E',
     'properties', jsonb_build_object('blob', repeat('x', 30000)))) from generate_series(1, 20))))$$);
-- Nested too deep.
select pg_temp.err(format($$select * from cdp.ingest('{"type":"track","userId":"u","event":"E","properties":%s1%s}')$$,
  repeat('{"a":', 70), repeat('}', 70)));
select count(*) as stored from cdp.events;
select count(*) as quarantined from cdp.quarantine;

-- Message-level problems: the message is rejected with the field and the rule,
-- kept in quarantine, and the rest of the batch goes on.
select message_id, status, error from cdp.ingest('{"batch": [
  {"type":"track","userId":"ok","event":"Fine","messageId":"v0"},
  {"type":"launch","userId":"u","messageId":"v1"},
  {"userId":"u","event":"E","messageId":"v2"},
  {"type":"track","event":"E","messageId":"v3"},
  {"type":"track","userId":"   ","anonymousId":"","event":"E","messageId":"v4"},
  {"type":"track","userId":{"id":1},"event":"E","messageId":"v5"},
  {"type":"track","userId":"u","anonymousId":true,"event":"E","messageId":"v6"},
  {"type":"track","userId":"u","messageId":"v7"},
  {"type":"track","userId":"u","event":42,"messageId":"v8"},
  {"type":"track","userId":"u","event":"  ","messageId":"v9"},
  {"type":"alias","userId":"u","messageId":"v10"},
  {"type":"group","userId":"u","messageId":"v11"},
  {"type":"track","userId":"u","event":"E","properties":[1,2],"messageId":"v12"},
  {"type":"identify","userId":"u","traits":"vip","messageId":"v13"},
  {"type":"track","userId":"u","event":"E","context":42,"messageId":"v14"},
  {"type":"track","userId":"u","event":"E","integrations":[],"messageId":"v15"},
  {"type":"track","userId":"u","event":"E","timestamp":"yesterday","messageId":"v16"},
  {"type":"track","userId":"u","event":"E","timestamp":"2025-02-30T00:00:00Z","messageId":"v17"},
  {"type":"track","userId":"u","event":"E","sentAt":1700000000,"messageId":"v18"},
  {"type":"track","userId":"u","event":"E","originalTimestamp":"2025-13-01","messageId":"v19"},
  {"type":"page","userId":"u","name":7,"messageId":"v20"},
  {"type":"track","userId":"u","event":"E","messageId":["v21"]},
  "not an object",
  {"type":"TRACK","userId":"u","event":"E","messageId":"v23"}
]}');
select count(*) as quarantined, count(distinct field) as fields from cdp.quarantine;
select field, count(*) from cdp.quarantine group by 1 order by 1;
select message_id from cdp.events;

-- A message over 32 KB is rejected on its own; its neighbours are stored.
select message_id, status, error from cdp.ingest(jsonb_build_object('batch', jsonb_build_array(
  jsonb_build_object('type', 'track', 'userId', 'u', 'event', 'Big', 'messageId', 'big',
                     'properties', jsonb_build_object('blob', repeat('x', 33000))),
  jsonb_build_object('type', 'track', 'userId', 'u', 'event', 'Small', 'messageId', 'small'))));
select message_id, field, length(raw) > 33000 as raw_kept_whole from cdp.quarantine where message_id = 'big';
-- Exactly at the limit is fine (32,768 bytes of JSON text).
select status from cdp.ingest(jsonb_build_object('type', 'track', 'userId', 'u', 'event', 'Edge', 'messageId', 'edge',
  'properties', jsonb_build_object('blob', repeat('x', 32768 - length('{"type":"track","userId":"u","event":"Edge","messageId":"edge","properties":{"blob":""}}')))));
select status from cdp.ingest(jsonb_build_object('type', 'track', 'userId', 'u', 'event', 'Edge', 'messageId', 'edge2',
  'properties', jsonb_build_object('blob', repeat('x', 32769 - length('{"type":"track","userId":"u","event":"Edge","messageId":"edge2","properties":{"blob":""}}')))));
-- An over-long messageId is refused.
select status, error from cdp.ingest(jsonb_build_object('type', 'track', 'userId', 'u', 'event', 'E', 'messageId', repeat('m', 256)));
-- A null field is the same as a missing one.
select status from cdp.ingest('{"type":"track","userId":null,"anonymousId":"a","event":"E","properties":null,"timestamp":null,"messageId":"nulls"}');
reset cdp.test_clock;
