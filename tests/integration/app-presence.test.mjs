// Presence as socket.io-client users see it: typing indicators (with their
// expiry), presence:list for a channel and for the whole namespace, and
// user:online / user:offline once per user.

import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { makeTest, finish, AEOLUS_ONLY } from './helpers.mjs';
import { startApp, connectAs, closeAll, uniq, expectError, sleep, SLOW } from './app-lib.mjs';

const TTL = 300 * SLOW;   // typing.ttl, ms

let d;
const test = makeTest(() => [d]);
const skip = AEOLUS_ONLY;

before(async () => {
  if (skip) return;
  d = await startApp({ set: { 'typing.ttl': `${TTL}ms` } });
});

afterEach(() => closeAll());

after(async () => {
  closeAll();
  await finish([d], d);
});

async function users(...ids) {
  return Promise.all(ids.map((id) => connectAs(d, id.split('#')[0], {}, { label: id })));
}

async function joinAll(channelId, ...clients) {
  for (const c of clients) await c.ok('channel:join', { channelId });
}

const typing = (user, isTyping) => (m) => m && m.userId === user && (isTyping === undefined || m.isTyping === isTyping);

// --- typing ----------------------------------------------------------------------

test('typing:start is shown to the others in the channel, not to the typist nor outsiders', { skip }, async () => {
  const ch = uniq(); const other = uniq();
  const [alice, bob, carol, dave] = await users('alice', 'bob', 'carol', 'dave');
  await joinAll(ch, alice, bob, carol);
  await joinAll(other, dave);
  await alice.ok('typing:start', { channelId: ch });
  for (const c of [bob, carol]) {
    assert.deepEqual(await c.next('typing:user', typing('alice', true)),
      { channelId: ch, userId: 'alice', name: 'Alice', isTyping: true });
  }
  await alice.ok('typing:stop', { channelId: ch });
  for (const c of [bob, carol]) {
    assert.deepEqual(await c.next('typing:user', typing('alice', false)),
      { channelId: ch, userId: 'alice', name: 'Alice', isTyping: false });
  }
  assert.deepEqual(alice.all('typing:user'), []);
  assert.deepEqual(dave.all('typing:user'), []);
  // typing:stop came before the ttl: no expiry follows
  await sleep(TTL + 150 * SLOW);
  assert.equal(bob.all('typing:user').length, 2, JSON.stringify(bob.all('typing:user')));
  assert.equal(carol.all('typing:user').length, 2);
});

test('a typing:start not refreshed ends by itself after typing.ttl, exactly once', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users('alice', 'bob');
  await joinAll(ch, alice, bob);
  const t0 = Date.now();
  alice.emit('typing:start', { channelId: ch });
  await bob.next('typing:user', typing('alice', true));
  const end = await bob.next('typing:user', typing('alice', false), TTL + 1500 * SLOW);
  const elapsed = Date.now() - t0;
  assert.deepEqual(end, { channelId: ch, userId: 'alice', name: 'Alice', isTyping: false });
  assert.ok(elapsed >= TTL - 30, `ended after ${elapsed} ms, before the ttl of ${TTL} ms`);
  // stopping after the expiry does not announce a second end
  await alice.ok('typing:stop', { channelId: ch });
  await bob.none('typing:user', () => true, TTL + 100 * SLOW);
  assert.deepEqual(alice.all('typing:user'), []);
});

test('typing:start again before the ttl pushes the expiry back', { skip }, async () => {
  // Timing: the refresh must reach the daemon before the first deadline; on a
  // machine too busy for that, the scenario is tried again.
  for (let attempt = 1; ; attempt++) {
    const ch = uniq();
    const [alice, bob] = await users('alice', 'bob');
    await joinAll(ch, alice, bob);
    const t0 = Date.now();
    await alice.ok('typing:start', { channelId: ch });
    await sleep(TTL / 2);
    const t1 = Date.now();
    await alice.ok('typing:start', { channelId: ch });
    if (Date.now() >= t0 + TTL && attempt < 3) {
      closeAll();
      continue;
    }
    await bob.next('typing:user', typing('alice', false), TTL + 1500 * SLOW);
    const ended = bob.lastAt;
    assert.ok(ended >= t1 + TTL - 5,
      `typing ended ${ended - t0} ms after the first start, ${ended - t1} ms after the refresh (ttl ${TTL} ms)`);
    await bob.none('typing:user', typing('alice', false), 150 * SLOW);
    assert.equal(bob.all('typing:user').filter((m) => m.isTyping === false).length, 1);
    return;
  }
});

test('typing:stop without a start announces nothing', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users('alice', 'bob');
  await joinAll(ch, alice, bob);
  await alice.ok('typing:stop', { channelId: ch });
  await bob.none('typing:user');
});

test('typing is refused outside the channel and without a channelId', { skip }, async () => {
  const ch = uniq();
  const [alice, bob] = await users('alice', 'bob');
  await joinAll(ch, alice);
  expectError(await bob.request('typing:start', { channelId: ch }), 'not_member');
  expectError(await bob.request('typing:stop', { channelId: ch }), 'not_member');
  expectError(await bob.request('typing:start', {}), 'bad_request');
  bob.emit('typing:start', { channelId: ch });
  assert.equal((await bob.next('error')).code, 'not_member');
  await alice.none('typing:user', () => true, TTL + 100 * SLOW);
  await bob.assertAlive();
});

// --- presence:list -----------------------------------------------------------------

test('presence:list of a channel lists each member once, sorted by user id', { skip }, async () => {
  const ch = uniq();
  const [carol, alice, alice2, bob, eve] = await users('carol', 'alice', 'alice#2', 'bob', 'eve');
  await joinAll(ch, carol, alice, alice2, bob);
  const ack = await bob.ok('presence:list', { channelId: ch });
  assert.equal(ack.channelId, ch);
  assert.deepEqual(ack.users, [
    { userId: 'alice', name: 'Alice' }, { userId: 'bob', name: 'Bob' }, { userId: 'carol', name: 'Carol' },
  ]);
  // one of alice's two sockets leaves: she is still there
  await alice.ok('channel:leave', { channelId: ch });
  assert.deepEqual((await bob.ok('presence:list', { channelId: ch })).users.map((u) => u.userId),
    ['alice', 'bob', 'carol']);
  alice2.close();
  carol.close();
  await bob.next('user:left', (m) => m.userId === 'alice');
  await bob.next('user:left', (m) => m.userId === 'carol');
  assert.deepEqual((await bob.ok('presence:list', { channelId: ch })).users, [{ userId: 'bob', name: 'Bob' }]);
  // without an ack: the presence:list event
  bob.emit('presence:list', { channelId: ch });
  assert.deepEqual(await bob.next('presence:list'), { channelId: ch, users: [{ userId: 'bob', name: 'Bob' }] });
  // a non-member cannot look in
  expectError(await eve.request('presence:list', { channelId: ch }), 'not_member');
  await eve.assertAlive();
});

test('presence:list without a channel lists the users online in the namespace', { skip }, async () => {
  const [olga, olga2, pete] = await users('olga', 'olga#2', 'pete');
  const list = async () => (await pete.ok('presence:list', {})).users;
  let now = await list();
  assert.deepEqual(now.filter((u) => u.userId === 'olga'), [{ userId: 'olga', name: 'Olga' }]);
  assert.deepEqual(now.filter((u) => u.userId === 'pete'), [{ userId: 'pete', name: 'Pete' }]);
  const ids = now.map((u) => u.userId);
  assert.deepEqual(ids, [...ids].sort(), 'sorted by user id');
  assert.equal(new Set(ids).size, ids.length, 'each user once');
  olga.close();
  await sleep(100 * SLOW);
  assert.ok((await list()).some((u) => u.userId === 'olga'), 'olga still has a socket');
  olga2.close();
  await pete.next('user:offline', (m) => m.userId === 'olga');
  now = await list();
  assert.ok(!now.some((u) => u.userId === 'olga'), `olga gone: ${JSON.stringify(now)}`);
});

// --- user:online / user:offline ------------------------------------------------------

test('user:online and user:offline go once per user to every socket', { skip }, async () => {
  const [obs, obs2] = await users('oscar', 'oscar#2');
  const is = (id) => (m) => m && m.userId === id;
  const dan = await connectAs(d, 'dan', {}, { label: 'dan' });
  for (const c of [obs, obs2, dan]) {
    assert.deepEqual(await c.next('user:online', is('dan')), { userId: 'dan' }, c.label);
  }
  const dan2 = await connectAs(d, 'dan', {}, { label: 'dan#2' });
  await Promise.all([obs, obs2, dan, dan2].map((c) => c.none('user:online', is('dan'))));
  dan.close();
  await Promise.all([obs, obs2, dan2].map((c) => c.none('user:offline', is('dan'))));
  dan2.close();
  for (const c of [obs, obs2]) {
    assert.deepEqual(await c.next('user:offline', is('dan')), { userId: 'dan' }, c.label);
  }
  await Promise.all([obs, obs2].map((c) => c.none('user:offline', is('dan'))));
  // back again: online once more
  const dan3 = await connectAs(d, 'dan', {}, { label: 'dan#3' });
  await obs.next('user:online', is('dan'));
  dan3.close();
  await obs.next('user:offline', is('dan'));
});
