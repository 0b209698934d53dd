// Who may join which channel: rooms.policy (open, deny, token, redis; first
// matching pattern wins), rooms granted by the token (JWT or Redis record),
// rooms joined automatically by role (rooms.roles) or from the token
// (rooms.join_from_token).

import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { makeTest, finish, AEOLUS_ONLY } from './helpers.mjs';
import {
  startApp, startRedis, haveRedis, connect, connectAs, closeAll, uniq, expectError, sleep, SLOW,
} from './app-lib.mjs';

let pol;      // rooms.policy + rooms.roles (+ Redis when available)
let auto;     // rooms.join_from_token = yes
let redis;
const test = makeTest(() => [pol, auto]);
const skip = AEOLUS_ONLY;
const redisOk = !skip && await haveRedis();
const skipRedis = skip || (!redisOk && 'redis-server is not installed');

const POLICY = [
  'channel:pub-*=open',
  'channel:deny-*=deny',
  'channel:team-*=token',
  'channel:vip-*=redis',
  'channel:*=token',
].join(', ');

before(async () => {
  if (skip) return;
  const set = {
    'rooms.policy': POLICY,
    'rooms.roles': 'channel:staff=admin support; channel:lobby=*',
  };
  if (redisOk) {
    redis = await startRedis();
    Object.assign(set, { 'redis.url': redis.url, 'auth.token_prefix': 'pfx' });
  }
  pol = await startApp({ set });
  auto = await startApp({ set: { 'rooms.join_from_token': 'yes' } });
});

afterEach(() => closeAll());

after(async () => {
  closeAll();
  try {
    await finish([pol, auto], pol);
  } finally {
    if (redis) await redis.stop();
  }
});

const refusedJoin = async (c, channelId, code = 'forbidden') =>
  expectError(await c.request('channel:join', { channelId }), code);

// --- open, deny -------------------------------------------------------------------

test('open: anyone may join', { skip }, async () => {
  const ch = uniq('pub');
  const [alice, bob] = await Promise.all([connectAs(pol, 'alice'), connectAs(pol, 'bob')]);
  await alice.ok('channel:join', { channelId: ch });
  await bob.ok('channel:join', { channelId: ch });
  await alice.next('user:joined', (m) => m.userId === 'bob');
});

test('deny: nobody may join, whatever the token says; the refusal keeps them out', { skip }, async () => {
  const ch = uniq('deny');
  const alice = await connectAs(pol, 'alice', { rooms: [ch, `channel:${ch}`], role: 'admin' });
  const err = await refusedJoin(alice, ch);
  assert.equal(typeof err.message, 'string');
  expectError(await alice.request('message:send', { channelId: ch, content: 'x' }), 'not_member');
  alice.emit('channel:join', { channelId: ch });
  assert.equal((await alice.next('error')).code, 'forbidden');
  await alice.none('channel:joined', () => true, 0);
  await alice.assertAlive();
});

// --- token ---------------------------------------------------------------------------

test("token: the rule's * is one of the token's memberships, or the room is listed", { skip }, async () => {
  const red = await connectAs(pol, 'rory', { rooms: ['red'] });
  await red.ok('channel:join', { channelId: 'team-red' });
  await refusedJoin(red, 'team-blue');
  // the full room name in the token
  const green = await connectAs(pol, 'gina', { memberships: ['channel:team-green'] });
  await green.ok('channel:join', { channelId: 'team-green' });
  await refusedJoin(green, 'team-red');
  // no rooms at all
  const none = await connectAs(pol, 'nell');
  await refusedJoin(none, 'team-red');
  // the catch-all rule: channel:* = token
  const abc = await connectAs(pol, 'abe', { rooms: ['abc'] });
  await abc.ok('channel:join', { channelId: 'abc' });
  await refusedJoin(abc, 'xyz');
  // a membership does not match a longer or shorter room name
  await refusedJoin(red, 'team-redder');
  await refusedJoin(red, 'team-re');
  await red.assertAlive();
});

test('the first matching rule wins', { skip }, async () => {
  // channel:pub-* is open although channel:* (later) needs the token
  const nell = await connectAs(pol, 'nell');
  await nell.ok('channel:join', { channelId: uniq('pub') });
  // channel:deny-* comes before channel:*: the token's membership does not help
  const dee = await connectAs(pol, 'dee', { rooms: ['deny-1'] });
  await refusedJoin(dee, 'deny-1');
});

// --- redis -------------------------------------------------------------------------

test('redis: the user must be in {prefix}:acl:{room}, checked at every join', { skip: skipRedis }, async () => {
  const ch = uniq('vip');
  await redis.command('SADD', `aeolus:acl:channel:${ch}`, 'alice');
  const [alice, alice2, bob] = await Promise.all([
    connectAs(pol, 'alice'), connectAs(pol, 'alice', {}, { label: 'alice#2' }), connectAs(pol, 'bob')]);
  const ack = await alice.ok('channel:join', { channelId: ch });
  assert.deepEqual(ack.members, [{ userId: 'alice', name: 'Alice' }]);
  await refusedJoin(bob, ch);
  // a token listing the room does not replace the access list
  const tok = await connectAs(pol, 'tom', { rooms: [ch, `channel:${ch}`] });
  await refusedJoin(tok, ch);
  // added later: admitted
  await redis.command('SADD', `aeolus:acl:channel:${ch}`, 'bob');
  await bob.ok('channel:join', { channelId: ch });
  await alice.next('user:joined', (m) => m.userId === 'bob');
  // removed: refused from then on
  await redis.command('SREM', `aeolus:acl:channel:${ch}`, 'alice');
  await refusedJoin(alice2, ch);
  await bob.assertAlive();
});

test('redis: room names with spaces and a client gone before the answer', { skip: skipRedis }, async () => {
  const ch = `${uniq('vip')} with spaces`;
  await redis.command('SADD', `aeolus:acl:channel:${ch}`, 'alice', 'ghost');
  const [alice, ghost] = await Promise.all([connectAs(pol, 'alice'), connectAs(pol, 'ghost')]);
  await alice.ok('channel:join', { channelId: ch });
  // ghost asks to join and leaves before the access list was checked
  // (Redis holds every answer for a moment)
  await redis.command('CLIENT', 'PAUSE', String(400 * SLOW), 'ALL');
  ghost.emit('channel:join', { channelId: ch });
  await sleep(100 * SLOW);
  ghost.socket.disconnect();
  await sleep(400 * SLOW);
  await alice.none('user:joined');
  await alice.none('user:left', () => true, 0);
  assert.deepEqual((await alice.ok('presence:list', { channelId: ch })).users.map((u) => u.userId), ['alice']);
  await alice.assertAlive();
});

test("a Redis token's rooms grant token-policy channels", { skip: skipRedis }, async () => {
  await redis.command('SET', 'pfx:tok-tina', JSON.stringify({ userId: 'tina', name: 'Tina', rooms: ['red'] }));
  const tina = await connect(pol, { token: 'tok-tina', label: 'tina' });
  await tina.ok('channel:join', { channelId: 'team-red' });
  await refusedJoin(tina, 'team-blue');
});

// --- rooms joined automatically ------------------------------------------------------

test('rooms.roles: sockets join the room of their role on connect', { skip }, async () => {
  const [ada, sam, carl] = await Promise.all([
    connectAs(pol, 'ada', { role: 'admin' }), connectAs(pol, 'sam', { role: 'support' }), connectAs(pol, 'carl')]);
  // ada and sam are in channel:staff without joining it
  await ada.ok('message:send', { channelId: 'staff', content: 'staff only' });
  assert.equal((await sam.next('message:received')).content, 'staff only');
  expectError(await carl.request('message:send', { channelId: 'staff', content: 'me too' }), 'not_member');
  await carl.none('message:received', (m) => m.channelId === 'staff');
  // channel:lobby = *: carl, with no role, is in it
  await carl.ok('message:send', { channelId: 'lobby', content: 'hi' });
});

test('rooms.roles: a socket joins every room its role is listed for', { skip }, async () => {
  // ada (admin) belongs in channel:staff and channel:lobby, carl in channel:lobby
  const [ada, carl] = await Promise.all([connectAs(pol, 'ada', { role: 'admin' }), connectAs(pol, 'carl')]);
  await carl.ok('message:send', { channelId: 'lobby', content: 'hello lobby' });
  assert.equal((await ada.next('message:received', (m) => m.channelId === 'lobby')).content, 'hello lobby');
  await ada.ok('message:send', { channelId: 'lobby', content: 'hello carl' });
  assert.equal((await carl.next('message:received', (m) => m.channelId === 'lobby')).content, 'hello carl');
});

test("rooms.join_from_token: sockets join the token's rooms on connect", { skip }, async () => {
  const ch = uniq('news');
  const [reader, writer, other] = await Promise.all([
    connectAs(auto, 'rita', { rooms: [`channel:${ch}`] }),
    connectAs(auto, 'will'),
    connectAs(auto, 'otto', { rooms: ['channel:elsewhere'] }),
  ]);
  await writer.ok('channel:join', { channelId: ch });
  await writer.ok('message:send', { channelId: ch, content: 'extra! extra!' });
  assert.equal((await reader.next('message:received')).content, 'extra! extra!');
  await reader.ok('message:send', { channelId: ch, content: 'read it' });
  assert.equal((await writer.next('message:received')).content, 'read it');
  await other.none('message:received');
});

// --- last: Redis goes away -----------------------------------------------------------

test('redis policy with Redis down: the join is refused (unavailable), the connection stays', { skip: skipRedis }, async () => {
  const ch = uniq('vip');
  await redis.command('SADD', `aeolus:acl:channel:${ch}`, 'alice');
  const alice = await connectAs(pol, 'alice');
  await redis.stop();
  redis = null;
  const ack = await alice.request('channel:join', { channelId: ch });
  expectError(ack, 'unavailable');
  await alice.assertAlive();
  // With Redis configured, the store is on it too, so every join is refused
  // while it is away (serving local state meanwhile is the Redis store's
  // fault handling, tested with it).
  expectError(await alice.request('channel:join', { channelId: uniq('pub') }), 'unavailable');
});
