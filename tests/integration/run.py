#!/usr/bin/env python3
"""Integration test runner: every tests/integration/cases/*.case against the
real gateway (RELAY_BIN, default build/relay) and the fake provider
(RELAY_FAKE_BIN, default build/relay-fake), then every test_*.py script
beside them. `--dir DIR` runs another level the same way: DIR/cases/*.case,
then DIR/test_*.py (tests/reliability).

Each case runs in its own process (its own fake and gateway, on free ports)
with a timeout, so a hung case fails and the suite goes on. Prints one line
per case and finally `N passed, N failed`; exits 1 when a case failed.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CASE_TIMEOUT_S = 20


def run_one(path, verbose):
    """Child mode: run one case, print a JSON verdict as the last line."""
    import caserun
    from relaytest import CaseFailure
    t0 = time.time()
    try:
        ctx = caserun.run_case(path, verbose)
        shutil.rmtree(ctx.stack.tmp, ignore_errors=True)
        verdict = {"ok": True}
    except CaseFailure as e:
        verdict = {"ok": False, "why": str(e)}
    except Exception as e:  # a bug in the runner or an unexpected protocol error
        import traceback
        verdict = {"ok": False, "why": "%s: %s" % (type(e).__name__, e),
                   "trace": traceback.format_exc() if verbose else ""}
    verdict["ms"] = int((time.time() - t0) * 1000)
    sys.stdout.flush()
    print("\n@@verdict " + json.dumps(verdict), flush=True)


def spawn(path, args):
    argv = [sys.executable, str(Path(__file__).resolve()), "--run-one", str(path)]
    if args.verbose:
        argv += ["-v"] * args.verbose
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    return p


def reap(p, timeout):
    """Waits for a case process; on timeout kills its whole process group
    (the case process, and the fake and gateway it started)."""
    try:
        out, _ = p.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        timed_out = True
    # The fake and gateway of a finished case are stopped by the case
    # process itself; a crashed case process may leave them: end them too.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return out.decode("utf-8", "replace"), timed_out


def run_script(script, verbose, timeout=600):
    """Runs one test script; returns (passed, failed) from its last line."""
    argv = [sys.executable, str(script)] + (["-v"] if verbose else [])
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    out, timed_out = reap(p, timeout)
    lines = out.rstrip("\n").split("\n")
    last = lines[-1] if lines else ""
    for line in lines[:-1]:
        print(line, flush=True)
    parts = last.split()
    if timed_out or len(parts) != 4 or parts[1] != "passed," or parts[3] != "failed":
        print("FAIL %s: %s" % (script.stem, "timed out after %d s" % timeout if timed_out
                               else "no summary line (exit %s)" % p.returncode), flush=True)
        return 0, 1
    passed, failed = int(parts[0]), int(parts[2])
    if p.returncode and not failed:
        failed = 1
    return passed, failed


def main():
    ap = argparse.ArgumentParser(
        description="Run the gateway's integration cases (tests/integration/cases/*.case).",
        epilog="Env: RELAY_BIN, RELAY_FAKE_BIN choose the binaries (for the sanitizer build).")
    ap.add_argument("--filter", metavar="SUBSTR", default="",
                    help="run only cases whose name contains SUBSTR (comma: any of several)")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="print each step, and the output of failed cases (twice: responses)")
    ap.add_argument("-j", "--jobs", type=int, default=1,
                    help="cases run at once (default 1)")
    ap.add_argument("--timeout", type=float, default=CASE_TIMEOUT_S,
                    help="seconds before a case is killed and failed (default %d)" % CASE_TIMEOUT_S)
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--dir", metavar="DIR", default=str(HERE),
                    help="the level to run: DIR/cases/*.case, then DIR/test_*.py "
                         "(default: this folder; tests/reliability)")
    ap.add_argument("--run-one", metavar="CASE", help=argparse.SUPPRESS)
    ap.add_argument("cases", nargs="*", help="case files (default: all in cases/)")
    args = ap.parse_args()

    if args.run_one:
        run_one(args.run_one, args.verbose)
        return 0

    level = Path(args.dir).resolve()
    paths = [Path(c) for c in args.cases] or sorted((level / "cases").glob("*.case"))
    if args.filter:
        subs = args.filter.split(",")
        paths = [p for p in paths if any(s in p.stem for s in subs)]
    if args.list:
        for p in paths:
            print(p.stem)
        if not args.cases:
            for script in sorted(level.glob("test_*.py")):
                print(script.name)
        return 0

    from relaytest import fake_bin, relay_bin
    for b in (relay_bin(), fake_bin()):
        if not os.access(b, os.X_OK):
            print("FAIL setup: %s is not an executable (run make, or set RELAY_BIN / "
                  "RELAY_FAKE_BIN)" % b)
            print("0 passed, %d failed" % max(len(paths), 1))
            return 1

    passed = failed = 0
    failures = []
    t0 = time.time()
    queue = list(paths)
    running = []
    while queue or running:
        while queue and len(running) < max(1, args.jobs):
            p = queue.pop(0)
            running.append((p, spawn(p, args), time.time()))
        # Finish the oldest first so the output keeps the case order.
        p, proc, started = running.pop(0)
        left = args.timeout - (time.time() - started)
        out, timed_out = reap(proc, max(left, 0.1))
        verdict = None
        lines = out.rstrip("\n").split("\n")
        if lines and lines[-1].startswith("@@verdict "):
            verdict = json.loads(lines[-1][len("@@verdict "):])
            out = "\n".join(lines[:-1]).rstrip("\n")
        if timed_out:
            verdict = {"ok": False, "why": "timed out after %.0f s (hung)" % args.timeout}
        elif verdict is None:
            verdict = {"ok": False, "why": "case process died (status %s)" % proc.returncode}
        if args.verbose and out.strip():
            print(out)
        if verdict["ok"]:
            passed += 1
            print("ok   %s%s" % (p.stem, "  (%d ms)" % verdict["ms"] if args.verbose else ""),
                  flush=True)
        else:
            failed += 1
            why = verdict["why"].replace("\n", "\n       ")
            print("FAIL %s: %s" % (p.stem, why), flush=True)
            if verdict.get("trace"):
                print(verdict["trace"])
            failures.append(p.stem)
    # Test scripts for what a case cannot express (test_store_*.py: stopping
    # PostgreSQL; test_keys.py: `relay keys`, the admin API, two
    # gateways on one PostgreSQL; test_limits.py: limits in Redis across two
    # gateways, Redis stopped); each prints its own "N passed, N failed".
    if not args.cases:
        for script in sorted(level.glob("test_*.py")):
            if args.filter and not any(s in script.stem for s in args.filter.split(",")):
                continue
            p_, f_ = run_script(script, args.verbose)
            passed += p_
            failed += f_
            if f_:
                failures.append(script.stem)
    if args.verbose:
        print("# %.1f s; failed: %s" % (time.time() - t0, " ".join(failures) or "none"))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
