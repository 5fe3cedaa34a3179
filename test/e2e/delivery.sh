#!/usr/bin/env bash
# shellcheck disable=SC2016  # JavaScript expressions and cleanup commands in single quotes
# End-to-end: destinations. Real cluster, real processor and delivery workers,
# real HTTP sinks (test/e2e/sink.mjs, several instances on free ports). Events
# are sent with SQL (cdp.track, cdp.identify) and processed by the processor
# worker; what the sinks received is read back from their GET /_received.
# Checks, polling with deadlines (fixed waits only where "nothing happens" is
# the point):
#   errors      create_destination refuses bad options naming the JSON path
#               (options.subscribe.events[0].where[0].op, ...), a duplicate
#               name and bad URLs (no host, a space, a line break); nothing stored
#   subscribe   a subscribed event arrives as a Segment-spec object (type,
#               event, userId, properties, context, messageId, timestamp); events
#               not subscribed (by name, by type, by a where on a property) do not
#   signature   X-CDP-Signature verifies (sink --secret), Idempotency-Key,
#               X-CDP-Timestamp, configured headers, Content-Type
#   batch       max_events 5 sends {"batch": [...], "sentAt"} of at most 5 at
#               once; a partial batch goes after max_wait_ms, not before; a lone
#               message still comes in the envelope (docs/destinations.md)
#   pii         a hashed field is the sha256 (sha256sum) of the trimmed,
#               lower-cased value; dropped fields are absent; the stored event
#               keeps the original; segment changes are hashed too
#   consent     only events whose context.consent.categoryPreferences grants
#               every required category (true, not "true"); the others counted
#               in destination_stats.consent_blocked
#   retries     500 twice then ok: delivered once, same Idempotency-Key and body
#               on every attempt, backoff, attempts visible in cdp.deliveries and
#               destination_stats; 429 with Retry-After 2: the retry comes no
#               sooner than 2 s later; a hanging sink: timeout_ms, then retried
#   dead        400: in cdp.dead_letters with status and response at once, not
#               retried; replay_dead_letters by ids and by since: delivered
#   ordering    a profile's later events wait while its earlier one is retried
#               (Retry-After 5), while another profile at the same destination,
#               and the same profile at a second destination, go through
#   pause       a paused destination receives nothing while deliveries queue;
#               after resume_destination they arrive, in order
#   segments    segment_enter / segment_exit for a subscribed segment
#   outage      the sink down for a minute (see OUTAGE_MS) while 100 events
#               from 10 profiles are sent: the circuit opens (for 30 s at
#               first); every messageId delivered after it returns, without
#               intervention; duplicates only with the same Idempotency-Key;
#               each profile's events in order
#   stats       destination_stats: delivered, failed_attempts, dead, latency
# The destinations and the segment made here are dropped on exit, and the
# sinks stopped.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"
SCRIPT_START=$(now_ms)
elapsed() { echo "$((($(now_ms) - SCRIPT_START) / 1000)) s"; }
SINK_JS="$ROOT/test/e2e/sink.mjs"
SECRET="whsec-e2e-delivery-$RUN_ID"
# The issue asks that "a sink down for a minute and back loses nothing": the
# outage is a full minute by default. With the circuit breaker's schedule (open
# 30 s, a failed probe, then 60 s more) everything arrives about 95 s after the
# outage began, and the whole script takes a little over 2 minutes. OUTAGE_MS=20000
# shortens it by about a minute (the circuit then opens only once).
OUTAGE_MS=${OUTAGE_MS:-60000}
U="u-$RUN_ID"    # user id prefix
M="$RUN_ID-dl"   # messageId prefix
N="e2e_${RUN_ID}" # destination name prefix

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
# lit TEXT: an SQL string literal.
lit() { printf "'%s'" "${1//\'/\'\'}"; }
# sqlq SQL: runs SQL (several statements: one transaction), no output; errors on stderr.
sqlq() { cluster_psql "$CLUSTER_DIR" cdp -tAq -c "$1" >/dev/null; }
# track_sql EVENT USER MESSAGE_ID [PROPERTIES_JSON] [CONTEXT_JSON]: a cdp.track call.
track_sql() {
  local props=${4:-} ctx=${5:-}
  printf 'select cdp.track(%s, %s, message_id => %s%s%s);' "$(lit "$1")" "$(lit "$2")" "$(lit "$3")" \
    "${props:+, properties => $(lit "$props")::jsonb}" "${ctx:+, context => $(lit "$ctx")::jsonb}"
}
# create_dest NAME URL OPTIONS_JSON: sets DEST_ID.
create_dest() {
  DEST_ID=$(sql "select cdp.create_destination($(lit "$1"), $(lit "$2"), $(lit "$3")::jsonb)") ||
    die "cdp.create_destination($1, $2, $3) failed"
  pass "destination $1 created (id $DEST_ID)"
}
# dstat NAME COLUMNS: columns of cdp.destination_stats, |-separated.
dstat() { sql "select $2 from cdp.destination_stats where name = $(lit "$1")"; }
queued() { sql "select count(*) from cdp.deliveries q join cdp.destinations d using (destination_id) where d.name = $(lit "$1")"; }

# wait_until SECONDS COMMAND: until COMMAND (eval'd) succeeds; false after
# SECONDS. WAITED_MS is how long it took.
wait_until() {
  local t0 deadline
  t0=$(now_ms)
  deadline=$((t0 + $1 * 1000))
  while ! eval "$2"; do
    if [ "$(now_ms)" -ge "$deadline" ]; then
      WAITED_MS=$(($(now_ms) - t0))
      return 1
    fi
    sleep 0.1
  done
  WAITED_MS=$(($(now_ms) - t0))
  return 0
}

# Sinks: start_sink NAME [SECRET] starts one on a free port; SINK_URL[NAME] is its base URL.
declare -A SINK_URL
NEXT_SINK_PORT=19600
start_sink() {
  local name=$1 secret=${2:-} port pid
  port=$(free_port "$NEXT_SINK_PORT")
  NEXT_SINK_PORT=$((port + 1))
  local args=(--port "$port" --log "$E2E_TMP/sink-$name.log")
  [ -z "$secret" ] || args+=(--secret "$secret")
  node "$SINK_JS" "${args[@]}" >"$E2E_TMP/sink-$name.out" 2>"$E2E_TMP/sink-$name.err" &
  pid=$!
  E2E_CLEANUP+=("kill $pid 2>/dev/null")
  SINK_URL[$name]="http://127.0.0.1:$port"
  local deadline=$(($(now_ms) + 10000))
  until grep -q '^sink listening on ' "$E2E_TMP/sink-$name.out" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || die "sink $name exited: $(cat "$E2E_TMP/sink-$name.err")"
    [ "$(now_ms)" -lt "$deadline" ] || die "sink $name did not start within 10 s"
    sleep 0.05
  done
  pass "sink $name listening on $port${secret:+ (with --secret)}"
}
# ctl SINK JSON: POST /_control (must answer 200).
ctl() {
  local out
  out=$(curl -sS -m 5 -w ' %{http_code}' -H 'Content-Type: application/json' --data-binary "$2" \
    "${SINK_URL[$1]}/_control" 2>&1)
  [ "${out##* }" = 200 ] || die "sink $1: POST /_control $2 answered [$out]"
}
sink_up() { curl -s -m 1 -o /dev/null "${SINK_URL[$1]}/_control"; }

# sq SINK EXPR: a JavaScript expression over what the sink received, printed
# (strings bare, undefined as <missing>, other values as JSON). In scope:
#   a            every recorded request, oldest first (see sink.mjs)
#   at(p)        the requests to path p
#   items(e)     the messages a request carried (the batch's, or its body)
#   mids(e)      their messageIds
#   has(e, id)   whether request e carried messageId id
#   sent(p, id)  requests to p that carried id;  ok(p, id): those answered 200
#   msg(p, id)   the message id as delivered (answered 200) to p
#   t(e)         e.at in ms since the epoch
#   log(p, ids)  "id:status" for the requests to p carrying any of ids, in order
cat >"$E2E_TMP/q.js" <<'EOF'
let a;
try { a = JSON.parse(require('fs').readFileSync(0, 'utf8')); } catch { process.stdout.write('<no answer from the sink>'); process.exit(0); }
const at = (p) => a.filter((e) => e.path === p);
const items = (e) => (e.json && Array.isArray(e.json.batch) ? e.json.batch : e.json ? [e.json] : []);
const mids = (e) => items(e).map((m) => (m && typeof m === 'object' ? m.messageId : undefined));
const has = (e, id) => mids(e).includes(id);
const sent = (p, id) => at(p).filter((e) => has(e, id));
const ok = (p, id) => sent(p, id).filter((e) => e.status === 200);
const msg = (p, id) => { for (const e of ok(p, id)) for (const m of items(e)) if (m.messageId === id) return m; return undefined; };
const t = (e) => (e ? Date.parse(e.at) : NaN);
const log = (p, ids) => at(p).flatMap((e) => mids(e).filter((m) => ids.includes(m)).map((m) => `${m}:${e.status}`)).join(' ');
const v = eval(process.argv[2]);
process.stdout.write(v === undefined ? '<missing>' : typeof v === 'string' ? v : JSON.stringify(v));
EOF
sq() { curl -s -m 10 "${SINK_URL[$1]}/_received" 2>/dev/null | node "$E2E_TMP/q.js" "$2"; }
# delivered SINK PATH ID...: how many of the ids were answered 200 at PATH.
delivered() {
  local sink=$1 path=$2
  shift 2
  sq "$sink" "$(printf '%s' "$*" | node -e 'const ids = require("fs").readFileSync(0, "utf8").split(" ");
    process.stdout.write(`(${JSON.stringify(ids)}).filter((id) => ok(${JSON.stringify(process.argv[1])}, id).length > 0).length`)' "$path")"
}
# wait_delivered SECONDS WHAT SINK PATH ID...: until every id got a 200 at PATH.
wait_delivered() {
  WD_SECS=$1 WD_WHAT=$2 WD_SINK=$3 WD_PATH=$4
  shift 4
  WD_IDS=("$@")
  if wait_until "$WD_SECS" '[ "$(delivered "$WD_SINK" "$WD_PATH" "${WD_IDS[@]}")" = "${#WD_IDS[@]}" ]'; then
    pass "$WD_WHAT: ${#WD_IDS[@]} delivered within $WAITED_MS ms"
    return 0
  fi
  fail "$WD_WHAT: only $(delivered "$WD_SINK" "$WD_PATH" "${WD_IDS[@]}") of ${#WD_IDS[@]} delivered within $WD_SECS s"
  return 1
}

say "$E2E_NAME: destinations, delivery worker and real HTTP sinks"
section "setup"
command -v node >/dev/null || die "node is required (./dev installs it)"
command -v curl >/dev/null || die "curl is required"
command -v sha256sum >/dev/null || die "sha256sum is required"
setup_extension
wait_until 20 '[ "$(sql "select count(*) from cdp.workers where backend_type in ('"'cdp delivery', 'cdp processor'"')")" = 2 ]' ||
  die "cdp.workers does not list both 'cdp delivery' and 'cdp processor': [$(sql "select string_agg(backend_type, ', ') from cdp.workers")]"
pass "the processor and delivery workers are running"
[ "$(sql "select paused from cdp.processor_state")" = f ] || die "the processor is paused (cdp.processor_state.paused)"
SEGMENT="e2e_gold_$RUN_ID"
E2E_CLEANUP+=('sql "select cdp.drop_destination(name) from cdp.destinations where name like '"'$N%'"'" >/dev/null 2>&1')
E2E_CLEANUP+=('sql "select cdp.drop_segment(name) from cdp.segments where name = '"'$SEGMENT'"'" >/dev/null 2>&1')
start_sink main "$SECRET"
start_sink retry
start_sink dead
start_sink order
start_sink down

###############################################################################
section "errors: create_destination refuses bad input, naming the JSON path"
# bad_dest WHAT NAME URL OPTIONS REGEX: refused with an error matching REGEX.
bad_dest() {
  local out
  out=$(sql "select cdp.create_destination($(lit "$2"), $(lit "$3"), $(lit "$4")::jsonb)" 2>&1)
  local first=${out%%$'\n'*}
  if [[ "$first" == ERROR:* ]] && [[ "$first" =~ $5 ]]; then pass "$1: $first"; else fail "$1: expected an error matching /$5/, got [$out]"; fi
}
# (Options {} for the URL cases: a bad URL wrongly accepted then queues nothing.)
bad_dest "bad where op" "${N}_bad1" http://127.0.0.1:1/x \
  '{"subscribe": {"events": [{"event": "A"}, {"event": "B", "where": [{"property": "plan", "op": "~~", "value": 1}]}]}}' \
  '^ERROR: +options\.subscribe\.events\[1\]\.where\[0\]\.op: '
bad_dest "first filter's where op" "${N}_bad1" http://127.0.0.1:1/x \
  '{"subscribe": {"events": [{"where": [{"property": "plan", "op": "nope", "value": 1}]}]}}' \
  '^ERROR: +options\.subscribe\.events\[0\]\.where\[0\]\.op: '
bad_dest "unknown filter key" "${N}_bad1" http://127.0.0.1:1/x '{"subscribe": {"events": [{"evnt": "A"}]}}' \
  '^ERROR: +options\.subscribe\.events\[0\]\.evnt: '
bad_dest "batch.max_events 0" "${N}_bad1" http://127.0.0.1:1/x '{"batch": {"max_events": 0}}' '^ERROR: +options\.batch\.max_events: '
bad_dest "batch.max_wait_ms too big" "${N}_bad1" http://127.0.0.1:1/x '{"batch": {"max_wait_ms": 600000}}' '^ERROR: +options\.batch\.max_wait_ms: '
bad_dest "unknown option" "${N}_bad1" http://127.0.0.1:1/x '{"subscribe": {"events": true}, "retries": 3}' '^ERROR: +options\.retries: '
bad_dest "short secret" "${N}_bad1" http://127.0.0.1:1/x '{"secret": "short"}' '^ERROR: +options\.secret: '
bad_dest "pii.hash not strings" "${N}_bad1" http://127.0.0.1:1/x '{"pii": {"hash": ["traits.email", 3]}}' '^ERROR: +options\.pii\.hash\[1\]: '
bad_dest "consent not an array" "${N}_bad1" http://127.0.0.1:1/x '{"consent": "marketing"}' '^ERROR: +options\.consent: '
bad_dest "max_age unit" "${N}_bad1" http://127.0.0.1:1/x '{"max_age": {"weeks": 1}}' '^ERROR: +options\.max_age\.weeks: '
bad_dest "header with a line break" "${N}_bad1" http://127.0.0.1:1/x '{"headers": {"X-A": "a\r\nX-B: b"}}' '^ERROR: +options\.headers\.X-A: '
bad_dest "options not an object" "${N}_bad1" http://127.0.0.1:1/x '[1]' '^ERROR: +options: '
bad_dest "ftp url" "${N}_bad2" ftp://127.0.0.1/x '{}' '^ERROR: +url: '
bad_dest "url not a url" "${N}_bad3" "not a url" '{}' '^ERROR: +url: '
bad_dest "url without a host" "${N}_bad4" "http://" '{}' '^ERROR: +url: '
bad_dest "url with a space in the host" "${N}_bad5" "http://exa mple.com/x" '{}' '^ERROR: +url: '
bad_dest "url with a line break" "${N}_bad6" $'http://127.0.0.1/x\r\nX-Injected: 1' '{}' '^ERROR: +url: '
bad_dest "empty name" "" http://127.0.0.1:1/x '{}' '^ERROR: +name: '
check_eq "nothing stored by the refused calls" "$(sql "select count(*) from cdp.destinations where name like '${N}_bad%' or name = ''")" 0
create_dest "${N}_dup" "${SINK_URL[main]}/dup" '{}'
bad_dest "duplicate name" "${N}_dup" "${SINK_URL[main]}/dup2" '{}' '^ERROR: +name: .*already exists'
check_eq "the duplicate did not replace the first" "$(sql "select count(*) || ' ' || min(url) from cdp.destinations where name = '${N}_dup'")" "1 ${SINK_URL[main]}/dup"
check_eq "drop_destination of the duplicate-test destination returns 0 queued" "$(sql "select cdp.drop_destination('${N}_dup')")" 0
out=$(sql "select cdp.drop_destination('${N}_nope')" 2>&1)
check_match "drop_destination of a missing name is refused" "$out" '^ERROR: +name: no destination named'

###############################################################################
section "subscribe: a subscribed event arrives as a Segment-spec message; others do not"
SUB="${N}_sub"
create_dest "$SUB" "${SINK_URL[main]}/sub" '{
  "secret": "'"$SECRET"'",
  "headers": {"Authorization": "Bearer e2e-token", "X-Tenant": "t-1"},
  "subscribe": {"events": [
    {"type": "track", "event": "Order Completed"},
    {"event": "Plan Changed", "where": [{"property": "plan", "op": "=", "value": "pro"}]}]}}'
# One transaction; the last event is subscribed, so once it has arrived (and
# the queue is empty) every earlier one has been processed.
sqlq "begin;
  $(track_sql "Order Completed" "$U-sub" "$M-sub-1" '{"orderId": "o-1", "revenue": 42.5, "currency": "EUR"}' '{"locale": "en-GB"}')
  $(track_sql "Cart Viewed" "$U-sub" "$M-sub-2" '{"cartId": "c-1"}')
  $(track_sql "Plan Changed" "$U-sub" "$M-sub-3" '{"plan": "free"}')
  $(track_sql "Plan Changed" "$U-sub" "$M-sub-4")
  select cdp.identify($(lit "$U-sub"), traits => '{\"plan\": \"pro\"}', message_id => $(lit "$M-sub-5"));
  $(track_sql "Plan Changed" "$U-sub" "$M-sub-6" '{"plan": "pro"}')
commit;" || die "sending the subscription events failed"
SENT_AT=$(now_ms)
wait_delivered 15 "subscribed events" main /sub "$M-sub-1" "$M-sub-6"
wait_until 5 '[ "$(queued "$SUB")" = 0 ]' || fail "queue of $SUB not empty: $(queued "$SUB")"
check_eq "exactly 2 requests to /sub, in order: Order Completed, Plan Changed (plan = pro)" \
  "$(sq main 'at("/sub").map((e) => mids(e).join("+") + ":" + e.status).join(" ")')" "$M-sub-1:200 $M-sub-6:200"
for id in "$M-sub-2" "$M-sub-3" "$M-sub-4" "$M-sub-5"; do
  check_eq "not subscribed, not sent anywhere: $id" "$(sq main "a.filter((e) => has(e, '$id')).length")" 0
done
check_eq "Segment spec: type, event, userId, messageId" \
  "$(sq main "((m) => [m.type, m.event, m.userId, m.messageId].join('|'))(msg('/sub', '$M-sub-1'))")" \
  "track|Order Completed|$U-sub|$M-sub-1"
check_eq "Segment spec: properties as sent" "$(sq main "msg('/sub', '$M-sub-1').properties")" \
  '{"orderId":"o-1","revenue":42.5,"currency":"EUR"}'
check_eq "Segment spec: context as sent" "$(sq main "msg('/sub', '$M-sub-1').context.locale")" "en-GB"
check_match "Segment spec: timestamp is ISO-8601" "$(sq main "msg('/sub', '$M-sub-1').timestamp")" \
  '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:?[0-9]{2})$'
check_eq "Segment spec: timestamp within a minute of sending" \
  "$(sq main "Math.abs(Date.parse(msg('/sub', '$M-sub-1').timestamp) - $SENT_AT) < 60000")" true
check_eq "max_events 1: the body is the message itself (no batch)" "$(sq main "'batch' in ok('/sub', '$M-sub-1')[0].json")" false
check_eq "the where filter: plan = pro delivered with its properties" "$(sq main "msg('/sub', '$M-sub-6').properties.plan")" pro

section "signature and headers"
check_eq "every request to /sub: signature_ok true (sink --secret)" "$(sq main 'at("/sub").map((e) => e.signature_ok).join(" ")')" "true true"
check_eq "X-CDP-Signature has the v1=<64 hex> form" \
  "$(sq main 'at("/sub").every((e) => /^v1=[0-9a-f]{64}$/.test(e.headers["x-cdp-signature"]))')" true
check_eq "X-CDP-Timestamp is Unix seconds within a minute of now" \
  "$(sq main "at('/sub').every((e) => /^[0-9]+\$/.test(e.headers['x-cdp-timestamp']) && Math.abs(e.headers['x-cdp-timestamp'] * 1000 - t(e)) < 60000)")" true
check_eq "Idempotency-Key present on every request, distinct per request" \
  "$(sq main 'new Set(at("/sub").map((e) => e.headers["idempotency-key"]).filter((k) => k)).size')" 2
check_eq "configured headers sent (Authorization, X-Tenant)" \
  "$(sq main 'at("/sub").map((e) => e.headers["authorization"] + "," + e.headers["x-tenant"]).join(" ")')" \
  "Bearer e2e-token,t-1 Bearer e2e-token,t-1"
check_eq "POST with Content-Type: application/json" \
  "$(sq main 'at("/sub").map((e) => e.method + " " + e.headers["content-type"]).join(", ")')" "POST application/json, POST application/json"
# A wrong secret in the sink's eyes: the same body checked with another secret fails.
check_eq "the signature depends on the secret (recomputed with another secret: no match)" \
  "$(sq main "((e) => { const c = require('crypto'); const h = (s) => 'v1=' + c.createHmac('sha256', s).update(e.headers['x-cdp-timestamp'] + '.' + e.body).digest('hex');
      return [h('$SECRET') === e.headers['x-cdp-signature'], h('another-secret-0123456789') === e.headers['x-cdp-signature']].join(' '); })(at('/sub')[0])")" "true false"

###############################################################################
section "batching: max_events 5, max_wait_ms 3000"
BATCH="${N}_batch"
create_dest "$BATCH" "${SINK_URL[main]}/batch" '{"secret": "'"$SECRET"'", "subscribe": {"events": [{"event": "Batch Item"}]}, "batch": {"max_events": 5, "max_wait_ms": 3000}}'
ONE="${N}_batch1"
create_dest "$ONE" "${SINK_URL[main]}/batch1" '{"subscribe": {"events": [{"event": "Batch Single"}]}, "batch": {"max_events": 5, "max_wait_ms": 0}}'
# 7 events from 7 profiles (a profile's deliveries are sent one at a time, in
# order, so batches are formed across profiles), in one transaction.
q="begin;"
BIDS=()
for i in 1 2 3 4 5 6 7; do
  q+=$(track_sql "Batch Item" "$U-b$i" "$M-b-$i" "{\"i\": $i}")
  BIDS+=("$M-b-$i")
done
q+=$(track_sql "Batch Single" "$U-b8" "$M-b-8")
q+="commit;"
BATCH_T0=$(now_ms)
sqlq "$q" || die "sending the batch events failed"
wait_delivered 20 "7 batched events" main /batch "${BIDS[@]}"
check_eq "2 requests: a full batch of 5, then the other 2" "$(sq main 'at("/batch").map((e) => items(e).length).join(" ")')" "5 2"
check_eq "the batches hold the messages in queue order" \
  "$(sq main 'at("/batch").map((e) => mids(e).map((m) => m.split("-").pop()).join(",")).join(" ")')" "1,2,3,4,5 6,7"
check_eq "body shape: {\"batch\": [...], \"sentAt\": ISO time}" \
  "$(sq main 'at("/batch").every((e) => Array.isArray(e.json.batch) && Object.keys(e.json).sort().join() === "batch,sentAt" && !isNaN(Date.parse(e.json.sentAt)))')" true
check_eq "batched messages are whole Segment messages (type, event, userId, properties)" \
  "$(sq main "((m) => [m.type, m.event, m.userId, m.properties.i].join('|'))(msg('/batch', '$M-b-3'))")" "track|Batch Item|$U-b3|3"
check_eq "batch requests are signed too" "$(sq main 'at("/batch").map((e) => e.signature_ok).join(" ")')" "true true"
FULL_MS=$(sq main "t(at('/batch')[0]) - $BATCH_T0")
PART_MS=$(sq main "t(at('/batch')[1]) - $BATCH_T0")
if [[ "$FULL_MS" =~ ^[0-9]+$ ]] && [ "$FULL_MS" -lt 2800 ]; then pass "the full batch went at once ($FULL_MS ms after sending, < max_wait_ms)"; else
  fail "the full batch should go at once, not wait max_wait_ms: sent $FULL_MS ms after the events"; fi
if [[ "$PART_MS" =~ ^[0-9]+$ ]] && [ "$PART_MS" -ge 2950 ] && [ "$PART_MS" -lt 8000 ]; then
  pass "the partial batch went after max_wait_ms ($PART_MS ms after sending)"
else fail "the partial batch should go 3000 ms (max_wait_ms) after its oldest event was queued, not before: sent $PART_MS ms after sending"; fi
wait_delivered 10 "a single event to a batching destination (max_events 5, max_wait_ms 0)" main /batch1 "$M-b-8"
# docs/destinations.md, "The batch envelope": a batching destination always
# gets the envelope, even for one message.
check_eq "max_events > 1: a lone message still comes in the envelope" \
  "$(sq main "((e) => e && e.json && Array.isArray(e.json.batch) ? 'batch of ' + e.json.batch.length : 'bare ' + (e && e.json && e.json.type) + ' object')(at('/batch1')[0])")" "batch of 1"

###############################################################################
section "PII: hash and drop"
PII="${N}_pii"
create_dest "$PII" "${SINK_URL[main]}/pii" '{"subscribe": {"events": [{"event": "PII Test"}]},
  "pii": {"hash": ["properties.email", "properties.phone", "context.traits.email"], "drop": ["properties.ssn", "context.ip"]}}'
RAW_EMAIL='  Ada.Lovelace@Example.COM '
sqlq "$(track_sql "PII Test" "$U-pii" "$M-pii-1" "{\"email\": \"$RAW_EMAIL\", \"ssn\": \"123-45-6789\", \"plan\": \"pro\"}" \
  '{"ip": "203.0.113.9", "locale": "fr-FR", "traits": {"email": "ADA@EXAMPLE.COM"}}')" || die "sending the PII event failed"
wait_delivered 15 "PII event" main /pii "$M-pii-1"
WANT=$(printf '%s' "ada.lovelace@example.com" | sha256sum | cut -d' ' -f1)
check_eq "properties.email = sha256 of the trimmed, lower-cased value" "$(sq main "msg('/pii', '$M-pii-1').properties.email")" "$WANT"
check_eq "context.traits.email hashed too" "$(sq main "msg('/pii', '$M-pii-1').context.traits.email")" \
  "$(printf '%s' "ada@example.com" | sha256sum | cut -d' ' -f1)"
check_eq "properties.ssn dropped" "$(sq main "'ssn' in msg('/pii', '$M-pii-1').properties")" false
check_eq "context.ip dropped" "$(sq main "'ip' in msg('/pii', '$M-pii-1').context")" false
check_eq "a hashed path that is absent stays absent (properties.phone)" "$(sq main "'phone' in msg('/pii', '$M-pii-1').properties")" false
check_eq "other fields kept (properties.plan, context.locale)" \
  "$(sq main "msg('/pii', '$M-pii-1').properties.plan + ' ' + msg('/pii', '$M-pii-1').context.locale")" "pro fr-FR"
check_eq "the raw value appears nowhere in the request" "$(sq main "ok('/pii', '$M-pii-1')[0].body.toLowerCase().includes('lovelace') || ok('/pii', '$M-pii-1')[0].body.includes('123-45-6789')")" false
check_eq "the stored event keeps the original (PII applied at sending)" \
  "$(sql "select properties->>'email' from cdp.events where message_id = '$M-pii-1'")" "$RAW_EMAIL"

###############################################################################
section "consent: consent [\"marketing\"]"
CONSENT="${N}_consent"
create_dest "$CONSENT" "${SINK_URL[main]}/consent" '{"subscribe": {"events": [{"event": "Consent Test"}]}, "consent": ["marketing"]}'
OPEN="${N}_consent_all"  # the same events, no consent required: all 5 arrive
create_dest "$OPEN" "${SINK_URL[main]}/consent_all" '{"subscribe": {"events": [{"event": "Consent Test"}]}}'
# Event 3 carries no preferences and comes from someone with no consent on
# record, so it is judged by that (nothing granted). (An event without
# preferences from a person with consent on record is judged by their latest
# consent: see test/regress/sql/privacy.sql.)
sqlq "begin;
  $(track_sql "Consent Test" "$U-c" "$M-c-1" '{}' '{"consent": {"categoryPreferences": {"marketing": true, "analytics": false}}}')
  $(track_sql "Consent Test" "$U-c" "$M-c-2" '{}' '{"consent": {"categoryPreferences": {"marketing": false, "analytics": true}}}')
  $(track_sql "Consent Test" "$U-c3" "$M-c-3" '{}' '{"locale": "en-US"}')
  $(track_sql "Consent Test" "$U-c" "$M-c-4" '{}' '{"consent": {"categoryPreferences": {"analytics": true}}}')
  $(track_sql "Consent Test" "$U-c" "$M-c-6" '{}' '{"consent": {"categoryPreferences": {"marketing": "true"}}}')
  $(track_sql "Consent Test" "$U-c" "$M-c-5" '{}' '{"consent": {"categoryPreferences": {"marketing": true}}}')
commit;" || die "sending the consent events failed"
wait_delivered 15 "the destination without consent gets all 6" main /consent_all "$M-c-1" "$M-c-2" "$M-c-3" "$M-c-4" "$M-c-6" "$M-c-5"
wait_delivered 10 "marketing = true events" main /consent "$M-c-1" "$M-c-5"
wait_until 5 '[ "$(queued "$CONSENT")" = 0 ]' || fail "queue of $CONSENT not empty"
check_eq "only the consented events were sent (1 and 5)" \
  "$(sq main 'at("/consent").flatMap((e) => mids(e)).map((m) => m.split("-").pop()).join(" ")')" "1 5"
check_eq "destination_stats.consent_blocked = 4 (marketing false, no consent, analytics only, \"true\" as a string)" "$(dstat "$CONSENT" consent_blocked)" 4
check_eq "the open destination has consent_blocked 0" "$(dstat "$OPEN" consent_blocked)" 0

###############################################################################
section "retries: 500 twice, then ok"
RETRY="${N}_retry"
create_dest "$RETRY" "${SINK_URL[retry]}/retry" '{"subscribe": {"events": [{"event": "Retry Test"}]}}'
ctl retry '{"mode": "fail", "status": 500, "times": 2}'
sqlq "$(track_sql "Retry Test" "$U-r" "$M-r-1")" || die "sending the retry event failed"
# Between the second failure and the third attempt (backoff 2 s x 0.5..1.5)
# the row shows its attempts.
retry_row() { sql "select q.attempts || ' ' || q.last_status from cdp.deliveries q join cdp.destinations d using (destination_id)
                    where d.name = '$RETRY' and q.payload->>'messageId' = '$M-r-1'"; }
if wait_until 15 '[ "$(retry_row)" = "2 500" ]'; then
  pass "cdp.deliveries shows attempts 2, last_status 500 while retrying"
  check_eq "destination_stats while retrying: queued 1, retrying 1, failed_attempts 2" "$(dstat "$RETRY" "queued || ' ' || retrying || ' ' || failed_attempts")" "1 1 2"
  check_match "last_error names the 500" "$(dstat "$RETRY" last_error)" '500'
else
  fail "never saw the delivery with attempts 2 / last_status 500 (last: [$(retry_row)])"
fi
wait_delivered 20 "the retried event" retry /retry "$M-r-1"
check_eq "3 attempts: 500, 500, 200" "$(sq retry "log('/retry', ['$M-r-1'])")" "$M-r-1:500 $M-r-1:500 $M-r-1:200"
check_eq "the same Idempotency-Key on every attempt" \
  "$(sq retry "new Set(sent('/retry', '$M-r-1').map((e) => e.headers['idempotency-key'])).size + ' ' + sent('/retry', '$M-r-1').every((e) => e.headers['idempotency-key'])")" "1 true"
check_eq "the same body on every attempt" "$(sq retry "new Set(sent('/retry', '$M-r-1').map((e) => e.body)).size")" 1
GAPS=$(sq retry "((s) => [t(s[1]) - t(s[0]), t(s[2]) - t(s[1])].join(' '))(sent('/retry', '$M-r-1'))")
read -r GAP1 GAP2 <<<"$GAPS"
# A retry falls due at 1 s, then 2 s, x 0.5..1.5 after the failure; an idle
# worker looks for due retries once a second (RETRY_SLACK_MS: that second,
# plus recording the outcome and claiming). So 500..1500 ms, then 1000..3000
# ms, each + the slack: a backoff that did not double (1 s again) or started
# from 2 s (2 s, then 4 s) mostly falls outside, and 10x always would.
RETRY_SLACK_MS=1500
if [[ "$GAP1" =~ ^[0-9]+$ ]] && [[ "$GAP2" =~ ^[0-9]+$ ]] && [ "$GAP1" -ge 450 ] && [ "$GAP1" -le $((1500 + RETRY_SLACK_MS)) ] &&
  [ "$GAP2" -ge 950 ] && [ "$GAP2" -le $((3000 + RETRY_SLACK_MS)) ]; then
  pass "backoff between attempts: $GAP1 ms, then $GAP2 ms (1 s, then 2 s, x 0.5..1.5, + up to $RETRY_SLACK_MS ms to be picked up)"
else
  fail "backoff between attempts should be 500..$((1500 + RETRY_SLACK_MS)) ms then 1000..$((3000 + RETRY_SLACK_MS)) ms (1 s doubling, jitter 0.5..1.5, + $RETRY_SLACK_MS ms to be picked up), got [$GAPS]"
fi
wait_until 5 '[ "$(dstat "$RETRY" "queued || '"' '"' || delivered")" = "0 1" ]'
check_eq "after delivery: queued 0, delivered 1, failed_attempts 2, dead 0" \
  "$(dstat "$RETRY" "queued || ' ' || delivered || ' ' || failed_attempts || ' ' || dead")" "0 1 2 0"

section "retries: 429 with Retry-After: 2"
ctl retry '{"mode": "throttle", "retry_after": 2, "times": 1}'
sqlq "$(track_sql "Retry Test" "$U-r" "$M-r-2")" || die "sending the throttled event failed"
wait_delivered 20 "the throttled event" retry /retry "$M-r-2"
check_eq "2 attempts: 429, 200" "$(sq retry "log('/retry', ['$M-r-2'])")" "$M-r-2:429 $M-r-2:200"
check_eq "the same Idempotency-Key on both" "$(sq retry "new Set(sent('/retry', '$M-r-2').map((e) => e.headers['idempotency-key'])).size")" 1
GAP=$(sq retry "((s) => t(s[1]) - t(s[0]))(sent('/retry', '$M-r-2'))")
if [[ "$GAP" =~ ^[0-9]+$ ]] && [ "$GAP" -ge 1950 ] && [ "$GAP" -lt 6000 ]; then pass "the retry came $GAP ms after the 429 (Retry-After: 2 honoured)"; else
  fail "the retry after 429 Retry-After: 2 came $GAP ms later (want 2000..6000)"; fi

section "retries: a hanging sink (timeout_ms 1000)"
RETRY_T="${N}_retry_timeout"
create_dest "$RETRY_T" "${SINK_URL[retry]}/retry_t" '{"subscribe": {"events": [{"event": "Timeout Test"}]}, "timeout_ms": 1000}'
ctl retry '{"mode": "hang", "times": 1}'
sqlq "$(track_sql "Timeout Test" "$U-rt" "$M-rt-1")" || die "sending the timeout event failed"
wait_delivered 20 "the event whose first request timed out" retry /retry_t "$M-rt-1"
check_eq "2 attempts: no answer (timed out), then 200" "$(sq retry "log('/retry_t', ['$M-rt-1'])")" "$M-rt-1:null $M-rt-1:200"
check_eq "the same Idempotency-Key on both" "$(sq retry "new Set(sent('/retry_t', '$M-rt-1').map((e) => e.headers['idempotency-key'])).size")" 1
GAP=$(sq retry "((s) => t(s[1]) - t(s[0]))(sent('/retry_t', '$M-rt-1'))")
# 1 s timeout + 1 s backoff x 0.5..1.5 + the slack above: 1500..2500 ms + slack.
# The default timeout (10 s) would put it past 10.5 s.
if [[ "$GAP" =~ ^[0-9]+$ ]] && [ "$GAP" -ge 1400 ] && [ "$GAP" -le $((2500 + RETRY_SLACK_MS)) ]; then
  pass "the retry came $GAP ms after the hung request (1 s timeout + backoff, not the default 10 s timeout)"
else
  fail "the retry came $GAP ms after the hung request (want 1500..$((2500 + RETRY_SLACK_MS)): timeout_ms 1000 + 0.5..1.5 s backoff + $RETRY_SLACK_MS ms to be picked up)"
fi
check_match "last_error names the timeout" "$(dstat "$RETRY_T" last_error)" '[Tt]ime'

###############################################################################
section "dead letters: 400"
DEAD="${N}_dead"
create_dest "$DEAD" "${SINK_URL[dead]}/dead" '{"subscribe": {"events": [{"event": "Dead Test"}]}}'
ctl dead '{"mode": "fail", "status": 400, "times": 2}'
sqlq "begin; $(track_sql "Dead Test" "$U-d1" "$M-d-1") $(track_sql "Dead Test" "$U-d2" "$M-d-2") commit;" || die "sending the dead-letter events failed"
dl() { sql "select $1 from cdp.dead_letters l join cdp.destinations d using (destination_id) where d.name = '$DEAD' and l.payload->>'messageId' = '$2'"; }
if wait_until 15 '[ "$(sql "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id) where d.name = '"'$DEAD'"'")" = 2 ]'; then
  pass "both deliveries in cdp.dead_letters within $WAITED_MS ms"
else fail "cdp.dead_letters has $(sql "select count(*) from cdp.dead_letters") rows, want 2"; fi
check_eq "dead letter: status 400, attempts 1, kind event" "$(dl "status || ' ' || attempts || ' ' || kind" "$M-d-1")" "400 1 event"
check_eq "dead letter: the response is the status and body" "$(dl response "$M-d-1")" 'HTTP 400: {"error":"sink told to fail"}'
check_eq "dead letter: the payload is the message" "$(dl "payload->>'type' || ' ' || (payload->>'event') || ' ' || (payload->>'userId')" "$M-d-1")" "track Dead Test $U-d1"
check_eq "a 400 is not retried: one request each" "$(sq dead "log('/dead', ['$M-d-1', '$M-d-2'])")" "$M-d-1:400 $M-d-2:400"
check_eq "stats: dead 2, queued 0, delivered 0" "$(dstat "$DEAD" "dead || ' ' || queued || ' ' || delivered")" "2 0 0"
D1=$(dl id "$M-d-1")
check_eq "replay_dead_letters(ids => [first]) requeues 1" "$(sql "select cdp.replay_dead_letters('$DEAD', null, array[$D1]::bigint[])")" 1
wait_delivered 15 "the replayed dead letter" dead /dead "$M-d-1"
check_eq "the other is still a dead letter" "$(dl "count(*)" "$M-d-2") $(dl "count(*)" "$M-d-1")" "1 0"
check_eq "replay_dead_letters(since => an hour ago) requeues the rest (1)" \
  "$(sql "select cdp.replay_dead_letters('$DEAD', now() - interval '1 hour')")" 1
wait_delivered 15 "the second replayed dead letter" dead /dead "$M-d-2"
check_eq "no dead letters left, queue empty" \
  "$(sql "select count(*) from cdp.dead_letters l join cdp.destinations d using (destination_id) where d.name = '$DEAD'") $(queued "$DEAD")" "0 0"
check_eq "each replayed message delivered once" "$(sq dead "[ok('/dead', '$M-d-1').length, ok('/dead', '$M-d-2').length].join(' ')")" "1 1"
check_eq "replay of a missing destination is refused" \
  "$(sql "select cdp.replay_dead_letters('${N}_nope')" 2>&1 | head -1 | grep -c 'destination: no destination named')" 1
wait_until 5 '[ "$(dstat "$DEAD" delivered)" = 2 ]'
check_eq "stats: delivered 2, dead 2, failed_attempts 2" "$(dstat "$DEAD" "delivered || ' ' || dead || ' ' || failed_attempts")" "2 2 2"

###############################################################################
section "ordering per profile while one delivery is retried"
ORDER="${N}_order"
ORDER2="${N}_order2"
create_dest "$ORDER" "${SINK_URL[order]}/order" '{"subscribe": {"events": [{"event": "Order Test"}]}}'
create_dest "$ORDER2" "${SINK_URL[main]}/order2" '{"subscribe": {"events": [{"event": "Order Test"}]}}'
P="$U-op"  # the profile whose first delivery is throttled
Q="$U-oq"  # another profile
ctl order '{"mode": "throttle", "retry_after": 5, "times": 1}'
sqlq "$(track_sql "Order Test" "$P" "$M-o-1")" || die "sending o-1 failed"
wait_until 15 '[ "$(sq order "sent('"'/order', '$M-o-1'"').length")" -ge 1 ]' || fail "o-1 never reached the order sink"
# o-1 now waits 5 s (Retry-After). Queue more for the same profile, and one for another.
sqlq "begin; $(track_sql "Order Test" "$P" "$M-o-2") $(track_sql "Order Test" "$Q" "$M-q-1") $(track_sql "Order Test" "$P" "$M-o-3") commit;" ||
  die "sending o-2, q-1, o-3 failed"
wait_delivered 20 "all of them, eventually" order /order "$M-o-1" "$M-o-2" "$M-o-3" "$M-q-1"
wait_delivered 10 "all of them to the second destination" main /order2 "$M-o-1" "$M-o-2" "$M-o-3" "$M-q-1"
check_eq "profile P at the throttled destination: o-1 (429), o-1, o-2, o-3 — nothing of P sent before o-1 succeeded" \
  "$(sq order "log('/order', ['$M-o-1', '$M-o-2', '$M-o-3'])")" "$M-o-1:429 $M-o-1:200 $M-o-2:200 $M-o-3:200"
check_eq "profile Q went through before P's o-1 was retried" \
  "$(sq order "t(ok('/order', '$M-q-1')[0]) < t(ok('/order', '$M-o-1')[0])")" true
check_eq "the second destination got P's o-1..o-3 in order" \
  "$(sq main "log('/order2', ['$M-o-1', '$M-o-2', '$M-o-3'])")" "$M-o-1:200 $M-o-2:200 $M-o-3:200"
O3_AT2=$(sq main "t(ok('/order2', '$M-o-3')[0])")   # o-3 at the second destination
O1_RETRY=$(sq order "t(ok('/order', '$M-o-1')[0])") # o-1's successful retry at the first
if [[ "$O3_AT2" =~ ^[0-9]+$ ]] && [[ "$O1_RETRY" =~ ^[0-9]+$ ]] && [ "$O3_AT2" -lt "$O1_RETRY" ]; then
  pass "P's o-3 reached the second destination $((O1_RETRY - O3_AT2)) ms before o-1's retry at the first (destinations independent)"
else fail "P's o-3 at the second destination [$O3_AT2] should come before o-1's retry at the first [$O1_RETRY]"; fi
GAP=$(sq order "t(ok('/order', '$M-o-1')[0]) - t(sent('/order', '$M-o-1')[0])")
if [[ "$GAP" =~ ^[0-9]+$ ]] && [ "$GAP" -ge 4950 ]; then pass "o-1 retried $GAP ms after its 429 (Retry-After: 5)"; else fail "o-1 retried $GAP ms after its 429 (Retry-After: 5)"; fi

###############################################################################
section "pause and resume"
PAUSE="${N}_pause"
create_dest "$PAUSE" "${SINK_URL[main]}/pause" '{"subscribe": {"events": true}}'
sqlq "select cdp.pause_destination('$PAUSE')" || die "pause_destination failed"
check_eq "destination_stats.paused" "$(dstat "$PAUSE" paused)" t
sqlq "begin; $(track_sql "Pause Test" "$U-pa" "$M-pa-1") $(track_sql "Pause Test" "$U-pa" "$M-pa-2")
  $(track_sql "Pause Test" "$U-pb" "$M-pb-1") $(track_sql "Pause Test" "$U-pa" "$M-pa-3") commit;" || die "sending the pause events failed"
if wait_until 15 '[ "$(sql "select count(*) from cdp.deliveries q join cdp.destinations d using (destination_id) where d.name = '"'$PAUSE'"' and q.payload->>'"'messageId'"' like '"'$M-p%'"'")" = 4 ]'; then
  pass "4 deliveries queued while paused"
else fail "expected 4 queued deliveries for the paused destination, got $(queued "$PAUSE")"; fi
sleep 2 # a fixed wait: the point is that nothing is sent meanwhile
check_eq "nothing sent to the paused destination" "$(sq main 'at("/pause").length')" 0
check_eq "destination_stats: paused, queued >= 4 with a lag" "$(dstat "$PAUSE" "paused || ' ' || (queued >= 4) || ' ' || (lag > interval '1 second')")" "true true true"
RESUME_T0=$(now_ms)
sqlq "select cdp.resume_destination('$PAUSE')" || die "resume_destination failed"
wait_delivered 10 "after resume" main /pause "$M-pa-1" "$M-pa-2" "$M-pa-3" "$M-pb-1"
check_eq "profile a's events in order" "$(sq main "log('/pause', ['$M-pa-1', '$M-pa-2', '$M-pa-3'])")" "$M-pa-1:200 $M-pa-2:200 $M-pa-3:200"
check_eq "sent only after the resume" "$(sq main "at('/pause').every((e) => t(e) >= $RESUME_T0 - 5)")" true
check_eq "paused false after resume" "$(dstat "$PAUSE" paused)" f
check_eq "drop_destination returns 0 (nothing left queued)" "$(sql "select cdp.drop_destination('$PAUSE')")" 0

###############################################################################
section "segment enter and exit"
SEG_DEST="${N}_seg"
create_dest "$SEG_DEST" "${SINK_URL[main]}/seg" "{\"subscribe\": {\"segments\": [\"$SEGMENT\"]}, \"pii\": {\"hash\": [\"traits.email\"]}}"
check_eq "create_segment (nobody matches yet)" \
  "$(sql "select cdp.create_segment('$SEGMENT', '{\"trait\": \"e2e_tier\", \"op\": \"=\", \"value\": \"gold-$RUN_ID\"}')")" 0
sqlq "select cdp.identify('$U-seg', traits => '{\"e2e_tier\": \"gold-$RUN_ID\", \"email\": \"seg@example.com\"}', message_id => '$M-seg-1')" ||
  die "identify (enter) failed"
seg_kinds() { sq main 'at("/seg").filter((e) => e.status === 200).flatMap(items).map((m) => m.type).join(" ")'; }
if wait_until 15 '[ "$(seg_kinds)" = segment_enter ]'; then pass "segment_enter delivered within $WAITED_MS ms"; else fail "segment_enter: sink has [$(seg_kinds)]"; fi
sqlq "select cdp.identify('$U-seg', traits => '{\"e2e_tier\": \"silver\"}', message_id => '$M-seg-2')" || die "identify (exit) failed"
if wait_until 15 '[ "$(seg_kinds)" = "segment_enter segment_exit" ]'; then pass "segment_exit delivered within $WAITED_MS ms"; else fail "segment_exit: sink has [$(seg_kinds)]"; fi
check_eq "enter: segment, userId, traits" \
  "$(sq main '((m) => [m.type, m.segment, m.userId, m.traits && m.traits.e2e_tier].join("|"))(items(at("/seg")[0])[0])')" \
  "segment_enter|$SEGMENT|$U-seg|gold-$RUN_ID"
check_eq "the PII policy applies to segment changes too (traits.email hashed)" "$(sq main 'items(at("/seg")[0])[0].traits.email')" \
  "$(printf '%s' "seg@example.com" | sha256sum | cut -d' ' -f1)"
check_eq "exit: segment, userId" "$(sq main '((m) => [m.type, m.segment, m.userId].join("|"))(items(at("/seg")[1])[0])')" \
  "segment_exit|$SEGMENT|$U-seg"
check_eq "enter and exit have distinct messageIds and Idempotency-Keys" \
  "$(sq main '((a) => new Set(a.map((e) => items(e)[0].messageId)).size + " " + new Set(a.map((e) => e.headers["idempotency-key"])).size)(at("/seg"))')" "2 2"
check_eq "a segment-only destination gets no events (the identify calls were not sent)" \
  "$(sq main "at('/seg').filter((e) => has(e, '$M-seg-1') || has(e, '$M-seg-2')).length")" 0

###############################################################################
section "outage: the sink down for $((OUTAGE_MS / 1000)) s while 100 events are sent"
DOWN="${N}_down"
create_dest "$DOWN" "${SINK_URL[down]}/down" '{"subscribe": {"events": [{"event": "Outage Test"}]}}'
ctl down "{\"mode\": \"down\", \"for_ms\": $OUTAGE_MS}"
DOWN_T0=$(now_ms)
if sink_up down; then fail "the down sink still answers"; else pass "the sink refuses connections"; fi
# One transaction, profile k's events in order 1..10: the 10 profiles' first
# deliveries are in flight together when they fail, as on any busy destination.
OIDS=()
q="begin;"
for i in $(seq 1 10); do
  for k in $(seq 1 10); do
    q+=$(track_sql "Outage Test" "$U-out$k" "$M-out-$k-$i" "{\"seq\": $i}")
    OIDS+=("$M-out-$k-$i")
  done
done
sqlq "$q commit;" || die "sending the outage events failed"
pass "100 events sent in $(($(now_ms) - DOWN_T0)) ms"
if wait_until 10 '[ "$(dstat "$DOWN" "failed_attempts > 0")" = t ]'; then
  check_match "failed attempts recorded while down; last_error names the connection failure" "$(dstat "$DOWN" last_error)" '[Cc]onnect'
else fail "no failed attempts recorded within 10 s of the sink going down"; fi
# 5 failed rounds: rows retry after 1, 2, 4, 8 s (x jitter), so by about 16 s at worst.
if wait_until $((OUTAGE_MS < 20000 ? OUTAGE_MS / 1000 : 20)) '[ "$(dstat "$DOWN" "coalesce(circuit_open, false)")" = t ]'; then
  pass "the circuit opened (after consecutive failures)"
  # The first opening is for 30 s, however many requests were in flight when
  # the sink went away (doubling is for failed probes after that).
  check_eq "the circuit first opens for at most 30 s" \
    "$(sql "select circuit_open_until - now() <= interval '30 seconds' from cdp.destinations where name = '$DOWN'")" t
else fail "the circuit did not open while every request failed (failures: $(sql "select failures from cdp.destinations where name = '$DOWN'"))"; fi
say "    circuit: $(sql "select 'failures ' || failures || ', open for another ' || coalesce(date_trunc('second', circuit_open_until - now())::text, '-') from cdp.destinations where name = '$DOWN'")"
wait_until $((OUTAGE_MS / 1000 + 15)) 'sink_up down' || die "the down sink did not come back"
UP_MS=$(($(now_ms) - DOWN_T0))
pass "the sink is back after $UP_MS ms"
# When everything should have arrived, per the breaker's schedule: it opens
# (16 s in at worst, see above) for 30 s, then one probe; a failed probe
# doubles the pause.
open_at=16000 pause=30000
while [ $((open_at + pause)) -lt "$OUTAGE_MS" ]; do open_at=$((open_at + pause)) pause=$((pause * 2)); done
DUE_MS=$((open_at + pause + 15000)) # + 15 s to send 100 and for slow machines
say "    expecting every event by $((DUE_MS / 1000)) s after the outage began"
# shellcheck disable=SC2317  # called through wait_until's eval
all_out() { [ "$(delivered down /down "${OIDS[@]}")" = 100 ]; }
if wait_until $(((DUE_MS - ($(now_ms) - DOWN_T0)) / 1000 + 1)) all_out; then
  pass "all 100 delivered $((($(now_ms) - DOWN_T0) / 1000)) s after the outage began, without intervention"
else
  fail "only $(delivered down /down "${OIDS[@]}") of 100 delivered $((($(now_ms) - DOWN_T0) / 1000)) s after the outage began ($((($(now_ms) - DOWN_T0 - UP_MS) / 1000)) s after the sink came back); destination: $(sql "select 'failures ' || failures || ', circuit open for another ' || coalesce(date_trunc('second', circuit_open_until - now())::text, '-') from cdp.destinations where name = '$DOWN'")"
  # To still check that nothing is lost: resume_destination closes the circuit.
  sqlq "select cdp.resume_destination('$DOWN')"
  if wait_until 30 all_out; then pass "(after resume_destination) all 100 delivered within $WAITED_MS ms"; else
    fail "(after resume_destination) only $(delivered down /down "${OIDS[@]}") of 100 delivered within 30 s"; fi
fi
sq down "a" >"$E2E_TMP/down.json"
OUT_REPORT=$(node -e '
  const a = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const ids = process.argv.slice(2);
  const items = (e) => (e.json && Array.isArray(e.json.batch) ? e.json.batch : e.json ? [e.json] : []);
  const by = new Map(ids.map((id) => [id, []]));
  for (const e of a) for (const m of items(e)) if (by.has(m.messageId)) by.get(m.messageId).push(e);
  const missing = ids.filter((id) => !by.get(id).some((e) => e.status === 200));
  const dup = ids.filter((id) => by.get(id).filter((e) => e.status === 200).length > 1);
  const badDup = dup.filter((id) => new Set(by.get(id).map((e) => e.headers["idempotency-key"])).size > 1);
  // Per profile, the order of first acknowledgement.
  const first = new Map();
  a.forEach((e, n) => { if (e.status === 200) for (const m of items(e)) if (by.has(m.messageId) && !first.has(m.messageId)) first.set(m.messageId, n); });
  const disorder = [];
  for (let k = 1; k <= 10; k++) {
    const seq = ids.filter((id) => id.split("-").slice(-2)[0] === String(k) && first.has(id)).sort((x, y) => first.get(x) - first.get(y))
      .map((id) => Number(id.split("-").pop()));
    if (seq.join() !== [...seq].sort((x, y) => x - y).join()) disorder.push(`profile ${k}: ${seq.join(",")}`);
  }
  console.log(`missing=${missing.length} dup=${dup.length} baddup=${badDup.length} disorder=${disorder.length}`);
  console.log(`missing: ${missing.slice(0, 5).join(" ")} | bad duplicates: ${badDup.slice(0, 5).join(" ")} | out of order: ${disorder.slice(0, 3).join("; ")}`);
' "$E2E_TMP/down.json" "${OIDS[@]}")
read -r OUT_SUMMARY <<<"$OUT_REPORT"
say "    $OUT_SUMMARY (duplicates allowed with the same Idempotency-Key)"
check_eq "no messageId missing" "$(grep -o 'missing=[0-9]*' <<<"$OUT_SUMMARY")" "missing=0"
check_eq "no messageId delivered twice under different Idempotency-Keys" "$(grep -o 'baddup=[0-9]*' <<<"$OUT_SUMMARY")" "baddup=0"
check_eq "each profile's events acknowledged in the order sent" "$(grep -o 'disorder=[0-9]*' <<<"$OUT_SUMMARY")" "disorder=0"
[ "$(grep -o 'missing=[0-9]*\|baddup=[0-9]*\|disorder=[0-9]*' <<<"$OUT_SUMMARY" | tr '\n' ' ')" = "missing=0 baddup=0 disorder=0 " ] ||
  say "    $(tail -1 <<<"$OUT_REPORT")"
wait_until 5 '[ "$(dstat "$DOWN" "queued || '"' '"' || coalesce(circuit_open, false)")" = "0 false" ]'
check_eq "after recovery: queued 0, circuit closed, delivered >= 100, dead 0" \
  "$(dstat "$DOWN" "queued || ' ' || coalesce(circuit_open, false) || ' ' || (delivered >= 100) || ' ' || dead")" "0 false true 0"

###############################################################################
section "destination_stats"
check_eq "$SUB: delivered 2, queued 0, retrying 0, dead 0, failed_attempts 0" \
  "$(dstat "$SUB" "delivered || ' ' || queued || ' ' || retrying || ' ' || dead || ' ' || failed_attempts")" "2 0 0 0 0"
check_eq "$SUB: latency p50 and p99 set, 0 < p50 <= p99 < 10 s" \
  "$(dstat "$SUB" "latency_p50_ms > 0 and latency_p50_ms <= latency_p99_ms and latency_p99_ms < 10000")" t
check_eq "$SUB: last_delivery_at set, lag null, no last_error" "$(dstat "$SUB" "(last_delivery_at > now() - interval '10 minutes') || ' ' || (lag is null) || ' ' || (last_error is null)")" "true true true"
check_eq "$BATCH: delivered 7 (counted per message, not per request)" "$(dstat "$BATCH" delivered)" 7
check_eq "$RETRY: delivered 2, failed_attempts 3 (500, 500, 429)" "$(dstat "$RETRY" "delivered || ' ' || failed_attempts")" "2 3"
check_eq "$RETRY: latency includes the retries (p99 >= 2 s)" "$(dstat "$RETRY" "latency_p99_ms >= 2000")" t
check_eq "$CONSENT: delivered 2, consent_blocked 4" "$(dstat "$CONSENT" "delivered || ' ' || consent_blocked")" "2 4"
check_eq "every destination of this run has an empty queue" \
  "$(sql "select coalesce(string_agg(d.name || ': ' || n, ', '), 'none') from cdp.destinations d
           join (select destination_id, count(*) n from cdp.deliveries group by 1) q using (destination_id) where d.name like '${N}%'")" none

say ""
say "runtime $(elapsed)"
finish
