// RFC 6455 wire behaviour and hostile clients, using hand-made frames over raw TCP.
// After each hostile test a fresh, well-behaved client must still be served.

import { before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startDaemon, finish, makeTest, sleep, SLOW, AEOLUS_ONLY,
  RawWs, wsFrame, OP, closePayload, rawHttp, assertServing, assertIdle, pollingHandshake, eioWsOpen,
  sioWsOpen, eioUrl,
} from './helpers.mjs';

let d;        // default conformance daemon
let small;    // engineio.max_payload=1000
let slow;     // websocket.max_queue=65536
const test = makeTest(() => [d, small, slow]);

before(async () => {
  d = await startDaemon();
});

after(() => finish([d, small, slow], d));

/** Raw websocket on /engine.io/ with the Engine.IO open packet consumed. */
async function openEio(port) {
  const raw = await RawWs.connect(port);
  const open = await raw.nextFrame();
  assert.equal(open.opcode, OP.TEXT);
  assert.equal(open.payload.toString()[0], '0', 'Engine.IO open packet expected');
  return raw;
}

async function expectCloseCode(raw, codes, timeout) {
  const { code } = await raw.expectClose(timeout);
  assert.ok(codes.includes(code), `expected close code ${codes.join(' or ')}, got ${code}`);
}

describe('RFC 6455 framing', () => {
  test('masked text frame is echoed', async () => {
    const raw = await openEio(d.port);
    try {
      raw.sendText('4hello');
      const f = await raw.nextFrame();
      assert.equal(f.opcode, OP.TEXT);
      assert.equal(f.fin, true);
      assert.equal(f.masked, false, 'server frames must not be masked');
      assert.equal(f.payload.toString(), '4hello');
    } finally {
      await raw.close();
    }
  });

  test('16-bit and 64-bit payload lengths are handled', async () => {
    const raw = await openEio(d.port);
    try {
      for (const n of [125, 126, 65535, 65536, 300000]) {
        const payload = Buffer.alloc(n, 0x61);
        payload[0] = 0x34; // "4"
        raw.send(wsFrame({ opcode: OP.TEXT, payload }));
        const f = await raw.nextFrame();
        assert.equal(f.opcode, OP.TEXT);
        assert.equal(f.payload.length, n);
        assert.ok(f.payload.equals(payload), `payload of ${n} bytes echoed intact`);
      }
    } finally {
      await raw.close();
    }
  });

  test('fragmented text message (3 fragments) is echoed whole', async () => {
    const raw = await openEio(d.port);
    try {
      raw.send(wsFrame({ opcode: OP.TEXT, fin: false, payload: '4frag' }));
      raw.send(wsFrame({ opcode: OP.CONT, fin: false, payload: 'mented ' }));
      raw.send(wsFrame({ opcode: OP.CONT, fin: true, payload: 'message ✓' }));
      const f = await raw.nextFrame();
      assert.equal(f.opcode, OP.TEXT);
      assert.equal(f.payload.toString(), '4fragmented message ✓');
    } finally {
      await raw.close();
    }
  });

  test('split multi-byte characters and fragmented binary messages are reassembled', async () => {
    const raw = await openEio(d.port);
    try {
      const text = Buffer.from('4😀end');
      raw.send(wsFrame({ opcode: OP.TEXT, fin: false, payload: text.subarray(0, 3) }));
      raw.send(wsFrame({ opcode: OP.CONT, fin: true, payload: text.subarray(3) }));
      const f = await raw.nextFrame();
      assert.equal(f.payload.toString(), '4😀end');
      const bin = Buffer.from([0, 1, 2, 3, 4, 5, 255]);
      raw.send(wsFrame({ opcode: OP.BINARY, fin: false, payload: bin.subarray(0, 2) }));
      raw.send(wsFrame({ opcode: OP.CONT, fin: false, payload: bin.subarray(2, 5) }));
      raw.send(wsFrame({ opcode: OP.CONT, fin: true, payload: bin.subarray(5) }));
      const g = await raw.nextFrame();
      assert.equal(g.opcode, OP.BINARY);
      assert.deepEqual(g.payload, bin);
    } finally {
      await raw.close();
    }
  });

  test('ping control frame is answered with a pong carrying the same payload', async () => {
    const raw = await openEio(d.port);
    try {
      raw.send(wsFrame({ opcode: OP.PING, payload: 'are you there?' }));
      const f = await raw.nextFrame();
      assert.equal(f.opcode, OP.PONG);
      assert.equal(f.payload.toString(), 'are you there?');
      raw.send(wsFrame({ opcode: OP.PING }));
      const g = await raw.nextFrame();
      assert.equal(g.opcode, OP.PONG);
      assert.equal(g.payload.length, 0);
    } finally {
      await raw.close();
    }
  });

  test('ping between fragments of a message is answered and the message is intact', async () => {
    const raw = await openEio(d.port);
    try {
      raw.send(wsFrame({ opcode: OP.TEXT, fin: false, payload: '4abc' }));
      raw.send(wsFrame({ opcode: OP.PING, payload: 'mid' }));
      raw.send(wsFrame({ opcode: OP.CONT, fin: true, payload: 'def' }));
      const f = await raw.nextFrame();
      assert.equal(f.opcode, OP.PONG);
      assert.equal(f.payload.toString(), 'mid');
      const g = await raw.nextFrame();
      assert.equal(g.opcode, OP.TEXT);
      assert.equal(g.payload.toString(), '4abcdef');
    } finally {
      await raw.close();
    }
  });

  test('unsolicited pong is ignored', async () => {
    const raw = await openEio(d.port);
    try {
      raw.send(wsFrame({ opcode: OP.PONG, payload: 'x' }));
      raw.sendText('4after-pong');
      const f = await raw.nextFrame();
      assert.equal(f.payload.toString(), '4after-pong');
    } finally {
      await raw.close();
    }
  });

  test('close handshake echoes code 1000', async () => {
    const raw = await openEio(d.port);
    raw.send(wsFrame({ opcode: OP.CLOSE, payload: closePayload(1000, 'bye') }));
    let f;
    do { f = await raw.nextFrame(); } while (f.opcode !== OP.CLOSE);
    assert.ok(f.payload.length >= 2);
    assert.equal(f.payload.readUInt16BE(0), 1000);
    await raw.closed;
  });
});

describe('protocol violations', () => {
  test('invalid UTF-8 in a text frame closes with 1007', async () => {
    for (const bad of [[0x34, 0xff, 0xfe], [0x34, 0xed, 0xa0, 0x80], [0x34, 0xc0, 0xaf], [0x34, 0xe2, 0x82]]) {
      const raw = await openEio(d.port);
      raw.send(wsFrame({ opcode: OP.TEXT, payload: Buffer.from(bad) }));
      await expectCloseCode(raw, [1007]);
    }
    await assertServing(d);
  });

  test('invalid UTF-8 split across fragments closes with 1007', async () => {
    const raw = await openEio(d.port);
    raw.send(wsFrame({ opcode: OP.TEXT, fin: false, payload: Buffer.from([0x34, 0xf0, 0x9f]) }));
    raw.send(wsFrame({ opcode: OP.CONT, fin: true, payload: Buffer.from([0x41, 0x41]) }));
    await expectCloseCode(raw, [1007]);
    await assertServing(d);
  });

  test('unmasked client frame closes with 1002', async () => {
    const raw = await openEio(d.port);
    raw.send(wsFrame({ opcode: OP.TEXT, payload: '4hello', mask: false }));
    await expectCloseCode(raw, [1002]);
    await assertServing(d);
  });

  test('reserved opcode closes with 1002', async () => {
    for (const opcode of [3, 7, 0xb, 0xf]) {
      const raw = await openEio(d.port);
      raw.send(wsFrame({ opcode, payload: 'x' }));
      await expectCloseCode(raw, [1002]);
    }
    await assertServing(d);
  });

  test('RSV bits without a negotiated extension close with 1002', async () => {
    const raw = await openEio(d.port);
    raw.send(wsFrame({ opcode: OP.TEXT, payload: '4x', rsv: 2 }));
    await expectCloseCode(raw, [1002]);
    await assertServing(d);
  });

  test('continuation frame without a message in progress closes with 1002', async () => {
    const raw = await openEio(d.port);
    raw.send(wsFrame({ opcode: OP.CONT, payload: '4x' }));
    await expectCloseCode(raw, [1002]);
    await assertServing(d);
  });

  test('new data frame while a fragmented message is in progress closes with 1002', async () => {
    const raw = await openEio(d.port);
    raw.send(wsFrame({ opcode: OP.TEXT, fin: false, payload: '4a' }));
    raw.send(wsFrame({ opcode: OP.TEXT, fin: true, payload: '4b' }));
    await expectCloseCode(raw, [1002]);
    await assertServing(d);
  });

  test('fragmented or oversized control frames close with 1002', async () => {
    let raw = await openEio(d.port);
    raw.send(wsFrame({ opcode: OP.PING, fin: false, payload: 'x' }));
    await expectCloseCode(raw, [1002]);
    raw = await openEio(d.port);
    raw.send(wsFrame({ opcode: OP.PING, payload: Buffer.alloc(126, 0x61) }));
    await expectCloseCode(raw, [1002]);
    await assertServing(d);
  });

  test('frame header announcing a 2^40-byte payload is refused promptly', async () => {
    const raw = await openEio(d.port);
    const t0 = Date.now();
    // header + mask key only; the payload never follows
    raw.send(wsFrame({ opcode: OP.BINARY, length: 2 ** 40, payload: Buffer.alloc(0) }));
    await expectCloseCode(raw, [1009, 1002], 1000 * SLOW);
    const dt = Date.now() - t0;
    assert.ok(dt < 1000 * SLOW, `closed after ${dt} ms`);
    await assertServing(d);
  });

  test('frame header with the 64-bit length MSB set closes the connection', async () => {
    const raw = await openEio(d.port);
    const hdr = Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]);
    raw.send(hdr);
    await expectCloseCode(raw, [1009, 1002], 1000 * SLOW);
    await assertServing(d);
  });

  test('message over maxPayload closes with 1009', async () => {
    small ??= await startDaemon({ set: { 'engineio.max_payload': 1000 } });
    let raw = await openEio(small.port);
    raw.sendText('4' + 'a'.repeat(900));
    assert.equal((await raw.nextFrame()).payload.length, 901);
    raw.sendText('4' + 'a'.repeat(2000));
    await expectCloseCode(raw, [1009]);
    // the limit applies to the whole message, not to each fragment
    raw = await openEio(small.port);
    for (let i = 0; i < 3; i++) {
      raw.send(wsFrame({ opcode: i ? OP.CONT : OP.TEXT, fin: false, payload: (i ? '' : '4') + 'b'.repeat(400) }));
    }
    raw.send(wsFrame({ opcode: OP.CONT, fin: true, payload: 'end' }));
    await expectCloseCode(raw, [1009]);
    await assertServing(small);
  });
});

describe('clients that vanish', () => {
  test('engine.io websocket dropped without a close frame', async () => {
    const { conn } = await eioWsOpen(d);
    conn.send('4x');
    assert.equal(await conn.nextText(), '4x');
    conn.terminate();
    await conn.closed;
    await sleep(50);
    await assertServing(d);
    await assertIdle(d);
  });

  test('socket.io websocket dropped without a close frame', async () => {
    const conn = await sioWsOpen(d);
    conn.send('42["message","x"]');
    assert.equal(await conn.nextText(), '42["message-back","x"]');
    conn.terminate();
    await conn.closed;
    await sleep(50);
    await assertServing(d);
    await assertIdle(d);
  });

  test('connection dropped in the middle of a frame', async () => {
    const raw = await openEio(d.port);
    const frame = wsFrame({ opcode: OP.TEXT, payload: '4' + 'x'.repeat(1000) });
    raw.send(frame.subarray(0, 500));
    await sleep(50);
    raw.destroy();
    await sleep(50);
    await assertServing(d);
    await assertIdle(d);
  });

  test('connection dropped right after sending the upgrade request', async () => {
    for (let i = 0; i < 3; i++) {
      const s = net.connect(d.port, '127.0.0.1');
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      s.end('GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n' +
        'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
      s.destroy();
    }
    await sleep(100);
    await assertServing(d);
    await assertIdle(d);
  });

  test('pending long-poll aborted by the client', async () => {
    const { sid } = await pollingHandshake(d);
    const ac = new AbortController();
    const pending = fetch(eioUrl(d, `sid=${sid}`), { signal: ac.signal }).catch(() => null);
    await sleep(50);
    ac.abort();
    await pending;
    await sleep(50);
    await assertServing(d);
    await assertIdle(d);
  });
});

describe('hostile HTTP clients', () => {
  test('garbage instead of an HTTP request is refused and the connection closed', async () => {
    const garbage = Buffer.concat([
      Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]),
      Buffer.from('\x00\xff\xfe garbage \r\n\r\n'),
    ]);
    const resp = await rawHttp(d.port, garbage);
    assert.ok(resp === '' || /^HTTP\/1\.[01] 4\d\d/.test(resp), `unexpected response: ${JSON.stringify(resp.slice(0, 200))}`);
    const resp2 = await rawHttp(d.port, 'HELLO WORLD\r\n\r\n');
    assert.ok(resp2 === '' || /^HTTP\/1\.[01] 4\d\d/.test(resp2), `unexpected response: ${JSON.stringify(resp2.slice(0, 200))}`);
    await assertServing(d);
  });

  test('upgrade request with a bad Sec-WebSocket-Version is refused', async () => {
    const resp = await rawHttp(d.port,
      'GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n' +
      'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n\r\n');
    assert.match(resp, /^HTTP\/1\.1 (400|426)/);
    await assertServing(d);
  });

  test('a slowloris client does not stop other clients being served', async () => {
    const request = 'GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' +
      'a'.repeat(200) + '\r\n';
    const slowSockets = [];
    for (let i = 0; i < 5; i++) {
      const s = net.connect(d.port, '127.0.0.1');
      s.on('error', () => {});
      slowSockets.push(s);
    }
    let stop = false;
    const drip = (async () => {
      for (let i = 0; !stop && i < request.length; i++) {
        for (const s of slowSockets) if (!s.destroyed) s.write(request[i]);
        await sleep(200);
      }
    })();
    try {
      await sleep(300);
      for (let i = 0; i < 5; i++) {
        const t0 = Date.now();
        const hs = await pollingHandshake(d);
        assert.equal(typeof hs.sid, 'string');
        const { conn } = await eioWsOpen(d);
        conn.send('4ping');
        assert.equal(await conn.nextText(), '4ping');
        conn.close();
        const dt = Date.now() - t0;
        assert.ok(dt < 1000 * SLOW, `request took ${dt} ms while a slowloris was connected`);
        await sleep(200);
      }
    } finally {
      stop = true;
      await drip;
      for (const s of slowSockets) s.destroy();
    }
    await assertServing(d);
  });

  test('a client that reads is not cut off, however much data flows', { skip: AEOLUS_ONLY, timeout: 20000 * SLOW }, async () => {
    slow ??= await startDaemon({ set: { 'websocket.max_queue': 65536, 'engineio.ping_interval': '30s' } });
    const { conn } = await eioWsOpen(slow);
    try {
      // 4 MiB in total, never more than 32 KiB in flight: the unsent output
      // stays below max_queue although the total is far above it
      const chunk = Buffer.alloc(8 * 1024, 0x42);
      for (let round = 0; round < 128; round++) {
        for (let i = 0; i < 4; i++) {
          chunk[0] = i;
          conn.send(Buffer.from(chunk));
        }
        for (let i = 0; i < 4; i++) {
          const got = await conn.nextBinary();
          assert.equal(got.length, chunk.length);
          assert.equal(got[0], i);
        }
      }
    } finally {
      conn.close();
    }
  });

  test('a client that never reads is disconnected once its output queue is full', { skip: AEOLUS_ONLY, timeout: 20000 * SLOW }, async (t) => {
    slow ??= await startDaemon({ set: { 'websocket.max_queue': 65536, 'engineio.ping_interval': '30s' } });
    const raw = await openEio(slow.port);
    raw.socket.pause(); // stop reading: everything the server echoes piles up
    const chunk = Buffer.alloc(512 * 1024, 0x5a);
    const n = 96; // 48 MiB of echoes: far more than socket buffers can absorb
    const frame = wsFrame({ opcode: OP.BINARY, payload: chunk, mask: true });
    let writeError = null;
    raw.socket.on('error', (e) => { writeError = e; });
    // a server that stops reading instead of cutting the client off would stall
    // these writes: bound the write phase in time
    const writeDeadline = Date.now() + 5000 * SLOW;
    for (let i = 0; i < n && !raw.socket.destroyed && !writeError && Date.now() < writeDeadline; i++) {
      if (!raw.socket.write(frame)) {
        await Promise.race([new Promise((r) => raw.socket.once('drain', r)), raw.closed,
          sleep(Math.max(1, writeDeadline - Date.now()))]);
      }
    }
    // give the server time to notice, then read what it sent before cutting us off
    await sleep(300);
    raw.socket.resume();
    const total = n * (chunk.length + 10);
    const deadline = Date.now() + 8000 * SLOW;
    while (!raw.ended && Date.now() < deadline && raw.bytesIn < total) {
      await sleep(50);
    }
    assert.ok(raw.ended,
      `server kept the non-reading client connected (received ${raw.bytesIn} of ${total} echoed bytes)`);
    assert.ok(raw.bytesIn < total, 'server must not have delivered everything to a cut-off client');
    t.diagnostic(`cut off after delivering ${raw.bytesIn} of ${total} echoed bytes`);
    await assertServing(slow);
  });
});
