"""`LlamaState`: a snapshot of a `Llama`'s context (tokens, KV cache, last logits, seed), made by
``Llama.save_state()`` and restored by ``Llama.load_state()``; the unit the prompt caches store."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["LlamaState"]


class LlamaState:
    """Fields as in llama-cpp-python. ``llama_state`` is the KV cache in edgellama's own format
    (cpp/runtime/context_state.cpp): it loads only into a model of the same shape and KV types."""

    def __init__(self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single], n_tokens: int,
                 llama_state: bytes, llama_state_size: int, seed: int):
        self.input_ids = input_ids
        self.scores = scores
        self.n_tokens = n_tokens
        self.llama_state = llama_state
        self.llama_state_size = llama_state_size
        self.seed = seed  # the object's seed: calls after load_state repeat those after save_state

    def __repr__(self) -> str:
        return f"LlamaState(n_tokens={self.n_tokens}, llama_state_size={self.llama_state_size})"
