"""convert/gguf_types.py (the quantize path's GGUF type ids, without importing gguf-py) must say
what gguf-py and the C++ type table say."""

import gguf

from edgellama import _core
from edgellama.convert import gguf_types as ours


def test_enums_equal_gguf_py():
    for mine, theirs in [
        (ours.GGMLQuantizationType, gguf.GGMLQuantizationType),
        (ours.LlamaFileType, gguf.LlamaFileType),
        (ours.GGUFValueType, gguf.GGUFValueType),
    ]:
        assert {m.name: m.value for m in mine} == {m.name: m.value for m in theirs}, mine.__name__


def test_block_sizes_equal_gguf_py():
    assert {t.name: v for t, v in ours.GGML_QUANT_SIZES.items()} == {t.name: v for t, v in gguf.GGML_QUANT_SIZES.items()}
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
