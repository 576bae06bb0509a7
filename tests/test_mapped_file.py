"""MappedFile (cpp/include/edgellama/mapped_file.h): the file mapping behind every GGUF load, read-only
and private, with make_writable() for copy-on-write in-place edits (weight repacking).

cpp/tests/mapped_file_selftest.cpp is compiled here from the mapping sources alone (~3 s) and run:
it checks the mapped bytes (through a non-ASCII path), copy-on-write writes that reach neither the
file nor a second mapping, range errors (including overflow-sized ones), missing file, directory,
FIFO and empty file. A second run writes to a page never made writable and must die of SIGSEGV:
the mapping really is read-only outside make_writable ranges. The Windows implementation is run
by the same program under wine in scripts/cross_build.sh."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "cpp" / "tests" / "mapped_file_selftest.cpp", ROOT / "cpp" / "gguf" / "mapped_file_common.cpp",
           ROOT / "cpp" / "gguf" / "mapped_file_posix.cpp"]
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX build of the self-test (Windows: under wine in "
                                                       "scripts/cross_build.sh)"),
    pytest.mark.skipif(not all(p.is_file() for p in SOURCES), reason="C++ sources not present (installed package?)"),
    pytest.mark.skipif(CXX is None, reason="needs a C++ compiler (g++ or c++)"),
]


@pytest.fixture(scope="module")
def selftest(tmp_path_factory) -> Path:
    binary = tmp_path_factory.mktemp("mapped_file") / "mapped_file_selftest"
    r = subprocess.run([CXX, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-I", str(ROOT / "cpp" / "include"),
                        *map(str, SOURCES), "-o", str(binary)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    return binary


def test_mapped_file_selftest(selftest, tmp_path):
    r = subprocess.run([str(selftest), str(tmp_path)], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "PASSED: 0 failure(s)" in r.stdout
    assert not re.search(r"^FAIL", r.stdout, re.M), out
    # every check ran (a check silently dropped would lower the count)
    assert len(re.findall(r"^ok ", r.stdout, re.M)) == 19, out


def test_write_outside_make_writable_faults(selftest, tmp_path):
    r = subprocess.run([str(selftest), str(tmp_path), "--probe-ro-write"], capture_output=True, text=True,
                       timeout=60)
    assert "this must crash" in r.stdout, r.stdout + r.stderr
    assert "did not fault" not in r.stdout
    assert r.returncode in (-signal.SIGSEGV, -signal.SIGBUS), (r.returncode, r.stdout + r.stderr)
