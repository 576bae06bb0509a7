"""User hooks into the token loop, as llama-cpp-python names them.

A logits processor is ``f(input_ids, scores) -> scores``: ``input_ids`` are all tokens so far
(prompt and generated, int32), ``scores`` the float32 logits of the next token; it returns the
logits to sample from (it may modify them in place). A stopping criterion is
``f(input_ids, logits) -> bool``; True ends the completion with ``finish_reason="stop"``.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["CallHooks", "LogitsProcessor", "LogitsProcessorList", "StoppingCriteria", "StoppingCriteriaList",
           "MinTokensLogitsProcessor"]

LogitsProcessor = Callable[[npt.NDArray[np.intc], npt.NDArray[np.single]], npt.NDArray[np.single]]
StoppingCriteria = Callable[[npt.NDArray[np.intc], npt.NDArray[np.single]], bool]


class LogitsProcessorList(List[LogitsProcessor]):
    """Processors applied in order, each to the previous one's output."""

    def __call__(self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


class StoppingCriteriaList(List[StoppingCriteria]):
    """Stop when any criterion says so (every criterion is called, as in llama-cpp-python)."""

    def __call__(self, input_ids: npt.NDArray[np.intc], logits: npt.NDArray[np.single]) -> bool:
        return any([bool(c(input_ids, logits)) for c in self])


class MinTokensLogitsProcessor:
    """Forbid the end-of-sequence token until ``min_tokens`` tokens were generated after the first
    call's input (the prompt)."""

    def __init__(self, min_tokens: int, token_eos: int):
        self.min_tokens = min_tokens
        self.token_eos = token_eos
        self.prompt_tokens = None

    def __call__(self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
        if len(input_ids) - self.prompt_tokens < self.min_tokens:
            scores[self.token_eos] = -np.inf
        return scores


class CallHooks:
    """The per-call extras of one completion, as the generation loop applies them: ``process``
    before sampling each token, then ``should_stop`` (which remembers that it stopped the call);
    ``sampler_params`` are the mirostat settings for the C++ sampler."""

    def __init__(self, logits_processor: Optional[LogitsProcessor], stopping_criteria: Optional[StoppingCriteria],
                 mirostat_mode: int = 0, mirostat_tau: float = 5.0, mirostat_eta: float = 0.1):
        self.logits_processor = logits_processor
        self.stopping_criteria = stopping_criteria
        self.mirostat = (int(mirostat_mode), float(mirostat_tau), float(mirostat_eta))
        self.stopped = False

    @classmethod
    def make(cls, logits_processor: Optional[LogitsProcessor], stopping_criteria: Optional[StoppingCriteria],
             mirostat_mode: int = 0, mirostat_tau: float = 5.0, mirostat_eta: float = 0.1) -> "Optional[CallHooks]":
        if mirostat_mode not in (0, 1, 2) or isinstance(mirostat_mode, bool):
            raise ValueError(f"mirostat_mode must be 0 (off), 1 or 2, got {mirostat_mode!r}")
        for name, f in (("logits_processor", logits_processor), ("stopping_criteria", stopping_criteria)):
            if f is not None and not callable(f):
                raise TypeError(f"{name} must be callable (e.g. a {'LogitsProcessorList' if name[0] == 'l' else 'StoppingCriteriaList'}), "
                                f"got {type(f).__name__}")
        if logits_processor is None and stopping_criteria is None and not mirostat_mode:
            return None
        return cls(logits_processor, stopping_criteria, mirostat_mode, mirostat_tau, mirostat_eta)

    def sampler_params(self) -> dict:
        mode, tau, eta = self.mirostat
        return dict(mirostat=mode, mirostat_tau=tau, mirostat_eta=eta) if mode else {}

    def process(self, tokens: Sequence[int], logits: np.ndarray) -> np.ndarray:
        if self.logits_processor is None:
            return logits
        out = self.logits_processor(np.asarray(tokens, dtype=np.intc), np.array(logits, dtype=np.single))
        out = np.asarray(out, dtype=np.single)
        if out.shape != logits.shape:
            raise ValueError(f"logits_processor returned shape {out.shape}, expected {logits.shape}")
        return out

    def should_stop(self, tokens: Sequence[int], logits: np.ndarray) -> bool:
        if self.stopping_criteria is not None and self.stopping_criteria(np.asarray(tokens, dtype=np.intc), logits):
            self.stopped = True
        return self.stopped
