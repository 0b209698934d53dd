// The official socket.io-client (4.8) against the daemon, over polling only,
// websocket only, and the default (polling, then upgrade to websocket).

import { before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { io, Manager } from 'socket.io-client';
import { startDaemon, makeTest, withTimeout, finish, SLOW } from './helpers.mjs';

let d;
let relaxed; // heartbeat relaxed for the many-clients test
const test = makeTest(() => [d, relaxed]);

before(async () => {
  d = await startDaemon();
});

after(() => finish([d, relaxed], d));

const MODES = {
  polling: { transports: ['polling'] },
  websocket: { transports: ['websocket'] },
  default: {},
};

const T = 3000 * SLOW;

function once(emitter, event, what = event) {
  return withTimeout(new Promise((resolve) => emitter.once(event, (...a) => resolve(a))), T, what);
}

/** Connect and resolve {socket, auth} once connected and the auth event arrived. */
async function connect(mode, nsp = '/', extra = {}, server = d) {
  const socket = io(server.url + nsp, {
    ...MODES[mode], forceNew: true, reconnection: false, timeout: T, ...extra,
  });
  // transport the connection started with, and the upgrade event (default mode)
  socket.firstTransport = socket.io.engine?.transport?.name;
  socket.upgraded = socket.io.engine
    ? withTimeout(new Promise((resolve) => socket.io.engine.once('upgrade', resolve)), T, 'transport upgrade')
    : Promise.reject(new Error('no engine'));
  socket.upgraded.catch(() => {});
  const authP = once(socket, 'auth', 'the auth event');
  const connectP = new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  try {
    await withTimeout(connectP, T, 'connect');
    const [auth] = await authP;
    return { socket, auth };
  } catch (e) {
    socket.disconnect();
    throw e;
  }
}

/** Emit `message` and resolve the arguments of the next `message-back`. */
function roundTrip(socket, ...args) {
  const p = once(socket, 'message-back', 'message-back');
  socket.emit('message', ...args);
  return p;
}

function bytes(x) {
  if (Buffer.isBuffer(x)) return x;
  if (x instanceof ArrayBuffer) return Buffer.from(x);
  if (ArrayBuffer.isView(x)) return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  throw new Error(`not binary: ${typeof x} ${JSON.stringify(x)}`);
}

for (const mode of Object.keys(MODES)) {
  describe(`socket.io-client, ${mode} transport`, () => {
    test('connects and receives the auth event', async () => {
      const { socket, auth } = await connect(mode);
      try {
        assert.equal(socket.connected, true);
        assert.equal(typeof socket.id, 'string');
        assert.deepEqual(auth, {});
        const expected = mode === 'polling' ? 'polling' : 'websocket';
        assert.equal(socket.firstTransport, mode === 'websocket' ? 'websocket' : 'polling');
        if (mode === 'default') await socket.upgraded;
        assert.equal(socket.io.engine.transport.name, expected);
        if (mode === 'default') {
          // still usable after the upgrade
          assert.deepEqual(await roundTrip(socket, 'after-upgrade'), ['after-upgrade']);
        }
      } finally {
        socket.disconnect();
      }
    });

    test('auth payload is passed to the server', async () => {
      const { socket, auth } = await connect(mode, '/', { auth: { token: 'abc', n: 42, nested: { ok: true } } });
      try {
        assert.deepEqual(auth, { token: 'abc', n: 42, nested: { ok: true } });
      } finally {
        socket.disconnect();
      }
    });

    test('mixed arguments are echoed unchanged', async () => {
      const { socket } = await connect(mode);
      try {
        const args = [1, -2.5, 'two', 'héllo ✓ 😀', { a: { b: [1, 2, { c: 'd' }] } }, null, true, false, [], {}];
        assert.deepEqual(await roundTrip(socket, ...args), args);
      } finally {
        socket.disconnect();
      }
    });

    test('binary arguments are echoed as binary', async () => {
      const { socket } = await connect(mode);
      try {
        const a = Buffer.from([0, 1, 2, 3, 254, 255]);
        const b = Buffer.alloc(100000, 7);
        const got = await roundTrip(socket, 'bin', a, { nested: b, label: 'x' });
        assert.equal(got.length, 3);
        assert.equal(got[0], 'bin');
        assert.deepEqual(bytes(got[1]), a);
        assert.equal(got[2].label, 'x');
        assert.deepEqual(bytes(got[2].nested), b);
      } finally {
        socket.disconnect();
      }
    });

    test('acks return the emitted arguments', async () => {
      const { socket } = await connect(mode);
      try {
        const r1 = await withTimeout(socket.emitWithAck('message-with-ack', 'héllo ✓ 😀'), T, 'ack');
        assert.equal(r1, 'héllo ✓ 😀');
        const r2 = await withTimeout(new Promise((resolve) => {
          socket.emit('message-with-ack', 1, { two: [2] }, null, (...a) => resolve(a));
        }), T, 'ack with several arguments');
        assert.deepEqual(r2, [1, { two: [2] }, null]);
        const r3 = await withTimeout(socket.emitWithAck('message-with-ack', Buffer.from([9, 9, 9])), T, 'binary ack');
        assert.deepEqual(bytes(r3), Buffer.from([9, 9, 9]));
      } finally {
        socket.disconnect();
      }
    });

    test('200 rapid emits come back in order', async () => {
      const { socket } = await connect(mode);
      try {
        const got = [];
        const done = new Promise((resolve) => {
          socket.on('message-back', (i, s) => {
            got.push([i, s]);
            if (got.length === 200) resolve();
          });
        });
        for (let i = 0; i < 200; i++) socket.emit('message', i, `msg-${i}`);
        await withTimeout(done, 8000 * SLOW, '200 echoes');
        assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => [i, `msg-${i}`]));
      } finally {
        socket.disconnect();
      }
    });

    test('custom namespace /custom', async () => {
      const { socket, auth } = await connect(mode, '/custom', { auth: { room: 'c' } });
      try {
        assert.equal(socket.nsp, '/custom');
        assert.deepEqual(auth, { room: 'c' });
      } finally {
        socket.disconnect();
      }
    });

    test('refused namespace gives connect_error "Invalid namespace"', async () => {
      const socket = io(`${d.url}/nope`, { ...MODES[mode], forceNew: true, reconnection: false, timeout: T });
      try {
        const [err] = await once(socket, 'connect_error');
        assert.equal(err.message, 'Invalid namespace');
        assert.equal(socket.connected, false);
      } finally {
        socket.disconnect();
      }
    });

    test('multiplexing / and /custom over one connection', async () => {
      const manager = new Manager(d.url, { ...MODES[mode], reconnection: false, timeout: T });
      const main = manager.socket('/', { auth: { who: 'main' } });
      const custom = manager.socket('/custom', { auth: { who: 'custom' } });
      try {
        const [[a], [b]] = await Promise.all([once(main, 'auth'), once(custom, 'auth')]);
        assert.deepEqual(a, { who: 'main' });
        assert.deepEqual(b, { who: 'custom' });
        assert.equal(main.io, custom.io);
        assert.equal(main.io.engine, custom.io.engine);
        assert.notEqual(main.id, custom.id);
        assert.deepEqual(await roundTrip(main, 'multiplexed', 1), ['multiplexed', 1]);
        // leaving /custom keeps / alive on the shared connection
        custom.disconnect();
        assert.deepEqual(await roundTrip(main, 'still'), ['still']);
        assert.equal(main.connected, true);
      } finally {
        main.disconnect();
        custom.disconnect();
        manager.engine?.close();
      }
    });

    // many clients in this one process can keep it too busy to answer pings
    // within the conformance pingTimeout (200 ms): use a relaxed heartbeat
    const N = mode === 'websocket' ? 30 : 15;
    test(`${N} concurrent clients each get only their own echoes`, async () => {
      relaxed ??= await startDaemon({ set: { 'engineio.ping_interval': '5s', 'engineio.ping_timeout': '5s' } });
      const clients = await Promise.all(Array.from({ length: N }, () => connect(mode, '/', {}, relaxed)));
      try {
        await Promise.all(clients.map(async ({ socket }, c) => {
          const got = [];
          const done = new Promise((resolve) => {
            socket.on('message-back', (who, i) => {
              got.push([who, i]);
              if (got.length === 5) resolve();
            });
          });
          for (let i = 0; i < 5; i++) socket.emit('message', c, i);
          await withTimeout(done, 8000 * SLOW, `echoes for client ${c}`);
          assert.deepEqual(got, [0, 1, 2, 3, 4].map((i) => [c, i]));
        }));
        assert.equal(new Set(clients.map(({ socket }) => socket.id)).size, N);
      } finally {
        for (const { socket } of clients) socket.disconnect();
      }
    });

    test('disconnect and reconnect of the same socket', async () => {
      const { socket } = await connect(mode);
      try {
        const firstId = socket.id;
        socket.disconnect();
        const authP = once(socket, 'auth', 'auth after reconnect');
        socket.connect();
        await once(socket, 'connect', 'reconnect');
        await authP;
        assert.notEqual(socket.id, firstId);
        assert.deepEqual(await roundTrip(socket, 'again'), ['again']);
      } finally {
        socket.disconnect();
      }
    });
  });
}
