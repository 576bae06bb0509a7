"""Every architecture in the table against Hugging Face transformers itself.

For each variant in tests/hf_tiny_models.py (a tiny random model per architecture, built with transformers),
the checkpoint is converted to GGUF by llama.cpp's own convert_hf_to_gguf.py (how hub GGUF files are made)
and edgellama's logits over 40 positions (more than the sliding window of 8) are compared with
transformers' float64 forward:

  * exact path, F32 weights and KV cache: max|Δ|/max|logit| <= 1e-4 and the same argmax everywhere,
    in one chunk and in chunks of 7 (the KV cache and the sliding window across chunk boundaries);
  * fast path (F16 KV cache, vectorized attention with soft-capping/window): <= 5e-3, mean KL <= 1e-4;
  * a Q8_0 file (llama.cpp's converter): fast path vs exact path on the same file, mean KL <= 2e-3
    (the int8 kernels and the residual policy by tensor role, fused phi3 tensors included).
The tolerances are about 10x the measured errors (exact ~1e-6, fast ~1e-3). The NumPy reference forward
(tests/reference_forward.py) is checked against transformers on the same files (<= 1e-5), and edgellama's own
converter (`edgellama quantize` on the HF directory) is held to the same exact bound.
"""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
import pytest

import hf_tiny_models as H
from hf_tiny_models import LLAMA_PERPLEXITY, edgellama_logits, llamacpp_ppl, mean_kl, rel_err
from reference_forward import ReferenceModel

pytest.importorskip("transformers")
pytest.importorskip("torch")

from edgellama import _core  # noqa: E402

pytestmark = pytest.mark.skipif(
    not H.llamacpp_available(), reason=f"llama.cpp converter not found under {H.LLAMA_CPP_DIR}"
)

EXACT_TOL = 1e-4
FAST_TOL = 5e-3
FAST_KL = 1e-4
Q8_KL = 2e-3


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """variant name -> (hf dir, F32 GGUF, Q8_0 GGUF), all converted by llama.cpp in one subprocess."""
    root = tmp_path_factory.mktemp("arch_models")
    out = {}
    for name, v in H.VARIANTS.items():
        d = H.build_hf(v, root / name)
        out[name] = (d, root / f"{name}.f32.gguf", root / f"{name}.q8_0.gguf")
    H.convert_llamacpp([(d, f, "f32") for d, f, _ in out.values()] + [(d, q, "q8_0") for d, _, q in out.values()])
    return out


@pytest.fixture(scope="module")
def ours(converted):
    """variant name -> F32 GGUF written by edgellama's own converter (edgellama quantize --type F32)."""
    from edgellama.quantize import quantize

    out = {}
    for name, (hf_dir, f32, _) in converted.items():
        path = f32.with_name(f"{name}.ours.gguf")
        quantize(hf_dir, path, "F32", progress=False)
        out[name] = path
    return out


def test_every_table_architecture_has_a_variant_and_a_converter():
    from edgellama.convert.hf import hf_class_table
    from edgellama.convert.hf_archs import ARCH_CONVERT

    names = {a["name"] for a in _core.architectures()}
    assert names == {v.gguf_arch for v in H.VARIANTS.values()}
    assert names == set(ARCH_CONVERT)
    for v in H.VARIANTS.values():
        assert hf_class_table()[v.hf_class]["name"] == v.gguf_arch


@pytest.mark.parametrize("name", list(H.VARIANTS))
def test_our_converter_matches_transformers(converted, ours, name):
    """edgellama quantize on the HF directory: same logits as transformers (exact path), and the same
    metadata keys as llama.cpp's converter writes for the architecture's settings."""
    v = H.VARIANTS[name]
    hf_dir, f32, _ = converted[name]
    tokens = H.sample_tokens(v)
    want = H.hf_logits(hf_dir, tokens)
    got = edgellama_logits(ours[name], tokens)
    err = rel_err(got, want)
    assert err <= EXACT_TOL, f"{name} (our converter) exact: rel err {err:.3g}"
    assert np.array_equal(got.argmax(1), want.argmax(1))
    ref_h = _core.Model(str(f32)).hparams
    our_h = _core.Model(str(ours[name])).hparams
    for k in ("n_swa", "rope_base", "rope_base_swa", "attn_scale", "attn_softcap", "final_softcap", "embd_scale",
              "residual_scale", "logit_scale", "layer_swa", "layer_rope", "n_rot", "head_dim", "rope_freq_factors",
              "longrope", "n_ctx_orig", "rope_attn_factor"):
        assert our_h[k] == pytest.approx(ref_h[k]), (name, k)
    assert {t.name for t in gguf.GGUFReader(str(ours[name])).tensors} == {
        t.name for t in gguf.GGUFReader(str(f32)).tensors
    }


@pytest.mark.skipif(not LLAMA_PERPLEXITY.is_file(), reason=f"{LLAMA_PERPLEXITY} not built")
@pytest.mark.parametrize("name", ["gemma3", "phi3", "phi3-longrope"])
def test_llamacpp_runs_our_files(ours, tmp_path, name):
    """llama.cpp loads the files our converter writes and computes the same perplexity as edgellama
    (same windows, same scoring; edgellama's perplexity follows llama-perplexity's convention)."""
    from edgellama.perplexity import perplexity

    text = " ".join(["hello world, the quick brown fox jumps over the lazy dog"] * 12)
    tf = tmp_path / "text.txt"
    tf.write_text(text)
    theirs = llamacpp_ppl(ours[name], tf)
    mine = perplexity(ours[name], text, 32).ppl
    assert abs(theirs - mine) <= 0.01 * mine, (name, theirs, mine)


@pytest.mark.parametrize("name", list(H.VARIANTS))
def test_matches_transformers(converted, name):
    v = H.VARIANTS[name]
    hf_dir, f32, q8 = converted[name]
    tokens = H.sample_tokens(v)
    want = H.hf_logits(hf_dir, tokens)
    assert _core.Model(str(f32)).architecture == v.gguf_arch
    # the independent NumPy reference (tests/reference_forward.py) agrees with transformers too
    ref = ReferenceModel(f32).forward(tokens)
    assert rel_err(ref, want) <= 1e-5, f"{name}: reference_forward vs transformers {rel_err(ref, want):.3g}"

    for n_batch in (64, 7):
        got = edgellama_logits(f32, tokens, n_batch=n_batch)
        err = rel_err(got, want)
        assert err <= EXACT_TOL, f"{name} exact n_batch={n_batch}: rel err {err:.3g}"
        assert np.array_equal(got.argmax(1), want.argmax(1)), f"{name} exact: argmax differs"

    fast = edgellama_logits(f32, tokens, precision="fast", kv="f16")
    assert rel_err(fast, want) <= FAST_TOL, f"{name} fast: rel err {rel_err(fast, want):.3g}"
    assert mean_kl(want, fast) <= FAST_KL, f"{name} fast: KL {mean_kl(want, fast):.3g}"

    q_exact = edgellama_logits(q8, tokens)
    q_fast = edgellama_logits(q8, tokens, precision="fast", kv="f16", n_batch=7)
    assert mean_kl(q_exact, q_fast) <= Q8_KL, f"{name} Q8_0 fast vs exact: KL {mean_kl(q_exact, q_fast):.3g}"
    # and the quantized file still tracks transformers
    assert mean_kl(want, q_exact) <= 0.05, f"{name} Q8_0 exact vs transformers: KL {mean_kl(want, q_exact):.3g}"


def test_sliding_window_and_softcap_matter(converted):
    """The gemma2 comparison above can fail: the same file without its sliding window (or without soft-capping)
    must not match transformers, so those settings are really exercised by 40 positions."""
    hf_dir, f32, _ = converted["gemma2"]
    tokens = H.sample_tokens(H.VARIANTS["gemma2"])
    want = H.hf_logits(hf_dir, tokens)
    for drop in ("gemma2.attention.sliding_window", "gemma2.attn_logit_softcapping"):
        mutated = Path(str(f32).replace(".f32.gguf", f".no_{drop.split('.')[-1]}.gguf"))
        _copy_without_key(f32, mutated, drop)
        got = edgellama_logits(mutated, tokens)
        assert rel_err(got, want) > 100 * EXACT_TOL, f"dropping {drop} did not change the logits"


@pytest.mark.parametrize(
    "name,key,value,match",
    [
        ("gemma2", "gemma2.attn_logit_softcapping", -1.0, r"gemma2\.attn_logit_softcapping.*>= 0"),
        ("gemma2", "gemma2.attention.sliding_window", 0, r"gemma2\.attention\.sliding_window.*> 0"),
        ("granite", "granite.residual_scale", 0.0, r"residual_scale.*must be > 0"),
        ("gemma3", "gemma3.rope.freq_base_swa", 0.5, r"freq_base_swa must be a finite number > 1"),
    ],
)
def test_bad_architecture_metadata_is_a_clear_error(converted, tmp_path, name, key, value, match):
    src = converted[name][1]
    bad = tmp_path / f"{name}.bad.gguf"
    kind = gguf.GGUFValueType.UINT32 if isinstance(value, int) else gguf.GGUFValueType.FLOAT32
    _copy_without_key(src, bad, key, replace=(value, kind))
    with pytest.raises(ValueError, match=match):
        _core.Model(str(bad))


def _copy_without_key(src, dst, key, replace=None, tensor_edit=None):
    """src with metadata `key` dropped (or set to replace = (value, GGUFValueType)); tensor_edit =
    ("drop_tensor" | "zero_tensor", name) drops that tensor or zeroes its data."""
    r = gguf.GGUFReader(str(src))
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(dst), arch)
    for name, f in r.fields.items():
        if name == key and replace is not None:
            w.add_key_value(name, replace[0], replace[1])
            continue
        if name == key or name.startswith("GGUF.") or name == "general.architecture":
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            w.add_key_value(name, f.contents(), vt, sub_type=f.types[-1])
        else:
            w.add_key_value(name, f.contents(), vt)
    if replace is not None and key not in r.fields:
        w.add_key_value(key, replace[0], replace[1])
    for t in r.tensors:
        data = np.asarray(t.data)
        if tensor_edit and t.name == tensor_edit[1]:
            if tensor_edit[0] == "drop_tensor":
                continue
            data = np.zeros_like(data)
        w.add_tensor(t.name, data, raw_shape=list(reversed([int(x) for x in t.shape])), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_info_shows_architecture_settings(converted, ours):
    """`edgellama info` names each architecture's distinctive settings (from the table + metadata)."""
    from edgellama.commands.info import collect

    expect = {
        "gemma2": ["GeGLU", "post-norms", "sliding window 8 on 1/2 layers", "attention softcap 3", "logit softcap 4"],
        "gemma3": ["QK-norm (per head)", "sliding window 8 on 5/6 layers", "local rope base 10000", "embedding x8"],
        "phi3": ["fused QKV+gate/up"],
        "granite": ["embedding x3", "residual x0.5", "attention scale 0.1", "logits /2"],
        "olmo2": ["QK-norm (whole)", "post-norms only"],
        "smollm3": ["NoPE on 1/4 layers"],
        "llama3": ["rope_freqs: Llama 3 scaling"],
        "qwen2": ["QKV bias"],
    }
    for name, phrases in expect.items():
        for path in (converted[name][1], ours[name]):
            summary = ", ".join(collect(str(path))["arch_settings"]["summary"])
            for p in phrases:
                assert p in summary, (name, path.name, p, summary)


@pytest.mark.parametrize("name", ["gemma2", "gemma3", "phi3", "smollm3"])
def test_greedy_generation_matches_transformers(ours, converted, name):
    """The high-level Llama API (prompt prefix reuse, one token per decode, the cache growing past the
    sliding window) generates transformers' greedy continuation token for token, on both paths."""
    import torch
    import transformers

    from edgellama import Llama

    hf_dir = converted[name][0]
    prompt = H.sample_tokens(H.VARIANTS[name], n=6, seed=3)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float64).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None,
                             pad_token_id=0)
    want = out[0, len(prompt):].tolist()
    for precision in ("exact", "fast"):
        llm = Llama(str(ours[name]), n_ctx=64, n_threads=1, precision=precision, verbose=False)
        got = []
        for tok in llm.generate(prompt, temp=0.0, top_k=1):
            got.append(tok)
            if len(got) == len(want):
                break
        llm.close()
        assert got == want, (name, precision)


def test_fused_qkv_gets_llama_cpps_mix_bump():
    """Q4_K_M / Q5_K_M / Q3_K_M give phi3's fused attn_qkv the types llama.cpp's quantizer gives it."""
    from edgellama.convert.mixes import parse_file_type, plan_types

    tensors = [("blk.0.attn_qkv.weight", (512, 256)), ("blk.0.ffn_up.weight", (1024, 256)), ("output.weight", (300, 256))]
    for ft, want in (("Q4_K_M", "Q5_K"), ("Q5_K_M", "Q6_K"), ("Q3_K_M", "Q4_K"), ("Q4_K_S", "Q4_K")):
        types, _ = plan_types(parse_file_type(ft), tensors, 1, 4, 2)
        assert types["blk.0.attn_qkv.weight"].name == want, ft


def test_gemma2_query_scale(tmp_path):
    """Gemma 2/3 scale queries by 1/sqrt(query_pre_attn_scalar). Our converter records it when it is not
    head_dim; a file without the key (llama.cpp's) gets 1/sqrt(n_embd / n_head) for the 27B layer count
    (46 for gemma2), as llama.cpp does. A 46-layer tiny model with head_dim 8 != n_embd / n_head = 16."""
    from edgellama.quantize import quantize

    v = H.Variant(
        "gemma2-27b-like", "gemma2", "Gemma2ForCausalLM", "Gemma2Config",
        dict(H.VARIANTS["gemma2"].config, head_dim=8, query_pre_attn_scalar=16), n_layer=46,
    )
    hf_dir = H.build_hf(v, tmp_path / "hf")
    tokens = H.sample_tokens(v, n=20)
    want = H.hf_logits(hf_dir, tokens)
    ours_path = tmp_path / "ours.gguf"
    quantize(hf_dir, ours_path, "F32", progress=False)
    assert _core.Model(str(ours_path)).hparams["attn_scale"] == pytest.approx(0.25)
    assert rel_err(edgellama_logits(ours_path, tokens), want) <= EXACT_TOL
    no_key = tmp_path / "no_key.gguf"
    _copy_without_key(ours_path, no_key, "gemma2.attention.scale")
    assert rel_err(edgellama_logits(no_key, tokens), want) <= EXACT_TOL
    assert rel_err(ReferenceModel(no_key).forward(tokens), want) <= 1e-5


def test_longrope_factor_sets(converted, ours):
    """Phi-3 LongRoPE picks its short or long factor set once per context, by n_ctx vs the pretraining context
    (n_ctx_orig = 16 here), as llama.cpp does; transformers picks per forward call by the sequence length.
      * short regime (n_ctx 16, 12 tokens): both use the short set -> transformers' logits;
      * long regime with a short prompt (n_ctx 64, 12 tokens): we (and llama.cpp) use the long set, transformers
        would not; the long set's logits for those 12 tokens are the first 12 rows of transformers' 40-token
        forward (causal attention), so we match those, and not transformers' 12-token (short-set) forward;
      * the attention factor sqrt(2) really matters: the same file with attn_factor 1 does not match."""
    hf_dir, f32, _ = converted["phi3-longrope"]
    v = H.VARIANTS["phi3-longrope"]
    tokens = H.sample_tokens(v)
    want_long = H.hf_logits(hf_dir, tokens)  # 40 > 16 positions: long factors
    short = tokens[:12]
    want_short = H.hf_logits(hf_dir, short)  # 12 <= 16: short factors
    assert rel_err(want_short, want_long[:12]) > 0.05  # the two sets really differ
    for path in (f32, ours["phi3-longrope"]):
        model = _core.Model(str(path))
        assert model.hparams["longrope"] and model.hparams["n_ctx_orig"] == H.LONGROPE_ORIG_CTX
        assert model.hparams["rope_attn_factor"] == pytest.approx(np.sqrt(2.0), rel=1e-6)
        for precision, kv, tol in (("exact", "f32", EXACT_TOL), ("fast", "f16", FAST_TOL)):
            small = _core.Context(model, H.LONGROPE_ORIG_CTX, 1, 64, kv, kv, precision)
            assert not small.rope_long_factors
            got = small.decode(np.asarray(short, np.int32), True)
            assert rel_err(got, want_short) <= tol, (path.name, precision, rel_err(got, want_short))
            big = _core.Context(model, H.LONGROPE_ORIG_CTX + 1, 1, 64, kv, kv, precision)
            assert big.rope_long_factors
            got = big.decode(np.asarray(short, np.int32), True)
            assert rel_err(got, want_long[:12]) <= tol, (path.name, precision, rel_err(got, want_long[:12]))
            assert rel_err(got, want_short) > 100 * EXACT_TOL
    # the NumPy reference follows either rule on request
    ref = ReferenceModel(f32)
    assert rel_err(ref.forward(short), want_short) <= 1e-5
    ref.n_ctx = 64
    assert rel_err(ref.forward(short), want_long[:12]) <= 1e-5
    # without its attention factor the file does not match
    no_attn = f32.with_name("phi3-longrope.no_attn_factor.gguf")
    _copy_without_key(f32, no_attn, "phi3.rope.scaling.attn_factor")
    assert rel_err(edgellama_logits(no_attn, tokens), want_long) > 100 * EXACT_TOL


@pytest.mark.parametrize(
    "mutation,match",
    [
        (("drop_tensor", "rope_factors_short.weight"), r"rope_factors_short\.weight' is missing"),
        (("drop_tensor", "rope_factors_long.weight"), r"rope_factors_long\.weight' is missing"),
        (("zero_tensor", "rope_factors_long.weight"), r"rope_factors_long\.weight' has a factor 0"),
        (("key", "phi3.rope.scaling.attn_factor", -1.0), r"attn_factor must be a finite number > 0"),
        (("key", "phi3.rope.scaling.type", "yarn"), r"rope scaling type 'yarn' is not supported"),
    ],
)
def test_bad_longrope_file_is_a_clear_error(converted, tmp_path, mutation, match):
    src = converted["phi3-longrope"][1]
    bad = tmp_path / "bad.gguf"
    if mutation[0] == "key":
        kind = gguf.GGUFValueType.STRING if isinstance(mutation[2], str) else gguf.GGUFValueType.FLOAT32
        _copy_without_key(src, bad, mutation[1], replace=(mutation[2], kind))
    else:
        _copy_without_key(src, bad, None, tensor_edit=mutation)
    with pytest.raises(ValueError, match=match):
        _core.Model(str(bad))
