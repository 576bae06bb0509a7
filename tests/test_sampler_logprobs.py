"""edgellama._core.log_softmax and top_logprobs (used for `logprobs=` in completions)."""

from __future__ import annotations

import numpy as np
import pytest

from edgellama import _core

INF = float("inf")


def ref_log_softmax(x):
    x = np.array(x, dtype=np.float64)
    x[np.isnan(x)] = -INF
    m = x.max()
    with np.errstate(divide="ignore"):
        return x - m - np.log(np.exp(x - m).sum())


def test_log_softmax_matches_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 17, 32000):
        x = rng.normal(scale=4.0, size=n).astype(np.float32)
        got = _core.log_softmax(x)
        assert got.dtype == np.float32 and got.shape == (n,)
        np.testing.assert_allclose(got, ref_log_softmax(x), rtol=1e-6, atol=1e-6)
        assert abs(np.exp(got.astype(np.float64)).sum() - 1.0) < 1e-5


def test_log_softmax_extreme_values():
    x = np.array([1e30, 0.0, -1e30, 1e30 - 1e24], np.float32)
    got = _core.log_softmax(x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref_log_softmax(x), rtol=1e-6)


def test_log_softmax_nan_and_inf():
    x = np.array([np.nan, 0.0, -INF, 1.0], np.float32)
    got = _core.log_softmax(x)
    assert got[0] == -INF and got[2] == -INF
    np.testing.assert_allclose(got[[1, 3]], ref_log_softmax([0.0, 1.0]), rtol=1e-6)
    got = _core.log_softmax(np.array([INF, 0.0, INF, 5.0], np.float32))
    np.testing.assert_allclose(got, [np.log(0.5), -INF, np.log(0.5), -INF])


def test_log_softmax_input_unchanged_and_float64_accepted():
    x = np.array([0.5, -1.0, 2.0], np.float32)
    before = x.copy()
    _core.log_softmax(x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(_core.log_softmax(x.astype(np.float64)), _core.log_softmax(x))


@pytest.mark.parametrize("fill", [-INF, np.nan])
def test_log_softmax_all_invalid(fill):
    with pytest.raises(ValueError, match="all logits are -inf/NaN"):
        _core.log_softmax(np.full(4, fill, np.float32))
    with pytest.raises(ValueError, match="all logits are -inf/NaN"):
        _core.top_logprobs(np.full(4, fill, np.float32), 2)


def test_top_logprobs_sorted_and_correct():
    rng = np.random.default_rng(1)
    x = rng.normal(size=1000).astype(np.float32)
    ids, lps = _core.top_logprobs(x, 5)
    assert isinstance(ids, list) and isinstance(lps, list) and len(ids) == len(lps) == 5
    assert all(isinstance(i, int) for i in ids) and all(isinstance(v, float) for v in lps)
    ref = ref_log_softmax(x)
    assert ids == np.argsort(-ref, kind="stable")[:5].tolist()
    np.testing.assert_allclose(lps, ref[ids], rtol=1e-6)
    assert lps == sorted(lps, reverse=True)


def test_top_logprobs_ties_k_clamp_and_zero():
    x = np.array([1.0, 3.0, 3.0, 2.0, 3.0], np.float32)
    ids, lps = _core.top_logprobs(x, 4)
    assert ids == [1, 2, 4, 3]
    ids, lps = _core.top_logprobs(x, 100)
    assert ids == [1, 2, 4, 3, 0]
    assert _core.top_logprobs(x, 0) == ([], [])
    with pytest.raises(ValueError, match="k"):
        _core.top_logprobs(x, -1)


def test_top_logprobs_nan_last():
    x = np.array([np.nan, 0.0, 1.0], np.float32)
    ids, lps = _core.top_logprobs(x, 3)
    assert ids == [2, 1, 0] and lps[2] == -INF
