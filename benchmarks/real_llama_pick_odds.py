"""How often llama-cpp-python 0.3.36's test_real_llama passes its `number_1 != number_2` on a
model: the test's number-picking part (set_seed(s), save_state, two picks of "a number from 1 to
10" under its grammar with its sampling parameters, load_state, a third pick) for many s.

    PYTHONPATH=src python benchmarks/real_llama_pick_odds.py [--impl edgellama|llama_cpp] [--seeds 100]

--impl llama_cpp runs llama-cpp-python itself (e.g. the sdist with a built libllama:
PYTHONPATH=/work/llamacpp/llama_cpp_python-0.3.36 LLAMA_CPP_LIB_PATH=/work/llamacpp/build-native/bin,
plus its `diskcache` dependency). Prints the pick distribution, the share of seeds where the
first two picks differ (what the test asserts), and where the third repeats the first (the
load_state half, which must be all of them); the exact pick probabilities from the model's
logits after the grammar, top-k 50, top-p 0.9 and min-p 0.05 follow for comparison.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Pick a number from 1 to 10?:\n"
GRAMMAR = 'root ::= "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "10"\n'
PICK = dict(max_tokens=4, top_k=50, top_p=0.9, temperature=1.0)  # the test's parameters


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", default="edgellama", choices=["edgellama", "llama_cpp"])
    ap.add_argument("--model", default=str(ROOT.parent / "shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--seeds", type=int, default=100)
    a = ap.parse_args()
    lib = importlib.import_module(a.impl)
    m = lib.Llama(a.model, n_ctx=32, n_batch=32, n_ubatch=32, logits_all=False, flash_attn=True, verbose=False)
    grammar = lib.LlamaGrammar.from_string(GRAMMAR, verbose=False)

    def pick() -> str:
        return m.create_completion(PROMPT, grammar=grammar, **PICK)["choices"][0]["text"]

    picks, differ, repeat = Counter(), 0, 0
    for s in range(a.seeds):
        m.set_seed(s)
        state = m.save_state()
        n1, n2 = pick(), pick()
        m.load_state(state)
        n3 = pick()
        picks.update([n1, n2])
        differ += n1 != n2
        repeat += n1 == n3
    m.set_seed(1337)  # the test's own seed
    state = m.save_state()
    n1, n2 = pick(), pick()
    m.load_state(state)
    n3 = pick()
    print(f"{a.impl} on {Path(a.model).name}, set_seed(0..{a.seeds - 1}):")
    print("  picks:", ", ".join(f"{k}: {v / (2 * a.seeds):.3f}" for k, v in picks.most_common()))
    print(f"  number_1 != number_2 for {differ / a.seeds:.2f} of the seeds; number_3 == number_1 for {repeat / a.seeds:.2f}")
    print(f"  set_seed(1337), the test's: {n1!r} {n2!r} {n3!r}")

    # exact first-token probabilities: softmax over the digits the grammar allows, then the test's
    # top-p 0.9 and create_completion's default min-p 0.05 (top-k 50 keeps all nine)
    m2 = lib.Llama(a.model, n_ctx=32, logits_all=True, verbose=False)
    toks = m2.tokenize(PROMPT.encode(), add_bos=True, special=True)
    m2.eval(toks)
    logits = np.array(m2.scores[len(toks) - 1], dtype=np.float64)
    digits = [m2.tokenize(str(d).encode(), add_bos=False, special=True)[0] for d in range(1, 10)]
    p = np.exp(logits[digits] - logits[digits].max())
    p /= p.sum()
    order = np.argsort(-p)
    keep = order[: int(np.searchsorted(np.cumsum(p[order]), 0.9) + 1)]
    keep = keep[p[keep] >= 0.05 * p[keep].max()]
    q = p[keep] / p[keep].sum()
    names = ["10" if d == 0 else str(d + 1) for d in keep]  # "1" is always followed by "0" here
    print("  exact pick probabilities:", ", ".join(f"{n}: {v:.3f}" for n, v in zip(names, q)),
          f"-> P(two picks differ) = {1 - float(np.sum(q ** 2)):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
