"""`edgellama imatrix MODEL -f TEXT [-o imatrix.gguf] [-c 512] [--chunks N] [--process-output] [-t N]`:
compute an importance matrix the way llama-imatrix does and write it in llama.cpp's format (GGUF;
the legacy .dat format when OUTPUT ends in .dat), for `edgellama quantize --imatrix` or
llama-quantize --imatrix."""

from __future__ import annotations

import argparse
import os
import sys
import time

NAME = "imatrix"
HELP = "compute an importance matrix over a text (llama.cpp's imatrix format) for quantize --imatrix"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a .gguf file or a pulled model name (as in every command)")
    p.add_argument("-f", "--file", required=True, help="calibration text file")
    p.add_argument("-o", "--output", default="imatrix.gguf",
                   help="file to write (default imatrix.gguf); a name ending in .dat gets llama.cpp's legacy format")
    p.add_argument("-c", "--ctx-size", type=int, default=512, help="chunk length in tokens (default 512)")
    p.add_argument("--chunks", type=int, default=None, help="use at most this many chunks of the text")
    p.add_argument("--process-output", action="store_true", help="also collect output.weight (llama-imatrix's flag)")
    p.add_argument("--threads", "-t", type=int, default=None, help="threads (default: all physical cores)")


def run(args: argparse.Namespace) -> int:
    from ..imatrix_file import write_imatrix
    from ..model_ref import locate_model, looks_like_path
    from ..quantize import collect_imatrix

    if args.ctx_size < 2:
        print("edgellama: error: -c/--ctx-size must be at least 2", file=sys.stderr)
        return 2
    if args.chunks is not None and args.chunks < 1:
        print("edgellama: error: --chunks must be a positive integer", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads <= 0:
        print("edgellama: error: --threads must be a positive integer", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        with open(args.file, encoding="utf-8", errors="replace") as f:
            text = f.read()
        model = args.model
        if not os.path.exists(model) and not looks_like_path(model):
            model = str(locate_model(model))
        im = collect_imatrix(
            model, text, n_ctx=args.ctx_size, threads=args.threads, max_chunks=args.chunks,
            dataset=args.file, process_output=args.process_output,
        )
        out = write_imatrix(args.output, im)
    except KeyboardInterrupt:
        print("edgellama: interrupted; no output written", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as e:
        print(f"edgellama: error: {e}", file=sys.stderr)
        return 1
    print(
        f"wrote {out}: {len(im.entries)} weights, {im.chunk_count} chunks x {im.chunk_size} tokens "
        f"in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    return 0
