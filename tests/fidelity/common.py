"""Helpers shared by the fidelity test and the numpy reference (no third-party deps beyond numpy)."""
import glob
import json
import os
import sys

import numpy as np


def import_gguf():
    """Import llama.cpp's gguf-py: $GGUF_PY_DIR (set by ctest), else the pinned checkout in ~/.cache/embd."""
    d = os.environ.get("GGUF_PY_DIR")
    if not d:
        hits = sorted(glob.glob(os.path.expanduser("~/.cache/embd/llama.cpp-*/src/gguf-py")))
        d = hits[-1] if hits else None
    if d and d not in sys.path:
        sys.path.insert(0, d)
    import gguf  # noqa: E402
    return gguf


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_ids(ids, n_ctx, sep_id=102):
    """HF-style truncation of a full [CLS] ... [SEP] sequence: keep the head, end with [SEP]."""
    return list(ids) if len(ids) <= n_ctx else list(ids[: n_ctx - 1]) + [sep_id]


def l2_normalize(v):
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-300)


def cosine(a, b):
    """Row-wise cosine of two (N, d) arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def centred_cosine(got, ref, mu=None):
    """Cosine after removing mu (default: the mean reference vector of the set) from both.

    Random-weight encoders put most of every vector into one shared direction, so the plain
    cosine is ~1 even for wrong inputs; the centred cosine measures the text-dependent part."""
    if mu is None:
        mu = np.mean(np.asarray(ref, dtype=np.float64), axis=0)
    return cosine(np.asarray(got, dtype=np.float64) - mu, np.asarray(ref, dtype=np.float64) - mu)
