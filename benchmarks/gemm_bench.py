"""GEMM micro-benchmark: quantized matmul (fast path), GOP/s per type, shape, token count and ISA.

    PYTHONPATH=src python3 benchmarks/gemm_bench.py [--types Q4_0,Q8_0] [--tokens 512,1] [--threads 1]
        [--isa avx2,avx512] [--shapes tinyllama|smollm2|all|2048x2048,...] [--repeats 5] [--layout packed|gguf]

--isa takes a comma list: the levels are interleaved per measurement (A, B, A, B, ... in one process,
each row's repeats alternating between them) and the table gets a ratio column (last ISA / first), so a
loaded machine moves both sides alike. Empty = the dispatched level.

--layout packed (the default) times the kernels a model runs: weights in the 8-row packed layout
the model builds at load (edgellama/packed_layout.h), packed once before timing; types without a
packed layout fall back to the GGUF layout (the layout column says which ran). --layout gguf times the
GGUF-layout kernels (what this tool measured before session 23; those rows are not what a model runs).

One op = one multiply-add (2*rows*cols*tokens / 2); GOP/s counts multiply-adds x2 (FLOP-style).
Times are the median (wall; with 1 thread also the thread CPU time, steadier on a shared machine) of
--repeats runs of matmul() (activation quantization included). For 1 token the GB/s column is the
weight bytes streamed per second (the decode roofline is the machine's read bandwidth,
benchmarks/membw.py). For reference, AVX2 int8 peak per core (2 maddubs/cycle x 32 MACs) is ~64
MAC/cycle; AVX-512 VNNI (vpdpbusd, 64 MACs per instruction) doubles or quadruples that depending on the
core's 512-bit datapath.
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np

from edgellama import _core

# (rows=n_out, cols=n_in)
SHAPES = {
    # TinyLlama-1.1B: q/o, gate/up, down, output (Q6_K in llama-quantize's Q4_0/Q4_K_M files)
    "tinyllama": [(2048, 2048), (5632, 2048), (2048, 5632), (32000, 2048)],
    # SmolLM2-135M: q/o, gate/up, down, output (Q8_0 in the shared Q4_1 file)
    "smollm2": [(576, 576), (1536, 576), (576, 1536), (49152, 576)],
}
SHAPES["all"] = SHAPES["tinyllama"] + SHAPES["smollm2"]


def weight_bytes(t: str, w: np.ndarray, rng: np.random.Generator) -> bytes:
    """w quantized to t; types without a quantizer (the grid i-quants) get random well-formed blocks of the
    same shape (tests/kernel_data.py: kernel speed does not depend on the values)."""
    try:
        return np.asarray(_core.quantize(t, w)).tobytes()
    except _core.UnsupportedError:
        import sys
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
        from kernel_data import random_rows
        return random_rows(t, w.shape[0], w.shape[1], rng)


def packable(t: str, wb: bytes, rows: int, cols: int) -> bool:
    """Whether type t has the packed layout (kernel_pack_rows refuses the others; one group is enough)."""
    try:
        _core.kernel_pack_rows(t, wb[:len(wb) // rows * min(rows, 8)], cols)
        return True
    except ValueError:
        return False


def parse_shapes(s: str) -> list[tuple[int, int]]:
    if s in SHAPES:
        return SHAPES[s]
    return [tuple(int(v) for v in item.split("x")) for item in s.split(",")]  # type: ignore[misc]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="Q4_0,Q4_1,Q8_0,Q4_K,Q6_K")
    ap.add_argument("--tokens", default="512,1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--isa", default="", help="comma list of levels to interleave (e.g. avx2,avx512)")
    ap.add_argument("--shapes", default="tinyllama", help="tinyllama | smollm2 | all | RxC,RxC,...")
    ap.add_argument("--name", default="blk.0.attn_q.weight", help="tensor name (controls the residual pass)")
    ap.add_argument("--layout", choices=["packed", "gguf"], default="packed",
                    help="weight layout: packed (what a model runs; default) or gguf")
    args = ap.parse_args()
    isas = args.isa.split(",") if args.isa else [""]
    for isa in isas:
        if isa and isa not in _core.available_isas():
            raise SystemExit(f"--isa {isa}: not available here ({', '.join(_core.available_isas())})")
    rng = np.random.default_rng(0)
    names = [i or _core.isa() for i in isas]
    print(f"isa={','.join(names)} threads={args.threads} load={os.getloadavg()[0]:.2f}")
    head = f"{'type':6} {'layout':6} {'shape':>11} {'tok':>4}"
    for n in names:
        head += f" {n + ' ms':>11} {'GOP/s':>7} {'GB/s':>6}"
    if len(isas) > 1:
        head += f" {'ratio':>6}"
    print(head)
    for t in args.types.split(","):
        for rows, cols in parse_shapes(args.shapes):
            w = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
            wb = weight_bytes(t, w, rng)
            packed = args.layout == "packed" and packable(t, wb, rows, cols)
            for nt in [int(v) for v in args.tokens.split(",")]:
                x = rng.standard_normal((nt, cols)).astype(np.float32)
                reps = args.repeats if nt > 1 else args.repeats * 4
                times: dict[int, list[float]] = {i: [] for i in range(len(isas))}
                for i, isa in enumerate(isas):  # warm-up (page faults, scratch)
                    _core.kernel_matmul(t, wb, x, args.threads, "fast", isa, 1, args.name, packed)
                for _ in range(reps):
                    for i, isa in enumerate(isas):
                        _, wall, cpu = _core.kernel_matmul(t, wb, x, args.threads, "fast", isa, 1, args.name, packed)
                        times[i].append(cpu[0] if args.threads == 1 else wall[0])
                line = f"{t:6} {'packed' if packed else 'gguf':6} {rows:5}x{cols:<5} {nt:4}"
                med = []
                for i in range(len(isas)):
                    dt = statistics.median(times[i])
                    med.append(dt)
                    line += f" {dt * 1e3:11.3f} {2.0 * rows * cols * nt / dt / 1e9:7.1f} {len(wb) / dt / 1e9:6.1f}"
                if len(isas) > 1:
                    line += f" {med[0] / med[-1]:6.2f}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
