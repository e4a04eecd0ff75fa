// Keys and per-key limits through the official openai Node SDK: a key made
// with `relay keys create --rpm 1`, its second request a RateLimitError with
// Retry-After and x-ratelimit-* headers; a model the key may not use is a
// PermissionDeniedError.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI, { AuthenticationError, PermissionDeniedError, RateLimitError } from 'openai';
import { startStack } from './relay_stack.mjs';

const MSG = [{ role: 'user', content: 'abcdefgh' }];
let stack;

before(async () => {
  stack = await startStack([{ name: 'other-model', upstream: 'up-other?ttft_ms=0&tps=0&tokens=3' }],
    { redis: process.env.REDIS_URL || '' });
});

after(async () => {
  await stack.stop();
});

// A new key and a client for it, once the key cache has it (250 ms polls).
async function clientFor(...args) {
  const out = stack.keys('create', '--name', 'node-sdk', ...args);
  const key = out.trimEnd().split('\n').pop();
  const client = new OpenAI({ baseURL: stack.baseURL, apiKey: key, maxRetries: 0, timeout: 15000 });
  const deadline = Date.now() + 3000;
  for (;;) {
    try {
      await client.models.list();
      return client;
    } catch (e) {
      if (!(e instanceof AuthenticationError) || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

test('rpm turns into RateLimitError with Retry-After', async () => {
  const client = await clientFor('--rpm', '1');
  const { response } = await client.chat.completions
    .create({ model: 'test-model', messages: MSG }).withResponse();
  assert.equal(response.headers.get('x-ratelimit-limit-requests'), '1');
  assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '0');
  await assert.rejects(client.chat.completions.create({ model: 'test-model', messages: MSG }),
    (e) => {
      assert.ok(e instanceof RateLimitError, `got ${e.constructor.name}`);
      assert.equal(e.status, 429);
      assert.equal(e.code, 'rate_limit_exceeded');
      assert.equal(e.type, 'requests');
      const ra = Number(e.headers['retry-after'] ?? e.headers.get?.('retry-after'));
      assert.ok(ra >= 59 && ra <= 60, `Retry-After ${ra}`);
      return true;
    });
});

test('a model the key may not use is PermissionDeniedError', async () => {
  const client = await clientFor('--models', 'other-model');
  await assert.rejects(client.chat.completions.create({ model: 'test-model', messages: MSG }),
    (e) => {
      assert.ok(e instanceof PermissionDeniedError, `got ${e.constructor.name}`);
      assert.equal(e.code, 'model_not_allowed');
      return true;
    });
  const r = await client.chat.completions.create({ model: 'auto', messages: MSG });
  assert.equal(r.model, 'other-model');
});
