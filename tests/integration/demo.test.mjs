// The browser demo (demo/index.html) in headless Chromium, driven by playwright-core:
// two pages chat over the daemon, once with both forced to polling and once with both
// forced to WebSocket. Needs Chromium (Debian package "chromium"; env CHROMIUM to use
// another binary) and the Socket.IO bundle in demo/vendor/ (demo/setup.sh fetches it).
// A missing browser is a test failure, not a skip.

import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDaemon, makeTest, finish, REPO_ROOT, AEOLUS_ONLY, SLOW } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const DEMO = path.join(REPO_ROOT, 'demo');
const BUNDLE = path.join(DEMO, 'vendor', 'socket.io.min.js');
const T = 8000 * SLOW;            // longest wait for one step
const SCREENSHOTS = os.tmpdir();

let d;
const test = makeTest(() => [d]);

before(async () => {
  if (AEOLUS_ONLY) return;
  if (!existsSync(BUNDLE)) {
    const r = spawnSync(path.join(DEMO, 'setup.sh'), [], { encoding: 'utf8', timeout: 180000 });
    if (r.status !== 0 || !existsSync(BUNDLE)) {
      throw new Error(`demo/setup.sh failed (status ${r.status}${r.error ? `, ${r.error.message}` : ''}):\n` +
        `${r.stdout || ''}${r.stderr || ''}`);
    }
  }
  d = await startDaemon({
    set: {
      'server.data_dir': REPO_ROOT,
      'server.profile_dir': path.join(REPO_ROOT, 'etc', 'profiles'),
      'auth.anonymous': 'yes',
    },
    args: ['--profile', 'aeolus'], // after the helper's --profile conformance, so this one wins
  });
  const info = await (await fetch(`${d.url}/`)).json();
  assert.equal(info.profile, 'aeolus', `daemon runs profile ${info.profile}, expected aeolus`);
});

after(() => finish([d], d));

/** Launch Chromium with a fresh profile; fails with an explanation when it cannot. */
async function launch() {
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new Error(`playwright-core is not installed (run "npm ci" in tests/): ${e.message}`);
  }
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install the Debian package "chromium" ` +
      '(apt-get install -y chromium) or set CHROMIUM to a Chromium binary');
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aeolus-chromium-'));
  try {
    const context = await chromium.launchPersistentContext(dir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1000, height: 640 },
      timeout: 20000 * SLOW,
    });
    context.setDefaultTimeout(T);
    return {
      context,
      async close() {
        await context.close().catch(() => {});
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`Chromium (${CHROMIUM}) could not be started: ${e.message}`);
  }
}

/** A page of the demo, with its uncaught errors recorded. */
async function openDemo(context, label) {
  const page = await context.newPage();
  page.label = label;
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`uncaught: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') page.problems.push(`console: ${m.text()}`); });
  const res = await page.goto(`${d.url}/demo/`);
  assert.equal(res.status(), 200, 'GET /demo/');
  return page;
}

/** What a page shows, for failure messages. */
async function snapshot(page) {
  return page.evaluate(() => {
    const text = (id) => document.querySelector(`[data-testid="${id}"]`)?.textContent.trim() ?? null;
    return {
      status: text('status'),
      transport: text('transport-name'),
      notice: document.querySelector('[data-testid="notice"]')?.hidden ? '' : text('notice'),
      members: [...document.querySelectorAll('[data-testid="member"]')].map((e) => e.textContent.trim()),
      messages: [...document.querySelectorAll('[data-testid="message"]')].map((e) => e.textContent.trim()),
      typing: text('typing'),
    };
  }).catch((e) => ({ unavailable: e.message }));
}

/** Wait until `fn(arg)` is truthy in the page; on timeout say what was awaited and what the page shows. */
async function until(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: T, polling: 50 });
  } catch (e) {
    const state = await snapshot(page);
    throw new Error(`page ${page.label}: timed out waiting for ${what}\npage shows: ${JSON.stringify(state, null, 2)}` +
      `${page.problems.length ? `\npage errors: ${page.problems.join('\n')}` : ''}\n(${e.message.split('\n')[0]})`);
  }
}

const text = (page, id) => page.getByTestId(id).first().textContent();

// Only the front tab gets animation frames, which Playwright's actions wait for: bring the
// page to the front before acting on it (waiting on a background page is fine).
async function join(page, name, channel, transport) {
  await page.bringToFront();
  await page.getByTestId('name').fill(name);
  await page.getByTestId('channel').fill(channel);
  await page.getByTestId('transport').selectOption(transport);
  await page.getByTestId('connect').click();
  await until(page, 'status "connected"',
    () => document.querySelector('[data-testid="status"]').textContent.trim() === 'connected');
  assert.equal((await text(page, 'transport-name')).trim(), transport, `page ${page.label}: transport shown`);
}

const messageCount = ([want]) =>
  document.querySelectorAll('[data-testid="messages"] [data-testid="message"]').length === want;
const hasMessage = ([content]) => [...document.querySelectorAll('[data-testid="message"]')]
  .some((e) => e.querySelector('.content')?.textContent === content && !e.classList.contains('pending'));

for (const transport of ['polling', 'websocket']) {
  test(`demo page: two browsers chat over ${transport}`, { skip: AEOLUS_ONLY, timeout: 30000 * SLOW }, async (t) => {
    const browser = await launch();
    try {
      const channel = `demo-${transport}-${Date.now().toString(36)}`;
      const a = await openDemo(browser.context, 'A');
      const b = await openDemo(browser.context, 'B');
      const nameA = `Alice <i>${transport}</i>`;
      const nameB = 'Bob';

      await join(a, nameA, channel, transport);
      await join(b, nameB, channel, transport);

      // presence: each member list has both users (B from the join ack, A from user:joined)
      for (const p of [a, b]) {
        await until(p, '2 members', () =>
          document.querySelectorAll('[data-testid="members"] [data-testid="member"]').length === 2);
      }

      // A -> B, with markup that must stay text
      const hello = 'Hello <b>Bob</b> <img src=x onerror="window.__xss=1">';
      await a.bringToFront();
      await a.getByTestId('message-input').fill(hello);
      await a.getByTestId('send').click();
      await until(a, 'own message acked', hasMessage, [hello]);
      await until(b, "A's message", hasMessage, [hello]);

      // B -> A (pressing Enter this time)
      const reply = `Hi ${nameA}, this is B over ${transport}`;
      await b.bringToFront();
      await b.getByTestId('message-input').fill(reply);
      await b.getByTestId('message-input').press('Enter');
      await until(b, 'own message acked', hasMessage, [reply]);
      await until(a, "B's message", hasMessage, [reply]);

      // A types: B sees it, by name (learned from the first message's metadata)
      await a.bringToFront();
      await a.getByTestId('message-input').pressSequentially('still ty', { delay: 20 });
      await until(b, '"… is typing"', () =>
        /typing/.test(document.querySelector('[data-testid="typing"]').textContent));
      assert.equal((await text(b, 'typing')).trim(), `${nameA} is typing…`);
      assert.equal((await text(a, 'typing')).trim(), '', 'A does not see its own typing');

      // A sends: the typing line clears on B and the message arrives
      await a.getByTestId('message-input').pressSequentially('ping', { delay: 20 });
      await a.getByTestId('send').click();
      await until(b, 'the typing line to clear', () =>
        document.querySelector('[data-testid="typing"]').textContent.trim() === '');
      await until(b, "A's second message", hasMessage, ['still typing']);

      // every page shows each message exactly once (own ones from the ack, no echo)
      for (const p of [a, b]) await until(p, '3 messages', messageCount, [3]);
      await b.waitForTimeout(300); // nothing late (a duplicate) arrives
      for (const p of [a, b]) {
        const s = await snapshot(p);
        assert.equal(s.messages.length, 3, `page ${p.label} messages: ${JSON.stringify(s.messages)}`);
        assert.equal(s.status, 'connected');
        assert.equal(s.transport, transport, `page ${p.label} transport`);
        assert.equal(s.members.length, 2);
        assert.equal(s.notice, '', `page ${p.label} notice`);
        // user text was not interpreted as markup
        assert.equal(await p.evaluate(() => window.__xss), undefined, 'markup in a message ran');
        assert.equal(await p.locator('[data-testid="messages"] img, [data-testid="messages"] b, ' +
          '[data-testid="members"] i').count(), 0, `page ${p.label}: user text became markup`);
        assert.deepEqual(p.problems, [], `page ${p.label} errors`);
      }
      assert.ok((await snapshot(b)).members.some((m) => m.includes(nameA)), "B's member list names A");

      for (const p of [a, b]) {
        const file = path.join(SCREENSHOTS, `aeolus-demo-${transport}-${p.label}.png`);
        await p.bringToFront();
        await p.screenshot({ path: file });
        t.diagnostic(`screenshot: ${file}`);
      }
    } finally {
      await browser.close();
    }
  });
}

test('stats page shows /stats, /health and /', { skip: AEOLUS_ONLY, timeout: 30000 * SLOW }, async () => {
  const browser = await launch();
  try {
    const page = await browser.context.newPage();
    page.label = 'stats';
    page.problems = [];
    page.on('pageerror', (e) => page.problems.push(`uncaught: ${e.message}`));
    await page.goto(`${d.url}/demo/stats.html`);
    await until(page, 'the health and info panels', () =>
      /"status"/.test(document.querySelector('[data-testid="health"]').textContent) &&
      /"profile": "aeolus"/.test(document.querySelector('[data-testid="info"]').textContent) &&
      /"events"/.test(document.querySelector('[data-testid="stats"]').textContent));
    for (const id of ['stat-sessions', 'stat-sockets', 'stat-users']) {
      assert.match(await page.locator(`[data-testid="${id}"]`).textContent(), /^\d+$/, id);
    }
    assert.match(await page.locator('[data-testid="stat-rate"]').textContent(), /^[\d.]+ · [\d.]+$/);
    assert.deepEqual(page.problems, []);
  } finally {
    await browser.close();
  }
});
