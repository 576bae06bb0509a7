"""Malformed GGUF files (tests/crafted_files.py) through every public entry point: each must raise a
Python exception (a ValueError subclass or OSError) whose message names the file and the problem.
Never a crash, a hang, a MemoryError or an exception type that says "bug" (IndexError, RuntimeError,
UnicodeDecodeError...)."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgellama
from edgellama import _core

import crafted_files as cf

CASES = cf.all_cases()
HAS_LLAMA = hasattr(edgellama, "Llama")
needs_llama = pytest.mark.skipif(not HAS_LLAMA, reason="edgellama.Llama (model loading) is not in this build yet")

# crafted cases that expose a bug not fixed yet: xfail(strict) so fixing one shows up
KNOWN_BUGS: dict = {
}

ERRORS = {"GGUFError": edgellama.GGUFError, "UnsupportedError": edgellama.UnsupportedError, "OSError": OSError,
          "ValueError": ValueError}


def _params(level=None, bugs=None):
    bugs = KNOWN_BUGS if bugs is None else bugs
    out = []
    for c in CASES:
        if level is not None and c.level != level:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=bugs[c.name])] if c.name in bugs else []
        out.append(pytest.param(c, id=c.name, marks=marks))
    return out


def _write(tmp_path: Path, c: cf.Case) -> Path:
    p = tmp_path / f"{c.name}.gguf"
    p.write_bytes(c.data)
    return p


def _check_error(excinfo, c: cf.Case, path: Path):
    e = excinfo.value
    assert isinstance(e, ERRORS[c.error]), f"{type(e).__name__}: {e}"
    msg = str(e)
    assert str(path) in msg, f"the message does not name the file: {msg}"
    assert re.search(c.match, msg), f"message {msg!r} does not match {c.match!r}"


def _list_everything(f: edgellama.GGUFFile):
    """What a user of GGUFFile reads: every value and every tensor row."""
    md = f.metadata
    for k, v in md.items():
        assert isinstance(k, str)
    assert isinstance(f.metadata_types, dict)
    return md, f.tensors


# ---------------------------------------------------------------------------------------------
# the valid bases are valid (gguf-py agrees) and run
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(cf.valid_bases()))
def test_valid_bases(tmp_path, name):
    import gguf

    data = cf.valid_bases()[name].build()
    p = tmp_path / f"{name}.gguf"
    p.write_bytes(data)
    r = gguf.GGUFReader(str(p))
    f = edgellama.GGUFFile(p)
    md, tensors = _list_everything(f)
    assert len(md) == len(r.fields) - 3  # gguf-py adds GGUF.version / tensor_count / kv_count
    assert [t.name for t in tensors] == [t.name for t in r.tensors]
    assert [t.offset for t in tensors] == [int(t.data_offset) for t in r.tensors]
    if name.startswith(("model", "vocab")):
        if not HAS_LLAMA:
            pytest.skip("edgellama.Llama is not in this build yet")
        llm = edgellama.Llama(str(p), vocab_only=name.startswith("vocab"), n_ctx=16, n_threads=1)
        ids = llm.tokenize(b"hello abc")
        assert ids and all(0 <= i < len(cf.valid_bases()[name].get("tokenizer.ggml.tokens")[1]) for i in ids)
        if name.startswith("model"):
            logits = llm.eval(ids)
            assert logits.shape == (len(ids), llm.n_vocab()) and np.all(np.isfinite(logits))
            assert len(llm.detokenize(ids)) > 0


# ---------------------------------------------------------------------------------------------
# GGUF-level: the reader rejects the file
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", _params("gguf"))
def test_gguf_level(tmp_path, case):
    p = _write(tmp_path, case)
    with pytest.raises(ValueError) as ei:
        edgellama.GGUFFile(p)
    _check_error(ei, case, p)
    # the in-memory parser (the fuzzers' entry point) says the same
    with pytest.raises(ValueError) as ei2:
        _core.GGUFFile.from_bytes(case.data, str(p))
    if case.data:  # (open() says "empty" where from_bytes says "too small")
        assert str(ei2.value) == str(ei.value)


@needs_llama
@pytest.mark.parametrize("case", _params("gguf"))
def test_gguf_level_through_llama(tmp_path, case):
    p = _write(tmp_path, case)
    for vocab_only in (True, False):
        with pytest.raises(ValueError) as ei:
            edgellama.Llama(str(p), vocab_only=vocab_only, n_ctx=16, n_threads=1)
        _check_error(ei, case, p)


# ---------------------------------------------------------------------------------------------
# model-level: a valid GGUF whose hyper-parameters / tensors are inconsistent
# ---------------------------------------------------------------------------------------------

@needs_llama
@pytest.mark.parametrize("case", _params("model"))
def test_model_level(tmp_path, case):
    p = _write(tmp_path, case)
    _list_everything(edgellama.GGUFFile(p))
    with pytest.raises(ValueError) as ei:
        edgellama.Llama(str(p), n_ctx=16, n_threads=1)
    _check_error(ei, case, p)


@needs_llama
@pytest.mark.parametrize("case", _params("vocab"))
def test_vocab_level(tmp_path, case):
    p = _write(tmp_path, case)
    _list_everything(edgellama.GGUFFile(p))
    for vocab_only in (True, False):
        with pytest.raises(ValueError) as ei:
            edgellama.Llama(str(p), vocab_only=vocab_only, n_ctx=16, n_threads=1)
        _check_error(ei, case, p)


@pytest.mark.parametrize("case", _params("ok"))
def test_odd_but_valid(tmp_path, case):
    p = _write(tmp_path, case)
    _list_everything(edgellama.GGUFFile(p))
    if case.name.startswith("model_") and HAS_LLAMA:
        llm = edgellama.Llama(str(p), n_ctx=16, n_threads=1)
        ids = llm.tokenize(b"ab abc")
        assert llm.eval(ids).shape == (len(ids), llm.n_vocab())
        try:  # garbage weights: a token, or a clear ValueError from the sampler
            out = llm("ab", max_tokens=2, temperature=0)
            assert isinstance(out["choices"][0]["text"], str)
        except ValueError as e:
            assert "NaN" in str(e), e


def test_utf8_names_round_trip(tmp_path):
    c = next(c for c in CASES if c.name == "utf8_key_and_tensor_name")
    f = edgellama.GGUFFile(_write(tmp_path, c))
    assert f.metadata["t\u00ebst.\u043a\u043b\u044e\u0447.\U0001F600"] == 1
    assert f.tensors[-1].name == "\u4e16\u754c.weight"


def test_non_utf8_string_values_are_replaced(tmp_path):
    c = next(c for c in CASES if c.name == "string_values_not_utf8")
    md = edgellama.GGUFFile(_write(tmp_path, c)).metadata
    assert md["test.latin1"] == "caf\ufffd"
    assert md["test.arr.latin1"] == ["\ufffd\ufffd", "ok"]


# ---------------------------------------------------------------------------------------------
# `edgellama info` on every crafted file: an error line, never a traceback or "this is a bug"
# ---------------------------------------------------------------------------------------------

@needs_llama
@pytest.mark.parametrize("case", _params(bugs={k: v for k, v in KNOWN_BUGS.items() if k != "row_bytes_overflow"}))
def test_info_command(tmp_path, case):
    from edgellama import cli

    p = _write(tmp_path, case)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["info", str(p)])
        rc_json = cli.main(["info", "--json", "--metadata", str(p)])
    assert rc_json == rc
    err_s = err.getvalue()
    assert "this is a bug" not in err_s and "Traceback" not in err_s, err_s
    if case.level == "gguf":
        assert rc == 1 and "error:" in err_s and str(p) in err_s, (rc, err_s)
    elif case.level == "ok":
        assert rc == 0, err_s


# ---------------------------------------------------------------------------------------------
# truncation at every position, tiny / odd paths
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("base", ["metadata", "model_llama_spm"])
def test_truncated_at_every_position(tmp_path, base):
    """The last byte of each base is tensor data, so every proper prefix is malformed."""
    data = cf.valid_bases()[base].build()
    p = tmp_path / "cut.gguf"
    seen = set()
    for n, prefix in cf.truncations(data):
        p.write_bytes(prefix)
        with pytest.raises(edgellama.GGUFError) as ei:
            edgellama.GGUFFile(p)
        msg = str(ei.value)
        assert str(p) in msg, (n, msg)
        assert re.search(r"truncated|empty|too small|past the end", msg), (n, msg)
        seen.add(re.sub(r"\d+", "N", msg))
    assert len(seen) > 5  # the cuts land in different fields
    p.write_bytes(data)
    edgellama.GGUFFile(p)


def test_truncated_model_through_llama(tmp_path):
    if not HAS_LLAMA:
        pytest.skip("edgellama.Llama is not in this build yet")
    data = cf.valid_bases()["model_llama_spm"].build()
    p = tmp_path / "cut.gguf"
    for n in range(0, len(data), 37):
        p.write_bytes(data[:n])
        for vocab_only in (True, False):
            with pytest.raises(edgellama.GGUFError):
                edgellama.Llama(str(p), vocab_only=vocab_only, n_ctx=16, n_threads=1)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    with pytest.raises(edgellama.GGUFError, match="empty"):
        edgellama.GGUFFile(p)


def test_directory(tmp_path):
    with pytest.raises(OSError, match="not a regular file"):
        edgellama.GGUFFile(tmp_path)
    if HAS_LLAMA:
        with pytest.raises(OSError, match="not a regular file"):
            edgellama.Llama(str(tmp_path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        edgellama.GGUFFile(tmp_path / "nope.gguf")


def test_character_device():
    with pytest.raises(OSError, match="not a regular file"):
        edgellama.GGUFFile("/dev/null")


def test_fifo_does_not_hang(tmp_path):
    """open() of a FIFO blocks until a writer appears: the reader must not wait for one."""
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    code = ("import edgellama, sys\n"
            "try:\n    edgellama.GGUFFile(sys.argv[1])\n"
            "except OSError as e:\n    print('OSError', e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        r = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("GGUFFile(fifo) hangs")
    assert "OSError" in r.stdout and "not a regular file" in r.stdout, r.stdout + r.stderr


def test_huge_sparse_file_counts(tmp_path):
    """A sparse 64 GiB file whose header claims ~5e9 metadata entries (or tensors): the counts fit in
    the file, so only the entries themselves can be wrong; reserving memory for all of them up front
    threw std::bad_alloc (MemoryError)."""
    import struct

    size = 1 << 36
    for field, header in [("kv", struct.pack("<IQQ", 3, 0, (size - 24) // 13)),
                          ("tensors", struct.pack("<IQQ", 3, (size - 24) // 32, 0))]:
        p = tmp_path / f"sparse_{field}.gguf"
        with open(p, "wb") as f:
            f.write(b"GGUF" + header)
            try:
                f.truncate(size)
            except OSError:
                pytest.skip("the file system does not do sparse files")
        with pytest.raises(edgellama.GGUFError, match="empty (key|name)"):
            edgellama.GGUFFile(p)


def test_nested_array_count_limit(tmp_path):
    """2^20 + 1 empty arrays inside an array: 12 MB of file would be ~100 MB of GGUFValues."""
    import struct

    n = (1 << 20) + 1
    kv = cf.gstr("test.nest") + cf.u32(cf.ARR) + cf.u32(cf.ARR) + cf.u64(n) + (cf.u32(cf.U8) + cf.u64(0)) * n
    p = tmp_path / "nest.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv)
    with pytest.raises(edgellama.GGUFError, match="more than 1048576 nested arrays"):
        edgellama.GGUFFile(p)


@needs_llama
@pytest.mark.xfail(strict=True, reason="BUG (generation/sampling, not the reader): when token_embd.weight has more rows "
                   "than the tokenizer has tokens (real models pad: Qwen2.5 151936 rows vs 151665 tokens), sampling "
                   "can pick an id the tokenizer lacks and the whole call dies with 'token id N is out of range'. "
                   "Logits past n_tokens should be masked to -inf before sampling.")
def test_generation_never_samples_ids_beyond_the_tokenizer(tmp_path):
    import struct

    g = cf.model_base()
    n_rows = 24  # the tokenizer has 17 tokens
    for name in ("token_embd.weight", "output.weight"):
        t = g.tensor(name)
        t.shape, t.data = (8, n_rows), None
    # every output row zero except the last, an id the tokenizer does not have: its logit wins
    for sign in (1.0, -1.0):
        g.tensor("output.weight").data = struct.pack(f"<{8 * n_rows}f", *([0.0] * 8 * (n_rows - 1) + [sign * 5.0] * 8))
        p = tmp_path / f"padded{sign}.gguf"
        p.write_bytes(g.build())
        llm = edgellama.Llama(str(p), n_ctx=32, n_threads=1)
        out = llm("ab", max_tokens=3, temperature=0)
        assert isinstance(out["choices"][0]["text"], str)


@needs_llama
@pytest.mark.parametrize("vocab", ["vocab_spm", "vocab_bpe", "smollm2"])
def test_tokenizer_arbitrary_bytes(tmp_path, vocab):
    """Random bytes and random ids (the fuzzer does this at scale; this runs without clang):
    tokenize gives ids in range or ValueError (invalid UTF-8); detokenize of any in-range ids works,
    out-of-range ids are a ValueError."""
    import random

    if vocab == "smollm2":
        p = cf.shared_model("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
        if p is None:
            pytest.skip("shared model SmolLM2 not found")
    else:
        p = tmp_path / f"{vocab}.gguf"
        p.write_bytes(cf.valid_bases()[vocab].build())
    llm = edgellama.Llama(str(p), vocab_only=True)
    n = llm.n_vocab()
    rng = random.Random(1234)
    alphabet = [b" ", b"a", b"b", b"c", b"\n", b"<s>", b"</s>", b"<|user|>", b"<|im_start|>", "\u00e9".encode(),
                "\u4e16".encode(), "\U0001F600".encode(), b"\xff", b"\xc3", b"\x00", b"\xe2\x96\x81", b"'s", b"12"]
    for _ in range(300):
        text = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for special in (False, True):
            try:
                ids = llm.tokenize(text, add_bos=special, special=special)
            except ValueError as e:
                assert "UTF-8" in str(e)
                continue
            assert all(0 <= i < n for i in ids)
            llm.detokenize(ids)
        ids = [rng.randrange(n) for _ in range(rng.randint(0, 20))]
        llm.detokenize(ids)
        with pytest.raises(ValueError):
            llm.detokenize(ids + [rng.choice([n, -1, 2**31 - 1])])
