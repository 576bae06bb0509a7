"""What `edgellama quantize` does around the quantizer (issue 17, quantizer speed): the GGUF metadata
arrays packed in bulk (convert/gguf_writer.py) must give gguf-py's bytes exactly, tensors quantized
two at a time must land in the file exactly as quantizing them one by one gives them, and the
command must not import the inference stack (edgellama/__init__.py loads Llama & co. on first use)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from gguf import GGUFValueType as V
from gguf import GGUFWriter

from conftest import subprocess_env
from edgellama import _core
from edgellama.convert import load_checkpoint, write_gguf
from edgellama.convert.gguf_writer import FastGGUFWriter
from model_factory import make_model

RNG = np.random.default_rng(5)

# (value, element type): every numeric element type at its range ends, floats that round, strings
# with multi-byte UTF-8, raw bytes (token pieces that are not UTF-8), NumPy arrays, one-element arrays
ARRAYS = [
    ([0, 1, 255, 7], V.UINT8),
    ([-128, 127, 0, -1], V.INT8),
    ([0, 65535, 12], V.UINT16),
    ([-32768, 32767, 5], V.INT16),
    ([0, 2**32 - 1, 49152], V.UINT32),
    ([-(2**31), 2**31 - 1, 3, 1, 6], V.INT32),
    ([0, 2**64 - 1, 2**53 + 1], V.UINT64),
    ([-(2**63), 2**63 - 1, -7], V.INT64),
    ([0.1, -2.5, 1e-45, 3.4e38, float("inf"), -0.0, 1e-30, 7], V.FLOAT32),
    ([0.1, -2.5, 1e-300, 1.7e308, float("-inf"), -0.0, 3], V.FLOAT64),
    ([True, False, True], V.BOOL),
    (RNG.standard_normal(1000).astype(np.float32).tolist(), V.FLOAT32),
    (RNG.integers(-(2**31), 2**31, 1000).tolist(), V.INT32),
    (np.arange(10, dtype=np.int32), V.INT32),
    (np.linspace(-1, 1, 9), V.FLOAT32),
    (["a", "héllo", "", "日本語", "\u0120the", "<|im_end|>"], V.STRING),
    ([b"\xff\xfe", b"", b"abc", "mixed str"], V.STRING),
    (["x"], V.STRING),
    (("a tuple", "of", "strings"), V.STRING),
    (np.array(["np.str_", "é"]), V.STRING),  # str subclasses
    ([bytearray(b"\x00ab"), "\u00ff"], V.STRING),
    ([42], V.UINT32),
]


def _packed(writer_cls, value, sub):
    w = writer_cls(None, "llama")
    return w._pack_val(value, V.ARRAY, add_vtype=True, sub_type=sub), w._pack_val(value, V.ARRAY, add_vtype=False, sub_type=sub)


def _reference(value, sub):
    # gguf-py's own packing takes Python sequences only
    return _packed(GGUFWriter, value.tolist() if isinstance(value, np.ndarray) else value, sub)


@pytest.mark.parametrize("value,sub", ARRAYS, ids=[f"{i}-{s.name}" for i, (_, s) in enumerate(ARRAYS)])
def test_bulk_array_packing_equals_gguf_py(value, sub):
    assert _packed(FastGGUFWriter, value, sub) == _reference(value, sub)


@pytest.mark.parametrize(
    "value,sub",
    [([1.5, 2], V.INT32), ([2**32], V.UINT32), ([-1], V.UINT8), ([1e39], V.FLOAT32), ([1, "a"], V.INT32), ([], V.INT32)],
    ids=["float-as-int", "uint32-overflow", "negative-unsigned", "float32-overflow", "mixed", "empty"],
)
def test_values_gguf_py_refuses_are_still_refused(value, sub):
    # the fast path hands these to gguf-py, which raises as it always did
    with pytest.raises(Exception) as fast:
        _packed(FastGGUFWriter, value, sub)
    with pytest.raises(Exception) as ref:
        _packed(GGUFWriter, value, sub)
    assert type(fast.value) is type(ref.value)


def _written_by_both_writers(tmp_path, kvs, tensors=(), data=None, file_type=None):
    """The bytes gguf-py's GGUFWriter and our FastGGUFWriter write for the same keys and tensors
    (name, element shape, type, nbytes; data by name), in that order."""
    files = []
    for cls in (GGUFWriter, FastGGUFWriter):
        path = tmp_path / f"{cls.__name__}.gguf"
        w = cls(path, "llama")
        for key, value, vtype, sub in kvs:
            w.add_key_value(key, value, vtype, sub)
        if file_type is not None:
            w.add_file_type(file_type)
            w.add_quantization_version(2)
        for name, shape, qt, nbytes in tensors:
            if cls is GGUFWriter:  # gguf-py takes quantized tensors as uint8 byte shapes
                block, size = __import__("gguf").GGML_QUANT_SIZES[qt]
                w.add_tensor_info(name, (*shape[:-1], shape[-1] // block * size), np.dtype(np.uint8), nbytes, raw_dtype=qt)
            else:
                w.add_tensor_info(name, shape, qt, nbytes)
        w.write_header_to_file(path)
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for name, *_ in tensors:
            w.write_tensor_data(data[name])
        w.close()
        files.append(path.read_bytes())
    return files


def test_written_metadata_equals_gguf_py_writer(tmp_path):
    # a whole KV section with a vocabulary-sized array of each kind, written by both writers
    tokens = [f"tok{i}\u00e9" for i in range(3000)] + [b"\x80raw"]
    kvs = [
        ("general.name", "m", V.STRING, None),
        ("llama.block_count", 3, V.UINT32, None),
        ("tokenizer.ggml.tokens", tokens, V.ARRAY, V.STRING),
        ("tokenizer.ggml.scores", RNG.standard_normal(len(tokens)).tolist(), V.ARRAY, V.FLOAT32),
        ("tokenizer.ggml.token_type", RNG.integers(1, 7, len(tokens)).tolist(), V.ARRAY, V.INT32),
        ("tokenizer.ggml.merges", [f"a{i} b{i}" for i in range(2000)], V.ARRAY, V.STRING),
    ]
    files = _written_by_both_writers(tmp_path, kvs)
    assert files[0] == files[1]
    assert len(files[0]) > 3000 * 8


def test_whole_file_equals_gguf_py_writer(tmp_path):
    # header, keys (general.architecture first; a key added twice keeps its first place), tensor
    # infos of 1-3 dims and several types, data padded to 32 bytes before and after each tensor
    # (sizes that are not multiples of 32, an empty-ish 1-element tensor)
    from gguf import GGMLQuantizationType as Q

    tensors = [
        ("a.weight", (3, 64), Q.Q8_0, 3 * 2 * 34),
        ("b.weight", (5,), Q.F32, 20),
        ("c.weight", (2, 3, 256), Q.Q6_K, 6 * 210),
        ("d.bias", (1,), Q.F16, 2),
        ("e.weight", (4, 32), Q.IQ4_NL, 4 * 18),
    ]
    kvs = [
        ("general.name", "m", V.STRING, None),
        ("llama.block_count", 3, V.UINT32, None),
        ("general.flag", True, V.BOOL, None),
        ("llama.rope.freq_base", 10000.5, V.FLOAT32, None),
        ("tokenizer.ggml.tokens", ["a", "b\u00e9", b"\xff"], V.ARRAY, V.STRING),
        ("general.name", "renamed", V.STRING, None),
    ]
    data = {name: RNG.integers(0, 256, nbytes, dtype=np.uint8) for name, _, _, nbytes in tensors}
    files = _written_by_both_writers(tmp_path, kvs, tensors, data, file_type=7)
    assert files[0] == files[1]
    assert len(files[0]) % 32 == 0 and len(files[0]) > sum(t[3] for t in tensors)


def test_writer_refuses_a_tensor_of_the_wrong_size_or_name(tmp_path):
    from edgellama.convert.gguf_types import GGMLQuantizationType as Q

    w = FastGGUFWriter(tmp_path / "o.gguf", "llama")
    w.add_tensor_info("a", (2, 32), Q.Q8_0, 68)
    with pytest.raises(ValueError, match="Duplicated tensor name 'a'"):
        w.add_tensor_info("a", (2, 32), Q.Q8_0, 68)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    with pytest.raises(ValueError, match="tensor a: 67 bytes given, 68 declared"):
        w.write_tensor_data(np.zeros(67, dtype=np.uint8))
    w.write_tensor_data(np.zeros(68, dtype=np.uint8))
    with pytest.raises(ValueError, match="more tensors written"):
        w.write_tensor_data(np.zeros(68, dtype=np.uint8))
    w.close()


def test_bad_metadata_still_raises_and_leaves_no_file(tmp_path):
    # the header and metadata are the writer thread's first job, packed while tensors are quantized:
    # a value gguf-py refuses must still fail the whole write with gguf-py's exception, leaving
    # neither the output nor a .partial file
    src = make_model(tmp_path / "m.gguf", n_layer=2, seed=4)
    ck = load_checkpoint(src)
    ck.add("general.bad_array", [1, 2**32], V.ARRAY, V.UINT32)  # beyond uint32
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(Exception) as fast:
        write_gguf(ck, out_dir / "o.gguf", "Q8_0", progress=False)
    with pytest.raises(Exception) as ref:
        GGUFWriter(None, "llama")._pack_val([1, 2**32], V.ARRAY, add_vtype=True, sub_type=V.UINT32)
    assert type(fast.value) is type(ref.value)
    assert list(out_dir.iterdir()) == []


def test_quantize_command_does_not_import_the_inference_stack(tmp_path):
    # a whole `edgellama quantize` run (with PYTHONDONTWRITEBYTECODE every module imported is also
    # compiled from source, each run): neither the model runtime nor the other commands are loaded
    src = make_model(tmp_path / "m.gguf", n_layer=1, seed=2)
    out = tmp_path / "o.gguf"
    code = (
        "import sys\n"
        "from edgellama import cli\n"
        f"rc = cli.main(['quantize', {str(src)!r}, {str(out)!r}, '--type', 'Q8_0', '-q'])\n"
        "heavy = [m for m in ('edgellama.llama', 'edgellama.generation', 'edgellama.llama_cache', 'edgellama.hub', "
        "'edgellama.constrained', 'jinja2', 'edgellama.bench', 'edgellama.commands.run', 'edgellama.commands.serve', "
        "'edgellama.convert.hf', 'edgellama.convert.llama2c', 'gguf', 'yaml') if m in sys.modules]\n"
        "print(rc, ','.join(heavy))\n"
        "from edgellama import Llama, LlamaGrammar, LlamaRAMCache\n"  # still importable from the package
        "import edgellama\n"
        "assert Llama.__module__ == 'edgellama.llama' and 'Llama' in dir(edgellama)\n"
        "assert set(edgellama.__all__) <= set(dir(edgellama))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "0", res.stdout
    assert out.stat().st_size > 0


def test_every_command_is_still_listed(capsys):
    from edgellama import cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listed = capsys.readouterr().out
    for name in ("run", "chat", "pull", "info", "bench", "imatrix", "perplexity", "quantize", "serve"):
        assert f"    {name}" in listed, name


def test_unknown_package_attribute_is_an_attribute_error():
    import edgellama

    with pytest.raises(AttributeError, match="NoSuchName"):
        edgellama.NoSuchName  # noqa: B018


@pytest.mark.parametrize("ftype,threads", [("Q8_0", 2), ("Q6_K", 1), ("Q4_K_M", 3)])
def test_concurrent_tensors_equal_one_by_one_quantization(tmp_path, ftype, threads):
    """write_gguf quantizes two tensors at a time and writes them in order from a queue: every tensor
    of the file must be what _core.quantize gives for that tensor alone (one thread), at its offset,
    and the importance must go to its own tensor."""
    import gguf

    src = make_model(tmp_path / "m.gguf", n_layer=3, n_embd=256, n_ff=512, n_vocab=300, seed=3)
    ck = load_checkpoint(src)
    rng = np.random.default_rng(1)
    importance = {t.name: rng.gamma(1.0, 1.0, t.shape[-1]).astype(np.float32) for t in ck.tensors if len(t.shape) == 2}
    out = write_gguf(ck, tmp_path / "o.gguf", ftype, importance=importance, threads=threads, progress=False)
    written = {t.name: t for t in gguf.GGUFReader(out).tensors}
    assert [t.name for t in gguf.GGUFReader(out).tensors] == [t.name for t in ck.tensors]
    n_quantized = 0
    for t in ck.tensors:
        w = written[t.name]
        qt = gguf.GGMLQuantizationType(w.tensor_type)
        data = np.ascontiguousarray(t.load(), dtype=np.float32).reshape(-1, t.shape[-1])
        quantized = qt not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
        want = _core.quantize(qt.name, data, importance=importance.get(t.name) if quantized else None, n_threads=1,
                              method="search" if qt.name.startswith("Q") else "auto")
        assert np.asarray(w.data).tobytes() == want.tobytes(), t.name
        n_quantized += quantized
    assert n_quantized >= 3 * 7


def test_quantize_into_a_given_buffer():
    # write_gguf reuses output buffers: out= must give the same bytes as a new array, for a buffer
    # holding stale bytes, and refuse a buffer that cannot hold exactly the result
    x = RNG.standard_normal((6, 64)).astype(np.float32)
    want = _core.quantize("Q8_0", x, method="search")
    buf = np.full(10_000, 0xA5, dtype=np.uint8)
    got = _core.quantize("Q8_0", x, method="search", out=buf[: want.nbytes])
    assert got.tobytes() == want.tobytes() == buf[: want.nbytes].tobytes()
    assert np.all(buf[want.nbytes :] == 0xA5)  # nothing written past the result
    bad = [
        (np.empty(want.nbytes + 1, np.uint8), "holds"),
        (np.empty(want.nbytes - 1, np.uint8), "holds"),
        (np.empty(want.nbytes // 4, np.float32), "uint8"),
        (np.empty(want.nbytes * 2, np.uint8)[::2], "C-contiguous"),
        (np.frombuffer(bytes(want.nbytes), np.uint8), "writable"),
        (bytearray(want.nbytes), "NumPy"),
    ]
    for out, msg in bad:
        with pytest.raises(ValueError, match=msg):
            _core.quantize("Q8_0", x, out=out)
