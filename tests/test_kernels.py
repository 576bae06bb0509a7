"""Kernel tests: every ISA's kernels against the scalar reference (same math), and the scalar
reference against a float64 dot with the dequantized weights (bounded by activation rounding)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from edgellama import _core
from kernel_data import ALL_TYPES, FLOAT_TYPES, QUANT_TYPES, act_type, block_size, random_rows

SIMD = [i for i in _core.available_isas() if i != "scalar"]


def dequant(t: str, w: bytes, n_rows: int, n_in: int) -> np.ndarray:
    if t == "F32":
        return np.frombuffer(w, dtype=np.float32).reshape(n_rows, n_in).astype(np.float64)
    return _core.dequantize(t, np.frombuffer(w, dtype=np.uint8)).astype(np.float64).reshape(n_rows, n_in)


def test_isa_reporting():
    assert _core.available_isas()[0] == "scalar"
    assert _core.isa() in _core.available_isas()


def test_forced_isa_unavailable_is_clear_error():
    # a known level this CPU/build cannot run ("avx512" needs F/BW/VL/DQ/VNNI; "neon" is available on
    # an aarch64 CPU with dotprod, "avx2" on most x86)
    unavailable = [i for i in ("avx512", "neon", "avx2") if i not in _core.available_isas()][0]
    env = dict(os.environ, EDGELLAMA_ISA=unavailable)
    r = subprocess.run([sys.executable, "-c", "import edgellama._core"], env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "EDGELLAMA_ISA" in r.stderr and "not available" in r.stderr
    env["EDGELLAMA_ISA"] = "scalar"
    r = subprocess.run([sys.executable, "-c", "import edgellama._core as c; print(c.isa())"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "scalar"


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("act", ["q8_0", "q8_K"])
def test_activation_quantization_bit_identical(isa, act):
    rng = np.random.default_rng(1)
    for n_blocks in (1, 2, 3, 7):
        n = n_blocks * (256 if act == "q8_K" else 32)
        for x in (rng.standard_normal(n).astype(np.float32) * 3,
                  np.zeros(n, np.float32),
                  np.full(n, 1e30, np.float32),
                  (rng.integers(-3, 4, n) * 0.5).astype(np.float32)):  # ties for the rounding
            assert _core.kernel_quantize_activation(isa, act, x) == _core.kernel_quantize_activation("scalar", act, x)


def test_activation_quantization_values():
    x = np.linspace(-2, 2, 64, dtype=np.float32)
    b = _core.kernel_quantize_activation("scalar", "q8_0", x)
    assert len(b) == 2 * 40
    d, s = np.frombuffer(b[:8], np.float32)
    q = np.frombuffer(b[8:40], np.int8)
    assert d == np.float32(np.float32(2.0) / np.float32(127.0))
    np.testing.assert_allclose(q * d, x[:32], atol=d / 2 + 1e-7)
    assert s == np.float32(d * q.sum())


def dequant_activation(t: str, x: np.ndarray) -> np.ndarray:
    """The activations exactly as the scalar kernel sees them: float32 for float weights, else the
    scalar quantizer's int8 blocks (ActQ8x32 {float d, float s, int8[32]} or block_q8_K {float d,
    int8[256], int16 bsums[16]}) times their scales, in float64."""
    if t in FLOAT_TYPES:
        return x.astype(np.float64)
    block_bytes, q_from, qk = (40, 8, 32) if act_type(t) == "q8_0" else (292, 4, 256)
    rows = []
    for row in x:
        b = np.frombuffer(_core.kernel_quantize_activation("scalar", act_type(t), row), np.uint8).reshape(-1, block_bytes)
        d = b[:, :4].copy().view(np.float32).astype(np.float64)
        q = b[:, q_from : q_from + qk].copy().view(np.int8).astype(np.float64)
        rows.append((q * d).reshape(-1))
    return np.array(rows)


# Largest |scalar gemm - float64 dot of the same dequantized weights and activations|, relative to
# sum |x_i * w_i|, measured over test_scalar_reference_vs_float64's inputs (x86-64 gcc, -O2; all
# that is left is float32 accumulation: ~1-2 float32 ulps). The bounds are 3x that. A kernel whose
# result is off by 1.01x shows 1e-3..4e-3 here and fails by four orders of magnitude; the old
# activation-rounding bound let 13x its error through.
SCALAR_GEMM_REL_ERROR = {
    "Q4_0": 1.3e-07, "Q4_1": 5.0e-08, "Q5_0": 7.1e-08, "Q5_1": 2.9e-08, "Q8_0": 3.0e-08,
    "Q2_K": 1.9e-08, "Q3_K": 2.2e-08, "Q4_K": 1.8e-08, "Q5_K": 1.6e-08, "Q6_K": 3.0e-08,
    "F32": 4.0e-08, "F16": 4.7e-08, "BF16": 5.6e-08,
    "IQ4_NL": 4.2e-08, "IQ4_XS": 2.2e-08, "TQ1_0": 1.5e-08, "TQ2_0": 1.3e-08, "MXFP4": 2.9e-08,
    "IQ3_XXS": 1.6e-08, "IQ3_S": 1.9e-08, "IQ2_XXS": 1.8e-08, "IQ2_XS": 1.7e-08, "IQ2_S": 2.0e-08,
    "IQ1_S": 1.4e-08, "IQ1_M": 1.6e-08,
}


@pytest.mark.parametrize("t", ALL_TYPES)
def test_scalar_reference_vs_float64(t):
    """The scalar reference kernel against float64 on the same (dequantized) weights and the same
    (quantized) activations, over 1/3/7 blocks and activations scaled 1e-3..1e3. Separately, the
    activation quantizer's own rounding stays within its worst-case bound."""
    rng = np.random.default_rng(2)
    qk = block_size(t)
    worst = 0.0
    for n_blocks in (1, 3, 7):
        n_in = max(qk, 32) * n_blocks
        w = random_rows(t, 5, n_in, rng)
        deq = dequant(t, w, 5, n_in)
        for scale in (1e-3, 1.0, 1e3):
            x = (rng.standard_normal((4, n_in)) * scale).astype(np.float32)
            y = _core.kernel_gemm("scalar", t, w, x).astype(np.float64)
            xq = dequant_activation(t, x)
            worst = max(worst, float(np.max(np.abs(y - xq @ deq.T) / (np.abs(xq) @ np.abs(deq).T))))
            # activation rounding: |x - xq| <= d_a / 2 per element, d_a <= max|x| / 127 (exact for floats)
            assert np.all(np.abs(x - xq) <= np.abs(x).max(axis=1, keepdims=True) / 254 * (1 + 1e-6)), t
    bound = 3 * SCALAR_GEMM_REL_ERROR[t]
    assert worst <= bound, f"{t}: relative error {worst:.3g} > {bound:.3g} (measured {SCALAR_GEMM_REL_ERROR[t]:.3g})"


def _close(y, ref, w_abs_dot):
    tol = 2e-5 * w_abs_dot + 1e-5
    assert np.all(np.abs(y - ref) <= tol), np.max(np.abs(y - ref) / tol)


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("t", ALL_TYPES)
def test_simd_vs_scalar_odd_shapes(isa, t):
    rng = np.random.default_rng(3)
    qk = block_size(t)
    unit = qk if qk > 1 else 1
    sizes = [1, 2, 3, 5] if qk > 1 else [8, 16, 24, 37, 1, 3]
    for blocks in sizes:
        n_in = blocks * unit if qk > 1 else blocks
        if qk > 1 and t not in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K") and blocks == 5:
            n_in = 9 * qk
        for n_rows in (1, 3, 4, 5, 9):
            w = random_rows(t, n_rows, n_in, rng)
            for n_tok in (1, 2, 3, 4, 5, 7, 9):
                x = (rng.standard_normal((n_tok, n_in)) * rng.uniform(0.1, 10)).astype(np.float32)
                y = _core.kernel_gemm(isa, t, w, x)
                ref = _core.kernel_gemm("scalar", t, w, x)
                absdot = np.abs(x) @ np.abs(dequant(t, w, n_rows, n_in)).T
                _close(y, ref, absdot)


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("t", QUANT_TYPES)
@pytest.mark.parametrize("extreme", ["max_scale", "all_max", "all_zero"])
def test_simd_vs_scalar_extremes(isa, t, extreme):
    rng = np.random.default_rng(4)
    qk = block_size(t)
    n_in = 2 * qk
    w = random_rows(t, 5, n_in, rng, extreme=extreme)
    for x in (np.full((3, n_in), 1000.0, np.float32), np.full((3, n_in), -1.0, np.float32),
              rng.standard_normal((3, n_in)).astype(np.float32)):
        x = x.copy()
        x[0, ::2] *= -1  # activations of both signs hitting +-127
        y = _core.kernel_gemm(isa, t, w, x)
        ref = _core.kernel_gemm("scalar", t, w, x)
        deq = dequant(t, w, 5, n_in)
        if not np.all(np.isfinite(deq)):
            continue
        _close(y.astype(np.float64), ref.astype(np.float64), np.abs(x) @ np.abs(deq).T)


@pytest.mark.parametrize("t", ALL_TYPES)
def test_vec_dot_matches_gemm(t):
    rng = np.random.default_rng(5)
    n_in = max(block_size(t), 32) * 2
    w = random_rows(t, 1, n_in, rng)
    x = rng.standard_normal(n_in).astype(np.float32)
    for isa in _core.available_isas():
        assert _core.kernel_vec_dot(isa, t, w, x) == pytest.approx(
            float(_core.kernel_gemm(isa, t, w, x[None, :])[0, 0]), rel=1e-6)


@pytest.mark.parametrize("t", ["Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K", "F16", "IQ4_NL", "IQ4_XS", "IQ3_S", "IQ1_M"])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_matmul_threads_and_precision(t, n_threads):
    rng = np.random.default_rng(6)
    n_in = 512
    for n_out, n_tok in ((576, 1), (100, 7), (36, 70), (4, 130)):
        w = random_rows(t, n_out, n_in, rng)
        x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
        ref = _core.kernel_gemm("scalar", t, w, x)
        y, *_ = _core.kernel_matmul(t, w, x, n_threads=n_threads, precision="fast", isa="scalar")
        np.testing.assert_array_equal(y, ref)
        y, *_ = _core.kernel_matmul(t, w, x, n_threads=n_threads, precision="fast")
        _close(y, ref, np.abs(x) @ np.abs(dequant(t, w, n_out, n_in)).T)
        ye, *_ = _core.kernel_matmul(t, w, x, n_threads=n_threads, precision="exact")
        np.testing.assert_allclose(ye, x.astype(np.float64) @ dequant(t, w, n_out, n_in).T, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("t", ["Q8_0", "Q4_1", "Q6_K"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_residual_pass_for_logits_and_kv(t, n_threads):
    """output / attn_k / attn_v / ffn_down get a second int8 pass on the activation residual: much closer to
    the float64 product than the plain int8 path, and independent of threads and tiling."""
    rng = np.random.default_rng(7)
    n_in = 512
    for n_out, n_tok in ((300, 1), (70, 5), (9, 67)):
        w = random_rows(t, n_out, n_in, rng)
        x = (rng.standard_normal((n_tok, n_in)) * np.exp(rng.standard_normal(n_in))).astype(np.float32)
        ref = x.astype(np.float64) @ dequant(t, w, n_out, n_in).T
        plain, *_ = _core.kernel_matmul(t, w, x, n_threads=n_threads)
        err_plain = np.abs(plain - ref).max()
        for name in ("output.weight", "token_embd.weight", "blk.3.attn_k.weight", "blk.0.attn_v.weight",
                     "blk.1.ffn_down.weight"):
            y, *_ = _core.kernel_matmul(t, w, x, n_threads=n_threads, name=name)
            assert np.abs(y - ref).max() < err_plain / 20
        y, *_ = _core.kernel_matmul(t, w, x, n_threads=n_threads, name="blk.0.attn_q.weight")
        np.testing.assert_array_equal(y, plain)


@pytest.mark.parametrize("t", ["Q4_0", "Q6_K"])
def test_ffn_down_residual_pass_only_at_the_ends_of_the_stack(t):
    """In a model, ffn_down takes the residual pass in its first 2 and last 4 blocks only (matmul.cpp):
    the middle blocks' ffn_down gives the plain int8 result bit for bit, the end blocks' the residual
    one; a weight of unknown position (no n_layers) keeps the pass. Bad block numbers are refused."""
    rng = np.random.default_rng(13)
    n_in, n_out, n_layers = 256, 40, 22
    w = random_rows(t, n_out, n_in, rng)
    x = (rng.standard_normal((3, n_in)) * np.exp(rng.standard_normal(n_in))).astype(np.float32)
    plain, *_ = _core.kernel_matmul(t, w, x, name="blk.0.attn_q.weight")
    with_pass, *_ = _core.kernel_matmul(t, w, x, name="blk.5.ffn_down.weight")
    assert np.abs(with_pass - plain).max() > 0
    for layer in range(n_layers):
        y, *_ = _core.kernel_matmul(t, w, x, name=f"blk.{layer}.ffn_down.weight", n_layers=n_layers)
        at_end = layer < 2 or layer >= n_layers - 4
        np.testing.assert_array_equal(y, with_pass if at_end else plain, err_msg=f"block {layer}")
    # other roles do not depend on the block
    y, *_ = _core.kernel_matmul(t, w, x, name="blk.10.attn_k.weight", n_layers=n_layers)
    np.testing.assert_array_equal(y, _core.kernel_matmul(t, w, x, name="blk.10.attn_k.weight")[0])
    for bad in ("blk.22.ffn_down.weight", "output.weight", "blk.-1.ffn_down.weight"):
        with pytest.raises(ValueError, match="n_layers"):
            _core.kernel_matmul(t, w, x, name=bad, n_layers=n_layers)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_shared_input_matmul_equals_separate_matmuls(n_threads):
    """Q/K/V (and gate/up) run as one job over activations quantized once, with a residual pass for
    K/V only: each output must be bit-identical to its own matmul. Mixed activation formats (a Q6_K
    attn_v beside Q4_K q/k in Q4_K_M files, or Q4_0 beside Q6_K) take the separate path."""
    rng = np.random.default_rng(11)
    n_in = 512
    cases = [
        ("Q4_1", "Q4_1", "Q4_1"),
        ("Q4_K", "Q4_K", "Q6_K"),
        ("Q4_0", "Q8_0", "Q6_K"),  # mixed formats -> separate matmuls
        ("F16", "F32", "F16"),
    ]
    names = ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight")
    for types in cases:
        for n_tok in (1, 5, 70):
            ws = [(t, random_rows(t, n_out, n_in, rng), name) for t, n_out, name in zip(types, (96, 40, 40), names)]
            x = (rng.standard_normal((n_tok, n_in)) * np.exp(rng.standard_normal(n_in))).astype(np.float32)
            ys = _core.kernel_matmul_shared(ws, x, n_threads=n_threads)
            for (t, w, name), y in zip(ws, ys):
                single, *_ = _core.kernel_matmul(t, w, x, n_threads=n_threads, name=name)
                np.testing.assert_array_equal(y, single, err_msg=f"{types} {name} n_tok={n_tok}")


ROWS8_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


@pytest.mark.skipif("avx2" not in SIMD, reason="no AVX2 on this CPU")
@pytest.mark.parametrize("t", ROWS8_TYPES)
def test_rows8_kernels_bit_exact_vs_scalar_reference(t):
    """The AVX2 8-rows-per-vector kernels (repacked scratch for >= 4 tokens; registers or, for Q4_K, row
    tiles with the same per-output sequence below) follow the
    arithmetic sequence of their scalar reference exactly: odd row / token counts, row tails of a
    group of 8, more than one 64-block chunk of n_in, more than one 64-token chunk."""
    rng = np.random.default_rng(11)
    sizes = (256, 512, 9 * 256, 17 * 256) if t.endswith("_K") else (32, 96, 64 * 32 + 96, 2 * 64 * 32 + 32)
    for n_in in sizes:
        for n_rows in (1, 7, 8, 9, 17):
            w = random_rows(t, n_rows, n_in, rng)
            for n_tok in (1, 2, 3, 4, 5, 9, 70, 131):
                x = (rng.standard_normal((n_tok, n_in)) * rng.uniform(0.1, 10)).astype(np.float32)
                y = _core.kernel_gemm("avx2", t, w, x)
                ref = _core.kernel_gemm_rows8_ref(t, w, x)
                np.testing.assert_array_equal(y, ref, err_msg=f"{t} n_in={n_in} rows={n_rows} tokens={n_tok}")
                absdot = np.abs(x) @ np.abs(dequant(t, w, n_rows, n_in)).T
                _close(ref, _core.kernel_gemm("scalar", t, w, x), absdot)


@pytest.mark.skipif("avx2" not in SIMD, reason="no AVX2 on this CPU")
@pytest.mark.parametrize("t", ROWS8_TYPES)
@pytest.mark.parametrize("extreme", ["max_scale", "all_max", "all_zero"])
def test_rows8_kernels_extremes(t, extreme):
    """All-15 nibbles (and 6-bit scales of 63) against +-127 activations: the int16 block sums and
    int32 super-block sums stay in range (17 rows and 35 tokens: the 16-row pair tiles too)."""
    rng = np.random.default_rng(12)
    n_in = 512 if t.endswith("_K") else 128
    w = random_rows(t, 17, n_in, rng, extreme=extreme)
    for x in (np.full((35, n_in), 1000.0, np.float32), np.full((35, n_in), -1.0, np.float32),
              rng.standard_normal((35, n_in)).astype(np.float32)):
        for n_tok in (1, 5, 35):
            xx = x[:n_tok].copy()
            y = _core.kernel_gemm("avx2", t, w, xx)
            np.testing.assert_array_equal(y, _core.kernel_gemm_rows8_ref(t, w, xx))


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("t", QUANT_TYPES)
def test_gemm_result_independent_of_token_and_row_split(isa, t):
    """A (row, token) result is the same whether computed alone or inside a bigger call: results cannot
    depend on n_batch or on how matmul splits rows and tokens across threads."""
    rng = np.random.default_rng(13)
    n_in = 2 * max(block_size(t), 32) * 3
    w = random_rows(t, 19, n_in, rng)
    x = rng.standard_normal((67, n_in)).astype(np.float32)
    whole = _core.kernel_gemm(isa, t, w, x)
    row_bytes = len(w) // 19
    for t0, t1 in ((0, 1), (3, 5), (10, 13), (0, 64), (60, 67)):
        np.testing.assert_array_equal(_core.kernel_gemm(isa, t, w, x[t0:t1]), whole[t0:t1])
    for r0, r1 in ((0, 1), (5, 13), (8, 19)):
        np.testing.assert_array_equal(_core.kernel_gemm(isa, t, w[r0 * row_bytes:r1 * row_bytes], x[:9]), whole[:9, r0:r1])


# Types the table can dequantize but that have no int8 kernel, and why: Q8_1 and Q8_K are activation
# formats (ggml never stores model weights in them); a model using them takes the exact path.
NO_KERNEL_TYPES = {"Q8_1", "Q8_K"}


@pytest.mark.parametrize("isa", _core.available_isas())
def test_every_computable_type_has_a_kernel(isa):
    """A type the runtime can compute with (to_float in the type table) has a kernel in every ISA set,
    so a missing kernel is never a silent fall back to the exact path."""
    rng = np.random.default_rng(30)
    computable = [row for row in _core.type_table() if row["can_dequantize"] and row["name"] not in NO_KERNEL_TYPES]
    assert {"IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4", "Q4_K", "F16", "IQ3_XXS", "IQ3_S", "IQ2_XXS", "IQ2_XS",
            "IQ2_S", "IQ1_S", "IQ1_M"} <= {row["name"] for row in computable}
    for row in computable:
        n_in = max(row["block_size"], 32)
        w = rng.integers(0, 256, n_in // row["block_size"] * row["type_size"], dtype=np.uint8).tobytes()
        y = _core.kernel_gemm(isa, row["name"], w, rng.standard_normal((1, n_in)).astype(np.float32))
        assert y.shape == (1, 1), row["name"]


IQ4_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int8)


def iq4_nl_as_q8_0(w: bytes) -> bytes:
    """IQ4_NL blocks {fp16 d, 16 nibble bytes} as the Q8_0 blocks {d, 32 int8 levels} they equal."""
    b = np.frombuffer(w, np.uint8).reshape(-1, 18)
    levels = np.concatenate([IQ4_LEVELS[b[:, 2:] & 0xF], IQ4_LEVELS[b[:, 2:] >> 4]], axis=1)
    return np.concatenate([b[:, :2], levels.view(np.uint8)], axis=1).tobytes()


@pytest.mark.parametrize("isa", [i for i in ("avx2", "avx_vnni", "avx512") if i in SIMD])
def test_iq4_nl_bit_exact_vs_q8_0_rows8_reference(isa):
    """IQ4_NL on x86 = Q8_0 on the transcoded rows: decode row tiles below 4 tokens, the rows8 / rows16
    Q8_0 kernels from 4 up, all following gemm_rows8_ref's Q8_0 sequence bit for bit (row groups of
    16 and their tails, more than one 64-block chunk of n_in, more than one 64-token chunk)."""
    rng = np.random.default_rng(31)
    for n_in in (32, 96, 64 * 32 + 96):
        for n_rows in (1, 7, 8, 9, 17, 33):
            w = random_rows("IQ4_NL", n_rows, n_in, rng)
            w8 = iq4_nl_as_q8_0(w)
            for n_tok in (1, 2, 3, 4, 5, 9, 70, 131):
                x = (rng.standard_normal((n_tok, n_in)) * rng.uniform(0.1, 10)).astype(np.float32)
                y = _core.kernel_gemm(isa, "IQ4_NL", w, x)
                np.testing.assert_array_equal(y, _core.kernel_gemm_rows8_ref("Q8_0", w8, x),
                                              err_msg=f"{isa} n_in={n_in} rows={n_rows} tokens={n_tok}")
    np.testing.assert_array_equal(_core.dequantize("Q8_0", np.frombuffer(w8, np.uint8)),
                                  _core.dequantize("IQ4_NL", np.frombuffer(w, np.uint8)))
