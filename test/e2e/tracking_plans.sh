#!/usr/bin/env bash
# End-to-end: tracking plans (docs/tracking-plans.md) over HTTP, checked in the
# collector's request threads: blocked messages listed in the answer and kept
# in quarantine, kept ones stored with their violations, omitted properties,
# context.violations, a new version picked up within a second, a body key
# newer than the worker's snapshot, /metrics, and the same verdicts as cdp.ingest.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"

say "$E2E_NAME: tracking plans on $BASE"
section "setup"
setup_extension
SRC="plans_$RUN_ID"
PLAN="plan_$RUN_ID"
KEY=$(sql "select cdp.create_source('$SRC')") || die "cdp.create_source failed"
sql "select cdp.create_tracking_plan('$PLAN', '{\"events\": {\"Order Completed\": {\"properties\": {\"properties\": {
      \"properties\": {\"revenue\": {\"type\": \"number\"}, \"currency\": {\"type\": \"string\"}}, \"required\": [\"revenue\"]}}}},
    \"identify\": {\"properties\": {\"traits\": {\"required\": [\"email\"]}}}}')" >/dev/null || die "create_tracking_plan failed"
sql "select cdp.attach_tracking_plan('$SRC', '$PLAN', '{\"unplanned_events\": \"block\", \"violations\": \"block\"}')" >/dev/null ||
  die "attach_tracking_plan failed"
sleep 1.2  # the worker's key snapshot (plans with it) is at most a second old
post() { http POST "$1" -u "$KEY:" -H 'Content-Type: application/json' -d "$2"; }
stored() { sql "select count(*) from cdp.events where message_id = '$1'"; }

###############################################################################
section "block: the answer lists what the plan refused, quarantine keeps it"
post /v1/batch "{\"batch\": [
  {\"messageId\": \"$RUN_ID-ok\", \"type\": \"track\", \"userId\": \"u\", \"event\": \"Order Completed\", \"properties\": {\"revenue\": 5}},
  {\"messageId\": \"$RUN_ID-type\", \"type\": \"track\", \"userId\": \"u\", \"event\": \"Order Completed\", \"properties\": {\"revenue\": \"5\"}},
  {\"messageId\": \"$RUN_ID-unplanned\", \"type\": \"track\", \"userId\": \"u\", \"event\": \"Cart Viewed\"},
  {\"messageId\": \"$RUN_ID-who\", \"type\": \"identify\", \"userId\": \"u\", \"traits\": {\"name\": \"Ada\"}}]}"
check_eq "200 with 1 accepted and 3 rejected" "$STATUS $(jget "$BODY" accepted rejected)" "200 1 3"
check_eq "the rejected messages, by index, with the plan's reason" \
  "$(jget "$BODY" messages.0.index messages.0.error)" \
  "1 properties.revenue: must be number (Datatype-Mismatch, tracking plan \"$PLAN\" version 1)"
check_eq "an unplanned event is named as such" "$(jget "$BODY" messages.1.error)" \
  "event: \"Cart Viewed\" is not in the tracking plan (Unplanned-Event, tracking plan \"$PLAN\" version 1)"
check_eq "a missing trait is Required-Missing" "$(jget "$BODY" messages.2.error)" \
  "traits.email: \"email\" is required (Required-Missing, tracking plan \"$PLAN\" version 1)"
check_eq "only the good one is stored" "$(stored "$RUN_ID-ok")$(stored "$RUN_ID-type")$(stored "$RUN_ID-unplanned")" "100"
check_eq "the blocked ones are in quarantine" \
  "$(sql "select count(*) from cdp.quarantine where message_id like '$RUN_ID-%'")" "3"
check_eq "and their violations are recorded as blocked" \
  "$(sql "select string_agg(type || '@' || path, ' ' order by id) from cdp.violations where message_id like '$RUN_ID-%' and blocked")" \
  "Datatype-Mismatch@properties.revenue Unplanned-Event@event Required-Missing@traits.email"
post /v1/track "{\"messageId\": \"$RUN_ID-one\", \"userId\": \"u\", \"event\": \"Nope\"}"
check_eq "/v1/track of a blocked event: 200, rejected" "$STATUS $(jget "$BODY" accepted rejected)" "200 0 1"

###############################################################################
section "keep and omit: stored with violations, unplanned properties removed"
sql "select cdp.attach_tracking_plan('$SRC', '$PLAN', '{\"unplanned_properties\": \"omit\", \"context_violations\": true}')" >/dev/null
sleep 1.2
post /v1/track "{\"messageId\": \"$RUN_ID-keep\", \"userId\": \"u\", \"event\": \"Order Completed\", \"properties\": {\"revenue\": \"7\", \"coupon\": \"X\"}}"
check_eq "stored despite its violation" "$STATUS $(jget "$BODY" accepted)" "200 1"
check_eq "the unplanned property is gone" \
  "$(sql "select properties::text from cdp.events where message_id = '$RUN_ID-keep'")" '{"revenue": "7"}'
check_eq "context.violations says what was found" \
  "$(sql "select string_agg(v->>'type' || '@' || (v->>'path'), ' ') from cdp.events, jsonb_array_elements(context->'violations') v where message_id = '$RUN_ID-keep'")" \
  "Additional-Properties@properties.coupon Datatype-Mismatch@properties.revenue"
check_eq "and cdp.violations holds them, not blocked" \
  "$(sql "select count(*) filter (where not blocked) from cdp.violations where message_id = '$RUN_ID-keep'")" "2"

###############################################################################
section "a new version applies within a second"
sql "select cdp.update_tracking_plan('$PLAN', '{\"events\": {\"Order Completed\": {}}}')" >/dev/null
sleep 1.2
post /v1/track "{\"messageId\": \"$RUN_ID-v2\", \"userId\": \"u\", \"event\": \"Order Completed\", \"properties\": {\"revenue\": \"7\"}}"
check_eq "version 2 has no rule on revenue: only its omission (unplanned now) is recorded" \
  "$(sql "select string_agg(type, ',') from cdp.violations where message_id = '$RUN_ID-v2' and path = 'properties.revenue'")" \
  "Additional-Properties"
check_eq "against version 2" \
  "$(sql "select string_agg(distinct plan_version::text, ',') from cdp.violations where message_id = '$RUN_ID-v2'")" "2"

###############################################################################
section "a key in the body newer than the worker's snapshot"
NEWSRC="plans_new_$RUN_ID"
NEWKEY=$(sql "select cdp.create_source('$NEWSRC')")
sql "select cdp.attach_tracking_plan('$NEWSRC', '$PLAN', '{\"unplanned_events\": \"block\"}')" >/dev/null
http POST /v1/track -H 'Content-Type: application/json' -d "{\"writeKey\": \"$NEWKEY\", \"messageId\": \"$RUN_ID-new\", \"userId\": \"u\", \"event\": \"Nope\"}"
FIRST=$STATUS
http POST /v1/track -H 'Content-Type: application/json' -d "{\"writeKey\": \"$NEWKEY\", \"messageId\": \"$RUN_ID-new\", \"userId\": \"u\", \"event\": \"Nope\"}"
[ "$FIRST" = 503 ] && sleep 1.1 && http POST /v1/track -H 'Content-Type: application/json' \
  -d "{\"writeKey\": \"$NEWKEY\", \"messageId\": \"$RUN_ID-new\", \"userId\": \"u\", \"event\": \"Nope\"}"
check_eq "is never stored unchecked: checked (rejected) once the snapshot has it" "$STATUS $(jget "$BODY" rejected)" "200 1"
check_eq "nothing of it stored" "$(stored "$RUN_ID-new")" "0"

###############################################################################
section "observability"
http GET /metrics
check_match "/metrics counts violations by source and type" "$BODY" \
  "cdp_tracking_plan_violations_total\\{source=\"$SRC\",type=\"Datatype-Mismatch\"\\} [1-9]"
check_match "and blocked messages by source" "$BODY" "cdp_tracking_plan_blocked_total\\{source=\"$SRC\"\\} [1-9]"
check_eq "cdp.violation_counts per event and type" \
  "$(sql "select violations || '/' || blocked from cdp.violation_counts where source = '$SRC' and event = 'Order Completed' and type = 'Datatype-Mismatch'")" \
  "2/1"

###############################################################################
section "a plan proposed from generated traffic accepts that traffic"
GEN="plans_gen_$RUN_ID"
GENKEY=$(sql "select cdp.create_source('$GEN')")
send_generated() { # send_generated SEED COUNT: the event generator's /v1/batch bodies; prints the rejected total
  local rejected=0 body
  while IFS= read -r body; do
    http POST /v1/batch -u "$GENKEY:" -H 'Content-Type: application/json' --data-binary "$body"
    [ "$STATUS" = 200 ] || die "POST /v1/batch of generated events answered $STATUS: $BODY"
    rejected=$((rejected + $(jget "$BODY" rejected)))
  done < <("$ROOT/build/cdp-eventgen" --seed "$1" --count "$2" --batch 100)
  echo "$rejected"
}
check_eq "3,000 generated events sent without a plan" "$(send_generated 101 3000)" "0"
sql "select cdp.create_tracking_plan('gen_$RUN_ID', cdp.propose_tracking_plan('$GEN', 1))" >/dev/null || die "the proposal was refused"
check_eq "the proposal plans the generator's six events" \
  "$(sql "select count(*) from cdp.tracking_plan_versions v join cdp.tracking_plans p on p.id = v.plan_id, jsonb_object_keys(v.plan->'events') where p.name = 'gen_$RUN_ID'")" "6"
sql "select cdp.attach_tracking_plan('$GEN', 'gen_$RUN_ID', '{\"unplanned_events\": \"block\", \"violations\": \"block\"}')" >/dev/null
sleep 1.2
check_eq "attached with everything blocked, 1,000 other generated events all pass" "$(send_generated 202 1000)" "0"
post_gen() { http POST /v1/track -u "$GENKEY:" -H 'Content-Type: application/json' -d "$1"; }
post_gen "{\"userId\": \"u\", \"event\": \"Product Viewed\", \"messageId\": \"$RUN_ID-gen-bad\", \"properties\": {\"product_id\": 7, \"name\": \"x\", \"price\": 1, \"currency\": \"EUR\", \"quantity\": 1}}"
check_match "and a product_id sent as a number is blocked" "$(jget "$BODY" rejected messages.0.error)" \
  "^1 properties.product_id: must be string \(Datatype-Mismatch"
sql "select cdp.detach_tracking_plan('$GEN')" >/dev/null

###############################################################################
section "SQL gives the same verdicts"
sql "select cdp.attach_tracking_plan('$SRC', '$PLAN', '{\"unplanned_events\": \"block\"}')" >/dev/null
check_eq "cdp.ingest with the source's key blocks the same unplanned event" \
  "$(sql "select status || ': ' || error from cdp.ingest('{\"messageId\": \"$RUN_ID-sql\", \"type\": \"track\", \"userId\": \"u\", \"event\": \"Nope\"}', '$KEY')")" \
  "rejected: event: \"Nope\" is not in the tracking plan (Unplanned-Event, tracking plan \"$PLAN\" version 2)"
sql "select cdp.detach_tracking_plan('$SRC'), cdp.detach_tracking_plan('$NEWSRC')" >/dev/null
finish
