"""Small random LLaMA-family GGUF models written with gguf.GGUFWriter, for tests.

    path = make_model(tmp_path / "m.gguf", arch="llama", wtype="Q4_K", tied=False, ...)

Weights are random but sane (std ~0.05, norms ~1) so activations stay O(1) and argmax is well defined.
Quantized weights: legacy types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and BF16 come from gguf.quants.quantize;
K-quants (Q2_K .. Q6_K) are random well-formed blocks (random bytes with the fp16 d/dmin fields set to
small finite values, rescaled so the dequantized weights have the target std).
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGML_QUANT_SIZES

LEGACY_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0")
K_TYPES = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
# Non-linear / ternary formats, made as random blocks like the K-quants (gguf-py cannot quantize
# IQ4_NL / IQ4_XS; its ternary quantizer makes mostly-zero blocks of Gaussian data). MXFP4 comes
# from gguf.quants.quantize like the legacy types.
# The grid i-quants are random blocks too (gguf-py cannot quantize them; every byte pattern is a valid
# block: grid indices cover their tables exactly).
GRID_TYPES = ("IQ3_XXS", "IQ3_S", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M")
IQ_TYPES = ("IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4") + GRID_TYPES
RANDOM_BLOCK_TYPES = K_TYPES + ("IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0") + GRID_TYPES
SUPER_BLOCK_TYPES = K_TYPES + ("IQ4_XS", "TQ1_0", "TQ2_0") + GRID_TYPES  # 256 values per block
FLOAT_TYPES = ("F32", "F16", "BF16")
ALL_WEIGHT_TYPES = FLOAT_TYPES + LEGACY_TYPES + K_TYPES + IQ_TYPES

# Byte offsets of the fp16 scale fields in each K-quant block (ggml layouts):
#   Q2_K: scales[16] qs[64] d dmin        (84 bytes)
#   Q3_K: hmask[32] qs[64] scales[12] d   (110 bytes)
#   Q4_K: d dmin scales[12] qs[128]       (144 bytes)
#   Q5_K: d dmin scales[12] qh[32] qs[128] (176 bytes)
#   Q6_K: ql[128] qh[64] scales[16] d     (210 bytes)
K_SCALE_FIELDS = {
    "Q2_K": (80, 82),
    "Q3_K": (108,),
    "Q4_K": (0, 2),
    "Q5_K": (0, 2),
    "Q6_K": (208,),
    "IQ4_NL": (0,),    # d qs[16]                                  (18 bytes)
    "IQ4_XS": (0,),    # d scales_h(u16) scales_l[4] qs[128]       (136 bytes)
    "TQ1_0": (52,),    # qs[48] qh[4] d                            (54 bytes)
    "TQ2_0": (64,),    # qs[64] d                                  (66 bytes)
    "IQ3_XXS": (0,),   # d qs[64] scales_and_signs[32]            (98 bytes)
    "IQ3_S": (0,),     # d qs[64] qh[8] signs[32] scales[4]        (110 bytes)
    "IQ2_XXS": (0,),   # d qs[32 x u16]                            (66 bytes)
    "IQ2_XS": (0,),    # d qs[32 x u16] scales[8]                  (74 bytes)
    "IQ2_S": (0,),     # d qs[32] signs[32] qh[8] scales[8]        (82 bytes)
    "IQ1_S": (0,),     # d qs[32] qh[8 x u16]                      (50 bytes)
}
# IQ1_M (qs[32] qh[16] scales[4 x u16], 56 bytes) has no fp16 field: its d is the top 4 bits of each
# of the four scale words (word w: bits 4w..4w+3 of d). set_iq1_m_d writes it.
IQ1_M_SCALE_OFFSET = 48


def set_iq1_m_d(blocks: np.ndarray, d_bits: np.ndarray) -> None:
    """Write fp16 bit patterns d_bits (one per block) into IQ1_M blocks (uint8, (n, 56)) in place."""
    words = blocks[:, IQ1_M_SCALE_OFFSET:].copy().view("<u2")
    d_bits = np.asarray(d_bits, np.uint16).reshape(-1, 1)
    nibbles = (d_bits >> np.array([0, 4, 8, 12], np.uint16)) & np.uint16(0xF)
    words = (words & np.uint16(0x0FFF)) | (nibbles << np.uint16(12)).astype(np.uint16)
    blocks[:, IQ1_M_SCALE_OFFSET:] = words.astype("<u2").view(np.uint8)


def block_info(type_name: str):
    return GGML_QUANT_SIZES[QT[type_name]]  # (block_size, type_size)


def random_kquant_blocks(type_name: str, n_blocks: int, rng: np.random.Generator, target_std: Optional[float] = 0.05) -> np.ndarray:
    """Random well-formed K-quant blocks as uint8 (n_blocks, type_size).

    Every fp16 scale field gets a finite value of random sign; with ``target_std`` the scale fields are
    rescaled so the dequantized values have roughly that standard deviation."""
    qt = QT[type_name]
    _, type_size = GGML_QUANT_SIZES[qt]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    offs = K_SCALE_FIELDS.get(type_name, (None,))

    def set_scales(v: np.ndarray) -> None:
        if type_name == "IQ1_M":
            set_iq1_m_d(blocks, v[:, 0].astype(np.float16).view(np.uint16))
        else:
            _set_f16_fields(blocks, offs, v)

    vals = rng.uniform(0.5, 1.0, size=(n_blocks, len(offs))) * rng.choice([-1.0, 1.0], size=(n_blocks, len(offs)))
    set_scales(vals)
    if target_std is not None:
        deq = gguf.quants.dequantize(blocks, qt).astype(np.float64)
        std = float(np.sqrt(np.mean(deq * deq)))
        if std > 0:
            set_scales(vals * (target_std / std))
    return blocks


def _set_f16_fields(blocks: np.ndarray, offs: Sequence[int], vals: np.ndarray) -> None:
    for j, o in enumerate(offs):
        h = vals[:, j].astype(np.float16).view(np.uint8).reshape(-1, 2)
        blocks[:, o : o + 2] = h


def random_float_blocks(type_name: str, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random well-formed blocks of a legacy/float type (quantized from Gaussian values), uint8 bytes."""
    bs, ts = block_info(type_name)
    data = rng.normal(0, 1, size=(n_blocks, bs)).astype(np.float32)
    return encode_weight(data, type_name).reshape(-1).view(np.uint8).reshape(n_blocks, ts)


def encode_weight(w: np.ndarray, type_name: str) -> np.ndarray:
    """Encode a float (rows, n_in) matrix as the array GGUFWriter.add_tensor expects for that type."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    if type_name == "F32":
        return w
    if type_name == "F16":
        return w.astype(np.float16)
    q = gguf.quants.quantize(w, QT[type_name])
    return np.ascontiguousarray(q).view(np.uint8)


def make_weight(shape_np, type_name: str, rng: np.random.Generator, std: float = 0.05):
    """Random weight of numpy shape (rows, n_in) in the given type; returns the add_tensor array."""
    rows, n_in = shape_np
    if type_name in RANDOM_BLOCK_TYPES:
        bs, ts = block_info(type_name)
        assert n_in % bs == 0, f"{type_name} needs rows of a multiple of {bs}, got {n_in}"
        blocks = random_kquant_blocks(type_name, rows * n_in // bs, rng, target_std=std)
        return blocks.reshape(rows, n_in // bs * ts)
    return encode_weight(rng.normal(0, std, size=(rows, n_in)), type_name)


def raw_dtype_for(type_name: str):
    return None if type_name in ("F32", "F16") else QT[type_name]


def make_model(
    path: "str | os.PathLike[str]",
    *,
    arch: str = "llama",
    wtype: str = "F32",
    n_layer: int = 2,
    n_embd: Optional[int] = None,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: Optional[int] = None,
    n_vocab: int = 96,
    n_ctx_train: int = 256,
    tied: bool = False,
    rope_linear_factor: Optional[float] = None,
    rope_freqs: bool = False,
    n_rot: Optional[int] = None,
    freq_base: float = 10000.0,
    eps: float = 1e-5,
    seed: int = 0,
    embd_type: Optional[str] = None,
    out_type: Optional[str] = None,
    drop: Sequence[str] = (),
    override: Optional[Dict[str, np.ndarray]] = None,
    override_raw_dtype: Optional[Dict[str, QT]] = None,
    extra_kv: Optional[Callable[[gguf.GGUFWriter], None]] = None,
    tokenizer: bool = True,
) -> str:
    """Write a small random model; returns the path as str.

    n_embd defaults to 64 (head_dim 16 with 4 heads) for float/legacy types and 256 for K-quants (rows
    must be a multiple of 256). ``drop`` removes tensors by name; ``override`` replaces a tensor's
    add_tensor array (``override_raw_dtype`` gives its type); ``extra_kv(writer)`` adds metadata."""
    rng = np.random.default_rng(seed)
    rng_extra = np.random.default_rng(seed + 7919)  # optional tensors: keep the main weights unchanged
    ktype = wtype in SUPER_BLOCK_TYPES
    if n_embd is None:
        n_embd = 256 if ktype else 64
    if n_ff is None:
        n_ff = 256 if ktype else 128
    head_dim = n_embd // n_head
    embd_type = embd_type or wtype
    out_type = out_type or wtype
    path = os.fspath(path)

    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(n_layer)
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(eps)
    w.add_rope_freq_base(freq_base)
    if n_rot is not None:
        w.add_rope_dimension_count(n_rot)
    if rope_linear_factor is not None:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope_linear_factor)
    w.add_vocab_size(n_vocab)
    w.add_file_type(0)
    if tokenizer:
        _add_tokenizer(w, n_vocab)
    if extra_kv is not None:
        extra_kv(w)

    override = dict(override or {})
    override_raw_dtype = dict(override_raw_dtype or {})
    tensors = []  # (name, array, raw_dtype)

    def add(name, arr, raw):
        tensors.append((name, arr, raw))

    def add_w(name, shape_np, t, std=0.05):
        add(name, make_weight(shape_np, t, rng, std), raw_dtype_for(t))

    def add_f32(name, arr):
        add(name, np.ascontiguousarray(arr, dtype=np.float32), None)

    add_w("token_embd.weight", (n_vocab, n_embd), embd_type, std=0.3)
    if rope_freqs:
        rot = n_rot if n_rot is not None else head_dim
        add_f32("rope_freqs.weight", rng_extra.uniform(1.0, 8.0, size=rot // 2))
    for il in range(n_layer):
        p = f"blk.{il}."
        add_f32(p + "attn_norm.weight", rng.uniform(0.8, 1.2, size=n_embd))
        add_w(p + "attn_q.weight", (n_head * head_dim, n_embd), wtype, std=0.15)
        add_w(p + "attn_k.weight", (n_head_kv * head_dim, n_embd), wtype, std=0.15)
        add_w(p + "attn_v.weight", (n_head_kv * head_dim, n_embd), wtype)
        if arch == "qwen2":
            add_f32(p + "attn_q.bias", rng_extra.normal(0, 0.1, size=n_head * head_dim))
            add_f32(p + "attn_k.bias", rng_extra.normal(0, 0.1, size=n_head_kv * head_dim))
            add_f32(p + "attn_v.bias", rng_extra.normal(0, 0.1, size=n_head_kv * head_dim))
        add_w(p + "attn_output.weight", (n_embd, n_head * head_dim), wtype)
        add_f32(p + "ffn_norm.weight", rng.uniform(0.8, 1.2, size=n_embd))
        add_w(p + "ffn_gate.weight", (n_ff, n_embd), wtype)
        add_w(p + "ffn_up.weight", (n_ff, n_embd), wtype)
        add_w(p + "ffn_down.weight", (n_embd, n_ff), wtype)
    add_f32("output_norm.weight", rng.uniform(0.8, 1.2, size=n_embd))
    if not tied:
        add_w("output.weight", (n_vocab, n_embd), out_type, std=0.1)

    for name, arr, raw in tensors:
        if name in drop:
            continue
        if name in override:
            arr = override.pop(name)
            raw = override_raw_dtype.get(name, raw_dtype_for("F32") if arr.dtype == np.float32 else raw)
        w.add_tensor(name, arr, raw_dtype=raw)
    for name, arr in override.items():  # extra tensors
        w.add_tensor(name, arr, raw_dtype=override_raw_dtype.get(name))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _add_tokenizer(w: gguf.GGUFWriter, n_vocab: int) -> None:
    """A SentencePiece-style ('llama') vocabulary of exactly n_vocab pieces."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    if n_vocab >= 3 + 256 + 1:
        tokens += [f"<0x{b:02X}>" for b in range(256)]
        types += [gguf.TokenType.BYTE] * 256
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(tokens) < n_vocab:
        a, b = divmod(i, len(letters))
        piece = ("\u2581" + letters[b]) if a == 0 else (letters[(a - 1) % 26] + letters[b] * (1 + (a - 1) // 26))
        if piece not in tokens:
            tokens.append(piece)
            types.append(gguf.TokenType.NORMAL)
        i += 1
    tokens = tokens[:n_vocab]
    types = types[:n_vocab]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(j) for j in range(len(tokens))])
    w.add_token_types([int(t) for t in types])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)


def set_version(path: "str | os.PathLike[str]", version: int) -> None:
    """Patch the GGUF version field (v2 and v3 share the layout for little-endian files)."""
    with open(path, "r+b") as f:
        f.seek(4)
        f.write(int(version).to_bytes(4, "little"))
