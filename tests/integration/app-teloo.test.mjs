// The teloo profile (SPEC 6, seed 002) as the TeLOO Realtime Gateway's own
// clients see it, with socket.io-client: JWT authentication (HS256 with
// JWT_SECRET_KEY, RS256 with JWT_PUBLIC_KEY_PATH, and the secret when
// JWT_ALGORITHM names RS256 but there is no key file, as the Core API then
// signs), the role rooms and connected / user_joined / user_left, ping,
// subscribe_solicitud / unsubscribe_solicitud, the Core API's native
// channels as the clients receive them, GET /, /health and /stats, and the
// seed's environment variables. The main flows run over polling only and
// WebSocket only, on the test's store (AEOLUS_TEST_STORE); what needs the
// Core API's Redis (the channels, two instances) runs on a redis-server of
// its own, with two instances on it.

import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { io } from 'socket.io-client';
import { makeTest, finish, freePort, daemonPath, AEOLUS_ONLY } from './helpers.mjs';
import { startProxy } from './cluster-lib.mjs';
import {
  startApp, startRedis, haveRedis, connect, refused, closeAll, jwt, SECRET, PROFILE_DIR,
  sleep, withTimeout, T, QUIET, SLOW,
} from './app-lib.mjs';

const skip = AEOLUS_ONLY;
const noRedis = !(await haveRedis()) && 'redis-server is not installed';
const skipRedis = skip || noRedis;
const TRANSPORTS = [['polling'], ['websocket']];
const tname = (tr) => `${tr[0]} only`;

let d;                   // HS256 (JWT_SECRET_KEY alone, as TeLOO's compose files), the test's store
let rs;                  // JWT_ALGORITHM=RS256 with JWT_PUBLIC_KEY_PATH (and a JWT_SECRET_KEY)
let hs;                  // JWT_ALGORITHM=HS256 with both a key path and the secret
let fb;                  // JWT_ALGORITHM=RS256, a key path with no file, the secret (.env.example)
let fb2;                 // JWT_ALGORITHM=RS256 and the secret only (the repository's .env)
let redis; let A; let B; // two instances on one Redis (the Core API publishes there)
const test = makeTest(() => [d, rs, hs, fb, fb2, A, B]);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aeolus-teloo-'));
const keys = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const PUBLIC_PEM = keys.publicKey.export({ type: 'spki', format: 'pem' });
const PUBLIC_KEY_PATH = path.join(tmp, 'public.pem');
fs.writeFileSync(PUBLIC_KEY_PATH, PUBLIC_PEM);

before(async () => {
  if (skip) return;
  d = await startApp({ profile: 'teloo' });
  rs = await startApp({ profile: 'teloo', jwt: false,
    env: { JWT_ALGORITHM: 'RS256', JWT_PUBLIC_KEY_PATH: PUBLIC_KEY_PATH, JWT_SECRET_KEY: SECRET } });
  hs = await startApp({ profile: 'teloo', jwt: false,
    env: { JWT_ALGORITHM: 'HS256', JWT_PUBLIC_KEY_PATH: PUBLIC_KEY_PATH, JWT_SECRET_KEY: SECRET } });
  fb = await startApp({ profile: 'teloo', jwt: false,
    env: { JWT_ALGORITHM: 'RS256', JWT_PUBLIC_KEY_PATH: path.join(tmp, 'keys', 'public.pem'),
      JWT_SECRET_KEY: SECRET } });
  fb2 = await startApp({ profile: 'teloo', jwt: false,
    env: { JWT_ALGORITHM: 'RS256', JWT_SECRET_KEY: SECRET } });
  [d.label, rs.label, hs.label, fb.label, fb2.label] =
    ['teloo', 'teloo RS256', 'teloo HS256', 'teloo RS256 without key file', 'teloo RS256 without key'];
  if (noRedis) return;
  redis = await startRedis();
  const shared = { 'redis.url': redis.url, 'redis.prefix': `teloo-${process.pid}` };
  A = await startApp({ profile: 'teloo', set: shared });
  B = await startApp({ profile: 'teloo', set: shared });
  [A.label, B.label] = ['teloo A', 'teloo B'];
  await listening(redis, 2);
});

afterEach(() => closeAll());

after(async () => {
  closeAll();
  await finish([d, rs, hs, fb, fb2, A, B], d);
  if (redis) await redis.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// helpers

/** An RS256 JWT signed with the test's private key (or `key`). */
function rs256(claims, key = keys.privateKey) {
  const now = Math.floor(Date.now() / 1000);
  const b64 = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
  const input = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64({ iat: now, exp: now + 3600, ...claims })}`;
  return `${input}.${crypto.sign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

/** A token as the Core API makes it: sub (the user's email), user_id, role, name. */
function token(sub, role, o = {}) {
  const claims = { sub, user_id: `uuid-${sub}`, name: sub, type: 'access' };
  if (role !== undefined) claims.role = role;
  return jwt(claims, o);
}

/** Connects user `sub` with `role` (undefined: none) and waits for `connected`. */
async function user(daemon, sub, role, o = {}) {
  const c = await connect(daemon, { token: token(sub, role), label: o.label || `${sub}@${daemon.label}`, ...o });
  c.hello = await c.next('connected');
  return c;
}

/** Until `n` instances listen to the Core API's channels (5 patterns each). */
async function listening(r, n) {
  const deadline = Date.now() + 5000 * SLOW;
  for (;;) {
    const list = await r.command('CLIENT', 'LIST');
    const patterns = [...list.matchAll(/ psub=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
    if (patterns >= 5 * n) return;
    if (Date.now() > deadline) throw new Error(`${patterns} pattern subscriptions, want ${5 * n}`);
    await sleep(20);
  }
}

function publish(channel, msg) {
  return redis.command('PUBLISH', channel, JSON.stringify(msg));
}

let seq = 0;
const mark = () => `t${process.pid}-${++seq}`;

/** The events named `event` of c whose data holds the mark n. */
const got = (c, event, n) => c.all(event).filter((x) => JSON.stringify(x).includes(n));

async function getJson(daemon, p) {
  const res = await fetch(`${daemon.url}${p}`);
  assert.match(res.headers.get('content-type'), /^application\/json/);
  return { status: res.status, body: await res.json() };
}

/** Polls /stats until pred holds; returns the last answer. */
async function statsUntil(daemon, pred, what) {
  const deadline = Date.now() + T;
  let last;
  for (;;) {
    last = (await getJson(daemon, '/stats')).body;
    if (pred(last)) return last;
    if (Date.now() > deadline) throw new Error(`${daemon.label}: /stats never showed ${what}: ${JSON.stringify(last)}`);
    await sleep(25);
  }
}

const counts = (s) => ({
  connected_users: s.connected_users, admins_connected: s.admins_connected,
  advisors_connected: s.advisors_connected, clients_connected: s.clients_connected,
});

// ---------------------------------------------------------------------------
// connections: auth, role rooms, connected, user_joined, user_left

for (const tr of TRANSPORTS) {
  test(`${tname(tr)}: connected tells the user id (sub), the role as the token has it and the role's room`, { skip }, async () => {
    const cases = [
      ['ana@teloo.co', 'ADMIN', 'admin'], ['an@teloo.co', 'ANALYST', 'admin'],
      ['su@teloo.co', 'SUPPORT', 'admin'], ['as@teloo.co', 'ADVISOR', 'advisor'],
      ['lo@teloo.co', 'advisor', 'advisor'], ['cl@teloo.co', 'CLIENT', 'client'],
      ['no@teloo.co', undefined, 'client'], ['ot@teloo.co', 'GUEST', 'client'],
    ];
    for (const [sub, role, room] of cases) {
      const c = await user(d, sub, role, { transports: tr });
      assert.deepEqual(c.hello, {
        message: 'Connected to TeLOO Realtime Gateway', user_id: sub, role: role || 'CLIENT', room,
      }, `${sub} (${role})`);
      c.close();
    }
  });

  test(`${tname(tr)}: user_joined goes to the others of the role's room, user_left to those who stay`, { skip }, async () => {
    const u = mark();
    const admin = await user(d, `adm-${u}`, 'ADMIN', { transports: tr });
    const admin2 = await user(d, `adm2-${u}`, 'ADMIN', { transports: tr });
    const advisor = await user(d, `as-${u}`, 'ADVISOR', { transports: tr });
    const client = await user(d, `cl-${u}`, undefined, { transports: tr });
    assert.deepEqual(await admin.next('user_joined', (x) => x.user_id === `adm2-${u}`),
      { user_id: `adm2-${u}`, role: 'ADMIN' });
    const support = await user(d, `su-${u}`, 'SUPPORT', { transports: tr });
    for (const c of [admin, admin2]) {
      assert.deepEqual(await c.next('user_joined', (x) => x.user_id === `su-${u}`),
        { user_id: `su-${u}`, role: 'SUPPORT' });
    }
    support.close();
    for (const c of [admin, admin2]) {
      assert.deepEqual(await c.next('user_left', (x) => x.user_id === `su-${u}`),
        { user_id: `su-${u}`, role: 'SUPPORT' });
    }
    await sleep(QUIET);
    assert.deepEqual(support.all('user_joined'), [], 'nothing of its own joining');
    assert.deepEqual(admin2.all('user_joined').filter((x) => x.user_id === `adm2-${u}`), []);
    for (const c of [advisor, client]) {
      assert.deepEqual([...c.all('user_joined'), ...c.all('user_left')]
        .filter((x) => x.user_id.endsWith(u) && x.user_id !== c.hello.user_id), [], c.label);
    }
    // a second tab of the same user: the first is told too (the service skips only the new socket)
    const advisorTab = await user(d, `as-${u}`, 'ADVISOR', { transports: tr });
    const mine = (x) => x.user_id === `as-${u}`;
    assert.deepEqual(await advisor.next('user_joined', mine), { user_id: `as-${u}`, role: 'ADVISOR' });
    advisorTab.close();
    assert.deepEqual(await advisor.next('user_left', mine), { user_id: `as-${u}`, role: 'ADVISOR' });
  });
}

test('the token comes from the CONNECT auth {token} or the query ?token=, not from a header', { skip }, async () => {
  const viaQuery = await connect(d, { token: token('q@teloo.co', 'ADVISOR'), via: 'query', transports: ['polling'] });
  assert.equal((await viaQuery.next('connected')).user_id, 'q@teloo.co');
  const viaQueryWs = await connect(d, { token: token('qw@teloo.co', 'CLIENT'), via: 'query', transports: ['websocket'] });
  assert.equal((await viaQueryWs.next('connected')).room, 'client');
  const err = await refused(d, { token: token('h@teloo.co', 'ADMIN'), via: 'header' });
  assert.equal(err.message, 'authentication_required');
});

test('refusals: CONNECT_ERROR authentication_required without a token, invalid_token for a bad one', { skip }, async () => {
  for (const tr of TRANSPORTS) {
    assert.equal((await refused(d, { transports: tr })).message, 'authentication_required');
    const cases = [
      jwt({ sub: 'x', role: 'ADMIN' }, { secret: 'another-secret-0123456789abcdef' }),   // signature
      jwt({ sub: 'x', role: 'ADMIN', exp: Math.floor(Date.now() / 1000) - 10 }),          // expired
      jwt({ user_id: 'x', role: 'ADMIN' }),                                               // no sub
      'not-a-jwt',
    ];
    for (const t of cases) {
      const e = await refused(d, { token: t, transports: tr });
      assert.equal(e.message, 'invalid_token', t);
    }
  }
});

test('RS256 with JWT_PUBLIC_KEY_PATH: RS256 tokens accepted; HS256 refused, signed with the secret or with the public key', { skip }, async () => {
  for (const tr of TRANSPORTS) {
    const c = await connect(rs, { token: rs256({ sub: 'rs@teloo.co', role: 'ADVISOR' }), transports: tr });
    assert.deepEqual(await c.next('connected'), {
      message: 'Connected to TeLOO Realtime Gateway', user_id: 'rs@teloo.co', role: 'ADVISOR', room: 'advisor',
    });
    c.close();
  }
  // the secret is configured too (.env.example has both): an HS256 token made with it is refused
  let e = await refused(rs, token('hs@teloo.co', 'ADMIN'));
  assert.equal(e.message, 'invalid_token');
  assert.equal(e.data.reason, 'algorithm');
  // algorithm confusion: the public key's PEM as an HMAC secret
  e = await refused(rs, jwt({ sub: 'evil', role: 'ADMIN' }, { secret: PUBLIC_PEM }));
  assert.equal(e.message, 'invalid_token');
  assert.equal(e.data.reason, 'algorithm');
  // another RSA key
  const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  e = await refused(rs, rs256({ sub: 'evil', role: 'ADMIN' }, other));
  assert.equal(e.message, 'invalid_token');
  assert.equal(e.data.reason, 'signature');
  // alg none
  const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.` +
    `${Buffer.from(JSON.stringify({ sub: 'evil', role: 'ADMIN' })).toString('base64url')}.`;
  assert.equal((await refused(rs, none)).message, 'invalid_token');
});

test('HS256 with JWT_SECRET_KEY: JWT_ALGORITHM picks the secret even with a key path set; RS256 tokens refused', { skip }, async () => {
  const c = await connect(hs, { token: token('hs@teloo.co', 'CLIENT'), transports: ['websocket'] });
  assert.equal((await c.next('connected')).user_id, 'hs@teloo.co');
  const e = await refused(hs, rs256({ sub: 'rs@teloo.co', role: 'ADMIN' }));
  assert.equal(e.message, 'invalid_token');
  assert.equal(e.data.reason, 'algorithm');
});

test('RS256 named but no public key (no path, or no file at it): the secret checks HS256 tokens, as the Core API signs them then', { skip }, async () => {
  for (const daemon of [fb, fb2]) {
    const c = await connect(daemon, { token: token('core@teloo.co', 'ADMIN'), transports: ['polling'] });
    assert.equal((await c.next('connected')).room, 'admin');
    c.close();
    const e = await refused(daemon, rs256({ sub: 'rs@teloo.co', role: 'ADMIN' }));
    assert.equal(e.message, 'invalid_token', daemon.label);
    assert.equal((await refused(daemon, jwt({ sub: 'x' }, { secret: 'wrong-secret-0123456789abcdef' }))).message,
      'invalid_token');
  }
  assert.match(fb.stderr + fb2.stderr, /secret \(HS256\)/, 'the fallback is logged');
});

// ---------------------------------------------------------------------------
// client events

for (const tr of TRANSPORTS) {
  test(`${tname(tr)}: ping is answered by pong {timestamp} (the service's str(datetime))`, { skip }, async () => {
    const c = await user(d, `p-${mark()}`, 'CLIENT', { transports: tr });
    c.emit('ping');
    const pong = await c.next('pong');
    assert.deepEqual(Object.keys(pong), ['timestamp']);
    assert.match(pong.timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
    assert.ok(Math.abs(Date.parse(`${pong.timestamp.replace(' ', 'T').slice(0, 23)}Z`) - Date.now()) < 60000);
    // a client that asks for an ack gets the pong event too, and an empty ack
    const ack = await c.socket.timeout(T).emitWithAck('ping');
    assert.equal(ack, undefined);
    await c.next('pong');
  });

  test(`${tname(tr)}: subscribe_solicitud joins solicitud_{id} and says subscribed; unsubscribe_solicitud leaves`, { skip }, async () => {
    const c = await user(d, `s-${mark()}`, 'ADVISOR', { transports: tr });
    c.emit('subscribe_solicitud', { solicitud_id: 7 });
    assert.deepEqual(await c.next('subscribed'), { room: 'solicitud_7' });
    c.emit('subscribe_solicitud', { solicitud_id: 'sol-123' });
    assert.deepEqual(await c.next('subscribed'), { room: 'solicitud_sol-123' });
    c.emit('unsubscribe_solicitud', { solicitud_id: 'sol-123' });
    assert.deepEqual(await c.next('unsubscribed'), { room: 'solicitud_sol-123' });
    // with an ack: the same event, and an empty ack
    assert.equal(await c.socket.timeout(T).emitWithAck('subscribe_solicitud', { solicitud_id: 8 }), undefined);
    assert.deepEqual(await c.next('subscribed'), { room: 'solicitud_8' });
    // no id
    for (const bad of [{}, { solicitud_id: '' }, { solicitud_id: null }, { other: 1 }, 'x']) {
      c.emit('subscribe_solicitud', bad);
      assert.deepEqual(await c.next('error'), { message: 'solicitud_id required' }, JSON.stringify(bad));
      c.emit('unsubscribe_solicitud', bad);
      assert.deepEqual(await c.next('error'), { message: 'solicitud_id required' }, JSON.stringify(bad));
    }
    c.emit('subscribe_solicitud');
    assert.deepEqual(await c.next('error'), { message: 'solicitud_id required' });
    await sleep(QUIET);
    assert.equal(c.all('subscribed').length, 3);
    assert.equal(c.all('unsubscribed').length, 1);
  });
}

// ---------------------------------------------------------------------------
// the Core API's channels, as the clients receive them (two instances on one Redis)

let core;                // the clients of the channel test under way
async function coreClients() {
  const u = mark();
  core = {
    u,
    admin: await user(B, `admin-${u}`, 'ADMIN', { transports: ['polling'], label: 'admin@B (polling)' }),
    advisorA: await user(A, `asesor-${u}`, 'ADVISOR', { transports: ['websocket'], label: 'advisor@A' }),
    advisorB: await user(B, `asesor2-${u}`, 'ADVISOR', { transports: ['polling'], label: 'advisor2@B (polling)' }),
    clientA: await user(A, `cliente-${u}`, 'CLIENT', { transports: ['polling'], label: 'client@A (polling)' }),
    clientB: await user(B, `cliente2-${u}`, undefined, { transports: ['websocket'], label: 'client2@B' }),
  };
  core.all = [core.admin, core.advisorA, core.advisorB, core.clientA, core.clientB];
  return core;
}

/** Each of `yes` gets `event` with data exactly `msg`, once; the others nothing with the mark. */
async function expectOnce(yes, event, msg, n) {
  for (const c of yes) assert.deepEqual(await c.next(event, (x) => x && x.n === n), msg, `${c.label}: ${event}`);
  await sleep(QUIET);
  for (const c of core.all) {
    const all = c.events.filter((e) => JSON.stringify(e.args).includes(n)).map((e) => e.event);
    assert.deepEqual(all, yes.includes(c) ? [event] : [], `${c.label}: what ${n} brought`);
  }
}

test('solicitud.created: an advisor subscribed to the solicitud gets it once, though in two of its rooms; on both instances', { skip: skipRedis }, async () => {
  const t = await coreClients();
  const id = `sol-${t.u}`;
  for (const c of [t.advisorA, t.clientB]) {
    c.emit('subscribe_solicitud', { solicitud_id: id });
    assert.deepEqual(await c.next('subscribed'), { room: `solicitud_${id}` });
  }
  let n = mark();
  let msg = { solicitud_id: id, cliente_id: `cliente2-${t.u}`, estado: 'ABIERTA', n };
  assert.equal(await publish('solicitud.created', msg), 2, 'each instance listens');
  await expectOnce([t.admin, t.advisorA, t.advisorB, t.clientB], 'solicitud_created', msg, n);
  // an update goes to admin and the subscribers only
  n = mark();
  msg = { solicitud_id: id, estado: 'EVALUADA', n };
  await publish('solicitud.updated', msg);
  await expectOnce([t.admin, t.advisorA, t.clientB], 'solicitud_updated', msg, n);
  // after unsubscribe_solicitud, nothing more for that client
  t.clientB.emit('unsubscribe_solicitud', { solicitud_id: id });
  await t.clientB.next('unsubscribed');
  n = mark();
  msg = { solicitud_id: id, estado: 'CERRADA', n };
  await publish('solicitud.updated', msg);
  await expectOnce([t.admin, t.advisorA], 'solicitud_updated', msg, n);
});

test('subscribed on instance A, the Core API\'s oferta reaches the subscribers on A and B and user_{asesor_id}', { skip: skipRedis }, async () => {
  const t = await coreClients();
  const id = `of-${t.u}`;
  t.clientA.emit('subscribe_solicitud', { solicitud_id: id });
  await t.clientA.next('subscribed');
  const n = mark();
  const msg = { oferta_id: 'o-1', solicitud_id: id, asesor_id: `asesor2-${t.u}`, monto: 120.5, n };
  await publish('oferta.created', msg);
  await expectOnce([t.admin, t.clientA, t.advisorB], 'oferta_created', msg, n);
});

test('evaluacion, cliente and notificacion channels reach the rooms of SPEC 6', { skip: skipRedis }, async () => {
  const t = await coreClients();
  let n = mark();
  let msg = { solicitud_id: `none-${t.u}`, asesores_participantes: [`asesor-${t.u}`, `asesor2-${t.u}`], n };
  await publish('evaluacion.completed', msg);
  await expectOnce([t.admin, t.advisorA, t.advisorB], 'evaluacion_completed', msg, n);
  n = mark();
  msg = { cliente_id: `cliente-${t.u}`, n };
  await publish('cliente.updated', msg);
  await expectOnce([t.admin, t.clientA], 'cliente_updated', msg, n);
  n = mark();
  msg = { user_id: `cliente2-${t.u}`, titulo: 'Hola', n };
  await publish('notificacion.nueva', msg);
  await expectOnce([t.clientB], 'notificacion_nueva', msg, n);
  n = mark();
  msg = { role: 'ADVISOR', n };
  await publish('notificacion.nueva', msg);
  await expectOnce([t.advisorA, t.advisorB], 'notificacion_nueva', msg, n);
  n = mark();
  msg = { mensaje: 'a todos', n };
  await publish('notificacion.sistema', msg);
  await expectOnce([t.admin, t.advisorA, t.advisorB], 'notificacion_sistema', msg, n);
});

test('no sticky sessions: a polling client whose requests go to A and B in turn subscribes and gets the Core API\'s events once', { skip: skipRedis }, async () => {
  const proxy = await startProxy([A, B]);
  try {
    const u = mark();
    const poller = await user(proxy, `p-${u}`, 'ADVISOR', { transports: ['polling'], label: 'advisor via the proxy' });
    const other = await user(B, `o-${u}`, 'CLIENT', { transports: ['websocket'], label: 'client@B' });
    const id = `rr-${u}`;
    for (const c of [poller, other]) {
      c.emit('subscribe_solicitud', { solicitud_id: id });
      assert.deepEqual(await c.next('subscribed'), { room: `solicitud_${id}` });
    }
    for (const [channel, event, targets] of [
      ['solicitud.updated', 'solicitud_updated', [poller, other]],
      ['solicitud.created', 'solicitud_created', [poller, other]],     // advisor and subscriber: once
      ['oferta.created', 'oferta_created', [poller, other]],
    ]) {
      const n = mark();
      const msg = { solicitud_id: id, asesor_id: `p-${u}`, n };
      await publish(channel, msg);
      for (const c of targets) assert.deepEqual(await c.next(event, (x) => x.n === n), msg, c.label);
      await sleep(QUIET);
      for (const c of targets) assert.equal(got(c, event, n).length, 1, `${c.label}: ${event} once`);
    }
    const sid = poller.socket.io.engine.id;
    assert.equal(proxy.instancesFor(sid).size, 2, proxy.describe(sid));
    assert.deepEqual(proxy.failures(sid), []);
  } finally {
    closeAll();
    // the poller's goodbye goes through the proxy: let it arrive before closing it
    await statsUntil(A, (x) => x.connected_users === 0, 'the clients gone').catch(() => {});
    await proxy.close();
  }
});

test('user_joined and user_left cross the instances', { skip: skipRedis }, async () => {
  const u = mark();
  const a = await user(A, `a-${u}`, 'ANALYST', { transports: ['websocket'] });
  const b = await user(B, `b-${u}`, 'ADMIN', { transports: ['polling'] });
  assert.deepEqual(await a.next('user_joined', (x) => x.user_id === `b-${u}`), { user_id: `b-${u}`, role: 'ADMIN' });
  const c = await user(A, `c-${u}`, 'SUPPORT', { transports: ['polling'] });
  assert.deepEqual(await b.next('user_joined', (x) => x.user_id === `c-${u}`), { user_id: `c-${u}`, role: 'SUPPORT' });
  c.close();
  assert.deepEqual(await b.next('user_left', (x) => x.user_id === `c-${u}`), { user_id: `c-${u}`, role: 'SUPPORT' });
  b.close();
  assert.deepEqual(await a.next('user_left', (x) => x.user_id === `b-${u}`), { user_id: `b-${u}`, role: 'ADMIN' });
});

// ---------------------------------------------------------------------------
// GET /, /health, /stats

test('GET / tells the service\'s information, GET /health is 200 JSON', { skip }, async () => {
  const root = await getJson(d, '/');
  assert.equal(root.status, 200);
  assert.deepEqual(
    { service: root.body.service, version: root.body.version, status: root.body.status,
      environment: root.body.environment, websocket_path: root.body.websocket_path },
    { service: 'TeLOO V3 Realtime Gateway', version: '3.0.0', status: 'running',
      environment: 'production', websocket_path: '/socket.io' });
  assert.equal(root.body.profile, 'teloo');
  const health = await getJson(d, '/health');
  assert.equal(health.status, 200);
  assert.equal(health.body.service, 'realtime-gateway');
  assert.equal(health.body.version, '3.0.0');
  assert.match(health.body.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
  assert.equal(health.body.status, 'ok');
});

test('GET /stats counts the users connected, and those of the roles ADMIN, ADVISOR and CLIENT', { skip }, async () => {
  // the users of the tests before are gone (closed after each)
  const before = counts(await statsUntil(d, (s) => s.connected_users === 0 && s.clients_connected === 0,
    'nobody'));
  assert.deepEqual(before, { connected_users: 0, admins_connected: 0, advisors_connected: 0, clients_connected: 0 });
  const u = mark();
  const open = [
    await user(d, `ad-${u}`, 'ADMIN'), await user(d, `an-${u}`, 'ANALYST', { transports: ['polling'] }),
    await user(d, `as-${u}`, 'ADVISOR'), await user(d, `as-${u}`, 'ADVISOR', { transports: ['polling'] }),
    await user(d, `cl-${u}`, 'CLIENT'), await user(d, `no-${u}`, undefined),
  ];
  const want = {
    connected_users: before.connected_users + 5, admins_connected: before.admins_connected + 1,
    advisors_connected: before.advisors_connected + 1, clients_connected: before.clients_connected + 2,
  };
  const s = await statsUntil(d, (x) => x.connected_users === want.connected_users &&
    x.clients_connected === want.clients_connected, 'five more users');
  assert.deepEqual(counts(s), want);
  // the daemon's own numbers are there too
  assert.equal(typeof s.sessions.total, 'number');
  assert.equal(s.profile, 'teloo');
  for (const c of open) c.close();
  assert.deepEqual(counts(await statsUntil(d, (x) => x.connected_users === before.connected_users &&
    x.clients_connected === before.clients_connected, 'them gone')), before);
});

test('two instances on one Redis: /stats counts the whole cluster, on either', { skip: skipRedis }, async () => {
  const base = counts(await statsUntil(A, (s) => s.connected_users === 0 && s.clients_connected === 0,
    'nobody'));
  const u = mark();
  const onA = [await user(A, `x1-${u}`, 'ADMIN'), await user(A, `x2-${u}`, 'CLIENT', { transports: ['polling'] })];
  const onB = [await user(B, `x3-${u}`, 'ADVISOR', { transports: ['polling'] }), await user(B, `x1-${u}`, 'ADMIN'),
    await user(B, `x4-${u}`, undefined)];
  const want = {
    connected_users: base.connected_users + 4, admins_connected: base.admins_connected + 1,
    advisors_connected: base.advisors_connected + 1, clients_connected: base.clients_connected + 2,
  };
  for (const daemon of [A, B]) {
    const s = await statsUntil(daemon, (x) => x.connected_users === want.connected_users &&
      x.clients_connected === want.clients_connected && x.advisors_connected === want.advisors_connected,
    'the cluster\'s users');
    assert.deepEqual(counts(s), want, daemon.label);
  }
  for (const c of onB) c.close();
  const less = { ...base, connected_users: base.connected_users + 2, admins_connected: base.admins_connected + 1,
    clients_connected: base.clients_connected + 1 };
  for (const daemon of [A, B]) {
    assert.deepEqual(counts(await statsUntil(daemon, (x) => x.connected_users === less.connected_users &&
      x.clients_connected === less.clients_connected && x.advisors_connected === less.advisors_connected,
    'B\'s users gone')), less, daemon.label);
  }
  for (const c of onA) c.close();
});

test('an instance killed with SIGKILL: its users leave the cluster\'s /stats counts once reaped', { skip: skipRedis, timeout: 20000 * SLOW }, async () => {
  const set = { 'redis.url': redis.url, 'redis.prefix': `teloo-reap-${process.pid}`, 'presence.reap_after': '1s' };
  const L = await startApp({ profile: 'teloo', set });
  const K = await startApp({ profile: 'teloo', set });
  [L.label, K.label] = ['teloo L', 'teloo K (killed)'];
  try {
    const u = mark();
    await user(L, `l-${u}`, 'ADVISOR');
    for (const [sub, role] of [[`k1-${u}`, 'ADMIN'], [`k2-${u}`, 'CLIENT'], [`l-${u}`, 'ADVISOR']]) {
      await user(K, sub, role, { transports: ['polling'] });
    }
    const all = { connected_users: 3, admins_connected: 1, advisors_connected: 1, clients_connected: 1 };
    assert.deepEqual(counts(await statsUntil(L, (x) => x.connected_users === 3 && x.clients_connected === 1,
      'three users')), all);
    K.stopping = true;           // no "exited unexpectedly" report
    K.proc.kill('SIGKILL');
    await K.exited;
    const deadline = Date.now() + 1000 * SLOW + 3 * T;
    let s;
    do {
      s = counts((await getJson(L, '/stats')).body);
      if (s.connected_users === 1 && s.admins_connected === 0 && s.clients_connected === 0) break;
      await sleep(50);
    } while (Date.now() < deadline);
    assert.deepEqual(s, { connected_users: 1, admins_connected: 0, advisors_connected: 1, clients_connected: 0 });
  } finally {
    closeAll();
    await finish([L]);
  }
});

// ---------------------------------------------------------------------------
// the seed's environment variables

/** aeolusd with only the environment (no --port): resolves {url, stderr(), stop()}. */
async function startWithEnv(env) {
  const port = await freePort();
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) =>
    !/^(PORT|CORS_ORIGINS?|LOG_LEVEL|WS_MAX_CONNECTIONS|REDIS_\w+|SOCKETIO_REDIS_URL|REALTIME_\w+|JWT_\w+|SECRET_KEY|SERVER_SECRET|AUTH_TOKEN_PREFIX)$/.test(k)));
  const proc = spawn(daemonPath(), ['--profile', 'teloo', '--bind', '127.0.0.1', '--set', `server.profile_dir=${PROFILE_DIR}`],
    { env: { ...clean, PORT: String(port), ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (x) => { stderr += x; });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10000 * SLOW;
  for (;;) {
    try {
      await (await fetch(`${url}/`)).arrayBuffer();
      break;
    } catch { /* not up yet */ }
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`aeolusd did not listen on PORT ${port}:\n${stderr}`);
    }
    await sleep(50);
  }
  return {
    url, port, label: 'teloo from the environment',
    stderr: () => stderr,
    async stop() {
      proc.kill('SIGTERM');
      const e = await withTimeout(exited, 10000 * SLOW, 'aeolusd to exit');
      assert.deepEqual(e, { code: 0, signal: null }, stderr);
    },
  };
}

test('PORT, REDIS_HOST/REDIS_PORT, JWT_*, WS_MAX_CONNECTIONS, CORS_ORIGINS and LOG_LEVEL configure it', { skip: skipRedis, timeout: 20000 * SLOW }, async () => {
  const e = await startWithEnv({
    REDIS_HOST: '127.0.0.1', REDIS_PORT: String(redis.port), JWT_SECRET_KEY: SECRET, JWT_ALGORITHM: 'HS256',
    WS_MAX_CONNECTIONS: '2', CORS_ORIGINS: 'http://localhost:3000,http://admin.teloo.test', LOG_LEVEL: 'DEBUG',
  });
  try {
    // the store is the Redis of REDIS_HOST and REDIS_PORT, with the others' users in it
    const health = await getJson(e, '/health');
    assert.equal(health.body.store, 'redis');
    assert.equal(health.body.redis, 'up');
    // and the Core API's channels on it
    const c = await user(e, `env-${mark()}`, 'ADMIN', { transports: ['polling'] });
    await listening(redis, 3);
    const n = mark();
    await publish('cliente.created', { cliente_id: 'nobody', n });
    assert.deepEqual(await c.next('cliente_created'), { cliente_id: 'nobody', n });
    // WS_MAX_CONNECTIONS: a second session, then no third
    const c2 = await user(e, `env2-${mark()}`, 'CLIENT', { transports: ['websocket'] });
    const third = io(e.url, { forceNew: true, reconnection: false, transports: ['polling'],
      auth: { token: token('third', 'CLIENT') } });
    const err = await withTimeout(new Promise((resolve) => third.once('connect_error', resolve)), T, 'a refusal');
    third.close();
    assert.ok(err);
    assert.equal((await fetch(`${e.url}/socket.io/?EIO=4&transport=polling`)).status, 503);
    c2.close();
    // CORS_ORIGINS (the gateway's own name for CORS_ORIGIN), a comma-separated list
    for (const origin of ['http://admin.teloo.test', 'http://localhost:3000']) {
      const ok = await fetch(`${e.url}/health`, { headers: { Origin: origin } });
      await ok.arrayBuffer();
      assert.equal(ok.headers.get('access-control-allow-origin'), origin);
    }
    const other = await fetch(`${e.url}/health`, { headers: { Origin: 'http://evil.test' } });
    await other.arrayBuffer();
    assert.notEqual(other.headers.get('access-control-allow-origin'), 'http://evil.test');
    c.close();
    // LOG_LEVEL=DEBUG (the service's spelling): debug lines are written
    assert.match(e.stderr(), /debug: /);
  } finally {
    await e.stop();
  }
});
