# shellcheck shell=bash disable=SC2016
# Kind "meta_capi" end to end, against its contract sink
# (test/e2e/contracts/meta_capi.mjs): website events and a segment change
# mapped to Conversions API events with hashed customer information, what
# would make Meta refuse a whole request kept out of it (dead letters with the
# rule), a request refused for one event split until that event is alone, and
# Meta's rate-limit error retried. Sourced by test/e2e/connectors.sh.

# meta_poll SECONDS JS WANT: polls the sink's state until the JS expression of
# `s` prints WANT; prints the last value; fails after SECONDS.
meta_poll() {
  local deadline=$(($(now_ms) + $1 * 1000)) got
  while :; do
    got=$(sink_state meta_capi "$2")
    [ "$got" == "$3" ] && { printf '%s' "$got"; return 0; }
    [ "$(now_ms)" -ge "$deadline" ] && { printf '%s' "$got"; return 1; }
    sleep 0.2
  done
}
# meta_event EVENT_ID JS: a JS expression of the accepted event `e` with that event_id.
meta_event() { sink_state meta_capi "((e) => $2)(s.accepted.find((e) => e.event_id === \"$1\") || {})"; }
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

test_meta_capi() {
  local name="${N}_meta" seg="${N}_meta_vip" token="EAAB-e2e-$RUN_ID" user="$U-meta" m="$N-meta" got dead
  local web='{"userAgent": "Mozilla/5.0 (e2e)", "ip": "203.0.113.7", "page": {"url": "https://shop.example/thanks"},
              "traits": {"email": " Ada@Example.com ", "phone": "+44 20 7946 0000"}}'
  local ts="now() - interval '1 minute'"
  sink_control meta_capi "{\"access_token\": \"$token\"}"
  create_kind "$name" meta_capi "{\"kind\": \"meta_capi\",
    \"config\": {\"pixel_id\": \"1234567890\", \"access_token\": \"$token\", \"test_event_code\": \"TEST$RUN_ID\"},
    \"subscribe\": {\"events\": true, \"segments\": [\"$seg\"]}, \"batch\": {\"max_events\": 50, \"max_wait_ms\": 1500}}"
  check_match "create_destination('$name', <sink>, kind meta_capi) returns an id" "$DEST_ID" '^[0-9]+$'
  sqlq "select cdp.create_segment($(lit "$seg"), '{\"trait\": \"e2e_meta\", \"op\": \"=\", \"value\": \"in-$RUN_ID\"}')" ||
    fail "create_segment $seg"

  sqlq "select cdp.track('Order Completed', $(lit "$user"), null,
          '{\"order_id\": \"o-$RUN_ID\", \"revenue\": 42.5, \"currency\": \"EUR\", \"coupon\": \"SPRING\",
            \"products\": [{\"product_id\": \"p-1\", \"price\": 21.25, \"quantity\": 2}]}', $(lit "$web"), $ts, '$m-order');
        select cdp.page('Pricing', $(lit "$user"), null, null, '{\"plan\": \"pro\"}', $(lit "$web"), $ts, '$m-page');
        select cdp.identify($(lit "$user"), null, '{\"e2e_meta\": \"in-$RUN_ID\", \"email\": \"ada@example.com\"}',
          null, $ts, '$m-identify');
        select cdp.screen('Settings', $(lit "$user"), null, null, null, $(lit "$web"), $ts, '$m-screen');
        select cdp.track('Old Event', $(lit "$user"), null, null, $(lit "$web"), now() - interval '8 days', '$m-old');
        select cdp.track('No Agent', $(lit "$user"), null, null, '{\"page\": {\"url\": \"https://shop.example/\"}}',
          $ts, '$m-noagent');
        select cdp.track('Order Completed', $(lit "$user"), null, '{\"revenue\": 10}', $(lit "$web"), $ts, '$m-nocurrency');" ||
    fail "sending the meta_capi events"

  got=$(wait_accepted meta_capi 3 30)
  check_eq "meta_capi: Purchase, PageView and AudienceEntered accepted" "$got" 3
  wait_settled "$name" || fail "meta_capi: the queue did not empty"
  check_eq "meta_capi: accepted events" "$(sink_state meta_capi 's.accepted.map((e) => e.event_name).sort().join(" ")')" \
    "AudienceEntered PageView Purchase"
  check_eq "meta_capi: Purchase: time, id, source, url and custom_data" \
    "$(meta_event "$m-order" '[Date.now() / 1000 - e.event_time < 120, e.action_source, e.event_source_url,
        e.custom_data.value, e.custom_data.currency, e.custom_data.order_id, e.custom_data.content_ids.join(","),
        JSON.stringify(e.custom_data.contents), e.custom_data.num_items, e.custom_data.coupon, e.test_event_code].join("|")')" \
    "true|website|https://shop.example/thanks|42.5|EUR|o-$RUN_ID|p-1|[{\"id\":\"p-1\",\"quantity\":2,\"item_price\":21.25}]|2|SPRING|TEST$RUN_ID"
  check_eq "meta_capi: user_data hashed as Meta requires (email trimmed and lower-cased, phone digits)" \
    "$(meta_event "$m-order" '[e.user_data.em[0], e.user_data.ph[0], e.user_data.external_id[0],
        e.user_data.client_ip_address, e.user_data.client_user_agent].join("|")')" \
    "$(sha ada@example.com)|$(sha 442079460000)|$(sha "$user")|203.0.113.7|Mozilla/5.0 (e2e)"
  check_eq "meta_capi: page is PageView" "$(meta_event "$m-page" '[e.event_name, e.custom_data.plan].join("|")')" "PageView|pro"
  check_eq "meta_capi: the segment enter is a system_generated AudienceEntered with audience_key" \
    "$(sink_state meta_capi '((e) => [e.action_source, e.custom_data.audience_key, e.user_data.em[0], /^cdp-outbox-/.test(e.event_id)].join("|"))(s.accepted.find((e) => e.event_name === "AudienceEntered"))')" \
    "system_generated|$seg|$(sha ada@example.com)|true"

  dead=$(dead_reasons "$name")
  check_eq "meta_capi: three dead letters (stale, no user agent, purchase without currency)" "$(printf '%s\n' "$dead" | grep -c .)" 3
  check_match "meta_capi: an event over 7 days old is never sent" "$dead" 'timestamp: Meta refuses events over 7 days old'
  check_match "meta_capi: a website event without a user agent is refused" "$dead" \
    'context\.userAgent: Meta requires client_user_agent for action_source website'
  check_match "meta_capi: a Purchase without currency is refused" "$dead" 'properties\.currency: Meta requires a value'
  check_eq "meta_capi: identify and screen are skipped" \
    "$(sql "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id)
            where d.name = $(lit "$name") and l.payload->>'messageId' in ('$m-identify', '$m-screen')")" 0

  # Meta refuses a whole request for one event: split until it is alone.
  sink_control meta_capi '{"fail_event_name": "Bad Event"}'
  sqlq "begin;
        select cdp.track('Good A', $(lit "$user-a"), null, null, $(lit "$web"), now(), '$m-good-a');
        select cdp.track('Bad Event', $(lit "$user-b"), null, null, $(lit "$web"), now(), '$m-bad');
        select cdp.track('Good C', $(lit "$user-c"), null, null, $(lit "$web"), now(), '$m-good-c');
        commit;" || fail "sending the split events"
  got=$(wait_accepted meta_capi 5 30)
  check_eq "meta_capi: the two good events of the refused request are delivered" "$got" 5
  check_eq "meta_capi: the refused request held more than one event (so it was split)" \
    "$(sink_state meta_capi 's.requests.some((r) => r.status === 400 && r.items >= 2)')" true
  wait_settled "$name" || fail "meta_capi: the queue did not empty after the split"
  dead=$(dead_reasons "$name")
  check_match "meta_capi: the bad event alone is dead with Meta's words" "$(printf '%s\n' "$dead" | tail -1)" \
    'Meta error 100: Invalid Parameter: an event named Bad Event is refused'
  check_eq "meta_capi: the good events are not dead" \
    "$(sql "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id)
            where d.name = $(lit "$name") and l.payload->>'messageId' in ('$m-good-a', '$m-good-c')")" 0
  sink_control meta_capi '{"fail_event_name": null}'

  # Meta's rate-limit error (code 17 in a 400) is retried, not dead.
  local refused
  refused=$(sink_state meta_capi 's.requests.filter((r) => r.status === 400).length')
  sink_control meta_capi '{"error_code": 17}'
  sqlq "select cdp.track('Retry Test', $(lit "$user-r"), null, null, $(lit "$web"), now(), '$m-retry')" || fail "sending the retry event"
  got=$(meta_poll 20 "s.requests.filter((r) => r.status === 400).length > $refused" true)
  check_eq "meta_capi: the sink answered code 17 (User request limit reached)" "$got" true
  sink_control meta_capi '{"error_code": null}'
  got=$(meta_poll 30 's.accepted.some((e) => e.event_id === "'"$m-retry"'")' true)
  check_eq "meta_capi: the throttled event is delivered later" "$got" true

  no_violations meta_capi
  sqlq "select cdp.drop_segment($(lit "$seg"))" || true
}
