"""The GGUF writer of `edgellama quantize` and the converters: gguf-py's GGUFWriter's file format and
bytes, without importing gguf-py, with metadata arrays packed in bulk.

GGUFWriter packs an array value by value in Python (struct.pack per element, bytearray appends):
the 49152 tokens, token types and 48900 merges of a SmolLM2 vocabulary take ~0.3 s, more than the
model's whole Q8_0 quantization on two cores. Here numeric arrays go through one NumPy conversion
and string arrays through one bytes.join; the bytes are the same as GGUFWriter's (tests compare
them value type by value type, and whole files). Anything this fast path is not sure to pack
identically (arrays without a declared element type, values out of the element type's range,
non-numbers) goes through a value-by-value packing that is GGUFWriter's own, with its checks and
its exceptions. And `import gguf` alone costs ~35 ms, 5 % of a SmolLM2 Q8_0 run (issue 17): the
type ids come from gguf_types.py.

Layout (GGUF v3, little-endian, what GGUFWriter writes for one file): header (magic, version, tensor
count, key count), the keys (general.architecture first, then in the order added; adding a key
again replaces its value in place), the tensor infos (name, dims innermost first, type, offset from
the data start), then each tensor's data, padded before and after to the 32-byte alignment.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Dict, Optional, Tuple

import numpy as np

from .gguf_types import GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GGMLQuantizationType, GGUFValueType

# GGUF array element type -> its little-endian NumPy dtype
_NUMERIC = {
    GGUFValueType.UINT8: np.dtype("<u1"),
    GGUFValueType.INT8: np.dtype("<i1"),
    GGUFValueType.UINT16: np.dtype("<u2"),
    GGUFValueType.INT16: np.dtype("<i2"),
    GGUFValueType.UINT32: np.dtype("<u4"),
    GGUFValueType.INT32: np.dtype("<i4"),
    GGUFValueType.UINT64: np.dtype("<u8"),
    GGUFValueType.INT64: np.dtype("<i8"),
    GGUFValueType.FLOAT32: np.dtype("<f4"),
    GGUFValueType.FLOAT64: np.dtype("<f8"),
    GGUFValueType.BOOL: np.dtype("?"),
}
_ARRAY_HEAD = struct.Struct("<IIQ")  # value type ARRAY, element type, element count


def _numeric_bytes(val: Any, dtype: np.dtype) -> Optional[bytes]:
    """The elements of `val` as `dtype` (what struct.pack of each element gives), or None where a
    conversion could differ from struct.pack's or where struct.pack would raise."""
    try:
        src = val if isinstance(val, np.ndarray) else np.asarray(val)
    except (ValueError, TypeError):
        return None
    if src.ndim != 1:
        return None
    kind = src.dtype.kind
    if dtype.kind == "b":
        return src.astype(dtype).tobytes() if kind == "b" else None
    if dtype.kind in "iu":
        if kind not in "iub":  # struct.pack refuses floats (and anything else) for integer formats
            return None
        if src.size and kind != "b":
            info = np.iinfo(dtype)
            if int(src.min()) < info.min or int(src.max()) > info.max:
                return None  # struct.pack raises; let it, with its message
        return src.astype(dtype).tobytes()
    # float32 / float64: struct.pack rounds a Python float (a double) to nearest, as astype does
    if kind not in "iuf" or (kind in "iu" and src.size and int(np.abs(src).max()) >= 2**53):
        return None  # (a huge int would round through a double in struct.pack, directly here)
    with np.errstate(over="ignore", invalid="ignore"):
        out = src.astype(dtype)
    if dtype.itemsize == 4 and src.size and bool(np.any(np.isinf(out) & np.isfinite(src))):
        return None  # struct.pack("<f") raises OverflowError for a finite value beyond float32
    return out.tobytes()


def _string_bytes(val: Any) -> Optional[bytes]:
    """GGUF strings (u64 length, then the UTF-8 bytes) back to back, or None if an item is neither
    str nor bytes."""
    items = val if isinstance(val, list) else list(val)
    kinds = set(map(type, items))
    if kinds <= {str}:  # a vocabulary: one C-level pass to encode
        encoded = list(map(str.encode, items))
    elif kinds <= {str, bytes, bytearray}:
        encoded = [item.encode("utf-8") if type(item) is str else item for item in items]
    else:  # subclasses and other types: checked one by one
        encoded = [item.encode("utf-8") if isinstance(item, str) else item for item in items]
        if not all(isinstance(item, (bytes, bytearray)) for item in encoded):
            return None
    # Lengths and bytes interleaved with NumPy instead of a struct.pack per string (a 49k-token
    # vocabulary and its merges: ~35 ms -> ~15 ms): each string's 8 length bytes go where is_head
    # is set, the joined UTF-8 bytes fill the rest in order.
    n = len(encoded)
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    payload = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    head = np.arange(0, 8 * n, 8, dtype=np.int64)
    head[1:] += np.cumsum(lengths[:-1])
    is_head = np.zeros(8 * n + payload.size, dtype=bool)
    is_head[(head[:, None] + np.arange(8)).ravel()] = True
    out = np.empty(is_head.size, dtype=np.uint8)
    out[is_head] = lengths.astype("<u8").view(np.uint8)
    out[~is_head] = payload
    return out.tobytes()


class FastGGUFWriter:
    """Writes one GGUF file: add keys and tensor infos, write the header, keys and infos
    (write_header_to_file, write_kv_data_to_file, write_ti_data_to_file), then each tensor's data
    in the order its info was added (write_tensor_data), then close()."""

    # scalar value type -> struct format (BOOL without the "<" prefix, as GGUFWriter packs it)
    _SCALAR = {
        GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
        GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f",
        GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d", GGUFValueType.BOOL: "?",
    }

    def __init__(self, path: "str | Path | None", arch: str) -> None:
        self.path = Path(path) if path else None
        self.arch = arch
        self.data_alignment = GGUF_DEFAULT_ALIGNMENT
        self.fout: Optional[BinaryIO] = None
        self._given: Optional[BinaryIO] = None
        self._kv: Dict[str, Tuple[Any, GGUFValueType, Optional[GGUFValueType]]] = {}
        self._tensors: Dict[str, Tuple[Tuple[int, ...], int, int]] = {}  # name -> (NumPy-order shape, type id, nbytes)
        self._to_write: "list[Tuple[str, int]]" = []  # tensor data not written yet, in file order
        self._pos = 0  # bytes written so far
        self.add_key_value("general.architecture", arch, GGUFValueType.STRING)

    # -- what goes in the file -----------------------------------------------------------------
    def add_key_value(self, key: str, val: Any, vtype: GGUFValueType, sub_type: Optional[GGUFValueType] = None) -> None:
        self._kv[key] = (val, vtype, sub_type)

    def add_file_type(self, ftype: int) -> None:
        self.add_key_value("general.file_type", ftype, GGUFValueType.UINT32)

    def add_quantization_version(self, version: int) -> None:
        self.add_key_value("general.quantization_version", version, GGUFValueType.UINT32)

    def add_tensor_info(self, name: str, shape: "Sequence[int]", ggml_type: GGMLQuantizationType, nbytes: int) -> None:
        """`shape` in NumPy order (rows first), in elements."""
        if self.fout is not None:
            raise ValueError("tensor infos must all be added before the header is written")
        if name in self._tensors:
            raise ValueError(f"Duplicated tensor name {name!r}")
        self._tensors[name] = (tuple(int(d) for d in shape), int(ggml_type), int(nbytes))
        self._to_write.append((name, int(nbytes)))

    def use_open_file(self, fout: BinaryIO) -> None:
        """Write to this already open file instead of opening `path` with mode "wb": its O_TRUNC
        makes ext4 write the whole file back when it is closed, ~50 ms of a 140 MB Q8_0 run (see
        atomic_replace.py)."""
        self._given = fout

    # -- writing ---------------------------------------------------------------------------------
    def write_header_to_file(self, path: "str | Path | None" = None) -> None:
        if self.fout is not None:
            raise ValueError("the header is already written")
        if path is not None:
            self.path = Path(path)
        if self._given is not None:
            self.fout = self._given
        elif self.path is not None:
            self.fout = open(self.path, "wb")
        else:
            raise ValueError("no output file: give a path or use_open_file()")
        self._write(struct.pack("<IIQQ", GGUF_MAGIC, GGUF_VERSION, len(self._tensors), len(self._kv)))

    def write_kv_data_to_file(self) -> None:
        parts = []
        for key, (val, vtype, sub_type) in self._kv.items():
            parts.append(self._pack_val(key, GGUFValueType.STRING, add_vtype=False))
            parts.append(self._pack_val(val, vtype, add_vtype=True, sub_type=sub_type))
        self._write(b"".join(parts))

    def write_ti_data_to_file(self) -> None:
        parts = []
        offset = 0
        for name, (shape, type_id, nbytes) in self._tensors.items():
            parts.append(self._pack_val(name, GGUFValueType.STRING, add_vtype=False))
            parts.append(struct.pack(f"<I{len(shape)}QIQ", len(shape), *reversed(shape), type_id, offset))
            offset += _pad(nbytes, self.data_alignment)
        self._write(b"".join(parts))
        self.fout.flush()

    def write_tensor_data(self, tensor: np.ndarray) -> None:
        """The next tensor's bytes (a C-contiguous array of exactly the size its info declared)."""
        if not self._to_write:
            raise ValueError("more tensors written than tensor infos added")
        name, nbytes = self._to_write[0]
        if tensor.nbytes != nbytes:
            raise ValueError(f"tensor {name}: {tensor.nbytes} bytes given, {nbytes} declared")
        self._to_write.pop(0)
        self._write_padding()
        self._write(memoryview(np.ascontiguousarray(tensor)).cast("B"))
        self._write_padding()

    def close(self) -> None:
        if self.fout is not None:
            self.fout.close()
            self.fout = None

    def _write(self, data) -> None:
        self.fout.write(data)
        self._pos += len(data)

    def _write_padding(self) -> None:
        pad = _pad(self._pos, self.data_alignment) - self._pos
        if pad:
            self._write(bytes(pad))

    # -- value packing ---------------------------------------------------------------------------
    def _pack_val(self, val: Any, vtype: GGUFValueType, add_vtype: bool, sub_type: Optional[GGUFValueType] = None) -> bytes:
        if (vtype == GGUFValueType.ARRAY and sub_type is not None
                and not isinstance(val, (str, bytes, bytearray)) and hasattr(val, "__len__") and len(val) > 0):
            if sub_type == GGUFValueType.STRING:
                body = _string_bytes(val)
            elif sub_type in _NUMERIC:
                body = _numeric_bytes(val, _NUMERIC[sub_type])
            else:
                body = None
            if body is not None:
                head = _ARRAY_HEAD.pack(vtype, sub_type, len(val))
                return head + body if add_vtype else head[4:] + body
        return self._pack_one_by_one(val, vtype, add_vtype, sub_type)

    def _pack_one_by_one(self, val: Any, vtype: GGUFValueType, add_vtype: bool, sub_type: Optional[GGUFValueType]) -> bytes:
        # GGUFWriter._pack_val's rules, checks and exceptions (struct.error for a value out of its
        # type's range, ValueError for a malformed array)
        out = bytearray(struct.pack("<I", vtype) if add_vtype else b"")
        fmt = self._SCALAR.get(vtype)
        if fmt is not None:
            out += struct.pack(fmt, val)
        elif vtype == GGUFValueType.STRING:
            encoded = val.encode("utf-8") if isinstance(val, str) else val
            out += struct.pack("<Q", len(encoded))
            out += encoded
        elif vtype == GGUFValueType.ARRAY:
            if not isinstance(val, Sequence):
                raise ValueError("Invalid GGUF metadata array, expecting sequence")
            if len(val) == 0:
                raise ValueError("Invalid GGUF metadata array. Empty array")
            if sub_type is not None:
                item_type = sub_type
            elif isinstance(val, bytes):
                item_type = GGUFValueType.UINT8
            else:
                item_type = _value_type_of(val[0])
                if not all(_value_type_of(v) is item_type for v in val[1:]):
                    raise ValueError("All items in a GGUF array should be of the same type")
            out += struct.pack("<IQ", item_type, len(val))
            for item in val:
                out += self._pack_one_by_one(item, item_type, False, None)
        else:
            raise ValueError("Invalid GGUF metadata value type or value")
        return bytes(out)


def _pad(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def _value_type_of(val: Any) -> GGUFValueType:
    """The element type GGUFWriter infers for an array given without one (GGUFValueType.get_type)."""
    if isinstance(val, (str, bytes, bytearray)):
        return GGUFValueType.STRING
    if isinstance(val, list):
        return GGUFValueType.ARRAY
    if isinstance(val, float):
        return GGUFValueType.FLOAT32
    if isinstance(val, bool):
        return GGUFValueType.BOOL
    if isinstance(val, int):
        return GGUFValueType.INT32
    raise ValueError(f"Unknown type: {type(val)}")
