// Contract of Meta's Conversions API, POST /<version>/<pixel_id>/events, as Meta documents it:
//   https://developers.facebook.com/docs/marketing-api/conversions-api/using-the-api
//     (the path, access_token, up to 1,000 events in data; an event_time over 7 days old fails
//      the entire request and no event is processed; test_event_code)
//   https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event
//     (event_name, event_time in Unix seconds, user_data, custom_data, event_source_url,
//      event_id, action_source and its values)
//   https://developers.facebook.com/docs/marketing-api/conversions-api/parameters
//     (website events require client_user_agent, action_source and event_source_url)
//   https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters
//     (at least one customer parameter; em, ph, fn, ln, ... must be SHA-256 hashes)
//   https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/custom-data
//     (value and currency are required for Purchase events)
//   https://developers.facebook.com/docs/graph-api/guides/error-handling
//     (the error object; 190 invalid token; 4, 17, 32, 613 rate limits)
// Meta takes a request whole or refuses it whole: 200 {"events_received": n, "messages": [],
// "fbtrace_id"}, or 400 {"error": {message, type, code, error_subcode, error_user_title,
// error_user_msg, fbtrace_id}} for the first problem found, and then no event is taken.
// Stricter than Meta on one point: event_id must be present (cdp always sends the messageId,
// which deduplicates against the pixel). Future times are refused past 1 minute (Meta does not
// publish its tolerance or the error for it; this sink answers code 100 without a subcode).
// mode: {access_token: "..."} the accepted token (any non-empty one when unset; another gets 190);
//       {fail_event_name: "X"} refuse any request holding an event named X (the split test);
//       {status: 500} answer that status; {error_code: 17} answer 400 with that Graph code.
export const kind = 'meta_capi';

const SOURCES = new Set(['email', 'website', 'app', 'phone_call', 'chat', 'physical_store', 'system_generated',
  'business_messaging', 'other']);
const HASHED = ['em', 'ph', 'fn', 'ln', 'db', 'ge', 'ct', 'st', 'zp', 'country', 'external_id'];
const CUSTOMER = new Set([...HASHED, 'client_ip_address', 'client_user_agent', 'fbc', 'fbp', 'subscription_id',
  'fb_login_id', 'lead_id', 'anon_id', 'madid', 'page_id', 'page_scoped_user_id', 'ctwa_clid', 'ig_account_id',
  'ig_sid']);
const SHA256 = /^[0-9a-f]{64}$/;
let traces = 0;

function error(status, code, fields = {}) {
  const e = { message: 'Invalid parameter', type: 'OAuthException', code, ...fields, fbtrace_id: `Atrace${++traces}` };
  return { status, body: { error: e } };
}
const invalid = (title, msg, subcode) =>
  error(400, 100, { ...(subcode ? { error_subcode: subcode } : {}), is_transient: false, error_user_title: title, error_user_msg: msg });

// The first problem of data[i], as Meta's answer; undefined when there is none.
function eventProblem(e, i, nowSeconds) {
  const at = `data[${i}]`;
  if (typeof e !== 'object' || e === null) return invalid('Invalid Event', `${at} must be an object`);
  if (typeof e.event_name !== 'string' || e.event_name === '') return invalid('Missing Event Name', `${at}.event_name is required`);
  if (!Number.isInteger(e.event_time)) return invalid('Invalid Event Time', `${at}.event_time must be Unix seconds (an integer)`);
  if (nowSeconds - e.event_time > 7 * 86400)
    return invalid('Event Timestamp Too Old', 'The timestamp for this event is too far in the past. Events need to be sent ' +
      'from your server within 7 days of when they occurred. Enter a timestamp that has occurred within the last 7 days.', 2804003);
  if (e.event_time - nowSeconds > 60) return invalid('Event Timestamp In The Future', `${at}.event_time is in the future`);
  if (!SOURCES.has(e.action_source)) return invalid('Invalid Action Source', `${at}.action_source ${e.action_source} is not one Meta knows`);
  if (typeof e.event_id !== 'string' || e.event_id === '') return invalid('Missing Event ID', `${at}.event_id is required (deduplication)`);
  const u = e.user_data;
  if (typeof u !== 'object' || u === null || Array.isArray(u)) return invalid('Missing User Data', `${at}.user_data is required`);
  if (!Object.keys(u).some((k) => CUSTOMER.has(k)))
    return invalid('Missing Customer Information Parameters', `${at}.user_data has no customer information parameter`);
  for (const k of HASHED) {
    if (u[k] === undefined) continue;
    const values = Array.isArray(u[k]) ? u[k] : [u[k]];
    if (!values.every((v) => typeof v === 'string' && SHA256.test(v)))
      return invalid('Unhashed Customer Information', `${at}.user_data.${k} must be lower-case hex SHA-256 hashes`);
  }
  if (e.action_source === 'website') {
    if (typeof u.client_user_agent !== 'string' || !u.client_user_agent)
      return invalid('Missing client_user_agent', `${at}: website events require user_data.client_user_agent`);
    if (typeof e.event_source_url !== 'string' || !e.event_source_url)
      return invalid('Missing event_source_url', `${at}: website events require event_source_url`);
  }
  const c = e.custom_data ?? {};
  if (typeof c !== 'object' || Array.isArray(c)) return invalid('Invalid Custom Data', `${at}.custom_data must be an object`);
  if (c.value !== undefined && typeof c.value !== 'number') return invalid('Invalid Value', `${at}.custom_data.value must be a number`);
  if (e.event_name === 'Purchase' && (c.value === undefined || typeof c.currency !== 'string'))
    return invalid('Missing Value or Currency', `${at}: Purchase events require custom_data.value and custom_data.currency`);
  return undefined;
}

// Every answer counts the events of the request it answers.
export function handle(req, state) {
  const out = answer(req, state);
  if (out.items === undefined && Array.isArray(req.json?.data)) out.items = req.json.data.length;
  return out;
}

function answer(req, state) {
  const v = (why, answer) => (state.violations.push(why), answer);
  if (req.method !== 'POST' || !/^\/v\d+\.\d+\/\d+\/events$/.test(req.path))
    return v(`${req.method} ${req.path}: only POST /vNN.N/<pixel_id>/events`,
      error(400, 2500, { message: `Unknown path components: ${req.path}` }));
  const b = req.json;
  if (typeof b !== 'object' || b === null || Array.isArray(b)) return v('the body is not a JSON object', invalid('Invalid Body', 'not JSON'));
  const token = b.access_token ?? req.query.get('access_token');
  if (!token) return v('no access_token', error(400, 104, { message: 'An access token is required to request this resource.' }));
  if (state.mode.access_token && token !== state.mode.access_token)
    return error(400, 190, { message: 'Invalid OAuth access token - Cannot parse access token' });
  if (state.mode.status)
    return { status: state.mode.status, body: { error: { message: 'An unexpected error has occurred. Please retry your request later.', type: 'OAuthException', is_transient: true, code: 2, fbtrace_id: 'Aoutage' } } };
  if (state.mode.error_code) return error(400, state.mode.error_code, { message: 'User request limit reached', is_transient: false });
  const data = b.data;
  if (!Array.isArray(data) || data.length === 0 || data.length > 1000)
    return v(`data must hold 1 to 1000 events, not ${Array.isArray(data) ? data.length : typeof data}`,
      invalid('Invalid Data', 'data must be an array of 1 to 1000 events'));
  if (b.test_event_code !== undefined && typeof b.test_event_code !== 'string') return v('test_event_code is not a string', invalid('Invalid test_event_code', ''));
  if (state.mode.fail_event_name && data.some((e) => e?.event_name === state.mode.fail_event_name))
    return invalid('Invalid Parameter', `an event named ${state.mode.fail_event_name} is refused`);
  const now = Math.floor(Date.now() / 1000);
  for (const [i, e] of data.entries()) {
    const problem = eventProblem(e, i, now);
    if (problem) return v(`data[${i}]: ${problem.body.error.error_user_title}: ${problem.body.error.error_user_msg}`, problem);
  }
  state.accepted.push(...data.map((e) => (b.test_event_code ? { ...e, test_event_code: b.test_event_code } : e)));
  return { status: 200, body: { events_received: data.length, messages: [], fbtrace_id: `Atrace${++traces}` }, items: data.length };
}
