"""The pure-Python text streaming that generation used before it moved into the C++ core
(cpp/tokenizer/text_stream.cpp), kept as the reference tests/test_streaming.py compares the core with:
the stdlib's incremental UTF-8 decoder and str.find-based stop matching.
"""

from __future__ import annotations

import codecs
from typing import Iterable, List, Optional, Sequence, Tuple, Union

__all__ = ["Utf8Decoder", "StopMatcher", "TextStream"]

from edgellama.streaming import normalize_stop


class Utf8Decoder:
    """Incremental UTF-8 decoder that never emits a partial character.

    >>> d = Utf8Decoder()
    >>> d.feed(b"\\xe4\\xbd"), d.feed(b"\\xa0\\xe5\\xa5"), d.feed(b"\\xbd"), d.finish()
    ('', '你', '好', '')
    """

    def __init__(self) -> None:
        # The stdlib incremental decoder keeps an incomplete trailing sequence pending and replaces
        # bytes that cannot start or continue a sequence with U+FFFD as soon as that is certain
        # (maximal-subpart replacement, same result as a one-shot bytes.decode(errors="replace")).
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._dec.decode(bytes(data), final=False)

    def finish(self) -> str:
        """Flush: an incomplete sequence left at the end becomes U+FFFD."""
        return self._dec.decode(b"", final=True)

    @property
    def pending(self) -> bytes:
        """Bytes held back because they may still become a character."""
        return self._dec.getstate()[0]



class StopMatcher:
    """Holds back text that could be the start of a stop string.

    ``feed(text)`` returns ``(safe_text, stopped)``: ``safe_text`` can be shown now; once ``stopped``
    is True the text before the earliest stop string has been returned and the rest is dropped.
    ``finish()`` returns what was held back (generation ended without completing a stop string, so
    the held text is real output).
    """

    def __init__(self, stop: Union[None, str, Sequence[str]] = None):
        self.stops = normalize_stop(stop)
        self._held = ""
        self.stopped = False
        self.matched: Optional[str] = None  # the stop string that ended the text

    def feed(self, text: str) -> Tuple[str, bool]:
        if self.stopped:
            return "", True
        if not self.stops:
            return text, False
        buf = self._held + text
        # Earliest complete stop string. Any occurrence starts inside the held part or later,
        # because the held part is the longest tail that could begin a stop string.
        best = -1
        for s in self.stops:
            i = buf.find(s)
            if i >= 0 and (best < 0 or i < best):
                best, self.matched = i, s
        if best >= 0:
            self._held = ""
            self.stopped = True
            return buf[:best], True
        keep = self._partial_tail(buf)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep], False

    def _partial_tail(self, buf: str) -> int:
        """Length of the longest tail of buf that is a proper prefix of some stop string."""
        best = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), best, -1):
                if buf.endswith(s[:n]):
                    best = n
                    break
        return best

    def finish(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    @property
    def held(self) -> str:
        return self._held


class TextStream:
    """Token bytes in, displayable text out: UTF-8 assembly then stop-string hold-back.

    ``emitted`` counts the characters handed out so far and ``decoded`` the characters decoded so
    far (emitted + held back); generation uses them to map tokens to text offsets.
    """

    def __init__(self, stop: Union[None, str, Sequence[str]] = None):
        self.decoder = Utf8Decoder()
        self.matcher = StopMatcher(stop)
        self.decoded = 0
        self.emitted = 0

    @property
    def stopped(self) -> bool:
        return self.matcher.stopped

    def feed(self, data: bytes) -> str:
        text = self.decoder.feed(data)
        self.decoded += len(text)
        out, _ = self.matcher.feed(text)
        self.emitted += len(out)
        return out

    def finish(self) -> str:
        """End of generation: flush an incomplete character (as U+FFFD) and held-back text."""
        tail = self.decoder.finish()
        self.decoded += len(tail)
        out, _ = self.matcher.feed(tail)
        out += self.matcher.finish()
        self.emitted += len(out)
        return out
