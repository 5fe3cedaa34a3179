-- Audience segments: JSON rules evaluated per profile, in real time, with history.
\i test/regress/sql/setup.sql
-- A profile's name in this suite: the user and anonymous ids it started with.
create function pg_temp.who(p bigint) returns text language sql as $$
  select string_agg(value, '+' order by type desc, value) from cdp.identities
   where origin_profile = p and type in ('user_id', 'anonymous_id') $$;
-- Who matches a rule now, asked profile by profile with cdp.evaluate (which saves nothing).
create function pg_temp.matching(rule jsonb) returns text language sql as $$
  select coalesce(string_agg(pg_temp.who(profile_id), ' ' order by pg_temp.who(profile_id)), '(nobody)')
    from cdp.profiles where cdp.evaluate(rule, profile_id) $$;
-- The membership history, by name, oldest first.
create function pg_temp.history() returns table (segment text, profile text, entered_at timestamptz, exited_at timestamptz)
language sql as $$
  select s.name, pg_temp.who(sm.profile_id), sm.entered_at, sm.exited_at
    from cdp.segment_membership sm join cdp.segments s using (segment_id)
   order by sm.entered_at, s.name, 2, sm.exited_at nulls last $$;

------------------------------------------------------------------------------
-- 1. Trait conditions, one operator at a time.
------------------------------------------------------------------------------
set cdp.test_clock = '2025-01-10T00:00:00Z';
select count(cdp.identify(user_id => u, traits => t)) as sent from (values
  ('ada', '{"plan": "pro", "age": 34, "ltv": 120.5, "country": "FR", "email": "ada@acme.io",
           "interests": ["golf", "chess"], "phone": "+33 6 11 22 33 44", "signup_at": "2024-11-02",
           "last_login": "2025-01-08T09:00:00Z", "renews_at": "2025-02-01", "vip": true,
           "address": {"city": "Paris"}}'::jsonb),
  ('bob', '{"plan": "free", "age": 19, "ltv": 0, "country": "DE", "email": "bob@globex.com",
           "interests": ["tennis"], "phone": "+49 151 2345 678", "signup_at": "2025-01-05",
           "last_login": "2024-12-20T18:00:00Z", "renews_at": "2025-06-01", "vip": false}'),
  ('cy',  '{"age": "42", "country": "IT", "interests": "golf course"}')) v(u, t);
select cdp.process_pending() as processed;
select pg_temp.who(profile_id), traits - 'email' - 'phone' - 'address' as traits from cdp.profiles order by profile_id;
-- Each operator. The rule's value decides how to compare: numbers numerically,
-- strings by bytes, dates (ISO-8601 strings, {"date": ...}, or relative to now)
-- as times. A trait that is missing or of another type fails every operator,
-- != included: cy has no plan, and cy's age is the string "42", which only a
-- string value compares with. contains looks into text and into lists; between
-- includes both ends.
select rule, pg_temp.matching(rule::jsonb) as matching from (values
  ('{"trait": "plan", "op": "=", "value": "pro"}'),
  ('{"trait": "plan", "op": "!=", "value": "pro"}'),
  ('{"not": {"trait": "plan", "op": "=", "value": "pro"}}'),
  ('{"trait": "age", "op": "<", "value": 34}'),
  ('{"trait": "age", "op": "<=", "value": 34}'),
  ('{"trait": "ltv", "op": ">", "value": 99.5}'),
  ('{"trait": "ltv", "op": ">=", "value": 0}'),
  ('{"trait": "age", "op": ">", "value": "30"}'),
  ('{"trait": "vip", "op": "=", "value": true}'),
  ('{"trait": "country", "op": "in", "value": ["FR", "IT"]}'),
  ('{"trait": "age", "op": "in", "value": [19, 42]}'),
  ('{"trait": "email", "op": "contains", "value": "@acme."}'),
  ('{"trait": "interests", "op": "contains", "value": "golf"}'),
  ('{"trait": "phone", "op": "starts_with", "value": "+33"}'),
  ('{"trait": "email", "op": "exists"}'),
  ('{"trait": "age", "op": "between", "value": [19, 34]}'),
  ('{"trait": "age", "op": "between", "value": [20, 33]}'),
  ('{"trait": "address.city", "op": "=", "value": "Paris"}'),
  ('{"trait": "signup_at", "op": ">=", "value": "2025-01-01"}'),
  ('{"trait": "signup_at", "op": "<", "value": {"date": "2025-01-01"}}'),
  ('{"trait": "last_login", "op": ">", "value": {"days_ago": 7}}'),
  ('{"trait": "renews_at", "op": "between", "value": [{"days_from_now": 0}, {"days_from_now": 30}]}')
) r(rule);
-- Relative dates follow the clock: Ada logged in on 2025-01-08 09:00, which is
-- exactly 7 days ago at 2025-01-15 09:00 ("more recent than 7 days ago" ends then).
set cdp.test_clock = '2025-01-15T08:59:59Z';
select pg_temp.matching('{"trait": "last_login", "op": ">", "value": {"days_ago": 7}}') as at_08_59_59;
set cdp.test_clock = '2025-01-15T09:00:00Z';
select pg_temp.matching('{"trait": "last_login", "op": ">", "value": {"days_ago": 7}}') as at_09_00_00,
       pg_temp.matching('{"trait": "last_login", "op": ">=", "value": {"days_ago": 7}}') as with_ge;
set cdp.test_clock = '2025-01-10T00:00:00Z';
-- preview_segment: how many would match now, and a sample (the lowest profile ids).
select * from cdp.preview_segment('{"trait": "country", "op": "in", "value": ["FR", "DE", "IT"]}');
select * from cdp.preview_segment('{"trait": "country", "op": "in", "value": ["FR", "DE", "IT"]}', sample => 2);
select members, pg_temp.who(unnest(sample_profiles)) from cdp.preview_segment('{"trait": "plan", "op": "exists"}');

------------------------------------------------------------------------------
-- 2. Event conditions: counts, page views, property filters, windows.
------------------------------------------------------------------------------
select count(cdp.track(e, user_id => u, properties => p, "timestamp" => t)) as sent from (values
  ('ada', 'Order Completed', '{"revenue": 120, "currency": "USD", "product": {"sku": "A-1"}}'::jsonb, '2024-12-01T10:00:00Z'::timestamptz),
  ('ada', 'Order Completed', '{"revenue": 30, "currency": "EUR", "product": {"sku": "B-7"}}', '2025-01-05T10:00:00Z'),
  ('ada', 'Order Completed', '{"revenue": 80, "currency": "EUR", "product": {"sku": "A-2"}}', '2025-01-09T10:00:00Z'),
  ('bob', 'Order Completed', '{"revenue": 60, "currency": "EUR"}', '2025-01-09T11:00:00Z'),
  ('bob', 'Trial Started', null, '2025-01-08T00:00:00Z')) v(u, e, p, t);
select count(cdp.page(name => n, user_id => u, "timestamp" => t)) as sent from (values
  ('ada', 'Pricing', '2025-01-09T13:00:00Z'::timestamptz),
  ('ada', 'Pricing', '2025-01-09T18:00:00Z'),
  ('ada', 'Pricing', '2025-01-09T23:00:00Z'),
  ('bob', 'Pricing', '2025-01-09T20:00:00Z'),
  ('cy',  'Home',    '2025-01-09T20:00:00Z')) v(u, n, t);
select cdp.process_pending() as processed;
-- Ada ordered 3 times (USD 120 on 12-01, EUR 30 on 01-05, EUR 80 on 01-09), Bob once (EUR 60);
-- Ada viewed Pricing 3 times in the last 11 hours, Bob once; Bob started a trial on 01-08.
select rule, pg_temp.matching(rule::jsonb) as matching from (values
  ('{"event": "Order Completed"}'),
  ('{"event": "Order Completed", "count": {"op": "=", "value": 0}}'),
  ('{"event": "Order Completed", "count": {"op": "=", "value": 3}}'),
  ('{"event": "Order Completed", "count": {"op": "!=", "value": 1}}'),
  ('{"event": "Order Completed", "count": {"op": "<", "value": 3}}'),
  ('{"event": "Order Completed", "count": {"op": "<=", "value": 1}}'),
  ('{"event": "Order Completed", "count": {"op": ">", "value": 1}}'),
  ('{"event": "Order Completed", "count": {"op": ">=", "value": 2}, "within": {"days": 30}}'),
  ('{"event": "Order Completed", "where": [{"property": "revenue", "op": ">", "value": 50}], "count": {"op": ">=", "value": 2}}'),
  ('{"event": "Order Completed", "within": {"days": 30}, "where": [{"property": "revenue", "op": ">", "value": 50}, {"property": "currency", "op": "=", "value": "EUR"}]}'),
  ('{"event": "Order Completed", "where": [{"property": "product.sku", "op": "starts_with", "value": "A-"}], "count": {"op": "=", "value": 2}}'),
  ('{"event": "Order Completed", "where": [{"property": "product.sku", "op": "exists"}]}'),
  ('{"event": "Pricing", "type": "page", "count": {"op": ">=", "value": 3}, "within": {"hours": 12}}'),
  ('{"event": "Pricing", "type": "page", "count": {"op": ">=", "value": 3}, "within": {"hours": 10}}'),
  ('{"event": "Pricing"}'),
  ('{"event": "Home", "type": "page"}'),
  ('{"not": {"event": "Trial Started", "within": {"days": 7}}}')
) r(rule);

------------------------------------------------------------------------------
-- 3. Account conditions: the accounts (groups) a person belongs to.
------------------------------------------------------------------------------
select count(cdp.group(group_id => g, user_id => u, traits => t)) as sent from (values
  ('acme', 'ada', '{"name": "Acme", "plan": "enterprise", "employees": 500}'::jsonb),
  ('globex', 'bob', '{"name": "Globex", "plan": "startup", "employees": 12}'),
  ('initech', 'bob', '{"name": "Initech", "plan": "enterprise", "employees": 80}')) v(g, u, t);
select cdp.process_pending() as processed;
-- Ada is in Acme (enterprise, 500 people); Bob in Globex (startup, 12) and Initech
-- (enterprise, 80): one and the same account must pass a whole account rule.
select rule, pg_temp.matching(rule::jsonb) as matching from (values
  ('{"account": {"trait": "plan", "op": "=", "value": "enterprise"}}'),
  ('{"account": {"id": "globex"}}'),
  ('{"account": {"id": ["acme", "initech"]}}'),
  ('{"account": {"and": [{"trait": "plan", "op": "=", "value": "enterprise"}, {"trait": "employees", "op": ">", "value": 100}]}}'),
  ('{"account": {"not": {"id": "acme"}}}'),
  ('{"not": {"account": {"trait": "employees", "op": "exists"}}}')
) r(rule);

------------------------------------------------------------------------------
-- 4. Bad rules are refused with the JSON path of the bad node; nothing is stored.
------------------------------------------------------------------------------
select pg_temp.err(format('select cdp.create_segment(%L, %L)', 'bad', rule)) from (values
  ('{"trait": "plan", "op": "=", "vlaue": "pro"}'),
  ('{"trait": "plan", "op": "==", "value": "pro"}'),
  ('{"trait": "plan", "op": "="}'),
  ('{"trait": "plan", "op": "exists", "value": true}'),
  ('{"trait": "plan", "event": "Signed Up"}'),
  ('{"trait": "", "op": "exists"}'),
  ('{"trait": "age", "op": "between", "value": [34, 19]}'),
  ('{"trait": "last_login", "op": "=", "value": {"days_ago": 7}}'),
  ('{"trait": "last_login", "op": ">", "value": {"weeks_ago": 1}}'),
  ('{"event": "Order Completed", "within": {"weeks": 1}}'),
  ('{"event": "Order Completed", "within": {"days": 0}}'),
  ('{"event": "Order Completed", "count": {"op": "in", "value": [1, 2]}}'),
  ('{"event": "Order Completed", "count": {"op": ">=", "value": -1}}'),
  ('{"event": "Order Completed", "type": "identify"}'),
  ('{"event": "Order Completed", "where": ["revenue > 50"]}'),
  ('{"event": "Order Completed", "where": [{"property": "at", "op": ">", "value": {"days_ago": 1}}]}'),
  ('{"and": [{"trait": "plan", "op": "exists"}, {"or": [{"trait": "age", "op": ">", "value": true}]}]}'),
  ('{"and": []}'),
  ('{"not": [{"trait": "plan", "op": "exists"}]}'),
  ('{"account": {"event": "Order Completed"}}'),
  ('{"segment": "no_such_segment"}'),
  ('{"computed": "no_such_trait", "op": ">", "value": 1}'),
  ('[]')
) r(rule);
select pg_temp.err($$select cdp.create_segment('', '{"trait": "plan", "op": "exists"}')$$);
select pg_temp.err($$select cdp.create_segment(null, '{"trait": "plan", "op": "exists"}')$$);
select pg_temp.err($$select cdp.create_segment('x', null)$$);
select pg_temp.err($$select * from cdp.preview_segment('{"trait": "plan", "op": "=", "value": [1]}')$$);
select pg_temp.err($$select * from cdp.preview_segment('{"trait": "plan", "op": "exists"}', sample => -1)$$);
select pg_temp.err($$select cdp.evaluate('{"trait": "plan", "op": "exists"}', 999)$$);
select count(*) as segments, (select count(*) from cdp.segment_membership) as memberships from cdp.segments;

------------------------------------------------------------------------------
-- 5. Stored segments: created over existing profiles (a backfill that returns
--    the member count), listed, sized; previews write nothing.
------------------------------------------------------------------------------
create temp view written as
  select (select count(*) from cdp.segments) as segments, (select count(*) from cdp.segment_membership) as memberships,
         (select count(*) from cdp.outbox) as outbox, (select count(*) from cdp.profile_computed) as computed_rows,
         (select count(*) from cdp.aggregates_built) as aggregates;
table written;
select * from cdp.preview_segment('{"event": "Order Completed", "within": {"days": 30}, "count": {"op": ">=", "value": 2}}');
select cdp.evaluate('{"event": "Order Completed", "within": {"days": 30}, "count": {"op": ">=", "value": 2}}', cdp.profile_id('user_id', 'ada')) as ada;
table written;
select cdp.create_segment('pro', '{"trait": "plan", "op": "=", "value": "pro"}', 'Paying customers') as members;
select cdp.create_segment('europe', '{"trait": "country", "op": "in", "value": ["FR", "DE", "IT", "ES"]}') as members;
select cdp.create_segment('repeat_buyers', '{"event": "Order Completed", "count": {"op": ">=", "value": 2}}') as members;
select * from cdp.segment_members('europe');
select pg_temp.who(cdp.segment_members('europe'));
select name, members from cdp.segment_sizes order by segment_id;
select name, description, rule from cdp.segments order by segment_id;
-- The backfill wrote membership rows (entered at the clock's time), outbox rows, and the counter state.
select * from pg_temp.history();
select kind, pg_temp.who(profile_id) as profile, payload - 'segment_id' - 'profile_id' as payload, occurred_at
  from cdp.outbox order by id;
select count(*) as counters_built from cdp.aggregates_built;
-- Evaluating everything again changes nothing (and says so).
select cdp.evaluate_segments() as changes;
select cdp.evaluate_segments() as changes;
table written;

------------------------------------------------------------------------------
-- 6. Real time: segments first, then events; each change is a membership row,
--    an outbox row and a notification on channel cdp_segment, all written in
--    the processing transaction at the clock's time.
------------------------------------------------------------------------------
-- A second connection listens, as a delivery service would.
create extension if not exists dblink;
select dblink_connect('listener', format('dbname=%s host=%s port=%s', current_database(),
  split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port')));
select dblink_exec('listener', 'listen cdp_segment');
-- What it has heard so far (a round trip first, so that it has read everything committed).
create function pg_temp.heard() returns table (channel text, payload jsonb) language plpgsql as $$
begin
  perform * from dblink('listener', 'select 1') as t(one int);
  return query
    select g.name, case when x.n ? 'profile_id'
                        then x.n - 'segment_id' - 'profile_id' || jsonb_build_object('profile', pg_temp.who((x.n->>'profile_id')::bigint))
                        else x.n - 'segment_id' end
      from dblink_get_notify('listener') with ordinality g(name, pid, extra, i), lateral (select g.extra::jsonb as n) x
     order by g.i;
end $$;
select cdp.create_segment('big_spender', '{"event": "Order Completed", "where": [{"property": "revenue", "op": ">=", "value": 500}]}') as members;
select * from pg_temp.heard();
set cdp.test_clock = '2025-01-10T12:00:00Z';
select cdp.track('Order Completed', user_id => 'dee', properties => '{"revenue": 900}') is not null as sent;
select cdp.track('Order Completed', user_id => 'ada', properties => '{"revenue": 700}') is not null as sent;
-- Nothing happens before processing.
select count(*) as outbox_rows from cdp.outbox where segment_id = (select segment_id from cdp.segments where name = 'big_spender');
select cdp.process_pending() as processed;
select * from pg_temp.history() where segment = 'big_spender';
select kind, pg_temp.who(profile_id) as profile, payload - 'segment_id' - 'profile_id' as payload, occurred_at
  from cdp.outbox where segment_id = (select segment_id from cdp.segments where name = 'big_spender') order by id;
-- The outbox payload names the segment and profile by number too.
select payload->'segment_id' = to_jsonb(segment_id) and payload->'profile_id' = to_jsonb(profile_id) as ids_match
  from cdp.outbox where segment_id = (select segment_id from cdp.segments where name = 'big_spender');
select * from pg_temp.heard();
-- A small second order: Dee stays a big spender (nothing written for that) and
-- becomes a repeat buyer.
select cdp.track('Order Completed', user_id => 'dee', properties => '{"revenue": 1}') is not null as sent;
select cdp.process_pending() as processed;
select kind, pg_temp.who(profile_id) as profile, payload->>'segment' as segment from cdp.outbox
 where occurred_at = '2025-01-10T12:00:00Z' order by id;
select * from pg_temp.heard();
-- An event no rule looks at changes nothing and writes nothing.
select cdp.track('Viewed Item', user_id => 'dee') is not null as sent;
select cdp.process_pending() as processed;
select count(*) as outbox_rows from cdp.outbox;
select * from pg_temp.heard();
-- Leaving is real time too: a trait change takes Ada out of "pro" and "europe".
set cdp.test_clock = '2025-01-10T12:30:00Z';
select cdp.identify(user_id => 'ada', traits => '{"plan": "free", "country": "US"}') is not null as sent;
select cdp.process_pending() as processed;
select * from pg_temp.history() where profile = 'ada' and segment in ('pro', 'europe');
select * from pg_temp.heard();
select cdp.profile('user_id', 'ada')->'segments' as ada_segments;
-- Processing is transactional: rolled back, it leaves no membership, outbox row
-- or notification, and its events wait for the next run. Ada moves back to France:
set cdp.test_clock = '2025-01-10T12:45:00Z';
select cdp.identify(user_id => 'ada', traits => '{"country": "FR"}') is not null as sent;
begin;
select cdp.process_pending() as processed;
select pg_temp.who(cdp.segment_members('europe')) as inside;
rollback;
select pg_temp.who(cdp.segment_members('europe')) as after_rollback;
select * from pg_temp.heard();
select cdp.process_pending() as processed;
-- Each stay in a segment is a row of its own.
select * from pg_temp.history() where profile = 'ada' and segment = 'europe';
select * from pg_temp.heard();

------------------------------------------------------------------------------
-- 7. Windows move on by themselves: the sweep re-evaluates profiles when their
--    oldest bucket leaves a window. A window keeps events in buckets of
--    window/100 (whole seconds, aligned to the Unix epoch): {"minutes": 100}
--    has 60-second buckets, so an event at a whole minute counts until
--    exactly 100 minutes later.
------------------------------------------------------------------------------
-- (the clock is at 12:45; Ada's and Dee's orders were at 12:00)
select cdp.create_segment('recent_buyers', '{"event": "Order Completed", "within": {"minutes": 100}}') as members;
select pg_temp.who(cdp.segment_members('recent_buyers'));
select pg_temp.who(profile_id), next_expiry from cdp.profile_computed
 where profile_id in (select cdp.segment_members('recent_buyers')) order by 1;
-- One microsecond before: still inside.
set cdp.test_clock = '2025-01-10T13:39:59.999999Z';
select cdp.run_segment_sweep() as evaluated;
select pg_temp.who(cdp.segment_members('recent_buyers'));
-- At 12:00 + 100 minutes the orders no longer count: both leave, at that moment.
set cdp.test_clock = '2025-01-10T13:40:00Z';
select cdp.run_segment_sweep() as evaluated;
select * from pg_temp.history() where segment = 'recent_buyers';
select * from pg_temp.heard();
select cdp.run_segment_sweep() as evaluated;
-- An event inside a bucket counts until the bucket's end: an order at 13:40:30
-- is in the bucket that starts at 13:40:00, so it leaves at 15:20:00, 30 s early.
select cdp.track('Order Completed', user_id => 'bob', properties => '{"revenue": 5}', "timestamp" => '2025-01-10T13:40:30Z') is not null as sent;
select cdp.process_pending() as processed;
select next_expiry from cdp.profile_computed where profile_id = cdp.profile_id('user_id', 'bob');
set cdp.test_clock = '2025-01-10T15:19:59Z';
select cdp.run_segment_sweep() as evaluated;
select pg_temp.who(cdp.segment_members('recent_buyers'));
set cdp.test_clock = '2025-01-10T15:20:00Z';
select cdp.run_segment_sweep() as evaluated;
select count(*) as members from cdp.segment_members('recent_buyers');
select * from pg_temp.heard();

-- "Did not start a trial in the last 7 days": Bob started one on 01-08 00:00.
-- 7 days make 6048-second buckets; 01-08 00:00 falls in the one that starts at
-- 01-07 22:48:00, so Bob enters at 01-14 22:48:00 (up to 1% of the window early).
select cdp.create_segment('no_recent_trial', '{"not": {"event": "Trial Started", "within": {"days": 7}}}') as members;
select pg_temp.who(cdp.segment_members('no_recent_trial'));
select next_expiry from cdp.profile_computed where profile_id = cdp.profile_id('user_id', 'bob');
set cdp.test_clock = '2025-01-14T22:47:59Z';
select cdp.run_segment_sweep() as evaluated;
select cdp.evaluate('{"not": {"event": "Trial Started", "within": {"days": 7}}}', cdp.profile_id('user_id', 'bob')) as bob_now;
set cdp.test_clock = '2025-01-14T22:48:00Z';
select cdp.evaluate('{"not": {"event": "Trial Started", "within": {"days": 7}}}', cdp.profile_id('user_id', 'bob')) as bob_now;
select cdp.run_segment_sweep() as evaluated;
select * from pg_temp.history() where segment = 'no_recent_trial';
select * from pg_temp.heard();
-- Nothing is left to expire.
select count(*) as scheduled from cdp.profile_computed where next_expiry is not null;

-- Relative dates in a stored rule: no state says when they flip, so the sweep
-- re-evaluates every profile. Ada's login of 01-08 09:00 stops being "within
-- 7 days" at 01-15 09:00.
select cdp.create_segment('recent_login', '{"trait": "last_login", "op": ">", "value": {"days_ago": 7}}') as members;
set cdp.test_clock = '2025-01-15T08:59:59Z';
select cdp.run_segment_sweep() as evaluated;
select pg_temp.who(cdp.segment_members('recent_login'));
set cdp.test_clock = '2025-01-15T09:00:00Z';
select cdp.run_segment_sweep() as evaluated;
select * from pg_temp.history() where segment = 'recent_login';
select * from pg_temp.heard();
select cdp.drop_segment('recent_login') as exited;

------------------------------------------------------------------------------
-- 8. Nested rules and segments of segments.
------------------------------------------------------------------------------
set cdp.test_clock = '2025-01-15T10:00:00Z';
-- "Pro, and either a repeat buyer or outside France".
select cdp.create_segment('pro_engaged', '{"and": [{"segment": "pro"},
  {"or": [{"segment": "repeat_buyers"}, {"not": {"trait": "country", "op": "=", "value": "FR"}}]}]}') as members;
-- Bob goes pro: he enters "pro" and, in the same evaluation, "pro_engaged".
select cdp.identify(user_id => 'bob', traits => '{"plan": "pro"}') is not null as sent;
select cdp.process_pending() as processed;
select * from pg_temp.history() where profile = 'bob' and exited_at is null;
select * from pg_temp.heard();
-- A segment that another refers to cannot be dropped.
select pg_temp.err($$select cdp.drop_segment('pro')$$);
select pg_temp.err($$select cdp.drop_segment('repeat_buyers')$$);
-- Cycles are refused: a rule that refers to itself...
select pg_temp.err($$select cdp.create_segment('loop', '{"segment": "loop"}')$$);
select pg_temp.err($$select cdp.create_segment('loop', '{"or": [{"trait": "plan", "op": "exists"}, {"not": {"segment": "loop"}}]}')$$);
-- ...and a -> b -> a cannot be built: a rule may only refer to segments that
-- exist, and "a" cannot refer to "b" before "b" exists.
select pg_temp.err($$select cdp.create_segment('a', '{"segment": "b"}')$$);
select cdp.create_segment('a', '{"trait": "plan", "op": "=", "value": "pro"}') as members;
select cdp.create_segment('b', '{"segment": "a"}') as members;
-- Writing the tables by hand is checked the same way: a cycle, or a bad rule,
-- is refused, naming the segment.
select pg_temp.err($$update cdp.segments set rule = '{"segment": "b"}' where name = 'a'$$);
select pg_temp.err($$insert into cdp.segments (name, rule) values ('typo', '{"trait": "plan", "op": "=="}')$$);
select cdp.drop_segment('b') as exited;
select cdp.drop_segment('a') as exited;
select pg_temp.err($$select cdp.drop_segment('a')$$);
select pg_temp.err($$select cdp.create_segment('pro', '{"trait": "plan", "op": "exists"}')$$);
select * from pg_temp.heard();

------------------------------------------------------------------------------
-- 9. Merges: two anonymous visitors, each in a segment, turn out to be one
--    person. The merged-away profile's memberships end; the survivor is
--    evaluated with both histories.
------------------------------------------------------------------------------
set cdp.test_clock = '2025-01-16T00:00:00Z';
select cdp.create_segment('pricing_viewers', '{"event": "Pricing", "type": "page"}') as members;
select cdp.create_segment('pricing_twice', '{"event": "Pricing", "type": "page", "count": {"op": ">=", "value": 2}}') as members;
select count(cdp.page(name => 'Pricing', anonymous_id => a)) as sent from (values ('anon-x'), ('anon-y')) v(a);
select cdp.process_pending() as processed;
select * from pg_temp.history() where profile like 'anon-%';
select * from pg_temp.heard();
set cdp.test_clock = '2025-01-16T01:00:00Z';
select cdp.identify(user_id => 'zed', anonymous_id => 'anon-x') is not null as sent;
select cdp.identify(user_id => 'zed', anonymous_id => 'anon-y') is not null as sent;
select cdp.process_pending() as processed;
select pg_temp.who(from_profile) as merged_away, pg_temp.who(into_profile) as survivor from cdp.profile_merges;
select * from pg_temp.history() where profile like '%anon-%';
select * from pg_temp.heard();
select cdp.profile('user_id', 'zed')->'segments' as zed_segments;
-- The merged-away profile keeps no state of its own.
select count(*) as merged_away_rows from cdp.profile_computed pc join cdp.profile_merges m on m.from_profile = pc.profile_id;

------------------------------------------------------------------------------
-- 10. Dropping a segment: its members exit (history and outbox kept), it is gone.
------------------------------------------------------------------------------
select cdp.drop_segment('pricing_twice') as exited;
select kind, pg_temp.who(profile_id) as profile, payload->>'segment' as segment, occurred_at
  from cdp.outbox where payload->>'segment' = 'pricing_twice' order by id;
select * from pg_temp.heard();
select name, members from cdp.segment_sizes order by segment_id;

-- More than 100 changes in one write make one summary notification per segment
-- (the outbox still has a row for each).
select count(cdp.identify(user_id => 'bulk-' || i, traits => '{"source": "import"}')) as sent from generate_series(1, 101) i;
select cdp.process_pending() as processed;
-- (the 101 newcomers never started a trial: they entered "no_recent_trial" in that one batch)
select * from pg_temp.heard();
select cdp.create_segment('imported', '{"trait": "source", "op": "=", "value": "import"}') as members;
select * from pg_temp.heard();
select cdp.drop_segment('imported') as exited;
select * from pg_temp.heard();
select kind, count(*) from cdp.outbox where payload->>'segment' = 'imported' group by kind order by kind;

-- Afterwards everything is consistent: a full evaluation changes nothing.
select cdp.evaluate_segments() as changes;
select * from pg_temp.heard();
select dblink_disconnect('listener');
drop extension dblink;
reset cdp.test_clock;

------------------------------------------------------------------------------
-- Numbers are read from jsonb's binary form, not its text: integers,
-- decimals, exponents, big and negative values compare as their JSON text
-- would. "sql" counts the same test over numeric; preview_segment (a
-- sequential scan) and cdp.evaluate (a probe by id) must both agree with it.
------------------------------------------------------------------------------
create function pg_temp.sql_count(test text) returns bigint language plpgsql as $$
declare n bigint;
begin
  execute format('select count(*) from cdp.profiles where jsonb_typeof(traits->''n'') = ''number'' and (traits->>''n'')::numeric %s', test) into n;
  return n;
end $$;
select count(cdp.identify(user_id => 'num-' || i, traits => jsonb_build_object('n', v))) as sent
  from (values (1, '0'::jsonb), (2, '25'), (3, '1000.0'), (4, '-0.5'), (5, '123.456'), (6, '1e20'),
               (7, '12345678901234567890'), (8, '9007199254740993'), (9, '-42'), (10, '0.1'),
               (11, '0.30000000000000004'), (12, '-1234567.0000001')) x(i, v);
select cdp.process_pending() as processed;
select rule, (select members from cdp.preview_segment(rule::jsonb, 0)) as preview,
       (select count(*) from cdp.profiles p where cdp.evaluate(rule::jsonb, p.profile_id)) as evaluate,
       pg_temp.sql_count(test) as sql
  from (values
    ('{"trait": "n", "op": ">", "value": 100}', '> 100'),
    ('{"trait": "n", "op": "=", "value": 1000}', '= 1000'),
    ('{"trait": "n", "op": "<", "value": 0}', '< 0'),
    ('{"trait": "n", "op": "between", "value": [0.1, 123.456]}', 'between 0.1 and 123.456'),
    ('{"trait": "n", "op": ">=", "value": 1e19}', '>= 1e19'),
    ('{"trait": "n", "op": "=", "value": 9007199254740993}', '= 9007199254740993'),
    ('{"trait": "n", "op": ">", "value": 0.3}', '> 0.3'),
    ('{"trait": "n", "op": "<", "value": -1234567}', '< -1234567')) r(rule, test);
