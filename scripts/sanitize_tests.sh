#!/usr/bin/env bash
# Build the extension with AddressSanitizer + UndefinedBehaviorSanitizer (-DEDGELLAMA_SANITIZE=ON)
# into build/asan and run the hardening tests against it (crafted files, API misuse, resources by
# default; pass pytest arguments to choose others). The sanitized module is put in a copy of the
# package (build/asan/pkg/edgellama), so the developer build in src/edgellama is left alone.
#   scripts/sanitize_tests.sh [pytest args...]
#   SANITIZE_FAST=1 scripts/sanitize_tests.sh    (instrument the core only; see below)
# The same build also makes the C API library (-DEDGELLAMA_C_API=ON, libedgellama + the chat
# example, over the same sanitized core): tests/test_c_api.py runs against it, and the example is
# run once on its own with LeakSanitizer on (no Python in that process).
# Python itself is not instrumented: libasan is preloaded, and leak detection is off because the
# interpreter leaks by design at exit (scripts/fuzz.sh runs LeakSanitizer on the C++ side).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build/asan
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGELLAMA_SANITIZE=ON \
    -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" \
    $(command -v ccache >/dev/null && echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache) >/dev/null
fi
cmake -S . -B "$BUILD" -DEDGELLAMA_C_API=ON >/dev/null  # also for build dirs configured before it existed
if [ -n "${SANITIZE_FAST:-}" ]; then
  # Only the core (cpp/) is instrumented: link the developer build's binding objects (build/dev,
  # run dev_build.sh first) with the sanitized core library. The pybind11 translation units are
  # the slow ones to compile with ASan (minutes each on a busy machine); the core is what parses
  # files and runs the model, and ASan handles the mix of instrumented and plain code.
  nice -n 19 cmake --build "$BUILD" --target edgellama_core edgellama edgellama_chat -j "${JOBS:-1}"
  nice -n 19 c++ -fPIC -O2 -shared -flto=auto -fsanitize=address,undefined \
    -o "$BUILD/_core$(python3-config --extension-suffix)" build/dev/CMakeFiles/_core.dir/python/*.o \
    "$BUILD/libedgellama_core.a" -lpthread
else
  nice -n 19 cmake --build "$BUILD" -j "${JOBS:-1}"
fi
rm -rf "$BUILD/pkg" && mkdir -p "$BUILD/pkg"
cp -r src/edgellama "$BUILD/pkg/edgellama"
rm -f "$BUILD"/pkg/edgellama/_core*.so
cp "$BUILD"/_core*.so "$BUILD/pkg/edgellama/"
[ $# -gt 0 ] || set -- -q tests/test_crafted_files.py tests/test_api_misuse.py tests/test_resources.py tests/test_c_api.py
export EDGELLAMA_CAPI_BUILD="$PWD/$BUILD"  # tests/test_c_api.py uses the sanitized libedgellama
SMOL=../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$SMOL" ]; then  # the C example under ASan + LeakSanitizer: every handle must be freed
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1 "$BUILD/chat" "$SMOL" "Hi" 8 >/dev/null
  echo "C example: no ASan/LSan/UBSan reports"
fi
# libstdc++ too: without it ASan's __cxa_throw interceptor can abort on the first C++ exception under CPython
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so) $(gcc -print-file-name=libstdc++.so)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export EDGELLAMA_SANITIZED=1
PYTHONPATH="$BUILD/pkg:tests" nice -n 19 python3 -m pytest -p no:cacheprovider "$@"
