-- The Profile API's privileges: administrators make and revoke read tokens;
-- no other role reads a token hash or looks a profile up past its masks.
begin;
create extension if not exists pgtap;
create extension if not exists cdp;
select plan(12);

create role cdp_tap_admin nologin in role cdp_admin;
create role cdp_tap_analyst nologin in role cdp_analyst;
create role cdp_tap_ingest nologin in role cdp_ingest;

set local role cdp_tap_admin;
select ok(cdp.create_access_token('tap', array['profiles:read']) like 'cdpr_%', 'an administrator makes a read token');
select lives_ok($$select cdp.revoke_access_token('tap')$$, 'and revokes it');
select ok((select revoked_at is not null from cdp.access_tokens where name = 'tap'), 'and sees that it is revoked');
select ok(cdp.lookup_profile('user_id:nobody') is null, 'and looks profiles up from SQL');
reset role;

select ok(not has_table_privilege('cdp_tap_analyst', 'cdp.access_tokens', 'select'), 'an analyst cannot read token hashes');
select ok(not has_function_privilege('cdp_tap_analyst', 'cdp.create_access_token(text, text[])', 'execute'),
  'nor make tokens');
select ok(not has_function_privilege('cdp_tap_analyst', 'cdp.lookup_profile(text, text[], text[], int, bigint, text)', 'execute'),
  'nor read clear profiles through the lookup (the masked views are theirs)');
select ok(not has_function_privilege('cdp_tap_analyst',
  'cdp.profile_lookups(text[], text[], bigint[], int[], text[], int[])', 'execute'), 'nor through the grouped lookup');
select ok(not has_table_privilege('cdp_tap_ingest', 'cdp.access_tokens', 'select'), 'the ingest role cannot read token hashes');
select ok(not has_function_privilege('cdp_tap_ingest', 'cdp.create_access_token(text, text[])', 'execute'),
  'nor make tokens');

set local role cdp_tap_analyst;
select throws_ok($$select cdp.create_access_token('x', array['profiles:read'])$$, '42501', null,
  'an analyst calling create_access_token is refused');
reset role;
set local role cdp_tap_ingest;
select throws_ok($$select cdp.lookup_profile('user_id:x')$$, '42501', null, 'so is the ingest role looking someone up');
reset role;

select * from finish();
rollback;
