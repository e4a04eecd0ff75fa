#!/usr/bin/env python3
"""Integration tests of GET /admin/analytics through the real binary, with
SQLite and, when DATABASE_URL is set (scripts/test.sh sets it), PostgreSQL
(a database of its own on that server, so the log holds only this test's
rows): a scripted load through the gateway (two store keys, two models,
errors), then every figure of the API equals the request log's own sums;
the admin key is required (401) and a bad range is a 400 in OpenAI's
shape; the dashboard listener serves the page and, with local_admin, the
analytics without the key.

Run by tests/integration/run.py (after the cases) or alone:
    python3 tests/integration/test_analytics.py [-v]
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
"""
import argparse
import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import relaytest as rt  # noqa: E402

VERBOSE = False
SUMS = ("SELECT count(*), coalesce(sum(prompt_tokens), 0), "
        "coalesce(sum(completion_tokens), 0), coalesce(sum(cost_nusd), 0), "
        "coalesce(sum(savings_nusd), 0), "
        "coalesce(sum(CASE WHEN status >= 400 OR error_code IS NOT NULL "
        "THEN 1 ELSE 0 END), 0), "
        "coalesce(sum(latency_us), 0), "
        "coalesce(sum(CASE WHEN provider <> '' THEN 1 ELSE 0 END), 0), "
        "coalesce(sum(CASE WHEN model <> '' THEN 1 ELSE 0 END), 0), "
        "coalesce(sum(CASE WHEN status = 200 AND error_code IS NOT NULL "
        "THEN 1 ELSE 0 END), 0) "
        "FROM request_log")


def check(cond, msg):
    if not cond:
        raise rt.CaseFailure(msg)


def get(port, path, key=None):
    headers = {"Authorization": "Bearer " + key} if key else {}
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.headers.get("content-type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type"), e.read()


def log_sums(store):
    """The request log's own figures, read straight from the store."""
    if store.startswith("sqlite:"):
        db = sqlite3.connect(store[len("sqlite:"):])
        row = db.execute(SUMS).fetchone()
        keys = db.execute("SELECT key_prefix, count(*), sum(cost_nusd) FROM "
                          "request_log GROUP BY key_prefix").fetchall()
        db.close()
    else:
        out = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-F", ",",
                              store, "-c", SUMS], capture_output=True,
                             text=True, check=True).stdout.strip()
        row = tuple(int(x) for x in out.split(","))
        out = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-F", ",",
                              store, "-c", "SELECT key_prefix, count(*), "
                              "sum(cost_nusd) FROM request_log GROUP BY 1"],
                             capture_output=True, text=True,
                             check=True).stdout.strip()
        keys = [(a, int(b), int(c)) for a, b, c in
                (line.split(",") for line in out.splitlines() if line)]
    return [int(x) for x in row], {k: (int(n), int(c)) for k, n, c in keys}


def test_figures_equal_the_logs_own_sums(store, tmp):
    admin = "adm-" + secrets.token_hex(8)
    dash_port = rt.free_port()
    st = rt.Stack({"store": store, "admin_key": admin,
                   "models": [{"name": "other-model", "upstream":
                               "up-other?ttft_ms=0&tps=0&tokens=5"},
                              {"name": "cut-model", "upstream":
                               "up-cut?ttft_ms=0&tps=0&tokens=20&fault=cut"
                               "&after=3"}],
                   "dashboard": {"listen": "127.0.0.1:%d" % dash_port,
                                 "dir": str(ROOT / "dashboard" / "dist"),
                                 "local_admin": True}}, tmpdir=tmp)
    try:
        keys = []
        for name in ("prod-chat", "batch-enrich"):
            r = subprocess.run([rt.relay_bin(), "keys", "create", "--name",
                                name, "--config", st.config_path],
                               capture_output=True, text=True, env=st.env,
                               timeout=60)
            check(r.returncode == 0, "keys create: " + r.stderr)
            keys.append(r.stdout.strip().splitlines()[-1])
        time.sleep(0.6)  # the key cache polls every 250 ms
        sent = 0
        for i in range(40):
            key = keys[0] if i % 3 else keys[1]
            model = "test-model" if i % 2 else "other-model"
            if i % 10 == 9:
                model = "no-such-model"  # a 404 with its row
            body = json.dumps({"model": model, "messages": [
                {"role": "user", "content": "hi %d" % i}]}).encode()
            req = urllib.request.Request(
                "http://127.0.0.1:%d/v1/chat/completions" % st.relay_port,
                data=body, headers={"Authorization": "Bearer " + key,
                                    "Content-Type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=15).read()
            except urllib.error.HTTPError as e:
                e.read()
            sent += 1
        # Streams that break after their 200: errors too (errors_5xx).
        for i in range(3):
            body = json.dumps({"model": "cut-model", "stream": True,
                               "messages": [{"role": "user",
                                             "content": "cut %d" % i}]})
            req = urllib.request.Request(
                "http://127.0.0.1:%d/v1/chat/completions" % st.relay_port,
                data=body.encode(), headers={
                    "Authorization": "Bearer " + keys[0],
                    "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=15) as r:
                check(r.status == 200, "cut stream: %s" % r.status)
                text = r.read().decode()
            check("upstream_stream_cut" in text and "[DONE]" not in text,
                  "the cut stream ended with its error: %s" % text[-300:])
            sent += 1
        deadline = time.time() + 10
        while log_sums(store)[0][0] < sent and time.time() < deadline:
            time.sleep(0.1)
        (n, prompt, completion, cost, savings, errors, lat, n_prov,
         n_model, cut), by_key = log_sums(store)
        check(n == sent, "the log holds %d rows, %d sent" % (n, sent))
        check(cut == 3, "%d rows of a 200 with an error code, 3 sent" % cut)
        status, ctype, raw = get(st.relay_port, "/admin/analytics?range=1h",
                                 admin)
        check(status == 200 and ctype == "application/json",
              "analytics: %s %s" % (status, raw[:200]))
        a = json.loads(raw)
        t = a["totals"]
        want = {"requests": n, "prompt_tokens": prompt,
                "completion_tokens": completion, "spend_nusd": cost,
                "savings_nusd": savings, "errors": errors}
        for k, v in want.items():
            check(t[k] == v, "totals.%s = %s, the log says %s" % (k, t[k], v))
        check(abs(t["avg_latency_ms"] - lat / n / 1000.0) < 1e-6,
              "avg_latency_ms %s, the log %s" % (t["avg_latency_ms"],
                                                 lat / n / 1000.0))
        check(abs(t["error_rate"] - errors / n) < 1e-9, "error_rate")
        check(sum(h["requests"] for h in a["hours"]) == n, "hours sum")
        check(sum(h["spend_nusd"] for h in a["hours"]) == cost, "hours spend")
        # Requests refused before a provider (401, 429) count in the
        # totals, not in the provider mix or the latency by model.
        check(n_prov < n, "the load has requests that reached no provider")
        check(sum(p["requests"] for p in a["providers"]) == n_prov,
              "providers")
        check(sum(m["requests"] for m in a["models"]) == n_model, "models")
        check(all(p["provider"] for p in a["providers"]), "an empty provider")
        top = {k["prefix"]: k for k in a["keys"]["top"]}
        for prefix, (kn, kc) in by_key.items():
            check(top[prefix]["requests"] == kn and
                  top[prefix]["spend_nusd"] == kc,
                  "key %s: %s, the log says %s/%s" % (prefix, top[prefix],
                                                      kn, kc))
        names = sorted(k["name"] for k in a["keys"]["top"])
        check(names == ["batch-enrich", "prod-chat"], "names %s" % names)
        check(a["keys"]["active"] == 2, "active %s" % a["keys"]["active"])
        check(a["cache"]["spend_nusd"] == cost, "cache panel spend")
        check(a["demo"] is False, "not demo keys")
        # Reading the analytics adds no row.
        check(log_sums(store)[0][0] == n, "an analytics read was logged")
        # The admin key, and the range.
        status, _, raw = get(st.relay_port, "/admin/analytics")
        check(status == 401, "no key: %s" % status)
        status, _, raw = get(st.relay_port, "/admin/analytics", "wrong")
        check(status == 401, "a wrong key: %s" % status)
        status, _, raw = get(st.relay_port, "/admin/analytics?range=90d",
                             admin)
        err = json.loads(raw).get("error", {})
        check(status == 400 and err.get("param") == "range" and
              err.get("type") == "invalid_request_error",
              "bad range: %s %s" % (status, raw[:200]))
        # The dashboard listener: the page, and the analytics without key.
        status, _, raw = get(dash_port, "/admin/analytics?range=24h")
        check(status == 200 and json.loads(raw)["totals"]["requests"] == n,
              "dashboard listener analytics: %s" % status)
        status, ctype, raw = get(dash_port, "/")
        if (ROOT / "dashboard" / "dist" / "index.html").exists():
            check(status == 200 and ctype.startswith("text/html"),
                  "dashboard page: %s %s" % (status, ctype))
        status, _, _ = get(dash_port, "/../../etc/passwd")
        check(status == 404, "traversal: %s" % status)
    finally:
        codes = st.close()
    check(codes.get("relay") == 0, "relay exited %s" % codes.get("relay"))


TESTS = [test_figures_equal_the_logs_own_sums]


def pg_database(base):
    """A database of its own on the test server."""
    name = "relay_analytics_" + secrets.token_hex(4)
    subprocess.run(["psql", "-X", "-q", base, "-c",
                    "CREATE DATABASE %s" % name], check=True,
                   capture_output=True)
    return re.sub(r"/[^/?]*(\?|$)", "/" + name + r"\1", base, count=1), name


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    VERBOSE = ap.parse_args().verbose
    os.environ.setdefault("RELAY_MIGRATIONS", str(ROOT / "migrations"))
    stores = ["sqlite"]
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        stores.append("postgresql")
    passed = failed = 0
    for label in stores:
        for t in TESTS:
            tmp = tempfile.mkdtemp(prefix="relay-analytics-")
            dropped = None
            try:
                if label == "sqlite":
                    store = "sqlite:" + os.path.join(tmp, "relay.db")
                else:
                    store, dropped = pg_database(os.environ["DATABASE_URL"])
                t(store, tmp)
                print("ok %s[%s]" % (t.__name__, label), flush=True)
                passed += 1
            except Exception as e:  # noqa: BLE001
                print("FAIL %s[%s]: %s (kept %s)" % (t.__name__, label, e,
                                                     tmp), flush=True)
                if VERBOSE:
                    traceback.print_exc()
                failed += 1
            finally:
                if dropped:
                    subprocess.run(["psql", "-X", "-q",
                                    os.environ["DATABASE_URL"], "-c",
                                    "DROP DATABASE IF EXISTS %s" % dropped],
                                   capture_output=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
