#!/usr/bin/env python3
"""selftest.py - end-to-end checks of build/relay-fake (relay-fake's own suite).

Starts the fake on a free port (several instances: default, --workers 2,
--require-key) and checks what docs/fakeprov.md promises: answers validated
against the published OpenAI schemas (/work/shared/openai-chat-schemas.json
or $OPENAI_SCHEMAS), the usage and word formulas recomputed here, every
status and fault of the script, `first` and `p`, pacing, pipelining,
chunked request bodies, the request log, and the official `openai` SDK
pointed straight at the fake; for the Anthropic, Gemini and Ollama formats,
every fault, pacing, 429s and --require-key (their SDK checks live in
tests/e2e/provider_sdks/). Needs `pip install jsonschema openai`.

usage: python3 tools/fakeprov/selftest.py [--bin build/relay-fake]
Exit status 0 when every check passes; one line per check.
"""
import argparse
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMAS = os.environ.get("OPENAI_SCHEMAS", "/work/shared/openai-chat-schemas.json")
VOCAB = (
    "the quick brown fox jumps over lazy dog relay routes every prompt to a "
    "model that is fast and cheap tokens stream back as they land cache hits "
    "cost nothing keys have limits which hold across all nodes latency stays "
    "low while quality remains high we ship it today with care for users who "
    "need answers in time at scale on one small box").split()
assert len(VOCAB) == 64

FAILED = []


def check(name, cond, detail=""):
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else "  " + str(detail)[:300]))
    if not cond:
        FAILED.append(name)


# ---------------------------------------------------------------- formulas

def fnv1a(h, data):
    for b in data:
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def content_text(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text"
                       and isinstance(p.get("text"), str))
    return ""


def expected_words(messages, n):
    text = ""
    for m in reversed(messages):
        if m.get("role") == "user":
            text = content_text(m.get("content"))
            break
    seed = fnv1a(14695981039346656037, text.encode())
    return [VOCAB[fnv1a(seed, i.to_bytes(4, "little")) % 64] for i in range(n)]


def expected_prompt_tokens(messages):
    return sum(math.ceil(len(content_text(m.get("content"))) / 4) + 4 for m in messages)


# ---------------------------------------------------------------- schemas

def openapi_to_jsonschema(node):
    """Turns OpenAPI's `nullable: true` into JSON Schema's anyOf null."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: openapi_to_jsonschema(v) for k, v in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def validator(name):
    import jsonschema
    doc = openapi_to_jsonschema(json.load(open(SCHEMAS)))
    schema = {"$ref": "#/components/schemas/" + name, "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


def schema_errors(name, obj):
    return [e.message for e in validator(name).iter_errors(obj)]


# ---------------------------------------------------------------- the fake

class Fake:
    def __init__(self, binary, *flags):
        self.proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", *flags],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=5)


def request(port, method, path, body=None, headers=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = json.dumps(body) if isinstance(body, (dict, list)) else body
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    raw = r.read()
    c.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), raw


def chat(port, body, **kw):
    st, h, raw = request(port, "POST", "/v1/chat/completions", body, **kw)
    return st, h, raw


def events(raw):
    """Splits an SSE body into data payloads."""
    out = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            out.append(block[6:])
    return out


def raw_exchange(port, payload, wait=1.0):
    """Sends payload on a raw socket; returns (bytes read, how it ended)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(payload)
    s.settimeout(wait)
    got = b""
    end = "timeout"
    try:
        while True:
            b = s.recv(65536)
            if not b:
                end = "closed"
                break
            got += b
    except socket.timeout:
        end = "timeout"
    except ConnectionResetError:
        end = "reset"
    s.close()
    return got, end


def post_bytes(model, stream=True, tokens_msg="hi"):
    body = json.dumps({"model": model, "stream": stream,
                       "messages": [{"role": "user", "content": tokens_msg}]})
    return ("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)).encode()


MSGS = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "What is "},
                                     {"type": "image_url", "image_url": {"url": "x"}},
                                     {"type": "text", "text": "the capital of France? é"}]}]


# ---------------------------------------------------------------- checks

def check_text(port):
    st, h, raw = chat(port, {"model": "fake-small", "messages": MSGS})
    obj = json.loads(raw)
    check("non-stream 200 json", st == 200 and h["content-type"] == "application/json", st)
    check("non-stream matches CreateChatCompletionResponse",
          not schema_errors("CreateChatCompletionResponse", obj),
          schema_errors("CreateChatCompletionResponse", obj))
    words = expected_words(MSGS, 16)
    check("content is the documented words", obj["choices"][0]["message"]["content"]
          == "".join(w + " " for w in words), obj["choices"][0]["message"]["content"])
    u = obj["usage"]
    check("usage follows the formula", u["prompt_tokens"] == expected_prompt_tokens(MSGS)
          and u["completion_tokens"] == 16 and u["total_tokens"] == u["prompt_tokens"] + 16
          and u["prompt_tokens_details"]["cached_tokens"] == 0
          and u["completion_tokens_details"]["reasoning_tokens"] == 0, u)
    check("id, model echo, fingerprint", obj["id"].startswith("chatcmpl-fake-")
          and obj["model"] == "fake-small" and obj["system_fingerprint"] == "fp_fake", obj)
    check("finish stop, refusal null, logprobs null",
          obj["choices"][0]["finish_reason"] == "stop"
          and obj["choices"][0]["message"]["refusal"] is None
          and obj["choices"][0]["logprobs"] is None, obj)
    _, _, raw2 = chat(port, {"model": "fake-small", "messages": MSGS})
    check("same prompt, same answer", json.loads(raw2)["choices"][0]["message"]["content"]
          == obj["choices"][0]["message"]["content"])
    _, _, raw3 = chat(port, {"model": "m?tokens=40", "max_tokens": 5, "messages": MSGS})
    o3 = json.loads(raw3)
    check("max_tokens caps and says length", o3["usage"]["completion_tokens"] == 5
          and o3["choices"][0]["finish_reason"] == "length", o3)
    _, _, raw4 = chat(port, {"model": "m?tokens=3", "max_completion_tokens": 50,
                             "messages": MSGS})
    check("tokens key sets the length", json.loads(raw4)["usage"]["completion_tokens"] == 3)
    st, _, raw5 = request(port, "POST", "/chat/completions",
                          {"model": "m", "messages": MSGS})
    check("/chat/completions also answers", st == 200, raw5)


def check_stream(port):
    body = {"model": "fake-small?tokens=5", "stream": True,
            "stream_options": {"include_usage": True}, "messages": MSGS}
    st, h, raw = chat(port, body)
    ev = events(raw)
    check("stream is text/event-stream, chunked", st == 200
          and h["content-type"] == "text/event-stream"
          and h.get("transfer-encoding") == "chunked", h)
    check("stream ends with [DONE]", ev[-1] == "[DONE]", ev[-1:])
    chunks = [json.loads(e) for e in ev[:-1]]
    errs = [schema_errors("CreateChatCompletionStreamResponse", c) for c in chunks]
    check("every chunk matches CreateChatCompletionStreamResponse", not any(errs), errs)
    check("first delta is role + empty content",
          chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""})
    words = expected_words(MSGS, 5)
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks[1:6]]
    check("one chunk per token, word + space", deltas == [w + " " for w in words], deltas)
    check("finish chunk then usage chunk",
          chunks[6]["choices"][0]["finish_reason"] == "stop"
          and chunks[6]["choices"][0]["delta"] == {}
          and chunks[7]["choices"] == [] and chunks[7]["usage"]["completion_tokens"] == 5,
          chunks[6:])
    check("earlier chunks carry usage null",
          all("usage" in c and c["usage"] is None for c in chunks[:7]))
    body.pop("stream_options")
    _, _, raw = chat(port, body)
    chunks = [json.loads(e) for e in events(raw)[:-1]]
    check("no include_usage: no usage at all", all("usage" not in c for c in chunks)
          and len(chunks) == 7, chunks[-1])


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                       "metric": {"type": "boolean"}, "hours": {"type": "array"},
                       "opts": {"type": "object"}, "ratio": {"type": "number"},
                       "unit": {"type": "string", "enum": ["c", "f"]},
                       "note": {"type": "string"}},
        "required": ["city", "days", "metric", "hours", "opts", "ratio", "unit"]}}},
    {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}]
ARGS = {"city": "value", "days": 1, "metric": True, "hours": [], "opts": {},
        "ratio": 1, "unit": "c"}


def check_tools(port):
    st, _, raw = chat(port, {"model": "m", "messages": MSGS, "tools": TOOLS})
    obj = json.loads(raw)
    msg = obj["choices"][0]["message"]
    check("tool call matches the schema", st == 200
          and not schema_errors("CreateChatCompletionResponse", obj),
          schema_errors("CreateChatCompletionResponse", obj))
    tc = msg["tool_calls"][0]
    check("tool call: first tool, required args, content null",
          msg["content"] is None and tc["function"]["name"] == "get_weather"
          and json.loads(tc["function"]["arguments"]) == ARGS
          and tc["id"].startswith("call_fake_") and tc["type"] == "function"
          and obj["choices"][0]["finish_reason"] == "tool_calls", msg)
    _, _, raw = chat(port, {"model": "m", "messages": MSGS, "tools": TOOLS,
                            "tool_choice": {"type": "function",
                                            "function": {"name": "noop"}}})
    tc = json.loads(raw)["choices"][0]["message"]["tool_calls"][0]
    check("tool_choice names the tool", tc["function"]["name"] == "noop"
          and tc["function"]["arguments"] == "{}", tc)
    _, _, raw = chat(port, {"model": "m", "messages": MSGS, "tools": TOOLS,
                            "tool_choice": "none"})
    check("tool_choice none gives text",
          isinstance(json.loads(raw)["choices"][0]["message"]["content"], str))
    st, _, raw = chat(port, {"model": "m", "messages": MSGS, "tools": TOOLS,
                             "stream": True})
    ev = events(raw)
    chunks = [json.loads(e) for e in ev[:-1]]
    errs = [schema_errors("CreateChatCompletionStreamResponse", c) for c in chunks]
    check("tool stream chunks match the schema", not any(errs), errs)
    first = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
    frags = [c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
             for c in chunks[2:-1]]
    check("tool stream: header delta, 2-3 fragments, tool_calls finish",
          first["index"] == 0 and first["id"].startswith("call_fake_")
          and first["type"] == "function" and first["function"]["name"] == "get_weather"
          and first["function"]["arguments"] == "" and 2 <= len(frags) <= 3
          and json.loads("".join(frags)) == ARGS
          and chunks[-1]["choices"][0]["finish_reason"] == "tool_calls", chunks)


def check_json_modes(port):
    _, _, raw = chat(port, {"model": "m?tokens=4", "messages": MSGS,
                            "response_format": {"type": "json_object"}})
    content = json.loads(raw)["choices"][0]["message"]["content"]
    check("json_object gives a JSON object",
          json.loads(content) == {"answer": " ".join(expected_words(MSGS, 4))}, content)
    _, _, raw = chat(port, {"model": "m?tokens=4", "messages": MSGS, "stream": True,
                            "response_format": {"type": "json_object"}})
    parts = [json.loads(e)["choices"][0]["delta"].get("content", "")
             for e in events(raw)[:-1]]
    check("json_object streams to the same object", "".join(parts) == content, parts)
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"]}
    _, _, raw = chat(port, {"model": "m", "messages": MSGS, "response_format": {
        "type": "json_schema", "json_schema": {"name": "p", "schema": schema}}})
    content = json.loads(raw)["choices"][0]["message"]["content"]
    check("json_schema fills required properties",
          json.loads(content) == {"name": "value", "age": 1}, content)


ERRORS = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
          404: ("invalid_request_error", "model_not_found"),
          429: ("requests", "rate_limit_exceeded"), 500: ("server_error", None),
          503: ("server_error", "overloaded"), 418: ("invalid_request_error", None),
          502: ("server_error", None)}


def check_statuses(port):
    for status, (typ, code) in ERRORS.items():
        st, h, raw = chat(port, {"model": "m?status=%d" % status, "messages": MSGS})
        obj = json.loads(raw)
        check("status=%d" % status, st == status and obj["error"]["type"] == typ
              and obj["error"]["code"] == code
              and not schema_errors("ErrorResponse", obj), (st, obj))
    _, h, _ = chat(port, {"model": "m?status=429", "messages": MSGS})
    check("429 has Retry-After 1", h.get("retry-after") == "1", h)
    _, h, _ = chat(port, {"model": "m?status=429&retry_after=7", "messages": MSGS})
    check("retry_after=7", h.get("retry-after") == "7", h)
    _, h, _ = chat(port, {"model": "m?status=429&retry_after=0", "messages": MSGS})
    check("retry_after=0 omits the header", "retry-after" not in h, h)
    st, _, raw = chat(port, {"model": "m?status=400&code=context_length_exceeded",
                             "messages": MSGS})
    check("code override", st == 400 and json.loads(raw)["error"]["code"]
          == "context_length_exceeded", raw)
    for bad, why in [("{not json", "invalid JSON"), (json.dumps({"model": "m"}), "no messages"),
                     (json.dumps({"messages": MSGS}), "no model"),
                     (json.dumps({"model": "m?bogus=1", "messages": MSGS}), "unknown key"),
                     (json.dumps({"model": "m?status=abc", "messages": MSGS}), "bad value"),
                     (json.dumps({"model": "m", "messages": MSGS, "stream": "yes"}), "stream type"),
                     (json.dumps({"model": "m", "messages": MSGS, "max_tokens": 0}), "max_tokens")]:
        st, _, raw = chat(port, bad)
        ok = st == 400
        try:
            ok = ok and json.loads(raw)["error"]["type"] == "invalid_request_error"
        except ValueError:
            ok = False
        check("bad input (%s) gives 400" % why, ok, (st, raw))
    got, end = raw_exchange(port, b"BLAH / HTTP/9\r\n\r\n", 1)
    check("garbage HTTP gives 400 and close", got.startswith(b"HTTP/1.1 400")
          and end == "closed", (got, end))
    st, _, raw = request(port, "GET", "/nope")
    check("unknown path 404 in OpenAI shape", st == 404 and "error" in json.loads(raw))


def check_faults(port):
    got, end = raw_exchange(port, post_bytes("m?fault=reset"), 1)
    check("fault=reset: RST before any byte", got == b"" and end == "reset", (got, end))
    got, end = raw_exchange(port, post_bytes("m?fault=hang"), 0.5)
    check("fault=hang: nothing, socket open", got == b"" and end == "timeout", (got, end))
    got, end = raw_exchange(port, post_bytes("m?fault=stall&tokens=10&after=3"), 0.5)
    n = got.count(b'"content":"') - 1
    check("fault=stall: 3 tokens then silence", n == 3 and end == "timeout"
          and b"finish_reason\":\"stop" not in got, (n, end))
    got, end = raw_exchange(port, post_bytes("m?fault=cut&tokens=10"), 1)
    n = got.count(b'"content":"') - 1
    check("fault=cut: half the tokens then close, no end", n == 5 and end == "closed"
          and b"[DONE]" not in got and not got.endswith(b"0\r\n\r\n"), (n, end))
    st, _, raw = chat(port, {"model": "m?fault=malformed&tokens=4&after=2",
                             "stream": True, "messages": MSGS})
    ev = events(raw)
    bad = [e for e in ev if not _is_json(e)]
    check("fault=malformed: 2 tokens then a non-JSON event", st == 200 and len(bad) == 1
          and len(ev) == 4 and ev[-1] == bad[0], ev)
    st, _, raw = chat(port, {"model": "m?fault=nodone&tokens=3", "stream": True,
                             "stream_options": {"include_usage": True}, "messages": MSGS})
    ev = events(raw)
    check("fault=nodone: finish and usage, no [DONE], clean end",
          "[DONE]" not in ev and json.loads(ev[-1])["usage"]["completion_tokens"] == 3
          and json.loads(ev[-2])["choices"][0]["finish_reason"] == "stop", ev[-2:])
    t = time.time()
    got, end = raw_exchange(port, post_bytes("m?fault=slowheaders&ttft_ms=200"), 0.6)
    check("fault=slowheaders: headers after ttft, then nothing",
          got.startswith(b"HTTP/1.1 200") and got.endswith(b"\r\n\r\n")
          and end == "timeout", (got, end))
    got, end = raw_exchange(port, post_bytes("m?fault=cut", stream=False), 1)
    check("non-stream cut: partial body then close", got.startswith(b"HTTP/1.1 200")
          and end == "closed", end)


def _is_json(s):
    if s == "[DONE]":
        return True
    try:
        json.loads(s)
        return True
    except ValueError:
        return False


def check_first_and_p(port):
    request(port, "POST", "/_fake/reset")
    sts = [chat(port, {"model": "m?status=503&first=2", "messages": MSGS})[0]
           for _ in range(4)]
    check("first=2: two failures then healthy", sts == [503, 503, 200, 200], sts)
    sts2 = [chat(port, {"model": "m?status=503&first=2&tokens=16", "messages": MSGS})[0]
            for _ in range(1)]
    check("counters are per exact model string", sts2 == [503], sts2)
    request(port, "POST", "/_fake/reset")
    check("reset clears the counters", chat(port, {"model": "m?status=503&first=2",
                                                   "messages": MSGS})[0] == 503)
    seqs = []
    for _ in range(2):
        request(port, "POST", "/_fake/reset")
        seqs.append([chat(port, {"model": "m?status=500&p=0.5", "messages": MSGS})[0]
                     for _ in range(20)])
    check("p=0.5 is deterministic after reset and mixed", seqs[0] == seqs[1]
          and 3 <= seqs[0].count(500) <= 17, seqs)
    sts = [chat(port, {"model": "m?status=503&flap=2", "messages": MSGS})[0]
           for _ in range(7)]
    check("flap=2: fails, recovers and fails again in stretches of 2",
          sts == [503, 503, 200, 200, 503, 503, 200], sts)


def check_connections(port):
    """GET /_fake/connections counts a hanging request as busy until its
    client leaves; POST /_fake/drop closes the other connections."""
    base = json.loads(request(port, "GET", "/_fake/connections")[2])
    s = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"model": "m?fault=hang", "messages": MSGS}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    time.sleep(0.2)
    got = json.loads(request(port, "GET", "/_fake/connections")[2])
    check("a hanging request is busy", got["busy"] == base["busy"] + 1
          and got["open"] >= 2, (base, got))
    request(port, "POST", "/_fake/drop")
    s.settimeout(2)
    check("drop closes the other connections", s.recv(100) == b"")
    s.close()
    time.sleep(0.1)
    got = json.loads(request(port, "GET", "/_fake/connections")[2])
    check("nothing busy once it is gone", got["busy"] == 0, got)


def check_timing(port):
    t = time.time()
    st, _, raw = chat(port, {"model": "m?tps=20&tokens=20", "stream": True, "messages": MSGS})
    dt = time.time() - t
    check("tps=20, 20 tokens takes about 1 s (%.3f s)" % dt, 0.9 <= dt <= 1.2
          and len(events(raw)) == 23, dt)
    t = time.time()
    chat(port, {"model": "m?ttft_ms=300", "messages": MSGS})
    dt = time.time() - t
    check("ttft_ms=300 non-stream (%.3f s)" % dt, 0.29 <= dt <= 0.5, dt)
    t = time.time()
    chat(port, {"model": "m?ttft_ms=100&tps=50&tokens=10", "messages": MSGS})
    dt = time.time() - t
    check("non-stream waits ttft + tokens/tps (%.3f s)" % dt, 0.29 <= dt <= 0.45, dt)
    s = socket.create_connection(("127.0.0.1", port))
    t = time.time()
    s.sendall(post_bytes("m?ttft_ms=300&tokens=2"))
    first = s.recv(65536)
    t_head = time.time() - t
    buf = first
    while b'"content":"' not in buf.split(b'"content":""', 1)[-1]:
        buf += s.recv(65536)
    t_tok = time.time() - t
    s.close()
    check("stream: headers at once, first token at ttft (%.3f/%.3f s)" % (t_head, t_tok),
          t_head < 0.1 and 0.29 <= t_tok <= 0.45)


def check_pipelining(port):
    payload = (post_bytes("m?ttft_ms=200&tokens=2", stream=False, tokens_msg="a")
               + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
               + post_bytes("m?tokens=3", stream=True, tokens_msg="b")
               + b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got, end = raw_exchange(port, payload, 2)
    i1 = got.find(b"chat.completion\"")
    i2 = got.find(b'{"status":"ok"}')
    i3 = got.find(b"[DONE]")
    i4 = got.find(b'"object":"list"')
    check("pipelined requests answered in order, then close",
          got.count(b"HTTP/1.1 200") == 4 and 0 < i1 < i2 < i3 < i4 and end == "closed",
          (i1, i2, i3, i4, end))
    body = json.dumps({"model": "m?tokens=2", "messages": MSGS}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7])
                       for i in range(0, len(body), 7)) + b"0\r\n\r\n"
    got, _ = raw_exchange(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                          b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                          + chunked, 1)
    check("chunked request body", got.startswith(b"HTTP/1.1 200")
          and b"chat.completion" in got, got[:200])
    # keep-alive: many requests on one connection.
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    ok = True
    for i in range(50):
        c.request("POST", "/v1/chat/completions",
                  body=json.dumps({"model": "m", "messages": [{"role": "user", "content": str(i)}]}))
        r = c.getresponse()
        ok = ok and r.status == 200 and json.loads(r.read())["usage"]["completion_tokens"] == 16
    c.close()
    check("50 requests on one keep-alive connection", ok)


def check_log(port):
    request(port, "POST", "/_fake/reset")
    chat(port, {"model": "m1", "messages": MSGS}, headers={"X-Test": "Yes"})
    chat(port, "{oops")
    st, _, raw = request(port, "GET", "/_fake/requests")
    log = json.loads(raw)
    check("request log: two entries, oldest first", st == 200 and len(log) == 2
          and log[0]["body"]["model"] == "m1" and log[1]["body"] == "{oops", log)
    e = log[0]
    check("request log: method, path, lower-case headers, ts_ms",
          e["method"] == "POST" and e["path"] == "/v1/chat/completions"
          and e["headers"].get("x-test") == "Yes" and isinstance(e["ts_ms"], int)
          and abs(e["ts_ms"] / 1000 - time.time()) < 60, e)
    request(port, "POST", "/_fake/reset")
    check("reset empties the log", json.loads(request(port, "GET", "/_fake/requests")[2]) == [])
    for i in range(1005):
        chat(port, {"model": "m?tokens=0", "messages": [{"role": "user", "content": str(i)}]})
    log = json.loads(request(port, "GET", "/_fake/requests")[2])
    check("the log keeps the last 1000", len(log) == 1000
          and log[0]["body"]["messages"][0]["content"] == "5"
          and log[-1]["body"]["messages"][0]["content"] == "1004", len(log))


def check_misc(port):
    st, _, raw = request(port, "GET", "/v1/models")
    obj = json.loads(raw)
    check("/v1/models is a ListModelsResponse", st == 200
          and not schema_errors("ListModelsResponse", obj) and len(obj["data"]) >= 2, obj)
    st, _, raw = request(port, "GET", "/healthz")
    check("/healthz 200", st == 200, st)


def check_sdk(port):
    try:
        from openai import OpenAI
    except ImportError:
        check("openai SDK installed", False, "pip install openai")
        return
    client = OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key="sk-fake")
    r = client.chat.completions.create(model="fake-small", messages=MSGS)
    check("SDK parses a non-stream answer", r.choices[0].message.content
          == "".join(w + " " for w in expected_words(MSGS, 16))
          and r.usage.completion_tokens == 16, r)
    parts, usage = [], None
    for ch in client.chat.completions.create(model="fake-small?tokens=6", messages=MSGS,
                                             stream=True,
                                             stream_options={"include_usage": True}):
        if ch.choices and ch.choices[0].delta.content:
            parts.append(ch.choices[0].delta.content)
        if ch.usage:
            usage = ch.usage
    check("SDK parses a stream", "".join(parts) == "".join(
        w + " " for w in expected_words(MSGS, 6)) and usage.completion_tokens == 6, parts)
    r = client.chat.completions.create(model="m", messages=MSGS, tools=TOOLS)
    check("SDK parses a tool call", json.loads(
        r.choices[0].message.tool_calls[0].function.arguments) == ARGS)
    with client.chat.completions.stream(model="m", messages=MSGS, tools=TOOLS) as s:
        final = s.get_final_completion()
    check("SDK assembles a streamed tool call", json.loads(
        final.choices[0].message.tool_calls[0].function.arguments) == ARGS, final)
    import openai
    try:
        client.with_options(max_retries=0).chat.completions.create(
            model="m?status=429", messages=MSGS)
        check("SDK raises RateLimitError", False)
    except openai.RateLimitError as e:
        check("SDK raises RateLimitError", e.status_code == 429)


def check_key(binary):
    f = Fake(binary, "--require-key", "sekrit")
    try:
        st, _, raw = chat(f.port, {"model": "m", "messages": MSGS})
        check("--require-key: no key is 401 invalid_api_key", st == 401
              and json.loads(raw)["error"]["code"] == "invalid_api_key", raw)
        st, _, _ = chat(f.port, {"model": "m", "messages": MSGS},
                        headers={"Authorization": "Bearer wrong"})
        check("--require-key: wrong key is 401", st == 401)
        st, _, _ = chat(f.port, {"model": "m", "messages": MSGS},
                        headers={"Authorization": "Bearer sekrit"})
        check("--require-key: right key is 200", st == 200)
    finally:
        check("SIGTERM exits 0", f.stop() == 0)


def check_workers(binary):
    import concurrent.futures as cf
    f = Fake(binary, "--workers", "2")
    try:
        def one(_):
            return chat(f.port, {"model": "w?status=500&first=3", "messages": MSGS})[0]
        with cf.ThreadPoolExecutor(16) as ex:
            sts = list(ex.map(one, range(64)))
        check("--workers 2: `first` counts across workers", sts.count(500) == 3
              and sts.count(200) == 61, sts.count(500))
    finally:
        check("SIGTERM exits 0 (2 workers)", f.stop() == 0)


# ------------------------------------------------ other wire formats

def fmt_request(fmt, model, stream, key=None):
    """(path, headers, body) of a minimal chat request in format fmt."""
    msgs = [{"role": "user", "content": "hi"}]
    if fmt == "anthropic":
        h = {"anthropic-version": "2023-06-01"}
        if key:
            h["x-api-key"] = key
        return "/v1/messages", h, {"model": model, "max_tokens": 100, "stream": stream,
                                   "messages": msgs}
    if fmt == "gemini":
        import urllib.parse
        m = urllib.parse.quote(model, safe="")
        path = ("/v1beta/models/%s:streamGenerateContent?alt=sse" % m if stream
                else "/v1beta/models/%s:generateContent" % m)
        return path, ({"x-goog-api-key": key} if key else {}), {
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    return "/api/chat", {}, {"model": model, "stream": stream, "messages": msgs}


def fmt_raw(fmt, model, stream=True):
    path, h, body = fmt_request(fmt, model, stream)
    data = json.dumps(body)
    head = "".join("%s: %s\r\n" % kv for kv in h.items())
    return ("POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n%s" % (path, head, len(data), data)).encode()


def dechunk(raw):
    """The body of a chunked HTTP response in raw (as far as it goes)."""
    body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""
    out = b""
    while body:
        line, _, rest = body.partition(b"\r\n")
        try:
            n = int(line, 16)
        except ValueError:
            break
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2:]
    return out.decode(errors="replace")


def pieces(fmt, text):
    """Token events in a decoded stream body of format fmt."""
    if fmt == "anthropic":
        return text.count("event: content_block_delta")
    if fmt == "gemini":
        return sum(1 for e in text.split("\r\n\r\n") if e.startswith("data: ")
                   and "finishReason" not in e)
    return sum(1 for ln in text.split("\n") if ln.strip() and '"done":false' in ln)


def finished(fmt, text):
    if fmt == "anthropic":
        return "event: message_stop" in text
    if fmt == "gemini":
        return "finishReason" in text
    return '"done":true' in text


def check_formats_faults(port):
    for fmt in ("anthropic", "gemini", "ollama"):
        got, end = raw_exchange(port, fmt_raw(fmt, "m?fault=reset"), wait=0.5)
        check("%s fault=reset" % fmt, got == b"" and end == "reset", (got, end))
        got, end = raw_exchange(port, fmt_raw(fmt, "m?fault=hang"), wait=0.5)
        check("%s fault=hang" % fmt, got == b"" and end == "timeout", (got, end))
        got, end = raw_exchange(port, fmt_raw(fmt, "m?tokens=8&fault=stall&after=3"), wait=0.5)
        t = dechunk(got)
        check("%s fault=stall: 3 tokens then silence" % fmt, end == "timeout"
              and pieces(fmt, t) == 3 and not finished(fmt, t), t)
        got, end = raw_exchange(port, fmt_raw(fmt, "m?tokens=10&fault=cut"), wait=1)
        t = dechunk(got)
        check("%s fault=cut: half then close" % fmt, end == "closed"
              and pieces(fmt, t) == 5 and not finished(fmt, t) and not got.endswith(b"0\r\n\r\n"),
              (end, t))
        got, end = raw_exchange(port, fmt_raw(fmt, "m?tokens=4&fault=malformed&after=2"), wait=0.5)
        t = dechunk(got)
        check("%s fault=malformed: 2 tokens then not JSON" % fmt, pieces(fmt, t) >= 2
              and not finished(fmt, t) and got.endswith(b"0\r\n\r\n"), t)
        got, end = raw_exchange(port, fmt_raw(fmt, "m?tokens=4&fault=nodone"), wait=0.5)
        t = dechunk(got)
        check("%s fault=nodone: tokens, no end event, clean end" % fmt, pieces(fmt, t) == 4
              and not finished(fmt, t) and got.endswith(b"0\r\n\r\n"), t)
        got, end = raw_exchange(port, fmt_raw(fmt, "m?fault=slowheaders&ttft_ms=100"), wait=0.6)
        check("%s fault=slowheaders" % fmt, got.startswith(b"HTTP/1.1 200")
              and got.endswith(b"\r\n\r\n") and end == "timeout", got)
        got, _ = raw_exchange(port, fmt_raw(fmt, "m?tokens=3"), wait=0.5)
        t = dechunk(got)
        check("%s healthy stream: 3 tokens and the end" % fmt, pieces(fmt, t) == 3
              and finished(fmt, t), t)
        path, h, body = fmt_request(fmt, "m?tokens=3&status=429&retry_after=4", False)
        st, rh, raw = request(port, "POST", path, body, headers=h)
        check("%s status=429 with Retry-After" % fmt, st == 429
              and rh.get("retry-after") == "4" and _is_json(raw.decode()), (st, rh, raw))
    request(port, "POST", "/_fake/reset")
    path, h, body = fmt_request("gemini", "g?tokens=1", False)
    request(port, "POST", path, body, headers=h)
    log = json.loads(request(port, "GET", "/_fake/requests")[2])
    check("Gemini requests are recorded with their URL", len(log) == 1
          and log[0]["path"].startswith("/v1beta/models/g%3F"), log)


def check_tps_formats(port):
    for fmt in ("anthropic", "gemini", "ollama"):
        path, h, body = fmt_request(fmt, "m?tokens=10&tps=20", True)
        t0 = time.time()
        st, _, raw = request(port, "POST", path, body, headers=h)
        dt = time.time() - t0
        check("%s tps=20, 10 tokens take about 0.45 s (%.3f s)" % (fmt, dt),
              st == 200 and 0.4 <= dt <= 0.7, dt)


def check_formats_keys(binary):
    f = Fake(binary, "--require-key", "sekrit")
    try:
        for fmt in ("anthropic", "gemini"):
            for key, want in ((None, None), ("wrong", None), ("sekrit", 200)):
                path, h, body = fmt_request(fmt, "m?tokens=1", False, key)
                st, _, raw = request(f.port, "POST", path, body, headers=h)
                bad = 401 if fmt == "anthropic" else 400
                check("--require-key %s key=%s -> %s" % (fmt, key, want or bad),
                      st == (want or bad), (st, raw))
        path, h, body = fmt_request("anthropic", "m?tokens=1", False)
        st, _, _ = request(f.port, "POST", path, body,
                           headers=dict(h, Authorization="Bearer sekrit"))
        check("--require-key anthropic accepts Bearer too", st == 200, st)
        path, h, body = fmt_request("gemini", "m?tokens=1", False)
        st, _, _ = request(f.port, "POST", path + "?key=sekrit", body, headers=h)
        check("--require-key gemini accepts ?key=", st == 200, st)
        path, h, body = fmt_request("ollama", "m?tokens=1", False)
        st, _, _ = request(f.port, "POST", path, body, headers=h)
        check("--require-key does not apply to Ollama", st == 200, st)
    finally:
        check("SIGTERM exits 0 (keys)", f.stop() == 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build/relay-fake"))
    args = ap.parse_args()
    f = Fake(args.bin)
    try:
        for fn in (check_text, check_stream, check_tools, check_json_modes, check_statuses,
                   check_faults, check_first_and_p, check_connections, check_timing,
                   check_pipelining,
                   check_log, check_misc, check_sdk, check_formats_faults,
                   check_tps_formats):
            fn(f.port)
    finally:
        check("SIGTERM exits 0", f.stop() == 0)
    check_key(args.bin)
    check_formats_keys(args.bin)
    check_workers(args.bin)
    print("%d failed" % len(FAILED) if FAILED else "all passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
