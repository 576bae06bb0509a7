"""edgellama._core.dequantize must equal gguf-py's gguf.quants.dequantize bit for bit, for every weight type.

Compared as uint32 views so NaN payloads, signed zeros and infinities count. Inputs: random raw bytes
(hit NaN/Inf/subnormal fp16 scales), well-formed blocks (quantized Gaussian data, random K-quant
blocks with finite scales) and hand-made edge-case scales.
"""

from __future__ import annotations

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGML_QUANT_SIZES

from edgellama import _core

from model_factory import (IQ_TYPES, K_SCALE_FIELDS, K_TYPES, LEGACY_TYPES, RANDOM_BLOCK_TYPES, random_float_blocks,
                           random_kquant_blocks)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN/Inf scales in gguf-py

TYPES = ("F16", "BF16") + LEGACY_TYPES + K_TYPES + IQ_TYPES

# fp16 scale-field offsets of the legacy blocks (d first; Q4_1/Q5_1 have m right after d).
LEGACY_SCALE_FIELDS = {"Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,)}
SCALE_FIELDS = {**LEGACY_SCALE_FIELDS, **K_SCALE_FIELDS}

EDGE_F16 = np.array(
    [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0x7D55],
    dtype=np.uint16,
)  # zeros, subnormals, normals, max, +-inf, quiet NaNs, signalling NaNs


def reference(type_name: str, data: np.ndarray) -> np.ndarray:
    out = gguf.quants.dequantize(np.ascontiguousarray(data, dtype=np.uint8).reshape(-1), QT[type_name])
    return np.ascontiguousarray(out, dtype=np.float32).reshape(-1)


def ours(type_name: str, data: np.ndarray) -> np.ndarray:
    out = _core.dequantize(type_name, np.ascontiguousarray(data, dtype=np.uint8).reshape(-1))
    assert out.dtype == np.float32
    return out.reshape(-1)


def assert_bit_identical(type_name: str, data: np.ndarray) -> None:
    want = reference(type_name, data)
    got = ours(type_name, data)
    assert got.shape == want.shape, (type_name, got.shape, want.shape)
    gw, ww = got.view(np.uint32), want.view(np.uint32)
    bad = np.nonzero(gw != ww)[0]
    if bad.size:
        bs, ts = GGML_QUANT_SIZES[QT[type_name]]
        i = int(bad[0])
        pytest.fail(
            f"{type_name}: {bad.size}/{got.size} values differ; first at index {i} (block {i // bs}): "
            f"got {got[i]!r} (0x{int(gw[i]):08x}), gguf-py {want[i]!r} (0x{int(ww[i]):08x}); "
            f"block bytes {bytes(np.asarray(data).reshape(-1)[(i // bs) * ts:(i // bs + 1) * ts]).hex()}"
        )


@pytest.mark.parametrize("type_name", TYPES)
def test_random_raw_bytes(type_name):
    rng = np.random.default_rng(1234 + QT[type_name].value)
    bs, ts = GGML_QUANT_SIZES[QT[type_name]]
    n_blocks = max(1, 8192 // bs)
    data = rng.integers(0, 256, size=n_blocks * ts, dtype=np.uint8)
    assert_bit_identical(type_name, data)


@pytest.mark.parametrize("type_name", TYPES)
def test_well_formed_blocks(type_name):
    rng = np.random.default_rng(99 + QT[type_name].value)
    bs, ts = GGML_QUANT_SIZES[QT[type_name]]
    n_blocks = max(1, 8192 // bs)
    if type_name in RANDOM_BLOCK_TYPES:
        data = random_kquant_blocks(type_name, n_blocks, rng, target_std=None)
    else:
        data = random_float_blocks(type_name, n_blocks, rng)
    out = ours(type_name, data)
    assert np.all(np.isfinite(out))
    assert np.any(out != 0)
    assert_bit_identical(type_name, data)


@pytest.mark.parametrize("type_name", tuple(SCALE_FIELDS))
def test_edge_case_scales(type_name):
    """Every scale field set to zero, subnormal, max, Inf and NaN values (the rest random)."""
    rng = np.random.default_rng(7 + QT[type_name].value)
    _, ts = GGML_QUANT_SIZES[QT[type_name]]
    offs = SCALE_FIELDS[type_name]
    n = len(EDGE_F16)
    blocks = rng.integers(0, 256, size=(n * n, ts), dtype=np.uint8)
    for j, o in enumerate(offs):
        # all combinations of (first field, second field) edge values
        vals = np.repeat(EDGE_F16, n) if j == 0 else np.tile(EDGE_F16, n)
        blocks[:, o : o + 2] = vals.astype("<u2").view(np.uint8).reshape(-1, 2)
    assert_bit_identical(type_name, blocks)


def test_mxfp4_every_exponent():
    """MXFP4's e8m0 block exponent, all 256 values (0 and 1 give the subnormal scales 2^-128 and
    2^-127, 254 and 255 overflow to +-inf with the largest levels), against every nibble."""
    blocks = np.zeros((256, 17), np.uint8)
    blocks[:, 0] = np.arange(256)
    blocks[:, 1:] = np.arange(16, dtype=np.uint8) * 17  # both nibbles of byte j = j: levels 0..15 twice
    assert_bit_identical("MXFP4", blocks)


@pytest.mark.parametrize("type_name", ("F16", "BF16"))
def test_float_edge_values(type_name):
    vals = np.concatenate([EDGE_F16, np.arange(0, 65536, 37, dtype=np.uint16)]).astype("<u2")
    assert_bit_identical(type_name, vals.view(np.uint8))


def test_f16_exhaustive_against_numpy():
    vals = np.arange(65536, dtype=np.uint32).astype("<u2")
    got = ours("F16", vals.view(np.uint8))
    want = vals.view(np.float16).astype(np.float32)
    finite = np.isfinite(want)
    assert np.array_equal(got[finite].view(np.uint32), want[finite].view(np.uint32))
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("type_name", TYPES)
def test_wrong_byte_count(type_name):
    _, ts = GGML_QUANT_SIZES[QT[type_name]]
    rng = np.random.default_rng(0)
    for nbytes in (ts + 1, 2 * ts - 1, 1) if ts > 1 else ():
        with pytest.raises(ValueError, match=type_name):
            _core.dequantize(type_name, rng.integers(0, 256, size=nbytes, dtype=np.uint8))
    if ts == 2:
        with pytest.raises(ValueError):
            _core.dequantize(type_name, np.zeros(3, np.uint8))


@pytest.mark.parametrize("type_name", TYPES)
def test_empty_input(type_name):
    out = _core.dequantize(type_name, np.zeros(0, np.uint8))
    assert out.size == 0


def test_unknown_type_name():
    with pytest.raises(ValueError, match="Q9_9"):
        _core.dequantize("Q9_9", np.zeros(18, np.uint8))
