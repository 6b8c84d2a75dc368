#!/usr/bin/env python3
"""sentence-transformers model options carried in GGUF (as `embd convert` writes them): named
prompts (embd.prompts.<name>, embd.default_prompt_name) and max_seq_length (embd.max_seq_length),
through `embd serve` (TEI prompt_name, /info, truncation) and `embd embed` (--prompt-name,
--prompt). A prompt is text prepended to the input, so "prompt_name": "query" must give exactly
the vector of the input with "query: " written in front of it and no prompt."""
import json
import os
import subprocess
import sys
import unittest

import numpy as np

import common
from common import BIN, SOURCE, TMP, Server

MODEL = os.path.join(TMP, "tiny-prompts.gguf")
PLAIN = os.path.join(TMP, "tiny-plain.gguf")
MAX_SEQ = 32


def gen(path, *extra):
    subprocess.run([sys.executable, os.path.join(SOURCE, "tools", "gen_random_model.py"), "--out", path, "--shape",
                    "tiny", "--seed", "11", *extra], check=True)


class Prompts(unittest.TestCase):
    srv = None

    @classmethod
    def setUpClass(cls):
        gen(MODEL, "--prompt", "query=query: ", "--prompt", "passage=passage: ", "--default-prompt", "passage",
            "--max-seq-length", str(MAX_SEQ))
        gen(PLAIN)
        cls.srv = Server(model=MODEL)

    @classmethod
    def tearDownClass(cls):
        if cls.srv:
            cls.srv.stop()

    def embed(self, body):
        r = self.srv.post("/embed", body)
        self.assertEqual(r.status, 200, r)
        return np.array(r.json())

    def test_info(self):
        j = self.srv.get("/info").json()
        self.assertEqual(j["prompts"], {"query": "query: ", "passage": "passage: "})
        self.assertEqual(j["default_prompt_name"], "passage")
        self.assertEqual(j["max_input_length"], MAX_SEQ)

    def test_prompt_is_prepended_text(self):
        texts = ["how are vectors stored?", "naïve café"]
        named = self.embed({"inputs": texts, "prompt_name": "query"})
        # the default prompt is 'passage'; writing "query: " by hand under it gives "passage: query: ..."
        by_hand_plain = Server(model=PLAIN)
        try:
            r = by_hand_plain.post("/embed", {"inputs": ["query: " + t for t in texts]})
            self.assertEqual(r.status, 200, r)
            ref = np.array(r.json())
        finally:
            by_hand_plain.stop()
        self.assertLess(np.abs(named - ref).max(), 1e-5, "prompt_name query == 'query: ' + text")
        default = self.embed({"inputs": texts})
        passage = self.embed({"inputs": texts, "prompt_name": "passage"})
        self.assertLess(np.abs(default - passage).max(), 1e-6, "no prompt_name: the default prompt")
        self.assertGreater(np.abs(default - named).max(), 1e-4, "different prompts give different vectors")

    def test_prompt_on_openai_route(self):
        r = self.srv.post("/v1/embeddings", {"input": ["abc"], "prompt_name": "query"})
        self.assertEqual(r.status, 200, r)
        v = np.array(r.json()["data"][0]["embedding"])
        w = self.embed({"inputs": ["abc"], "prompt_name": "query"})[0]
        self.assertLess(np.abs(v - w).max(), 1e-5)

    def test_bad_prompt_names(self):
        r = self.srv.post("/embed", {"inputs": ["x"], "prompt_name": "nope"})
        self.assertEqual(r.status, 422, r)
        self.assertEqual(r.error()["type"], "unknown_prompt")
        self.assertIn("'query'", r.error()["message"])
        r = self.srv.post("/embed", {"inputs": ["x"], "prompt_name": 3})
        self.assertEqual((r.status, r.error()["type"]), (422, "invalid_request"))

    def test_max_seq_length_truncates(self):
        r = self.srv.post("/embed", {"inputs": ["word " * 100], "truncate": False})
        self.assertEqual((r.status, r.error()["type"]), (413, "input_too_long"))
        self.assertIn(str(MAX_SEQ), r.error()["message"])
        r = self.srv.post("/v1/embeddings", {"input": ["word " * 100]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["usage"]["prompt_tokens"], MAX_SEQ)

    def cli(self, *args, stdin="hello world\n"):
        return subprocess.run([BIN, "embed", "-m", MODEL, "-q", *args], input=stdin, capture_output=True, text=True,
                              timeout=300)

    def test_cli_prompts(self):
        named = self.cli("--prompt-name", "query")
        self.assertEqual(named.returncode, 0, named.stderr)
        given = self.cli("--prompt", "query: ")
        v1 = np.array(json.loads(named.stdout)["embedding"])
        v2 = np.array(json.loads(given.stdout)["embedding"])
        self.assertLess(np.abs(v1 - v2).max(), 1e-6)
        served = self.embed({"inputs": ["hello world"], "prompt_name": "query"})[0]
        self.assertLess(np.abs(v1 - served).max(), 1e-5)
        default = np.array(json.loads(self.cli().stdout)["embedding"])
        self.assertGreater(np.abs(default - v1).max(), 1e-4, "the default prompt (passage) applies")
        p = self.cli("--prompt-name", "nope")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no prompt named 'nope'", p.stderr)
        p = self.cli("--prompt-name", "query", "--prompt", "x")
        self.assertEqual(p.returncode, 1)
        out = json.loads(self.cli(stdin="word " * 100 + "\n").stdout)
        self.assertEqual((out["tokens"], out["truncated"]), (MAX_SEQ, True))


if __name__ == "__main__":
    common.main("prompts")
