// server.workers: the daemon binds one socket and runs its workers on it as
// child processes; it restarts a worker that dies, stops them all on SIGTERM,
// and refuses to start them without the Redis store.

import { after, afterEach, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { AEOLUS_ONLY, cpuTicks, daemonPath, finish, freePort, makeTest } from './helpers.mjs';
import {
  PROFILE_DIR, SECRET, T, SLOW, closeAll, connectAs, haveRedis, sleep, startApp, startRedis, uniq,
} from './app-lib.mjs';

const skip = AEOLUS_ONLY || (!(await haveRedis()) && 'redis-server is not installed');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'aeolus-workers-'));
const pidFile = path.join(tmp, 'aeolusd.pid');

let redis; let d;
const test = makeTest(() => [d]);

before(async () => {
  if (skip) return;
  redis = await startRedis();
  d = await startApp({
    set: { 'server.workers': 2, 'redis.url': redis.url, 'redis.prefix': `w${process.pid}`, 'server.pid_file': pidFile },
  });
});
afterEach(() => closeAll());
after(async () => {
  closeAll();
  await finish([d]);
  if (redis) await redis.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** Live (not zombie) children of process `pid`, from /proc. */
function childrenOf(pid) {
  const out = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat;
    try { stat = readFileSync(`/proc/${name}/stat`, 'utf8'); } catch { continue; }
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(ppid) === pid && state !== 'Z') out.push(Number(name));
  }
  return out.sort((a, b) => a - b);
}

/** Is process `pid` there (a zombie, which only waits to be reaped, is not)? */
function running(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Polls `fn` until it returns a truthy value; resolves that value. */
async function until(what, fn, timeout = 5000 * SLOW) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** The workers of daemon `x` once there are `n` of them. */
const workers = (x, n = 2) => until(`${n} workers`, () => {
  const c = childrenOf(x.proc.pid);
  return c.length === n && c;
});

/** GET /health over a new TCP connection (so that any worker may take it). */
function health(x) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${x.url}/health`, { agent: false, headers: { Connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => {
        try { resolve({ status: res.statusCode, body: JSON.parse(body) }); } catch (e) { reject(e); }
      });
    });
    req.on('error', reject);
    req.setTimeout(T, () => req.destroy(new Error('GET /health timed out')));
  });
}

/** Asks /health until every pid in `pids` has answered; resolves the answering pids. */
async function answeredBy(x, pids, tries = 200) {
  const seen = new Set();
  for (let i = 0; i < tries && !pids.every((p) => seen.has(p)); i++) {
    const h = await health(x);
    assert.equal(h.status, 200, JSON.stringify(h.body));
    seen.add(h.body.pid);
  }
  return [...seen].sort((a, b) => a - b);
}

/** The daemon's environment without the variables that set keys. */
function cleanEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  for (const k of ['PORT', 'REDIS_URL', 'SOCKETIO_REDIS_URL', 'REALTIME_REDIS_URL', 'REDIS_HOST', 'REDIS_PORT',
    'LOG_LEVEL', 'CORS_ORIGIN', 'WS_MAX_CONNECTIONS', 'AUTH_TOKEN_PREFIX']) delete env[k];
  return env;
}

const appArgs = ['--profile', 'aeolus', '--set', `server.profile_dir=${PROFILE_DIR}`];

test('the parent forks two workers and its pid is in the pid file', { skip }, async () => {
  const pids = await workers(d);
  assert.equal(readFileSync(pidFile, 'utf8').trim(), String(d.proc.pid));
  assert.ok(!pids.includes(d.proc.pid));
});

test('GET /health answers from both workers, with the answering pid', { skip }, async () => {
  const pids = await workers(d);
  assert.deepEqual(await answeredBy(d, pids), pids);
  const h = await health(d);
  assert.deepEqual([h.body.status, h.body.store, h.body.redis], ['ok', 'redis', 'up']);
});

test('a WebSocket client is served by a worker', { skip }, async () => {
  const alice = await connectAs(d, 'alice', {}, { transports: ['websocket'] });
  await alice.assertAlive();
});

test('long-polling and WebSocket clients, whose requests any worker may take, get each other\'s messages', { skip, timeout: 10000 * SLOW }, async () => {
  const ch = uniq();
  const alice = await connectAs(d, 'alice', {}, { transports: ['polling'] });
  const bob = await connectAs(d, 'bob', {}, { transports: ['polling'] });
  const carol = await connectAs(d, 'carol', {}, { transports: ['websocket'] });
  for (const c of [alice, bob, carol]) await c.ok('channel:join', { channelId: ch });
  for (const [from, to] of [[alice, [bob, carol]], [carol, [alice, bob]]]) {
    for (let i = 0; i < 20; i++) {
      const content = `${from.label} ${i}`;
      await from.ok('message:send', { channelId: ch, content });
      for (const c of to) await c.next('message:received', (m) => m.content === content);
    }
  }
});

test('idle, neither the parent nor the workers use the CPU', { skip }, async () => {
  const pids = [d.proc.pid, ...(await workers(d))];
  const t0 = pids.map(cpuTicks);
  await sleep(500);
  const used = pids.map((p, i) => cpuTicks(p) - t0[i]);
  assert.ok(used.every((t) => t <= 15), `CPU ticks over 500 ms: ${used.join(', ')}`);
});

test('a worker killed with SIGKILL is replaced, logged once, and the daemon keeps answering', { skip, timeout: 10000 * SLOW }, async () => {
  const before = await workers(d);
  const victim = before[0];
  process.kill(victim, 'SIGKILL');
  const h = await health(d);                 // the other worker answers meanwhile
  assert.equal(h.status, 200);
  const now = await until('a new worker', () => {
    const c = childrenOf(d.proc.pid);
    return c.length === 2 && !c.includes(victim) && c;
  });
  assert.ok(now.includes(before[1]), `the other worker kept running: ${before} -> ${now}`);
  assert.deepEqual(await answeredBy(d, now), now);
  const lines = d.stderr.split('\n').filter((l) => l.includes(`worker ${victim} `));
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.match(lines[0], /killed by signal 9/);
});

test('SIGTERM to the parent stops every worker, removes the pid file, exits 0', { skip }, async () => {
  const pids = await workers(d);
  const x = d;
  d = null;
  await x.stop();                            // asserts exit status 0
  for (const p of pids) assert.ok(!running(p), `worker ${p} still running`);
  assert.ok(!existsSync(pidFile), 'the pid file was not removed');
});

test('server.workers > 1 without redis.url: refused with a message, also by --check-config', { skip }, async () => {
  const port = await freePort();
  for (const extra of [[], ['--check-config']]) {
    const r = await new Promise((resolve) => {
      execFile(daemonPath(), [...appArgs, '--workers', '2', '--port', String(port), ...extra],
        { env: cleanEnv({ JWT_SECRET_KEY: SECRET }), timeout: 5000 * SLOW },
        (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stderr }));
    });
    assert.equal(r.code, 1, `exit status with ${extra}: ${r.stderr}`);
    assert.match(r.stderr, /^aeolusd: server\.workers = 2 needs the Redis store \(redis\.url\)/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

test('-d with workers: the launcher exits 0, the daemon serves, SIGTERM stops it all', { skip, timeout: 15000 * SLOW }, async () => {
  const port = await freePort();
  const file = path.join(tmp, 'detached.pid');
  const log = path.join(tmp, 'detached.log');
  const fd = openSync(log, 'w');
  const launcher = spawn(daemonPath(), [...appArgs, '-d', '-w', '2', '--port', String(port),
    '--bind', '127.0.0.1', '--log-level', 'warn', '--pid-file', file,
    '--set', `redis.url=${redis.url}`, '--set', `redis.prefix=wd${process.pid}`],
  { env: cleanEnv({ JWT_SECRET_KEY: SECRET }), stdio: ['ignore', 'ignore', fd] });
  closeSync(fd);
  const code = await new Promise((resolve) => launcher.on('exit', resolve));
  assert.equal(code, 0, readFileSync(log, 'utf8'));
  const pid = Number(await until('the pid file', () => existsSync(file) && readFileSync(file, 'utf8').trim()));
  const x = { proc: { pid }, url: `http://127.0.0.1:${port}` };
  try {
    const pids = await workers(x);
    let h;
    for (let i = 0; i < 100 && !h; i++) h = await health(x).catch(() => sleep(50));
    assert.equal(h.status, 200);
    assert.ok(pids.includes(h.body.pid), `${h.body.pid} is not one of ${pids}`);
    process.kill(pid, 'SIGTERM');
    await until('the daemon to exit', () => !running(pid), 12000 * SLOW);
    for (const p of pids) assert.ok(!running(p), `worker ${p} still running`);
    assert.ok(!existsSync(file), 'the pid file was not removed');
  } finally {
    if (running(pid)) process.kill(pid, 'SIGKILL');
  }
  assert.doesNotMatch(readFileSync(log, 'utf8'), /error|warn/i, 'unexpected log lines');
});
