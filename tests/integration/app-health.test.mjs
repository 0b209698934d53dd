// GET /health names the store and answers 503 while the Redis it uses is away.
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { AEOLUS_ONLY, finish, makeTest } from './helpers.mjs';
import { STORE, haveRedis, sleep, startApp, startRedis } from './app-lib.mjs';

const skip = AEOLUS_ONLY || (!(await haveRedis()) && 'redis-server is not installed');
let mem; let red; let redis;
const test = makeTest(() => [mem, red]);

before(async () => {
  if (skip) return;
  redis = await startRedis();
  mem = await startApp();
  red = await startApp({ env: { REDIS_URL: redis.url } });
});
after(async () => {
  await finish([mem, red]);
  if (redis) await redis.stop();
});

async function health(d) {
  const res = await fetch(`${d.url}/health`);
  return { status: res.status, body: await res.json() };
}

test('with no Redis configured the store is in memory (with AEOLUS_TEST_STORE=redis: Redis)', { skip }, async () => {
  const h = await health(mem);
  assert.equal(h.status, 200);
  assert.equal(h.body.status, 'ok');
  assert.equal(h.body.store, STORE);
  assert.equal(h.body.redis, STORE === 'redis' ? 'up' : undefined);
  assert.equal(h.body.pid, mem.proc.pid);   // one process: the daemon answers itself
});

test('with Redis: store redis, 200 while it is up, 503 degraded once it is gone', { skip }, async () => {
  let h = await health(red);
  assert.equal(h.status, 200);
  assert.deepEqual([h.body.status, h.body.store, h.body.redis], ['ok', 'redis', 'up']);
  await redis.stop();
  redis = null;
  for (let i = 0; i < 40 && h.status !== 503; i++) {
    await sleep(25);
    h = await health(red);
  }
  assert.equal(h.status, 503);
  assert.deepEqual([h.body.status, h.body.redis], ['degraded', 'down']);
});
