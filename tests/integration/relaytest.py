"""relaytest - the library behind tests/integration/run.py and tests/e2e.

It starts the fake provider and the gateway on free ports with a config
written into a temporary directory, speaks HTTP/1.1 over raw sockets (so a
case can send malformed, pipelined or slow requests), parses SSE, matches
JSON subsets and runs one declarative case file (see README.md beside this
file for the format).

Read run_case() first.
"""
import copy
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


class CaseFailure(Exception):
    """A check failed; the message says what was expected and what came."""


def fail(msg):
    raise CaseFailure(msg)


def binary(env_name, default):
    """Path of a binary from env (RELAY_BIN / RELAY_FAKE_BIN) or default."""
    p = os.environ.get(env_name) or str(ROOT / default)
    return str(Path(p).resolve())


def relay_bin():
    return binary("RELAY_BIN", "build/relay")


def fake_bin():
    return binary("RELAY_FAKE_BIN", "build/relay-fake")


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def deep_merge(base, over):
    """Returns base with over merged in: dicts recursively, the rest replaced.

    A `models` list is merged by model name: an entry whose name is already
    in base replaces it (fields merged), new names are appended.
    """
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if k == "models" and isinstance(v, list) and isinstance(out.get(k), list):
                out[k] = merge_models(out[k], v)
            elif k in out:
                out[k] = deep_merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


MODEL_DEFAULTS = {
    "provider": "fake",
    "price": {"input": 0.05, "output": 0.08, "cached_input": 0.0},
    "tier": 1,
    "context": 131072,
    "latency": {"ttft_ms": 200, "tokens_per_s": 700},
}


def full_model(m):
    out = copy.deepcopy(MODEL_DEFAULTS)
    out.update(copy.deepcopy(m))
    return out


def merge_models(base, over):
    out = [copy.deepcopy(m) for m in base]
    for m in over:
        for i, b in enumerate(out):
            if b.get("name") == m.get("name"):
                out[i] = deep_merge(b, m)
                break
        else:
            out.append(full_model(m))
    return out


def base_config(relay_port, fake_port):
    """The config every case starts from; a case merges its overrides in."""
    return {
        "listen": "127.0.0.1:%d" % relay_port,
        "workers": 2,
        "log_level": "info",
        "auth": {"keys": ["${RELAY_API_KEY}"]},
        "server": {
            "max_body_bytes": 1048576,
            "max_header_bytes": 16384,
            "read_timeout_ms": 10000,
            "idle_timeout_ms": 10000,
            "shutdown_grace_ms": 5000,
        },
        "upstream": {
            "connect_timeout_ms": 2000,
            "first_byte_timeout_ms": 10000,
            "idle_timeout_ms": 10000,
        },
        "providers": {
            "fake": {
                "kind": "openai",
                "base_url": "http://127.0.0.1:%d/v1" % fake_port,
                "api_key": "${FAKE_API_KEY}",
            }
        },
        "models": [full_model({"name": "test-model",
                                "upstream": "up-basic?ttft_ms=0&tps=0&tokens=12"})],
        "routing": {"defaults": {"max_latency_ms": 2000, "min_quality_tier": 1}},
    }


# ---------------------------------------------------------------- processes

class Proc:
    """A child process whose stderr (and stdout) go to a log file."""

    def __init__(self, name, argv, env, log_path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                  stdout=self.log, stderr=self.log, env=env)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def returncode(self):
        return self.p.poll()

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=8.0):
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.p.kill()
                self.p.wait()
                self.killed = True
        self.log.close()
        return self.p.returncode

    def output(self):
        try:
            return Path(self.log_path).read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""


def wait_port(port, proc, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not proc.alive():
            fail("%s exited with status %s before listening; its output:\n%s"
                 % (proc.name, proc.returncode(), tail(proc.output())))
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
            s.close()
            return
        except OSError:
            time.sleep(0.02)
    fail("%s did not listen on port %d within %.0f s" % (proc.name, port, timeout))


def listening_inodes(port):
    """Inodes of the TCP sockets listening on port (any address)."""
    return {inode for inode, (local, _, state) in tcp_sockets().items()
            if state == "LISTEN" and local == port}


def foreign_listeners(port, pid):
    """Listening sockets on port that pid does not own: with SO_REUSEPORT a
    second server can bind the same port and take part of the traffic."""
    mine = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                mine.add(link[8:-1])
    except OSError:
        return set()
    return listening_inodes(port) - mine


def tail(text, n=20):
    return "\n".join(text.splitlines()[-n:])


class Stack:
    """One fake provider and one gateway, on free ports, in a temp dir."""

    def __init__(self, overrides=None, tmpdir=None, start_relay=True):
        self.tmp = tmpdir or tempfile.mkdtemp(prefix="relaytest-")
        self.relay_key = "rk-test-" + secrets.token_hex(12)
        self.fake_key = "fk-test-" + secrets.token_hex(12)
        self.prompt = "PROMPT-" + secrets.token_hex(6)
        self.fake_port = free_port()
        self.relay_port = free_port()
        self.env = dict(os.environ)
        self.env["RELAY_API_KEY"] = self.relay_key
        self.env["FAKE_API_KEY"] = self.fake_key
        self.env.pop("RELAY_CONFIG", None)
        self.config_path = os.path.join(self.tmp, "relay.yaml")
        self.fake = None
        self.relay = None
        self.start_fake()  # first: its port may change
        self.config = deep_merge(base_config(self.relay_port, self.fake_port),
                                 subst(overrides or {}, self.vars()))
        # Each case its own request log, gone with its temp dir.
        self.config.setdefault("store", "sqlite:" + os.path.join(self.tmp, "relay.db"))
        if start_relay:
            self.start_relay()

    def vars(self):
        return {
            "RELAY_API_KEY": self.relay_key,
            "FAKE_API_KEY": self.fake_key,
            "PROMPT": self.prompt,
            "RELAY_PORT": str(self.relay_port),
            "FAKE_PORT": str(self.fake_port),
            "FAKE_URL": "http://127.0.0.1:%d/v1" % self.fake_port,
            # The request log a case may ask for: PostgreSQL when the
            # environment has one (as scripts/test.sh sets), else SQLite.
            "STORE": pg_url() or "sqlite:" + os.path.join(self.tmp, "relay.db"),
        }

    def start_fake(self):
        for attempt in range(3):
            self._start_fake_once()
            if not foreign_listeners(self.fake_port, self.fake.pid):
                return
            self.fake.stop()
            self.fake_port = free_port()
        fail("port collisions with another server three times in a row")

    def _start_fake_once(self):
        self.fake = Proc("relay-fake",
                         [fake_bin(), "--listen", "127.0.0.1:%d" % self.fake_port,
                          "--require-key", self.fake_key],
                         self.env, os.path.join(self.tmp, "fake.log"))
        wait_port(self.fake_port, self.fake)

    def write_config(self):
        text = yaml.safe_dump(self.config, sort_keys=False)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def start_relay(self):
        """Starts the gateway; when another process turns out to listen on
        its port too (a port picked at the same moment by a concurrent
        run), starts it again on another port."""
        for attempt in range(3):
            self._start_relay_once()
            if not foreign_listeners(self.relay_port, self.relay.pid):
                return
            self.relay.stop()
            self.relay_port = free_port()
            self.config["listen"] = "127.0.0.1:%d" % self.relay_port
        fail("port collisions with another server three times in a row")

    def _start_relay_once(self):
        self.write_config()
        self.relay = Proc("relay",
                          [relay_bin(), "serve", "--config", self.config_path],
                          self.env, os.path.join(self.tmp, "relay.log"))
        wait_port(self.relay_port, self.relay, timeout=15.0)
        # Listening is not yet serving: wait for /healthz.
        deadline = time.time() + 10
        while True:
            try:
                r = http_request(self.relay_port, "GET", "/healthz", auth=None,
                                 timeout=2)
                if r.status == 200:
                    return
            except OSError:
                pass
            if time.time() > deadline:
                fail("relay listens but /healthz never answered 200")
            time.sleep(0.05)

    def fake_requests(self):
        r = http_request(self.fake_port, "GET", "/_fake/requests", auth=None,
                         timeout=5)
        if r.status != 200:
            fail("GET /_fake/requests answered %d" % r.status)
        try:
            data = json.loads(r.body)
        except ValueError:
            fail("GET /_fake/requests is not JSON: %r" % r.body[:200])
        if isinstance(data, dict) and "requests" in data:
            data = data["requests"]
        return data

    def fake_connections(self):
        """{"open": N, "busy": M}: the fake's connections, and those with an
        answer under way (a hung or stalled one the gateway still holds)."""
        r = http_request(self.fake_port, "GET", "/_fake/connections", auth=None,
                         timeout=5)
        if r.status != 200:
            fail("GET /_fake/connections answered %d" % r.status)
        return json.loads(r.body)

    def fake_drop(self):
        """Makes the fake close every other connection: the gateway's pooled
        keep-alive connections see their end and close."""
        r = http_request(self.fake_port, "POST", "/_fake/drop", auth=None,
                         body=b"", timeout=5)
        if r.status != 200:
            fail("POST /_fake/drop answered %d" % r.status)

    def store(self):
        """The gateway's request log: the config's store, as written."""
        return self.config.get("store") or ""

    def fake_reset(self):
        r = http_request(self.fake_port, "POST", "/_fake/reset", auth=None,
                         body=b"", timeout=5)
        if r.status not in (200, 204):
            fail("POST /_fake/reset answered %d" % r.status)

    def close(self):
        codes = {}
        for p in (self.relay, self.fake):
            if p is not None:
                codes[p.name] = p.stop()
        return codes


# ------------------------------------------------- descriptors, rows

def pg_url():
    """DATABASE_URL when it names a PostgreSQL, else None."""
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith("postgres") else None


def tcp_sockets():
    """{inode: (local port, remote port, state)} of every TCP socket."""
    states = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT",
              "0A": "LISTEN", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
              "09": "LAST_ACK", "07": "CLOSE", "0B": "CLOSING",
              "02": "SYN_SENT", "03": "SYN_RECV"}
    out = {}
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(f).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            p = row.split()
            out[p[9]] = (int(p[1].rsplit(":", 1)[1], 16),
                         int(p[2].rsplit(":", 1)[1], 16),
                         states.get(p[3], p[3]))
    return out


def open_fds(pid):
    """{fd: what it is} for process pid; a TCP socket is described by its
    ports and state ("socket 41234->5432 ESTABLISHED")."""
    out = {}
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    socks = None
    for fd in names:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            if socks is None:
                socks = tcp_sockets()
            s = socks.get(link[8:-1])
            if s:
                link = "socket %d->%d %s" % s
        out[int(fd)] = link
    return out


def read_rows(store, ids):
    """{request_id: [row, ...]} of the request log in store (postgres://
    or sqlite:PATH) for the given ids; attempt_log parsed to a list."""
    ids = sorted(set(ids))
    rows = []
    if not ids:
        return {}
    if store.startswith("postgres"):
        sql = ("SELECT row_to_json(r) FROM request_log r WHERE request_id IN (%s)"
               % ",".join("'%s'" % i.replace("'", "") for i in ids))
        r = subprocess.run(["psql", store, "-Atq", "-f", "-"], input=sql,
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            fail("reading the request log: psql: %s" % r.stderr.strip())
        rows = [json.loads(line) for line in r.stdout.splitlines() if line]
    elif store.startswith("sqlite:"):
        import sqlite3
        db = sqlite3.connect(store[len("sqlite:"):])
        db.row_factory = sqlite3.Row
        try:
            got = db.execute("SELECT * FROM request_log WHERE request_id IN (%s)"
                             % ",".join("?" * len(ids)), ids).fetchall()
        except sqlite3.Error as e:
            fail("reading the request log %s: %s" % (store, e))
        finally:
            db.close()
        rows = [dict(x) for x in got]
        for row in rows:
            for k in ("stream", "usage_estimated", "client_gone"):
                if k in row and row[k] in (0, 1):
                    row[k] = bool(row[k])
    else:
        fail("cannot read the request log of store %r" % store)
    out = {}
    for row in rows:
        text = row.get("attempt_log") or ""
        try:
            row["attempt_log"] = json.loads(text) if text else []
        except ValueError:
            fail("request %s: attempt_log is not JSON: %r" % (row["request_id"], text[:200]))
        out.setdefault(row["request_id"], []).append(row)
    return out


# --------------------------------------------------------------------- HTTP

class Response:
    def __init__(self):
        self.status = None
        self.reason = ""
        self.version = ""
        self.headers = []      # [(name-lowercase, value)]
        self.body = b""
        self.elapsed_ms = None  # from the last byte sent to the end of body
        self.first_byte_ms = None
        self.truncated = False  # the body ended before its framing said
        self.closed = False     # the server closed after this response

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            fail("body is not JSON (status %s): %r" % (self.status, self.body[:300]))

    def describe(self):
        return "%s %s, headers %s, body %r" % (
            self.status, self.reason, dict(self.headers), self.body[:400])


class Conn:
    """A client connection that reads responses with their framing.

    Bytes read wait in self.buf from self.pos on; reading moves pos and
    compacts now and then, so a long stream costs linear time."""

    def __init__(self, port, timeout=15.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.eof = False
        self.last_send = time.monotonic()
        self.send_error = None

    def send(self, data):
        """Sends data; a peer that already closed is noted, not raised: the
        response it sent before closing is still to be read."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            self.send_error = e
        self.last_send = time.monotonic()

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv(self):
        """One read of the socket (a subclass may pace it)."""
        return self.sock.recv(65536)

    def _fill(self):
        if self.eof:
            return False
        try:
            d = self._recv()
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            return False
        if self.pos > 1 << 20:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += d
        return True

    def _take(self, n):
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += len(out)
        return out

    def _rest(self):
        """Takes every byte read and not yet consumed."""
        out = bytes(self.buf[self.pos:])
        self.buf = bytearray()
        self.pos = 0
        return out

    def pending(self):
        """The bytes read and not yet consumed (a copy)."""
        return bytes(self.buf[self.pos:])

    def _read_until(self, sep):
        seen = 0  # bytes after pos already searched (_fill may compact)
        while True:
            i = self.buf.find(sep, self.pos + seen)
            if i >= 0:
                out = bytes(self.buf[self.pos:i])
                self.pos = i + len(sep)
                return out
            seen = max(0, len(self.buf) - self.pos - len(sep) + 1)
            if not self._fill():
                return None

    def _read_n(self, n):
        while len(self.buf) - self.pos < n:
            if not self._fill():
                return self._rest()
        return self._take(n)

    def closed_by_peer(self, timeout):
        """(closed, extra): closed is True when the server closes (EOF)
        within timeout seconds; extra is what it sent before closing."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
            closed = True
        except socket.timeout:
            closed = False
        return closed, self._rest()

    def read_response(self, method="GET", on_data=None):
        """Reads one response; on_data(bytes_so_far) may return True to stop.

        Returns None when the connection closed before a status line.
        """
        r = Response()
        head = self._read_until(b"\r\n\r\n")
        if head is None:
            if self.pending():
                fail("connection closed inside a response head: %r" % self.pending()[:200])
            return None
        r.first_byte_ms = (time.monotonic() - self.last_send) * 1000
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            fail("bad status line %r" % lines[0])
        r.version, r.status, r.reason = m.group(1), int(m.group(2)), m.group(3) or ""
        for line in lines[1:]:
            if ":" not in line:
                fail("bad header line %r" % line)
            k, v = line.split(":", 1)
            r.headers.append((k.strip().lower(), v.strip()))
        if 100 <= r.status < 200 or method == "HEAD" or r.status in (204, 304):
            return r
        te = (r.header("transfer-encoding") or "").lower()
        cl = r.header("content-length")
        body = bytearray()
        stopped = False
        if "chunked" in te:
            while True:
                size_line = self._read_until(b"\r\n")
                if size_line is None:
                    r.truncated = True
                    break
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    fail("bad chunk size line %r" % size_line[:200])
                if size == 0:
                    # trailers, then an empty line
                    while True:
                        t = self._read_until(b"\r\n")
                        if not t:
                            break
                    break
                data = self._read_n(size)
                if len(data) < size:
                    body += data
                    r.truncated = True
                    break
                body += data
                crlf = self._read_n(2)
                if crlf != b"\r\n":
                    fail("chunk not followed by CRLF")
                if on_data and on_data(body):
                    stopped = True
                    break
        elif cl is not None:
            n = int(cl)
            body = self._read_n(n)
            if len(body) < n:
                r.truncated = True
        else:
            while self._fill():
                if on_data and on_data(self.pending()):
                    stopped = True
                    break
            body = self._rest()
        r.body = bytes(body)
        r.stopped = stopped
        r.elapsed_ms = (time.monotonic() - self.last_send) * 1000
        conn_hdr = (r.header("connection") or "").lower()
        r.closed = conn_hdr == "close"
        return r


def build_request(port, method="POST", path="/v1/chat/completions",
                  headers=None, body=None, auth="default", key=None,
                  chunked=None, host=True):
    """Serialises a request; returns (head bytes, body bytes).

    body: dict/list (sent as JSON), str (sent as UTF-8), bytes (as is).
    auth: "default" (Bearer key), None (no Authorization) or a full value.
    chunked: list of body pieces sent with Transfer-Encoding: chunked.
    """
    hdrs = []
    if host:
        hdrs.append(("Host", "127.0.0.1:%d" % port))
    if auth == "default":
        hdrs.append(("Authorization", "Bearer %s" % key))
    elif auth:
        hdrs.append(("Authorization", auth))
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode("utf-8")
    given = {k.lower() for k, _ in (headers or [])}
    if body is not None or chunked is not None:
        if "content-type" not in given:
            hdrs.append(("Content-Type", "application/json"))
    if chunked is not None:
        if "transfer-encoding" not in given:
            hdrs.append(("Transfer-Encoding", "chunked"))
        out = b""
        for piece in chunked:
            if isinstance(piece, (dict, list)):
                piece = json.dumps(piece).encode()
            elif isinstance(piece, str):
                piece = piece.encode("utf-8")
            out += b"%x\r\n%s\r\n" % (len(piece), piece)
        body = out + b"0\r\n\r\n"
    elif body is not None and "content-length" not in given:
        hdrs.append(("Content-Length", str(len(body))))
    hdrs.extend(headers or [])
    head = "%s %s HTTP/1.1\r\n" % (method, path)
    head += "".join("%s: %s\r\n" % (k, v) for k, v in hdrs)
    head += "\r\n"
    return head.encode("latin-1"), body or b""


def http_request(port, method, path, headers=None, body=None, auth="default",
                 key=None, timeout=15.0, on_data=None):
    c = Conn(port, timeout=timeout)
    try:
        head, b = build_request(port, method, path, headers, body, auth, key)
        c.send(head + b)
        r = c.read_response(method, on_data=on_data)
        if r is None:
            fail("%s %s: connection closed without a response" % (method, path))
        return r
    finally:
        c.close()


# ---------------------------------------------------------------------- SSE

def parse_sse(body):
    """Returns the list of events: "[DONE]", a parsed JSON object, or
    {"_unparsed": text} for a data field that is not JSON."""
    text = body.decode("utf-8", "replace").replace("\r\n", "\n")
    events = []
    for block in text.split("\n\n"):
        data = []
        for line in block.split("\n"):
            if line.startswith("data:"):
                v = line[5:]
                data.append(v[1:] if v.startswith(" ") else v)
        if not data:
            continue
        d = "\n".join(data)
        if d.strip() == "[DONE]":
            events.append("[DONE]")
            continue
        try:
            events.append(json.loads(d))
        except ValueError:
            events.append({"_unparsed": d})
    return events


def sse_text(events):
    out = []
    for e in events:
        if isinstance(e, dict):
            for ch in e.get("choices") or []:
                c = (ch.get("delta") or {}).get("content")
                if c:
                    out.append(c)
    return "".join(out)


# ----------------------------------------------------------------- matching

TYPES = {
    "string": str, "int": int, "number": (int, float), "object": dict,
    "array": list, "bool": bool, "null": type(None),
}


def match(exp, act, path="$"):
    """Returns None when act matches the expected subset exp, else why not.

    Dicts match as subsets; lists match element-wise with equal length;
    scalars by equality. Special dicts: {$regex: R}, {$type: T},
    {$absent: true}, {$present: true}, {$gt: N}, {$ge: N}, {$len: N},
    {$contains: X} (a list with an element matching X), {$json: X} (a string
    holding JSON that matches X), {$any: [X, Y]} (one of them matches).
    """
    if isinstance(exp, dict) and exp and all(k.startswith("$") for k in exp):
        for op, arg in exp.items():
            why = match_op(op, arg, act, path)
            if why:
                return why
        return None
    if isinstance(exp, dict):
        if not isinstance(act, dict):
            return "%s: expected an object, got %s" % (path, short(act))
        for k, v in exp.items():
            if isinstance(v, dict) and v.get("$absent"):
                if k in act:
                    return "%s.%s: expected absent, got %s" % (path, k, short(act[k]))
                continue
            if k not in act:
                return "%s.%s: missing (have keys %s)" % (path, k, sorted(act))
            why = match(v, act[k], "%s.%s" % (path, k))
            if why:
                return why
        return None
    if isinstance(exp, list):
        if not isinstance(act, list):
            return "%s: expected an array, got %s" % (path, short(act))
        if len(exp) != len(act):
            return "%s: expected %d elements, got %d: %s" % (
                path, len(exp), len(act), short(act))
        for i, (e, a) in enumerate(zip(exp, act)):
            why = match(e, a, "%s[%d]" % (path, i))
            if why:
                return why
        return None
    if exp != act or type(exp) is bool and type(act) is not bool:
        return "%s: expected %s, got %s" % (path, short(exp), short(act))
    return None


def match_op(op, arg, act, path):
    if op == "$regex":
        if not isinstance(act, str) or not re.search(arg, act):
            return "%s: expected to match /%s/, got %s" % (path, arg, short(act))
    elif op == "$type":
        t = TYPES[arg]
        if not isinstance(act, t) or (arg in ("int", "number") and isinstance(act, bool)):
            return "%s: expected a %s, got %s" % (path, arg, short(act))
    elif op == "$present":
        pass
    elif op == "$absent":
        return "%s: expected absent, got %s" % (path, short(act))
    elif op in ("$gt", "$ge", "$lt", "$le"):
        if not isinstance(act, (int, float)) or isinstance(act, bool):
            return "%s: expected a number, got %s" % (path, short(act))
        ok = {"$gt": act > arg, "$ge": act >= arg, "$lt": act < arg,
              "$le": act <= arg}[op]
        if not ok:
            return "%s: expected %s %s, got %s" % (path, op[1:], arg, act)
    elif op == "$len":
        if not hasattr(act, "__len__") or len(act) != arg:
            return "%s: expected length %s, got %s" % (path, arg, short(act))
    elif op == "$contains":
        if not isinstance(act, list) or not any(match(arg, a) is None for a in act):
            return "%s: no element matches %s in %s" % (path, short(arg), short(act))
    elif op == "$json":
        try:
            v = json.loads(act)
        except (TypeError, ValueError):
            return "%s: expected a JSON string, got %s" % (path, short(act))
        return match(arg, v, path + "<json>")
    elif op == "$any":
        whys = [match(a, act, path) for a in arg]
        if all(whys):
            return " or ".join(whys)
    else:
        return "%s: unknown matcher %s in the case file" % (path, op)
    return None


def short(v, n=300):
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[:n] + "..."


def check_headers(exp, resp, where):
    """exp maps a header name to a value (equal), or {present|absent|regex}."""
    for name, want in (exp or {}).items():
        got = resp.header(name)
        if isinstance(want, dict):
            if want.get("absent"):
                if got is not None:
                    fail("%s: header %s should be absent, is %r" % (where, name, got))
                continue
            if got is None:
                fail("%s: header %s missing; headers are %s"
                     % (where, name, dict(resp.headers)))
            if "regex" in want and not re.search(want["regex"], got):
                fail("%s: header %s is %r, expected to match /%s/"
                     % (where, name, got, want["regex"]))
            if "equal" in want and got != str(want["equal"]):
                fail("%s: header %s is %r, expected %r" % (where, name, got, want["equal"]))
        else:
            if got is None:
                fail("%s: header %s missing (expected %r); headers are %s"
                     % (where, name, want, dict(resp.headers)))
            if got != str(want):
                fail("%s: header %s is %r, expected %r" % (where, name, got, str(want)))


def subst(v, vars_):
    """Replaces ${NAME} for the names in vars_ in every string of v."""
    if isinstance(v, str):
        return re.sub(r"\$\{(\w+)\}",
                      lambda m: vars_.get(m.group(1), m.group(0)), v)
    if isinstance(v, dict):
        return {subst(k, vars_): subst(x, vars_) for k, x in v.items()}
    if isinstance(v, list):
        return [subst(x, vars_) for x in v]
    return v


# ------------------------------------------------------------ test scripts

def script_main(doc, tests, run_one, set_verbose):
    """The command line of a test_*.py script: [-v] [-k NAME]; runs each
    test whose name contains NAME with run_one(t) -> bool (None: skipped,
    not counted), prints `N passed, N failed` and returns the exit status.
    set_verbose(bool) is called first."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("-k", default="", help="run tests whose name contains this")
    args = ap.parse_args()
    set_verbose(args.verbose)
    os.environ.setdefault("RELAY_MIGRATIONS",
                          os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "..", "..", "migrations"))
    results = [run_one(t) for t in tests if args.k in t.__name__]
    results = [ok for ok in results if ok is not None]
    passed = sum(1 for ok in results if ok)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if passed == len(results) else 1
