// nginx in front of two aeolusd instances and aeolus-api, configured with the
// shipped files (etc/nginx/aeolus.conf and one of the API snippets, with only
// their addresses, the listen line and the include path replaced), once with
// the API over FastCGI (a unix socket) and once over SCGI (TCP):
// socket.io-clients connected through nginx (polling then WebSocket, and
// polling only, whose requests alternate between the instances: no sticky
// sessions) get what POST /chat/message sent through nginx; a realtime token
// from the API opens a connection; every error status of SPEC 7 comes through
// nginx; a slow or silent connection to aeolus-api holds up no one else;
// SIGTERM lets a request in flight finish; aeolus-api started the spawn-fcgi
// way (the listening socket as descriptor 0) and with -d.
//
// Skipped when nginx (with its fastcgi and scgi modules) or redis-server is
// missing (see nginx-lib.mjs for NGINX and AEOLUS_API).

import { describe, before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, finish, assertIdle, withTimeout, sleep, SLOW } from './helpers.mjs';
import { startApp, startRedis, connect, uniq, SECRET, PROFILE_DIR, T } from './app-lib.mjs';
import { connectPeer, closePeers } from './cluster-lib.mjs';
import { API_BIN, Proc, skipReason, writeConfig, startNginx, call as ncall } from './nginx-lib.mjs';

const API_SECRET = 'nginx-test-server-secret-0123456789';
const MAX_BODY = 2048;          // api.max_body of aeolus-api here
const HTTP_TIMEOUT_S = 2;       // server.http_timeout of aeolus-api here
const WRAPPER = (process.env.AEOLUS_TEST_WRAPPER || '').trim().split(/\s+/).filter(Boolean);

const skip = await skipReason();
const call = (ng, method, pathq, body, o = {}) => ncall(ng, method, pathq, body, { secret: API_SECRET, ...o });

// ---------------------------------------------------------------------------
// aeolus-api

let redis;
let prefix;
let daemons = [];
let tmp;

function apiArgs(extra = []) {
  return [
    '--profile', 'aeolus', '--log-level', 'warn',
    '--set', `server.profile_dir=${PROFILE_DIR}`,
    '--set', `redis.url=${redis.url}`, '--set', `redis.prefix=${prefix}`,
    '--set', `api.max_body=${MAX_BODY}`, '--set', `server.http_timeout=${HTTP_TIMEOUT_S}s`,
    '--set', 'server.shutdown_timeout=5s',
    ...extra,
  ];
}

function apiEnv() {
  // the daemons' JWT secret: the API signs tokens they accept
  const env = { PATH: process.env.PATH, SERVER_SECRET: API_SECRET, JWT_SECRET_KEY: SECRET };
  for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS']) if (process.env[k]) env[k] = process.env[k];
  return env;
}

/** Starts aeolus-api with these extra arguments (the listening options). */
function startApi(extra, label = 'aeolus-api') {
  const all = [...WRAPPER, API_BIN, ...apiArgs(extra)];
  return new Proc(label, all[0], all.slice(1), { env: apiEnv() });
}

// ---------------------------------------------------------------------------
// Calls through nginx

function assertError(r, status, code, field) {
  assert.equal(r.status, status, `expected ${status}, got ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(typeof r.body, 'object', `not JSON: ${r.body}`);
  assert.equal(r.body.error, code, JSON.stringify(r.body));
  assert.ok(typeof r.body.message === 'string' && r.body.message.length > 0, JSON.stringify(r.body));
  assert.match(r.headers.get('content-type') || '', /application\/json/);
  if (field !== undefined) {
    assert.equal(r.body.field, field, JSON.stringify(r.body));
    assert.ok(r.body.message.includes(field), `the message names ${field}: ${r.body.message}`);
  }
}

/** Waits until the API answers through nginx (Redis connected and subscribed). */
async function apiReady(ng, api, ms = 10000 * SLOW) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    if (!api.alive) throw new Error(`aeolus-api exited: ${api.describe()}`);
    try {
      last = await call(ng, 'GET', '/api/presence');
      if (last.status === 200) return;
    } catch (e) { last = e.message; }
    if (Date.now() > deadline) throw new Error(`the API does not answer through nginx: ${JSON.stringify(last)}; ${api.describe()}`);
    await sleep(50);
  }
}

/** The upstream addresses nginx sent the requests of Engine.IO session sid to. */
function upstreamsOf(ng, sid) {
  const log = fs.readFileSync(path.join(ng.dir, 'access.log'), 'utf8');
  const seen = new Set();
  for (const line of log.split('\n')) {
    const [, uri, up] = line.split(' ');
    if (uri && uri.includes(`sid=${encodeURIComponent(sid)}`) && up && up !== '-') seen.add(up);
  }
  return seen;
}

/** A raw connection to addr ("unix:/path" or "host:port"); resolves once connected. */
function rawConnect(addr) {
  return new Promise((resolve, reject) => {
    const s = addr.startsWith('unix:') ? net.connect(addr.slice(5))
      : net.connect(Number(addr.split(':')[1]), addr.split(':')[0]);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves when s is closed by the peer, or rejects after ms. */
function closedWithin(s, ms, what) {
  return withTimeout(new Promise((resolve) => {
    if (s.destroyed) return resolve();
    s.on('close', resolve);
    s.on('end', () => s.destroy());
    s.on('error', () => {});
    s.resume();
  }), ms, what);
}

// ---------------------------------------------------------------------------
// The cluster: Redis and two aeolusd instances, shared by both modes

before(async () => {
  if (skip) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aeolus-nginx-'));
  fs.chmodSync(tmp, 0o755);
  redis = await startRedis();
  prefix = `ng${process.pid}`;
  for (const name of ['A', 'B']) {
    const d = await startApp({ set: { 'redis.url': redis.url, 'redis.prefix': prefix, 'limits.event_rate': 0 } });
    d.label = `aeolusd ${name}`;
    daemons.push(d);
  }
});

after(async () => {
  closePeers();
  if (skip) return;
  const errors = [];
  await finish(daemons).catch((e) => errors.push(e));
  if (redis) await redis.stop().catch((e) => errors.push(e));
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  if (errors.length) throw errors[0];
});

for (const mode of ['fcgi', 'scgi']) {
  describe(mode === 'fcgi' ? 'FastCGI (unix socket)' : 'SCGI (TCP)', { skip }, () => {
    let dir;
    let ng;
    let api;
    let apiAddr;
    const listenOpt = () => [mode === 'fcgi' ? '--fcgi' : '--scgi', apiAddr, ...(mode === 'fcgi' ? ['--fcgi-threads', '2'] : [])];
    const failed = (e) => {
      e.message += `\n${api ? api.describe() : ''}\n${ng ? ng.describe() : ''}`;
      throw e;
    };
    const t = (name, opts, fn) => test(name, { timeout: 30000 * SLOW, ...opts }, async () => {
      try { await fn(); } catch (e) { failed(e); }
    });

    before(async () => {
      dir = fs.mkdtempSync(path.join(tmp, `${mode}-`));
      fs.chmodSync(dir, 0o755);
      apiAddr = mode === 'fcgi' ? `unix:${path.join(dir, 'api.sock')}` : `127.0.0.1:${await freePort()}`;
      api = startApi(listenOpt());
      const port = await freePort();
      writeConfig(dir, { mode, port, upstreams: daemons.map((d) => d.port), apiAddr });
      ng = await startNginx(dir, port);
      await apiReady(ng, api);
    });

    after(async () => {
      closePeers();
      const errors = [];
      if (ng && ng.alive) await ng.stop('SIGTERM').catch((e) => errors.push(e));
      if (api && api.alive) await api.stop().catch((e) => errors.push(e));
      if (errors.length) throw errors[0];
    });

    t('socket.io-clients through nginx, polling then WebSocket and polling only, get what POST /chat/message sends; polling requests alternate between the instances', {}, async () => {
      const ch = uniq('ng');
      const target = { url: ng.url, label: 'nginx' };
      const ann = await connectPeer(target, 'ann', { transports: ['polling', 'websocket'] });
      const bob = await connectPeer(target, 'bob', { transports: ['polling'] });
      assert.equal(await withTimeout(ann.upgraded, T, 'the upgrade to WebSocket through nginx'), 'websocket');
      await ann.ok('channel:join', { channelId: ch });
      await bob.ok('channel:join', { channelId: ch });
      const ids = [];
      for (let i = 0; i < 6; i++) {
        const r = await call(ng, 'POST', '/chat/message', { channelId: ch, senderId: 'ops', senderName: 'Ops', content: `m${i}` });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.success, true);
        ids.push(r.body.id);
      }
      for (const p of [ann, bob]) {
        for (let i = 0; i < 6; i++) {
          const m = await p.next('message:received', (x) => x.channelId === ch);
          assert.deepEqual([m.content, m.id, m.senderId, m.senderName], [`m${i}`, ids[i], 'ops', 'Ops']);
        }
      }
      assert.equal(ann.transport, 'websocket');
      // a read receipt, and the history, through nginx too
      const rr = await call(ng, 'POST', '/chat/read-receipt', { channelId: ch, messageId: ids[5], readerId: 'ann' });
      assert.equal(rr.status, 200, JSON.stringify(rr.body));
      assert.equal((await bob.next('message:read')).messageId, ids[5]);
      const h = await call(ng, 'GET', `/api/history?channelId=${encodeURIComponent(ch)}&limit=3`);
      assert.deepEqual(h.body.messages.map((m) => m.content), ['m3', 'm4', 'm5']);
      // bob's session was served by both instances (nginx's round robin)
      const ups = upstreamsOf(ng, bob.sid);
      assert.deepEqual([...ups].sort(), daemons.map((d) => `127.0.0.1:${d.port}`).sort(),
        `bob's requests went to ${[...ups].join(', ')}`);
      closePeers();
    });

    t('a token from POST /api/realtime/token through nginx opens a connection through nginx; /api/emit and /api/disconnect reach it; SIGHUP is survived', {}, async () => {
      const r = await call(ng, 'POST', '/api/realtime/token', { userId: 'cyd', name: 'Cyd', ttl: 60 });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.expires_in, 60);
      assert.equal(r.headers.get('cache-control'), 'no-store');
      const cyd = await connect({ url: ng.url }, { token: r.body.token, via: 'query', transports: ['polling', 'websocket'], label: 'cyd' });
      const e = await call(ng, 'POST', '/api/emit', { event: 'notice', data: { n: 1 }, user: 'cyd' });
      assert.equal(e.status, 200, JSON.stringify(e.body));
      assert.deepEqual(await cyd.next('notice'), { n: 1 });
      const p = await call(ng, 'GET', '/api/presence');
      assert.ok(p.body.users.some((u) => u.userId === 'cyd'), JSON.stringify(p.body));
      const gone = withTimeout(new Promise((resolve) => cyd.socket.once('disconnect', resolve)), T, 'the disconnect');
      // SIGHUP is only logged: it still serves
      api.proc.kill('SIGHUP');
      await sleep(100 * SLOW);
      assert.ok(api.alive, api.describe());
      const d = await call(ng, 'POST', '/api/disconnect', { userId: 'cyd' });
      assert.equal(d.status, 200);
      assert.equal(await gone, 'io server disconnect');
      cyd.close();
    });

    t('every error status of SPEC 7 through nginx: 400 naming the field, 401, 403, 404, 405, 413, 429 with Retry-After', {}, async () => {
      assertError(await call(ng, 'POST', '/chat/message', { channelId: 'c', content: 'x' }), 400, 'bad_request', 'senderId');
      assertError(await call(ng, 'POST', '/chat/message', '{"channelId":'), 400, 'bad_request', 'body');
      assertError(await call(ng, 'GET', '/api/history?limit=0&channelId=c'), 400, 'bad_request', 'limit');
      assertError(await call(ng, 'POST', '/api/emit', { event: 'x' }, { secret: null }), 401, 'unauthorized');
      assertError(await call(ng, 'POST', '/api/emit', { event: 'x' }, { secret: 'wrong' }), 401, 'unauthorized');
      // a Basic user name that nginx checked against nothing (fastcgi_params'
      // REMOTE_USER is $remote_user) gets no token
      const basic = { authorization: `Basic ${Buffer.from('eve:anything').toString('base64')}` };
      assertError(await call(ng, 'POST', '/api/realtime/token', { userId: 'eve' }, { secret: null, headers: basic }), 401, 'unauthorized');
      assertError(await call(ng, 'POST', '/api/realtime/token', {}, { secret: null, headers: basic }), 401, 'unauthorized');
      assertError(await call(ng, 'POST', '/api/emit', { event: 'message:received' }), 403, 'forbidden', 'event');
      assertError(await call(ng, 'POST', '/api/nope', {}), 404, 'not_found');
      assertError(await call(ng, 'GET', '/chat/nope'), 404, 'not_found');
      let r = await call(ng, 'GET', '/chat/message');
      assertError(r, 405, 'method_not_allowed');
      assert.equal(r.headers.get('allow'), 'POST');
      r = await call(ng, 'POST', '/api/presence', {});
      assertError(r, 405, 'method_not_allowed');
      assert.equal(r.headers.get('allow'), 'GET, HEAD');
      const head = await fetch(`${ng.url}/api/presence`, { method: 'HEAD', headers: { authorization: `Bearer ${API_SECRET}` } });
      assert.equal(head.status, 200);
      // over api.max_body: just over, and far over (the body is read and
      // dropped: nginx passes the 413 on rather than a reset connection)
      for (const size of [MAX_BODY + 1, 900 * 1024]) {
        const big = JSON.stringify({ channelId: 'c', senderId: 1, content: 'x'.repeat(size) });
        assertError(await call(ng, 'POST', '/chat/message', big), 413, 'too_large', 'body');
      }
      assertError(await call(ng, 'POST', '/chat/message', 'x'.repeat(MAX_BODY * 2), { secret: 'wrong' }), 401, 'unauthorized');
      // slow mode
      const ch = uniq('slow');
      r = await call(ng, 'POST', '/api/channels', { channelId: ch, settings: { slowMode: 30 } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal((await call(ng, 'POST', '/chat/message', { channelId: ch, senderId: 7, content: 'one' })).status, 200);
      r = await call(ng, 'POST', '/chat/message', { channelId: ch, senderId: 7, content: 'two' });
      assertError(r, 429, 'slow_mode');
      const retry = Number(r.headers.get('retry-after'));
      assert.ok(retry >= 29 && retry <= 30, `Retry-After ${r.headers.get('retry-after')}`);
      assert.equal(r.body.retryAfter, retry);
    });

    if (mode === 'scgi') {
      t('raw SCGI straight to aeolus-api: a request sent a byte at a time, a malformed one (400), one over api.max_body (413, its body read to the end)', {}, async () => {
        const scgi = (pairs, body = '') => {
          const block = Buffer.concat(pairs.map((x) => Buffer.from(`${x}\0`)));
          return Buffer.concat([Buffer.from(`${block.length}:`), block, Buffer.from(','), Buffer.from(body)]);
        };
        const exchange = async (bytes, { slice = 0 } = {}) => {
          const sock = await rawConnect(apiAddr);
          let out = Buffer.alloc(0);
          sock.on('data', (c) => { out = Buffer.concat([out, c]); });
          const done = closedWithin(sock, 5000 * SLOW, 'aeolus-api to close the SCGI connection');
          if (slice) {
            for (let i = 0; i < bytes.length; i += slice) {
              sock.write(bytes.subarray(i, i + slice));
              if (i % 16 === 0) await sleep(1);
            }
          } else {
            sock.write(bytes);
          }
          await done;
          const text = out.toString();
          const status = Number(/^Status: (\d+)/.exec(text)?.[1]);
          return { status, head: text.slice(0, text.indexOf('\r\n\r\n')), body: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) };
        };
        const body = JSON.stringify({ channelId: uniq('raw'), senderId: 'r', content: 'byte by byte' });
        let r = await exchange(scgi(['CONTENT_LENGTH', String(body.length), 'SCGI', '1', 'REQUEST_METHOD', 'POST',
          'REQUEST_URI', '/chat/message', 'HTTP_AUTHORIZATION', `Bearer ${API_SECRET}`], body), { slice: 1 });
        assert.equal(r.status, 200, JSON.stringify(r));
        assert.match(r.head, /Content-Type: application\/json/);
        assert.equal(r.body.success, true);
        r = await exchange(Buffer.from('3:abc,'));
        assert.equal(r.status, 400);
        assert.equal(r.body.error, 'bad_request');
        assert.match(r.body.message, /^SCGI: /);
        const big = 'x'.repeat(300 * 1024);
        r = await exchange(scgi(['CONTENT_LENGTH', String(big.length), 'SCGI', '1', 'REQUEST_METHOD', 'POST',
          'REQUEST_URI', '/chat/message', 'HTTP_AUTHORIZATION', `Bearer ${API_SECRET}`], big), { slice: 65536 });
        assert.equal(r.status, 413);
        assert.equal(r.body.error, 'too_large');
      });
    }

    t('many requests at once through nginx all answered; a silent or half-sent connection to aeolus-api holds up no one and is closed after server.http_timeout', {}, async () => {
      const ch = uniq('many');
      const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => call(ng, 'POST', '/chat/message',
        { channelId: ch, senderId: `s${i}`, content: `c${i}` })));
      assert.deepEqual(rs.map((r) => r.status), rs.map(() => 200));
      const h = await call(ng, 'GET', `/api/history?channelId=${ch}&limit=100`);
      assert.equal(h.body.messages.length, 40);
      // silent and half-sent connections straight to aeolus-api (FastCGI
      // runs 2 threads here: one stays free)
      const slow = [await rawConnect(apiAddr)];
      slow[0].write(mode === 'fcgi' ? Buffer.from([1, 1, 0, 1, 0, 8]) : '70:CONTENT_LENGTH\x0027\x00SCGI');
      if (mode === 'scgi') for (let i = 0; i < 20; i++) slow.push(await rawConnect(apiAddr));
      const closed = slow.map((s, i) => closedWithin(s, (HTTP_TIMEOUT_S + 3) * 1000 * SLOW, `slow connection ${i} to be closed`));
      const t0 = Date.now();
      for (let i = 0; i < 10; i++) {
        const r = await call(ng, 'POST', '/chat/message', { channelId: ch, senderId: 'x', content: `after ${i}` });
        assert.equal(r.status, 200, JSON.stringify(r.body));
      }
      assert.ok(Date.now() - t0 < HTTP_TIMEOUT_S * 1000 * SLOW, `10 requests took ${Date.now() - t0} ms beside a slow connection`);
      await Promise.all(closed);
      assert.ok(api.alive);
      // idle now: neither the loop nor the threads spin
      await assertIdle(api);
    });

    t('clients that go away before their answer (Redis slow meanwhile) are forgotten; aeolus-api serves on', {}, async () => {
      const ch = uniq('gone');
      redis.pause();
      const gone = [];
      try {
        for (let i = 0; i < 60; i++) {
          const ac = new AbortController();
          gone.push(fetch(`${ng.url}/chat/message`, {
            method: 'POST', signal: ac.signal,
            headers: { authorization: `Bearer ${API_SECRET}`, 'content-type': 'application/json' },
            body: JSON.stringify({ channelId: ch, senderId: `s${i}`, content: `c${i}` }),
          }).then((r) => r.status, () => 'aborted'));
          setTimeout(() => ac.abort(), i % 3 === 0 ? 0 : 150);
        }
        await Promise.all(gone);
        await sleep(200 * SLOW);   // nginx has closed its connections to aeolus-api
      } finally {
        redis.resume();
      }
      assert.ok(api.alive, api.describe());
      const r = await call(ng, 'POST', '/chat/message', { channelId: ch, senderId: 'after', content: 'still here' });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      await assertIdle(api);
    });

    t('503 through nginx while Redis is down; served again once it is back', { timeout: 60000 * SLOW }, async () => {
      const port = redis.port;
      await redis.stop();
      redis = null;
      const calls = [
        ['POST', '/chat/message', { channelId: 'c', senderId: 1, content: 'x' }],
        ['POST', '/api/emit', { event: 'x', data: 1 }],
        ['GET', '/api/presence?channelId=c'],
      ];
      const deadline = Date.now() + 5000 * SLOW;
      let r;
      do {
        r = await call(ng, ...calls[0]);
        if (r.status === 503) break;
        await sleep(50);
      } while (Date.now() < deadline);
      for (const c of calls) assertError(await call(ng, ...c), 503, 'unavailable');
      assertError(await call(ng, 'POST', '/chat/message', { channelId: 'c' }), 400, 'bad_request', 'senderId');
      redis = await startRedis({ port });
      await apiReady(ng, api, 20000 * SLOW);
      // the instances are back on the bus too: a client gets an emit
      const deadline2 = Date.now() + 20000 * SLOW;
      for (;;) {
        const hs = await Promise.all(daemons.map((d) => fetch(`${d.url}/health`).then((x) => x.status)));
        if (hs.every((s) => s === 200)) break;
        if (Date.now() > deadline2) throw new Error(`the instances did not come back: ${hs}`);
        await sleep(100);
      }
      const dee = await connectPeer({ url: ng.url, label: 'nginx' }, 'dee', { transports: ['websocket'] });
      await call(ng, 'POST', '/api/emit', { event: 'back', data: 2, user: 'dee' });
      assert.equal(await dee.next('back'), 2);
      closePeers();
    });

    t('SIGTERM: a request in flight is answered, then aeolus-api exits 0 and nginx cannot reach it', {}, async () => {
      redis.pause();
      let r;
      try {
        const p = call(ng, 'POST', '/chat/message', { channelId: uniq('term'), senderId: 'z', content: 'in flight' });
        await sleep(300 * SLOW);
        api.proc.kill('SIGTERM');
        await sleep(300 * SLOW);
        assert.ok(api.alive, 'aeolus-api waits for the request in flight');
        redis.resume();
        r = await p;
      } finally {
        redis.resume();
      }
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const res = await withTimeout(api.exited, 8000 * SLOW, 'aeolus-api to exit after SIGTERM');
      assert.deepEqual(res, { code: 0, signal: null }, api.describe());
      assert.equal((await call(ng, 'GET', '/api/presence')).status, 502);
      if (mode === 'fcgi') assert.ok(!fs.existsSync(apiAddr.slice(5)), 'the unix socket is removed');
    });

    if (mode === 'fcgi') {
      t('started the spawn-fcgi way (the listening socket as descriptor 0), it serves FastCGI there and exits on SIGTERM', {}, async () => {
        const sock = apiAddr.slice(5);
        // as spawn-fcgi does: bind, listen, then exec with the socket as fd 0
        const py = 'import os, socket, sys\n' +
          's = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(64)\nos.chmod(sys.argv[1], 0o666)\n' +
          'os.dup2(s.fileno(), 0)\nos.execv(sys.argv[2], sys.argv[2:])\n';
        api = new Proc('aeolus-api (descriptor 0)', 'python3', ['-c', py, sock, ...WRAPPER, API_BIN, ...apiArgs()], { env: apiEnv() });
        await apiReady(ng, api);
        const r = await call(ng, 'POST', '/chat/message', { channelId: uniq('fd0'), senderId: 'f', content: 'fd 0' });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        const t0 = Date.now();
        await api.stop();
        assert.ok(Date.now() - t0 < 4000 * SLOW, `it took ${Date.now() - t0} ms to stop`);
        fs.rmSync(sock, { force: true });
      });
    } else {
      t('-d --pid-file: detaches, serves, and a SIGTERM to the pid file\'s process ends it and removes the file', {}, async () => {
        const pidFile = path.join(dir, 'api.pid');
        const starter = startApi(['-d', '--pid-file', pidFile, ...listenOpt()], 'aeolus-api -d');
        const res = await withTimeout(starter.exited, 5000 * SLOW, 'aeolus-api -d to detach');
        assert.equal(res.code, 0, starter.describe());
        let pid;
        const deadline = Date.now() + 5000 * SLOW;
        while (!(pid = fs.existsSync(pidFile) && Number(fs.readFileSync(pidFile, 'utf8')))) {
          if (Date.now() > deadline) throw new Error('no pid file');
          await sleep(50);
        }
        try {
          await apiReady(ng, { alive: true, describe: () => '' });
          const r = await call(ng, 'POST', '/chat/message', { channelId: uniq('d'), senderId: 'd', content: 'detached' });
          assert.equal(r.status, 200, JSON.stringify(r.body));
          process.kill(pid, 'SIGTERM');
          const deadline2 = Date.now() + 8000 * SLOW;
          while (fs.existsSync(pidFile)) {
            if (Date.now() > deadline2) throw new Error('the pid file is still there after SIGTERM');
            await sleep(50);
          }
        } finally {
          try { process.kill(pid, 0); await sleep(500); process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        }
      });
    }
  });
}

/** One FastCGI request over a fresh connection to addr; resolves the CGI response text. */
async function fcgiRequest(addr, params, body = '') {
  const record = (type, content) => {
    const h = Buffer.from([1, type, 0, 1, content.length >> 8, content.length & 255, 0, 0]);
    return Buffer.concat([h, content]);
  };
  const pairs = Buffer.concat(Object.entries(params).map(([k, v]) => {
    assert.ok(k.length < 128 && v.length < 128);
    return Buffer.concat([Buffer.from([k.length, v.length]), Buffer.from(k), Buffer.from(v)]);
  }));
  const sock = await rawConnect(addr);
  let out = Buffer.alloc(0);
  sock.on('data', (c) => { out = Buffer.concat([out, c]); });
  const done = closedWithin(sock, 5000 * SLOW, 'the FastCGI answer');
  sock.write(Buffer.concat([
    record(1, Buffer.from([0, 1, 0, 0, 0, 0, 0, 0])),         // BEGIN_REQUEST, responder
    record(4, pairs), record(4, Buffer.alloc(0)),               // PARAMS
    ...(body ? [record(5, Buffer.from(body))] : []), record(5, Buffer.alloc(0)),   // STDIN
  ]));
  await done;
  let text = '';
  for (let i = 0; i + 8 <= out.length;) {
    const type = out[i + 1], len = out.readUInt16BE(i + 4), pad = out[i + 6];
    if (type === 6) text += out.subarray(i + 8, i + 8 + len).toString();
    i += 8 + len + pad;
  }
  return text;
}

test('both protocols at once, straight to aeolus-api: SCGI and FastCGI on unix sockets', { skip }, async () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'both-'));
  const s = `unix:${path.join(dir, 'scgi.sock')}`, f = `unix:${path.join(dir, 'fcgi.sock')}`;
  const api = startApi(['--scgi', s, '--fcgi', f]);
  try {
    const deadline = Date.now() + 10000 * SLOW;
    let text = '';
    for (;;) {
      text = await fcgiRequest(f, { REQUEST_METHOD: 'GET', REQUEST_URI: '/api/presence', HTTP_AUTHORIZATION: `Bearer ${API_SECRET}` })
        .catch((e) => e.message);
      if (/^Status: 200/.test(text) || Date.now() > deadline) break;
      await sleep(50);
    }
    assert.match(text, /^Status: 200 OK\r\nContent-Type: application\/json\r\n/, `${text}\n${api.describe()}`);
    assert.match(text, /\{"users":\[/);
    const body = JSON.stringify({ channelId: uniq('both'), senderId: 'b', content: 'fastcgi' });
    text = await fcgiRequest(f, { REQUEST_METHOD: 'POST', REQUEST_URI: '/chat/message', CONTENT_LENGTH: String(body.length),
      HTTP_AUTHORIZATION: `Bearer ${API_SECRET}` }, body);
    assert.match(text, /^Status: 200/, text);
    text = await fcgiRequest(f, { REQUEST_METHOD: 'GET', REQUEST_URI: '/chat/message' });
    assert.match(text, /^Status: 405 Method Not Allowed\r\n/, text);
    assert.match(text, /\r\nAllow: POST\r\n/, text);
    const sock = await rawConnect(s);
    let out = '';
    sock.on('data', (c) => { out += c; });
    const done = closedWithin(sock, 5000 * SLOW, 'the SCGI answer');
    const block = ['CONTENT_LENGTH', '0', 'SCGI', '1', 'REQUEST_METHOD', 'GET', 'REQUEST_URI', '/api/presence',
      'HTTP_AUTHORIZATION', `Bearer ${API_SECRET}`].map((x) => `${x}\0`).join('');
    sock.write(`${block.length}:${block},`);
    await done;
    assert.match(out, /^Status: 200 OK\r\n/, out);
  } finally {
    await api.stop();
  }
  assert.ok(!fs.existsSync(s.slice(5)) && !fs.existsSync(f.slice(5)), 'both sockets are removed');
});

test('aeolus-api refuses to start without redis.url or api.secret, and with nothing to serve', { skip }, async () => {
  const run = (args, env) => new Promise((resolve) => {
    const p = spawn(API_BIN, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.on('data', (c) => { err += c; });
    p.on('exit', (code) => resolve({ code, err }));
  });
  const base = ['--set', `server.profile_dir=${PROFILE_DIR}`, '--scgi', '127.0.0.1:1'];
  let r = await run(base, { SERVER_SECRET: 's' });
  assert.equal(r.code, 1);
  assert.match(r.err, /redis\.url/);
  r = await run([...base, '--set', 'redis.url=redis://127.0.0.1:1']);
  assert.equal(r.code, 1);
  assert.match(r.err, /api\.secret/);
  r = await run(['--set', `server.profile_dir=${PROFILE_DIR}`, '--set', 'redis.url=redis://127.0.0.1:1'], { SERVER_SECRET: 's' });
  assert.equal(r.code, 2);
  assert.match(r.err, /nothing to serve/);
  r = await run([...base, '--set', 'redis.url=redis://127.0.0.1:1', '--check-config'], { SERVER_SECRET: 's3cret' });
  assert.equal(r.code, 0, r.err);
});
