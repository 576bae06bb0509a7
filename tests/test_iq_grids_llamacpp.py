"""The grid i-quants against llama.cpp itself, where its build is present (cross-check only, skipped
with the reason otherwise; never needed in CI):

* ggml's own quantizer (ggml_quantize_chunk in libggml-base, with an importance matrix as llama.cpp
  requires for these types) makes real blocks of Gaussian rows: our dequantization equals ggml's
  dequantize_row_* and gguf-py's bit for bit, and our kernels on those blocks are within the measured
  bound of a float64 dot (the random-byte blocks of test_kernels.py never look like quantizer output).
* llama-quantize writes whole model files (IQ3_S without an imatrix; the others with a legacy .dat
  imatrix this test writes): they load, every tensor dequantizes like gguf-py, and the int8 fast path
  stays close to the exact path."""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import edgellama
import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGML_QUANT_SIZES

from edgellama import _core
from model_factory import GRID_TYPES, make_model
from test_dequantize import assert_bit_identical
from test_fast_path_types import TOKENS, _log_softmax

BIN = Path(os.environ.get("EDGELLAMA_LLAMACPP_BIN", "/work/llamacpp/build-native/bin"))
LIBGGML_BASE = BIN / "libggml-base.so"
LLAMA_QUANTIZE = BIN / "llama-quantize"


@pytest.fixture(scope="module")
def ggml():
    if not LIBGGML_BASE.is_file():
        pytest.skip(f"{LIBGGML_BASE} not built (llama.cpp cross-check only)")
    lib = ctypes.CDLL(str(LIBGGML_BASE))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_void_p]
    return lib


def ggml_quantize(lib, t: str, x: np.ndarray, imatrix: np.ndarray) -> np.ndarray:
    rows, n = x.shape
    _, ts = GGML_QUANT_SIZES[QT[t]]
    out = np.zeros(rows * n // 256 * ts, np.uint8)
    x = np.ascontiguousarray(x, np.float32)
    imatrix = np.ascontiguousarray(imatrix, np.float32)
    size = lib.ggml_quantize_chunk(QT[t].value, x.ctypes.data, out.ctypes.data, 0, rows, n, imatrix.ctypes.data)
    assert size == out.size
    return out


def ggml_dequantize(lib, t: str, blocks: np.ndarray) -> np.ndarray:
    n = blocks.size // GGML_QUANT_SIZES[QT[t]][1] * 256
    out = np.zeros(n, np.float32)
    fn = getattr(lib, f"dequantize_row_{t.lower()}")
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn(blocks.ctypes.data, out.ctypes.data, n)
    return out


@pytest.mark.parametrize("t", GRID_TYPES)
def test_ggml_quantizer_blocks(ggml, t):
    rng = np.random.default_rng(41)
    n_in, rows = 512, 6
    x = rng.standard_normal((rows, n_in)).astype(np.float32) * np.exp(rng.standard_normal((rows, 1)))
    imatrix = np.exp(rng.standard_normal(n_in)).astype(np.float32)
    blocks = ggml_quantize(ggml, t, x, imatrix)
    ours = _core.dequantize(t, blocks)
    theirs = ggml_dequantize(ggml, t, blocks)
    np.testing.assert_array_equal(ours.view(np.uint32), theirs.view(np.uint32))
    assert_bit_identical(t, blocks)
    # the quantizer's blocks are a real approximation of x (a wrong layout would not be)
    deq = ours.reshape(rows, n_in).astype(np.float64)
    rel = np.linalg.norm(deq - x, axis=1) / np.linalg.norm(x, axis=1)
    assert np.all(rel < 0.75), (t, rel)
    # every ISA's kernel on these blocks against float64 with the same quantized activations
    act = rng.standard_normal((3, n_in)).astype(np.float32)
    aq = []
    for row in act:
        b = np.frombuffer(_core.kernel_quantize_activation("scalar", "q8_K", row), np.uint8).reshape(-1, 292)
        aq.append((b[:, 4:260].copy().view(np.int8) * b[:, :4].copy().view(np.float32)).reshape(-1))
    ref = np.array(aq, np.float64) @ deq.T
    mag = np.abs(np.array(aq, np.float64)) @ np.abs(deq).T
    for isa in _core.available_isas():
        y = _core.kernel_gemm(isa, t, blocks.tobytes(), act).astype(np.float64)
        assert np.all(np.abs(y - ref) <= 1e-6 * mag), (isa, t, np.max(np.abs(y - ref) / mag))


def write_legacy_imatrix(path: Path, gguf_path: str, rng: np.random.Generator) -> None:
    """llama.cpp's legacy .dat importance matrix (random positive importances) for every 2-D weight a
    matmul reads, written by edgellama.imatrix_file (tests/test_imatrix.py checks that writer against
    llama-imatrix's own files)."""
    from edgellama.imatrix_file import Imatrix, ImatrixEntry, write_imatrix

    reader = gguf.GGUFReader(gguf_path)
    entries = {t.name: ImatrixEntry(np.exp(rng.standard_normal((1, int(t.shape[0])))), np.ones(1))
               for t in reader.tensors
               if t.name.endswith(".weight") and len(t.shape) == 2 and t.name != "token_embd.weight"}
    write_imatrix(path, Imatrix(entries, datasets=["test"], chunk_count=1), legacy=True)


@pytest.fixture(scope="module")
def f16_model(tmp_path_factory):
    if not LLAMA_QUANTIZE.is_file():
        pytest.skip(f"{LLAMA_QUANTIZE} not built (llama.cpp cross-check only)")
    d = tmp_path_factory.mktemp("llamacpp_grid")
    path = make_model(d / "f16.gguf", wtype="F16", n_embd=256, n_ff=512, n_layer=2, n_vocab=96, seed=1)
    imatrix = d / "imatrix.dat"
    write_legacy_imatrix(imatrix, path, np.random.default_rng(5))
    return d, path, imatrix


# llama-quantize's file type whose mix uses the ggml type (its "IQ2_S" mix is mostly IQ2_XS; IQ2_M
# is the one with IQ2_S tensors). IQ3_S needs no imatrix in llama-quantize; the rest refuse to run
# without one. Three files (each llama-quantize run builds ggml's grid search tables, seconds per
# type on 2 cores); test_ggml_quantizer_blocks covers all seven types through ggml's quantizer.
FILE_TYPE = {"IQ2_S": "IQ2_M"}


@pytest.mark.parametrize("t", ["IQ3_S", "IQ2_S", "IQ1_M"])
def test_llama_quantize_file_loads_and_runs(f16_model, t):
    d, src, imatrix = f16_model
    out = d / f"{t}.gguf"
    cmd = ([str(LLAMA_QUANTIZE)] + ([] if t == "IQ3_S" else ["--imatrix", str(imatrix)]) +
           [src, str(out), FILE_TYPE.get(t, t), "1"])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    reader = gguf.GGUFReader(str(out))
    types = {tensor.name: tensor.tensor_type.name for tensor in reader.tensors}
    assert t in types.values(), types
    for tensor in reader.tensors:
        if tensor.tensor_type.name in GRID_TYPES:
            assert_bit_identical(tensor.tensor_type.name, np.asarray(tensor.data).reshape(-1).view(np.uint8))
    logits = {}
    for precision in ("exact", "fast"):
        with edgellama.Llama(str(out), n_ctx=64, n_threads=2, precision=precision, type_k="f32", type_v="f32",
                             verbose=False) as llm:
            logits[precision] = llm.eval(TOKENS)
    assert np.all(np.isfinite(logits["fast"])) and np.all(np.isfinite(logits["exact"]))
    lp, lq = _log_softmax(logits["exact"]), _log_softmax(logits["fast"])
    kl = float((np.exp(lp) * (lp - lq)).sum(axis=-1).mean())
    assert kl < 1e-2, (t, kl)
