// Load for test/e2e/crash.sh, with nothing but Node's standard library.
//
//   node crash_client.mjs URL WRITE_KEY PREFIX OUT_DIR [CLIENTS] [DEADLINE_S]
//
// CLIENTS (default 16) concurrent keep-alive clients each send, one after the
// other, /v1/track requests (one message) and /v1/batch requests (BATCH
// messages), every message with a messageId never used before. A request that
// fails in a way a crash explains (connection refused, reset or closed, a
// timeout, or a 503: the server's "retry later") is retried with the same
// body, hence the same messageIds, until it gets a 200. Any other failure (a
// 500, a 4xx, an unknown network error) is not: it is counted in
// summary.unexpected (by cause, with a sample in unexpected_sample), that
// client stops, and the process exits 1.
//
// SIGUSR2 means "stop starting new requests": each client finishes (retries)
// the request it has, then the process writes OUT_DIR/sent.txt (every messageId
// sent), OUT_DIR/acked.txt (every messageId of a request answered 200) and
// OUT_DIR/summary.json, and exits 0 if every request was acknowledged and
// nothing unexpected happened. At DEADLINE_S (default 90) it gives up: it
// writes the same files and exits 1.
// OUT_DIR/progress.json is rewritten every 250 ms while it runs.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const [url, writeKey, prefix, outDir, clientsArg, deadlineArg] = process.argv.slice(2);
if (!url || !writeKey || !prefix || !outDir) {
  console.error('usage: node crash_client.mjs URL WRITE_KEY PREFIX OUT_DIR [CLIENTS] [DEADLINE_S]');
  process.exit(2);
}
const CLIENTS = Number(clientsArg || 16);
const DEADLINE = Date.now() + Number(deadlineArg || 90) * 1000;
const BATCH = 20;
const target = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
const auth = 'Basic ' + Buffer.from(writeKey + ':').toString('base64');

let stopping = false;
process.on('SIGUSR2', () => { stopping = true; });

const sent = [];          // every messageId put in a request
const acked = new Set();  // every messageId of a request answered 200
const stats = {
  requests: 0,            // distinct requests
  attempts: 0,            // HTTP attempts, retries included
  ok: 0,                  // requests acknowledged
  retried: 0,             // requests that needed more than one attempt
  failures: {},           // retried attempt failures by cause ("ECONNRESET", "503", ...)
  unexpected: {},         // failures that are not retried, by cause ("500", "401", "EPROTO"...)
  unexpected_sample: [],  // the first few, with the answer's body
  accepted: 0,            // messages reported accepted in 200 bodies
  duplicate: 0,           // ... reported duplicate (a retry of a committed request)
  rejected: 0,
  partial: 0,             // retried requests answered partly accepted, partly duplicate
  bad_bodies: [],         // 200s whose body did not add up
};

function post(pathname, body) {
  return new Promise((resolve) => {
    const req = http.request({
      host: target.hostname, port: target.port, path: pathname, method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Authorization: auth },
      timeout: 10000,
    }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
      res.on('error', (e) => resolve({ error: e.code || e.message }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e) => resolve({ error: e.code || e.message }));
    req.end(body);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// What a crash and restart may cause, and a client may retry: the connection
// refused, reset, closed or timed out, or the server's 503 ("retry later").
const RETRIABLE_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'TIMEOUT']);
const retriable = (res) => (res.error ? RETRIABLE_ERRORS.has(res.error) : res.status === 503);

function makeRequest(client, n) {
  const user = `${prefix}-user-${client}`;
  if (n % 2 === 0) {
    const id = `${prefix}-c${client}-r${n}`;
    return { path: '/v1/track', ids: [id],
      body: JSON.stringify({ userId: user, event: 'Crash Test', messageId: id, properties: { client, n } }) };
  }
  const ids = [];
  const batch = [];
  for (let k = 0; k < BATCH; k++) {
    const id = `${prefix}-c${client}-r${n}-m${k}`;
    ids.push(id);
    batch.push({ type: 'track', userId: user, event: 'Crash Batch', messageId: id, properties: { client, n, k } });
  }
  return { path: '/v1/batch', ids, body: JSON.stringify({ batch, context: { library: { name: 'crash_client' } } }) };
}

async function client(c) {
  for (let n = 0; !stopping && Date.now() < DEADLINE; n++) {
    const r = makeRequest(c, n);
    stats.requests++;
    for (const id of r.ids) sent.push(id);
    let backoff = 25;
    for (let attempt = 1; ; attempt++) {
      if (Date.now() >= DEADLINE) return;
      stats.attempts++;
      const res = await post(r.path, r.body);
      if (res.status === 200) {
        let b;
        try { b = JSON.parse(res.body); } catch { b = null; }
        const a = b?.accepted ?? -1, d = b?.duplicate ?? -1, x = b?.rejected ?? -1;
        if (!b || b.success !== true || a + d !== r.ids.length || x !== 0) {
          stats.bad_bodies.push({ path: r.path, ids: r.ids.length, body: res.body.slice(0, 300) });
        } else {
          stats.accepted += a;
          stats.duplicate += d;
          if (a > 0 && d > 0) stats.partial++;
        }
        for (const id of r.ids) acked.add(id);
        stats.ok++;
        if (attempt > 1) stats.retried++;
        break;
      }
      const cause = res.error || String(res.status);
      if (!retriable(res)) {
        stats.unexpected[cause] = (stats.unexpected[cause] || 0) + 1;
        if (stats.unexpected_sample.length < 5)
          stats.unexpected_sample.push({ path: r.path, cause, body: (res.body || '').slice(0, 300) });
        return;  // this client stops: its request stays unacknowledged
      }
      stats.failures[cause] = (stats.failures[cause] || 0) + 1;
      await sleep(backoff + Math.random() * backoff);
      backoff = Math.min(backoff * 2, 400);
    }
  }
}

const started = Date.now();
const progress = setInterval(() => {
  const tmp = path.join(outDir, 'progress.json.tmp');  // renamed: readers never see half a file
  fs.writeFileSync(tmp, JSON.stringify({
    seconds: (Date.now() - started) / 1000, sent: sent.length, acked: acked.size, stopping, ...stats,
  }));
  fs.renameSync(tmp, path.join(outDir, 'progress.json'));
}, 250);

await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
clearInterval(progress);
agent.destroy();

const unacked = sent.filter((id) => !acked.has(id));
fs.writeFileSync(path.join(outDir, 'sent.txt'), sent.join('\n') + '\n');
fs.writeFileSync(path.join(outDir, 'acked.txt'), [...acked].join('\n') + '\n');
const summary = {
  seconds: (Date.now() - started) / 1000, clients: CLIENTS, sent: sent.length, acked: acked.size,
  unacked: unacked.length, unacked_sample: unacked.slice(0, 5), gave_up: !stopping, ...stats,
};
fs.writeFileSync(path.join(outDir, 'summary.json'), JSON.stringify(summary));
console.log(JSON.stringify(summary));
process.exit(unacked.length === 0 && stopping && Object.keys(stats.unexpected).length === 0 ? 0 : 1);
