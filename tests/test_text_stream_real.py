"""Generation's text path on SmolLM2 (byte-level BPE: CJK characters and emoji arrive split over
several tokens) gives, chunk for chunk, the text the pure-Python path it replaced gives
(tests/streaming_reference.py fed with the piece each token adds after the one before it, computed
as before from two whole-sequence detokenizations)."""

from __future__ import annotations

import itertools

import pytest

import streaming_reference as ref

from edgellama import Llama

# (prompt, stop strings): greedy SmolLM2 answers these with Japanese text / a run of emoji
CASES = [
    ("日本の首都は", []),
    ("日本の首都は", ["ネル"]),           # a stop string that arrives over several tokens
    ("日本の首都は", ["アプX", "では"]),   # "アプ" is held back, then released; "では" stops
    ("Emoji for happy, sad and angry: 😀", ["😀😀😀"]),
    ("Emoji for happy, sad and angry: 😀", ["😀X"]),
]


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(str(smollm2_path), n_ctx=128, verbose=False)


def _old_piece(vocab, prev, tok):
    a = vocab.detokenize([prev])
    b = vocab.detokenize([prev, tok])
    return b[len(a):] if b.startswith(a) else vocab.detokenize([tok])


def _reference_chunks(llm, prompt, stops, max_tokens):
    vocab = llm._vocab_checked()
    prompt_tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    stream = ref.TextStream(stops)
    chunks, pieces, prev = [], [], prompt_tokens[-1]
    for tok in itertools.islice(llm.generate(prompt_tokens, temp=0.0), max_tokens):
        if llm._is_eog(tok):
            break
        piece = _old_piece(vocab, prev, tok)
        pieces.append(piece)
        text = stream.feed(piece)
        if text:
            chunks.append(text)
        if stream.stopped:
            break
        prev = tok
    chunks.append(stream.finish())
    return chunks, pieces


@pytest.mark.parametrize("prompt,stops", CASES)
def test_streamed_chunks_equal_the_python_path(llm, prompt, stops):
    max_tokens = 24
    expected, pieces = _reference_chunks(llm, prompt, stops, max_tokens)
    # the case exercises what it is about: characters split over tokens
    assert any(_incomplete(p) for p in pieces), pieces
    got = [c["choices"][0]["text"] for c in llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0,
                                                                   stop=stops or None, stream=True)]
    assert got == expected
    whole = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, stop=stops or None)
    assert whole["choices"][0]["text"] == "".join(expected)


def test_logprob_offsets_equal_the_python_path(llm):
    """text_offset counts characters: a token that completes a character is where it starts."""
    prompt = "日本の首都は"
    expected, pieces = _reference_chunks(llm, prompt, [], 12)
    out = llm.create_completion(prompt, max_tokens=12, temperature=0.0, logprobs=0)["choices"][0]
    stream, offsets = ref.TextStream(), []
    for p in pieces:
        offsets.append(stream.decoded)
        stream.feed(p)
    assert out["logprobs"]["text_offset"] == offsets
    assert out["text"] == "".join(expected)


def _incomplete(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True
