// The peerprep profile (seed 003, SPEC 6) as the PeerPrep frontend uses it:
// socket.io-client with no authentication, `join`, `send` and `leave` with
// {username, room[, message]}, everything coming back as `receive`, refusals
// as `error {message}`. The history of a room is the service's own Redis list
// chat_history_{room} (JSON texts, oldest first, the last 100), which the old
// backend wrote and may still write: it is served as it is stored, and what
// aeolus appends is in the old backend's format.
//
// The flows run over polling only and over WebSocket only, on the store of
// the run (memory, or Redis with AEOLUS_TEST_STORE=redis). The Redis part runs
// on a redis-server of its own: history already there before the daemons
// start, the list as the old service reads it, and two instances on one Redis
// (one given REDIS_HOST/REDIS_PORT, the other REDIS_URL).

import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeTest, finish, AEOLUS_ONLY } from './helpers.mjs';
import {
  startApp, startRedis, haveRedis, connect, closeAll, uniq, sleep, T, QUIET, SLOW, PROFILE_DIR,
} from './app-lib.mjs';

const HAVE_REDIS = await haveRedis();
const skip = AEOLUS_ONLY;
const skipRedis = AEOLUS_ONLY || (!HAVE_REDIS && 'redis-server not found');
const TRANSPORTS = ['polling', 'websocket'];
const KEYS = ['message', 'username', '__createdtime__'];

let d;               // on the store of the run
let ds;              // the same, its join given args.since (which the list cannot serve)
let redis;           // the Redis part's own server
let a; let b;        // two instances on it
const PREFIX = `pp${process.pid}`;

// Written before the daemons start, in the old service's format (Python's
// json.dumps: spaces after ':' and ',', non-ASCII as \u escapes), with fields
// aeolus does not know, and one element that is not JSON.
const OLD_ROOM = uniq('interview');
const OLD = [
  '{"message": "Hello World", "username": "User123", "__createdtime__": 1632140800000}',
  '{"message": "caf\\u00e9 \\ud83d\\ude00 \\"quoted\\" </b>", "username": "Zo\\u00eb", "__createdtime__": 1632140801000}',
  'not JSON {',
  '{"message": "edited", "username": "User123", "__createdtime__": 1632140802000, "edited": true, ' +
    '"meta": {"lang": "py", "tags": [1, 2.5, null], "big": 12345678901234567}}',
  '{"username": "legacy", "message": "", "__createdtime__": 1632140803000.5}',
  '{"message": "x", "username": "u", "__createdtime__": NaN}',
];
const OLD_VALID = OLD.filter((t, i) => i !== 2 && i !== 5).map((t) => JSON.parse(t));
// A room whose list is full but one: what aeolus appends trims the oldest.
const FULL_ROOM = uniq('interview');

const test = makeTest(() => [d, ds, a, b]);

const SINCE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'aeolus-peerprep-'));
{
  const p = JSON.parse(fs.readFileSync(path.join(PROFILE_DIR, 'peerprep.json'), 'utf8'));
  p.name = 'peerprep-since';
  p.events.join.args.since = '{req.since}';
  fs.writeFileSync(path.join(SINCE_DIR, 'peerprep-since.json'), JSON.stringify(p, null, 2));
}

before(async () => {
  if (skip) return;
  d = await startApp({ profile: 'peerprep', jwt: false });
  ds = await startApp({ profile: 'peerprep-since', jwt: false, set: { 'server.profile_dir': SINCE_DIR } });
  if (skipRedis) return;
  redis = await startRedis();
  await redis.command('RPUSH', `chat_history_${OLD_ROOM}`, ...OLD);
  const full = [];
  for (let i = 1; i <= 99; i++) {
    full.push(JSON.stringify({ message: `old ${i}`, username: 'old', __createdtime__: 1632140800000 + i }));
  }
  await redis.command('RPUSH', `chat_history_${FULL_ROOM}`, ...full);
  a = await startApp({
    profile: 'peerprep', jwt: false, set: { 'redis.prefix': PREFIX },
    env: { REDIS_HOST: '127.0.0.1', REDIS_PORT: String(redis.port) },
  });
  b = await startApp({
    profile: 'peerprep', jwt: false, set: { 'redis.prefix': PREFIX }, env: { REDIS_URL: redis.url },
  });
});

afterEach(() => closeAll());

after(async () => {
  closeAll();
  await finish([d, ds, a, b], d);
  fs.rmSync(SINCE_DIR, { recursive: true, force: true });
  if (redis) await redis.stop();
});

// --- helpers ------------------------------------------------------------------

function user(name, transport, daemon = d) {
  return connect(daemon, { transports: [transport], label: `${name}/${transport}` });
}

const isNotice = (m) => m && m.username === 'ChatBot';
const joined = (name) => `${name} has joined the interview`;
const left = (name) => `${name} has left the interview`;

/** Asserts m is exactly ChatBot's notice `text`, made between t0 and now. */
function assertNotice(m, text, t0) {
  assert.deepEqual(Object.keys(m), KEYS, JSON.stringify(m));
  assert.equal(m.message, text);
  assert.equal(m.username, 'ChatBot');
  assert.ok(Number.isInteger(m.__createdtime__), JSON.stringify(m));
  assert.ok(m.__createdtime__ >= t0 - 5 && m.__createdtime__ <= Date.now() + 5,
    `__createdtime__ ${m.__createdtime__} not within [${t0}, now]`);
}

/** Asserts m is exactly the message {message: text, username, __createdtime__} made after t0. */
function assertMessage(m, text, username, t0) {
  assert.deepEqual(Object.keys(m), KEYS, JSON.stringify(m));
  assert.deepEqual({ message: m.message, username: m.username }, { message: text, username });
  assert.ok(Number.isInteger(m.__createdtime__) && m.__createdtime__ >= t0 - 5 &&
    m.__createdtime__ <= Date.now() + 5, JSON.stringify(m));
}

/** Joins and waits for the joiner's own notice; resolves every receive the
 * joiner got up to it (the history, then the notice). */
async function join(c, username, room) {
  const t0 = Date.now();
  c.emit('join', { username, room });
  const n = await c.next('receive', (m) => isNotice(m) && m.message === joined(username));
  assertNotice(n, joined(username), t0);
  const got = c.all('receive');
  const at = got.indexOf(n);
  for (const e of c.events.filter((e) => e.event === 'receive')) e.taken = true;
  return got.slice(0, at + 1);
}

/** Sends and waits until `c` (in the room) gets it back. */
async function send(c, username, room, message) {
  c.emit('send', { room, username, message });
  return c.next('receive', (m) => m && m.username === username && m.message === message);
}

/** The error events `c` gets for a payload, after `emit`. */
async function refusedWith(c, event, payload, message) {
  c.emit(event, payload);
  const e = await c.next('error');
  assert.deepEqual(e, { message }, `${event} ${JSON.stringify(payload)}`);
}

/** Waits until the daemon's log has `text`. */
async function logged(daemon, text) {
  const until = Date.now() + T;
  while (!daemon.stderr.includes(text)) {
    if (Date.now() > until) assert.fail(`not in the log of ${daemon.label}: ${text}\n${daemon.stderr}`);
    await sleep(20);
  }
}

const lrange = async (room) => redis.command('LRANGE', `chat_history_${room}`, 0, -1);

// --- the flows, on the store of the run ----------------------------------------

for (const tr of TRANSPORTS) {
  test(`${tr}: join announces the joiner to the whole room, the joiner included, and to no other room`, { skip }, async () => {
    const room = uniq('interview'); const other = uniq('interview');
    const alice = await user('alice', tr); const bob = await user('bob', tr);
    const carol = await user('carol', tr);
    assert.deepEqual(await join(alice, 'alice', room), [alice.all('receive')[0]]);
    await join(carol, 'carol', other);
    const t0 = Date.now();
    const got = await join(bob, 'bob', room);
    assert.equal(got.length, 1, `an empty room has no history: ${JSON.stringify(got)}`);
    assertNotice(await alice.next('receive'), joined('bob'), t0);
    await carol.none('receive');
    await alice.none('receive');
  });

  test(`${tr}: send reaches the whole room, the sender included, exactly as stored; another room nothing`, { skip }, async () => {
    const room = uniq('interview'); const other = uniq('interview');
    const alice = await user('alice', tr); const bob = await user('bob', tr);
    const carol = await user('carol', tr);
    await join(alice, 'alice', room);
    await join(bob, 'bob', room);
    await alice.next('receive', (m) => isNotice(m) && m.message === joined('bob'));
    await join(carol, 'carol', other);
    const t0 = Date.now();
    alice.emit('send', { room, username: 'alice', message: 'Hello <b>World</b> é 😀' });
    const mine = await alice.next('receive');
    const theirs = await bob.next('receive');
    assertMessage(mine, 'Hello <b>World</b> é 😀', 'alice', t0);
    assert.deepEqual(theirs, mine);
    await carol.none('receive');
    await alice.none('receive');
    await bob.none('receive');
  });

  test(`${tr}: a joiner gets the room's messages oldest first, one receive each, then the notice; notices are not stored`, { skip }, async () => {
    const room = uniq('interview');
    const alice = await user('alice', tr); const bob = await user('bob', tr);
    await join(alice, 'alice', room);
    await join(bob, 'bob', room);
    const sent = [];
    sent.push(await send(alice, 'alice', room, 'one'));
    sent.push(await send(bob, 'bob', room, 'two'));
    sent.push(await send(alice, 'alice', room, 'three'));
    bob.emit('leave', { username: 'bob', room });
    await alice.next('receive', (m) => isNotice(m) && m.message === left('bob'));
    const carol = await user('carol', tr);
    const t0 = Date.now();
    const got = await join(carol, 'carol', room);
    assert.equal(got.length, 4, JSON.stringify(got));
    assert.deepEqual(got.slice(0, 3), sent);
    assertNotice(got[3], joined('carol'), t0);
    // a second look: the same three, still no notice among them
    const dave = await user('dave', tr);
    assert.deepEqual((await join(dave, 'dave', room)).slice(0, -1), sent);
  });

  test(`${tr}: leave takes the socket out and tells the rest of the room`, { skip }, async () => {
    const room = uniq('interview'); const other = uniq('interview');
    const alice = await user('alice', tr); const bob = await user('bob', tr);
    const carol = await user('carol', tr);
    await join(alice, 'alice', room);
    await join(bob, 'bob', room);
    await alice.next('receive', (m) => isNotice(m) && m.message === joined('bob'));
    await join(carol, 'carol', other);
    const t0 = Date.now();
    bob.emit('leave', { username: 'bob', room });
    assertNotice(await alice.next('receive'), left('bob'), t0);
    await bob.none('receive');      // left before the notice, as the old service
    await carol.none('receive');
    await send(alice, 'alice', room, 'after bob left');
    await bob.none('receive');
    // leaving a room not joined: the notice all the same, no error
    carol.emit('leave', { username: 'carol', room });
    assertNotice(await alice.next('receive'), left('carol'), t0);
    await carol.none('error', () => true, 0);
  });

  test(`${tr}: missing or empty fields are refused with error {message}; nothing is sent or stored`, { skip }, async () => {
    const room = uniq('interview');
    const alice = await user('alice', tr); const bob = await user('bob', tr);
    await join(bob, 'bob', room);
    const J = 'username and room are required';
    const S = 'room, username and message are required';
    await refusedWith(alice, 'join', { room }, J);
    await refusedWith(alice, 'join', { username: 'alice' }, J);
    await refusedWith(alice, 'join', { username: '', room }, J);
    await refusedWith(alice, 'join', {}, J);
    await refusedWith(alice, 'join', 'not an object', J);
    await refusedWith(alice, 'join', undefined, J);
    await refusedWith(alice, 'send', { username: 'alice', message: 'hi' }, S);
    await refusedWith(alice, 'send', { room, message: 'hi' }, S);
    await refusedWith(alice, 'send', { room, username: 'alice' }, S);
    await refusedWith(alice, 'send', { room, username: 'alice', message: '' }, S);
    await refusedWith(alice, 'leave', { room }, J);
    await refusedWith(alice, 'leave', { username: 'alice' }, J);
    await bob.none('receive');
    await alice.none('receive');
    const carol = await user('carol', tr);
    assert.equal((await join(carol, 'carol', room)).length, 1, 'nothing was stored');
    await alice.none('error', () => true, 0);
  });

  test(`${tr}: a sender that has not joined is served as by the old service: stored, sent to the room`, { skip }, async () => {
    const room = uniq('interview');
    const alice = await user('alice', tr); const bob = await user('bob', tr);
    await join(bob, 'bob', room);
    const t0 = Date.now();
    alice.emit('send', { room, username: 'alice', message: 'from outside' });
    assertMessage(await bob.next('receive'), 'from outside', 'alice', t0);
    await alice.none('receive');    // not in the room
    await alice.none('error', () => true, 0);
    const carol = await user('carol', tr);
    const got = await join(carol, 'carol', room);
    assert.equal(got.length, 2);
    assertMessage(got[0], 'from outside', 'alice', t0);
  });

  test(`${tr}: the history keeps the last 100: after 105 messages a joiner gets exactly 6..105 in order`, { skip, timeout: 30000 * SLOW }, async () => {
    const room = uniq('interview');
    // two people take turns, as in an interview (each socket has its own rate limit)
    const alice = await user('alice', tr); const bob = await user('bob', tr);
    await join(alice, 'alice', room);
    await join(bob, 'bob', room);
    await alice.next('receive', (m) => isNotice(m) && m.message === joined('bob'));
    const sent = [];
    for (let i = 1; i <= 105; i++) {
      const [c, name] = i % 2 ? [alice, 'alice'] : [bob, 'bob'];
      sent.push(await send(c, name, room, `message ${i}`));
    }
    const carol = await user('carol', tr);
    const got = await join(carol, 'carol', room);
    assert.equal(got.length, 101);
    assert.deepEqual(got.slice(0, 100).map((m) => m.message),
      Array.from({ length: 100 }, (_, k) => `message ${k + 6}`));
    assert.deepEqual(got.slice(0, 100), sent.slice(5));
    assert.ok(isNotice(got[100]));
  });
}

test('a room id given as a number is the room of its decimal string', { skip }, async () => {
  const room = String(Date.now() % 1000000000 + process.pid);
  const alice = await user('alice', 'websocket'); const bob = await user('bob', 'websocket');
  await join(alice, 'alice', Number(room));
  await join(bob, 'bob', room);
  await alice.next('receive', (m) => isNotice(m) && m.message === joined('bob'));
  await send(alice, 'alice', Number(room), 'numbered');
  await bob.next('receive', (m) => m.message === 'numbered');
});

test('a join asking for messages since an id is refused, and the socket is not in the room', { skip }, async () => {
  const room = uniq('interview');
  const alice = await user('alice', 'websocket', ds); const bob = await user('bob', 'websocket', ds);
  await join(alice, 'alice', room);
  await refusedWith(bob, 'join', { username: 'bob', room, since: '1' }, 'username and room are required');
  await alice.none('receive');
  await send(alice, 'alice', room, 'not for bob');
  await bob.none('receive');
  // without since, the same join is served
  await join(bob, 'bob', room);
});

// --- on Redis: the service's own list, shared with the old backend -------------

test('history already in Redis in the old format is served as it is, oldest first; what is not JSON is left out and logged', { skip: skipRedis }, async () => {
  for (const [daemon, tr] of [[a, 'polling'], [b, 'websocket']]) {
    const alice = await user('alice', tr, daemon);
    const t0 = Date.now();
    const got = await join(alice, 'alice', OLD_ROOM);
    assert.deepEqual(got.slice(0, -1), OLD_VALID);
    assert.equal(got.length, OLD_VALID.length + 1);
    assertNotice(got.at(-1), joined('alice'), t0);
    alice.close();
  }
  for (const daemon of [a, b]) {
    await logged(daemon, `list chat_history_${OLD_ROOM}: element 3 of ${OLD.length} is not JSON, left out: 'not JSON {'`);
    await logged(daemon, `list chat_history_${OLD_ROOM}: element 6 of ${OLD.length} is not JSON`);
  }
  // the old data is untouched: serving it changes nothing
  assert.deepEqual(await lrange(OLD_ROOM), OLD);
});

test('a message sent through aeolus is appended to chat_history_{room} as the old service writes it', { skip: skipRedis }, async () => {
  const alice = await user('alice', 'websocket', a);
  await join(alice, 'alice', OLD_ROOM);
  const t0 = Date.now();
  const echo = await send(alice, 'alice', OLD_ROOM, 'new from aeolus "quoted" é');
  assertMessage(echo, 'new from aeolus "quoted" é', 'alice', t0);
  const list = await lrange(OLD_ROOM);
  assert.deepEqual(list.slice(0, OLD.length), OLD, 'the old elements stay as they were');
  assert.equal(list.length, OLD.length + 1);
  const stored = JSON.parse(list.at(-1));
  assert.deepEqual(Object.keys(stored), KEYS);
  assert.deepEqual(stored, echo);
  assert.equal(typeof stored.__createdtime__, 'number');
  // the old service reads it with json.loads: so does Python here, when there is one
  const py = await new Promise((resolve) => {
    const p = execFile('python3', ['-c',
      'import json,sys; m=json.loads(sys.stdin.read()); print(json.dumps(sorted(m)), type(m["__createdtime__"]).__name__)'],
    (err, out) => resolve(err ? null : out.trim()));
    p.stdin.end(list.at(-1));
  });
  if (py !== null) assert.equal(py, '["__createdtime__", "message", "username"] int');
});

test('aeolus keeps the last 100 of a list the old service filled', { skip: skipRedis }, async () => {
  const alice = await user('alice', 'polling', b);
  const got = await join(alice, 'alice', FULL_ROOM);
  assert.equal(got.length, 100);
  assert.equal(got[0].message, 'old 1');
  for (const m of ['new 1', 'new 2', 'new 3']) await send(alice, 'alice', FULL_ROOM, m);
  const list = (await lrange(FULL_ROOM)).map((t) => JSON.parse(t));
  assert.equal(list.length, 100);
  assert.deepEqual(list.slice(0, 2).map((m) => m.message), ['old 3', 'old 4']);
  assert.deepEqual(list.slice(-3).map((m) => m.message), ['new 1', 'new 2', 'new 3']);
});

test('the list is the service\'s own key, not under redis.prefix; notices are not in it', { skip: skipRedis }, async () => {
  const room = uniq('interview');
  const alice = await user('alice', 'websocket', a);
  await join(alice, 'alice', room);
  await send(alice, 'alice', room, 'only this');
  alice.emit('leave', { username: 'alice', room });
  await sleep(QUIET);
  const list = await lrange(room);
  assert.equal(list.length, 1);
  assert.equal(JSON.parse(list[0]).message, 'only this');
  const keys = await redis.command('KEYS', '*chat_history_*');
  assert.ok(keys.includes(`chat_history_${room}`));
  assert.deepEqual(keys.filter((k) => !k.startsWith('chat_history_')), []);
  assert.deepEqual(await redis.command('KEYS', `${PREFIX}:history*`), []);
});

test('what the old backend appends while aeolus runs is served to the next joiner', { skip: skipRedis }, async () => {
  const room = uniq('interview');
  const alice = await user('alice', 'websocket', a);
  await join(alice, 'alice', room);
  await send(alice, 'alice', room, 'via aeolus');
  const old = '{"message": "via the old backend", "username": "py", "__createdtime__": 1700000000000}';
  await redis.command('RPUSH', `chat_history_${room}`, old);
  const bob = await user('bob', 'polling', b);
  const got = await join(bob, 'bob', room);
  assert.deepEqual(got.slice(0, -1).map((m) => m.message), ['via aeolus', 'via the old backend']);
  assert.deepEqual(got[1], JSON.parse(old));
});

test('two instances on one Redis: send on A reaches B\'s sockets; a joiner on B sees what was sent through A', { skip: skipRedis }, async () => {
  const room = uniq('interview'); const other = uniq('interview');
  const alice = await user('alice', 'websocket', a);
  const bob = await user('bob', 'polling', b);
  const carol = await user('carol', 'websocket', b);
  await join(alice, 'alice', room);
  await join(bob, 'bob', room);
  assertNotice(await alice.next('receive'), joined('bob'), 0);
  await join(carol, 'carol', other);
  const t0 = Date.now();
  alice.emit('send', { room, username: 'alice', message: 'across' });
  const there = await bob.next('receive');
  assertMessage(there, 'across', 'alice', t0);
  assert.deepEqual(await alice.next('receive'), there);
  await send(bob, 'bob', room, 'and back');
  await alice.next('receive', (m) => m.message === 'and back');
  bob.emit('leave', { username: 'bob', room });
  assertNotice(await alice.next('receive'), left('bob'), t0);
  await carol.none('receive');
  for (const [daemon, tr] of [[b, 'polling'], [a, 'websocket']]) {
    const dave = await user('dave', tr, daemon);
    const got = await join(dave, 'dave', room);
    assert.deepEqual(got.slice(0, -1).map((m) => [m.username, m.message]),
      [['alice', 'across'], ['bob', 'and back']]);
    assert.deepEqual(got[0], there);
    dave.close();
  }
});

test('with Redis unreachable join and send are refused with error {message}, and served again once it is back', { skip: skipRedis }, async () => {
  let r2 = await startRedis();
  const c = await startApp({ profile: 'peerprep', jwt: false, set: { 'redis.url': r2.url } });
  try {
    const room = uniq('interview');
    await r2.command('RPUSH', `chat_history_${room}`, OLD[0]);
    const alice = await user('alice', 'websocket', c);
    assert.equal((await join(alice, 'alice', room)).length, 2);
    const port = r2.port;
    await r2.stop();
    await sleep(100 * SLOW);
    for (const [event, payload] of [['join', { username: 'bob', room }],
      ['send', { room, username: 'alice', message: 'lost' }]]) {
      alice.emit(event, payload);
      const e = await alice.next('error');
      assert.deepEqual(e, { message: 'the store is unavailable, try again' });
    }
    r2 = await startRedis({ port });
    const until = Date.now() + 5000 * SLOW;
    for (;;) {         // reconnected with back-off
      const bob = await user('bob', 'polling', c);
      bob.emit('join', { username: 'bob', room });
      const got = await Promise.race([bob.next('receive').then(() => true), bob.next('error').then(() => false)]);
      bob.close();
      if (got) break;
      assert.ok(Date.now() < until, 'not served again after Redis came back');
      await sleep(200);
    }
    await send(alice, 'alice', room, 'after the outage');
    assert.deepEqual((await r2.command('LRANGE', `chat_history_${room}`, 0, -1)).map((t) => JSON.parse(t).message),
      ['after the outage']);
  } finally {
    closeAll();
    await finish([c]);
    await r2.stop();
  }
});
