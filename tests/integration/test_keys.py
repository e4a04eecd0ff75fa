#!/usr/bin/env python3
"""Integration tests of API keys kept in the store: `relay keys`, the admin
API (/admin/keys) and authentication through the key cache, against the
real binary with SQLite and, when DATABASE_URL is set (scripts/test.sh sets
it), PostgreSQL: two gateways on one PostgreSQL, a key revoked through one
is refused by the other within a second.

Run by tests/integration/run.py (after the cases) or alone:
    python3 tests/integration/test_keys.py [-v] [-k NAME]
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
"""
import hashlib
import http.client
import json
import os
import secrets
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

VERBOSE = False


def say(*a):
    if VERBOSE:
        print("   ", *a, flush=True)


def check(cond, msg):
    if not cond:
        raise rt.CaseFailure(msg)


class Gw:
    """A fake and a gateway with a store and an admin key."""

    def __init__(self, store, tmp, admin=True, extra=None):
        self.admin_key = "adm-" + secrets.token_hex(16)
        over = {"store": store,
                "models": [{"name": "other-model",
                            "upstream": "up-other?ttft_ms=0&tps=0&tokens=3"}]}
        if admin:
            over["admin_key"] = self.admin_key
        over.update(extra or {})
        self.st = rt.Stack(over, tmpdir=tmp)
        self.port = self.st.relay_port

    def cli(self, *args, stdin=None):
        env = dict(self.st.env)
        r = subprocess.run([rt.relay_bin(), "keys"] + list(args) +
                           ["--config", self.st.config_path],
                           capture_output=True, text=True, env=env,
                           timeout=60, input=stdin)
        say("relay keys", " ".join(args), "->", r.returncode)
        return r

    def call(self, method, path, key=None, body=None, auth=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        headers = {"Content-Type": "application/json"}
        if auth is not None:
            headers["Authorization"] = auth
        elif key is not None:
            headers["Authorization"] = "Bearer " + key
        data = None if body is None else (body if isinstance(body, str)
                                          else json.dumps(body))
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        conn.close()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        return r.status, parsed

    def chat(self, key=None, model="test-model", auth=None):
        return self.call("POST", "/v1/chat/completions", key=key, auth=auth,
                         body={"model": model,
                               "messages": [{"role": "user", "content": "hi"}]})

    def admin(self, method, path, body=None, key=None):
        return self.call(method, path, key=key or self.admin_key, body=body)

    def stop(self):
        codes = self.st.close()
        out = self.st.relay.output()
        check(codes.get("relay") == 0, "relay exited %s:\n%s"
              % (codes.get("relay"), rt.tail(out)))
        return out


SECRETS = []  # every key made by a test: none may reach a log


def wait_accepted(gw, key, model="test-model"):
    """The key cache polls every 250 ms: a key made by the CLI works soon."""
    deadline = time.time() + 2
    while True:
        status, body = gw.chat(key, model=model)
        if status != 401 or time.time() > deadline:
            return status, body
        time.sleep(0.05)


def create_cli(gw, *args):
    r = gw.cli("create", *args)
    check(r.returncode == 0, "relay keys create: %d %s" % (r.returncode, r.stderr))
    lines = r.stdout.rstrip("\n").split("\n")
    key = lines[-1]
    SECRETS.append(key)
    check(key.startswith("glw_") and len(key) == 44 and key.isalnum() is False
          and key[4:].isalnum(), "last line is not a key alone: %r" % lines[-1])
    return key, r.stdout


def error_of(body):
    check(isinstance(body, dict) and isinstance(body.get("error"), dict),
          "not an OpenAI error: %r" % body)
    return body["error"]


# ------------------------------------------------------------ tests

def t_cli_key_works_and_list_hides_the_hash(store, tmp, gws):
    gw = Gw(store, tmp)
    gws.append(gw)
    key, out = create_cli(gw, "--name", "prod-chat", "--rpm", "60", "--tpm",
                          "100000", "--budget-usd", "50", "--period", "day")
    check("prod-chat" in out and key[:8] in out, "create says no name/prefix")
    status, _ = wait_accepted(gw, key)
    check(status == 200, "the new key got %s" % status)
    lst = gw.cli("list", "--json")
    check(lst.returncode == 0, "list failed: %s" % lst.stderr)
    rows = json.loads(lst.stdout)
    mine = [k for k in rows if k["prefix"] == key[:8]]
    check(len(mine) == 1 and mine[0]["rpm"] == 60 and
          mine[0]["budget_nusd"] == 50 * 10**9 and mine[0]["period"] == "day",
          "list: %s" % mine)
    sha = hashlib.sha256(key.encode()).hexdigest()
    table = gw.cli("list", "--all").stdout
    check(sha not in lst.stdout and sha not in table and key not in table,
          "list shows the hash or key")
    status, body = gw.admin("GET", "/admin/keys")
    check(status == 200 and sha not in json.dumps(body), "GET /admin/keys: %s" % status)


def t_401_says_why(store, tmp, gws):
    gw = Gw(store, tmp)
    gws.append(gw)
    status, body = gw.admin("POST", "/admin/keys", {"name": "to-revoke"})
    check(status == 201 and body["key"].startswith("glw_"), "POST: %s %s" % (status, body))
    key = body["key"]
    SECRETS.append(key)
    check(gw.chat(key)[0] == 200, "created key refused")
    status, rb = gw.admin("DELETE", "/admin/keys/" + body["id"])
    check(status == 200 and rb["revoked_at"], "DELETE: %s %s" % (status, rb))
    cases = [
        (None, "missing"),
        ("Basic abc", "Bearer"),
        ("Bearer", "Malformed"),
        ("Bearer glw_" + "x" * 40, "Incorrect"),
        ("Bearer " + key, "revoked"),
    ]
    for auth, word in cases:
        if auth is None:
            status, b = gw.call("POST", "/v1/chat/completions",
                                body={"model": "test-model", "messages": []})
        else:
            status, b = gw.chat(auth=auth)
        e = error_of(b)
        check(status == 401 and word.lower() in e["message"].lower() and
              e["code"] == "invalid_api_key",
              "%r: %s %s" % (auth and auth[:12], status, e))
        check(key not in e["message"], "the key is echoed")
    status, b = gw.admin("DELETE", "/admin/keys/key_0000000000000000")
    check(status == 404, "unknown DELETE: %s" % status)


def t_403_for_a_model_the_key_may_not_use(store, tmp, gws):
    gw = Gw(store, tmp)
    gws.append(gw)
    key, _ = create_cli(gw, "--name", "only-test", "--models", "test-model")
    check(wait_accepted(gw, key)[0] == 200, "allowed model refused")
    status, b = gw.chat(key, model="other-model")
    e = error_of(b)
    check(status == 403 and e["code"] == "model_not_allowed" and
          e["type"] == "permission_error" and "other-model" in e["message"]
          and "test-model" in e["message"], "disallowed: %s %s" % (status, e))
    check(gw.chat(gw.st.relay_key, model="other-model")[0] == 200,
          "a static key has no model list")


def t_admin_needs_the_master_key(store, tmp, gws):
    gw = Gw(store, tmp)
    gws.append(gw)
    status, b = gw.call("GET", "/admin/keys")
    check(status == 401 and "admin" in error_of(b)["message"].lower(), "missing: %s" % status)
    status, b = gw.admin("GET", "/admin/keys", key="wrong-" + gw.admin_key)
    check(status == 401, "wrong: %s" % status)
    status, b = gw.admin("GET", "/admin/keys", key=gw.st.relay_key)
    check(status == 401, "an API key is not the admin key: %s" % status)
    status, b = gw.admin("POST", "/admin/keys", {"name": "x", "rpm": -1})
    check(status == 400 and error_of(b)["param"] == "rpm", "bad rpm: %s %s" % (status, b))
    status, b = gw.admin("POST", "/admin/keys", {"name": "x", "colour": 1})
    check(status == 400 and "colour" in error_of(b)["message"], "unknown field: %s" % status)
    status, b = gw.admin("POST", "/admin/keys", {"rpm": 1})
    check(status == 400 and error_of(b)["param"] == "name", "no name: %s %s" % (status, b))
    gw.stop()
    gws.remove(gw)
    off = Gw(store, tmp, admin=False)
    gws.append(off)
    status, b = off.admin("GET", "/admin/keys")
    check(status == 403 and "admin_key" in error_of(b)["message"], "no admin_key: %s" % status)


def t_revoked_on_a_refused_on_b_within_a_second(store, tmp, gws):
    if not store.startswith("postgres"):
        return "skip"
    a = Gw(store, tmp)
    gws.append(a)
    tmp_b = tempfile.mkdtemp(prefix="relay-keys-b-")
    b = Gw(store, tmp_b)
    gws.append(b)
    status, body = a.admin("POST", "/admin/keys", {"name": "shared", "rpm": 5})
    check(status == 201, "POST on A: %s" % status)
    key = body["key"]
    SECRETS.append(key)
    deadline = time.time() + 2
    while b.chat(key)[0] != 200:
        check(time.time() < deadline, "B never accepted a key made on A")
        time.sleep(0.02)
    status, _ = a.admin("DELETE", "/admin/keys/" + body["id"])
    t0 = time.time()
    check(status == 200, "DELETE on A: %s" % status)
    while True:
        status, rb = b.chat(key)
        if status == 401:
            break
        check(time.time() - t0 < 2.0, "B still accepts the key after 2 s")
        time.sleep(0.01)
    took = time.time() - t0
    say("refused by B after %.3f s" % took)
    check(took < 1.0, "B refused the key only after %.3f s" % took)
    check("revoked" in error_of(rb)["message"], "B's message: %s" % rb)


TESTS = [t_cli_key_works_and_list_hides_the_hash, t_401_says_why,
         t_403_for_a_model_the_key_may_not_use, t_admin_needs_the_master_key,
         t_revoked_on_a_refused_on_b_within_a_second]


def run_one(t, store, label):
    tmp = tempfile.mkdtemp(prefix="relay-keys-")
    gws = []
    t0 = time.time()
    try:
        res = t(store, tmp, gws)
        logs = [g.stop() for g in list(gws)]
        gws.clear()
        for out in logs:
            for line in out.splitlines():
                check(line.startswith("{"), "a log line is not JSON: %r" % line[:100])
            for key in SECRETS:
                check(key not in out and key[4:] not in out, "a key is in the log")
        shutil.rmtree(tmp, ignore_errors=True)
        if res == "skip":
            # Not counted: a test that did not run has not passed.
            print("skip %s[%s]  (needs PostgreSQL)" % (t.__name__, label), flush=True)
            return None
        print("ok   %s[%s]  (%d ms)" % (t.__name__, label, (time.time() - t0) * 1000), flush=True)
        return True
    except Exception as e:  # noqa: BLE001
        for g in gws:
            try:
                g.st.close()
            except Exception:  # noqa: BLE001
                pass
        print("FAIL %s[%s]: %s (kept %s)" % (t.__name__, label, e, tmp), flush=True)
        if VERBOSE:
            traceback.print_exc()
        return False


def set_verbose(v):
    global VERBOSE
    VERBOSE = v


def store_tests():
    """Each test once per store: SQLite (a fresh file each), then
    PostgreSQL when DATABASE_URL is one."""
    stores = [("sqlite", None)]
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        stores.append(("postgresql", os.environ["DATABASE_URL"]))
    runs = []
    for label, url in stores:
        for t in TESTS:
            def run(t=t, label=label, url=url):
                store = url
                if store is None:
                    store = "sqlite:" + os.path.join(tempfile.mkdtemp(prefix="relay-keys-db-"), "relay.db")
                return run_one(t, store, label)
            run.__name__ = t.__name__
            runs.append(run)
    return runs


if __name__ == "__main__":
    sys.exit(rt.script_main(__doc__, store_tests(), lambda run: run(), set_verbose))
