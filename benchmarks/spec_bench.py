"""Speculative decoding benchmark (issue #11): input-grounded tasks and open-ended prompts, greedy.

For each task it reports tokens generated, the draft acceptance rate, the forward passes the
speculative decode needed (plain decode needs one per token), and effective decode tokens/s
(tokens generated / decode seconds, prompt already in the KV cache) for
  - edgellama plain,
  - edgellama speculative (prompt lookup, or --draft-model PATH),
  - llama.cpp plain: llama-bench tg at the task's depth (-d = prompt tokens), same threads,
  - llama-cpp-python's prompt lookup (only when `llama_cpp` is importable),
and checks that the speculative text is identical to the plain one. "spec/plain (CPU time)" is the
same ratio from process CPU time, steadier than wall time when the machine is shared (with -t 1). Summary: geometric mean of
speculative / llama.cpp over the grounded tasks (target >= 1.5x) and the worst speculative / plain
over the open-ended ones (target >= 0.95x).

    PYTHONPATH=src python benchmarks/spec_bench.py MODEL.gguf \
        [--llama-bench /work/llamacpp/build-native/bin/llama-bench] [-n 128] [-t 1] [-r 3] \
        [--draft-model SMALL.gguf] [--tasks code-rename,quote] [--json out.json]

Exit status 1 when a speculative text differs from the plain one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

DEFAULT_LLAMA_BENCH = "/work/llamacpp/build-native/bin/llama-bench"

DOCUMENT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
    "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. "
    "Locally nicknamed La dame de fer, it was constructed as the centerpiece of the 1889 World's Fair. "
    "Although initially criticised by some of France's leading artists and intellectuals for its design, "
    "it has since become a global cultural icon of France. The tower is 330 metres tall, about the same "
    "height as an 81-storey building, and was the tallest man-made structure in the world until the "
    "Chrysler Building in New York City was finished in 1930.")

CODE = '''\
def parse_config(path):
    settings = {}
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings
'''

# name -> (user message, input-grounded?)
TASKS: Dict[str, Tuple[str, bool]] = {
    # (code first, instruction after: SmolLM2-135M rewrites code from scratch when asked first)
    "code-rename": ("```python\n" + CODE + "```\n\nRewrite the code above, renaming the variable `handle` to `f`.",
                    True),
    "code-annotate": ("```python\n" + CODE + "```\n\nAdd type hints to the function above.", True),
    "substitute": ("Copy the following text, replacing every occurrence of 'tower' with 'spire':\n\n"
                   + DOCUMENT, True),
    "quote": (DOCUMENT + "\n\nWho designed the tower and when was it built? Answer by quoting the "
              "sentence of the text that says it.", True),
    "summary-quotes": ("Summarise this text in three sentences, quoting its key phrases:\n\n" + DOCUMENT, True),
    "open-story": ("Write a short story about a lighthouse keeper who finds a message in a bottle.", False),
    "open-explain": ("Explain why the sky is blue to a ten-year-old.", False),
}


def llama_cpp_tg(exe: str, model: str, n_gen: int, depth: int, threads: int, reps: int) -> Optional[float]:
    """llama.cpp's plain decode tokens/s at context depth ``depth`` (None when it cannot run)."""
    if not exe or not os.path.exists(exe):
        return None
    args = [exe, "-m", model, "-p", "0", "-n", str(n_gen), "-d", str(depth), "-t", str(threads),
            "-r", str(reps), "-o", "json"]
    try:
        out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=1800).stdout
        return float(json.loads(out)[0]["avg_ts"])
    except (subprocess.SubprocessError, OSError, ValueError, KeyError, IndexError) as e:
        print(f"llama-bench failed: {e}", file=sys.stderr)
        return None


def llama_cpp_python_lookup(model: str, prompt: List[int], n_gen: int, threads: int) -> Optional[float]:
    """llama-cpp-python with its LlamaPromptLookupDecoding: decode tokens/s (None if not installed)."""
    try:
        from llama_cpp import Llama as LL
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding as LPL
    except ImportError:
        return None
    llm = LL(model, n_ctx=4096, n_threads=threads, verbose=False,
             draft_model=LPL(num_pred_tokens=10, max_ngram_size=2))
    llm.create_completion(prompt, max_tokens=1, temperature=0)  # prompt into the cache
    t0 = time.perf_counter()
    out = llm.create_completion(prompt, max_tokens=n_gen, temperature=0)
    dt = time.perf_counter() - t0
    return out["usage"]["completion_tokens"] / dt


def main(argv: Optional[List[str]] = None) -> int:
    from edgellama.bench import run_spec_bench, spec_prompt_tokens
    from edgellama import Llama
    from edgellama.llama_speculative import LlamaDraftModel, LlamaPromptLookupDecoding

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--llama-bench", default=DEFAULT_LLAMA_BENCH)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("-r", "--repetitions", type=int, default=3, help="interleaved runs; best of them")
    ap.add_argument("--draft-model", default=None, help="draft with this GGUF instead of prompt lookup")
    ap.add_argument("--draft-max", type=int, default=10)
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma separated subset of: " + ", ".join(TASKS))
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    args = ap.parse_args(argv)

    names = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        ap.error(f"unknown task(s) {unknown}; known: {list(TASKS)}")
    tasks = {t: TASKS[t] for t in names}
    if args.draft_model:
        make_drafter = lambda: LlamaDraftModel(args.draft_model, n_draft=args.draft_max, n_threads=args.threads)  # noqa: E731
    else:
        make_drafter = lambda: LlamaPromptLookupDecoding(max_ngram_size=3, num_pred_tokens=args.draft_max)  # noqa: E731

    def progress(row):
        print(f"  {row['task']}: {row['tokens']} tokens, acceptance {100 * row['acceptance_rate']:.0f}%, "
              f"plain {row['plain_tps']:.2f} t/s, spec {row['spec_tps']:.2f} t/s, identical={row['identical']}",
              file=sys.stderr)

    rows = run_spec_bench(args.model, tasks, n_gen=args.n_gen, n_threads=args.threads,
                          repetitions=args.repetitions, make_drafter=make_drafter, progress=progress)
    vocab = Llama(args.model, vocab_only=True)
    for r in rows:
        prompt = spec_prompt_tokens(vocab, tasks[r["task"]][0])
        r["llamacpp_tps"] = llama_cpp_tg(args.llama_bench, args.model, max(1, r["tokens"]), len(prompt),
                                         args.threads, args.repetitions)
        r["llamacpp_python_lookup_tps"] = llama_cpp_python_lookup(args.model, prompt, args.n_gen, args.threads)

    def f(v):
        return "-" if v is None else f"{v:.2f}"

    head = ["task", "grounded", "tokens", "accept", "passes", "edgellama plain", "edgellama spec",
            "llama.cpp plain", "llama-cpp-python lookup", "spec/plain", "spec/plain (CPU time)", "spec/llama.cpp",
            "identical"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        vs_cpp = r["spec_tps"] / r["llamacpp_tps"] if r["llamacpp_tps"] else None
        cpu = (r["spec_cpu_tps"] / r["plain_cpu_tps"]) if r["spec_cpu_tps"] and r["plain_cpu_tps"] else None
        print("| " + " | ".join([r["task"], "yes" if r["grounded"] else "no", str(r["tokens"]),
                                 f"{100 * r['acceptance_rate']:.0f}%", str(r["spec_forward_passes"]),
                                 f(r["plain_tps"]), f(r["spec_tps"]),
                                 f(r["llamacpp_tps"]), f(r["llamacpp_python_lookup_tps"]),
                                 f"{r['speedup']:.2f}x", "-" if cpu is None else f"{cpu:.2f}x",
                                 "-" if vs_cpp is None else f"{vs_cpp:.2f}x",
                                 "yes" if r["identical"] else "NO"]) + " |")
    grounded = [r for r in rows if r["grounded"] and r["llamacpp_tps"]]
    if grounded:
        gm = math.exp(sum(math.log(r["spec_tps"] / r["llamacpp_tps"]) for r in grounded) / len(grounded))
        print(f"\ngrounded tasks: geometric mean speculative / llama.cpp plain = {gm:.2f}x (target >= 1.5x)")
    open_rows = [r for r in rows if not r["grounded"]]
    if open_rows:
        worst = min(r["speedup"] for r in open_rows)
        print(f"open-ended tasks: worst speculative / edgellama plain = {worst:.2f}x (target >= 0.95x)")
    print(f"model {args.model}, {args.threads} thread(s), isa {rows[0]['isa'] if rows else '?'}, "
          f"n_gen {args.n_gen}, best of {args.repetitions}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
