#!/usr/bin/env python3
"""A stand-in for build/relay that serves the fake provider on the
gateway's address: `RELAY_BIN=tests/integration/fake_as_relay.py
python3 tests/integration/run.py` must FAIL nearly every case (no x-relay
headers, no auth, no limits, no request log...). It checks that the suite
can fail; it is not a test of anything else.
"""
import os
import sys

import yaml

args = sys.argv[1:]
if not args or args[0] != "serve" or "--config" not in args:
    sys.exit("usage: fake_as_relay.py serve --config FILE")
cfg = yaml.safe_load(open(args[args.index("--config") + 1]))
listen = cfg.get("listen", "127.0.0.1:8080")
fake = os.environ.get("RELAY_FAKE_BIN") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "relay-fake")
os.execv(fake, [fake, "--listen", listen, "--quiet"])
