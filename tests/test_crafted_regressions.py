"""Every file in tests/regressions/ (fuzzer findings and hand-made crash reproducers, kept small)
through every public entry point: GGUFFile, Llama, Llama(vocab_only=True), and the tokenizer of
those that load. Each must load or raise a ValueError / OSError; never crash."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgellama

REGRESSIONS = sorted(p for p in (Path(__file__).parent / "regressions").glob("*") if p.is_file() and p.name != "README.md")


def _load_all(path: Path):
    try:
        f = edgellama.GGUFFile(path)
        f.metadata, f.tensors
    except (ValueError, OSError):
        pass
    if not hasattr(edgellama, "Llama"):
        return
    for vocab_only in (True, False):
        try:
            llm = edgellama.Llama(str(path), vocab_only=vocab_only, n_ctx=8, n_threads=1)
        except (ValueError, OSError):
            continue
        for text in (b"", b"hello world", b"\xff\xfe", "h\u00e9llo <s></s>".encode()):
            try:
                ids = llm.tokenize(text)
            except ValueError:
                continue
            llm.detokenize(ids)
        if not vocab_only:
            llm.eval(llm.tokenize(b"a")[:4] or [0])


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_regression_file(path):
    _load_all(path)


def test_regressions_are_small():
    for p in REGRESSIONS:
        assert p.stat().st_size <= 64 * 1024, f"{p.name}: keep regression files small (minimize with -minimize_crash=1)"
