#!/usr/bin/env python3
"""bench-cache, the end-to-end part: semantic hits answered by the real
gateway (build/relay, the real encoder, Redis) on loopback, with the
index holding 100k entries of the hit's own scope and context.

1. A gateway stores BASE answers (held-out sentences of at most 10 words
   of bench/cache_texts.py,
   each a miss that reaches the fake provider).
2. It is stopped; 100k records (the vectors of bench/cache.c, same
   context) are added to the scope's Redis stream.
3. A new gateway reads its index from Redis (the rebuild; its time is
   printed), then each base sentence is asked again reworded
   ("Please tell me: " before it): semantic hits, timed from the request
   sent to the last byte received, one keep-alive connection, one at a
   time. The exact hits of the same sentences are timed for comparison.

BENCH_KERNELS=blas,auto (names of RELAY_ENCODER_KERNEL, comma-separated)
starts one gateway per encoder kernel in step 3, all reading the same
Redis stream, and asks them in turn, the first of each round rotating, so
that on a loaded machine every kernel sees the same load; a line per
kernel is printed. Unset: one gateway with the default kernel.

usage: cache_e2e.py MODEL_DIR TEXTS VECTORS   (REDIS_URL must be set)
"""
import hashlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BASE = 300
BIG = 100000
DIM = 384


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Redis:
    """Just enough RESP for XADD/XRANGE in pipelines."""

    def __init__(self, url):
        u = urlparse(url)
        self.s = socket.create_connection((u.hostname, u.port or 6379))
        self.f = self.s.makefile("rb")
        if u.password:
            self.call("AUTH", u.password)
        db = (u.path or "/0").strip("/") or "0"
        self.call("SELECT", db)

    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-", b":"):
            return rest
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("RESP: %r" % line)

    def call(self, *args):
        self.s.sendall(resp(*args))
        return self.read()

    def pipeline(self, cmds):
        self.s.sendall(b"".join(cmds))
        for _ in cmds:
            self.read()


def fingerprint(model):
    cfg = Path(model, "config.json").read_bytes()
    size = os.path.getsize(Path(model, "model.safetensors"))
    return hashlib.sha256(cfg + b"|%d" % size).hexdigest()[:16]


class Stack:
    def __init__(self, tmp, model, redis_url, name, kernel=None):
        self.tmp = tmp
        self.key = "glw_" + secrets.token_hex(20)
        self.fport, self.port = free_port(), free_port()
        self.fake = subprocess.Popen(
            [str(ROOT / "build/relay-fake"), "--listen", "127.0.0.1:%d" % self.fport,
             "--workers", "1", "--quiet", "--no-record"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.log = os.path.join(tmp, "relay-%s.log" % name)
        conf = os.path.join(tmp, "relay-%s.yaml" % name)
        with open(conf, "w") as f:
            f.write("""listen: 127.0.0.1:%d
workers: 2
log_level: info
store: "sqlite:%s/relay.db"
redis: "%s"
auth: {keys: [%s]}
cache: {enabled: true, scope: global, model: "%s", max_entries: 200000}
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:%d/v1", api_key: bench}
models:
  - name: %s
    provider: fake
    upstream: "bench?ttft_ms=0&tps=0&tokens=16"
    price: {input: 0.05, output: 0.08, cached_input: 0.0}
""" % (self.port, tmp, redis_url, self.key, model, self.fport, MODEL))
        env = dict(os.environ)
        if kernel:
            env["RELAY_ENCODER_KERNEL"] = kernel
        self.relay = subprocess.Popen([str(ROOT / "build/relay"), "serve", "--config", conf],
                                      stdout=subprocess.DEVNULL,
                                      stderr=open(self.log, "w"), env=env)
        deadline = time.time() + 15
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("bench-cache: the gateway did not start (%s)" % self.log)
            time.sleep(0.05)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def ask(self, prompt):
        body = json.dumps({"model": MODEL, "temperature": 0,
                           "messages": [{"role": "user", "content": prompt}]})
        t0 = time.perf_counter()
        self.conn.request("POST", "/v1/chat/completions", body=body,
                          headers={"Authorization": "Bearer " + self.key,
                                   "Content-Type": "application/json"})
        r = self.conn.getresponse()
        r.read()
        ms = (time.perf_counter() - t0) * 1000
        return r.status, r.getheader("x-relay-cache"), ms

    def stop(self):
        for p in (self.relay, self.fake):
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=20)


def pct(v, p):
    v = sorted(v)
    return v[int(p / 100 * (len(v) - 1) + 0.5)] if v else float("nan")


MODEL = "bench-" + secrets.token_hex(4)


def main():
    model, texts_path, vec_path = sys.argv[1:4]
    redis_url = os.environ["REDIS_URL"]
    # Chat-sized prompts: held-out sentences of at most 10 words.
    texts = [t for t in Path(texts_path).read_text().splitlines()[12000:]
             if len(t.split()) <= 10][:BASE]
    words = sum(len(("Please tell me: " + t).split()) for t in texts) / len(texts)
    tmp = tempfile.mkdtemp(prefix="bench-cache-")
    r = Redis(redis_url)
    stream = "relay:{c:global}:sem"

    one = Stack(tmp, model, redis_url, "one")
    for t in texts:
        one.ask(t)
    time.sleep(0.5)
    one.stop()
    last = r.call("XREVRANGE", stream, "+", "-", "COUNT", "1")
    fields = last[0][1]
    ctx = fields[fields.index(b"ctx") + 1]

    fp = fingerprint(model)
    data = Path(vec_path).read_bytes()
    exp = str(int(time.time()) + 3600)
    t0 = time.time()
    for start in range(0, BIG, 2000):
        cmds = []
        for i in range(start, min(BIG, start + 2000)):
            vec = data[i * DIM * 4:(i + 1) * DIM * 4]
            cmds.append(resp("XADD", stream, "*", "fp", fp,
                             "id", hashlib.sha256(b"%s-%d" % (MODEL.encode(), i)).hexdigest(),
                             "ctx", ctx, "exp", exp, "vec", vec, "text", "synthetic %d" % i))
        r.pipeline(cmds)
    print("(%d records added to %s in %.1f s)" % (BIG, stream, time.time() - t0))

    kernels = [k for k in os.environ.get("BENCH_KERNELS", "").split(",") if k]
    twos = [Stack(tmp, model, redis_url, "two-%s" % (k or "default"), k)
            for k in (kernels or [None])]
    rebuilt = [wait_rebuilt(two) for two in twos]
    sem = [[] for _ in twos]
    exact = [[] for _ in twos]
    other = [{} for _ in twos]
    load = [open("/proc/loadavg").read().split()[:3]]
    for i, t in enumerate(texts):
        for j in range(len(twos)):
            g = (i + j) % len(twos)
            status, cache, ms = twos[g].ask("Please tell me: " + t)
            if status == 200 and cache == "semantic":
                sem[g].append(ms)
            else:
                other[g][cache] = other[g].get(cache, 0) + 1
    for i, t in enumerate(texts):
        for j in range(len(twos)):
            g = (i + j) % len(twos)
            status, cache, ms = twos[g].ask(t)
            if cache == "exact":
                exact[g].append(ms)
    load.append(open("/proc/loadavg").read().split()[:3])
    for two in twos:
        two.stop()
    r.call("DEL", stream)
    for g, k in enumerate(kernels or [None]):
        label = " (kernel %s)" % k if k else ""
        print("| rebuild from Redis at start%s | %s entries in %.1f s | |" % (
            label, rebuilt[g]["entries"] if rebuilt[g] else "?",
            rebuilt[g]["ms"] / 1000 if rebuilt[g] else float("nan")))
        print("| semantic hit end to end%s, %dk entries in the scope, prompts of %.1f "
              "words (%d of %d reworded prompts hit; others: %s) | p50 %.2f ms | p99 %.2f ms |" % (
                  label, (BIG + BASE) // 1000, words, len(sem[g]), BASE,
                  other[g] or "none", pct(sem[g], 50), pct(sem[g], 99)))
        print("| exact hit end to end, same gateway | p50 %.2f ms | p99 %.2f ms |" % (
            pct(exact[g], 50), pct(exact[g], 99)))
    print("(load average %s before the hits, %s after)" % (
        " ".join(load[0]), " ".join(load[1])))


def wait_rebuilt(two):
    """The gateway's log line saying its index was read from Redis."""
    t0 = time.time()
    while time.time() - t0 < 600:
        for line in open(two.log):
            if "semantic index read from redis" in line:
                return json.loads(line)
        time.sleep(0.2)
    return None


if __name__ == "__main__":
    main()
