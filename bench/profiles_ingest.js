// Paced ingestion for bench/profiles.sh: POST /v1/batch to cdp at a fixed
// rate, open loop (batch k leaves at start + k * interval, however late the
// answers are), keep-alive, until SECONDS have passed or SIGTERM comes, then
// waits for the answers (30 s at most) and prints one JSON
// line: {"asked", "sent", "acked", "seconds", "rate", "statuses", "errors"}.
// "acked" counts only the events of batches answered 2xx; "rate" is acked
// events over the time from the first send to the last answer.
// Events, for existing profiles (userId u1..uPROFILES, as bench/profiles.sh
// makes them): 70% track "Order Completed" with a revenue, 20% page views,
// 10% identify calls changing plan and sessions; unique messageIds.
// Usage: node profiles_ingest.js URL WRITE_KEY RATE SECONDS PROFILES [BATCH]
'use strict';
const http = require('node:http');
const [url, writeKey, rateArg, secondsArg, profilesArg, batchArg] = process.argv.slice(2);
const rate = Number(rateArg), seconds = Number(secondsArg), profiles = Number(profilesArg);
const batch = Number(batchArg || 50);
if (!url || !writeKey || !(rate > 0) || !(seconds > 0) || !(profiles > 0)) {
  console.error('usage: node profiles_ingest.js URL WRITE_KEY RATE SECONDS PROFILES [BATCH]');
  process.exit(2);
}
const target = new URL('/v1/batch', url);
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const auth = 'Basic ' + Buffer.from(writeKey + ':').toString('base64');
const interval = (1000 * batch) / rate;
const tag = `pi${process.pid}-${Date.now()}`;
const plans = ['free', 'pro', 'enterprise'];
const paths = ['/', '/pricing', '/docs', '/blog', '/account'];
let seq = 0, sent = 0, acked = 0, errors = 0, inFlight = 0, lastAnswer = 0;
const statuses = {};

function event() {
  const n = seq++;
  const userId = 'u' + (1 + Math.floor(Math.random() * profiles));
  const messageId = `${tag}-${n}`;
  const r = n % 10;
  if (r < 7) {
    return { type: 'track', event: 'Order Completed', userId, messageId,
             properties: { revenue: Math.round(Math.random() * 20000) / 100, currency: 'EUR' } };
  }
  if (r < 9) return { type: 'page', name: 'Docs', userId, messageId, properties: { path: paths[n % paths.length] } };
  return { type: 'identify', userId, messageId, traits: { plan: plans[n % 3], sessions: n % 500 } };
}

function send() {
  const events = [];
  for (let i = 0; i < batch; i++) events.push(event());
  const body = JSON.stringify({ batch: events });
  sent += batch;
  inFlight++;
  const req = http.request(target, { method: 'POST', agent, headers: {
    'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Authorization: auth } }, (res) => {
    statuses[res.statusCode] = (statuses[res.statusCode] || 0) + 1;
    res.resume();
    res.on('end', () => {
      if (res.statusCode >= 200 && res.statusCode < 300) acked += batch;
      inFlight--;
      lastAnswer = Date.now();
    });
  });
  req.setTimeout(30000, () => req.destroy(new Error('timeout')));
  req.on('error', () => { errors++; inFlight--; lastAnswer = Date.now(); });
  req.end(body);
}

const start = Date.now();
let k = 0, stopped = 0, timer = null;
process.on('SIGTERM', () => { if (!stopped) { clearTimeout(timer); finish(); } });
function tick() {
  const now = Date.now();
  if (now - start >= seconds * 1000) return finish();
  while (start + k * interval <= now) { send(); k++; }
  timer = setTimeout(tick, Math.max(0, start + k * interval - Date.now()));
}
function finish() {
  stopped = Date.now();
  const deadline = Date.now() + 30000;
  (function wait() {
    if (inFlight > 0 && Date.now() < deadline) return setTimeout(wait, 20);
    const secs = (Math.max(lastAnswer, stopped) - start) / 1000;
    console.log(JSON.stringify({ asked: rate, sent, acked, seconds: secs, rate: Math.round(acked / secs),
                                 statuses, errors, unanswered: inFlight }));
    process.exit(0);
  })();
}
tick();
