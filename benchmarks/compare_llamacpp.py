"""edgellama vs llama.cpp on the same GGUF files, interleaved in one run so both see the same
machine state: for each model and thread count, repetitions alternate (llama-bench -r 1, then
edgellama, ...), and the table reports mean +- stddev of each and the ratio edgellama / llama.cpp.

    python benchmarks/compare_llamacpp.py MODEL.gguf [...] --llama-bench /path/to/llama-bench \
        [-p 512] [-n 128] [-t 1,2] [-r 5] [--json out.json] [--quiet-below 0.5 --max-wait 180]

With --quiet-below L every row (one file, thread count and test) starts only once the 1-minute load
average is below L (waiting up to --max-wait seconds; a row that started above it is marked "LOUD"):
the benchmark's own previous row raises the load, so without the wait later rows start loaded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))


def llama_bench_once(exe: str, model: str, test: str, n: int, threads: int) -> float:
    args = [exe, "-m", model, "-t", str(threads), "-r", "1", "-o", "json"]
    args += ["-p", str(n), "-n", "0"] if test == "pp" else ["-p", "0", "-n", str(n)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    return float(rows[0]["avg_ts"])


def edgellama_once(llm, test: str, n: int, rng) -> float:
    import time

    import numpy as np

    tokens = rng.integers(0, llm.n_vocab(), size=n).astype(np.int32)
    llm.reset()
    t0 = time.perf_counter()
    if test == "pp":
        llm._eval_last(tokens)
    else:
        for t in tokens:
            llm._eval_last([int(t)])
    return n / (time.perf_counter() - t0)


def loadavg() -> float:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return float("nan")


def wait_for_quiet(below: float, max_wait: float) -> bool:
    """Sleep until the 1-minute load average is below ``below``; False if it still is not after max_wait s."""
    import time

    deadline = time.monotonic() + max_wait
    while loadavg() >= below:
        if time.monotonic() >= deadline:
            return False
        time.sleep(2.0)
    return True


def summary(xs):
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--llama-bench", default=os.environ.get("LLAMA_BENCH", "/work/llamacpp-build/bin/llama-bench"))
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-t", "--threads", default="1,2")
    ap.add_argument("-r", "--repetitions", type=int, default=5)
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--roofline", help="membw.py --json output: adds tg as %% of the bandwidth roofline")
    ap.add_argument("--quiet-below", type=float, default=0.0,
                    help="start each row only below this 1-minute load average (0: do not wait)")
    ap.add_argument("--max-wait", type=float, default=180.0, help="longest wait for --quiet-below, seconds")
    args = ap.parse_args(argv)

    import numpy as np

    from edgellama import Llama, _core

    rng = np.random.default_rng(0)
    roof = {}
    if args.roofline:
        with open(args.roofline) as f:
            r = json.load(f)
        for m, d in r["models"].items():
            roof[os.path.basename(m)] = {int(t): v for t, v in d["roofline_tg_tps"].items()}
    tests = [t for t in (("pp", args.n_prompt), ("tg", args.n_gen)) if t[1] > 0]
    rows = []
    print(f"# {datetime.datetime.now().isoformat(timespec='seconds')}  {platform.node()}  "
          f"isa={_core.isa()}  cpus={os.cpu_count()}", flush=True)
    for model in args.models:
        for threads in [int(x) for x in args.threads.split(",")]:
            llm = Llama(model, n_ctx=max(args.n_prompt, args.n_gen, 16), n_threads=threads, n_batch=512)
            for test, n in tests:
                edgellama_once(llm, test, min(n, 32), rng)  # warm-up (page in the weights)
                ours, theirs = [], []
                quiet = wait_for_quiet(args.quiet_below, args.max_wait) if args.quiet_below > 0 else True
                load_before = loadavg()
                for _ in range(args.repetitions):
                    theirs.append(llama_bench_once(args.llama_bench, model, test, n, threads))
                    ours.append(edgellama_once(llm, test, n, rng))
                (om, osd), (tm, tsd) = summary(ours), summary(theirs)
                row = dict(model=os.path.basename(model), test=f"{test}{n}", n_threads=threads,
                           edgellama_tps=om, edgellama_stddev=osd, llamacpp_tps=tm, llamacpp_stddev=tsd,
                           ratio=om / tm, edgellama_samples=ours, llamacpp_samples=theirs, isa=_core.isa(),
                           load_before=load_before, load_after=loadavg(), started_quiet=quiet)
                rf = roof.get(row["model"], {}).get(threads)
                row["roofline_tps"] = rf if test == "tg" else None
                rows.append(row)
                extra = f"   {100 * om / rf:4.0f}% / {100 * tm / rf:4.0f}% of roofline" if row["roofline_tps"] else ""
                print(f"{row['model']:<34} {row['test']:>6} t={threads}  edgellama {om:8.2f} ± {osd:5.2f}   "
                      f"llama.cpp {tm:8.2f} ± {tsd:5.2f}   ratio {om / tm:5.2f}x{extra}   "
                      f"load {load_before:.2f}->{row['load_after']:.2f}{'' if quiet else ' LOUD'}", flush=True)
            llm.close()
    print()
    print("| model | test | threads | edgellama t/s | llama.cpp t/s | edgellama ÷ llama.cpp | % roofline (ours / llama.cpp) | load before→after |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        rf = r.get("roofline_tps")
        pct = f"{100 * r['edgellama_tps'] / rf:.0f}% / {100 * r['llamacpp_tps'] / rf:.0f}%" if rf else ""
        print(f"| {r['model']} | {r['test']} | {r['n_threads']} | {r['edgellama_tps']:.2f} ± {r['edgellama_stddev']:.2f} "
              f"| {r['llamacpp_tps']:.2f} ± {r['llamacpp_stddev']:.2f} | {r['ratio']:.2f} | {pct} "
              f"| {r['load_before']:.2f}→{r['load_after']:.2f}{'' if r['started_quiet'] else ' LOUD'} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
