"""Progress reporting on stderr: a tqdm bar on a terminal; on anything else (a log file, a CI job,
a pipe) plain lines — at most one per 10% of the work and per 5 seconds — instead of a bar's
carriage-return redraws, which turn a log into one very long line."""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

__all__ = ["progress_bar", "LineProgress"]


class LineProgress:
    """The part of tqdm's interface edgellama uses, printing whole lines."""

    def __init__(self, total: Optional[int], desc: str = "", unit: str = "it", file: Any = None,
                 min_seconds: float = 5.0, unit_scale: bool = False, **_: Any):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.file = file or sys.stderr
        self.n = 0
        self.min_seconds = min_seconds
        self.unit_scale = unit_scale
        self._last_time = time.monotonic()
        self._last_decile = 0
        self._closed = False

    def _amount(self, v: float) -> str:
        """``20 tensor`` or, with unit_scale, ``4.0 MiB``."""
        if not self.unit_scale:
            return f"{int(v)} {self.unit}"
        prefix = ""
        for prefix in ("", "Ki", "Mi", "Gi"):
            if abs(v) < 1024 or prefix == "Gi":
                break
            v /= 1024.0
        return f"{int(v)} {self.unit}" if not prefix else f"{v:.1f} {prefix}{self.unit}"

    def _line(self) -> str:
        what = f"{self.desc}: " if self.desc else ""
        if self.total:
            return f"{what}{100 * self.n // self.total}% ({self._amount(self.n)} of {self._amount(self.total)})"
        return f"{what}{self._amount(self.n)}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        decile = 10 * self.n // self.total if self.total else 0
        if (self.total and decile > self._last_decile) or now - self._last_time >= self.min_seconds:
            self._last_decile = decile
            self._last_time = now
            print(self._line(), file=self.file, flush=True)

    def set_description(self, desc: str) -> None:
        pass  # per-item descriptions would be one line per item: the line keeps the overall desc

    def close(self) -> None:
        if not self._closed and self.total and self._last_decile < 10 and self.n >= self.total:
            print(self._line(), file=self.file, flush=True)
        self._closed = True

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Disabled(LineProgress):
    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass


def progress_bar(total: Optional[int], desc: str = "", unit: str = "it", enabled: bool = True,
                 file: Any = None, **tqdm_kw: Any) -> Any:
    """A tqdm bar when ``file`` (default stderr) is a terminal, else a LineProgress."""
    file = file or sys.stderr
    if not enabled:
        return _Disabled(total, desc, unit, file)
    isatty = getattr(file, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc or None, unit=unit, file=file, dynamic_ncols=True, **tqdm_kw)
    return LineProgress(total, desc, unit, file, unit_scale=bool(tqdm_kw.get("unit_scale")))
