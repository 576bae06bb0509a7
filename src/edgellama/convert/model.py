"""The converter's in-memory view of a checkpoint: metadata key/values and tensors that load lazily,
one at a time, as float32 (the writer quantizes and drops each before loading the next)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
from .gguf_types import GGUFValueType


@dataclass
class TensorSource:
    name: str  # GGUF tensor name, e.g. "blk.0.attn_q.weight"
    shape: Tuple[int, ...]  # NumPy order: (rows, cols) for a matrix, rows = output features
    load: Callable[[], np.ndarray]  # returns float32 of `shape`
    src_type: str = "F32"  # stored type in the input ("F32", "F16", "BF16", "Q4_0", ...)
    # The data as stored, without a float32 copy, for the quantizer to widen row by row in its
    # threads: float16 of `shape` (src_type F16) or the bfloat16 bits as uint16 (BF16); None when
    # the source has no such form.
    load_stored: Optional[Callable[[], np.ndarray]] = None


@dataclass
class KV:
    key: str
    value: Any
    vtype: GGUFValueType
    sub_type: Optional[GGUFValueType] = None


@dataclass
class Checkpoint:
    kind: str  # "hf", "llama2c", "gguf"
    arch: str
    kv: List[KV] = field(default_factory=list)
    tensors: List[TensorSource] = field(default_factory=list)
    n_head: int = 0
    n_head_kv: int = 0
    n_layer: int = 0
    warnings: List[str] = field(default_factory=list)

    def add(self, key: str, value: Any, vtype: GGUFValueType, sub_type: Optional[GGUFValueType] = None) -> None:
        self.kv = [kv for kv in self.kv if kv.key != key]
        self.kv.append(KV(key, value, vtype, sub_type))

    def get(self, key: str, default: Any = None) -> Any:
        for kv in self.kv:
            if kv.key == key:
                return kv.value
        return default

    def add_llama_hparams(
        self,
        *,
        context_length: int,
        embedding_length: int,
        block_count: int,
        feed_forward_length: int,
        head_count: int,
        head_count_kv: int,
        rms_eps: float,
        rope_freq_base: Optional[float],
        rope_dimension_count: int,
        vocab_size: int,
        name: Optional[str] = None,
    ) -> None:
        U32, F32, STR = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.STRING
        a = self.arch
        if name:
            self.add("general.name", name, STR)
        self.add(f"{a}.vocab_size", int(vocab_size), U32)
        self.add(f"{a}.context_length", int(context_length), U32)
        self.add(f"{a}.embedding_length", int(embedding_length), U32)
        self.add(f"{a}.block_count", int(block_count), U32)
        self.add(f"{a}.feed_forward_length", int(feed_forward_length), U32)
        self.add(f"{a}.rope.dimension_count", int(rope_dimension_count), U32)
        self.add(f"{a}.attention.head_count", int(head_count), U32)
        self.add(f"{a}.attention.head_count_kv", int(head_count_kv), U32)
        self.add(f"{a}.attention.layer_norm_rms_epsilon", float(rms_eps), F32)
        if rope_freq_base is not None:
            self.add(f"{a}.rope.freq_base", float(rope_freq_base), F32)
        self.n_head, self.n_head_kv, self.n_layer = int(head_count), int(head_count_kv), int(block_count)
