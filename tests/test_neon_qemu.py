"""The aarch64 NEON kernels (dotprod tier "neon", i8mm tier "neon_i8mm"), tested on any Linux host
through qemu user-mode emulation: scripts/test_neon_qemu.sh cross-compiles the kernel sources plus
cpp/tests/kernel_selftest.cpp as a static aarch64 binary and runs it under `-cpu max` (dotprod + i8mm:
dispatch must pick "neon_i8mm"; both sets must match the scalar reference on every weight type, and
neon_i8mm must give neon's outputs bit for bit), `-cpu neoverse-n1` (dotprod, no i8mm: dispatch must
pick "neon", forcing EDGELLAMA_ISA=neon_i8mm must be a clear error, and calling the SMMLA kernel
directly must SIGILL) and `-cpu cortex-a53` (no dotprod: dispatch must fall back to scalar, forcing
EDGELLAMA_ISA=neon must be a clear error, and calling the NEON kernel directly must SIGILL, which
shows that CPU model really lacks dotprod).

Needs aarch64-linux-gnu-g++ and qemu-aarch64-static (Debian/Ubuntu:
`apt-get install -y g++-aarch64-linux-gnu qemu-user-static`); skipped with that reason otherwise.
Cost: ~40 s cold on 2 cores (almost all of it compiling the two kernel files at -O2), a few seconds
with a warm ccache.

A native build of the same self-test (`scripts/test_neon_qemu.sh --native`: avx2 vs scalar on x86)
is not run here: it costs as much to compile and test_kernels.py already compares every SIMD set
with scalar through the module."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "test_neon_qemu.sh"
CXX = os.environ.get("CXX_AARCH64", "aarch64-linux-gnu-g++")
QEMU = os.environ.get("QEMU_AARCH64") or shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="qemu user-mode emulation needs Linux"),
    pytest.mark.skipif(not SCRIPT.is_file() or shutil.which("bash") is None,
                       reason="scripts/test_neon_qemu.sh or bash not available (installed package?)"),
    pytest.mark.skipif(shutil.which(CXX) is None or QEMU is None,
                       reason="needs aarch64-linux-gnu-g++ and qemu-aarch64-static "
                              "(apt-get install -y g++-aarch64-linux-gnu qemu-user-static)"),
]


@pytest.fixture(scope="module")
def qemu_build(tmp_path_factory):
    build = tmp_path_factory.mktemp("neon_selftest")
    env = dict(os.environ, BUILD_DIR=str(build), PYTHON=sys.executable)
    env.pop("EDGELLAMA_ISA", None)
    if QEMU:
        env["QEMU_AARCH64"] = QEMU
    r = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=900)
    return r, build


def test_neon_kernels_under_qemu(qemu_build):
    r, _ = qemu_build
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "ALL PASSED (qemu)" in r.stdout
    # the ten checks of the script, each reported ok
    assert len(re.findall(r"^ok: ", r.stdout, re.M)) == 10, out[-6000:]
    # -cpu max: NEON and NEON i8mm really were compared with scalar, on every weight type (25: the grid
    # i-quants included), and i8mm with neon bit for bit
    for isa in ("neon", "neon_i8mm"):
        m = re.search(r"^%s: (\d+) gemm cases \((\d+) weight types.*all match scalar" % isa, r.stdout, re.M)
        assert m and int(m.group(1)) > 5000 and int(m.group(2)) == 25, out[-6000:]
    m = re.search(r"^neon_i8mm: (\d+) of these cases compared bit for bit with neon: all identical", r.stdout, re.M)
    assert m and int(m.group(1)) > 5000, out[-6000:]
    assert "available ISAs: scalar, neon, neon_i8mm; best: neon_i8mm; dispatched: neon_i8mm" in r.stdout
    assert "best: neon_i8mm; dispatched: neon (EDGELLAMA_ISA=neon)" in r.stdout
    # -cpu neoverse-n1: dotprod without i8mm picks neon; forcing i8mm is refused; the direct SMMLA
    # call died with SIGILL there (counted in the ten) and ran under -cpu max
    assert "available ISAs: scalar, neon; best: neon; dispatched: neon (EDGELLAMA_ISA=)" in r.stdout
    assert "EDGELLAMA_ISA='neon_i8mm' is not available" in r.stdout
    assert "probe: returned 0: this CPU executes SMMLA" in r.stdout
    # -cpu cortex-a53: scalar only, and the direct NEON call died with SIGILL
    assert "available ISAs: scalar; best: scalar; dispatched: scalar" in r.stdout
    assert "EDGELLAMA_ISA='neon' is not available" in r.stdout


def test_selftest_fails_on_wrong_expectation(qemu_build):
    """The self-test's dispatch checks can fail: on a CPU without dotprod, expecting neon is an error."""
    r, build = qemu_build
    binary = build / "kernel_selftest"
    if not binary.is_file():
        pytest.fail("the qemu build produced no binary:\n" + (r.stdout + r.stderr)[-4000:])
    env = {k: v for k, v in os.environ.items() if k != "EDGELLAMA_ISA"}
    r2 = subprocess.run([QEMU, "-cpu", "cortex-a53", str(binary), "--expect-best", "neon"], env=env,
                        capture_output=True, text=True, timeout=120)
    assert r2.returncode == 1, r2.stdout + r2.stderr
    assert "best_isa() is scalar, expected neon" in r2.stderr
    # and on a CPU with dotprod but no i8mm, expecting neon_i8mm is an error
    r3 = subprocess.run([QEMU, "-cpu", "neoverse-n1", str(binary), "--expect-best", "neon_i8mm", "--quick"], env=env,
                        capture_output=True, text=True, timeout=300)
    assert r3.returncode == 1, r3.stdout + r3.stderr
    assert "best_isa() is neon, expected neon_i8mm" in r3.stderr


@pytest.mark.skipif(os.environ.get("EDGELLAMA_QEMU_MODELS") != "1",
                    reason="slow (~2-3 min on 2 cores: builds the whole core for aarch64); "
                           "set EDGELLAMA_QEMU_MODELS=1 to run")
def test_neon_model_level_under_qemu(tmp_path):
    """Forward passes with EDGELLAMA_ISA=scalar vs neon under qemu: a tiny random model of every weight
    type (logits within 1e-2 * max|logit|), and SmolLM2 when present (mean KL <= 3e-3); neon_i8mm's
    logits byte for byte equal to neon's."""
    env = dict(os.environ, BUILD_DIR=str(tmp_path), PYTHON=sys.executable)
    env.pop("EDGELLAMA_ISA", None)
    if QEMU:
        env["QEMU_AARCH64"] = QEMU
    r = subprocess.run(["bash", str(SCRIPT), "--models", "--quick"], env=env, capture_output=True, text=True,
                       timeout=1800)
    out = r.stdout + r.stderr
    if r.returncode == 77:
        pytest.skip(out.strip().splitlines()[-1])
    assert r.returncode == 0, out[-6000:]
    assert len(re.findall(r"^ok: model \S+ neon vs scalar", r.stdout, re.M)) >= 13, out[-6000:]
    assert len(re.findall(r"^ok: model \S+ neon_i8mm logits identical to neon", r.stdout, re.M)) >= 13, out[-6000:]
