"""The model contract of :mod:`edgellama.generation` over one slot of the batch engine.

A :class:`SlotModel` is made per request. It is a :class:`~edgellama.generation.GenerationMixin`,
so completions and chat (prompt formatting, sampling, stop strings, max_tokens, logprobs, seed,
streaming chunks, usage) behave exactly like :meth:`edgellama.Llama.create_completion`: the same
code runs, only ``eval``/``_eval_last``/``tokens_in_cache``/``_truncate_cache`` go to the engine's
slot instead of a private context. The tokenizer and chat template come from a shared
vocab-only :class:`edgellama.Llama`.

The slot is taken lazily, on the first use of the cache, preferring the slot whose cached tokens
share the longest prefix with the prompt (``_generate`` knows the prompt; only then is the slot
chosen), and given back by :meth:`close`.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..commands._speculative import MIN_LOOKUP_PROMPT_TOKENS
from ..generation import GenerationMixin, _Usage
from ..llama_speculative import LlamaPromptLookupDecoding
from .engine import BatchEngine, RequestCancelled, Slot

__all__ = ["SlotModel"]

_RANDOM_SEED = 0xFFFFFFFF


class _SharedStepLookup(LlamaPromptLookupDecoding):
    """Prompt lookup whose drafts are weighed against what a draft row costs in the engine's shared
    step. Alone, speculation shares one read of the weights among several positions of the stream
    (the draft controller measures that cost itself). With several busy slots each step already
    shares that read among the streams, and a draft row adds compute that delays all of them: the
    engine's step-time fit (step_cost.py) gives that cost, and the controller drafts only what is
    expected to pay for it (streams copying their prompt nearly verbatim). Measured on a
    TinyLlama-shape Q4_0 (random weights) at 2 threads with 4 streams drafting regardless: 11.3 rows
    per forward pass instead of about 4, the extra ones mostly rejected drafts."""

    def __init__(self, engine: BatchEngine, **kwargs: Any):
        super().__init__(**kwargs)
        self._engine = engine

    def shared_step_cost(self) -> Optional[float]:
        """None while this request is the engine's only busy slot; else the cost of one draft row
        in plain steps of one stream (inf before the engine has an estimate: do not draft)."""
        n = self._engine.busy_slots
        if n <= 1:
            return None
        cost = self._engine.step_cost.draft_cost(n)
        return float("inf") if cost is None else cost


class SlotModel(GenerationMixin):
    def __init__(self, engine: BatchEngine, vocab_llama: Any, model_name: str, seed: int = _RANDOM_SEED,
                 draft: str = "none", draft_max: int = 10):
        self._engine = engine
        self._vocab_llama = vocab_llama
        self.model_path = model_name
        self.seed = seed  # random unless the request gives one
        self.chat_format = vocab_llama.chat_format
        self.metadata = vocab_llama.metadata
        self._slot: Optional[Slot] = None
        self._prompt_hint: Optional[List[int]] = None
        self._cancelled = threading.Event()
        self.usage: Optional[_Usage] = None
        self._draft_policy, self._draft_max = draft, draft_max
        self.draft_model: Any = None  # set per request in _generate (edgellama.speculative)
        # caches built once per server and shared by every request (the grammar engine's tokenizer)
        self._shared_caches = engine.__dict__.setdefault("_shared_caches", {})
        # share the vocab-only model's chat formatter cache: built once per server
        for key in ("_chat_formatter_cache",):
            if key in vocab_llama.__dict__:
                self.__dict__[key] = vocab_llama.__dict__[key]

    # ------------------------------------------------------------------ tokenizer (shared)

    @property
    def chat_template(self) -> Optional[str]:
        return self._vocab_llama.chat_template

    def tokenize(self, text, add_bos: bool = True, special: bool = False) -> List[int]:
        return self._vocab_llama.tokenize(text, add_bos, special)

    def detokenize(self, tokens, prev_tokens=None, special: bool = False) -> bytes:
        return self._vocab_llama.detokenize(tokens, prev_tokens=prev_tokens, special=special)

    def _token_text_bytes(self, prev: Optional[int], tok: int) -> bytes:
        # each generated token's text: the vocab-only model's one C++ call, not detokenize()'s
        # argument checks (a sixth of a stream's Python time between engine steps)
        return self._vocab_llama._token_text_bytes(prev, tok)

    def token_bos(self) -> int:
        return self._vocab_llama.token_bos()

    def token_eos(self) -> int:
        return self._vocab_llama.token_eos()

    def _is_eog(self, token: int) -> bool:
        return self._vocab_llama._is_eog(token)

    def _vocab_checked(self) -> Any:
        return self._vocab_llama._vocab_checked()

    def _n_text_tokens(self) -> int:
        return self._vocab_llama._n_text_tokens()

    def n_vocab(self) -> int:
        return self._engine.n_vocab

    def n_ctx(self) -> int:
        return self._engine.n_ctx

    # ------------------------------------------------------------------ the slot

    def _held_slot(self) -> Slot:
        if self._cancelled.is_set():
            raise RequestCancelled("request cancelled")
        if self._slot is None:
            self._slot = self._engine.acquire(self._prompt_hint, cancelled=self._cancelled)
            if self._cancelled.is_set():  # cancelled just as it got the slot
                self._engine.cancel(self._slot)
        return self._slot

    def cancel(self) -> None:
        """From any thread: stop this request within one engine step."""
        self._cancelled.set()
        slot = self._slot
        if slot is not None:
            self._engine.cancel(slot)
        else:
            self._engine.wake()  # it may be queued in acquire

    def close(self) -> None:
        """Give the slot back (its cached tokens stay for prefix reuse by a later request). Only the
        thread that runs the request may call it: the slot must not be reused while it evaluates."""
        slot, self._slot = self._slot, None
        if slot is not None:
            self._engine.release(slot)

    @property
    def tokens_in_cache(self) -> List[int]:
        return list(self._held_slot().tokens)

    def _truncate_cache(self, n: int) -> None:
        self._engine.truncate(self._held_slot(), n)

    def eval(self, tokens: Sequence[int]) -> np.ndarray:
        return self._engine.evaluate(self._held_slot(), tokens, all_logits=True)

    def _eval_last(self, tokens: Sequence[int]) -> np.ndarray:
        return self._engine.evaluate(self._held_slot(), tokens, all_logits=False)

    # ------------------------------------------------------------------ hooks into generation

    def _generate(self, tokens, sampler, **kw):
        if self._slot is None:
            self._prompt_hint = [int(t) for t in tokens]
        if self._draft_policy == "lookup" or (self._draft_policy == "auto" and len(tokens) >= MIN_LOOKUP_PROMPT_TOKENS):
            self.draft_model = _SharedStepLookup(self._engine, max_ngram_size=3, num_pred_tokens=self._draft_max)
        return super()._generate(tokens, sampler, **kw)

    def _completion_events(self, *args: Any, **kwargs: Any):
        events, usage = super()._completion_events(*args, **kwargs)
        self.usage = usage  # token counts for the response's usage and /metrics
        return events, usage

    def usage_dict(self) -> Dict[str, int]:
        return (self.usage or _Usage()).as_dict()
