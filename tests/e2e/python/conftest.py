"""Starts one fake provider and one gateway (on free ports, config in a temp
dir) for the whole session, with the models the SDK tests script.

Uses the integration suite's library (tests/integration/relaytest.py), so
RELAY_BIN and RELAY_FAKE_BIN choose the binaries here too.
"""
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import relaytest  # noqa: E402

MODELS = [
    {"name": "rate-limited", "upstream": "up-429?status=429&retry_after=0"},
    {"name": "server-error", "upstream": "up-500?status=500"},
    {"name": "unavailable", "upstream": "up-503?status=503"},
]
MAX_BODY = 65536


@pytest.fixture(scope="session")
def stack():
    try:
        st = relaytest.Stack({"models": MODELS, "server": {"max_body_bytes": MAX_BODY}})
    except relaytest.CaseFailure as e:
        pytest.fail("could not start the fake provider and the gateway: %s" % e,
                    pytrace=False)
    yield st
    st.close()
    shutil.rmtree(st.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def base_url(stack):
    return "http://127.0.0.1:%d/v1" % stack.relay_port


@pytest.fixture()
def client(stack, base_url):
    from openai import OpenAI
    with OpenAI(base_url=base_url, api_key=stack.relay_key, max_retries=0,
                timeout=15) as c:
        yield c


@pytest.fixture(autouse=True)
def relay_alive(stack):
    """Every test ends with the gateway still running."""
    yield
    assert stack.relay.alive(), "relay died during the test; its log ends:\n" + \
        relaytest.tail(stack.relay.output())
