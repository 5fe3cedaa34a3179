// Contract of Braze's REST API POST /users/track, as Braze documents it:
//   https://www.braze.com/docs/api/endpoints/user_data/post_user_track/
//   https://www.braze.com/docs/api/objects_filters/user_attributes_object/
//   https://www.braze.com/docs/api/objects_filters/event_object/
//   https://www.braze.com/docs/api/objects_filters/purchase_object/
//   https://www.braze.com/docs/api/objects_filters/user_alias_object/
//   https://www.braze.com/docs/api/api_limits/ (3,000 requests per 3 s; 75 per array; X-RateLimit-* headers)
//   https://www.braze.com/docs/api/endpoints/user_data/ (4 MB a request, 413 above)
//   https://www.braze.com/docs/api/errors/ (401 unknown key, 429 rate limited, 5xx)
// A Bearer REST API key; a JSON body {"attributes", "events", "purchases"},
// at least one non-empty, each at most 75 objects (400 "Max Input Length
// Exceeded" above: a violation); every object names its user by exactly one of
// external_id, braze_id, user_alias {alias_name, alias_label} (or else by
// email or phone); events need a name and an ISO-8601 time, purchases a
// product_id, a 3-letter currency, a numeric price, a time and a quantity of
// 1-100; property and attribute names are non-empty, at most 255 characters,
// without a leading $ (and events' properties without time and event_name).
// A bad object is a violation, and listed in the "errors" of a 201 with its
// input_array and index: Braze processes the rest.
// mode: {api_key: "..."} the key it accepts (any non-empty one when unset);
//       {fail_name: "X"} events named X are non-fatal errors (not violations);
//       {fatal_name: "X"} a request with an event named X is refused whole (400);
//       {rate_limited: n} the next n requests answer 429 (reset: now + 2 s);
//       {status: 500} every request answers that status.
// state, besides the harness's: arrays {attributes, events, purchases} (the
// objects taken, by array), batches [{attributes, events, purchases}] (the
// sizes of each request), limited {reset_ms, early, first_after_ms}.
export const kind = 'braze';

const ARRAYS = ['attributes', 'events', 'purchases'];
const MAX_PER_ARRAY = 75;
const MAX_BYTES = 4 * 1024 * 1024;
const ISO = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;
const CONTROL = new Set(['_update_existing_only', 'push_token_import']);
const GENDERS = new Set(['M', 'F', 'O', 'N', 'P']);

const isTime = (t) => typeof t === 'string' && ISO.test(t) && !Number.isNaN(Date.parse(t));
const isObject = (o) => o !== null && typeof o === 'object' && !Array.isArray(o);

// Every response carries Braze's rate-limit headers.
function limitHeaders(remaining, resetSeconds) {
  return {
    'X-RateLimit-Limit': '3000',
    'X-RateLimit-Remaining': String(remaining),
    'X-RateLimit-Reset': String(resetSeconds),
  };
}

// The rule an object's identifiers break, or null.
function identity(o) {
  const ids = ['external_id', 'braze_id', 'user_alias'].filter((k) => k in o);
  if (ids.length > 1) return `has ${ids.join(' and ')}: exactly one identifier`;
  if (ids.length === 0) {
    if (typeof o.email === 'string' || typeof o.phone === 'string') return null;
    return "'external_id' or 'braze_id' or 'user_alias' or 'email' or 'phone' is required";
  }
  if ('external_id' in o && (typeof o.external_id !== 'string' || !o.external_id)) return "'external_id' must be a non-empty string";
  if ('braze_id' in o && (typeof o.braze_id !== 'string' || !o.braze_id)) return "'braze_id' must be a non-empty string";
  if ('user_alias' in o) {
    const a = o.user_alias;
    if (!isObject(a) || typeof a.alias_name !== 'string' || !a.alias_name || typeof a.alias_label !== 'string' || !a.alias_label)
      return "'user_alias' must have a string 'alias_name' and 'alias_label'";
  }
  if ('_update_existing_only' in o && typeof o._update_existing_only !== 'boolean') return "'_update_existing_only' must be a boolean";
  return null;
}

function nameRule(key, reserved) {
  if (!key) return 'names must not be empty';
  if (key.length > 255) return `'${key.slice(0, 20)}...' is longer than 255 characters`;
  if (key.startsWith('$')) return `'${key}': names must not start with $`;
  if (reserved.has(key)) return `'${key}' is a reserved key`;
  return null;
}

function properties(p, reserved) {
  if (p === undefined) return null;
  if (!isObject(p)) return "'properties' must be an object";
  for (const k of Object.keys(p)) {
    const why = nameRule(k, reserved);
    if (why) return `properties ${why}`;
  }
  return null;
}

const EVENT_RESERVED = new Set(['time', 'event_name']);
const NONE = new Set();

function checkEvent(e) {
  if (typeof e.name !== 'string' || !e.name) return "'name' must be a non-empty string";
  if (!isTime(e.time)) return "'time' must be an ISO-8601 datetime string";
  if ('app_id' in e && typeof e.app_id !== 'string') return "'app_id' must be a string";
  return properties(e.properties, EVENT_RESERVED);
}

function checkPurchase(p) {
  if (typeof p.product_id !== 'string' || !p.product_id || p.product_id.length > 255)
    return "'product_id' must be a string of 1 to 255 characters";
  if (typeof p.currency !== 'string' || !/^[A-Za-z]{3}$/.test(p.currency)) return "'currency' must be a 3-letter ISO 4217 code";
  if (typeof p.price !== 'number' || !Number.isFinite(p.price)) return "'price' must be a number";
  if (!isTime(p.time)) return "'time' must be an ISO-8601 datetime string";
  if ('quantity' in p && (!Number.isInteger(p.quantity) || p.quantity < 1 || p.quantity > 100))
    return "'quantity' must be an integer from 1 to 100";
  if ('app_id' in p && typeof p.app_id !== 'string') return "'app_id' must be a string";
  return properties(p.properties, NONE);
}

function checkAttributes(a) {
  for (const k of Object.keys(a)) {
    if (CONTROL.has(k)) continue;
    const why = nameRule(k, NONE);
    if (why) return `attribute ${why}`;
  }
  if ('dob' in a && a.dob !== null && !(typeof a.dob === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(a.dob)))
    return "'dob' must be a YYYY-MM-DD string";
  if ('gender' in a && a.gender !== null && !GENDERS.has(a.gender)) return "'gender' must be one of M, F, O, N, P";
  for (const k of ['email', 'first_name', 'last_name', 'phone', 'country', 'home_city', 'language', 'time_zone'])
    if (k in a && a[k] !== null && typeof a[k] !== 'string') return `'${k}' must be a string`;
  return null;
}

const CHECKS = { attributes: checkAttributes, events: checkEvent, purchases: checkPurchase };

export function handle(req, state) {
  state.arrays ??= { attributes: [], events: [], purchases: [] };
  state.batches ??= [];
  const nowMs = Date.now();
  const windowReset = Math.ceil(nowMs / 3000) * 3;  // the 3-second window's end, in Unix seconds
  const headers = limitHeaders(2999, windowReset);
  const answer = (status, body, items) => ({ status, headers, body, items });
  const v = (why, status = 400) => (state.violations.push(why), answer(status, { message: why, errors: [why] }));

  if (req.method !== 'POST' || req.path !== '/users/track') return v(`${req.method} ${req.path}: only POST /users/track`, 404);
  const auth = req.headers.authorization ?? '';
  if (!auth.startsWith('Bearer ') || !auth.slice(7)) return v('no Authorization: Bearer <REST API key>', 401);
  const key = auth.slice(7);
  if (state.mode.api_key && key !== state.mode.api_key) return answer(401, { message: `Invalid API key: ${key}` });
  if (!(req.headers['content-type'] ?? '').startsWith('application/json')) return v('Content-Type must be application/json');
  if (req.raw.length > MAX_BYTES) return v(`body of ${req.raw.length} bytes is over 4 MB`, 413);

  if (state.mode.status) return answer(state.mode.status, { message: 'Internal Server Error' });
  if (state.mode.rate_limited > 0) {
    state.mode.rate_limited -= 1;
    const reset = Math.ceil(nowMs / 1000) + 2;
    state.limited = { reset_ms: reset * 1000, early: 0, first_after_ms: null };
    return { status: 429, headers: limitHeaders(0, reset), body: { message: 'Rate Limited' } };
  }
  if (state.limited) {
    // Sent again before the reset the 429 named: Braze would refuse it too.
    if (nowMs < state.limited.reset_ms) {
      state.limited.early += 1;
      return { status: 429, headers: limitHeaders(0, state.limited.reset_ms / 1000), body: { message: 'Rate Limited' } };
    }
    state.limited.first_after_ms ??= nowMs;
  }

  const body = req.json;
  if (!isObject(body)) return v('body must be a JSON object {"attributes", "events", "purchases"}');
  for (const k of Object.keys(body)) if (!ARRAYS.includes(k) && k !== 'partner') return v(`unknown top-level key ${k}`);
  let total = 0;
  for (const a of ARRAYS) {
    if (!(a in body)) continue;
    if (!Array.isArray(body[a])) return v(`'${a}' must be an array`);
    if (body[a].length > MAX_PER_ARRAY) return v(`Max Input Length Exceeded: ${body[a].length} ${a} (at most ${MAX_PER_ARRAY})`);
    total += body[a].length;
  }
  if (total === 0) return v('no attributes, events or purchases: at least one non-empty array');
  state.batches.push(Object.fromEntries(ARRAYS.map((a) => [a, body[a]?.length ?? 0])));

  if (state.mode.fatal_name) {
    const i = (body.events ?? []).findIndex((e) => e?.name === state.mode.fatal_name);
    if (i >= 0)
      return answer(400, { message: 'Invalid input', errors: [{ type: `'name' ${state.mode.fatal_name} is not allowed`, input_array: 'events', index: i }] });
  }

  const errors = [];
  const processed = {};
  for (const a of ARRAYS) {
    if (!(a in body)) continue;
    processed[a] = 0;
    body[a].forEach((o, index) => {
      const why = !isObject(o) ? 'must be an object' : identity(o) ?? CHECKS[a](o);
      if (why) {
        state.violations.push(`${a}[${index}]: ${why}`);
        errors.push({ type: why, input_array: a, index });
        return;
      }
      if (a === 'events' && state.mode.fail_name && o.name === state.mode.fail_name) {
        errors.push({ type: "'name' must be a string", input_array: a, index });
        return;
      }
      processed[a] += 1;
      state.accepted.push(o);
      state.arrays[a].push(o);
    });
  }
  const out = { message: 'success' };
  for (const a of ARRAYS) if (a in processed) out[`${a}_processed`] = processed[a];
  if (errors.length) out.errors = errors;
  return answer(201, out, total);
}
