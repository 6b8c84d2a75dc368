#!/usr/bin/env bash
# Fetches llama.cpp from the pinned npm package node-llama-cpp (its llama/gitRelease.bundle),
# verifies the commit, and builds ggml + llama as static libraries into a cache outside the
# source tree. Prints the install prefix on stdout. A second run with the same inputs is a no-op.
#   scripts/build-llama.sh            static libraries (what embd links)
#   scripts/build-llama.sh --tools    also llama-embedding and llama-server (benchmarks); prints their bin dir
#   scripts/build-llama.sh --cuda     static libraries with ggml's CUDA backend (needs nvcc; sm_90 SASS +
#                                     compute_90 PTX by default, EMBD_CUDA_ARCH overrides). The CPU code is
#                                     built for x86-64-v3 rather than -march=native, so the binary can be
#                                     built here and run on a GPU machine with another CPU.
set -euo pipefail
NLC_VERSION=3.22.1
LLAMA_COMMIT=de3ff815ea7d559ee917f063901b8986f038abc6
CACHE=${EMBD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/embd}
JOBS=${JOBS:-$(nproc)}
TOOLS=0; [ "${1:-}" = "--tools" ] && TOOLS=1
CUDA=0; [ "${1:-}" = "--cuda" ] && CUDA=1
CUDA_ARCH=${EMBD_CUDA_ARCH:-90}

# -march=native objects must not be reused on a CPU with other features: key the build by them.
CPUKEY=$( (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m) | sha256sum | cut -c1-10)
SRC=$CACHE/llama.cpp-$LLAMA_COMMIT/src
BUILD=$CACHE/llama.cpp-$LLAMA_COMMIT/build-$CPUKEY
PREFIX=$CACHE/llama.cpp-$LLAMA_COMMIT/install-$CPUKEY
if [ $CUDA = 1 ]; then
  BUILD=$CACHE/llama.cpp-$LLAMA_COMMIT/build-cuda$CUDA_ARCH
  PREFIX=$CACHE/llama.cpp-$LLAMA_COMMIT/install-cuda$CUDA_ARCH
fi
log() { echo "build-llama: $*" >&2; }

if [ ! -f "$SRC/.embd-verified" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  log "fetching node-llama-cpp@$NLC_VERSION from npm"
  (cd "$tmp" && npm pack --silent "node-llama-cpp@$NLC_VERSION" >/dev/null)
  tar -xzf "$tmp"/node-llama-cpp-$NLC_VERSION.tgz -C "$tmp" package/llama/gitRelease.bundle
  rm -rf "$SRC"; mkdir -p "$(dirname "$SRC")"
  git clone -q "$tmp/package/llama/gitRelease.bundle" "$SRC" 2>/dev/null
  got=$(git -C "$SRC" rev-parse HEAD)
  if [ "$got" != "$LLAMA_COMMIT" ]; then
    log "commit mismatch: bundle has $got, expected $LLAMA_COMMIT"; rm -rf "$SRC"; exit 1
  fi
  touch "$SRC/.embd-verified"
fi

# Libraries (what embd links) and the peer tools (benchmarks only) build in separate trees, so CI
# never compiles the server and the libraries' install holds nothing else.
stamp=$PREFIX/.embd-built
# CUDA: no flash-attention kernels (embd's graph uses the matmul attention on GPUs; they are most
# of the compile time), no NCCL (one GPU per server), cuBLAS/cudart linked as shared libraries.
CPU_FLAGS=(-DGGML_NATIVE=ON)
[ $CUDA = 1 ] && CPU_FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
  -DGGML_CUDA=ON -DGGML_CUDA_FA=OFF -DGGML_CUDA_NCCL=OFF "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH")
if [ ! -f "$stamp" ]; then
  log "building llama.cpp $LLAMA_COMMIT libraries (static, native CPU) in $BUILD"
  cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON "${CPU_FLAGS[@]}" -DGGML_OPENMP=ON \
    -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DCMAKE_INSTALL_PREFIX="$PREFIX" >"$BUILD.cmake.log" 2>&1 || { cat "$BUILD.cmake.log" >&2; exit 1; }
  # embd links ggml only; the CPU cache also keeps libllama (built before embd stopped using it)
  TARGETS=(llama ggml) INSTALL_DIR=$BUILD
  [ $CUDA = 1 ] && TARGETS=(ggml) INSTALL_DIR=$BUILD/ggml
  cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" >"$BUILD.build.log" 2>&1 \
    || { tail -50 "$BUILD.build.log" >&2; exit 1; }
  cmake --install "$INSTALL_DIR" >"$BUILD.install.log" 2>&1 || { cat "$BUILD.install.log" >&2; exit 1; }
  touch "$stamp"
fi
if [ $TOOLS = 1 ] && [ ! -x "$BUILD-tools/bin/llama-server" ]; then
  log "building llama-embedding and llama-server in $BUILD-tools"
  cmake -S "$SRC" -B "$BUILD-tools" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF >"$BUILD-tools.cmake.log" 2>&1 \
    || { cat "$BUILD-tools.cmake.log" >&2; exit 1; }
  cmake --build "$BUILD-tools" -j "$JOBS" --target llama-embedding llama-server >"$BUILD-tools.build.log" 2>&1 \
    || { tail -50 "$BUILD-tools.build.log" >&2; exit 1; }
fi
[ $TOOLS = 1 ] && echo "$BUILD-tools/bin" || echo "$PREFIX"
