"""llama2.c checkpoints: the legacy header (7 int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads,
vocab_size, seq_len; a negative vocab_size means an untied classifier) and the version-1 "ak42"
header (256 bytes). Weights are float32. They come from Meta's layout, where RoPE rotates
interleaved pairs, which is GGUF's layout already: Q and K are not permuted."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import ConversionError
from .model import Checkpoint, TensorSource
from .vocab import llama2c_vocab, sentencepiece_vocab

MAGIC_AK42 = 0x616B3432


def looks_like_llama2c(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(28)
    if len(head) < 28:
        return False
    if head[:4] == b"GGUF":
        return False
    (magic,) = struct.unpack_from("<I", head, 0)
    if magic == MAGIC_AK42:
        return True
    vals = struct.unpack_from("<7i", head, 0)
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq = vals
    return 0 < dim < 1 << 16 and 0 < hidden < 1 << 18 and 0 < n_layers < 1024 and 0 < n_heads <= dim and 0 < n_kv <= n_heads and vocab != 0 and seq > 0


def read_llama2c(path: Path, tokenizer: Optional[Path] = None) -> Checkpoint:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(256)
    if len(head) < 28:
        raise ConversionError(f"{path}: truncated llama2.c checkpoint (header)")
    (magic,) = struct.unpack_from("<I", head, 0)
    if magic == MAGIC_AK42:
        (version,) = struct.unpack_from("<i", head, 4)
        if version != 1:
            raise ConversionError(
                f"{path}: llama2.c checkpoint version {version} is not supported (only the legacy format and version 1 float32)"
            )
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq = struct.unpack_from("<7i", head, 8)
        shared = bool(head[36])
        offset = 256
        layout = "v1"
    else:
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq = struct.unpack_from("<7i", head, 0)
        shared = vocab > 0
        vocab = abs(vocab)
        offset = 28
        layout = "legacy"
    if min(dim, hidden, n_layers, n_heads, n_kv, vocab, seq) <= 0 or dim % n_heads or n_heads % n_kv:
        raise ConversionError(
            f"{path}: implausible llama2.c header: dim={dim} hidden_dim={hidden} n_layers={n_layers} "
            f"n_heads={n_heads} n_kv_heads={n_kv} vocab_size={vocab} seq_len={seq}"
        )
    head_size = dim // n_heads
    kv_dim = n_kv * head_size
    L = n_layers

    # (name, shape per layer or None for global) in file order
    if layout == "legacy":
        order = [
            ("token_embd", (vocab, dim), False),
            ("attn_norm", (dim,), True),
            ("attn_q", (dim, dim), True),
            ("attn_k", (kv_dim, dim), True),
            ("attn_v", (kv_dim, dim), True),
            ("attn_output", (dim, dim), True),
            ("ffn_norm", (dim,), True),
            ("ffn_gate", (hidden, dim), True),
            ("ffn_down", (dim, hidden), True),
            ("ffn_up", (hidden, dim), True),
            ("output_norm", (dim,), False),
            ("_freq_cis", (seq * head_size // 2 * 2,), False),  # freq_cis_real + imag (unused)
        ]
    else:
        order = [
            ("attn_norm", (dim,), True),
            ("ffn_norm", (dim,), True),
            ("output_norm", (dim,), False),
            ("token_embd", (vocab, dim), False),
            ("attn_q", (dim, dim), True),
            ("attn_k", (kv_dim, dim), True),
            ("attn_v", (kv_dim, dim), True),
            ("attn_output", (dim, dim), True),
            ("ffn_gate", (hidden, dim), True),
            ("ffn_down", (dim, hidden), True),
            ("ffn_up", (hidden, dim), True),
        ]
    if not shared:
        order.append(("output", (vocab, dim), False))

    entries = []  # (gguf name, shape, byte offset)
    pos = offset
    for name, shape, per_layer in order:
        n = int(np.prod(shape))
        for i in range(L if per_layer else 1):
            if not name.startswith("_"):
                gname = f"blk.{i}.{name}.weight" if per_layer else f"{name}.weight"
                entries.append((gname, shape, pos))
            pos += 4 * n
    if pos > size:
        raise ConversionError(
            f"{path}: truncated llama2.c checkpoint: the header implies {pos} bytes, the file has {size}"
        )
    if layout == "legacy" and shared and pos < size:
        # the classifier may still be stored after the rope tables (vocab_size sign lost by a re-export)
        pass

    ck = Checkpoint(kind="llama2c", arch="llama")
    ck.add_llama_hparams(
        context_length=seq,
        embedding_length=dim,
        block_count=L,
        feed_forward_length=hidden,
        head_count=n_heads,
        head_count_kv=n_kv,
        rms_eps=1e-5,
        rope_freq_base=10000.0,
        rope_dimension_count=head_size,
        vocab_size=vocab,
        name=path.stem,
    )
    # tokenizer
    tok = tokenizer
    if tok is None:
        for cand in ("tokenizer.bin", "tokenizer.model"):
            if (path.parent / cand).is_file():
                tok = path.parent / cand
                break
    if tok is None:
        raise ConversionError(
            f"{path}: no tokenizer: pass --tokenizer PATH (llama2.c tokenizer.bin or sentencepiece tokenizer.model)"
        )
    tok = Path(tok)
    if not tok.is_file():
        raise ConversionError(f"{tok}: tokenizer file not found")
    if tok.suffix == ".model":
        sentencepiece_vocab(ck, tok, vocab, None, exact_size=True)
    else:
        llama2c_vocab(ck, tok, vocab)

    mm = np.memmap(path, dtype=np.uint8, mode="r")

    for gname, shape, off in entries:
        n = int(np.prod(shape))

        def load(off=off, n=n, shape=shape):
            return np.array(mm[off : off + 4 * n].view("<f4").reshape(shape), dtype=np.float32)

        ck.tensors.append(TensorSource(gname, shape, load, "F32"))
    # GGUF order: globals then layers, like llama.cpp's converter
    ck.tensors.sort(key=lambda t: (t.name.startswith("blk."), int(t.name.split(".")[1]) if t.name.startswith("blk.") else 0))
    return ck
