"""edgellama's forward pass on small random GGUF models (model_factory.py) against the float64 NumPy
reference (reference_forward.py): archs llama and qwen2, GQA/MQA/MHA, tied and untied output, linear RoPE
scaling, rope_freqs factors, partial rotary dims, every supported weight type; prompt in one batch and
in chunks."""

from __future__ import annotations

import numpy as np
import pytest

import edgellama

from model_factory import ALL_WEIGHT_TYPES, make_model
from reference_forward import ReferenceModel, assert_matches

N_PROMPT = 20


def prompt_for(n_vocab: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(0, n_vocab, size=N_PROMPT)]


def check_model(path, n_vocab: int, seed: int = 0, kv: str = "f32", n_batch: int = 512):
    tokens = prompt_for(n_vocab, seed)
    ref = ReferenceModel(path).forward(tokens, kv_dtype="f16" if kv == "f16" else "f64")
    with edgellama.Llama(path, n_ctx=64, n_batch=n_batch, precision="exact", type_k=kv, type_v=kv) as llm:
        assert llm.n_vocab() == n_vocab
        whole = llm.eval(tokens)
        assert llm.n_tokens == len(tokens)
        assert_matches(whole, ref, what=f"{path} one batch")
        llm.reset()
        parts = [llm.eval(tokens[a:b]) for a, b in ((0, 7), (7, 8), (8, 15), (15, N_PROMPT))]
        chunked = np.concatenate(parts)
        assert_matches(chunked, ref, what=f"{path} chunks")
        np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-5 * float(np.max(np.abs(whole))))
    return whole, ref


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("wtype", ALL_WEIGHT_TYPES)
def test_weight_types(tmp_path, arch, wtype):
    seed = ALL_WEIGHT_TYPES.index(wtype) + (100 if arch == "qwen2" else 0)
    path = make_model(tmp_path / f"{arch}-{wtype}.gguf", arch=arch, wtype=wtype, seed=seed, n_vocab=96)
    check_model(path, 96, seed=seed)


VARIANTS = {
    # name: (make_model kwargs, wtypes)
    "tied": (dict(tied=True), ["F32", "F16", "Q4_0", "Q8_0", "Q4_K", "Q6_K"]),
    "mqa": (dict(n_head=4, n_head_kv=1), ["F32", "Q5_0"]),
    "mha": (dict(n_head=4, n_head_kv=4), ["F32", "Q2_K"]),
    "gqa8-2": (dict(n_head=8, n_head_kv=2, n_embd=128), ["F16"]),
    "rope-linear": (dict(rope_linear_factor=4.0), ["F32", "Q5_1", "Q3_K"]),
    "rope-freqs": (dict(rope_freqs=True), ["F32", "Q4_1", "Q5_K"]),
    "rope-base": (dict(freq_base=500000.0), ["F32"]),
    "partial-rot": (dict(n_rot=8), ["F32"]),
    "eps": (dict(eps=1e-2), ["F32"]),
    "big-vocab-3-layers": (dict(n_vocab=300, n_layer=3), ["BF16", "Q8_0", "Q4_K"]),
    "untied-out-type": (dict(out_type="Q6_K", embd_type="Q8_0", n_embd=256, n_ff=256), ["Q4_0"]),
}

VARIANT_CASES = [(name, arch, wtype) for name, (_, ws) in VARIANTS.items() for wtype in ws for arch in ("llama", "qwen2")]


@pytest.mark.parametrize("name,arch,wtype", VARIANT_CASES)
def test_variants(tmp_path, name, arch, wtype):
    kwargs, _ = VARIANTS[name]
    n_vocab = kwargs.get("n_vocab", 96)
    seed = 1000 + VARIANT_CASES.index((name, arch, wtype))
    path = make_model(tmp_path / f"{name}-{arch}-{wtype}.gguf", arch=arch, wtype=wtype, seed=seed, **kwargs)
    check_model(path, n_vocab, seed=seed)


@pytest.mark.parametrize("arch,wtype", [("llama", "F32"), ("qwen2", "Q4_K"), ("llama", "Q8_0")])
def test_f16_kv_cache(tmp_path, arch, wtype):
    """Default f16 KV cache against the reference with K and V rounded to float16."""
    path = make_model(tmp_path / "m.gguf", arch=arch, wtype=wtype, seed=7, rope_freqs=True)
    check_model(path, 96, seed=7, kv="f16")


def test_small_n_batch(tmp_path):
    path = make_model(tmp_path / "m.gguf", arch="qwen2", wtype="Q4_1", seed=3)
    check_model(path, 96, seed=3, n_batch=3)


def test_variants_actually_differ(tmp_path):
    """Guard against options being ignored: each RoPE option (same weights otherwise) changes the logits."""
    base = dict(arch="llama", wtype="F32", seed=5)
    tokens = prompt_for(96, 5)
    ref0 = ReferenceModel(make_model(tmp_path / "base.gguf", **base)).forward(tokens)
    variants = {"rope-linear": dict(rope_linear_factor=4.0), "rope-freqs": dict(rope_freqs=True),
                "partial-rot": dict(n_rot=8), "rope-base": dict(freq_base=500000.0)}
    for name, kw in variants.items():
        ref = ReferenceModel(make_model(tmp_path / f"{name}.gguf", **{**base, **kw})).forward(tokens)
        assert np.allclose(ref[0], ref0[0]), name  # position 0 is not rotated: identical
        assert np.max(np.abs(ref - ref0)) > 1e-3 * np.max(np.abs(ref0)), name
