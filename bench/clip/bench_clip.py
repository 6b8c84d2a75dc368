#!/usr/bin/python3
"""CLIP speed on this machine (issue 8): a random-weight CLIP with openai/clip-vit-base-patch32's
real shapes (tests/clip/gen_hf_clip.py real), converted to f16 and q8_0, measured two ways:

1. the towers alone: `embd clip-embed --bench` (images/s for a batch at 224x224, single-image and
   single-text latency);
2. over HTTP through `embd serve`: p50/p90 of POST /v1/embed/image with one inline 224x224-ish
   image (decode + preprocess + pass + JSON), images/s of POST /v1/embed/image-batch with 16
   images, and p50 of POST /v1/embed/text with one short text;
3. --clients N (default 8) clients at once, each sending single-image (then single-text) requests
   on its own connection: requests that wait for the model share a pass, so this throughput is
   compared with one client's (the sequential rate, 1 / mean latency).

No peer: nothing here serves a CLIP text tower (llama.cpp's mtmd has only the image side), and no
pretrained CLIP (or its ONNX export) is reachable. Medians over --reps; the machine is noisy.

  /usr/bin/python3 bench/clip/bench_clip.py [--threads N] [--reps 20] [--clients 8] [--types f16,q8_0] [--json OUT]
"""
import argparse
import base64
import http.client
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("EMBD_BIN") or os.path.join(ROOT, "build", "embd")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_models(tmp, types):
    hf = os.path.join(tmp, "clip-real")
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "clip", "gen_hf_clip.py"), "real", hf], check=True,
                   stdout=subprocess.DEVNULL)
    out = {}
    for t in types:
        g = os.path.join(tmp, f"clip-real-{t}.gguf")
        subprocess.run([BIN, "convert", hf, g, "--type", t, "--quiet"], check=True)
        out[t] = g
    return out


def cli_bench(gguf, threads, batch):
    r = subprocess.run([BIN, "clip-embed", "--model", gguf, "--bench", "--batch", str(batch), "--threads",
                        str(threads)], check=True, capture_output=True, text=True)
    return r.stdout.strip() + ("\n" + r.stderr.strip() if r.stderr.strip() else "")


def test_images(n):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a = rng.integers(0, 256, (240 + i, 320, 3), dtype=np.uint8)
        b = io.BytesIO()
        Image.fromarray(a).save(b, "JPEG", quality=90)
        out.append("data:image/jpeg;base64," + base64.b64encode(b.getvalue()).decode())
    return out


class Serve:
    def __init__(self, gguf, threads):
        self.p = subprocess.Popen([BIN, "serve", "--model", gguf, "--port", "0", "--threads", str(threads),
                                   "--insecure", "--max-image-batch", "16"], stderr=subprocess.PIPE, text=True)
        self.port = None
        for line in self.p.stderr:
            m = re.search(r"embd: ready: .* on http://[^ ]*:(\d+)$", line.strip())
            if m:
                self.port = int(m.group(1))
                break
        if not self.port:
            raise SystemExit("server did not start")
        self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def post(self, path, body):
        t0 = time.perf_counter()
        self.c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = self.c.getresponse()
        data = r.read()
        dt = time.perf_counter() - t0
        if r.status != 200:
            raise SystemExit(f"{path}: {r.status} {data[:200]!r}")
        return dt

    def stop(self):
        self.c.close()
        self.p.terminate()
        self.p.wait(60)


def concurrent(s, clients, per_client, path, body_of):
    """Requests per second with `clients` connections sending at once."""
    def client(k):
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=600)
        try:
            for i in range(per_client):
                c.request("POST", path, body=json.dumps(body_of(k * per_client + i)),
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    return r.status
        finally:
            c.close()
        return None
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        failed = [st for st in ex.map(client, range(clients)) if st]
    dt = time.perf_counter() - t0
    if failed:
        raise SystemExit(f"{path}: {len(failed)} clients got errors, e.g. HTTP {failed[0]}")
    return clients * per_client / dt


def http_bench(gguf, threads, reps, clients):
    imgs = test_images(16)
    s = Serve(gguf, threads)
    try:
        s.post("/v1/embed/image", {"image": imgs[0]})  # warm-up
        single = [s.post("/v1/embed/image", {"image": imgs[i % 16]}) for i in range(reps)]
        batch = [s.post("/v1/embed/image-batch", {"images": imgs}) for _ in range(max(3, reps // 4))]
        text = [s.post("/v1/embed/text", {"text": f"a photo of a cat number {i}"}) for i in range(reps)]
        per = max(2, reps // 2)
        conc_img = concurrent(s, clients, per, "/v1/embed/image", lambda i: {"image": imgs[i % 16]})
        conc_txt = concurrent(s, clients, per * 4, "/v1/embed/text", lambda i: {"text": f"a photo of a dog number {i}"})
    finally:
        s.stop()
    q = lambda xs, p: float(np.percentile(xs, p)) * 1e3  # noqa: E731
    return {"image_p50_ms": q(single, 50), "image_p90_ms": q(single, 90),
            "batch16_images_per_s": 16 / statistics.median(batch), "batch16_p50_ms": q(batch, 50),
            "text_p50_ms": q(text, 50), "text_p90_ms": q(text, 90),
            "image_seq_per_s": 1 / statistics.mean(single), "text_seq_per_s": 1 / statistics.mean(text),
            "clients": clients, "image_conc_per_s": conc_img, "text_conc_per_s": conc_txt}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--types", default="f16,q8_0")
    ap.add_argument("--json")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="embd-clip-bench-")
    try:
        models = make_models(tmp, a.types.split(","))
        res = {}
        for t, g in models.items():
            log(f"== {t}: embd clip-embed --bench --batch 16")
            cli = cli_bench(g, a.threads, 16)
            print(f"[{t}] towers (embd clip-embed --bench, batch 16, {a.threads} threads):\n{cli}")
            log(f"== {t}: HTTP")
            h = http_bench(g, a.threads, a.reps, a.clients)
            res[t] = {"cli": cli, "http": h}
            print(f"[{t}] HTTP: single image p50 {h['image_p50_ms']:.1f} ms (p90 {h['image_p90_ms']:.1f}), "
                  f"batch of 16: {h['batch16_images_per_s']:.1f} images/s (p50 {h['batch16_p50_ms']:.0f} ms), "
                  f"text p50 {h['text_p50_ms']:.1f} ms (p90 {h['text_p90_ms']:.1f})")
            print(f"[{t}] HTTP, {h['clients']} clients at once: images {h['image_conc_per_s']:.1f}/s "
                  f"({h['image_conc_per_s'] / h['image_seq_per_s']:.2f}x one client's {h['image_seq_per_s']:.1f}/s), "
                  f"texts {h['text_conc_per_s']:.1f}/s "
                  f"({h['text_conc_per_s'] / h['text_seq_per_s']:.2f}x one client's {h['text_seq_per_s']:.1f}/s)")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
    finally:
        shutil.rmtree(tmp, True)


if __name__ == "__main__":
    main()
