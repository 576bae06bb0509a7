"""Perplexity over non-overlapping windows of n_ctx tokens, scoring the second half of each window
(as llama.cpp's perplexity tool does), and comparison against a base model: mean KL divergence
KL(base || model), top-1 agreement and the perplexity difference."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np

__all__ = ["PerplexityResult", "perplexity", "score_windows"]


@dataclass
class PerplexityResult:
    ppl: float
    ppl_stderr: float
    nll_mean: float
    n_tokens: int  # scored tokens
    n_windows: int
    n_ctx: int
    # against a base model (None without one)
    base_ppl: Optional[float] = None
    base_ppl_stderr: Optional[float] = None
    kl_mean: Optional[float] = None
    kl_stderr: Optional[float] = None
    top1_agreement: Optional[float] = None
    top1_stderr: Optional[float] = None
    delta_ppl: Optional[float] = None
    window_ppl: List[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _mean_stderr(v: np.ndarray):
    v = np.asarray(v, dtype=np.float64)
    n = v.size
    mean = float(v.mean()) if n else float("nan")
    if n < 2:
        return mean, float("nan")
    return mean, float(math.sqrt(max(float((v * v).mean() - mean * mean), 0.0) / (n - 1)))


def score_windows(
    eval_fn: Callable[[Sequence[int]], np.ndarray],
    tokens: Sequence[int],
    n_ctx: int,
    bos: Optional[int],
    base_eval_fn: Optional[Callable[[Sequence[int]], np.ndarray]] = None,
    on_window: Optional[Callable[[int, int, float], None]] = None,
) -> PerplexityResult:
    """eval_fn(window tokens) -> logits (len, n_vocab) from an empty cache. Windows are
    tokens[k*n_ctx : (k+1)*n_ctx], the first token replaced by BOS when bos is not None; the
    predictions of positions n_ctx/2 .. n_ctx-2 (the tokens after them) are scored."""
    if n_ctx < 4:
        raise ValueError(f"context length must be at least 4, got {n_ctx}")
    tokens = [int(t) for t in tokens]
    n_windows = len(tokens) // n_ctx
    if n_windows < 1:
        raise ValueError(
            f"the text has {len(tokens)} tokens, fewer than one window of {n_ctx}: use a longer text or a smaller -c"
        )
    first = n_ctx // 2
    nll: List[np.ndarray] = []
    base_nll: List[np.ndarray] = []
    kls: List[np.ndarray] = []
    agree: List[np.ndarray] = []
    window_ppl: List[float] = []
    for w in range(n_windows):
        win = tokens[w * n_ctx : (w + 1) * n_ctx]
        if bos is not None:
            win = [bos] + win[1:]
        target = np.array(win[first + 1 :], dtype=np.int64)
        lp = _log_softmax(np.asarray(eval_fn(win))[first : n_ctx - 1])
        v = -lp[np.arange(target.size), target]
        nll.append(v)
        window_ppl.append(float(math.exp(v.mean())))
        if base_eval_fn is not None:
            blp = _log_softmax(np.asarray(base_eval_fn(win))[first : n_ctx - 1])
            if blp.shape != lp.shape:
                raise ValueError(f"base model has {blp.shape[-1]} logits per token, the model {lp.shape[-1]}")
            base_nll.append(-blp[np.arange(target.size), target])
            kls.append((np.exp(blp) * (blp - lp)).sum(axis=-1))
            agree.append((blp.argmax(-1) == lp.argmax(-1)).astype(np.float64))
        if on_window is not None:
            on_window(w + 1, n_windows, float(math.exp(np.concatenate(nll).mean())))
    all_nll = np.concatenate(nll)
    m, se = _mean_stderr(all_nll)
    ppl = math.exp(m)
    res = PerplexityResult(
        ppl=ppl, ppl_stderr=ppl * se, nll_mean=m, n_tokens=int(all_nll.size), n_windows=n_windows, n_ctx=n_ctx,
        window_ppl=window_ppl,
    )
    if base_eval_fn is not None:
        bm, bse = _mean_stderr(np.concatenate(base_nll))
        res.base_ppl = math.exp(bm)
        res.base_ppl_stderr = res.base_ppl * bse
        res.kl_mean, res.kl_stderr = _mean_stderr(np.concatenate(kls))
        res.top1_agreement, res.top1_stderr = _mean_stderr(np.concatenate(agree))
        res.delta_ppl = ppl - res.base_ppl
    return res


def _tokenize(llm, text: str) -> List[int]:
    tok = getattr(llm, "tokenize", None)
    if tok is None:
        raise RuntimeError("perplexity needs Llama.tokenize (the tokenizer), which this build lacks")
    try:
        return list(tok(text.encode("utf-8"), add_bos=True))
    except TypeError:
        return list(tok(text.encode("utf-8")))


def _bos(llm) -> Optional[int]:
    md = getattr(llm, "metadata", {}) or {}
    add_bos = md.get("tokenizer.ggml.add_bos_token", md.get("tokenizer.ggml.model") == "llama")
    bos = md.get("tokenizer.ggml.bos_token_id")
    return int(bos) if (add_bos and bos is not None) else None


def perplexity(
    model: "str | os.PathLike[str]",
    text: str,
    n_ctx: int = 512,
    *,
    kl_base: "str | os.PathLike[str] | None" = None,
    threads: Optional[int] = None,
    max_windows: Optional[int] = None,
    tokens: Optional[Sequence[int]] = None,
    on_window: Optional[Callable[[int, int, float], None]] = None,
) -> PerplexityResult:
    """Perplexity of MODEL over `text` (or pre-tokenized `tokens`) with windows of n_ctx tokens;
    with kl_base, also KL divergence, top-1 agreement and ΔPPL against that base model."""
    from .llama import Llama

    if not isinstance(n_ctx, int) or n_ctx < 4:
        raise ValueError(f"context length must be an integer >= 4, got {n_ctx!r}")
    llm = Llama(str(model), n_ctx=n_ctx, n_threads=threads, n_batch=n_ctx)
    base = None
    try:
        if tokens is None:
            tokens = _tokenize(llm, text)
        tokens = list(tokens)
        if max_windows is not None:
            tokens = tokens[: max_windows * n_ctx]
        bos = _bos(llm)

        def run(m):
            def f(win):
                m.reset()
                return m.eval(win)

            return f

        base_fn = None
        if kl_base is not None:
            base = Llama(str(kl_base), n_ctx=n_ctx, n_threads=threads, n_batch=n_ctx)
            if base.n_vocab() != llm.n_vocab():
                raise ValueError(f"base model vocabulary ({base.n_vocab()}) differs from the model's ({llm.n_vocab()})")
            base_fn = run(base)
        return score_windows(run(llm), tokens, n_ctx, bos, base_fn, on_window)
    finally:
        llm.close()
        if base is not None:
            base.close()
