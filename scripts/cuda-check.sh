#!/usr/bin/env bash
# Compile check of the GPU build, for machines with nvcc and no GPU (CI): ggml's CUDA backend
# (scripts/build-llama.sh --cuda, cached like the CPU build) and embd with -DEMBD_CUDA=ON must
# compile and link, so the CUDA build never rots. Where the NVIDIA driver is present the binary is
# also started: `--device cpu` must work and a missing GPU must be a one-line error.
# Skipped without nvcc. Bounded: the first (uncached) ggml CUDA build takes about 35 minutes on 2
# cores; EMBD_CUDA_CHECK_MINUTES (default 45) caps it, and a build cut off by that cap is reported
# (its objects stay in the cache for the next run), not failed. A compile error fails.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH
  else echo "cuda-check: no nvcc, skipped"; exit 0; fi
fi
MIN=${EMBD_CUDA_CHECK_MINUTES:-45}
echo "== CUDA build check ($(nvcc --version | tail -1); at most $MIN min for ggml)"
set +e
prefix=$(timeout --signal=TERM "${MIN}m" bash scripts/build-llama.sh --cuda)
rc=$?
set -e
if [ $rc = 124 ]; then
  echo "cuda-check: ggml's CUDA backend still compiling after $MIN min: not finished, no error so far (cached for the next run)"
  exit 0
fi
[ $rc = 0 ] || { echo "cuda-check: ggml CUDA build FAILED"; exit 1; }
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DEMBD_CUDA=ON -DLLAMA_PREFIX="$prefix" >/dev/null
cmake --build build-cuda -j "${JOBS:-$(nproc)}" --target embd
ldd build-cuda/embd | grep -q libcublas || { echo "cuda-check: embd is not linked with cuBLAS"; exit 1; }
if ldd build-cuda/embd | grep -q "libcuda.so.1 => not found"; then
  echo "cuda-check: compiled and linked; no NVIDIA driver here, so the binary is not started"
  exit 0
fi
m=$(mktemp -d)/m.gguf
/usr/bin/python3 tools/gen_random_model.py --out "$m" --shape tiny --type f16 >/dev/null
echo hello | build-cuda/embd embed --model "$m" --device cpu --quiet >/dev/null
if ! nvidia-smi -L >/dev/null 2>&1; then
  set +e
  err=$(echo hello | build-cuda/embd embed --model "$m" --device cuda:0 --quiet 2>&1 >/dev/null)
  rc=$?
  set -e
  [ $rc = 2 ] && [ "$(echo "$err" | wc -l)" = 1 ] || { echo "cuda-check: --device cuda:0 without a GPU: rc=$rc $err"; exit 1; }
fi
echo "cuda-check: compiled, linked and started"
