"""The official openai Python SDK against the gateway, with only base_url
and api_key changed (the fake provider behind it). See conftest.py."""
import asyncio
import json

import openai
import pytest
import requests

import schemas
from conftest import MAX_BODY

MSG = [{"role": "user", "content": "Say something short."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"},
                           "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}


# ------------------------------------------------------------- completions

def test_chat_completion_non_stream(client):
    r = client.chat.completions.create(model="test-model", messages=MSG)
    assert r.object == "chat.completion"
    assert r.model == "test-model", "the model field must be the configured name, got %r" % r.model
    assert r.id, "completion id is empty"
    assert len(r.choices) == 1
    ch = r.choices[0]
    assert ch.finish_reason == "stop"
    assert ch.message.role == "assistant"
    assert ch.message.content and ch.message.content.strip(), "empty content"
    assert r.usage is not None, "usage must be present in non-stream answers"
    assert r.usage.completion_tokens == 12, r.usage
    assert r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_relay_headers_on_completion(client):
    raw = client.chat.completions.with_raw_response.create(model="test-model", messages=MSG)
    h = raw.headers
    assert h.get("x-request-id"), "no x-request-id header: %s" % dict(h)
    assert h.get("x-relay-model") == "test-model", "x-relay-model: %r" % h.get("x-relay-model")
    assert h.get("x-relay-provider") == "fake", "x-relay-provider: %r" % h.get("x-relay-provider")
    assert (h.get("x-relay-overhead-ms") or "").replace(".", "", 1).isdigit(), \
        "x-relay-overhead-ms not a number: %r" % h.get("x-relay-overhead-ms")
    assert raw.parse().choices[0].message.content


def test_stream_joins_text(client):
    stream = client.chat.completions.create(model="test-model", messages=MSG, stream=True)
    chunks = list(stream)
    assert chunks, "no chunks"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip(), "joined stream text is empty"
    assert all(c.model == "test-model" for c in chunks), {c.model for c in chunks}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1, "chunks of one stream must share one id"
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert reasons == ["stop"], "finish reasons %s" % reasons
    assert not any(getattr(c, "usage", None) for c in chunks), \
        "a chunk carries usage though include_usage was not asked"


def test_stream_include_usage_final_chunk(client):
    stream = client.chat.completions.create(
        model="test-model", messages=MSG, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    last = chunks[-1]
    assert last.usage is not None, "the last chunk has no usage: %r" % last
    assert last.choices == [], "the usage chunk must have empty choices, got %r" % last.choices
    assert last.usage.completion_tokens == 12
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1]), "usage before the last chunk"


# ------------------------------------------------------------------ models

def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    for name in ("test-model", "rate-limited", "server-error", "unavailable"):
        assert name in ids, "%s missing from models.list(): %s" % (name, ids)
    assert not any("?" in i for i in ids), "upstream ids leaked into the list: %s" % ids


def test_models_retrieve(client):
    m = client.models.retrieve("test-model")
    assert m.id == "test-model"
    assert m.object == "model"
    assert isinstance(m.created, int)
    assert m.owned_by


def test_models_retrieve_unknown(client):
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


# ------------------------------------------------------- tools, JSON mode

def test_tools_non_stream(client):
    r = client.chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL])
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls", ch
    calls = ch.message.tool_calls
    assert calls and len(calls) == 1, "expected one tool call, got %r" % calls
    assert calls[0].type == "function"
    assert calls[0].id
    assert calls[0].function.name == "get_weather"
    args = json.loads(calls[0].function.arguments)
    assert isinstance(args.get("city"), str), "arguments lack the required city: %r" % args


def test_tools_stream_accumulated(client):
    stream = client.chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL], stream=True)
    calls = {}
    reasons = []
    for c in stream:
        for ch in c.choices:
            if ch.finish_reason:
                reasons.append(ch.finish_reason)
            for tc in ch.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": "", "args": ""})
                slot["id"] = slot["id"] or tc.id
                if tc.function:
                    slot["name"] += tc.function.name or ""
                    slot["args"] += tc.function.arguments or ""
    assert list(calls) == [0], "tool call indexes %s" % list(calls)
    assert calls[0]["id"], "streamed tool call has no id"
    assert calls[0]["name"] == "get_weather", calls[0]
    assert isinstance(json.loads(calls[0]["args"]).get("city"), str), calls[0]
    assert reasons == ["tool_calls"], reasons


def test_json_mode(client):
    r = client.chat.completions.create(
        model="test-model",
        messages=[{"role": "system", "content": "Answer in JSON."}] + MSG,
        response_format={"type": "json_object"})
    obj = json.loads(r.choices[0].message.content)
    assert isinstance(obj, dict), "JSON mode content is not an object: %r" % obj


# ------------------------------------------------------------------ errors

def test_bad_request_error(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="test-model", messages=[])
    assert ei.value.status_code == 400
    assert isinstance(ei.value.body, dict) and ei.value.body.get("type") == "invalid_request_error", \
        ei.value.body


def test_bad_request_wrong_type(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="test-model", messages=MSG,
                                       extra_body={"temperature": "hot"})


def test_authentication_error(stack, base_url):
    from openai import OpenAI
    bad = OpenAI(base_url=base_url, api_key="rk-not-a-key", max_retries=0, timeout=10)
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.chat.completions.create(model="test-model", messages=MSG)
    assert ei.value.status_code == 401
    assert ei.value.code == "invalid_api_key", ei.value.body


def test_not_found_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="no-such-model", messages=MSG)
    assert ei.value.code == "model_not_found", ei.value.body


def test_body_too_large_413(client):
    big = "x" * (MAX_BODY + 1000)
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="test-model",
                                       messages=[{"role": "user", "content": big}])
    assert ei.value.status_code == 413


def test_rate_limit_error(client):
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model="rate-limited", messages=MSG)
    assert ei.value.status_code == 429


@pytest.mark.parametrize("model,status", [("server-error", 500), ("unavailable", 503)])
def test_internal_server_error(client, model, status):
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model=model, messages=MSG)
    assert ei.value.status_code == status


# ----------------------------------------------- raw JSON against schemas

def test_completion_matches_openai_schema(client):
    raw = client.chat.completions.with_raw_response.create(model="test-model", messages=MSG)
    schemas.check("CreateChatCompletionResponse", raw.http_response.json())


def test_tool_call_completion_matches_openai_schema(client):
    raw = client.chat.completions.with_raw_response.create(
        model="test-model", messages=MSG, tools=[WEATHER_TOOL])
    schemas.check("CreateChatCompletionResponse", raw.http_response.json())


def test_chunks_match_openai_schema(stack, base_url):
    r = requests.post(base_url + "/chat/completions", stream=True, timeout=15,
                      headers={"Authorization": "Bearer " + stack.relay_key},
                      json={"model": "test-model", "messages": MSG, "stream": True,
                            "stream_options": {"include_usage": True}})
    assert r.status_code == 200, r.text
    datas = [ln[len(b"data: "):] for ln in r.iter_lines() if ln.startswith(b"data: ")]
    assert datas and datas[-1] == b"[DONE]", "stream does not end with [DONE]: %r" % datas[-2:]
    for d in datas[:-1]:
        schemas.check("CreateChatCompletionStreamResponse", json.loads(d))


def test_models_and_errors_match_openai_schema(stack, base_url):
    h = {"Authorization": "Bearer " + stack.relay_key}
    schemas.check("ListModelsResponse", requests.get(base_url + "/models", headers=h, timeout=10).json())
    schemas.check("Model", requests.get(base_url + "/models/test-model", headers=h, timeout=10).json())
    r = requests.post(base_url + "/chat/completions", headers=h, timeout=10,
                      json={"model": "no-such-model", "messages": MSG})
    assert r.status_code == 404
    schemas.check("ErrorResponse", r.json())


# ------------------------------------------------------------------- async

def test_async_client_stream(stack, base_url):
    from openai import AsyncOpenAI

    async def run():
        async with AsyncOpenAI(base_url=base_url, api_key=stack.relay_key,
                               max_retries=0, timeout=15) as ac:
            stream = await ac.chat.completions.create(
                model="test-model", messages=MSG, stream=True,
                stream_options={"include_usage": True})
            text, usage = [], None
            async for c in stream:
                if c.choices:
                    text.append(c.choices[0].delta.content or "")
                if c.usage:
                    usage = c.usage
            return "".join(text), usage

    text, usage = asyncio.run(run())
    assert text.strip(), "async stream text is empty"
    assert usage is not None and usage.completion_tokens == 12, usage
