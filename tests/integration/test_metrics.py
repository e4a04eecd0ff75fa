#!/usr/bin/env python3
"""Integration tests of GET /metrics (src/metrics/) against the real
binary and the fake provider, with the SQLite request log in a temp dir:

- a scripted load (successes, a stream, 401s, an unknown model, a 429 from
  a key's rpm, an upstream 500 until its breaker opens), then: the scrape
  passes `promtool check metrics` (Debian package prometheus, listed in
  scripts/packages.txt; this script installs nothing); gateway_requests_total
  summed equals the request log's rows; tokens and cost agree with the
  log's sums; the histograms' _count equal the requests; error classes,
  refusals, attempts and breakers are counted; the breaker's changes are
  logged once each;
- a scrape (GET or HEAD) leaves no row and no log line;
- metrics.admin_key_required: the admin key is needed.

Run by tests/integration/run.py (after the cases) or alone:
    python3 tests/integration/test_metrics.py [-v] [-k NAME]
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
"""
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import relaytest as rt  # noqa: E402
import test_keys as tk  # noqa: E402

VERBOSE = False
check = tk.check
PRICED = {"name": "test-model", "price": {"input": 1.0, "output": 2.0},
          "upstream": "up-basic?ttft_ms=0&tps=0&tokens=12"}
BROKEN = {"name": "broken-model", "provider": "fake2",
          "price": {"input": 1.0, "output": 2.0},
          "upstream": "up-broken?status=500"}
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def say(*a):
    if VERBOSE:
        print("   ", *a, flush=True)


def gateway(tmp, extra=None):
    os.makedirs(tmp, exist_ok=True)
    # The broken model has a provider of its own, so that its breaker
    # does not take the working model's provider down with it.
    over = {"store": "sqlite:" + os.path.join(tmp, "relay.db"),
            "models": [PRICED, BROKEN],
            "providers": {"fake2": {"kind": "openai",
                                    "base_url": "${FAKE_URL}",
                                    "api_key": "${FAKE_API_KEY}"}}}
    over.update(extra or {})
    return tk.Gw(over["store"], tmp, extra=over)


def scrape(gw, key=None, method="GET"):
    auth = ("Bearer " + key) if key else None
    r = rt.http_request(gw.port, method, "/metrics", auth=auth)
    return r


def parse(text):
    """{name: [(labels dict, value str)]} of the sample lines."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        check(m, "not a sample line: %r" % line)
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.setdefault(m.group(1), []).append((labels, m.group(3)))
    return out


def total(samples, metric, **where):
    return sum(Decimal(v) for labels, v in samples.get(metric, [])
               if all(labels.get(k) == w for k, w in where.items()))


def promtool(text):
    exe = shutil.which("promtool")
    check(exe, "promtool is not installed: apt-get install prometheus "
               "(scripts/packages.txt lists it)")
    r = subprocess.run([exe, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "promtool check metrics: %s%s"
          % (r.stdout, r.stderr))


def log_rows(gw, expect_at_least):
    """The request log's figures once the writer has flushed (it writes
    within ~50 ms; polled until two reads agree)."""
    db = os.path.join(gw.st.tmp, "relay.db")
    last = None
    deadline = time.time() + 5
    while True:
        con = sqlite3.connect(db)
        row = con.execute(
            "SELECT count(*), coalesce(sum(prompt_tokens), 0), "
            "coalesce(sum(completion_tokens), 0), coalesce(sum(cost_nusd), 0) "
            "FROM request_log").fetchone()
        con.close()
        if row == last and row[0] >= expect_at_least:
            return row
        if time.time() > deadline:
            raise rt.CaseFailure("request log stuck at %r" % (row,))
        last = row
        time.sleep(0.1)


def by_status(gw):
    """The request log's rows by status class, and its 429s."""
    con = sqlite3.connect(os.path.join(gw.st.tmp, "relay.db"))
    out = {}
    for status, n in con.execute(
            "SELECT status, count(*) FROM request_log GROUP BY status"):
        cls = "%dxx" % (status // 100)
        out[cls] = out.get(cls, 0) + n
        if status == 429:
            out["429"] = n
    con.close()
    return out


def chat(gw, key, model="test-model", stream=False):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    status, _ = gw.call("POST", "/v1/chat/completions", key=key, body=body)
    return status


def load(gw):
    """The scripted load; returns the number of requests made."""
    n = 0
    for _ in range(5):
        check(chat(gw, gw.st.relay_key) == 200, "a success failed")
        n += 1
    for _ in range(2):
        check(chat(gw, gw.st.relay_key, stream=True) == 200, "a stream failed")
        n += 1
    for _ in range(3):
        check(chat(gw, "wrong-key") == 401, "a wrong key was not 401")
        n += 1
    check(chat(gw, gw.st.relay_key, model="no-such-model") == 404,
          "an unknown model was not 404")
    n += 1
    key = tk.create_cli(gw, "--name", "metrics-rpm", "--rpm", "1")[0]
    status, _ = tk.wait_accepted(gw, key)  # 401s until the key is loaded
    n += 1
    check(status == 200, "the rpm key's first call: %d" % status)
    check(chat(gw, key) == 429, "the rpm key's second call was not 429")
    n += 1
    for _ in range(7):
        check(chat(gw, gw.st.relay_key, model="broken-model") >= 500,
              "an upstream 500 was not a 5xx")
        n += 1
    return n


def t_counts_agree_with_the_request_log_and_promtool_passes(tmp):
    gw = gateway(tmp)
    try:
        load(gw)
        # Every row the writer will have: wait until it is quiet.
        rows, prompt, completion, cost_nusd = log_rows(gw, 20)
        r = scrape(gw)
        check(r.status == 200, "/metrics: %d" % r.status)
        check(r.header("content-type").startswith("text/plain; version=0.0.4"),
              "content type: %r" % r.header("content-type"))
        text = r.body.decode()
        promtool(text)
        s = parse(text)
        say("rows", rows, "requests", total(s, "gateway_requests_total"))
        check(total(s, "gateway_requests_total") == rows,
              "requests_total %s != %d rows" % (total(s, "gateway_requests_total"), rows))
        check(total(s, "gateway_input_tokens_total") == prompt, "prompt tokens")
        check(total(s, "gateway_output_tokens_total") == completion,
              "completion tokens")
        check(total(s, "gateway_cost_usd_total") * 10**9 == cost_nusd,
              "cost %s USD != %d nUSD" % (total(s, "gateway_cost_usd_total"), cost_nusd))
        for h in ("gateway_request_latency_seconds", "gateway_overhead_seconds"):
            check(total(s, h + "_count") == rows, h + "_count != rows")
            check(total(s, h + "_bucket", le="+Inf") == rows, h + " +Inf")
        check(total(s, "gateway_ttft_seconds_count") >= 2, "streams' ttft")
        by = by_status(gw)
        say("log by status", by)
        for cls, n in by.items():
            if not cls.endswith("xx"):
                continue
            check(total(s, "gateway_requests_total", status_class=cls) == n,
                  "%s: metrics %s, log %d" % (cls, total(
                      s, "gateway_requests_total", status_class=cls), n))
        check(total(s, "gateway_errors_total", error_class="caller") ==
              by.get("4xx", 0) - by.get("429", 0), "caller errors (401, 404)")
        check(total(s, "gateway_errors_total", error_class="policy") ==
              by.get("429", 0) == 1, "policy errors (the 429)")
        check(total(s, "gateway_errors_total", error_class="provider") ==
              by.get("5xx", 0) == 7, "provider errors (the 500s)")
        check(total(s, "gateway_rate_limited_total", reason="rpm") == 1, "rpm")
        check(total(s, "gateway_provider_errors_total", model="broken-model",
                    outcome="server_error") >= 5, "provider errors")
        check(total(s, "gateway_upstream_attempts_total", model="test-model",
                    outcome="ok") == 8, "ok attempts")
        check(total(s, "gateway_circuit_breaker_state", scope="model",
                    name="broken-model") == 1, "the broken model's breaker")
        check(total(s, "gateway_in_flight_requests") == 0, "in flight")
        check(total(s, "gateway_log_queue_depth") == 0, "queue depth")
        check("gateway_journal_bytes" in s, "journal bytes")
        out = gw.stop()
        opened = [l for l in out.splitlines() if "circuit breaker opened" in l
                  and '"model":"broken-model"' in l]
        check(len(opened) == 1, "breaker opened lines: %d" % len(opened))
        check('"path":"/metrics"' not in out, "a scrape was logged")
        check(gw.st.prompt not in out, "prompt text in the log")
    finally:
        gw.st.close()


def t_a_scrape_leaves_no_row_and_head_has_no_body(tmp):
    gw = gateway(tmp)
    try:
        check(chat(gw, gw.st.relay_key) == 200, "a success failed")
        before = log_rows(gw, 1)[0]
        for method in ("GET", "HEAD", "GET"):
            r = scrape(gw, method=method)
            check(r.status == 200, "%s /metrics: %d" % (method, r.status))
            if method == "HEAD":
                check(r.body == b"", "HEAD has a body")
        r = rt.http_request(gw.port, "POST", "/metrics", auth=None, body="{}")
        check(r.status == 405, "POST /metrics: %d" % r.status)
        time.sleep(0.2)
        check(log_rows(gw, 1)[0] == before, "a scrape left a row")
        s = parse(scrape(gw).body.decode())
        check(total(s, "gateway_requests_total") == before, "scrapes counted")
        out = gw.stop()
        check('/metrics' not in out, "a scrape has a log line")
    finally:
        gw.st.close()


def t_admin_key_required_asks_for_the_admin_key(tmp):
    gw = gateway(tmp, {"metrics": {"admin_key_required": True}})
    try:
        check(scrape(gw).status == 401, "no key: not 401")
        check(scrape(gw, key=gw.st.relay_key).status == 401, "API key: not 401")
        r = scrape(gw, key=gw.admin_key)
        check(r.status == 200, "admin key: %d" % r.status)
        promtool(r.body.decode())
        gw.stop()
    finally:
        gw.st.close()


TESTS = [
    t_counts_agree_with_the_request_log_and_promtool_passes,
    t_a_scrape_leaves_no_row_and_head_has_no_body,
    t_admin_key_required_asks_for_the_admin_key,
]


def run_one(t):
    tmp = tempfile.mkdtemp(prefix="relay-metrics-")
    t0 = time.time()
    try:
        t(tmp)
        print("ok   %s  (%d ms)" % (t.__name__, (time.time() - t0) * 1000),
              flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
        return True
    except Exception as e:  # noqa: BLE001
        print("FAIL %s: %s (kept %s)" % (t.__name__, e, tmp), flush=True)
        if VERBOSE:
            traceback.print_exc()
        return False


def set_verbose(on):
    global VERBOSE
    VERBOSE = tk.VERBOSE = on


if __name__ == "__main__":
    sys.exit(rt.script_main(__doc__, TESTS, run_one, set_verbose))
