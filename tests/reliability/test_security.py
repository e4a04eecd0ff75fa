#!/usr/bin/env python3
"""Security (tests/reliability, docs/reliability.md), against the real
gateway with PostgreSQL (DATABASE_URL; scripts/test.sh sets it) as its
store, a master key and a log file:

- keys never leave: the static key of auth.keys, a key made with `relay
  keys create`, the master (admin) key and the providers' API keys are
  sent, valid and not, in headers, query strings and bodies; none of them
  appears in the log file, standard error, /metrics, any answer (headers,
  error messages, bodies) or the request-log rows;
- the admin endpoints (every one docs/api.md lists, and /metrics when
  metrics.admin_key_required) refuse without the master key: 401 with
  OpenAI's error shape for no key, a wrong one, an API key or a provider's
  key; 403 when no admin_key is configured; spellings of their paths do
  not get round it;
- a request cannot choose where its call goes: fields like base_url,
  headers like X-Forwarded-Host, a model named by a URL, an absolute
  request target, all pointing at a listener of our own, which sees no
  connection at all;
- the body and header size limits hold to the byte: exactly the limit is
  served, one byte more is 413 (body) or 431 (headers).

Run by tests/integration/run.py --dir tests/reliability, or alone:
    python3 tests/reliability/test_security.py [-v] [-k NAME]
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
"""
import json
import os
import socket
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

check = tk.check
say = tl.say
MAX_BODY = 16384
MAX_HEADER = 4096
SECOND_PROVIDER_KEY = "pk-second-" + os.urandom(12).hex()


class Listener:
    """A TCP listener that records every connection made to it (the
    attacker's address): it accepts, reads what comes, answers nothing."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, addr = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(0.5)
            try:
                data = c.recv(4096)
            except OSError:
                data = b""
            self.seen.append((addr, data[:200]))
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


class Sec:
    """One gateway: static key, store key, admin key, two providers with
    keys, a log file, and every answer and scrape kept for the grep."""

    def __init__(self, tmp, gws, admin=True, extra=None):
        os.makedirs(tmp, exist_ok=True)
        store = os.environ["DATABASE_URL"]
        over = {
            "log_file": os.path.join(tmp, "relay-file.log"),
            "server": {"max_body_bytes": MAX_BODY, "max_header_bytes": MAX_HEADER},
            "providers": {"second": {"kind": "openai", "base_url": "${FAKE_URL}",
                                     "api_key": SECOND_PROVIDER_KEY}},
            "models": [{"name": "second-model", "provider": "second",
                        "upstream": "up-second?status=401"}],
        }
        over.update(extra or {})
        self.gw = tk.Gw(store, tmp, admin=admin, extra=over)
        self.gws = gws
        gws.append(self.gw)  # stopped by the runner if the test fails
        self.st = self.gw.st
        self.tmp = tmp
        self.answers = []  # every response: (what, headers, body)
        self.ids = []

    def secrets(self):
        return [s for s in (self.st.relay_key, self.st.fake_key, self.gw.admin_key,
                            SECOND_PROVIDER_KEY) + tuple(tk.SECRETS) if s]

    def send(self, raw_or_req, what):
        """Sends a request (bytes, or kwargs of rt.build_request); keeps
        and returns the response."""
        c = rt.Conn(self.st.relay_port, timeout=10)
        try:
            if isinstance(raw_or_req, bytes):
                data = raw_or_req
            else:
                req = dict(raw_or_req)
                head, body = rt.build_request(self.st.relay_port, key=self.st.relay_key,
                                              **req)
                data = head + body
            c.send(data)
            r = c.read_response()
        finally:
            c.close()
        check(r is not None, "%s: no response" % what)
        self.answers.append((what, r.headers, r.body))
        path = "" if isinstance(raw_or_req, bytes) else raw_or_req.get("path", "")
        # Dashboard files and scrapes are not requests to log (docs/api.md).
        if r.header("x-request-id") and not path.startswith(("/dashboard", "/metrics")):
            self.ids.append(r.header("x-request-id"))
        say("%s: %s" % (what, r.status))
        return r

    def stop(self):
        self.gws.remove(self.gw)
        return self.gw.stop()


def chat(**extra):
    b = {"model": "test-model", "messages": [{"role": "user", "content": "hello"}]}
    b.update(extra)
    return b


def error_of(r, where):
    check("json" in (r.header("content-type") or ""), "%s: not JSON: %s" % (where, r.describe()))
    e = r.json().get("error")
    check(isinstance(e, dict) and isinstance(e.get("message"), str) and
          {"type", "param", "code"} <= set(e), "%s: not OpenAI's error shape: %s"
          % (where, r.body[:300]))
    return e


# ------------------------------------------------------------ keys

def t_keys_never_appear_in_logs_metrics_answers_or_rows(tmp, gws):
    s = Sec(tmp, gws)
    store_key, _ = tk.create_cli(s.gw, "--name", "secret-holder", "--rpm", "1000")
    status, _ = tk.wait_accepted(s.gw, store_key)
    check(status == 200, "the store key: %s" % status)
    keys = {"static": s.st.relay_key, "store": store_key, "admin": s.gw.admin_key,
            "provider": s.st.fake_key, "provider2": SECOND_PROVIDER_KEY}
    # Valid, in the right place.
    for name in ("static", "store"):
        r = s.send({"body": chat(), "auth": "Bearer " + keys[name]}, name + " key")
        check(r.status == 200, "%s key: %s" % (name, r.describe()))
        r = s.send({"body": chat(stream=True), "auth": "Bearer " + keys[name]},
                   name + " key, stream")
        check(r.status == 200, "%s key, stream: %s" % (name, r.describe()))
    r = s.send({"method": "GET", "path": "/admin/keys",
                "auth": "Bearer " + keys["admin"]}, "admin key")
    check(r.status == 200, "admin key: %s" % r.describe())
    # The second provider refuses Relay's key: its error must not echo it.
    r = s.send({"body": chat(model="second-model")}, "a provider refusing its key")
    check(r.status >= 400, "second-model: %s" % r.describe())
    for name, k in keys.items():
        # Wrong places and near misses: each refused, none echoed.
        variants = [
            ("Bearer " + k + "x", "a near miss"),
            ("Bearer " + k[:-1], "cut short"),
            ("Basic " + k, "not Bearer"),
            (k, "no scheme"),
            ("Bearer  " + k + " extra", "with junk"),
        ]
        if name in ("admin", "provider", "provider2"):
            variants.append(("Bearer " + k, "as an API key"))
        for auth, how in variants:
            r = s.send({"body": chat(), "auth": auth}, "%s key %s" % (name, how))
            check(r.status == 401, "%s key %s: %s" % (name, how, r.describe()))
            error_of(r, "%s key %s" % (name, how))
        s.send({"body": chat(), "auth": None, "headers": [("X-Api-Key", k)]},
               "%s key in X-Api-Key" % name)
        s.send({"body": chat(), "auth": None,
                "path": "/v1/chat/completions?api_key=" + k}, "%s key in the query" % name)
        s.send({"method": "GET", "path": "/admin/keys", "auth": "Bearer " + k + "0"},
               "%s key, wrong, on /admin" % name)
        # In bodies: fields a client might fill with a key, and the
        # prompt itself (which goes to the provider, never to a log).
        s.send({"body": chat(api_key=k, user=k, metadata={"key": k})},
               "%s key in body fields" % name)
        s.send({"body": chat(messages=[{"role": "user", "content": "my key is " + k}])},
               "%s key in the prompt" % name)
        s.send({"body": chat(model=k)}, "%s key as the model" % name)
        s.send({"body": chat(routing={"allow": [k]})}, "%s key in routing" % name)
        s.send({"body": chat(routing={k: 1})}, "%s key as a routing field" % name)
        s.send({"body": chat(routing={"max_latency_ms": k})},
               "%s key as a routing value" % name)
        s.send({"body": chat(messages=[{"role": k, "content": "x"}])},
               "%s key as a role" % name)
        for path in ("/v1/models/" + k, "/" + k, "/v1/" + k, "/dashboard/" + k,
                     "/admin/keys/" + k):
            s.send({"method": "GET", "path": path}, "%s key in the path %s"
                   % (name, path.replace(k, "KEY")))
        s.send({"body": chat(temperature=k)}, "%s key as a bad value" % name)
        s.send({"body": '{"model":"%s",' % k}, "%s key in bad JSON" % name)
    metrics = s.send({"method": "GET", "path": "/metrics", "auth": None}, "GET /metrics")
    check(metrics.status == 200, "/metrics: %s" % metrics.describe())
    tmp_ids = list(s.ids)
    out = s.stop()
    file_log = Path(tmp, "relay-file.log").read_text(errors="replace")
    check("request" in file_log, "the log file has no request lines")
    rows = rt.read_rows(s.gw.st.store(), tmp_ids)
    check(len(rows) == len(tmp_ids), "%d rows for %d requests" % (len(rows), len(tmp_ids)))
    places = [("standard error", out), ("the log file", file_log),
              ("the request log", json.dumps(rows))]
    places += [("the answer to: " + what, json.dumps(h) + body.decode("latin-1"))
               for what, h, body in s.answers]
    leaks = ["the %s key is in %s" % (name, where)
             for name, k in keys.items() for where, text in places
             if k in text or (name == "store" and k[4:] in text)]
    check(not leaks, "%d leaks: %s" % (len(leaks), "; ".join(leaks)))
    say("%d answers, %d rows, %d + %d bytes of log, none holds a key"
        % (len(s.answers), len(rows), len(out), len(file_log)))


# ------------------------------------------------------------ admin

ADMIN = [("GET", "/admin/keys", None), ("POST", "/admin/keys", {"name": "x"}),
         ("DELETE", "/admin/keys/key_0123456789abcdef", None),
         ("GET", "/admin/analytics", None), ("GET", "/admin/analytics?range=1h", None)]
SPELLINGS = ["/admin/keys/", "/admin//keys", "/ADMIN/keys", "/admin/keys?x=1",
             "/admin/%6beys", "/v1/../admin/keys", "/admin/keys/../keys", "//admin/keys"]


def t_admin_endpoints_refuse_without_the_master_key(tmp, gws):
    s = Sec(tmp, gws, extra={"metrics": {"admin_key_required": True}})
    store_key, _ = tk.create_cli(s.gw, "--name", "not-admin")
    tk.wait_accepted(s.gw, store_key)
    wrong = [(None, "no key"), ("Bearer wrong-" + s.gw.admin_key, "a wrong key"),
             ("Bearer " + s.gw.admin_key[:-1], "the key cut short"),
             ("Basic " + s.gw.admin_key, "not Bearer"),
             ("Bearer " + s.st.relay_key, "the static API key"),
             ("Bearer " + store_key, "a store API key"),
             ("Bearer " + s.st.fake_key, "the provider's key")]
    for method, path, body in ADMIN + [("GET", "/metrics", None)]:
        for auth, how in wrong:
            r = s.send({"method": method, "path": path, "body": body, "auth": auth},
                       "%s %s, %s" % (method, path, how))
            check(r.status == 401, "%s %s with %s: %s" % (method, path, how, r.describe()))
            e = error_of(r, path)
            check(e["type"] == "invalid_request_error" and e["code"] == "invalid_api_key"
                  and e["param"] is None and "admin" in e["message"].lower(),
                  "%s %s with %s: error %r" % (method, path, how, e))
        r = s.send({"method": method, "path": path, "body": body,
                    "auth": "Bearer " + s.gw.admin_key}, "%s %s, admin" % (method, path))
        check(r.status in (200, 201, 404), "%s %s with the master key: %s"
              % (method, path, r.describe()))
    for path in SPELLINGS:
        for auth, how in wrong[:2]:
            r = s.send({"method": "GET", "path": path, "auth": auth}, "GET %s, %s" % (path, how))
            check(r.status in (401, 404) and "keys" not in r.json().get("object", ""),
                  "GET %s with %s: %s" % (path, how, r.describe()))
            error_of(r, path)
    s.stop()
    off = Sec(tmp + "/off", gws, admin=False,
              extra={"metrics": {"admin_key_required": True}})
    for method, path, body in ADMIN + [("GET", "/metrics", None)]:
        for auth in (None, "Bearer " + off.gw.admin_key, "Bearer " + off.st.relay_key):
            r = off.send({"method": method, "path": path, "body": body, "auth": auth},
                         "%s %s without admin_key" % (method, path))
            check(r.status == 403, "%s %s, no admin_key configured: %s"
                  % (method, path, r.describe()))
            e = error_of(r, path)
            check(e["type"] == "permission_error" and "admin_key" in e["message"],
                  "%s %s, no admin_key configured: error %r" % (method, path, e))
    off.stop()


# ------------------------------------------------------------ upstream URL

def t_a_request_cannot_choose_the_upstream(tmp, gws):
    evil = Listener()
    s = Sec(tmp, gws)
    try:
        url = "http://127.0.0.1:%d/v1" % evil.port
        hostport = "127.0.0.1:%d" % evil.port
        fields = ["base_url", "api_base", "url", "endpoint", "baseURL", "host",
                  "upstream", "provider", "proxy"]
        for f in fields:
            r = s.send({"body": chat(**{f: url})}, "body field %s" % f)
            check(r.status in (200, 400), "%s: %s" % (f, r.describe()))
        r = s.send({"body": chat(provider={"base_url": url}, extra_body={"base_url": url})},
                   "nested base_url")
        check(r.status in (200, 400), "nested: %s" % r.describe())
        for h in ["X-Forwarded-Host", "X-Forwarded-Server", "X-Original-URL",
                  "X-Rewrite-URL", "X-Host", "X-Upstream", "Forwarded"]:
            value = "host=" + hostport if h == "Forwarded" else (
                url if h.endswith("URL") else hostport)
            r = s.send({"body": chat(), "headers": [(h, value)]}, "header %s" % h)
            check(r.status == 200 and r.header("x-relay-provider") == "fake",
                  "%s: %s" % (h, r.describe()))
        r = s.send({"body": chat(), "host": False, "headers": [("Host", hostport)]}, "Host")
        check(r.status == 200, "Host: %s" % r.describe())
        for model in [url, url + "/chat/completions", hostport, "test-model@" + hostport,
                      "test-model?base_url=" + url, "fake/" + url, "../" + hostport]:
            r = s.send({"body": chat(model=model)}, "model %s" % model)
            check(r.status == 404 and error_of(r, model)["code"] == "model_not_found",
                  "model %r: %s" % (model, r.describe()))
        r = s.send({"body": chat(routing={"allow": [url]})}, "routing.allow")
        check(r.status == 400, "routing.allow a URL: %s" % r.describe())
        head, body = rt.build_request(s.st.relay_port, "POST", url + "/chat/completions",
                                      body=chat(), key=s.st.relay_key)
        r = s.send(head + body, "absolute request target")
        check(r.status in (400, 404), "an absolute target: %s" % r.describe())
        time.sleep(0.5)
        check(not evil.seen, "the attacker's listener got %d connection(s): %r"
              % (len(evil.seen), evil.seen[:2]))
        recs = s.st.fake_requests()
        check(recs and all(x["path"] == "/v1/chat/completions" and
                           x["headers"].get("authorization") == "Bearer " + s.st.fake_key
                           for x in recs),
              "the fake saw a request elsewhere or with another key: %s"
              % [(x["path"], x["headers"].get("host")) for x in recs][:3])
        s.stop()
    finally:
        evil.close()


# ------------------------------------------------------------ sizes

def body_of(size):
    """A valid chat body of exactly size bytes."""
    base = json.dumps(chat(messages=[{"role": "user", "content": ""}]))
    return base.replace('"content": ""', '"content": "%s"' % ("x" * (size - len(base))))


def head_of(port, key, size, path="/v1/models"):
    """A GET whose URL, header names and values add up to size bytes (what
    server.max_header_bytes counts: src/server/conn.c, head_append)."""
    fixed = [("Host", "127.0.0.1:%d" % port), ("Authorization", "Bearer " + key)]
    counted = len(path) + sum(len(k) + len(v) for k, v in fixed) + len("X-Pad")
    pad = "p" * (size - counted)
    lines = "".join("%s: %s\r\n" % kv for kv in fixed + [("X-Pad", pad)])
    return ("GET %s HTTP/1.1\r\n%s\r\n" % (path, lines)).encode()


def t_size_limits_hold_to_the_byte(tmp, gws):
    s = Sec(tmp, gws)
    for size, want in ((MAX_BODY, 200), (MAX_BODY + 1, 413)):
        b = body_of(size)
        check(len(b) == size, "body_of(%d) is %d bytes" % (size, len(b)))
        r = s.send({"body": b}, "a body of %d bytes" % size)
        check(r.status == want, "a body of %d bytes (max_body_bytes %d): %s"
              % (size, MAX_BODY, r.describe()))
        if want == 413:
            e = error_of(r, "413")
            check(e["code"] == "request_too_large", "413: %r" % e)
    chunks = [b[:9000], b[9000:]]
    r = s.send({"chunked": chunks}, "a chunked body of max + 1 bytes")
    check(r.status == 413, "a chunked body over the limit: %s" % r.describe())
    for size, want in ((MAX_HEADER, 200), (MAX_HEADER + 1, 431)):
        r = s.send(head_of(s.st.relay_port, s.st.relay_key, size), "a head of %d" % size)
        check(r.status == want, "a head of %d counted bytes (max_header_bytes %d): %s"
              % (size, MAX_HEADER, r.describe()))
        if want == 431:
            e = error_of(r, "431")
            check(e["code"] == "headers_too_large", "431: %r" % e)
    r = s.send({"body": chat()}, "a normal request after them")
    check(r.status == 200, "after the limits: %s" % r.describe())
    s.stop()


TESTS = [
    t_keys_never_appear_in_logs_metrics_answers_or_rows,
    t_admin_endpoints_refuse_without_the_master_key,
    t_a_request_cannot_choose_the_upstream,
    t_size_limits_hold_to_the_byte,
]


if __name__ == "__main__":
    # test_limits' runner: a temp folder, the gateways stopped and their
    # logs checked for keys, `ok`/`FAIL` lines.
    sys.exit(rt.script_main(__doc__, TESTS, tl.run_one, tl.set_verbose))
