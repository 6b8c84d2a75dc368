#!/usr/bin/env bash
# Sets up everything from scratch and runs every test: this is the README's test command and what
# .ci/run executes. Two builds: release (gcc) and ASan+UBSan (clang); ctest runs all tests on both
# (unit tests, tokenizer parity, fidelity against the numpy reference, CLI behaviour).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

bash scripts/install-deps.sh
bash scripts/build-llama.sh >/dev/null
# llama-server (same llama.cpp source) serves the tiny chat model of tests/collections/test_enrich.py;
# a cold build adds about 10 minutes on 2 cores, a cached one prints its bin dir at once
EMBD_LLAMA_BIN=$(bash scripts/build-llama.sh --tools)
export EMBD_LLAMA_BIN

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=gcc >/dev/null
cmake --build build -j "$JOBS"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEMBD_SANITIZE=ON -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build build-asan -j "$JOBS"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "== tests: ASan + UBSan build (clang)"
ctest --test-dir build-asan --output-on-failure -j "$JOBS"
echo "== tests: release build (gcc)"
ctest --test-dir build --output-on-failure -j "$JOBS"
bash scripts/fuzz.sh "${EMBD_FUZZ_SECONDS:-20}"
# The GPU build (issue 9) compiles and links where nvcc exists; EMBD_CUDA_CHECK=0 skips it.
[ "${EMBD_CUDA_CHECK:-1}" = 0 ] || bash scripts/cuda-check.sh
