"""Crafted (malformed) GGUF files for the hardening tests, built from raw bytes with `struct`.

Two ways to build one:
  * `raw_gguf(...)` writes a header, metadata and tensor infos from scratch (every count, length,
    type id and offset is whatever the caller says, so it can lie);
  * `Doc.parse(bytes)` reads a *valid* file (from model_factory.make_model) into an editable list
    of metadata entries and tensor infos, and `Doc.to_bytes()` writes it back: change one field of
    an otherwise valid model.

`all_cases(base_dir)` returns every `Case`: a name, the bytes, the *level* at which loading must
fail ("parse": GGUFFile/Llama/vocab_only all raise; "model": Llama raises, the tokenizer may load;
"vocab": Llama and vocab_only raise, GGUFFile may load) and a regex the error message must match.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B",
               U64: "<Q", I64: "<q", F64: "<d"}
MAGIC = b"GGUF"
# ggml tensor type ids
T_F32, T_F16, T_Q4_0, T_Q8_0, T_Q4_K = 0, 1, 2, 8, 12


def gstr(s: "str | bytes") -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def encode_value(vtype: int, value: Any) -> bytes:
    """Payload bytes (without the type tag) of a metadata value."""
    if vtype == STR:
        return gstr(value)
    if vtype == ARR:
        etype, items = value
        out = struct.pack("<IQ", etype, len(items))
        return out + b"".join(encode_value(etype, x) for x in items)
    return struct.pack(_SCALAR_FMT[vtype], value)


def kv(key: "str | bytes", vtype: int, value: Any = None, *, raw: Optional[bytes] = None) -> bytes:
    """One metadata entry; `raw` gives the payload bytes directly (to lie about lengths)."""
    return gstr(key) + struct.pack("<I", vtype) + (raw if raw is not None else encode_value(vtype, value))


def tinfo(name: "str | bytes", dims: Sequence[int], ttype: int = T_F32, offset: int = 0, n_dims: Optional[int] = None) -> bytes:
    n = len(dims) if n_dims is None else n_dims
    return gstr(name) + struct.pack("<I", n) + b"".join(struct.pack("<Q", d & 0xFFFFFFFFFFFFFFFF) for d in dims) + struct.pack("<IQ", ttype, offset)


def raw_gguf(kvs: Sequence[bytes] = (), tensors: Sequence[bytes] = (), data: bytes = b"", *, version: int = 3,
             n_kv: Optional[int] = None, n_tensors: Optional[int] = None, alignment: int = 32, magic: bytes = MAGIC) -> bytes:
    head = magic + struct.pack("<I", version)
    head += struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors)
    if data:
        body += b"\0" * ((-len(body)) % alignment) + data
    return body


# ---------------------------------------------------------------------------------------------
# Doc: a parsed valid file that can be edited and written back
# ---------------------------------------------------------------------------------------------

@dataclass
class TensorRec:
    name: bytes
    dims: List[int]
    ttype: int
    offset: int
    n_dims: Optional[int] = None  # override of the written n_dims

    def to_bytes(self) -> bytes:
        return tinfo(self.name, self.dims, self.ttype, self.offset, self.n_dims)


@dataclass
class Doc:
    version: int
    kvs: List[Tuple[bytes, int, bytes]]  # key, type, raw payload
    tensors: List[TensorRec]
    data: bytes
    alignment: int = 32
    extra_tail: bytes = b""

    @staticmethod
    def parse(buf: bytes) -> "Doc":
        pos = 0

        def take(n: int) -> bytes:
            nonlocal pos
            b = buf[pos : pos + n]
            assert len(b) == n
            pos += n
            return b

        def u32() -> int:
            return struct.unpack("<I", take(4))[0]

        def u64() -> int:
            return struct.unpack("<Q", take(8))[0]

        def skip_value(t: int) -> None:
            if t == STR:
                take(u64())
            elif t == ARR:
                et = u32()
                for _ in range(u64()):
                    skip_value(et)
            else:
                take(struct.calcsize(_SCALAR_FMT[t]))

        assert take(4) == MAGIC
        version = u32()
        nt, nkv = u64(), u64()
        kvs = []
        alignment = 32
        for _ in range(nkv):
            key = take(u64())
            t = u32()
            start = pos
            skip_value(t)
            kvs.append((key, t, buf[start:pos]))
            if key == b"general.alignment":
                alignment = struct.unpack(_SCALAR_FMT[t], buf[start:pos])[0]
        tensors = []
        for _ in range(nt):
            name = take(u64())
            nd = u32()
            dims = [u64() for _ in range(nd)]
            tt = u32()
            off = u64()
            tensors.append(TensorRec(name, dims, tt, off))
        data_start = (pos + alignment - 1) // alignment * alignment
        return Doc(version, kvs, tensors, buf[data_start:], alignment)

    # --- edits ---
    def find_kv(self, key: str) -> int:
        for i, (k, _, _) in enumerate(self.kvs):
            if k == key.encode():
                return i
        raise KeyError(key)

    def set_kv(self, key: str, vtype: int, value: Any = None, *, raw: Optional[bytes] = None) -> "Doc":
        payload = raw if raw is not None else encode_value(vtype, value)
        try:
            self.kvs[self.find_kv(key)] = (key.encode(), vtype, payload)
        except KeyError:
            self.kvs.append((key.encode(), vtype, payload))
        return self

    def del_kv(self, key: str) -> "Doc":
        del self.kvs[self.find_kv(key)]
        return self

    def get_kv_array(self, key: str) -> Tuple[int, List[Any]]:
        """(element type, items) of an array of scalars or strings."""
        _, t, raw = self.kvs[self.find_kv(key)]
        assert t == ARR
        et, n = struct.unpack("<IQ", raw[:12])
        pos, items = 12, []
        for _ in range(n):
            if et == STR:
                ln = struct.unpack("<Q", raw[pos : pos + 8])[0]
                items.append(raw[pos + 8 : pos + 8 + ln])
                pos += 8 + ln
            else:
                sz = struct.calcsize(_SCALAR_FMT[et])
                items.append(struct.unpack(_SCALAR_FMT[et], raw[pos : pos + sz])[0])
                pos += sz
        return et, items

    def tensor(self, name: str) -> TensorRec:
        for t in self.tensors:
            if t.name == name.encode():
                return t
        raise KeyError(name)

    def to_bytes(self) -> bytes:
        head = MAGIC + struct.pack("<IQQ", self.version, len(self.tensors), len(self.kvs))
        body = head + b"".join(gstr(k) + struct.pack("<I", t) + p for k, t, p in self.kvs)
        body += b"".join(t.to_bytes() for t in self.tensors)
        body += b"\0" * ((-len(body)) % self.alignment)
        return body + self.data + self.extra_tail

    def copy(self) -> "Doc":
        return Doc(self.version, list(self.kvs), [TensorRec(t.name, list(t.dims), t.ttype, t.offset, t.n_dims) for t in self.tensors],
                   self.data, self.alignment, self.extra_tail)


# ---------------------------------------------------------------------------------------------
# Valid bases
# ---------------------------------------------------------------------------------------------

def small_model_bytes(base_dir: str, **kw: Any) -> bytes:
    """A tiny valid llama model (a few KB): 1 layer, n_embd 16, 2 heads, 32 tokens, F32."""
    import model_factory

    args = dict(n_layer=1, n_embd=16, n_head=2, n_head_kv=1, n_ff=32, n_vocab=32, n_ctx_train=64, wtype="F32")
    args.update(kw)
    name = "base_" + "_".join(f"{k}{v}" for k, v in sorted(kw.items())) + ".gguf"
    path = os.path.join(base_dir, name)
    model_factory.make_model(path, **args)
    with open(path, "rb") as f:
        return f.read()


def tensor_data_end(buf: bytes) -> int:
    """Offset just past the last tensor's data (a truncation at or after it leaves a valid file)."""
    import numpy as np  # noqa: F401  (keeps the import cost in one place)

    d = Doc.parse(buf)
    data_start = len(buf) - len(d.data)
    sizes = {T_F32: (1, 4), T_F16: (1, 2), T_Q8_0: (32, 34), T_Q4_0: (32, 18)}
    end = data_start
    for t in d.tensors:
        bs, ts = sizes[t.ttype]
        n = 1
        for x in t.dims:
            n *= x
        end = max(end, data_start + t.offset + n // bs * ts)
    return end


# ---------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    data: Optional[bytes]   # None: `kind` says what to create instead
    level: str              # "parse" | "model" | "vocab"
    pattern: str            # regex the error message must match (case-insensitive)
    kind: str = "file"      # "file" | "dir" | "missing"
    extra: dict = field(default_factory=dict)


def _minimal_kvs() -> List[bytes]:
    return [kv("general.architecture", STR, "llama")]


def parse_cases() -> List[Case]:
    C: List[Case] = []
    arch = _minimal_kvs()
    one_tensor = [tinfo("t", [8], T_F32, 0)]
    data8 = b"\0" * 32

    def add(name: str, data: bytes, pattern: str, level: str = "parse") -> None:
        C.append(Case(name, data, level, pattern))

    # --- magic / version ---
    add("bad_magic", raw_gguf(arch, magic=b"GGUX"), r"bad magic|not a GGUF")
    add("magic_only", b"GGUF", r"version.*(truncated|needs)")
    add("ggml_magic", b"lmgg" + b"\0" * 60, r"bad magic|not a GGUF")
    for v, pat in [(1, r"version 1"), (0, r"unsupported GGUF version 0"), (99, r"unsupported GGUF version 99"),
                   (0x03000000, r"big-endian"), (0x02000000, r"big-endian"), (0xFFFFFFFF, r"unsupported GGUF version")]:
        add(f"version_{v:#x}", raw_gguf(arch, version=v), pat)
    # --- counts ---
    for n in (2**63, 2**64 - 1, 2**32, 10**6):
        add(f"kv_count_{n}", raw_gguf(arch, n_kv=n), r"metadata_kv_count|truncated|needs")
        add(f"tensor_count_{n}", raw_gguf(arch, n_tensors=n), r"tensor_count|truncated|needs")
    add("kv_count_one_too_many", raw_gguf(arch, n_kv=2), r"truncated|needs")
    add("tensor_count_one_too_many", raw_gguf(arch, one_tensor, data8, n_tensors=2), r"truncated|needs|tensor")
    # --- strings and arrays ---
    for n in (2**63, 2**64 - 1, 1000):
        add(f"key_length_{n}", raw_gguf([struct.pack("<Q", n) + b"abc" + b"\0" * 16]), r"(too long|truncated|needs)")
        add(f"string_length_{n}", raw_gguf(arch + [kv("x.s", STR, raw=struct.pack("<Q", n) + b"ab")]), r"x\.s.*(truncated|needs|too long)")
        add(f"array_length_{n}", raw_gguf(arch + [kv("x.a", ARR, raw=struct.pack("<IQ", U32, n) + b"\0" * 8)]), r"x\.a.*(cannot fit|truncated|needs)")
        add(f"string_array_length_{n}", raw_gguf(arch + [kv("x.a", ARR, raw=struct.pack("<IQ", STR, n) + gstr("a"))]), r"x\.a.*(cannot fit|truncated|needs)")
        add(f"string_in_array_length_{n}", raw_gguf(arch + [kv("x.a", ARR, raw=struct.pack("<IQ", STR, 2) + gstr("a") + struct.pack("<Q", n))]), r"x\.a\[1\].*(truncated|needs)")
        add(f"tensor_name_length_{n}", raw_gguf(arch, [struct.pack("<Q", n) + b"t"], n_tensors=1), r"tensor 0 name.*(too long|truncated|needs)")
    add("empty_key", raw_gguf([kv("", U32, 1)]), r"empty key")
    for i, bad in enumerate([b"x.\xff\xfe", b"x.\xc0\xaf", b"x.\xed\xa0\x80", b"x.\xf4\x90\x80\x80", b"x.\xe2\x82"]):
        add(f"key_invalid_utf8_{i}", raw_gguf(arch + [kv(bad, U32, 1)]), r"key .* not valid UTF-8")
    add("tensor_name_invalid_utf8", raw_gguf(arch, [tinfo(b"t\xff", [8], T_F32, 0)], data8), r"name is not valid UTF-8")
    add("empty_tensor_name", raw_gguf(arch, [tinfo("", [8], T_F32, 0)], data8), r"empty name")
    # nested array bombs: deep nesting and wide nesting
    deep = struct.pack("<IQ", U32, 0)
    for _ in range(40):
        deep = struct.pack("<IQ", ARR, 1) + deep
    add("array_nested_40_deep", raw_gguf(arch + [kv("x.deep", ARR, raw=deep)]), r"nested deeper")
    wide = struct.pack("<IQ", ARR, 2**40) + struct.pack("<IQ", ARR, 2**40) * 4
    add("array_of_arrays_huge_count", raw_gguf(arch + [kv("x.wide", ARR, raw=wide)]), r"x\.wide.*(cannot fit|truncated|needs)")
    inner = struct.pack("<IQ", U8, 2**62)
    add("array_of_arrays_inner_huge", raw_gguf(arch + [kv("x.inner", ARR, raw=struct.pack("<IQ", ARR, 3) + inner * 3)]), r"x\.inner\[0\].*(cannot fit|truncated)")
    # --- value types ---
    for t in (13, 255, 2**31, 2**32 - 1):
        add(f"unknown_value_type_{t}", raw_gguf(arch + [kv("x.t", t, raw=b"\0" * 16)]), rf"unknown value type {t}")
        add(f"unknown_array_type_{t}", raw_gguf(arch + [kv("x.t", ARR, raw=struct.pack("<IQ", t, 1) + b"\0" * 16)]), rf"unknown array element type {t}")
    add("bool_value_2", raw_gguf(arch + [kv("x.b", BOOL, raw=b"\x02")]), r"bool value")
    add("bool_array_value_7", raw_gguf(arch + [kv("x.b", ARR, raw=struct.pack("<IQ", BOOL, 2) + b"\x01\x07")]), r"bool value")
    add("duplicate_key", raw_gguf(arch + [kv("x.k", U32, 1), kv("x.k", U32, 2)]), r"duplicate key")
    add("duplicate_tensor", raw_gguf(arch, [tinfo("t", [8], T_F32, 0), tinfo("t", [8], T_F32, 32)], data8 * 2), r"duplicate tensor")
    # --- tensor infos ---
    for nd in (0, 5, 2**32 - 1):
        add(f"n_dims_{nd}", raw_gguf(arch, [tinfo("t", [8], T_F32, 0, n_dims=nd)], data8), r"n_dims .* not between 1 and 4|truncated|needs")
    add("dim_zero", raw_gguf(arch, [tinfo("t", [8, 0], T_F32, 0)], data8), r"dimension 1 is zero")
    add("dim_zero_first", raw_gguf(arch, [tinfo("t", [0], T_F32, 0)], data8), r"dimension 0 is zero")
    add("dims_overflow_int64", raw_gguf(arch, [tinfo("t", [2**32, 2**32], T_F32, 0)], data8), r"overflow")
    add("dims_overflow_4d", raw_gguf(arch, [tinfo("t", [2**16, 2**16, 2**16, 2**16], T_F32, 0)], data8), r"overflow")
    add("dim_negative", raw_gguf(arch, [tinfo("t", [-1], T_F32, 0)], data8), r"overflow")
    add("dims_bytes_overflow", raw_gguf(arch, [tinfo("t", [2**31, 2**31], T_F32, 0)], data8), r"overflow|extends past")
    add("dims_bytes_wrap_exact", raw_gguf(arch, [tinfo("t", [2**62], T_F32, 0)], data8), r"overflow|extends past")
    add("dims_product_past_file", raw_gguf(arch, [tinfo("t", [1 << 20], T_F32, 0)], data8), r"extends past")
    add("row_not_block_multiple", raw_gguf(arch, [tinfo("t", [33], T_Q8_0, 0)], data8 * 4), r"not a multiple of the .*block size")
    add("row_not_block_multiple_k", raw_gguf(arch, [tinfo("t", [100, 4], T_Q4_K, 0)], data8 * 40), r"not a multiple of the .*block size")
    for tt in (4, 5, 42, 1000, 2**32 - 1):
        add(f"tensor_type_{tt}", raw_gguf(arch, [tinfo("t", [32], tt, 0)], data8 * 8), rf"unknown tensor type id {tt}")
    add("offset_misaligned", raw_gguf(arch, [tinfo("t", [8], T_F32, 4)], data8 * 2), r"not a multiple of the alignment")
    add("offset_past_file", raw_gguf(arch, [tinfo("t", [8], T_F32, 4096)], data8), r"extends past")
    add("offset_huge", raw_gguf(arch, [tinfo("t", [8], T_F32, 2**64 - 32)], data8), r"extends past")
    add("offset_wraps_with_size", raw_gguf(arch, [tinfo("t", [16], T_F32, 2**64 - 32)], data8), r"extends past")
    add("data_overlap", raw_gguf(arch, [tinfo("a", [16], T_F32, 0), tinfo("b", [16], T_F32, 32)], data8 * 4), r"overlaps")
    add("data_same_offset", raw_gguf(arch, [tinfo("a", [8], T_F32, 0), tinfo("b", [8], T_F32, 0)], data8 * 2), r"overlaps")
    # the layout rule (llama.cpp's gguf.cpp): in info order, each tensor starts where the previous
    # one's data ends, padded to the alignment
    add("data_gap", raw_gguf(arch, [tinfo("a", [8], T_F32, 0), tinfo("b", [8], T_F32, 64)], data8 * 3), r"tensor 'b'.*gap of 32 bytes after tensor 'a' \(F32 \[8\]")
    add("first_tensor_not_at_0", raw_gguf(arch, [tinfo("t", [8], T_F32, 32)], data8 * 2), r"tensor 't'.*offset 32 should be 0")
    add("data_out_of_info_order", raw_gguf(arch, [tinfo("a", [8], T_F32, 32), tinfo("b", [8], T_F32, 0)], data8 * 2), r"tensor 'a'.*should be 0")
    add("data_second_out_of_order", raw_gguf(arch, [tinfo("a", [8], T_F32, 0), tinfo("b", [8], T_F32, 64), tinfo("c", [8], T_F32, 32)], data8 * 3), r"gap|overlaps")
    add("last_tensor_past_end", raw_gguf(arch, [tinfo("a", [8], T_F32, 0), tinfo("b", [16], T_F32, 32)], data8 * 2), r"tensor 'b'.*extends past")
    add("data_gap_unpadded_size", raw_gguf(arch, [tinfo("a", [3], T_F32, 0), tinfo("b", [8], T_F32, 64)], data8 * 3), r"tensor 'b'.*gap of 32 bytes after tensor 'a' \(F32 \[3\], 12 bytes")
    add("data_section_missing", raw_gguf(arch, [tinfo("t", [8], T_F32, 0)]), r"past the end|truncated")
    # --- alignment ---
    add("alignment_0", raw_gguf(arch + [kv("general.alignment", U32, 0)], one_tensor, data8), r"general\.alignment.*power of two")
    add("alignment_3", raw_gguf(arch + [kv("general.alignment", U32, 3)], one_tensor, data8), r"general\.alignment.*power of two")
    add("alignment_2pow40", raw_gguf(arch + [kv("general.alignment", U64, 2**40)], one_tensor, data8), r"general\.alignment.*power of two")
    add("alignment_negative", raw_gguf(arch + [kv("general.alignment", I32, -32)], one_tensor, data8), r"general\.alignment")
    add("alignment_string", raw_gguf(arch + [kv("general.alignment", STR, "32")], one_tensor, data8), r"general\.alignment.*integer")
    add("alignment_float", raw_gguf(arch + [kv("general.alignment", F32, 32.0)], one_tensor, data8), r"general\.alignment.*integer")
    add("alignment_array", raw_gguf(arch + [kv("general.alignment", ARR, (U32, [32]))], one_tensor, data8), r"general\.alignment.*integer")
    # --- degenerate files ---
    add("empty", b"", r"empty")
    add("three_bytes", b"GGU", r"too small|truncated|not a GGUF")
    add("zeros_4k", b"\0" * 4096, r"bad magic|not a GGUF")
    add("header_only", raw_gguf([]), r"general\.architecture|missing", level="vocab")
    C.append(Case("directory", None, "parse", r"not a regular file|directory", kind="dir"))
    C.append(Case("missing_file", None, "parse", r"not found|No such file|not a file", kind="missing"))
    return C


def model_cases(base: bytes, base_bpe: Optional[bytes] = None) -> List[Case]:
    """One field of a valid small model changed. `base` has n_embd 16, 2 heads, 1 kv head, 1 layer,
    32 tokens (SentencePiece)."""
    C: List[Case] = []
    doc0 = Doc.parse(base)

    def edit(name: str, level: str, pattern: str, fn: Callable[[Doc], Any]) -> None:
        d = doc0.copy()
        fn(d)
        C.append(Case(name, d.to_bytes(), level, pattern))

    A = "llama."
    # --- hyper-parameters ---
    edit("block_count_2", "model", r"blk\.1\..*missing", lambda d: d.set_kv(A + "block_count", U32, 2))
    edit("block_count_2pow31", "model", r"block_count.*absurdly large", lambda d: d.set_kv(A + "block_count", U32, 2**31))
    edit("block_count_2pow63", "model", r"block_count.*absurdly large", lambda d: d.set_kv(A + "block_count", U64, 2**63 - 1))
    edit("block_count_u64_max", "model", r"block_count.*out of range", lambda d: d.set_kv(A + "block_count", U64, 2**64 - 1))
    edit("block_count_0", "model", r"block_count.*> 0", lambda d: d.set_kv(A + "block_count", U32, 0))
    edit("block_count_negative", "model", r"block_count.*> 0", lambda d: d.set_kv(A + "block_count", I32, -1))
    edit("block_count_string", "model", r"block_count.*integer", lambda d: d.set_kv(A + "block_count", STR, "1"))
    edit("block_count_missing", "model", r"block_count.*missing", lambda d: d.del_kv(A + "block_count"))
    edit("head_count_0", "model", r"head_count.*> 0", lambda d: d.set_kv(A + "attention.head_count", U32, 0))
    edit("head_count_3_not_dividing", "model", r"head_count.*must divide|head_count_kv", lambda d: d.set_kv(A + "attention.head_count", U32, 3))
    edit("head_count_huge", "model", r"head_count.*absurdly large", lambda d: d.set_kv(A + "attention.head_count", U32, 2**31))
    edit("head_count_kv_0", "model", r"head_count_kv.*> 0", lambda d: d.set_kv(A + "attention.head_count_kv", U32, 0))
    edit("head_count_kv_not_dividing", "model", r"head_count_kv.*must divide", lambda d: (d.set_kv(A + "attention.head_count", U32, 4), d.set_kv(A + "attention.head_count_kv", U32, 3)))
    edit("head_count_kv_gt_head_count", "model", r"head_count_kv.*must divide", lambda d: d.set_kv(A + "attention.head_count_kv", U32, 4))
    edit("head_count_larger_than_embd", "model", r"must divide|has shape", lambda d: (d.set_kv(A + "attention.head_count", U32, 32), d.set_kv(A + "attention.head_count_kv", U32, 32)))
    edit("context_length_0", "model", r"context_length.*> 0", lambda d: d.set_kv(A + "context_length", U32, 0))
    edit("context_length_huge", "model", r"context_length.*absurdly large", lambda d: d.set_kv(A + "context_length", U64, 2**62))
    edit("embedding_length_0", "model", r"embedding_length.*> 0", lambda d: d.set_kv(A + "embedding_length", U32, 0))
    edit("embedding_length_mismatch", "model", r"token_embd\.weight.*has shape", lambda d: d.set_kv(A + "embedding_length", U32, 32))
    edit("embedding_length_huge", "model", r"embedding_length.*absurdly large", lambda d: d.set_kv(A + "embedding_length", U64, 2**40))
    edit("feed_forward_length_mismatch", "model", r"ffn_(gate|up|down)\.weight.*has shape", lambda d: d.set_kv(A + "feed_forward_length", U32, 64))
    edit("feed_forward_length_0", "model", r"feed_forward_length.*> 0", lambda d: d.set_kv(A + "feed_forward_length", U32, 0))
    edit("rope_dims_odd", "model", r"rope\.dimension_count.*even", lambda d: d.set_kv(A + "rope.dimension_count", U32, 3))
    edit("rope_dims_gt_head", "model", r"rope\.dimension_count", lambda d: d.set_kv(A + "rope.dimension_count", U32, 64))
    edit("key_length_mismatch", "model", r"attn_q\.weight.*has shape|must divide", lambda d: d.set_kv(A + "attention.key_length", U32, 4))
    edit("key_length_huge", "model", r"key_length.*absurdly large", lambda d: d.set_kv(A + "attention.key_length", U32, 2**30))
    edit("value_length_differs", "model", r"value_length", lambda d: (d.set_kv(A + "attention.key_length", U32, 8), d.set_kv(A + "attention.value_length", U32, 4)))
    edit("rms_eps_zero", "model", r"layer_norm_rms_epsilon", lambda d: d.set_kv(A + "attention.layer_norm_rms_epsilon", F32, 0.0))
    edit("rms_eps_nan", "model", r"layer_norm_rms_epsilon", lambda d: d.set_kv(A + "attention.layer_norm_rms_epsilon", F32, float("nan")))
    edit("rope_base_inf", "model", r"freq_base", lambda d: d.set_kv(A + "rope.freq_base", F32, float("inf")))
    edit("rope_base_string", "model", r"freq_base.*number", lambda d: d.set_kv(A + "rope.freq_base", STR, "1e4"))
    edit("rope_scaling_unknown", "model", r"rope scaling type", lambda d: d.set_kv(A + "rope.scaling.type", STR, "yarn"))
    edit("rope_scaling_factor_neg", "model", r"scaling\.factor", lambda d: (d.set_kv(A + "rope.scaling.type", STR, "linear"), d.set_kv(A + "rope.scaling.factor", F32, -2.0)))
    edit("architecture_unknown", "model", r"architecture 'gpt99' is not supported", lambda d: d.set_kv("general.architecture", STR, "gpt99"))
    edit("architecture_int", "vocab", r"general\.architecture.*string", lambda d: d.set_kv("general.architecture", U32, 7))
    edit("architecture_missing", "vocab", r"general\.architecture.*missing", lambda d: d.del_kv("general.architecture"))
    # --- tensors vs metadata ---
    edit("token_embd_1d", "model", r"token_embd\.weight.*has shape", lambda d: _reshape(d, "token_embd.weight", [16 * 32]))
    edit("token_embd_transposed", "model", r"token_embd\.weight.*has shape", lambda d: _reshape(d, "token_embd.weight", [32, 16]))
    edit("attn_q_transposed_shape", "model", r"attn_q\.weight.*has shape", lambda d: _reshape(d, "blk.0.attn_q.weight", [16, 4, 4]))
    edit("attn_k_wrong_rows", "model", r"attn_k\.weight.*has shape", lambda d: _reshape(d, "blk.0.attn_k.weight", [16, 4]))
    edit("output_norm_3d", "model", r"output_norm\.weight.*has shape", lambda d: _reshape(d, "output_norm.weight", [4, 2, 2]))
    edit("output_wrong_vocab", "model", r"output\.weight.*has shape", lambda d: _reshape(d, "output.weight", [16, 16]))
    edit("tensor_missing", "model", r"ffn_down\.weight.*missing", lambda d: _rename(d, "blk.0.ffn_down.weight", "blk.0.ffn_downX.weight"))
    edit("extra_layer_tensors", "model", r"more layers than", lambda d: _rename(d, "blk.0.ffn_downX.weight", None, add_extra=True))
    edit("tensor_type_q4_k_shape", "model", r"not a multiple of the .*block size", lambda d: _retype(d, "output_norm.weight", T_Q4_K))
    edit("tensor_type_changed_size", "parse", r"extends past|overlaps", lambda d: _retype(d, "output.weight", 30 if False else T_F32, dims_scale=4))
    # a declared type or shape that does not match the stored bytes breaks the layout chain
    # (before the check, F32 -> Q4_0 on token_embd loaded and gave NaN logits)
    # (Q4_0 needs rows of 32: that case is in layout_cases, on a base with n_embd 32)
    edit("attn_q_type_f32_to_f16", "parse", r"gap of \d+ bytes after tensor 'blk\.0\.attn_q\.weight' \(F16", lambda d: _retype(d, "blk.0.attn_q.weight", T_F16))
    edit("attn_q_shape_grown", "parse", r"tensor 'blk\.0\.attn_k\.weight'.*overlaps tensor 'blk\.0\.attn_q\.weight' \(F32 \[16, 32\]",
         lambda d: setattr(d.tensor("blk.0.attn_q.weight"), "dims", [16, 32]))
    edit("tensor_infos_swapped", "parse", r"overlaps|gap", lambda d: _swap(d, "blk.0.attn_k.weight", "blk.0.attn_v.weight"))
    edit("rope_freqs_wrong_len", "model", r"rope_freqs\.weight.*has shape", lambda d: _add_tensor(d, "rope_freqs.weight", [5]))
    # --- tokenizer ---
    edit("tokens_wrong_type_u32", "vocab", r"tokenizer\.ggml\.tokens.*array of strings", lambda d: d.set_kv("tokenizer.ggml.tokens", ARR, (U32, list(range(32)))))
    edit("tokens_not_array", "vocab", r"tokenizer\.ggml\.tokens.*array of strings", lambda d: d.set_kv("tokenizer.ggml.tokens", STR, "abc"))
    edit("tokens_nested", "vocab", r"tokenizer\.ggml\.tokens.*array of strings", lambda d: d.set_kv("tokenizer.ggml.tokens", ARR, (ARR, [(STR, ["a"])] * 32)))
    edit("tokens_empty", "vocab", r"vocabulary is empty", lambda d: d.set_kv("tokenizer.ggml.tokens", ARR, (STR, [])))
    edit("scores_wrong_type", "vocab", r"tokenizer\.ggml\.scores.*float32", lambda d: d.set_kv("tokenizer.ggml.scores", ARR, (STR, ["x"] * 32)))
    edit("scores_scalar", "vocab", r"tokenizer\.ggml\.scores.*float32", lambda d: d.set_kv("tokenizer.ggml.scores", F32, 1.0))
    edit("scores_short", "vocab", r"scores.*entries", lambda d: d.set_kv("tokenizer.ggml.scores", ARR, (F32, [0.0] * 31)))
    edit("scores_long", "vocab", r"scores.*entries", lambda d: d.set_kv("tokenizer.ggml.scores", ARR, (F32, [0.0] * 33)))
    edit("token_type_floats", "vocab", r"token_type.*int32", lambda d: d.set_kv("tokenizer.ggml.token_type", ARR, (F32, [1.0] * 32)))
    edit("token_type_strings", "vocab", r"token_type.*int32", lambda d: d.set_kv("tokenizer.ggml.token_type", ARR, (STR, ["1"] * 32)))
    edit("token_type_short", "vocab", r"token_type.*entries", lambda d: d.set_kv("tokenizer.ggml.token_type", ARR, (I32, [1] * 3)))
    edit("token_type_out_of_range", "vocab", r"token_type.*valid", lambda d: d.set_kv("tokenizer.ggml.token_type", ARR, (I32, [1] * 31 + [99])))
    edit("token_type_u64_huge", "vocab", r"token_type.*(valid|out of range)", lambda d: d.set_kv("tokenizer.ggml.token_type", ARR, (U64, [1] * 31 + [2**64 - 1])))
    edit("byte_token_bad_text", "vocab", r"type BYTE", lambda d: d.set_kv("tokenizer.ggml.token_type", ARR, (I32, [2, 3, 3] + [6] * 29)))
    for key in ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id", "eot_token_id", "eom_token_id"):
        edit(f"{key}_too_big", "vocab", rf"{key}.*out of range", lambda d, k=key: d.set_kv("tokenizer.ggml." + k, U32, 32))
        edit(f"{key}_negative", "vocab", rf"{key}.*out of range", lambda d, k=key: d.set_kv("tokenizer.ggml." + k, I32, -1))
        edit(f"{key}_u64_max", "vocab", rf"{key}.*out of range", lambda d, k=key: d.set_kv("tokenizer.ggml." + k, U64, 2**64 - 1))
    edit("bos_token_id_string", "vocab", r"bos_token_id.*integer", lambda d: d.set_kv("tokenizer.ggml.bos_token_id", STR, "1"))
    edit("bos_token_id_array", "vocab", r"bos_token_id.*integer", lambda d: d.set_kv("tokenizer.ggml.bos_token_id", ARR, (U32, [1])))
    edit("tokenizer_model_unknown", "vocab", r"tokenizer model 'wordpiece' is not supported", lambda d: d.set_kv("tokenizer.ggml.model", STR, "wordpiece"))
    edit("tokenizer_model_invalid_utf8", "vocab", r"tokenizer model .* is not supported", lambda d: d.set_kv("tokenizer.ggml.model", STR, b"ll\xffama"))
    edit("gpt2_merges_invalid_utf8", "vocab", r"merge 0 .*not a token", lambda d: (d.set_kv("tokenizer.ggml.model", STR, "gpt2"), d.set_kv("tokenizer.ggml.merges", ARR, (STR, [b"\xff\xfe \xc3"]))))
    edit("tokenizer_model_int", "vocab", r"tokenizer\.ggml\.model.*string", lambda d: d.set_kv("tokenizer.ggml.model", U32, 1))
    edit("tokenizer_missing", "vocab", r"tokenizer\.ggml\.model is missing", lambda d: d.del_kv("tokenizer.ggml.model"))
    edit("gpt2_without_merges", "vocab", r"merges is missing", lambda d: d.set_kv("tokenizer.ggml.model", STR, "gpt2"))
    edit("gpt2_merges_unknown_token", "vocab", r"merge 0 .*not a token", lambda d: (d.set_kv("tokenizer.ggml.model", STR, "gpt2"), d.set_kv("tokenizer.ggml.merges", ARR, (STR, ["zz qq"]))))
    edit("gpt2_merges_no_space", "vocab", r"merge 0 .*not of the form", lambda d: (d.set_kv("tokenizer.ggml.model", STR, "gpt2"), d.set_kv("tokenizer.ggml.merges", ARR, (STR, ["ab"]))))
    edit("gpt2_merges_empty_string", "vocab", r"merge 0 .*not of the form", lambda d: (d.set_kv("tokenizer.ggml.model", STR, "gpt2"), d.set_kv("tokenizer.ggml.merges", ARR, (STR, [""]))))
    edit("gpt2_merges_wrong_type", "vocab", r"merges.*array of strings", lambda d: (d.set_kv("tokenizer.ggml.model", STR, "gpt2"), d.set_kv("tokenizer.ggml.merges", ARR, (U32, [1, 2]))))
    edit("gpt2_pre_unknown", "vocab", r"pre-tokenizer 'nope'", lambda d: (d.set_kv("tokenizer.ggml.model", STR, "gpt2"), d.set_kv("tokenizer.ggml.pre", STR, "nope"), d.set_kv("tokenizer.ggml.merges", ARR, (STR, [])),))
    edit("add_bos_without_bos", "vocab", r"add_bos_token", lambda d: (d.set_kv("tokenizer.ggml.model", STR, "gpt2"), d.set_kv("tokenizer.ggml.merges", ARR, (STR, [])), d.del_kv("tokenizer.ggml.bos_token_id"), d.set_kv("tokenizer.ggml.add_bos_token", BOOL, 1)))
    edit("info_garbled_types", "model", r"expected an integer", lambda d: (
        d.set_kv(A + "attention.head_count", STR, "2"), d.set_kv(A + "embedding_length", F32, 16.0),
        d.set_kv("tokenizer.chat_template", U32, 5), d.set_kv("general.name", ARR, (U32, [1])),
        d.set_kv(A + "rope.freq_base", STR, "x"), d.set_kv("tokenizer.ggml.eos_token_id", F32, 2.0),
        d.set_kv("general.file_type", STR, "q4"), d.set_kv("tokenizer.ggml.add_bos_token", STR, "yes")))
    edit("more_tokens_than_embd_rows", "model", r"tokenizer has 40 tokens but token_embd\.weight has only 32", lambda d: _grow_vocab(d, 40))
    return C


def _reshape(d: Doc, name: str, dims: List[int]) -> None:
    t = d.tensor(name)
    n_old = 1
    for x in t.dims:
        n_old *= x
    n_new = 1
    for x in dims:
        n_new *= x
    assert n_new <= n_old, (name, dims)
    t.dims = list(dims)
    _relayout(d)


def _tensor_nbytes(t: TensorRec) -> int:
    import gguf  # gguf-py's type table: (block size, bytes per block)

    bs, ts = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(t.ttype)]
    n = 1
    for x in t.dims:
        n *= x
    return n // bs * ts


def _relayout(d: Doc) -> None:
    """Rewrite offsets and data so the file obeys the layout rule again after a tensor shrank
    (each keeps the first bytes of its old data): the case then fails on the shape check it is
    about, not on the layout."""
    data = b""
    for t in d.tensors:
        n = _tensor_nbytes(t)
        chunk = d.data[t.offset : t.offset + n]
        t.offset = len(data)
        data += chunk + b"\0" * ((-len(chunk)) % d.alignment)
    d.data = data


def _swap(d: Doc, a: str, b: str) -> None:
    """Swap two tensor infos (names and offsets move together: the infos are out of data order)."""
    ia, ib = d.tensors.index(d.tensor(a)), d.tensors.index(d.tensor(b))
    d.tensors[ia], d.tensors[ib] = d.tensors[ib], d.tensors[ia]


def _rename(d: Doc, name: str, new: Optional[str], add_extra: bool = False) -> None:
    if add_extra:  # a copy of blk.0.attn_norm named blk.1.attn_norm pointing at the same bytes' size elsewhere
        src = d.tensor("blk.0.attn_norm.weight")
        _add_tensor(d, "blk.1.attn_norm.weight", list(src.dims))
        return
    d.tensor(name).name = new.encode()


def _retype(d: Doc, name: str, ttype: int, dims_scale: int = 1) -> None:
    t = d.tensor(name)
    t.ttype = ttype
    if dims_scale != 1:
        t.dims = [t.dims[0] * dims_scale] + t.dims[1:]


def _add_tensor(d: Doc, name: str, dims: List[int]) -> None:
    n = 1
    for x in dims:
        n *= x
    pad = (-len(d.data)) % d.alignment
    off = len(d.data) + pad
    d.data = d.data + b"\0" * pad + struct.pack("<f", 1.0) * n
    d.tensors.append(TensorRec(name.encode(), list(dims), T_F32, off))


def _grow_vocab(d: Doc, n: int) -> None:
    _, toks = d.get_kv_array("tokenizer.ggml.tokens")
    toks = toks + [f"extra{i}".encode() for i in range(n - len(toks))]
    d.set_kv("tokenizer.ggml.tokens", ARR, (STR, toks))
    d.set_kv("tokenizer.ggml.scores", ARR, (F32, [0.0] * n))
    d.set_kv("tokenizer.ggml.token_type", ARR, (I32, [1] * n))


def layout_cases(base32: bytes) -> List[Case]:
    """Type-field mutations on a valid model with n_embd 32 (rows a Q4_0 block long). Before the
    layout check, token_embd.weight F32 -> Q4_0 loaded and gave NaN logits."""
    C = []
    for name, tt, type_name in [("q4_0", T_Q4_0, "Q4_0"), ("q8_0", T_Q8_0, "Q8_0")]:
        d = Doc.parse(base32)
        _retype(d, "token_embd.weight", tt)
        C.append(Case(f"token_embd_type_f32_to_{name}", d.to_bytes(), "parse",
                      rf"tensor 'blk\.0\.attn_norm\.weight'.*gap of \d+ bytes after tensor 'token_embd\.weight' \({type_name} \[32, 32\]"))
    return C


def all_cases(base_dir: str) -> List[Case]:
    base = small_model_bytes(base_dir)
    return parse_cases() + model_cases(base) + layout_cases(small_model_bytes(base_dir, n_embd=32))


def write_case(case: Case, directory: str) -> str:
    path = os.path.join(directory, case.name + (".gguf" if case.kind != "dir" else ".d"))
    if case.kind == "dir":
        os.makedirs(path, exist_ok=True)
    elif case.kind == "file":
        with open(path, "wb") as f:
            f.write(case.data or b"")
    return path


# ---------------------------------------------------------------------------------------------
# Runner: loads files through the public API in a child process, one JSON line per attempt, so a
# crash (signal) kills only the child and the parent can say which file did it.
#   python tests/crafted_files.py cases DIR NAME...      every API on DIR/NAME(.gguf|.d)
#   python tests/crafted_files.py truncate FILE START STOP VALID_FROM
# ---------------------------------------------------------------------------------------------

APIS = ("gguf", "llama", "vocab", "info")


def _attempt(api: str, path: str) -> dict:
    import contextlib
    import io

    import edgellama

    res: dict = {"api": api}
    try:
        if api == "gguf":
            f = edgellama.GGUFFile(path)
            _ = f.metadata, f.tensors, f.metadata_types
        elif api == "llama":
            llm = edgellama.Llama(path, n_ctx=32, n_threads=1)
            toks = llm.tokenize(b"hello world")[:8] or [0]
            llm.eval(toks)
            llm.detokenize(toks)
            llm.close()
        elif api == "vocab":
            llm = edgellama.Llama(path, vocab_only=True)
            toks = llm.tokenize("hello <s> world \u00e9\U0001F600", special=True)
            llm.detokenize(toks)
            llm.detokenize(list(range(llm.n_vocab())), special=True)
            llm.close()
        elif api == "info":
            from edgellama import cli

            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = cli.main(["info", path])
            res.update(ok=rc == 0, rc=rc, msg=err.getvalue())
            return res
        res["ok"] = True
    except BaseException as e:  # noqa: BLE001 - we report whatever happened
        res.update(ok=False, exc=type(e).__name__, value_error=isinstance(e, ValueError),
                   os_error=isinstance(e, OSError), msg=str(e))
    return res


def _main(argv: List[str]) -> int:
    import json
    import sys

    mode = argv[0]
    out = sys.stdout
    if mode == "cases":
        directory = argv[1]
        for name in argv[2:]:
            path = os.path.join(directory, name)
            for api in APIS:
                print(json.dumps({"start": name, "api": api}), file=out, flush=True)
                r = _attempt(api, path)
                r["case"] = name
                print(json.dumps(r), file=out, flush=True)
        return 0
    if mode == "truncate":
        src, start, stop, valid_from = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
        with open(src, "rb") as f:
            buf = f.read()
        tmp = src + f".trunc{start}"
        bad = []
        for n in range(start, stop):
            with open(tmp, "wb") as f:
                f.write(buf[:n])
            print(json.dumps({"start": n}), file=out, flush=True)
            for api in ("gguf", "llama", "vocab"):
                r = _attempt(api, tmp)
                if r["ok"]:
                    if n < valid_from:
                        bad.append(f"{n}: {api} loaded a file truncated to {n} bytes")
                elif not (r.get("value_error") or r.get("os_error")):
                    bad.append(f"{n}: {api} raised {r.get('exc')}: {r.get('msg')}")
                elif not r.get("msg"):
                    bad.append(f"{n}: {api} raised {r.get('exc')} without a message")
        os.unlink(tmp)
        print(json.dumps({"done": stop - start, "bad": bad}), file=out, flush=True)
        return 0
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    raise SystemExit(_main(sys.argv[1:]))
