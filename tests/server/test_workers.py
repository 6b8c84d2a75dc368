"""Supervised inference workers (`embd serve --workers N`, src/worker): no request is lost when a
worker dies or hangs, an input that kills its worker by itself fails alone ("poison input"),
restarts show in /metrics, and no worker outlives the server.

Faults are real: SIGKILL and SIGSTOP sent to the worker process from here, and the test-only
hooks EMBD_TEST_CRASH_ON / EMBD_TEST_HANG_ON (the worker aborts / stops itself on an item that
contains a given token id sequence). Vectors after a recovery are compared with the undisturbed
result of the same request: a re-run batch has another composition, so "equal" is 1 - cosine
below SAME (as in test_server.py) and nearer to its own reference than to its neighbours'."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import BIN, MODEL, Server, b64_floats, metric, vec  # noqa: E402

import numpy as np  # noqa: E402

SAME = 1e-4
SLOW = 900  # seconds for the big requests: an ASan build on a busy 2-core machine is slow


def token_ids(text):
    """Token ids of text without [CLS]/[SEP], from `embd tokenize` (the server's tokenizer)."""
    out = subprocess.run([BIN, "tokenize", "--model", MODEL], input=text + "\n", capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return json.loads(out.splitlines()[0])["ids"][1:-1]


def children(pid):
    """Pids of the live (not zombie) child processes of pid."""
    out = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out.update(int(x) for x in f.read().split())
        except FileNotFoundError:
            pass
    return {c for c in out if alive(c)}


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except FileNotFoundError:
        return []


def workers_of(srv, n=None, timeout=30):
    """The server's worker pids (waits until there are n of them when n is given)."""
    end = time.monotonic() + timeout
    while True:
        w = sorted(c for c in children(srv.proc.pid) if b"__worker" in cmdline(c))
        if n is None or len(w) == n or time.monotonic() > end:
            return w
        time.sleep(0.02)


def embeddings(resp):
    assert resp.status == 200, resp
    data = resp.json()["data"]
    assert [d["index"] for d in data] == list(range(len(data)))
    return np.array([b64_floats(d["embedding"]) for d in data])


def assert_same(tc, got, ref, what):
    tc.assertEqual(got.shape, ref.shape, what)
    g = got / np.linalg.norm(got, axis=1, keepdims=True)
    r = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    d = 1 - np.sum(g * r, axis=1)
    tc.assertLess(float(d.max()), SAME, f"{what}: item {int(d.argmax())} differs (1 - cos {d.max():.2e})")
    # each vector is nearest to its own reference among its neighbours: nothing was swapped
    for i in range(len(g)):
        near = [j for j in (i - 1, i + 1) if 0 <= j < len(g)]
        for j in near:
            tc.assertLess(d[i], 1 - float(g[i] @ r[j]), f"{what}: item {i} looks like item {j}")


def exits(m, cause):
    return metric(m, "embd_worker_exits_total", {"cause": cause})


class WorkerCase(unittest.TestCase):
    server_args = ()
    server_env = None

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(*cls.server_args, env=cls.server_env)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def embed(self, texts, **kw):
        return self.srv.post("/v1/embeddings", {"input": texts, "encoding_format": "base64"}, **kw)


# ======================================================================================
class T01KillUnderLoad(WorkerCase):
    """kill -9 of the worker in the middle of a 2000-item request: the response is complete, in
    order and equal to the undisturbed one; the worker is replaced and /metrics says so."""
    server_args = ("--workers", "1", "--max-batch-tokens", "1024", "--request-timeout", "900")

    def test_sigkill_during_request(self):
        texts = [f"item {i}" for i in range(2000)]
        t0 = time.monotonic()
        ref = embeddings(self.embed(texts, timeout=SLOW))
        undisturbed = time.monotonic() - t0
        (old,) = workers_of(self.srv, 1)
        m0 = self.srv.metrics()
        box = {}
        th = threading.Thread(target=lambda: box.update(r=self.embed(texts, timeout=SLOW)))
        th.start()
        # readiness, not a sleep: the request's batches have started running
        self.srv.wait_metric("embd_batches_total", at_least=metric(m0, "embd_batches_total") + 2)
        self.assertTrue(th.is_alive(), "the request finished before the kill; make it bigger")
        t_kill = time.monotonic()
        os.kill(old, signal.SIGKILL)
        new = []
        while time.monotonic() - t_kill < 60:
            new = [p for p in workers_of(self.srv) if p != old]
            if new:
                break
            time.sleep(0.005)
        t_new = time.monotonic() - t_kill
        th.join(SLOW)
        self.assertFalse(th.is_alive(), "request never finished")
        self.assertIn("r", box, "the request failed (see the thread's exception above)")
        got = embeddings(box["r"])
        assert_same(self, got, ref, "2000 items after a worker kill")
        self.assertEqual(len(new), 1, "no replacement worker")
        self.assertFalse(alive(old))
        m = self.srv.metrics()
        lost = [l for l in self.srv.stderr.splitlines() if "event=worker_lost" in l]
        self.assertEqual(exits(m, "signal") - exits(m0, "signal"), 1,
                         f"worker exits by signal; {[(k, v) for k, v in m.items() if 'exits' in k[0]]}; {lost}")
        self.assertEqual(metric(m, "embd_worker_restarts_total") - metric(m0, "embd_worker_restarts_total"), 1)
        self.assertGreaterEqual(metric(m, "embd_batch_splits_total"), 1)
        self.assertEqual(metric(m, "embd_workers"), 1)
        self.assertIsNotNone(self.srv.wait_line(rf"event=worker_lost worker=0 pid={old} cause=signal .*SIGKILL"))
        print(f"\n  2000 items: {undisturbed:.1f} s undisturbed; replacement worker up {t_new * 1e3:.0f} ms "
              f"after the kill", end=" ", flush=True)

    def test_repeated_kills_between_requests(self):
        m0 = self.srv.metrics()
        for k in range(3):
            (w,) = workers_of(self.srv, 1)
            os.kill(w, signal.SIGKILL)
            # the idle worker's death is noticed by the next batch, which still succeeds
            got = embeddings(self.embed([f"after kill {k}", "second"]))
            self.assertEqual(got.shape, (2, common.DIMS))
        m = self.srv.metrics()
        self.assertEqual(metric(m, "embd_worker_restarts_total") - metric(m0, "embd_worker_restarts_total"), 3)
        self.assertEqual(self.srv.get("/health").status, 200)


# ======================================================================================
class T02Poison(WorkerCase):
    """An item that makes the worker abort (EMBD_TEST_CRASH_ON): only that item fails."""
    MAGIC = "xylophone"
    server_args = ("--workers", "1")

    @classmethod
    def setUpClass(cls):
        cls.server_env = {"EMBD_TEST_CRASH_ON": ",".join(map(str, token_ids(cls.MAGIC)))}
        super().setUpClass()

    def chunks(self, contents):
        return self.srv.post("/embed", {"batch_id": "p", "chunks": [{"chunk_id": i, "content": c}
                                                                    for i, c in enumerate(contents)]})

    def test_poison_chunk_fails_alone(self):
        m0 = self.srv.metrics()
        contents = [f"ordinary text number {i}" for i in range(16)]
        contents[5] = f"a {self.MAGIC} plays"
        r = self.chunks(contents)
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual([e["chunk_id"] for e in j["errors"]], [5], j["errors"])
        self.assertIn("poison input", j["errors"][0]["error"])
        self.assertEqual([e["chunk_id"] for e in j["embeddings"]], [i for i in range(16) if i != 5])
        ok = [c for i, c in enumerate(contents) if i != 5]
        ref = self.srv.post("/embed", {"inputs": ok})
        self.assertEqual(ref.status, 200, ref)
        assert_same(self, np.array([vec(e["embedding"]) for e in j["embeddings"]]), np.array(ref.json()),
                    "the other chunks")
        m = self.srv.metrics()
        self.assertEqual(metric(m, "embd_poison_items_total") - metric(m0, "embd_poison_items_total"), 1)
        # the batch was halved down to the item, which then killed its worker twice more
        self.assertGreaterEqual(exits(m, "signal") - exits(m0, "signal"), 3)
        self.assertIsNotNone(self.srv.wait_line(r"event=worker_lost .*cause=signal .*SIGABRT"))
        self.assertIsNotNone(self.srv.wait_line(r"event=poison_input "))
        self.assertEqual(len(workers_of(self.srv, 1)), 1)

    def test_poison_in_openai_request_is_422(self):
        r = self.embed(["fine", f"the {self.MAGIC} again", "also fine"])
        self.assertEqual(r.status, 422, r)
        e = r.error()
        self.assertEqual(e["type"], "poison_input")
        self.assertIn("input 1", e["message"])
        self.assertEqual(self.srv.get("/health").status, 200)
        self.assertEqual(embeddings(self.embed(["the server still serves"])).shape, (1, common.DIMS))

    def test_concurrent_requests_unaffected(self):
        """Other clients' items that shared a batch with the poison item all come back."""
        clean = [[f"client {c} text {k}" for k in range(6)] for c in range(4)]
        refs = [embeddings(self.embed(t)) for t in clean]
        barrier = threading.Barrier(5)

        def client(texts):
            barrier.wait()
            return self.embed(texts)

        def poisoner():
            barrier.wait()
            return self.chunks(["x", f"{self.MAGIC}", "y"])

        res = common.run_threads(lambda f, *a: f(*a), [(client, t) for t in clean] + [(poisoner,)])
        for i in range(4):
            assert_same(self, embeddings(res[i]), refs[i], f"client {i}")
        self.assertEqual(res[4].status, 200, res[4])
        self.assertEqual([e["chunk_id"] for e in res[4].json()["errors"]], [1])


# ======================================================================================
class T03Hang(WorkerCase):
    """A worker that stops answering (SIGSTOP from outside, or EMBD_TEST_HANG_ON) is killed once
    its heartbeats are --worker-timeout late and replaced; the work completes."""
    MAGIC = "marimba"
    server_args = ("--workers", "1", "--worker-timeout", "1.5", "--max-batch-tokens", "256", "--request-timeout",
                   "600")

    @classmethod
    def setUpClass(cls):
        cls.server_env = {"EMBD_TEST_HANG_ON": ",".join(map(str, token_ids(cls.MAGIC)))}
        super().setUpClass()

    def test_sigstop_during_request(self):
        texts = [f"hang test {i} " + common.long_text(8, seed=i) for i in range(100)]
        ref = embeddings(self.embed(texts, timeout=SLOW))
        (old,) = workers_of(self.srv, 1)
        m0 = self.srv.metrics()
        box = {}
        th = threading.Thread(target=lambda: box.update(r=self.embed(texts, timeout=SLOW)))
        th.start()
        self.srv.wait_metric("embd_batches_total", at_least=metric(m0, "embd_batches_total") + 1)
        t_stop = time.monotonic()
        os.kill(old, signal.SIGSTOP)
        th.join(SLOW)
        dt = time.monotonic() - t_stop
        self.assertIn("r", box, "the request failed (see the thread's exception above)")
        assert_same(self, embeddings(box["r"]), ref, "after a hung worker")
        m = self.srv.metrics()
        self.assertEqual(exits(m, "hang") - exits(m0, "hang"), 1)
        self.assertFalse(alive(old), "the hung worker was not killed")
        self.assertIsNotNone(self.srv.wait_line(rf"event=worker_lost worker=0 pid={old} cause=hang "))
        self.assertGreater(dt, 1.5, "finished before the heartbeat deadline could pass")
        print(f"\n  request finished {dt:.1f} s after SIGSTOP (deadline 1.5 s)", end=" ", flush=True)

    def test_hanging_item_fails_alone(self):
        m0 = self.srv.metrics()
        r = self.srv.post("/embed", {"batch_id": 1, "chunks": [{"chunk_id": "a", "content": "fine"},
                                                                {"chunk_id": "b", "content": self.MAGIC}]})
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual([e["chunk_id"] for e in j["embeddings"]], ["a"])
        self.assertEqual([e["chunk_id"] for e in j["errors"]], ["b"])
        self.assertIn("poison input", j["errors"][0]["error"])
        m = self.srv.metrics()
        self.assertGreaterEqual(exits(m, "hang") - exits(m0, "hang"), 3)


# ======================================================================================
def calibration(srv):
    """The fields of the server's memory_calibration log line."""
    line = srv.wait_line(r"event=memory_calibration ")
    assert line, srv.stderr
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', line)}


class T05Memory(unittest.TestCase):
    """The memory governor: a budget that a naive fixed forward pass would exceed is kept with zero
    worker deaths; a budget too small for one sequence is a clear start-up error."""

    def run_batch(self, srv):
        texts = [f"memory {i} " + common.long_text(55, seed=i) for i in range(64)]  # ~3800 tokens, one pass
        m0 = srv.metrics()
        r = srv.post("/v1/embeddings", {"input": texts, "encoding_format": "base64"})
        self.assertEqual(r.status, 200, r)
        m = srv.metrics()
        return embeddings(r), metric(m, "embd_worker_peak_memory_bytes"), sum(
            v - m0.get(k, 0) for k, v in m.items() if k[0] == "embd_worker_exits_total")

    def test_budget_kept_where_a_fixed_pass_would_exceed_it(self):
        # naive: one pass of up to 4096 tokens, a roomy measured budget
        srv = Server("--workers", "1", "--max-memory-percent", "70")
        try:
            cal = calibration(srv)
            server_mib = float(cal["budget_mib"]) - float(cal["share_mib"])
            base = float(cal["base_mib"]) * 2**20
            ref, naive_peak, _ = self.run_batch(srv)
        finally:
            srv.stop()
        self.assertGreater(naive_peak, base)
        # a budget whose worker share lies halfway between the idle worker and the naive peak
        share = base + (naive_peak - base) / 2
        budget = int(server_mib * 2**20 + share)
        srv = Server("--workers", "1", "--max-memory", str(budget))
        try:
            cal = calibration(srv)
            got_share = float(cal["share_mib"]) * 2**20
            self.assertLess(got_share, naive_peak, "the naive pass would not have exceeded this budget")
            got, peak, deaths = self.run_batch(srv)
            assert_same(self, got, ref, "governed batches")
            self.assertEqual(deaths, 0)
            self.assertGreater(peak, 0)
            self.assertLessEqual(peak, got_share, f"worker peak {peak / 2**20:.1f} MiB over its share "
                                                  f"{got_share / 2**20:.1f} MiB")
            m = srv.metrics()
            self.assertEqual(metric(m, "embd_memory_budget_bytes"), budget)
            self.assertLess(metric(m, "embd_batch_tokens_limit"), 4096)
            print(f"\n  naive pass peak {naive_peak / 2**20:.1f} MiB; budget share {got_share / 2**20:.1f} MiB, "
                  f"governed peak {peak / 2**20:.1f} MiB, pass limit {metric(m, 'embd_batch_tokens_limit'):.0f} "
                  f"tokens", end=" ", flush=True)
        finally:
            srv.stop()

    def test_budget_too_small_for_one_sequence(self):
        srv = Server("--workers", "1", "--max-memory", str(96 * 2**20), wait=False)
        rc = srv.wait_exit(120)
        self.assertEqual(rc, 2, srv.stderr)
        self.assertRegex(srv.stderr, r"too small for one sequence of 512 tokens|below what the server alone uses")
        self.assertEqual([l for l in srv.stderr.splitlines() if "event=worker_lost" in l], [])
        for m in common.SANITIZER_MARKERS:
            self.assertNotIn(m, srv.stderr)

    def test_bad_memory_flags(self):
        for args in (("--max-memory-percent", "101"),):
            srv = Server("--workers", "1", *args, wait=False)
            self.assertEqual(srv.wait_exit(120), 2, srv.stderr)
            self.assertIn("--max-memory-percent", srv.stderr)
        for args in (("--max-memory", "-5"), ("--max-memory", "lots"), ("--min-batch", "0")):
            p = subprocess.run([BIN, "serve", "--model", MODEL, "--port", "0", *args], capture_output=True, text=True,
                               timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("EMBD_")})
            self.assertEqual(p.returncode, 1, (args, p.stderr))


# ======================================================================================
class T04Lifecycle(unittest.TestCase):
    """Start-up, shutdown and process-tree hygiene."""

    def test_shutdown_with_busy_workers_leaves_no_orphans(self):
        srv = Server("--workers", "2", "--max-batch-tokens", "256")
        try:
            ws = workers_of(srv, 2)
            self.assertEqual(len(ws), 2, ws)
            m = srv.metrics()
            self.assertEqual(metric(m, "embd_workers"), 2)
            self.assertEqual(srv.get("/info").json()["threads"], 2)
            box = {}
            texts = [f"busy {i} " + common.long_text(10, seed=i) for i in range(100)]
            th = threading.Thread(target=lambda: box.update(r=srv.post("/v1/embeddings", {"input": texts})))
            th.start()
            m0 = srv.metrics()
            srv.wait_metric("embd_batches_total", at_least=metric(m0, "embd_batches_total") + 1)
            srv.send_signal(signal.SIGTERM)
            th.join(120)
            self.assertEqual(box["r"].status, 200, box["r"])  # drained, not dropped
            srv.assert_clean(srv.wait_exit())
            for w in ws:
                self.assertFalse(alive(w), f"worker {w} outlived the server")
            self.assertEqual(len(srv.stderr.split("event=worker_stop")) - 1, 2, srv.stderr)
        finally:
            srv.kill()

    def test_server_killed_workers_follow(self):
        srv = Server("--workers", "2")
        ws = workers_of(srv, 2)
        self.assertEqual(len(ws), 2)
        srv.proc.kill()
        srv.wait_exit()
        end = time.monotonic() + 10
        while any(alive(w) for w in ws) and time.monotonic() < end:
            time.sleep(0.02)
        self.assertEqual([w for w in ws if alive(w)], [], "workers orphaned by a SIGKILLed server")

    def test_in_process_has_no_workers(self):
        srv = Server("--workers", "0")
        try:
            self.assertEqual(workers_of(srv), [])
            r = srv.post("/v1/embeddings", {"input": ["in process"]})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(metric(srv.metrics(), "embd_workers"), 0)
        finally:
            srv.stop()

    def test_bad_worker_flags(self):
        for args in (("--workers", "-1"), ("--workers", "x"), ("--worker-timeout", "soon")):
            p = subprocess.run([BIN, "serve", "--model", MODEL, "--port", "0", *args], capture_output=True, text=True,
                               timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("EMBD_")})
            self.assertEqual(p.returncode, 1, (args, p.stderr))
            self.assertIn("--worker", p.stderr, args)

    def test_worker_protocol_entry_refuses_manual_start(self):
        p = subprocess.run([BIN, "__worker"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not by hand", p.stderr)


if __name__ == "__main__":
    common.main("workers")
