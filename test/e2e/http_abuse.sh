#!/usr/bin/env bash
# End-to-end: the HTTP collector under abuse (issue 11). Half-sent requests past
# the connection cap are refused at once and /health says so; a trickled
# request is cut at cdp.http_request_timeout; an unknown Basic key is refused
# before its body; unfinished uploads without a Basic key cannot fill the
# buffer for everyone; ambiguous framing and oversized headers get JSON errors,
# counted in /metrics; the worker writes with its own rights, not cdp_ingest's.
# Every loop is bounded; everything goes to 127.0.0.1; about 30 s in all.
set -uo pipefail
source "$ROOT/test/e2e/helpers.bash"

say "$E2E_NAME: HTTP collector abuse at $BASE"
section "setup"
setup_extension
SRC="http_abuse_$RUN_ID"
KEY=$(sql "select cdp.create_source('$SRC')") || die "cdp.create_source failed"
[[ "$KEY" == cdp_* ]] || die "cdp.create_source returned [$KEY]"
SRC_ID=$(sql "select id from cdp.sources where name = '$SRC'")
pass "source $SRC created (id $SRC_ID)"
# The client side needs a descriptor per held connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 4096 2>/dev/null || true

# A raw HTTP client (node): `client MODE ARGS...` prints one JSON line.
cat >"$E2E_TMP/client.mjs" <<'JS'
import net from "node:net";
const [mode, port, ...args] = process.argv.slice(2);
const host = "127.0.0.1";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const out = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
// Sends `data`, resolves with what came back when the server closes or after `ms`.
function exchange(data, ms = 3000) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let got = "", done = false;
    const s = net.connect(+port, host, () => s.write(data));
    const finish = (how) => {
      if (done) return;
      done = true;
      s.destroy();
      const status = (got.match(/^HTTP\/1\.1 (\d+)/) || [])[1] || how;
      resolve({ status, body: got.split("\r\n\r\n").slice(1).join("\r\n\r\n"), ms: Date.now() - t0, raw: got.slice(0, 300) });
    };
    s.on("data", (d) => {
      got += d;
      const end = got.indexOf("\r\n\r\n"), len = +(got.match(/Content-Length: (\d+)/i) || [0, -1])[1];
      if (end >= 0 && len >= 0 && got.length >= end + 4 + len) finish("answered");
    });
    s.on("end", () => finish("closed"));
    s.on("error", () => finish("reset"));
    setTimeout(() => finish("timeout"), ms);
  });
}
// Opens a connection, sends `data`, keeps it open; notes whatever comes back.
function hold(data) {
  return new Promise((resolve) => {
    const c = { got: "", closed: false };
    c.s = net.connect(+port, host, () => { c.s.write(data); resolve(c); });
    c.s.on("data", (d) => (c.got += d));
    c.s.on("close", () => (c.closed = true));
    c.s.on("error", () => { c.closed = true; resolve(c); });
  });
}
const auth = (key) => "Authorization: Basic " + Buffer.from(key + ":").toString("base64") + "\r\n";
const health = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
if (mode === "raw") {
  out(await exchange(Buffer.from(args[0], "base64"), +(args[1] || 3000)));
} else if (mode === "cap") {
  // Half-sent requests (no key) until one is refused, at most `max`.
  const max = +args[0], held = [];
  let refused = 0;
  for (let i = 0; i < max && refused === 0; i += 50) {
    for (let j = 0; j < 50; j++) held.push(await hold("POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{"));
    await sleep(50);
    refused = held.filter((c) => c.got.includes("too many connections")).length;
  }
  const next = await exchange(health, 3000);
  const sample = held.find((c) => c.got.includes("too many connections"));
  held.forEach((c) => c.s.destroy());
  await sleep(500);
  const after = await exchange(health, 3000);
  out({ opened: held.length, refused, cap: held.length - refused, refusal: sample ? sample.got.split("\r\n\r\n")[1] : "", health: next, after });
} else if (mode === "nearcap") {
  // Holds `n` half-sent requests and asks /health.
  const held = [];
  for (let i = 0; i < +args[0]; i++) held.push(await hold("POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{"));
  await sleep(200);
  const h = await exchange(health, 3000);
  held.forEach((c) => c.s.destroy());
  out(h);
} else if (mode === "trickle") {
  // One header byte every 2 s: each byte restarts libmicrohttpd's idle timeout.
  const c = await hold("POST /v1/batch HTTP/1.1\r\nHost: t\r\n");
  const t0 = Date.now();
  while (!c.closed && Date.now() - t0 < +args[0] * 1000) {
    await sleep(2000);
    if (!c.closed) c.s.write("X");
  }
  c.s.destroy();
  out({ closed: c.closed, seconds: Math.round((Date.now() - t0) / 1000) });
} else if (mode === "keyless") {
  // n unfinished uploads without a Basic key, each sending most of `len` bytes.
  const [n, len, key] = [+args[0], +args[1], args[2]];
  const chunk = Buffer.alloc(len - 100, 32);  // never finished
  const held = [];
  for (let i = 0; i < n; i++) {
    const c = await hold(`POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: ${len}\r\n\r\n{"batch":[`);
    c.s.write(chunk, () => {});
    held.push(c);
  }
  // Refused: answered 503 and closed (a reset may beat the 503 to the client);
  // the admitted ones wait for the rest of their body.
  const isRefused = (c) => c.closed || /^HTTP\/1\.1 503/.test(c.got);
  for (let i = 0, last = -1; i < 20; i++) {
    await sleep(250);
    const now = held.filter(isRefused).length;
    if (now === last) break;
    last = now;
  }
  const refused = held.filter(isRefused).length;
  const body = JSON.stringify({ userId: "u", event: "Big enough", properties: { pad: "x".repeat(2000) } });
  const authed = await exchange(`POST /v1/track HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n${auth(key)}Content-Length: ${body.length}\r\n\r\n${body}`, 5000);
  const h = await exchange(health, 3000);
  held.forEach((c) => c.s.destroy());
  out({ refused, authed, health: h });
}
JS
client() { node "$E2E_TMP/client.mjs" "$1" "$HTTP_PORT" "${@:2}"; }
raw() { client raw "$(printf '%b' "$1" | base64 -w0)" "${2:-3000}"; }
metric() { curl -s -m 5 "$BASE/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
AUTH="Authorization: Basic $(printf '%s:' "$KEY" | base64 -w0)"
TRACK='{"userId":"u","event":"E"}'

###############################################################################
section "a key made a moment ago works; a revoked key is refused before its body"
NSRC="http_abuse_new_$RUN_ID"
NKEY=$(sql "select cdp.create_source('$NSRC')")
http POST /v1/track -u "$NKEY:" -H 'Content-Type: application/json' --data-binary "$TRACK"
check_eq "POST right after cdp.create_source: 200" "$STATUS" 200
sql "select cdp.revoke_source('$NSRC')" >/dev/null
sleep 1.5
r=$(raw "POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nAuthorization: Basic $(printf '%s:' "$NKEY" | base64 -w0)\r\nContent-Length: 400000\r\n\r\n")
check_eq "revoked key, body not sent: 401 at once" "$(jget "$r" status)" 401
check_eq "revoked key: JSON error" "$(jget "$r" body)" '{"success":false,"error":"is unknown or revoked","field":"writeKey"}'
r=$(raw "POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nAuthorization: Basic $(printf 'cdp_bogus:' | base64 -w0)\r\nContent-Length: 400000\r\n\r\n")
check_eq "unknown key, body not sent: 401 at once" "$(jget "$r" status)" 401

###############################################################################
section "the worker writes with its own rights (cdp_ingest has no direct INSERT)"
check_eq "cdp_ingest may not insert into cdp.events or cdp.message_ids" \
  "$(sql "select has_table_privilege('cdp_ingest', 'cdp.events', 'insert') or has_table_privilege('cdp_ingest', 'cdp.message_ids', 'insert')")" f
http POST /v1/track -u "$KEY:" -H 'Content-Type: application/json' \
  --data-binary '{"userId":"u","event":"Own rights","messageId":"'"$RUN_ID"'-own"}'
check_eq "POST: 200" "$STATUS" 200
check_eq "stored" "$(sql "select count(*) from cdp.events where source_id = $SRC_ID and message_id = '$RUN_ID-own'")" 1

###############################################################################
section "framing a proxy could read differently"
r=$(raw "POST /v1/track HTTP/1.1\r\nHost: t\r\n$AUTH\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
check_eq "Transfer-Encoding: gzip, chunked -> 501" "$(jget "$r" status)" 501
check_eq "... JSON error" "$(jget "$(jget "$r" body)" field)" Transfer-Encoding
check_eq "... answered at once (< 1 s)" "$(( $(jget "$r" ms) < 1000 ))" 1
r=$(raw "POST /v1/track HTTP/1.1\r\nHost: t\r\n$AUTH\r\nContent-Type: application/json\r\nContent-Length: 26\r\nContent-Length: 5\r\n\r\n$TRACK")
check_eq "two Content-Length headers -> 400" "$(jget "$r" status)" 400
check_eq "... JSON error" "$(jget "$(jget "$r" body)" field)" Content-Length
r=$(raw "POST /v1/track HTTP/1.1\r\n$AUTH\r\nContent-Type: application/json\r\nContent-Length: 26\r\n\r\n$TRACK")
check_eq "HTTP/1.1 without Host -> 400" "$(jget "$r" status)" 400
check_eq "... JSON error" "$(jget "$(jget "$r" body)" field)" Host

###############################################################################
section "errors libmicrohttpd would answer in HTML answer JSON, and are counted"
m414=$(metric 'cdp_http_requests_total{code="414"}')
m431=$(metric 'cdp_http_requests_total{code="431"}')
m400=$(metric 'cdp_http_requests_total{code="400"}')
http GET "/v1/$(head -c 10000 /dev/zero | tr '\0' a)"
check_eq "10 KB path -> 414" "$STATUS" 414
check_eq "... JSON error" "$(jget "$BODY" field)" path
http GET /health -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' b)"
check_eq "20 KB header -> 431" "$STATUS" 431
check_eq "... JSON error" "$(jget "$BODY" field)" headers
r=$(raw "GET /health HTTP/1.1\r\nHost: t\r\nno colon\r\n\r\n")
check_eq "malformed header line -> 400 (libmicrohttpd's own)" "$(jget "$r" status)" 400
check_eq "414 counted" "$(metric 'cdp_http_requests_total{code="414"}')" $((m414 + 1))
check_eq "431 counted" "$(metric 'cdp_http_requests_total{code="431"}')" $((m431 + 1))
check_eq "libmicrohttpd's 400 counted" "$(metric 'cdp_http_requests_total{code="400"}')" $((m400 + 1))

###############################################################################
section "a request trickled a byte every 2 s is cut at cdp.http_request_timeout (10 s)"
cut0=$(metric cdp_http_requests_timed_out_total)
r=$(client trickle 20)
check_eq "trickler cut" "$(jget "$r" closed)" true
check_match "... after 10 to 14 s" "$(jget "$r" seconds)" '^1[0-4]$'
check_eq "cdp_http_requests_timed_out_total counted it" "$(metric cdp_http_requests_timed_out_total)" $((cut0 + 1))

###############################################################################
section "unfinished uploads without a Basic key fill only their share of the buffer"
# 540 x 500 KB would fill the 256 MB buffer; keyless ones get a quarter.
r=$(client keyless 540 500000 "$KEY")
check_ge "most keyless uploads refused at once (503)" "$(jget "$r" refused)" 300
check_eq "an authenticated 2 KB request still gets 200" "$(jget "$r" authed.status)" 200
check_eq "/health meanwhile: 200 (the buffer is not near its limit)" "$(jget "$r" health.status)" 200
wait_healthy 5 || fail "/health not 200 after the uploads closed"

###############################################################################
section "half-sent requests past the connection cap are refused at once"
r=$(client cap 1400)
say "  (held $(jget "$r" opened) connections, $(jget "$r" refused) refused)"
check_ge "a connection past the cap was refused" "$(jget "$r" refused)" 1
check_eq "... with a JSON 503" "$(jget "$(jget "$r" refusal)" error)" "too many connections, retry later"
check_match "/health while at the cap answers at once, not 200" "$(jget "$r" health.status)" '^503$'
check_eq "/health 200 again once they are gone" "$(jget "$r" after.status)" 200
near=$(( $(jget "$r" cap) * 92 / 100 ))
r=$(client nearcap "$near")
check_eq "/health with $near connections held (>= 90% of the cap): 503" "$(jget "$r" status)" 503
check_match "... with a reason" "$(jget "$(jget "$r" body)" status reason)" '^overloaded connections: '
wait_healthy 5 || fail "/health not 200 after the held connections closed"

finish
