"""Tokenizers -> GGUF tokenizer keys, the way llama.cpp's converters write them.

* sentencepiece tokenizer.model -> tokenizer.ggml.model = "llama" (tokens, scores, token types as
  convert_hf_to_gguf.py's _create_vocab_sentencepiece: added_tokens.json and tokenizer_config.json's
  added_tokens_decoder applied on top).
* tokenizer.json (byte-level BPE) -> "gpt2": tokens, token types, merges and a pre-tokenizer name.
* llama2.c tokenizer.bin -> "llama", as llama.cpp's convert-llama2c-to-ggml does.
Special token ids, add_bos/add_eos and the chat template come from gguf-py's SpecialVocab (the same
code llama.cpp's converter uses).
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import List, Optional

from gguf import GGUFValueType, GGUFWriter, SpecialVocab, TokenType

from .errors import ConversionError
from .model import KV, Checkpoint

log = logging.getLogger("edgellama.convert")

STR, ARR = GGUFValueType.STRING, GGUFValueType.ARRAY


def _does_token_look_special(token: "str | bytes") -> bool:
    text = token.decode("utf-8", errors="replace") if isinstance(token, (bytes, bytearray)) else token
    return (
        text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (text.startswith("<|") and text.endswith("|>"))
        or (text.startswith("<｜") and text.endswith("｜>"))
        or (text.startswith("<unused") and text.endswith(">"))
    )


def _set_token_arrays(ck: Checkpoint, model: str, pre: Optional[str], tokens, scores, toktypes) -> None:
    ck.add("tokenizer.ggml.model", model, STR)
    if pre is not None:
        ck.add("tokenizer.ggml.pre", pre, STR)
    ck.add("tokenizer.ggml.tokens", list(tokens), ARR, STR)
    if scores is not None:
        ck.add("tokenizer.ggml.scores", [float(s) for s in scores], ARR, GGUFValueType.FLOAT32)
    ck.add("tokenizer.ggml.token_type", [int(t) for t in toktypes], ARR, GGUFValueType.INT32)


def _add_special_vocab(ck: Checkpoint, directory: Path, n_vocab: int, load_merges: bool) -> None:
    sv = SpecialVocab(directory, load_merges=load_merges, n_vocab=n_vocab)
    scratch = GGUFWriter(None, ck.arch)
    sv.add_to_gguf(scratch, quiet=True)
    for key, v in scratch.kv_data[0].items():
        if key.startswith("tokenizer."):
            ck.add(key, v.value, v.type, v.sub_type)


def sentencepiece_vocab(ck: Checkpoint, model_path: Path, vocab_size: Optional[int], hf_dir: Optional[Path],
                        exact_size: bool = False) -> None:
    try:
        from sentencepiece import SentencePieceProcessor
    except ImportError as e:  # pragma: no cover - sentencepiece is a dependency
        raise ConversionError("reading tokenizer.model needs the sentencepiece package") from e
    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(model_path))
    except Exception as e:
        raise ConversionError(f"{model_path}: not a sentencepiece model: {e}") from e
    n = vocab_size if vocab_size is not None else sp.vocab_size()
    if exact_size and sp.vocab_size() != n:  # llama2.c: no padding rows, a mismatch is another model's tokenizer
        raise ConversionError(f"{model_path}: the tokenizer has {sp.vocab_size()} tokens but the model's vocabulary "
                              f"has {n}: it belongs to another model")
    tokens: List[bytes] = [f"[PAD{i}]".encode() for i in range(n)]
    scores = [-10000.0] * n
    toktypes = [int(TokenType.UNUSED)] * n
    for tid in range(sp.vocab_size()):
        if tid >= n:
            ck.warnings.append(f"tokenizer.model has {sp.vocab_size()} tokens, the model {n}: extra tokens ignored")
            break
        piece = sp.IdToPiece(tid)
        ttype = TokenType.NORMAL
        if sp.IsUnknown(tid):
            ttype = TokenType.UNKNOWN
        elif sp.IsControl(tid):
            ttype = TokenType.CONTROL
        elif sp.IsUnused(tid):
            ttype = TokenType.UNUSED
        elif sp.IsByte(tid):
            ttype = TokenType.BYTE
        tokens[tid] = piece.encode("utf-8")
        scores[tid] = sp.GetScore(tid)
        toktypes[tid] = int(ttype)
    if hf_dir is not None:
        added = hf_dir / "added_tokens.json"
        if added.is_file():
            for key, tid in json.loads(added.read_text(encoding="utf-8")).items():
                tid = int(tid)
                if tid >= n:
                    ck.warnings.append(f"ignoring added token {key!r} id {tid} >= vocab size {n}")
                    continue
                tokens[tid] = key.encode("utf-8")
                scores[tid] = -1000.0
                toktypes[tid] = int(TokenType.USER_DEFINED)
        cfg = hf_dir / "tokenizer_config.json"
        if cfg.is_file():
            decoder = json.loads(cfg.read_text(encoding="utf-8")).get("added_tokens_decoder", {}) or {}
            for sid, data in decoder.items():
                tid = int(sid)
                if tid >= n:
                    continue
                token = data["content"].encode("utf-8")
                if data.get("special") or _does_token_look_special(token):
                    toktypes[tid] = int(TokenType.CONTROL)
                else:
                    token = token.replace(b"\xe2\x96\x81", b" ")
                    toktypes[tid] = int(TokenType.USER_DEFINED)
                scores[tid] = -1000.0
                tokens[tid] = token
    _set_token_arrays(ck, "llama", "default", tokens, scores, toktypes)
    if hf_dir is not None:
        _add_special_vocab(ck, hf_dir, len(tokens), load_merges=False)
    else:
        _llama_default_special(ck, sp.bos_id(), sp.eos_id(), sp.unk_id())


def _llama_default_special(ck: Checkpoint, bos: int, eos: int, unk: int) -> None:
    U32 = GGUFValueType.UINT32
    if bos >= 0:
        ck.add("tokenizer.ggml.bos_token_id", bos, U32)
    if eos >= 0:
        ck.add("tokenizer.ggml.eos_token_id", eos, U32)
    if unk >= 0:
        ck.add("tokenizer.ggml.unknown_token_id", unk, U32)
    ck.add("tokenizer.ggml.add_bos_token", True, GGUFValueType.BOOL)
    ck.add("tokenizer.ggml.add_eos_token", False, GGUFValueType.BOOL)


# Pre-tokenizer regexes of well-known byte-level BPE tokenizers -> llama.cpp's pre names.
_LLAMA3_RE = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_QWEN2_RE = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)


def _flatten_pretok(p) -> list:
    if not p:
        return []
    if p.get("type") == "Sequence":
        out = []
        for q in p.get("pretokenizers", []):
            out.extend(_flatten_pretok(q))
        return out
    return [p]


def detect_bpe_pre(tok: dict) -> Optional[str]:
    """llama.cpp's tokenizer.ggml.pre name for a tokenizer.json, from its pre-tokenizer, or None."""
    parts = _flatten_pretok(tok.get("pre_tokenizer") or {})
    kinds = [p.get("type") for p in parts]
    regexes = [((p.get("pattern") or {}).get("Regex")) for p in parts if p.get("type") == "Split"]
    if kinds == ["ByteLevel"]:
        return "gpt-2" if parts[0].get("use_regex", True) else None
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    if regexes and regexes[0] == _LLAMA3_RE:
        return "llama-bpe"
    if regexes and regexes[0] == _QWEN2_RE:
        return "qwen2"
    return None


def bpe_vocab(ck: Checkpoint, hf_dir: Path, vocab_size: Optional[int]) -> None:
    path = hf_dir / "tokenizer.json"
    try:
        tok = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConversionError(f"{path}: cannot read tokenizer.json: {e}") from e
    model = tok.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ConversionError(f"{path}: only BPE tokenizer.json files are supported (got {model.get('type')!r})")
    kinds = [p.get("type") for p in _flatten_pretok(tok.get("pre_tokenizer") or {})]
    if "ByteLevel" not in kinds and (tok.get("decoder") or {}).get("type") != "ByteLevel":
        raise ConversionError(
            f"{path}: a sentencepiece-style BPE tokenizer.json needs its tokenizer.model next to it"
        )
    vocab = dict(model["vocab"])
    added = {}
    for a in tok.get("added_tokens", []) or []:
        vocab[a["content"]] = int(a["id"])
        added[int(a["id"])] = a
    n = vocab_size if vocab_size is not None else max(vocab.values()) + 1
    if max(vocab.values()) >= n:
        raise ConversionError(f"{path}: token id {max(vocab.values())} >= the model's vocab_size {n}")
    reverse = {i: t for t, i in vocab.items()}
    tokens, toktypes = [], []
    for i in range(n):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            toktypes.append(int(TokenType.UNUSED))
            continue
        t = reverse[i]
        if i in added:
            if added[i].get("special") or _does_token_look_special(t):
                toktypes.append(int(TokenType.CONTROL))
            else:
                t = t.replace("\u2581", " ")
                toktypes.append(int(TokenType.USER_DEFINED))
        else:
            toktypes.append(int(TokenType.NORMAL))
        tokens.append(t)
    pre = detect_bpe_pre(tok)
    if pre is None:
        ck.warnings.append(f"{path}: unrecognised pre-tokenizer; writing tokenizer.ggml.pre = 'default'")
        pre = "default"
    _set_token_arrays(ck, "gpt2", pre, tokens, None, toktypes)
    _add_special_vocab(ck, hf_dir, len(tokens), load_merges=True)


def llama2c_vocab(ck: Checkpoint, path: Path, vocab_size: int) -> None:
    """llama2.c tokenizer.bin: int32 max_token_length, then per token: float32 score, int32 length,
    bytes (spaces instead of U+2581, BOS/EOS as '\\n<s>\\n' / '\\n</s>\\n')."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConversionError(f"{path}: cannot read tokenizer: {e}") from e
    off = 4
    tokens, scores, toktypes = [], [], []
    for tid in range(vocab_size):
        if off + 8 > len(data):
            raise ConversionError(f"{path}: the tokenizer has {tid} tokens but the model's vocabulary has {vocab_size} "
                                  "(a tokenizer for another model, or a truncated file)")
        score, length = struct.unpack_from("<fi", data, off)
        off += 8
        if length < 0 or off + length > len(data):
            raise ConversionError(f"{path}: truncated or corrupt llama2.c tokenizer at token {tid}")
        text = data[off : off + length]
        off += length
        ttype = TokenType.NORMAL
        if tid == 0:
            text, ttype = b"<unk>", TokenType.UNKNOWN
        elif tid == 1:
            text, ttype = b"<s>", TokenType.CONTROL
        elif tid == 2:
            text, ttype = b"</s>", TokenType.CONTROL
        elif not text:
            ttype = TokenType.CONTROL
        elif len(text) == 6 and text.startswith(b"<0x") and text.endswith(b">"):
            ttype = TokenType.BYTE
        tokens.append(text.replace(b" ", b"\xe2\x96\x81"))
        scores.append(score)
        toktypes.append(int(ttype))
    if off != len(data):  # more tokens than the model has rows: the tokenizer of another model
        extra = 0
        while off + 8 <= len(data):
            _, length = struct.unpack_from("<fi", data, off)
            off += 8 + max(length, 0)
            extra += 1
        raise ConversionError(f"{path}: the tokenizer has {vocab_size + extra} tokens but the model's vocabulary has "
                              f"{vocab_size}: it belongs to another model")
    _set_token_arrays(ck, "llama", "default", tokens, scores, toktypes)
    _llama_default_special(ck, 1, 2, 0)


def add_kv_list(ck: Checkpoint, kvs: List[KV]) -> None:
    for kv in kvs:
        ck.add(kv.key, kv.value, kv.vtype, kv.sub_type)
