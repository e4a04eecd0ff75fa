#!/usr/bin/env python3
"""Demo traffic: a few requests a second through the gateway, so that a
newcomer sees a living dashboard within a minute of `make up`.

    python3 scripts/demo_traffic.py [--config relay.yaml] [--duration 900]
                                    [--rate 3] [--base http://127.0.0.1:8080]

Uses four demo keys, made once with `relay keys create --name demo:NAME`
(prod-chat, batch-enrich, internal-tools, staging) and kept in
.relay/demo-keys.json (mode 0600). The dashboard shows those names without
"demo:" and marks the data "demo" while every request of the range came
through such a key (docs/dashboard.md). Requests go to the models of
`relay models`, which make up points at the fake provider unless real keys
are set, with a share of repeated prompts (cache hits, once the cache is
on). Stops after --duration seconds (0: until killed). Started by `make up`
in the background unless DEMO=0 (.relay/demo.pid, .relay/demo.log).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS_FILE = ROOT / ".relay" / "demo-keys.json"
# name -> (weight of its traffic, how long its prompts are)
DEMO_KEYS = {
    "prod-chat": (45, 1),
    "batch-enrich": (28, 4),
    "internal-tools": (18, 2),
    "staging": (9, 1),
}
PROMPTS = ["ship it", "capital of France?", "summarise this paragraph",
           "write a haiku about queues", "translate 'hello' to German",
           "what is 17 * 23?", "name three sorting algorithms"]


def say(*a):
    print("demo:", *a, flush=True)


def relay(*args, config):
    return subprocess.run([str(ROOT / "build" / "relay"), *args,
                           "--config", config], capture_output=True,
                          text=True, timeout=60)


def demo_keys(config):
    """The demo keys that still work, made when missing."""
    keys = {}
    if KEYS_FILE.exists():
        try:
            keys = json.loads(KEYS_FILE.read_text())
        except ValueError:
            keys = {}
    for name in DEMO_KEYS:
        key = keys.get(name)
        if key:
            r = subprocess.run([str(ROOT / "build" / "relay"), "keys",
                                "check", "--config", config], input=key,
                               capture_output=True, text=True, timeout=60)
            if r.returncode == 0:
                continue
        r = relay("keys", "create", "--name", "demo:" + name, config=config)
        if r.returncode != 0:
            sys.exit("demo: relay keys create failed: " + r.stderr.strip())
        keys[name] = r.stdout.strip().splitlines()[-1]
        say("created demo key demo:%s" % name)
    KEYS_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = KEYS_FILE.with_suffix(".tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keys, f)
    os.replace(tmp, KEYS_FILE)
    return keys


def models(config):
    r = relay("models", config=config)
    names = [line.split()[0] for line in r.stdout.splitlines()[1:]
             if line.strip()]
    return names or ["auto"]


def send(base, key, model, prompt):
    body = json.dumps({"model": model, "max_tokens": 64, "messages": [
        {"role": "user", "content": prompt}]}).encode()
    req = urllib.request.Request(base + "/v1/chat/completions", data=body,
                                 headers={"Authorization": "Bearer " + key,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "relay.yaml"))
    ap.add_argument("--base", default="")
    ap.add_argument("--duration", type=float, default=900)
    ap.add_argument("--rate", type=float, default=3.0,
                    help="requests per second")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    base = args.base
    if not base:
        listen = "127.0.0.1:8080"
        for line in Path(args.config).read_text().splitlines():
            if line.startswith("listen:"):
                listen = line.split()[1]
        base = "http://" + listen
    rng = random.Random(args.seed)
    keys = demo_keys(args.config)
    names = list(DEMO_KEYS)
    weights = [DEMO_KEYS[n][0] for n in names]
    model_names = models(args.config)
    say("sending %.1f requests/s to %s for %s, %d models"
        % (args.rate, base, "%ds" % args.duration if args.duration
           else "ever", len(model_names)))
    stop = time.time() + args.duration if args.duration else float("inf")
    sent = [0, 0]
    lock = threading.Lock()

    def one(key, model, prompt):
        status = send(base, key, model, prompt)
        with lock:
            sent[0] += 1
            sent[1] += status != 200

    while time.time() < stop:
        name = rng.choices(names, weights)[0]
        length = DEMO_KEYS[name][1]
        prompt = " ".join(rng.choice(PROMPTS) for _ in range(length))
        model = rng.choice(model_names)
        threading.Thread(target=one, args=(keys[name], model, prompt),
                         daemon=True).start()
        time.sleep(rng.expovariate(args.rate))
        if sent[0] and sent[0] % 100 == 0:
            say("%d sent, %d not 200" % tuple(sent))
    time.sleep(1)
    say("done: %d sent, %d not 200" % tuple(sent))


if __name__ == "__main__":
    main()
