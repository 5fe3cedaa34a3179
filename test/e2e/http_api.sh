#!/usr/bin/env bash
# End-to-end: the HTTP Tracking API with curl against the cdp HTTP worker.
# Every endpoint and short form, both ways of giving the write key, gzip,
# deflate and text/plain bodies, batch envelopes, context.ip, every error path
# (status, JSON error body, and nothing stored), revocation, quarantine and
# duplicates in the 200 body, CORS preflight, /health and /metrics.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"

say "$E2E_NAME: HTTP Tracking API at $BASE"
section "setup"
setup_extension
check_ge "cdp.workers lists the HTTP worker" "$(sql "select count(*) from cdp.workers where backend_type = 'cdp http'")" 1

SRC="http_api_$RUN_ID"
KEY=$(sql "select cdp.create_source('$SRC')") || die "cdp.create_source failed"
SRC_ID=$(sql "select id from cdp.sources where name = '$SRC'")
[[ "$KEY" == cdp_* ]] || die "cdp.create_source returned [$KEY]"
pass "source $SRC created (id $SRC_ID)"
M="$RUN_ID-http"  # messageId prefix

col() { sql "select $2 from cdp.events where source_id = $SRC_ID and message_id = '$1'"; }
copies() { sql "select count(*) from cdp.events where source_id = $SRC_ID and message_id = '$1'"; }
stored_total() {
  sql "select (select count(*) from cdp.events) || ' events, ' || (select count(*) from cdp.quarantine)
          || ' quarantined, ' || (select count(*) from cdp.message_ids) || ' message ids'"
}
post() { # post PATH JSON [curl args...]: JSON body with the write key as Basic user
  local path=$1 body=$2
  shift 2
  http POST "$path" -u "$KEY:" -H 'Content-Type: application/json' --data-binary "$body" "$@"
}
# expect_ok WHAT ACCEPTED DUPLICATE REJECTED: a 200 with these counts.
expect_ok() {
  check_eq "$1: status" "$STATUS" 200
  check_eq "$1: body counts" "$(jget "$BODY" success accepted duplicate rejected)" "true $2 $3 $4"
}
# expect_refused WHAT STATUS BEFORE: that status, a JSON error body, and the
# same number of stored rows as BEFORE (from stored_total).
expect_refused() {
  check_eq "$1: status" "$STATUS" "$2"
  check_eq "$1: JSON error body (success=false)" "$(jget "$BODY" success)" false
  local err
  err=$(jget "$BODY" error)
  if [ -n "$err" ] && [ "$err" != "<missing>" ] && [ "$err" != "<not json>" ]; then
    pass "$1: error says \"$err\""
  else
    fail "$1: no error message in body [$BODY]"
  fi
  check_eq "$1: nothing stored" "$(stored_total)" "$3"
}

###############################################################################
section "every endpoint and short form stores its type"
declare -A BODIES=(
  [track]='"userId":"u-'"$RUN_ID"'","event":"Signed Up","properties":{"plan":"pro"}'
  [identify]='"userId":"u-'"$RUN_ID"'","traits":{"email":"ada@example.com"}'
  [page]='"anonymousId":"a-'"$RUN_ID"'","name":"Home","properties":{"path":"/"}'
  [screen]='"userId":"u-'"$RUN_ID"'","name":"Main"'
  [group]='"userId":"u-'"$RUN_ID"'","groupId":"g-'"$RUN_ID"'","traits":{"name":"Acme"}'
  [alias]='"userId":"u-'"$RUN_ID"'","previousId":"a-'"$RUN_ID"'"'
)
for type in track identify page screen group alias; do
  for path in "/v1/$type" "/v1/${type:0:1}"; do
    id="$M-ep-${path##*/}"
    post "$path" "{${BODIES[$type]},\"messageId\":\"$id\"}"
    expect_ok "POST $path" 1 0 0
    check_eq "POST $path: stored once as $type" "$(copies "$id") $(col "$id" type)" "1 $type"
  done
done
check_eq "track: event and properties stored" "$(col "$M-ep-track" "event || ' ' || properties::text")" \
  'Signed Up {"plan": "pro"}'
check_eq "identify: traits stored" "$(col "$M-ep-i" "traits->>'email'")" "ada@example.com"
check_eq "page: name, anonymous_id stored" "$(col "$M-ep-page" "name || ' ' || anonymous_id")" "Home a-$RUN_ID"
check_eq "group: group_id and traits stored" "$(col "$M-ep-g" "group_id || ' ' || (traits->>'name')")" "g-$RUN_ID Acme"
check_eq "alias: previous_id and user_id stored" "$(col "$M-ep-a" "previous_id || ' ' || user_id")" "a-$RUN_ID u-$RUN_ID"

# A trailing slash and a query string are ignored.
post "/v1/track/?x=1" "{${BODIES[track]},\"messageId\":\"$M-ep-slash\"}"
expect_ok "POST /v1/track/?x=1" 1 0 0

###############################################################################
section "batch and import, with an envelope context"
batch='{"batch":[
  {"type":"track","userId":"u-'"$RUN_ID"'","event":"B","messageId":"'"$M"'-b-1","context":{"locale":"en-GB"}},
  {"type":"identify","userId":"u-'"$RUN_ID"'","traits":{"plan":"pro"},"messageId":"'"$M"'-b-2"},
  {"type":"page","anonymousId":"a-'"$RUN_ID"'","name":"P","messageId":"'"$M"'-b-3"},
  {"type":"screen","userId":"u-'"$RUN_ID"'","name":"S","messageId":"'"$M"'-b-4"},
  {"type":"group","userId":"u-'"$RUN_ID"'","groupId":"g-'"$RUN_ID"'","messageId":"'"$M"'-b-5"},
  {"type":"alias","userId":"u-'"$RUN_ID"'","previousId":"a-'"$RUN_ID"'","messageId":"'"$M"'-b-6"}],
 "context":{"library":{"name":"e2e-curl","version":"1.0"},"locale":"fr-FR"},
 "integrations":{"All":false}}'
post /v1/batch "$batch"
expect_ok "POST /v1/batch with 6 types" 6 0 0
check_eq "batch: types stored in order" \
  "$(sql "select string_agg(type, ',' order by message_id) from cdp.events where source_id = $SRC_ID and message_id like '$M-b-%'")" \
  "track,identify,page,screen,group,alias"
check_eq "batch: envelope context.library merged into every message" \
  "$(sql "select count(*) from cdp.events where source_id = $SRC_ID and message_id like '$M-b-%' and context->'library'->>'name' = 'e2e-curl'")" 6
check_eq "batch: a message's own context key wins over the envelope's" "$(col "$M-b-1" "context->>'locale'")" "en-GB"
check_eq "batch: the envelope's key fills a message without it" "$(col "$M-b-2" "context->>'locale'")" "fr-FR"
check_eq "batch: envelope integrations merged" "$(col "$M-b-3" "integrations->>'All'")" "false"

post /v1/import '{"batch":[{"type":"track","userId":"u","event":"I","messageId":"'"$M"'-imp-1"},{"type":"identify","userId":"u","messageId":"'"$M"'-imp-2"}]}'
expect_ok "POST /v1/import" 2 0 0
check_eq "import: both stored" "$(col "$M-imp-1" type) $(col "$M-imp-2" type)" "track identify"

###############################################################################
section "write key: HTTP Basic user, or writeKey in the body"
post /v1/track '{"userId":"u","event":"K","messageId":"'"$M"'-key-basicpw"}' -u "$KEY:ignored-password"
expect_ok "Basic auth with a password" 1 0 0
http POST /v1/track -H 'Content-Type: application/json' \
  --data-binary '{"writeKey":"'"$KEY"'","userId":"u","event":"K","messageId":"'"$M"'-key-body"}'
expect_ok "writeKey in the body, no Authorization" 1 0 0
check_eq "body writeKey: stored under the source" "$(copies "$M-key-body")" 1
# Every column of the row, as one text: the key in none of them.
check_eq "body writeKey: not kept in the stored row (1 row, 0 with the key in any column)" \
  "$(sql "select count(*) || ' ' || count(*) filter (where e::text like '%$KEY%') from cdp.events e where message_id = '$M-key-body'")" "1 0"
http POST /v1/batch -H 'Content-Type: application/json' \
  --data-binary '{"writeKey":"'"$KEY"'","batch":[{"type":"track","userId":"u","event":"K","messageId":"'"$M"'-key-batch"}]}'
expect_ok "writeKey in a batch envelope" 1 0 0

###############################################################################
section "content encodings and types"
printf '%s' '{"userId":"u","event":"Z","messageId":"'"$M"'-gzip"}' | gzip -c >"$E2E_TMP/gz"
http POST /v1/track -u "$KEY:" -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' --data-binary @"$E2E_TMP/gz"
expect_ok "gzip body" 1 0 0
check_eq "gzip body: stored" "$(col "$M-gzip" event)" Z
# gzip of a batch, as the RudderStack SDKs send.
printf '%s' '{"batch":[{"type":"track","userId":"u","event":"Z","messageId":"'"$M"'-gzb-1"},{"type":"track","userId":"u","event":"Z","messageId":"'"$M"'-gzb-2"}]}' |
  gzip -c | curl -sS -m 15 -o "$E2E_TMP/body" -w '%{http_code}' -u "$KEY:" -H 'Content-Type: application/json' \
    -H 'Content-Encoding: gzip' --data-binary @- "$BASE/v1/batch" >"$E2E_TMP/status"
STATUS=$(cat "$E2E_TMP/status")
BODY=$(cat "$E2E_TMP/body")
expect_ok "gzip batch piped to curl" 2 0 0
node -e 'process.stdout.write(require("zlib").deflateSync(process.argv[1]))' \
  '{"userId":"u","event":"D","messageId":"'"$M"'-deflate"}' >"$E2E_TMP/deflate"
http POST /v1/track -u "$KEY:" -H 'Content-Type: application/json' -H 'Content-Encoding: deflate' --data-binary @"$E2E_TMP/deflate"
expect_ok "deflate (zlib) body" 1 0 0
http POST /v1/track -u "$KEY:" -H 'Content-Type: text/plain' --data-binary '{"userId":"u","event":"T","messageId":"'"$M"'-text"}'
expect_ok "Content-Type: text/plain" 1 0 0
http POST /v1/t -H 'Content-Type: text/plain;charset=UTF-8' \
  --data-binary '{"writeKey":"'"$KEY"'","userId":"u","event":"T","messageId":"'"$M"'-beacon"}'
expect_ok "text/plain;charset=UTF-8 with body writeKey (navigator.sendBeacon)" 1 0 0
http POST /v1/track -u "$KEY:" -H 'Content-Type: application/json; charset=utf-8' --data-binary '{"userId":"u","event":"T","messageId":"'"$M"'-charset"}'
expect_ok "Content-Type: application/json; charset=utf-8" 1 0 0
http POST /v1/track -u "$KEY:" -H 'Content-Type:' --data-binary '{"userId":"u","event":"T","messageId":"'"$M"'-notype"}'
expect_ok "no Content-Type at all" 1 0 0

###############################################################################
section "context.ip"
post /v1/track '{"userId":"u","event":"IP","messageId":"'"$M"'-ip-absent"}'
expect_ok "no context.ip" 1 0 0
check_eq "context.ip filled with the client address when absent" "$(col "$M-ip-absent" "context->>'ip'")" 127.0.0.1
post /v1/track '{"userId":"u","event":"IP","messageId":"'"$M"'-ip-kept","context":{"ip":"203.0.113.7"}}'
expect_ok "context.ip given" 1 0 0
check_eq "context.ip kept when present" "$(col "$M-ip-kept" "context->>'ip'")" 203.0.113.7
post /v1/track '{"userId":"u","event":"IP","messageId":"'"$M"'-ip-direct","context":{"ip":"203.0.113.7","direct":true}}'
expect_ok "context.direct=true" 1 0 0
check_eq "context.ip replaced by the client address when context.direct is true" "$(col "$M-ip-direct" "context->>'ip'")" 127.0.0.1
post /v1/batch '{"batch":[{"type":"track","userId":"u","event":"IP","messageId":"'"$M"'-ip-env"}],"context":{"ip":"198.51.100.1"}}'
expect_ok "batch envelope context.ip" 1 0 0
check_eq "context.ip from the batch envelope kept" "$(col "$M-ip-env" "context->>'ip'")" 198.51.100.1
post /v1/track '{"userId":"u","event":"IP","messageId":"'"$M"'-ip-xff"}' -H 'X-Forwarded-For: 192.0.2.99'
expect_ok "X-Forwarded-For from an untrusted peer" 1 0 0
check_eq "X-Forwarded-For ignored when the peer is not a trusted proxy" "$(col "$M-ip-xff" "context->>'ip'")" 127.0.0.1

###############################################################################
section "quarantine and duplicates in the 200 body"
before_q=$(sql "select count(*) from cdp.quarantine where source_id = $SRC_ID")
post /v1/batch '{"batch":[
  {"type":"track","userId":"u","event":"Good","messageId":"'"$M"'-q-good"},
  {"type":"track","userId":"u","messageId":"'"$M"'-q-bad"},
  {"type":"track","event":"NoUser","messageId":"'"$M"'-q-nouser"}]}'
expect_ok "batch with 2 invalid messages" 1 0 2
check_eq "rejected message 1 reported with index, messageId, status" \
  "$(jget "$BODY" messages.0.index messages.0.messageId messages.0.status)" "1 $M-q-bad rejected"
check_eq "rejected message 1 reported with its reason" "$(jget "$BODY" messages.0.error)" "event: is required for track"
check_eq "rejected message 2 reported" "$(jget "$BODY" messages.1.messageId messages.1.status)" "$M-q-nouser rejected"
check_eq "accepted message not listed in messages" "$(jget "$BODY" messages.2)" "<missing>"
check_eq "valid message of the batch stored" "$(copies "$M-q-good")" 1
check_eq "rejected messages not in cdp.events" "$(copies "$M-q-bad")$(copies "$M-q-nouser")" 00
check_eq "both rejected messages added to cdp.quarantine" \
  "$(($(sql "select count(*) from cdp.quarantine where source_id = $SRC_ID") - before_q))" 2
check_eq "quarantine keeps the reason and the raw message" \
  "$(sql "select reason || ' | ' || (raw::jsonb->>'messageId') from cdp.quarantine where source_id = $SRC_ID and message_id = '$M-q-bad'")" \
  "event: is required for track | $M-q-bad"
post /v1/track '{"userId":"u","messageId":"'"$M"'-q-single"}'
expect_ok "single invalid message on /v1/track (still 200)" 0 0 1
check_eq "single invalid message quarantined" \
  "$(sql "select count(*) from cdp.quarantine where source_id = $SRC_ID and message_id = '$M-q-single'")" 1

post /v1/track '{"userId":"u","event":"Again","messageId":"'"$M"'-ep-track"}'
expect_ok "resending a stored messageId" 0 1 0
check_eq "duplicate reported in messages" "$(jget "$BODY" messages.0.messageId messages.0.status)" "$M-ep-track duplicate"
check_eq "duplicate stored once, first version kept" "$(copies "$M-ep-track") $(col "$M-ep-track" event)" "1 Signed Up"
post /v1/batch '{"batch":[
  {"type":"track","userId":"u","event":"D","messageId":"'"$M"'-dup-new"},
  {"type":"track","userId":"u","event":"D","messageId":"'"$M"'-dup-new"},
  {"type":"track","userId":"u","event":"D","messageId":"'"$M"'-b-1"}]}'
expect_ok "batch: new, same again, old" 1 2 0
check_eq "duplicate inside one batch stored once" "$(copies "$M-dup-new")" 1
# The same messageId from 16 clients at once (they may share a commit): one wins.
for i in $(seq 1 16); do
  curl -s -m 15 -o "$E2E_TMP/race.$i" -w '%{http_code}' -u "$KEY:" -H 'Content-Type: application/json' \
    --data-binary '{"userId":"u","event":"Race '"$i"'","messageId":"'"$M"'-race"}' "$BASE/v1/track" >"$E2E_TMP/race.$i.status" &
done
wait
race=$(for i in $(seq 1 16); do printf '%s:%s\n' "$(cat "$E2E_TMP/race.$i.status")" "$(jget "$(cat "$E2E_TMP/race.$i")" accepted duplicate)"; done)
check_eq "16 concurrent requests with one messageId: all 200, 1 accepted, 15 duplicate" \
  "$(grep -c '^200:1 0$' <<<"$race") $(grep -c '^200:0 1$' <<<"$race")" "1 15"
check_eq "16 concurrent requests with one messageId: stored once" "$(copies "$M-race")" 1

###############################################################################
section "error paths: status, JSON error body, nothing stored"
before=$(stored_total)
post /v1/track '{"userId":"u","event":"E","messageId":"'"$M"'-err-bad-json"'
expect_refused "malformed JSON -> 400" 400 "$before"
post /v1/track '[{"userId":"u","event":"E","messageId":"'"$M"'-err-array"}]'
expect_refused "JSON array body -> 400" 400 "$before"
post /v1/track '"just a string"'
expect_refused "JSON string body -> 400" 400 "$before"
post /v1/track ''
expect_refused "empty body -> 400" 400 "$before"
post /v1/batch '{"batch":{"type":"track"}}'
expect_refused "batch that is not an array -> 400" 400 "$before"
printf 'this is not gzip at all' >"$E2E_TMP/notgz"
http POST /v1/track -u "$KEY:" -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' --data-binary @"$E2E_TMP/notgz"
expect_refused "Content-Encoding: gzip with a body that is not gzip -> 400" 400 "$before"

http POST /v1/track -H 'Content-Type: application/json' --data-binary '{"userId":"u","event":"E","messageId":"'"$M"'-err-nokey"}'
expect_refused "no write key -> 401" 401 "$before"
post /v1/track '{"userId":"u","event":"E","messageId":"'"$M"'-err-unknown"}' -u "cdp_not_a_real_key:"
expect_refused "unknown write key (Basic) -> 401" 401 "$before"
http POST /v1/track -H 'Content-Type: application/json' --data-binary '{"writeKey":"cdp_nope","userId":"u","event":"E","messageId":"'"$M"'-err-unknown2"}'
expect_refused "unknown write key (body) -> 401" 401 "$before"

# Exactly at the 500 KB limit is fine; one byte more is not.
limit=$((500 * 1024))
pad_to() { # pad_to FILE SIZE: pads a JSON file with spaces to exactly SIZE bytes
  local have
  have=$(stat -c %s "$1")
  head -c $(($2 - have)) /dev/zero | tr '\0' ' ' >>"$1"
}
printf '%s' '{"userId":"u","event":"Edge","messageId":"'"$M"'-edge"}' >"$E2E_TMP/edge"
pad_to "$E2E_TMP/edge" $limit
http POST /v1/track -u "$KEY:" -H 'Content-Type: application/json' --data-binary @"$E2E_TMP/edge"
expect_ok "body of exactly 500 KB" 1 0 0
before=$(stored_total)
printf '%s' '{"userId":"u","event":"Big","messageId":"'"$M"'-err-big"}' >"$E2E_TMP/big"
pad_to "$E2E_TMP/big" $((limit + 1))
http POST /v1/track -u "$KEY:" -H 'Content-Type: application/json' --data-binary @"$E2E_TMP/big"
expect_refused "body of 500 KB + 1 byte -> 413" 413 "$before"
{
  printf '%s' '{"userId":"u","event":"Big","messageId":"'"$M"'-err-big2","properties":{"p":"'
  head -c 700000 /dev/zero | tr '\0' x
  printf '"}}'
} >"$E2E_TMP/big2"
http POST /v1/track -u "$KEY:" -H 'Content-Type: application/json' --data-binary @"$E2E_TMP/big2"
expect_refused "700 KB body with Content-Length -> 413" 413 "$before"
http POST /v1/track -u "$KEY:" -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' --data-binary @"$E2E_TMP/big2"
expect_refused "700 KB chunked body (no Content-Length) -> 413" 413 "$before"
{
  printf '%s' '{"userId":"u","event":"Bomb","messageId":"'"$M"'-err-bomb","properties":{"p":"'
  head -c 5000000 /dev/zero | tr '\0' x
  printf '"}}'
} | gzip -9 -c >"$E2E_TMP/bomb"
bomb_size=$(stat -c %s "$E2E_TMP/bomb")
http POST /v1/track -u "$KEY:" -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' --data-binary @"$E2E_TMP/bomb"
expect_refused "gzip bomb ($bomb_size bytes inflating to 5 MB) -> 413" 413 "$before"

many() { # many N PREFIX: a batch of N small track messages
  awk -v n="$1" -v p="$2" 'BEGIN {
    printf "{\"batch\":["
    for (i = 0; i < n; i++) {
      if (i) printf ","
      printf "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"E\",\"messageId\":\"%s-%d\"}", p, i
    }
    printf "]}"
  }'
}
many 2501 "$M-err-many" >"$E2E_TMP/many"
http POST /v1/batch -u "$KEY:" -H 'Content-Type: application/json' --data-binary @"$E2E_TMP/many"
expect_refused "batch of 2501 messages ($(stat -c %s "$E2E_TMP/many") bytes) -> 413" 413 "$before"
many 2500 "$M-max" >"$E2E_TMP/max"
http POST /v1/batch -u "$KEY:" -H 'Content-Type: application/json' --data-binary @"$E2E_TMP/max"
expect_ok "batch of exactly 2500 messages" 2500 0 0
check_eq "2500 messages stored" "$(sql "select count(*) from cdp.events where source_id = $SRC_ID and message_id like '$M-max-%'")" 2500

# The body decides, not its label (RudderStack's Node SDK labels gzip JSON
# form-urlencoded): see test/e2e/sdk_endpoints.sh for what is accepted.
before=$(stored_total)
http POST /v1/track -u "$KEY:" -H 'Content-Type: application/x-www-form-urlencoded' --data-binary 'userId=u&event=E'
expect_refused "a form-urlencoded body that is not JSON -> 400" 400 "$before"
post /v1/track '{"userId":"u","event":"E","messageId":"'"$M"'-err-br"}' -H 'Content-Encoding: br'
expect_refused "Content-Encoding: br -> 415" 415 "$before"
post /v1/nope '{"userId":"u","event":"E","messageId":"'"$M"'-err-404"}'
expect_refused "POST /v1/nope -> 404" 404 "$before"
post /track '{"userId":"u","event":"E","messageId":"'"$M"'-err-404b"}'
expect_refused "POST /track (no /v1) -> 404" 404 "$before"
http GET /v1/track -u "$KEY:"
expect_refused "GET /v1/track -> 405" 405 "$before"
http PUT /v1/batch -u "$KEY:" -H 'Content-Type: application/json' --data-binary '{"batch":[]}'
expect_refused "PUT /v1/batch -> 405" 405 "$before"
http POST /health -H 'Content-Type: application/json' --data-binary '{}'
expect_refused "POST /health -> 405" 405 "$before"

###############################################################################
section "revoked write key is refused within 1.5 s"
RSRC="http_api_rev_$RUN_ID"
RKEY=$(sql "select cdp.create_source('$RSRC')")
RSRC_ID=$(sql "select id from cdp.sources where name = '$RSRC'")
http POST /v1/track -u "$RKEY:" -H 'Content-Type: application/json' --data-binary '{"userId":"u","event":"R","messageId":"'"$M"'-rev-0"}'
check_eq "key works before revocation" "$STATUS" 200
sql "select cdp.revoke_source('$RSRC')" >/dev/null
revoked_at=$(now_ms)
n=0 first_401="" late_200=() refused=()
while [ $(($(now_ms) - revoked_at)) -lt 3000 ]; do
  n=$((n + 1))
  http POST /v1/track -u "$RKEY:" -H 'Content-Type: application/json' --data-binary '{"userId":"u","event":"R","messageId":"'"$M"'-rev-'$n'"}'
  if [ "$STATUS" = 401 ]; then
    [ -n "$first_401" ] || first_401=$(($(now_ms) - revoked_at))
    refused+=("$M-rev-$n")
  elif [ "$STATUS" = 200 ]; then
    [ -z "$first_401" ] || late_200+=("$M-rev-$n")
  else
    fail "revoked key: unexpected status $STATUS ($BODY)"
  fi
  [ -n "$first_401" ] && [ "${#refused[@]}" -ge 3 ] && break
  sleep 0.1
done
if [ -n "$first_401" ] && [ "$first_401" -le 1500 ]; then
  pass "revoked key answered 401 after $first_401 ms"
else
  fail "revoked key not refused within 1500 ms (first 401 after: ${first_401:-never in 3 s})"
fi
check_eq "revoked key: 401 body names writeKey" "$(jget "$BODY" field)" writeKey
check_eq "revoked key: no 200 after the first 401" "${late_200[*]:-}" ""
in_list=$(printf "'%s'," "${refused[@]:-none}")
check_eq "revoked key: refused messages not stored" \
  "$(sql "select count(*) from cdp.events where source_id = $RSRC_ID and message_id in (${in_list%,})")" 0
http POST /v1/track -H 'Content-Type: application/json' --data-binary '{"writeKey":"'"$RKEY"'","userId":"u","event":"R","messageId":"'"$M"'-rev-body"}'
check_eq "revoked key in the body: 401" "$STATUS" 401

###############################################################################
section "an open SQL transaction holding a messageId stalls nobody else"
# Session A ingests hol-1 and stays open for 4 s. The worker waits at most its
# lock_timeout (1 s) for that row: the request repeating hol-1 gets a 503 (the
# client retries later), an unrelated request is stored without waiting for A.
HOLDER="e2e-hol-$RUN_ID"
(PGAPPNAME=$HOLDER cluster_psql "$CLUSTER_DIR" cdp -q -c "begin" \
   -c "select count(*) from cdp.ingest('{\"type\":\"track\",\"userId\":\"u\",\"event\":\"E\",\"messageId\":\"$M-hol-1\"}', '$KEY')" \
   -c "select pg_sleep(4)" -c "commit" >/dev/null 2>&1 &)
# Until A has ingested (its transaction holds a lock on a row) and sleeps.
holding() {
  [ "$(sql "select count(*) from pg_stat_activity a join pg_locks l on l.pid = a.pid
              where a.application_name = '$HOLDER' and a.wait_event = 'PgSleep' and l.locktype = 'transactionid' and l.granted")" = 1 ]
}
deadline=$(($(now_ms) + 10000))
until holding; do
  [ "$(now_ms)" -lt "$deadline" ] || die "session A did not ingest $M-hol-1 and hold its transaction within 10 s"
  sleep 0.05
done
t0=$(now_ms)
post /v1/track "{\"userId\":\"u\",\"event\":\"E\",\"messageId\":\"$M-hol-1\"}" >/dev/null
held_status=$STATUS
post /v1/track "{\"userId\":\"u\",\"event\":\"E\",\"messageId\":\"$M-hol-2\"}"
t1=$(now_ms)
check_eq "the request repeating the held messageId is refused for now" "$held_status" 503
expect_ok "an unrelated request" 1 0 0
check_eq "both answered before the open transaction ended (< 3.5 s)" "$(( t1 - t0 < 3500 ))" 1
check_eq "session A still open then (its transaction not committed)" "$(holding && echo open || echo gone) $(copies "$M-hol-1")" "open 0"
# Until A commits: hol-1 visible.
deadline=$(($(now_ms) + 15000))
until [ "$(copies "$M-hol-1")" = 1 ]; do
  [ "$(now_ms)" -lt "$deadline" ] || die "session A's transaction did not commit within 15 s"
  sleep 0.1
done
post /v1/track "{\"userId\":\"u\",\"event\":\"E\",\"messageId\":\"$M-hol-1\"}"
expect_ok "once it committed, the retry is a duplicate" 0 1 0
check_eq "stored once" "$(copies "$M-hol-1")" 1

section "CORS preflight, /health, /metrics"
http OPTIONS /v1/track -H 'Origin: https://shop.example.com' -H 'Access-Control-Request-Method: POST' \
  -H 'Access-Control-Request-Headers: content-type, authorization'
check_eq "OPTIONS /v1/track: 204" "$STATUS" 204
check_eq "OPTIONS: Access-Control-Allow-Origin" "$(header Access-Control-Allow-Origin)" "https://shop.example.com"
check_match "OPTIONS: Access-Control-Allow-Methods has POST" "$(header Access-Control-Allow-Methods)" POST
check_eq "OPTIONS: Access-Control-Allow-Headers are the ones asked for" "$(header Access-Control-Allow-Headers)" \
  "content-type, authorization"
http OPTIONS /v1/t -H 'Origin: https://shop.example.com'
check_eq "OPTIONS /v1/t: 204" "$STATUS" 204
post /v1/track '{"userId":"u","event":"CORS","messageId":"'"$M"'-cors"}' -H 'Origin: https://shop.example.com'
check_eq "POST with Origin: Access-Control-Allow-Origin on the 200" "$STATUS $(header Access-Control-Allow-Origin)" "200 https://shop.example.com"
http GET /health
check_eq "GET /health: 200" "$STATUS" 200
check_eq "GET /health: JSON status" "$(jget "$BODY" status)" ok
http GET /metrics
check_eq "GET /metrics: 200" "$STATUS" 200
check_match "GET /metrics: Prometheus text content type" "$(header Content-Type)" '^text/plain'
req_200=$(printf '%s\n' "$BODY" | awk '$1 == "cdp_http_requests_total{code=\"200\"}" { print $2 }')
req_all=$(printf '%s\n' "$BODY" | awk '$1 ~ /^cdp_http_requests_total\{/ { s += $2 } END { print s + 0 }')
accepted=$(printf '%s\n' "$BODY" | awk '$1 == "cdp_http_events_total{status=\"accepted\"}" { print $2 }')
check_ge "metrics: cdp_http_requests_total (all codes)" "$req_all" 60
check_ge "metrics: cdp_http_requests_total{code=\"200\"}" "$req_200" 40
check_ge "metrics: cdp_http_events_total{status=\"accepted\"}" "$accepted" 2500
check_ge "metrics: cdp_http_requests_total{code=\"413\"}" \
  "$(printf '%s\n' "$BODY" | awk '$1 == "cdp_http_requests_total{code=\"413\"}" { print $2 }')" 5
# The same counters with the same values: every sample of /metrics (just read
# into BODY) equals cdp.http_metrics()'s, but for the gauges (they move) and
# the 200 count, which the GET /metrics above may have added 1 to by now.
sql "select cdp.http_metrics()" >"$E2E_TMP/sql_metrics"
printf '%s\n' "$BODY" >"$E2E_TMP/http_metrics"
check_eq "cdp.http_metrics() in SQL has the same counters with the same values as GET /metrics" \
  "$(awk '
    /^#/ || NF != 2 || $1 ~ /^cdp_http_(queue_messages|open_connections|buffered_bytes)/ { next }
    FNR == NR { http[$1] = $2; next }
    { sql[$1] = $2 }
    END {
      for (k in http) {
        n++
        if (!(k in sql)) { bad = bad " " k ": missing in SQL"; continue }
        d = sql[k] - http[k]
        if (d != 0 && !(k == "cdp_http_requests_total{code=\"200\"}" && d == 1)) bad = bad " " k ": " http[k] " vs " sql[k]
      }
      for (k in sql) if (!(k in http)) bad = bad " " k ": missing in /metrics"
      print (n >= 10 && bad == "") ? "same " (n >= 10) : "differ (" n " samples):" bad
    }' "$E2E_TMP/http_metrics" "$E2E_TMP/sql_metrics")" "same 1"

###############################################################################
section "X-Forwarded-For believed only from cdp.http_trusted_proxies"
set_proxies() { # set_proxies VALUE|'': ALTER SYSTEM and reload
  if [ -n "$1" ]; then
    sql "alter system set cdp.http_trusted_proxies = '$1'" >/dev/null
  else
    sql "alter system reset cdp.http_trusted_proxies" >/dev/null
  fi
  sql "select pg_reload_conf()" >/dev/null
}
# xff_ip HEADER: sends one message with that X-Forwarded-For, prints its stored context.ip.
xff_ip() {
  local id
  id="$M-xff-$(date +%s%N)"
  post /v1/track '{"userId":"u","event":"XFF","messageId":"'"$id"'"}' -H "X-Forwarded-For: $1"
  [ "$STATUS" = 200 ] || echo "status $STATUS: $BODY"
  col "$id" "context->>'ip'"
}
# wait_xff HEADER WANT: until a message sent with HEADER gets ip WANT (the reload is asynchronous).
wait_xff() {
  local deadline=$(($(now_ms) + 8000)) got
  while [ "$(now_ms)" -lt "$deadline" ]; do
    got=$(xff_ip "$1")
    [ "$got" = "$2" ] && { echo "$got"; return; }
    sleep 0.2
  done
  echo "$got"
}
E2E_CLEANUP+=("set_proxies ''")
set_proxies "127.0.0.1"
check_eq "trusted proxy 127.0.0.1: client address taken from X-Forwarded-For" "$(wait_xff 192.0.2.10 192.0.2.10)" 192.0.2.10
check_eq "trusted proxy: right-most untrusted hop of a chain" "$(xff_ip '198.51.100.3, 192.0.2.11, 127.0.0.1')" 192.0.2.11
check_eq "trusted proxy: an explicit context.ip is still kept" \
  "$(post /v1/track '{"userId":"u","event":"XFF","messageId":"'"$M"'-xff-ctx","context":{"ip":"203.0.113.9"}}' -H 'X-Forwarded-For: 192.0.2.12'; col "$M-xff-ctx" "context->>'ip'")" 203.0.113.9
set_proxies ""
check_eq "proxy setting reset: X-Forwarded-For ignored again" "$(wait_xff 192.0.2.13 127.0.0.1)" 127.0.0.1

finish
