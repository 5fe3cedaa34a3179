#!/usr/bin/env bash
# End-to-end: what SDKs fetch and send besides the Tracking API's main paths
# (docs/http-api.md#sdk-endpoints), against the real HTTP worker, each answer
# checked in SQL: analytics-next's settings and RudderStack's source config
# (keys, revocation, ETag and 304, cdp.public_url), the CORS preflight the
# SDKs' retry headers need, the short paths (/v1/b, /v1/m, /beacon/v1/batch
# with the key in the query), bodies judged by content (gzip labelled
# form-urlencoded), identify traits from context.traits over HTTP and SQL,
# the snippet page, and RudderStack's Node.js SDK with its defaults.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"
NODE_DIR="$ROOT/test/e2e/rudder_node"

say "$E2E_NAME: SDK endpoints on $BASE"
section "setup"
setup_extension
SRC="sdk_endpoints_$RUN_ID"
KEY=$(sql "select cdp.create_source('$SRC')") || die "cdp.create_source failed"
SRC_ID=$(sql "select id from cdp.sources where name = '$SRC'")
stored() { sql "select count(*) from cdp.events where source_id = $SRC_ID and message_id like '$1'"; }
traits_of() { sql "select cdp.profile('user_id', '$1') -> 'traits' ->> '$2'"; }

###############################################################################
section "analytics-next settings: GET /v1/projects/{writeKey}/settings"
http GET "/v1/projects/$KEY/settings" -H "Origin: http://shop.test"
check_eq "200 for a known key" "$STATUS" 200
check_eq "Segment.io integration points here" "$(node -p \
  'const d = JSON.parse(process.argv[1]).integrations["Segment.io"]; [d.apiKey === process.argv[2], d.apiHost, d.protocol].join(" ")' \
  "$BODY" "$KEY")" "true 127.0.0.1:$HTTP_PORT/v1 http"
check_eq "cacheable for a minute" "$(header Cache-Control)" "public, max-age=60"
check_eq "readable from another origin" "$(header Access-Control-Allow-Origin)" "http://shop.test"
TAG=$(header ETag)
check_match "has an ETag" "$TAG" '^"a[0-9a-f]{16}"$'
http GET "/v1/projects/$KEY/settings" -H "If-None-Match: $TAG"
check_eq "304 with the same ETag" "$STATUS" 304
http GET "/v1/projects/cdp_no_such_key/settings"
check_eq "404 for an unknown key, as JSON" "$STATUS $(jget "$BODY" field error)" "404 writeKey is unknown or revoked"

set_public_url() { # ALTER SYSTEM runs alone, outside a transaction block
  sql "alter system $1" >/dev/null && sql "select pg_reload_conf()" >/dev/null
  sleep 0.5  # the worker reads the setting at its next loop after the reload signal
}
set_public_url "set cdp.public_url = 'https://collect.example.com/cdp'"
http GET "/v1/projects/$KEY/settings"
check_eq "cdp.public_url names the server instead of Host" \
  "$(node -p 'const d = JSON.parse(process.argv[1]).integrations["Segment.io"]; d.apiHost + " " + d.protocol' "$BODY")" \
  "collect.example.com/cdp/v1 https"
out=$(sql "alter system set cdp.public_url = 'collect.example.com'" 2>&1)
check_match "a public URL without a scheme is refused, naming the rule" "$out" 'cdp.public_url must be empty or "http\(s\)://host'
set_public_url "reset cdp.public_url"

###############################################################################
section "RudderStack source config: GET /sourceConfig"
http GET "/sourceConfig/?p=npm&v=3.34.1&build=modern&writeKey=$KEY&lockIntegrationsVersion=false"
check_eq "200 with the key in the query" "$STATUS" 200
check_eq "source.id, enabled, no destinations" \
  "$(jget "$BODY" source.id source.enabled source.destinations)" "cdp-source-$SRC_ID true []"
http GET "/sourceConfig" -u "$KEY:"
check_eq "200 with the key as HTTP Basic" "$STATUS" 200
http GET "/sourceConfig?writeKey=cdp_no_such_key"
check_eq "404 for an unknown key" "$STATUS" 404
http GET "/sourceConfig"
check_eq "401 without a key" "$STATUS" 401
OLD="sdk_endpoints_old_$RUN_ID"
OLD_KEY=$(sql "select cdp.create_source('$OLD')")
http GET "/sourceConfig?writeKey=$OLD_KEY"
check_eq "a new key works at once" "$STATUS" 200
sql "select cdp.revoke_source('$OLD')" >/dev/null
sleep 1.5  # the workers' key snapshot is at most a second old
http GET "/v1/projects/$OLD_KEY/settings"
check_eq "a revoked key's settings are 404 within a second" "$STATUS" 404

###############################################################################
section "CORS preflight for the SDKs' headers"
http OPTIONS "/v1/b" -H "Origin: http://shop.test" -H "Access-Control-Request-Method: POST" \
  -H "Access-Control-Request-Headers: content-type,x-retry-count,anonymousid,sentat,rsa-retry-attempt"
check_eq "204" "$STATUS" 204
check_eq "the asked headers are allowed" "$(header Access-Control-Allow-Headers)" \
  "content-type, x-retry-count, anonymousid, sentat, rsa-retry-attempt"
check_eq "Vary names what the answer depends on" "$(header Vary)" \
  "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
check_eq "no credentials through cdp.http_cors_origins = '*'" "$(header Access-Control-Allow-Credentials)" ""
check_eq "cached for a day" "$(header Access-Control-Max-Age)" 86400
# What Chromium asks before RudderStack v3 re-sends an event reclaimed from storage.
RS_RETRY="anonymousid,authorization,content-type,rsa-recovered,rsa-retry-attempt,rsa-retry-reason,rsa-since-first-attempt,rsa-since-last-attempt,sentat"
http OPTIONS "/v1/track" -H "Origin: http://shop.test" -H "Access-Control-Request-Method: POST" \
  -H "Access-Control-Request-Headers: $RS_RETRY"
check_eq "a RudderStack v3 retry's headers are all allowed" "$(header Access-Control-Allow-Headers | tr -d ' ')" "$RS_RETRY"
http POST /v1/track -H "Origin: http://shop.test" -u "$KEY:" -d '{"userId":"x","event":"e"}'
check_eq "answers expose Retry-After to scripts" "$(header Access-Control-Expose-Headers)" "Retry-After, ETag"

###############################################################################
section "short paths, keys in the query, bodies judged by content"
http POST /v1/b -u "$KEY:" -H "Content-Type: text/plain" \
  -d '{"batch":[{"type":"track","userId":"u-b","event":"Batched","messageId":"'$RUN_ID'-b"}]}'
check_eq "/v1/b (analytics-next batching) stores the batch" "$STATUS $(stored "$RUN_ID-b")" "200 1"
http POST "/beacon/v1/batch?writeKey=$KEY" -H "Content-Type: text/plain;charset=UTF-8" \
  -d '{"batch":[{"type":"page","anonymousId":"a-beacon","name":"Home","messageId":"'$RUN_ID'-beacon"}],"sentAt":"2026-01-01T00:00:00.000Z"}'
check_eq "/beacon/v1/batch with the key in the query stores the batch" "$STATUS $(stored "$RUN_ID-beacon")" "200 1"
http POST "/v1/track?writeKey=cdp_no_such_key" -d '{"userId":"x","event":"e"}'
check_eq "an unknown key in the query is 401" "$STATUS" 401
printf '%s' '{"batch":[{"type":"track","userId":"u-gz","event":"Zipped","messageId":"'$RUN_ID'-gz"}]}' | gzip >"$E2E_TMP/body.gz"
http POST /v1/batch -u "$KEY:" -H "Content-Type: application/x-www-form-urlencoded" -H "Content-Encoding: gzip" \
  --data-binary "@$E2E_TMP/body.gz"
check_eq "gzip JSON labelled form-urlencoded is stored" "$STATUS $(stored "$RUN_ID-gz")" "200 1"
before=$(sql "select count(*) from cdp.events where source_id = $SRC_ID")
http POST /v1/batch -u "$KEY:" -H "Content-Type: application/x-www-form-urlencoded" -d 'userId=x&event=e'
check_eq "a body that is not JSON is 400, naming the payload" "$STATUS $(jget "$BODY" field)" "400 payload"
check_eq "and nothing is stored" "$(sql "select count(*) from cdp.events where source_id = $SRC_ID")" "$before"
http POST /v1/m -H "Content-Type: text/plain" -d '{"series":[{"type":"Counter","metric":"analytics_js.invoke","value":1}]}'
check_eq "/v1/m (SDK reports) answers 200 without a key" "$STATUS" 200
check_match "and counts it in /metrics" "$(curl -s "$BASE/metrics" | grep '^cdp_http_sdk_reports_total')" \
  '^cdp_http_sdk_reports_total [1-9]'

###############################################################################
section "identify traits from context.traits (RudderStack's browser SDK)"
http POST /v1/identify -u "$KEY:" \
  -d '{"userId":"'$RUN_ID'-ctx","messageId":"'$RUN_ID'-ctx","context":{"traits":{"email":"lin@example.com","plan":"pro"}}}'
check_eq "accepted over HTTP" "$STATUS" 200
check_eq "stored with the traits" "$(sql "select traits->>'email' from cdp.events where message_id = '$RUN_ID-ctx'")" \
  "lin@example.com"
check_eq "the profile gets them" \
  "$(wait_sql 15 "select cdp.profile('user_id', '$RUN_ID-ctx') -> 'traits' ->> 'plan'" pro)" pro
sql "select cdp.ingest('{\"type\":\"identify\",\"userId\":\"$RUN_ID-sqlctx\",\"context\":{\"traits\":{\"plan\":\"team\"}}}')" >/dev/null
check_eq "the same through cdp.ingest" \
  "$(wait_sql 15 "select cdp.profile('user_id', '$RUN_ID-sqlctx') -> 'traits' ->> 'plan'" team)" team

###############################################################################
section "the snippet page"
http GET /
check_eq "GET / is HTML" "$STATUS $(header Content-Type)" "200 text/html; charset=utf-8"
check_match "naming this server for analytics-next" "$BODY" "cdnURL: 'http://127.0.0.1:$HTTP_PORT'"
check_match "and for RudderStack" "$BODY" "configUrl: 'http://127.0.0.1:$HTTP_PORT'"

###############################################################################
section "@rudderstack/rudder-sdk-node with its defaults"
if [ ! -f "$NODE_DIR/node_modules/@rudderstack/rudder-sdk-node/package.json" ]; then
  (cd "$NODE_DIR" && timeout 180 npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in $NODE_DIR failed"
fi
P="$RUN_ID-rs"
out=$(cd "$NODE_DIR" && CDP_HOST="$BASE" CDP_WRITE_KEY="$KEY" CDP_PREFIX="$P" timeout 60 node send.mjs 2>&1)
check_eq "the SDK flushed with no error" "$(jget "$out" ok)" true
check_eq "4 calls stored once each" \
  "$(sql "select count(*) || ' ' || count(distinct message_id) from cdp.events where source_id = $SRC_ID and message_id like '$P-%'")" "4 4"
check_eq "types and fields" \
  "$(sql "select string_agg(type || ':' || coalesce(event, name, group_id, '') , ' ' order by type) from cdp.events
           where source_id = $SRC_ID and message_id like '$P-%'")" "group:$P-org identify: page:Pricing track:Order Completed"
check_eq "identify: user_id, anonymous_id and traits on the event" \
  "$(sql "select user_id || ' ' || anonymous_id || ' ' || (traits->>'email') || ' ' || (traits->>'plan') from cdp.events where message_id = '$P-identify'")" \
  "$P-user $P-anon grace@example.com team"
check_eq "page: category and properties" \
  "$(sql "select category || ' ' || (properties->>'path') from cdp.events where message_id = '$P-page'")" "Docs /pricing"
check_eq "group: user_id and the group's traits" \
  "$(sql "select user_id || ' ' || (traits->>'name') from cdp.events where message_id = '$P-group'")" "$P-user Initech"
check_eq "track properties exact" \
  "$(sql "select (properties->'revenue')::text || ' ' || (properties->>'currency') from cdp.events where message_id = '$P-track'")" "99.5 EUR"
check_eq "library is the RudderStack Node SDK" \
  "$(sql "select context#>>'{library,name}' from cdp.events where message_id = '$P-track'")" "analytics-node"
check_eq "identify traits reach the profile" \
  "$(wait_sql 15 "select cdp.profile('user_id', '$P-user') -> 'traits' ->> 'email'" grace@example.com)" grace@example.com

finish
