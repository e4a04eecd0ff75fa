#!/usr/bin/env python3
"""capture_fixtures.py - record relay-fake's Anthropic, Gemini and Ollama answers
as fixtures for the gateway's adapters.

Starts build/relay-fake (or --bin, or $RELAY_FAKE_BIN) on a free port, sends
one request per case and writes the response bodies, byte for byte, to
tests/fixtures/{anthropic,gemini,ollama}/ (or --out DIR):

  <case>.json     a whole (non-stream) answer, or an error body
  <case>.sse      the same case streamed (Anthropic, Gemini)
  <case>.ndjson   the same case streamed (Ollama)
  index.json      per file: the request sent (method, path, headers, body),
                  the HTTP status, the Content-Type and Retry-After

Cases: text, tool (a tool call), usage_cache (cache tokens; Anthropic and
Gemini), stop (max tokens reached), errors (error_<status>.json), and per
format a few more (Gemini safety/blocked, Anthropic stop_sequence).
Everything is deterministic (a fresh fake, requests in a fixed order);
Ollama's created_at is replaced by a fixed time so that a re-run gives the
same bytes. tests/e2e/provider_sdks/ checks the committed files are current
and that the official SDKs accept these exact answers.

usage: python3 tools/fakeprov/capture_fixtures.py [--bin build/relay-fake] [--out DIR]
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FORMATS = ("anthropic", "gemini", "ollama")
VOCAB = (
    "the quick brown fox jumps over lazy dog relay routes every prompt to a "
    "model that is fast and cheap tokens stream back as they land cache hits "
    "cost nothing keys have limits which hold across all nodes latency stays "
    "low while quality remains high we ship it today with care for users who "
    "need answers in time at scale on one small box").split()
FIXED_TIME = "2025-01-01T00:00:00.000000000Z"


def fnv1a(h, data):
    for b in data:
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def words(prompt, n):
    """The fake's answer of n tokens to a last user message `prompt`."""
    seed = fnv1a(14695981039346656037, prompt.encode())
    return "".join(VOCAB[fnv1a(seed, i.to_bytes(4, "little")) % 64] + " " for i in range(n))


def message_tokens(chars):
    """What one message of `chars` code points costs: ceil(chars/4) + 4."""
    return (chars + 3) // 4 + 4


def gemini_model(model):
    """A scripted model name for a Gemini URL path (percent-encoded)."""
    return urllib.parse.quote(model, safe="-._~")


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"},
                                           "days": {"type": "integer"}},
          "required": ["city", "days"]}
USER = "What is the capital of France?"
A_HDR = {"x-api-key": "sk-fake", "anthropic-version": "2023-06-01"}
G_HDR = {"x-goog-api-key": "fake-key"}


def anthropic_cases():
    def body(model, **kw):
        b = {"model": model, "max_tokens": 256, "system": "You are terse.",
             "messages": [{"role": "user", "content": USER}]}
        b.update(kw)
        return b
    tools = [{"name": "weather", "description": "Weather for a city", "input_schema": SCHEMA}]
    out = []
    for case, b in (("text", body("claude-fake?tokens=5")),
                    ("tool", body("claude-fake", tools=tools)),
                    ("usage_cache", body("claude-fake?tokens=3&cache_read=1200&cache_write=300")),
                    ("stop", body("claude-fake?tokens=20", max_tokens=4)),
                    ("stop_sequence", body("claude-fake?tokens=12",
                                           stop_sequences=[words(USER, 12).split()[5]]))):
        out.append((case + ".json", "/v1/messages", A_HDR, dict(b, stream=False)))
        out.append((case + ".sse", "/v1/messages", A_HDR, dict(b, stream=True)))
    for st in (400, 401, 429, 500, 529):
        out.append(("error_%d.json" % st, "/v1/messages", A_HDR,
                    body("claude-fake?status=%d" % st)))
    return out


def gemini_cases():
    def body(**kw):
        b = {"systemInstruction": {"parts": [{"text": "You are terse."}]},
             "contents": [{"role": "user", "parts": [{"text": USER}]}]}
        b.update(kw)
        return b
    tools = [{"functionDeclarations": [{"name": "weather", "description": "Weather for a city",
                                        "parameters": {"type": "OBJECT", "properties": {
                                            "city": {"type": "STRING"},
                                            "days": {"type": "INTEGER"}},
                                            "required": ["city", "days"]}}]}]
    out = []
    for case, model, b in (("text", "gemini-fake?tokens=5", body()),
                           ("tool", "gemini-fake", body(tools=tools)),
                           ("usage_cache", "gemini-fake?tokens=3&cached=1200", body()),
                           ("stop", "gemini-fake?tokens=20",
                            body(generationConfig={"maxOutputTokens": 4})),
                           ("json", "gemini-fake?tokens=4",
                            body(generationConfig={"responseMimeType": "application/json"})),
                           ("safety", "gemini-fake?fault=safety", body()),
                           ("blocked", "gemini-fake?fault=blocked", body())):
        m = gemini_model(model)
        out.append((case + ".json", "/v1beta/models/%s:generateContent" % m, G_HDR, b))
        out.append((case + ".sse", "/v1beta/models/%s:streamGenerateContent?alt=sse" % m,
                    G_HDR, b))
    for st in (400, 404, 429, 500, 503):
        out.append(("error_%d.json" % st, "/v1beta/models/%s:generateContent"
                    % gemini_model("gemini-fake?status=%d" % st), G_HDR, body()))
    return out


def ollama_cases():
    def body(model, **kw):
        b = {"model": model, "messages": [{"role": "system", "content": "You are terse."},
                                          {"role": "user", "content": USER}]}
        b.update(kw)
        return b
    tools = [{"type": "function", "function": {"name": "weather", "description": "Weather",
                                               "parameters": SCHEMA}}]
    out = []
    for case, b in (("text", body("llama-fake?tokens=5")),
                    ("tool", body("llama-fake", tools=tools)),
                    ("stop", body("llama-fake?tokens=20", options={"num_predict": 4})),
                    ("json", body("llama-fake?tokens=4", format="json"))):
        out.append((case + ".json", "/api/chat", {}, dict(b, stream=False)))
        out.append((case + ".ndjson", "/api/chat", {}, dict(b, stream=True)))
    for st in (400, 404, 500):
        out.append(("error_%d.json" % st, "/api/chat", {},
                    body("llama-fake?status=%d" % st, stream=False)))
    return out


CASES = {"anthropic": anthropic_cases, "gemini": gemini_cases, "ollama": ollama_cases}


def post(port, path, headers, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = {"Content-Type": "application/json"}
    h.update(headers)
    c.request("POST", path, body=json.dumps(body), headers=h)
    r = c.getresponse()
    raw = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, raw


def capture(binary, out_dir):
    """Starts binary, records every case into out_dir/<format>/."""
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(p.stdout.readline().rsplit(":", 1)[1])
        for fmt in FORMATS:
            d = os.path.join(out_dir, fmt)
            os.makedirs(d, exist_ok=True)
            index = {}
            for name, path, headers, body in CASES[fmt]():
                status, h, raw = post(port, path, headers, body)
                if fmt == "ollama":
                    raw = re.sub(rb'"created_at":"[^"]*"',
                                  b'"created_at":"' + FIXED_TIME.encode() + b'"', raw)
                with open(os.path.join(d, name), "wb") as f:
                    f.write(raw)
                index[name] = {"request": {"method": "POST", "path": path,
                                           "headers": headers, "body": body},
                               "status": status, "content_type": h.get("content-type"),
                               "retry_after": h.get("retry-after")}
            with open(os.path.join(d, "index.json"), "w") as f:
                json.dump(index, f, indent=1, sort_keys=True)
                f.write("\n")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.environ.get("RELAY_FAKE_BIN",
                                                    os.path.join(ROOT, "build/relay-fake")))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/fixtures"))
    args = ap.parse_args()
    capture(args.bin, args.out)
    for fmt in FORMATS:
        print("%s: %d files" % (fmt, len(os.listdir(os.path.join(args.out, fmt)))))


if __name__ == "__main__":
    main()
