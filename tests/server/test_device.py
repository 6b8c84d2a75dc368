"""`embd serve --device`: where inference runs, and what happens when that device has no memory.

The out-of-memory path is driven by the test hook EMBD_FAULT_ALLOC_BYTES (a forward pass predicted
to need more bytes fails as a device allocation would): passes are split in halves, sequences that
do not fit alone run on the CPU, every request still answers 200 with the vectors an undisturbed
server gives, and /metrics counts the splits and fallbacks. It runs with the default device
(auto: the first GPU of a CUDA build, else the CPU), so on a GPU machine it exercises the GPU
encoder and its CPU twin, and elsewhere the same split/fallback code on the CPU."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Server, metric, vec  # noqa: E402

import numpy as np  # noqa: E402

TEXTS = ["hello world", "numpy.cumsum returns the cumulative sum", "x", "a longer input " * 30,
         "def mean(a):\n    return a.sum() / len(a)\n", "the quick brown fox"]


def embed(s):
    r = s.post("/v1/embeddings", {"input": TEXTS, "model": "m"})
    assert r.status == 200, r
    return np.array([vec(d["embedding"]) for d in r.json()["data"]])


class DeviceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with Server("--device", "cpu") as s:
            info = s.get("/info").json()
            cls.want = embed(s)
        assert info["device"] == "cpu" and info["device_description"] == "cpu", info

    def check_same(self, got):
        self.assertEqual(got.shape, self.want.shape)
        self.assertGreater(float(np.min(np.sum(got * self.want, axis=1))), 0.9999)

    def test_oom_fallback_workers(self):
        for workers in ("1", "0"):
            with self.subTest(workers=workers), Server("--workers", workers, env={"EMBD_FAULT_ALLOC_BYTES": "1"}) as s:
                info = s.get("/info").json()
                self.assertIn(info["device"], ("cpu", "cuda:0"))
                self.check_same(embed(s))
                m = s.wait_metric("embd_gpu_cpu_fallbacks_total", at_least=len(TEXTS))
                self.assertGreaterEqual(metric(m, "embd_gpu_cpu_fallbacks_total"), len(TEXTS), s.stderr)
                self.assertGreaterEqual(metric(m, "embd_gpu_oom_splits_total"), 1)
                self.assertIn("running it on the CPU", s.stderr)
                info_labels = [k for k in m if k[0] == "embd_model_info"]
                self.assertEqual(len(info_labels), 1)
                self.assertIn(("device", info["device"]), info_labels[0][1])
                if workers == "1":
                    self.assertIn("event=gpu_cpu_fallback", s.stderr)

    def test_bad_device(self):
        for args, env in ((("--device", "tpu"), None), (("--device", "cuda:99"), None), ((), {"EMBD_DEVICE": "cuda:99"})):
            with self.subTest(args=args, env=env):
                s = Server(*args, env=env, wait=False)
                rc = s.wait_exit(60)
                self.assertEqual(rc, 2, s.stderr)
                self.assertIn("device", s.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
