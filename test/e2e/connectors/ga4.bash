# shellcheck shell=bash disable=SC2016
# Kind "ga4" end to end, against its contract sink (test/e2e/contracts/ga4.mjs):
# events of every type and a segment change mapped to Measurement Protocol
# events, what GA4 would drop silently refused before sending (dead letters
# with the rule), a 5xx retried, and the validation server through
# cdp.test_destination. Sourced by test/e2e/connectors.sh.

# ga4_poll SECONDS JS WANT: polls the sink's state until the JS expression of
# `s` prints WANT; prints the last value; fails after SECONDS.
ga4_poll() {
  local deadline=$(($(now_ms) + $1 * 1000)) got
  while :; do
    got=$(sink_state ga4 "$2")
    [ "$got" == "$3" ] && { printf '%s' "$got"; return 0; }
    [ "$(now_ms)" -ge "$deadline" ] && { printf '%s' "$got"; return 1; }
    sleep 0.2
  done
}
# ga4_event NAME JS: a JS expression of the accepted event `e` named NAME.
ga4_event() { sink_state ga4 "((e) => $2)(s.accepted.find((e) => e.name === \"$1\") || {})"; }

test_ga4() {
  local name="${N}_ga4" seg="${N}_ga4_vip" mid="G-E2E$RUN_ID" secret="e2e secret&$RUN_ID"
  local user="$U-ga4" anon="a-$RUN_ID-ga4" m="$N-ga4" got
  sink_control ga4 "{\"measurement_id\": \"$mid\", \"api_secret\": \"$secret\"}"
  create_kind "$name" ga4 "{\"kind\": \"ga4\", \"config\": {\"measurement_id\": \"$mid\", \"api_secret\": \"$secret\"},
    \"subscribe\": {\"events\": true, \"segments\": [\"$seg\"]}}"
  check_match "create_destination('$name', <sink>, kind ga4) returns an id" "$DEST_ID" '^[0-9]+$'
  sqlq "select cdp.create_segment($(lit "$seg"), '{\"trait\": \"e2e_ga4\", \"op\": \"=\", \"value\": \"in-$RUN_ID\"}')" ||
    fail "create_segment $seg"

  local ts="now() - interval '1 minute'"
  sqlq "select cdp.track('Order Completed', $(lit "$user"), $(lit "$anon"),
          '{\"order_id\": \"o-$RUN_ID\", \"revenue\": 42.5, \"currency\": \"EUR\",
            \"products\": [{\"product_id\": \"p-1\", \"name\": \"Mug\", \"price\": 21.25, \"quantity\": 2}]}',
          null, $ts, '$m-order');
        select cdp.track('Video Played', $(lit "$user"), $(lit "$anon"),
          '{\"Play Count\": 3, \"player\": {\"size\": \"large\"}}', null, $ts, '$m-video');
        select cdp.page('Pricing', $(lit "$user"), $(lit "$anon"), null, '{\"plan\": \"pro\"}',
          '{\"page\": {\"url\": \"https://shop.example/pricing\"}}', $ts, '$m-page');
        select cdp.screen('Settings', $(lit "$user-2"), null, null, null, null, $ts, '$m-screen');
        select cdp.identify($(lit "$user"), $(lit "$anon"), '{\"e2e_ga4\": \"in-$RUN_ID\"}', null, $ts, '$m-identify');
        select cdp.track('Old Event', $(lit "$user"), $(lit "$anon"), null, null, now() - interval '4 days', '$m-old');
        select cdp.track('session_start', $(lit "$user"), $(lit "$anon"), null, null, $ts, '$m-reserved');
        select cdp.track('Long Note', $(lit "$user"), $(lit "$anon"), '{\"note\": \"$(printf 'x%.0s' $(seq 101))\"}',
          null, $ts, '$m-long');" || fail "sending the ga4 events"

  got=$(wait_accepted ga4 5 30)
  check_eq "ga4: purchase, video_played, page_view, screen_view and the segment enter accepted" "$got" 5
  wait_settled "$name" || fail "ga4: the queue did not empty"
  check_eq "ga4: accepted event names" "$(sink_state ga4 's.accepted.map((e) => e.name).sort().join(" ")')" \
    "cdp_audience_entered page_view purchase screen_view video_played"
  check_eq "ga4: Order Completed is a purchase with GA4's e-commerce parameters" \
    "$(ga4_event purchase '[e.client_id, e.user_id, e.params.value, e.params.currency, e.params.transaction_id,
        e.params.items.map((i) => [i.item_id, i.item_name, i.price, i.quantity].join(":")).join(",")].join("|")')" \
    "$anon|$user|42.5|EUR|o-$RUN_ID|p-1:Mug:21.25:2"
  check_eq "ga4: timestamp_micros is the event's time (within the last 2 minutes)" \
    "$(ga4_event purchase 'Number.isInteger(e.timestamp_micros) && Date.now() * 1000 - e.timestamp_micros < 120e6')" true
  check_eq "ga4: custom names snake_cased, nested properties left out" \
    "$(ga4_event video_played 'JSON.stringify(e.params)')" '{"play_count":3}'
  check_eq "ga4: page is page_view with page_location and page_title" \
    "$(ga4_event page_view '[e.params.page_location, e.params.page_title, e.params.plan].join("|")')" \
    "https://shop.example/pricing|Pricing|pro"
  check_eq "ga4: screen is screen_view; without an anonymousId the userId is the client_id" \
    "$(ga4_event screen_view '[e.params.screen_name, e.client_id, e.user_id].join("|")')" "Settings|$user-2|$user-2"
  check_eq "ga4: the segment enter is cdp_audience_entered with audience_key" \
    "$(ga4_event cdp_audience_entered '[e.params.audience_key, e.client_id].join("|")')" "$seg|$user"

  local dead
  dead=$(dead_reasons "$name")
  check_eq "ga4: three dead letters (stale, reserved name, long value)" "$(printf '%s\n' "$dead" | grep -c .)" 3
  check_match "ga4: an event over 72 hours old is refused" "$dead" 'timestamp: GA4 accepts events at most 72 hours old'
  check_match "ga4: a reserved event name is refused" "$dead" 'event: "session_start" .*reserves'
  check_match "ga4: a value over 100 characters is refused, naming the property" "$dead" \
    'properties\.note: GA4 takes values of at most 100 characters'
  check_eq "ga4: identify is skipped (nothing dead, nothing sent for it)" \
    "$(sql "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id)
            where d.name = $(lit "$name") and l.payload->>'messageId' = '$m-identify'")" 0

  # A 5xx is retried until the API takes it.
  sink_control ga4 '{"status": 500}'
  sqlq "select cdp.track('Retry Test', $(lit "$user-3"), null, null, null, now(), '$m-retry')" || fail "sending the retry event"
  got=$(ga4_poll 20 's.requests.some((r) => r.status === 500)' true)
  check_eq "ga4: the sink answered 500" "$got" true
  sink_control ga4 '{"status": 0}'
  got=$(ga4_poll 30 's.accepted.some((e) => e.name === "retry_test")' true)
  check_eq "ga4: the event is delivered once the API is back" "$got" true

  # The validation server, through cdp.test_destination(..., debug => true).
  got=$(sql "select cdp.test_destination($(lit "$name"), jsonb_build_object('type', 'track', 'event', 'Signed Up',
               'anonymousId', 'a-debug', 'messageId', 'm-debug', 'timestamp', now()), true)")
  check_match "ga4: test_destination sends to /debug/mp/collect and reports no problem" "$got" \
    '"validation": \{"valid": true, .*"summary": ""\}'
  check_eq "ga4: the validation server got it, the collector did not" \
    "$(sink_state ga4 '[s.requests.filter((r) => r.path === "/debug/mp/collect").length > 0, s.accepted.some((e) => e.name === "sign_up")].join(" ")')" \
    "true false"

  no_violations ga4
  sqlq "select cdp.drop_segment($(lit "$seg"))" || true
}
