// Peer for bench/profiles.sh: the profile lookup service a team would write
// instead of cdp's Profile API, over the same tables.
//
//   GET /v1/profiles/<identifier_type>:<value>   (value URL-encoded)
//   GET /v1/profiles/<profile_id>
//   -> {"profile_id": n, "traits": {...}, "computed": {...}, "segments": [names sorted]}
//      or 404 {"error": "profile not found"}
//
// Its best configuration on 2 cores: node:cluster with WORKERS processes
// (default 2) sharing the port, each with a pg Pool of POOL connections
// (default 8), ONE named (prepared once per connection) SQL query per request
// that also builds the JSON text in Postgres, sent to the client as it comes
// (no JSON.parse / JSON.stringify in Node). Authorization is a constant
// compare with "Bearer $TOKEN" (no token table, no scopes).
// Environment: PORT, WORKERS, POOL, TOKEN, and libpq's PGHOST, PGPORT,
// PGUSER, PGDATABASE.
'use strict';
const cluster = require('node:cluster');
const workers = Number(process.env.WORKERS || 2);
if (cluster.isPrimary && workers > 1) {
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (w, code) => { console.error(`worker ${w.process.pid} exited (${code})`); process.exit(1); });
  return;
}

const fastify = require('fastify')({ logger: false });
const { Pool } = require('pg');
const pool = new Pool({ max: Number(process.env.POOL || 8) });
const AUTH = 'Bearer ' + (process.env.TOKEN || 'peer');

// identities -> profile_map (the survivor) -> profiles, profile_computed and
// the current memberships, one statement. Segment names sorted by code point
// (collate "C"), whatever the database's collation.
const PROFILE_JSON = `
  json_build_object(
    'profile_id', p.profile_id,
    'traits', p.traits,
    'computed', coalesce(c.computed, '{}'::jsonb),
    'segments', coalesce((select json_agg(s.name order by s.name collate "C")
                            from cdp.segment_membership sm join cdp.segments s on s.segment_id = sm.segment_id
                           where sm.profile_id = p.profile_id and sm.exited_at is null), '[]'::json))::text`;
const BY_IDENTIFIER = {
  name: 'profile_by_identifier',
  text: `select ${PROFILE_JSON}
           from cdp.identities i
           join cdp.profile_map m on m.profile_id = i.profile_id
           join cdp.profiles p on p.profile_id = m.canonical_id
           left join cdp.profile_computed c on c.profile_id = p.profile_id
          where i.type = $1 and i.value = $2`,
  rowMode: 'array',
};
const BY_ID = {
  name: 'profile_by_id',
  text: `select ${PROFILE_JSON}
           from cdp.profile_map m
           join cdp.profiles p on p.profile_id = m.canonical_id
           left join cdp.profile_computed c on c.profile_id = p.profile_id
          where m.profile_id = $1`,
  rowMode: 'array',
};

// The identity graph stores values normalised (cdp.identifier_types.normalise):
// emails trimmed and lower-cased, user_id and anonymous_id as sent.
function normalise(type, value) {
  return type === 'email' ? value.trim().toLowerCase() : value;
}

const NOT_FOUND = '{"error": "profile not found"}';
fastify.get('/v1/profiles/:key', async (req, reply) => {
  if (req.headers.authorization !== AUTH) {
    return reply.code(401).type('application/json').send('{"error": "unauthorized"}');
  }
  const key = req.params.key;  // already URL-decoded by the router
  let query;
  const colon = key.indexOf(':');
  if (colon > 0) {
    query = { ...BY_IDENTIFIER, values: [key.slice(0, colon), normalise(key.slice(0, colon), key.slice(colon + 1))] };
  } else if (/^[0-9]{1,18}$/.test(key)) {
    query = { ...BY_ID, values: [key] };
  } else {
    return reply.code(400).type('application/json').send('{"error": "expected <type>:<value> or a profile id"}');
  }
  const res = await pool.query(query);
  reply.type('application/json');
  if (res.rows.length === 0) return reply.code(404).send(NOT_FOUND);
  return reply.send(res.rows[0][0]);
});

fastify.listen({ port: Number(process.env.PORT || 8082), host: '127.0.0.1' }).catch((err) => {
  console.error(err);
  process.exit(1);
});
