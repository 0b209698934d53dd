// Session limits: server.max_connections (WS_MAX_CONNECTIONS) and
// server.max_connections_per_ip, seen by an HTTP client and by socket.io-client.
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { AEOLUS_ONLY, eioUrl, finish, makeTest, startDaemon } from './helpers.mjs';

let total; let perIp;
const test = makeTest(() => [total, perIp]);

before(async () => {
  if (AEOLUS_ONLY) return;
  total = await startDaemon({ set: { 'server.max_connections': 3 } });
  perIp = await startDaemon({ set: { 'server.max_connections_per_ip': 2 } });
});
after(async () => finish([total, perIp]));

async function handshake(d) {
  const res = await fetch(eioUrl(d, '', '/socket.io/'));
  return { status: res.status, body: await res.text() };
}

test('the instance limit refuses the session after the last with 503 and says why', { skip: AEOLUS_ONLY }, async () => {
  const open = [];
  for (let i = 0; i < 3; i++) {
    const r = await handshake(total);
    assert.equal(r.status, 200);
    open.push(r);
  }
  const refused = await handshake(total);
  assert.equal(refused.status, 503);
  assert.equal(JSON.parse(refused.body).message, 'Too many connections');
  // the daemon still answers its other routes
  assert.equal((await fetch(`${total.url}/health`)).status, 200);
});

test('the per-address limit refuses with 429, and a socket.io-client sees a connect_error', { skip: AEOLUS_ONLY }, async () => {
  const a = io(perIp.url, { transports: ['websocket'], reconnection: false });
  const b = io(perIp.url, { transports: ['websocket'], reconnection: false });
  await Promise.all([a, b].map((s) => new Promise((resolve, reject) => {
    s.once('connect', resolve);
    s.once('connect_error', reject);
  })));
  const r = await handshake(perIp);
  assert.equal(r.status, 429);
  const c = io(perIp.url, { transports: ['polling'], reconnection: false });
  const err = await new Promise((resolve) => c.once('connect_error', resolve));
  assert.ok(err, 'connect_error expected');
  c.close();
  // a slot frees when a client leaves
  a.close();
  let status = 0;
  for (let i = 0; i < 40 && status !== 200; i++) {
    await new Promise((res) => setTimeout(res, 25));
    status = (await handshake(perIp)).status;
  }
  assert.equal(status, 200);
  b.close();
});
