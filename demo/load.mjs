// The demo dataset: a few hundred people of a small online shop, sent to the
// cdp HTTP collector as an app would (POST /v1/batch with the write key), so
// that every doc example and the console have people to show. `./dev up` runs
// it once per local cluster; docs/demo.md describes what it holds.
//
//   node demo/load.mjs --url http://127.0.0.1:8765 --key cdp_...   # send it
//   node demo/load.mjs --print | head                             # look at it (JSON lines)
//
// Deterministic: the same seed (--seed, default 15) gives the same people,
// journeys and messageIds. Times are relative to the moment of loading (the
// newest events are about an hour old), so windows such as "orders in the last 30
// days" have something to count whenever it is loaded. A second run sends the
// same messageIds, which cdp stores once (within cdp.dedup_window_hours).
// Plain Node.js (18 or later), no packages.

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const SEED = Number(opt('seed', 15));
const PEOPLE = Number(opt('people', 300));
const PRINT = args.includes('--print');
const URL_ = opt('url', process.env.CDP_URL);
const KEY = opt('key', process.env.WRITE_KEY);
if (!PRINT && (!URL_ || !KEY)) {
  console.error('usage: node demo/load.mjs --url http://127.0.0.1:8765 --key WRITE_KEY   (or --print)');
  process.exit(2);
}

// mulberry32: a small seeded generator, so the data never depends on Math.random.
let state = SEED >>> 0;
const random = () => {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
const pick = (list) => list[Math.floor(random() * list.length)];
const chance = (p) => random() < p;
const hex = (n) => Array.from({ length: n }, () => Math.floor(random() * 16).toString(16)).join('');

const NOW = Math.floor(Date.now() / 1000) * 1000;
const MINUTE = 60e3, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
const iso = (ms) => new Date(ms).toISOString();

const PRODUCTS = [
  { product_id: 'p-01', sku: 'A', name: 'Trail Runner', category: 'Shoes', price: 80 },
  { product_id: 'p-02', sku: 'B', name: 'Rain Jacket', category: 'Outerwear', price: 40 },
  { product_id: 'p-03', sku: 'C', name: 'Merino Socks', category: 'Accessories', price: 12 },
  { product_id: 'p-04', sku: 'D', name: 'Day Pack', category: 'Bags', price: 55 },
  { product_id: 'p-05', sku: 'E', name: 'Camp Stove', category: 'Camping', price: 65 },
  { product_id: 'p-06', sku: 'F', name: 'Head Torch', category: 'Accessories', price: 25 },
  { product_id: 'p-07', sku: 'G', name: 'Down Vest', category: 'Outerwear', price: 95 },
  { product_id: 'p-08', sku: 'H', name: 'Water Bottle', category: 'Accessories', price: 15 },
  { product_id: 'p-09', sku: 'I', name: 'Hiking Boot', category: 'Shoes', price: 140 },
  { product_id: 'p-10', sku: 'J', name: 'Two-Person Tent', category: 'Camping', price: 220 },
];
const FIRST = ['Alice', 'Ben', 'Chloe', 'David', 'Emma', 'Felix', 'Grace', 'Hugo', 'Iris', 'Jonas', 'Kira', 'Leo',
  'Maya', 'Noah', 'Olga', 'Pablo', 'Quinn', 'Rosa', 'Sam', 'Tara', 'Umar', 'Vera', 'Will', 'Xena', 'Yusuf', 'Zoe',
  'Anna', 'Bruno', 'Clara', 'Dmitri', 'Elena', 'Farid', 'Greta', 'Hana', 'Ivan', 'Julia', 'Karim', 'Lena', 'Marco', 'Nina'];
const LAST = ['Martin', 'Schmidt', 'Rossi', 'Garcia', 'Smith', 'Novak', 'Silva', 'Jensen', 'Kowalski', 'Dubois',
  'Muller', 'Bianchi', 'Lopez', 'Brown', 'Horvat', 'Costa', 'Nielsen', 'Nowak', 'Laurent', 'Weber', 'Ricci', 'Moreno',
  'Taylor', 'Kovac', 'Santos', 'Larsen', 'Wojcik', 'Bernard', 'Fischer', 'Romano'];
const DOMAINS = ['example.com', 'example.org', 'example.net', 'mail.example'];
const COUNTRIES = ['FR', 'DE', 'IT', 'ES', 'GB', 'US', 'NL', 'PL', 'SE', 'PT'];
const PLANS = ['free', 'free', 'free', 'pro', 'pro', 'team'];
const ACCOUNTS = {
  initech: { name: 'Initech', plan: 'team', employees: 85, industry: 'Software' },
  umbrella: { name: 'Umbrella Outdoor Club', plan: 'team', employees: 30, industry: 'Sports' },
};
const PAGES = [
  { name: 'Home', path: '/' },
  { name: 'Pricing', path: '/pricing' },
  { name: 'Blog', path: '/blog' },
  { name: 'Sale', path: '/sale' },
];
const REFERRERS = ['https://www.google.com/', 'https://news.example/', 'https://social.example/', ''];

const messages = [];
let seq = 0;
// One message; `at` is milliseconds since the epoch. messageIds are stable.
const add = (at, msg) => {
  seq += 1;
  messages.push({ ...msg, timestamp: iso(at), messageId: `demo-${SEED}-${seq}`, order: seq });
};
const pageContext = (page, extra = {}) => ({
  page: { path: page.path, url: `https://shop.example${page.path}`, title: page.name, referrer: pick(REFERRERS) },
  ...extra,
});

// ---------------------------------------------------------------------------
// The people the docs name (docs/segments.md, docs/identity.md, docs/privacy.md):
// their events are given on the docs' calendar and shifted so that the docs'
// "now", 2025-03-10 12:00 UTC, is the moment of loading.
// ---------------------------------------------------------------------------
const DOCS_NOW = Date.parse('2025-03-10T12:00:00Z');
const shifted = (s) => NOW - (DOCS_NOW - Date.parse(s));

function ada() {
  const id = { userId: 'ada', anonymousId: 'anon-ada-laptop' };
  add(shifted('2025-02-15T09:00:00Z'), { type: 'identify', ...id, traits: {
    email: 'ada@acme.example', plan: 'pro', age: 36, country: 'FR', interests: ['golf', 'chess'],
    phone: '+33612345678', last_seen: iso(shifted('2025-03-08T09:00:00Z')), address: { city: 'Paris' },
    first_name: 'Ada', last_name: 'Lovelace' } });
  add(shifted('2025-02-15T09:05:00Z'), { type: 'group', ...id, groupId: 'acme',
    traits: { name: 'Acme', plan: 'enterprise', employees: 400 } });
  add(shifted('2025-02-20T10:00:00Z'), { type: 'track', ...id, event: 'Order Completed',
    properties: { order_id: 'o-ada-1', revenue: 80, currency: 'EUR', sku: 'A' } });
  add(shifted('2025-03-01T10:00:00Z'), { type: 'track', ...id, event: 'Order Completed',
    properties: { order_id: 'o-ada-2', revenue: 40, currency: 'EUR', sku: 'B' } });
  for (const day of ['05', '07', '09'])
    add(shifted(`2025-03-${day}T10:00:00Z`), { type: 'page', ...id, name: 'Pricing', properties: { path: '/pricing' },
      context: pageContext(PAGES[1]) });
  add(shifted('2025-03-08T10:00:00Z'), { type: 'track', ...id, event: 'Order Completed',
    properties: { order_id: 'o-ada-3', revenue: 120, currency: 'USD', sku: 'A' } });
}

function bob() {
  const id = { userId: 'bob', anonymousId: 'anon-bob-1' };
  add(shifted('2025-02-25T08:00:00Z'), { type: 'identify', ...id, traits: {
    email: 'bob@globex.example', plan: 'free', age: 22, country: 'US', ltv: 120.5, first_name: 'Bob' } });
  add(shifted('2025-02-25T08:01:00Z'), { type: 'group', ...id, groupId: 'globex', traits: { name: 'Globex', plan: 'startup' } });
  for (const at of ['2025-03-06T10:00:00Z', '2025-03-08T10:00:00Z', '2025-03-09T11:00:00Z'])
    add(shifted(at), { type: 'page', ...id, name: 'Pricing', properties: { path: '/pricing' }, context: pageContext(PAGES[1]) });
  add(shifted('2025-03-09T12:00:00Z'), { type: 'track', ...id, event: 'Trial Started', properties: { plan: 'pro' } });
}

function cy() {
  add(shifted('2025-03-03T15:00:00Z'), { type: 'identify', userId: 'cy', anonymousId: 'anon-cy-1',
    traits: { email: 'cy@acme.example', age: 'unknown' } });
}

// Erin: two devices that become one person when she logs in on the second (a
// merge), consent given on the way; the person docs/privacy.md erases.
function erin() {
  const laptop = 'anon-erin-laptop', phone = 'anon-erin-phone';
  const consent = { consent: { categoryPreferences: { analytics: true, marketing: true } } };
  add(shifted('2025-03-02T19:00:00Z'), { type: 'page', anonymousId: laptop, name: 'Home', context: pageContext(PAGES[0], consent) });
  add(shifted('2025-03-02T19:02:00Z'), { type: 'track', anonymousId: laptop, event: 'Product Viewed',
    properties: { ...PRODUCTS[9], currency: 'EUR' }, context: consent });
  add(shifted('2025-03-02T19:10:00Z'), { type: 'identify', userId: 'erin', anonymousId: laptop, context: consent,
    traits: { email: 'erin@example.org', first_name: 'Erin', plan: 'free', country: 'IE', phone: '+353 85 123 4567' } });
  add(shifted('2025-03-06T07:30:00Z'), { type: 'page', anonymousId: phone, name: 'Sale', context: pageContext(PAGES[3], consent) });
  add(shifted('2025-03-06T07:31:00Z'), { type: 'track', anonymousId: phone, event: 'Product Added',
    properties: { ...PRODUCTS[9], quantity: 1, currency: 'EUR' }, context: consent });
  add(shifted('2025-03-06T07:35:00Z'), { type: 'identify', userId: 'erin', anonymousId: phone, context: consent,
    traits: { email: 'erin@example.org' } });
  add(shifted('2025-03-06T07:36:00Z'), { type: 'track', userId: 'erin', anonymousId: phone, event: 'Order Completed',
    properties: { order_id: 'o-erin-1', revenue: 220, currency: 'EUR', sku: 'J', products: [{ ...PRODUCTS[9], quantity: 1 }] },
    context: consent });
}

// ---------------------------------------------------------------------------
// Everyone else: a visit or a few, most anonymous at first; some browse
// products, add to cart and order; more than half sign up (identify with email
// and traits), a few on a second device too (two profiles merged), a few in a
// company account (group). Times avoid the last hour and days 27.5 to 41
// ago, so 30-day windows give the same answers for a day or so after loading.
// ---------------------------------------------------------------------------
const emails = new Set(['ada@acme.example', 'bob@globex.example', 'cy@acme.example', 'erin@example.org']);

function shopper(n) {
  const first = pick(FIRST), last = pick(LAST);
  let email = `${first}.${last}@${pick(DOMAINS)}`.toLowerCase();
  for (let k = 2; emails.has(email); k++) email = email.replace(/^([^@]*?)\d*@/, `$1${k}@`);
  emails.add(email);
  const userId = `u-${String(n).padStart(4, '0')}`;
  const devices = [`anon-${hex(12)}`];
  const identifies = chance(0.6);
  const secondDevice = identifies && chance(0.15);
  if (secondDevice) devices.push(`anon-${hex(12)}`);
  const account = identifies && chance(0.12) ? pick(Object.keys(ACCOUNTS)) : null;
  const consent = chance(0.7) ? { consent: { categoryPreferences: { analytics: true, marketing: chance(0.5) } } } : {};
  const traits = { email, first_name: first, last_name: last, country: pick(COUNTRIES), plan: pick(PLANS),
    age: int(18, 70), ...(chance(0.3) ? { phone: `+1 555 01${int(10, 99)} ${int(1000, 9999)}` } : {}) };

  // How long ago the first visit was: mostly within 4 weeks, a tail 41 to 60
  // days back; each later visit is closer to now. No visit starts 27.5 to 41
  // days back or in the last two hours (one ends within about an hour).
  const first_ago = chance(0.15) ? int(41, 60) * DAY : int(1, 26) * DAY + int(0, 23) * HOUR;
  const visits = int(1, 4);
  const knownOn = new Set();  // the devices she has signed up or logged in on
  for (let v = 0; v < visits; v++) {
    let ago = Math.floor(first_ago * (1 - v / visits)) + int(0, 59) * MINUTE;
    if (ago > 27.5 * DAY && ago < 41 * DAY) ago = 27 * DAY;
    if (ago < 2 * HOUR) ago = 2 * HOUR;
    let t = NOW - ago;
    const anonymousId = devices[secondDevice && v === visits - 1 && v > 0 ? 1 : 0];
    const who = () => (knownOn.has(anonymousId) ? { userId, anonymousId } : { anonymousId });
    const step = () => (t += int(1, 6) * MINUTE);
    const landing = pick(PAGES);
    add(t, { type: 'page', ...who(), name: landing.name, properties: { path: landing.path }, context: pageContext(landing, consent) });
    const viewed = [];
    for (let i = int(0, 3); i > 0; i--) {
      const p = pick(PRODUCTS);
      viewed.push(p);
      add(step(), { type: 'track', ...who(), event: 'Product Viewed', properties: { ...p, currency: 'EUR' }, context: consent });
    }
    // Signing up happens on the first visit that gets that far, and again on a second device.
    if (identifies && !knownOn.has(anonymousId) && chance(0.7)) {
      knownOn.add(anonymousId);
      add(step(), { type: 'identify', userId, anonymousId, traits, context: consent });
      if (account) add(step(), { type: 'group', userId, anonymousId, groupId: account, traits: ACCOUNTS[account], context: consent });
    }
    if (viewed.length && chance(0.45)) {
      const cart = viewed.slice(0, int(1, viewed.length));
      for (const p of cart)
        add(step(), { type: 'track', ...who(), event: 'Product Added', properties: { ...p, quantity: 1, currency: 'EUR' }, context: consent });
      if (chance(0.6)) {
        const revenue = cart.reduce((sum, p) => sum + p.price, 0);
        add(step(), { type: 'track', ...who(), event: 'Checkout Started', properties: { revenue, currency: 'EUR' }, context: consent });
        if (chance(0.75))
          add(step(), { type: 'track', ...who(), event: 'Order Completed', context: consent, properties: {
            order_id: `o-${n}-${v}`, revenue, currency: 'EUR', sku: cart[0].sku,
            products: cart.map((p) => ({ product_id: p.product_id, sku: p.sku, price: p.price, quantity: 1 })) } });
      }
    }
  }
}

ada();
bob();
cy();
erin();
for (let n = 1; n <= PEOPLE; n++) shopper(n);
// In time order, as the SDKs of all those visitors would have sent them.
messages.sort((a, b) => a.timestamp.localeCompare(b.timestamp) || a.order - b.order);
for (const m of messages) delete m.order;

if (PRINT) {
  // One write and no process.exit: exiting early would cut off a piped stdout.
  process.stdout.write(messages.map((m) => JSON.stringify(m)).join('\n') + '\n');
} else {
  await send();
}

async function send() {

const context = { library: { name: 'cdp-demo', version: '1' } };
const auth = `Basic ${Buffer.from(`${KEY}:`).toString('base64')}`;
let accepted = 0, duplicate = 0, rejected = 0;
for (let i = 0; i < messages.length; i += 250) {
  const batch = messages.slice(i, i + 250);
  let res;
  try {
    res = await fetch(`${URL_}/v1/batch`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: auth },
      body: JSON.stringify({ batch, context }),
    });
  } catch (e) {
    console.error(`demo: could not reach ${URL_}: ${e.cause?.message ?? e.message}`);
    process.exit(1);
  }
  const text = await res.text();
  if (res.status !== 200) {
    console.error(`demo: POST ${URL_}/v1/batch answered ${res.status}: ${text}`);
    process.exit(1);
  }
  const body = JSON.parse(text);
  accepted += body.accepted;
  duplicate += body.duplicate;
  rejected += body.rejected;
}
console.log(`demo: ${messages.length} messages (${PEOPLE + 4} people): ${accepted} accepted, ${duplicate} duplicate, ${rejected} rejected`);
if (rejected) process.exitCode = 1;
}
