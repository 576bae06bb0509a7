"""The batch engine: one thread owns the model's multi-sequence context and runs one forward pass
per step over the pending tokens of every slot (Context.decode_batch).

Each request runs in its own worker thread through the ordinary completion code of
:mod:`edgellama.generation` (see :mod:`.slot_model`); when that code needs logits it calls
:meth:`BatchEngine.evaluate`, which queues the tokens for the request's slot and blocks until a
step has evaluated them. A step takes, in order:

1. the short requests first (a running stream's next token is one row), so decode steps of the
   running streams are never stalled behind a long prompt;
2. then chunks of longer requests (new prompts), up to ``step_tokens`` rows in all: a prompt is
   prefilled over several steps, interleaved with the streams' decode steps (chunked prefill).

Before a step, the engine waits a few milliseconds for slots that just received logits and are
still sampling their next token, so the streams stay in phase and share each step (the weights
are read once per step for all of them). A row's logits do not depend on the rest of the batch
(batch.h), so a request's output is the same whether it ran alone or beside others.

Slots: ``n_slots`` sequences of the context, each with its own KV region and token history.
Prompt-prefix reuse: a request evaluates only the part of its prompt that no slot's cache holds.
When it takes a slot (:meth:`BatchEngine.acquire`), the longest prefix of its prompt (all but the
last token, which is always evaluated for its logits) that ANY slot holds -- its own, an idle one's
or one still streaming, where only the matching tokens count -- is copied into its slot's KV region
(Context.copy_seq_prefix: a memcpy per layer, the same bits as evaluating it there) when that is
longer than what its own slot holds. Agent frameworks and chat UIs send the same system prompt with
every request: it is prefilled once, not once per slot (vLLM calls this automatic prefix caching).
Requests that arrive together with the same new prompt share too (:meth:`BatchEngine._plan`): a
prompt chunk that another request computes in the same step waits one step and is copied then.
Which free slot a request takes (:func:`_slot_preference`): one that already holds that longest
prefix (nothing to copy), else an empty one (no other cache is overwritten), else the one with the
longest own prefix, then the least recently used. Cancelling a request (client gone) makes its
next or pending evaluation raise :class:`RequestCancelled` within one step; its slot is then free.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from ..generation import _common_prefix
from .step_cost import StepCostModel

__all__ = ["BatchEngine", "RequestCancelled", "EngineStopped", "Slot"]

_GATHER_WAIT_S = 0.004  # how long a step waits for streams that are still sampling


class RequestCancelled(Exception):
    """The request's client went away (or the server is stopping): stop generating."""


class EngineStopped(RequestCancelled):
    """The engine was stopped (server shutdown)."""


@dataclass
class _EvalRequest:
    slot: "Slot"
    tokens: np.ndarray  # int32
    all_logits: bool
    done_rows: int = 0
    outputs: List[np.ndarray] = field(default_factory=list)
    result: Optional[np.ndarray] = None
    error: Optional[BaseException] = None
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def remaining(self) -> int:
        return int(self.tokens.size) - self.done_rows


class Slot:
    """One sequence of the context: its token history (what its KV region holds) and the state of
    the request that holds it."""

    def __init__(self, seq: int):
        self.seq = seq
        self.tokens: List[int] = []  # tokens in this slot's KV region, in order
        self.busy = False
        self.cancelled = threading.Event()
        self.last_used = 0.0
        self.between_steps = False  # got logits, its next tokens are expected soon


def _slot_preference(slots: Sequence[Slot], wanted: Sequence[int]):
    """The sort key that picks the free slot for a request whose prompt (less its last token) is
    ``wanted`` (read under the engine's condition lock; the token lists are snapshots). Any slot's
    prefix is copied in afterwards, so the choice decides only whether a copy is needed and which
    cache gets overwritten:

    1. a slot that already holds the longest prefix any slot holds: nothing to copy -- unless that
       is a single token (the BOS every prompt starts with), not worth overwriting a cache for;
    2. an empty slot: no cache is lost, and the prefix is copied in (a memcpy per layer);
    3. the longest own prefix (the most of its cache survives), then the least recently used.
    """
    prefix = {s.seq: _common_prefix(list(s.tokens), wanted) for s in slots}
    longest = max(prefix.values(), default=0)

    def key(s: Slot):
        own = prefix[s.seq]
        return (own == longest and own > 1, not s.tokens, own, -s.last_used)

    return key


class BatchEngine:
    """N slots over one model; see the module docstring."""

    def __init__(self, model: "_core.Model", *, n_slots: int, n_ctx: int, n_threads: int = 0,
                 step_tokens: int = 256, type_k: str = "f16", type_v: str = "f16", precision: str = "fast"):
        if n_slots <= 0:
            raise ValueError(f"n_slots (--parallel) must be positive, got {n_slots}")
        if step_tokens <= 0:
            raise ValueError(f"step_tokens must be positive, got {step_tokens}")
        self.model = model
        self.n_vocab = int(model.hparams["n_vocab"])
        self.ctx = _core.Context(model, n_ctx, n_threads, step_tokens, type_k, type_v, precision, n_seq=n_slots)
        self.n_ctx = n_ctx
        self.step_tokens = int(self.ctx.n_batch)
        self.slots = [Slot(i) for i in range(n_slots)]
        self._cond = threading.Condition()
        # The context is touched by the engine thread (decode_batch) and by a slot's own thread
        # (truncate_seq, between its requests): one lock, so they never overlap.
        self._ctx_lock = threading.Lock()
        self._pending: List[_EvalRequest] = []
        self._stopping = False
        # counters for /metrics (read without the lock: plain ints)
        self.steps = 0
        self.rows_evaluated = 0
        self.step_seconds = 0.0
        self.prompt_tokens_own_cache = 0  # prompt tokens a request found in its own slot's cache
        self.prompt_tokens_shared = 0  # ... and those copied from another slot's cache (beyond its own)
        self.shared_prefix_copies = 0  # copies from another slot (at acquire, or per chunk in _plan)
        self.step_cost = StepCostModel()  # seconds per step vs rows: what a draft row costs the streams
        # when a list: each step appends [(seq, rows), ...] (tests check the scheduling with it)
        self.step_log: Optional[List[List[tuple]]] = None
        self._thread = threading.Thread(target=self._run, name="edgellama-batch-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ slots

    def acquire(self, prompt_hint: Optional[Sequence[int]] = None, timeout: Optional[float] = None,
                cancelled: Optional[threading.Event] = None) -> Slot:
        """A free slot (see :func:`_slot_preference`) holding the longest prefix of ``prompt_hint``
        (the request's prompt) that any slot's cache holds, but at least one token short of it (see
        :meth:`_copy_shared_prefix`). Blocks while all slots are busy (the HTTP layer bounds the
        queue); raises RequestCancelled once ``cancelled`` is set (see :meth:`wake`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # the last prompt token is always evaluated: its logits choose the first generated token
        wanted = [int(t) for t in (prompt_hint or [])][:-1]
        with self._cond:
            while True:
                if self._stopping:
                    raise EngineStopped("the server is shutting down")
                if cancelled is not None and cancelled.is_set():
                    raise RequestCancelled("request cancelled while waiting for a slot")
                free = [s for s in self.slots if not s.busy]
                if free:
                    best = max(free, key=_slot_preference(self.slots, wanted))
                    best.busy = True
                    best.cancelled.clear()
                    best.between_steps = False
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("no free slot")
                self._cond.wait(left)
        try:
            self._copy_shared_prefix(best, wanted)
        except BaseException:
            self.release(best)
            raise
        return best

    def _copy_shared_prefix(self, slot: Slot, wanted: List[int]) -> None:
        """At acquire: make ``slot`` (just taken, nothing pending) hold the longest prefix of
        ``wanted`` that any slot's cache holds. Counts the reused tokens for /metrics."""
        if not wanted:
            return
        own, n = self._take_longest_prefix(slot, wanted)
        with self._cond:  # the engine thread counts too (_plan)
            self.prompt_tokens_own_cache += own
            self.prompt_tokens_shared += n - own
            self.shared_prefix_copies += n > own

    def _take_longest_prefix(self, slot: Slot, wanted: Sequence[int]) -> Tuple[int, int]:
        """Cross-slot prefix sharing: when another slot's cache holds a longer prefix of ``wanted``
        than ``slot`` does, copy its K/V rows into ``slot`` (Context.copy_seq_prefix). ``slot`` has
        no evaluation in flight. Returns (what ``slot`` held of ``wanted``, what it holds now)."""
        # Under the context lock: no forward pass writes, and no slot's own thread truncates (it
        # holds this lock too), while we read the token lists and copy. The engine thread appends
        # to a slot's list only after that slot's rows are in its cache, so every token a snapshot
        # shows has its K/V there.
        with self._ctx_lock:
            own = _common_prefix(slot.tokens, wanted)
            source, n = None, own
            for other in self.slots:
                if other is slot:
                    continue
                held = list(other.tokens)  # a snapshot: the engine thread may append meanwhile
                k = _common_prefix(held, wanted)
                # a sliding-window ring that no longer holds the window before k cannot give it
                if k > n and self.ctx.can_truncate_seq(other.seq, k):
                    source, n = other, k
            if source is not None:
                self.ctx.copy_seq_prefix(source.seq, slot.seq, n)
                slot.tokens[:] = wanted[:n]
        return own, n

    def release(self, slot: Slot) -> None:
        with self._cond:
            slot.busy = False
            slot.between_steps = False
            slot.last_used = time.monotonic()
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake threads waiting in acquire (to notice their request was cancelled)."""
        with self._cond:
            self._cond.notify_all()

    def cancel(self, slot: Slot) -> None:
        """Make the slot's pending and next evaluations raise RequestCancelled."""
        with self._cond:
            slot.cancelled.set()
            self._cond.notify_all()

    def truncate(self, slot: Slot, n: int) -> None:
        """Keep the first n tokens of the slot's cache (called by the slot's own thread, never while
        it has an evaluation pending)."""
        if not 0 <= n <= len(slot.tokens):
            raise ValueError(f"cannot keep {n} tokens: the slot holds {len(slot.tokens)}")
        with self._ctx_lock:
            if self.ctx.can_truncate_seq(slot.seq, n):
                self.ctx.truncate_seq(slot.seq, n)
                del slot.tokens[n:]
                return
            # The slot's sliding-window ring no longer holds the window before n: re-evaluate the
            # kept prefix (no logits) instead of reusing it.
            keep = np.asarray(slot.tokens[:n], dtype=np.int32)
            self.ctx.truncate_seq(slot.seq, 0)
            del slot.tokens[:]
            step = self.ctx.n_batch
            for start in range(0, n, step):
                part = keep[start:start + step]
                self.ctx.decode_batch(part, np.full(part.size, slot.seq, dtype=np.int32))
                slot.tokens.extend(int(t) for t in part)

    @property
    def busy_slots(self) -> int:
        return sum(s.busy for s in self.slots)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, slot: Slot, tokens: Sequence[int], all_logits: bool) -> np.ndarray:
        """Append ``tokens`` to the slot's sequence; the last token's logits (n_vocab,), or every
        token's (n, n_vocab) with all_logits. Blocks until done; raises RequestCancelled."""
        ids = np.asarray(tokens, dtype=np.int64)
        if ids.ndim != 1:
            raise ValueError("tokens must be a 1-D sequence of token ids")
        if ids.size == 0:
            if all_logits:
                return np.zeros((0, self.n_vocab), np.float32)
            raise ValueError("cannot return the last logits of an empty token list")
        if ids.min() < 0 or ids.max() >= self.n_vocab:
            bad = int(ids[(ids < 0) | (ids >= self.n_vocab)][0])
            raise ValueError(f"token id {bad} is outside the vocabulary (0..{self.n_vocab - 1})")
        if len(slot.tokens) + ids.size > self.n_ctx:
            raise ValueError(f"context window full: {len(slot.tokens)} tokens in the cache + {ids.size} new "
                             f"tokens > n_ctx {self.n_ctx}")
        req = _EvalRequest(slot, ids.astype(np.int32), all_logits)
        with self._cond:
            if self._stopping:
                raise EngineStopped("the server is shutting down")
            if slot.cancelled.is_set():
                raise RequestCancelled("request cancelled")
            slot.between_steps = False
            self._pending.append(req)
            self._cond.notify_all()
        req.finished.wait()
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def stop(self) -> None:
        """Cancel everything pending and end the engine thread."""
        with self._cond:
            self._stopping = True
            for s in self.slots:
                s.cancelled.set()
            self._cond.notify_all()
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ the engine thread

    def _gather(self) -> List[_EvalRequest]:
        """Wait for work; then briefly for slots still sampling their next token. Called locked."""
        while not self._pending and not self._stopping:
            self._cond.wait()
        deadline = time.monotonic() + _GATHER_WAIT_S
        while not self._stopping:
            waiting_for = [s for s in self.slots if s.busy and s.between_steps and not s.cancelled.is_set()]
            left = deadline - time.monotonic()
            if not waiting_for or left <= 0:
                break
            self._cond.wait(left)
        # drop cancelled requests (their slots are freed by their threads)
        live: List[_EvalRequest] = []
        for r in self._pending:
            if r.slot.cancelled.is_set() or self._stopping:
                r.error = EngineStopped("the server is shutting down") if self._stopping else RequestCancelled("request cancelled")
                r.finished.set()
            else:
                live.append(r)
        self._pending = live
        return live

    def _plan(self, live: List[_EvalRequest]) -> List[Tuple[_EvalRequest, int, int]]:
        """The rows of the next step, (request, first row, count) each; called locked. Shortest
        first: decode steps of running streams, then prompt chunks, up to step_tokens rows.

        Prompt chunks share with other slots here too (requests that arrive together with the
        same new prompt: an agent's parallel calls, the first burst after a start): a chunk whose
        tokens another slot's cache now holds is copied from there (that slot computed them in an
        earlier step), and a chunk whose tokens another request computes in this very step waits
        one step to copy them then. So a prefix is evaluated once however many requests want it.
        Only for requests that want the last row's logits (prompts): a request that wants every
        row's (a speculative verification) evaluates all of its rows."""
        live.sort(key=lambda r: r.remaining)
        budget = self.step_tokens
        plan = []
        will_hold: List[List[int]] = []  # what the slots of the planned prompt chunks hold after the step
        for r in live:
            if budget == 0:
                break
            shares = r.remaining > 1 and not r.all_logits
            if shares:
                wanted = r.slot.tokens + r.tokens[r.done_rows:-1].tolist()  # the last row is computed
                held = len(r.slot.tokens)
                try:
                    own, n = self._take_longest_prefix(r.slot, wanted)
                except Exception as e:  # noqa: BLE001 - to the request: the engine thread lives on
                    r.error = e
                    self._pending.remove(r)
                    r.finished.set()
                    continue
                if n > own:  # own == held: the slot's tokens are a prefix of wanted
                    r.done_rows += n - held
                    self.prompt_tokens_shared += n - held
                    self.shared_prefix_copies += 1
                if any(_common_prefix(after, wanted) > n for after in will_hold):
                    continue  # computed by another request in this step: copy it in the next one
            k = min(r.remaining, budget)
            plan.append((r, r.done_rows, k))
            budget -= k
            if shares:
                will_hold.append(r.slot.tokens + r.tokens[r.done_rows:r.done_rows + k].tolist())
        return plan

    def _run(self) -> None:
        while True:
            with self._cond:
                live = self._gather()
                if self._stopping:
                    return
                plan = self._plan(live)
            if not plan:
                continue
            if self.step_log is not None:
                self.step_log.append([(r.slot.seq, k) for r, s, k in plan])
            toks = np.concatenate([r.tokens[s:s + k] for r, s, k in plan])
            seqs = np.concatenate([np.full(k, r.slot.seq, np.int32) for r, s, k in plan])
            want = np.concatenate([
                np.ones(k, bool) if r.all_logits else (np.arange(s, s + k) == r.tokens.size - 1) for r, s, k in plan])
            t0 = time.perf_counter()
            try:
                with self._ctx_lock:
                    logits = self.ctx.decode_batch(toks, seqs, want_logits=want)
                err = None
            except BaseException as e:  # noqa: BLE001 - delivered to the waiting requests
                logits, err = None, e
            seconds = time.perf_counter() - t0
            self.step_seconds += seconds
            if err is None:
                self.step_cost.observe(int(toks.size), seconds)
            self.steps += 1
            self.rows_evaluated += int(toks.size)
            with self._cond:
                out = 0
                for r, s, k in plan:
                    if err is not None:
                        r.error = err
                        self._pending.remove(r)
                        r.finished.set()
                        continue
                    r.slot.tokens.extend(int(t) for t in r.tokens[s:s + k])
                    n_out = k if r.all_logits else int(s + k == r.tokens.size)
                    if n_out:
                        r.outputs.append(logits[out:out + n_out])
                        out += n_out
                    r.done_rows += k
                    if r.remaining == 0:
                        r.result = np.concatenate(r.outputs) if r.all_logits else r.outputs[-1][0]
                        self._pending.remove(r)
                        r.slot.between_steps = True
                        r.finished.set()
                self._cond.notify_all()

    # ------------------------------------------------------------------ stats

    def stats(self) -> Dict[str, float]:
        fit = self.step_cost.line()
        fixed, per_row = fit if fit is not None else (float("nan"), float("nan"))
        return {"steps": self.steps, "rows": self.rows_evaluated, "step_seconds": self.step_seconds,
                "step_fixed_seconds": fixed, "row_seconds": per_row,
                "busy_slots": self.busy_slots, "n_slots": len(self.slots),
                "prompt_tokens_own_cache": self.prompt_tokens_own_cache,
                "prompt_tokens_shared": self.prompt_tokens_shared, "shared_prefix_copies": self.shared_prefix_copies}
