-- Tracking plans' privileges: administrators make, attach and drop plans;
-- analysts read plans and violations; the ingest role does neither, and its
-- messages are checked against the plan all the same.
begin;
create extension if not exists pgtap;
create extension if not exists cdp;
select plan(10);

create role cdp_tap_admin nologin in role cdp_admin;
create role cdp_tap_analyst nologin in role cdp_analyst;
create role cdp_tap_ingest nologin in role cdp_ingest;

set local role cdp_tap_admin;
select is(cdp.create_tracking_plan('tap', '{"events": {"Signed Up": {}}}'), 1, 'an administrator makes a plan');
select lives_ok($$select cdp.attach_tracking_plan('sql', 'tap', '{"unplanned_events": "block"}')$$, 'and attaches it');
reset role;

set local role cdp_tap_ingest;
select is((select status from cdp.ingest('{"type": "track", "userId": "u", "event": "Unplanned"}')), 'rejected',
  'the ingest role''s messages are checked against the plan');
select throws_ok($$select cdp.create_tracking_plan('x', '{}')$$, '42501', null, 'the ingest role makes no plan');
select throws_ok($$select cdp.detach_tracking_plan('sql')$$, '42501', null, 'nor detaches one to get past it');
select throws_ok($$select count(*) from cdp.violations$$, '42501', null, 'nor reads violations');
reset role;

set local role cdp_tap_analyst;
select is((select count(*) from cdp.violation_counts where type = 'Unplanned-Event')::int, 1,
  'an analyst reads the violation counts');
select is((select count(*) from cdp.tracking_plan_versions)::int, 1, 'and the plans');
select throws_ok($$select cdp.update_tracking_plan('tap', '{}')$$, '42501', null, 'but changes no plan');
select throws_ok($$insert into cdp.violations (received_at, source_id, message_type, plan_id, plan_version, type, path, rule, message, blocked)
  values (now(), 1, 'track', 1, 1, 'Unknown-Violation', '', '', '', false)$$, '42501', null, 'nor forges a violation');
reset role;

select * from finish();
rollback;
