#!/usr/bin/env python3
"""`embd serve` with a cross-encoder: TEI POST /rerank and Cohere/Jina POST /v1/rerank.

The model is a random-weight tiny reranker from tools/gen_random_model.py (--pooling rank, the
ms-marco-MiniLM-L-12-v2 vocabulary). Scores are checked against `embd rerank --raw` on the same
model (whose logits tests/fidelity/test_rerank.py checks against the numpy reference), so this
file tests the HTTP layer: shapes, ordering, top_n, documents, raw vs sigmoid scores,
truncation, every bad input, concurrency, and that embedding routes refuse a cross-encoder."""
import json
import math
import os
import subprocess
import sys
import unittest

import common
from common import BIN, SHARED, SOURCE, TMP, Server, run_threads

TOKENIZER = os.path.join(SHARED, "models", "ms-marco-MiniLM-L-12-v2", "tokenizer.json")
MODEL = os.path.join(TMP, "tiny-rank.gguf")
QUERY = "which server never loses an ingest job?"
DOCS = ["embd keeps a durable job queue and resumes from checkpoints",
        "bananas are rich in potassium",
        "a Python service around ONNX Runtime that falls over on big repositories",
        "",
        "naïve café 東京 🙂",
        "word " * 600]


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


class Rerank(unittest.TestCase):
    srv = None

    @classmethod
    def setUpClass(cls):
        subprocess.run([sys.executable, os.path.join(SOURCE, "tools", "gen_random_model.py"), "--out", MODEL,
                        "--shape", "tiny", "--pooling", "rank", "--std", "0.1", "--seed", "5", "--tokenizer",
                        TOKENIZER], check=True)
        lines = "".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(DOCS))
        p = subprocess.run([BIN, "rerank", "-m", MODEL, "-q", QUERY, "--raw", "-t", "2"], input=lines,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        cls.logits = [r["score"] for r in json.loads(p.stdout)["results"]]
        cls.srv = Server(model=MODEL)

    @classmethod
    def tearDownClass(cls):
        if cls.srv:
            cls.srv.stop()

    def post(self, path, body):
        return self.srv.post(path, body)

    def assertError(self, r, status, etype, index=None):
        self.assertEqual(r.status, status, r)
        e = r.error()
        self.assertEqual(e["type"], etype, e)
        if index is not None:
            self.assertEqual(e.get("index"), index, e)

    def assertScores(self, got, want):
        for g, w in zip(got, want):
            self.assertLess(abs(g - w), 1e-4 * (1 + abs(w)), (got, want))

    def test_tei_rerank(self):
        r = self.post("/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True})
        self.assertEqual(r.status, 200, r)
        res = r.json()
        self.assertEqual(sorted(x["index"] for x in res), list(range(len(DOCS))))
        scores = [x["score"] for x in res]
        self.assertEqual(scores, sorted(scores, reverse=True), "best first")
        by_index = {x["index"]: x["score"] for x in res}
        self.assertScores([by_index[i] for i in range(len(DOCS))], self.logits)
        self.assertTrue(all("text" not in x for x in res))
        self.assertIn("x-compute-tokens", r.headers)

    def test_tei_sigmoid_and_text(self):
        r = self.post("/rerank", {"query": QUERY, "texts": DOCS, "return_text": True})
        self.assertEqual(r.status, 200, r)
        for x in r.json():
            self.assertScores([x["score"]], [sigmoid(self.logits[x["index"]])])
            self.assertEqual(x["text"], DOCS[x["index"]])

    def test_cohere_shape(self):
        docs = [{"text": d} if i % 2 else d for i, d in enumerate(DOCS)]  # both document forms
        r = self.post("/v1/rerank", {"model": "m", "query": QUERY, "documents": docs, "top_n": 3,
                                     "return_documents": True})
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j["model"], "tiny-rank")
        self.assertEqual(len(j["results"]), 3)
        best = sorted(range(len(DOCS)), key=lambda i: -self.logits[i])[:3]
        self.assertEqual([x["index"] for x in j["results"]], best)
        for x in j["results"]:
            self.assertScores([x["relevance_score"]], [sigmoid(self.logits[x["index"]])])
            self.assertEqual(x["document"], {"text": DOCS[x["index"]]})
        self.assertGreater(j["usage"]["total_tokens"], 0)
        r = self.post("/v1/rerank", {"query": QUERY, "documents": DOCS, "top_n": 100})
        self.assertEqual(len(r.json()["results"]), len(DOCS), "top_n above the count returns all")
        self.assertTrue(all("document" not in x for x in r.json()["results"]))

    def test_truncation(self):
        r = self.post("/rerank", {"query": QUERY, "texts": DOCS, "truncate": False})
        self.assertError(r, 413, "input_too_long", index=5)
        r = self.post("/rerank", {"query": QUERY, "texts": DOCS[:5], "truncate": False, "raw_scores": True})
        self.assertEqual(r.status, 200, r)
        by_index = {x["index"]: x["score"] for x in r.json()}
        self.assertScores([by_index[i] for i in range(5)], self.logits[:5])
        long_query = "query " * 2000  # cut to half the context, documents still get room
        r = self.post("/rerank", {"query": long_query, "texts": ["a", "b"]})
        self.assertEqual(r.status, 200, r)

    def test_bad_requests(self):
        cases = [
            ({"texts": ["a"]}, 422, "invalid_request"),
            ({"query": 3, "texts": ["a"]}, 422, "invalid_request"),
            ({"query": "", "texts": ["a"]}, 422, "invalid_request"),
            ({"query": "q"}, 422, "invalid_request"),
            ({"query": "q", "texts": []}, 422, "invalid_request"),
            ({"query": "q", "texts": "a"}, 422, "invalid_request"),
            ({"query": "q", "texts": ["a", 5]}, 422, "invalid_request"),
            ({"query": "q", "texts": ["a"], "raw_scores": "yes"}, 422, "invalid_request"),
            ({"query": "q", "texts": ["a"], "truncation_direction": "Left"}, 422, "invalid_request"),
        ]
        for body, status, etype in cases:
            self.assertError(self.post("/rerank", body), status, etype)
        self.assertError(self.post("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}), 422, "invalid_request")
        self.assertError(self.post("/v1/rerank", {"query": "q", "documents": [{"txt": "a"}]}), 422, "invalid_request", 0)
        self.assertError(self.post("/v1/rerank", {"query": "q", "documents": ["a"], "model": 1}), 422, "invalid_request")
        self.assertError(self.post("/rerank", {"query": "q", "texts": ["x"] * 5000}), 413, "too_many_items")
        r = common.request(self.srv.port, "POST", "/rerank", b'{"query":"q","texts":["ok","bad \xff byte"]}')
        self.assertError(r, 422, "invalid_utf8", index=1)
        r = common.request(self.srv.port, "POST", "/rerank", b'{"query":"bad \xfe","texts":["ok"]}')
        self.assertError(r, 422, "invalid_utf8")
        r = common.request(self.srv.port, "POST", "/rerank", b'{"query": "q", "texts": [')
        self.assertEqual(r.status, 422, r)

    def test_embedding_routes_refuse_a_cross_encoder(self):
        for path, body in (("/v1/embeddings", {"input": "x"}), ("/embed", {"inputs": "x"})):
            self.assertError(self.post(path, body), 400, "not_an_embedding_model")
        r = self.post("/tokenize", {"inputs": "hello"})
        self.assertEqual(r.status, 200, r)

    def test_info(self):
        j = self.srv.get("/info").json()
        self.assertEqual(j["model_type"], {"reranker": {"pooling": "rank"}})

    def test_concurrent_requests_same_scores(self):
        def one(i):
            r = self.post("/rerank", {"query": QUERY, "texts": DOCS[i % 3:], "raw_scores": True})
            return r.status, {x["index"] + i % 3: x["score"] for x in r.json()}
        out = run_threads(one, [(i,) for i in range(12)])
        for st, scores in out:
            self.assertEqual(st, 200)
            self.assertScores([scores[k] for k in sorted(scores)], [self.logits[k] for k in sorted(scores)])
        m = self.srv.metrics()
        self.assertGreaterEqual(common.requests_total(m, "/rerank", 200), 12)


if __name__ == "__main__":
    common.main("rerank")
