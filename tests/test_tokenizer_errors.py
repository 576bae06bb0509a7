"""Malformed vocabularies and bad caller input raise typed exceptions with clear messages (never a
crash): FormatError -> edgellama GGUFError, UnsupportedError, ArgumentError -> ValueError."""

from __future__ import annotations

import random

import pytest

from edgellama import _core
from tokenizer_helpers import TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL, load_vocab, write_vocab_gguf

BYTES = [chr(c) for c in range(0x21, 0x7F)]  # a few printable GPT-2 byte images
TOKENS = ["<|endoftext|>", "a", "b", "ab", "Ġ", "Ġa"] + [c for c in BYTES if c not in ("a", "b")]
MERGES = ["a b", "Ġ a"]


def gpt2_file(tmp_path, name="v.gguf", **kw):
    args = dict(types=[TOKEN_CONTROL] + [TOKEN_NORMAL] * (len(TOKENS) - 1), merges=MERGES, pre="gpt2",
                bos=0, eos=0)
    args.update(kw)
    tokens = args.pop("tokens", TOKENS)
    model = args.pop("model", "gpt2")
    return write_vocab_gguf(tmp_path / name, model, tokens, **args)


def test_valid_small_vocab(tmp_path):
    v = load_vocab(gpt2_file(tmp_path))
    assert v.tokenize(b"ab a", False, False) == [TOKENS.index("ab"), TOKENS.index("\u0120a")]


def test_unknown_model(tmp_path):
    with pytest.raises(_core.UnsupportedError, match=r"tokenizer\.ggml\.model.*'bert'.*not supported"):
        load_vocab(gpt2_file(tmp_path, model="bert"))


def test_missing_model(tmp_path):
    with pytest.raises(_core.GGUFError, match=r"tokenizer\.ggml\.model is missing"):
        load_vocab(gpt2_file(tmp_path, model=None))


def test_unknown_pre(tmp_path):
    with pytest.raises(_core.UnsupportedError, match=r"tokenizer\.ggml\.pre.*'mystery-bpe'.*not supported"):
        load_vocab(gpt2_file(tmp_path, pre="mystery-bpe"))


def test_missing_tokens(tmp_path):
    with pytest.raises(_core.GGUFError, match=r"tokenizer\.ggml\.tokens is missing"):
        load_vocab(gpt2_file(tmp_path, tokens=None, types=None, merges=None, bos=None, eos=None))


def test_tokens_wrong_type(tmp_path):
    p = gpt2_file(tmp_path, tokens=None, types=None, merges=None, bos=None, eos=None,
                  extra=lambda w: w.add_array("tokenizer.ggml.tokens", [1, 2, 3]))
    with pytest.raises(_core.GGUFError, match=r"tokenizer\.ggml\.tokens: expected an array of strings, found ARRAY\[INT32\]|tokenizer\.ggml\.tokens: expected an array of strings"):
        load_vocab(p)


def test_empty_vocab(tmp_path):
    p = gpt2_file(tmp_path, tokens=[], types=None, merges=[], bos=None, eos=None)
    with pytest.raises(_core.GGUFError, match="empty"):
        load_vocab(p)


def test_scores_wrong_type(tmp_path):
    p = gpt2_file(tmp_path, extra=lambda w: w.add_array("tokenizer.ggml.scores", ["x"] * len(TOKENS)))
    with pytest.raises(_core.GGUFError, match=r"tokenizer\.ggml\.scores: expected an array of float32"):
        load_vocab(p)


def test_scores_length_mismatch(tmp_path):
    p = gpt2_file(tmp_path, scores=[0.0] * (len(TOKENS) - 1))
    with pytest.raises(_core.GGUFError, match=rf"tokenizer\.ggml\.scores: has {len(TOKENS) - 1} entries but there are {len(TOKENS)} tokens"):
        load_vocab(p)


def test_nan_score(tmp_path):
    p = gpt2_file(tmp_path, scores=[0.0, float("nan")] + [0.0] * (len(TOKENS) - 2))
    with pytest.raises(_core.GGUFError, match=r"score of token 1 is NaN"):
        load_vocab(p)


def test_token_type_length_mismatch(tmp_path):
    p = gpt2_file(tmp_path, types=[TOKEN_NORMAL] * 3)
    with pytest.raises(_core.GGUFError, match=r"tokenizer\.ggml\.token_type: has 3 entries"):
        load_vocab(p)


def test_token_type_wrong_type_and_range(tmp_path):
    p = gpt2_file(tmp_path, types=None, extra=lambda w: w.add_array("tokenizer.ggml.token_type", [1.5] * len(TOKENS)))
    with pytest.raises(_core.GGUFError, match=r"tokenizer\.ggml\.token_type: expected an array of int32"):
        load_vocab(p)
    p = gpt2_file(tmp_path, name="w.gguf", types=[TOKEN_NORMAL] * (len(TOKENS) - 1) + [42])
    with pytest.raises(_core.GGUFError, match=r"token \d+ has type 42"):
        load_vocab(p)


@pytest.mark.parametrize("key", ["bos", "eos", "unk", "eot", "pad"])
def test_special_id_out_of_range(tmp_path, key):
    p = gpt2_file(tmp_path, **{key: len(TOKENS) + 5})
    with pytest.raises(_core.GGUFError, match=rf"token id {len(TOKENS) + 5} is out of range"):
        load_vocab(p)


def test_special_id_wrong_type(tmp_path):
    p = gpt2_file(tmp_path, bos=None, extra=lambda w: w.add_string("tokenizer.ggml.bos_token_id", "1"))
    with pytest.raises(_core.GGUFError, match=r"bos_token_id: expected an integer"):
        load_vocab(p)


def test_add_bos_without_bos(tmp_path):
    p = gpt2_file(tmp_path, bos=None, add_bos=True)
    with pytest.raises(_core.GGUFError, match="add_bos_token is true but the vocabulary has no BOS"):
        load_vocab(p)


def test_merges(tmp_path):
    with pytest.raises(_core.GGUFError, match=r"merge 1 'a zz' refers to 'zz', which is not a token"):
        load_vocab(gpt2_file(tmp_path, name="1.gguf", merges=["a b", "a zz"]))
    with pytest.raises(_core.GGUFError, match=r"merge 0 'ba' is not of the form"):
        load_vocab(gpt2_file(tmp_path, name="2.gguf", merges=["ba"]))
    # both halves exist but the merged token does not
    with pytest.raises(_core.GGUFError, match=r"merge 0 'b a' refers to 'ba'"):
        load_vocab(gpt2_file(tmp_path, name="3.gguf", merges=["b a"]))
    with pytest.raises(_core.GGUFError, match=r"tokenizer\.ggml\.merges is missing"):
        load_vocab(gpt2_file(tmp_path, name="4.gguf", merges=None))
    with pytest.raises(_core.GGUFError, match=r"tokenizer\.ggml\.merges: expected an array of strings"):
        load_vocab(gpt2_file(tmp_path, name="5.gguf", merges=None,
                             extra=lambda w: w.add_array("tokenizer.ggml.merges", [1, 2])))


def test_spm_bad_byte_token(tmp_path):
    p = write_vocab_gguf(tmp_path / "s.gguf", "llama", ["<unk>", "<s>", "</s>", "<0xZZ>", "\u2581a"],
                         scores=[0.0, 0.0, 0.0, 0.0, -1.0], types=[2, 3, 3, TOKEN_BYTE, 1])
    with pytest.raises(_core.GGUFError, match=r"token 3 has type BYTE but its text '<0xZZ>'"):
        load_vocab(p)


def test_bad_caller_input(tmp_path):
    v = load_vocab(gpt2_file(tmp_path))
    with pytest.raises(ValueError, match=r"not valid UTF-8 \(byte 0xFF at offset 2\)"):
        v.tokenize(b"ab\xffcd", False, False)
    for bad in (b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\xe4\xb8"):  # overlong, surrogate, > U+10FFFF, truncated
        with pytest.raises(ValueError, match="not valid UTF-8"):
            v.tokenize(bad, False, False)
    with pytest.raises(TypeError):
        v.tokenize(123, False, False)
    assert v.tokenize("ab", False, False) == v.tokenize(b"ab", False, False)
    n = v.n_tokens()
    for fn in (v.token_to_piece, v.token_text, v.token_score, v.token_type, v.is_eog):
        with pytest.raises(ValueError, match=rf"token id {n} is out of range"):
            fn(n)
        with pytest.raises(ValueError, match="token id -1 is out of range"):
            fn(-1)
    with pytest.raises(ValueError, match="out of range"):
        v.detokenize([1, 2, n])


def test_mutated_files_never_crash(tmp_path):
    """Random byte flips in a small vocab GGUF either load or raise one of our errors."""
    data = bytearray(gpt2_file(tmp_path).read_bytes())
    rng = random.Random(7)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(400):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        try:
            v = _core.Vocab.from_gguf(_core.GGUFFile.from_bytes(bytes(b), "mutated.gguf"))
            v.detokenize(v.tokenize(b"ab ab a\xc3\xa9", True, True))
            outcomes["ok"] += 1
        except (ValueError, OSError):  # GGUFError / UnsupportedError are ValueErrors
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and outcomes["ok"] > 0, outcomes
