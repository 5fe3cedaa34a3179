------------------------------------------------------------------------------
-- SQL ingestion: cdp.ingest, the clock it stamps with, and the typed
-- conveniences (track, identify, page, screen, group, alias).
------------------------------------------------------------------------------
create function cdp.now() returns timestamptz
as 'MODULE_PATHNAME', 'cdp_now' language c volatile;
comment on function cdp.now() is 'The server clock as cdp sees it: clock_timestamp(), unless cdp.test_clock is set (tests only).';

-- With its owner's rights: it sets ids, txids, times and ledger rows itself;
-- no role writes cdp.events or cdp.message_ids directly.
create function cdp.ingest(payload jsonb, write_key text default null)
returns table (message_id text, status text, error text)
as 'MODULE_PATHNAME', 'cdp_ingest' language c volatile called on null input
security definer set search_path = pg_catalog, pg_temp;
comment on function cdp.ingest(jsonb, text) is 'Validates and stores one Segment-spec message or a {"batch": [...]} envelope. One row per message: accepted, duplicate, or rejected (kept in cdp.quarantine with the error).';

-- The typed conveniences: build a message, ingest it, raise if it is invalid.
create function cdp.ingest_one(message jsonb, write_key text) returns text
language plpgsql volatile
set search_path = pg_catalog, pg_temp
as $$
declare
  r record;
begin
  select * into r from cdp.ingest(message, write_key);
  if r.status = 'rejected' then
    raise exception 'invalid %: %', message->>'type', r.error using errcode = '22023';
  end if;
  return r.message_id;
end $$;
comment on function cdp.ingest_one(jsonb, text) is 'Ingests one message and returns its messageId; raises 22023 naming the field if it breaks a rule (nothing is stored then).';

create function cdp.track(
  event text, user_id text default null, anonymous_id text default null,
  properties jsonb default null, context jsonb default null, "timestamp" timestamptz default null,
  message_id text default null, integrations jsonb default null, write_key text default null)
returns text language sql volatile
as $$ select cdp.ingest_one(jsonb_build_object('type', 'track', 'event', event, 'userId', user_id,
  'anonymousId', anonymous_id, 'properties', properties, 'context', context, 'timestamp', "timestamp",
  'messageId', message_id, 'integrations', integrations), write_key) $$;
comment on function cdp.track(text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text) is 'Records a track event (what a person did). Returns the messageId.';

create function cdp.identify(
  user_id text default null, anonymous_id text default null, traits jsonb default null,
  context jsonb default null, "timestamp" timestamptz default null, message_id text default null,
  integrations jsonb default null, write_key text default null)
returns text language sql volatile
as $$ select cdp.ingest_one(jsonb_build_object('type', 'identify', 'userId', user_id,
  'anonymousId', anonymous_id, 'traits', traits, 'context', context, 'timestamp', "timestamp",
  'messageId', message_id, 'integrations', integrations), write_key) $$;
comment on function cdp.identify(text, text, jsonb, jsonb, timestamptz, text, jsonb, text) is 'Records who a person is and their traits. Returns the messageId.';

create function cdp.page(
  name text default null, user_id text default null, anonymous_id text default null,
  category text default null, properties jsonb default null, context jsonb default null,
  "timestamp" timestamptz default null, message_id text default null, integrations jsonb default null,
  write_key text default null)
returns text language sql volatile
as $$ select cdp.ingest_one(jsonb_build_object('type', 'page', 'name', name, 'userId', user_id,
  'anonymousId', anonymous_id, 'category', category, 'properties', properties, 'context', context,
  'timestamp', "timestamp", 'messageId', message_id, 'integrations', integrations), write_key) $$;
comment on function cdp.page(text, text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text) is 'Records a web page view. Returns the messageId.';

create function cdp.screen(
  name text default null, user_id text default null, anonymous_id text default null,
  category text default null, properties jsonb default null, context jsonb default null,
  "timestamp" timestamptz default null, message_id text default null, integrations jsonb default null,
  write_key text default null)
returns text language sql volatile
as $$ select cdp.ingest_one(jsonb_build_object('type', 'screen', 'name', name, 'userId', user_id,
  'anonymousId', anonymous_id, 'category', category, 'properties', properties, 'context', context,
  'timestamp', "timestamp", 'messageId', message_id, 'integrations', integrations), write_key) $$;
comment on function cdp.screen(text, text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text) is 'Records a mobile app screen view. Returns the messageId.';

create function cdp."group"(
  group_id text, user_id text default null, anonymous_id text default null, traits jsonb default null,
  context jsonb default null, "timestamp" timestamptz default null, message_id text default null,
  integrations jsonb default null, write_key text default null)
returns text language sql volatile
as $$ select cdp.ingest_one(jsonb_build_object('type', 'group', 'groupId', group_id, 'userId', user_id,
  'anonymousId', anonymous_id, 'traits', traits, 'context', context, 'timestamp', "timestamp",
  'messageId', message_id, 'integrations', integrations), write_key) $$;
comment on function cdp."group"(text, text, text, jsonb, jsonb, timestamptz, text, jsonb, text) is 'Links a person to an account (group) and records the account''s traits. Returns the messageId.';

create function cdp.alias(
  previous_id text, user_id text, context jsonb default null, "timestamp" timestamptz default null,
  message_id text default null, integrations jsonb default null, write_key text default null)
returns text language sql volatile
as $$ select cdp.ingest_one(jsonb_build_object('type', 'alias', 'previousId', previous_id,
  'userId', user_id, 'context', context, 'timestamp', "timestamp", 'messageId', message_id,
  'integrations', integrations), write_key) $$;
comment on function cdp.alias(text, text, jsonb, timestamptz, text, jsonb, text) is 'Declares that previous_id and user_id are the same person. Returns the messageId.';
