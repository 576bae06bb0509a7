"""`edgellama quantize INPUT OUTPUT --type TYPE [--calibrate TEXT | --imatrix FILE] [--rounding search|reference] [-t/--threads N]
[--tokenizer PATH]`"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
import time

NAME = "quantize"
HELP = "convert a checkpoint (HF directory, llama2.c .bin, GGUF) to a quantized GGUF file"

_TYPES = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS, IQ3_S, IQ3_M, IQ3_XS, IQ3_XXS, IQ2_M, IQ2_S, IQ2_XS, IQ2_XXS, IQ1_M, IQ1_S (IQ3_XS, IQ3_XXS, IQ2_*, IQ1_* need --imatrix or --calibrate)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="Hugging Face checkpoint directory, llama2.c checkpoint (.bin), GGUF file or "
                   "pulled model name")
    p.add_argument("output", help="GGUF file to write (written to a temporary file and renamed when complete)")
    # -t is threads in every command (llama.cpp's convention); the type has only the long flag
    p.add_argument("--type", default="Q4_K_M", help=f"file type: {_TYPES} (default Q4_K_M)")
    p.add_argument("--calibrate", metavar="TEXT_FILE", help="weight the quantization by activations over this text")
    p.add_argument("--imatrix", metavar="FILE",
                   help="weight the quantization by a llama.cpp importance matrix (GGUF or .dat, from "
                   "llama-imatrix or `edgellama imatrix`)")
    p.add_argument("--calibrate-ctx", type=int, default=512, help="window length for --calibrate (default 512)")
    p.add_argument("--calibrate-chunks", type=int, default=None, help="at most this many windows of --calibrate")
    p.add_argument(
        "--rounding",
        choices=("search", "reference"),
        default="search",
        help="search (default): per-block error-minimising scale search for every quantized type; "
        "reference: Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 tensors rounded exactly like llama.cpp / gguf-py "
        "(byte-identical files; not combinable with --calibrate/--imatrix). K-quants always search",
    )
    p.add_argument("-t", "--threads", type=int, default=None, help="threads (default: all physical cores)")
    p.add_argument("--tokenizer", metavar="PATH", help="llama2.c: tokenizer.bin or tokenizer.model (default: beside INPUT)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def run(args: argparse.Namespace) -> int:
    # The cyclic garbage collector is paused for the command: nothing it allocates forms cycles worth
    # collecting, and ~60 collections over the imported modules' objects cost ~10 ms of a 0.6 s run.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(args)
    finally:
        if gc_was_enabled:
            gc.enable()


def _run(args: argparse.Namespace) -> int:
    if "numpy" not in sys.modules:
        # The quantizer does no BLAS work: without this, NumPy's OpenBLAS starts a thread per core at
        # import, and they spin on the cores the quantizer's threads need (3-4 % of a Q8_0 run's CPU).
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from ..convert import ConversionError
    from ..quantize import quantize

    if args.threads is not None and args.threads <= 0:
        print("edgellama: error: --threads must be a positive integer", file=sys.stderr)
        return 2

    def note(msg: str) -> None:
        print(f"note: {msg}", file=sys.stderr)

    from ..model_ref import locate_model, looks_like_path

    t0 = time.perf_counter()
    # SIGTERM (kill, a CI timeout, a container stop) unwinds like Ctrl-C, so the writer removes its
    # .partial file; the default action would end the process on the spot and leave it behind.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _in_main_thread() else None
    try:
        if not os.path.exists(args.input) and not looks_like_path(args.input):
            args.input = str(locate_model(args.input))  # a pulled model name, like every MODEL argument
        out = quantize(
            args.input,
            args.output,
            args.type,
            calibrate=args.calibrate,
            threads=args.threads,
            tokenizer=args.tokenizer,
            progress=not args.quiet,
            calibrate_ctx=args.calibrate_ctx,
            calibrate_chunks=args.calibrate_chunks,
            rounding=args.rounding,
            imatrix=args.imatrix,
            on_note=note,
        )
    except KeyboardInterrupt:
        print("edgellama: interrupted; no output written", file=sys.stderr)
        return 130
    except (ConversionError, ValueError, FileNotFoundError, OSError, RuntimeError) as e:
        print(f"edgellama: error: {e}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    size = out.stat().st_size
    print(f"wrote {out} ({size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
