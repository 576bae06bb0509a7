"""The `Llama` class: load a GGUF model and run it. Shaped like llama-cpp-python's `Llama` so code
can switch by changing the import; extras (numpy logits from `eval`, `generate` yielding ids)."""

from __future__ import annotations

import os
import threading
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from . import _core
from .chat_format import validate_chat_format
from .embeddings import EmbeddingMixin
from .llama_cache import BaseLlamaCache
from .llama_hooks import CallHooks, LogitsProcessorList, StoppingCriteriaList  # noqa: F401  (exported here in llama-cpp-python)
from .llama_options import check_compat_options, kv_type, pooling_type as _resolve_pooling, rope_freq_scale_for
from .llama_state import LlamaState
from .llama_tokenizer import BaseLlamaTokenizer, LlamaTokenizer
from .model_ref import locate_model

from .generation import GenerationMixin, _common_prefix  # completions, chat, streaming

LLAMA_DEFAULT_SEED = 0xFFFFFFFF
_MAX_N_CTX = 1 << 24  # = kMaxContext in cpp/runtime/context.cpp
_MAX_N_THREADS = 1024
_EMBED_GROUP_MAX = 64  # inputs per batched embedding pass (one KV sequence each)  # = kMaxThreads there

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


class Llama(GenerationMixin, EmbeddingMixin):
    """A GGUF model with one inference context (KV cache).

    Takes every argument of llama-cpp-python 0.3.36's ``Llama`` (docs/compat.md says what each
    means here); the ones that matter on a CPU:

    Args:
        model_path: a .gguf file (any architecture in _core.architectures(): llama, qwen2,
            qwen3, gemma, gemma2, gemma3, phi3, granite, olmo2, smollm3), or a pulled model name, hf://... or
            an https:// URL already pulled with ``edgellama pull``.
        n_ctx: context window in tokens (the KV cache is sized for it); 0 = the trained context.
        n_batch: tokens per forward chunk while processing a prompt (at most n_ubatch and n_ctx).
        n_threads / n_threads_batch: worker threads (one pool; n_threads wins when both are given);
            None = number of physical cores.
        seed: default sampling seed (0xFFFFFFFF = random).
        logits_all: keep every position's logits in ``scores`` (needed for ``sample(idx=...)``).
        embedding: allow ``embed``/``create_embedding``; pooling_type: -1 = the file's, 0 none,
            1 mean, 2 cls, 3 last.
        vocab_only: load only the tokenizer (no weights are touched, no context is created).
        chat_format: None/"auto" to use the file's chat template, or "chatml", "llama-2", "llama-3".
        type_k, type_v: KV cache storage, "f16" (default) or "f32" (or ggml type ids 1 and 0).
        rope_freq_base, rope_freq_scale: RoPE base frequency and position scale; 0 = the file's.
        last_n_tokens_size: how many recent tokens the repetition penalties look at.
        draft_model: a draft model for speculative decoding (see edgellama.llama_speculative).
        tokenizer: a BaseLlamaTokenizer used instead of the file's tokenizer.
        precision: "fast" (int8 kernels where available) or "exact" (float accumulation, the reference).
    Unknown keyword arguments are accepted (as llama-cpp-python does) with a warning naming them.
    """

    def __init__(
        self,
        model_path: "str | os.PathLike[str]",
        *,
        # model
        n_gpu_layers: int = 0,
        split_mode: int = 1,
        main_gpu: int = 0,
        tensor_split: Optional[List[float]] = None,
        vocab_only: bool = False,
        use_mmap: bool = True,
        use_mlock: bool = False,
        kv_overrides: Optional[Dict[str, Union[bool, int, float, str]]] = None,
        # context
        seed: int = LLAMA_DEFAULT_SEED,
        n_ctx: int = 512,
        n_batch: int = 512,
        n_ubatch: int = 512,
        n_threads: Optional[int] = None,
        n_threads_batch: Optional[int] = None,
        rope_scaling_type: Optional[int] = -1,
        pooling_type: Union[int, str] = -1,
        attention_type: int = -1,
        rope_freq_base: float = 0.0,
        rope_freq_scale: float = 0.0,
        yarn_ext_factor: float = -1.0,
        yarn_attn_factor: float = 1.0,
        yarn_beta_fast: float = 32.0,
        yarn_beta_slow: float = 1.0,
        yarn_orig_ctx: int = 0,
        logits_all: bool = False,
        embedding: bool = False,
        offload_kqv: bool = True,
        flash_attn: bool = False,
        op_offload: Optional[bool] = None,
        swa_full: Optional[bool] = None,
        # sampling
        no_perf: bool = False,
        last_n_tokens_size: int = 64,
        # LoRA
        lora_base: Optional[str] = None,
        lora_scale: float = 1.0,
        lora_path: Optional[str] = None,
        # backend
        numa: Union[bool, int] = False,
        # chat
        chat_format: Optional[str] = None,
        chat_handler: Optional[Any] = None,
        # speculative decoding (wired in edgellama.llama_speculative)
        draft_model: Optional[Any] = None,
        tokenizer: Optional[BaseLlamaTokenizer] = None,
        # KV cache
        type_k: Union[None, int, str] = None,
        type_v: Union[None, int, str] = None,
        spm_infill: bool = False,
        verbose: bool = True,
        # edgellama's own
        precision: str = "fast",
        **kwargs: Any,
    ):
        self._lock = threading.RLock()
        self._ctx = None
        self._model = None
        self._vocab = None
        # Kept for __getstate__ (pickling re-creates the object from its arguments).
        self._init_args = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")}
        self._init_args.update(kwargs)
        if kwargs:
            warnings.warn(f"Llama: ignoring unknown keyword argument(s) {', '.join(sorted(kwargs))}", stacklevel=2)
        check_compat_options(dict(
            n_gpu_layers=n_gpu_layers, split_mode=split_mode, main_gpu=main_gpu, tensor_split=tensor_split,
            offload_kqv=offload_kqv, op_offload=op_offload, flash_attn=flash_attn, swa_full=swa_full,
            use_mmap=use_mmap, use_mlock=use_mlock, numa=numa, no_perf=no_perf, spm_infill=spm_infill,
            attention_type=attention_type, yarn_ext_factor=yarn_ext_factor, yarn_attn_factor=yarn_attn_factor,
            yarn_beta_fast=yarn_beta_fast, yarn_beta_slow=yarn_beta_slow, yarn_orig_ctx=yarn_orig_ctx,
            kv_overrides=kv_overrides, lora_path=lora_path, lora_base=lora_base))
        if chat_handler is not None:
            raise NotImplementedError("Llama(chat_handler=...) is not implemented by edgellama: use chat_format= "
                                      "or the GGUF's chat template")
        self.model_path = os.fspath(locate_model(model_path))
        self.verbose = verbose
        self.chat_format = validate_chat_format(chat_format)
        self.chat_handler = chat_handler
        self.draft_model = draft_model
        self.seed = seed
        self.tensor_split = tensor_split
        self.kv_overrides = kv_overrides
        self.lora_base, self.lora_scale, self.lora_path = lora_base, lora_scale, lora_path
        self.numa = numa
        self.spm_infill = spm_infill
        self.cache: Optional[BaseLlamaCache] = None
        # llama-cpp-python's flags for state-space models; every architecture edgellama runs is a transformer
        self._is_recurrent = False
        self._is_hybrid = False
        if not isinstance(last_n_tokens_size, int) or isinstance(last_n_tokens_size, bool) or last_n_tokens_size < 0:
            raise ValueError(f"last_n_tokens_size must be a non-negative int, got {last_n_tokens_size!r}")
        self.last_n_tokens_size = last_n_tokens_size
        if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 0:
            raise ValueError(f"n_ctx must be a positive integer (or 0 for the trained context), got {n_ctx!r}")
        for name, value in (("n_threads", n_threads), ("n_threads_batch", n_threads_batch)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
            # Upper bounds checked here too, so that any Python int gives a ValueError (values past
            # int64 would otherwise be a pybind11 TypeError) and n_threads=10**6 starts no thread.
            if value is not None and value > _MAX_N_THREADS:
                raise ValueError(f"{name} must be at most {_MAX_N_THREADS}, got {value}")
        for name, value in (("n_batch", n_batch), ("n_ubatch", n_ubatch)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if n_ctx > _MAX_N_CTX:
            raise ValueError(f"n_ctx must be at most {_MAX_N_CTX}, got {n_ctx}")
        type_k, type_v = kv_type(type_k, "type_k"), kv_type(type_v, "type_v")
        usable_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        for name, value in (("n_threads", n_threads), ("n_threads_batch", n_threads_batch)):
            if value is not None and value > usable_cpus:
                # Allowed (the pool then sleeps instead of spinning), but never faster than one thread per CPU.
                warnings.warn(
                    f"{name}={value} is more than the {usable_cpus} logical CPUs this process can use; "
                    f"extra threads only add switching (None = the {_core.physical_core_count()} physical cores)",
                    RuntimeWarning,
                    stacklevel=2,
                )

        self._model = _core.Model(self.model_path, vocab_only)
        self.metadata: Dict[str, Any] = self._model.gguf.metadata_dict()
        self.vocab_only = vocab_only
        self._vocab = _core.Vocab.from_gguf(self._model.gguf)
        self.tokenizer_: BaseLlamaTokenizer = tokenizer if tokenizer is not None else LlamaTokenizer(self)
        self._logits_all = bool(logits_all)
        self._embedding = bool(embedding)
        arch = self.metadata.get("general.architecture", "")
        self._pooling_type = _resolve_pooling(pooling_type, self.metadata.get(f"{arch}.pooling_type"))

        if not vocab_only and self._vocab.n_tokens() > self._model.hparams["n_vocab"]:
            raise _core.GGUFError(
                f"{self.model_path}: the tokenizer has {self._vocab.n_tokens()} tokens but token_embd.weight "
                f"has only {self._model.hparams['n_vocab']} rows"
            )
        self.tokens_in_cache: List[int] = []
        self.eval_count = 0
        self._last_logits: Optional[np.ndarray] = None
        self._scores_all: Optional[np.ndarray] = None  # (n_ctx, n_vocab) with logits_all
        if vocab_only:
            self._n_ctx = 0
            return
        n_ctx_train = int(self._model.hparams.get("n_ctx_train") or 0)
        if n_ctx == 0:
            if n_ctx_train <= 0:
                raise ValueError(f"n_ctx=0 asks for the trained context, but {self.model_path} does not say it")
            n_ctx = min(n_ctx_train, _MAX_N_CTX)
        elif 0 < n_ctx_train < n_ctx:
            warnings.warn(f"n_ctx={n_ctx} exceeds the context {self.model_path} was trained with ({n_ctx_train}): "
                          f"expect degraded output past {n_ctx_train} tokens", stacklevel=2)
        chunk = min(n_batch, n_ubatch, n_ctx)  # our forward chunk is llama.cpp's physical batch
        for name, value in (("rope_freq_base", rope_freq_base), ("rope_freq_scale", rope_freq_scale)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number (0 = the model's), got {value!r}")
        rope_freq_scale = rope_freq_scale_for(rope_scaling_type, rope_freq_scale)
        # what a context needs beyond n_ctx (batched embeddings make short-lived contexts like it)
        self._ctx_args = (n_threads or n_threads_batch or 0, chunk, type_k, type_v, precision,
                          float(rope_freq_base), float(rope_freq_scale))
        # swa_full: full-size caches for sliding-window layers instead of the ring (same logits; a
        # prefix reuse deeper than the ring then needs no re-evaluation)
        self._ctx = _core.Context(self._model, n_ctx, *self._ctx_args, swa_full=bool(swa_full))
        self._n_ctx = n_ctx
        self.n_batch = min(n_batch, n_ctx)
        self.n_ubatch = self._ctx.n_batch
        self.n_threads = self._ctx.n_threads
        self.n_threads_batch = self._ctx.n_threads
        self.precision = precision

    # ----------------------------------------------------------------------------------------
    # llama-cpp-python's view of the context: tokens, logits, seed
    # ----------------------------------------------------------------------------------------
    @property
    def input_ids(self) -> npt.NDArray[np.intc]:
        """(n_ctx,) int32: the tokens in the KV cache, then zeros (a copy; read it, do not assign)."""
        out = np.zeros(max(self._n_ctx, len(self.tokens_in_cache)), dtype=np.intc)
        out[: len(self.tokens_in_cache)] = self.tokens_in_cache
        return out

    @property
    def scores(self) -> npt.NDArray[np.single]:
        """With logits_all: (n_ctx, n_vocab) logits of every cached position (rows past n_tokens
        are stale). Without: (1, n_vocab), the logits after the last evaluated token."""
        if self._logits_all:
            return self._scores_buffer()
        out = np.zeros((1, self.n_vocab()), dtype=np.single)
        if self._last_logits is not None:
            out[0] = self._last_logits
        return out

    @property
    def _input_ids(self) -> npt.NDArray[np.intc]:
        return np.asarray(self.tokens_in_cache, dtype=np.intc)

    @property
    def _scores(self) -> npt.NDArray[np.single]:
        return self.scores[: self.n_tokens] if self._logits_all else self.scores[: min(1, self.n_tokens)]

    @property
    def eval_tokens(self) -> Deque[int]:
        return deque(self.tokens_in_cache, maxlen=self._n_ctx)

    @property
    def eval_logits(self) -> Deque[List[float]]:
        return deque(self._scores.tolist(), maxlen=self._n_ctx if self._logits_all else 1)

    def _scores_buffer(self) -> np.ndarray:
        if self._scores_all is None:  # zero pages are not touched until written
            self._scores_all = np.zeros((self._n_ctx, self.n_vocab()), dtype=np.single)
        return self._scores_all

    def set_cache(self, cache: Optional[BaseLlamaCache]) -> None:
        """Use ``cache`` (LlamaRAMCache, LlamaDiskCache) for prompt-prefix reuse across completions."""
        self.cache = cache

    # ----------------------------------------------------------------------------------------
    # saved states and the prompt cache
    # ----------------------------------------------------------------------------------------
    def save_state(self) -> LlamaState:
        """A snapshot of the context; ``load_state`` makes the object continue exactly from it."""
        with self._lock:
            ctx = self._context_checked()
            self._sync_cache(ctx)
            data = ctx.save_state()
            n = self.n_tokens
            scores = self._scores.copy()
            if not self._logits_all and self._last_logits is None:
                scores = np.zeros((0, self.n_vocab()), dtype=np.single)
            return LlamaState(input_ids=self.input_ids.copy(), scores=scores, n_tokens=n,
                              llama_state=data, llama_state_size=len(data), seed=self.seed)

    def load_state(self, state: LlamaState) -> None:
        with self._lock:
            ctx = self._context_checked()
            n = int(state.n_tokens)
            if not 0 <= n <= len(state.input_ids):
                raise ValueError(f"load_state: n_tokens {n} does not fit the state's {len(state.input_ids)} input_ids")
            ctx.load_state(bytes(state.llama_state))  # checks shape, KV types and size
            if ctx.n_past != n:  # the KV cache holds another number of tokens than the state says
                ctx.truncate(0)
                self.tokens_in_cache = []
                self._last_logits = None
                raise ValueError(f"load_state: the state's KV cache holds {ctx.n_past} tokens but n_tokens is {n}")
            self.tokens_in_cache = [int(t) for t in np.asarray(state.input_ids)[:n]]
            scores = np.asarray(state.scores, dtype=np.single)
            if self._logits_all:
                buf = self._scores_buffer()
                rows = min(len(scores), n)
                buf[:rows] = scores[:rows]
                buf[rows:] = 0.0
            self._last_logits = scores[-1].copy() if len(scores) else None
            self.set_seed(state.seed)  # the seed chain of later calls continues from here

    def _prompt_cache_load(self, prompt_tokens: List[int]) -> None:
        """Before a completion: restore the cached state sharing the longest prefix with the prompt,
        when it shares more than the KV cache does now."""
        if self.cache is None:
            return
        try:
            item = self.cache[prompt_tokens]
        except KeyError:
            return
        cached = Llama.longest_token_prefix(np.asarray(item.input_ids)[: item.n_tokens].tolist(), prompt_tokens)
        if cached > Llama.longest_token_prefix(self.tokens_in_cache, prompt_tokens):
            self.load_state(item)

    def _prompt_cache_save(self, tokens: List[int]) -> None:
        """After a completion: save the state under the prompt + completion tokens."""
        if self.cache is not None:
            self.cache[tokens] = self.save_state()

    # ----------------------------------------------------------------------------------------
    # sampling outside the generation loop
    # ----------------------------------------------------------------------------------------
    def sample(self, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, typical_p: float = 1.0,
               temp: float = 0.80, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
               presence_penalty: float = 0.0, tfs_z: float = 1.0, mirostat_mode: int = 0,
               mirostat_eta: float = 0.1, mirostat_tau: float = 5.0, penalize_nl: bool = True,
               logits_processor: Optional[LogitsProcessorList] = None, grammar: Any = None,
               idx: Optional[int] = None) -> int:
        """Sample the token after the evaluated ones (or after position ``idx``, with logits_all).
        ``tfs_z`` and ``penalize_nl`` have no effect (as in llama-cpp-python 0.3.36)."""
        if grammar is not None:
            raise NotImplementedError("sample(grammar=...) is not implemented; pass grammar= to create_completion")
        if self.n_tokens == 0:
            raise ValueError("sample() needs evaluated tokens: call eval() first")
        if idx is None:
            logits = self._last_logits if not self._logits_all else self._scores_buffer()[self.n_tokens - 1]
            history = self.tokens_in_cache
        else:
            if not 0 <= idx < self.n_tokens:
                raise ValueError(f"idx {idx} is outside the evaluated tokens (0..{self.n_tokens - 1})")
            if self._logits_all:
                logits = self._scores_buffer()[idx]
            elif idx == self.n_tokens - 1:
                logits = self._last_logits
            else:
                raise ValueError("sample(idx=...) before the last token needs Llama(logits_all=True)")
            history = self.tokens_in_cache[: idx + 1]
        if logits is None:
            raise ValueError("sample(): no logits for the last evaluated token")
        logits = np.array(logits, dtype=np.single)
        if logits_processor is not None:
            logits = np.asarray(logits_processor(np.asarray(history, dtype=np.intc), logits), dtype=np.single)
        hooks = CallHooks.make(None, None, mirostat_mode, mirostat_tau, mirostat_eta)
        sampler = self._sampler(temp, top_k, top_p, min_p, typical_p, repeat_penalty, self.last_n_tokens_size,
                                frequency_penalty, presence_penalty, None, None,
                                **(hooks.sampler_params() if hooks else {}))
        window = history[len(history) - self.last_n_tokens_size:] if self.last_n_tokens_size else []
        for t in window:
            sampler.accept(int(t))
        return int(sampler.sample(logits))

    @staticmethod
    def logits_to_logprobs(logits: Union[npt.NDArray[np.single], List], axis: int = -1) -> npt.NDArray[np.single]:
        """log(softmax(logits)) along ``axis`` as float32; -inf logits give -inf, all -inf gives NaN-free -inf."""
        x = np.asarray(logits, dtype=np.float64)
        m = np.max(x, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        with np.errstate(divide="ignore"):
            out = x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
        return out.astype(np.single)

    @staticmethod
    def longest_token_prefix(a: Sequence[int], b: Sequence[int]) -> int:
        return _common_prefix(a, b)

    def create_chat_completion_openai_v1(self, *args: Any, **kwargs: Any):
        """create_chat_completion, returning the openai package's ChatCompletion (or a generator of
        ChatCompletionChunk with stream=True)."""
        try:
            from openai.types.chat import ChatCompletion, ChatCompletionChunk
        except ImportError:
            raise ImportError("create_chat_completion_openai_v1 needs the openai package: pip install openai") from None
        if kwargs.get("stream", False):
            return (ChatCompletionChunk(**chunk) for chunk in self.create_chat_completion(*args, **kwargs))
        return ChatCompletion(**self.create_chat_completion(*args, **kwargs))

    @classmethod
    def from_pretrained(cls, repo_id: str, filename: Optional[str], additional_files: Optional[List] = None,
                        local_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
                        local_dir_use_symlinks: Union[bool, str] = "auto",
                        cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None, **kwargs: Any) -> "Llama":
        """A model from a Hugging Face repository: ``filename`` is a name or a glob matching one file
        (e.g. ``"*Q4_K_M.gguf"``); downloads go to the Hugging Face cache (reused by other tools);
        ``kwargs`` go to the constructor. See edgellama/pretrained.py."""
        from .pretrained import from_pretrained

        return from_pretrained(cls, repo_id, filename, additional_files, local_dir, local_dir_use_symlinks,
                               cache_dir, **kwargs)

    # ----------------------------------------------------------------------------------------
    # pickling: re-create from the constructor arguments (the KV cache is not kept)
    # ----------------------------------------------------------------------------------------
    def __getstate__(self) -> Dict[str, Any]:
        return dict(self._init_args)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(**state)

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
        """Number of tokens currently in the KV cache. Assigning a smaller number drops the rest
        (llama-cpp-python code resets with ``llm.n_tokens = 0``)."""
        return len(self.tokens_in_cache)

    @n_tokens.setter
    def n_tokens(self, n: int) -> None:
        self._truncate_cache(int(n))

    def pooling_type(self) -> int:
        """llama.cpp's llama_pooling_type in effect for embed(): 0 none, 1 mean, 2 cls, 3 last."""
        return self._pooling_type

    def tokenizer(self) -> LlamaTokenizer:
        """The GGUF file's tokenizer as an object (llama-cpp-python's LlamaTokenizer)."""
        return LlamaTokenizer(self)

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
        return _core.isa()

    # ----------------------------------------------------------------------------------------
    # tokenizer
    # ----------------------------------------------------------------------------------------
    def tokenize(self, text: Union[bytes, str], add_bos: bool = True, special: bool = False) -> List[int]:
        """Text -> token ids. `add_bos` adds the BOS (and EOS) tokens the file asks for;
        `special` recognises control tokens such as <|im_start|> written in the text. Uses
        ``Llama(tokenizer=...)`` when one was given."""
        custom = self._custom_tokenizer()
        if custom is not None:
            return list(custom.tokenize(text.encode("utf-8") if isinstance(text, str) else bytes(text), add_bos, special))
        return self._gguf_tokenize(text, add_bos=add_bos, special=special)

    def _gguf_tokenize(self, text: Union[bytes, str], add_bos: bool = True, special: bool = False) -> List[int]:
        if isinstance(text, str):
            text = text.encode("utf-8")
        elif not isinstance(text, (bytes, bytearray)):
            raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
        return self._vocab_checked().tokenize(bytes(text), bool(add_bos), bool(special))

    def detokenize(self, tokens: TokenSequence, prev_tokens: Optional[TokenSequence] = None,
                   special: bool = False) -> bytes:
        """Token ids -> UTF-8 bytes (a token can hold part of a character, hence bytes). With
        ``prev_tokens``, the bytes ``tokens`` add after them (a leading space a tokenizer strips
        from a text's first token is kept)."""
        custom = self._custom_tokenizer()
        if custom is not None:
            return custom.detokenize(list(tokens), prev_tokens=None if prev_tokens is None else list(prev_tokens),
                                     special=special)
        return self._gguf_detokenize(tokens, prev_tokens=prev_tokens, special=special)

    def _gguf_detokenize(self, tokens: TokenSequence, prev_tokens: Optional[TokenSequence] = None,
                         special: bool = False) -> bytes:
        vocab = self._vocab_checked()
        n = int(vocab.n_tokens())
        ids = _as_token_array(tokens, n).tolist()
        if prev_tokens is None or len(prev_tokens) == 0:
            return vocab.detokenize(ids, bool(special))
        # the bytes ids add after prev_tokens (Vocab::detokenize_after): once per generated token
        return vocab.detokenize(ids, bool(special), _as_token_array(prev_tokens, n).tolist())

    def _token_text_bytes(self, prev: Optional[int], tok: int) -> bytes:
        """Generation's per-token piece (GenerationMixin._token_text_bytes) in one C++ call:
        the ids come from the sampler, so detokenize()'s argument checks are skipped."""
        if self._custom_tokenizer() is not None:
            return super()._token_text_bytes(prev, tok)
        return self._vocab.detokenize([tok], False, None if prev is None else [prev])

    def _custom_tokenizer(self) -> Optional[BaseLlamaTokenizer]:
        """The tokenizer given as Llama(tokenizer=...), None when the GGUF's own is used."""
        t = self.__dict__.get("tokenizer_")
        return None if t is None or isinstance(t, LlamaTokenizer) else t

    def token_nl(self) -> int:
        """The newline token ("\\n" alone), -1 if the vocabulary has none."""
        ids = self._gguf_tokenize(b"\n", add_bos=False, special=False)
        return int(ids[0]) if len(ids) == 1 else -1

    def token_bos(self) -> int:
        return int(self._vocab_checked().bos())

    def token_eos(self) -> int:
        return int(self._vocab_checked().eos())

    def token_eot(self) -> int:
        return int(self._vocab_checked().eot())

    def _n_text_tokens(self) -> int:
        """Tokens the tokenizer knows (may be fewer than n_vocab(), the embedding rows)."""
        return int(self._vocab_checked().n_tokens())

    def is_eog(self, token: int) -> bool:
        """True for tokens that end generation: EOS, EOT and the file's other end-of-turn tokens
        (e.g. <|im_end|>)."""
        return self._is_eog(token)

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
            want_last = not all_logits
            all_logits = all_logits or self._logits_all  # logits_all keeps every row in scores
            try:
                if all_logits:
                    out = np.empty((n, n_vocab), dtype=np.float32)
                    for start in range(0, n, step):
                        end = min(start + step, n)
                        out[start:end] = ctx.decode(ids[start:end], True)
                        if self._logits_all:
                            self._scores_buffer()[base + start : base + end] = out[start:end]
                    self._last_logits = out[-1].copy()
                    return out[-1] if want_last else out
                for start in range(0, n, step):
                    last = ctx.decode(ids[start : start + step], False, start + step >= n)
                self._last_logits = last
                return last
            finally:
                done = ctx.n_past - base
                del self.tokens_in_cache[base:]
                self.tokens_in_cache.extend(int(t) for t in ids[:done])
                self.eval_count += done
                if done < n:
                    self._last_logits = None

    def _hidden_states(self, tokens: TokenSequence) -> np.ndarray:
        """Final-norm hidden states (len(tokens), n_embd) of ``tokens`` evaluated from position 0
        (the KV cache then holds them); no logits are computed."""
        with self._lock:
            ctx = self._context_checked()
            ids = _as_token_array(tokens, self.n_vocab())
            if ids.size > self._n_ctx:
                raise ValueError(f"{ids.size} tokens do not fit in n_ctx {self._n_ctx}")
            self._truncate_cache(0)
            try:
                return ctx.decode_hidden(ids)
            finally:
                self.tokens_in_cache = [int(t) for t in ids[: ctx.n_past]]
                self._last_logits = None

    def _hidden_states_many(self, token_lists: Sequence[TokenSequence]) -> List[np.ndarray]:
        """``_hidden_states`` of several inputs, each from position 0, evaluated together: groups of
        inputs share each forward pass (one sequence per input in a short-lived context; the weights
        are read once per group instead of once per input). An input's rows get the same bits as
        alone (a row's result never depends on the other rows of a batch). The object's own KV cache
        is untouched."""
        with self._lock:
            self._context_checked()
            n_vocab = self.n_vocab()
            ids = [_as_token_array(t, n_vocab) for t in token_lists]
            for a in ids:
                if a.size > self._n_ctx:
                    raise ValueError(f"{a.size} tokens do not fit in n_ctx {self._n_ctx}")
            out: List[Optional[np.ndarray]] = [None] * len(ids)
            budget = max(self.n_batch, 1)  # rows per group, as a prompt chunk (longer inputs go alone)
            i = 0
            while i < len(ids):
                group, rows = [i], ids[i].size
                while i + len(group) < len(ids) and len(group) < _EMBED_GROUP_MAX \
                        and rows + ids[i + len(group)].size <= budget:
                    rows += ids[i + len(group)].size
                    group.append(i + len(group))
                longest = max(1, max(ids[j].size for j in group))
                ctx = _core.Context(self._model, longest, *self._ctx_args, n_seq=len(group))
                tokens = np.concatenate([ids[j] for j in group]).astype(np.int32)
                seqs = np.concatenate([np.full(ids[j].size, k, dtype=np.int32) for k, j in enumerate(group)])
                hidden = ctx.decode_batch_hidden(tokens, seqs) if tokens.size else \
                    np.zeros((0, self.n_embd()), dtype=np.float32)
                start = 0
                for j in group:
                    out[j] = hidden[start:start + ids[j].size]
                    start += ids[j].size
                i += len(group)
            return out  # type: ignore[return-value]

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
            if n < self.n_tokens:  # the last logits are those of token n-1 now
                self._last_logits = self._scores_buffer()[n - 1].copy() if n and self._logits_all else None
            del self.tokens_in_cache[n:]
            if ctx.can_truncate(n):
                ctx.truncate(n)
                return
            # A sliding-window ring buffer (gemma2/3 local layers) no longer holds the window before
            # position n: re-evaluate the kept tokens from position 0, as llama.cpp re-processes the
            # prompt when its SWA cache cannot be reused.
            keep = np.asarray(self.tokens_in_cache, dtype=np.int32)
            del self.tokens_in_cache[:]
            ctx.truncate(0)
            for start in range(0, n, self.n_batch):
                ctx.decode(keep[start:start + self.n_batch], False, False)
                self.tokens_in_cache.extend(int(t) for t in keep[start:start + self.n_batch])

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
