// A real HTTP endpoint for the destination-delivery tests, with nothing but
// Node's standard library (http, fs, crypto).
//
//   node sink.mjs --port PORT --log FILE [--secret SECRET]
//
// Listens on 127.0.0.1:PORT (PORT 0: any free port) and prints
// "sink listening on PORT" to stdout once, when first listening. Exits 0 on
// SIGTERM or SIGINT.
//
// Every request to a path other than /_control and /_received is recorded: one
// JSON line appended to FILE (written before the answer is sent) and kept in
// memory for GET /_received:
//   {"at": "2024-01-02T03:04:05.678Z",  when the request's headers arrived
//    "method": "POST", "path": "/hook?x=1",  the request target, query included
//    "headers": {...},          lower-cased names (repeated ones joined by Node)
//    "body": "...",             the raw body as UTF-8 text ("" if none)
//    "json": {...} | null,      the body parsed, null if empty or not JSON
//    "status": 200 | null,      the status answered; null for "hang"
//    "signature_ok": true | false | null}
// signature_ok: with --secret and both x-cdp-timestamp and x-cdp-signature
// headers, whether x-cdp-signature is exactly
//   "v1=" + hex(HMAC-SHA256(SECRET, TIMESTAMP + "." + RAW_BODY));
// null without --secret or without either header.
//
// Control API (never recorded):
//   GET  /_received  the JSON array of the recorded entries, oldest first.
//   GET  /_control   the current state: {"mode", "status", "retry_after", "times", "received"}.
//   POST /_control   a JSON object; answers 200 with the new state, or 400
//                    {"error"} (nothing changed) if the object is invalid.
//     {"reset": true}                    empty the in-memory list (FILE is kept);
//                                        may be combined with a mode.
//     {"mode": "ok"}                     answer 200 {"ok": true} (the default).
//     {"mode": "fail", "status": N}      answer N (400..599, default 500) with
//                                        {"error": "sink told to fail"}.
//     {"mode": "throttle", "retry_after": S}
//                                        answer 429 with "Retry-After: S" (default 1)
//                                        and {"error": "sink told to throttle"}.
//     {"mode": "hang"}                   read the request, record it (status null),
//                                        never answer; the socket stays open until
//                                        the client gives up (or "down", or exit).
//     {"mode": "down", "for_ms": N}      (for_ms required) stop listening (new
//                                        connections refused) before answering this
//                                        request, drop every other open connection
//                                        ("hang" ones too) and this one once
//                                        answered; N ms later listen again on the
//                                        same port, in mode "ok".
//     "times": K (optional, K >= 1, not with "down"): the mode applies to the next
//                                        K recorded requests only, then "ok" again.
import http from 'node:http';
import fs from 'node:fs';
import crypto from 'node:crypto';

function usage(msg) {
  if (msg) console.error(`sink: ${msg}`);
  console.error('usage: node sink.mjs --port PORT --log FILE [--secret SECRET]');
  process.exit(2);
}

const opts = {};
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(port|log|secret)(?:=(.*))?$/s.exec(argv[i]);
    if (!m) usage(`unknown argument ${JSON.stringify(argv[i])}`);
    const value = m[2] !== undefined ? m[2] : argv[++i];
    if (value === undefined) usage(`--${m[1]} needs a value`);
    opts[m[1]] = value;
  }
}
if (opts.port === undefined || !/^\d+$/.test(opts.port) || Number(opts.port) > 65535) usage('--port PORT (0..65535) is required');
if (!opts.log) usage('--log FILE is required');
const SECRET = opts.secret;   // undefined: no signature checks
const LOG = opts.log;
let port = Number(opts.port); // after the first listen: the port actually bound
try {
  fs.appendFileSync(LOG, '');
} catch (e) {
  usage(`cannot write ${LOG}: ${e.message}`);
}

const received = [];
// mode: ok | fail | throttle | hang; times: null (for ever) or how many more requests.
let state = { mode: 'ok', status: null, retry_after: null, times: null };
const OK_STATE = { mode: 'ok', status: null, retry_after: null, times: null };

function signatureOk(headers, raw) {
  if (SECRET === undefined) return null;
  const ts = headers['x-cdp-timestamp'], sig = headers['x-cdp-signature'];
  if (ts === undefined || sig === undefined) return null;
  const want = Buffer.from('v1=' + crypto.createHmac('sha256', SECRET).update(ts + '.').update(raw).digest('hex'));
  const got = Buffer.from(String(sig));
  return got.length === want.length && crypto.timingSafeEqual(got, want);
}

function send(res, status, obj, headers = {}) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function publicState() {
  return { ...state, received: received.length };
}

// Parses and checks a control object; returns [newState or null, downForMs or null] or throws a message.
function parseControl(c) {
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw 'the body must be a JSON object';
  if ('reset' in c && typeof c.reset !== 'boolean') throw '"reset" must be true or false';
  if (!('mode' in c)) {
    for (const k of ['status', 'retry_after', 'for_ms', 'times']) if (k in c) throw `"${k}" needs a "mode"`;
    if (!c.reset) throw 'nothing to do: give "mode" and/or "reset": true';
    return [null, null];
  }
  const isInt = (v, min, max) => Number.isInteger(v) && v >= min && v <= max;
  if ('times' in c && c.times !== null && !isInt(c.times, 1, 1e9)) throw '"times" must be an integer >= 1';
  const times = c.times ?? null;
  switch (c.mode) {
    case 'ok':
      return [{ ...OK_STATE, times: null }, null];
    case 'fail': {
      const status = c.status ?? 500;
      if (!isInt(status, 400, 599)) throw '"status" must be an integer in 400..599';
      return [{ mode: 'fail', status, retry_after: null, times }, null];
    }
    case 'throttle': {
      const ra = c.retry_after ?? 1;
      if (!isInt(ra, 0, 1e9)) throw '"retry_after" must be an integer >= 0 (seconds)';
      return [{ mode: 'throttle', status: 429, retry_after: ra, times }, null];
    }
    case 'hang':
      return [{ mode: 'hang', status: null, retry_after: null, times }, null];
    case 'down':
      if (!isInt(c.for_ms, 1, 3600000)) throw '"down" needs "for_ms": an integer in 1..3600000';
      if (times !== null) throw '"times" does not apply to "down"';
      return [null, c.for_ms];
    default:
      throw `unknown mode ${JSON.stringify(c.mode)} (ok, fail, throttle, hang, down)`;
  }
}

function control(req, res, raw) {
  if (req.method === 'GET') return send(res, 200, publicState());
  if (req.method !== 'POST') return send(res, 405, { error: 'GET or POST' }, { Allow: 'GET, POST' });
  let c, next, downMs;
  try {
    try { c = JSON.parse(raw.toString('utf8')); } catch { throw 'the body is not JSON'; }
    [next, downMs] = parseControl(c);
  } catch (msg) {
    if (typeof msg !== 'string') throw msg;
    return send(res, 400, { error: msg });
  }
  if (c.reset) received.length = 0;
  if (next) state = next;
  if (downMs === null) return send(res, 200, publicState());
  // down: stop listening before answering, so that once the client has the
  // answer, new connections are sure to be refused.
  state = { ...OK_STATE };
  goDown(downMs, req.socket);
  res.on('finish', () => req.socket.destroy());
  send(res, 200, { ...publicState(), mode: 'down', for_ms: downMs }, { Connection: 'close' });
}

function record(req, at, raw, status) {
  const body = raw.toString('utf8');
  let json = null;
  if (body.length) try { json = JSON.parse(body); } catch { json = null; }
  const entry = {
    at, method: req.method, path: req.url, headers: { ...req.headers }, body, json, status,
    signature_ok: signatureOk(req.headers, raw),
  };
  received.push(entry);
  fs.appendFileSync(LOG, JSON.stringify(entry) + '\n');
}

function handle(req, res, at, raw) {
  const path = req.url.split('?')[0];
  if (path === '/_control') return control(req, res, raw);
  if (path === '/_received') {
    if (req.method !== 'GET') return send(res, 405, { error: 'GET only' }, { Allow: 'GET' });
    return send(res, 200, received);
  }
  const s = state;
  if (s.times !== null) state = s.times > 1 ? { ...s, times: s.times - 1 } : { ...OK_STATE };
  switch (s.mode) {
    case 'fail':
      record(req, at, raw, s.status);
      return send(res, s.status, { error: 'sink told to fail' });
    case 'throttle':
      record(req, at, raw, 429);
      return send(res, 429, { error: 'sink told to throttle' }, { 'Retry-After': String(s.retry_after) });
    case 'hang':
      record(req, at, raw, null);
      hanging.add(res);
      res.on('close', () => hanging.delete(res));
      return;  // never answered
    default:
      record(req, at, raw, 200);
      return send(res, 200, { ok: true });
  }
}

const sockets = new Set();
const hanging = new Set();  // responses never to be answered (kept referenced)
const server = http.createServer();
server.keepAliveTimeout = 5000;
server.requestTimeout = 0;   // "hang" clients decide when to give up
server.headersTimeout = 60000;
server.on('connection', (s) => {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
});
server.on('request', (req, res) => {
  const at = new Date().toISOString();
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    try {
      handle(req, res, at, Buffer.concat(chunks));
    } catch (e) {
      console.error(`sink: ${e.stack || e}`);
      if (!res.headersSent) send(res, 500, { error: `sink error: ${e.message}` });
    }
  });
});
server.on('clientError', (err, socket) => {
  if (socket.writable && !socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  else socket.destroy();
});

let firstListen = true;
let reopenTimer = null;
function listen() {
  server.once('error', onListenError);
  server.listen(port, '127.0.0.1', () => {
    server.removeListener('error', onListenError);
    port = server.address().port;
    if (firstListen) {
      firstListen = false;
      process.stdout.write(`sink listening on ${port}\n`);
    } else {
      console.error(`sink: listening again on ${port}`);
    }
  });
}
let listenRetries = 0;
function onListenError(e) {
  // Right after "down", the port may briefly still be busy: retry for a while.
  if (!firstListen && e.code === 'EADDRINUSE' && listenRetries++ < 100) {
    reopenTimer = setTimeout(listen, 50);
    return;
  }
  console.error(`sink: cannot listen on 127.0.0.1:${port}: ${e.message}`);
  process.exit(1);
}

function goDown(ms, keep) {
  console.error(`sink: down for ${ms} ms`);
  // Every other connection goes too: a client with a kept-alive connection
  // must not get through while down (and "hang" requests are dropped). KEEP,
  // the connection that asked, is closed once it has its answer.
  const closed = new Promise((resolve) => server.close(() => resolve()));
  for (const s of sockets) if (s !== keep) s.destroy();
  hanging.clear();
  const waited = new Promise((resolve) => { reopenTimer = setTimeout(resolve, ms); });
  Promise.all([closed, waited]).then(() => {
    state = { ...OK_STATE };
    listenRetries = 0;
    listen();
  });
}

function shutdown(sig) {
  console.error(`sink: ${sig}, exiting`);
  clearTimeout(reopenTimer);
  server.close();
  for (const s of sockets) s.destroy();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

listen();
