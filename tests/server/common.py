"""Helpers for the `embd serve` integration tests: start the real server on 127.0.0.1 with
--port 0, learn its port from stderr, talk HTTP to it with http.client, stop it with a signal
and check that it exited cleanly without a sanitizer report.

Python standard library + numpy only."""
import atexit
import base64
import http.client
import json
import os
import re
import shutil
import signal as _signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("EMBD_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))


def _find_bin():
    b = os.environ.get("EMBD_BIN")
    if b:
        return b
    for d in ("build", "build-srvtest", "build-dev"):
        p = os.path.join(SOURCE, d, "embd")
        if os.access(p, os.X_OK):
            return p
    sys.exit("EMBD_BIN is not set and no built embd was found")


BIN = _find_bin()
SHARED = os.environ.get("EMBD_SHARED_DIR") or os.path.join(SOURCE, "..", "shared")
MODEL = os.path.join(SHARED, "models", "bge-small-random", "bge-small-random-q8_0.gguf")
MODEL_NAME = "bge-small-random-q8_0"
DIMS = 384
CTX = 512
CLS, SEP = 101, 102

_tmp_root = os.environ.get("EMBD_TEST_TMP")
if _tmp_root:
    os.makedirs(_tmp_root, exist_ok=True)
TMP = tempfile.mkdtemp(prefix="embd-server-", dir=_tmp_root or None)
atexit.register(shutil.rmtree, TMP, True)

# Generous: an ASan build on a busy 2-core machine is slow.
READY_TIMEOUT = float(os.environ.get("EMBD_TEST_READY_TIMEOUT", "120"))
HTTP_TIMEOUT = float(os.environ.get("EMBD_TEST_HTTP_TIMEOUT", "120"))

# What a sanitizer (or glibc) writes when something went wrong in the server process.
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "ThreadSanitizer",
                     "MemorySanitizer", "runtime error:", "SUMMARY: ", "==ERROR", "double free", "corrupted ",
                     "Segmentation fault", "Assertion", "GGML_ASSERT")


def require_model():
    if not os.path.exists(MODEL):
        print(f"shared model missing at {MODEL}")
        sys.exit(1)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def error(self):
        """The {"error": {...}} object of an error response (AssertionError when it is not one)."""
        try:
            j = self.json()
        except ValueError:
            raise AssertionError(f"status {self.status}: body is not JSON: {self.body[:300]!r}")
        if not (isinstance(j, dict) and isinstance(j.get("error"), dict)):
            raise AssertionError(f"status {self.status}: not an error body: {self.body[:300]!r}")
        e = j["error"]
        if not isinstance(e.get("type"), str) or not isinstance(e.get("message"), str) or not e["message"]:
            raise AssertionError(f"error without type/message: {e}")
        return e

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def _read_response(r):
    body = r.read()
    return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, body)


def request(port, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT, conn=None):
    """One HTTP request. body: bytes, str, or any JSON value (serialised). Opens (and closes) its
    own connection unless conn is given."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=h)
        return _read_response(c.getresponse())
    finally:
        if own:
            c.close()


def raw_exchange(port, data, timeout=HTTP_TIMEOUT, shut_write=False):
    """Sends raw bytes on a fresh socket and returns everything the server sends back until it
    closes the connection (or until one full response with Content-Length has arrived)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
            head, sep, rest = out.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m and len(rest) >= int(m.group(1)):
                    break
        return out
    finally:
        s.close()


def parse_raw_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return Response(status, headers, body)


class Server:
    """`embd serve` on 127.0.0.1, any free port. stderr is collected by a reader thread.
    insecure: pass --insecure (the server refuses to start without auth otherwise); tests of auth
    itself pass insecure=False and their own --api-keys-file / --hmac-secret-file. headers: sent
    with every request made through get/post and the readiness probe (e.g. a bearer key)."""

    def __init__(self, *args, env=None, model=MODEL, threads=2, wait=True, insecure=True, headers=None):
        self.args = ["serve", "--model", model, "--host", "127.0.0.1", "--port", "0", "--threads", str(threads),
                     *(["--insecure"] if insecure else []), *args]
        self.headers = dict(headers or {})
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("EMBD_") and k not in ("EMBD_BIN", "EMBD_SOURCE_DIR", "EMBD_SHARED_DIR", "EMBD_TEST_TMP"):
                del e[k]  # a stray EMBD_PORT or EMBD_MAX_ITEMS in the caller's environment must not leak in
        e.update(env or {})
        self.lines = []
        self.port = None
        self.listening = threading.Event()
        self.ready = threading.Event()
        self.closed = threading.Event()
        self._cv = threading.Condition()
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen([BIN, *self.args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=e)
        self._stdout = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._out_reader = threading.Thread(target=lambda: self._stdout.append(self.proc.stdout.read()), daemon=True)
        self._out_reader.start()
        if wait:
            self.wait_ready()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
            m = re.search(r"embd: listening on http://[^ ]*:(\d+) ", line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self.listening.set()
            m = re.search(r"embd: ready: .* on http://[^ ]*:(\d+)$", line)
            if m:
                if self.port is None:
                    self.port = int(m.group(1))
                    self.listening.set()
                elif int(m.group(1)) != self.port:
                    self.lines.append(f"[test] ready port {m.group(1)} != listening port {self.port}")
                self.ready.set()
        self.closed.set()
        with self._cv:
            self._cv.notify_all()

    @property
    def stderr(self):
        with self._cv:
            return "\n".join(self.lines)

    def wait_line(self, pattern, timeout=READY_TIMEOUT):
        """Blocks until a stderr line matches pattern (regex); returns it, or None at timeout/exit."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self._cv:
            while True:
                for l in self.lines:
                    if rx.search(l):
                        return l
                left = end - time.monotonic()
                if left <= 0 or self.closed.is_set():
                    return None
                self._cv.wait(min(left, 0.5))

    def wait_listening(self, timeout=READY_TIMEOUT):
        end = time.monotonic() + timeout
        while not self.listening.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"server never said 'listening' (rc={self.proc.poll()}):\n{self.stderr}")
        return self.port

    def wait_ready(self, timeout=READY_TIMEOUT):
        end = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > end:
                rc = self.proc.poll()
                self.kill()
                raise AssertionError(f"server not ready (rc={rc}) after {timeout} s:\n{self.stderr}")
        r = request(self.port, "GET", "/health", headers=self.headers)
        if r.status != 200 or r.json() != {"status": "ok"}:
            self.kill()
            raise AssertionError(f"/health after ready: {r}")
        return self.port

    def get(self, path, **kw):
        kw["headers"] = {**self.headers, **(kw.get("headers") or {})}
        return request(self.port, "GET", path, **kw)

    def post(self, path, body=None, **kw):
        kw["headers"] = {**self.headers, **(kw.get("headers") or {})}
        return request(self.port, "POST", path, body, **kw)

    def send_signal(self, sig=_signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=120):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server did not exit within {timeout} s:\n{self.stderr}")
        self._reader.join(10)
        self._out_reader.join(10)
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()

    def stop(self, sig=_signal.SIGTERM, timeout=120):
        """Signal, wait, and assert a clean exit: status 0, 'stopped', no sanitizer report."""
        if self.proc.poll() is None:
            self.send_signal(sig)
        rc = self.wait_exit(timeout)
        self.assert_clean(rc)
        return rc

    def assert_clean(self, rc, expect_rc=0, expect_stopped=True):
        err = self.stderr
        bad = [m for m in SANITIZER_MARKERS if m in err]
        if bad:
            raise AssertionError(f"server stderr has a sanitizer/crash report ({bad}):\n{err[-20000:]}")
        if rc != expect_rc:
            raise AssertionError(f"server exit status {rc}, expected {expect_rc}:\n{err[-5000:]}")
        if expect_stopped and not re.search(r"(?m)^embd: stopped$", err):
            raise AssertionError(f"no 'embd: stopped' on stderr:\n{err[-5000:]}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.wait_exit(30)
            except AssertionError:
                pass

    # ---- /metrics ------------------------------------------------------------------------
    def metrics(self):
        r = self.get("/metrics")
        if r.status != 200:
            raise AssertionError(f"/metrics: {r}")
        return parse_metrics(r.body.decode())

    def settled_metrics(self, timeout=10):
        """/metrics once the request counters (but /metrics' own) stop moving: requests answered
        just before are counted a moment after their client read the answer."""
        def key(m):
            return {k: v for k, v in m.items()
                    if k[0] in ("embd_requests_total", "embd_input_tokens_total", "embd_batches_total")
                    and ("route", "/metrics") not in k[1]}
        end = time.monotonic() + timeout
        prev = self.metrics()
        while True:
            time.sleep(0.05)
            cur = self.metrics()
            if key(cur) == key(prev) or time.monotonic() > end:
                return cur
            prev = cur

    def wait_metrics(self, pred, timeout=30):
        """Polls /metrics until pred(metrics) holds (or timeout); returns the last metrics."""
        end = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if pred(m) or time.monotonic() > end:
                return m
            time.sleep(0.02)

    def wait_metric(self, name, labels=None, at_least=None, timeout=30, pred=None):
        """Polls /metrics until sample (name, labels) reaches at_least (or pred(value) holds);
        returns the last metrics dict. The request that finished last may be counted a moment
        after its client read the answer, hence the polling."""
        end = time.monotonic() + timeout
        while True:
            m = self.metrics()
            v = metric(m, name, labels)
            if (pred(v) if pred else v >= at_least):
                return m
            if time.monotonic() > end:
                return m
            time.sleep(0.02)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text -> {(name, frozenset(labels.items())): value}. Raises on a malformed line."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError(f"malformed metrics line: {line!r}")
        labels = frozenset(_LABEL.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric(m, name, labels=None):
    """One sample's value, 0 when absent."""
    return m.get((name, frozenset((labels or {}).items())), 0.0)


def requests_total(m, route, status):
    return metric(m, "embd_requests_total", {"route": route, "status": str(status)})


# ---- vectors ---------------------------------------------------------------------------
def vec(x):
    return np.asarray(x, dtype=np.float64)


def unit(v):
    v = vec(v)
    return v / np.linalg.norm(v)


def cosine(a, b):
    a, b = vec(a), vec(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def b64_floats(s):
    raw = base64.b64decode(s, validate=True)
    assert len(raw) % 4 == 0, len(raw)
    return np.frombuffer(raw, dtype="<f4").astype(np.float64)


def long_text(n_words, seed=0):
    """A text of about n_words WordPiece tokens (common English words, one token each)."""
    words = ("the quick brown fox jumps over lazy dog and then runs into forest where many old trees "
             "grow near river bank under blue sky with white clouds").split()
    return " ".join(words[(i * 7 + seed) % len(words)] for i in range(n_words))


def run_threads(fn, args_list):
    """Runs fn(*args) in one thread each; returns the results in order (exceptions as values)."""
    out = [None] * len(args_list)

    def wrap(i, a):
        try:
            out[i] = fn(*a)
        except BaseException as ex:  # noqa: BLE001 - reported by the caller
            out[i] = ex

    ts = [threading.Thread(target=wrap, args=(i, a), daemon=True) for i, a in enumerate(args_list)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(HTTP_TIMEOUT + 30)
    return out


def main(label):
    """Runs the calling file's unittest cases (after checking the model exists) and exits 0/1."""
    import sys
    import time
    import unittest
    require_model()
    t0 = time.monotonic()
    prog = unittest.main(module="__main__", exit=False, verbosity=2)
    print(f"{label} tests: {time.monotonic() - t0:.1f} s")
    sys.exit(0 if prog.result.wasSuccessful() else 1)
