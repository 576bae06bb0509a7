"""llama-bench-style throughput measurement: ppN (prompt processing: N tokens in one eval from an
empty cache) and tgN (text generation: N single-token evals one after another from an empty
cache), in tokens/s, mean +- stddev over repetitions, one row per test x thread count.

Like llama-bench, prompts are random token ids, only the last position's logits are computed, and
each test does one untimed warm-up run first.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Dict, Iterable, List, Optional

import numpy as np


def _time_pp(llm, tokens: np.ndarray) -> float:
    llm.reset()
    t0 = time.perf_counter()
    llm._eval_last(tokens)
    return time.perf_counter() - t0


def _time_tg(llm, tokens: np.ndarray) -> float:
    llm.reset()
    t0 = time.perf_counter()
    for tok in tokens:
        llm._eval_last([int(tok)])
    return time.perf_counter() - t0


def run_bench(
    model_path: str,
    n_prompt: Iterable[int] = (512,),
    n_gen: Iterable[int] = (128,),
    threads: Iterable[int] = (1, 2),
    repetitions: int = 5,
    precision: str = "fast",
    n_batch: int = 512,
    seed: int = 1234,
    progress=None,
) -> List[Dict]:
    """Returns one dict per test x thread count: test ("pp512" / "tg128"), n_prompt, n_gen, n_threads,
    tokens_per_second (mean over repetitions), stddev, samples (per-repetition tokens/s), isa,
    model, model_type, precision."""
    from edgellama import Llama, _core

    n_prompt = [int(p) for p in n_prompt if int(p) > 0]
    n_gen = [int(n) for n in n_gen if int(n) > 0]
    n_ctx = max(n_prompt + n_gen + [16])
    rng = np.random.default_rng(seed)
    rows: List[Dict] = []
    for t in threads:
        llm = Llama(model_path, n_ctx=n_ctx, n_threads=int(t), n_batch=n_batch, precision=precision)
        try:
            n_vocab = llm.n_vocab()
            tests = [("pp", p) for p in n_prompt] + [("tg", n) for n in n_gen]
            for kind, n in tests:
                tokens = rng.integers(0, n_vocab, size=n, dtype=np.int64).astype(np.int32)
                fn = _time_pp if kind == "pp" else _time_tg
                fn(llm, tokens if kind == "pp" else tokens[: min(n, 16)])  # warm-up
                samples = []
                for _ in range(max(1, repetitions)):
                    samples.append(n / fn(llm, tokens))
                row = {
                    "test": f"{kind}{n}",
                    "n_prompt": n if kind == "pp" else 0,
                    "n_gen": n if kind == "tg" else 0,
                    "n_threads": int(t),
                    "tokens_per_second": statistics.fmean(samples),
                    "stddev": statistics.stdev(samples) if len(samples) > 1 else 0.0,
                    "samples": samples,
                    "isa": _core.isa(),
                    "model": model_path,
                    "model_type": _model_type(llm),
                    "precision": precision,
                }
                rows.append(row)
                if progress:
                    progress(row)
        finally:
            llm.close()
    return rows


def _model_type(llm) -> str:
    ftype = llm.metadata.get("general.file_type")
    names = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
             11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
             17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}
    try:
        return names.get(int(ftype), str(ftype))
    except (TypeError, ValueError):
        return "?"


def format_table(rows: List[Dict]) -> str:
    head = ["model", "type", "isa", "threads", "test", "t/s"]
    lines = []
    for r in rows:
        lines.append([
            r["model"].rsplit("/", 1)[-1], r["model_type"], r["isa"], str(r["n_threads"]), r["test"],
            f"{r['tokens_per_second']:.2f} ± {r['stddev']:.2f}",
        ])
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(head)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for l in lines:
        out.append("| " + " | ".join(c.ljust(w) if i < 5 else c.rjust(w) for i, (c, w) in enumerate(zip(l, widths))) + " |")
    return "\n".join(out)


def _int_list(s: str) -> List[int]:
    return [int(v) for v in str(s).split(",") if v.strip() != ""]


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a .gguf file or a pulled model name (as in every command)")
    parser.add_argument("-p", "--n-prompt", default="512", help="prompt lengths, comma separated (0 = none; default: %(default)s)")
    parser.add_argument("-n", "--n-gen", default="128", help="generation lengths, comma separated (0 = none; default: %(default)s)")
    parser.add_argument("-t", "--threads", default="1,2", help="thread counts, comma separated (default: %(default)s)")
    parser.add_argument("-r", "--repetitions", type=int, default=5, help="timed runs per test (default: %(default)s)")
    parser.add_argument("-b", "--batch-size", type=int, default=512, help="n_batch of the context (default: %(default)s)")
    parser.add_argument("--precision", choices=["fast", "exact"], default="fast", help="matmul path (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")


def run(args) -> int:
    def progress(row):
        if not args.json:
            print(f"  {row['test']} t={row['n_threads']}: {row['tokens_per_second']:.2f} t/s", file=sys.stderr)

    rows = run_bench(args.model, _int_list(args.n_prompt), _int_list(args.n_gen), _int_list(args.threads),
                     args.repetitions, args.precision, args.batch_size, progress=progress)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(rows))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="edgellama bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
