-- Deduplication: a repeated messageId from the same source is stored once.
\i test/regress/sql/setup.sql

set cdp.test_clock = '2025-03-01T12:00:00Z';
select cdp.create_source('app') as app_key \gset

select status from cdp.ingest('{"type":"track","userId":"u1","event":"Paid","messageId":"m-1"}');
-- The same message again, retried by a client: reported as duplicate.
select status from cdp.ingest('{"type":"track","userId":"u1","event":"Paid","messageId":"m-1"}');
-- Same messageId, different content and timestamp: still the same message.
select status from cdp.ingest('{"type":"track","userId":"u1","event":"Paid again","messageId":"m-1","timestamp":"2020-01-01T00:00:00Z"}');
-- Same messageId from another source is another message.
select status from cdp.ingest('{"type":"track","userId":"u1","event":"Paid","messageId":"m-1"}', :'app_key');
-- Within one batch, the first occurrence wins.
select message_id, status from cdp.ingest('{"batch":[
  {"type":"track","userId":"u1","event":"First","messageId":"m-2"},
  {"type":"track","userId":"u1","event":"Second","messageId":"m-2"},
  {"type":"track","userId":"u1","event":"Other","messageId":"m-3"}]}');
select event from cdp.events where message_id = 'm-2';

-- A day later the event lands in another partition; the duplicate is still caught.
set cdp.test_clock = '2025-03-02T12:00:00Z';
select status from cdp.ingest('{"type":"track","userId":"u1","event":"Paid","messageId":"m-1"}');
select s.name as source, message_id, count(*), count(distinct e.tableoid) as partitions
  from cdp.events e join cdp.sources s on s.id = e.source_id group by 1, 2 order by 1, 2;

-- A rejected message does not claim its messageId: fixed and resent, it is accepted.
select status from cdp.ingest('{"type":"track","userId":"u1","messageId":"m-4"}');
select status from cdp.ingest('{"type":"track","userId":"u1","event":"Fixed","messageId":"m-4"}');

-- The window: ids are remembered for cdp.dedup_window_hours (at least 24).
show cdp.dedup_window_hours;
-- Maintenance forgets ids older than the window (7 days by default); only then
-- may an id come back.
set cdp.test_clock = '2025-03-20T12:00:00Z';
select (cdp.run_maintenance())->>'message_ids_trimmed' as trimmed;
select status from cdp.ingest('{"type":"track","userId":"u1","event":"Paid","messageId":"m-1"}');
reset cdp.test_clock;
