"""The GGUF reader's tensor data layout rule (llama.cpp's gguf.cpp): in the order of the tensor infos,
each tensor's data starts exactly where the previous tensor's data ends, padded to general.alignment.

Files written by real writers must keep loading (checked against gguf-py's own reader), and a file
whose declared type or shape does not match its stored bytes must fail with an error naming the file
and the tensors. The malformed cases themselves live in crafted_files.py (parse_cases, layout_cases)."""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from edgellama.gguf_file import GGUFFile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crafted_files as cf  # noqa: E402


def _write(path: Path, alignment: int) -> None:
    """Tensors of several types whose byte sizes are not multiples of the alignment, so padding
    between them is real."""
    w = gguf.GGUFWriter(str(path), "llama")
    if alignment != 32:
        w.add_custom_alignment(alignment)
    rng = np.random.default_rng(alignment)
    w.add_tensor("odd_f32", rng.standard_normal(3).astype(np.float32))
    w.add_tensor("f16", rng.standard_normal((3, 5)).astype(np.float16))
    q = gguf.quants.quantize(rng.standard_normal((3, 32)).astype(np.float32), gguf.GGMLQuantizationType.Q4_0)
    w.add_tensor("q4_0", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    q = gguf.quants.quantize(rng.standard_normal((1, 64)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q8_0", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("last_f32", rng.standard_normal(7).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _assert_same_layout_as_gguf_py(path: Path) -> int:
    ours = GGUFFile(str(path))
    ref = gguf.GGUFReader(str(path))
    assert [t.name for t in ours.tensors] == [t.name for t in ref.tensors]
    for a, b in zip(ours.tensors, ref.tensors):
        assert (a.offset, a.nbytes) == (int(b.data_offset), int(b.n_bytes)), a.name
    return len(ours.tensors)


@pytest.mark.parametrize("alignment", [1, 8, 32, 64])
def test_gguf_writer_files_load(tmp_path, alignment):
    path = tmp_path / f"a{alignment}.gguf"
    _write(path, alignment)
    assert _assert_same_layout_as_gguf_py(path) == 5


def test_smollm2_layout_matches_gguf_py(smollm2_path):
    assert _assert_same_layout_as_gguf_py(smollm2_path) == 272


def test_trailing_bytes_after_last_tensor_are_accepted(tmp_path):
    """llama.cpp ignores bytes after the last tensor (it checks offsets, not the file's end); so do we.
    The price: a shrunk type on the *last* tensor cannot be detected from the layout."""
    path = tmp_path / "t.gguf"
    _write(path, 32)
    with open(path, "ab") as f:
        f.write(b"\x5a" * 100)
    assert _assert_same_layout_as_gguf_py(path) == 5


def test_type_field_mutation_names_file_and_tensors(tmp_path):
    """The reported bug: token_embd.weight's type field changed from F32 to Q4_0 loaded and gave NaN
    logits. Now the model does not load; the message names the file, both tensors and the cause."""
    from edgellama import Llama

    base = cf.small_model_bytes(str(tmp_path), n_embd=32)
    good = tmp_path / "good.gguf"
    good.write_bytes(base)
    Llama(str(good), n_ctx=16, verbose=False)  # the unmutated base loads
    d = cf.Doc.parse(base)
    t = d.tensor("token_embd.weight")
    assert t.ttype == cf.T_F32
    t.ttype = cf.T_Q4_0
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(d.to_bytes())
    with pytest.raises(ValueError) as e:
        Llama(str(bad), n_ctx=16, verbose=False)
    msg = str(e.value)
    assert str(bad) in msg and "'token_embd.weight' (Q4_0 [32, 32]" in msg and "gap of" in msg, msg
    # The same bytes with the type field restored load again: the check is about the mismatch only.
    t.ttype = cf.T_F32
    bad.write_bytes(d.to_bytes())
    assert bad.read_bytes() == base
    GGUFFile(str(bad))
