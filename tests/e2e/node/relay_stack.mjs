// relay_stack.mjs - starts the fake provider and the gateway on free ports
// for the Node SDK tests, with a config written into a temp dir.
// RELAY_BIN and RELAY_FAKE_BIN choose the binaries (defaults build/relay,
// build/relay-fake), as in the Python suites.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

function bin(envName, def) {
  return path.resolve(process.env[envName] || path.join(ROOT, def));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A small YAML emitter for the config (plain maps, lists and scalars).
function yaml(v, indent = '') {
  const scalar = (x) => (typeof x === 'string' ? JSON.stringify(x) : String(x));
  if (Array.isArray(v)) {
    return v.map((x) => (typeof x === 'object' && x !== null
      ? `${indent}-\n${yaml(x, indent + '  ')}`
      : `${indent}- ${scalar(x)}\n`)).join('');
  }
  return Object.entries(v).map(([k, x]) => (typeof x === 'object' && x !== null
    ? `${indent}${k}:\n${yaml(x, indent + '  ')}`
    : `${indent}${k}: ${scalar(x)}\n`)).join('');
}

async function waitHttp(url, proc, name, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`${name} exited (${proc.exitCode ?? proc.signalCode}) before serving`);
    }
    try {
      const r = await fetch(url);
      if (r.status < 500) return;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`${name} did not serve ${url} in time`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const MAX_BODY = 65536;

const MODEL_DEFAULTS = {
  provider: 'fake',
  price: { input: 0.05, output: 0.08, cached_input: 0.0 },
  tier: 1,
  context: 131072,
  latency: { ttft_ms: 200, tokens_per_s: 700 },
};

// models: added after test-model. opts.providers: added to (or replacing
// entries of) the providers map; ${FAKE_PORT} in a base_url becomes the
// fake's port. opts.config: more top-level fields (e.g. dashboard).
export { freePort };

export async function startStack(models = [], opts = {}) {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'relay-node-e2e-'));
  const relayKey = 'rk-test-' + randomBytes(12).toString('hex');
  const fakeKey = 'fk-test-' + randomBytes(12).toString('hex');
  const fakePort = await freePort();
  const relayPort = await freePort();
  const env = { ...process.env, RELAY_API_KEY: relayKey, FAKE_API_KEY: fakeKey };
  delete env.RELAY_CONFIG;
  const config = {
    listen: `127.0.0.1:${relayPort}`,
    workers: 2,
    // The stack's own request log and keys, gone with its temp dir.
    store: `sqlite:${path.join(tmp, 'relay.db')}`,
    redis: opts.redis || '',
    log_level: 'info',
    auth: { keys: ['${RELAY_API_KEY}'] },
    server: { max_body_bytes: MAX_BODY, max_header_bytes: 16384, read_timeout_ms: 10000,
      idle_timeout_ms: 10000, shutdown_grace_ms: 3000 },
    upstream: { connect_timeout_ms: 2000, first_byte_timeout_ms: 10000, idle_timeout_ms: 10000 },
    providers: { fake: { kind: 'openai', base_url: `http://127.0.0.1:${fakePort}/v1`,
      api_key: '${FAKE_API_KEY}' },
    ...Object.fromEntries(Object.entries(opts.providers || {}).map(([k, p]) => [k,
      { ...p, base_url: p.base_url.replaceAll('${FAKE_PORT}', String(fakePort)) }])) },
    models: [{ name: 'test-model', upstream: 'up-basic?ttft_ms=0&tps=0&tokens=12' }, ...models]
      .map((m) => ({ ...MODEL_DEFAULTS, ...m })),
    routing: { defaults: { max_latency_ms: 2000, min_quality_tier: 1 } },
    ...(opts.config || {}),
  };
  const configPath = path.join(tmp, 'relay.yaml');
  writeFileSync(configPath, yaml(config));
  const procs = [];
  const start = (name, argv) => {
    const log = openSync(path.join(tmp, `${name}.log`), 'w');
    const p = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', log, log] });
    p.logPath = path.join(tmp, `${name}.log`);
    procs.push(p);
    return p;
  };
  const stack = {
    tmp, relayKey, fakeKey, relayPort, fakePort, procs, configPath,
    baseURL: `http://127.0.0.1:${relayPort}/v1`,
    relayAlive: () => stack.relay.exitCode === null && stack.relay.signalCode === null,
    relayLog: () => readFileSync(stack.relay.logPath, 'utf8'),
    // Runs `relay keys ARGS --config` on the stack's store; returns stdout.
    keys(...args) {
      const r = spawnSync(bin('RELAY_BIN', 'build/relay'), ['keys', ...args, '--config', configPath],
        { env, encoding: 'utf8', timeout: 60000 });
      if (r.status !== 0) throw new Error(`relay keys ${args[0]}: ${r.stderr}`);
      return r.stdout;
    },
    async stop() {
      await Promise.all(procs.map((p) => new Promise((resolve) => {
        if (p.exitCode !== null || p.signalCode !== null) return resolve();
        const t = setTimeout(() => p.kill('SIGKILL'), 5000);
        p.once('exit', () => { clearTimeout(t); resolve(); });
        p.kill('SIGTERM');
      })));
      rmSync(tmp, { recursive: true, force: true });
    },
  };
  try {
    stack.fake = start('fake', [bin('RELAY_FAKE_BIN', 'build/relay-fake'), '--listen',
      `127.0.0.1:${fakePort}`, '--require-key', fakeKey]);
    await waitHttp(`http://127.0.0.1:${fakePort}/_fake/requests`, stack.fake, 'relay-fake');
    stack.relay = start('relay', [bin('RELAY_BIN', 'build/relay'), 'serve', '--config', configPath]);
    await waitHttp(`http://127.0.0.1:${relayPort}/healthz`, stack.relay, 'relay');
  } catch (e) {
    const logs = procs.map((p) => {
      try { return readFileSync(p.logPath, 'utf8').split('\n').slice(-10).join('\n'); } catch { return ''; }
    }).join('\n');
    await stack.stop();
    throw new Error(`${e.message}\n${logs}`);
  }
  return stack;
}
