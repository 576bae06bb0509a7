"""llama-bench-style throughput measurement: ppN (prompt processing: N tokens in one eval from an
empty cache) and tgN (text generation: N single-token evals one after another from an empty
cache), in tokens/s, mean +- stddev over repetitions, one row per test x depth x thread count.

Like llama-bench, prompts are random token ids, only the last position's logits are computed, and
each test does one untimed warm-up run first. A depth D (``-d``, llama-bench's ``--n-depth``) runs the
test after D tokens already in the cache ("tg128 @ d4096"): each repetition prefills them untimed,
so long-context decode (attention over the cache) is measured, not only the weights' read.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np


def _start(llm, depth_tokens: np.ndarray) -> None:
    """An empty cache, then the depth tokens in it (untimed)."""
    llm.reset()
    if depth_tokens.size:
        llm._eval_last(depth_tokens)


def _time_pp(llm, tokens: np.ndarray, depth_tokens: np.ndarray) -> float:
    _start(llm, depth_tokens)
    t0 = time.perf_counter()
    llm._eval_last(tokens)
    return time.perf_counter() - t0


def _time_tg(llm, tokens: np.ndarray, depth_tokens: np.ndarray) -> float:
    _start(llm, depth_tokens)
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
    n_depth: Iterable[int] = (0,),
) -> List[Dict]:
    """Returns one dict per test x depth x thread count: test ("pp512" / "tg128" / "tg128 @ d4096"),
    n_prompt, n_gen, n_depth, n_threads, tokens_per_second (mean over repetitions), stddev, samples
    (per-repetition tokens/s), isa, model, model_type, precision."""
    from edgellama import Llama, _core

    n_prompt = [int(p) for p in n_prompt if int(p) > 0]
    n_gen = [int(n) for n in n_gen if int(n) > 0]
    n_depth = [int(d) for d in n_depth] or [0]
    if any(d < 0 for d in n_depth):
        raise ValueError(f"n_depth must be >= 0, got {n_depth}")
    n_ctx = max(n_prompt + n_gen + [16]) + max(n_depth)
    rng = np.random.default_rng(seed)
    rows: List[Dict] = []
    for t in threads:
        llm = Llama(model_path, n_ctx=n_ctx, n_threads=int(t), n_batch=n_batch, precision=precision)
        try:
            n_vocab = llm.n_vocab()
            tests = [("pp", p, d) for d in n_depth for p in n_prompt] + [("tg", n, d) for d in n_depth for n in n_gen]
            for kind, n, depth in tests:
                tokens = rng.integers(0, n_vocab, size=n, dtype=np.int64).astype(np.int32)
                depth_tokens = rng.integers(0, n_vocab, size=depth, dtype=np.int64).astype(np.int32)
                fn = _time_pp if kind == "pp" else _time_tg
                fn(llm, tokens if kind == "pp" else tokens[: min(n, 16)], depth_tokens)  # warm-up
                samples = []
                for _ in range(max(1, repetitions)):
                    samples.append(n / fn(llm, tokens, depth_tokens))
                row = {
                    "test": f"{kind}{n}" + (f" @ d{depth}" if depth else ""),
                    "n_prompt": n if kind == "pp" else 0,
                    "n_gen": n if kind == "tg" else 0,
                    "n_depth": depth,
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


# ----------------------------------------------------------------------------------------------
# `edgellama bench --spec`: speculative decoding on real prompts (random tokens cannot show it)
# ----------------------------------------------------------------------------------------------

_SPEC_DOCUMENT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
    "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. "
    "Locally nicknamed La dame de fer, it was constructed as the centerpiece of the 1889 World's Fair. The "
    "tower is 330 metres tall, about the same height as an 81-storey building, and the tallest structure "
    "in Paris.")

# name -> (user message, input-grounded?). Grounded tasks copy from the prompt (drafts pay off);
# open-ended ones show that failing drafts cost (almost) nothing. benchmarks/spec_bench.py has more.
SPEC_TASKS: Dict[str, Tuple[str, bool]] = {
    "copy-substitute": ("Copy the following text, replacing every occurrence of 'tower' with 'spire':\n\n"
                        + _SPEC_DOCUMENT, True),
    "open-ended": ("Write a short story about a lighthouse keeper who finds a message in a bottle.", False),
}


def spec_prompt_tokens(llm, user_text: str) -> List[int]:
    """The prompt for one task: a chat turn when the model has a chat template, else the text."""
    if getattr(llm, "chat_template", None):
        text = llm.apply_chat_template([{"role": "user", "content": user_text}])
        return list(llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))
    return list(llm.tokenize(user_text.encode("utf-8"), add_bos=True))


def time_decode(llm, prompt_tokens: List[int], n_gen: int, drafter) -> Tuple[str, int, float, float]:
    """Greedy decode of up to ``n_gen`` tokens after a prompt already in the KV cache (so the time
    is the decode alone): (text, tokens generated, wall seconds, process CPU seconds). The CPU time
    is steadier than the wall time on a busy machine (it leaves out waiting for a core)."""
    llm.draft_model = None
    llm.create_completion(prompt_tokens, max_tokens=1, temperature=0)  # prompt into the cache, untimed
    llm.draft_model = drafter
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        out = llm.create_completion(prompt_tokens, max_tokens=n_gen, temperature=0)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
    finally:
        llm.draft_model = None
    return out["choices"][0]["text"], int(out["usage"]["completion_tokens"]), dt, dc


def run_spec_bench(model_path: str, tasks: Optional[Dict[str, Tuple[str, bool]]] = None, n_gen: int = 128,
                   n_threads: Optional[int] = None, repetitions: int = 3, make_drafter=None,
                   n_ctx: int = 4096, progress=None) -> List[Dict]:
    """Per task: greedy decode plain and with speculation (interleaved, best of ``repetitions``),
    tokens generated, acceptance rate, effective decode tokens/s of both, and whether the texts are
    identical. ``make_drafter()`` makes the drafter (default: prompt lookup, max_ngram_size=3)."""
    from edgellama import Llama, _core
    from edgellama.llama_speculative import LlamaPromptLookupDecoding

    tasks = SPEC_TASKS if tasks is None else tasks
    make_drafter = make_drafter or (lambda: LlamaPromptLookupDecoding(max_ngram_size=3, num_pred_tokens=10))
    llm = Llama(model_path, n_ctx=n_ctx, n_threads=n_threads)
    rows: List[Dict] = []
    try:
        for name, (user_text, grounded) in tasks.items():
            prompt = spec_prompt_tokens(llm, user_text)
            drafter = make_drafter()
            best_plain = best_spec = cpu_plain = cpu_spec = float("inf")
            text_plain = text_spec = ""
            n_plain = n_spec = 0
            for _ in range(max(1, repetitions)):  # interleaved, so both see the same machine state
                text_plain, n_plain, dt, dc = time_decode(llm, prompt, n_gen, None)
                best_plain, cpu_plain = min(best_plain, dt), min(cpu_plain, dc)
                text_spec, n_spec, dt, dc = time_decode(llm, prompt, n_gen, drafter)
                best_spec, cpu_spec = min(best_spec, dt), min(cpu_spec, dc)
            st = drafter.stats
            accepted = st.accepted if st is not None else 0
            row = {
                "task": name, "grounded": grounded, "prompt_tokens": len(prompt), "tokens": n_plain,
                "acceptance_rate": st.acceptance_rate if st is not None else 0.0,
                "drafted": st.drafted if st is not None else 0, "accepted": accepted,
                # each forward pass yields one token plus the accepted draft tokens it verified
                "spec_forward_passes": n_spec - accepted,
                "plain_tps": n_plain / best_plain, "spec_tps": n_spec / best_spec,
                "plain_cpu_tps": n_plain / cpu_plain if cpu_plain > 0 else None,
                "spec_cpu_tps": n_spec / cpu_spec if cpu_spec > 0 else None,
                "speedup": (n_spec / best_spec) / (n_plain / best_plain),
                "identical": text_plain == text_spec and n_plain == n_spec,
                "n_threads": llm.n_threads, "isa": _core.isa(), "model": model_path,
            }
            rows.append(row)
            if progress:
                progress(row)
    finally:
        llm.close()
    return rows


def format_spec_table(rows: List[Dict]) -> str:
    head = ["task", "tokens", "accepted", "passes", "plain t/s", "spec t/s", "speedup", "identical"]
    lines = [[r["task"], str(r["tokens"]), f"{100 * r['acceptance_rate']:.0f}% of {r['drafted']}",
              str(r["spec_forward_passes"]), f"{r['plain_tps']:.2f}", f"{r['spec_tps']:.2f}",
              f"{r['speedup']:.2f}x", "yes" if r["identical"] else "NO"] for r in rows]
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(head)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(l, widths)) + " |" for l in lines]
    return "\n".join(out)


def _int_list(s: str) -> List[int]:
    return [int(v) for v in str(s).split(",") if v.strip() != ""]


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a .gguf file or a pulled model name (as in every command)")
    parser.add_argument("-p", "--n-prompt", default="512", help="prompt lengths, comma separated (0 = none; default: %(default)s)")
    parser.add_argument("-n", "--n-gen", default="128", help="generation lengths, comma separated (0 = none; default: %(default)s)")
    parser.add_argument("-t", "--threads", default="1,2", help="thread counts, comma separated (default: %(default)s)")
    parser.add_argument("-d", "--n-depth", default="0",
                        help="tokens already in the cache before each test, comma separated (llama-bench's "
                             "--n-depth; default: %(default)s)")
    parser.add_argument("-r", "--repetitions", type=int, default=5, help="timed runs per test (default: %(default)s)")
    parser.add_argument("-b", "--batch-size", type=int, default=512, help="n_batch of the context (default: %(default)s)")
    parser.add_argument("--precision", choices=["fast", "exact"], default="fast", help="matmul path (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    parser.add_argument("--spec", action="store_true",
                        help="speculative decoding instead: greedy decode of -n tokens on built-in tasks (one "
                             "copying from its prompt, one open-ended), plain vs prompt lookup; reports the "
                             "acceptance rate and effective decode tokens/s (first -t value)")


def run(args) -> int:
    if getattr(args, "spec", False):
        return _run_spec(args)
    def progress(row):
        if not args.json:
            print(f"  {row['test']} t={row['n_threads']}: {row['tokens_per_second']:.2f} t/s", file=sys.stderr)

    rows = run_bench(args.model, _int_list(args.n_prompt), _int_list(args.n_gen), _int_list(args.threads),
                     args.repetitions, args.precision, args.batch_size, progress=progress,
                     n_depth=_int_list(args.n_depth))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(rows))
    return 0


def _run_spec(args) -> int:
    def progress(row):
        if not args.json:
            print(f"  {row['task']}: plain {row['plain_tps']:.2f} t/s, speculative {row['spec_tps']:.2f} t/s",
                  file=sys.stderr)

    n_gen = (_int_list(args.n_gen) or [128])[0]
    threads = _int_list(args.threads)
    rows = run_spec_bench(args.model, n_gen=n_gen, n_threads=threads[0] if threads else None,
                          repetitions=args.repetitions, progress=progress)
    print(json.dumps(rows, indent=1) if args.json else format_spec_table(rows))
    return 0 if all(r["identical"] for r in rows) else 1


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="edgellama bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
