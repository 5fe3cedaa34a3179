-- Computed traits: aggregates over each profile's events, kept as events arrive.
\i test/regress/sql/setup.sql
-- A person's name in this suite: their user id.
create function pg_temp.who(p bigint) returns text language sql as $$
  select value from cdp.identities where profile_id = p and type = 'user_id' $$;
-- Every computed trait (a row each) with its value for each person (a column each).
create temp view trait_values as
  select t.name as trait,
         (select pc.computed->t.name from cdp.profile_computed pc where pc.profile_id = cdp.profile_id('user_id', 'ada')) as ada,
         (select pc.computed->t.name from cdp.profile_computed pc where pc.profile_id = cdp.profile_id('user_id', 'bob')) as bob,
         (select pc.computed->t.name from cdp.profile_computed pc where pc.profile_id = cdp.profile_id('user_id', 'cy')) as cy
    from cdp.computed_traits t order by t.name;

------------------------------------------------------------------------------
-- 1. Definitions first: one trait for each kind, with event, type, where and
--    window filters. There is nobody yet, so each evaluates 0 profiles.
------------------------------------------------------------------------------
set cdp.test_clock = '2025-01-10T12:00:00Z';
select name, cdp.create_computed_trait(name, definition::jsonb) as evaluated from (values
  ('events',             '{"kind": "count"}'),
  ('identifies',         '{"kind": "count", "type": "identify"}'),
  ('page_views',         '{"kind": "count", "type": "page"}'),
  ('pricing_views',      '{"kind": "count", "type": "page", "event": "Pricing"}'),
  ('orders',             '{"kind": "count", "event": "Order Completed"}'),
  ('orders_100m',        '{"kind": "count", "event": "Order Completed", "within": {"minutes": 100}}'),
  ('revenue',            '{"kind": "sum", "event": "Order Completed", "property": "revenue"}'),
  ('eur_revenue_30d',    '{"kind": "sum", "event": "Order Completed", "property": "revenue", "within": {"days": 30},
                           "where": [{"property": "currency", "op": "=", "value": "EUR"}]}'),
  ('smallest_order',     '{"kind": "min", "event": "Order Completed", "property": "revenue"}'),
  ('largest_order',      '{"kind": "max", "event": "Order Completed", "property": "revenue"}'),
  ('average_order',      '{"kind": "avg", "event": "Order Completed", "property": "revenue"}'),
  ('first_sku',          '{"kind": "first", "event": "Order Completed", "property": "product.sku"}'),
  ('last_sku',           '{"kind": "last", "event": "Order Completed", "property": "product.sku"}'),
  ('favourite_category', '{"kind": "most_frequent", "event": "Order Completed", "property": "category"}'),
  ('recent_paths',       '{"kind": "unique", "type": "page", "property": "path", "limit": 2}')
) d(name, definition);
select name, definition from cdp.computed_traits where name in ('eur_revenue_30d', 'recent_paths') order by name;

------------------------------------------------------------------------------
-- 2. Events arrive, in several batches; the processor keeps every value up to date.
------------------------------------------------------------------------------
select count(cdp.identify(user_id => u)) as sent from (values ('ada'), ('bob'), ('cy')) v(u);
select cdp.process_pending() as processed;
-- Nobody did anything yet: counts and sums are 0, unique is [], the others null.
table trait_values;
-- Ada's orders (the last one's revenue is not a number and it has no sku), and
-- an anonymous visitor who browses and buys a little before logging in as Ada.
select count(cdp.track('Order Completed', user_id => u, anonymous_id => a, properties => p, "timestamp" => t)) as sent from (values
  ('ada', null, '{"revenue": 10, "currency": "EUR", "category": "toys", "product": {"sku": "T-0"}}'::jsonb, '2024-11-01T10:00:00Z'::timestamptz),
  ('ada', null, '{"revenue": 30, "currency": "EUR", "category": "books", "product": {"sku": "B-1"}}', '2025-01-02T10:00:00Z'),
  ('ada', null, '{"revenue": 120.5, "currency": "USD", "category": "games", "product": {"sku": "G-7"}}', '2025-01-05T10:00:00Z'),
  ('ada', null, '{"revenue": 45, "currency": "EUR", "category": "books", "product": {"sku": "B-2"}}', '2025-01-10T11:00:00Z'),
  ('ada', null, '{"revenue": "n/a", "category": "games"}', '2025-01-10T11:30:00Z'),
  (null, 'anon-1', '{"revenue": 0.25, "currency": "EUR", "category": "games", "product": {"sku": "G-1"}}', '2025-01-10T10:30:00Z'),
  -- Bob orders twice in the same second: first and last go by event order, and
  -- most_frequent breaks the tie with the smaller value ("games" < "toys").
  ('bob', null, '{"revenue": 10, "category": "toys", "product": {"sku": "T-1"}}', '2025-01-10T11:00:00Z'),
  ('bob', null, '{"revenue": 20, "category": "games", "product": {"sku": "T-2"}}', '2025-01-10T11:00:00Z')) v(u, a, p, t);
select count(cdp.page(name => n, anonymous_id => 'anon-1', properties => p, "timestamp" => t)) as sent from (values
  ('Home', '{"path": "/"}'::jsonb, '2025-01-10T09:00:00Z'::timestamptz),
  ('Pricing', '{"path": "/pricing"}', '2025-01-10T10:00:00Z')) v(n, p, t);
select cdp.process_pending() as processed;
table trait_values;
-- The visitor logs in: the anonymous profile merges into Ada's, and so do its aggregates.
select cdp.identify(user_id => 'ada', anonymous_id => 'anon-1') is not null as sent;
select count(cdp.page(name => n, user_id => 'ada', properties => p, "timestamp" => t)) as sent from (values
  ('Docs', '{"path": "/docs"}'::jsonb, '2025-01-10T11:00:00Z'::timestamptz),
  ('Pricing', '{"path": "/pricing"}', '2025-01-10T11:45:00Z')) v(n, p, t);
-- A late event, sent now but dated October, becomes the first by time.
select cdp.track('Order Completed', user_id => 'ada', properties => '{"product": {"sku": "L-0"}}',
                 "timestamp" => '2024-10-01T00:00:00Z') is not null as sent;
select cdp.process_pending() as processed;
select count(*) as merges from cdp.profile_merges;
table trait_values;
-- The same values in cdp.profile, found by any identifier.
select jsonb_pretty(cdp.profile('anonymous_id', 'anon-1')->'computed') as ada_computed;

------------------------------------------------------------------------------
-- 3. Recomputing from the events table gives exactly what was kept
--    incrementally, for every kind (values, the state behind them, and when
--    they next change).
------------------------------------------------------------------------------
create temp table incremental as select profile_id, computed, state, next_expiry from cdp.profile_computed;
select cdp.recompute_traits() as evaluated;
select pg_temp.who(pc.profile_id) as profile, t.key as trait, i.computed->t.key as incremental, t.value as recomputed
  from cdp.profile_computed pc join incremental i using (profile_id), jsonb_each(pc.computed) t
 where i.computed->t.key is distinct from t.value;
select count(*) as differences from ((table incremental except select profile_id, computed, state, next_expiry from cdp.profile_computed)
  union all (select profile_id, computed, state, next_expiry from cdp.profile_computed except table incremental)) d;
-- One trait alone; a name that does not exist is an error.
select cdp.recompute_traits('favourite_category') as evaluated;
select pg_temp.err($$select cdp.recompute_traits('nope')$$);
select count(*) as differences from ((table incremental except select profile_id, computed, state, next_expiry from cdp.profile_computed)
  union all (select profile_id, computed, state, next_expiry from cdp.profile_computed except table incremental)) d;
-- A trait defined after the fact is computed from the history at once.
select cdp.create_computed_trait('home_views', '{"kind": "count", "type": "page", "where": [{"property": "path", "op": "in", "value": ["/", "/home"]}]}') as evaluated;
select trait, ada, bob, cy from trait_values where trait = 'home_views';

------------------------------------------------------------------------------
-- 4. Windows: a computed trait over a window changes by itself as time passes.
--    {"minutes": 100} keeps 60-second buckets: Ada's orders at 10:30, 11:00 and
--    11:30 count until 12:10, 12:40 and 13:10; Bob's two at 11:00 until 12:40.
------------------------------------------------------------------------------
-- A segment on a computed trait moves with it.
select cdp.create_segment('busy_buyers', '{"computed": "orders_100m", "op": ">=", "value": 2}') as members;
select pg_temp.who(cdp.segment_members('busy_buyers')) as member;
select pg_temp.who(profile_id) as profile, next_expiry from cdp.profile_computed order by 1;
set cdp.test_clock = '2025-01-10T12:09:59Z';
select cdp.run_segment_sweep() as evaluated;
set cdp.test_clock = '2025-01-10T12:10:00Z';
select cdp.run_segment_sweep() as evaluated;
select trait, ada, bob from trait_values where trait = 'orders_100m';
set cdp.test_clock = '2025-01-10T12:40:00Z';
select cdp.run_segment_sweep() as evaluated;
select trait, ada, bob from trait_values where trait = 'orders_100m';
select pg_temp.who(profile_id) as profile, entered_at, exited_at from cdp.segment_membership order by 1;
set cdp.test_clock = '2025-01-10T13:10:00Z';
select cdp.run_segment_sweep() as evaluated;
select trait, ada, bob from trait_values where trait = 'orders_100m';
-- Only the 30-day window is left to move: its buckets are 25920 s (7.2 hours)
-- wide, so Ada's EUR order of 01-02 10:00 sits in the bucket that starts at
-- 01-02 09:36 and leaves the window at 02-01 09:36, 24 minutes early.
select pg_temp.who(profile_id) as profile, next_expiry from cdp.profile_computed where next_expiry is not null;
set cdp.test_clock = '2025-02-01T09:35:59Z';
select cdp.run_segment_sweep() as evaluated;
select trait, ada from trait_values where trait = 'eur_revenue_30d';
set cdp.test_clock = '2025-02-01T09:36:00Z';
select cdp.run_segment_sweep() as evaluated;
select trait, ada from trait_values where trait = 'eur_revenue_30d';
-- Recomputing at this later time agrees with what the sweep left.
truncate incremental;
insert into incremental select profile_id, computed, state, next_expiry from cdp.profile_computed;
select cdp.recompute_traits() as evaluated;
select count(*) as differences from ((table incremental except select profile_id, computed, state, next_expiry from cdp.profile_computed)
  union all (select profile_id, computed, state, next_expiry from cdp.profile_computed except table incremental)) d;
table trait_values;

------------------------------------------------------------------------------
-- 5. Computed traits in segment rules, in real time.
------------------------------------------------------------------------------
-- Ada is in from the start (revenue 205.75, mostly games); Bob's order of 140
-- takes his revenue to 170 and him in, as it is processed.
select cdp.create_segment('high_value', '{"and": [{"computed": "revenue", "op": ">=", "value": 150},
  {"computed": "favourite_category", "op": "in", "value": ["games", "books"]}]}') as members;
select cdp.track('Order Completed', user_id => 'bob', properties => '{"revenue": 140, "category": "games"}') is not null as sent;
select cdp.process_pending() as processed;
select trait, bob from trait_values where trait in ('revenue', 'favourite_category', 'orders');
select pg_temp.who(profile_id) as profile, kind, occurred_at from cdp.outbox
 where payload->>'segment' = 'high_value' order by id;
-- A computed trait a segment uses cannot be dropped.
select pg_temp.err($$select cdp.drop_computed_trait('revenue')$$);
select pg_temp.err($$select cdp.drop_computed_trait('favourite_category')$$);
select cdp.drop_segment('high_value') as exited;
select cdp.drop_computed_trait('favourite_category');
select pg_temp.err($$select cdp.drop_computed_trait('favourite_category')$$);
-- Its values are gone from every profile.
select count(*) as profiles_with_it from cdp.profile_computed where computed ? 'favourite_category';
select count(*) as traits from cdp.computed_traits;

------------------------------------------------------------------------------
-- 6. Bad definitions are refused with the JSON path of the bad member; nothing is stored.
------------------------------------------------------------------------------
select pg_temp.err(format('select cdp.create_computed_trait(%L, %L)', 'bad', definition)) from (values
  ('{"event": "Order Completed"}'),
  ('{"kind": "median", "property": "revenue"}'),
  ('{"kind": "count", "evnet": "Order Completed"}'),
  ('{"kind": "sum"}'),
  ('{"kind": "max", "property": ""}'),
  ('{"kind": "count", "property": "revenue"}'),
  ('{"kind": "count", "limit": 5}'),
  ('{"kind": "unique", "property": "path", "limit": 0}'),
  ('{"kind": "unique", "property": "path", "limit": 1001}'),
  ('{"kind": "count", "type": "alias"}'),
  ('{"kind": "count", "event": ""}'),
  ('{"kind": "count", "within": {"weeks": 2}}'),
  ('{"kind": "count", "within": {"days": 0}}'),
  ('{"kind": "count", "within": {"days": 1, "hours": 2}}'),
  ('{"kind": "count", "where": {"property": "currency"}}'),
  ('{"kind": "count", "where": [{"property": "currency", "op": "like", "value": "E%"}]}'),
  ('{"kind": "count", "where": [{"property": "at", "op": ">", "value": {"days_ago": 1}}]}'),
  ('{"kind": "count", "where": [{"property": "currency", "op": "=", "value": "EUR"}, 42]}'),
  ('[{"kind": "count"}]')
) d(definition);
select pg_temp.err($$select cdp.create_computed_trait('', '{"kind": "count"}')$$);
select pg_temp.err($$select cdp.create_computed_trait('orders', '{"kind": "count"}')$$);
select pg_temp.err($$select cdp.drop_computed_trait('nope')$$);
select count(*) as traits from cdp.computed_traits;
reset cdp.test_clock;
