-- Roles: what cdp_ingest, cdp_analyst, cdp_admin and everyone else may do, checked
-- as each role (SET ROLE), and what analysts see through the masked views.
begin;
create extension if not exists pgtap;
create extension if not exists cdp;
select plan(118);

-------------------------------------------------------------------------------
-- Data, as superuser.
-------------------------------------------------------------------------------
create role cdp_tap_nobody nologin;
create role cdp_tap_member nologin;
update cdp.processor_state set paused = true;

do $$
begin
  -- Everything an analyst must not read in clear (lower case): PII traits, ids.
  perform set_config('cdp_tap.pii', 'alice@example.com,415 555 0100,14155550100,alicia,liddell,'
    || '1 rabbit hole lane,203.0.113.7,user-alice,anon-alice-1,bob@example.org,user-bob,carol@example.net', true);
  perform cdp.identify(user_id => 'user-alice', anonymous_id => 'anon-alice-1',
    traits => '{"email": " Alice@Example.COM ", "phone": "+1 415 555 0100", "first_name": "Alicia",
                "last_name": "Liddell", "address": {"street": "1 Rabbit Hole Lane"}, "plan": "pro"}',
    context => '{"ip": "203.0.113.7", "library": {"name": "tap"}}');
  perform cdp.track('Order Completed', user_id => 'user-alice',
    properties => '{"email": "alice@example.com", "revenue": 30}',
    context => '{"traits": {"email": "alice@example.com"}}');
  -- Segment-spec payloads carry arrays of objects (products, recipients).
  perform cdp.track('Invite Sent', user_id => 'user-alice',
    properties => '{"recipients": [{"email": "carol@example.net"}]}');
  perform cdp.page('Pricing', user_id => 'user-alice', properties => '{"path": "/pricing"}');
  perform cdp.group('acme', user_id => 'user-alice', traits => '{"name": "Acme"}');
  perform cdp.identify(user_id => 'user-bob', traits => '{"email": "bob@example.org", "plan": "free"}');
  -- The processor only reads events of finished transactions; these are ours, so
  -- they are given the cursor's (finished) txid, then processed like any other.
  update cdp.events set txid = (select cursor_txid from cdp.processor_state) where txid = pg_current_xact_id();
  perform cdp.process_pending();
  perform set_config('cdp_tap.alice', cdp.profile_id('email', 'alice@example.com')::text, true);
  perform cdp.create_computed_trait('orders', '{"kind": "count", "event": "Order Completed"}');
  perform cdp.create_segment('pro_users', '{"trait": "plan", "op": "=", "value": "pro"}');
  perform set_config('cdp_tap.web_key', cdp.create_source('tap_web'), true);
end $$;

select isnt(current_setting('cdp_tap.alice'), '', 'fixture: alice has a profile');
select is((select count(*)::int from cdp.profiles), 2, 'fixture: alice and bob are profiled');

-------------------------------------------------------------------------------
-- cdp_ingest: writes events through the API, reads nothing.
-------------------------------------------------------------------------------
select is_empty(
  $$select c.relname from pg_class c where c.relnamespace = 'cdp'::regnamespace
     and (has_table_privilege('cdp_ingest', c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')
          or has_any_column_privilege('cdp_ingest', c.oid, 'SELECT,INSERT,UPDATE,REFERENCES'))
     and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')$$,
  'cdp_ingest has no privilege on any table: it writes through the ingestion functions only');
select set_eq(
  $$select p.proname::text from pg_proc p where p.pronamespace = 'cdp'::regnamespace
     and has_function_privilege('cdp_ingest', p.oid, 'execute')$$,
  array['ingest', 'ingest_one', 'track', 'identify', 'page', 'screen', 'group', 'alias', 'now'],
  'cdp_ingest executes the ingestion functions only');

set role cdp_ingest;
select lives_ok($$select cdp.track('Signed Up', user_id => 'u-ingest', properties => '{"plan": "pro"}')$$,
  'cdp_ingest can call cdp.track');
select lives_ok($$select cdp.identify(user_id => 'u-ingest', traits => '{"email": "u@example.com"}')$$,
  'cdp_ingest can call cdp.identify');
select lives_ok($$select cdp.page('Home', user_id => 'u-ingest')$$, 'cdp_ingest can call cdp.page');
select lives_ok($$select cdp.screen('Home', user_id => 'u-ingest')$$, 'cdp_ingest can call cdp.screen');
select lives_ok($$select cdp.group('acme', user_id => 'u-ingest')$$, 'cdp_ingest can call cdp.group');
select lives_ok($$select cdp.alias('anon-ingest', 'u-ingest')$$, 'cdp_ingest can call cdp.alias');
select results_eq(
  $$select status from cdp.ingest('{"batch": [
      {"type": "track", "userId": "u-ingest", "event": "A", "messageId": "ing-1"},
      {"type": "track", "userId": "u-ingest", "messageId": "ing-2"},
      {"type": "track", "userId": "u-ingest", "event": "A", "messageId": "ing-1"}]}')$$,
  array['accepted', 'rejected', 'duplicate'],
  'cdp_ingest can call cdp.ingest: accepted, quarantined and deduplicated');
select results_eq(
  $$select status from cdp.ingest('{"type": "track", "userId": "u-ingest", "event": "Keyed", "messageId": "ing-key"}',
                                  current_setting('cdp_tap.web_key'))$$,
  array['accepted'], 'cdp_ingest can ingest with a write key (checked by the security-definer cdp.source_for_key)');
select throws_ok($$select cdp.track('E', user_id => 'u', write_key => 'cdp_not_a_key')$$, '28000', null,
  'and an unknown write key is still refused');
reset role;
select is((select source_id from cdp.events where message_id = 'ing-key'),
  (select id from cdp.sources where name = 'tap_web'), 'the keyed event is attributed to its source');
select is((select count(*)::int from cdp.quarantine where message_id = 'ing-2'), 1, 'the rejected one is quarantined');

-- A new day's partition, created on cdp_ingest's behalf by cdp.ensure_partitions.
do $$ begin perform set_config('cdp.test_clock', to_char((now() + interval '40 days') at time zone 'UTC',
  'YYYY-MM-DD"T"HH24:MI:SS"Z"'), true); end $$;
set role cdp_ingest;
select lives_ok($$select cdp.track('Later', user_id => 'u-ingest', message_id => 'ing-later')$$,
  'cdp_ingest can write past the existing partitions');
reset role;
select isnt(to_regclass('cdp.events_' || to_char((now() + interval '40 days') at time zone 'UTC', 'YYYYMMDD')), null,
  'the partition it needed was created');
set local cdp.test_clock = '';

set role cdp_ingest;
select throws_ok($$select * from cdp.events$$, '42501', null, 'cdp_ingest cannot read cdp.events');
select throws_ok($$select * from cdp.profiles$$, '42501', null, 'nor cdp.profiles');
select throws_ok($$select * from cdp.sources$$, '42501', null, 'nor cdp.sources (write key hashes)');
select throws_ok($$select * from cdp.destinations$$, '42501', null, 'nor cdp.destinations (secrets)');
select throws_ok($$select * from cdp.deletion_ledger$$, '42501', null, 'nor cdp.deletion_ledger');
select throws_ok($$select * from cdp.audit_log$$, '42501', null, 'nor cdp.audit_log');
select throws_ok($$select * from cdp.quarantine$$, '42501', null, 'nor cdp.quarantine (raw messages)');
select throws_ok($$select received_at from cdp.message_ids$$, '42501', null, 'nor message_ids.received_at');
select throws_ok($$select * from cdp.analyst_profiles$$, '42501', null, 'nor the analyst views');
select throws_ok($$select cdp.erase('email', 'alice@example.com', 'x')$$, '42501', null, 'cdp_ingest cannot call cdp.erase');
select throws_ok($$select cdp.export_subject('email', 'alice@example.com')$$, '42501', null,
  'nor cdp.export_subject');
select throws_ok($$select cdp.create_segment('s', '{"trait": "plan", "op": "=", "value": "pro"}')$$, '42501', null,
  'nor cdp.create_segment');
select throws_ok($$select cdp.create_destination('d', 'https://hooks.example.com/x')$$, '42501', null,
  'nor cdp.create_destination');
select throws_ok($$select cdp.create_source('s')$$, '42501', null, 'nor cdp.create_source');
select throws_ok($$select cdp.process_pending()$$, '42501', null, 'nor cdp.process_pending');
select throws_ok($$select cdp.grant_role('cdp_admin', 'cdp_ingest')$$, '42501', null, 'nor cdp.grant_role');
select throws_ok($$update cdp.events set event = 'Forged'$$, '42501', null, 'cdp_ingest cannot update events');
select throws_ok($$delete from cdp.events$$, '42501', null, 'nor delete them');
select throws_ok($$insert into cdp.events (received_at, source_id, message_id, type, "timestamp")
                   values (now(), 1, 'x', 'track', now()) returning user_id$$, '42501', null,
  'nor read them back through RETURNING');
select throws_ok($$set cdp.test_clock = '2020-01-01T00:00:00Z'$$, '42501', null,
  'nor move cdp''s clock (forge receivedAt)');
reset role;

-------------------------------------------------------------------------------
-- cdp_analyst: masked views, segments and tracking plans only.
-------------------------------------------------------------------------------
select set_eq(
  $$select c.relname::text from pg_class c where c.relnamespace = 'cdp'::regnamespace
     and (has_table_privilege('cdp_analyst', c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')
          or has_any_column_privilege('cdp_analyst', c.oid, 'SELECT,INSERT,UPDATE,REFERENCES'))$$,
  array['analyst_profiles', 'analyst_identities', 'analyst_events', 'segments', 'segment_sizes',
        'segment_membership', 'computed_traits', 'tracking_plans', 'tracking_plan_versions', 'source_tracking_plans',
        'violations', 'violation_counts'],
  'cdp_analyst has privileges on the analyst views, segments, computed traits and tracking plans only (violations hold no values)');
select is_empty(
  $$select c.relname from pg_class c where c.relnamespace = 'cdp'::regnamespace
     and has_table_privilege('cdp_analyst', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')$$,
  'and reads them only');
select set_eq(
  $$select p.proname::text from pg_proc p where p.pronamespace = 'cdp'::regnamespace
     and has_function_privilege('cdp_analyst', p.oid, 'execute')$$,
  array['mask', 'pii_view', 'pii_traits', 'segment_members', 'now'],
  'cdp_analyst executes cdp.mask (and the walk behind it, cdp.pii_view), cdp.pii_traits, cdp.segment_members and cdp.now only');

set role cdp_analyst;
select is((select count(*)::int from cdp.analyst_profiles), 2, 'cdp_analyst reads cdp.analyst_profiles');
select is((select count(*)::int from cdp.analyst_identities), 6, 'cdp_analyst reads cdp.analyst_identities');
select is((select count(*)::int from cdp.analyst_events), 6, 'cdp_analyst reads cdp.analyst_events');
select is((select count(*)::int from cdp.segments), 1, 'cdp_analyst reads cdp.segments');
select results_eq($$select name, members from cdp.segment_sizes$$, $$values ('pro_users'::text, 1::bigint)$$,
  'cdp_analyst reads cdp.segment_sizes');
select results_eq($$select profile_id from cdp.segment_membership where exited_at is null$$,
  array[current_setting('cdp_tap.alice')::bigint], 'cdp_analyst reads cdp.segment_membership');
select results_eq($$select * from cdp.segment_members('pro_users')$$,
  array[current_setting('cdp_tap.alice')::bigint], 'cdp_analyst calls cdp.segment_members');
select results_eq($$select name from cdp.computed_traits$$, array['orders'], 'cdp_analyst reads cdp.computed_traits');

-- Masking in the views.
select matches((select traits->>'email' from cdp.analyst_profiles where profile_id = current_setting('cdp_tap.alice')::bigint),
  '^sha256:[0-9a-f]{64}$', 'analyst_profiles shows the email masked');
select is((select traits->>'email' from cdp.analyst_profiles where profile_id = current_setting('cdp_tap.alice')::bigint),
  'sha256:' || encode(sha256(convert_to('alice@example.com', 'UTF8')), 'hex'),
  'as the SHA-256 of its trimmed, lower-cased text');
select is_empty(
  $$select p.profile_id, t.key, t.value from cdp.analyst_profiles p, jsonb_each(p.traits) t
     where t.key = any(cdp.pii_traits()) and t.value::text !~ '^"sha256:[0-9a-f]{64}"$'$$,
  'every PII trait of every profile is masked (phone, names, address as an object)');
select is((select traits->>'plan' from cdp.analyst_profiles where profile_id = current_setting('cdp_tap.alice')::bigint),
  'pro', 'other traits show as they are');
select is((select computed->>'orders' from cdp.analyst_profiles where profile_id = current_setting('cdp_tap.alice')::bigint),
  '1', 'and computed traits too');
select columns_are('cdp', 'analyst_identities', array['profile_id', 'type', 'value_hash', 'first_seen'],
  'analyst_identities has no value column');
select is((select value_hash from cdp.analyst_identities where type = 'email'
            and profile_id = current_setting('cdp_tap.alice')::bigint),
  encode(sha256(convert_to('alice@example.com', 'UTF8')), 'hex'), 'identifiers show only value_hash');
select is_empty($$select * from cdp.analyst_identities where value_hash !~ '^[0-9a-f]{64}$'$$,
  'every value_hash is a SHA-256');
select is((select user_id_hash from cdp.analyst_events where event = 'Order Completed'),
  encode(sha256(convert_to('user-alice', 'UTF8')), 'hex'), 'analyst_events shows userId hashed');
select matches((select traits->>'email' from cdp.analyst_events where type = 'identify' and traits->>'plan' = 'pro'),
  '^sha256:[0-9a-f]{64}$', 'analyst_events masks traits');
select matches((select properties->>'email' from cdp.analyst_events where event = 'Order Completed'),
  '^sha256:[0-9a-f]{64}$', 'and properties');
select matches((select context #>> '{traits,email}' from cdp.analyst_events where event = 'Order Completed'),
  '^sha256:[0-9a-f]{64}$', 'and nested context objects');
select matches((select context->>'ip' from cdp.analyst_events where type = 'identify' and traits->>'plan' = 'pro'),
  '^sha256:[0-9a-f]{64}$', 'and the ip');
select matches((select properties #>> '{recipients,0,email}' from cdp.analyst_events where event = 'Invite Sent'),
  '^sha256:[0-9a-f]{64}$', 'and objects inside arrays');

-- No raw PII anywhere in any row.
select is_empty($$select v::text from cdp.analyst_profiles v, unnest(string_to_array(current_setting('cdp_tap.pii'), ',')) s
                   where strpos(lower(v::text), s) > 0$$, 'no raw PII in any row of cdp.analyst_profiles');
select is_empty($$select v::text from cdp.analyst_identities v, unnest(string_to_array(current_setting('cdp_tap.pii'), ',')) s
                   where strpos(lower(v::text), s) > 0$$, 'no raw PII in any row of cdp.analyst_identities');
select is_empty($$select v::text from cdp.analyst_events v, unnest(string_to_array(current_setting('cdp_tap.pii'), ',')) s
                   where strpos(lower(v::text), s) > 0$$, 'no raw PII in any row of cdp.analyst_events');
select is_empty($$select x from (select v::text from cdp.segments v union all select v::text from cdp.segment_sizes v
                   union all select v::text from cdp.segment_membership v union all select v::text from cdp.computed_traits v) r(x),
                   unnest(string_to_array(current_setting('cdp_tap.pii'), ',')) s where strpos(lower(x), s) > 0$$,
  'nor in the segment and computed trait tables');

-- Raw tables and privileged functions.
select throws_ok($$select * from cdp.profiles$$, '42501', null, 'cdp_analyst cannot read cdp.profiles');
select throws_ok($$select * from cdp.identities$$, '42501', null, 'nor cdp.identities');
select throws_ok($$select * from cdp.events$$, '42501', null, 'nor cdp.events');
select throws_ok($$select * from cdp.events_resolved$$, '42501', null, 'nor cdp.events_resolved');
select throws_ok($$select * from cdp.sources$$, '42501', null, 'nor cdp.sources');
select throws_ok($$select * from cdp.destinations$$, '42501', null, 'nor cdp.destinations');
select throws_ok($$select * from cdp.deletion_ledger$$, '42501', null, 'nor cdp.deletion_ledger');
select throws_ok($$select * from cdp.audit_log$$, '42501', null, 'nor cdp.audit_log');
select throws_ok($$select * from cdp.consent$$, '42501', null, 'nor cdp.consent');
select throws_ok($$select * from cdp.ingest('{"type": "track", "userId": "u", "event": "E"}')$$, '42501', null,
  'cdp_analyst cannot call cdp.ingest');
select throws_ok($$select cdp.track('E', user_id => 'u')$$, '42501', null, 'nor cdp.track');
select throws_ok($$select cdp.erase('email', 'alice@example.com', 'x')$$, '42501', null, 'nor cdp.erase');
select throws_ok($$select cdp.export_subject('email', 'alice@example.com')$$, '42501', null, 'nor cdp.export_subject');
select throws_ok($$select cdp.profile('email', 'alice@example.com')$$, '42501', null, 'nor cdp.profile (raw traits)');
select throws_ok($$select cdp.create_segment('s', '{"trait": "plan", "op": "=", "value": "pro"}')$$, '42501', null,
  'nor cdp.create_segment');
select throws_ok($$insert into cdp.segments (name, rule) values ('s', '{"trait": "plan", "op": "=", "value": "pro"}')$$,
  '42501', null, 'nor insert into cdp.segments');
select throws_ok($$select cdp.grant_role('cdp_admin', 'cdp_analyst')$$, '42501', null, 'nor cdp.grant_role');
select throws_ok($$set cdp.pii_traits = ''$$, '42501', null, 'nor unmask by setting cdp.pii_traits');
select throws_ok($$select set_config('cdp.pii_traits', 'plan', false)$$, '42501', null, 'nor through set_config');
reset role;

-------------------------------------------------------------------------------
-- cdp.pii_traits decides what is masked (superusers set it).
-------------------------------------------------------------------------------
select is(cdp.pii_traits(), array['email', 'phone', 'first_name', 'last_name', 'address', 'ip'],
  'cdp.pii_traits defaults to email, phone, first_name, last_name, address, ip');
set local cdp.pii_traits = 'email,phone,first_name,last_name,address,ip,plan';
set role cdp_analyst;
select is((select traits->>'plan' from cdp.analyst_profiles where profile_id = current_setting('cdp_tap.alice')::bigint),
  'sha256:' || encode(sha256(convert_to('pro', 'UTF8')), 'hex'), 'adding plan to cdp.pii_traits masks it in profiles');
select matches((select traits->>'plan' from cdp.analyst_events where type = 'identify' and user_id_hash =
                 encode(sha256(convert_to('user-alice', 'UTF8')), 'hex')),
  '^sha256:[0-9a-f]{64}$', 'and in events');
reset role;
set local cdp.pii_traits = 'plan';
set role cdp_analyst;
select is((select traits->>'email' from cdp.analyst_profiles where profile_id = current_setting('cdp_tap.alice')::bigint),
  ' Alice@Example.COM ', 'a trait left out of cdp.pii_traits shows as it is');
reset role;
set local cdp.pii_traits to default;

-------------------------------------------------------------------------------
-- cdp_admin: everything.
-------------------------------------------------------------------------------
select is_empty(
  $$select c.relname from pg_class c where c.relnamespace = 'cdp'::regnamespace and not c.relispartition
     and c.relkind in ('r', 'p', 'v', 'm') and not has_table_privilege('cdp_admin', c.oid, 'select')$$,
  'cdp_admin may read every table and view');
select is_empty(
  $$select c.relname from pg_class c where c.relnamespace = 'cdp'::regnamespace and not c.relispartition
     and c.relkind in ('r', 'p') and c.relname not in ('audit_log', 'deletion_ledger', 'events', 'message_ids')
     and not (has_table_privilege('cdp_admin', c.oid, 'insert')
       and has_table_privilege('cdp_admin', c.oid, 'update') and has_table_privilege('cdp_admin', c.oid, 'delete'))$$,
  'and write every table but the two append-only ones and the two only ingestion writes');
select is(
  (select string_agg(c.relname || ' ' || has_table_privilege('cdp_admin', c.oid, 'insert') || ' '
            || has_table_privilege('cdp_admin', c.oid, 'update') || ' ' || has_table_privilege('cdp_admin', c.oid, 'delete')
            || ' ' || has_table_privilege('cdp_admin', c.oid, 'truncate'), '; ' order by c.relname)
     from pg_class c where c.oid in ('cdp.audit_log'::regclass, 'cdp.deletion_ledger'::regclass)),
  'audit_log true false false false; deletion_ledger true false false false',
  'the audit log and the deletion ledger are append-only for cdp_admin');

set role cdp_admin;
select lives_ok($q$do $do$
  declare r regclass;
  begin
    for r in select c.oid from pg_class c where c.relnamespace = 'cdp'::regnamespace and not c.relispartition
               and c.relkind in ('r', 'p', 'v', 'm') loop
      execute format('select count(*) from %s', r);
    end loop;
  end $do$$q$, 'cdp_admin selects from every table and view');
select is((select count(*)::int from cdp.profiles), 2, 'cdp_admin reads raw profiles');
select is((select count(*)::int from cdp.sources where name = 'tap_web' and write_key_hash is not null), 1,
  'and sources');
select is(cdp.create_segment('admin_pro', '{"trait": "plan", "op": "=", "value": "pro"}'), 1::bigint,
  'cdp_admin can call cdp.create_segment');
select lives_ok($$select cdp.create_destination('tap_hook', 'https://hooks.example.com/cdp',
                  '{"secret": "0123456789abcdef0123"}')$$, 'cdp_admin can call cdp.create_destination');
select ok(cdp.export_subject('email', 'alice@example.com')->'identities'
          @> '[{"type": "email", "value": "alice@example.com"}]', 'cdp_admin can call cdp.export_subject');
select is((cdp.erase('email', 'bob@example.org', 'tap ticket 42')->>'profiles')::int, 1,
  'cdp_admin can call cdp.erase');
select is(cdp.profile_id('email', 'bob@example.org'), null, 'and the person is gone');
select results_eq($$select action from cdp.audit_log where action in ('export', 'erase') order by id$$,
  array['export', 'erase'], 'cdp_admin reads the audit log of both');
select is((select count(*)::int from cdp.deletion_ledger where reason = 'tap ticket 42'), 1, 'and the deletion ledger');
reset role;

-------------------------------------------------------------------------------
-- PUBLIC: a role with no grant can do nothing.
-------------------------------------------------------------------------------
select is_empty(
  $$select c.relname from pg_class c where c.relnamespace = 'cdp'::regnamespace
     and (has_table_privilege('cdp_tap_nobody', c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')
          or has_any_column_privilege('cdp_tap_nobody', c.oid, 'SELECT,INSERT,UPDATE,REFERENCES'))$$,
  'a role with no grant has no privilege on any cdp table, view or sequence');
select is_empty(
  $$select p.oid::regprocedure from pg_proc p where p.pronamespace = 'cdp'::regnamespace
     and has_function_privilege('cdp_tap_nobody', p.oid, 'execute')$$,
  'nor may it execute any cdp function');
set role cdp_tap_nobody;
select throws_ok($$select cdp.track('E', user_id => 'u')$$, '42501', null, 'PUBLIC cannot call cdp.track');
select throws_ok($$select cdp.mask('{"email": "a@b.c"}')$$, '42501', null, 'nor cdp.mask');
select throws_ok($$select * from cdp.analyst_profiles$$, '42501', null, 'nor read the analyst views');
select throws_ok($$select * from cdp.segments$$, '42501', null, 'nor the segments');
select throws_ok($$select * from cdp.events$$, '42501', null, 'nor the events');
reset role;

-------------------------------------------------------------------------------
-- cdp.grant_role: audited, cdp roles only.
-------------------------------------------------------------------------------
select lives_ok($$select cdp.grant_role('cdp_analyst', 'cdp_tap_member')$$, 'cdp.grant_role grants a cdp role');
select ok(pg_has_role('cdp_tap_member', 'cdp_analyst', 'member'), 'the member has it');
select results_eq(
  $$select action, target, details->>'role' from cdp.audit_log where action = 'grant_role'$$,
  $$values ('grant_role'::text, 'cdp_tap_member'::text, 'cdp_analyst'::text)$$,
  'and the grant is in cdp.audit_log');
set role cdp_tap_member;
select lives_ok($$select * from cdp.analyst_profiles$$, 'the member reads the analyst views');
select throws_ok($$select * from cdp.profiles$$, '42501', null, 'and not the raw tables');
reset role;
select throws_ok($$select cdp.grant_role('pg_read_all_data', 'cdp_tap_member')$$, '22023',
  'role: must be one of cdp_admin, cdp_ingest, cdp_analyst', 'cdp.grant_role refuses a role that is not a cdp role');
select throws_ok($$select cdp.grant_role('postgres', 'cdp_tap_member')$$, '22023', null, 'including a superuser');
select ok(not pg_has_role('cdp_tap_member', 'pg_read_all_data', 'member'), 'nothing was granted');
select is((select count(*)::int from cdp.audit_log where action = 'grant_role'), 1, 'nor audited');

select * from finish();
rollback;
