"""The same official-openai-SDK cases on each of the demo's six providers.

The gateway's config is built from relay.example.yaml itself: its six
providers (openai, groq, mistral: kind openai; anthropic; gemini; ollama)
with every base_url moved from the demo's fake (127.0.0.1:9000) to a fake
started on a free port, and its models with the fake's latency script
replaced by `?tokens=12` (fast, fixed length). Each provider's first model
in the example is the one tested, plus three scripted error models per
provider (`<provider>-429`, `-500`, `-400`, and `-cut`, a stream cut
after three tokens). The fake answers each provider
in that provider's own wire format (docs/fakeprov.md) and requires its key
(in the format's header), so a case passing means the adapter's request,
answer, stream and error translation held for that provider.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import yaml

import relaytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "relay.example.yaml"
PROVIDERS = ["openai", "groq", "mistral", "anthropic", "gemini", "ollama"]
KINDS = {"openai": "openai", "groq": "openai", "mistral": "openai",
         "anthropic": "anthropic", "gemini": "gemini", "ollama": "ollama"}
DEMO_FAKE = "http://127.0.0.1:9000"
TOKENS = 12
MSG = [{"role": "user", "content": "Tell me about six providers."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"},
                           "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
WEATHER_ARGS = {"city": "value", "unit": "c"}   # how the fake fills them


def example():
    with open(EXAMPLE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def first_model(cfg, provider):
    for m in cfg["models"]:
        if m["provider"] == provider:
            return m
    raise AssertionError("relay.example.yaml has no model on provider %s" % provider)


def base_id(upstream):
    return upstream.split("?", 1)[0]


def six_config():
    """providers and models of relay.example.yaml, pointed at ${FAKE_PORT}."""
    cfg = example()
    providers = {}
    for name, p in cfg["providers"].items():
        p = dict(p)
        assert p["base_url"].startswith(DEMO_FAKE), \
            "%s: base_url %r is not the demo fake" % (name, p["base_url"])
        p["base_url"] = "http://127.0.0.1:${FAKE_PORT}" + p["base_url"][len(DEMO_FAKE):]
        p["api_key"] = "${FAKE_API_KEY}"
        providers[name] = p
    models = []
    for m in cfg["models"]:
        m = dict(m)
        m["upstream"] = base_id(m["upstream"]) + "?tokens=%d" % TOKENS
        models.append(m)
    for p in PROVIDERS:
        up = base_id(first_model(cfg, p)["upstream"])
        for suffix, script in (("429", "status=429&retry_after=0"),
                               ("500", "status=500"),
                               ("400", "status=400"),
                               ("cut", "fault=cut&tokens=%d&after=3" % TOKENS)):
            models.append({"name": "%s-%s" % (p, suffix), "provider": p,
                           "upstream": "%s?%s" % (up, script)})
    return {"providers": providers, "models": models}


@pytest.fixture(scope="module")
def stack():
    """Overrides conftest's stack for this module (so relay_alive checks
    this gateway): one fake, one gateway with the six providers."""
    try:
        st = relaytest.Stack(six_config())
    except relaytest.CaseFailure as e:
        pytest.fail("could not start the fake provider and the gateway: %s" % e,
                    pytrace=False)
    yield st
    st.close()
    shutil.rmtree(st.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def models():
    cfg = example()
    return {p: first_model(cfg, p)["name"] for p in PROVIDERS}


@pytest.fixture()
def client(stack):
    with openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % stack.relay_port,
                       api_key=stack.relay_key, max_retries=0, timeout=15) as c:
        yield c


def last_upstream(stack, provider):
    """The last request the fake received for this provider's format."""
    kind = KINDS[provider]
    want = {"openai": "/chat/completions", "anthropic": "/v1/messages",
            "gemini": "/v1beta/models/", "ollama": "/api/chat"}[kind]
    reqs = [r for r in stack.fake_requests() if want in r.get("path", "")]
    assert reqs, "the fake received no %s request" % kind
    return reqs[-1]


# ------------------------------------------------------------- the config

def test_example_defines_the_six_providers():
    cfg = example()
    assert {n: p["kind"] for n, p in cfg["providers"].items()} == KINDS
    for p in PROVIDERS:
        first_model(cfg, p)
    assert {"openai": "/v1", "groq": "/v1", "mistral": "/v1", "anthropic": "/v1",
            "gemini": "/v1beta", "ollama": ""} == \
        {n: p["base_url"][len(DEMO_FAKE):] for n, p in cfg["providers"].items()}


def test_write_config_switches_one_provider(tmp_path):
    """GROQ_API_KEY set: groq's base_url and its models' upstream ids become
    the real ones; the other five stay on the fake; the result is valid."""
    env = dict(os.environ, GROQ_API_KEY="gsk_test", RELAY_API_KEY="rk-test-0123456789abcdef")
    for p in PROVIDERS:
        if p != "groq":
            env.pop(p.upper() + "_API_KEY", None)
    env.pop("OLLAMA_BASE_URL", None)
    dst = tmp_path / "relay.yaml"
    out = subprocess.run([sys.executable, str(ROOT / "scripts/write_config.py"),
                          "--env-file", str(tmp_path / "none.env"), str(EXAMPLE), str(dst)],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert "real provider: groq" in out, out
    cfg = yaml.safe_load(dst.read_text())
    assert cfg["providers"]["groq"]["base_url"] == "https://api.groq.com/openai/v1"
    for p in PROVIDERS:
        if p != "groq":
            assert cfg["providers"][p]["base_url"].startswith(DEMO_FAKE), p
    for m in cfg["models"]:
        assert ("?" in m["upstream"]) == (m["provider"] != "groq"), m
    chk = subprocess.run([os.environ.get("RELAY_BIN", str(ROOT / "build/relay")),
                          "config", "check", "--config", str(dst)],
                         env=env, capture_output=True, text=True)
    assert chk.returncode == 0, chk.stdout + chk.stderr


# ------------------------------------------------------------- completions

@pytest.mark.parametrize("provider", PROVIDERS)
def test_non_stream(client, models, provider):
    model = models[provider]
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MSG)
    assert raw.headers.get("x-relay-provider") == provider, dict(raw.headers)
    assert raw.headers.get("x-relay-model") == model, dict(raw.headers)
    r = raw.parse()
    assert r.object == "chat.completion"
    assert r.model == model, "model must be the configured name, got %r" % r.model
    assert r.id
    ch = r.choices[0]
    assert ch.finish_reason == "stop"
    assert ch.message.role == "assistant"
    assert ch.message.content and len(ch.message.content.split()) == TOKENS, ch.message.content
    assert r.usage is not None
    assert r.usage.completion_tokens == TOKENS, r.usage
    assert r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_include_usage(client, models, provider):
    model = models[provider]
    whole = client.chat.completions.create(model=model, messages=MSG)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=MSG, stream=True, stream_options={"include_usage": True})
    assert raw.headers.get("x-relay-provider") == provider
    chunks = list(raw.parse())
    assert chunks, "no chunks"
    assert all(c.model == model for c in chunks), {c.model for c in chunks}
    assert len({c.id for c in chunks}) == 1, "chunks of one stream must share one id"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content, (text, whole.choices[0].message.content)
    reasons = [c.choices[0].finish_reason for c in chunks
               if c.choices and c.choices[0].finish_reason]
    assert reasons == ["stop"], reasons
    usage = [c for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0] is chunks[-1], "one usage chunk, the last"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens == TOKENS
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


# ------------------------------------------------------------------- tools

@pytest.mark.parametrize("provider", PROVIDERS)
def test_tools_non_stream(client, models, provider):
    r = client.chat.completions.create(model=models[provider], messages=MSG,
                                       tools=[WEATHER_TOOL])
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls", ch
    calls = ch.message.tool_calls
    assert calls and len(calls) == 1, ch.message
    assert calls[0].id and calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == WEATHER_ARGS


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tools_stream(client, models, provider):
    stream = client.chat.completions.create(model=models[provider], messages=MSG,
                                            tools=[WEATHER_TOOL], stream=True)
    calls = {}
    reasons = []
    for c in stream:
        if not c.choices:
            continue
        d = c.choices[0].delta
        for tc in d.tool_calls or []:
            cur = calls.setdefault(tc.index, {"id": None, "name": "", "args": ""})
            if tc.id:
                cur["id"] = tc.id
            if tc.function and tc.function.name:
                cur["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                cur["args"] += tc.function.arguments
        if c.choices[0].finish_reason:
            reasons.append(c.choices[0].finish_reason)
    assert reasons == ["tool_calls"], reasons
    assert list(calls) == [0], calls
    assert calls[0]["id"] and calls[0]["name"] == "get_weather", calls
    assert json.loads(calls[0]["args"]) == WEATHER_ARGS


# --------------------------------------------------------------- JSON mode

@pytest.mark.parametrize("provider", PROVIDERS)
def test_json_mode(stack, client, models, provider):
    r = client.chat.completions.create(model=models[provider], messages=MSG,
                                       response_format={"type": "json_object"})
    content = r.choices[0].message.content
    up = last_upstream(stack, provider)["body"]
    if provider == "anthropic":
        # docs/providers.md: emulated, an instruction in `system`, best effort,
        # not validated: the fake (like Claude may) answers in plain text.
        assert "response_format" not in up, up
        assert re.search(r"JSON", json.dumps(up.get("system"))), up.get("system")
        assert content and content.strip()
        return
    assert json.loads(content) == {"answer": " ".join(content_words(content))}
    if KINDS[provider] == "openai":
        assert up.get("response_format") == {"type": "json_object"}, up
    elif provider == "gemini":
        assert up["generationConfig"]["responseMimeType"] == "application/json", up
    elif provider == "ollama":
        assert up.get("format") == "json", up


def content_words(content):
    return json.loads(content)["answer"].split()


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "anthropic"])
def test_json_mode_stream(client, models, provider):
    stream = client.chat.completions.create(model=models[provider], messages=MSG,
                                            response_format={"type": "json_object"},
                                            stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    doc = json.loads(text)
    assert isinstance(doc, dict) and len(doc["answer"].split()) == TOKENS, doc


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("provider", PROVIDERS)
def test_rate_limit_error(client, provider):
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model=provider + "-429", messages=MSG)
    assert ei.value.status_code == 429
    assert ei.value.response.headers.get("x-relay-provider") == provider


@pytest.mark.parametrize("provider", PROVIDERS)
def test_server_error(client, provider):
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model=provider + "-500", messages=MSG)
    assert ei.value.status_code == 500
    assert ei.value.response.headers.get("x-relay-provider") == provider


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_request_error(client, provider):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=provider + "-400", messages=MSG)
    assert ei.value.status_code == 400
    assert ei.value.response.headers.get("x-relay-provider") == provider
    body = ei.value.body or {}
    assert body.get("type") == "invalid_request_error" or \
        (body.get("error") or {}).get("type") == "invalid_request_error", ei.value.body


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_error_before_output(client, provider):
    """A 429 upstream on a stream request: the SDK raises before any chunk."""
    with pytest.raises(openai.RateLimitError):
        for _ in client.chat.completions.create(model=provider + "-429", messages=MSG,
                                                stream=True):
            pass


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_cut_raises(client, provider):
    """The upstream closes mid-stream: the gateway sends an SSE error event and
    no [DONE]; the SDK raises APIError after the first tokens. An Anthropic
    model is asked to go on by assistant prefill first (docs/routing.md,
    "A stream cut after output started"): its continuation comes, and is cut
    too (every stream of a -cut model is), so the SDK raises after more."""
    got = []
    with pytest.raises(openai.APIError) as ei:
        for c in client.chat.completions.create(model=provider + "-cut", messages=MSG,
                                                stream=True):
            if c.choices:
                got.append(c.choices[0].delta.content or "")
    words = "".join(got).split()
    if provider == "anthropic":
        assert len(words) > 3, got
    else:
        assert len(words) == 3, got
    assert not isinstance(ei.value, openai.APIStatusError), "status was 200: %r" % ei.value


# ------------------------------------------------------------------- more

@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_without_include_usage(client, models, provider):
    chunks = list(client.chat.completions.create(model=models[provider], messages=MSG,
                                                 stream=True))
    assert chunks and all(c.choices for c in chunks), "a usage-only chunk was not asked for"
    assert not any(getattr(c, "usage", None) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_max_tokens_length(client, models, provider, stream):
    kw = dict(model=models[provider], messages=MSG, max_tokens=3)
    if stream:
        chunks = list(client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **kw))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reason = [c.choices[0].finish_reason for c in chunks
                  if c.choices and c.choices[0].finish_reason]
        usage = chunks[-1].usage
    else:
        r = client.chat.completions.create(**kw)
        text, reason, usage = r.choices[0].message.content, [r.choices[0].finish_reason], r.usage
    assert reason == ["length"], reason
    assert len(text.split()) == 3, text
    assert usage.completion_tokens == 3, usage


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_result_round_trip(stack, client, models, provider):
    """The call the SDK got is sent back with its result: a text answer, and
    the upstream request carries the call and the result in its format."""
    first = client.chat.completions.create(model=models[provider], messages=MSG,
                                           tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    msgs = MSG + [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": call.id, "type": "function",
                         "function": {"name": call.function.name,
                                      "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21})},
    ]
    r = client.chat.completions.create(model=models[provider], messages=msgs,
                                       tools=[WEATHER_TOOL], tool_choice="none")
    assert r.choices[0].finish_reason == "stop", r.choices[0]
    assert r.choices[0].message.content, r.choices[0].message
    up = json.dumps(last_upstream(stack, provider)["body"])
    assert "temp_c" in up and "get_weather" in up, up
