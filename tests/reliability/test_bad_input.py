#!/usr/bin/env python3
"""Bad input: the corpus of malformed requests in bad_requests.jsonl, and
slow clients, against one gateway (tests/reliability, docs/reliability.md).

Each line of bad_requests.jsonl is one request and what it must get:
  name, why       the entry's name and what is wrong with it
  send            a string, or a list of strings and {"repeat": S, "times": N},
                  sent in one write: each character is one byte (latin-1).
                  ${RELAY_API_KEY} is the gateway's key; ${LEN} the length of
                  what follows the first blank line (up to ${END}, dropped)
  expect          {status, type, code[, param]}: the status, and for an error
                  exactly these members of OpenAI's error object (type null:
                  no error expected)
  responses       further responses on the same connection, in order
  closed          the gateway closes the connection after them (else the
                  connection must still serve a GET /healthz)
  upstream        requests the provider sees for it (default 0)

Then: slow clients (headers dribbled, a body that stops half way), many at
once, are cut with 408 once server.read_timeout_ms has passed, while normal
requests beside them are served; and after everything the gateway serves a
completion, its descriptors are back at their count before the corpus, and
every request it answered has one log line and one request-log row, with no
key in any log line.

Run by tests/integration/run.py --dir tests/reliability, or alone:
    python3 tests/reliability/test_bad_input.py [-v] [-k NAME]
Prints `ok NAME` / `FAIL NAME: why` per entry and test, then
`N passed, N failed`.
"""
import json
import socket
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import caserun  # noqa: E402
import relaytest as rt  # noqa: E402
import test_keys as tk  # noqa: E402
import test_limits as tl  # noqa: E402

CORPUS = HERE / "bad_requests.jsonl"
READ_TIMEOUT_MS = 1500
CONFIG = {
    "store": "${STORE}",
    "server": {"max_body_bytes": 65536, "max_header_bytes": 8192,
               "read_timeout_ms": READ_TIMEOUT_MS},
}
check = tk.check
say = tl.say


def load_corpus():
    entries = []
    for n, line in enumerate(CORPUS.read_text().splitlines(), 1):
        if line.strip():
            e = json.loads(line)
            for k in ("name", "why", "send", "expect"):
                check(k in e, "%s:%d: no %s" % (CORPUS.name, n, k))
            entries.append(e)
    names = [e["name"] for e in entries]
    check(len(names) == len(set(names)), "two corpus entries share a name")
    return entries


def expand(send, key):
    """The bytes an entry sends."""
    parts = [send] if isinstance(send, str) else send
    text = "".join(p if isinstance(p, str) else p["repeat"] * p["times"]
                   for p in parts)
    text = text.replace("${RELAY_API_KEY}", key)
    if "${LEN}" in text:
        start = text.index("\r\n\r\n") + 4
        end = text.find("${END}")
        body = text[start:end if end >= 0 else len(text)]
        text = text.replace("${LEN}", str(len(body.encode("latin-1"))), 1)
    return text.replace("${END}", "").encode("latin-1")


def check_answer(exp, r, where):
    check(r is not None, "%s: the connection closed without a response" % where)
    check(r.status == exp["status"], "%s: status %s, expected %s: %s"
          % (where, r.status, exp["status"], r.describe()))
    check(r.header("x-request-id"), "%s: no x-request-id" % where)
    if exp.get("type") is None:
        return
    err = r.json().get("error")
    check(isinstance(err, dict) and isinstance(err.get("message"), str) and
          err["message"] and {"type", "param", "code"} <= set(err),
          "%s: not OpenAI's error shape: %r" % (where, r.body[:300]))
    for k in ("type", "code", "param"):
        if k in exp:
            check(err[k] == exp[k], "%s: error.%s is %r, expected %r (message %r)"
                  % (where, k, err[k], exp[k], err["message"]))


def run_entry(st, ctx, e):
    """Sends one entry, checks its answers; returns nothing, raises."""
    seen = len(st.fake_requests())
    c = rt.Conn(st.relay_port, timeout=10)
    try:
        c.send(expand(e["send"], st.relay_key))
        for i, exp in enumerate([e["expect"]] + e.get("responses", [])):
            where = "response %d" % (i + 1)
            try:
                r = c.read_response()
            except socket.timeout:
                raise rt.CaseFailure("%s: none within 10 s" % where)
            check_answer(exp, r, where)
            ctx.note_response(r)
        if e.get("closed"):
            closed, extra = c.closed_by_peer(3)
            check(not extra, "unexpected bytes after the responses: %r" % extra[:200])
            check(closed, "the gateway did not close the connection")
        else:
            head, _ = rt.build_request(st.relay_port, "GET", "/healthz", auth=None)
            c.send(head)
            r = c.read_response()
            check(r is not None and r.status == 200,
                  "the connection does not serve a request after it: %s"
                  % (r and r.describe()))
            ctx.note_response(r, "/healthz")
    finally:
        c.close()
    got = len(st.fake_requests()) - seen
    check(got == e.get("upstream", 0), "the provider saw %d requests, expected %d"
          % (got, e.get("upstream", 0)))


# ------------------------------------------------------------ slow clients

def dribble_head(port, key, out):
    """A request head sent one byte every 100 ms, never finished."""
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\n"
            "Authorization: Bearer %s\r\nX-Slow: %s" % (key, "s" * 400)).encode()
    slow(port, head, 1, out)


def stall_body(port, key, out):
    """A whole head announcing 200 bytes of body, 20 sent, then nothing."""
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\n"
            "Authorization: Bearer %s\r\nContent-Length: 200\r\n\r\n"
            '{"model":"test-model",' % key).encode()
    slow(port, head, len(head), out)


def slow(port, data, step, out):
    t0 = time.time()
    c = rt.Conn(port, timeout=10)
    try:
        for i in range(0, len(data), step):
            c.send(data[i:i + step])
            if c.send_error:
                break
            c.sock.settimeout(0.1)
            try:
                if c._fill():
                    break  # the gateway answered: stop dribbling
            except socket.timeout:
                pass
            if c.eof:
                break
        c.sock.settimeout(10)
        r = c.read_response()
        closed, _ = c.closed_by_peer(3)
        out.append((r, closed, time.time() - t0))
    except Exception as ex:  # noqa: BLE001 - reported by the test
        out.append((ex, False, time.time() - t0))
    finally:
        c.close()


def t_slow_clients_are_cut_and_others_served(st, ctx):
    out = []
    threads = [threading.Thread(target=dribble_head if i % 2 else stall_body,
                                args=(st.relay_port, st.relay_key, out))
               for i in range(40)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    t0 = time.time()
    served = 0
    while any(t.is_alive() for t in threads) and served < 5000:
        r = rt.http_request(st.relay_port, "POST", "/v1/chat/completions",
                            body={"model": "test-model",
                                  "messages": [{"role": "user", "content": "beside"}]},
                            key=st.relay_key, timeout=5)
        check(r.status == 200, "a normal request beside slow clients: %s" % r.describe())
        check(r.elapsed_ms < 1000, "a normal request beside slow clients took %.0f ms"
              % r.elapsed_ms)
        ctx.note_response(r)
        served += 1
        time.sleep(0.005)
    for t in threads:
        t.join(15)
    say("%d normal requests in %.1f s beside 40 slow clients" % (served, time.time() - t0))
    check(served >= 5, "only %d normal requests were served meanwhile" % served)
    check(len(out) == 40, "%d of 40 slow clients finished" % len(out))
    for r, closed, took in out:
        check(not isinstance(r, Exception), "a slow client: %r" % r)
        check(r is not None and r.status == 408, "a slow client got %s"
              % (r and r.describe()))
        err = r.json()["error"]
        check(err["code"] == "request_timeout" and err["type"] == "invalid_request_error",
              "408 error: %r" % err)
        check(closed, "the connection of a slow client was not closed")
        check(READ_TIMEOUT_MS / 1000 * 0.8 <= took <= READ_TIMEOUT_MS / 1000 + 3,
              "a slow client was cut after %.1f s, read_timeout_ms is %d"
              % (took, READ_TIMEOUT_MS))
        ctx.note_response(r)


def t_after_everything_the_gateway_serves_and_holds_nothing(st, ctx):
    r = rt.http_request(st.relay_port, "POST", "/v1/chat/completions",
                        body={"model": "test-model",
                              "messages": [{"role": "user", "content": st.prompt}]},
                        key=st.relay_key)
    check(r.status == 200 and r.json()["choices"][0]["message"]["content"],
          "a normal completion after the corpus: %s" % r.describe())
    ctx.note_response(r)
    ctx.check_fds()


# ------------------------------------------------------------ main

RUN = caserun.SharedGateway(CONFIG, "bad input")


def named(name, fn):
    fn.__name__ = name
    return fn


def t_one_log_line_and_one_row_per_request_and_no_key_in_the_log(st, ctx):
    code = st.relay.stop()
    check(code == 0, "relay exited %s:\n%s" % (code, rt.tail(st.relay.output())))
    ctx.check_log()
    ctx.check_rows()


def main():
    tests = [named("bad_request[%s]" % e["name"],
                   lambda st, ctx, e=e: run_entry(st, ctx, e)) for e in load_corpus()]
    tests += [t_slow_clients_are_cut_and_others_served,
              t_after_everything_the_gateway_serves_and_holds_nothing,
              t_one_log_line_and_one_row_per_request_and_no_key_in_the_log]
    return RUN.main(__doc__, tests, tl.set_verbose)


if __name__ == "__main__":
    sys.exit(main())
