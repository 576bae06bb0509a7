"""Text generation on top of a model that can evaluate tokens: ``generate``, completions, chat.

:class:`GenerationMixin` is mixed into :class:`edgellama.Llama` (and the server's SlotModel). What it
needs from the model object is the model contract, written down in one place: the
``GenerationModel`` Protocol in model_contract.py.

Return values have the shapes of llama-cpp-python (and so of the OpenAI API), so code written for
``llama_cpp.Llama`` keeps working::

    llm("Q: Name the planets. A:", max_tokens=32, stop=["Q:"])["choices"][0]["text"]
    for chunk in llm("Once upon a time", stream=True): print(chunk["choices"][0]["text"], end="")
    llm.create_chat_completion([{"role": "user", "content": "Hi"}])["choices"][0]["message"]["content"]

Differences from llama-cpp-python, on purpose: ``max_tokens`` <= 0 raises ValueError (``None`` means
"until the context is full"); a prompt that does not leave room for one generated token raises a
ValueError naming both lengths; chat on a model without a chat template raises a ValueError unless a
``chat_format`` was chosen.
"""

from __future__ import annotations

import contextlib

import random
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Generator, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core, speculative
from .chat_format import ChatFormatter, get_chat_formatter, validate_chat_format
from .constrained import constraint_for
from .llama_grammar import LlamaGrammar, as_grammar
from .tool_calls import chat_structure, messages_with_tools, stream_tool_chunks
from .llama_hooks import CallHooks
from .sampling_params import check_sampling_params
from .streaming import TextStream, normalize_stop

__all__ = ["GenerationMixin"]

_RANDOM_SEED = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: "pick a random seed"

Stop = Union[None, str, List[str]]


def _collect_events(events) -> "Tuple[str, List[_TokenLogprob], Optional[str]]":
    """Drain a completion's events: the whole text, every token's logprob entry, the finish reason."""
    parts: List[str] = []
    entries: List["_TokenLogprob"] = []
    finish = None
    for ev in events:
        parts.append(ev.text)
        entries.extend(ev.logprobs)
        finish = ev.finish_reason or finish
    return "".join(parts), entries, finish


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens a and b share (the KV cache prefix to keep; also used by the prompt
    caches and the server's slot choice)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    return np.asarray(_core.log_softmax(logits))


def _top_logprobs(logits: np.ndarray, k: int) -> Tuple[List[int], List[float]]:
    ids, lps = _core.top_logprobs(logits, k)
    return [int(i) for i in ids], [float(v) for v in lps]


@dataclass
class _TokenLogprob:
    token: int
    piece: bytes  # the token's bytes in context
    offset: int  # character offset of the token's text in the returned text
    logprob: Optional[float]
    top: Optional[List[Tuple[int, bytes, float]]]  # (id, bytes, logprob), best first


@dataclass
class _Event:
    text: str
    logprobs: List[_TokenLogprob]
    finish_reason: Optional[str] = None


@dataclass
class _Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> Dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def _logit_bias(bias: Optional[Dict[Any, float]], n_vocab: int) -> Optional[Dict[int, float]]:
    if not bias:
        return None
    out: Dict[int, float] = {}
    for k, v in bias.items():
        try:
            t = int(k)  # OpenAI sends token ids as JSON object keys, i.e. strings
        except (TypeError, ValueError):
            raise ValueError(f"logit_bias keys must be token ids, got {k!r}") from None
        if not 0 <= t < n_vocab:
            raise ValueError(f"logit_bias token id {t} is out of range [0, {n_vocab})")
        out[t] = float(v)
    return out


class GenerationMixin:
    """Sampling loop, completions and chat for a model object that follows the model contract."""

    # ------------------------------------------------------------------ seeds

    def set_seed(self, seed: int) -> None:
        """The object's seed: what generate()/sample() seed their sampler with, and where the
        seed chain of calls without ``seed=`` continues from (see ``_call_seed``)."""
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = int(seed)

    def _call_seed(self, seed: Optional[int]) -> int:
        """The object's seed for one create_completion call, as llama-cpp-python 0.3.36 sets it:
        ``seed`` when given, else ``random.Random(self.seed).randint(0, 2**32)``. Either way it
        becomes the object's seed, so a fresh ``Llama(seed=s)`` (or one after ``set_seed(s)``)
        repeats its outputs, successive calls differ, ``llm(p, seed=s); llm(q)`` samples ``q`` as
        ``llm.set_seed(s); llm(q)`` does, and load_state (which restores the seed) repeats the
        calls after save_state. Same seeds as llama-cpp-python, same RNG as llama.cpp
        (cpp/sampling/rng.cpp): the same tokens where the logits agree. One difference: an object
        seed of 0xFFFFFFFF or -1 (the default, "random" in llama-cpp-python's docstring) starts the
        chain from a random seed; llama-cpp-python starts it from 0xFFFFFFFF itself, so its
        default repeats from run to run (docs/compat.md)."""
        if seed is None:
            start = int(self.seed)
            if start in (_RANDOM_SEED, -1):
                start = secrets.randbits(32)
            seed = random.Random(start).randint(0, 2**32)
        self.set_seed(seed)
        return self.seed

    @staticmethod
    def _sampler_seed(seed: int) -> int:
        """The seed a sampler gets for an object/call seed: mod 2^32, as llama-cpp-python passes it
        to llama.cpp through ctypes.c_uint32 (so 2**32 from randint is 0); 0xFFFFFFFF (-1) is
        llama.cpp's LLAMA_DEFAULT_SEED, "a random seed"."""
        s = int(seed) & 0xFFFFFFFF
        return secrets.randbits(32) if s == _RANDOM_SEED else s

    # ------------------------------------------------------------------ generate

    def generate(
        self,
        tokens: Sequence[int],
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        temp: float = 0.80,
        repeat_penalty: float = 1.0,
        reset: bool = True,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        penalize_nl: bool = True,
        logits_processor: Optional[Any] = None,
        stopping_criteria: Optional[Any] = None,
        *,
        seed: Optional[int] = None,
        logit_bias: Optional[Dict[int, float]] = None,
        repeat_last_n: int = 64,
    ) -> Generator[int, Optional[Sequence[int]], None]:
        """Yield sampled token ids after ``tokens``, without end: the caller decides when to stop
        (EOS is yielded like any other token; see ``_is_eog``). The generator returns when the
        context is full.

        With ``reset=True`` (the default) the longest common prefix of ``tokens`` with the tokens
        already in the KV cache is kept and only the rest is evaluated (at least the last token, to
        get its logits). With ``reset=False`` ``tokens`` are appended to the cache as they are.
        Like llama-cpp-python, ``gen.send(more_tokens)`` appends extra tokens after the last yielded
        one. A sampled token is evaluated only when the next one is asked for.
        ``logits_processor``/``stopping_criteria`` as in create_completion (a stop ends the
        generator); ``tfs_z`` and ``penalize_nl`` have no effect, as in llama-cpp-python 0.3.36.
        The sampler is seeded with ``seed`` (an edgellama extension) or else the object's seed, as
        is (llama-cpp-python's generate() does not move its seed on; create_completion does).
        """
        hooks = CallHooks.make(logits_processor, stopping_criteria, mirostat_mode, mirostat_tau, mirostat_eta)
        sampler = self._sampler(temp, top_k, top_p, min_p, typical_p, repeat_penalty, repeat_last_n,
                                frequency_penalty, presence_penalty, seed, logit_bias,
                                **(hooks.sampler_params() if hooks else {}))
        gen = self._generate(tokens, sampler, reset=reset, repeat_last_n=repeat_last_n, hooks=hooks)
        try:
            tok, _ = next(gen)
            while True:
                extra = yield tok
                tok, _ = gen.send(extra)
        except StopIteration:
            return
        finally:
            gen.close()

    def _sampler(self, temp, top_k, top_p, min_p, typical_p, repeat_penalty, repeat_last_n,
                 frequency_penalty, presence_penalty, seed, logit_bias, **mirostat: Any) -> Any:
        check_sampling_params(temperature=temp, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
                              repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                              presence_penalty=presence_penalty)
        return _core.Sampler(
            temperature=float(temp), top_k=int(top_k), top_p=float(top_p), min_p=float(min_p),
            typical_p=float(typical_p), repeat_penalty=float(repeat_penalty), repeat_last_n=int(repeat_last_n),
            frequency_penalty=float(frequency_penalty), presence_penalty=float(presence_penalty),
            seed=self._sampler_seed(self.seed if seed is None else seed),
            logit_bias=_logit_bias(logit_bias, self.n_vocab()),
            n_sampleable=self._n_sampleable(), **mirostat)

    def _n_sampleable(self) -> int:
        """Ids the sampler may draw: files often pad token_embd with rows the tokenizer has no text
        for (Qwen2.5: 151936 rows, 151665 tokens); the C++ sampler never draws those."""
        return int(self._n_text_tokens()) if hasattr(self, "_n_text_tokens") else -1

    def _text_logits(self, logits: np.ndarray) -> np.ndarray:
        """``logits`` with the padding rows (see _n_sampleable) at -inf, for the places that show
        logits to the user (logits processors, logprobs); a copy only when the file has such rows."""
        n = self._n_sampleable()
        if 0 < n < logits.shape[-1]:
            logits = logits.copy()
            logits[..., n:] = -np.inf
        return logits

    def _generate(self, tokens: Sequence[int], sampler: Any, *, reset: bool = True,
                  repeat_last_n: int = 64, max_new: Optional[int] = None,
                  constraint: Any = None, hooks: Optional[CallHooks] = None,
                  ) -> Generator[Tuple[int, np.ndarray], Optional[Sequence[int]], None]:
        """Core loop: yields (token, logits it was sampled from, padding rows unmasked: _text_logits).

        With ``self.draft_model`` set, each step may also evaluate a draft after the pending token
        (edgellama.speculative): the accepted draft tokens are yielded one by one, each with its own
        position's logits, exactly as plain decoding would yield them. ``max_new`` (how many tokens
        the caller will take at most) keeps drafts from running past it; ``constraint`` (an
        edgellama.constrained.TokenConstraint: grammar / JSON schema / tool calls) masks every sampled
        position and vetoes draft tokens it forbids; ``hooks`` runs logits processors and stopping
        criteria before each token is chosen (llama_hooks.py)."""
        tokens = [int(t) for t in tokens]
        if not tokens:
            raise ValueError("generate() needs at least one prompt token")
        n_vocab = self.n_vocab()
        for i, t in enumerate(tokens):  # before the sampler sees them (it takes int32 only)
            if not 0 <= t < n_vocab:
                raise ValueError(f"token id {t} at index {i} is outside the vocabulary (0..{n_vocab - 1})")
        n_ctx = self.n_ctx()
        cached = list(self.tokens_in_cache)
        if reset:
            keep = _common_prefix(cached, tokens[:-1])  # re-evaluate at least the last token
            if keep < len(cached):
                self._truncate_cache(keep)
            history = tokens  # the kept cache prefix is a prefix of tokens
            tokens = tokens[keep:]
        else:
            keep = len(cached)
            history = cached + tokens
        if len(history) > n_ctx:
            raise ValueError(f"prompt of {len(history)} tokens does not fit in the context window of "
                             f"{n_ctx} tokens (n_ctx)")
        # penalties look at the recent context, prompt included (as llama.cpp does)
        window = history if repeat_last_n < 0 else history[len(history) - repeat_last_n:] if repeat_last_n else []
        for t in window:
            sampler.accept(t)
        context = list(history[:keep])  # what the cache holds before `tokens` are evaluated
        # None: plain decoding. Not with hooks: a user's logits processor or stopping criterion may
        # keep state, and mirostat's running surprise target has no probability vector to verify with.
        spec = speculative.SpecSession.start(self, sampler, max_new) if hooks is None else None
        produced = 0  # tokens yielded so far
        while True:
            if len(context) + len(tokens) > n_ctx:
                return  # context full
            draft: List[int] = []
            if spec is not None and produced:
                draft = spec.propose(context + tokens, n_ctx - len(context) - len(tokens), produced)
                # a constraint vetoes draft tokens it would never allow
                draft = speculative.filter_draft(draft, constraint)
            # Check-and-restore and the evaluation are one step under the object's lock: another
            # thread must not change the cache between them (it would shift our positions).
            with getattr(self, "_lock", None) or contextlib.nullcontext():
                if self.tokens_in_cache != context:
                    # another generation on this object used the cache since our last step (two
                    # interleaved streams or threads), or a speculative step left rejected draft
                    # tokens in it: restore our context, reusing what matches
                    full = context + tokens
                    cache = list(self.tokens_in_cache)
                    keep = _common_prefix(cache, full[:-1])
                    if keep < len(cache):
                        self._truncate_cache(keep)
                    context, tokens = full[:keep], full[keep:]
                t_eval = time.perf_counter()
                if draft:  # row j: the logits after tokens + draft[:j]
                    rows = self.eval(tokens + draft)[len(tokens) - 1:]
                else:
                    rows = self._eval_last(tokens)[None, :]
                if spec is not None and produced:  # the cost model of the draft length
                    spec.observe_time(len(tokens) + len(draft), time.perf_counter() - t_eval)
            context.extend(tokens)
            context.extend(draft)  # the cache now holds the draft too; cut back below
            n_draft = len(draft)
            for j in range(n_draft + 1):
                # the raw row: the sampler itself never draws padding rows (_n_sampleable); the
                # logits yielded with a token are masked where they are shown (_text_logits)
                logits = rows[j]
                if hooks is not None:  # logits_processor / stopping_criteria (llama_hooks.py)
                    logits = hooks.process(context[:len(context) - n_draft + j], self._text_logits(logits))
                    if hooks.should_stop(context[:len(context) - n_draft + j], logits):
                        return
                accepted = False
                # Constrained decoding: the grammar's allowed-token bitset goes into the C++ sampler
                # (for a draft position too, so verification compares like with like); the emitted
                # token advances the grammar, which starts computing the next mask on a worker
                # thread while the model evaluates.
                mask = constraint.fill_mask() if constraint is not None else None
                if j < n_draft:
                    tok, accepted = spec.verify(logits, draft[j], mask)
                elif mask is not None:
                    tok = int(sampler.sample(logits, mask))
                else:
                    tok = int(sampler.sample(logits))
                if constraint is not None:
                    constraint.accept(tok)
                sampler.accept(tok)
                if not accepted and spec is not None:
                    spec.update(n_draft, j)
                produced += 1
                extra = yield tok, logits
                extra = [int(t) for t in (extra or ())]
                if accepted:
                    # tok is in the cache already (it was the draft's input at position j + 1);
                    # without extra tokens the next row (the next draft token or the bonus) follows
                    if extra:
                        spec.update(n_draft, j + 1)
                        del context[len(context) - n_draft + j + 1:]
                        tokens = extra
                        break
                    continue
                # rejected draft token, or the row after the draft: tok is the next pending token;
                # the cache past the accepted prefix is cut back at the top of the loop
                del context[len(context) - n_draft + j:]
                tokens = [tok] + extra
                break

    # ------------------------------------------------------------------ helpers

    def _model_name(self) -> str:
        return str(getattr(self, "model_path", None) or "edgellama")

    def _token_text_bytes(self, prev: Optional[int], tok: int) -> bytes:
        """The bytes ``tok`` adds after ``prev``: detokenizing in context keeps a leading space that
        a tokenizer strips from a sequence's first token (one C++ call for the GGUF tokenizer)."""
        return self.detokenize([tok], prev_tokens=None if prev is None else [prev])

    def _special_text(self, tok: Optional[int]) -> str:
        if tok is None or tok < 0:
            return ""
        return self.detokenize([tok], special=True).decode("utf-8", errors="replace")

    def _prompt_tokens(self, prompt: Union[str, bytes, Sequence[int]], add_bos: bool = True) -> List[int]:
        if isinstance(prompt, (str, bytes)):
            data = prompt.encode("utf-8") if isinstance(prompt, str) else prompt
            if data:
                return list(self.tokenize(data, add_bos=add_bos, special=True))
            bos = self.token_bos()
            if bos is None or bos < 0:
                raise ValueError("empty prompt (and the model has no BOS token to start from)")
            return [bos]
        try:
            toks = [int(t) for t in prompt]
        except (TypeError, ValueError):
            raise TypeError("prompt must be a str, bytes or a list of token ids") from None
        if not toks:
            raise ValueError("empty prompt")
        n_vocab = self.n_vocab()
        for t in toks:
            if not 0 <= t < n_vocab:
                raise ValueError(f"prompt token id {t} is out of range [0, {n_vocab})")
        return toks

    def _logprob_entry(self, tok: int, piece: bytes, offset: int, logits: np.ndarray, k: int) -> _TokenLogprob:
        logits = self._text_logits(logits)
        lp = _log_softmax(logits)
        top = None
        if k > 0:
            ids, lps = _top_logprobs(logits, k)
            # special=True: an end-of-turn token shows as its text, not as ""
            top = [(i, self.detokenize([i], special=True), v) for i, v in zip(ids, lps)]
        return _TokenLogprob(tok, piece, offset, float(lp[tok]), top)

    # ------------------------------------------------------------------ completion

    def _completion_events(
        self, prompt, suffix, max_tokens, temperature, top_p, min_p, typical_p, logprobs, echo, stop,
        frequency_penalty, presence_penalty, repeat_penalty, top_k, seed, logit_bias, add_bos=True,
        grammar=None, hooks: Optional[CallHooks] = None,
    ) -> Tuple[Iterator[_Event], _Usage]:
        """Validate eagerly (errors surface at the call, also with stream=True), then return the
        lazy event stream shared by the streamed and the non-streamed forms."""
        if max_tokens is not None:
            if not isinstance(max_tokens, (int, np.integer)) or isinstance(max_tokens, bool):
                raise TypeError(f"max_tokens must be an int or None, got {type(max_tokens).__name__}")
            if max_tokens <= 0:
                raise ValueError(f"max_tokens must be positive (or None to generate until the context "
                                 f"is full), got {max_tokens}")
        if logprobs is not None and (not isinstance(logprobs, (int, np.integer)) or logprobs < 0):
            raise ValueError(f"logprobs must be a non-negative int or None, got {logprobs!r}")
        stops = normalize_stop(stop)
        prompt_tokens = self._prompt_tokens(prompt, add_bos=add_bos)
        n_ctx = self.n_ctx()
        if len(prompt_tokens) >= n_ctx:
            raise ValueError(f"prompt has {len(prompt_tokens)} tokens, which leaves no room in the context "
                             f"window of {n_ctx} tokens (n_ctx={n_ctx}); shorten the prompt or raise n_ctx")
        room = n_ctx - len(prompt_tokens)
        limit = room if max_tokens is None else min(int(max_tokens), room)
        sampler = self._sampler(temperature, top_k, top_p, min_p, typical_p, repeat_penalty,
                                getattr(self, "last_n_tokens_size", 64),
                                frequency_penalty, presence_penalty, self._call_seed(seed), logit_bias,
                                **(hooks.sampler_params() if hooks else {}))
        usage = _Usage(prompt_tokens=len(prompt_tokens))
        constraint = constraint_for(self, as_grammar(grammar))  # built now: bad grammars fail here
        return self._completion_loop(prompt, prompt_tokens, suffix, limit, logprobs, echo, stops, sampler,
                                     usage, constraint, hooks), usage

    def _echo(self, prompt, prompt_tokens: List[int], logprobs: Optional[int]) -> _Event:
        if isinstance(prompt, str):
            text = prompt
        elif isinstance(prompt, bytes):
            text = prompt.decode("utf-8", errors="replace")
        else:
            text = self.detokenize(prompt_tokens).decode("utf-8", errors="replace")
        entries: List[_TokenLogprob] = []
        if logprobs is not None:
            # logits of every prompt position: evaluate the whole prompt afresh
            self._truncate_cache(0)
            all_logits = self.eval(prompt_tokens)
            stream = TextStream()
            prev = None
            for j, tok in enumerate(prompt_tokens):
                piece = self._token_text_bytes(prev, tok)
                off = stream.decoded
                stream.feed(piece)
                if j == 0:
                    entries.append(_TokenLogprob(tok, piece, off, None, None))
                else:
                    entries.append(self._logprob_entry(tok, piece, off, all_logits[j - 1], logprobs))
                prev = tok
        return _Event(text, entries)

    def _completion_loop(self, prompt, prompt_tokens, suffix, limit, logprobs, echo, stops, sampler,
                         usage: _Usage, constraint: Any = None, hooks: Optional[CallHooks] = None) -> Iterator[_Event]:
        if hasattr(self, "_prompt_cache_load"):  # Llama.set_cache: start from a saved prefix state
            self._prompt_cache_load(prompt_tokens)
        base = 0
        if echo:
            ev = self._echo(prompt, prompt_tokens, logprobs)
            base = len(ev.text)
            yield ev
        stream = TextStream(stops)
        pending: List[_TokenLogprob] = []

        def release(upto: int) -> List[_TokenLogprob]:
            nonlocal pending
            out = [e for e in pending if e.offset - base < upto]
            pending = [e for e in pending if e.offset - base >= upto]
            return out

        completion: List[int] = []
        finish = "length"
        gen = self._generate(prompt_tokens, sampler, reset=True, max_new=limit, constraint=constraint, hooks=hooks)
        try:
            for tok, logits in gen:
                if self._is_eog(tok):
                    finish = "stop"
                    break
                completion.append(tok)
                usage.completion_tokens = len(completion)
                prev = completion[-2] if len(completion) > 1 else prompt_tokens[-1]
                piece = self._token_text_bytes(prev, tok)
                offset = stream.decoded
                text = stream.feed(piece)
                if logprobs is not None:
                    pending.append(self._logprob_entry(tok, piece, base + offset, logits, logprobs))
                if text:
                    yield _Event(text, release(stream.emitted))
                if stream.stopped:
                    finish = "stop"
                    break
                if constraint is not None and constraint.is_done():
                    finish = "stop"  # the grammar is complete (an unfinished one ends as "length")
                    break
                if len(completion) >= limit:
                    break
        finally:
            gen.close()
            if constraint is not None:
                constraint.close()
        if hooks is not None and hooks.stopped:
            finish = "stop"
        if hasattr(self, "_prompt_cache_save"):
            self._prompt_cache_save(prompt_tokens + completion)
        tail = stream.finish()
        if suffix:
            tail += suffix
        yield _Event(tail, release(stream.emitted), finish)

    @staticmethod
    def _completion_logprobs(entries: List[_TokenLogprob]) -> Dict[str, Any]:
        def s(b: bytes) -> str:
            return b.decode("utf-8", errors="ignore")

        out: Dict[str, Any] = {"tokens": [], "text_offset": [], "token_logprobs": [], "top_logprobs": []}
        for e in entries:
            out["tokens"].append(s(e.piece))
            out["text_offset"].append(e.offset)
            out["token_logprobs"].append(e.logprob)
            if e.top is None:
                out["top_logprobs"].append(None)
            else:
                d = {s(b): lp for _, b, lp in e.top}
                d[s(e.piece)] = e.logprob
                out["top_logprobs"].append(d)
        return out

    def create_completion(
        self,
        prompt: Union[str, List[int]],
        suffix: Optional[str] = None,
        max_tokens: Optional[int] = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        logprobs: Optional[int] = None,
        echo: bool = False,
        stop: Stop = None,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        top_k: int = 40,
        stream: bool = False,
        seed: Optional[int] = None,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        model: Optional[str] = None,
        stopping_criteria: Optional[Any] = None,
        logits_processor: Optional[Any] = None,
        logit_bias: Optional[Dict[int, float]] = None,
        grammar: Optional[LlamaGrammar] = None,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """Complete ``prompt`` (text or token ids); an OpenAI-shaped ``text_completion`` dict, or with
        ``stream=True`` an iterator of chunk dicts whose texts concatenate to the same text.

        ``max_tokens``: at most this many new tokens (``None``: until the context is full; <= 0 is a
        ValueError). ``stop``: a string or list of strings; generation ends before the first one, which
        is not returned. ``finish_reason`` is ``"stop"`` (end-of-generation token or stop string) or
        ``"length"`` (max_tokens or the context is full). ``logprobs=k`` adds ``tokens``,
        ``token_logprobs``, ``top_logprobs`` (the k most likely, plus the chosen token) and
        ``text_offset`` per generated token (and per prompt token with ``echo=True``). ``suffix`` is
        appended to the returned text. ``temperature <= 0`` is greedy decoding; ``seed`` makes
        sampling reproducible. ``grammar``: a :class:`LlamaGrammar` (GBNF, Lark, JSON schema) the
        text must follow; generation stops (``"stop"``) when it is complete.
        ``logits_processor(input_ids, logits) -> logits`` and
        ``stopping_criteria(input_ids, logits) -> bool`` run before each token is sampled
        (llama_hooks.py). ``mirostat_mode`` 1 or 2 samples with mirostat (target surprise
        ``mirostat_tau``, learning rate ``mirostat_eta``; cpp/sampling/mirostat.cpp) instead of
        top-k/top-p/min-p/typical. ``tfs_z`` has no effect (as in llama-cpp-python 0.3.36).
        ``model`` is the name put in the response.
        """
        hooks = CallHooks.make(logits_processor, stopping_criteria, mirostat_mode, mirostat_tau, mirostat_eta)
        events, usage = self._completion_events(
            prompt, suffix, max_tokens, temperature, top_p, min_p, typical_p, logprobs, echo, stop,
            frequency_penalty, presence_penalty, repeat_penalty, top_k, seed, logit_bias, grammar=grammar, hooks=hooks)
        cid = f"cmpl-{uuid.uuid4()}"
        created = int(time.time())
        model = model if model is not None else self._model_name()
        if stream:
            return self._stream_completion(events, cid, created, model, logprobs is not None)
        text, entries, finish = _collect_events(events)
        return {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{
                "text": text,
                "index": 0,
                "logprobs": self._completion_logprobs(entries) if logprobs is not None else None,
                "finish_reason": finish,
            }],
            "usage": usage.as_dict(),
        }

    def _stream_completion(self, events: Iterator[_Event], cid: str, created: int, model: str,
                           want_logprobs: bool) -> Iterator[Dict[str, Any]]:
        for ev in events:
            yield {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{
                    "text": ev.text,
                    "index": 0,
                    "logprobs": self._completion_logprobs(ev.logprobs) if want_logprobs else None,
                    "finish_reason": ev.finish_reason,
                }],
            }

    def __call__(self, prompt: Union[str, List[int]], *args: Any, **kwargs: Any):
        """Same as :meth:`create_completion`."""
        return self.create_completion(prompt, *args, **kwargs)

    # ------------------------------------------------------------------ chat

    def _chat_formatter(self) -> ChatFormatter:
        key = (self.chat_format, self.chat_template)
        cached = self.__dict__.get("_chat_formatter_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        validate_chat_format(key[0])  # before touching the tokenizer
        f = get_chat_formatter(key[0], key[1], bos_token=self._special_text(self.token_bos()),
                               eos_token=self._special_text(self.token_eos()))
        self.__dict__["_chat_formatter_cache"] = (key, f)
        return f

    def apply_chat_template(self, messages: List[Dict[str, Any]], add_generation_prompt: bool = True,
                            tools: Optional[List[Dict[str, Any]]] = None) -> str:
        """The prompt text that :meth:`create_chat_completion` feeds the model for ``messages``."""
        extra = {"tools": tools} if tools is not None else {}
        return self._chat_formatter()(messages, add_generation_prompt=add_generation_prompt, **extra).prompt

    def _chat_logprobs(self, entries: List[_TokenLogprob]) -> Dict[str, Any]:
        def item(b: bytes, lp: Optional[float]) -> Dict[str, Any]:
            return {"token": b.decode("utf-8", errors="ignore"), "logprob": lp, "bytes": list(b)}

        content = []
        for e in entries:
            d = item(e.piece, e.logprob)
            d["top_logprobs"] = [item(b, lp) for _, b, lp in (e.top or [])]
            content.append(d)
        return {"content": content}

    def create_chat_completion(
        self,
        messages: List[Dict[str, Any]],
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        stream: bool = False,
        stop: Stop = None,
        seed: Optional[int] = None,
        max_tokens: Optional[int] = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        logit_bias: Optional[Dict[int, float]] = None,
        logprobs: Optional[bool] = None,
        top_logprobs: Optional[int] = None,
        tools: Optional[List[Dict[str, Any]]] = None,
        tool_choice: Any = None,
        response_format: Optional[Dict[str, Any]] = None,
        grammar: Optional[LlamaGrammar] = None,
        parallel_tool_calls: Optional[bool] = None,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        model: Optional[str] = None,
        logits_processor: Optional[Any] = None,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """Answer a conversation; an OpenAI-shaped ``chat.completion`` dict, or with ``stream=True``
        an iterator of ``chat.completion.chunk`` dicts (``delta`` role, then content pieces, then the
        finish reason).

        The prompt is the model's chat template (or ``Llama(chat_format=...)``) applied to
        ``messages``. In a multi-turn conversation the new prompt starts with the previous one and
        the previous answer, which are still in the KV cache: only the new tokens are evaluated.
        Structured output: ``response_format={"type": "json_object"}`` (optional ``"schema"``) or
        ``{"type": "json_schema", "json_schema": {"name", "schema"}}``, or ``grammar=``. ``tools`` go to
        the template; with ``tool_choice`` "auto" (default), "required" or a named function the answer
        is constrained to text or well-formed calls in the template's syntax and returned as
        ``message["tool_calls"]`` with ``finish_reason="tool_calls"`` (see edgellama.tool_calls).
        """
        grammar, tool_plan = chat_structure(self, tools, tool_choice, response_format, grammar, parallel_tool_calls)
        hooks = CallHooks.make(logits_processor, None, mirostat_mode, mirostat_tau, mirostat_eta)
        fmt = self._chat_formatter()
        messages = messages_with_tools(fmt, messages, tools, tool_plan)  # templates that ignore tools
        extra = {"tools": tools} if tools is not None else {}
        cp = fmt(messages, add_generation_prompt=True, **extra)
        stops = normalize_stop(stop) + [s for s in cp.stop if s not in normalize_stop(stop)]
        k = None
        if logprobs:
            k = int(top_logprobs or 0)
        events, usage = self._completion_events(
            cp.prompt, None, max_tokens, temperature, top_p, min_p, typical_p, k, False, stops,
            frequency_penalty, presence_penalty, repeat_penalty, top_k, seed, logit_bias,
            add_bos=not cp.starts_with_bos, grammar=grammar, hooks=hooks)
        cid = f"chatcmpl-{uuid.uuid4()}"
        created = int(time.time())
        model = model if model is not None else self._model_name()
        if stream and tool_plan is not None and tool_plan.grammar is not None:
            return self._stream_tool_chat(events, tool_plan, cid, created, model)
        if stream:
            return self._stream_chat(events, cid, created, model, k is not None)
        text, entries, finish = _collect_events(events)
        message: Dict[str, Any] = {"role": "assistant", "content": text}
        if tool_plan is not None:
            content, calls = tool_plan.parse(text)
            if calls:
                message = {"role": "assistant", "content": content, "tool_calls": calls}
                finish = "tool_calls" if finish == "stop" else finish
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": self._chat_logprobs(entries) if k is not None else None,
                "finish_reason": finish,
            }],
            "usage": usage.as_dict(),
        }

    def _stream_chat(self, events: Iterator[_Event], cid: str, created: int, model: str,
                     want_logprobs: bool) -> Iterator[Dict[str, Any]]:
        def chunk(delta: Dict[str, Any], finish: Optional[str], lp: Optional[Dict[str, Any]]) -> Dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}]}

        yield chunk({"role": "assistant"}, None, None)
        for ev in events:
            lp = self._chat_logprobs(ev.logprobs) if want_logprobs else None
            if ev.text:
                yield chunk({"content": ev.text}, None, lp)
                lp = None
            if ev.finish_reason is not None:
                yield chunk({}, ev.finish_reason, lp)

    def _stream_tool_chat(self, events: Iterator[_Event], plan: Any, cid: str, created: int,
                          model: str) -> Iterator[Dict[str, Any]]:
        """Streamed answer to a request with tools, the way OpenAI streams it: a text answer as
        content deltas as it is generated; calls once complete (per call a delta with its id and
        name, then one with its arguments), then finish_reason "tool_calls"."""
        def chunk(delta: Dict[str, Any], finish: Optional[str]) -> Dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        yield chunk({"role": "assistant"}, None)
        head, mode, finish = "", None, None
        for ev in events:
            finish = ev.finish_reason or finish
            if mode == "text":
                if ev.text:
                    yield chunk({"content": ev.text}, None)
                continue
            head += ev.text
            mode = plan.stream_mode(head) if head else None
            if mode == "text" and plan.text_of(head):
                yield chunk({"content": plan.text_of(head)}, None)
        calls: List[Dict[str, Any]] = []
        if mode != "text":
            content, calls = plan.parse(head)
            if content:
                yield chunk({"content": content}, None)
            for delta in stream_tool_chunks(calls):
                yield chunk(delta, None)
        yield chunk({}, "tool_calls" if calls and finish == "stop" else finish)
