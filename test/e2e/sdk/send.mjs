// Sends one of each Segment call to the cdp HTTP collector with Segment's own
// Node.js SDK (@segment/analytics-node), as an app would. Used by
// test/e2e/segment_sdk.sh, which then checks in SQL what was stored.
//
//   CDP_HOST=http://127.0.0.1:18765 CDP_WRITE_KEY=cdp_... CDP_PREFIX=run1 node send.mjs
//
// CDP_CLOCK_SKEW_MS (default 0) makes this process's clock run ahead (or behind)
// by that much, so that the server's clock-skew correction has work to do.
// Prints a JSON summary on stdout; exits 1 if the SDK reported any error, an
// HTTP response was not 2xx, or a callback failed.

import { createRequire } from 'node:module';

const host = process.env.CDP_HOST;
const writeKey = process.env.CDP_WRITE_KEY;
const prefix = process.env.CDP_PREFIX;
const skewMs = Number(process.env.CDP_CLOCK_SKEW_MS || 0);
if (!host || !writeKey || !prefix) {
  console.error('send.mjs: CDP_HOST, CDP_WRITE_KEY and CDP_PREFIX are required');
  process.exit(2);
}

if (skewMs !== 0) {
  // A client whose clock is wrong: every Date the SDK makes (event timestamps,
  // the batch's sentAt) is off by skewMs. Relative times stay consistent.
  const RealDate = Date;
  class SkewedDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(RealDate.now() + skewMs);
      else super(...args);
    }
    static now() {
      return RealDate.now() + skewMs;
    }
  }
  globalThis.Date = SkewedDate;
}

const { Analytics } = await import('@segment/analytics-node');  // after the clock is set
let version = 'unknown';
try {
  version = createRequire(import.meta.url)('@segment/analytics-node/package.json').version;
} catch {}

const errors = [];
const responses = [];
const deadline = setTimeout(() => {
  console.error('send.mjs: gave up after 45 s');
  console.log(JSON.stringify({ ok: false, errors: [...errors, 'timeout'], responses }));
  process.exit(1);
}, 45000);

const analytics = new Analytics({
  writeKey,
  host,                 // path defaults to /v1/batch
  flushAt: 3,           // 8 calls: batches of 3, 3 and 2
  flushInterval: 200,
  maxRetries: 3,
  httpRequestTimeout: 10000,
});
analytics.on('error', (err) => {
  errors.push(`error event: ${err?.code ?? ''} ${err?.reason?.message ?? err?.reason ?? err?.message ?? String(err)}`);
});
analytics.on('http_response', (r) => {
  responses.push({ status: r.status, url: r.url, events: JSON.parse(r.body).batch.length });
  if (r.status < 200 || r.status > 299) errors.push(`HTTP ${r.status} ${r.statusText} from ${r.url}`);
});

const user = `${prefix}-user`;
const anon = `${prefix}-anon`;
const group = `${prefix}-group`;
const tenMinutesAgo = new Date(Date.now() - 10 * 60 * 1000);  // on the (possibly skewed) client clock
const callbacks = [];
const cb = (what) => {
  let done;
  callbacks.push(new Promise((resolve) => (done = resolve)));
  return (err) => {
    if (err) errors.push(`callback of ${what}: ${err?.message ?? err?.reason?.message ?? JSON.stringify(err)}`);
    done();
  };
};

analytics.identify(
  { userId: user, anonymousId: anon, traits: { email: 'ada@example.com', plan: 'pro', logins: 3 }, messageId: `${prefix}-identify` },
  cb('identify'));
analytics.track(
  { userId: user, event: 'Order Completed',
    properties: { revenue: 42.5, currency: 'EUR', products: [{ sku: 'A-1', quantity: 2 }] },
    messageId: `${prefix}-track` },
  cb('track'));
analytics.page(
  { anonymousId: anon, category: 'Docs', name: 'Pricing', properties: { path: '/pricing', referrer: 'https://example.org/' },
    messageId: `${prefix}-page` },
  cb('page'));
analytics.screen(
  { userId: user, name: 'Home', properties: { tab: 'feed' }, messageId: `${prefix}-screen` },
  cb('screen'));
analytics.group(
  { userId: user, groupId: group, traits: { name: 'Acme Inc', employees: 42 }, messageId: `${prefix}-group` },
  cb('group'));
analytics.alias({ userId: user, previousId: anon, messageId: `${prefix}-alias` }, cb('alias'));
// Happened ten minutes ago (client clock): stored ten minutes before received_at.
analytics.track(
  { userId: user, event: 'Late Event', timestamp: tenMinutesAgo, messageId: `${prefix}-past` },
  cb('track with timestamp'));
// The SDK's own messageId (a UUID): found by its event name.
analytics.track({ userId: user, event: `${prefix}-auto-id`, properties: { n: 1 } }, cb('track with SDK messageId'));

await analytics.closeAndFlush({ timeout: 30000 });
await Promise.race([Promise.all(callbacks), new Promise((r) => setTimeout(r, 5000))]);
clearTimeout(deadline);

const sent = responses.filter((r) => r.status >= 200 && r.status <= 299).reduce((n, r) => n + r.events, 0);
if (sent !== 8) errors.push(`expected 8 events in 2xx-answered requests, the SDK sent ${sent} (responses: ${JSON.stringify(responses)})`);
const ok = errors.length === 0;
console.log(JSON.stringify({ ok, sdkVersion: version, skewMs, errors, responses }));
process.exit(ok ? 0 : 1);
