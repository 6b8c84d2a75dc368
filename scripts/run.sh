#!/usr/bin/env bash
# Sets up embd (packages, llama.cpp, build) and runs it on the default model.
#   scripts/run.sh                       serve the HTTP API on http://127.0.0.1:8080 (Ctrl-C stops;
#                                        loopback without keys: --insecure is added, see README Security)
#   scripts/run.sh embed --input F.jsonl any embd subcommand; --model defaults to $EMBD_MODEL
# Model: $EMBD_MODEL, else ../shared/models/bge-small-random/bge-small-random-q8_0.gguf when present,
# else `embd serve` fetches its pinned default model into ~/.cache/embd (sha256-checked).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build-llama.sh >/dev/null
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target embd >/dev/null
MODEL=${EMBD_MODEL:-../shared/models/bge-small-random/bge-small-random-q8_0.gguf}
[ $# -eq 0 ] && set -- serve
cmd=$1; shift
has_model=0
for a in "$@"; do case $a in -m|--model|--model=*) has_model=1 ;; esac; done
if [ $has_model = 0 ] && [ "$cmd" != version ] && [ "$cmd" != pull ]; then
  if [ -f "$MODEL" ]; then
    set -- --model "$MODEL" "$@"
  elif [ "$cmd" != serve ]; then
    echo "run.sh: no model at $MODEL; set EMBD_MODEL=/path/to/model.gguf" >&2
    exit 2
  fi
fi
# serve: without auth flags, --insecure is added only when binding loopback (the default host);
# any other address needs --api-keys-file / --hmac-secret-file (or an explicit --insecure).
if [ "$cmd" = serve ]; then
  host=${EMBD_HOST:-127.0.0.1} auth=0 prev=
  for a in "$@"; do
    case $a in
      --host=*) host=${a#--host=} ;;
      --api-keys-file*|--hmac-secret-file*|--insecure) auth=1 ;;
    esac
    [ "$prev" = --host ] && host=$a
    prev=$a
  done
  [ -n "${EMBD_API_KEYS_FILE:-}${EMBD_HMAC_SECRET_FILE:-}${EMBD_INSECURE:-}" ] && auth=1
  case $host in 127.*|localhost|::1) [ $auth = 0 ] && set -- --insecure "$@" ;; esac
fi
exec build/embd "$cmd" "$@"
