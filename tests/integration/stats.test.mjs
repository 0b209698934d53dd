// The operator endpoints: GET /stats (JSON) and GET /metrics (Prometheus text
// format 0.0.4). The numbers move as socket.io-client users connect (polling,
// websocket, upgrade), join, send and leave, on the memory store and on the
// Redis one; two instances on one Redis count the cluster's users; /metrics
// passes a strict line checker (and Python's prometheus_client parser when it
// is installed: Debian's python3-prometheus-client).

import { after, afterEach, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { io } from 'socket.io-client';
import { AEOLUS_ONLY, finish, makeTest, startDaemon } from './helpers.mjs';
import {
  STORE, SLOW, T, closeAll, connectAs, haveRedis, sleep, startApp, startRedis, uniq,
} from './app-lib.mjs';

const HAVE_REDIS = await haveRedis();
const skip = AEOLUS_ONLY;
const skipRedis = skip || (!HAVE_REDIS && 'redis-server is not installed');

let mem; let red; let redis; let peer; let conf;
const test = makeTest(() => [mem, red, peer, conf]);

before(async () => {
  if (skip) return;
  mem = await startApp();
  if (HAVE_REDIS) {
    redis = await startRedis();
    red = await startApp({ set: { 'redis.url': redis.url, 'redis.prefix': 'stats' } });
  }
});

afterEach(() => closeAll());

after(async () => {
  closeAll();
  await finish([mem, red, peer, conf]);
  if (redis) await redis.stop();
});

// ---------------------------------------------------------------------------
// helpers

async function stats(d) {
  const res = await fetch(`${d.url}/stats`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^application\/json/);
  return res.json();
}

async function metricsText(d) {
  const res = await fetch(`${d.url}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  return res.text();
}

/** Polls /stats until pred(stats) holds; returns those stats or fails with the last. */
async function statsUntil(d, pred, what, timeout = T) {
  const deadline = Date.now() + timeout;
  let s;
  for (;;) {
    s = await stats(d);
    if (pred(s)) return s;
    if (Date.now() > deadline) {
      assert.fail(`timed out waiting for ${what}; /stats: ${JSON.stringify(s)}`);
    }
    await sleep(20);
  }
}

const idle = (d) => statsUntil(d, (s) => s.sessions.total === 0 && s.sockets.total === 0 &&
  s.users.online === 0, 'no session left');

const top = (list, name) => (list.find((e) => e.event === name) || { count: 0 }).count;

/** Events received by the clients, per name. */
function received(clients) {
  const n = {};
  for (const c of clients) for (const e of c.events) n[e.event] = (n[e.event] || 0) + 1;
  return n;
}

// ---------------------------------------------------------------------------
// a strict reader of the text format 0.0.4

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseLabels(text, where) {
  const labels = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf('=', i);
    assert.ok(eq > i, `${where}: label without '='`);
    const name = text.slice(i, eq);
    assert.match(name, LABEL, `${where}: label name '${name}'`);
    assert.equal(text[eq + 1], '"', `${where}: label value not quoted`);
    let v = '';
    let j = eq + 2;
    for (;; j++) {
      assert.ok(j < text.length, `${where}: unterminated label value`);
      const ch = text[j];
      if (ch === '"') break;
      if (ch === '\\') {
        const nx = text[++j];
        assert.ok(nx === '\\' || nx === '"' || nx === 'n', `${where}: bad escape \\${nx}`);
        v += nx === 'n' ? '\n' : nx;
      } else {
        assert.notEqual(ch, '\n', `${where}: newline in a label value`);
        v += ch;
      }
    }
    assert.ok(!(name in labels), `${where}: label ${name} twice`);
    labels[name] = v;
    i = j + 1;
    if (text[i] === ',') i++;
    else assert.equal(i, text.length, `${where}: junk after a label`);
  }
  return labels;
}

/**
 * Parses exposition text strictly: every family has one HELP and one TYPE
 * before its samples, samples belong to the family just declared (histograms:
 * _bucket, _sum, _count), counters end in _total, no series twice, values are
 * numbers, histogram buckets are cumulative and end with +Inf = _count.
 * Returns {name: {type, help, samples: [{name, labels, value}]}}.
 */
function parseMetrics(text) {
  assert.ok(text.endsWith('\n'), 'the text ends with a newline');
  const fams = {};
  const series = new Set();
  let cur = null;
  text.slice(0, -1).split('\n').forEach((line, n) => {
    const where = `line ${n + 1} '${line}'`;
    if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) {
      const [, kind, name, ...rest] = line.split(' ');
      assert.match(name, NAME, where);
      if (kind === 'HELP') {
        assert.ok(!fams[name], `${where}: family declared twice`);
        fams[name] = { help: rest.join(' '), type: null, samples: [] };
        cur = name;
      } else {
        assert.equal(cur, name, `${where}: TYPE not right after its HELP`);
        assert.equal(fams[name].type, null, `${where}: TYPE twice`);
        assert.ok(TYPES.has(rest[0]) && rest.length === 1, `${where}: type`);
        fams[name].type = rest[0];
        if (rest[0] === 'counter') assert.match(name, /_total$/, `${where}: a counter's name ends in _total`);
      }
      return;
    }
    assert.ok(!line.startsWith('#'), `${where}: unknown comment`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `${where}: not a sample`);
    const [, name, labelText, valueText] = m;
    assert.ok(cur && fams[cur].type, `${where}: sample before HELP and TYPE`);
    const fam = fams[cur];
    const ok = fam.type === 'histogram'
      ? [`${cur}_bucket`, `${cur}_sum`, `${cur}_count`].includes(name) : name === cur;
    assert.ok(ok, `${where}: sample of another family than ${cur}`);
    const labels = labelText === undefined ? {} : parseLabels(labelText, where);
    assert.ok(/^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$|^[-+]Inf$|^NaN$/.test(valueText), `${where}: value`);
    const key = name + JSON.stringify(Object.entries(labels).sort());
    assert.ok(!series.has(key), `${where}: series twice`);
    series.add(key);
    fam.samples.push({ name, labels, value: Number(valueText.replace('Inf', 'Infinity')) });
  });
  for (const [name, f] of Object.entries(fams)) {
    assert.ok(f.type, `${name}: no TYPE`);
    if (f.type !== 'histogram') continue;
    const groups = {};
    for (const s of f.samples) {
      const { le, ...rest } = s.labels;
      const g = (groups[JSON.stringify(rest)] ||= { buckets: [], count: null, sum: null });
      if (s.name.endsWith('_bucket')) g.buckets.push([le === '+Inf' ? Infinity : Number(le), s.value]);
      else if (s.name.endsWith('_count')) g.count = s.value;
      else g.sum = s.value;
    }
    for (const [k, g] of Object.entries(groups)) {
      assert.ok(g.buckets.length > 1 && g.count !== null && g.sum !== null, `${name}${k}: incomplete`);
      for (let i = 1; i < g.buckets.length; i++) {
        assert.ok(g.buckets[i][0] > g.buckets[i - 1][0], `${name}${k}: le not increasing`);
        assert.ok(g.buckets[i][1] >= g.buckets[i - 1][1], `${name}${k}: buckets not cumulative`);
      }
      assert.equal(g.buckets.at(-1)[0], Infinity, `${name}${k}: no +Inf bucket`);
      assert.equal(g.buckets.at(-1)[1], g.count, `${name}${k}: +Inf bucket != _count`);
    }
  }
  return fams;
}

/** The value of the sample of family `name` whose labels include `labels`. */
function value(fams, name, labels = {}, sample = name) {
  const f = fams[name];
  assert.ok(f, `no family ${name}`);
  const s = f.samples.find((x) => x.name === sample &&
    Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s ? s.value : undefined;
}

/** A python3 that has prometheus_client, or null. */
const PYTHON = await (async () => {
  for (const py of [process.env.PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean)) {
    const ok = await new Promise((resolve) => {
      execFile(py, ['-c', 'import prometheus_client.parser'], (err) => resolve(!err));
    });
    if (ok) return py;
  }
  return null;
})();

/** Parses text with prometheus_client; resolves {family: [sample names]}. */
function pythonParse(text) {
  const script = [
    'import json, sys',
    'from prometheus_client.parser import text_string_to_metric_families',
    'out = {}',
    'for f in text_string_to_metric_families(sys.stdin.read()):',
    '    out[f.name] = {"type": f.type, "samples": [s.name for s in f.samples]}',
    'print(json.dumps(out))',
  ].join('\n');
  return new Promise((resolve, reject) => {
    const p = execFile(PYTHON, ['-c', script], (err, stdout, stderr) => {
      if (err) reject(new Error(`prometheus_client could not parse /metrics: ${stderr}`));
      else resolve(JSON.parse(stdout));
    });
    p.stdin.end(text);
  });
}

const FAMILIES = [
  'aeolus_info', 'aeolus_uptime_seconds', 'aeolus_http_connections', 'aeolus_websocket_connections',
  'aeolus_connections', 'aeolus_sessions', 'aeolus_sessions_opened_total', 'aeolus_sockets',
  'aeolus_rooms', 'aeolus_users', 'aeolus_users_by_role', 'aeolus_events_in_total',
  'aeolus_events_out_total', 'aeolus_api_requests_total', 'aeolus_store_latency_seconds',
  'aeolus_store_errors_total', 'aeolus_process_cpu_seconds_total',
  'aeolus_process_resident_memory_bytes', 'aeolus_process_open_fds', 'aeolus_process_max_fds',
  'aeolus_process_start_time_seconds',
];

// ---------------------------------------------------------------------------
// the tests, on each store

const variants = [
  { label: 'memory store', d: () => mem, store: STORE, skip },
  { label: 'Redis store', d: () => red, store: 'redis', skip: skipRedis },
];

for (const v of variants) {
  test(`${v.label}: /stats moves as clients connect (polling, websocket, upgrade), join, send and leave`, { skip: v.skip, timeout: 15000 * SLOW }, async () => {
    const d = v.d();
    const s0 = await idle(d);
    const m0 = parseMetrics(await metricsText(d));
    assert.equal(s0.pid, d.proc.pid);
    assert.equal(s0.profile, 'aeolus');
    assert.match(s0.instance, /^[A-Za-z0-9_-]{20}$/);
    assert.equal(s0.store.name, v.store);
    assert.equal(s0.store.redis, v.store === 'redis' ? 'up' : null);
    assert.ok(s0.uptime_s > 0);

    const alice = await connectAs(d, 'alice', { role: 'admin' });
    const alice2 = await connectAs(d, 'alice', { role: 'admin' }, { label: 'alice#2' });
    const bob = await connectAs(d, 'bob', { role: 'member' }, { transports: ['polling'] });
    const carol = await connectAs(d, 'carol', {}, { transports: ['polling', 'websocket'] });
    const all = [alice, alice2, bob, carol];
    let s = await statsUntil(d, (x) => x.sessions.websocket === 3 && x.sessions.polling === 1 &&
      x.users.online === 3 && x.users.cluster === 3, 'four sessions, three users (carol upgraded)');
    assert.equal(s.sessions.total, 4);
    assert.equal(s.sessions.opened_total - s0.sessions.opened_total, 4);
    assert.equal(s.connections.websocket, 3);
    assert.ok(s.connections.http >= 1);
    assert.deepEqual(s.sockets, { total: 4, by_namespace: { '/': 4 } });
    assert.deepEqual(s.users.by_role, { admin: 1, member: 1, none: 1 });
    assert.equal(s.users.cluster_error, null);
    assert.equal(s.rooms.total, 3);        // the personal rooms user:alice, user:bob, user:carol

    const ch = uniq('stats');
    const before = await stats(d);
    for (const c of [alice, bob, carol]) await c.ok('channel:join', { channelId: ch });
    for (let i = 0; i < 3; i++) await alice.ok('message:send', { channelId: ch, content: `m${i}` });
    await bob.ok('message:send', { channelId: ch, content: 'hi' });
    await carol.ok('ping', {});
    s = await stats(d);
    assert.equal(s.rooms.total, 4);
    assert.equal(s.events.in_total - before.events.in_total, 3 + 4 + 1);
    assert.equal(top(s.events.top_in, 'channel:join') - top(before.events.top_in, 'channel:join'), 3);
    assert.equal(top(s.events.top_in, 'message:send') - top(before.events.top_in, 'message:send'), 4);
    assert.equal(top(s.events.top_in, 'ping') - top(before.events.top_in, 'ping'), 1);
    assert.ok(s.events.per_second.in >= 0.8, JSON.stringify(s.events.per_second));
    assert.equal(s.events.per_second.window_s, 10);
    assert.equal(s.events.last_seconds.in.length, 10);
    assert.equal(s.events.last_seconds.out.length, 10);
    assert.ok(s.events.last_seconds.in.reduce((a, b) => a + b) >= 8);

    // Every event that went out is one a client received, counted by name.
    const got = received(all);
    assert.ok(got['message:received'] >= 4, JSON.stringify(got));
    s = await statsUntil(d, (x) => x.events.out_total - s0.events.out_total ===
      Object.values(received(all)).reduce((a, b) => a + b, 0), 'events out = events received');
    const fams = parseMetrics(await metricsText(d));
    for (const [name, n] of Object.entries(received(all))) {
      assert.equal(value(fams, 'aeolus_events_out_total', { event: name }) -
        value(m0, 'aeolus_events_out_total', { event: name }), n, `events out: ${name}`);
    }

    // Leaving: the channel's room goes with its last member.
    for (const c of [alice, bob]) await c.ok('channel:leave', { channelId: ch });
    s = await stats(d);
    assert.equal(s.rooms.total, 4);
    await carol.ok('channel:leave', { channelId: ch });
    s = await stats(d);
    assert.equal(s.rooms.total, 3);

    // Going: a user is online while one of its sockets is.
    alice.close();
    s = await statsUntil(d, (x) => x.sockets.total === 3, 'alice\'s first tab gone');
    assert.equal(s.users.online, 3);
    assert.equal(s.users.by_role.admin, 1);
    alice2.close();
    bob.close();
    s = await statsUntil(d, (x) => x.sockets.total === 1 && x.users.cluster === 1,
      'only carol left, in the store too');
    assert.deepEqual(s.users.by_role, { none: 1 });
    assert.deepEqual([s.sessions.polling, s.sessions.websocket], [0, 1]);
    carol.close();
    s = await idle(d);
    assert.deepEqual(s.users.by_role, {});
    assert.equal(s.rooms.total, 0);
    assert.equal(s.connections.websocket, 0);
  });

  test(`${v.label}: /metrics is valid text format 0.0.4 with every family, agreeing with /stats`, { skip: v.skip }, async () => {
    const d = v.d();
    await idle(d);
    const a = await connectAs(d, 'mallory', { role: 'we"ird\\role' });
    const b = await connectAs(d, 'trent', {}, { transports: ['polling'] });
    await a.ok('message:send', { channelId: uniq('m'), content: 'x' }).catch(() => {});
    await a.request('no:such:event', {});
    await statsUntil(d, (x) => x.sockets.total === 2 && x.users.cluster === 2, 'two sockets');
    const text = await metricsText(d);
    const fams = parseMetrics(text);
    for (const f of FAMILIES) assert.ok(fams[f], `family ${f} missing`);
    assert.equal(fams.aeolus_store_latency_seconds.type, 'histogram');
    assert.equal(fams.aeolus_events_in_total.type, 'counter');
    assert.equal(value(fams, 'aeolus_connections', { transport: 'websocket' }), 1);
    assert.equal(value(fams, 'aeolus_connections', { transport: 'polling' }), 1);
    assert.equal(value(fams, 'aeolus_sessions'), 2);
    assert.equal(value(fams, 'aeolus_sockets', { namespace: '/' }), 2);
    assert.equal(value(fams, 'aeolus_rooms'), 2);
    assert.equal(value(fams, 'aeolus_users'), 2);
    assert.equal(value(fams, 'aeolus_users_by_role', { role: 'we"ird\\role' }), 1);
    assert.equal(value(fams, 'aeolus_users_by_role', { role: 'none' }), 1);
    assert.ok(value(fams, 'aeolus_events_in_total', { event: 'message:send' }) >= 1);
    assert.ok(value(fams, 'aeolus_events_in_total', { event: 'other' }) >= 1);
    // The label set is the vocabulary plus other, whatever the clients send.
    const names = fams.aeolus_events_in_total.samples.map((s) => s.labels.event);
    assert.ok(!names.includes('no:such:event'));
    assert.ok(names.includes('channel:join') && names.includes('other'));
    assert.ok(value(fams, 'aeolus_store_latency_seconds', { op: 'user_add' },
      'aeolus_store_latency_seconds_count') >= 2);
    assert.equal(value(fams, 'aeolus_store_errors_total', { op: 'user_add' }), 0);
    assert.equal(value(fams, 'aeolus_redis_up'), v.store === 'redis' ? 1 : undefined);
    const info = fams.aeolus_info.samples[0].labels;
    assert.equal(info.store, v.store);
    assert.equal(info.profile, 'aeolus');
    assert.ok(value(fams, 'aeolus_process_resident_memory_bytes') > 1e6);
    assert.ok(value(fams, 'aeolus_process_open_fds') > 3);
    assert.ok(value(fams, 'aeolus_process_max_fds') >= value(fams, 'aeolus_process_open_fds'));
    assert.ok(value(fams, 'aeolus_process_cpu_seconds_total') > 0);
    const start = value(fams, 'aeolus_process_start_time_seconds');
    assert.ok(start > Date.now() / 1000 - 600 && start <= Date.now() / 1000);
    if (PYTHON) {
      const py = await pythonParse(text);
      assert.equal(py.aeolus_store_latency_seconds.type, 'histogram');
      assert.equal(py.aeolus_events_in.type, 'counter');
      assert.ok(py.aeolus_store_latency_seconds.samples.includes('aeolus_store_latency_seconds_bucket'));
    }
    a.close();
    b.close();
    await idle(d);
  });
}

test('PYTHON: prometheus_client is there to parse /metrics too', { skip: skip || (!PYTHON && 'python3 with prometheus_client not found (python3-prometheus-client)') }, () => {
  assert.ok(PYTHON);
});

test('Redis store: /stats counts the cluster\'s users from the store, its own users as online', { skip: skipRedis }, async () => {
  peer = await startApp({ set: { 'redis.url': redis.url, 'redis.prefix': 'stats' } });
  await idle(red);
  const a = await connectAs(red, 'ann');
  const b = await connectAs(peer, 'ben');
  const c = await connectAs(peer, 'cat');
  let s = await statsUntil(red, (x) => x.users.cluster === 3, 'three users in the cluster');
  assert.equal(s.users.online, 1);
  assert.equal(s.cluster.enabled, true);
  assert.equal(s.cluster.up, true);
  s = await stats(peer);
  assert.equal(s.users.online, 2);
  assert.equal(s.users.cluster, 3);
  assert.notEqual(s.instance, (await stats(red)).instance);
  // A message to a channel with members on both: each instance counts what
  // went to its own sockets (from the bus too).
  const ch = uniq('cl');
  for (const x of [a, b, c]) await x.ok('channel:join', { channelId: ch });
  const m0 = await Promise.all([red, peer].map(async (x) => parseMetrics(await metricsText(x))));
  for (const x of [a, b, c]) x.clear();
  await a.ok('message:send', { channelId: ch, content: 'across' });
  await b.next('message:received');
  await c.next('message:received');
  await sleep(100 * SLOW);
  const got = [a.all('message:received').length, b.all('message:received').length + c.all('message:received').length];
  for (const [i, x] of [red, peer].entries()) {
    const m = parseMetrics(await metricsText(x));
    const sent = value(m, 'aeolus_events_out_total', { event: 'message:received' }) -
      value(m0[i], 'aeolus_events_out_total', { event: 'message:received' });
    assert.equal(sent, got[i], `instance ${i}: message:received sent`);
  }
  assert.equal(got[1], 2);
  for (const x of [a, b, c]) x.close();
  await statsUntil(red, (x) => x.users.cluster === 0, 'nobody left');
  const p = peer;
  peer = null;
  await p.stop();
});

test('Redis store: with Redis gone, /stats answers at once without the cluster count, /metrics says redis_up 0', { skip: skipRedis, timeout: 15000 * SLOW }, async () => {
  const r = await startRedis();
  const d = await startApp({ set: { 'redis.url': r.url } });
  try {
    let s = await stats(d);
    assert.equal(s.users.cluster, 0);
    await r.stop();
    s = await statsUntil(d, (x) => x.store.redis === 'down', 'redis down');
    const t0 = Date.now();
    s = await stats(d);
    assert.ok(Date.now() - t0 < 1500 * SLOW);
    assert.equal(s.users.cluster, null);
    assert.match(s.users.cluster_error, /^store (unavailable|timeout)$/);
    const fams = parseMetrics(await metricsText(d));
    assert.equal(value(fams, 'aeolus_redis_up'), 0);
    assert.ok(value(fams, 'aeolus_store_errors_total', { op: 'users_count' }) >= 1);
  } finally {
    await d.stop();
  }
});

test('without a profile (conformance): /stats and /metrics, events counted as other', { skip }, async () => {
  conf = await startDaemon();
  const s0 = await stats(conf);
  assert.equal(s0.store.name, null);
  assert.equal(s0.users.cluster, null);
  assert.equal(s0.users.cluster_error, 'no store');
  assert.equal(s0.instance, null);
  const socket = io(`${conf.url}/`, { forceNew: true, reconnection: false, transports: ['websocket'] });
  try {
    await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('connect_error', reject); });
    const back = new Promise((resolve) => socket.once('message-back', resolve));
    socket.emit('message', 1, '2');
    await back;
    const s = await statsUntil(conf, (x) => top(x.events.top_in, 'other') === 1, 'one event in');
    assert.deepEqual(s.sockets.by_namespace, { '/': 1, '/custom': 0 });
    assert.ok(top(s.events.top_out, 'other') >= 1);
    const fams = parseMetrics(await metricsText(conf));
    assert.equal(value(fams, 'aeolus_sockets', { namespace: '/' }), 1);
    assert.equal(value(fams, 'aeolus_sockets', { namespace: '/custom' }), 0);
    assert.deepEqual(fams.aeolus_events_in_total.samples.map((x) => x.labels.event), ['other']);
    assert.equal(value(fams, 'aeolus_redis_up'), undefined);
    assert.equal(fams.aeolus_store_latency_seconds.samples.length, 0);
  } finally {
    socket.disconnect();
  }
});

test('aeolus_api_requests_total counts the HTTP API\'s answers by status', { skip }, async () => {
  const secret = 'stats-test-server-secret-0123456789';
  const d = await startApp({ set: { 'api.enable': 'yes', 'api.secret': secret } });
  try {
    const call = (path, body, auth = secret) => fetch(`${d.url}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...(auth ? { Authorization: `Bearer ${auth}` } : {}) },
      body: JSON.stringify(body),
    });
    let fams = parseMetrics(await metricsText(d));
    assert.equal(fams.aeolus_api_requests_total.samples.length, 0);
    assert.equal((await call('/api/emit', { event: 'news', data: 1 })).status, 200);
    assert.equal((await call('/api/emit', { event: 'news', data: 2 })).status, 200);
    assert.equal((await call('/api/emit', { event: 'news' }, 'wrong')).status, 401);
    assert.equal((await call('/api/nothing', {})).status, 404);
    fams = parseMetrics(await metricsText(d));
    const by = Object.fromEntries(fams.aeolus_api_requests_total.samples.map((x) => [x.labels.status, x.value]));
    assert.deepEqual(by, { 200: 2, 401: 1, 404: 1 });
  } finally {
    await d.stop();
  }
});

test('/stats and /metrics: exact paths, GET and HEAD only', { skip }, async () => {
  for (const p of ['/stats/x', '/statsx', '/metrics/', '/metricsx']) {
    const res = await fetch(`${mem.url}${p}`);
    assert.equal(res.status, 404, p);
    assert.equal((await res.json()).error, 'not_found');
  }
  for (const p of ['/stats', '/metrics']) {
    const res = await fetch(`${mem.url}${p}`, { method: 'POST', body: 'x' });
    assert.equal(res.status, 405, p);
    const head = await fetch(`${mem.url}${p}`, { method: 'HEAD' });
    assert.equal(head.status, 200, p);
  }
  // Many at once: each answered (they share one count from the store).
  const all = await Promise.all(Array.from({ length: 20 }, () => stats(mem)));
  assert.ok(all.every((s) => s.users.cluster_error === null));
});
