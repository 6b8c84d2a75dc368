"""Emergency mode (src/worker/supervisor.c): two worker deaths by OOM kill within 60 s put the
supervisor into one-batch-at-a-time, smallest-pass mode; it leaves by itself after a stable period.

OOM kills are recognised by the cgroup's oom_kill counter going up across a worker's SIGKILL. The
test points embd at a fake cgroup directory (EMBD_CGROUP_DIR) whose memory.events it bumps before
each kill, and kills through a real hang: an item containing the test trigger (EMBD_TEST_HANG_ON)
makes the worker stop itself, and the supervisor SIGKILLs it after --worker-timeout. Every other
item of the request still completes; the hanging one fails alone as poison input."""
import os
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Server, metric  # noqa: E402
from test_workers import token_ids  # noqa: E402

MAGIC = "marimba"
# long enough that a loaded CI machine reads the gauge before the stable period ends
STABLE_S = 12


class EmergencyTest(unittest.TestCase):
    def test_two_oom_kills_enter_and_leave_emergency(self):
        cg = tempfile.mkdtemp(prefix="embd-cg-")
        events = os.path.join(cg, "memory.events")

        def oom_kills(n):
            with open(events + ".tmp", "w") as f:
                f.write(f"low 0\nhigh 0\nmax 0\noom {n}\noom_kill {n}\n")
            os.replace(events + ".tmp", events)

        oom_kills(0)
        env = {"EMBD_CGROUP_DIR": cg, "EMBD_EMERGENCY_STABLE_S": str(STABLE_S),
               "EMBD_TEST_HANG_ON": ",".join(map(str, token_ids(MAGIC)))}
        with Server("--workers", "1", "--worker-timeout", "1.5", "--request-timeout", "600", env=env) as s:
            self.assertEqual(metric(s.metrics(), "embd_emergency_mode"), 0)
            oom_kills(1)  # the first kill of the hanging worker reads as an OOM kill ...
            chunks = [{"chunk_id": f"c{i}", "content": f"plain text number {i}"} for i in range(40)]
            chunks.insert(7, {"chunk_id": "bad", "content": MAGIC})

            box = {}
            t = threading.Thread(target=lambda: box.setdefault("r", s.post("/embed", {"batch_id": 1,
                                                                                     "chunks": chunks})))
            t.start()
            self.assertIsNotNone(s.wait_line(r"event=worker_lost .*cause=oom", timeout=120), s.stderr)
            oom_kills(2)  # ... and so does the next one, within 60 s
            self.assertIsNotNone(s.wait_line(r"event=emergency_mode state=on", timeout=120), s.stderr)
            t_on = time.monotonic()
            self.assertEqual(metric(s.metrics(), "embd_emergency_mode"), 1)
            t.join(600)
            r = box["r"]
            self.assertEqual(r.status, 200, r)
            j = r.json()
            self.assertEqual([e["chunk_id"] for e in j["embeddings"]], [c["chunk_id"] for c in chunks if c["chunk_id"] != "bad"])
            self.assertEqual([e["chunk_id"] for e in j["errors"]], ["bad"])
            self.assertGreaterEqual(metric(s.metrics(), "embd_worker_exits_total", {"cause": "oom"}), 2)
            # stable for longer than STABLE_S: the next batch leaves emergency mode
            time.sleep(max(0.0, t_on + STABLE_S + 1 - time.monotonic()))
            r = s.post("/v1/embeddings", {"input": ["after the storm"]})
            self.assertEqual(r.status, 200, r)
            self.assertIsNotNone(s.wait_line(r"event=emergency_mode state=off", timeout=30), s.stderr)
            self.assertEqual(metric(s.metrics(), "embd_emergency_mode"), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
