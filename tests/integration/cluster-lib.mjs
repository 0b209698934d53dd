// Helpers for the cluster tests (cluster.test.mjs): one redis-server, N aeolusd
// instances with the `aeolus` profile on it (same redis.url, same redis.prefix),
// and a round-robin proxy in front of them that sends every HTTP request and
// every WebSocket upgrade to the next instance in turn: no stickiness, so a
// polling session's requests land on every instance.
//
// Environment:
//   CLUSTER_SIZE     number of aeolusd instances (default 4). CLUSTER_SIZE=1 runs
//                    the same tests against a one-instance "cluster": a check of
//                    the tests and the proxy, where every test should pass.
//   CLUSTER_WORKERS  worker processes of the last instance when there are several
//                    (default 2: three single-process instances and one
//                    `--workers 2`, whose requests land on either worker).

import http from 'node:http';
import net from 'node:net';
import { io } from 'socket.io-client';
import { finish, assertIdle, sleep, withTimeout, SLOW } from './helpers.mjs';
import { startApp, startRedis, tokenFor, T, QUIET } from './app-lib.mjs';

export { T, QUIET, SLOW, sleep };

/** Instances started by startCluster() unless told otherwise. */
export const CLUSTER_SIZE = (() => {
  const v = process.env.CLUSTER_SIZE;
  if (v === undefined || v === '') return 4;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 26) throw new Error(`CLUSTER_SIZE must be 1 to 26, not ${v}`);
  return n;
})();

/** Worker processes of the last instance of a cluster of several. */
export const CLUSTER_WORKERS = (() => {
  const v = process.env.CLUSTER_WORKERS;
  const n = v === undefined || v === '' ? 2 : Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 16) throw new Error(`CLUSTER_WORKERS must be 1 to 16, not ${v}`);
  return n;
})();

/** Instance names in messages: A, B, C... */
export const NAMES = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'.split('');

let clusters = 0;

// ---------------------------------------------------------------------------
// The round-robin proxy

// Hop-by-hop headers: never forwarded as they are.
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te',
  'trailer', 'upgrade']);

function forwardHeaders(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP.has(k)) out[k] = v;
  return out;
}

function queryOf(url) {
  try {
    const u = new URL(url, 'http://x');
    return { sid: u.searchParams.get('sid'), transport: u.searchParams.get('transport') };
  } catch {
    return { sid: null, transport: null };
  }
}

/**
 * A proxy on a free loopback port in front of `targets` (objects with a port):
 * every HTTP request, and every WebSocket upgrade (piped raw), goes to the next
 * target in turn. Returns an object usable as a connect() target ({url, wsUrl,
 * port}) that also records where each request went.
 */
export async function startProxy(targets, { names = NAMES } = {}) {
  let turn = 0;
  const log = [];            // {n, inst, kind: 'http'|'upgrade', method, transport, sid, status}
  const creators = new Map();  // sid -> instance that answered its handshake
  const sockets = new Set();   // client connections and upstream sockets, destroyed at close
  const track = (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); };
  const proxy = {
    isProxy: true,
    targets,
    log,
    creators,
    /** Optional (ctx) => instance index for an upgrade; ctx = {sid, creator, turn}. */
    routeUpgrade: null,
  };

  const pick = () => {
    const i = turn % targets.length;
    turn += 1;
    return i;
  };

  const server = http.createServer((req, res) => {
    const inst = pick();
    const { sid, transport } = queryOf(req.url);
    const entry = { n: log.length, inst, kind: 'http', method: req.method, transport, sid, status: null };
    log.push(entry);
    const up = http.request({
      host: '127.0.0.1', port: targets[inst].port, method: req.method, path: req.url,
      headers: forwardHeaders(req.headers),
      agent: false, // a connection per request: no race with an idle upstream connection closing
    }, (ures) => {
      entry.status = ures.statusCode;
      const handshake = !sid && req.method === 'GET' && transport === 'polling';
      if (handshake) {
        let head = '';
        ures.on('data', (c) => {
          if (head.length > 512) return;
          head += c.toString('latin1');
          const m = /"sid":"([^"]+)"/.exec(head);
          if (m && !creators.has(m[1])) creators.set(m[1], inst);
        });
      }
      res.writeHead(ures.statusCode, ures.statusMessage, forwardHeaders(ures.headers));
      ures.pipe(res);
      ures.on('error', () => res.destroy());
    });
    up.on('socket', track);
    up.on('error', (e) => {
      entry.status = 502;
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`proxy: instance ${names[inst]} (port ${targets[inst].port}): ${e.message}\n`);
      } else {
        res.destroy();
      }
    });
    req.pipe(up);
    // the client gave up (an aborted long poll): drop the upstream request too
    res.on('close', () => { if (!res.writableFinished) up.destroy(); });
  });
  server.keepAliveTimeout = 60000;
  server.headersTimeout = 0;
  server.requestTimeout = 0;
  server.on('connection', track);
  server.on('clientError', (err, socket) => socket.destroy());

  server.on('upgrade', (req, socket, head) => {
    const { sid, transport } = queryOf(req.url);
    let inst = pick();
    if (proxy.routeUpgrade) {
      const r = proxy.routeUpgrade({ sid, creator: sid ? creators.get(sid) : undefined, turn: inst });
      if (Number.isInteger(r)) inst = ((r % targets.length) + targets.length) % targets.length;
    }
    log.push({ n: log.length, inst, kind: 'upgrade', method: req.method, transport, sid, status: null });
    const upstream = net.connect(targets[inst].port, '127.0.0.1');
    track(upstream);
    const kill = () => { upstream.destroy(); socket.destroy(); };
    upstream.on('error', kill);
    socket.on('error', kill);
    upstream.on('close', () => socket.destroy());
    socket.on('close', () => upstream.destroy());
    upstream.on('connect', () => {
      upstream.setNoDelay(true);
      socket.setNoDelay(true);
      let text = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
      for (let k = 0; k < req.rawHeaders.length; k += 2) text += `${req.rawHeaders[k]}: ${req.rawHeaders[k + 1]}\r\n`;
      upstream.write(text + '\r\n');
      if (head && head.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  Object.assign(proxy, {
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    label: 'proxy',
    /** Skip `k` turns of the rotation. */
    advance(k = 1) { turn += k; },
    /** Requests (and upgrades) made for Engine.IO session `sid`. */
    entries(sid) { return log.filter((e) => e.sid === sid); },
    /** The distinct instances that served requests of session `sid` (handshake included). */
    instancesFor(sid) {
      const s = new Set(proxy.entries(sid).map((e) => e.inst));
      if (creators.has(sid)) s.add(creators.get(sid));
      return s;
    },
    /** "handshake on A; GET A×3 B×3 C×2; POST ...; upgrade on B" for session `sid`. */
    describe(sid) {
      const parts = [];
      if (creators.has(sid)) parts.push(`handshake on ${names[creators.get(sid)]}`);
      const by = {};
      for (const e of proxy.entries(sid)) {
        const k = e.kind === 'upgrade' ? 'upgrade' : e.method;
        by[k] = by[k] || targets.map(() => 0);
        by[k][e.inst] += 1;
      }
      for (const [k, counts] of Object.entries(by)) {
        parts.push(`${k} ${counts.map((c, i) => (c ? `${names[i]}×${c}` : '')).filter(Boolean).join(' ')}`);
      }
      const failed = proxy.failures(sid);
      if (failed.length) {
        parts.push(`answered with an error: ${failed.slice(0, 4).map((f) => `${f.method} on ${names[f.inst]}: HTTP ${f.status}`).join(', ')}` +
          `${failed.length > 4 ? ` and ${failed.length - 4} more` : ''}`);
      }
      return parts.join('; ') || 'no request seen';
    },
    /** Non-2xx answers given to session `sid` (or to anyone). */
    failures(sid) {
      return log.filter((e) => (sid === undefined || e.sid === sid) && e.kind === 'http' &&
        e.status !== null && (e.status < 200 || e.status >= 300));
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  });
  return proxy;
}

// ---------------------------------------------------------------------------
// The cluster

/**
 * Start redis-server, `size` aeolusd instances with the aeolus profile on it (same
 * redis.url and redis.prefix; no event rate limit unless `set` says otherwise) and
 * the round-robin proxy. Resolves
 * {size, redis, prefix, daemons, proxy, instance(i), name(i), stop()}.
 * @param {object} [o]
 * @param {number} [o.size=CLUSTER_SIZE]
 * @param {Record<string,string|number>} [o.set]  --set overrides for every instance
 * @param {Record<string,string>} [o.env]         environment for every instance
 */
export async function startCluster({ size = CLUSTER_SIZE, set = {}, env = {} } = {}) {
  const redis = await startRedis();
  clusters += 1;
  const prefix = `cluster${process.pid}-${clusters}`;
  const daemons = [];
  const c = { size, redis, prefix, daemons, proxy: null };
  try {
    for (let i = 0; i < size; i++) {
      const workers = size > 1 && i === size - 1 ? CLUSTER_WORKERS : 1;
      const d = await startApp({
        set: {
          'limits.event_rate': 0, ...set, 'redis.url': redis.url, 'redis.prefix': prefix,
          'server.workers': workers,
        },
        env,
      });
      d.label = `aeolusd ${NAMES[i]}${workers > 1 ? ` (${workers} workers)` : ''}`;
      d.name = NAMES[i];
      daemons.push(d);
    }
    c.proxy = await startProxy(daemons);
  } catch (e) {
    await stopParts(c).catch(() => {});
    throw e;
  }
  c.instance = (i) => daemons[i % size];
  c.name = (i) => NAMES[i % size];
  c.stop = () => stopParts(c);
  return c;
}

async function stopParts(c) {
  closePeers();
  const errors = [];
  if (c.proxy) await c.proxy.close().catch((e) => errors.push(e));
  // no instance spins once its clients are gone (on the bus, on Redis...)
  await Promise.all(c.daemons.filter((d) => d.alive).map((d) => assertIdle(d).catch((e) => {
    e.message = `${d.label}: ${e.message}`;
    errors.push(e);
  })));
  // the daemons first, Redis last: a daemon losing its Redis is another test
  await finish(c.daemons).catch((e) => errors.push(e));
  if (c.redis) await c.redis.stop().catch((e) => errors.push(e));
  c.redis = null;
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new Error(errors.map((e) => e.message).join('\n\n'));
}

// ---------------------------------------------------------------------------
// Clients

const peers = new Set();

/** Disconnect every peer connected so far. */
export function closePeers() {
  for (const p of peers) p.close();
  peers.clear();
}

/**
 * A socket.io-client socket that records what it receives, and where it is
 * connected: `at` names the instance or 'proxy'.
 */
export class Peer {
  constructor(socket, label, at) {
    this.socket = socket;
    this.label = label;
    this.at = at;
    this.events = [];        // [{event, args, at, taken?}]
    this.waiters = [];
    this.transports = [];    // names of the transports used, in order
    const engine = socket.io.engine;
    this.transports.push(engine.transport ? engine.transport.name : '?');
    this.engineSid = null;   // kept after the session closes (engine.id is then cleared)
    engine.on('handshake', (data) => { this.engineSid = data && data.sid; });
    this.upgradeError = null;
    this.route = () => '';   // where its requests went, for peers behind the proxy
    this.upgraded = new Promise((resolve) => {
      engine.once('upgrade', (t) => { this.transports.push(t.name); resolve(t.name); });
    });
    engine.on('upgradeError', (e) => { this.upgradeError = e; });
    this.engineClose = null;  // why the Engine.IO session ended, as the client saw it
    engine.on('close', (reason, desc) => {
      let detail = '';
      if (desc && typeof desc === 'object') {
        // a WebSocket close: {description, context: CloseEvent}; an XHR error: {description: status}
        const ctx = desc.context;
        if (ctx && ctx.code !== undefined) detail = ` (WebSocket close code ${ctx.code}${ctx.reason ? ` ${ctx.reason}` : ''})`;
        else if (desc.description !== undefined && typeof desc.description !== 'object') detail = ` (${desc.description})`;
        else if (desc.message) detail = ` (${desc.message})`;
      }
      this.engineClose = `${reason}${detail} on ${engine.transport ? engine.transport.name : '?'}` +
        ` ${Date.now() - this.t0} ms after the start`;
    });
    this.t0 = Date.now();
    socket.onAny((event, ...args) => {
      this.events.push({ event, args, at: Date.now() });
      this._wake();
    });
    socket.on('disconnect', (reason) => {
      this.disconnectReason = reason;
      this._wake();
    });
  }

  _wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.waiters.push(() => { clearTimeout(t); resolve(); });
    });
  }

  get id() { return this.socket.id; }
  get connected() { return this.socket.connected; }
  /** The Engine.IO session id (also after the session closed). */
  get sid() { return (this.socket.io.engine && this.socket.io.engine.id) || this.engineSid; }
  /** The transport in use now: 'polling' or 'websocket'. */
  get transport() { return this.socket.io.engine && this.socket.io.engine.transport && this.socket.io.engine.transport.name; }

  emit(event, ...args) { this.socket.emit(event, ...args); }

  /** Emit with an acknowledgement; resolves the first ack argument. */
  async request(event, payload, timeout = T) {
    try {
      return await this.socket.timeout(timeout).emitWithAck(event, payload);
    } catch (e) {
      const route = this.route();
      throw new Error(`${this.label}: no ack for ${event} ${JSON.stringify(payload)} within ${timeout} ms` +
        ` (connected=${this.socket.connected}${this.engineClose ? `, session closed: ${this.engineClose}` : ''}, ` +
        `transport ${this.transports.join(' then ')})${route ? `; ${route}` : ''}`);
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

  /** First arguments of the received `event`s matching `pred`, oldest first. */
  all(event, pred = () => true) {
    return this.events.filter((e) => e.event === event && pred(e.args[0])).map((e) => e.args[0]);
  }

  count(event, pred = () => true) { return this.all(event, pred).length; }

  /**
   * The first received `event` matching `pred` not taken before; waits for it.
   * `what` describes the awaited event in the failure message.
   */
  async next(event, pred = () => true, timeout = T, what = '') {
    const deadline = Date.now() + timeout;
    for (;;) {
      const hit = this.events.find((e) => !e.taken && e.event === event && pred(e.args[0]));
      if (hit) { hit.taken = true; return hit.args[0]; }
      const left = deadline - Date.now();
      if (left <= 0) {
        const seen = this.events.slice(-20).map((e) => `${e.event} ${JSON.stringify(e.args)}`).join('\n  ');
        const route = this.route();
        throw new Error(`${this.label} (on ${this.at}): timed out after ${timeout} ms waiting for '${event}'` +
          `${what ? ` (${what})` : ''}` +
          `${this.connected ? '' : ` (disconnected: ${this.engineClose || this.disconnectReason})`}${route ? `; ${route}` : ''}` +
          `; last received:\n  ${seen || '(nothing)'}`);
      }
      await this._sleep(left);
    }
  }

  /** Waits until `n` events `event` matching `pred` were received (or the timeout); returns the count. */
  async waitCount(event, pred, n, timeout = T) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const k = this.count(event, pred);
      if (k >= n || Date.now() >= deadline || !this.socket.connected) return k;
      await this._sleep(Math.min(100, deadline - Date.now()));
    }
  }

  /** Asserts that no `event` matching `pred` arrives (or arrived untaken) within `ms`. */
  async none(event, pred = () => true, ms = QUIET) {
    await sleep(ms);
    const hits = this.events.filter((e) => !e.taken && e.event === event && pred(e.args[0]));
    if (hits.length) {
      throw new Error(`${this.label} (on ${this.at}): did not expect '${event}', got ${hits.map((e) => JSON.stringify(e.args)).join(', ')}`);
    }
  }

  close() {
    if (this.socket.connected || this.socket.active) this.socket.disconnect();
  }
}

/**
 * Connect user `id` (a JWT for it) to `target`: an instance (a daemon) or the proxy.
 * Resolves a Peer once the Socket.IO connection is accepted.
 * @param {object} target  {url, name?|label?}
 * @param {string} id
 * @param {object} [o]
 * @param {string[]} [o.transports=['websocket']]
 * @param {string} [o.label]
 * @param {object} [o.claims]  extra JWT claims (e.g. {role: 'admin'})
 */
export async function connectPeer(target, id, { transports = ['websocket'], label, claims = {} } = {}) {
  const at = target.name || target.label || target.url;
  const socket = io(target.url, {
    forceNew: true, reconnection: false, timeout: T, transports,
    auth: { token: tokenFor(id, claims) },
  });
  const peer = new Peer(socket, label || `${id}@${at}/${transports.join('+')}`, at);
  peer.userId = id;
  if (target.isProxy) {
    peer.route = () => `session ${peer.sid} via the proxy: ${target.describe(peer.sid)}`;
  }
  peer.name = claims.name || id[0].toUpperCase() + id.slice(1); // as tokenFor() names it
  peers.add(peer);
  try {
    await withTimeout(new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', reject);
    }), T, `${peer.label} to connect`);
  } catch (e) {
    const sid = peer.sid;
    socket.disconnect();
    peers.delete(peer);
    let where = '';
    if (target.isProxy) where = sid ? `; ${peer.route()}` : '; no handshake seen by the proxy';
    e.message = `${peer.label}: could not connect: ${e.message}` +
      `${e.data !== undefined ? ' ' + JSON.stringify(e.data) : ''}` +
      ` (transport ${peer.transports.join(' then ')}${peer.engineClose ? `, session closed: ${peer.engineClose}` : ''})${where}`;
    throw e;
  }
  return peer;
}

// ---------------------------------------------------------------------------
// Streams of numbered messages

/**
 * Send `n` message:send to `channelId` from `peer`, contents `${tag} ${seq}` for
 * seq 0..n-1, emitted in seq order with at most `window` acks outstanding. The
 * first ack that does not come within `timeout` stops the sending (the stream is
 * broken; waiting for every other ack would only make the failure slow).
 * Resolves {acks (by seq; null when none came), refused: [{seq, ack}],
 * missing: [seq] (no ack), unsent (seqs never emitted: unsent..n-1)}.
 */
export async function sendNumbered(peer, channelId, tag, n, { window = 50, timeout = 3000 * SLOW } = {}) {
  const acks = new Array(n).fill(null);
  const refused = [];
  const missing = [];
  let nextSeq = 0;
  let stop = false;
  const lane = async () => {
    while (nextSeq < n && !stop) {
      const seq = nextSeq++;
      try {
        const ack = await peer.request('message:send',
          { channelId, content: `${tag} ${seq}`, clientMessageId: `${tag}-${seq}` }, timeout);
        acks[seq] = ack;
        if (!ack || ack.ok !== true) refused.push({ seq, ack });
      } catch {
        missing.push(seq);
        stop = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, lane));
  missing.sort((a, b) => a - b);
  refused.sort((a, b) => a.seq - b.seq);
  return { acks, refused, missing, unsent: nextSeq };
}

/** The ack problems of sendNumbered() as one sentence, or '' when every ack was ok. */
export function ackProblems(label, n, { refused, missing, unsent = n }) {
  const out = [];
  if (missing.length) {
    out.push(`${missing.length} of ${n} message:send got no ack (first seq ${missing[0]}` +
      `${missing.length > 1 ? `, last ${missing[missing.length - 1]}` : ''})`);
  }
  if (unsent < n) out.push(`so seqs ${unsent}-${n - 1} were not sent`);
  if (refused.length) {
    out.push(`${refused.length} of ${n} were refused (first: seq ${refused[0].seq}: ${JSON.stringify(refused[0].ack)})`);
  }
  return out.length ? `${label}: ${out.join('; ')}` : '';
}

/** Seqs of the received message:received of stream `tag` in `channelId`, in arrival order. */
export function receivedSeqs(peer, channelId, tag) {
  const prefix = `${tag} `;
  return peer.all('message:received', (m) => m && m.channelId === channelId &&
    typeof m.content === 'string' && m.content.startsWith(prefix))
    .map((m) => Number(m.content.slice(prefix.length)));
}

/**
 * What is wrong with `seqs` (arrival order) as the stream 0..n-1 received once each,
 * in order: '' when nothing, else counts, first missing, first duplicate, first reorder.
 */
export function sequenceProblems(seqs, n) {
  const seen = new Map();
  for (const s of seqs) seen.set(s, (seen.get(s) || 0) + 1);
  const missing = [];
  for (let s = 0; s < n; s++) if (!seen.has(s)) missing.push(s);
  const dups = [...seen.entries()].filter(([, k]) => k > 1).map(([s, k]) => [s, k]).sort((a, b) => a[0] - b[0]);
  const extra = seqs.filter((s) => !(Number.isInteger(s) && s >= 0 && s < n));
  let reorder = null;
  let reorders = 0;
  let max = -1;
  const firstSeen = new Set();
  for (let i = 0; i < seqs.length; i++) {
    const s = seqs[i];
    if (firstSeen.has(s)) continue; // duplicates are counted above
    firstSeen.add(s);
    if (s < max) {
      reorders += 1;
      if (!reorder) reorder = { pos: i, seq: s, after: max };
    }
    max = Math.max(max, s);
  }
  const out = [];
  if (missing.length) {
    // ranges of missing seqs, the first few
    const ranges = [];
    for (const s of missing) {
      const r = ranges[ranges.length - 1];
      if (r && r[1] === s - 1) r[1] = s; else ranges.push([s, s]);
    }
    const shown = ranges.slice(0, 5).map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(', ');
    out.push(`${missing.length} missing (first missing seq ${missing[0]}; missing: ${shown}${ranges.length > 5 ? ', ...' : ''})`);
  }
  if (dups.length) {
    const shown = dups.slice(0, 5).map(([s, k]) => `${s}×${k}`).join(', ');
    out.push(`${dups.length} duplicated (first duplicated seq ${dups[0][0]}; ${shown}${dups.length > 5 ? ', ...' : ''})`);
  }
  if (reorder) {
    out.push(`${reorders} out of order (first at arrival #${reorder.pos}: seq ${reorder.seq} after seq ${reorder.after})`);
  }
  if (extra.length) out.push(`${extra.length} unexpected (e.g. ${JSON.stringify(extra[0])})`);
  if (!out.length) return '';
  return `received ${seqs.length} messages for ${n} sent: ${out.join('; ')}`;
}

/**
 * Wait until `peer` received the whole stream `tag` (n messages), or nothing new
 * came for `idle` ms, or `timeout` passed; then `settle` ms more for duplicates.
 * Resolves the problems ('' if none).
 */
export async function awaitStream(peer, channelId, tag, n,
  { timeout = 20000 * SLOW, idle = 2000 * SLOW, settle = QUIET } = {}) {
  const prefix = `${tag} `;
  const pred = (m) => m && m.channelId === channelId && typeof m.content === 'string' && m.content.startsWith(prefix);
  const deadline = Date.now() + timeout;
  let count = -1;
  let progress = Date.now();
  for (;;) {
    const seqs = receivedSeqs(peer, channelId, tag);
    if (seqs.length !== count) { count = seqs.length; progress = Date.now(); }
    const now = Date.now();
    if (new Set(seqs).size >= n || now >= deadline || now - progress >= idle || !peer.connected) break;
    await peer.waitCount('message:received', pred, count + 1, Math.min(500, deadline - now));
  }
  await sleep(settle);
  const problems = sequenceProblems(receivedSeqs(peer, channelId, tag), n);
  if (!problems) return '';
  return `${peer.label}${peer.connected ? '' : ` (disconnected: ${peer.engineClose || peer.disconnectReason})`}: ${problems}`;
}
