"""What one more row costs in the batch engine's shared step, for the speculative drafts of streams
that share it.

A step over r rows takes about ``fixed + per_row * r`` seconds: ``fixed`` is the part paid once per
step whatever the rows (reading the weights from memory, the thread pool's barriers, the Python
round trip), ``per_row`` the compute each row adds. Alone, a stream's draft rows ride on the
``fixed`` part, which is why prompt lookup pays there. With n streams in the step, each draft row
delays all n of them, so what the draft controller weighs (its ``beta``: the cost of one more
position in units of a plain step) is, for throughput, ``n * per_row / (fixed + n * per_row)``:
the step time a row adds, relative to the step time one stream's token gets. That is why drafting
pays with several streams only when drafts are nearly always accepted (SmolLM2 copying its prompt:
~0.6 for 4 streams, so a draft of 10 needs an acceptance near 0.95), and not on text that does not
repeat (TinyLlama with random weights: drafts mostly rejected, 11 rows a step instead of 4 when
every stream drafted regardless).

The line is fitted to the engine's own steps: the time per row count is a running average (one per
count of rows up to :data:`MAX_FIT_ROWS`, so a count seen long ago still counts: a phase with 4
streams and no drafts has one count only, and the fit needs two), then least squares over those
averages. No fit (fewer than two counts seen) means no estimate: the streams then do not draft.
"""

from __future__ import annotations

import threading
from typing import Dict, List, Optional, Tuple

__all__ = ["StepCostModel", "MAX_FIT_ROWS"]

MAX_FIT_ROWS = 64  # longer prompt chunks run through other kernels (prefill tiles): not on the line
_WARMUP_STEPS = 2  # the first steps fault the mmapped weights in: not representative
_EMA = 0.2  # weight of a new step in its row count's average
_MAX_WEIGHT = 10  # a count's weight in the fit grows with its observations, up to this


class StepCostModel:
    """Running fit of step seconds = fixed + per_row * rows (thread-safe: the engine thread writes,
    request threads read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen = 0
        self._by_rows: Dict[int, Tuple[float, int]] = {}  # rows -> (average seconds, observations)
        # line()'s result until the next observation: every stream asks once per step (draft_cost),
        # the averages change once per step
        self._fit: Optional[Tuple[float, float]] = None
        self._fit_current = True

    def observe(self, rows: int, seconds: float) -> None:
        with self._lock:
            self._seen += 1
            if self._seen <= _WARMUP_STEPS or not 1 <= rows <= MAX_FIT_ROWS or not seconds > 0:
                return
            avg, n = self._by_rows.get(rows, (seconds, 0))
            self._by_rows[rows] = ((1 - _EMA) * avg + _EMA * seconds if n else seconds, n + 1)
            self._fit_current = False

    def line(self) -> Optional[Tuple[float, float]]:
        """(fixed seconds, seconds per row), or None before two row counts were seen."""
        with self._lock:
            if not self._fit_current:
                self._fit = self._least_squares()
                self._fit_current = True
            return self._fit

    def _least_squares(self) -> Optional[Tuple[float, float]]:
        """The weighted fit over the per-row-count averages (called locked)."""
        points: List[Tuple[int, float, int]] = [(r, t, min(n, _MAX_WEIGHT)) for r, (t, n) in self._by_rows.items()]
        if len(points) < 2:
            return None
        w = sum(p[2] for p in points)
        mx = sum(p[0] * p[2] for p in points) / w
        my = sum(p[1] * p[2] for p in points) / w
        var = sum(p[2] * (p[0] - mx) ** 2 for p in points)
        per_row = max(0.0, sum(p[2] * (p[0] - mx) * (p[1] - my) for p in points) / var)
        return max(0.0, my - per_row * mx), per_row

    def draft_cost(self, n_streams: int) -> Optional[float]:
        """The draft controller's cost of one draft position (in plain steps of one stream) while
        ``n_streams`` streams share each step; None without a fit."""
        fit = self.line()
        if fit is None:
            return None
        fixed, per_row = fit
        step = fixed + n_streams * per_row
        return n_streams * per_row / step if step > 0 else None
