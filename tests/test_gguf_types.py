"""convert/gguf_types.py (the quantize path's GGUF type ids, without importing gguf-py) must say
what gguf-py and the C++ type table say."""

import gguf

from edgellama import _core
from edgellama.convert import gguf_types as ours


# gguf-py versions differ in which types they know (pyproject allows gguf>=0.10; 0.19 knows NVFP4 and Q1_0):
# every name both know must mean the same, and most of ours must be known to the installed gguf-py
# (the C++ table, below, says which types we must have).
def _same_where_both_know(mine: dict, theirs: dict, what: str) -> None:
    common = set(mine) & set(theirs)
    assert len(common) >= 0.8 * len(mine), what
    assert {k: mine[k] for k in common} == {k: theirs[k] for k in common}, what


def test_enums_equal_gguf_py():
    for mine, theirs in [
        (ours.GGMLQuantizationType, gguf.GGMLQuantizationType),
        (ours.LlamaFileType, gguf.LlamaFileType),
        (ours.GGUFValueType, gguf.GGUFValueType),
    ]:
        _same_where_both_know({m.name: m.value for m in mine}, {m.name: m.value for m in theirs}, mine.__name__)


def test_block_sizes_equal_gguf_py():
    _same_where_both_know({t.name: v for t, v in ours.GGML_QUANT_SIZES.items()},
                          {t.name: v for t, v in gguf.GGML_QUANT_SIZES.items()}, "GGML_QUANT_SIZES")
    assert set(ours.GGML_QUANT_SIZES) == set(ours.GGMLQuantizationType)


def test_file_constants_equal_gguf_py():
    assert (ours.GGUF_MAGIC, ours.GGUF_VERSION, ours.GGUF_DEFAULT_ALIGNMENT) == (
        gguf.GGUF_MAGIC, gguf.GGUF_VERSION, gguf.GGUF_DEFAULT_ALIGNMENT)


def test_every_type_of_the_cpp_table_is_here_with_its_sizes():
    table = _core.type_table()
    assert len(table) > 20
    for row in table:
        t = ours.GGMLQuantizationType[row["name"]]
        assert t.value == row["id"], row["name"]
        if t == ours.GGMLQuantizationType.Q8_1:
            # gguf-py says 40 bytes (two float32 scales); ggml's block_q8_1 (the C++ table's) has two
            # float16: 36. Only an activation format: no file tensor is Q8_1, and we never write one.
            assert ours.GGML_QUANT_SIZES[t] == (32, 40) and (row["block_size"], row["type_size"]) == (32, 36)
            continue
        assert ours.GGML_QUANT_SIZES[t] == (row["block_size"], row["type_size"]), row["name"]
