#!/usr/bin/env python3
"""Compare the C tokenizer with the reference on all of Unicode.

Run by hand after `make` (needs `pip install tokenizers` and the model):
    python3 tools/encoder_tokcheck.py [MODEL_DIR]

Builds tools/encoder_tokcheck.c against build/obj/src/cache and util, then
feeds it (1) every code point between two letters, "a" + c + "b", and (2)
seeded random strings of mixed scripts (tools/encoder_reference.py's
pools) and of random code points, and compares each line of ids with
Hugging Face `tokenizers` reading the model's tokenizer.json. Prints the
mismatches (the first few in full) and exits 1 if there are any.
"""
import glob
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from encoder_reference import (model_dir, random_strings,  # noqa: E402
                               reference_tokenizer)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(out):
    objs = sorted(glob.glob(os.path.join(ROOT, "build/obj/src/cache/*.o"))
                  + glob.glob(os.path.join(ROOT, "build/obj/src/util/*.o")))
    if not objs:
        sys.exit("build/obj is empty: run make first")
    subprocess.check_call(
        ["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-I" + ROOT + "/src",
         "-o", out, os.path.join(ROOT, "tools/encoder_tokcheck.c")] + objs
        + ["-ljansson", "-lopenblas", "-lm", "-pthread"])


def main():
    mdir = model_dir()
    tok = reference_tokenizer(mdir, 256)
    rng = random.Random(7)
    cases = ["a" + chr(c) + "b" for c in range(1, 0x110000)
             if not 0xD800 <= c <= 0xDFFF]
    cases += random_strings(5000, 60, 1) + random_strings(200, 1500, 2)
    for _ in range(2000):
        n = rng.randint(0, 200)
        cases.append("".join(chr(rng.choice([rng.randint(1, 0xD7FF),
                                             rng.randint(0xE000, 0x10FFFF)]))
                             for _ in range(n)))
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "encoder_tokcheck")
        build(exe)
        inp = "".join(json.dumps(s) + "\n" for s in cases).encode()
        out = subprocess.run([exe, mdir], input=inp, capture_output=True,
                             check=True).stdout.decode().splitlines()
    refs = tok.encode_batch(cases)
    bad = 0
    for s, o, r in zip(cases, out, refs):
        want = " ".join(map(str, r.ids))
        if want != o:
            bad += 1
            if bad <= 5:
                print("%r\n  reference %s\n  C         %s" % (s[:80], want, o))
    print("%d of %d strings differ" % (bad, len(cases)))
    sys.exit(1 if bad or len(out) != len(cases) else 0)


if __name__ == "__main__":
    main()
