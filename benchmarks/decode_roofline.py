"""Per-kernel decode roofline: how fast each weight type's matmul streams weights for ONE token, next
to the machine's read bandwidth (what decode could reach), plus the cost of the residual int8 pass
and the prefill rate of the same kernels. One command, for a quiet machine:

    PYTHONPATH=src python3 benchmarks/decode_roofline.py [--types Q4_0,Q6_K] [--threads 1,2] [--isa avx2]
        [--layout packed,gguf]

Each type is measured in the weight layouts asked for: "packed" (8-row groups, what a model loaded
with the default EDGELLAMA_REPACK uses for the quantized types; float types have no packed layout)
and "gguf" (the file's row layout, EDGELLAMA_REPACK=0).

Columns (GB/s = bytes of quantized weights per second):
  dram       1 token, a matrix larger than the last-level cache (so every call streams from memory)
             named like ffn_gate (no residual pass): what decode sees
  dram+res   the same matrix named like ffn_down: with the residual pass (main + residual
             activation rows in one call; logits, K/V, attn_output and ffn_down take it)
  res cost   dram / dram+res (1.00 = the residual pass is free)
  cache      1 token, a 2048x2048 matrix that stays in cache: the kernel's compute ceiling
  %roof      dram / the read bandwidth with the same threads (benchmarks/membw.py's probe)
  pp GOP/s   128 tokens x 2048x2048 (2 ops per multiply-add)
Times are the median wall time over repeats (thread CPU time would hide waiting for memory).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from edgellama import _core  # noqa: E402

TYPES = "Q4_0,Q4_1,Q5_0,Q5_1,Q8_0,Q2_K,Q3_K,Q4_K,Q5_K,Q6_K,F16,BF16"
N_IN = 2048
DRAM_BYTES = 96 << 20  # well past a 32 MB L3


def quantized(t: str, rows: int, cols: int, rng: np.random.Generator) -> bytes:
    w = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    return np.asarray(_core.quantize(t, w)).tobytes()


def median_wall(t: str, wb: bytes, x: np.ndarray, threads: int, isa: str, repeats: int, name: str,
                packed: bool = False) -> float:
    _, wall, _ = _core.kernel_matmul(t, wb, x, threads, "fast", isa, repeats + 1, name, packed)
    return statistics.median(wall[1:])  # the first call warms up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default=TYPES)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--isa", default="", help="kernel set (default: the one matmul uses here)")
    ap.add_argument("--dram-mb", type=int, default=DRAM_BYTES >> 20, help="size of the streaming matrix")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--layout", default="packed,gguf", help="packed, gguf or both (comma list)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    isa = args.isa or _core.isa()
    print(f"isa={isa} load={os.getloadavg()[0]:.2f} (before)")
    x1 = rng.standard_normal((1, N_IN)).astype(np.float32)
    xp = rng.standard_normal((128, N_IN)).astype(np.float32)
    for threads in [int(v) for v in args.threads.split(",")]:
        bw = _core.read_bandwidth(n_threads=threads)
        print(f"\nthreads={threads}  read bandwidth {bw:.1f} GB/s")
        print(f"{'type':5} {'layout':6} {'dram':>7} {'dram+res':>9} {'res cost':>9} {'cache':>7} {'%roof':>6} {'pp GOP/s':>9}")
        for t, layout in [(t, lay) for t in args.types.split(",") for lay in args.layout.split(",")]:
            if layout == "packed" and t in ("F16", "BF16", "F32"):
                continue
            packed = layout == "packed"
            row_bytes = len(quantized(t, 1, N_IN, rng))
            rows = max(8, (args.dram_mb << 20) // row_bytes)
            big = quantized(t, rows, N_IN, rng)
            small = quantized(t, 2048, N_IN, rng)
            gbs = lambda wb, name: len(wb) / median_wall(t, wb, x1, threads, isa, args.repeats, name, packed) / 1e9  # noqa: E731
            dram = gbs(big, "blk.0.ffn_gate.weight")
            dram_res = gbs(big, "blk.0.ffn_down.weight")
            cache = gbs(small, "blk.0.ffn_gate.weight")
            pp = 2.0 * 2048 * N_IN * 128 / median_wall(t, small, xp, threads, isa, 3, "blk.0.ffn_gate.weight", packed) / 1e9
            print(f"{t:5} {layout:6} {dram:7.1f} {dram_res:9.1f} {dram / dram_res:9.2f} {cache:7.1f} {100 * dram / bw:5.0f}% {pp:9.1f}",
                  flush=True)
    print(f"\nload={os.getloadavg()[0]:.2f} (after)")


if __name__ == "__main__":
    main()
