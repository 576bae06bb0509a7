#!/usr/bin/env bash
# Run pytest against an AddressSanitizer + UndefinedBehaviorSanitizer build of the extension.
#
#   scripts/sanitize_tests.sh [PYTEST ARGS...]     default: tests/test_crafted*.py
#
# Builds with -DEDGELLAMA_SANITIZE=ON into build/sanitize (its own dir: the normal build and the
# module in src/edgellama are left alone), stages a copy of the package with the sanitized module
# under build/sanitize/pkg, and runs pytest from there with the ASan runtime preloaded (Python
# itself is not instrumented, so libasan must be loaded first) and:
#   ASAN_OPTIONS  detect_leaks=0 (CPython leaks at exit by design), abort_on_error=1
#   UBSAN_OPTIONS halt_on_error=1, print_stacktrace=1 (any UB report fails the run)
# Environment: JOBS (build parallelism, default 1), BUILD_DIR (default build/sanitize).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-build/sanitize}
JOBS=${JOBS:-1}

if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGELLAMA_SANITIZE=ON \
    -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >/dev/null
fi
t0=$(date +%s)
nice -n 10 cmake --build "$BUILD" -j "$JOBS"
echo "sanitize_tests: build $(( $(date +%s) - t0 ))s"

# stage: the Python sources (symlinked, so edits show up) + the sanitized module
PKG="$BUILD/pkg/edgellama"
rm -rf "$BUILD/pkg" && mkdir -p "$PKG"
for f in src/edgellama/*; do
  case "$f" in *.so) continue ;; esac
  ln -s "$ROOT/$f" "$PKG/$(basename "$f")"
done
cp "$BUILD"/_core*.so "$PKG/"

LIBASAN=$(gcc -print-file-name=libasan.so)
[ -f "$LIBASAN" ] || { echo "sanitize_tests: libasan.so not found ($LIBASAN)" >&2; exit 2; }

[ $# -eq 0 ] && set -- tests/test_crafted*.py
export PYTHONPATH="$ROOT/$BUILD/pkg:$ROOT/tests${PYTHONPATH:+:$PYTHONPATH}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
LD_PRELOAD="$LIBASAN" python3 -c "import edgellama._core as c; print('sanitize_tests: module', c.__file__)"
LD_PRELOAD="$LIBASAN" exec python3 -m pytest -p no:cacheprovider "$@"
