"""Hugging Face checkpoint directories of every architecture in the C++ table (LlamaForCausalLM,
MistralForCausalLM, Qwen2/Qwen3, Gemma/Gemma2/Gemma3, Phi3, Granite, OLMo2, SmolLM3: see
``_core.architectures()`` and hf_archs.py): config.json, model.safetensors or sharded
model-0000x-of-0000y.safetensors (+ index), F32/F16/BF16."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np
from gguf import GGUFValueType

from .errors import ConversionError
from .hf_archs import ARCH_CONVERT, expected_layer_shapes, llama3_rope_factors
from .model import Checkpoint, TensorSource
from .safetensors import SafetensorsFile
from .vocab import bpe_vocab, sentencepiece_vocab

_GLOBAL_MAP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half Q/K row order -> GGUF's interleaved pairs (convert_hf_to_gguf.py's permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _longrope(scaling: dict, cfg: dict, n_rot: int, cfg_path: Path) -> dict:
    """Phi-3 128k / Phi-3.5 LongRoPE as llama.cpp's converter writes it: the short and long per-frequency
    divisors as rope_factors_short/long.weight, the pretraining context and the attention magnitude factor
    sqrt(1 + ln(s) / ln(orig)), s = max_position_embeddings / orig (transformers' default; an explicit
    `factor` / `attention_factor` in rope_scaling wins, as in transformers)."""
    try:
        orig = int(scaling.get("original_max_position_embeddings") or cfg["original_max_position_embeddings"])
        long_f = np.asarray(scaling["long_factor"], dtype=np.float32)
        short_f = np.asarray(scaling["short_factor"], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as e:
        raise ConversionError(f"{cfg_path}: longrope rope_scaling needs long_factor, short_factor and "
                              f"original_max_position_embeddings ({e})") from e
    for what, a in (("long_factor", long_f), ("short_factor", short_f)):
        if a.shape != (n_rot // 2,) or not np.all(np.isfinite(a)) or not np.all(a > 0):
            raise ConversionError(f"{cfg_path}: rope_scaling {what} must be {n_rot // 2} finite numbers > 0 "
                                  f"(one per rotated pair), got {a.tolist()}")
    if orig <= 1:
        raise ConversionError(f"{cfg_path}: original_max_position_embeddings must be > 1, got {orig}")
    factor = float(scaling.get("factor") or int(cfg.get("max_position_embeddings") or orig) / orig)
    attn = scaling.get("attention_factor")
    if attn is None:
        attn = math.sqrt(1 + math.log(factor) / math.log(orig)) if factor > 1 else 1.0
    return {
        "keys": [("rope.scaling.original_context_length", orig, GGUFValueType.UINT32),
                 ("rope.scaling.attn_factor", float(attn), GGUFValueType.FLOAT32)],
        "rope_factors_long.weight": long_f,
        "rope_factors_short.weight": short_f,
    }


def hf_class_table() -> Dict[str, dict]:
    """Hugging Face class name -> the C++ architecture table's row (the one list of architectures)."""
    from .. import _core

    return {cls: a for a in _core.architectures() for cls in a["hf_classes"]}


def is_hf_dir(path: Path) -> bool:
    return path.is_dir()


def _open_weights(d: Path) -> Dict[str, SafetensorsFile]:
    """tensor name -> the file holding it."""
    index = d / "model.safetensors.index.json"
    single = d / "model.safetensors"
    files: Dict[str, SafetensorsFile] = {}
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise ConversionError(f"{index}: corrupt safetensors index: {e}") from e
        opened: Dict[str, SafetensorsFile] = {}
        for name, fname in weight_map.items():
            if fname not in opened:
                p = d / fname
                if not p.is_file():
                    raise ConversionError(f"{d}: shard {fname} listed in model.safetensors.index.json is missing")
                opened[fname] = SafetensorsFile(p)
            if name not in opened[fname].tensors:
                raise ConversionError(f"{d}: tensor {name} is not in shard {fname} as the index says")
            files[name] = opened[fname]
        return files
    shards = sorted(d.glob("model-*-of-*.safetensors"))
    if single.is_file():
        shards = [single]
    if not shards:
        shards = sorted(d.glob("*.safetensors"))
    if not shards:
        if any(d.glob("*.bin")) or any(d.glob("*.pth")):
            raise ConversionError(f"{d}: only PyTorch pickle weights found; save the model with safetensors")
        raise ConversionError(f"{d}: no model.safetensors (or shards) found")
    for p in shards:
        st = SafetensorsFile(p)
        for name in st.tensors:
            files[name] = st
    return files


def read_hf(d: Path, vocab_only: bool = False) -> Checkpoint:
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise ConversionError(f"{d}: not a Hugging Face checkpoint: config.json is missing")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConversionError(f"{cfg_path}: cannot parse config.json: {e}") from e
    archs = cfg.get("architectures") or []
    hf_class = archs[0] if archs else cfg.get("model_type")
    table = hf_class_table()
    if hf_class not in table:
        raise ConversionError(
            f"{cfg_path}: unsupported architecture {hf_class!r} (supported: {', '.join(sorted(table))})"
        )
    spec = table[hf_class]
    arch = spec["name"]
    conv = ARCH_CONVERT[arch]
    try:
        n_embd = int(cfg["hidden_size"])
        n_layer = int(cfg["num_hidden_layers"])
        n_head = int(cfg["num_attention_heads"])
        n_ff = int(cfg["intermediate_size"])
        n_vocab = int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConversionError(f"{cfg_path}: missing or invalid hyper-parameter {e}") from e
    n_head_kv = int(cfg.get("num_key_value_heads") or n_head)
    act = cfg.get("hidden_activation") or cfg.get("hidden_act", "silu")
    want_act = ("silu",) if spec["activation"] == "silu" else ("gelu_pytorch_tanh", "gelu_tanh", "gelu")
    if act not in want_act:
        raise ConversionError(f"{cfg_path}: hidden_act {act!r} is not supported for {hf_class} ({want_act[0]} expected)")
    if (cfg.get("attention_bias") and not spec["qkv_bias"]) or cfg.get("mlp_bias"):
        raise ConversionError(f"{cfg_path}: attention/MLP biases are not supported by the {arch} GGUF layout")
    # transformers >= 5 keeps rope settings in rope_parameters (per layer type for gemma3: the global
    # layers' are under "full_attention"); older files use rope_theta/rope_scaling
    rope = dict(cfg.get("rope_parameters") or {})
    if isinstance(rope.get("full_attention"), dict):
        rope = dict(rope["full_attention"])
    rope_theta = cfg.get("rope_theta", rope.get("rope_theta"))
    scaling = cfg.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
    head_dim = int(cfg.get("head_dim") or n_embd // n_head)
    n_rot = int(float(rope.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))) * head_dim)
    if n_head % n_head_kv:
        raise ConversionError(f"{cfg_path}: num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_head_kv}")

    ck = Checkpoint(kind="hf", arch=arch)
    ck.add_llama_hparams(
        context_length=int(cfg.get("max_position_embeddings") or 2048),
        embedding_length=n_embd,
        block_count=n_layer,
        feed_forward_length=n_ff,
        head_count=n_head,
        head_count_kv=n_head_kv,
        rms_eps=float(cfg.get("rms_norm_eps", 1e-5)),
        rope_freq_base=float(rope_theta) if rope_theta is not None else None,
        rope_dimension_count=n_rot,
        vocab_size=n_vocab,
        name=d.resolve().name,
    )
    if cfg.get("head_dim") and head_dim != n_embd // n_head:
        ck.add(f"{arch}.attention.key_length", head_dim, GGUFValueType.UINT32)
        ck.add(f"{arch}.attention.value_length", head_dim, GGUFValueType.UINT32)
    for suffix, value, kind in conv.extra(cfg):
        vt = GGUFValueType.UINT32 if kind == "u32" else GGUFValueType.FLOAT32
        ck.add(f"{arch}.{suffix}", int(value) if kind == "u32" else float(value), vt)
    rope_factors = None
    longrope = None
    if scaling:
        rtype = scaling.get("rope_type") or scaling.get("type")
        if rtype == "linear" and "factor" in scaling:
            ck.add(f"{arch}.rope.scaling.type", "linear", GGUFValueType.STRING)
            ck.add(f"{arch}.rope.scaling.factor", float(scaling["factor"]), GGUFValueType.FLOAT32)
        elif rtype == "llama3":
            # As llama.cpp writes it: the per-frequency divisors as the rope_freqs.weight tensor.
            rope_factors = llama3_rope_factors(scaling, float(rope_theta or 10000.0), n_rot)
        elif rtype in ("longrope", "su"):
            longrope = _longrope(scaling, cfg, n_rot, cfg_path)
            for suffix, value, vt in longrope["keys"]:
                ck.add(f"{arch}.{suffix}", value, vt)
        elif rtype not in (None, "default"):
            raise ConversionError(f"{cfg_path}: rope_scaling type {rtype!r} is not supported by the converter")

    # tokenizer
    if (d / "tokenizer.model").is_file():
        sentencepiece_vocab(ck, d / "tokenizer.model", n_vocab, d)
    elif (d / "tokenizer.json").is_file():
        bpe_vocab(ck, d, n_vocab)
    else:
        ck.warnings.append(f"{d}: no tokenizer.model or tokenizer.json: the GGUF will have no vocabulary")
    if vocab_only:
        return ck

    files = _open_weights(d)
    expected = {
        "token_embd.weight": (n_vocab, n_embd),
        "output_norm.weight": (n_embd,),
        "output.weight": (n_vocab, n_embd),
    }
    layer_shapes = expected_layer_shapes(
        list(dict.fromkeys(conv.layer_map.values())), n_embd, n_head, n_head_kv, head_dim, n_ff, spec["qk_norm"]
    )
    for i in range(n_layer):
        expected.update({f"blk.{i}.{g}": shape for g, shape in layer_shapes.items()})
    mapped: Dict[str, str] = {}
    for name in files:
        if name.endswith("rotary_emb.inv_freq"):
            continue
        gname: Optional[str] = _GLOBAL_MAP.get(name)
        m = _LAYER_RE.match(name)
        if m and m.group(2) in conv.layer_map:
            gname = f"blk.{int(m.group(1))}.{conv.layer_map[m.group(2)]}"
        if gname is None or gname not in expected:
            raise ConversionError(f"{d}: unexpected tensor {name!r} for {hf_class} with {n_layer} layers")
        mapped[gname] = name
    tied = "output.weight" not in mapped
    if tied and not cfg.get("tie_word_embeddings", False):
        ck.warnings.append("no lm_head.weight: using tied embeddings")
    for gname in expected:
        if gname == "output.weight" and tied:
            continue
        if gname.split(".", 2)[-1] in conv.optional:
            continue
        if gname not in mapped:
            raise ConversionError(f"{d}: tensor for {gname} is missing from the checkpoint")
    if rope_factors is not None:
        ck.tensors.append(TensorSource("rope_freqs.weight", rope_factors.shape, lambda f=rope_factors: f, "F32"))
    if longrope is not None:
        for name in ("rope_factors_long.weight", "rope_factors_short.weight"):
            a = longrope[name]
            ck.tensors.append(TensorSource(name, a.shape, lambda a=a: a, "F32"))
    for gname, shape in expected.items():
        if gname not in mapped:
            continue
        hname = mapped[gname]
        st = files[hname]
        if tuple(st.shape(hname)) != shape:
            raise ConversionError(
                f"{d}: shape mismatch for {hname}: {list(st.shape(hname))}, config.json implies {list(shape)}"
            )
        if st.dtype(hname) not in ("F32", "F16", "BF16"):
            raise ConversionError(f"{d}: tensor {hname} has dtype {st.dtype(hname)}; F32/F16/BF16 expected")
        heads = 0
        if conv.permute_qk:
            heads = n_head if gname.endswith("attn_q.weight") else n_head_kv if gname.endswith("attn_k.weight") else 0
        shift = conv.norm_shift if gname.endswith("norm.weight") else 0.0

        def load(st=st, hname=hname, heads=heads, shift=shift):
            a = st.float32(hname)
            if heads:
                a = permute_rope(a, heads)
            return a + np.float32(shift) if shift else a

        ck.tensors.append(TensorSource(gname, shape, load, st.dtype(hname)))
    return ck
