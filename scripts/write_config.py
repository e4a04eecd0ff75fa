#!/usr/bin/env python3
"""Write relay.yaml from relay.example.yaml, switching models to real providers.

usage: scripts/write_config.py SRC DST

Copies SRC to DST line by line. A line of the form
    provider: fake  # real: groq
or  upstream: name?ttft_ms=..  # real: real-name
is rewritten to its `real:` value when the API key of that model's real
provider is in the environment (groq: GROQ_API_KEY, openai: OPENAI_API_KEY,
mistral: MISTRAL_API_KEY; any other NAME: NAME_API_KEY in capitals). Prints
one line per model that was switched. Called by scripts/up.sh.
"""
import os
import re
import sys

LINE = re.compile(r"^(\s*)(-\s+)?(provider|upstream):\s*(\S+)\s+#\s*real:\s*(\S+)\s*$")
NAME = re.compile(r"^\s*-\s+name:\s*(\S+)")


def key_var(provider):
    return re.sub(r"[^A-Z0-9]", "_", provider.upper()) + "_API_KEY"


def main(argv):
    if len(argv) != 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) == 2 else 2
    src, dst = argv[1], argv[2]
    out = []
    model = None
    real_provider = None
    switched = []
    with open(src, encoding="utf-8") as f:
        for line in f:
            m = NAME.match(line)
            if m:
                model, real_provider = m.group(1), None
            m = LINE.match(line)
            if m:
                indent, dash, field, _cur, real = m.groups()
                if field == "provider":
                    real_provider = real
                use = real_provider and os.environ.get(key_var(real_provider))
                if use:
                    line = f"{indent}{dash or ''}{field}: {real}\n"
                    if field == "provider":
                        switched.append(f"{model} -> {real}")
            out.append(line)
    tmp = dst + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(out)
    os.replace(tmp, dst)
    for s in switched:
        print(f"    real provider: {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
