#!/usr/bin/python3
"""End-to-end collection ingest of a source tree (default: Debian's python3-numpy source,
/usr/lib/python3/dist-packages/numpy) through `embd serve` over HTTP, and optionally through the
in-process CLI (`embd collections ingest`), then search latency over the resulting collection.

Each rep: a fresh data directory and server (`--model`, `--threads`, `--insecure`), POST
/v1/collections, then the files as POST /v1/collections/{c}/documents requests (up to
--batch-docs files and 768 KiB each; one client, sequential, as `embd collections ingest` sends
32 files per call), then --queries single searches (k=10) of short lines taken from the files.
Files are chosen as the CLI's directory walk does: sorted, hidden entries skipped, files with a
NUL byte or over 8 MiB skipped; files that are not UTF-8 are skipped too (the server would reject
the batch). The server also gets --serve-args (default --request-timeout 600, see below).
Tokens = the growth of the server's embd_batch_tokens histogram sum over the ingest (every token
embedded, chunk overlap included). Search latency is per HTTP request: the query's embedding,
the index search and the SQLite lookup of the hits.

  /usr/bin/python3 bench/collections/bench_ingest.py --reps 3 [--src DIR] [--cli] [--json OUT]
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "..", "shared", "models", "bge-small-random", "bge-small-random-q8_0.gguf")
MAX_FILE = 8 << 20
MAX_REQ = 768 << 10  # below the server's 1 MiB switch to an asynchronous ingest job


def collect(src):
    """(path, text) for every file the CLI's walk would ingest, plus counts of the skipped."""
    files, skipped = [], 0

    def walk(p):
        nonlocal skipped
        if os.path.isfile(p):
            if os.path.getsize(p) > MAX_FILE:
                skipped += 1
                return
            with open(p, "rb") as f:
                b = f.read()
            if b"\0" in b:
                skipped += 1
                return
            try:
                files.append((p, b.decode("utf-8")))
            except UnicodeDecodeError:
                skipped += 1
        elif os.path.isdir(p):
            for e in sorted(os.listdir(p)):
                if not e.startswith("."):
                    walk(os.path.join(p, e))

    if os.path.exists(os.path.join(src, ".gitignore")):
        print("note: .gitignore present; this walk does not apply it (the CLI does)", file=sys.stderr)
    walk(src)
    return files, skipped


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, embd, model, threads, datadir, log, extra):
        self.port = free_port()
        cmd = [embd, "serve", "--model", model, "--port", str(self.port), "--threads", str(threads),
               "--data-dir", datadir, "--insecure"] + extra
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"embd serve exited with {self.proc.returncode}; see {log.name}")
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit("embd serve: /health not 200 after 120 s")

    def request(self, method, path, obj=None, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=3600)
        body = json.dumps(obj).encode() if obj is not None else None
        c.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        r = c.getresponse()
        data = r.read()
        if not conn:
            c.close()
        return r.status, data

    def batch_tokens(self):
        st, body = self.request("GET", "/metrics")
        m = re.search(rb"^embd_batch_tokens_sum (\S+)", body, re.M)
        if st != 200 or not m:
            sys.exit("no embd_batch_tokens_sum in /metrics")
        return float(m.group(1))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def batches(files, max_docs):
    cur, size = [], 0
    for p, t in files:
        n = len(t.encode())
        if cur and (len(cur) == max_docs or size + n > MAX_REQ):
            yield cur
            cur, size = [], 0
        cur.append((p, t))
        size += n
    if cur:
        yield cur


def make_queries(files, n, seed=7):
    """Short queries: lines of 4-12 words drawn from the files (deterministic)."""
    rnd = random.Random(seed)
    lines = [ln.strip() for _, t in files for ln in t.splitlines() if 4 <= len(ln.split()) <= 12]
    return rnd.sample(lines, min(n, len(lines)))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def http_rep(a, files, queries, logdir, rep):
    datadir = tempfile.mkdtemp(prefix="embd-ingest-", dir=a.tmp)
    with open(os.path.join(logdir, f"serve-{rep}.log"), "w") as log:
        srv = Server(a.embd, a.model, a.threads, datadir, log, a.serve_args.split())
        try:
            opts = {"code_aware": a.code_aware, "index": a.index}
            st, body = srv.request("POST", "/v1/collections", {"name": "numpy", "options": opts})
            if st != 201:
                sys.exit(f"create: {st} {body[:300]}")
            tok0 = srv.batch_tokens()
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=3600)
            docs = chunks = 0
            t0 = time.monotonic()
            for b in batches(files, a.batch_docs):
                big = sum(len(t.encode()) for _, t in b) > MAX_REQ  # one file over the cap: keep it synchronous
                req = {"documents": [{"id": os.path.relpath(p, a.src), "text": t,
                                      "metadata": {"ext": os.path.splitext(p)[1].lstrip(".")}} for p, t in b]}
                if big:
                    req["async"] = False
                st, body = srv.request("POST", "/v1/collections/numpy/documents", req, conn)
                if st != 200:
                    sys.exit(f"ingest: {st} {body[:300]}")
                r = json.loads(body)
                docs += r["documents"]
                chunks += r["chunks"]
                print(f"  {docs} documents, {chunks} chunks, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
            secs = time.monotonic() - t0
            tokens = srv.batch_tokens() - tok0
            st, body = srv.request("GET", "/v1/collections/numpy")
            info = json.loads(body)
            if info["documents"] != docs or info["chunks"] != chunks:
                sys.exit(f"counts disagree: ingest said {docs}/{chunks}, the collection has {info}")
            lat = []
            for q in queries:
                t = time.monotonic()
                st, body = srv.request("POST", "/v1/collections/numpy/search", {"query": q, "k": 10}, conn)
                lat.append((time.monotonic() - t) * 1e3)
                if st != 200 or len(json.loads(body)["hits"]) != 10:
                    sys.exit(f"search: {st} {body[:300]}")
            conn.close()
        finally:
            srv.stop()
    disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(datadir) for f in fs)
    shutil.rmtree(datadir, ignore_errors=True)
    return {"via": "http", "documents": docs, "chunks": chunks, "tokens": int(tokens), "seconds": secs,
            "chunks_per_s": chunks / secs, "tokens_per_s": tokens / secs, "search_p50_ms": pct(lat, 0.5),
            "search_p99_ms": pct(lat, 0.99), "data_dir_bytes": disk}


def cli_rep(a, logdir, rep, tokens_per_chunk_run):
    """The in-process CLI on the same tree (its own walk); tokens taken from an HTTP rep when the
    chunk counts agree (same chunker, same files)."""
    datadir = tempfile.mkdtemp(prefix="embd-ingest-cli-", dir=a.tmp)
    base = [a.embd, "collections"]
    common = ["--data-dir", datadir, "--model", a.model, "--threads", str(a.threads)]
    create = base + ["create", "numpy"] + common + ["--index", a.index] + (["--code-aware"] if a.code_aware else [])
    subprocess.run(create, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(logdir, f"cli-{rep}.log"), "w") as log:
        t0 = time.monotonic()
        subprocess.run(base + ["ingest", "numpy"] + common + ["--quiet", a.src], check=True, stderr=log)
        secs = time.monotonic() - t0
    out = subprocess.run([a.embd, "collections", "info", "numpy", "--data-dir", datadir], check=True,
                         capture_output=True, text=True).stdout
    info = json.loads(out.splitlines()[-1])
    shutil.rmtree(datadir, ignore_errors=True)
    r = {"via": "cli", "documents": info["documents"], "chunks": info["chunks"], "seconds": secs,
         "chunks_per_s": info["chunks"] / secs}
    if tokens_per_chunk_run and tokens_per_chunk_run["chunks"] == info["chunks"]:
        r["tokens"] = tokens_per_chunk_run["tokens"]
        r["tokens_per_s"] = r["tokens"] / secs
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embd", default=os.path.join(ROOT, "build", "embd"))
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--src", default="/usr/lib/python3/dist-packages/numpy")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-docs", type=int, default=32)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--code-aware", action="store_true")
    ap.add_argument("--index", choices=["flat", "hnsw"], default="flat")
    ap.add_argument("--cli", action="store_true", help="also time `embd collections ingest` (in-process) per rep")
    ap.add_argument("--no-http", action="store_true", help="CLI only (needs --cli)")
    # The server embeds a document request in jobs of 256 chunks, each with --request-timeout
    # (default 60 s): below ~1,100 tokens/s (this 2-core VM when others load it) a job times out.
    ap.add_argument("--serve-args", default="--request-timeout 600", help="extra `embd serve` flags")
    ap.add_argument("--tmp", default=None, help="where data directories go (default: $TMPDIR)")
    ap.add_argument("--json", help="write every rep's numbers here")
    a = ap.parse_args()
    if a.reps < 1 or a.batch_docs < 1 or a.threads < 1 or (a.no_http and not a.cli):
        ap.error("need --reps, --batch-docs, --threads >= 1, and --cli with --no-http")
    for p, what in ((a.embd, "--embd"), (a.model, "--model"), (a.src, "--src")):
        if not os.path.exists(p):
            ap.error(f"{what} {p} does not exist")
    a.src = os.path.abspath(a.src)
    files, skipped = collect(a.src)
    nbytes = sum(len(t.encode()) for _, t in files)
    print(f"{a.src}: {len(files)} text files ({nbytes / 1e6:.1f} MB), {skipped} skipped; model "
          f"{os.path.basename(a.model)}, threads {a.threads}, index {a.index}, code_aware {a.code_aware}", flush=True)
    queries = make_queries(files, a.queries)
    logdir = tempfile.mkdtemp(prefix="embd-bench-ingest-logs-")
    runs = []
    last_http = None
    for rep in range(a.reps):
        if not a.no_http:
            r = http_rep(a, files, queries, logdir, rep)
            last_http = r
            runs.append(r)
            print(json.dumps(r), flush=True)
        if a.cli:
            r = cli_rep(a, logdir, rep, last_http)
            runs.append(r)
            print(json.dumps(r), flush=True)
    print(f"medians of {a.reps} (logs in {logdir}):")
    for via in ("http", "cli"):
        rs = [r for r in runs if r["via"] == via]
        if not rs:
            continue
        keys = [k for k in ("seconds", "chunks_per_s", "tokens_per_s", "search_p50_ms", "search_p99_ms") if k in rs[0]]
        med = {k: statistics.median(r[k] for r in rs) for k in keys}
        print(f"  {via}: {rs[0]['documents']} documents, {rs[0]['chunks']} chunks, {rs[0].get('tokens', '?')} tokens; "
              + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"src": a.src, "files": len(files), "bytes": nbytes, "skipped": skipped, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
