// Contract of Amplitude's HTTP V2 API, POST /2/httpapi, as Amplitude documents it:
//   https://amplitude.com/docs/apis/analytics/http-v2
//   https://amplitude.com/docs/apis/analytics/http-api-batching-retries
//   https://amplitude.com/docs/faq/api-choice (throttling: 30 events/s a user or device, wait 30 s)
// Content-Type application/json; a JSON body {"api_key", "events": [...],
// "options"?: {"min_id_length": n}} under 1 MB with 1 to 2000 events (413
// beyond). Each event: "event_type" a non-empty string; a "user_id" or a
// "device_id", strings of at least min_id_length (default 5) characters,
// the device_id not all zeros; "time" an integer (Unix milliseconds) and
// "insert_id" a string when present; event_properties and user_properties
// objects when present. One invalid event refuses the WHOLE request, nothing
// ingested: 400 {"code": 400, "error", "missing_field"?,
// "events_with_invalid_fields": {field: [indexes]}, "events_with_missing_fields":
// {...}, "events_with_invalid_id_lengths": {...}, "silenced_events": [...]}.
// A bad api_key is a 400 too. Throttling is a 429 naming the users and
// devices over the limit and the events of theirs, nothing ingested.
// mode: {api_key: "..."} the key it accepts (any non-empty one when unset);
// {throttle_users: ["u-..."]} a request holding an event of those users is
// throttled (429 with throttled_users and throttled_events); {reject_event:
// "X"} events of that event_type are invalid (listed under
// events_with_invalid_fields.event_type: the partial-failure test, not the
// sender's fault); {status: 500} answers that status to every request.
export const kind = 'amplitude';

const MAX_BODY = 1000 * 1000;  // "under 1 MB", in the smaller reading of MB
const EPS = 30;
const ZEROS = '00000000-0000-0000-0000-000000000000';

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// Adds index i under lists[list][field].
function note(lists, list, field, i) {
  ((lists[list] ??= {})[field] ??= []).push(i);
}

function check(ev, i, minId, lists) {
  if (!isObject(ev)) return note(lists, 'events_with_invalid_fields', 'event', i);
  if (typeof ev.event_type !== 'string' || ev.event_type === '')
    note(lists, 'events_with_missing_fields', 'event_type', i);
  const user = ev.user_id, device = ev.device_id;
  if (user == null && device == null) note(lists, 'events_with_missing_fields', 'device_id', i);
  for (const [field, id] of [['user_id', user], ['device_id', device]]) {
    if (id == null) continue;
    if (typeof id !== 'string') note(lists, 'events_with_invalid_fields', field, i);
    else if ([...id].length < minId) note(lists, 'events_with_invalid_id_lengths', field, i);
  }
  if (device === ZEROS) note(lists, 'events_with_invalid_fields', 'device_id', i);
  if (ev.time !== undefined && !Number.isInteger(ev.time)) note(lists, 'events_with_invalid_fields', 'time', i);
  if (ev.insert_id !== undefined && typeof ev.insert_id !== 'string') note(lists, 'events_with_invalid_fields', 'insert_id', i);
  for (const f of ['event_properties', 'user_properties'])
    if (ev[f] !== undefined && !isObject(ev[f])) note(lists, 'events_with_invalid_fields', f, i);
}

export function handle(req, state) {
  const m = state.mode;
  const v = (why, status = 400, body = { code: 400, error: why }) => (state.violations.push(why), { status, body });
  if (req.method !== 'POST' || req.path !== '/2/httpapi') return v(`${req.method} ${req.path}: only POST /2/httpapi`, 404, { code: 404, error: 'Not Found' });
  if (!/^application\/json\b/.test(req.headers['content-type'] ?? ''))
    return v(`Content-Type ${req.headers['content-type']}: must be application/json`);
  if (req.raw.length >= MAX_BODY)
    return v(`body of ${req.raw.length} bytes is not under 1 MB`, 413, { code: 413, error: 'Payload too large' });
  const body = req.json;
  if (!isObject(body)) return v('body must be a JSON object');
  if (typeof body.api_key !== 'string' || body.api_key === '')
    return v('no api_key', 400, { code: 400, error: 'Request missing required field', missing_field: 'api_key' });
  if (m.api_key && body.api_key !== m.api_key) return { status: 400, body: { code: 400, error: `Invalid API key: ${body.api_key}` } };
  if (!Array.isArray(body.events) || body.events.length === 0)
    return v('no events', 400, { code: 400, error: 'Request missing required field', missing_field: 'events' });
  const items = body.events.length;
  if (items > 2000) return { ...v(`${items} events: at most 2000 a request`, 413, { code: 413, error: 'Payload too large' }), items };
  let minId = 5;
  if (body.options !== undefined) {
    if (!isObject(body.options)) return { ...v('options must be an object'), items };
    if (body.options.min_id_length !== undefined) {
      if (!Number.isInteger(body.options.min_id_length) || body.options.min_id_length < 0)
        return { ...v('options.min_id_length must be a whole number'), items };
      minId = body.options.min_id_length;
    }
  }
  if (m.status) return { status: m.status, body: { code: m.status, error: 'Internal Server Error' }, items };
  const lists = {};
  body.events.forEach((ev, i) => check(ev, i, minId, lists));
  if (Object.keys(lists).length) state.violations.push(`events the API refuses: ${JSON.stringify(lists)}`);
  body.events.forEach((ev, i) => {
    if (m.reject_event && ev?.event_type === m.reject_event) note(lists, 'events_with_invalid_fields', 'event_type', i);
  });
  if (Object.keys(lists).length) {
    const missing = lists.events_with_missing_fields && !lists.events_with_invalid_fields && !lists.events_with_invalid_id_lengths;
    const error = lists.events_with_invalid_id_lengths && Object.keys(lists).length === 1
      ? 'Invalid id length for user_id or device_id'
      : missing ? 'Request missing required field' : 'Invalid field values on some events';
    return { status: 400, body: { code: 400, error, ...lists }, items };
  }
  const throttled = new Set(m.throttle_users ?? []);
  const hot = body.events.flatMap((ev, i) => (throttled.has(ev.user_id) ? [i] : []));
  if (hot.length) {
    const users = Object.fromEntries(hot.map((i) => [body.events[i].user_id, EPS + 15]));
    return {
      status: 429,
      body: { code: 429, error: 'Too many requests for some devices and users', eps_threshold: EPS,
        throttled_devices: {}, throttled_users: users, throttled_events: hot,
        exceeded_daily_quota_users: {}, exceeded_daily_quota_devices: {} },
      items,
    };
  }
  state.accepted.push(...body.events);
  return {
    status: 200,
    body: { code: 200, events_ingested: items, payload_size_bytes: req.raw.length, server_upload_time: Date.now() },
    items,
  };
}
