// A profile's bus routes, seen by socket.io-client users: the backend
// publishes on Redis in its own shape and every instance delivers to its
// own sockets what the profile's routes make of it.
//
//   teloo     the Core API's channels solicitud.*, oferta.*, evaluacion.*,
//             cliente.*, notificacion.* (the message forwarded unchanged as
//             <topic>_<type> to the rooms of SPEC 6, with its fallbacks) and
//             the generic envelope {event, data, room?|user?|role?, except?}
//             on realtime:events;
//   superbot  {event, payload} on REDIS_EVENTS_CHANNEL, one route per event.
//
// Two instances of each profile on one redis-server, the clients spread over
// both: every recipient gets exactly one copy (each instance receives the
// publish itself and delivers only to its own sockets; a socket in several
// target rooms gets one copy), the others none. Messages that do not parse
// or that no route takes change nothing. With connection state recovery a
// routed message gets an offset and is replayed to a socket that missed it.

import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { makeTest, finish, AEOLUS_ONLY } from './helpers.mjs';
import {
  startApp, startRedis, haveRedis, connect, jwt, SECRET, sleep, T, QUIET, SLOW,
} from './app-lib.mjs';

const skip = AEOLUS_ONLY || (!(await haveRedis()) && 'redis-server is not installed');

const SB_SECRET = 'superbot-realtime-secret-0123456789';
const SB_CHANNEL = `superbot:events:${process.pid}`;

let redis;
let tA; let tB;           // teloo, two instances of one cluster
let sA; let sB;           // superbot, two instances of another
let tR;                   // teloo with socketio.recovery_window, alone
const test = makeTest(() => [tA, tB, sA, sB, tR]);
const clients = [];

/** Waits until `n` connections of Redis `r` listen to `channel` (SUBSCRIBE)
 * and to `psub` patterns in all (PSUBSCRIBE). */
async function subscribed(r, channel, n, psub) {
  const deadline = Date.now() + 5000 * SLOW;
  for (;;) {
    const [, count] = await r.command('PUBSUB', 'NUMSUB', channel);
    const list = await r.command('CLIENT', 'LIST');
    const patterns = [...list.matchAll(/ psub=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
    if (count >= n && patterns >= psub) return;
    if (Date.now() > deadline) {
      throw new Error(`the bus routes did not subscribe: ${count} on ${channel} (want ${n}), ` +
        `${patterns} patterns (want ${psub})`);
    }
    await sleep(20);
  }
}

before(async () => {
  if (skip) return;
  redis = await startRedis();
  const teloo = { profile: 'teloo', set: { 'redis.url': redis.url, 'redis.prefix': `teloo${process.pid}` } };
  tA = await startApp(teloo);
  // two worker processes: each listens and delivers to its own sockets
  tB = await startApp({ ...teloo, set: { ...teloo.set, 'server.workers': 2 } });
  const superbot = {
    profile: 'superbot',
    jwt: false,
    env: {
      REALTIME_JWT_SECRET: SB_SECRET, REALTIME_JWT_AUDIENCE: 'superbot-realtime',
      REALTIME_JWT_ISSUER: 'superbot', REDIS_EVENTS_CHANNEL: SB_CHANNEL,
    },
    set: { 'redis.url': redis.url, 'redis.prefix': `superbot${process.pid}` },
  };
  sA = await startApp(superbot);
  sB = await startApp(superbot);
  tR = await startApp({
    profile: 'teloo',
    set: { 'redis.url': redis.url, 'redis.prefix': `recov${process.pid}`, 'socketio.recovery_window': '2m' },
  });
  [tA.label, tB.label, sA.label, sB.label, tR.label] =
    ['teloo A', 'teloo B (2 workers)', 'superbot A', 'superbot B', 'teloo with recovery'];
  // teloo: realtime:events and 5 patterns in each process; superbot: its channel
  await subscribed(redis, 'realtime:events', 4, 20);
  await subscribed(redis, SB_CHANNEL, 2, 20);
});

after(async () => {
  for (const c of clients) c.close();
  await finish([tA, tB, sA, sB, tR], tA);
  if (redis) await redis.stop();
});

/** PUBLISH; resolves how many subscriptions got it. */
function publish(channel, msg) {
  return redis.command('PUBLISH', channel, typeof msg === 'string' ? msg : JSON.stringify(msg));
}

let seq = 0;
const mark = () => `m${process.pid}-${++seq}`;

/** The received `event`s (all their arguments) of client c whose data holds `n`. */
function got(c, event, n) {
  return c.events.filter((e) => e.event === event && JSON.stringify(e.args).includes(n))
    .map((e) => e.args);
}

/**
 * Publishes msg on channel; each client of `yes` must get `event` once, with
 * `data` as its one argument (a function: checks it), and no client of
 * `others` any event holding the message's mark `n`.
 */
async function expectRoute(channel, msg, n, event, data, yes, others) {
  await publish(channel, msg);
  for (const c of yes) await c.next(event, (d, args) => JSON.stringify(args).includes(n));
  await sleep(QUIET);
  for (const c of yes) {
    const seen = got(c, event, n);
    assert.equal(seen.length, 1, `${c.label}: ${event} ${n} received ${seen.length} times`);
    assert.equal(seen[0].length, 1, `${c.label}: ${event} has ${seen[0].length} arguments`);
    if (typeof data === 'function') data(seen[0][0], c);
    else assert.deepEqual(seen[0][0], data, `${c.label}: the data of ${event}`);
  }
  for (const c of others) {
    const seen = c.events.filter((e) => JSON.stringify(e.args).includes(n));
    assert.deepEqual(seen.map((e) => e.event), [], `${c.label}: expected nothing for ${n}`);
  }
}

const without = (all, ...some) => all.filter((c) => !some.includes(c));

// ---------------------------------------------------------------------------
// teloo

let teloo;                // the clients, connected once

async function telooClients() {
  if (teloo) return teloo;
  const as = async (d, sub, role, label) => {
    const claims = { sub, name: sub };
    if (role) claims.role = role;
    const c = await connect(d, { token: jwt(claims, { secret: SECRET }), label });
    clients.push(c);
    await c.next('connected');
    return c;
  };
  const t = {
    admin: await as(tA, 'adm1', 'ADMIN', 'admin@A'),
    analyst: await as(tB, 'ana1', 'ANALYST', 'analyst@B'),
    asesor1: await as(tA, 'asesor1', 'ADVISOR', 'asesor1@A'),
    asesor1b: await as(tB, 'asesor1', 'ADVISOR', 'asesor1@B'),
    asesor2: await as(tB, 'asesor2', 'ADVISOR', 'asesor2@B'),
    c1: await as(tB, 'c1', 'CLIENT', 'client c1@B'),
    c2: await as(tA, 'c2', null, 'c2 (no role)@A'),
  };
  for (const c of [t.admin, t.c1]) {
    c.emit('subscribe_solicitud', { solicitud_id: 7 });
    assert.deepEqual(await c.next('subscribed'), { room: 'solicitud_7' });
  }
  t.all = Object.values(t);
  t.admins = [t.admin, t.analyst];
  t.advisors = [t.asesor1, t.asesor1b, t.asesor2];
  teloo = t;
  return t;
}

test('teloo solicitud.*: admin and the solicitud\'s room, advisors for created and oleada only', { skip }, async () => {
  const t = await telooClients();
  let n = mark();
  let msg = { solicitud_id: 7, estado: 'ABIERTA', n };
  // admin is in admin and solicitud_7: one copy
  assert.equal(await publish('solicitud.created', msg), 4, 'four processes listen to solicitud.*');
  for (const c of [...t.admins, ...t.advisors, t.c1]) await c.next('solicitud_created', (d) => d.n === n);
  await sleep(QUIET);
  for (const c of [...t.admins, ...t.advisors, t.c1]) {
    assert.deepEqual(got(c, 'solicitud_created', n), [[msg]], `${c.label}: solicitud_created once`);
  }
  assert.deepEqual(got(t.c2, 'solicitud_created', n), []);

  n = mark();
  msg = { solicitud_id: 7, n };
  await expectRoute('solicitud.updated', msg, n, 'solicitud_updated', msg, [...t.admins, t.c1],
    without(t.all, ...t.admins, t.c1));

  n = mark();
  msg = { solicitud_id: 8, n };
  await expectRoute('solicitud.oleada', msg, n, 'solicitud_oleada', msg, [...t.admins, ...t.advisors],
    without(t.all, ...t.admins, ...t.advisors));
});

test('teloo oferta.*: admin, the solicitud\'s room and the advisor who made it', { skip }, async () => {
  const t = await telooClients();
  const n = mark();
  const msg = { oferta_id: 'of-1', solicitud_id: 7, asesor_id: 'asesor1', monto: 120.5, n };
  await expectRoute('oferta.created', msg, n, 'oferta_created', msg,
    [...t.admins, t.c1, t.asesor1, t.asesor1b], [t.asesor2, t.c2]);
});

test('teloo evaluacion.*: admin, the solicitud\'s room and every advisor who took part', { skip }, async () => {
  const t = await telooClients();
  let n = mark();
  let msg = { solicitud_id: 9, asesores_participantes: ['asesor1', 'asesor2'], ganador: 'asesor2', n };
  await expectRoute('evaluacion.completed', msg, n, 'evaluacion_completed', msg,
    [...t.admins, ...t.advisors], [t.c1, t.c2]);
  n = mark();
  msg = { solicitud_id: 7, asesores_participantes: [], n };
  await expectRoute('evaluacion.started', msg, n, 'evaluacion_started', msg,
    [...t.admins, t.c1], [...t.advisors, t.c2]);
});

test('teloo cliente.*: admin and the client', { skip }, async () => {
  const t = await telooClients();
  const n = mark();
  const msg = { cliente_id: 'c1', nombre: 'Ana', n };
  await expectRoute('cliente.updated', msg, n, 'cliente_updated', msg, [...t.admins, t.c1],
    without(t.all, ...t.admins, t.c1));
});

test('teloo notificacion.*: the user if set, else the role\'s room, else admin and advisor', { skip }, async () => {
  const t = await telooClients();
  let n = mark();
  let msg = { user_id: 'c2', role: 'ADMIN', titulo: 'hola', n };
  await expectRoute('notificacion.nueva', msg, n, 'notificacion_nueva', msg, [t.c2], without(t.all, t.c2));

  n = mark();
  msg = { role: 'ADVISOR', n };
  await expectRoute('notificacion.alerta', msg, n, 'notificacion_alerta', msg, t.advisors,
    without(t.all, ...t.advisors));

  n = mark();
  msg = { role: 'analyst', n };   // the role's room, as the role names it at connect: admin
  await expectRoute('notificacion.alerta', msg, n, 'notificacion_alerta', msg, t.admins,
    without(t.all, ...t.admins));

  n = mark();
  msg = { role: 'CLIENT', n };
  await expectRoute('notificacion.alerta', msg, n, 'notificacion_alerta', msg, [t.c1, t.c2],
    without(t.all, t.c1, t.c2));

  n = mark();
  msg = { user_id: null, role: '', texto: 'para todos', n };
  await expectRoute('notificacion.general', msg, n, 'notificacion_general', msg,
    [...t.admins, ...t.advisors], [t.c1, t.c2]);
});

test('teloo: the generic envelope on realtime:events', { skip }, async () => {
  const t = await telooClients();
  let n = mark();
  await expectRoute('realtime:events', { event: 'aviso', data: { n }, room: 'solicitud_7' }, n,
    'aviso', { n }, [t.admin, t.c1], without(t.all, t.admin, t.c1));

  n = mark();
  await expectRoute('realtime:events', { event: 'aviso', data: { n }, user: ['asesor2', 'c2'] }, n,
    'aviso', { n }, [t.asesor2, t.c2], without(t.all, t.asesor2, t.c2));

  n = mark();
  await expectRoute('realtime:events', { event: 'aviso', data: { n }, role: 'ADVISOR' }, n,
    'aviso', { n }, t.advisors, without(t.all, ...t.advisors));

  n = mark();
  await expectRoute('realtime:events', { event: 'aviso', data: { n }, except: ['admin', 'client'] }, n,
    'aviso', { n }, t.advisors, without(t.all, ...t.advisors));

  n = mark();
  await expectRoute('realtime:events', { event: 'aviso', data: [n, 1], namespace: '/' }, n,
    'aviso', [n, 1], t.all, []);

  n = mark();
  await publish('realtime:events', { event: 'aviso', data: { n }, namespace: '/otro' });
  await sleep(QUIET);
  for (const c of t.all) assert.deepEqual(got(c, 'aviso', n), [], `${c.label}: another namespace's`);
});

test('teloo: bad JSON, unrouted and reserved messages change nothing', { skip }, async () => {
  const t = await telooClients();
  const before = t.all.map((c) => c.events.length);
  const n = mark();
  for (const [ch, m] of [
    ['solicitud.created', `{"solicitud_id": 7, "n": "${n}"`],
    ['solicitud.created', `not json ${n}`],
    ['solicitud.created', `{"n": "${n}"} {}`],
    ['realtime:events', JSON.stringify({ data: { n } })],
    ['realtime:events', JSON.stringify({ event: 'connect', data: { n } })],
    ['realtime:events', JSON.stringify({ event: 'aviso', data: { n }, room: 'nadie' })],
    ['otro.created', JSON.stringify({ solicitud_id: 7, n })],
    ['solicitud.created', `{"n": "${n}", "x": "${'y'.repeat(1 << 20)}"}`],
  ]) await publish(ch, m);
  await sleep(QUIET);
  t.all.forEach((c, i) => {
    assert.deepEqual(c.events.slice(before[i]).map((e) => e.event), [], `${c.label}: expected nothing`);
  });
  // still served, and still routing
  for (const c of t.all) {
    c.emit('ping');
    await c.next('pong');
  }
  const m = mark();
  await expectRoute('cliente.deleted', { cliente_id: 'c2', m }, m, 'cliente_deleted', { cliente_id: 'c2', m },
    [...t.admins, t.c2], without(t.all, ...t.admins, t.c2));
});

// ---------------------------------------------------------------------------
// superbot

let sb;

async function superbotClients() {
  if (sb) return sb;
  const as = async (d, sub, label) => {
    const token = jwt({ sub, aud: 'superbot-realtime', iss: 'superbot' }, { secret: SB_SECRET });
    const c = await connect(d, { token, via: 'query', label });
    clients.push(c);
    await c.next('connection_status');
    return c;
  };
  const s = {
    alice: await as(sA, 'alice', 'alice@A'),
    bob: await as(sB, 'bob', 'bob@B'),
    carol: await as(sB, 'carol', 'carol@B'),
    dave: await as(sA, 'dave', 'dave@A'),
  };
  for (const c of [s.alice, s.carol]) {
    c.emit('dm.join', { conversation_id: 5 });
    assert.deepEqual(await c.next('dm.joined'), { conversation_id: 5, sid: c.id });
  }
  await s.bob.request('subscribe_scraper_status');
  await s.carol.request('channel.join', { channel_id: '3' });
  s.all = Object.values(s);
  sb = s;
  return s;
}

const isoNear = (v, what) => {
  // Python's datetime.isoformat() + 'Z', as the service wrote its times
  assert.match(v, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, `${what}: an ISO-8601 time`);
  assert.ok(Math.abs(Date.parse(v) - Date.now()) < 10000 * SLOW, `${what}: now, not ${v}`);
};

test('superbot dm.*: to the conversation\'s room, with read_at added to dm.read', { skip }, async () => {
  const s = await superbotClients();
  const dm = [s.alice, s.carol];
  const others = [s.bob, s.dave];
  let n = mark();
  await expectRoute(SB_CHANNEL, { event: 'dm.message', payload: { conversation_id: 5, message: { id: 1, body: n }, sender: 'bob', extra: 1 } },
    n, 'dm.message', { conversation_id: 5, message: { id: 1, body: n }, sender: 'bob' }, dm, others);

  n = mark();
  await expectRoute(SB_CHANNEL, { event: 'dm.message', payload: { conversation_id: 5, message: { body: n } } },
    n, 'dm.message', { conversation_id: 5, message: { body: n }, sender: null }, dm, others);

  n = mark();
  await expectRoute(SB_CHANNEL, { event: 'dm.reaction', payload: { conversation_id: 5, message_id: n, reactions: [{ emoji: '+1', count: 2 }] } },
    n, 'dm.reaction', { conversation_id: 5, message_id: n, reactions: [{ emoji: '+1', count: 2 }] }, dm, others);

  n = mark();
  await expectRoute(SB_CHANNEL, { event: 'dm.reaction', payload: { conversation_id: 5, message_id: n } },
    n, 'dm.reaction', { conversation_id: 5, message_id: n, reactions: [] }, dm, others);

  n = mark();
  await expectRoute(SB_CHANNEL, { event: 'dm.read', payload: { conversation_id: 5, username: 'carol', message_id: n } },
    n, 'dm.read', (d, c) => {
      const { read_at: readAt, ...rest } = d;
      assert.deepEqual(rest, { conversation_id: 5, username: 'carol', message_id: n }, c.label);
      isoNear(readAt, `${c.label}: read_at`);
    }, dm, others);

  n = mark();
  await expectRoute(SB_CHANNEL, { event: 'dm.typing', payload: { conversation_id: 5, username: n, expires_at: '2026-01-01T00:00:06Z', typing: false } },
    n, 'dm.typing', { conversation_id: 5, username: n, expires_at: '2026-01-01T00:00:06Z', typing: false }, dm, others);

  n = mark();
  await expectRoute(SB_CHANNEL, { event: 'dm.typing', payload: { conversation_id: 5, username: n } },
    n, 'dm.typing', (d, c) => {
      assert.equal(d.typing, true, `${c.label}: typing`);
      assert.equal(d.username, n);
      isoNear(d.expires_at, `${c.label}: expires_at`);
    }, dm, others);
});

test('superbot listing.new, system.message: to everyone; user.notification: to the user', { skip }, async () => {
  const s = await superbotClients();
  let n = mark();
  const listing = { id: 11, title: n, price: 9.5, link: 'https://x/11', source: 'ksl', image_url: null, created_at: '2026-01-01', seller: 'x' };
  const { seller, ...shown } = listing;
  await expectRoute(SB_CHANNEL, { event: 'listing.new', payload: listing }, n, 'new_listing', shown, s.all, []);

  n = mark();
  await expectRoute(SB_CHANNEL, { event: 'listing.new', payload: { title: n } }, n, 'new_listing',
    { id: null, title: n, price: null, link: null, source: null, image_url: null, created_at: null }, s.all, []);

  n = mark();
  await expectRoute(SB_CHANNEL, { event: 'system.message', payload: { message: n, level: 'warning', timestamp: 'T1' } },
    n, 'system_message', { message: n, level: 'warning', timestamp: 'T1' }, s.all, []);

  n = mark();
  await expectRoute(SB_CHANNEL, { event: 'system.message', payload: { message: n } }, n, 'system_message',
    (d, c) => {
      assert.equal(d.level, 'info', c.label);
      isoNear(d.timestamp, `${c.label}: timestamp`);
    }, s.all, []);

  n = mark();
  await expectRoute(SB_CHANNEL, { event: 'user.notification', payload: { username: 'bob', type: 'price_alert', data: { n }, timestamp: 'T2' } },
    n, 'notification', { type: 'price_alert', data: { n }, timestamp: 'T2' }, [s.bob], without(s.all, s.bob));

  n = mark();
  await expectRoute(SB_CHANNEL, { event: 'user.notification', payload: { username: 'dave', n } },
    'generic', 'notification', (d, c) => {
      assert.deepEqual({ type: d.type, data: d.data }, { type: 'generic', data: {} }, c.label);
      isoNear(d.timestamp, `${c.label}: timestamp`);
    }, [s.dave], []);
  // a notification without a user goes nowhere
  n = mark();
  await publish(SB_CHANNEL, { event: 'user.notification', payload: { type: n } });
  await sleep(QUIET);
  for (const c of s.all) assert.deepEqual(got(c, 'notification', n), [], c.label);
});

test('superbot scraper.status: to scraper_status; channel.presence and channel.typing: to the channel', { skip }, async () => {
  const s = await superbotClients();
  let n = mark();
  await expectRoute(SB_CHANNEL, { event: 'scraper.status', payload: { facebook: n, craigslist: 'down', ksl: 'ok', timestamp: 'T3', other: 1 } },
    n, 'scraper_status_update', { facebook: n, craigslist: 'down', ksl: 'ok', timestamp: 'T3' },
    [s.bob], without(s.all, s.bob));

  n = mark();
  const participants = [{ username: n, last_active: '2026-01-01T00:00:00Z' }];
  await expectRoute(SB_CHANNEL, { event: 'channel.presence', payload: { channel_id: '3', participants } },
    n, 'channel.presence', { channel_id: 3, participants }, [s.carol], without(s.all, s.carol));

  n = mark();
  await expectRoute(SB_CHANNEL, { event: 'channel.typing', payload: { channel_id: 3, username: n, expires_at: 'E', typing: true } },
    n, 'channel.typing', { channel_id: 3, username: n, expires_at: 'E', typing: true }, [s.carol],
    without(s.all, s.carol));
});

test('superbot: REDIS_EVENTS_CHANNEL names the channel; unknown events, bad JSON and the envelope', { skip }, async () => {
  const s = await superbotClients();
  const before = s.all.map((c) => c.events.length);
  const n = mark();
  await publish('realtime:events', { event: 'system.message', payload: { message: n } });
  await publish(SB_CHANNEL, { event: 'nope', payload: { message: n } });
  await publish(SB_CHANNEL, `{"event": "system.message", "payload": {"message": "${n}"}`);
  await publish(SB_CHANNEL, { event: 'channel.typing', payload: { channel_id: 'x', username: n } });
  await sleep(QUIET);
  s.all.forEach((c, i) => {
    assert.deepEqual(c.events.slice(before[i]).map((e) => e.event), [], `${c.label}: expected nothing`);
  });
  // the generic envelope, which has no payload
  const m = mark();
  await expectRoute(SB_CHANNEL, { event: 'aviso', data: { m }, user: 'alice' }, m, 'aviso', { m }, [s.alice],
    without(s.all, s.alice));
});

// ---------------------------------------------------------------------------
// connection state recovery

test('with recovery, a routed message carries an offset and is replayed to the socket that missed it', { skip }, async () => {
  const token = jwt({ sub: 'adm9', role: 'ADMIN' }, { secret: SECRET });
  const socket = io(tR.url, { forceNew: true, reconnection: false, transports: ['websocket'], timeout: T, auth: { token } });
  const events = [];
  socket.onAny((event, ...args) => events.push({ event, args }));
  clients.push({ close: () => socket.disconnect() });
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('connect_error', reject); });
  const first = socket.id;
  const wait = async (pred, what) => {
    const deadline = Date.now() + T;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(events)}`);
      await sleep(10);
    }
  };
  const n1 = mark();
  await publish('solicitud.updated', { solicitud_id: 1, n: n1 });
  await wait(() => events.some((e) => e.event === 'solicitud_updated'), 'the first solicitud_updated');
  const e1 = events.find((e) => e.event === 'solicitud_updated');
  assert.equal(e1.args.length, 2, 'the data and the offset');
  assert.deepEqual(e1.args[0], { solicitud_id: 1, n: n1 });
  assert.equal(typeof e1.args[1], 'string');

  // away (the transport drops); a message comes meanwhile
  const gone = new Promise((resolve) => socket.once('disconnect', resolve));
  socket.io.engine.close();
  await gone;
  await sleep(100 * SLOW);
  const n2 = mark();
  await publish('solicitud.cerrada', { solicitud_id: 1, n: n2 });
  await sleep(100 * SLOW);
  assert.equal(events.filter((e) => e.event === 'solicitud_cerrada').length, 0);

  socket.connect();
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('connect_error', reject); });
  assert.equal(socket.recovered, true, 'the session was recovered');
  assert.equal(socket.id, first);
  await wait(() => events.some((e) => e.event === 'solicitud_cerrada'), 'the missed solicitud_cerrada');
  await sleep(QUIET);
  const missed = events.filter((e) => e.event === 'solicitud_cerrada');
  assert.equal(missed.length, 1, 'replayed once');
  assert.deepEqual(missed[0].args[0], { solicitud_id: 1, n: n2 });
  assert.equal(events.filter((e) => e.event === 'solicitud_updated').length, 1, 'the first one not again');
  socket.disconnect();
});

// ---------------------------------------------------------------------------
// Redis restarted

test('the routes listen again once Redis is back', { skip, timeout: 20000 * SLOW }, async () => {
  let r = await startRedis();
  const d = await startApp({ profile: 'teloo', set: { 'redis.url': r.url, 'redis.prefix': `restart${process.pid}` } });
  d.label = 'teloo on a Redis that restarts';
  try {
    await subscribed(r, 'realtime:events', 1, 5);
    const c = await connect(d, { token: jwt({ sub: 'adm8', role: 'ADMIN' }, { secret: SECRET }), label: 'admin' });
    clients.push(c);
    await c.next('connected');
    const n1 = mark();
    await r.command('PUBLISH', 'cliente.updated', JSON.stringify({ n: n1 }));
    await c.next('cliente_updated', (m) => m.n === n1);

    const { port } = r;
    await r.stop();
    r = await startRedis({ port });
    await subscribed(r, 'realtime:events', 1, 5);
    const n2 = mark();
    await r.command('PUBLISH', 'cliente.updated', JSON.stringify({ n: n2 }));
    await c.next('cliente_updated', (m) => m.n === n2, 5000 * SLOW);
    await sleep(QUIET);
    assert.equal(got(c, 'cliente_updated', n2).length, 1);
    c.close();
  } finally {
    await finish([d]);
    await r.stop();
  }
});
