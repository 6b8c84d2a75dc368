#!/usr/bin/env python3
"""Independent reference forward pass of a BERT encoder (llama.cpp GGUF layout) in numpy float64.

Written from the architecture (post-LN BERT, as in the original paper / HF BertModel), not from
llama.cpp's graph. Each sequence runs alone, so no padding or attention mask is needed.

    from bert_ref import BertRef
    ref = BertRef("model.gguf")             # gelu: "erf" (HF, default), "tanh" (llama.cpp's formula),
                                            # "tanh-f16" (llama.cpp CPU's fp16 table; cross-checks only)
    vecs = ref.embed([[101, 7592, 102]])    # (N, d) pooled per metadata, L2-normalised

CLI (debugging): bert_ref.py MODEL --ids 101,7592,102 [--ids ...] | --ids-jsonl FILE  -> JSONL on stdout
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import import_gguf, l2_normalize  # noqa: E402

POOLING_NAMES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}


# --- erf without scipy ------------------------------------------------------------------------
# Piecewise polynomials on [0, 6) in steps of 0.5, interpolated at Chebyshev nodes from math.erf
# when the module loads; measured max abs error ~2e-15. erf(x) = 1 to double precision for x >= 6.
_ERF_STEP, _ERF_PIECES, _ERF_DEG = 0.5, 12, 12


def _build_erf_table():
    f = np.frompyfunc(math.erf, 1, 1)
    cheb = np.polynomial.chebyshev
    rows = []
    for j in range(_ERF_PIECES):
        p = np.polynomial.Chebyshev.interpolate(lambda x: f(x).astype(np.float64), _ERF_DEG,
                                                domain=[j * _ERF_STEP, (j + 1) * _ERF_STEP])
        rows.append(cheb.cheb2poly(p.coef))  # monomials in u in [-1, 1]: stable, coefficients decay
    return np.array(rows).T.copy()  # (deg + 1, pieces): row k holds the u^k coefficient per piece


_ERF_TABLE = _build_erf_table()


def erf(x):
    x = np.asarray(x, dtype=np.float64)
    t = np.abs(x)
    idx = np.fmin(t * (1.0 / _ERF_STEP), _ERF_PIECES - 1).astype(np.intp)  # fmin: NaN -> last piece
    u = (t - (idx + 0.5) * _ERF_STEP) * (2.0 / _ERF_STEP)
    y = _ERF_TABLE[-1][idx]
    with np.errstate(over="ignore", invalid="ignore"):  # huge |x| overflows here; replaced below
        for k in range(_ERF_TABLE.shape[0] - 2, -1, -1):  # Horner
            y *= u
            y += _ERF_TABLE[k][idx]
    y = np.where(t >= _ERF_STEP * _ERF_PIECES, 1.0, y)
    return np.copysign(y, x)


def gelu_erf(x):
    return 0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_tanh_f16(x):
    """llama.cpp's CPU GELU, for cross-checking only: input rounded to fp16, tanh GELU looked up in an
    fp16 table; |x| >= 10 bypasses the table."""
    y = gelu_tanh(x.astype(np.float16).astype(np.float64)).astype(np.float16).astype(np.float64)
    return np.where(x <= -10.0, 0.0, np.where(x >= 10.0, x, y))


GELU = {"erf": gelu_erf, "tanh": gelu_tanh, "tanh-f16": gelu_tanh_f16}


def matmul(x, w):
    # Unoptimised einsum runs numpy's SIMD loop, about twice the speed of the reference (netlib)
    # BLAS Debian's numpy links to; it still accumulates in float64.
    return np.einsum("ij,jk->ik", x, w)


def layer_norm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = np.mean(xc * xc, axis=-1, keepdims=True)
    return xc / np.sqrt(var + eps) * w + b


# --- model ------------------------------------------------------------------------------------
class BertRef:
    def __init__(self, path, gelu="erf"):
        gguf = import_gguf()
        r = gguf.GGUFReader(path)

        def kv(key, default=None):
            f = r.fields.get(key)
            return default if f is None else f.contents()

        arch = kv("general.architecture")
        if arch != "bert":
            raise ValueError(f"{path}: architecture {arch!r}, expected 'bert'")
        self.n_layer = int(kv("bert.block_count"))
        self.n_embd = int(kv("bert.embedding_length"))
        self.n_head = int(kv("bert.attention.head_count"))
        self.n_ctx = int(kv("bert.context_length"))
        self.eps = float(kv("bert.attention.layer_norm_epsilon"))
        self.pooling = POOLING_NAMES[int(kv("bert.pooling_type", 0))]
        self.sep_id = int(kv("tokenizer.ggml.seperator_token_id", 102))
        self.gelu = GELU[gelu]

        self.w = {}
        for t in r.tensors:
            a = gguf.quants.dequantize(t.data, t.tensor_type)
            # GGUF lists dims innermost first: a tensor shown as [ne0=in, ne1=out] is (out, in) here.
            a = np.asarray(a, dtype=np.float64).reshape([int(n) for n in reversed(t.shape)])
            if a.ndim == 2 and t.name.startswith("blk."):
                a = np.ascontiguousarray(a.T)  # store linear weights as (in, out): y = x @ W^T + b
            self.w[t.name] = a

    def hidden_states(self, ids, keep=None, types=None):
        """Final-layer token states (n, d) for one sequence of token ids (already truncated).

        keep: a slice of positions whose final states are wanted (CLS pooling needs only 0:1);
        the last layer then runs queries, residuals and FFN for those rows alone. types: token
        type ids (default all 0)."""
        ids = np.asarray(ids, dtype=np.intp)
        n = len(ids)
        if n == 0 or n > self.n_ctx:
            raise ValueError(f"sequence length {n} outside 1..{self.n_ctx}")
        W, eps = self.w, self.eps
        tt = W["token_types.weight"][0] if types is None else W["token_types.weight"][np.asarray(types, dtype=np.intp)]
        x = W["token_embd.weight"][ids] + W["position_embd.weight"][:n] + tt
        x = layer_norm(x, W["token_embd_norm.weight"], W["token_embd_norm.bias"], eps)

        H, dh = self.n_head, self.n_embd // self.n_head
        for i in range(self.n_layer):
            p = f"blk.{i}."
            rows = keep if (keep is not None and i == self.n_layer - 1) else slice(None)

            def lin(name, v):
                return matmul(v, W[p + name + ".weight"]) + W[p + name + ".bias"]

            q = lin("attn_q", x[rows]) * (1.0 / math.sqrt(dh))  # scale q (n*d values), not the n*n scores
            k = lin("attn_k", x)
            v = lin("attn_v", x)
            a = np.empty_like(q)
            for h in range(H):  # one attention problem per head; no mask: the sequence runs alone
                c = slice(h * dh, (h + 1) * dh)
                s = matmul(q[:, c], np.ascontiguousarray(k[:, c].T))
                s -= s.max(axis=-1, keepdims=True)
                np.exp(s, out=s)
                s /= s.sum(axis=-1, keepdims=True)
                a[:, c] = matmul(s, v[:, c])
            x = layer_norm(x[rows] + lin("attn_output", a), W[p + "attn_output_norm.weight"],
                           W[p + "attn_output_norm.bias"], eps)

            f = lin("ffn_down", self.gelu(lin("ffn_up", x)))
            x = layer_norm(x + f, W[p + "layer_output_norm.weight"], W[p + "layer_output_norm.bias"], eps)
        return x

    def embed_one(self, ids, pooling=None, normalize=True):
        pooling = pooling or self.pooling
        h = self.hidden_states(ids, keep={"cls": slice(0, 1), "last": slice(-1, None)}.get(pooling))
        if pooling == "none":
            return l2_normalize(h) if normalize else h
        v = h.mean(axis=0) if pooling == "mean" else h[0]  # cls / last: h holds that one row
        return l2_normalize(v) if normalize else v

    def score_one(self, ids, n_first):
        """Cross-encoder logits for one pair: [CLS] state -> tanh(cls) -> cls.output, with token
        type 1 from position n_first on (HF BertForSequenceClassification / RoBERTa head)."""
        W = self.w
        types = None
        if W["token_types.weight"].shape[0] > 1:
            types = [0] * n_first + [1] * (len(ids) - n_first)
        h = self.hidden_states(ids, keep=slice(0, 1), types=types)[0]
        if "cls.weight" in W:
            h = np.tanh(W["cls.weight"] @ h + W.get("cls.bias", 0.0))
        if "cls.output.weight" in W:
            h = W["cls.output.weight"] @ h + W.get("cls.output.bias", 0.0)
        return h

    def embed(self, ids_list, pooling=None, normalize=True):
        """Pooled embeddings (N, d) for a list of id sequences (a list of (n, d) arrays for 'none')."""
        out = [self.embed_one(ids, pooling, normalize) for ids in ids_list]
        return out if (pooling or self.pooling) == "none" else np.array(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--ids", action="append", default=[], help="comma-separated token ids (repeatable)")
    ap.add_argument("--ids-jsonl", help='JSONL with {"id":..., "ids":[...]} per line')
    ap.add_argument("--gelu", choices=sorted(GELU), default="erf")
    ap.add_argument("--pooling", choices=["cls", "mean", "last", "none"], help="default: from metadata")
    ap.add_argument("--no-normalize", action="store_true")
    ap.add_argument("--truncate", action="store_true", help="truncate to the model context like HF")
    args = ap.parse_args()

    ref = BertRef(args.model, gelu=args.gelu)
    items = [(str(i), [int(t) for t in s.split(",")]) for i, s in enumerate(args.ids)]
    if args.ids_jsonl:
        with open(args.ids_jsonl, encoding="utf-8") as f:
            items += [(o["id"], o["ids"]) for o in map(json.loads, filter(str.strip, f))]
    from common import truncate_ids
    for name, ids in items:
        if args.truncate:
            ids = truncate_ids(ids, ref.n_ctx, ref.sep_id)
        v = ref.embed_one(ids, args.pooling, not args.no_normalize)
        print(json.dumps({"id": name, "tokens": len(ids), "embedding": v.tolist()}))


if __name__ == "__main__":
    main()
