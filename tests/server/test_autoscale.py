"""`embd serve --workers auto`: one worker at start, a second when every worker stays busy and CPU
allows, back to one when idle; threads x workers never exceed the cores; every request answers
with the vectors a fixed single worker gives.

The CPU thresholds are real /proc/stat readings, so the test sets them so that they cannot block
(EMBD_AUTOSCALE_CPU_HIGH=2) for growth and so that they always block (0) for the refusal, and
shortens the interval and idle time (EMBD_AUTOSCALE_INTERVAL, EMBD_AUTOSCALE_IDLE_S)."""
import os
import re
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Server, metric, vec  # noqa: E402

import numpy as np  # noqa: E402

TEXTS = [f"chunk {i}: " + "the quick brown fox jumps over the lazy dog " * (1 + i % 6) for i in range(240)]
FAST = {"EMBD_AUTOSCALE_INTERVAL": "0.3", "EMBD_AUTOSCALE_IDLE_S": "1.5"}


def embed_all(s, texts, clients=3, batch=8):
    out = [None] * len(texts)
    err = []

    def worker(k):
        for i in range(k * batch, len(texts), clients * batch):
            r = s.post("/v1/embeddings", {"input": texts[i:i + batch]}, timeout=600)
            if r.status != 200:
                err.append(r)
                return
            for d in r.json()["data"]:
                out[i + d["index"]] = vec(d["embedding"])

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not err, err[0]
    return np.array(out)


class AutoscaleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with Server("--workers", "1") as s:
            cls.want = embed_all(s, TEXTS)

    def test_grows_under_load_and_shrinks_when_idle(self):
        env = dict(FAST, EMBD_AUTOSCALE_CPU_HIGH="2", EMBD_AUTOSCALE_CPU_LOW="2")
        args = ("--workers", "auto", "--max-workers", "2", "--max-batch-tokens", "128")
        with Server(*args, env=env) as s:
            self.assertIsNotNone(s.wait_line(r"event=autoscale workers=1\.\.2 threads_per_worker=2 cores=2"), s.stderr)
            self.assertEqual(metric(s.metrics(), "embd_workers_active"), 1)
            got = embed_all(s, TEXTS * 3)
            up = s.wait_line(r"event=scale_up workers=2 ", timeout=5)
            self.assertIsNotNone(up, s.stderr)
            self.assertIn("threads=1 ", up)  # 2 workers x 1 thread on 2 cores
            self.assertGreater(float(np.min(np.sum(got[:len(TEXTS)] * self.want, axis=1))), 0.9999)
            for k in range(3):
                self.assertGreater(float(np.min(np.sum(got[k * len(TEXTS):(k + 1) * len(TEXTS)] * self.want, axis=1))),
                                   0.9999)
            down = s.wait_line(r"event=scale_down workers=1 ", timeout=30)
            self.assertIsNotNone(down, s.stderr)
            self.assertIn("threads=2 ", down)
            m = s.wait_metric("embd_workers_active", pred=lambda v: v == 1)
            self.assertEqual(metric(m, "embd_workers_active"), 1)
            self.assertEqual(metric(m, "embd_worker_threads"), 2)
            # after shrinking, the remaining worker still answers with the right vectors
            again = embed_all(s, TEXTS[:24], clients=1)
            self.assertGreater(float(np.min(np.sum(again * self.want[:24], axis=1))), 0.9999)
            for line in s.stderr.splitlines():  # threads x workers never exceed the cores
                m2 = re.search(r"event=scale_\w+ workers=(\d+) threads=(\d+)", line)
                if m2:
                    self.assertLessEqual(int(m2.group(1)) * int(m2.group(2)), 2, line)

    def test_cpu_over_the_mark_blocks_growth(self):
        env = dict(FAST, EMBD_AUTOSCALE_CPU_HIGH="0", EMBD_AUTOSCALE_CPU_LOW="0")
        with Server("--workers", "auto", "--max-workers", "2", "--max-batch-tokens", "128", env=env) as s:
            got = embed_all(s, TEXTS)
            self.assertGreater(float(np.min(np.sum(got * self.want, axis=1))), 0.9999)
            self.assertNotIn("event=scale_up", s.stderr)
            self.assertEqual(metric(s.metrics(), "embd_workers_active"), 1)

    def test_bad_values(self):
        for args in (("--workers", "automatic"), ("--max-workers", "x")):
            s = Server(*args, wait=False)
            self.assertEqual(s.wait_exit(60), 1, s.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
