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
