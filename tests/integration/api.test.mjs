// The backend HTTP API served by aeolusd itself (api.enable = yes): every
// endpoint of SPEC 7 seen from socket.io-client users, every error status,
// the realtime tokens the daemon accepts, and emit and disconnect across two
// instances on one Redis.
//
// AEOLUS_TEST_STORE=redis runs the single-instance tests on the Redis store.

import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { makeTest, finish, freePort, daemonPath, AEOLUS_ONLY } from './helpers.mjs';
import {
  startApp, connectAs, connect, refused, closeAll, uniq, haveRedis, sleep, T, QUIET, STORE,
  PROFILE_DIR, jwt,
} from './app-lib.mjs';
import { startCluster, connectPeer, closePeers } from './cluster-lib.mjs';

const API_SECRET = 'api-test-server-secret-0123456789';
const skip = AEOLUS_ONLY;
const noRedis = !(await haveRedis()) && 'redis-server is not installed';

let d;        // api.enable = yes, the secret, a small body limit
let off;      // api.enable = no (the default)
let down;     // redis.url set, Redis never there
const test = makeTest(() => [d, off, down]);

before(async () => {
  if (skip) return;
  d = await startApp({
    set: { 'api.enable': 'yes', 'api.max_body': '2k', 'messages.max_content': 200 },
    env: { SERVER_SECRET: API_SECRET },
  });
  off = await startApp();
  const port = await freePort();
  down = await startApp({
    set: { 'api.enable': 'yes', 'api.secret': API_SECRET, 'redis.url': `redis://127.0.0.1:${port}` },
  });
});

afterEach(() => closeAll());

after(async () => {
  closeAll();
  await finish([d, off, down], d);
});

/**
 * Calls the API. body: an object (sent as JSON), a string (sent as is), or
 * undefined. Resolves {status, body (parsed JSON, or the text), headers}.
 */
async function api(daemon, method, path, body, { secret = API_SECRET, headers = {} } = {}) {
  const h = { ...headers };
  if (secret !== null) h.authorization = `Bearer ${secret}`;
  const init = { method, headers: h };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    h['content-type'] = 'application/json';
  }
  const res = await fetch(`${daemon.url}${path}`, init);
  const text = await res.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** Asserts an error answer: its status, JSON {error, message}, and the field when given. */
function assertError(r, status, code, field) {
  assert.equal(r.status, status, `expected ${status}, got ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(typeof r.body, 'object', `not JSON: ${r.body}`);
  assert.equal(r.body.error, code, JSON.stringify(r.body));
  assert.equal(typeof r.body.message, 'string');
  assert.ok(r.body.message.length > 0);
  assert.match(r.headers.get('content-type'), /application\/json/);
  if (field !== undefined) {
    assert.equal(r.body.field, field, JSON.stringify(r.body));
    assert.ok(r.body.message.includes(field), `the message names ${field}: ${r.body.message}`);
  }
}

const inChannel = (ch) => (m) => m && m.channelId === ch;

/** The sockets' disconnect reason, or null if they are still connected after `ms`. */
function disconnected(client, ms = T) {
  return new Promise((resolve) => {
    if (!client.socket.connected) return resolve('already');
    const t = setTimeout(() => resolve(null), ms);
    client.socket.once('disconnect', (reason) => { clearTimeout(t); resolve(reason); });
  });
}

// --- POST /chat/message ----------------------------------------------------

test('POST /chat/message: seed 000\'s message is stored and sent as message:received to the channel', { skip }, async () => {
  const ch = uniq('chat');
  const [alice, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map((u) => connectAs(d, u)));
  await alice.ok('channel:join', { channelId: ch });
  await bob.ok('channel:join', { channelId: ch });
  const msg = {
    channelId: ch, messageId: 42, senderId: 10, content: 'Hello world',
    timestamp: '2026-01-06T12:00:00Z', senderName: 'Admin',
  };
  const r = await api(d, 'POST', '/chat/message', msg);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.success, true);
  assert.match(r.body.id, /^\d+$/);
  assert.equal(r.body.timestamp, msg.timestamp);
  for (const c of [alice, bob]) {
    const got = await c.next('message:received', inChannel(ch));
    assert.deepEqual(got, {
      id: r.body.id, channelId: ch, senderId: 10, senderName: 'Admin', content: 'Hello world',
      timestamp: '2026-01-06T12:00:00Z', messageId: 42,
    });
  }
  await carol.none('message:received');
  // in the history, for the API and for clients
  const h = await api(d, 'GET', `/api/history?channelId=${encodeURIComponent(ch)}`);
  assert.equal(h.status, 200);
  assert.deepEqual(h.body.messages.map((m) => [m.id, m.content, m.messageId]), [[r.body.id, 'Hello world', 42]]);
  const ack = await alice.ok('history:get', { channelId: ch });
  assert.equal(ack.messages.length, 1);
  assert.equal(ack.messages[0].id, r.body.id);
});

test('POST /chat/message: the sender\'s own sockets get it too; without a timestamp the server\'s', { skip }, async () => {
  const ch = uniq('chat');
  const dave = await connectAs(d, 'dave');
  await dave.ok('channel:join', { channelId: ch });
  const before0 = Date.now();
  const r = await api(d, 'POST', '/chat/message', { channelId: ch, senderId: 'dave', content: 'from the backend', clientMessageId: 'c-1', metadata: { k: [1] } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const got = await dave.next('message:received', inChannel(ch));
  assert.equal(got.senderId, 'dave');
  assert.equal(got.senderName, 'dave');
  assert.equal(got.clientMessageId, 'c-1');
  assert.deepEqual(got.metadata, { k: [1] });
  assert.equal(got.messageId, undefined);
  const ts = Date.parse(got.timestamp);
  assert.ok(ts >= before0 - 1000 && ts <= Date.now() + 1000, got.timestamp);
  assert.equal(r.body.clientMessageId, 'c-1');
});

test('POST /chat/message: content over messages.max_content is 413 too_large, nothing stored or sent', { skip }, async () => {
  const ch = uniq('chat');
  const eve = await connectAs(d, 'eve');
  await eve.ok('channel:join', { channelId: ch });
  const r = await api(d, 'POST', '/chat/message', { channelId: ch, senderId: 1, content: 'x'.repeat(201) });
  assertError(r, 413, 'too_large');
  await eve.none('message:received');
  const h = await api(d, 'GET', `/api/history?channelId=${ch}`);
  assert.deepEqual(h.body.messages, []);
});

// --- slow mode: POST /api/channels then messages -------------------------

test('POST /api/channels sets slow mode; a second message within it is 429 with Retry-After', { skip }, async () => {
  const ch = uniq('slow');
  const r = await api(d, 'POST', '/api/channels', { channelId: ch, name: 'Slow', settings: { slowMode: 30, historySize: 5 } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, { success: true, channelId: ch, name: 'Slow', settings: { slowMode: 30, historySize: 5 } });
  const frank = await connectAs(d, 'frank');
  const joined = await frank.ok('channel:join', { channelId: ch });
  assert.equal(joined.channelId, ch);
  const first = await api(d, 'POST', '/chat/message', { channelId: ch, senderId: 7, content: 'one' });
  assert.equal(first.status, 200, JSON.stringify(first.body));
  await frank.next('message:received', (m) => m.content === 'one');
  const second = await api(d, 'POST', '/chat/message', { channelId: ch, senderId: 7, content: 'two' });
  assertError(second, 429, 'slow_mode');
  const retry = Number(second.headers.get('retry-after'));
  assert.ok(retry >= 29 && retry <= 30, `Retry-After ${second.headers.get('retry-after')}`);
  assert.equal(second.body.retryAfter, retry);
  await frank.none('message:received', (m) => m.content === 'two');
  // another sender is not slowed down by the first
  const other = await api(d, 'POST', '/chat/message', { channelId: ch, senderId: 8, content: 'three' });
  assert.equal(other.status, 200);
  // the channel's settings are those clients see (channel:init merges into them)
  const admin = await connectAs(d, 'ada', { role: 'admin' });
  const init = await admin.ok('channel:init', { channelId: ch, settings: { private: true } });
  assert.deepEqual(init.settings, { slowMode: 30, historySize: 5, private: true });
});

test('POST /api/channels validates like channel:init (400 naming the setting)', { skip }, async () => {
  assertError(await api(d, 'POST', '/api/channels', { settings: {} }), 400, 'bad_request', 'channelId');
  assertError(await api(d, 'POST', '/api/channels', { channelId: 'x', settings: 'fast' }), 400, 'bad_request', 'settings');
  const r = await api(d, 'POST', '/api/channels', { channelId: uniq(), settings: { slowMode: -1 } });
  assertError(r, 400, 'bad_request');
  assert.match(r.body.message, /slowMode/);
});

// --- POST /chat/read-receipt -------------------------------------------------

test('POST /chat/read-receipt: message:read to the channel\'s members only', { skip }, async () => {
  const ch = uniq('chat');
  const [gus, hal] = await Promise.all([connectAs(d, 'gus'), connectAs(d, 'hal')]);
  await gus.ok('channel:join', { channelId: ch });
  const receipt = {
    channelId: ch, messageId: 42, readerId: 10, readAt: '2026-01-06T12:00:00Z', complete: true,
    readers: [{ role_id: 10, name: 'Admin', read_at: '2026-01-06T12:00:00Z' }],
  };
  const r = await api(d, 'POST', '/chat/read-receipt', receipt);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, { success: true });
  assert.deepEqual(await gus.next('message:read'), receipt);
  await hal.none('message:read');
  // the minimal receipt: complete defaults to false
  await api(d, 'POST', '/chat/read-receipt', { channelId: ch, messageId: 'm-7' });
  assert.deepEqual(await gus.next('message:read'), { channelId: ch, messageId: 'm-7', complete: false });
  // clients cannot send it themselves, nor broadcast it
  gus.emit('message:read', { channelId: ch, messageId: 1 });
  const ack = await gus.request('broadcast', { channelId: ch, event: 'message:read', data: {} });
  assert.equal(ack.ok, false);
  await gus.none('message:read');
});

test('POST /chat/read-receipt: 400 naming a missing or mistyped field', { skip }, async () => {
  assertError(await api(d, 'POST', '/chat/read-receipt', { messageId: 1 }), 400, 'bad_request', 'channelId');
  assertError(await api(d, 'POST', '/chat/read-receipt', { channelId: 'c' }), 400, 'bad_request', 'messageId');
  assertError(await api(d, 'POST', '/chat/read-receipt', { channelId: 'c', messageId: 1, complete: 'yes' }), 400, 'bad_request', 'complete');
  assertError(await api(d, 'POST', '/chat/read-receipt', { channelId: 'c', messageId: 1, readers: {} }), 400, 'bad_request', 'readers');
});

// --- POST /api/realtime/token -----------------------------------------------

test('POST /api/realtime/token: {token, expires_in}; the token opens a connection as that user', { skip }, async () => {
  const ch = uniq('chat');
  const r = await api(d, 'POST', '/api/realtime/token', { userId: 'ivy', name: 'Ivy', role: 'admin', memberships: ['channel:x'] });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.expires_in, 300);   // api.token_ttl's default
  const claims = JSON.parse(Buffer.from(r.body.token.split('.')[1], 'base64url').toString());
  assert.equal(claims.sub, 'ivy');
  assert.equal(claims.exp - claims.iat, 300);
  assert.deepEqual(claims.memberships, ['channel:x']);
  assert.equal(r.headers.get('cache-control'), 'no-store');
  // over the auth payload and over the query string (seed 004's way)
  const ivy = await connect(d, { token: r.body.token, label: 'ivy' });
  const ivy2 = await connect(d, { token: r.body.token, via: 'query', label: 'ivy#2' });
  await ivy.ok('channel:init', { channelId: ch });          // the role came with the token
  const joined = await ivy2.ok('channel:join', { channelId: ch });
  assert.deepEqual(joined.members, [{ userId: 'ivy', name: 'Ivy' }]);
  // a ttl of its own
  const short = await api(d, 'POST', '/api/realtime/token', { userId: 17, ttl: 1 });
  assert.equal(short.body.expires_in, 1);
  await sleep(2100);
  const err = await refused(d, short.body.token);
  assert.equal(err.message, 'invalid_token');
  assert.equal(err.data.reason, 'expired');
});

test('POST /api/realtime/token: 400 for bad fields, 401 without the secret', { skip }, async () => {
  assertError(await api(d, 'POST', '/api/realtime/token', {}), 400, 'bad_request', 'userId');
  assertError(await api(d, 'POST', '/api/realtime/token', { userId: '' }), 400, 'bad_request', 'userId');
  assertError(await api(d, 'POST', '/api/realtime/token', { userId: 'u', ttl: 0 }), 400, 'bad_request', 'ttl');
  assertError(await api(d, 'POST', '/api/realtime/token', { userId: 'u', ttl: '60' }), 400, 'bad_request', 'ttl');
  assertError(await api(d, 'POST', '/api/realtime/token', { userId: 'u', memberships: 'a' }), 400, 'bad_request', 'memberships');
  assertError(await api(d, 'POST', '/api/realtime/token', { userId: 'u', role: 5 }), 400, 'bad_request', 'role');
  assertError(await api(d, 'POST', '/api/realtime/token', { userId: 'u' }, { secret: null }), 401, 'unauthorized');
  // a REMOTE_USER header is no authentication here: only a front web server sets it
  assertError(await api(d, 'POST', '/api/realtime/token', { userId: 'u' },
    { secret: null, headers: { 'remote-user': 'u' } }), 401, 'unauthorized');
});

test('POST /api/realtime/token: a token longer than a client may present is 400, not issued', { skip }, async () => {
  const big = await startApp({ set: { 'api.enable': 'yes', 'api.secret': API_SECRET } });
  try {
    const memberships = Array.from({ length: 256 }, (_, i) => `team-${i}-${'x'.repeat(40)}`);
    assertError(await api(big, 'POST', '/api/realtime/token', { userId: 'u', memberships }), 400, 'bad_request', 'memberships');
    // a smaller one is issued and opens a connection
    const r = await api(big, 'POST', '/api/realtime/token', { userId: 'u', memberships: memberships.slice(0, 100) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(r.body.token.length <= 8191);
    const c = await connect(big, { token: r.body.token, label: 'u' });
    await c.assertAlive();
  } finally {
    closeAll();
    await finish([big]);
  }
});

test('realtime tokens carry REALTIME_JWT_AUDIENCE and _ISSUER, signed with REALTIME_JWT_SECRET, for REALTIME_JWT_TTL_SECONDS', { skip }, async () => {
  const sb = await startApp({
    jwt: false,
    set: { 'api.enable': 'yes', 'api.secret': API_SECRET },
    env: {
      SECRET_KEY: 'the-flask-secret', REALTIME_JWT_SECRET: 'the-realtime-secret',
      REALTIME_JWT_AUDIENCE: 'superbot-realtime', REALTIME_JWT_ISSUER: 'superbot',
      REALTIME_JWT_TTL_SECONDS: '120',
    },
  });
  try {
    const r = await api(sb, 'POST', '/api/realtime/token', { userId: 'jo' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.expires_in, 120);
    const claims = JSON.parse(Buffer.from(r.body.token.split('.')[1], 'base64url').toString());
    assert.equal(claims.aud, 'superbot-realtime');
    assert.equal(claims.iss, 'superbot');
    const jo = await connect(sb, { token: r.body.token, via: 'query', label: 'jo' });
    await jo.assertAlive();
    // REALTIME_JWT_SECRET won over SECRET_KEY, and the audience is required
    const claims2 = { sub: 'jo', aud: 'superbot-realtime', iss: 'superbot' };
    const flask = jwt(claims2, { secret: 'the-flask-secret' });
    assert.equal((await refused(sb, flask)).data.reason, 'signature');
    const noAud = jwt({ sub: 'jo', iss: 'superbot' }, { secret: 'the-realtime-secret' });
    assert.equal((await refused(sb, noAud)).data.reason, 'audience');
    await connect(sb, { token: jwt(claims2, { secret: 'the-realtime-secret' }), label: 'jo#2' });
  } finally {
    closeAll();
    await finish([sb]);
  }
});

// --- POST /api/emit ------------------------------------------------------------

test('POST /api/emit: to a room, a user, a role, everyone; except; data as the argument', { skip }, async () => {
  const ch = uniq('emit');
  const kim = await connectAs(d, 'kim');
  const lee = await connectAs(d, 'lee', { role: 'admin' });
  const max = await connectAs(d, 'max');
  await kim.ok('channel:join', { channelId: ch });
  await lee.ok('channel:join', { channelId: ch });
  const ev = uniq('ev');

  let r = await api(d, 'POST', '/api/emit', { event: ev, data: { n: 1 }, room: `channel:${ch}` });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, { success: true });
  assert.deepEqual(await kim.next(ev), { n: 1 });
  assert.deepEqual(await lee.next(ev), { n: 1 });
  await max.none(ev);

  await api(d, 'POST', '/api/emit', { event: ev, data: 'to max', user: 'max' });
  assert.equal(await max.next(ev), 'to max');
  await api(d, 'POST', '/api/emit', { event: ev, data: [1, 2], user: ['kim', 'max'] });
  assert.deepEqual(await kim.next(ev), [1, 2]);
  assert.deepEqual(await max.next(ev), [1, 2]);

  await api(d, 'POST', '/api/emit', { event: ev, data: 3 });          // everyone
  for (const c of [kim, lee, max]) assert.equal(await c.next(ev), 3);

  await api(d, 'POST', '/api/emit', { event: ev, data: 4, except: 'user:kim' });
  assert.equal(await lee.next(ev), 4);
  assert.equal(await max.next(ev), 4);

  await api(d, 'POST', '/api/emit', { event: ev, data: 5, room: `channel:${ch}`, except: ['user:lee'], namespace: '/' });
  assert.equal(await kim.next(ev), 5);

  // no data: an event with no argument
  await api(d, 'POST', '/api/emit', { event: ev, user: 'kim' });
  await kim.next(ev, (a, args) => args.length === 0);
  await Promise.all([kim.none(ev), lee.none(ev), max.none(ev)]);
});

test('POST /api/emit: role rooms (rooms.roles)', { skip }, async () => {
  const rd = await startApp({
    set: { 'api.enable': 'yes', 'api.secret': API_SECRET, 'rooms.roles': 'staff=admin support; client=else' },
  });
  try {
    const sue = await connectAs(rd, 'sue', { role: 'Support' });
    const cli = await connectAs(rd, 'cli', { role: 'client' });
    let r = await api(rd, 'POST', '/api/emit', { event: 'notice', data: 'staff only', role: 'support' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(await sue.next('notice'), 'staff only');
    await cli.none('notice');
    r = await api(rd, 'POST', '/api/emit', { event: 'notice', data: 1, role: 'nobody' });
    assertError(r, 404, 'not_found', 'role');
  } finally {
    closeAll();
    await finish([rd]);
  }
});

test('POST /api/emit: reserved names are 403, a foreign namespace 404, bad targets 400', { skip }, async () => {
  for (const event of ['message:received', 'connect', 'disconnect', 'error', 'user:online', 'message:read', 'channel:join']) {
    assertError(await api(d, 'POST', '/api/emit', { event, data: {} }), 403, 'forbidden', 'event');
  }
  assertError(await api(d, 'POST', '/api/emit', { event: 'x', namespace: '/admin' }), 404, 'not_found', 'namespace');
  assertError(await api(d, 'POST', '/api/emit', { data: 1 }), 400, 'bad_request', 'event');
  assertError(await api(d, 'POST', '/api/emit', { event: '' }), 400, 'bad_request', 'event');
  assertError(await api(d, 'POST', '/api/emit', { event: 'x', room: {} }), 400, 'bad_request', 'room');
  assertError(await api(d, 'POST', '/api/emit', { event: 'x', room: [] }), 400, 'bad_request', 'room');
  assertError(await api(d, 'POST', '/api/emit', { event: 'x', user: [true] }), 400, 'bad_request', 'user');
  assertError(await api(d, 'POST', '/api/emit', { event: 'x', except: 7.5 }), 400, 'bad_request', 'except');
  assertError(await api(d, 'POST', '/api/emit', { event: 'x', room: Array.from({ length: 65 }, (_, i) => `r${i}`) }), 400, 'bad_request', 'room');
});

// --- GET /api/presence, GET /api/history ------------------------------------------

test('GET /api/presence: the channel\'s users, each once; without channelId everyone online', { skip }, async () => {
  const ch = uniq('pres');
  const [nia, nia2, oz] = await Promise.all([connectAs(d, 'nia'), connectAs(d, 'nia', {}, { label: 'nia#2' }), connectAs(d, 'oz')]);
  await nia.ok('channel:join', { channelId: ch });
  await nia2.ok('channel:join', { channelId: ch });
  let r = await api(d, 'GET', `/api/presence?channelId=${ch}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.users, [{ userId: 'nia', name: 'Nia' }]);
  await oz.ok('channel:join', { channelId: ch });
  r = await api(d, 'GET', `/api/presence?channelId=${ch}`);
  assert.deepEqual(r.body.users, [{ userId: 'nia', name: 'Nia' }, { userId: 'oz', name: 'Oz' }]);
  nia.close();
  nia2.close();
  for (let i = 0; i < 40; i++) {
    r = await api(d, 'GET', `/api/presence?channelId=${ch}`);
    if (r.body.users.length === 1) break;
    await sleep(25);
  }
  assert.deepEqual(r.body.users, [{ userId: 'oz', name: 'Oz' }]);
  r = await api(d, 'GET', '/api/presence');
  assert.ok(r.body.users.some((u) => u.userId === 'oz'));
  assert.ok(!r.body.users.some((u) => u.userId === 'nia'));
  // HEAD answers as GET, without a body
  const head = await fetch(`${d.url}/api/presence`, { method: 'HEAD', headers: { authorization: `Bearer ${API_SECRET}` } });
  assert.equal(head.status, 200);
});

test('GET /api/history: limit, before and after; 400 naming a bad parameter', { skip }, async () => {
  const ch = uniq('hist');
  const ids = [];
  for (let i = 0; i < 5; i++) {
    const r = await api(d, 'POST', '/chat/message', { channelId: ch, senderId: 'p', content: `m${i}` });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    ids.push(r.body.id);
  }
  const get = async (q) => (await api(d, 'GET', `/api/history?channelId=${ch}${q}`));
  let r = await get('');
  assert.deepEqual(r.body.messages.map((m) => m.content), ['m0', 'm1', 'm2', 'm3', 'm4']);
  r = await get('&limit=2');
  assert.deepEqual(r.body.messages.map((m) => m.content), ['m3', 'm4']);
  r = await get(`&before=${ids[3]}&limit=2`);
  assert.deepEqual(r.body.messages.map((m) => m.content), ['m1', 'm2']);
  r = await get(`&after=${ids[1]}&limit=2`);
  assert.deepEqual(r.body.messages.map((m) => m.content), ['m2', 'm3']);
  // percent-encoded channel ids
  const odd = `${uniq('a b')}/é&x`;
  await api(d, 'POST', '/chat/message', { channelId: odd, senderId: 'p', content: 'odd' });
  r = await api(d, 'GET', `/api/history?channelId=${encodeURIComponent(odd)}`);
  assert.deepEqual(r.body.messages.map((m) => [m.content, m.channelId]), [['odd', odd]]);
  assertError(await api(d, 'GET', '/api/history'), 400, 'bad_request', 'channelId');
  assertError(await get('&limit=0'), 400, 'bad_request', 'limit');
  assertError(await get('&limit=ten'), 400, 'bad_request', 'limit');
  assertError(await get('&before=x1'), 400, 'bad_request', 'before');
  assertError(await get('&after=-1'), 400, 'bad_request', 'after');
});

// --- POST /api/disconnect ---------------------------------------------------------

test('POST /api/disconnect: {userId} closes every socket of the user, {sid} one socket', { skip }, async () => {
  const ch = uniq('dc');
  const [pam, pam2, quinn] = await Promise.all([
    connectAs(d, 'pam'), connectAs(d, 'pam', {}, { label: 'pam#2', transports: ['polling'] }), connectAs(d, 'quinn'),
  ]);
  await quinn.ok('channel:join', { channelId: ch });
  await pam.ok('channel:join', { channelId: ch });
  await quinn.next('user:joined', (m) => m.userId === 'pam');
  const gone = [disconnected(pam), disconnected(pam2)];
  let r = await api(d, 'POST', '/api/disconnect', { userId: 'pam' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(await Promise.all(gone), ['io server disconnect', 'io server disconnect']);
  // the others see the user leave and go offline, once
  await quinn.next('user:left', (m) => m.userId === 'pam' && m.channelId === ch);
  await quinn.next('user:offline', (m) => m.userId === 'pam');
  await quinn.assertAlive();
  r = await api(d, 'GET', `/api/presence?channelId=${ch}`);
  assert.deepEqual(r.body.users.map((u) => u.userId), ['quinn']);

  const [rex, rex2] = await Promise.all([connectAs(d, 'rex'), connectAs(d, 'rex', {}, { label: 'rex#2' })]);
  const one = disconnected(rex);
  r = await api(d, 'POST', '/api/disconnect', { sid: rex.id });
  assert.equal(r.status, 200);
  assert.equal(await one, 'io server disconnect');
  await rex2.assertAlive();
  // unknown ones: nothing to do, still 200
  assert.equal((await api(d, 'POST', '/api/disconnect', { userId: 'nobody' })).status, 200);
  assertError(await api(d, 'POST', '/api/disconnect', {}), 400, 'bad_request', 'userId');
  assertError(await api(d, 'POST', '/api/disconnect', { sid: 'short' }), 400, 'bad_request', 'sid');
  assertError(await api(d, 'POST', '/api/disconnect', { userId: { a: 1 } }), 400, 'bad_request', 'userId');
  await quinn.assertAlive();
  await rex2.assertAlive();
});

// --- the errors of SPEC 7 ------------------------------------------------------------

test('401: no Authorization, another scheme, a wrong secret, a secret with one byte more', { skip }, async () => {
  const body = { channelId: 'c', senderId: 1, content: 'x' };
  for (const [path, method] of [['/chat/message', 'POST'], ['/chat/read-receipt', 'POST'], ['/api/emit', 'POST'],
    ['/api/channels', 'POST'], ['/api/disconnect', 'POST'], ['/api/presence', 'GET'], ['/api/history?channelId=c', 'GET']]) {
    assertError(await api(d, method, path, method === 'POST' ? body : undefined, { secret: null }), 401, 'unauthorized');
    assertError(await api(d, method, path, method === 'POST' ? body : undefined, { secret: 'nope' }), 401, 'unauthorized');
    assertError(await api(d, method, path, method === 'POST' ? body : undefined, { secret: `${API_SECRET}x` }), 401, 'unauthorized');
  }
  const basic = await api(d, 'POST', '/chat/message', body, { secret: null, headers: { authorization: `Basic ${API_SECRET}` } });
  assertError(basic, 401, 'unauthorized');
});

test('400: malformed JSON, not an object, an empty body, trailing text, invalid UTF-8, bad fields (named)', { skip }, async () => {
  for (const raw of ['{"channelId":', 'not json', '[1,2]', '"text"', '', '{"a":1} {"b":2}', '{"a":1,}']) {
    assertError(await api(d, 'POST', '/chat/message', raw), 400, 'bad_request', 'body');
  }
  const res = await new Promise((resolve, reject) => {
    const req = http.request(`${d.url}/chat/message`, {
      method: 'POST', headers: { authorization: `Bearer ${API_SECRET}`, 'content-type': 'application/json' },
    }, (r) => { let b = ''; r.on('data', (c) => { b += c; }); r.on('end', () => resolve({ status: r.statusCode, body: JSON.parse(b) })); });
    req.on('error', reject);
    req.end(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]));   // {"a":"\xff\xfe"}
  });
  assert.equal(res.status, 400);
  assert.equal(res.body.field, 'body');
  const ok = { channelId: 'c', senderId: 1, content: 'x' };
  const cases = [
    [{ ...ok, channelId: undefined }, 'channelId'], [{ ...ok, channelId: '' }, 'channelId'],
    [{ ...ok, channelId: [1] }, 'channelId'], [{ ...ok, senderId: undefined }, 'senderId'],
    [{ ...ok, senderId: true }, 'senderId'], [{ ...ok, content: undefined }, 'content'],
    [{ ...ok, content: '' }, 'content'], [{ ...ok, content: 5 }, 'content'],
    [{ ...ok, messageId: {} }, 'messageId'], [{ ...ok, timestamp: 1 }, 'timestamp'],
    [{ ...ok, senderName: ['a'] }, 'senderName'], [{ ...ok, channelId: 'x'.repeat(257) }, 'channelId'],
    [{ ...ok, content: 'a\u0000b' }, 'content'],
  ];
  for (const [body, field] of cases) assertError(await api(d, 'POST', '/chat/message', body), 400, 'bad_request', field);
  // nothing was stored for channel c
  const h = await api(d, 'GET', '/api/history?channelId=c');
  assert.deepEqual(h.body.messages, []);
});

test('404 for unknown paths under /api/ and /chat/; 405 with Allow for a wrong method', { skip }, async () => {
  for (const path of ['/api/nope', '/chat/nope', '/api/', '/chat/message/extra', '/api/emit/']) {
    assertError(await api(d, 'POST', path, {}), 404, 'not_found');
    assertError(await api(d, 'GET', path, undefined, { secret: null }), 404, 'not_found');
  }
  for (const [method, path, allow] of [['GET', '/chat/message', 'POST'], ['PUT', '/api/emit', 'POST'],
    ['DELETE', '/api/disconnect', 'POST'], ['POST', '/api/presence', 'GET, HEAD'], ['POST', '/api/history', 'GET, HEAD'],
    ['GET', '/api/realtime/token', 'POST'], ['PATCH', '/chat/read-receipt', 'POST']]) {
    const r = await api(d, method, path, method === 'GET' ? undefined : {});
    assertError(r, 405, 'method_not_allowed');
    assert.equal(r.headers.get('allow'), allow);
  }
});

test('413: a body over api.max_body (after the secret)', { skip }, async () => {
  const big = JSON.stringify({ channelId: 'c', senderId: 1, content: 'x'.repeat(4000) });
  const r = await api(d, 'POST', '/chat/message', big);
  assertError(r, 413, 'too_large', 'body');
  // the connection stays usable for the next request
  assert.equal((await api(d, 'GET', '/api/presence')).status, 200);
  assertError(await api(d, 'POST', '/chat/message', big, { secret: 'wrong' }), 401, 'unauthorized');
});

test('503 on every state endpoint while the configured Redis is unreachable; tokens still issued', { skip }, async () => {
  const calls = [
    ['POST', '/chat/message', { channelId: 'c', senderId: 1, content: 'x' }],
    ['POST', '/chat/read-receipt', { channelId: 'c', messageId: 1 }],
    ['POST', '/api/emit', { event: 'x', data: 1 }],
    ['POST', '/api/channels', { channelId: 'c', settings: {} }],
    ['POST', '/api/disconnect', { userId: 'u' }],
    ['GET', '/api/presence?channelId=c'],
    ['GET', '/api/history?channelId=c'],
  ];
  for (const [method, path, body] of calls) assertError(await api(down, method, path, body), 503, 'unavailable');
  // validation still comes first
  assertError(await api(down, 'POST', '/chat/message', { channelId: 'c' }), 400, 'bad_request', 'senderId');
  const t = await api(down, 'POST', '/api/realtime/token', { userId: 'u' });
  assert.equal(t.status, 200);
});

test('OPTIONS is a CORS preflight; responses carry the CORS headers', { skip }, async () => {
  const pre = await fetch(`${d.url}/api/realtime/token`, {
    method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-headers': 'authorization,content-type' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), '*');
  const r = await api(d, 'GET', '/api/presence', undefined, { headers: { origin: 'https://app.example' } });
  assert.equal(r.headers.get('access-control-allow-origin'), '*');
});

test('a client that goes away before its answer is forgotten, the daemon stays up', { skip }, async () => {
  const ch = uniq('gone');
  const aborted = [];
  for (let i = 0; i < 200; i++) {
    const ac = new AbortController();
    const p = fetch(`${d.url}/chat/message`, {
      method: 'POST', signal: ac.signal,
      headers: { authorization: `Bearer ${API_SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channelId: ch, senderId: `s${i}`, content: `c${i}` }),
    }).catch(() => null);
    if (i % 2) setImmediate(() => ac.abort()); else ac.abort();
    aborted.push(p);
  }
  await Promise.all(aborted);
  assert.ok(d.alive);
  const r = await api(d, 'GET', `/api/history?channelId=${ch}&limit=1`);
  assert.equal(r.status, 200);
  await connectAs(d, 'still').then((c) => c.assertAlive());
});

// --- configuration ---------------------------------------------------------------------

function checkConfig(args, env = {}) {
  return new Promise((resolve) => {
    execFile(daemonPath(), ['--check-config', '--set', `server.profile_dir=${PROFILE_DIR}`, ...args], {
      env: { PATH: process.env.PATH, ...env },
    }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

test('configuration: [api] keys, SERVER_SECRET masked, api.enable = yes needs a secret', { skip }, async () => {
  let r = await checkConfig([]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\[api\]\nenable = no\nsecret = ""\nmax_body = 65536\ntoken_ttl = 300s\n/);
  r = await checkConfig(['--set', 'api.enable=yes'], { SERVER_SECRET: 's3cret', REALTIME_JWT_TTL_SECONDS: '45' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /enable = yes\nsecret = "\*\*\*\*\*\*\*\*"\n/);
  assert.match(r.stdout, /token_ttl = 45s/);
  assert.ok(!r.stdout.includes('s3cret'));
  r = await checkConfig(['--set', 'api.enable=yes']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /api\.enable = yes needs api\.secret/);
  r = await checkConfig(['--set', 'api.max_body=10']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /api\.max_body/);
  r = await checkConfig(['--set', 'api.token_ttl=soon']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /api\.token_ttl/);
});

test('api.enable = no: the API paths are not served', { skip }, async () => {
  const r = await api(off, 'POST', '/chat/message', { channelId: 'c', senderId: 1, content: 'x' });
  assert.equal(r.status, 404);
  assert.equal((await api(off, 'POST', '/api/realtime/token', { userId: 'u' })).status, 404);
});

// --- two instances on one Redis ----------------------------------------------------------

const clusterSkip = skip || noRedis || (STORE === 'redis' && 'run once, with the memory-store pass');
let cl;
const ctest = makeTest(() => (cl ? cl.daemons : []));

ctest('two instances: an emit posted to one reaches the sockets of both; a message posted to either', { skip: clusterSkip, timeout: 30000 }, async () => {
  cl = await startCluster({ size: 2, set: { 'api.enable': 'yes', 'api.secret': API_SECRET } });
  try {
    const [A, B] = cl.daemons;
    const ch = uniq('cl');
    const sam = await connectPeer(A, 'sam');
    const tia = await connectPeer(B, 'tia');
    await sam.ok('channel:join', { channelId: ch });
    await tia.ok('channel:join', { channelId: ch });
    // B runs two workers: post several times so that both answer
    for (let i = 0; i < 4; i++) {
      const r = await api(i % 2 ? B : A, 'POST', '/api/emit', { event: 'news', data: i, room: `channel:${ch}` });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    for (const p of [sam, tia]) {
      for (let i = 0; i < 4; i++) await p.next('news', (x) => x === i);
    }
    const r = await api(B, 'POST', '/chat/message', { channelId: ch, senderId: 'ops', content: 'everywhere' });
    assert.equal(r.status, 200);
    for (const p of [sam, tia]) {
      const m = await p.next('message:received', (x) => x.content === 'everywhere');
      assert.equal(m.id, r.body.id);
    }
    await api(A, 'POST', '/api/emit', { event: 'dm', data: 'for tia', user: 'tia' });
    assert.equal(await tia.next('dm'), 'for tia');
    await sam.none('dm');
    // the state is shared: presence and history through the other instance
    const pres = await api(B, 'GET', `/api/presence?channelId=${ch}`);
    assert.deepEqual(pres.body.users.map((u) => u.userId), ['sam', 'tia']);
  } finally {
    closePeers();
  }
});

ctest('two instances: a disconnect posted to one closes the user\'s sockets on both, and a sid on the other', { skip: clusterSkip, timeout: 30000 }, async () => {
  assert.ok(cl, 'the cluster of the previous test');
  try {
    const [A, B] = cl.daemons;
    const ura = await connectPeer(A, 'ura');
    const ura2 = await connectPeer(B, 'ura', { label: 'ura@B', transports: ['polling'] });
    const vic = await connectPeer(B, 'vic');
    const wes = await connectPeer(B, 'wes');
    const gone = [disconnected(ura), disconnected(ura2)];
    let r = await api(A, 'POST', '/api/disconnect', { userId: 'ura' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(await Promise.all(gone), ['io server disconnect', 'io server disconnect']);
    await vic.next('user:offline', (m) => m.userId === 'ura');
    const one = disconnected(wes);
    r = await api(A, 'POST', '/api/disconnect', { sid: wes.id });
    assert.equal(r.status, 200);
    assert.equal(await one, 'io server disconnect');
    assert.equal(await disconnected(vic, QUIET), null);
    await vic.ok('ping', {});
  } finally {
    closePeers();
    await cl.stop();
    cl = null;
  }
});
