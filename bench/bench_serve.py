#!/usr/bin/env python3
"""embd serve vs llama.cpp's llama-server: same model, corpus, threads, in one run.

    /usr/bin/python3 bench/bench_serve.py [--chunks 2000] [--threads 2] [--reps 3] [--only embd|llama]

Both servers get the same texts: the first N chunks of ../shared/corpus/numpy_chunks.jsonl, cut so
that each has at most 500 tokens (llama-server refuses an input longer than its ubatch, and the
model has 512 positions). Each server is started fresh per rep on a free loopback port, waited for
(GET /health == 200), and runs three workloads over keep-alive HTTP/1.1 connections (one
http.client.HTTPConnection per client thread, so connection setup is not measured):

  tput c=1, c=8   the chunks as POST /v1/embeddings requests of --batch (32) inputs each, sent by
                  1 and by 8 client threads (each takes the next batch); tokens/s where tokens =
                  sum of usage.prompt_tokens from the server's own responses (the two servers'
                  sums are cross-checked; both are printed when they differ). Every response must
                  hold --batch embeddings of the model's dims, in order.
  latency         --queries (200) requests of one short query each (a corpus chunk's first line,
                  cut to --query-words words), one client; p50 and p99 of the request time.
  peak RSS        VmHWM from /proc/<pid>/status, read after the workloads, before SIGTERM.

Reps alternate the servers (embd first on odd reps, llama-server first on even ones). Medians
over reps are printed with ratios oriented so that > 1 means embd is better: embd/llama for
throughput, llama/embd for latency and RSS. The machine is noisy: read the ratios, not the
absolutes.
"""
import argparse
import http.client
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bench_embed import prepare, token_counts  # same corpus and shortening as bench_embed.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("EMBD_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
HOST = "127.0.0.1"
# llama-server tuning (see --llama-args). For embeddings llama-server clamps -b to -ub, and a whole
# input must fit one ubatch; -ub 512 beat 1024/2048/4096 in a sweep (bigger ubatches pack more inputs
# per pass but pay for cross-sequence attention and compute buffers). 8 slots let up to 8 short
# inputs share a pass (no KV cache for BERT, so slots cost no memory); each slot gets -c / -np
# positions, so -c >= 512 * np.
LLAMA_TUNING = "-c 4096 -b 512 -ub 512 -np 8"


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def llama_bin():
    return sh(["bash", os.path.join(ROOT, "scripts", "build-llama.sh"), "--tools"]).strip()


def build_embd():
    subprocess.run(["cmake", "-S", ROOT, "-B", os.path.join(ROOT, "build"), "-DCMAKE_BUILD_TYPE=Release"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", os.path.join(ROOT, "build"), "--target", "embd", "-j"], check=True,
                   capture_output=True)


# ---------------------------------------------------------------- servers

def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name, cmd_fn, logdir, health_timeout):
        self.name, self.port = name, free_port()
        self.cmd = cmd_fn(self.port)
        self.log = os.path.join(logdir, f"{name}-{self.port}.log")
        with open(self.log, "w") as lf:
            lf.write("$ " + shlex.join(self.cmd) + "\n")
            lf.flush()
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + health_timeout
        while True:
            if self.proc.poll() is not None:
                self.fail(f"exited with {self.proc.returncode} before /health was ready")
            try:
                c = http.client.HTTPConnection(HOST, self.port, timeout=2)
                c.request("GET", "/health")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                self.stop()
                self.fail(f"/health not 200 after {health_timeout} s")
            time.sleep(0.1)

    def fail(self, msg):
        try:
            with open(self.log, errors="replace") as f:
                tail = f.read()[-3000:]
        except OSError:
            tail = ""
        sys.exit(f"{self.name}: {msg}\n$ {shlex.join(self.cmd)}\n--- {self.log} (tail) ---\n{tail}")

    def vmhwm(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- client

class Client:
    """One keep-alive connection; post() returns (parsed response, seconds)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection(HOST, port, timeout=600)

    def post(self, path, obj):
        body = json.dumps(obj).encode()
        t0 = time.perf_counter()
        self.conn.request("POST", path, body, {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        el = time.perf_counter() - t0
        if r.status != 200:
            raise RuntimeError(f"POST {path}: HTTP {r.status}: {data[:500]!r}")
        return json.loads(data), el

    def close(self):
        self.conn.close()


def embed(client, texts, dims):
    """POST /v1/embeddings; checks the response; returns (prompt_tokens or None, seconds, dims)."""
    resp, el = client.post("/v1/embeddings", {"input": texts, "model": "m"})
    data = resp.get("data")
    if not isinstance(data, list) or len(data) != len(texts):
        raise RuntimeError(f"expected {len(texts)} embeddings, got {len(data) if isinstance(data, list) else data!r}")
    for i, d in enumerate(data):
        e = d.get("embedding")
        if d.get("index", i) != i or not isinstance(e, list) or not e:
            raise RuntimeError(f"bad item {i}: index {d.get('index')}, embedding {type(e).__name__}")
        if dims is None:
            dims = len(e)
        if len(e) != dims:
            raise RuntimeError(f"item {i} has {len(e)} dims, expected {dims}")
    usage = resp.get("usage") or {}
    return usage.get("prompt_tokens"), el, dims


def throughput(port, batches, conc, dims):
    """All batches by `conc` threads, each with its own connection taking the next batch."""
    lock = threading.Lock()
    state = {"next": 0, "tokens": 0, "missing": 0, "dims": dims, "err": None}
    clients = [Client(port) for _ in range(conc)]
    for c in clients:  # open the connections before the clock starts
        c.conn.connect()

    def work(c):
        try:
            while True:
                with lock:
                    i = state["next"]
                    state["next"] += 1
                    if i >= len(batches) or state["err"]:
                        return
                tok, _, d = embed(c, batches[i], state["dims"])
                with lock:
                    state["dims"] = d
                    if tok is None:
                        state["missing"] += 1
                    else:
                        state["tokens"] += tok
        except Exception as e:  # noqa: BLE001 -- reported below
            with lock:
                state["err"] = state["err"] or e

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    el = time.perf_counter() - t0
    for c in clients:
        c.close()
    if state["err"]:
        raise state["err"]
    if state["missing"]:
        raise RuntimeError(f"{state['missing']} responses without usage.prompt_tokens")
    return state["tokens"], el, state["dims"]


def latency(port, queries, dims):
    c = Client(port)
    c.conn.connect()
    times = []
    for q in queries:
        _, el, dims = embed(c, [q], dims)
        times.append(el)
    c.close()
    times.sort()

    def pct(p):  # nearest rank
        return times[max(0, min(len(times) - 1, -(-len(times) * p // 100) - 1))]

    return pct(50), pct(99), dims


def run_server(srv, batches, queries, concs, dims):
    r = {}
    try:
        embed_warm = Client(srv.port)  # one unmeasured request: first-touch costs out of the way
        _, _, dims = embed(embed_warm, batches[0], dims)
        embed_warm.close()
        for c in concs:
            tok, el, dims = throughput(srv.port, batches, c, dims)
            r[f"tput_c{c}"] = tok / el
            r[f"tokens_c{c}"] = tok
        r["lat_p50"], r["lat_p99"], dims = latency(srv.port, queries, dims)
        r["rss"] = srv.vmhwm()
    except Exception as e:  # noqa: BLE001
        srv.stop()
        srv.fail(f"workload failed: {e}")
    srv.stop()
    r["dims"] = dims
    return r


# ---------------------------------------------------------------- corpus

def counts_llama(port, texts):
    c = Client(port)
    out = [len(c.post("/tokenize", {"content": t, "add_special": True})[0]["tokens"]) for t in texts]
    c.close()
    return out


def make_queries(texts, n, words):
    firsts = []
    for t in texts:
        for line in t.splitlines():
            w = line.split()
            if len(w) >= 3:
                firsts.append(" ".join(w[:words]))
                break
    if not firsts:
        sys.exit("no query lines in the corpus")
    return [firsts[i % len(firsts)] for i in range(n)]


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--model", default=os.path.join(SHARED, "models", "bge-small-random", "bge-small-random-q8_0.gguf"))
    ap.add_argument("--batch", type=int, default=32, help="inputs per throughput request")
    ap.add_argument("--concurrency", default="1,8", help="client threads for the throughput runs")
    ap.add_argument("--queries", type=int, default=200, help="latency requests (one short query each)")
    ap.add_argument("--query-words", type=int, default=12)
    ap.add_argument("--only", choices=["embd", "llama"], help="run one server only")
    ap.add_argument("--embd", help="embd binary (default: build/embd, rebuilt first unless --no-build)")
    ap.add_argument("--no-build", action="store_true", help="use build/embd as it is")
    ap.add_argument("--embd-args", default="", help="extra `embd serve` flags")
    ap.add_argument("--llama-server", help="llama-server binary (default: scripts/build-llama.sh --tools)")
    ap.add_argument("--llama-args", default=LLAMA_TUNING,
                    help=f"llama-server tuning flags, replacing the default '{LLAMA_TUNING}'")
    ap.add_argument("--health-timeout", type=float, default=120)
    ap.add_argument("--logdir", help="server logs (default: a temporary directory)")
    ap.add_argument("--json", metavar="OUT", help="write results as JSON")
    a = ap.parse_args()
    concs = [int(x) for x in a.concurrency.split(",")]
    names = ["embd", "llama-server"] if a.only is None else ["embd" if a.only == "embd" else "llama-server"]

    embd = a.embd
    if embd is None:
        embd = os.path.join(ROOT, "build", "embd")
        if a.only != "llama" and not a.no_build:
            build_embd()
    llama_server = a.llama_server or ("" if a.only == "embd" else os.path.join(llama_bin(), "llama-server"))
    tmp = tempfile.mkdtemp(prefix="embd-bench-serve-")
    logdir = a.logdir or tmp
    os.makedirs(logdir, exist_ok=True)
    model = os.path.abspath(a.model)
    no_webui = bool(llama_server) and "--no-webui" in subprocess.run([llama_server, "--help"], capture_output=True,
                                                                      text=True).stdout

    def embd_cmd(port):
        # loopback only, so no API keys: --insecure (embd refuses to start without auth otherwise)
        return [embd, "serve", "--insecure", "--model", model, "--host", HOST, "--port", str(port),
                "--threads", str(a.threads),
                *shlex.split(a.embd_args)]

    def llama_cmd(port):
        cmd = [llama_server, "-m", model, "--host", HOST, "--port", str(port), "--embeddings", "--pooling", "cls",
               "-t", str(a.threads), "-tb", str(a.threads), *shlex.split(a.llama_args),
               "--log-file", os.path.join(logdir, f"llama-server-{port}.file.log")]
        return cmd + ["--no-webui"] if no_webui else cmd

    cmds = {"embd": embd_cmd, "llama-server": llama_cmd}

    # Token counts for shortening: embd's tokenizer when the binary is there, else llama-server's.
    if os.access(embd, os.X_OK):
        texts, tokens = prepare(a.chunks, lambda t: token_counts(embd, model, t, tmp))
        counter = "embd tokenize"
    else:
        srv = Server("llama-server", llama_cmd, logdir, a.health_timeout)
        try:
            texts, tokens = prepare(a.chunks, lambda t: counts_llama(srv.port, t))
        finally:
            srv.stop()
        counter = "llama-server /tokenize"
    batches = [texts[i:i + a.batch] for i in range(0, len(texts), a.batch)]
    queries = make_queries(texts, a.queries, a.query_words)
    print(f"{a.chunks} chunks ({tokens} tokens by {counter}) in {len(batches)} requests of <= {a.batch}; "
          f"{a.queries} latency queries; {a.threads} threads; {a.reps} reps; model {os.path.basename(model)}")
    for n in names:
        print(f"  {n}: {shlex.join(cmds[n]('P'))}")
    print(f"  logs: {logdir}", flush=True)

    res = {n: [] for n in names}
    dims = None
    for r in range(a.reps):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            srv = Server(n, cmds[n], logdir, a.health_timeout)
            x = run_server(srv, batches, queries, concs, dims)
            dims = x["dims"]
            res[n].append(x)
            tp = "  ".join(f"c{c} {x[f'tput_c{c}']:7.0f} tok/s" for c in concs)
            print(f"  rep {r + 1} {n:12s} {tp}  p50 {x['lat_p50'] * 1e3:6.2f} ms  p99 {x['lat_p99'] * 1e3:6.2f} ms"
                  f"  RSS {x['rss'] / 2**20:6.1f} MiB", flush=True)

    # Tokens each server reports must agree (with each other, and across its own reps).
    reported = {n: sorted({x[f"tokens_c{c}"] for x in res[n] for c in concs}) for n in names}
    agree = len({t for v in reported.values() for t in v}) == 1
    if agree:
        print(f"\nusage.prompt_tokens: {reported[names[0]][0]} per pass ({'both servers agree' if len(names) > 1 else names[0]};"
              f" {counter}: {tokens})")
    else:
        print("\nusage.prompt_tokens DIFFER: " + "; ".join(f"{n} {v}" for n, v in reported.items())
              + f" ({counter}: {tokens}); each server's tok/s uses its own count")

    rows = [(f"tput c={c} tok/s", f"tput_c{c}", 1, True) for c in concs]
    rows += [("latency p50 ms", "lat_p50", 1e3, False), ("latency p99 ms", "lat_p99", 1e3, False),
             ("peak RSS MiB", "rss", 1 / 2**20, False)]
    med = {n: {k: statistics.median(x[k] for x in res[n]) for _, k, _, _ in rows} for n in names}
    print(f"medians over {a.reps} reps; ratio > 1 means embd better (throughput embd/llama, latency and RSS llama/embd)")
    print(f"{'workload':18s}" + "".join(f"{n:>14s}" for n in names) + (f"{'ratio':>9s}" if len(names) == 2 else ""))
    summary = {}
    for label, k, scale, higher_better in rows:
        vals = [med[n][k] for n in names]
        line = f"{label:18s}" + "".join(f"{v * scale:14.{0 if k.startswith('tput') else 1 if k == 'rss' else 2}f}" for v in vals)
        summary[k] = {n: med[n][k] for n in names}
        if len(names) == 2:
            e, l = vals
            ratio = (e / l if higher_better else l / e) if e and l else float("nan")
            summary[k]["ratio"] = ratio
            line += f"{ratio:8.2f}x"
        print(line)

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"chunks": a.chunks, "tokens": tokens, "batch": a.batch, "queries": a.queries,
                       "threads": a.threads, "reps": a.reps, "model": model, "concurrency": concs,
                       "commands": {n: cmds[n]("P") for n in names}, "prompt_tokens": reported,
                       "ratio_convention": "> 1 means embd better: embd/llama for tput_*, llama/embd otherwise",
                       "runs": res, "medians": summary}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
