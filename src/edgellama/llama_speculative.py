"""Drafters for speculative decoding, with llama-cpp-python's call shape::

    from edgellama import Llama
    from edgellama.llama_speculative import LlamaPromptLookupDecoding, LlamaDraftModel
    llm = Llama("model.gguf", draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10))
    llm = Llama("big.gguf", draft_model=LlamaDraftModel("small.gguf", n_draft=8))

Output is unchanged by the drafter, token for token (greedy, and sampled with the same seed); only
the speed changes. See :mod:`edgellama.speculative` for the verify loop.

One name, two roles. llama-cpp-python's ``LlamaDraftModel`` is an abstract base whose subclasses
implement ``__call__(input_ids) -> draft ids``; edgellama also needs a class that drafts with a small
model, and the issue asks for it under the same name. Here :class:`LlamaDraftModel` is both:

- the base class of every drafter: code written for llama-cpp-python (``class MyDraft(LlamaDraftModel):
  def __call__(self, input_ids, /, **kw): ...``) works unchanged, ``isinstance`` checks included;
- constructed with a model (``LlamaDraftModel(path_or_Llama, n_draft=8)``) it drafts greedily with
  that model. Constructed with no model and not overriding ``__call__``, calling it raises.

The generation loop calls ``draft(history, max_tokens)`` (plain lists, no copy of the context per
token); the base implementation forwards to ``__call__`` with a numpy array, so a subclass needs
only one of the two.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Union

import numpy as np

from .speculative import NgramIndex

__all__ = ["LlamaDraftModel", "LlamaPromptLookupDecoding"]

_NO_MODEL = ("LlamaDraftModel() without a model drafts nothing: pass a model path or Llama, or subclass "
             "it and implement __call__(input_ids) -> draft ids")


class LlamaDraftModel:
    """Base of all drafters, and the draft-model drafter (see the module docstring).

    Args:
        model: a path to a GGUF file, or a loaded :class:`edgellama.Llama` (same vocabulary as the
            target). None for subclasses that draft some other way.
        n_draft: the most tokens drafted per step (the verify loop adapts the length below it).
        p_min: stop drafting when the draft model's top token has a probability below this (a
            guess it is unsure of is usually rejected and costs a verification slot).
        **llama_kwargs: passed to ``Llama(path, ...)`` when ``model`` is a path (n_ctx defaults to
            4096, n_threads to the target's choice of default).
    """

    # Class-level defaults, so that a llama-cpp-python style subclass that never calls
    # super().__init__() still works in the verify loop.
    model: Any = None
    n_draft = 10
    max_draft_tokens = 10  # upper bound for the verify loop's length controller
    start_draft_tokens = 4
    stats: Any = None

    def __init__(self, model: Union[None, str, "os.PathLike[str]", Any] = None, n_draft: int = 8,
                 p_min: float = 0.3, **llama_kwargs: Any):
        if not isinstance(n_draft, int) or isinstance(n_draft, bool) or n_draft < 1:
            raise ValueError(f"n_draft must be a positive integer, got {n_draft!r}")
        if not 0.0 <= float(p_min) < 1.0:
            raise ValueError(f"p_min must be in [0, 1), got {p_min!r}")
        self.n_draft = n_draft
        self.max_draft_tokens = n_draft
        self.start_draft_tokens = min(4, n_draft)
        self.p_min = float(p_min)
        self.stats = None  # the SpecStats of the last generation that used this drafter
        if model is None:
            self.model = None
        elif isinstance(model, (str, bytes, os.PathLike)):
            from .llama import Llama

            llama_kwargs.setdefault("n_ctx", 4096)
            self.model = Llama(os.fsdecode(model), **llama_kwargs)
        elif all(hasattr(model, a) for a in ("eval", "_eval_last", "_truncate_cache", "tokens_in_cache")):
            self.model = model
        else:
            raise TypeError(f"LlamaDraftModel: model must be a GGUF path or an edgellama.Llama, "
                            f"got {type(model).__name__}")

    # ---------------------------------------------------------------- llama-cpp-python call shape
    def __call__(self, input_ids: "np.ndarray", /, **kwargs: Any) -> np.ndarray:
        """Draft ids to follow ``input_ids`` (llama-cpp-python's signature)."""
        if self.model is None:
            raise NotImplementedError(_NO_MODEL)
        ids = [int(t) for t in np.asarray(input_ids).reshape(-1)]
        return np.asarray(self._draft_with_model(ids, self.n_draft), dtype=np.intc)

    def draft(self, history: List[int], max_tokens: int) -> List[int]:
        """Up to ``max_tokens`` guesses for the tokens after ``history`` (what the verify loop calls)."""
        if self.model is not None:
            return self._draft_with_model(history, max_tokens)
        if type(self).__call__ is LlamaDraftModel.__call__:
            raise NotImplementedError(_NO_MODEL)
        out = self(np.asarray(history, dtype=np.intc))  # a llama-cpp-python style subclass
        return [int(t) for t in np.asarray(out).reshape(-1)[:max_tokens]]

    # ---------------------------------------------------------------- hooks of the verify loop
    def bind(self, target: Any) -> None:
        """Check that the draft model can speak for ``target`` (called when a generation starts)."""
        if self.model is None or self.model is target:
            if self.model is target:
                raise ValueError("LlamaDraftModel: the draft model is the target model itself; give it its "
                                 "own Llama (a smaller model with the same vocabulary)")
            return
        nt, nd = int(target.n_vocab()), int(self.model.n_vocab())
        if nt != nd:
            raise ValueError(f"draft model {getattr(self.model, 'model_path', '?')} has {nd} tokens in its "
                             f"vocabulary but the target {getattr(target, 'model_path', '?')} has {nt}: "
                             "speculative decoding needs the same vocabulary")

    def _begin_generation(self, stats: Any) -> None:
        self.stats = stats

    # ---------------------------------------------------------------- draft-model drafting
    def _draft_with_model(self, history: List[int], max_tokens: int) -> List[int]:
        m = self.model
        n_ctx = m.n_ctx()
        max_tokens = min(max_tokens, self.n_draft, n_ctx - len(history))
        if max_tokens <= 0 or len(history) >= n_ctx:
            return []
        cached = m.tokens_in_cache
        keep = 0
        for a, b in zip(cached, history[:-1]):  # keep the shared prefix, evaluate at least one token
            if a != b:
                break
            keep += 1
        if keep < len(cached):
            m._truncate_cache(keep)
        pending = history[keep:]
        out: List[int] = []
        while len(out) < max_tokens:
            logits = np.asarray(m._eval_last(pending), dtype=np.float32)
            tok = int(np.argmax(logits))
            if self.p_min > 0 and out:  # the first guess is always worth one slot
                x = logits.astype(np.float64)
                p_top = 1.0 / np.exp(x - x[tok]).sum()
                if p_top < self.p_min:
                    break
            out.append(tok)
            pending = [tok]
        return out


class LlamaPromptLookupDecoding(LlamaDraftModel):
    """Prompt-lookup decoding: the draft is what followed the current suffix (its last
    ``max_ngram_size`` .. 1 tokens) the last time it appeared in the prompt or in the text
    generated so far. Pays off when the answer copies from the input (edit a file, quote a
    document, fill a template); costs nothing when the suffix never occurred.

    Unlike llama-cpp-python's version (a linear scan of the whole input per token, a fixed draft
    length), the lookup uses an incremental n-gram index (O(max_ngram_size) per token) and the
    verify loop adapts the draft length up to ``num_pred_tokens`` and backs off when drafts fail.
    """

    def __init__(self, max_ngram_size: int = 2, num_pred_tokens: int = 10):
        if not isinstance(max_ngram_size, int) or isinstance(max_ngram_size, bool) or max_ngram_size < 1:
            raise ValueError(f"max_ngram_size must be a positive integer, got {max_ngram_size!r}")
        if not isinstance(num_pred_tokens, int) or isinstance(num_pred_tokens, bool) or num_pred_tokens < 1:
            raise ValueError(f"num_pred_tokens must be a positive integer, got {num_pred_tokens!r}")
        super().__init__(None, n_draft=num_pred_tokens, p_min=0.0)
        self.max_ngram_size = max_ngram_size
        self.num_pred_tokens = num_pred_tokens
        self._index = NgramIndex(max_ngram_size)

    def draft(self, history: List[int], max_tokens: int) -> List[int]:
        self._index.sync(history)
        return self._index.lookup(min(max_tokens, self.num_pred_tokens))

    def __call__(self, input_ids: "np.ndarray", /, **kwargs: Any) -> np.ndarray:
        ids = [int(t) for t in np.asarray(input_ids).reshape(-1)]
        return np.asarray(self.draft(ids, self.num_pred_tokens), dtype=np.intc)

    @staticmethod
    def find_candidate_pred_tokens(input_ids: "np.ndarray", max_ngram_size: int, num_pred_tokens: int) -> np.ndarray:
        """llama-cpp-python's one-shot lookup, kept for code that calls it directly: for n-gram sizes
        from ``max_ngram_size`` down to 1, the tokens after the *earliest* earlier occurrence of the
        input's last n tokens that has any continuation (at most ``num_pred_tokens``); empty if
        none. A linear scan per call; the drafter itself uses the incremental index above."""
        ids = np.asarray(input_ids).reshape(-1)
        n = int(ids.shape[0])
        for size in range(min(int(max_ngram_size), n - 1), 0, -1):
            tail = ids[n - size:]
            for start in range(0, n - size):  # occurrences ending before the input's end
                if np.array_equal(ids[start:start + size], tail):
                    cont = ids[start + size:min(start + size + int(num_pred_tokens), n)]
                    if cont.size:
                        return cont
        return np.array([], dtype=np.intc)

    def __repr__(self) -> str:
        return f"LlamaPromptLookupDecoding(max_ngram_size={self.max_ngram_size}, num_pred_tokens={self.num_pred_tokens})"
