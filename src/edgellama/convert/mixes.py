"""Which tensor gets which type for a target file type, following llama.cpp's llama_tensor_get_type
(llama-quant.cpp) for the types we write."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .gguf_types import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

T = GGMLQuantizationType


@dataclass(frozen=True)
class FileType:
    name: str
    ftype: LlamaFileType
    default: GGMLQuantizationType


FILE_TYPES: Dict[str, FileType] = {
    ft.name: ft
    for ft in [
        FileType("F32", LlamaFileType.ALL_F32, T.F32),
        FileType("F16", LlamaFileType.MOSTLY_F16, T.F16),
        FileType("BF16", LlamaFileType.MOSTLY_BF16, T.BF16),
        FileType("Q8_0", LlamaFileType.MOSTLY_Q8_0, T.Q8_0),
        FileType("Q4_0", LlamaFileType.MOSTLY_Q4_0, T.Q4_0),
        FileType("Q4_1", LlamaFileType.MOSTLY_Q4_1, T.Q4_1),
        FileType("Q5_0", LlamaFileType.MOSTLY_Q5_0, T.Q5_0),
        FileType("Q5_1", LlamaFileType.MOSTLY_Q5_1, T.Q5_1),
        FileType("Q2_K", LlamaFileType.MOSTLY_Q2_K, T.Q2_K),
        FileType("Q3_K_S", LlamaFileType.MOSTLY_Q3_K_S, T.Q3_K),
        FileType("Q3_K_M", LlamaFileType.MOSTLY_Q3_K_M, T.Q3_K),
        FileType("Q3_K_L", LlamaFileType.MOSTLY_Q3_K_L, T.Q3_K),
        FileType("Q4_K_S", LlamaFileType.MOSTLY_Q4_K_S, T.Q4_K),
        FileType("Q4_K_M", LlamaFileType.MOSTLY_Q4_K_M, T.Q4_K),
        FileType("Q5_K_S", LlamaFileType.MOSTLY_Q5_K_S, T.Q5_K),
        FileType("Q5_K_M", LlamaFileType.MOSTLY_Q5_K_M, T.Q5_K),
        FileType("Q6_K", LlamaFileType.MOSTLY_Q6_K, T.Q6_K),
        FileType("IQ4_NL", LlamaFileType.MOSTLY_IQ4_NL, T.IQ4_NL),
        FileType("IQ4_XS", LlamaFileType.MOSTLY_IQ4_XS, T.IQ4_XS),
        # grid i-quants (llama_ftype_get_default_type: IQ2_S files are mostly IQ2_XS, IQ2_M mostly IQ2_S)
        FileType("IQ3_XXS", LlamaFileType.MOSTLY_IQ3_XXS, T.IQ3_XXS),
        FileType("IQ3_XS", LlamaFileType.MOSTLY_IQ3_XS, T.IQ3_S),
        FileType("IQ3_S", LlamaFileType.MOSTLY_IQ3_S, T.IQ3_S),
        FileType("IQ3_M", LlamaFileType.MOSTLY_IQ3_M, T.IQ3_S),
        FileType("IQ2_XXS", LlamaFileType.MOSTLY_IQ2_XXS, T.IQ2_XXS),
        FileType("IQ2_XS", LlamaFileType.MOSTLY_IQ2_XS, T.IQ2_XS),
        FileType("IQ2_S", LlamaFileType.MOSTLY_IQ2_S, T.IQ2_XS),
        FileType("IQ2_M", LlamaFileType.MOSTLY_IQ2_M, T.IQ2_S),
        FileType("IQ1_S", LlamaFileType.MOSTLY_IQ1_S, T.IQ1_S),
        FileType("IQ1_M", LlamaFileType.MOSTLY_IQ1_M, T.IQ1_M),
    ]
}
# llama-quantize's aliases
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}


def parse_file_type(name: str) -> FileType:
    key = str(name).upper()
    key = ALIASES.get(key, key)
    if key not in FILE_TYPES:
        raise ValueError(f"unknown --type {name!r}; choose one of: {', '.join(FILE_TYPES)}")
    return FILE_TYPES[key]


def _is_quantized(t: GGMLQuantizationType) -> bool:
    return t not in (T.F32, T.F16, T.BF16)


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


_BLK = re.compile(r"^blk\.(\d+)\.")

# Block-size fallbacks for a row length the chosen type cannot hold, as llama.cpp's llama-quant.cpp
# (this version) picks them: a 32-value type of about the same size.
_FALLBACK = {T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0, T.IQ4_XS: T.IQ4_NL,
             T.IQ3_XXS: T.IQ4_NL, T.IQ3_S: T.IQ4_NL, T.IQ2_XXS: T.IQ4_NL, T.IQ2_XS: T.IQ4_NL, T.IQ2_S: T.IQ4_NL,
             T.IQ1_S: T.IQ4_NL, T.IQ1_M: T.IQ4_NL}

# File types whose attn_v / ffn_down / attn_output rules are llama.cpp's "very low bit" branch (and
# whose output tensor is Q5_K, not Q6_K, like IQ3_XXS's).
_LOW_BIT = ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M")

# Tensor types llama.cpp will not write without an importance matrix (llama-quant.cpp
# tensor_requires_imatrix; token_embd and output are exempt): the result would be garbage.
NEEDS_IMATRIX = (T.IQ3_XXS, T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ1_S, T.IQ1_M)


def check_imatrix(types: Dict[str, GGMLQuantizationType], has_importance) -> None:
    """Raise ValueError naming the first tensor whose planned type needs an importance matrix that
    it does not have (has_importance(name) -> bool)."""
    for name, t in types.items():
        if t in NEEDS_IMATRIX and name not in ("token_embd.weight", "output.weight") and not has_importance(name):
            raise ValueError(
                f"tensor {name}: type {t.name} needs an importance matrix (as llama-quantize requires); "
                "pass --imatrix FILE (from llama-imatrix or `edgellama imatrix`) or --calibrate TEXT"
            )


def plan_types(
    ft: FileType,
    tensors: Sequence[Tuple[str, Tuple[int, ...]]],
    n_layer: int,
    n_head: int,
    n_head_kv: int,
    has_imatrix: bool = False,
) -> Tuple[Dict[str, GGMLQuantizationType], List[str]]:
    """{tensor name: type} and notes about fallbacks."""
    names = {n for n, _ in tensors}
    has_output = "output.weight" in names
    n_gqa = n_head // n_head_kv if n_head_kv else 1
    out: Dict[str, GGMLQuantizationType] = {}
    fallbacks: Dict[Tuple[str, int, str], List[str]] = {}
    f = ft.name
    for name, shape in tensors:
        if len(shape) < 2 or not name.endswith(".weight") or ft.default == T.F32:
            out[name] = T.F32
            continue
        if not _is_quantized(ft.default):
            out[name] = ft.default
            continue
        nx = shape[-1]
        new = ft.default
        m = _BLK.match(name)
        i_layer = int(m.group(1)) if m else 0
        if name == "output.weight" or (not has_output and name == "token_embd.weight"):
            if nx % 256 != 0:
                new = T.Q8_0
            elif f in _LOW_BIT or f == "IQ3_XXS":
                new = T.Q5_K
            elif new != T.Q8_0:
                new = T.Q6_K
        elif name == "token_embd.weight":
            if f in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
                new = T.Q2_K
            elif f in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
                new = T.IQ3_S
        elif f in _LOW_BIT:
            iq2 = f in ("IQ2_S", "IQ2_M")
            if name.endswith("attn_v.weight"):
                new = T.Q4_K if n_gqa >= 4 else (T.IQ3_S if iq2 else T.Q2_K)
            elif name.endswith("ffn_down.weight") and i_layer < n_layer // 8:
                new = T.IQ3_S if iq2 else T.Q2_K
            elif name.endswith("attn_output.weight"):
                if f in ("IQ1_S", "IQ1_M"):
                    new = T.IQ2_XXS
                elif iq2:
                    new = T.IQ3_S
        elif name.endswith("attn_v.weight"):
            if f == "Q2_K":
                new = T.Q4_K if n_gqa >= 4 else T.Q3_K
            elif f == "Q3_K_M":
                new = T.Q5_K if i_layer < 2 else T.Q4_K
            elif f == "Q3_K_L":
                new = T.Q5_K
            elif f in ("Q4_K_M", "Q5_K_M") and use_more_bits(i_layer, n_layer):
                new = T.Q6_K
            elif f == "Q4_K_S" and i_layer < 4:
                new = T.Q5_K
            elif f in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
                new = T.Q5_K
            elif f == "IQ3_XXS":
                new = T.Q4_K if n_gqa >= 4 else (T.IQ3_XXS if has_imatrix else T.IQ3_S)
            elif f in ("IQ3_XS", "IQ3_S") and n_gqa >= 4:
                new = T.Q4_K
            elif f == "IQ3_M":
                new = T.Q4_K
        elif name.endswith(("attn_k.weight", "attn_q.weight")):
            if f == "IQ3_XS":
                new = T.IQ3_XXS
            elif f == "IQ3_XXS":
                new = T.IQ2_S
        elif name.endswith(("ffn_gate.weight", "ffn_up.weight")):
            if f == "IQ3_XS" and n_layer // 8 <= i_layer < 7 * n_layer // 8:
                new = T.IQ3_XXS
        elif name.endswith("ffn_down.weight"):
            if f == "Q2_K":
                new = T.Q3_K
            elif f == "Q3_K_M":
                new = T.Q5_K if i_layer < n_layer // 16 else T.Q4_K
            elif f == "Q3_K_L":
                new = T.Q5_K
            elif f == "Q4_K_M" and use_more_bits(i_layer, n_layer):
                new = T.Q6_K
            elif f == "Q5_K_M" and use_more_bits(i_layer, n_layer):
                new = T.Q6_K
            elif f == "Q4_K_S" and i_layer < n_layer // 8:
                new = T.Q5_K
            elif f in ("Q4_0", "Q5_0") and has_imatrix and i_layer < n_layer // 8:
                new = T.Q4_1 if f == "Q4_0" else T.Q5_1
            elif f in ("IQ4_NL", "IQ4_XS") and not has_imatrix and i_layer < n_layer // 8:
                new = T.Q5_K
            elif f == "IQ3_XXS" and not has_imatrix:
                new = T.Q4_K if i_layer < n_layer // 8 else T.Q3_K
            elif f == "IQ3_M" and i_layer < n_layer // 8:
                new = T.Q4_K
        elif name.endswith("attn_qkv.weight"):
            # fused Q/K/V (phi3): as llama.cpp's llama-quant.cpp bumps its ATTENTION_QKV category
            if f in ("Q3_K_M", "Q3_K_L", "IQ3_M"):
                new = T.Q4_K
            elif f == "Q4_K_M":
                new = T.Q5_K
            elif f == "Q5_K_M":
                new = T.Q6_K
        elif name.endswith("attn_output.weight"):
            if f == "Q2_K":
                new = T.Q3_K
            elif f == "Q3_K_M":
                new = T.Q4_K
            elif f == "Q3_K_L":
                new = T.Q5_K
            elif f == "IQ3_XXS":
                new = T.IQ3_S
            elif f == "IQ3_M":
                new = T.Q4_K
        block = GGML_QUANT_SIZES[new][0]
        if nx % block != 0:
            chosen = _FALLBACK.get(new, T.F16)
            if nx % GGML_QUANT_SIZES[chosen][0] != 0:
                chosen = T.F16
            fallbacks.setdefault((new.name, nx, chosen.name), []).append(name)
            new = chosen
        out[name] = new
    notes = []
    for (want, nx, chosen), which in fallbacks.items():
        block = GGML_QUANT_SIZES[T[want]][0]
        more = f" and {len(which) - 1} more" if len(which) > 1 else ""
        notes.append(
            f"row length {nx} is not a multiple of the {want} block size {block}: {which[0]}{more} use {chosen} instead"
        )
    return out, notes
