#!/usr/bin/env python3
"""Integration tests of the exact cache (src/cache/) that the declarative
cases cannot express: scope isolation between two API keys made with
`relay keys create`, and two gateways on one Redis sharing an entry.

Run by tests/integration/run.py (after the cases) or alone:
    python3 tests/integration/test_cache.py [-v] [-k NAME]
Needs DATABASE_URL and REDIS_URL (scripts/test.sh sets them).
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
"""
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import relaytest as rt  # noqa: E402
import test_keys as tk  # noqa: E402
import test_limits as tl  # noqa: E402

check = tk.check
CACHE = {"cache": {"enabled": True}}


def body(prompt):
    return {"model": "test-model", "temperature": 0,
            "messages": [{"role": "user", "content": prompt}]}


def t_entries_are_scoped_to_the_key(tmp, gws):
    gw = tl.gateway(tmp, gws, extra=CACHE)
    a, _ = tk.create_cli(gw, "--name", "tenant-a")
    b, _ = tk.create_cli(gw, "--name", "tenant-b")
    prompt = "scoped " + os.urandom(4).hex()
    status, h, _ = tl.first_call(gw, a, body(prompt))
    check(status == 200 and h.get("x-relay-cache") == "miss", "a first: %s %s" % (status, h))
    status, h, _ = tl.call(gw.port, a, body(prompt))
    check(h.get("x-relay-cache") == "exact", "a again: %r" % h.get("x-relay-cache"))
    # The same prompt from another key is that key's own miss, never a's answer.
    status, h, _ = tl.first_call(gw, b, body(prompt))
    check(status == 200 and h.get("x-relay-cache") == "miss",
          "b must not get a's entry: %r" % h.get("x-relay-cache"))
    status, h, _ = tl.call(gw.port, b, body(prompt))
    check(h.get("x-relay-cache") == "exact", "b again: %r" % h.get("x-relay-cache"))


def t_two_gateways_share_entries_through_redis(tmp, gws):
    one = tl.gateway(tmp + "/one", gws, extra=CACHE)
    two = tl.gateway(tmp + "/two", gws, extra=CACHE)
    key, _ = tk.create_cli(one, "--name", "shared")
    tk.wait_accepted(two, key)
    prompt = "shared " + os.urandom(4).hex()
    status, h, _ = tl.first_call(one, key, body(prompt))
    check(status == 200 and h.get("x-relay-cache") == "miss", "one: %s %s" % (status, h))
    # The entry reaches Redis after the answer, without delaying it.
    deadline = time.time() + 1.0
    while True:
        status, h, _ = tl.call(two.port, key, body(prompt))
        if h.get("x-relay-cache") == "exact":
            break
        check(time.time() < deadline, "gateway two never found gateway one's entry")
        time.sleep(0.05)
    check(status == 200, "two: %d" % status)


def t_a_key_opts_in_to_the_cache_above_the_temperature_bound(tmp, gws):
    # cache.max_temperature is 0.7 by default: a request at 1.5 is neither
    # served from nor stored in the cache, unless it sets cache.mode
    # itself or its key was made with --cache-any-temperature.
    gw = tl.gateway(tmp, gws, extra=CACHE)
    plain, _ = tk.create_cli(gw, "--name", "plain")
    hot, _ = tk.create_cli(gw, "--name", "hot", "--cache-any-temperature")
    listed = gw.cli("list", "--json").stdout
    check('"any_temperature":true' in listed.replace(" ", ""),
          "the key's opt-in is not listed: %r" % listed)
    prompt = "hot " + os.urandom(4).hex()
    b = dict(body(prompt), temperature=1.5)
    for key, want in ((plain, "miss"), (hot, "exact")):
        status, h, _ = tl.first_call(gw, key, b)
        check(status == 200 and h.get("x-relay-cache") == "miss",
              "first: %s %r" % (status, h.get("x-relay-cache")))
        status, h, _ = tl.call(gw.port, key, b)
        check(h.get("x-relay-cache") == want,
              "again: %r, expected %s" % (h.get("x-relay-cache"), want))


TESTS = [
    t_entries_are_scoped_to_the_key,
    t_two_gateways_share_entries_through_redis,
    t_a_key_opts_in_to_the_cache_above_the_temperature_bound,
]

if __name__ == "__main__":
    sys.exit(tl.main(TESTS))
