// Shared helpers for the aeolusd integration tests.
//
// Environment:
//   AEOLUSD                 path to the daemon (default: ../src/aeolusd relative to tests/)
//   AEOLUS_TEST_WRAPPER     optional command prefix, e.g. "valgrind -q --error-exitcode=99"
//   AEOLUS_TEST_SERVER_CMD  run this command instead of aeolusd; the port and any extra
//                           arguments are appended (used to validate the suite against a
//                           reference Socket.IO/Engine.IO server). aeolus-specific tests skip.
//   AEOLUS_TEST_VERBOSE     print the daemon's stderr after every run, not only on failure

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test as nodeTest } from 'node:test';
import crypto from 'node:crypto';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TESTS_DIR = path.resolve(HERE, '..');
export const REPO_ROOT = path.resolve(TESTS_DIR, '..');

/** True when the suite runs against an external reference server instead of aeolusd. */
export const REFERENCE = Boolean(process.env.AEOLUS_TEST_SERVER_CMD);
/** Skip reason for tests of behaviour that only aeolusd defines. */
export const AEOLUS_ONLY = REFERENCE ? 'aeolus-specific behaviour (reference server in use)' : false;

const WRAPPER = (process.env.AEOLUS_TEST_WRAPPER || '').trim().split(/\s+/).filter(Boolean);
/** Slow-down factor for timeouts when running under a wrapper such as valgrind. */
export const SLOW = WRAPPER.length ? 10 : 1;

export const PING_INTERVAL = 300;
export const PING_TIMEOUT = 200;
export const MAX_PAYLOAD = 1000000;
export const CONNECT_TIMEOUT = 1000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects after `ms` with `what` in the message, unless `promise` settles first. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function daemonPath() {
  const p = process.env.AEOLUSD || path.join(REPO_ROOT, 'src', 'aeolusd');
  return path.resolve(p);
}

const live = new Set();

/** How long a daemon may take to exit after SIGTERM (it drains connections first). */
const STOP_TIMEOUT = 12000 * SLOW;

process.on('exit', () => {
  for (const d of live) {
    try { d.proc.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

function tail(text, max = 8000) {
  return text.length > max ? '...\n' + text.slice(-max) : text;
}

class Daemon {
  constructor(proc, port, label) {
    this.proc = proc;
    this.port = port;
    this.label = label;
    this.url = `http://127.0.0.1:${port}`;
    this.wsUrl = `ws://127.0.0.1:${port}`;
    this.stderr = '';
    this.stdout = '';
    this.exit = null;
    this.stopping = false;
    proc.stderr.setEncoding('utf8');
    proc.stdout.setEncoding('utf8');
    proc.stderr.on('data', (d) => { this.stderr += d; });
    proc.stdout.on('data', (d) => { this.stdout += d; });
    this.exited = new Promise((resolve) => {
      proc.on('error', (err) => {
        this.stderr += `\n[spawn error] ${err.message}\n`;
        if (proc.pid === undefined && this.exit === null) {
          // the process never started: no 'exit' event will follow
          this.exit = { code: null, signal: null };
          live.delete(this);
          resolve(this.exit);
        }
      });
      proc.on('exit', (code, signal) => {
        if (this.exit !== null) return;
        this.exit = { code, signal };
        live.delete(this);
        if (!this.stopping && this.started) {
          process.stderr.write(
            `\n*** ${this.label} (port ${port}) exited unexpectedly: code=${code} signal=${signal}\n` +
            `--- stderr ---\n${tail(this.unseenStderr())}\n--------------\n`);
        }
        resolve(this.exit);
      });
    });
  }

  get alive() { return this.exit === null; }

  /** stderr written since the last call (so failures don't repeat the same log). */
  unseenStderr() {
    const text = this.stderr.slice(this.shown || 0);
    this.shown = this.stderr.length;
    return text;
  }

  describe() {
    const state = this.alive ? 'running' : `exited code=${this.exit.code} signal=${this.exit.signal}`;
    return `${this.label} on port ${this.port} (${state})\n--- stderr ---\n${tail(this.stderr)}\n--------------`;
  }

  /** SIGTERM the daemon and assert that it exits cleanly with status 0. */
  async stop() {
    if (!this.alive) {
      throw new Error(`daemon had already exited before shutdown: ${this.describe()}`);
    }
    this.stopping = true;
    this.proc.kill('SIGTERM');
    let res;
    try {
      res = await withTimeout(this.exited, STOP_TIMEOUT, 'daemon exit after SIGTERM');
    } catch (e) {
      this.proc.kill('SIGKILL');
      await this.exited;
      throw new Error(`daemon did not exit within ${STOP_TIMEOUT / 1000} s of SIGTERM: ${this.describe()}`);
    }
    if (process.env.AEOLUS_TEST_VERBOSE && this.stderr) {
      process.stderr.write(`--- ${this.label} stderr ---\n${this.stderr}\n`);
    }
    if (res.code !== 0 || res.signal !== null) {
      throw new Error(`daemon did not exit cleanly after SIGTERM: ${this.describe()}`);
    }
  }
}

/**
 * Start a daemon on a free port and wait until it serves HTTP.
 * @param {object} [opts]
 * @param {Record<string,string|number>} [opts.set]  config overrides, passed as --set key=value
 * @param {string[]} [opts.args]                     extra command-line arguments
 */
export async function startDaemon(opts = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (e) {
      // another process may have taken the port between probing and binding
      if (attempt >= 3 || !e.portInUse) throw e;
    }
  }
}

async function startOnce({ set = {}, args = [] }) {
  const port = await freePort();
  const setArgs = Object.entries(set).flatMap(([k, v]) => ['--set', `${k}=${v}`]);
  let cmd; let argv; let label;
  if (REFERENCE) {
    const extra = [...setArgs, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    cmd = '/bin/sh';
    argv = ['-c', `exec ${process.env.AEOLUS_TEST_SERVER_CMD} ${port} ${extra}`];
    label = 'reference server';
  } else {
    const bin = daemonPath();
    if (!existsSync(bin)) {
      throw new Error(`aeolusd not found at ${bin}: build it first or set AEOLUSD`);
    }
    const full = [bin, '--profile', 'conformance', '--port', String(port), '--bind', '127.0.0.1',
      '--log-level', 'warn', ...setArgs, ...args];
    const all = [...WRAPPER, ...full];
    cmd = all[0];
    argv = all.slice(1);
    label = 'aeolusd';
  }
  const proc = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const d = new Daemon(proc, port, label);
  live.add(d);
  const deadline = Date.now() + 10000 * SLOW;
  for (;;) {
    if (!d.alive) {
      const err = new Error(`daemon exited during startup: ${d.describe()}`);
      err.portInUse = /in use/i.test(d.stderr);
      throw err;
    }
    try {
      const res = await fetch(`${d.url}/`, { signal: AbortSignal.timeout(1000 * SLOW) });
      await res.arrayBuffer();
      d.started = true;
      return d;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await d.exited;
      throw new Error(`daemon did not answer HTTP within ${10 * SLOW} s: ${d.describe()}`);
    }
    await sleep(50);
  }
}

/**
 * End-of-file teardown: check that `idle` (if running) is not spinning, then stop
 * every daemon in `daemons`. All problems are reported together.
 */
export async function finish(daemons, idle = null) {
  const errors = [];
  if (idle?.alive) {
    await assertIdle(idle).catch((e) => errors.push(e));
  }
  for (const x of daemons) {
    if (x) await x.stop().catch((e) => errors.push(e));
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new Error(errors.map((e) => e.message).join('\n\n'));
}

/**
 * node:test `test` with a default timeout; on failure, the stderr of the daemons
 * passed in `daemons()` is printed so failures can be diagnosed.
 */
export function makeTest(daemons) {
  const wrap = (name, opts, fn) => {
    if (typeof opts === 'function') { fn = opts; opts = {}; }
    const o = { timeout: 5000 * SLOW, ...opts };
    return nodeTest(name, o, async (t) => {
      try {
        await fn(t);
      } catch (err) {
        const ds = daemons().filter(Boolean);
        const dead = ds.filter((x) => !x.alive);
        let note = '';
        for (const x of ds) {
          const fresh = x.unseenStderr();
          if (fresh) note += `\n--- ${x.label} (port ${x.port}) stderr ---\n${tail(fresh)}\n--------------`;
        }
        if (note) process.stderr.write(`\n[${name}] failed;${note}\n`);
        if (dead.length && err && typeof err.message === 'string') {
          err.message += ` [daemon exited: code=${dead[0].exit.code} signal=${dead[0].exit.signal}]`;
        }
        throw err;
      }
    });
  };
  return wrap;
}

// ---------------------------------------------------------------------------
// Engine.IO over HTTP long-polling

export const SEP = '\x1e';

export function eioUrl(d, query = '', ep = '/engine.io/') {
  return `${d.url}${ep}?EIO=4&transport=polling${query ? '&' + query : ''}`;
}

/** Open a polling session, return the parsed handshake. */
export async function pollingHandshake(d, ep = '/engine.io/') {
  const res = await fetch(eioUrl(d, '', ep));
  const body = await res.text();
  if (res.status !== 200 || body[0] !== '0') {
    throw new Error(`polling handshake failed: ${res.status} ${body}`);
  }
  return JSON.parse(body.slice(1));
}

export async function pollGet(d, sid, ep = '/engine.io/', init = {}) {
  const res = await fetch(eioUrl(d, `sid=${encodeURIComponent(sid)}`, ep), init);
  return { status: res.status, body: await res.text(), headers: res.headers };
}

export async function pollPost(d, sid, body, ep = '/engine.io/', headers = {}) {
  const res = await fetch(eioUrl(d, `sid=${encodeURIComponent(sid)}`, ep), {
    method: 'POST', body, headers: { 'content-type': 'text/plain;charset=UTF-8', ...headers },
  });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/**
 * GET packets from a polling session, answering server pings and dropping pings/noops,
 * until at least `count` packets were received.
 */
export async function pollPackets(d, sid, count = 1, ep = '/engine.io/') {
  const out = [];
  while (out.length < count) {
    const r = await pollGet(d, sid, ep);
    if (r.status !== 200) throw new Error(`poll failed: ${r.status} ${r.body}`);
    for (const p of r.body.split(SEP)) {
      if (p === '2') {
        await pollPost(d, sid, '3', ep);
      } else if (p !== '6') {
        out.push(p);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// WebSocket client with a message queue

export class WsConn {
  /**
   * @param {string} url
   * @param {object} [o]
   * @param {boolean} [o.autoPong=true]  answer Engine.IO ping "2" with "3" and hide it
   * @param {boolean} [o.hideNoop=true]  hide Engine.IO noop "6"
   * @param {object} [o.wsOptions]       options for the ws constructor
   */
  constructor(url, { autoPong = true, hideNoop = true, wsOptions = {} } = {}) {
    this.autoPong = autoPong;
    this.hideNoop = hideNoop;
    this.queue = [];
    this.waiters = [];
    this.closeInfo = null;
    this.openError = null;
    this.unexpected = null;
    this.ws = new WebSocket(url, { ...wsOptions });
    this.ws.on('message', (data, isBinary) => {
      const msg = isBinary ? { data: Buffer.from(data), binary: true } : { data: data.toString(), binary: false };
      if (!msg.binary && msg.data === '2' && this.autoPong) {
        if (this.ws.readyState === WebSocket.OPEN) this.ws.send('3');
        return;
      }
      if (!msg.binary && msg.data === '6' && this.hideNoop) return;
      this.queue.push(msg);
      this._wake();
    });
    this.ws.on('error', (err) => {
      this.openError = err;
      const m = /Unexpected server response: (\d+)/.exec(err.message);
      if (m) this.unexpected = { status: Number(m[1]) };
    });
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this._wake();
        resolve(this.closeInfo);
      });
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.closed.then(() => reject(new Error(
        `websocket to ${url} closed before opening` +
        (this.unexpected ? ` (HTTP ${this.unexpected.status})` : '') +
        (this.openError ? `: ${this.openError.message}` : ''))));
    });
    this.opened.catch(() => {});
  }

  _wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Next message ({data, binary}); rejects on close or timeout. */
  async next(timeout = 2000 * SLOW) {
    const deadline = Date.now() + timeout;
    for (;;) {
      if (this.queue.length) return this.queue.shift();
      if (this.closeInfo) {
        throw new Error(`connection closed (code ${this.closeInfo.code}) while waiting for a message`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeout} ms waiting for a message`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /** Next text message as a string. */
  async nextText(timeout) {
    const m = await this.next(timeout);
    if (m.binary) throw new Error(`expected a text message, got binary ${m.data.toString('hex')}`);
    return m.data;
  }

  async nextBinary(timeout) {
    const m = await this.next(timeout);
    if (!m.binary) throw new Error(`expected a binary message, got text ${JSON.stringify(m.data)}`);
    return m.data;
  }

  send(data) { this.ws.send(data); }

  /** Wait until the connection is closed by the server; returns {code, reason}. */
  waitClose(timeout = 2000 * SLOW) {
    return withTimeout(this.closed, timeout, 'the server to close the connection');
  }

  /** Polite close (close frame 1000); the TCP connection is dropped if the server does not answer. */
  close() {
    if (this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.terminate();
    } else if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.close(1000);
      setTimeout(() => this.ws.terminate(), 1000 * SLOW).unref();
    }
  }

  /** Drop the TCP connection without a closing handshake. */
  terminate() {
    this.ws.terminate();
  }
}

/** Open an Engine.IO websocket session; resolves {conn, handshake}. */
export async function eioWsOpen(d, { ep = '/engine.io/', query = '', ...o } = {}) {
  const conn = new WsConn(`${d.wsUrl}${ep}?EIO=4&transport=websocket${query ? '&' + query : ''}`, o);
  const first = await conn.nextText();
  if (first[0] !== '0') throw new Error(`expected open packet, got ${first}`);
  return { conn, handshake: JSON.parse(first.slice(1)) };
}

/** Socket.IO session on the main namespace over websocket (handshake and auth consumed). */
export async function sioWsOpen(d, o = {}) {
  const { conn } = await eioWsOpen(d, { ep: '/socket.io/', ...o });
  conn.send('40');
  const connect = await conn.nextText();
  if (!connect.startsWith('40')) throw new Error(`expected CONNECT, got ${connect}`);
  const auth = await conn.nextText();
  if (auth !== '42["auth",{}]') throw new Error(`expected auth event, got ${auth}`);
  return conn;
}

// ---------------------------------------------------------------------------
// Raw TCP WebSocket (hand-made frames)

/** Build a WebSocket frame. Client frames are masked unless `mask: false`. */
export function wsFrame({ opcode, payload = Buffer.alloc(0), fin = true, mask = true, rsv = 0, length }) {
  payload = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = length === undefined ? payload.length : length;
  let header;
  if (len < 126) {
    header = Buffer.alloc(2);
    header[1] = len;
  } else if (len < 65536) {
    header = Buffer.alloc(4);
    header[1] = 126;
    header.writeUInt16BE(len, 2);
  } else {
    header = Buffer.alloc(10);
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  header[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  if (!mask) return Buffer.concat([header, payload]);
  header[1] |= 0x80;
  const key = crypto.randomBytes(4);
  const body = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) body[i] = payload[i] ^ key[i & 3];
  return Buffer.concat([header, key, body]);
}

export const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 };

/** Close frame payload: 2-byte code + reason. */
export function closePayload(code, reason = '') {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return b;
}

export class RawWs {
  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.frames = [];
    this.waiters = [];
    this.ended = false;
    this.bytesIn = 0;
    this.error = null;
    socket.on('data', (chunk) => {
      this.bytesIn += chunk.length;
      this.buf = Buffer.concat([this.buf, chunk]);
      this._parse();
    });
    socket.on('error', (e) => { this.error = e; });
    this.closed = new Promise((resolve) => {
      socket.on('close', () => { this.ended = true; this._wake(); resolve(); });
    });
  }

  /**
   * Connect to `path` with a valid RFC 6455 upgrade request.
   * Resolves once the 101 response was read.
   */
  static connect(port, path = '/engine.io/?EIO=4&transport=websocket') {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      const key = crypto.randomBytes(16).toString('base64');
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => { socket.destroy(); reject(new Error('upgrade timed out')); }, 3000 * SLOW);
      const onData = (chunk) => {
        head = Buffer.concat([head, chunk]);
        const idx = head.indexOf('\r\n\r\n');
        if (idx < 0) return;
        clearTimeout(timer);
        socket.removeListener('data', onData);
        const text = head.slice(0, idx).toString('latin1');
        if (!/^HTTP\/1\.1 101/.test(text)) {
          socket.destroy();
          reject(new Error(`upgrade refused: ${text.split('\r\n')[0]}`));
          return;
        }
        const accept = crypto.createHash('sha1')
          .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        const m = /sec-websocket-accept:\s*(\S+)/i.exec(text);
        if (!m || m[1] !== accept) {
          socket.destroy();
          reject(new Error(`bad Sec-WebSocket-Accept in: ${text}`));
          return;
        }
        const raw = new RawWs(socket);
        const rest = head.slice(idx + 4);
        if (rest.length) socket.emit('data', rest);
        resolve(raw);
      };
      socket.on('data', onData);
      socket.on('error', (e) => { clearTimeout(timer); reject(e); });
      socket.on('connect', () => {
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      });
    });
  }

  _wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  _parse() {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0;
      const opcode = b[0] & 0x0f;
      const masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2); off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2)); off = 10;
      }
      let key = null;
      if (masked) {
        if (b.length < off + 4) return;
        key = b.slice(off, off + 4); off += 4;
      }
      if (b.length < off + len) return;
      let payload = Buffer.from(b.slice(off, off + len));
      if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
      this.buf = b.slice(off + len);
      this.frames.push({ fin, opcode, masked, payload });
      this._wake();
    }
  }

  send(frameBuf) {
    if (!this.socket.destroyed) this.socket.write(frameBuf);
  }

  sendText(text) { this.send(wsFrame({ opcode: OP.TEXT, payload: Buffer.from(text) })); }

  /** Next frame; Engine.IO pings ("2" text frames) are answered and skipped by default. */
  async nextFrame(timeout = 2000 * SLOW, { skipPings = true } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      while (this.frames.length) {
        const f = this.frames.shift();
        if (skipPings && f.opcode === OP.TEXT && f.payload.toString() === '2') {
          this.sendText('3');
          continue;
        }
        return f;
      }
      if (this.ended) throw new Error('connection closed while waiting for a frame');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeout} ms waiting for a frame`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /**
   * Wait for the server's close frame (skipping data frames) and/or the TCP close.
   * Resolves {code, tcpClosed}; code is null when no close frame was received.
   */
  async expectClose(timeout = 2000 * SLOW) {
    const deadline = Date.now() + timeout;
    let code = null;
    for (;;) {
      let f;
      try {
        f = await this.nextFrame(Math.max(1, deadline - Date.now()));
      } catch (e) {
        if (this.ended) break;
        throw new Error(`server did not close the connection: ${e.message}`);
      }
      if (f.opcode === OP.CLOSE) {
        code = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
        // complete the closing handshake like a well-behaved client would
        this.send(wsFrame({ opcode: OP.CLOSE, payload: f.payload.slice(0, 2) }));
        break;
      }
    }
    await withTimeout(this.closed, Math.max(1, deadline - Date.now()) + 500 * SLOW,
      'the server to close the TCP connection');
    return { code };
  }

  /** Polite close: send a close frame (1000), wait briefly for the server to close, then drop. */
  async close() {
    if (!this.ended) {
      this.send(wsFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }));
      await Promise.race([this.closed, sleep(500 * SLOW)]);
    }
    this.socket.destroy();
  }

  /** Drop the TCP connection without a closing handshake. */
  destroy() { this.socket.destroy(); }
}

/** CPU time (clock ticks, user+system) used so far by process `pid`, or null if unknown. */
export function cpuTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return null;
  }
}

/**
 * Assert the daemon is not spinning: over `ms` it uses less than `maxShare` of one CPU.
 * Skipped silently where /proc is unavailable or under a wrapper.
 */
export async function assertIdle(d, ms = 500, maxShare = 0.3) {
  if (SLOW !== 1) return;
  const t0 = cpuTicks(d.proc.pid);
  if (t0 === null) return;
  await sleep(ms);
  const t1 = cpuTicks(d.proc.pid);
  if (t1 === null) return;
  const share = (t1 - t0) / 100 / (ms / 1000); // USER_HZ is 100 on Linux
  if (share > maxShare) {
    throw new Error(`daemon is busy while idle: ${(share * 100).toFixed(0)}% CPU over ${ms} ms`);
  }
}

/** Simple HTTP/1.1 request over a fresh TCP connection; resolves the raw response text. */
export function rawHttp(port, requestText, timeout = 2000 * SLOW) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('raw HTTP request timed out')); }, timeout);
    socket.on('data', (c) => { data = Buffer.concat([data, c]); });
    socket.on('error', () => {});
    socket.on('close', () => { clearTimeout(timer); resolve(data.toString('latin1')); });
    socket.on('connect', () => socket.write(requestText));
  });
}

/** Assert the daemon still serves a normal client: Engine.IO websocket echo round trip. */
export async function assertServing(d) {
  const { conn } = await eioWsOpen(d);
  try {
    conn.send('4still-alive');
    const m = await conn.nextText();
    if (m !== '4still-alive') throw new Error(`echo mismatch after hostile client: ${m}`);
  } finally {
    conn.close();
  }
  const hs = await pollingHandshake(d);
  if (typeof hs.sid !== 'string') throw new Error('polling handshake broken after hostile client');
}
