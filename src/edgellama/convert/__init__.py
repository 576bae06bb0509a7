"""Checkpoint -> GGUF conversion and quantization.

    ck = load_checkpoint("path/to/hf_dir" | "model.bin" | "model.gguf", tokenizer=None)
    write_gguf(ck, "out.gguf", "Q4_K_M", importance=None, threads=None)

Inputs: Hugging Face directories (LlamaForCausalLM / MistralForCausalLM, safetensors), llama2.c
checkpoints, GGUF files. The output is written tensor by tensor (peak memory about one tensor and
its quantized copy) to a temporary file beside OUTPUT that is renamed over OUTPUT only when complete.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from .errors import ConversionError
from .gguf_in import is_gguf, read_gguf
from .gguf_types import GGML_QUANT_SIZES, GGMLQuantizationType
from .gguf_writer import FastGGUFWriter
from .mixes import FILE_TYPES, FileType, check_imatrix, parse_file_type, plan_types
from .model import Checkpoint, TensorSource
from .atomic_replace import replace_file

__all__ = [
    "ConversionError",
    "Checkpoint",
    "TensorSource",
    "FILE_TYPES",
    "load_checkpoint",
    "parse_file_type",
    "plan_types",
    "write_gguf",
]

log = logging.getLogger("edgellama.convert")


def load_checkpoint(path: "str | os.PathLike[str]", tokenizer: "str | os.PathLike[str] | None" = None) -> Checkpoint:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: input not found")
    # the readers of the other formats are imported when used (a GGUF input needs none of them)
    if p.is_dir():
        from .hf import read_hf

        if tokenizer is not None:
            raise ConversionError("--tokenizer applies to llama2.c checkpoints; a Hugging Face directory brings its own")
        return read_hf(p)
    if is_gguf(p):
        return read_gguf(p)
    from .llama2c import looks_like_llama2c, read_llama2c

    if looks_like_llama2c(p):
        return read_llama2c(p, Path(tokenizer) if tokenizer is not None else None)
    if p.suffix == ".safetensors" or p.name == "config.json":
        raise ConversionError(f"{p}: pass the Hugging Face checkpoint directory, not one of its files")
    raise ConversionError(f"{p}: unrecognised input (not a GGUF file, a llama2.c checkpoint or a Hugging Face directory)")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _progress(total: int, enabled: bool):
    from ..progress import progress_bar  # a tqdm bar on a terminal, progress lines otherwise

    return progress_bar(total, "tensors", unit="tensor", enabled=enabled, file=sys.stderr)


def _new_file_mode() -> int:
    """0666 minus the process umask: the mode open() would have given a new file (0644 under 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_error(output: Path, err: OSError) -> ConversionError:
    """A failed write of the output, said so that the user can act on it: the file, the reason and
    the free space left beside it. (A full disk reaches us from NumPy's tofile as "N requested and M
    written", with no errno.)"""
    reason = err.strerror or str(err)
    try:
        free = shutil.disk_usage(output.parent).free
        where = f"; {free / 2**20:.0f} MiB free on its file system"
    except OSError:
        where = ""
    return ConversionError(f"writing {output} failed: {reason}{where} (disk full?); no output written")


class _BufferPool:
    """Output buffers of the quantized tensors, reused once written: a fresh array per tensor costs
    the page faults and zeroing of its memory (3-5 % of a Q8_0 run's CPU time). take() hands out
    the smallest free buffer that is large enough (else a new one of the size asked for); at most
    as many buffers exist as tensors are in flight (two quantizing, up to seven being written)
    plus a few free ones."""

    MAX_FREE = 8

    def __init__(self) -> None:
        self._free: "list[np.ndarray]" = []
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        with self._lock:  # (positions, not list.remove: == on arrays compares their values)
            fits = [i for i, b in enumerate(self._free) if b.size >= nbytes]
            if fits:
                return self._free.pop(min(fits, key=lambda i: self._free[i].size))
            if len(self._free) >= self.MAX_FREE:  # the smallest is too small for what comes now
                self._free.pop(min(range(len(self._free)), key=lambda i: self._free[i].size))
        return np.empty(max(nbytes, 1), dtype=np.uint8)

    def give(self, buf: np.ndarray) -> None:
        with self._lock:
            self._free.append(buf)


def write_gguf(
    ck: Checkpoint,
    output: "str | os.PathLike[str]",
    file_type: "str | FileType",
    *,
    importance: Optional[Dict[str, np.ndarray]] = None,
    threads: Optional[int] = None,
    input_path: "str | os.PathLike[str] | None" = None,
    progress: bool = True,
    on_note: Optional[Callable[[str], None]] = None,
    rounding: str = "search",
    _fail_after: Optional[int] = None,  # tests: raise after writing this many tensors
) -> Path:
    ft = file_type if isinstance(file_type, FileType) else parse_file_type(file_type)
    out = Path(output)
    note = on_note or (lambda s: log.warning(s))
    if input_path is not None:
        inp = Path(input_path)
        if _same_file(inp, out) or inp.resolve() == out.resolve():
            raise ConversionError(f"refusing to overwrite the input {inp} with the output")
        if inp.is_dir() and out.resolve().parent == inp.resolve() and out.suffix != ".gguf":
            raise ConversionError(f"output {out} would be written inside the input checkpoint directory")
    if out.is_dir():
        raise ConversionError(f"output {out} is a directory")
    out_dir = out.resolve().parent
    if not out_dir.is_dir():
        raise FileNotFoundError(f"{out_dir}: output directory does not exist")
    if threads is not None and (not isinstance(threads, int) or threads <= 0):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if rounding not in ("search", "reference"):
        raise ValueError(f"rounding must be 'search' or 'reference', got {rounding!r}")
    if rounding == "reference" and importance:
        raise ValueError("rounding='reference' takes no importance weights (calibration)")

    for w in ck.warnings:
        note(w)
    shapes = [(t.name, t.shape) for t in ck.tensors]
    types, notes = plan_types(ft, shapes, ck.n_layer, ck.n_head, ck.n_head_kv, has_imatrix=bool(importance))
    for n in notes:
        note(n)
    check_imatrix(types, lambda name: importance is not None and name in importance)  # IQ2_*/IQ1_*/IQ3_XXS

    from .. import _core

    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out_dir)
    tmp = Path(tmp_name)
    writer = None
    try:
        writer = FastGGUFWriter(tmp, ck.arch)  # gguf-py's file format, metadata arrays packed in bulk
        # mkstemp's file as opened, not reopened with O_TRUNC (an ext4 writeback at close: atomic_replace.py)
        fout, fd = os.fdopen(fd, "wb"), -1  # (the file object owns the descriptor now)
        writer.use_open_file(fout)
        for kv in ck.kv:
            writer.add_key_value(kv.key, kv.value, kv.vtype, kv.sub_type)
        writer.add_file_type(int(ft.ftype))
        writer.add_quantization_version(2)
        nbytes_of: Dict[str, int] = {}  # quantized size of each tensor
        for t in ck.tensors:
            qt = types[t.name]
            block, size = GGML_QUANT_SIZES[qt]
            rows = int(np.prod(t.shape[:-1])) if len(t.shape) > 1 else 1
            row_bytes = t.shape[-1] // block * size
            writer.add_tensor_info(t.name, t.shape, qt, rows * row_bytes)
            nbytes_of[t.name] = rows * row_bytes
        bar = _progress(len(ck.tensors), progress)

        def write_metadata() -> None:
            try:
                writer.write_header_to_file()
                writer.write_kv_data_to_file()
                writer.write_ti_data_to_file()
            except OSError as e:
                raise _write_error(out, e) from e

        def quantize_tensor(t: TensorSource, qt: GGMLQuantizationType, imp: Optional[np.ndarray]) -> np.ndarray:
            # F16/BF16 inputs go to the quantizer as stored (it widens rows in its threads): no
            # float32 copy of the tensor, no single-threaded NumPy conversion
            stored = t.load_stored is not None and t.src_type in ("F16", "BF16")
            data = t.load_stored() if stored else t.load()
            if tuple(data.shape) != tuple(t.shape):
                raise ConversionError(f"tensor {t.name}: loaded shape {list(data.shape)} != declared {list(t.shape)}")
            cols = t.shape[-1]
            mat = data.reshape(-1, cols) if stored else np.ascontiguousarray(data, dtype=np.float32).reshape(-1, cols)
            # "search": every quantized tensor gets the error-minimising scale search (importance-
            # weighted when calibrated). "reference": legacy types round exactly like
            # llama.cpp/gguf-py (byte-identical tensors); K-quants always search.
            method = "search" if (rounding == "search" and qt.name.startswith("Q")) else "auto"
            source = "bf16" if stored and t.src_type == "BF16" else "auto"
            nbytes = nbytes_of[t.name]
            buf = buffers.take(nbytes)
            _core.quantize(qt.name, mat, importance=imp, n_threads=threads or 0, method=method, source=source,
                           out=buf[:nbytes])
            return buf

        # Tensors are quantized two at a time, each over all threads (_core.quantize releases the GIL),
        # so that one tensor's Python work, thread start-up and page faults overlap the other's
        # quantization instead of leaving the cores idle between tensors (272 tensors in a 135M model);
        # each tensor's bytes do not depend on what runs beside it. Writes run in file order on their
        # own thread; up to six tensors and 64 MiB may wait behind the one being written, so that a slow
        # stretch of the writer (the metadata, a large tensor, page cache allocation) does not stop the
        # quantizers (with two allowed, SmolLM2 -> Q8_0 spent 20-70 ms of a 0.5 s run waiting for
        # writes, ~0 with six). A failed quantization or write stops the loop at the next wait.
        # Memory: two tensors being quantized and at most 64 MiB of quantized ones (or one larger
        # tensor) waiting to be written, besides the one being written. (Three tensors at a time hid
        # more of the per-tensor Python work, ~3 % less wall, noisy, but peak RSS rose from 3.1x to
        # 4.2x the largest tensor in test_peak_memory_is_about_one_tensor.)
        max_pending_writes, max_pending_bytes = 6, 64 << 20
        in_flight: "collections.deque" = collections.deque()
        pending_writes: "collections.deque" = collections.deque()  # (future, nbytes)
        buffers = _BufferPool()

        def write_and_release(buf: np.ndarray, nbytes: int) -> None:
            try:
                writer.write_tensor_data(buf[:nbytes])
            except OSError as e:
                raise _write_error(out, e) from e
            buffers.give(buf)

        def write_next() -> None:
            future, nbytes = in_flight.popleft()
            buf = future.result()
            while pending_writes and (len(pending_writes) >= max_pending_writes
                                      or sum(n for _, n in pending_writes) + nbytes > max_pending_bytes):
                pending_writes.popleft()[0].result()
            pending_writes.append((writer_thread.submit(write_and_release, buf, nbytes), nbytes))
            if bar is not None:
                bar.update(1)

        with ThreadPoolExecutor(2, thread_name_prefix="edgellama-quantize") as quantizers, ThreadPoolExecutor(
            1, thread_name_prefix="edgellama-write"
        ) as writer_thread:
            try:
                # The header and metadata (a vocabulary's arrays take tens of milliseconds to pack) are
                # the writer's first job, done while the first tensors are quantized; an error in them
                # surfaces at the first wait for a write, like a failed tensor write.
                pending_writes.append((writer_thread.submit(write_metadata), 0))
                for i, t in enumerate(ck.tensors):
                    if _fail_after is not None and i >= _fail_after:
                        raise RuntimeError("simulated failure")
                    qt = types[t.name]
                    if bar is not None:
                        bar.set_description(f"{t.name} -> {qt.name}")
                    imp = None
                    if importance is not None and qt not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16):
                        imp = importance.get(t.name)
                        if imp is not None and imp.shape != (t.shape[-1],):
                            note(f"{t.name}: calibration statistics have {imp.shape} values for {t.shape[-1]} columns; ignored")
                            imp = None
                    in_flight.append((quantizers.submit(quantize_tensor, t, qt, imp), nbytes_of[t.name]))
                    while len(in_flight) >= 2:
                        write_next()
                while in_flight:
                    write_next()
                while pending_writes:
                    pending_writes.popleft()[0].result()
            except BaseException:
                for f, _ in in_flight:  # not started yet: not worth running; started: finish before the file closes
                    f.cancel()
                raise
        if bar is not None:
            bar.close()
        writer.close()
        writer = None
        os.chmod(tmp, _new_file_mode())  # mkstemp made it 0600; a finished file gets the usual mode
        replace_file(tmp, out)  # os.replace without ext4's writeback of the whole file
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if writer is not None:
            try:
                writer.close()
            except Exception:
                pass
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    return out
