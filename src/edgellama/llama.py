"""The `Llama` class: load a GGUF model and run it. Shaped like llama-cpp-python's `Llama` so code
can switch by changing the import; extras (numpy logits from `eval`, `generate` yielding ids)."""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from .chat_format import validate_chat_format

try:  # the generation layer (completions, chat, streaming) lives in its own module
    from .generation import GenerationMixin
except ImportError:  # pragma: no cover - only while the generation module is being written
    class GenerationMixin:  # type: ignore[no-redef]
        pass

LLAMA_DEFAULT_SEED = 0xFFFFFFFF
_MAX_N_CTX = 1 << 24  # = kMaxContext in cpp/runtime/context.cpp
_MAX_N_THREADS = 1024  # = kMaxThreads there

TokenSequence = Union[Sequence[int], np.ndarray]


def _as_token_array(tokens: TokenSequence, n_vocab: int) -> np.ndarray:
    """Validate token ids and return them as a contiguous int32 array (never modifies the input)."""
    if isinstance(tokens, np.ndarray):
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be a 1-D array of token ids, got shape {tokens.shape}")
        if not np.issubdtype(tokens.dtype, np.integer):
            raise TypeError(f"tokens must be integers, got a numpy array of dtype {tokens.dtype}")
        if tokens.size:  # range-check in the array's own dtype (a cast could wrap uint64 ids)
            bad = np.flatnonzero((tokens < 0) | (tokens >= n_vocab))
            if bad.size:
                i = int(bad[0])
                raise ValueError(f"token id {int(tokens[i])} at index {i} is outside the vocabulary (0..{n_vocab - 1})")
        return np.ascontiguousarray(tokens, dtype=np.int32)
    if isinstance(tokens, (str, bytes)):
        raise TypeError("tokens must be a sequence of token ids; use tokenize() for text")
    ids = list(tokens)
    for i, t in enumerate(ids):
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"tokens must be integers, got {type(t).__name__}")
        if not 0 <= t < n_vocab:  # Python ints: any size, no OverflowError
            raise ValueError(f"token id {int(t)} at index {i} is outside the vocabulary (0..{n_vocab - 1})")
    return np.asarray(ids, dtype=np.int32) if ids else np.zeros(0, dtype=np.int32)


class Llama(GenerationMixin):
    """A GGUF model with one inference context (KV cache).

    Args:
        model_path: path to a .gguf file (any architecture in _core.architectures(): llama, qwen2, qwen3,
            gemma, gemma2, gemma3, phi3, granite, olmo2, smollm3).
        n_ctx: context window in tokens (the KV cache is sized for it).
        n_threads: worker threads; None = number of physical cores.
        n_batch: tokens evaluated per forward chunk while processing a prompt.
        seed: default sampling seed (0xFFFFFFFF = random).
        vocab_only: load only the tokenizer (no weights are touched, no context is created).
        chat_format: None/"auto" to use the file's chat template, or "chatml", "llama-2", "llama-3".
        type_k, type_v: KV cache storage, "f16" (default) or "f32".
        precision: "fast" (int8 kernels where available) or "exact" (float accumulation, the reference).
    """

    def __init__(
        self,
        model_path: "str | os.PathLike[str]",
        *,
        n_ctx: int = 2048,
        n_threads: Optional[int] = None,
        n_batch: int = 512,
        seed: int = LLAMA_DEFAULT_SEED,
        vocab_only: bool = False,
        chat_format: Optional[str] = None,
        verbose: bool = False,
        type_k: str = "f16",
        type_v: str = "f16",
        precision: str = "fast",
    ):
        self._lock = threading.RLock()
        self._ctx = None
        self._model = None
        self._vocab = None
        self.model_path = os.fspath(model_path)
        self.verbose = verbose
        self.chat_format = validate_chat_format(chat_format)
        self.seed = seed
        if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx <= 0:
            raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        if n_threads is not None and (not isinstance(n_threads, int) or isinstance(n_threads, bool) or n_threads <= 0):
            raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
        if not isinstance(n_batch, int) or isinstance(n_batch, bool) or n_batch <= 0:
            raise ValueError(f"n_batch must be a positive integer, got {n_batch!r}")
        # Upper bounds checked here too, so that any Python int gives a ValueError (values past
        # int64 would otherwise be a pybind11 TypeError) and n_threads=10**6 starts no thread.
        if n_ctx > _MAX_N_CTX:
            raise ValueError(f"n_ctx must be at most {_MAX_N_CTX}, got {n_ctx}")
        if n_threads is not None and n_threads > _MAX_N_THREADS:
            raise ValueError(f"n_threads must be at most {_MAX_N_THREADS}, got {n_threads}")
        n_batch = min(n_batch, n_ctx)
        if not os.path.exists(self.model_path):
            raise FileNotFoundError(f"{self.model_path}: model file not found")

        self._model = _core.Model(self.model_path, vocab_only)
        self.metadata: Dict[str, Any] = self._model.gguf.metadata_dict()
        self.vocab_only = vocab_only
        self._vocab = _core.Vocab.from_gguf(self._model.gguf)

        if not vocab_only and self._vocab.n_tokens() > self._model.hparams["n_vocab"]:
            raise _core.GGUFError(
                f"{self.model_path}: the tokenizer has {self._vocab.n_tokens()} tokens but token_embd.weight "
                f"has only {self._model.hparams['n_vocab']} rows"
            )
        self.tokens_in_cache: List[int] = []
        self.eval_count = 0
        if vocab_only:
            self._n_ctx = 0
            return
        self._ctx = _core.Context(self._model, n_ctx, n_threads or 0, n_batch, type_k, type_v, precision)
        self._n_ctx = n_ctx
        self.n_batch = self._ctx.n_batch
        self.n_threads = self._ctx.n_threads
        self.precision = precision

    # ----------------------------------------------------------------------------------------
    # sizes and metadata
    # ----------------------------------------------------------------------------------------
    def n_ctx(self) -> int:
        return self._n_ctx

    def n_vocab(self) -> int:
        if self.vocab_only:
            return int(self._vocab_checked().n_tokens())
        return int(self._model_checked().hparams["n_vocab"])

    def n_embd(self) -> int:
        return int(self._model_checked().hparams["n_embd"])

    @property
    def n_tokens(self) -> int:
        """Number of tokens currently in the KV cache."""
        return len(self.tokens_in_cache)

    @property
    def hparams(self) -> Dict[str, Any]:
        return dict(self._model_checked().hparams)

    @property
    def architecture(self) -> str:
        return self._model_checked().architecture

    @property
    def chat_template(self) -> Optional[str]:
        return self.metadata.get("tokenizer.chat_template")

    @property
    def isa(self) -> str:
        """The kernel instruction set in use ("avx2", "neon", "scalar", ...)."""
        return _core.isa() if hasattr(_core, "isa") else "scalar"

    # ----------------------------------------------------------------------------------------
    # tokenizer
    # ----------------------------------------------------------------------------------------
    def tokenize(self, text: Union[bytes, str], add_bos: bool = True, special: bool = False) -> List[int]:
        """Text -> token ids. `add_bos` adds the BOS (and EOS) tokens the file asks for;
        `special` recognises control tokens such as <|im_start|> written in the text."""
        if isinstance(text, str):
            text = text.encode("utf-8")
        elif not isinstance(text, (bytes, bytearray)):
            raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
        return self._vocab_checked().tokenize(bytes(text), bool(add_bos), bool(special))

    def detokenize(self, tokens: TokenSequence, special: bool = False) -> bytes:
        """Token ids -> UTF-8 bytes (a token can hold part of a character, hence bytes)."""
        vocab = self._vocab_checked()
        ids = _as_token_array(tokens, int(vocab.n_tokens()))
        return vocab.detokenize(ids.tolist(), bool(special))

    def token_bos(self) -> int:
        return int(self._vocab_checked().bos())

    def token_eos(self) -> int:
        return int(self._vocab_checked().eos())

    def token_eot(self) -> int:
        return int(self._vocab_checked().eot())

    def _n_text_tokens(self) -> int:
        """Tokens the tokenizer knows (may be fewer than n_vocab(), the embedding rows)."""
        return int(self._vocab_checked().n_tokens())

    def _is_eog(self, token: int) -> bool:
        """True for tokens that end generation (EOS, EOT, <|im_end|>, ...)."""
        return bool(self._vocab_checked().is_eog(int(token)))

    # ----------------------------------------------------------------------------------------
    # evaluation
    # ----------------------------------------------------------------------------------------
    def eval(self, tokens: TokenSequence) -> np.ndarray:
        """Evaluate `tokens` after what is already in the KV cache and return the logits of every
        position as a float32 array of shape (len(tokens), n_vocab)."""
        return self._decode(tokens, all_logits=True)

    def _eval_last(self, tokens: TokenSequence) -> np.ndarray:
        """Like eval(), but compute and return only the last position's logits (n_vocab,)."""
        return self._decode(tokens, all_logits=False)

    def _decode(self, tokens: TokenSequence, all_logits: bool) -> np.ndarray:
        with self._lock:
            ctx = self._context_checked()
            n_vocab = self.n_vocab()
            ids = _as_token_array(tokens, n_vocab)
            n = int(ids.size)
            if n == 0:
                if all_logits:
                    return np.zeros((0, n_vocab), dtype=np.float32)
                raise ValueError("cannot return the last logits of an empty token list")
            if self.n_tokens + n > self._n_ctx:
                raise ValueError(
                    f"context window full: {self.n_tokens} tokens in the cache + {n} new tokens > n_ctx {self._n_ctx}"
                )
            self._sync_cache(ctx)
            # Chunks of n_batch, so Ctrl-C is honoured between chunks of a long prompt. The C++
            # context is the source of truth for what is cached: whatever interrupts us, the
            # `finally` re-syncs tokens_in_cache with it, so the object stays usable.
            base = self.n_tokens
            step = self.n_batch
            try:
                if all_logits:
                    out = np.empty((n, n_vocab), dtype=np.float32)
                    for start in range(0, n, step):
                        out[start : start + step] = ctx.decode(ids[start : start + step], True)
                    return out
                for start in range(0, n, step):
                    last = ctx.decode(ids[start : start + step], False, start + step >= n)
                return last
            finally:
                done = ctx.n_past - base
                del self.tokens_in_cache[base:]
                self.tokens_in_cache.extend(int(t) for t in ids[:done])
                self.eval_count += done

    def reset(self) -> None:
        """Empty the KV cache."""
        self._truncate_cache(0)

    def _truncate_cache(self, n: int) -> None:
        """Keep only the first n tokens of the KV cache."""
        with self._lock:
            ctx = self._context_checked()
            self._sync_cache(ctx)
            if not 0 <= n <= self.n_tokens:
                raise ValueError(f"cannot keep {n} tokens: the cache holds {self.n_tokens}")
            del self.tokens_in_cache[n:]
            ctx.truncate(n)

    def _sync_cache(self, ctx) -> None:
        """Make tokens_in_cache and the C++ cache agree again after an interruption (Ctrl-C raised
        between the two updates): keep the prefix both hold."""
        n = ctx.n_past
        if n != len(self.tokens_in_cache):
            n = min(n, len(self.tokens_in_cache))
            del self.tokens_in_cache[n:]
            ctx.truncate(n)

    # ----------------------------------------------------------------------------------------
    # calibration support (used by `edgellama quantize --calibrate`)
    # ----------------------------------------------------------------------------------------
    def collect_activation_stats(self, enabled: bool = True) -> None:
        with self._lock:
            self._context_checked().set_collect_activation_stats(bool(enabled))

    def activation_stats(self) -> Dict[str, Tuple[np.ndarray, int]]:
        """{weight name: (sum of squared inputs per column, number of rows seen)}."""
        with self._lock:
            return self._context_checked().activation_stats()

    # ----------------------------------------------------------------------------------------
    # lifetime
    # ----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the KV cache, the threads and the file mapping. The object is unusable after."""
        with self._lock:
            self._ctx = None
            self._vocab = None
            self._model = None

    def __enter__(self) -> "Llama":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _model_checked(self):
        if self._model is None:
            raise RuntimeError("this Llama object is closed")
        return self._model

    def _vocab_checked(self):
        self._model_checked()
        if self._vocab is None:
            raise RuntimeError("this Llama object has no vocabulary")
        return self._vocab

    def _context_checked(self):
        self._model_checked()
        if self._ctx is None:
            raise RuntimeError("this Llama object was created with vocab_only=True and cannot evaluate")
        return self._ctx
