#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang + ASan + UBSan) in build-fuzz/ and runs each for
# SECONDS_PER_TARGET seconds, one at a time, on a scratch copy of its seed corpus fuzz/corpus/<target>/
# (the committed corpus is never written). Inputs in fuzz/regressions/<target>/ are replayed first.
#   scripts/fuzz.sh [SECONDS_PER_TARGET (default 30)]
# A crash, leak, timeout (-timeout=10) or out-of-memory (-rss_limit_mb=2048) fails the target; its
# reproducer is kept in build-fuzz/fuzz-run/<target>/ (rerun: build-fuzz/fuzz/<target> <file>).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
JOBS=${JOBS:-$(nproc)}
B=build-fuzz
TARGETS=(fuzz_tokenizer fuzz_tokenizer_ugm fuzz_tokenizer_bpe fuzz_jsonfix fuzz_tokenizer_json fuzz_gguf_model fuzz_reader_line fuzz_api_request
         fuzz_safetensors fuzz_hf_tokenizer fuzz_auth fuzz_job_chunk fuzz_collections fuzz_enrich fuzz_worker_proto fuzz_image fuzz_clip_gguf)
declare -A DICT=([fuzz_jsonfix]=json [fuzz_tokenizer_json]=json [fuzz_reader_line]=json [fuzz_gguf_model]=gguf [fuzz_clip_gguf]=gguf [fuzz_api_request]=json [fuzz_safetensors]=json [fuzz_hf_tokenizer]=json [fuzz_auth]=auth [fuzz_job_chunk]=json [fuzz_collections]=json [fuzz_enrich]=json)

# Debug: nothing defines NDEBUG; fuzz/CMakeLists.txt adds -O1 -g and the sanitizers.
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DEMBD_FUZZ=ON >/dev/null
cmake --build $B -j "$JOBS" --target "${TARGETS[@]}"

export ASAN_OPTIONS=detect_leaks=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "== fuzz: ${#TARGETS[@]} libFuzzer targets, ${SECS}s each"
pass=0 fail=0
for t in "${TARGETS[@]}"; do
  bin=$B/fuzz/$t work=$B/fuzz-run/$t
  rm -rf "$work"; mkdir -p "$work/corpus"
  cp fuzz/corpus/$t/* "$work/corpus/"
  ok=1
  if compgen -G "fuzz/regressions/$t/*" >/dev/null; then
    if ! "$bin" -rss_limit_mb=2048 -timeout=10 fuzz/regressions/$t/* >"$work/regressions.log" 2>&1; then
      ok=0; echo "$t: FAILED on a regression input; log: $work/regressions.log"; tail -30 "$work/regressions.log"
    fi
  fi
  opts=(-max_total_time="$SECS" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10
        -print_final_stats=1 -artifact_prefix="$work/")
  [ -n "${DICT[$t]:-}" ] && opts+=(-dict=fuzz/dict/${DICT[$t]}.dict)
  if [ $ok = 1 ]; then
    if "$bin" "${opts[@]}" "$work/corpus" >"$work/fuzz.log" 2>&1; then
      execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log")
      rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/fuzz.log")
      cov=$(grep -o 'cov: [0-9]*' "$work/fuzz.log" | tail -1)
      echo "$t: ok, ${execs:-?} executions (${rate:-?}/s), $cov, corpus $(ls fuzz/corpus/$t | wc -l) -> $(ls "$work/corpus" | wc -l)"
    else
      ok=0
      echo "$t: FAILED; log: $work/fuzz.log"
      grep -A40 -m1 -E '^==[0-9]+==|runtime error|fuzz invariant failed|^SUMMARY' "$work/fuzz.log" | head -60 || tail -40 "$work/fuzz.log"
      for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* "$work"/slow-unit-*; do
        [ -e "$a" ] && echo "$t: reproducer $a (rerun: $bin $a)"
      done
    fi
  fi
  if [ $ok = 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
echo "fuzz: $pass passed, $fail failed"
[ $fail = 0 ]
