"""MXFP4 quantization (cpp/quant/quantize.cpp quantize_row_mxfp4_ref): bit for bit gguf.quants'
and ggml's quantizer on finite blocks (odd scales, ties, values a few ulp around powers of two),
our blocks dequantize through gguf.quants to our own dequantization, each value is the nearest
level, and the cases they leave undefined (tiny blocks, NaN, inf) are finite and documented."""

from __future__ import annotations

import ctypes
import os
import warnings
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from edgellama import _core

LEVELS = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.float32)


def gguf_quantize(x):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.asarray(gguf.quants.quantize(x, Q.MXFP4)).view(np.uint8).reshape(x.shape[0], -1)


def ggml_quantize():
    """ggml's ggml_quantize_chunk from a llama.cpp build, or None."""
    path = Path(os.environ.get("EDGELLAMA_LLAMACPP_BIN", "/work/llamacpp/build-native/bin")) / "libggml-base.so"
    if not path.is_file():
        return None
    f = ctypes.CDLL(str(path)).ggml_quantize_chunk
    f.restype = ctypes.c_size_t
    f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                  ctypes.c_void_p]

    def quantize(x):
        x = np.ascontiguousarray(x, np.float32)
        out = np.zeros((x.shape[0], x.shape[1] // 32 * 17), np.uint8)
        f(int(Q.MXFP4), x.ctypes.data, out.ctypes.data, 0, x.shape[0], x.shape[1], None)
        return out

    return quantize


def finite_matrix(cols, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((20, cols)).astype(np.float32)
    x[0] = 0.0
    x[1] = 3.0
    x[2] = -0.125
    x[3] *= np.float32(1e30)
    x[4] *= np.float32(1e-30)
    x[5, :16] = -0.0
    x[6] = np.abs(x[6])
    x[7] = -np.abs(x[7])
    x[8] = rng.integers(-24, 25, cols) / 4  # exact levels and exact midpoints between levels (ties)
    x[9] = rng.uniform(-65504, 65504, cols)
    x[10, 5] = 1000.0  # outlier
    # block maxima a few ulp around powers of two (where floor(log2) flips)
    p2 = np.float32(2.0) ** rng.integers(-20, 20, cols // 32).astype(np.float32)
    for r, k in ((11, -2), (12, -1), (13, 0), (14, 1)):
        x[r] = rng.uniform(-1, 1, cols) * np.repeat(p2, 32) * 0.5
        x[r, ::32] = np.nextafter(p2, np.float32(np.inf) if k > 0 else np.float32(0)) if k else p2
        if k == -2:
            x[r, ::32] = np.nextafter(np.nextafter(p2, np.float32(0)), np.float32(0))
    x[15] = x[15] * np.float32(3.3e3)
    x[16] = rng.standard_t(2, cols)  # heavy tails
    x[17] *= np.float32(2.0**-110)  # small but with a representable exponent
    x[18] = np.float32(3.4e38) * np.sign(x[18])  # the largest exponents
    return x


@pytest.mark.parametrize("cols", [32, 96, 1024])
def test_bit_exact_with_gguf_and_ggml(cols):
    x = finite_matrix(cols, seed=cols)
    ours = _core.quantize("MXFP4", x)
    assert ours.dtype == np.uint8 and ours.shape == (x.shape[0], cols // 32 * 17)
    ref = gguf_quantize(x)
    bad = np.nonzero((ours != ref).any(axis=1))[0]
    assert bad.size == 0, f"rows {bad.tolist()} differ from gguf.quants.quantize"
    ggml = ggml_quantize()
    if ggml is not None:  # optional third opinion: the C reference itself
        assert np.array_equal(ours, ggml(x))
    # every method is the one rounding; importance does not change it (as in llama.cpp)
    assert np.array_equal(_core.quantize("MXFP4", x, method="search"), ours)
    assert np.array_equal(_core.quantize("MXFP4", x, importance=np.arange(cols, dtype=np.float32)), ours)
    assert np.array_equal(_core.quantize("MXFP4", x, n_threads=3), _core.quantize("MXFP4", x, n_threads=1))


def test_dequantizes_like_gguf_to_the_nearest_level():
    x = finite_matrix(256, seed=5)
    q = _core.quantize("MXFP4", x)
    deq_gguf = gguf.quants.dequantize(q, Q.MXFP4).reshape(x.shape)
    deq_ours = np.asarray(_core.dequantize("MXFP4", q.reshape(-1)), np.float32).reshape(x.shape)
    assert np.array_equal(deq_ours.view(np.uint32), deq_gguf.view(np.uint32))
    # independent check of the rule: e = floor(log2 max|x|) - 2 + 127 (exactly from the float's
    # exponent, away from the log2f rounding rows 11-14), each value the nearest level
    blocks = x.reshape(-1, 32).astype(np.float64)
    e = q.reshape(-1, 17)[:, 0].astype(np.int64)
    amax = np.abs(blocks).max(1)
    rows = np.repeat(np.arange(x.shape[0]), 256 // 32)
    plain = (amax > 0) & ~np.isin(rows, [11, 12, 13, 14])
    want_e = np.frexp(amax[plain])[1] - 1 - 2 + 127
    assert np.array_equal(e[plain], want_e)
    d = np.ldexp(1.0, e - 128)[:, None]
    err = np.abs(deq_ours.reshape(-1, 32) - blocks)
    best = np.abs(d[..., None] * LEVELS.astype(np.float64) - blocks[..., None]).min(-1)
    assert np.all(err <= best * (1 + 1e-6) + 1e-300)
    # the error bound of fp4: at most half the widest level gap (4 d), plus clipping above 12 d
    assert np.all(err <= np.maximum(2 * d, np.abs(blocks) - 12 * d) * (1 + 1e-6))


def test_undefined_cases_are_defined():
    """Tiny blocks (e would be negative: gguf/ggml cast out of range), NaN, +-inf."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    x[0] *= np.float32(1e-39)  # subnormal: the finest scale, e = 0, and still the nearest levels
    x[1, 3], x[1, 40] = np.nan, 5.0
    x[2, 0], x[2, 1], x[2, 33] = np.inf, -np.inf, 2.0
    q = _core.quantize("MXFP4", x).reshape(-1, 17)
    d = np.asarray(_core.dequantize("MXFP4", q.reshape(-1)), np.float32).reshape(x.shape)
    assert q[0, 0] == 0 and q[1, 0] == 0
    blocks = x[0].reshape(2, 32).astype(np.float64)
    step = np.ldexp(1.0, -128)
    assert np.all(np.abs(d[0].reshape(2, 32) - blocks) <= 2 * step)
    assert d[1, 3] == 0.0 and np.all(np.isfinite(d))
    # NaN and inf do not set the scale: their blocks are those of the same values with 0 in their
    # place (a 0 takes level 0, as NaN does), apart from the inf values' own levels (+-12)
    clean = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    qc = _core.quantize("MXFP4", clean).reshape(-1, 17)
    assert np.array_equal(q[2:4], qc[2:4])
    assert np.array_equal(q[5], qc[5]) and q[4, 0] == qc[4, 0] and np.array_equal(q[4, 3:], qc[4, 3:])
    # qs[j] holds value j (low nibble) and j + 16 (high): +inf -> level 7 (+12), -inf -> 15 (-12)
    assert (q[4, 1] & 15, q[4, 2] & 15, qc[4, 1] & 15, qc[4, 2] & 15) == (7, 15, 0, 0)
    assert (q[4, 1:3] >> 4).tolist() == (qc[4, 1:3] >> 4).tolist()
    e_inf = int(q[4, 0])
    assert e_inf == int(np.floor(np.log2(np.abs(x[2, 2:32]).max()))) - 2 + 127
    assert d[2, 0] == 12 * np.ldexp(1.0, e_inf - 128) and d[2, 1] == -d[2, 0]


def test_table_reports_mxfp4_quantizer():
    rows = {r["name"]: r for r in _core.type_table()}
    assert rows["MXFP4"]["can_quantize"]
