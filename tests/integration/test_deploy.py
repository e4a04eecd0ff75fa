#!/usr/bin/env python3
"""Checks of the Docker files (no Docker engine is needed: the files are
parsed, never built): docker-compose.yml's structure, and that the
Dockerfile's apt packages are the ones scripts/packages.txt marks and the
Makefile's LIBS need.

- docker-compose.yml: postgres:15 and redis:7 with healthchecks; the
  gateway built from the Dockerfile, relay.yaml mounted at
  /etc/relay/relay.yaml, port 8080, a healthcheck, depends_on both with
  condition service_healthy, and an environment naming every ${VAR} of
  relay.example.yaml (nothing else it would not read but the services');
  DATABASE_URL / REDIS_URL point at the compose services.
- Dockerfile: two stages on debian:12; each package the build stage
  installs is in scripts/packages.txt; each -lX of LIBS has its -dev
  package installed in the build stage and its shared library in the
  runtime stage (the table LIBS below); the runtime stage runs
  `relay serve --config /etc/relay/relay.yaml` as a non-root user,
  exposes 8080, has a HEALTHCHECK on /healthz, and carries migrations/.

Run by tests/integration/run.py (after the cases) or alone:
    python3 tests/integration/test_deploy.py [-v] [-k NAME]
Prints `ok NAME` / `FAIL NAME: why` per test and `N passed, N failed`.
"""
import re
import shlex
import sys
import traceback
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import relaytest as rt  # noqa: E402

VERBOSE = False

# -lX of the Makefile -> (Debian 12 -dev package, runtime package). A new
# library in LIBS fails test_libs_have_a_package until it is added here.
LIBS = {
    "uv": ("libuv1-dev", "libuv1"),
    "curl": ("libcurl4-openssl-dev", "libcurl4"),
    "jansson": ("libjansson-dev", "libjansson4"),
    "yaml": ("libyaml-dev", "libyaml-0-2"),
    "http_parser": ("libhttp-parser-dev", "libhttp-parser2.9"),
    "crypto": ("libssl-dev", "libssl3"),
    "ssl": ("libssl-dev", "libssl3"),
    "pq": ("libpq-dev", "libpq5"),
    "sqlite3": ("libsqlite3-dev", "libsqlite3-0"),
    "hiredis": ("libhiredis-dev", "libhiredis0.14"),
    "openblas": ("libopenblas-dev", "libopenblas0"),
    "m": (None, None),          # libc6: in every image
    "pthread": (None, None),
}


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def say(*a):
    if VERBOSE:
        print("   ", *a, flush=True)


# ------------------------------------------------------------ parsing

def packages_txt():
    """{package: set of @tags} from scripts/packages.txt."""
    out = {}
    for line in (ROOT / "scripts/packages.txt").read_text().splitlines():
        name, _, comment = line.partition("#")
        name = name.strip()
        if name:
            out[name] = set(re.findall(r"@(\w+)", comment))
    return out


def makefile_libs():
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    m = re.search(r"^LIBS\s*:?=(.*)$", text, re.M)
    check(m, "the Makefile has no LIBS line")
    return re.findall(r"-l(\S+)", m.group(1))


def dockerfile_stages():
    """[{name, base, lines: [(INSTR, args)]}], continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text()
    logical, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        logical.append(cur + s)
        cur = ""
    stages = []
    for line in logical:
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append({"name": name, "base": parts[0], "lines": []})
        else:
            check(stages, "an instruction before FROM: %s" % line)
            stages[-1]["lines"].append((instr, args.strip()))
    return stages


def apt_installs(stage, pkgs):
    """The packages a stage's `apt-get install` commands install: literal
    names, and $(sed ... @TAG ... packages.txt) expanded from the file.
    Returns (set of packages, list of literal names)."""
    got, literal = set(), []
    for instr, args in stage["lines"]:
        if instr != "RUN":
            continue
        for cmd in re.split(r"&&|;", args):
            if "apt-get install" not in cmd:
                continue
            for tag in re.findall(r"\$\([^)]*@(\w+)[^)]*packages\.txt[^)]*\)", cmd):
                tagged = {p for p, tags in pkgs.items() if tag in tags}
                check(tagged, "the Dockerfile reads @%s from scripts/packages.txt, "
                      "which marks no package with it" % tag)
                got |= tagged
            rest = re.sub(r"\$\([^)]*\)", " ", cmd.split("apt-get install", 1)[1])
            for tok in shlex.split(rest):
                if not tok.startswith("-"):
                    literal.append(tok)
                    got.add(tok)
    return got, literal


def stage(stages, name):
    for s in stages:
        if s["name"] == name:
            return s
    raise Failure("the Dockerfile has no stage named %r (stages: %s)"
                  % (name, [s["name"] for s in stages]))


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def example_vars():
    text = (ROOT / "relay.example.yaml").read_text()
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text)) - {"VAR"}


def env_names(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return {e.split("=", 1)[0] for e in env}
    return set(env)


def env_value(svc, name):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        for e in env:
            k, _, v = e.partition("=")
            if k == name:
                return v
        return None
    return env.get(name)


# ------------------------------------------------------------ tests

def t_libs_have_a_package():
    libs = makefile_libs()
    check(libs, "LIBS names no -l library")
    unknown = [l for l in libs if l not in LIBS]
    check(not unknown, "the Makefile's LIBS links -l%s, which the table LIBS in "
          "tests/integration/test_deploy.py does not map to a Debian package; "
          "add it there and to scripts/packages.txt" % ", -l".join(unknown))


def t_build_stage_installs_from_packages_txt_and_every_dev_library():
    pkgs = packages_txt()
    stages = dockerfile_stages()
    check(len(stages) >= 2, "the Dockerfile has %d stage(s), not a multi-stage "
          "build" % len(stages))
    for s in stages:
        check(s["base"] == "debian:12", "stage %s is FROM %s, not debian:12"
              % (s["name"], s["base"]))
    build = stage(stages, "build")
    got, literal = apt_installs(build, pkgs)
    check(got, "the build stage installs no apt package")
    stray = sorted(p for p in got if p not in pkgs)
    check(not stray, "the build stage installs %s, not in scripts/packages.txt "
          "(the one list of apt packages)" % ", ".join(stray))
    missing = sorted({LIBS[l][0] for l in makefile_libs()
                      if LIBS.get(l, (None,))[0]} - got)
    check(not missing, "the Makefile's LIBS needs %s, which the Dockerfile's "
          "build stage does not install (mark it @build in scripts/packages.txt)"
          % ", ".join(missing))
    for p in ("build-essential", "pkg-config"):
        check(p in got, "the build stage does not install %s" % p)
    runs = " ".join(a for i, a in build["lines"] if i == "RUN")
    check(re.search(r"\bmake\b", runs), "the build stage never runs make")
    say("build stage: %s (literal: %s)" % (" ".join(sorted(got)), literal))


def t_runtime_stage_has_the_runtime_libraries():
    pkgs = packages_txt()
    stages = dockerfile_stages()
    rt = stages[-1]
    check(rt["name"] != "build", "the last stage is the build stage")
    got, _ = apt_installs(rt, pkgs)
    stray = sorted(p for p in got if p not in pkgs)
    check(not stray, "the runtime stage installs %s, not in scripts/packages.txt"
          % ", ".join(stray))
    missing = sorted({LIBS[l][1] for l in makefile_libs()
                      if LIBS.get(l, (None, None))[1]} - got)
    check(not missing, "build/relay links libraries from %s, which the runtime "
          "stage does not install (mark it @runtime in scripts/packages.txt)"
          % ", ".join(missing))
    dev = sorted(p for p in got if p.endswith("-dev") or p == "build-essential")
    check(not dev, "the runtime stage installs build packages: %s" % ", ".join(dev))
    lines = rt["lines"]
    copies = [a for i, a in lines if i == "COPY"]
    check(any("--from=build" in a and "build/relay" in a for a in copies),
          "the runtime stage does not copy build/relay from the build stage")
    check(any("migrations" in a for a in copies), "the runtime stage has no migrations/")
    check(any("dashboard/dist" in a for a in copies), "the runtime stage has no dashboard/dist")
    users = [a for i, a in lines if i == "USER"]
    check(users and users[-1] not in ("root", "0"), "the runtime stage runs as root")
    check(any(i == "EXPOSE" and "8080" in a.split() for i, a in lines), "no EXPOSE 8080")
    hc = [a for i, a in lines if i == "HEALTHCHECK"]
    check(hc and "/healthz" in hc[-1] and "curl" in hc[-1], "no HEALTHCHECK on /healthz")
    check("curl" in got, "the HEALTHCHECK uses curl, which the runtime stage "
          "does not install")
    cmd = [a for i, a in lines if i in ("CMD", "ENTRYPOINT")]
    check(cmd, "no CMD")
    check(re.search(r'"relay",\s*"serve",\s*"--config",\s*"/etc/relay/relay.yaml"', cmd[-1]),
          "CMD is not relay serve --config /etc/relay/relay.yaml: %s" % cmd[-1])


def t_compose_services_and_healthchecks():
    c = compose()
    svcs = c.get("services") or {}
    for name, image in (("postgres", "postgres:15"), ("redis", "redis:7")):
        check(name in svcs, "docker-compose.yml has no %s service" % name)
        check(svcs[name].get("image") == image, "%s's image is %r, not %s"
              % (name, svcs[name].get("image"), image))
        hc = svcs[name].get("healthcheck") or {}
        check(hc.get("test"), "%s has no healthcheck" % name)
    check("pg_isready" in str(svcs["postgres"]["healthcheck"]["test"]),
          "postgres's healthcheck does not use pg_isready")
    check("ping" in str(svcs["redis"]["healthcheck"]["test"]),
          "redis's healthcheck does not ping")
    gw = [n for n, s in svcs.items() if s.get("build") is not None]
    check(len(gw) == 1, "expected one service built from the Dockerfile, got %s" % gw)
    s = svcs[gw[0]]
    b = s["build"]
    ctx = b if isinstance(b, str) else b.get("context", ".")
    check(ctx in (".", "./"), "the gateway's build context is %r, not the repository" % ctx)
    dep = s.get("depends_on") or {}
    for need in ("postgres", "redis"):
        check(isinstance(dep, dict) and need in dep and
              dep[need].get("condition") == "service_healthy",
              "the gateway does not depend on %s with condition service_healthy" % need)
    vols = [v if isinstance(v, str) else "%s:%s" % (v.get("source"), v.get("target"))
            for v in s.get("volumes") or []]
    check(any(v.split(":")[1] == "/etc/relay/relay.yaml" for v in vols if ":" in v),
          "relay.yaml is not mounted at /etc/relay/relay.yaml: %s" % vols)
    ports = [str(p) for p in s.get("ports") or []]
    check(any(p.split(":")[-1] == "8080" for p in ports),
          "the gateway publishes no container port 8080: %s" % ports)
    hc = s.get("healthcheck") or {}
    check(re.search(r"/(healthz|readyz)", str(hc.get("test"))),
          "the gateway's healthcheck probes neither /healthz nor /readyz")


def t_compose_env_matches_relay_example():
    c = compose()
    svcs = c["services"]
    name = [n for n, s in svcs.items() if s.get("build") is not None][0]
    s = svcs[name]
    want = example_vars()
    have = env_names(s)
    missing = sorted(want - have)
    check(not missing, "relay.example.yaml reads ${%s}, which the gateway's "
          "environment in docker-compose.yml does not set" % "}, ${".join(missing))
    extra = sorted(have - want)
    check(not extra, "docker-compose.yml sets %s for the gateway, which "
          "relay.example.yaml never reads" % ", ".join(extra))
    db = str(env_value(s, "DATABASE_URL"))
    check(db.startswith("postgres://") and "@postgres:" in db,
          "DATABASE_URL does not point at the postgres service: %s" % db)
    rd = str(env_value(s, "REDIS_URL"))
    check(rd.startswith("redis://redis:"), "REDIS_URL does not point at the redis service: %s" % rd)
    pg_env = svcs["postgres"].get("environment") or {}
    user = pg_env.get("POSTGRES_USER", "postgres") if isinstance(pg_env, dict) else None
    dbname = pg_env.get("POSTGRES_DB", user) if isinstance(pg_env, dict) else None
    check(re.match(r"postgres://%s[:@]" % re.escape(str(user)), db) and
          db.rstrip("/").endswith("/" + str(dbname)),
          "DATABASE_URL %s does not match POSTGRES_USER %s / POSTGRES_DB %s" % (db, user, dbname))


TESTS = [t_libs_have_a_package,
         t_build_stage_installs_from_packages_txt_and_every_dev_library,
         t_runtime_stage_has_the_runtime_libraries,
         t_compose_services_and_healthchecks,
         t_compose_env_matches_relay_example]


def set_verbose(v):
    global VERBOSE
    VERBOSE = v


def run_one(t):
    try:
        t()
        print("ok   %s" % t.__name__, flush=True)
        return True
    except Exception as e:  # noqa: BLE001
        print("FAIL %s: %s" % (t.__name__, e), flush=True)
        if VERBOSE:
            traceback.print_exc()
        return False


if __name__ == "__main__":
    sys.exit(rt.script_main(__doc__, TESTS, run_one, set_verbose))
