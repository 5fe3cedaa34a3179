-- Tracking plans: created and versioned, refused when the validator cannot use
-- them, attached to sources with options, and applied by cdp.ingest.
\i test/regress/sql/setup.sql

set cdp.test_clock = '2025-03-01T12:00:00Z';
select cdp.create_source('web') is not null as web_key;
select cdp.create_source('ios') is not null as ios_key;

-- A plan: Order Completed needs a numeric revenue and may name a currency;
-- identify needs an email; every message's context.app is an object.
select cdp.create_tracking_plan('shop', $${
  "events": {
    "Order Completed": {"properties": {"properties": {
      "type": "object",
      "properties": {"revenue": {"type": "number", "minimum": 0}, "currency": {"enum": ["EUR", "USD"]}},
      "required": ["revenue"]}}},
    "Signed Up": {}
  },
  "identify": {"properties": {"traits": {"properties": {"email": {"type": "string", "format": "email"}},
                                          "required": ["email"]}}},
  "common": {"properties": {"context": {"properties": {"app": {"type": "object"}}}}}
}$$) as version;
select name, version from cdp.tracking_plans;

-- Plans the validator cannot use are refused with the JSON path of the problem.
select pg_temp.err($$select cdp.create_tracking_plan('bad', '{"events": {"A": {"properties": {"x": {"typ": "string"}}}}}')$$);
select pg_temp.err($$select cdp.create_tracking_plan('bad', '{"events": {"A": {"$ref": "http://example.com/s.json"}}}')$$);
select pg_temp.err($$select cdp.create_tracking_plan('bad', '{"identify": {"definitions": {"a": {"allOf": [{"$ref": "#/definitions/a"}]}}, "$ref": "#/definitions/a"}}')$$);
select pg_temp.err($$select cdp.create_tracking_plan('bad', '{"events": {"A": {"properties": {"x": {"pattern": "(a)\\1"}}}}}')$$);
select pg_temp.err($$select cdp.create_tracking_plan('bad', '{"events": {"A": {"type": "strng"}}}')$$);
select pg_temp.err($$select cdp.create_tracking_plan('bad', '{"tracks": {}}')$$);
select pg_temp.err($$select cdp.create_tracking_plan('bad plan', '{}')$$);
select pg_temp.err($$select cdp.create_tracking_plan('shop', '{}')$$);
select count(*) as plans from cdp.tracking_plans;

-- Attaching: options are checked by name and value.
select pg_temp.err($$select cdp.attach_tracking_plan('web', 'shop', '{"unplanned": "block"}')$$);
select pg_temp.err($$select cdp.attach_tracking_plan('web', 'shop', '{"violations": "drop"}')$$);
select pg_temp.err($$select cdp.attach_tracking_plan('web', 'shop', '{"context_violations": "yes"}')$$);
select pg_temp.err($$select cdp.attach_tracking_plan('nope', 'shop')$$);
select pg_temp.err($$select cdp.attach_tracking_plan('web', 'nope')$$);
select cdp.attach_tracking_plan('sql', 'shop');
select s.name, p.name as plan, a.unplanned_events, a.unplanned_properties, a.violations, a.context_violations
  from cdp.source_tracking_plans a join cdp.sources s on s.id = a.source_id join cdp.tracking_plans p on p.id = a.plan_id;

-- Defaults (allow, keep, keep): everything is stored, violations recorded beside it.
select message_id, status, error from cdp.ingest($${"batch": [
  {"messageId": "ok", "type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 10, "currency": "EUR"}},
  {"messageId": "str", "type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": "10", "currency": "GBP"}},
  {"messageId": "missing", "type": "track", "userId": "u1", "event": "Order Completed", "properties": {}},
  {"messageId": "unplanned", "type": "track", "userId": "u1", "event": "Cart Viewed"},
  {"messageId": "who", "type": "identify", "userId": "u1", "traits": {"name": "Ada"}},
  {"messageId": "app", "type": "page", "userId": "u1", "name": "Home", "context": {"app": "web"}}
]}$$);
select message_id, message_type, event, plan_version, type, path, rule, value_type, message, blocked
  from cdp.violations order by id;
select count(*) as stored from cdp.events;

-- Block everything that breaks the plan: blocked messages go to quarantine
-- with the violation as their reason; the rest is stored.
select cdp.attach_tracking_plan('sql', 'shop', '{"unplanned_events": "block", "violations": "block"}');
select message_id, status, error from cdp.ingest($${"batch": [
  {"messageId": "b-ok", "type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 1}},
  {"messageId": "b-neg", "type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": -1}},
  {"messageId": "b-unplanned", "type": "track", "userId": "u1", "event": "Cart Viewed"}
]}$$);
select message_id, field, reason from cdp.quarantine order by id;
select message_id, type, path, blocked from cdp.violations where message_id like 'b-%' order by id;
-- A duplicate of a stored message records nothing new.
select status from cdp.ingest('{"messageId": "b-ok", "type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 1}}');
select count(*) as violations_of_b_ok from cdp.violations where message_id = 'b-ok';

-- Omit unplanned properties, and say what was found in context.violations.
select cdp.attach_tracking_plan('sql', 'shop', '{"unplanned_properties": "omit", "context_violations": true}');
select status from cdp.ingest($${"messageId": "o1", "type": "track", "userId": "u1", "event": "Order Completed",
  "properties": {"revenue": "5", "coupon": "X1"}}$$);
select properties, context->'violations' as violations from cdp.events where message_id = 'o1';

-- A new version applies to messages arriving from then on; violations name theirs.
select cdp.update_tracking_plan('shop', $${"events": {"Order Completed": {}, "Cart Viewed": {}}}$$) as version;
select status from cdp.ingest('{"messageId": "v2", "type": "track", "userId": "u1", "event": "Cart Viewed"}');
select count(*) as v2_violations from cdp.violations where message_id = 'v2';
select plan_id, version, plan ? 'identify' as has_identify from cdp.tracking_plan_versions order by version;
select pg_temp.err($$select cdp.update_tracking_plan('nope', '{}')$$);

-- Each source follows its own plan (or none): ios has none.
select cdp.detach_tracking_plan('sql');
select status from cdp.ingest('{"messageId": "free", "type": "track", "userId": "u1", "event": "Anything"}');
select count(*) as free_violations from cdp.violations where message_id = 'free';
select pg_temp.err($$select cdp.detach_tracking_plan('sql')$$);

-- Counts per source, event and type.
select source, message_type, event, type, violations, blocked from cdp.violation_counts
 order by source, message_type, event nulls first, type;

-- Dropping: refused while attached, then the plan and its versions go.
select cdp.attach_tracking_plan('web', 'shop');
select pg_temp.err($$select cdp.drop_tracking_plan('shop')$$);
select cdp.detach_tracking_plan('web');
select cdp.drop_tracking_plan('shop');
select count(*) as plans, (select count(*) from cdp.tracking_plan_versions) as versions from cdp.tracking_plans;

-- A plan proposed from what was sent: names, property types, required-ness.
truncate cdp.events;
select count(*) from cdp.ingest($${"batch": [
  {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 10, "currency": "EUR"}},
  {"type": "track", "userId": "u2", "event": "Order Completed", "properties": {"revenue": 12.5}},
  {"type": "track", "userId": "u3", "event": "Order Completed", "properties": {"revenue": 3, "currency": null}},
  {"type": "track", "userId": "u1", "event": "Signed Up"},
  {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com", "plan": "pro"}},
  {"type": "identify", "userId": "u2", "traits": {"email": "b@example.com"}}
]}$$);
select jsonb_pretty(cdp.propose_tracking_plan()) as proposal;
select jsonb_pretty(cdp.propose_tracking_plan('sql', 30, 0.5) #> '{identify,properties,traits,required}') as required_at_half;
-- The proposal is itself a plan cdp accepts.
select cdp.create_tracking_plan('proposed', cdp.propose_tracking_plan()) as version;
select pg_temp.err($$select cdp.propose_tracking_plan('nope')$$);
select pg_temp.err($$select cdp.propose_tracking_plan(null, 0)$$);

-- Violations are kept 30 days by default, like the quarantine.
select keep from cdp.retention where kind = 'violations';
