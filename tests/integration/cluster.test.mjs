// A cluster of aeolusd instances on one Redis, seen by socket.io-client users,
// behaves as one server: messages, membership, presence, typing, history and
// slow mode across instances; polling sessions whose every request lands on
// another instance (a round-robin proxy, no stickiness); the upgrade to
// WebSocket on another instance than the session's creator.
//
// CLUSTER_SIZE=1 runs the same tests on one instance (every test should then
// pass: it checks the tests and the proxy); the default is 3 instances:
//
//   node --test tests/integration/cluster.test.mjs
//   CLUSTER_SIZE=1 node --test tests/integration/cluster.test.mjs

import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { makeTest, AEOLUS_ONLY } from './helpers.mjs';
import { haveRedis, uniq, expectError } from './app-lib.mjs';
import {
  startCluster, connectPeer, closePeers, sendNumbered, ackProblems, awaitStream,
  CLUSTER_SIZE, T, QUIET, SLOW, sleep,
} from './cluster-lib.mjs';

const TTL = 400 * SLOW;   // typing.ttl, ms
const skip = AEOLUS_ONLY || (!(await haveRedis()) && 'redis-server is not installed');

let c;                    // the cluster
let A; let B; let C;      // its instances (all the same one when CLUSTER_SIZE=1)
const test = makeTest(() => (c ? c.daemons : []));

before(async () => {
  if (skip) return;
  c = await startCluster({ set: { 'typing.ttl': `${TTL}ms` } });
  [A, B, C] = [c.instance(0), c.instance(1), c.instance(2)];
});

afterEach(() => closePeers());

after(async () => {
  closePeers();
  if (c) await c.stop();
});

const inChannel = (ch) => (m) => m && m.channelId === ch;
const byUser = (id) => (m) => m && m.userId === id;
const typing = (id, isTyping) => (m) => m && m.userId === id && m.isTyping === isTyping;

async function joinAll(channelId, ...peers) {
  for (const p of peers) await p.ok('channel:join', { channelId });
}

/** Problems ('' if none) with the ids of the stream `tag` received by `peer`: each the id of its ack. */
function idProblems(peer, ch, tag, acks) {
  const prefix = `${tag} `;
  const bad = [];
  for (const m of peer.all('message:received', inChannel(ch))) {
    if (typeof m.content !== 'string' || !m.content.startsWith(prefix)) continue;
    const seq = Number(m.content.slice(prefix.length));
    const ack = acks[seq];
    if (ack && ack.ok && m.id !== ack.id) bad.push(`seq ${seq}: received id ${JSON.stringify(m.id)}, acked id ${JSON.stringify(ack.id)}`);
  }
  return bad.length ? `${peer.label}: ${bad.length} messages with another id than their ack's (first: ${bad[0]})` : '';
}

/** Fails with every problem found, and where the polling session's requests went. */
function assertNoProblems(problems, context = '') {
  const list = problems.filter(Boolean);
  if (list.length) assert.fail(`${list.join('\n')}${context ? `\n${context}` : ''}`);
}

function routing(peer) {
  return peer && peer.sid ? `${peer.label} ${peer.route()}` : '';
}

/** With more than one instance, the session's requests must have reached every one (or the test proves nothing). */
function assertSpread(peer) {
  if (c.size < 2) return;
  const seen = c.proxy.instancesFor(peer.sid);
  assert.equal(seen.size, c.size, `the proxy should have spread ${peer.label}'s requests over all ` +
    `${c.size} instances: ${c.proxy.describe(peer.sid)}`);
}

// --- 1. three instances, WebSocket clients, one channel ------------------------------------

test('message:send through A reaches the members on B and C exactly once, in order; the sender gets its acks', { skip }, async () => {
  const ch = uniq();
  const [alice, bob, carol] = await Promise.all([
    connectPeer(A, uniq('alice')), connectPeer(B, uniq('bob')), connectPeer(C, uniq('carol'))]);
  await joinAll(ch, alice, bob, carol);
  const N = 20;
  const sent = await sendNumbered(alice, ch, 'a2bc', N, { window: 5 });
  const problems = [ackProblems(alice.label, N, sent)];
  problems.push(...await Promise.all([bob, carol].map((p) => awaitStream(p, ch, 'a2bc', N, { timeout: T }))));
  assertNoProblems(problems);
  assertNoProblems([bob, carol].map((p) => idProblems(p, ch, 'a2bc', sent.acks)));
  // what they see is the message as sent
  const first = bob.all('message:received', inChannel(ch))[0];
  assert.equal(first.senderId, alice.userId);
  assert.equal(first.senderName, alice.name);
  assert.equal(first.content, 'a2bc 0');
  assert.equal(first.clientMessageId, 'a2bc-0');
  assert.equal(typeof first.timestamp, 'string');
  assert.deepEqual(carol.all('message:received', inChannel(ch))[0], first, 'B and C see the same message');
  // the sender is not sent its own messages
  await alice.none('message:received', inChannel(ch));
});

test('user:online and user:joined of a user on A are seen on B, once per user across instances', { skip }, async () => {
  const ch = uniq();
  const aliceId = uniq('alice');
  const bobId = uniq('bob');
  const bob = await connectPeer(B, bobId);
  await bob.ok('channel:join', { channelId: ch });
  const alice = await connectPeer(A, aliceId);
  assert.deepEqual(await bob.next('user:online', byUser(aliceId), T, `user:online of ${aliceId}, connected on A`), { userId: aliceId });
  const joined = await alice.ok('channel:join', { channelId: ch });
  assert.deepEqual(joined.members.map((m) => m.userId), [aliceId, bobId].sort(),
    `channel:joined on A lists the member on B: ${JSON.stringify(joined.members)}`);
  const ev = await bob.next('user:joined', byUser(aliceId), T, `user:joined of ${aliceId}, joined on A`);
  assert.deepEqual(ev, { channelId: ch, userId: aliceId, name: alice.name });
  // a second socket of alice on C: she was online and in the channel already
  const alice2 = await connectPeer(C, aliceId);
  await alice2.ok('channel:join', { channelId: ch });
  await Promise.all([bob.none('user:online', byUser(aliceId)), bob.none('user:joined', byUser(aliceId))]);
  // one socket goes: she is still there
  alice.close();
  await Promise.all([bob.none('user:offline', byUser(aliceId)), bob.none('user:left', byUser(aliceId))]);
  // the last one goes: offline and left, once each
  alice2.close();
  assert.deepEqual(await bob.next('user:left', byUser(aliceId), T, `user:left of ${aliceId}, whose last socket (on C) went`), { channelId: ch, userId: aliceId });
  assert.deepEqual(await bob.next('user:offline', byUser(aliceId), T, `user:offline of ${aliceId}, whose last socket (on C) went`), { userId: aliceId });
  await Promise.all([bob.none('user:offline', byUser(aliceId)), bob.none('user:left', byUser(aliceId))]);
  assert.equal(bob.count('user:online', byUser(aliceId)), 1, 'user:online seen once');
  assert.equal(bob.count('user:joined', byUser(aliceId)), 1, 'user:joined seen once');
});

test('typing:start on B is seen on C and A; typing:stop and the expiry are seen once across instances', { skip }, async () => {
  const ch = uniq();
  const bobId = uniq('bob');
  const [alice, bob, carol] = await Promise.all([
    connectPeer(A, uniq('alice')), connectPeer(B, bobId), connectPeer(C, uniq('carol'))]);
  await joinAll(ch, alice, bob, carol);
  const watchers = [carol, alice];
  // start, then stop
  await bob.ok('typing:start', { channelId: ch });
  for (const p of watchers) {
    const ev = await p.next('typing:user', typing(bobId, true), T, 'typing:start of bob on B');
    assert.equal(ev.channelId, ch);
  }
  await bob.ok('typing:stop', { channelId: ch });
  for (const p of watchers) await p.next('typing:user', typing(bobId, false), T, 'typing:stop of bob on B');
  // start, then nothing: it ends by itself after the ttl
  const t0 = Date.now();
  await bob.ok('typing:start', { channelId: ch });
  for (const p of watchers) await p.next('typing:user', typing(bobId, true), T, 'the second typing:start of bob on B');
  for (const p of watchers) {
    await p.next('typing:user', typing(bobId, false), TTL + 2000 * SLOW, `the expiry of bob's typing, ttl ${TTL} ms`);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= TTL - 50, `${p.label}: typing ended after ${elapsed} ms, before the ttl of ${TTL} ms`);
  }
  // once: no second end from another instance
  await Promise.all(watchers.map((p) => p.none('typing:user', byUser(bobId), TTL + 100 * SLOW)));
  for (const p of watchers) {
    assert.deepEqual(p.all('typing:user', byUser(bobId)).map((m) => m.isTyping), [true, false, true, false],
      `${p.label}: bob's typing indicators`);
  }
  assert.deepEqual(bob.all('typing:user'), [], 'the typist is not told about himself');
});

test('history read on C holds the messages sent on A, in order, with their acked ids', { skip }, async () => {
  const ch = uniq();
  const alice = await connectPeer(A, uniq('alice'));
  await alice.ok('channel:join', { channelId: ch });
  const N = 10;
  const sent = await sendNumbered(alice, ch, 'hist', N, { window: 1 });
  assertNoProblems([ackProblems(alice.label, N, sent)]);
  const want = sent.acks.map((a, i) => ({ id: a.id, content: `hist ${i}` }));
  const carol = await connectPeer(C, uniq('carol'));
  const joined = await carol.ok('channel:join', { channelId: ch, history: N });
  assert.deepEqual(joined.history.map((m) => ({ id: m.id, content: m.content })), want,
    'channel:join {history} on C');
  const got = await carol.ok('history:get', { channelId: ch, limit: 50 });
  assert.deepEqual(got.messages.map((m) => ({ id: m.id, content: m.content })), want, 'history:get on C');
  // and resuming after a given id works there too
  const after = await carol.ok('history:get', { channelId: ch, after: sent.acks[6].id });
  assert.deepEqual(after.messages.map((m) => m.content), ['hist 7', 'hist 8', 'hist 9'], 'history:get {after} on C');
});

test('slow mode set on A applies to a user whichever instance she posts through', { skip }, async () => {
  const ch = uniq();
  const aliceId = uniq('alice');
  const admin = await connectPeer(A, uniq('ada'), { claims: { role: 'admin' } });
  await admin.ok('channel:init', { channelId: ch, name: 'Slow', settings: { slowMode: 1 } });
  const [onA, onB, onC, bob] = await Promise.all([
    connectPeer(A, aliceId), connectPeer(B, aliceId), connectPeer(C, aliceId), connectPeer(C, uniq('bob'))]);
  await joinAll(ch, onA, onB, onC, bob);
  const t0 = Date.now();
  await onA.ok('message:send', { channelId: ch, content: 'first' });
  for (const p of [onB, onC]) {
    const ack = await p.request('message:send', { channelId: ch, content: `too soon via ${p.at}` });
    const err = expectError(ack, 'slow_mode');
    assert.equal(err.retryAfter, 1, `${p.label}: retryAfter`);
  }
  // the cooldown is the user's: bob is not slowed
  await bob.ok('message:send', { channelId: ch, content: 'bob is not slowed' });
  // after the cooldown, she may post again, through another instance
  await sleep(Math.max(0, t0 + 1000 - Date.now()) + 100);
  await onC.ok('message:send', { channelId: ch, content: 'second' });
  await bob.next('message:received', (m) => m && m.content === 'second', T, "alice's 'second', sent through C");
  await sleep(QUIET);
  assert.deepEqual(bob.all('message:received', (m) => m && m.channelId === ch && m.senderId === aliceId)
    .map((m) => m.content), ['first', 'second'], 'what bob (on C) received from alice');
});

// --- 2. a polling session whose every request lands on the next instance ---------------------

const STREAM = 1000;

test(`polling client through the round-robin proxy sends ${STREAM} messages: the WebSocket client on A gets all, in order, once`, { skip, timeout: 30000 * SLOW }, async () => {
  const ch = uniq();
  const ws = await connectPeer(A, uniq('wendy'));
  const poll = await connectPeer(c.proxy, uniq('paul'), { transports: ['polling'] });
  await joinAll(ch, ws, poll);
  const sent = await sendNumbered(poll, ch, 'p2w', STREAM, { window: 50 });
  const problems = [ackProblems(poll.label, STREAM, sent)];
  problems.push(await awaitStream(ws, ch, 'p2w', STREAM));
  assertNoProblems(problems, routing(poll));
  assertNoProblems([idProblems(ws, ch, 'p2w', sent.acks)]);
  assert.equal(poll.transport, 'polling');
  assertSpread(poll);
});

test(`WebSocket client on A sends ${STREAM} messages: the polling client through the proxy gets all, in order, once`, { skip, timeout: 30000 * SLOW }, async () => {
  const ch = uniq();
  const ws = await connectPeer(A, uniq('wendy'));
  const poll = await connectPeer(c.proxy, uniq('paul'), { transports: ['polling'] });
  await joinAll(ch, ws, poll);
  const sent = await sendNumbered(ws, ch, 'w2p', STREAM, { window: 50 });
  const problems = [ackProblems(ws.label, STREAM, sent)];
  problems.push(await awaitStream(poll, ch, 'w2p', STREAM));
  assertNoProblems(problems, routing(poll));
  assertNoProblems([idProblems(poll, ch, 'w2p', sent.acks)]);
  assert.equal(poll.transport, 'polling');
  assertSpread(poll);
});

// --- 3. polling, then the upgrade to WebSocket on some instance -------------------------------

const EXCHANGE = 200;

for (let run = 1; run <= 5; run++) {
  // The upgrade goes to the instance `run` places after the session's creator:
  // with 3 instances, runs 1-5 land on the next, the one after, the creator itself,
  // the next and the one after.
  const offset = run % Math.max(CLUSTER_SIZE, 1);
  test(`upgrade run ${run}/5: polling through the proxy, upgraded on the creator${offset ? `+${offset}` : ''}, ` +
    `${EXCHANGE} messages each way with a client on B: no loss, duplicate or reorder`, { skip, timeout: 15000 * SLOW }, async () => {
    c.proxy.routeUpgrade = ({ creator, turn }) => (creator === undefined ? turn : creator + run);
    try {
      const ch = uniq();
      const bob = await connectPeer(B, uniq('bob'));
      const uma = await connectPeer(c.proxy, uniq('uma'), { transports: ['polling', 'websocket'] });
      const creator = c.proxy.creators.get(uma.sid);
      await joinAll(ch, bob, uma);
      let name;
      try {
        name = await Promise.race([uma.upgraded,
          sleep(T).then(() => { throw new Error('timeout'); })]);
      } catch {
        assert.fail(`${uma.label} did not upgrade within ${T} ms (transport ${uma.transport}` +
          `${uma.upgradeError ? `, upgradeError: ${uma.upgradeError.message}` : ''}); ${routing(uma)}`);
      }
      assert.equal(name, 'websocket');
      assert.equal(uma.socket.io.engine.transport.name, 'websocket', `transport after the upgrade event; ${routing(uma)}`);
      // the test is what it says: the proxy saw the handshake and routed the upgrade as planned
      const up = c.proxy.entries(uma.sid).find((e) => e.kind === 'upgrade');
      assert.ok(creator !== undefined && up, `the proxy saw the handshake and the upgrade: ${routing(uma)}`);
      assert.equal(up.inst, (creator + run) % c.size, `upgrade routed as planned: ${routing(uma)}`);
      const [fromUma, fromBob] = await Promise.all([
        sendNumbered(uma, ch, 'u2b', EXCHANGE, { window: 50 }),
        sendNumbered(bob, ch, 'b2u', EXCHANGE, { window: 50 }),
      ]);
      const problems = [ackProblems(uma.label, EXCHANGE, fromUma), ackProblems(bob.label, EXCHANGE, fromBob)];
      problems.push(...await Promise.all([
        awaitStream(bob, ch, 'u2b', EXCHANGE),
        awaitStream(uma, ch, 'b2u', EXCHANGE, { settle: 0 }),
      ]));
      assertNoProblems(problems, routing(uma));
      assert.equal(uma.transport, 'websocket', `still on WebSocket at the end; ${routing(uma)}`);
    } finally {
      c.proxy.routeUpgrade = null;
    }
  });
}

// --- 4. mixed transports in one room ----------------------------------------------------------

test('a polling client through the proxy and WebSocket clients on B and C share a channel: presence and messages', { skip }, async () => {
  const ch = uniq();
  const ids = { poll: uniq('pia'), b: uniq('bea'), c: uniq('cid') };
  const poll = await connectPeer(c.proxy, ids.poll, { transports: ['polling'] });
  const onB = await connectPeer(B, ids.b);
  const onC = await connectPeer(C, ids.c);
  await joinAll(ch, poll, onB, onC);
  const everyone = Object.values(ids).sort();
  for (const p of [poll, onB, onC]) {
    const list = await p.ok('presence:list', { channelId: ch });
    assert.deepEqual(list.users.map((u) => u.userId), everyone, `presence:list {channelId} asked by ${p.label}`);
    const online = (await p.ok('presence:list', {})).users.map((u) => u.userId).filter((id) => everyone.includes(id));
    assert.deepEqual(online, everyone, `presence:list {} (the namespace) asked by ${p.label}`);
  }
  // from the polling client to both
  const N = 10;
  const sent = await sendNumbered(poll, ch, 'mix', N, { window: 10 });
  const problems = [ackProblems(poll.label, N, sent)];
  problems.push(...await Promise.all([onB, onC].map((p) => awaitStream(p, ch, 'mix', N, { timeout: T }))));
  assertNoProblems(problems, routing(poll));
  // and back: from B to the polling client and C
  const back = await sendNumbered(onB, ch, 'back', N, { window: 10 });
  const problems2 = [ackProblems(onB.label, N, back)];
  problems2.push(...await Promise.all([poll, onC].map((p) => awaitStream(p, ch, 'back', N, { timeout: T }))));
  assertNoProblems(problems2, routing(poll));
  assert.equal(poll.count('message:received', (m) => m && m.channelId === ch && String(m.content).startsWith('mix ')), 0,
    'the sender is not sent its own messages');
});
