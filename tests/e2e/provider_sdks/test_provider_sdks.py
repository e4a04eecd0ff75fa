"""test_provider_sdks.py - the official Anthropic, Google GenAI and Ollama SDKs
against build/relay-fake (no gateway in between).

It proves the fake's Anthropic, Gemini and Ollama wire formats are the ones
the real SDKs parse: whole and streamed text, tool calls (whole and
streamed), JSON modes, usage fields (with cache tokens) and errors raised as
each SDK's own exception classes. It also checks that the committed
fixtures in tests/fixtures/{anthropic,gemini,ollama}/ are what
tools/fakeprov/capture_fixtures.py captures from this binary today.

Starts the fake itself on a free port; $RELAY_FAKE_BIN picks the binary
(default build/relay-fake). Needs `pip install -r tests/requirements.txt`.

usage: python3 -m pytest -q tests/e2e/provider_sdks
"""
import json
import os
import signal
import subprocess
import sys

import httpx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BIN = os.environ.get("RELAY_FAKE_BIN", os.path.join(ROOT, "build/relay-fake"))
if not os.path.isabs(BIN):
    BIN = os.path.join(ROOT, BIN)
KEY = "sk-fake-sdk"

sys.path.insert(0, os.path.join(ROOT, "tools/fakeprov"))
import capture_fixtures  # noqa: E402  (the fixture recorder, shared formulas)

anthropic = pytest.importorskip("anthropic")
genai = pytest.importorskip("google.genai")
ollama = pytest.importorskip("ollama")
from google.genai import errors as genai_errors  # noqa: E402
from google.genai import types as gt  # noqa: E402

words = capture_fixtures.words
toks = capture_fixtures.message_tokens

PROMPT = "What is the capital of France?"
SYSTEM = "You are terse."
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"},
                                                "days": {"type": "integer"}},
               "required": ["city", "days"]}
ARGS = {"city": "value", "days": 1}


@pytest.fixture(scope="module")
def fake():
    p = subprocess.Popen([BIN, "--listen", "127.0.0.1:0", "--require-key", KEY],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    port = int(line.rsplit(":", 1)[1])
    yield "http://127.0.0.1:%d" % port
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=5) == 0


# ------------------------------------------------------------ Anthropic

@pytest.fixture(scope="module")
def claude(fake):
    return anthropic.Anthropic(base_url=fake, api_key=KEY, max_retries=0)


A_MSGS = [{"role": "user", "content": [{"type": "text", "text": "What is "},
                                       {"type": "image", "source": {
                                           "type": "base64", "media_type": "image/png",
                                           "data": "iVBORw0KGgo="}},
                                       {"type": "text", "text": "the capital of France?"}]}]
A_PROMPT_TOKENS = toks(len(PROMPT)) + toks(len(SYSTEM))


def test_anthropic_whole_text(claude):
    m = claude.messages.create(model="claude-fake?tokens=5", max_tokens=100,
                               system=SYSTEM, messages=A_MSGS)
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_fake_")
    assert m.content[0].type == "text" and m.content[0].text == words(PROMPT, 5)
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert m.usage.input_tokens == A_PROMPT_TOKENS and m.usage.output_tokens == 5
    assert m.usage.cache_read_input_tokens == 0
    assert m.model == "claude-fake?tokens=5"


def test_anthropic_system_blocks_count(claude):
    m = claude.messages.create(model="c?tokens=1", max_tokens=10,
                               system=[{"type": "text", "text": SYSTEM}],
                               messages=[{"role": "user", "content": PROMPT}])
    assert m.usage.input_tokens == A_PROMPT_TOKENS


def test_anthropic_stream_text(claude):
    with claude.messages.stream(model="claude-fake?tokens=6", max_tokens=100,
                                system=SYSTEM, messages=A_MSGS) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == words(PROMPT, 6)
    assert final.usage.output_tokens == 6 and final.usage.input_tokens == A_PROMPT_TOKENS
    assert final.stop_reason == "end_turn"


def test_anthropic_stream_event_order(claude):
    evs = [e.type for e in claude.messages.create(
        model="c?tokens=2", max_tokens=10, stream=True,
        messages=[{"role": "user", "content": "hi"}])]
    assert evs == ["message_start", "content_block_start", "content_block_delta",
                   "content_block_delta", "content_block_stop", "message_delta",
                   "message_stop"]


TOOLS_A = [{"name": "weather", "description": "Weather for a city",
            "input_schema": CITY_SCHEMA},
           {"name": "noop", "input_schema": {"type": "object", "properties": {}}}]


def test_anthropic_tool_whole(claude):
    m = claude.messages.create(model="c", max_tokens=100, tools=TOOLS_A,
                               messages=[{"role": "user", "content": "weather?"}])
    assert m.stop_reason == "tool_use"
    b = m.content[0]
    assert b.type == "tool_use" and b.name == "weather" and b.input == ARGS
    assert b.id.startswith("toolu_fake_")


def test_anthropic_tool_choice_and_result_round_trip(claude):
    m = claude.messages.create(
        model="c", max_tokens=100, tools=TOOLS_A,
        tool_choice={"type": "tool", "name": "noop"},
        messages=[{"role": "user", "content": "x"},
                  {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                                     "name": "weather", "input": ARGS}]},
                  {"role": "user", "content": [{"type": "tool_result",
                                                "tool_use_id": "toolu_1",
                                                "content": "sunny"}]}])
    assert m.content[0].name == "noop" and m.content[0].input == {}
    m = claude.messages.create(model="c?tokens=2", max_tokens=100, tools=TOOLS_A,
                               tool_choice={"type": "none"},
                               messages=[{"role": "user", "content": "x"}])
    assert m.stop_reason == "end_turn" and m.content[0].type == "text"


def test_anthropic_tool_stream(claude):
    with claude.messages.stream(model="c", max_tokens=100, tools=TOOLS_A,
                                messages=[{"role": "user", "content": "weather?"}]) as s:
        partial = [e.delta.partial_json for e in s
                   if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        final = s.get_final_message()
    assert len(partial) == 3 and json.loads("".join(partial)) == ARGS
    assert final.content[0].input == ARGS and final.stop_reason == "tool_use"


def test_anthropic_max_tokens_and_stop_sequences(claude):
    m = claude.messages.create(model="c?tokens=10", max_tokens=3,
                               messages=[{"role": "user", "content": PROMPT}])
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 3
    full = words(PROMPT, 10)
    stop = full.split(" ")[4]
    m = claude.messages.create(model="c?tokens=10", max_tokens=100, stop_sequences=[stop],
                               messages=[{"role": "user", "content": PROMPT}])
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == stop
    assert m.content[0].text == full[:full.index(stop)]


def test_anthropic_cache_tokens(claude):
    m = claude.messages.create(model="c?tokens=2&cache_read=100&cache_write=30",
                               max_tokens=10, messages=[{"role": "user", "content": PROMPT}])
    assert m.usage.cache_read_input_tokens == 100
    assert m.usage.cache_creation_input_tokens == 30
    assert m.usage.input_tokens == toks(len(PROMPT))  # cache counted outside
    with claude.messages.stream(model="c?tokens=2&cache_read=100", max_tokens=10,
                                messages=[{"role": "user", "content": PROMPT}]) as s:
        final = s.get_final_message()
    assert final.usage.cache_read_input_tokens == 100


def test_anthropic_refusal(claude):
    m = claude.messages.create(model="c?fault=safety", max_tokens=10,
                               messages=[{"role": "user", "content": "x"}])
    assert m.stop_reason == "refusal" and m.content == []


@pytest.mark.parametrize("status,cls", [
    (400, "BadRequestError"), (403, "PermissionDeniedError"), (404, "NotFoundError"),
    (429, "RateLimitError"), (500, "InternalServerError"), (529, "OverloadedError")])
def test_anthropic_errors(claude, status, cls):
    with pytest.raises(getattr(anthropic, cls)) as ei:
        claude.messages.create(model="c?status=%d" % status, max_tokens=10,
                               messages=[{"role": "user", "content": "x"}])
    e = ei.value
    assert isinstance(e, anthropic.APIStatusError) and e.status_code == status
    assert e.body["type"] == "error"
    if status == 429:
        assert e.response.headers["retry-after"] == "1"
        assert e.body["error"]["type"] == "rate_limit_error"
    if status == 529:
        assert e.body["error"]["type"] == "overloaded_error"


def test_anthropic_auth_and_version(fake):
    bad = anthropic.Anthropic(base_url=fake, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as ei:
        bad.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ei.value.body["error"]["type"] == "authentication_error"
    r = httpx.post(fake + "/v1/messages", headers={"x-api-key": KEY},
                   json={"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
    r = httpx.post(fake + "/v1/messages", headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
                   json={"model": "c", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_midstream_cut_is_an_error(claude):
    with pytest.raises(Exception):
        with claude.messages.stream(model="c?tokens=6&fault=cut", max_tokens=10,
                                    messages=[{"role": "user", "content": "x"}]) as s:
            "".join(s.text_stream)
            s.get_final_message()


# ------------------------------------------------------------ Gemini

@pytest.fixture(scope="module")
def gem(fake):
    return genai.Client(api_key=KEY, http_options=gt.HttpOptions(
        base_url=fake, retry_options=gt.HttpRetryOptions(attempts=1)))


def gm(model):
    """A scripted Gemini model name: the SDK refuses '?' and '&' in it."""
    return capture_fixtures.gemini_model(model)


G_CONTENTS = [gt.Content(role="user", parts=[gt.Part(text="What is "),
                                             gt.Part(inline_data=gt.Blob(mime_type="image/png",
                                                                         data=b"\x89PNG")),
                                             gt.Part(text="the capital of France?")])]
G_PROMPT_TOKENS = toks(len(PROMPT)) + toks(len(SYSTEM))


def test_gemini_whole_text(gem):
    r = gem.models.generate_content(model=gm("gemini-fake?tokens=5"), contents=G_CONTENTS,
                                    config=gt.GenerateContentConfig(system_instruction=SYSTEM))
    assert r.text == words(PROMPT, 5)
    assert r.candidates[0].finish_reason == gt.FinishReason.STOP
    u = r.usage_metadata
    assert u.prompt_token_count == G_PROMPT_TOKENS and u.candidates_token_count == 5
    assert u.total_token_count == G_PROMPT_TOKENS + 5 and u.cached_content_token_count is None
    assert r.model_version == "gemini-fake?tokens=5" and r.response_id.startswith("fake-")


def test_gemini_stream_text(gem):
    chunks = list(gem.models.generate_content_stream(
        model=gm("g?tokens=6"), contents=G_CONTENTS,
        config=gt.GenerateContentConfig(system_instruction=SYSTEM)))
    assert "".join(c.text or "" for c in chunks) == words(PROMPT, 6)
    assert len(chunks) == 7
    last = chunks[-1]
    assert last.candidates[0].finish_reason == gt.FinishReason.STOP
    assert last.usage_metadata.candidates_token_count == 6
    assert last.usage_metadata.prompt_token_count == G_PROMPT_TOKENS


G_TOOL = gt.Tool(function_declarations=[gt.FunctionDeclaration(
    name="weather", description="Weather for a city",
    parameters=gt.Schema(type=gt.Type.OBJECT,
                         properties={"city": gt.Schema(type=gt.Type.STRING),
                                     "days": gt.Schema(type=gt.Type.INTEGER)},
                         required=["city", "days"]))])
G_NOAFC = gt.AutomaticFunctionCallingConfig(disable=True)


def test_gemini_tool_whole_and_stream(gem):
    cfg = gt.GenerateContentConfig(tools=[G_TOOL], automatic_function_calling=G_NOAFC)
    r = gem.models.generate_content(model="g", contents="weather?", config=cfg)
    fc = r.function_calls[0]
    assert fc.name == "weather" and fc.args == ARGS
    assert r.candidates[0].finish_reason == gt.FinishReason.STOP
    calls = [fc for c in gem.models.generate_content_stream(model="g", contents="weather?",
                                                            config=cfg)
             for fc in (c.function_calls or [])]
    assert len(calls) == 1 and calls[0].args == ARGS
    cfg = gt.GenerateContentConfig(tools=[G_TOOL], automatic_function_calling=G_NOAFC,
                                   tool_config=gt.ToolConfig(function_calling_config=gt.FunctionCallingConfig(mode="NONE")))
    r = gem.models.generate_content(model=gm("g?tokens=2"), contents="weather?", config=cfg)
    assert r.function_calls is None and r.text == words("weather?", 2)


def test_gemini_function_response_round_trip(gem):
    contents = [gt.Content(role="user", parts=[gt.Part(text="weather?")]),
                gt.Content(role="model", parts=[gt.Part(function_call=gt.FunctionCall(
                    name="weather", args=ARGS))]),
                gt.Content(role="user", parts=[gt.Part(function_response=gt.FunctionResponse(
                    name="weather", response={"result": "sunny"}))])]
    r = gem.models.generate_content(model=gm("g?tokens=3"), contents=contents)
    assert r.usage_metadata.prompt_token_count == toks(len("weather?")) + 4 + 4


def test_gemini_json_modes(gem):
    r = gem.models.generate_content(model=gm("g?tokens=4"), contents=PROMPT,
                                    config=gt.GenerateContentConfig(
                                        response_mime_type="application/json"))
    assert json.loads(r.text) == {"answer": words(PROMPT, 4).strip()}
    r = gem.models.generate_content(model="g", contents=PROMPT,
                                    config=gt.GenerateContentConfig(
                                        response_mime_type="application/json",
                                        response_schema=CITY_SCHEMA))
    assert json.loads(r.text) == ARGS


def test_gemini_limits_stop_and_cache(gem):
    r = gem.models.generate_content(model=gm("g?tokens=10"), contents=PROMPT,
                                    config=gt.GenerateContentConfig(max_output_tokens=3))
    assert r.candidates[0].finish_reason == gt.FinishReason.MAX_TOKENS
    assert r.usage_metadata.candidates_token_count == 3
    full = words(PROMPT, 10)
    stop = full.split(" ")[3]
    r = gem.models.generate_content(model=gm("g?tokens=10"), contents=PROMPT,
                                    config=gt.GenerateContentConfig(stop_sequences=[stop]))
    assert r.text == full[:full.index(stop)]
    assert r.candidates[0].finish_reason == gt.FinishReason.STOP
    r = gem.models.generate_content(model=gm("g?tokens=2&cached=50"), contents=PROMPT)
    u = r.usage_metadata
    assert u.cached_content_token_count == 50
    assert u.prompt_token_count == toks(len(PROMPT)) + 50  # cache counted inside


def test_gemini_safety_and_blocked(gem):
    r = gem.models.generate_content(model=gm("g?fault=safety"), contents=PROMPT)
    assert r.candidates[0].finish_reason == gt.FinishReason.SAFETY and r.text is None
    r = gem.models.generate_content(model=gm("g?fault=blocked"), contents=PROMPT)
    assert r.prompt_feedback.block_reason == gt.BlockedReason.SAFETY and not r.candidates
    chunks = list(gem.models.generate_content_stream(model=gm("g?fault=safety"),
                                                     contents=PROMPT))
    assert chunks[-1].candidates[0].finish_reason == gt.FinishReason.SAFETY


@pytest.mark.parametrize("status,cls,name", [
    (400, "ClientError", "INVALID_ARGUMENT"), (403, "ClientError", "PERMISSION_DENIED"),
    (404, "ClientError", "NOT_FOUND"), (429, "ClientError", "RESOURCE_EXHAUSTED"),
    (500, "ServerError", "INTERNAL"), (503, "ServerError", "UNAVAILABLE")])
def test_gemini_errors(gem, status, cls, name):
    with pytest.raises(getattr(genai_errors, cls)) as ei:
        gem.models.generate_content(model=gm("g?status=%d" % status), contents="x")
    assert ei.value.code == status and ei.value.status == name
    with pytest.raises(getattr(genai_errors, cls)) as ei:
        list(gem.models.generate_content_stream(model=gm("g?status=%d" % status),
                                                contents="x"))
    assert ei.value.code == status


def test_gemini_bad_key_and_query_key(fake):
    bad = genai.Client(api_key="wrong", http_options=gt.HttpOptions(
        base_url=fake, retry_options=gt.HttpRetryOptions(attempts=1)))
    with pytest.raises(genai_errors.ClientError) as ei:
        bad.models.generate_content(model="g", contents="x")
    assert ei.value.code == 400 and ei.value.status == "INVALID_ARGUMENT"
    r = httpx.post(fake + "/v1beta/models/g:generateContent?key=" + KEY,
                   json={"contents": [{"parts": [{"text": "x"}]}]})
    assert r.status_code == 200 and r.json()["candidates"][0]["finishReason"] == "STOP"


# ------------------------------------------------------------ Ollama

@pytest.fixture(scope="module")
def oll(fake):
    return ollama.Client(host=fake)


O_MSGS = [{"role": "system", "content": SYSTEM},
          {"role": "user", "content": PROMPT, "images": ["iVBORw0KGgo="]}]
O_PROMPT_TOKENS = toks(len(PROMPT)) + toks(len(SYSTEM))


def test_ollama_whole_text(oll):
    r = oll.chat(model="llama-fake?tokens=5", messages=O_MSGS, stream=False,
                 options={"temperature": 0, "seed": 1}, keep_alive="5m")
    assert r.message.role == "assistant" and r.message.content == words(PROMPT, 5)
    assert r.done and r.done_reason == "stop"
    assert r.prompt_eval_count == O_PROMPT_TOKENS and r.eval_count == 5
    assert r.total_duration > 0 and r.eval_duration > 0 and r.created_at.endswith("Z")


def test_ollama_stream_text_is_the_default(oll, fake):
    parts = list(oll.chat(model="l?tokens=6", messages=O_MSGS, stream=True))
    assert "".join(p.message.content for p in parts) == words(PROMPT, 6)
    assert [p.done for p in parts] == [False] * 6 + [True]
    assert parts[-1].eval_count == 6 and parts[-1].done_reason == "stop"
    # Without "stream" at all, Ollama streams (NDJSON).
    r = httpx.post(fake + "/api/chat", json={"model": "l?tokens=2", "messages": O_MSGS})
    assert r.headers["content-type"] == "application/x-ndjson"
    assert len(r.text.strip().split("\n")) == 3


O_TOOLS = [{"type": "function", "function": {"name": "weather", "description": "Weather",
                                             "parameters": CITY_SCHEMA}}]


def test_ollama_tools_whole_and_stream(oll):
    r = oll.chat(model="l", messages=[{"role": "user", "content": "weather?"}],
                 tools=O_TOOLS, stream=False)
    tc = r.message.tool_calls[0]
    assert tc.function.name == "weather" and tc.function.arguments == ARGS
    calls = [tc for p in oll.chat(model="l", messages=[{"role": "user", "content": "weather?"}],
                                  tools=O_TOOLS, stream=True)
             for tc in (p.message.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.arguments == ARGS
    r = oll.chat(model="l?tokens=1", stream=False, messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "weather", "arguments": ARGS}}]},
        {"role": "tool", "content": "sunny"}])
    assert r.prompt_eval_count == toks(8) + 4 + toks(5)


def test_ollama_json_modes_and_limits(oll):
    r = oll.chat(model="l?tokens=4", messages=[{"role": "user", "content": PROMPT}],
                 format="json", stream=False)
    assert json.loads(r.message.content) == {"answer": words(PROMPT, 4).strip()}
    r = oll.chat(model="l", messages=[{"role": "user", "content": PROMPT}],
                 format=CITY_SCHEMA, stream=False)
    assert json.loads(r.message.content) == ARGS
    r = oll.chat(model="l?tokens=10", messages=[{"role": "user", "content": PROMPT}],
                 options={"num_predict": 3}, stream=False)
    assert r.done_reason == "length" and r.eval_count == 3
    full = words(PROMPT, 10)
    stop = full.split(" ")[2]
    r = oll.chat(model="l?tokens=10", messages=[{"role": "user", "content": PROMPT}],
                 options={"stop": [stop]}, stream=False)
    assert r.message.content == full[:full.index(stop)] and r.done_reason == "stop"


@pytest.mark.parametrize("status", [400, 404, 500])
def test_ollama_errors(oll, status):
    for stream in (False, True):
        with pytest.raises(ollama.ResponseError) as ei:
            r = oll.chat(model="x?status=%d" % status,
                         messages=[{"role": "user", "content": "x"}], stream=stream)
            if stream:
                list(r)
        assert ei.value.status_code == status
        if status == 404:
            assert ei.value.error == "model 'x' not found"


def test_ollama_tags_and_version(oll, fake):
    names = [m.model for m in oll.list().models]
    assert "fake-small:latest" in names
    assert httpx.get(fake + "/api/version").json()["version"]


def test_ollama_ignores_require_key(fake):
    r = httpx.post(fake + "/api/chat", json={"model": "l?tokens=1", "stream": False,
                                             "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200


# ------------------------------------------------------------ fixtures

def test_fixtures_are_current(tmp_path):
    """The committed fixtures are what capture_fixtures.py records now."""
    capture_fixtures.capture(BIN, str(tmp_path))
    fixtures = os.path.join(ROOT, "tests/fixtures")
    for fmt in capture_fixtures.FORMATS:
        for name in sorted(os.listdir(tmp_path / fmt)):
            with open(os.path.join(fixtures, fmt, name), "rb") as f:
                assert f.read() == (tmp_path / fmt / name).read_bytes(), (fmt, name)
