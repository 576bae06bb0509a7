"""The model contract: what the generation layer (generation.py's GenerationMixin) needs from a
model object, in one place. `edgellama.Llama` implements it over the C++ core; tests implement it
with small fakes (tests/test_generation.py's FakeLlama). Optional members that a model may add:
``_lock`` (a lock held around each evaluation step), ``_n_text_tokens()`` (tokens the tokenizer
knows, when the embedding has padding rows), ``last_n_tokens_size``, ``_prompt_cache_load``/
``_prompt_cache_save`` (Llama.set_cache), ``draft_model`` (a drafter for speculative decoding),
``_token_text_bytes(prev, tok)`` (a faster way to the bytes a generated token adds, as Llama has)."""

from __future__ import annotations

from typing import List, Optional, Protocol, Sequence, Union, runtime_checkable

import numpy as np

__all__ = ["GenerationModel"]


@runtime_checkable
class GenerationModel(Protocol):
    tokens_in_cache: List[int]  # the tokens whose keys/values the cache holds, in order
    chat_format: Optional[str]  # Llama(chat_format=...); None = the file's template
    model_path: str
    seed: int  # what calls without seed= draw their seeds from (Llama(seed=), set_seed; 0xFFFFFFFF = random)

    @property
    def chat_template(self) -> Optional[str]: ...

    def eval(self, tokens: Sequence[int]) -> np.ndarray:
        """Append tokens to the cache; float32 logits (len(tokens), n_vocab)."""

    def _eval_last(self, tokens: Sequence[int]) -> np.ndarray:
        """Append tokens to the cache; float32 logits (n_vocab,) of the last one only."""

    def _truncate_cache(self, n: int) -> None:
        """Keep the first n cached tokens."""

    def tokenize(self, text: Union[str, bytes], add_bos: bool = True, special: bool = False) -> List[int]: ...

    def detokenize(self, tokens: Sequence[int], prev_tokens: Optional[Sequence[int]] = None,
                   special: bool = False) -> bytes:
        """Token ids -> bytes; with prev_tokens, the bytes tokens add after them (a leading space
        the tokenizer strips from a text's first token is kept). Called once per generated token."""

    def token_bos(self) -> int: ...

    def token_eos(self) -> int: ...

    def _is_eog(self, token: int) -> bool:
        """True for tokens that end generation (EOS, EOT, <|im_end|>, ...)."""

    def n_ctx(self) -> int: ...

    def n_vocab(self) -> int: ...
