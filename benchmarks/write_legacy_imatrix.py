#!/usr/bin/env python3
"""Writes a llama.cpp legacy (.dat) importance matrix of all ones for a GGUF model, so llama-quantize
can make the i-quant files that it refuses to make without one (IQ3_XXS, IQ2_*, IQ1_*) for speed
benchmarks (benchmarks/iq4_vs_llamacpp.sh with IMATRIX=...). Uniform importance: the files are fine
for timing, not for quality comparisons. The file is written by edgellama.imatrix_file (the same
writer `edgellama imatrix` uses).

    python benchmarks/write_legacy_imatrix.py MODEL-F16.gguf OUT.imatrix.dat
"""

from __future__ import annotations

import os
import sys

import gguf
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from edgellama.imatrix_file import Imatrix, ImatrixEntry, write_imatrix  # noqa: E402


def matmul_weights(src: str):
    """(name, input width) of every 2-D weight a matmul reads (llama.cpp looks entries up by name)."""
    reader = gguf.GGUFReader(src)
    return [(t.name, int(t.shape[0])) for t in reader.tensors
            if t.name.endswith(".weight") and len(t.shape) == 2 and t.name != "token_embd.weight"]


def main(src: str, out: str) -> None:
    entries = {name: ImatrixEntry(np.ones((1, n)), np.ones(1)) for name, n in matmul_weights(src)}
    write_imatrix(out, Imatrix(entries, datasets=["ones"], chunk_count=1), legacy=True)
    print(f"{out}: {len(entries)} entries of ones")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
