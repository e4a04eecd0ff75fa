#!/usr/bin/env python3
"""Two gateways on a real Redis Cluster behave as one (docs/deploy.md): a
three-master cluster (Debian's redis-server, started by
scripts/redis-cluster.sh in a temp folder, cluster_state:ok), both gateways
given its URL (redis://P1,P2/0?cluster=yes), real PostgreSQL
(DATABASE_URL), one fake provider each. Limits are fail-closed here, so a
Redis command that failed would be a 503, never a quiet in-process decision:

- a 60 rpm key, 200 concurrent requests split over the two gateways:
  exactly 60 admitted in all, the rest 429, nothing else;
- the exact and the semantic cache entries written through one gateway are
  hits on the other;
- a key revoked through one gateway is refused by the other within 1 s;
- Relay's keys are spread over more than one master, each on the master
  that CLUSTER KEYSLOT names, one API key's limit keys in one slot;
- the slot of a limits key migrated to another master while requests flow
  (IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE): every request answered
  200 or 429, exactly the key's rpm admitted, its keys now on the new master.

The cluster is started once for all tests and stopped at the end; each
gateway and node is stopped by its own PID. The whole file runs in < 60 s.

Run by tests/integration/run.py (after the cases) or alone:
    python3 tests/integration/test_redis_cluster.py [-v] [-k NAME]
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
"""
import concurrent.futures
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import relaytest as rt  # noqa: E402
import test_cache_semantic as tcs  # noqa: E402
import test_keys as tk  # noqa: E402
import test_limits as tl  # noqa: E402

check = tk.check
CLUSTER = {}  # dir, url, ports: filled by start_cluster()


# ------------------------------------------------------------ the cluster

def start_cluster():
    # Twice at most: on a loaded machine a node may be slow to answer.
    for attempt in (1, 2):
        d = tempfile.mkdtemp(prefix="relay-cluster-")
        r = subprocess.run(["bash", str(ROOT / "scripts" / "redis-cluster.sh"),
                            "start", d], capture_output=True, text=True,
                           timeout=120)
        if r.returncode == 0 or attempt == 2:
            break
        subprocess.run(["bash", str(ROOT / "scripts" / "redis-cluster.sh"),
                        "stop", d], capture_output=True, timeout=60)
        shutil.rmtree(d, ignore_errors=True)
    check(r.returncode == 0, "scripts/redis-cluster.sh start: %s" % r.stderr[-2000:])
    env = {}
    for line in r.stdout.splitlines():
        if line.startswith("export "):
            k, v = line[7:].split("=", 1)
            env[k] = v.strip('"')
    CLUSTER.update(dir=d, url=env["REDIS_CLUSTER_URL"],
                   ports=[int(p) for p in env["REDIS_CLUSTER_PORTS"].split()])


def stop_cluster():
    if CLUSTER.get("dir"):
        subprocess.run(["bash", str(ROOT / "scripts" / "redis-cluster.sh"),
                        "stop", CLUSTER["dir"]], capture_output=True, timeout=60)
        shutil.rmtree(CLUSTER["dir"], ignore_errors=True)


class Resp:
    """A minimal RESP2 client for one node (no redirections: we want to
    see exactly which node holds what)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.f = self.s.makefile("rb")

    def __call__(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self.read()

    def read(self):
        line = self.f.readline()[:-2]
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode("utf-8", "replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise rt.CaseFailure("bad RESP line %r" % line)

    def close(self):
        self.f.close()
        self.s.close()


class RedisError(str):
    pass


def nodes():
    return [Resp(p) for p in CLUSTER["ports"]]


def owner(ns, key):
    """Index of the master serving key's slot (CLUSTER SLOTS of node 0)."""
    slot = ns[0]("CLUSTER", "KEYSLOT", key)
    for start, end, master, *_ in ns[0]("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return CLUSTER["ports"].index(int(master[1]))
    raise rt.CaseFailure("no master serves slot %d" % slot)


def relay_keys(n):
    keys, cursor = [], "0"
    while True:
        cursor, batch = n("SCAN", cursor, "MATCH", "relay:*", "COUNT", 1000)
        keys += batch
        if cursor == "0":
            return keys


def gateway(tmp, gws, **extra):
    limits = {"on_redis_failure": "closed", "redis_timeout_ms": 1000}
    limits.update(extra.pop("limits", {}))
    return tl.gateway(tmp, gws, redis=CLUSTER["url"],
                      extra=dict(limits=limits, **extra))


def two(tmp, gws, **extra):
    return gateway(tmp + "/a", gws, **extra), gateway(tmp + "/b", gws, **extra)


def burst(ports, key, n, body=None):
    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as ex:
        futs = [ex.submit(tl.call, ports[i % len(ports)], key, body or tl.chat())
                for i in range(n)]
        return [f.result() for f in futs]


def statuses(res):
    out = {}
    for r in res:
        out[r[0]] = out.get(r[0], 0) + 1
    return out


# ------------------------------------------------------------ tests

def t_limits_are_global_across_two_gateways_on_a_cluster(tmp, gws):
    a, b = two(tmp, gws)
    key, status = tl.new_key(a, "--rpm", "60")
    check(status == 200, "the first request was answered %d" % status)
    status, _ = tk.wait_accepted(b, key)
    check(status == 200, "b's first request was answered %d" % status)
    res = burst([a.port, b.port], key, 200)
    got = statuses(res)
    # Two requests already used two of the 60.
    check(got == {200: 58, 429: 142}, "answers by status: %r (want 58 x 200, "
          "142 x 429: the limit is one across both gateways)" % got)
    kid = tl.key_id_of(a, key)
    ns = nodes()
    o = owner(ns, "relay:{k:%s}:w" % kid)
    check(ns[o]("ZCARD", "relay:{k:%s}:w" % kid) == 60,
          "the window on its master holds %r entries, want 60"
          % ns[o]("ZCARD", "relay:{k:%s}:w" % kid))
    tl.say("60 admitted across two gateways; the window on master %d" % o)


def t_exact_and_semantic_entries_are_shared_through_the_cluster(tmp, gws):
    a = gateway(tmp + "/a", gws, **tcs.semantic())
    # b's provider refuses (400: never cached): only a's entries answer it.
    refuse = {"name": "test-model", "upstream": "up-basic?status=400&tokens=12"}
    b = gateway(tmp + "/b", gws, models=[tl.PRICED, refuse], **tcs.semantic())
    key, _ = tk.create_cli(a, "--name", "cluster-cache")
    tk.wait_accepted(a, key)
    deadline = time.time() + 2
    while b.chat(key)[0] == 401 and time.time() < deadline:
        time.sleep(0.05)
    exact = tcs.body("Name three primary colours.")
    status, h, first = tl.call(a.port, key, exact)
    check(status == 200 and h.get("x-relay-cache") == "miss", "a: %d %r" % (status, h))
    t0 = time.time()
    while True:
        status, h, res = tl.call(b.port, key, exact)
        if h.get("x-relay-cache") == "exact":
            break
        check(time.time() - t0 < 2.0, "b found no exact entry: %d %r" % (status, h))
        time.sleep(0.05)
    check(res["choices"][0]["message"]["content"] ==
          first["choices"][0]["message"]["content"], "b's exact hit is not a's answer")
    status, h, first = tl.call(a.port, key, tcs.body(tcs.FRANCE))
    check(h.get("x-relay-cache") == "miss", "a, semantic: %r" % h)
    t0 = time.time()
    while True:
        status, h, res = tl.call(b.port, key, tcs.body(tcs.FRANCE2))
        if h.get("x-relay-cache") == "semantic":
            break
        check(status == 400, "b's miss: %d %r" % (status, h.get("x-relay-cache")))
        check(time.time() - t0 < 2.0, "b found no semantic entry within 2 s")
        time.sleep(0.05)
    check(status == 200 and res["choices"][0]["message"]["content"] ==
          first["choices"][0]["message"]["content"], "b's semantic hit is not a's answer")
    tl.say("exact and semantic hits on b after %.0f ms" % ((time.time() - t0) * 1000))


def t_a_key_revoked_on_one_gateway_is_refused_by_the_other(tmp, gws):
    a, b = two(tmp, gws)
    key, _ = tl.new_key(a, "--rpm", "1000")
    status, _ = tk.wait_accepted(b, key)
    check(status == 200, "b: %d" % status)
    kid = tl.key_id_of(a, key)
    status, body = a.admin("DELETE", "/admin/keys/" + kid)
    check(status == 200, "DELETE on a: %s %s" % (status, body))
    t0 = time.time()
    while True:
        status, body = b.chat(key)
        if status == 401:
            break
        check(status == 200, "b after the revocation: %d %r" % (status, body))
        check(time.time() - t0 < 1.0, "b still accepts the key 1 s after it was revoked")
        time.sleep(0.02)
    check("revoked" in tk.error_of(body)["message"], "the 401 does not say revoked")


def t_relay_keys_are_spread_over_the_masters_by_slot(tmp, gws):
    a = gateway(tmp, gws, cache={"enabled": True})
    kids = []
    for i in range(8):
        key, status = tl.new_key(a, "--rpm", "100", "--tpm", "100000")
        check(status == 200, "key %d: %d" % (i, status))
        kids.append(tl.key_id_of(a, key))
    ns = nodes()
    held = [relay_keys(n) for n in ns]
    tl.say("relay keys per master: %s" % [len(h) for h in held])
    check(sum(1 for h in held if h) >= 2, "Relay's keys are on fewer than two "
          "masters: %s" % [len(h) for h in held])
    for i, h in enumerate(held):
        for k in h:
            check(owner(ns, k) == i, "%s is on master %d, its slot's master is %d"
                  % (k, i, owner(ns, k)))
    for kid in kids:
        tag = "relay:{k:%s}:" % kid
        where = {i for i, h in enumerate(held) for k in h if k.startswith(tag)}
        check(len(where) == 1, "the limit keys of %s are on masters %s" % (kid, where))
        names = {k[len(tag):] for h in held for k in h if k.startswith(tag)}
        check({"w", "s"} <= names, "limit keys of %s: %s" % (kid, names))


def migrate_slot(ns, key, src, dst):
    """Moves key's slot from master src to dst as redis-cli --cluster
    reshard does: IMPORTING, MIGRATING, MIGRATE each key, SETSLOT NODE."""
    slot = ns[0]("CLUSTER", "KEYSLOT", key)
    ids = [n("CLUSTER", "MYID") for n in ns]
    for n, args in ((ns[dst], ("IMPORTING", ids[src])),
                    (ns[src], ("MIGRATING", ids[dst]))):
        r = n("CLUSTER", "SETSLOT", slot, *args)
        check(r == "OK", "SETSLOT %s: %r" % (args[0], r))
    moved = 0
    while True:
        keys = ns[src]("CLUSTER", "GETKEYSINSLOT", slot, 100)
        if not keys:
            break
        r = ns[src]("MIGRATE", "127.0.0.1", CLUSTER["ports"][dst], "", 0, 5000,
                    "KEYS", *keys)
        check(r in ("OK", "NOKEY"), "MIGRATE: %r" % r)
        moved += len(keys)
    for i in [dst, src] + [j for j in range(3) if j not in (src, dst)]:
        r = ns[i]("CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
        check(r == "OK", "SETSLOT NODE on %d: %r" % (i, r))
    return slot, moved


def t_a_limits_slot_moved_under_load_is_followed_without_errors(tmp, gws):
    a, b = two(tmp, gws)
    key, status = tl.new_key(a, "--rpm", "150", "--max-concurrent", "100")
    check(status == 200, "the first request: %d" % status)
    status, _ = tk.wait_accepted(b, key)
    check(status == 200, "b's first request: %d" % status)
    kid = tl.key_id_of(a, key)
    ns = nodes()
    w = "relay:{k:%s}:w" % kid
    src = owner(ns, w)
    dst = (src + 1) % 3
    results = []
    done = threading.Event()

    def load():
        # 10 waves of 20 concurrent requests, one wave every ~50 ms.
        for _ in range(10):
            results.extend(burst([a.port, b.port], key, 20))
            time.sleep(0.05)
        done.set()

    t = threading.Thread(target=load)
    t.start()
    time.sleep(0.15)  # a few waves before, the rest during and after
    slot, moved = migrate_slot(ns, w, src, dst)
    t.join(30)
    check(done.is_set(), "the load did not finish")
    got = statuses(results)
    tl.say("slot %d moved from master %d to %d with %d keys; answers %r"
           % (slot, src, dst, moved, got))
    check(moved >= 1, "the slot held no key (want at least the window)")
    # Two requests before the load: 148 of the 150 remain.
    check(got == {200: 148, 429: 52}, "answers by status: %r (want 148 x 200, "
          "52 x 429 and no error)" % got)
    check(owner(ns, w) == dst, "the slot's master is %d, want %d" % (owner(ns, w), dst))
    old = ns[src]("EXISTS", w)
    check(ns[dst]("ZCARD", w) == 150 and isinstance(old, RedisError) and
          old.startswith("MOVED %d " % slot),
          "the window is not whole on its new master: %r there, %r on the old"
          % (ns[dst]("ZCARD", w), old))
    # A later request still goes to the right master.
    status, h, _ = tl.call(a.port, key, tl.chat())
    check(status == 429 and h.get("x-ratelimit-remaining-requests") == "0",
          "after the move: %d %r" % (status, h))
    # Each gateway's limiter met the move: a MOVED (or an ASK or TRYAGAIN
    # while it lasted) followed, as /metrics counts them.
    for gw in (a, b):
        deadline = time.time() + 3
        while True:
            seen = redirects(gw)
            if sum(seen.values()) >= 1 or time.time() > deadline:
                break
            time.sleep(0.1)
        tl.say("gateway on %d followed %r" % (gw.port, seen))
        check(seen.get("moved", 0) >= 1, "gateway on %d followed no MOVED: %r"
              % (gw.port, seen))


def redirects(gw):
    """gateway_redis_redirects_total by kind, from gw's /metrics."""
    r = rt.http_request(gw.port, "GET", "/metrics", auth=None)
    check(r.status == 200, "/metrics: %d" % r.status)
    out = {}
    for line in r.body.decode().splitlines():
        if line.startswith("gateway_redis_redirects_total{kind=\""):
            kind = line.split('"')[1]
            out[kind] = int(line.rsplit(" ", 1)[1])
    return out


TESTS = [
    t_limits_are_global_across_two_gateways_on_a_cluster,
    t_exact_and_semantic_entries_are_shared_through_the_cluster,
    t_a_key_revoked_on_one_gateway_is_refused_by_the_other,
    t_relay_keys_are_spread_over_the_masters_by_slot,
    t_a_limits_slot_moved_under_load_is_followed_without_errors,
]


FILE_BOUND_S = 180  # the whole file, cluster start and stop included (ASan, loaded machines)


def main():
    started = False
    t0 = time.time()

    def run_one(t):
        nonlocal started
        if time.time() - t0 > FILE_BOUND_S - 10:
            print("FAIL %s: not started, the file is near its %d s bound"
                  % (t.__name__, FILE_BOUND_S), flush=True)
            return False
        if not started:
            started = True
            try:
                start_cluster()
            except Exception as e:  # noqa: BLE001
                print("FAIL %s: the cluster did not start: %s" % (t.__name__, e),
                      flush=True)
                return False
        return tl.run_one(t)

    try:
        return rt.script_main(__doc__, TESTS, run_one, tl.set_verbose)
    finally:
        stop_cluster()


if __name__ == "__main__":
    sys.exit(main())
