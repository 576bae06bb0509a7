"""edgellama.GGUFFile (the C++ reader) against gguf-py's GGUFReader: metadata values and types, tensor
listing (names, types, ggml-order shapes, absolute offsets, byte sizes), versions, alignment, and errors
for missing, empty, foreign, truncated and corrupt files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import gguf
from gguf import GGUFValueType as V

import edgellama

from model_factory import ALL_WEIGHT_TYPES, make_model, set_version
from reference_forward import shared_reader

VIRTUAL_FIELDS = ("GGUF.version", "GGUF.tensor_count", "GGUF.kv_count")


def reader_type_name(field) -> str:
    t = field.types[0].name.lower()
    if field.types[0] == V.ARRAY:
        t += "[" + field.types[1].name.lower() + "]"
    return t


def assert_same_as_gguf_py(path, nested=None, reader=None):
    """Every metadata key, value and type and every tensor row equal to gguf-py's reading of the file.
    ``nested``: {key: value} for arrays of arrays, which gguf-py's contents() flattens."""
    nested = nested or {}
    r = reader if reader is not None else gguf.GGUFReader(path)
    f = edgellama.GGUFFile(path)
    fields = {k: v for k, v in r.fields.items() if k not in VIRTUAL_FIELDS}
    assert list(f.metadata) == list(fields), "keys (in file order)"
    types = f.metadata_types
    for key, field in fields.items():
        want = nested[key] if key in nested else field.contents()
        got = f.metadata[key]
        assert type(got) is type(want) or (isinstance(got, (int, float)) and isinstance(want, (int, float))), key
        if isinstance(want, float):
            assert got == want or (np.isnan(got) and np.isnan(want)), key
        else:
            assert got == want, key
        assert types[key] == reader_type_name(field), key
    assert f.version == int(r.fields["GGUF.version"].contents())
    assert f.alignment == r.alignment
    assert len(f.tensors) == len(r.tensors)
    for ti, t in zip(f.tensors, r.tensors):
        assert ti.name == t.name
        assert ti.type == gguf.GGMLQuantizationType(int(t.tensor_type)).name
        assert ti.type_id == int(t.tensor_type)
        assert tuple(ti.shape) == tuple(int(x) for x in t.shape), t.name
        assert ti.offset == int(t.data_offset), t.name
        assert ti.nbytes == int(t.n_bytes), t.name
        assert ti.offset % f.alignment == 0
    return f, r


def test_smollm2_listing(smollm2_path):
    f, r = assert_same_as_gguf_py(smollm2_path, reader=shared_reader(smollm2_path))
    assert f.metadata["general.architecture"] == "llama"
    assert len(f.tensors) == 272
    assert len(f.metadata["tokenizer.ggml.tokens"]) == 49152


@pytest.mark.parametrize("wtype", ALL_WEIGHT_TYPES)
def test_factory_model_listing(tmp_path, wtype):
    path = make_model(tmp_path / "m.gguf", wtype=wtype, arch="qwen2", rope_freqs=True, rope_linear_factor=2.0, n_layer=1)
    assert_same_as_gguf_py(path)


def write_metadata_file(path, alignment=None, extra=None):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint8("t.u8", 255)
    w.add_int8("t.i8", -128)
    w.add_uint16("t.u16", 65535)
    w.add_int16("t.i16", -32768)
    w.add_uint32("t.u32", 2**32 - 1)
    w.add_int32("t.i32", -(2**31))
    w.add_uint64("t.u64", 2**64 - 1)
    w.add_int64("t.i64", -(2**63))
    w.add_float32("t.f32", 0.1)
    w.add_float64("t.f64", 1 / 3)
    w.add_float32("t.f32_inf", float("inf"))
    w.add_bool("t.true", True)
    w.add_bool("t.false", False)
    w.add_string("t.str", "h\u00e9llo \u2581 \U0001f600")
    w.add_string("t.empty_str", "")
    w.add_key_value("t.arr_i32", [1, -2, 3], V.ARRAY)
    w.add_key_value("t.arr_u8", [0, 255], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("t.arr_i64", [-(2**63), 2**63 - 1], V.ARRAY, sub_type=V.INT64)
    w.add_key_value("t.arr_f32", [0.5, -1.25], V.ARRAY)
    w.add_key_value("t.arr_f64", [1 / 3, -2.5], V.ARRAY, sub_type=V.FLOAT64)
    w.add_key_value("t.arr_bool", [True, False, True], V.ARRAY)
    w.add_key_value("t.arr_str", ["a", "", "\u00e9"], V.ARRAY)
    w.add_key_value("t.nested", [[1, 2, 3], [4, 5]], V.ARRAY)
    w.add_key_value("t.nested_str", [["a", "b"], ["c"]], V.ARRAY)
    w.add_key_value("t.nested3", [[[1.5], [2.5, 3.5]], [[4.5]]], V.ARRAY)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    if extra:
        extra(w)
    w.add_tensor("a", np.arange(10, dtype=np.float32))
    w.add_tensor("b", np.arange(6, dtype=np.float16).reshape(2, 3))
    w.add_tensor("c", gguf.quants.quantize(np.ones((3, 64), np.float32), gguf.GGMLQuantizationType.Q8_0),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


NESTED = {"t.nested": [[1, 2, 3], [4, 5]], "t.nested_str": [["a", "b"], ["c"]], "t.nested3": [[[1.5], [2.5, 3.5]], [[4.5]]]}


@pytest.mark.parametrize("alignment", [None, 64, 8, 256])
def test_all_metadata_types(tmp_path, alignment):
    path = write_metadata_file(tmp_path / "meta.gguf", alignment)
    f, _ = assert_same_as_gguf_py(path, NESTED)
    assert f.alignment == (alignment or 32)
    m = f.metadata
    assert m["t.u64"] == 2**64 - 1 and m["t.i64"] == -(2**63)
    assert m["t.true"] is True and m["t.false"] is False
    assert m["t.f32"] == float(np.float32(0.1)) and m["t.f64"] == 1 / 3
    assert m["t.str"] == "h\u00e9llo \u2581 \U0001f600"
    assert [t.shape for t in f.tensors] == [(10,), (3, 2), (64, 3)]


def test_u64_array_values_above_int64_max(tmp_path):
    """Arrays of uint64 hold values up to 2**64-1 (a plain uint64 scalar already does)."""
    path = write_metadata_file(
        tmp_path / "u64.gguf", extra=lambda w: w.add_key_value("t.arr_u64", [2**64 - 1, 0, 2**63], V.ARRAY, sub_type=V.UINT64)
    )
    f, _ = assert_same_as_gguf_py(path, NESTED)
    assert f.metadata["t.arr_u64"] == [2**64 - 1, 0, 2**63]


@pytest.mark.parametrize("version", [2, 3])
def test_versions(tmp_path, version):
    path = write_metadata_file(tmp_path / "v.gguf")
    set_version(path, version)
    f, _ = assert_same_as_gguf_py(path, NESTED)
    assert f.version == version


@pytest.mark.parametrize("version", [1, 4, 0xFFFF])
def test_unsupported_versions(tmp_path, version):
    path = write_metadata_file(tmp_path / "v.gguf")
    set_version(path, version)
    with pytest.raises(edgellama.GGUFError, match="version"):
        edgellama.GGUFFile(path)


def test_model_file_v2_loads(tmp_path):
    path = make_model(tmp_path / "m.gguf", wtype="Q4_0", n_layer=1)
    set_version(path, 2)
    assert_same_as_gguf_py(path)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    p = tmp_path / "nope.gguf"
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        edgellama.GGUFFile(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    with pytest.raises(edgellama.GGUFError, match="empty.gguf"):
        edgellama.GGUFFile(p)


@pytest.mark.parametrize("content", [b"hello world, this is not a gguf file at all" * 4, b"GGML" + bytes(100), b"FUGG" + bytes(100)])
def test_not_gguf(tmp_path, content):
    p = tmp_path / "foreign.bin"
    p.write_bytes(content)
    with pytest.raises(edgellama.GGUFError, match="foreign.bin"):
        edgellama.GGUFFile(p)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises((OSError, edgellama.GGUFError)):
        edgellama.GGUFFile(tmp_path)


def _data_start_and_end(path):
    """First byte of tensor data and the end of the last tensor's bytes (gguf-py pads the file after it)."""
    r = gguf.GGUFReader(path)
    return min(int(t.data_offset) for t in r.tensors), max(int(t.data_offset) + int(t.n_bytes) for t in r.tensors)


def test_truncated_everywhere(tmp_path):
    """Cut the file in the header, the metadata, the tensor infos, the padding and the tensor data."""
    src = write_metadata_file(tmp_path / "full.gguf", alignment=64)
    data = open(src, "rb").read()
    data_start, data_end = _data_start_and_end(src)
    cuts = sorted(set([1, 4, 7, 12, 20, 23, 30, 60, 200, data_start - 70, data_start - 1, data_start, data_start + 10, data_end - 1]))
    assert data_end <= len(data)
    # a file cut only inside the trailing padding is still complete
    p = tmp_path / "padding_cut.gguf"
    p.write_bytes(data[:data_end])
    edgellama.GGUFFile(p)
    for cut in cuts:
        if not 0 < cut < data_end:
            continue
        p = tmp_path / f"cut{cut}.gguf"
        p.write_bytes(data[:cut])
        with pytest.raises(edgellama.GGUFError, match=f"cut{cut}.gguf"):
            edgellama.GGUFFile(p)


def test_corrupt_counts_and_lengths(tmp_path):
    """Absurd tensor / kv counts and string lengths are format errors, not crashes or MemoryError."""
    src = write_metadata_file(tmp_path / "full.gguf")
    data = bytearray(open(src, "rb").read())
    cases = {
        "tensor_count": (8, struct.pack("<Q", 2**62)),
        "kv_count": (16, struct.pack("<Q", 2**62)),
        "key_len": (24, struct.pack("<Q", 2**63 + 5)),
        "key_len_past_eof": (24, struct.pack("<Q", len(data))),
    }
    for name, (off, patch) in cases.items():
        bad = bytearray(data)
        bad[off : off + len(patch)] = patch
        p = tmp_path / f"{name}.gguf"
        p.write_bytes(bytes(bad))
        with pytest.raises(edgellama.GGUFError):
            edgellama.GGUFFile(p)


def _tensor_info_offset(path, name):
    """Byte offset of a tensor's info record (its name length field) in the file."""
    r = gguf.GGUFReader(path)
    t = next(t for t in r.tensors if t.name == name)
    return int(t.field.offset)


def test_bad_tensor_infos(tmp_path):
    src = write_metadata_file(tmp_path / "full.gguf")
    data = bytes(open(src, "rb").read())
    off = _tensor_info_offset(src, "a")  # name "a": u64 len, 1 byte, u32 n_dims, i64 ne[0], u32 type, u64 offset
    p_ndims, p_ne0 = off + 9, off + 13
    p_type, p_offset = off + 21, off + 25
    assert struct.unpack_from("<I", data, p_ndims)[0] == 1 and struct.unpack_from("<q", data, p_ne0)[0] == 10
    cases = {
        "n_dims_zero_or_huge": (p_ndims, struct.pack("<I", 99)),
        "negative_dim": (p_ne0, struct.pack("<q", -10)),
        "huge_dim": (p_ne0, struct.pack("<q", 2**62)),
        "unknown_type": (p_type, struct.pack("<I", 200)),
        "misaligned_offset": (p_offset, struct.pack("<Q", 4)),
        "offset_past_eof": (p_offset, struct.pack("<Q", 2**40)),
    }
    for name, (pos, patch) in cases.items():
        bad = bytearray(data)
        bad[pos : pos + len(patch)] = patch
        p = tmp_path / f"{name}.gguf"
        p.write_bytes(bytes(bad))
        with pytest.raises(edgellama.GGUFError, match=f"{name}.gguf"):
            edgellama.GGUFFile(p)
