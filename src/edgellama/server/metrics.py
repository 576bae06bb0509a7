"""Server counters and their Prometheus text exposition (format 0.0.4).

A handful of counters and gauges, written out by hand: the text format is a few lines per metric,
and a client library would be one more dependency of the server extra for no added behaviour.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Callable, Dict, List, Tuple

__all__ = ["Metrics"]


def _labels(pairs: Tuple[Tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    esc = lambda v: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")  # noqa: E731
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in pairs) + "}"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter = Counter()  # (endpoint, status) -> count
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.rejected_queue_full = 0
        self.cancelled = 0
        self.draft_tokens = 0  # speculative decoding: draft tokens verified, and kept
        self.draft_accepted = 0

    def count_request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[(endpoint, str(status))] += 1

    def count_cancelled(self) -> None:
        with self._lock:
            self.cancelled += 1

    def add_usage(self, usage: Dict[str, int]) -> None:
        with self._lock:
            self.prompt_tokens += int(usage.get("prompt_tokens", 0))
            self.completion_tokens += int(usage.get("completion_tokens", 0))

    def add_draft(self, drafted: int, accepted: int) -> None:
        with self._lock:
            self.draft_tokens += int(drafted)
            self.draft_accepted += int(accepted)

    def render(self, gauges: Callable[[], Dict[str, float]]) -> str:
        g = gauges()
        lines: List[str] = []

        def metric(name: str, kind: str, help_: str, samples) -> None:
            lines.append(f"# HELP edgellama_{name} {help_}")
            lines.append(f"# TYPE edgellama_{name} {kind}")
            for labels, value in samples:
                lines.append(f"edgellama_{name}{_labels(labels)} {value}")

        with self._lock:
            metric("requests_total", "counter", "HTTP requests by endpoint and status code.",
                   [((("endpoint", e), ("status", s)), n) for (e, s), n in sorted(self.requests.items())])
            metric("prompt_tokens_total", "counter", "Prompt tokens of finished requests.", [((), self.prompt_tokens)])
            metric("completion_tokens_total", "counter", "Generated tokens of finished requests.",
                   [((), self.completion_tokens)])
            metric("draft_tokens_total", "counter", "Speculative draft tokens verified.", [((), self.draft_tokens)])
            metric("draft_tokens_accepted_total", "counter", "Speculative draft tokens kept (same output, fewer passes).",
                   [((), self.draft_accepted)])
            metric("requests_rejected_total", "counter", "Requests refused with 503 because the queue was full.",
                   [((), self.rejected_queue_full)])
            metric("requests_cancelled_total", "counter", "Requests whose client went away before the end.",
                   [((), self.cancelled)])
        metric("queue_depth", "gauge", "Requests waiting for a free slot.", [((), g["queue_depth"])])
        metric("slots_busy", "gauge", "Slots serving a request.", [((), g["busy_slots"])])
        metric("slots_total", "gauge", "Slots (--parallel).", [((), g["n_slots"])])
        metric("batch_steps_total", "counter", "Forward passes of the batch engine.", [((), g["steps"])])
        metric("batch_rows_total", "counter", "Token rows evaluated by the batch engine.", [((), g["rows"])])
        metric("batch_seconds_total", "counter", "Time spent in forward passes.", [((), round(g["step_seconds"], 6))])
        # the engine's fit of step time = fixed + per_row x rows (step_cost.py; NaN before two row
        # counts were seen): what a speculative draft row costs the streams sharing a step
        metric("batch_step_fixed_seconds", "gauge", "Fitted time of a forward pass apart from its rows.",
               [((), round(g["step_fixed_seconds"], 6))])
        metric("batch_row_seconds", "gauge", "Fitted time each row adds to a forward pass.",
               [((), round(g["row_seconds"], 6))])
        # prompt-prefix reuse (engine.py): tokens not evaluated because a cache already held them
        metric("prompt_tokens_cached_total", "counter",
               "Prompt tokens a request found in its own slot's KV cache (not evaluated).",
               [((), g["prompt_tokens_own_cache"])])
        metric("prompt_tokens_shared_total", "counter",
               "Prompt tokens whose KV rows were copied from another slot's cache instead of evaluated.",
               [((), g["prompt_tokens_shared"])])
        metric("prefix_copies_total", "counter",
               "Copies of prompt K/V rows from another slot (when a request starts; per prompt chunk "
               "for requests that arrive together).",
               [((), g["shared_prefix_copies"])])
        return "\n".join(lines) + "\n"
