"""Read safetensors files without torch: parse the JSON header, memory-map the data with NumPy."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from .errors import ConversionError

# dtype name -> (numpy dtype of the stored bytes, bytes per element)
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # converted with a 16-bit shift
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("u1"),
}

_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsFile:
    """One .safetensors file. tensors: name -> (dtype name, shape, begin, end) relative to data start."""

    def __init__(self, path: "str | os.PathLike[str]"):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise ConversionError(f"{self.path}: truncated safetensors file (no header length)")
                (n,) = struct.unpack("<Q", head)
                if n > _MAX_HEADER or 8 + n > size:
                    raise ConversionError(
                        f"{self.path}: truncated or corrupt safetensors file (header of {n} bytes, file of {size})"
                    )
                raw = f.read(n)
        except OSError as e:
            raise ConversionError(f"{self.path}: cannot read safetensors file: {e}") from e
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConversionError(f"{self.path}: corrupt safetensors header: {e}") from e
        if not isinstance(header, dict):
            raise ConversionError(f"{self.path}: corrupt safetensors header (not a JSON object)")
        self.metadata = header.pop("__metadata__", None) or {}
        self.data_start = 8 + n
        self.data_size = size - self.data_start
        self.tensors: Dict[str, Tuple[str, Tuple[int, ...], int, int]] = {}
        for name, info in header.items():
            try:
                dtype = info["dtype"]
                shape = tuple(int(s) for s in info["shape"])
                begin, end = (int(v) for v in info["data_offsets"])
            except (KeyError, TypeError, ValueError) as e:
                raise ConversionError(f"{self.path}: corrupt safetensors entry for tensor {name!r}") from e
            if dtype not in _DTYPES:
                raise ConversionError(f"{self.path}: tensor {name!r} has unsupported dtype {dtype}")
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if end - begin != count * _DTYPES[dtype].itemsize or begin < 0:
                raise ConversionError(
                    f"{self.path}: tensor {name!r}: {end - begin} bytes do not hold shape {list(shape)} of {dtype}"
                )
            if end > self.data_size:
                raise ConversionError(
                    f"{self.path}: truncated safetensors file: tensor {name!r} ends at byte {self.data_start + end}, "
                    f"the file has {size}"
                )
            self.tensors[name] = (dtype, shape, begin, end)
        self._map = None

    def _mapped(self) -> np.ndarray:
        if self._map is None:
            if self.data_size == 0:
                self._map = np.zeros(0, dtype=np.uint8)
            else:
                self._map = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self.data_start, shape=(self.data_size,))
        return self._map

    def dtype(self, name: str) -> str:
        return self.tensors[name][0]

    def shape(self, name: str) -> Tuple[int, ...]:
        return self.tensors[name][1]

    def raw(self, name: str) -> np.ndarray:
        """The stored elements as a read-only view (BF16 as uint16)."""
        dtype, shape, begin, end = self.tensors[name]
        return self._mapped()[begin:end].view(_DTYPES[dtype]).reshape(shape)

    def float32(self, name: str) -> np.ndarray:
        """The tensor as float32 (a new array)."""
        dtype = self.tensors[name][0]
        a = self.raw(name)
        if dtype == "BF16":
            return (a.astype(np.uint32) << 16).view(np.float32)
        return a.astype(np.float32)
