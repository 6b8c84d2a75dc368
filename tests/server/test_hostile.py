"""A list of hostile requests against one `embd serve` with API keys and request signing: wrong
types, huge numbers, NaN, deep nesting, invalid UTF-8, overlong headers, truncated bodies, wrong
content types, duplicate keys, broken HTTP, replayed and stale signatures, wrong scopes... Each
gets its documented 4xx (or, where the client broke the HTTP exchange itself, a closed connection)
while another thread keeps sending valid requests that must all succeed, and the server exits
cleanly afterwards."""
import importlib.util
import json
import os
import re
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import SOURCE, TMP, Server, parse_raw_response, request  # noqa: E402

_spec = importlib.util.spec_from_file_location("embd_sign", os.path.join(SOURCE, "tools", "embd-sign.py"))
embd_sign = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(embd_sign)

KEY = "hostile-test-key-0123456789"  # embed
ADMIN = "hostile-admin-key-0123456789"  # admin
SECRET = b"hostile-secret-0123456789abcdef"
AUTH = "Authorization: Bearer " + KEY
CLOSED = "closed"  # the connection ends without an answer: acceptable only for broken HTTP


def http(method, path, body=b"", headers=(AUTH, "Content-Type: application/json"), length=None):
    """Raw HTTP/1.1 request bytes; length overrides Content-Length (None: the body's)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    if isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if length is not False:
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def post(path, body, **kw):
    return http("POST", path, body, **kw)


def signed(method, path, body, ts=None):
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    h = embd_sign.headers(SECRET, method, path, raw, ts)
    return raw, [f"{k}: {v}" for k, v in h.items()] + ["Content-Type: application/json"]


def cases():
    """(name, raw request bytes, expected statuses, expected error type or None)."""
    E = "/v1/embeddings"
    c = []

    def add(name, raw, status, etype=None):
        c.append((name, raw, status if isinstance(status, tuple) else (status,), etype))

    # ---- wrong types and shapes ----
    for name, body in [("input number", {"input": 5}), ("input null", {"input": None}), ("input bool", {"input": True}),
                       ("input object", {"input": {"a": 1}}), ("input float ids", {"input": [1.5, 2]}),
                       ("input mixed list", {"input": ["a", 5]}), ("input nested strings", {"input": [["a"]]}),
                       ("input empty list", {"input": []}), ("no input", {"model": "x"}),
                       ("encoding_format number", {"input": "x", "encoding_format": 3}),
                       ("encoding_format unknown", {"input": "x", "encoding_format": "hex"}),
                       ("dimensions string", {"input": "x", "dimensions": "big"}),
                       ("dimensions negative", {"input": "x", "dimensions": -1}),
                       ("dimensions too large", {"input": "x", "dimensions": 100000}),
                       ("dimensions float", {"input": "x", "dimensions": 1.5})]:
        add(name, post(E, body), (413, 422))
    for name, body in [("tei inputs number", {"inputs": 5}), ("tei normalize string", {"inputs": "x", "normalize": "yes"}),
                       ("tei truncate number", {"inputs": "x", "truncate": 1}),
                       ("tei truncation_direction", {"inputs": "x", "truncation_direction": "Middle"}),
                       ("chunks not a list", {"batch_id": "b", "chunks": {"chunk_id": 1}}),
                       ("chunks wrong content", {"batch_id": "b", "chunks": 7})]:
        add(name, post("/embed", body), (413, 422))
    add("tokenize inputs object", post("/tokenize", {"inputs": {"a": 1}}), 422)
    add("tokenize add_special_tokens string", post("/tokenize", {"inputs": "x", "add_special_tokens": "no"}), 422)
    # ---- huge numbers, NaN, infinities ----
    add("token id too large", post(E, {"input": [30522]}), 422)
    add("token id negative", post(E, {"input": [-1]}), 422)
    add("token id 1e308", post(E, '{"input":[1e308]}'), 422)
    add("token id 2^70", post(E, '{"input":[1180591620717411303424]}'), 422)
    add("dimensions 1e400", post(E, '{"input":"x","dimensions":1e400}'), 422)
    add("NaN literal", post(E, '{"input":[NaN]}'), 422, "invalid_json")
    add("Infinity literal", post(E, '{"input":"x","dimensions":Infinity}'), 422, "invalid_json")
    # ---- JSON syntax and nesting ----
    add("empty body", post(E, b""), 422, "invalid_json")
    add("truncated JSON", post(E, '{"input": "abc'), 422, "invalid_json")
    add("top-level array", post(E, '["a"]'), 422)
    add("top-level string", post(E, '"a"'), 422)
    add("trailing garbage", post(E, '{"input":"a"} x'), 422, "invalid_json")
    add("two objects", post(E, '{"input":"a"}{"input":"b"}'), 422, "invalid_json")
    add("duplicate keys", post(E, '{"input":"a","input":"b"}'), 422, "invalid_json")
    add("deep nesting 40", post(E, '{"input":' + "[" * 40 + "1" + "]" * 40 + "}"), 400, "too_deep")
    add("deep nesting 100k unclosed", post(E, "[" * 100000), 400, "too_deep")
    add("deep objects", post(E, '{"a":' * 50 + "1" + "}" * 50), 400, "too_deep")
    add("comment in JSON", post(E, '{"input":"a" /* x */}'), 422, "invalid_json")
    add("single quotes", post(E, "{'input':'a'}"), 422, "invalid_json")
    # ---- text content ----
    add("invalid UTF-8", post(E, b'{"input":"\xff\xfe abc"}'), 422, "invalid_utf8")
    add("invalid UTF-8 in key", post(E, b'{"inp\xffut":"abc"}'), 422)
    add("overlong UTF-8 slash", post(E, b'{"input":"\xc0\xaf"}'), 422, "invalid_utf8")
    add("input over max chars", post(E, {"input": "a" * 1001}), 413)
    add("too many items", post(E, {"input": ["a"] * 65}), 413)
    add("too long without truncation", post("/embed", {"inputs": "word " * 600, "truncate": False}), 413)
    # ---- sizes and framing ----
    add("body over max payload (declared)", post(E, b"{}", length=2_000_000), 413, "payload_too_large")
    add("body over max payload (chunked)",
        http("POST", E, b"", headers=(AUTH, "Transfer-Encoding: chunked"), length=False)
        + b"".join(b"10000\r\n" + b"[" * 0x10000 + b"\r\n" for _ in range(20)) + b"0\r\n\r\n", (400, 413))
    add("bad chunk size", http("POST", E, b"", headers=(AUTH, "Transfer-Encoding: chunked"), length=False)
        + b"zz\r\nabc\r\n0\r\n\r\n", (400, CLOSED))
    add("content-length not a number", post(E, b"{}", length="abc"), (400, 413, CLOSED))
    add("content-length negative", post(E, b"{}", length="-5"), (400, 413, CLOSED))
    add("truncated body then close", post(E, b'{"input":"abc', length=100), (CLOSED,))
    add("overlong header", http("GET", "/health", headers=(AUTH, "X-Big: " + "a" * 70000)), (413, 431, CLOSED))
    add("many headers", http("GET", "/health", headers=(AUTH, *[f"X-H{i}: {'v' * 40}" for i in range(2000)])),
        (413, 431, CLOSED))
    add("overlong URL", http("GET", "/" + "a" * 70000), (414, 431, CLOSED))
    # ---- content types (the body is read as JSON whatever it says; garbage is still garbage) ----
    add("form content type, form body", post(E, b"input=abc", headers=(AUTH, "Content-Type: application/x-www-form-urlencoded")),
        422, "invalid_json")
    add("multipart body", post(E, b"--xx\r\nContent-Disposition: form-data; name=\"input\"\r\n\r\nabc\r\n--xx--\r\n",
                               headers=(AUTH, "Content-Type: multipart/form-data; boundary=xx")), 422, "invalid_json")
    # ---- broken HTTP ----
    add("garbage request line", b"HELLO\r\n\r\n", (400, CLOSED))
    add("HTTP/1.1 without Host", b"GET /health HTTP/1.1\r\n" + AUTH.encode() + b"\r\n\r\n", (400, CLOSED))
    add("header without colon", b"GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", (400, CLOSED))
    add("unsupported HTTP version", b"GET /health HTTP/3.7\r\nHost: x\r\n\r\n", (400, 505, CLOSED))
    # ---- routes and methods ----
    add("GET on a POST route", http("GET", E), 405, "method_not_allowed")
    add("DELETE on /embed", http("DELETE", "/embed"), 405, "method_not_allowed")
    add("POST on /info", post("/info", b"{}"), (403, 405))
    add("unknown route", http("GET", "/admin/secret"), 404, "not_found")
    add("path traversal", http("GET", "/../../etc/passwd"), (400, 404))
    add("rerank on an embedding model", post("/rerank", {"query": "q", "texts": ["a"]}), 403, "forbidden")
    # ---- credentials ----
    add("no credentials", post(E, {"input": "a"}, headers=("Content-Type: application/json",)), 401, "unauthorized")
    add("unknown key", post(E, {"input": "a"}, headers=("Authorization: Bearer not-a-key-0123456789",)), 401,
        "unauthorized")
    add("basic auth", post(E, {"input": "a"}, headers=("Authorization: Basic a2V5OmtleQ==",)), 401, "unauthorized")
    add("bearer without token", post(E, {"input": "a"}, headers=("Authorization: Bearer ",)), 401, "unauthorized")
    add("bearer 5000 chars", post(E, {"input": "a"}, headers=("Authorization: Bearer " + "k" * 5000,)), 401,
        "unauthorized")
    add("bearer with non-ASCII", post(E, {"input": "a"}, headers=("Authorization: Bearer k\xe9y0123456789abcdef",)),
        401, "unauthorized")
    add("key prefix", post(E, {"input": "a"}, headers=("Authorization: Bearer " + KEY[:-1],)), 401, "unauthorized")
    add("wrong scope: embed key on /info", http("GET", "/info"), 403, "forbidden")
    add("wrong scope: admin key on embeddings",
        post(E, {"input": "a"}, headers=("Authorization: Bearer " + ADMIN, "Content-Type: application/json")), 403,
        "forbidden")
    now = int(time.time())
    for name, ts in [("stale signature", now - 1000), ("future signature", now + 1000)]:
        raw, h = signed("POST", E, {"input": name}, ts)
        add(name, post(E, raw, headers=h), 401, "unauthorized")
    raw, h = signed("POST", E, {"input": "tampered"})
    add("tampered signed body", post(E, raw.replace(b"tampered", b"TAMPERED"), headers=h), 401, "unauthorized")
    add("signature 30-digit timestamp", post(E, raw, headers=("X-Embd-Timestamp: " + "9" * 30,
                                                              "X-Embd-Signature: " + "ab" * 32)), 401, "unauthorized")
    add("signature not hex", post(E, raw, headers=(f"X-Embd-Timestamp: {now}", "X-Embd-Signature: " + "zz" * 32)), 401,
        "unauthorized")
    add("signature without timestamp", post(E, raw, headers=("X-Embd-Signature: " + "ab" * 32,)), 401, "unauthorized")
    return c


def send(port, raw, timeout=60):
    """Sends raw, half-closes, reads until the server closes or one full answer arrived; returns
    (status, Response) or (CLOSED, None). The server may answer and close before it has read all
    of raw (an overlong header): what it sent still counts."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        try:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            head, sep, rest = out.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head) if sep else None
            if m and len(rest) >= int(m.group(1)):
                break
    finally:
        s.close()
    if not out:
        return CLOSED, None
    r = parse_raw_response(out)
    return r.status, r


class Hostile(unittest.TestCase):
    def test_hostile_list_while_serving(self):
        keys = os.path.join(TMP, "hostile-keys")
        with open(keys, "w") as f:
            f.write(f"user {KEY} embed\nops {ADMIN} admin\n")
        secret = os.path.join(TMP, "hostile-secret")
        with open(secret, "wb") as f:
            f.write(SECRET)
        srv = Server("--api-keys-file", keys, "--hmac-secret-file", secret, "--max-items", "64",
                     "--max-input-chars", "1000", "--max-payload-bytes", "1000000", "--max-header-bytes", "16384",
                     "--connection-timeout", "5",  # a truncated body may wait for it
                     insecure=False, headers={"Authorization": "Bearer " + KEY})
        stop = threading.Event()
        good = {"ok": 0, "bad": []}

        def valid_traffic():
            i = 0
            while not stop.is_set():
                i += 1
                r = request(srv.port, "POST", "/v1/embeddings", {"input": [f"valid text {i}", "another"]},
                            headers={"Authorization": "Bearer " + KEY})
                if r.status == 200 and len(r.json()["data"]) == 2:
                    good["ok"] += 1
                else:
                    good["bad"].append(r)
                # a signed one too
                raw, h = signed("POST", "/embed", {"inputs": f"signed valid {i}"})
                r = request(srv.port, "POST", "/embed", raw, headers=dict(x.split(": ", 1) for x in h))
                if r.status == 200:
                    good["ok"] += 1
                else:
                    good["bad"].append(r)

        t = threading.Thread(target=valid_traffic, daemon=True)
        try:
            t.start()
            cs = cases()
            self.assertGreaterEqual(len(cs), 50)
            for name, raw, want, etype in cs:
                with self.subTest(name):
                    t0 = time.monotonic()
                    got, r = send(srv.port, raw)
                    if time.monotonic() - t0 > 10:
                        print(f"slow: {name} {time.monotonic() - t0:.1f} s")
                    self.assertIn(got, want, f"{name}: {r!r}")
                    if got in (401, 403, 404, 405, 413, 422, 429) or etype:
                        e = r.error()  # embd's own answers: a JSON error with type and message
                        if etype:
                            self.assertEqual(e["type"], etype, f"{name}: {r!r}")
                    if got == 401:
                        self.assertIn("www-authenticate", r.headers)
            stop.set()
            t.join(120)
            self.assertEqual(good["bad"], [])
            self.assertGreater(good["ok"], 0)
            self.assertEqual(srv.get("/health").status, 200)
        finally:
            stop.set()
            srv.stop()


if __name__ == "__main__":
    common.main("hostile")
