"""Byte-level BPE (tokenizer.ggml.model = 'gpt2'): SmolLM2's real vocabulary against a Hugging Face
`tokenizers` reference built from the same tokens/merges with SmolLM2's tokenizer.json
pre-tokenizer, plus small trained vocabularies for the other pre-tokenizers."""

from __future__ import annotations

import time

import pytest

from tokenizer_corpus import corpus
from tokenizer_helpers import (TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_USER_DEFINED, first_mismatches, hf_bpe,
                               hf_pre_tokenizer, load_vocab, write_vocab_gguf)

tokenizers = pytest.importorskip("tokenizers")

from edgellama import _core  # noqa: E402


@pytest.fixture(scope="module")
def smol(smollm2_path):
    f = _core.GGUFFile(str(smollm2_path))
    md = f.metadata_dict()
    vocab = _core.Vocab.from_gguf(f)
    ref = hf_bpe(md["tokenizer.ggml.tokens"], md["tokenizer.ggml.merges"], hf_pre_tokenizer("smollm"))
    return f, md, vocab, ref


def test_smollm2_metadata(smol):
    f, md, v, _ = smol
    assert v.model_name() == "gpt2" and v.pre_name() == "smollm"
    assert v.n_tokens() == len(md["tokenizer.ggml.tokens"]) == 49152
    assert v.n_merges() == len(md["tokenizer.ggml.merges"])
    assert v.bos() == md["tokenizer.ggml.bos_token_id"] and v.eos() == md["tokenizer.ggml.eos_token_id"]
    assert v.add_bos() is False and v.add_eos() is False
    im_end = v.token_id("<|im_end|>")
    assert v.is_eog(im_end) and v.is_eog(v.token_id("<|endoftext|>")) and not v.is_eog(v.token_id("Hello"))
    assert v.eot() == im_end


def test_smollm2_load_time(smol):
    f = smol[0]
    best = min(_timed(lambda: _core.Vocab.from_gguf(f)) for _ in range(3))
    print(f"SmolLM2 vocab load: {best * 1000:.1f} ms")
    assert best < 0.1, f"loading the 49k-token vocabulary took {best * 1000:.0f} ms"


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_smollm2_equals_hf_tokenizers(smol):
    _, _, v, ref = smol
    lines = corpus()
    assert len(lines) >= 1000
    results = [(line, v.tokenize(line.encode(), False, False), ref.encode(line, add_special_tokens=False).ids)
               for line in lines]
    bad = first_mismatches(results)
    assert not bad, f"{sum(o != r for _, o, r in results)} of {len(lines)} lines differ; first: {bad}"


def test_smollm2_decode_round_trip(smol):
    _, _, v, ref = smol
    bad = []
    for line in corpus():
        ids = v.tokenize(line.encode(), True, False)
        ours = v.detokenize(ids)
        if ours != line.encode() or ours.decode() != ref.decode(ids):
            bad.append((line, ours))
    assert not bad, bad[:5]
    # Pieces are raw bytes: a token may be part of a UTF-8 character.
    ids = v.tokenize("😀".encode(), False, False)
    assert b"".join(v.token_to_piece(i) for i in ids) == "😀".encode()
    if len(ids) > 1:
        with pytest.raises(UnicodeDecodeError):
            v.token_to_piece(ids[0]).decode()


def test_smollm2_special_tokens(smol):
    _, md, v, _ = smol
    from tokenizers import AddedToken

    text = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    im_start, im_end = v.token_id("<|im_start|>"), v.token_id("<|im_end|>")
    ref = hf_bpe(md["tokenizer.ggml.tokens"], md["tokenizer.ggml.merges"], hf_pre_tokenizer("smollm"))
    plain_ref = ref.encode(text, add_special_tokens=False).ids
    specials = [md["tokenizer.ggml.tokens"][i] for i, t in enumerate(md["tokenizer.ggml.token_type"]) if t == 3]
    ref.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    parsed_ref = ref.encode(text, add_special_tokens=False).ids

    parsed = v.tokenize(text.encode(), False, True)
    plain = v.tokenize(text.encode(), False, False)
    assert parsed == parsed_ref and parsed.count(im_start) == 2 and parsed.count(im_end) == 1
    assert plain == plain_ref and im_start not in plain and im_end not in plain
    assert v.detokenize(parsed) == b"user\nHi there\nassistant\n"
    assert v.detokenize(parsed, special=True) == text.encode()
    assert v.token_to_piece(im_end) == b"" and v.token_to_piece(im_end, special=True) == b"<|im_end|>"


# ---------------------------------------------------------------------------------------------
# Small vocabularies trained in the test for the other pre-tokenizers.


@pytest.fixture(scope="module")
def trained():
    """tokens, merges of a 2,000-token byte-level BPE trained on the corpus with *no* pre-splitting,
    so that merges cross the pre-tokenizers' boundaries and a wrong split changes the ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=2000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"])
    tk.train_from_iterator(corpus(), trainer=trainer)
    import json

    model = json.loads(tk.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    extra = ["<|im_start|>", "<|im_end|>", "<tool>"]
    return tokens + extra, merges


@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2", "gpt2", "default", "smollm"])
def test_pre_tokenizer_equals_hf(pre, trained, tmp_path):
    tokens, merges = trained
    types = [TOKEN_CONTROL if t.startswith("<|") else TOKEN_NORMAL for t in tokens]
    path = write_vocab_gguf(tmp_path / f"{pre}.gguf", "gpt2", tokens, types=types, merges=merges, pre=pre,
                            bos=0, eos=0, add_bos=False)
    v = load_vocab(path)
    assert v.pre_name() == pre
    ref = hf_bpe(tokens, merges, hf_pre_tokenizer(pre), ignore_merges=(pre == "llama-bpe"))
    lines = corpus()
    results = [(line, v.tokenize(line.encode(), False, False), ref.encode(line, add_special_tokens=False).ids)
               for line in lines]
    bad = first_mismatches(results)
    assert not bad, f"{pre}: {sum(o != r for _, o, r in results)} of {len(lines)} lines differ; first: {bad}"
    for line in lines[:300]:
        assert v.detokenize(v.tokenize(line.encode(), False, False)) == line.encode()


def test_pre_tokenizers_split_differently(trained, tmp_path):
    """The comparison above can fail: the pre-tokenizers really do give different ids."""
    tokens, merges = trained
    text = "I'M here  12345 naïve\n\n  x"
    seen = {}
    for pre in ["llama-bpe", "qwen2", "gpt2", "smollm"]:
        v = load_vocab(write_vocab_gguf(tmp_path / f"{pre}.gguf", "gpt2", tokens, merges=merges, pre=pre))
        seen[pre] = tuple(v.tokenize(text.encode(), False, False))
    assert len(set(seen.values())) == 4, seen


def test_user_defined_and_control_tokens(trained, tmp_path):
    from tokenizers import AddedToken

    tokens, merges = trained
    types = [TOKEN_NORMAL] * len(tokens)
    ctl, ud = tokens.index("<|im_start|>"), tokens.index("<tool>")
    types[ctl] = types[tokens.index("<|im_end|>")] = TOKEN_CONTROL
    types[ud] = TOKEN_USER_DEFINED
    v = load_vocab(write_vocab_gguf(tmp_path / "sp.gguf", "gpt2", tokens, types=types, merges=merges,
                                    pre="llama-bpe", bos=ctl, eos=tokens.index("<|im_end|>"),
                                    add_bos=True, add_eos=True))
    text = "<|im_start|>call <tool>now<|im_end|> and <tool>"
    ref = hf_bpe(tokens, merges, hf_pre_tokenizer("llama-bpe"), ignore_merges=True)
    ref.add_tokens([AddedToken("<tool>", special=False, normalized=False)])
    # parse_special=False: control tokens are plain text; user-defined tokens are still recognised
    # (llama.cpp, sentencepiece and HF all do that).
    plain = v.tokenize(text.encode(), False, False)
    assert plain == ref.encode(text, add_special_tokens=False).ids
    assert ctl not in plain and plain.count(ud) == 2
    ref.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")])
    parsed = v.tokenize(text.encode(), False, True)
    assert parsed == ref.encode(text, add_special_tokens=False).ids
    assert parsed[0] == ctl and parsed.count(ud) == 2
    # add_special: BOS and EOS from add_bos_token / add_eos_token
    assert v.tokenize(b"hi", True, False) == [v.bos()] + v.tokenize(b"hi", False, False) + [v.eos()]
    assert v.tokenize(b"", True, False) == [v.bos(), v.eos()]
    assert v.token_to_piece(ud) == b"<tool>"


def test_llama3_ignore_merges(tmp_path):
    """Llama 3 (llama-bpe) looks a whole pre-token up in the vocabulary before merging
    (tokenizer.json "ignore_merges": true); the other pre-tokenizers do not."""
    from tokenizers import pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tokens = sorted(alphabet) + ["ab", "abc"]
    merges = ["a b"]
    abc, ab = tokens.index("abc"), tokens.index("ab")
    for pre, expected in [("llama-bpe", [abc]), ("gpt2", [ab, tokens.index("c")])]:
        v = load_vocab(write_vocab_gguf(tmp_path / f"{pre}.gguf", "gpt2", tokens, merges=merges, pre=pre))
        ref = hf_bpe(tokens, merges, hf_pre_tokenizer(pre), ignore_merges=(pre == "llama-bpe"))
        assert v.tokenize(b"abc", False, False) == expected == ref.encode("abc", add_special_tokens=False).ids


def test_missing_pre_is_default(trained, tmp_path):
    tokens, merges = trained
    v = load_vocab(write_vocab_gguf(tmp_path / "nopre.gguf", "gpt2", tokens, merges=merges))
    d = load_vocab(write_vocab_gguf(tmp_path / "default.gguf", "gpt2", tokens, merges=merges, pre="default"))
    assert v.pre_name() == "default"
    text = "Hello, world!!! 1234567 $x+y<=z"
    assert v.tokenize(text.encode(), False, False) == d.tokenize(text.encode(), False, False)
    assert v.add_bos() is False and v.bos() == -1 and v.tokenize(b"x", True, False) == v.tokenize(b"x", False, False)
