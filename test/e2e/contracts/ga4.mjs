// Contract of GA4's Measurement Protocol, as Google documents it:
//   https://developers.google.com/analytics/devguides/collection/protocol/ga4/sending-events
//     (POST /mp/collect?measurement_id=&api_secret=, client_id, user_id, timestamp_micros, events;
//      "Limitations": 25 events a request, 25 parameters an event, names of 40 characters or fewer
//      that start with a letter and hold letters, digits and _, values of 100 characters or fewer,
//      a post body smaller than 130kB; events backdated up to 72 hours)
//   https://developers.google.com/analytics/devguides/collection/protocol/ga4/reference
//     (the body's fields; reserved event names, and the prefixes _, firebase_, ga_, google_, gtag.)
//   https://developers.google.com/analytics/devguides/collection/protocol/ga4/validating-events
//     (/debug/mp/collect answers {"validationMessages": [{fieldPath, description, validationCode}]})
//   https://support.google.com/analytics/answer/9267744 (Event collection limits: page_location
//     1000, page_referrer 420, page_title 300 characters)
//   https://developers.google.com/analytics/devguides/collection/ga4/reference/events (items[]:
//     item_id or item_name required)
// /mp/collect answers 204 with an empty body to everything, as GA4 does: what breaks the contract
// is recorded in state.violations (and its events are not accepted), never answered.
// /debug/mp/collect answers 200 with the problems it found, and accepts nothing.
// mode: {measurement_id, api_secret} the accepted ones (any non-empty ones when unset);
//       {status: 500} answer /mp/collect with that status instead (retry tests).
export const kind = 'ga4';

const RESERVED = new Set([
  'ad_activeview', 'ad_click', 'ad_exposure', 'ad_query', 'ad_reward', 'adunit_exposure', 'app_background',
  'app_clear_data', 'app_exception', 'app_remove', 'app_store_refund', 'app_store_subscription_cancel',
  'app_store_subscription_convert', 'app_store_subscription_renew', 'app_update', 'app_upgrade',
  'dynamic_link_app_open', 'dynamic_link_app_update', 'dynamic_link_first_open', 'error', 'first_open',
  'first_visit', 'in_app_purchase', 'notification_dismiss', 'notification_foreground', 'notification_open',
  'notification_receive', 'os_update', 'session_start', 'session_start_with_rollout', 'user_engagement',
]);
const PREFIXES = ['_', 'firebase_', 'ga_', 'google_', 'gtag.'];
const NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const LONGER = { page_location: 1000, page_referrer: 420, page_title: 300 };
const MAX_AGE_MICROS = 72 * 3600 * 1e6;
const chars = (s) => [...s].length;

// Problems with a name, as validation messages.
function nameProblems(name, path, what) {
  if (typeof name !== 'string') return [[path, `${what} must be a string`, 'VALUE_INVALID']];
  const prefix = PREFIXES.find((p) => name.startsWith(p));
  if (prefix) return [[path, `${what} [${name}] uses the reserved prefix [${prefix}]`, 'NAME_RESERVED']];
  if (!NAME.test(name)) return [[path, `${what} [${name}] must start with a letter and hold letters, digits and _`, 'NAME_INVALID']];
  if (name.length > 40) return [[path, `${what} [${name}] is over 40 characters`, 'VALUE_OUT_OF_BOUNDS']];
  return [];
}

function valueProblems(value, path, max) {
  if (typeof value === 'string')
    return chars(value) > max ? [[path, `value is ${chars(value)} characters, over ${max}`, 'VALUE_OUT_OF_BOUNDS']] : [];
  if (typeof value === 'number' && Number.isFinite(value)) return [];
  return [[path, `a parameter value must be a string or a number, not ${JSON.stringify(value)}`, 'VALUE_INVALID']];
}

function itemsProblems(items, path) {
  if (!Array.isArray(items)) return [[path, 'items must be an array', 'VALUE_INVALID']];
  const out = [];
  items.forEach((item, i) => {
    const at = `${path}[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return out.push([at, 'an item must be an object', 'VALUE_INVALID']);
    if (item.item_id === undefined && item.item_name === undefined) out.push([at, 'an item needs item_id or item_name', 'VALUE_REQUIRED']);
    for (const [k, v] of Object.entries(item)) out.push(...nameProblems(k, `${at}.${k}`, 'item parameter'), ...valueProblems(v, `${at}.${k}`, 100));
  });
  return out;
}

function eventProblems(e, i, now, requestMicros) {
  const at = `events[${i}]`;
  if (typeof e !== 'object' || e === null) return [[at, 'an event must be an object', 'VALUE_INVALID']];
  const out = nameProblems(e.name, `${at}.name`, 'event name');
  if (RESERVED.has(e.name)) out.push([`${at}.name`, `event name [${e.name}] is reserved`, 'NAME_RESERVED']);
  const params = e.params ?? {};
  if (typeof params !== 'object' || Array.isArray(params)) return [...out, [`${at}.params`, 'params must be an object', 'VALUE_INVALID']];
  const keys = Object.keys(params);
  if (keys.length > 25) out.push([`${at}.params`, `${keys.length} parameters, over 25`, 'EXCEEDED_MAX_ENTITIES']);
  for (const k of keys) {
    const p = `${at}.params.${k}`;
    out.push(...nameProblems(k, p, 'parameter name'));
    out.push(...(k === 'items' ? itemsProblems(params[k], p) : valueProblems(params[k], p, LONGER[k] ?? 100)));
  }
  const micros = e.timestamp_micros ?? requestMicros;
  if (micros !== undefined && now * 1000 - Number(micros) > MAX_AGE_MICROS)
    out.push([`${at}.timestamp_micros`, 'the event is more than 72 hours old', 'VALUE_OUT_OF_BOUNDS']);
  return out;
}

// Problems of the whole request: [fieldPath, description, validationCode] each.
function requestProblems(req, state) {
  const q = req.query, out = [];
  for (const key of ['measurement_id', 'api_secret']) {
    const v = q.get(key);
    if (!v) out.push([key, `the query has no ${key}`, 'VALUE_REQUIRED']);
    else if (state.mode[key] && v !== state.mode[key]) out.push([key, `${key} [${v}] is not the stream's`, 'VALUE_INVALID']);
  }
  if (req.raw.length >= 130000) out.push(['', `the body is ${req.raw.length} bytes, not smaller than 130kB`, 'VALUE_OUT_OF_BOUNDS']);
  const b = req.json;
  if (typeof b !== 'object' || b === null || Array.isArray(b)) return [...out, ['', 'the body must be a JSON object', 'VALUE_INVALID']];
  if (typeof b.client_id !== 'string' || b.client_id === '') out.push(['client_id', 'client_id is required (a string)', 'VALUE_REQUIRED']);
  if (b.user_id !== undefined && (typeof b.user_id !== 'string' || chars(b.user_id) > 256))
    out.push(['user_id', 'user_id must be a string of at most 256 characters', 'VALUE_INVALID']);
  if (b.timestamp_micros !== undefined && !Number.isInteger(Number(b.timestamp_micros)))
    out.push(['timestamp_micros', 'timestamp_micros must be an integer', 'VALUE_INVALID']);
  if (!Array.isArray(b.events) || b.events.length === 0) out.push(['events', 'events must hold 1 to 25 events', 'VALUE_REQUIRED']);
  else if (b.events.length > 25) out.push(['events', `${b.events.length} events, over 25`, 'EXCEEDED_MAX_ENTITIES']);
  return out;
}

const message = ([fieldPath, description, validationCode]) => ({ fieldPath, description, validationCode });

export function handle(req, state) {
  const debug = req.path === '/debug/mp/collect';
  if (req.method !== 'POST' || !(debug || req.path === '/mp/collect')) {
    state.violations.push(`${req.method} ${req.path}: only POST /mp/collect and /debug/mp/collect`);
    return { status: 404, body: '' };
  }
  if (!debug && state.mode.status) return { status: state.mode.status, body: '' };
  const problems = requestProblems(req, state);
  const events = Array.isArray(req.json?.events) ? req.json.events : [];
  const perEvent = events.map((e, i) => eventProblems(e, i, Date.now(), req.json.timestamp_micros));
  if (debug) return { status: 200, body: { validationMessages: [...problems, ...perEvent.flat()].map(message) }, items: events.length };
  for (const [field, why] of [...problems, ...perEvent.flat()]) state.violations.push(`/mp/collect ${field}: ${why}`);
  // What a valid request's valid events were sent with, as one object each.
  if (problems.length === 0)
    events.forEach((e, i) => {
      const { client_id, user_id, timestamp_micros } = req.json;
      if (!perEvent[i].length) state.accepted.push({ client_id, user_id, timestamp_micros, ...e });
    });
  return { status: 204, body: '', items: events.length };
}
