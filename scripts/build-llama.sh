#!/usr/bin/env bash
# Fetches llama.cpp from the pinned npm package node-llama-cpp (its llama/gitRelease.bundle),
# verifies the commit, and builds ggml + llama as static libraries into a cache outside the
# source tree. Prints the install prefix on stdout. A second run with the same inputs is a no-op.
#   scripts/build-llama.sh            static libraries (what embd links)
#   scripts/build-llama.sh --tools    also llama-embedding and llama-server (benchmarks)
set -euo pipefail
NLC_VERSION=3.22.1
LLAMA_COMMIT=de3ff815ea7d559ee917f063901b8986f038abc6
CACHE=${EMBD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/embd}
JOBS=${JOBS:-$(nproc)}
TOOLS=0; [ "${1:-}" = "--tools" ] && TOOLS=1

# -march=native objects must not be reused on a CPU with other features: key the build by them.
CPUKEY=$( (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m) | sha256sum | cut -c1-10)
SRC=$CACHE/llama.cpp-$LLAMA_COMMIT/src
BUILD=$CACHE/llama.cpp-$LLAMA_COMMIT/build-$CPUKEY
PREFIX=$CACHE/llama.cpp-$LLAMA_COMMIT/install-$CPUKEY
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

stamp=$PREFIX/.embd-built
if [ ! -f "$stamp" ] || { [ $TOOLS = 1 ] && [ ! -x "$BUILD/bin/llama-server" ]; }; then
  log "building llama.cpp $LLAMA_COMMIT (static, native CPU) in $BUILD"
  cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DGGML_NATIVE=ON -DGGML_OPENMP=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=$([ $TOOLS = 1 ] && echo ON || echo OFF) \
    -DLLAMA_BUILD_TOOLS=$([ $TOOLS = 1 ] && echo ON || echo OFF) \
    -DLLAMA_BUILD_SERVER=$([ $TOOLS = 1 ] && echo ON || echo OFF) \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DCMAKE_INSTALL_PREFIX="$PREFIX" >"$BUILD.cmake.log" 2>&1 \
    || { cat "$BUILD.cmake.log" >&2; exit 1; }
  targets=(--target llama ggml)
  [ $TOOLS = 1 ] && targets+=(llama-embedding llama-server)
  cmake --build "$BUILD" -j "$JOBS" "${targets[@]}" >"$BUILD.build.log" 2>&1 \
    || { tail -50 "$BUILD.build.log" >&2; exit 1; }
  cmake --install "$BUILD" --component Unspecified >/dev/null 2>&1 || cmake --install "$BUILD" >/dev/null
  touch "$stamp"
fi
echo "$PREFIX"
