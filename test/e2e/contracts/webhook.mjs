// The generic webhook's side, for benchmarks beside the kinds: any JSON
// body is taken; a batch envelope {"batch": [...]} counts its messages. It
// keeps only a count (mode {keep: true} keeps the messages, as the kinds do).
export const kind = 'webhook';

export function handle(req, state) {
  if (req.method !== 'POST' || req.json === undefined)
    return (state.violations.push('a webhook request is a POST of JSON'), { status: 400, body: {} });
  const messages = Array.isArray(req.json.batch) ? req.json.batch : [req.json];
  state.count = (state.count ?? 0) + messages.length;
  if (state.mode.keep) state.accepted.push(...messages);
  return { status: 200, body: { ok: true }, items: messages.length };
}
