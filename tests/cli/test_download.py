"""`embd pull` and the default-model download path against a loopback HTTP server.

Covers: verified download, checksum failure leaving nothing behind, HTTP errors, resume of an
interrupted transfer with a Range request, servers that ignore Range, redirects, and the default
model's cache and environment lookup. Stdlib only; the server runs in a thread of this process and
records every request it saw, so the tests check what embd asked for, not only what it wrote."""
import hashlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIN = os.environ["EMBD_BIN"]
_base = os.environ.get("EMBD_TEST_TMP")
if _base:
    os.makedirs(_base, exist_ok=True)
TMP = tempfile.mkdtemp(prefix="embd-dl-", dir=_base or None)

# Files the server can serve, by name: big enough to span many reads, deterministic.
FILES = {
    "model.gguf": random.Random(1).randbytes(3 * 1024 * 1024 + 12345),
    "small.bin": random.Random(2).randbytes(100_000),
}
SHA = {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}


class Handler(BaseHTTPRequestHandler):
    """Routes: /file/N (Range support), /redirect/N -> /file/N, /missing (404),
    /drop-once/N (first GET: full Content-Length but only half the bytes, then the connection
    closes; later GETs as /file/N), /norange/N (always 200 with the whole file)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.requests.append((self.path, self.headers.get("Range")))
        route, _, name = self.path.lstrip("/").partition("/")
        data = FILES.get(name)
        if route == "redirect" and data is not None:
            self.send_response(302)
            self.send_header("Location", f"/file/{name}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if data is None or route not in ("file", "drop-once", "norange"):
            body = b"not found\n"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if route == "drop-once":
            with srv.lock:
                first = name not in srv.dropped
                srv.dropped.add(name)
            if first:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                # FIN after the queued half: the client sees a short body, never a reset.
                self.connection.shutdown(socket.SHUT_WR)
                self.close_connection = True
                return
        rng = self.headers.get("Range")
        if rng and route != "norange":
            assert rng.startswith("bytes=") and rng.endswith("-"), rng
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # embd hangs up early on purpose at times (a refused range); that is no test failure.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def clean_env(**extra):
    """The caller's environment without anything that could reach a real cache, a real model or a
    proxy (a proxy would turn loopback requests into external ones)."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and k not in
           ("EMBD_MODEL", "EMBD_CACHE_DIR", "XDG_CACHE_HOME", "EMBD_DEFAULT_MODEL_URL", "EMBD_DEFAULT_MODEL_SHA256")}
    env["HOME"] = os.path.join(TMP, "home-unused")
    env["NO_PROXY"] = env["no_proxy"] = "*"
    env.update(extra)
    return env


def run(*args, env=None):
    p = subprocess.run([BIN, *args], capture_output=True, timeout=120, env=env or clean_env(),
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(), p.stderr.decode("utf-8", "replace")


def read(path):
    with open(path, "rb") as f:
        return f.read()


class PullTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(("127.0.0.1", 0), Handler)
        cls.srv.lock = threading.Lock()
        cls.srv.requests = []
        cls.srv.dropped = set()
        cls.thread = threading.Thread(target=cls.srv.serve_forever, daemon=True)
        cls.thread.start()
        cls.base = f"http://127.0.0.1:{cls.srv.server_address[1]}"

    @classmethod
    def tearDownClass(cls):
        cls.srv.shutdown()
        cls.srv.server_close()
        shutil.rmtree(TMP, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=TMP)

    def requests(self):
        with self.srv.lock:
            return list(self.srv.requests)

    def url(self, route, name="model.gguf"):
        return f"{self.base}/{route}/{name}"

    def assert_failed_cleanly(self, rc, err, dest):
        self.assertEqual(rc, 2, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertFalse(os.path.exists(dest), "dest left behind")
        self.assertFalse(os.path.exists(dest + ".part"), ".part left behind")

    # ---- downloads by URL -------------------------------------------------------------------

    def test_full_download(self):
        dest = os.path.join(self.dir, "a", "b", "model.gguf")  # parents do not exist yet
        rc, out, err = run("pull", self.url("file"), "--sha256", SHA["model.gguf"], "-o", dest)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), dest)
        self.assertEqual(read(dest), FILES["model.gguf"])
        self.assertFalse(os.path.exists(dest + ".part"))
        self.assertNotIn("\r", err, "progress bar drawn although stderr is not a tty")

    def test_progress_bar_on_tty(self):
        import pty
        dest = os.path.join(self.dir, "model.gguf")
        master, slave = pty.openpty()
        chunks = []

        def drain():
            while True:
                try:
                    b = os.read(master, 4096)
                except OSError:  # EIO once the child's side is closed
                    return
                if not b:
                    return
                chunks.append(b)

        t = threading.Thread(target=drain)
        t.start()
        p = subprocess.run([BIN, "pull", self.url("file"), "--sha256", SHA["model.gguf"], "-o", dest],
                           stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=clean_env(), timeout=120)
        os.close(slave)
        t.join(timeout=30)
        os.close(master)
        tty = b"".join(chunks).decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, tty)
        self.assertEqual(p.stdout.decode().strip(), dest, "progress leaked to stdout")
        self.assertIn("\r[", tty)
        self.assertIn("100%", tty)

    def test_uppercase_sha(self):
        dest = os.path.join(self.dir, "small.bin")
        rc, _, err = run("pull", self.url("file", "small.bin"), "--sha256", SHA["small.bin"].upper(), "-o", dest)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read(dest), FILES["small.bin"])

    def test_wrong_sha(self):
        dest = os.path.join(self.dir, "model.gguf")
        rc, _, err = run("pull", self.url("file"), "--sha256", SHA["small.bin"], "-o", dest)
        self.assert_failed_cleanly(rc, err, dest)
        self.assertIn("sha256", err)

    def test_404(self):
        dest = os.path.join(self.dir, "nothing.gguf")
        rc, _, err = run("pull", f"{self.base}/missing", "--sha256", SHA["small.bin"], "-o", dest)
        self.assert_failed_cleanly(rc, err, dest)
        self.assertIn("404", err)

    def test_connection_refused(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        dest = os.path.join(self.dir, "x.gguf")
        rc, _, err = run("pull", f"http://127.0.0.1:{port}/file/x", "--sha256", SHA["small.bin"], "-o", dest)
        self.assert_failed_cleanly(rc, err, dest)

    def test_redirect_followed(self):
        dest = os.path.join(self.dir, "small.bin")
        rc, _, err = run("pull", self.url("redirect", "small.bin"), "--sha256", SHA["small.bin"], "-o", dest)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read(dest), FILES["small.bin"])
        paths = [p for p, _ in self.requests()]
        self.assertIn("/redirect/small.bin", paths)
        self.assertIn("/file/small.bin", paths)

    def test_interrupted_then_resumed(self):
        # Its own file name, so the drop-once route has not fired for it yet.
        FILES["resume.bin"] = random.Random(3).randbytes(2 * 1024 * 1024 + 7)
        sha = hashlib.sha256(FILES["resume.bin"]).hexdigest()
        half = len(FILES["resume.bin"]) // 2
        dest = os.path.join(self.dir, "resume.bin")
        url = self.url("drop-once", "resume.bin")
        rc, _, err = run("pull", url, "--sha256", sha, "-o", dest)
        self.assertEqual(rc, 2, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertFalse(os.path.exists(dest))
        self.assertEqual(read(dest + ".part"), FILES["resume.bin"][:half], "partial data not kept for resume")
        before = len(self.requests())
        rc, _, err = run("pull", url, "--sha256", sha, "-o", dest)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read(dest), FILES["resume.bin"])
        self.assertFalse(os.path.exists(dest + ".part"))
        self.assertEqual(self.requests()[before:], [("/drop-once/resume.bin", f"bytes={half}-")])

    def test_server_ignores_range_starts_over(self):
        # A .part of the right length but wrong bytes: appending to it, or keeping it, fails the hash.
        dest = os.path.join(self.dir, "small.bin")
        with open(dest + ".part", "wb") as f:
            f.write(b"\0" * 5000)
        before = len(self.requests())
        rc, _, err = run("pull", self.url("norange", "small.bin"), "--sha256", SHA["small.bin"], "-o", dest)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read(dest), FILES["small.bin"])
        self.assertFalse(os.path.exists(dest + ".part"))
        self.assertIn(("/norange/small.bin", "bytes=5000-"), self.requests()[before:], "no resume was attempted")

    def test_complete_part_is_verified(self):
        # The .part already holds the whole file: the server answers 416 and the hash decides.
        dest = os.path.join(self.dir, "small.bin")
        with open(dest + ".part", "wb") as f:
            f.write(FILES["small.bin"])
        rc, _, err = run("pull", self.url("file", "small.bin"), "--sha256", SHA["small.bin"], "-o", dest)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read(dest), FILES["small.bin"])

    def test_stale_part_refetched(self):
        # A .part longer than the file with wrong bytes (416, hash mismatch): fetched again from 0.
        dest = os.path.join(self.dir, "small.bin")
        with open(dest + ".part", "wb") as f:
            f.write(b"x" * (len(FILES["small.bin"]) + 10))
        before = len(self.requests())
        rc, _, err = run("pull", self.url("file", "small.bin"), "--sha256", SHA["small.bin"], "-o", dest)
        self.assertEqual(rc, 0, err)
        self.assertEqual(read(dest), FILES["small.bin"])
        self.assertEqual([r for _, r in self.requests()[before:]], [f"bytes={len(FILES['small.bin']) + 10}-", None])

    def test_existing_verified_dest_not_fetched(self):
        dest = os.path.join(self.dir, "small.bin")
        with open(dest, "wb") as f:
            f.write(FILES["small.bin"])
        before = len(self.requests())
        rc, _, err = run("pull", self.url("file", "small.bin"), "--sha256", SHA["small.bin"], "-o", dest)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.requests()[before:], [])

    def test_default_output_name(self):
        p = subprocess.run([BIN, "pull", self.url("file", "small.bin"), "--sha256", SHA["small.bin"]],
                           capture_output=True, timeout=120, env=clean_env(), cwd=self.dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(read(os.path.join(self.dir, "small.bin")), FILES["small.bin"])

    # ---- usage ------------------------------------------------------------------------------

    def test_usage(self):
        u = self.url("file", "small.bin")
        for args in [("pull", u), ("pull", "--sha256", SHA["small.bin"]), ("pull", u, u, "--sha256", SHA["small.bin"]),
                     ("pull", u, "--sha256", "abc"), ("pull", u, "--sha256", "g" * 64), ("pull", "--frobnicate")]:
            before = len(self.requests())
            rc, _, err = run(*args)
            self.assertEqual(rc, 1, (args, err))
            self.assertEqual(self.requests()[before:], [], args)
            self.assertTrue(err.strip(), args)
        rc, out, _ = run("pull", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("usage: embd pull", out)
        self.assertIn("--sha256", out)
        rc, out, _ = run("--help")
        self.assertIn("pull", out)

    # ---- default model ----------------------------------------------------------------------

    def test_default_model_into_cache(self):
        cache = os.path.join(self.dir, "cache")
        env = clean_env(EMBD_CACHE_DIR=cache, EMBD_DEFAULT_MODEL_URL=self.url("file"),
                        EMBD_DEFAULT_MODEL_SHA256=SHA["model.gguf"])
        rc, out, err = run("pull", env=env)
        want = os.path.join(cache, "models", "model.gguf")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), want)
        self.assertEqual(read(want), FILES["model.gguf"])
        # Cached now: a second run fetches nothing.
        before = len(self.requests())
        rc, out, err = run("pull", env=env)
        self.assertEqual((rc, out.strip()), (0, want), err)
        self.assertEqual(self.requests()[before:], [])

    def test_default_model_xdg_and_home(self):
        src = dict(EMBD_DEFAULT_MODEL_URL=self.url("redirect", "small.bin"), EMBD_DEFAULT_MODEL_SHA256=SHA["small.bin"])
        xdg = os.path.join(self.dir, "xdg")
        rc, out, err = run("pull", env=clean_env(XDG_CACHE_HOME=xdg, **src))
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), os.path.join(xdg, "embd", "models", "small.bin"))
        home = os.path.join(self.dir, "home")
        rc, out, err = run("pull", env=clean_env(HOME=home, **src))
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), os.path.join(home, ".cache", "embd", "models", "small.bin"))
        self.assertEqual(read(out.strip()), FILES["small.bin"])

    def test_default_model_bad_sha(self):
        cache = os.path.join(self.dir, "cache")
        env = clean_env(EMBD_CACHE_DIR=cache, EMBD_DEFAULT_MODEL_URL=self.url("file", "small.bin"),
                        EMBD_DEFAULT_MODEL_SHA256=SHA["model.gguf"])
        rc, _, err = run("pull", env=env)
        dest = os.path.join(cache, "models", "small.bin")
        self.assertEqual(rc, 2, err)
        self.assertIn("sha256 mismatch", err.strip().splitlines()[-1])
        self.assertFalse(os.path.exists(dest))
        self.assertFalse(os.path.exists(dest + ".part"))

    def test_default_model_override_needs_both(self):
        rc, _, err = run("pull", env=clean_env(EMBD_CACHE_DIR=self.dir, EMBD_DEFAULT_MODEL_URL=self.url("file")))
        self.assertEqual(rc, 2, err)
        self.assertIn("EMBD_DEFAULT_MODEL_SHA256", err)

    def test_default_model_pull_to_file(self):
        dest = os.path.join(self.dir, "out.gguf")
        env = clean_env(EMBD_DEFAULT_MODEL_URL=self.url("file", "small.bin"),
                        EMBD_DEFAULT_MODEL_SHA256=SHA["small.bin"])
        rc, out, err = run("pull", "-o", dest, env=env)
        self.assertEqual((rc, out.strip()), (0, dest), err)
        self.assertEqual(read(dest), FILES["small.bin"])

    def test_embd_model_env(self):
        missing = os.path.join(self.dir, "missing.gguf")
        before = len(self.requests())
        rc, _, err = run("pull", env=clean_env(EMBD_MODEL=missing, EMBD_CACHE_DIR=self.dir,
                                               EMBD_DEFAULT_MODEL_URL=self.url("file"),
                                               EMBD_DEFAULT_MODEL_SHA256=SHA["model.gguf"]))
        self.assertEqual(rc, 2, err)
        self.assertIn("EMBD_MODEL", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        present = os.path.join(self.dir, "present.gguf")
        with open(present, "wb") as f:
            f.write(b"GGUF")
        rc, out, err = run("pull", env=clean_env(EMBD_MODEL=present))
        self.assertEqual((rc, out.strip()), (0, present), err)
        self.assertEqual(self.requests()[before:], [], "EMBD_MODEL set, yet something was fetched")

    def test_pinned_default_documented(self):
        # No network here: check the compiled-in pin is a Hugging Face resolve URL of a
        # bge-small-en-v1.5 GGUF with a full digest, as `embd pull --help` reports it.
        rc, out, _ = run("pull", "--help")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"https://huggingface\.co/\S+/resolve/\S+/bge-small-en-v1\.5\S*\.gguf")
        self.assertRegex(out, r"sha256 [0-9a-f]{64}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
