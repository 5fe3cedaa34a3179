-- Partitions of cdp.events are created ahead, so no insert fails at midnight.
\i test/regress/sql/setup.sql

create function pg_temp.parts() returns setof text language sql as $$
  select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid
   where i.inhparent = 'cdp.events'::regclass and c.relname < 'events_2100' order by 1 $$;

-- A clock far from today: the first event of that day creates its partition
-- and a week ahead.
set cdp.test_clock = '2031-06-30T23:59:59Z';
select status from cdp.ingest('{"type":"track","userId":"u","event":"Late night","messageId":"n1"}');
select * from pg_temp.parts() where parts like 'events_2031%';
-- One microsecond after midnight the next partition is already there.
set cdp.test_clock = '2031-07-01T00:00:00.000001Z';
select status from cdp.ingest('{"type":"track","userId":"u","event":"Just after","messageId":"n2"}');
select message_id, tableoid::regclass from cdp.events where message_id in ('n1', 'n2') order by 1;

-- Creating partitions is idempotent and tells how far they reach.
select cdp.ensure_partitions('2031-07-01T10:00:00Z', 2);
select cdp.ensure_partitions('2031-07-01T10:00:00Z', 2);

-- Going back in time (a restored clock) creates the partition for that day too.
set cdp.test_clock = '2031-01-15T08:00:00Z';
select status from cdp.ingest('{"type":"track","userId":"u","event":"Back","messageId":"n3"}');
select tableoid::regclass from cdp.events where message_id = 'n3';

-- If the transaction that created a partition rolls back, the next one creates it again.
set cdp.test_clock = '2032-02-10T08:00:00Z';
begin;
select status from cdp.ingest('{"type":"track","userId":"u","event":"Rolled back","messageId":"n4"}');
rollback;
select status from cdp.ingest('{"type":"track","userId":"u","event":"Kept","messageId":"n4"}');
select event, tableoid::regclass from cdp.events where message_id = 'n4';

-- run_maintenance makes partitions ahead of the clock and reports what it did.
set cdp.test_clock = '2033-05-05T05:00:00Z';
select cdp.run_maintenance();
select count(*) from pg_temp.parts() where parts between 'events_20330505' and 'events_20330512';
reset cdp.test_clock;
