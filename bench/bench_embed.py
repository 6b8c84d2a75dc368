#!/usr/bin/env python3
"""embd embed vs llama.cpp's llama-embedding: same model, corpus, threads, in one run.

    /usr/bin/python3 bench/bench_embed.py [--chunks 2000] [--threads 2] [--reps 3] [--models q8_0,f16]

Both programs get the same texts: the first N chunks of ../shared/corpus/numpy_chunks.jsonl, cut so
that each has at most 500 tokens (llama-embedding refuses a sequence longer than its batch, and the
model has 512 positions). Work = tokens as counted by embd's tokenizer (identical to Hugging Face's).
Each program runs --reps times alternately; we print medians of tokens/s and peak RSS (from wait4),
and the ratio embd / llama-embedding. The machine is noisy: read the ratios, not the absolutes.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("EMBD_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
SEP = "<#embd-sep#>"
MAX_TOKENS = 500


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def build():
    tools_bin = sh(["bash", os.path.join(ROOT, "scripts", "build-llama.sh"), "--tools"]).strip()
    subprocess.run(["cmake", "-S", ROOT, "-B", os.path.join(ROOT, "build"), "-DCMAKE_BUILD_TYPE=Release"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", os.path.join(ROOT, "build"), "--target", "embd", "-j"], check=True,
                   capture_output=True)
    return os.path.join(ROOT, "build", "embd"), os.path.join(tools_bin, "llama-embedding")


def token_counts(embd, model, texts, tmp):
    p = os.path.join(tmp, "tok.jsonl")
    with open(p, "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": i, "text": t}) + "\n")
    out = sh([embd, "tokenize", "--model", model, "--input", p])
    return [json.loads(l)["tokens"] for l in out.splitlines()]


def prepare(n, count_fn):
    """The first n corpus chunks, each cut until count_fn(texts) says it has <= MAX_TOKENS tokens."""
    texts = []
    with open(os.path.join(SHARED, "corpus", "numpy_chunks.jsonl")) as f:
        for line in f:
            if len(texts) == n:
                break
            texts.append(json.loads(line)["text"].replace(SEP, " "))
    if len(texts) < n:
        sys.exit(f"corpus has only {len(texts)} chunks")
    # Shorten over-long texts until the count fits (a few rounds at most).
    for _ in range(20):
        counts = count_fn(texts)
        long = [i for i, c in enumerate(counts) if c > MAX_TOKENS]
        if not long:
            return texts, sum(counts)
        for i in long:
            texts[i] = texts[i][: int(len(texts[i]) * MAX_TOKENS / counts[i] * 0.97)]
    sys.exit("could not shorten the corpus")


def timed(cmd, stdout=subprocess.DEVNULL):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    el = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if status != 0:
        sys.exit(f"failed ({status}): {' '.join(cmd)}\n{err[-2000:]}")
    return el, ru.ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--models", default="q8_0,f16")
    ap.add_argument("--ubatch", type=int, default=512, help="llama-embedding -b/-ub (512 is its fastest here)")
    ap.add_argument("--batch-tokens", type=int, default=0, help="embd --batch-tokens (default: embd's)")
    a = ap.parse_args()
    embd, llama_embedding = build()
    tmp = tempfile.mkdtemp(prefix="embd-bench-")
    rows = []
    for q in a.models.split(","):
        model = os.path.join(SHARED, "models", "bge-small-random", f"bge-small-random-{q}.gguf")
        texts, tokens = prepare(a.chunks, lambda t: token_counts(embd, model, t, tmp))
        jl = os.path.join(tmp, "in.jsonl")
        with open(jl, "w") as f:
            for i, t in enumerate(texts):
                f.write(json.dumps({"id": i, "text": t}) + "\n")
        sepf = os.path.join(tmp, "in.txt")
        with open(sepf, "w") as f:
            f.write(SEP.join(texts))
        embd_cmd = [embd, "embed", "--model", model, "--input", jl, "--output", "/dev/null", "--quiet",
                    "--threads", str(a.threads)]
        if a.batch_tokens:
            embd_cmd += ["--batch-tokens", str(a.batch_tokens)]
        llama_cmd = [llama_embedding, "-m", model, "-f", sepf, "--embd-separator", SEP, "--pooling", "cls",
                     "--embd-normalize", "2", "--embd-output-format", "array", "-t", str(a.threads), "-tb", str(a.threads),
                     "-c", "512", "-b", str(a.ubatch), "-ub", str(a.ubatch), "--no-warmup", "-lv", "0"]
        res = {"embd": [], "llama-embedding": []}
        for r in range(a.reps):
            for name, cmd in (("embd", embd_cmd), ("llama-embedding", llama_cmd)):
                el, rss = timed(cmd)
                res[name].append((tokens / el, rss))
                print(f"  {q} rep {r + 1} {name:16s} {tokens / el:8.0f} tok/s  {el:6.1f} s  RSS {rss / 2**20:6.1f} MiB", flush=True)
        med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in res.items()}
        rows.append((q, tokens, med))
    print(f"\n{a.chunks} chunks, {a.threads} threads, {a.reps} reps (medians)")
    print(f"{'model':6s} {'tokens':>8s} {'embd tok/s':>11s} {'llama tok/s':>12s} {'ratio':>6s} {'embd RSS':>9s} {'llama RSS':>10s}")
    for q, tokens, med in rows:
        e, l = med["embd"], med["llama-embedding"]
        print(f"{q:6s} {tokens:8d} {e[0]:11.0f} {l[0]:12.0f} {e[0] / l[0]:6.2f}x {e[1] / 2**20:8.1f}M {l[1] / 2**20:9.1f}M")


if __name__ == "__main__":
    main()
