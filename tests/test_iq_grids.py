"""The grid i-quants (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M): the committed grid header
equals what scripts/gen_iq_grids.py generates from gguf-py now, and dequantization is bit for bit
gguf.quants.dequantize on blocks that use every grid index and every sign pattern of each type, and on
IQ1_M's split fp16 scale at edge values. (Random and edge-scale blocks of these types are in
test_dequantize.py; the kernels are in test_kernels.py and test_fast_path_types.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgellama import _core
from kernel_data import random_rows
from model_factory import GRID_TYPES, set_iq1_m_d
from test_dequantize import EDGE_F16, assert_bit_identical

ROOT = Path(__file__).resolve().parent.parent


def test_committed_header_is_what_the_script_generates():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_iq_grids.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


def _u16(a):
    return np.asarray(a, np.uint16).astype("<u2").view(np.uint8)


def _u32(a):
    return np.asarray(a, np.uint32).astype("<u4").view(np.uint8)


# type -> (grid size, sign patterns per stored sign field); the builders below give block counts
GRID_SIZES = {"IQ2_XXS": 256, "IQ2_XS": 512, "IQ2_S": 1024, "IQ3_XXS": 256, "IQ3_S": 512, "IQ1_S": 2048, "IQ1_M": 2048}


def every_index_blocks(t: str, rng: np.random.Generator) -> np.ndarray:
    """Blocks (uint8 (n, type_size)) whose grid-index fields run through 0..grid size - 1 and whose sign
    fields run through every pattern (7-bit ksigns indices or 8-bit sign bytes); scales, fp16 d (finite,
    0.01..1) and IQ1 delta bits random."""
    n_idx = GRID_SIZES[t]
    if t == "IQ2_XXS":  # d, per 32 values: u32 of 4 index bytes, u32 of 4 x 7 sign bits + scale
        nb = n_idx // 32
        k = np.arange(nb * 32).reshape(nb, 8, 4)
        idx = (k % 256).astype(np.uint32)
        signs = (k % 128).astype(np.uint32)
        w0 = idx[..., 0] | idx[..., 1] << 8 | idx[..., 2] << 16 | idx[..., 3] << 24
        w1 = signs[..., 0] | signs[..., 1] << 7 | signs[..., 2] << 14 | signs[..., 3] << 21
        w1 |= rng.integers(0, 16, (nb, 8)).astype(np.uint32) << 28
        body = _u32(np.stack([w0, w1], axis=-1).reshape(nb, 16)).reshape(nb, 64)
    elif t == "IQ2_XS":  # d, 32 x u16 (9-bit index | 7 sign bits << 9), scales[8]
        nb = n_idx // 32
        k = np.arange(nb * 32).reshape(nb, 32)
        body = np.concatenate([_u16((k % 512) | (k % 128) << 9).reshape(nb, 64),
                               rng.integers(0, 256, (nb, 8), dtype=np.uint8)], axis=1)
    elif t == "IQ2_S":  # d, qs[32] (low 8 bits), signs[32], qh[8] (2 high bits each), scales[8]
        nb = n_idx // 32
        k = np.arange(nb * 32).reshape(nb, 32)
        idx = k % 1024
        hi = (idx >> 8).reshape(nb, 8, 4)
        qh = (hi[..., 0] | hi[..., 1] << 2 | hi[..., 2] << 4 | hi[..., 3] << 6).astype(np.uint8)
        body = np.concatenate([(idx & 255).astype(np.uint8), (k % 256).astype(np.uint8), qh,
                               rng.integers(0, 256, (nb, 8), dtype=np.uint8)], axis=1)
    elif t == "IQ3_XXS":  # d, qs[64] (index bytes), per 32 values u32 of 4 x 7 sign bits + scale
        nb = max(n_idx // 64, 128 // 32)
        idx = (np.arange(nb * 64) % 256).astype(np.uint8).reshape(nb, 64)
        s = (np.arange(nb * 32) % 128).astype(np.uint32).reshape(nb, 8, 4)
        w = s[..., 0] | s[..., 1] << 7 | s[..., 2] << 14 | s[..., 3] << 21
        w |= rng.integers(0, 16, (nb, 8)).astype(np.uint32) << 28
        body = np.concatenate([idx, _u32(w).reshape(nb, 32)], axis=1)
    elif t == "IQ3_S":  # d, qs[64] (low 8 bits), qh[8] (9th bits), signs[32], scales[4]
        nb = n_idx // 64
        idx = np.arange(nb * 64).reshape(nb, 64) % 512
        hi = (idx >> 8).reshape(nb, 8, 8)
        qh = (hi << np.arange(8)).sum(axis=-1).astype(np.uint8)
        signs = (np.arange(nb * 32) % 256).astype(np.uint8).reshape(nb, 32)
        body = np.concatenate([(idx & 255).astype(np.uint8), qh, signs,
                               rng.integers(0, 256, (nb, 4), dtype=np.uint8)], axis=1)
    elif t == "IQ1_S":  # d, qs[32] (low 8 bits), per 32 values u16: 4 x 3 high bits, 3-bit scale, delta sign
        nb = n_idx // 32
        idx = np.arange(nb * 32).reshape(nb, 8, 4) % 2048
        hi = (idx >> 8).astype(np.uint16)
        qh = hi[..., 0] | hi[..., 1] << 3 | hi[..., 2] << 6 | hi[..., 3] << 9
        qh |= rng.integers(0, 16, (nb, 8)).astype(np.uint16) << 12
        body = np.concatenate([(idx & 255).astype(np.uint8).reshape(nb, 32), _u16(qh).reshape(nb, 16)], axis=1)
    else:  # IQ1_M: qs[32] (low 8 bits), qh[16] (per nibble: 3 high bits, delta sign), scales[8]
        nb = n_idx // 32
        idx = np.arange(nb * 32).reshape(nb, 32) % 2048
        nib = ((idx >> 8) | rng.integers(0, 2, (nb, 32)) << 3).reshape(nb, 16, 2)
        qh = (nib[..., 0] | nib[..., 1] << 4).astype(np.uint8)
        blocks = np.concatenate([(idx & 255).astype(np.uint8), qh,
                                 rng.integers(0, 256, (nb, 8), dtype=np.uint8)], axis=1)
        set_iq1_m_d(blocks, rng.uniform(0.01, 1, nb).astype(np.float16).view(np.uint16))
        return blocks
    d = _u16(rng.uniform(0.01, 1, nb).astype(np.float16).view(np.uint16)).reshape(nb, 2)
    return np.ascontiguousarray(np.concatenate([d, body], axis=1))


@pytest.mark.parametrize("t", GRID_TYPES)
def test_every_grid_index_and_sign_pattern(t):
    blocks = every_index_blocks(t, np.random.default_rng(17))
    assert_bit_identical(t, blocks)


def test_iq1_m_split_scale_edge_values():
    """IQ1_M's fp16 d lives in the top nibbles of its four scale words: zeros, subnormals, max, +-inf and
    NaNs set there (the rest of the block random) dequantize like gguf-py."""
    rng = np.random.default_rng(23)
    blocks = rng.integers(0, 256, size=(len(EDGE_F16) * 4, 56), dtype=np.uint8)
    set_iq1_m_d(blocks, np.tile(EDGE_F16, 4))
    assert_bit_identical("IQ1_M", blocks)


SIMD = [i for i in _core.available_isas() if i != "scalar"]


@pytest.mark.parametrize("isa", SIMD)
@pytest.mark.parametrize("t", GRID_TYPES)
def test_simd_bits_equal_scalar(isa, t):
    """The grid kernels form the same exact integer per super-block and the same float sequence on every
    ISA (iquant_grid_gemm.h), so they must give the scalar kernel's bits: single tokens (AVX2's fused
    decode path), 2 and 17 tokens (unpacked blocks reused across a 16-token chunk and a tail), random and
    extreme blocks (every byte 0xFF: the largest levels and scales; fp16 d = 65504) against activations
    of both signs hitting +-127."""
    rng = np.random.default_rng(29)
    n_in = 3 * 256
    for extreme in (None, "all_max", "max_scale"):
        w = random_rows(t, 5, n_in, rng, extreme=extreme)
        for n_tok in (1, 2, 17):
            x = (rng.standard_normal((n_tok, n_in)) * rng.uniform(0.1, 10)).astype(np.float32)
            x[:, ::7] = 1000.0 * np.sign(x[:, ::7])  # +-127 after quantization
            np.testing.assert_array_equal(_core.kernel_gemm(isa, t, w, x), _core.kernel_gemm("scalar", t, w, x),
                                          err_msg=f"{isa} {t} {extreme} n_tok={n_tok}")
