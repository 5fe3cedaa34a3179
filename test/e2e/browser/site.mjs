// The two local servers the browser suite puts beside cdp, both on 127.0.0.1:
//
// - the shop: a second origin (http://shop.test:<port> in Chromium) serving the test pages and
//   the SDKs' real bundles straight from node_modules, as a site would serve them;
// - a proxy in front of cdp that can fail requests with cdp's own overload answer (503 +
//   Retry-After), so that an SDK's retry can be watched; everything else passes through as is.
//
// Both log every request, so that the driver can show what the SDKs asked for.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MODULES = path.join(HERE, 'node_modules');

// URL prefix -> folder. The SDK bundles are the packages' own files, unchanged.
const MOUNTS = [
  ['/pages/', path.join(HERE, 'pages')],
  // analytics-next's standalone UMD build (window.AnalyticsNext) and the chunks it may load.
  ['/sdk/analytics-next/', path.join(MODULES, '@segment/analytics-next/dist/umd')],
  // RudderStack v3's npm build with its plugins bundled in (window.rudderanalytics), so that no
  // plugin is fetched from a CDN.
  ['/sdk/rudderstack/', path.join(MODULES, '@rudderstack/analytics-js/dist/npm/modern/bundled/umd')],
  // ES modules of packages without a browser bundle (consent tools), see resolveModule.
  ['/esm/', MODULES],
];

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8', '.map': 'application/json', '.json': 'application/json' };

// tsc's ES module output imports "./x" without an extension, which only a bundler resolves:
// the shop resolves it the way Node would (x, x.js, x/index.js), by a redirect, so that the
// module's own relative imports resolve from where it really is.
function resolveModule(file) {
  for (const suffix of ['', '.js', '/index.js']) {
    try { if (fs.statSync(file + suffix).isFile()) return { file: file + suffix, suffix }; } catch { /* next */ }
  }
  return null;
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

export async function startShop(log) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://shop');
    log.push({ at: Date.now(), server: 'shop', method: req.method, host: req.headers.host, path: url.pathname });
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    const mount = MOUNTS.find(([prefix]) => url.pathname.startsWith(prefix));
    const wanted = mount && path.join(mount[1], decodeURIComponent(url.pathname.slice(mount[0].length)));
    const found = wanted && wanted.startsWith(mount[1]) && resolveModule(wanted);
    if (!found) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
      return;
    }
    if (found.suffix) {
      res.writeHead(302, { Location: url.pathname + found.suffix }).end();
      return;
    }
    const file = found.file;
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'Cache-Control': 'no-store' });
    fs.createReadStream(file).pipe(res);
  });
  const port = await listen(server);
  return { port, close: () => new Promise((r) => server.close(r)) };
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']);
const headersOf = (raw) => Object.fromEntries(Object.entries(raw).filter(([k]) => !HOP_BY_HOP.has(k)));

// A proxy to cdp on 127.0.0.1:cdpPort. failPosts(n) makes the next n POSTs fail with 503 and
// Retry-After: 1, the answer cdp gives when it is overloaded, carrying the CORS headers cdp
// gives that origin (read from cdp's answer to GET /health with the same Origin), so that the
// browser lets the page see the 503 as cdp would send it.
export async function startProxy(cdpPort, log) {
  let toFail = 0;
  const forward = (method, reqPath, headers, body) => new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: cdpPort, method, path: reqPath, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: headersOf(res.headers), body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      const entry = { at: Date.now(), server: 'proxy', method: req.method, path: req.url,
        requestHeaders: headersOf(req.headers), bodyBytes: body.length };
      log.push(entry);
      try {
        let answer;
        if (req.method === 'POST' && toFail > 0) {
          toFail -= 1;
          const probe = await forward('GET', '/health', req.headers.origin ? { origin: req.headers.origin } : {});
          const cors = Object.fromEntries(Object.entries(probe.headers)
            .filter(([k]) => k.startsWith('access-control-') || k === 'vary'));
          answer = { status: 503, injected: true, body: Buffer.from('{"success":false,"error":"overloaded, retry later"}'),
            headers: { ...cors, 'content-type': 'application/json', 'retry-after': '1' } };
        } else {
          answer = await forward(req.method, req.url, headersOf(req.headers), body);
        }
        Object.assign(entry, { status: answer.status, injected: !!answer.injected, responseHeaders: answer.headers,
          responseBody: answer.body.toString('utf8').slice(0, 300) });
        res.writeHead(answer.status, { ...answer.headers, 'content-length': answer.body.length }).end(answer.body);
      } catch (err) {
        entry.error = String(err);
        res.writeHead(502, { 'content-type': 'text/plain' }).end(String(err));
      }
    });
  });
  const port = await listen(server);
  return { port, failPosts: (n) => { toFail = n; }, close: () => new Promise((r) => server.close(r)) };
}
