"""edgellama._core.quantize: bit-exactness with gguf-py for the legacy types, error no worse than
plain rounding for every type, importance weights reducing the weighted error, argument errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gguf  # a runtime dependency of edgellama: never skipped
from gguf import GGMLQuantizationType as Q

from edgellama import _core

LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
KQUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def gguf_quantize(x: np.ndarray, t: str) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.asarray(gguf.quants.quantize(x, Q[t])).view(np.uint8).reshape(x.shape[0], -1)


def gguf_dequantize(b: np.ndarray, t: str, shape) -> np.ndarray:
    return gguf.quants.dequantize(b, Q[t]).reshape(shape)


def tricky_matrix(cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((24, cols)).astype(np.float32)
    x[0] = 0.0  # all zeros
    x[1] = 3.0  # constant rows
    x[2] = -0.125
    x[3] *= np.float32(1e30)  # huge (d overflows half precision)
    x[4] *= np.float32(1e-30)  # tiny
    x[5] *= np.float32(1e-39)  # subnormal (1/d overflows)
    x[6, :16] = -0.0
    x[7] = np.abs(x[7])  # all positive
    x[8] = -np.abs(x[8])  # all negative
    x[9, ::7] = 0.0
    x[10] = np.round(x[10] * 4) / 4  # exact half-way points
    x[11] = rng.uniform(-65504, 65504, cols).astype(np.float32)
    x[12] = np.float32(65519.0)  # rounds to the largest half
    x[13] = rng.standard_normal(cols).astype(np.float32) * np.float32(7.3e-5)
    x[14, 5] = 1000.0  # outlier
    return x


@pytest.mark.parametrize("t", LEGACY + ["F16", "BF16"])
@pytest.mark.parametrize("cols", [32, 256, 4096])
def test_reference_bit_exact_with_gguf(t, cols):
    x = tricky_matrix(cols, seed=cols)
    ours = _core.quantize(t, x, method="reference")
    ref = gguf_quantize(x, t)
    assert ours.dtype == np.uint8 and ours.shape == ref.shape
    bad = np.nonzero((ours != ref).any(axis=1))[0]
    assert bad.size == 0, f"{t}: rows {bad.tolist()} differ from gguf.quants.quantize"
    # "auto" without importance is the reference for these types
    assert np.array_equal(_core.quantize(t, x), ours)


@pytest.mark.parametrize("t", ["TQ1_0", "TQ2_0"])
@pytest.mark.parametrize("cols", [256, 4096])
def test_ternary_bit_exact_with_gguf(t, cols):
    """TQ1_0 / TQ2_0 have one rounding (the reference), bit for bit gguf.quants.quantize's, NaN and
    +-inf rows included; the blocks dequantize to d * {-1, 0, 1}."""
    x = tricky_matrix(cols, seed=cols)
    x[15, 3], x[16, 7], x[17, 1] = np.nan, np.inf, -np.inf
    ours = _core.quantize(t, x, method="reference")
    ref = gguf_quantize(x, t)
    assert ours.shape == ref.shape
    bad = np.nonzero((ours != ref).any(axis=1))[0]
    assert bad.size == 0, f"{t}: rows {bad.tolist()} differ from gguf.quants.quantize"
    assert np.array_equal(_core.quantize(t, x), ours)
    d = gguf_dequantize(ours[18:], t, x[18:].shape)
    scale = np.abs(x[18:]).reshape(6, -1, 256).max(-1, keepdims=True)
    t_levels = np.round(d.reshape(6, -1, 256) / np.where(scale == 0, 1, scale.astype(np.float16).astype(np.float32)))
    assert set(np.unique(t_levels)) <= {-1.0, 0.0, 1.0}


@pytest.mark.parametrize("t", LEGACY)
def test_threads_do_not_change_bytes(t):
    x = tricky_matrix(1024, seed=7)
    one = _core.quantize(t, x, n_threads=1, method="search")
    many = _core.quantize(t, x, n_threads=3, method="search")
    assert np.array_equal(one, many)


def test_table_reports_quantizers():
    rows = {r["name"]: r for r in _core.type_table()}
    for t in LEGACY + KQUANTS + ["F32", "F16", "BF16"]:
        assert rows[t]["can_quantize"], t


# ---------------------------------------------------------------------------------------------
# Straightforward rounding references written here, in NumPy: per (sub-)block min/max or absmax
# scale, integer scales against a half-precision super-block scale, nearest level. Returns the
# dequantized values.
# ---------------------------------------------------------------------------------------------
def _f16(v):
    return np.asarray(v, dtype=np.float32).astype(np.float16).astype(np.float32)


def naive_asym(x: np.ndarray, sub: int, nmax: int, smax: int) -> np.ndarray:
    blocks = x.reshape(-1, 256 // sub, sub)
    mn = np.minimum(blocks.min(-1), 0)
    mx = blocks.max(-1)
    scale = (mx - mn) / nmax
    d = _f16(scale.max(-1, keepdims=True) / smax)
    dmin = _f16((-mn).max(-1, keepdims=True) / smax)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.clip(np.nan_to_num(np.round(scale / d)), 0, smax)
        mc = np.clip(np.nan_to_num(np.round(-mn / dmin)), 0, smax)
    dl = (d * sc)[..., None]
    ml = (dmin * mc)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(np.nan_to_num(np.round((blocks + ml) / dl)), 0, nmax)
    return (dl * q - ml).reshape(x.shape)


def naive_sym(x: np.ndarray, sub: int, lo: int, hi: int, slo: int, shi: int) -> np.ndarray:
    blocks = x.reshape(-1, 256 // sub, sub)
    amax = np.abs(blocks).max(-1)
    scale = amax / hi
    d = _f16(scale.max(-1, keepdims=True) / shi)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.clip(np.nan_to_num(np.round(scale / d)), slo, shi)
    dl = (d * sc)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(np.nan_to_num(np.round(blocks / dl)), lo, hi)
    return (dl * q).reshape(x.shape)


NAIVE = {
    "Q2_K": lambda x: naive_asym(x, 16, 3, 15),
    "Q3_K": lambda x: naive_sym(x, 16, -4, 3, -32, 31),
    "Q4_K": lambda x: naive_asym(x, 32, 15, 63),
    "Q5_K": lambda x: naive_asym(x, 32, 31, 63),
    "Q6_K": lambda x: naive_sym(x, 16, -32, 31, -128, 127),
}


def rmse(a, b):
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.mark.parametrize("dist", ["normal", "heavy"])
@pytest.mark.parametrize("t", KQUANTS)
def test_kquant_error_no_worse_than_naive_rounding(t, dist):
    rng = np.random.default_rng(1)
    if dist == "normal":
        x = rng.standard_normal((32, 1024)).astype(np.float32) * 0.02
    else:
        x = (rng.standard_t(3, (32, 1024)) * 0.02).astype(np.float32)
    b = _core.quantize(t, x)
    assert b.shape == (32, 1024 // 256 * gguf.GGML_QUANT_SIZES[Q[t]][1])
    ours = gguf_dequantize(b, t, x.shape)
    # our own dequantization agrees with gguf-py's
    assert np.array_equal(ours, _core.dequantize(t, b).reshape(x.shape))
    naive = NAIVE[t](x)
    assert rmse(ours, x) <= rmse(naive, x), (t, rmse(ours, x), rmse(naive, x))


@pytest.mark.parametrize("t", LEGACY)
def test_legacy_search_no_worse_than_reference(t):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 512)).astype(np.float32)
    ref = gguf_dequantize(_core.quantize(t, x, method="reference"), t, x.shape)
    srch = gguf_dequantize(_core.quantize(t, x, method="search"), t, x.shape)
    assert rmse(srch, x) <= rmse(ref, x)


@pytest.mark.parametrize("t", KQUANTS)
def test_kquant_special_rows_roundtrip(t):
    x = tricky_matrix(512, seed=3)[[0, 1, 2, 6, 7, 8, 9, 14]]
    d = gguf_dequantize(_core.quantize(t, x), t, x.shape)
    assert np.all(np.isfinite(d))
    assert np.array_equal(d[0], np.zeros(512, np.float32))  # zeros stay exactly zero
    # a constant row stays within the type's resolution
    assert np.max(np.abs(d[1] - 3.0)) < 0.05 * 3.0


@pytest.mark.parametrize("t", LEGACY + KQUANTS)
def test_importance_reduces_weighted_error(t):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((32, 1024)).astype(np.float32)
    imp = rng.lognormal(0.0, 2.0, 1024).astype(np.float32)
    plain = gguf_dequantize(_core.quantize(t, x, method="search"), t, x.shape)
    weighted = gguf_dequantize(_core.quantize(t, x, importance=imp), t, x.shape)
    e_plain = float(np.mean(imp * (plain - x) ** 2))
    e_weighted = float(np.mean(imp * (weighted - x) ** 2))
    assert e_weighted < 0.9 * e_plain, (t, e_weighted, e_plain)


def test_f32_and_1d():
    x = np.arange(64, dtype=np.float32)
    b = _core.quantize("F32", x)
    assert b.shape == (1, 256) and np.array_equal(b.view(np.float32)[0], x)
    assert np.array_equal(_core.quantize("q8_0", x), _core.quantize("Q8_0", x))  # case-insensitive


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        (dict(type="Q4_K", data=np.zeros((2, 100), np.float32)), ValueError, "not a multiple of the Q4_K block size 256"),
        (dict(type="Q9_9", data=np.zeros((2, 32), np.float32)), ValueError, "unknown tensor type 'Q9_9'"),
        (dict(type="I32", data=np.zeros((2, 256), np.float32)), ValueError, "I32 has no quantizer"),
        (dict(type="Q4_0", data=np.zeros((2, 2, 32), np.float32)), ValueError, "1-D or 2-D"),
        (dict(type="Q4_0", data=np.zeros((2, 64), np.float32), importance=np.ones(32)), ValueError, "one weight per column (64)"),
        (dict(type="Q4_0", data=np.zeros((2, 32), np.float32), importance=-np.ones(32)), ValueError, "finite and >= 0"),
        (dict(type="Q4_0", data=np.zeros((2, 32), np.float32), importance=np.ones(32), method="reference"), ValueError, "does not take importance"),
        (dict(type="Q4_0", data=np.zeros((2, 32), np.float32), method="best"), ValueError, "method must be"),
    ],
)
def test_bad_arguments(kwargs, exc, msg):
    with pytest.raises(exc) as ei:
        _core.quantize(**kwargs)
    assert msg in str(ei.value)


# Rows that already lie on a Q4_1 / Q5_1 grid (a dequantized file, the smol-F32 benchmark model) must
# re-quantize to exactly those values, with or without an importance matrix: the search's float
# (d, m), once rounded to fp16, used to miss such grids by one fp16 step (issue 17: Q4_1/Q5_1 KL
# above llama-quantize's with an imatrix). A Q4_1 grid in Q5_1 needs d/2 and every other level.
@pytest.mark.parametrize("grid,t", [("Q4_1", "Q4_1"), ("Q5_1", "Q5_1"), ("Q4_1", "Q5_1")])
@pytest.mark.parametrize("weighted", [False, True])
def test_rows_on_a_grid_requantize_exactly(grid, t, weighted):
    rng = np.random.default_rng(5)
    src = (rng.standard_normal((16, 512)) * rng.lognormal(-3.0, 1.0, (16, 1))).astype(np.float32)
    x = gguf_dequantize(gguf_quantize(src, grid), grid, src.shape).astype(np.float32)
    # a few columns a million times more important than the rest, as in SmolLM2's ffn_down imatrix
    # (max/median 1.6e6): the float least-squares fit then pins those values and lets the rest drift
    imp = rng.lognormal(0.0, 1.0, 512) * np.where(rng.random(512) < 0.02, 1e6, 1.0)
    kwargs = {"importance": imp.astype(np.float32)} if weighted else {"method": "search"}
    back = gguf_dequantize(_core.quantize(t, x, **kwargs), t, x.shape)
    assert np.mean(back == x) == 1.0, (grid, t, weighted, np.mean(back == x), float(np.max(np.abs(back - x))))
