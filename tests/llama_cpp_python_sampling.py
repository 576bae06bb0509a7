"""Run by tests/test_seeds_llama_cpp_python.py in a child process with llama-cpp-python importable:
sampled completions from llama-cpp-python itself, with the logits each token was drawn from.

    python tests/llama_cpp_python_sampling.py MODEL CASES_JSON OUT_NPZ

CASES_JSON: {"prompt": str, "max_tokens": int, "calls": [{"temperature": t, "seed": s or null,
"top_k": k, "top_p": p, "min_p": m}, ...], "object_seed": int}. All calls run on one
``Llama(MODEL, seed=object_seed, logits_all=True)`` in order (calls without a seed continue
llama-cpp-python's seed chain). OUT_NPZ gets, per call i: text_i, tokens_i (the sampled ids that
were evaluated), logits_i (the logits each of them was drawn from, one row per token),
seed_i (the object's seed after the call, i.e. the seed the call sampled with).
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main() -> int:
    import llama_cpp

    model, cases_path, out_path = sys.argv[1:4]
    with open(cases_path) as f:
        cases = json.load(f)
    llm = llama_cpp.Llama(model, n_ctx=256, n_batch=256, logits_all=True, seed=cases["object_seed"], verbose=False)
    out = {}
    for i, call in enumerate(cases["calls"]):
        text = llm.create_completion(cases["prompt"], max_tokens=cases["max_tokens"], **call)["choices"][0]["text"]
        n_prompt = len(llm.tokenize(cases["prompt"].encode()))
        ids = np.array(llm._input_ids[n_prompt:llm.n_tokens], dtype=np.int32)  # sampled and evaluated
        # the token at position n_prompt + j was drawn from the logits after position n_prompt + j - 1
        rows = np.array(llm.scores[n_prompt - 1:n_prompt - 1 + len(ids)], dtype=np.float32)
        out[f"text_{i}"] = np.array(text)
        out[f"tokens_{i}"] = ids
        out[f"logits_{i}"] = rows
        out[f"seed_{i}"] = np.array(llm._seed, dtype=np.int64)
    np.savez(out_path, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
