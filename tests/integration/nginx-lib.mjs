// Helpers for nginx in front of aeolusd instances and aeolus-api
// (nginx.test.mjs, bench/api-nginx.mjs): finding nginx and aeolus-api,
// child processes, the nginx configuration made of the shipped files, and
// calls through nginx.
//
// Environment: NGINX names the nginx binary (default /usr/sbin/nginx, else the
// one on PATH); AEOLUS_API the aeolus-api binary (default: next to AEOLUSD).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { daemonPath, withTimeout, sleep, REPO_ROOT, AEOLUS_ONLY, SLOW } from './helpers.mjs';
import { haveRedis } from './app-lib.mjs';

function findNginx() {
  if (process.env.NGINX) return process.env.NGINX;
  if (fs.existsSync('/usr/sbin/nginx')) return '/usr/sbin/nginx';
  for (const dir of (process.env.PATH || '').split(':')) {
    if (dir && fs.existsSync(path.join(dir, 'nginx'))) return path.join(dir, 'nginx');
  }
  return null;
}

export const NGINX = findNginx();
export const API_BIN = path.resolve(process.env.AEOLUS_API || path.join(path.dirname(daemonPath()), 'aeolus-api'));

/** Why the file is skipped, or false. */
export async function skipReason() {
  if (AEOLUS_ONLY) return AEOLUS_ONLY;
  if (!NGINX) return 'nginx is not installed';
  // nginx -V writes to stderr
  const r = spawnSync(NGINX, ['-V'], { encoding: 'utf8' });
  const v = `${r.stdout || ''}${r.stderr || ''}`;
  if (!/nginx version/.test(v)) return `${NGINX} -V did not run`;
  if (/--without-http_fastcgi_module|--without-http_scgi_module/.test(v)) return 'nginx lacks its fastcgi or scgi module';
  if (!(await haveRedis())) return 'redis-server is not installed';
  if (!fs.existsSync(API_BIN)) return `aeolus-api not found at ${API_BIN}: build it first or set AEOLUS_API`;
  return false;
}

// ---------------------------------------------------------------------------
// Processes

const procs = new Set();
process.on('exit', () => { for (const p of procs) { try { p.proc.kill('SIGKILL'); } catch { /* gone */ } } });

/** A child process whose output is kept for failure messages. */
export class Proc {
  constructor(label, cmd, args, { env = process.env, stdio } = {}) {
    this.label = label;
    this.out = '';
    this.proc = spawn(cmd, args, { env, stdio: stdio || ['ignore', 'pipe', 'pipe'] });
    this.exit = null;
    procs.add(this);
    for (const s of [this.proc.stdout, this.proc.stderr]) if (s) s.on('data', (c) => { this.out += c; });
    this.exited = new Promise((resolve) => {
      this.proc.on('error', (e) => { this.out += `\n[spawn error] ${e.message}`; });
      this.proc.on('exit', (code, signal) => { this.exit = { code, signal }; procs.delete(this); resolve(this.exit); });
    });
  }

  get alive() { return this.exit === null; }

  describe() {
    const tail = this.out.length > 6000 ? `...${this.out.slice(-6000)}` : this.out;
    return `${this.label} (${this.alive ? 'running' : `exited ${JSON.stringify(this.exit)}`})\n--- output ---\n${tail}\n--------------`;
  }

  /** Sends sig and asserts a clean exit (status 0) within ms. */
  async stop(sig = 'SIGTERM', ms = 12000 * SLOW) {
    if (!this.alive) throw new Error(`${this.label} had exited already: ${this.describe()}`);
    this.proc.kill(sig);
    let res;
    try {
      res = await withTimeout(this.exited, ms, `${this.label} to exit after ${sig}`);
    } catch (e) {
      this.proc.kill('SIGKILL');
      await this.exited;
      throw new Error(`${e.message}: ${this.describe()}`);
    }
    if (res.code !== 0) throw new Error(`${this.label} did not exit cleanly after ${sig}: ${this.describe()}`);
  }
}

/**
 * The nginx configuration made of the shipped files: aeolus.conf with its
 * listen line, the upstream's servers and the API include replaced, and the
 * snippet with its fastcgi_pass/scgi_pass address replaced. Every
 * replacement must find what it replaces.
 */
export function writeConfig(dir, { mode, port, upstreams, apiAddr, workers = 1 }) {
  const once = (text, re, by, what) => {
    let n = 0;
    const out = text.replace(re, (...m) => { n += 1; return typeof by === 'function' ? by(...m) : by; });
    assert.ok(n >= 1, `the shipped nginx configuration no longer has ${what}`);
    return out;
  };
  let main = fs.readFileSync(path.join(REPO_ROOT, 'etc', 'nginx', 'aeolus.conf'), 'utf8');
  main = once(main, /^(\s*)listen 80;$/m, (m, ind) => `${ind}listen 127.0.0.1:${port};`, 'listen 80');
  main = once(main, /(upstream aeolus \{\n)((?:[ \t]*server [^\n]+\n)+)/,
    (m, head) => head + upstreams.map((p) => `\tserver 127.0.0.1:${p};\n`).join(''), 'the upstream aeolus servers');
  const snippet = mode === 'fcgi' ? 'aeolus-api-fastcgi.conf' : 'aeolus-api-scgi.conf';
  let found = 0;
  main = main.replace(/^(\s*)#?include \/etc\/nginx\/snippets\/(aeolus-api-(?:fastcgi|scgi)\.conf);$/gm, (m, ind, name) => {
    found += 1;
    return name === snippet ? `${ind}include ${path.join(dir, name)};` : `${ind}#include ${name};`;
  });
  assert.equal(found, 2, 'aeolus.conf names both API snippets');
  let snip = fs.readFileSync(path.join(REPO_ROOT, 'etc', 'nginx', snippet), 'utf8');
  const directive = mode === 'fcgi' ? 'fastcgi_pass' : 'scgi_pass';
  let passes = 0;
  snip = snip.replace(new RegExp(`^(\\s*)${directive} [^;]+;`, 'gm'), (m, ind) => { passes += 1; return `${ind}${directive} ${apiAddr};`; });
  assert.equal(passes, 2, `${snippet} passes /chat/ and /api/`);
  assert.match(snip, new RegExp(`include ${mode === 'fcgi' ? 'fastcgi' : 'scgi'}_params;`));
  fs.writeFileSync(path.join(dir, snippet), snip);
  fs.writeFileSync(path.join(dir, 'aeolus.conf'), main);
  for (const f of ['fastcgi_params', 'scgi_params']) fs.copyFileSync(path.join('/etc/nginx', f), path.join(dir, f));
  const t = path.join(dir, 'tmp');
  fs.mkdirSync(t, { recursive: true });
  fs.writeFileSync(path.join(dir, 'nginx.conf'), `
${process.getuid && process.getuid() === 0 ? 'user root;' : ''}
worker_processes ${workers};
events { worker_connections 1024; }
http {
	log_format upstream '$request_method $request_uri $upstream_addr $status';
	access_log ${path.join(dir, 'access.log')} upstream;
	client_body_temp_path ${t}/body;
	proxy_temp_path ${t}/proxy;
	fastcgi_temp_path ${t}/fastcgi;
	scgi_temp_path ${t}/scgi;
	uwsgi_temp_path ${t}/uwsgi;
	include ${path.join(dir, 'aeolus.conf')};
}
`);
}

/** nginx on dir/nginx.conf, serving once it answers on port. */
export async function startNginx(dir, port) {
  const ng = new Proc('nginx', NGINX, ['-p', dir, '-c', path.join(dir, 'nginx.conf'),
    '-g', `daemon off; pid ${path.join(dir, 'nginx.pid')}; error_log stderr;`]);
  const deadline = Date.now() + 5000 * SLOW;
  for (;;) {
    if (!ng.alive) throw new Error(`nginx did not start: ${ng.describe()}`);
    try {
      await new Promise((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(); });
        s.on('error', reject);
      });
      break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`nginx does not listen on ${port}: ${ng.describe()}`);
    await sleep(50);
  }
  ng.url = `http://127.0.0.1:${port}`;
  ng.dir = dir;
  return ng;
}

/** A call through nginx, with Bearer secret unless null. Resolves {status, body (parsed JSON or text), headers}. */
export async function call(ng, method, pathq, body, { secret = null, headers = {} } = {}) {
  const h = { ...headers };
  if (secret !== null) h.authorization = `Bearer ${secret}`;
  const init = { method, headers: h, signal: AbortSignal.timeout(10000 * SLOW) };
  if (body !== undefined) {
    init.body = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    h['content-type'] = 'application/json';
  }
  const res = await fetch(`${ng.url}${pathq}`, init);
  const text = await res.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed, headers: res.headers };
}
