"""Quantizing TO the grid i-quants (cpp/quant/quantize_iq_grid.cpp) and the IQ3_*/IQ2_*/IQ1_* file
types of `edgellama quantize`:
- format: gguf-py dequantizes our blocks bit for bit like our own dequantization (odd row counts);
- quality: the importance-weighted RMS error is below a bound set from measured error and below a
  plain baseline written here in NumPy (stored scales from the block maximum, every group onto its
  weighted-nearest grid point: what a search that lost its scale search would give), and, where a
  llama.cpp build is beside the checkout, at most 1.1x llama.cpp's own quantizer on the same rows
  and importance (ggml_quantize_chunk through ctypes);
- files: llama.cpp's per-tensor mixes, the imatrix requirement, a random model through
  `edgellama quantize ... IQ3_S` / `IQ2_XXS --imatrix` that loads and runs (fast vs exact KL), and
  llama.cpp loading our file (skips without a llama.cpp build)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as Q

import edgellama
from edgellama.quantize import quantize
from edgellama import _core, cli
from edgellama.imatrix_file import Imatrix, ImatrixEntry, write_imatrix
from model_factory import make_model
from test_quantize_iq4 import _ggml
from test_quantize_math import tricky_matrix

TYPES = ["IQ3_XXS", "IQ3_S", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M"]

# Per type: (values per grid point, values per stored scale, largest stored scale number, value
# factor d * GS * (2 ls + 1) * grid, sign storage) -- the formats as gguf-py's dequantize reads them.
FORMAT = {
    "IQ3_XXS": (4, 32, 15, 0.25, "parity"),
    "IQ3_S": (4, 32, 15, 1.0, "free"),
    "IQ2_XXS": (8, 32, 15, 0.125, "parity"),
    "IQ2_XS": (8, 16, 15, 0.125, "parity"),
    "IQ2_S": (8, 16, 15, 0.125, "free"),
    "IQ1_S": (8, 32, 7, 1.0, "none"),
    "IQ1_M": (8, 16, 7, 1.0, "none"),
}
# Weighted RMS error / weighted RMS of the data, measured on the rows of test_error_bounds (normal |
# heavy): IQ3_XXS .142|.177  IQ3_S .109|.152  IQ2_XXS .276|.377  IQ2_XS .237|.315  IQ2_S .212|.283
# IQ1_S .411|.527  IQ1_M .361|.418 (IQ2_S, IQ1_M: importance alone, unsharpened). Bounds: 5% above the larger.
REL_BOUND = {"IQ3_XXS": 0.186, "IQ3_S": 0.160, "IQ2_XXS": 0.396, "IQ2_XS": 0.331, "IQ2_S": 0.297,
             "IQ1_S": 0.553, "IQ1_M": 0.439}
# Our error / the baseline's, measured (normal | heavy): IQ3_XXS .967|.988  IQ3_S .919|.959
# IQ2_XXS .914|.823  IQ2_XS .923|.900  IQ2_S .867|.815  IQ1_S .790|.914  IQ1_M .782|.861. The baseline
# already takes the weighted-best grid point (exhaustively) for its scales, so the IQ3 margins are the
# scale search's alone; bounds: measured + 0.02, at most 1.
BASE_BOUND = {"IQ3_XXS": 1.0, "IQ3_S": 0.98, "IQ2_XXS": 0.935, "IQ2_XS": 0.945, "IQ2_S": 0.89, "IQ1_S": 0.935,
              "IQ1_M": 0.88}


def deq(t: str, b: np.ndarray, shape) -> np.ndarray:
    return gguf.quants.dequantize(b, Q[t]).reshape(shape)


def grid_values(t: str) -> np.ndarray:
    cls = getattr(gguf.quants, t)
    cls.init_grid()
    g = np.asarray(cls.grid, np.float64)
    return g.reshape(-1, g.shape[-1])


def baseline(t: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Dequantized values of the plain rounding: per block the largest |target| onto the largest grid
    value, the super-block scale from the largest block scale, stored scales rounded, every group the
    grid point (and IQ1 shift) nearest under the weights. Signs: |x|, with one value of an 8-group of
    an odd number of negatives flipped (the smallest) for the 7-sign-bit formats."""
    group, block, max_ls, gs, signs = FORMAT[t]
    grid = grid_values(t)
    if signs == "none":  # IQ1: grid -1, 0, 1 plus a +-1/8 shift per group (the lenient choice)
        cands = np.concatenate([grid + 0.125, grid - 0.125])
    else:
        cands = grid
    top = np.abs(cands).max()
    rows = x.reshape(-1, 256).astype(np.float64)
    ws = np.broadcast_to(w, x.shape).reshape(-1, 256).astype(np.float64)
    out = np.empty_like(rows)
    for r, (xs, wr) in enumerate(zip(rows, ws)):
        sign = np.where(xs < 0, -1.0, 1.0)
        a = xs.copy() if signs == "none" else np.abs(xs)
        if signs == "parity":
            for s in range(32):
                sl = slice(8 * s, 8 * s + 8)
                if np.sum(xs[sl] < 0) % 2:
                    k = 8 * s + int(np.argmin(np.abs(xs[sl])))
                    a[k] = -a[k]
        if signs == "none":
            sign[:] = 1.0
        bmax = np.abs(a).reshape(-1, block).max(axis=1) / top
        d = np.float32(np.float16(bmax.max() / (gs * (2 * max_ls + 1))))
        res = np.zeros(256)
        if d > 0:
            for b in range(256 // block):
                ls = int(np.clip(np.round((bmax[b] / (d * gs) - 1) / 2), 0, max_ls))
                D = d * gs * (2 * ls + 1)
                for g in range(block // group):
                    sl = slice(b * block + g * group, b * block + (g + 1) * group)
                    err = (wr[sl] * (a[sl] - D * cands) ** 2).sum(axis=1)
                    res[sl] = D * cands[int(np.argmin(err))]
        out[r] = res * sign
    return out.reshape(x.shape)


def wrms(y: np.ndarray, x: np.ndarray, w: np.ndarray) -> float:
    return float(np.sqrt(np.mean(w * (y.astype(np.float64) - x) ** 2)))


def rows(dist: str, n: int = 8, cols: int = 1024, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cols)) if dist == "normal" else rng.standard_t(3, (n, cols))
    return (x * 0.02).astype(np.float32)


@pytest.mark.parametrize("t", TYPES)
def test_dequantization_matches_gguf(t):
    rng = np.random.default_rng(7)
    x = (rng.standard_t(4, (7, 768)) * 0.05).astype(np.float32)  # odd row count
    imp = rng.lognormal(0.0, 1.0, 768).astype(np.float32)
    for w in (None, imp):
        b = _core.quantize(t, x, importance=w)
        bs, ts = gguf.GGML_QUANT_SIZES[Q[t]]
        assert b.dtype == np.uint8 and b.shape == (7, 768 // bs * ts)
        ours = _core.dequantize(t, b).reshape(x.shape)
        assert np.array_equal(deq(t, b, x.shape).view(np.uint32), ours.view(np.uint32))
        assert wrms(ours, x, np.ones(1)) < 0.6 * float(np.std(x))


@pytest.mark.parametrize("dist", ["normal", "heavy"])
@pytest.mark.parametrize("t", TYPES)
def test_error_bounds(t, dist):
    x = rows(dist)
    imp = np.random.default_rng(2).lognormal(0.0, 1.0, x.shape[1]).astype(np.float32)
    ours = wrms(deq(t, _core.quantize(t, x, importance=imp), x.shape), x, imp)
    rel = ours / float(np.sqrt(np.mean(imp * x.astype(np.float64) ** 2)))
    assert rel < REL_BOUND[t], (t, dist, rel)
    base = wrms(baseline(t, x, imp), x, imp)
    assert ours <= BASE_BOUND[t] * base, (t, dist, ours / base)


@pytest.mark.parametrize("t", TYPES)
def test_not_worse_than_llamacpp(t):
    ggml = _ggml()
    if ggml is None:
        pytest.skip("no llama.cpp build beside the checkout (EDGELLAMA_LLAMACPP_BUILD)")
    for dist in ("normal", "heavy"):
        x = rows(dist, n=16, seed=3)
        imp = np.random.default_rng(4).lognormal(0.0, 1.0, x.shape[1]).astype(np.float32)
        ours = wrms(deq(t, _core.quantize(t, x, importance=imp), x.shape), x, imp)
        theirs = wrms(deq(t, ggml(t, x, imp), x.shape), x, imp)
        # measured 0.92-0.96x (IQ2_S .969|.854, IQ1_M .935|.877; issue 17's bar is 1.1x; these rows are
        # fixed, so this cannot flake)
        assert ours <= theirs, (t, dist, ours / theirs)


@pytest.mark.parametrize("t", TYPES)
def test_importance_reduces_weighted_error(t):
    x = rows("normal", seed=5)
    imp = np.random.default_rng(6).lognormal(0.0, 2.0, x.shape[1]).astype(np.float32)
    plain = wrms(deq(t, _core.quantize(t, x), x.shape), x, imp)
    weighted = wrms(deq(t, _core.quantize(t, x, importance=imp), x.shape), x, imp)
    assert weighted < 0.9 * plain, (weighted, plain)


@pytest.mark.parametrize("t", TYPES)
def test_special_rows(t):
    x = tricky_matrix(512, seed=3)
    b = _core.quantize(t, x)
    d = deq(t, b, x.shape)
    assert np.all(np.isfinite(d))  # 1e30 rows: the fp16 scale is clamped to 65504, not inf
    assert np.array_equal(d[0], np.zeros(512, np.float32))
    # constant rows: not every grid has a flat point; measured relative RMS error 0 (IQ2_XS, IQ2_S, IQ1_*)
    # to 0.33 (IQ2_XXS)
    for r, v in ((1, 3.0), (2, -0.125)):
        assert np.sqrt(np.mean((d[r] - v) ** 2)) < 0.35 * abs(v), r
    assert abs(d[14, 5] - 1000.0) < 0.1 * 1000.0  # the outlier (measured 914 .. 986)
    assert np.array_equal(_core.quantize(t, x, n_threads=3), _core.quantize(t, x, n_threads=1))
    nan = x[:2].copy()
    nan[1, 3] = np.nan
    dn = deq(t, _core.quantize(t, nan), nan.shape)
    assert np.all(dn[1, :256] == 0) and np.all(np.isfinite(dn))  # a non-finite super-block: zeros


@pytest.mark.parametrize("t", TYPES)
def test_scale_equivariance(t):
    """Scaling the rows by a power of two scales the dequantized values by it exactly (while d stays a
    normal half), with and without importance: no threshold or constant in the search depends on the
    values' magnitude."""
    x = rows("heavy", n=3, cols=512, seed=8) * np.float32(50.0)
    imp = np.random.default_rng(9).lognormal(0.0, 1.0, 512).astype(np.float32)
    for w in (None, imp):
        ref = deq(t, _core.quantize(t, x, importance=w), x.shape)
        for k in (-4, 4):
            f = np.float32(2.0**k)
            assert np.array_equal(deq(t, _core.quantize(t, x * f, importance=w), x.shape), ref * f), (t, k)


def test_row_length_must_fit_the_block():
    with pytest.raises(ValueError, match="not a multiple of the IQ2_XXS block size 256"):
        _core.quantize("IQ2_XXS", np.zeros((2, 96), np.float32))
    rows_ = {r["name"]: r for r in _core.type_table()}
    assert all(rows_[t]["can_quantize"] for t in TYPES)


# ---- files ----


def _plan(ft, has_imatrix=False, n_head_kv=2):
    from edgellama.convert.mixes import parse_file_type, plan_types

    names = ["token_embd.weight", "output.weight"] + [
        f"blk.{i}.{n}.weight" for i in range(8)
        for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    ]
    types, _ = plan_types(parse_file_type(ft), [(n, (64, 256)) for n in names], 8, 4, n_head_kv, has_imatrix)
    return {n: t.name for n, t in types.items()}


def test_mixes_follow_llamacpp():
    # llama-quant.cpp llama_tensor_get_type for 8 layers, n_gqa 2 (4 with n_head_kv=1)
    p = _plan("IQ2_XXS", True)
    assert (p["blk.3.attn_q.weight"], p["token_embd.weight"], p["output.weight"]) == ("IQ2_XXS", "Q2_K", "Q5_K")
    assert (p["blk.3.attn_v.weight"], p["blk.0.ffn_down.weight"], p["blk.1.ffn_down.weight"]) == ("Q2_K", "Q2_K", "IQ2_XXS")
    assert _plan("IQ2_XXS", True, n_head_kv=1)["blk.3.attn_v.weight"] == "Q4_K"
    p = _plan("IQ2_S", True)  # mostly IQ2_XS
    assert (p["blk.3.ffn_up.weight"], p["blk.3.attn_v.weight"], p["blk.3.attn_output.weight"]) == ("IQ2_XS", "IQ3_S", "IQ3_S")
    assert (_plan("IQ2_M", True)["blk.3.ffn_up.weight"], _plan("IQ2_M", True)["token_embd.weight"]) == ("IQ2_S", "IQ3_S")
    p = _plan("IQ1_S", True)
    assert (p["blk.3.ffn_up.weight"], p["blk.3.attn_output.weight"]) == ("IQ1_S", "IQ2_XXS")
    assert _plan("IQ1_M", True)["blk.3.ffn_gate.weight"] == "IQ1_M"
    p = _plan("IQ3_XXS", True)
    assert (p["blk.3.ffn_up.weight"], p["blk.3.attn_q.weight"], p["blk.3.attn_k.weight"]) == ("IQ3_XXS", "IQ2_S", "IQ2_S")
    assert (p["blk.3.attn_v.weight"], p["blk.3.attn_output.weight"], p["output.weight"]) == ("IQ3_XXS", "IQ3_S", "Q5_K")
    p = _plan("IQ3_XXS", False)
    assert (p["blk.3.attn_v.weight"], p["blk.0.ffn_down.weight"], p["blk.3.ffn_down.weight"]) == ("IQ3_S", "Q4_K", "Q3_K")
    p = _plan("IQ3_XS", True)
    assert (p["blk.0.ffn_up.weight"], p["blk.3.ffn_up.weight"], p["blk.3.attn_q.weight"]) == ("IQ3_S", "IQ3_XXS", "IQ3_XXS")
    p = _plan("IQ3_M")
    assert (p["blk.3.attn_v.weight"], p["blk.0.ffn_down.weight"], p["blk.3.ffn_down.weight"]) == ("Q4_K", "Q4_K", "IQ3_S")
    assert (p["blk.3.attn_output.weight"], p["output.weight"]) == ("Q4_K", "Q6_K")
    p = _plan("IQ3_S")
    assert (p["blk.3.attn_v.weight"], p["blk.3.ffn_down.weight"], _plan("IQ3_S", n_head_kv=1)["blk.3.attn_v.weight"]) == (
        "IQ3_S", "IQ3_S", "Q4_K")


@pytest.fixture(scope="module")
def f32_model(tmp_path_factory):
    # n_ff = 288: ffn_down rows (288 values) cannot hold 256-blocks -> IQ4_NL, as llama.cpp falls back
    return make_model(tmp_path_factory.mktemp("iqgrid") / "m.gguf", n_layer=2, n_embd=256, n_head=4, n_head_kv=2,
                      n_ff=288, n_vocab=300, seed=5)


def _imatrix(path: Path, model: str) -> Path:
    rng = np.random.default_rng(11)
    r = gguf.GGUFReader(model)
    entries = {
        t.name: ImatrixEntry(rng.lognormal(0, 1, (1, int(t.shape[0]))) * 20, np.array([20.0]))
        for t in r.tensors if t.name.startswith("blk.") and len(t.shape) == 2
    }
    return write_imatrix(path, Imatrix(entries, datasets=["random"], chunk_count=1, chunk_size=20))


def test_low_bit_types_need_an_imatrix(f32_model, tmp_path):
    for ft in ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "IQ3_XS"):
        with pytest.raises(ValueError, match=r"tensor blk\.0\.\w+\.weight: type I\w+ needs an importance matrix.*--imatrix"):
            quantize(f32_model, tmp_path / "o.gguf", ft)
    assert not (tmp_path / "o.gguf").exists()


def test_cli_names_the_missing_imatrix(f32_model, tmp_path, capsys):
    assert cli.main(["quantize", f32_model, str(tmp_path / "o.gguf"), "--type", "iq1_m", "-q"]) == 1
    err = capsys.readouterr().err
    assert "type IQ1_M needs an importance matrix" in err and "--imatrix" in err, err
    assert not list(tmp_path.iterdir())  # no output, no .partial


def _kl_fast_vs_exact(path, n_vocab=300):
    tokens = [int(t) for t in np.random.default_rng(5).integers(0, n_vocab, 24)]
    logits = {}
    for precision in ("exact", "fast"):
        with edgellama.Llama(str(path), n_ctx=64, n_threads=2, precision=precision, type_k="f32", type_v="f32",
                             verbose=False) as llm:
            logits[precision] = llm.eval(tokens).astype(np.float64)
    lp, lq = (v - v.max(-1, keepdims=True) for v in (logits["exact"], logits["fast"]))
    lp, lq = (v - np.log(np.exp(v).sum(-1, keepdims=True)) for v in (lp, lq))
    return float((np.exp(lp) * (lp - lq)).sum(-1).mean())


@pytest.mark.parametrize("ft,want", [("IQ3_S", "IQ3_S"), ("IQ2_XXS", "IQ2_XXS")])
def test_quantize_command(f32_model, tmp_path, ft, want):
    from test_forward_random_models import check_model

    out = tmp_path / f"{ft}.gguf"
    args = ["quantize", f32_model, str(out), "--type", ft, "-q", "-t", "2"]
    if ft == "IQ2_XXS":
        args += ["--imatrix", str(_imatrix(tmp_path / "imatrix.gguf", f32_model))]
    assert cli.main(args) == 0
    r = gguf.GGUFReader(str(out))
    types = {tt.name: tt.tensor_type.name for tt in r.tensors}
    assert types["blk.1.attn_q.weight"] == want and types["blk.1.ffn_up.weight"] == want
    assert types["blk.1.ffn_down.weight"] == "IQ4_NL"  # 288 values: llama.cpp's fallback
    assert int(r.fields["general.file_type"].parts[-1][0]) == {"IQ3_S": 26, "IQ2_XXS": 19}[ft]
    # the exact path on gguf-py's dequantization = the float64 reference
    check_model(str(out), 300, seed=9)
    # and the int8 fast path close to it (test_fast_path_types measures 6e-4..2e-3 on its models)
    assert _kl_fast_vs_exact(out) < 5e-3


@pytest.mark.parametrize("ft", ["IQ3_S", "IQ2_XXS"])
def test_llamacpp_runs_our_file(f32_model, tmp_path, ft):
    """llama.cpp's llama-bench loads and runs our file (never in CI)."""
    bench = Path(os.environ.get("EDGELLAMA_LLAMACPP_BUILD", "/work/llamacpp/build-native/bin")) / "llama-bench"
    if not bench.is_file():
        pytest.skip(f"no llama.cpp build at {bench.parent}")
    out = tmp_path / f"{ft}.gguf"
    args = ["quantize", f32_model, str(out), "--type", ft, "-q", "-t", "2"]
    if ft == "IQ2_XXS":
        args += ["--imatrix", str(_imatrix(tmp_path / "imatrix.gguf", f32_model))]
    assert cli.main(args) == 0
    r = subprocess.run([str(bench), "-m", str(out), "-p", "8", "-n", "2", "-r", "1", "-t", "1"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "tg2" in r.stdout, r.stdout
