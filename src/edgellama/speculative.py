"""Speculative decoding: the verify loop's pieces (draft length control, n-gram index, verification).

Decode reads every weight once per token. Speculation guesses several tokens (a *draft*), evaluates
the pending token and the draft in one forward pass (one weight read for all of them) and keeps the
longest prefix the target model agrees with, plus one token of its own. The generation loop
(:meth:`edgellama.generation.GenerationMixin._generate`) drives it through :class:`SpecSession`:

    draft = session.propose(history, room)        # [] when there is nothing worth trying
    rows  = model.eval(pending + draft)[len(pending) - 1:]
    for j, logits in enumerate(rows):             # row j: the distribution after draft[:j]
        tok, accepted = session.verify(logits, draft[j])   # (or a plain sample for the last row)
        ...                                        # stop at the first rejection
    session.update(len(draft), n_accepted)

Lossless by construction, greedy or sampled: at each drafted position the sampler picks a token from
the target's logits exactly as plain decoding would (one draw of its random stream), and the draft
token is kept iff it is that token. The kernels give a row the same bits whatever else the eval
carries (tests/test_speculative.py checks it on every ISA), and each emitted token costs one draw as
in plain decoding, so the text is the plain text token for token: greedy, and sampled with the same
seed (llama-cpp-python's generate verifies drafts the same way). Every drafter here proposes a
*deterministic* draft (a point mass on the proposed token; the draft model drafts greedily), for
which this keeps a draft token with probability p(x), the acceptance rate of speculative sampling's
rejection test (Leviathan et al. 2023: min(1, p(x)/q(x)) with q(x) = 1). That test (used here until
session 19) consumed draws of its own, so a seeded sampled text depended on where drafts were made,
and with them on timings: sampled requests could not draft in a server's shared steps.

Never slower than plain decoding by much: a draft is only proposed when the drafter has one (prompt
lookup proposes nothing when the current suffix never occurred before, costing nothing), its length
adapts to how much of recent drafts was accepted, and after consecutive drafts that were rejected
outright the controller pauses speculation for an exponentially growing number of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["NgramIndex", "DraftController", "SpecStats", "SpecSession", "filter_draft"]


class NgramIndex:
    """Incremental n-gram index over a growing token sequence.

    For every n in 1..max_n it maps each n-gram to the position right after its most recent
    occurrence that has a continuation. Appending a token costs O(max_n) dict updates and looking up
    the continuation of the current suffix costs O(max_n), whatever the length of the sequence (a
    hash-based suffix index: llama-cpp-python's prompt lookup rescans the whole input per token).
    The most recent occurrence is used because in copy/edit tasks the text being reproduced is
    usually the latest place the suffix appeared.

    A one-token suffix (a common word) predicts little, so with ``max_n`` >= 2 a suffix must match
    at least two tokens (``min_n``). Measured on SmolLM2-135M, greedy answers to ten chat prompts
    (benchmarks/lookup_acceptance.py): drafts after a one-token match were accepted 4 times in 30
    (13%; after a 3-token match 83-84%), so they never paid for their extra position, and each miss
    started a back-off pause that skipped the good drafts after it; without them the same answers
    came 7-12% faster alone (2 threads, one process, BENCHMARKS.md session 18), and shared server
    steps lost their failed probes. Text being copied is still found
    one token later, by its two-token suffix. ``max_n`` = 1 keeps one-token matches (the only kind).
    """

    def __init__(self, max_n: int):
        if max_n < 1:
            raise ValueError(f"max_ngram_size must be >= 1, got {max_n}")
        self.max_n = int(max_n)
        self.min_n = 1 if self.max_n == 1 else 2  # shortest suffix that may predict (see above)
        self.tokens: List[int] = []
        self._tables: List[Dict[Any, int]] = [{} for _ in range(self.max_n + 1)]  # [n]: n-gram -> next pos
        self._indexed = 0  # continuation positions < _indexed are in the tables
        self.last_match = 0  # suffix length behind the last lookup's draft (0: none); for statistics

    def sync(self, tokens: Sequence[int]) -> None:
        """Make the indexed sequence equal ``tokens``: appended tokens are indexed incrementally; any
        other change (a new prompt, a rolled-back context) rebuilds the index."""
        n_old = len(self.tokens)
        if len(tokens) < n_old or list(tokens[:n_old]) != self.tokens:
            self.tokens = []
            self._tables = [{} for _ in range(self.max_n + 1)]
            self._indexed = 0
            n_old = 0
        self.tokens.extend(int(t) for t in tokens[n_old:])
        self._index_up_to(len(self.tokens) - 1)  # the last position has no continuation yet

    def _index_up_to(self, end: int) -> None:
        toks = self.tokens
        for pos in range(max(self._indexed, 1), end + 1):  # pos: where a continuation starts
            for n in range(self.min_n, min(self.max_n, pos) + 1):
                self._tables[n][tuple(toks[pos - n:pos])] = pos
        self._indexed = max(self._indexed, end + 1)

    def lookup(self, max_tokens: int) -> List[int]:
        """Up to ``max_tokens`` tokens that followed the longest (min_n to max_n tokens) suffix of
        the sequence the last time it occurred; [] when no such suffix occurred before."""
        toks = self.tokens
        self.last_match = 0
        if max_tokens <= 0:
            return []
        for n in range(min(self.max_n, len(toks) - 1), self.min_n - 1, -1):
            pos = self._tables[n].get(tuple(toks[len(toks) - n:]))
            if pos is not None:
                self.last_match = n
                return toks[pos:pos + max_tokens]
        return []


class DraftController:
    """Draft length and back-off.

    - Length: starts at ``start`` (capped at ``max_len``); a fully accepted draft grows it by 2, a
      partly accepted one moves it half way to (accepted + 1), one rejected outright sets it to 1.
    - Cost: a step that verifies k draft tokens costs about (1 + beta k) plain steps (beta is
      measured online from the step times the loop reports with :meth:`observe_time`; small models
      with a large vocabulary pay more per extra position for the output layer). With a per-token
      acceptance estimate a, a draft of k yields E(k) = 1 + a + ... + a^k tokens, so the length is
      also capped at the k that maximizes E(k) / (1 + beta k), and a draft that is not expected to
      beat a plain step counts as a miss. While the stream shares its steps with other streams (the
      server's batch engine), ``shared_cost`` replaces beta: a draft row there delays every stream,
      and the engine, not this stream's timings, knows what that costs (server/step_cost.py).
    - Back-off: after ``patience`` consecutive misses (nothing accepted, or not paying), no draft is
      proposed for the next ``pause`` tokens; the pause grows fourfold (4, 16, 64 = ``max_pause``)
      while drafts keep failing and shrinks fourfold after a draft that pays. On open-ended text the
      extra work is then three short failed verifications in the first ~90 tokens and one every
      ``max_pause`` tokens after that (doubling from 2 cost 0.94x plain decode on SmolLM2's
      open-ended prompt: six failed drafts in 128 tokens).
    """

    FIRST_PAUSE = 4  # tokens without drafts after the first miss
    PAUSE_GROWTH = 4  # factor per further miss (and per paying draft, down)

    def __init__(self, max_len: int, start: int = 4, patience: int = 1, max_pause: int = 64,
                 cost_per_token: float = 0.1):
        if max_len < 1:
            raise ValueError(f"draft length must be >= 1, got {max_len}")
        self.max_len = int(max_len)
        self.length = max(1, min(int(start), self.max_len))
        self.patience = patience
        self.max_pause = max_pause
        self.beta = float(cost_per_token)  # extra cost of one more position, in plain steps
        self.shared_cost: Optional[float] = None  # beta's stand-in while steps are shared (see above)
        self._t1: Optional[float] = None  # EMA of a one-token step, seconds
        self._hits, self._trials = 2.0, 3.0  # decayed acceptance counts (prior a = 2/3)
        self._misses = 0
        self._pause_left = 0
        self._next_pause = self.FIRST_PAUSE

    @property
    def acceptance(self) -> float:
        """Estimated probability that the next draft token is accepted."""
        return self._hits / self._trials

    @property
    def cost(self) -> float:
        """The cost of one draft position in plain steps: beta, or shared_cost while it is set."""
        return self.beta if self.shared_cost is None else self.shared_cost

    def _gain(self, k: int) -> float:
        a = min(self.acceptance, 0.999)
        return (1.0 - a ** (k + 1)) / (1.0 - a) / (1.0 + self.cost * k)

    def _best_length(self, cap: int) -> int:
        best_k, best = 1, self._gain(1)
        for k in range(2, cap + 1):
            g = self._gain(k)
            if g > best:
                best_k, best = k, g
        return best_k

    def budget(self) -> int:
        """Draft tokens allowed for the next step (0 while backed off); call once per decode step."""
        if self._pause_left > 0:
            self._pause_left -= 1
            return 0
        return self._best_length(self.length)

    def observe_time(self, n_evaluated: int, seconds: float) -> None:
        """Step timing: ``n_evaluated`` tokens (1 = a plain step) took ``seconds``."""
        if seconds <= 0 or n_evaluated < 1:
            return
        if n_evaluated == 1:
            self._t1 = seconds if self._t1 is None else 0.8 * self._t1 + 0.2 * seconds
        elif self._t1 is not None:
            obs = (seconds / self._t1 - 1.0) / (n_evaluated - 1)
            self.beta = min(2.0, max(0.0, 0.8 * self.beta + 0.2 * obs))

    def update(self, drafted: int, accepted: int) -> None:
        if drafted <= 0:
            return
        self._hits = 0.9 * self._hits + accepted
        self._trials = 0.9 * self._trials + accepted + (1 if accepted < drafted else 0)
        if accepted >= drafted:
            self.length = min(self.max_len, self.length + 2)
        elif accepted == 0:  # wrong from its first token: the next guess is no safer, keep it short
            self.length = 1
        else:
            self.length = max(1, (self.length + accepted + 1) // 2)
        paid = (1 + accepted) / (1.0 + self.cost * drafted) >= 1.0
        if accepted == 0 or not paid:
            self._misses += 1
            if self._misses >= self.patience:
                self._misses = 0
                self._pause_left = self._next_pause
                self._next_pause = min(self.max_pause, self._next_pause * self.PAUSE_GROWTH)
        else:  # a draft that paid: shorten the next pause (not reset it: one lucky hit among misses)
            self._misses = 0
            self._next_pause = max(self.FIRST_PAUSE, self._next_pause // self.PAUSE_GROWTH)


@dataclass
class SpecStats:
    """Counters of one or more speculative generations."""
    steps: int = 0  # forward passes that carried a draft
    drafted: int = 0  # draft tokens evaluated
    accepted: int = 0  # draft tokens kept
    history: List[Tuple[int, int]] = field(default_factory=list)  # (drafted, accepted) per step, capped

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    def add(self, drafted: int, accepted: int) -> None:
        self.steps += 1
        self.drafted += drafted
        self.accepted += accepted
        if len(self.history) < 4096:
            self.history.append((drafted, accepted))

    def as_dict(self) -> Dict[str, float]:
        return {"steps": self.steps, "drafted": self.drafted, "accepted": self.accepted,
                "acceptance_rate": self.acceptance_rate}


def filter_draft(draft: List[int], constraint: Any) -> List[int]:
    """The longest prefix of ``draft`` that ``constraint`` allows (grammar / JSON-schema constraints,
    edgellama.constrained.TokenConstraint): a draft token the constraint forbids ends the draft (the
    target could never emit it, so verifying it is waste). ``constraint.validate(tokens)`` says how
    many leading tokens it accepts without changing its state."""
    if constraint is None or not draft:
        return draft
    return draft[:int(constraint.validate(draft))]


class SpecSession:
    """Speculation state for one generation: the drafter, its length controller and the sampler
    that verifies the drafts."""

    def __init__(self, drafter: Any, sampler: Any, n_vocab: int, max_new: Optional[int] = None):
        self.drafter = drafter
        self.sampler = sampler
        self.n_vocab = n_vocab
        max_len = int(getattr(drafter, "max_draft_tokens", 10) or 10)
        self.controller = DraftController(max_len, start=getattr(drafter, "start_draft_tokens", 4))
        # The measured step cost steers the draft lengths; the output does not depend on them (see
        # the module docstring), so timings may.
        cost = getattr(drafter, "_spec_cost", None)
        if cost is not None:
            self.controller.beta, self.controller._t1 = cost
        self.max_new = max_new
        self.stats = SpecStats()

    @classmethod
    def start(cls, model: Any, sampler: Any, max_new: Optional[int] = None) -> Optional["SpecSession"]:
        """A session when ``model.draft_model`` is set and the sampler can verify drafts (it has
        ``sample``: the model's own samplers do). None otherwise (plain decoding)."""
        drafter = getattr(model, "draft_model", None)
        if drafter is None:
            return None
        if not (hasattr(drafter, "draft") or callable(drafter)):
            raise TypeError(f"draft_model must be a drafter (edgellama.LlamaPromptLookupDecoding(), "
                            f"edgellama.LlamaDraftModel(path)), got {type(drafter).__name__}")
        if not hasattr(sampler, "sample"):
            return None
        bind = getattr(drafter, "bind", None)
        if bind is not None:
            bind(model)  # e.g. the draft model checks its vocabulary against the target's
        session = cls(drafter, sampler, int(model.n_vocab()), max_new)
        reset_stats = getattr(drafter, "_begin_generation", None)
        if reset_stats is not None:
            reset_stats(session.stats)
        return session

    # ---------------------------------------------------------------- drafting
    def propose(self, history: List[int], room: int, produced: int) -> List[int]:
        """Draft tokens to verify after ``history`` (cache + pending tokens). ``room``: free KV
        cache slots after the pending tokens; ``produced``: tokens yielded so far (the pending one
        included), so that no draft goes past max_new."""
        limit = min(room, self.controller.max_len)
        if self.max_new is not None:
            limit = min(limit, self.max_new - produced - 1)
        if limit <= 0:
            return []
        # A drafter in a server's shared steps says what a draft row costs there (None: this stream
        # has the step to itself, and the controller's own timings apply; inf: no estimate yet).
        shared = getattr(self.drafter, "shared_step_cost", None)
        cost = shared() if shared is not None else None
        self.controller.shared_cost = cost  # also while not drafting: observe_time must know
        if cost is not None and not cost < float("inf"):
            return []
        n = min(limit, self.controller.budget())
        if n <= 0:
            return []
        draft = _call_drafter(self.drafter, history, n)
        for t in draft:
            if not 0 <= t < self.n_vocab:
                raise ValueError(f"draft model {type(self.drafter).__name__} proposed token id {t}, outside "
                                 f"the target's vocabulary (0..{self.n_vocab - 1})")
        return draft

    def update(self, drafted: int, accepted: int) -> None:
        if drafted:
            self.stats.add(drafted, accepted)
            self.controller.update(drafted, accepted)

    def observe_time(self, n_evaluated: int, seconds: float) -> None:
        c = self.controller
        if c.shared_cost is not None:
            return  # a shared step's time is every stream's: it says nothing about this stream's rows
        c.observe_time(n_evaluated, seconds)
        try:  # keep the hardware cost estimate for the next generation with this drafter
            self.drafter._spec_cost = (c.beta, c._t1)
        except AttributeError:
            pass

    # ---------------------------------------------------------------- verification
    def verify(self, logits: np.ndarray, draft_token: int, allowed: Optional[np.ndarray] = None) -> Tuple[int, bool]:
        """(token to emit at this position, whether it is the draft token): the sampler's own pick
        from these logits, as plain decoding would draw it (``allowed``: the grammar's
        allowed-token bitset at this position, or None)."""
        tok = int(self.sampler.sample(logits) if allowed is None else self.sampler.sample(logits, allowed))
        return tok, tok == draft_token


def _call_drafter(drafter: Any, history: List[int], n: int) -> List[int]:
    """Our drafters take ``draft(history, n)`` (lists, no copies); any other object is called the
    llama-cpp-python way, ``drafter(np.intc array) -> array of draft ids``."""
    draft_fn = getattr(drafter, "draft", None)
    if draft_fn is not None:
        out = draft_fn(history, n)
    else:
        out = drafter(np.asarray(history, dtype=np.intc))
    return [int(t) for t in np.asarray(out).reshape(-1)[:n]]
