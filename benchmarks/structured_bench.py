"""Cost of constrained decoding (JSON Schema via llguidance + the C++ sampler mask) per token.

    python benchmarks/structured_bench.py                      # SmolLM2 (49k vocab) + a 150k-vocab model
    python benchmarks/structured_bench.py --tokens 32 --repeats 1 --big-vocab 20000   # quick check

For each model, three modes run interleaved (A B C A B C ...) on the same prompt, greedy, for the
same number of generated tokens (EOS is banned, and the schema cannot finish within the budget):

  none        no grammar
  inline      grammar, mask computed on the main thread right before sampling
  background  grammar, next mask computed on a worker thread while the model evaluates the token
              (what create_completion does)

It prints ms/token (median over repeats, from the first generated token to the last), the overhead
against "none", and the llguidance mask time per token (the engine's own work, wherever it ran).

The 150k-vocabulary model is random (tests/model_factory.py, SentencePiece vocabulary of random
pieces) with a small body (n_embd 512, 8 layers), so its forward pass is cheaper than a real 150k
model's (Qwen2.5-0.5B): the overhead percentage there is an upper bound.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import numpy as np  # noqa: E402

from edgellama import Llama, LlamaGrammar  # noqa: E402
from edgellama.constrained import TokenConstraint, llg_tokenizer  # noqa: E402

# A long list of small records: realistic JSON work (keys, enums, bounded strings, numbers) that
# cannot complete inside the token budget, so every step is constrained.
SCHEMA = {"type": "array", "minItems": 500, "items": {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
                   "role": {"enum": ["admin", "user", "guest"]}, "score": {"type": "number"}},
    "required": ["name", "age", "role", "score"]}}
PROMPT = "A JSON list of users with name, age, role and score:\n"


def big_vocab_model(path: str, n_vocab: int) -> str:
    """A random SentencePiece-vocabulary model with n_vocab tokens (specials, 256 bytes, pieces)."""
    import gguf
    from model_factory import make_model

    rng = np.random.default_rng(0)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    seen = set(tokens)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz{}\":,0123456789 "))
    while len(tokens) < n_vocab:
        piece = ("\u2581" if rng.random() < 0.5 else "") + "".join(rng.choice(letters, rng.integers(1, 9)))
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
            types.append(gguf.TokenType.NORMAL)

    def add_vocab(w):
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores([-float(len(t)) for t in tokens])
        w.add_token_types([int(t) for t in types])
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)

    return make_model(path, wtype="Q4_0", n_embd=512, n_layer=8, n_head=8, n_head_kv=4, n_ff=1408,
                      n_vocab=n_vocab, n_ctx_train=2048, tokenizer=False, extra_kv=add_vocab)


def run_mode(llm: Llama, mode: str, prompt_tokens, n_tokens: int):
    """(seconds per token after the first, mask seconds per token) for one generation."""
    eos_ban = {int(t): float("-inf") for t in llm._vocab_checked().eog_ids()}
    sampler = llm._make_sampler(temperature=0.0, top_k=40, top_p=0.95, min_p=0.05, typical_p=1.0,
                                repeat_penalty=1.0, repeat_last_n=64, frequency_penalty=0.0, presence_penalty=0.0,
                                seed=1, logit_bias=None if mode != "none" else eos_ban)
    constraint = None
    if mode != "none":
        constraint = TokenConstraint(llg_tokenizer(llm), GRAMMAR, background=(mode == "background"))
    llm._truncate_cache(0)
    gen = llm._generate(prompt_tokens, sampler, reset=True, constraint=constraint)
    t_first = None
    n = 0
    try:
        for _tok, _logits in gen:
            n += 1
            if n == 1:
                t_first = time.perf_counter()
            if n >= n_tokens:
                break
    finally:
        gen.close()
    dt = (time.perf_counter() - t_first) / max(1, n - 1)
    mask = constraint.mask_seconds / max(1, constraint.n_accepted) if constraint else 0.0
    if constraint is not None:
        constraint.close()
    return dt, mask


def bench(label: str, path: str, n_tokens: int, repeats: int, threads: int) -> None:
    llm = Llama(path, n_ctx=max(512, n_tokens + 64), n_threads=threads or None, seed=1)
    llg_tokenizer(llm)  # built once per model (not per token): excluded
    prompt_tokens = llm.tokenize(PROMPT)
    modes = ["none", "inline", "background"]
    results = {m: [] for m in modes}
    masks = {m: [] for m in modes}
    run_mode(llm, "background", prompt_tokens, 8)  # warm-up
    for _ in range(repeats):
        for m in modes:
            dt, mk = run_mode(llm, m, prompt_tokens, n_tokens)
            results[m].append(dt)
            masks[m].append(mk)
    base = statistics.median(results["none"])
    print(f"\n{label}: n_vocab={llm.n_vocab()} tokens={n_tokens} repeats={repeats} threads={llm.n_threads} "
          f"load={os.getloadavg()[0]:.2f}")
    print(f"| mode | ms/token | overhead | llguidance mask ms/token |")
    print(f"|---|---:|---:|---:|")
    for m in modes:
        t = statistics.median(results[m])
        over = "" if m == "none" else f"{(t / base - 1) * 100:+.1f}%"
        mk = "" if m == "none" else f"{statistics.median(masks[m]) * 1e3:.3f}"
        print(f"| {m} | {t * 1e3:.2f} | {over} | {mk} |", flush=True)
    llm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smollm2", default=os.path.join(HERE, "..", "..", "shared", "models", "smollm2-135m-instruct",
                                                      "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--tokens", type=int, default=128, help="generated tokens per run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="model threads (0 = default)")
    ap.add_argument("--big-vocab", type=int, default=150000, help="vocabulary of the random model (0 = skip)")
    args = ap.parse_args()
    global GRAMMAR
    GRAMMAR = LlamaGrammar.from_json_schema(SCHEMA)
    if os.path.exists(args.smollm2):
        bench("SmolLM2-135M-Instruct Q4_1", args.smollm2, args.tokens, args.repeats, args.threads)
    else:
        print(f"skipping SmolLM2: {args.smollm2} not found", file=sys.stderr)
    if args.big_vocab:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            path = big_vocab_model(os.path.join(d, "bigvocab.gguf"), args.big_vocab)
            print(f"\n(made the {args.big_vocab}-token random model in {time.perf_counter() - t0:.1f} s)")
            bench(f"random model, {args.big_vocab} vocab (n_embd 512, 8 layers, Q4_0)", path, args.tokens,
                  args.repeats, args.threads)


GRAMMAR = None

if __name__ == "__main__":
    main()
