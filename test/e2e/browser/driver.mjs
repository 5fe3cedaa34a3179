// Runs one case of test/e2e/browser.sh: the real browser SDKs in Debian's headless Chromium,
// on a page of a second local origin (the shop), sending to cdp.
//
//   node driver.mjs CASE
//
// Environment: CDP_HTTP_PORT, CDP_WRITE_KEY, CDP_SOURCE_ID, CDP_PREFIX (makes ids unique to the
// run), PGHOST/PGPORT/PGUSER/PGDATABASE (to wait for the events in cdp.events), CHROMIUM
// (default /usr/bin/chromium).
//
// Prints one JSON object: {ok, error?, result (what the page reported), requests (every request
// the pages made), foreign (those for a host other than the two local ones), proxy (what the
// fault proxy saw), console (the pages' errors and warnings)}. Exit status 0 when the browser
// side of the case ran to its end, 1 otherwise. The columns are checked by browser.sh, in SQL.
//
// Only 127.0.0.1 can be reached: Chromium resolves shop.test and cdp.test to 127.0.0.1 and every
// other name to nothing (--host-resolver-rules), and the case fails on any request for another
// host all the same (an IP literal bypasses the resolver).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import { startShop, startProxy } from './site.mjs';

const env = process.env;
const CASE = process.argv[2];
const KEY = env.CDP_WRITE_KEY;
const SOURCE_ID = Number(env.CDP_SOURCE_ID);
const PREFIX = env.CDP_PREFIX ?? 'browser';
const LOCAL_HOSTS = new Set(['shop.test', 'cdp.test']);

const now = () => Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function psql(query) {
  return new Promise((resolve, reject) => {
    execFile('psql', ['-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', query], { env }, (err, out, errOut) =>
      err ? reject(new Error(`psql: ${errOut || err.message}`)) : resolve(out.trim()));
  });
}

// Until cdp.events holds at least n events of this case's source; throws after `seconds`.
async function waitEvents(n, seconds = 10) {
  const deadline = now() + seconds * 1000;
  let got = 0;
  while (now() < deadline) {
    got = Number(await psql(`select count(*) from cdp.events where source_id = ${SOURCE_ID}`));
    if (got >= n) return got;
    await sleep(100);
  }
  throw new Error(`only ${got} of ${n} events reached cdp.events within ${seconds} s`);
}

// Until fn() is truthy (checked every 50 ms); throws `what` after `seconds`.
async function until(what, fn, seconds = 10) {
  const deadline = now() + seconds * 1000;
  while (now() < deadline) {
    const v = await fn();
    if (v) return v;
    await sleep(50);
  }
  throw new Error(`${what} (waited ${seconds} s)`);
}

const requests = [];   // what the pages asked for, as puppeteer reports it
const serverLog = [];  // what the shop and the proxy received
const consoleLines = [];

// A page of a fresh browser context (its own storage) opened at url, every request and console
// error logged. Its window.__facts(extra) is what the checks need to know of the page.
async function openPage(browser, url) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.evaluateOnNewDocument(() => {
    window.__facts = (extra) => ({ userAgent: navigator.userAgent, url: location.href, path: location.pathname,
      title: document.title, ...extra });
  });
  page.on('request', (req) => {
    const entry = { method: req.method(), url: req.url(), type: req.resourceType(), headers: req.headers(),
      page, batch: batchSize(req.postData()) };
    requests.push(entry);
    req.__entry = entry;
  });
  page.on('requestfinished', (req) => { if (req.__entry) req.__entry.status = req.response()?.status(); });
  page.on('requestfailed', (req) => { if (req.__entry) req.__entry.failure = req.failure()?.errorText; });
  page.on('console', (msg) => {
    if (['error', 'warn', 'warning'].includes(msg.type())) consoleLines.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));
  await page.goto(url);
  return page;
}

// How many messages a request body carries in its `batch`, if it has one.
function batchSize(body) {
  try { return JSON.parse(body).batch?.length; } catch { return undefined; }
}

// Until every request of the pages still open has its answer (or its error), for at most 5 s:
// cdp commits before it answers, so the events can be in cdp.events before the browser has
// read the answer that the checks look at.
async function settle() {
  const deadline = now() + 5000;
  while (now() < deadline && requests.some((r) => !r.page.isClosed() && r.status === undefined && !r.failure)) await sleep(50);
}

// The settings analytics-next gets inline (no settings request): Segment.io pointed at apiHost.
const inlineSettings = (apiHost, extra = {}) => ({
  integrations: { 'Segment.io': { apiKey: KEY, apiHost, protocol: 'http', ...extra } },
});

// The calls every analytics-next case makes, in the page: an anonymous page view and track, then
// identify, and a track as the known user. Resolves to what the checks need from the page.
async function ajsCalls(page, p) {
  return labelled('analytics-next calls', page.evaluate(async (p) => {
    const a = window.__analytics;
    await a.page('Docs', `${p} Pricing`, { plan: 'pro' });
    await a.track(`${p} Product Viewed`, { sku: 'A-1', price: 19.5 });
    await a.identify(`${p}-user`, { email: `${p}@example.com`, plan: 'pro', logins: 3 });
    await a.track(`${p} Order Completed`, { revenue: 42.5, currency: 'EUR', products: [{ sku: 'A-1', quantity: 2 }] });
    return window.__facts({ anonymousId: a.user().anonymousId(), userId: a.user().id() });
  }, p));
}

// The promise, its error prefixed with what was being done.
const labelled = (what, promise) => promise.catch((err) => { throw new Error(`${what}: ${err.message}`); });

// Loads analytics-next in the page: AnalyticsBrowser.load(settings, options), kept as
// window.__analytics.
async function ajsLoad(page, settings, options = {}) {
  await labelled('analytics-next load()', page.evaluate(async (settings, options) => {
    const [analytics] = await window.AnalyticsNext.AnalyticsBrowser.load(settings, options);
    window.__analytics = analytics;
  }, settings, { initialPageview: false, ...options }));
}

// Loads RudderStack v3 in the page and resolves once `ready` fired (the source config was read).
async function rsaLoad(page, dataPlaneUrl, loadOptions) {
  await labelled('RudderStack load()', page.evaluate((key, dataPlaneUrl, loadOptions) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('RudderStack ready() did not fire within 10 s')), 10000);
    const ra = new window.rudderanalytics.RudderAnalytics();
    window.__ra = ra;
    ra.load(key, dataPlaneUrl, loadOptions);
    ra.ready(() => { clearTimeout(timer); resolve(); });
  }), KEY, dataPlaneUrl, loadOptions));
}

// What RudderStack is told besides its data plane: settings from cdp, and the CDN base URLs
// pointed at a path of the shop that serves nothing, so that any attempt to fetch a plugin or
// a device-mode destination shows in the shop's log (the checks require none).
const rsaOptions = (cdp, shop, extra = {}) => ({
  configUrl: cdp,
  pluginsSDKBaseURL: `${shop}/no-cdn/plugins`,
  destSDKBaseURL: `${shop}/no-cdn/integrations`,
  logLevel: 'WARN',
  ...extra,
});

async function rsaCalls(page, p) {
  return labelled('RudderStack calls', page.evaluate(async (p) => {
    const ra = window.__ra;
    // Each call's callback runs once the event is queued for delivery.
    const call = (name, ...args) => new Promise((resolve) => ra[name](...args, () => resolve()));
    await call('page', 'Docs', `${p} Pricing`, { plan: 'pro' });
    await call('track', `${p} Product Viewed`, { sku: 'A-1', price: 19.5 });
    await call('identify', `${p}-user`, { email: `${p}@example.com`, plan: 'pro', logins: 3 });
    await call('track', `${p} Order Completed`, { revenue: 42.5, currency: 'EUR', products: [{ sku: 'A-1', quantity: 2 }] });
    return window.__facts({ anonymousId: ra.getAnonymousId(), userId: ra.getUserId() });
  }, p));
}

const CASES = {
  // analytics-next as documented: cdnURL = cdp, so the settings come from
  // GET /v1/projects/<key>/settings and say where to send (Segment.io's apiHost).
  async 'ajs-cdn'({ browser, cdp, shop }) {
    const page = await openPage(browser, `${shop}/pages/ajs.html`);
    await ajsLoad(page, { writeKey: KEY, cdnURL: cdp });
    const r = await ajsCalls(page, PREFIX);
    await waitEvents(4);
    return r;
  },

  // Settings inline (no settings request), every call type a browser makes, and the SDK's own
  // metrics sent to cdp (/v1/m): their host comes from the settings, their protocol from the
  // load options' Segment.io settings (https otherwise).
  async 'ajs-inline'({ browser, shop, api }) {
    const page = await openPage(browser, `${shop}/pages/ajs.html`);
    await ajsLoad(page,
      { writeKey: KEY, cdnSettings: { ...inlineSettings(api), metrics: { host: api, sampleRate: 1, flushTimer: 300 } } },
      { integrations: { 'Segment.io': { apiHost: api, protocol: 'http' } } });
    const r = await ajsCalls(page, PREFIX);
    r.aliasFrom = await page.evaluate(async (p) => {
      const a = window.__analytics;
      await a.group(`${p}-acme`, { name: 'Acme Inc', employees: 42 });
      // A second visitor signs up: alias(new userId) from their anonymousId. (analytics-next
      // stamps the current user's id over alias's `to`, so it is sent after a logout.)
      a.reset();
      await a.alias(`${p}-user2`);
      return a.user().anonymousId();
    }, PREFIX);
    await waitEvents(6);
    await until('analytics-next sent no metrics to /v1/m',
      () => requests.some((q) => q.method === 'POST' && q.url.endsWith('/v1/m') && (q.status || q.failure)));
    return r;
  },

  // deliveryStrategy batching: events are sent together to /v1/b, four at a time or after
  // a second.
  async 'ajs-batching'({ browser, shop, api }) {
    const page = await openPage(browser, `${shop}/pages/ajs.html`);
    await ajsLoad(page, { writeKey: KEY, cdnSettings: inlineSettings(api, {
      deliveryStrategy: { strategy: 'batching', config: { size: 4, timeout: 1000 } } }) });
    const r = await ajsCalls(page, PREFIX);
    await page.evaluate(async (p) => {
      await window.__analytics.track(`${p} Coupon Applied`, { coupon: 'X' });
      await window.__analytics.track(`${p} Checkout Started`, { step: 1 });
    }, PREFIX);
    await waitEvents(6);
    return r;
  },

  // Batching with a queue that would wait a minute: leaving the page flushes it (pagehide,
  // keepalive fetch). Once by navigating to another page, once by closing the tab.
  async 'ajs-pagehide'({ browser, shop, api }) {
    const settings = { writeKey: KEY, cdnSettings: inlineSettings(api, {
      deliveryStrategy: { strategy: 'batching', config: { size: 100, timeout: 60000 } } }) };
    const page = await openPage(browser, `${shop}/pages/ajs.html`);
    await ajsLoad(page, settings);
    const r = await ajsCalls(page, `${PREFIX}-nav`);
    const queuedNav = await psql(`select count(*) from cdp.events where source_id = ${SOURCE_ID}`);
    await page.goto(`${shop}/pages/bye.html`);
    await waitEvents(4);
    const page2 = await openPage(browser, `${shop}/pages/ajs.html`);
    await ajsLoad(page2, settings);
    const r2 = await ajsCalls(page2, `${PREFIX}-close`);
    const queuedClose = Number(await psql(`select count(*) from cdp.events where source_id = ${SOURCE_ID}`)) - 4;
    await page2.close({ runBeforeUnload: true });
    await waitEvents(8);
    return { ...r, close: r2, queuedBeforeLeaving: [Number(queuedNav), queuedClose] };
  },

  // The first POST gets cdp's overload answer (503, Retry-After: 1) from the proxy; the SDK
  // retries with X-Retry-Count, which cdp's preflight must allow.
  async 'ajs-retry'({ browser, shop, proxy, proxyApi }) {
    proxy.failPosts(1);
    const page = await openPage(browser, `${shop}/pages/ajs.html`);
    await ajsLoad(page, { writeKey: KEY, cdnSettings: inlineSettings(proxyApi) });
    const r = await page.evaluate(async (p) => {
      const a = window.__analytics;
      a.track(`${p} Order Completed`, { revenue: 42.5, currency: 'EUR' });
      return window.__facts({ anonymousId: a.user().anonymousId() });
    }, PREFIX);
    await waitEvents(1, 15);
    return r;
  },

  // Segment's consent wrapper (@segment/analytics-consent-tools) stamps every event with
  // context.consent.categoryPreferences; a change of mind sends "Segment Consent Preference
  // Updated" with the new preferences.
  async 'ajs-consent'({ browser, shop, api }) {
    const page = await openPage(browser, `${shop}/pages/ajs-consent.html`);
    await page.waitForFunction(() => window.ConsentTools, { timeout: 10000 });
    await page.evaluate(async (key, cdnSettings) => {
      // A stand-in for a consent banner: what the person chose, and a way to change it.
      window.__cmp = { categories: { analytics: true, marketing: false }, listeners: [] };
      const withCMP = window.ConsentTools.createWrapper({
        shouldLoadSegment: (ctx) => ctx.load({ consentModel: 'opt-in' }),
        getCategories: () => ({ ...window.__cmp.categories }),
        registerOnConsentChanged: (set) => window.__cmp.listeners.push(set),
      });
      const analytics = new window.AnalyticsNext.AnalyticsBrowser();
      withCMP(analytics).load({ writeKey: key, cdnSettings }, { initialPageview: false });
      const [instance] = await analytics;
      window.__analytics = instance;
    }, KEY, inlineSettings(api));
    const r = await ajsCalls(page, PREFIX);
    await waitEvents(4);
    await page.evaluate(() => {
      window.__cmp.categories = { analytics: true, marketing: true };
      window.__cmp.listeners.forEach((set) => set({ ...window.__cmp.categories }));
    });
    await waitEvents(5);
    return r;
  },

  // RudderStack v3 with configUrl = dataPlaneUrl = cdp: the source config comes from
  // GET /sourceConfig, ready fires, the events go to cdp.
  async 'rsa-config'({ browser, cdp, shop }) {
    const page = await openPage(browser, `${shop}/pages/rsa.html`);
    await rsaLoad(page, cdp, rsaOptions(cdp, shop));
    const r = await rsaCalls(page, PREFIX);
    await waitEvents(4);
    return r;
  },

  // useBeacon: events leave by navigator.sendBeacon (text/plain, the key in the query) to
  // /beacon/v1/batch, four at a time; the queue would wait a minute for the fifth, but leaving
  // the page sends it.
  async 'rsa-beacon'({ browser, cdp, shop }) {
    const page = await openPage(browser, `${shop}/pages/rsa.html`);
    await rsaLoad(page, cdp, rsaOptions(cdp, shop,
      { useBeacon: true, beaconQueueOptions: { maxItems: 4, flushQueueInterval: 60000 } }));
    const r = await rsaCalls(page, PREFIX);
    await waitEvents(4);
    await page.evaluate((p) => new Promise((resolve) => window.__ra.track(`${p} Left Page`, { via: 'pagehide' }, () => resolve())), PREFIX);
    r.queuedBeforeLeaving = Number(await psql(`select count(*) from cdp.events where source_id = ${SOURCE_ID}`)) - 4;
    await page.goto(`${shop}/pages/bye.html`);
    await waitEvents(5);
    return r;
  },

  // RudderStack's retry after a 503: the retry carries Rsa-Retry-Attempt and Rsa-Retry-Reason,
  // which cdp's preflight must allow.
  async 'rsa-retry'({ browser, shop, proxy, proxyUrl }) {
    proxy.failPosts(1);
    const page = await openPage(browser, `${shop}/pages/rsa.html`);
    await rsaLoad(page, proxyUrl, rsaOptions(proxyUrl, shop));
    const r = await page.evaluate(async (p) => {
      const ra = window.__ra;
      await new Promise((resolve) => ra.track(`${p} Order Completed`, { revenue: 42.5, currency: 'EUR' }, () => resolve()));
      return window.__facts({ anonymousId: ra.getAnonymousId() });
    }, PREFIX);
    await waitEvents(1, 15);
    return r;
  },

  // RudderStack's consent management (custom provider): events carry
  // context.consentManagement with the allowed and denied category ids.
  async 'rsa-consent'({ browser, cdp, shop }) {
    const page = await openPage(browser, `${shop}/pages/rsa.html`);
    await rsaLoad(page, cdp, rsaOptions(cdp, shop, {
      consentManagement: { enabled: true, provider: 'custom', allowedConsentIds: ['analytics'], deniedConsentIds: ['marketing'] },
    }));
    const r = await rsaCalls(page, PREFIX);
    await waitEvents(4);
    return r;
  },
};

async function main() {
  const run = CASES[CASE];
  if (!run) throw new Error(`unknown case ${CASE}; known: ${Object.keys(CASES).join(' ')}`);
  const shopServer = await startShop(serverLog);
  const proxy = await startProxy(Number(env.CDP_HTTP_PORT), serverLog);
  const cdp = `http://cdp.test:${env.CDP_HTTP_PORT}`;
  const proxyUrl = `http://cdp.test:${proxy.port}`;
  const profile = mkdtempSync(path.join(tmpdir(), 'cdp-chromium-'));
  let browser;
  try {
    browser = await puppeteer.launch({
      executablePath: env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      userDataDir: profile,
      args: [
        '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--host-resolver-rules=MAP shop.test 127.0.0.1, MAP cdp.test 127.0.0.1, MAP * ~NOTFOUND',
      ],
    });
    const result = await run({
      browser, cdp, proxy, proxyUrl,
      shop: `http://shop.test:${shopServer.port}`,
      api: `cdp.test:${env.CDP_HTTP_PORT}/v1`,
      proxyApi: `cdp.test:${proxy.port}/v1`,
    });
    await settle();
    return { ok: true, result };
  } finally {
    if (browser) await browser.close().catch(() => {});
    await shopServer.close();
    await proxy.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

function report(outcome) {
  const web = requests.filter((r) => /^https?:/.test(r.url));
  const foreign = web.filter((r) => !LOCAL_HOSTS.has(new URL(r.url).hostname)).map((r) => r.url);
  const out = {
    ...outcome,
    requests: web.map((r) => ({ method: r.method, url: r.url, type: r.type, status: r.status, failure: r.failure,
      contentType: r.headers['content-type'], batch: r.batch })),
    foreign,
    shop: serverLog.filter((e) => e.server === 'shop').map((e) => `${e.method} ${e.path}`),
    proxy: serverLog.filter((e) => e.server === 'proxy'),
    console: consoleLines,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exitCode = outcome.ok ? 0 : 1;
}

main().then(report, (err) => report({ ok: false, error: err.message }));
