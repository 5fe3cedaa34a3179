# shellcheck shell=bash
# kind "amplitude": to Amplitude's HTTP V2 API, POST /2/httpapi (contract sink
# test/e2e/contracts/amplitude.mjs). Sourced by connectors.sh.
#   mapping    track -> an event with user_id, device_id, time (ms), insert_id
#              (the messageId), event_properties, user_properties (context.traits)
#              and context fields; identify -> "$identify" with user_properties.$set;
#              page -> "Viewed <name>"; the api_key and min_id_length in the body
#   skipped    group is not sent: dropped and counted
#   audiences  a segment enter arrives as an "Audience Entered" event
#   refused    a device_id shorter than min_id_length is dead before sending
#   caps       with batch.max_events 5, 12 events from 12 people: no request over 5
#   partial    a 400 that names one bad event (Amplitude refuses the whole batch):
#              that one is dead with Amplitude's words, the others sent again at once
#   throttled  a 429 naming one user: that user's event waits (30 s) while the
#              others of its batch arrive at once; the circuit stays closed
# amp_wait JS_EXPR [SECONDS]: waits until the amplitude sink's state makes JS_EXPR (of s) true.
amp_wait() {
  local deadline=$(($(now_ms) + ${2:-20} * 1000))
  until [ "$(sink_state amplitude "$1")" == "true" ]; do
    [ "$(now_ms)" -ge "$deadline" ] && return 1
    sleep 0.2
  done
}
# amp_dead NAME EVENT: the destination's dead letters of EVENT, their responses one per line.
amp_dead() {
  sql "select l.response from cdp.dead_letters l join cdp.destinations d using (destination_id)
       where d.name = $(lit "$1") and l.payload->>'event' = $(lit "$2") order by l.id"
}

test_amplitude() {
  local name="${N}_amplitude" key="amp-$RUN_ID" seg="${N}_amp_gold" got
  sink_control amplitude "{\"api_key\": \"$key\"}"
  create_kind "$name" amplitude "{\"kind\": \"amplitude\", \"config\": {\"api_key\": \"$key\", \"min_id_length\": \"6\"},
    \"subscribe\": {\"events\": true, \"segments\": [\"$seg\"]},
    \"batch\": {\"max_events\": 5, \"max_wait_ms\": 500}}"
  pass "amplitude destination created"

  # Mapping.
  sql "select cdp.track('Order Completed', '$U-a1', 'anon-a1-$RUN_ID', properties => '{\"total\": 42}',
         context => '{\"ip\": \"203.0.113.7\", \"os\": {\"name\": \"iOS\", \"version\": \"17.2\"},
                      \"device\": {\"type\": \"ios\", \"model\": \"iPhone15,2\"}, \"traits\": {\"plan\": \"pro\"}}',
         \"timestamp\" => '2025-03-10T12:00:00.25+00:00', message_id => 'amp-$RUN_ID-1')" >/dev/null
  sql "select cdp.identify('$U-a2', traits => '{\"amp_tier\": \"gold-$RUN_ID\", \"name\": \"Ada\"}',
         message_id => 'amp-$RUN_ID-2')" >/dev/null
  sql "select cdp.page('Pricing', '$U-a3', properties => '{\"url\": \"https://example.com/pricing\"}',
         message_id => 'amp-$RUN_ID-3')" >/dev/null
  sql "select cdp.\"group\"('g-$RUN_ID', '$U-a3', traits => '{\"name\": \"Initech\"}', message_id => 'amp-$RUN_ID-4')" >/dev/null
  wait_accepted amplitude 3 >/dev/null
  got=$(sink_state amplitude "JSON.stringify(s.accepted.filter(e => e.user_id === '$U-a1')
          .map(e => [e.event_type, e.device_id, e.time, e.insert_id, e.event_properties.total, e.user_properties.plan,
                     e.ip, e.os_name, e.os_version, e.platform, e.device_model, e.library]))")
  check_eq "track: an event with ids, time in ms, insert_id, properties and context" "$got" \
    "[[\"Order Completed\",\"anon-a1-$RUN_ID\",1741608000250,\"amp-$RUN_ID-1\",42,\"pro\",\"203.0.113.7\",\"iOS\",\"17.2\",\"ios\",\"iPhone15,2\",\"cdp\"]]"
  got=$(sink_state amplitude "JSON.stringify(s.accepted.filter(e => e.user_id === '$U-a2')
          .map(e => [e.event_type, e.user_properties.\$set]))")
  check_eq "identify: a \$identify event that sets the traits" "$got" \
    "[[\"\$identify\",{\"name\":\"Ada\",\"amp_tier\":\"gold-$RUN_ID\"}]]"
  got=$(sink_state amplitude "s.accepted.filter(e => e.user_id === '$U-a3')
          .map(e => [e.event_type, e.event_properties.name, e.event_properties.url].join(' ')).join()")
  check_eq "page: Viewed <name>, with its properties" "$got" "Viewed Pricing Pricing https://example.com/pricing"
  got=$(wait_sql 20 "select dropped from cdp.destinations where name = $(lit "$name")" 1)
  check_eq "group is not sent: dropped and counted" "$got" "1"

  # Segment changes.
  sql "select cdp.create_segment('$seg', '{\"trait\": \"amp_tier\", \"op\": \"=\", \"value\": \"gold-$RUN_ID\"}')" >/dev/null
  amp_wait "s.accepted.some(e => e.event_type === 'Audience Entered')"
  got=$(sink_state amplitude "s.accepted.filter(e => e.event_type === 'Audience Entered')
          .map(e => [e.user_id, e.event_properties.audience_key, e.event_properties.entered, /^cdp-outbox-/.test(e.insert_id)].join(':')).join(' ')")
  check_eq "a segment enter arrives as an Audience Entered event" "$got" "$U-a2:$seg:true:true"

  # Refused before sending: min_id_length is 6.
  sql "select cdp.track('Short Id', '$U-a4', 'a-123', message_id => 'amp-$RUN_ID-5')" >/dev/null
  got=$(wait_sql 20 "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id)
                     where d.name = $(lit "$name") and l.payload->>'event' = 'Short Id'" 1)
  check_eq "a device_id shorter than min_id_length is dead before sending" "$got" "1"
  check_eq "its reason names the field and Amplitude's rule" "$(amp_dead "$name" 'Short Id')" \
    "anonymousId: Amplitude refuses a device_id shorter than 6 characters (config min_id_length)"
  got=$(sink_state amplitude "s.requests.filter(r => r.status !== 200).length")
  check_eq "... and never reached Amplitude" "$got" "0"

  # Caps: 12 events from 12 people, at most 5 a request.
  sql "select count(cdp.track('Capped', '$U-acap-' || i, message_id => 'amp-$RUN_ID-cap-' || i))
       from generate_series(1, 12) i" >/dev/null
  amp_wait "s.accepted.filter(e => e.event_type === 'Capped').length >= 12" 30
  got=$(sink_state amplitude "s.accepted.filter(e => e.event_type === 'Capped').length")
  check_eq "12 events from 12 people all arrive" "$got" "12"
  got=$(sink_state amplitude "Math.max(...s.requests.map(r => r.items || 0))")
  check_ge "batched" "$got" 2
  got=$(sink_state amplitude "s.requests.filter(r => r.items > 5).length")
  check_eq "no request holds more than batch.max_events (5)" "$got" "0"

  # Partial failure: Amplitude refuses the whole batch and names the bad event.
  sink_control amplitude '{"reject_event": "Bad Event"}'
  sql "select count(cdp.track(case when i = 3 then 'Bad Event' else 'Partial' end, '$U-apart-' || i,
         message_id => 'amp-$RUN_ID-part-' || i)) from generate_series(1, 5) i" >/dev/null
  got=$(wait_sql 30 "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id)
                     where d.name = $(lit "$name") and l.payload->>'event' = 'Bad Event'" 1)
  check_eq "the event a 400 names is dead" "$got" "1"
  wait_settled "$name" 30
  check_eq "with Amplitude's words and the field" "$(amp_dead "$name" 'Bad Event')" \
    "HTTP 400: Invalid field values on some events (events_with_invalid_fields: event_type)"
  got=$(sink_state amplitude "s.requests.some(r => r.status === 400 && r.items > 1)")
  check_eq "the bad event shared its request with others" "$got" "true"
  got=$(sink_state amplitude "s.accepted.filter(e => e.event_type === 'Partial').length")
  check_eq "the other 4 events of the refused batch were sent again and arrive" "$got" "4"
  got=$(dead_reasons "$name" | wc -l)
  check_eq "no other event is dead" "$got" "2"
  got=$(sql "select failures from cdp.destinations where name = $(lit "$name")")
  check_eq "a refused event does not count towards the circuit" "$got" "0"
  sink_control amplitude '{"reject_event": null}'

  # Throttling: pause that user, not the destination.
  sink_control amplitude "{\"throttle_users\": [\"$U-ahot\"]}"
  local t0 t1
  t0=$(now_ms)
  sql "select count(cdp.track('Burst', case when i = 1 then '$U-ahot' else '$U-acold-' || i end,
         message_id => 'amp-$RUN_ID-burst-' || i)) from generate_series(1, 5) i" >/dev/null
  amp_wait "s.accepted.filter(e => e.event_type === 'Burst').length >= 4" 15
  got=$(sink_state amplitude "s.accepted.filter(e => e.event_type === 'Burst').map(e => e.user_id).sort().join(' ')")
  check_eq "the other users' events arrive at once" "$got" "$U-acold-2 $U-acold-3 $U-acold-4 $U-acold-5"
  got=$(sink_state amplitude "s.requests.some(r => r.status === 429 && r.items > 1)")
  check_eq "after a 429 that named the throttled user" "$got" "true"
  got=$(sql "select failures from cdp.destinations where name = $(lit "$name")")
  check_eq "a throttled user does not count towards the circuit" "$got" "0"
  sink_control amplitude '{"throttle_users": []}'
  amp_wait "s.accepted.some(e => e.user_id === '$U-ahot')" 60
  t1=$(now_ms)
  got=$(sink_state amplitude "s.accepted.filter(e => e.user_id === '$U-ahot').length")
  check_eq "the throttled user's event arrives later" "$got" "1"
  check_ge "after waiting about 30 s (ms)" "$((t1 - t0))" 25000
  got=$(sql "select failures from cdp.destinations where name = $(lit "$name")")
  check_eq "the circuit stayed closed" "$got" "0"
  no_violations amplitude
}
