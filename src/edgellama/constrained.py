"""Constrained decoding glue between our vocabulary and llguidance.

Two pieces:

* :func:`llg_tokenizer` describes our vocabulary to llguidance once per model (cached on the model
  object): every token's bytes as it appears in generated text (byte-fallback ``<0x0A>`` tokens are
  the byte they stand for; control tokens such as ``<|im_end|>`` are ``b"\\xff" + name``, llguidance's
  marker for special tokens, so no grammar can spell them by accident), the end-of-generation ids
  (allowed whenever the grammar is complete), and our tokenizer for the few places llguidance needs
  to tokenize text itself.
* :class:`TokenConstraint`, one per generation: it holds an ``llguidance.LLMatcher`` and the
  allowed-token bitset the C++ sampler reads (``Sampler.sample(logits, allowed=mask)``). Its small
  interface is what the sampling loop (and speculative decoding, to check drafts) calls::

      mask = c.fill_mask()     # int32 bitset, bit t%32 of word t/32 = token t allowed next
      c.accept(tok)            # the token was sampled: advance the grammar (raises if it breaks it)
      c.accept_many(toks)      # several at once (accepted drafts): one mask computation
      c.is_done()              # the grammar cannot continue: stop with finish_reason "stop"
      c.rollback(n)            # un-accept the last n tokens (rejected speculative drafts)
      c.validate(tokens)       # how many of these draft tokens the grammar would accept, in order

  After ``accept`` the next mask is computed on a worker thread: llguidance releases the GIL, so it
  runs while the model evaluates the accepted token, and ``fill_mask`` usually finds it ready.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any, List, Optional, Sequence

import llguidance
import numpy as np

from . import _core
from .llama_grammar import LlamaGrammar

__all__ = ["TokenConstraint", "GrammarViolation", "llg_tokenizer", "token_bytes", "constraint_for"]

_SPECIAL_MARK = b"\xff"  # llguidance: a token whose bytes start with 0xFF is a special token


class GrammarViolation(RuntimeError):
    """A token the grammar does not allow was fed to a TokenConstraint."""


def token_bytes(vocab: Any, n_vocab: int) -> List[bytes]:
    """Each token's bytes as llguidance expects them, padded with ``b""`` (never allowed) up to
    ``n_vocab`` (files often have more embedding rows than tokens)."""
    TT = _core.TokenType
    out: List[bytes] = []
    for i in range(vocab.n_tokens()):
        kind = vocab.token_type(i)
        if kind in (TT.CONTROL, TT.UNKNOWN):
            out.append(_SPECIAL_MARK + vocab.token_to_piece(i, True))
            continue
        piece = vocab.token_to_piece(i, False)
        if kind == TT.USER_DEFINED and piece.startswith(b"<") and piece.endswith(b">"):
            # added tokens like <tool_call>: special, as llama.cpp's llguidance glue treats them
            piece = _SPECIAL_MARK + piece
        elif kind == TT.UNUSED or piece.startswith(_SPECIAL_MARK):
            # 0xFF never occurs in UTF-8 text, and llguidance would read it as its special-token
            # marker (an SPM <0xFF> byte token made it panic): such a token can never be allowed.
            piece = b""
        out.append(piece)
    out.extend(b"" for _ in range(n_vocab - len(out)))
    return out


class _VocabForLLG:
    """The duck-typed tokenizer ``llguidance.TokenizerWrapper`` wraps."""

    def __init__(self, vocab: Any, n_vocab: int):
        self._vocab = vocab
        self.tokens = token_bytes(vocab, n_vocab)
        self.eos_token_id = int(vocab.eos())
        bos = int(vocab.bos())
        self.bos_token_id = bos if bos >= 0 else None
        self.special_token_ids = [i for i, t in enumerate(self.tokens) if t.startswith(_SPECIAL_MARK)]
        self._by_bytes: Optional[dict] = None  # bytes -> token id, built on first greedy use

    def __call__(self, text: bytes) -> List[int]:
        """Tokens whose bytes are exactly ``text`` (llguidance tokenizes grammar-forced text with
        this). Our tokenizer's answer when it round-trips; SentencePiece vocabularies add a space
        prefix ("a" -> "▁a"), so then a greedy longest match over the token table."""
        text = bytes(text)
        try:
            ids = list(self._vocab.tokenize(text, False, False))
        except ValueError:  # not UTF-8 (llguidance passes valid prefixes, but be safe)
            return self._greedy(text)
        if b"".join(self.tokens[i] for i in ids) == text:
            return ids
        return self._greedy(text)

    def _greedy(self, text: bytes) -> List[int]:
        if self._by_bytes is None:
            table = {}
            for i, t in enumerate(self.tokens):
                if t and not t.startswith(_SPECIAL_MARK) and t not in table:
                    table[t] = i
            self._by_bytes = table
            self._longest = max(map(len, table), default=1)
        table, out, pos = self._by_bytes, [], 0
        while pos < len(text):
            for n in range(min(self._longest, len(text) - pos), 0, -1):
                tid = table.get(text[pos:pos + n])
                if tid is not None:
                    out.append(tid)
                    pos += n
                    break
            else:  # no token holds this byte (a vocabulary without byte fallback): stop here
                break
        return out


_TOKENIZER_LOCK = threading.Lock()


def llg_tokenizer(model: Any) -> "llguidance.LLTokenizer":
    """The llguidance tokenizer for ``model`` (an ``edgellama.Llama``), built once and cached on it
    (tens to hundreds of ms for 49k-152k tokens)."""
    # A model object may name a longer-lived dict to keep it in (the server's per-request slot
    # models share one per loaded model).
    store = getattr(model, "_shared_caches", None)
    store = model.__dict__ if store is None else store
    cached = store.get("_llg_tokenizer")
    if cached is not None:
        return cached
    with _TOKENIZER_LOCK:
        cached = store.get("_llg_tokenizer")
        if cached is None:
            vocab = model._vocab_checked()
            n_vocab = int(model.n_vocab())
            eog = [int(t) for t in vocab.eog_ids()] or [int(vocab.eos())]
            wrapper = llguidance.TokenizerWrapper(_VocabForLLG(vocab, n_vocab))
            cached = llguidance.LLTokenizer(wrapper, n_vocab=n_vocab, eos_token=eog)
            store["_llg_tokenizer"] = cached
    return cached


# A generation never has two masks in flight; the pool is shared by all constraints so that a
# constraint does not cost a thread (two workers: two models generating in parallel threads).
_MASK_WORKERS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="edgellama-mask")


class TokenConstraint:
    """One generation's grammar state and its allowed-token bitset (see the module docstring)."""

    def __init__(self, tokenizer: "llguidance.LLTokenizer", grammar: LlamaGrammar, *, background: bool = True):
        if not isinstance(grammar, LlamaGrammar):
            raise TypeError(f"grammar must be a LlamaGrammar, got {type(grammar).__name__}")
        self._matcher = llguidance.LLMatcher(tokenizer, grammar.grammar, log_level=0)
        if self._matcher.is_error():
            raise ValueError(f"invalid {grammar._kind} for this model's vocabulary: {self._matcher.get_error()}")
        self.n_vocab = int(tokenizer.vocab_size)
        self.mask = np.zeros((self.n_vocab + 31) // 32, dtype=np.int32)
        self.background = background
        self.n_accepted = 0
        self.mask_seconds = 0.0  # time spent computing masks (in the worker or inline)
        self._pending: Optional[concurrent.futures.Future] = None
        self._mask_valid = False
        self._schedule_mask()

    # ---------------------------------------------------------------------- mask computation

    def _compute_mask(self) -> None:
        t0 = time.perf_counter()
        self._matcher.unsafe_compute_mask_ptr(self.mask.ctypes.data, self.mask.nbytes)
        self.mask_seconds += time.perf_counter() - t0
        if self._matcher.is_error():  # llguidance never raises: it records the error and stops
            raise GrammarViolation(f"grammar engine error: {self._matcher.get_error()[:2000]}")

    def _schedule_mask(self) -> None:
        # Called after every state change, before the worker may hold the matcher: queries that
        # the sampling loop makes between steps (is_done) read this cached state, not the matcher,
        # which llguidance does not let two threads touch at once.
        self._mask_valid = False
        self._stopped = bool(self._matcher.is_stopped())
        if self._stopped:
            return
        if self.background:
            self._pending = _MASK_WORKERS.submit(self._compute_mask)
        else:
            self._pending = None

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()
            self._mask_valid = True

    # ---------------------------------------------------------------------- the interface

    def fill_mask(self) -> np.ndarray:
        """The allowed-token bitset for the next token (int32, ceil(n_vocab/32) words). Valid until
        the next accept/rollback. When the grammar is done only end-of-generation tokens are set."""
        self._wait()
        if not self._mask_valid:
            self._compute_mask()
            self._mask_valid = True
        return self.mask

    def accept(self, token: int) -> None:
        """Advance the grammar by the sampled ``token``; GrammarViolation if it is not allowed."""
        self._wait()
        if not self._matcher.consume_token(int(token)):
            raise GrammarViolation(f"token {int(token)} is not allowed by the grammar here: "
                                   f"{self._matcher.get_error()}")
        self.n_accepted += 1
        self._schedule_mask()

    def accept_many(self, tokens: Sequence[int]) -> None:
        """``accept`` for several tokens (accepted speculative drafts): one mask computation after
        the last instead of one per token. GrammarViolation (state unchanged) if one is not allowed."""
        toks = [int(t) for t in tokens]
        if not toks:
            return
        self._wait()
        n_ok = int(self._matcher.validate_tokens(toks))
        if n_ok < len(toks):
            raise GrammarViolation(f"token {toks[n_ok]} (draft position {n_ok}) is not allowed by the grammar")
        if not self._matcher.consume_tokens(toks):
            raise GrammarViolation(f"consume_tokens failed: {self._matcher.get_error()}")
        self.n_accepted += len(toks)
        self._schedule_mask()

    def validate(self, tokens: Sequence[int]) -> int:
        """How many leading ``tokens`` the grammar accepts from the current state (no state change)."""
        self._wait()
        return int(self._matcher.validate_tokens([int(t) for t in tokens]))

    def rollback(self, n: int) -> None:
        """Undo the last ``n`` accepted tokens (n <= tokens accepted so far)."""
        if n < 0 or n > self.n_accepted:
            raise ValueError(f"rollback({n}): only {self.n_accepted} tokens were accepted")
        self._wait()
        if n and not self._matcher.rollback(int(n)):
            raise GrammarViolation(f"rollback({n}) failed: {self._matcher.get_error()}")
        self.n_accepted -= n
        self._schedule_mask()

    def is_done(self) -> bool:
        """The grammar is complete and allows nothing but end-of-generation."""
        return self._stopped

    def is_accepting(self) -> bool:
        """What was accepted so far is a complete sentence of the grammar."""
        self._wait()
        return bool(self._matcher.is_accepting())

    def close(self) -> None:
        """Wait for a mask still being computed (call before dropping a constraint mid-generation)."""
        try:
            self._wait()
        except Exception:
            pass


# Compute the next mask on a worker thread while the model evaluates the sampled token (True), or
# on the sampling thread right before sampling (False). benchmarks/structured_bench.py measures both
# ("background" / "inline"); the mask costs ~0.1 ms/token at 49k tokens, ~0.3 ms at 150k. Measured on
# a quiet 2-core machine (2026-11-27) the worker thread competes with the model's threads for the
# cores: a tiny 150k-vocab model (3.9 ms/token) +33% per token in the background, +20% inline; the
# Qwen2-0.5B shape (151936 tokens, 30 ms/token) +1.4% / +3.8%; SmolLM2 equal. Inline is simpler.
BACKGROUND_MASK = False


def constraint_for(model: Any, grammar: Optional[LlamaGrammar], *,
                   background: Optional[bool] = None) -> Optional[TokenConstraint]:
    """A fresh TokenConstraint of ``grammar`` over ``model``'s vocabulary (None for no grammar)."""
    if grammar is None:
        return None
    return TokenConstraint(llg_tokenizer(model), grammar,
                           background=BACKGROUND_MASK if background is None else background)


def special_token_id(model: Any, text: str) -> Optional[int]:
    """The id of the control / added token whose text is exactly ``text`` (e.g. Qwen's
    ``<tool_call>``), or None when the vocabulary spells it with ordinary tokens."""
    vocab = model._vocab_checked()
    tid = int(vocab.token_id(text))
    if tid < 0:
        return None
    kind = vocab.token_type(tid)
    return tid if kind in (_core.TokenType.CONTROL, _core.TokenType.USER_DEFINED) else None
