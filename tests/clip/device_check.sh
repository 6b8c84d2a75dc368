#!/usr/bin/env bash
# CLIP on a GPU machine, in one bounded run:
#   tests/clip/device_check.sh BUNDLE.tar.xz TOKENIZER_DIR OUTDIR
# BUNDLE: bench/gpu/pack.sh of a CUDA build (cmake -DEMBD_CUDA=ON); TOKENIZER_DIR: the output of
# tests/clip/make_clip_tokenizer.py (saves its ~30 s). Steps:
#   1. clip.test_clip with EMBD_DEVICE=cuda:0 (same numpy reference and thresholds as on the CPU)
#   2. embd clip-embed --bench on openai/clip-vit-base-patch32 shapes (f16, q8_0) on cuda:0 and on
#      the machine's CPU
set -u
BUNDLE=$1 TOK=$2 OUTDIR=$3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=/tmp/embd-clip-gpu
PY=${PYTHON:-python3}
rm -rf "$W" && mkdir -p "$W" "$OUTDIR" && tar -xJf "$BUNDLE" -C "$W" || exit 1
cublas=$($PY -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null)
cudart=$($PY -c 'import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH="$W/lib:/usr/local/cuda/lib64:${cublas:-}:${cudart:-}:${LD_LIBRARY_PATH:-}"
export EMBD_SHARED_DIR=$W/shared GGUF_PY_DIR=$W/gguf-py PYTHONUNBUFFERED=1 EMBD_BIN=$W/embd
S="$OUTDIR/summary.txt"; : >"$S"
say() { echo "$*" | tee -a "$S"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$S"
ldd "$W/embd" | grep -i "not found" && say "MISSING LIBRARIES" && exit 1

echo "=== 1. test_clip on cuda:0 ($(date +%T))"
T=$W/tmp; mkdir -p "$T/clip"
h=$($PY -c "import hashlib; print(hashlib.sha1(open('$ROOT/tests/clip/make_clip_tokenizer.py','rb').read()).hexdigest()[:12])")
cp -r "$TOK" "$T/clip/tok-$h"
EMBD_DEVICE=cuda:0 EMBD_TEST_TMP=$T $PY "$ROOT/tests/clip/test_clip.py" >"$OUTDIR/test_clip.log" 2>&1
say "test_clip on cuda:0: exit $? ($(tail -1 "$OUTDIR/test_clip.log"))"
grep FAIL "$OUTDIR/test_clip.log" | head -20 | tee -a "$S"

echo "=== 2. bench ($(date +%T))"
$PY "$ROOT/tests/clip/gen_hf_clip.py" real "$T/real" --seed 3 --tokenizer-dir "$TOK"
for q in f16 q8_0; do
  "$W/embd" convert "$T/real" "$T/real-$q.gguf" --type $q --quiet || say "convert $q failed"
  for dev in cuda:0 cpu; do
    for b in 16 64; do
      r=$("$W/embd" clip-embed --model "$T/real-$q.gguf" --device $dev --bench --batch $b 2>&1)
      say "bench $q $dev batch $b: $r"
    done
  done
done
echo "=== done ($(date +%T))"
cat "$S"
