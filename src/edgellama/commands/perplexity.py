"""`edgellama perplexity MODEL -f TEXT [-c 512] [--kl-divergence-base BASE.gguf]`"""

from __future__ import annotations

import argparse
import sys

NAME = "perplexity"
HELP = "perplexity of a GGUF model over a text (and KL divergence against a base model)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a .gguf file or a pulled model name (as in every command)")
    p.add_argument("-f", "--file", required=True, help="text file to score")
    p.add_argument("-c", "--ctx-size", type=int, default=512, help="window length in tokens (default 512)")
    p.add_argument("--kl-divergence-base", metavar="BASE.gguf", help="compare with this model: KL divergence, top-1, ΔPPL")
    p.add_argument("--chunks", type=int, default=None, help="score at most this many windows")
    p.add_argument("--threads", "-t", type=int, default=None, help="threads (default: all physical cores)")


def run(args: argparse.Namespace) -> int:
    from ..perplexity import perplexity

    if args.ctx_size < 4:
        print("edgellama: error: -c must be at least 4", file=sys.stderr)
        return 2
    try:
        with open(args.file, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        print(f"edgellama: error: {e}", file=sys.stderr)
        return 1

    def progress(i: int, n: int, ppl: float) -> None:
        print(f"[{i}/{n}] running ppl {ppl:.4f}", file=sys.stderr)

    try:
        r = perplexity(
            args.model, text, args.ctx_size, kl_base=args.kl_divergence_base, threads=args.threads,
            max_windows=args.chunks, on_window=progress,
        )
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, RuntimeError) as e:
        print(f"edgellama: error: {e}", file=sys.stderr)
        return 1
    print(f"windows: {r.n_windows} x {r.n_ctx} tokens, scored tokens: {r.n_tokens}")
    print(f"PPL = {r.ppl:.4f} +/- {r.ppl_stderr:.4f}")
    if r.kl_mean is not None:
        print(f"base PPL = {r.base_ppl:.4f} +/- {r.base_ppl_stderr:.4f}")
        print(f"delta PPL = {r.delta_ppl:+.4f}")
        print(f"mean KL divergence = {r.kl_mean:.6f} +/- {r.kl_stderr:.6f}")
        print(f"top-1 agreement = {100 * r.top1_agreement:.2f}% +/- {100 * r.top1_stderr:.2f}%")
    return 0
