# shellcheck shell=bash
# kind "mixpanel": to Mixpanel's POST /import?strict=1 (contract sink
# test/e2e/contracts/mixpanel.mjs). Sourced by connectors.sh.
#   mapping    track -> an event with time (ms), distinct_id, $insert_id
#              (the messageId, or a digest of one Mixpanel would refuse),
#              $user_id/$device_id and context properties; page -> "Viewed <name>";
#              Basic auth with the service account, project_id in the query
#   skipped    identify has no /import counterpart: dropped and counted
#   audiences  a segment enter arrives as an "Audience Entered" event
#   refused    an event name over 255 characters is dead before sending
#   caps       with batch.max_events 5, 12 events from 12 people: no request over 5
#   partial    strict mode lists one bad record in a 400: that one is dead with
#              Mixpanel's words, the others of its request imported (and not resent)
#   5xx        a 500 is retried, counts towards the circuit, and the event arrives
# mp_wait JS_EXPR [SECONDS]: waits until the mixpanel sink's state makes JS_EXPR (of s) true.
mp_wait() {
  local deadline=$(($(now_ms) + ${2:-20} * 1000))
  until [ "$(sink_state mixpanel "$1")" == "true" ]; do
    [ "$(now_ms)" -ge "$deadline" ] && return 1
    sleep 0.2
  done
}
# mp_dead NAME EVENT: the destination's dead letters of EVENT, their responses one per line.
mp_dead() {
  sql "select l.response from cdp.dead_letters l join cdp.destinations d using (destination_id)
       where d.name = $(lit "$1") and l.payload->>'event' = $(lit "$2") order by l.id"
}

test_mixpanel() {
  local name="${N}_mixpanel" seg="${N}_mp_pro" user="sa-$RUN_ID.mp-service-account" secret="mps-$RUN_ID" got
  sink_control mixpanel "{\"username\": \"$user\", \"secret\": \"$secret\", \"project_id\": \"31415\"}"
  create_kind "$name" mixpanel "{\"kind\": \"mixpanel\", \"config\": {\"project_id\": \"31415\",
      \"service_account_username\": \"$user\", \"service_account_secret\": \"$secret\"},
    \"subscribe\": {\"events\": true, \"segments\": [\"$seg\"]},
    \"batch\": {\"max_events\": 5, \"max_wait_ms\": 500}}"
  pass "mixpanel destination created"

  # Mapping.
  sql "select cdp.track('Order Completed', '$U-m1', 'anon-m1-$RUN_ID', properties => '{\"total\": 42, \"currency\": \"EUR\"}',
         context => '{\"ip\": \"203.0.113.7\", \"page\": {\"url\": \"https://shop.example/cart\"}, \"os\": {\"name\": \"iOS\"}}',
         \"timestamp\" => '2025-03-10T12:00:00.25+00:00', message_id => 'mp-$RUN_ID-1')" >/dev/null
  sql "select cdp.identify('$U-m2', traits => '{\"mp_tier\": \"gold-$RUN_ID\"}', message_id => 'mp-$RUN_ID-2')" >/dev/null
  sql "select cdp.page('Pricing', '$U-m3', category => 'Docs', message_id => 'mp_${RUN_ID}_3')" >/dev/null
  wait_accepted mixpanel 2 >/dev/null
  got=$(sink_state mixpanel "JSON.stringify(s.accepted.filter(r => r.properties.distinct_id === '$U-m1')
          .map(r => [r.event, r.properties.time, r.properties.\$insert_id, r.properties.\$user_id,
                     r.properties.\$device_id, r.properties.total, r.properties.ip, r.properties.\$current_url,
                     r.properties.\$os, r.properties.mp_lib]))")
  check_eq "track: an event with time in ms, ids, properties and context" "$got" \
    "[[\"Order Completed\",1741608000250,\"mp-$RUN_ID-1\",\"$U-m1\",\"anon-m1-$RUN_ID\",42,\"203.0.113.7\",\"https://shop.example/cart\",\"iOS\",\"cdp\"]]"
  got=$(sink_state mixpanel "s.accepted.filter(r => r.properties.distinct_id === '$U-m3')
          .map(r => [r.event, r.properties.name, r.properties.category].join(':')).join(' ')")
  check_eq "page: Viewed <name>, with name and category" "$got" "Viewed Pricing:Pricing:Docs"
  got=$(sink_state mixpanel "s.accepted.filter(r => r.properties.distinct_id === '$U-m3').map(r => r.properties.\$insert_id).join()")
  check_match "a messageId Mixpanel would refuse as \$insert_id becomes 32 hex digits" "$got" '^[0-9a-f]{32}$'
  got=$(wait_sql 20 "select dropped from cdp.destinations where name = $(lit "$name")" 1)
  check_eq "identify has no /import counterpart: dropped and counted" "$got" "1"

  # Segment changes.
  sql "select cdp.create_segment('$seg', '{\"trait\": \"mp_tier\", \"op\": \"=\", \"value\": \"gold-$RUN_ID\"}')" >/dev/null
  mp_wait "s.accepted.some(r => r.event === 'Audience Entered')"
  got=$(sink_state mixpanel "s.accepted.filter(r => r.event === 'Audience Entered' && r.properties.distinct_id === '$U-m2')
          .map(r => r.properties.audience_key + ':' + r.properties.entered + ':' + /^cdp-outbox-[0-9]+$/.test(r.properties.\$insert_id)).join(' ')")
  check_eq "a segment enter arrives as an Audience Entered event" "$got" "$seg:true:true"

  # Refused before sending.
  local long
  long="Long$(head -c 260 /dev/zero | tr '\0' 'g')"
  sql "select cdp.track('$long', '$U-m4', message_id => 'mp-$RUN_ID-long')" >/dev/null
  got=$(wait_sql 20 "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id)
                     where d.name = $(lit "$name") and l.payload->>'event' = '$long'" 1)
  check_eq "an event name over 255 characters is dead before sending" "$got" "1"
  check_eq "its reason names the field and Mixpanel's rule" "$(mp_dead "$name" "$long")" \
    "event: Mixpanel takes event names of at most 255 characters"
  got=$(sink_state mixpanel "s.requests.filter(r => r.status !== 200).length")
  check_eq "... and never reached Mixpanel" "$got" "0"

  # Caps: 12 events from 12 people, at most 5 a request.
  local before
  before=$(sink_state mixpanel 's.accepted.length')
  sql "select count(cdp.track('Capped', '$U-cap-' || i, message_id => 'mp-$RUN_ID-cap-' || i))
       from generate_series(1, 12) i" >/dev/null
  wait_accepted mixpanel $((before + 12)) 30 >/dev/null
  got=$(sink_state mixpanel "s.accepted.filter(r => r.event === 'Capped').length")
  check_eq "12 events from 12 people all arrive" "$got" "12"
  got=$(sink_state mixpanel "Math.max(...s.requests.map(r => r.items || 0))")
  check_ge "batched" "$got" 2
  got=$(sink_state mixpanel "s.requests.filter(r => r.items > 5).length")
  check_eq "no request holds more than batch.max_events (5)" "$got" "0"

  # Partial failure: strict mode imports the valid records and lists the bad one.
  sink_control mixpanel '{"reject_event": "Bad Record"}'
  sql "select count(cdp.track(case when i = 3 then 'Bad Record' else 'Partial' end, '$U-part-' || i,
         message_id => 'mp-$RUN_ID-part-' || i)) from generate_series(1, 5) i" >/dev/null
  got=$(wait_sql 30 "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id)
                     where d.name = $(lit "$name") and l.payload->>'event' = 'Bad Record'" 1)
  check_eq "the record Mixpanel lists in failed_records is dead" "$got" "1"
  wait_settled "$name" 30
  check_eq "with Mixpanel's field and message" "$(mp_dead "$name" 'Bad Record')" \
    "HTTP 400: event: 'event' Bad Record failed validation (the sink's reject_event mode)"
  got=$(dead_reasons "$name" | wc -l)
  check_eq "no other record is dead" "$got" "2"
  got=$(sink_state mixpanel "s.requests.some(r => r.status === 400 && r.items > 1)")
  check_eq "the bad record shared its request with others" "$got" "true"
  got=$(sink_state mixpanel "s.accepted.filter(r => r.event === 'Partial').length")
  check_eq "the other 4 records of its request were imported, once" "$got" "4"
  got=$(sql "select failures from cdp.destinations where name = $(lit "$name")")
  check_eq "a refused record does not count towards the circuit" "$got" "0"
  sink_control mixpanel '{"reject_event": null}'

  # A 500 is retried and counts towards the circuit; the event arrives once it is over.
  sink_control mixpanel '{"status": 500}'
  sql "select cdp.track('After Outage', '$U-m500', message_id => 'mp-$RUN_ID-500')" >/dev/null
  got=$(wait_sql 20 "select failures > 0 from cdp.destinations where name = $(lit "$name")" t)
  check_eq "a 500 counts towards the circuit" "$got" "t"
  sink_control mixpanel '{"status": null}'
  mp_wait "s.accepted.some(r => r.event === 'After Outage')" 30
  got=$(sink_state mixpanel "s.accepted.filter(r => r.event === 'After Outage').length")
  check_eq "the event retried after the 500 arrives" "$got" "1"
  no_violations mixpanel
}
