// dashboard.test.mjs - the built dashboard in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core from dashboard/node_modules),
// served by the real gateway's dashboard listener (local_admin: no login).
// A log with rows of two days ago (seeded, rolled up by the migration's
// backfill) and a scripted load through the gateway now: the page shows the
// figures the request log holds, the range selector changes them, and a
// screenshot of each range is saved in tests/e2e/dashboard/artifacts/.
// Run by scripts/test.sh (e2e level): node --test tests/e2e/dashboard/
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { freePort, startStack } from '../node/relay_stack.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const ARTIFACTS = path.join(ROOT, 'tests/e2e/dashboard/artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const require = createRequire(path.join(ROOT, 'dashboard/package.json'));

let stack;
let browser;
let dashURL;
const OLD_ROWS = 30;
const NEW_ROWS = 12;

// SQL against the stack's SQLite file, through python3's sqlite3.
function sql(db, script, query = '') {
  const py = 'import sqlite3,sys,json\n' +
    'db=sqlite3.connect(sys.argv[1]); db.executescript(sys.argv[2]); db.commit()\n' +
    'print(json.dumps(db.execute(sys.argv[3]).fetchall() if sys.argv[3] else []))';
  const r = spawnSync('python3', ['-c', py, db, script, query], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

before(async () => {
  assert.ok(existsSync(path.join(ROOT, 'dashboard/dist/index.html')),
    'dashboard/dist is not built: make dashboard');
  const dashPort = await freePort();
  stack = await startStack([], { config: { dashboard: {
    listen: `127.0.0.1:${dashPort}`, dir: path.join(ROOT, 'dashboard/dist'),
    local_admin: true } } });
  dashURL = `http://127.0.0.1:${dashPort}/`;
  const db = path.join(stack.tmp, 'relay.db');
  // Rows of two days ago: in 7d and 30d, not in 1h or 24h.
  const backfill = readFileSync(path.join(ROOT,
    'migrations/005_request_rollup_backfill.sqlite.sql'), 'utf8');
  sql(db, `WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ${OLD_ROWS})
    INSERT INTO request_log (ts, request_id, key_prefix, model, provider, status,
      prompt_tokens, completion_tokens, cost_nusd, latency_us)
    SELECT strftime('%Y-%m-%dT%H:%M:%f000Z', 'now', '-2 days', '-' || i || ' minutes'),
      'req_old_' || i, 'glw_old1', 'test-model', 'fake', 200, 10, 5, 1000000, 250000 FROM g;
    DELETE FROM request_rollup; ${backfill}`);
  for (let i = 0; i < NEW_ROWS; i++) {
    const r = await fetch(`${stack.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${stack.relayKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: `hi ${i}` }] }),
    });
    await r.text();
  }
  for (let t = 0; t < 100; t++) {
    const [[n]] = sql(db, '', 'SELECT count(*) FROM request_log');
    if (n >= OLD_ROWS + NEW_ROWS) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  const { chromium } = require('playwright-core');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  if (browser) await browser.close();
  if (stack) await stack.stop();
});

function logSums(sinceSql) {
  const db = path.join(stack.tmp, 'relay.db');
  const [[n, cost]] = sql(db, '', `SELECT count(*), coalesce(sum(cost_nusd), 0)
    FROM request_log WHERE ts >= strftime('%Y-%m-%dT%H:%M:%f000Z', 'now', '${sinceSql}')`);
  return { n, cost };
}

function usd(nusd) {
  const v = nusd / 1e9;
  if (v === 0) return '$0';
  return v >= 1 ? `$${v.toFixed(2)}` : `$${Number(v.toPrecision(4))}`;
}

test('the page shows the log\'s figures, and each range its own', async () => {
  const page = await browser.newPage({ viewport: { width: 1200, height: 1100 } });
  await page.goto(dashURL);
  const ranges = { '1h': '-1 hours', '24h': '-24 hours', '7d': '-7 days', '30d': '-30 days' };
  const seen = {};
  for (const [range, since] of Object.entries(ranges)) {
    await page.click(`[data-testid="range-${range}"]`);
    await page.waitForSelector(`[data-testid="main"][data-range="${range}"][data-state="ready"]`);
    const tile = await page.textContent('[data-testid="tile-requests"] .tile-value');
    const spend = await page.textContent('[data-testid="tile-spend"] .tile-value');
    const want = logSums(since);
    assert.equal(tile, String(want.n), `${range}: requests tile`);
    assert.equal(spend, usd(want.cost), `${range}: spend tile`);
    seen[range] = tile;
    await page.screenshot({ path: path.join(ARTIFACTS, `dashboard-${range}.png`), fullPage: true });
  }
  assert.equal(seen['1h'], String(NEW_ROWS));
  assert.equal(seen['7d'], String(NEW_ROWS + OLD_ROWS));
  assert.notEqual(seen['1h'], seen['7d'], 'the range selector changes the figures');
  await page.close();
});

test('the panels are all there with the top key', async () => {
  const page = await browser.newPage();
  await page.goto(`${dashURL}?range=7d`);
  await page.waitForSelector('[data-testid="main"][data-state="ready"]');
  for (const id of ['panel-spend', 'panel-providers', 'panel-latency', 'panel-keys', 'panel-cache']) {
    assert.ok(await page.isVisible(`[data-testid="${id}"]`), id);
  }
  const keys = await page.textContent('[data-testid="top-keys"]');
  assert.match(keys, /glw_old1/);
  assert.match(await page.textContent('[data-testid="provider-mix"]'), /fake/);
  assert.equal(await page.isVisible('[data-testid="login"]'), false, 'no login on the local listener');
  await page.close();
});
