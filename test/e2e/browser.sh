#!/usr/bin/env bash
# End-to-end: the real browser SDKs, unchanged, in Debian's headless Chromium against cdp's HTTP
# worker. @segment/analytics-next 1.x and @rudderstack/analytics-js 3.x from npm
# (test/e2e/browser/, installed with `npm ci`) run on pages of a second local origin, the shop
# (test/e2e/browser/site.mjs), driven by puppeteer-core (test/e2e/browser/driver.mjs, one
# Chromium per case). Chromium resolves shop.test and cdp.test to 127.0.0.1 and every other name
# to nothing, and a case fails on any request for another host: nothing leaves the machine.
#
# Each case has its own source; once the driver saw its events arrive, the checks here read
# them in SQL: every message stored once, with the right type, event or page name, userId and
# anonymousId, properties, context.page and context.userAgent, and the profile's traits after
# identify. One line per case; a failing case lists what was wrong, then what the browser asked
# for and said.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"
DIR="$ROOT/test/e2e/browser"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

say "$E2E_NAME: analytics-next and RudderStack v3 in headless Chromium against $BASE"
section "setup"
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are required (./dev installs them)"
[ -x "$CHROMIUM" ] || die "$CHROMIUM is missing (Debian package chromium; ./dev installs it)"
# npm ci when node_modules is not what package-lock.json pins (first run, or the lock changed).
if ! cmp -s "$DIR/package-lock.json" "$DIR/node_modules/.cdp-installed-lock"; then
  say "npm ci in $DIR"
  (cd "$DIR" && timeout 300 npm ci --no-audit --no-fund --loglevel=error &&
    cp package-lock.json node_modules/.cdp-installed-lock) || die "npm ci in $DIR failed"
fi
version() { node -p 'require(process.argv[1]).version' "$DIR/node_modules/$1/package.json"; }
AJS_VERSION=$(version @segment/analytics-next)
RSA_VERSION=$(version @rudderstack/analytics-js)
say "  @segment/analytics-next $AJS_VERSION, @rudderstack/analytics-js $RSA_VERSION," \
  "puppeteer-core $(version puppeteer-core), $("$CHROMIUM" --version 2>/dev/null)"
setup_extension

lit() { printf "'%s'" "${1//\'/\'\'}"; }

###############################################################################
# A case: start_case NAME N runs the driver for it; want... note problems; end_case prints the
# case's one line.
CASE=""
PROBLEMS=()
problem() { PROBLEMS+=("$*"); }
want() { [ "$2" == "$3" ] || problem "$1: expected [$3], got [$2]"; }          # want WHAT GOT WANT
want_match() { [[ "$2" =~ $3 ]] || problem "$1: expected to match /$3/, got [$2]"; }

# fact JS [ARG...]: a JavaScript expression over the driver's output `o` (see driver.mjs, in
# $OUT_FILE) and `arg` (the ARGs), printed: strings bare, anything else as JSON.
fact() { node -e 'const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); const arg = process.argv.slice(3);
  let v; try { v = eval(process.argv[2]); } catch (e) { v = `(${e.message})`; }
  process.stdout.write(typeof v === "string" ? v : JSON.stringify(v) ?? "undefined")' "$OUT_FILE" "$@"; }

# start_case NAME N: runs the driver for case NAME with a source of its own, then checks that
# N events were stored once. False when the browser side failed (the case's other checks are
# then skipped: the problem is named, with what the pages asked for and said), and for a case
# left out: BROWSER_CASES="ajs-cdn rsa-beacon" runs only those.
start_case() {
  CASE=""
  [ -z "${BROWSER_CASES:-}" ] || [[ " $BROWSER_CASES " == *" $1 "* ]] || return 1
  CASE=$1
  CASE_T0=$(now_ms)
  PROBLEMS=()
  local src="browser_${1//-/_}_$RUN_ID" rc=0
  KEY=$(sql "select cdp.create_source($(lit "$src"))") || die "cdp.create_source failed"
  SRC_ID=$(sql "select id from cdp.sources where name = $(lit "$src")")
  P="$RUN_ID-$1"   # the prefix of this case's event names and ids
  OUT_FILE="$E2E_TMP/$1.json"
  (cd "$DIR" && CDP_HTTP_PORT=$HTTP_PORT CDP_WRITE_KEY=$KEY CDP_SOURCE_ID=$SRC_ID CDP_PREFIX=$P CHROMIUM=$CHROMIUM \
    PGHOST=$CLUSTER_DIR PGPORT=$(cat "$CLUSTER_DIR/port") PGUSER=$(cluster_user) PGDATABASE=cdp \
    timeout 120 node driver.mjs "$1" >"$OUT_FILE" 2>"$E2E_TMP/$1.err") || rc=$?
  [ "$(head -c 1 "$OUT_FILE")" = "{" ] ||
    echo '{"ok":false,"requests":[],"foreign":[],"shop":[],"proxy":[],"console":[]}' >"$OUT_FILE"
  want "requests for a host other than shop.test and cdp.test" "$(fact 'o.foreign.join(" ")')" ""
  stored_once "$2"
  if [ "$(fact 'o.ok')" != true ]; then
    problem "the browser side failed (exit $rc): $(fact 'o.error ?? ""') $(head -c 1000 "$E2E_TMP/$1.err")"
    return 1
  fi
}

end_case() {
  [ -n "$CASE" ] || return 0
  local took
  took=$(printf '%d.%d s' $((($(now_ms) - CASE_T0) / 1000)) $(((($(now_ms) - CASE_T0) % 1000) / 100)))
  if [ ${#PROBLEMS[@]} = 0 ]; then
    pass "$CASE: $1 ($took)"
    return
  fi
  fail "$CASE: $1 ($took)"
  local p
  for p in "${PROBLEMS[@]}"; do printf '          - %s\n' "$p"; done
  printf '        the pages asked for (files of the shop only if they failed):\n'
  fact 'o.requests.filter((r) => !r.url.startsWith("http://shop.test:") || !(r.status < 400))
    .map((r) => `          ${r.method} ${r.url} -> ${r.status ?? r.failure}`).join("\n")'; echo
  [ "$(fact 'o.proxy.length')" = 0 ] || { printf '        the proxy saw:\n'
    fact 'o.proxy.map((e) => `          ${e.method} ${e.path} ${JSON.stringify(e.requestHeaders["access-control-request-headers"] ?? e.requestHeaders["x-retry-count"] ?? e.requestHeaders["rsa-retry-attempt"] ?? "")} -> ${e.status}${e.injected ? " (injected)" : ""} ${e.responseHeaders?.["access-control-allow-headers"] ?? ""}`).join("\n")'; echo; }
  [ "$(fact 'o.console.length')" = 0 ] || { printf '        the pages said:\n'
    fact 'o.console.slice(0, 15).map((l) => `          ${l.slice(0, 300)}`).join("\n")'; echo; }
}

###############################################################################
# Checks on this case's events (source SRC_ID).
ev() { sql "select $1 from cdp.events where source_id = $SRC_ID ${2:+and ($2)}"; }

# stored_once N: N events, N distinct messageIds, nothing quarantined.
stored_once() {
  want "events stored, distinct messageIds" "$(ev "count(*) || ' ' || count(distinct message_id)")" "$1 $1"
  want "messages quarantined" "$(sql "select count(*) from cdp.quarantine where source_id = $SRC_ID")" 0
}

# page_context N [WHERE]: N events carry the page's url, path, title and the browser's userAgent.
page_context() {
  want "events with context.page = the page (url, path, title)" \
    "$(ev "count(*)" "context#>>'{page,url}' = $(lit "$(fact o.result.url)") and context#>>'{page,path}' = $(lit "$(fact o.result.path)")
          and context#>>'{page,title}' = $(lit "$(fact o.result.title)") ${2:+and ($2)}")" "$1"
  want "events with context.userAgent = navigator.userAgent" \
    "$(ev "count(*)" "context->>'userAgent' = $(lit "$(fact o.result.userAgent)") ${2:+and ($2)}")" "$1"
}

# profile_traits USER [WHERE]: the profile of USER has the identify's traits (the processor
# runs on its own; waits up to 15 s), and every event of the case (or those matching WHERE)
# belongs to that profile.
profile_traits() {
  local u=$1 p=${1%-user} q
  q="select coalesce((t->>'email') || ' ' || (t->>'plan') || ' ' || (t->>'logins'), '(no traits: ' || coalesce(t::text, 'no profile') || ')')
       from (select cdp.profile('user_id', $(lit "$u"))->'traits' t) x"
  want "profile traits of $u (email plan logins)" "$(wait_sql 15 "$q" "$p@example.com pro 3")" "$p@example.com pro 3"
  want "events bound to that profile" \
    "$(sql "select count(*) from cdp.events_resolved where source_id = $SRC_ID and profile_id = cdp.profile_id('user_id', $(lit "$u")) ${2:+and ($2)}")" \
    "$(ev "count(*)" "${2:-}")"
}

# the_four_calls PREFIX [WHERE [RESULT]]: the page, anonymous track, identify and known track
# that every case makes (driver.mjs, ajsCalls/rsaCalls) landed as sent. RESULT is where the
# driver's output has what the page reported (o.result).
the_four_calls() {
  local p=$1 w=${2:-true} anon
  anon=$(fact "${3:-o.result}.anonymousId")
  want "types and names, in order" \
    "$(ev "string_agg(type || ':' || coalesce(event, name, ''), ', ' order by original_timestamp, id)" "$w")" \
    "page:$p Pricing, track:$p Product Viewed, identify:, track:$p Order Completed"
  want "userIds, in order" "$(ev "string_agg(type || ':' || coalesce(user_id, '-'), ', ' order by original_timestamp, id)" "$w")" \
    "page:-, track:-, identify:$p-user, track:$p-user"
  want_match "the page's anonymousId" "$anon" '^[0-9a-f-]{36}$'
  want "events with that anonymousId" "$(ev "count(*)" "($w) and anonymous_id = $(lit "$anon")")" 4
  want "page: name, category, properties.plan" \
    "$(ev "name || ' | ' || category || ' | ' || (properties->>'plan')" "($w) and type = 'page'")" "$p Pricing | Docs | pro"
  want "track: properties" \
    "$(ev "(properties->>'sku') || ' ' || (properties->>'price')" "($w) and event = $(lit "$p Product Viewed")")" "A-1 19.5"
  want "track as the known user: properties" \
    "$(ev "(properties->>'revenue') || ' ' || (properties->>'currency') || ' ' || (properties#>>'{products,0,sku}') || ' ' || (properties#>>'{products,0,quantity}')" \
       "($w) and event = $(lit "$p Order Completed")")" "42.5 EUR A-1 2"
}

# requests_to METHOD REGEX: the answers to the pages' requests of METHOD whose URL matches, in
# order (a status, or the browser's error).
requests_to() { fact 'o.requests.filter((r) => r.method === arg[0] && new RegExp(arg[1]).test(r.url)).map((r) => r.status ?? r.failure).join(", ")' "$@"; }

CDP_URL="http://cdp.test:$HTTP_PORT"

###############################################################################
section "analytics-next $AJS_VERSION"

start_case ajs-cdn 4 && {
  the_four_calls "$P"
  page_context 4
  want "context.library" "$(ev "string_agg(distinct (context#>>'{library,name}') || ' ' || (context#>>'{library,version}'), ',')")" \
    "analytics.js next-$AJS_VERSION"
  want "GET /v1/projects/<key>/settings" "$(requests_to GET "^$CDP_URL/v1/projects/$KEY/settings\$")" 200
  want "events sent where the settings said (Segment.io apiHost = this server)" \
    "$(fact 'o.requests.filter((r) => r.method === "POST").every((r) => r.url.startsWith(arg[0] + "/v1/")) && o.requests.some((r) => r.method === "POST")' "$CDP_URL")" true
  profile_traits "$P-user"
}
end_case "settings from cdp (cdnURL), page, track, identify, track"

start_case ajs-inline 6 && {
  the_four_calls "$P" "type <> 'group' and type <> 'alias'"
  page_context 6
  want "group: userId, groupId, traits" \
    "$(ev "user_id || ' ' || group_id || ' ' || (traits->>'name') || ' ' || (traits->>'employees')" "type = 'group'")" "$P-user $P-acme Acme Inc 42"
  want "alias: userId, previousId = the anonymousId after reset()" "$(ev "user_id || ' ' || previous_id" "type = 'alias'")" \
    "$P-user2 $(fact o.result.aliasFrom)"
  want "POSTs to /v1/[ptiga], one per call" "$(requests_to POST "^$CDP_URL/v1/[ptiga]\$")" "200, 200, 200, 200, 200, 200"
  want "the SDK's metrics (POST /v1/m) accepted" "$(requests_to POST "^$CDP_URL/v1/m\$" | cut -d, -f1)" 200
  profile_traits "$P-user" "type <> 'alias'"
  want "the alias made a profile for $P-user2" "$(sql "select cdp.profile_id('user_id', $(lit "$P-user2")) is not null")" t
}
end_case "inline settings, every call a browser makes, and the SDK's metrics"

start_case ajs-batching 6 && {
  the_four_calls "$P" "event is null or event not in ($(lit "$P Coupon Applied"), $(lit "$P Checkout Started"))"
  page_context 6
  want "POSTs to /v1/: batches of all 6 events to /v1/b, each answered 200" \
    "$(fact 'const posts = o.requests.filter((r) => r.method === "POST" && r.url.startsWith(arg[0]));
      `${posts.every((r) => r.url === arg[0] + "b" && r.status === 200) && posts.length > 1 && posts.length < 6} ${posts.reduce((n, r) => n + (r.batch ?? 0), 0)}`' "$CDP_URL/v1/")" "true 6"
  profile_traits "$P-user"
}
end_case "deliveryStrategy batching: the events in batches to /v1/b"

start_case ajs-pagehide 8 && {
  nav="coalesce(event, name) like $(lit "$P-nav %") or user_id = $(lit "$P-nav-user")"
  the_four_calls "$P-nav" "$nav"
  the_four_calls "$P-close" "coalesce(event, name) like $(lit "$P-close %") or user_id = $(lit "$P-close-user")" o.result.close
  page_context 8
  want "events stored before the page was left (navigation, tab close)" "$(fact 'o.result.queuedBeforeLeaving')" "[0,0]"
  profile_traits "$P-nav-user" "$nav"
}
end_case "batching queue flushed by leaving the page: navigation and tab close"

start_case ajs-retry 1 && {
  want "the event" "$(ev "type || ' ' || event || ' ' || (properties->>'revenue') || ' ' || anonymous_id")" \
    "track $P Order Completed 42.5 $(fact o.result.anonymousId)"
  page_context 1
  want "proxy: first POST answered 503 (injected), then the retry" \
    "$(fact 'o.proxy.filter((e) => e.method === "POST" && !e.path.startsWith("/v1/m")).map((e) => `${e.status}${e.injected ? "*" : ""}:${e.requestHeaders["x-retry-count"] ?? "-"}`).join(" ")')" "503*:- 200:1"
  want "the retry's preflight allowed X-Retry-Count" \
    "$(fact 'o.proxy.filter((e) => e.method === "OPTIONS" && /x-retry-count/i.test(e.requestHeaders["access-control-request-headers"] ?? "")).map((e) => e.status + " " + /x-retry-count/i.test(e.responseHeaders["access-control-allow-headers"] ?? "")).join(", ")')" "204 true"
}
end_case "a 503 with Retry-After, then the retry with X-Retry-Count, stored once"

start_case ajs-consent 5 && {
  the_four_calls "$P" "event is distinct from 'Segment Consent Preference Updated'"
  want "events with consent analytics granted, marketing refused" \
    "$(ev "count(*)" "context#>'{consent,categoryPreferences}' = '{\"analytics\": true, \"marketing\": false}'")" 4
  want "the change of mind: Segment Consent Preference Updated, marketing granted" \
    "$(ev "user_id || ' ' || (context#>'{consent,categoryPreferences}')::text" "event = 'Segment Consent Preference Updated'")" \
    "$P-user {\"analytics\": true, \"marketing\": true}"
  profile_traits "$P-user"
  want "the profile's consent (cdp.consent): the latest statement" \
    "$(sql "select preferences::text || ' ' || source from cdp.consent where profile_id = cdp.profile_id('user_id', $(lit "$P-user"))")" \
    '{"analytics": true, "marketing": true} event'
  want "consent statements recorded (cdp.consent_history): one per event" \
    "$(sql "select count(*) from cdp.consent_history h join cdp.events e on e.id = h.event_id where e.source_id = $SRC_ID")" 5
}
end_case "consent categories (analytics-consent-tools) stored per event and on the profile"

###############################################################################
section "RudderStack $RSA_VERSION"

# rsa_library: the events say they come from RudderStack's JavaScript SDK of this version.
rsa_library() {
  want "context.library" "$(ev "string_agg(distinct (context#>>'{library,name}') || ' ' || (context#>>'{library,version}'), ',')")" \
    "RudderLabs JavaScript SDK $RSA_VERSION"
}

start_case rsa-config 4 && {
  the_four_calls "$P"
  page_context 4
  rsa_library
  want "GET /sourceConfig" "$(requests_to GET "^$CDP_URL/sourceConfig/?\\?")" 200
  want "identify: traits, taken from context.traits (RudderStack sends no others)" \
    "$(ev "(traits->>'email') || ' ' || (traits->>'plan') || ' ' || (traits = context->'traits')" "type = 'identify'")" "$P@example.com pro true"
  want "plugins or destinations fetched from a CDN" "$(fact 'o.shop.filter((l) => l.includes("/no-cdn/")).join(", ")')" ""
  profile_traits "$P-user"
}
end_case "configUrl = dataPlaneUrl = cdp: ready fired, page, track, identify, track"

start_case rsa-beacon 5 && {
  the_four_calls "$P" "event is distinct from $(lit "$P Left Page")"
  page_context 4 "event is distinct from $(lit "$P Left Page")"
  want "the event sent as the page was left" "$(ev "count(*)" "event = $(lit "$P Left Page")")" 1
  want "that event stored before the page was left" "$(fact 'o.result.queuedBeforeLeaving')" 0
  want "POSTs: sendBeacon (ping), text/plain, to /beacon/v1/batch?writeKey=<key>" \
    "$(fact 'o.requests.filter((r) => r.method === "POST").map((r) => `${r.type} ${r.contentType} ${r.url === `${arg[0]}/beacon/v1/batch?writeKey=${arg[1]}`}`).join(", ")' "$CDP_URL" "$KEY")" \
    "ping text/plain true"
  profile_traits "$P-user"
}
end_case "useBeacon: /beacon/v1/batch, text/plain, the key in the query, the last beacon on pagehide"

start_case rsa-retry 1 && {
  want "the event" "$(ev "type || ' ' || event || ' ' || (properties->>'revenue') || ' ' || anonymous_id")" \
    "track $P Order Completed 42.5 $(fact o.result.anonymousId)"
  page_context 1
  want "proxy: first POST answered 503 (injected), then the retry" \
    "$(fact 'o.proxy.filter((e) => e.method === "POST").map((e) => `${e.status}${e.injected ? "*" : ""}:${e.requestHeaders["rsa-retry-attempt"] ?? "-"}`).join(" ")')" "503*:- 200:1"
  want "the retry's preflight allowed Rsa-Retry-Attempt and Rsa-Retry-Reason" \
    "$(fact 'o.proxy.filter((e) => e.method === "OPTIONS" && /rsa-retry-attempt/i.test(e.requestHeaders["access-control-request-headers"] ?? "")).map((e) => e.status + " " + ["rsa-retry-attempt", "rsa-retry-reason"].every((h) => (e.responseHeaders["access-control-allow-headers"] ?? "").toLowerCase().includes(h))).join(", ")')" "204 true"
}
end_case "a 503, then the retry with Rsa-Retry-* headers, stored once"

start_case rsa-consent 4 && {
  the_four_calls "$P"
  want "events carrying the consent (context.consentManagement)" \
    "$(ev "count(*)" "context#>'{consentManagement,allowedConsentIds}' = '[\"analytics\"]' and context#>'{consentManagement,deniedConsentIds}' = '[\"marketing\"]' and context#>>'{consentManagement,provider}' = 'custom'")" 4
  want "read as Segment's categoryPreferences on every event" \
    "$(ev "count(*)" "context#>'{consent,categoryPreferences}' = '{\"analytics\": true, \"marketing\": false}'")" 4
  profile_traits "$P-user"
  want "the profile's consent (cdp.consent)" \
    "$(sql "select preferences::text || ' ' || source from cdp.consent where profile_id = cdp.profile_id('user_id', $(lit "$P-user"))")" \
    '{"analytics": true, "marketing": false} event'
}
end_case "consentManagement (custom provider): allowed and denied ids on every event, read as consent"

finish
