-- Destinations of built-in kinds and transformations: who may make them, see
-- their secrets, try them; and a destination's transformation runs with its
-- owner's rights, so making one requires that the owner may run it.
begin;
create extension if not exists pgtap;
create extension if not exists cdp;
select plan(15);

create role cdp_tap_admin nologin in role cdp_admin;
create role cdp_tap_analyst nologin in role cdp_analyst;
create role cdp_tap_ingest nologin in role cdp_ingest;
create function public.tap_reshape(e jsonb) returns jsonb language sql as $$ select e $$;
create function public.tap_private(e jsonb) returns jsonb language sql as $$ select e $$;
revoke execute on function public.tap_private(jsonb) from public;

set local role cdp_tap_admin;
select is(cdp.create_destination('tap_mixpanel', null, '{"kind": "mixpanel", "transform": "public.tap_reshape",
  "config": {"project_id": "1", "service_account_username": "sa", "service_account_secret": "tap-secret-1"}}') > 0, true,
  'an administrator makes a destination of a built-in kind');
select is((select url from cdp.destinations where name = 'tap_mixpanel'), 'https://api.mixpanel.com',
  'a NULL url takes the kind''s published address');
select is((select owner::text from cdp.destinations where name = 'tap_mixpanel'), 'cdp_tap_admin',
  'the role that made it owns it');
select throws_ok($$select cdp.create_destination('tap_private', null, '{"kind": "mixpanel", "transform": "public.tap_private",
  "config": {"project_id": "1", "service_account_username": "sa", "service_account_secret": "s"}}')$$, '22023',
  'options.transform: role cdp_tap_admin may not execute public.tap_private(jsonb) (it runs as that role)',
  'nor with a transformation its owner may not run');
select throws_ok($$update cdp.destinations set options = options || '{"transform": "public.tap_private"}'
  where name = 'tap_mixpanel'$$, '22023', null, 'however the row is written');
select is(cdp.test_destination('tap_mixpanel', '{"type": "track", "event": "E", "userId": "u", "messageId": "m",
  "timestamp": "2026-01-01T00:00:00Z"}')->>'outcome', 'send', 'and tries one message on it');
select throws_ok($$select cdp.test_destination('tap_nope', '{}')$$, '22023',
  'destination: no destination named "tap_nope"', 'trying an unknown destination names it');
select throws_ok($$select cdp.test_destination('tap_mixpanel', '[1, 2]')$$, '22023',
  'message: must be a JSON object (a message as cdp queues it)', 'a message that is not an object is refused');
select throws_ok($$select cdp.test_destination('tap_mixpanel', '{}', true)$$, '22023',
  'debug: only a ga4 destination has a validation server', 'debug only where there is a validation server');
select is(position('tap-secret-1' in cdp.test_destination('tap_mixpanel', '{"type": "track", "event": "E",
  "userId": "u", "messageId": "m", "timestamp": "2026-01-01T00:00:00Z"}')::text), 0, 'which shows no secret');
reset role;

select is((select count(*) from cdp.audit_log where details::text like '%tap-secret-1%')::int, 0,
  'the audit log holds no config value');
select is((select details->'new'->'options'->'config_keys' from cdp.audit_log
  where target = 'destinations' and details->'new'->>'name' = 'tap_mixpanel'),
  '["project_id", "service_account_secret", "service_account_username"]'::jsonb, 'only the config''s key names');

set local role cdp_tap_analyst;
select throws_ok($$select options from cdp.destinations$$, '42501', null, 'an analyst cannot read a kind''s secrets');
select throws_ok($$select cdp.test_destination('tap_mixpanel', '{}')$$, '42501', null, 'nor try a destination');
reset role;

set local role cdp_tap_ingest;
select throws_ok($$select cdp.create_destination('x', null, '{"kind": "segment", "config": {"write_key": "k"}}')$$,
  '42501', null, 'the ingest role makes no destination');
reset role;

select * from finish();
rollback;
