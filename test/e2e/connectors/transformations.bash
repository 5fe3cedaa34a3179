# shellcheck shell=bash
# Transformations (options.transform, docs/connectors/README.md): a SQL or
# PL/pgSQL function (event jsonb) returns jsonb runs on each message before the
# kind maps it. Sent to the segment contract sink. Sourced by connectors.sh.
#   checks     at creation: a missing function, a wrong return type, an owner
#              who may not execute it are refused naming options.transform
#   reshape    what the function returns is what is mapped and sent, by a kind
#              and by a plain webhook
#   drop       null drops the message, counted in destination_stats.dropped
#   raise      an error sends that message to the dead letters with the error
#              text; the others go on
#   loop       a function that never returns is stopped by transform_timeout_ms,
#              its message is a dead letter, the queue goes on
#   owner      it runs as the destination's owner (a superuser's as cdp_admin),
#              so it cannot read what the owner cannot
#   limits     a message a transformation makes too big for the kind is a dead letter
test_transformations() {
  local owner="e2e_owner_$RUN_ID" got name
  E2E_CLEANUP+=("sql \"drop function if exists public.e2e_tf_$RUN_ID(jsonb), public.e2e_tf_text_$RUN_ID(jsonb),
    public.e2e_tf_secret_$RUN_ID(jsonb); drop table if exists public.e2e_secret_$RUN_ID; drop role if exists $owner\" >/dev/null 2>&1")
  sqlq "create function public.e2e_tf_$RUN_ID(e jsonb) returns jsonb language plpgsql as \$\$
    begin
      case e->>'event'
        when 'Drop Me' then return null;
        when 'Raise' then raise exception 'refused % on purpose', e->>'userId';
        when 'Loop' then loop end loop;
        when 'Inflate' then return e || jsonb_build_object('properties', jsonb_build_object('pad', repeat('z', 40000)));
        else return e || jsonb_build_object('event', upper(e->>'event'),
                           'properties', coalesce(e->'properties', '{}') || jsonb_build_object('ran_as', current_user));
      end case;
    end \$\$;
    create function public.e2e_tf_text_$RUN_ID(e jsonb) returns text language sql as \$\$ select e::text \$\$;
    create table public.e2e_secret_$RUN_ID (v text);
    create function public.e2e_tf_secret_$RUN_ID(e jsonb) returns jsonb language sql as
      \$\$ select e || jsonb_build_object('secret', (select v from public.e2e_secret_$RUN_ID)) \$\$;
    revoke all on public.e2e_secret_$RUN_ID from public;
    create role $owner; grant cdp_admin to $owner;"
  local seg="{\"kind\": \"segment\", \"config\": {\"write_key\": \"wk\"}, \"subscribe\": {\"events\": true}"

  got=$(sql "select cdp.create_destination('${N}_t0', $(lit "$(sink_url segment)"), '$seg, \"transform\": \"public.nope_$RUN_ID\"}')" 2>&1)
  check_match "a missing function is refused" "$got" "options.transform: no function public.nope_$RUN_ID\\(jsonb\\)"
  got=$(sql "select cdp.create_destination('${N}_t0', $(lit "$(sink_url segment)"), '$seg, \"transform\": \"public.e2e_tf_text_$RUN_ID\"}')" 2>&1)
  check_match "a function that does not return jsonb is refused" "$got" "must return jsonb"
  sqlq "revoke execute on function public.e2e_tf_secret_$RUN_ID(jsonb) from public"
  got=$(sql "set role $owner; select cdp.create_destination('${N}_t0', $(lit "$(sink_url segment)"), '$seg, \"transform\": \"public.e2e_tf_secret_$RUN_ID\"}')" 2>&1)
  check_match "an owner who may not execute it is refused" "$got" "role $owner may not execute"
  sqlq "grant execute on function public.e2e_tf_secret_$RUN_ID(jsonb) to public"
  got=$(sql "select count(*) from cdp.destinations where name = '${N}_t0'")
  check_eq "nothing refused was stored" "$got" "0"

  name="${N}_tf"
  sql "set role $owner; select cdp.create_destination($(lit "$name"), $(lit "$(sink_url segment)"),
       '$seg, \"transform\": \"public.e2e_tf_$RUN_ID\", \"transform_timeout_ms\": 500}')" >/dev/null ||
    die "creating the transformed destination failed"
  check_eq "the destination's owner is the role that created it" \
    "$(sql "select owner from cdp.destinations where name = $(lit "$name")")" "$owner"
  # The same function on a plain webhook: transformations are not only for kinds.
  sink_control webhook '{"keep": true}'
  sql "set role $owner; select cdp.create_destination($(lit "${N}_tf_webhook"), $(lit "$(sink_url webhook)"),
       '{\"subscribe\": {\"events\": true}, \"transform\": \"public.e2e_tf_$RUN_ID\", \"transform_timeout_ms\": 500}')" >/dev/null ||
    die "creating the transformed webhook failed"
  local t0
  t0=$(now_ms)
  for e in "Order Completed" "Drop Me" "Raise" "Loop" "Inflate" "After Loop"; do
    sql "select cdp.track($(lit "$e"), '$U-tf-${e// /}', message_id => 'tf-$RUN_ID-${e// /}')" >/dev/null
  done
  wait_sql 30 "select count(*) from cdp.deliveries q join cdp.destinations d using (destination_id)
               where d.name = $(lit "$name")" 0 >/dev/null
  wait_accepted segment 2 >/dev/null
  got=$(sink_state segment "s.accepted.filter(m => m.messageId.startsWith('tf-$RUN_ID-'))
          .map(m => m.event + ':' + m.properties.ran_as).sort().join(' ')")
  check_eq "reshaped messages arrive as the function returned them, run as the owner" "$got" \
    "AFTER LOOP:$owner ORDER COMPLETED:$owner"
  got=$(wait_state webhook "s.accepted.filter(m => m.messageId.startsWith('tf-$RUN_ID-') && m.properties)
          .map(m => m.event + ':' + m.properties.ran_as).sort().join(' ')" \
    "AFTER LOOP:$owner Inflate:undefined ORDER COMPLETED:$owner" 20)
  check_eq "a webhook gets what the function returned too (no size limit of a kind there)" "$got" \
    "AFTER LOOP:$owner Inflate:undefined ORDER COMPLETED:$owner"
  check_ge "the queue went on past a function that never returns (within 10 s)" "$((10000 - ($(now_ms) - t0)))" 0
  got=$(sql "select dropped from cdp.destinations where name = $(lit "$name")")
  check_eq "null dropped one message, counted" "$got" "1"
  got=$(sql "select string_agg(l.payload->>'event' || ' => ' || l.response, ' | ' order by l.id)
             from cdp.dead_letters l join cdp.destinations d using (destination_id) where d.name = $(lit "$name")")
  check_match "an error is a dead letter with its text" "$got" "Raise => transformation failed: refused $U-tf-Raise on purpose"
  check_match "a loop is stopped by transform_timeout_ms" "$got" "Loop => transformation ran longer than transform_timeout_ms \\(500 ms\\)"
  check_match "a message made too big for the kind is a dead letter" "$got" "Inflate => payload: [0-9]+ bytes, over segment's limit of 32768 bytes a message"

  # A superuser's destination runs its function as cdp_admin, which may not read the table.
  name="${N}_tf_secret"
  sql "select cdp.create_destination($(lit "$name"), $(lit "$(sink_url segment)"),
       '$seg, \"transform\": \"public.e2e_tf_secret_$RUN_ID\"}')" >/dev/null || die "creating ${name} failed"
  sql "select cdp.track('Peek', '$U-tf-peek', message_id => 'tf-$RUN_ID-peek')" >/dev/null
  wait_settled "$name" 20
  got=$(dead_reasons "$name")
  check_match "a superuser's transformation runs as cdp_admin, without a superuser's rights" "$got" \
    "permission denied for table e2e_secret_$RUN_ID"
  no_violations segment
}
