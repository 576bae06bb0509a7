#!/usr/bin/env bash
# Developer build: compile the extension into build/dev and copy it next to the sources, so that
# `PYTHONPATH=src python -m pytest` tests the working tree without `pip install`.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build/dev}
extra=()
export CCACHE_BASEDIR="$PWD"
command -v ccache >/dev/null && extra+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} \
    -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" "${extra[@]}" "$@" >/dev/null
fi
cmake --build "$BUILD" -j "${JOBS:-2}"
# copy then rename: a test process that has the old module loaded keeps a valid file
for so in "$BUILD"/_core*.so; do
  cp -f "$so" "src/edgellama/.$(basename "$so").tmp" && mv -f "src/edgellama/.$(basename "$so").tmp" "src/edgellama/$(basename "$so")"
done
