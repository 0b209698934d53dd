// api-nginx.mjs -- the backend HTTP API through nginx, as deployed with the
// shipped configuration (etc/nginx/): Redis, two aeolusd instances and
// aeolus-api behind nginx, over FastCGI (a unix socket) and over SCGI (TCP,
// or a unix socket with --scgi-unix 1).
//
// For each protocol it measures
//   - requests per second of POST /chat/message through nginx, from a load
//     loop of --concurrency requests in flight on keep-alive connections,
//     for --seconds (into a channel with no member): node's http client, or
//     ab (apache2-utils) with --load ab;
//   - the latency from the start of a POST /chat/message to the
//     message:received event of a socket.io-client connected to a channel
//     through nginx (WebSocket), --samples posts at --rate per second, one
//     at a time: p50, p90, p99, max; and the POST's own round trip.
//
//   node bench/api-nginx.mjs [--mode fcgi|scgi|both] [--load node|ab] [--seconds 10] [--concurrency 32]
//        [--fcgi-threads 8] [--scgi-unix 0|1] [--nginx-workers 1] [--samples 2000] [--rate 200]
//
// Run from the top of a built tree (src/aeolusd, src/aeolus-api; AEOLUSD and
// AEOLUS_API name others) with the test dependencies installed (npm ci in
// tests/), redis-server and nginx. The last line of each protocol is
// machine-readable: RESULT mode=... rps=... p50_ms=... p99_ms=...

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { freePort, finish, sleep } from '../tests/integration/helpers.mjs';
import { startApp, startRedis, SECRET, PROFILE_DIR } from '../tests/integration/app-lib.mjs';
import { connectPeer, closePeers } from '../tests/integration/cluster-lib.mjs';
import { API_BIN, Proc, skipReason, writeConfig, startNginx, call } from '../tests/integration/nginx-lib.mjs';

const API_SECRET = 'bench-server-secret-0123456789';

function options() {
  const o = { mode: 'both', load: 'node', 'scgi-unix': 0, seconds: 10, concurrency: 32, 'fcgi-threads': 8, 'nginx-workers': 1, samples: 2000, rate: 200 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in o) || i + 1 >= argv.length) {
      console.error(`usage: node bench/api-nginx.mjs [--mode fcgi|scgi|both] [--load node|ab] [--seconds S]
       [--concurrency N] [--fcgi-threads N] [--scgi-unix 0|1] [--nginx-workers N] [--samples N] [--rate N]`);
      process.exit(2);
    }
    o[k] = k === 'mode' || k === 'load' ? argv[++i] : Number(argv[++i]);
  }
  return o;
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** POST body to url on agent; resolves the status. */
function post(agent, url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST', agent,
      headers: { authorization: `Bearer ${API_SECRET}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The same load from ab (apache2-utils): -k, --concurrency, --seconds. */
function throughputAb(ng, o, dir) {
  const bodyFile = path.join(dir, 'body.json');
  fs.writeFileSync(bodyFile, JSON.stringify({ channelId: 'bench-nobody', senderId: 'bench', content: 'hello from the backend' }));
  const r = spawnSync('ab', ['-k', '-q', '-c', String(o.concurrency), '-t', String(o.seconds), '-n', '100000000',
    '-p', bodyFile, '-T', 'application/json', '-H', `Authorization: Bearer ${API_SECRET}`, `${ng.url}/chat/message`],
  { encoding: 'utf8' });
  const rps = /Requests per second:\s+([\d.]+)/.exec(r.stdout || '');
  const done = /Complete requests:\s+(\d+)/.exec(r.stdout || '');
  const bad = /Non-2xx responses:\s+(\d+)/.exec(r.stdout || '');
  // ab counts an answer whose length differs from the first one as failed
  // ("Length"): the message ids grow. Only the other kinds are failures.
  const failed = /\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)/.exec(r.stdout || '');
  if (!rps) throw new Error(`ab did not run: ${r.error ? r.error.message : ''}${r.stderr}${r.stdout}`);
  return { rps: Number(rps[1]), n: Number(done[1]), statuses: { non2xx: bad ? Number(bad[1]) : 0, failed: failed ? Number(failed[1]) + Number(failed[2]) + Number(failed[3]) : 0 } };
}

async function throughput(ng, o) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
  const url = `${ng.url}/chat/message`;
  const body = JSON.stringify({ channelId: 'bench-nobody', senderId: 'bench', content: 'hello from the backend' });
  const statuses = {};
  let n = 0;
  // warm-up
  await Promise.all(Array.from({ length: o.concurrency }, () => post(agent, url, body)));
  const t0 = performance.now();
  const end = t0 + o.seconds * 1000;
  await Promise.all(Array.from({ length: o.concurrency }, async () => {
    while (performance.now() < end) {
      const s = await post(agent, url, body);
      statuses[s] = (statuses[s] || 0) + 1;
      n += 1;
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  agent.destroy();
  return { rps: n / secs, n, statuses };
}

async function latency(ng, o) {
  const peer = await connectPeer({ url: ng.url, label: 'nginx' }, 'listener', { transports: ['websocket'] });
  const ch = `bench-${process.pid}`;
  await peer.ok('channel:join', { channelId: ch });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const url = `${ng.url}/chat/message`;
  const waiting = new Map();
  peer.socket.on('message:received', (m) => {
    const w = waiting.get(m.content);
    if (w) { waiting.delete(m.content); w(performance.now()); }
  });
  const e2e = [];
  const rtt = [];
  const gap = 1000 / o.rate;
  for (let i = 0; i < o.samples + 50; i++) {
    const content = `lat ${i}`;
    const got = new Promise((resolve) => waiting.set(content, resolve));
    const t0 = performance.now();
    const status = await post(agent, url, JSON.stringify({ channelId: ch, senderId: 'bench', content }));
    const t1 = performance.now();
    if (status !== 200) throw new Error(`POST answered ${status}`);
    const t2 = await Promise.race([got, sleep(5000).then(() => null)]);
    if (t2 === null) throw new Error(`no message:received for ${content}`);
    if (i >= 50) {             // the first ones warm up
      e2e.push(t2 - t0);
      rtt.push(t1 - t0);
    }
    const left = t0 + gap - performance.now();
    if (left > 0) await sleep(left);
  }
  agent.destroy();
  closePeers();
  e2e.sort((a, b) => a - b);
  rtt.sort((a, b) => a - b);
  return { e2e, rtt };
}

async function main() {
  const o = options();
  const why = await skipReason();
  if (why) { console.error(`api-nginx: ${why}`); process.exit(1); }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aeolus-bench-nginx-'));
  fs.chmodSync(tmp, 0o755);
  const redis = await startRedis();
  const prefix = `bench${process.pid}`;
  const set = { 'redis.url': redis.url, 'redis.prefix': prefix, 'limits.event_rate': 0 };
  const daemons = [await startApp({ set }), await startApp({ set })];
  const modes = o.mode === 'both' ? ['fcgi', 'scgi'] : [o.mode];
  console.log(`${os.cpus().length} CPUs (${os.cpus()[0].model}); nginx workers ${o['nginx-workers']}; ` +
    `aeolus-api ${API_BIN}`);
  try {
    for (const mode of modes) {
      const dir = fs.mkdtempSync(path.join(tmp, `${mode}-`));
      fs.chmodSync(dir, 0o755);
      const unix = mode === 'fcgi' || o['scgi-unix'];
      const addr = unix ? `unix:${path.join(dir, 'api.sock')}` : `127.0.0.1:${await freePort()}`;
      const api = new Proc('aeolus-api', API_BIN, [
        '--profile', 'aeolus', '--log-level', 'warn', '--set', `server.profile_dir=${PROFILE_DIR}`,
        '--set', `redis.url=${redis.url}`, '--set', `redis.prefix=${prefix}`,
        mode === 'fcgi' ? '--fcgi' : '--scgi', addr,
        ...(mode === 'fcgi' ? ['--fcgi-threads', String(o['fcgi-threads'])] : []),
      ], { env: { PATH: process.env.PATH, SERVER_SECRET: API_SECRET, JWT_SECRET_KEY: SECRET } });
      const port = await freePort();
      writeConfig(dir, { mode, port, upstreams: daemons.map((d) => d.port), apiAddr: addr, workers: o['nginx-workers'] });
      // no access log while measuring
      const conf = path.join(dir, 'nginx.conf');
      fs.writeFileSync(conf, fs.readFileSync(conf, 'utf8').replace(/access_log [^;]+;/, 'access_log off;'));
      const ng = await startNginx(dir, port);
      try {
        for (let i = 0; ; i++) {
          const r = await call(ng, 'GET', '/api/presence', undefined, { secret: API_SECRET }).catch(() => ({ status: 0 }));
          if (r.status === 200) break;
          if (i > 200) throw new Error(`the API does not answer: ${api.describe()}`);
          await sleep(50);
        }
        const label = mode === 'fcgi' ? `FastCGI (unix socket, ${o['fcgi-threads']} threads)`
          : `SCGI (${unix ? 'unix socket' : 'TCP'})`;
        const t = o.load === 'ab' ? throughputAb(ng, o, dir) : await throughput(ng, o);
        console.log(`${label}: ${t.rps.toFixed(0)} requests/s (${t.n} in ${o.seconds} s, ${o.concurrency} in flight from ${o.load}; statuses ${JSON.stringify(t.statuses)})`);
        const l = await latency(ng, o);
        const f = (v) => v.toFixed(2);
        console.log(`${label}: POST to message:received over ${l.e2e.length} at ${o.rate}/s: ` +
          `p50 ${f(percentile(l.e2e, 50))} ms, p90 ${f(percentile(l.e2e, 90))} ms, p99 ${f(percentile(l.e2e, 99))} ms, ` +
          `max ${f(l.e2e[l.e2e.length - 1])} ms; the POST's round trip p50 ${f(percentile(l.rtt, 50))} ms, p99 ${f(percentile(l.rtt, 99))} ms`);
        console.log(`RESULT mode=${mode} rps=${t.rps.toFixed(0)} p50_ms=${f(percentile(l.e2e, 50))} ` +
          `p99_ms=${f(percentile(l.e2e, 99))} post_p50_ms=${f(percentile(l.rtt, 50))} post_p99_ms=${f(percentile(l.rtt, 99))}`);
      } finally {
        await ng.stop('SIGTERM').catch((e) => console.error(e.message));
        await api.stop().catch((e) => console.error(e.message));
      }
    }
  } finally {
    closePeers();
    await finish(daemons).catch((e) => console.error(e.message));
    await redis.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
