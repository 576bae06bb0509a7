"""The sampler's random numbers are llama.cpp's: std::mt19937 seeded with the seed mod 2^32, and one
std::uniform_real_distribution<double>(0, 1) draw per sampled token computed with libstdc++'s
generate_canonical arithmetic (cpp/sampling/rng.cpp). Checked against a Python MT19937 written here
from the C++ standard's definition, NumPy's MT19937 (a third implementation), the standard's own
check value, and the canonical formula in Python floats (IEEE doubles, same rounding)."""

import numpy as np
import pytest

from edgellama import _core

from mt19937_reference import M32, ONE_BELOW, canonical, mt19937, uniform_doubles

SEEDS = [0, 1, 42, 1337, 5489, M32, 2**32 + 5, 2**64 - 1]


@pytest.mark.parametrize("seed", SEEDS)
def test_raw_outputs_are_std_mt19937(seed):
    r = _core.Rng(seed)
    got = [r.next_u32() for _ in range(1300)]  # past two twists of the 624-word state
    g = mt19937(seed)
    assert got == [next(g) for _ in range(1300)]
    legacy = np.random.MT19937(0)
    legacy._legacy_seeding(seed & M32)  # NumPy's init_genrand: the same seeding
    assert got == [int(v) for v in legacy.random_raw(1300)]


def test_standard_check_value():
    # [rand.predef]: the 10000th consecutive invocation of a default-constructed std::mt19937
    # (seed 5489) produces 4123659995.
    r = _core.Rng(5489)
    for _ in range(9999):
        r.next_u32()
    assert r.next_u32() == 4123659995


def test_seed_is_taken_mod_2_32():
    a, b = _core.Rng(7), _core.Rng(2**32 + 7)
    assert [a.next_u32() for _ in range(5)] == [b.next_u32() for _ in range(5)]
    c = _core.Rng(8)
    assert _core.Rng(7).next_u32() != c.next_u32()


@pytest.mark.parametrize("seed", [0, 42, 1337, M32])
def test_doubles_are_libstdcxx_uniform_real_distribution(seed):
    r = _core.Rng(seed)
    got = [r.next_double() for _ in range(2000)]
    assert got == uniform_doubles(seed, 2000)
    assert all(0.0 <= u < 1.0 for u in got)


@pytest.mark.parametrize("low, high, want", [
    (0, 0, 0.0),
    (1, 0, 2.0**-64),
    (0, 1, 2.0**-32),
    (M32, 0, (2.0**32 - 1) / 2.0**64),
    (0, 2**31, 0.5),
    # high = 2^32 - 1: the sum is 2^64 - 2^32 + low, where doubles are 2048 apart
    (2**32 - 1025, M32, ONE_BELOW),  # nearer 2^64 - 2048
    (2**32 - 1024, M32, ONE_BELOW),  # halfway: ties to even rounds up to 2^64 -> clamped
    (2**32 - 1023, M32, ONE_BELOW),  # rounds up to 2^64 -> clamped
    (M32, M32, ONE_BELOW),
    (2**32 - 4096, M32, 1.0 - 2.0**-52),  # exactly 2^64 - 4096: no rounding
    (2**32 - 3072, M32, 1.0 - 2.0**-52),  # halfway between 2^64 - 4096 and - 2048: ties to even, down
])
def test_canonical_rounding_and_clamp(low, high, want):
    assert _core.Rng.canonical(low, high) == want == canonical(low, high)


def test_the_clamp_is_needed():
    # without it, these would be 1.0: the reference formula really rounds them up
    assert (float(2**32 - 1024) + float(M32) * 2.0**32) / 2.0**64 == 1.0
    assert (float(2**32 - 1025) + float(M32) * 2.0**32) / 2.0**64 == ONE_BELOW


NO_TRUNC = dict(top_k=0, top_p=1.0, min_p=0.0)


@pytest.mark.parametrize("seed", [0, 42, 1337, M32])
def test_sampler_draws_like_llama_cpp_dist(seed):
    # With n equal logits every weight is exactly 1, so llama.cpp's dist sampler picks the first i
    # with i + 1 >= u * n: the token stream pins down one draw per token, bit for bit.
    n = 256
    s = _core.Sampler(seed=seed, temperature=1.0, **NO_TRUNC)
    got = [s.sample(np.zeros(n, np.float32)) for _ in range(400)]
    want = [max(0, int(np.ceil(u * n)) - 1) for u in uniform_doubles(seed, 400)]
    assert got == want


def test_sampler_draws_once_per_token_even_with_one_candidate():
    # llama.cpp draws also when a single candidate is left (to stay aligned with its backend sampler)
    one = np.full(8, -np.inf, np.float32)
    one[3] = 0.0
    flat = np.zeros(8, np.float32)
    s = _core.Sampler(seed=99, temperature=1.0, **NO_TRUNC)
    got = []
    for i in range(40):
        got.append(s.sample(one if i % 2 else flat))
    u = uniform_doubles(99, 40)
    want = [3 if i % 2 else max(0, int(np.ceil(u[i] * 8)) - 1) for i in range(40)]
    assert got == want
