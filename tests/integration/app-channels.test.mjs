// The aeolus vocabulary seen by socket.io-client users: channels (init, join,
// leave), membership announcements, channel messages, direct messages,
// broadcast, history, ping, and how refused requests are answered.

import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { makeTest, finish, AEOLUS_ONLY } from './helpers.mjs';
import {
  startApp, connectAs, closeAll, uniq, expectError, sleep, T, QUIET,
} from './app-lib.mjs';

let d;        // defaults
let echo;     // messages.echo_sender = yes
let allow;    // events.broadcast_allow set
const test = makeTest(() => [d, echo, allow]);
const skip = AEOLUS_ONLY;

before(async () => {
  if (skip) return;
  d = await startApp();
  echo = await startApp({ set: { 'messages.echo_sender': 'yes' } });
  allow = await startApp({ set: { 'events.broadcast_allow': 'game:*, message:*, connect*, disconnect, pong' } });
});

afterEach(() => closeAll());

after(async () => {
  closeAll();
  await finish([d, echo, allow], d);
});

/** Connect each user id (a 'name#2' suffix gives a second socket of the same user). */
async function users(daemon, ...ids) {
  return Promise.all(ids.map((id) => {
    const [user] = id.split('#');
    return connectAs(daemon, user, {}, { label: id });
  }));
}

async function joinAll(channelId, ...clients) {
  for (const c of clients) await c.ok('channel:join', { channelId });
}

const byUser = (id) => (m) => m && m.userId === id;
const inChannel = (ch) => (m) => m && m.channelId === ch;

// --- channel:init ----------------------------------------------------------

test('channel:init by an admin is acknowledged with the channel and its settings', { skip }, async () => {
  const ch = uniq();
  const admin = await connectAs(d, 'ada', { role: 'admin' });
  const ack = await admin.ok('channel:init', {
    channelId: ch, name: 'General', settings: { slowMode: 0, historySize: 50, private: false },
  });
  assert.equal(ack.channelId, ch);
  assert.equal(ack.name, 'General');
  assert.deepEqual(ack.settings, { slowMode: 0, historySize: 50, private: false });
});

test('channel:init without an ack answers with the channel:initialized event', { skip }, async () => {
  const ch = uniq();
  const admin = await connectAs(d, 'ada', { role: 'admin' });
  admin.emit('channel:init', { channelId: ch, name: 'Quiet' });
  const ev = await admin.next('channel:initialized');
  assert.equal(ev.channelId, ch);
  assert.equal(ev.name, 'Quiet');
  assert.deepEqual(ev.settings, {});
});

test('channel:init without an admin role is forbidden (ack and error event)', { skip }, async () => {
  const ch = uniq();
  const [plain] = await users(d, 'pat');
  const support = await connectAs(d, 'sue', { role: 'support' });
  expectError(await plain.request('channel:init', { channelId: ch, name: 'X' }), 'forbidden');
  expectError(await support.request('channel:init', { channelId: ch, name: 'X' }), 'forbidden');
  plain.emit('channel:init', { channelId: ch });
  const err = await plain.next('error');
  assert.equal(err.code, 'forbidden');
  assert.equal(typeof err.message, 'string');
  await plain.none('channel:initialized');
  await plain.assertAlive();
  await support.assertAlive();
});

test('channel:init validates its payload and settings (bad_request)', { skip }, async () => {
  const admin = await connectAs(d, 'ada', { role: 'admin' });
  const ch = uniq();
  const bad = [
    {},                                                   // no channelId
    { channelId: '' },
    { channelId: { nested: true } },
    { channelId: ch, settings: 'fast' },
    { channelId: ch, settings: [1, 2] },
    { channelId: ch, settings: { slowMode: -1 } },
    { channelId: ch, settings: { slowMode: 'often' } },
    { channelId: ch, settings: { slowMode: 86401 } },
    { channelId: ch, settings: { historySize: -5 } },
    { channelId: ch, settings: { historySize: 100001 } },
    { channelId: ch, settings: { historySize: 1.5 } },
    { channelId: ch, settings: { private: 'yes' } },
  ];
  for (const payload of bad) {
    const ack = await admin.request('channel:init', payload);
    assert.ok(ack && ack.ok === false && ack.error && ack.error.code === 'bad_request',
      `channel:init ${JSON.stringify(payload)} answered ${JSON.stringify(ack)}`);
  }
  await admin.assertAlive();
  // a valid one still works afterwards
  await admin.ok('channel:init', { channelId: ch, settings: { slowMode: 86400, private: true } });
});

// --- channel:join / channel:leave, user:joined / user:left -----------------

test('channel:join acknowledges with the members, each user once, and an empty history', { skip }, async () => {
  const ch = uniq();
  const [alice, bob, bob2] = await users(d, 'alice', 'bob', 'bob#2');
  const a1 = await alice.ok('channel:join', { channelId: ch });
  assert.equal(a1.channelId, ch);
  assert.deepEqual(a1.members, [{ userId: 'alice', name: 'Alice' }]);
  assert.deepEqual(a1.history, []);
  await bob.ok('channel:join', { channelId: ch });
  const b2 = await bob2.ok('channel:join', { channelId: ch });
  assert.deepEqual(b2.members, [{ userId: 'alice', name: 'Alice' }, { userId: 'bob', name: 'Bob' }]);
});

test('channel:join without an ack answers with channel:joined', { skip }, async () => {
  const ch = uniq();
  const [alice] = await users(d, 'alice');
  alice.emit('channel:join', { channelId: ch });
  const ev = await alice.next('channel:joined');
  assert.equal(ev.channelId, ch);
  assert.deepEqual(ev.members, [{ userId: 'alice', name: 'Alice' }]);
  assert.deepEqual(ev.history, []);
});

test('channel:join with a numeric channelId uses its string form', { skip }, async () => {
  const n = 900000 + Math.floor(Math.random() * 99999);
  const [alice, bob] = await users(d, 'alice', 'bob');
  const ack = await alice.ok('channel:join', { channelId: n });
  assert.equal(ack.channelId, String(n));
  await bob.ok('channel:join', { channelId: String(n) });
  await alice.ok('message:send', { channelId: n, content: 'same room' });
  const m = await bob.next('message:received');
  assert.equal(m.channelId, String(n));
});

test('channel:join refuses a missing or malformed channelId with bad_request', { skip }, async () => {
  const [alice] = await users(d, 'alice');
  for (const payload of [{}, { channelId: '' }, { channelId: ['x'] }, { channelId: null }]) {
    expectError(await alice.request('channel:join', payload), 'bad_request');
  }
  alice.emit('channel:join', {});
  assert.equal((await alice.next('error')).code, 'bad_request');
  await alice.assertAlive();
});

test('user:joined is announced once per user, to the others in the channel', { skip }, async () => {
  const ch = uniq();
  const [alice, carol, bob, bob2] = await users(d, 'alice', 'carol', 'bob', 'bob#2');
  await joinAll(ch, alice, carol);
  await alice.next('user:joined', byUser('carol'));
  await bob.ok('channel:join', { channelId: ch });
  for (const c of [alice, carol]) {
    assert.deepEqual(await c.next('user:joined', byUser('bob')), { channelId: ch, userId: 'bob', name: 'Bob' });
  }
  // the joining socket is not told about itself
  await bob.none('user:joined', byUser('bob'), 0);
  // bob's second socket joining is not a new arrival
  await bob2.ok('channel:join', { channelId: ch });
  await Promise.all([alice, carol, bob, bob2].map((c) => c.none('user:joined', byUser('bob'))));
  // nor is joining again from the same socket
  await bob.ok('channel:join', { channelId: ch });
  await alice.none('user:joined', byUser('bob'));
});

test('user:left only when the last socket of a user leaves (channel:leave, then disconnect)', { skip }, async () => {
  const ch = uniq();
  const [alice, bob, bob2] = await users(d, 'alice', 'bob', 'bob#2');
  await joinAll(ch, alice, bob, bob2);
  const left = await bob2.ok('channel:leave', { channelId: ch });
  assert.equal(left.channelId, ch);
  await alice.none('user:left', byUser('bob'));
  bob.close();
  assert.deepEqual(await alice.next('user:left', byUser('bob')), { channelId: ch, userId: 'bob' });
  await alice.none('user:left');
  // bob's remaining socket (no longer in the channel) heard nothing about it
  assert.deepEqual(bob2.all('user:left'), []);
});

test('user:left when the last socket leaves by channel:leave; the leaver is not told', { skip }, async () => {
  const ch = uniq();
  const [alice, bob, bob2] = await users(d, 'alice', 'bob', 'bob#2');
  await joinAll(ch, alice, bob, bob2);
  bob.close();
  await alice.none('user:left', byUser('bob'));
  bob2.emit('channel:leave', { channelId: ch });
  assert.deepEqual(await bob2.next('channel:left'), { channelId: ch });
  assert.deepEqual(await alice.next('user:left', byUser('bob')), { channelId: ch, userId: 'bob' });
  await bob2.none('user:left');
  await alice.none('user:left');
  // after leaving, bob no longer gets the channel's messages and cannot post
  await alice.ok('message:send', { channelId: ch, content: 'anyone?' });
  await bob2.none('message:received');
  expectError(await bob2.request('message:send', { channelId: ch, content: 'me' }), 'not_member');
  // a later disconnect does not announce the departure again
  bob2.close();
  await alice.none('user:left');
});

test('a user who left and joins again is announced again', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users(d, 'alice', 'bob');
  await joinAll(ch, alice, bob);
  await alice.next('user:joined', byUser('bob'));
  await bob.ok('channel:leave', { channelId: ch });
  await alice.next('user:left', byUser('bob'));
  const again = await bob.ok('channel:join', { channelId: ch });
  assert.deepEqual(again.members.map((m) => m.userId), ['alice', 'bob']);
  assert.deepEqual(await alice.next('user:joined', byUser('bob')), { channelId: ch, userId: 'bob', name: 'Bob' });
  await alice.ok('message:send', { channelId: ch, content: 'welcome back' });
  assert.equal((await bob.next('message:received')).content, 'welcome back');
});

test('a disconnect leaves every joined channel, each announced once', { skip }, async () => {
  const ch1 = uniq(); const ch2 = uniq();
  const [alice, bob] = await users(d, 'alice', 'bob');
  await joinAll(ch1, alice, bob);
  await joinAll(ch2, alice, bob);
  bob.close();
  const one = await alice.next('user:left', inChannel(ch1));
  const two = await alice.next('user:left', inChannel(ch2));
  assert.deepEqual(one, { channelId: ch1, userId: 'bob' });
  assert.deepEqual(two, { channelId: ch2, userId: 'bob' });
  await alice.none('user:left');
});

test('channel:leave of a channel not joined is harmless', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users(d, 'alice', 'bob');
  await joinAll(ch, alice);
  const ack = await bob.ok('channel:leave', { channelId: ch });
  assert.equal(ack.channelId, ch);
  await alice.none('user:left');
  expectError(await bob.request('channel:leave', {}), 'bad_request');
  await bob.assertAlive();
});

// --- message:send ------------------------------------------------------------

test('message:send reaches the others in the channel, not the sender nor outsiders', { skip }, async () => {
  const ch = uniq(); const other = uniq();
  const [alice, bob, carol, dave] = await users(d, 'alice', 'bob', 'carol', 'dave');
  await joinAll(ch, alice, bob, carol);
  await joinAll(other, dave);
  const ack = await alice.ok('message:send', {
    channelId: ch, content: 'hello', clientMessageId: 'c-1', metadata: { mood: 'sunny' },
  });
  assert.equal(typeof ack.id, 'string');
  assert.ok(ack.id.length > 0);
  assert.equal(ack.clientMessageId, 'c-1');
  assert.ok(!Number.isNaN(Date.parse(ack.timestamp)), `timestamp ${ack.timestamp}`);
  assert.ok(Math.abs(Date.parse(ack.timestamp) - Date.now()) < 60000);
  for (const c of [bob, carol]) {
    const m = await c.next('message:received');
    assert.deepEqual(m, {
      id: ack.id, channelId: ch, senderId: 'alice', senderName: 'Alice', content: 'hello',
      timestamp: ack.timestamp, clientMessageId: 'c-1', metadata: { mood: 'sunny' },
    });
  }
  await Promise.all([alice.none('message:received'), dave.none('message:received')]);
});

test("message:send reaches the sender's other sockets in the channel", { skip }, async () => {
  const ch = uniq();
  const [alice, alice2, bob] = await users(d, 'alice', 'alice#2', 'bob');
  await joinAll(ch, alice, alice2, bob);
  const ack = await alice.ok('message:send', { channelId: ch, content: 'from tab 1' });
  assert.equal((await alice2.next('message:received')).id, ack.id);
  assert.equal((await bob.next('message:received')).id, ack.id);
  await alice.none('message:received');
});

test('message:send ids increase; without an ack the sender gets message:sent', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users(d, 'alice', 'bob');
  await joinAll(ch, alice, bob);
  const ids = [];
  for (let i = 0; i < 4; i++) {
    ids.push((await alice.ok('message:send', { channelId: ch, content: `m${i}` })).id);
  }
  bob.emit('message:send', { channelId: ch, content: 'no ack', clientMessageId: 'b-9' });
  const sent = await bob.next('message:sent');
  assert.equal(sent.clientMessageId, 'b-9');
  ids.push(sent.id);
  const nums = ids.map(Number);
  assert.ok(nums.every(Number.isInteger), `ids are numbers: ${ids}`);
  for (let i = 1; i < nums.length; i++) assert.ok(nums[i] > nums[i - 1], `ids increase: ${ids}`);
  const got = [];
  for (let i = 0; i < 4; i++) got.push((await bob.next('message:received')).content);
  assert.deepEqual(got, ['m0', 'm1', 'm2', 'm3']);
  assert.equal((await alice.next('message:received')).content, 'no ack');
});

test('message:send is refused outside the channel (not_member) and when malformed (bad_request)', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users(d, 'alice', 'bob');
  await joinAll(ch, alice);
  expectError(await bob.request('message:send', { channelId: ch, content: 'let me in' }), 'not_member');
  await alice.none('message:received');
  for (const payload of [
    { channelId: ch }, { content: 'where?' }, { channelId: ch, content: '' },
    { channelId: ch, content: 42 }, { channelId: ch, content: { text: 'x' } },
  ]) {
    const ack = await alice.request('message:send', payload);
    assert.ok(ack?.ok === false && ack.error?.code === 'bad_request',
      `message:send ${JSON.stringify(payload)} answered ${JSON.stringify(ack)}`);
  }
  bob.emit('message:send', { channelId: ch, content: 'no ack' });
  assert.equal((await bob.next('error')).code, 'not_member');
  await bob.none('message:sent');
  await alice.none('message:received');
  await alice.assertAlive();
  await bob.assertAlive();
});

test('messages.echo_sender = yes: the sender gets its own message:received too', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users(echo, 'alice', 'bob');
  await joinAll(ch, alice, bob);
  const ack = await alice.ok('message:send', { channelId: ch, content: 'echo' });
  const mine = await alice.next('message:received');
  assert.equal(mine.id, ack.id);
  assert.equal(mine.content, 'echo');
  assert.equal((await bob.next('message:received')).id, ack.id);
  await alice.none('message:received');
  // direct messages are not echoed to the sending socket
  const dm = await alice.ok('message:direct', { recipientId: 'bob', content: 'dm' });
  assert.equal((await bob.next('message:direct')).id, dm.id);
  await alice.none('message:direct');
});

// --- message:direct ----------------------------------------------------------

test("message:direct reaches every socket of the recipient and the sender's other sockets", { skip }, async () => {
  const [alice, alice2, bob, bob2, carol] = await users(d, 'alice', 'alice#2', 'bob', 'bob#2', 'carol');
  const ack = await alice.ok('message:direct', { recipientId: 'bob', content: 'psst' });
  assert.equal(typeof ack.id, 'string');
  assert.equal(ack.senderId, 'alice');
  assert.equal(ack.senderName, 'Alice');
  assert.equal(ack.recipientId, 'bob');
  assert.equal(ack.content, 'psst');
  assert.ok(!Number.isNaN(Date.parse(ack.timestamp)));
  const expected = { ...ack };
  delete expected.ok;
  for (const c of [bob, bob2, alice2]) {
    assert.deepEqual(await c.next('message:direct'), expected, `${c.label} got the direct message`);
  }
  await Promise.all([alice.none('message:direct'), carol.none('message:direct'),
    bob.none('message:direct'), alice2.none('message:direct')]);
});

test('message:direct without an ack: the sender gets message:delivered', { skip }, async () => {
  const [alice, bob] = await users(d, 'alice', 'bob');
  alice.emit('message:direct', { recipientId: 'bob', content: 'no ack' });
  const delivered = await alice.next('message:delivered');
  const got = await bob.next('message:direct');
  assert.deepEqual(got, delivered);
  assert.equal(got.content, 'no ack');
  await alice.none('message:direct');
});

test('message:direct to a user with no socket is not_found, and nothing is delivered', { skip }, async () => {
  const [alice, bob] = await users(d, 'alice', 'bob');
  const ack = await alice.request('message:direct', { recipientId: 'nobody-here', content: 'hello?' });
  assert.equal(ack?.ok, false);
  assert.equal(ack.error.code, 'not_found');
  alice.emit('message:direct', { recipientId: 'nobody-here', content: 'again' });
  assert.equal((await alice.next('error')).code, 'not_found');
  await bob.none('message:direct');
  await alice.assertAlive();
});

test('message:direct needs recipientId and content', { skip }, async () => {
  const [alice, bob] = await users(d, 'alice', 'bob');
  for (const payload of [{ content: 'to whom?' }, { recipientId: 'bob' },
    { recipientId: 'bob', content: '' }, { recipientId: 'bob', content: 7 }]) {
    const ack = await alice.request('message:direct', payload);
    assert.ok(ack?.ok === false && ack.error?.code === 'bad_request',
      `message:direct ${JSON.stringify(payload)} answered ${JSON.stringify(ack)}`);
  }
  await bob.none('message:direct');
  await alice.assertAlive();
});

// --- broadcast -----------------------------------------------------------------

test('broadcast relays a custom event to the channel minus the sender', { skip }, async () => {
  const ch = uniq();
  const [alice, alice2, bob, carol, dave] = await users(d, 'alice', 'alice#2', 'bob', 'carol', 'dave');
  await joinAll(ch, alice, alice2, bob, carol);
  await alice.ok('broadcast', { channelId: ch, event: 'board:update', data: { x: 1, y: [2, 3] } });
  for (const c of [bob, carol, alice2]) {
    assert.deepEqual(await c.next('board:update'), { x: 1, y: [2, 3] }, c.label);
  }
  await Promise.all([alice.none('board:update'), dave.none('board:update')]);
  // without an ack: relayed all the same, and no error
  alice.emit('broadcast', { channelId: ch, event: 'board:clear', data: 'all' });
  assert.equal(await bob.next('board:clear'), 'all');
  await alice.none('error');
});

test('broadcast relays binary data with its bytes (a binary event, attachments kept)', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users(d, 'alice', 'bob');
  await joinAll(ch, alice, bob);
  const bytes = Buffer.from([0, 1, 2, 250, 255]);
  await alice.ok('broadcast', { channelId: ch, event: 'file:chunk', data: { name: 'a.bin', bytes } });
  const got = await bob.next('file:chunk');
  assert.equal(got.name, 'a.bin');
  assert.ok(Buffer.isBuffer(got.bytes), `a Buffer, not ${JSON.stringify(got.bytes)}`);
  assert.deepEqual([...got.bytes], [...bytes]);
});

test('broadcast outside the channel is not_member; vocabulary and reserved names are forbidden', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users(d, 'alice', 'bob');
  await joinAll(ch, alice, bob);
  const [eve] = await users(d, 'eve');
  expectError(await eve.request('broadcast', { channelId: ch, event: 'board:update', data: 1 }), 'not_member');
  const names = ['message:received', 'message:direct', 'user:joined', 'user:left', 'user:online',
    'user:offline', 'typing:user', 'channel:joined', 'presence:list', 'pong', 'message:send',
    'channel:join', 'error', 'connect', 'connect_error', 'disconnect', 'disconnecting'];
  const wrong = [];
  for (const event of names) {
    const ack = await alice.request('broadcast', { channelId: ch, event, data: { forged: true } });
    if (!(ack?.ok === false && ack.error?.code === 'forbidden')) wrong.push(`${event} -> ${JSON.stringify(ack)}`);
  }
  assert.deepEqual(wrong, [], 'these names were not refused with forbidden');
  for (const payload of [{ channelId: ch }, { event: 'board:x' }, { channelId: ch, event: '' },
    { channelId: ch, event: { no: 1 } }]) {
    const ack = await alice.request('broadcast', payload);
    assert.ok(ack?.ok === false && ack.error?.code === 'bad_request',
      `broadcast ${JSON.stringify(payload)} answered ${JSON.stringify(ack)}`);
  }
  await bob.none('message:received');
  assert.deepEqual(bob.events.filter((e) => names.includes(e.event) && e.args?.[0]?.forged), []);
  await alice.assertAlive();
  await eve.assertAlive();
});

test('events.broadcast_allow restricts the names; vocabulary and reserved names stay forbidden', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users(allow, 'alice', 'bob');
  await joinAll(ch, alice, bob);
  await alice.ok('broadcast', { channelId: ch, event: 'game:move', data: { to: 'e4' } });
  assert.deepEqual(await bob.next('game:move'), { to: 'e4' });
  expectError(await alice.request('broadcast', { channelId: ch, event: 'board:update', data: 1 }), 'forbidden');
  // allowed by a glob, but names the daemon itself uses or the client reserves
  const names = ['message:received', 'message:direct', 'pong', 'connect', 'connect_error', 'disconnect', 'error'];
  const wrong = [];
  for (const event of names) {
    const ack = await alice.request('broadcast', { channelId: ch, event, data: { forged: true } });
    if (!(ack?.ok === false && ack.error?.code === 'forbidden')) wrong.push(`${event} -> ${JSON.stringify(ack)}`);
  }
  assert.deepEqual(wrong, [], 'with events.broadcast_allow, these names were not refused with forbidden');
  await bob.none('board:update');
  assert.deepEqual(bob.events.filter((e) => names.includes(e.event)), [], 'bob received forged events');
});

// --- history:get ---------------------------------------------------------------

test('history:get pages with before, after and limit, oldest first', { skip }, async () => {
  const ch = uniq();
  const [alice, bob, eve] = await users(d, 'alice', 'bob', 'eve');
  await joinAll(ch, alice, bob);
  const ids = [];
  for (let i = 1; i <= 6; i++) ids.push((await alice.ok('message:send', { channelId: ch, content: `n${i}` })).id);
  const page = async (q) => {
    const ack = await bob.ok('history:get', { channelId: ch, ...q });
    assert.equal(ack.channelId, ch);
    return ack.messages.map((m) => m.content);
  };
  assert.deepEqual(await page({}), ['n1', 'n2', 'n3', 'n4', 'n5', 'n6']);
  assert.deepEqual(await page({ limit: 2 }), ['n5', 'n6']);
  assert.deepEqual(await page({ after: ids[1] }), ['n3', 'n4', 'n5', 'n6']);
  assert.deepEqual(await page({ after: ids[1], limit: 2 }), ['n3', 'n4']);
  assert.deepEqual(await page({ before: ids[3] }), ['n1', 'n2', 'n3']);
  assert.deepEqual(await page({ before: ids[3], limit: 2 }), ['n2', 'n3']);
  assert.deepEqual(await page({ after: ids[0], before: ids[4] }), ['n2', 'n3', 'n4']);
  assert.deepEqual(await page({ after: ids[5] }), []);
  assert.deepEqual(await page({ limit: '3' }), ['n4', 'n5', 'n6']);
  const full = (await bob.ok('history:get', { channelId: ch, limit: 1 })).messages[0];
  assert.equal(full.id, ids[5]);
  assert.equal(full.senderId, 'alice');
  assert.equal(full.channelId, ch);
  // without an ack: the history:get event
  bob.emit('history:get', { channelId: ch, limit: 1 });
  assert.deepEqual((await bob.next('history:get')).messages.map((m) => m.content), ['n6']);
  // not a member / malformed
  expectError(await eve.request('history:get', { channelId: ch }), 'not_member');
  expectError(await bob.request('history:get', {}), 'bad_request');
  expectError(await bob.request('history:get', { channelId: ch, limit: 'many' }), 'bad_request');
  await bob.assertAlive();
  await eve.assertAlive();
});

test('channel:join with history: n returns the last n; with since: id resumes after it', { skip }, async () => {
  const ch = uniq();
  const [alice, bob, bob2, bob3] = await users(d, 'alice', 'bob', 'bob#2', 'bob#3');
  await joinAll(ch, alice);
  const ids = [];
  for (let i = 1; i <= 5; i++) ids.push((await alice.ok('message:send', { channelId: ch, content: `h${i}` })).id);
  const last2 = await bob.ok('channel:join', { channelId: ch, history: 2 });
  assert.deepEqual(last2.history.map((m) => m.content), ['h4', 'h5']);
  assert.deepEqual(last2.history.map((m) => m.id), [ids[3], ids[4]]);
  const resumed = await bob2.ok('channel:join', { channelId: ch, since: ids[2] });
  assert.deepEqual(resumed.history.map((m) => m.content), ['h4', 'h5']);
  const none = await bob3.ok('channel:join', { channelId: ch, since: ids[4] });
  assert.deepEqual(none.history, []);
});

// --- ping, unknown events, refusals --------------------------------------------

test('ping is answered by pong (ack or event) with the server time', { skip }, async () => {
  const [alice] = await users(d, 'alice');
  const t0 = Date.now();
  const ack = await alice.ok('ping', {});
  assert.equal(typeof ack.ts, 'number');
  assert.ok(Math.abs(ack.ts - t0) < 60000, `ts ${ack.ts} vs ${t0}`);
  alice.emit('ping');
  const pong = await alice.next('pong');
  assert.equal(typeof pong.ts, 'number');
});

test('an unknown event is ignored; with an ack it gets an empty ack', { skip }, async () => {
  const [alice] = await users(d, 'alice');
  const ack = await alice.socket.timeout(T).emitWithAck('no:such:event', { a: 1 });
  assert.equal(ack, undefined);
  alice.emit('no:such:event');
  await alice.none('error');
  await alice.assertAlive();
});

test('a burst of refused requests never closes the connection', { skip }, async () => {
  const ch = uniq();
  const [bob, alice] = await users(d, 'bob', 'alice');
  await joinAll(ch, alice);
  const asks = [
    ['channel:init', { channelId: ch }], ['channel:join', {}], ['message:send', { channelId: ch, content: 'x' }],
    ['message:send', 'not an object'], ['history:get', { channelId: ch }], ['typing:start', { channelId: ch }],
    ['presence:list', { channelId: ch }], ['broadcast', { channelId: ch, event: 'error' }],
    ['message:direct', {}], ['channel:leave', 17],
  ];
  const acks = await Promise.all(asks.map(([e, p]) => bob.request(e, p)));
  acks.forEach((a, i) => assert.equal(a?.ok, false, `${asks[i][0]} ${JSON.stringify(asks[i][1])}: ${JSON.stringify(a)}`));
  for (const [e, p] of asks) bob.emit(e, p);
  for (let i = 0; i < asks.length; i++) await bob.next('error');
  await bob.assertAlive();
  assert.equal(bob.connected, true);
  // and still fully usable
  await bob.ok('channel:join', { channelId: ch });
  await bob.ok('message:send', { channelId: ch, content: 'finally' });
  assert.equal((await alice.next('message:received')).content, 'finally');
  await alice.none('error', () => true, 0);
  await sleep(QUIET);
  assert.equal(bob.connected, true);
});
