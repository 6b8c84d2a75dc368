#!/usr/bin/env python3
"""`embd serve --data-dir`: /v1/collections end to end on the real server with the shared
random-weight bge-small model. With random weights a query identical to a chunk's text still
embeds to the same vector, so it must come back first with cosine 1; everything else (filters,
replace, delete, restart, SIGKILL mid-ingest, a crash between commit and index save, model
mismatch, every bad input) is checked through the HTTP API and the `embd collections` CLI."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "server"))
import common  # noqa: E402
from common import BIN, MODEL, MODEL_NAME, TMP, Server, request  # noqa: E402

LANGS = ["en", "de", "fr"]
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def doc_text(i, n=12):
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n)) + f" number {i}"


def serve_args(data_dir, *extra):
    args = ["--data-dir", data_dir, *extra]
    helptext = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True).stdout
    if "--insecure" in helptext:  # auth on by default elsewhere: these tests are about collections
        args.append("--insecure")
    return args


class Collections(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.join(TMP, f"data-{self._testMethodName}")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.srv = Server(*serve_args(self.dir))

    def tearDown(self):
        if self.srv.proc.poll() is None:
            self.srv.stop()

    def req(self, method, path, body=None):
        return request(self.srv.port, method, path, body)

    def create(self, name="docs", status=201, **options):
        r = self.req("POST", "/v1/collections", {"name": name, "options": options})
        self.assertEqual(r.status, status, r)
        return r.json()

    def ingest(self, docs, coll="docs", status=200):
        r = self.req("POST", f"/v1/collections/{coll}/documents", {"documents": docs})
        self.assertEqual(r.status, status, r)
        return r.json()

    def search(self, query, coll="docs", status=200, **kw):
        r = self.req("POST", f"/v1/collections/{coll}/search", {"query": query, **kw})
        self.assertEqual(r.status, status, r)
        return r.json()["hits"] if status == 200 else r.json()

    def info(self, coll="docs"):
        r = self.req("GET", f"/v1/collections/{coll}")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def restart(self, *extra, env=None):
        if self.srv.proc.poll() is None:
            self.srv.stop()
        self.srv = Server(*serve_args(self.dir, *extra), env=env)

    def seed(self, n=12):
        self.create(chunk_size=64, overlap=8)
        docs = [{"id": f"d{i}", "text": doc_text(i), "metadata": {"lang": LANGS[i % 3], "group": i % 4, "even": i % 2 == 0}}
                for i in range(n)]
        j = self.ingest(docs)
        self.assertEqual((j["documents"], j["chunks"], j["unchanged"]), (n, n, 0))
        return docs

    # ---- the main path ------------------------------------------------------------------------

    def test_create_ingest_search_filter_delete_restart(self):
        docs = self.seed()
        c = self.info()
        self.assertEqual((c["name"], c["model"], c["dimensions"]), ("docs", MODEL_NAME, common.DIMS))
        self.assertEqual((c["documents"], c["chunks"], c["vectors"]), (12, 12, 12))
        self.assertEqual(c["options"], {"chunk_size": 64, "overlap": 8, "code_aware": False, "index": "flat"})
        for d in docs[:4]:
            hits = self.search(d["text"], k=3)
            self.assertEqual(len(hits), 3)
            self.assertEqual(hits[0]["document_id"], d["id"])
            self.assertAlmostEqual(hits[0]["score"], 1.0, places=4)
            self.assertEqual(hits[0]["text"], d["text"])
            self.assertEqual(hits[0]["metadata"], d["metadata"])
            self.assertGreaterEqual(hits[0]["score"], hits[1]["score"])
            self.assertGreaterEqual(hits[1]["score"], hits[2]["score"])
        # filters: equality, "in", numbers, booleans; the exact match is dropped when filtered out
        hits = self.search(docs[0]["text"], k=20, filter={"lang": "de"})
        self.assertEqual(sorted(h["document_id"] for h in hits), sorted(d["id"] for d in docs if d["metadata"]["lang"] == "de"))
        hits = self.search(docs[0]["text"], k=20, filter={"lang": {"in": ["de", "fr"]}, "group": 1})
        want = [d["id"] for d in docs if d["metadata"]["lang"] in ("de", "fr") and d["metadata"]["group"] == 1]
        self.assertEqual(sorted(h["document_id"] for h in hits), sorted(want))
        self.assertTrue(want)
        hits = self.search(docs[0]["text"], k=20, filter={"even": True})
        self.assertEqual(len(hits), 6)
        self.assertEqual(hits[0]["document_id"], "d0")
        self.assertEqual(self.search("x", k=5, filter={"lang": "xx"}), [])
        # replace: same id, new text; the old text is no longer an exact match
        new = doc_text(99)
        self.ingest([{"id": "d1", "text": new, "metadata": {"lang": "en", "v": 2}}])
        self.assertEqual(self.info()["documents"], 12)
        hits = self.search(new, k=1)
        self.assertEqual((hits[0]["document_id"], hits[0]["metadata"]), ("d1", {"lang": "en", "v": 2}))
        self.assertLess(self.search(docs[1]["text"], k=1)[0]["score"], 0.9999)
        # re-ingesting unchanged text only rewrites the metadata
        j = self.ingest([{"id": "d1", "text": new, "metadata": {"lang": "fr"}}])
        self.assertEqual((j["documents"], j["unchanged"]), (0, 1))
        self.assertEqual(self.search(new, k=1)[0]["metadata"], {"lang": "fr"})
        # delete
        r = self.req("DELETE", "/v1/collections/docs/documents/d2")
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("d2", [h["document_id"] for h in self.search(docs[2]["text"], k=20)])
        r = self.req("DELETE", "/v1/collections/docs/documents/d2")
        self.assertEqual(r.status, 404, r)
        c = self.info()
        self.assertEqual((c["documents"], c["chunks"], c["vectors"]), (11, 11, 11))
        # restart: everything is still there
        self.restart()
        c = self.info()
        self.assertEqual((c["documents"], c["chunks"], c["vectors"]), (11, 11, 11))
        hits = self.search(docs[3]["text"], k=1)
        self.assertEqual(hits[0]["document_id"], "d3")
        self.assertAlmostEqual(hits[0]["score"], 1.0, places=4)
        r = self.req("GET", "/v1/collections")
        self.assertEqual([c["name"] for c in r.json()["collections"]], ["docs"])
        # drop
        self.assertEqual(self.req("DELETE", "/v1/collections/docs").status, 200)
        self.assertEqual(self.req("GET", "/v1/collections/docs").status, 404)
        self.assertEqual(self.req("GET", "/v1/collections").json(), {"collections": []})

    def test_long_document_chunks_and_hnsw(self):
        self.create(name="long", chunk_size=24, overlap=4, code_aware=True, index="hnsw")
        lines = [doc_text(i, 8) for i in range(30)]
        text = "\n".join(lines) + "\n"
        j = self.ingest([{"id": "big", "text": text}], coll="long")
        self.assertGreater(j["chunks"], 5)
        hits = self.search(lines[0], coll="long", k=100)
        self.assertEqual(len(hits), j["chunks"])
        spans = sorted((h["start"], h["end"]) for h in hits)
        self.assertEqual(spans[0][0], 0)
        self.assertEqual(spans[-1][1], len(text.encode()))
        for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
            self.assertLessEqual(s1, e0)  # no gaps (overlap allowed)
        for h in hits:
            self.assertEqual(h["text"], text.encode()[h["start"]:h["end"]].decode())
        # a query equal to one chunk's text finds that chunk
        mid = sorted(hits, key=lambda h: h["chunk_index"])[len(hits) // 2]
        top = self.search(mid["text"], coll="long", k=1)[0]
        self.assertEqual(top["chunk_index"], mid["chunk_index"])
        self.assertAlmostEqual(top["score"], 1.0, places=4)
        self.assertEqual(self.info("long")["options"]["index"], "hnsw")

    # ---- crashes -------------------------------------------------------------------------------

    def test_sigkill_during_ingest_then_consistent(self):
        self.seed(6)
        big = [{"id": f"k{i}", "text": " ".join(doc_text(i * 5 + k, 40) for k in range(6))} for i in range(48)]
        done = {}

        def post():
            try:
                done["r"] = request(self.srv.port, "POST", "/v1/collections/docs/documents", {"documents": big}, timeout=300)
            except Exception as e:  # the connection dies with the server
                done["e"] = e

        t = threading.Thread(target=post)
        t.start()
        time.sleep(1.0)
        self.srv.proc.send_signal(signal.SIGKILL)
        t.join(60)
        self.srv.wait_exit(30)
        self.restart()
        c = self.info()
        self.assertIn(c["documents"], (6, 6 + len(big)), c)  # one transaction: all or nothing
        self.assertEqual(c["vectors"], c["chunks"])
        if "r" in done and done["r"].status == 200:
            self.assertEqual(c["documents"], 6 + len(big))
        hits = self.search(doc_text(4), k=1)
        self.assertEqual((hits[0]["document_id"], round(hits[0]["score"], 4)), ("d4", 1.0))
        # and the collection still takes writes
        self.ingest([{"id": "after", "text": "written after the crash"}])
        self.assertEqual(self.search("written after the crash", k=1)[0]["document_id"], "after")

    def test_crash_between_commit_and_index_save(self):
        self.seed(4)
        # this server commits to SQLite but never saves the index file: a crash right after commit
        self.restart(env={"EMBD_TEST_SKIP_INDEX_SAVE": "1"})
        self.ingest([{"id": "late", "text": "committed but never indexed on disk"}])
        self.assertEqual(self.req("DELETE", "/v1/collections/docs/documents/d0").status, 200)
        self.srv.proc.send_signal(signal.SIGKILL)
        self.srv.wait_exit(30)
        self.restart()
        c = self.info()
        self.assertEqual((c["documents"], c["chunks"], c["vectors"]), (4, 4, 4))
        self.assertEqual(self.search("committed but never indexed on disk", k=1)[0]["document_id"], "late")
        self.assertNotIn("d0", [h["document_id"] for h in self.search(doc_text(0), k=10)])

    # ---- errors --------------------------------------------------------------------------------

    def test_bad_requests(self):
        self.seed(3)
        before = self.info()
        self.assertEqual(self.req("POST", "/v1/collections/nope/search", {"query": "x"}).status, 404)
        self.assertEqual(self.req("POST", "/v1/collections/nope/documents", {"documents": [{"id": "a", "text": "b"}]}).status, 404)
        self.assertEqual(self.req("DELETE", "/v1/collections/nope").status, 404)
        self.assertEqual(self.req("GET", "/v1/collections/nope").status, 404)
        self.assertEqual(self.req("GET", "/v1/collections/docs/whatever").status, 404)
        self.create(status=409)  # duplicate
        for body in [{}, {"name": ""}, {"name": "a/b"}, {"name": "x" * 65}, {"name": 3}, {"name": "ok", "options": 1},
                     {"name": "ok", "options": {"chunk_size": 10000}}, {"name": "ok", "options": {"chunk_size": 2}},
                     {"name": "ok", "options": {"chunk_size": 64, "overlap": 64}},
                     {"name": "ok", "options": {"index": "ivf"}}, {"name": "ok", "options": {"code_aware": "yes"}},
                     {"name": "ok", "options": {"bogus": 1}}]:
            r = self.req("POST", "/v1/collections", body)
            self.assertEqual(r.status, 422, (body, r))
            self.assertTrue(r.error()["message"], r)
        r = self.req("POST", "/v1/collections", {"name": "ok", "model": "some-other-model"})
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.error()["type"], "model_mismatch")
        self.assertEqual(self.req("POST", "/v1/collections", "{not json").status, 422)
        self.assertEqual(self.req("POST", "/v1/collections", "[1]").status, 422)
        for body in [{}, {"documents": []}, {"documents": "x"}, {"documents": [{"text": "no id"}]},
                     {"documents": [{"id": "", "text": "t"}]}, {"documents": [{"id": 1, "text": "t"}]},
                     {"documents": [{"id": "a"}]}, {"documents": [{"id": "a", "text": 5}]},
                     {"documents": [{"id": "a", "text": "t", "metadata": [1]}]},
                     {"documents": [{"id": "a", "text": "t"}, {"id": "a", "text": "u"}]},
                     {"documents": [{"id": "a", "text": "t\u0000u"}]}, {"documents": [{"id": "x" * 513, "text": "t"}]}]:
            r = self.req("POST", "/v1/collections/docs/documents", body)
            self.assertEqual(r.status, 422, (body, r))
        r = self.req("POST", "/v1/collections/docs/documents", b'{"documents":[{"id":"a","text":"bad \xff byte"}]}')
        self.assertEqual(r.status, 422, r)
        for body in [{}, {"query": 1}, {"query": "x", "k": 0}, {"query": "x", "k": 1001}, {"query": "x", "k": "5"},
                     {"query": "x", "k": 1.5}, {"query": "x", "filter": [1]}, {"query": "x", "filter": {"a": [1]}},
                     {"query": "x", "filter": {"a": {"in": []}}}, {"query": "x", "filter": {"a": {"gt": 1}}},
                     {"query": "x", "filter": {"a": {}}}]:
            r = self.req("POST", "/v1/collections/docs/search", body)
            self.assertEqual(r.status, 422, (body, r))
        r = self.req("POST", "/v1/collections/docs/search", {"query": "x", "rerank": {"top_n": 3}})
        self.assertEqual((r.status, r.error()["type"]), (400, "no_reranker"))
        self.assertEqual(self.req("PUT", "/v1/collections/docs/search", {"query": "x"}).status, 405)
        self.assertEqual(self.req("GET", "/v1/collections/docs/documents").status, 405)
        self.assertEqual(self.req("PATCH", "/v1/collections").status, 405)
        after = self.info()
        self.assertEqual((after["documents"], after["chunks"]), (before["documents"], before["chunks"]))  # nothing lost
        # a server with another model refuses the collection
        self.restart("--model-name", "another-model")
        r = self.req("POST", "/v1/collections/docs/search", {"query": "x"})
        self.assertEqual((r.status, r.error()["type"]), (409, "model_mismatch"))
        r = self.req("POST", "/v1/collections/docs/documents", {"documents": [{"id": "z", "text": "t"}]})
        self.assertEqual(r.status, 409, r)
        r = self.req("POST", "/v1/collections/docs/documents", {"documents": [{"id": "z", "text": "t"}], "async": True})
        self.assertEqual((r.status, r.error()["type"]), (409, "model_mismatch"))  # refused before it becomes a job
        self.assertEqual(self.req("GET", "/v1/collections/docs").json()["documents"], 3)

    def test_collections_off_without_data_dir(self):
        self.srv.stop()
        self.srv = Server(*[a for a in serve_args("x") if a not in ("--data-dir", "x")])
        r = self.req("GET", "/v1/collections")
        self.assertEqual(r.status, 404, r)
        self.assertIn("--data-dir", r.error()["message"])


class Rerank(unittest.TestCase):
    """--rerank-model: a tiny random-weight cross-encoder reranks the vector hits; its scores must
    be what `embd rerank` gives for the same (query, chunk) pairs."""

    @classmethod
    def setUpClass(cls):
        cls.model = os.path.join(TMP, "tiny-rank.gguf")
        tok = os.path.join(common.SHARED, "models", "ms-marco-MiniLM-L-12-v2", "tokenizer.json")
        subprocess.run([sys.executable, os.path.join(common.SOURCE, "tools", "gen_random_model.py"), "--out", cls.model,
                        "--shape", "tiny", "--pooling", "rank", "--std", "0.1", "--seed", "5", "--tokenizer", tok],
                       check=True, capture_output=True)

    def test_rerank_hits(self):
        import json
        import math
        d = os.path.join(TMP, "rerank-data")
        shutil.rmtree(d, ignore_errors=True)
        srv = Server(*serve_args(d, "--rerank-model", self.model))
        try:
            def post(path, body):
                return request(srv.port, "POST", path, body)
            self.assertEqual(post("/v1/collections", {"name": "r"}).status, 201)
            docs = [{"id": f"d{i}", "text": doc_text(i)} for i in range(8)]
            self.assertEqual(post("/v1/collections/r/documents", {"documents": docs}).status, 200)
            query = doc_text(3)
            plain = post("/v1/collections/r/search", {"query": query, "k": 5}).json()["hits"]
            r = post("/v1/collections/r/search", {"query": query, "k": 5, "rerank": {"top_n": 3, "model": "tiny-rank"}})
            self.assertEqual(r.status, 200, r)
            j = r.json()
            self.assertEqual(j["rerank_model"], "tiny-rank")
            hits = j["hits"]
            self.assertEqual(len(hits), 3)
            self.assertTrue({h["document_id"] for h in hits} <= {h["document_id"] for h in plain})
            scores = [h["rerank_score"] for h in hits]
            self.assertEqual(scores, sorted(scores, reverse=True))
            # the same pairs through `embd rerank --raw`
            cand = [h["text"] for h in plain]
            lines = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(cand))
            p = subprocess.run([BIN, "rerank", "-m", self.model, "-q", query, "--raw", "-t", "2"], input=lines,
                               capture_output=True, text=True, timeout=300)
            self.assertEqual(p.returncode, 0, p.stderr)
            want = {cand[x["index"]]: 1 / (1 + math.exp(-x["score"])) for x in json.loads(p.stdout)["results"]}
            for h in hits:
                self.assertAlmostEqual(h["rerank_score"], want[h["text"]], places=4)
            self.assertAlmostEqual(scores[0], max(want.values()), places=4)
            # bad rerank requests
            for rr in [{"top_n": 0}, {"top_n": 6}, {"top_n": "2"}, [1], {"model": 3}]:
                self.assertEqual(post("/v1/collections/r/search", {"query": "x", "k": 5, "rerank": rr}).status, 422, rr)
            r = post("/v1/collections/r/search", {"query": "x", "rerank": {"model": "other-reranker"}})
            self.assertEqual((r.status, r.error()["type"]), (400, "no_reranker"))
        finally:
            srv.stop()

    def test_rerank_model_must_be_a_cross_encoder(self):
        p = subprocess.run([BIN, "serve", "--model", MODEL, "--port", "0", "--rerank-model", MODEL, "--data-dir",
                            os.path.join(TMP, "rr-bad"), *serve_args("x")[2:]], capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("not a cross-encoder", p.stderr)
        p = subprocess.run([BIN, "serve", "--insecure", "--model", MODEL, "--rerank-model", self.model], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("--data-dir", p.stderr)


class CLI(unittest.TestCase):
    def run_cli(self, *args, ok=True):
        p = subprocess.run([BIN, "collections", *args], capture_output=True, text=True, timeout=600)
        if ok:
            self.assertEqual(p.returncode, 0, p.stderr)
        return p

    def test_cli_create_ingest_search_delete_and_server_reads_it(self):
        d = os.path.join(TMP, "cli-data")
        src = os.path.join(TMP, "cli-src")
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(src, ignore_errors=True)
        for sub in ("sub/deep", ".hidden", "build"):
            os.makedirs(os.path.join(src, sub))
        texts = {"a.py": "def f(x):\n    return x + 1\n\n\ndef g(y):\n    return y * 2\n",
                 "sub/b.md": "# Title\n\nsome prose about collections\n", ".hidden/c.txt": "hidden text",
                 "build/out.txt": "ignored by the top .gitignore", "sub/notes.log": "ignored by name",
                 "sub/keep.log": "kept by a negation", "sub/deep/x.tmp": "ignored by sub/.gitignore",
                 ".gitignore": "# comment\n/build/\n*.log\n!keep.log\n", "sub/.gitignore": "deep/*.tmp\n"}
        for name, t in texts.items():
            with open(os.path.join(src, name), "w") as f:
                f.write(t)
        with open(os.path.join(src, "bin.dat"), "wb") as f:
            f.write(b"\x00\x01\x02binary")
        base = ["--data-dir", d, "--model", MODEL]
        self.run_cli("create", "code", *base, "--chunk-size", "64", "--code-aware")
        p = self.run_cli("create", "code", *base, ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("already exists", p.stderr)
        self.run_cli("ingest", "code", *base, "--quiet", src)
        import json
        info = json.loads(self.run_cli("info", "code", "--data-dir", d).stdout)
        self.assertEqual(info["documents"], 3)  # hidden, binary and .gitignore'd files skipped
        listed = self.run_cli("search", "code", *base, "--k", "50", "x").stdout.splitlines()
        self.assertEqual(sorted({json.loads(l)["document_id"] for l in listed}),
                         sorted(os.path.join(src, n) for n in ("a.py", "sub/b.md", "sub/keep.log")))
        self.assertEqual(info["vectors"], info["chunks"])
        out = self.run_cli("search", "code", *base, "--k", "1", texts["sub/b.md"]).stdout
        hit = json.loads(out.splitlines()[0])
        self.assertEqual(hit["document_id"], os.path.join(src, "sub/b.md"))
        self.assertAlmostEqual(hit["score"], 1.0, places=4)
        out = self.run_cli("search", "code", *base, "--filter", '{"ext": "py"}', "prose").stdout
        self.assertTrue(all(json.loads(l)["metadata"]["ext"] == "py" for l in out.splitlines()))
        self.assertTrue(out.strip())
        # bad flags and arguments
        self.assertEqual(self.run_cli("search", "code", *base, "--k", "0", "x", ok=False).returncode, 1)
        self.assertEqual(self.run_cli("search", "code", *base, "--filter", "[1]", "x", ok=False).returncode, 1)
        self.assertEqual(self.run_cli("search", "nope", *base, "x", ok=False).returncode, 1)
        self.assertEqual(self.run_cli("frobnicate", "--data-dir", d, ok=False).returncode, 1)
        self.assertEqual(self.run_cli("search", "code", *base, "--model-name", "other", "x", ok=False).returncode, 1)
        # the server opens what the CLI wrote (same model name rule)
        srv = Server(*serve_args(d))
        try:
            r = request(srv.port, "POST", "/v1/collections/code/search", {"query": texts["sub/b.md"], "k": 1})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["hits"][0]["document_id"], os.path.join(src, "sub/b.md"))
        finally:
            srv.stop()
        self.run_cli("delete", "code", "--data-dir", d, "--document", os.path.join(src, "a.py"))
        self.assertEqual(json.loads(self.run_cli("info", "code", "--data-dir", d).stdout)["documents"], 2)
        self.run_cli("delete", "code", "--data-dir", d)
        self.assertEqual(self.run_cli("list", "--data-dir", d).stdout, "")


if __name__ == "__main__":
    common.main("collections")
