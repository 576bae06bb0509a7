"""Random, well-formed quantized weight rows for the kernel tests and micro-benchmarks; the CPU's
flags as /proc/cpuinfo lists them (what the dispatcher must agree with)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_factory import set_iq1_m_d

# type -> (values per block, bytes per block, [(offset of an fp16 scale field, kind)])
LAYOUT = {
    "Q4_0": (32, 18, [(0, "d")]),
    "Q4_1": (32, 20, [(0, "d"), (2, "m")]),
    "Q5_0": (32, 22, [(0, "d")]),
    "Q5_1": (32, 24, [(0, "d"), (2, "m")]),
    "Q8_0": (32, 34, [(0, "d")]),
    "Q2_K": (256, 84, [(80, "d"), (82, "d")]),
    "Q3_K": (256, 110, [(108, "d")]),
    "Q4_K": (256, 144, [(0, "d"), (2, "d")]),
    "Q5_K": (256, 176, [(0, "d"), (2, "d")]),
    "Q6_K": (256, 210, [(208, "d")]),
    "IQ4_NL": (32, 18, [(0, "d")]),
    "IQ4_XS": (256, 136, [(0, "d")]),
    "TQ1_0": (256, 54, [(52, "d")]),
    "TQ2_0": (256, 66, [(64, "d")]),
    "MXFP4": (32, 17, [(0, "e8m0")]),  # one byte: x = 2^(e - 128) * level
    # grid i-quants: every byte pattern is a valid block (grid and sign indices cover their tables)
    "IQ3_XXS": (256, 98, [(0, "d")]),
    "IQ3_S": (256, 110, [(0, "d")]),
    "IQ2_XXS": (256, 66, [(0, "d")]),
    "IQ2_XS": (256, 74, [(0, "d")]),
    "IQ2_S": (256, 82, [(0, "d")]),
    "IQ1_S": (256, 50, [(0, "d")]),
    "IQ1_M": (256, 56, [(48, "iq1m_d")]),  # fp16 d in the top nibbles of 4 scale words (model_factory)
}
QUANT_TYPES = list(LAYOUT)
FLOAT_TYPES = ["F32", "F16", "BF16"]
ALL_TYPES = QUANT_TYPES + FLOAT_TYPES


def cpu_flags() -> set[str]:
    """The flags line of /proc/cpuinfo (empty where there is none: not Linux, or no flags line)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def act_type(t: str) -> str:
    """The activation format the int8 kernels of weight type t use: q8_K for 256-value super-blocks."""
    return "q8_K" if block_size(t) == 256 else "q8_0"


def block_size(t: str) -> int:
    return LAYOUT[t][0] if t in LAYOUT else 1


def random_rows(t: str, n_rows: int, n_in: int, rng: np.random.Generator, extreme: str | None = None) -> bytes:
    """n_rows rows of n_in values. extreme: None | 'max_scale' (largest finite fp16 scales) |
    'all_max' (every quant bit set: nibbles 15, i.e. -8..+7 extremes after offsets) | 'all_zero'."""
    if t == "F32":
        return rng.standard_normal((n_rows, n_in)).astype(np.float32).tobytes()
    if t == "F16":
        return rng.standard_normal((n_rows, n_in)).astype(np.float16).tobytes()
    if t == "BF16":
        f = rng.standard_normal((n_rows, n_in)).astype(np.float32)
        return (f.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    qk, size, fields = LAYOUT[t]
    nb = n_rows * (n_in // qk)
    if extreme == "all_max":
        raw = np.full((nb, size), 0xFF, dtype=np.uint8)
    elif extreme == "all_zero":
        raw = np.zeros((nb, size), dtype=np.uint8)
    else:
        raw = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
    for off, kind in fields:
        if kind == "e8m0":  # 2^-10..2^-4 (levels up to 12), or 2^15 for max_scale (fp16's range)
            raw[:, off] = 143 if extreme == "max_scale" else rng.integers(118, 125, nb)
            continue
        if extreme == "max_scale":
            vals = np.full(nb, 65504.0 if kind == "d" else -65504.0)
        else:
            vals = rng.uniform(0.001, 0.05, nb) * (rng.choice([-1.0, 1.0], nb) if kind == "m" else 1.0)
        if kind == "iq1m_d":
            set_iq1_m_d(raw, vals.astype(np.float16).view(np.uint16))
            continue
        raw[:, off:off + 2] = vals.astype(np.float16).view(np.uint8).reshape(nb, 2)
    if t == "Q6_K" and extreme != "all_max":
        raw[:, 192:208] = rng.integers(-40, 40, size=(nb, 16), dtype=np.int8).view(np.uint8)
    return raw.tobytes()
