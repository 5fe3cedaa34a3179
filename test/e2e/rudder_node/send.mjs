// Sends identify, track, page and group to the cdp HTTP collector with
// RudderStack's Node.js SDK and its defaults (gzip bodies, which axios labels
// application/x-www-form-urlencoded), as an app would. Used by
// test/e2e/sdk_endpoints.sh, which checks in SQL what was stored.
//
//   CDP_HOST=http://127.0.0.1:18765 CDP_WRITE_KEY=cdp_... CDP_PREFIX=run1 node send.mjs
//
// Prints a JSON summary; exits 1 if the SDK reported an error.
import Analytics from '@rudderstack/rudder-sdk-node';

const { CDP_HOST: host, CDP_WRITE_KEY: writeKey, CDP_PREFIX: p } = process.env;
if (!host || !writeKey || !p) {
  console.error('send.mjs: CDP_HOST, CDP_WRITE_KEY and CDP_PREFIX are required');
  process.exit(2);
}
const client = new Analytics(writeKey, { dataPlaneUrl: host, logLevel: 'error' });
const user = `${p}-user`;
client.identify({ userId: user, anonymousId: `${p}-anon`, messageId: `${p}-identify`,
  traits: { email: 'grace@example.com', plan: 'team' } });
client.track({ userId: user, event: 'Order Completed', messageId: `${p}-track`,
  properties: { revenue: 99.5, currency: 'EUR' } });
client.page({ userId: user, name: 'Pricing', category: 'Docs', messageId: `${p}-page`,
  properties: { path: '/pricing' } });
client.group({ userId: user, groupId: `${p}-org`, messageId: `${p}-group`, traits: { name: 'Initech' } });
const errors = [];
await new Promise((resolve) => client.flush((err) => { if (err) errors.push(String(err)); resolve(); }));
console.log(JSON.stringify({ ok: errors.length === 0, errors }));
process.exit(errors.length === 0 ? 0 : 1);
