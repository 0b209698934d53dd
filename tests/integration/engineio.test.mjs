// Engine.IO v4 wire behaviour over raw HTTP long-polling and raw WebSocket,
// against the /engine.io/ echo endpoint of the conformance profile.

import { before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDaemon, makeTest, sleep, SEP, SLOW, AEOLUS_ONLY,
  PING_INTERVAL, PING_TIMEOUT, MAX_PAYLOAD,
  eioUrl, pollingHandshake, pollGet, pollPost, pollPackets, WsConn, eioWsOpen, finish,
} from './helpers.mjs';

let d;            // default conformance daemon
let small;        // engineio.max_payload=1000
let corsd;        // origin list with credentials
const test = makeTest(() => [d, small, corsd]);

before(async () => {
  d = await startDaemon();
});

after(() => finish([d, small, corsd], d));

const HANDSHAKE_KEYS = ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades'];

async function expectError(res, status, code, message) {
  assert.equal(res.status, status);
  const body = await res.text();
  let json;
  try { json = JSON.parse(body); } catch { assert.fail(`expected a JSON error body, got ${JSON.stringify(body)}`); }
  assert.equal(json.code, code, `error code in ${body}`);
  if (message) assert.equal(json.message, message);
}

describe('handshake', () => {
  test('polling handshake returns the open packet', async () => {
    const res = await fetch(eioUrl(d));
    assert.equal(res.status, 200);
    const body = await res.text();
    assert.equal(body[0], '0', `open packet expected, got ${body}`);
    const hs = JSON.parse(body.slice(1));
    assert.deepEqual(Object.keys(hs).sort(), HANDSHAKE_KEYS);
    assert.equal(typeof hs.sid, 'string');
    assert.ok(hs.sid.length > 0);
    assert.deepEqual(hs.upgrades, ['websocket']);
    assert.equal(hs.pingInterval, PING_INTERVAL);
    assert.equal(hs.pingTimeout, PING_TIMEOUT);
    assert.equal(hs.maxPayload, MAX_PAYLOAD);
  });

  test('each polling handshake gets a distinct sid', async () => {
    const sids = new Set();
    for (let i = 0; i < 5; i++) sids.add((await pollingHandshake(d)).sid);
    assert.equal(sids.size, 5);
  });

  test('websocket handshake returns the open packet', async () => {
    const { conn, handshake: hs } = await eioWsOpen(d);
    try {
      assert.deepEqual(Object.keys(hs).sort(), HANDSHAKE_KEYS);
      assert.equal(typeof hs.sid, 'string');
      assert.deepEqual(hs.upgrades, []);
      assert.equal(hs.pingInterval, PING_INTERVAL);
      assert.equal(hs.pingTimeout, PING_TIMEOUT);
      assert.equal(hs.maxPayload, MAX_PAYLOAD);
    } finally {
      conn.close();
    }
  });

  test('missing or invalid EIO is rejected with code 5', async () => {
    await expectError(await fetch(`${d.url}/engine.io/?transport=polling`), 400, 5, 'Unsupported protocol version');
    await expectError(await fetch(`${d.url}/engine.io/?EIO=abc&transport=polling`), 400, 5, 'Unsupported protocol version');
    await expectError(await fetch(`${d.url}/engine.io/?EIO=3&transport=polling`), 400, 5, 'Unsupported protocol version');
  });

  test('missing or unknown transport is rejected with code 0', async () => {
    await expectError(await fetch(`${d.url}/engine.io/?EIO=4`), 400, 0, 'Transport unknown');
    await expectError(await fetch(`${d.url}/engine.io/?EIO=4&transport=abc`), 400, 0, 'Transport unknown');
    await expectError(await fetch(`${d.url}/engine.io/?EIO=4&transport=constructor`), 400, 0, 'Transport unknown');
  });

  test('handshake with a method other than GET is rejected with code 2', async () => {
    await expectError(await fetch(eioUrl(d), { method: 'POST', body: '' }), 400, 2, 'Bad handshake method');
    await expectError(await fetch(eioUrl(d), { method: 'PUT', body: '' }), 400, 2, 'Bad handshake method');
  });

  test('unknown sid is rejected with code 1', async () => {
    await expectError(await fetch(eioUrl(d, 'sid=doesnotexist')), 400, 1, 'Session ID unknown');
    await expectError(await fetch(eioUrl(d, 'sid=doesnotexist'), { method: 'POST', body: '4x' }),
      400, 1, 'Session ID unknown');
  });

  for (const [what, q] of [['missing EIO', 'transport=websocket'], ['invalid EIO', 'EIO=abc&transport=websocket'],
    ['missing transport', 'EIO=4'], ['unknown transport', 'EIO=4&transport=abc'],
    ['unknown sid', 'EIO=4&transport=websocket&sid=doesnotexist']]) {
    test(`websocket upgrade with ${what} is refused`, async () => {
      const conn = new WsConn(`${d.wsUrl}/engine.io/?${q}`, { autoPong: false });
      await conn.waitClose();
      // either the upgrade is refused with HTTP 400, or the connection is closed
      // without ever opening an Engine.IO session
      if (conn.unexpected) {
        assert.equal(conn.unexpected.status, 400);
      } else {
        const opens = conn.queue.filter((m) => !m.binary && m.data.startsWith('0'));
        assert.deepEqual(opens, [], 'no Engine.IO session may be opened');
      }
    });
  }
});

describe('messages over polling', () => {
  test('one text packet is echoed', async () => {
    const { sid } = await pollingHandshake(d);
    const post = await pollPost(d, sid, '4hello');
    assert.equal(post.status, 200);
    assert.equal(post.body, 'ok');
    assert.deepEqual(await pollPackets(d, sid, 1), ['4hello']);
  });

  test('several packets joined by the record separator are echoed in order', async () => {
    const { sid } = await pollingHandshake(d);
    const post = await pollPost(d, sid, ['4test1', '4test2', '4test3'].join(SEP));
    assert.equal(post.status, 200);
    assert.equal(post.body, 'ok');
    assert.deepEqual(await pollPackets(d, sid, 3), ['4test1', '4test2', '4test3']);
  });

  test('base64 binary packets are echoed as base64', async () => {
    const { sid } = await pollingHandshake(d);
    const post = await pollPost(d, sid, `4hello${SEP}bAQIDBA==`);
    assert.equal(post.status, 200);
    assert.deepEqual(await pollPackets(d, sid, 2), ['4hello', 'bAQIDBA==']);
  });

  test('unicode text survives the round trip', async () => {
    const { sid } = await pollingHandshake(d);
    const text = '4héllo ✓ 😀 \u0000 end';
    await pollPost(d, sid, text);
    assert.deepEqual(await pollPackets(d, sid, 1), [text]);
  });

  test('a POST just under maxPayload is accepted and echoed', async () => {
    const { sid } = await pollingHandshake(d);
    const body = '4' + 'x'.repeat(MAX_PAYLOAD - 1000);
    const post = await pollPost(d, sid, body);
    assert.equal(post.status, 200);
    assert.deepEqual(await pollPackets(d, sid, 1), [body]);
  });

  test('a pending GET is answered when a message arrives', async () => {
    const { sid } = await pollingHandshake(d);
    const pending = pollPackets(d, sid, 1);
    await sleep(50);
    assert.equal((await pollPost(d, sid, '4late')).status, 200);
    assert.deepEqual(await pending, ['4late']);
  });

  test('an invalid packet closes the session', async () => {
    const { sid } = await pollingHandshake(d);
    try {
      const post = await pollPost(d, sid, 'abc');
      assert.notEqual(post.status, 500);
    } catch {
      // the server may drop the connection
    }
    const res = await pollGet(d, sid);
    assert.equal(res.status, 400);
    assert.equal(JSON.parse(res.body).code, 1);
  });

  test('duplicate concurrent GETs close the session', async () => {
    const { sid } = await pollingHandshake(d);
    const first = pollGet(d, sid);
    await sleep(20);
    const second = await pollGet(d, sid);
    const r1 = await first;
    assert.equal(r1.status, 200);
    assert.equal(r1.body, '1');
    assert.equal(second.status, 400);
    const again = await pollGet(d, sid);
    assert.equal(again.status, 400);
  });
});

describe('messages over websocket', () => {
  test('text packet is echoed', async () => {
    const { conn } = await eioWsOpen(d);
    try {
      conn.send('4hello');
      assert.equal(await conn.nextText(), '4hello');
    } finally {
      conn.close();
    }
  });

  test('binary frame is echoed as a binary frame', async () => {
    const { conn } = await eioWsOpen(d);
    try {
      conn.send(Buffer.from([1, 2, 3, 4]));
      assert.deepEqual(await conn.nextBinary(), Buffer.from([1, 2, 3, 4]));
      const big = Buffer.alloc(200000, 0xab);
      conn.send(big);
      assert.deepEqual(await conn.nextBinary(), big);
    } finally {
      conn.close();
    }
  });

  test('messages just under maxPayload are echoed', async () => {
    const { conn } = await eioWsOpen(d);
    try {
      const bin = Buffer.alloc(MAX_PAYLOAD - 1000, 0x77);
      conn.send(bin);
      assert.deepEqual(await conn.nextBinary(5000 * SLOW), bin);
      const text = '4' + 'é'.repeat((MAX_PAYLOAD - 1000) / 2);
      conn.send(text);
      assert.equal(await conn.nextText(5000 * SLOW), text);
    } finally {
      conn.close();
    }
  });

  test('many messages are echoed in order', async () => {
    const { conn } = await eioWsOpen(d);
    try {
      for (let i = 0; i < 100; i++) conn.send(`4msg-${i}`);
      for (let i = 0; i < 100; i++) assert.equal(await conn.nextText(), `4msg-${i}`);
    } finally {
      conn.close();
    }
  });

  test('an invalid packet closes the session', async () => {
    const { conn } = await eioWsOpen(d);
    conn.send('abc');
    await conn.waitClose();
  });
});

describe('heartbeat', () => {
  test('polling: server pings and accepts pongs', async () => {
    const { sid } = await pollingHandshake(d);
    for (let i = 0; i < 3; i++) {
      const res = await pollGet(d, sid);
      assert.equal(res.status, 200);
      assert.equal(res.body, '2');
      const post = await pollPost(d, sid, '3');
      assert.equal(post.status, 200);
    }
  });

  test('websocket: server pings and accepts pongs', async () => {
    const { conn } = await eioWsOpen(d, { autoPong: false });
    try {
      for (let i = 0; i < 3; i++) {
        const t0 = Date.now();
        assert.equal(await conn.nextText(), '2');
        const dt = Date.now() - t0;
        assert.ok(dt < PING_INTERVAL * 3 * SLOW, `ping took ${dt} ms`);
        conn.send('3');
      }
      conn.send('4still-open');
      assert.equal(await conn.nextText(), '4still-open');
    } finally {
      conn.close();
    }
  });

  test('polling: session closes on ping timeout', async () => {
    const { sid } = await pollingHandshake(d);
    await sleep(PING_INTERVAL + PING_TIMEOUT + 150);
    const res = await pollPost(d, sid, '3');
    assert.equal(res.status, 400);
    const get = await pollGet(d, sid);
    assert.equal(get.status, 400);
  });

  test('websocket: session closes on ping timeout', async () => {
    const t0 = Date.now();
    const { conn } = await eioWsOpen(d, { autoPong: false });
    assert.equal(await conn.nextText(), '2');
    await conn.waitClose((PING_INTERVAL + PING_TIMEOUT) * 4 * SLOW);
    const dt = Date.now() - t0;
    assert.ok(dt >= PING_INTERVAL + PING_TIMEOUT - 50, `closed too early (${dt} ms)`);
  });
});

describe('close', () => {
  test('polling: client close packet ends a pending GET with noop', async () => {
    const { sid } = await pollingHandshake(d);
    const pending = pollGet(d, sid);
    await sleep(20);
    const post = await pollPost(d, sid, '1');
    assert.equal(post.status, 200);
    const res = await pending;
    assert.equal(res.status, 200);
    assert.equal(res.body, '6');
    const again = await pollGet(d, sid);
    assert.equal(again.status, 400);
  });

  // The reference engine.io server ignores a close packet on a websocket (the
  // official suite only passes there because the session then times out).
  test('websocket: client close packet closes the connection', { skip: AEOLUS_ONLY }, async () => {
    const { conn } = await eioWsOpen(d);
    const t0 = Date.now();
    conn.send('1');
    await conn.waitClose();
    const dt = Date.now() - t0;
    assert.ok(dt < PING_INTERVAL + PING_TIMEOUT, `closed only after ${dt} ms (ping timeout, not the close packet)`);
  });
});

describe('upgrade', () => {
  async function upgrade() {
    const { sid } = await pollingHandshake(d);
    const pending = pollGet(d, sid);
    await sleep(20);
    const conn = new WsConn(`${d.wsUrl}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
    await conn.opened;
    conn.send('2probe');
    assert.equal(await conn.nextText(), '3probe');
    const res = await pending;
    assert.equal(res.status, 200);
    assert.equal(res.body, '6', 'pending poll must be released with a noop');
    conn.send('5');
    return { sid, conn };
  }

  test('polling session upgrades to websocket', async () => {
    const { conn } = await upgrade();
    try {
      conn.send('4hello');
      assert.equal(await conn.nextText(), '4hello');
      conn.send(Buffer.from([9, 8, 7]));
      assert.deepEqual(await conn.nextBinary(), Buffer.from([9, 8, 7]));
    } finally {
      conn.close();
    }
  });

  test('messages queued before the upgrade are not lost', async () => {
    const { sid } = await pollingHandshake(d);
    const conn = new WsConn(`${d.wsUrl}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
    try {
      await conn.opened;
      conn.send('2probe');
      assert.equal(await conn.nextText(), '3probe');
      // still polling: a POST is echoed into the polling buffer
      assert.equal((await pollPost(d, sid, '4before')).status, 200);
      const polled = await pollGet(d, sid);
      assert.equal(polled.status, 200);
      conn.send('5');
      const got = polled.body.split(SEP).filter((p) => p !== '6' && p !== '2');
      if (!got.includes('4before')) {
        assert.equal(await conn.nextText(), '4before');
      }
      conn.send('4after');
      assert.equal(await conn.nextText(), '4after');
    } finally {
      conn.close();
    }
  });

  test('polling requests with the same sid are refused after the upgrade', async () => {
    const { sid, conn } = await upgrade();
    try {
      conn.send('4sync');
      assert.equal(await conn.nextText(), '4sync');
      const res = await pollGet(d, sid);
      assert.equal(res.status, 400);
      assert.equal(JSON.parse(res.body).code, 3);
      conn.send('4hello');
      assert.equal(await conn.nextText(), '4hello');
    } finally {
      conn.close();
    }
  });

  test('a second websocket with the same sid is refused after the upgrade', async () => {
    const { sid, conn } = await upgrade();
    try {
      conn.send('4sync');
      assert.equal(await conn.nextText(), '4sync');
      const second = new WsConn(`${d.wsUrl}/engine.io/?EIO=4&transport=websocket&sid=${sid}`);
      await second.waitClose();
      conn.send('4hello');
      assert.equal(await conn.nextText(), '4hello');
    } finally {
      conn.close();
    }
  });
});

describe('CORS', () => {
  test('responses carry Access-Control-Allow-Origin *', async () => {
    const res = await fetch(eioUrl(d), { headers: { Origin: 'https://example.com' } });
    await res.text();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
  });

  test('OPTIONS preflight is answered with 204', async () => {
    const { sid } = await pollingHandshake(d);
    const res = await fetch(eioUrl(d, `sid=${sid}`), {
      method: 'OPTIONS',
      headers: {
        Origin: 'https://example.com',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'content-type',
      },
    });
    await res.text();
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    const methods = (res.headers.get('access-control-allow-methods') || '').toUpperCase();
    assert.match(methods, /\bGET\b/);
    assert.match(methods, /\bPOST\b/);
    const headers = (res.headers.get('access-control-allow-headers') || '').toLowerCase();
    assert.match(headers, /content-type/);
  });

  test('configured origin list with credentials', async () => {
    corsd ??= await startDaemon({
      set: { 'cors.origins': 'https://a.example,https://b.example', 'cors.credentials': 'yes' },
    });
    for (const origin of ['https://a.example', 'https://b.example']) {
      const res = await fetch(eioUrl(corsd), { headers: { Origin: origin } });
      await res.text();
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('access-control-allow-origin'), origin);
      assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
    }
    const pre = await fetch(eioUrl(corsd), {
      method: 'OPTIONS',
      headers: { Origin: 'https://b.example', 'Access-Control-Request-Method': 'POST' },
    });
    await pre.text();
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), 'https://b.example');
    assert.equal(pre.headers.get('access-control-allow-credentials'), 'true');

    const other = await fetch(eioUrl(corsd), { headers: { Origin: 'https://evil.example' } });
    await other.text();
    assert.equal(other.headers.get('access-control-allow-origin'), null);
  });
});

describe('payload limits', () => {
  test('POST body over maxPayload is rejected with 413', async () => {
    small ??= await startDaemon({ set: { 'engineio.max_payload': 1000 } });
    const { sid, maxPayload } = await pollingHandshake(small);
    assert.equal(maxPayload, 1000);
    const ok = await pollPost(small, sid, '4' + 'a'.repeat(500));
    assert.equal(ok.status, 200);
    assert.deepEqual(await pollPackets(small, sid, 1), ['4' + 'a'.repeat(500)]);
    let status;
    try {
      status = (await pollPost(small, sid, '4' + 'a'.repeat(2000))).status;
    } catch (e) {
      assert.fail(`expected an HTTP 413 response, the request failed: ${e.message}`);
    }
    assert.equal(status, 413);
  });

  test('the daemon still serves after an oversized POST', async () => {
    small ??= await startDaemon({ set: { 'engineio.max_payload': 1000 } });
    const { sid } = await pollingHandshake(small);
    assert.equal((await pollPost(small, sid, '4ok')).status, 200);
    assert.deepEqual(await pollPackets(small, sid, 1), ['4ok']);
  });
});

