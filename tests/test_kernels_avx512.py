"""The AVX-512 (F/BW/VL/DQ/VNNI) kernel set: dispatch, coverage, bit-exactness of the 16-rows VNNI
kernels against their scalar reference (the rows8 arithmetic sequence), independence of the token
count, and the model-level fast-path accuracy with avx512 against avx2 and the exact path.

Runs only where the CPU (and OS) can execute AVX-512; elsewhere every test skips saying so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import subprocess_env
from edgellama import _core
from kernel_data import ALL_TYPES, QUANT_TYPES, block_size, cpu_flags, random_rows


AVX512_FLAGS = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"}
CPU_HAS_AVX512 = AVX512_FLAGS <= cpu_flags()  # the kernel also checks the OS saves ZMM state (xgetbv)

pytestmark = pytest.mark.skipif("avx512" not in _core.available_isas(),
                                reason="this CPU/OS cannot run AVX-512 F/BW/VL/DQ/VNNI")

# Kernels of the avx512 set that follow the rows8 reference sequence (gemm_rows8_ref) bit for bit.
ROWS16_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def _rows8_ref(t, w, x):
    """gemm_rows8_ref's output, or None where this build's reference lacks the type (Q5_0/Q5_1 join it
    with the AVX2 rows8 kernels of the same sequence; until then the caller checks against scalar)."""
    try:
        return _core.kernel_gemm_rows8_ref(t, w, x)
    except Exception as e:  # ArgumentError: no rows8 reference for ...
        assert "no rows8 reference" in str(e)
        return None


def _check_rows16(t, w, x, n_rows, n_in, err_msg=""):
    y = _core.kernel_gemm("avx512", t, w, x)
    ref = _rows8_ref(t, w, x)
    if ref is not None:
        np.testing.assert_array_equal(y, ref, err_msg=err_msg)
        ref_scalar = _core.kernel_gemm("scalar", t, w, x)
        y, ref = ref, ref_scalar  # and the reference is the scalar kernel's math up to float rounding
    else:
        ref = _core.kernel_gemm("scalar", t, w, x)
    deq = _dequant(t, w, n_rows, n_in)
    if np.all(np.isfinite(deq)):
        absdot = np.abs(x).astype(np.float64) @ np.abs(deq).T
        assert np.all(np.abs(y.astype(np.float64) - ref) <= 2e-5 * absdot + 1e-5), err_msg


def _dequant(t: str, w: bytes, n_rows: int, n_in: int) -> np.ndarray:
    if t == "F32":
        return np.frombuffer(w, dtype=np.float32).reshape(n_rows, n_in).astype(np.float64)
    return _core.dequantize(t, np.frombuffer(w, dtype=np.uint8)).astype(np.float64).reshape(n_rows, n_in)


def test_avx512_listed_iff_cpu_flags():
    # /proc/cpuinfo lists what the CPU has; the dispatcher must agree (the OS enables ZMM on Linux)
    assert CPU_HAS_AVX512
    isas = _core.available_isas()
    assert isas[-1] == "avx512" and "avx2" in isas


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512", ""])
def test_edgellama_isa_selects_each_level(isa):
    code = "import edgellama._core as c; print(c.isa())"
    r = subprocess.run([sys.executable, "-c", code], env=subprocess_env(EDGELLAMA_ISA=isa), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (isa or "avx512")  # unset / empty: the best level


@pytest.mark.parametrize("t", ALL_TYPES)
def test_every_avx2_type_has_an_avx512_kernel(t):
    rng = np.random.default_rng(20)
    n_in = max(block_size(t), 32) * 2
    w = random_rows(t, 3, n_in, rng)
    x = rng.standard_normal((2, n_in)).astype(np.float32)
    _core.kernel_gemm("avx2", t, w, x)  # raises if avx2 has no kernel: then this test has nothing to check
    y = _core.kernel_gemm("avx512", t, w, x)
    ref = _core.kernel_gemm("scalar", t, w, x)
    tol = 2e-5 * (np.abs(x) @ np.abs(_dequant(t, w, 3, n_in)).T) + 1e-5
    assert np.all(np.abs(y - ref) <= tol)


@pytest.mark.parametrize("t", ROWS16_TYPES)
def test_rows16_bit_exact_vs_scalar_reference(t):
    """Odd row counts and tails of a 16-row group, n_in across block-chunk boundaries (32 blocks for
    Q4_0/Q4_1/Q5_x/Q8_0, 4 super-blocks for Q4_K/Q6_K), 1..20 tokens (decode path below 4, register tiles of 8
    and their remainders above) and more than one 64-token chunk."""
    rng = np.random.default_rng(21)
    sizes = (256, 5 * 256, 9 * 256) if t.endswith("_K") else (32, 96, 33 * 32, 65 * 32)
    token_counts = list(range(1, 21)) + [64, 67, 130]
    for n_in in sizes:
        for n_rows in (1, 15, 16, 17, 40):
            w = random_rows(t, n_rows, n_in, rng)
            x = (rng.standard_normal((max(token_counts), n_in)) * rng.uniform(0.1, 10)).astype(np.float32)
            for n_tok in token_counts:
                _check_rows16(t, w, x[:n_tok], n_rows, n_in, err_msg=f"{t} n_in={n_in} rows={n_rows} tokens={n_tok}")


def _q8_0_rows(value: int, n_rows: int, n_in: int, scale: float = 65504.0) -> bytes:
    blk = np.zeros((n_rows * n_in // 32, 34), np.uint8)
    blk[:, 0:2] = np.array([scale], np.float16).view(np.uint8)
    blk[:, 2:] = np.int8(value).view(np.uint8)
    return blk.tobytes()


@pytest.mark.parametrize("t", ROWS16_TYPES)
@pytest.mark.parametrize("extreme", ["max_scale", "all_max", "all_zero"])
def test_rows16_extremes(t, extreme):
    """All-15 nibbles, 6-bit scales of 63, fp16 scales of 65504, against +-127 activations (x = +-1000
    and sign-alternating): the int32 sums, the Q8_0 offset correction and the vpmulld scale products
    stay exact (bit-equal to the reference)."""
    rng = np.random.default_rng(22)
    n_in = 512 if t.endswith("_K") else 128
    w = random_rows(t, 17, n_in, rng, extreme=extreme)
    for x in (np.full((9, n_in), 1000.0, np.float32), np.full((9, n_in), -1.0, np.float32),
              rng.standard_normal((9, n_in)).astype(np.float32)):
        x = x.copy()
        x[1, ::2] *= -1
        for n_tok in (1, 3, 9):
            _check_rows16(t, w, x[:n_tok], 17, n_in, err_msg=f"{t} {extreme} tokens={n_tok}")


@pytest.mark.parametrize("value", [-128, 127, -1])
def test_q8_0_offset_trick_extremes(value):
    """Q8_0 weights of -128 (w ^ 0x80 = 0) and 127 (255) against activations of +-127: the largest
    |isum| (128 * 127 * 32) and the -128 * sum(a) correction."""
    n_in = 96
    w = _q8_0_rows(value, 17, n_in, scale=1.0)
    for sign in (1.0, -1.0):
        x = np.full((5, n_in), 50.0 * sign, np.float32)
        x[2, ::3] *= -1
        for n_tok in (1, 5):
            y = _core.kernel_gemm("avx512", "Q8_0", w, x[:n_tok])
            np.testing.assert_array_equal(y, _core.kernel_gemm_rows8_ref("Q8_0", w, x[:n_tok]))
    y = _core.kernel_gemm("avx512", "Q8_0", w, np.full((1, n_in), 1.0, np.float32))
    # activations quantize to exactly 127 with d = 1/127: y = value * 127 * n_in * (1/127) (exactly representable)
    np.testing.assert_allclose(y, value * n_in, rtol=1e-6)


@pytest.mark.parametrize("t", ALL_TYPES)
def test_one_token_equals_many_token_call(t):
    """Every avx512 kernel (overridden or inherited): a token's outputs have the same bits whether it
    is computed alone (decode), in a small call or inside a big one (prefill), and whatever rows share
    the call: speculative decoding and batching rely on it."""
    rng = np.random.default_rng(23)
    n_in = max(block_size(t), 32) * 5
    if block_size(t) == 1:
        n_in = 16 * 7 + 5  # float types: a non-multiple of 16 exercises the scalar tail
    n_rows = 37
    w = random_rows(t, n_rows, n_in, rng)
    x = (rng.standard_normal((70, n_in)) * 3).astype(np.float32)
    whole = _core.kernel_gemm("avx512", t, w, x)
    for i in (0, 1, 8, 33, 69):
        np.testing.assert_array_equal(_core.kernel_gemm("avx512", t, w, x[i:i + 1]), whole[i:i + 1], err_msg=f"{t} tok {i}")
    for t0, t1 in ((0, 2), (5, 8), (10, 14), (3, 20), (60, 70)):
        np.testing.assert_array_equal(_core.kernel_gemm("avx512", t, w, x[t0:t1]), whole[t0:t1], err_msg=f"{t} {t0}:{t1}")
    rb = len(w) // n_rows
    for r0, r1 in ((0, 1), (3, 19), (16, 37)):
        np.testing.assert_array_equal(_core.kernel_gemm("avx512", t, w[r0 * rb:r1 * rb], x[:9]), whole[:9, r0:r1])


@pytest.mark.parametrize("t", ["Q4_0", "Q4_1", "Q8_0", "Q4_K"])  # the AVX2 rows8 kernels of this build
def test_avx512_equals_avx2_bits(t):
    """Same per-output sequence as the AVX2 rows8 kernels: switching ISA does not change a bit."""
    rng = np.random.default_rng(24)
    n_in = 3 * 256
    w = random_rows(t, 21, n_in, rng)
    x = rng.standard_normal((13, n_in)).astype(np.float32)
    for n_tok in (1, 2, 13):
        np.testing.assert_array_equal(_core.kernel_gemm("avx512", t, w, x[:n_tok]), _core.kernel_gemm("avx2", t, w, x[:n_tok]))


@pytest.mark.parametrize("t", ["F32", "F16", "BF16"])
def test_float_kernels_vs_float64(t):
    rng = np.random.default_rng(25)
    for n_in in (1, 15, 16, 17, 255, 1024):
        w = random_rows(t, 6, n_in, rng)
        x = rng.standard_normal((5, n_in)).astype(np.float32)
        y = _core.kernel_gemm("avx512", t, w, x)
        deq = _dequant(t, w, 6, n_in)
        ref = x.astype(np.float64) @ deq.T
        # float32 accumulation: |err| <= n * eps * sum|x w| (loose worst case), checked much tighter in practice
        bound = 4 * np.finfo(np.float32).eps * np.sqrt(n_in) * (np.abs(x) @ np.abs(deq).T) + 1e-6
        assert np.all(np.abs(y - ref) <= bound), (t, n_in, np.max(np.abs(y - ref) / bound))


_LOGITS = """
import sys, numpy as np, edgellama
path, out, precision = sys.argv[1], sys.argv[2], sys.argv[3]
ids = [int(v) for v in sys.argv[4].split(",")]
with edgellama.Llama(path, n_ctx=512, n_threads=2, precision=precision) as llm:
    np.save(out, llm.eval(ids))
"""


def _logits_with(isa: str, path: Path, ids: list[int], precision: str, tmp: Path) -> np.ndarray:
    out = tmp / f"{isa}-{precision}.npy"
    r = subprocess.run([sys.executable, "-c", _LOGITS, str(path), str(out), precision, ",".join(map(str, ids))],
                       env=subprocess_env(EDGELLAMA_ISA=isa), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return np.load(out)


def _mean_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    def logsm(x):
        x = x.astype(np.float64)
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))
    lp, lq = logsm(p_logits), logsm(q_logits)
    return float((np.exp(lp) * (lp - lq)).sum(-1).mean())


def test_smollm2_logits_avx512_vs_avx2_and_exact(smollm2_path, tmp_path):
    """SmolLM2 (Q4_1 + Q8_0) over 120 positions: the avx512 fast path is as close to the exact forward
    as the avx2 one (mean KL bound of tests/test_fast_path_accuracy.py); here they are bit-identical."""
    from test_fast_path_accuracy import TEXT

    with __import__("edgellama").Llama(str(smollm2_path), vocab_only=True) as v:
        ids = v.tokenize(TEXT, add_bos=False)[:120]
    exact = _logits_with("avx2", smollm2_path, ids, "exact", tmp_path)
    fast2 = _logits_with("avx2", smollm2_path, ids, "fast", tmp_path)
    fast512 = _logits_with("avx512", smollm2_path, ids, "fast", tmp_path)
    kl2, kl512 = _mean_kl(exact, fast2), _mean_kl(exact, fast512)
    assert kl512 <= 3e-3, kl512
    assert kl512 <= 1.2 * kl2 + 1e-5, (kl512, kl2)
    assert _mean_kl(fast2, fast512) <= 1e-4
    # SmolLM2's matrices are Q4_1 and Q8_0, whose avx512 kernels follow the AVX2 kernels' arithmetic
    # sequence: the whole forward pass gives the same bits on both levels (measured: KL 9.5e-4 each)
    np.testing.assert_array_equal(fast512, fast2)
    assert float((exact.argmax(-1) == fast512.argmax(-1)).mean()) >= 0.9
