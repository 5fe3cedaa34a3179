-- Privacy: consent, erasure, subject access, retention, the audit log and what analysts see.
\i test/regress/sql/setup.sql
-- A person's latest consent, found by their user id.
create function pg_temp.consent(uid text) returns table (preferences jsonb, updated_at timestamptz, source text)
language sql as $$
  select c.preferences, c.updated_at, c.source from cdp.consent c
   where c.profile_id = cdp.canonical_profile(cdp.profile_id('user_id', uid)) $$;
-- Every consent statement of a person, oldest first (recorded_at is the real clock: left out).
create function pg_temp.consent_history(uid text) returns table (preferences jsonb, source text, message_id text, expressed_at timestamptz)
language sql as $$
  select h.preferences, h.source, e.message_id, h.expressed_at from cdp.consent_history h
    left join cdp.events e on e.id = h.event_id
   where h.profile_id in (select m.profile_id from cdp.profile_map m
                           where m.canonical_id = cdp.canonical_profile(cdp.profile_id('user_id', uid)))
   order by h.expressed_at, h.id $$;

------------------------------------------------------------------------------
-- 1. Consent
------------------------------------------------------------------------------
-- Consent arrives on events, as Segment's consent management writes it:
-- context.consent.categoryPreferences. It becomes the profile's consent.
set cdp.test_clock = '2025-03-01T12:00:00Z';
select cdp.identify(user_id => 'cat', traits => '{"plan": "free"}', message_id => 'c1', "timestamp" => '2025-03-01T10:00:00Z',
  context => '{"consent": {"categoryPreferences": {"analytics": true, "marketing": true}}}') is not null as sent;
select cdp.process_pending() as processed;
select * from pg_temp.consent('cat');
-- A later statement replaces it; within a batch too, the latest by event time wins,
-- whatever order the events arrive in.
select cdp.track('Unsubscribed', user_id => 'cat', message_id => 'c3', "timestamp" => '2025-03-01T11:00:00Z',
  context => '{"consent": {"categoryPreferences": {"analytics": true, "marketing": false}}}') is not null as sent;
select cdp.track('Banner Seen', user_id => 'cat', message_id => 'c2', "timestamp" => '2025-03-01T10:30:00Z',
  context => '{"consent": {"categoryPreferences": {"analytics": false, "marketing": false}}}') is not null as sent;
select cdp.process_pending() as processed;
select * from pg_temp.consent('cat');
-- An older statement that arrives late (a phone offline for a day) is history,
-- not the current consent.
select cdp.track('Offline Banner', user_id => 'cat', message_id => 'c0', "timestamp" => '2025-03-01T09:00:00Z',
  context => '{"consent": {"categoryPreferences": {"marketing": true}}}') is not null as sent;
select cdp.process_pending() as processed;
select * from pg_temp.consent('cat');
-- The history keeps every statement.
select * from pg_temp.consent_history('cat');
-- An event without categoryPreferences (or with something that is not an object) states nothing.
select cdp.track('Clicked', user_id => 'cat', message_id => 'c4', "timestamp" => '2025-03-01T11:30:00Z',
  context => '{"consent": {"categoryPreferences": "all"}}') is not null as sent;
select cdp.track('Clicked', user_id => 'cat', message_id => 'c5', "timestamp" => '2025-03-01T11:40:00Z') is not null as sent;
select cdp.process_pending() as processed;
select count(*) as statements from pg_temp.consent_history('cat');

-- Consent captured elsewhere (a CRM, a support call) is set through any identifier
-- of the person; it is the latest statement, dated cdp.now(), and audited.
select cdp.set_consent('user_id', 'cat', '{"marketing": true, "analytics": true}') = cdp.profile_id('user_id', 'cat') as set_for_cat;
select * from pg_temp.consent('cat');
select * from pg_temp.consent_history('cat') where source = 'api';
select action, target = 'user_id:' || cdp.identifier_hash('user_id', 'cat') as target_is_hash, details->'preferences' as preferences
  from cdp.audit_log where action = 'set_consent';
-- An unknown person, or preferences that are not category -> true/false, are refused.
select pg_temp.err($$select cdp.set_consent('user_id', 'nobody', '{"marketing": true}')$$);
select pg_temp.err($$select cdp.set_consent('email', '', '{"marketing": true}')$$);
select pg_temp.err($$select cdp.set_consent('user_id', 'cat', '{"marketing": "yes"}')$$);
select pg_temp.err($$select cdp.set_consent('user_id', 'cat', '["marketing"]')$$);
select pg_temp.err($$select cdp.set_consent('user_id', 'cat', null)$$);
select pg_temp.err($$select cdp.set_consent('shoe_size', '42', '{"marketing": true}')$$);
select preferences from pg_temp.consent('cat');

-- Two anonymous visitors with different consent turn out to be one person:
-- the merged profile keeps the latest statement, from whichever side it came.
select cdp.page(anonymous_id => 'laptop-1', message_id => 'm1', "timestamp" => '2025-03-01T08:00:00Z',
  context => '{"consent": {"categoryPreferences": {"marketing": true}}}') is not null as sent;
select cdp.page(anonymous_id => 'phone-1', message_id => 'm2', "timestamp" => '2025-03-01T09:00:00Z',
  context => '{"consent": {"categoryPreferences": {"marketing": false}}}') is not null as sent;
select cdp.page(anonymous_id => 'laptop-2', message_id => 'm3', "timestamp" => '2025-03-01T09:00:00Z',
  context => '{"consent": {"categoryPreferences": {"marketing": false}}}') is not null as sent;
select cdp.page(anonymous_id => 'phone-2', message_id => 'm4', "timestamp" => '2025-03-01T08:00:00Z',
  context => '{"consent": {"categoryPreferences": {"marketing": true}}}') is not null as sent;
select cdp.process_pending() as processed;
select cdp.identify(user_id => 'max', anonymous_id => 'laptop-1', message_id => 'm5', "timestamp" => '2025-03-01T10:00:00Z') is not null as sent;
select cdp.identify(user_id => 'max', anonymous_id => 'phone-1', message_id => 'm6', "timestamp" => '2025-03-01T10:01:00Z') is not null as sent;
select cdp.identify(user_id => 'mia', anonymous_id => 'laptop-2', message_id => 'm7', "timestamp" => '2025-03-01T10:00:00Z') is not null as sent;
select cdp.identify(user_id => 'mia', anonymous_id => 'phone-2', message_id => 'm8', "timestamp" => '2025-03-01T10:01:00Z') is not null as sent;
select cdp.process_pending() as processed;
-- Each phone's profile was merged into the laptop's: max's latest statement
-- came from the side merged away, mia's from the survivor.
select e.message_id, (select string_agg(i.value, ',' order by i.value) from cdp.identities i where i.origin_profile = m.from_profile) as merged_away,
       (select string_agg(i.value, ',' order by i.value) from cdp.identities i where i.origin_profile = m.into_profile) as into
  from cdp.profile_merges m join cdp.events e on e.id = m.event_id where e.message_id in ('m6', 'm8') order by 1;
select u as person, (select count(*) from cdp.profile_map m where m.canonical_id = cdp.profile_id('user_id', u)) as profiles,
       c.preferences, c.updated_at
  from unnest(array['max', 'mia']) u, pg_temp.consent(u) c order by 1;
-- One row per person (cat, max, mia): the merged-away profiles' rows are gone.
select count(*) as consent_rows from cdp.consent;
-- Both statements stay in the person's history.
select * from pg_temp.consent_history('max');

-- Three more people: "yes" granted marketing, "no" refused it, "unasked" was
-- never asked.
select cdp.identify(user_id => 'yes', message_id => 'd1', "timestamp" => '2025-03-01T10:00:00Z',
  context => '{"consent": {"categoryPreferences": {"marketing": true}}}') is not null as sent;
select cdp.identify(user_id => 'no', message_id => 'd2', "timestamp" => '2025-03-01T10:00:00Z',
  context => '{"consent": {"categoryPreferences": {"marketing": false, "analytics": true}}}') is not null as sent;
select cdp.identify(user_id => 'unasked', message_id => 'd3', "timestamp" => '2025-03-01T10:00:00Z') is not null as sent;
select cdp.process_pending() as processed;

-- Destinations can require consent categories. This one wants marketing consent,
-- every event and the vip segment; it is paused at once, so what is queued stays
-- in cdp.deliveries for us to look at.
select cdp.create_destination('mailer', 'http://127.0.0.1:9/hook',
  '{"consent": ["marketing"], "subscribe": {"events": true, "segments": ["vip"]}}') > 0 as created;
select cdp.pause_destination('mailer');
select cdp.create_segment('vip', '{"trait": "plan", "op": "=", "value": "vip"}') as members;
-- An event's own categoryPreferences decide for it; an event without them is
-- judged by its profile's latest consent; no consent anywhere grants nothing.
select cdp.track('Own Grant', user_id => 'new-1', message_id => 'e1', "timestamp" => '2025-03-01T11:00:00Z',
  context => '{"consent": {"categoryPreferences": {"marketing": true}}}') is not null as sent;
select cdp.track('Own Refusal', user_id => 'new-2', message_id => 'e2', "timestamp" => '2025-03-01T11:00:00Z',
  context => '{"consent": {"categoryPreferences": {"marketing": false, "analytics": true}}}') is not null as sent;
select cdp.track('Profile Says Yes', user_id => 'yes', message_id => 'e3', "timestamp" => '2025-03-01T11:00:00Z') is not null as sent;
select cdp.track('Profile Says No', user_id => 'no', message_id => 'e4', "timestamp" => '2025-03-01T11:00:00Z') is not null as sent;
select cdp.track('No Consent Anywhere', user_id => 'unasked', message_id => 'e5', "timestamp" => '2025-03-01T11:00:00Z') is not null as sent;
-- An older event of "no" that did grant marketing back then: it goes, though the
-- profile's consent (later) stays a refusal.
select cdp.track('Granted Back Then', user_id => 'no', message_id => 'e6', "timestamp" => '2025-03-01T09:00:00Z',
  context => '{"consent": {"categoryPreferences": {"marketing": true}}}') is not null as sent;
select cdp.process_pending() as processed;
select kind, payload->>'userId' as user_id, payload->>'messageId' as message_id from cdp.deliveries order by id;
-- e2, e4 and e5 are counted as blocked, not queued.
select name, paused, queued, consent_blocked from cdp.destination_stats;
select preferences from pg_temp.consent('no');
-- Segment changes are checked against the profile's consent: "yes" and
-- "unasked" both become vip; only the entry of "yes" is queued ("unasked"'s
-- identify event and segment entry are both counted as blocked).
select cdp.identify(user_id => 'yes', traits => '{"plan": "vip"}', message_id => 'v1', "timestamp" => '2025-03-01T12:00:00Z') is not null as sent;
select cdp.identify(user_id => 'unasked', traits => '{"plan": "vip"}', message_id => 'v2', "timestamp" => '2025-03-01T12:00:00Z') is not null as sent;
select cdp.process_pending() as processed;
select count(*) as vip_members from cdp.segment_members('vip');
select kind, payload->>'userId' as user_id, case when kind = 'event' then payload->>'messageId' end as message_id,
       payload->>'segment' as segment
  from cdp.deliveries where id > (select max(id) from cdp.deliveries where payload->>'messageId' = 'e6') order by id;
select name, paused, queued, consent_blocked from cdp.destination_stats;

------------------------------------------------------------------------------
-- 2. Erasure (right to be forgotten)
------------------------------------------------------------------------------
-- Ada: an anonymous visit on 2 March, an identify with her email the same day,
-- the login that ties both on 3 March, an order. Bob: a customer who must not
-- be touched.
select cdp.create_computed_trait('orders', '{"kind": "count", "event": "Order Completed"}') as evaluated;
select cdp.create_segment('buyers', '{"computed": "orders", "op": ">=", "value": 1}') as members;
set cdp.test_clock = '2025-03-02T10:00:00Z';
select cdp.page(name => 'Pricing', anonymous_id => 'anon-ada-7', message_id => 'a1',
  context => '{"consent": {"categoryPreferences": {"marketing": true}}}') is not null as sent;
select cdp.identify(user_id => 'u-ada-7', traits => '{"email": "Ada@Example.com", "plan": "vip", "name": "Ada"}', message_id => 'a2') is not null as sent;
select cdp.identify(user_id => 'u-bob-8', traits => '{"email": "bob@example.com", "plan": "vip"}', message_id => 'b1',
  context => '{"consent": {"categoryPreferences": {"marketing": true}}}') is not null as sent;
-- A message that breaks a rule is quarantined as it came, email and all.
select status, error from cdp.ingest('{"type": "identify", "userId": "u-ada-7", "traits": {"email": "ADA@example.com"}, "timestamp": "yesterday", "messageId": "a-bad"}');
select cdp.process_pending() as processed;
set cdp.test_clock = '2025-03-03T09:00:00Z';
select cdp.identify(user_id => 'u-ada-7', anonymous_id => 'anon-ada-7', message_id => 'a3') is not null as sent;
select cdp.track('Order Completed', user_id => 'u-ada-7', properties => '{"total": 42}', message_id => 'a4') is not null as sent;
select cdp.track('Order Completed', user_id => 'u-bob-8', properties => '{"total": 7}', message_id => 'b2') is not null as sent;
select cdp.process_pending() as processed;
-- One of Ada's deliveries was refused by the receiver (whose answer names her).
with moved as (delete from cdp.deliveries where payload->>'messageId' = 'a4' returning *)
insert into cdp.dead_letters (id, destination_id, profile_id, kind, payload, created_at, attempts, status, response)
select id, destination_id, profile_id, kind, payload, created_at, 1, 422, 'HTTP 422: unknown customer u-ada-7' from moved;
-- What cdp holds now: Ada's traits, computed trait and segments; her events and
-- Bob's in two daily partitions; deliveries queued for both.
select cdp.profile('email', 'ada@example.com')->'traits' as ada_traits,
       cdp.profile('email', 'ada@example.com')->'computed' as ada_computed,
       cdp.profile('email', 'ada@example.com')->'segments' as ada_segments;
select type, value from cdp.identities where profile_id = cdp.profile_id('email', 'ada@example.com') order by 1;
select u as person, e.tableoid::regclass as partition, count(*) as events
  from unnest(array['u-ada-7', 'u-bob-8']) u join cdp.events_resolved r on r.profile_id = cdp.profile_id('user_id', u)
  join cdp.events e on e.id = r.id group by 1, 2 order by 1, 2;
select u as person, d.kind, count(*) from unnest(array['u-ada-7', 'u-bob-8']) u
  join cdp.profile_map m on m.canonical_id = cdp.profile_id('user_id', u)
  join cdp.deliveries d on d.profile_id = m.profile_id group by 1, 2 order by 1, 2;
-- Bob as he is now, to compare after the erasure.
create temp table bob_before as
  select cdp.profile('user_id', 'u-bob-8') as profile,
         (select count(*) from cdp.events_resolved e where e.profile_id = cdp.profile_id('user_id', 'u-bob-8')) as events,
         (select count(*) from cdp.deliveries d where d.profile_id = cdp.profile_id('user_id', 'u-bob-8')) as deliveries,
         (select preferences from cdp.consent c where c.profile_id = cdp.profile_id('user_id', 'u-bob-8')) as consent,
         (select count(*) from cdp.consent_history h where h.profile_id = cdp.profile_id('user_id', 'u-bob-8')) as consent_history;
-- Where Ada's identifiers appear: every text, jsonb and text[] column of every
-- table of cdp (cdp.events with all its partitions), searched for any of her
-- identifier values anywhere in the text, ignoring case.
create function pg_temp.text_columns() returns table (tbl text, col text) language sql as $$
  select c.table_name::text, c.column_name::text
    from information_schema.columns c join information_schema.tables t using (table_schema, table_name)
    join pg_class k on k.oid = format('%I.%I', c.table_schema, c.table_name)::regclass
   where c.table_schema = 'cdp' and t.table_type = 'BASE TABLE' and not k.relispartition
     and (c.data_type in ('text', 'jsonb') or (c.data_type = 'ARRAY' and c.udt_name = '_text'))
   order by 1, 2 $$;
create function pg_temp.mentions(vals text[]) returns table (tbl text, col text, rows_found bigint) language plpgsql as $$
declare r record;
begin
  for r in select * from pg_temp.text_columns() loop
    execute format('select count(*) from cdp.%I x where exists (select from unnest($1) v where strpos(lower(x.%I::text), lower(v)) > 0)',
                   r.tbl, r.col) into rows_found using vals;
    if rows_found > 0 then tbl := r.tbl; col := r.col; return next; end if;
  end loop;
end $$;
select (select count(*) from pg_temp.text_columns()) > 50 as many_columns, bool_and(t in (select tbl from pg_temp.text_columns())) as key_tables_searched
  from unnest(array['events', 'quarantine', 'identities', 'profiles', 'deliveries', 'dead_letters', 'outbox', 'consent',
                    'audit_log', 'deletion_ledger', 'suppressions', 'profile_merges', 'identity_refusals', 'accounts']) t;
select * from pg_temp.mentions(array['u-ada-7', 'anon-ada-7', 'ada@example.com']);

-- The request names one identifier, as the person wrote it. Every identifier of
-- the person goes, with everything they carried; what was removed comes back.
set cdp.test_clock = '2025-03-04T08:00:00Z';
select * from jsonb_each(cdp.erase('email', ' ADA@Example.com ', 'ticket 42')) order by key;
-- Not a trace left, in any table.
select * from pg_temp.mentions(array['u-ada-7', 'anon-ada-7', 'ada@example.com']);
-- Nor any row about her profiles (the survivor and the one merged into it),
-- looked up in every profile-number column of every table.
create function pg_temp.profile_rows(ids bigint[]) returns table (tbl text, col text, rows_found bigint) language plpgsql as $$
declare r record;
begin
  for r in select c.table_name::text as t, c.column_name::text as c
             from information_schema.columns c join information_schema.tables t using (table_schema, table_name)
             join pg_class k on k.oid = format('%I.%I', c.table_schema, c.table_name)::regclass
            where c.table_schema = 'cdp' and t.table_type = 'BASE TABLE' and not k.relispartition and c.data_type = 'bigint'
              and (c.column_name like '%profile%' or c.column_name = 'canonical_id')
            order by 1, 2 loop
    execute format('select count(*) from cdp.%I where %I = any($1)', r.t, r.c) into rows_found using ids;
    if rows_found > 0 then tbl := r.t; col := r.c; return next; end if;
  end loop;
end $$;
select * from pg_temp.profile_rows((select profiles from cdp.deletion_ledger where reason = 'ticket 42'));
-- Bob is exactly as he was.
select b.profile = cdp.profile('user_id', 'u-bob-8') as same_profile,
       b.events = (select count(*) from cdp.events_resolved e where e.profile_id = cdp.profile_id('user_id', 'u-bob-8')) as same_events,
       b.deliveries = (select count(*) from cdp.deliveries d where d.profile_id = cdp.profile_id('user_id', 'u-bob-8')) as same_deliveries,
       b.consent = (select preferences from cdp.consent c where c.profile_id = cdp.profile_id('user_id', 'u-bob-8')) as same_consent,
       b.consent_history = (select count(*) from cdp.consent_history h where h.profile_id = cdp.profile_id('user_id', 'u-bob-8')) as same_consent_history
  from bob_before b;
select cdp.profile('user_id', 'u-bob-8')->'traits' as bob_traits, cdp.profile('user_id', 'u-bob-8')->'computed' as bob_computed,
       cdp.profile('user_id', 'u-bob-8')->'segments' as bob_segments, b.events, b.deliveries
  from bob_before b;
select name, members from cdp.segment_sizes order by name;

-- The ledger proves the erasure without naming her: who asked, why, the hashes
-- of her identifiers and what was removed. Her identifiers are suppressed, as
-- hashes too; the audit log names the request by the hash of the identifier given.
select reason, requested_by = session_user as by_me, cardinality(identifier_hashes) as hashes, cardinality(profiles) as profiles,
       identifier_hashes @> array[cdp.identifier_hash('user_id', 'u-ada-7'), cdp.identifier_hash('anonymous_id', 'anon-ada-7'),
                                   cdp.identifier_hash('email', 'ada@example.com')] as hashes_all_three
  from cdp.deletion_ledger;
select removed from cdp.deletion_ledger;
select type, identifier_hash = cdp.identifier_hash(type, case type when 'user_id' then 'u-ada-7' when 'email' then 'Ada@Example.com '
                                                   else 'anon-ada-7' end) as hash_matches
  from cdp.suppressions order by type;
select action, target = 'email:' || cdp.identifier_hash('email', 'ada@example.com') as target_is_hash, reason, details->'events' as events
  from cdp.audit_log where action = 'erase';

-- Ada comes back: her events are quarantined (reason "suppressed"), whichever of
-- her identifiers they carry, and re-create nothing.
select cdp.track('Came Back', user_id => 'u-ada-7', message_id => 'a5') is not null as sent;
select cdp.identify(anonymous_id => 'new-device', traits => '{"email": "ada@example.com"}', message_id => 'a6') is not null as sent;
select cdp.page(anonymous_id => 'anon-ada-7', message_id => 'a7') is not null as sent;
select cdp.process_pending() as processed;
select message_id, field, reason from cdp.quarantine where reason = 'suppressed' order by message_id;
select cdp.profile_id('user_id', 'u-ada-7') as ada, cdp.profile_id('anonymous_id', 'new-device') as new_device,
       (select count(*) from cdp.events where message_id in ('a5', 'a6', 'a7')) as events_kept,
       (select count(*) from cdp.profiles) as profiles;
-- She signs up again: lifting the suppression of her user id (audited) lets her
-- new events in; the email stays suppressed.
select cdp.unsuppress('user_id', 'u-ada-7', 'ticket 57: signed up again') as was_suppressed;
select cdp.unsuppress('user_id', 'u-ada-7', 'ticket 57: signed up again') as was_suppressed;
select cdp.track('Signed Up', user_id => 'u-ada-7', message_id => 'a8') is not null as sent;
select cdp.identify(user_id => 'u-ada-7', traits => '{"email": "ada@example.com"}', message_id => 'a9') is not null as sent;
select cdp.process_pending() as processed;
select type, value from cdp.identities where profile_id = cdp.profile_id('user_id', 'u-ada-7') order by 1;
select message_id, reason from cdp.quarantine where message_id in ('a8', 'a9');
select action, reason, target = 'user_id:' || cdp.identifier_hash('user_id', 'u-ada-7') as target_is_hash
  from cdp.audit_log where action = 'unsuppress' order by id;

-- Destinations subscribed to deletions are told whom to forget: erasing her
-- again queues a notice naming her user id (it leaves the queue once delivered).
select cdp.create_destination('warehouse', 'http://127.0.0.1:9/forget', '{"subscribe": {"deletions": true}}') > 0 as created;
select cdp.pause_destination('warehouse');
-- (Her new profile and event go, and the quarantined messages carrying her user id.)
select * from jsonb_each(cdp.erase('user_id', 'u-ada-7', 'ticket 58')) where value <> '0' order by key;
select d.name, q.kind, q.payload->>'type' as type, q.payload->'userIds' as user_ids
  from cdp.deliveries q join cdp.destinations d using (destination_id) where q.kind = 'deletion';
-- The notice is the one row left that names her.
select * from pg_temp.mentions(array['u-ada-7']);
select (select count(*) from cdp.deletion_ledger) as ledger_rows, (select count(*) from cdp.audit_log where action = 'erase') as erase_audits;

-- A request must say why, and name a usable identifier.
select pg_temp.err($$select cdp.erase('user_id', 'u-bob-8', '')$$);
select pg_temp.err($$select cdp.erase('user_id', 'u-bob-8', '  ')$$);
select pg_temp.err($$select cdp.erase('user_id', 'u-bob-8', null)$$);
select pg_temp.err($$select cdp.erase('email', 'test@test.com', 'ticket 43')$$);
select pg_temp.err($$select cdp.erase('email', '', 'ticket 43')$$);
select pg_temp.err($$select cdp.erase('email', null, 'ticket 43')$$);
select pg_temp.err($$select cdp.erase('shoe_size', '42', 'ticket 43')$$);
select cdp.profile_id('user_id', 'u-bob-8') is not null as bob_still_here, count(*) as ledger_rows from cdp.deletion_ledger;
-- An identifier nobody has is still suppressed and recorded: the person may
-- have asked before their first event arrived.
select * from jsonb_each(cdp.erase('email', 'early@example.com', 'ticket 44')) where value <> '0' order by key;
select cardinality(profiles) as profiles, identifier_hashes = array[cdp.identifier_hash('email', 'early@example.com')] as hashed
  from cdp.deletion_ledger where reason = 'ticket 44';
select cdp.identify(user_id => 'u-early', traits => '{"email": "Early@example.com"}', message_id => 'x1') is not null as sent;
select cdp.process_pending() as processed;
select reason, cdp.profile_id('user_id', 'u-early') as profile from cdp.quarantine where message_id = 'x1';

------------------------------------------------------------------------------
-- 3. Subject access: everything held about a person
------------------------------------------------------------------------------
-- One of Bob's deliveries was given up on, too.
with moved as (delete from cdp.deliveries where payload->>'messageId' = 'b2' returning *)
insert into cdp.dead_letters (id, destination_id, profile_id, kind, payload, created_at, attempts, status, response)
select id, destination_id, profile_id, kind, payload, created_at, 3, 500, 'HTTP 500: try later' from moved;
-- Any identifier finds him, written as he would.
create temp table bob_export as select cdp.export_subject('email', ' Bob@Example.com') as doc;
select key, jsonb_typeof(value) as type, case jsonb_typeof(value) when 'array' then jsonb_array_length(value) end as items
  from bob_export, jsonb_each(doc) order by key;
select doc->'profile'->'traits' as traits, doc->'computed' as computed, doc->'consent'->'preferences' as consent from bob_export;
select (select string_agg(i->>'type' || '=' || (i->>'value'), ', ') from jsonb_array_elements(doc->'identities') i) as identities,
       (select string_agg(e->>'message_id', ', ') from jsonb_array_elements(doc->'events') e) as events,
       (select string_agg(s->>'segment', ', ') from jsonb_array_elements(doc->'segments') s) as segments
  from bob_export;
select (select string_agg(c->>'source' || ' ' || (c->>'preferences'), ', ') from jsonb_array_elements(doc->'consent_history') c) as consent_history,
       (select string_agg(d->>'destination' || ' ' || (d->>'kind') || ' ' || coalesce(d->'payload'->>'event', d->'payload'->>'segment', d->'payload'->>'type'), ', ')
          from jsonb_array_elements(doc->'deliveries') d) as deliveries,
       (select string_agg(l->>'destination' || ' ' || (l->>'status') || ' ' || (l->'payload'->>'messageId'), ', ')
          from jsonb_array_elements(doc->'dead_letters') l) as dead_letters
  from bob_export;
-- Nobody by that identifier (an erased person included): refused, nothing logged.
select pg_temp.err($$select cdp.export_subject('email', 'ada@example.com')$$);
select pg_temp.err($$select cdp.export_subject('user_id', 'nobody')$$);
-- The export itself is audited, naming Bob by a hash.
select action, target = 'email:' || cdp.identifier_hash('email', 'bob@example.com') as target_is_hash,
       details->>'profile_id' = cdp.profile_id('user_id', 'u-bob-8')::text as profile_matches
  from cdp.audit_log where action = 'export';

------------------------------------------------------------------------------
-- 4. Retention
------------------------------------------------------------------------------
-- How long each kind of data is kept, set with cdp.set_retention (at least a day).
select kind, keep from cdp.retention order by kind;
select pg_temp.err($$select cdp.set_retention('logs', '3 days')$$);
select pg_temp.err($$select cdp.set_retention('events', '12 hours')$$);
select pg_temp.err($$select cdp.set_retention('events', '-3 days')$$);
select pg_temp.err($$select cdp.set_retention('events', null)$$);
select pg_temp.err($$update cdp.retention set keep = '1 hour' where kind = 'events'$$);
-- Retention goes by cdp.now(). This part of the suite happens in December 2024,
-- before everything above, so no cutoff below reaches the data of March 2025.
-- The partitions of the days of December 2024 in this suite:
create function pg_temp.parts() returns setof text language sql as $$
  select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid
   where i.inhparent = 'cdp.events'::regclass and c.relname between 'events_20241201' and 'events_20241231' order by 1 $$;
-- Events on 1, 2 and 3 December: each day has its partition (and a week ahead).
-- Quarantined messages (tracks without an event name), segment changes (trial,
-- then vip) and consent statements come with them.
select cdp.create_segment('trial', '{"trait": "plan", "op": "=", "value": "trial"}') as members;
set cdp.test_clock = '2024-12-01T10:00:00Z';
select cdp.identify(user_id => 'u-old', traits => '{"plan": "trial"}', message_id => 'r1',
  context => '{"consent": {"categoryPreferences": {"marketing": true}}}') is not null as sent;
select status from cdp.ingest('{"type": "track", "userId": "u-old", "messageId": "r1-bad"}');
select cdp.process_pending() as processed;
set cdp.test_clock = '2024-12-02T10:00:00Z';
select cdp.identify(user_id => 'u-old', traits => '{"plan": "vip"}', message_id => 'r2',
  context => '{"consent": {"categoryPreferences": {"marketing": false}}}') is not null as sent;
select cdp.track('Renewed', user_id => 'u-old', message_id => 'r3') is not null as sent;
select cdp.process_pending() as processed;
set cdp.test_clock = '2024-12-03T10:00:00Z';
select cdp.track('Renewed', user_id => 'u-old', message_id => 'r4') is not null as sent;
select status from cdp.ingest('{"type": "track", "userId": "u-old", "messageId": "r4-bad"}');
select cdp.process_pending() as processed;
select p as partition, (select count(*) from cdp.events e where e.tableoid = ('cdp.' || p)::regclass) as events from pg_temp.parts() p;
-- Dead letters of those days (failed_at is when the worker gave up).
insert into cdp.dead_letters (id, destination_id, profile_id, kind, payload, created_at, failed_at, attempts, status, response)
select 900 + d, (select destination_id from cdp.destinations where name = 'mailer'), cdp.profile_id('user_id', 'u-old'), 'event',
       jsonb_build_object('messageId', 'r' || d), t, t, 1, 400, 'HTTP 400'
  from (values (1, timestamptz '2024-12-01T10:00:00Z'), (3, '2024-12-03T10:00:00Z')) v(d, t);
-- The outbox row's created_at is the real clock; date the December rows as a
-- processor running then would have.
update cdp.outbox set created_at = occurred_at where occurred_at < '2025-01-01';
select o.kind, s.name as segment, o.occurred_at from cdp.outbox o join cdp.segments s using (segment_id)
 where o.occurred_at < '2025-01-01' order by o.id;
select s.name as segment, m.entered_at, m.exited_at from cdp.segment_membership m join cdp.segments s using (segment_id)
 where m.profile_id = cdp.profile_id('user_id', 'u-old') order by m.entered_at, s.name;

-- Keep events 3 days. Whole partitions go, once their upper bound is older than
-- the cutoff: the partition of 1 December (up to 2 December 00:00) stays until
-- 5 December 00:00 exactly.
select cdp.set_retention('events', '3 days');
set cdp.test_clock = '2024-12-04T23:59:59.999999Z';
select cdp.run_retention();
select * from pg_temp.parts() limit 3;
set cdp.test_clock = '2024-12-05T00:00:00Z';
select cdp.run_retention();
select * from pg_temp.parts() limit 3;
select message_id from cdp.events where message_id like 'r_' order by 1;
select kind, cutoff, removed, partitions from cdp.retention_log order by id;
-- Running again removes nothing more and logs nothing.
select cdp.run_retention();
select count(*) as log_rows from cdp.retention_log;

-- The other kinds are trimmed row by row, by their own time: quarantine by
-- received_at, outbox by created_at, dead letters by failed_at, segment history
-- by exited_at (current memberships stay), consent history by expressed_at (the
-- statement in force stays, however old). Keeping 2 days, at 5 December 06:00
-- the cutoff is 3 December 06:00.
select cdp.set_retention(kind, '2 days') from unnest(array['quarantine', 'outbox', 'dead_letters', 'segment_history', 'consent_history']) kind;
set cdp.test_clock = '2024-12-05T06:00:00Z';
select cdp.run_retention();
select kind, cutoff, removed, partitions from cdp.retention_log where id > 1 order by id;
select message_id from cdp.quarantine where message_id like 'r%' order by 1;
select o.kind, s.name as segment from cdp.outbox o join cdp.segments s using (segment_id) where o.occurred_at < '2025-01-01' order by o.id;
select id, failed_at from cdp.dead_letters where id > 900 order by id;
select s.name as segment, m.entered_at, m.exited_at from cdp.segment_membership m join cdp.segments s using (segment_id)
 where m.profile_id = cdp.profile_id('user_id', 'u-old') order by m.entered_at, s.name;
select preferences, expressed_at from cdp.consent_history where profile_id = cdp.profile_id('user_id', 'u-old') order by expressed_at;
-- Data of March 2025 is younger than every cutoff: untouched.
select count(*) as march_events from cdp.events where received_at >= '2025-03-01';
select count(*) as march_quarantine from cdp.quarantine where received_at >= '2025-03-01';

-- Partitions are not members of the extension (0.1.0 made its first week as
-- members; 0.2.0 releases them): retention drops them like any table and
-- leaves no dangling dependency. Far in the future, every partition goes.
create function pg_temp.extension_partitions() returns bigint language sql as $$
  select count(*) from pg_depend d join pg_inherits i on i.inhrelid = d.objid
   where d.classid = 'pg_class'::regclass and d.deptype = 'e' and i.inhparent = 'cdp.events'::regclass
     and d.refobjid = (select oid from pg_extension where extname = 'cdp') $$;
select count(*) as events_left_before, pg_temp.extension_partitions() as extension_partitions from cdp.events;
set cdp.test_clock = '2100-01-01T00:00:00Z';
select (cdp.run_retention())->'events' as events_removed;
select count(*) as partitions_left from pg_inherits where inhparent = 'cdp.events'::regclass;
select 'events_20250302' = any(partitions) as march_partition_dropped from cdp.retention_log where kind = 'events' order by id desc limit 1;
select pg_temp.extension_partitions() as extension_partitions,
       (select count(*) from pg_depend d where d.refobjid = (select oid from pg_extension where extname = 'cdp')
           and d.classid = 'pg_class'::regclass and not exists (select from pg_class c where c.oid = d.objid)) as dangling_dependencies;
-- Events arrive again: their partition is made as usual.
select cdp.track('Still Here', user_id => 'u-bob-8', message_id => 'z1') is not null as sent;
select count(*) as events from cdp.events;

------------------------------------------------------------------------------
-- 5. The audit log of configuration
------------------------------------------------------------------------------
-- Every change to configuration tables is logged: who, what, the row before and
-- after. Secrets are left out: the write key's hash, the destination's secret.
set cdp.test_clock = '2025-04-01T00:00:00Z';
create temp table audit_mark as select max(id) as id from cdp.audit_log;
select length(cdp.create_source('web')) > 20 as got_write_key;
select cdp.create_destination('signed', 'https://hooks.example.com/cdp',
  '{"secret": "whsec-0123456789abcdef", "subscribe": {"events": true}, "headers": {"X-Team": "growth"}}') > 0 as created;
select cdp.pause_destination('signed');
update cdp.destinations set options = options || '{"secret": "whsec-fedcba9876543210"}' where name = 'signed';
select cdp.create_segment('churn_risk', '{"trait": "plan", "op": "=", "value": "free"}', 'Free plan: worth a nudge') as members;
select cdp.set_retention('events', '30 days');
select cdp.revoke_source('web');
select cdp.drop_destination('signed');
select a.action, a.target, a.actor = session_user as by_me, a.details ? 'old' as has_before, a.details ? 'new' as has_after,
       coalesce(a.details->'new', '{}') ? 'write_key_hash' or coalesce(a.details->'old', '{}') ? 'write_key_hash' as key_hash_logged,
       coalesce(a.details->'new'->'options', a.details->'old'->'options', '{}') ? 'secret' as secret_logged
  from cdp.audit_log a, audit_mark m where a.id > m.id order by a.id;
-- What changed, as logged.
select a.details->'new'->>'name' as source, a.details->'new'->>'revoked_at' is not null as revoked
  from cdp.audit_log a, audit_mark m where a.id > m.id and a.target = 'sources' order by a.id;
select a.action, a.details->'new'->'options' as new_options, a.details->'old'->'options' as old_options
  from cdp.audit_log a, audit_mark m where a.id > m.id and a.target = 'destinations' and a.action <> 'update' order by a.id;
-- The pause, then the secret's rotation: that update is logged too, but with the
-- secret left out its options look unchanged.
select a.details->'old'->>'paused' as paused_before, a.details->'new'->>'paused' as paused_after,
       a.details->'old'->'options' = a.details->'new'->'options' as options_look_unchanged
  from cdp.audit_log a, audit_mark m where a.id > m.id and a.target = 'destinations' and a.action = 'update' order by a.id;
select a.details->'new'->>'name' as segment, a.details->'new'->'rule' as rule, a.details->'new'->>'description' as description
  from cdp.audit_log a, audit_mark m where a.id > m.id and a.target = 'segments';
select a.details->'old'->>'kind' as kind, a.details->'old'->>'keep' as keep_before, a.details->'new'->>'keep' as keep_after
  from cdp.audit_log a, audit_mark m where a.id > m.id and a.target = 'retention';
-- No secret anywhere in the log.
select count(*) filter (where a::text like '%whsec-%') as with_secret,
       count(*) filter (where a.details::text like '%write_key_hash%') as with_key_hash,
       count(*) filter (where a::text like '%' || (select encode(write_key_hash, 'hex') from cdp.sources where name = 'web') || '%') as with_hash_value
  from cdp.audit_log a;
-- Delivery bookkeeping (counters, the circuit breaker) is not configuration: not logged.
select count(*) as logged_before from cdp.audit_log \gset
update cdp.destinations set delivered = delivered + 1, failures = 1 where name = 'mailer';
select count(*) - :logged_before as logged_since from cdp.audit_log;

-- The whole log of this suite, in order: privacy requests and configuration changes.
select a.action, regexp_replace(a.target, '[0-9a-f]{64}', '<sha256>') as target, a.reason
  from cdp.audit_log a order by a.id;

------------------------------------------------------------------------------
-- 6. What analysts see
------------------------------------------------------------------------------
-- cdp_analyst reads masked views: PII traits hashed, identifiers hashed; no raw
-- table, no ledger, no audit log, no privacy function.
set role cdp_analyst;
select a.traits->>'plan' as plan, a.traits->>'email' = 'sha256:' || encode(sha256('bob@example.com'), 'hex') as email_hashed,
       a.computed
  from cdp.analyst_profiles a where a.traits->>'email' like 'sha256:%' order by 1;
select count(*) filter (where value_hash = encode(sha256('u-bob-8'), 'hex')) as bob_user_id_hashed,
       count(*) filter (where value_hash = 'u-bob-8') as in_clear
  from cdp.analyst_identities;
select count(*) as vip_members from cdp.segment_members('vip');
select pg_temp.err($$select count(*) from cdp.profiles$$);
select pg_temp.err($$select count(*) from cdp.audit_log$$);
select pg_temp.err($$select count(*) from cdp.deletion_ledger$$);
select pg_temp.err($$select cdp.export_subject('user_id', 'u-bob-8')$$);
select pg_temp.err($$select cdp.erase('user_id', 'u-bob-8', 'curious')$$);
reset role;
reset cdp.test_clock;

------------------------------------------------------------------------------
-- 7. Corner cases of erasure and rebuilding, from a fresh install.
------------------------------------------------------------------------------
drop extension cdp;
create extension cdp;
update cdp.processor_state set paused = true;
set cdp.test_clock = '2025-06-01T10:00:00Z';
-- user ids keep their case: erasing 'kim' leaves 'KIM', another person, alone.
select cdp.track('Seen', user_id => 'kim', message_id => 'k1') is not null as sent;
select cdp.track('Seen', user_id => 'KIM', message_id => 'k2') is not null as sent;
select cdp.process_pending() as processed;
select (cdp.erase('user_id', 'kim', 'ticket 7'))->'identities' as identities_removed;
select type, value from cdp.identities order by value;
select count(*) as events_left from cdp.events where user_id = 'KIM';
-- A short international phone number is suppressed as it is stored, so the
-- person's return is quarantined.
select cdp.identify(user_id => 'u-ice', traits => '{"phone": "+354 555 1234"}', message_id => 'p1') is not null as sent;
select cdp.process_pending() as processed;
select value as stored_phone from cdp.identities where type = 'phone';
select (cdp.erase('user_id', 'u-ice', 'ticket 8'))->'identities' as identities_removed;
select cdp.identify(anonymous_id => 'new-device', traits => '{"phone": "+354 555 1234"}', message_id => 'p2') is not null as sent;
select cdp.process_pending() as processed;
select reason, raw::jsonb->>'anonymous_id' as anonymous_id from cdp.quarantine where reason = 'suppressed';
select count(*) as phones from cdp.identities where type = 'phone';
-- Rebuilding the graph keeps consent: set by API (carried over by identifier)
-- and from events (recorded again, once).
select cdp.page(anonymous_id => 'x', message_id => 'v1') is not null as sent;
select cdp.page(anonymous_id => 'y', message_id => 'v2',
                context => '{"consent": {"categoryPreferences": {"marketing": true}}}') is not null as sent;
select cdp.process_pending() as processed;
select cdp.set_consent('anonymous_id', 'x', '{"marketing": false}') is not null as set;
set client_min_messages = warning;  -- (the rebuild NOTICE gives allocator sizes)
select cdp.rebuild_identities() > 0 as rebuilt;
reset client_min_messages;
select i.value as person, c.preferences, c.source
  from cdp.consent c join cdp.identities i on i.profile_id = c.profile_id order by i.value;
select i.value as person, h.source, count(*) as statements
  from cdp.consent_history h join cdp.identities i on i.profile_id = h.profile_id group by 1, 2 order by 1, 2;
select count(*) as consent_rows_of_old_profiles
  from cdp.consent c where not exists (select from cdp.profiles p where p.profile_id = c.profile_id);
reset cdp.test_clock;

------------------------------------------------------------------------------
-- 8. Bad arguments to the destination, retention and partition functions.
------------------------------------------------------------------------------
select pg_temp.err($$select cdp.replay_dead_letters('nope')$$);
select pg_temp.err($$select cdp.pause_destination('nope')$$);
select pg_temp.err($$select cdp.resume_destination('nope')$$);
select pg_temp.err($$select cdp.drop_destination('nope')$$);
select pg_temp.err($$select cdp.run_retention(0)$$);
select pg_temp.err($$select cdp.ensure_partitions(now(), 32)$$);
select pg_temp.err($$select cdp.ensure_partitions(now(), -1)$$);
select pg_temp.err($$select cdp.grant_role('postgres', 'cdp_analyst')$$);
