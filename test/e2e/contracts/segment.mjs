// Contract of a Segment-compatible collector's POST /v1/batch, as Segment's
// HTTP Tracking API documents it (https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/):
// Basic auth with the write key as user and an empty password; a JSON body
// {"batch": [...]} of at most 500 KB; each message at most 32 KB, with a type
// Segment knows, a userId or an anonymousId, and a messageId; answers 200
// {"success": true}, or 400 for a body it cannot take (too large, not JSON).
// mode: {write_key: "..."} the key it accepts (any non-empty one when unset).
const TYPES = new Set(['track', 'identify', 'page', 'screen', 'group', 'alias']);
export const kind = 'segment';

export function handle(req, state) {
  const v = (why) => (state.violations.push(why), { status: 400, body: { success: false, message: why } });
  if (req.method !== 'POST' || req.path !== '/v1/batch') return v(`${req.method} ${req.path}: only POST /v1/batch`);
  const auth = req.headers.authorization ?? '';
  if (!auth.startsWith('Basic ')) return { status: 401, body: { success: false, message: 'no Basic auth' } };
  const [user, pass] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
  if (!user || pass !== '' || (state.mode.write_key && user !== state.mode.write_key))
    return { status: 401, body: { success: false, message: 'invalid write key' } };
  if (req.raw.length > 500 * 1024) return v(`body of ${req.raw.length} bytes is over 500 KB`);
  if (!req.json || !Array.isArray(req.json.batch)) return v('body must be {"batch": [...]}');
  if (state.mode.fail_batch_with) {
    // A collector that refuses a whole batch when one message is bad (the split test).
    if (req.json.batch.some((m) => m.event === state.mode.fail_batch_with))
      return { status: 400, body: { success: false, message: `bad message ${state.mode.fail_batch_with}` } };
  }
  for (const [i, m] of req.json.batch.entries()) {
    if (Buffer.byteLength(JSON.stringify(m)) > 32 * 1024) return v(`batch[${i}] is over 32 KB`);
    if (!TYPES.has(m.type)) return v(`batch[${i}].type ${m.type} is not a Segment type`);
    if (!m.userId && !m.anonymousId) return v(`batch[${i}] has neither userId nor anonymousId`);
    if (!m.messageId) return v(`batch[${i}] has no messageId`);
    if (m.type === 'track' && !m.event) return v(`batch[${i}] is a track without event`);
  }
  state.accepted.push(...req.json.batch);
  return { status: 200, body: { success: true }, items: req.json.batch.length };
}
