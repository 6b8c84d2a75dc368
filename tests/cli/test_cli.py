"""CLI behaviour of `embd embed|info|tokenize`: formats, ordering, exit codes and every bad input.

Runs the real binary ($EMBD_BIN) on the shared bge-small-random q8_0 GGUF."""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ["EMBD_BIN"]
SHARED = os.environ.get("EMBD_SHARED_DIR") or os.path.join(os.environ["EMBD_SOURCE_DIR"], "..", "shared")
MODEL = os.path.join(SHARED, "models", "bge-small-random", "bge-small-random-q8_0.gguf")
TMP = tempfile.mkdtemp(prefix="embd-cli-", dir=os.environ.get("EMBD_TEST_TMP") and
                       (os.makedirs(os.environ["EMBD_TEST_TMP"], exist_ok=True) or os.environ["EMBD_TEST_TMP"]))
results = {"passed": 0, "failed": 0}


def run(*args, stdin=None):
    p = subprocess.run([BIN, *args], input=stdin, capture_output=True, timeout=300)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def path(name, data=None):
    p = os.path.join(TMP, name)
    if data is not None:
        with open(p, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
    return p


def check(name, cond, detail=""):
    if cond:
        results["passed"] += 1
        print(f"ok   {name}")
    else:
        results["failed"] += 1
        print(f"FAIL {name} {detail}")


def jsonl(b):
    return [json.loads(l) for l in b.decode().splitlines() if l.strip()]


def main():
    if not os.path.exists(MODEL):
        print(f"shared model missing at {MODEL}")
        sys.exit(1)

    # info
    rc, out, err = run("info", "--model", MODEL, "--json")
    info = json.loads(out) if rc == 0 else {}
    check("info --json", rc == 0 and info.get("dims") == 384 and info.get("context") == 512
          and info.get("pooling") == "cls" and info.get("quantization") == "q8_0"
          and info.get("vocab") == 30522 and info.get("layers") == 12 and info.get("architecture") == "bert", (rc, err, info))
    rc, out, _ = run("info", "--model", MODEL)
    check("info text", rc == 0 and b"dims" in out and b"384" in out)

    # unusable model files: exit 2 with a one-line reason, never a crash
    with open(MODEL, "rb") as f:
        head = f.read(200000)
    for label, data in [("truncated", head), ("garbage", os.urandom(4096)), ("empty", b""),
                        ("header-only", head[:24]), ("text", b"hello world\n" * 10)]:
        rc, _, err = run("info", "--model", path(f"bad-{label}.gguf", data))
        check(f"unusable model ({label}) -> exit 2", rc == 2 and len(err.strip().splitlines()) == 1, (rc, err))
    rc, _, err = run("info", "--model", os.path.join(TMP, "does-not-exist.gguf"))
    check("missing model -> exit 2", rc == 2 and "cannot open" in err, (rc, err))
    rc, _, err = run("embed", "--model", TMP, "--input", "-", stdin=b"x\n")
    check("directory as model -> exit 2", rc == 2, (rc, err))

    # usage errors: exit 1
    for args in [("embed",), ("embed", "--model", MODEL, "--format", "xml"), ("embed", "--model", MODEL, "--batch-tokens", "0"),
                 ("embed", "--model", MODEL, "--threads", "abc"), ("embed", "--model", MODEL, "--pooling", "max"),
                 ("embed", "--model", MODEL, "--max-tokens", "1"), ("frobnicate",), ("embed", "--model", MODEL, "stray")]:
        rc, _, err = run(*args, stdin=b"")
        check(f"usage error {' '.join(args[-2:])} -> exit 1", rc == 1 and err.strip(), (rc, err))

    # JSONL in, JSONL out: order and ids kept, every item accounted for
    items = [{"id": "a", "text": "hello world"}, {"id": 7, "text": ""}, {"id": None, "text": "   "},
             {"id": {"k": [1]}, "text": "numpy arrays " * 300}, {"text": "no id here"}, {"id": "z", "text": "x"}]
    inp = path("in.jsonl", "".join(json.dumps(i) + "\n" for i in items))
    rc, out, err = run("embed", "--model", MODEL, "--input", inp)
    recs = jsonl(out)
    check("jsonl exit 0", rc == 0, (rc, err))
    check("jsonl one record per item, in order", [r["id"] for r in recs] == ["a", 7, None, {"k": [1]}, 4, "z"], recs and [r.get("id") for r in recs])
    check("embeddings are 384-d and unit length", all(len(r["embedding"]) == 384 and abs(np.linalg.norm(r["embedding"]) - 1) < 1e-4 for r in recs))
    check("empty / whitespace give [CLS][SEP]", recs[1]["tokens"] == 2 and recs[2]["tokens"] == 2)
    check("long input truncated to 512", recs[3]["tokens"] == 512 and recs[3]["truncated"] is True and recs[0]["truncated"] is False)
    check("summary line on stderr", "items" in err and "tokens/s" in err and "peak RSS" in err, err)

    # same vectors whatever the window/batch composition
    rc2, out2, _ = run("embed", "--model", MODEL, "--input", inp, "--batch-tokens", "16", "--quiet")
    v1 = np.array([r["embedding"] for r in recs])
    v2 = np.array([r["embedding"] for r in jsonl(out2)])
    check("batch composition does not change vectors", rc2 == 0 and np.max(1 - np.sum(v1 * v2, axis=1)) < 1e-5)

    # --no-truncate: the long item fails alone with its token count
    rc, out, err = run("embed", "--model", MODEL, "--input", inp, "--no-truncate", "--quiet")
    recs_nt = jsonl(out)
    check("--no-truncate -> exit 3, per-item error", rc == 3 and "error" in recs_nt[3] and "tokens" in recs_nt[3]["error"]
          and all("embedding" in r for i, r in enumerate(recs_nt) if i != 3), (rc, recs_nt[3]))
    check("--quiet prints nothing", err == "", err)

    # --max-tokens
    rc, out, _ = run("embed", "--model", MODEL, "--input", inp, "--max-tokens", "16", "--quiet")
    check("--max-tokens 16", rc == 0 and max(r["tokens"] for r in jsonl(out)) == 16)

    # --no-normalize changes the norm, not the direction
    rc, out, _ = run("embed", "--model", MODEL, "--input", inp, "--no-normalize", "--quiet")
    raw = np.array([r["embedding"] for r in jsonl(out)])
    cosd = 1 - np.sum(raw * v1, axis=1) / np.linalg.norm(raw, axis=1)
    check("--no-normalize", rc == 0 and np.max(np.abs(np.linalg.norm(raw, axis=1) - 1)) > 1e-3 and np.max(cosd) < 1e-5)

    # pooling override gives a different vector
    rc, out, _ = run("embed", "--model", MODEL, "--input", inp, "--pooling", "mean", "--quiet")
    vm = np.array([r["embedding"] for r in jsonl(out)])
    check("--pooling mean differs from cls", rc == 0 and np.max(1 - np.sum(vm * v1, axis=1)) > 1e-4)

    # npy and f32 formats hold the same vectors, with a meta sidecar
    npy = path("out.npy")
    rc, _, err = run("embed", "--model", MODEL, "--input", inp, "--output", npy, "--format", "npy", "--quiet")
    arr = np.load(npy) if rc == 0 else None
    meta = jsonl(open(npy + ".meta.jsonl", "rb").read()) if rc == 0 else []
    check("npy matches jsonl", arr is not None and arr.shape == (6, 384) and arr.dtype == np.float32 and np.allclose(arr, v1, atol=1e-6), (rc, err))
    check("npy meta sidecar", [m["id"] for m in meta] == ["a", 7, None, {"k": [1]}, 4, "z"] and meta[3]["truncated"] is True)
    f32 = path("out.f32")
    rc, _, _ = run("embed", "--model", MODEL, "--input", inp, "--output", f32, "--format", "f32", "--quiet")
    raw32 = np.fromfile(f32, dtype="<f4").reshape(-1, 384) if rc == 0 else None
    check("f32 matches jsonl", raw32 is not None and raw32.shape == (6, 384) and np.allclose(raw32, v1, atol=1e-6))
    rc, _, err = run("embed", "--model", MODEL, "--input", inp, "--format", "npy", "--quiet")
    check("npy to stdout refused -> exit 2", rc == 2 and "npy" in err, (rc, err))
    rc, _, err = run("embed", "--model", MODEL, "--input", inp, "--output", os.path.join(TMP, "no", "such", "dir.jsonl"), "--quiet")
    check("unwritable output -> exit 2", rc == 2 and "output" in err, (rc, err))
    rc, _, err = run("embed", "--model", MODEL, "--input", os.path.join(TMP, "missing.jsonl"), "--quiet")
    check("missing input -> exit 2", rc == 2 and "input" in err, (rc, err))

    # bad lines fail alone, in place; failed npy rows are NaN
    bad = (b'{"id":1,"text":"fine"}\n'
           b'{"id":2,"text":"broken\n'
           b'{"id":3}\n'
           b'{"id":4,"text":42}\n'
           b'[1,2,3]\n'
           b'{"id":6,"text":"lone \\ud800 surrogate"}\n'
           b'{"id":7,"text":"nul \\u0000 inside"}\n'
           b'{"id":8,"text":"dup","text":"keys"}\n'
           b'{"id":9,"text":"last"}\n')
    badp = path("bad.jsonl", bad)
    rc, out, err = run("embed", "--model", MODEL, "--input", badp, "--quiet")
    recs = jsonl(out)
    ok_ids = [r["id"] for r in recs if "embedding" in r]
    err_ids = [r["id"] for r in recs if "error" in r]
    # ids of lines that do not parse are their line numbers (1, 4 and 7: duplicate keys are refused)
    check("bad JSONL lines -> per-item errors in place, exit 3",
          rc == 3 and len(recs) == 9 and ok_ids == [1, 6, 7, 9] and err_ids == [1, 3, 4, 4, 7], (rc, ok_ids, err_ids))
    check("errors name the problem", any("invalid JSON" in r.get("error", "") for r in recs)
          and any("text" in r.get("error", "") for r in recs), recs)
    rc, _, _ = run("embed", "--model", MODEL, "--input", badp, "--output", npy, "--format", "npy", "--quiet")
    arr = np.load(npy)
    check("failed rows are NaN in npy", arr.shape == (9, 384) and np.isnan(arr[1]).all() and not np.isnan(arr[0]).any())

    # plain lines, including invalid UTF-8 which fails alone with its byte offset
    lines = b"first line\n\nthird \xff\xfe bad\nfourth\r\n"
    rc, out, err = run("embed", "--model", MODEL, "--input", path("lines.txt", lines), "--quiet")
    recs = jsonl(out)
    check("plain lines: one record per line incl. blank", rc == 3 and [r["id"] for r in recs] == [0, 1, 2, 3], (rc, recs))
    check("invalid UTF-8 -> per-item error with offset", "invalid UTF-8 at byte 6" in recs[2].get("error", ""), recs[2] if len(recs) > 2 else recs)
    check("CRLF stripped", recs[3].get("tokens") == recs[0].get("tokens") - 1 if len(recs) == 4 else False)
    rc, out, _ = run("embed", "--model", MODEL, "--input", "-", "--quiet", stdin=b"from stdin\n")
    check("stdin input", rc == 0 and len(jsonl(out)) == 1)
    rc, out, _ = run("embed", "--model", MODEL, "--input", "-", "--quiet", stdin=b"")
    check("empty input -> no records, exit 0", rc == 0 and out == b"")

    # tokenize agrees with the committed HF fixture ids
    fix = os.path.join(os.environ["EMBD_SOURCE_DIR"], "tests", "fixtures", "tokens_bge-small-en-v1.5.jsonl")
    if os.path.exists(fix):
        rows = [json.loads(l) for l in open(fix, encoding="utf-8")][:80]
        src = "".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows)
        rc, out, _ = run("tokenize", "--model", MODEL, "--input", path("tok.jsonl", src))
        got = jsonl(out)
        check("tokenize == Hugging Face ids", rc == 0 and [g["ids"] for g in got] == [r["ids"] for r in rows])

    # devices: a bad or absent device is a one-line exit 2 (exit 1 for bench's usage), never a crash;
    # the CPU and an injected GPU out-of-memory (everything falls back to the CPU) give the same vectors
    texts = path("dev.txt", "hello world\nnumpy arrays\n" + "a longer line of text " * 20 + "\n")
    for dev in ("tpu", "cuda:99", "cuda:x"):
        for cmd in ("embed", "rerank", "bench"):
            extra = ("--query", "q") if cmd == "rerank" else ()
            rc, _, err = run(cmd, "--model", MODEL, "--device", dev, "--input" if cmd == "embed" else "--docs" if
                             cmd == "rerank" else "--reps", texts if cmd != "bench" else "1", *extra)
            check(f"{cmd} --device {dev} -> exit 2", rc == 2 and len(err.strip().splitlines()) == 1
                  and "device" in err, (rc, err))
    rc, cpu, err = run("embed", "--model", MODEL, "--device", "cpu", "--input", texts, "--quiet")
    check("embed --device cpu", rc == 0 and len(jsonl(cpu)) == 3, (rc, err))
    env = dict(os.environ, EMBD_FAULT_ALLOC_BYTES="1")
    p = subprocess.run([BIN, "embed", "--model", MODEL, "--input", texts, "--quiet"], capture_output=True, env=env,
                       timeout=300)
    a = np.array([r["embedding"] for r in jsonl(cpu)])
    b = np.array([r["embedding"] for r in jsonl(p.stdout)]) if p.returncode == 0 else np.zeros((0,))
    warned = p.stderr.decode().count("running it on the CPU")
    check("injected device out-of-memory -> CPU fallback, same vectors", p.returncode == 0 and b.shape == a.shape
          and float(np.min(np.sum(a * b, axis=1))) > 0.9999 and warned == 3, (p.returncode, warned, p.stderr[-300:]))
    jp = path("bench.json")
    rc, out, err = run("bench", "--model", MODEL, "--device", "cpu", "--batches", "1,3", "--seqs", "8,40", "--reps", "2",
                       "--latency", "5", "--threads", "2", "--json", jp)
    bj = json.load(open(jp)) if rc == 0 else {}
    runs = bj.get("runs", [])
    check("bench: every shape timed, latency quantiles ordered", rc == 0 and len(runs) == 4
          and all(r["tok_per_s"] > 0 and abs(r["tok_per_s"] - r["seq_per_s"] * r["seq"]) < 1e-3 * r["tok_per_s"] for r in runs)
          and 0 < bj["latency"]["p50_s"] <= bj["latency"]["p99_s"], (rc, err, bj))

    print(f"cli: {results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


main()
