"""A/B of two edgellama builds on the cost of one forward pass of k tokens (decode steps, server
batches, draft verification): for each model, processes of build A and build B alternate (A B A B ...),
each loading the model, filling the cache with `depth` tokens and timing `evals` evaluations of k
tokens per k (the cache is rolled back after each); reported per k: the median over the rounds of
each build's median, and B / A. Alternating whole processes moves both builds alike when the host
drifts; this host also has speed modes ~15% apart, so read differences under ~5% as unresolved.

    python3 benchmarks/eval_ab.py --a /path/to/old/site-packages --b src MODEL.gguf [MODEL ...] \\
        [--ks 1,2,4,8] [-t 2] [--rounds 3] [--depth 256]

--a / --b: folders holding an `edgellama` package (an installed build's site-packages, a copy of it,
or a checkout's src/ after scripts/dev_build.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _worker(args: argparse.Namespace) -> None:
    sys.path.insert(0, args.worker)
    import edgellama

    llm = edgellama.Llama(args.models[0], n_ctx=args.depth + 64, n_threads=args.threads, verbose=False)
    n_vocab = llm.n_vocab()
    llm.eval([(7 * i + 11) % (n_vocab - 1) + 1 for i in range(args.depth)])
    out = {}
    for k in [int(v) for v in args.ks.split(",")]:
        times = []
        for _ in range(args.evals + 1):
            t0 = time.perf_counter()
            llm._eval_last([(13 * j + 5) % (n_vocab - 1) + 1 for j in range(k)])
            times.append(time.perf_counter() - t0)
            llm._truncate_cache(args.depth)
        out[k] = 1e3 * statistics.median(times[1:])  # the first eval warms up
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--a", help="folder with build A's edgellama package")
    ap.add_argument("--b", help="folder with build B's edgellama package")
    ap.add_argument("--ks", default="1,2,4,8")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--depth", type=int, default=256)
    ap.add_argument("--evals", type=int, default=0, help="evaluations per k and process (0: 10, 40 below 300 MB)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return
    if not args.a or not args.b:
        ap.error("--a and --b are required")
    for folder in (args.a, args.b):
        if not os.path.isdir(os.path.join(folder, "edgellama")):
            ap.error(f"{folder}: no edgellama package in this folder")
    print(f"# A = {args.a}, B = {args.b}, threads {args.threads}, depth {args.depth}, load {os.getloadavg()[0]:.2f}")
    for model in args.models:
        evals = args.evals or (40 if os.path.getsize(model) < 300 << 20 else 10)
        runs = {"A": [], "B": []}
        for _ in range(args.rounds):
            for name, folder in (("A", args.a), ("B", args.b)):
                cmd = [sys.executable, os.path.abspath(__file__), model, "--worker", folder, "--ks", args.ks,
                       "-t", str(args.threads), "--depth", str(args.depth), "--evals", str(evals)]
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
                if res.returncode != 0:
                    sys.exit(f"{model}: build {name} failed:\n{res.stderr[-2000:]}")
                runs[name].append({int(k): v for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items()})
        for k in [int(v) for v in args.ks.split(",")]:
            a = statistics.median(r[k] for r in runs["A"])
            b = statistics.median(r[k] for r in runs["B"])
            print(f"{os.path.basename(model):34s} t={args.threads} k={k:2d}  A {a:8.2f} ms  B {b:8.2f} ms  B/A {b / a:5.3f}"
                  f"  (A {[round(r[k], 2) for r in runs['A']]}, B {[round(r[k], 2) for r in runs['B']]})", flush=True)
    print(f"# load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
