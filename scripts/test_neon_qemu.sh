#!/usr/bin/env bash
# Kernel self-test (cpp/tests/kernel_selftest.cpp) for the aarch64 NEON kernels, cross-compiled and
# run under qemu user-mode emulation; or, with --native, built and run for this machine (x86: avx2
# vs scalar).
#
#   scripts/test_neon_qemu.sh            # cross-compile for aarch64, run under qemu (see below)
#   scripts/test_neon_qemu.sh --native   # host compiler, host CPU
#   scripts/test_neon_qemu.sh --models   # + model-level check under qemu -cpu max (slow: builds the
#                                        #   whole core, ~3-5 min on 2 cores): cpp/tests/model_selftest
#                                        #   runs a tiny random model of every weight type
#                                        #   (tests/model_factory.py; needs numpy + gguf) and, when
#                                        #   present, SmolLM2-135M Q4_1 from $EDGELLAMA_SHARED/models,
#                                        #   with EDGELLAMA_ISA=scalar, =neon and =neon_i8mm, and
#                                        #   compares logits (neon_i8mm with neon: byte for byte).
#   options: --quick (fewer cases), --keep (keep the build directory), BUILD_DIR=... to choose it,
#            CXX_AARCH64 / QEMU_AARCH64 / CXX / PYTHON to override the tools; EDGELLAMA_NO_CCACHE=1;
#            OPT=-O3 to test the optimisation level of the Release module build (default -O2).
#
# The qemu mode runs the static aarch64 binary under:
#   -cpu max         (has dotprod and i8mm): dispatch must pick "neon_i8mm"; the neon and neon_i8mm
#                    sets must match scalar, and neon_i8mm must give neon's bits exactly;
#                    EDGELLAMA_ISA=neon / =neon_i8mm must dispatch that set.
#   -cpu neoverse-n1 (dotprod, no i8mm): dispatch must pick "neon" without SIGILL, EDGELLAMA_ISA=
#                    neon_i8mm must be refused with a clear error, and a direct call of the SMMLA gemm
#                    must die with SIGILL (so the CPU model really lacks i8mm), while it runs on max.
#   -cpu cortex-a53  (Armv8.0, no dotprod): dispatch must pick "scalar" without SIGILL, and
#                    EDGELLAMA_ISA=neon must be refused with a clear error; a direct call of the NEON
#                    gemm (bypassing dispatch) must die with SIGILL, which shows this CPU model really
#                    lacks dotprod (so the run above proves the fallback, it is not vacuous).
# Exit status: 0 all passed; 1 a check failed; 77 a tool is missing (the message says how to get it).
#
# Sources are derived, not listed: every .cpp under cpp/kernels/ outside an ISA directory (dispatch,
# scalar reference, ...), the ISA directories of the target, and the self-test. Per-ISA compile
# flags are read from CMakeLists.txt (EDGELLAMA_FLAGS_<isa>, by scripts/isa_flags.py), and
# the common flags mirror those of edgellama_core there (-ffp-contract=off matters).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=qemu
MODELS=0
QUICK=()
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --native) MODE=native ;;
    --models) MODELS=1 ;;
    --quick) QUICK=(--quick) ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

missing() {
  echo "test_neon_qemu.sh: missing tool: $1" >&2
  echo "  install on Debian/Ubuntu with:  sudo apt-get install -y g++-aarch64-linux-gnu qemu-user-static" >&2
  exit 77
}

if [[ $MODE == qemu ]]; then
  CXX_T=${CXX_AARCH64:-aarch64-linux-gnu-g++}
  QEMU=${QEMU_AARCH64:-qemu-aarch64-static}
  command -v "$CXX_T" >/dev/null 2>&1 || missing "$CXX_T"
  if ! command -v "$QEMU" >/dev/null 2>&1; then
    if [[ -z ${QEMU_AARCH64:-} ]] && command -v qemu-aarch64 >/dev/null 2>&1; then QEMU=qemu-aarch64; else missing "$QEMU"; fi
  fi
  TARGET=arm64
  DEFS=(-DEDGELLAMA_ARM64=1)
  LINK=(-static)
else
  CXX_T=${CXX:-g++}
  command -v "$CXX_T" >/dev/null 2>&1 || { echo "test_neon_qemu.sh: no C++ compiler ($CXX_T)" >&2; exit 77; }
  case "$(uname -m)" in
    x86_64|amd64) TARGET=x86; DEFS=(-DEDGELLAMA_X86=1) ;;
    aarch64|arm64) TARGET=arm64; DEFS=(-DEDGELLAMA_ARM64=1) ;;
    *) TARGET=other; DEFS=() ;;
  esac
  LINK=(-pthread)
fi

# ccache (as scripts/dev_build.sh uses it) makes repeated runs cheap; EDGELLAMA_NO_CCACHE=1 disables.
LAUNCH=()
if [[ -z ${EDGELLAMA_NO_CCACHE:-} ]] && command -v ccache >/dev/null 2>&1; then
  LAUNCH=(ccache)
  export CCACHE_BASEDIR="$ROOT"
fi

case $TARGET in
  x86) ISA_DIRS=(avx2 avx512) ;;
  arm64) ISA_DIRS=(neon) ;;
  *) ISA_DIRS=() ;;
esac

# GCC/Clang flags that CMakeLists.txt gives cpp/kernels/<isa>/ (its EDGELLAMA_FLAGS_<isa> row that
# is not the MSVC one; ";"-separated there).
isa_flags() {
  "${PYTHON:-python3}" "$ROOT/scripts/isa_flags.py" "$1"
}
# The flags row of a kernel source, as CMakeLists.txt picks it: the directory's, except that
# cpp/kernels/neon/*_i8mm.cpp (the SMMLA tier) has its own row, neon_i8mm.
flags_row() {
  case $1 in
    cpp/kernels/neon/*_i8mm.cpp) echo neon_i8mm ;;
    *) basename "$(dirname "$1")" ;;
  esac
}

COMMON=(-std=c++17 ${OPT:--O2} -ffp-contract=off -Wall -Wextra -Wno-unused-parameter -I"$ROOT/cpp/include" ${DEFS[@]+"${DEFS[@]}"})

BASE_SRCS=()
while IFS= read -r f; do BASE_SRCS+=("$f"); done < <(
  cd "$ROOT" && find cpp/kernels -name '*.cpp' | grep -Ev '^cpp/kernels/(avx2|avx_vnni|avx512|neon)/' | sort)
BASE_SRCS+=(cpp/tests/kernel_selftest.cpp)

BUILD=${BUILD_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/edgellama_selftest.XXXXXX")}
mkdir -p "$BUILD"
if [[ $KEEP == 0 && -z ${BUILD_DIR:-} ]]; then trap 'rm -rf "$BUILD"' EXIT; fi

objs=()
compile() {  # src flags...
  local src=$1; shift
  local obj="$BUILD/$(echo "$src" | tr '/' '_').o"
  ${LAUNCH[@]+"${LAUNCH[@]}"} "$CXX_T" "${COMMON[@]}" "$@" -c "$ROOT/$src" -o "$obj"
  objs+=("$obj")
}
t0=$(date +%s)
for src in "${BASE_SRCS[@]}"; do compile "$src"; done
for isa in ${ISA_DIRS[@]+"${ISA_DIRS[@]}"}; do
  [[ -d $ROOT/cpp/kernels/$isa ]] || continue
  while IFS= read -r src; do
    read -r -a flags <<<"$(isa_flags "$(flags_row "$src")")"
    compile "$src" "${flags[@]}"
  done < <(cd "$ROOT" && find "cpp/kernels/$isa" -name '*.cpp' | sort)
done
BIN="$BUILD/kernel_selftest"
"$CXX_T" "${objs[@]}" "${LINK[@]}" -o "$BIN"
echo "built $BIN ($MODE, $TARGET) from ${#objs[@]} sources in $(( $(date +%s) - t0 )) s"

status=0
run() {  # expected_rc description command...
  local want=$1 what=$2; shift 2
  echo "== $what"
  local rc=0
  "$@" || rc=$?
  if [[ $rc != "$want" ]]; then
    echo "FAIL: $what: exit status $rc, expected $want" >&2
    status=1
  else
    echo "ok: $what (exit $rc)"
  fi
}

if [[ $MODE == native ]]; then
  run 0 "native kernel self-test" "$BIN" ${QUICK[@]+"${QUICK[@]}"}
else
  run 0 "qemu -cpu max (dotprod + i8mm): best ISA neon_i8mm, neon and neon_i8mm vs scalar, neon_i8mm bit for bit vs neon" \
    env -u EDGELLAMA_ISA "$QEMU" -cpu max "$BIN" --expect-best neon_i8mm ${QUICK[@]+"${QUICK[@]}"}
  run 0 "qemu -cpu max, EDGELLAMA_ISA=neon dispatches neon" \
    env EDGELLAMA_ISA=neon "$QEMU" -cpu max "$BIN" --expect-best neon_i8mm --expect-dispatched neon --quick
  run 0 "qemu -cpu max, EDGELLAMA_ISA=neon_i8mm dispatches neon_i8mm" \
    env EDGELLAMA_ISA=neon_i8mm "$QEMU" -cpu max "$BIN" --expect-best neon_i8mm --expect-dispatched neon_i8mm --quick
  run 0 "qemu -cpu neoverse-n1 (dotprod, no i8mm): falls back to neon" \
    env -u EDGELLAMA_ISA "$QEMU" -cpu neoverse-n1 "$BIN" --expect-best neon --quick
  run 0 "qemu -cpu neoverse-n1, EDGELLAMA_ISA=neon_i8mm is refused with an error (no SIGILL)" \
    env EDGELLAMA_ISA=neon_i8mm "$QEMU" -cpu neoverse-n1 "$BIN" --expect-best neon --expect-dispatch-error --quick
  run 0 "qemu -cpu cortex-a53 (no dotprod): falls back to scalar" \
    env -u EDGELLAMA_ISA "$QEMU" -cpu cortex-a53 "$BIN" --expect-best scalar
  run 0 "qemu -cpu cortex-a53, EDGELLAMA_ISA=neon is refused with an error (no SIGILL)" \
    env EDGELLAMA_ISA=neon "$QEMU" -cpu cortex-a53 "$BIN" --expect-best scalar --expect-dispatch-error
  # 128 + SIGILL(4): qemu-user re-raises the guest's fatal signal. No core file in the caller's directory.
  ulimit -c 0 2>/dev/null || true
  run 132 "qemu -cpu cortex-a53: calling the NEON gemm directly dies with SIGILL (CPU model lacks dotprod)" \
    "$QEMU" -cpu cortex-a53 "$BIN" --probe-neon
  run 132 "qemu -cpu neoverse-n1: calling the SMMLA gemm directly dies with SIGILL (CPU model lacks i8mm)" \
    "$QEMU" -cpu neoverse-n1 "$BIN" --probe-i8mm
  run 0 "qemu -cpu max: the same SMMLA call runs (the probe itself works)" \
    "$QEMU" -cpu max "$BIN" --probe-i8mm
fi

if [[ $MODELS == 1 && $MODE == qemu ]]; then
  PY=${PYTHON:-python3}
  if ! "$PY" -c "import numpy, gguf" >/dev/null 2>&1; then
    echo "test_neon_qemu.sh: --models needs numpy and gguf for $PY (pip install numpy gguf)" >&2
    exit 77
  fi
  # The whole core, derived like CMakeLists.txt: every cpp/**/*.cpp except the stand-alone programs
  # and the ISA directories of other targets.
  t0=$(date +%s)
  objs=()
  while IFS= read -r src; do
    case $src in
      cpp/kernels/neon/*) read -r -a flags <<<"$(isa_flags "$(flags_row "$src")")"; compile "$src" "${flags[@]}" ;;
      *) compile "$src" ;;
    esac
  done < <(cd "$ROOT" && find cpp -name '*.cpp' | grep -Ev '^cpp/(fuzz|tests)/|^cpp/kernels/(avx2|avx_vnni|avx512)/' | sort)
  compile cpp/tests/model_selftest.cpp
  MBIN="$BUILD/model_selftest"
  "$CXX_T" "${objs[@]}" -static -pthread -o "$MBIN"
  echo "built $MBIN from ${#objs[@]} sources in $(( $(date +%s) - t0 )) s"
  mkdir -p "$BUILD/models"
  (cd "$ROOT/tests" && "$PY" -c '
import sys
import model_factory as mf
for t in mf.ALL_WEIGHT_TYPES:
    mf.make_model(f"{sys.argv[1]}/{t}.gguf", wtype=t)
' "$BUILD/models")
  model_check() {  # name path n_tokens n_vocab [--kl MAX]
    local name=$1 path=$2 ntok=$3 nvocab=$4; shift 4
    local ok=1
    for isa in scalar neon neon_i8mm; do
      EDGELLAMA_ISA=$isa "$QEMU" -cpu max "$MBIN" run "$path" "$BUILD/models/$name.$isa.f32" "$ntok" >/dev/null || ok=0
    done
    if [[ $ok == 1 ]]; then
      "$QEMU" -cpu max "$MBIN" compare "$BUILD/models/$name.scalar.f32" "$BUILD/models/$name.neon.f32" "$nvocab" "$@" || ok=0
    fi
    if [[ $ok == 1 ]]; then echo "ok: model $name neon vs scalar"; else echo "FAIL: model $name neon vs scalar" >&2; status=1; fi
    # The i8mm tier gives the SDOT tier's bits in every kernel, so the whole forward pass (a
    # multi-token prefill: SMMLA kernels) must give the same logits, byte for byte.
    if [[ $ok == 1 ]] && cmp -s "$BUILD/models/$name.neon.f32" "$BUILD/models/$name.neon_i8mm.f32"; then
      echo "ok: model $name neon_i8mm logits identical to neon"
    else
      echo "FAIL: model $name neon_i8mm logits differ from neon's (or a run failed)" >&2; status=1
    fi
  }
  echo "== model-level: EDGELLAMA_ISA=scalar vs neon (vs neon_i8mm) under qemu -cpu max"
  # 96: make_model's default n_vocab
  for f in "$BUILD"/models/*.gguf; do model_check "$(basename "$f" .gguf)" "$f" 12 96; done
  SMOL="${EDGELLAMA_SHARED:-$ROOT/../shared}/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
  if [[ -f $SMOL ]]; then
    model_check smollm2-q4_1 "$SMOL" 6 49152 --kl 3e-3
  else
    echo "(SmolLM2 not found at $SMOL: real-model check skipped)"
  fi
fi

if [[ $status == 0 ]]; then echo "ALL PASSED ($MODE)"; else echo "SOME CHECKS FAILED ($MODE)" >&2; fi
exit $status
