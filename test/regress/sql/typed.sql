-- The typed conveniences: named parameters, an error naming the field.
\i test/regress/sql/setup.sql

set cdp.test_clock = '2025-03-01T12:00:00Z';

select cdp.track(event => 'Signed Up', user_id => 'u1', properties => '{"plan": "pro"}', message_id => 'ty1');
select cdp.identify(user_id => 'u1', traits => '{"email": "ada@example.com"}', message_id => 'ty2');
select cdp.page(name => 'Pricing', anonymous_id => 'a1', properties => '{"path": "/pricing"}', message_id => 'ty3');
select cdp.screen(name => 'Home', user_id => 'u1', message_id => 'ty4');
select cdp.group(group_id => 'acme', user_id => 'u1', traits => '{"employees": 40}', message_id => 'ty5');
select cdp.alias(previous_id => 'a1', user_id => 'u1', message_id => 'ty6');
select cdp.track('Order Completed', user_id => 'u1', "timestamp" => '2025-02-28 10:00:00+00', message_id => 'ty7');
select message_id, type, event, name, user_id, anonymous_id, group_id, previous_id, "timestamp",
       coalesce(properties, traits) as data
  from cdp.events order by id;
-- Retrying with the same message_id is harmless: the id comes back, nothing is added.
select cdp.track(event => 'Signed Up', user_id => 'u1', message_id => 'ty1');
select count(*) from cdp.events where message_id = 'ty1';

-- Invalid calls raise 22023 and name the field; nothing is stored, not even in quarantine.
select pg_temp.err($$select cdp.track(event => 'No One')$$);
select pg_temp.err($$select cdp.track(event => '', user_id => 'u1')$$);
select pg_temp.err($$select cdp.track(event => null, user_id => 'u1')$$);
select pg_temp.err($$select cdp.track(event => 'E', user_id => 'u1', properties => '[1,2]')$$);
select pg_temp.err($$select cdp.identify(user_id => 'u1', traits => '"vip"')$$);
select pg_temp.err($$select cdp.group(group_id => null, user_id => 'u1')$$);
select pg_temp.err($$select cdp.alias(previous_id => null, user_id => 'u1')$$);
select pg_temp.err($$select cdp.page(name => 'Home')$$);
select pg_temp.err($$select cdp.track(event => 'E', user_id => 'u1', write_key => 'nope')$$);
select count(*) as quarantined from cdp.quarantine;
reset cdp.test_clock;
