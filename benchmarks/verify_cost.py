"""Cost of verifying k drafted tokens in one forward pass, relative to decoding one token: what a
speculative step pays per weight read. Random weights are fine here (no acceptance is measured), so
this is how the 1.1B-shape cost is reported. One command, for a quiet machine:

    PYTHONPATH=src python3 benchmarks/verify_cost.py MODEL.gguf [-t 1] [--depth 256] [-r 9]

Per k: median wall time of one eval of k tokens after `depth` tokens in the cache (the cache is
rolled back after each eval), ms, ratio to k = 1, and the break-even acceptance: a step of k tokens
pays off when it yields more than cost(k)/cost(1) tokens on average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import edgellama  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("--depth", type=int, default=256)
    ap.add_argument("-r", "--repeats", type=int, default=9)
    ap.add_argument("--ks", default="1,2,3,4,6,8,12,16")
    args = ap.parse_args()
    t0 = time.perf_counter()
    llm = edgellama.Llama(args.model, n_ctx=args.depth + 64, n_threads=args.threads, verbose=False)
    load_s = time.perf_counter() - t0
    prompt = [(7 * i + 11) % max(2, llm.n_vocab() - 1) + 1 for i in range(args.depth)]
    llm.eval(prompt)
    print(f"# {os.path.basename(args.model)} threads={args.threads} depth={args.depth} isa={llm.isa} "
          f"model load {load_s:.2f} s (weights packed: EDGELLAMA_REPACK={os.environ.get('EDGELLAMA_REPACK', '1')}) "
          f"load={os.getloadavg()[0]:.2f}")
    print(f"{'k':>3} {'ms':>8} {'cost/k=1':>9}")
    base = None
    for k in [int(v) for v in args.ks.split(",")]:
        times = []
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            llm._eval_last([(13 * j + 5) % (llm.n_vocab() - 1) + 1 for j in range(k)])
            times.append(time.perf_counter() - t0)
            llm._truncate_cache(args.depth)
        ms = 1e3 * statistics.median(times[1:])
        base = base or ms
        print(f"{k:3d} {ms:8.2f} {ms / base:9.2f}", flush=True)
    print(f"# load={os.getloadavg()[0]:.2f} (after)")


if __name__ == "__main__":
    main()
