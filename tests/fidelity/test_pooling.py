#!/usr/bin/env python3
"""Pooling modes of `embd embed` against the numpy float64 reference (bert_ref.py): none (every
token's final state, JSONL token_embeddings), mean, cls and last, on a tiny random f32 model, and
consistency between them (mean of the token states = mean pooling; first/last token state = cls /
last pooling). Ids come from `embd tokenize`, whose parity with Hugging Face the token fixtures
establish."""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bert_ref import BertRef  # noqa: E402
from common import cosine, truncate_ids  # noqa: E402

SRC = os.environ.get("EMBD_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
TMP = os.path.join(os.environ.get("EMBD_TEST_TMP") or "/tmp/embd-test-tmp", "pooling")
EMBD = os.environ.get("EMBD_BIN", "")
TEXTS = ["hello world", "", "naïve café 東京 🙂", "word " * 700, "def f(x):\n    return x * 2\n"]
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def embd(args, texts=TEXTS):
    lines = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
    p = subprocess.run([EMBD, *args], input=lines, capture_output=True, text=True, timeout=600)
    return p, [json.loads(l) for l in p.stdout.splitlines()] if p.returncode == 0 else []


def main():
    if not EMBD:
        sys.exit("EMBD_BIN is not set")
    os.makedirs(TMP, exist_ok=True)
    model = os.path.join(TMP, "tiny-f32.gguf")
    subprocess.run([sys.executable, os.path.join(SRC, "tools", "gen_random_model.py"), "--out", model, "--shape",
                    "tiny", "--seed", "3", "--std", "0.1"], check=True)
    ref = BertRef(model)
    p, toks = embd(["tokenize", "-m", model])
    ids = [truncate_ids(t["ids"], ref.n_ctx, ref.sep_id) for t in toks]
    p, none = embd(["embed", "-m", model, "-q", "--pooling", "none", "-t", "2"])
    check(p.returncode == 0, f"--pooling none exits 0 ({p.stderr.strip()[-200:]})")
    pooled = {}
    for mode in ("mean", "cls", "last"):
        q, out = embd(["embed", "-m", model, "-q", "--pooling", mode, "--no-normalize", "-t", "2"])
        check(q.returncode == 0, f"--pooling {mode} exits 0")
        pooled[mode] = [np.array(o["embedding"]) for o in out]
    for i, o in enumerate(none):
        st = np.array(o["token_embeddings"])
        want = ref.hidden_states(ids[i])
        check(st.shape == want.shape and o["tokens"] == len(ids[i]),
              f"text {i}: {st.shape[0]} token vectors for {len(ids[i])} tokens")
        if st.shape != want.shape:
            continue
        c = cosine(st, want).min()
        check(c >= 0.99999, f"text {i}: min per-token cosine vs reference {c:.7f}")
        check(np.abs(st.mean(0) - pooled["mean"][i]).max() < 1e-4, f"text {i}: mean of token states = mean pooling")
        check(np.abs(st[0] - pooled["cls"][i]).max() < 1e-4, f"text {i}: first token state = cls pooling")
        check(np.abs(st[-1] - pooled["last"][i]).max() < 1e-4, f"text {i}: last token state = last pooling")
        check(cosine(pooled["mean"][i][None], ref.embed([ids[i]], "mean", False))[0] >= 0.99999,
              f"text {i}: mean pooling vs reference")
    check(none[3].get("truncated") is True, "the long text is truncated with pooling none too")
    p, _ = embd(["embed", "-m", model, "--pooling", "none", "--format", "npy", "-o", os.path.join(TMP, "x.npy")])
    check(p.returncode == 1 and "JSONL" in p.stderr, "--pooling none with npy output: usage error")
    p, _ = embd(["embed", "-m", model, "--pooling", "max"])
    check(p.returncode == 1, "--pooling max: usage error")
    p, out = embd(["embed", "-m", model, "-q", "--pooling", "none", "--no-truncate"])
    check(p.returncode == 3, "--no-truncate with an over-long text exits 3")
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("all pooling checks passed")


if __name__ == "__main__":
    main()
