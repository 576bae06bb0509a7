"""llama.cpp importance-matrix files ("imatrix"): read both formats, write both formats.

An importance matrix holds, per matmul weight, the sum of the squared input activations of each
column over a calibration text, and how many input rows (tokens) went into the sum. The quantizer
weights every column's rounding error by the mean (sum / count), so columns that carry large
activations are rounded more carefully.

Formats (as llama.cpp's tools/imatrix/imatrix.cpp and common/imatrix-loader.cpp read/write them):

GGUF (current llama-imatrix output, any name; ".gguf" by convention)
    metadata: general.type = "imatrix", imatrix.datasets = [str], imatrix.chunk_count = u32,
              imatrix.chunk_size = u32 (tokens per chunk). llama-quantize refuses a GGUF
              imatrix without these three imatrix.* keys.
    tensors, per weight NAME: "NAME.in_sum2" F32 (ne0 = columns, ne1 = n_mat) raw sums of squares,
              "NAME.counts" F32 (ne0 = 1, ne1 = n_mat) rows seen. n_mat > 1 only for MoE expert
              stacks (one sum per expert).
legacy ".dat" (llama-imatrix --output-format dat), little-endian:
    int32 n_entries; per entry: int32 name_len, name bytes, int32 ncall, int32 nval,
    float32[nval] values = (sum / count) * ncall; then optionally int32 chunk_count,
    int32 dataset_len, dataset bytes. ncall is the number of chunks (ceil(count / chunk_size)),
    so the mean is values / ncall.

Which one a file is follows its first four bytes ("GGUF"), as in llama.cpp; when writing, a name
ending in ".dat" gives the legacy format and anything else GGUF (llama-imatrix's default).
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "ImatrixError",
    "ImatrixEntry",
    "Imatrix",
    "read_imatrix",
    "write_imatrix",
    "importance_for_model",
]

# Sanity bounds for the legacy format, which has no magic number: a random or wrong file must be
# reported as "not an imatrix", never make us allocate gigabytes.
_MAX_NAME_BYTES = 4096
_MAX_ENTRIES = 1 << 20

_SUM_SUFFIX = ".in_sum2"
_COUNT_SUFFIX = ".counts"


class ImatrixError(ValueError):
    """An importance-matrix file that cannot be read or does not fit the model (the message names
    the file and, where there is one, the tensor)."""


@dataclass
class ImatrixEntry:
    """One weight's statistics. sums: float64 (n_mat, n_cols) sums of squared inputs per column;
    counts: float64 (n_mat,) input rows (tokens) summed. n_mat is 1 except for MoE expert stacks."""

    sums: np.ndarray
    counts: np.ndarray

    @property
    def n_cols(self) -> int:
        return int(self.sums.shape[1])

    @property
    def n_mat(self) -> int:
        return int(self.sums.shape[0])

    def mean(self) -> np.ndarray:
        """float32 (n_mat, n_cols) mean squared activation; a matrix that saw no rows gets 1 per
        column (no preference), as llama-quantize does."""
        out = np.ones(self.sums.shape, dtype=np.float64)
        seen = self.counts > 0
        out[seen] = self.sums[seen] / self.counts[seen, None]
        return out.astype(np.float32)


@dataclass
class Imatrix:
    entries: Dict[str, ImatrixEntry]
    datasets: List[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0  # tokens per chunk; 0 when unknown (legacy files do not store it)
    legacy: bool = False  # read from / meant for the legacy .dat format


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------


def read_imatrix(path: "str | os.PathLike[str]") -> Imatrix:
    """Read a llama.cpp importance matrix (GGUF or legacy .dat). Raises FileNotFoundError for a
    missing file and ImatrixError (a ValueError) naming the file (and tensor) for anything else."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: importance matrix file not found")
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        return _read_gguf(p)
    return _read_legacy(p)


def _read_gguf(p: Path) -> Imatrix:
    from . import _core
    from .gguf_file import GGUFFile

    try:
        g = GGUFFile(p)  # validates the header and that every tensor lies inside the file
        meta = g.metadata
        tensors = g.tensors
    except _core.GGUFError as e:
        raise ImatrixError(f"{p}: not a readable GGUF importance matrix: {e}") from None
    sums: Dict[str, object] = {}
    counts: Dict[str, object] = {}
    for t in tensors:
        if t.name.endswith(_SUM_SUFFIX):
            sums[t.name[: -len(_SUM_SUFFIX)]] = t
        elif t.name.endswith(_COUNT_SUFFIX):
            counts[t.name[: -len(_COUNT_SUFFIX)]] = t
    if not sums:
        kind = meta.get("general.type") or ("a model" if "general.architecture" in meta else "unknown")
        raise ImatrixError(
            f"{p}: GGUF file is not an importance matrix (general.type={kind!r}, no '*{_SUM_SUFFIX}' tensors)"
        )
    entries: Dict[str, ImatrixEntry] = {}
    with open(p, "rb") as f:

        def load(t) -> np.ndarray:
            if t.type != "F32":
                raise ImatrixError(f"{p}: tensor {t.name} has type {t.type}; an importance matrix stores F32")
            f.seek(t.offset)
            a = np.frombuffer(f.read(t.nbytes), dtype="<f4").astype(np.float64)
            if not np.all(np.isfinite(a)) or np.any(a < 0):
                raise ImatrixError(f"{p}: tensor {t.name} holds negative or non-finite values")
            return a

        for name in sorted(set(sums) | set(counts)):
            if name not in sums or name not in counts:
                missing = _SUM_SUFFIX if name not in sums else _COUNT_SUFFIX
                raise ImatrixError(f"{p}: weight {name} has no '{name}{missing}' tensor (sums and counts come in pairs)")
            s_t, c_t = sums[name], counts[name]
            s, c = load(s_t), load(c_t)
            n_mat = len(c)
            if n_mat == 0 or len(s) == 0 or len(s) % n_mat != 0 or s_t.shape[0] * n_mat != len(s):
                raise ImatrixError(
                    f"{p}: weight {name}: {name}{_SUM_SUFFIX} has shape {list(s_t.shape)} but "
                    f"{name}{_COUNT_SUFFIX} has {n_mat} counts"
                )
            entries[name] = ImatrixEntry(s.reshape(n_mat, -1), np.round(c))
    return Imatrix(
        entries,
        datasets=[str(d) for d in (meta.get("imatrix.datasets") or [])],
        chunk_count=int(meta.get("imatrix.chunk_count", 0) or 0),
        chunk_size=int(meta.get("imatrix.chunk_size", 0) or 0),
        legacy=False,
    )


class _Cursor:
    """Bounds-checked little-endian reads over a byte string, with the file named in errors."""

    def __init__(self, p: Path, data: bytes):
        self.p, self.data, self.pos = p, data, 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.left():
            raise ImatrixError(
                f"{self.p}: truncated or not an importance matrix: {what} needs {n} bytes at offset "
                f"{self.pos}, the file has {self.left()} left"
            )
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def i32(self, what: str) -> int:
        return struct.unpack("<i", self.take(4, what))[0]


def _read_legacy(p: Path) -> Imatrix:
    c = _Cursor(p, p.read_bytes())
    if c.left() < 4:
        raise ImatrixError(f"{p}: empty or truncated importance matrix ({c.left()} bytes)")
    n_entries = c.i32("the entry count")
    if not 1 <= n_entries <= _MAX_ENTRIES:
        raise ImatrixError(
            f"{p}: not an importance matrix (neither GGUF nor llama.cpp's legacy .dat: entry count {n_entries})"
        )
    entries: Dict[str, ImatrixEntry] = {}
    for i in range(n_entries):
        n = c.i32(f"entry {i + 1}'s name length")
        if not 1 <= n <= _MAX_NAME_BYTES:
            raise ImatrixError(f"{p}: not an importance matrix or corrupt: entry {i + 1} has a name of {n} bytes")
        try:
            name = c.take(n, f"entry {i + 1}'s name").decode("utf-8")
        except UnicodeDecodeError:
            raise ImatrixError(f"{p}: not an importance matrix or corrupt: entry {i + 1}'s name is not UTF-8") from None
        ncall = c.i32(f"tensor {name}'s call count")
        nval = c.i32(f"tensor {name}'s value count")
        if ncall < 0 or nval < 1:
            raise ImatrixError(f"{p}: tensor {name}: bad header (ncall={ncall}, nval={nval})")
        vals = np.frombuffer(c.take(4 * nval, f"tensor {name}'s {nval} values"), dtype="<f4").astype(np.float64)
        if not np.all(np.isfinite(vals)) or np.any(vals < 0):
            raise ImatrixError(f"{p}: tensor {name} holds negative or non-finite values")
        if name in entries:
            raise ImatrixError(f"{p}: tensor {name} appears twice")
        # (sum / count) * ncall with counts = ncall gives mean() = values / ncall, as llama-quantize
        # divides; ncall == 0 means the values are the mean already
        entries[name] = ImatrixEntry(vals.reshape(1, -1), np.array([float(ncall or 1)]))
    chunk_count, datasets = 0, []
    if c.left() >= 4:  # optional trailer: chunk count, then the dataset name
        chunk_count = c.i32("the chunk count")
        if c.left() >= 4:
            n = c.i32("the dataset name length")
            if n > 0:
                datasets.append(c.take(n, "the dataset name").decode("utf-8", errors="replace"))
    return Imatrix(entries, datasets=datasets, chunk_count=chunk_count, chunk_size=0, legacy=True)


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------


def write_imatrix(path: "str | os.PathLike[str]", imatrix: Imatrix, *, legacy: Optional[bool] = None) -> Path:
    """Write `imatrix` to `path` in llama.cpp's GGUF format, or its legacy .dat format when
    `legacy` is True (None: when the name ends in ".dat"). Entries are written in name order, as
    llama-imatrix does. The file appears only when complete."""
    out = Path(path)
    if legacy is None:
        legacy = out.suffix.lower() == ".dat"
    out_dir = out.resolve().parent
    if not out_dir.is_dir():
        raise FileNotFoundError(f"{out_dir}: output directory does not exist")
    if not imatrix.entries:
        raise ValueError(f"{out}: no importance statistics to write")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        (_write_legacy if legacy else _write_gguf)(tmp, imatrix)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _write_gguf(tmp: Path, im: Imatrix) -> None:
    from gguf import GGUFWriter, Keys

    w = GGUFWriter(tmp, arch="")
    # GGUFWriter always records general.architecture; llama-imatrix's files have none, and a
    # model-less key is the one thing that could make a reader mistake this file for a model.
    for kv in w.kv_data:
        kv.pop(Keys.General.ARCHITECTURE, None)
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", list(im.datasets))
    w.add_uint32("imatrix.chunk_count", int(im.chunk_count))
    w.add_uint32("imatrix.chunk_size", int(im.chunk_size))
    for name in sorted(im.entries):
        e = im.entries[name]
        sums = np.ascontiguousarray(e.sums, dtype=np.float32)
        counts = np.asarray(e.counts, dtype=np.float32).reshape(e.n_mat, 1)
        if e.n_mat == 1:  # ggml writes a trailing dimension of 1 as no dimension: (cols,), (1,)
            sums, counts = sums.reshape(-1), counts.reshape(-1)
        w.add_tensor(name + _SUM_SUFFIX, sums)
        w.add_tensor(name + _COUNT_SUFFIX, counts)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _write_legacy(tmp: Path, im: Imatrix) -> None:
    chunk = im.chunk_size if im.chunk_size > 0 else 0
    with open(tmp, "wb") as f:
        f.write(struct.pack("<i", len(im.entries)))
        for name in sorted(im.entries):
            e = im.entries[name]
            b = name.encode("utf-8")
            # ncall: chunks this weight saw (ceil, so a weight that saw anything is never 0)
            top = float(np.max(e.counts))
            ncall = int(math.ceil(top / chunk)) if chunk else 1
            ncall = max(ncall, 1)
            vals = (e.mean().astype(np.float64) * ncall).astype("<f4").reshape(-1)
            f.write(struct.pack("<i", len(b)) + b + struct.pack("<ii", ncall, vals.size))
            f.write(vals.tobytes())
        f.write(struct.pack("<i", int(im.chunk_count)))
        ds = (im.datasets[-1] if im.datasets else "").encode("utf-8")
        f.write(struct.pack("<i", len(ds)) + ds)


# ------------------------------------------------------------------------------------------------
# applying to a model
# ------------------------------------------------------------------------------------------------


def importance_for_model(
    imatrix: Imatrix, shapes: Sequence[Tuple[str, Tuple[int, ...]]], source: "str | os.PathLike[str]"
) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """Per-weight importance for the quantizer: {tensor name: float32 (n_cols,)}. `shapes` are the model's (name, NumPy-order shape). Raises
    ImatrixError naming `source` and the tensor when an entry's size does not fit its tensor, or
    when no entry names a tensor of the model (an imatrix of another model). Returns the
    importance and notes (entries the model does not have)."""
    by_name = dict(shapes)
    out: Dict[str, np.ndarray] = {}
    unknown = []
    for name, e in imatrix.entries.items():
        shape = by_name.get(name)
        if shape is None:
            unknown.append(name)
            continue
        cols = int(shape[-1])
        if e.n_cols != cols or e.n_mat != 1:
            raise ImatrixError(
                f"{source}: tensor {name} has {cols} columns in the model but "
                + (f"{e.n_cols} values" if e.n_mat == 1 else f"{e.n_mat} matrices of {e.n_cols} values (MoE experts)")
                + " in the importance matrix (computed for another model?)"
            )
        out[name] = e.mean()[0]
    if not out:
        sample = ", ".join(sorted(imatrix.entries)[:3])
        raise ImatrixError(f"{source}: no entry of the importance matrix names a tensor of the model (it has {sample}, ...)")
    notes = []
    if unknown:
        notes.append(f"{source}: {len(unknown)} importance entries name no tensor of the model (e.g. {sorted(unknown)[0]}); ignored")
    return out, notes
