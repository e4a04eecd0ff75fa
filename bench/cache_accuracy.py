#!/usr/bin/env python3
"""The semantic cache's accuracy (make bench-cache-accuracy): precision and
recall of semantic hits on the labelled paraphrase set, and false hits on
the adversarial near-miss set, measured through `relay cache compare`, so
the figures are the running cache's own decisions (same encoder, threshold,
near-miss guard and cache_semantic_decide).

Two passes over both sets:
  1. with the configuration as it is (cache.threshold and the guard of
     --config, default: a configuration without a cache section, i.e. the
     built-in defaults): the headline figures, decided by the binary;
  2. with --threshold 0.000001: every pair's similarity and the guard's
     verdict alone, from which the table by threshold is derived (a pair
     is a hit at t when similarity >= t and the guard lets it through,
     exactly the rule of cache_semantic_decide; pass 1 checks that).

The threshold rule (how the default cache.threshold was chosen): on the
dev half only, the threshold from 0.50 to 0.95 (step 0.01) with the most
recall whose precision is >= 0.98 and with no near-miss false hit, the
guard on, rounded up to a multiple of 0.05; the held-out test half and
the final hold-out (written after the guard and the threshold were
fixed) are only reported.

    python3 bench/cache_accuracy.py [--config FILE] [--relay build/relay]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "cache"
MINIMAL = """listen: 127.0.0.1:1
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:1/v1", api_key: x}
models:
  - {name: m, provider: fake, upstream: up}
"""
GRID = [round(0.50 + 0.01 * i, 2) for i in range(46)]
TABLE = [0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95]


def load(name):
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def compare(relay, config, rows, extra):
    """Runs relay cache compare on rows; returns one answer per row."""
    text = "".join(json.dumps({"a": r["a"], "b": r["b"]}) + "\n" for r in rows)
    p = subprocess.run([relay, "cache", "compare", "--config", config] + extra,
                       input=text, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("relay cache compare failed (exit %d):\n%s" % (p.returncode, p.stderr))
    out = [json.loads(line) for line in p.stdout.splitlines()]
    if len(out) != len(rows):
        sys.exit("relay cache compare gave %d answers for %d pairs" % (len(out), len(rows)))
    return out


def score(rows, hits):
    """(precision, recall, hits, true hits, positives) of hits on rows."""
    tp = sum(1 for r, h in zip(rows, hits) if h and r["same"])
    fp = sum(1 for r, h in zip(rows, hits) if h and not r["same"])
    pos = sum(1 for r in rows if r["same"])
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / pos if pos else 0.0), tp + fp, tp, pos


def at(answers, t, guard):
    """Hits at threshold t from pass 2 (guard: the guard's verdict counts)."""
    return [a["similarity"] >= t and (a["hit"] or not guard) for a in answers]


def part(rows, values, split):
    idx = [i for i, r in enumerate(rows) if split == "all" or r["split"] == split]
    return [rows[i] for i in idx], [values[i] for i in idx]


def choose(lab, lab2, nm, nm2):
    """The threshold rule, on the dev half."""
    best = None
    for t in GRID:
        rows, hits = part(lab, at(lab2, t, True), "dev")
        prec, rec = score(rows, hits)[:2]
        _, nmh = part(nm, at(nm2, t, True), "dev")
        if prec >= 0.98 and not any(nmh) and (best is None or rec > best[1]):
            best = (t, rec)
    return best[0] if best else None


def round_up(t):
    return round(-(-round(t * 100) // 5) * 5 / 100, 2)


def headline(lab, real, nm, nm_real, threshold, guard):
    print("At the default threshold %.2f, guard %s (decided by relay cache compare):"
          % (threshold, "on" if guard else "off"))
    print("  %-6s %9s %7s %6s   %s" % ("split", "precision", "recall", "hits", "near-miss false hits"))
    for split in ("dev", "test", "final", "all"):
        rows, hits = part(lab, [a["hit"] for a in real], split)
        prec, rec, nh, _, _ = score(rows, hits)
        nrows, nhits = part(nm, [a["hit"] for a in nm_real], split)
        print("  %-6s %9.3f %7.3f %6d   %d of %d" % (split, prec, rec, nh, sum(nhits), len(nrows)))


def table(lab, lab2, nm, nm2):
    print("By threshold: precision recall per split, guard on | guard off (pass 2):")
    print("  %5s  %-12s %-12s %-12s %-12s | %-12s %s" % ("t", "dev", "test", "final", "all",
                                                        "all, off", "near-miss hits on|off"))
    for t in TABLE:
        cells = []
        for split in ("dev", "test", "final", "all"):
            rows, hits = part(lab, at(lab2, t, True), split)
            cells.append("%.3f %.3f" % score(rows, hits)[:2])  # precision recall
        rows, hits = part(lab, at(lab2, t, False), "all")
        off = "%.3f %.3f" % score(rows, hits)[:2]
        on_nm = sum(at(nm2, t, True))
        off_nm = sum(at(nm2, t, False))
        print("  %5.2f  %-12s %-12s %-12s %-12s | %-12s %d|%d of %d"
              % (t, cells[0], cells[1], cells[2], cells[3], off, on_nm, off_nm, len(nm)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="configuration (default: built-in cache defaults)")
    ap.add_argument("--relay", default=os.environ.get("RELAY_BIN", str(ROOT / "build" / "relay")))
    args = ap.parse_args()
    lab = load("paraphrase.jsonl")
    nm = load("nearmiss.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        config = args.config
        if not config:
            config = os.path.join(tmp, "relay.yaml")
            Path(config).write_text(MINIMAL)
        real = compare(args.relay, config, lab, [])
        nm_real = compare(args.relay, config, nm, [])
        lab2 = compare(args.relay, config, lab, ["--threshold", "0.000001"])
        nm2 = compare(args.relay, config, nm, ["--threshold", "0.000001"])
        probe = subprocess.run([args.relay, "cache", "compare", "--config", config],
                               input=json.dumps({"a": "x", "b": "y"}) + "\n",
                               capture_output=True, text=True).stdout
    # The configured threshold, read back from one of pass 1's refusals.
    threshold = None
    for a in real + [json.loads(probe)]:
        if a["reason"].startswith("similarity "):
            threshold = float(a["reason"].split()[-1])
            break
    guard_on = any(not a["hit"] and not a["reason"].startswith("similarity ") for a in nm_real)
    same = sum(1 for r in lab if r["same"])
    print("semantic cache accuracy: all-MiniLM-L6-v2 (relay cache compare)")
    print("labelled set: %d pairs (%d paraphrases, %d not), %d dev / %d test / %d final; "
          "near-miss set: %d pairs" % (len(lab), same, len(lab) - same,
                                       *[sum(r["split"] == s for r in lab)
                                         for s in ("dev", "test", "final")], len(nm)))
    print("public labelled set: none found in a package of PyPI, npm or Debian (docs/cache.md)")
    print()
    headline(lab, real, nm, nm_real, threshold, guard_on)
    derived = [a["similarity"] >= threshold and a["hit"] for a in lab2] if guard_on else \
              [a["similarity"] >= threshold for a in lab2]
    mismatch = sum(1 for d, a in zip(derived, real) if d != a["hit"])
    print("  (pass 2's rule agrees with pass 1 on %d of %d pairs)" % (len(real) - mismatch, len(real)))
    rows, hits = part(lab, at(lab2, threshold, False), "all")
    prec, rec = score(rows, hits)[:2]
    print("  guard off at %.2f: precision %.3f recall %.3f, near-miss false hits %d of %d"
          % (threshold, prec, rec, sum(at(nm2, threshold, False)), len(nm)))
    print()
    table(lab, lab2, nm, nm2)
    print()
    chosen = choose(lab, lab2, nm, nm2)
    print("Threshold rule on dev (most recall with precision >= 0.98 and no near-miss hit): %s"
          % ("%.2f, rounded up to %.2f" % (chosen, round_up(chosen)) if chosen is not None
             else "none"))
    rows, hits = part(lab, [a["hit"] for a in real], "all")
    prec, rec = score(rows, hits)[:2]
    nmh = sum(a["hit"] for a in nm_real)
    print("Targets at the default threshold: precision >= 0.97 %s (%.3f), recall >= 0.5 %s (%.3f), "
          "no near-miss false hit %s (%d)" % ("met" if prec >= 0.97 else "MISSED", prec,
                                             "met" if rec >= 0.5 else "MISSED", rec,
                                             "met" if nmh == 0 else "MISSED", nmh))
    return 0 if mismatch == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
