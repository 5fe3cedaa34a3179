-- Identity resolution: events become people.
\i test/regress/sql/setup.sql
create function pg_temp.person(t text, v text) returns table (type text, value text) language sql as $$
  select type, value from cdp.identities where profile_id = cdp.profile_id(t, v) order by 1, 2 $$;

-- 1. Anonymous visit -> form fill (email) -> app login (user_id) -> CRM record: one person.
set cdp.test_clock = '2025-03-01T10:00:00Z';
select cdp.page(name => 'Pricing', anonymous_id => 'anon-1', message_id => 'e1');
set cdp.test_clock = '2025-03-01T10:05:00Z';
select cdp.identify(anonymous_id => 'anon-1', traits => '{"email": "  Ada@Example.COM ", "plan": "free"}', message_id => 'e2');
set cdp.test_clock = '2025-03-02T09:00:00Z';
select cdp.identify(user_id => 'u-ada', anonymous_id => 'phone-app-7', traits => '{"email": "ada@example.com", "plan": "pro"}', message_id => 'e3');
-- The CRM's id arrives in properties; the DBA maps it as an identifier type.
insert into cdp.identifier_types (type, paths, max_per_profile, priority) values ('crm_id', '{properties.crm_id}', 1, 5);
select cdp.track('CRM Synced', anonymous_id => 'phone-app-7', properties => '{"crm_id": "C-99"}', message_id => 'e4');
select cdp.process_pending() as processed;
select * from pg_temp.person('crm_id', 'C-99');
select count(*) as profiles from cdp.profiles;
select traits, event_count, identifier_count from cdp.profiles;
-- Each trait remembers where it came from.
select trait_sources->'plan' as plan_source from cdp.profiles;
-- Any identifier finds the person, normalised the same way as events.
select cdp.profile_id('email', ' ADA@example.com') = cdp.profile_id('user_id', 'u-ada') as same_person;
select cdp.normalise_identifier('email', ' ADA@example.com'), cdp.normalise_identifier('phone', '(555) 010-7788');
select cdp.profile_id('email', 'nobody@example.com') as unknown;
-- A type that does not exist is an error naming it, not a silent NULL.
select cdp.profile_id('shoe_size', '42');
select cdp.normalise_identifier('Email', 'ada@example.com');

-- 2. Two people sharing a laptop stay two people: the second login does not merge.
select cdp.identify(user_id => 'u-bob', anonymous_id => 'laptop', message_id => 'l1');
select cdp.identify(user_id => 'u-eve', anonymous_id => 'laptop', message_id => 'l2');
select cdp.track('Bought', user_id => 'u-eve', message_id => 'l3');
select cdp.process_pending() as processed;
select cdp.profile_id('user_id', 'u-bob') <> cdp.profile_id('user_id', 'u-eve') as two_people;
select * from pg_temp.person('user_id', 'u-eve');
-- Eve's events stay with Eve; the refusal is recorded for review.
select e.message_id, e.profile_id = cdp.profile_id('user_id', 'u-eve') as eve
  from cdp.events_resolved e where e.message_id in ('l2', 'l3') order by 1;
select r.type, r.value, r.rule from cdp.identity_refusals r join cdp.events e on e.id = r.event_id where e.message_id = 'l2';

-- 3. Blocked values never merge strangers.
select cdp.identify(user_id => 'x-1', traits => '{"email": "test@test.com"}', message_id => 'b1');
select cdp.identify(user_id => 'x-2', traits => '{"email": "TEST@test.com"}', message_id => 'b2');
select cdp.track('Seen', user_id => 'x-3', anonymous_id => '00000000-0000-0000-0000-000000000000', message_id => 'b3');
select cdp.track('Seen', user_id => 'x-4', anonymous_id => '00000000-0000-0000-0000-000000000000', message_id => 'b4');
select cdp.track('Seen', user_id => 'x-5', anonymous_id => 'undefined', message_id => 'b5');
select cdp.track('Seen', user_id => 'x-6', anonymous_id => 'Undefined', message_id => 'b6');
select cdp.process_pending() as processed;
select count(distinct cdp.profile_id('user_id', u)) as strangers_stay_apart
  from unnest(array['x-1', 'x-2', 'x-3', 'x-4', 'x-5', 'x-6']) u;
select count(*) as blocked_identities from cdp.identities where value in ('test@test.com', 'undefined') or value ~ '^[0-]+$';
-- A DBA can block more; a pattern that is not a valid regular expression is refused.
update cdp.identifier_types set blocked_patterns = blocked_patterns || '{[unclosed}' where type = 'email';
update cdp.identifier_types set blocked_values = blocked_values || '{shared-kiosk}' where type = 'anonymous_id';
select cdp.track('Seen', user_id => 'k-1', anonymous_id => 'shared-kiosk', message_id => 'k1');
select cdp.track('Seen', user_id => 'k-2', anonymous_id => 'Shared-Kiosk', message_id => 'k2');
select cdp.process_pending() as processed;
select cdp.profile_id('user_id', 'k-1') <> cdp.profile_id('user_id', 'k-2') as kiosk_users_apart;

-- 4. Alias: each previousId joins the user's profile; early binding is never rewritten.
select cdp.page(anonymous_id => 'a-1', message_id => 'c1');
select cdp.page(anonymous_id => 'a-2', message_id => 'c2');
select cdp.identify(user_id => 'carol', message_id => 'c3');
select cdp.process_pending() as processed;
select cdp.alias(previous_id => 'a-1', user_id => 'carol', message_id => 'c4');
select cdp.alias(previous_id => 'a-2', user_id => 'carol', message_id => 'c5');
select cdp.process_pending() as processed;
select * from pg_temp.person('anonymous_id', 'a-2');
-- Each event keeps the profile it was bound to; cdp.events_resolved follows merges.
select e.message_id, e.bound_profile_id = e.profile_id as still_own_profile,
       e.profile_id = cdp.profile_id('user_id', 'carol') as carol
  from cdp.events_resolved e where e.message_id like 'c%' order by 1;
select count(*) as merges from cdp.profile_merges m
  where m.into_profile = cdp.profile_id('user_id', 'carol');
select cdp.canonical_profile(m.from_profile) = cdp.profile_id('user_id', 'carol') as one_lookup
  from cdp.profile_merges m where m.into_profile = cdp.profile_id('user_id', 'carol');

-- 5. Late events do not overwrite newer traits (last-write-wins by event time).
select cdp.identify(user_id => 'dan', traits => '{"plan": "enterprise"}', "timestamp" => '2025-03-02T12:00:00Z', message_id => 'd1');
select cdp.identify(user_id => 'dan', traits => '{"plan": "trial", "city": "Lyon"}', "timestamp" => '2025-01-01T00:00:00Z', message_id => 'd2');
select cdp.process_pending() as processed;
select traits from cdp.profiles where profile_id = cdp.profile_id('user_id', 'dan');
-- Strategies per trait: first-write-wins, max, mapped from properties.
insert into cdp.trait_rules (trait, strategy) values ('signup_source', 'first'), ('lifetime_value', 'max');
insert into cdp.trait_rules (trait, strategy, from_path) values ('plan_seen', 'last', 'properties.plan');
select cdp.identify(user_id => 'dan', traits => '{"signup_source": "ads", "lifetime_value": 120}', "timestamp" => '2025-03-03T00:00:00Z', message_id => 'd3');
select cdp.identify(user_id => 'dan', traits => '{"signup_source": "seo", "lifetime_value": 80}', "timestamp" => '2025-03-04T00:00:00Z', message_id => 'd4');
select cdp.track('Upgraded', user_id => 'dan', properties => '{"plan": "scale"}', "timestamp" => '2025-03-05T00:00:00Z', message_id => 'd5');
select cdp.process_pending() as processed;
select traits from cdp.profiles where profile_id = cdp.profile_id('user_id', 'dan');

-- 6. Accounts: group calls link people to accounts with the account's traits.
select cdp.group(group_id => 'acme', user_id => 'u-ada', traits => '{"name": "Acme", "employees": 40}', message_id => 'g1');
select cdp.process_pending() as processed;
select group_id, traits from cdp.accounts;
select cdp.profile('user_id', 'u-ada')->'accounts' as accounts;

-- 7. The whole person, by any identifier.
select jsonb_pretty(cdp.profile('email', 'ADA@example.com') - 'first_seen' - 'last_seen' - 'profile_id' - 'trait_sources'
  - 'identifiers' - 'merged_profiles') as profile;

-- 8. Rebuilding everything from the events table gives the same people and traits.
create temp view people as
  select i.type, i.value, p.traits,
         (select string_agg(o.type || ':' || o.value, ' ' order by o.type, o.value)
            from cdp.identities o where o.profile_id = i.profile_id) as same_person_as
    from cdp.identities i join cdp.profiles p using (profile_id);
create temp table incremental as select * from people;
set client_min_messages = warning;  -- (it reports the graph's size in a NOTICE)
select cdp.rebuild_identities() as rebuilt;
reset client_min_messages;
select count(*) as differences from ((table incremental except table people) union all (table people except table incremental)) d;

-- 9. Unmerge splits a bad merge apart and restores the before-state.
select cdp.identify(anonymous_id => 'kiosk-2', traits => '{"plan": "free"}', message_id => 'm1');
select cdp.process_pending() as processed;
create temp table before_merge as select * from people;
select cdp.track('Bridged by mistake', user_id => 'dan', anonymous_id => 'kiosk-2', message_id => 'm2');
select cdp.process_pending() as processed;
select merge_id as bad_merge from cdp.profile_merges m join cdp.events e on e.id = m.event_id where e.message_id = 'm2' \gset
select * from pg_temp.person('anonymous_id', 'kiosk-2');
select cdp.unmerge(:bad_merge) as restored \gset
select :restored = cdp.profile_id('anonymous_id', 'kiosk-2') as kiosk_has_its_profile_back,
       :restored <> cdp.profile_id('user_id', 'dan') as apart_from_dan;
select count(*) as differences from ((table before_merge except table people) union all (table people except table before_merge)) d;
select unmerged_at is not null as marked_undone from cdp.profile_merges where merge_id = :bad_merge;
-- Events bound to the split-off profile follow it again.
select e.message_id, e.profile_id = cdp.profile_id('anonymous_id', 'kiosk-2') as kiosk
  from cdp.events_resolved e where e.message_id in ('m1', 'm2') order by 1;
select cdp.unmerge(:bad_merge);
select cdp.unmerge(999999);

-- Processing is idempotent: nothing is left, nothing is done twice.
select cdp.process_pending() as processed;
select events_pending, processed_total, events_per_second > 0 as has_a_speed from cdp.processor_stats;
select count(*) = (select count(*) from cdp.events) as every_event_bound from cdp.event_profiles;
reset cdp.test_clock;
