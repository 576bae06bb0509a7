"""Hugging Face checkpoint directories (LlamaForCausalLM, MistralForCausalLM): config.json,
model.safetensors or sharded model-0000x-of-0000y.safetensors (+ index), F32/F16/BF16."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np
from gguf import GGUFValueType

from .errors import ConversionError
from .model import Checkpoint, TensorSource
from .safetensors import SafetensorsFile
from .vocab import bpe_vocab, sentencepiece_vocab

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")

_LAYER_MAP = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_GLOBAL_MAP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half Q/K row order -> GGUF's interleaved pairs (convert_hf_to_gguf.py's permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


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
    arch = archs[0] if archs else cfg.get("model_type")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ConversionError(
            f"{cfg_path}: unsupported architecture {arch!r} (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    try:
        n_embd = int(cfg["hidden_size"])
        n_layer = int(cfg["num_hidden_layers"])
        n_head = int(cfg["num_attention_heads"])
        n_ff = int(cfg["intermediate_size"])
        n_vocab = int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConversionError(f"{cfg_path}: missing or invalid hyper-parameter {e}") from e
    n_head_kv = int(cfg.get("num_key_value_heads") or n_head)
    if cfg.get("hidden_act", "silu") != "silu":
        raise ConversionError(f"{cfg_path}: hidden_act {cfg.get('hidden_act')!r} is not supported (silu expected)")
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise ConversionError(f"{cfg_path}: attention/MLP biases are not supported by the llama GGUF layout")
    # transformers >= 5 keeps rope settings in rope_parameters; older files use rope_theta/rope_scaling
    rope = dict(cfg.get("rope_parameters") or {})
    rope_theta = cfg.get("rope_theta", rope.get("rope_theta"))
    scaling = cfg.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
    head_dim = int(cfg.get("head_dim") or n_embd // n_head)
    if n_head % n_head_kv:
        raise ConversionError(f"{cfg_path}: num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_head_kv}")

    ck = Checkpoint(kind="hf", arch="llama")
    ck.add_llama_hparams(
        context_length=int(cfg.get("max_position_embeddings") or 2048),
        embedding_length=n_embd,
        block_count=n_layer,
        feed_forward_length=n_ff,
        head_count=n_head,
        head_count_kv=n_head_kv,
        rms_eps=float(cfg.get("rms_norm_eps", 1e-5)),
        rope_freq_base=float(rope_theta) if rope_theta is not None else None,
        rope_dimension_count=head_dim,
        vocab_size=n_vocab,
        name=d.resolve().name,
    )
    if cfg.get("head_dim") and head_dim != n_embd // n_head:
        ck.add("llama.attention.key_length", head_dim, GGUFValueType.UINT32)
        ck.add("llama.attention.value_length", head_dim, GGUFValueType.UINT32)
    if scaling:
        rtype = scaling.get("rope_type") or scaling.get("type")
        if rtype == "linear" and "factor" in scaling:
            ck.add("llama.rope.scaling.type", "linear", GGUFValueType.STRING)
            ck.add("llama.rope.scaling.factor", float(scaling["factor"]), GGUFValueType.FLOAT32)
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
    for i in range(n_layer):
        expected.update(
            {
                f"blk.{i}.attn_q.weight": (n_head * head_dim, n_embd),
                f"blk.{i}.attn_k.weight": (n_head_kv * head_dim, n_embd),
                f"blk.{i}.attn_v.weight": (n_head_kv * head_dim, n_embd),
                f"blk.{i}.attn_output.weight": (n_embd, n_head * head_dim),
                f"blk.{i}.ffn_gate.weight": (n_ff, n_embd),
                f"blk.{i}.ffn_up.weight": (n_ff, n_embd),
                f"blk.{i}.ffn_down.weight": (n_embd, n_ff),
                f"blk.{i}.attn_norm.weight": (n_embd,),
                f"blk.{i}.ffn_norm.weight": (n_embd,),
            }
        )
    mapped: Dict[str, str] = {}
    for name in files:
        if name.endswith("rotary_emb.inv_freq"):
            continue
        gname: Optional[str] = _GLOBAL_MAP.get(name)
        m = _LAYER_RE.match(name)
        if m and m.group(2) in _LAYER_MAP:
            gname = f"blk.{int(m.group(1))}.{_LAYER_MAP[m.group(2)]}"
        if gname is None or gname not in expected:
            raise ConversionError(f"{d}: unexpected tensor {name!r} for {arch} with {n_layer} layers")
        mapped[gname] = name
    tied = "output.weight" not in mapped
    if tied and not cfg.get("tie_word_embeddings", False):
        ck.warnings.append("no lm_head.weight: using tied embeddings")
    for gname in expected:
        if gname == "output.weight" and tied:
            continue
        if gname not in mapped:
            raise ConversionError(f"{d}: tensor for {gname} is missing from the checkpoint")
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
        heads = n_head if gname.endswith("attn_q.weight") else n_head_kv if gname.endswith("attn_k.weight") else 0

        def load(st=st, hname=hname, heads=heads):
            a = st.float32(hname)
            return permute_rope(a, heads) if heads else a

        ck.tensors.append(TensorSource(gname, shape, load, st.dtype(hname)))
    return ck
