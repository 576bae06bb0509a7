"""How often prompt-lookup drafts are right, by the length of the suffix that matched.

Greedy answers to chat prompts with ``LlamaPromptLookupDecoding(max_ngram_size=3)`` (what
``edgellama run`` / ``serve`` use); for every draft, the length of the suffix match behind it
(``NgramIndex.last_match``) and whether its first token was accepted. Run twice: as shipped (suffixes
of 2-3 tokens) and with one-token suffixes allowed too (``NgramIndex.min_n = 1``: drafts where no
longer suffix matched, which max_ngram_size >= 2 no longer makes). A draft pays for its extra
position only if its first token is accepted often enough (in a shared server step a draft row costs
~0.6 plain steps of a stream). max_ngram_size=1 is not the comparison: there every draft comes from
a one-token match, also where a longer one would have matched.

    PYTHONPATH=src python benchmarks/lookup_acceptance.py MODEL.gguf [-n 200] [-t 2]

Session 18, SmolLM2-135M-Instruct Q4_1, 2 threads: see BENCHMARKS.md (session 18).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain how photosynthesis works, in detail.",
    "Summarize this text: The city council met on Tuesday to discuss the new park. Residents asked for more "
    "trees, a playground and benches. The council agreed to fund the trees and the playground, but the benches "
    "will wait until next year because of the budget.",
    "Write a Python function that parses a CSV file and returns a list of dictionaries, with docstrings and type hints.",
    "List ten fruits and describe each in one sentence.",
    "Translate to French: The weather is nice today and I want to go to the beach with my friends.",
    "Rewrite this sentence in the passive voice: The committee approved the new budget after a long debate.",
    "Write a haiku about autumn, then explain it.",
    "What are the differences between TCP and UDP? Give a table.",
    "Fix the bug in this code: def add(a, b): return a - b",
]


def measure(model: str, min_n: int, n_tokens: int, threads: int) -> Dict[int, Tuple[int, int]]:
    """suffix length -> (drafts, drafts whose first token was accepted)."""
    from edgellama import Llama, LlamaPromptLookupDecoding
    from edgellama import speculative

    drafter = LlamaPromptLookupDecoding(max_ngram_size=3, num_pred_tokens=10)
    drafter._index.min_n = min_n  # before anything is indexed: the tables from min_n up are built
    counts: Dict[int, List[int]] = collections.defaultdict(lambda: [0, 0])
    update = speculative.SpecSession.update

    def counting_update(session, drafted: int, accepted: int) -> None:
        if drafted:
            c = counts[drafter._index.last_match]
            c[0] += 1
            c[1] += accepted > 0
        update(session, drafted, accepted)

    speculative.SpecSession.update = counting_update
    try:
        llm = Llama(model, n_ctx=2048, n_threads=threads, verbose=False, draft_model=drafter)
        for p in PROMPTS:
            llm.create_chat_completion([{"role": "user", "content": p}], max_tokens=n_tokens, temperature=0)
    finally:
        speculative.SpecSession.update = update
    return {n: (c[0], c[1]) for n, c in sorted(counts.items())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("-n", "--tokens", type=int, default=200, help="max tokens per answer (default: %(default)s)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    args = ap.parse_args()
    for min_n, label in ((2, "as shipped"), (1, "one-token suffixes too")):
        for n, (drafts, hits) in measure(args.model, min_n, args.tokens, args.threads).items():
            print(f"{label}: {n}-token suffix: {drafts} drafts, first token accepted {hits} ({hits / drafts:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
