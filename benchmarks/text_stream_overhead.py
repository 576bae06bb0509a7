"""Per-token cost of generation's text path, before and after it moved into the C++ core
(issue 12 scope 6): the piece a token adds after the previous one, UTF-8 assembly and stop-string
hold-back, without the model's forward pass.

    PYTHONPATH=src:tests python benchmarks/text_stream_overhead.py [--model GGUF] [--rounds 200]

"python" is the old path (tests/streaming_reference.py fed by Llama.detokenize of [prev, tok]
minus that of [prev], as generation.py did); "core" is the new one (Llama._token_text_bytes, one
Vocab.detokenize(prev_ids=) call, + the _core TextStream), both over the same SmolLM2 greedy token stream (Japanese text: most tokens
hold part of a character) with two stop strings. The two are interleaved round by round, so load
from other processes hits both alike; the medians are printed in microseconds per token.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import streaming_reference as ref  # noqa: E402

from edgellama import Llama  # noqa: E402
from edgellama.streaming import TextStream  # noqa: E402

STOPS = ["ネルX", "\n\n\n"]  # never complete: the matcher holds back and releases on every token


def old_path(llm, prev, tokens):
    """generation.py's _token_text_bytes and TextStream before the move (the per-object cache of
    single-token pieces included)."""
    stream = ref.TextStream(STOPS)
    cache = {}
    for tok in tokens:
        a = cache.get(prev)
        if a is None:
            a = cache[prev] = llm.detokenize([prev])
        b = llm.detokenize([prev, tok])
        stream.feed(b[len(a):] if b.startswith(a) else llm.detokenize([tok]))
        prev = tok
    return stream.finish()


def new_path(llm, prev, tokens):
    stream = TextStream(STOPS)
    for tok in tokens:
        stream.feed(llm._token_text_bytes(prev, tok))
        prev = tok
    return stream.finish()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT.parent / "shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--tokens", type=int, default=64)
    a = ap.parse_args()
    llm = Llama(a.model, n_ctx=256, verbose=False)
    prompt = llm.tokenize("日本の首都は".encode())
    tokens = list(itertools.islice(llm.generate(prompt, temp=0.0), a.tokens))
    assert old_path(llm, prompt[-1], tokens) == new_path(llm, prompt[-1], tokens)
    times = {"python": [], "core": []}
    for _ in range(a.rounds):
        for name, fn in (("python", lambda: old_path(llm, prompt[-1], tokens)),
                         ("core", lambda: new_path(llm, prompt[-1], tokens))):
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) / len(tokens) * 1e6)
    py, core = statistics.median(times["python"]), statistics.median(times["core"])
    print(f"text path per token over {len(tokens)} tokens, median of {a.rounds} interleaved rounds:")
    print(f"  python (before): {py:7.2f} us/token")
    print(f"  core   (after):  {core:7.2f} us/token   ({py / core:.2f}x less)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
