"""How a Hugging Face checkpoint of each supported architecture maps onto GGUF: tensor names, which
tensors need the rope row permutation, norm weight shifts and the architecture's extra metadata.

Which architectures exist, and which Hugging Face classes map to which GGUF architecture, comes from the
C++ architecture table (``_core.architectures()``); this file only says how to convert each one, and a
test checks that every table row has a spec here. The conventions are llama.cpp's (convert_hf_to_gguf.py),
so that the files we write are the files the hub's GGUF files are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

# HF per-layer tensor name (after "model.layers.N.") -> GGUF name (after "blk.N.").
_ATTN = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
}
_MLP = {
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_PRE_NORMS = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_QK_NORM = {
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
}
_BIASES = {
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
}
# gemma2/3: four norms per layer; HF's post_attention_layernorm is the attention block's *post*-norm.
_GEMMA2_NORMS = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
}
_OLMO2_NORMS = {
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
}
_PHI3 = {
    "self_attn.qkv_proj.weight": "attn_qkv.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_up_proj.weight": "ffn_up.weight",  # gate rows then up rows, kept fused
    "mlp.down_proj.weight": "ffn_down.weight",
}


@dataclass
class ArchConvert:
    layer_map: Dict[str, str]
    permute_qk: bool = False  # "normal" rope: HF's rotate-half rows -> GGUF interleaved pairs
    norm_shift: float = 0.0  # gemma: HF stores w for a (1 + w) norm; GGUF stores 1 + w
    optional: tuple = ()  # GGUF per-layer names that may be absent (biases)
    # extra metadata from config.json: (cfg, arch) -> list of (key suffix, value, kind) with kind "u32"/"f32"
    extra: Callable[[dict], List[tuple]] = field(default=lambda cfg: [])


def _query_scale(cfg: dict) -> List[tuple]:
    """gemma2/3 scale queries by 1/sqrt(query_pre_attn_scalar); record it when that is not head_dim (llama.cpp
    itself only knows the 27B models' value, by layer count)."""
    qpas = cfg.get("query_pre_attn_scalar")
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    if qpas is None or float(qpas) == float(head_dim):
        return []
    return [("attention.scale", 1.0 / math.sqrt(float(qpas)), "f32")]


def _gemma2_extra(cfg: dict) -> List[tuple]:
    out = _query_scale(cfg) + [
        ("attn_logit_softcapping", cfg.get("attn_logit_softcapping"), "f32"),
        ("final_logit_softcapping", cfg.get("final_logit_softcapping"), "f32"),
        ("attention.sliding_window", cfg.get("sliding_window"), "u32"),
    ]
    return [o for o in out if o[1] is not None]


def _gemma3_extra(cfg: dict) -> List[tuple]:
    out = _query_scale(cfg) + [("final_logit_softcapping", cfg.get("final_logit_softcapping"), "f32")]
    if cfg.get("sliding_window_pattern") != 1:
        out.append(("attention.sliding_window", cfg.get("sliding_window"), "u32"))
    rope = cfg.get("rope_parameters") or {}
    local = (rope.get("sliding_attention") or {}).get("rope_theta", cfg.get("rope_local_base_freq"))
    if local is not None:
        out.append(("rope.freq_base_swa", float(local), "f32"))
    return [o for o in out if o[1] is not None]


def _granite_extra(cfg: dict) -> List[tuple]:
    out = [
        ("embedding_scale", cfg.get("embedding_multiplier"), "f32"),
        ("residual_scale", cfg.get("residual_multiplier"), "f32"),
        ("attention.scale", cfg.get("attention_multiplier"), "f32"),
        ("logit_scale", cfg.get("logits_scaling"), "f32"),
    ]
    return [o for o in out if o[1] is not None]


ARCH_CONVERT: Dict[str, ArchConvert] = {
    "llama": ArchConvert({**_ATTN, **_MLP, **_PRE_NORMS}, permute_qk=True),
    "qwen2": ArchConvert({**_ATTN, **_MLP, **_PRE_NORMS, **_BIASES}, optional=tuple(_BIASES.values())),
    "qwen3": ArchConvert({**_ATTN, **_MLP, **_PRE_NORMS, **_QK_NORM}),
    "gemma": ArchConvert({**_ATTN, **_MLP, **_PRE_NORMS}, norm_shift=1.0),
    "gemma2": ArchConvert({**_ATTN, **_MLP, **_GEMMA2_NORMS}, norm_shift=1.0, extra=_gemma2_extra),
    "gemma3": ArchConvert({**_ATTN, **_MLP, **_GEMMA2_NORMS, **_QK_NORM}, norm_shift=1.0, extra=_gemma3_extra),
    "phi3": ArchConvert({**_PHI3, **_PRE_NORMS}),
    "granite": ArchConvert({**_ATTN, **_MLP, **_PRE_NORMS}, permute_qk=True, extra=_granite_extra),
    "olmo2": ArchConvert({**_ATTN, **_MLP, **_OLMO2_NORMS, **_QK_NORM}),
    "smollm3": ArchConvert({**_ATTN, **_MLP, **_PRE_NORMS}, permute_qk=True),
}


def expected_layer_shapes(gguf_names, n_embd: int, n_head: int, n_head_kv: int, head_dim: int, n_ff: int,
                          qk_norm: str) -> Dict[str, tuple]:
    """NumPy shape of each per-layer GGUF tensor (rows = outputs)."""
    qw, kvw = n_head * head_dim, n_head_kv * head_dim
    qn = qw if qk_norm == "whole" else head_dim
    kn = kvw if qk_norm == "whole" else head_dim
    shapes = {
        "attn_q.weight": (qw, n_embd),
        "attn_k.weight": (kvw, n_embd),
        "attn_v.weight": (kvw, n_embd),
        "attn_qkv.weight": (qw + 2 * kvw, n_embd),
        "attn_output.weight": (n_embd, qw),
        "attn_q.bias": (qw,),
        "attn_k.bias": (kvw,),
        "attn_v.bias": (kvw,),
        "attn_q_norm.weight": (qn,),
        "attn_k_norm.weight": (kn,),
        "ffn_gate.weight": (n_ff, n_embd),
        "ffn_down.weight": (n_embd, n_ff),
        "attn_norm.weight": (n_embd,),
        "ffn_norm.weight": (n_embd,),
        "post_attention_norm.weight": (n_embd,),
        "post_ffw_norm.weight": (n_embd,),
    }
    out = {}
    for g in gguf_names:
        if g == "ffn_up.weight":
            out[g] = (2 * n_ff if "attn_qkv.weight" in gguf_names else n_ff, n_embd)  # phi3: fused gate/up
        else:
            out[g] = shapes[g]
    return out


def llama3_rope_factors(rope: dict, base: float, head_dim: int) -> Optional[np.ndarray]:
    """Per-frequency divisors of Llama 3.1 rope scaling (the rope_freqs.weight tensor llama.cpp writes)."""
    factor = float(rope.get("factor", 8.0))
    low = float(rope.get("low_freq_factor", 1.0))
    high = float(rope.get("high_freq_factor", 4.0))
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)
