// Contract of Mixpanel's Import API, POST /import, as Mixpanel documents it:
//   https://developer.mixpanel.com/reference/import-events
//   https://docs.mixpanel.com/troubleshooting/errors/400-bad-request
//   https://docs.mixpanel.com/troubleshooting/errors/413-payload-too-large
//   https://docs.mixpanel.com/troubleshooting/errors/429-rate-limit-exceeded
//   https://docs.mixpanel.com/troubleshooting/errors/server-side-events-without-a-user
// Query strict=1 and project_id (a service account's project); Basic auth
// with the service account's username and secret; Content-Type
// application/json; a JSON array of 1 to 2000 records, at most 10 MB
// uncompressed (413 beyond). Each record: "event" a non-empty string (at
// most 255 characters), "properties" an object of fewer than 255 members
// with "time" (an integer, seconds or milliseconds, not before 1971-01-01
// nor more than an hour ahead), "distinct_id" (a string, not a placeholder
// such as "null") and "$insert_id" (at most 36 of [A-Za-z0-9-]); each
// record under 1 MB. With strict=1 the valid records are imported and the
// invalid ones listed: 400 {"code": 400, "error": "some data points in the
// request failed validation", "failed_records": [{"index", "insert_id",
// "field", "message"}], "num_records_imported", "status": "Bad Request"}.
// mode: {username, secret, project_id} the credentials it accepts (any
// non-empty ones when unset); {reject_event: "X"} records named X fail
// validation (a per-record failure that is not the sender's fault);
// {status: 500} answers that status to every request.
export const kind = 'mixpanel';

const MB = 1000 * 1000;
const PLACEHOLDERS = new Set(['00000000-0000-0000-0000-000000000000', '<nil>', '[]', '{}', 'anon', 'anonymous',
  'false', 'lmy47d', 'n/a', 'na', 'nil', 'none', 'null', 'true', 'undefined', 'unknown']);
const T1971 = Date.UTC(1971, 0, 1);

// Why Mixpanel refuses one record ({field, message}), or null.
function invalid(rec, now) {
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) return { field: '', message: 'record must be an object' };
  if (typeof rec.event !== 'string' || rec.event === '') return { field: 'event', message: "'event' must be a non-empty string" };
  if ([...rec.event].length > 255) return { field: 'event', message: "'event' is longer than 255 characters" };
  const p = rec.properties;
  if (p === null || typeof p !== 'object' || Array.isArray(p)) return { field: 'properties', message: "'properties' must be an object" };
  if (Object.keys(p).length >= 255) return { field: 'properties', message: 'an event must have fewer than 255 properties' };
  if (Buffer.byteLength(JSON.stringify(rec)) >= MB) return { field: '', message: 'event is over 1MB of uncompressed JSON' };
  if (!Number.isInteger(p.time)) return { field: 'properties.time', message: "'properties.time' is invalid: must be specified as seconds since epoch" };
  const ms = p.time < 1e11 ? p.time * 1000 : p.time;
  if (ms < T1971) return { field: 'properties.time', message: "'properties.time' is invalid: must be after 1971-01-01" };
  if (ms > now + 3600 * 1000) return { field: 'properties.time', message: "'properties.time' is invalid: must not be more than 1 hour in the future" };
  if (typeof p.distinct_id !== 'string') return { field: 'properties.distinct_id', message: "'properties.distinct_id' must be a string" };
  if (PLACEHOLDERS.has(p.distinct_id.toLowerCase())) return { field: 'properties.distinct_id', message: `'properties.distinct_id' is invalid: ${p.distinct_id} is not allowed` };
  const id = p.$insert_id;
  if (typeof id !== 'string' || !/^[A-Za-z0-9-]{1,36}$/.test(id) || PLACEHOLDERS.has(id.toLowerCase()))
    return { field: 'properties.$insert_id', message: "'properties.$insert_id' is invalid: must be at most 36 characters of [A-Za-z0-9-]" };
  return null;
}

export function handle(req, state) {
  const bad = (why) => (state.violations.push(why), { status: 400, body: { code: 400, error: why, status: 'Bad Request' } });
  if (req.method !== 'POST' || req.path !== '/import') return bad(`${req.method} ${req.path}: only POST /import`);
  if (req.query.get('strict') !== '1') return bad(`strict=${req.query.get('strict')}: the query must have strict=1`);
  const project = req.query.get('project_id') ?? '';
  if (!/^[0-9]+$/.test(project)) return bad(`project_id=${project}: a service account needs the project_id query parameter`);
  const auth = req.headers.authorization ?? '';
  const unauthorized = (why) => (state.violations.push(why), { status: 401, body: { code: 401, error: why, status: 'Unauthorized' } });
  if (!auth.startsWith('Basic ')) return unauthorized('no Basic auth');
  const creds = Buffer.from(auth.slice(6), 'base64').toString();
  const colon = creds.indexOf(':');
  const [user, secret] = colon < 0 ? [creds, ''] : [creds.slice(0, colon), creds.slice(colon + 1)];
  const m = state.mode;
  if (!user || !secret || (m.username && user !== m.username) || (m.secret && secret !== m.secret) ||
      (m.project_id && project !== m.project_id))
    return { status: 401, body: { code: 401, error: 'Invalid credentials', status: 'Unauthorized' } };
  if (m.status) return { status: m.status, body: { code: m.status, error: 'Internal Server Error', status: 'Error' } };
  if (!/^application\/(json|x-ndjson)\b/.test(req.headers['content-type'] ?? ''))
    return bad(`Content-Type ${req.headers['content-type']}: must be application/json or application/x-ndjson`);
  if (req.raw.length > 10 * MB) {
    state.violations.push(`body of ${req.raw.length} bytes is over 10 MB`);
    return { status: 413, body: { code: 413, error: `request exceeds max limit of ${10 * MB} bytes`, status: 'Request Entity Too Large' } };
  }
  const records = req.json;
  if (!Array.isArray(records) || records.length === 0) return bad('body must be a JSON array of 1 or more records');
  if (records.length > 2000) {
    state.violations.push(`${records.length} records: at most 2000 a request`);
    return { status: 413, body: { code: 413, error: 'request exceeds max limit of 2000 records', status: 'Request Entity Too Large' }, items: records.length };
  }
  const now = Date.now();
  const failed = [];
  for (const [index, rec] of records.entries()) {
    let why = invalid(rec, now);
    if (why) state.violations.push(`records[${index}]: ${why.field} ${why.message}`);
    else if (m.reject_event && rec.event === m.reject_event)
      why = { field: 'event', message: `'event' ${rec.event} failed validation (the sink's reject_event mode)` };
    if (why) failed.push({ index, insert_id: rec?.properties?.$insert_id ?? '', ...why });
    else state.accepted.push(rec);
  }
  const imported = records.length - failed.length;
  if (failed.length === 0)
    return { status: 200, body: { code: 200, num_records_imported: imported, status: 'OK' }, items: records.length };
  return {
    status: 400,
    body: { code: 400, error: 'some data points in the request failed validation', failed_records: failed,
      num_records_imported: imported, status: 'Bad Request' },
    items: records.length,
  };
}
