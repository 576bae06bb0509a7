"""Q8_0's own search (cpp/quant/quantize_q8_0.cpp: per block the best of four fp16 scales: the
largest value mapped to 127, to -128, and two least-squares refits). Its weighted error, measured
here in float64 on the bytes it writes, is never above plain max/127 rounding's (gguf-py's
reference quantizer, = llama.cpp's) on any block, and below it on average by a margin that a search
with fewer candidates misses; rows already on a Q8_0 grid come back exactly; blocks with a NaN or an
infinity store zeros and huge blocks a saturated scale instead of an infinite one. The bytes of the
portable, AVX2 and AVX-512 code are compared in test_quantize_search_simd.py."""

from __future__ import annotations

import warnings

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from edgellama import _core

COLS = 1024


def rows(seed: int = 0) -> np.ndarray:
    """64 rows: Gaussian at scales 1e-4..1e4, heavy tails, small values with outliers, rows with
    all-zero blocks, one-signed rows."""
    rng = np.random.default_rng(seed)
    r = [rng.standard_normal(COLS) * 10.0 ** rng.uniform(-4, 4) for _ in range(24)]
    r += [rng.standard_t(2.5, COLS) * 10.0 ** rng.uniform(-2, 2) for _ in range(8)]
    for _ in range(8):
        v = rng.standard_normal(COLS) * 0.01
        v[rng.integers(0, COLS, 20)] = rng.choice([-1, 1], 20) * rng.uniform(1, 50, 20)
        r.append(v)
    for _ in range(8):
        v = rng.standard_normal(COLS)
        v.reshape(-1, 32)[rng.random(COLS // 32) < 0.3] = 0.0
        r.append(v)
    r += [np.abs(rng.standard_normal(COLS)) * (-1) ** i for i in range(8)]
    return np.stack(r).astype(np.float32)


def importances() -> dict:
    rng = np.random.default_rng(7)
    spread = rng.lognormal(0.0, 2.0, COLS)
    spread[rng.random(COLS) < 0.1] = 0.0  # unimportant columns, and blocks of mostly zeros
    return {"none": None, "gamma": rng.gamma(1.0, 1.0, COLS).astype(np.float32), "lognormal": spread.astype(np.float32)}


def objective_weights(imp) -> np.ndarray:
    """The search's weights (quantize.cpp block_weights): importance plus 1e-4 of the block's mean,
    ones for a block without importance."""
    if imp is None:
        return np.ones(COLS)
    b = imp.reshape(-1, 32).astype(np.float64)
    s = b.sum(axis=1, keepdims=True)
    return np.where(s > 0, b + (s / 32 * 1e-4).astype(np.float32), 1.0).reshape(-1)


def dequantize(b: np.ndarray, shape) -> np.ndarray:
    return gguf.quants.dequantize(b, Q.Q8_0).reshape(shape).astype(np.float64)


def block_errors(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w * (y - x.astype(np.float64)) ** 2).reshape(-1, 32).sum(axis=1)


# Mean over blocks of (search error / plain rounding error), measured on rows(0): 0.8545, 0.8178,
# 0.7107. The bounds are 0.5 % above; without the second refit the search measures 0.8586, 0.8233,
# 0.7220, with only the two end-point candidates 0.8807, 0.8638, 0.8081, plain rounding at the
# stored scale 0.96-0.97.
MEAN_RATIO_BOUND = {"none": 0.859, "gamma": 0.822, "lognormal": 0.7145}


@pytest.mark.parametrize("imp_name", ["none", "gamma", "lognormal"])
def test_weighted_error_never_above_plain_rounding(imp_name):
    x = rows(0)
    imp = importances()[imp_name]
    w = objective_weights(imp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = dequantize(gguf.quants.quantize(x, Q.Q8_0), x.shape)
    ours = dequantize(_core.quantize("Q8_0", x, importance=imp, method="search"), x.shape)
    e_plain, e_ours = block_errors(x, plain, w), block_errors(x, ours, w)
    # per block: the first candidate alone is plain rounding with its levels re-rounded for the
    # stored fp16 scale (never worse); the search keeps the lowest of its float32 error sums
    assert np.all(e_ours <= e_plain * (1 + 1e-6)), np.max(e_ours / np.maximum(e_plain, 1e-300))
    zero = e_plain == 0
    assert zero.sum() >= 70 and np.all(e_ours[zero] == 0)  # the all-zero blocks stay exact
    ratio = float(np.mean(e_ours[~zero] / e_plain[~zero]))
    assert ratio <= MEAN_RATIO_BOUND[imp_name], (imp_name, ratio)


@pytest.mark.parametrize("weighted", [False, True])
def test_rows_on_a_q8_0_grid_requantize_exactly(weighted):
    rng = np.random.default_rng(3)
    src = (rng.standard_normal((16, 512)) * rng.lognormal(-3.0, 1.0, (16, 1))).astype(np.float32)
    src[::4, ::7] *= -20.0  # blocks whose largest value is negative (level -127 on the grid)
    x = dequantize(gguf.quants.quantize(src, Q.Q8_0), src.shape).astype(np.float32)
    imp = (rng.lognormal(0.0, 1.0, 512) * np.where(rng.random(512) < 0.02, 1e6, 1.0)).astype(np.float32)
    back = dequantize(_core.quantize("Q8_0", x, importance=imp if weighted else None, method="search"), x.shape)
    assert np.array_equal(back, x.astype(np.float64))


def test_non_finite_and_huge_blocks():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 64)).astype(np.float32)
    x[0, 3] = np.nan
    x[1, 40] = np.inf
    x[2, 0] = -np.inf
    x[3] *= np.float32(1e30)  # max/127 overflows half precision: the largest finite half is stored
    x[4] = 0.0
    b = _core.quantize("Q8_0", x, method="search")
    blocks = b.reshape(5, 2, 34)
    d = blocks[:, :, :2].copy().view(np.float16).reshape(5, 2)
    q = blocks[:, :, 2:].view(np.int8)
    for r, blk in ((0, 0), (1, 1), (2, 0)):  # the block holding the NaN / infinity: zeros
        assert d[r, blk] == 0 and not q[r, blk].any()
    for r, blk in ((0, 1), (1, 0), (2, 1)):  # the row's other block is quantized as usual
        y = d[r, blk].astype(np.float64) * q[r, blk]
        assert np.max(np.abs(y - x[r, 32 * blk:32 * blk + 32])) <= abs(float(d[r, blk])) / 2 * 1.001
    assert np.all(np.abs(d[3].astype(np.float32)) == np.float32(65504.0))
    assert np.all(np.isfinite(dequantize(b, x.shape)))
    assert not b[4].any()  # an all-zero row is all zero bytes
