// Connection state recovery (socketio.recovery_window) as socket.io-client
// (>= 4.6) users see it: a socket whose transport went away without asking
// comes back -- on the same instance, or on another one sharing the Redis --
// with `socket.recovered === true`, the same id, its rooms (and channel
// membership) back, and every broadcast it missed, in order, once.
//
// A "temporary disconnection" is `socket.io.engine.close()` (the server sees
// the transport close, as for a dropped network). Either the Manager
// reconnects by itself (after 10 ms), or -- when the test does something
// while the client is away -- reconnection is switched off just before the
// close and `socket.connect()` brings the socket back when the test says so
// (the same CONNECT with {pid, offset} as an automatic reconnection).

import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { makeTest, finish, AEOLUS_ONLY } from './helpers.mjs';
import {
  startApp, tokenFor, uniq, haveRedis, sleep, T, QUIET, SLOW,
} from './app-lib.mjs';
import {
  startCluster, sendNumbered, ackProblems, receivedSeqs, sequenceProblems,
} from './cluster-lib.mjs';

let mem;       // recovery_window=2m, one instance
let short;     // recovery_window=1s
let off;       // the default: no recovery
let hb;        // recovery_window=2m, Engine.IO heartbeat 300 ms + 200 ms
let cluster;   // two instances on one Redis, recovery_window=2m
const redisOk = AEOLUS_ONLY ? false : await haveRedis();
const test = makeTest(() => [mem, short, off, hb, ...(cluster ? cluster.daemons : [])]);
const skip = AEOLUS_ONLY;
const skipCluster = () => skip || (redisOk ? false : 'redis-server not available');

before(async () => {
  if (skip) return;
  // no event rate limit: the streams below send as fast as acks come
  mem = await startApp({ set: { 'socketio.recovery_window': '2m', 'limits.event_rate': 0 } });
  short = await startApp({ set: { 'socketio.recovery_window': '1s' } });
  off = await startApp();
  hb = await startApp({ set: {
    'socketio.recovery_window': '2m', 'engineio.ping_interval': '300ms', 'engineio.ping_timeout': '200ms',
  } });
  if (redisOk) cluster = await startCluster({ size: 2, set: { 'socketio.recovery_window': '2m' } });
});

afterEach(() => closeClients());

after(async () => {
  closeClients();
  const errors = [];
  if (cluster) await cluster.stop().catch((e) => errors.push(e));
  await finish([mem, short, off, hb], mem).catch((e) => errors.push(e));
  if (errors.length) throw new Error(errors.map((e) => e.message).join('\n\n'));
});

// ---------------------------------------------------------------------------
// A socket.io-client socket that records every event with all its arguments
// (the offset is the last one of a broadcast), every connection and every
// disconnection.

const clients = new Set();

function closeClients() {
  for (const c of clients) c.close();
  clients.clear();
}

class RecClient {
  constructor(target, user, { transports = ['websocket'], label } = {}) {
    this.user = user;
    this.label = label || `${user}@${target.name || target.port}/${transports.join('+')}`;
    this.events = [];        // {event, args}
    this.conns = [];         // {id, pid, recovered, n: events.length when connected}
    this.drops = [];         // {reason, n}
    this.errors = [];        // connect_error
    this.waiters = [];
    this.socket = io(target.url, {
      forceNew: true, transports, timeout: T, auth: { token: tokenFor(user) },
      reconnection: false, reconnectionDelay: 10, reconnectionDelayMax: 10, randomizationFactor: 0,
    });
    const s = this.socket;
    s.onAny((event, ...args) => { this.events.push({ event, args }); this._wake(); });
    s.on('connect', () => {
      this.conns.push({ id: s.id, pid: s._pid, recovered: s.recovered, n: this.events.length });
      this._wake();
    });
    s.on('disconnect', (reason) => { this.drops.push({ reason, n: this.events.length }); this._wake(); });
    s.on('connect_error', (e) => { this.errors.push(e); this._wake(); });
    clients.add(this);
  }

  _wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits until cond() is true; `what` names it in the failure. */
  async until(cond, what, timeout = T) {
    const deadline = Date.now() + timeout;
    for (;;) {
      if (cond()) return;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`${this.label}: timed out after ${timeout} ms waiting for ${what}; ` +
          `connected=${this.socket.connected}, connections ${JSON.stringify(this.conns)}, ` +
          `disconnections ${JSON.stringify(this.drops)}` +
          `${this.errors.length ? `, connect errors: ${this.errors.map((e) => e.message).join(', ')}` : ''}` +
          `; last events:\n  ${this.events.slice(-12).map((e) => `${e.event} ${JSON.stringify(e.args)}`).join('\n  ') || '(none)'}`);
      }
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  get id() { return this.socket.id; }
  get last() { return this.conns[this.conns.length - 1]; }

  async opened() {
    await this.until(() => this.conns.length > 0 || this.errors.length > 0, 'the connection');
    if (!this.conns.length) throw new Error(`${this.label}: could not connect: ${this.errors[0].message}`);
    return this;
  }

  async request(event, payload, timeout = T) {
    try {
      return await this.socket.timeout(timeout).emitWithAck(event, payload);
    } catch {
      throw new Error(`${this.label}: no ack for ${event} ${JSON.stringify(payload)} within ${timeout} ms` +
        ` (connected=${this.socket.connected})`);
    }
  }

  async ok(event, payload, timeout = T) {
    const ack = await this.request(event, payload, timeout);
    if (!ack || ack.ok !== true) {
      throw new Error(`${this.label}: ${event} ${JSON.stringify(payload)} was refused: ${JSON.stringify(ack)}`);
    }
    return ack;
  }

  send(channelId, content) { return this.ok('message:send', { channelId, content }); }

  /** First arguments of the received `event`s matching pred (for cluster-lib's stream helpers). */
  all(event, pred = () => true) {
    return this.events.filter((e) => e.event === event && pred(e.args[0])).map((e) => e.args[0]);
  }

  /** The message:received of channel ch from events[from] on: [{content, args}]. */
  messages(ch, from = 0) {
    return this.events.slice(from)
      .filter((e) => e.event === 'message:received' && e.args[0] && e.args[0].channelId === ch)
      .map((e) => ({ content: e.args[0].content, args: e.args }));
  }

  contents(ch, from = 0) { return this.messages(ch, from).map((m) => m.content); }

  async waitMessages(ch, n, from = 0, timeout = T) {
    await this.until(() => this.messages(ch, from).length >= n,
      `${n} message:received in ${ch} (after event #${from})`, timeout);
    return this.messages(ch, from);
  }

  /** The first event `event` matching pred from events[from] on; waits for it. */
  async next(event, pred = () => true, from = 0, timeout = T) {
    let hit;
    await this.until(() => {
      hit = this.events.slice(from).find((e) => e.event === event && pred(e.args[0]));
      return Boolean(hit);
    }, `'${event}' (after event #${from})`, timeout);
    return hit.args;
  }

  /** Asserts no event `event` matching pred from events[from] on, within ms. */
  async none(event, pred = () => true, from = 0, ms = QUIET) {
    await sleep(ms);
    const hits = this.events.slice(from).filter((e) => e.event === event && pred(e.args[0]));
    assert.deepEqual(hits.map((e) => e.args), [], `${this.label}: did not expect '${event}'`);
  }

  /**
   * A temporary disconnection: the transport is closed under the socket.
   * With stay, the client does not reconnect until back() is called; else
   * the Manager reconnects by itself (after 10 ms), to `to` when given.
   */
  async drop({ stay = true, to } = {}) {
    const k = this.drops.length;
    if (to) this.retarget(to);
    this.socket.io.reconnection(!stay);
    this.socket.io.engine.close();
    await this.until(() => this.drops.length > k, 'the disconnection');
    return this.drops[k];
  }

  /** The next connections go to instance `to`. */
  retarget(to) {
    this.socket.io.uri = to.url;
    this.socket.io.opts.port = String(to.port);
    this.label = this.label.replace(/@[^/]*/, `@${to.name || to.port}`);
  }

  /**
   * Reconnects after drop() (the socket, still active, opens the Manager again
   * and sends its CONNECT with {pid, offset}, as an automatic reconnection
   * would); resolves the new connection.
   */
  async back({ to } = {}) {
    const k = this.conns.length;
    if (to) this.retarget(to);
    this.socket.connect();
    await this.until(() => this.conns.length > k, 'the reconnection');
    return this.conns[k];
  }

  /** Waits for the connection after conns[k-1]. */
  async connection(k) {
    await this.until(() => this.conns.length > k, `connection #${k + 1}`, 3 * T);
    return this.conns[k];
  }

  close() {
    if (this.socket.connected || this.socket.active) this.socket.disconnect();
    this.socket.io.reconnection(false);
    if (this.socket.io.engine) this.socket.io.engine.close();
  }
}

async function open(target, user, o = {}) {
  return new RecClient(target, user, o).opened();
}

const isOffset = (x) => typeof x === 'string' && x.length > 0;

/** Asserts every message in ms came with one offset (a non-empty string) after it, all different. */
function assertOffsets(ms, who) {
  for (const m of ms) {
    assert.equal(m.args.length, 2, `${who}: message:received ${JSON.stringify(m.content)} should carry exactly one offset: ${JSON.stringify(m.args)}`);
    assert.ok(isOffset(m.args[1]), `${who}: bad offset ${JSON.stringify(m.args[1])}`);
  }
  const offs = ms.map((m) => m.args[1]);
  assert.equal(new Set(offs).size, offs.length, `${who}: offsets repeat: ${JSON.stringify(offs)}`);
}

/** alice and bob in a new channel on d, alice having received one message (an offset). */
async function setup(d, transports = ['websocket']) {
  const ch = uniq('rec');
  const alice = await open(d, 'alice', { transports });
  const bob = await open(d, 'bob');
  await alice.ok('channel:join', { channelId: ch });
  await bob.ok('channel:join', { channelId: ch });
  await bob.send(ch, 'm0');
  await alice.waitMessages(ch, 1);
  return { ch, alice, bob };
}

/** After a connection that was not recovered: alice is a new socket, out of ch, and works. */
async function assertFresh(d, { ch, alice, bob }, conn, old) {
  assert.equal(conn.recovered, false, `not recovered (connection ${JSON.stringify(conn)})`);
  assert.notEqual(conn.id, old.id, 'a new socket id');
  assert.ok(isOffset(conn.pid), 'a pid');
  assert.notEqual(conn.pid, old.pid, 'a new pid');
  const mark = alice.events.length;
  // out of the channel: nothing replayed, nothing live, refused as a non-member
  await bob.send(ch, 'while out');
  await alice.none('message:received', () => true, mark);
  const ack = await alice.request('message:send', { channelId: ch, content: 'x' });
  assert.equal(ack.ok, false);
  assert.equal(ack.error.code, 'not_member');
  // and it works: join again, both ways
  await alice.ok('channel:join', { channelId: ch });
  await bob.send(ch, 'after rejoin');
  const [m] = await alice.waitMessages(ch, 1, mark);
  assert.equal(m.content, 'after rejoin');
  assertOffsets([m], alice.label);
  const bmark = bob.events.length;
  await alice.send(ch, 'hello again');
  await bob.next('message:received', (x) => x && x.content === 'hello again', bmark);
}

// ---------------------------------------------------------------------------
// 1, 2: one instance, memory store

async function recoverOnOneInstance(d, transports) {
  const ch = uniq('rec');
  const alice = await open(d, 'alice', { transports });
  const bob = await open(d, 'bob');
  assert.ok(isOffset(alice.socket._pid), `CONNECT should carry a pid: ${JSON.stringify(alice.socket._pid)}`);
  assert.notEqual(alice.socket._pid, alice.id);
  await alice.ok('channel:join', { channelId: ch });
  await bob.ok('channel:join', { channelId: ch });
  await bob.send(ch, 'm0');
  const [m0] = await alice.waitMessages(ch, 1);
  assertOffsets([m0], alice.label);
  assert.equal(alice.socket._lastOffset, m0.args[1], 'the client keeps the offset');
  const { id, pid } = alice.last;

  const gone = await alice.drop();
  assert.equal(gone.reason, 'forced close');
  const mark = alice.events.length;
  for (const c of ['m1', 'm2', 'm3']) await bob.send(ch, c);

  const conn = await alice.back();
  assert.equal(conn.recovered, true, `recovered (connection ${JSON.stringify(conn)})`);
  assert.equal(conn.id, id, 'the same socket id');
  assert.equal(conn.pid, pid, 'the same pid');
  assert.equal(conn.n, mark, 'nothing received while away');
  const missed = await alice.waitMessages(ch, 3, mark);
  assert.deepEqual(missed.map((m) => m.content), ['m1', 'm2', 'm3'], 'the missed messages, in order');
  // later ones come live, after the replayed ones
  await bob.send(ch, 'm4');
  await alice.waitMessages(ch, 4, mark);
  await sleep(QUIET);
  const all = alice.messages(ch);
  assert.deepEqual(all.map((m) => m.content), ['m0', 'm1', 'm2', 'm3', 'm4'], 'each message once, in order');
  assertOffsets(all, alice.label);
  assert.equal(alice.socket._lastOffset, all[4].args[1]);

  // still a member of the channel, for the application too
  const bmark = bob.events.length;
  await alice.send(ch, 'back again');
  const [fromAlice] = await bob.next('message:received', (m) => m && m.content === 'back again', bmark);
  assert.equal(fromAlice.senderId, 'alice');
  const pres = await bob.ok('presence:list', { channelId: ch });
  assert.deepEqual(pres.users.map((u) => u.userId), ['alice', 'bob']);
  // one socket of alice on the server: a message reaches her once
  await bob.send(ch, 'm5');
  await alice.waitMessages(ch, 6);
  // and she can leave as usual: the others are told, messages stop
  const bmark2 = bob.events.length;
  await alice.ok('channel:leave', { channelId: ch });
  await bob.next('user:left', (m) => m && m.userId === 'alice' && m.channelId === ch, bmark2);
  const amark = alice.events.length;
  await bob.send(ch, 'm6');
  await alice.none('message:received', () => true, amark);
  assert.deepEqual(alice.contents(ch), ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
  assert.deepEqual((await bob.ok('presence:list', { channelId: ch })).users.map((u) => u.userId), ['bob']);
}

test('websocket: a dropped socket comes back recovered, same id, the 3 missed messages once and in order, still in its channel', { skip }, async () => {
  await recoverOnOneInstance(mem, ['websocket']);
});

test('polling: a dropped socket comes back recovered, same id, the 3 missed messages once and in order, still in its channel', { skip }, async () => {
  await recoverOnOneInstance(mem, ['polling']);
});

test('polling upgraded to websocket: a dropped socket comes back recovered, same id, the 3 missed messages once and in order, still in its channel', { skip }, async () => {
  await recoverOnOneInstance(mem, ['polling', 'websocket']);
});

test('recovery on: replies and acks carry no offset, broadcasts do (user:joined, message:received)', { skip }, async () => {
  const ch = uniq('rec');
  const alice = await open(mem, 'alice');
  const bob = await open(mem, 'bob');
  // an acknowledgement: one argument
  const ackArgs = await new Promise((resolve) => {
    alice.socket.timeout(T).emit('channel:join', { channelId: ch }, (err, ...args) => resolve(err ? [err] : args));
  });
  assert.equal(ackArgs.length, 1, `ack arguments: ${JSON.stringify(ackArgs)}`);
  assert.equal(ackArgs[0].ok, true);
  const offsetBefore = alice.socket._lastOffset;
  // a reply event (channel:join without an ack): no offset either
  bob.socket.emit('channel:join', { channelId: ch });
  const joined = await bob.next('channel:joined');
  assert.equal(joined.length, 1, `channel:joined arguments: ${JSON.stringify(joined)}`);
  // the broadcast to the room: an offset
  const uj = await alice.next('user:joined', (m) => m && m.userId === 'bob');
  assert.equal(uj.length, 2, `user:joined arguments: ${JSON.stringify(uj)}`);
  assert.ok(isOffset(uj[1]));
  assert.notEqual(alice.socket._lastOffset, offsetBefore);
  assert.equal(alice.socket._lastOffset, uj[1]);
  const pong = await bob.request('ping', {});
  assert.equal(pong.ok, true);
});

/**
 * alice in ch1 (not ch2) is dropped; meanwhile bob writes to both channels:
 * she gets back the ch1 messages only, and not the announcement of her own
 * leaving (user:left goes to the others); then she is dropped again and comes
 * back again (the pid is kept for the next time).
 */
async function onlyHerRooms(d, to = d) {
  const ch1 = uniq('rec');
  const ch2 = uniq('rec');
  const alice = await open(d, 'alice');
  const bob = await open(to, 'bob');
  await alice.ok('channel:join', { channelId: ch1 });
  await bob.ok('channel:join', { channelId: ch1 });
  await bob.ok('channel:join', { channelId: ch2 });
  await bob.send(ch1, 'one-0');
  await alice.waitMessages(ch1, 1);
  const first = alice.last;
  const bmark = bob.events.length;
  await alice.drop();
  const mark = alice.events.length;
  // the others see her go (her channel's members, and everyone)
  await bob.next('user:left', (m) => m && m.userId === 'alice' && m.channelId === ch1, bmark);
  for (const [ch, text] of [[ch2, 'two-1'], [ch1, 'one-1'], [ch2, 'two-2'], [ch1, 'one-2']]) await bob.send(ch, text);
  const conn = await alice.back({ to });
  assert.equal(conn.recovered, true);
  assert.equal(conn.id, first.id);
  await alice.waitMessages(ch1, 2, mark);
  await bob.send(ch1, 'one-3');
  await alice.waitMessages(ch1, 3, mark);
  await sleep(QUIET);
  const got = alice.events.slice(mark).filter((e) => e.event === 'message:received').map((e) => e.args[0].content);
  assert.deepEqual(got, ['one-1', 'one-2', 'one-3'], 'only the messages of her channel');
  const ownLeft = alice.events.slice(mark).filter((e) => e.event === 'user:left');
  assert.deepEqual(ownLeft.map((e) => e.args), [], 'her own leaving is not replayed to her');
  // not in ch2, for the application either
  const ack = await alice.request('message:send', { channelId: ch2, content: 'x' });
  assert.equal(ack.ok, false);
  assert.equal(ack.error.code, 'not_member');

  // a second drop: back again, with what was missed since the first return
  await alice.drop();
  const mark2 = alice.events.length;
  await bob.send(ch1, 'one-4');
  await bob.send(ch2, 'two-3');
  const again = await alice.back({ to: d });
  assert.equal(again.recovered, true, `recovered a second time: ${JSON.stringify(again)}`);
  assert.equal(again.id, first.id);
  assert.equal(again.pid, first.pid);
  await alice.waitMessages(ch1, 1, mark2);
  await sleep(QUIET);
  assert.deepEqual(alice.contents(ch1), ['one-0', 'one-1', 'one-2', 'one-3', 'one-4']);
  assert.deepEqual(alice.contents(ch2), []);
}

test('only the broadcasts of her rooms are replayed; a second drop is recovered too', { skip }, async () => {
  await onlyHerRooms(mem);
});

async function streamAcrossDrops(transports) {
  const ch = uniq('rec');
  const alice = await open(mem, 'alice', { transports });
  const bob = await open(mem, 'bob');
  await alice.ok('channel:join', { channelId: ch });
  await bob.ok('channel:join', { channelId: ch });
  const N = 600;
  const sending = sendNumbered(bob, ch, 's', N, { window: 10 });
  let seen = 0;
  for (let drop = 0; drop < 2; drop++) {
    seen += 50;
    await alice.until(() => receivedSeqs(alice, ch, 's').length >= seen, `${seen} messages of the stream`, 3 * T)
      .catch(() => {});
    if (!alice.socket.connected) break;
    const k = alice.conns.length;
    await alice.drop({ stay: false });
    await alice.connection(k);
    seen = receivedSeqs(alice, ch, 's').length;
  }
  const acks = await sending;
  assert.equal(ackProblems('bob', N, acks), '');
  await alice.until(() => receivedSeqs(alice, ch, 's').length >= N, `the ${N} messages`, 5 * T)
    .catch(() => {});
  await sleep(QUIET);
  const where = `drops at events ${alice.drops.map((x) => `#${x.n}`).join(', ')}; connections ${JSON.stringify(alice.conns.slice(1))}`;
  assert.equal(sequenceProblems(receivedSeqs(alice, ch, 's'), N), '', where);
  assert.equal(alice.conns.length, 3, where);
  for (const c of alice.conns.slice(1)) {
    assert.equal(c.recovered, true, where);
    assert.equal(c.id, alice.conns[0].id, where);
  }
}

test('websocket: messages sent without a pause across two drops and automatic reconnections arrive once each, in order', { skip, timeout: 15000 * SLOW }, async () => {
  await streamAcrossDrops(['websocket']);
});

test('polling: messages sent without a pause across two drops and automatic reconnections arrive once each, in order', { skip, timeout: 15000 * SLOW }, async () => {
  await streamAcrossDrops(['polling']);
});

test('a client that vanishes (no pong: ping timeout on both sides) is recovered with what was written to it in vain', { skip }, async () => {
  const s = await setup(hb);
  const first = s.alice.last;
  const mark = s.alice.events.length;
  const bmark = s.bob.events.length;
  // her network goes silent: nothing is read any more, no pong goes out
  s.alice.socket.io.reconnection(false);
  const { transport } = s.alice.socket.io.engine;
  assert.equal(transport.name, 'websocket');
  const tcp = transport.ws._socket;
  tcp.pause();
  await s.bob.send(s.ch, 'm1');   // written to a connection nobody reads
  await s.bob.send(s.ch, 'm2');
  // the server gives her up (her channel is told she left), then she notices too
  await s.bob.next('user:left', (m) => m && m.userId === 'alice' && m.channelId === s.ch, bmark, 3 * T);
  await s.bob.send(s.ch, 'm3');
  await s.alice.until(() => s.alice.drops.length === 1, 'the client-side ping timeout', 3 * T);
  assert.equal(s.alice.drops[0].reason, 'ping timeout');
  tcp.destroy();   // else the closing WebSocket waits 30 s for the server's close frame
  assert.equal(s.alice.events.length, mark, 'nothing read while silent');
  const conn = await s.alice.back();
  assert.equal(conn.recovered, true, `recovered: ${JSON.stringify(conn)}`);
  assert.equal(conn.id, first.id);
  await s.alice.waitMessages(s.ch, 3, mark);
  await s.bob.send(s.ch, 'm4');
  await s.alice.waitMessages(s.ch, 4, mark);
  await sleep(QUIET);
  assert.deepEqual(s.alice.contents(s.ch), ['m0', 'm1', 'm2', 'm3', 'm4']);
});

// ---------------------------------------------------------------------------
// 3: two instances on one Redis

async function recoverAcross(c, transports) {
  const [A, B] = c.daemons;
  const ch = uniq('rec');
  const alice = await open(A, 'alice', { transports });
  const bob = await open(B, 'bob');      // sends from B
  const carol = await open(A, 'carol');  // sends from A
  for (const x of [alice, bob, carol]) await x.ok('channel:join', { channelId: ch });
  await bob.send(ch, 'b0');
  await alice.waitMessages(ch, 1);
  await carol.waitMessages(ch, 1);
  const { id, pid } = alice.last;

  await alice.drop();
  const mark = alice.events.length;
  // interleaved, each seen by the other sender's instance before the next
  const seq = [[bob, 'b1'], [carol, 'c1'], [bob, 'b2'], [carol, 'c2']];
  for (const [who, text] of seq) {
    await who.send(ch, text);
    const other = who === bob ? carol : bob;
    await other.next('message:received', (m) => m && m.content === text);
  }

  const conn = await alice.back({ to: B });
  assert.equal(conn.recovered, true, `recovered on B (connection ${JSON.stringify(conn)})`);
  assert.equal(conn.id, id, 'the same socket id');
  assert.equal(conn.pid, pid, 'the same pid');
  const missed = await alice.waitMessages(ch, 4, mark);
  assert.deepEqual(missed.map((m) => m.content), ['b1', 'c1', 'b2', 'c2'], 'the missed messages, in order');
  await bob.send(ch, 'b3');
  await carol.send(ch, 'c3');
  await alice.waitMessages(ch, 6, mark);
  await sleep(QUIET);
  const all = alice.messages(ch);
  assert.deepEqual(all.map((m) => m.content), ['b0', 'b1', 'c1', 'b2', 'c2', 'b3', 'c3'], 'each message once, in order');
  assertOffsets(all, alice.label);

  // a member of the channel on B
  const bmark = bob.events.length;
  const cmark = carol.events.length;
  await alice.send(ch, 'from B');
  await bob.next('message:received', (m) => m && m.content === 'from B' && m.senderId === 'alice', bmark);
  await carol.next('message:received', (m) => m && m.content === 'from B' && m.senderId === 'alice', cmark);
  assert.deepEqual((await carol.ok('presence:list', { channelId: ch })).users.map((u) => u.userId),
    ['alice', 'bob', 'carol']);

  // and back to A: A asks B what she missed
  await alice.drop();
  const mark2 = alice.events.length;
  await carol.send(ch, 'c4');
  await bob.next('message:received', (m) => m && m.content === 'c4');
  await bob.send(ch, 'b4');
  await carol.next('message:received', (m) => m && m.content === 'b4');
  const conn2 = await alice.back({ to: A });
  assert.equal(conn2.recovered, true, `recovered on A again (connection ${JSON.stringify(conn2)})`);
  assert.equal(conn2.id, id);
  await alice.waitMessages(ch, 2, mark2);
  await sleep(QUIET);
  assert.deepEqual(alice.contents(ch, mark2), ['c4', 'b4']);
  assert.deepEqual(alice.contents(ch), ['b0', 'b1', 'c1', 'b2', 'c2', 'b3', 'c3', 'c4', 'b4']);
}

test('cluster: a socket dropped on A comes back on B recovered, same id, missed messages from A and B once and in order', { skip: skipCluster(), timeout: 10000 * SLOW }, async () => {
  await recoverAcross(cluster, ['websocket']);
});

test('cluster, polling: a socket dropped on A comes back on B recovered, missed messages once and in order', { skip: skipCluster(), timeout: 10000 * SLOW }, async () => {
  await recoverAcross(cluster, ['polling']);
});

test('cluster: only the broadcasts of her rooms are replayed on B; a second drop is recovered on A', { skip: skipCluster() }, async () => {
  await onlyHerRooms(cluster.daemons[0], cluster.daemons[1]);
});

test('cluster: a socket dropped on A comes back on A (Redis store) recovered', { skip: skipCluster() }, async () => {
  const [A, B] = cluster.daemons;
  const ch = uniq('rec');
  const alice = await open(A, 'alice');
  const bob = await open(B, 'bob');
  await alice.ok('channel:join', { channelId: ch });
  await bob.ok('channel:join', { channelId: ch });
  await bob.send(ch, 'b0');
  await alice.waitMessages(ch, 1);
  const { id } = alice.last;
  await alice.drop();
  for (const t of ['b1', 'b2']) await bob.send(ch, t);
  const conn = await alice.back();
  assert.equal(conn.recovered, true);
  assert.equal(conn.id, id);
  await alice.waitMessages(ch, 3);
  await bob.send(ch, 'b3');
  await alice.waitMessages(ch, 4);
  await sleep(QUIET);
  assert.deepEqual(alice.contents(ch), ['b0', 'b1', 'b2', 'b3']);
});

test('cluster: streams from A and B without a pause across drops and automatic reconnections (A to B, B to A, A to B) arrive once each, in order', { skip: skipCluster(), timeout: 20000 * SLOW }, async () => {
  const [A, B] = cluster.daemons;
  const ch = uniq('rec');
  const alice = await open(A, 'alice');
  const bob = await open(B, 'bob');
  const carol = await open(A, 'carol');
  for (const x of [alice, bob, carol]) await x.ok('channel:join', { channelId: ch });
  // 20 emits in flight per sender (in order on each socket): a high rate, so
  // that broadcasts cross the recovery's fetch from the old instance
  const N = 1000;
  const sending = Promise.all([
    sendNumbered(bob, ch, 'b', N, { window: 20 }),
    sendNumbered(carol, ch, 'c', N, { window: 20 }),
  ]);
  const both = (n) => () => receivedSeqs(alice, ch, 'b').length >= n && receivedSeqs(alice, ch, 'c').length >= n;
  let seen = 0;
  for (const to of [B, A, B]) {
    seen += 40;
    await alice.until(both(seen), `${seen} messages of each stream`, 3 * T).catch(() => {});
    if (!alice.socket.connected) break;
    const k = alice.conns.length;
    await alice.drop({ stay: false, to });
    await alice.connection(k);
    seen = Math.min(receivedSeqs(alice, ch, 'b').length, receivedSeqs(alice, ch, 'c').length);
  }
  const [ab, ac] = await sending;
  assert.equal(ackProblems('bob', N, ab) + ackProblems('carol', N, ac), '');
  await alice.until(both(N), 'both streams', 5 * T).catch(() => {});
  await sleep(QUIET);
  const where = `drops at events ${alice.drops.map((x) => `#${x.n}`).join(', ')}; connections ${JSON.stringify(alice.conns.slice(1))}`;
  assert.equal(sequenceProblems(receivedSeqs(alice, ch, 'b'), N), '', `stream from B: ${where}`);
  assert.equal(sequenceProblems(receivedSeqs(alice, ch, 'c'), N), '', `stream from A: ${where}`);
  assert.equal(alice.conns.length, 4, where);
  for (const c of alice.conns.slice(1)) {
    assert.equal(c.recovered, true, where);
    assert.equal(c.id, alice.conns[0].id, where);
  }
});

// ---------------------------------------------------------------------------
// 4: when recovery does not apply

test('socket.disconnect() then socket.connect(): not recovered, a new id', { skip }, async () => {
  const s = await setup(mem);
  const old = s.alice.last;
  s.alice.socket.disconnect();
  await s.alice.until(() => s.alice.drops.length === 1, 'the disconnection');
  assert.equal(s.alice.drops[0].reason, 'io client disconnect');
  // the client still has a pid and an offset, and sends them
  assert.equal(s.alice.socket._pid, old.pid);
  assert.ok(isOffset(s.alice.socket._lastOffset));
  // the server has seen her go: her channel is told
  await s.bob.next('user:left', (m) => m && m.userId === 'alice' && m.channelId === s.ch);
  s.alice.socket.connect();
  const conn = await s.alice.connection(1);
  await assertFresh(mem, s, conn, old);
});

test('an unknown pid (tampered socket._pid): not recovered, a new id, and it works', { skip }, async () => {
  const s = await setup(mem);
  const old = s.alice.last;
  await s.alice.drop();
  s.alice.socket._pid = 'AAAAAAAAAAAAAAAAAAAA';
  const conn = await s.alice.back();
  await assertFresh(mem, s, conn, old);
});

test('an unknown offset (tampered socket._lastOffset): not recovered, a new id, and it works', { skip }, async () => {
  const s = await setup(mem);
  const old = s.alice.last;
  await s.alice.drop();
  s.alice.socket._lastOffset = 'nobody-1234';
  const conn = await s.alice.back();
  await assertFresh(mem, s, conn, old);
});

test('a second client sending the pid and offset of a socket already recovered gets a new session', { skip }, async () => {
  const s = await setup(mem);
  const old = s.alice.last;
  const { _pid: pid, _lastOffset: offset } = s.alice.socket;
  await s.alice.drop();
  const conn = await s.alice.back();
  assert.equal(conn.recovered, true);
  // someone replays the same CONNECT
  const eve = new RecClient(mem, 'alice', { label: 'copy' });
  eve.socket._pid = pid;
  eve.socket._lastOffset = offset;
  await eve.opened();
  assert.equal(eve.last.recovered, false);
  assert.notEqual(eve.last.id, old.id);
  assert.equal(s.alice.socket.connected, true);
  await s.bob.send(s.ch, 'still one');
  await s.alice.waitMessages(s.ch, 2);
  await eve.none('message:received');
});

test("another user presenting her pid and offset gets a session of his own, not hers", { skip }, async () => {
  const s = await setup(mem);
  const old = s.alice.last;
  const { _pid: pid, _lastOffset: offset } = s.alice.socket;
  await s.alice.drop();
  const eve = new RecClient(mem, 'eve', { label: 'eve with alice\'s pid' });
  eve.socket._pid = pid;
  eve.socket._lastOffset = offset;
  await eve.opened();
  assert.equal(eve.last.recovered, false);
  assert.notEqual(eve.last.id, old.id);
  // not in alice's channel: her messages do not reach him
  await s.bob.send(s.ch, 'for the members');
  await eve.none('message:received');
});

test('recovery_window=0 (default): no pid, no offset argument, no recovery', { skip }, async () => {
  const ch = uniq('rec');
  const alice = await open(off, 'alice');
  const bob = await open(off, 'bob');
  assert.equal(alice.socket._pid, undefined, 'no pid in the CONNECT');
  await alice.ok('channel:join', { channelId: ch });
  await bob.ok('channel:join', { channelId: ch });
  const uj = await alice.next('user:joined', (m) => m && m.userId === 'bob');
  assert.equal(uj.length, 1, `user:joined arguments: ${JSON.stringify(uj)}`);
  await bob.send(ch, 'm0');
  const [m] = await alice.waitMessages(ch, 1);
  assert.deepEqual(m.args.length, 1, `message:received arguments: ${JSON.stringify(m.args)}`);
  assert.equal(alice.socket._lastOffset, undefined);
  const old = alice.last;
  await alice.drop();
  await bob.send(ch, 'm1');
  const conn = await alice.back();
  assert.ok(!conn.recovered, `not recovered: ${JSON.stringify(conn)}`);
  assert.notEqual(conn.id, old.id);
  assert.equal(conn.pid, undefined);
  await alice.none('message:received', () => true, conn.n);
});

// ---------------------------------------------------------------------------
// 5: the window

test('recovery_window=1s: back within the window is recovered, after 1.5 s it is not', { skip, timeout: 8000 * SLOW }, async () => {
  const s = await setup(short);
  const first = s.alice.last;
  await s.alice.drop();
  await s.bob.send(s.ch, 'm1');
  const quick = await s.alice.back();
  assert.equal(quick.recovered, true, `back at once: ${JSON.stringify(quick)}`);
  assert.equal(quick.id, first.id);
  await s.alice.waitMessages(s.ch, 2);
  assert.deepEqual(s.alice.contents(s.ch), ['m0', 'm1']);

  await s.bob.send(s.ch, 'm2');
  await s.alice.waitMessages(s.ch, 3);
  await s.alice.drop();
  await s.bob.send(s.ch, 'm3');
  await sleep(1500);
  const late = await s.alice.back();
  assert.deepEqual(s.alice.contents(s.ch), ['m0', 'm1', 'm2'], 'nothing replayed after the window');
  await assertFresh(short, s, late, first);
});
