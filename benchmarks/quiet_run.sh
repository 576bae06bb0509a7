#!/usr/bin/env bash
# The speed table of BENCHMARKS.md in one command, on a quiet machine: CPU identification, load
# average, read bandwidth (the decode roofline), then edgellama vs llama-bench interleaved on every
# file (pp512 / tg128 at 1 and 2 threads).
#
#   LLAMA_BIN=/path/to/llama.cpp/build/bin benchmarks/quiet_run.sh MODEL.gguf [...] > run.txt
#
# Env: REPS (default 2), THREADS (default 1,2), PP (512), TG (128), MAX_WAIT (seconds to wait for a
# load average below 0.5; default 300), ROW_WAIT (the same wait before every row; default 180).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${LLAMA_BIN:?set LLAMA_BIN to the llama.cpp build/bin folder holding llama-bench}"
REPS=${REPS:-2}; THREADS=${THREADS:-1,2}; PP=${PP:-512}; TG=${TG:-128}; MAX_WAIT=${MAX_WAIT:-300}
echo "# $(date -u +%FT%TZ)  edgellama $(git -C "$here/.." rev-parse --short HEAD)"
lscpu | grep -E '^(Model name|CPU family|Model|CPU\(s\)):' | sed 's/^/# /'
echo "# flags: $(grep -o -w -E 'avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512_vnni|avx_vnni|avx512_bf16|avx512vbmi' /proc/cpuinfo | sort -u | tr '\n' ' ')"
waited=0
while awk '{exit !($1 >= 0.5)}' /proc/loadavg; do
  [ "$waited" -ge "$MAX_WAIT" ] && { echo "# load still >= 0.5 after ${MAX_WAIT}s: $(cat /proc/loadavg) — results are NOT evidence"; break; }
  sleep 10; waited=$((waited + 10))
done
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
roof=$(mktemp)
python3 "$here/membw.py" "$@" -t "$THREADS" --json > "$roof"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('# read bandwidth GB/s:', d['read_bandwidth_GBps'])" "$roof"
python3 "$here/compare_llamacpp.py" "$@" --llama-bench "$LLAMA_BIN/llama-bench" -p "$PP" -n "$TG" \
  -t "$THREADS" -r "$REPS" --roofline "$roof" --json "${JSON_OUT:-/dev/null}" \
  --quiet-below 0.5 --max-wait "${ROW_WAIT:-180}"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
