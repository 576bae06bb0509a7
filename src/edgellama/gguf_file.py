"""Read-only view of a GGUF file: metadata and tensor listing, parsed by the C++ reader."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from . import _core


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a GGUF file. ``shape`` is in GGUF (ggml) order: shape[0] is the row length."""

    name: str
    type: str
    shape: Tuple[int, ...]
    type_id: int
    offset: int  # absolute byte offset of the data in the file
    nbytes: int


class GGUFFile:
    """Open and validate a GGUF file.

    >>> f = GGUFFile("model.gguf")
    >>> f.metadata["general.architecture"]
    'llama'
    >>> f.tensors[0].name, f.tensors[0].type, f.tensors[0].shape
    """

    def __init__(self, path: "str | os.PathLike[str]"):
        self.path = os.fspath(path)
        self._file = _core.GGUFFile(self.path)
        self._metadata: Dict[str, Any] | None = None
        self._tensors: List[TensorInfo] | None = None

    @property
    def version(self) -> int:
        return self._file.version

    @property
    def alignment(self) -> int:
        return self._file.alignment

    @property
    def metadata(self) -> Dict[str, Any]:
        if self._metadata is None:
            self._metadata = self._file.metadata_dict()
        return self._metadata

    @property
    def metadata_types(self) -> Dict[str, str]:
        return self._file.metadata_types()

    @property
    def tensors(self) -> List[TensorInfo]:
        if self._tensors is None:
            self._tensors = [TensorInfo(*row) for row in self._file.tensor_list()]
        return self._tensors

    def __repr__(self) -> str:
        return f"GGUFFile({self.path!r}, version={self.version}, {len(self.metadata)} keys, {len(self.tensors)} tensors)"
