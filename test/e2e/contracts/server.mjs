// Contract sinks: local stand-ins for the APIs of the built-in destination
// kinds (docs/connectors/). These are CONTRACT TESTS of each API's published
// request shape, not the APIs themselves: every request is checked against
// the documented contract (path, auth, required fields, types, limits), and
// answered as the API documents it answers, partial failures and throttling
// included. A request that breaks the contract is recorded as a violation
// and answered with the API's own error.
//
//   node server.mjs PORT_FILE      listens on a free port, writes it to PORT_FILE
//
// Routes: /<kind>/<the API's path>  handled by ./<kind>.mjs, so a destination
// of that kind uses the URL http://127.0.0.1:PORT/<kind>.
//   GET  /_state/<kind>     {"accepted": [...items the API took...],
//                            "requests": [{path, items, bytes, status}], "violations": [...]}
//   POST /_control/<kind>   JSON merged into that kind's `mode` (what the module reads
//                           to throttle, fail, ...); {} resets nothing, null resets mode
//   POST /_reset            forgets everything
//   GET  /_count/<kind>     {"accepted": n}: items taken, without the items (for benchmarks)
// /webhook/... takes any JSON (./webhook.mjs), for benchmarks beside the generic webhook.
// A kind module exports: kind, and handle(req, state) returning {status, headers, body}
// (body: an object sent as JSON, or a string), where req is {method, path, query
// (URLSearchParams), headers (lower-case names), raw (Buffer), json (parsed or
// undefined)} and state is {accepted, requests, violations, mode}.
import http from 'node:http';
import fs from 'node:fs';

const KINDS = ['segment', 'ga4', 'meta_capi', 'mixpanel', 'amplitude', 'braze', 'webhook'];
const modules = {};
for (const k of KINDS) {
  try {
    modules[k] = await import(new URL(`./${k}.mjs`, import.meta.url));
  } catch (e) {
    if (e.code !== 'ERR_MODULE_NOT_FOUND') throw e;
  }
}
const fresh = () => ({ accepted: [], requests: [], violations: [], mode: {} });
let states = Object.fromEntries(KINDS.map((k) => [k, fresh()]));

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url, 'http://sink');
    const parts = url.pathname.split('/');  // ['', kind, ...]
    const kind = parts[2];
    if (parts[1] === '_reset') {
      states = Object.fromEntries(KINDS.map((k) => [k, fresh()]));
      return send(res, 200, { ok: true });
    }
    if (parts[1] === '_state' && states[kind]) return send(res, 200, states[kind]);
    if (parts[1] === '_count' && states[kind])
      return send(res, 200, { accepted: states[kind].count ?? states[kind].accepted.length });
    if (parts[1] === '_control' && states[kind]) {
      const patch = raw.length ? JSON.parse(raw.toString()) : {};
      states[kind].mode = patch === null ? {} : { ...states[kind].mode, ...patch };
      return send(res, 200, states[kind].mode);
    }
    const mod = modules[parts[1]];
    if (!mod) return send(res, 404, { error: `no contract sink for ${parts[1]}` });
    let json;
    try {
      json = raw.length ? JSON.parse(raw.toString()) : undefined;
    } catch {
      json = undefined;
    }
    const state = states[parts[1]];
    const r = {
      method: req.method,
      path: '/' + parts.slice(2).join('/'),
      query: url.searchParams,
      headers: req.headers,
      raw,
      json,
    };
    let out;
    try {
      out = mod.handle(r, state);
    } catch (e) {
      state.violations.push(`sink error: ${e.stack}`);
      out = { status: 500, body: { error: String(e) } };
    }
    state.requests.push({ path: r.path, bytes: raw.length, status: out.status, items: out.items ?? null });
    send(res, out.status, out.body ?? '', out.headers ?? {});
  });
});
server.listen(0, '127.0.0.1', () => fs.writeFileSync(process.argv[2], String(server.address().port)));
