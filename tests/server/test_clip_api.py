"""CLIP over HTTP (issue 8): /v1/embed/image, /v1/embed/image-batch, /v1/embed/text and data-URI
images in /v1/embeddings on a real `embd serve` of a random-weight CLIP GGUF (tests/clip/
gen_hf_clip.py, tiny shapes, converted by `embd convert`). Images are generated with PIL and
served by a loopback HTTP server that can also be slow, fail, redirect or send too much.

What is checked: every way of sending an image gives the same vector, and that vector is the one
`embd clip-embed` computes from PIL's own preprocessing of the image; batches keep input order
with per-item errors (download failures, timeouts, bad bytes, bombs, non-http URLs) while the good
items succeed; transient download failures are retried; the SSRF guard refuses loopback URLs unless allowed; limits give clear 4xx; the
concurrent requests share passes; decodes are bounded over all requests; the request timeout cuts downloads and gives 504; text tokens count against the tokens/min limit; the
text tower matches the CLI; the server shuts down cleanly (no sanitizer report)."""
import base64
import http.server
import io
import json
import os
import socketserver
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import BIN, TMP, Server, cosine, request  # noqa: E402

CLIP_DIR = os.path.join(common.SOURCE, "tests", "clip")
PY = os.environ.get("EMBD_PYTHON") or sys.executable
MAX_BYTES = 200_000
TIMEOUT_S = 2
SLOWER_S = 12  # outlasts the request timeout of the deadline test


def make_model():
    hf = os.path.join(TMP, "clip-hf")
    gguf = os.path.join(TMP, "clip-tiny-f32.gguf")
    subprocess.run([PY, os.path.join(CLIP_DIR, "gen_hf_clip.py"), "tiny", hf], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([BIN, "convert", hf, gguf, "--type", "f32"], check=True, stdout=subprocess.DEVNULL)
    return hf, gguf


# ---- images -----------------------------------------------------------------------------
def encode(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def gradient(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), (x + y) % 256], -1).astype(np.int32)
    a = (a + rng.integers(0, 40, a.shape)) % 256
    return Image.fromarray(a.astype(np.uint8), "RGB")


def bomb_png():
    """A valid PNG header declaring 30000 x 30000 pixels, with almost no data."""
    import struct
    import zlib
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


IMAGES = {
    "a.png": encode(gradient(300, 200, 1), "PNG"),
    "b.jpg": encode(gradient(257, 431, 2), "JPEG", quality=90),
    "c.webp": encode(gradient(224, 224, 3), "WEBP", lossless=True),
    "gray.jpg": encode(gradient(180, 120, 4).convert("L"), "JPEG", quality=92),
    "cmyk.jpg": encode(gradient(160, 160, 5).convert("CMYK"), "JPEG", quality=92),
    "small.png": encode(gradient(17, 9, 6), "PNG"),
}
TRUNCATED = IMAGES["a.png"][: len(IMAGES["a.png"]) // 2]
BOMB = bomb_png()


HITS = {}  # /flaky, /drop and /gone requests by key
HITS_LOCK = threading.Lock()


def hit(key):
    with HITS_LOCK:
        HITS[key] = HITS.get(key, 0) + 1
        return HITS[key]


HELD = threading.Semaphore(0)  # one release per /hold request that arrived
RELEASE = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send(self, code, body=b"", ctype="application/octet-stream", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server gave up on a slow download: what the test wants

    def do_GET(self):  # noqa: N802 - http.server's name
        p = self.path
        if p.startswith("/img/") and p[5:] in IMAGES:
            return self.send(200, IMAGES[p[5:]], "image/*")
        if p == "/truncated":
            return self.send(200, TRUNCATED, "image/png")
        if p == "/bomb":
            return self.send(200, BOMB, "image/png")
        if p == "/slow":
            time.sleep(TIMEOUT_S + 2)
            return self.send(200, IMAGES["a.png"], "image/png")
        if p == "/slower":
            time.sleep(SLOWER_S)
            return self.send(200, IMAGES["a.png"], "image/png")
        if p == "/big":
            return self.send(200, b"\0" * (MAX_BYTES + 1), "image/png")
        if p == "/redirect":
            return self.send(302, extra=[("Location", "/img/a.png")])
        if p == "/loop":
            return self.send(302, extra=[("Location", "/loop")])
        if p == "/tofile":
            return self.send(302, extra=[("Location", "file:///etc/passwd")])
        if p == "/hold":  # answers once the test releases it: a request held in its download phase
            HELD.release()
            RELEASE.wait(60)
            return self.send(200, IMAGES["a.png"], "image/png")
        if p.startswith("/flaky/"):  # /flaky/N/key: 503 for the first N requests of key, then the image
            _, _, n, key = p.split("/")
            if hit(key) <= int(n):
                return self.send(503, b"busy", "text/plain")
            return self.send(200, IMAGES["a.png"], "image/png")
        if p.startswith("/drop/"):  # /drop/N/key: the connection is closed unanswered N times
            _, _, n, key = p.split("/")
            if hit(key) <= int(n):
                self.close_connection = True
                return None
            return self.send(200, IMAGES["a.png"], "image/png")
        if p.startswith("/gone/"):  # a 404 is final: counted, never retried
            hit(p[6:])
            return self.send(404, b"no", "text/plain")
        if p == "/500":
            return self.send(500, b"oops", "text/plain")
        return self.send(404, b"no", "text/plain")


class ThreadedServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def start_images():
    srv = ThreadedServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def data_uri(name):
    return "data:image/x;base64," + base64.b64encode(IMAGES[name]).decode()


# ---- the reference: PIL preprocessing + `embd clip-embed` ---------------------------------
def pil_pixels(data, size, mean, std):
    """CLIPImageProcessor: RGB, bicubic resize of the shortest side, center crop, normalise."""
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    short, long_ = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long_ / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    im = im.resize((nw, nh), Image.BICUBIC)
    top, left = (nh - size) // 2, (nw - size) // 2
    a = np.asarray(im, dtype=np.float32)[top:top + size, left:left + size] / 255.0
    a = (a - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return a.transpose(2, 0, 1)


def cli_embed(gguf, pixels=None, texts=()):
    args = [BIN, "clip-embed", "--model", gguf, "--threads", "2"]
    if pixels is not None:
        path = os.path.join(TMP, f"px-{time.monotonic_ns()}.npy")
        np.save(path, np.asarray(pixels, np.float32))
        args += ["--pixels", path]
    for t in texts:
        args += ["--text", t]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [np.asarray(json.loads(l)["embedding"], np.float64) for l in out.splitlines() if l.strip()]


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def near(a, b, what, tol=0.9999):
    c = cosine(a, b)
    check(c >= tol, f"{what}: cosine {c:.6f} < {tol}")


def check_cli_images(gguf, ref, base):
    """`embd clip-embed --image` (files, URLs, data URIs) gives the vectors of PIL's preprocessing;
    a source that fails is an error line in its place and exit status 3."""
    paths = {}
    for n in ("a.png", "b.jpg", "gray.jpg"):
        paths[n] = os.path.join(TMP, "cli-" + n)
        with open(paths[n], "wb") as f:
            f.write(IMAGES[n])
    srcs = [paths["a.png"], base + "/img/b.jpg", os.path.join(TMP, "no-such-image.png"), data_uri("gray.jpg")]
    p = subprocess.run([BIN, "clip-embed", "--model", gguf, "--threads", "2", *sum((["--image", x] for x in srcs), [])],
                       capture_output=True, text=True)
    check(p.returncode == 3, f"clip-embed --image with a missing file: exit {p.returncode}, {p.stderr}")
    lines = [json.loads(l) for l in p.stdout.splitlines()]
    check([l["image"] for l in lines] == [0, 1, 2, 3], lines)
    check("error" in lines[2] and "no-such-image.png" in lines[2]["error"], lines[2])
    for i, n in ((0, "a.png"), (1, "b.jpg"), (3, "gray.jpg")):
        near(lines[i]["embedding"], ref[n], f"clip-embed --image {n}")


def main():
    hf, gguf = make_model()
    with open(os.path.join(hf, "preprocessor_config.json")) as f:
        pp = json.load(f)
    size = pp["crop_size"]["height"] if isinstance(pp.get("crop_size"), dict) else pp["crop_size"]
    mean, std = pp["image_mean"], pp["image_std"]
    srv_img, base = start_images()

    ref_names = ["a.png", "b.jpg", "c.webp", "gray.jpg", "small.png"]
    ref = dict(zip(ref_names, cli_embed(gguf, pixels=np.stack([pil_pixels(IMAGES[n], size, mean, std)
                                                                for n in ref_names]))))
    texts = ["a photo of a cat", "a diagram of a neural network", ""]
    ref_text = dict(zip(texts, cli_embed(gguf, texts=texts)))
    check_cli_images(gguf, ref, base)

    with Server("--allow-private-downloads", "--download-timeout", str(TIMEOUT_S), "--download-max-bytes",
                str(MAX_BYTES), "--max-image-batch", "16", model=gguf) as s:
        info = s.get("/info").json()
        check(info["architecture"] == "clip" and info["model_type"] == "clip", info)
        dim = info["dimensions"]
        check(info["image_size"] == size and info["max_image_batch"] == 16, info)
        check(s.get("/health").status == 200, "health")

        # one image, three ways, all equal to the reference
        for body in ({"image": {"url": base + "/img/a.png"}}, {"image": base + "/img/a.png"},
                     {"image": {"b64": base64.b64encode(IMAGES["a.png"]).decode()}}, {"image": data_uri("a.png")},
                     {"image": {"url": base + "/redirect"}}):
            r = s.post("/v1/embed/image", body)
            check(r.status == 200, f"{body if 'b64' not in str(body) else 'b64'}: {r}")
            j = r.json()
            check(j["dimensions"] == dim and len(j["embedding"]) == dim, j.keys())
            check(abs(np.linalg.norm(j["embedding"]) - 1) < 1e-4, "not unit length")
            near(j["embedding"], ref["a.png"], "single a.png")

        # a batch: good items succeed in place, each failure is its own
        batch = [
            {"url": base + "/img/b.jpg"},         # 0 ok
            {"url": base + "/missing"},           # 1 404
            data_uri("c.webp"),                   # 2 ok
            {"url": base + "/truncated"},         # 3 corrupt
            {"url": base + "/slow"},              # 4 timeout
            "ftp://127.0.0.1/x.png",              # 5 scheme
            {"url": base + "/bomb"},              # 6 too many pixels
            {"url": base + "/img/gray.jpg"},      # 7 ok
            {"url": base + "/big"},               # 8 too large
            {"b64": "!!!not base64!!!"},          # 9 bad base64
            {"url": base + "/loop"},              # 10 redirect loop
            {"url": base + "/tofile"},            # 11 redirect to file://
            {"url": base + "/500"},               # 12 server error
            {"url": base + "/img/small.png"},     # 13 ok (upscaled)
            {"url": base + "/img/cmyk.jpg"},      # 14 ok
            {"nope": 1},                          # 15 not an image object
        ]
        m0 = s.metrics()
        t0 = time.monotonic()
        r = s.post("/v1/embed/image-batch", {"images": batch})
        dt = time.monotonic() - t0
        check(r.status == 200, r)
        j = r.json()
        data = j["data"]
        check([d["index"] for d in data] == list(range(len(batch))), "order")
        ok = {0: "b.jpg", 2: "c.webp", 7: "gray.jpg", 13: "small.png"}
        for i, d in enumerate(data):
            if i in ok:
                check("embedding" in d, f"item {i} failed: {d}")
                near(d["embedding"], ref[ok[i]], f"batch item {i} ({ok[i]})")
            elif i == 14:
                check("embedding" in d, f"CMYK JPEG failed: {d}")
            else:
                check("error" in d and d["error"]["message"], f"item {i} should fail: {d}")
        types = {i: data[i]["error"]["type"] for i in range(len(batch)) if "error" in data[i]}
        for i in (1, 4, 8, 10, 11, 12):
            check(types[i] == "download_failed", f"item {i}: {data[i]}")
        for i in (3, 5, 6, 9, 15):
            check(types[i] == "invalid_image", f"item {i}: {data[i]}")
        check("404" in data[1]["error"]["message"], data[1])
        check("500" in data[12]["error"]["message"], data[12])
        check("pixel" in data[6]["error"]["message"].lower(), data[6])
        check(j["succeeded"] == 5 and j["failed"] == 11, (j["succeeded"], j["failed"]))
        m1 = s.metrics()
        for outcome, want in (("ok", 5), ("failed", 11)):
            got = (common.metric(m1, "embd_clip_images_total", {"outcome": outcome})
                   - common.metric(m0, "embd_clip_images_total", {"outcome": outcome}))
            check(got == want, f"embd_clip_images_total{{outcome={outcome}}} grew by {got}, not {want}")
        # downloads run concurrently: the slow one bounds the request, the others do not add up
        check(dt < TIMEOUT_S + 6, f"batch took {dt:.1f} s")

        # transient failures are retried (--download-retries, 2 by default): two 503s, or a dropped
        # connection, then the image succeed; a server that keeps failing fails after 3 attempts;
        # a 404 is asked once
        check(info["downloads"]["retries"] == 2, info["downloads"])
        r = s.post("/v1/embed/image-batch", {"images": [base + "/flaky/2/a", base + "/drop/1/b", base + "/flaky/9/c",
                                                        base + "/gone/d"]})
        check(r.status == 200, r)
        d = r.json()["data"]
        near(d[0]["embedding"], ref["a.png"], "after two 503s")
        near(d[1]["embedding"], ref["a.png"], "after a dropped connection")
        check("error" in d[2] and "503" in d[2]["error"]["message"] and "3 attempts" in d[2]["error"]["message"], d[2])
        check("error" in d[3] and "404" in d[3]["error"]["message"], d[3])
        check((HITS["a"], HITS["b"], HITS["c"], HITS["d"]) == (3, 2, 3, 1), HITS)

        # limits and malformed requests: clear 4xx, nothing run
        bad = [
            ("/v1/embed/image-batch", {"images": [data_uri("a.png")] * 17}, 413),
            ("/v1/embed/image-batch", {"images": []}, 422),
            ("/v1/embed/image-batch", {"images": "x"}, 422),
            ("/v1/embed/image-batch", {}, 422),
            ("/v1/embed/image", {}, 422),
            ("/v1/embed/image", {"image": [data_uri("a.png")]}, 422),
            ("/v1/embed/image", {"image": {"url": "file:///etc/passwd"}}, 422),
            ("/v1/embed/image", {"image": {"url": base + "/missing"}}, 422),
            ("/v1/embed/image", {"image": {"b64": base64.b64encode(TRUNCATED).decode()}}, 422),
            ("/v1/embed/image", {"image": {"url": "x", "b64": "y"}}, 422),
            ("/v1/embed/text", {"text": 5}, 422),
            ("/v1/embed/text", {"text": []}, 422),
            ("/v1/embed/text", "[1,2", 422),
            ("/v1/embeddings", {"input": [data_uri("a.png")] * 17}, 413),
            ("/v1/embeddings", {"input": ["data:image/png;base64,@@@"]}, 422),
            ("/v1/embeddings", {"input": "x", "encoding_format": "int8"}, 422),
        ]
        for path, body, status in bad:
            r = s.post(path, body)
            check(r.status == status, f"{path} {str(body)[:80]}: expected {status}, got {r}")
            r.error()
        for path in ("/embed", "/rerank", "/tokenize"):
            r = s.post(path, {"inputs": "x", "query": "q", "texts": ["a"]})
            check(r.status == 400 and r.error()["type"] == "clip_model", f"{path}: {r}")

        # text tower
        r = s.post("/v1/embed/text", {"text": texts[0]})
        check(r.status == 200, r)
        j = r.json()
        near(j["embedding"], ref_text[texts[0]], "single text")
        check(j["usage"]["prompt_tokens"] > 2, j["usage"])
        r = s.post("/v1/embed/text", {"text": texts})
        check(r.status == 200, r)
        for d, t in zip(r.json()["data"], texts):
            near(d["embedding"], ref_text[t], f"text {t!r}")
        r = s.post("/v1/embed/text", {"text": "word " * 500})  # truncated to the context, as HF does
        check(r.status == 200 and r.json()["usage"]["prompt_tokens"] == info["max_input_length"], r)

        # OpenAI shape: texts and data-URI images mixed, in order; base64 output
        r = s.post("/v1/embeddings", {"input": [texts[1], data_uri("b.jpg"), texts[0]], "model": "clip"})
        check(r.status == 200, r)
        d = r.json()["data"]
        check([x["index"] for x in d] == [0, 1, 2] and all(x["object"] == "embedding" for x in d), d)
        near(d[0]["embedding"], ref_text[texts[1]], "openai text")
        near(d[1]["embedding"], ref["b.jpg"], "openai image")
        near(d[2]["embedding"], ref_text[texts[0]], "openai text 2")
        r = s.post("/v1/embeddings", {"input": data_uri("c.webp"), "encoding_format": "base64"})
        check(r.status == 200, r)
        near(common.b64_floats(r.json()["data"][0]["embedding"]), ref["c.webp"], "openai base64")

        # concurrent requests give the same answers
        def one(name):
            return s.post("/v1/embed/image", {"image": {"url": f"{base}/img/{name}"}})
        rs = common.run_threads(one, [("a.png",), ("b.jpg",), ("c.webp",)])
        for r, name in zip(rs, ("a.png", "b.jpg", "c.webp")):
            check(not isinstance(r, BaseException) and r.status == 200, f"{name}: {r}")
            near(r.json()["embedding"], ref[name], f"concurrent {name}")

        m = s.metrics()
        check(common.requests_total(m, "/v1/embed/image-batch", "200") >= 1, "metrics")

    # backpressure: with --max-image-requests 1 and one request held in its download, the next
    # gets 429 at once; once released, both kinds of request work again
    with Server("--allow-private-downloads", "--max-image-requests", "1", "--download-retries", "0", model=gguf) as s:
        r = s.post("/v1/embed/image", {"image": base + "/flaky/1/e"})  # no retries: the 503 is final
        check(r.status == 422 and "503" in r.error()["message"] and HITS["e"] == 1, (r, HITS))
        held = []
        t = threading.Thread(target=lambda: held.append(s.post("/v1/embed/image", {"image": base + "/hold"})),
                             daemon=True)
        t.start()
        check(HELD.acquire(timeout=60), "the held download never reached the image server")
        r = s.post("/v1/embed/image", {"image": data_uri("a.png")})
        check(r.status == 429 and r.error()["type"] == "overloaded" and "retry-after" in r.headers, r)
        RELEASE.set()
        t.join(60)
        check(held and held[0].status == 200, f"held request: {held}")
        near(held[0].json()["embedding"], ref["a.png"], "held request")
        r = s.post("/v1/embed/image", {"image": data_uri("a.png")})
        check(r.status == 200, f"after the held one: {r}")

    # requests that wait for the model share one pass: while the first request's pass runs
    # (stretched by a test hook), three more queue and then go through together, both towers in
    # one batch, each answer in its own request's order
    with Server(env={"EMBD_TEST_CLIP_PASS_DELAY_MS": "2000"}, model=gguf) as s:
        before = common.metric(s.metrics(), "embd_batches_total")
        first = []
        t = threading.Thread(target=lambda: first.append(s.post("/v1/embed/text", {"text": texts[0]})), daemon=True)
        t.start()
        time.sleep(0.3)
        rs = common.run_threads(lambda path, body: s.post(path, body), [
            ("/v1/embed/text", {"text": [texts[1], texts[2]]}),
            ("/v1/embeddings", {"input": [texts[0], data_uri("b.jpg"), texts[1]]}),
            ("/v1/embed/image", {"image": data_uri("a.png")})])
        t.join(60)
        check(first and first[0].status == 200, f"first request: {first}")
        near(first[0].json()["embedding"], ref_text[texts[0]], "first request")
        for r in rs:
            check(not isinstance(r, BaseException) and r.status == 200, f"queued request: {r}")
        d = rs[0].json()["data"]
        near(d[0]["embedding"], ref_text[texts[1]], "shared pass: text 0")
        near(d[1]["embedding"], ref_text[texts[2]], "shared pass: text 1")
        d = rs[1].json()["data"]
        check([x["index"] for x in d] == [0, 1, 2], d)
        near(d[0]["embedding"], ref_text[texts[0]], "shared pass: mixed text 0")
        near(d[1]["embedding"], ref["b.jpg"], "shared pass: mixed image")
        near(d[2]["embedding"], ref_text[texts[1]], "shared pass: mixed text 2")
        near(rs[2].json()["embedding"], ref["a.png"], "shared pass: image")
        m = s.metrics()
        check(common.metric(m, "embd_batches_total") - before == 2, f"passes: {common.metric(m, 'embd_batches_total')}")

    # decoding is bounded over all requests (--image-decoders): two requests of one image each,
    # every decode held 1 s by a test hook, take at least 2 s with one decoder
    with Server("--image-decoders", "1", env={"EMBD_TEST_CLIP_DECODE_DELAY_MS": "1000"}, model=gguf) as s:
        check(s.get("/info").json()["image_decoders"] == 1, "image_decoders in /info")
        t0 = time.monotonic()
        rs = common.run_threads(lambda n: s.post("/v1/embed/image", {"image": data_uri(n)}), [("a.png",), ("c.webp",)])
        dt = time.monotonic() - t0
        for r, n in zip(rs, ("a.png", "c.webp")):
            check(not isinstance(r, BaseException) and r.status == 200, f"{n}: {r}")
            near(r.json()["embedding"], ref[n], f"decoded one at a time: {n}")
        check(dt >= 2.0, f"two 1 s decodes with one decoder took {dt:.2f} s: they overlapped")

    # --request-timeout bounds the whole request: a download still running at the deadline is cut
    # there (not at the 30 s download timeout) and no pass runs (504); texts draw on the
    # tokens-per-minute bucket, images do not
    with Server("--allow-private-downloads", "--request-timeout", "3", "--rate-limit-tpm", "60", model=gguf) as s:
        t0 = time.monotonic()
        r = s.post("/v1/embed/image-batch", {"images": [{"url": base + "/slower"}, data_uri("a.png")]})
        dt = time.monotonic() - t0
        check(r.status == 504 and r.error()["type"] == "timeout", r)
        check(dt < SLOWER_S - 3, f"the timed-out request took {dt:.1f} s")
        check(common.metric(s.metrics(), "embd_clip_images_total", {"outcome": "failed"}) == 2,
              "both images of the timed-out request count as failed")
        r = s.post("/v1/embed/text", {"text": [texts[0]] * 6})
        check(r.status == 200, r)
        used = r.json()["usage"]["prompt_tokens"]
        check(30 <= used < 60, f"{used} tokens: the next request must overdraw the bucket of 60")
        r = s.post("/v1/embed/text", {"text": [texts[0]] * 6})
        check(r.status == 429 and r.error()["type"] == "rate_limited" and "input tokens" in r.error()["message"], r)
        check(int(r.headers["retry-after"]) >= 5, r.headers)
        r = s.post("/v1/embed/image", {"image": data_uri("a.png")})
        check(r.status == 200, f"images do not draw on the token bucket: {r}")
        near(r.json()["embedding"], ref["a.png"], "image on the rate-limited server")

    # the SSRF guard is on by default: loopback URLs are refused, inline images still work
    with Server(model=gguf) as s:
        r = s.post("/v1/embed/image-batch", {"images": [{"url": base + "/img/a.png"}, data_uri("a.png"),
                                                        {"url": "http://169.254.169.254/latest/meta-data"}]})
        check(r.status == 200, r)
        d = r.json()["data"]
        check("error" in d[0] and d[0]["error"]["type"] == "download_failed", d[0])
        msg = d[0]["error"]["message"].lower()
        check("private" in msg or "loopback" in msg or "not allowed" in msg, d[0])
        near(d[1]["embedding"], ref["a.png"], "inline image on the guarded server")
        check("error" in d[2], d[2])

    # a text model does not serve the CLIP routes
    with Server() as s:
        for path in ("/v1/embed/image", "/v1/embed/image-batch", "/v1/embed/text"):
            r = s.post(path, {"image": data_uri("a.png")})
            check(r.status == 400 and r.error()["type"] == "not_a_clip_model", f"{path}: {r}")
    srv_img.shutdown()
    print("ok: CLIP HTTP API")


if __name__ == "__main__":
    main()
