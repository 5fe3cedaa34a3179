-- Privileges: nothing in cdp is open to a role that was not granted it.
begin;
create extension if not exists pgtap;
create extension if not exists cdp;
select plan(6);

create role cdp_tap_stranger nologin;
select ok(not has_schema_privilege('cdp_tap_stranger', 'cdp', 'usage'), 'a stranger cannot use schema cdp');
select ok(not has_table_privilege('cdp_tap_stranger', 'cdp.events', 'select'), 'nor read events');
select ok(not has_table_privilege('cdp_tap_stranger', 'cdp.sources', 'select'), 'nor read write-key hashes');
select ok(not has_table_privilege('cdp_tap_stranger', 'cdp.quarantine', 'select'), 'nor read the quarantine');

set local role cdp_tap_stranger;
select throws_ok($$select * from cdp.ingest('{"type":"track","userId":"u","event":"E"}')$$, '42501',
  null, 'nor ingest');
select throws_ok($$select cdp.create_source('x')$$, '42501', null, 'nor create sources');
reset role;

select * from finish();
rollback;
