#!/usr/bin/env python3
"""Numerical fidelity of `embd embed` against the independent numpy float64 reference (bert_ref.py).

For each model (random-weight GGUFs made by tools/gen_random_model.py, plus the shared
bge-small-random files when present) the embd CLI embeds >= 60 texts (every edge case of the token
fixture plus corpus chunks) and each vector is compared with the reference run on the fixture's
HF token ids, truncated like HF. Checks:
  - centred cosine (see common.centred_cosine) >= 0.9999 (f32), 0.999 (f16), 0.97 (q8_0) for every text;
  - "tokens" = truncated reference length, "truncated" flag, no per-text errors (empty input included);
  - L2 norm 1 +- 1e-4 by default, --no-normalize gives the reference's raw vectors;
  - determinism: --batch-tokens 64 and reversed input order change no vector by > 1e-5 cosine
    distance (plain, and centred, which the shared direction of random-weight vectors cannot mask).

Environment (set by ctest): EMBD_BIN, EMBD_SOURCE_DIR, EMBD_SHARED_DIR, EMBD_TEST_TMP, GGUF_PY_DIR.
Optional: EMBD_FIDELITY_FIXTURE (token fixture path), EMBD_FIDELITY_JOBS (reference processes),
EMBD_FIDELITY_MODELS (comma-separated model names to run, for debugging).
`--ref-only` runs generation and the reference alone (for developing without an embd binary).
"""
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bert_ref import BertRef  # noqa: E402
from common import centred_cosine, cosine, l2_normalize, load_jsonl, truncate_ids  # noqa: E402

SRC = os.environ.get("EMBD_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
SHARED = os.environ.get("EMBD_SHARED_DIR") or os.path.normpath(os.path.join(SRC, "..", "shared"))
TMP = os.path.join(os.environ.get("EMBD_TEST_TMP") or "/tmp/embd-test-tmp", "fidelity")
FIXTURE = os.environ.get("EMBD_FIDELITY_FIXTURE") or os.path.join(SRC, "tests", "fixtures",
                                                                   "tokens_bge-small-en-v1.5.jsonl")
EMBD = os.environ.get("EMBD_BIN", "")
JOBS = int(os.environ.get("EMBD_FIDELITY_JOBS") or min(2, os.cpu_count() or 1))
ONLY = [m for m in os.environ.get("EMBD_FIDELITY_MODELS", "").split(",") if m]  # debugging: model subset

N_TEXTS = 60          # all edge cases, then corpus chunks evenly spaced in the fixture up to this many
MIN_CENTRED = {"f32": 0.9999, "f16": 0.999, "q8_0": 0.97}
NORM_TOL = 1e-4       # default output is L2-normalised
RAW_NORM_TOL = 1e-3   # --no-normalize: |norm ratio - 1| against the reference
DETERMINISM_TOL = 1e-5

# name, weight type, generator args (or a shared file), extra runs. The tiny f32/f16/q8_0 models share
# a seed, so they hold the same weights up to rounding.
MODELS = [
    ("tiny-f32", "f32", ["--shape", "tiny", "--type", "f32", "--seed", "11"], {"determinism", "raw"}),
    ("tiny-f16", "f16", ["--shape", "tiny", "--type", "f16", "--seed", "11"], set()),
    ("tiny-q8_0", "q8_0", ["--shape", "tiny", "--type", "q8_0", "--seed", "11"], set()),
    ("tiny-f32-mean", "f32", ["--shape", "tiny", "--type", "f32", "--seed", "12", "--pooling", "mean"], {"raw"}),
    ("bge-small-f32", "f32", ["--shape", "bge-small", "--type", "f32", "--seed", "13"], {"determinism"}),
    ("shared-bge-small-f16", "f16", "models/bge-small-random/bge-small-random-f16.gguf", set()),
    ("shared-bge-small-q8_0", "q8_0", "models/bge-small-random/bge-small-random-q8_0.gguf", set()),
]


class Results:
    def __init__(self):
        self.passed, self.failed = 0, []

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed.append(what)
            print(f"FAIL: {what}", flush=True)
        return ok


def select_texts():
    if not os.path.exists(FIXTURE):
        sys.exit(f"fidelity: token fixture {FIXTURE} is missing (tools/tokfix generates it)")
    rows = load_jsonl(FIXTURE)
    edge = [r for r in rows if r["id"].startswith("edge_")]
    corpus = [r for r in rows if not r["id"].startswith("edge_")]
    n = min(max(N_TEXTS - len(edge), 0), len(corpus))
    texts = edge + [corpus[i * len(corpus) // n] for i in range(n)]  # spread over the corpus sample
    if len(texts) < 60 or not edge:
        sys.exit(f"fidelity: fixture gives {len(texts)} texts ({len(edge)} edge cases); need >= 60 with edge cases")
    return texts


# --- reference, spread over processes (netlib BLAS and numpy loops use one core each) ----------
_REF = None


def _ref_job(ids):
    return _REF.embed_one(ids, normalize=False)


def reference(ref, ids_list):
    """Un-normalised pooled reference vectors (N, d), computed longest-first over JOBS processes."""
    global _REF
    _REF = ref  # inherited by the forked workers, not pickled
    order = sorted(range(len(ids_list)), key=lambda i: -len(ids_list[i]))
    if JOBS > 1:
        with mp.get_context("fork").Pool(JOBS) as pool:
            vecs = pool.map(_ref_job, [ids_list[i] for i in order], chunksize=1)
    else:
        vecs = [_ref_job(ids_list[i]) for i in order]
    out = np.empty((len(ids_list), ref.n_embd))
    for i, v in zip(order, vecs):
        out[i] = v
    return out


# --- embd CLI ---------------------------------------------------------------------------------
def write_texts(path, texts):
    with open(path, "w", encoding="ascii") as f:
        for t in texts:  # ensure_ascii keeps lone surrogates as \ud800 escapes
            f.write(json.dumps({"id": t["id"], "text": t["text"]}, ensure_ascii=True) + "\n")


def run_embd(model, texts_path, tag, extra=()):
    """Run `embd embed`; returns its output rows, or raises RuntimeError with the reason."""
    out = os.path.join(TMP, f"out-{tag}.jsonl")
    cmd = [EMBD, "embed", "--model", model, "--input", texts_path, "--output", out, "--format", "jsonl",
           "--quiet", *extra]
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    # exit 3 = some items failed: their {"id","error"} rows are reported text by text
    if p.returncode not in (0, 3) or not os.path.exists(out):
        tail = p.stderr.decode("utf-8", "replace")[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{tail}")
    rows = load_jsonl(out)
    print(f"  embd {tag}: {len(rows)} rows in {time.time() - t0:.1f}s (exit {p.returncode})", flush=True)
    return rows


def by_id(rows, texts, what, res):
    """Map id -> row; checks that every text came back once, in input order."""
    got = [r.get("id") for r in rows]
    want = [t["id"] for t in texts]
    res.check(got == want, f"{what}: output ids/order differ from input "
                           f"({len(got)} rows; first mismatch at "
                           f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))})")
    return {r.get("id"): r for r in rows}


def vectors(rows, ids, what, res):
    """(N, d) array of the embeddings of ids; NaN rows where a text failed (reported)."""
    dims = {len(r["embedding"]) for r in rows.values() if "embedding" in r}
    d = max(dims) if dims else 0
    res.check(len(dims) <= 1, f"{what}: embeddings of different lengths {sorted(dims)}")
    out = np.full((len(ids), d), np.nan)
    bad = []
    for i, k in enumerate(ids):
        r = rows.get(k)
        if r is None or "embedding" not in r or len(r["embedding"]) != d:
            bad.append(f"{k}: {(r or {}).get('error', 'no embedding')}")
        else:
            out[i] = r["embedding"]
    res.check(not bad, f"{what}: {len(bad)} texts without an embedding: {'; '.join(bad[:5])}")
    return out


# --- per-model checks -------------------------------------------------------------------------
def check_model(name, wtype, path, extra_runs, texts, texts_path, rev_path, res, table):
    t0 = time.time()
    ref = BertRef(path)
    ids = [t["id"] for t in texts]
    trunc = [truncate_ids(t["ids"], ref.n_ctx, ref.sep_id) for t in texts]
    raw = reference(ref, trunc)
    want = l2_normalize(raw)
    print(f"  reference {name}: {ref.n_layer} layers x {ref.n_embd}, pooling {ref.pooling}, "
          f"{sum(map(len, trunc))} tokens in {time.time() - t0:.1f}s", flush=True)
    if not EMBD:
        table.append((name, wtype, len(texts)) + (float("nan"),) * 4 + (MIN_CENTRED[wtype], "ref-only", ""))
        return

    try:
        rows = by_id(run_embd(path, texts_path, name), texts, name, res)
    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
        res.check(False, f"{name}: embd run failed: {e}")
        table.append((name, wtype, len(texts)) + (float("nan"),) * 4 + (MIN_CENTRED[wtype], "FAIL", "no output"))
        return
    got = vectors(rows, ids, name, res)

    # token counts and truncation flags against HF's ids
    wrong = [f"{t['id']}: tokens {rows.get(t['id'], {}).get('tokens')} truncated "
             f"{rows.get(t['id'], {}).get('truncated')}, want {len(tr)} {len(t['ids']) > len(tr)}"
             for t, tr in zip(texts, trunc)
             if rows.get(t["id"], {}).get("tokens") != len(tr)
             or rows.get(t["id"], {}).get("truncated") != (len(t["ids"]) > len(tr))]
    res.check(not wrong, f"{name}: {len(wrong)} texts with wrong tokens/truncated: {'; '.join(wrong[:5])}")

    ok_rows = ~np.isnan(got).any(axis=1)
    if got.shape[1] != want.shape[1]:
        res.check(False, f"{name}: embedding length {got.shape[1]}, reference {want.shape[1]}")
        return
    norms = np.linalg.norm(got[ok_rows], axis=1)
    res.check(np.all(np.abs(norms - 1) <= NORM_TOL),
              f"{name}: L2 norms outside 1 +- {NORM_TOL}: range {norms.min():.6f}..{norms.max():.6f}")

    # per-text agreement; texts without an embedding were already reported by vectors()
    need = MIN_CENTRED[wtype]
    if not ok_rows.any():
        table.append((name, wtype, len(texts)) + (float("nan"),) * 4 + (need, "FAIL", "no embeddings"))
        return
    cos = cosine(got, want)
    ccos = centred_cosine(got, want)
    c_ok, cc_ok = cos[ok_rows], ccos[ok_rows]
    worst = ids[int(np.argmin(np.where(ok_rows, ccos, np.inf)))]
    passed = bool(ok_rows.all() and cc_ok.min() >= need)
    res.check(cc_ok.min() >= need, f"{name}: min centred cosine {cc_ok.min():.7f} < {need} (worst {worst})")
    if cc_ok.min() < need:
        for i in np.argsort(np.where(ok_rows, ccos, np.inf))[:5]:
            print(f"    {ids[i]}: cos {cos[i]:.7f} centred {ccos[i]:.7f} tokens {len(trunc[i])}")
    table.append((name, wtype, len(texts), c_ok.min(), np.median(c_ok), cc_ok.min(), np.median(cc_ok),
                  need, "ok" if passed else "FAIL", worst))

    if "determinism" in extra_runs:
        try:
            rows2 = by_id(run_embd(path, rev_path, name + "-rev-b64", ["--batch-tokens", "64"]), texts[::-1],
                          name + " (reversed, --batch-tokens 64)", res)
            got2 = vectors(rows2, ids, name + " (reversed, --batch-tokens 64)", res)
            # plain cosine distance as specified, and the centred one, which sees changes the shared
            # direction of random-weight vectors hides; texts without embeddings are reported above
            dist = 1 - cosine(got, got2)
            cdist = 1 - centred_cosine(got2, got, mu=want.mean(axis=0))
            fin = np.isfinite(dist) & np.isfinite(cdist)
            for what, dd in (("cosine", dist), ("centred cosine", cdist)):
                i = int(np.argmax(np.where(fin, dd, -np.inf)))
                res.check(np.all(dd[fin] <= DETERMINISM_TOL),
                          f"{name}: reversed order + --batch-tokens 64 moved {ids[i]} by {what} distance "
                          f"{dd[i]:.3g} (max allowed {DETERMINISM_TOL})")
            print(f"  determinism {name}: max cosine distance {dist[fin].max():.3g} "
                  f"(centred {cdist[fin].max():.3g})")
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
            res.check(False, f"{name}: determinism run failed: {e}")

    if "raw" in extra_runs:
        try:
            rows3 = by_id(run_embd(path, texts_path, name + "-raw", ["--no-normalize"]), texts,
                          name + " (--no-normalize)", res)
            got3 = vectors(rows3, ids, name + " (--no-normalize)", res)
            fin = ~np.isnan(got3).any(axis=1)
            ratio = np.linalg.norm(got3[fin], axis=1) / np.linalg.norm(raw[fin], axis=1)
            rc = centred_cosine(got3, raw)[fin]
            res.check(np.all(np.abs(ratio - 1) <= RAW_NORM_TOL) and np.all(rc >= need),
                      f"{name}: --no-normalize vs reference: norm ratio {ratio.min():.7f}..{ratio.max():.7f} "
                      f"(tol {RAW_NORM_TOL}), min centred cosine {rc.min():.7f} (need {need})")
            print(f"  raw {name}: norm ratio {ratio.min():.7f}..{ratio.max():.7f}, "
                  f"min centred cosine {rc.min():.7f}")
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
            res.check(False, f"{name}: --no-normalize run failed: {e}")


def print_table(table):
    head = ("model", "type", "texts", "cos min", "cos med", "ccos min", "ccos med", "need", "result", "worst text")
    print("\n" + "  ".join(f"{h:<10}" if i else f"{h:<22}" for i, h in enumerate(head)))
    for row in table:
        name, wtype, n, a, b, c, d, need, status, worst = row
        nums = "  ".join(f"{v:<10.7f}" for v in (a, b, c, d))
        print(f"{name:<22}  {wtype:<10}  {n:<10}  {nums}  {need:<10}  {status:<10}  {worst}")


def main():
    ref_only = "--ref-only" in sys.argv[1:]
    global EMBD
    if ref_only:
        EMBD = ""
    elif not (EMBD and os.access(EMBD, os.X_OK)):
        sys.exit(f"fidelity: EMBD_BIN={EMBD!r} is not an executable (run through ctest, or pass --ref-only)")

    t_start = time.time()
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    texts = select_texts()
    texts_path = os.path.join(TMP, "texts.jsonl")
    rev_path = os.path.join(TMP, "texts-reversed.jsonl")
    write_texts(texts_path, texts)
    write_texts(rev_path, texts[::-1])
    n_edge = sum(t["id"].startswith("edge_") for t in texts)
    print(f"fidelity: {len(texts)} texts ({n_edge} edge cases) from {FIXTURE}; {JOBS} reference processes",
          flush=True)

    res, table = Results(), []
    gen = os.path.join(SRC, "tools", "gen_random_model.py")
    for name, wtype, spec, extra_runs in MODELS:
        if ONLY and name not in ONLY:
            continue
        print(f"[{name}]", flush=True)
        if isinstance(spec, str):
            path = os.path.join(SHARED, spec)
            if not os.path.exists(path):
                print(f"  SKIP: {path} not present")
                continue
        else:
            path = os.path.join(TMP, name + ".gguf")
            p = subprocess.run([sys.executable, gen, "--out", path, *spec], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            if not res.check(p.returncode == 0, f"{name}: gen_random_model.py failed:\n"
                                                f"{p.stdout.decode('utf-8', 'replace')[-2000:]}"):
                continue
        check_model(name, wtype, path, extra_runs, texts, texts_path, rev_path, res, table)

    print_table(table)
    if not res.failed:
        shutil.rmtree(TMP, ignore_errors=True)  # keep the models and outputs only when something failed
    print(f"\nfidelity: {res.passed} passed, {len(res.failed)} failed ({time.time() - t_start:.0f}s)")
    for f in res.failed:
        print(f"  failed: {f.splitlines()[0]}")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
