"""Embeddings: `Llama.embed` and `Llama.create_embedding` (llama-cpp-python's names and shapes).

An input's embedding is built from the final-norm hidden states of its tokens (the vectors the
output projection would turn into logits; the core computes no logits here), pooled by the
model's pooling type: none (one vector per token), mean, cls (first token) or last (last token).
Each input is evaluated from position 0 as its own sequence; several inputs share each forward pass
(Llama._hidden_states_many), and an input's embedding does not depend on the other inputs (a row's
result never depends on the rest of the batch). The model must be created with ``Llama(..., embedding=True)``, as in llama-cpp-python.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

__all__ = ["EmbeddingMixin"]

# llama.cpp's enum llama_pooling_type -> how the rows of one input become its embedding
_POOL = {
    0: None,                                   # none: every token's vector
    1: lambda h: h.mean(axis=0, dtype=np.float64),  # mean
    2: lambda h: h[0],                         # cls: the first token
    3: lambda h: h[-1],                        # last: the last token
}


def _normalized(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v.astype(np.float64)))
    return v if norm == 0.0 else v / norm


class EmbeddingMixin:
    """Needs from the model object: tokenize, n_ctx(), pooling_type(), _hidden_states_many(token
    lists) and the `_embedding` flag."""

    def embed(self, input: Union[str, List[str]], normalize: bool = False, truncate: bool = True,
              return_count: bool = False) -> Any:
        """Embeddings of a string (one embedding) or a list of strings (a list of them). With
        pooling none an embedding is a list of per-token vectors. ``normalize`` scales each vector
        to unit L2 norm. ``truncate`` keeps the first n_ctx tokens of a longer input (False: a
        ValueError). ``return_count`` returns (embeddings, total number of tokens)."""
        if not getattr(self, "_embedding", False):
            raise RuntimeError("Llama model must be created with embedding=True to call this method")
        inputs = [input] if isinstance(input, str) else list(input)
        for i, s in enumerate(inputs):
            if not isinstance(s, str):
                raise TypeError(f"embed input {i} must be a str, got {type(s).__name__}")
        pool = _POOL[self.pooling_type()]
        n_ctx = self.n_ctx()
        token_lists = []
        for s in inputs:
            tokens = self.tokenize(s.encode("utf-8"))
            if len(tokens) > n_ctx:
                if not truncate:
                    raise ValueError(f"input of {len(tokens)} tokens exceeds n_ctx {n_ctx} (pass truncate=True "
                                     f"to embed its first {n_ctx} tokens)")
                tokens = tokens[:n_ctx]
            token_lists.append(tokens)
        total = sum(len(t) for t in token_lists)
        data: List[Any] = []
        for tokens, hidden in zip(token_lists, self._hidden_states_many(token_lists)):  # (len, n_embd) each
            if pool is None:
                data.append([(_normalized(r) if normalize else r).tolist() for r in hidden])
            else:
                v = pool(hidden) if len(tokens) else np.zeros(hidden.shape[1])
                data.append((_normalized(v) if normalize else v).tolist())
        output = data[0] if isinstance(input, str) else data
        return (output, total) if return_count else output

    def create_embedding(self, input: Union[str, List[str]], model: Optional[str] = None) -> Dict[str, Any]:
        """OpenAI-shaped embedding response for a string or a list of strings."""
        embeds, total = self.embed(input, return_count=True)
        if isinstance(input, str):
            embeds = [embeds]
        return {
            "object": "list",
            "data": [{"object": "embedding", "embedding": e, "index": i} for i, e in enumerate(embeds)],
            "model": model if model is not None else self._model_name(),
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }
