"""GEMM micro-benchmark: quantized matmul (fast path) at TinyLlama-1.1B shapes, GOP/s per type.

    PYTHONPATH=src python3 benchmarks/gemm_bench.py [--types Q4_0,Q8_0] [--tokens 512,1] [--threads 1]

One op = one multiply-add (2*rows*cols*tokens / 2); GOP/s counts multiply-adds x2 (FLOP-style).
Times are the median (wall; with 1 thread also the thread CPU time, steadier on a shared machine) of --repeats runs of matmul() (activation quantization included). For
reference, AVX2 int8 peak per core (2 maddubs/cycle x 32 MACs) is ~64 MAC/cycle, i.e. ~380 GOP/s at
3 GHz; the real bound for 4-bit weights is the unpack + scale work, not the multiplies.
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np

from edgellama import _core

SHAPES = [(2048, 2048), (5632, 2048), (2048, 5632)]  # (rows=n_out, cols=n_in)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="Q4_0,Q4_1,Q8_0,Q4_K,Q6_K")
    ap.add_argument("--tokens", default="512,1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--isa", default="")
    ap.add_argument("--name", default="blk.0.attn_q.weight", help="tensor name (controls the residual pass)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"isa={args.isa or _core.isa()} threads={args.threads} load={os.getloadavg()[0]:.2f}")
    print(f"{'type':6} {'shape':>11} {'tok':>4} {'ms':>9} {'GOP/s':>8} {'cpu GOP/s':>9}")
    for t in args.types.split(","):
        for rows, cols in SHAPES:
            w = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
            wb = np.asarray(_core.quantize(t, w)).tobytes()
            for nt in [int(v) for v in args.tokens.split(",")]:
                x = rng.standard_normal((nt, cols)).astype(np.float32)
                reps = args.repeats if nt > 1 else args.repeats * 20
                _, times, cpu = _core.kernel_matmul(t, wb, x, args.threads, "fast", args.isa, reps + 1, args.name)
                dtc = statistics.median(cpu[1:])
                dt = statistics.median(times[1:])
                gops = 2.0 * rows * cols * nt / dt / 1e9
                cg = 2.0 * rows * cols * nt / dtc / 1e9 if args.threads == 1 else float("nan")
                print(f"{t:6} {rows:5}x{cols:<5} {nt:4} {dt * 1e3:9.3f} {gops:8.1f} {cg:9.1f}", flush=True)


if __name__ == "__main__":
    main()
