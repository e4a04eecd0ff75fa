#!/usr/bin/env python3
"""Integration tests of the request log (src/store/) that the declarative
cases cannot express: a private PostgreSQL (scripts/services.sh in a temp
folder) that is stopped and started again, and a gateway restarted with a
non-empty journal. (PostgreSQL stopped in the middle of a load:
tests/reliability/test_store_faults.py, which uses the helpers here.)

Run by tests/integration/run.py (after the cases) or alone:
    python3 tests/integration/test_store_pg.py [-v] [-k NAME]
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
Every gateway runs with its working directory in its own temp folder, so
the default SQLite store and the journals land there.
"""
import argparse
import http.client
import json
import os
import shutil
import sqlite3
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

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
PRICE = {"input": 0.15, "output": 0.6, "cached_input": 0.075}
VERBOSE = False


def say(*a):
    if VERBOSE:
        print("   ", *a, flush=True)


# ------------------------------------------------------------ PostgreSQL

class Pg:
    """A private PostgreSQL from scripts/services.sh, stoppable at will."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="relay-store-pg-")
        out = subprocess.run(["bash", str(ROOT / "scripts/services.sh"), "start", self.dir],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise rt.CaseFailure("services.sh start failed:\n" + out.stderr[-2000:])
        self.url = None
        for line in out.stdout.splitlines():
            if line.startswith("export DATABASE_URL="):
                self.url = line.split("=", 1)[1]
        if not self.url:
            raise rt.CaseFailure("services.sh printed no DATABASE_URL")
        self.port = Path(self.dir, "pg", "port").read_text().strip()

    def _as_pg(self, argv):
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    def stop(self):
        """A fast shutdown, as `pg_ctl stop -m fast`."""
        r = self._as_pg([PG_BIN + "/pg_ctl", "-D", self.dir + "/pg/data", "-w",
                         "-m", "fast", "stop"])
        if r.returncode != 0:
            raise rt.CaseFailure("pg_ctl stop failed: " + r.stderr)

    def start(self):
        opts = ("-p %s -k %s/pg -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off" % (self.port, self.dir))
        r = self._as_pg([PG_BIN + "/pg_ctl", "-D", self.dir + "/pg/data", "-l",
                         self.dir + "/pg/postgres.log", "-w", "-t", "30", "-o", opts, "start"])
        if r.returncode != 0:
            raise rt.CaseFailure("pg_ctl start failed: " + r.stderr + r.stdout)

    def query(self, sql):
        r = subprocess.run(["psql", self.url, "-Atqc", sql], capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise rt.CaseFailure("psql %r failed: %s" % (sql, r.stderr))
        return r.stdout.strip()

    def reset(self):
        self.query("DROP TABLE IF EXISTS request_log; DROP TABLE IF EXISTS "
                   "request_rollup; DROP TABLE IF EXISTS schema_migrations")

    def close(self):
        subprocess.run(["bash", str(ROOT / "scripts/services.sh"), "stop", self.dir],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------ the gateway

def stack(store, tmp, extra=None):
    """A fake and a gateway whose working directory is tmp."""
    over = {"models": [{"name": "test-model", "price": PRICE}]}
    over["store"] = store if store is not None else ""  # "": the default
    over.update(extra or {})
    old = os.getcwd()
    os.chdir(tmp)  # the gateway inherits it: .relay/ goes there
    try:
        st = rt.Stack(over, tmpdir=tmp)
    finally:
        os.chdir(old)
    return st


def stop(st):
    codes = st.close()
    out = st.relay.output()
    if codes.get("relay") != 0:
        raise rt.CaseFailure("relay exited %s:\n%s" % (codes.get("relay"), rt.tail(out)))
    if "ERROR: AddressSanitizer" in out or "runtime error:" in out:
        raise rt.CaseFailure("sanitizer report:\n" + rt.tail(out, 40))
    return out


def request(conn, key, body):
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"Authorization": "Bearer " + key,
                          "Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    return r.status, r.getheader("x-request-id"), data


def body(i, stream=False):
    b = {"model": "test-model",
         "messages": [{"role": "user", "content": "x" * (i % 40)}]}
    if stream:
        b["stream"] = True
        b["stream_options"] = {"include_usage": True}
    return b


def cost_nusd(prompt, completion):
    """The hand computation: tokens x USD per million, in nano-dollars."""
    nusd = prompt * int(PRICE["input"] * 1e9) + completion * int(PRICE["output"] * 1e9)
    return (nusd + 500000) // 1000000


def wait_rows(pg, n, timeout=30):
    deadline = time.time() + timeout
    got = -1
    while time.time() < deadline:
        try:
            got = int(pg.query("SELECT count(*) FROM request_log"))
        except rt.CaseFailure:
            got = -1
        if got >= n:
            return got
        time.sleep(0.2)
    return got


def check_exactly(pg, ids):
    rows = pg.query("SELECT request_id, count(*) FROM request_log GROUP BY request_id")
    seen = dict(line.split("|") for line in rows.splitlines() if line)
    missing = [i for i in ids if i not in seen]
    doubled = [i for i, c in seen.items() if c != "1"]
    extra = [i for i in seen if i not in ids]
    if missing or doubled or extra:
        raise rt.CaseFailure("rows: %d missing (e.g. %s), %d doubled, %d unknown"
                             % (len(missing), missing[:3], len(doubled), len(extra)))


# ------------------------------------------------------------ tests

def test_pg_one_row_per_request_with_the_right_fields(pg, tmp):
    pg.reset()
    st = stack(pg.url, tmp)
    ids = {}
    conn = http.client.HTTPConnection("127.0.0.1", st.relay_port, timeout=10)
    for i in range(20):
        status, rid, _ = request(conn, st.relay_key, body(i, stream=i % 2 == 1))
        ids[rid] = (status, i)
    status, rid, _ = request(conn, "wrong-key-0123456789", body(0))
    ids[rid] = (status, None)
    status, rid, _ = request(conn, st.relay_key, {"model": "nope", "messages": [{"role": "user", "content": "a"}]})
    ids[rid] = (status, None)
    conn.close()
    stop(st)  # the queue is drained at exit
    check_exactly(pg, ids)
    for rid, (status, i) in ids.items():
        row = pg.query("SELECT status, model, provider, stream, prompt_tokens, completion_tokens,"
                       " cost_nusd, savings_nusd, cache_status, coalesce(cache_similarity::text,'null'),"
                       " key_prefix, attempts, usage_estimated, coalesce(error_code,'')"
                       " FROM request_log WHERE request_id = '%s'" % rid).split("|")
        if int(row[0]) != status:
            raise rt.CaseFailure("%s: status %s, answered %s" % (rid, row[0], status))
        if i is None:
            continue
        chars = i % 40
        prompt = -(-chars // 4) + 4  # docs/fakeprov.md: ceil(chars/4) + 4
        want = [str(status), "test-model", "fake", "t" if i % 2 else "f", str(prompt), "12",
                str(cost_nusd(prompt, 12)), "0", "miss", "null", "rk-test-", "1", "f", ""]
        if row != want:
            raise rt.CaseFailure("%s: row %s, expected %s" % (rid, row, want))
    say("22 rows, costs match the hand computation")


def test_sqlite_is_the_default_store(pg, tmp):
    st = stack(None, tmp)
    conn = http.client.HTTPConnection("127.0.0.1", st.relay_port, timeout=10)
    ids = {}
    for i in range(15):
        status, rid, _ = request(conn, st.relay_key, body(i, stream=i % 2 == 0))
        ids[rid] = i
    conn.close()
    stop(st)
    db = Path(tmp, ".relay", "relay.db")
    if not db.exists():
        raise rt.CaseFailure("no %s" % db)
    c = sqlite3.connect(str(db))
    rows = dict((r[0], r[1:]) for r in c.execute(
        "SELECT request_id, status, prompt_tokens, completion_tokens, cost_nusd, stream FROM request_log"))
    c.close()
    if set(rows) != set(ids):
        raise rt.CaseFailure("sqlite rows %d, requests %d" % (len(rows), len(ids)))
    for rid, i in ids.items():
        prompt = -(-(i % 40) // 4) + 4
        want = (200, prompt, 12, cost_nusd(prompt, 12), 1 if i % 2 == 0 else 0)
        if rows[rid] != want:
            raise rt.CaseFailure("%s: %s, expected %s" % (rid, rows[rid], want))


def test_a_restart_replays_the_journal(pg, tmp):
    pg.reset()
    pg.stop()
    try:
        st = stack(pg.url, tmp)  # the store is down: it must still serve
        conn = http.client.HTTPConnection("127.0.0.1", st.relay_port, timeout=10)
        ids = {}
        for i in range(50):
            status, rid, _ = request(conn, st.relay_key, body(i))
            if status != 200:
                raise rt.CaseFailure("status %d with the store down" % status)
            ids[rid] = status
        conn.close()
        out = stop(st)
        if "cannot connect to PostgreSQL" not in out or "make up" not in out:
            raise rt.CaseFailure("no helpful error about the store:\n" + rt.tail(out, 5))
        files = list(Path(tmp, ".relay", "journal").rglob("j-*.jsonl"))
        nlines = sum(len(f.read_text().splitlines()) for f in files)
        if nlines != 50:
            raise rt.CaseFailure("journal holds %d lines, expected 50" % nlines)
    finally:
        pg.start()
    st = stack(pg.url, tmp)  # replays at start
    got = wait_rows(pg, 50, timeout=10)
    stop(st)
    check_exactly(pg, ids)
    if got != 50:
        raise rt.CaseFailure("%d rows after the restart" % got)
    if any(Path(tmp, ".relay", "journal").rglob("j-*.jsonl")):
        raise rt.CaseFailure("journal files left after replay")


def closed_line(out):
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    closed = [x for x in lines if x.get("msg") == "request log closed"]
    if not closed:
        raise rt.CaseFailure("no 'request log closed' line")
    return closed[-1]


def test_pg_a_rejected_row_is_set_aside_and_its_batch_stored(pg, tmp):
    """A CHECK constraint stands in for a row the store refuses for its
    content (SQLSTATE class 23, raised inside the COPY)."""
    pg.reset()
    st = stack(pg.url, tmp)
    pg.query("ALTER TABLE request_log ADD CONSTRAINT poison"
             " CHECK (model_requested <> 'poison')")
    conn = http.client.HTTPConnection("127.0.0.1", st.relay_port, timeout=10)
    ids = {}
    for i in range(10):
        status, rid, _ = request(conn, st.relay_key, body(i))
        ids[rid] = status
    _, bad, _ = request(conn, st.relay_key,
                        {"model": "poison", "messages": [{"role": "user", "content": "a"}]})
    conn.close()
    closed = closed_line(stop(st))
    check_exactly(pg, ids)
    if closed["rejected"] != 1 or closed["lost"] != 0 or closed["inserted"] != 10:
        raise rt.CaseFailure("close line: %s" % closed)
    files = list(Path(tmp, ".relay", "journal").rglob("rejected.jsonl"))
    lines = [json.loads(x) for f in files for x in f.read_text().splitlines()]
    if len(lines) != 1 or lines[0]["row"]["request_id"] != bad or "poison" not in lines[0]["error"]:
        raise rt.CaseFailure("rejected.jsonl: %s" % lines)


def check_rollup(pg):
    """The hourly rollup counts every row of the log once (migration 004,
    src/store/rollup.c): a replayed row adds nothing to it."""
    log = pg.query("SELECT count(*), coalesce(sum(cost_nusd), 0), "
                   "coalesce(sum(latency_us), 0) FROM request_log")
    rollup = pg.query("SELECT coalesce(sum(requests), 0), "
                      "coalesce(sum(cost_nusd), 0), "
                      "coalesce(sum(latency_sum_us), 0) FROM request_rollup")
    if log != rollup:
        raise rt.CaseFailure("request_log %s but request_rollup %s"
                             % (log, rollup))


def test_pg_a_journal_of_rows_stored_already_adds_only_the_new(pg, tmp):
    """Replaying rows that are in the table already (a lost COMMIT answer,
    a replay run twice) fails the direct COPY with unique_violation; the
    batch then goes through the stage and only the new rows are added."""
    pg.reset()
    pg.stop()
    try:
        st = stack(pg.url, tmp)
        conn = http.client.HTTPConnection("127.0.0.1", st.relay_port, timeout=10)
        ids = {}
        for i in range(40):
            status, rid, _ = request(conn, st.relay_key, body(i))
            ids[rid] = status
        conn.close()
        stop(st)
    finally:
        pg.start()
    files = list(Path(tmp, ".relay", "journal").rglob("j-*.jsonl"))
    old = [x for f in files for x in f.read_text().splitlines()]
    if len(old) != 40:
        raise rt.CaseFailure("journal holds %d lines, expected 40" % len(old))
    folder = files[0].parent
    st = stack(pg.url, tmp)  # replays the 40 at start
    stop(st)
    if wait_rows(pg, 40, timeout=10) != 40:
        raise rt.CaseFailure("the first replay did not store 40 rows")
    mixed = []
    for k, line in enumerate(old):
        mixed.append(line)
        if k % 2 == 0:
            row = json.loads(line)
            row["request_id"] = "req_%024x" % (0xabc000 + k)
            ids[row["request_id"]] = 200
            mixed.append(json.dumps(row))
    Path(folder, "j-1-1-1.jsonl").write_text("\n".join(mixed) + "\n")
    st = stack(pg.url, tmp)  # replays the 60 at start: 40 there already
    got = wait_rows(pg, 60, timeout=10)
    closed = closed_line(stop(st))
    check_exactly(pg, ids)
    check_rollup(pg)
    if (got != 60 or closed["replayed"] != 60 or closed["rejected"] != 0
            or closed["lost"] != 0):
        raise rt.CaseFailure("%d rows; close line %s" % (got, closed))
    if any(folder.glob("j-*.jsonl")):
        raise rt.CaseFailure("journal files left after replay")


def test_relay_migrate_is_idempotent(pg, tmp):
    pg.reset()
    cfg = Path(tmp, "m.yaml")
    st = stack(pg.url, tmp)
    stop(st)
    cfg.write_text(Path(st.config_path).read_text())
    env = dict(os.environ, RELAY_API_KEY=st.relay_key, FAKE_API_KEY=st.fake_key)
    r = subprocess.run([rt.relay_bin(), "migrate", "--config", str(cfg)], capture_output=True,
                       text=True, env=env, timeout=30)
    if r.returncode != 0 or "0 migrations applied" not in r.stdout:
        raise rt.CaseFailure("relay migrate: %d %s %s" % (r.returncode, r.stdout, r.stderr))
    if pg.query("SELECT count(*) FROM schema_migrations") != str(
            len([f for f in (ROOT / "migrations").glob("*.sql")
                 if not f.name.endswith(".sqlite.sql")])):
        raise rt.CaseFailure("schema_migrations does not list every migration")


TESTS = [test_pg_one_row_per_request_with_the_right_fields,
         test_sqlite_is_the_default_store,
         test_a_restart_replays_the_journal,
         test_pg_a_rejected_row_is_set_aside_and_its_batch_stored,
         test_pg_a_journal_of_rows_stored_already_adds_only_the_new,
         test_relay_migrate_is_idempotent]


def run_with_pg(doc, tests):
    """The command line of a PostgreSQL test script ([-v] [-k NAME]): one
    private PostgreSQL for all of tests, each test(pg, tmp) in its own
    temp folder; prints `N passed, N failed`, returns the exit status."""
    global VERBOSE
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("-k", default="", help="run tests whose name contains this")
    args = ap.parse_args()
    VERBOSE = args.verbose
    os.environ.setdefault("RELAY_MIGRATIONS", str(ROOT / "migrations"))
    for var in ("RELAY_BIN", "RELAY_FAKE_BIN"):  # the gateways run elsewhere
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).resolve())
    tests = [t for t in tests if args.k in t.__name__]
    passed = failed = 0
    try:
        pg = Pg()
    except Exception as e:  # noqa: BLE001
        print("FAIL store_setup: %s" % e)
        print("0 passed, %d failed" % len(tests))
        return 1
    try:
        for t in tests:
            tmp = tempfile.mkdtemp(prefix="relay-store-")
            t0 = time.time()
            try:
                t(pg, tmp)
                passed += 1
                print("ok   %s  (%d ms)" % (t.__name__, (time.time() - t0) * 1000), flush=True)
                shutil.rmtree(tmp, ignore_errors=True)
            except Exception as e:  # noqa: BLE001
                failed += 1
                print("FAIL %s: %s (kept %s)" % (t.__name__, e, tmp), flush=True)
                if VERBOSE:
                    traceback.print_exc()
    finally:
        pg.close()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def main():
    return run_with_pg(__doc__, TESTS)


if __name__ == "__main__":
    sys.exit(main())
