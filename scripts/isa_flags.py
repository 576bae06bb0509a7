"""Prints the GCC/Clang compile flags CMakeLists.txt gives the kernel directory cpp/kernels/<isa>/
(the EDGELLAMA_FLAGS_<isa> row of its non-MSVC branch), space-separated, so that the scripts that
compile without CMake (test_neon_qemu.sh, cross_build.sh) cannot drift from the real build.

    python3 scripts/isa_flags.py avx2   ->  -mavx2 -mfma -mf16c
"""
import re
import sys
from pathlib import Path

CMAKELISTS = Path(__file__).resolve().parents[1] / "CMakeLists.txt"


def isa_flags(isa: str) -> list:
    text = CMAKELISTS.read_text()
    rows = re.findall(r'set\(EDGELLAMA_FLAGS_%s\s+"([^"]*)"\)' % re.escape(isa), text)
    gnu = [r for r in rows if r.startswith("-")]  # the MSVC row's flags start with "/" (or are empty)
    if len(gnu) != 1:
        sys.exit("CMakeLists.txt: expected one GCC/Clang row set(EDGELLAMA_FLAGS_%s \"-...\"), found %d" % (isa, len(gnu)))
    return [f for f in gnu[0].split(";") if f.strip()]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: isa_flags.py ISA")
    print(" ".join(isa_flags(sys.argv[1])))
