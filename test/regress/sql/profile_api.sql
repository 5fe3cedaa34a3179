-- The Profile API from SQL: read tokens, and cdp.lookup_profile, the same
-- answer GET /v1/profiles/<identifier> gives (test/e2e/profile_api.sh covers HTTP).
\i test/regress/sql/setup.sql
set cdp.test_clock = '2025-05-01T12:00:00Z';

------------------------------------------------------------------------------
-- 1. Read tokens
------------------------------------------------------------------------------
-- A token is shown once; only its SHA-256 and first characters are kept.
select cdp.create_access_token('web', array['profiles:read']) as token \gset
select left(:'token', 5) as prefix, length(:'token') as length;
select name, scopes, token_hint = left(:'token', 10) as hint_matches,
       token_hash = sha256(convert_to(:'token', 'UTF8')) as hash_matches, revoked_at is null as active
  from cdp.access_tokens;
-- Scopes are checked: unknown ones, none to read, or both PII modes are refused.
select pg_temp.err($$select cdp.create_access_token('x', array['profiles:write'])$$);
select pg_temp.err($$select cdp.create_access_token('x', array['pii:clear'])$$);
select pg_temp.err($$select cdp.create_access_token('x', array['profiles:read', 'pii:clear', 'pii:hashed'])$$);
select pg_temp.err($$select cdp.create_access_token('bad name', array['profiles:read'])$$);
-- Names are unique among active tokens; a revoked name can be used again.
select pg_temp.err($$select cdp.create_access_token('web', array['events:read'])$$);
select cdp.revoke_access_token('web');
select pg_temp.err($$select cdp.revoke_access_token('web')$$);
select cdp.create_access_token('web', array['events:read', 'profiles:read']) is not null as made_again;
select name, scopes, revoked_at is not null as revoked from cdp.access_tokens order by token_id;
-- The audit log records each change without the hash.
select action, details->'new'->>'name' as name, details->'new' ? 'token_hash' as has_hash
  from cdp.audit_log where target = 'access_tokens' order by id;

------------------------------------------------------------------------------
-- 2. Looking a person up
------------------------------------------------------------------------------
select cdp.identify(user_id => 'ada', traits => '{"email": "Ada@Example.com", "plan": "pro", "first_name": "Ada"}',
                    message_id => 'p1', "timestamp" => '2025-05-01T10:00:00Z') is not null as sent;
select cdp.track('Order Completed', user_id => 'ada', properties => '{"total": 30}', message_id => 'p2',
                 "timestamp" => '2025-05-01T10:05:00Z') is not null as sent;
select cdp.track('Order Completed', user_id => 'ada', properties => '{"total": 12}', message_id => 'p3',
                 "timestamp" => '2025-05-01T10:10:00Z') is not null as sent;
select cdp.create_segment('pro', '{"trait": "plan", "op": "=", "value": "pro"}') is not null as created;
select cdp.process_pending() as processed;
-- By default: traits, computed traits and the names of current segments.
select cdp.lookup_profile('user_id:ada') - 'profile_id' as profile;
-- Any identifier finds the person, normalised as ingestion does it.
select cdp.lookup_profile('email: ADA@example.com ')->'profile_id' = cdp.lookup_profile('user_id:ada')->'profile_id' as same_person;
select cdp.lookup_profile((cdp.profile_id('user_id', 'ada'))::text)->'traits'->>'plan' as plan_by_number;
-- Only some traits, and PII as the caller asks: left out, hashed or clear.
select cdp.lookup_profile('user_id:ada', array['traits'], fields => array['plan', 'email']) - 'profile_id' as two_fields;
select cdp.lookup_profile('user_id:ada', array['traits'], pii => 'omit')->'traits' as without_pii;
select cdp.lookup_profile('user_id:ada', array['traits'], pii => 'hashed')->'traits'->>'email' as hashed_email;
-- Memberships with their entry time, identities, consent.
select cdp.lookup_profile('user_id:ada', array['memberships', 'identities', 'consent'], pii => 'omit') - 'profile_id' as parts;
-- Recent events, newest first, a page at a time: next_cursor asks for the next page.
select jsonb_path_query_array(p->'events', '$[*].properties.total') as totals, p->'next_cursor' is not null as more
  from cdp.lookup_profile('user_id:ada', array['events'], "limit" => 2) p;
select jsonb_path_query_array(p->'events', '$[*].type') as page_two, p->'next_cursor' as more
  from cdp.lookup_profile('user_id:ada', array['events'], "limit" => 2,
                          cursor => (cdp.lookup_profile('user_id:ada', array['events'], "limit" => 2)->>'next_cursor')::bigint) p;

------------------------------------------------------------------------------
-- 3. Merges, erasure, nobody
------------------------------------------------------------------------------
-- A merge: the old identifiers and the old profile number find the survivor.
select cdp.identify(anonymous_id => 'anon-7', traits => '{"color": "red"}', message_id => 'p4',
                    "timestamp" => '2025-05-01T10:20:00Z') is not null as sent;
select cdp.process_pending() as processed;
select cdp.profile_id('anonymous_id', 'anon-7') as anon_profile \gset
select cdp.alias(user_id => 'ada', previous_id => 'anon-7', message_id => 'p5', "timestamp" => '2025-05-01T10:30:00Z') is not null as sent;
select cdp.process_pending() as processed;
select cdp.lookup_profile('anonymous_id:anon-7')->'traits' as merged_traits;
select cdp.lookup_profile(:'anon_profile')->'profile_id' = cdp.lookup_profile('user_id:ada')->'profile_id' as number_follows_merge;
-- Nobody: null. An erased person is nobody, never a stale copy.
select cdp.lookup_profile('user_id:nobody') is null as unknown;
select (cdp.erase('user_id', 'ada', 'test')->>'profiles')::int as erased;
select cdp.lookup_profile('email:ada@example.com') is null as erased_is_gone;

------------------------------------------------------------------------------
-- 4. Bad input names the field and the rule
------------------------------------------------------------------------------
select pg_temp.err($$select cdp.lookup_profile('ada')$$);
select pg_temp.err($$select cdp.lookup_profile('')$$);
select pg_temp.err($$select cdp.lookup_profile('shoe_size:42')$$);
select pg_temp.err($$select cdp.lookup_profile('user_id:ada', array['traits', 'secrets'])$$);
select pg_temp.err($$select cdp.lookup_profile('user_id:ada', "limit" => 1000)$$);
select pg_temp.err($$select cdp.lookup_profile('user_id:ada', pii => 'some')$$);
select pg_temp.err(format('select cdp.lookup_profile(%L)', 'user_id:' || repeat('x', 1100)));
