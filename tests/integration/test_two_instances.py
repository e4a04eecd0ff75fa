#!/usr/bin/env python3
"""Two gateways behind nginx behave as one (docs/deploy.md): one fake
provider each, both on the same PostgreSQL (DATABASE_URL) and Redis
(REDIS_URL), and nginx (Debian's nginx-light) in front, round robin, on
free ports on 127.0.0.1. A store key made with `relay keys create --rpm 10`:

- 25 requests through nginx: exactly 10 admitted and 15 answered 429 (the
  limit is global, kept in Redis, not 10 per gateway);
- both gateways served some (each response's x-request-id is in the log
  of one gateway, and each log has some);
- the request log (PostgreSQL) has exactly 25 rows for that key;
- the key revoked through gateway A's admin API is refused (401) through
  nginx within 1 s, whichever gateway nginx picks.

Everything started here is stopped by its PID. Needs DATABASE_URL,
REDIS_URL (scripts/test.sh sets both) and /usr/sbin/nginx.

Run by tests/integration/run.py (after the cases) or alone:
    python3 tests/integration/test_two_instances.py [-v]
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
"""
import http.client
import json
import os
import shutil
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
import test_limits as tl  # noqa: E402  (psql, key_id_of)

VERBOSE = False
NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")

NGINX_CONF = """\
# Written by tests/integration/test_two_instances.py; the same shape as
# docs/deploy.md's example.
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream relay {{
        server 127.0.0.1:{a};
        server 127.0.0.1:{b};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://relay;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_next_upstream off;
        }}
    }}
}}
"""


def say(*a):
    if VERBOSE:
        print("   ", *a, flush=True)


check = tk.check


class Nginx:
    """nginx in the foreground with a config in its own temp dir."""

    def __init__(self, a_port, b_port):
        self.tmp = tempfile.mkdtemp(prefix="relay-nginx-")
        # Workers run as nobody when this runs as root: they need the
        # temp folders.
        os.chmod(self.tmp, 0o755)
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.mkdir(os.path.join(self.tmp, d))
            os.chmod(os.path.join(self.tmp, d), 0o777)
        self.proc = None
        for attempt in range(3):
            self.port = rt.free_port()
            conf = os.path.join(self.tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(tmp=self.tmp, a=a_port, b=b_port,
                                          port=self.port))
            self.log = open(os.path.join(self.tmp, "stderr.log"), "wb")
            self.proc = subprocess.Popen([NGINX, "-p", self.tmp, "-c", conf],
                                         stdout=self.log, stderr=subprocess.STDOUT)
            if self.wait_up():
                return
            self.stop()
        raise rt.CaseFailure("nginx did not start: %s" % self.errors())

    def wait_up(self):
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                r = rt.http_request(self.port, "GET", "/healthz", auth=None, timeout=2)
                if r.status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def errors(self):
        out = []
        for name in ("stderr.log", "error.log"):
            p = os.path.join(self.tmp, name)
            if os.path.exists(p):
                out.append(open(p, errors="replace").read()[-2000:])
        return "\n".join(out)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # TERM to the master, by its PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def chat(port, key):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("POST", "/v1/chat/completions",
                 body=json.dumps({"model": "test-model",
                                  "messages": [{"role": "user", "content": "hi"}]}),
                 headers={"Content-Type": "application/json",
                          "Authorization": "Bearer " + key})
    r = conn.getresponse()
    body = r.read()
    rid = r.getheader("x-request-id")
    conn.close()
    return r.status, rid, body


def relay_log(gw):
    p = os.path.join(gw.st.tmp, "relay.log")
    return open(p, errors="replace").read() if os.path.exists(p) else ""


# ------------------------------------------------------------ tests

def t_two_gateways_behind_nginx_are_one(tmp, started):
    extra = {"redis": os.environ["REDIS_URL"]}
    os.makedirs(tmp + "/a")
    os.makedirs(tmp + "/b")
    a = tk.Gw(os.environ["DATABASE_URL"], tmp + "/a", extra=extra)
    started.append(a)
    b = tk.Gw(os.environ["DATABASE_URL"], tmp + "/b", extra=extra)
    started.append(b)
    ng = Nginx(a.port, b.port)
    started.append(ng)
    say("gateways on %d and %d, nginx on %d" % (a.port, b.port, ng.port))
    key, _ = tk.create_cli(a, "--name", "two-instances", "--rpm", "10")
    kid = tl.key_id_of(a, key)
    # Both key caches poll the store every 250 ms; a request before they
    # have the key would be a 401 (and a row): wait instead of probing.
    time.sleep(1.0)

    res = [chat(ng.port, key) for _ in range(25)]
    statuses = [s for s, _, _ in res]
    n200, n429 = statuses.count(200), statuses.count(429)
    check(n200 == 10 and n429 == 15,
          "through nginx: %d admitted, %d limited, others %s (want 10 and 15: "
          "the rpm limit is global)" % (n200, n429,
                                        sorted(set(statuses) - {200, 429})))
    ids = [rid for _, rid, _ in res]
    check(all(ids) and len(set(ids)) == 25, "x-request-id missing or repeated: %s" % ids)

    # Each request's id is in exactly one gateway's log.
    deadline = time.time() + 3
    while True:
        la, lb = relay_log(a), relay_log(b)
        on_a = [i for i in ids if i in la]
        on_b = [i for i in ids if i in lb]
        if len(on_a) + len(on_b) == 25 or time.time() > deadline:
            break
        time.sleep(0.1)
    say("served by A: %d, by B: %d" % (len(on_a), len(on_b)))
    check(not set(on_a) & set(on_b), "a request id is in both logs")
    check(len(on_a) + len(on_b) == 25, "%d of 25 request ids are in no log"
          % (25 - len(on_a) - len(on_b)))
    check(on_a and on_b, "one gateway served every request (A %d, B %d): nginx "
          "did not spread them" % (len(on_a), len(on_b)))

    # The request log is shared: 25 rows for the key, written by both.
    deadline = time.time() + 10
    while True:
        rows = tl.psql("SELECT status, count(*) FROM request_log WHERE key_id = '%s' "
                    "GROUP BY status ORDER BY status" % kid)
        if rows == "200|10\n429|15" or time.time() > deadline:
            break
        time.sleep(0.1)
    check(rows == "200|10\n429|15", "request log rows for the key by status: %r "
          "(want 10 x 200, 15 x 429)" % rows)

    # Revoked through A's admin API: refused through nginx within 1 s.
    status, body = a.admin("DELETE", "/admin/keys/" + kid)
    t0 = time.time()
    check(status == 200, "DELETE on A: %s %s" % (status, body))
    refused = 0
    while refused < 4:  # four in a row: both gateways, round robin
        status, _, body = chat(ng.port, key)
        if status == 401:
            refused += 1
            continue
        refused = 0
        check(status in (200, 429), "after the revocation: %s %r" % (status, body[:200]))
        check(time.time() - t0 < 2.0, "still accepted through nginx 2 s after the revocation")
        time.sleep(0.01)
    took = time.time() - t0
    say("refused through nginx after %.3f s" % took)
    check(took < 1.0, "refused through nginx only after %.3f s" % took)
    check(b"revoked" in body, "the 401 does not say revoked: %r" % body[:200])


TESTS = [t_two_gateways_behind_nginx_are_one]


def stop_all(started, keep=True):
    """Stops what a test started, nginx first, each by its own PID; keep:
    nginx's folder (its config and logs) stays for a look."""
    codes = []
    for x in reversed(started):
        try:
            if isinstance(x, Nginx):
                x.stop()
                if not keep:
                    shutil.rmtree(x.tmp, ignore_errors=True)
            else:
                codes.append(x.st.close().get("relay"))
        except Exception as e:  # noqa: BLE001
            codes.append("stop failed: %s" % e)
    started.clear()
    return codes


def set_verbose(v):
    global VERBOSE
    VERBOSE = v


def run_one(t):
    tmp = tempfile.mkdtemp(prefix="relay-two-")
    started = []
    t0 = time.time()
    try:
        for need in ("DATABASE_URL", "REDIS_URL"):
            check(os.environ.get(need), "%s is not set (scripts/test.sh sets it)" % need)
        check(os.access(NGINX, os.X_OK), "%s not found (nginx-light, scripts/packages.txt)" % NGINX)
        t(tmp, started)
        logs = [relay_log(g) for g in started if not isinstance(g, Nginx)]
        codes = stop_all(started, keep=False)
        check(all(c == 0 for c in codes), "a gateway exited %s" % codes)
        for out in logs:
            for key in tk.SECRETS:
                check(key not in out and key[4:] not in out, "a key is in the log")
        shutil.rmtree(tmp, ignore_errors=True)
        print("ok   %s  (%d ms)" % (t.__name__, (time.time() - t0) * 1000), flush=True)
        return True
    except Exception as e:  # noqa: BLE001
        stop_all(started)
        print("FAIL %s: %s (kept %s)" % (t.__name__, e, tmp), flush=True)
        if VERBOSE:
            traceback.print_exc()
        return False


if __name__ == "__main__":
    sys.exit(rt.script_main(__doc__, TESTS, run_one, set_verbose))
