"""Attention variants of the fast-path tile kernel (AttnTileArgs.softcap / .window): every ISA against a
float64 reference and against the scalar kernel, windows that start inside and across the 64-key blocks,
blocks before the window never read, soft-capping with large scores, and tile independence (the
invariant behind n_batch / n_threads bit-identity) with a window."""

from __future__ import annotations

import numpy as np
import pytest

from edgellama import _core

ISAS = _core.available_isas()


def reference(q, k, v, n_keys0, scale, softcap=0.0, window=0):
    """float64: token t sees keys max(0, n - window)..n-1 with n = n_keys0 + t; scores soft-capped."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    out = np.empty_like(q)
    for t in range(q.shape[0]):
        n = n_keys0 + t
        lo = max(0, n - window) if window > 0 else 0
        s = scale * (q[t] @ k[lo:n].T)
        if softcap > 0:
            s = softcap * np.tanh(s / softcap)
        s -= s.max(axis=-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=-1, keepdims=True)
        out[t] = p @ v[lo:n]
    return out


def case(rng, n_tok, group, hd, n_keys0, dt=np.float16, q_scale=1.0):
    n_pos = n_keys0 + n_tok - 1
    q = (rng.standard_normal((n_tok, group, hd)) * q_scale).astype(np.float32)
    k = rng.standard_normal((n_pos, hd)).astype(dt)
    v = rng.standard_normal((n_pos, hd)).astype(dt)
    return q, k, v


# (n_tok, n_keys0, window): windows inside one block, across a boundary, longer than the context, 1
CASES = [
    (1, 200, 8), (1, 64, 64), (1, 65, 64), (1, 130, 1), (9, 60, 8), (40, 1, 8), (33, 100, 50),
    (17, 184, 70), (5, 3, 4096), (70, 150, 129),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("hd", [32, 80])
@pytest.mark.parametrize("group", [1, 3])
@pytest.mark.parametrize("softcap", [0.0, 2.5])
def test_window_and_softcap_match_float64(isa, hd, group, softcap):
    rng = np.random.default_rng(hd + group)
    scale = 1.0 / np.sqrt(hd)
    for n_tok, n_keys0, window in CASES:
        q, k, v = case(rng, n_tok, group, hd, n_keys0, q_scale=3.0)
        out = _core.kernel_attention(isa, q, k, v, n_keys0, scale, softcap, window)
        ref = reference(q, k, v, n_keys0, scale, softcap, window)
        # measured max over these cases: scalar 1.9e-6, avx2 7.3e-6 (sharp softmax, q_scale 3; exp/tanh
        # approximations); a wrong mask or cap is off by ~1e-1
        np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5, err_msg=f"{isa} {n_tok} {n_keys0} {window}")
        if isa != "scalar":
            sc = _core.kernel_attention("scalar", q, k, v, n_keys0, scale, softcap, window)
            np.testing.assert_allclose(out, sc, rtol=0, atol=2e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_blocks_before_the_window_are_not_read(isa):
    """Keys in whole 64-key blocks before every row's window are NaN: the result stays finite and exact,
    so a windowed layer's cost does not grow with the context."""
    rng = np.random.default_rng(5)
    n_tok, n_keys0, window, hd = 10, 300, 20, 64
    q, k, v = case(rng, n_tok, 2, hd, n_keys0, np.float32)
    first_block = (n_keys0 - window) // 64 * 64
    k[:first_block] = np.nan
    v[:first_block] = np.nan
    out = _core.kernel_attention(isa, q, k, v, n_keys0, 0.125, 0.0, window)
    assert np.all(np.isfinite(out))
    k[:first_block] = 0
    v[:first_block] = 0
    np.testing.assert_allclose(out, reference(q, k, v, n_keys0, 0.125, 0.0, window), rtol=0, atol=5e-6)


@pytest.mark.parametrize("isa", ISAS)
def test_softcap_saturates_large_scores(isa):
    """Scores in the thousands are capped to +-softcap: finite and equal to the float64 reference."""
    rng = np.random.default_rng(7)
    q, k, v = case(rng, 4, 2, 64, 100, q_scale=500.0)
    out = _core.kernel_attention(isa, q, k, v, 100, 0.125, 5.0, 0)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, reference(q, k, v, 100, 0.125, 5.0, 0), rtol=0, atol=2e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_window_result_independent_of_tiling(isa):
    rng = np.random.default_rng(11)
    n_tok, n_keys0, window = 70, 60, 40
    q, k, v = case(rng, n_tok, 3, 64, n_keys0)
    whole = _core.kernel_attention(isa, q, k, v, n_keys0, 0.125, 3.0, window)
    for a, b in ((0, 1), (5, 6), (4, 37), (37, 70), (69, 70)):
        part = _core.kernel_attention(isa, q[a:b], k, v, n_keys0 + a, 0.125, 3.0, window)
        np.testing.assert_array_equal(part, whole[a:b])


def test_argument_checks():
    q = np.zeros((1, 1, 64), np.float32)
    k = np.zeros((3, 64), np.float16)
    with pytest.raises(ValueError, match="softcap and window"):
        _core.kernel_attention("scalar", q, k, k, 2, 1.0, -1.0, 0)
    with pytest.raises(ValueError, match="softcap and window"):
        _core.kernel_attention("scalar", q, k, k, 2, 1.0, 0.0, -3)
