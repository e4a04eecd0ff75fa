"""Keys and per-key limits as the official openai Python SDK sees them: a
key made with `relay keys create`, its rpm turning into the SDK's
RateLimitError with Retry-After and OpenAI's x-ratelimit-* headers, a spend
budget, a model the key may not use (PermissionDeniedError), a revoked key
(AuthenticationError). Its own gateway, with an SQLite store in a temp dir
and the suite's Redis when REDIS_URL is set."""
import os
import subprocess
import time

import openai
import pytest

import relaytest

MSG = [{"role": "user", "content": "abcdefgh"}]


@pytest.fixture(scope="module")
def gw():
    over = {"redis": os.environ.get("REDIS_URL", ""),
            "models": [{"name": "test-model", "price": {"input": 1.0, "output": 2.0}},
                       {"name": "other-model",
                        "upstream": "up-other?ttft_ms=0&tps=0&tokens=3"}]}
    try:
        st = relaytest.Stack(over)
    except relaytest.CaseFailure as e:
        pytest.fail("could not start the stack: %s" % e, pytrace=False)
    yield st
    st.close()


def keys(st, *args):
    r = subprocess.run([relaytest.relay_bin(), "keys"] + list(args) +
                       ["--config", st.config_path], capture_output=True,
                       text=True, env=st.env, timeout=60)
    assert r.returncode == 0, "relay keys %s: %s" % (args[0], r.stderr)
    return r.stdout


def client_for(st, *create_args):
    """A new key (its last output line) and an SDK client using it, once
    the gateway's key cache has it (it polls the store every 250 ms)."""
    key = keys(st, "create", "--name", "sdk", *create_args).rstrip("\n").split("\n")[-1]
    c = openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % st.relay_port,
                      api_key=key, max_retries=0, timeout=15)
    deadline = time.time() + 3
    while True:
        try:
            c.models.list()
            return key, c
        except openai.AuthenticationError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def test_rpm_becomes_rate_limit_error_with_retry_after(gw):
    _, c = client_for(gw, "--rpm", "2", "--tpm", "100000")
    raw = c.chat.completions.with_raw_response.create(model="test-model", messages=MSG,
                                                      max_tokens=50)
    assert raw.headers["x-ratelimit-limit-requests"] == "2"
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
    # 9 estimated prompt tokens + max_tokens 50 are reserved.
    assert raw.headers["x-ratelimit-remaining-tokens"] == str(100000 - 59)
    assert raw.parse().choices[0].message.content
    c.chat.completions.create(model="test-model", messages=MSG)
    with pytest.raises(openai.RateLimitError) as ei:
        c.chat.completions.create(model="test-model", messages=MSG)
    e = ei.value
    assert e.status_code == 429
    assert e.code == "rate_limit_exceeded"
    assert e.type == "requests"
    assert "requests per min (RPM): Limit 2, Used 2" in e.message
    assert 59 <= int(e.response.headers["retry-after"]) <= 60
    assert e.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_budget_refusal_is_insufficient_quota(gw):
    # 50,000 nUSD a day; one call holds 9 x 1000 + 12 x 2000 and costs
    # 6 x 1000 + 12 x 2000 = 30,000 nUSD: the second would overshoot.
    _, c = client_for(gw, "--budget-usd", "0.00005", "--period", "day")
    raw = c.chat.completions.with_raw_response.create(model="test-model", messages=MSG,
                                                      max_tokens=12)
    assert raw.headers["x-relay-cost-usd"] == "0.000030000"
    with pytest.raises(openai.RateLimitError) as ei:
        c.chat.completions.create(model="test-model", messages=MSG, max_tokens=12)
    assert ei.value.code == "budget_exceeded"
    assert ei.value.type == "insufficient_quota"
    assert int(ei.value.response.headers["retry-after"]) > 0


def test_a_model_the_key_may_not_use_is_permission_denied(gw):
    _, c = client_for(gw, "--models", "other-model")
    with pytest.raises(openai.PermissionDeniedError) as ei:
        c.chat.completions.create(model="test-model", messages=MSG)
    assert ei.value.status_code == 403
    assert ei.value.code == "model_not_allowed"
    assert "other-model" in ei.value.message
    # "auto" routes only to the models the key may use.
    raw = c.chat.completions.with_raw_response.create(model="auto", messages=MSG)
    assert raw.headers["x-relay-model"] == "other-model"
    assert raw.parse().model == "other-model"


def test_a_revoked_key_is_an_authentication_error(gw):
    key, c = client_for(gw)
    c.chat.completions.create(model="test-model", messages=MSG)
    keys(gw, "revoke", key[:8])
    deadline = time.time() + 1.0
    while True:
        try:
            c.chat.completions.create(model="test-model", messages=MSG)
        except openai.AuthenticationError as e:
            assert e.status_code == 401
            assert "revoked" in e.message
            assert key not in e.message
            break
        assert time.time() < deadline, "a revoked key still worked after 1 s"
        time.sleep(0.05)
