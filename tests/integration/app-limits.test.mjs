// Limits as socket.io-client users meet them: the per-connection event rate,
// content size, rooms per socket, history size, and a channel's slow mode.
// A refused request is answered (ack or error event) and never closes the
// connection.

import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { makeTest, finish, AEOLUS_ONLY } from './helpers.mjs';
import { startApp, connectAs, closeAll, uniq, expectError, sleep, SLOW } from './app-lib.mjs';

let d;      // content, rooms and history limits
let rate;   // a small token bucket
const test = makeTest(() => [d, rate]);
const skip = AEOLUS_ONLY;

const MAX_CONTENT = 100;
const MAX_ROOMS = 3;
const HISTORY = 5;
const RATE = 4;    // events per second
const BURST = 5;

before(async () => {
  if (skip) return;
  d = await startApp({
    set: {
      'messages.max_content': MAX_CONTENT,
      'rooms.max_per_socket': MAX_ROOMS,
      'history.size': HISTORY,
    },
  });
  rate = await startApp({ set: { 'limits.event_rate': RATE, 'limits.event_burst': BURST } });
});

afterEach(() => closeAll());

after(async () => {
  closeAll();
  await finish([d, rate], d);
});

async function users(daemon, ...ids) {
  return Promise.all(ids.map((id) => connectAs(daemon, id.split('#')[0], {}, { label: id })));
}

async function joinAll(channelId, ...clients) {
  for (const c of clients) await c.ok('channel:join', { channelId });
}

// --- event rate ------------------------------------------------------------------------

test('limits.event_rate: past the burst, events are refused with rate_limited', { skip }, async () => {
  const [alice, alice2] = await users(rate, 'alice', 'alice#2');
  const n = BURST + 5;
  const acks = await Promise.all(Array.from({ length: n }, () => alice.request('ping', {})));
  const okCount = acks.filter((a) => a?.ok === true).length;
  const limited = acks.filter((a) => a?.ok === false && a.error?.code === 'rate_limited');
  assert.ok(okCount >= BURST && okCount <= BURST + 2, `accepted ${okCount} of ${n}: ${JSON.stringify(acks)}`);
  assert.equal(okCount + limited.length, n, JSON.stringify(acks));
  assert.ok(typeof limited[0].error.message === 'string');
  // the first ones were served, the last ones refused
  assert.equal(acks[0].ok, true);
  assert.equal(acks[n - 1].ok, false);
  // without an ack: the error event
  alice.emit('ping', {});
  const err = await alice.next('error');
  assert.equal(err.code, 'rate_limited');
  await alice.none('pong', () => true, 0);
  // the bucket is per connection: the same user's other socket is served
  assert.equal((await alice2.request('ping', {})).ok, true);
  // it refills at the configured rate
  await sleep(Math.ceil(1000 / RATE) + 100 * SLOW);
  assert.equal((await alice.request('ping', {})).ok, true);
  assert.equal(alice.connected, true);
});

test('a rate-limited message is not delivered', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users(rate, 'alice', 'bob');
  await joinAll(ch, alice, bob);
  // alice has BURST - 1 tokens left after her join
  const acks = await Promise.all(Array.from({ length: BURST + 2 }, (_, i) =>
    alice.request('message:send', { channelId: ch, content: `burst ${i}` })));
  const sent = acks.filter((a) => a?.ok === true).length;
  const limited = acks.filter((a) => a?.error?.code === 'rate_limited').length;
  assert.ok(sent >= 1 && limited >= 1, JSON.stringify(acks));
  await sleep(150 * SLOW);
  assert.equal(bob.all('message:received').length, sent, `${sent} accepted, bob got ${JSON.stringify(bob.all('message:received'))}`);
  await sleep(Math.ceil(1000 / RATE) + 100 * SLOW);
  await alice.assertAlive();
});

// --- content size -----------------------------------------------------------------------

test('messages.max_content: longer content is refused with too_large', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users(d, 'alice', 'bob');
  await joinAll(ch, alice, bob);
  await alice.ok('message:send', { channelId: ch, content: 'x'.repeat(MAX_CONTENT) });
  assert.equal((await bob.next('message:received')).content.length, MAX_CONTENT);
  expectError(await alice.request('message:send', { channelId: ch, content: 'y'.repeat(MAX_CONTENT + 1) }), 'too_large');
  expectError(await alice.request('message:send', { channelId: ch, content: 'z'.repeat(50000) }), 'too_large');
  alice.emit('message:send', { channelId: ch, content: 'w'.repeat(MAX_CONTENT + 1) });
  assert.equal((await alice.next('error')).code, 'too_large');
  // direct messages too
  expectError(await alice.request('message:direct', { recipientId: 'bob', content: 'v'.repeat(MAX_CONTENT + 1) }), 'too_large');
  await bob.none('message:received');
  await bob.none('message:direct', () => true, 0);
  // nothing of it was stored
  const h = await bob.ok('history:get', { channelId: ch });
  assert.equal(h.messages.length, 1);
  await alice.assertAlive();
});

// --- rooms per socket -----------------------------------------------------------------------

test('rooms.max_per_socket: one join too many is refused, per socket', { skip }, async () => {
  const chans = [uniq(), uniq(), uniq(), uniq()];
  const [alice, alice2, bob] = await users(d, 'alice', 'alice#2', 'bob');
  await bob.ok('channel:join', { channelId: chans[3] });
  for (const ch of chans.slice(0, MAX_ROOMS)) await alice.ok('channel:join', { channelId: ch });
  const err = expectError(await alice.request('channel:join', { channelId: chans[3] }), 'forbidden');
  assert.equal(typeof err.message, 'string');
  // the refused join left alice outside
  await bob.none('user:joined');
  expectError(await alice.request('message:send', { channelId: chans[3], content: 'x' }), 'not_member');
  // joining a channel already joined is not a new room
  await alice.ok('channel:join', { channelId: chans[0] });
  // the limit is per socket: alice's other socket joins freely
  await alice2.ok('channel:join', { channelId: chans[3] });
  // after leaving one, there is room again
  await alice.ok('channel:leave', { channelId: chans[1] });
  await alice.ok('channel:join', { channelId: chans[3] });
  await alice.assertAlive();
});

// --- history size ----------------------------------------------------------------------------

test('history.size bounds what is kept and returned', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users(d, 'alice', 'bob');
  await joinAll(ch, alice);
  for (let i = 1; i <= HISTORY + 3; i++) await alice.ok('message:send', { channelId: ch, content: `k${i}` });
  const want = Array.from({ length: HISTORY }, (_, i) => `k${i + 4}`);
  assert.deepEqual((await alice.ok('history:get', { channelId: ch })).messages.map((m) => m.content), want);
  assert.deepEqual((await alice.ok('history:get', { channelId: ch, limit: 100 })).messages.map((m) => m.content), want);
  const joined = await bob.ok('channel:join', { channelId: ch, history: 100 });
  assert.deepEqual(joined.history.map((m) => m.content), want);
});

test("a channel's settings.historySize bounds its history", { skip }, async () => {
  const ch = uniq();
  const admin = await connectAs(d, 'ada', { role: 'admin' });
  await admin.ok('channel:init', { channelId: ch, settings: { historySize: 2 } });
  await admin.ok('channel:join', { channelId: ch });
  for (let i = 1; i <= 4; i++) await admin.ok('message:send', { channelId: ch, content: `s${i}` });
  assert.deepEqual((await admin.ok('history:get', { channelId: ch })).messages.map((m) => m.content), ['s3', 's4']);
});

// --- slow mode -------------------------------------------------------------------------------

test('slow mode: a second message within the cooldown is refused with retryAfter, then accepted', { skip }, async () => {
  const ch = uniq(); const free = uniq();
  const admin = await connectAs(d, 'ada', { role: 'admin' });
  const [alice, bob] = await users(d, 'alice', 'bob');
  await admin.ok('channel:init', { channelId: ch, name: 'Slow', settings: { slowMode: 1 } });
  await joinAll(ch, alice, bob);
  await joinAll(free, alice, bob);
  const t0 = Date.now();
  await alice.ok('message:send', { channelId: ch, content: 'first' });
  const err = expectError(await alice.request('message:send', { channelId: ch, content: 'too soon' }), 'slow_mode');
  assert.equal(err.retryAfter, 1);
  alice.emit('message:send', { channelId: ch, content: 'still too soon' });
  const ev = await alice.next('error');
  assert.equal(ev.code, 'slow_mode');
  assert.equal(ev.retryAfter, 1);
  // the cooldown is per user and per channel
  await bob.ok('message:send', { channelId: ch, content: 'bob is not slowed by alice' });
  await alice.ok('message:send', { channelId: free, content: 'another channel' });
  await alice.assertAlive();
  // what bob received from alice in the slow channel: the first message only
  const fromAlice = () => bob.all('message:received').filter((m) => m.channelId === ch && m.senderId === 'alice');
  assert.deepEqual(fromAlice().map((m) => m.content), ['first']);
  // after the cooldown, alice may post again
  await sleep(Math.max(0, t0 + 1000 - Date.now()) + 50);
  await alice.ok('message:send', { channelId: ch, content: 'second' });
  await bob.next('message:received', (m) => m.content === 'second');
  assert.deepEqual(fromAlice().map((m) => m.content), ['first', 'second']);
});
