#!/usr/bin/env python3
"""Cross-check the numpy reference (bert_ref.py) against llama.cpp's own llama-embedding.

llama.cpp's BERT graph uses the tanh GELU approximation, evaluated on CPU through an fp16 lookup
table; gelu="tanh-f16" emulates that and should agree to float32 noise on f32 models, gelu="tanh"
to the table's rounding, while gelu="erf" (the HF definition the fidelity test uses) also shows
the size of the tanh approximation. llama-embedding tokenizes itself; its token ids (--verbose-prompt) feed the
reference, so tokenizer differences cannot enter. Not a ctest test: a tool for checking the checker.

  check_llama_ref.py [--llama-embedding BIN] [--model GGUF] [texts...]
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bert_ref import BertRef  # noqa: E402
from common import centred_cosine, cosine  # noqa: E402

TEXTS = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "An embedding server turns text into vectors.",
    "numpy arrays support broadcasting and vectorised arithmetic",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "def add(a, b): return a + b",
    "Tokenizers split words into sub-word pieces such as ##ing.",
    "a",
    "1 2 3 4 5 6 7 8 9 10",
    # ~390 tokens: positions and attention well beyond the short texts
    " ".join(f"Sentence {i} says that batching packs texts of similar length together." for i in range(30)),
]


def find_llama_embedding():
    hits = sorted(glob.glob(os.path.expanduser("~/.cache/embd/llama.cpp-*/build-*/bin/llama-embedding")))
    return hits[-1] if hits else None


def run_llama_once(binary, model, texts, pooling, extra):
    cmd = [binary, "-m", model, "-p", "\n".join(texts), "--pooling", pooling, "--embd-normalize", "2",
           "--embd-output-format", "json", "--verbose-prompt", "-t", str(os.cpu_count() or 1), "-c", "512",
           "-b", "512", "-ub", "512", *extra]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    # --verbose-prompt: token counts go to stderr, then one "   id -> 'piece'" line per token to stdout
    counts = [int(n) for n in re.findall(r"number of tokens in prompt = (\d+)", p.stderr)]
    toks = [int(m) for m in re.findall(r"^\s*(\d+) -> '", p.stdout, flags=re.M)]
    if sum(counts) != len(toks) or len(counts) != len(texts):
        raise ValueError(f"token ids: counts {counts}, {len(toks)} token lines")
    ids, at = [], 0
    for n in counts:
        ids.append(toks[at:at + n])
        at += n
    obj, _ = json.JSONDecoder().raw_decode(p.stdout[p.stdout.index('{\n  "object"'):])
    vecs = np.array([d["embedding"] for d in sorted(obj["data"], key=lambda d: d["index"])])
    return ids, vecs


def run_llama(binary, model, texts, pooling, extra=(), tries=10):
    # llama.cpp's asynchronous logger sometimes loses stdout at exit (seen at this commit): retry
    for _ in range(tries):
        try:
            return run_llama_once(binary, model, texts, pooling, extra)
        except ValueError as e:
            err = e
    sys.exit(f"no parsable llama-embedding output in {tries} runs: {err}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-embedding", default=find_llama_embedding())
    shared = os.environ.get("EMBD_SHARED_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")
    ap.add_argument("--model", default=os.path.join(shared, "models/bge-small-random/bge-small-random-f16.gguf"))
    ap.add_argument("--llama-args", default="", help="extra llama-embedding arguments, e.g. '-fa off'")
    ap.add_argument("texts", nargs="*", default=TEXTS)
    args = ap.parse_args()
    if not args.llama_embedding:
        sys.exit("llama-embedding not found; pass --llama-embedding")

    ref_tanh = BertRef(args.model, gelu="tanh")
    ids, got = run_llama(args.llama_embedding, args.model, args.texts, ref_tanh.pooling, args.llama_args.split())
    print(f"model {args.model}\n{len(args.texts)} texts, {sum(map(len, ids))} tokens, pooling {ref_tanh.pooling}")
    for name, ref in (("tanh-f16", BertRef(args.model, gelu="tanh-f16")), ("tanh", ref_tanh),
                      ("erf", BertRef(args.model, gelu="erf"))):
        want = ref.embed(ids)
        cos, ccos = cosine(got, want), centred_cosine(got, want)
        print(f"gelu={name:<8}  cosine min {cos.min():.9f} median {np.median(cos):.9f}   "
              f"centred min {ccos.min():.9f} median {np.median(ccos):.9f}")


if __name__ == "__main__":
    main()
