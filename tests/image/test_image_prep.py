"""`embd image-prep` against a numpy + PIL reference of Hugging Face's CLIPImageProcessor
(convert("RGB"), resize of the shortest side with PIL BICUBIC, center crop, rescale, normalise):
images generated here in every supported format and layout, bad inputs, and downloads from a
loopback HTTP server (ok, 404, slow, oversized, redirect loop, redirect to file://, SSRF guard).

The tolerance (2e-6) is far below one uint8 step after normalisation (1/255/std ~ 0.015): a pass
means the resized uint8 pixels are identical to PIL's."""
import base64
import io
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

BIN = os.environ["EMBD_BIN"]
TMP = tempfile.mkdtemp(prefix="embd-image-", dir=os.environ.get("EMBD_TEST_TMP") and
                       (os.makedirs(os.environ["EMBD_TEST_TMP"], exist_ok=True) or os.environ["EMBD_TEST_TMP"]))
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
TOL = 2e-6
results = {"passed": 0, "failed": 0}
rng = np.random.RandomState(1234)
# PIL warns about palette transparency given as bytes; convert("RGB") drops it either way
warnings.filterwarnings("ignore", "Palette images with Transparency")


def check(name, cond, detail=""):
    results["passed" if cond else "failed"] += 1
    print(f"{'ok  ' if cond else 'FAIL'} {name}" + ("" if cond else f" {detail}"), flush=True)


def env():
    e = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return e


def run(*args, timeout=120):
    p = subprocess.run([BIN, "image-prep", *args], capture_output=True, timeout=timeout, env=env(),
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def path(name, data):
    p = os.path.join(TMP, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


# ---- reference -------------------------------------------------------------------------------

def reference(data, size=224, crop=224):
    """transformers' CLIPImageProcessor, step by step (PIL 9.4 + numpy)."""
    im = Image.open(io.BytesIO(data)).convert("RGB")
    if size:
        w, h = im.size  # get_resize_output_image_size(default_to_square=False)
        short, long = (w, h) if w <= h else (h, w)
        ns, nl = size, int(size * long / short)
        im = im.resize((ns, nl) if w <= h else (nl, ns), resample=Image.BICUBIC, reducing_gap=None)
    a = np.asarray(im)
    if crop:  # transformers' center_crop, zero padding included
        oh, ow = a.shape[:2]
        top, left = (oh - crop) // 2, (ow - crop) // 2
        if top < 0 or left < 0:
            nh, nw = max(crop, oh), max(crop, ow)
            pad = np.zeros((nh, nw, 3), a.dtype)
            tp, lp = -(-(nh - oh) // 2), -(-(nw - ow) // 2)
            pad[tp:tp + oh, lp:lp + ow] = a
            a, top, left = pad, top + tp, left + lp
        a = a[max(0, top):top + crop, max(0, left):left + crop]
    a = (a.astype(np.float64) * (1 / 255)).astype(np.float32)
    return ((a - MEAN) / STD).transpose(2, 0, 1)


def encode(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def rand_img(w, h, mode="RGB"):
    """Smooth gradients plus noise: exercises the filter better than pure noise."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 3) % 256], -1)
    a = np.clip(base + rng.randint(-40, 41, (h, w, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(a, "RGB")
    if mode == "RGBA":
        im.putalpha(Image.fromarray(rng.randint(0, 256, (h, w)).astype(np.uint8), "L"))
    elif mode != "RGB":
        im = im.convert(mode)
    return im


def chunk(tag, body):
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def png_raw(a, color_type, depth, interlace=False, extra=b""):
    """A PNG written by hand (layouts PIL cannot save: 16-bit RGB/LA, 2/4-bit grey, Adam7)."""
    h, w = a.shape[:2]

    def rows(sub):
        out = b""
        for r in sub:
            if depth >= 8:
                out += b"\0" + r.astype(">u2" if depth == 16 else np.uint8).tobytes()
            else:
                bits = np.unpackbits(r.astype(np.uint8).reshape(-1, 1), axis=1)[:, 8 - depth:]
                out += b"\0" + np.packbits(bits.reshape(-1)).tobytes()
        return out

    if interlace:
        raw = b""
        for xs, ys, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                               (0, 1, 1, 2)):
            sub = a[ys::dy, xs::dx]
            if sub.size:
                raw += rows(sub.reshape(sub.shape[0], -1))
    else:
        raw = rows(a.reshape(h, -1))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw)) +
            chunk(b"IEND", b""))


def strip_app14(jpg):
    """The same JPEG without its Adobe marker (PIL still reads 4 components as inverted CMYK)."""
    i = 2
    while i < len(jpg) and jpg[i] == 0xFF and jpg[i + 1] != 0xDA:
        n = struct.unpack(">H", jpg[i + 2:i + 4])[0]
        if jpg[i + 1] == 0xEE:
            return jpg[:i] + jpg[i + 2 + n:]
        i += 2 + n
    raise AssertionError("no APP14")


def patch_sof(jpg, w, h):
    i = 2
    while True:
        m, n = jpg[i + 1], struct.unpack(">H", jpg[i + 2:i + 4])[0]
        if m in (0xC0, 0xC1, 0xC2):
            return jpg[:i + 5] + struct.pack(">HH", h, w) + jpg[i + 9:]
        i += 2 + n


def good_images():
    """name -> encoded bytes, every one of them decodable by PIL."""
    g = {}
    g["png_rgb_641x479"] = encode(rand_img(641, 479), "PNG")
    g["png_rgba_300x200"] = encode(rand_img(300, 200, "RGBA"), "PNG")
    g["png_la_97x131"] = encode(rand_img(97, 131, "RGBA").convert("LA"), "PNG")
    g["png_grey_250x251"] = encode(rand_img(250, 251, "L"), "PNG")
    g["png_1bit_230x229"] = encode(rand_img(230, 229, "L").convert("1"), "PNG")
    pal = rand_img(321, 123).convert("P", palette=Image.ADAPTIVE, colors=37)
    g["png_palette_321x123"] = encode(pal, "PNG")
    g["png_palette_trns_321x123"] = encode(pal, "PNG", transparency=bytes(range(0, 256, 7)))
    g["png_palette_4bit"] = encode(rand_img(99, 300).convert("P", palette=Image.ADAPTIVE, colors=16), "PNG", bits=4)
    g16 = (rng.randint(0, 400, (260, 240)) * np.linspace(0.2, 1, 240)).astype(np.uint16)  # some above 255: PIL clips
    g["png_grey16_240x260"] = encode(Image.fromarray(g16, "I;16"), "PNG")
    g["png_rgb16_raw"] = png_raw(rng.randint(0, 65536, (230, 250, 3)), 2, 16)
    g["png_rgba16_raw"] = png_raw(rng.randint(0, 65536, (230, 250, 4)), 6, 16)
    g["png_la16_raw"] = png_raw(rng.randint(0, 65536, (230, 250, 2)), 4, 16)
    g["png_grey2_raw"] = png_raw(rng.randint(0, 4, (230, 251)), 0, 2)
    g["png_grey4_raw"] = png_raw(rng.randint(0, 16, (251, 230)), 0, 4)
    g["png_rgb_adam7_raw"] = png_raw(np.asarray(rand_img(333, 277)), 2, 8, interlace=True)
    g["png_grey16_adam7_raw"] = png_raw(rng.randint(0, 300, (77, 91)), 0, 16, interlace=True)
    # indices past the end of PLTE: PIL's palette is a grey ramp under PLTE
    g["png_palette_short_raw"] = png_raw(rng.randint(0, 256, (40, 50)), 3, 8, extra=chunk(b"PLTE", bytes(range(30))))
    g["png_palette_short_4bit_raw"] = png_raw(rng.randint(0, 16, (41, 51)), 3, 4, extra=chunk(b"PLTE", bytes(range(9))))
    g["png_grey_trns_raw"] = png_raw(rng.randint(0, 256, (50, 60)), 0, 8, extra=chunk(b"tRNS", b"\0\x10"))
    g["jpeg_rgb_641x479"] = encode(rand_img(641, 479), "JPEG", quality=90)
    g["jpeg_420_odd_333x517"] = encode(rand_img(333, 517), "JPEG", quality=85, subsampling=2)
    g["jpeg_progressive_500x300"] = encode(rand_img(500, 300), "JPEG", quality=80, progressive=True)
    g["jpeg_grey_300x260"] = encode(rand_img(300, 260, "L"), "JPEG", quality=90)
    cmyk = encode(rand_img(250, 230, "CMYK"), "JPEG", quality=90)
    g["jpeg_cmyk_adobe_250x230"] = cmyk
    g["jpeg_cmyk_no_adobe_250x230"] = strip_app14(cmyk)
    # PIL cannot write YCCK: this one was made with libjpeg (jpeg_set_colorspace(JCS_YCCK), q90)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ycck_97x61.jpg"), "rb") as f:
        g["jpeg_ycck_97x61"] = f.read()
    g["webp_lossy_401x299"] = encode(rand_img(401, 299), "WEBP", quality=80)
    g["webp_lossless_301x199"] = encode(rand_img(301, 199), "WEBP", lossless=True)
    g["webp_lossy_alpha_257x263"] = encode(rand_img(257, 263, "RGBA"), "WEBP", quality=70)
    g["size_1x1"] = encode(rand_img(1, 1), "PNG")
    g["size_3x1000"] = encode(rand_img(3, 1000), "PNG")
    g["size_1000x3"] = encode(rand_img(1000, 3), "PNG")
    g["size_upscale_100x80"] = encode(rand_img(100, 80), "PNG")
    g["size_exact_224x224"] = encode(rand_img(224, 224), "PNG")
    g["size_225x1000"] = encode(rand_img(225, 1000), "PNG")
    g["size_big_3000x2000"] = encode(rand_img(3000, 2000), "JPEG", quality=75)
    return g


def load_npy(p):
    return np.load(p)


def compare(name, out, data, size=224, crop=224):
    ref = reference(data, size, crop)
    if out.shape != ref.shape:
        check(name, False, f"shape {out.shape} != {ref.shape}")
        return
    d = float(np.max(np.abs(out - ref)))
    check(f"{name} matches PIL/CLIPImageProcessor (max diff {d:.2g})", d <= TOL)


def test_good():
    imgs = good_images()
    files = [path(n, b) for n, b in imgs.items()]
    out = os.path.join(TMP, "good.npy")
    t = time.time()
    rc, err = run("--out", out, *files)
    dt = time.time() - t
    check(f"{len(files)} images in one batch: exit 0 ({dt:.2f}s)", rc == 0, err)
    if rc != 0:
        return
    a = load_npy(out)
    check("npy is float32 (n,3,224,224)", a.dtype == np.float32 and a.shape == (len(files), 3, 224, 224), a.shape)
    for i, (n, b) in enumerate(imgs.items()):
        compare(n, a[i], b)

    # other sizes: no crop (the same shape for both), crop bigger than the image (zero padding),
    # no resize; the processor's options
    for args, size, crop, names in (
            (("--size", "160", "--crop", "0"), 160, 0, ["size_exact_224x224"]),
            (("--size", "100", "--crop", "128"), 100, 128, ["png_rgb_641x479", "size_3x1000", "size_1x1"]),
            (("--size", "0", "--crop", "224"), 0, 224, ["size_upscale_100x80", "png_rgb_641x479"]),
            (("--size", "336", "--crop", "336"), 336, 336, ["jpeg_rgb_641x479", "size_225x1000"]),
            (("--size", "64", "--crop", "63"), 64, 63, ["webp_lossy_401x299", "size_1000x3"])):
        o = os.path.join(TMP, "opt.npy")
        rc, err = run(*args, "--out", o, *[os.path.join(TMP, n) for n in names])
        check(f"{' '.join(args)}: exit 0", rc == 0, err)
        if rc == 0:
            a = load_npy(o)
            for i, n in enumerate(names):
                compare(f"{' '.join(args)} {n}", a[i], imgs[n], size, crop)

    m, s = "0.5,0.25,0.125", "0.5,2,4"
    o = os.path.join(TMP, "ms.npy")
    rc, err = run("--mean", m, "--std", s, "--out", o, files[0])
    if rc == 0:
        ref = reference(imgs["png_rgb_641x479"])
        ref = (ref * STD[:, None, None] + MEAN[:, None, None] - np.array([0.5, 0.25, 0.125], np.float32)[:, None, None]) \
            / np.array([0.5, 2, 4], np.float32)[:, None, None]
        check("--mean/--std applied", float(np.max(np.abs(load_npy(o)[0] - ref))) < 1e-5)
    else:
        check("--mean/--std run", False, err)

    # data URI and bare base64 give the same tensor as the file
    b = imgs["png_palette_321x123"]
    uri = "data:image/png;base64," + base64.b64encode(b).decode()
    o = os.path.join(TMP, "uri.npy")
    rc, err = run("--out", o, uri, files[0])
    check("data URI source", rc == 0 and float(np.max(np.abs(load_npy(o)[0] - reference(b)))) <= TOL, err)
    return imgs


def test_bad(imgs):
    bomb_png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    bomb_jpeg = patch_sof(imgs["jpeg_rgb_641x479"], 60000, 60000)
    bomb_webp = b"RIFF" + struct.pack("<I", 4 + 8 + 5) + b"WEBPVP8L" + struct.pack("<I", 5) + b"\x2f" + \
        struct.pack("<I", (16383 - 1) | (16383 - 1) << 14)
    frames = [rand_img(64, 48), rand_img(64, 48)]
    cases = {
        "empty": (b"", "empty image"),
        "random": (rng.randint(0, 256, 5000).astype(np.uint8).tobytes(), "unsupported image format"),
        "truncated_jpeg": (imgs["jpeg_rgb_641x479"][:len(imgs["jpeg_rgb_641x479"]) // 2], "truncated JPEG"),
        "truncated_progressive_jpeg": (imgs["jpeg_progressive_500x300"][:3000], "truncated JPEG"),
        "truncated_png": (imgs["png_rgb_641x479"][:len(imgs["png_rgb_641x479"]) // 2], "truncated PNG"),
        "truncated_png_header": (imgs["png_rgb_641x479"][:20], "truncated PNG"),
        "truncated_webp": (imgs["webp_lossy_401x299"][:len(imgs["webp_lossy_401x299"]) // 2], "truncated WebP"),
        "corrupt_png_crc": (imgs["png_grey_250x251"][:30] + bytes([imgs["png_grey_250x251"][30] ^ 0xFF]) +
                            imgs["png_grey_250x251"][31:], "corrupt PNG"),
        "gif": (encode(frames[0], "GIF"), "GIF images are not supported"),
        "animated_gif": (encode(frames[0], "GIF", save_all=True, append_images=frames[1:]), "GIF images are not supported"),
        "animated_webp": (encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]), "animated WebP"),
        "apng": (encode(frames[0], "PNG", save_all=True, append_images=frames[1:]), "animated PNG"),
        "bomb_png": (bomb_png, "over the limit"),
        "bomb_jpeg": (bomb_jpeg, "over the limit"),
        "bomb_webp": (bomb_webp, "over the limit"),
        "bmp": (encode(frames[0], "BMP"), "unsupported image format"),
    }
    good = path("good_for_bad.png", imgs["png_rgb_641x479"])
    for name, (data, want) in cases.items():
        p = path("bad_" + name, data)
        o = os.path.join(TMP, "bad.npy")
        t = time.time()
        rc, err = run("--out", o, good, p, good)
        dt = time.time() - t
        a = load_npy(o) if os.path.exists(o) else None
        ok = (rc == 3 and want in err and err.count("\n") == 1 and a is not None and a.shape[0] == 3
              and np.isnan(a[1]).all() and not np.isnan(a[0]).any() and np.array_equal(a[0], a[2]))
        check(f"{name}: refused ('{want}'), neighbours kept, {dt:.2f}s", ok and dt < 10, (rc, err))
    # the APNG's first frame is a valid PNG on its own: PIL's reading of it is not what is refused
    check("APNG is refused although PIL could read frame 0",
          Image.open(io.BytesIO(cases["apng"][0])).n_frames == 2)

    # --max-pixels is checked from the header
    rc, err = run("--max-pixels", "300000", "--out", os.path.join(TMP, "mp.npy"), good)
    check("--max-pixels 300000 refuses a 641x479 image", rc == 3 and "307039 pixels, over the limit of 300000" in err, err)
    rc, err = run("--max-bytes", "1000", "--out", os.path.join(TMP, "mb.npy"), good)
    check("--max-bytes refuses a larger file", rc == 3 and "too large" in err, err)
    rc, err = run("--out", os.path.join(TMP, "nf.npy"), os.path.join(TMP, "does-not-exist.png"))
    check("missing file", rc == 3 and "cannot open" in err, err)
    for bad_uri, want in (("data:image/png,abc", "must be base64"), ("data:image/png;base64,QUJD-_", "URL-safe"),
                          ("data:image/png;base64,", "empty base64"), ("data:image/png;base64,QQ==QQ", "after '='"),
                          ("data:image/png;base64,QUJD", "unsupported image format")):
        rc, err = run("--out", os.path.join(TMP, "u.npy"), bad_uri)
        check(f"bad data URI {bad_uri!r}: '{want}'", rc == 3 and want in err, err)
    for args, want in ((("--size", "x"), "--size"), (("--std", "1,0,1"), "--std"), (("--mean", "1,2"), "--mean"),
                       ((), "--out"), (("--crop", "-1"), "--crop")):
        rc, err = run(*args, *(("--out", os.path.join(TMP, "x.npy")) if args else ()), good)
        check(f"usage error {args}", rc == 1 and want in err, err)
    rc, err = run("--crop", "0", "--out", os.path.join(TMP, "nc.npy"), good, path("other.png", imgs["size_3x1000"]))
    check("--crop 0 with different shapes: the odd one out fails", rc == 3 and "use --crop" in err, err)


# ---- downloads -------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        srv, p = self.server, self.path
        if p.startswith("/img/"):
            body = srv.images[p[5:]]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif p == "/404":
            self.send_response(404)
            self.send_header("Content-Length", "9")
            self.end_headers()
            self.wfile.write(b"not found")
        elif p.startswith("/slow"):
            time.sleep(float(p.split("?")[0].split("/")[2]))
            body = srv.images["a"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif p == "/big":  # honest Content-Length, over the cap
            self.send_response(200)
            self.send_header("Content-Length", str(3 << 20))
            self.end_headers()
            try:
                self.wfile.write(b"\0" * (3 << 20))
            except OSError:
                pass
        elif p == "/big-stream":  # no length: the cap must cut the body itself
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for _ in range(64):
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                pass
        elif p.startswith("/redirect"):
            to = {"/redirect-loop": "/redirect-loop", "/redirect-file": "file:///etc/passwd",
                  "/redirect-ok": "/img/a", "/redirect-gopher": "gopher://127.0.0.1/"}[p]
            self.send_response(302)
            self.send_header("Location", to)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # embd hangs up on purpose (size cap, timeout)


def test_downloads(imgs):
    srv = Server(("127.0.0.1", 0), Handler)
    srv.images = {"a": imgs["jpeg_rgb_641x479"], "b": imgs["png_palette_trns_321x123"]}
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    o = os.path.join(TMP, "dl.npy")

    rc, err = run("--allow-private", "--out", o, f"{base}/img/a", f"{base}/img/b", f"{base}/redirect-ok")
    a = load_npy(o) if rc == 0 else None
    check("download ok (2 images + 1 redirect), order kept", rc == 0 and
          float(np.max(np.abs(a[0] - reference(srv.images["a"])))) <= TOL and
          float(np.max(np.abs(a[1] - reference(srv.images["b"])))) <= TOL and
          float(np.max(np.abs(a[2] - reference(srv.images["a"])))) <= TOL, err)

    cases = [
        ("404", [f"{base}/404"], "HTTP status 404"),
        ("slow (exceeds --timeout-ms 700)", [f"{base}/slow/3"], "timed out after 700 ms"),
        ("Content-Length over --max-bytes", [f"{base}/big"], "larger than the limit of 1000000 bytes"),
        ("streamed body over --max-bytes", [f"{base}/big-stream"], "larger than the limit of 1000000 bytes"),
        ("redirect loop", [f"{base}/redirect-loop"], "too many redirects (more than 3)"),
        ("redirect to file://", [f"{base}/redirect-file"], "unsupported protocol"),
        ("redirect to gopher://", [f"{base}/redirect-gopher"], "unsupported protocol"),
        ("ftp URL", ["ftp://127.0.0.1/x.png"], None),  # a file path to embd: no such file
    ]
    for name, urls, want in cases:
        t = time.time()
        rc, err = run("--allow-private", "--timeout-ms", "700", "--max-bytes", "1000000", "--out", o,
                      f"{base}/img/b", *urls, f"{base}/img/b")
        dt = time.time() - t
        a = load_npy(o) if os.path.exists(o) else None
        ok = (rc == 3 and (want is None or want in err) and a is not None and np.isnan(a[1]).all()
              and float(np.max(np.abs(a[0] - reference(srv.images["b"])))) <= TOL and np.array_equal(a[0], a[2]))
        check(f"{name}: per-item error, neighbours ok ({dt:.2f}s)", ok and dt < 10, (rc, err))

    # SSRF: loopback is refused without --allow-private, by address (a name that resolves to it too)
    port = srv.server_address[1]
    for url in (f"{base}/img/a", f"http://localhost:{port}/img/a", f"http://[::1]:{port}/img/a",
                f"http://[::ffff:127.0.0.1]:{port}/img/a", f"http://0.0.0.0:{port}/img/a"):
        rc, err = run("--out", o, url)
        check(f"refused without --allow-private: {url}", rc == 3 and "refused to connect" in err and
              "only public addresses" in err, err)

    # concurrency: four 1-second downloads at --concurrency 4 overlap; at 1 they queue
    urls = [f"{base}/slow/1?{i}" for i in range(4)]
    t = time.time()
    rc, err = run("--allow-private", "--concurrency", "4", "--out", o, *urls)
    par = time.time() - t
    t = time.time()
    rc2, err2 = run("--allow-private", "--concurrency", "1", "--out", o, *urls)
    ser = time.time() - t
    check(f"4 slow downloads: {par:.2f}s at --concurrency 4, {ser:.2f}s at 1", rc == 0 and rc2 == 0 and
          par < 3.0 and ser >= 4.0, (err, err2))
    srv.shutdown()


def main():
    imgs = test_good()
    if imgs:
        test_bad(imgs)
        test_downloads(imgs)
    print(f"{results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] or not results["passed"] else 0)


if __name__ == "__main__":
    main()
