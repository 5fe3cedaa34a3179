// Checks for bench/profiles.sh that cdp's Profile API and the peer give the
// same answers: COUNT random profiles, each looked up on both by a random
// identifier type (user_id, email, or the profile id), the answers compared
// as parsed JSON (key order aside); and one unknown identifier, which must
// be a 404 with a JSON body on both. Prints what differs; exits 1 on any
// difference.
// Usage: node profiles_compare.js CDP_URL CDP_TOKEN PEER_URL PEER_TOKEN PROFILES [COUNT]
'use strict';
const assert = require('node:assert');
const [cdpUrl, cdpToken, peerUrl, peerToken, profilesArg, countArg] = process.argv.slice(2);
const profiles = Number(profilesArg), count = Number(countArg || 100);
const domains = ['example.com', 'mail.test', 'corp.example', 'shop.test', 'web.example'];

async function get(base, token, path) {
  const res = await fetch(base + path, { headers: { Authorization: 'Bearer ' + token } });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, text, json };
}

function same(a, b) {
  try { assert.deepStrictEqual(a, b); return true; } catch { return false; }
}

(async () => {
  const differences = [];
  let segmentsSeen = 0, computedSeen = 0;
  const paths = [];
  for (let n = 0; n < count; n++) {
    const i = 1 + Math.floor(Math.random() * profiles);
    const kind = n % 3;
    paths.push(kind === 0 ? `/v1/profiles/user_id:u${i}`
      : kind === 1 ? `/v1/profiles/email:${encodeURIComponent(`user${i}@${domains[i % 5]}`)}`
      : `/v1/profiles/${i}`);
  }
  // An email as a person types it: the lookup normalises it as events are.
  paths.push(`/v1/profiles/email:${encodeURIComponent(' User7@' + domains[7 % 5].toUpperCase() + ' ')}`);
  for (const path of paths) {
    const [c, p] = await Promise.all([get(cdpUrl, cdpToken, path), get(peerUrl, peerToken, path)]);
    if (p.status !== 200 || !p.json) differences.push(`${path}: the peer answered ${p.status}: ${p.text.slice(0, 200)}`);
    else if (c.status !== 200 || !c.json) differences.push(`${path}: cdp answered ${c.status}: ${c.text.slice(0, 200)}`);
    else if (!same(c.json, p.json)) differences.push(`${path}: answers differ\n    cdp:  ${c.text.slice(0, 600)}\n    peer: ${p.text.slice(0, 600)}`);
    else {
      const keys = Object.keys(p.json).sort().join(',');
      if (keys !== 'computed,profile_id,segments,traits') differences.push(`${path}: unexpected keys ${keys}`);
      if (p.json.segments.length > 0) segmentsSeen++;
      if (Object.keys(p.json.computed).length > 0) computedSeen++;
    }
  }
  const unknown = '/v1/profiles/user_id:' + encodeURIComponent('no such user ' + Date.now());
  const [c, p] = await Promise.all([get(cdpUrl, cdpToken, unknown), get(peerUrl, peerToken, unknown)]);
  for (const [who, r] of [['cdp', c], ['the peer', p]]) {
    if (r.status !== 404 || r.json === undefined) differences.push(`${unknown}: ${who} answered ${r.status} ${r.text.slice(0, 200)} (expected 404 with a JSON body)`);
  }
  console.log(`compared ${paths.length} profiles (${segmentsSeen} with segments, ${computedSeen} with computed traits) and one unknown identifier: ${differences.length} difference(s)`);
  for (const d of differences.slice(0, 5)) console.log('  ' + d);
  process.exit(differences.length ? 1 : 0);
})().catch((err) => { console.error(err); process.exit(1); });
