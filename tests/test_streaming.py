"""Utf8Decoder / StopMatcher / TextStream: chunks are whole characters, stop strings never leak, and
every way of splitting the input gives the same text as decoding it at once."""

from __future__ import annotations

import random

import pytest

from edgellama.streaming import StopMatcher, TextStream, Utf8Decoder, normalize_stop

SAMPLES = [
    "plain ascii",
    "中文字符和标点。",
    "emoji 😀 family 👨‍👩‍👧‍👦 flag 🇫🇷 skin 👍🏽 keycap 1️⃣",
    "accents: é (precomposed) é (combining)",
    "mixed 日本語 Ελληνικά Русский עברית",
]


def splits(data: bytes, rng: random.Random):
    i = 0
    while i < len(data):
        n = rng.randint(1, 4)
        yield data[i:i + n]
        i += n


@pytest.mark.parametrize("text", SAMPLES)
def test_utf8_any_split_gives_whole_characters(text):
    data = text.encode()
    rng = random.Random(0)
    for _ in range(50):
        d = Utf8Decoder()
        chunks = [d.feed(p) for p in splits(data, rng)] + [d.finish()]
        assert "".join(chunks) == text
        for c in chunks:
            c.encode("utf-8")  # no surrogates
            assert "\ufffd" not in c


def test_utf8_holds_incomplete_character():
    d = Utf8Decoder()
    assert d.feed("你".encode()[:2]) == "" and d.pending == "你".encode()[:2]
    assert d.feed("你".encode()[2:]) == "你" and d.pending == b""


def test_utf8_invalid_bytes_are_replaced_at_once():
    d = Utf8Decoder()
    assert d.feed(b"a\xff") == "a\ufffd"          # never valid: emitted now
    assert d.feed(b"\x80") == "\ufffd"             # stray continuation byte
    assert d.feed(b"\xe4\xb8") == ""              # could still become a character
    assert d.feed(b"z") == "\ufffdz"               # ... but did not
    assert d.feed(b"\xf0\x9f") == "" and d.finish() == "\ufffd"  # cut off at the end


def test_utf8_random_bytes_match_one_shot_decode():
    rng = random.Random(1)
    alphabet = list(b"ab\x80\xbf\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\xff\xc0\xed\xa0")
    for _ in range(300):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        d = Utf8Decoder()
        out = "".join(d.feed(p) for p in splits(data, rng)) + d.finish()
        assert out == data.decode("utf-8", errors="replace")


def reference_cut(text, stops):
    idx = [text.find(s) for s in stops if s in text]
    return text[: min(idx)] if idx else text


@pytest.mark.parametrize("stops", [["END"], ["\n\n", "###"], ["aa", "ab"], ["é😀"], ["x", "xyz"]])
def test_stop_matcher_never_leaks_and_matches_reference(stops):
    rng = random.Random(2)
    pieces = ["a", "b", "E", "N", "D", "#", "\n", " ", "é", "😀", "x", "y", "z", "EN", "##"]
    for _ in range(400):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 20)))
        expected = reference_cut(text, stops)
        m = StopMatcher(stops)
        out = ""
        i = 0
        while i < len(text) and not m.stopped:
            n = rng.randint(1, 3)
            emitted, stopped = m.feed(text[i:i + n])
            out += emitted
            assert expected.startswith(out)  # nothing emitted is ever wrong
            i += n
        out += m.finish()
        assert out == expected, (text, stops)
        assert m.stopped == (expected != text or any(s in text for s in stops))


def test_stop_matcher_holds_back_prefix_then_releases():
    m = StopMatcher(["STOP"])
    assert m.feed("abc ST") == ("abc ", False) and m.held == "ST"
    assert m.feed("ART") == ("START", False)
    assert m.feed("x STO") == ("x ", False)
    assert m.feed("P tail") == ("", True)
    assert m.feed("more") == ("", True) and m.finish() == ""
    assert m.matched == "STOP"


def test_normalize_stop():
    assert normalize_stop(None) == [] and normalize_stop("a") == ["a"]
    assert normalize_stop(["a", "", "a", "b"]) == ["a", "b"]
    with pytest.raises(TypeError):
        normalize_stop([1])


def test_text_stream_bytes_with_stop_across_characters():
    s = TextStream(["停止"])
    data = "继续生成停止这里不出现".encode()
    out = "".join(s.feed(data[i:i + 1]) for i in range(len(data)))
    out += s.finish()
    assert out == "继续生成" and s.stopped and s.emitted == 4


# --- the C++ core against the pure-Python implementation it replaced (tests/streaming_reference.py)

# bytes that exercise every UTF-8 decision: ASCII, continuation bytes at both ends of their range,
# leads whose second-byte range is narrowed (E0, ED, F0, F4), leads that never start a character
# (C0, C1, F5, FF), and the bytes of the stop strings below
_BYTE_ALPHABET = (list(b"abEND#\n ") + [0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xA9, 0xDF,
                                        0xE0, 0xE4, 0xB8, 0xAD, 0xED, 0xEF, 0xF0, 0x9F, 0x98, 0xF4, 0xF5, 0xFF]
                  + list("停😀é".encode()))
_STOP_SETS = [[], ["END"], ["\n\n", "###"], ["aa", "ab"], ["é😀"], ["停"], ["a", "abEND"], ["\ufffd"]]


def test_text_stream_matches_python_reference_on_random_bytes():
    import streaming_reference as ref

    rng = random.Random(3)
    for trial in range(3000):
        stops = _STOP_SETS[trial % len(_STOP_SETS)]
        data = bytes(rng.choice(_BYTE_ALPHABET) for _ in range(rng.randint(0, 40)))
        if trial % 3 == 0:  # whole characters mostly, as real token streams are
            data = "".join(rng.choice(["a", "b", "END", "#", "\n", "é", "😀", "停", "日本"]) for _ in range(12)).encode()
        ours, theirs = TextStream(stops), ref.TextStream(stops)
        for piece in splits(data, rng):
            assert ours.feed(piece) == theirs.feed(piece), (data, stops)
            assert (ours.decoded, ours.emitted, ours.stopped) == (theirs.decoded, theirs.emitted, theirs.stopped)
        assert ours.finish() == theirs.finish(), (data, stops)
        assert (ours.decoded, ours.emitted, ours.stopped) == (theirs.decoded, theirs.emitted, theirs.stopped)
        assert ours.matched == theirs.matcher.matched


def test_utf8_decoder_every_byte_pair_matches_stdlib():
    """Every 1- and 2-byte input, and every lead byte followed by every byte and then cut off:
    the core's replacement rule is the stdlib's (maximal subparts)."""
    import codecs

    for a in range(256):
        for b in range(256):
            data = bytes([a, b])
            d, ref = Utf8Decoder(), codecs.getincrementaldecoder("utf-8")(errors="replace")
            assert d.feed(data[:1]) == ref.decode(data[:1]), data
            assert d.feed(data[1:]) == ref.decode(data[1:]), data
            assert d.pending == ref.getstate()[0], data
            assert d.finish() == ref.decode(b"", final=True), data


def test_stop_matcher_rejects_non_str():
    with pytest.raises(TypeError, match="text must be str"):
        StopMatcher(["x"]).feed(b"x")
    with pytest.raises(TypeError, match="data must be bytes"):
        TextStream().feed("x")
