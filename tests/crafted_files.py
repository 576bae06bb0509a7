"""Crafted GGUF files: small valid bases written byte by byte, and one malformed file per class of
problem that llama.cpp's parser has had CVEs for (and a few more).

Pure Python (``struct``), no dependency on edgellama, so the same generator seeds the fuzzers:

    python3 tests/crafted_files.py --seeds DIR     # DIR/gguf/*.gguf (fuzz_gguf), DIR/vocab/*.gguf and
                                                   # DIR/text/* (fuzz_tokenize)
    python3 tests/crafted_files.py --write DIR     # every crafted case as DIR/<name>.gguf

Every case is a ``Case(name, data, level, error, match)``:
  level "gguf":  edgellama.GGUFFile(path) must raise ``error`` with a message matching ``match``
  level "model": GGUFFile loads; Llama(path) must raise (Llama(path, vocab_only=True) may load)
  level "vocab": GGUFFile loads; Llama(path) and Llama(path, vocab_only=True) must raise
  level "ok":    loads everywhere (edge cases that are valid, e.g. non-UTF-8 string values)
``error`` is a name: "GGUFError", "UnsupportedError", "OSError" or "ValueError" (any ValueError).
"""

from __future__ import annotations

import argparse
import math
import os
import struct
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
               U64: "<Q", I64: "<q", F64: "<d"}
# ggml tensor types used here: id, block size, bytes per block
T_F32, T_F16, T_Q4_0, T_Q8_0, T_Q4_K, T_IQ2_XXS = 0, 1, 2, 8, 12, 16
_BLOCK = {T_F32: (1, 4), T_F16: (1, 2), T_Q4_0: (32, 18), T_Q8_0: (32, 34), T_Q4_K: (256, 144),
          T_IQ2_XXS: (256, 66)}


# ---------------------------------------------------------------------------------------------
# byte-level encoding
# ---------------------------------------------------------------------------------------------

def u32(x: int) -> bytes:
    return struct.pack("<I", x & 0xFFFFFFFF)


def u64(x: int) -> bytes:
    return struct.pack("<Q", x & 0xFFFFFFFFFFFFFFFF)


def gstr(s: "str | bytes", length: Optional[int] = None) -> bytes:
    """A GGUF string: u64 length + bytes (``length`` overrides the stored length)."""
    b = s.encode() if isinstance(s, str) else bytes(s)
    return u64(len(b) if length is None else length) + b


def enc_value(vtype: int, value: Any) -> bytes:
    """Encodes a value of ``vtype``. Arrays: value = (element_type, [elements]); raw bytes pass through."""
    if isinstance(value, Raw):
        return value.data
    if vtype == STR:
        return gstr(value)
    if vtype == ARR:
        et, items = value
        return u32(et) + u64(len(items)) + b"".join(enc_value(et, x) for x in items)
    return struct.pack(_SCALAR_FMT[vtype], value)


@dataclass(frozen=True)
class Raw:
    """Bytes written as they are where a value (or a whole kv entry) would go."""

    data: bytes


def enc_kv(key: "str | bytes", vtype: int, value: Any) -> bytes:
    return gstr(key) + u32(vtype) + enc_value(vtype, value)


@dataclass
class Tensor:
    name: "str | bytes"
    shape: Tuple[int, ...]  # ggml order: shape[0] is the row length
    type_id: int = T_F32
    data: Optional[bytes] = None  # None: deterministic filler of the right size
    offset: Optional[int] = None  # None: next aligned offset after the previous tensor

    def nbytes(self) -> int:
        bs, ts = _BLOCK.get(self.type_id, (1, 4))
        n = 1
        for d in self.shape:
            n *= d
        return n // bs * ts


def filler(n_bytes: int, type_id: int, seed: int = 1) -> bytes:
    """Well-formed, small, finite values: F32 / F16 from a sine; quantized blocks with scale 1/64."""
    if type_id == T_F32:
        n = n_bytes // 4
        return struct.pack(f"<{n}f", *[0.05 * math.sin(0.7 * i + seed) for i in range(n)])
    if type_id == T_F16:
        n = n_bytes // 2
        return struct.pack(f"<{n}e", *[0.05 * math.sin(0.7 * i + seed) for i in range(n)])
    if type_id == T_Q8_0:
        out = bytearray()
        for b in range(n_bytes // 34):
            out += struct.pack("<e", 1 / 64) + bytes((i * 7 + b + seed) % 256 for i in range(32))
        return bytes(out)
    return bytes((i * 31 + seed) % 251 for i in range(n_bytes))


@dataclass
class GGUF:
    """A GGUF file as parts; ``build()`` lays it out. Fields override what the header claims."""

    kvs: List[Tuple["str | bytes", int, Any]] = field(default_factory=list)
    tensors: List[Tensor] = field(default_factory=list)
    magic: bytes = b"GGUF"
    version: int = 3
    n_tensors: Optional[int] = None  # None: len(tensors)
    n_kv: Optional[int] = None       # None: len(kvs)
    alignment: int = 32              # used for layout; a general.alignment kv is not added by itself
    extra_kv_bytes: bytes = b""      # appended after the kv entries (raw / broken entries)
    extra_info_bytes: bytes = b""    # appended after the tensor infos
    big_endian: bool = False

    # --- editing helpers (return self for chaining) ---
    def get(self, key: str) -> Any:
        for k, t, v in self.kvs:
            if k == key:
                return v
        raise KeyError(key)

    def set(self, key: str, vtype: int, value: Any) -> "GGUF":
        for i, (k, _, _) in enumerate(self.kvs):
            if k == key:
                self.kvs[i] = (key, vtype, value)
                return self
        self.kvs.append((key, vtype, value))
        return self

    def drop(self, key: str) -> "GGUF":
        self.kvs = [kv for kv in self.kvs if kv[0] != key]
        return self

    def tensor(self, name: str) -> Tensor:
        return next(t for t in self.tensors if t.name == name)

    def drop_tensor(self, name: str) -> "GGUF":
        self.tensors = [t for t in self.tensors if t.name != name]
        return self

    def copy(self) -> "GGUF":
        return replace(self, kvs=list(self.kvs), tensors=[replace(t) for t in self.tensors])

    def build(self) -> bytes:
        e = ">" if self.big_endian else "<"
        head = self.magic + struct.pack(e + "I", self.version & 0xFFFFFFFF)
        head += struct.pack(e + "QQ", (len(self.tensors) if self.n_tensors is None else self.n_tensors) & (2**64 - 1),
                            (len(self.kvs) if self.n_kv is None else self.n_kv) & (2**64 - 1))
        body = b"".join(enc_kv(k, t, v) for k, t, v in self.kvs) + self.extra_kv_bytes
        al = self.alignment
        offsets, data, pos = [], bytearray(), 0
        for i, t in enumerate(self.tensors):
            nb = t.nbytes()
            payload = t.data if t.data is not None else filler(nb, t.type_id, seed=i + 1)
            off = t.offset if t.offset is not None else (pos + al - 1) // al * al
            # explicit offsets still get their bytes (give data=b"" for offsets meant to be bad)
            if len(payload):
                data += b"\0" * max(0, off + len(payload) - len(data))
                data[off : off + len(payload)] = payload
                pos = max(pos, off + len(payload))
            offsets.append(off)
        infos = b""
        for t, off in zip(self.tensors, offsets):
            infos += gstr(t.name) + u32(len(t.shape)) + b"".join(u64(d) for d in t.shape) + u32(t.type_id) + u64(off)
        infos += self.extra_info_bytes
        out = head + body + infos
        if self.tensors:
            out += b"\0" * ((-len(out)) % al)
            out += bytes(data)
        return out


# ---------------------------------------------------------------------------------------------
# valid bases
# ---------------------------------------------------------------------------------------------

def metadata_base() -> GGUF:
    """Every value type, nested arrays and three tensors of different types (F32, F16, Q8_0)."""
    g = GGUF()
    g.set("general.architecture", STR, "crafted")
    g.set("general.alignment", U32, 32)
    for i, t in enumerate([U8, I8, U16, I16, U32, I32, U64, I64]):
        g.set(f"test.int.{t}", t, -(i + 1) if t in (I8, I16, I32, I64) else i + 1)
    g.set("test.f32", F32, 0.5)
    g.set("test.f64", F64, -2.25)
    g.set("test.bool", BOOL, 1)
    g.set("test.str", STR, "héllo")
    g.set("test.arr.u8", ARR, (U8, [1, 2, 3]))
    g.set("test.arr.i64", ARR, (I64, [-1, 2**62]))
    g.set("test.arr.f32", ARR, (F32, [0.25, -1.0]))
    g.set("test.arr.str", ARR, (STR, ["a", "", "ccc"]))
    g.set("test.arr.bool", ARR, (BOOL, [0, 1]))
    g.set("test.arr.nested", ARR, (ARR, [(U8, [1]), (STR, ["x"]), (ARR, [(I32, [7])])]))
    g.set("test.arr.empty", ARR, (U32, []))
    g.tensors = [Tensor("a", (10,), T_F32), Tensor("b", (4, 3), T_F16), Tensor("c", (64, 2), T_Q8_0)]
    return g


SPM_TOKENS = ["<unk>", "<s>", "</s>", "<0x0A>", "<0xE2>", "<0x96>", "<0x81>", "\u2581", "a", "b", "c",
              "\u2581a", "ab", "\u2581ab", "abc", "\u2581b", "<|user|>"]
SPM_TYPES = [2, 3, 3, 6, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4]
BPE_BYTES = None  # filled lazily: the 256 GPT-2 byte-mapped characters


def gpt2_byte_chars() -> List[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def spm_vocab_kvs(g: GGUF) -> GGUF:
    g.set("tokenizer.ggml.model", STR, "llama")
    g.set("tokenizer.ggml.tokens", ARR, (STR, SPM_TOKENS))
    g.set("tokenizer.ggml.scores", ARR, (F32, [0.0] * 7 + [-float(i) for i in range(len(SPM_TOKENS) - 7)]))
    g.set("tokenizer.ggml.token_type", ARR, (I32, SPM_TYPES))
    g.set("tokenizer.ggml.bos_token_id", U32, 1)
    g.set("tokenizer.ggml.eos_token_id", U32, 2)
    g.set("tokenizer.ggml.unknown_token_id", U32, 0)
    return g


def bpe_vocab_kvs(g: GGUF) -> GGUF:
    chars = gpt2_byte_chars()
    G = "\u0120"  # the GPT-2 mapping of ' '
    tokens = chars + ["he", "ll", "hell", "hello", G + "w", G + "wo", "<|endoftext|>", "<|im_start|>"]
    types = [1] * (len(tokens) - 2) + [3, 3]
    merges = ["h e", "l l", "he ll", "hell o", G + " w", G + "w o"]
    g.set("tokenizer.ggml.model", STR, "gpt2")
    g.set("tokenizer.ggml.pre", STR, "qwen2")
    g.set("tokenizer.ggml.tokens", ARR, (STR, tokens))
    g.set("tokenizer.ggml.token_type", ARR, (I32, types))
    g.set("tokenizer.ggml.merges", ARR, (STR, merges))
    g.set("tokenizer.ggml.eos_token_id", U32, len(tokens) - 2)
    return g


def model_base(arch: str = "llama", vocab: str = "spm", *, n_embd: int = 8, n_head: int = 2, n_head_kv: int = 1,
               n_layer: int = 1, n_ff: int = 16, wtype: int = T_F32) -> GGUF:
    """A complete tiny model that edgellama.Llama loads and runs (F32 weights unless wtype)."""
    g = GGUF()
    g.set("general.architecture", STR, arch)
    g.set("general.name", STR, "crafted-tiny")
    g.set(f"{arch}.context_length", U32, 64)
    g.set(f"{arch}.embedding_length", U32, n_embd)
    g.set(f"{arch}.block_count", U32, n_layer)
    g.set(f"{arch}.feed_forward_length", U32, n_ff)
    g.set(f"{arch}.attention.head_count", U32, n_head)
    g.set(f"{arch}.attention.head_count_kv", U32, n_head_kv)
    g.set(f"{arch}.attention.layer_norm_rms_epsilon", F32, 1e-5)
    g.set(f"{arch}.rope.freq_base", F32, 10000.0)
    (spm_vocab_kvs if vocab == "spm" else bpe_vocab_kvs)(g)
    n_vocab = len(g.get("tokenizer.ggml.tokens")[1])
    head_dim = n_embd // n_head
    q, kv = n_head * head_dim, n_head_kv * head_dim
    t = [Tensor("token_embd.weight", (n_embd, n_vocab), wtype), Tensor("output_norm.weight", (n_embd,)),
         Tensor("output.weight", (n_embd, n_vocab), wtype)]
    for il in range(n_layer):
        p = f"blk.{il}."
        t += [Tensor(p + "attn_norm.weight", (n_embd,)), Tensor(p + "attn_q.weight", (n_embd, q), wtype),
              Tensor(p + "attn_k.weight", (n_embd, kv), wtype), Tensor(p + "attn_v.weight", (n_embd, kv), wtype),
              Tensor(p + "attn_output.weight", (q, n_embd), wtype), Tensor(p + "ffn_norm.weight", (n_embd,)),
              Tensor(p + "ffn_gate.weight", (n_embd, n_ff), wtype), Tensor(p + "ffn_up.weight", (n_embd, n_ff), wtype),
              Tensor(p + "ffn_down.weight", (n_ff, n_embd), wtype)]
        if arch == "qwen2":
            t += [Tensor(p + "attn_q.bias", (q,)), Tensor(p + "attn_k.bias", (kv,)), Tensor(p + "attn_v.bias", (kv,))]
    # norms of 1.0 keep activations sane
    for x in t:
        if x.name.endswith("norm.weight"):
            x.data = struct.pack(f"<{n_embd}f", *([1.0] * n_embd))
    g.tensors = t
    return g


def vocab_base(vocab: str = "spm") -> GGUF:
    g = GGUF()
    g.set("general.architecture", STR, "llama")
    return (spm_vocab_kvs if vocab == "spm" else bpe_vocab_kvs)(g)


def valid_bases() -> Dict[str, GGUF]:
    return {
        "metadata": metadata_base(),
        "model_llama_spm": model_base("llama", "spm"),
        "model_qwen2_bpe": model_base("qwen2", "bpe", n_embd=16, n_head=4, n_head_kv=2, n_layer=2, n_ff=32),
        "model_llama_q8_0": model_base("llama", "spm", n_embd=32, n_head=4, n_head_kv=2, n_ff=64, wtype=T_Q8_0),
        "vocab_spm": vocab_base("spm"),
        "vocab_bpe": vocab_base("bpe"),
    }


# ---------------------------------------------------------------------------------------------
# crafted cases
# ---------------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    data: bytes
    level: str = "gguf"        # gguf | model | vocab | ok
    error: str = "GGUFError"   # GGUFError | UnsupportedError | OSError | ValueError
    match: str = ""            # regex the message must match (besides naming the file)


def _kv_tail(g: GGUF, raw: bytes, name: str, match: str, *, level: str = "gguf", error: str = "GGUFError") -> Case:
    """g with one extra raw kv entry (header count adjusted)."""
    h = g.copy()
    h.extra_kv_bytes = raw
    h.n_kv = len(h.kvs) + 1
    return Case(name, h.build(), level, error, match)


def gguf_cases() -> Iterator[Case]:
    base = metadata_base()
    good = base.build()
    small = GGUF(kvs=[("general.architecture", STR, "x")], tensors=[Tensor("t", (4,))])

    # --- magic / version ---
    yield Case("bad_magic", b"GGUL" + good[4:], match="bad magic")
    yield Case("magic_lowercase", b"gguf" + good[4:], match="bad magic")
    yield Case("ggml_legacy_magic", b"lmgg" + good[4:], match="bad magic")
    for v, m in [(1, "version 1 is obsolete"), (0, "unsupported GGUF version 0"), (4, "unsupported GGUF version 4"),
                 (0xFFFFFFFF, "unsupported GGUF version")]:
        h = base.copy()
        h.version = v
        yield Case(f"version_{v}", h.build(), match=m)
    h = base.copy()
    h.big_endian = True
    yield Case("big_endian", h.build(), match="big-endian")

    # --- counts (allocation overflow) ---
    for n in [2**64 - 1, 2**63, 2**62, 2**32 + 1, 2**31, len(base.kvs) + 1]:
        h = base.copy()
        h.n_kv = n
        # one more than present: the parser reads tensor infos as a kv entry and fails on whatever
        # comes first, so only ask for a GGUFError naming the file
        loose = n == len(base.kvs) + 1
        yield Case(f"kv_count_{n:x}", h.build(), match="" if loose else "metadata_kv_count.*cannot fit")
        h = base.copy()
        h.n_tensors = n
        yield Case(f"tensor_count_{n:x}", h.build(), match="" if loose else "tensor_count.*cannot fit")

    # --- string lengths ---
    for n, tag in [(2**64 - 1, "max"), (2**63, "2p63"), (len(good), "file_size"), (65536, "over_key_limit")]:
        yield _kv_tail(base, u64(n) + b"k" * 8, f"key_length_{tag}", r"too long|truncated|needs")
        yield _kv_tail(base, gstr("test.s") + u32(STR) + u64(n) + b"abc", f"string_length_{tag}", "truncated|needs")
    yield _kv_tail(base, gstr("") + u32(U8) + b"\1", "empty_key", "empty key")
    yield _kv_tail(base, gstr(b"bad\xff\xfekey") + u32(U8) + b"\1", "key_not_utf8", "UTF-8")
    for tag, key in [("overlong", b"k\xc0\x80"), ("surrogate", b"k\xed\xa0\x80"), ("over_10ffff", b"k\xf4\x90\x80\x80"),
                     ("cut_multibyte", b"k\xe2\x96"), ("lone_continuation", b"\x80k")]:
        yield _kv_tail(base, gstr(key) + u32(U8) + b"\1", f"key_utf8_{tag}", "not valid UTF-8")
    yield Case("string_value_missing", GGUF(kvs=[("a", STR, Raw(b""))]).build(), match="truncated")

    # --- arrays ---
    for et in [U8, U64, STR, ARR, F64]:
        for n in [2**64 - 1, 2**62, 2**61 + 1, 2**32]:
            yield _kv_tail(base, gstr("test.a") + u32(ARR) + u32(et) + u64(n) + b"\0" * 16,
                           f"array_{et}_length_{n:x}", "array length|cannot fit|truncated")
    yield _kv_tail(base, gstr("test.a") + u32(ARR) + u32(13) + u64(1) + b"\0" * 8, "array_unknown_element_type",
                   "unknown array element type 13")
    yield _kv_tail(base, gstr("test.a") + u32(ARR) + u32(0xFFFFFFFF) + u64(0), "array_element_type_max",
                   "unknown array element type")
    yield _kv_tail(base, gstr("test.a") + u32(ARR) + u32(BOOL) + u64(3) + b"\0\1\2", "bool_array_value_2",
                   "neither 0 nor 1")
    yield _kv_tail(base, gstr("test.b") + u32(BOOL) + b"\7", "bool_value_7", "neither 0 nor 1")
    # nested array bombs: too deep, and deep nests whose innermost count is absurd
    for depth in [9, 64, 100000]:
        raw = gstr("test.nest") + u32(ARR) + (u32(ARR) + u64(1)) * depth + u32(U8) + u64(0)
        yield _kv_tail(base, raw, f"nested_depth_{depth}", "nested deeper")
    raw = gstr("test.nest") + u32(ARR) + (u32(ARR) + u64(1)) * 7 + u32(U64) + u64(2**62)
    yield _kv_tail(base, raw, "nested_inner_count_huge", "array length|cannot fit")
    raw = gstr("test.nest") + u32(ARR) + u32(ARR) + u64(2**40) + (u32(ARR) + u64(2**40)) * 3
    yield _kv_tail(base, raw, "nested_wide_counts", "array length|cannot fit")

    # --- value types ---
    for t in [13, 255, 0x80000000, 0xFFFFFFFF]:
        yield _kv_tail(base, gstr("test.t") + u32(t) + b"\0" * 8, f"unknown_value_type_{t:x}", f"unknown value type {t}")

    # --- duplicates ---
    h = base.copy()
    h.extra_kv_bytes = enc_kv("test.str", STR, "again")
    h.n_kv = len(h.kvs) + 1
    yield Case("duplicate_key", h.build(), match="duplicate key")
    h = base.copy()
    h.tensors.append(Tensor("a", (10,)))
    yield Case("duplicate_tensor_name", h.build(), match="duplicate tensor name")

    # --- tensor infos ---
    def tensor_case(name: str, t: Tensor, match: str, **kw) -> Case:
        h = small.copy()
        h.tensors = [t]
        for k, v in kw.items():
            setattr(h, k, v)
        return Case(name, h.build(), match=match)

    for nd in [0, 5, 0xFFFFFFFF]:
        h = small.copy()
        h.extra_info_bytes = gstr("t2") + u32(nd) + u64(4) * 4 + u32(0) + u64(0)
        h.n_tensors = 2
        yield Case(f"n_dims_{nd:x}", h.build(), match="n_dims .* not between 1 and 4")
    yield tensor_case("zero_dim", Tensor("t", (4, 0), data=b""), "dimension 1 is zero")
    yield tensor_case("zero_first_dim", Tensor("t", (0,), data=b""), "dimension 0 is zero")
    yield tensor_case("dims_product_overflow", Tensor("t", (2**32, 2**32), data=b""), "element count overflows")
    yield tensor_case("dims_product_overflow_4d", Tensor("t", (2**16, 2**16, 2**16, 2**16), data=b""),
                      "element count overflows")
    yield tensor_case("dim_over_int64", Tensor("t", (2**63,), data=b""), "overflows")
    yield tensor_case("dim_negative", Tensor("t", (2**64 - 10,), data=b""), "overflows")
    yield tensor_case("row_bytes_overflow", Tensor("t", (2**62,), data=b""), "byte size overflows")
    yield tensor_case("bytes_overflow", Tensor("t", (2**32, 2**30), data=b""), "byte size overflows")
    yield tensor_case("bytes_overflow_3d", Tensor("t", (2**20, 2**21, 2**21), data=b""), "byte size overflows")
    yield tensor_case("huge_but_no_overflow", Tensor("t", (2**20, 2**20), data=b""), "past the end of the file")
    yield tensor_case("row_not_block_multiple", Tensor("t", (33, 2), T_Q4_0, data=b"\0" * 64),
                      "row length 33 is not a multiple of the Q4_0 block size 32")
    yield tensor_case("row_not_kquant_multiple", Tensor("t", (128,), T_Q4_K, data=b"\0" * 144),
                      "not a multiple of the Q4_K block size 256")
    for tid in [4, 5, 31, 40, 200, 0xFFFFFFFF]:
        yield tensor_case(f"unknown_type_{tid:x}", Tensor("t", (4,), tid, data=b"\0" * 16), f"unknown tensor type id {tid}")
    yield tensor_case("offset_misaligned", Tensor("t", (4,), offset=4, data=b""), "not a multiple of the alignment")
    yield tensor_case("offset_past_eof", Tensor("t", (4,), offset=4096, data=b""), "past the end of the file")
    yield tensor_case("offset_wraps", Tensor("t", (4,), offset=2**64 - 32, data=b""), "past the end of the file")
    yield tensor_case("tensor_name_empty", Tensor("", (4,)), "empty name")
    yield tensor_case("tensor_name_not_utf8", Tensor(b"w\xc3\x28", (4,)), "UTF-8")
    yield tensor_case("tensor_name_too_long", Tensor("n" * 70000, (4,)), "too long")
    h = small.copy()
    h.tensors = [Tensor("t", (8,)), Tensor("u", (8,), offset=0)]
    yield Case("tensors_same_offset", h.build(), match="overlaps")
    h = small.copy()
    h.tensors = [Tensor("t", (16,), offset=0), Tensor("u", (8,), offset=32)]
    yield Case("tensors_overlap", h.build(), match="overlaps")
    h = small.copy()
    h.tensors = [Tensor("t", (8,), offset=64), Tensor("u", (16,), offset=32), Tensor("v", (8,), offset=0)]
    yield Case("tensors_overlap_out_of_order", h.build(), match="overlaps")
    # data of the last tensor cut by one byte, and the data section missing entirely
    d = small.build()
    yield Case("tensor_data_short_by_one", d[:-1], match="past the end of the file")
    yield Case("data_section_missing", d[: len(d) - 16], match="past the end")

    # --- general.alignment ---
    for name, t, v, m in [("zero", U32, 0, "power of two"), ("three", U32, 3, "power of two"),
                          ("2p21", U32, 2**21, "power of two"), ("u64_max", U64, 2**64 - 1, "power of two"),
                          ("negative", I32, -32, "negative"), ("string", STR, "32", "must be an integer"),
                          ("float", F32, 32.0, "must be an integer"), ("bool", BOOL, 1, "must be an integer"),
                          ("array", ARR, (U32, [32]), "must be an integer")]:
        h = small.copy()
        h.set("general.alignment", t, v)
        yield Case(f"alignment_{name}", h.build(), match=f"general.alignment.*{m}")

    # --- truncation / tiny files ---
    yield Case("empty", b"", match="empty|too small")
    for n in (1, 3):
        yield Case(f"only_{n}_bytes", b"GGUF"[:n], match="too small")
    yield Case("magic_only", b"GGUF", match="truncated|needs")
    yield Case("zeros", b"\0" * 64, match="bad magic")
    yield Case("text_file", b"hello world\n" * 10, match="bad magic")


def truncations(data: bytes) -> Iterator[Tuple[int, bytes]]:
    """Every proper prefix of ``data`` (a valid file whose last byte is tensor data)."""
    for n in range(len(data)):
        yield n, data[:n]


def model_cases() -> Iterator[Case]:
    """Valid GGUF, invalid model: hyper-parameters and tensors that disagree."""
    A = "llama"

    def m(name: str, edit: Callable[[GGUF], Any], match: str, error: str = "GGUFError", base: Optional[GGUF] = None) -> Case:
        g = (base or model_base()).copy()
        edit(g)
        return Case(name, g.build(), "model", error, match)

    # (vocab_only loading needs general.architecture too)
    yield replace(m("arch_missing", lambda g: g.drop("general.architecture"), "general.architecture.*missing"),
                  level="vocab")
    yield replace(m("arch_wrong_type", lambda g: g.set("general.architecture", U32, 7), "expected a string"),
                  level="vocab")
    yield m("arch_unsupported", lambda g: g.set("general.architecture", STR, "gptj"), "not supported", "UnsupportedError")
    for v, t, tag in [(0, U32, "0"), (-1, I32, "neg"), (2**40, U64, "absurd"), (2**64 - 1, U64, "u64max")]:
        yield m(f"block_count_{tag}", lambda g, v=v, t=t: g.set(f"{A}.block_count", t, v),
                "block_count.*(> 0|absurdly large|out of range)")
    yield m("block_count_beyond_tensors", lambda g: g.set(f"{A}.block_count", U32, 2), "blk.1.* is missing")
    yield m("block_count_4096_beyond_tensors", lambda g: g.set(f"{A}.block_count", U32, 4096), "blk.1.* is missing")
    yield m("block_count_string", lambda g: g.set(f"{A}.block_count", STR, "1"), "expected an integer")
    yield m("block_count_float", lambda g: g.set(f"{A}.block_count", F32, 1.0), "expected an integer")
    yield m("block_count_array", lambda g: g.set(f"{A}.block_count", ARR, (U32, [1])), "expected an integer")
    yield m("block_count_missing", lambda g: g.drop(f"{A}.block_count"), "block_count.*missing")
    g2 = model_base(n_layer=2)
    yield m("block_count_below_tensors", lambda g: g.set(f"{A}.block_count", U32, 1), "more layers", base=g2)
    yield m("embedding_length_zero", lambda g: g.set(f"{A}.embedding_length", U32, 0), "embedding_length.*> 0")
    yield m("embedding_length_mismatch", lambda g: g.set(f"{A}.embedding_length", U32, 16), "token_embd.weight.*shape")
    yield m("embedding_length_huge", lambda g: g.set(f"{A}.embedding_length", U64, 2**62), "absurdly large")
    yield m("head_count_zero", lambda g: g.set(f"{A}.attention.head_count", U32, 0), "head_count.*> 0")
    yield m("head_count_not_dividing", lambda g: g.set(f"{A}.attention.head_count", U32, 3), "must divide")
    yield m("head_count_over_embd", lambda g: g.set(f"{A}.attention.head_count", U32, 16), "must divide")
    yield m("head_count_string", lambda g: g.set(f"{A}.attention.head_count", STR, "2"), "head_count.*expected an integer")
    yield m("head_count_kv_zero", lambda g: g.set(f"{A}.attention.head_count_kv", U32, 0), "head_count_kv.*> 0")
    yield m("head_count_kv_not_dividing",
            lambda g: (g.set(f"{A}.attention.head_count", U32, 4), g.set(f"{A}.attention.head_count_kv", U32, 3)),
            "head_count_kv .* must divide")
    yield m("head_count_kv_over_head_count", lambda g: g.set(f"{A}.attention.head_count_kv", U32, 4), "must divide")
    yield m("context_length_zero", lambda g: g.set(f"{A}.context_length", U32, 0), "context_length.*> 0")
    yield m("context_length_negative", lambda g: g.set(f"{A}.context_length", I64, -5), "context_length.*> 0")
    yield m("feed_forward_mismatch", lambda g: g.set(f"{A}.feed_forward_length", U32, 24), "ffn_gate.weight.*shape")
    yield m("key_length_mismatch", lambda g: g.set(f"{A}.attention.key_length", U32, 2), "attn_q.weight.*shape")
    yield m("value_length_differs",
            lambda g: (g.set(f"{A}.attention.key_length", U32, 4), g.set(f"{A}.attention.value_length", U32, 8)),
            "value_length", "UnsupportedError")
    yield m("rope_dims_odd", lambda g: g.set(f"{A}.rope.dimension_count", U32, 3), "dimension_count.*even")
    yield m("rope_dims_over_head", lambda g: g.set(f"{A}.rope.dimension_count", U32, 64), "dimension_count")
    yield m("rms_eps_zero", lambda g: g.set(f"{A}.attention.layer_norm_rms_epsilon", F32, 0.0), "epsilon")
    yield m("rms_eps_nan", lambda g: g.set(f"{A}.attention.layer_norm_rms_epsilon", F32, float("nan")), "epsilon")
    yield m("rope_base_inf", lambda g: g.set(f"{A}.rope.freq_base", F32, float("inf")), "freq_base")
    yield m("rope_base_zero", lambda g: g.set(f"{A}.rope.freq_base", F32, 0.0), "freq_base")
    yield m("rope_scaling_unknown", lambda g: g.set(f"{A}.rope.scaling.type", STR, "yarn"), "not supported",
            "UnsupportedError")
    yield m("rope_scaling_linear_negative",
            lambda g: (g.set(f"{A}.rope.scaling.type", STR, "linear"), g.set(f"{A}.rope.scaling.factor", F32, -2.0)),
            "scaling.factor")
    yield m("rope_scaling_linear_inf_scale",
            lambda g: (g.set(f"{A}.rope.scaling.type", STR, "linear"), g.set(f"{A}.rope.scale_linear", F32, 0.0)),
            "scaling.factor")

    def reshape(name: str, shape: Tuple[int, ...]) -> Callable[[GGUF], None]:
        def f(g: GGUF) -> None:
            t = g.tensor(name)
            t.shape, t.data = shape, None
        return f

    yield m("token_embd_1d", reshape("token_embd.weight", (8 * 17,)), "token_embd.weight.*shape")
    yield m("token_embd_3d", reshape("token_embd.weight", (8, 17, 1)), "token_embd.weight.*shape")
    yield m("wq_transposed_shape", reshape("blk.0.attn_k.weight", (4, 8)), "attn_k.weight.*shape")
    yield m("norm_wrong_length", reshape("blk.0.attn_norm.weight", (9,)), "attn_norm.weight.*shape")
    yield m("norm_2d", reshape("output_norm.weight", (8, 1)), "output_norm.weight.*shape")
    yield m("output_wrong_vocab", reshape("output.weight", (8, 16)), "output.weight.*shape")
    yield m("missing_output_norm", lambda g: g.drop_tensor("output_norm.weight"), "output_norm.weight.*missing")
    yield m("missing_ffn_down", lambda g: g.drop_tensor("blk.0.ffn_down.weight"), "ffn_down.weight.*missing")
    yield m("missing_token_embd", lambda g: g.drop_tensor("token_embd.weight"), "token_embd.weight.*missing")

    def retype(name: str, tid: int) -> Callable[[GGUF], None]:
        def f(g: GGUF) -> None:
            t = g.tensor(name)
            t.type_id, t.data = tid, None
        return f

    big = model_base(n_embd=256, n_head=2, n_head_kv=1, n_ff=256)
    yield m("unsupported_tensor_type", retype("blk.0.attn_q.weight", T_IQ2_XXS), "IQ2_XXS.*not support",
            "UnsupportedError", base=big)
    yield m("rope_freqs_wrong_length",
            lambda g: g.tensors.append(Tensor("rope_freqs.weight", (3,))), "rope_freqs.weight.*shape")
    # the tokenizer has more tokens than the embedding has rows
    yield m("vocab_larger_than_embedding",
            lambda g: (reshape("token_embd.weight", (8, 10))(g), reshape("output.weight", (8, 10))(g)),
            "tokenizer has 17 tokens but token_embd.weight has only 10 rows")


def vocab_cases() -> Iterator[Case]:
    """Valid GGUF, invalid tokenizer keys."""
    T = "tokenizer.ggml."
    n = len(SPM_TOKENS)

    def v(name: str, edit: Callable[[GGUF], Any], match: str, error: str = "GGUFError", vocab: str = "spm") -> Case:
        # on a complete model, so that Llama(path) gets past the weights and fails on the vocabulary too
        g = model_base("llama", "spm") if vocab == "spm" else model_base("qwen2", "bpe")
        edit(g)
        return Case(name, g.build(), "vocab", error, match)

    yield v("model_missing", lambda g: g.drop(T + "model"), "model is missing")
    yield v("model_wrong_type", lambda g: g.set(T + "model", U32, 1), "model: expected a string")
    yield v("model_unknown", lambda g: g.set(T + "model", STR, "bert"), "'bert' is not supported", "UnsupportedError")
    yield v("model_not_utf8", lambda g: g.set(T + "model", STR, b"\xffbert"), r"'\\xffbert' is not supported",
            "UnsupportedError")
    yield v("tokens_missing", lambda g: g.drop(T + "tokens"), "tokens is missing")
    yield v("tokens_u32_array", lambda g: g.set(T + "tokens", ARR, (U32, list(range(n)))), "array of strings")
    yield v("tokens_nested_array", lambda g: g.set(T + "tokens", ARR, (ARR, [(STR, ["a"])] * n)), "array of strings")
    yield v("tokens_scalar_string", lambda g: g.set(T + "tokens", STR, "abc"), "array of strings")
    yield v("tokens_u32_scalar", lambda g: g.set(T + "tokens", U32, 5), "array of strings")
    yield v("tokens_empty", lambda g: g.set(T + "tokens", ARR, (STR, [])), "vocabulary is empty")
    yield v("scores_string_array", lambda g: g.set(T + "scores", ARR, (STR, ["0"] * n)), "scores: expected an array of float")
    yield v("scores_int_array", lambda g: g.set(T + "scores", ARR, (I32, [0] * n)), "scores: expected an array of float")
    yield v("scores_scalar", lambda g: g.set(T + "scores", F32, 0.0), "scores: expected an array of float")
    yield v("scores_short", lambda g: g.set(T + "scores", ARR, (F32, [0.0] * (n - 1))), f"{n - 1} entries but there are {n}")
    yield v("scores_long", lambda g: g.set(T + "scores", ARR, (F32, [0.0] * (n + 5))), f"{n + 5} entries")
    yield v("scores_nan", lambda g: g.set(T + "scores", ARR, (F32, [float("nan")] * n)), "NaN")
    yield v("token_type_float_array", lambda g: g.set(T + "token_type", ARR, (F32, [1.0] * n)), "token_type: expected an array of int")
    yield v("token_type_string_array", lambda g: g.set(T + "token_type", ARR, (STR, ["1"] * n)), "token_type: expected an array of int")
    yield v("token_type_short", lambda g: g.set(T + "token_type", ARR, (I32, [1] * 3)), "3 entries but there are")
    yield v("token_type_7", lambda g: g.set(T + "token_type", ARR, (I32, [7] * n)), "has type 7")
    yield v("token_type_negative", lambda g: g.set(T + "token_type", ARR, (I32, [-1] * n)), "has type -1")
    yield v("token_type_u64_huge", lambda g: g.set(T + "token_type", ARR, (U64, [2**63] * n)), "token_type.*out of range")
    for key in ["bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id", "eot_token_id", "eom_token_id"]:
        yield v(f"{key}_out_of_range", lambda g, key=key: g.set(T + key, U32, n), f"{key}.*token id {n} is out of range")
    yield v("bos_negative", lambda g: g.set(T + "bos_token_id", I32, -1), "token id -1 is out of range")
    yield v("bos_int64_min", lambda g: g.set(T + "bos_token_id", I64, -2**63), "out of range")
    yield v("bos_u64_max", lambda g: g.set(T + "bos_token_id", U64, 2**64 - 1), "out of range")
    yield v("bos_2p32", lambda g: g.set(T + "bos_token_id", U64, 2**32 + 1), "out of range")
    yield v("bos_string", lambda g: g.set(T + "bos_token_id", STR, "1"), "bos_token_id: expected an integer")
    yield v("bos_float", lambda g: g.set(T + "bos_token_id", F32, 1.0), "bos_token_id: expected an integer")
    yield v("bos_array", lambda g: g.set(T + "bos_token_id", ARR, (U32, [1])), "bos_token_id: expected an integer")
    yield v("byte_token_bad_text",
            lambda g: g.set(T + "token_type", ARR, (I32, [6] + SPM_TYPES[1:])), "type BYTE but its text")
    yield v("add_bos_wrong_type", lambda g: g.set(T + "add_bos_token", STR, "yes"), "add_bos_token.*expected a bool")
    # byte-level BPE
    yield v("bpe_merges_missing", lambda g: g.drop(T + "merges"), "merges is missing", vocab="bpe")
    yield v("bpe_merges_u8_array", lambda g: g.set(T + "merges", ARR, (U8, [1, 2])), "merges: expected an array of strings",
            vocab="bpe")
    yield v("bpe_merge_unknown_token", lambda g: g.set(T + "merges", ARR, (STR, ["h e", "q z"])), "'q z' refers to",
            vocab="bpe")
    yield v("bpe_merge_unknown_result", lambda g: g.set(T + "merges", ARR, (STR, ["x y"])), "'x y' refers to 'xy'",
            vocab="bpe")
    yield v("bpe_merge_not_utf8", lambda g: g.set(T + "merges", ARR, (STR, [b"\xff z"])), r"refers to '\\xff'",
            vocab="bpe")
    yield v("bpe_merge_no_space", lambda g: g.set(T + "merges", ARR, (STR, ["he"])), "not of the form", vocab="bpe")
    yield v("bpe_merge_empty", lambda g: g.set(T + "merges", ARR, (STR, [""])), "not of the form", vocab="bpe")
    yield v("bpe_merge_only_space", lambda g: g.set(T + "merges", ARR, (STR, [" "])), "not of the form", vocab="bpe")
    yield v("bpe_pre_unknown", lambda g: g.set(T + "pre", STR, "made-up"), "'made-up' is not supported",
            "UnsupportedError", vocab="bpe")
    yield v("bpe_pre_wrong_type", lambda g: g.set(T + "pre", U32, 1), "pre: expected a string", vocab="bpe")
    yield v("bpe_add_bos_without_bos", lambda g: g.set(T + "add_bos_token", BOOL, 1), "no BOS token", vocab="bpe")


def ok_cases() -> Iterator[Case]:
    """Odd but valid: must load (no exception) everywhere."""
    g = metadata_base()
    g.set("test.latin1", STR, b"caf\xe9")
    g.set("test.arr.latin1", ARR, (STR, [b"\xff\xfe", b"ok"]))
    yield Case("string_values_not_utf8", g.build(), "ok", "", "")
    g = metadata_base()
    g.set("t\u00ebst.\u043a\u043b\u044e\u0447.\U0001F600", U8, 1)
    g.tensors.append(Tensor("\u4e16\u754c.weight", (4,)))
    yield Case("utf8_key_and_tensor_name", g.build(), "ok", "", "")
    g = metadata_base()
    g.set("test.arr.nested8", ARR, (ARR, [(ARR, [(ARR, [(ARR, [(ARR, [(ARR, [(ARR, [(U8, [1])])])])])])])]))
    yield Case("nested_depth_8", g.build(), "ok", "", "")
    g = metadata_base()
    g.set("general.alignment", U32, 1)
    yield Case("alignment_1", _aligned(g, 1), "ok", "", "")
    g = metadata_base()
    g.set("general.alignment", U64, 4096)
    yield Case("alignment_4096_u64", _aligned(g, 4096), "ok", "", "")
    g = metadata_base()
    g.version = 2
    yield Case("version_2", g.build(), "ok", "", "")
    yield Case("no_tensors_no_kv", GGUF().build(), "ok", "", "")
    m = model_base()
    m.drop_tensor("output.weight")
    yield Case("model_tied_output", m.build(), "ok", "", "")
    # non-finite weights: the logits are garbage, but nothing may crash (activation quantization
    # of NaN / inf is a float -> int conversion, undefined behaviour if done naively)
    m = model_base("llama", "spm", n_embd=32, n_head=4, n_head_kv=2, n_ff=64, wtype=T_Q8_0)
    t = m.tensor("token_embd.weight")
    blocks = bytearray(filler(t.nbytes(), T_Q8_0))
    for b in range(0, len(blocks), 34 * 3):
        blocks[b : b + 2] = b"\x00\x7e"  # fp16 NaN scale
    blocks[34:36] = b"\x00\x7c"  # fp16 +inf scale
    t.data = bytes(blocks)
    yield Case("model_q8_0_nan_inf_scales", m.build(), "ok", "", "")
    m = model_base()
    t = m.tensor("blk.0.attn_q.weight")
    n = t.nbytes() // 4
    t.data = struct.pack(f"<{n}f", *[[float("nan"), float("inf"), -float("inf"), 3e38][i % 4] for i in range(n)])
    yield Case("model_f32_nan_inf_weights", m.build(), "ok", "", "")


def _aligned(g: GGUF, al: int) -> bytes:
    g.alignment = al
    return g.build()


def all_cases() -> List[Case]:
    cases = list(gguf_cases()) + list(model_cases()) + list(vocab_cases()) + list(ok_cases())
    names = [c.name for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"duplicate case names: {sorted(dup)}"
    return cases


# ---------------------------------------------------------------------------------------------
# fuzz seeds
# ---------------------------------------------------------------------------------------------

TEXT_SEEDS = [b"", b"hello world", b" ab abc  a\nb", "h\u00e9llo \u4e16\u754c \U0001F600".encode(),
              b"<s>a</s><|user|>b", b"<|endoftext|><|im_start|>hello", b"\t\r\n  \xc2\xa0x", b"abcabcabcabc" * 20,
              b"12345 3.14 don't I'LL", b"\xff\xfe invalid \xc3\x28"]


def write_seeds(out: Path) -> None:
    (out / "gguf").mkdir(parents=True, exist_ok=True)
    (out / "vocab").mkdir(parents=True, exist_ok=True)
    (out / "text").mkdir(parents=True, exist_ok=True)
    for name, g in valid_bases().items():
        (out / "gguf" / f"{name}.gguf").write_bytes(g.build())
    # a few crafted cases too: they sit just past a check, a good place to mutate from
    for c in all_cases():
        if c.level in ("model", "vocab") and len(c.data) < 65536:
            (out / "gguf" / f"case_{c.name}.gguf").write_bytes(c.data)
    (out / "vocab" / "spm.gguf").write_bytes(vocab_base("spm").build())
    (out / "vocab" / "bpe.gguf").write_bytes(vocab_base("bpe").build())
    _write_llama2_vocab(out / "vocab" / "llama2.gguf")
    for i, t in enumerate(TEXT_SEEDS):
        for ctl in (0, 3):
            (out / "text" / f"t{i}_{ctl}").write_bytes(bytes([ctl]) + t)


def shared_model(*parts: str) -> Optional[Path]:
    """A file under shared/models: $EDGELLAMA_SHARED, else the first shared/ beside the project or one
    of its parent directories (a git worktree sits deeper than the main checkout)."""
    roots = [Path(os.environ["EDGELLAMA_SHARED"])] if os.environ.get("EDGELLAMA_SHARED") else []
    roots += [p / "shared" for p in Path(__file__).resolve().parents[1:]]
    for r in roots:
        f = r.joinpath("models", *parts)
        if f.is_file():
            return f
    return None


def _write_llama2_vocab(path: Path) -> None:
    """The Llama 2 sentencepiece vocabulary as a vocab-only GGUF, when the model file and the
    sentencepiece package are there (optional seed for fuzz_tokenize)."""
    cand = shared_model("llama2-tokenizer", "tokenizer.model")
    if cand is None:
        return
    try:
        import sentencepiece as spm  # type: ignore
    except ImportError:
        return
    sp = spm.SentencePieceProcessor(model_file=str(cand))
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i)
                     else 6 if sp.is_byte(i) else 1)
    g = GGUF()
    g.set("general.architecture", STR, "llama")
    g.set("tokenizer.ggml.model", STR, "llama")
    g.set("tokenizer.ggml.tokens", ARR, (STR, tokens))
    g.set("tokenizer.ggml.scores", ARR, (F32, scores))
    g.set("tokenizer.ggml.token_type", ARR, (I32, types))
    g.set("tokenizer.ggml.bos_token_id", U32, sp.bos_id())
    g.set("tokenizer.ggml.eos_token_id", U32, sp.eos_id())
    g.set("tokenizer.ggml.unknown_token_id", U32, sp.unk_id())
    path.write_bytes(g.build())


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=Path, help="write fuzz seeds under this directory")
    ap.add_argument("--write", type=Path, help="write every crafted case as DIR/<name>.gguf")
    a = ap.parse_args(argv)
    if a.seeds:
        write_seeds(a.seeds)
    if a.write:
        a.write.mkdir(parents=True, exist_ok=True)
        for c in all_cases():
            (a.write / f"{c.name}.gguf").write_bytes(c.data)
        for name, g in valid_bases().items():
            (a.write / f"valid_{name}.gguf").write_bytes(g.build())
    if not (a.seeds or a.write):
        for c in all_cases():
            print(f"{c.level:6} {c.error or '-':17} {len(c.data):8}  {c.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
