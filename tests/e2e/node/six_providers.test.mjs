// The official openai Node SDK on each of the demo's six providers (openai,
// groq, mistral: kind openai; anthropic; gemini; ollama), as
// tests/e2e/python/test_six_providers.py does in Python. The providers and
// models come from relay.example.yaml (read with python3 + PyYAML, which the
// Python suites need anyway), their base_urls moved from the demo fake
// (127.0.0.1:9000) to a fake on a free port that speaks each provider's
// own wire format and demands the key.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import OpenAI, { BadRequestError, InternalServerError, RateLimitError } from 'openai';
import { startStack } from './relay_stack.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const PROVIDERS = ['openai', 'groq', 'mistral', 'anthropic', 'gemini', 'ollama'];
const DEMO_FAKE = 'http://127.0.0.1:9000';
const TOKENS = 12;
const MSG = [{ role: 'user', content: 'Tell me about six providers.' }];
const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather of a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] } },
      required: ['city', 'unit'],
    },
  },
};

const example = JSON.parse(execFileSync('python3', ['-c',
  'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))',
  path.join(ROOT, 'relay.example.yaml')], { encoding: 'utf8' }));
const baseId = (upstream) => upstream.split('?')[0];
const firstModel = (p) => example.models.find((m) => m.provider === p);

let stack;
let client;

before(async () => {
  const providers = {};
  for (const [name, p] of Object.entries(example.providers)) {
    assert.ok(p.base_url.startsWith(DEMO_FAKE), `${name}: base_url ${p.base_url}`);
    providers[name] = { ...p, base_url: 'http://127.0.0.1:${FAKE_PORT}' + p.base_url.slice(DEMO_FAKE.length),
      api_key: '${FAKE_API_KEY}' };
  }
  const models = example.models.map((m) => ({ ...m, upstream: `${baseId(m.upstream)}?tokens=${TOKENS}` }));
  for (const p of PROVIDERS) {
    const up = baseId(firstModel(p).upstream);
    models.push({ name: `${p}-429`, provider: p, upstream: `${up}?status=429&retry_after=0` });
    models.push({ name: `${p}-500`, provider: p, upstream: `${up}?status=500` });
    models.push({ name: `${p}-400`, provider: p, upstream: `${up}?status=400` });
  }
  stack = await startStack(models, { providers });
  client = new OpenAI({ baseURL: stack.baseURL, apiKey: stack.relayKey, maxRetries: 0, timeout: 15000 });
});

after(async () => {
  const alive = stack && stack.relayAlive();
  if (stack) await stack.stop();
  assert.ok(alive, 'the relay died during the six-provider Node tests');
});

async function rejects(promise, Cls, status) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected ${Cls.name}, but the call succeeded`);
  assert.ok(err instanceof Cls, `expected ${Cls.name}, got ${err?.constructor?.name}: ${err?.message}`);
  assert.equal(err.status, status);
  return err;
}

for (const provider of PROVIDERS) {
  describe(provider, () => {
    const model = () => firstModel(provider).name;

    test('non-stream: text, usage, model, x-relay-provider', async () => {
      const { data: r, response } = await client.chat.completions
        .create({ model: model(), messages: MSG }).withResponse();
      assert.equal(response.headers.get('x-relay-provider'), provider);
      assert.equal(response.headers.get('x-relay-model'), model());
      assert.equal(r.model, model());
      assert.equal(r.choices[0].finish_reason, 'stop');
      assert.equal(r.choices[0].message.content.trim().split(/\s+/).length, TOKENS);
      assert.equal(r.usage.completion_tokens, TOKENS);
      assert.ok(r.usage.prompt_tokens > 0);
      assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    });

    test('stream with include_usage: same text as non-stream, usage chunk, finish_reason', async () => {
      const whole = await client.chat.completions.create({ model: model(), messages: MSG });
      const stream = await client.chat.completions.create({
        model: model(), messages: MSG, stream: true, stream_options: { include_usage: true },
      });
      let text = '';
      const reasons = [];
      let usage = null;
      let n = 0;
      for await (const c of stream) {
        n += 1;
        assert.equal(c.model, model());
        if (c.usage) usage = c.usage;
        if (!c.choices.length) continue;
        text += c.choices[0].delta.content || '';
        if (c.choices[0].finish_reason) reasons.push(c.choices[0].finish_reason);
      }
      assert.ok(n > 2, `only ${n} chunks`);
      assert.equal(text, whole.choices[0].message.content);
      assert.deepEqual(reasons, ['stop']);
      assert.ok(usage, 'no usage chunk');
      assert.equal(usage.completion_tokens, TOKENS);
      assert.equal(usage.prompt_tokens, whole.usage.prompt_tokens);
    });

    test('tools, non-stream', async () => {
      const r = await client.chat.completions.create({ model: model(), messages: MSG, tools: [WEATHER_TOOL] });
      const ch = r.choices[0];
      assert.equal(ch.finish_reason, 'tool_calls');
      assert.equal(ch.message.tool_calls.length, 1);
      const call = ch.message.tool_calls[0];
      assert.ok(call.id);
      assert.equal(call.function.name, 'get_weather');
      assert.deepEqual(JSON.parse(call.function.arguments), { city: 'value', unit: 'c' });
    });

    test('tools, stream', async () => {
      const stream = await client.chat.completions.create({
        model: model(), messages: MSG, tools: [WEATHER_TOOL], stream: true,
      });
      const calls = {};
      const reasons = [];
      for await (const c of stream) {
        if (!c.choices.length) continue;
        for (const tc of c.choices[0].delta.tool_calls || []) {
          const cur = (calls[tc.index] ||= { id: null, name: '', args: '' });
          if (tc.id) cur.id = tc.id;
          if (tc.function?.name) cur.name += tc.function.name;
          if (tc.function?.arguments) cur.args += tc.function.arguments;
        }
        if (c.choices[0].finish_reason) reasons.push(c.choices[0].finish_reason);
      }
      assert.deepEqual(reasons, ['tool_calls']);
      assert.deepEqual(Object.keys(calls), ['0']);
      assert.ok(calls[0].id);
      assert.equal(calls[0].name, 'get_weather');
      assert.deepEqual(JSON.parse(calls[0].args), { city: 'value', unit: 'c' });
    });

    test('errors: 429, 500, 400 as the SDK classes', async () => {
      const e = await rejects(client.chat.completions.create({ model: `${provider}-429`, messages: MSG }),
        RateLimitError, 429);
      assert.equal(e.headers['x-relay-provider'], provider);
      await rejects(client.chat.completions.create({ model: `${provider}-500`, messages: MSG }),
        InternalServerError, 500);
      await rejects(client.chat.completions.create({ model: `${provider}-400`, messages: MSG }),
        BadRequestError, 400);
    });
  });
}
