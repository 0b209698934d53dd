// Runs python_client.py (python-socketio client) against the daemon, one test per transport mode.

import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDaemon, makeTest, withTimeout, finish, SLOW } from './helpers.mjs';

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'python_client.py');

/** A Python interpreter that can import socketio (env PYTHON first), or null. */
function findPython() {
  const candidates = [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean);
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import socketio, engineio, websocket, requests'], { stdio: 'ignore' });
    if (r.status === 0) return py;
  }
  return null;
}

const PYTHON = findPython();
const SKIP = PYTHON ? false : 'python3 with socketio, websocket and requests modules not found (python3-socketio, python3-websocket)';

let d;
const test = makeTest(() => [d]);

before(async () => {
  if (!SKIP) d = await startDaemon();
});

after(() => finish([d], d));

/** Start the script; returns {proc, done} where done resolves {code, signal, out}. */
function runPython(mode) {
  const proc = spawn(PYTHON, [SCRIPT, d.url, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (c) => { out += c; });
  proc.stderr.on('data', (c) => { out += c; });
  const done = new Promise((resolve) => {
    proc.on('close', (code, signal) => resolve({ code, signal, out }));
  });
  return { proc, done };
}

for (const mode of ['upgrade', 'polling', 'websocket']) {
  test(`python-socketio client, ${mode}`, { skip: SKIP, timeout: 30000 * SLOW }, async () => {
    const { proc, done } = runPython(mode);
    let res;
    try {
      res = await withTimeout(done, 25000 * SLOW, `python client (${mode})`);
    } catch (e) {
      proc.kill('SIGKILL');
      throw e;
    }
    assert.equal(res.code, 0, `python client failed (exit ${res.code}, signal ${res.signal}):\n${res.out}`);
    assert.match(res.out, / 0 failed/);
  });
}
