"""The ranges of the sampling parameters the Python API takes, checked before a call starts so a
mistake is a ValueError naming the parameter (the C++ sampler checks its own invariants too; these
are the stricter, user-facing ranges: e.g. ``top_p=1.5`` is a mistake, not "disabled")."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_sampling_params"]

# name -> (low, high, description); None = unbounded on that side, bounds inclusive
RANGES = {
    "top_k": (0, None, "an int >= 0 (0 disables top-k)"),
    "top_p": (0.0, 1.0, "in [0, 1] (1 disables top-p)"),
    "min_p": (0.0, 1.0, "in [0, 1] (0 disables min-p)"),
    "typical_p": (0.0, 1.0, "in [0, 1] (1 disables typical sampling)"),
    "temperature": (None, None, "a finite number (<= 0 is greedy)"),
    "repeat_penalty": (0.0, None, "> 0 (1 disables it)"),
    "frequency_penalty": (None, None, "a finite number"),
    "presence_penalty": (None, None, "a finite number"),
}


def check_sampling_params(**params: Any) -> None:
    for name, value in params.items():
        low, high, what = RANGES[name]
        if isinstance(value, bool):
            raise TypeError(f"{name} must be {what}, got {value!r}")
        try:  # ints, floats and numpy scalars
            v = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be {what}, got {value!r}") from None
        if (not math.isfinite(v) or (low is not None and v < low) or (high is not None and v > high)
                or (name == "repeat_penalty" and v <= 0) or (name == "top_k" and not v.is_integer())):
            raise ValueError(f"{name} must be {what}, got {value!r}")
