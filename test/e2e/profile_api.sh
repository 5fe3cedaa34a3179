#!/usr/bin/env bash
# End-to-end: the Profile API (docs/profile-api.md) against the real HTTP
# worker and processor: lookups by every identifier type and by number, every
# part, after a merge, after cdp.unmerge and after erasure, every status code,
# token scopes and PII modes, revocation within a second, pagination of
# events, bad input, CORS, /metrics, and the SQL function giving the same answer.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"

say "$E2E_NAME: the Profile API on $BASE"
section "setup"
setup_extension
KEY=$(sql "select cdp.create_source('profiles_$RUN_ID')") || die "cdp.create_source failed"
token() { sql "select cdp.create_access_token('$1_$RUN_ID', array[$2])"; }
FULL=$(token full "'profiles:read', 'identities:read', 'events:read', 'consent:read', 'pii:clear'") || die "no token"
NARROW=$(token narrow "'profiles:read'")
HASHED=$(token hashed "'profiles:read', 'identities:read', 'pii:hashed'")
U="ada_$RUN_ID"
A="anon_$RUN_ID"
EMAIL="ada.$RUN_ID@example.com"
send() { # send PATH JSON: one message over HTTP, 200 expected
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -u "$KEY:" -H 'Content-Type: application/json' -d "$2" "$BASE$1")
  [ "$code" = 200 ] || die "POST $1 answered $code"
}
processed() { # processed MESSAGE_ID: waits until the processor has bound it
  wait_sql 20 "select count(*) from cdp.event_profiles ep join cdp.events e on e.id = ep.event_id where e.message_id = '$1'" 1 >/dev/null ||
    die "the processor did not take $1 within 20 s"
}
same_json() { # same_json A B: "true" when both are the same JSON, members in any order
  node -e 'const norm = (v) => Array.isArray(v) ? v.map(norm) : v && typeof v === "object"
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, norm(v[k])])) : v;
    const [a, b] = process.argv.slice(1).map((t) => JSON.stringify(norm(JSON.parse(t))));
    process.stdout.write(String(a === b))' "$1" "$2"
}
lookup() { # lookup PATH [TOKEN] [curl args...]
  local path=$1 tok=${2:-$FULL}
  shift 2 2>/dev/null || shift $#
  http GET "$path" -H "Authorization: Bearer $tok" "$@"
}
sql "select cdp.create_segment('pro_$RUN_ID', '{\"trait\": \"plan\", \"op\": \"=\", \"value\": \"pro\"}')" >/dev/null
send /v1/identify "{\"userId\": \"$U\", \"messageId\": \"$RUN_ID-1\", \"traits\": {\"email\": \" ${EMAIL^^} \", \"phone\": \"+33 6 ${RUN_ID: -8:2} ${RUN_ID: -6:2} ${RUN_ID: -4:2} ${RUN_ID: -2:2}\", \"plan\": \"pro\", \"first_name\": \"Ada\"},
  \"context\": {\"consent\": {\"categoryPreferences\": {\"analytics\": true, \"marketing\": false}}}}"
for i in 1 2 3 4 5; do
  send /v1/track "{\"userId\": \"$U\", \"event\": \"Viewed $i\", \"messageId\": \"$RUN_ID-t$i\", \"properties\": {\"n\": $i}}"
done
processed "$RUN_ID-t5"
PID=$(sql "select cdp.profile_id('user_id', '$U')")

###############################################################################
section "lookups by every identifier, and by number"
lookup "/v1/profiles/user_id:$U"
check_eq "by user_id: 200 with traits, computed traits and segment names" \
  "$STATUS $(jget "$BODY" profile_id traits.plan computed segments)" "200 $PID pro {} [\"pro_$RUN_ID\"]"
check_eq "JSON, never cached on the way" "$(header Content-Type) $(header Cache-Control)" "application/json no-store"
sql "select cdp.create_segment('z_pro_$RUN_ID', '{\"trait\": \"plan\", \"op\": \"=\", \"value\": \"pro\"}')" >/dev/null
lookup "/v1/profiles/user_id:$U"
check_eq "a segment made after a lookup is named at the next one" "$(jget "$BODY" segments)" "[\"pro_$RUN_ID\",\"z_pro_$RUN_ID\"]"
lookup "/v1/profiles/email:%20$(echo "${EMAIL^^}" | sed 's/@/%40/')"
check_eq "by email, normalised as ingestion does (spaces, case)" "$STATUS $(jget "$BODY" profile_id)" "200 $PID"
lookup "/v1/profiles/phone:%2B33%206%20${RUN_ID: -8:2}%20${RUN_ID: -6:2}%20${RUN_ID: -4:2}%20${RUN_ID: -2:2}"
check_eq "by phone, written as the person typed it" "$STATUS $(jget "$BODY" profile_id)" "200 $PID"
lookup "/v1/profiles/anonymous_id:nobody_$RUN_ID"
check_eq "by anonymous_id (nobody has this one)" "$STATUS" "404"
lookup "/v1/profiles/$PID"
check_eq "by profile number" "$STATUS $(jget "$BODY" traits.first_name)" "200 Ada"
SQL_ANSWER=$(sql "select cdp.lookup_profile('user_id:$U')")
lookup "/v1/profiles/user_id:$U"
check_eq "the SQL function gives the same answer" "$(same_json "$BODY" "$SQL_ANSWER")" "true"

###############################################################################
section "parts: include, sub-resources, fields"
lookup "/v1/profiles/user_id:$U?include=memberships,identities,consent"
check_eq "memberships with entered_at, identities, consent" \
  "$(jget "$BODY" memberships.0.segment consent.preferences.marketing traits)" "pro_$RUN_ID false <missing>"
check_match "identities list the email, normalised" "$(jget "$BODY" identities)" "\"type\":\"email\",\"value\":\"$EMAIL\""
check_match "a membership says when it began" "$(jget "$BODY" memberships.0.entered_at)" '^20[0-9]{2}-'
lookup "/v1/profiles/user_id:$U/traits?fields=plan,email"
check_eq "/traits with ?fields= picks keys (traits as sent)" "$(jget "$BODY" traits)" "{\"plan\":\"pro\",\"email\":\" ${EMAIL^^} \"}"
lookup "/v1/profiles/user_id:$U/consent"
check_eq "/consent alone" "$(jget "$BODY" consent.source traits)" "event <missing>"

###############################################################################
section "recent events, a page at a time"
lookup "/v1/profiles/user_id:$U/events?limit=2"
P1=$(jget "$BODY" events.0.event events.1.event)
CURSOR=$(jget "$BODY" next_cursor)
check_eq "newest first, two per page" "$P1" "Viewed 5 Viewed 4"
lookup "/v1/profiles/user_id:$U/events?limit=2&cursor=$CURSOR"
check_eq "the cursor gives the next page" "$(jget "$BODY" events.0.event events.1.event)" "Viewed 3 Viewed 2"
lookup "/v1/profiles/user_id:$U/events?limit=2&cursor=$(jget "$BODY" next_cursor)"
check_eq "the last page ends with the identify and no cursor" \
  "$(jget "$BODY" events.0.event events.1.type next_cursor)" "Viewed 1 identify null"

###############################################################################
section "freshness: a new trait shows after its event is processed"
send /v1/identify "{\"userId\": \"$U\", \"messageId\": \"$RUN_ID-2\", \"traits\": {\"plan\": \"team\"}}"
processed "$RUN_ID-2"
lookup "/v1/profiles/user_id:$U"
check_eq "the new trait, and the segment left" "$(jget "$BODY" traits.plan segments)" "team []"

###############################################################################
section "merges and unmerge"
send /v1/identify "{\"anonymousId\": \"$A\", \"messageId\": \"$RUN_ID-3\", \"traits\": {\"color\": \"red\"}}"
processed "$RUN_ID-3"
ANON_PID=$(sql "select cdp.profile_id('anonymous_id', '$A')")
send /v1/identify "{\"userId\": \"$U\", \"anonymousId\": \"$A\", \"messageId\": \"$RUN_ID-4\"}"
processed "$RUN_ID-4"
lookup "/v1/profiles/anonymous_id:$A"
check_eq "the old anonymous id finds the survivor, with both people's traits" \
  "$STATUS $(jget "$BODY" profile_id traits.color traits.plan)" "200 $PID red team"
lookup "/v1/profiles/$ANON_PID"
check_eq "the merged profile's number finds the survivor" "$(jget "$BODY" profile_id)" "$PID"
MERGE=$(sql "select max(merge_id) from cdp.profile_merges where into_profile = $PID")
sql "select cdp.unmerge($MERGE)" >/dev/null || die "cdp.unmerge failed"
lookup "/v1/profiles/anonymous_id:$A"
check_eq "after cdp.unmerge the anonymous id finds its own profile again" \
  "$(jget "$BODY" profile_id traits.plan)" "$ANON_PID <missing>"

###############################################################################
section "scopes and PII"
send /v1/identify "{\"userId\": \"$U\", \"messageId\": \"$RUN_ID-6\", \"traits\": {\"contacts\": [{\"email\": \"b@x.test\", \"role\": \"billing\"}], \"address\": {\"city\": \"Paris\"}}}"
processed "$RUN_ID-6"
lookup "/v1/profiles/user_id:$U" "$NARROW"
check_eq "profiles:read alone leaves PII traits out, at any depth" \
  "$STATUS $(jget "$BODY" traits.email traits.first_name traits.plan traits.address traits.contacts)" \
  "200 <missing> <missing> team <missing> [{\"role\":\"billing\"}]"
check_eq "as cdp.lookup_profile(pii => 'omit') does" \
  "$(same_json "$BODY" "$(sql "select cdp.lookup_profile('user_id:$U', pii => 'omit')")")" "true"
lookup "/v1/profiles/user_id:$U/events" "$NARROW"
check_eq "403 for a part the token lacks, naming the scope" "$STATUS $(jget "$BODY" field error)" \
  "403 Authorization this token lacks the scope events:read"
lookup "/v1/profiles/user_id:$U?include=traits,identities" "$HASHED"
check_match "pii:hashed hashes PII traits" "$(jget "$BODY" traits.email)" '^sha256:[0-9a-f]{64}$'
check_match "and PII identifiers" "$(jget "$BODY" identities)" '"type":"email","value":"sha256:[0-9a-f]{64}"'

###############################################################################
section "every error status, as JSON"
http GET "/v1/profiles/user_id:$U"
check_eq "401 without a token" "$STATUS $(jget "$BODY" field)" "401 Authorization"
lookup "/v1/profiles/user_id:$U" "cdpr_no_such_token"
check_eq "401 for an unknown token" "$STATUS $(jget "$BODY" field error)" "401 Authorization is unknown or revoked"
http GET "/v1/profiles/user_id:$U" -u "$KEY:"
check_eq "401 for a write key: write keys cannot read" "$STATUS" 401
lookup "/v1/profiles/user_id:nobody_$RUN_ID"
check_eq "404 for nobody, as JSON" "$STATUS $(jget "$BODY" success field)" "404 false identifier"
lookup "/v1/profiles/shoe_size:42"
check_eq "400 for an unknown identifier type" "$STATUS $(jget "$BODY" field)" "400 identifier"
lookup "/v1/profiles/ada"
check_eq "400 for a malformed identifier, naming the problem" "$STATUS $(jget "$BODY" error)" \
  "400 identifier: must be <type>:<value> (e.g. email:ada%40example.com) or a profile number"
lookup "/v1/profiles/email:$(head -c 1100 /dev/zero | tr '\0' a)"
check_eq "400 for an oversized identifier" "$STATUS $(jget "$BODY" error)" "400 identifier: is longer than 1024 bytes"
lookup "/v1/profiles/.." "$FULL" --path-as-is
check_eq "400 for .." "$STATUS $(jget "$BODY" field)" "400 identifier"
lookup "/v1/profiles/user_id:$U/../../metrics" "$FULL" --path-as-is
check_eq "no way out of /v1/profiles with .." "$STATUS $(jget "$BODY" field)" "400 part"
lookup "/v1/profiles/user_id:$U?include=secrets"
check_eq "400 for an unknown part" "$STATUS $(jget "$BODY" field)" "400 include"
http POST "/v1/profiles/user_id:$U" -H "Authorization: Bearer $FULL" -d '{}'
check_eq "405 for a write" "$STATUS" 405

###############################################################################
section "an encoded slash stays inside the value"
send /v1/identify "{\"userId\": \"team/$RUN_ID\", \"messageId\": \"$RUN_ID-5\", \"traits\": {\"plan\": \"slash\"}}"
processed "$RUN_ID-5"
lookup "/v1/profiles/user_id:team%2F$RUN_ID"
check_eq "user_id team/... is found by team%2F..." "$STATUS $(jget "$BODY" traits.plan)" "200 slash"

###############################################################################
section "a browser page may read with the token (CORS)"
http OPTIONS "/v1/profiles/user_id:$U" -H "Origin: http://shop.test" -H "Access-Control-Request-Method: GET" \
  -H "Access-Control-Request-Headers: authorization"
check_eq "the preflight allows Authorization" "$STATUS $(header Access-Control-Allow-Headers)" "204 authorization"
lookup "/v1/profiles/user_id:$U" "$NARROW" -H "Origin: http://shop.test"
check_eq "and the answer is readable there" "$(header Access-Control-Allow-Origin)" "http://shop.test"

###############################################################################
section "revocation within a second, metrics"
sql "select cdp.revoke_access_token('hashed_$RUN_ID')" >/dev/null
REVOKED_AT=$(now_ms)
lookup "/v1/profiles/user_id:$U" "$HASHED"
until [ "$STATUS" = 401 ] || [ $(($(now_ms) - REVOKED_AT)) -gt 3000 ]; do
  sleep 0.05
  lookup "/v1/profiles/user_id:$U" "$HASHED"
done
check_eq "a revoked token fails" "$STATUS" 401
check_ge "within a second (ms, as 1000 - elapsed)" $((1000 - ($(now_ms) - REVOKED_AT))) 0
http GET /metrics
check_match "/metrics counts each token's lookups by status" "$BODY" "cdp_profile_lookups_total\\{token=\"full_$RUN_ID\",status=\"200\"\\} [0-9]+"
check_match "and 403s" "$BODY" "cdp_profile_lookups_total\\{token=\"narrow_$RUN_ID\",status=\"403\"\\} 1"
check_match "and unknown tokens" "$BODY" 'cdp_profile_lookups_unauthorized_total [1-9]'

###############################################################################
section "erasure"
sql "select cdp.erase('user_id', '$U', 'e2e')" >/dev/null || die "cdp.erase failed"
lookup "/v1/profiles/email:$(echo "$EMAIL" | sed 's/@/%40/')"
check_eq "an erased person is 404, never a stale copy" "$STATUS" 404
lookup "/v1/profiles/$PID"
check_eq "by number too" "$STATUS" 404
finish
