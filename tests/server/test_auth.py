"""`embd serve` security over real HTTP: API keys and scopes (401/403/200 matrix), refusal before
the body is read, HMAC-signed requests (good, tampered, stale, replayed), per-key rate limits (429
+ Retry-After), SIGHUP reload while a keep-alive connection stays usable, the slowloris cut-off,
connection/header/JSON-depth limits, and the refusal to start without authentication."""
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import (BIN, MODEL, SANITIZER_MARKERS, SOURCE, TMP, Server, parse_raw_response,  # noqa: E402
                    raw_exchange, request)

_spec = importlib.util.spec_from_file_location("embd_sign", os.path.join(SOURCE, "tools", "embd-sign.py"))
embd_sign = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(embd_sign)

ALICE = "alice-key-0123456789abcdef"      # embed, rerank
OPS = "ops-key-0123456789abcdef0000"      # admin
ALL = "all-key-0123456789abcdef00000"     # *
SLOW = "slow-key-0123456789abcdef0000"    # embed, 1 request per 20 s
TOKENS = "tok-key-0123456789abcdef00000"  # embed, 60 input tokens/min
NEWKEY = "new-key-0123456789abcdef00000"
SECRET = b"s3cret-0123456789abcdef-0123456789"

EMBED = {"input": "hello world"}  # OpenAI shape, /v1/embeddings
TEI = {"inputs": "hello world"}   # /embed


def bearer(k):
    return {"Authorization": "Bearer " + k}


def write(name, text):
    p = os.path.join(TMP, name)
    with open(p, "w" if isinstance(text, str) else "wb") as f:
        f.write(text)
    return p


def signed(method, path, body, ts=None, secret=SECRET):
    raw = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else (body or b"")
    return raw, embd_sign.headers(secret, method, path, raw, ts)


class Keys(unittest.TestCase):
    """One server with keys and HMAC: the matrix, signatures, rate limits, depth."""

    @classmethod
    def setUpClass(cls):
        keys = write("keys", "\n".join([
            "# name key scopes [limits]",
            f"alice  {ALICE}  embed,rerank",
            f"ops    {OPS}    admin",
            f"all    {ALL}    *",
            f"slow   {SLOW}   embed rps=0.05",
            f"tokens {TOKENS} embed tpm=60",
            ""]))
        secret = write("secret", SECRET + b"\n")
        cls.srv = Server("--api-keys-file", keys, "--hmac-secret-file", secret, insecure=False,
                         headers=bearer(ALL))

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def req(self, method, path, body=None, headers=None, **kw):
        return request(self.srv.port, method, path, body, headers=headers or {}, **kw)

    def assert_error(self, r, status, etype):
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
        self.assertEqual(r.error()["type"], etype, r)
        if status == 401:
            self.assertEqual(r.headers.get("www-authenticate"), 'Bearer realm="embd"', r.headers)
        else:
            self.assertNotIn("www-authenticate", r.headers)

    def test_matrix(self):
        post, get = ("POST", EMBED), ("GET", None)
        cases = [
            # (credentials, method+body, path, status, error type or None)
            (None, post, "/v1/embeddings", 401, "unauthorized"),
            (None, get, "/info", 401, "unauthorized"),
            (None, get, "/health", 401, "unauthorized"),
            (None, get, "/metrics", 401, "unauthorized"),
            (None, get, "/no/such/route", 401, "unauthorized"),  # no route probing without a key
            ("Bearer wrong-key-0123456789abcdef", post, "/v1/embeddings", 401, "unauthorized"),
            ("Basic YWxpY2U6cHc=", post, "/v1/embeddings", 401, "unauthorized"),
            ("Bearer", post, "/v1/embeddings", 401, "unauthorized"),
            ("Bearer " + ALICE + " extra", post, "/v1/embeddings", 401, "unauthorized"),
            ("bearer " + ALICE, post, "/v1/embeddings", 200, None),  # the scheme is case-insensitive
            ("Bearer " + ALICE, ("POST", TEI), "/embed", 200, None),
            ("Bearer " + ALICE, ("POST", {"inputs": "hi"}), "/tokenize", 200, None),
            ("Bearer " + ALICE, ("POST", {"query": "q", "texts": ["a"]}), "/rerank", 400, "not_a_reranker"),
            ("Bearer " + ALICE, get, "/info", 403, "forbidden"),
            ("Bearer " + ALICE, get, "/metrics", 403, "forbidden"),
            ("Bearer " + ALICE, get, "/health", 200, None),  # any valid key
            ("Bearer " + ALICE, get, "/v1/jobs/x", 403, "forbidden"),
            ("Bearer " + ALICE, get, "/v1/collections", 403, "forbidden"),
            ("Bearer " + ALICE, get, "/no/such/route", 404, "not_found"),
            ("Bearer " + OPS, get, "/info", 200, None),
            ("Bearer " + OPS, get, "/metrics", 200, None),
            ("Bearer " + OPS, post, "/v1/embeddings", 403, "forbidden"),
            ("Bearer " + OPS, ("POST", {"text": "hi"}), "/v1/embed/text", 403, "forbidden"),  # CLIP routes
            ("Bearer " + OPS, ("POST", {"image": "x"}), "/v1/embed/image", 403, "forbidden"),
            ("Bearer " + OPS, ("POST", {"images": ["x"]}), "/v1/embed/image-batch", 403, "forbidden"),
            ("Bearer " + ALICE, ("POST", {"text": "hi"}), "/v1/embed/text", 400, "not_a_clip_model"),
            ("Bearer " + OPS, ("POST", {"query": "q", "texts": ["a"]}), "/v1/rerank", 403, "forbidden"),
            ("Bearer " + ALL, post, "/v1/embeddings", 200, None),
            ("Bearer " + ALL, get, "/info", 200, None),
        ]
        for auth, (method, body), path, status, etype in cases:
            with self.subTest(auth=auth, path=path):
                r = self.req(method, path, body, headers={"Authorization": auth} if auth else {})
                if etype:
                    self.assert_error(r, status, etype)
                else:
                    self.assertEqual(r.status, status, r)
        # a key with every scope gets past auth on routes of other helpers' scopes
        r = self.req("GET", "/v1/jobs/does-not-exist", headers=bearer(ALL))
        self.assertNotIn(r.status, (401, 403), r)
        # the 403 names the scope, the 401s never say which key was tried
        r = self.req("GET", "/info", headers=bearer(ALICE))
        self.assertIn("admin", r.error()["message"])
        r = self.req("POST", "/embed", TEI, headers=bearer("wrong-key-0123456789abcdef"))
        self.assertNotIn("wrong-key", r.body.decode())

    def test_info_shows_modes(self):
        j = self.req("GET", "/info", headers=bearer(OPS)).json()
        self.assertEqual(j["auth"], "api_keys+hmac")
        sec = j["security"]
        self.assertEqual(sec["api_keys"], 5)
        self.assertTrue(sec["hmac"])
        self.assertEqual(sec["hmac_window_s"], 300)
        self.assertFalse(sec["public_health"])
        self.assertFalse(sec["public_metrics"])
        for k in ("max_connections", "max_connections_per_ip", "connection_timeout_s", "max_header_bytes",
                  "max_json_depth", "max_payload_bytes", "rate_limit_rps", "rate_limit_tpm"):
            self.assertIn(k, sec)

    def test_unauthenticated_upload_refused_before_body(self):
        # A 10 MB body is announced but never sent: the 401 comes from the headers alone.
        raw = raw_exchange(self.srv.port, b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 10000000\r\n\r\n", timeout=30)
        r = parse_raw_response(raw)
        self.assert_error(r, 401, "unauthorized")
        # the same for a key without the scope: 403 before the body
        raw = raw_exchange(self.srv.port, b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                           + OPS.encode() + b"\r\nContent-Length: 10000000\r\n\r\n", timeout=30)
        self.assert_error(parse_raw_response(raw), 403, "forbidden")

    def test_hmac(self):
        # Identical requests signed in the same second are one signature: each body here is unique.
        n = iter(range(1000))

        def body_():
            return {"input": f"signed request {next(n)}"}

        body, h = signed("POST", "/v1/embeddings", body_())
        r = self.req("POST", "/v1/embeddings", body, headers=h)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json()["data"]), 1)
        # the very same request again: replayed
        r = self.req("POST", "/v1/embeddings", body, headers=h)
        self.assert_error(r, 401, "unauthorized")
        self.assertIn("replayed", r.error()["message"])
        # a GET is signed over the empty body; HMAC callers hold every scope
        _, h = signed("GET", "/info", None)
        self.assertEqual(self.req("GET", "/info", headers=h).status, 200)
        # tampered body, other path, other method, wrong secret
        body, h = signed("POST", "/v1/embeddings", body_())
        self.assert_error(self.req("POST", "/v1/embeddings", body.replace(b"signed", b"SIGNED"), headers=h),
                          401, "unauthorized")
        self.assert_error(self.req("POST", "/tokenize", body, headers=h), 401, "unauthorized")
        body, h = signed("POST", "/v1/embeddings", body_(), secret=b"not-the-secret-0123456789")
        self.assert_error(self.req("POST", "/v1/embeddings", body, headers=h), 401, "unauthorized")
        # stale and future timestamps
        for skew in (-301, 301, -100000):
            body, h = signed("POST", "/v1/embeddings", body_(), ts=int(time.time()) + skew)
            r = self.req("POST", "/v1/embeddings", body, headers=h)
            self.assert_error(r, 401, "unauthorized")
            self.assertIn("stale", r.error()["message"])
        body, h = signed("POST", "/v1/embeddings", body_(), ts=int(time.time()) - 200)  # inside the window
        self.assertEqual(self.req("POST", "/v1/embeddings", body, headers=h).status, 200)
        # malformed headers, one header missing
        body, h = signed("POST", "/v1/embeddings", body_())
        for bad in ({**h, "X-Embd-Signature": h["X-Embd-Signature"][:-2]},
                    {**h, "X-Embd-Signature": "z" * 64},
                    {**h, "X-Embd-Timestamp": "-1"},
                    {**h, "X-Embd-Timestamp": h["X-Embd-Timestamp"] + ".0"},
                    {"X-Embd-Timestamp": h["X-Embd-Timestamp"]},
                    {"X-Embd-Signature": h["X-Embd-Signature"]}):
            self.assert_error(self.req("POST", "/v1/embeddings", body, headers=bad), 401, "unauthorized")
        # the signature refused above in broken forms still works once: failures did not burn it
        self.assertEqual(self.req("POST", "/v1/embeddings", body, headers=h).status, 200)
        # upper-case hex is the same signature: still a replay
        h2 = {**h, "X-Embd-Signature": h["X-Embd-Signature"].upper()}
        self.assert_error(self.req("POST", "/v1/embeddings", body, headers=h2), 401, "unauthorized")
        # routes are not revealed to a forged signature: 401, not 404/405, until it holds
        _, h = signed("GET", "/no/such/route", None)
        self.assert_error(self.req("GET", "/no/such/route", headers={**h, "X-Embd-Signature": "ab" * 32}),
                          401, "unauthorized")
        self.assert_error(self.req("GET", "/no/such/route", headers=h), 404, "not_found")
        _, h = signed("GET", "/v1/embeddings", None)
        self.assert_error(self.req("GET", "/v1/embeddings", headers={**h, "X-Embd-Signature": "ab" * 32}),
                          401, "unauthorized")
        self.assert_error(self.req("GET", "/v1/embeddings", headers=h), 405, "method_not_allowed")
        # signature + key: the key's scopes apply
        _, h = signed("GET", "/info", None)
        self.assert_error(self.req("GET", "/info", headers={**h, **bearer(ALICE)}), 403, "forbidden")

    def test_hmac_reference_client_cli(self):
        # tools/embd-sign.py as documented: sign and send
        sf = os.path.join(TMP, "secret")
        p = subprocess.run([sys.executable, os.path.join(SOURCE, "tools", "embd-sign.py"), "--secret-file", sf,
                            "--url", f"http://127.0.0.1:{self.srv.port}/v1/embeddings", "--data", '{"input": "cli"}'],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(json.loads(p.stdout)["data"][0]["embedding"]), common.DIMS)
        # header mode: the same headers curl would send
        p = subprocess.run([sys.executable, os.path.join(SOURCE, "tools", "embd-sign.py"), "--secret-file", sf,
                            "--path", "/health", "--method", "GET"], capture_output=True, timeout=60, text=True)
        h = dict(line.split(": ", 1) for line in p.stdout.strip().splitlines())
        # (/health: test_hmac signs GET /info, and the same second would make this a replay)
        self.assertEqual(self.req("GET", "/health", headers=h).status, 200)

    def test_rate_limit_requests(self):
        # One request per 20 s (refill timing is unit-tested; a slow CI machine must not matter).
        t0 = time.monotonic()
        rs = [self.req("POST", "/embed", TEI, headers=bearer(SLOW)) for _ in range(3)]
        self.assertEqual(rs[0].status, 200, rs[0])
        if time.monotonic() - t0 < 19:
            for r in rs[1:]:
                self.assert_error(r, 429, "rate_limited")
                self.assertIn("requests", r.error()["message"])
                ra = int(r.headers.get("retry-after"))
                self.assertTrue(1 <= ra <= 20, r.headers)
        # other keys are not affected
        self.assertEqual(self.req("POST", "/embed", TEI, headers=bearer(ALICE)).status, 200)

    def test_rate_limit_tokens(self):
        text = common.long_text(40)  # ~42 tokens with [CLS]/[SEP]; 60 per minute
        r = self.req("POST", "/embed", {"inputs": text}, headers=bearer(TOKENS))
        self.assertEqual(r.status, 200, r)
        r = self.req("POST", "/embed", {"inputs": text}, headers=bearer(TOKENS))
        self.assert_error(r, 429, "rate_limited")
        self.assertIn("input tokens", r.error()["message"])
        ra = int(r.headers["retry-after"])
        self.assertTrue(10 <= ra <= 60, ra)  # about 24 tokens missing at 1 token/s

    def test_json_depth(self):
        deep = "[" * 40 + "1" + "]" * 40
        r = self.req("POST", "/v1/embeddings", '{"input":' + deep + "}", headers=bearer(ALICE))
        self.assert_error(r, 400, "too_deep")
        r = self.req("POST", "/tokenize", '{"inputs":' + "[" * 100000 + "}", headers=bearer(ALICE))
        self.assert_error(r, 400, "too_deep")
        # brackets inside strings do not count
        r = self.req("POST", "/v1/embeddings", {"input": "[" * 100}, headers=bearer(ALICE))
        self.assertEqual(r.status, 200, r)
        # and the server keeps serving
        self.assertEqual(self.req("POST", "/embed", TEI, headers=bearer(ALICE)).status, 200)


class Reload(unittest.TestCase):
    def test_sighup_reload_keeps_connections(self):
        keys = write("reload-keys", f"alice {ALICE} embed\nops {OPS} admin\n")
        srv = Server("--api-keys-file", keys, "--public-health", "--public-metrics", insecure=False)
        try:
            # public flags: /health and /metrics without credentials, /info still needs one
            self.assertEqual(request(srv.port, "GET", "/health").status, 200)
            self.assertEqual(request(srv.port, "GET", "/metrics").status, 200)
            self.assertEqual(request(srv.port, "GET", "/info").status, 401)
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            r = request(srv.port, "POST", "/embed", TEI, headers=bearer(ALICE), conn=conn)
            self.assertEqual(r.status, 200, r)
            sock = conn.sock
            self.assertIsNotNone(sock)
            write("reload-keys", f"# alice removed\nnewbie {NEWKEY} embed\nops {OPS} admin\n")
            srv.send_signal(signal.SIGHUP)
            self.assertIsNotNone(srv.wait_line(r"SIGHUP: keys reloaded", timeout=30), srv.stderr)
            r = request(srv.port, "POST", "/embed", TEI, headers=bearer(NEWKEY), conn=conn)
            self.assertEqual(r.status, 200, r)
            self.assertIs(conn.sock, sock)  # the same keep-alive connection
            r = request(srv.port, "POST", "/embed", TEI, headers=bearer(ALICE), conn=conn)
            self.assertEqual(r.status, 401, r)
            conn.close()
            # a broken file is refused and the keys in force stay
            write("reload-keys", "newbie short embed\n")
            srv.send_signal(signal.SIGHUP)
            line = srv.wait_line(r"SIGHUP: keys not reloaded", timeout=30)
            self.assertIsNotNone(line, srv.stderr)
            self.assertIn("line 1", line)
            self.assertNotIn("short", line)  # not the key text
            self.assertEqual(request(srv.port, "POST", "/embed", TEI, headers=bearer(NEWKEY)).status, 200)
            j = request(srv.port, "GET", "/info", headers=bearer(OPS)).json()
            self.assertEqual(j["security"]["api_keys"], 2)
            self.assertTrue(j["security"]["public_health"])
        finally:
            srv.stop()


class Limits(unittest.TestCase):
    """An --insecure server with tight connection limits."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--connection-timeout", "2", "--max-header-bytes", "8192", "--http-threads", "2")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_insecure_warning_and_info(self):
        self.assertIn("WARNING: authentication is off", self.srv.stderr)
        j = self.srv.get("/info").json()
        self.assertEqual(j["auth"], "none (insecure)")
        self.assertEqual(j["security"]["connection_timeout_s"], 2)
        self.assertEqual(j["security"]["max_header_bytes"], 8192)
        self.assertTrue(j["security"]["public_health"])

    def test_slowloris_cut_off(self):
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=30)
        t0 = time.monotonic()
        sent, closed = 0, False
        try:
            s.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            while time.monotonic() - t0 < 20:
                try:
                    s.sendall(b"a")  # a byte every 0.3 s: never idle for the 2 s timeout, never done
                    sent += 1
                    s.settimeout(0.3)
                    if s.recv(1024) == b"":
                        closed = True
                        break
                except socket.timeout:
                    continue
                except OSError:
                    closed = True
                    break
        finally:
            s.close()
        dt = time.monotonic() - t0
        self.assertTrue(closed, "a one-byte-a-second client was never cut off")
        self.assertGreaterEqual(sent, 4)  # it was not idle: the header deadline cut it
        self.assertLess(dt, 15, dt)
        self.assertEqual(self.srv.post("/embed", TEI).status, 200)

    def test_idle_connection_closed(self):
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=15)
        try:
            t0 = time.monotonic()
            try:
                data = s.recv(1024)
            except ConnectionResetError:
                data = b""
            self.assertEqual(data, b"")
            self.assertLess(time.monotonic() - t0, 10)
        finally:
            s.close()

    def test_header_too_large(self):
        big = b"X-Big: " + b"a" * 20000 + b"\r\n"
        raw = raw_exchange(self.srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n", timeout=30)
        if raw:  # libmicrohttpd answers 431 (or closes)
            self.assertIn(parse_raw_response(raw).status, (413, 431), raw[:200])
        self.assertEqual(self.srv.get("/health").status, 200)


class PerIpLimit(unittest.TestCase):
    """Its own server: connections it refuses are released asynchronously and must not leak
    into other tests' counts."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--max-connections-per-ip", "4", "--http-threads", "2")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_per_ip_connection_limit(self):
        # Six connections at once from 127.0.0.1 with a limit of four: whichever the server's
        # threads accept first, at most four are served and the others are closed unanswered.
        socks = [socket.create_connection(("127.0.0.1", self.srv.port), timeout=10) for _ in range(6)]
        served = 0
        try:
            time.sleep(0.3)
            for s in socks:
                try:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    data = s.recv(1024)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                if data:
                    self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:100])
                    served += 1
        finally:
            for s in socks:
                s.close()
        self.assertLessEqual(served, 4)
        self.assertGreaterEqual(served, 1)
        end = time.monotonic() + 10
        while True:  # the closed ones are released soon
            try:
                if self.srv.get("/health").status == 200:
                    break
            except OSError:
                pass
            self.assertLess(time.monotonic(), end)
            time.sleep(0.1)


class Startup(unittest.TestCase):
    def run_serve(self, *args, env=None):
        e = {k: v for k, v in os.environ.items() if not k.startswith("EMBD_") or k == "EMBD_BIN"}
        e.update(env or {})
        p = subprocess.run([BIN, "serve", "--model", MODEL, "--port", "0", "--threads", "1", *args],
                           capture_output=True, timeout=120, env=e, stdin=subprocess.DEVNULL)
        err = p.stderr.decode("utf-8", "replace")
        self.assertEqual([m for m in SANITIZER_MARKERS if m in err], [], err)
        return p.returncode, err

    def test_refuses_without_auth(self):
        rc, err = self.run_serve()
        self.assertEqual(rc, 2, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("--insecure", err)
        self.assertNotIn("listening", err)
        for v in ("0", "false"):
            rc, err = self.run_serve(env={"EMBD_INSECURE": v})
            self.assertEqual(rc, 2, err)

    def test_insecure_env_starts(self):
        srv = Server(insecure=False, env={"EMBD_INSECURE": "1"})
        try:
            self.assertIn("WARNING: authentication is off", srv.stderr)
            self.assertEqual(srv.get("/info").json()["auth"], "none (insecure)")
        finally:
            srv.stop()

    def test_unusable_auth_files(self):
        cases = [
            (["--api-keys-file", os.path.join(TMP, "missing-keys")], "cannot open"),
            (["--api-keys-file", write("bad-keys", f"alice {ALICE} embed\nbob {ALICE} admin\n")], "line 2"),
            (["--api-keys-file", write("empty-keys", "# nothing\n")], "no keys"),
            (["--hmac-secret-file", write("short-secret", "abc\n")], "shorter than"),
            (["--hmac-secret-file", os.path.join(TMP, "missing-secret")], "cannot open"),
        ]
        for args, want in cases:
            rc, err = self.run_serve(*args)
            self.assertEqual(rc, 2, (args, err))
            self.assertIn(want, err)
            self.assertNotIn(ALICE, err)
        for args in (["--rate-limit-rps", "-1"], ["--connection-timeout", "x"], ["--max-json-depth", "deep"]):
            rc, err = self.run_serve("--insecure", *args)
            self.assertEqual(rc, 1, (args, err))
        rc, err = self.run_serve("--insecure", "--max-header-bytes", "100")
        self.assertEqual(rc, 2, err)

    def test_help_lists_security_flags(self):
        p = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=60)
        for flag, env in (("api-keys-file", "EMBD_API_KEYS_FILE"), ("hmac-secret-file", "EMBD_HMAC_SECRET_FILE"),
                          ("insecure", "EMBD_INSECURE"), ("public-health", "EMBD_PUBLIC_HEALTH"),
                          ("public-metrics", "EMBD_PUBLIC_METRICS"), ("rate-limit-rps", "EMBD_RATE_LIMIT_RPS"),
                          ("rate-limit-tpm", "EMBD_RATE_LIMIT_TPM"), ("max-connections", "EMBD_MAX_CONNECTIONS"),
                          ("max-connections-per-ip", "EMBD_MAX_CONNECTIONS_PER_IP"),
                          ("connection-timeout", "EMBD_CONNECTION_TIMEOUT"),
                          ("max-header-bytes", "EMBD_MAX_HEADER_BYTES"), ("max-json-depth", "EMBD_MAX_JSON_DEPTH"),
                          ("hmac-window", "EMBD_HMAC_WINDOW")):
            self.assertRegex(p.stdout, rf"--{flag}\s+{env}\s")


if __name__ == "__main__":
    common.main("auth")
