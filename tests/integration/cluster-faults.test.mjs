// Presence and room membership across instances under faults (SPEC 9): two
// or three daemons on one redis-server, with the same key prefix.
//
// - An instance killed with SIGKILL: after presence.reap_after, another one
//   removes its sockets from presence and rooms and announces each user who
//   went with them (user:offline, user:left) once.
// - SIGTERM: the instance removes its own sockets (and announces its users'
//   going itself); nothing is left to reap.
// - Redis restarted empty: the clients stay connected, /health says
//   degraded meanwhile, and once Redis is back every instance registers its
//   sockets again (each user, found missing, is announced online again).
//
// The events reach the clients of every instance (cross-instance delivery):
// each announcement must arrive once on each of them.

import { afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { makeTest, AEOLUS_ONLY } from './helpers.mjs';
import { io } from 'socket.io-client';
import {
  startApp, startRedis, haveRedis, connectAs, closeAll, uniq, sleep, tokenFor, SLOW, T,
} from './app-lib.mjs';
import { startProxy } from './cluster-lib.mjs';

const REAP = 1000;                 // presence.reap_after (its minimum), ms
const SLACK = 1500 * SLOW;         // reaping runs every REAP / 3; scheduling
const skip = AEOLUS_ONLY || (!(await haveRedis()) && 'redis-server is not installed');

let daemons = [];
let redis = null;
const test = makeTest(() => daemons);

// Every daemon still running must stop cleanly (exit 0 after SIGTERM).
afterEach(async () => {
  closeAll();
  const errors = [];
  for (const d of daemons) {
    if (d.alive) await d.stop().catch((e) => errors.push(e));
  }
  daemons = [];
  if (redis) await redis.stop();
  redis = null;
  if (errors.length) throw errors[0];
});

/** n daemons A, B, ... on one redis-server with one prefix. */
async function cluster(n = 2) {
  redis = await startRedis();
  const set = {
    'redis.url': redis.url,
    'redis.prefix': uniq('faults'),
    'presence.reap_after': `${REAP}ms`,
  };
  for (let i = 0; i < n; i++) {
    const d = await startApp({ set });
    d.label = `aeolusd ${'ABCDEFGH'[i]}`;
    daemons.push(d);
  }
  const [a, b, c] = daemons;
  return { a, b, c, prefix: set['redis.prefix'] };
}

const is = (id) => (m) => m && m.userId === id;
const ids = (users) => users.map((u) => u.userId);

/** presence:list, by client c: the user ids online (or in channel ch). */
async function online(c, ch) {
  return ids((await c.ok('presence:list', ch ? { channelId: ch } : {})).users);
}

/** Asks until presence:list gives want (the store may take a moment). */
async function untilOnline(c, want, ch, ms = T) {
  const deadline = Date.now() + ms;
  let got;
  for (;;) {
    got = await online(c, ch).catch((e) => e.message);
    if (JSON.stringify(got) === JSON.stringify(want)) return;
    if (Date.now() > deadline) break;
    await sleep(100);
  }
  assert.deepEqual(got, want, `presence${ch ? ` of ${ch}` : ''} as ${c.label} sees it`);
}

async function health(d) {
  const res = await fetch(`${d.url}/health`);
  return { status: res.status, body: await res.json() };
}

async function untilHealth(d, status, ms) {
  const deadline = Date.now() + ms;
  let h;
  do {
    h = await health(d);
    if (h.body.status === status) return h;
    await sleep(50);
  } while (Date.now() < deadline);
  assert.equal(h.body.status, status, `${d.label} /health: ${JSON.stringify(h.body)}`);
  return h;
}

test('SIGKILL: the users of the dead instance go offline and leave their rooms, announced once, within presence.reap_after',
  { skip, timeout: 30000 * SLOW }, async () => {
    const { a, b, c, prefix } = await cluster(3);
    const ch = uniq();
    const ursula = await connectAs(a, 'ursula');
    const victor = await connectAs(b, 'victor');
    const wanda = await connectAs(c, 'wanda');
    for (const x of [ursula, victor, wanda]) await x.ok('channel:join', { channelId: ch });
    assert.deepEqual(await online(victor), ['ursula', 'victor', 'wanda']);
    assert.deepEqual(await online(victor, ch), ['ursula', 'victor', 'wanda']);

    a.stopping = true;             // no "exited unexpectedly" report
    const t0 = Date.now();
    a.proc.kill('SIGKILL');
    await a.exited;
    assert.deepEqual(await online(victor), ['ursula', 'victor', 'wanda'], 'reaped before reap_after');

    // B or C reaps A; the clients of both hear of it
    for (const x of [victor, wanda]) {
      assert.deepEqual(await x.next('user:offline', is('ursula'), REAP + SLACK + T), { userId: 'ursula' });
      const after = x.lastAt - t0;
      // not seen for reap_after: counted from its last refresh, up to REAP / 3 before the kill
      assert.ok(after >= (2 * REAP) / 3 - 50, `reported ${after} ms after the kill (reap_after ${REAP} ms)`);
      assert.ok(after <= REAP + SLACK, `reported ${after} ms after the kill (reap_after ${REAP} ms)`);
      assert.deepEqual(await x.next('user:left', is('ursula')), { channelId: ch, userId: 'ursula' });
    }
    assert.deepEqual(await online(victor), ['victor', 'wanda']);
    assert.deepEqual(await online(wanda, ch), ['victor', 'wanda']);

    // once: nothing more over several reaping periods
    await victor.none('user:offline', is('ursula'), 3 * REAP);
    for (const x of [victor, wanda]) {
      await x.none('user:offline', is('ursula'), 0);
      await x.none('user:left', is('ursula'), 0);
      assert.deepEqual(x.all('user:offline').filter((m) => m.userId !== 'ursula'), []);
      await x.assertAlive();
    }

    // the dead instance is gone from Redis; the living ones are still there
    assert.equal(await redis.command('ZCARD', `${prefix}:instances`), 2);
    assert.equal((await redis.command('KEYS', `${prefix}:instance:*`)).length, 2);
  });

test('SIGKILL: its clients reconnect to another instance through the load balancer; every message acked before the kill is in the history',
  { skip, timeout: 30000 * SLOW }, async () => {
    const { a, b, c } = await cluster(3);
    const proxy = await startProxy([a, b, c]);
    try {
      const ch = uniq();
      const victor = await connectAs(b, 'victor');
      await victor.ok('channel:join', { channelId: ch });
      // the proxy's first turn is A: ursula's WebSocket lands there
      const ursula = io(proxy.url, {
        forceNew: true, transports: ['websocket'], auth: { token: tokenFor('ursula') },
        reconnectionDelay: 50, reconnectionDelayMax: 200, randomizationFactor: 0,
      });
      const connects = [];
      ursula.on('connect', () => connects.push(ursula.id));
      const until = async (what, cond, ms = T + REAP) => {
        const deadline = Date.now() + ms;
        while (!cond()) {
          if (Date.now() > deadline) throw new Error(`ursula: no ${what} within ${ms} ms`);
          await sleep(20);
        }
      };
      try {
        await until('connection', () => connects.length === 1);
        assert.equal(proxy.log[0].inst, 0, 'the first connection went to A');
        await ursula.timeout(T).emitWithAck('channel:join', { channelId: ch });
        const acked = [];
        for (let i = 0; i < 20; i++) {
          const r = await ursula.timeout(T).emitWithAck('message:send', { channelId: ch, content: `m${i}` });
          assert.equal(r.ok, true, JSON.stringify(r));
          acked.push(r.id);
        }

        a.stopping = true;
        a.proc.kill('SIGKILL');
        await a.exited;
        // the client's own reconnection, through the balancer, finds B or C
        await until('reconnection', () => connects.length === 2);
        await ursula.timeout(T).emitWithAck('channel:join', { channelId: ch });
        await ursula.timeout(T).emitWithAck('message:send', { channelId: ch, content: 'after' });
        await victor.next('message:received', (m) => m && m.content === 'after');

        const h = await victor.ok('history:get', { channelId: ch, limit: 100 });
        const ids = h.messages.map((m) => m.id);
        assert.deepEqual(ids.slice(0, acked.length), acked, 'every acked message, in order');
        assert.equal(h.messages[acked.length].content, 'after');
      } finally {
        ursula.close();
      }
    } finally {
      await proxy.close();
    }
  });

test('SIGTERM: the instance removes its own users as it goes, announced once; nothing is reaped after',
  { skip, timeout: 30000 * SLOW }, async () => {
    const { a, b, prefix } = await cluster();
    const ch = uniq();
    const ursula = await connectAs(a, 'ursula');
    const victor = await connectAs(b, 'victor');
    await ursula.ok('channel:join', { channelId: ch });
    await victor.ok('channel:join', { channelId: ch });
    assert.deepEqual(await online(victor), ['ursula', 'victor']);

    await a.stop();                // exits 0 once it has retired
    assert.deepEqual(await online(victor), ['victor']);
    assert.deepEqual(await online(victor, ch), ['victor']);
    assert.equal(await redis.command('ZCARD', `${prefix}:instances`), 1);
    assert.equal((await redis.command('KEYS', `${prefix}:instance:*`)).length, 1);

    // A announced its user's going itself; B has nothing left to reap
    assert.deepEqual(await victor.next('user:offline', is('ursula')), { userId: 'ursula' });
    assert.deepEqual(await victor.next('user:left', is('ursula')), { channelId: ch, userId: 'ursula' });
    await victor.none('user:offline', is('ursula'), 3 * REAP);
    await victor.none('user:left', is('ursula'), 0);
    await victor.assertAlive();
  });

test('Redis restarted empty: clients stay connected, /health is degraded meanwhile, presence comes back',
  { skip, timeout: 40000 * SLOW }, async () => {
    const { a, b, prefix } = await cluster();
    const ch = uniq();
    const ursula = await connectAs(a, 'ursula');
    const victor = await connectAs(b, 'victor');
    const wanda = await connectAs(b, 'wanda');
    await ursula.ok('channel:join', { channelId: ch });
    await victor.ok('channel:join', { channelId: ch });
    assert.deepEqual(await online(victor), ['ursula', 'victor', 'wanda']);

    const { port } = redis;
    victor.clear();
    await redis.stop();
    redis = null;
    await untilHealth(b, 'degraded', 2000 * SLOW);
    assert.equal((await health(b)).status, 503);
    // the daemons keep serving their connections
    for (const c of [ursula, victor, wanda]) await c.assertAlive();
    assert.equal((await victor.request('presence:list', {})).ok, false);
    await sleep(300);

    redis = await startRedis({ port });
    assert.equal(await redis.command('DBSIZE'), 0);
    await untilHealth(b, 'ok', 10000 * SLOW);
    await untilHealth(a, 'ok', 10000 * SLOW);
    for (const c of [ursula, victor, wanda]) assert.ok(c.connected, `${c.label} was disconnected`);
    // each instance has registered its sockets again
    await untilOnline(victor, ['ursula', 'victor', 'wanda'], undefined, 5000 * SLOW);
    await untilOnline(ursula, ['ursula', 'victor'], ch, 5000 * SLOW);
    assert.equal(await redis.command('ZCARD', `${prefix}:instances`), 2);
    for (const c of [ursula, victor, wanda]) await c.assertAlive();
    // B announces its users online again. (A's announcement of ursula goes
    // through the bus, which may not be listening again yet on B: Redis
    // pub/sub keeps nothing for a subscriber away. At most once, then.)
    for (const id of ['victor', 'wanda']) {
      assert.deepEqual(await victor.next('user:online', is(id)), { userId: id });
    }
    await victor.none('user:online', (m) => m.userId !== 'ursula');
    assert.ok(victor.all('user:online').filter(is('ursula')).length <= 1);
    assert.deepEqual(victor.all('user:offline'), []);

    // and presence works on as before
    wanda.close();
    await untilOnline(victor, ['ursula', 'victor']);
  });
