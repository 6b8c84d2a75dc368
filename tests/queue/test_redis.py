"""The Redis Streams backend: `embd jobs --redis` and `embd worker --redis` against a real
redis-server that the test starts on a free loopback port in a temp dir. Several workers, a worker
killed mid-job (its stream entry is taken over with XAUTOCLAIM), SIGTERM, cancel: every item
exactly once, in order, with the vectors the spool backend gives. Skipped (with a message) only
when redis-server is not installed."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "server"))
import common  # noqa: E402
from common import BIN, MODEL, SANITIZER_MARKERS  # noqa: E402
from test_jobs import Spool, chaos, check_complete, items, jsonl  # noqa: E402

import numpy as np  # noqa: E402

REDIS = shutil.which("redis-server")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Redis:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=common.TMP)
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen([REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                                          "--save", "", "--appendonly", "no"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            end = time.monotonic() + 10
            while time.monotonic() < end and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    self.url = f"redis://127.0.0.1:{self.port}"
                    return
                except OSError:
                    time.sleep(0.05)
            self.proc.kill()
            self.proc.wait()
        raise AssertionError("redis-server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


class RedisJobs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = Redis()

    @classmethod
    def tearDownClass(cls):
        cls.redis.stop()

    def setUp(self):
        self.logs = []
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def cli(self, *args, input=None, check=True):
        p = subprocess.run([BIN, "jobs", *args, "--redis", self.redis.url], input=input, capture_output=True, text=True,
                           timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"embd jobs {args}: rc {p.returncode}\n{p.stderr}")
        return p

    def status(self, job):
        return json.loads(self.cli("status", job).stdout)

    def results(self, job, errors=False):
        out = self.cli("results", job, *(["--errors"] if errors else [])).stdout
        return [json.loads(l) for l in out.splitlines()]

    def worker(self, *args, chunk=8, stale=30):
        log = tempfile.TemporaryFile("w+", dir=common.TMP)
        p = subprocess.Popen([BIN, "worker", "--redis", self.redis.url, "--model", MODEL, "--threads", "1", "--poll",
                              "0.1", "--chunk", str(chunk), "--stale-timeout", str(stale), *args],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        p.log = log
        self.procs.append(p)
        return p

    def finish(self, p, timeout=120):
        rc = p.wait(timeout)
        p.log.seek(0)
        text = p.log.read()
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
                raise AssertionError(f"job {job} never reached {states}/{min_done}: {st}")
            time.sleep(0.05)

    def test_two_workers_item_errors_and_same_vectors_as_spool(self):
        jobs = {}
        for k in range(6):
            objs = items(10, f"r{k}-", seed=20 + k)
            jobs[self.cli("submit", "--id", f"two{k}", input=jsonl(objs)).stdout.strip()] = objs
        bad = self.cli("submit", "--id", "bad1", input=jsonl(items(3, "b")) + "{nope\n\n{\"id\":\"x\"}\n").stdout.strip()
        ws = [self.worker("--exit-when-idle", chunk=4) for _ in range(2)]
        claims = []
        for w in ws:
            rc, log = self.finish(w)
            self.assertEqual(rc, 0, log)
            claims += re.findall(r"job (\S+): claimed", log)
        self.assertEqual(sorted(claims), sorted(list(jobs) + [bad]), "each job claimed exactly once")
        for job, objs in jobs.items():
            st = self.status(job)
            self.assertEqual((st["state"], st["items_done"], st["errors"]), ("done", 10, 0), st)
            check_complete(self, self.results(job), objs)
        st = self.status(bad)
        self.assertEqual((st["state"], st["items_done"], st["errors"]), ("done", 5, 2), st)
        self.assertEqual([e["id"] for e in self.results(bad, errors=True)], [3, "x"])
        # the spool backend gives the same vectors for the same job
        sp = Spool("redis-ref")
        try:
            objs = jobs["two0"]
            sp.submit(objs, "--id", "two0")
            rc, log = sp.finish(sp.worker("--exit-when-idle", chunk=4))
            self.assertEqual(rc, 0, log)
            a = np.array([r["embedding"] for r in self.results("two0")], dtype=np.float32)
            b = np.array([r["embedding"] for r in sp.results("two0")], dtype=np.float32)
            np.testing.assert_allclose(a, b, atol=1e-6)
        finally:
            sp.close()

    def test_chaos_kill9_three_workers(self):
        """Small jobs, three workers, random kill -9 and restarts: every job done, each item once,
        records byte-identical to a clean run on the spool backend."""
        jobs = {f"x{k:03d}": items(8, f"x{k}-", seed=200 + k) for k in range(30)}
        clean = Spool("redis-clean")
        try:
            for job, objs in jobs.items():
                clean.submit(objs, "--id", job)
                self.cli("submit", "--id", job, input=jsonl(objs))
            rc, log = clean.finish(clean.worker("--exit-when-idle", chunk=2))
            self.assertEqual(rc, 0, log)
            ws = chaos(self, lambda: self.worker("--exit-when-idle", chunk=2, stale=1), seed=1)
            for w in ws:
                rc, log = self.finish(w)
                self.assertEqual(rc, 0, log)
            for job, objs in jobs.items():
                st = self.status(job)
                self.assertEqual((st["state"], st["items_done"]), ("done", 8), st)
                out = self.cli("results", job).stdout
                check_complete(self, [json.loads(l) for l in out.splitlines()], objs)
                with open(os.path.join(clean.dir, "results", f"{job}.jsonl")) as f:
                    self.assertEqual(out, f.read(), job)
        finally:
            clean.close()

    def test_sigkill_worker_is_taken_over(self):
        objs = items(120, "k", seed=30)
        job = self.cli("submit", "--id", "kill1", input=jsonl(objs)).stdout.strip()
        w = self.worker(chunk=8, stale=1)
        self.wait_state(job, ("running",), min_done=24)
        w.send_signal(signal.SIGKILL)
        w.wait()
        self.assertEqual(self.status(job)["state"], "running")
        w2 = self.worker("--exit-when-idle", chunk=8, stale=1)
        rc, log = self.finish(w2)
        self.assertEqual(rc, 0, log)
        self.assertIn("stopped heartbeating; taken over", log)
        self.assertRegex(log, r"resuming at item \d+ of 120")
        st = self.status(job)
        self.assertEqual((st["state"], st["items_done"]), ("done", 120))
        check_complete(self, self.results(job), objs)

    def test_sigterm_cancel_and_bad_input(self):
        objs = items(100, "t", seed=31)
        job = self.cli("submit", "--id", "term1", input=jsonl(objs)).stdout.strip()
        w = self.worker(chunk=8)
        self.wait_state(job, ("running",), min_done=16)
        w.send_signal(signal.SIGTERM)
        rc, log = self.finish(w)
        self.assertEqual(rc, 0, log)
        self.assertIn("stopped; requeued", log)
        st = self.status(job)
        self.assertEqual(st["state"], "queued")
        self.assertGreater(st["items_done"], 0)
        # cancel: queued at once; running after its chunk
        q = self.cli("submit", "--id", "cq", input=jsonl(items(3))).stdout.strip()
        self.assertIn("cancelled", self.cli("cancel", q).stderr)
        self.assertEqual(self.status(q)["state"], "cancelled")
        big = self.cli("submit", "--id", "cbig", input=jsonl(items(300, "c"))).stdout.strip()
        w2 = self.worker(chunk=8)
        self.wait_state(job, ("done",))
        check_complete(self, self.results(job), objs)
        self.wait_state(big, ("running",), min_done=8)
        self.cli("cancel", big)
        st = self.wait_state(big, ("cancelled",), timeout=60)
        self.assertLess(st["items_done"], 300)
        w2.send_signal(signal.SIGTERM)
        rc, log = self.finish(w2)
        self.assertEqual(rc, 0, log)
        self.assertNotIn("job cq: claimed", log)  # a cancelled job is acknowledged, not run
        # bad input
        self.assertEqual(self.cli("status", "nosuch", check=False).returncode, 2)
        self.assertEqual(self.cli("results", "nosuch", check=False).returncode, 2)
        self.assertEqual(self.cli("cancel", "nosuch", check=False).returncode, 2)
        p = self.cli("submit", "--id", "term1", input="{}\n", check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("already exists", p.stderr)
        p = subprocess.run([BIN, "jobs", "status", "x", "--redis", "http://nope"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("redis://", p.stderr)
        port = free_port()
        p = subprocess.run([BIN, "jobs", "status", "x", "--redis", f"redis://127.0.0.1:{port}"], capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("cannot connect", p.stderr)


if __name__ == "__main__":
    if not REDIS:
        print("SKIPPED: redis-server is not installed (scripts/install-deps.sh installs it)")
        sys.exit(0)
    common.main("redis")
