"""Prompt caches: saved `LlamaState`s keyed by the tokens they hold. ``Llama.set_cache(cache)``
makes completions start from the saved state whose tokens are the longest prefix of the new prompt
(so only the rest is evaluated), and save the state after each completion.

`LlamaRAMCache` keeps states in memory (least recently used dropped beyond ``capacity_bytes``);
`LlamaDiskCache` keeps them as files in a directory (one file per state, found again by a later
process), also bounded by ``capacity_bytes``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from .generation import _common_prefix as _prefix_len
from .llama_state import LlamaState

__all__ = ["BaseLlamaCache", "LlamaRAMCache", "LlamaDiskCache", "LlamaCache"]


def _state_bytes(state: LlamaState) -> int:
    return len(state.llama_state) + state.scores.nbytes + state.input_ids.nbytes


class BaseLlamaCache(ABC):
    """A map from token tuples to states; lookups match the longest prefix of the key."""

    def __init__(self, capacity_bytes: int = (2 << 30)):
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes

    @property
    @abstractmethod
    def cache_size(self) -> int:
        """Bytes held."""

    @abstractmethod
    def _keys(self) -> Sequence[Tuple[int, ...]]:
        ...

    def _find_longest_prefix_key(self, key: Tuple[int, ...]) -> Optional[Tuple[int, ...]]:
        best, best_len = None, 0
        for k in self._keys():
            n = _prefix_len(k, key)
            if n > best_len:
                best, best_len = k, n
        return best

    @abstractmethod
    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        ...

    def __contains__(self, key: Sequence[int]) -> bool:
        return self._find_longest_prefix_key(tuple(key)) is not None

    @abstractmethod
    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        ...


class LlamaRAMCache(BaseLlamaCache):
    """States in memory, least recently used evicted first."""

    def __init__(self, capacity_bytes: int = (2 << 30)):
        super().__init__(capacity_bytes)
        self.cache_state: "OrderedDict[Tuple[int, ...], LlamaState]" = OrderedDict()

    @property
    def cache_size(self) -> int:
        return sum(_state_bytes(s) for s in self.cache_state.values())

    def _keys(self):
        return list(self.cache_state.keys())

    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        k = self._find_longest_prefix_key(tuple(key))
        if k is None:
            raise KeyError("no cached state shares a prefix with these tokens")
        self.cache_state.move_to_end(k)
        return self.cache_state[k]

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        key = tuple(key)
        self.cache_state.pop(key, None)
        self.cache_state[key] = value
        while self.cache_size > self.capacity_bytes and len(self.cache_state) > 0:
            self.cache_state.popitem(last=False)


class LlamaDiskCache(BaseLlamaCache):
    """States as files under ``cache_dir``: ``<sha256 of the tokens>.state`` holding the pickled
    (tokens, state). The directory is the index, so another process (or a later run) finds them;
    the oldest files (by modification time) are removed beyond ``capacity_bytes``."""

    def __init__(self, cache_dir: str = ".cache/llama_cache", capacity_bytes: int = (2 << 30)):
        super().__init__(capacity_bytes)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._index: Dict[Tuple[int, ...], Path] = {}
        for f in self.cache_dir.glob("*.state"):
            try:
                with open(f, "rb") as fh:
                    self._index[tuple(pickle.load(fh))] = f
            except Exception:  # a file another process is writing, or not ours: not an entry
                continue

    @property
    def cache_size(self) -> int:
        return sum(f.stat().st_size for f in self._index.values() if f.exists())

    def _keys(self):
        return [k for k, f in self._index.items() if f.exists()]

    def _file(self, key: Tuple[int, ...]) -> Path:
        h = hashlib.sha256(",".join(map(str, key)).encode()).hexdigest()
        return self.cache_dir / f"{h}.state"

    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        k = self._find_longest_prefix_key(tuple(key))
        if k is None:
            raise KeyError("no cached state shares a prefix with these tokens")
        f = self._index[k]
        with open(f, "rb") as fh:
            pickle.load(fh)  # the key
            state = pickle.load(fh)
        os.utime(f)  # recently used
        return state

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        key = tuple(int(t) for t in key)
        final = self._file(key)
        # write to a temporary file and rename: a reader never sees half a state
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(list(key), fh)
                pickle.dump(value, fh)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._index[key] = final
        files = sorted((f for f in self._index.values() if f.exists()), key=lambda f: f.stat().st_mtime)
        total = sum(f.stat().st_size for f in files)
        for f in files:
            if total <= self.capacity_bytes or f == final:
                continue
            total -= f.stat().st_size
            f.unlink(missing_ok=True)
        self._index = {k: f for k, f in self._index.items() if f.exists()}


LlamaCache = LlamaRAMCache  # llama-cpp-python's old name, still exported there
