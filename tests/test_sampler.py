"""edgellama._core.Sampler against a NumPy reference of the same chain:
logit bias -> penalties -> top-k -> typical -> top-p -> min-p -> temperature -> softmax."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from edgellama import _core
from mt19937_reference import uniform_doubles

INF = float("inf")
NO_TRUNC = dict(top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0)


# ------------------------------------------------------------------------------------------------
# NumPy reference
# ------------------------------------------------------------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    if m == INF:
        w = (x == INF).astype(np.float64)
    else:
        w = np.exp(x - m)
    return w / w.sum()


def ref_probs(
    logits,
    *,
    temperature=0.8,
    top_k=40,
    top_p=0.95,
    min_p=0.05,
    typical_p=1.0,
    repeat_penalty=1.0,
    repeat_last_n=64,
    frequency_penalty=0.0,
    presence_penalty=0.0,
    logit_bias=None,
    history=(),
    seed=None,
) -> np.ndarray:
    """The distribution the sampler should draw from, over the whole vocabulary. Parameters are
    float32 in the sampler, so thresholds are compared at float32 precision here too."""
    temperature, top_p, min_p, typical_p = (float(np.float32(v)) for v in (temperature, top_p, min_p, typical_p))
    x = np.array(logits, dtype=np.float32)
    n = x.size
    x[np.isnan(x)] = -INF
    f32 = np.float32
    for tok, b in (logit_bias or {}).items():
        x[tok] = f32(x[tok] + f32(b))
    window = list(history)[-repeat_last_n:] if repeat_last_n > 0 else []
    for tok, cnt in Counter(t for t in window if t < n).items():
        v = x[tok]
        v = f32(v * f32(repeat_penalty)) if v <= 0 else f32(v / f32(repeat_penalty))
        v = f32(v - f32(f32(cnt) * f32(frequency_penalty) + f32(presence_penalty)))
        x[tok] = v
    out = np.zeros(n, dtype=np.float64)
    if temperature <= 0:
        out[int(np.argmax(x))] = 1.0  # np.argmax returns the first (lowest id) maximum
        return out

    ids = [i for i in range(n) if x[i] != -INF]
    ids.sort(key=lambda i: (-float(x[i]), i))  # logit desc, id asc
    if 0 < top_k < len(ids):
        ids = ids[:top_k]
    if typical_p < 1.0 and len(ids) > 1:
        p = _softmax(x[ids])
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.sum(np.where(p > 0, p * np.log(p), 0.0))
            score = np.where(p > 0, np.abs(-np.log(p) - ent), INF)
        order = sorted(range(len(ids)), key=lambda j: (score[j], ids[j]))
        cum, keep = 0.0, len(order)
        for j, o in enumerate(order):
            cum += p[o]
            if cum > typical_p:
                keep = j + 1
                break
        ids = sorted((ids[o] for o in order[:keep]), key=lambda i: (-float(x[i]), i))
    if top_p < 1.0 and len(ids) > 1:
        p = _softmax(x[ids])
        c = np.cumsum(p)
        hit = np.flatnonzero(c >= top_p)
        if hit.size:
            ids = ids[: hit[0] + 1]
    if min_p > 0 and len(ids) > 1:
        p = _softmax(x[ids])
        ids = [i for i, pi in zip(ids, p) if pi >= min_p * p.max()]
    xs = x[ids].astype(np.float64)
    m = xs.max()
    w = (xs == INF).astype(np.float64) if m == INF else np.exp((xs - m) / temperature)
    out[ids] = w / w.sum()
    return out


def make_sampler(history=(), **kw):
    kw = {k: v for k, v in kw.items()}
    s = _core.Sampler(**kw)
    for t in history:
        s.accept(t)
    return s


def chi_square(samples, probs) -> tuple[float, int]:
    """Pearson chi-square of observed counts vs expected (tokens with p>0), and its dof."""
    n = len(samples)
    counts = np.bincount(samples, minlength=len(probs))
    assert counts[probs == 0].sum() == 0, "sampled a token with probability 0"
    keep = probs > 0
    exp = probs[keep] * n
    return float(((counts[keep] - exp) ** 2 / exp).sum()), int(keep.sum()) - 1


def test_reference_selftest():
    # The reference itself, on a hand-computed case: it must not silently agree with anything.
    p = ref_probs([0.0, math.log(2.0), math.log(4.0)], temperature=1.0, **NO_TRUNC)
    np.testing.assert_allclose(p, [1 / 7, 2 / 7, 4 / 7])
    p = ref_probs([0.0, math.log(2.0), math.log(4.0)], temperature=1.0, top_k=0, top_p=0.5, min_p=0, typical_p=1)
    np.testing.assert_allclose(p, [0, 0, 1])


# ------------------------------------------------------------------------------------------------
# Greedy
# ------------------------------------------------------------------------------------------------


def test_greedy_is_argmax():
    rng = np.random.default_rng(0)
    for _ in range(50):
        logits = rng.normal(size=100).astype(np.float32)
        s = _core.Sampler(temperature=0.0, seed=int(rng.integers(1 << 32)))
        assert s.sample(logits) == int(np.argmax(logits))


def test_greedy_matches_argmax_on_vocab_sizes_ties_and_extremes():
    """greedy() runs 4/8 values at a time (SSE2) then a scalar tail: the lowest id of the maximum
    for every size and tie position (inside a vector, across lanes, in the tail), with +inf, -inf
    and NaN (never chosen) in the logits."""
    rng = np.random.default_rng(7)
    for n in (1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 49157):
        for trial in range(40):
            logits = rng.normal(size=n).astype(np.float32)
            kind = trial % 5
            if kind == 1 and n > 1:  # ties of the maximum at random positions
                top = logits.max() + 1.0
                logits[rng.choice(n, size=min(n, 3), replace=False)] = top
            elif kind == 2:  # NaN and -inf sprinkled in (NaN is never the choice)
                logits[rng.random(n) < 0.3] = np.nan
                logits[rng.random(n) < 0.2] = -INF
                if np.all(~(logits > -INF)):
                    logits[int(rng.integers(n))] = 0.0
            elif kind == 3:  # +inf, possibly twice: the first one wins
                logits[rng.choice(n, size=min(n, 2), replace=False)] = np.inf
            elif kind == 4 and n > 1:  # the maximum only in the last (tail) value, or only the first
                logits[-1 if trial % 2 else 0] = logits.max() + 1.0
            ref = np.where(np.isnan(logits), -INF, logits)
            assert _core.Sampler(temperature=0.0).sample(logits) == int(np.argmax(ref)), (n, kind)


def test_greedy_with_bias():
    logits = np.array([0.0, 5.0, 1.0, 2.0], np.float32)
    assert _core.Sampler(temperature=0.0).sample(logits) == 1
    assert _core.Sampler(temperature=0.0, logit_bias={1: -10.0}).sample(logits) == 3
    assert _core.Sampler(temperature=0.0, logit_bias={0: 5.5}).sample(logits) == 0
    assert _core.Sampler(temperature=0.0, logit_bias={1: -INF, 3: -INF}).sample(logits) == 2


def test_greedy_ties_lowest_id():
    logits = np.array([1.0, 3.0, 2.0, 3.0, 3.0], np.float32)
    assert _core.Sampler(temperature=0.0).sample(logits) == 1
    assert _core.Sampler(temperature=-1.0).sample(logits) == 1
    assert _core.Sampler(temperature=0.0, logit_bias={1: -1.0}).sample(logits) == 3


def test_greedy_after_penalties():
    logits = np.array([2.0, 1.9, -5.0], np.float32)
    s = _core.Sampler(temperature=0.0, repeat_penalty=1.1)
    assert s.sample(logits) == 0
    s.accept(0)  # 2.0 / 1.1 = 1.818 < 1.9
    assert s.sample(logits) == 1
    s.reset()
    assert s.sample(logits) == 0


def test_greedy_probabilities_one_hot():
    logits = np.array([0.0, 5.0, 1.0], np.float32)
    np.testing.assert_array_equal(_core.Sampler(temperature=0).probabilities(logits), [0, 1, 0])


# ------------------------------------------------------------------------------------------------
# Determinism and the RNG
# ------------------------------------------------------------------------------------------------


def _draws(seed, n=200, **kw):
    logits = np.linspace(-1, 1, 50, dtype=np.float32)
    s = _core.Sampler(seed=seed, **{**NO_TRUNC, "temperature": 1.0, **kw})
    return [s.sample(logits) for _ in range(n)]


def test_same_seed_same_sequence():
    assert _draws(1234) == _draws(1234)
    assert _draws(0) == _draws(0)
    assert _draws(2**64 - 1) == _draws(2**64 - 1)


def test_different_seeds_differ():
    seqs = {tuple(_draws(seed)) for seed in (0, 1, 2, 3, 0xFFFFFFFF, 2**63 + 4)}
    assert len(seqs) == 6
    # the seed is taken mod 2^32, as std::mt19937 and llama.cpp's uint32 seed do
    assert _draws(2**32 + 3) == _draws(3)


def test_reset_and_seed_property_reseed():
    logits = np.linspace(-1, 1, 50, dtype=np.float32)
    s = _core.Sampler(seed=7, **NO_TRUNC, temperature=1.0)
    assert s.seed == 7
    a = [s.sample(logits) for _ in range(50)]
    s.reset()
    assert [s.sample(logits) for _ in range(50)] == a
    s.seed = 8
    assert s.seed == 8
    b = [s.sample(logits) for _ in range(50)]
    assert b == _draws(8, n=50)
    assert b != a


def test_default_seed_is_deterministic():
    assert _core.Sampler().seed == 0xFFFFFFFF


def test_golden_sequence():
    # A fixed seed gives these tokens everywhere (softmax of fixed logits, default truncation).
    logits = np.array([0.5, 1.5, -0.25, 2.0, 1.0, 0.0, -1.0, 1.75], np.float32)
    s = _core.Sampler(seed=42)
    got = [s.sample(logits) for _ in range(16)]
    # Recompute from the reference distribution and llama.cpp's RNG stream (cumulative in the
    # sampler's candidate order: after truncation candidates are sorted by logit desc, id asc; the
    # first candidate whose running sum reaches u * total, as llama.cpp's dist sampler picks).
    p = ref_probs(logits, seed=42)
    order = sorted((i for i in range(len(p)) if p[i] > 0), key=lambda i: (-float(logits[i]), i))
    want = []
    for u in uniform_doubles(42, 16):
        c = np.cumsum(p[order])
        want.append(order[int(np.searchsorted(c, u * c[-1], side="left"))])
    assert got == want


# ------------------------------------------------------------------------------------------------
# The distribution
# ------------------------------------------------------------------------------------------------


def test_softmax_distribution_chi_square():
    logits = np.array([1.0, 0.0, 2.0, -1.0, 0.5, 1.5], np.float32)
    probs = ref_probs(logits, temperature=1.0, **NO_TRUNC)
    s = _core.Sampler(seed=12345, temperature=1.0, **NO_TRUNC)
    samples = [s.sample(logits) for _ in range(20000)]
    chi2, dof = chi_square(samples, probs)
    assert dof == 5
    assert chi2 < 30.0, f"chi-square {chi2:.1f} with {dof} dof (p < 1e-5 under the softmax)"
    # ... and the test is able to fail: the same samples are far from a temperature-2 softmax.
    wrong = ref_probs(logits, temperature=2.0, **NO_TRUNC)
    assert chi_square(samples, wrong)[0] > 300


@pytest.mark.parametrize(
    "kw",
    [
        dict(temperature=0.7),
        dict(temperature=1.3, top_k=3, top_p=1.0, min_p=0.0),
        dict(temperature=1.0, top_k=0, top_p=0.8, min_p=0.0),
        dict(temperature=0.9, top_k=0, top_p=1.0, min_p=0.2),
        dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=0.5),
        dict(temperature=1.5, repeat_penalty=1.3, frequency_penalty=0.2, presence_penalty=0.3, history=[2, 2, 4]),
    ],
)
def test_sample_follows_probabilities(kw):
    logits = np.array([1.0, 0.0, 2.0, -1.0, 0.5, 1.5, 1.2, -0.3], np.float32)
    history = kw.pop("history", ())
    probs = ref_probs(logits, history=history, **kw)
    s = make_sampler(history, seed=99, **kw)
    np.testing.assert_allclose(s.probabilities(logits), probs, rtol=1e-5, atol=1e-7)
    samples = [s.sample(logits) for _ in range(10000)]
    chi2, dof = chi_square(samples, probs)
    assert chi2 < 25 + 3 * dof, f"chi-square {chi2:.1f} with {dof} dof"


def _random_case(rng, n):
    logits = rng.normal(scale=2.0, size=n).astype(np.float32)
    kw = dict(
        temperature=float(rng.choice([0.3, 0.8, 1.0, 1.7])),
        top_k=int(rng.choice([0, 1, 5, 40, n + 3])),
        top_p=float(rng.choice([1.0, 0.9, 0.5, 0.0])),
        min_p=float(rng.choice([0.0, 0.05, 0.3])),
        typical_p=float(rng.choice([1.0, 1.0, 0.7])),
        repeat_penalty=float(rng.choice([1.0, 1.1, 0.8])),
        repeat_last_n=int(rng.choice([0, 3, 64])),
        frequency_penalty=float(rng.choice([0.0, 0.4, -0.2])),
        presence_penalty=float(rng.choice([0.0, 0.6])),
    )
    history = [int(t) for t in rng.integers(0, n, size=int(rng.integers(0, 12)))]
    bias = {int(t): float(rng.normal(scale=3)) for t in rng.integers(0, n, size=int(rng.integers(0, 4)))}
    if bias:
        kw["logit_bias"] = bias
    return logits, kw, history


def test_probabilities_match_reference_random_configs():
    rng = np.random.default_rng(2024)
    for case in range(300):
        logits, kw, history = _random_case(rng, int(rng.choice([2, 7, 60, 300])))
        want = ref_probs(logits, history=history, **kw)
        got = make_sampler(history, **kw).probabilities(logits)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=f"case {case}: {kw} history={history}")


def test_top_k_on_large_vocabularies_matches_reference():
    """Top-k scans a full heap's candidates four at a time (skipping vectors that cannot beat its
    worst) after a scalar start: the same kept set for odd vocabulary sizes, heavy ties (logits on a
    coarse grid: the lowest ids win), -inf holes, +inf, and a vocabulary mostly -inf."""
    rng = np.random.default_rng(11)
    for n in (41, 1003, 49157):
        for trial in range(6):
            logits = (np.round(rng.normal(scale=2.0, size=n) * 2) / 2).astype(np.float32)  # many ties
            if trial % 3 == 1:
                logits[rng.random(n) < 0.5] = -INF
            if trial % 3 == 2:
                logits[rng.random(n) < 0.97] = -INF
                logits[int(rng.integers(n))] = np.inf
            for k in (1, 5, 40, 256):
                kw = dict(temperature=1.0, top_k=k, top_p=1.0, min_p=0.0)
                want = ref_probs(logits, **kw)
                got = _core.Sampler(**kw).probabilities(logits)
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=f"n={n} trial={trial} k={k}")


def test_top_p_without_top_k_on_large_vocabularies_matches_reference():
    """Top-p without top-k: the normalizer over the whole vocabulary in float exps (the same
    bits with and without SSE2), the tokens within 8 of the best sorted first when they carry the
    mass, the chunked sort past them otherwise: the kept set and probabilities of the reference for
    peaked distributions (the cut among the front), flat ones (far past it, or no front shortcut at
    all) and odd sizes around the vector width."""
    rng = np.random.default_rng(5)
    for n in (5, 7, 1003, 49157):
        for trial in range(4):
            logits = rng.normal(scale=2.0 if trial % 2 else 0.3, size=n).astype(np.float32)
            if trial >= 2:  # peaked: a few tokens far above the rest, like a trained model's
                logits[rng.choice(n, size=min(n, 3), replace=False)] += np.float32(14.0)
            for top_p in (0.3, 0.9, 0.99):
                kw = dict(temperature=1.0, top_k=0, top_p=top_p, min_p=0.0)
                want = ref_probs(logits, **kw)
                got = _core.Sampler(**kw).probabilities(logits)
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=f"n={n} trial={trial} p={top_p}")


def test_top_k_only_returns_top_k():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=1000).astype(np.float32)
    top = set(np.argsort(-logits)[:5].tolist())
    s = _core.Sampler(temperature=5.0, top_k=5, top_p=1.0, min_p=0.0, seed=3)
    seen = {s.sample(logits) for _ in range(2000)}
    assert seen == top


def test_top_k_ties_keep_lowest_ids():
    logits = np.array([1.0, 3.0, 0.0, 3.0, 3.0, 3.0, -INF], np.float32)
    for k, want in [(1, {1}), (2, {1, 3}), (3, {1, 3, 4}), (5, {0, 1, 3, 4, 5})]:
        p = _core.Sampler(temperature=1.0, top_k=k, top_p=1.0, min_p=0.0).probabilities(logits)
        assert set(np.flatnonzero(p).tolist()) == want, k
        np.testing.assert_allclose(p, ref_probs(logits, temperature=1.0, top_k=k, top_p=1.0, min_p=0.0), rtol=1e-6)


def test_top_k_larger_than_vocab_and_disabled():
    logits = np.array([0.0, 1.0, 2.0], np.float32)
    for k in (0, -1, 3, 100):
        p = _core.Sampler(temperature=1.0, top_k=k, top_p=1.0, min_p=0.0).probabilities(logits)
        assert (p > 0).all()


def test_top_p_smallest_set_reaching_p():
    # probabilities 0.4, 0.3, 0.2, 0.1 (in a shuffled id order)
    p = np.array([0.2, 0.4, 0.1, 0.3])
    logits = np.log(p).astype(np.float32)
    for top_p, want in [(0.35, {1}), (0.45, {1, 3}), (0.69, {1, 3}), (0.75, {1, 3, 0}), (0.95, {0, 1, 2, 3})]:
        s = _core.Sampler(temperature=1.0, top_k=0, top_p=top_p, min_p=0.0, seed=5)
        probs = s.probabilities(logits)
        assert set(np.flatnonzero(probs).tolist()) == want, top_p
        np.testing.assert_allclose(probs[list(want)], p[list(want)] / p[list(want)].sum(), rtol=1e-5)
        assert {s.sample(logits) for _ in range(500)} == want
    # top_p = 0 keeps exactly the most probable token
    assert _core.Sampler(temperature=1.0, top_k=0, top_p=0.0, min_p=0.0).probabilities(logits)[1] == 1.0


def test_top_p_large_vocab_without_top_k():
    # Exercises the growing partial sort: the kept set spans many chunks.
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=1.5, size=50000).astype(np.float32)
    for top_p in (0.5, 0.9, 0.99):
        want = ref_probs(logits, temperature=1.0, top_k=0, top_p=top_p, min_p=0.0)
        got = _core.Sampler(temperature=1.0, top_k=0, top_p=top_p, min_p=0.0).probabilities(logits)
        assert set(np.flatnonzero(got).tolist()) == set(np.flatnonzero(want).tolist())
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-9)


def test_min_p_drops_below_fraction_of_max():
    rng = np.random.default_rng(11)
    logits = rng.normal(scale=2.0, size=200).astype(np.float32)
    p = _softmax(logits)
    for min_p in (0.01, 0.1, 0.5, 1.0):
        got = _core.Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=min_p).probabilities(logits)
        kept = np.flatnonzero(got)
        assert set(kept.tolist()) == set(np.flatnonzero(p >= min_p * p.max()).tolist())
        np.testing.assert_allclose(got[kept], p[kept] / p[kept].sum(), rtol=1e-5)
    s = _core.Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.3, seed=1)
    allowed = set(np.flatnonzero(p >= 0.3 * p.max()).tolist())
    assert {s.sample(logits) for _ in range(500)} <= allowed


def test_typical_against_reference():
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=2.0, size=30).astype(np.float32)
    for tp in (0.2, 0.5, 0.9):
        want = ref_probs(logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=tp)
        got = _core.Sampler(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=tp).probabilities(logits)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)
        assert 0 < np.count_nonzero(got) < 30


def test_temperature_scales_logits():
    logits = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
    for t in (0.25, 0.5, 1.0, 2.0):
        got = _core.Sampler(temperature=t, **NO_TRUNC).probabilities(logits)
        np.testing.assert_allclose(got, _softmax(logits / t), rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Penalties
# ------------------------------------------------------------------------------------------------


def test_penalties_hand_computed():
    logits = np.array([2.0, -1.0, 0.5], np.float32)
    s = make_sampler([0, 1, 0], temperature=1.0, **NO_TRUNC, repeat_penalty=2.0, frequency_penalty=0.5,
                     presence_penalty=0.25)
    # token 0: 2/2 - 2*0.5 - 0.25 = -0.25 ; token 1: -1*2 - 1*0.5 - 0.25 = -2.75 ; token 2 untouched
    np.testing.assert_allclose(s.probabilities(logits), _softmax([-0.25, -2.75, 0.5]), rtol=1e-6)


@pytest.mark.parametrize(
    "pen",
    [
        dict(repeat_penalty=1.5),
        dict(repeat_penalty=0.7),
        dict(frequency_penalty=0.3),
        dict(frequency_penalty=-0.3),
        dict(presence_penalty=1.0),
        dict(repeat_penalty=1.2, frequency_penalty=0.1, presence_penalty=0.4),
    ],
)
def test_penalties_match_reference(pen):
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=40).astype(np.float32)
    history = [3, 3, 3, 7, 1, 7, 20, 39, 0]
    want = ref_probs(logits, temperature=1.0, **NO_TRUNC, history=history, **pen)
    got = make_sampler(history, temperature=1.0, **NO_TRUNC, **pen).probabilities(logits)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
    # and they really changed something
    assert not np.allclose(got, _softmax(logits), rtol=1e-3)


def test_penalty_window_is_last_n():
    logits = np.zeros(5, np.float32)
    s = make_sampler([0, 1, 2, 3], temperature=1.0, **NO_TRUNC, repeat_last_n=2, presence_penalty=1.0)
    assert s.history == [2, 3]
    want = ref_probs(logits, temperature=1.0, **NO_TRUNC, repeat_last_n=2, presence_penalty=1.0, history=[0, 1, 2, 3])
    got = s.probabilities(logits)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[0] == got[1] == got[4] > got[2] == got[3]
    s.reset()
    assert s.history == []
    np.testing.assert_allclose(s.probabilities(logits), np.full(5, 0.2), rtol=1e-6)


def test_repeat_last_n_zero_disables_penalties():
    logits = np.array([1.0, 2.0, 3.0], np.float32)
    s = make_sampler([0, 1, 2], temperature=1.0, **NO_TRUNC, repeat_last_n=0, repeat_penalty=2.0,
                     presence_penalty=3.0)
    assert s.history == []
    np.testing.assert_allclose(s.probabilities(logits), _softmax(logits), rtol=1e-6)


def test_history_tokens_beyond_vocab_are_ignored():
    logits = np.array([1.0, 2.0, 3.0], np.float32)
    s = make_sampler([100, 2], temperature=1.0, **NO_TRUNC, presence_penalty=1.0)
    np.testing.assert_allclose(s.probabilities(logits), _softmax([1.0, 2.0, 2.0]), rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Inputs: not modified, dtypes, NaN/inf
# ------------------------------------------------------------------------------------------------


def test_input_logits_unchanged():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=500).astype(np.float32)
    logits[7] = np.nan
    logits[8] = -INF
    before = logits.copy()
    s = make_sampler([1, 2, 3, 3], temperature=0.5, top_k=20, typical_p=0.9, repeat_penalty=1.3,
                     frequency_penalty=0.5, presence_penalty=0.5, logit_bias={4: 10.0, 5: -INF})
    for _ in range(20):
        s.sample(logits)
    s.probabilities(logits)
    _core.log_softmax(logits)
    _core.top_logprobs(logits, 10)
    np.testing.assert_array_equal(logits, before)
    g = make_sampler([1, 2], temperature=0.0, repeat_penalty=2.0, logit_bias={4: 10.0})
    g.sample(logits)
    np.testing.assert_array_equal(logits, before)


def test_float64_and_strided_inputs_are_converted():
    rng = np.random.default_rng(9)
    x32 = rng.normal(size=64).astype(np.float32)
    a = [_core.Sampler(seed=4).sample(x32) for _ in range(1)]
    s1, s2, s3 = (_core.Sampler(seed=4) for _ in range(3))
    seq32 = [s1.sample(x32) for _ in range(30)]
    seq64 = [s2.sample(x32.astype(np.float64)) for _ in range(30)]
    strided = np.repeat(x32, 2)[::2]
    assert not strided.flags["C_CONTIGUOUS"]
    seqst = [s3.sample(strided) for _ in range(30)]
    assert seq32 == seq64 == seqst and a[0] == seq32[0]
    assert _core.Sampler(temperature=0).sample([0.0, 3.0, 1.0]) == 1  # a list of floats is fine


def test_bad_logits_arrays():
    s = _core.Sampler()
    with pytest.raises(TypeError, match="float32"):
        s.sample(np.arange(5, dtype=np.int64))
    with pytest.raises(TypeError, match="float32"):
        s.sample(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="1-D"):
        s.sample(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="1-D"):
        s.sample(np.float32(1.0))
    with pytest.raises(ValueError, match="empty"):
        s.sample(np.zeros(0, np.float32))
    with pytest.raises(TypeError, match="float32"):
        _core.log_softmax(np.arange(3))
    with pytest.raises(ValueError, match="1-D"):
        _core.top_logprobs(np.zeros((1, 3), np.float32), 1)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
@pytest.mark.parametrize("fill", [-INF, np.nan])
def test_all_logits_invalid_raises(temperature, fill):
    s = _core.Sampler(temperature=temperature)
    with pytest.raises(ValueError, match=r"all logits are -inf/NaN"):
        s.sample(np.full(10, fill, np.float32))
    mixed = np.array([np.nan, -INF, np.nan], np.float32)
    with pytest.raises(ValueError, match=r"all logits are -inf/NaN"):
        s.sample(mixed)
    # banning the only finite token through logit_bias is the same situation
    s2 = _core.Sampler(temperature=temperature, logit_bias={1: -INF})
    with pytest.raises(ValueError, match=r"all logits are -inf/NaN"):
        s2.sample(np.array([np.nan, 1.0, -INF], np.float32))


def test_nan_entries_ignored():
    logits = np.array([np.nan, 0.0, np.nan, 0.5, np.nan, 0.2], np.float32)
    s = _core.Sampler(temperature=2.0, **NO_TRUNC, seed=1)
    seen = {s.sample(logits) for _ in range(2000)}
    assert seen == {1, 3, 5}
    p = s.probabilities(logits)
    assert not np.isnan(p).any()
    np.testing.assert_allclose(p[[1, 3, 5]], _softmax(np.array([0.0, 0.5, 0.2]) / 2.0), rtol=1e-6)
    assert _core.Sampler(temperature=0).sample(np.array([np.nan, 1.0, np.nan, 2.0], np.float32)) == 3


def test_positive_inf_takes_all_mass():
    logits = np.array([0.0, INF, 5.0, INF], np.float32)
    s = _core.Sampler(temperature=0.8, seed=2)
    np.testing.assert_allclose(s.probabilities(logits), [0, 0.5, 0, 0.5])
    assert {s.sample(logits) for _ in range(200)} == {1, 3}
    assert _core.Sampler(temperature=0).sample(logits) == 1


def test_negative_inf_bias_bans_even_positive_inf_logit():
    logits = np.array([0.0, INF, 1.0], np.float32)
    s = _core.Sampler(temperature=1.0, **NO_TRUNC, logit_bias={1: -INF})
    p = s.probabilities(logits)
    assert p[1] == 0 and not np.isnan(p).any()
    np.testing.assert_allclose(p[[0, 2]], _softmax([0.0, 1.0]), rtol=1e-6)
    assert _core.Sampler(temperature=0, logit_bias={1: -INF}).sample(logits) == 2


def test_shared_sampler_across_threads():
    # sample() releases the GIL; calls on one sampler from several threads must stay safe.
    import threading

    logits = np.random.default_rng(0).normal(size=5000).astype(np.float32)
    s = _core.Sampler(seed=1, top_k=0, repeat_penalty=1.1)
    errors = []

    def work():
        try:
            for _ in range(200):
                t = s.sample(logits)
                assert 0 <= t < 5000
                s.accept(t)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_huge_logits_do_not_overflow():
    logits = np.array([3e38, -3e38, 2.9e38, 0.0], np.float32)
    s = _core.Sampler(temperature=0.01, **NO_TRUNC, seed=1)
    p = s.probabilities(logits)
    assert np.isfinite(p).all() and p[0] == pytest.approx(1.0)
    assert s.sample(logits) == 0


# ------------------------------------------------------------------------------------------------
# Parameter validation
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,name",
    [
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=INF), "temperature"),
        (dict(top_p=float("nan")), "top_p"),
        (dict(top_p=-0.1), "top_p"),
        (dict(min_p=1.5), "min_p"),
        (dict(min_p=float("nan")), "min_p"),
        (dict(typical_p=-1.0), "typical_p"),
        (dict(typical_p=float("nan")), "typical_p"),
        (dict(repeat_penalty=0.0), "repeat_penalty"),
        (dict(repeat_penalty=-1.0), "repeat_penalty"),
        (dict(repeat_penalty=float("nan")), "repeat_penalty"),
        (dict(repeat_last_n=-1), "repeat_last_n"),
        (dict(frequency_penalty=float("nan")), "frequency_penalty"),
        (dict(presence_penalty=INF), "presence_penalty"),
        (dict(logit_bias={-1: 1.0}), "logit_bias"),
        (dict(logit_bias={3: float("nan")}), "logit_bias"),
        (dict(logit_bias={3: INF}), "logit_bias"),
    ],
)
def test_bad_params_raise_naming_the_parameter(kw, name):
    with pytest.raises(ValueError, match=name):
        _core.Sampler(**kw)


def test_bad_param_types():
    with pytest.raises(TypeError):
        _core.Sampler(logit_bias=[(1, 2.0)])
    with pytest.raises(TypeError):
        _core.Sampler(logit_bias={"a": 1.0})
    with pytest.raises(TypeError):
        _core.Sampler(seed=-1)
    with pytest.raises(TypeError):
        _core.Sampler(0.8)  # keyword-only


def test_logit_bias_out_of_range_at_sample_time():
    s = _core.Sampler(logit_bias={2: 1.0, 10: -1.0})
    with pytest.raises(ValueError, match=r"token id 10"):
        s.sample(np.zeros(10, np.float32))
    assert s.sample(np.zeros(11, np.float32)) in range(11)


def test_accept_rejects_negative():
    s = _core.Sampler()
    with pytest.raises(ValueError, match="token id -1"):
        s.accept(-1)


def test_properties_and_repr():
    s = _core.Sampler(temperature=0.5, top_k=7, top_p=0.9, min_p=0.1, typical_p=0.95, repeat_penalty=1.1,
                      repeat_last_n=32, frequency_penalty=0.2, presence_penalty=0.3, seed=9, logit_bias={5: -2.0})
    assert (s.top_k, s.repeat_last_n, s.seed) == (7, 32, 9)
    assert s.temperature == pytest.approx(0.5) and s.top_p == pytest.approx(0.9)
    assert s.logit_bias == {5: -2.0}
    assert "temperature=0.5" in repr(s) and "seed=9" in repr(s)


# ------------------------------------------------------------------------------------------------
# n_sampleable: embedding rows without a token (the padding a GGUF's token_embd may have)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [
    dict(temperature=0.0),
    dict(temperature=1.3, **NO_TRUNC),
    dict(temperature=0.8, top_k=5, top_p=0.9, min_p=0.05),
    dict(temperature=1.0, typical_p=0.7, repeat_penalty=1.3, logit_bias={3: 2.0, 70: 50.0}),
    dict(temperature=1.0, mirostat=2, mirostat_tau=3.0),
    dict(temperature=1.0, mirostat=1),
])
def test_n_sampleable_equals_masking_the_padding_rows(params):
    """Sampler(n_sampleable=n) on the raw logits draws exactly what a sampler draws from the logits
    with ids >= n set to -inf (what generation did in NumPy before), for the same seed, however the
    padding rows compare with the real ones (here: the best logits and a biased id are padding)."""
    rng = np.random.default_rng(7)
    n_vocab, n = 77, 61
    a = _core.Sampler(seed=11, n_sampleable=n, **params)
    b = _core.Sampler(seed=11, **params)
    for step in range(200):
        logits = rng.normal(0, 3, n_vocab).astype(np.float32)
        logits[n + step % (n_vocab - n)] = 40.0  # a padding row on top
        masked = logits.copy()
        masked[n:] = -INF
        ta, tb = a.sample(logits), b.sample(masked)
        assert ta == tb < n
        np.testing.assert_array_equal(a.probabilities(logits), b.probabilities(masked))
        a.accept(ta)
        b.accept(tb)


def test_n_sampleable_checks():
    assert _core.Sampler(temperature=0, n_sampleable=200).sample(np.array([0, 5, 1], np.float32)) == 1
    with pytest.raises(ValueError, match="n_sampleable"):
        _core.Sampler(n_sampleable=0)
    with pytest.raises(ValueError, match="all logits"):  # nothing left to draw
        _core.Sampler(n_sampleable=2).sample(np.array([-INF, -INF, 3.0], np.float32))
