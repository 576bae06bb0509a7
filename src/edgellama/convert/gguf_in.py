"""GGUF input: metadata copied as is (except the keys the writer sets), tensors read as float32.
F32/F16/BF16 tensors are read exactly; already-quantized tensors are dequantized (with a warning:
requantizing loses more than quantizing from the original weights)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ConversionError
from .gguf_types import GGMLQuantizationType, GGUFValueType
from .model import Checkpoint, TensorSource

# Keys the writer owns.
_SKIP = {"general.architecture", "general.file_type", "general.quantization_version", "general.alignment"}


def is_gguf(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


# GGUFFile.metadata_types names -> gguf-py's value types (for the writer)
_VTYPES = {v.name.lower(): v for v in GGUFValueType}


def _vtypes(type_name: str):
    """'uint32' -> (UINT32, None); 'array[string]' -> (ARRAY, STRING); None for nested arrays."""
    if type_name.startswith("array[") and type_name.endswith("]"):
        sub = _VTYPES.get(type_name[6:-1])
        return (GGUFValueType.ARRAY, sub) if sub is not None and sub != GGUFValueType.ARRAY else None
    main = _VTYPES.get(type_name)
    return (main, None) if main is not None and main != GGUFValueType.ARRAY else None


def read_gguf(path: Path) -> Checkpoint:
    # edgellama's own (C++) reader: it checks every tensor's extent against the file, so a
    # truncated or malformed input gets the message `run`/`info` give, and it parses a 32000-token
    # vocabulary in milliseconds (gguf-py's reader takes seconds of Python per file). gguf-py reads
    # only the keys the C++ reader cannot hand over exactly: nested arrays, and strings that are
    # not valid UTF-8 (decoded with U+FFFD replacements there; token bytes must stay exact).
    from .. import _core
    from ..gguf_file import GGUFFile

    try:
        g = GGUFFile(path)
        meta, types, infos = g.metadata, g.metadata_types, g.tensors
    except _core.GGUFError as e:
        raise ConversionError(str(e)) from None
    arch = meta.get("general.architecture")
    if not arch:
        raise ConversionError(f"{path}: GGUF file has no general.architecture")
    ck = Checkpoint(kind="gguf", arch=str(arch))
    fallback = None
    for key, value in meta.items():
        if key in _SKIP or key.startswith("split."):
            continue
        vt = _vtypes(types[key])
        lossy = isinstance(value, str) and "\ufffd" in value
        if vt is not None and vt[1] == GGUFValueType.STRING:
            # one scan of a 49k-token vocabulary instead of 49k (U+FFFD is one code point: joining
            # cannot make one)
            try:
                lossy = "\ufffd" in "".join(value)
            except TypeError:  # not all str
                lossy = any("\ufffd" in v for v in value)
        if vt is None or lossy:
            if fallback is None:
                from gguf import GGUFReader  # (imported only here: `import gguf` takes ~35 ms)

                try:
                    fallback = GGUFReader(path, "r")
                except Exception as e:  # gguf-py raises ValueError / struct errors for malformed files
                    raise ConversionError(f"{path}: cannot read GGUF file: {e}") from e
            f = fallback.fields[key]
            main = GGUFValueType(f.types[0])
            sub = GGUFValueType(f.types[-1]) if main == GGUFValueType.ARRAY and len(f.types) > 1 else None
            if main == GGUFValueType.ARRAY and f.types[1] == GGUFValueType.ARRAY:
                # gguf-py flattens nested arrays (contents()): say so rather than write a wrong value
                ck.warnings.append(f"{path}: metadata key {key} is an array of arrays; not copied to the output")
                continue
            if main == GGUFValueType.STRING:  # bytes as stored (contents() would decode them)
                value = bytes(f.parts[-1])
            elif main == GGUFValueType.ARRAY and sub == GGUFValueType.STRING:
                value = [bytes(f.parts[i]) for i in f.data]  # keep token bytes exact
            else:
                value = f.contents()
            ck.add(key, value, main, sub)
        else:
            ck.add(key, value, vt[0], vt[1])
    get = lambda k, d=0: ck.get(f"{arch}.{k}", d)  # noqa: E731
    ck.n_head = int(get("attention.head_count"))
    ck.n_head_kv = int(get("attention.head_count_kv", ck.n_head) or ck.n_head)
    ck.n_layer = int(get("block_count"))
    quantized = set()
    for t in infos:
        ttype = GGMLQuantizationType(t.type_id)
        shape = tuple(int(s) for s in reversed(t.shape))  # NumPy order
        if ttype not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16):
            quantized.add(ttype.name)
        def read(t=t) -> np.ndarray:
            # One memory map per tensor, unmapped when the quantizer drops the array: peak memory is
            # about one tensor (a map of the whole input would keep every page read so far in the
            # RSS, 13 GB for a 7B F16 model), and the quantizer reads the page cache directly: no
            # copy into a fresh buffer and no zeroing of its pages (together ~9% of the CPU time of
            # a Q6_K run, the kernel's copy_to_iter and clear_page).
            if t.offset + t.nbytes > os.path.getsize(path):
                raise ConversionError(f"{path}: tensor {t.name}: the file ends inside its data (truncated?)")
            if t.nbytes == 0:
                return np.zeros(0, dtype=np.uint8)
            return np.memmap(path, dtype=np.uint8, mode="r", offset=t.offset, shape=(t.nbytes,))

        def load(read=read, ttype=ttype, shape=shape):
            from .. import _core

            data = read()
            if ttype == GGMLQuantizationType.F32:
                return data.view(np.float32).reshape(shape)
            if ttype == GGMLQuantizationType.F16:
                return data.view(np.float16).astype(np.float32).reshape(shape)
            return np.asarray(_core.dequantize(ttype.name, data), dtype=np.float32).reshape(shape)

        def load_stored(read=read, ttype=ttype, shape=shape):
            return read().view(np.float16 if ttype == GGMLQuantizationType.F16 else np.uint16).reshape(shape)

        stored = load_stored if ttype in (GGMLQuantizationType.F16, GGMLQuantizationType.BF16) else None
        ck.tensors.append(TensorSource(t.name, shape, load, ttype.name, stored))
    if quantized:
        ck.warnings.append(
            f"{path}: input is already quantized ({', '.join(sorted(quantized))}); requantizing loses accuracy — "
            "quantize from the original F32/F16/BF16 weights when you can"
        )
    return ck
