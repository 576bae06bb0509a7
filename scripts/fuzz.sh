#!/usr/bin/env bash
# Build and run the libFuzzer harnesses (clang, -fsanitize=fuzzer,address,undefined), nice'd.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     TARGET: gguf (default), tokenize, all
#
#   SECONDS      total run time per target (default 60)
#   FUZZ_JOBS    parallel libFuzzer workers per target (default 1)
#   FUZZ_DIR     work dir (default build/fuzz): core library, binaries, corpus/<target>, crashes/
#   CXX          clang++ (default: clang++, else the newest clang++-NN on PATH)
#
# Prints, per target: executions, exec/s, coverage (cov / ft from libFuzzer's last line), corpus
# size and the crash / leak / timeout files found. A finding is saved as
# $FUZZ_DIR/crashes/<target>/crash-* ; copy it to tests/regressions/ (tests/test_crafted_regressions.py
# loads every file there) once fixed. Exit status 1 when a run found something.
#
# Needs: clang and its compiler-rt (Debian: apt-get install clang libclang-rt-14-dev), cmake, ninja,
# python3 with the gguf package (seed files are written by tests/crafted_files.py).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(gguf)
[ "${TARGETS[0]}" = all ] && TARGETS=(gguf tokenize)
FUZZ_DIR=${FUZZ_DIR:-build/fuzz}
JOBS=${JOBS:-1}

if [ -z "${CXX:-}" ]; then
  CXX=$(command -v clang++ || ls /usr/bin/clang++-* 2>/dev/null | sort -V | tail -1 || true)
fi
if [ -z "$CXX" ] || ! "$CXX" --version 2>/dev/null | grep -q clang; then
  echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS_CORE="-O1 -g $SAN -fsanitize=fuzzer-no-link"
t0=$(date +%s)

# 1. the core library, instrumented (CMake target edgellama_core only; no Python needed)
if [ ! -f "$FUZZ_DIR/core/build.ninja" ]; then
  cmake -S . -B "$FUZZ_DIR/core" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_COMPILER="$CXX" \
    -DCMAKE_CXX_FLAGS="$CFLAGS_CORE" -Dpybind11_DIR=/nonexistent >/dev/null
fi
nice -n 19 cmake --build "$FUZZ_DIR/core" --target edgellama_core -j "$JOBS" | grep -v '^\[' || true

# 2. the harnesses
for t in "${TARGETS[@]}"; do
  src=cpp/fuzz/fuzz_$t.cpp
  [ -f "$src" ] || { echo "fuzz.sh: no harness $src" >&2; exit 2; }
  bin="$FUZZ_DIR/fuzz_$t"
  if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ] || [ "$FUZZ_DIR/core/libedgellama_core.a" -nt "$bin" ]; then
    nice -n 19 "$CXX" -std=c++17 -O1 -g $SAN -fsanitize=fuzzer -Icpp/include "$src" \
      "$FUZZ_DIR/core/libedgellama_core.a" -lpthread -o "$bin"
  fi
done
t_build=$(( $(date +%s) - t0 ))

# 3. seeds: small valid files from the crafted-file generator (+ the regression files)
SEEDS="$FUZZ_DIR/seeds"
rm -rf "$SEEDS" && mkdir -p "$SEEDS"
python3 tests/crafted_files.py --seeds "$SEEDS" >/dev/null

status=0
for t in "${TARGETS[@]}"; do
  corpus="$FUZZ_DIR/corpus/$t"
  crashes="$FUZZ_DIR/crashes/$t"
  mkdir -p "$corpus" "$crashes"
  log="$FUZZ_DIR/fuzz_$t.log"
  extra=()
  case $t in
    gguf)
      seed_dirs=("$SEEDS/gguf")
      [ -d tests/regressions ] && seed_dirs+=(tests/regressions)
      extra=(-max_len=16384 -dict=cpp/fuzz/gguf.dict)
      ;;
    tokenize)
      seed_dirs=("$SEEDS/text")
      vocabs="$ROOT/$SEEDS/vocab/spm.gguf:$ROOT/$SEEDS/vocab/bpe.gguf"
      # the real SmolLM2 vocabulary (49k byte-level BPE tokens) when shared/models is around
      real=$(python3 -c 'import sys; sys.path.insert(0, "tests"); import crafted_files as c; p = c.shared_model("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"); print(p or "")')
      [ -n "$real" ] && vocabs="$vocabs:$real"
      [ -f "$SEEDS/vocab/llama2.gguf" ] && vocabs="$vocabs:$ROOT/$SEEDS/vocab/llama2.gguf"
      export EDGELLAMA_FUZZ_VOCABS="$vocabs"
      extra=(-max_len=4096)
      ;;
  esac
  echo "== fuzz_$t: ${SECONDS_PER_TARGET}s, $JOBS worker(s), corpus $corpus"
  set +e
  # -rss_limit_mb / -malloc_limit_mb: a crafted count that makes us allocate more than 2 GiB is a finding
  (cd "$crashes" && nice -n 19 "$ROOT/$FUZZ_DIR/fuzz_$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
      -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 -jobs="$JOBS" -workers="$JOBS" \
      "${extra[@]/#-dict=/-dict=$ROOT/}" "$ROOT/$corpus" "${seed_dirs[@]/#/$ROOT/}") >"$log" 2>&1
  rc=$?
  set -e
  [ "$JOBS" -gt 1 ] && cat "$crashes"/fuzz-*.log >>"$log" 2>/dev/null && rm -f "$crashes"/fuzz-*.log
  execs=$(grep -h '^stat::number_of_executed_units' "$log" | awk '{s+=$2} END {print s+0}' || true)
  last=$(grep -hE '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
  eps=$(grep -h '^stat::average_exec_per_sec' "$log" | awk '{s+=$2} END {print s+0}' || true)
  found=$(ls "$crashes" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' || true)
  echo "   executions: $execs   exec/s: $eps   cov: ${cov:-?}   ft: ${ft:-?}   corpus: $(ls "$corpus" | wc -l) files"
  if [ -n "$found" ] || [ $rc -ne 0 ]; then
    status=1
    echo "   FINDINGS (libFuzzer exit $rc; log $log):"
    for c in $found; do echo "     $crashes/$c"; done
    grep -hE 'ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error|SUMMARY|fuzz_tokenize:|round trip' "$log" | sort | uniq -c | head -20 || true
  else
    echo "   findings: none"
  fi
done
echo "build ${t_build}s, total $(( $(date +%s) - t0 ))s"
exit $status
