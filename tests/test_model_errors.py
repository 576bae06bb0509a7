"""Loading and evaluation errors: the exception type and a message that names the file/argument and the
reason; after an argument error the model still works and its cache is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as QT

import edgellama

from model_factory import make_model


@pytest.fixture(scope="module")
def good_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("good") / "good.gguf", arch="llama", wtype="Q8_0", n_layer=2, n_vocab=96, seed=11)


def load(path, **kw):
    kw.setdefault("n_ctx", 16)
    kw.setdefault("precision", "exact")
    return edgellama.Llama(path, **kw)


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist.gguf"):
        load(tmp_path / "does-not-exist.gguf")


def test_not_a_gguf(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("this is a text file, not a model\n" * 20)
    with pytest.raises(edgellama.GGUFError, match="notes.txt"):
        load(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    with pytest.raises(edgellama.GGUFError, match="empty.gguf"):
        load(p)


@pytest.mark.parametrize("where", ["header", "metadata", "tensor data"])
def test_truncated_file(tmp_path, good_model, where):
    data = open(good_model, "rb").read()
    r = gguf.GGUFReader(good_model)
    data_start = min(int(t.data_offset) for t in r.tensors)
    data_end = max(int(t.data_offset) + int(t.n_bytes) for t in r.tensors)
    cut = {"header": 10, "metadata": 200, "tensor data": (data_start + data_end) // 2}[where]
    p = tmp_path / "truncated.gguf"
    p.write_bytes(data[:cut])
    with pytest.raises(edgellama.GGUFError, match="truncated.gguf"):
        load(p)


# ---------------------------------------------------------------------------------------------
# model structure
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["gpt2", "mamba", "bert"])
def test_unsupported_architecture(tmp_path, arch):
    path = make_model(tmp_path / f"{arch}.gguf", arch=arch, wtype="F32", n_layer=1)
    with pytest.raises(edgellama.UnsupportedError, match=arch) as ei:
        load(path)
    assert f"{arch}.gguf" in str(ei.value)


# Types the reader knows but the runtime does not compute with (the i-quants all load now).
@pytest.mark.parametrize("type_name", ["I8", "I32", "F64"])
def test_unsupported_tensor_type(tmp_path, type_name):
    qt = QT[type_name]
    bs, ts = gguf.GGML_QUANT_SIZES[qt]
    n_embd = 256
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(n_embd, n_embd // bs * ts), dtype=np.uint8)  # attn_q: (n_embd, n_embd)
    path = make_model(
        tmp_path / "iq.gguf", wtype="F32", n_embd=n_embd, n_ff=256, n_layer=1,
        override={"blk.0.attn_q.weight": raw}, override_raw_dtype={"blk.0.attn_q.weight": qt},
    )
    assert edgellama.GGUFFile(path).tensors  # listing a file with such a tensor is fine
    with pytest.raises(edgellama.UnsupportedError, match=type_name) as ei:
        load(path)
    assert "blk.0.attn_q.weight" in str(ei.value)


@pytest.mark.parametrize("name", ["blk.1.ffn_up.weight", "token_embd.weight", "output_norm.weight", "blk.0.attn_k.weight"])
def test_missing_tensor(tmp_path, name):
    path = make_model(tmp_path / "missing.gguf", wtype="F32", drop=[name])
    with pytest.raises(edgellama.GGUFError, match=name.replace(".", r"\.")) as ei:
        load(path)
    assert "missing.gguf" in str(ei.value)


def test_missing_qwen2_bias(tmp_path):
    """Either a GGUFError naming the bias, or (llama.cpp-compatible leniency) the bias counts as zero."""
    from reference_forward import ReferenceModel, assert_matches

    path = make_model(tmp_path / "nobias.gguf", arch="qwen2", wtype="F32", drop=["blk.0.attn_v.bias"])
    try:
        llm = load(path, type_k="f32", type_v="f32")
    except edgellama.GGUFError as e:
        assert "blk.0.attn_v.bias" in str(e)
        return
    with llm:
        tokens = [3, 1, 4, 1, 5, 9, 2, 6]
        assert_matches(llm.eval(tokens), ReferenceModel(path).forward(tokens), what="qwen2 without blk.0.attn_v.bias")


# n_embd 64, n_head 4 (head_dim 16), n_head_kv 2, n_ff 128, n_vocab 96; numpy shapes are (rows, n_in)
WRONG_SHAPES = {
    "blk.0.attn_k.weight": np.zeros((64, 64), np.float32),  # should be (32, 64): GQA rows
    "blk.0.attn_q.weight": np.zeros((64, 32), np.float32),
    "blk.1.ffn_down.weight": np.zeros((64, 64), np.float32),  # n_in should be n_ff
    "blk.0.attn_norm.weight": np.ones(32, np.float32),
    "output.weight": np.zeros((95, 64), np.float32),  # vocab mismatch
    "token_embd.weight": np.zeros((96, 32), np.float32),
    "blk.0.ffn_gate.weight": np.zeros((2, 128, 64), np.float32),  # extra dimension
}


@pytest.mark.parametrize("name", sorted(WRONG_SHAPES))
def test_shape_mismatch(tmp_path, name):
    path = make_model(tmp_path / "shape.gguf", wtype="F32", override={name: WRONG_SHAPES[name]})
    with pytest.raises(edgellama.GGUFError, match=name.replace(".", r"\.")) as ei:
        load(path)
    assert "shape.gguf" in str(ei.value)


def test_missing_metadata_key(tmp_path):
    def drop_block_count(w):
        for kv in w.kv_data:
            kv.pop("llama.block_count", None)

    path = make_model(tmp_path / "nokey.gguf", wtype="F32", extra_kv=drop_block_count)
    assert "llama.block_count" not in edgellama.GGUFFile(path).metadata
    with pytest.raises(edgellama.GGUFError, match=r"llama\.block_count"):
        load(path)


def test_bad_head_counts(tmp_path):
    def bad_heads(w):
        w.add_uint32("llama.attention.head_count_kv", 3)  # 4 query heads are not a multiple of 3

    def strip(w):
        for kv in w.kv_data:
            kv.pop("llama.attention.head_count_kv", None)
        bad_heads(w)

    path = make_model(tmp_path / "heads.gguf", wtype="F32", extra_kv=strip)
    with pytest.raises((edgellama.GGUFError, edgellama.UnsupportedError), match="head"):
        load(path)


# ---------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,fragment", [
    (dict(n_ctx=-1), "n_ctx"),
    (dict(n_threads=0), "n_threads"),
    (dict(n_threads=-2), "n_threads"),
    (dict(n_batch=0), "n_batch"),
    (dict(type_k="q4"), "type_k"),
    (dict(type_v="bf16"), "type_v"),
    (dict(precision="sloppy"), "precision"),
])
def test_bad_constructor_arguments(good_model, kw, fragment):
    with pytest.raises(ValueError, match=fragment):
        load(good_model, **kw)


def test_n_ctx_zero_is_the_trained_context(good_model):
    # llama-cpp-python's meaning of n_ctx=0 (issue 12); the file's context_length here
    m = load(good_model, n_ctx=0)
    assert m.n_ctx() == m.hparams["n_ctx_train"] > 0


@pytest.fixture()
def llm(good_model):
    m = load(good_model, n_ctx=16)
    yield m
    m.close()


@pytest.mark.parametrize("bad", [-1, 96, 10**6, -(2**31)])
def test_token_out_of_vocab(llm, bad):
    want = llm.eval([5, 6, 7])
    llm.reset()
    llm.eval([5, 6])
    with pytest.raises(ValueError, match=str(bad)) as ei:
        llm.eval([7, bad])
    assert "vocab" in str(ei.value).lower()
    assert llm.n_tokens == 2  # nothing appended
    got = llm.eval([7])
    np.testing.assert_allclose(got[0], want[2], rtol=0, atol=1e-5 * np.abs(want).max())
    assert llm.n_tokens == 3


def test_token_out_of_vocab_numpy(llm):
    with pytest.raises(ValueError):
        llm.eval(np.array([1, 96], dtype=np.int64))
    with pytest.raises(ValueError):
        llm.eval(np.array([1, -1], dtype=np.int32))
    assert llm.n_tokens == 0
    assert llm.eval(np.array([1, 95], dtype=np.int64)).shape == (2, 96)


def test_eval_past_n_ctx(llm):
    tokens = list(range(3, 19))  # 16 tokens = n_ctx
    want = llm.eval(tokens)
    llm.reset()
    llm.eval(tokens[:10])
    with pytest.raises(ValueError, match="n_ctx"):
        llm.eval(tokens[10:] + [3])  # 17 > 16
    assert llm.n_tokens == 10
    got = llm.eval(tokens[10:])  # exactly fills the context: fine
    np.testing.assert_allclose(got, want[10:], rtol=0, atol=1e-5 * np.abs(want).max())
    assert llm.n_tokens == 16
    with pytest.raises(ValueError, match="n_ctx"):
        llm.eval([3])
    llm.reset()
    np.testing.assert_allclose(llm.eval(tokens[:4]), want[:4], rtol=0, atol=1e-5 * np.abs(want).max())


def test_single_eval_larger_than_n_ctx(llm):
    with pytest.raises(ValueError, match="n_ctx"):
        llm.eval(list(range(3, 20)))  # 17 tokens in one call
    assert llm.n_tokens == 0
    assert llm.eval([3]).shape == (1, 96)


def test_empty_eval(llm):
    out = llm.eval([])
    assert out.shape == (0, 96)
    assert llm.n_tokens == 0


def test_generation_never_samples_embedding_rows_without_a_token(tmp_path):
    """token_embd may have more rows than the tokenizer has tokens (padding): a completion must never
    pick one of those ids, even when a logit bias pushes it to the top."""
    from model_factory import _add_tokenizer, make_model

    path = make_model(tmp_path / "padded.gguf", n_vocab=96, tokenizer=False, extra_kv=lambda w: _add_tokenizer(w, 64))
    with load(path, n_ctx=32) as llm:
        assert llm.n_vocab() == 96 and llm._n_text_tokens() == 64
        out = llm.create_completion([1, 5, 9], max_tokens=6, temperature=0, logit_bias={90: 1000.0})
        ids = llm.tokenize(out["choices"][0]["text"], add_bos=False)
        assert all(t < 64 for t in ids)
        assert out["usage"]["completion_tokens"] >= 1


def test_padding_rows_stay_out_of_logprobs(tmp_path):
    """The sampler skips padding rows in C++ (Sampler n_sampleable); the logprobs shown are still
    those of the distribution over real tokens: a float64 replay with the padding rows at -inf."""
    from model_factory import _add_tokenizer, make_model

    path = make_model(tmp_path / "padded.gguf", n_vocab=96, tokenizer=False, extra_kv=lambda w: _add_tokenizer(w, 64))
    with load(path, n_ctx=32) as llm:
        out = llm.create_completion([1, 5, 9], max_tokens=4, temperature=0, logprobs=3, logit_bias={90: 1000.0})
        got = out["choices"][0]["logprobs"]
    with load(path, n_ctx=32) as ref:
        ids = [1, 5, 9]
        for lp, top in zip(got["token_logprobs"], got["top_logprobs"]):
            row = ref.eval(ids if len(ids) == 3 else ids[-1:])[-1].astype(np.float64)
            row[64:] = -np.inf
            logp = row - row.max() - np.log(np.exp(row - row.max()).sum())
            nxt = int(np.argmax(row))
            assert lp == pytest.approx(logp[nxt], abs=1e-5)
            assert sorted(top.values(), reverse=True)[:3] == pytest.approx(sorted(logp, reverse=True)[:3], abs=1e-5)
            ids.append(nxt)


@pytest.mark.parametrize("name", ["rope_factors_long.weight", "rope_factors_short.weight"])
def test_longrope_needs_both_factor_sets(tmp_path, name):
    """LongRoPE files (Phi-3.5 / 128k) carry a short and a long factor set; a file with only one of them
    cannot be run right whichever set the context would pick, so the load names the missing tensor.
    (Files with both are checked against transformers in tests/test_architectures.py.)"""
    other = ({"rope_factors_long.weight", "rope_factors_short.weight"} - {name}).pop()
    path = make_model(tmp_path / "m.gguf", override={name: np.ones(8, dtype=np.float32)})
    with pytest.raises(edgellama.GGUFError, match=rf"'{other}' is missing \(LongRoPE needs both"):
        edgellama.Llama(path, verbose=False)
