#!/usr/bin/env python3
"""Writes a llama.cpp legacy (.dat) importance matrix of all ones for a GGUF model, so llama-quantize
can make the i-quant files that it refuses to make without one (IQ3_XXS, IQ2_*, IQ1_*) for speed
benchmarks (benchmarks/iq4_vs_llamacpp.sh with IMATRIX=...). Uniform importance: the files are fine
for timing, not for quality comparisons.

    python benchmarks/write_legacy_imatrix.py MODEL-F16.gguf OUT.imatrix.dat

Format (llama.cpp common/imatrix-loader.cpp, legacy branch): int32 entry count; per entry int32 name
length, name, int32 call count, int32 value count, float32 values; then int32 chunk count and an
int32-length-prefixed dataset name.
"""

from __future__ import annotations

import struct
import sys

import gguf


def main(src: str, out: str) -> None:
    reader = gguf.GGUFReader(src)
    # every 2-D weight a matmul reads (llama.cpp looks entries up by tensor name; n = the input width)
    entries = [(t.name, int(t.shape[0])) for t in reader.tensors
               if t.name.endswith(".weight") and len(t.shape) == 2 and t.name != "token_embd.weight"]
    with open(out, "wb") as f:
        f.write(struct.pack("<i", len(entries)))
        for name, n in entries:
            raw = name.encode()
            f.write(struct.pack("<i", len(raw)) + raw + struct.pack("<ii", 1, n))
            f.write(struct.pack(f"<{n}f", *([1.0] * n)))
        f.write(struct.pack("<i", 1) + struct.pack("<i", 4) + b"ones")
    print(f"{out}: {len(entries)} entries", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
