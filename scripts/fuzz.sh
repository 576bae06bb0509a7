#!/usr/bin/env bash
# Build the libFuzzer harness cpp/fuzz/fuzz_gguf.cpp (clang, ASan + UBSan) into build/fuzz and run it
# for SECONDS (default 60) under nice -n 19, seeded with small valid GGUF files from
# tests/model_factory.py and with the crash-regression files of tests/regressions/.
#   scripts/fuzz.sh [SECONDS] [extra libFuzzer flags...]
# Env: FUZZ_JOBS (parallel fuzzing processes, default 1), CXX (default clang++).
# New crashes are written to build/fuzz/artifacts/; copy each to tests/regressions/ (a test loads
# every file there). Prints executions, coverage (cov/ft) and the number of crashes at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-60}
shift || true
OUT=build/fuzz
CXX=${CXX:-clang++}
mkdir -p "$OUT/obj" "$OUT/corpus" "$OUT/artifacts"

FLAGS=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
       -fno-sanitize-recover=undefined -Icpp/include -DEDGELLAMA_X86=1)
objs=()
for src in $(find cpp -name '*.cpp' -not -path 'cpp/fuzz/*' -not -path 'cpp/tests/*' | sort); do
  extra=()
  case "$src" in
    */kernels/avx2/*) extra=(-mavx2 -mfma -mf16c) ;;
    */kernels/avx512/*) extra=(-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx2 -mfma -mf16c) ;;
    */kernels/neon/*) continue ;;
    */kernels/avx_vnni/*) continue ;;  # an optional tier (EDGELLAMA_HAVE_AVX_VNNI unset: dispatch leaves it out)
  esac
  obj="$OUT/obj/$(echo "$src" | tr '/' '_').o"
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find cpp/include -newer "$obj" -name '*.h' | head -1)" ]; then
    nice -n 19 "$CXX" "${FLAGS[@]}" "${extra[@]}" -c "$src" -o "$obj"
  fi
  objs+=("$obj")
done
nice -n 19 "$CXX" "${FLAGS[@]}" -fsanitize=fuzzer cpp/fuzz/fuzz_gguf.cpp "${objs[@]}" -lpthread -o "$OUT/fuzz_gguf"

# Seeds: small valid models (SentencePiece and BPE vocabularies, float and quantized weights).
if [ ! -f "$OUT/seeds/.done" ]; then
  mkdir -p "$OUT/seeds"
  PYTHONPATH=tests:src python3 - "$OUT/seeds" <<'PY'
import sys, os
import model_factory as mf
d = sys.argv[1]
mf.make_model(os.path.join(d, "f32.gguf"), n_layer=1, n_embd=16, n_head=2, n_head_kv=1, n_ff=32, n_vocab=32, n_ctx_train=64)
mf.make_model(os.path.join(d, "q8.gguf"), n_layer=1, n_embd=32, n_head=2, n_head_kv=2, n_ff=32, n_vocab=40, wtype="Q8_0", tied=True)
mf.make_model(os.path.join(d, "qwen2.gguf"), arch="qwen2", n_layer=1, n_embd=16, n_head=2, n_head_kv=1, n_ff=16, n_vocab=24, wtype="F16")
mf.make_model(os.path.join(d, "bytes.gguf"), n_layer=1, n_embd=32, n_head=2, n_head_kv=2, n_ff=32, n_vocab=300, wtype="Q4_0", embd_type="F16")
def bpe(w):
    toks = ["a", "b", "c", "ab", "abc", "\u0120", "\u0120a", "<|endoftext|>", "<|im_start|>"]
    w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre("smollm")
    w.add_token_list(toks); w.add_token_types([1] * 7 + [3, 3])
    w.add_token_merges(["a b", "ab c", "\u0120 a"])
    w.add_bos_token_id(7); w.add_eos_token_id(7)
mf.make_model(os.path.join(d, "bpe.gguf"), n_layer=1, n_embd=16, n_head=2, n_head_kv=1, n_ff=16, n_vocab=9, tokenizer=False, extra_kv=bpe)
open(os.path.join(d, ".done"), "w").close()
PY
fi
seeds=("$OUT/seeds")
[ -d tests/regressions ] && seeds+=(tests/regressions)

echo "fuzzing for ${SECONDS_TO_RUN}s (jobs ${FUZZ_JOBS:-1}) ..."
log="$OUT/fuzz.log"
set +e
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
nice -n 19 "$OUT/fuzz_gguf" "$OUT/corpus" "${seeds[@]}" -max_total_time="$SECONDS_TO_RUN" -max_len=65536 \
  -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/" \
  ${FUZZ_JOBS:+-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS} "$@" >"$log" 2>&1
rc=$?
set -e
grep -E '^#[0-9]+.*(pulse|DONE|NEW)' "$log" | tail -3 || true
grep -E 'stat::number_of_executed_units|stat::peak_rss_mb|ERROR|SUMMARY|Test unit written' "$log" || true
echo "crash files: $(ls "$OUT/artifacts" | wc -l) in $OUT/artifacts; exit status $rc; full log $log"
exit $rc
