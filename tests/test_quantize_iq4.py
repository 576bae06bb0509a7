"""IQ4_NL / IQ4_XS quantization (cpp/quant/quantize_iq4.cpp) and `edgellama quantize --type IQ4_NL/IQ4_XS`:
our blocks dequantize with gguf-py exactly as with our own dequantization; the scale search beats
plain absmax rounding onto the same levels (NumPy, written here) and llama.cpp's own quantizer
(ggml_quantize_chunk through ctypes, where a llama.cpp build is beside the checkout) on the weighted
squared error; importance weights reduce the weighted error; special rows stay finite; the file
types follow llama.cpp's mixes (IQ4_NL fallback for rows that IQ4_XS cannot hold) and the files run."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as Q

import edgellama
from edgellama import _core, cli
from model_factory import make_model
from test_quantize_math import tricky_matrix

TYPES = ["IQ4_NL", "IQ4_XS"]
LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float32)


def deq(t: str, b: np.ndarray, shape) -> np.ndarray:
    return gguf.quants.dequantize(b, Q[t]).reshape(shape)


def naive_iq4(x: np.ndarray) -> np.ndarray:
    """Per 32 values: the value of largest magnitude onto the -127 level (fp16 scale), every value to
    its nearest level. Dequantized values."""
    blocks = x.reshape(-1, 32).astype(np.float32)
    idx = np.argmax(np.abs(blocks), axis=1)
    xmax = blocks[np.arange(len(blocks)), idx]
    d = (xmax / -127.0).astype(np.float16).astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.nan_to_num(blocks / d)
    nearest = LEVELS[np.argmin(np.abs(v[..., None] - LEVELS), axis=-1)]
    return (d * nearest).reshape(x.shape)


def weighted_rms(t, b, x, w):
    return float(np.sqrt(np.mean(w * (deq(t, b, x.shape).astype(np.float64) - x) ** 2)))


def search_weights(x: np.ndarray, imp: np.ndarray) -> np.ndarray:
    """The weights the search minimises with importance (quantize_iq4.cpp's row_weights, written
    again here): the importance shrunk towards its row mean (+ 0.3 mean), times sqrt(sigma2 + x^2)
    with sigma2 = 2 mean(x^2) over the row."""
    x = x.astype(np.float64)
    imp = np.broadcast_to(imp.astype(np.float64), x.shape)
    sigma2 = 2 * np.mean(x * x, axis=1, keepdims=True)
    return (imp + 0.3 * imp.mean(axis=1, keepdims=True)) * np.sqrt(sigma2 + x * x)


def _ggml():
    """llama.cpp's ggml_quantize_chunk, or None (no llama.cpp build beside the checkout)."""
    root = os.environ.get("EDGELLAMA_LLAMACPP_BUILD", "/work/llamacpp/build-native/bin")
    path = Path(root) / "libggml-base.so"
    if not path.is_file():
        return None
    lib = ctypes.CDLL(str(path))
    f = lib.ggml_quantize_chunk
    f.restype = ctypes.c_size_t
    f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                  ctypes.c_void_p]

    def quantize(t, x, imp=None):
        bs, ts = gguf.GGML_QUANT_SIZES[Q[t]]
        out = np.zeros((x.shape[0], x.shape[1] // bs * ts), np.uint8)
        f(int(Q[t]), x.ctypes.data, out.ctypes.data, 0, x.shape[0], x.shape[1], None if imp is None else imp.ctypes.data)
        return out

    return quantize


@pytest.mark.parametrize("t", TYPES)
@pytest.mark.parametrize("dist", ["normal", "heavy"])
def test_error_and_dequantization(t, dist):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 1024)) if dist == "normal" else rng.standard_t(3, (32, 1024))
    x = (x * 0.02).astype(np.float32)
    b = _core.quantize(t, x)
    bs, ts = gguf.GGML_QUANT_SIZES[Q[t]]
    assert b.dtype == np.uint8 and b.shape == (32, 1024 // bs * ts)
    ours = deq(t, b, x.shape)
    assert np.array_equal(ours.view(np.uint32), _core.dequantize(t, b).reshape(x.shape).view(np.uint32))
    ones = np.ones(1024)
    # measured 0.92-0.97x the naive error (normal / heavy-tailed data); a lost search step gives 1.0
    assert weighted_rms(t, b, x, ones) <= 0.98 * float(np.sqrt(np.mean((naive_iq4(x) - x) ** 2)))
    ggml = _ggml()
    if ggml is not None:
        imp = rng.lognormal(0.0, 2.0, 1024).astype(np.float32)
        # without importance (weights sqrt(sigma2 + x^2)): measured 0.974-0.979x llama.cpp's error
        assert weighted_rms(t, b, x, ones) <= weighted_rms(t, ggml(t, x), x, ones)
        ours, theirs = _core.quantize(t, x, importance=imp), ggml(t, x, imp)
        # with importance, on our search's objective (llama.cpp's differs by the shrinkage): measured
        # 0.92-0.96x; a lost search step or a wrong weight formula shows here
        sw = search_weights(x, imp)
        assert weighted_rms(t, ours, x, sw) <= 0.98 * weighted_rms(t, theirs, x, sw), (t, dist)
        if t == "IQ4_XS":
            # the three super-block scale candidates (-32, -31.5, -31 for the largest sub-block scale):
            # measured 0.9524 / 0.9258 (normal / heavy); with the one candidate -32: 0.9597 / 0.9331
            assert weighted_rms(t, ours, x, sw) <= {"normal": 0.956, "heavy": 0.929}[dist] * weighted_rms(t, theirs, x, sw)
        # on the plain imatrix-weighted error the shrinkage costs a little (the price of the lower KL):
        # measured 0.99-1.04x
        assert weighted_rms(t, ours, x, imp) <= 1.06 * weighted_rms(t, theirs, x, imp), (t, dist)


@pytest.mark.parametrize("t", TYPES)
def test_importance_reduces_weighted_error(t):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((32, 1024)).astype(np.float32)
    imp = rng.lognormal(0.0, 2.0, 1024).astype(np.float32)
    plain = weighted_rms(t, _core.quantize(t, x), x, imp)
    weighted = weighted_rms(t, _core.quantize(t, x, importance=imp), x, imp)
    assert weighted < 0.9 * plain, (weighted, plain)


@pytest.mark.parametrize("t", TYPES)
def test_special_rows(t):
    x = tricky_matrix(512, seed=3)
    b = _core.quantize(t, x)
    d = deq(t, b, x.shape)
    assert np.all(np.isfinite(d))  # 1e30 rows: the fp16 scale is clamped to 65504, not inf
    assert np.array_equal(d[0], np.zeros(512, np.float32))
    assert np.max(np.abs(d[1] - 3.0)) < 0.01 * 3.0
    assert np.all(d[[4, 5]] == 0)  # below the smallest scale: zeros
    assert np.array_equal(_core.quantize(t, x, n_threads=3), _core.quantize(t, x, n_threads=1))


@pytest.mark.parametrize("dist", ["normal", "heavy"])
def test_iq4_nl_stored_scale_beats_its_fp16_neighbours(dist):
    """IQ4_NL's stored fp16 scale is refined after the search (quantize_iq4.cpp refine_nl_scale): on no
    block does either fp16 neighbour of the stored scale, with its own nearest levels, give a lower
    weighted error (the search's objective without importance: sqrt(sigma2 + x^2) sharpening).
    Measured: no such block of 1024; the search without the refinement leaves 40 (normal) and 33
    (heavy-tailed) blocks of 1024 where a neighbour is better."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 1024)) if dist == "normal" else rng.standard_t(3, (32, 1024))
    x = (x * 0.02).astype(np.float32)
    blocks = _core.quantize("IQ4_NL", x).reshape(-1, 18)
    dh = blocks[:, :2].copy().view(np.uint16).reshape(-1)
    w = search_weights(x, np.ones(1024, np.float32)).astype(np.float32).astype(np.float64).reshape(-1, 32)
    xb = x.astype(np.float64).reshape(-1, 32)

    def error(h):  # per block, every value at its nearest level for scale h (fp16 bits)
        d = h.view(np.float16).astype(np.float64)[:, None]
        q = LEVELS.astype(np.float64)[np.argmin(np.abs(xb[..., None] / d[..., None] - LEVELS), axis=-1)]
        return (w * (xb - d * q) ** 2).sum(axis=1)

    assert np.all(dh & 0x7FFF) and np.all((dh & 0x7FFF) < 0x7BFF)  # finite, non-zero scales here
    mag, sign = (dh & 0x7FFF).astype(np.int32), (dh & 0x8000).astype(np.int32)
    stored = error(dh)
    # the stored scale's levels are the nearest ones (what dequantization gives back)
    assert np.allclose((w * (deq("IQ4_NL", blocks, (len(dh), 32)) - xb) ** 2).sum(axis=1), stored, rtol=1e-9, atol=0)
    neighbours = np.minimum(error((sign | (mag + 1)).astype(np.uint16)), error((sign | (mag - 1)).astype(np.uint16)))
    assert int(np.sum(stored > neighbours * (1 + 1e-12))) == 0


def test_row_length_must_fit_the_block():
    with pytest.raises(ValueError, match="not a multiple of the IQ4_XS block size 256"):
        _core.quantize("IQ4_XS", np.zeros((2, 96), np.float32))
    assert _core.quantize("IQ4_NL", np.zeros((2, 96), np.float32)).shape == (2, 3 * 18)
    rows = {r["name"]: r for r in _core.type_table()}
    assert rows["IQ4_NL"]["can_quantize"] and rows["IQ4_XS"]["can_quantize"]


@pytest.fixture(scope="module")
def f32_model(tmp_path_factory):
    # n_ff = 288: ffn_down rows (288 values) cannot be IQ4_XS -> IQ4_NL, as llama.cpp falls back;
    # n_head_kv = 1 with 4 heads (n_gqa 4): attn_v gets Q5_K as in llama.cpp's mix
    return make_model(tmp_path_factory.mktemp("iq4") / "m.gguf", n_layer=2, n_embd=256, n_head=4, n_head_kv=1,
                      n_ff=288, n_vocab=300, seed=5)


def _rel_rms(path, ref_tensors, name):
    r = gguf.GGUFReader(str(path))
    t = next(t for t in r.tensors if t.name == name)
    ref = ref_tensors[name]
    d = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(ref.shape)
    return float(np.sqrt(np.mean((d - ref) ** 2)) / np.std(ref))


@pytest.mark.parametrize("t", TYPES)
def test_quantize_command(f32_model, tmp_path, t):
    from test_forward_random_models import check_model

    out = tmp_path / f"{t}.gguf"
    assert cli.main(["quantize", f32_model, str(out), "--type", t, "-q", "-t", "2"]) == 0
    r = gguf.GGUFReader(str(out))
    types = {tt.name: tt.tensor_type.name for tt in r.tensors}
    assert types["blk.1.attn_q.weight"] == t
    assert types["blk.0.attn_v.weight"] == "Q5_K"  # n_gqa >= 4
    assert types["output.weight"] == "Q6_K"
    assert types["blk.1.ffn_down.weight"] == "IQ4_NL"  # 288 values: IQ4_XS cannot hold the row
    assert int(r.fields["general.file_type"].parts[-1][0]) == {"IQ4_NL": 25, "IQ4_XS": 30}[t]
    # tensor error: measured 0.073-0.074 of the weights' std (Q4_0 from the same command: 0.080)
    ref = {tt.name: np.array(tt.data) for tt in gguf.GGUFReader(f32_model).tensors}
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight"):
        assert 0.05 < _rel_rms(out, ref, name) < 0.077, name
    # and the file runs: edgellama's forward pass = the float64 reference on gguf-py's dequantization
    check_model(str(out), 300, seed=9)


@pytest.mark.parametrize("t", TYPES)
def test_llamacpp_runs_our_file(f32_model, tmp_path, t):
    """llama.cpp's llama-bench loads and runs our IQ4 file (prompt + generation), where a llama.cpp
    build is beside the checkout (never in CI)."""
    import subprocess

    bench = Path(os.environ.get("EDGELLAMA_LLAMACPP_BUILD", "/work/llamacpp/build-native/bin")) / "llama-bench"
    if not bench.is_file():
        pytest.skip(f"no llama.cpp build at {bench.parent}")
    out = tmp_path / f"{t}.gguf"
    assert cli.main(["quantize", f32_model, str(out), "--type", t, "-q", "-t", "2"]) == 0
    r = subprocess.run([str(bench), "-m", str(out), "-p", "8", "-n", "2", "-r", "1", "-t", "1"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{t} - " in r.stdout and "tg2" in r.stdout, r.stdout
