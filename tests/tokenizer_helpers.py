"""Helpers for the tokenizer tests: write vocab-only GGUF files (keys exactly as llama.cpp's
converters write them) and build the Hugging Face `tokenizers` references."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import gguf

from edgellama import _core

# Pre-tokenizer regexes as the models' tokenizer.json files spell them.
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# llama.cpp's "default" BPE pre-tokenizer: a sequence of four regexes.
DEFAULT_REGEXES = [r"[\p{P}\$\+<=>\^~\|]+", GPT2_REGEX, r"\p{N}+", r"[0-9][0-9][0-9]"]

TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6


def write_vocab_gguf(path: Path, model: str | None, tokens: Sequence[str | bytes] | None, *,
                     scores: Sequence[float] | None = None, types: Sequence[int] | None = None,
                     merges: Sequence[str] | None = None, pre: str | None = None,
                     bos: int | None = None, eos: int | None = None, unk: int | None = None,
                     eot: int | None = None, pad: int | None = None,
                     add_bos: bool | None = None, add_eos: bool | None = None,
                     add_space_prefix: bool | None = None,
                     extra: Callable[[gguf.GGUFWriter], None] | None = None) -> Path:
    """Writes a vocab-only GGUF the way convert_hf_to_gguf.py does (None: key left out)."""
    w = gguf.GGUFWriter(str(path), "llama")
    if model is not None:
        w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    if tokens is not None:
        w.add_token_list(list(tokens))
    if scores is not None:
        w.add_token_scores(list(scores))
    if types is not None:
        w.add_token_types(list(types))
    if merges is not None:
        w.add_token_merges(list(merges))
    if bos is not None:
        w.add_bos_token_id(bos)
    if eos is not None:
        w.add_eos_token_id(eos)
    if unk is not None:
        w.add_unk_token_id(unk)
    if eot is not None:
        w.add_eot_token_id(eot)
    if pad is not None:
        w.add_pad_token_id(pad)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    if add_eos is not None:
        w.add_add_eos_token(add_eos)
    if add_space_prefix is not None:
        w.add_add_space_prefix(add_space_prefix)
    if extra is not None:
        extra(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def load_vocab(path: Path) -> "_core.Vocab":
    return _core.Vocab.from_gguf(_core.GGUFFile(str(path)))


def hf_bpe(tokens: Sequence[str], merges: Sequence[str], pre_tokenizer, *, ignore_merges: bool = False):
    """A Hugging Face byte-level BPE tokenizer over exactly these tokens (ids = positions) and merges."""
    from tokenizers import Tokenizer, decoders, models

    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=ignore_merges))
    tk.pre_tokenizer = pre_tokenizer
    tk.decoder = decoders.ByteLevel()
    return tk


def hf_pre_tokenizer(pre: str):
    """The pre-tokenizer configuration of the tokenizer.json files behind each llama.cpp pre name."""
    from tokenizers import Regex, pre_tokenizers as P

    bytelevel_noregex = P.ByteLevel(add_prefix_space=False, use_regex=False)
    if pre == "gpt2":
        return P.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":  # SmolLM2 tokenizer.json
        return P.Sequence([P.Digits(individual_digits=True), P.ByteLevel(add_prefix_space=False, use_regex=True)])
    if pre == "llama-bpe":  # Llama 3 tokenizer.json
        return P.Sequence([P.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False), bytelevel_noregex])
    if pre == "qwen2":  # Qwen2 / Qwen2.5 tokenizer.json
        return P.Sequence([P.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False), bytelevel_noregex])
    if pre == "default":  # llama.cpp's fallback regex sequence
        return P.Sequence([P.Split(Regex(r), behavior="isolated", invert=False) for r in DEFAULT_REGEXES]
                          + [bytelevel_noregex])
    raise ValueError(pre)


def first_mismatches(pairs, limit: int = 5) -> list:
    """[(line, ours, reference), ...] for the first `limit` differing pairs."""
    out = []
    for line, ours, ref in pairs:
        if ours != ref:
            out.append((line, ours, ref))
            if len(out) >= limit:
                break
    return out
