#!/usr/bin/env python3
"""Writes N varied English sentences, one a line, for bench-cache: the
docstrings of Python's standard library cut into sentences (20 to 300
characters, deduplicated, in a fixed order), so the embeddings the
benchmark measures are of real, varied text. Usage: cache_texts.py N OUT
"""
import importlib
import inspect
import pkgutil
import re
import sys
import warnings

N = int(sys.argv[1])
seen, out = set(), []


def add(doc):
    if not isinstance(doc, str):
        return
    for s in re.split(r"(?<=[.?!])\s+", " ".join(doc.split())):
        if 20 <= len(s) <= 300 and s not in seen and re.search(r"[a-z]{3}", s):
            seen.add(s)
            out.append(s)


warnings.simplefilter("ignore")
names = sorted(m.name for m in pkgutil.iter_modules() if not m.name.startswith("_"))
for name in names:
    if len(out) >= N or name in ("antigravity", "this", "idlelib", "tkinter", "turtle"):
        continue
    try:
        mod = importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - any import may fail: skip it
        continue
    add(mod.__doc__)
    for _, obj in sorted(vars(mod).items()):
        if inspect.isfunction(obj) or inspect.isclass(obj):
            add(getattr(obj, "__doc__", None))
            if inspect.isclass(obj):
                for _, m in sorted(vars(obj).items()):
                    if inspect.isfunction(m):
                        add(m.__doc__)
with open(sys.argv[2], "w") as f:
    for s in out[:N]:
        f.write(s + "\n")
print("bench-cache: %d sentences from the docstrings of %d modules" % (min(N, len(out)), len(names)),
      file=sys.stderr)
