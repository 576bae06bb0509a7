"""What issue 12's API features buy, measured interleaved in one process (A and B alternate per
repetition, so both see the same machine state):

- prompt cache: a completion whose long prompt prefix is restored with load_state (LlamaRAMCache)
  vs the same completion evaluating its whole prompt;
- embeddings: embed() (final-norm hidden states, no output projection) vs eval() of the same
  tokens (which computes the logits too).

    python benchmarks/api_bench.py MODEL.gguf [-p 512] [-t 2] [-r 5] [--json out.json]

Prints median times in ms and the ratio B / A per test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import edgellama  # noqa: E402


def timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return (time.perf_counter() - t0) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens (default: %(default)s)")
    ap.add_argument("-t", "--threads", type=int, default=None, help="threads (default: physical cores)")
    ap.add_argument("-r", "--repetitions", type=int, default=5, help="repetitions (default: %(default)s)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    a = ap.parse_args(argv)

    n_ctx = a.n_prompt + 64
    llm = edgellama.Llama(a.model, n_ctx=n_ctx, n_threads=a.threads, embedding=True, pooling_type="mean",
                          verbose=False)
    sentence = "The quick brown fox jumps over the lazy dog while the cat watches from the window. "
    prompt = llm.tokenize((sentence * (a.n_prompt // 8 + 1)).encode())[: a.n_prompt - 1]
    text = llm.detokenize(prompt).decode("utf-8", errors="ignore")

    def with_cache():
        llm.reset()
        llm.set_cache(cache)
        llm(prompt + [42], max_tokens=4, temperature=0)
        llm.set_cache(None)

    def without_cache():
        llm.reset()
        llm(prompt + [42], max_tokens=4, temperature=0)

    cache = edgellama.LlamaRAMCache()
    llm.set_cache(cache)
    llm(prompt, max_tokens=1, temperature=0)  # fills the cache with the prompt's state
    llm.set_cache(None)

    def embed():
        llm.embed(text)

    def eval_logits():
        llm.reset()
        llm.eval(llm.tokenize(text.encode()))

    results = []
    for name, fa, fb in (("prompt cache (A: restored, B: evaluated)", with_cache, without_cache),
                         ("embedding (A: embed, B: eval with logits)", embed, eval_logits)):
        ta, tb = [], []
        fa(), fb()  # warm-up
        for _ in range(a.repetitions):
            ta.append(timed(fa))
            tb.append(timed(fb))
        ma, mb = statistics.median(ta), statistics.median(tb)
        results.append({"test": name, "a_ms": ma, "b_ms": mb, "ratio_b_over_a": mb / ma, "n_prompt": a.n_prompt,
                        "threads": llm.n_threads})
        print(f"{name:45} A {ma:9.1f} ms   B {mb:9.1f} ms   B/A {mb / ma:5.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
