// etc/apache/aeolus.conf under a real Apache httpd (skipped when there is
// none): the snippet as shipped, only its addresses changed, in a throwaway
// server configuration. Socket.IO clients of every transport go through the
// balancer to two aeolusd instances on one Redis, without stickiness; the
// API paths reach a FastCGI responder, or an SCGI one with the snippet's
// alternative lines, with the Bearer secret, the path, the query, the body,
// and REMOTE_USER when Apache authenticated the user.
//
// The responders are small ones of the test's own that echo what they got
// as JSON; aeolus-api is not involved.

import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import { makeTest, freePort, sleep, REPO_ROOT, AEOLUS_ONLY, SLOW } from './helpers.mjs';
import { haveRedis, tokenFor, uniq, T } from './app-lib.mjs';
import { startCluster } from './cluster-lib.mjs';

const SNIPPET = path.join(REPO_ROOT, 'etc', 'apache', 'aeolus.conf');
const SECRET = 'apache-test-secret';

/** The httpd binary and its module directory, or null. */
function findApache() {
  const dirs = (process.env.PATH || '').split(':').concat(['/usr/sbin', '/usr/local/sbin']);
  let bin = null;
  for (const name of ['apache2', 'httpd']) {
    for (const d of dirs) {
      const p = path.join(d, name);
      if (!bin && fs.existsSync(p)) bin = p;
    }
  }
  const modules = ['/usr/lib/apache2/modules', '/usr/lib64/httpd/modules', '/usr/lib/httpd/modules',
    '/usr/local/apache2/modules'].find((d) => fs.existsSync(path.join(d, 'mod_proxy_balancer.so')));
  if (!bin || !modules) return null;
  try {
    const builtIn = execFileSync(bin, ['-l'], { encoding: 'utf8' });
    return { bin, modules, builtIn };
  } catch {
    return null;
  }
}

const apache = AEOLUS_ONLY ? null : findApache();
const skip = AEOLUS_ONLY || (!apache && 'no Apache httpd (apache2 or httpd) here')
  || (!(await haveRedis()) && 'redis-server is not installed');

const MODULES = ['mpm_event', 'authz_core', 'authn_core', 'authn_file', 'authz_user', 'auth_basic',
  'proxy', 'proxy_http', 'proxy_balancer', 'lbmethod_byrequests', 'slotmem_shm', 'proxy_fcgi',
  'proxy_scgi'];

let cluster;
const servers = [];           // responders and httpds, stopped at the end
const test = makeTest(() => (cluster ? cluster.daemons : []));

after(async () => {
  for (const s of servers.reverse()) await s.stop().catch(() => {});
  if (cluster) await cluster.stop();
});

// ---------------------------------------------------------------------------
// Responders that echo {params, body} as JSON

function echo(params, body) {
  const json = JSON.stringify({ params, body: body.toString('utf8') });
  return Buffer.from(`Status: 200 OK\r\nContent-Type: application/json\r\n\r\n${json}`);
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const sockets = new Set();
      server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
      const stop = () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); });
      const it = { port: server.address().port, stop };
      servers.push(it);
      resolve(it);
    });
  });
}

/** A FastCGI responder (FCGI_RESPONDER role, one request at a time per connection). */
function fcgiResponder() {
  return listen(net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    let params = Buffer.alloc(0);
    let body = Buffer.alloc(0);
    let keep = false;
    const record = (type, id, content) => {
      const h = Buffer.alloc(8);
      h.writeUInt8(1, 0);
      h.writeUInt8(type, 1);
      h.writeUInt16BE(id, 2);
      h.writeUInt16BE(content.length, 4);
      return Buffer.concat([h, content]);
    };
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 8) {
        const type = buf[1];
        const id = buf.readUInt16BE(2);
        const len = buf.readUInt16BE(4);
        const pad = buf[6];
        if (buf.length < 8 + len + pad) break;
        const content = buf.subarray(8, 8 + len);
        buf = buf.subarray(8 + len + pad);
        if (type === 1) {                      // FCGI_BEGIN_REQUEST
          keep = (content[2] & 1) === 1;
          params = Buffer.alloc(0);
          body = Buffer.alloc(0);
        } else if (type === 4) {               // FCGI_PARAMS
          params = Buffer.concat([params, content]);
        } else if (type === 5 && len > 0) {    // FCGI_STDIN
          body = Buffer.concat([body, content]);
        } else if (type === 5) {               // the end of FCGI_STDIN: answer
          const out = echo(decodePairs(params), body);
          const end = Buffer.alloc(8);         // appStatus 0, FCGI_REQUEST_COMPLETE
          sock.write(Buffer.concat([record(6, id, out), record(6, id, Buffer.alloc(0)), record(3, id, end)]));
          if (!keep) sock.end();
        }
      }
    });
    sock.on('error', () => {});
  }));
}

function decodePairs(b) {
  const out = {};
  let i = 0;
  const len = () => {
    if (b[i] < 128) return b[i++];
    const n = b.readUInt32BE(i) & 0x7fffffff;
    i += 4;
    return n;
  };
  while (i < b.length) {
    const nl = len();
    const vl = len();
    const name = b.subarray(i, i + nl).toString('latin1');
    out[name] = b.subarray(i + nl, i + nl + vl).toString('latin1');
    i += nl + vl;
  }
  return out;
}

/** An SCGI responder: a netstring of pairs, then CONTENT_LENGTH bytes. */
function scgiResponder() {
  return listen(net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const colon = buf.indexOf(0x3a);
      if (colon < 0) return;
      const n = Number(buf.subarray(0, colon).toString('latin1'));
      if (buf.length < colon + 1 + n + 1) return;
      const parts = buf.subarray(colon + 1, colon + 1 + n).toString('latin1').split('\0').slice(0, -1);
      const params = {};
      for (let i = 0; i + 1 < parts.length; i += 2) params[parts[i]] = parts[i + 1];
      const start = colon + 1 + n + 1;
      const want = Number(params.CONTENT_LENGTH || 0);
      if (buf.length < start + want) return;
      sock.end(echo(params, buf.subarray(start, start + want)));
    });
    sock.on('error', () => {});
  }));
}

// ---------------------------------------------------------------------------
// Apache

/**
 * Starts httpd with the snippet, edited by `edit` (text in, text out) after
 * its addresses are pointed at this test's servers. Resolves {url, log, stop}.
 */
async function startApache(edit = (s) => s, { fcgi, scgi }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aeolus-apache-'));
  fs.chmodSync(dir, 0o755);    // the children may run as another user
  const port = await freePort();
  const [a, b] = cluster.daemons;
  let snippet = fs.readFileSync(SNIPPET, 'utf8')
    .replace('<VirtualHost *:80>', `<VirtualHost *:${port}>`)
    .replaceAll('127.0.0.1:3000', `127.0.0.1:${a.port}`)
    .replaceAll('127.0.0.1:3001', `127.0.0.1:${b.port}`)
    .replaceAll('127.0.0.1:9001', `127.0.0.1:${fcgi.port}`)
    .replaceAll('127.0.0.1:9000', `127.0.0.1:${scgi.port}`)
    .replaceAll('/etc/apache2/aeolus.htpasswd', path.join(dir, 'htpasswd'));
  snippet = edit(snippet);
  fs.writeFileSync(path.join(dir, 'aeolus.conf'), snippet);
  const sha = createHash('sha1').update('ann-password').digest('base64');
  fs.writeFileSync(path.join(dir, 'htpasswd'), `ann:{SHA}${sha}\n`, { mode: 0o644 });
  const root = process.getuid && process.getuid() === 0;
  const group = fs.readFileSync('/etc/group', 'utf8').match(/^nogroup:/m) ? 'nogroup' : 'nobody';
  const conf = [
    `ServerRoot "${dir}"`,
    `Listen 127.0.0.1:${port}`,
    `PidFile "${dir}/httpd.pid"`,
    `DefaultRuntimeDir "${dir}"`,
    `ErrorLog "${dir}/error.log"`,
    'LogLevel warn',
    'ServerName 127.0.0.1',
    ...(root ? ['User nobody', `Group ${group}`] : []),
    ...MODULES.filter((m) => !apache.builtIn.includes(`mod_${m}.c`))
      .map((m) => `LoadModule ${m}_module "${apache.modules}/mod_${m}.so"`),
    // which member served each request, for the test to look at
    'LogFormat "%{BALANCER_WORKER_NAME}e %U %q" member',
    `CustomLog "${dir}/access.log" member`,
    `Include "${dir}/aeolus.conf"`,
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'httpd.conf'), conf);
  execFileSync(apache.bin, ['-t', '-f', path.join(dir, 'httpd.conf')], { stdio: 'pipe' });
  const child = spawn(apache.bin, ['-f', path.join(dir, 'httpd.conf'), '-D', 'FOREGROUND'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c) => { stderr += c; });
  const exited = new Promise((r) => child.on('exit', r));
  const it = {
    url: `http://127.0.0.1:${port}`,
    dir,
    access: () => fs.readFileSync(path.join(dir, 'access.log'), 'utf8'),
    stop: async () => {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  servers.push(it);
  for (let i = 0; ; i++) {
    const up = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); r(true); });
      s.on('error', () => r(false));
    });
    if (up) return it;
    if (i > 100 || child.exitCode !== null) {
      throw new Error(`httpd did not start: ${stderr}${fs.existsSync(path.join(dir, 'error.log'))
        ? fs.readFileSync(path.join(dir, 'error.log'), 'utf8') : ''}`);
    }
    await sleep(50);
  }
}

/** The snippet with its SCGI lines instead of the FastCGI ones. */
function useScgi(s) {
  return s
    .replace(/^\tProxyPass "\/(chat|api)\/" "fcgi:.*$/gm, '')
    .replace(/^\t#   (ProxyPass "\/(chat|api)\/" "scgi:.*)$/gm, '\t$1');
}

/** The snippet with its Basic authentication example on. */
function withBasicAuth(s) {
  const lines = s.split('\n');
  const from = lines.findIndex((l) => l.includes('#   <Location "/api/realtime/token">'));
  assert.ok(from > 0, 'the snippet has the Basic authentication example');
  for (let i = from; i < lines.length && lines[i].startsWith('\t#   '); i++) {
    lines[i] = `\t${lines[i].slice(5)}`;
    if (lines[i].includes('</Location>')) break;
  }
  return lines.join('\n');
}

let fcgi;
let scgi;
let viaFcgi;
let viaScgi;

before(async () => {
  if (skip) return;
  cluster = await startCluster({ size: 2 });
  fcgi = await fcgiResponder();
  scgi = await scgiResponder();
  viaFcgi = await startApache(withBasicAuth, { fcgi, scgi });
  viaScgi = await startApache(useScgi, { fcgi, scgi });
});

// ---------------------------------------------------------------------------

function open(url, user, transports) {
  const socket = io(url, {
    transports, forceNew: true, reconnection: false, timeout: T, auth: { token: tokenFor(user) },
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (e) => reject(new Error(`${user}: ${e.message}`)));
  });
}

test('Socket.IO through the balancer: polling, websocket and upgraded clients of two instances share a channel', { skip, timeout: 20000 * SLOW }, async () => {
  const ch = uniq('apache');
  const clients = [];
  try {
    for (const [user, transports] of [['pat', ['polling']], ['wes', ['websocket']], ['uma', ['polling', 'websocket']]]) {
      clients.push(await open(viaFcgi.url, user, transports));
    }
    const got = clients.map(() => []);
    clients.forEach((c, i) => c.on('message:received', (m) => got[i].push(`${m.senderId}:${m.content}`)));
    for (const c of clients) {
      const ack = await c.timeout(T).emitWithAck('channel:join', { channelId: ch });
      assert.equal(ack.ok, true, JSON.stringify(ack));
    }
    // the upgrade has happened
    for (let i = 0; i < 100 && clients[2].io.engine.transport.name !== 'websocket'; i++) await sleep(20);
    assert.equal(clients[2].io.engine.transport.name, 'websocket');
    const users = ['pat', 'wes', 'uma'];
    for (let n = 0; n < 3; n++) {
      for (const c of clients) {
        const ack = await c.timeout(T).emitWithAck('message:send', { channelId: ch, content: `m${n}` });
        assert.equal(ack.ok, true, JSON.stringify(ack));
      }
    }
    const want = (i) => [0, 1, 2].flatMap((n) => users.filter((u, k) => k !== i).map((u) => `${u}:m${n}`)).sort();
    for (let k = 0; k < 100 && got.some((g, i) => g.length < want(i).length); k++) await sleep(20);
    got.forEach((g, i) => assert.deepEqual([...g].sort(), want(i), `${users[i]} received`));
    // the polling requests of one session went to both members
    const sid = clients[0].io.engine.id;
    const members = new Set(viaFcgi.access().split('\n')
      .filter((l) => l.includes('/socket.io/') && l.includes(`sid=${sid}`)).map((l) => l.split(' ')[0]));
    assert.equal(members.size, 2, `the members that served ${sid}: ${[...members]}`);
  } finally {
    for (const c of clients) c.close();
  }
});

async function post(base, url, body, headers = {}) {
  const res = await fetch(`${base}${url}`, {
    method: 'POST', body, headers: { 'content-type': 'application/json', ...headers },
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

for (const [kind, server] of [['FastCGI', () => viaFcgi], ['SCGI', () => viaScgi]]) {
  test(`the API over ${kind}: the Bearer secret, the request's path and query, the body`, { skip }, async () => {
    const body = JSON.stringify({ event: 'notice', data: { n: 1 } });
    const got = await post(server().url, '/api/emit?x=1&y=a%20b', body, { authorization: `Bearer ${SECRET}` });
    assert.equal(got.params.HTTP_AUTHORIZATION, `Bearer ${SECRET}`);
    assert.equal(got.params.REQUEST_METHOD, 'POST');
    assert.equal(got.params.REQUEST_URI, '/api/emit?x=1&y=a%20b');
    assert.equal(got.params.QUERY_STRING, 'x=1&y=a%20b');
    assert.equal(got.params.CONTENT_LENGTH, String(body.length));
    assert.equal(got.body, body);
    const chat = await post(server().url, '/chat/message', '{}', { authorization: `Bearer ${SECRET}` });
    assert.equal(chat.params.REQUEST_URI, '/chat/message');
    assert.equal(chat.params.HTTP_AUTHORIZATION, `Bearer ${SECRET}`);
    // other paths are not the responder's
    const res = await fetch(`${server().url}/apix/emit`, { method: 'POST', body: '{}' });
    assert.equal(res.status, 404);
  });
}

test('the Basic authentication example: REMOTE_USER for /api/realtime/token, 401 without a login', { skip }, async () => {
  const basic = `Basic ${Buffer.from('ann:ann-password').toString('base64')}`;
  const got = await post(viaFcgi.url, '/api/realtime/token', '{}', { authorization: basic });
  assert.equal(got.params.REMOTE_USER, 'ann');
  assert.equal(got.params.REQUEST_URI, '/api/realtime/token');
  const res = await fetch(`${viaFcgi.url}/api/realtime/token`, { method: 'POST', body: '{}' });
  assert.equal(res.status, 401);
  const wrong = await fetch(`${viaFcgi.url}/api/realtime/token`, {
    method: 'POST', body: '{}', headers: { authorization: `Basic ${Buffer.from('ann:nope').toString('base64')}` },
  });
  assert.equal(wrong.status, 401);
  // the other endpoints are not behind it
  const emit = await post(viaFcgi.url, '/api/emit', '{}');
  assert.equal(emit.params.REMOTE_USER, undefined);
});
