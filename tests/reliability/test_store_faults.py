#!/usr/bin/env python3
"""Store faults under load (tests/reliability, docs/reliability.md): a few
thousand requests from a pool of threads while the store underneath is
stopped and started again.

- PostgreSQL (a private one, scripts/services.sh in a temp folder) stopped
  and restarted mid-load: every request is answered, the rows written
  meanwhile go to the journal and are replayed: no row lost, none doubled,
  the hourly rollup agrees.
- Redis (a private redis-server) stopped and restarted mid-load, with a key
  whose limits live in Redis and the cache on: limits fail open by default,
  so every request is answered and cache hits go on from the in-process
  part while Redis is away; limits are back in Redis afterwards.
- The same with limits.on_redis_failure: closed: 503 limits_unavailable
  (Retry-After: 1) while Redis is away, 200s before and after.
- Each time: one request-log row per request the clients got an answer to
  (counted by request id, with its status), none lost, none doubled.

Needs DATABASE_URL (the request log of the Redis tests; scripts/test.sh
sets it). Run by tests/integration/run.py --dir tests/reliability, or alone:
    python3 tests/reliability/test_store_faults.py [-v] [-k NAME]
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
"""
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import relaytest as rt  # noqa: E402
import test_keys as tk  # noqa: E402
import test_limits as tl  # noqa: E402
import test_store_pg as sp  # noqa: E402

check = tk.check
say = tl.say
LOAD = 3000
THREADS = 8


def load(port, key, n, during, body):
    """n requests over THREADS keep-alive connections; during() runs once
    a third of them are done, while the rest go on. Returns one record per
    request: {id, status, cache, code, retry_after, t}."""
    out = []
    lock = threading.Lock()
    errors = []

    def worker(k):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for i in range(k, n, THREADS):
                conn.request("POST", "/v1/chat/completions", body=json.dumps(body(i)),
                             headers={"Authorization": "Bearer " + key,
                                      "Content-Type": "application/json"})
                r = conn.getresponse()
                raw = r.read()
                rec = {"id": r.getheader("x-request-id"), "status": r.status,
                       "cache": r.getheader("x-relay-cache"),
                       "retry_after": r.getheader("retry-after"), "t": time.time(),
                       "code": None}
                if r.status >= 400:
                    rec["code"] = json.loads(raw)["error"]["code"]
                with lock:
                    out.append(rec)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            conn.close()

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in ts:
        t.start()
    while len(out) < n // 3 and any(t.is_alive() for t in ts):
        time.sleep(0.01)
    window = during()
    for t in ts:
        t.join()
    check(not errors, "load: %d client errors, first: %s" % (len(errors), errors[:1]))
    check(len(out) == n, "load: %d answers for %d requests" % (len(out), n))
    check(len({r["id"] for r in out}) == n, "load: request ids repeat")
    say("%d requests, outage %.2f-%.2f s after the first answer"
        % (n, window[0] - out[0]["t"], window[1] - out[0]["t"]))
    return out, window


def check_rows(store, recs):
    """One row per answered request, with the status its client got."""
    rows = rt.read_rows(store, [r["id"] for r in recs])
    missing = [r["id"] for r in recs if r["id"] not in rows]
    doubled = [i for i, v in rows.items() if len(v) != 1]
    wrong = [r["id"] for r in recs if r["id"] in rows and
             rows[r["id"]][0]["status"] != r["status"]]
    check(not missing and not doubled and not wrong,
          "request log: %d rows missing (e.g. %s), %d doubled, %d with another status"
          % (len(missing), missing[:3], len(doubled), len(wrong)))


def wait_rows(store, recs, timeout=30):
    """Waits until every request has its row (the writer is behind after
    an outage, replaying its journal)."""
    deadline = time.time() + timeout
    while True:
        got = rt.read_rows(store, [r["id"] for r in recs])
        if len(got) >= len(recs) or time.time() > deadline:
            return len(got)
        time.sleep(0.2)


def chat_body(i):
    return {"model": "test-model", "temperature": 0,
            "messages": [{"role": "user", "content": "prompt %d" % (i % 30)}]}


# ------------------------------------------------------------ tests

def t_postgresql_stopped_mid_load_loses_and_doubles_nothing(tmp, gws):
    """Moved from tests/integration/test_store_pg.py."""
    pg = sp.Pg()
    st = None
    try:
        pg.reset()
        st = sp.stack(pg.url, tmp)

        def outage():
            t0 = time.time()
            say("stopping postgresql")
            pg.stop()
            time.sleep(1.5)
            pg.start()
            say("postgresql started again")
            return t0, time.time()

        recs, _ = load(st.relay_port, st.relay_key, LOAD, outage,
                       lambda i: sp.body(i, stream=i % 3 == 0))
        check(all(r["status"] == 200 for r in recs), "statuses %s"
              % sorted({r["status"] for r in recs}))
        got = wait_rows(pg.url, recs)
        out, st = sp.stop(st), None
        check_rows(pg.url, recs)
        sp.check_rollup(pg)
        check(got == LOAD, "%d rows before shutdown, expected %d" % (got, LOAD))
        closed = sp.closed_line(out)
        check(closed["lost"] == 0 and closed["enqueued"] == LOAD,
              "close line: %s" % closed)
        check(closed["journaled"] > 0,
              "the outage journaled nothing: the test did not test it (%s)" % closed)
        check(not any(Path(tmp, ".relay", "journal").rglob("j-*.jsonl")),
              "journal files left after replay")
        say("close line:", closed)
    finally:
        if st:
            st.close()
        pg.close()


def redis_gateway(tmp, gws, redis, extra=None):
    over = {"cache": {"enabled": True}}
    over.update(extra or {})
    gw = tl.gateway(tmp, gws, redis="redis://127.0.0.1:%d/0" % redis.port, extra=over)
    key, _ = tk.create_cli(gw, "--name", "store-faults", "--rpm", "1000000")
    status, _ = tk.wait_accepted(gw, key)
    check(status == 200, "the new key: %s" % status)
    check(redis.cli("--scan", "--pattern", "relay:*") != "",
          "no relay:* keys in Redis after a limited request")
    return gw, key


def redis_outage(redis):
    def during():
        t0 = time.time()
        say("stopping redis")
        redis.stop()
        time.sleep(1.5)
        redis.start()
        say("redis started again")
        return t0, time.time()
    return during


def t_redis_stopped_mid_load_limits_fail_open_and_the_cache_goes_on(tmp, gws):
    redis = tl.Redis(tmp)
    try:
        gw, key = redis_gateway(tmp + "/g", gws, redis)
        recs, (t0, t1) = load(gw.port, key, LOAD, redis_outage(redis), chat_body)
        check(all(r["status"] == 200 for r in recs), "statuses %s with limits failing open"
              % sorted({r["status"] for r in recs}))
        during = [r for r in recs if t0 + 0.2 < r["t"] < t1]
        hits = [r for r in during if r["cache"] == "exact"]
        say("%d answers while Redis was away, %d of them cache hits" % (len(during), len(hits)))
        check(len(during) >= 50, "only %d answers while Redis was away" % len(during))
        check(len(hits) >= len(during) // 2,
              "%d cache hits of %d answers while Redis was away: the in-process cache "
              "did not go on" % (len(hits), len(during)))
        check("redis unreachable: rate limits decided in-process" in gw.st.relay.output(),
              "no log line says the limits went in-process")
        deadline = time.time() + 10
        while redis.cli("--scan", "--pattern", "relay:*") == "":
            check(time.time() < deadline, "limits did not return to Redis within 10 s")
            tl.call(gw.port, key, chat_body(0))
            time.sleep(0.1)
        gws.remove(gw)
        gw.stop()
        check_rows(os.environ["DATABASE_URL"], recs)
    finally:
        redis.stop()


def t_redis_stopped_mid_load_fail_closed_answers_503_then_serves(tmp, gws):
    redis = tl.Redis(tmp)
    try:
        gw, key = redis_gateway(tmp + "/g", gws, redis,
                                {"limits": {"on_redis_failure": "closed"}})
        recs, (t0, t1) = load(gw.port, key, LOAD, redis_outage(redis), chat_body)
        refused = [r for r in recs if r["status"] == 503]
        other = sorted({r["status"] for r in recs} - {200, 503})
        check(not other, "statuses other than 200 and 503: %s" % other)
        check(len(refused) >= 20, "only %d requests refused while Redis was away: the "
              "outage was not seen" % len(refused))
        check(all(r["code"] == "limits_unavailable" and r["retry_after"] == "1"
                  for r in refused), "a 503: %s" % [r for r in refused
                                                   if r["code"] != "limits_unavailable"][:1])
        # Each worker reconnects with a backoff that has grown during the
        # outage, at most REDIS_BACKOFF_MAX_MS (5 s; src/redis/redis.h).
        late = [r for r in refused if r["t"] > t1 + 5.5 or r["t"] < t0]
        check(not late, "%d refusals outside the outage and the 5 s after it" % len(late))
        say("%d of %d refused while Redis was away" % (len(refused), LOAD))
        deadline = t1 + 5.5
        ok = 0
        while ok < 10:  # in a row: every worker has its connection back
            ok = ok + 1 if tl.call(gw.port, key, chat_body(1))[0] == 200 else 0
            check(time.time() < deadline or ok, "still refused 5.5 s after Redis came back")
            time.sleep(0.02)
        for _ in range(20):
            status, _, _ = tl.call(gw.port, key, chat_body(1))
            check(status == 200, "after Redis came back: %s" % status)
        gws.remove(gw)
        gw.stop()
        check_rows(os.environ["DATABASE_URL"], recs)
    finally:
        redis.stop()


TESTS = [
    t_postgresql_stopped_mid_load_loses_and_doubles_nothing,
    t_redis_stopped_mid_load_limits_fail_open_and_the_cache_goes_on,
    t_redis_stopped_mid_load_fail_closed_answers_503_then_serves,
]


if __name__ == "__main__":
    for var in ("RELAY_BIN", "RELAY_FAKE_BIN"):  # a gateway runs in its tmp
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).resolve())
    # test_limits' runner: a temp folder, the gateways stopped and their
    # logs checked for keys, `ok`/`FAIL` lines.
    sys.exit(rt.script_main(__doc__, TESTS, tl.run_one, tl.set_verbose))
