"""Turning a stream of token bytes into text that is safe to show.

The work runs once per generated token, so it lives in the C++ core (cpp/tokenizer/text_stream.cpp);
this module gives it its Python names. Used by generation for both streamed and non-streamed results
(so the concatenation of the streamed chunks is, by construction, the non-streamed text):

* :class:`Utf8Decoder` - incremental UTF-8 decoding over detokenized token bytes. A token may end in
  the middle of a multi-byte character (CJK, emoji); those bytes are held back until the character
  is complete, so no chunk ever contains half a character. Bytes that can never become valid UTF-8
  (a stray continuation byte, an invalid lead byte, a sequence cut short by an unexpected byte) are
  emitted as U+FFFD at once rather than stalling the stream; ``finish()`` turns a sequence left
  incomplete at the end into U+FFFD too (the text ``bytes.decode("utf-8", errors="replace")`` gives
  for the whole input). Multi-codepoint sequences (ZWJ emoji, flags, combining marks) are streamed
  codepoint by codepoint: each chunk is valid text on its own.

* :class:`StopMatcher` - finds stop strings in the text as it grows. It holds back any tail of the
  text that could still be the beginning of a stop string, so a stop string that arrives spread over
  several tokens is never emitted, not even partly; the text before it is.

* :class:`TextStream` - both of the above in sequence; ``emitted``/``decoded`` count characters.

    >>> d = Utf8Decoder()
    >>> d.feed(b"\\xe4\\xbd"), d.feed(b"\\xa0\\xe5\\xa5"), d.feed(b"\\xbd"), d.finish()
    ('', '你', '好', '')
"""

from __future__ import annotations

from typing import Iterable, List, Union

from . import _core

__all__ = ["Utf8Decoder", "StopMatcher", "TextStream", "normalize_stop"]

Utf8Decoder = _core.Utf8Decoder


def normalize_stop(stop: Union[None, str, Iterable[str]]) -> List[str]:
    """``None`` | ``"x"`` | ``["x", "y"]`` -> a list of distinct non-empty stop strings."""
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    out: List[str] = []
    for s in stop:
        if not isinstance(s, str):
            raise TypeError(f"stop strings must be str, got {type(s).__name__}")
        if s and s not in out:
            out.append(s)
    return out


class StopMatcher(_core.StopMatcher):
    """``feed(text) -> (safe_text, stopped)``: ``safe_text`` can be shown now; once ``stopped`` is
    True the text before the earliest stop string has been returned and the rest is dropped.
    ``finish()`` returns what was held back (generation ended without completing a stop string)."""

    def __init__(self, stop: Union[None, str, Iterable[str]] = None):
        super().__init__(normalize_stop(stop))


class TextStream(_core.TextStream):
    """Token bytes in (``feed``), displayable text out: UTF-8 assembly then stop-string hold-back."""

    def __init__(self, stop: Union[None, str, Iterable[str]] = None):
        super().__init__(normalize_stop(stop))
