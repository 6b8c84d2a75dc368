"""`embd serve` over real HTTP: every endpoint, every client error, vector equalities across
request shapes, concurrency, backpressure (429), deadlines (504), departed clients, loading state
and start-up failures. Shutdown under load lives in test_shutdown.py.

Starts the real binary ($EMBD_BIN) on 127.0.0.1 with --port 0 on the shared bge-small-random
q8_0 GGUF (384 dims, 512 tokens, cls pooling, random weights). Every server is stopped with a
signal at the end of its class and must exit 0, print "stopped" and write no sanitizer report.

Vector comparisons: this q8_0 model does not give bit-identical vectors for one text alone and
inside a batch (the matmul path depends on the batch shape: up to 1.7e-5 in 1 - cosine, the CLI
shows the same), so "same vector" means 1 - cosine < SAME and, to be sure a response was not
swapped with another one, being nearer to its own reference than to any other text's (distinct
short texts are > 4e-3 apart in 1 - cosine)."""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import (BIN, CLS, CTX, DIMS, MODEL, MODEL_NAME, SANITIZER_MARKERS, SEP, TMP,  # noqa: E402
                    Server, b64_floats, cosine, long_text, metric, parse_metrics, parse_raw_response,
                    raw_exchange, request, requests_total, run_threads, unit, vec)

import numpy as np  # noqa: E402

SAME = 1e-4       # 1 - cosine for "the same vector" across different batch compositions
IDENTICAL = 1e-6  # max abs difference for the same request shape run the same way

TEXTS = ["hello world", "The capital of France is Paris.", "naïve café résumé", "日本語のテキスト",
         "emoji 🎉 party", "numbers 1 2 3 4", "", "a b c d e f g h i j k l m n o p"]


def emb_openai(resp):
    """Vectors of a 200 /v1/embeddings response, after checking its shape."""
    assert resp.status == 200, resp
    j = resp.json()
    assert j["object"] == "list" and isinstance(j["data"], list), j
    out = []
    for i, d in enumerate(j["data"]):
        assert d["object"] == "embedding" and d["index"] == i, (i, {k: v for k, v in d.items() if k != "embedding"})
        out.append(vec(d["embedding"]) if isinstance(d["embedding"], list) else b64_floats(d["embedding"]))
    return out


class ServerCase(unittest.TestCase):
    server_args = ()
    server_env = None
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(*cls.server_args, env=cls.server_env)
        cls.port = cls.srv.port

    @classmethod
    def tearDownClass(cls):
        if cls.srv:
            cls.srv.stop()

    def setUp(self):
        self._t0 = time.monotonic()

    def tearDown(self):
        dt = time.monotonic() - self._t0
        if dt > 5:
            print(f" [{dt:.1f} s]", end=" ", flush=True)

    def post(self, path, body=None, **kw):
        return self.srv.post(path, body, **kw)

    def get(self, path, **kw):
        return self.srv.get(path, **kw)

    # ---- assertions --------------------------------------------------------------------
    def assertError(self, r, status, etype, index=None, msg_has=None):
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
        e = r.error()
        self.assertEqual(e["type"], etype, e)
        if index is None:
            self.assertNotIn("index", e, e)
        else:
            self.assertEqual(e.get("index"), index, e)
        if msg_has:
            self.assertIn(msg_has, e["message"])
        return e

    def assertUnit(self, v, places=4):
        self.assertAlmostEqual(float(np.linalg.norm(v)), 1.0, places=places)

    def assertSameVectors(self, got, ref, what=""):
        """got[i] is ref[i] (1 - cosine < SAME) and nearer to ref[i] than to any other ref."""
        self.assertEqual(len(got), len(ref), what)
        R = np.array([unit(r) for r in ref])
        for i, g in enumerate(got):
            d = 1 - R @ unit(g)
            self.assertLess(d[i], SAME, f"{what} item {i}: 1-cos {d[i]:.3g}")
            others = [d[k] for k in range(len(ref)) if k != i and not np.allclose(R[k], R[i])]
            if others:
                self.assertLess(d[i], min(others), f"{what} item {i} is nearer another text's vector")

    def embed(self, texts, **extra):
        return emb_openai(self.post("/v1/embeddings", {"input": texts, **extra}))

    def tokenize(self, text, special=True):
        r = self.post("/tokenize", {"inputs": text, "add_special_tokens": special})
        self.assertEqual(r.status, 200, r)
        return [t["id"] for t in r.json()[0]]


# ======================================================================================
class T01Main(ServerCase):
    """Default limits; --log-requests."""
    server_args = ("--log-requests",)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        # --log-requests: one line per request with route, status and duration
        assert re.search(r"(?m)^embd: /v1/embeddings 200 [0-9.]+ ms$", cls.srv.stderr), cls.srv.stderr[-2000:]
        assert re.search(r"(?m)^embd: other 404 [0-9.]+ ms$", cls.srv.stderr), cls.srv.stderr[-2000:]

    # ---- small endpoints ---------------------------------------------------------------
    def test_health(self):
        r = self.get("/health")
        self.assertEqual((r.status, r.json()), (200, {"status": "ok"}))
        self.assertTrue(r.headers["content-type"].startswith("application/json"))

    def test_info(self):
        r = self.get("/info")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        expect = {"model_id": MODEL_NAME, "dimensions": DIMS, "max_input_length": CTX, "architecture": "bert",
                  "model_dtype": "q8_0", "vocab_size": 30522, "max_batch_tokens": 4096, "max_client_batch_size": 2048,
                  "max_input_chars": 100000, "max_queue_tokens": 262144, "max_queue_items": 8192,
                  "threads": 2, "auto_truncate": True}
        self.assertEqual({k: j.get(k) for k in expect}, expect)
        self.assertEqual(j["model_type"], {"embedding": {"pooling": "cls"}})
        self.assertEqual(j["request_timeout_s"], 60)
        self.assertEqual(os.path.realpath(j["model_path"]), os.path.realpath(MODEL))
        self.assertRegex(j["version"], r"^\d+\.\d+\.\d+")

    def test_unknown_route_404(self):
        for method, path in [("GET", "/"), ("POST", "/v2/embeddings"), ("GET", "/embeddings"), ("GET", "/health/")]:
            r = request(self.port, method, path, b"{}" if method == "POST" else None)
            self.assertError(r, 404, "not_found")

    def test_wrong_method_405(self):
        for route, right in [("/v1/embeddings", "POST"), ("/embed", "POST"), ("/tokenize", "POST"), ("/rerank", "POST"),
                             ("/v1/rerank", "POST"), ("/info", "GET"), ("/health", "GET"), ("/metrics", "GET")]:
            for wrong in (["GET", "PUT", "DELETE"] if right == "POST" else ["POST", "PUT"]):
                r = request(self.port, wrong, route, b'{"input":"x"}' if wrong != "GET" else None)
                self.assertError(r, 405, "method_not_allowed")
                self.assertEqual(r.headers.get("allow"), right, (wrong, route, r.headers))

    def test_rerank_not_a_reranker(self):
        for route in ("/rerank", "/v1/rerank"):
            r = self.post(route, {"query": "q", "texts": ["a", "b"]})
            self.assertError(r, 400, "not_a_reranker")

    # ---- /v1/embeddings ----------------------------------------------------------------
    def test_openai_single_string(self):
        r = self.post("/v1/embeddings", {"input": "hello world", "model": "anything"})
        (v,) = emb_openai(r)
        j = r.json()
        self.assertEqual(j["model"], MODEL_NAME)
        self.assertEqual(j["usage"], {"prompt_tokens": 4, "total_tokens": 4})  # [CLS] hello world [SEP]
        self.assertEqual(len(v), DIMS)
        self.assertUnit(v)
        for h in ("x-queue-time", "x-inference-time", "x-total-time"):
            self.assertGreaterEqual(float(r.headers[h]), 0, h)
        self.assertGreaterEqual(float(r.headers["x-total-time"]), float(r.headers["x-inference-time"]))
        self.assertEqual(int(r.headers["x-compute-tokens"]), 4)
        self.assertTrue(r.headers["content-type"].startswith("application/json"))

    def test_openai_batch_in_order_equals_alone(self):
        alone = [self.embed(t)[0] for t in TEXTS]
        batch = self.embed(TEXTS)
        for v in batch:
            self.assertEqual(len(v), DIMS)
            self.assertUnit(v)
        self.assertSameVectors(batch, alone, "batch vs alone")
        # distinct texts really are distinguishable at this tolerance
        self.assertGreater(1 - cosine(alone[0], self.embed("hello world!")[0]), 1e-3)
        # reversed order: every vector follows its text
        rev = self.embed(TEXTS[::-1])
        self.assertSameVectors(rev[::-1], batch, "reversed")
        # a duplicate inside one request gives the same vector twice
        dup = self.embed(["hello world", "numbers 1 2 3 4", "hello world"])
        self.assertLess(np.max(np.abs(dup[0] - dup[2])), IDENTICAL)

    def test_openai_usage_counts_every_item(self):
        ids = [self.tokenize(t) for t in TEXTS]
        r = self.post("/v1/embeddings", {"input": TEXTS})
        n = sum(len(x) for x in ids)
        self.assertEqual(r.json()["usage"], {"prompt_tokens": n, "total_tokens": n})
        self.assertEqual(int(r.headers["x-compute-tokens"]), n)

    def test_openai_vs_tei_same_vectors(self):
        a = self.embed(TEXTS)
        r = self.post("/embed", {"inputs": TEXTS})
        self.assertEqual(r.status, 200, r)
        b = [vec(x) for x in r.json()]
        self.assertEqual(len(b), len(TEXTS))
        self.assertSameVectors(b, a, "tei vs openai")
        # same shape, same batch: identical
        self.assertLess(max(np.max(np.abs(x - y)) for x, y in zip(a, b)), IDENTICAL)
        r = self.post("/embed", {"inputs": "hello world"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json()), 1)
        self.assertSameVectors([vec(r.json()[0])], [self.embed("hello world")[0]], "tei single")

    def test_dimensions_renormalised(self):
        full = self.embed(TEXTS[:3])
        for d in (1, 7, 64, 383, 384):
            cut = self.embed(TEXTS[:3], dimensions=d)
            for f, c in zip(full, cut):
                self.assertEqual(len(c), d)
                self.assertUnit(c, places=5)
                np.testing.assert_allclose(c, unit(f[:d]), atol=2e-5, err_msg=f"dimensions={d}")
            r = self.post("/embed", {"inputs": TEXTS[:3], "dimensions": d})
            self.assertEqual(r.status, 200, r)
            for f, c in zip(full, r.json()):
                self.assertEqual(len(c), d)
                np.testing.assert_allclose(c, unit(f[:d]), atol=2e-5, err_msg=f"/embed dimensions={d}")
        # not normalised: the plain prefix of the raw vector
        raw = [vec(x) for x in self.post("/embed", {"inputs": TEXTS[:3], "normalize": False}).json()]
        raw32 = self.post("/embed", {"inputs": TEXTS[:3], "normalize": False, "dimensions": 32}).json()
        raw32 = [vec(x) for x in raw32]
        for a, b in zip(raw, raw32):
            np.testing.assert_allclose(b, a[:32], rtol=1e-6, atol=1e-7)

    def test_base64_is_little_endian_float32(self):
        f = self.post("/v1/embeddings", {"input": TEXTS[:4], "encoding_format": "float"})
        b = self.post("/v1/embeddings", {"input": TEXTS[:4], "encoding_format": "base64"})
        self.assertEqual(b.status, 200, b)
        for df, db in zip(f.json()["data"], b.json()["data"]):
            self.assertIsInstance(db["embedding"], str)
            got = b64_floats(db["embedding"])
            self.assertEqual(len(got), DIMS)
            # the JSON floats carry 9 significant digits: they round-trip float32 exactly
            np.testing.assert_array_equal(np.float32(got), np.float32(df["embedding"]))
        self.assertEqual(f.json()["usage"], b.json()["usage"])
        b = self.post("/v1/embeddings", {"input": "hello world", "encoding_format": "base64", "dimensions": 10})
        got = b64_floats(b.json()["data"][0]["embedding"])
        self.assertEqual(len(got), 10)
        self.assertUnit(got, places=5)

    def test_token_ids_equal_text(self):
        ids = [self.tokenize(t) for t in TEXTS[:4]]
        self.assertTrue(all(x[0] == CLS and x[-1] == SEP for x in ids), ids)
        text = self.embed(TEXTS[:4])
        r = self.post("/v1/embeddings", {"input": ids})
        by_ids = emb_openai(r)
        self.assertLess(max(np.max(np.abs(x - y)) for x, y in zip(by_ids, text)), IDENTICAL)
        n = sum(map(len, ids))
        self.assertEqual(r.json()["usage"], {"prompt_tokens": n, "total_tokens": n})
        # one flat array = one input
        one = self.post("/v1/embeddings", {"input": ids[0]})
        (v,) = emb_openai(one)
        self.assertSameVectors([v], [text[0]], "flat ids")
        self.assertEqual(one.json()["usage"]["prompt_tokens"], len(ids[0]))
        # ids are used as given: without [CLS]/[SEP] the vector differs
        bare = self.embed([ids[0][1:-1]])[0]
        self.assertGreater(1 - cosine(bare, text[0]), 1e-3)

    def test_token_ids_longer_than_context_are_cut(self):
        text = long_text(700)
        ids = self.tokenize(text)
        self.assertGreater(len(ids), CTX)
        a = self.embed(text)[0]
        r = self.post("/v1/embeddings", {"input": [ids]})
        (b,) = emb_openai(r)
        self.assertEqual(r.json()["usage"]["prompt_tokens"], CTX)
        self.assertLess(np.max(np.abs(a - b)), IDENTICAL)
        c = self.embed([ids[:CTX - 1] + [SEP]])[0]
        self.assertLess(np.max(np.abs(c - b)), IDENTICAL)

    def test_truncation_direction(self):
        text = long_text(600, seed=3)
        ids = self.tokenize(text)
        n = len(ids)
        self.assertGreater(n, CTX)
        right = self.post("/embed", {"inputs": text, "truncation_direction": "Right"})
        left = self.post("/embed", {"inputs": text, "truncation_direction": "Left"})
        default = self.post("/embed", {"inputs": text})
        for r in (right, left, default):
            self.assertEqual(r.status, 200, r)
        right, left, default = vec(right.json()[0]), vec(left.json()[0]), vec(default.json()[0])
        ref_r, ref_l = self.embed([[CLS] + ids[1:CTX - 1] + [SEP], [CLS] + ids[n - CTX + 1:n - 1] + [SEP]])
        self.assertLess(np.max(np.abs(right - ref_r)), IDENTICAL)
        self.assertLess(np.max(np.abs(default - ref_r)), IDENTICAL)
        self.assertLess(np.max(np.abs(left - ref_l)), IDENTICAL)
        # long texts of common words are close under random weights: compare at the exactness of
        # one shape run twice (above), not with the text-level tolerance
        self.assertGreater(np.max(np.abs(left - right)), 100 * IDENTICAL)
        r = self.post("/embed", {"inputs": text, "truncation_direction": "left"})  # case-insensitive
        self.assertEqual(r.status, 200, r)

    def test_tei_normalize_false(self):
        r = self.post("/embed", {"inputs": TEXTS[:3], "normalize": False})
        self.assertEqual(r.status, 200, r)
        raw = [vec(x) for x in r.json()]
        norm = [vec(x) for x in self.post("/embed", {"inputs": TEXTS[:3]}).json()]
        for a, b in zip(raw, norm):
            self.assertGreater(abs(np.linalg.norm(a) - 1), 1e-3)
            np.testing.assert_allclose(unit(a), b, atol=1e-6)

    def test_unknown_fields_ignored(self):
        r = self.post("/v1/embeddings", {"input": "hello world", "user": "bob", "extra": {"x": [1, 2]}, "model": None})
        self.assertEqual(r.status, 200, r)
        r = self.post("/embed", {"inputs": "hello world", "foo": 1, "truncate": True, "normalize": None})
        self.assertEqual(r.status, 200, r)
        r = self.post("/tokenize", {"inputs": "hello world", "bar": [1]})
        self.assertEqual(r.status, 200, r)

    def test_keep_alive_connection(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            for i in range(3):
                r = request(self.port, "POST", "/v1/embeddings", {"input": TEXTS[i]}, conn=c)
                self.assertEqual(r.status, 200, r)
                r = request(self.port, "GET", "/health", conn=c)
                self.assertEqual(r.status, 200, r)
        finally:
            c.close()

    # ---- chunk shape -------------------------------------------------------------------
    def test_chunks(self):
        good = {"a": "hello world", 7: "numbers 1 2 3 4", "c": "emoji 🎉 party"}
        body = (b'{"batch_id":{"job":42},"chunks":['
                b'{"chunk_id":"a","content":"hello world"},'
                b'{"chunk_id":"b","content":42},'
                b'{"chunk_id":7,"content":"numbers 1 2 3 4"},'
                b'{"chunk_id":"bad-utf8","content":"caf\xc3 \xff"},'
                b'"not an object",'
                b'{"chunk_id":"big","content":"' + b"x" * 100001 + b'"},'
                b'{"chunk_id":"no-content"},'
                b'{"chunk_id":"c","content":"emoji \xf0\x9f\x8e\x89 party","extra":1}]}')
        r = self.post("/embed", body)
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j["batch_id"], {"job": 42})
        self.assertEqual([e["chunk_id"] for e in j["embeddings"]], ["a", 7, "c"])
        self.assertEqual([e["chunk_id"] for e in j["errors"]], ["b", "bad-utf8", None, "big", "no-content"])
        for e in j["errors"]:
            self.assertIsInstance(e["error"], str)
            self.assertTrue(e["error"])
        self.assertIn("UTF-8", j["errors"][1]["error"])
        self.assertIn("characters", j["errors"][3]["error"])
        ref = self.post("/embed", {"inputs": list(good.values())}).json()
        got = [vec(e["embedding"]) for e in j["embeddings"]]
        for g in got:
            self.assertUnit(g)
        self.assertSameVectors(got, [vec(x) for x in ref], "chunks")
        # only bad chunks: 200 with errors only; no chunks at all: 200 with nothing
        r = self.post("/embed", {"batch_id": 1, "chunks": [{"chunk_id": 1, "content": None}]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json()["embeddings"], len(r.json()["errors"])), ([], 1))
        r = self.post("/embed", {"batch_id": "x", "chunks": []})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"batch_id": "x", "embeddings": [], "errors": []})
        r = self.post("/embed", {"chunks": {"chunk_id": 1}})
        self.assertError(r, 422, "invalid_request", msg_has="$.chunks")

    # ---- /tokenize ---------------------------------------------------------------------
    def test_tokenize(self):
        r = self.post("/tokenize", {"inputs": "hello world"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), [[{"id": 101, "text": "[CLS]", "special": True},
                                     {"id": 7592, "text": "hello", "special": False},
                                     {"id": 2088, "text": "world", "special": False},
                                     {"id": 102, "text": "[SEP]", "special": True}]])
        r = self.post("/tokenize", {"inputs": ["hello world", "", "naïve"], "add_special_tokens": False})
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(len(j), 3)
        self.assertEqual([t["id"] for t in j[0]], [7592, 2088])
        self.assertEqual(j[1], [])
        self.assertFalse(any(t["special"] for t in j[2]))
        # no truncation in /tokenize
        self.assertGreater(len(self.tokenize(long_text(600))), CTX)

    def test_tokenize_errors(self):
        self.assertError(self.post("/tokenize", {}), 422, "invalid_request", msg_has="$.inputs")
        self.assertError(self.post("/tokenize", {"inputs": 5}), 422, "invalid_request", msg_has="$.inputs")
        self.assertError(self.post("/tokenize", {"inputs": []}), 422, "invalid_request")
        self.assertError(self.post("/tokenize", {"inputs": ["a", "b", 3]}), 422, "invalid_request", index=2,
                         msg_has="$.inputs[2]")
        self.assertError(self.post("/tokenize", {"inputs": "a", "add_special_tokens": "no"}), 422, "invalid_request",
                         msg_has="$.add_special_tokens")
        self.assertError(self.post("/tokenize", b'{"inputs":["ok","bad \xff"]}'), 422, "invalid_utf8", index=1)
        self.assertError(self.post("/tokenize", {"inputs": ["a"] * 2049}), 413, "too_many_items")
        self.assertError(self.post("/tokenize", {"inputs": ["a", "b" * 100001]}), 413, "input_too_large", index=1)
        self.assertError(self.post("/tokenize", b"{"), 422, "invalid_json")

    # ---- client errors: one test each ---------------------------------------------------
    def test_invalid_json_422(self):
        for body in (b"{", b'{"input": "x",}', b"not json", b'{"input": "x"} trailing'):
            self.assertError(self.post("/v1/embeddings", body), 422, "invalid_json")
            self.assertError(self.post("/embed", body), 422, "invalid_json")
        self.assertError(self.post("/v1/embeddings", b""), 422, "invalid_json")
        self.assertError(self.post("/v1/embeddings", b'["x"]'), 422, "invalid_request", msg_has="$")
        for body in (b'"x"', b"3", b"null"):
            r = self.post("/v1/embeddings", body)
            self.assertEqual(r.status, 422, r)
            self.assertIn(r.error()["type"], ("invalid_json", "invalid_request"))

    def test_wrong_types_422_with_path(self):
        cases = [
            ({}, "$.input", None),
            ({"input": None}, "$.input", None),
            ({"input": 5}, "$.input", None),
            ({"input": {"text": "x"}}, "$.input", None),
            ({"input": ["a", "b", "c", 5]}, "$.input[3]", 3),
            ({"input": ["a", None]}, "$.input[1]", 1),
            ({"input": [[101, 102], "x"]}, "$.input[1]", 1),
            ({"input": [[101, 102], [101, -1, 102]]}, "$.input[1][1]", 1),
            ({"input": [[101, 102], [101, 1.5, 102]]}, "$.input[1][1]", 1),
            ({"input": [101, "x"]}, "$.input[1]", 0),
            ({"input": [[]]}, "$.input[0]", 0),
            ({"input": [["a"]]}, "$.input[0][0]", 0),
            ({"input": "x", "encoding_format": "int8"}, "$.encoding_format", None),
            ({"input": "x", "encoding_format": 1}, "$.encoding_format", None),
            ({"input": "x", "dimensions": 0}, "$.dimensions", None),
            ({"input": "x", "dimensions": DIMS + 1}, "$.dimensions", None),
            ({"input": "x", "dimensions": "8"}, "$.dimensions", None),
            ({"input": "x", "dimensions": 8.5}, "$.dimensions", None),
            ({"input": "x", "model": 5}, "$.model", None),
        ]
        for body, path, index in cases:
            with self.subTest(body=json.dumps(body)[:80]):
                e = self.assertError(self.post("/v1/embeddings", body), 422, "invalid_request", index=index)
                self.assertTrue(e["message"].startswith(path + ":") or e["message"].startswith(path + " "), e)
        tei = [
            ({}, "$.inputs", None),
            ({"inputs": 3}, "$.inputs", None),
            ({"inputs": ["a", 3]}, "$.inputs[1]", 1),
            ({"inputs": [[101, 102]]}, "$.inputs[0]", 0),  # no token ids on /embed
            ({"inputs": "a", "normalize": "yes"}, "$.normalize", None),
            ({"inputs": "a", "truncate": 1}, "$.truncate", None),
            ({"inputs": "a", "truncation_direction": "up"}, "$.truncation_direction", None),
            ({"inputs": "a", "dimensions": 0}, "$.dimensions", None),
            ({"inputs": "a", "prompt_name": 3}, "$.prompt_name", None),
        ]
        for body, path, index in tei:
            with self.subTest(tei=json.dumps(body)[:80]):
                e = self.assertError(self.post("/embed", body), 422, "invalid_request", index=index)
                self.assertTrue(e["message"].startswith(path + ":"), e)

    def test_empty_input_422(self):
        self.assertError(self.post("/v1/embeddings", {"input": []}), 422, "invalid_request", msg_has="$.input")
        self.assertError(self.post("/embed", {"inputs": []}), 422, "invalid_request", msg_has="$.inputs")

    def test_unknown_prompt_422(self):
        e = self.assertError(self.post("/embed", {"inputs": "a", "prompt_name": "query"}), 422, "unknown_prompt")
        self.assertIn("query", e["message"])

    def test_invalid_utf8_422(self):
        self.assertError(self.post("/v1/embeddings", b'{"input":["ok","fine","bad \xff\xfe x"]}'), 422,
                         "invalid_utf8", index=2)
        self.assertError(self.post("/v1/embeddings", b'{"input":"\xc3"}'), 422, "invalid_utf8", index=0)
        self.assertError(self.post("/embed", b'{"inputs":["bad \xed\xa0\x80 surrogate bytes","ok"]}'), 422,
                         "invalid_utf8", index=0)
        # an escaped lone surrogate is not a byte error: it is repaired and embedded
        r = self.post("/v1/embeddings", b'{"input":["lone \\ud800 surrogate","ok"]}')
        self.assertEqual(r.status, 200, r)

    def test_too_many_items_413(self):
        self.assertError(self.post("/v1/embeddings", {"input": ["a"] * 2049}), 413, "too_many_items")
        self.assertError(self.post("/v1/embeddings", {"input": [[101, 102]] * 2049}), 413, "too_many_items")
        self.assertError(self.post("/embed", {"inputs": ["a"] * 2049}), 413, "too_many_items")
        self.assertError(self.post("/embed", {"chunks": [{"chunk_id": i, "content": "a"} for i in range(2049)]}), 413,
                         "too_many_items")
        r = self.post("/v1/embeddings", {"input": [[CLS, SEP]] * 2048})  # the limit itself is fine
        self.assertEqual(len(emb_openai(r)), 2048)

    def test_input_too_large_413(self):
        self.assertError(self.post("/v1/embeddings", {"input": ["ok", "x" * 100001]}), 413, "input_too_large", index=1)
        self.assertError(self.post("/v1/embeddings", {"input": "y" * 100001}), 413, "input_too_large", index=0)
        self.assertError(self.post("/embed", {"inputs": ["a", "b", "é" * 100001]}), 413, "input_too_large", index=2)
        # characters, not bytes: 100000 two-byte characters are fine
        r = self.post("/v1/embeddings", {"input": ["é" * 100000]})
        self.assertEqual(r.status, 200, r)

    def test_payload_too_large_413(self):
        # announced size over 16 MiB: refused without reading a body
        raw = raw_exchange(self.port, b"POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                                      b"Content-Length: %d\r\n\r\n" % (16 * 1024 * 1024 + 1))
        self.assertError(parse_raw_response(raw), 413, "payload_too_large")
        # a real body over the limit
        big = json.dumps({"input": ["z" * 90000] * 190}).encode()
        self.assertGreater(len(big), 16 * 1024 * 1024)
        try:
            r = self.post("/v1/embeddings", big)
        except (BrokenPipeError, ConnectionResetError):
            r = None  # the server may answer and close before the whole body is sent
        if r is not None:
            self.assertError(r, 413, "payload_too_large")
        self.assertEqual(self.get("/health").status, 200)

    def test_input_too_long_413(self):
        text = long_text(600)
        self.assertError(self.post("/embed", {"inputs": ["short", text], "truncate": False}), 413, "input_too_long",
                         index=1)
        r = self.post("/embed", {"inputs": ["short", text], "truncate": True})
        self.assertEqual(r.status, 200, r)
        r = self.post("/embed", {"inputs": ["short", long_text(CTX - 2)], "truncate": False})  # exactly 512: fine
        self.assertEqual(r.status, 200, r)

    def test_token_id_outside_vocabulary_is_a_client_error(self):
        # a client mistake must not be a 500: expected 422 invalid_request naming the item
        for ids in ([CLS, 30522, SEP], [CLS, 99999999, SEP]):
            r = self.post("/v1/embeddings", {"input": [[CLS, 7592, SEP], ids]})
            with self.subTest(ids=ids):
                self.assertLess(r.status, 500, r)
                self.assertEqual(r.status, 422, r)
                self.assertEqual(r.error().get("index"), 1, r)
        self.assertEqual(self.get("/health").status, 200)

    # ---- concurrency ------------------------------------------------------------------
    def test_concurrent_clients_same_vectors(self):
        n_threads, per_thread = 8, 4
        reqs = [[(f"client {t} request {k} says {'hello' if k % 2 else 'goodbye'} "
                  f"{' '.join(['word'] * (t + k))}", f"second text {t}-{k}")[: 1 + (t + k) % 2]
                 for k in range(per_thread)] for t in range(n_threads)]
        # sequential reference, one request at a time
        ref = {}
        for t in range(n_threads):
            for k in range(per_thread):
                for text, v in zip(reqs[t][k], self.embed(reqs[t][k])):
                    ref[text] = v
        barrier = threading.Barrier(n_threads)

        def client(t):
            barrier.wait()
            out = []
            for k in range(per_thread):
                if (t + k) % 3 == 0:
                    r = self.post("/embed", {"inputs": reqs[t][k]})
                    out.append(("tei", r, reqs[t][k]))
                else:
                    r = self.post("/v1/embeddings", {"input": reqs[t][k]})
                    out.append(("openai", r, reqs[t][k]))
            return out

        results = run_threads(client, [(t,) for t in range(n_threads)])
        all_texts = list(ref)
        R = np.array([unit(ref[x]) for x in all_texts])
        n = 0
        for t, res in enumerate(results):
            self.assertNotIsInstance(res, BaseException, f"client {t}: {res!r}")
            for kind, r, texts in res:
                self.assertEqual(r.status, 200, r)
                got = [vec(x) for x in r.json()] if kind == "tei" else emb_openai(r)
                self.assertEqual(len(got), len(texts))
                for text, g in zip(texts, got):
                    d = 1 - R @ unit(g)
                    i = all_texts.index(text)
                    self.assertLess(d[i], SAME, f"{text!r}: 1-cos {d[i]:.3g}")
                    self.assertEqual(int(np.argmin(d)), i, f"{text!r} got another text's vector")
                    n += 1
        self.assertEqual(n, sum(len(x) for r in reqs for x in r))

    # ---- metrics -----------------------------------------------------------------------
    def test_metrics_exposition(self):
        self.post("/v1/embeddings", {"input": "warm"})
        r = self.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/plain"), r.headers)
        text = r.body.decode()
        m = parse_metrics(text)
        types = dict(re.findall(r"(?m)^# TYPE (\S+) (\S+)$", text))
        expect = {"embd_requests_total": "counter", "embd_request_duration_seconds": "histogram",
                  "embd_queue_duration_seconds": "histogram", "embd_inference_duration_seconds": "histogram",
                  "embd_batch_items": "histogram", "embd_batch_tokens": "histogram",
                  "embd_input_tokens_total": "counter", "embd_batches_total": "counter", "embd_queue_items": "gauge",
                  "embd_queue_tokens": "gauge", "embd_tokens_per_second": "gauge",
                  "embd_process_resident_memory_bytes": "gauge", "embd_model_info": "gauge"}
        for name, typ in expect.items():
            self.assertEqual(types.get(name), typ, name)
        names = {k[0] for k in m}
        for h in ("embd_queue_duration_seconds", "embd_inference_duration_seconds", "embd_batch_items",
                  "embd_batch_tokens"):
            self.assertIn(h + "_count", names)
            self.assertIn(h + "_sum", names)
            self.assertGreater(metric(m, h + "_count"), 0, h)
            self.assertEqual(metric(m, h + "_bucket", {"le": "+Inf"}), metric(m, h + "_count"), h)
        self.assertGreater(metric(m, "embd_process_resident_memory_bytes"), 1e6)
        self.assertGreater(metric(m, "embd_batches_total"), 0)
        self.assertEqual(metric(m, "embd_queue_items"), 0)
        self.assertEqual(metric(m, "embd_queue_tokens"), 0)
        info = [dict(k[1]) for k in m if k[0] == "embd_model_info"]
        self.assertEqual(len(info), 1, info)
        self.assertEqual((info[0].get("name"), info[0].get("dims"), info[0].get("max_tokens"), info[0].get("pooling"),
                          info[0].get("quant")), (MODEL_NAME, "384", "512", "cls", "q8_0"))

    def test_metrics_counters_exact(self):
        texts = [["alpha beta"], ["gamma", "delta epsilon zeta"], ["eta theta iota kappa"]]
        tei_texts = ["lambda mu", "nu xi omicron"]
        tei_tokens = sum(len(self.tokenize(t)) for t in tei_texts)
        m0 = self.srv.settled_metrics()
        prompt = 0
        for t in texts:
            r = self.post("/v1/embeddings", {"input": t})
            self.assertEqual(r.status, 200, r)
            prompt += r.json()["usage"]["prompt_tokens"]
        for t in tei_texts:
            self.assertEqual(self.post("/embed", {"inputs": t}).status, 200)
        for _ in range(2):
            self.assertEqual(self.post("/v1/embeddings", {"input": 5}).status, 422)
        self.assertEqual(self.post("/v1/embeddings", {"input": ["x" * 100001]}).status, 413)
        self.assertEqual(self.post("/tokenize", {"inputs": "x"}).status, 200)
        for _ in range(3):
            self.assertEqual(self.get("/no/such/route").status, 404)
        self.assertEqual(self.get("/embed").status, 405)
        expect = {("/v1/embeddings", 200): 3, ("/embed", 200): 2, ("/v1/embeddings", 422): 2,
                  ("/v1/embeddings", 413): 1, ("/tokenize", 200): 1, ("other", 404): 3, ("/embed", 405): 1}
        m1 = self.srv.wait_metrics(lambda m: all(requests_total(m, r, st) - requests_total(m0, r, st) >= n
                                                 for (r, st), n in expect.items()))
        for (route, status), n in expect.items():
            self.assertEqual(requests_total(m1, route, status) - requests_total(m0, route, status), n, (route, status))
        # every request also lands in the duration histogram of its route
        for route, n in (("/v1/embeddings", 6), ("/embed", 3), ("/tokenize", 1), ("other", 3)):
            dn = (metric(m1, "embd_request_duration_seconds_count", {"route": route})
                  - metric(m0, "embd_request_duration_seconds_count", {"route": route}))
            self.assertEqual(dn, n, route)
        self.assertEqual(metric(m1, "embd_input_tokens_total") - metric(m0, "embd_input_tokens_total"),
                         prompt + tei_tokens)
        self.assertGreaterEqual(metric(m1, "embd_batches_total") - metric(m0, "embd_batches_total"), 1)
        self.assertLessEqual(metric(m1, "embd_batches_total") - metric(m0, "embd_batches_total"), 5)
        db = metric(m1, "embd_batch_items_sum") - metric(m0, "embd_batch_items_sum")
        self.assertEqual(db, 6)  # 1 + 2 + 1 + 2 items of the 200 embedding requests
        dt = metric(m1, "embd_batch_tokens_sum") - metric(m0, "embd_batch_tokens_sum")
        self.assertEqual(dt, prompt + tei_tokens)


# ======================================================================================
class T02Limits(ServerCase):
    """Non-default limits from flags and environment; --no-truncate; --model-name."""
    server_args = ("--no-truncate", "--max-items", "4", "--max-input-chars", "2000", "--max-payload-bytes", "8192")
    server_env = {"EMBD_MODEL_NAME": "custom-name", "EMBD_MAX_ITEMS": "100", "EMBD_REQUEST_TIMEOUT": "12.5"}

    def test_info_reflects_flags_and_env(self):
        j = self.get("/info").json()
        self.assertEqual((j["model_id"], j["max_client_batch_size"], j["max_input_chars"], j["auto_truncate"],
                          j["request_timeout_s"]), ("custom-name", 4, 2000, False, 12.5))

    def test_model_name(self):
        r = self.post("/v1/embeddings", {"input": "x", "model": "ignored"})
        self.assertEqual(r.json()["model"], "custom-name")
        m = self.srv.metrics()
        self.assertEqual([dict(k[1])["name"] for k in m if k[0] == "embd_model_info"], ["custom-name"])

    def test_max_items(self):
        self.assertEqual(len(self.embed(["a", "b", "c", "d"])), 4)
        self.assertError(self.post("/v1/embeddings", {"input": ["a"] * 5}), 413, "too_many_items")
        self.assertError(self.post("/embed", {"inputs": ["a"] * 5}), 413, "too_many_items")
        self.assertError(self.post("/tokenize", {"inputs": ["a"] * 5}), 413, "too_many_items")

    def test_max_input_chars(self):
        def utf8(obj):
            return json.dumps(obj, ensure_ascii=False).encode()  # 2 bytes per é, under the payload limit
        self.assertEqual(self.post("/v1/embeddings", utf8({"input": ["é" * 2000]})).status, 200)
        self.assertError(self.post("/v1/embeddings", utf8({"input": ["a", "é" * 2001]})), 413, "input_too_large",
                         index=1)
        self.assertError(self.post("/embed", {"inputs": "a" * 2001}), 413, "input_too_large", index=0)

    def test_payload_limit(self):
        def body_of(n):
            b = json.dumps({"input": "a", "pad": "p" * n}).encode()
            return json.dumps({"input": "a", "pad": "p" * (n - (len(b) - n))}).encode()
        ok = body_of(8192)
        self.assertEqual(len(ok), 8192)
        self.assertEqual(self.post("/v1/embeddings", ok).status, 200)
        over = body_of(8193)
        self.assertEqual(len(over), 8193)
        self.assertError(self.post("/v1/embeddings", over), 413, "payload_too_large")
        # no Content-Length: a chunked body is counted as it arrives
        pieces = [over[i:i + 1000] for i in range(0, len(over), 1000)]
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        raw = raw_exchange(self.port, b"POST /embed HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
                           + b"0\r\n\r\n")
        self.assertError(parse_raw_response(raw), 413, "payload_too_large")
        small = json.dumps({"inputs": "hello"}).encode()
        raw = raw_exchange(self.port, b"POST /embed HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                           + b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small))
        self.assertEqual(parse_raw_response(raw).status, 200, raw[:300])
        self.assertEqual(self.get("/health").status, 200)

    def test_no_truncate(self):
        text = "x " * 600  # 602 tokens in 1200 characters
        self.assertError(self.post("/v1/embeddings", {"input": ["hi", text]}), 413, "input_too_long", index=1)
        ids = self.tokenize(text)
        self.assertError(self.post("/v1/embeddings", {"input": [[CLS, SEP], ids]}), 413, "input_too_long", index=1)
        self.assertError(self.post("/embed", {"inputs": text}), 413, "input_too_long", index=0)
        r = self.post("/embed", {"inputs": text, "truncate": True})  # the request may still ask for it
        self.assertEqual(r.status, 200, r)
        # chunks: the over-long one fails alone
        r = self.post("/embed", {"batch_id": 5, "chunks": [{"chunk_id": "long", "content": text},
                                                         {"chunk_id": "ok", "content": "fine"},
                                                         {"chunk_id": "wide", "content": "w" * 2001}]})
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual([e["chunk_id"] for e in j["embeddings"]], ["ok"])
        self.assertEqual([e["chunk_id"] for e in j["errors"]], ["long", "wide"])
        self.assertIn("tokens", j["errors"][0]["error"])


# ======================================================================================
class T03Backpressure(ServerCase):
    """A queue of 4 items: concurrent requests beyond it get 429 + Retry-After, the rest succeed."""
    server_args = ("--max-queue-items", "4", "--max-batch-tokens", "128")
    flood = None

    def _flood(self):
        if T03Backpressure.flood is None:
            n = 24
            texts = [f"request {i} " + long_text(250, seed=i) for i in range(n)]
            m0 = self.srv.metrics()
            barrier = threading.Barrier(n)

            def one(i):
                barrier.wait()
                return self.post("/v1/embeddings", {"input": texts[i]})

            res = run_threads(one, [(i,) for i in range(n)])
            codes = [getattr(r, "status", None) for r in res]
            # metrics right after the flood, once every one of its requests is counted
            m1 = self.srv.wait_metrics(lambda m: all(
                requests_total(m, "/v1/embeddings", st) - requests_total(m0, "/v1/embeddings", st) >= codes.count(st)
                for st in (200, 429)))
            T03Backpressure.flood = (texts, res, m0, m1)
        return T03Backpressure.flood

    def test_429_with_retry_after(self):
        texts, res, _, _ = self._flood()
        for r in res:
            self.assertNotIsInstance(r, BaseException, repr(r))
        codes = [r.status for r in res]
        self.assertTrue(set(codes) <= {200, 429}, codes)
        self.assertGreaterEqual(codes.count(429), 1, codes)
        self.assertGreaterEqual(codes.count(200), 1, codes)
        for r in res:
            if r.status == 429:
                self.assertError(r, 429, "overloaded")
                self.assertIn("retry-after", r.headers, r.headers)
                self.assertRegex(r.headers["retry-after"], r"^[1-9][0-9]*$")
        ok = [(t, r) for t, r in zip(texts, res) if r.status == 200]
        got = [emb_openai(r)[0] for _, r in ok]
        for (t, r), g in zip(ok, got):
            self.assertEqual(len(g), DIMS)
            self.assertUnit(g)
        ref = [self.embed(t)[0] for t, _ in ok]
        self.assertSameVectors(got, ref, "200s under backpressure")
        self.assertEqual(self.get("/health").status, 200)

    def test_429_metrics(self):
        texts, res, m0, m1 = self._flood()
        codes = [getattr(r, "status", None) for r in res]
        for st in (200, 429):
            self.assertEqual(requests_total(m1, "/v1/embeddings", st) - requests_total(m0, "/v1/embeddings", st),
                         codes.count(st), st)
        # tokens of refused requests were never accepted
        prompt = sum(r.json()["usage"]["prompt_tokens"] for r in res if getattr(r, "status", None) == 200)
        self.assertEqual(metric(m1, "embd_input_tokens_total") - metric(m0, "embd_input_tokens_total"), prompt,
                         "embd_input_tokens_total counts the tokens of 429-refused requests")

    def test_request_bigger_than_queue_413(self):
        self.assertError(self.post("/v1/embeddings", {"input": ["a"] * 5}), 413, "request_too_large")
        self.assertEqual(len(self.embed(["a", "b", "c", "d"])), 4)


# ======================================================================================
class T04Timeout(ServerCase):
    """--request-timeout 0.2: requests still queued after 0.2 s get 504, the server stays healthy."""
    server_args = ("--request-timeout", "0.2", "--max-batch-tokens", "128")

    def test_504_then_healthy(self):
        m0 = self.srv.metrics()
        n = 8
        barrier = threading.Barrier(n)

        def one(i):
            barrier.wait()
            return self.post("/v1/embeddings", {"input": [f"{i} {k} " + long_text(250, seed=i + k) for k in range(4)]})

        res = run_threads(one, [(i,) for i in range(n)])
        for r in res:
            self.assertNotIsInstance(r, BaseException, repr(r))
        codes = [r.status for r in res]
        self.assertTrue(set(codes) <= {200, 504}, codes)
        self.assertGreaterEqual(codes.count(504), 1, codes)
        for r in res:
            if r.status == 504:
                self.assertError(r, 504, "timeout")
            else:
                self.assertEqual(len(emb_openai(r)), 4)
        # queued items of timed-out requests were dropped
        m = self.srv.wait_metric("embd_queue_items", pred=lambda v: v == 0)
        self.assertEqual(metric(m, "embd_queue_items"), 0)
        self.assertEqual(metric(m, "embd_queue_tokens"), 0)
        self.assertEqual(self.get("/health").status, 200)
        r = self.post("/v1/embeddings", {"input": "still serving"})
        self.assertEqual(len(emb_openai(r)), 1)
        m1 = self.srv.wait_metric("embd_requests_total", {"route": "/v1/embeddings", "status": "504"},
                                  at_least=requests_total(m0, "/v1/embeddings", 504) + codes.count(504))
        self.assertEqual(requests_total(m1, "/v1/embeddings", 504) - requests_total(m0, "/v1/embeddings", 504),
                         codes.count(504))


# ======================================================================================
class T05Disconnect(ServerCase):
    """A client that leaves: its queued items are dropped, the server keeps serving, the metrics
    count the request as 499 (client closed request)."""
    server_args = ("--max-batch-tokens", "128")

    def test_client_disconnect(self):
        m0 = self.srv.metrics()
        n = 48
        body = json.dumps({"input": [f"{k} " + long_text(250, seed=k) for k in range(n)]}).encode()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        # readiness: the items are queued
        m = self.srv.wait_metric("embd_queue_items", pred=lambda v: v > 0, timeout=60)
        self.assertGreater(metric(m, "embd_queue_items"), 0)
        s.close()
        m = self.srv.wait_metric("embd_queue_items", pred=lambda v: v == 0, timeout=120)
        self.assertEqual(metric(m, "embd_queue_items"), 0)
        ran = metric(m, "embd_batch_items_sum") - metric(m0, "embd_batch_items_sum")
        self.assertLess(ran, n, "the departed client's queued items still ran")
        r = self.post("/v1/embeddings", {"input": ["after the disconnect", "still fine"]})
        self.assertEqual(len(emb_openai(r)), 2)
        self.assertEqual(self.get("/health").status, 200)
        def changed(m):
            return {dict(k[1])["status"]: v - m0.get(k, 0) for k, v in m.items()
                    if k[0] == "embd_requests_total" and dict(k[1])["route"] == "/v1/embeddings" and v != m0.get(k, 0)}
        m1 = self.srv.wait_metrics(lambda m: changed(m).get("200", 0) >= 1 and sum(changed(m).values()) >= 2)
        deltas = {k[1]: v - m0.get(k, 0) for k, v in m1.items()
                  if k[0] == "embd_requests_total" and dict(k[1])["route"] == "/v1/embeddings" and v != m0.get(k, 0)}
        deltas = {dict(k)["status"]: v for k, v in deltas.items()}
        self.assertEqual(deltas, {"200": 1, "499": 1}, "metrics for a departed client")


# ======================================================================================
class T06Loading(unittest.TestCase):
    """While the model loads (here: forever, the model path is a FIFO nobody writes), /health and
    the API answer 503 loading and /metrics works; a model that cannot be used exits 2."""

    def test_loading_then_unusable_model(self):
        fifo = os.path.join(TMP, "model-fifo.gguf")
        os.mkfifo(fifo)
        srv = Server(model=fifo, wait=False)
        try:
            port = srv.wait_listening()
            r = request(port, "GET", "/health")
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.error()["type"], "loading")
            for method, path, body in [("POST", "/v1/embeddings", {"input": "x"}), ("POST", "/embed", {"inputs": "x"}),
                                       ("POST", "/tokenize", {"inputs": "x"}), ("GET", "/info", None)]:
                r = request(port, method, path, body)
                self.assertEqual((r.status, r.error()["type"]), (503, "loading"), (path, r))
            r = request(port, "GET", "/metrics")
            self.assertEqual(r.status, 200, r)
            parse_metrics(r.body.decode())
            self.assertFalse(srv.ready.is_set())
            # let the loader's open() return: not a regular file -> exit 2
            end = time.monotonic() + 60
            while True:
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError:
                    self.assertLess(time.monotonic(), end, "the server never opened the model")
                    time.sleep(0.05)
            os.close(fd)
            rc = srv.wait_exit(60)
            srv.assert_clean(rc, expect_rc=2, expect_stopped=False)
            self.assertIn("not a GGUF model file", srv.stderr)
        finally:
            srv.kill()


class T07StartupErrors(unittest.TestCase):
    def run_embd(self, *args, env=None):
        e = {k: v for k, v in os.environ.items() if not k.startswith("EMBD_") or k in ("EMBD_BIN",)}
        e.update(env or {})
        p = subprocess.run([BIN, "serve", "--insecure", *args], capture_output=True, timeout=120, env=e,
                           stdin=subprocess.DEVNULL)
        err = p.stderr.decode("utf-8", "replace")
        bad = [m for m in SANITIZER_MARKERS if m in err]
        self.assertEqual(bad, [], err)
        return p.returncode, err

    def test_port_in_use_exit_2(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        try:
            rc, err = self.run_embd("--model", MODEL, "--port", str(s.getsockname()[1]), "--threads", "1")
            self.assertEqual(rc, 2, err)
            self.assertIn("cannot listen", err)
        finally:
            s.close()

    def test_usage_errors_exit_1(self):
        for args in (["--max-batch-tokens", "0"], ["--port", "70000"], ["--threads", "abc"], ["--pooling", "max"],
                     ["--request-timeout", "-1"], ["--frobnicate"], ["stray"], ["--download-retries", "-1"],
                     ["--download-retries", "11"], ["--image-decoders", "-2"]):
            rc, err = self.run_embd("--model", MODEL, *args)
            self.assertEqual(rc, 1, (args, err))
            self.assertTrue(err.strip(), args)
        rc, err = self.run_embd("--model", MODEL, env={"EMBD_MAX_ITEMS": "none"})
        self.assertEqual(rc, 1, err)
        self.assertIn("EMBD_MAX_ITEMS", err)

    def test_missing_model_exit_2(self):
        rc, err = self.run_embd("--model", os.path.join(TMP, "nope.gguf"), "--port", "0")
        self.assertEqual(rc, 2, err)
        self.assertIn("cannot open", err)


if __name__ == "__main__":
    common.main("server")
