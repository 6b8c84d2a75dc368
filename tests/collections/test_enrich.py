#!/usr/bin/env python3
"""Enrichment and ingest jobs against real chat servers, no mocks: two llama-server processes
(built from the same llama.cpp source by scripts/build-llama.sh --tools) serve a tiny
random-weight generative GGUF (gen_tiny_llm.py) on 127.0.0.1. The model is rigged to always
reply with exactly max_tokens printable tokens, so every successful call gives a context and
llama-server's tokens_predicted_total counts the calls each instance answered.

Failures use real sockets too: a port that refuses connections and a listener that accepts and
never answers. The Ollama request/response shape is not served by llama-server; it is covered
by tests/unit/test_enrich.c."""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "server"))
import common  # noqa: E402
from common import BIN, MODEL, TMP, Server, metric, parse_metrics, request  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = common.SOURCE
MAX_TOKENS = 6
KEY = "sekrit-key-4711"
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def doc_text(i, n=10):
    return " ".join(WORDS[(i * 5 + k * 3) % len(WORDS)] for k in range(n)) + f" number {i}"


def llama_bin():
    d = os.environ.get("EMBD_LLAMA_BIN")
    if not d:  # prints the directory at once when the tools are cached; builds them otherwise
        d = subprocess.run(["bash", os.path.join(SOURCE, "scripts", "build-llama.sh"), "--tools"], check=True,
                           capture_output=True, text=True).stdout.strip().splitlines()[-1]
    exe = os.path.join(d, "llama-server")
    if not os.access(exe, os.X_OK):
        sys.exit(f"no llama-server in {d} (scripts/build-llama.sh --tools builds it)")
    return exe


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return p


class LlamaServer:
    def __init__(self, exe, model, api_key=None):
        self.port = free_port()
        args = [exe, "-m", model, "--host", "127.0.0.1", "--port", str(self.port), "-c", "4096", "-np", "2",
                "-t", "1", "--metrics", "--no-webui"]
        if api_key:
            args += ["--api-key", api_key]
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.log = open(os.path.join(TMP, f"llama-{self.port}.log"), "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 60
        while True:
            try:
                if request(self.port, "GET", "/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise AssertionError(f"llama-server did not come up:\n{open(self.log.name).read()[-3000:]}")
            time.sleep(0.2)
        self.url = f"http://127.0.0.1:{self.port}"

    def predicted(self):
        """Tokens generated so far: MAX_TOKENS per answered call with the rigged model."""
        r = request(self.port, "GET", "/metrics", headers=self.headers)
        assert r.status == 200, r
        return metric(parse_metrics(r.body.decode()), "llamacpp:tokens_predicted_total")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class SilentServer:
    """Accepts connections and never answers (until stopped)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self.conns = []
        self.stopped = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)

    def stop(self):
        self.stopped = True
        for c in self.conns:
            c.close()
        self.sock.close()


class Enrich(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        exe = llama_bin()
        cls.model = os.path.join(TMP, "tiny-llm.gguf")
        subprocess.run([sys.executable, os.path.join(HERE, "gen_tiny_llm.py"), cls.model], check=True)
        cls.a = LlamaServer(exe, cls.model)
        cls.b = LlamaServer(exe, cls.model, api_key=KEY)  # the key must reach it, or every call is a 401

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.b.stop()

    def setUp(self):
        self.dir = os.path.join(TMP, f"data-{self._testMethodName}")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.srv = Server("--data-dir", self.dir)

    def tearDown(self):
        if self.srv.proc.poll() is None:
            self.srv.stop()

    def req(self, method, path, body=None):
        return request(self.srv.port, method, path, body)

    def endpoints(self):
        return [{"url": self.a.url, "model": "tiny"}, {"url": self.b.url, "api": "openai", "model": "tiny", "api_key": KEY}]

    def create(self, name, enrich, status=201, **options):
        r = self.req("POST", "/v1/collections", {"name": name, "options": {"chunk_size": 64, "overlap": 8, **options,
                                                                             "enrich": enrich}})
        self.assertEqual(r.status, status, r)
        return r.json()

    def search(self, coll, query, k=1):
        r = self.req("POST", f"/v1/collections/{coll}/search", {"query": query, "k": k})
        self.assertEqual(r.status, 200, r)
        return r.json()["hits"]

    def wait_job(self, coll, job_id, timeout=300):
        """Polls until the job ends; returns (final status, every status seen)."""
        seen = []
        end = time.monotonic() + timeout
        while True:
            r = self.req("GET", f"/v1/collections/{coll}/jobs/{job_id}")
            self.assertEqual(r.status, 200, r)
            seen.append(r.json())
            if seen[-1]["state"] not in ("queued", "running"):
                return seen[-1], seen
            self.assertLess(time.monotonic(), end, seen[-1])
            time.sleep(0.05)

    # ---- the main path --------------------------------------------------------------------

    def test_round_robin_context_stored_and_returned(self):
        a0, b0 = self.a.predicted(), self.b.predicted()
        info = self.create("kb", {"endpoints": self.endpoints(), "max_tokens": MAX_TOKENS, "concurrency": 2,
                                  "prompt": "Document {{id}} ({{title}}):\n{{document}}\nChunk:\n{{chunk}}\nContext:"})
        # the configuration is echoed without the key
        e = info["options"]["enrich"]
        self.assertEqual([x["api_key_set"] for x in e["endpoints"]], [False, True])
        self.assertEqual((e["max_tokens"], e["concurrency"], e["retries"]), (MAX_TOKENS, 2, 2))
        for path in ("/v1/collections/kb", "/v1/collections"):
            r = self.req("GET", path)
            self.assertEqual(r.status, 200, r)
            self.assertNotIn(KEY.encode(), r.body)
            self.assertIn(b"api_key_set", r.body)
        docs = [{"id": f"d{i}", "text": doc_text(i), "metadata": {"title": f"Title {i}"}} for i in range(6)]
        r = self.req("POST", "/v1/collections/kb/documents", {"documents": docs})
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual((j["documents"], j["chunks"], j["enriched"], j["degraded"]), (6, 6, 6, 0), j)
        # round-robin: six calls, three each (no retries were needed)
        self.assertEqual(self.a.predicted() - a0, 3 * MAX_TOKENS)
        self.assertEqual(self.b.predicted() - b0, 3 * MAX_TOKENS)
        for d in docs:
            hit = self.search("kb", d["text"])[0]
            self.assertEqual((hit["document_id"], hit["text"]), (d["id"], d["text"]))
            ctx = hit["context"]
            self.assertTrue(ctx.strip() and ctx.isascii() and ctx.isprintable(), ctx)
            # what was embedded is context + blank line + chunk: that exact text comes back with cosine 1
            top = self.search("kb", ctx + "\n\n" + d["text"])[0]
            self.assertEqual(top["document_id"], d["id"])
            self.assertAlmostEqual(top["score"], 1.0, places=4)
        m = self.srv.metrics()
        self.assertEqual(metric(m, "embd_enrich_chunks_total", {"outcome": "enriched"}), 6)
        self.assertEqual(metric(m, "embd_enrich_chunks_total", {"outcome": "degraded"}), 0)
        # survives a restart: the configuration (with its key) and the contexts are stored
        self.srv.stop()
        self.srv = Server("--data-dir", self.dir)
        j = self.req("POST", "/v1/collections/kb/documents",
                     {"documents": [{"id": "d9", "text": doc_text(9)}]}).json()
        self.assertEqual((j["enriched"], j["degraded"]), (1, 0), j)
        self.assertTrue(self.search("kb", doc_text(0))[0]["context"])

    def test_failing_endpoints_degrade_to_plain_chunks(self):
        silent = SilentServer()
        try:
            refused = f"http://127.0.0.1:{free_port()}"
            self.create("deg", {"endpoints": [{"url": refused, "model": "m"}, {"url": silent.url, "model": "m"}],
                                "timeout_ms": 400, "retries": 1, "concurrency": 2})
            docs = [{"id": f"d{i}", "text": doc_text(i)} for i in range(3)]
            t0 = time.monotonic()
            r = self.req("POST", "/v1/collections/deg/documents", {"documents": docs})
            dt = time.monotonic() - t0
            self.assertEqual(r.status, 200, r)
            j = r.json()
            self.assertEqual((j["documents"], j["chunks"], j["enriched"], j["degraded"]), (3, 3, 0, 3), j)
            self.assertTrue(j["enrich_error"], j)
            # 3 chunks x 2 tries, 2 at a time, each at most 0.4 s (+ backoff), then 3 plain embeddings:
            # bounded by the options, not by the 30 s default timeout
            self.assertLess(dt, 20)
            self.assertGreaterEqual(silent.accepted, 1)
            for d in docs:  # embedded plain: the chunk's own text is an exact match, no context
                hit = self.search("deg", d["text"])[0]
                self.assertEqual(hit["document_id"], d["id"])
                self.assertAlmostEqual(hit["score"], 1.0, places=4)
                self.assertNotIn("context", hit)
            self.assertEqual(metric(self.srv.metrics(), "embd_enrich_chunks_total", {"outcome": "degraded"}), 3)
            # a 401 (wrong key) is not retried and degrades too
            self.create("badkey", {"endpoints": [{"url": self.b.url, "model": "tiny", "api_key": "wrong"}],
                                   "max_tokens": MAX_TOKENS})
            b0 = self.b.predicted()
            j = self.req("POST", "/v1/collections/badkey/documents", {"documents": docs[:1]}).json()
            self.assertEqual((j["enriched"], j["degraded"]), (0, 1), j)
            self.assertIn("401", j["enrich_error"])
            self.assertEqual(self.b.predicted(), b0)
        finally:
            silent.stop()

    def test_bad_enrich_options(self):
        ok = {"url": self.a.url, "model": "tiny"}
        cases = [
            ("x", "'enrich' must be an object"),
            ({}, "enrich.endpoints"),
            ({"endpoints": []}, "enrich.endpoints"),
            ({"endpoints": [ok] * 17}, "enrich.endpoints"),
            ({"endpoints": ["http://x"]}, "endpoints[0] must be an object"),
            ({"endpoints": [{"url": "ftp://127.0.0.1/", "model": "m"}]}, "http:// or https://"),
            ({"endpoints": [{"url": "not a url", "model": "m"}]}, "url"),
            ({"endpoints": [{"url": "http://127.0.0.1?q=1", "model": "m"}]}, "no query"),
            ({"endpoints": [{"model": "m"}]}, "url (string) is required"),
            ({"endpoints": [{"url": "http://127.0.0.1"}]}, "model"),
            ({"endpoints": [{"url": "http://127.0.0.1", "model": "m", "api": "grpc"}]}, "\"openai\" or \"ollama\""),
            ({"endpoints": [{"url": "http://127.0.0.1", "model": "m", "api_key": "a\r\nX-Evil: 1"}]}, "api_key"),
            ({"endpoints": [{"url": "http://127.0.0.1", "model": "m", "token": "t"}]}, "unknown field 'token'"),
            ({"endpoints": [ok], "max_tokens": 0}, "enrich.max_tokens"),
            ({"endpoints": [ok], "max_tokens": "10"}, "enrich.max_tokens"),
            ({"endpoints": [ok], "concurrency": 1000}, "enrich.concurrency"),
            ({"endpoints": [ok], "timeout_ms": 5}, "enrich.timeout_ms"),
            ({"endpoints": [ok], "retries": 99}, "enrich.retries"),
            ({"endpoints": [ok], "document_bytes": -1}, "enrich.document_bytes"),
            ({"endpoints": [ok], "prompt": "no placeholder"}, "must contain {{chunk}}"),
            ({"endpoints": [ok], "prompt": "{{chunk}} {{bogus}}"}, "unknown placeholder"),
            ({"endpoints": [ok], "prompt": 5}, "enrich.prompt"),
            ({"endpoints": [ok], "temperature": 1}, "unknown option 'temperature'"),
        ]
        for enrich, want in cases:
            r = self.req("POST", "/v1/collections", {"name": "bad", "options": {"enrich": enrich}})
            self.assertEqual(r.status, 422, (enrich, r))
            self.assertIn(want, r.error()["message"], enrich)
        self.assertEqual(self.req("GET", "/v1/collections/bad").status, 404)

    # ---- ingest jobs ----------------------------------------------------------------------

    def test_async_ingest_job_progress(self):
        a0, b0 = self.a.predicted(), self.b.predicted()
        self.create("big", {"endpoints": self.endpoints(), "max_tokens": MAX_TOKENS, "concurrency": 2})
        self.create("other", {"endpoints": self.endpoints(), "max_tokens": MAX_TOKENS})
        docs = [{"id": f"d{i}", "text": doc_text(i, 10 + 40 * (i % 3)), "metadata": {"n": i}} for i in range(40)]
        r = self.req("POST", "/v1/collections/big/documents", {"documents": docs, "async": True})
        self.assertEqual(r.status, 202, r)
        job = r.json()
        self.assertEqual((job["object"], job["collection"], job["documents"]["total"]), ("ingest_job", "big", 40))
        self.assertIn(job["state"], ("queued", "running"))
        final, seen = self.wait_job("big", job["id"])
        self.assertEqual(final["state"], "done", final)
        # progress only grows, and reaches the totals
        for prev, cur in zip(seen, seen[1:]):
            self.assertGreaterEqual(cur["documents"]["done"], prev["documents"]["done"])
            self.assertGreaterEqual(cur["chunks"]["done"], prev["chunks"]["done"])
            self.assertGreaterEqual(cur["enrichment"]["done"], prev["enrichment"]["done"])
        total = final["chunks"]["total"]
        self.assertGreater(total, 40)  # the longer documents make two chunks
        self.assertEqual(final["documents"], {"done": 40, "total": 40, "ingested": 40, "unchanged": 0, "failed": 0})
        self.assertEqual(final["chunks"], {"done": total, "total": total, "stored": total})
        self.assertEqual((final["enrichment"]["enriched"], final["enrichment"]["degraded"]), (total, 0))
        self.assertEqual(final["errors"], [])
        self.assertGreaterEqual(final["finished"], final["started"])
        self.assertEqual(self.a.predicted() - a0 + self.b.predicted() - b0, total * MAX_TOKENS)
        info = self.req("GET", "/v1/collections/big").json()
        self.assertEqual((info["documents"], info["chunks"]), (40, total))
        for d in docs[::7]:  # every chunk is stored with a context and found by what was embedded
            r = self.req("POST", "/v1/collections/big/search", {"query": d["text"], "k": 5, "filter": {"n": d["metadata"]["n"]}})
            hits = r.json()["hits"]
            hits.sort(key=lambda h: h["chunk_index"])  # the document's chunks, covering its text
            self.assertEqual(([h["chunk_index"] for h in hits], hits[0]["start"], hits[-1]["end"]),
                             (list(range(len(hits))), 0, len(d["text"])))
            for h in hits:
                top = self.search("big", h["context"] + "\n\n" + h["text"])[0]
                self.assertEqual((top["document_id"], top["chunk_id"]), (d["id"], h["chunk_id"]))
                self.assertAlmostEqual(top["score"], 1.0, places=4)
        # the job is listed; unknown ids, another collection's id and a finished job's cancel fail
        lst = self.req("GET", "/v1/collections/big/jobs").json()["jobs"]
        self.assertEqual([x["id"] for x in lst], [job["id"]])
        self.assertEqual(self.req("GET", "/v1/collections/other/jobs").json()["jobs"], [])
        for path in (f"/v1/collections/big/jobs/nope", f"/v1/collections/other/jobs/{job['id']}"):
            r = self.req("GET", path)
            self.assertEqual(r.status, 404, r)
            self.assertEqual(r.error()["type"], "not_found")
        self.assertEqual(self.req("GET", "/v1/collections/none/jobs").status, 404)
        self.assertEqual(self.req("DELETE", f"/v1/collections/big/jobs/{job['id']}").status, 409)
        self.assertEqual(self.req("POST", f"/v1/collections/big/jobs/{job['id']}").status, 405)
        # a job for a collection that does not exist is refused at once; bad "async" is a 422
        r = self.req("POST", "/v1/collections/none/documents", {"documents": docs[:1], "async": True})
        self.assertEqual(r.status, 404, r)
        r = self.req("POST", "/v1/collections/big/documents", {"documents": docs[:1], "async": "yes"})
        self.assertEqual(r.status, 422, r)
        # the same documents again: all unchanged, nothing enriched
        r = self.req("POST", "/v1/collections/big/documents", {"documents": docs, "async": True})
        final, _ = self.wait_job("big", r.json()["id"])
        self.assertEqual((final["state"], final["documents"]["unchanged"], final["chunks"]["total"]), ("done", 40, 0))

    def test_large_body_becomes_a_job(self):
        r = self.req("POST", "/v1/collections", {"name": "plain", "options": {"chunk_size": 64}})
        self.assertEqual(r.status, 201, r)
        # over 1 MiB of text in few tokens (a word over 100 characters is one [UNK]): cheap to embed
        big = " ".join(("w%d" % i).ljust(5000, "x") for i in range(220))
        self.assertGreater(len(big), 1 << 20)
        r = self.req("POST", "/v1/collections/plain/documents", {"documents": [{"id": "big", "text": big}]})
        self.assertEqual(r.status, 202, r)
        final, _ = self.wait_job("plain", r.json()["id"])
        self.assertEqual((final["state"], final["documents"]["ingested"]), ("done", 1), final)
        self.assertEqual(final["chunks"]["stored"], final["chunks"]["total"])
        self.assertGreaterEqual(final["chunks"]["total"], 4)  # 220 tokens in chunks of at most 64
        # "async": false keeps it synchronous; small bodies are synchronous by default
        r = self.req("POST", "/v1/collections/plain/documents", {"documents": [{"id": "big2", "text": big}], "async": False})
        self.assertEqual((r.status, r.json()["chunks"]), (200, final["chunks"]["total"]), r)
        r = self.req("POST", "/v1/collections/plain/documents", {"documents": [{"id": "small", "text": "s"}]})
        self.assertEqual((r.status, r.json()["enriched"], r.json()["degraded"]), (200, 0, 0), r)

    def test_job_lists_document_errors(self):
        # a scheduler queue of 40 tokens: a 64-token chunk can never be embedded, short documents can;
        # the failing batch is retried document by document and the job still ends "done"
        self.srv.stop()
        self.srv = Server("--data-dir", self.dir, "--max-queue-tokens", "40")
        r = self.req("POST", "/v1/collections", {"name": "t", "options": {"chunk_size": 64}})
        self.assertEqual(r.status, 201, r)
        docs = [{"id": f"d{i}", "text": doc_text(i, 60 if i in (1, 3) else 3)} for i in range(5)]
        r = self.req("POST", "/v1/collections/t/documents", {"documents": docs, "async": True})
        self.assertEqual(r.status, 202, r)
        final, _ = self.wait_job("t", r.json()["id"])
        self.assertEqual((final["state"], final["documents"]["done"], final["documents"]["failed"],
                          final["documents"]["ingested"]), ("done", 5, 2, 3), final)
        self.assertEqual(sorted(e["id"] for e in final["errors"]), ["d1", "d3"])
        self.assertTrue(all("larger than the scheduler's queue" in e["error"] for e in final["errors"]), final["errors"])
        self.assertEqual(self.req("GET", "/v1/collections/t").json()["documents"], 3)
        for i in (0, 2, 4):
            self.assertEqual(self.search("t", docs[i]["text"])[0]["document_id"], f"d{i}")

    def test_cancel_job_with_silent_endpoint(self):
        silent = SilentServer()
        try:
            self.create("slow", {"endpoints": [{"url": silent.url, "model": "m"}], "timeout_ms": 60000,
                                 "retries": 0, "concurrency": 1})
            docs = [{"id": f"d{i}", "text": doc_text(i)} for i in range(5)]
            r = self.req("POST", "/v1/collections/slow/documents", {"documents": docs, "async": True})
            self.assertEqual(r.status, 202, r)
            jid = r.json()["id"]
            end = time.monotonic() + 30
            while silent.accepted < 1:  # the first call is waiting on the silent server
                self.assertLess(time.monotonic(), end)
                time.sleep(0.05)
            r = self.req("DELETE", f"/v1/collections/slow/jobs/{jid}")
            self.assertEqual(r.status, 202, r)
            t0 = time.monotonic()
            final, _ = self.wait_job("slow", jid, timeout=30)
            self.assertLess(time.monotonic() - t0, 10)  # not the 60 s call timeout
            self.assertEqual((final["state"], final["documents"]["done"]), ("cancelled", 0), final)
            self.assertEqual(self.req("GET", "/v1/collections/slow").json()["documents"], 0)
        finally:
            silent.stop()

    # ---- `embd ingest` --------------------------------------------------------------------

    def make_tree(self, n=30):
        src = os.path.join(TMP, f"tree-{self._testMethodName}")
        shutil.rmtree(src, ignore_errors=True)
        os.makedirs(os.path.join(src, "sub"))
        texts = {}
        for i in range(n):
            rel = os.path.join("sub" if i % 2 else "", f"f{i}.txt")
            texts[os.path.join(src, rel)] = doc_text(i)
            with open(os.path.join(src, rel), "w") as f:
                f.write(doc_text(i))
        with open(os.path.join(src, "blob.bin"), "wb") as f:
            f.write(b"\x00\x01binary")
        return src, texts

    def test_cli_ingest_through_server_jobs(self):
        src, texts = self.make_tree()
        self.create("files", {"endpoints": self.endpoints(), "max_tokens": MAX_TOKENS, "concurrency": 2})
        server = f"http://127.0.0.1:{self.srv.port}/"
        p = subprocess.run([BIN, "ingest", src, "--collection", "files", "--server", server, "--interval", "0.05"],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertTrue(all(l.startswith("ingest: ") for l in lines), p.stderr)  # not a terminal: lines, no bar
        self.assertIn("ingest: 31/31 files, 30 chunks, 30 enriched, 0 degraded, 1 skipped", lines[-1])
        self.assertTrue(lines[-1].endswith("(done)"), lines[-1])
        info = self.req("GET", "/v1/collections/files").json()
        self.assertEqual((info["documents"], info["chunks"]), (30, 30))
        path = sorted(texts)[3]
        r = self.req("POST", "/v1/collections/files/search", {"query": texts[path], "k": 5, "filter": {"path": path}})
        hit = r.json()["hits"][0]
        self.assertEqual((hit["document_id"], hit["metadata"]["ext"]), (path, "txt"))
        self.assertTrue(hit["context"])
        jobs = self.req("GET", "/v1/collections/files/jobs").json()["jobs"]
        self.assertEqual([j["state"] for j in jobs], ["done"])  # 30 files: one batch, one job
        # on a terminal: a progress bar redrawn in place
        import pty
        master, slave = pty.openpty()
        proc = subprocess.Popen([BIN, "ingest", src, "--collection", "files", "--server", server], stdout=subprocess.DEVNULL,
                                stderr=slave)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        self.assertEqual(proc.wait(60), 0, out)
        os.close(master)
        self.assertIn(b"\r[##############################] 31/31 files", out)
        # errors: no such collection, nothing listening, bad usage
        p = subprocess.run([BIN, "ingest", src, "--collection", "nope", "--server", server], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("no collection 'nope'", p.stderr)
        p = subprocess.run([BIN, "ingest", src, "--collection", "files", "--server", f"http://127.0.0.1:{free_port()}"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("Couldn't connect", p.stderr)
        for args in ([src, "--collection", "files"], [src, "--server", server],
                     [src, "--collection", "x", "--server", server, "--data-dir", "d", "--model", MODEL],
                     [src, "--collection", "x", "--server", server, "--interval", "0"]):
            p = subprocess.run([BIN, "ingest", *args], capture_output=True, text=True)
            self.assertEqual(p.returncode, 1, (args, p.stderr))

    def test_cli_ingest_in_process_with_enrichment(self):
        src, texts = self.make_tree(6)
        d = os.path.join(TMP, "cli-data")
        shutil.rmtree(d, ignore_errors=True)
        enrich = json.dumps({"endpoints": self.endpoints(), "max_tokens": MAX_TOKENS})
        p = subprocess.run([BIN, "collections", "create", "loc", "--data-dir", d, "--model", MODEL, "--chunk-size", "64",
                            "--enrich", enrich], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn(KEY, p.stdout)
        self.assertEqual([e["api_key_set"] for e in json.loads(p.stdout)["enrich"]["endpoints"]], [False, True])
        p = subprocess.run([BIN, "collections", "create", "bad", "--data-dir", d, "--model", MODEL, "--enrich",
                            '{"endpoints": []}'], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("enrich.endpoints", p.stderr)
        p = subprocess.run([BIN, "ingest", src, "--collection", "loc", "--data-dir", d, "--model", MODEL],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("ingest: 7/7 files, 6 chunks, 6 enriched, 0 degraded, 1 skipped", p.stderr)
        path = sorted(texts)[0]
        p = subprocess.run([BIN, "collections", "search", "loc", "--data-dir", d, "--model", MODEL, "--k", "1",
                            "--filter", json.dumps({"path": path}), texts[path]], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        hit = json.loads(p.stdout)
        self.assertEqual(hit["document_id"], path)
        self.assertTrue(hit["context"])


if __name__ == "__main__":
    common.main("enrich")
