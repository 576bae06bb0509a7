"""gguf-py's GGUFWriter with metadata arrays packed in bulk.

GGUFWriter packs an array value by value in Python (struct.pack per element, bytearray appends):
the 49152 tokens, token types and 48900 merges of a SmolLM2 vocabulary take ~0.3 s, more than the
model's whole Q8_0 quantization on two cores. Here numeric arrays go through one NumPy conversion
and string arrays through one bytes.join; the bytes are the same as GGUFWriter's (tests compare
them value type by value type). Anything this fast path is not sure to pack identically (big-endian
files, arrays without a declared element type, values out of the element type's range, non-numbers)
is handed to GGUFWriter's own packing, which keeps its checks and its error messages.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO, Optional

import numpy as np
from gguf import GGUFEndian, GGUFValueType, GGUFWriter
from gguf.gguf_writer import WriterState

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


class FastGGUFWriter(GGUFWriter):
    """GGUFWriter whose metadata arrays are packed in bulk (identical bytes)."""

    def use_open_file(self, fout: BinaryIO) -> None:
        """Write to this already open file when the header is written, instead of opening `path`
        (GGUFWriter opens it with mode "wb", whose O_TRUNC makes ext4 write the whole file back when
        it is closed, ~50 ms of a 140 MB Q8_0 run; see atomic_replace.py)."""
        self._open_file = fout

    def open_output_file(self, path: Optional[Path] = None) -> None:
        given = getattr(self, "_open_file", None)
        if given is not None and self.state is WriterState.NO_FILE and (path is None or Path(path) == self.path):
            self.fout = [given]
            self.state = WriterState.EMPTY
            return
        super().open_output_file(path)

    def _pack_val(self, val: Any, vtype: GGUFValueType, add_vtype: bool, sub_type: GGUFValueType | None = None) -> bytes:
        if (vtype == GGUFValueType.ARRAY and sub_type is not None and self.endianess == GGUFEndian.LITTLE
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
        return super()._pack_val(val, vtype, add_vtype, sub_type)
