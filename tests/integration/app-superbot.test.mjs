// The superbot profile (SPEC 6, seed 004) seen by socket.io-client users
// connecting as the service's page does (`io('/', {query: {token}})`) and by
// its backend on the HTTP API and on Redis:
//
//   auth      the realtime JWT from ?token= only: HS256 with
//             REALTIME_JWT_SECRET (else SECRET_KEY), audience and issuer
//             (superbot-realtime, superbot by default), 10 s of leeway, the
//             username in sub; tokens of /api/realtime/token (expires_in
//             300) open connections; every refusal and its message;
//   connect   connection_status, the room user_{username}, ping/pong,
//             scraper_status subscriptions;
//   channels  channel.join (integer or integer string), channel.presence
//             {channel_id, participants: [{username, last_active}]} sorted,
//             each user once; channel.typing to the others (expires_at now
//             + 6 s), from members only; channel.leave and disconnects;
//   DMs       dm.join / dm.joined {conversation_id, sid}, dm.typing,
//             dm.leave, disconnects;
//   API       slow mode (settings.slow_mode, or slow_mode given with the
//             post) on POST /chat/message: 429 with Retry-After, per user
//             per channel; the message delivered as channel.message;
//   cluster   two instances on one Redis: presence lists hold the users of
//             both, typing and leaving cross, a disconnect on one updates the
//             presence seen on the other, slow mode is shared, and the
//             backend's {event, payload} on realtime:events reaches members
//             on both.
//
// The channel and DM flows run over long-polling only and WebSocket only.
// Times are the service's: Python's isoformat() + 'Z' (microseconds).

import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { makeTest, finish, AEOLUS_ONLY } from './helpers.mjs';
import {
  startApp, startRedis, haveRedis, connect, refused, sleep, T, QUIET, SLOW, STORE, stopStoreRedis,
} from './app-lib.mjs';

const SECRET = 'superbot-realtime-secret-0123456789';
const FLASK = 'the-flask-secret-key-0123456789';
const API_SECRET = 'superbot-server-secret';
const AUD = 'superbot-realtime';
const ISS = 'superbot';

const redisOk = await haveRedis();
const skip = AEOLUS_ONLY;
const skipCluster = AEOLUS_ONLY || (!redisOk && 'redis-server is not installed');

let d;        // the profile with REALTIME_JWT_SECRET and the API, on the file's store
let flask;    // SECRET_KEY only, REALTIME_JWT_TTL_SECONDS=120, typing.ttl=1s
let redis; let cA; let cB;   // two instances on one Redis
const EVENTS = `superbot:rt:${process.pid}`;
const test = makeTest(() => [d, flask, cA, cB]);
const clients = [];

before(async () => {
  if (skip) return;
  d = await startApp({
    profile: 'superbot', jwt: false,
    env: { REALTIME_JWT_SECRET: SECRET, SECRET_KEY: FLASK },
    set: { 'api.enable': 'yes', 'api.secret': API_SECRET },
  });
  d.label = `superbot (${STORE})`;
  flask = await startApp({
    profile: 'superbot', jwt: false,
    env: { SECRET_KEY: FLASK, REALTIME_JWT_TTL_SECONDS: '120' },
    set: { 'api.enable': 'yes', 'api.secret': API_SECRET, 'typing.ttl': '1s' },
  });
  flask.label = 'superbot with SECRET_KEY';
  if (skipCluster) return;
  redis = await startRedis();
  const cluster = {
    profile: 'superbot', jwt: false,
    env: { REALTIME_JWT_SECRET: SECRET, REDIS_EVENTS_CHANNEL: EVENTS },
    set: {
      'redis.url': redis.url, 'redis.prefix': `sb${process.pid}`, 'api.enable': 'yes', 'api.secret': API_SECRET,
    },
  };
  cA = await startApp(cluster);
  cB = await startApp(cluster);
  [cA.label, cB.label] = ['superbot A', 'superbot B'];
});

after(async () => {
  for (const c of clients) c.close();
  await finish([d, flask, cA, cB].filter(Boolean), d);
  if (redis) await redis.stop();
  await stopStoreRedis();
});

// ---------------------------------------------------------------------------
// helpers

const b64u = (x) => Buffer.from(x).toString('base64url');

/** A realtime token as the service's backend signs it (claims: sub, iat, exp, iss, aud). */
function token(sub, { secret = SECRET, alg = 'HS256', ...claims } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = { sub, iat: now, exp: now + 300, iss: ISS, aud: AUD, servers: [], ...claims };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  const head = b64u(JSON.stringify({ alg, typ: 'JWT' }));
  const payload = b64u(JSON.stringify(body));
  const hash = { HS256: 'sha256', HS384: 'sha384' }[alg];
  const sig = crypto.createHmac(hash, secret).update(`${head}.${payload}`).digest('base64url');
  return `${head}.${payload}.${sig}`;
}

/** Connects `user` as the service's page does; waits for its connection_status. */
async function user(daemon, name, { transports = ['websocket'], label, tok } = {}) {
  const c = await connect(daemon, {
    token: tok || token(name), via: 'query', transports, label: label || `${name}@${daemon.label}`,
  });
  clients.push(c);
  await c.next('connection_status');
  return c;
}

async function api(daemon, method, path, body, { secret = API_SECRET } = {}) {
  const headers = {};
  if (secret) headers.authorization = `Bearer ${secret}`;
  const init = { method, headers };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(`${daemon.url}${path}`, init);
  const text = await res.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed, headers: res.headers };
}

const ISO_US = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

/** Asserts v is a time of the service's format, `offset` ms from now (± 3 s). */
function isoAt(v, offset, what) {
  assert.match(v, ISO_US, `${what}: ${v} is not an isoformat() + 'Z' time`);
  const off = Date.parse(v) - Date.now();
  assert.ok(Math.abs(off - offset) < 3000 * SLOW, `${what}: ${v} is ${off} ms from now, not ${offset}`);
}

let seq = 0;
const uniqId = () => 1000 + (process.pid % 1000) * 100 + (++seq);
const uname = (base) => `${base}${process.pid % 10000}x${++seq}`;

/** The participants of a channel.presence: usernames, after checking each entry's shape. */
function names(p, channelId, what) {
  assert.deepEqual(Object.keys(p).sort(), ['channel_id', 'participants'], what);
  assert.equal(p.channel_id, channelId, what);
  for (const e of p.participants) {
    assert.deepEqual(Object.keys(e).sort(), ['last_active', 'username'], `${what}: ${JSON.stringify(e)}`);
    isoAt(e.last_active, 0, `${what}: last_active of ${e.username}`);
  }
  const u = p.participants.map((e) => e.username);
  assert.deepEqual(u, [...u].sort(), `${what}: sorted by username`);
  assert.equal(new Set(u).size, u.length, `${what}: each user once`);
  return u;
}

/** Emits with an ack: the ack's arguments (the service's handlers return nothing). */
function ackArgs(c, event, payload) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${c.label}: no ack for ${event}`)), T);
    c.socket.emit(event, payload, (...args) => { clearTimeout(t); resolve(args); });
  });
}

const MODES = [['websocket'], ['polling']];

// ---------------------------------------------------------------------------
// authentication

test('a token of /api/realtime/token (expires_in 300, audience and issuer by default) opens a connection', { skip }, async () => {
  const r = await api(d, 'POST', '/api/realtime/token', { userId: 'tok' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(Object.keys(r.body).sort(), ['expires_in', 'token']);
  assert.equal(r.body.expires_in, 300);
  const [head, claims] = r.body.token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url')));
  assert.equal(head.alg, 'HS256');
  assert.equal(claims.sub, 'tok');
  assert.equal(claims.aud, AUD);
  assert.equal(claims.iss, ISS);
  assert.equal(claims.exp - claims.iat, 300);
  const c = await user(d, 'tok', { tok: r.body.token });
  assert.ok(c.connected);
  // signed with REALTIME_JWT_SECRET, not SECRET_KEY
  assert.equal(crypto.createHmac('sha256', SECRET).update(r.body.token.split('.').slice(0, 2).join('.'))
    .digest('base64url'), r.body.token.split('.')[2]);
  // no body at all (the service's page posts none): userId is what is missing
  const empty = await fetch(`${d.url}/api/realtime/token`, {
    method: 'POST', headers: { authorization: `Bearer ${API_SECRET}`, accept: 'application/json' },
  });
  assert.equal(empty.status, 400);
  const e = await empty.json();
  assert.equal(e.error, 'bad_request');
  assert.equal(e.field, 'userId');
  c.close();
});

test('SECRET_KEY signs and checks tokens without REALTIME_JWT_SECRET; REALTIME_JWT_TTL_SECONDS sets expires_in', { skip }, async () => {
  const r = await api(flask, 'POST', '/api/realtime/token', { userId: 'fk' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.expires_in, 120);
  const a = await user(flask, 'fk', { tok: r.body.token });
  const b = await user(flask, 'fk2', { tok: token('fk2', { secret: FLASK }) });
  assert.ok(a.connected && b.connected);
  assert.equal((await refused(flask, { token: token('fk3'), via: 'query' })).data.reason, 'signature');
  // and d, with both, checks with REALTIME_JWT_SECRET only
  assert.equal((await refused(d, { token: token('fk4', { secret: FLASK }), via: 'query' })).data.reason, 'signature');
  a.close();
  b.close();
});

test('refusals: no token, a token elsewhere than ?token=, wrong audience or issuer, expired past the leeway, bad signature', { skip }, async () => {
  const now = Math.floor(Date.now() / 1000);
  const cases = [
    [{}, 'authentication_required', 'missing_token'],
    [{ token: token('x'), via: 'auth' }, 'authentication_required', 'missing_token'],
    [{ token: token('x'), via: 'header' }, 'authentication_required', 'missing_token'],
    [{ token: token('x', { aud: 'other' }), via: 'query' }, 'invalid_token', 'audience'],
    [{ token: token('x', { aud: undefined }), via: 'query' }, 'invalid_token', 'audience'],
    [{ token: token('x', { iss: 'other' }), via: 'query' }, 'invalid_token', 'issuer'],
    [{ token: token('x', { iss: undefined }), via: 'query' }, 'invalid_token', 'issuer'],
    [{ token: token('x', { iat: now - 400, exp: now - 11 }), via: 'query' }, 'invalid_token', 'expired'],
    [{ token: token('x', { secret: 'not-the-secret' }), via: 'query' }, 'invalid_token', 'signature'],
    [{ token: token('x', { alg: 'HS384' }), via: 'query' }, 'invalid_token', 'algorithm'],
    [{ token: `${token('x')}x`, via: 'query' }, 'invalid_token', 'signature'],
    [{ token: token(undefined), via: 'query' }, 'invalid_token', 'no_user_id'],
  ];
  for (const [o, message, reason] of cases) {
    const e = await refused(d, o);
    assert.equal(e.message, message, `${JSON.stringify(o).slice(0, 80)}: ${e.message}`);
    assert.equal(e.data.reason, reason, `${JSON.stringify(o).slice(0, 80)}`);
  }
  // expired 5 s ago: within the 10 s leeway
  const late = await user(d, 'late', { tok: token('late', { iat: now - 305, exp: now - 5 }) });
  assert.ok(late.connected);
  late.close();
});

// ---------------------------------------------------------------------------
// connect, ping, scraper status

for (const transports of MODES) {
  const mode = transports[0];

  test(`${mode}: connection_status, the room user_{username}, ping and pong`, { skip }, async () => {
    const name = uname('cs');
    const t0 = Date.now();
    const c = await connect(d, { token: token(name), via: 'query', transports, label: name });
    clients.push(c);
    const st = await c.next('connection_status');
    assert.deepEqual(Object.keys(st).sort(), ['status', 'timestamp', 'username']);
    assert.equal(st.status, 'connected');
    assert.equal(st.username, name);
    isoAt(st.timestamp, 0, 'timestamp');
    assert.ok(Date.parse(st.timestamp) >= t0 - 1000);
    // the personal room: what the backend sends to user_{username}
    const r = await api(d, 'POST', '/api/emit', { event: 'probe', data: { n: 1 }, room: `user_${name}` });
    assert.equal(r.status, 200);
    assert.deepEqual(await c.next('probe'), { n: 1 });
    // ping: pong {timestamp}; with an ack: the pong, and an empty ack
    c.emit('ping');
    const pong = await c.next('pong');
    assert.deepEqual(Object.keys(pong), ['timestamp']);
    isoAt(pong.timestamp, 0, 'pong');
    assert.deepEqual(await ackArgs(c, 'ping', {}), []);
    await c.next('pong');
    await c.none('pong');
    c.close();
  });

  test(`${mode}: subscribe_scraper_status / unsubscribe_scraper_status`, { skip }, async () => {
    const c = await user(d, uname('sc'), { transports });
    const other = await user(d, uname('sc'), { transports });
    c.emit('subscribe_scraper_status');
    assert.deepEqual(await c.next('subscribed'), { channel: 'scraper_status' });
    await api(d, 'POST', '/api/emit', { event: 'probe', data: 's1', room: 'scraper_status' });
    assert.equal(await c.next('probe'), 's1');
    c.emit('unsubscribe_scraper_status');
    assert.deepEqual(await c.next('unsubscribed'), { channel: 'scraper_status' });
    await api(d, 'POST', '/api/emit', { event: 'probe', data: 's2', room: 'scraper_status' });
    await c.none('probe');
    await other.none('probe');
    await other.none('subscribed');
    c.close();
    other.close();
  });
}

// ---------------------------------------------------------------------------
// channels: presence and typing

for (const transports of MODES) {
  const mode = transports[0];

  test(`${mode}: channel.join and channel.presence: each user once, sorted, last_active`, { skip }, async () => {
    const ch = uniqId();
    const [na, nb] = [uname('b'), uname('a')];   // nb sorts first
    const a = await user(d, na, { transports });
    const b1 = await user(d, nb, { transports, label: `${nb}#1` });
    const b2 = await user(d, nb, { transports, label: `${nb}#2` });
    const out = await user(d, uname('z'), { transports });

    const t0 = Date.now();
    a.emit('channel.join', { channel_id: String(ch) });    // an integer string
    let p = await a.next('channel.presence');
    assert.deepEqual(names(p, ch, 'a joined'), [na]);
    const aActive = p.participants[0].last_active;
    assert.ok(Date.parse(aActive) >= t0 - 1000);

    await sleep(20);
    b1.emit('channel.join', { channel_id: ch });
    for (const c of [a, b1]) {
      p = await c.next('channel.presence');
      assert.deepEqual(names(p, ch, `${c.label}: b joined`), [nb, na]);
      assert.equal(p.participants[1].last_active, aActive, 'a\'s last_active is when a joined');
      assert.ok(p.participants[0].last_active > aActive, 'b joined later');
    }
    // a second socket of b's: b once
    assert.deepEqual(await ackArgs(b2, 'channel.join', { channel_id: ch }), []);
    for (const c of [a, b1, b2]) {
      p = await c.next('channel.presence');
      assert.deepEqual(names(p, ch, `${c.label}: b's second socket`), [nb, na]);
    }
    await out.none('channel.presence');
    for (const c of [a, b1, b2, out]) c.close();
  });

  test(`${mode}: channel.typing goes to the other members, expiring in 6 s; not from non-members`, { skip }, async () => {
    const ch = uniqId();
    const [aName, bName] = [uname('ty'), uname('ty')];
    const a = await user(d, aName, { transports });
    const b = await user(d, bName, { transports });
    const b2 = await user(d, bName, { transports, label: `${bName}#2` });
    const out = await user(d, uname('ty'), { transports });
    for (const [c, n] of [[a, 1], [b, 2], [b2, 2]]) {
      c.emit('channel.join', { channel_id: ch });
      await c.next('channel.presence', (p) => p.participants.length === n);
    }
    a.emit('channel.typing', { channel_id: String(ch) });
    for (const c of [b, b2]) {
      const t = await c.next('channel.typing');
      assert.deepEqual(Object.keys(t).sort(), ['channel_id', 'expires_at', 'typing', 'username']);
      assert.equal(t.channel_id, ch);
      assert.equal(t.username, aName);
      assert.equal(t.typing, true);
      isoAt(t.expires_at, 6000, `${c.label}: expires_at`);
    }
    // b types: a and b's other socket get it, b's typing socket does not
    b.emit('channel.typing', { channel_id: ch });
    assert.equal((await a.next('channel.typing')).username, bName);
    assert.equal((await b2.next('channel.typing')).username, bName);
    // a non-member, a bad channel_id, a missing one: nothing, no error
    out.emit('channel.typing', { channel_id: ch });
    out.emit('channel.typing', { channel_id: 'abc' });
    out.emit('channel.typing', {});
    assert.deepEqual(await ackArgs(out, 'channel.typing', { channel_id: ch }), []);
    for (const c of [a, b, b2, out]) {
      await c.none('channel.typing', () => true);
      await c.none('error');
    }
    for (const c of [a, b, b2, out]) c.close();
  });

  test(`${mode}: channel.leave and a disconnect: typing false and the new presence to the room`, { skip }, async () => {
    const ch = uniqId();
    const [na, nb, nc] = [uname('la'), uname('lb'), uname('lc')];
    const a = await user(d, na, { transports });
    const b = await user(d, nb, { transports });
    const b2 = await user(d, nb, { transports, label: `${nb}#2` });
    const c = await user(d, nc, { transports });
    for (const [x, n] of [[a, 1], [b, 2], [b2, 2], [c, 3]]) {
      x.emit('channel.join', { channel_id: ch });
      await x.next('channel.presence', (p) => p.participants.length === n);
    }
    // every presence of the joins delivered (polling may lag), then forgotten
    for (const x of [a, b, b2]) await x.next('channel.presence', (p) => p.participants.length === 3);
    for (const x of [a, b, b2, c]) x.clear();

    a.emit('channel.leave', { channel_id: String(ch) });
    for (const x of [b, b2, c]) {
      const t = await x.next('channel.typing');
      assert.deepEqual(Object.keys(t).sort(), ['channel_id', 'expires_at', 'typing', 'username']);
      assert.deepEqual({ ...t, expires_at: 0 }, { channel_id: ch, username: na, expires_at: 0, typing: false });
      isoAt(t.expires_at, 0, 'expires_at');
      const p = await x.next('channel.presence');
      assert.deepEqual(names(p, ch, `${x.label}: a left`), [nb, nc].sort());
    }
    await a.none('channel.typing');
    await a.none('channel.presence');
    // a no longer in the room: its typing goes nowhere
    a.emit('channel.typing', { channel_id: ch });
    await c.none('channel.typing');

    // b's second socket goes: b stays, with its other socket
    b2.close();
    for (const x of [b, c]) {
      const t = await x.next('channel.typing');
      assert.deepEqual({ ...t, expires_at: 0 }, { channel_id: ch, username: nb, expires_at: 0, typing: false });
      const p = await x.next('channel.presence');
      assert.deepEqual(names(p, ch, `${x.label}: b's second socket gone`), [nb, nc].sort());
    }
    // b's last socket goes: c sees b leave
    b.close();
    const t = await c.next('channel.typing');
    assert.equal(t.username, nb);
    assert.equal(t.typing, false);
    assert.deepEqual(names(await c.next('channel.presence'), ch, 'b gone'), [nc]);
    a.close();
    c.close();
  });

  test(`${mode}: a bad or missing channel_id is ignored without an answer`, { skip }, async () => {
    const a = await user(d, uname('bad'), { transports });
    for (const payload of [{ channel_id: 'abc' }, { channel_id: '1.5' }, { channel_id: null }, {}, 'x']) {
      assert.deepEqual(await ackArgs(a, 'channel.join', payload), [], JSON.stringify(payload));
      a.emit('channel.join', payload);
      a.emit('channel.leave', payload);
      a.emit('dm.join', typeof payload === 'object' && payload ? { conversation_id: payload.channel_id } : payload);
    }
    await a.none('channel.presence');
    await a.none('channel.typing');
    await a.none('dm.joined');
    await a.none('error');
    assert.deepEqual(a.events.map((e) => e.event), ['connection_status']);
    a.close();
  });

  // -------------------------------------------------------------------------
  // DMs

  test(`${mode}: dm.join answers dm.joined {conversation_id, sid}; dm.typing to the others; dm.leave; a disconnect`, { skip }, async () => {
    const conv = uniqId();
    const [na, nb] = [uname('da'), uname('db')];
    const a = await user(d, na, { transports });
    const b = await user(d, nb, { transports });
    const out = await user(d, uname('dz'), { transports });
    a.emit('dm.join', { conversation_id: String(conv) });
    assert.deepEqual(await a.next('dm.joined'), { conversation_id: conv, sid: a.id });
    assert.deepEqual(await ackArgs(b, 'dm.join', { conversation_id: conv }), []);
    assert.deepEqual(await b.next('dm.joined'), { conversation_id: conv, sid: b.id });
    await out.none('dm.joined');

    a.emit('dm.typing', { conversation_id: conv });
    const t = await b.next('dm.typing');
    assert.deepEqual(Object.keys(t).sort(), ['conversation_id', 'expires_at', 'typing', 'username']);
    assert.deepEqual({ ...t, expires_at: 0 }, { conversation_id: conv, username: na, expires_at: 0, typing: true });
    isoAt(t.expires_at, 6000, 'expires_at');
    await a.none('dm.typing');
    // not a member: nothing
    out.emit('dm.typing', { conversation_id: conv });
    await b.none('dm.typing');

    b.emit('dm.leave', { conversation_id: conv });
    const left = await a.next('dm.typing');
    assert.deepEqual({ ...left, expires_at: 0 }, { conversation_id: conv, username: nb, expires_at: 0, typing: false });
    isoAt(left.expires_at, 0, 'expires_at');
    b.emit('dm.typing', { conversation_id: conv });
    await a.none('dm.typing');

    b.emit('dm.join', { conversation_id: conv });
    await b.next('dm.joined');
    a.close();
    const gone = await b.next('dm.typing');
    assert.deepEqual({ ...gone, expires_at: 0 }, { conversation_id: conv, username: na, expires_at: 0, typing: false });
    b.close();
    out.close();
  });
}

test('typing lasts typing.ttl (a profile default that aeolus.conf overrides), and expires silently', { skip }, async () => {
  const ch = uniqId();
  const a = await user(flask, 'tta', { tok: token('tta', { secret: FLASK }) });
  const b = await user(flask, 'ttb', { tok: token('ttb', { secret: FLASK }) });
  for (const c of [a, b]) {
    c.emit('channel.join', { channel_id: ch });
    await c.next('channel.presence', (p) => p.participants.length === (c === a ? 1 : 2));
  }
  a.emit('channel.typing', { channel_id: ch });
  isoAt((await b.next('channel.typing')).expires_at, 1000, 'expires_at with typing.ttl 1s');
  await sleep(1500 * SLOW);
  await b.none('channel.typing');
  await a.none('channel.typing');
  a.close();
  b.close();
});

// ---------------------------------------------------------------------------
// slow mode on messages posted through the API

function message(id, ch, sender, body) {
  return {
    id, channel_id: ch, sender_id: sender, body, message_type: 'text', rich_content: {}, thread_root_id: null,
    created_at: '2026-01-06 12:00:00', edited_at: null, display_name: sender, attachments: [], reactions: [],
  };
}

test('slow mode: settings.slow_mode of POST /api/channels, per user per channel, 429 with Retry-After; the message as channel.message', { skip }, async () => {
  const ch = uniqId();
  const [na, nb] = [uname('sa'), uname('sb')];
  const a = await user(d, na);
  const b = await user(d, nb);
  const out = await user(d, uname('so'));
  for (const c of [a, b]) {
    c.emit('channel.join', { channel_id: ch });
    await c.next('channel.presence', (p) => p.participants.length === (c === a ? 1 : 2));
  }
  let r = await api(d, 'POST', '/api/channels', { channelId: ch, settings: { slow_mode: 30, posting_roles: ['owner'] } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, { success: true, channel_id: ch, settings: { slow_mode: 30, posting_roles: ['owner'] } });

  const m1 = message(1, ch, na, 'hello');
  r = await api(d, 'POST', '/chat/message', { channelId: ch, senderId: na, content: 'hello', message: m1 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, { success: true, channel_id: ch, sender: na, delivered: true });
  for (const c of [a, b]) {
    assert.deepEqual(await c.next('channel.message'), { channel_id: ch, message: m1, sender: na });
  }
  // within the cooldown: 429, Retry-After, nothing delivered
  r = await api(d, 'POST', '/chat/message', { channelId: ch, senderId: na, content: 'again', message: message(2, ch, na, 'again') });
  assert.equal(r.status, 429, JSON.stringify(r.body));
  const wait = Number(r.headers.get('retry-after'));
  assert.ok(wait >= 29 && wait <= 30, `Retry-After ${wait}`);
  assert.equal(r.body.error, 'slow_mode');
  assert.equal(r.body.retryAfter, wait);
  assert.equal(typeof r.body.message, 'string');
  // another user is not slowed by it; the same user elsewhere neither
  r = await api(d, 'POST', '/chat/message', { channelId: ch, senderId: nb, content: 'hi', message: message(3, ch, nb, 'hi') });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal((await a.next('channel.message')).message.id, 3);
  assert.equal((await b.next('channel.message')).message.id, 3);
  r = await api(d, 'POST', '/chat/message', { channelId: ch + 1, senderId: na, content: 'x', message: message(4, ch + 1, na, 'x') });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  for (const c of [a, b, out]) await c.none('channel.message');
  await out.none('channel.message');
  a.close();
  b.close();
  out.close();
});

test('slow mode given with the post (slow_mode), a post without message reserves the slot alone, 0 is none', { skip }, async () => {
  const ch = uniqId();
  const na = uname('sg');
  const a = await user(d, na);
  a.emit('channel.join', { channel_id: ch });
  await a.next('channel.presence');
  let r = await api(d, 'POST', '/chat/message', { channelId: String(ch), senderId: na, slow_mode: 5 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, { success: true, channel_id: ch, sender: na, delivered: false });
  r = await api(d, 'POST', '/chat/message', { channelId: ch, senderId: na, slow_mode: '5', message: message(9, ch, na, 'm') });
  assert.equal(r.status, 429);
  const wait = Number(r.headers.get('retry-after'));
  assert.ok(wait >= 4 && wait <= 5, `Retry-After ${wait}`);
  await a.none('channel.message');
  // no slow mode: as many as the backend posts
  for (let i = 0; i < 3; i++) {
    r = await api(d, 'POST', '/chat/message', { channelId: ch + 1, senderId: na, slow_mode: 0, message: { id: i } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  // a bad slow_mode, a missing sender or channel
  r = await api(d, 'POST', '/chat/message', { channelId: ch + 2, senderId: na, slow_mode: 'soon' });
  assert.equal(r.status, 400);
  r = await api(d, 'POST', '/chat/message', { channelId: ch + 2, message: {} });
  assert.equal(r.status, 400);
  assert.equal(r.body.field, 'senderId');
  r = await api(d, 'POST', '/chat/message', { senderId: na, message: {} });
  assert.equal(r.status, 400);
  a.close();
});

test('GET /api/presence?channelId= lists the channel\'s participants as channel.presence does', { skip }, async () => {
  const ch = uniqId();
  const na = uname('gp');
  const a = await user(d, na);
  a.emit('channel.join', { channel_id: ch });
  await a.next('channel.presence');
  const r = await api(d, 'GET', `/api/presence?channelId=${ch}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(names(r.body, ch, 'the API'), [na]);
  a.close();
});

// ---------------------------------------------------------------------------
// two instances on one Redis

test('cluster: presence lists hold the users of both instances; typing and leaving cross; a disconnect on A is seen on B', { skip: skipCluster }, async () => {
  for (const transports of MODES) {
    const ch = uniqId();
    const [na, nb, nc] = [uname('ka'), uname('kb'), uname('kc')];
    const a = await user(cA, na, { transports });
    const b = await user(cB, nb, { transports });
    const c = await user(cB, nc, { transports });
    a.emit('channel.join', { channel_id: ch });
    assert.deepEqual(names(await a.next('channel.presence'), ch, 'a@A'), [na]);
    // (a presence sent from A before b joined on B may still reach b:
    // each step waits for the list it makes)
    const listing = (...u) => (p) => p.participants.map((e) => e.username).join() === u.join();
    b.emit('channel.join', { channel_id: ch });
    for (const x of [a, b]) {
      assert.deepEqual(names(await x.next('channel.presence', listing(na, nb)), ch, `${x.label}: b joined on B`), [na, nb]);
    }
    c.emit('channel.join', { channel_id: String(ch) });
    for (const x of [a, b, c]) {
      assert.deepEqual(names(await x.next('channel.presence', listing(na, nb, nc)), ch, `${x.label}: c joined on B`), [na, nb, nc]);
    }
    a.emit('channel.typing', { channel_id: ch });
    for (const x of [b, c]) {
      const t = await x.next('channel.typing');
      assert.equal(t.username, na);
      assert.equal(t.typing, true);
      isoAt(t.expires_at, 6000, `${x.label}: expires_at`);
    }
    b.emit('channel.typing', { channel_id: ch });
    assert.equal((await a.next('channel.typing')).username, nb);
    c.emit('channel.leave', { channel_id: ch });
    assert.deepEqual({ ...(await a.next('channel.typing')), expires_at: 0 },
      { channel_id: ch, username: nc, expires_at: 0, typing: false });
    assert.deepEqual(names(await a.next('channel.presence', listing(na, nb)), ch, 'c left on B'), [na, nb]);
    a.close();
    assert.deepEqual({ ...(await b.next('channel.typing', (t) => t.username === na)), expires_at: 0 },
      { channel_id: ch, username: na, expires_at: 0, typing: false });
    assert.deepEqual(names(await b.next('channel.presence', listing(nb)), ch, 'a gone from A'), [nb]);
    await c.none('channel.presence', listing(nb));
    b.close();
    c.close();
  }
});

test('cluster: slow mode is shared by the instances; the backend\'s {event, payload} reaches members on both', { skip: skipCluster }, async () => {
  const ch = uniqId();
  const conv = uniqId();
  const [na, nb] = [uname('pa'), uname('pb')];
  const a = await user(cA, na);
  const b = await user(cB, nb, { transports: ['polling'] });
  const out = await user(cA, uname('po'));
  for (const x of [a, b]) {
    x.emit('channel.join', { channel_id: ch });
    x.emit('dm.join', { conversation_id: conv });
    await x.next('dm.joined');
  }
  await b.next('channel.presence', (p) => p.participants.length === 2);
  let r = await api(cA, 'POST', '/api/channels', { channelId: ch, settings: { slow_mode: 20 } });
  assert.equal(r.status, 200);
  r = await api(cA, 'POST', '/chat/message', { channelId: ch, senderId: na, message: message(1, ch, na, 'one') });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  for (const x of [a, b]) assert.equal((await x.next('channel.message')).message.body, 'one');
  r = await api(cB, 'POST', '/chat/message', { channelId: ch, senderId: na, message: message(2, ch, na, 'two') });
  assert.equal(r.status, 429, 'the cooldown taken on A holds on B');
  assert.ok(Number(r.headers.get('retry-after')) >= 19);

  // the backend publishes as the service did
  const dm = { conversation_id: conv, message: { id: 77, body: 'yo', sender: nb }, sender: nb };
  assert.equal(await redis.command('PUBLISH', EVENTS, JSON.stringify({ event: 'dm.message', payload: dm })), 2);
  for (const x of [a, b]) assert.deepEqual(await x.next('dm.message'), dm);
  const cm = { channel_id: String(ch), message: message(5, ch, nb, 'bus'), sender: nb };
  await redis.command('PUBLISH', EVENTS, JSON.stringify({ event: 'channel.message', payload: cm }));
  for (const x of [a, b]) assert.deepEqual(await x.next('channel.message'), { ...cm, channel_id: ch });
  await sleep(QUIET);
  for (const x of [a, b]) {
    assert.equal(x.all('dm.message').length, 1, `${x.label}: one copy`);
    assert.equal(x.all('channel.message').length, 2, `${x.label}: one copy`);
  }
  await out.none('dm.message');
  await out.none('channel.message');
  a.close();
  b.close();
  out.close();
});
