"""The quantizer takes F16 and BF16 matrices as stored (cpp/quant/quantize.cpp quantize_matrix_from:
rows widened in the worker threads, no float32 copy): bytes identical to quantizing the float32
conversion, for every quantizable type and method, with importance, odd shapes and special values;
and `quantize` from an F16 / BF16 GGUF writes the same file as the float32 route."""

from __future__ import annotations

import os

import numpy as np
import pytest
from gguf import GGUFReader

from edgellama import _core

TYPES = [r["name"] for r in _core.type_table() if r["can_quantize"]]


def special_f16(rows, cols, seed):
    rng = np.random.default_rng(seed)
    h = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float16)
    h[1] = np.float16(6e-8)  # subnormal halves
    h[2, ::3] = np.float16(-0.0)
    h[3] = rng.uniform(-65504, 65504, cols).astype(np.float16)
    h[4, 7] = np.float16(np.inf)
    return h


@pytest.mark.parametrize("t", TYPES)
def test_f16_and_bf16_sources_match_float32(t):
    cols = 512
    h = special_f16(13, cols, seed=len(t))
    rng = np.random.default_rng(1)
    bf = (rng.standard_normal((13, cols)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    bf[5] = 0x8000  # -0.0
    bf[6, 3] = 0x7F80  # inf
    bf_f32 = (bf.astype(np.uint32) << 16).view(np.float32)
    imp = rng.gamma(1.0, 1.0, cols).astype(np.float32)
    methods = ["auto", "search"] + (["reference"] if t in ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0") else [])
    for m in methods:
        for w in (None, imp) if m != "reference" else (None,):
            want = _core.quantize(t, h.astype(np.float32), importance=w, method=m, n_threads=1)
            assert np.array_equal(_core.quantize(t, h, importance=w, method=m, n_threads=3), want), (t, m)
            want = _core.quantize(t, bf_f32, importance=w, method=m, n_threads=1)
            assert np.array_equal(_core.quantize(t, bf, importance=w, method=m, source="bf16", n_threads=3), want), (t, m)


def test_strided_and_one_row_f16():
    h = special_f16(8, 1024, seed=3)
    for x in (h[:, ::2], h[::2], h[0]):
        assert np.array_equal(_core.quantize("Q4_0", x), _core.quantize("Q4_0", x.astype(np.float32)))


def test_source_argument_errors():
    with pytest.raises(ValueError, match="source='bf16' takes the bfloat16 bits as a uint16 array"):
        _core.quantize("Q8_0", np.zeros((1, 32), np.float32), source="bf16")
    with pytest.raises(ValueError, match="source must be 'auto' or 'bf16'"):
        _core.quantize("Q8_0", np.zeros((1, 32), np.float16), source="f16")
    with pytest.raises(ValueError, match="row length 33"):
        _core.quantize("Q8_0", np.zeros((1, 33), np.float16))
    # lists and other dtypes still convert to float32
    assert np.array_equal(_core.quantize("Q8_0", [[0.5] * 32]), _core.quantize("Q8_0", np.full((1, 32), 0.5, np.float32)))
    assert np.array_equal(_core.quantize("Q8_0", np.full((1, 32), 0.5)), _core.quantize("Q8_0", np.full((1, 32), 0.5, np.float32)))


@pytest.mark.parametrize("wtype", ["F16", "BF16"])
def test_quantize_from_f16_gguf_writes_the_float32_route_file(tmp_path, wtype):
    from model_factory import make_model

    from edgellama.convert import load_checkpoint, write_gguf

    src = tmp_path / f"m-{wtype}.gguf"
    make_model(src, wtype=wtype, n_embd=256, n_ff=512, n_vocab=96, n_layer=1)
    for t in ("Q4_0", "Q4_K_M", "F16"):
        ck = load_checkpoint(src)
        assert any(x.load_stored is not None for x in ck.tensors)
        a = write_gguf(ck, tmp_path / f"a-{t}.gguf", t, progress=False)
        for x in ck.tensors:
            x.load_stored = None  # the float32 route: t.load(), NumPy conversion
        b = write_gguf(ck, tmp_path / f"b-{t}.gguf", t, progress=False)
        assert a.read_bytes() == b.read_bytes(), t
    assert wtype in {x.tensor_type.name for x in GGUFReader(src).tensors}


def test_avx_search_is_bit_identical_to_sse2(tmp_path):
    """The AVX code of the quantizer (cpp/quant/quantize.cpp, picked at start-up: the searches'
    passes, Q4_0 / Q8_0 reference rounding) produces the same bytes as the baseline code (forced
    with EDGELLAMA_QUANT_NO_AVX=1 in a child process): every searched type, with and without
    importance, and the two references, on odd values (NaN, inf, huge, subnormal, ties)."""
    import subprocess
    import sys

    from conftest import subprocess_env

    if "avx2" not in _core.available_isas():
        pytest.skip("this CPU has no AVX2: only the SSE2 search runs here")
    script = tmp_path / "q.py"
    script.write_text(
        "import sys, numpy as np\n"
        "from edgellama import _core\n"
        "rng = np.random.default_rng(0)\n"
        "x = (rng.standard_normal((24, 512)) * 0.02).astype(np.float32)\n"
        "x[1] *= 1e30; x[2] *= 1e-30; x[3] = np.round(x[3] * 400) / 4; x[4, ::5] = 0; x[5] = np.abs(x[5])\n"
        "x[6, 3] = np.nan; x[7, 9] = np.inf\n"
        "imp = rng.gamma(1.0, 1.0, 512).astype(np.float32)\n"
        "types = ['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'IQ4_NL', 'IQ4_XS']\n"
        "out = {f'{t}{k}': _core.quantize(t, x, importance=w, method='search', n_threads=1)\n"
        "       for t in types for k, w in (('', None), ('_imp', imp))}\n"
        "x[8] *= 1e-39; x[9] = 65519.0; x[10] = np.round(x[10] * 400) / 8\n"
        "out.update({f'{t}_ref': _core.quantize(t, x, method='reference', n_threads=1) for t in ('Q4_0', 'Q8_0')})\n"
        "np.savez(sys.argv[1], **out)\n"
    )
    runs = {}
    for name, extra in (("avx", {}), ("sse", {"EDGELLAMA_QUANT_NO_AVX": "1"})):
        runs[name] = tmp_path / f"{name}.npz"
        r = subprocess.run([sys.executable, str(script), str(runs[name])], env=subprocess_env(**extra),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    a, b = np.load(runs["avx"]), np.load(runs["sse"])
    assert sorted(a.files) == sorted(b.files) and len(a.files) == 26
    differ = [k for k in a.files if not np.array_equal(a[k], b[k])]
    assert not differ, differ


def test_gguf_input_metadata_round_trips_exactly(tmp_path):
    """The GGUF input is read by the C++ reader; keys it cannot hand over exactly (strings that are
    not UTF-8, nested arrays) come from gguf-py. Every key of the input reaches the output with the
    same type and the same bytes."""
    from model_factory import make_model

    from edgellama.convert import load_checkpoint, write_gguf
    from gguf import GGUFValueType

    def extra(w):
        w.add_array("test.raw_strings", [b"ok", b"\xff\xfe not utf-8", "caf\u00e9".encode()])
        w.add_string("test.bad_string", b"\x80abc")  # bytes are written as is
        w.add_array("test.nested", [[1, 2], [3]])
        w.add_array("test.floats", [0.1, -2.5e-8, 3.0e38])
        w.add_uint64("test.u64", 2**63 + 5)
        w.add_int8("test.i8", -7)
        w.add_bool("test.flag", False)
        w.add_float64("test.f64", 1.0 / 3.0)

    src = tmp_path / "m.gguf"
    make_model(src, wtype="F16", n_embd=64, n_vocab=96, n_layer=1, extra_kv=extra)
    notes = []
    out = write_gguf(load_checkpoint(src), tmp_path / "o.gguf", "Q8_0", progress=False, on_note=notes.append)
    a, b = GGUFReader(src), GGUFReader(out)
    # gguf-py flattens nested arrays: the key is left out, with a note, never written wrong
    assert "test.nested" not in b.fields and any("test.nested is an array of arrays" in n for n in notes)
    skip = {"general.file_type", "general.quantization_version", "general.alignment", "test.nested"}
    keys = [k for k in a.fields if not k.startswith("GGUF.") and k not in skip]
    assert "test.raw_strings" in keys and "tokenizer.ggml.tokens" in keys
    for k in keys:
        fa, fb = a.fields[k], b.fields[k]
        assert fa.types == fb.types, k
        assert [bytes(fa.parts[i]) for i in fa.data] == [bytes(fb.parts[i]) for i in fb.data], k
    assert bytes(b.fields["test.raw_strings"].parts[b.fields["test.raw_strings"].data[1]]) == b"\xff\xfe not utf-8"
    assert b.fields["test.u64"].types == [GGUFValueType.UINT64] and b.fields["test.u64"].contents() == 2**63 + 5


def test_peak_memory_is_about_one_tensor(tmp_path):
    """Quantizing maps one tensor at a time (its own memory map, dropped after the tensor): the
    child's peak RSS grows by about the largest tensor (F16 in, blocks out), not by the model's size
    (a memory map of the whole input would keep every page read so far resident)."""
    import subprocess
    import sys

    from conftest import subprocess_env
    from model_factory import make_model

    src = tmp_path / "big.gguf"
    make_model(src, wtype="F16", n_embd=1024, n_ff=4096, n_head=8, n_head_kv=4, n_vocab=96, n_layer=3)
    size = src.stat().st_size
    largest = 4096 * 1024 * 2
    assert size > 8 * largest
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs Linux's /proc/self/status (VmHWM: this process's peak RSS)")
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (pytest) through fork and exec
    script = (
        "import sys\n"
        "def hwm(): return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) * 1024\n"
        "from edgellama.quantize import quantize\n"
        "from edgellama import _core\n"
        "before = hwm()\n"
        "quantize(sys.argv[1], sys.argv[2], 'Q4_0', threads=2)\n"
        "print(hwm() - before)\n"
    )
    r = subprocess.run([sys.executable, "-c", script, str(src), str(tmp_path / "q.gguf")], env=subprocess_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    grown = int(r.stdout.split()[-1])
    print("grown / largest tensor:", grown / largest, "model / largest:", size / largest)
    # measured 1.3 x the largest tensor (its F16 bytes and its blocks) on an 11 x model; reading
    # through a memory map of the input measured 11.6 x
    assert grown < 4 * largest, (grown, largest, size)
