#!/usr/bin/env python3
"""Cross-encoder fidelity: `embd rerank --raw` logits against the numpy float64 reference
(bert_ref.BertRef.score_one) on random-weight rerankers made by tools/gen_random_model.py
(--pooling rank, the ms-marco-MiniLM-L-12-v2 vocabulary; f32, f16, q8_0).

The reference gets the pair built independently: each text tokenized alone by `embd tokenize`
(whose ids match Hugging Face, see the token fixtures), joined as HF's BERT pair template
[CLS] q [SEP] d [SEP] with token types 0 then 1, and document-side truncation for long pairs.
Checks per model: |logit - ref| <= tol * (1 + |ref|) for every pair (tol 1e-4 f32, 2e-3 f16,
2e-2 q8_0), the centred cosine of the score vector >= the engine thresholds, the sorted ranking
equals the reference's where reference scores are apart by more than the tolerance, and that
sigmoid scores are sigmoid(logits). Also: token types matter (a model with the two type
embeddings swapped gives different logits) and bad input exits with the documented codes.
"""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bert_ref import BertRef  # noqa: E402
from common import centred_cosine  # noqa: E402

SRC = os.environ.get("EMBD_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
SHARED = os.environ.get("EMBD_SHARED_DIR") or os.path.normpath(os.path.join(SRC, "..", "shared"))
TMP = os.path.join(os.environ.get("EMBD_TEST_TMP") or "/tmp/embd-test-tmp", "rerank")
EMBD = os.environ.get("EMBD_BIN", "")
TOKENIZER = os.path.join(SHARED, "models", "ms-marco-MiniLM-L-12-v2", "tokenizer.json")

QUERY = "how do I embed a whole code repository without running out of memory?"
DOCS = [
    "Split the repository into chunks of a few hundred tokens and embed them in batches.",
    "Bananas are rich in potassium.",
    "The server applies backpressure: when its queue is full it answers 429 with Retry-After.",
    "",
    "naïve café – résumé 東京 🙂 \u00a0non-breaking\tspaces",
    "def embed(texts):\n    return model.encode(texts, batch_size=32)\n",
    "word " * 700,  # longer than the context: the document side is cut
    "OOM kills happen when batches are sized by item count instead of tokens.",
]
TOL = {"f32": 1e-4, "f16": 2e-3, "q8_0": 2e-2}
CCOS = {"f32": 0.9999, "f16": 0.999, "q8_0": 0.995}
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def run(args, stdin=None):
    return subprocess.run([EMBD] + args, input=stdin, capture_output=True, text=True, timeout=600)


def gen(path, typ, extra=()):
    subprocess.run([sys.executable, os.path.join(SRC, "tools", "gen_random_model.py"), "--out", path, "--shape",
                    "tiny", "--type", typ, "--pooling", "rank", "--seed", "77", "--std", "0.1", "--tokenizer", TOKENIZER,
                    *extra], check=True)


def tokenize(model, texts):
    lines = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
    p = run(["tokenize", "-m", model], stdin=lines)
    assert p.returncode == 0, p.stderr
    return [json.loads(l)["ids"] for l in p.stdout.splitlines()]


def ref_pairs(model, n_ctx):
    q, *docs = tokenize(model, [QUERY] + DOCS)
    pairs = []
    for d in docs:
        ids = q + d[1:]  # [CLS] q [SEP] + d [SEP]
        if len(ids) > n_ctx:  # document side: keep its head and the final [SEP]
            ids = ids[: n_ctx - 1] + [d[-1]]
        pairs.append((ids, len(q)))
    return pairs


def rerank(model, extra=(), docs=DOCS):
    lines = "".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(docs))
    return run(["rerank", "-m", model, "-q", QUERY, "-t", "2", *extra], stdin=lines)


def main():
    if not EMBD or not os.path.exists(EMBD):
        sys.exit("EMBD_BIN is not set to the embd binary")
    if not os.path.exists(TOKENIZER):
        print(f"SKIP: {TOKENIZER} missing")
        return
    os.makedirs(TMP, exist_ok=True)
    models = {}
    for typ in ("f32", "f16", "q8_0"):
        models[typ] = os.path.join(TMP, f"tiny-rank-{typ}.gguf")
        gen(models[typ], typ)
    ref = BertRef(models["f32"])
    check(ref.pooling == "rank", "the generated model has rank pooling")
    pairs = ref_pairs(models["f32"], ref.n_ctx)
    want = np.array([ref.score_one(ids, nf)[0] for ids, nf in pairs])
    check(np.ptp(want) > 1e-3, f"reference logits differ between documents (spread {np.ptp(want):.4f})")

    for typ, path in models.items():
        p = rerank(path, ["--raw"])
        check(p.returncode == 0, f"{typ}: embd rerank exits 0 ({p.returncode}: {p.stderr.strip()[-200:]})")
        if p.returncode:
            continue
        out = json.loads(p.stdout)
        got = np.array([r["score"] for r in out["results"]])
        ids = [r["id"] for r in out["results"]]
        check(ids == [f"d{i}" for i in range(len(DOCS))], f"{typ}: results keep input order and ids")
        err = np.abs(got - want) / (1 + np.abs(want))
        check(err.max() <= TOL[typ], f"{typ}: max relative logit error {err.max():.2e} <= {TOL[typ]}")
        cc = centred_cosine(got[None, :], want[None, :], mu=np.mean(want))[0]
        check(cc >= CCOS[typ], f"{typ}: centred cosine of the score vector {cc:.7f} >= {CCOS[typ]}")
        order = [r["index"] for r in out["ranking"]]
        check(sorted(got, reverse=True) == [got[i] for i in order], f"{typ}: ranking is sorted by score")
        ref_order = list(np.argsort(-want, kind="stable"))
        clear = all(want[ref_order[k]] - want[ref_order[k + 1]] > 2 * TOL[typ] * (1 + abs(want[ref_order[k]]))
                    for k in range(len(want) - 1))
        if clear:
            check(order == ref_order, f"{typ}: ranking equals the reference ranking")
        trunc = [r.get("truncated", False) for r in out["results"]]
        check(trunc == [i == 6 for i in range(len(DOCS))], f"{typ}: only the long document is marked truncated")

    # sigmoid scores by default
    p = rerank(models["f32"])
    s = np.array([r["score"] for r in json.loads(p.stdout)["results"]]) if p.returncode == 0 else np.zeros(len(DOCS))
    check(np.allclose(s, 1 / (1 + np.exp(-want)), atol=1e-5), "default scores are sigmoid(logit)")
    p = rerank(models["f32"], ["--top", "3"])
    check(p.returncode == 0 and len(json.loads(p.stdout)["ranking"]) == 3, "--top 3 keeps three in the ranking")

    # token types reach the model: swapping the two type embeddings changes the logits
    swapped = os.path.join(TMP, "tiny-rank-swapped.gguf")
    gen(swapped, "f32")
    ref2 = BertRef(swapped)
    ref2.w["token_types.weight"] = ref2.w["token_types.weight"][::-1].copy()
    want2 = np.array([ref2.score_one(ids, nf)[0] for ids, nf in pairs])
    check(np.abs(want2 - want).max() > 1e-3, "token type 1 on the document changes the reference logits")

    # no truncation: the long pair fails alone (exit 3), the others still score
    p = rerank(models["f32"], ["--raw", "--no-truncate"])
    check(p.returncode == 3, f"--no-truncate with an over-long pair exits 3 ({p.returncode})")
    if p.stdout.strip():
        res = json.loads(p.stdout)["results"]
        check("error" in res[6] and all("score" in r for i, r in enumerate(res) if i != 6),
              "only the over-long pair has an error")
        check(all(abs(res[i]["score"] - got_i) < 1e-4 * (1 + abs(got_i)) for i, got_i in enumerate(want) if i != 6),
              "the other pairs' scores are unchanged")
    # bad inputs
    p = run(["rerank", "-m", models["f32"], "-q", QUERY], stdin="")
    check(p.returncode == 2 and "no documents" in p.stderr, "no documents: exit 2 with a message")
    p = run(["rerank", "-m", models["f32"]], stdin="x\n")
    check(p.returncode == 1 and "--query" in p.stderr, "missing --query: usage error")
    p = run(["rerank", "-m", models["f32"], "-q", ""], stdin="x\n")
    check(p.returncode == 1, "empty --query: usage error")
    emb = os.path.join(TMP, "tiny-cls.gguf")
    subprocess.run([sys.executable, os.path.join(SRC, "tools", "gen_random_model.py"), "--out", emb, "--shape", "tiny",
                    "--pooling", "cls", "--tokenizer", TOKENIZER], check=True)
    p = run(["rerank", "-m", emb, "-q", QUERY], stdin="x\n")
    check(p.returncode == 2 and "not a cross-encoder" in p.stderr, "an embedding model: exit 2, 'not a cross-encoder'")
    p = run(["embed", "-m", models["f32"]], stdin="x\n")
    check(p.returncode != 0 and "pairs" in p.stderr, "embd embed on a cross-encoder fails with a pointer to reranking")
    p = run(["rerank", "-m", models["f32"], "-q", QUERY, "--input-format", "jsonl"], stdin='{"id":1}\nnot json\n')
    check(p.returncode == 3 and all("error" in r for r in json.loads(p.stdout)["results"]),
          "malformed JSONL lines become per-document errors")

    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("all rerank fidelity checks passed")


if __name__ == "__main__":
    main()
