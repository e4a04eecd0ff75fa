#!/usr/bin/env python3
"""Write relay.yaml from relay.example.yaml, switching providers to real APIs.

usage: scripts/write_config.py [--env-file FILE] SRC DST

Copies SRC to DST line by line. Each provider under `providers:` has a
switch variable: the one named by a `# real if VAR` comment after its name
(`  groq:   # real if GROQ_API_KEY`), else NAME_API_KEY in capitals. When
that variable is set (in the environment, else in FILE, default .env next
to SRC), every line ending in a `# real: VALUE` comment is rewritten to
`FIELD: VALUE`, without the comment:
  - inside that provider's block (e.g. its base_url),
  - inside each model whose `provider:` is that provider (e.g. upstream).
Other lines are copied as they are. Prints one line per provider switched
and per model that now goes to a real API. Called by scripts/up.sh.
"""
import os
import re
import sys

REAL = re.compile(r"^(\s*)(-\s+)?([A-Za-z_][\w-]*):\s*(.*?)\s+#\s*real:\s*(\S.*?)\s*$")
TOP = re.compile(r"^([A-Za-z_][\w-]*):")
PROVIDER = re.compile(r"^  ([A-Za-z0-9_][\w.-]*):\s*(?:#\s*real if\s+([A-Za-z_]\w*))?")
ITEM = re.compile(r"^\s*-\s")
NAME = re.compile(r"^\s*(?:-\s+)?name:\s*([^\s#]+)")
MODEL_PROVIDER = re.compile(r"^\s*(?:-\s+)?provider:\s*([^\s#]+)")


def key_var(provider):
    return re.sub(r"[^A-Z0-9]", "_", provider.upper()) + "_API_KEY"


def read_env_file(path):
    vals = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("export "):
                    line = line[7:].lstrip()
                k, sep, v = line.partition("=")
                if not sep:
                    continue
                v = v.strip()
                if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                    v = v[1:-1]
                vals[k.strip()] = v
    except OSError:
        pass
    return vals


def switch(line):
    m = REAL.match(line)
    if not m:
        return line
    indent, dash, field, _cur, real = m.groups()
    return f"{indent}{dash or ''}{field}: {real}\n"


def rewrite(lines, is_set):
    """Returns (lines, providers switched [(name, var)], models switched)."""
    out = []
    section = None
    provider = None          # current provider block and whether it is real
    provider_real = False
    real_providers = []
    model = []               # lines of the current model item
    switched_models = []

    def flush_model():
        if not model:
            return
        name = prov = None
        for ln in model:
            m = NAME.match(ln)
            if m and name is None:
                name = m.group(1)
            m = MODEL_PROVIDER.match(ln)
            if m and prov is None:
                prov = m.group(1)
        real = prov in dict(real_providers)
        for ln in model:
            out.append(switch(ln) if real else ln)
        if real:
            switched_models.append((name, prov))
        model.clear()

    for line in lines:
        m = TOP.match(line)
        if m:
            flush_model()
            section = m.group(1)
            provider = None
            out.append(line)
            continue
        if section == "providers":
            m = PROVIDER.match(line)
            if m:
                provider = m.group(1)
                var = m.group(2) or key_var(provider)
                provider_real = is_set(var)
                if provider_real:
                    real_providers.append((provider, var))
                out.append(line)
                continue
            out.append(switch(line) if provider and provider_real else line)
            continue
        if section == "models":
            if ITEM.match(line) and not line.lstrip().startswith("#"):
                flush_model()
            if model or ITEM.match(line):
                model.append(line)
            else:
                out.append(line)
            continue
        out.append(line)
    flush_model()
    return out, real_providers, switched_models


def main(argv):
    args = argv[1:]
    env_file = None
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if len(args) >= 2 and args[0] == "--env-file":
        env_file = args[1]
        args = args[2:]
    if len(args) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src, dst = args
    if env_file is None:
        env_file = os.path.join(os.path.dirname(os.path.abspath(src)), ".env")
    dotenv = read_env_file(env_file)

    def is_set(var):
        return bool(os.environ.get(var) or dotenv.get(var))

    with open(src, encoding="utf-8") as f:
        lines = f.readlines()
    out, providers, models = rewrite(lines, is_set)
    tmp = dst + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(out)
    os.replace(tmp, dst)
    for name, var in providers:
        print(f"    real provider: {name} ({var} is set)")
    for name, prov in models:
        print(f"    real model:    {name} -> {prov}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
