"""Hugging Face checkpoints -> GGUF: a small random LlamaForCausalLM with GQA made and saved here
(transformers + torch are test-only dependencies), logits compared with transformers'; BF16 and
sharded checkpoints; tokenizer.json BPE; bad inputs; interrupted runs leave nothing at OUTPUT."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from edgellama.convert import ConversionError, load_checkpoint, write_gguf
from edgellama.quantize import quantize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOKENS = [1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203, 29889, 13, 1576, 29871, 7]


def _config(**kw):
    base = dict(
        vocab_size=32000, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False,
    )
    base.update(kw)
    return transformers.LlamaConfig(**base)


def _make(dirpath: Path, tokenizer_model: Path, dtype=None, seed=0, **kw):
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(_config(**kw)).eval()
    with torch.no_grad():  # non-trivial norms so that a wrong mapping shows
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(dirpath, safe_serialization=True, **({"max_shard_size": "1MB"} if kw.pop("_shard", False) else {}))
    shutil.copy(tokenizer_model, dirpath / "tokenizer.model")
    (dirpath / "tokenizer_config.json").write_text(
        json.dumps({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
                    "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"})
    )
    return model


def _hf_logits(model, tokens):
    with torch.no_grad():
        return model.float()(torch.tensor([tokens])).logits[0].numpy().astype(np.float64)


def _our_logits(path, tokens):
    from edgellama import Llama

    llm = Llama(str(path), n_ctx=64, precision="exact", type_k="f32", type_v="f32")
    try:
        return llm.eval(tokens).astype(np.float64)
    finally:
        llm.close()


_HF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "model.layers.{}.self_attn.q_proj.weight": "attn_q.weight",
    "model.layers.{}.self_attn.k_proj.weight": "attn_k.weight",
    "model.layers.{}.self_attn.v_proj.weight": "attn_v.weight",
    "model.layers.{}.self_attn.o_proj.weight": "attn_output.weight",
    "model.layers.{}.mlp.gate_proj.weight": "ffn_gate.weight",
    "model.layers.{}.mlp.up_proj.weight": "ffn_up.weight",
    "model.layers.{}.mlp.down_proj.weight": "ffn_down.weight",
    "model.layers.{}.input_layernorm.weight": "attn_norm.weight",
    "model.layers.{}.post_attention_layernorm.weight": "ffn_norm.weight",
}


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def hf_f32(tmp_path_factory, llama2_tokenizer_model):
    d = tmp_path_factory.mktemp("hf32")
    model = _make(d, llama2_tokenizer_model)
    return d, model


def test_hf_f32_logits_match_transformers(hf_f32, tmp_path):
    d, model = hf_f32
    out = quantize(d, tmp_path / "m.gguf", "f32")
    err = _rel(_our_logits(out, TOKENS), _hf_logits(model, TOKENS))
    assert err <= 1e-4, err


def test_hf_metadata_and_vocab(hf_f32, tmp_path, llama2_tokenizer_model):
    d, _ = hf_f32
    out = quantize(d, tmp_path / "m.gguf", "F16")
    r = GGUFReader(out)
    f = {k: v.contents() for k, v in r.fields.items() if k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")}
    assert f["general.architecture"] == "llama" and f["general.file_type"] == 1
    assert f["general.quantization_version"] == 2
    assert f["llama.context_length"] == 128 and f["llama.embedding_length"] == 64
    assert f["llama.block_count"] == 2 and f["llama.feed_forward_length"] == 160
    assert f["llama.attention.head_count"] == 4 and f["llama.attention.head_count_kv"] == 2
    assert f["llama.rope.dimension_count"] == 16 and f["llama.rope.freq_base"] == 10000.0
    assert abs(f["llama.attention.layer_norm_rms_epsilon"] - 1e-5) < 1e-12
    assert f["tokenizer.ggml.model"] == "llama" and f["tokenizer.ggml.pre"] == "default"
    assert f["tokenizer.ggml.bos_token_id"] == 1 and f["tokenizer.ggml.eos_token_id"] == 2
    assert f["tokenizer.ggml.add_bos_token"] is True and f["tokenizer.ggml.add_eos_token"] is False
    assert "messages" in f["tokenizer.chat_template"]
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(llama2_tokenizer_model))
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    scores = r.fields["tokenizer.ggml.scores"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    for i in (0, 1, 2, 3, 300, 1000, 29871, 31999):
        assert tokens[i] == sp.IdToPiece(i) and abs(scores[i] - sp.GetScore(i)) < 1e-6
    assert types[:4] == [2, 3, 3, 6] and types[1000] == 1
    t = {x.name: x.tensor_type.name for x in r.tensors}
    assert t["blk.0.attn_q.weight"] == "F16" and t["blk.0.attn_norm.weight"] == "F32" and t["output.weight"] == "F16"


def test_hf_bf16_sharded(tmp_path, llama2_tokenizer_model):
    d = tmp_path / "hf_bf16"
    model = _make(d, llama2_tokenizer_model, dtype=torch.bfloat16, seed=1, _shard=True)
    assert (d / "model.safetensors.index.json").is_file() and len(list(d.glob("model-*-of-*.safetensors"))) > 1
    out = quantize(d, tmp_path / "m.gguf", "bf16")
    r = GGUFReader(out)
    assert {x.name: x.tensor_type.name for x in r.tensors}["blk.1.ffn_up.weight"] == "BF16"
    # the reference: the same bf16 weights, computed in float32 by transformers
    err = _rel(_our_logits(out, TOKENS), _hf_logits(model, TOKENS))
    assert err <= 1e-3, err


def test_hf_tied_embeddings_quantized(tmp_path, llama2_tokenizer_model):
    d = tmp_path / "tied"
    model = _make(d, llama2_tokenizer_model, tie_word_embeddings=True, hidden_size=256, intermediate_size=512,
                  num_attention_heads=8, num_key_value_heads=2, seed=2)
    out = quantize(d, tmp_path / "q.gguf", "Q4_K_M")
    r = GGUFReader(out)
    t = {x.name: x.tensor_type.name for x in r.tensors}
    assert "output.weight" not in t and t["token_embd.weight"] == "Q6_K"  # tied output -> Q6_K
    assert t["blk.0.attn_q.weight"] == "Q4_K" and t["blk.0.attn_v.weight"] == "Q4_K"
    assert t["blk.1.attn_v.weight"] == "Q6_K" and t["blk.1.ffn_down.weight"] == "Q6_K"  # use_more_bits(1, 2)
    assert t["blk.0.ffn_down.weight"] == "Q4_K" and t["blk.0.ffn_norm.weight"] == "F32"
    assert r.fields["general.file_type"].contents() == 15
    # reference: transformers with every weight replaced by gguf-py's dequantization of our blocks
    import gguf

    inv = {v: k for k, v in _HF_NAMES.items()}
    sd = model.state_dict()
    with torch.no_grad():
        for x in r.tensors:
            w = gguf.quants.dequantize(np.asarray(x.data), x.tensor_type).reshape([int(s) for s in reversed(x.shape)])
            layer, rest = (x.name.split(".", 2)[1], x.name.split(".", 2)[2]) if x.name.startswith("blk.") else (None, x.name)
            hf = inv[rest].format(layer)
            if rest in ("attn_q.weight", "attn_k.weight"):
                heads = 8 if rest == "attn_q.weight" else 2
                w = w.reshape(heads, w.shape[0] // heads // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)
            sd[hf].copy_(torch.from_numpy(np.array(w, dtype=np.float32)))
    ours = _our_logits(out, TOKENS)
    ref = _hf_logits(model, TOKENS)
    assert _rel(ours, ref) <= 1e-4, _rel(ours, ref)


def test_bpe_tokenizer_json(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["hello world, the quick brown fox 123"] * 50, trainer)
    d = tmp_path / "bpe"
    torch.manual_seed(0)
    n_vocab = tok.get_vocab_size()
    model = transformers.LlamaForCausalLM(_config(vocab_size=n_vocab, tie_word_embeddings=True)).eval()
    model.save_pretrained(d, safe_serialization=True)
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "add_bos_token": False}))
    out = quantize(d, tmp_path / "m.gguf", "F32")
    r = GGUFReader(out)
    f = r.fields
    assert f["tokenizer.ggml.model"].contents() == "gpt2" and f["tokenizer.ggml.pre"].contents() == "smollm"
    tokens = f["tokenizer.ggml.tokens"].contents()
    vocab = tok.get_vocab()
    assert all(tokens[i] == t for t, i in vocab.items())
    types = f["tokenizer.ggml.token_type"].contents()
    assert types[vocab["<|im_end|>"]] == 3 and types[vocab["h"]] == 1
    merges = f["tokenizer.ggml.merges"].contents()
    assert len(merges) > 0 and all(len(m.split(" ")) == 2 for m in merges)
    assert f["tokenizer.ggml.eos_token_id"].contents() == vocab["<|im_end|>"]
    err = _rel(_our_logits(out, [3, 5, 7, 9]), _hf_logits(model, [3, 5, 7, 9]))
    assert err <= 1e-4, err


# ---------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------
def _small(tmp_path, tokenizer_model, name="m"):
    d = tmp_path / name
    _make(d, tokenizer_model, vocab_size=32000, hidden_size=32, intermediate_size=64, num_attention_heads=2,
          num_key_value_heads=1, num_hidden_layers=1)
    return d


def test_missing_config(tmp_path, llama2_tokenizer_model):
    d = _small(tmp_path, llama2_tokenizer_model)
    (d / "config.json").unlink()
    with pytest.raises(ConversionError, match="config.json is missing"):
        quantize(d, tmp_path / "o.gguf", "F32")
    assert not (tmp_path / "o.gguf").exists()


def test_unknown_architecture(tmp_path, llama2_tokenizer_model):
    d = _small(tmp_path, llama2_tokenizer_model)
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["GPTNeoXForCausalLM"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match="unsupported architecture 'GPTNeoXForCausalLM'"):
        quantize(d, tmp_path / "o.gguf", "F32")


def test_shape_mismatch(tmp_path, llama2_tokenizer_model):
    d = _small(tmp_path, llama2_tokenizer_model)
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 96
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match=r"shape mismatch for model.layers.0.mlp.\w+_proj.weight: \[\d+, \d+\], config.json implies"):
        quantize(d, tmp_path / "o.gguf", "F32")
    assert not (tmp_path / "o.gguf").exists()


def test_truncated_safetensors(tmp_path, llama2_tokenizer_model):
    d = _small(tmp_path, llama2_tokenizer_model)
    p = d / "model.safetensors"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ConversionError, match="truncated safetensors file"):
        quantize(d, tmp_path / "o.gguf", "F32")
    p.write_bytes(data[:5])
    with pytest.raises(ConversionError, match="truncated safetensors file"):
        quantize(d, tmp_path / "o.gguf", "F32")
    assert not (tmp_path / "o.gguf").exists()


def test_missing_tensor(tmp_path, llama2_tokenizer_model):
    d = _small(tmp_path, llama2_tokenizer_model)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 2
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match="tensor for blk.1.attn_q.weight is missing"):
        quantize(d, tmp_path / "o.gguf", "F32")


# ---------------------------------------------------------------------------------------------
# failures and interrupts leave nothing at OUTPUT; the input is never overwritten
# ---------------------------------------------------------------------------------------------
def _leftovers(directory: Path):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".partial") or p.name.startswith(".o.gguf"))


def test_failure_midway_leaves_no_output(tmp_path, llama2_tokenizer_model):
    d = _small(tmp_path, llama2_tokenizer_model)
    ck = load_checkpoint(d)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(RuntimeError, match="simulated failure"):
        write_gguf(ck, out_dir / "o.gguf", "Q8_0", _fail_after=3, progress=False)
    assert list(out_dir.iterdir()) == []


def test_write_error_behind_the_quantizer_stops_the_run(tmp_path, llama2_tokenizer_model, monkeypatch):
    """Tensor writes run on their own thread, up to three behind the quantizer: a write that fails
    still raises from write_gguf (not lost in the queue), and nothing is left at OUTPUT."""
    from edgellama.convert.gguf_writer import FastGGUFWriter

    d = _small(tmp_path, llama2_tokenizer_model)
    ck = load_checkpoint(d)
    assert len(ck.tensors) > 4
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    orig = FastGGUFWriter.write_tensor_data
    calls = {"n": 0}

    def failing_write(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("simulated disk full")
        return orig(self, *a, **k)

    monkeypatch.setattr(FastGGUFWriter, "write_tensor_data", failing_write)
    # said as the user can act on it: the file, the reason, the free space (NumPy's tofile reports a
    # full disk as "N requested and M written", no errno)
    with pytest.raises(ConversionError, match=r"writing .*o\.gguf failed: simulated disk full; \d+ MiB free on its "
                                              r"file system \(disk full\?\); no output written"):
        write_gguf(ck, out_dir / "o.gguf", "Q8_0", progress=False)
    assert list(out_dir.iterdir()) == []


def test_interrupt_leaves_no_output_and_keeps_old_file(tmp_path, llama2_tokenizer_model, monkeypatch):
    d = _small(tmp_path, llama2_tokenizer_model)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    ck = load_checkpoint(d)
    calls = {"n": 0}
    orig = ck.tensors[4].load

    def boom():
        calls["n"] += 1
        raise KeyboardInterrupt

    ck.tensors[4].load = boom
    with pytest.raises(KeyboardInterrupt):
        write_gguf(ck, out_dir / "o.gguf", "F16", progress=False)
    assert calls["n"] == 1 and list(out_dir.iterdir()) == []
    # an existing OUTPUT is untouched by a failed run
    (out_dir / "o.gguf").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        write_gguf(ck, out_dir / "o.gguf", "F16", progress=False)
    assert (out_dir / "o.gguf").read_bytes() == b"old" and len(list(out_dir.iterdir())) == 1
    ck.tensors[4].load = orig


def test_refuses_to_overwrite_input(tmp_path, llama2_tokenizer_model):
    d = _small(tmp_path, llama2_tokenizer_model)
    g = quantize(d, tmp_path / "a.gguf", "F32")
    before = g.read_bytes()
    with pytest.raises(ConversionError, match="refusing to overwrite the input"):
        quantize(g, g, "Q8_0")
    os.link(g, tmp_path / "b.gguf")
    with pytest.raises(ConversionError, match="refusing to overwrite the input"):
        quantize(g, tmp_path / "b.gguf", "Q8_0")
    assert g.read_bytes() == before


def test_gguf_input_requantize(tmp_path, llama2_tokenizer_model):
    d = _small(tmp_path, llama2_tokenizer_model)
    f32 = quantize(d, tmp_path / "a.gguf", "F32")
    notes = []
    q8 = quantize(f32, tmp_path / "b.gguf", "Q8_0", on_note=notes.append)
    assert not notes
    r8 = GGUFReader(q8)
    assert r8.fields["general.file_type"].contents() == 7
    ra = GGUFReader(f32)
    assert r8.fields["tokenizer.ggml.tokens"].contents() == ra.fields["tokenizer.ggml.tokens"].contents()
    assert r8.fields["llama.attention.head_count_kv"].contents() == 1
    # requantizing a quantized file works, with a warning
    q4 = quantize(q8, tmp_path / "c.gguf", "Q4_0", on_note=notes.append)
    assert any("already quantized (Q8_0)" in n for n in notes)
    assert GGUFReader(q4).fields["general.file_type"].contents() == 2


def test_legacy_file_type_is_gguf_py_exact(tmp_path, llama2_tokenizer_model):
    """With rounding="reference" a Q4_0/Q8_0 file holds exactly gguf-py's (= llama.cpp's) reference
    blocks; the default search gives different blocks with a smaller error."""
    import gguf

    d = _small(tmp_path, llama2_tokenizer_model)
    f32 = quantize(d, tmp_path / "a.gguf", "F32")
    src = {t.name: np.asarray(t.data) for t in GGUFReader(f32).tensors}
    for ftype, qtype in (("Q4_0", gguf.GGMLQuantizationType.Q4_0), ("Q8_0", gguf.GGMLQuantizationType.Q8_0)):
        out = quantize(f32, tmp_path / f"{ftype}.gguf", ftype, rounding="reference")
        srch = quantize(f32, tmp_path / f"{ftype}.search.gguf", ftype)
        searched = {t.name: np.asarray(t.data) for t in GGUFReader(srch).tensors}
        for t in GGUFReader(out).tensors:
            if t.name == "blk.0.attn_q.weight":
                assert t.tensor_type == qtype
                x = src[t.name].reshape(32, 32)
                ref = gguf.quants.quantize(x, qtype)
                assert np.array_equal(np.asarray(t.data).reshape(ref.shape), ref)
                s = searched[t.name].reshape(ref.shape)
                assert not np.array_equal(s, ref)
                e_ref = np.sum((gguf.quants.dequantize(ref, qtype).reshape(x.shape) - x) ** 2)
                e_srch = np.sum((gguf.quants.dequantize(s, qtype).reshape(x.shape) - x) ** 2)
                assert e_srch < e_ref
    with pytest.raises(ValueError, match="rounding"):
        quantize(f32, tmp_path / "x.gguf", "Q4_0", rounding="nearest")
