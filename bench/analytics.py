#!/usr/bin/env python3
"""bench/analytics.py - how fast /admin/analytics answers over a large log
(`make bench-analytics`, part of `make bench`).

For PostgreSQL and SQLite: fills a request log with N synthetic rows
(default 10 million, BENCH_ROWS) spread over the last 30 days, in SQL
(generate_series in PostgreSQL, a recursive CTE in SQLite), builds the
hourly rollup with the migration's own backfill (005_request_rollup_
backfill.*.sql, so it is the table the writer would have kept), starts the
real gateway on it and times GET /admin/analytics for each range: the p50
of BENCH_CALLS calls (default 5) after one warm-up. Prints one table.

A filled log is kept (PostgreSQL: database relay_bench; SQLite:
.relay/bench/analytics.db) and reused by the next run when its row count
matches, so only the first run pays for the fill. PostgreSQL comes from
DATABASE_URL, else a throw-away one from scripts/services.sh.
"""
import json
import os
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import relaytest as rt  # noqa: E402

ROWS = int(os.environ.get("BENCH_ROWS", "10000000"))
CALLS = int(os.environ.get("BENCH_CALLS", "5"))
RANGES = ["1h", "24h", "7d", "30d"]
SPAN_S = 30 * 24 * 3600


def say(*a):
    print("==>", *a, file=sys.stderr, flush=True)


# The synthetic row i, as SQL over an integer column i: 8 keys, 6 models
# (each of one provider), 1 in 3 a cache hit, 1 in 50 an error, latency
# from 40 ms to 2.4 s. now_s is the end of the log (Unix seconds).
def columns(now_s, ts_expr):
    return {
        "ts": ts_expr,
        "request_id": "'req_bench_' || i",
        "key_id": "'key_bench' || (i % 8)",
        "key_prefix": "'glw_b' || (i % 8)",
        "model_requested": "'auto'",
        "model": "CASE i % 6 WHEN 0 THEN 'llama-3.1-8b' WHEN 1 THEN "
                 "'llama-3.3-70b' WHEN 2 THEN 'gemini-flash' WHEN 3 THEN "
                 "'gemini-2.0-flash' WHEN 4 THEN 'claude-haiku' ELSE "
                 "'qwen-local' END",
        "provider": "CASE i % 6 WHEN 0 THEN 'groq' WHEN 1 THEN 'groq' "
                    "WHEN 2 THEN 'gemini' WHEN 3 THEN 'gemini' WHEN 4 THEN "
                    "'anthropic' ELSE 'ollama' END",
        "status": "CASE WHEN i % 50 = 0 THEN 502 ELSE 200 END",
        "prompt_tokens": "100 + i % 400",
        "completion_tokens": "20 + i % 300",
        "cost_nusd": "CASE WHEN i % 3 = 0 THEN 0 ELSE 20000 + (i % 997) * 90 "
                     "END",
        "savings_nusd": "CASE WHEN i % 3 = 0 THEN 30000 ELSE 0 END",
        "cache_status": "CASE WHEN i % 3 = 0 THEN 'exact' ELSE 'miss' END",
        "latency_us": "40000 + ((i % 3001) * 797 + (i % 7) * 1000) % 2400000",
    }


def insert_sql(cols, source):
    names = ", ".join(cols)
    values = ", ".join(cols.values())
    return "INSERT INTO request_log (%s) SELECT %s FROM %s" % (
        names, values, source)


def backfill_sql(engine):
    name = "005_request_rollup_backfill.%s.sql" % engine
    return (ROOT / "migrations" / name).read_text()


# ---------------------------------------------------------------- stores

def migrate(url, tmp):
    cfg = Path(tmp) / "migrate.yaml"
    cfg.write_text("store: %s\nproviders:\n  p: {kind: openai, base_url: "
                   "'http://127.0.0.1:9/v1'}\nmodels:\n  - {name: m, "
                   "provider: p, upstream: m, price: {input: 1, output: 1}, "
                   "tier: 1, context: 1000}\n" % url)
    env = dict(os.environ, RELAY_MIGRATIONS=str(ROOT / "migrations"))
    r = subprocess.run([rt.relay_bin(), "migrate", "--config", str(cfg)],
                       capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        sys.exit("relay migrate failed: %s %s" % (r.stdout, r.stderr))


def psql(url, sql, db=None):
    if db:
        url = re.sub(r"/[^/]*$", "/" + db, url)
    r = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v",
                        "ON_ERROR_STOP=1", url, "-c", sql],
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        sys.exit("psql failed: %s" % r.stderr)
    return r.stdout.strip()


def fill_pg(base_url, tmp, now_s):
    url = re.sub(r"/[^/]*$", "/relay_bench", base_url)
    exists = psql(base_url, "SELECT count(*) FROM pg_database WHERE "
                  "datname = 'relay_bench'")
    if exists == "1" and psql(url, "SELECT to_regclass('request_rollup') "
                              "IS NOT NULL") == "t":
        n = psql(url, "SELECT count(*) FROM request_log")
        last = psql(url, "SELECT coalesce(extract(epoch FROM max(ts)), 0)"
                    "::bigint FROM request_log")
        if int(n) == ROWS and now_s - int(last) < 6 * 3600:
            say("PostgreSQL: reusing relay_bench (%s rows)" % n)
            return url
    if exists == "1":
        psql(base_url, "DROP DATABASE relay_bench")
    psql(base_url, "CREATE DATABASE relay_bench")
    migrate(url, tmp)
    # The log is partitioned by UTC day (migration 007): the writer makes
    # today's and the next days' partitions; the days of the synthetic
    # past are made here, as they would exist after a month of serving.
    today = now_s // 86400
    for day in range(today - SPAN_S // 86400 - 1, today):
        lo = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
        hi = time.strftime("%Y-%m-%d", time.gmtime((day + 1) * 86400))
        psql(url, "CREATE TABLE IF NOT EXISTS request_log_%s PARTITION OF "
             "request_log FOR VALUES FROM ('%s 00:00:00+00') TO "
             "('%s 00:00:00+00')" % (lo.replace("-", ""), lo, hi))
    say("PostgreSQL: inserting %d rows (generate_series)" % ROWS)
    t0 = time.time()
    ts = ("to_timestamp(%d - (%d - i)::float8 * %d / %d)"
          % (now_s, ROWS, SPAN_S, ROWS))
    psql(url, "SET synchronous_commit = off; " + insert_sql(
        columns(now_s, ts), "generate_series(1, %d) AS g(i)" % ROWS))
    say("PostgreSQL: rows in %.0f s; building the rollup (backfill)"
        % (time.time() - t0))
    t0 = time.time()
    psql(url, "BEGIN; DELETE FROM request_rollup; " + backfill_sql("pg") +
         " COMMIT;")
    psql(url, "VACUUM ANALYZE request_log")
    psql(url, "VACUUM ANALYZE request_rollup")
    say("PostgreSQL: rollup in %.0f s (%s rows)" % (
        time.time() - t0, psql(url, "SELECT count(*) FROM request_rollup")))
    return url


def fill_sqlite(tmp, now_s):
    folder = ROOT / ".relay" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "analytics.db"
    if path.exists():
        db = sqlite3.connect(str(path))
        try:
            n, last = db.execute("SELECT count(*), max(ts) FROM request_log"
                                 ).fetchone()
        except sqlite3.Error:
            n, last = 0, None
        db.close()
        fresh = last and now_s - time.mktime(time.strptime(
            last[:19], "%Y-%m-%dT%H:%M:%S")) + time.timezone < 6 * 3600
        if n == ROWS and fresh:
            say("SQLite: reusing %s (%d rows)" % (path, n))
            return "sqlite:" + str(path)
    for p in folder.glob("analytics.db*"):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    url = "sqlite:" + str(path)
    migrate(url, tmp)
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    say("SQLite: inserting %d rows (recursive CTE)" % ROWS)
    t0 = time.time()
    ts = ("strftime('%%Y-%%m-%%dT%%H:%%M:%%f000Z', %d - (%d - i) * %f, "
          "'unixepoch')" % (now_s, ROWS, SPAN_S / ROWS))
    db.execute("WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
               "FROM g WHERE i < %d) " % ROWS +
               insert_sql(columns(now_s, ts), "g"))
    db.commit()
    say("SQLite: rows in %.0f s; building the rollup (backfill)"
        % (time.time() - t0))
    t0 = time.time()
    db.execute("DELETE FROM request_rollup")
    db.executescript(backfill_sql("sqlite"))
    db.commit()
    db.execute("ANALYZE")
    n = db.execute("SELECT count(*) FROM request_rollup").fetchone()[0]
    db.close()
    say("SQLite: rollup in %.0f s (%d rows)" % (time.time() - t0, n))
    return url


# ---------------------------------------------------------------- timing

def time_ranges(url, tmp):
    admin = "adm-" + secrets.token_hex(12)
    st = rt.Stack({"store": url, "admin_key": admin},
                  tmpdir=tempfile.mkdtemp(dir=tmp))
    out = {}
    try:
        for rng in RANGES:
            times = []
            body = None
            for k in range(CALLS + 1):
                req = urllib.request.Request(
                    "http://127.0.0.1:%d/admin/analytics?range=%s"
                    % (st.relay_port, rng),
                    headers={"Authorization": "Bearer " + admin})
                t0 = time.perf_counter()
                with urllib.request.urlopen(req, timeout=60) as r:
                    body = json.loads(r.read())
                if k:
                    times.append((time.perf_counter() - t0) * 1000)
            out[rng] = (statistics.median(times),
                        body["totals"]["requests"])
    finally:
        st.close()
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="relay-bench-analytics-")
    svc = None
    now_s = int(time.time())
    try:
        base = os.environ.get("DATABASE_URL", "")
        if not base.startswith("postgres"):
            svc = tempfile.mkdtemp(prefix="relay-bench-svc-")
            env = subprocess.run(["bash", str(ROOT / "scripts/services.sh"),
                                  "start", svc], capture_output=True,
                                 text=True, check=True).stdout
            base = re.search(r"DATABASE_URL=(\S+)", env).group(1)
        results = {}
        results["PostgreSQL"] = time_ranges(fill_pg(base, tmp, now_s), tmp)
        results["SQLite"] = time_ranges(fill_sqlite(tmp, now_s), tmp)
        print()
        print("GET /admin/analytics over %s rows (p50 of %d calls, ms)"
              % (format(ROWS, ","), CALLS))
        print("%-10s %s" % ("store", "".join("%16s" % r for r in RANGES)))
        for name, res in results.items():
            print("%-10s %s" % (name, "".join(
                "%16s" % ("%.1f (%s)" % (res[r][0], _k(res[r][1])))
                for r in RANGES)))
        print("(in brackets: the requests the range holds)")
    finally:
        if svc:
            subprocess.run(["bash", str(ROOT / "scripts/services.sh"),
                            "stop", svc], capture_output=True)
            shutil.rmtree(svc, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _k(n):
    if n >= 1000000:
        return "%.1fM" % (n / 1e6)
    if n >= 1000:
        return "%.1fK" % (n / 1e3)
    return str(n)


if __name__ == "__main__":
    main()
