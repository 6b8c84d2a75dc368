#!/usr/bin/env bash
# Packs what bench/gpu/device-check.sh needs on a GPU machine that has the NVIDIA driver and the
# CUDA runtime but none of embd's Debian libraries: a CUDA build of embd (cmake -DEMBD_CUDA=ON),
# the shared libraries it links that are not glibc's, CUDA's or the C++ runtime's, llama.cpp's
# gguf-py (model generation), bge-small's tokenizer.json and a sample of the benchmark corpus.
#   bench/gpu/pack.sh BUILD_DIR OUT.tar.xz
set -euo pipefail
BUILD=$1 OUTF=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${EMBD_SHARED_DIR:-$ROOT/../shared}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lib" "$tmp/shared/models/bge-small-en-v1.5" "$tmp/shared/models/ms-marco-MiniLM-L-12-v2" "$tmp/shared/corpus"
strip -o "$tmp/embd" "$BUILD/embd"
ldd "$BUILD/embd" | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
  case $(basename "$lib") in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|ld-linux*|libstdc++*|libgcc_s*) ;;
    libcuda.so*|libcudart*|libcublas*) ;; # the driver's and the CUDA image's own
    *) cp -L "$lib" "$tmp/lib/" ;;
  esac
done
gguf=$(ls -d "${XDG_CACHE_HOME:-$HOME/.cache}"/embd/llama.cpp-*/src/gguf-py | tail -1)
cp -r "$gguf" "$tmp/gguf-py"
for m in bge-small-en-v1.5 ms-marco-MiniLM-L-12-v2; do cp "$SHARED/models/$m/tokenizer.json" "$tmp/shared/models/$m/"; done
head -n 3000 "$SHARED/corpus/numpy_chunks.jsonl" >"$tmp/shared/corpus/numpy_chunks.jsonl"
tar -C "$tmp" -cJf "$OUTF" .
ls -la "$OUTF" >&2
