#!/usr/bin/env bash
# IQ4_NL / IQ4_XS: edgellama vs llama.cpp on the same files (issue 17), in one command.
#   1. llama-quantize makes SRC-IQ4_NL.gguf and SRC-IQ4_XS.gguf from an F16 file (skipped when they
#      exist), so the files are llama.cpp's own;
#   2. benchmarks/quiet_run.sh runs edgellama and llama-bench interleaved on both (pp / tg at 1 and 2
#      threads, waiting for a quiet machine first).
#
#   LLAMA_BIN=/work/llamacpp/build-native/bin benchmarks/iq4_vs_llamacpp.sh /work/benchmodels/tinyllama-random-F16.gguf
#
# Env: OUT_DIR (default: next to SRC), TYPES (default "IQ4_NL IQ4_XS"), IMATRIX (an importance file
# for llama-quantize: the grid i-quants need one, benchmarks/write_legacy_imatrix.py writes a uniform
# one), and quiet_run.sh's REPS, THREADS, PP, TG, MAX_WAIT, JSON_OUT. Grid i-quants (issue 17):
#   python benchmarks/write_legacy_imatrix.py SRC-F16.gguf /tmp/ones.imatrix.dat
#   IMATRIX=/tmp/ones.imatrix.dat TYPES="IQ3_XXS IQ3_S IQ2_XXS IQ2_XS IQ2_M IQ1_S IQ1_M" LLAMA_BIN=... $0 SRC-F16.gguf
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${LLAMA_BIN:?set LLAMA_BIN to the llama.cpp build/bin folder holding llama-quantize and llama-bench}"
src=${1:?usage: LLAMA_BIN=... $0 MODEL-F16.gguf}
out_dir=${OUT_DIR:-$(dirname "$src")}
base=$(basename "$src" .gguf)
base=${base%-F16}; base=${base%-random}
files=()
for t in ${TYPES:-IQ4_NL IQ4_XS}; do
  f="$out_dir/$base-$t.gguf"
  if [ ! -f "$f" ]; then
    echo "# llama-quantize $src -> $f ($t)" >&2
    "$LLAMA_BIN/llama-quantize" ${IMATRIX:+--imatrix "$IMATRIX"} "$src" "$f.partial" "$t" "$(nproc)" > "$f.log" 2>&1 ||
      { tail -5 "$f.log" >&2; exit 1; }
    mv "$f.partial" "$f"
  fi
  files+=("$f")
done
exec "$here/quiet_run.sh" "${files[@]}"
