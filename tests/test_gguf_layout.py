"""The GGUF reader's tensor data layout rule (llama.cpp's gguf.cpp): in the order of the tensor infos,
each tensor's data starts exactly where the previous tensor's data ends, padded to general.alignment.

Files written by real writers must keep loading (checked against gguf-py's own reader), and a file
whose declared type or shape does not match its stored bytes must fail with an error naming the file
and the tensors. The malformed cases themselves live in crafted_files.py (parse_cases, layout_cases)."""

from __future__ import annotations

import os
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


# --- cross-check with llama.cpp's own parser (gguf_init_from_file in libggml-base), where it is built ---

LIBGGML_BASE = Path(os.environ.get("EDGELLAMA_LLAMACPP_BIN", "/work/llamacpp/build-native/bin")) / "libggml-base.so"
# the layout cases of crafted_files.py; llama.cpp's parser rejects each of them too. (A tensor running
# past the end, "last_tensor_past_end", passes gguf_init_from_file with no_alloc and is rejected later
# by llama-model-loader's bounds check: we reject it while parsing.)
LAYOUT_CASES = ["data_gap", "data_gap_unpadded_size", "first_tensor_not_at_0", "data_out_of_info_order",
                "data_second_out_of_order", "data_overlap", "data_same_offset", "offset_misaligned",
                "attn_q_type_f32_to_f16", "attn_q_shape_grown", "tensor_infos_swapped",
                "token_embd_type_f32_to_q4_0", "token_embd_type_f32_to_q8_0"]


@pytest.mark.skipif(not LIBGGML_BASE.is_file(), reason=f"{LIBGGML_BASE} not built (llama.cpp cross-check only)")
def test_layout_rule_agrees_with_llama_cpp(tmp_path):
    import ctypes

    class InitParams(ctypes.Structure):
        _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]

    lib = ctypes.CDLL(str(LIBGGML_BASE))
    lib.gguf_init_from_file.restype = ctypes.c_void_p
    lib.gguf_init_from_file.argtypes = [ctypes.c_char_p, InitParams]
    lib.gguf_free.argtypes = [ctypes.c_void_p]

    def llama_cpp_loads(path) -> bool:
        h = lib.gguf_init_from_file(str(path).encode(), InitParams(True, None))
        if h:
            lib.gguf_free(h)
        return bool(h)

    def we_load(path) -> bool:
        try:
            GGUFFile(str(path))
            return True
        except ValueError:
            return False

    cases = {c.name: c for c in cf.all_cases(str(tmp_path))}
    for name in LAYOUT_CASES:
        path = cf.write_case(cases[name], str(tmp_path))
        assert (llama_cpp_loads(path), we_load(path)) == (False, False), name
    for alignment in (1, 64):
        path = tmp_path / f"a{alignment}.gguf"
        _write(path, alignment)
        with open(path, "ab") as f:
            f.write(b"\x5a" * 100)  # trailing bytes: both accept
        assert (llama_cpp_loads(path), we_load(path)) == (True, True), alignment
