"""The allowed-token bitset inside the C++ sampler (cpp/sampling/token_mask.cpp) against a NumPy
reference: masked tokens get probability 0, the rest keep the distribution the sampler would give
with those logits set to -inf (odd vocabulary sizes, partial last word, all-ones / all-zero words,
extreme logits), and bad masks raise clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgellama import _core
from test_sampler import ref_probs

INF = float("inf")


def bits_of(mask: np.ndarray, n: int) -> np.ndarray:
    """bit t%32 of word t/32, as llguidance lays it out (little-endian words)."""
    return np.unpackbits(mask.astype("<u4").view(np.uint8), bitorder="little")[:n].astype(bool)


def random_mask(rng, n: int, density: float) -> np.ndarray:
    allowed = rng.random(n) < density
    allowed[rng.integers(n)] = True  # never empty
    words = np.zeros((n + 31) // 32, dtype=np.uint32)
    for t in np.flatnonzero(allowed):
        words[t // 32] |= np.uint32(1) << np.uint32(t % 32)
    return words.view(np.int32)


def test_bits_of_selftest():
    m = np.array([0b101, 1 << 31], dtype=np.uint32).view(np.int32)
    assert np.flatnonzero(bits_of(m, 64)).tolist() == [0, 2, 63]


@pytest.mark.parametrize("n", [1, 31, 32, 33, 95, 1000, 49152 + 7])
@pytest.mark.parametrize("density", [0.002, 0.3, 0.97, 1.0])
def test_masked_probabilities_match_reference(n, density):
    rng = np.random.default_rng(n * 1000 + int(density * 100))
    logits = rng.normal(0, 3, n).astype(np.float32)
    logits[rng.integers(n, size=max(1, n // 50))] = rng.choice([-60.0, 60.0, 1e30])  # extremes
    mask = random_mask(rng, n, density)
    allowed = bits_of(mask, n)
    for kw in (dict(temperature=0.8, top_k=0, top_p=1.0, min_p=0.0),
               dict(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05),
               dict(temperature=0.0)):
        masked = logits.copy()
        masked[~allowed] = -INF
        if not np.isfinite(masked[allowed]).any() and not (masked[allowed] == INF).any():
            continue
        want = ref_probs(masked, **kw)
        got = _core.Sampler(**kw).probabilities(logits, allowed=mask)
        assert got[~allowed].max(initial=0) == 0
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)


def test_sample_never_draws_a_masked_token():
    rng = np.random.default_rng(7)
    n = 777
    logits = rng.normal(0, 1, n).astype(np.float32)
    mask = random_mask(rng, n, 0.05)
    allowed = set(np.flatnonzero(bits_of(mask, n)).tolist())
    s = _core.Sampler(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=3)
    drawn = {s.sample(logits, allowed=mask) for _ in range(3000)}
    assert drawn <= allowed
    assert len(drawn) > len(allowed) // 2  # it samples among them, not one fixed token


def test_greedy_picks_best_allowed_and_mask_overrides_bias():
    logits = np.array([5.0, 1.0, 3.0, 2.0], np.float32)
    mask = np.array([0b1010], dtype=np.uint32)  # tokens 1 and 3
    assert _core.Sampler(temperature=0).sample(logits, allowed=mask) == 3
    # a huge bias on a masked token does not resurrect it
    s = _core.Sampler(temperature=0, logit_bias={0: 1e6, 2: 1e6})
    assert s.sample(logits, allowed=mask) == 3
    # the same int32 layout llguidance allocates works (bit 31 is the sign bit there)
    logits33 = np.zeros(33, np.float32)
    m32 = np.array([np.int32(-2**31), 0], dtype=np.int32)  # only token 31
    assert _core.Sampler(temperature=0).sample(logits33, allowed=m32) == 31


def test_mask_does_not_change_logits_or_rng_stream():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, 100).astype(np.float32)
    before = logits.copy()
    full = np.full(4, -1, dtype=np.int32)  # everything allowed
    a = _core.Sampler(seed=9, top_k=0, top_p=1.0, min_p=0.0)
    b = _core.Sampler(seed=9, top_k=0, top_p=1.0, min_p=0.0)
    assert [a.sample(logits) for _ in range(50)] == [b.sample(logits, allowed=full) for _ in range(50)]
    np.testing.assert_array_equal(logits, before)


def test_bad_masks_raise_clear_errors():
    s = _core.Sampler()
    logits = np.zeros(40, np.float32)
    with pytest.raises(ValueError, match=r"ceil\(n_vocab/32\) = 2 words"):
        s.sample(logits, allowed=np.zeros(1, np.int32))
    with pytest.raises(ValueError, match="2 words"):
        s.sample(logits, allowed=np.zeros((1, 2), np.int32))
    with pytest.raises(TypeError, match="int32 or uint32"):
        s.sample(logits, allowed=np.zeros(2, np.int64))
    with pytest.raises(TypeError, match="int32 or uint32"):
        s.sample(logits, allowed=np.zeros(2, np.float32))
    with pytest.raises(TypeError, match="bitmask array or None"):
        s.sample(logits, allowed=[1, 2])
    with pytest.raises(ValueError, match="C-contiguous"):
        s.sample(logits, allowed=np.zeros(4, np.int32)[::2])
    with pytest.raises(ValueError, match="allows no token"):
        s.sample(logits, allowed=np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="allows no token"):
        s.probabilities(logits, allowed=np.zeros(2, np.uint32))
    # bits past n_vocab in the last word are ignored: they cannot make an empty mask non-empty
    with pytest.raises(ValueError, match="allows no token"):
        s.sample(logits, allowed=np.array([0, 0xFFFFFF00], dtype=np.uint32))
    # only -inf logits allowed
    bad = np.zeros(40, np.float32)
    bad[0] = -INF
    with pytest.raises(ValueError, match="allowed-token mask"):
        s.sample(bad, allowed=np.array([1, 0], dtype=np.uint32))
