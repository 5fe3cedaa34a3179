#!/usr/bin/env bash
# shellcheck disable=SC2016  # JavaScript for node -e, and cleanup commands run later, in single quotes
# Self-test of test/e2e/sink.mjs, the HTTP sink the destination-delivery tests
# deliver to: starts it on a free port and checks with curl every mode (ok,
# fail, throttle, hang, down, "times"), the HMAC signature check, GET
# /_received and the log file, and that SIGTERM stops it cleanly. Needs no
# cluster: the test runner gives it one like every script here, and run alone
# (bash test/e2e/sink_selftest.sh) it makes do with a stand-in.
set -uo pipefail
: "${ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export ROOT
STUB_CLUSTER=""
if [ -z "${CLUSTER_DIR:-}" ]; then
  STUB_CLUSTER=$(mktemp -d /tmp/cdp-e2e-sink-stub.XXXXXX)
  echo 0 >"$STUB_CLUSTER/http_port"
  export CLUSTER_DIR=$STUB_CLUSTER
fi
source "$ROOT/test/e2e/helpers.bash"
[ -z "$STUB_CLUSTER" ] || E2E_CLEANUP+=('rm -rf "$STUB_CLUSTER"')
SINK_JS="$ROOT/test/e2e/sink.mjs"
SECRET="sink-selftest-secret-$RUN_ID"

# start_sink NAME PORT [SECRET]: starts a sink logging to $E2E_TMP/NAME.log;
# sets SINK_PID and SINK (its base URL). Stopped on exit.
start_sink() {
  local name=$1 port=$2 secret=${3:-}
  local args=(--port "$port" --log "$E2E_TMP/$name.log")
  [ -z "$secret" ] || args+=(--secret "$secret")
  node "$SINK_JS" "${args[@]}" >"$E2E_TMP/$name.out" 2>"$E2E_TMP/$name.err" &
  SINK_PID=$!
  E2E_CLEANUP+=("kill $SINK_PID 2>/dev/null")
  SINK="http://127.0.0.1:$port"
  local deadline=$(($(now_ms) + 10000))
  until grep -q '^sink listening on ' "$E2E_TMP/$name.out" 2>/dev/null; do
    kill -0 "$SINK_PID" 2>/dev/null || die "sink $name exited: $(cat "$E2E_TMP/$name.err")"
    [ "$(now_ms)" -lt "$deadline" ] || die "sink $name did not say it was listening within 10 s"
    sleep 0.05
  done
}

# req METHOD PATH [curl args...]: a request to the sink; sets RC (curl's exit
# code), STATUS ("000" if no answer), BODY, HEADERS and MS (how long it took).
req() {
  local method=$1 path=$2 t0
  shift 2
  : >"$E2E_TMP/body"
  : >"$E2E_TMP/headers"
  t0=$(now_ms)
  STATUS=$(curl -sS -m 5 -o "$E2E_TMP/body" -D "$E2E_TMP/headers" -w '%{http_code}' \
    -X "$method" "$@" "$SINK$path" 2>"$E2E_TMP/curl.err")
  RC=$?
  MS=$(($(now_ms) - t0))
  BODY=$(cat "$E2E_TMP/body")
  HEADERS=$(tr -d '\r' <"$E2E_TMP/headers")
}
post_json() { req POST "$1" -H "Content-Type: application/json" --data-binary "$2" "${@:3}"; }
# ctl JSON: POST /_control, which must answer 200.
ctl() {
  post_json /_control "$1"
  [ "$STATUS" = 200 ] || fail "POST /_control $1: expected 200, got $STATUS $BODY"
}
# last_received PATH...: fields of the last entry of GET /_received.
last_received() {
  local saved_status=$STATUS saved_body=$BODY
  req GET /_received
  LAST=$(jget "$BODY" "$(jget "$BODY" length | awk '{print $1 - 1}')")
  STATUS=$saved_status BODY=$saved_body
  jget "$LAST" "$@"
}
# sign TIMESTAMP BODY: the signature a correct sender puts in x-cdp-signature.
sign() {
  node -e 'const c = require("crypto");
    process.stdout.write("v1=" + c.createHmac("sha256", process.argv[1]).update(process.argv[2] + "." + process.argv[3]).digest("hex"));' \
    "$SECRET" "$1" "$2"
}

say "$E2E_NAME: test/e2e/sink.mjs"
section "setup"
command -v node >/dev/null || die "node is required (./dev installs it)"
command -v curl >/dev/null || die "curl is required"
PORT=$(free_port 19300)
start_sink main "$PORT" "$SECRET"
check_eq "prints 'sink listening on PORT' to stdout" "$(cat "$E2E_TMP/main.out")" "sink listening on $PORT"
req GET /_control
check_eq "GET /_control: starts in mode ok" "$(jget "$BODY" mode times received)" "ok null 0"

###############################################################################
section "mode ok (the default)"
post_json /hooks/ok '{"n":1}'
check_eq "POST /hooks/ok: 200 {\"ok\":true}" "$STATUS $BODY" '200 {"ok":true}'
check_eq "recorded with status 200 and the parsed body" "$(last_received method path status json.n)" "POST /hooks/ok 200 1"
req GET /hooks/ok?x=1
check_eq "GET with a query: 200" "$STATUS" 200
check_eq "recorded path keeps the query" "$(last_received method path body json)" "GET /hooks/ok?x=1  null"

###############################################################################
section "mode fail"
for code in 500 400 404; do
  ctl "{\"mode\":\"fail\",\"status\":$code}"
  check_eq "control answers the new state" "$(jget "$BODY" mode status times)" "fail $code null"
  post_json /hooks/fail "{\"code\":$code}"
  check_eq "fail $code: answered $code" "$STATUS" "$code"
  check_eq "fail $code: body" "$(jget "$BODY" error)" "sink told to fail"
  check_eq "fail $code: recorded with status $code" "$(last_received status json.code)" "$code $code"
done
post_json /hooks/fail '{}'
check_eq "fail lasts until changed (no times)" "$STATUS" 404

###############################################################################
section "mode throttle"
ctl '{"mode":"throttle","retry_after":7}'
post_json /hooks/throttle '{}'
check_eq "throttle: answered 429" "$STATUS" 429
check_eq "throttle: Retry-After: 7" "$(header Retry-After)" 7
check_eq "throttle: recorded with status 429" "$(last_received status)" 429
ctl '{"mode":"ok"}'
post_json /hooks/throttle '{}'
check_eq "back to ok: 200, no Retry-After" "$STATUS [$(header Retry-After)]" "200 []"

###############################################################################
section "mode hang"
ctl '{"mode":"hang"}'
post_json /hooks/hang '{"h":1}' --max-time 1
check_eq "hang: curl --max-time 1 times out (exit 28, no status)" "$RC $STATUS" "28 000"
check_ge "hang: the client waited its full second (ms)" "$MS" 950
check_eq "hang: recorded with status null" "$(last_received path status json.h)" "/hooks/hang null 1"
req GET /_control
check_eq "the sink still answers its control endpoint while hanging" "$STATUS $(jget "$BODY" mode)" "200 hang"
ctl '{"mode":"ok"}'
post_json /hooks/hang '{}'
check_eq "back to ok: 200" "$STATUS" 200

###############################################################################
section "times: 2"
ctl '{"mode":"fail","status":503,"times":2}'
check_eq "control answers times 2" "$(jget "$BODY" mode status times)" "fail 503 2"
got=""
for i in 1 2 3 4; do
  post_json /hooks/times "{\"i\":$i}"
  got="$got $STATUS"
done
check_eq "4 requests after fail 503 times 2" "$got" " 503 503 200 200"
req GET /_control
check_eq "mode is ok again" "$(jget "$BODY" mode times)" "ok null"
ctl '{"mode":"throttle","retry_after":2,"times":1}'
post_json /hooks/times '{}'
s1="$STATUS $(header Retry-After)"
post_json /hooks/times '{}'
check_eq "throttle times 1: 429 then 200" "$s1, $STATUS" "429 2, 200"
ctl '{"mode":"hang","times":1}'
post_json /hooks/times '{}' --max-time 1
s1=$RC
post_json /hooks/times '{}'
check_eq "hang times 1: timed out, then 200" "$s1, $STATUS" "28, 200"

###############################################################################
section "mode down"
# A hung request in the background, to see that going down drops it.
ctl '{"mode":"hang","times":1}'
curl -s -m 10 -o /dev/null -w '%{http_code}' -X POST "$SINK/hooks/hung-while-down" >"$E2E_TMP/hung.status" 2>/dev/null &
HUNG_PID=$!
# Until the sink has the hung request (recorded, so it is holding it open).
deadline=$(($(now_ms) + 5000))
until [ "$(req GET /_received; node -e '
  const a = JSON.parse(process.argv[1]); process.stdout.write(String(a.filter((e) => e.path === "/hooks/hung-while-down").length));' "$BODY")" = 1 ]; do
  [ "$(now_ms)" -lt "$deadline" ] || die "the sink did not receive the request to hang within 5 s"
  sleep 0.05
done
ctl '{"mode":"down","for_ms":1500}'
DOWN_AT=$(now_ms)
check_eq "control answers down for 1500 ms" "$(jget "$BODY" mode for_ms)" "down 1500"
req GET /hooks/down -m 2
check_eq "while down: connection refused (curl exit 7)" "$RC $STATUS" "7 000"
wait "$HUNG_PID"
HUNG_RC=$?
check_match "the hung request was dropped at once (curl exit 52 or 56, not the 10 s timeout 28)" \
  "$HUNG_RC $(($(now_ms) - DOWN_AT < 3000))" '^(52|56) 1$'
req GET /_control -m 2
check_eq "while down: the control endpoint is unreachable too" "$RC" 7
UP_MS=""
while [ $(($(now_ms) - DOWN_AT)) -lt 6000 ]; do
  req GET /hooks/after-down -m 2
  if [ "$STATUS" = 200 ]; then UP_MS=$(($(now_ms) - DOWN_AT)); break; fi
  sleep 0.05
done
check_match "recovers: 200 again after 1300..3500 ms (took ${UP_MS:-never} ms)" "${UP_MS:-0}" \
  '^(1[3-9][0-9][0-9]|2[0-9][0-9][0-9]|3[0-4][0-9][0-9])$'
req GET /_control
check_eq "back up in mode ok on the same port" "$STATUS $(jget "$BODY" mode)" "200 ok"
check_eq "the refused request was not recorded" "$(req GET /_received; node -e '
  const a = JSON.parse(process.argv[1]); process.stdout.write(String(a.filter((e) => e.path === "/hooks/down").length));' "$BODY")" 0

###############################################################################
section "signature_ok"
TS=$(date +%s)
SBODY='{"type":"track","event":"Signed","properties":{"n":1}}'
GOOD=$(sign "$TS" "$SBODY")
post_json /hooks/signed "$SBODY" -H "X-CDP-Timestamp: $TS" -H "X-CDP-Signature: $GOOD"
check_eq "correctly signed: signature_ok true" "$STATUS $(last_received signature_ok)" "200 true"
if [ "${GOOD: -1}" = 0 ]; then BAD="${GOOD%?}1"; else BAD="${GOOD%?}0"; fi
post_json /hooks/signed "$SBODY" -H "X-CDP-Timestamp: $TS" -H "X-CDP-Signature: $BAD"
check_eq "one hex digit wrong: signature_ok false" "$(last_received signature_ok)" false
post_json /hooks/signed "$SBODY" -H "X-CDP-Timestamp: $TS" -H "X-CDP-Signature: v1=abc"
check_eq "wrong length: signature_ok false" "$(last_received signature_ok)" false
post_json /hooks/signed "${SBODY/1/2}" -H "X-CDP-Timestamp: $TS" -H "X-CDP-Signature: $GOOD"
check_eq "body changed: signature_ok false" "$(last_received signature_ok)" false
post_json /hooks/signed "$SBODY" -H "X-CDP-Timestamp: $((TS + 1))" -H "X-CDP-Signature: $GOOD"
check_eq "timestamp changed: signature_ok false" "$(last_received signature_ok)" false
post_json /hooks/signed "$SBODY" -H "X-CDP-Timestamp: $TS" -H "X-CDP-Signature: ${GOOD#v1=}"
check_eq "no v1= prefix: signature_ok false" "$(last_received signature_ok)" false
post_json /hooks/signed "$SBODY" -H "X-CDP-Signature: $GOOD"
check_eq "no x-cdp-timestamp: signature_ok null" "$(last_received signature_ok)" null
post_json /hooks/signed "$SBODY"
check_eq "no signature headers: signature_ok null" "$(last_received signature_ok)" null
ctl '{"mode":"fail","status":500,"times":1}'
post_json /hooks/signed "$SBODY" -H "X-CDP-Timestamp: $TS" -H "X-CDP-Signature: $GOOD"
check_eq "checked in every mode: fail 500 and signature_ok true" "$STATUS $(last_received status signature_ok)" "500 500 true"
MAIN_PID=$SINK_PID MAIN_SINK=$SINK
start_sink nosecret "$(free_port $((PORT + 1)))"
post_json /hooks/signed "$SBODY" -H "X-CDP-Timestamp: $TS" -H "X-CDP-Signature: $GOOD"
check_eq "sink without --secret: 200, signature_ok null" "$STATUS $(last_received signature_ok)" "200 null"
kill -TERM "$SINK_PID"
wait "$SINK_PID"
check_eq "sink without --secret: exits 0 on SIGTERM" "$?" 0
SINK_PID=$MAIN_PID SINK=$MAIN_SINK

###############################################################################
section "GET /_received and the log file"
req GET /_received
N_RECEIVED=$(jget "$BODY" length)
check_eq "before any reset, /_received has as many entries as the log file has lines" \
  "$N_RECEIVED" "$(wc -l <"$E2E_TMP/main.log" | tr -d ' ')"
check_eq "control and /_received requests are not recorded" \
  "$(node -e 'const a = JSON.parse(process.argv[1]);
    process.stdout.write(String(a.filter((e) => e.path.startsWith("/_")).length));' "$BODY")" 0
ctl '{"reset":true}'
check_eq "reset: answers received 0" "$(jget "$BODY" received mode)" "0 ok"
req GET /_received
check_eq "reset: /_received is []" "$BODY" "[]"
post_json /a '{"k":"v","n":[1,2]}'
req GET '/b?q=1' -H 'X-Test-Header: Hello World'
req PUT /c -H 'Content-Type: text/plain' --data-binary 'not json {'
ctl '{"mode":"fail","status":502,"times":1}'
req DELETE /d
req GET /_received
RECEIVED=$BODY
check_eq "3 + 1 entries since the reset" "$(jget "$RECEIVED" length)" 4
check_eq "methods and paths in order" "$(jget "$RECEIVED" 0.method 0.path 1.method 1.path 2.method 2.path 3.method 3.path)" \
  "POST /a GET /b?q=1 PUT /c DELETE /d"
check_eq "statuses" "$(jget "$RECEIVED" 0.status 1.status 2.status 3.status)" "200 200 200 502"
check_eq "json body: raw text and parsed" "$(jget "$RECEIVED" 0.body 0.json.k 0.json.n)" '{"k":"v","n":[1,2]} v [1,2]'
check_eq "non-JSON body: raw text, json null" "$(jget "$RECEIVED" 2.body 2.json)" "not json { null"
check_eq "no body: \"\" and json null" "[$(jget "$RECEIVED" 1.body)] $(jget "$RECEIVED" 1.json)" "[] null"
check_eq "headers with lower-cased names" "$(jget "$RECEIVED" 1.headers.x-test-header 0.headers.content-type 2.headers.content-type)" \
  "Hello World application/json text/plain"
check_eq "no signature headers: signature_ok null" "$(jget "$RECEIVED" 0.signature_ok)" null
check_match "at: ISO time with milliseconds" "$(jget "$RECEIVED" 0.at)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$'
check_eq "reset kept the log file: its last 4 lines are the 4 entries, and it has $N_RECEIVED + 4 lines" \
  "$(node -e '
    const fs = require("fs");
    const lines = fs.readFileSync(process.argv[1], "utf8").split("\n");
    const last = lines.pop();
    const got = lines.slice(-4).map((l) => JSON.parse(l));
    const same = JSON.stringify(got) === JSON.stringify(JSON.parse(process.argv[2]));
    process.stdout.write(`${last === "" ? "ends with newline" : "no final newline"} ${same} ${lines.length}`);
  ' "$E2E_TMP/main.log" "$RECEIVED")" "ends with newline true $((N_RECEIVED + 4))"
check_eq "every log line is a JSON object with exactly the documented keys, in order" \
  "$(node -e '
    const fs = require("fs");
    const want = "at,method,path,headers,body,json,status,signature_ok";
    const bad = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").filter((l) => {
      try {
        const e = JSON.parse(l);
        return Object.keys(e).join(",") !== want || typeof e.headers !== "object" || typeof e.body !== "string" ||
          !(e.status === null || Number.isInteger(e.status)) || ![true, false, null].includes(e.signature_ok);
      } catch { return true; }
    });
    process.stdout.write(bad.length ? `bad: ${bad[0]}` : "all good");
  ' "$E2E_TMP/main.log")" "all good"

###############################################################################
section "invalid control requests"
post_json /_control '{"mode":"down"}'
check_eq "down without for_ms: 400" "$STATUS" 400
post_json /_control '{"mode":"sideways"}'
check_eq "unknown mode: 400" "$STATUS" 400
post_json /_control '{"mode":"fail","status":200}'
check_eq "fail with a 2xx status: 400" "$STATUS" 400
post_json /_control '{"mode":"fail","times":0}'
check_eq "times 0: 400" "$STATUS" 400
post_json /_control 'not json'
check_eq "not JSON: 400" "$STATUS" 400
req GET /_control
check_eq "nothing changed: mode ok, 4 received" "$(jget "$BODY" mode received)" "ok 4"

###############################################################################
section "SIGTERM"
kill -TERM "$SINK_PID"
wait "$SINK_PID"
check_eq "exits 0 on SIGTERM" "$?" 0
req GET /_control -m 2
check_eq "no longer listening" "$RC" 7

finish
