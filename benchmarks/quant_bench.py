"""Quantizer benchmarks: per-type throughput and RMSE on a Gaussian matrix, and (with a GGUF model)
requantization wall time plus perplexity / KL divergence against the source model.

    PYTHONPATH=src python3 benchmarks/quant_bench.py [--model M.gguf --text T.txt] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgellama import _core

TYPES = ["Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q2_K"]


def matrix_bench(rows: int, cols: int, threads: int) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    print(f"matrix {rows}x{cols} float32 ({x.nbytes / 1e6:.0f} MB), threads={threads or 'all'}")
    print(f"{'type':6} {'method':9} {'time s':>8} {'Mvals/s':>9} {'rel RMSE':>9}")
    for t in TYPES:
        methods = ["reference", "search"] if t[-1] != "K" else ["search"]
        for m in methods:
            t0 = time.perf_counter()
            b = _core.quantize(t, x, n_threads=threads, method=m)
            dt = time.perf_counter() - t0
            d = _core.dequantize(t, b).reshape(x.shape)
            err = float(np.sqrt(np.mean((d.astype(np.float64) - x) ** 2))) / rms
            print(f"{t:6} {m:9} {dt:8.3f} {x.size / dt / 1e6:9.1f} {err:9.5f}")


def model_bench(model: Path, text: Path, types, threads, ctx: int, chunks: int) -> None:
    from edgellama.perplexity import perplexity
    from edgellama.quantize import quantize

    txt = text.read_text(encoding="utf-8", errors="replace")
    with tempfile.TemporaryDirectory() as td:
        print(f"\nmodel {model.name}: requantize, then PPL/KL vs the source over {text.name} (c={ctx}, {chunks} windows)")
        print(f"{'type':8} {'quant s':>8} {'MB':>7} {'PPL':>16} {'dPPL':>8} {'KL':>10} {'top1 %':>7}")
        for t in types:
            out = Path(td) / f"{t}.gguf"
            t0 = time.perf_counter()
            quantize(model, out, t, threads=threads)
            dt = time.perf_counter() - t0
            r = perplexity(out, txt, ctx, kl_base=model, threads=threads, max_windows=chunks)
            print(f"{t:8} {dt:8.1f} {out.stat().st_size / 1e6:7.1f} {r.ppl:8.3f}+/-{r.ppl_stderr:6.3f} "
                  f"{r.delta_ppl:+8.3f} {r.kl_mean:10.5f} {100 * r.top1_agreement:7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--cols", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--model")
    ap.add_argument("--text")
    ap.add_argument("--types", default="Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_0,Q3_K_M,Q2_K")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--chunks", type=int, default=8)
    a = ap.parse_args()
    matrix_bench(a.rows, a.cols, a.threads)
    if a.model and a.text:
        model_bench(Path(a.model), Path(a.text), a.types.split(","), a.threads or None, a.ctx, a.chunks)


if __name__ == "__main__":
    main()
