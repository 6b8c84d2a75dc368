#!/usr/bin/env bash
# The GPU proof for embd (issue 9), in one bounded run on a machine with an NVIDIA GPU:
#   bench/gpu/device-check.sh BUNDLE.tar.xz OUTDIR
# BUNDLE comes from bench/gpu/pack.sh (a CUDA build of embd plus what the GPU image lacks). Steps:
#   1. the device is found; embd embed on cuda:0, on the CPU, and on cuda:0 with an injected
#      out-of-memory (every sequence falls back to the CPU) agree
#   2. fidelity on the GPU: tests/fidelity/test_fidelity.py, test_rerank.py and test_pooling.py
#      with EMBD_DEVICE=cuda:0 (numpy reference, same thresholds as on the CPU)
#   3. embd bench on cuda:0: bge-small-shaped f16 and q8_0, bge-m3-shaped f16, batch 1/32/256 x
#      seq 128/512, single-query p50/p99, in each EMBD_GPU_PREC mode; the same machine's CPU
#   4. embd serve on cuda:0 over HTTP (bench/bench_serve.py --only embd): throughput and latency
#   5. the server under a tiny GPU memory budget: every request answers, /metrics counts
# Writes logs and JSON to OUTDIR; prints a summary last.
set -u
BUNDLE=$1 OUTDIR=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=/tmp/embd-gpu
PY=${PYTHON:-python3}
rm -rf "$W" && mkdir -p "$W" "$OUTDIR" && tar -xJf "$BUNDLE" -C "$W" || exit 1
cublas=$($PY -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null)
cudart=$($PY -c 'import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH="$W/lib:/usr/local/cuda/lib64:${cublas:-}:${cudart:-}:${LD_LIBRARY_PATH:-}"
export EMBD_SHARED_DIR=$W/shared GGUF_PY_DIR=$W/gguf-py PYTHONUNBUFFERED=1
EMBD=$W/embd M=$W/shared/models/bge-small-random
# a dry run of this script on a machine without a GPU: EMBD_CHECK_DEVICE=cpu and smaller shapes
DEV=${EMBD_CHECK_DEVICE:-cuda:0} BATCHES=${EMBD_CHECK_BATCHES:-1,32,256} SEQS=${EMBD_CHECK_SEQS:-128,512}
CHUNKS=${EMBD_CHECK_CHUNKS:-2000} QUERIES=${EMBD_CHECK_QUERIES:-200}
S="$OUTDIR/summary.txt"; : >"$S"
say() { echo "$*" | tee -a "$S"; }
step() { echo; echo "=== $* ($(date +%T))"; }

step "0. machine"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader >"$OUTDIR/gpu.txt" 2>&1
nproc; ldd "$EMBD" | grep -i "not found" && say "MISSING LIBRARIES" && exit 1
say "gpu: $(cat "$OUTDIR/gpu.txt")"

step "1. models"
mkdir -p "$M"
gen() { $PY "$ROOT/tools/gen_random_model.py" "$@" >/dev/null; }
gen --out "$M/bge-small-random-f16.gguf" --shape bge-small --type f16 --seed 5 &
gen --out "$M/bge-small-random-q8_0.gguf" --shape bge-small --type q8_0 --seed 5 &
gen --out "$W/bge-m3-f16.gguf" --shape bge-m3 --type f16 --seed 6 &
wait
ls -la "$M" "$W"/*.gguf

step "2. device, CPU and injected OOM agree"
head -n 200 "$W/shared/corpus/numpy_chunks.jsonl" >"$W/texts.jsonl"
"$EMBD" embed --model "$M/bge-small-random-f16.gguf" --device $DEV --input "$W/texts.jsonl" --output "$W/gpu.jsonl" --quiet 2>"$OUTDIR/embed-gpu.err"
echo "gpu rc=$?"
"$EMBD" embed --model "$M/bge-small-random-f16.gguf" --device cpu --input "$W/texts.jsonl" --output "$W/cpu.jsonl" --quiet
EMBD_FAULT_ALLOC_BYTES=1 "$EMBD" embed --model "$M/bge-small-random-f16.gguf" --device $DEV --input "$W/texts.jsonl" \
  --output "$W/fb.jsonl" --quiet 2>"$OUTDIR/embed-fallback.err"
say "injected OOM: $(grep -c 'running it on the CPU' "$OUTDIR/embed-fallback.err") CPU fallbacks for 200 texts"
$PY - "$W" <<'EOF' | tee -a "$S"
import json, sys, numpy as np
w = sys.argv[1]
def load(n): return np.array([json.loads(l)["embedding"] for l in open(f"{w}/{n}.jsonl")])
c, g, f = load("cpu"), load("gpu"), load("fb")
mu = c.mean(0)
def cc(a, b): a, b = a - mu, b - mu; return np.sum(a*b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
print(f"cuda:0 vs cpu (f16 bge-small, 200 chunks): min cosine {np.min(np.sum(g*c,1)):.7f}, min centred {np.min(cc(g,c)):.7f}")
print(f"cuda:0 with every sequence fallen back to the CPU vs cpu: min cosine {np.min(np.sum(f*c,1)):.7f}")
EOF

step "3. fidelity on cuda:0"
EMBD_BIN=$EMBD EMBD_DEVICE=$DEV EMBD_FIDELITY_JOBS=$(nproc) EMBD_SOURCE_DIR=$ROOT \
  timeout 300 $PY "$ROOT/tests/fidelity/test_fidelity.py" >"$OUTDIR/fidelity.txt" 2>&1
say "fidelity rc=$? : $(tail -n 3 "$OUTDIR/fidelity.txt" | tr '\n' ' ')"
grep -E "^\s*(tiny|bge|shared)" "$OUTDIR/fidelity.txt" | tee -a "$S"
for t in test_rerank test_pooling; do
  EMBD_BIN=$EMBD EMBD_DEVICE=$DEV EMBD_SOURCE_DIR=$ROOT timeout 200 $PY "$ROOT/tests/fidelity/$t.py" \
    >"$OUTDIR/$t.txt" 2>&1
  say "$t rc=$? : $(tail -n 2 "$OUTDIR/$t.txt" | tr '\n' ' ')"
done

step "4. embd bench on cuda:0"
for mdl in "$M/bge-small-random-f16.gguf" "$M/bge-small-random-q8_0.gguf" "$W/bge-m3-f16.gguf"; do
  n=$(basename "$mdl" .gguf)
  timeout 240 "$EMBD" bench --model "$mdl" --device $DEV --batches $BATCHES --seqs $SEQS --reps 5 --latency $QUERIES \
    --json "$OUTDIR/bench-$n.json" 2>&1 | tee -a "$S"
done
for prec in tf32 fast; do
  for mdl in "$M/bge-small-random-f16.gguf" "$W/bge-m3-f16.gguf"; do
    say "EMBD_GPU_PREC=$prec:"
    EMBD_GPU_PREC=$prec timeout 120 "$EMBD" bench --model "$mdl" --device $DEV --batches 32,256 --seqs 128,512 \
      --reps 5 --latency 50 --json "$OUTDIR/bench-$prec-$(basename "$mdl" .gguf).json" 2>&1 | tee -a "$S"
  done
done
say "same machine, CPU ($(nproc) threads):"
timeout 120 "$EMBD" bench --model "$M/bge-small-random-q8_0.gguf" --device cpu --batches 32 --seqs 128 --reps 3 \
  --latency 50 --json "$OUTDIR/bench-cpu-q8_0.json" 2>&1 | tee -a "$S"

step "5. embd serve on cuda:0 (HTTP)"
timeout 300 $PY "$ROOT/bench/bench_serve.py" --only embd --embd "$EMBD" --no-build --embd-args "--device $DEV" \
  --model "$M/bge-small-random-q8_0.gguf" --chunks $CHUNKS --reps 1 --threads 4 --queries $QUERIES \
  --json "$OUTDIR/serve.json" >"$OUTDIR/serve.txt" 2>&1
say "serve rc=$?"; tail -n 12 "$OUTDIR/serve.txt" | tee -a "$S"

step "6. serve under a 1-byte GPU budget"
DEV=$DEV $PY - "$EMBD" "$M/bge-small-random-f16.gguf" <<'EOF' 2>&1 | tee -a "$S"
import json, os, subprocess, sys, time, urllib.request, re
embd, model = sys.argv[1:3]
env = dict(os.environ, EMBD_GPU_MEM_BYTES="1")
p = subprocess.Popen([embd, "serve", "--model", model, "--port", "18093", "--insecure", "--device", os.environ["DEV"]],
                     env=env, stderr=subprocess.PIPE, text=True)
def get(path, body=None):
    req = urllib.request.Request("http://127.0.0.1:18093" + path, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=60)
for _ in range(300):
    try:
        get("/health"); break
    except Exception:
        if p.poll() is not None:
            sys.exit("server exited: " + p.stderr.read()[-2000:])
        time.sleep(0.2)
r = json.load(get("/v1/embeddings", {"input": ["hello", "world " * 50, "x"]}))
m = get("/metrics").read().decode()
info = json.load(get("/info"))
keep = [l for l in m.splitlines() if re.match(r"embd_(gpu|device)|embd_model_info", l)]
print("budget 1 byte: 3 inputs ->", len(r["data"]), "vectors; device", info["device"], info["device_description"])
print("\n".join(keep))
p.terminate(); p.wait(30)
print("server stderr (tail):", "\n".join(p.stderr.read().splitlines()[-6:]))
EOF

echo; echo "=================== SUMMARY"; cat "$S"
