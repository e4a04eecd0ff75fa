// The official openai Node SDK against the gateway, with only baseURL and
// apiKey changed (the fake provider behind it; see relay_stack.mjs).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI, {
  APIError, AuthenticationError, BadRequestError, InternalServerError, NotFoundError,
  RateLimitError,
} from 'openai';
import { MAX_BODY, startStack } from './relay_stack.mjs';

const MSG = [{ role: 'user', content: 'Say something short.' }];
const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather of a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
    },
  },
};

let stack;
let client;

before(async () => {
  stack = await startStack([
    { name: 'rate-limited', upstream: 'up-429?status=429&retry_after=0' },
    { name: 'server-error', upstream: 'up-500?status=500' },
    { name: 'unavailable', upstream: 'up-503?status=503' },
  ]);
  client = new OpenAI({ baseURL: stack.baseURL, apiKey: stack.relayKey, maxRetries: 0, timeout: 15000 });
});

after(async () => {
  const alive = stack && stack.relayAlive();
  if (stack) await stack.stop();
  assert.ok(alive, 'the relay died during the Node SDK tests');
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
  if (status) assert.equal(err.status, status, `status ${err.status}, expected ${status}`);
  return err;
}

test('chat completion, non-stream', async () => {
  const r = await client.chat.completions.create({ model: 'test-model', messages: MSG });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, 'test-model', 'model must be the configured name');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(r.choices[0].message.content.trim(), 'empty content');
  assert.equal(r.usage.completion_tokens, 12);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('x-relay headers on a completion', async () => {
  const { response } = await client.chat.completions
    .create({ model: 'test-model', messages: MSG }).withResponse();
  const h = response.headers;
  assert.ok(h.get('x-request-id'), 'no x-request-id');
  assert.equal(h.get('x-relay-model'), 'test-model');
  assert.equal(h.get('x-relay-provider'), 'fake');
  assert.match(h.get('x-relay-overhead-ms') ?? '', /^\d+(\.\d+)?$/);
});

test('stream: chunks join into text, [DONE] ends it, no usage unless asked', async () => {
  const stream = await client.chat.completions.create({ model: 'test-model', messages: MSG, stream: true });
  let text = '';
  const reasons = [];
  let n = 0;
  for await (const c of stream) {
    n++;
    assert.equal(c.model, 'test-model');
    assert.equal(c.object, 'chat.completion.chunk');
    assert.ok(!c.usage, 'a chunk carries usage though include_usage was not asked');
    for (const ch of c.choices) {
      text += ch.delta?.content ?? '';
      if (ch.finish_reason) reasons.push(ch.finish_reason);
    }
  }
  assert.ok(n > 1, `only ${n} chunks`);
  assert.ok(text.trim(), 'joined text is empty');
  assert.deepEqual(reasons, ['stop']);
});

test('stream with include_usage ends with a usage chunk', async () => {
  const stream = await client.chat.completions.create({
    model: 'test-model', messages: MSG, stream: true, stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  const last = chunks.at(-1);
  assert.ok(last.usage, `last chunk has no usage: ${JSON.stringify(last)}`);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, 12);
  assert.ok(chunks.slice(0, -1).every((c) => !c.usage), 'usage before the last chunk');
});

test('models.list and models.retrieve', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  for (const name of ['test-model', 'rate-limited', 'server-error', 'unavailable']) {
    assert.ok(ids.includes(name), `${name} missing from ${ids}`);
  }
  const m = await client.models.retrieve('test-model');
  assert.equal(m.id, 'test-model');
  assert.equal(m.object, 'model');
  await rejects(client.models.retrieve('no-such-model'), NotFoundError, 404);
});

test('tools, non-stream: one tool call with JSON arguments', async () => {
  const r = await client.chat.completions.create({
    model: 'test-model', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [WEATHER_TOOL],
  });
  const ch = r.choices[0];
  assert.equal(ch.finish_reason, 'tool_calls');
  assert.equal(ch.message.tool_calls.length, 1);
  const call = ch.message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.ok(call.id);
  assert.equal(call.function.name, 'get_weather');
  assert.equal(typeof JSON.parse(call.function.arguments).city, 'string');
});

test('tools, stream: deltas accumulate to one call', async () => {
  const stream = await client.chat.completions.create({
    model: 'test-model', messages: [{ role: 'user', content: 'Weather in Paris?' }],
    tools: [WEATHER_TOOL], stream: true,
  });
  const calls = new Map();
  const reasons = [];
  for await (const c of stream) {
    for (const ch of c.choices) {
      if (ch.finish_reason) reasons.push(ch.finish_reason);
      for (const tc of ch.delta?.tool_calls ?? []) {
        const s = calls.get(tc.index) ?? { id: null, name: '', args: '' };
        s.id = s.id ?? tc.id;
        s.name += tc.function?.name ?? '';
        s.args += tc.function?.arguments ?? '';
        calls.set(tc.index, s);
      }
    }
  }
  assert.deepEqual([...calls.keys()], [0]);
  const call = calls.get(0);
  assert.ok(call.id, 'streamed tool call has no id');
  assert.equal(call.name, 'get_weather');
  assert.equal(typeof JSON.parse(call.args).city, 'string');
  assert.deepEqual(reasons, ['tool_calls']);
});

test('JSON mode content parses as an object', async () => {
  const r = await client.chat.completions.create({
    model: 'test-model', messages: [{ role: 'system', content: 'Answer in JSON.' }, ...MSG],
    response_format: { type: 'json_object' },
  });
  const obj = JSON.parse(r.choices[0].message.content);
  assert.equal(typeof obj, 'object');
  assert.ok(obj !== null && !Array.isArray(obj));
});

test('400 is BadRequestError', async () => {
  const e = await rejects(client.chat.completions.create({ model: 'test-model', messages: [] }),
    BadRequestError, 400);
  assert.equal(e.type, 'invalid_request_error');
});

test('401 is AuthenticationError', async () => {
  const bad = new OpenAI({ baseURL: stack.baseURL, apiKey: 'rk-not-a-key', maxRetries: 0 });
  const e = await rejects(bad.chat.completions.create({ model: 'test-model', messages: MSG }),
    AuthenticationError, 401);
  assert.equal(e.code, 'invalid_api_key');
});

test('404 unknown model is NotFoundError', async () => {
  const e = await rejects(client.chat.completions.create({ model: 'no-such-model', messages: MSG }),
    NotFoundError, 404);
  assert.equal(e.code, 'model_not_found');
});

test('413 body too large is an APIError with status 413', async () => {
  const big = 'x'.repeat(MAX_BODY + 1000);
  await rejects(client.chat.completions.create({
    model: 'test-model', messages: [{ role: 'user', content: big }],
  }), APIError, 413);
});

test('429 is RateLimitError', async () => {
  await rejects(client.chat.completions.create({ model: 'rate-limited', messages: MSG }),
    RateLimitError, 429);
});

test('5xx is InternalServerError', async () => {
  await rejects(client.chat.completions.create({ model: 'server-error', messages: MSG }),
    InternalServerError, 500);
  await rejects(client.chat.completions.create({ model: 'unavailable', messages: MSG }),
    InternalServerError, 503);
});
