"""Fast-path attention: the tile kernel of every ISA against a float64 reference and against the scalar
kernel (head dims 32/64/80/128, key counts 1..200 across the 64-key block boundaries, GQA groups 1/3/4,
f16 and f32 caches, large scores), tile independence (the invariant behind n_batch / n_threads
bit-identity), and the fast forward on random models: identical bits for any n_threads / n_batch, close
to the exact path."""

from __future__ import annotations

import numpy as np
import pytest

import edgellama
from edgellama import _core

from model_factory import make_model

ISAS = _core.available_isas()
SIMD = [i for i in ISAS if i != "scalar"]


def reference(q, k, v, n_keys0, scale):
    """float64 causal attention: token t sees keys 0..n_keys0+t-1."""
    q = q.astype(np.float64)
    k = k.astype(np.float64)
    v = v.astype(np.float64)
    out = np.empty_like(q)
    for t in range(q.shape[0]):
        n = n_keys0 + t
        s = scale * (q[t] @ k[:n].T)          # [group, n]
        s -= s.max(axis=-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=-1, keepdims=True)
        out[t] = p @ v[:n]
    return out


def make_case(rng, n_tok, group, hd, n_keys0, kv_dtype, q_scale=1.0):
    n_pos = n_keys0 + n_tok - 1
    q = (rng.standard_normal((n_tok, group, hd)) * q_scale).astype(np.float32)
    k = rng.standard_normal((n_pos, hd)).astype(kv_dtype)
    v = rng.standard_normal((n_pos, hd)).astype(kv_dtype)
    return q, k, v


CASES = [  # (n_tok, n_keys0): key counts 1..200, block boundaries at 64, 128, 192
    (1, 1), (1, 2), (1, 63), (1, 64), (1, 65), (1, 127), (1, 129), (1, 200),
    (5, 1), (7, 60), (3, 127), (40, 1), (33, 100), (17, 184),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("hd", [24, 32, 64, 80, 128, 160])  # 24: the avx512 tile hands it to avx2; 160: 128 + 32
@pytest.mark.parametrize("group", [1, 3, 4])
@pytest.mark.parametrize("kv", ["f16", "f32"])
def test_tile_matches_float64_reference(isa, hd, group, kv):
    rng = np.random.default_rng(hd * 10 + group)
    dt = np.float16 if kv == "f16" else np.float32
    scale = 1.0 / np.sqrt(hd)
    for n_tok, n_keys0 in CASES:
        q, k, v = make_case(rng, n_tok, group, hd, n_keys0, dt)
        out = _core.kernel_attention(isa, q, k, v, n_keys0, scale)
        ref = reference(q, k, v, n_keys0, scale)
        err = np.abs(out - ref).max()
        assert err <= 2e-6 * np.abs(v.astype(np.float64)).max() * np.sqrt(n_keys0 + n_tok), (n_tok, n_keys0, err)
        if isa != "scalar":
            sc = _core.kernel_attention("scalar", q, k, v, n_keys0, scale)
            np.testing.assert_allclose(out, sc, rtol=0, atol=2e-6 * np.abs(v.astype(np.float64)).max() * 4)


@pytest.mark.skipif("avx512" not in ISAS, reason="this CPU cannot run the avx512 set")
@pytest.mark.parametrize("hd", [24, 64, 160])
@pytest.mark.parametrize("kv", ["f16", "f32"])
def test_avx512_tile_bits_equal_avx2(hd, kv):
    """The AVX-512 tile sums in the AVX2 tile's order, so a forward pass has the same bits on both
    levels (the fast path's int8 rounding would amplify last-bit differences)."""
    rng = np.random.default_rng(hd)
    dt = np.float16 if kv == "f16" else np.float32
    for n_tok, n_keys0 in CASES:
        q, k, v = make_case(rng, n_tok, 3, hd, n_keys0, dt)
        np.testing.assert_array_equal(_core.kernel_attention("avx512", q, k, v, n_keys0, 0.125),
                                      _core.kernel_attention("avx2", q, k, v, n_keys0, 0.125), err_msg=str((n_tok, n_keys0)))


# (n_tok, n_keys0, window): the AVX-512 tile scores and accumulates 4 rows at a time, rows that may
# belong to different tokens whose valid keys end (causal diagonal) or start (window) at different
# places in one block (7, 131, 70: rows of one 4-row step in their first and in a later window block);
# n_tok x group not a multiple of 4 leaves 1-3 rows over.
MULTI_ROW_CASES = [(1, 70, 0), (2, 63, 0), (5, 60, 0), (7, 1, 0), (13, 120, 0), (32, 100, 0),
                   (9, 60, 8), (6, 130, 70), (7, 131, 70), (11, 66, 64), (3, 200, 1)]


@pytest.mark.skipif("avx512" not in ISAS, reason="this CPU cannot run the avx512 set")
@pytest.mark.parametrize("group", [1, 3, 7, 8])
@pytest.mark.parametrize("hd", [64, 80, 128])
@pytest.mark.parametrize("softcap", [0.0, 2.5])
def test_avx512_multi_row_bits_equal_avx2(group, hd, softcap):
    """Register-blocked rows keep each row's arithmetic: same bits as the AVX2 tile, for GQA groups
    1/3/7/8, head dims with a 16-dim tail (80) and two 64-dim passes (128), windows and soft-capping,
    f16 keys with large scores mixed in (rows whose max moves between blocks)."""
    rng = np.random.default_rng(group * 1000 + hd + int(softcap))
    for n_tok, n_keys0, window in MULTI_ROW_CASES:
        q, k, v = make_case(rng, n_tok, group, hd, n_keys0, np.float16, q_scale=3.0)
        q[:, -1] *= 40.0  # one head with scores in the hundreds
        args = (n_keys0, 1.0 / np.sqrt(hd), softcap, window)
        out = _core.kernel_attention("avx512", q, k, v, *args)
        np.testing.assert_array_equal(out, _core.kernel_attention("avx2", q, k, v, *args),
                                      err_msg=str((n_tok, n_keys0, window)))


@pytest.mark.parametrize("isa", ISAS)
def test_tile_large_scores_stable(isa):
    """Scores in the thousands (softmax without max subtraction would overflow): finite, matches float64,
    the running max moves up across blocks (increasing scores) and down (decreasing)."""
    rng = np.random.default_rng(9)
    hd, group = 64, 3
    for n_tok, n_keys0 in ((1, 200), (9, 150), (64, 1)):
        q, k, v = make_case(rng, n_tok, group, hd, n_keys0, np.float16, q_scale=300.0)
        for order in ("random", "up", "down"):
            kk = k.copy()
            if order != "random":
                # key p's score grows (or falls) with p: every block raises (lowers) the row max
                base = rng.standard_normal(hd).astype(np.float32)
                ramp = np.linspace(-1, 1, kk.shape[0]) * (1 if order == "up" else -1)
                kk = (ramp[:, None] * base[None, :]).astype(np.float16)
                q[:] = base * 300.0
            out = _core.kernel_attention(isa, q, kk, v, n_keys0, 1.0 / 8)
            assert np.all(np.isfinite(out))
            ref = reference(q, kk, v, n_keys0, 1.0 / 8)
            # scores ~1e4: a relative score error of 1e-7 moves weights by ~1e-3 (inherent to float32)
            np.testing.assert_allclose(out, ref, rtol=0, atol=2e-2)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("group", [1, 3])
def test_tile_result_independent_of_tiling(isa, group):
    """A row's bits do not depend on which tokens share its tile (n_batch / thread split invariance)."""
    rng = np.random.default_rng(11)
    hd = 64
    n_tok, n_keys0 = 70, 60
    q, k, v = make_case(rng, n_tok, group, hd, n_keys0, np.float16)
    whole = _core.kernel_attention(isa, q, k, v, n_keys0, 0.125)
    for a, b in ((0, 1), (5, 6), (0, 4), (4, 37), (37, 70), (69, 70)):
        part = _core.kernel_attention(isa, q[a:b], k, v, n_keys0 + a, 0.125)
        np.testing.assert_array_equal(part, whole[a:b])


def test_tile_argument_checks():
    q = np.zeros((2, 1, 64), np.float32)
    k = np.zeros((3, 64), np.float16)
    with pytest.raises(ValueError):
        _core.kernel_attention("scalar", q, k[:1], k, 2, 1.0)  # fewer cached keys than token 1 needs
    with pytest.raises(ValueError):
        _core.kernel_attention("scalar", q, k.astype(np.float64), k, 1, 1.0)


@pytest.mark.parametrize("isa", ISAS)
def test_silu_mul_matches_float64(isa):
    rng = np.random.default_rng(13)
    for n in (1, 3, 7, 8, 9, 31, 1536, 1539):
        g = (rng.standard_normal(n) * 4).astype(np.float32)
        u = rng.standard_normal(n).astype(np.float32)
        g[: min(n, 6)] = [-100.0, -88.5, -20.0, 0.0, 30.0, 100.0][: min(n, 6)]  # clamp range, saturation
        out = _core.kernel_silu_mul(isa, g, u)
        gd = g.astype(np.float64)
        ref = gd / (1.0 + np.exp(-gd)) * u
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-30)
        # a row's bits do not depend on how it is split into calls (tails included)
        k = n // 2
        parts = np.concatenate([_core.kernel_silu_mul(isa, g[:k], u[:k]), _core.kernel_silu_mul(isa, g[k:], u[k:])])
        np.testing.assert_array_equal(parts, out)


# ---- model level ---------------------------------------------------------------------------------

N_PROMPT = 150  # keys cross the 64 and 128 block boundaries


@pytest.fixture(scope="module")
def gqa_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("attn") / "m.gguf"
    return make_model(path, arch="llama", wtype="F32", seed=21, n_head=6, n_head_kv=2, n_embd=96,
                      n_ctx_train=512)


def _eval(path, tokens, **kw):
    with edgellama.Llama(str(path), n_ctx=256, **kw) as llm:
        return llm.eval(tokens)


def _tokens():
    rng = np.random.default_rng(3)
    return [int(t) for t in rng.integers(0, 96, size=N_PROMPT)]


@pytest.mark.parametrize("kv", ["f16", "f32"])
def test_fast_forward_bit_identical_across_threads_and_batches(gqa_model, kv):
    tokens = _tokens()
    base = _eval(gqa_model, tokens, n_threads=1, precision="fast", type_k=kv, type_v=kv)
    for kw in (dict(n_threads=2), dict(n_threads=3), dict(n_threads=1, n_batch=7),
               dict(n_threads=2, n_batch=64), dict(n_threads=2, n_batch=33)):
        got = _eval(gqa_model, tokens, precision="fast", type_k=kv, type_v=kv, **kw)
        np.testing.assert_array_equal(got, base, err_msg=str(kw))
    # token by token (decode path) after a prefix
    with edgellama.Llama(str(gqa_model), n_ctx=256, n_threads=2, precision="fast", type_k=kv, type_v=kv) as llm:
        head = llm.eval(tokens[:100])
        tail = [llm.eval([t]) for t in tokens[100:110]]
    np.testing.assert_array_equal(head, base[:100])
    np.testing.assert_array_equal(np.concatenate(tail), base[100:110])


def test_fast_forward_close_to_exact(gqa_model):
    """F32 weights: no activation quantization, so fast and exact differ only by the attention kernel
    (polynomial exp, FMA, online softmax) and summation order."""
    tokens = _tokens()
    fast = _eval(gqa_model, tokens, precision="fast")
    exact = _eval(gqa_model, tokens, precision="exact")
    err = np.abs(fast - exact).max() / np.abs(exact).max()
    assert err < 1e-4, err
    assert err > 0  # the fast path really ran a different kernel
