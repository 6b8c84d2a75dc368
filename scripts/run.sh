#!/usr/bin/env bash
# Sets up embd (packages, llama.cpp, build) and runs it on the default model.
#   scripts/run.sh                       embed ../shared/corpus/edge_cases.jsonl, vectors to stdout
#   scripts/run.sh embed --input F.jsonl any embd subcommand; --model defaults to $EMBD_MODEL
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build-llama.sh >/dev/null
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target embd >/dev/null
MODEL=${EMBD_MODEL:-../shared/models/bge-small-random/bge-small-random-q8_0.gguf}
if [ ! -f "$MODEL" ]; then
  echo "run.sh: no model at $MODEL; set EMBD_MODEL=/path/to/model.gguf" >&2
  exit 2
fi
[ $# -eq 0 ] && set -- embed --input ../shared/corpus/edge_cases.jsonl
cmd=$1; shift
has_model=0
for a in "$@"; do case $a in -m|--model|--model=*) has_model=1 ;; esac; done
[ $has_model = 0 ] && [ "$cmd" != version ] && set -- --model "$MODEL" "$@"
exec build/embd "$cmd" "$@"
