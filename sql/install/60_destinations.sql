------------------------------------------------------------------------------
-- Destinations and delivery: webhooks with their options and counters, the
-- delivery queue, dead letters, the trigger that queues segment changes and
-- the functions that manage destinations.
------------------------------------------------------------------------------
create table cdp.destinations (
  destination_id   int generated always as identity primary key,
  name             text not null unique check (name <> '' and length(name) <= 200),
  url              text not null check (url ~ '^https?://'),
  options          jsonb not null default '{}',
  paused           boolean not null default false,
  failures         int not null default 0,
  circuit_open_until timestamptz,
  delivered        bigint not null default 0,
  failed_attempts  bigint not null default 0,
  dead             bigint not null default 0,
  consent_blocked  bigint not null default 0,
  latency_p50_ms   float8,
  latency_p99_ms   float8,
  last_delivery_at timestamptz,
  last_error       text,
  created_at       timestamptz not null default now(),
  owner            name not null default current_user,
  dropped          bigint not null default 0
);
comment on table cdp.destinations is 'Where activations go: a webhook URL with its options (headers, signing secret, subscriptions, batching, consent, PII policy, maximum age). Create them with cdp.create_destination; see docs/destinations.md.';
comment on column cdp.destinations.destination_id is 'Destination number.';
comment on column cdp.destinations.name is 'The destination''s name.';
comment on column cdp.destinations.url is 'Where requests are POSTed (http or https; TLS certificates are verified).';
comment on column cdp.destinations.options is 'Options as given to cdp.create_destination (the secret included: this table is for administrators only).';
comment on column cdp.destinations.paused is 'When true nothing is sent; deliveries wait (cdp.pause_destination, cdp.resume_destination).';
comment on column cdp.destinations.failures is 'Consecutive failed requests; at 5 the circuit opens.';
comment on column cdp.destinations.circuit_open_until is 'While in the future, the destination is left alone; after it, one probe request decides.';
comment on column cdp.destinations.delivered is 'Deliveries acknowledged with 2xx.';
comment on column cdp.destinations.failed_attempts is 'Requests that failed (each retry counts).';
comment on column cdp.destinations.dead is 'Deliveries moved to cdp.dead_letters.';
comment on column cdp.destinations.consent_blocked is 'Activations (events and segment changes) not queued because the person had not granted a consent category the destination requires.';
comment on column cdp.destinations.latency_p50_ms is 'Median time from queueing to acknowledgement over the recent deliveries.';
comment on column cdp.destinations.latency_p99_ms is '99th percentile of the same.';
comment on column cdp.destinations.last_delivery_at is 'When a delivery was last acknowledged.';
comment on column cdp.destinations.last_error is 'The last failure: status and the start of the response body, or the transport error.';
comment on column cdp.destinations.created_at is 'When it was created.';
comment on column cdp.destinations.owner is 'The role that created it: its transformation (options.transform) runs with this role''s privileges, or with cdp_admin''s when the owner is a superuser, never with a superuser''s.';
comment on column cdp.destinations.dropped is 'Messages not sent by choice: the transformation returned null, or the kind has no counterpart for the message (docs/connectors/).';
select pg_catalog.pg_extension_config_dump('cdp.destinations', '');
select pg_catalog.pg_extension_config_dump('cdp.destinations_destination_id_seq', '');

create table cdp.deliveries (
  id              bigint generated always as identity primary key,
  destination_id  int not null,
  profile_id      bigint not null,
  kind            text not null check (kind in ('event', 'segment_enter', 'segment_exit', 'deletion')),
  payload         jsonb not null,
  created_at      timestamptz not null default clock_timestamp(),
  next_attempt_at timestamptz not null default '-infinity',
  attempts        int not null default 0,
  batch_key       text,
  last_status     int,
  last_error      text
);
create index deliveries_order_idx on cdp.deliveries (destination_id, profile_id, id);
-- A queue: rows come and go all the time, so vacuum it early.
alter table cdp.deliveries set (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
  autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0.02);
create index deliveries_due_idx on cdp.deliveries (destination_id, next_attempt_at, id);
comment on table cdp.deliveries is 'The delivery queue: one row per activation and destination, written in the same transaction as the event processing or membership change it comes from. A row leaves when it is acknowledged (or moved to cdp.dead_letters). Per destination, a profile''s rows are sent in id order.';
comment on column cdp.deliveries.id is 'Queue order.';
comment on column cdp.deliveries.destination_id is 'The destination.';
comment on column cdp.deliveries.profile_id is 'The profile it is about (ordering is per profile).';
comment on column cdp.deliveries.kind is 'event, segment_enter, segment_exit or deletion (a notice from cdp.erase).';
comment on column cdp.deliveries.payload is 'What is sent (before the PII policy, applied at sending).';
comment on column cdp.deliveries.created_at is 'When it was queued (clock_timestamp()).';
comment on column cdp.deliveries.next_attempt_at is 'Not sent before this time (backoff after a failure).';
comment on column cdp.deliveries.attempts is 'Failed attempts so far.';
comment on column cdp.deliveries.batch_key is 'The Idempotency-Key of the request it was first sent in; retries resend the same rows with the same key.';
comment on column cdp.deliveries.last_status is 'HTTP status of the last failed attempt (0: no answer).';
comment on column cdp.deliveries.last_error is 'The last failure, cut to 1 KB.';
select pg_catalog.pg_extension_config_dump('cdp.deliveries', '');
select pg_catalog.pg_extension_config_dump('cdp.deliveries_id_seq', '');

create table cdp.dead_letters (
  id             bigint primary key,
  destination_id int not null,
  profile_id     bigint not null,
  kind           text not null,
  payload        jsonb not null,
  created_at     timestamptz not null,
  failed_at      timestamptz not null default clock_timestamp(),
  attempts       int not null,
  status         int,
  response       text
);
create index dead_letters_destination_idx on cdp.dead_letters (destination_id, id);
comment on table cdp.dead_letters is 'Deliveries given up on: a 4xx other than 408/429 at once, or retries past the destination''s max_age. cdp.replay_dead_letters queues them again.';
comment on column cdp.dead_letters.id is 'The delivery''s id.';
comment on column cdp.dead_letters.destination_id is 'The destination.';
comment on column cdp.dead_letters.profile_id is 'The profile.';
comment on column cdp.dead_letters.kind is 'event, segment_enter, segment_exit or deletion.';
comment on column cdp.dead_letters.payload is 'What was to be sent.';
comment on column cdp.dead_letters.created_at is 'When it was first queued.';
comment on column cdp.dead_letters.failed_at is 'When it was given up on.';
comment on column cdp.dead_letters.attempts is 'Attempts made.';
comment on column cdp.dead_letters.status is 'The last HTTP status (0: no answer).';
comment on column cdp.dead_letters.response is 'The last failure: "HTTP <status>: <start of the response body>", or the transport error.';
select pg_catalog.pg_extension_config_dump('cdp.dead_letters', '');

create trigger destinations_changed after insert or update of url, options or delete or truncate on cdp.destinations
  for each statement execute function cdp.rules_changed();
create function cdp.check_destination() returns trigger
as 'MODULE_PATHNAME', 'cdp_check_destination' language c;
comment on function cdp.check_destination() is 'Trigger: a destination''s URL must be http(s) with a host, its options must parse, and its transformation must be a function (jsonb) returns jsonb that its owner may execute, however the row is written (22023 naming the field).';
create trigger destinations_check before insert or update of url, options, owner on cdp.destinations
  for each row execute function cdp.check_destination();

-- Segment changes reach subscribed destinations in the same transaction as the
-- change. Restored outbox rows were turned into deliveries already, and those
-- are restored too: a restore queues nothing again.
create function cdp.queue_segment_deliveries() returns trigger language plpgsql
set search_path = pg_catalog, pg_temp as $$
begin
  if cdp.restoring() then
    return null;
  end if;
  insert into cdp.deliveries (destination_id, profile_id, kind, payload)
  select d.destination_id, o.profile_id, o.kind,
         jsonb_strip_nulls(o.payload || jsonb_build_object(
           'messageId', 'cdp-outbox-' || o.id,
           'userId', (select i.value from cdp.identities i where i.profile_id = o.profile_id and i.type = 'user_id'
                       order by i.first_seen limit 1),
           'traits', (select p.traits from cdp.profiles p where p.profile_id = o.profile_id)))
    from added o join cdp.destinations d
      on d.options->'subscribe'->'segments' ? (o.payload->>'segment')
   where cdp.consented(o.profile_id, d.options->'consent')
   order by o.id;
  -- Not delivered for want of consent: counted, not lost silently.
  update cdp.destinations d set consent_blocked = consent_blocked + x.n
    from (select d2.destination_id, count(*) as n from added o join cdp.destinations d2
            on d2.options->'subscribe'->'segments' ? (o.payload->>'segment')
           where not cdp.consented(o.profile_id, d2.options->'consent') group by 1) x
   where d.destination_id = x.destination_id;
  return null;
end $$;
comment on function cdp.queue_segment_deliveries() is 'Trigger: queues each segment enter/exit for the destinations subscribed to that segment (not for rows a restore brings back: their deliveries are restored with them).';
create trigger outbox_deliveries after insert on cdp.outbox referencing new table as added
  for each statement execute function cdp.queue_segment_deliveries();

create function cdp.create_destination(name text, url text, options jsonb default '{}') returns int
as 'MODULE_PATHNAME', 'cdp_create_destination' language c volatile;
comment on function cdp.create_destination(text, text, jsonb) is 'Creates a destination (a webhook, or a built-in kind: options.kind; a NULL url takes the kind''s published address) owned by the calling role, and returns its id. Options are checked: a bad one is refused naming its JSON path. From the next processed event on, what it subscribes to is queued for it.';

create function cdp.drop_destination(name text) returns bigint
language plpgsql as $$
declare d int; n bigint;
begin
  select destination_id into d from cdp.destinations where destinations.name = drop_destination.name;
  if d is null then raise exception 'name: no destination named "%"', name using errcode = '22023'; end if;
  delete from cdp.deliveries where destination_id = d;
  get diagnostics n = row_count;
  delete from cdp.dead_letters where destination_id = d;
  delete from cdp.destinations where destination_id = d;
  return n;
end $$;
comment on function cdp.drop_destination(text) is 'Removes a destination with its queue and dead letters; returns the deliveries dropped from the queue.';

create function cdp.pause_destination(name text) returns void
language plpgsql as $$
begin
  update cdp.destinations set paused = true where destinations.name = pause_destination.name;
  if not found then raise exception 'name: no destination named "%"', name using errcode = '22023'; end if;
end $$;
comment on function cdp.pause_destination(text) is 'Stops sending to a destination; its deliveries keep queueing.';

create function cdp.resume_destination(name text) returns void
language plpgsql as $$
begin
  update cdp.destinations set paused = false, failures = 0, circuit_open_until = null
   where destinations.name = resume_destination.name;
  if not found then raise exception 'name: no destination named "%"', name using errcode = '22023'; end if;
end $$;
comment on function cdp.resume_destination(text) is 'Sends to a paused (or circuit-broken) destination again, starting with what queued meanwhile.';

create function cdp.replay_dead_letters(destination text, since timestamptz default null, ids bigint[] default null)
returns bigint language plpgsql as $$
declare d int; n bigint;
begin
  select destination_id into d from cdp.destinations where name = destination;
  if d is null then raise exception 'destination: no destination named "%"', destination using errcode = '22023'; end if;
  with moved as (
    delete from cdp.dead_letters l
     where l.destination_id = d and (since is null or l.failed_at >= since) and (ids is null or l.id = any(ids))
    returning l.*)
  insert into cdp.deliveries (destination_id, profile_id, kind, payload)
  select destination_id, profile_id, kind, payload from moved order by id;
  get diagnostics n = row_count;
  return n;
end $$;
comment on function cdp.replay_dead_letters(text, timestamptz, bigint[]) is 'Queues a destination''s dead letters again (all, those failed since a time, or the given ids), as new deliveries after what is queued now. Returns how many.';

create view cdp.destination_stats as
  select d.name, d.paused, coalesce(d.circuit_open_until > now(), false) as circuit_open, d.delivered,
         (select count(*) from cdp.deliveries q where q.destination_id = d.destination_id) as queued,
         (select count(*) from cdp.deliveries q where q.destination_id = d.destination_id and q.attempts > 0) as retrying,
         d.dead, d.failed_attempts, d.consent_blocked, d.latency_p50_ms, d.latency_p99_ms,
         (select now() - min(q.created_at) from cdp.deliveries q where q.destination_id = d.destination_id) as lag,
         d.last_delivery_at, d.last_error, d.dropped, coalesce(d.options->>'kind', 'webhook') as kind
    from cdp.destinations d;
comment on view cdp.destination_stats is 'Per destination: delivered, queued, retrying, dead, consent-blocked, dropped (by its transformation or its kind), latency (p50/p99 from queueing to acknowledgement), lag (age of the oldest queued delivery) and kind.';

create function cdp.test_destination(destination text, message jsonb, debug boolean default false) returns jsonb
as 'MODULE_PATHNAME', 'cdp_test_destination' language c volatile;
comment on function cdp.test_destination(text, jsonb, boolean) is 'What the destination would send for one message, without sending it: {"kind", "outcome": "send" | "skip" | "reject", "reason", "request": {"url", "headers", "body"}} with secrets shown as <secret>; the transformation is not run. With debug => true a ga4 destination posts it to GA4''s validation server (/debug/mp/collect) and adds its "validation" answer. docs/connectors/.';
