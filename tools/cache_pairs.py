#!/usr/bin/env python3
"""Writes the semantic cache's accuracy data sets from the hand-written
sources in tools/cache_pairs/ (no model, no network):

  tests/data/cache/paraphrase.jsonl  labelled pairs {"a", "b", "same",
      "topic", "kind", "split"}: true paraphrases from each group of
      para_*.txt (kind "paraphrase"), a question against the next question
      of its topic (kind "related", same: false), and hard_neg.txt (kind
      "hard", same: false).
  tests/data/cache/nearmiss.jsonl    adversarial near misses from
      nearmiss.txt, all same: false, {"a", "b", "same", "category",
      "split"}.

"split" is "dev" (tune the threshold and the guard on these) or "test"
(held out, only reported): by a hash of the group's first sentence, so
every pair of one paraphrase group falls on the same side. The final_*.txt
sources are split "final": a last hold-out written after the guard and
the threshold were fixed (docs/decisions.md, 25), never tuned on.

    python3 tools/cache_pairs.py           # rewrite the two files
    python3 tools/cache_pairs.py --check   # exit 1 if they are stale
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "tools" / "cache_pairs"
OUT = ROOT / "tests" / "data" / "cache"


def sections(path):
    """Yields (section, [fields]) for each data line of a source file."""
    section = None
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("# "):
            continue
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        fields = [f.strip() for f in line.split(" | ")]
        if section is None or len(fields) < 2 or not all(fields):
            sys.exit("%s:%d: expected 'A | B' under a '## section'" % (path, n))
        yield section, fields


def split_of(text):
    return "dev" if hashlib.sha256(text.encode()).digest()[0] % 2 == 0 else "test"


def labelled():
    rows = paraphrases(sorted(SRC.glob("para_*.txt")), None)
    for topic, fields in sections(SRC / "hard_neg.txt"):
        rows.append((fields[0], fields[1], False, topic, "hard",
                     split_of(fields[0] + fields[1])))
    rows += paraphrases([SRC / "final_para.txt"], "final")
    for topic, fields in sections(SRC / "final_hard.txt"):
        rows.append((fields[0], fields[1], False, topic, "hard", "final"))
    return [{"a": a, "b": b, "same": s, "topic": t, "kind": k, "split": sp}
            for a, b, s, t, k, sp in rows]


def paraphrases(paths, fixed_split):
    """Rows of the paraphrase groups in paths: two true pairs per group
    and one against the next group of the topic."""
    groups = {}
    for path in paths:
        for topic, fields in sections(path):
            groups.setdefault(topic, []).append(fields)
    rows = []
    for topic, items in groups.items():
        for i, g in enumerate(items):
            split = fixed_split or split_of(g[0])
            rows.append((g[0], g[1], True, topic, "paraphrase", split))
            if len(g) > 2:
                second = (g[1], g[2]) if i % 2 == 0 else (g[0], g[2])
                rows.append(second + (True, topic, "paraphrase", split))
            other = items[(i + 1) % len(items)]
            rows.append((g[0], other[0], False, topic, "related", split))
    return rows


def nearmiss():
    rows = [{"a": f[0], "b": f[1], "same": False, "category": c,
             "split": split_of(f[0] + f[1])}
            for c, f in sections(SRC / "nearmiss.txt")]
    return rows + [{"a": f[0], "b": f[1], "same": False, "category": c,
                    "split": "final"}
                   for c, f in sections(SRC / "final_nearmiss.txt")]


def text(rows):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if a file differs")
    args = ap.parse_args()
    stale = []
    for name, rows in (("paraphrase.jsonl", labelled()),
                       ("nearmiss.jsonl", nearmiss())):
        path = OUT / name
        new = text(rows)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != new:
                stale.append(str(path))
            continue
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_text(new, encoding="utf-8")
        same = sum(1 for r in rows if r["same"])
        print("%s: %d pairs (%d same, %d not)" % (path.relative_to(ROOT),
              len(rows), same, len(rows) - same))
    if stale:
        print("stale: %s (run python3 tools/cache_pairs.py)" % ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
