#!/usr/bin/env bash
# End-to-end: Segment's official Node.js SDK (@segment/analytics-node 3.x from
# npm) pointed at the cdp HTTP collector with its `host` option. Sends identify,
# track, page, screen, group, alias (test/e2e/sdk/send.mjs), then checks in SQL
# that each landed in cdp.events exactly once with the right fields, and that
# the sentAt-based clock-skew correction put `timestamp` on the server's clock,
# also for a client whose clock is hours off.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"
SDK_DIR="$ROOT/test/e2e/sdk"

say "$E2E_NAME: @segment/analytics-node against $BASE"
section "setup"
ensure_segment_sdk
SDK_VERSION=$(node -p 'require(process.argv[1]).version' "$SDK_DIR/node_modules/@segment/analytics-node/package.json")
check_match "@segment/analytics-node is version 3.x" "$SDK_VERSION" '^3\.'
setup_extension

SRC="segment_sdk_$RUN_ID"
KEY=$(sql "select cdp.create_source('$SRC')") || die "cdp.create_source failed"
SRC_ID=$(sql "select id from cdp.sources where name = '$SRC'")
pass "source $SRC created (id $SRC_ID)"

# send PREFIX SKEW_MS: runs send.mjs; its summary is in $SUMMARY.
send() {
  SUMMARY=$(cd "$SDK_DIR" && CDP_HOST="$BASE" CDP_WRITE_KEY="$KEY" CDP_PREFIX="$1" CDP_CLOCK_SKEW_MS="$2" \
    timeout 60 node send.mjs 2>"$E2E_TMP/sdk.err")
  local rc=$?
  if [ $rc = 0 ] && [ "$(jget "$SUMMARY" ok)" = true ]; then
    pass "SDK sent 8 calls with no error ($(jget "$SUMMARY" responses))"
  else
    fail "SDK run $1 failed (exit $rc): $SUMMARY $(cat "$E2E_TMP/sdk.err")"
  fi
}
one() { # one PREFIX-SUFFIX EXPR: EXPR over the single event with that messageId
  sql "select $2 from cdp.events where source_id = $SRC_ID and message_id = '$1'"
}

# check_run PREFIX SKEW_MS
check_run() {
  local p=$1 skew=$2 u="$1-user" a="$1-anon"
  check_eq "each of the 7 messageIds stored exactly once" \
    "$(sql "select count(*) || ' rows, ' || count(distinct message_id) || ' ids' from cdp.events
             where source_id = $SRC_ID and message_id in ('$p-identify', '$p-track', '$p-page', '$p-screen', '$p-group', '$p-alias', '$p-past')")" \
    "7 rows, 7 ids"
  check_eq "types by messageId" \
    "$(sql "select string_agg(message_id || '=' || type, ' ' order by message_id) from cdp.events
             where source_id = $SRC_ID and message_id like '$p-%'")" \
    "$p-alias=alias $p-group=group $p-identify=identify $p-page=page $p-past=track $p-screen=screen $p-track=track"
  check_eq "identify: user_id, anonymous_id, traits" \
    "$(one "$p-identify" "user_id || ' ' || anonymous_id || ' ' || (traits->>'email') || ' ' || (traits->>'plan') || ' ' || (traits->'logins')::text")" \
    "$u $a ada@example.com pro 3"
  check_eq "track: user_id, event, properties" \
    "$(one "$p-track" "user_id || ' ' || event || ' ' || (properties->'revenue')::text || ' ' || (properties->>'currency') || ' ' || (properties#>>'{products,0,sku}') || ' ' || (properties#>'{products,0,quantity}')::text")" \
    "$u Order Completed 42.5 EUR A-1 2"
  check_eq "page: anonymous_id, name, category, properties" \
    "$(one "$p-page" "anonymous_id || ' ' || name || ' ' || category || ' ' || (properties->>'path') || ' ' || coalesce(user_id, '-')")" \
    "$a Pricing Docs /pricing -"
  check_eq "screen: user_id, name, properties" \
    "$(one "$p-screen" "user_id || ' ' || name || ' ' || (properties->>'tab')")" "$u Home feed"
  check_eq "group: user_id, group_id, traits" \
    "$(one "$p-group" "user_id || ' ' || group_id || ' ' || (traits->>'name') || ' ' || (traits->'employees')::text")" \
    "$u $p-group Acme Inc 42"
  check_eq "alias: user_id, previous_id" "$(one "$p-alias" "user_id || ' ' || previous_id")" "$u $a"
  check_eq "track with the SDK's own messageId: found once by event name" \
    "$(sql "select count(*) || ' ' || min(type) || ' ' || min(user_id) || ' ' || (min(message_id) is not null) from cdp.events
             where source_id = $SRC_ID and event = '$p-auto-id'")" "1 track $u true"
  local all="source_id = $SRC_ID and (message_id like '$p-%' or event = '$p-auto-id')"
  check_eq "all 8 carry context.library.name = @segment/analytics-node, version $SDK_VERSION" \
    "$(sql "select count(*) from cdp.events where $all and context#>>'{library,name}' = '@segment/analytics-node'
             and context#>>'{library,version}' = '$SDK_VERSION'")" 8
  check_eq "all 8 have sent_at and original_timestamp from the SDK" \
    "$(sql "select count(*) from cdp.events where $all and sent_at is not null and original_timestamp is not null")" 8
  check_eq "all 8 got context.ip 127.0.0.1 (the SDK sends none)" \
    "$(sql "select count(*) from cdp.events where $all and context->>'ip' = '127.0.0.1'")" 8
  # The client's clock is off by skew: sent_at and original_timestamp are too;
  # timestamp = received_at - (sent_at - original_timestamp) is not.
  check_eq "sent_at is the client's clock (received_at + $((skew / 1000)) s, within 5 s)" \
    "$(sql "select count(*) from cdp.events where $all
             and abs(extract(epoch from sent_at - received_at) * 1000 - $skew) < 5000")" 8
  check_eq "timestamp within 5 s of received_at for the 7 calls made now" \
    "$(sql "select count(*) from cdp.events where $all and message_id <> '$p-past'
             and abs(extract(epoch from \"timestamp\" - received_at)) < 5 and \"timestamp\" <= received_at")" 7
  check_eq "timestamp of the call dated 10 minutes ago: received_at - 10 min, within 5 s" \
    "$(one "$p-past" "abs(extract(epoch from \"timestamp\" - (received_at - interval '10 minutes'))) < 5")" t
  local detail
  detail=$(one "$p-track" "'received_at ' || received_at || ', timestamp ' || \"timestamp\" || ', original_timestamp ' || original_timestamp || ', sent_at ' || sent_at")
  say "        ($detail)"
}

###############################################################################
section "SDK with a correct clock"
P1="$RUN_ID-sdk0"
send "$P1" 0
check_run "$P1" 0

section "SDK whose clock is 3 hours ahead"
P2="$RUN_ID-sdkA"
send "$P2" $((3 * 3600 * 1000))
check_run "$P2" $((3 * 3600 * 1000))

section "SDK whose clock is 90 minutes behind"
P3="$RUN_ID-sdkB"
send "$P3" $((-90 * 60 * 1000))
check_run "$P3" $((-90 * 60 * 1000))

###############################################################################
section "the same calls again (an app retrying): stored once"
before=$(sql "select count(*) from cdp.events where source_id = $SRC_ID")
send "$P1" 0
after=$(sql "select count(*) from cdp.events where source_id = $SRC_ID")
check_eq "only the call with a fresh SDK messageId added" "$((after - before))" 1
check_eq "the 7 messageIds still stored exactly once" \
  "$(sql "select count(*) from cdp.events where source_id = $SRC_ID and message_id like '$P1-%'")" 7
check_eq "nothing of this source was quarantined" \
  "$(sql "select count(*) from cdp.quarantine where source_id = $SRC_ID")" 0
check_eq "source total: 3 runs x 8 + 1" "$after" 25

finish
