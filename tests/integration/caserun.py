"""caserun - runs one declarative case file against a fresh fake + gateway.

The case format is described in README.md beside this file. run_case() is
the entry point; it raises relaytest.CaseFailure with a readable reason on
the first failed check.
"""
import json
import re
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import yaml

from relaytest import (CaseFailure, Conn, Stack, build_request, check_headers,
                       deep_merge, fail, http_request, match, open_fds,
                       parse_sse, read_rows, script_main, short, sse_text,
                       subst, tail, tcp_sockets)

CASE_KEYS = {"description", "config", "request", "raw", "expect", "responses",
             "closed", "steps", "upstream", "after", "log", "timeout_s",
             "closed_within_s", "fds", "rows", "memory"}
DIRECT = "x-relaytest-direct"  # marks the runner's own calls to the fake
SANITIZER = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|"
                       r"runtime error:|SUMMARY: \w+Sanitizer")
SIGNALS = {"HUP": signal.SIGHUP, "TERM": signal.SIGTERM, "INT": signal.SIGINT}


def load_case(path):
    with open(path, "rb") as f:
        case = yaml.safe_load(f)
    if not isinstance(case, dict):
        raise CaseFailure("case file is not a YAML mapping")
    unknown = set(case) - CASE_KEYS
    if unknown:
        raise CaseFailure("unknown keys in case file: %s" % sorted(unknown))
    if not case.get("description"):
        raise CaseFailure("case file has no description")
    # suite.yaml beside the case files: a config merged under each case's.
    suite = Path(path).resolve().parent / "suite.yaml"
    if suite.exists():
        with open(suite, "rb") as f:
            base = (yaml.safe_load(f) or {}).get("config") or {}
        case["config"] = deep_merge(base, case.get("config") or {})
    return case


def case_steps(case):
    if "steps" in case:
        return case["steps"]
    if "request" in case:
        return [{"request": case["request"], "expect": case.get("expect", {})}]
    if "raw" in case:
        step = {"raw": case["raw"]}
        for k in ("expect", "responses", "closed", "closed_within_s"):
            if k in case:
                step[k] = case[k]
        return [step]
    raise CaseFailure("case has neither steps, request nor raw")


class Ctx:
    """The state of one running case."""

    def __init__(self, stack, case, verbose):
        self.stack = stack
        self.case = case
        self.verbose = verbose
        self.request_ids = []
        self.case_requests = None  # how many came before `after:`
        self.background = {}
        self.exited = False
        self.notes = []
        self.row_expect = []   # (request id, expected row subset, where)
        self.fd_base = {}      # the gateway's descriptors once it serves
        self.rss_base_kb = 0

    def v(self, x):
        return subst(x, self.stack.vars())

    def say(self, msg):
        if self.verbose:
            print("    " + msg, flush=True)

    # ---------------------------------------------------------- steps

    def run_step(self, step, where):
        step = expand(self.v(step))
        kinds = [k for k in ("request", "raw", "background", "wait", "sleep_ms",
                             "signal", "config", "refused", "exit", "upstream",
                             "fake_reset", "alive")
                 if k in step]
        if len(kinds) != 1:
            fail("%s: a step needs exactly one action, has %s" % (where, kinds or list(step)))
        kind = kinds[0]
        where = step.get("name", where)
        self.say("%s: %s" % (where, kind))
        getattr(self, "step_" + kind)(step, where)
        if kind not in ("exit", "signal", "wait", "sleep_ms") and not self.exited:
            self.check_alive(where)

    def step_request(self, step, where):
        r = self.do_request(step["request"], where)
        exp = step.get("expect", {}) or {}
        self.check_response(exp, r, where)
        if "same_as_fake" in exp:
            self.check_same_as_fake(step["request"], exp["same_as_fake"], r, where)

    def check_same_as_fake(self, req, upstream_model, r, where):
        """The answer's text and completion tokens are the fake's own for
        the same body sent to it directly with model upstream_model (for
        answers too long to compute here)."""
        body = dict(req["body"])
        body["model"] = upstream_model
        direct = http_request(self.stack.fake_port, "POST", "/v1/chat/completions",
                              headers=[(DIRECT, "1")], body=body,
                              auth="Bearer " + self.stack.fake_key, timeout=60)
        if direct.status != 200:
            fail("%s: the fake answered the direct call %s" % (where, direct.status))

        def text_and_tokens(resp):
            if body.get("stream"):
                events = parse_sse(resp.body)
                usage = [e["usage"] for e in events
                         if isinstance(e, dict) and e.get("usage")]
                return sse_text(events), usage[-1]["completion_tokens"] if usage else None
            j = json.loads(resp.body)
            return (j["choices"][0]["message"]["content"],
                    j["usage"]["completion_tokens"])
        want, got = text_and_tokens(direct), text_and_tokens(r)
        if got != want:
            fail("%s: the client got %d bytes of text and %s completion tokens, the "
                 "fake's own answer is %d bytes and %s tokens"
                 % (where, len(got[0]), got[1], len(want[0]), want[1]))
        self.say("%s: %d bytes of text, as the fake's own answer" % (where, len(got[0])))

    def do_request(self, req, where):
        req = dict(req)
        body = None
        if "body" in req:
            body = req.pop("body")
        elif "body_text" in req:
            body = req.pop("body_text").encode("utf-8")
        elif "body_bytes" in req:
            body = req.pop("body_bytes").encode("latin-1")
        method = req.pop("method", "POST" if body is not None or "chunked" in req else "GET")
        path = req.pop("path", "/v1/chat/completions")
        headers = req.pop("headers", {}) or {}
        if isinstance(headers, dict):
            headers = list(headers.items())
        headers = [(k, str(v)) for k, v in headers]
        auth = req.pop("auth", "default")
        chunked = req.pop("chunked", None)
        read = req.pop("read", {}) or {}
        if req:
            fail("%s: unknown request keys %s" % (where, sorted(req)))
        head, b = build_request(self.stack.relay_port, method, path, headers, body,
                                auth, self.stack.relay_key, chunked)
        c = connect(self.stack.relay_port, read.get("timeout_s", 10), where)
        try:
            c.send(head + b)
            on_data = None
            n_events = read.get("disconnect_after_events")
            if n_events:
                def on_data(data):
                    return data.count(b"\n\n") >= n_events
            try:
                r = c.read_response(method, on_data=on_data)
            except socket.timeout:
                fail("%s: no complete response within %s s" % (where, read.get("timeout_s", 15)))
            if r is None:
                fail("%s: the gateway closed the connection without a response" % where)
        finally:
            c.close()
        self.note_response(r, path)
        self.say("%s: %s %s in %.0f ms" % (where, r.status, r.reason, r.elapsed_ms or 0))
        if self.verbose > 1:
            self.say("    " + r.describe())
        return r

    def note_response(self, r, path=None):
        rid = r.header("x-request-id")
        if rid:
            # Health probes are answered but not logged (load balancers
            # poll them); every other request must leave one log line.
            logged = path not in ("/healthz", "/readyz")
            self.request_ids.append((rid, r.status, logged))

    def step_background(self, step, where):
        """Starts `count` (default 1) copies of a request in threads."""
        spec = step["background"]
        bid = spec["id"]
        runs = []
        for k in range(spec.get("count", 1)):
            slot = {"response": None, "error": None}

            def run(slot=slot, k=k):
                try:
                    slot["response"] = self.do_request(
                        spec["request"], "%s (%s #%d)" % (where, bid, k + 1))
                except Exception as e:  # reported when waited for
                    slot["error"] = e
            t = threading.Thread(target=run, daemon=True)
            t.start()
            runs.append((t, slot))
        self.background[bid] = runs

    def step_wait(self, step, where):
        bid = step["wait"]
        deadline = time.time() + step.get("timeout_s", 15)
        for k, (t, slot) in enumerate(self.background[bid]):
            t.join(max(0.0, deadline - time.time()))
            w = "%s (%s #%d)" % (where, bid, k + 1)
            if t.is_alive():
                fail("%s: background request did not finish" % w)
            if slot["error"]:
                raise slot["error"]
            self.check_response(step.get("expect", {}), slot["response"], w)

    def step_sleep_ms(self, step, where):
        time.sleep(step["sleep_ms"] / 1000.0)

    def step_signal(self, step, where):
        self.check_alive(where)
        self.stack.relay.signal(SIGNALS[step["signal"]])

    def step_config(self, step, where):
        self.stack.config = deep_merge(self.stack.config, step["config"])
        self.stack.write_config()

    def step_refused(self, step, where):
        try:
            s = socket.create_connection(("127.0.0.1", self.stack.relay_port), timeout=2)
        except ConnectionRefusedError:
            return
        except socket.timeout:
            return
        try:
            head, b = build_request(self.stack.relay_port, "GET", "/healthz", auth=None)
            s.settimeout(2)
            try:
                s.sendall(head)
                data = s.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            except socket.timeout:
                fail("%s: a new connection was accepted and left hanging" % where)
            if data:
                fail("%s: a new connection was served (expected refused): %r"
                     % (where, data[:120]))
        finally:
            s.close()

    def step_exit(self, step, where):
        spec = step["exit"]
        code = self.stack.relay.wait(spec.get("within_ms", 8000) / 1000.0)
        if code is None:
            fail("%s: relay still running %d ms after being asked to stop"
                 % (where, spec.get("within_ms", 8000)))
        self.exited = True
        if "code" in spec and code != spec["code"]:
            fail("%s: relay exited with status %s, expected %s; its log ends:\n%s"
                 % (where, code, spec["code"], tail(self.stack.relay.output())))

    def step_alive(self, step, where):
        self.check_alive(where)

    def step_fake_reset(self, step, where):
        self.stack.fake_reset()

    def step_upstream(self, step, where):
        self.check_upstream(step["upstream"], where)

    def step_raw(self, step, where):
        c = connect(self.stack.relay_port, step.get("timeout_s", 10), where)
        got = []
        try:
            self.raw_segments(c, step["raw"], got, where)
            want = step.get("responses")
            if want is None and "expect" in step:
                want = [step["expect"]]
            for i, exp in enumerate(want or []):
                w = "%s response %d" % (where, len(got) + 1)
                try:
                    r = c.read_response(exp.get("method", "GET"))
                except socket.timeout:
                    fail("%s: no response within the timeout" % w)
                if r is None:
                    fail("%s: connection closed; expected status %s"
                         % (w, exp.get("status")))
                self.note_response(r)
                self.say("%s: %s in %.0f ms" % (w, r.status, r.elapsed_ms or 0))
                got.append(r)
                self.check_response(exp, r, w)
            if step.get("closed"):
                closed, extra = c.closed_by_peer(step.get("closed_within_s", 3))
                if extra:
                    fail("%s: unexpected bytes after the expected responses: %r"
                         % (where, extra[:200]))
                if not closed:
                    fail("%s: the gateway did not close the connection within %s s"
                         % (where, step.get("closed_within_s", 3)))
            if step.get("extra") is False or step.get("no_more"):
                pass
        finally:
            c.close()

    def raw_segments(self, c, segments, got, where):
        if isinstance(segments, str):
            segments = [segments]
        for seg in segments:
            if isinstance(seg, str):
                c.send(seg.encode("latin-1"))
            elif "repeat" in seg:
                c.send((seg["repeat"] * seg["times"]).encode("latin-1"))
            elif isinstance(seg.get("request"), list):
                # several requests in one write: pipelining
                c.send(b"".join(self.serialise(r)[0] + self.serialise(r)[1]
                                for r in seg["request"]))
            elif "request" in seg or "head" in seg or "body" in seg:
                kind = "request" if "request" in seg else "head" if "head" in seg else "body"
                head, b = self.serialise(seg[kind])
                c.send({"request": head + b, "head": head, "body": b}[kind])
            elif "trickle" in seg:
                # a whole request, one byte per write, pause_ms apart
                head, b = self.serialise(seg["trickle"])
                for i in range(len(head + b)):
                    c.send((head + b)[i:i + 1])
                    time.sleep(seg.get("pause_ms", 1) / 1000.0)
            elif "sleep_ms" in seg:
                time.sleep(seg["sleep_ms"] / 1000.0)
            elif "shutdown_write" in seg:
                c.shutdown_write()
            elif "read_interim" in seg:
                try:
                    r = c.read_response("GET")
                except socket.timeout:
                    fail("%s: no interim %s response" % (where, seg["read_interim"]))
                if r is None or r.status != seg["read_interim"]:
                    fail("%s: expected interim %s, got %s"
                         % (where, seg["read_interim"], r and r.describe()))
            elif "read_response" in seg:
                exp = seg["read_response"] or {}
                w = "%s response %d" % (where, len(got) + 1)
                try:
                    r = c.read_response(exp.get("method", "GET"))
                except socket.timeout:
                    fail("%s: no response within the timeout" % w)
                if r is None:
                    fail("%s: connection closed before a response" % w)
                self.note_response(r)
                got.append(r)
                self.check_response(exp, r, w)
            else:
                fail("%s: unknown raw segment %s" % (where, short(seg)))

    def serialise(self, spec):
        spec = dict(spec)
        body = spec.pop("body", None)
        if "body_text" in spec:
            body = spec.pop("body_text").encode("utf-8")
        if "body_bytes" in spec:
            body = spec.pop("body_bytes").encode("latin-1")
        method = spec.pop("method", "POST" if body is not None or "chunked" in spec else "GET")
        headers = spec.pop("headers", {}) or {}
        if isinstance(headers, dict):
            headers = list(headers.items())
        return build_request(
            self.stack.relay_port, method,
            spec.pop("path", "/v1/chat/completions"),
            [(k, str(v)) for k, v in headers], body,
            spec.pop("auth", "default"), self.stack.relay_key,
            spec.pop("chunked", None))

    # --------------------------------------------------------- checks

    def check_alive(self, where):
        relay = self.stack.relay
        if not relay.alive():
            fail("%s: relay is no longer running (exit status %s); its log ends:\n%s"
                 % (where, relay.returncode(), tail(relay.output())))
        if not self.stack.fake.alive():
            fail("%s: the fake provider died (status %s); its log ends:\n%s"
                 % (where, self.stack.fake.returncode(), tail(self.stack.fake.output())))

    def check_response(self, exp, r, where):
        exp = dict(exp or {})
        exp.pop("method", None)
        if "row" in exp:
            self.row_expect.append((r.header("x-request-id"), exp["row"], where))
        if "status" in exp and match(exp["status"], r.status) is not None:
            fail("%s: status %s, expected %s; got %s"
                 % (where, r.status, exp["status"], r.describe()))
        if exp.get("request_id", True) and not r.header("x-request-id"):
            fail("%s: no x-request-id header; headers are %s" % (where, dict(r.headers)))
        if "relay_headers" in exp:
            rh = exp["relay_headers"]
            if isinstance(rh, str):
                rh = {"model": rh}
            check_headers({
                "x-relay-model": rh["model"],
                "x-relay-provider": rh.get("provider", "fake"),
                "x-relay-overhead-ms": {"regex": r"^\d+(\.\d+)?$"},
            }, r, where)
        check_headers(exp.get("headers"), r, where)
        if r.truncated and not exp.get("truncated_ok"):
            fail("%s: the body ended before its framing said it would (%d bytes)"
                 % (where, len(r.body)))
        ctype = r.header("content-type") or ""
        if r.status >= 400 and exp.get("error_shape", True) and r.body:
            if "json" not in ctype:
                fail("%s: error response with content-type %r, expected JSON; body %r"
                     % (where, ctype, r.body[:200]))
            body = r.json()
            why = match({"error": {"message": {"$type": "string"},
                                   "type": {"$type": "string"},
                                   "param": {"$present": True},
                                   "code": {"$present": True}}}, body)
            if why:
                fail("%s: error body not in OpenAI shape: %s; body %s"
                     % (where, why, short(body)))
        if "error" in exp:
            why = match({"error": exp["error"]}, r.json())
            if why:
                fail("%s: error body: %s" % (where, why))
        if "json" in ctype and r.status == 200 and r.body:
            body = r.json()
            u = body.get("usage") if isinstance(body, dict) else None
            if isinstance(u, dict) and all(isinstance(u.get(k), int) for k in
                                           ("prompt_tokens", "completion_tokens", "total_tokens")):
                if u["prompt_tokens"] + u["completion_tokens"] != u["total_tokens"]:
                    fail("%s: usage does not add up: %s" % (where, u))
        if "json" in exp:
            if "json" not in ctype:
                fail("%s: content-type %r, expected JSON" % (where, ctype))
            why = match(exp["json"], r.json())
            if why:
                fail("%s: body: %s" % (where, why))
        if "text_fake" in exp:
            # A whole answer's text is exactly the fake's (the stream's
            # counterpart is sse.text_fake).
            tf = exp["text_fake"]
            want = fake_words(tf["prompt"], tf["tokens"])
            choices = r.json().get("choices") or [{}]
            got = (choices[0].get("message") or {}).get("content")
            if got != want:
                fail("%s: the answer's text is %r, expected the fake's answer %r"
                     % (where, (got or "")[:300], want[:300]))
        if "body_regex" in exp:
            text = r.body.decode("utf-8", "replace")
            if not re.search(exp["body_regex"], text):
                fail("%s: body %r does not match /%s/" % (where, text[:300], exp["body_regex"]))
        if "sse" in exp:
            self.check_sse(exp["sse"], r, where)
        el = exp.get("elapsed_ms")
        if el and r.elapsed_ms is not None:
            if "max" in el and r.elapsed_ms > el["max"]:
                fail("%s: took %.0f ms, expected at most %s ms" % (where, r.elapsed_ms, el["max"]))
            if "min" in el and r.elapsed_ms < el["min"]:
                fail("%s: took %.0f ms, expected at least %s ms" % (where, r.elapsed_ms, el["min"]))

    def check_sse(self, exp, r, where):
        ctype = r.header("content-type") or ""
        if not ctype.startswith("text/event-stream"):
            fail("%s: content-type %r, expected text/event-stream; body %r"
                 % (where, ctype, r.body[:200]))
        events = parse_sse(r.body)
        if not events and not exp.get("empty_ok"):
            fail("%s: no SSE events in body %r" % (where, r.body[:300]))
        where_ev = "%s (%d events)" % (where, len(events))
        unparsed = [e for e in events if isinstance(e, dict) and "_unparsed" in e]
        if unparsed:
            fail("%s: an SSE data field is not JSON: %r" % (where, unparsed[0]["_unparsed"][:200]))
        errors = [(i, e) for i, e in enumerate(events) if isinstance(e, dict) and "error" in e]
        chunks = [e for e in events if isinstance(e, dict) and "error" not in e]
        done_at = [i for i, e in enumerate(events) if e == "[DONE]"]
        if "done" in exp:
            if exp["done"]:
                if not done_at:
                    fail("%s: no data: [DONE]; last events %s" % (where_ev, short(events[-3:])))
                if done_at != [len(events) - 1]:
                    fail("%s: [DONE] is not the last event, once (at %s)" % (where_ev, done_at))
            elif done_at:
                fail("%s: data: [DONE] sent, but the stream should end without it; last events %s"
                     % (where_ev, short(events[-3:])))
        if "error" in exp:
            if exp["error"] is False or exp["error"] is None:
                if errors:
                    fail("%s: unexpected SSE error event %s" % (where_ev, short(errors[0][1])))
            else:
                if not errors:
                    fail("%s: no SSE error event; last events %s" % (where_ev, short(events[-3:])))
                i, e = errors[-1]
                why = match({"error": exp["error"]}, e)
                if why:
                    fail("%s: error event: %s" % (where_ev, why))
                if i != len(events) - 1:
                    fail("%s: the error event is not the last event: %s"
                         % (where_ev, short(events[i:])))
                shape = match({"error": {"message": {"$type": "string"},
                                         "type": {"$type": "string"}}}, e)
                if shape:
                    fail("%s: error event not in OpenAI shape: %s" % (where_ev, shape))
        if "all_chunks" in exp:
            for i, c in enumerate(chunks):
                why = match(exp["all_chunks"], c, "chunk[%d]" % i)
                if why:
                    fail("%s: %s" % (where_ev, why))
        if "chunks" in exp:
            i = 0
            for j, want in enumerate(exp["chunks"]):
                while i < len(chunks) and match(want, chunks[i]) is not None:
                    i += 1
                if i == len(chunks):
                    fail("%s: expected chunk #%d %s not found in order; chunks: %s"
                         % (where_ev, j, short(want), short(chunks, 800)))
                i += 1
        if "min_chunks" in exp and len(chunks) < exp["min_chunks"]:
            fail("%s: %d chunks, expected at least %d" % (where_ev, len(chunks), exp["min_chunks"]))
        with_usage = [(i, c) for i, c in enumerate(chunks) if c.get("usage")]
        if "usage" in exp:
            if exp["usage"] is False:
                if with_usage:
                    fail("%s: a chunk carries usage but include_usage was not asked: %s"
                         % (where_ev, short(with_usage[0][1])))
            else:
                if not with_usage:
                    fail("%s: no chunk carries usage; last chunks %s" % (where_ev, short(chunks[-2:])))
                i, c = with_usage[-1]
                if i != len(chunks) - 1:
                    fail("%s: the usage chunk is not the last chunk" % where_ev)
                want = {"choices": [], "usage": {
                    "prompt_tokens": {"$type": "int"},
                    "completion_tokens": {"$type": "int"},
                    "total_tokens": {"$type": "int"}}}
                if isinstance(exp["usage"], dict):
                    want["usage"].update(exp["usage"])
                why = match(want, c, "usage chunk")
                if why:
                    fail("%s: %s" % (where_ev, why))
                u = c["usage"]
                if u["prompt_tokens"] + u["completion_tokens"] != u["total_tokens"]:
                    fail("%s: usage does not add up: %s" % (where_ev, u))
        text = sse_text(chunks)
        if exp.get("text_nonempty") and not text:
            fail("%s: the joined delta content is empty" % where_ev)
        if "text_regex" in exp and not re.search(exp["text_regex"], text):
            fail("%s: joined text %r does not match /%s/" % (where_ev, text[:200], exp["text_regex"]))
        if "text_fake" in exp:
            tf = exp["text_fake"]
            want = fake_words(tf["prompt"], tf["tokens"])
            if text != want:
                fail("%s: joined text %r, expected the fake's answer %r"
                     % (where_ev, text[:300], want[:300]))
        if "tool_call" in exp:
            calls = {}
            for c in chunks:
                for ch in c.get("choices") or []:
                    for tc in (ch.get("delta") or {}).get("tool_calls") or []:
                        slot = calls.setdefault(tc.get("index", 0), {"name": "", "arguments": "",
                                                                     "id": None})
                        if tc.get("id"):
                            slot["id"] = tc["id"]
                        fn = tc.get("function") or {}
                        slot["name"] += fn.get("name") or ""
                        slot["arguments"] += fn.get("arguments") or ""
            if 0 not in calls:
                fail("%s: no tool_calls deltas in the stream: %s" % (where_ev, short(chunks, 600)))
            why = match(exp["tool_call"], calls[0], "tool_call[0] (accumulated)")
            if why:
                fail("%s: %s" % (where_ev, why))
        if exp.get("finish_reason"):
            reasons = [ch.get("finish_reason") for c in chunks
                       for ch in c.get("choices") or [] if ch.get("finish_reason")]
            if reasons != [exp["finish_reason"]]:
                fail("%s: finish reasons %s, expected exactly one %r"
                     % (where_ev, reasons, exp["finish_reason"]))

    def check_upstream(self, exp, where="upstream"):
        if "closed_within_ms" in exp:
            self.check_upstream_closed(exp["closed_within_ms"], where)
        if "settle_ms" in exp:
            time.sleep(exp["settle_ms"] / 1000.0)
        if "open_connections" in exp:
            self.check_upstream_open(exp["open_connections"], where)
        recs = [normalise_record(r) for r in self.stack.fake_requests()]
        recs = [r for r in recs if DIRECT not in r["headers"]]
        summary = short([{"path": r["path"], "model": (r["body"] or {}).get("model")
                          if isinstance(r["body"], dict) else None} for r in recs], 600)
        if "count" in exp:
            why = match(exp["count"], len(recs), "count")
            if why:
                fail("%s: the fake received %d requests, expected %s: %s"
                     % (where, len(recs), exp["count"], summary))
        if "requests" in exp:
            if len(recs) < len(exp["requests"]):
                fail("%s: the fake received %d requests, expected at least %d: %s"
                     % (where, len(recs), len(exp["requests"]), summary))
            for i, want in enumerate(exp["requests"]):
                why = match(lower_headers(want), recs[i], "upstream[%d]" % i)
                if why:
                    fail("%s: %s" % (where, why))
        if "last" in exp:
            if not recs:
                fail("%s: the fake received no request" % where)
            why = match(lower_headers(exp["last"]), recs[-1], "upstream[last]")
            if why:
                fail("%s: %s; all: %s" % (where, why, summary))
        for want in exp.get("contains", []):
            if not any(match(lower_headers(want), r) is None for r in recs):
                fail("%s: no upstream request matches %s; got %s" % (where, short(want), summary))
        for want in exp.get("not_contains", []):
            if any(match(lower_headers(want), r) is None for r in recs):
                fail("%s: an upstream request matches %s; got %s" % (where, short(want), summary))

    def check_upstream_open(self, want, where):
        """Established connections from the gateway to the fake match want
        within 2 s (a cancelled attempt's connection is closed)."""
        deadline = time.time() + 2.0
        while True:
            n = established_to(self.stack.fake_port)
            why = match(want, n, "open connections")
            if why is None:
                return
            if time.time() > deadline:
                fail("%s: %d connection(s) to the fake open: %s" % (where, n, why))
            time.sleep(0.05)

    def check_upstream_closed(self, within_ms, where):
        """No established TCP connection from the gateway to the fake."""
        deadline = time.time() + within_ms / 1000.0
        while True:
            n = established_to(self.stack.fake_port)
            if n == 0:
                return
            if time.time() > deadline:
                fail("%s: %d connection(s) to the fake still open %d ms after the client left"
                     % (where, n, within_ms))
            time.sleep(0.05)

    def note_baseline(self):
        """The gateway's connections and files, and its memory, once it
        serves, before the case's first request."""
        self.fd_base = held_fds(self.stack.relay.pid)
        self.rss_base_kb = proc_status_kb(self.stack.relay.pid, "VmRSS")

    def check_fds(self):
        """No connection is left behind: the fake has no answer under way
        (every attempt the gateway gave up on was closed), and once the fake
        closes its idle keep-alive connections, the gateway holds the TCP
        connections and files it held before the case, no more."""
        st = self.stack
        deadline = time.time() + 3
        while True:
            busy = st.fake_connections()["busy"]
            if busy == 0:
                break
            if time.time() > deadline:
                fail("fds: %d connection(s) to the fake still wait for an answer 3 s "
                     "after the case: an attempt given up on was not closed" % busy)
            time.sleep(0.05)
        st.fake_drop()
        deadline = time.time() + 3
        while True:
            now = held_fds(st.relay.pid)
            if len(now) <= len(self.fd_base):
                return
            if time.time() > deadline:
                extra = sorted("%d: %s" % (fd, what) for fd, what in now.items()
                               if self.fd_base.get(fd) != what)
                fail("fds: the gateway holds %d connections and files, %d before the "
                     "case; not there before: %s" % (len(now), len(self.fd_base), extra[:8]))
            time.sleep(0.05)

    def check_memory(self):
        """The gateway's peak resident memory grew by at most the case's
        bound over its memory before the case (memory: {peak_mb: M})."""
        want = self.case.get("memory")
        if not want:
            return
        peak = proc_status_kb(self.stack.relay.pid, "VmHWM")
        grown = (peak - self.rss_base_kb) / 1024.0
        self.say("memory: peak %.1f MB over the %.1f MB before the case"
                 % (grown, self.rss_base_kb / 1024.0))
        why = match(want.get("peak_mb"), round(grown, 1), "peak growth (MB)")
        if why:
            fail("memory: %s" % why)

    def check_rows(self):
        """Each request has exactly one row in the request log, with the
        status its client saw (499 for a client that left), and the rows a
        case expects (expect: {row: {...}}) match."""
        store = self.stack.store()
        if self.case.get("rows") is False or not (
                store.startswith("sqlite:") or store.startswith("postgres")):
            return
        logged = [(rid, status) for rid, status, logged in self.request_ids if logged]
        rows = read_rows(store, [rid for rid, _ in logged])
        for rid, status in logged:
            got = rows.get(rid, [])
            if len(got) != 1:
                fail("the request log has %d rows for request %s (status %s), "
                     "expected 1" % (len(got), rid, status))
            row = got[0]
            left = row["status"] == 499 and row.get("client_gone")
            if row["status"] != status and not left:
                fail("the request log says status %s for request %s, the client got %s"
                     % (row["status"], rid, status))
        for rid, want, where in self.row_expect:
            why = match(want, rows[rid][0], "row")
            if why:
                fail("%s: request log: %s; the row: %s" % (where, why, short(rows[rid][0], 900)))

    def check_log(self):
        text = self.stack.relay.output()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        san = [ln for ln in lines if SANITIZER.search(ln)]
        if san:
            all_lines = text.splitlines()
            fail("sanitizer report in the relay's output:\n%s" % "\n".join(
                all_lines[all_lines.index(san[0]):][:14]))
        objs = []
        for ln in lines:
            try:
                o = json.loads(ln)
            except ValueError:
                fail("relay log line is not JSON: %r" % ln[:200])
            if not isinstance(o, dict):
                fail("relay log line is not a JSON object: %r" % ln[:200])
            objs.append((ln, o))
        for secret, what in ((self.stack.relay_key, "the client's API key"),
                             (self.stack.fake_key, "the provider's API key"),
                             (self.stack.prompt, "prompt text")):
            for ln in lines:
                if secret in ln:
                    fail("relay log contains %s: %r" % (what, ln[:300]))
        ids = [rid for rid, _, _ in self.request_ids]
        dups = sorted({i for i in ids if ids.count(i) > 1})
        if dups:
            fail("x-request-id values repeat across responses: %s" % dups[:3])
        # log.request applies to the case's own requests, not to the
        # normal completion of `after:` that ends every case.
        own = {rid for rid, _, _ in self.request_ids[:self.case_requests]}
        if self.case.get("log", {}).get("per_request", True):
            for rid, status, logged in self.request_ids:
                if not logged:
                    continue
                access = [o for ln, o in objs if rid in ln and is_access_line(o)]
                if len(access) == 1:
                    got = access[0].get("status", access[0].get("http_status"))
                    # A client that left mid-stream saw 200 in the head; the
                    # log says 499 (client closed request), as nginx does.
                    left = got == 499 and access[0].get("client_gone") is True
                    if got is not None and got != status and not left:
                        fail("relay log says status %s for request %s, the client got %s"
                             % (got, rid, status))
                want = self.case.get("log", {}).get("request")
                if len(access) == 1 and want is not None and rid in own:
                    why = match(want, access[0])
                    if why is not None:
                        fail("relay log line of request %s: %s" % (rid, why))
                if len(access) != 1:
                    mentions = [ln for ln, o in objs if rid in ln]
                    ids = [o.get("request_id", o.get("id")) for ln, o in objs
                           if is_access_line(o)]
                    fail("relay log has %d request lines for x-request-id %s (status %s), "
                         "expected 1; lines naming it: %s; request ids in the log: %s"
                         % (len(access), rid, status, mentions[:4], ids[:6]))


def held_fds(pid):
    """The descriptors of pid that a request may leave behind: TCP sockets
    and files. Pipes, eventfds, epoll and socketpairs belong to the event
    loops and libcurl, made once per worker (the second worker may still be
    making them when the first answers /healthz)."""
    return {fd: what for fd, what in open_fds(pid).items()
            if what.startswith("socket ") or
            (what.startswith("/") and not what.startswith("/dev/"))}


def proc_status_kb(pid, field):
    """A kB figure of /proc/PID/status (VmRSS, VmHWM), 0 if unreadable."""
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def connect(port, timeout, where):
    try:
        return Conn(port, timeout=timeout)
    except OSError as e:
        fail("%s: cannot connect to the relay: %s" % (where, e))


FAKE_VOCAB = (
    "the quick brown fox jumps over lazy dog relay routes every prompt to a "
    "model that is fast and cheap tokens stream back as they land cache hits "
    "cost nothing keys have limits which hold across all nodes latency stays "
    "low while quality remains high we ship it today with care for users who "
    "need answers in time at scale on one small box").split()


def fake_words(prompt, n):
    """The fake's text answer of n tokens to the last user message prompt
    (docs/fakeprov.md, Deterministic text)."""
    def fnv1a(h, data):
        for b in data:
            h ^= b
            h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        return h
    seed = fnv1a(14695981039346656037, prompt.encode())
    return "".join(FAKE_VOCAB[fnv1a(seed, i.to_bytes(4, "little")) % 64] + " "
                   for i in range(n))


def expand(v):
    """Expands generators in a step: {$repeat: TEXT, times: N} -> a string."""
    if isinstance(v, dict):
        if "$repeat" in v:
            return v["$repeat"] * v["times"]
        return {k: expand(x) for k, x in v.items()}
    if isinstance(v, list):
        return [expand(x) for x in v]
    return v


def is_access_line(o):
    """A request's log line: it names an HTTP status."""
    return any(k in o for k in ("status", "http_status", "status_code"))


def lower_headers(want):
    if isinstance(want, dict) and isinstance(want.get("headers"), dict):
        want = dict(want)
        want["headers"] = {k.lower(): v for k, v in want["headers"].items()}
    return want


def normalise_record(r):
    """The fake's record of one request as {method, path, headers, body}."""
    out = dict(r) if isinstance(r, dict) else {"raw": r}
    h = out.get("headers") or {}
    if isinstance(h, list):
        h = {(x[0] if isinstance(x, list) else x.get("name")).lower():
             (x[1] if isinstance(x, list) else x.get("value")) for x in h}
    out["headers"] = {k.lower(): v for k, v in h.items()}
    out.setdefault("path", out.get("url") or out.get("target"))
    body = out.get("body", out.get("json"))
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            pass
    out["body"] = body
    return out


def established_to(port):
    """Counts ESTABLISHED TCP connections whose remote port is port."""
    return sum(1 for _, remote, state in tcp_sockets().values()
               if state == "ESTABLISHED" and remote == port)


def after_checks(ctx):
    ctx.case_requests = len(ctx.request_ids)
    after = ctx.case.get("after", {}) or {}
    st = ctx.stack
    if after.get("healthz", True):
        r = ctx.do_request({"method": "GET", "path": "/healthz", "auth": None}, "after: GET /healthz")
        ctx.check_response({"status": 200, "json": {"status": "ok"}}, r, "after: GET /healthz")
    if after.get("completion", True):
        body = {"model": after.get("model", "test-model"),
                "messages": [{"role": "user", "content": "after " + st.prompt}]}
        w = "after: a normal completion"
        r = ctx.do_request({"body": body}, w)
        ctx.check_response({"status": 200, "json": {
            "object": "chat.completion",
            "choices": [{"message": {"role": "assistant", "content": {"$regex": "."}}}]}},
            r, w)
    ctx.check_alive("after the follow-up checks")


def run_case(path, verbose=0):
    """Runs one case file; raises CaseFailure on the first failed check."""
    case = load_case(path)
    steps = case_steps(case)
    stack = Stack(case.get("config"))
    ctx = Ctx(stack, case, verbose)
    try:
        ctx.say("tmp %s, relay :%d, fake :%d" % (stack.tmp, stack.relay_port, stack.fake_port))
        ctx.note_baseline()
        for i, step in enumerate(steps):
            ctx.run_step(step, "step %d" % (i + 1) if len(steps) > 1 else "request")
        if case.get("upstream"):
            ctx.check_upstream(ctx.v(case["upstream"]))
        if not ctx.exited:
            after_checks(ctx)
            ctx.check_memory()
            if case.get("fds", True):
                ctx.check_fds()
        code = stack.relay.stop()
        if code is not None and code < 0 and code != -signal.SIGKILL:
            fail("relay died of signal %d when stopped; its log ends:\n%s"
                 % (-code, tail(stack.relay.output())))
        ctx.check_log()
        ctx.check_rows()
    except CaseFailure:
        if verbose:
            print("    relay log: %s/relay.log, fake log: %s/fake.log" % (stack.tmp, stack.tmp))
        raise
    finally:
        stack.close()
    return ctx


class SharedGateway:
    """One gateway every test of a script shares, started by the first test
    that runs (a test is called as t(stack, ctx)); its folder is kept when
    a test failed. main() is the script's command line."""

    def __init__(self, config, description):
        self.config = config
        self.description = description
        self.st = None
        self.ctx = None
        self.failed = False
        self.verbose = False

    def start(self):
        if self.st is None:
            self.st = Stack(self.config)
            self.ctx = Ctx(self.st, {"description": self.description},
                           self.verbose)
            self.ctx.note_baseline()
        return self.st, self.ctx

    def run_one(self, t):
        t0 = time.time()
        try:
            t(*self.start())
            print("ok   %s  (%d ms)" % (t.__name__, (time.time() - t0) * 1000),
                  flush=True)
            return True
        except Exception as e:  # noqa: BLE001
            self.failed = True
            print("FAIL %s: %s" % (t.__name__, e), flush=True)
            return False

    def main(self, doc, tests, set_verbose):
        def verbose(on):
            self.verbose = on
            set_verbose(on)
        try:
            return script_main(doc, tests, self.run_one, verbose)
        finally:
            if self.st:
                self.st.close()
                if self.failed:
                    print("   (kept %s)" % self.st.tmp)
                else:
                    shutil.rmtree(self.st.tmp, ignore_errors=True)
