// Socket.IO v5 wire behaviour over raw WebSocket (and one polling session),
// in the spirit of the official socket.io-protocol test suite.

import { before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDaemon, makeTest, SLOW, SEP, CONNECT_TIMEOUT, PING_INTERVAL,
  eioWsOpen, sioWsOpen, pollingHandshake, pollPost, pollPackets,
  finish,
} from './helpers.mjs';

let d;
const test = makeTest(() => [d]);

before(async () => {
  d = await startDaemon();
});

after(() => finish([d], d));

const EP = '/socket.io/';

async function eio(o = {}) {
  const { conn } = await eioWsOpen(d, { ep: EP, ...o });
  return conn;
}

function parseConnect(packet, prefix) {
  assert.ok(packet.startsWith(prefix), `expected ${prefix}..., got ${packet}`);
  const body = JSON.parse(packet.slice(prefix.length));
  assert.deepEqual(Object.keys(body), ['sid']);
  assert.equal(typeof body.sid, 'string');
  assert.ok(body.sid.length > 0);
  return body.sid;
}

describe('connect', () => {
  test('connect to the main namespace', async () => {
    const conn = await eio();
    try {
      conn.send('40');
      parseConnect(await conn.nextText(), '40');
      assert.equal(await conn.nextText(), '42["auth",{}]');
    } finally {
      conn.close();
    }
  });

  test('connect to the main namespace with a payload', async () => {
    const conn = await eio();
    try {
      conn.send('40{"token":"123"}');
      parseConnect(await conn.nextText(), '40');
      assert.equal(await conn.nextText(), '42["auth",{"token":"123"}]');
    } finally {
      conn.close();
    }
  });

  test('connect to a custom namespace', async () => {
    const conn = await eio();
    try {
      conn.send('40/custom,');
      parseConnect(await conn.nextText(), '40/custom,');
      assert.equal(await conn.nextText(), '42/custom,["auth",{}]');
    } finally {
      conn.close();
    }
  });

  test('connect to a custom namespace with a payload', async () => {
    const conn = await eio();
    try {
      conn.send('40/custom,{"token":"abc"}');
      parseConnect(await conn.nextText(), '40/custom,');
      assert.equal(await conn.nextText(), '42/custom,["auth",{"token":"abc"}]');
    } finally {
      conn.close();
    }
  });

  test('Socket.IO sid differs from the Engine.IO sid and between namespaces', async () => {
    const { conn, handshake } = await eioWsOpen(d, { ep: EP });
    try {
      conn.send('40');
      const a = parseConnect(await conn.nextText(), '40');
      await conn.nextText();
      conn.send('40/custom,');
      const b = parseConnect(await conn.nextText(), '40/custom,');
      await conn.nextText();
      assert.notEqual(a, handshake.sid);
      assert.notEqual(a, b);
    } finally {
      conn.close();
    }
  });

  test('connection to an unknown namespace is refused', async () => {
    const conn = await eio();
    try {
      conn.send('40/random');
      assert.equal(await conn.nextText(), '44/random,{"message":"Invalid namespace"}');
      conn.send('40/random,');
      assert.equal(await conn.nextText(), '44/random,{"message":"Invalid namespace"}');
      // the Engine.IO session stays usable
      conn.send('40');
      parseConnect(await conn.nextText(), '40');
      assert.equal(await conn.nextText(), '42["auth",{}]');
    } finally {
      conn.close();
    }
  });

  test('invalid handshake packet closes the connection', async () => {
    const conn = await eio();
    conn.send('4abc');
    await conn.waitClose();
  });

  test('no CONNECT within connectTimeout closes the connection', async () => {
    const t0 = Date.now();
    const conn = await eio(); // answers pings, so only connectTimeout can close it
    const { code } = await conn.waitClose(CONNECT_TIMEOUT * 3 * SLOW);
    const dt = Date.now() - t0;
    assert.ok(dt >= CONNECT_TIMEOUT - 100, `closed after ${dt} ms (code ${code}), before connectTimeout`);
  });

  test('CONNECT in time keeps the connection past connectTimeout', async () => {
    const conn = await eio();
    try {
      conn.send('40');
      parseConnect(await conn.nextText(), '40');
      await conn.nextText();
      await new Promise((r) => setTimeout(r, CONNECT_TIMEOUT + 300));
      conn.send('42["message","still here"]');
      assert.equal(await conn.nextText(), '42["message-back","still here"]');
    } finally {
      conn.close();
    }
  });
});

describe('disconnect', () => {
  test('disconnecting from the main namespace keeps the Engine.IO session', async () => {
    const conn = await sioWsOpen(d, { autoPong: false });
    try {
      conn.send('41');
      // nothing but the next heartbeat must follow
      const t0 = Date.now();
      assert.equal(await conn.nextText(PING_INTERVAL * 4 * SLOW), '2');
      assert.ok(Date.now() - t0 < PING_INTERVAL * 3 * SLOW);
      conn.send('3');
      // the namespace can be joined again
      conn.send('40');
      parseConnect(await conn.nextText(), '40');
      assert.equal(await conn.nextText(), '42["auth",{}]');
    } finally {
      conn.close();
    }
  });

  test('disconnect from a custom namespace, the main namespace still works', async () => {
    const conn = await sioWsOpen(d);
    try {
      conn.send('40/custom,');
      parseConnect(await conn.nextText(), '40/custom,');
      assert.equal(await conn.nextText(), '42/custom,["auth",{}]');
      conn.send('41/custom,');
      conn.send('42["message","message to main namespace"]');
      assert.equal(await conn.nextText(), '42["message-back","message to main namespace"]');
    } finally {
      conn.close();
    }
  });
});

describe('messages', () => {
  test('plain event is answered with message-back', async () => {
    const conn = await sioWsOpen(d);
    try {
      conn.send('42["message",1,"2",{"3":[true]}]');
      assert.equal(await conn.nextText(), '42["message-back",1,"2",{"3":[true]}]');
    } finally {
      conn.close();
    }
  });

  test('event arguments of every JSON type are echoed unchanged', async () => {
    const conn = await sioWsOpen(d);
    try {
      const args = [0, -1.5, 1e21, 'héllo ✓ 😀', '\u0000\n"\\', null, true, false, [], {}, [1, [2, [3]]],
        { a: { b: { c: null } } }];
      conn.send('42' + JSON.stringify(['message', ...args]));
      const reply = await conn.nextText();
      assert.ok(reply.startsWith('42'), reply);
      assert.deepEqual(JSON.parse(reply.slice(2)), ['message-back', ...args]);
    } finally {
      conn.close();
    }
  });

  test('event with an ack is acknowledged with its arguments', async () => {
    const conn = await sioWsOpen(d);
    try {
      conn.send('42456["message-with-ack",1,"2",{"3":[false]}]');
      assert.equal(await conn.nextText(), '43456[1,"2",{"3":[false]}]');
    } finally {
      conn.close();
    }
  });

  test('event on the custom namespace reaches it', async () => {
    const conn = await sioWsOpen(d);
    try {
      conn.send('40/custom,');
      parseConnect(await conn.nextText(), '40/custom,');
      assert.equal(await conn.nextText(), '42/custom,["auth",{}]');
      // /custom has no handlers: the event is ignored, the connection stays up
      conn.send('42/custom,["message","x"]');
      conn.send('42["message","y"]');
      assert.equal(await conn.nextText(), '42["message-back","y"]');
    } finally {
      conn.close();
    }
  });

  test('binary event with two attachments is echoed with its attachments', async () => {
    const conn = await sioWsOpen(d);
    try {
      conn.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      conn.send(Buffer.from([1, 2, 3]));
      conn.send(Buffer.from([4, 5, 6]));
      assert.equal(await conn.nextText(),
        '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      assert.deepEqual(await conn.nextBinary(), Buffer.from([1, 2, 3]));
      assert.deepEqual(await conn.nextBinary(), Buffer.from([4, 5, 6]));
    } finally {
      conn.close();
    }
  });

  test('binary event with an ack is acknowledged with its attachments', async () => {
    const conn = await sioWsOpen(d);
    try {
      conn.send('452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      conn.send(Buffer.from([1, 2, 3]));
      conn.send(Buffer.from([4, 5, 6]));
      assert.equal(await conn.nextText(),
        '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      assert.deepEqual(await conn.nextBinary(), Buffer.from([1, 2, 3]));
      assert.deepEqual(await conn.nextBinary(), Buffer.from([4, 5, 6]));
    } finally {
      conn.close();
    }
  });

  test('events are answered in order', async () => {
    const conn = await sioWsOpen(d);
    try {
      for (let i = 0; i < 50; i++) conn.send(`42["message",${i}]`);
      for (let i = 0; i < 50; i++) assert.equal(await conn.nextText(), `42["message-back",${i}]`);
    } finally {
      conn.close();
    }
  });

  for (const [what, packet] of [
    ['unknown packet type', '4abc'],
    ['invalid payload format', '42{}'],
    ['invalid ack id', '42abc["message-with-ack",1,"2",{"3":[false]}]'],
    ['payload that is not valid JSON', '42["message",'],
    ['event name that is an object', '42[{"a":1},2]'],
    ['empty event array', '42[]'],
  ]) {
    test(`invalid packet closes the connection (${what})`, async () => {
      const conn = await sioWsOpen(d);
      conn.send(packet);
      await conn.waitClose();
    });
  }
});

describe('polling transport', () => {
  test('connect, auth and an event over HTTP long-polling', async () => {
    const { sid } = await pollingHandshake(d, EP);
    assert.equal((await pollPost(d, sid, '40{"token":"poll"}', EP)).status, 200);
    const [connect, auth] = await pollPackets(d, sid, 2, EP);
    parseConnect(connect, '40');
    assert.equal(auth, '42["auth",{"token":"poll"}]');
    assert.equal((await pollPost(d, sid, `42["message","a"]${SEP}42["message","b"]`, EP)).status, 200);
    assert.deepEqual(await pollPackets(d, sid, 2, EP), ['42["message-back","a"]', '42["message-back","b"]']);
  });

  test('binary event over polling uses base64 attachments', async () => {
    const { sid } = await pollingHandshake(d, EP);
    await pollPost(d, sid, '40', EP);
    await pollPackets(d, sid, 2, EP);
    const body = ['451-["message",{"_placeholder":true,"num":0}]', 'bAQID'].join(SEP);
    assert.equal((await pollPost(d, sid, body, EP)).status, 200);
    assert.deepEqual(await pollPackets(d, sid, 2, EP),
      ['451-["message-back",{"_placeholder":true,"num":0}]', 'bAQID']);
  });
});
