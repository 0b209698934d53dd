// Authentication as socket.io-client users meet it: HS256 JWTs from the auth
// payload, the query string or an Authorization header; expired, forged or
// misdirected tokens; Redis-stored tokens; no method at all; anonymous use.
// A refusal is a connect_error with err.message and err.data.reason.

import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { makeTest, finish, AEOLUS_ONLY } from './helpers.mjs';
import {
  startApp, startRedis, haveRedis, connect, refused, closeAll, jwt, tokenFor, sleep, SECRET, QUIET, SLOW,
} from './app-lib.mjs';

const AUD = 'aeolus-tests';
const ISS = 'https://issuer.example';
const LEEWAY = 30;   // seconds

let jwtD;     // JWT with audience, issuer and leeway (secret from JWT_SECRET_KEY)
let redisD;   // Redis tokens (REDIS_URL, AUTH_TOKEN_PREFIX) and JWT
let noneD;    // no method configured
let anonD;    // auth.anonymous = yes, and JWT
let redis;
const test = makeTest(() => [jwtD, redisD, noneD, anonD]);
const skip = AEOLUS_ONLY;
const redisOk = !skip && await haveRedis();
const skipRedis = skip || (!redisOk && 'redis-server is not installed');

before(async () => {
  if (skip) return;
  jwtD = await startApp({
    set: { 'auth.jwt_audience': AUD, 'auth.jwt_issuer': ISS, 'auth.jwt_leeway': `${LEEWAY}s` },
  });
  noneD = await startApp({ jwt: false });
  anonD = await startApp({ set: { 'auth.anonymous': 'yes' } });
  if (redisOk) {
    redis = await startRedis();
    redisD = await startApp({ env: { REDIS_URL: redis.url, AUTH_TOKEN_PREFIX: 'pfx' } });
  }
});

afterEach(() => closeAll());

after(async () => {
  closeAll();
  try {
    await finish([jwtD, redisD, noneD, anonD], jwtD);
  } finally {
    if (redis) await redis.stop();
  }
});

const now = () => Math.floor(Date.now() / 1000);
/** A token for jwtD: right audience and issuer unless overridden. */
const tok = (claims, opts) => jwt({ aud: AUD, iss: ISS, ...claims }, opts);

let whoamiSeq = 0;
/** Who the daemon thinks the client is: {id, name} (the only member of a fresh channel). */
async function whoami(client) {
  const ack = await client.ok('channel:join', { channelId: `whoami-${process.pid}-${++whoamiSeq}` });
  assert.equal(ack.members.length, 1);
  return { id: ack.members[0].userId, name: ack.members[0].name };
}

function assertRefused(err, message, reason) {
  assert.equal(err.message, message, `connect_error ${JSON.stringify({ message: err.message, data: err.data })}`);
  assert.equal(err.data?.reason, reason, `connect_error ${JSON.stringify({ message: err.message, data: err.data })}`);
}

// --- JWT: where the token comes from ----------------------------------------------------

test('JWT in the CONNECT auth payload', { skip }, async () => {
  const c = await connect(jwtD, { token: tok({ sub: 'amy', name: 'Amy A.' }) });
  assert.deepEqual(await whoami(c), { id: 'amy', name: 'Amy A.' });
  assert.deepEqual(await c.next('user:online', (m) => m.userId === 'amy'), { userId: 'amy' });
});

test('JWT in the query string (?token=)', { skip }, async () => {
  const c = await connect(jwtD, { token: tok({ sub: 'quinn', name: 'Quinn' }), via: 'query' });
  assert.deepEqual(await whoami(c), { id: 'quinn', name: 'Quinn' });
});

test('JWT in an Authorization: Bearer header (polling)', { skip }, async () => {
  const c = await connect(jwtD, { token: tok({ sub: 'hank', name: 'Hank' }), via: 'header' });
  assert.deepEqual(await whoami(c), { id: 'hank', name: 'Hank' });
});

test('JWT in an Authorization: Bearer header (websocket only)', { skip }, async () => {
  const c = await connect(jwtD, { token: tok({ sub: 'wes', name: 'Wes' }), via: 'header', transports: ['websocket'] });
  assert.deepEqual(await whoami(c), { id: 'wes', name: 'Wes' });
});

test('the auth payload wins over the query string, the query over the header', { skip }, async () => {
  const a = await connect(jwtD, {
    token: tok({ sub: 'first', name: 'First' }), query: { token: 'garbage' },
    extraHeaders: { Authorization: 'Bearer garbage' },
  });
  assert.equal((await whoami(a)).id, 'first');
  const q = await connect(jwtD, {
    token: tok({ sub: 'second', name: 'Second' }), via: 'query',
    extraHeaders: { Authorization: 'Bearer garbage' },
  });
  assert.equal((await whoami(q)).id, 'second');
});

test('user id, name and role come from the configured claims', { skip }, async () => {
  const a = await connect(jwtD, { token: tok({ userId: 'uid-7', username: 'Seven' }) });
  assert.deepEqual(await whoami(a), { id: 'uid-7', name: 'Seven' });
  const b = await connect(jwtD, { token: tok({ user_id: 4242 }) });
  assert.deepEqual(await whoami(b), { id: '4242', name: '4242' });
  // sub comes first
  const c = await connect(jwtD, { token: tok({ sub: 'the-sub', userId: 'not-this', name: 'Sub' }) });
  assert.equal((await whoami(c)).id, 'the-sub');
  // role: an admin may create channels, others not
  const admin = await connect(jwtD, { token: tok({ sub: 'root', role: 'admin' }) });
  await admin.ok('channel:init', { channelId: 'auth-made', name: 'Made' });
  const nope = await c.request('channel:init', { channelId: 'auth-made-2' });
  assert.equal(nope.error?.code, 'forbidden', JSON.stringify(nope));
});

// --- JWT: refusals --------------------------------------------------------------------------

test('no token: authentication_required', { skip }, async () => {
  assertRefused(await refused(jwtD, {}), 'authentication_required', 'missing_token');
  assertRefused(await refused(jwtD, { token: '' }), 'authentication_required', 'missing_token');
  assertRefused(await refused(jwtD, { extraHeaders: { Authorization: 'Basic dXNlcjpwYXNz' } }),
    'authentication_required', 'missing_token');
});

test('an expired JWT is refused (invalid_token, expired); leeway is honoured', { skip }, async () => {
  assertRefused(await refused(jwtD, { token: tok({ sub: 'old', exp: now() - 3600, iat: now() - 7200 }) }),
    'invalid_token', 'expired');
  assertRefused(await refused(jwtD, { token: tok({ sub: 'old', exp: now() - LEEWAY - 5, iat: now() - 7200 }), via: 'query' }),
    'invalid_token', 'expired');
  // expired a few seconds ago, within the leeway
  const c = await connect(jwtD, { token: tok({ sub: 'just', exp: now() - 5, iat: now() - 600 }) });
  assert.equal((await whoami(c)).id, 'just');
});

test('a JWT with a bad signature is refused (invalid_token, signature)', { skip }, async () => {
  assertRefused(await refused(jwtD, { token: tok({ sub: 'mallory' }, { secret: `${SECRET}-other` }) }),
    'invalid_token', 'signature');
  // a valid token with its payload swapped
  const good = tok({ sub: 'alice' }).split('.');
  const forged = tok({ sub: 'root', role: 'admin' }).split('.');
  assertRefused(await refused(jwtD, { token: `${good[0]}.${forged[1]}.${good[2]}`, via: 'header' }),
    'invalid_token', 'signature');
});

test('a JWT for another audience or issuer is refused', { skip }, async () => {
  assertRefused(await refused(jwtD, { token: tok({ sub: 'x', aud: 'someone-else' }) }), 'invalid_token', 'audience');
  assertRefused(await refused(jwtD, { token: jwt({ sub: 'x', iss: ISS }) }), 'invalid_token', 'audience');
  assertRefused(await refused(jwtD, { token: tok({ sub: 'x', iss: 'https://evil.example' }) }), 'invalid_token', 'issuer');
  // an audience list containing ours is fine
  const c = await connect(jwtD, { token: tok({ sub: 'multi', aud: ['other', AUD] }) });
  assert.equal((await whoami(c)).id, 'multi');
});

test('other broken JWTs: alg none, not yet valid, no user id, garbage', { skip }, async () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'root', aud: AUD, iss: ISS, exp: now() + 60 })}.`;
  assertRefused(await refused(jwtD, { token: none }), 'invalid_token', 'algorithm');
  assertRefused(await refused(jwtD, { token: tok({ sub: 'later', nbf: now() + 3600 }) }), 'invalid_token', 'not_yet_valid');
  assertRefused(await refused(jwtD, { token: tok({ name: 'Nobody' }) }), 'invalid_token', 'no_user_id');
  assertRefused(await refused(jwtD, { token: 'not-a-jwt' }), 'invalid_token', 'malformed');
  assertRefused(await refused(jwtD, { token: 'a.b.c' }), 'invalid_token', 'malformed');
});

test('a refused connection is not announced and does not disturb others', { skip }, async () => {
  const watcher = await connect(jwtD, { token: tok({ sub: 'watcher' }) });
  await refused(jwtD, { token: tok({ sub: 'intruder' }, { secret: 'wrong' }) });
  await refused(jwtD, {});
  await watcher.none('user:online', (m) => m.userId === 'intruder');
  await watcher.assertAlive();
});

// --- Redis tokens ---------------------------------------------------------------------------

test('a Redis token: GET prefix:token gives the user, name and role', { skip: skipRedis }, async () => {
  await redis.command('SET', 'pfx:tok-rita', JSON.stringify({ userId: 'rita', name: 'Rita', role: 'admin', rooms: ['vip'] }));
  const c = await connect(redisD, { token: 'tok-rita' });
  assert.deepEqual(await whoami(c), { id: 'rita', name: 'Rita' });
  await c.ok('channel:init', { channelId: 'redis-made' });
  // from the query string and the header as well
  const q = await connect(redisD, { token: 'tok-rita', via: 'query' });
  assert.equal((await whoami(q)).id, 'rita');
  const h = await connect(redisD, { token: 'tok-rita', via: 'header' });
  assert.equal((await whoami(h)).id, 'rita');
  // rita is online once, with her three sockets
  const users = (await c.ok('presence:list', {})).users.filter((u) => u.userId === 'rita');
  assert.deepEqual(users, [{ userId: 'rita', name: 'Rita' }]);
});

test('an unknown Redis token or a broken record is refused (invalid_token)', { skip: skipRedis }, async () => {
  assertRefused(await refused(redisD, { token: 'tok-unknown' }), 'invalid_token', 'unknown_token');
  await redis.command('SET', 'pfx:tok-bad', 'this is not json');
  assertRefused(await refused(redisD, { token: 'tok-bad' }), 'invalid_token', 'bad_token_record');
  await redis.command('SET', 'pfx:tok-noid', JSON.stringify({ name: 'No Id' }));
  assertRefused(await refused(redisD, { token: 'tok-noid' }), 'invalid_token', 'bad_token_record');
  // a revoked token no longer connects
  await redis.command('SET', 'pfx:tok-gone', JSON.stringify({ userId: 'gone' }));
  const c = await connect(redisD, { token: 'tok-gone' });
  await redis.command('DEL', 'pfx:tok-gone');
  assertRefused(await refused(redisD, { token: 'tok-gone' }), 'invalid_token', 'unknown_token');
  await c.assertAlive();
});

test('a Redis token with URL-special characters, from the query string', { skip: skipRedis }, async () => {
  for (const [i, token] of ['Zm9v+YmFy/YmF6==', 'tok%20with%spaces and more', 'a&b=c;d?e#f'].entries()) {
    const user = `special-${i}`;
    await redis.command('SET', `pfx:${token}`, JSON.stringify({ userId: user }));
    const q = await connect(redisD, { token, via: 'query', label: user });
    assert.equal((await whoami(q)).id, user, `query token ${JSON.stringify(token)}`);
    const a = await connect(redisD, { token, label: user });
    assert.equal((await whoami(a)).id, user, `auth token ${JSON.stringify(token)}`);
  }
});

test('a client gone while its Redis token is looked up is never announced', { skip: skipRedis }, async () => {
  await redis.command('SET', 'pfx:tok-hasty', JSON.stringify({ userId: 'hasty' }));
  const watcher = await connect(redisD, { token: tokenFor('watcher') });
  // Redis holds every answer for a moment; the clients give up meanwhile
  await redis.command('CLIENT', 'PAUSE', String(400 * SLOW), 'ALL');
  const hasty = [];
  for (let i = 0; i < 3; i++) {
    hasty.push(io(redisD.url, { forceNew: true, reconnection: false, transports: ['websocket'], auth: { token: 'tok-hasty' } }));
  }
  await sleep(150 * SLOW);
  for (const s of hasty) s.disconnect();
  await sleep(400 * SLOW);
  await watcher.none('user:online', (m) => m.userId === 'hasty');
  await watcher.none('user:offline', (m) => m.userId === 'hasty', 0);
  assert.ok(!(await watcher.ok('presence:list', {})).users.some((u) => u.userId === 'hasty'));
  // and the token still works for a client that waits
  const patient = await connect(redisD, { token: 'tok-hasty' });
  assert.equal((await whoami(patient)).id, 'hasty');
  await watcher.assertAlive();
});

test('with Redis tokens on, JWTs still work', { skip: skipRedis }, async () => {
  const c = await connect(redisD, { token: tokenFor('jules') });
  assert.deepEqual(await whoami(c), { id: 'jules', name: 'Jules' });
  assertRefused(await refused(redisD, { token: jwt({ sub: 'x' }, { secret: 'wrong' }) }), 'invalid_token', 'signature');
});

// --- no method, anonymous ----------------------------------------------------------------------

test('with no authentication method configured, every connection is refused', { skip }, async () => {
  assertRefused(await refused(noneD, {}), 'authentication_required', 'no_auth_method');
  assertRefused(await refused(noneD, { token: tokenFor('alice') }), 'authentication_required', 'no_auth_method');
});

test('auth.anonymous = yes: no token admits a user named by the socket id', { skip }, async () => {
  const a = await connect(anonD, {});
  const b = await connect(anonD, { transports: ['polling'] });
  assert.deepEqual(await whoami(a), { id: a.id, name: a.id });
  assert.deepEqual(await whoami(b), { id: b.id, name: b.id });
  assert.notEqual(a.id, b.id);
  // two distinct users, each announced
  await a.next('user:online', (m) => m.userId === b.id);
  // a token, when given, still names the user
  const t = await connect(anonD, { token: tokenFor('tess') });
  assert.deepEqual(await whoami(t), { id: 'tess', name: 'Tess' });
  // an invalid token is refused, not downgraded to anonymous
  assertRefused(await refused(anonD, { token: tokenFor('tess').slice(0, -4) + 'AAAA' }), 'invalid_token', 'signature');
  await sleep(QUIET);
  assert.equal(a.connected && b.connected && t.connected, true);
});

// --- last: Redis goes away ------------------------------------------------------------------------

test('when Redis is down, a Redis token is refused with auth_unavailable; JWTs still work', { skip: skipRedis }, async () => {
  await redis.command('SET', 'pfx:tok-late', JSON.stringify({ userId: 'late' }));
  await redis.stop();
  redis = null;
  assertRefused(await refused(redisD, { token: 'tok-late' }), 'invalid_token', 'auth_unavailable');
  const c = await connect(redisD, { token: tokenFor('jwt-user') });
  await c.assertAlive();
});
