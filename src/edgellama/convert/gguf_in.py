"""GGUF input: metadata copied as is (except the keys the writer sets), tensors read as float32.
F32/F16/BF16 tensors are read exactly; already-quantized tensors are dequantized (with a warning:
requantizing loses more than quantizing from the original weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType

from .errors import ConversionError
from .model import Checkpoint, TensorSource

# Keys the writer owns.
_SKIP = {"general.architecture", "general.file_type", "general.quantization_version", "general.alignment"}


def is_gguf(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def read_gguf(path: Path) -> Checkpoint:
    # edgellama's own reader first: it checks every tensor's extent against the file, so a
    # truncated or malformed input gets the message `run`/`info` give (gguf-py's would be a NumPy
    # reshape error)
    from .. import _core
    from ..gguf_file import GGUFFile

    try:
        GGUFFile(path)
    except _core.GGUFError as e:
        raise ConversionError(str(e)) from None
    try:
        r = GGUFReader(path, "r")
    except Exception as e:  # gguf-py raises ValueError / struct errors for malformed files
        raise ConversionError(f"{path}: cannot read GGUF file: {e}") from e
    arch_field = r.fields.get("general.architecture")
    arch = arch_field.contents() if arch_field is not None else None
    if not arch:
        raise ConversionError(f"{path}: GGUF file has no general.architecture")
    ck = Checkpoint(kind="gguf", arch=str(arch))
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key in _SKIP or key.startswith("split."):
            continue
        main = GGUFValueType(f.types[0])
        sub = GGUFValueType(f.types[-1]) if main == GGUFValueType.ARRAY and len(f.types) > 1 else None
        value = f.contents()
        if main == GGUFValueType.ARRAY and sub == GGUFValueType.STRING:
            # keep token bytes exact (contents() decodes as UTF-8)
            value = [bytes(f.parts[i]) for i in f.data]
        ck.add(key, value, main, sub)
    get = lambda k, d=0: ck.get(f"{arch}.{k}", d)  # noqa: E731
    ck.n_head = int(get("attention.head_count"))
    ck.n_head_kv = int(get("attention.head_count_kv", ck.n_head) or ck.n_head)
    ck.n_layer = int(get("block_count"))
    quantized = set()
    for t in r.tensors:
        ttype = GGMLQuantizationType(t.tensor_type)
        shape = tuple(int(s) for s in reversed([int(x) for x in t.shape]))  # NumPy order
        if ttype not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16):
            quantized.add(ttype.name)

        def load(t=t, ttype=ttype, shape=shape):
            from .. import _core

            if ttype == GGMLQuantizationType.F32:
                return np.array(t.data, dtype=np.float32).reshape(shape)
            if ttype == GGMLQuantizationType.F16:
                return np.asarray(t.data).view(np.float16).astype(np.float32).reshape(shape)
            raw = np.ascontiguousarray(np.asarray(t.data).view(np.uint8)).reshape(-1)
            return np.asarray(_core.dequantize(ttype.name, raw), dtype=np.float32).reshape(shape)

        def load_stored(t=t, shape=shape):
            return np.asarray(t.data).view(np.float16 if t.tensor_type == GGMLQuantizationType.F16 else np.uint16).reshape(shape)

        stored = load_stored if ttype in (GGMLQuantizationType.F16, GGMLQuantizationType.BF16) else None
        ck.tensors.append(TensorSource(t.name, shape, load, ttype.name, stored))
    if quantized:
        ck.warnings.append(
            f"{path}: input is already quantized ({', '.join(sorted(quantized))}); requantizing loses accuracy — "
            "quantize from the original F32/F16/BF16 weights when you can"
        )
    return ck
