# shellcheck shell=bash
# kind "braze": to Braze's POST /users/track (contract sink
# test/e2e/contracts/braze.mjs). Sourced by connectors.sh.
#   mapping    identify -> an attributes object (standard fields, custom
#              attributes); track -> an event with app_id and ISO time; Order
#              Completed -> one purchase per product; page -> "Page Viewed";
#              anonymous -> a user alias that creates the profile; Bearer key
#   audiences  a segment enter adds the segment to the array attribute cdp_segments
#   refused    a property Braze refuses ($...) is dead before sending; a
#              deletion notice is dropped (no /users/track counterpart) and counted
#   caps       80 identifies from 80 people and 30 orders of 3 products (90
#              purchases): no request holds more than 75 objects in an array
#   partial    Braze lists one event in the errors of its 201: that one is dead
#              with Braze's words, the rest of the request delivered
#   429        a 429 with X-RateLimit-Reset: sent again after the reset, not before
# braze_wait JS_EXPR [SECONDS]: waits until the braze sink's state makes JS_EXPR (of s) true.
braze_wait() {
  local deadline=$(($(now_ms) + ${2:-20} * 1000))
  until [ "$(sink_state braze "$1")" == "true" ]; do
    [ "$(now_ms)" -ge "$deadline" ] && return 1
    sleep 0.2
  done
}

test_braze() {
  local name="${N}_braze" key="bz-$RUN_ID" seg="${N}_bz_pro" got
  sink_control braze "{\"api_key\": \"$key\"}"
  # max_events: a kind's batch is at most caps().max_items rows (75), however
  # many objects per array its requests may hold.
  create_kind "$name" braze "{\"kind\": \"braze\", \"config\": {\"api_key\": \"$key\", \"app_id\": \"app-e2e\"},
    \"subscribe\": {\"events\": true, \"segments\": [\"$seg\"], \"deletions\": true},
    \"batch\": {\"max_events\": 75, \"max_wait_ms\": 2000}}"
  pass "braze destination created"

  # Mapping.
  sql "select cdp.identify('$U-b1', traits => '{\"email\": \"b1@example.com\", \"firstName\": \"Ada\",
         \"birthday\": \"1990-05-01T00:00:00+02:00\", \"gender\": \"female\", \"plan\": \"pro\",
         \"address\": {\"city\": \"London\", \"country\": \"GB\"}}', message_id => 'bz-$RUN_ID-1')" >/dev/null
  sql "select cdp.track('Signed Up', '$U-b1', properties => '{\"plan\": \"pro\", \"seats\": 3}',
         \"timestamp\" => '2025-03-10T12:00:00.25+00:00', message_id => 'bz-$RUN_ID-2')" >/dev/null
  sql "select cdp.track('Order Completed', '$U-b2', properties => '{\"order_id\": \"o-$RUN_ID\", \"currency\": \"eur\",
         \"products\": [{\"sku\": \"A\", \"name\": \"Shirt\", \"price\": 10, \"quantity\": 2}, {\"sku\": \"B\", \"price\": 5.5}]}',
         message_id => 'bz-$RUN_ID-3')" >/dev/null
  sql "select cdp.page('Pricing', '$U-b3', properties => '{\"url\": \"https://example.com/pricing\"}',
         message_id => 'bz-$RUN_ID-4')" >/dev/null
  sql "select cdp.track('Anon Viewed', anonymous_id => 'anon-$RUN_ID', message_id => 'bz-$RUN_ID-5')" >/dev/null
  wait_accepted braze 6 >/dev/null
  got=$(sink_state braze "JSON.stringify(s.arrays.attributes.filter(a => a.external_id === '$U-b1' && a.plan)
          .map(a => [a.email, a.first_name, a.dob, a.gender, a.home_city, a.country, a.plan]))")
  check_eq "identify: standard fields and custom attributes" "$got" \
    '[["b1@example.com","Ada","1990-05-01","F","London","GB","pro"]]'
  got=$(sink_state braze "JSON.stringify(s.arrays.events.filter(e => e.external_id === '$U-b1')
          .map(e => [e.name, e.app_id, e.time, e.properties.plan, e.properties.seats]))")
  check_eq "track: an event with app_id, ISO-8601 time and properties" "$got" \
    '[["Signed Up","app-e2e","2025-03-10T12:00:00.250000Z","pro",3]]'
  got=$(sink_state braze "s.arrays.purchases.filter(p => p.external_id === '$U-b2')
          .map(p => [p.product_id, p.currency, p.price, p.quantity, p.properties.order_id].join(':')).join(' ')")
  check_eq "Order Completed: one purchase per product" "$got" "A:EUR:10:2:o-$RUN_ID B:EUR:5.5:1:o-$RUN_ID"
  got=$(sink_state braze "s.arrays.events.filter(e => e.external_id === '$U-b3')
          .map(e => e.name + ':' + e.properties.name + ':' + e.properties.url).join(' ')")
  check_eq "page: a Page Viewed event with its name" "$got" "Page Viewed:Pricing:https://example.com/pricing"
  got=$(sink_state braze "JSON.stringify(s.arrays.events.filter(e => e.name === 'Anon Viewed')
          .map(e => [e.user_alias, e._update_existing_only, 'external_id' in e]))")
  check_eq "anonymous: a user alias that creates the profile" "$got" \
    "[[{\"alias_name\":\"anon-$RUN_ID\",\"alias_label\":\"anonymous_id\"},false,false]]"

  # Segment changes.
  sql "select cdp.create_segment('$seg', '{\"trait\": \"plan\", \"op\": \"=\", \"value\": \"pro\"}')" >/dev/null
  braze_wait "s.arrays.attributes.some(a => a.cdp_segments)"
  got=$(sink_state braze "JSON.stringify(s.arrays.attributes.filter(a => a.external_id === '$U-b1' && a.cdp_segments)
          .map(a => a.cdp_segments))")
  check_eq "a segment enter adds to the array attribute cdp_segments" "$got" "[{\"add\":[\"$seg\"]}]"

  # Refused before sending, and skipped.
  sql "select cdp.track('Odd', '$U-b4', properties => '{\"\$bad\": 1}', message_id => 'bz-$RUN_ID-6')" >/dev/null
  got=$(wait_sql 20 "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id)
                     where d.name = $(lit "$name")" 1)
  check_eq "a property Braze refuses is dead before sending" "$got" "1"
  # shellcheck disable=SC2016  # a literal $ in the expected reason
  check_eq "its reason names the property and Braze's rule" "$(dead_reasons "$name")" \
    'properties.$bad: Braze refuses names that start with $'
  sql "select cdp.erase('user_id', '$U-b3', 'e2e: braze deletion notice')" >/dev/null
  got=$(wait_sql 20 "select dropped from cdp.destinations where name = $(lit "$name")" 1)
  check_eq "a deletion notice has no /users/track counterpart: dropped and counted" "$got" "1"

  # 75 per array: 80 identifies from 80 people, and 90 purchases from 30 orders.
  sql "select count(cdp.identify('$U-cap-' || i, traits => jsonb_build_object('n', i),
         message_id => 'bz-$RUN_ID-cap-' || i)) from generate_series(1, 80) i" >/dev/null
  sql "select count(cdp.track('Order Completed', '$U-ord-' || i, properties => jsonb_build_object('order_id', 'o' || i,
         'products', '[{\"sku\": \"x\", \"price\": 1}, {\"sku\": \"y\", \"price\": 2}, {\"sku\": \"z\", \"price\": 3}]'::jsonb),
         message_id => 'bz-$RUN_ID-ord-' || i)) from generate_series(1, 30) i" >/dev/null
  braze_wait "s.arrays.attributes.filter(a => a.external_id.startsWith('$U-cap-')).length >= 80 &&
              s.arrays.purchases.filter(p => p.external_id.startsWith('$U-ord-')).length >= 90" 40
  got=$(sink_state braze "s.arrays.attributes.filter(a => a.external_id.startsWith('$U-cap-')).length")
  check_eq "80 identifies all arrive" "$got" "80"
  got=$(sink_state braze "s.arrays.purchases.filter(p => p.external_id.startsWith('$U-ord-')).length")
  check_eq "90 purchases all arrive" "$got" "90"
  got=$(sink_state braze "s.batches.filter(b => Math.max(b.attributes, b.events, b.purchases) > 75).length")
  check_eq "no request holds more than 75 objects in an array" "$got" "0"
  got=$(sink_state braze "s.batches.filter(b => b.attributes > 1).length")
  check_ge "identifies went in batches" "$got" 1
  got=$(sink_state braze "s.batches.filter(b => b.purchases > 3).length")
  check_ge "the 90 purchases of 30 orders went in batches of several orders" "$got" 2

  # Partial failure: Braze lists one event in the errors of its 201.
  sink_control braze '{"fail_name": "Poison"}'
  sql "select count(cdp.track(case when i = 3 then 'Poison' else 'Fine' end, '$U-pf-' || i,
         message_id => 'bz-$RUN_ID-pf-' || i)) from generate_series(1, 6) i" >/dev/null
  wait_sql 30 "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id)
               where d.name = $(lit "$name")" 2 >/dev/null
  wait_settled "$name" 30
  got=$(sink_state braze "s.arrays.events.filter(e => e.name === 'Fine').length")
  check_eq "the 5 other events of the request are delivered" "$got" "5"
  got=$(sink_state braze "s.batches.filter(b => b.events >= 2).length")
  check_ge "they shared requests with the failed one" "$got" 1
  got=$(sql "select l.payload->>'event' || ': ' || l.response from cdp.dead_letters l
             join cdp.destinations d using (destination_id) where d.name = $(lit "$name") and l.payload->>'event' = 'Poison'")
  check_eq "the listed event is dead with Braze's own error" "$got" "Poison: 'name' must be a string"
  got=$(sql "select failures from cdp.destinations where name = $(lit "$name")")
  check_eq "a listed error does not count towards the circuit" "$got" "0"

  # 429: the workspace is over its limit until X-RateLimit-Reset (now + 2 s).
  sink_control braze '{"fail_name": null, "rate_limited": 1}'
  sql "select cdp.track('After Limit', '$U-rl', message_id => 'bz-$RUN_ID-rl')" >/dev/null
  braze_wait "s.arrays.events.some(e => e.name === 'After Limit')" 30
  got=$(sink_state braze "s.arrays.events.filter(e => e.name === 'After Limit').length")
  check_eq "a rate-limited event arrives" "$got" "1"
  got=$(sink_state braze "s.requests.filter(r => r.status === 429).length")
  check_ge "the sink answered 429" "$got" 1
  got=$(sink_state braze "s.limited.early")
  check_eq "nothing was sent again before X-RateLimit-Reset" "$got" "0"
  got=$(sink_state braze "s.limited.first_after_ms >= s.limited.reset_ms")
  check_eq "it was sent again after the reset" "$got" "true"

  # Secrets.
  got=$(sql "select count(*) from cdp.audit_log where details::text like '%$key%'")
  check_eq "the audit log holds no API key" "$got" "0"
  no_violations braze
}
