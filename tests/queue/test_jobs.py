"""Bulk jobs end to end: `embd jobs` + `embd worker` on a spool directory, and `embd serve
--spool` with /v1/jobs. Workers killed with SIGKILL or stopped with SIGTERM mid-job, two workers on
one spool, a server restarted mid-job: every item ends up exactly once, in input order, and the
vectors equal /v1/embeddings for the same texts. Bad inputs get a clear error and the queue keeps
flowing. Runs on the shared bge-small-random q8_0 model with short texts."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "server"))
import common  # noqa: E402
from common import BIN, MODEL, SANITIZER_MARKERS, Server, request  # noqa: E402

import numpy as np  # noqa: E402

_help = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True).stdout
SERVE_EXTRA = ["--insecure"] if "--insecure" in _help else []  # servers that demand auth otherwise


def items(n, prefix="i", seed=0):
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "spool", "queue", "vector", "model", "text", "job"]
    return [{"id": f"{prefix}{k}", "text": " ".join(rng.choice(words, size=int(rng.integers(1, 12))))}
            for k in range(n)]


def jsonl(objs, extra=""):
    return "".join(json.dumps(o) + "\n" for o in objs) + extra


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


class Spool:
    """A fresh spool directory and helpers around the CLI."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"spool-{name}-", dir=common.TMP)
        self.workers = []

    def cli(self, *args, input=None, check=True):
        p = subprocess.run([BIN, "jobs", *args, "--spool", self.dir], input=input, capture_output=True, text=True,
                           timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"embd jobs {args}: rc {p.returncode}\n{p.stderr}")
        return p

    def submit(self, objs, *args, extra=""):
        return self.cli("submit", *args, input=jsonl(objs, extra)).stdout.strip()

    def status(self, job):
        return json.loads(self.cli("status", job).stdout)

    def worker(self, *args, chunk=8, stale=30):
        log = open(os.path.join(self.dir, f"worker{len(self.workers)}.log"), "w+")
        p = subprocess.Popen([BIN, "worker", "--spool", self.dir, "--model", MODEL, "--threads", "1", "--poll", "0.05",
                              "--chunk", str(chunk), "--stale-timeout", str(stale), *args],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        p.log = log
        self.workers.append(p)
        return p

    @staticmethod
    def log_of(p):
        p.log.flush()
        p.log.seek(0)
        return p.log.read()

    def finish(self, p, timeout=120):
        rc = p.wait(timeout)
        text = self.log_of(p)
        bad = [m for m in SANITIZER_MARKERS if m in text]
        if bad:
            raise AssertionError(f"worker log has {bad}:\n{text[-5000:]}")
        return rc, text

    def wait_state(self, job, states, timeout=120, min_done=0):
        end = time.monotonic() + timeout
        while True:
            st = self.status(job)
            if st["state"] in states and st["items_done"] >= min_done:
                return st
            if time.monotonic() > end:
                raise AssertionError(f"job {job} never reached {states} / {min_done} items: {st}")
            time.sleep(0.05)

    def results(self, job):
        return read_jsonl(os.path.join(self.dir, "results", f"{job}.jsonl"))

    def errors(self, job):
        return read_jsonl(os.path.join(self.dir, "results", f"{job}.errors.jsonl"))

    def close(self):
        for p in self.workers:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.log.close()


def check_complete(tc, results, objs):
    """Every item once, in input order, unit vectors of the model's width."""
    tc.assertEqual([r["id"] for r in results], [o["id"] for o in objs])
    m = np.array([r["embedding"] for r in results], dtype=np.float32)
    tc.assertEqual(m.shape, (len(objs), common.DIMS))
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-4)
    return m


_clean_cache = {}


def clean_vectors(objs):
    """Vectors of the same texts from /v1/embeddings on a fresh server (the reference)."""
    key = json.dumps(objs)
    if key not in _clean_cache:
        srv = Server(*SERVE_EXTRA, threads=1)
        try:
            out = []
            for k in range(0, len(objs), 64):
                r = srv.post("/v1/embeddings", {"input": [o["text"] for o in objs[k:k + 64]]})
                assert r.status == 200, r
                out += [d["embedding"] for d in r.json()["data"]]
        finally:
            srv.stop()
        _clean_cache[key] = np.array(out, dtype=np.float32)
    return _clean_cache[key]


def assert_same_vectors(tc, a, b):
    # q8_0 quantizes activations per batch, so another batch mix may flip a rounding: close, not equal.
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    tc.assertGreater(float(cos.min()), 0.999)
    np.testing.assert_allclose(a, b, atol=2e-2)


class CliJobs(unittest.TestCase):
    def setUp(self):
        self.sp = Spool(self._testMethodName)

    def tearDown(self):
        self.sp.close()

    def test_submit_run_results_and_item_errors(self):
        sp = self.sp
        objs = items(30, "a")
        bad = '{"id":"broken", "text": \n{"id":"notext","body":"x"}\n[1,2]\n\n'
        job = sp.submit(objs, "--id", "a1", extra=bad)
        self.assertEqual(job, "a1")
        st = sp.status(job)
        self.assertEqual((st["state"], st["total"], st["items_done"]), ("queued", 33, 0))
        hi = sp.submit(items(3, "h"), "--priority", "high")
        self.assertRegex(hi, r"^[0-9a-f]{32}$")
        lst = [json.loads(l) for l in sp.cli("status").stdout.splitlines()]
        self.assertEqual({j["id"] for j in lst}, {job, hi})
        w = sp.worker("--exit-when-idle")
        rc, log = sp.finish(w)
        self.assertEqual(rc, 0, log)
        claims = re.findall(r"job (\S+): claimed", log)
        self.assertEqual(claims, [hi, job], "high priority first")
        st = sp.status(job)
        self.assertEqual((st["state"], st["items_done"], st["errors"]), ("done", 33, 3), st)
        self.assertGreater(st["tokens"], 30)
        m = check_complete(self, sp.results(job), objs)
        errs = sp.errors(job)
        # a line that is not JSON has no id to report: its line number stands in
        self.assertEqual([e["id"] for e in errs], [30, "notext", 32])
        self.assertEqual([e["line"] for e in errs], [30, 31, 32])
        self.assertIn("invalid JSON", errs[0]["error"])
        self.assertIn('"text"', errs[1]["error"])
        # `jobs results` prints the same file; `watch` of a finished job exits 0 at once
        out = sp.cli("results", job).stdout
        self.assertEqual([json.loads(l)["id"] for l in out.splitlines()], [o["id"] for o in objs])
        self.assertEqual(len(sp.cli("results", job, "--errors").stdout.splitlines()), 3)
        wp = sp.cli("watch", job)
        self.assertIn("done 33/33", wp.stderr)
        # the same texts through the HTTP API give the same vectors
        assert_same_vectors(self, m, clean_vectors(objs))

    def test_bad_cli_usage(self):
        sp = self.sp
        self.assertEqual(sp.cli("status", "nosuchjob", check=False).returncode, 2)
        self.assertEqual(sp.cli("cancel", "nosuchjob", check=False).returncode, 2)
        self.assertEqual(sp.cli("results", "nosuchjob", check=False).returncode, 2)
        p = sp.cli("submit", "--priority", "urgent", input="{}\n", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("priority", p.stderr)
        p = sp.cli("submit", "--id", "../x", input="{}\n", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("invalid job id", p.stderr)
        sp.submit(items(1), "--id", "dup")
        p = sp.cli("submit", "--id", "dup", input="{}\n", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("already exists", p.stderr)
        self.assertEqual(sp.cli("status", "--state", "bogus", check=False).returncode, 1)
        p = subprocess.run([BIN, "jobs", "status"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("--spool", p.stderr)
        p = subprocess.run([BIN, "worker", "--spool", sp.dir, "--model", MODEL, "--chunk", "0"], capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("--chunk", p.stderr)
        p = subprocess.run([BIN, "worker", "--spool", sp.dir, "--model", "/nonexistent.gguf"], capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 2)

    def test_sigkill_worker_then_restart(self):
        sp = self.sp
        objs = items(160, "k", seed=1)
        job = sp.submit(objs, "--id", "k1")
        w = sp.worker(chunk=8, stale=1)
        sp.wait_state(job, ("running",), min_done=24)
        w.send_signal(signal.SIGKILL)
        w.wait()
        st = sp.status(job)
        self.assertEqual(st["state"], "running")  # its owner is dead, the claim is still there
        self.assertLess(st["items_done"], 160)
        w2 = sp.worker("--exit-when-idle", chunk=8, stale=1)
        rc, log = sp.finish(w2)
        self.assertEqual(rc, 0, log)
        self.assertIn("stopped heartbeating; requeued", log)
        self.assertRegex(log, r"resuming at item \d+ of 160")
        st = sp.status(job)
        self.assertEqual((st["state"], st["items_done"], st["errors"]), ("done", 160, 0))
        m = check_complete(self, sp.results(job), objs)
        assert_same_vectors(self, m, clean_vectors(objs))

    def test_sigterm_worker_requeues_and_cancel(self):
        sp = self.sp
        objs = items(120, "t", seed=2)
        job = sp.submit(objs, "--id", "t1")
        w = sp.worker(chunk=8)
        sp.wait_state(job, ("running",), min_done=16)
        w.send_signal(signal.SIGTERM)
        rc, log = sp.finish(w)
        self.assertEqual(rc, 0, log)
        self.assertIn("stopped; requeued", log)
        st = sp.status(job)
        self.assertEqual(st["state"], "queued")  # claimable at once, no stale wait
        self.assertGreater(st["items_done"], 0)
        done_before = st["items_done"]
        # a queued job is cancelled at once; a running one after its chunk
        q = sp.submit(items(5, "q"), "--id", "q1", "--priority", "low")
        self.assertIn("cancelled", sp.cli("cancel", q).stderr)
        self.assertEqual(sp.status(q)["state"], "cancelled")
        big = sp.submit(items(200, "b"), "--id", "b1", "--priority", "low")
        w2 = sp.worker(chunk=8)
        sp.wait_state(job, ("done",))
        sp.wait_state(big, ("running",), min_done=8)
        sp.cli("cancel", big)
        st = sp.wait_state(big, ("cancelled",), timeout=60)
        self.assertLess(st["items_done"], 200)
        self.assertNotEqual(sp.cli("watch", big, check=False).returncode, 0)
        w2.send_signal(signal.SIGTERM)
        rc, log = sp.finish(w2)
        self.assertEqual(rc, 0, log)
        self.assertRegex(log, rf"job t1: claimed[\s\S]*resuming at item {done_before} of 120")
        check_complete(self, sp.results(job), objs)

    def test_two_workers_one_spool(self):
        sp = self.sp
        jobs = {}
        for k in range(8):
            objs = items(12, f"j{k}-", seed=10 + k)
            jobs[sp.submit(objs, "--id", f"w{k}")] = objs
        ws = [sp.worker("--exit-when-idle", chunk=4) for _ in range(2)]
        logs = []
        for w in ws:
            rc, log = sp.finish(w)
            self.assertEqual(rc, 0, log)
            logs.append(log)
        claims = [c for log in logs for c in re.findall(r"job (\S+): claimed", log)]
        self.assertEqual(sorted(claims), sorted(jobs), "each job claimed exactly once")
        for job, objs in jobs.items():
            self.assertEqual(sp.status(job)["state"], "done")
            check_complete(self, sp.results(job), objs)

    def test_chaos_kill9_three_workers(self):
        """Many small jobs, three workers, random kill -9 and restarts: every job done once, and
        the outputs byte-identical to a clean single-worker run."""
        jobs = {f"c{k:03d}": items(8, f"c{k}-", seed=100 + k) for k in range(40)}
        clean = Spool("clean")
        try:
            for job, objs in jobs.items():
                clean.submit(objs, "--id", job)
            rc, log = clean.finish(clean.worker("--exit-when-idle", chunk=2))
            self.assertEqual(rc, 0, log)
            sp = self.sp
            for job, objs in jobs.items():
                sp.submit(objs, "--id", job)
            ws = chaos(self, lambda: sp.worker("--exit-when-idle", chunk=2, stale=1))
            for w in ws:
                rc, log = sp.finish(w)
                self.assertEqual(rc, 0, log)
            done = [j["id"] for j in map(json.loads, sp.cli("status", "--state", "done").stdout.splitlines())]
            self.assertEqual(sorted(done), sorted(jobs), "every job done, once")
            self.assertEqual(sp.cli("status", "--state", "running").stdout, "")
            self.assertEqual(sp.cli("status", "--state", "queued").stdout, "")
            for job, objs in jobs.items():
                check_complete(self, sp.results(job), objs)
                with open(os.path.join(sp.dir, "results", f"{job}.jsonl"), "rb") as a, \
                        open(os.path.join(clean.dir, "results", f"{job}.jsonl"), "rb") as b:
                    self.assertEqual(a.read(), b.read(), job)
        finally:
            clean.close()


def chaos(tc, start_worker, n_workers=3, seconds=5.0, seed=0):
    """Runs n_workers, SIGKILLs a random one every ~0.5 s and restarts it, for `seconds`; then lets
    them drain the queue (--exit-when-idle). Returns the logs."""
    rng = np.random.default_rng(seed)
    ws = [start_worker() for _ in range(n_workers)]
    killed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(float(rng.uniform(0.2, 0.8)))
        k = int(rng.integers(n_workers))
        if ws[k].poll() is None:
            ws[k].send_signal(signal.SIGKILL)
            ws[k].wait()
            killed += 1
        ws[k] = start_worker()
    # at least two workers died mid-work (on a fast machine the queue may drain before more)
    tc.assertGreaterEqual(killed, 2)
    return ws


def http_server(spool, *args):
    return Server(*SERVE_EXTRA, "--spool", spool, *args, threads=1)


def wait_http(srv, job, states, timeout=120, min_done=0):
    end = time.monotonic() + timeout
    while True:
        r = srv.get(f"/v1/jobs/{job}")
        assert r.status == 200, r
        st = r.json()
        if st["state"] in states and st["items_done"] >= min_done:
            return st
        if time.monotonic() > end:
            raise AssertionError(f"job {job} never reached {states}/{min_done}: {st}")
        time.sleep(0.05)


class HttpJobs(unittest.TestCase):
    def setUp(self):
        self.sp = Spool(self._testMethodName)

    def tearDown(self):
        self.sp.close()

    def test_http_submit_status_results_cancel_and_errors(self):
        sp = self.sp
        srv = http_server(sp.dir)
        try:
            objs = items(40, "h", seed=3)
            r = srv.post("/v1/jobs?priority=high", jsonl(objs, '{"id":"bad","text":\n'),
                         headers={"Content-Type": "application/x-ndjson"})
            self.assertEqual(r.status, 202, r)
            job = r.json()["id"]
            self.assertEqual(r.headers.get("location"), f"/v1/jobs/{job}")
            self.assertEqual(r.json()["total"], 41)
            # interactive requests are served while the job runs
            e = srv.post("/v1/embeddings", {"input": ["while a job runs"]})
            self.assertEqual(e.status, 200, e)
            st = wait_http(srv, job, ("done",))
            self.assertEqual((st["items_done"], st["errors"]), (41, 1))
            r = srv.get(f"/v1/jobs/{job}/results")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers["content-type"], "application/x-ndjson")
            res = [json.loads(l) for l in r.body.decode().splitlines()]
            m = check_complete(self, res, objs)
            ref = np.array([d["embedding"] for d in srv.post("/v1/embeddings", {"input": [o["text"] for o in objs]})
                            .json()["data"]], dtype=np.float32)
            assert_same_vectors(self, m, ref)
            errs = [json.loads(l) for l in srv.get(f"/v1/jobs/{job}/errors").body.decode().splitlines()]
            self.assertEqual([e["id"] for e in errs], [40])  # not JSON: its line number
            lst = srv.get("/v1/jobs?state=done").json()
            self.assertEqual([j["id"] for j in lst["data"]], [job])
            self.assertEqual(srv.get("/v1/jobs?state=queued").json()["data"], [])
            # a job the CLI submits to the same spool is run by the server
            cj = sp.submit(items(5, "c"), "--no-normalize")
            st = wait_http(srv, cj, ("done",))
            raw = [json.loads(l) for l in srv.get(f"/v1/jobs/{cj}/results").body.decode().splitlines()]
            self.assertFalse(np.allclose(np.linalg.norm(np.array(raw[0]["embedding"])), 1.0, atol=1e-3))
            # a JSON spec naming a file inside the spool; npy output
            os.makedirs(os.path.join(sp.dir, "mine"), exist_ok=True)
            with open(os.path.join(sp.dir, "mine", "in.jsonl"), "w") as f:
                f.write(jsonl(objs[:10]))
            r = srv.post("/v1/jobs", {"path": "mine/in.jsonl", "id": "p1", "format": "npy"})
            self.assertEqual(r.status, 202, r)
            wait_http(srv, "p1", ("done",))
            r = srv.get("/v1/jobs/p1/results.npy")
            self.assertEqual(r.status, 200)
            npy_path = os.path.join(sp.dir, "p1.npy")
            with open(npy_path, "wb") as f:
                f.write(r.body)
            np.testing.assert_allclose(np.load(npy_path), m[:10], atol=1e-6)
            # cancel: a finished job is 409, a running one stops
            d = request(srv.port, "DELETE", f"/v1/jobs/{job}")
            self.assertEqual(d.status, 409, d)
            r = srv.post("/v1/jobs?id=long1&priority=low", jsonl(items(400, "l", seed=4)))
            self.assertEqual(r.status, 202, r)
            wait_http(srv, "long1", ("running",), min_done=8)
            d = request(srv.port, "DELETE", "/v1/jobs/long1")
            self.assertEqual(d.status, 202, d)
            self.assertEqual(d.json()["state"], "cancelling")
            st = wait_http(srv, "long1", ("cancelled",), timeout=60)
            self.assertLess(st["items_done"], 400)

            # bad inputs
            def err(resp, status, typ):
                self.assertEqual(resp.status, status, resp)
                self.assertEqual(resp.error()["type"], typ, resp)

            err(srv.get("/v1/jobs/nosuchjob"), 404, "not_found")
            err(srv.get("/v1/jobs/nosuchjob/results"), 404, "not_found")
            err(request(srv.port, "DELETE", "/v1/jobs/nosuchjob"), 404, "not_found")
            err(srv.get("/v1/jobs/..%2F..%2Fetc"), 404, "not_found")
            err(srv.get(f"/v1/jobs/{job}/bogus"), 404, "not_found")
            err(srv.post("/v1/jobs?priority=urgent", jsonl(objs[:1])), 400, "invalid_options")
            err(srv.post("/v1/jobs?normalize=maybe", jsonl(objs[:1])), 400, "invalid_options")
            err(srv.post("/v1/jobs?format=csv", jsonl(objs[:1])), 400, "invalid_options")
            err(srv.post("/v1/jobs?deadline=soon", jsonl(objs[:1])), 400, "invalid_options")
            err(srv.post("/v1/jobs?id=../x", jsonl(objs[:1])), 400, "invalid_id")
            err(srv.post("/v1/jobs?id=p1", jsonl(objs[:1])), 409, "job_exists")
            err(srv.post("/v1/jobs", ""), 400, "no_items")
            err(srv.post("/v1/jobs", "\n \n"), 400, "no_items")
            err(srv.post("/v1/jobs", {"path": "/etc/passwd"}), 400, "invalid_path")
            err(srv.post("/v1/jobs", {"path": "../../etc/passwd"}), 400, "invalid_path")
            err(srv.post("/v1/jobs", {"path": "missing.jsonl"}), 400, "invalid_path")
            err(srv.post("/v1/jobs", {"path": 5}), 400, "invalid_request")
            err(srv.post("/v1/jobs", {"path": "mine/in.jsonl", "priority": 3}), 400, "invalid_options")
            err(request(srv.port, "PUT", "/v1/jobs"), 405, "method_not_allowed")
            err(request(srv.port, "POST", f"/v1/jobs/{job}"), 405, "method_not_allowed")
            err(srv.get("/v1/jobs?state=bogus"), 400, "invalid_state")
            # malformed lines are item errors, not a failed job
            r = srv.post("/v1/jobs?id=junk", "not json\n{\"text\": 5}\n")
            self.assertEqual(r.status, 202, r)
            st = wait_http(srv, "junk", ("done",))
            self.assertEqual((st["items_done"], st["errors"]), (2, 2))
            self.assertEqual(srv.get("/v1/jobs/junk/results").body, b"")
        finally:
            srv.stop()

    def test_server_restart_mid_job(self):
        sp = self.sp
        objs = items(320, "r", seed=5)
        srv = http_server(sp.dir)
        try:
            r = srv.post("/v1/jobs?id=big", jsonl(objs))
            self.assertEqual(r.status, 202, r)
            wait_http(srv, "big", ("running",), min_done=64)
        finally:
            srv.stop()  # SIGTERM: the chunk in flight is checkpointed, the job goes back to the queue
        self.assertIn("job big: stopped; requeued", srv.stderr)
        st = sp.status("big")
        self.assertEqual(st["state"], "queued")
        done_at_stop = st["items_done"]
        self.assertGreaterEqual(done_at_stop, 64)
        # SIGKILL the second server mid-job; the third takes the stale claim over
        srv = http_server(sp.dir, "--jobs-stale-timeout", "1")
        try:
            wait_http(srv, "big", ("running", "done"), min_done=done_at_stop + 64)
        finally:
            srv.kill()
        srv = http_server(sp.dir, "--jobs-stale-timeout", "1")
        try:
            wait_http(srv, "big", ("done",))
            res = [json.loads(l) for l in srv.get("/v1/jobs/big/results").body.decode().splitlines()]
        finally:
            srv.stop()
        self.assertIn("stopped heartbeating; requeued", srv.stderr)
        m = check_complete(self, res, objs)
        assert_same_vectors(self, m, clean_vectors(objs))


if __name__ == "__main__":
    common.main("queue")
