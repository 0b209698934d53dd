// Helpers for the application-layer tests (app-*.test.mjs): a daemon running
// the `aeolus` profile, socket.io-client connections that record every event
// they receive, HS256 JWTs, and a throwaway redis-server.

import { spawn, execFile } from 'node:child_process';
import crypto from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { io } from 'socket.io-client';
import { startDaemon, freePort, withTimeout, sleep, REPO_ROOT, SLOW } from './helpers.mjs';

export { sleep, withTimeout, SLOW };

export const PROFILE_DIR = path.join(REPO_ROOT, 'etc', 'profiles');
export const SECRET = 'app-test-secret-0123456789abcdef';
/** Default wait for something that should happen. */
export const T = 2000 * SLOW;
/** How long to watch for something that should NOT happen. */
export const QUIET = 200 * SLOW;

// Variables the daemon reads from its environment: cleared for every daemon
// started here, so the caller's environment cannot change what is tested.
const ENV_KEYS = ['PORT', 'CORS_ORIGIN', 'LOG_LEVEL', 'WS_MAX_CONNECTIONS', 'REDIS_URL',
  'SOCKETIO_REDIS_URL', 'REALTIME_REDIS_URL', 'REDIS_HOST', 'REDIS_PORT', 'AUTH_TOKEN_PREFIX',
  'JWT_SECRET_KEY', 'JWT_ALGORITHM', 'JWT_PUBLIC_KEY_PATH', 'SERVER_SECRET', 'SECRET_KEY',
  'REALTIME_JWT_SECRET', 'REALTIME_JWT_TTL_SECONDS', 'REALTIME_JWT_AUDIENCE',
  'REALTIME_JWT_ISSUER', 'REDIS_EVENTS_CHANNEL'];

let envLock = Promise.resolve();

/**
 * Start aeolusd with the aeolus profile (or another of etc/profiles).
 * @param {object} [o]
 * @param {string} [o.profile='aeolus']
 * @param {Record<string,string|number>} [o.set]  --set key=value overrides
 * @param {Record<string,string>} [o.env]         environment variables for the daemon
 * @param {boolean} [o.jwt=true]                  configure the HS256 secret SECRET
 */
// AEOLUS_TEST_STORE=redis runs every application test on the Redis store:
// one redis-server for the whole file, a key prefix per daemon.
const REDIS_STORE = process.env.AEOLUS_TEST_STORE === 'redis';
let storeRedis = null;
let storePrefixes = 0;
export const STORE = REDIS_STORE ? 'redis' : 'memory';

async function storeSettings(env, set) {
  if (!REDIS_STORE || env.REDIS_URL || env.REDIS_HOST || set['redis.url']) return {};
  if (!storeRedis) {
    storeRedis = startRedis();
    // the test files end without a hook for it: kill it with the process
    storeRedis.then((r) => {
      r.unref();
      process.on('exit', () => r.kill());
    }, () => {});
  }
  const r = await storeRedis;
  return { 'redis.url': r.url, 'redis.prefix': `t${process.pid}-${++storePrefixes}` };
}

/** Stops the redis-server started for AEOLUS_TEST_STORE=redis, if any. */
export async function stopStoreRedis() {
  if (storeRedis) {
    const r = await storeRedis;
    storeRedis = null;
    await r.stop();
  }
}

export function startApp({ set = {}, env = {}, jwt = true, profile = 'aeolus' } = {}) {
  const run = async () => {
    set = { ...(await storeSettings(env, set)), ...set };
    const saved = {};
    for (const k of ENV_KEYS) { saved[k] = process.env[k]; delete process.env[k]; }
    if (jwt && !env.JWT_SECRET_KEY) env = { ...env, JWT_SECRET_KEY: SECRET };
    Object.assign(process.env, env);
    try {
      return await startDaemon({
        args: ['--profile', profile],
        set: { 'server.profile_dir': PROFILE_DIR, ...set },
      });
    } finally {
      for (const k of [...ENV_KEYS, ...Object.keys(env)]) {
        if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
      }
    }
  };
  const p = envLock.then(run, run);
  envLock = p.catch(() => {});
  return p;
}

// ---------------------------------------------------------------------------
// JWT (HS256 and friends, minted with node's crypto)

const b64u = (x) => Buffer.from(x).toString('base64url');

/**
 * A signed JWT. `claims` gets `iat` and, unless given or exp: null, `exp` one hour ahead.
 */
export function jwt(claims, { secret = SECRET, alg = 'HS256' } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = { iat: now, exp: now + 3600, ...claims };
  if (body.exp === null) delete body.exp;
  const head = b64u(JSON.stringify({ alg, typ: 'JWT' }));
  const payload = b64u(JSON.stringify(body));
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg];
  const sig = crypto.createHmac(hash, secret).update(`${head}.${payload}`).digest('base64url');
  return `${head}.${payload}.${sig}`;
}

/** A token for user `id` (name defaults to a capitalised id). */
export function tokenFor(id, extra = {}) {
  return jwt({ sub: id, name: id[0].toUpperCase() + id.slice(1), ...extra });
}

// ---------------------------------------------------------------------------
// Clients

/** A socket.io-client socket that records every event it receives. */
class Client {
  constructor(socket, label) {
    this.socket = socket;
    this.label = label;
    this.events = [];        // [{event, args, seen}]
    this.waiters = [];
    socket.onAny((event, ...args) => {
      this.events.push({ event, args, at: Date.now() });
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    });
  }

  get id() { return this.socket.id; }
  get connected() { return this.socket.connected; }

  emit(event, ...args) { this.socket.emit(event, ...args); }

  /** Emit with an acknowledgement; resolves the first ack argument. */
  async request(event, payload, timeout = T) {
    const args = payload === undefined ? [] : [payload];
    try {
      return await this.socket.timeout(timeout).emitWithAck(event, ...args);
    } catch (e) {
      throw new Error(`${this.label}: no ack for ${event} ${JSON.stringify(payload)} within ${timeout} ms` +
        ` (connected=${this.socket.connected})`);
    }
  }

  /** Like request(), and asserts the ack is {ok:true,...}. */
  async ok(event, payload, timeout = T) {
    const ack = await this.request(event, payload, timeout);
    if (!ack || ack.ok !== true) {
      throw new Error(`${this.label}: ${event} ${JSON.stringify(payload)} was refused: ${JSON.stringify(ack)}`);
    }
    return ack;
  }

  /** Received events named `event` (data = first argument), oldest first, not consumed. */
  all(event) {
    return this.events.filter((e) => e.event === event).map((e) => e.args[0]);
  }

  /**
   * The first received `event` (matching `pred`) not taken before; waits for it.
   * Resolves its first argument; its arrival time (Date.now()) is left in lastAt.
   */
  async next(event, pred = () => true, timeout = T) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const hit = this.events.find((e) => !e.taken && e.event === event && pred(e.args[0], e.args));
      if (hit) { hit.taken = true; this.lastAt = hit.at; return hit.args[0]; }
      const left = deadline - Date.now();
      if (left <= 0) {
        const seen = this.events.map((e) => `${e.event} ${JSON.stringify(e.args)}`).join('\n  ');
        throw new Error(`${this.label}: timed out after ${timeout} ms waiting for '${event}'; received:\n  ${seen || '(nothing)'}`);
      }
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /** Asserts that no (untaken) `event` matching `pred` arrives within `ms`. */
  async none(event, pred = () => true, ms = QUIET) {
    await sleep(ms);
    const hits = this.events.filter((e) => !e.taken && e.event === event && pred(e.args[0], e.args));
    if (hits.length) {
      throw new Error(`${this.label}: did not expect '${event}', got ${hits.map((e) => JSON.stringify(e.args)).join(', ')}`);
    }
  }

  /** Forget what was received so far. */
  clear() { this.events = []; }

  /** Disconnect (the daemon sees the socket go). */
  close() {
    if (this.socket.connected || this.socket.active) this.socket.disconnect();
  }

  /** Asserts the connection is still up and served: a ping gets its pong. */
  async assertAlive() {
    if (!this.socket.connected) throw new Error(`${this.label}: was disconnected`);
    const ack = await this.request('ping', {});
    if (!ack || ack.ok !== true || typeof ack.ts !== 'number') {
      throw new Error(`${this.label}: ping answered ${JSON.stringify(ack)}`);
    }
  }
}

const open = new Set();

/** Close every client connected through connect() so far. */
export function closeAll() {
  for (const c of open) c.close();
  open.clear();
}

function makeSocket(d, { token, via = 'auth', transports, query, extraHeaders, auth } = {}) {
  // extraHeaders reach the server with the polling transport in Node
  if (!transports) transports = via === 'header' || extraHeaders ? ['polling'] : ['websocket'];
  const opts = { forceNew: true, reconnection: false, timeout: T, transports };
  if (token !== undefined) {
    if (via === 'auth') opts.auth = { token };
    else if (via === 'query') opts.query = { token };
    else if (via === 'header') opts.extraHeaders = { Authorization: `Bearer ${token}` };
    else throw new Error(`unknown token source ${via}`);
  }
  if (query) opts.query = { ...(opts.query || {}), ...query };
  if (extraHeaders) opts.extraHeaders = { ...(opts.extraHeaders || {}), ...extraHeaders };
  if (auth) opts.auth = { ...(opts.auth || {}), ...auth };
  return io(d.url, opts);
}

/**
 * Connect a client; resolves a Client once connected, rejects with the
 * connect_error otherwise.
 * @param {object} d  the daemon
 * @param {object|string} [o]  a token string, or {token, via, transports, label, ...}
 */
export async function connect(d, o = {}) {
  if (typeof o === 'string') o = { token: o };
  const socket = makeSocket(d, o);
  const client = new Client(socket, o.label || 'client');
  open.add(client);
  try {
    await withTimeout(new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', reject);
    }), T, `${client.label} to connect`);
  } catch (e) {
    socket.disconnect();
    open.delete(client);
    if (e && e.data !== undefined) e.message = `${client.label}: connection refused: ${e.message} ${JSON.stringify(e.data)}`;
    throw e;
  }
  return client;
}

/** Connect user `id` with a JWT (extra claims in `claims`). */
export function connectAs(d, id, claims = {}, o = {}) {
  return connect(d, { token: tokenFor(id, claims), label: o.label || id, ...o });
}

/** Resolves the connect_error of a connection that must be refused. */
export async function refused(d, o = {}) {
  if (typeof o === 'string') o = { token: o };
  const socket = makeSocket(d, o);
  try {
    return await withTimeout(new Promise((resolve, reject) => {
      socket.once('connect', () => reject(new Error(`connection was accepted (id ${socket.id})`)));
      socket.once('connect_error', resolve);
    }), T, 'connect_error');
  } finally {
    socket.disconnect();
  }
}

let seq = 0;
/** A channel id not used before in this process. */
export function uniq(prefix = 'ch') {
  seq += 1;
  return `${prefix}-${process.pid}-${seq}`;
}

/** Asserts an ack is a refusal with `code`; returns the error object. */
export function expectError(ack, code) {
  if (!ack || ack.ok !== false || !ack.error || ack.error.code !== code) {
    throw new Error(`expected a refusal with code ${code}, got ${JSON.stringify(ack)}`);
  }
  if (typeof ack.error.message !== 'string' || !ack.error.message) {
    throw new Error(`refusal without a message: ${JSON.stringify(ack)}`);
  }
  return ack.error;
}

// ---------------------------------------------------------------------------
// redis-server

/** A tiny RESP client: one command at a time. */
class RedisConn {
  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.pending = [];
    sock.on('data', (c) => { this.buf = Buffer.concat([this.buf, c]); this._drain(); });
    sock.on('error', () => {});
  }

  _parse(i) {
    const crlf = this.buf.indexOf('\r\n', i);
    if (crlf < 0) return null;
    const type = String.fromCharCode(this.buf[i]);
    const line = this.buf.slice(i + 1, crlf).toString();
    const after = crlf + 2;
    if (type === '+' ) return [line, after];
    if (type === '-') return [new Error(line), after];
    if (type === ':') return [Number(line), after];
    if (type === '$') {
      const n = Number(line);
      if (n < 0) return [null, after];
      if (this.buf.length < after + n + 2) return null;
      return [this.buf.slice(after, after + n).toString(), after + n + 2];
    }
    if (type === '*') {
      const n = Number(line);
      if (n < 0) return [null, after];
      const out = [];
      let pos = after;
      for (let k = 0; k < n; k++) {
        const r = this._parse(pos);
        if (!r) return null;
        out.push(r[0]);
        pos = r[1];
      }
      return [out, pos];
    }
    throw new Error(`bad RESP reply type ${type}`);
  }

  _drain() {
    while (this.pending.length) {
      const r = this._parse(0);
      if (!r) return;
      this.buf = this.buf.slice(r[1]);
      const { resolve, reject } = this.pending.shift();
      if (r[0] instanceof Error) reject(r[0]); else resolve(r[0]);
    }
  }

  command(...args) {
    const parts = args.map(String);
    let s = `*${parts.length}\r\n`;
    for (const p of parts) s += `$${Buffer.byteLength(p)}\r\n${p}\r\n`;
    return withTimeout(new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.sock.write(s);
    }), T, `redis ${args[0]}`);
  }

  close() { this.sock.destroy(); }
}

/**
 * Start a private redis-server on a free port (or on `port`: to start one
 * again where another was stopped). Resolves {port, url, command(...args), stop()}.
 */
export async function startRedis({ port } = {}) {
  if (!port) port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (c) => { log += c; });
  proc.stderr.on('data', (c) => { log += c; });
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  proc.on('error', (e) => { log += `\n[spawn error] ${e.message}`; });
  let conn;
  const deadline = Date.now() + 5000 * SLOW;
  for (;;) {
    try {
      const sock = await new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      });
      conn = new RedisConn(sock);
      if ((await conn.command('PING')) === 'PONG') break;
    } catch { /* not up yet */ }
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`redis-server did not start on port ${port}:\n${log}`);
    }
    await sleep(50);
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    command: (...args) => conn.command(...args),
    kill() { proc.kill('SIGKILL'); },
    /** Freezes the server (SIGSTOP): connections stay up, commands wait. */
    pause() { proc.kill('SIGSTOP'); },
    resume() { proc.kill('SIGCONT'); },
    /** Lets the test process end while this server runs (it is killed at exit). */
    unref() {
      proc.unref();
      proc.stdout.unref();
      proc.stderr.unref();
      conn.sock.unref();
    },
    async stop() {
      conn.close();
      proc.kill('SIGTERM');
      await withTimeout(exited, 5000, 'redis-server to exit').catch(() => proc.kill('SIGKILL'));
    },
  };
}

/** True when redis-server can be run here. */
export function haveRedis() {
  return new Promise((resolve) => {
    execFile('redis-server', ['--version'], (err) => resolve(!err));
  });
}
