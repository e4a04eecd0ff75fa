#!/usr/bin/env python3
"""Integration tests of per-key limits (src/limits/, step 2 of a request)
against the real binary, real Redis and real PostgreSQL (scripts/test.sh
sets DATABASE_URL and REDIS_URL; without them every test fails):

- two gateways, 500 concurrent requests against a 60 rpm key: exactly 60
  admitted, the rest 429 with Retry-After, and one request-log row each;
- tpm: the reservation (prompt estimate + max_tokens) and its settling
  with the real usage, to the token, in x-ratelimit-remaining-tokens;
- Retry-After and x-ratelimit-* values; a request that can never fit;
- a spend budget refused before it is overshot; a concurrency cap;
- Redis stopped: fail-open limits in-process, fail-closed answers 503, and
  limits go back to Redis when it returns, without a restart.

Run by tests/integration/run.py (after the cases) or alone:
    python3 tests/integration/test_limits.py [-v] [-k NAME]
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
"""
import concurrent.futures
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import relaytest as rt  # noqa: E402
import test_keys as tk  # noqa: E402

VERBOSE = False
check = tk.check
# input 1 USD and output 2 USD per million tokens: 1000 and 2000 nUSD each.
PRICED = {"name": "test-model", "price": {"input": 1.0, "output": 2.0}}


def say(*a):
    if VERBOSE:
        print("   ", *a, flush=True)


def call(port, key, body, timeout=15):
    """POSTs a chat completion; returns (status, headers (lower-case), json)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"Content-Type": "application/json",
                          "Authorization": "Bearer " + key})
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    headers = {k.lower(): v for k, v in r.getheaders()}
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return r.status, headers, parsed


def first_call(gw, key, body):
    """The first request of a new key: the key cache polls the store every
    250 ms, so a key made by the CLI may get 401 for a moment."""
    deadline = time.time() + 2
    while True:
        res = call(gw.port, key, body)
        if res[0] != 401 or time.time() > deadline:
            return res
        time.sleep(0.05)


def chat(content="abcdefgh", model="test-model", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    body.update(extra)
    return body


def gateway(tmp, gws, store=None, redis=None, extra=None):
    os.makedirs(tmp, exist_ok=True)
    over = {"redis": redis if redis is not None else os.environ.get("REDIS_URL", ""),
            "models": [PRICED]}
    over.update(extra or {})
    gw = tk.Gw(store or os.environ["DATABASE_URL"], tmp, extra=over)
    gws.append(gw)
    return gw


def new_key(gw, *args):
    key, _ = tk.create_cli(gw, "--name", "limits-test", *args)
    status, _ = tk.wait_accepted(gw, key)
    return key, status


def key_id_of(gw, key):
    r = gw.cli("list", "--json")
    check(r.returncode == 0, "relay keys list: " + r.stderr)
    for k in json.loads(r.stdout):
        if key.startswith(k["prefix"]):
            return k["id"]
    raise rt.CaseFailure("the new key is not listed")


def psql(sql):
    r = subprocess.run(["psql", os.environ["DATABASE_URL"], "-Atqc", sql],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "psql: " + r.stderr)
    return r.stdout.strip()


def error_of(body):
    return tk.error_of(body)


# ------------------------------------------------------------ tests

def t_two_gateways_admit_exactly_60_of_500_concurrent(tmp, gws):
    a = gateway(tmp + "/a", gws)
    b = gateway(tmp + "/b", gws)
    key, status = new_key(a, "--rpm", "60")
    check(status == 200, "the first request was answered %d" % status)
    tk.wait_accepted(b, key)  # b's cache has the key too (one more request)
    kid = key_id_of(a, key)
    # Two requests already used two of the 60: 58 remain for the burst.
    ports = [a.port, b.port]
    with concurrent.futures.ThreadPoolExecutor(max_workers=125) as ex:
        futs = [ex.submit(call, ports[i % 2], key, chat()) for i in range(500)]
        res = [f.result() for f in futs]
    ok = [r for r in res if r[0] == 200]
    limited = [r for r in res if r[0] == 429]
    check(len(ok) == 58 and len(limited) == 442,
          "%d admitted, %d limited, other: %s" % (
              len(ok), len(limited), sorted({r[0] for r in res} - {200, 429})))
    for _, h, body in limited:
        e = error_of(body)
        check(e["type"] == "requests" and e["code"] == "rate_limit_exceeded",
              "429 error: %r" % e)
        ra = int(h.get("retry-after", "0"))
        check(1 <= ra <= 60, "Retry-After %r" % h.get("retry-after"))
        check(h.get("x-ratelimit-limit-requests") == "60", "limit header %r" % h)
        check(h.get("x-ratelimit-remaining-requests") == "0", "remaining %r" % h)
    for gw in list(gws):
        gw.stop()
    gws.clear()
    rows = psql("SELECT status, count(*) FROM request_log WHERE key_id = '%s' "
                "GROUP BY status ORDER BY status" % kid)
    check(rows == "200|60\n429|442", "request log rows by status: %r" % rows)
    say("58 + 2 admitted across two gateways, 442 refused, 502 rows")


def t_tpm_reserves_then_settles_to_the_real_usage(tmp, gws):
    gw = gateway(tmp, gws)
    key, _ = tk.create_cli(gw, "--name", "tpm", "--tpm", "1000")
    status, h, body = first_call(gw, key, chat(max_tokens=100))
    check(status == 200, "first request: %d %r" % (status, body))
    # Reserved: the prompt estimate (3 + 4 + 2 for "abcdefgh") + 100.
    check(h.get("x-ratelimit-limit-tokens") == "1000", "headers %r" % h)
    check(h.get("x-ratelimit-remaining-tokens") == str(1000 - 109),
          "remaining after the first reservation: %r"
          % h.get("x-ratelimit-remaining-tokens"))
    usage = body["usage"]
    real = usage["prompt_tokens"] + usage["completion_tokens"]
    check(real == 18, "usage %r" % usage)
    # The settle goes to Redis after the answer, maybe from another worker
    # (its own connection) than the next request's reserve: a moment for it.
    time.sleep(0.3)
    status, h, _ = call(gw.port, key, chat(max_tokens=100))
    check(status == 200, "second request: %d" % status)
    # The first settled to its real 18 tokens; the second holds 109.
    check(h.get("x-ratelimit-remaining-tokens") == str(1000 - 18 - 109),
          "remaining after settling: %r" % h.get("x-ratelimit-remaining-tokens"))
    # One that can never fit: 9 + 2000 > 1000. No Retry-After.
    status, h, body = call(gw.port, key, chat(max_tokens=2000))
    e = error_of(body)
    check(status == 429 and e["type"] == "tokens" and "retry-after" not in h,
          "too large: %d %r %r" % (status, e, h.get("retry-after")))
    check("Request too large" in e["message"], e["message"])
    # A slow call holding 909 tokens: the next 109 do not fit meanwhile.
    slow = {"name": "slow", "upstream": "up-slow?ttft_ms=1500&tps=0&tokens=12"}
    gw.stop()
    gws.clear()
    gw = gateway(tmp + "/2", gws, extra={"models": [PRICED, slow]})
    key, _ = tk.create_cli(gw, "--name", "tpm2", "--tpm", "1000")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        first_call(gw, key, chat(max_tokens=1))
        f = ex.submit(call, gw.port, key, chat(model="slow", max_tokens=900))
        time.sleep(0.5)
        status, h, body = call(gw.port, key, chat(max_tokens=100))
        e = error_of(body)
        check(status == 429 and e["type"] == "tokens",
              "while 909 are held: %d %r" % (status, e))
        ra = int(h["retry-after"])
        check(55 <= ra <= 60, "Retry-After %d" % ra)
        check(f.result()[0] == 200, "the slow call failed")
    status, _, _ = call(gw.port, key, chat(max_tokens=100))
    check(status == 200, "after the slow call settled: %d" % status)


def t_retry_after_counts_down_to_the_oldest_request(tmp, gws):
    gw = gateway(tmp, gws)
    key, _ = tk.create_cli(gw, "--name", "rpm2", "--rpm", "2")
    status, h, _ = first_call(gw, key, chat())
    check(status == 200, "first: %d" % status)
    check(h.get("x-ratelimit-remaining-requests") == "1", "first %r" % h)
    reset = h.get("x-ratelimit-reset-requests", "")
    check(reset.endswith("s"), "reset format %r" % reset)
    t_first = time.time()
    status, h, _ = call(gw.port, key, chat())
    check(status == 200 and h.get("x-ratelimit-remaining-requests") == "0",
          "second: %d %r" % (status, h))
    status, h, body = call(gw.port, key, chat())
    check(status == 429, "third: %d" % status)
    ra1 = int(h["retry-after"])
    check(59 <= ra1 <= 60, "Retry-After %d right after" % ra1)
    check("Limit 2, Used 2" in error_of(body)["message"], error_of(body)["message"])
    time.sleep(3)
    status, h, _ = call(gw.port, key, chat())
    ra2 = int(h["retry-after"])
    expect = 60 - (time.time() - t_first)
    check(status == 429 and abs(ra2 - expect) <= 1.5,
          "Retry-After %d after 3 s, expected about %.1f" % (ra2, expect))


def t_a_budget_is_refused_before_it_is_overshot(tmp, gws):
    gw = gateway(tmp, gws)
    # 50,000 nUSD a day. One call of "abcdefgh" with max_tokens 12 holds
    # 9 x 1000 + 12 x 2000 = 33,000 and costs 6 x 1000 + 12 x 2000 = 30,000.
    key, _ = tk.create_cli(gw, "--name", "budget", "--budget-usd", "0.00005",
                           "--period", "day")
    status, h, body = first_call(gw, key, chat(max_tokens=12))
    check(status == 200, "first: %d %r" % (status, body))
    check(h.get("x-relay-cost-usd") == "0.000030000", "cost %r" % h.get("x-relay-cost-usd"))
    # Spent 30,000 + a hold of 33,000 > 50,000: refused, not overshot.
    status, h, body = call(gw.port, key, chat(max_tokens=12))
    e = error_of(body)
    check(status == 429 and e["type"] == "insufficient_quota" and
          e["code"] == "budget_exceeded", "second: %d %r" % (status, e))
    now = time.gmtime()
    to_midnight = 86400 - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)
    check(abs(int(h["retry-after"]) - to_midnight) <= 2,
          "Retry-After %s, %d s to midnight UTC" % (h["retry-after"], to_midnight))
    # A smaller call still fits: 9 x 1000 + 1 x 2000 = 11,000.
    status, _, _ = call(gw.port, key, chat(max_tokens=1))
    check(status == 200, "a call that fits the rest: %d" % status)


def t_a_concurrency_cap_refuses_the_extra_requests(tmp, gws):
    slow = {"name": "slow", "upstream": "up-slow?ttft_ms=1000&tps=0&tokens=3"}
    gw = gateway(tmp, gws, extra={"models": [PRICED, slow]})
    key, _ = tk.create_cli(gw, "--name", "conc", "--max-concurrent", "2")
    tk.wait_accepted(gw, key)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
        res = list(ex.map(lambda _: call(gw.port, key, chat(model="slow")), range(4)))
    codes = sorted(r[0] for r in res)
    check(codes == [200, 200, 429, 429], "statuses %s" % codes)
    for status, h, body in res:
        if status == 429:
            check(error_of(body)["code"] == "concurrency_limit_exceeded", body)
            check(h.get("retry-after") == "1", h)
    status, _, _ = call(gw.port, key, chat(model="slow"))
    check(status == 200, "after they finished: %d" % status)


class Redis:
    """A private redis-server on a free port, to stop and start at will."""

    def __init__(self, tmp):
        self.dir = tmp
        self.port = rt.free_port()
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while self.cli("PING") != "PONG":
            check(time.time() < deadline, "redis-server did not start")
            time.sleep(0.05)

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port)] + list(args),
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
            self.proc = None


def t_redis_down_fails_open_then_limits_return_to_redis(tmp, gws):
    redis = Redis(tmp)
    try:
        gw = gateway(tmp + "/g", gws, redis="redis://127.0.0.1:%d/0" % redis.port)
        key, _ = tk.create_cli(gw, "--name", "open", "--rpm", "1000")
        tk.wait_accepted(gw, key)
        check(redis.cli("--scan", "--pattern", "relay:*") != "",
              "no relay:* keys in Redis after a limited request")
        redis.stop()
        for i in range(5):
            status, _, _ = call(gw.port, key, chat())
            check(status == 200, "request %d with Redis down: %d" % (i, status))
        out = gw.st.relay.output()
        check("redis unreachable: rate limits decided in-process" in out,
              "no log line says Redis went away")
        redis.start()
        check(redis.cli("DBSIZE") == "0", "a new Redis is not empty")
        deadline = time.time() + 10
        while redis.cli("--scan", "--pattern", "relay:*") == "":
            check(time.time() < deadline, "limits did not return to Redis within 10 s")
            call(gw.port, key, chat())
            time.sleep(0.2)
        deadline = time.time() + 5
        while "redis reachable again" not in gw.st.relay.output():
            check(time.time() < deadline, "no log line says Redis is back")
            time.sleep(0.1)
    finally:
        redis.stop()


def t_redis_down_fails_closed_when_told_to(tmp, gws):
    redis = Redis(tmp)
    try:
        gw = gateway(tmp + "/g", gws, redis="redis://127.0.0.1:%d/0" % redis.port,
                     extra={"limits": {"on_redis_failure": "closed"}})
        key, _ = tk.create_cli(gw, "--name", "closed", "--rpm", "1000")
        status, _ = tk.wait_accepted(gw, key)
        check(status == 200, "with Redis up: %d" % status)
        redis.stop()
        status, h, body = call(gw.port, key, chat())
        e = error_of(body)
        check(status == 503 and e["code"] == "limits_unavailable" and
              h.get("retry-after") == "1", "with Redis down: %d %r" % (status, e))
        # A key without limits never needs Redis.
        key2, _ = tk.create_cli(gw, "--name", "unlimited")
        status, _ = tk.wait_accepted(gw, key2)
        check(status == 200, "an unlimited key with Redis down: %d" % status)
    finally:
        redis.stop()


def t_without_redis_the_same_limits_hold_in_process(tmp, gws):
    gw = gateway(tmp, gws, redis="")
    key, _ = tk.create_cli(gw, "--name", "local", "--rpm", "2", "--tpm", "1000")
    status, h, _ = first_call(gw, key, chat(max_tokens=100))
    check(status == 200 and h.get("x-ratelimit-remaining-tokens") == "891",
          "first: %d %r" % (status, h))
    status, h, _ = call(gw.port, key, chat(max_tokens=100))
    check(status == 200 and h.get("x-ratelimit-remaining-requests") == "0" and
          h.get("x-ratelimit-remaining-tokens") == str(1000 - 18 - 109),
          "second: %d %r" % (status, h))
    status, h, body = call(gw.port, key, chat(max_tokens=100))
    check(status == 429 and error_of(body)["type"] == "requests" and
          59 <= int(h.get("retry-after", "0")) <= 60,
          "third: %d %r %r" % (status, h, body))


TESTS = [
    t_two_gateways_admit_exactly_60_of_500_concurrent,
    t_tpm_reserves_then_settles_to_the_real_usage,
    t_retry_after_counts_down_to_the_oldest_request,
    t_a_budget_is_refused_before_it_is_overshot,
    t_a_concurrency_cap_refuses_the_extra_requests,
    t_redis_down_fails_open_then_limits_return_to_redis,
    t_redis_down_fails_closed_when_told_to,
    t_without_redis_the_same_limits_hold_in_process,
]


def run_one(t):
    tmp = tempfile.mkdtemp(prefix="relay-limits-")
    gws = []
    t0 = time.time()
    try:
        check(os.environ.get("DATABASE_URL", "").startswith("postgres") and
              os.environ.get("REDIS_URL", "").startswith("redis://"),
              "DATABASE_URL and REDIS_URL must be set (scripts/test.sh sets them)")
        t(tmp, gws)
        for gw in list(gws):
            out = gw.stop()
            for key in tk.SECRETS:
                check(key not in out, "a key is in the log")
        print("ok   %s  (%d ms)" % (t.__name__, (time.time() - t0) * 1000), flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
        return True
    except Exception as e:  # noqa: BLE001
        for gw in gws:
            try:
                gw.st.close()
            except Exception:  # noqa: BLE001
                pass
        print("FAIL %s: %s (kept %s)" % (t.__name__, e, tmp), flush=True)
        if VERBOSE:
            traceback.print_exc()
        return False


def set_verbose(v):
    global VERBOSE
    VERBOSE = v
    tk.VERBOSE = v


def main(tests=None):
    return rt.script_main(__doc__, tests or TESTS, run_one, set_verbose)


if __name__ == "__main__":
    sys.exit(main())
