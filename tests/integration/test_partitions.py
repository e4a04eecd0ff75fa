#!/usr/bin/env python3
"""Integration tests of request_log's day partitions in PostgreSQL
(migration 008, src/store/partition.c) against a private PostgreSQL
(scripts/services.sh in a temp folder) and the real binary.

Run by tests/integration/run.py (after the cases) or alone:
    python3 tests/integration/test_partitions.py [-v] [-k NAME]
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
"""
import datetime
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import relaytest as rt  # noqa: E402
import test_store_pg as sp  # noqa: E402  (Pg, stack, stop, request, body)

ADMIN = "adm-" + secrets.token_hex(8)


def check(cond, msg):
    if not cond:
        raise rt.CaseFailure(msg)


def utc_today():
    return datetime.datetime.now(datetime.timezone.utc).date()


def pname(day):
    return "request_log_" + day.strftime("%Y%m%d")


def partitions(pg):
    out = pg.query("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON "
                   "c.oid = i.inhrelid WHERE i.inhparent = 'request_log'::regclass")
    return set(out.split())


def send(st, n, stream_every=2):
    ids = []
    conn = http.client.HTTPConnection("127.0.0.1", st.relay_port, timeout=15)
    for i in range(n):
        status, rid, _ = sp.request(conn, st.relay_key, sp.body(i, stream=i % stream_every == 1))
        check(status == 200, "request %d answered %d" % (i, status))
        ids.append(rid)
    conn.close()
    return ids


def migrate(st, tmp, retention=None):
    """`relay migrate` with the stack's config (and a retention)."""
    cfg = dict(st.config)
    if retention is not None:
        cfg["request_log"] = {"retention_days": retention}
    path = Path(tmp, "migrate.yaml")
    import yaml
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, RELAY_API_KEY=st.relay_key, FAKE_API_KEY=st.fake_key)
    r = subprocess.run([rt.relay_bin(), "migrate", "--config", str(path)],
                       capture_output=True, text=True, env=env, timeout=60)
    check(r.returncode == 0, "relay migrate: %s %s" % (r.stdout, r.stderr))
    return r.stdout


def analytics(port, rng):
    req = urllib.request.Request("http://127.0.0.1:%d/admin/analytics?range=%s" % (port, rng),
                                 headers={"Authorization": "Bearer " + ADMIN})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


INSERT = ("INSERT INTO request_log (ts, request_id, status, key_id, key_prefix, "
          "model, provider, latency_us, cost_nusd) VALUES ")


# ------------------------------------------------------------ tests

def test_partitions_exist_and_rows_land_in_their_day(pg, tmp):
    pg.reset()
    st = sp.stack(pg.url, tmp)
    ids = send(st, 30)
    sp.stop(st)
    today = utc_today()
    want = {pname(today + datetime.timedelta(days=d)) for d in range(3)}
    got = partitions(pg)
    check(want | {"request_log_default"} == got,
          "partitions %s, want %s and the default" % (sorted(got), sorted(want)))
    check(pg.query("SELECT relkind FROM pg_class WHERE relname = 'request_log'") == "p",
          "request_log is not a partitioned table")
    rows = pg.query("SELECT tableoid::regclass, count(*) FROM request_log GROUP BY 1")
    check(rows == "%s|%d" % (pname(today), len(ids)),
          "rows by partition: %r, want all %d in %s" % (rows, len(ids), pname(today)))
    # The BRIN index and the (request_id, ts) key are on every partition.
    idx = pg.query("SELECT count(*) FROM pg_indexes WHERE tablename = '%s'" % pname(today))
    check(idx == "2", "%s has %s indexes, want the BRIN and the unique key" % (pname(today), idx))


def test_rows_far_in_the_past_or_future_are_kept(pg, tmp):
    pg.reset()
    st = sp.stack(pg.url, tmp)
    sp.stop(st)
    today = utc_today()
    ahead = today + datetime.timedelta(days=2)
    # A day ahead whose partition is not there yet: its row goes to the
    # default partition, and moves into the partition when it is made.
    pg.query("ALTER TABLE request_log DETACH PARTITION %s; DROP TABLE %s"
             % (pname(ahead), pname(ahead)))
    pg.query(INSERT + "('1971-03-04 05:06:07+00', 'req_past', 200, '', '', 'm', 'p', 1, 0), "
             "('2999-12-31 23:00:00+00', 'req_future', 200, '', '', 'm', 'p', 1, 0), "
             "('%s 12:00:00+00', 'req_ahead', 200, '', '', 'm', 'p', 1, 0)" % ahead)
    got = pg.query("SELECT request_id, tableoid::regclass FROM request_log ORDER BY 1")
    check(got.split() == ["req_ahead|request_log_default", "req_future|request_log_default",
                          "req_past|request_log_default"], "before upkeep: %r" % got)
    out = migrate(st, tmp)
    check("1 partition made" in out, "relay migrate said: %r" % out)
    got = pg.query("SELECT request_id, tableoid::regclass FROM request_log ORDER BY 1")
    check(got.split() == ["req_ahead|" + pname(ahead), "req_future|request_log_default",
                          "req_past|request_log_default"], "after upkeep: %r" % got)
    # The same request id at the same ts is still one row.
    pg.query(INSERT + "('1971-03-04 05:06:07+00', 'req_past', 200, '', '', 'm', 'p', 1, 0) "
             "ON CONFLICT DO NOTHING")
    check(pg.query("SELECT count(*) FROM request_log") == "3", "a repeated row was added")


def test_retention_drops_old_days_and_keeps_the_rollup(pg, tmp):
    pg.reset()
    st = sp.stack(pg.url, tmp, {"admin_key": ADMIN})
    send(st, 10)
    sp.stop(st)
    today = utc_today()
    old = today - datetime.timedelta(days=40)
    kept = today - datetime.timedelta(days=20)
    for day in (old, kept):
        pg.query("CREATE TABLE %s PARTITION OF request_log FOR VALUES FROM ('%s') TO ('%s')"
                 % (pname(day), day, day + datetime.timedelta(days=1)))
        pg.query(INSERT + ", ".join(
            "('%s 10:%02d:00+00', 'req_%s_%d', 200, 'key_old', 'rk-old', 'old-model', 'fake', "
            "5000, 1000)" % (day, i, day.strftime("%Y%m%d"), i) for i in range(5)))
        # Its hourly history, as the writer would have kept it.
        pg.query("INSERT INTO request_rollup (hour, key_id, key_prefix, model, provider, "
                 "requests, prompt_tokens, completion_tokens, cost_nusd, savings_nusd, "
                 "cache_hits, errors_4xx, errors_5xx, latency_sum_us, lat_07) VALUES "
                 "('%s 10:00:00+00', 'key_old', 'rk-old', 'old-model', 'fake', 5, 0, 0, "
                 "5000, 0, 0, 0, 0, 25000, 5)" % day)
    pg.query(INSERT + "('1999-01-01 00:00:00+00', 'req_1999', 200, '', '', 'm', 'p', 1, 0)")
    rollup_before = pg.query("SELECT count(*), sum(requests) FROM request_rollup")
    st = sp.stack(pg.url, tmp, {"admin_key": ADMIN, "request_log": {"retention_days": 30}})
    deadline = time.time() + 10
    while pname(old) in partitions(pg) and time.time() < deadline:
        time.sleep(0.1)
    got = partitions(pg)
    check(pname(old) not in got, "the partition 40 days old is still there: %s" % sorted(got))
    check(pname(kept) in got and pname(today) in got,
          "retention dropped too much: %s" % sorted(got))
    check(pg.query("SELECT count(*) FROM request_log WHERE request_id = 'req_1999'") == "0",
          "a row of 1999 in the default partition outlived a 30-day retention")
    check(pg.query("SELECT count(*) FROM request_log") == "15",
          "rows left: %s, want 10 of today and 5 of 20 days ago"
          % pg.query("SELECT count(*) FROM request_log"))
    check(pg.query("SELECT count(*), sum(requests) FROM request_rollup") == rollup_before,
          "the rollup changed: %s, was %s"
          % (pg.query("SELECT count(*), sum(requests) FROM request_rollup"), rollup_before))
    # The dashboard's figures still come out: 30 days counts the 5 of 20
    # days ago and today's 10; the old day's history is still in the rollup.
    send(st, 4)
    deadline = time.time() + 10
    while int(pg.query("SELECT count(*) FROM request_log")) < 19 and time.time() < deadline:
        time.sleep(0.1)
    a30 = analytics(st.relay_port, "30d")
    check(a30["totals"]["requests"] == 19, "30d totals: %s" % a30["totals"])
    a24 = analytics(st.relay_port, "24h")
    check(a24["totals"]["requests"] == 14, "24h totals: %s" % a24["totals"])
    out = sp.stop(st)
    check("request log partitions kept" in out, "no upkeep log line:\n" + rt.tail(out))


def test_a_flat_log_is_migrated_with_every_row(pg, tmp):
    pg.reset()
    flat = Path(tmp, "migrations-flat")
    flat.mkdir()
    for f in (ROOT / "migrations").glob("*.sql"):
        if "request_log_partitions" not in f.name:
            shutil.copy(f, flat)
    old_env = os.environ.get("RELAY_MIGRATIONS")
    os.environ["RELAY_MIGRATIONS"] = str(flat)
    try:
        st = sp.stack(pg.url, tmp)
        first = send(st, 25)
        sp.stop(st)
    finally:
        os.environ["RELAY_MIGRATIONS"] = old_env or str(ROOT / "migrations")
    check(pg.query("SELECT relkind FROM pg_class WHERE relname = 'request_log'") == "r",
          "before 008 the log should be a plain table")
    st = sp.stack(pg.url, tmp)
    second = send(st, 25)
    sp.stop(st)
    tomorrow = utc_today() + datetime.timedelta(days=1)
    legacy = "request_log_before_" + tomorrow.strftime("%Y%m%d")
    got = partitions(pg)
    check(legacy in got, "no %s among %s" % (legacy, sorted(got)))
    n = pg.query("SELECT count(*), count(DISTINCT request_id) FROM request_log")
    check(n == "50|50", "rows after the migration: %s, want 50 distinct" % n)
    missing = [r for r in first + second
               if pg.query("SELECT count(*) FROM request_log WHERE request_id = '%s'" % r) != "1"]
    check(not missing, "rows missing after the migration: %s" % missing[:3])
    check(pg.query("SELECT count(*) FROM pg_constraint WHERE conname = "
                   "'request_log_request_id_key'") == "0", "the old unique key is left over")


TESTS = [test_partitions_exist_and_rows_land_in_their_day,
         test_rows_far_in_the_past_or_future_are_kept,
         test_retention_drops_old_days_and_keeps_the_rollup,
         test_a_flat_log_is_migrated_with_every_row]


if __name__ == "__main__":
    sys.exit(sp.run_with_pg(__doc__, TESTS))
