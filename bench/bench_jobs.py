#!/usr/bin/env python3
"""Bulk jobs vs the synchronous API, same model, threads and texts, in one run.

  job   `embd jobs submit` of N chunks into a fresh spool, then `embd worker --spool --exit-when-idle`:
        tokens/s from the worker's start to its exit (model load included), and its peak RSS
        (getrusage of the child), for a small job and the big one: a flat RSS does not grow with N
  sync  `embd serve` (default: one supervised worker), the same N chunks POSTed to /v1/embeddings
        in batches of --batch by --clients threads: tokens/s from the first request to the last

Texts: ../shared/corpus/numpy_chunks.jsonl, repeated until there are N, each cut to --max-chars
characters. Tokens are what embd reports (job records' "tokens", usage.prompt_tokens).
  /usr/bin/python3 bench/bench_jobs.py --chunks 20000 --small 2000 --threads 2
"""
import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SHARED = os.environ.get("EMBD_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
SEP = "\u241e"


def corpus(n, max_chars):
    base = []
    with open(os.path.join(SHARED, "corpus", "numpy_chunks.jsonl"), encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)["text"].replace(SEP, " ")[:max_chars]
            if t.strip():
                base.append(t)
    return [base[i % len(base)] for i in range(n)]


def run_job(embd, model, texts, threads, tmp, tag):
    spool = os.path.join(tmp, "spool-" + tag)
    items = os.path.join(tmp, f"items-{tag}.jsonl")
    with open(items, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": i, "text": t}) + "\n")
    subprocess.run([embd, "jobs", "submit", "--spool", spool, "-i", items, "--id", "j"], check=True,
                   capture_output=True)
    t0 = time.monotonic()
    p = subprocess.Popen([embd, "worker", "--spool", spool, "--model", model, "--threads", str(threads),
                          "--exit-when-idle"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode("utf-8", "replace")
    if status != 0:
        sys.exit(f"embd worker failed ({status}): {err[-2000:]}")
    tokens = done = 0
    with open(os.path.join(spool, "results", "j.jsonl"), encoding="utf-8") as f:
        for line in f:
            tokens += json.loads(line)["tokens"]
            done += 1
    if done != len(texts):
        sys.exit(f"job wrote {done} results for {len(texts)} items")
    shutil.rmtree(spool, ignore_errors=True)
    return {"items": done, "tokens": tokens, "seconds": wall, "tok_s": tokens / wall, "peak_rss_mib": ru.ru_maxrss / 1024}


def run_sync(embd, model, texts, threads, batch, clients):
    p = subprocess.Popen([embd, "serve", "--model", model, "--host", "127.0.0.1", "--port", "0", "--insecure",
                          "--threads", str(threads)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    port = None
    for line in p.stderr:
        if "embd: ready:" in line:
            port = int(line.rsplit(":", 1)[1])
            break
    if port is None:
        sys.exit("embd serve did not start")
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    batches = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    lock, total, nxt = threading.Lock(), [0], [0]

    def client():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while True:
            with lock:
                if nxt[0] >= len(batches):
                    return
                b = batches[nxt[0]]
                nxt[0] += 1
            c.request("POST", "/v1/embeddings", json.dumps({"input": b}), {"Content-Type": "application/json"})
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise SystemExit(f"/v1/embeddings: {r.status} {body[:300]}")
            with lock:
                total[0] += json.loads(body)["usage"]["prompt_tokens"]

    t0 = time.monotonic()
    ts = [threading.Thread(target=client) for _ in range(clients)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    wall = time.monotonic() - t0
    p.terminate()
    p.wait(60)
    return {"items": len(texts), "tokens": total[0], "seconds": wall, "tok_s": total[0] / wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=20000)
    ap.add_argument("--small", type=int, default=2000, help="a smaller job, for the RSS comparison")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-chars", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64, help="inputs per /v1/embeddings request")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--model", default=os.path.join(SHARED, "models", "bge-small-random", "bge-small-random-q8_0.gguf"))
    ap.add_argument("--embd", default=os.path.join(ROOT, "build", "embd"))
    ap.add_argument("--json", metavar="OUT")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="embd-bench-jobs-")
    texts = corpus(a.chunks, a.max_chars)
    out = {"chunks": a.chunks, "threads": a.threads, "model": a.model}
    out["job_small"] = run_job(a.embd, a.model, texts[:a.small], a.threads, tmp, "small")
    print("job  ", a.small, out["job_small"], flush=True)
    out["sync"] = run_sync(a.embd, a.model, texts, a.threads, a.batch, a.clients)
    print("sync ", a.chunks, out["sync"], flush=True)
    out["job"] = run_job(a.embd, a.model, texts, a.threads, tmp, "big")
    print("job  ", a.chunks, out["job"], flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    ratio = out["job"]["tok_s"] / out["sync"]["tok_s"]
    print(f"\njob {out['job']['tok_s']:.0f} tok/s vs sync {out['sync']['tok_s']:.0f} tok/s: {ratio:.3f}x "
          f"(target >= 0.95)")
    print(f"worker peak RSS: {out['job_small']['peak_rss_mib']:.1f} MiB for {a.small} chunks, "
          f"{out['job']['peak_rss_mib']:.1f} MiB for {a.chunks}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
