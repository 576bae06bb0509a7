"""The AVX-VNNI tier (cpp/kernels/avx_vnni/: the rows8 kernels with 256-bit VEX vpdpbusd integer
cores): dispatch agrees with the CPU's flags, EDGELLAMA_ISA selects or refuses it, and its overridden
types give the rows8 reference's bits at odd shapes, every token-count path and extreme values.

The generic kernel tests (test_kernels.py, test_packed_weights.py, ...) are parametrized over
available_isas() and cover the tier too wherever the CPU has it; the tests here that need the tier
skip elsewhere, the dispatch test runs everywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import subprocess_env
from edgellama import _core
from kernel_data import cpu_flags, random_rows

# The types the tier overrides (kernels_avx_vnni.cpp); the rest of its set is the AVX2 one.
VNNI_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
HAS_TIER = "avx_vnni" in _core.available_isas()
needs_tier = pytest.mark.skipif(not HAS_TIER, reason="this CPU has no AVX-VNNI (or this build left the tier out)")


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs /proc/cpuinfo (Linux) to know the CPU's flags")
def test_avx_vnni_listed_iff_cpu_flag():
    # The supported compilers (GCC 11+, Clang 12+) all build the tier, so the list follows the CPU alone.
    flags = cpu_flags()
    cpu_has = {"avx_vnni", "avx2", "fma", "f16c"} <= flags
    isas = _core.available_isas()
    assert ("avx_vnni" in isas) == cpu_has, (sorted(flags & {"avx_vnni", "avx2"}), isas)
    if cpu_has:  # between avx2 and avx512: an AVX-512 host still runs avx512 by default
        assert isas.index("avx2") < isas.index("avx_vnni")
        assert isas[-1] in ("avx_vnni", "avx512")


def test_edgellama_isa_selects_or_refuses_avx_vnni():
    code = "import edgellama._core as c; print(c.isa())"
    r = subprocess.run([sys.executable, "-c", code], env=subprocess_env(EDGELLAMA_ISA="avx_vnni"), capture_output=True,
                       text=True, timeout=120)
    if HAS_TIER:
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "avx_vnni"
    else:
        assert r.returncode != 0 and "not available" in r.stderr, r.stdout + r.stderr


@needs_tier
def test_coverage_is_the_avx2_set():
    # every type the AVX2 set computes, the tier computes (overrides replace entries, never drop them)
    assert _core.kernel_coverage("avx_vnni") == _core.kernel_coverage("avx2")


@needs_tier
@pytest.mark.parametrize("t", VNNI_TYPES)
def test_bit_exact_vs_rows8_reference(t):
    """n_in across the 64-block chunk boundary, row counts around the 8-row group and the 16-row pair,
    1..9 tokens (1-token streaming decode, the 2-4-token asm cores, passes of 4), 31 / 32 / 33 (the pair
    tiles start at 32) and 70 (a second 64-token chunk), GGUF layout and packed groups."""
    rng = np.random.default_rng(41)
    token_counts = list(range(1, 10)) + [31, 32, 33, 70]
    for n_in in (32, 96, 65 * 32):
        for n_rows in (1, 7, 8, 9, 16, 17, 40):
            w = random_rows(t, n_rows, n_in, rng)
            x = (rng.standard_normal((max(token_counts), n_in)) * rng.uniform(0.1, 10)).astype(np.float32)
            for n_tok in token_counts:
                y = _core.kernel_gemm("avx_vnni", t, w, x[:n_tok])
                np.testing.assert_array_equal(y, _core.kernel_gemm_rows8_ref(t, w, x[:n_tok]),
                                              err_msg=f"{t} n_in={n_in} rows={n_rows} tokens={n_tok}")


def _extreme_rows(t: str, n_rows: int, n_in: int, fill: int) -> bytes:
    """Blocks whose every quant byte is `fill` and whose fp16 fields hold 1.0: the largest integer sums
    each format can make (0xFF: Q4 nibbles 15, Q5 with all fifth bits 31; Q8_0 0x80 = -128, 0x7F = 127)."""
    layout = {"Q4_0": (18, [0], 2, None), "Q4_1": (20, [0, 2], 4, None), "Q5_0": (22, [0], 6, 2),
              "Q5_1": (24, [0, 2], 8, 4), "Q8_0": (34, [0], 2, None)}
    size, halves, qs, qh = layout[t]
    blk = np.full((n_rows * n_in // 32, size), fill, np.uint8)
    for h in halves:
        blk[:, h:h + 2] = np.array([1.0], np.float16).view(np.uint8)
    if qh is not None:
        blk[:, qh:qh + 4] = 0xFF
    assert qs + (32 if t == "Q8_0" else 16) == size
    return blk.tobytes()


@needs_tier
@pytest.mark.parametrize("t", VNNI_TYPES)
@pytest.mark.parametrize("fill", [0xFF, 0x80, 0x7F, 0x00])
def test_extremes_equal_the_reference(t, fill):
    # activations at +-max (they quantize to +-127), so every integer sum is at its bound
    n_rows, n_in = 17, 96
    w = _extreme_rows(t, n_rows, n_in, fill)
    for n_tok in (1, 2, 3, 4, 5, 33):
        for sign in (1.0, -1.0):
            x = np.full((n_tok, n_in), sign * 3.0, np.float32)
            x[:, 1::2] *= -1 if n_tok % 2 else 1
            np.testing.assert_array_equal(_core.kernel_gemm("avx_vnni", t, w, x), _core.kernel_gemm_rows8_ref(t, w, x),
                                          err_msg=f"{t} fill={fill:#x} tokens={n_tok} sign={sign}")
