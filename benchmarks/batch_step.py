"""Time one multi-sequence forward pass the way the server's engine runs it: N rows spread over 4
sequences (a 4-stream step with drafts), every row's logits wanted (speculative verification).

    PYTHONPATH=src python benchmarks/batch_step.py MODEL.gguf --rows 10 [--steps 40] [--prompt 16] [-t 2]

Each sequence first gets a prompt of --prompt random tokens; every step is cut back to it after, so
all steps run at the same depth. Prints the median and best step time. (benchmarks/verify_cost.py
times k rows of ONE sequence, a lone stream's speculative step; this one spreads them over four.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edgellama import _core

N_SEQ = 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--rows", type=int, default=10, help="rows per step, spread over 4 sequences")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--prompt", type=int, default=16, help="tokens per sequence before the steps")
    ap.add_argument("-t", "--threads", type=int, default=2)
    args = ap.parse_args()
    if args.rows < 1 or args.steps < 1 or args.prompt < 1:
        ap.error("--rows, --steps and --prompt must be positive")
    model = _core.Model(args.model)
    ctx = _core.Context(model, 1024, args.threads, 256, "f16", "f16", "fast", n_seq=N_SEQ)
    rng = np.random.default_rng(0)
    n_vocab = int(model.hparams["n_vocab"])
    p = args.prompt
    for s in range(N_SEQ):
        ctx.decode_batch(rng.integers(0, n_vocab, p).astype(np.int32), np.full(p, s, np.int32),
                         want_logits=np.arange(p) == p - 1)
    seqs = np.repeat(np.arange(N_SEQ, dtype=np.int32), (args.rows + N_SEQ - 1) // N_SEQ)[:args.rows]
    times = []
    for _ in range(args.steps):
        toks = rng.integers(0, n_vocab, args.rows).astype(np.int32)
        t0 = time.perf_counter()
        ctx.decode_batch(toks, seqs, want_logits=np.ones(args.rows, bool))
        times.append(time.perf_counter() - t0)
        for s in range(N_SEQ):
            ctx.truncate_seq(s, p)
    print(f"{args.rows} rows over {N_SEQ} sequences at depth {p}: median {1e3 * np.median(times):.2f} ms, "
          f"best {1e3 * min(times):.2f} ms ({args.steps} steps, {args.threads} threads)")


if __name__ == "__main__":
    main()
