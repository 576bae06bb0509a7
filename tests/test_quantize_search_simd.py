"""The quantizer's batched AVX search (cpp/quant/quantize.cpp: four candidate scales per pass over a
block, their sums reduced and their score / least-squares fit computed in 4-wide double vectors, the
K-quant scale refinement's errors in groups) and its AVX-512 form for the 16-value sub-blocks of
Q2_K/Q3_K/Q6_K (one register per block, eight candidates per reduction) and for 32-value blocks (two
candidates per register, two blocks' passes interleaved: Q4_0/Q5_0/Q8_0 and the other searches of 32
values; EDGELLAMA_QUANT_NO_AVX512=1
turns it off) each give the same bytes as the one-candidate-at-a-time
SSE2 code (EDGELLAMA_QUANT_NO_AVX=1, in a child process), row for row, on random rows and on the
rows that reach the edge cases: all zeros (of both signs), constant, one non-zero value per block, huge, tiny and
subnormal values, exact level ties, a single outlier, NaN and +-inf, and importance weights with
zeros and a large spread."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgellama import _core

# every type whose search runs through search_sym / search_asym and the K-quant refinement
SEARCH_TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "IQ4_XS"]

SCRIPT = r"""
import sys, numpy as np
from edgellama import _core
rng = np.random.default_rng(17)
cols = 512
rows = []
def add(r): rows.append(np.asarray(r, dtype=np.float32))
for scale in (0.02, 1.0, 300.0):
    for _ in range(6): add(rng.standard_normal(cols) * scale)
for _ in range(4): add(rng.standard_t(2.5, cols))                   # heavy tails
for _ in range(48): add(rng.standard_normal(cols) * 10.0 ** rng.uniform(-4, 4))  # many random blocks
add(np.zeros(cols)); add(np.full(cols, 0.37)); add(np.full(cols, -5.0))
r = np.zeros(cols); r[::16] = rng.standard_normal(cols // 16); add(r)  # one value per sub-block
r = np.zeros(cols); r[5::32] = 1.0; add(r)
add(rng.standard_normal(cols) * 1e30); add(rng.standard_normal(cols) * 1e-30)
add(rng.standard_normal(cols) * 1e-39)                                # subnormal
add(np.round(rng.standard_normal(cols) * 8) / 2)                      # exact ties
add(np.abs(rng.standard_normal(cols))); add(-np.abs(rng.standard_normal(cols)))
r = rng.standard_normal(cols) * 0.01; r[::37] = 50.0; add(r)           # outliers
r = rng.standard_normal(cols); r[:16] = 0; r[32:48] = 2.0; add(r)      # mixed sub-blocks
for bad in (np.nan, np.inf, -np.inf):
    r = rng.standard_normal(cols); r[rng.integers(0, cols, 3)] = bad; add(r)
r = rng.standard_normal(cols); r[3] = 3e38; r[4] = -3e38; add(r)       # near float max
r = np.abs(rng.standard_normal(cols)); r[::7] = 0.0; r[3::7] = -0.0; add(r)  # min is 0, both signs
r = np.zeros(cols); r[1::2] = -0.0; add(r); add(-r)                    # all zeros, mixed signs
r = -np.abs(rng.standard_normal(cols)); r[::5] = -0.0; r[2::5] = 0.0; add(r)  # max is 0, both signs
x = np.stack(rows)
imps = {
    "": None,
    "_imp": rng.gamma(1.0, 1.0, cols).astype(np.float32),
    "_spread": (10.0 ** rng.uniform(-6, 6, cols)).astype(np.float32),
}
imps["_zeros"] = imps["_imp"].copy(); imps["_zeros"][::3] = 0; imps["_zeros"][64:96] = 0
ODD_BLOCKS = ("Q4_0", "Q5_0", "Q8_0")
out = {}
for t in sys.argv[2].split(","):
    for k, w in imps.items():
        out[t + k] = _core.quantize(t, x, importance=w, method="search", n_threads=1)
    if t in ODD_BLOCKS:  # 7 blocks a row: the two-blocks-at-a-time search ends on a single block
        out[t + "_odd"] = _core.quantize(t, x[:, :224], importance=imps["_imp"][:224], method="search", n_threads=1)
np.savez(sys.argv[1], **out)
"""


@pytest.mark.parametrize("types", [SEARCH_TYPES[:5], SEARCH_TYPES[5:]], ids=["k-quants", "legacy-and-iq4"])
def test_batched_avx_search_equals_sse2_bit_for_bit(tmp_path, types):
    from conftest import subprocess_env

    if "avx2" not in _core.available_isas():
        pytest.skip("this CPU has no AVX2: only the SSE2 search runs here")
    script = tmp_path / "q.py"
    script.write_text(SCRIPT)
    # default: AVX-512 for the 16-value blocks where the CPU has it (else the same as "avx")
    variants = [("default", {}), ("avx", {"EDGELLAMA_QUANT_NO_AVX512": "1"}), ("sse", {"EDGELLAMA_QUANT_NO_AVX": "1"})]
    runs = {}
    for name, extra in variants:
        runs[name] = tmp_path / f"{name}.npz"
        r = subprocess.run([sys.executable, str(script), str(runs[name]), ",".join(types)],
                           env=subprocess_env(**extra), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    b = np.load(runs["sse"])
    differ = []
    for name in ("default", "avx"):
        a = np.load(runs[name])
        n_odd = sum(t in ("Q4_0", "Q5_0", "Q8_0") for t in types)
        assert sorted(a.files) == sorted(b.files) and len(a.files) == 4 * len(types) + n_odd
        for k in a.files:
            assert a[k].shape == b[k].shape and a[k].shape[0] > 30, k
            rows = np.flatnonzero((a[k] != b[k]).any(axis=1))
            if rows.size:
                differ.append((name, k, rows.tolist()))
    assert not differ, differ


def test_f16_source_widening_is_exact_for_every_half():
    """F16 sources are widened to float32 with F16C on AVX2 CPUs (quantize.cpp widen_f16_f16c),
    which quiets signalling NaNs; groups holding a NaN go through the table instead. All 65536 half
    bit patterns, written as F32 (a copy of the widened rows), give sign | exponent | mantissa << 13
    exactly (signalling NaN payloads kept) and NumPy's values for zeros and subnormals."""
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16).reshape(256, 256)
    got = _core.quantize("F32", h.view(np.float16), n_threads=1).view(np.uint32).reshape(256, 256)
    u = h.astype(np.uint32)
    e, m = (u >> 10) & 0x1F, u & 0x3FF
    want = ((u & 0x8000) << 16) | (np.where(e == 0x1F, 0xFF, e + 112) << 23) | (m << 13)
    normal = e != 0
    assert np.array_equal(got[normal], want[normal])
    assert np.array_equal(got[~normal].view(np.float32), h[~normal].view(np.float16).astype(np.float32))
    assert np.isnan(got.view(np.float32)).sum() == 2 * 1023  # every NaN pattern, none made or lost
