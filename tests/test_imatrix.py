"""llama.cpp importance-matrix files: reading and writing the GGUF and legacy .dat formats (checked
against independent parses with gguf-py and struct), errors for broken / foreign / mismatched
files, `edgellama imatrix` + `edgellama quantize --imatrix`, and, when a llama.cpp build with
llama-imatrix is present ($EDGELLAMA_LLAMACPP_BIN), the cross-checks: llama-imatrix's files read
the same in both formats, our statistics equal theirs, our files are byte-identical to theirs
and llama-quantize accepts them."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from conftest import subprocess_env
from edgellama.imatrix_file import (
    Imatrix,
    ImatrixEntry,
    ImatrixError,
    importance_for_model,
    read_imatrix,
    write_imatrix,
)

LLAMACPP_BIN = Path(os.environ.get("EDGELLAMA_LLAMACPP_BIN", "/work/llamacpp/build-native/bin"))
STORY = "Once upon a time, there was a little girl named Lily. She liked to play outside in the park with her friends. "


def random_imatrix(rng, names=("blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.1.ffn_up.weight")):
    entries = {}
    for i, name in enumerate(names):
        cols = 8 + 5 * i
        counts = np.array([float(rng.integers(1, 5000))])
        sums = rng.gamma(0.5, 10.0, (1, cols)) * counts[0]
        entries[name] = ImatrixEntry(sums.astype(np.float32).astype(np.float64), counts)
    return Imatrix(entries, datasets=["wiki.train.raw"], chunk_count=7, chunk_size=512)


# ------------------------------------------------------------------------------------------------
# formats
# ------------------------------------------------------------------------------------------------


def test_gguf_round_trip_and_layout(tmp_path):
    im = random_imatrix(np.random.default_rng(0))
    path = write_imatrix(tmp_path / "im.gguf", im)
    back = read_imatrix(path)
    assert not back.legacy and back.datasets == im.datasets
    assert (back.chunk_count, back.chunk_size) == (7, 512)
    assert set(back.entries) == set(im.entries)
    for name, e in im.entries.items():
        assert np.array_equal(back.entries[name].sums, e.sums)
        assert np.array_equal(back.entries[name].counts, e.counts)
    # independent view with gguf-py: llama-imatrix's keys, no architecture, F32 pairs per weight
    r = GGUFReader(path)
    assert r.fields["general.type"].contents() == "imatrix"
    assert "general.architecture" not in r.fields
    assert r.fields["imatrix.datasets"].contents() == ["wiki.train.raw"]
    assert r.fields["imatrix.chunk_count"].contents() == 7 and r.fields["imatrix.chunk_size"].contents() == 512
    tensors = {t.name: t for t in r.tensors}
    assert sorted(tensors) == sorted(n + s for n in im.entries for s in (".in_sum2", ".counts"))
    for name, e in im.entries.items():
        s, c = tensors[name + ".in_sum2"], tensors[name + ".counts"]
        assert s.tensor_type == 0 and c.tensor_type == 0
        assert list(s.shape) == [e.n_cols] and list(c.shape) == [1]  # ggml drops a trailing 1
        assert np.array_equal(np.asarray(s.data, np.float64), e.sums[0]) and float(c.data[0]) == e.counts[0]


def parse_dat(path):
    """Independent parse of llama.cpp's legacy layout."""
    b = Path(path).read_bytes()
    (n,), pos, out = struct.unpack_from("<i", b, 0), 4, {}
    for _ in range(n):
        (ln,) = struct.unpack_from("<i", b, pos)
        name = b[pos + 4 : pos + 4 + ln].decode()
        pos += 4 + ln
        ncall, nval = struct.unpack_from("<ii", b, pos)
        pos += 8
        out[name] = (ncall, np.frombuffer(b, "<f4", nval, pos))
        pos += 4 * nval
    chunks, ln = struct.unpack_from("<ii", b, pos)
    return out, chunks, b[pos + 8 : pos + 8 + ln].decode(), len(b) - (pos + 8 + ln)


def test_dat_round_trip_and_layout(tmp_path):
    im = random_imatrix(np.random.default_rng(1))
    path = write_imatrix(tmp_path / "im.dat", im)  # the extension picks the legacy format
    assert path.read_bytes()[:4] != b"GGUF"
    raw, chunks, dataset, rest = parse_dat(path)
    assert (chunks, dataset, rest) == (7, "wiki.train.raw", 0)
    for name, e in im.entries.items():
        ncall, vals = raw[name]
        assert ncall == -(-int(e.counts[0]) // 512)  # chunks seen, rounded up
        np.testing.assert_allclose(vals, e.sums[0] / e.counts[0] * ncall, rtol=2e-7)
    back = read_imatrix(path)
    assert back.legacy and back.chunk_count == 7 and back.datasets == ["wiki.train.raw"]
    for name, e in im.entries.items():
        np.testing.assert_allclose(back.entries[name].mean(), e.mean(), rtol=4e-7)
    # legacy=True forces the format whatever the name
    assert write_imatrix(tmp_path / "x.gguf", im, legacy=True).read_bytes() == path.read_bytes()


def test_dat_without_trailer_and_zero_counts(tmp_path):
    # llama.cpp writes the chunk-count/dataset trailer but does not require it; a GGUF weight
    # that saw no rows gets importance 1 per column, as llama-quantize does
    p = tmp_path / "old.dat"
    p.write_bytes(struct.pack("<ii", 1, 3) + b"abc" + struct.pack("<ii", 2, 2) + np.array([4.0, 6.0], "<f4").tobytes())
    im = read_imatrix(p)
    assert im.chunk_count == 0 and im.datasets == []
    np.testing.assert_array_equal(im.entries["abc"].mean(), [[2.0, 3.0]])
    e = ImatrixEntry(np.zeros((1, 3)), np.array([0.0]))
    np.testing.assert_array_equal(e.mean(), np.ones((1, 3), np.float32))


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------


def test_truncated_files_name_file_and_tensor(tmp_path):
    im = random_imatrix(np.random.default_rng(2))
    for ext in ("gguf", "dat"):
        full = write_imatrix(tmp_path / f"full.{ext}", im).read_bytes()
        cut = tmp_path / f"cut.{ext}"
        # every cut inside the entries is an error (the .dat trailer is optional: cut before it;
        # a GGUF ends in up to 31 bytes of alignment padding: cut 32, into the last tensor)
        trailer = 8 + len("wiki.train.raw") + 1 if ext == "dat" else 32
        for n in sorted({0, 3, 4, 20, len(full) // 2, len(full) - trailer}):
            cut.write_bytes(full[:n])
            with pytest.raises(ImatrixError) as ei:
                read_imatrix(cut)
            assert str(cut) in str(ei.value)
        cut.write_bytes(full[: len(full) - trailer])
        with pytest.raises(ImatrixError, match="blk.1.ffn_up.weight"):
            read_imatrix(cut)
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        read_imatrix(tmp_path / "nope.gguf")


def test_foreign_and_corrupt_files(tmp_path):
    from model_factory import make_model

    model = tmp_path / "model.gguf"
    make_model(model)
    with pytest.raises(ImatrixError, match=r"model\.gguf: GGUF file is not an importance matrix"):
        read_imatrix(model)
    junk = tmp_path / "junk.dat"
    junk.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImatrixError, match="junk.dat"):
        read_imatrix(junk)
    text = tmp_path / "notes.txt"
    text.write_text("hello world, this is not an imatrix\n" * 10)
    with pytest.raises(ImatrixError, match="notes.txt: not an importance matrix"):
        read_imatrix(text)
    # a NaN or negative value, a duplicated entry, a sums tensor without counts
    good = struct.pack("<ii", 1, 1) + b"w" + struct.pack("<ii", 1, 2)
    for vals in ([1.0, np.nan], [1.0, -2.0]):
        junk.write_bytes(good + np.array(vals, "<f4").tobytes())
        with pytest.raises(ImatrixError, match="junk.dat: tensor w holds negative or non-finite"):
            read_imatrix(junk)
    one = b"\x01\x00\x00\x00w" + struct.pack("<ii", 1, 1) + np.array([1.0], "<f4").tobytes()
    junk.write_bytes(struct.pack("<i", 2) + one + one)
    with pytest.raises(ImatrixError, match="tensor w appears twice"):
        read_imatrix(junk)
    import gguf

    w = gguf.GGUFWriter(tmp_path / "half.gguf", arch="")
    w.add_type("imatrix")
    w.add_tensor("blk.0.attn_q.weight.in_sum2", np.ones(8, np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    with pytest.raises(ImatrixError, match=r"half.gguf: weight blk.0.attn_q.weight has no 'blk.0.attn_q.weight.counts'"):
        read_imatrix(tmp_path / "half.gguf")


def test_mismatched_model_names_file_and_tensor(tmp_path):
    im = random_imatrix(np.random.default_rng(4))
    shapes = [("blk.0.attn_q.weight", (16, 8)), ("blk.0.ffn_down.weight", (8, 13)), ("blk.1.ffn_up.weight", (5, 18))]
    imp, notes = importance_for_model(im, shapes, "f.gguf")
    assert sorted(imp) == sorted(im.entries) and not notes
    np.testing.assert_array_equal(imp["blk.0.ffn_down.weight"], im.entries["blk.0.ffn_down.weight"].mean()[0])
    bad = [("blk.0.attn_q.weight", (16, 8)), ("blk.0.ffn_down.weight", (8, 12)), ("blk.1.ffn_up.weight", (5, 18))]
    with pytest.raises(ImatrixError, match=r"f.gguf: tensor blk.0.ffn_down.weight has 12 columns in the model but 13 values"):
        importance_for_model(im, bad, "f.gguf")
    with pytest.raises(ImatrixError, match=r"f.gguf: no entry of the importance matrix names a tensor of the model"):
        importance_for_model(im, [("output.weight", (4, 8))], "f.gguf")
    imp, notes = importance_for_model(im, shapes[:1], "f.gguf")
    assert list(imp) == ["blk.0.attn_q.weight"] and "2 importance entries name no tensor" in notes[0]


# ------------------------------------------------------------------------------------------------
# the commands, on the stories260K model
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stories_f32(stories260k_dir, tmp_path_factory):
    from edgellama.quantize import quantize

    d = tmp_path_factory.mktemp("imatrix")
    f32 = quantize(stories260k_dir / "stories260K.bin", d / "s.gguf", "F32", tokenizer=stories260k_dir / "tok512.bin")
    text = d / "calib.txt"
    text.write_text(STORY * 12)
    return f32, text


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgellama", *map(str, args)], capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)


def test_imatrix_command_then_quantize_with_it(stories_f32, tmp_path):
    from edgellama.convert import load_checkpoint, write_gguf
    from edgellama.quantize import collect_imatrix, quantize

    f32, text = stories_f32
    r = run_cli("imatrix", f32, "-f", text, "-c", 64, "-o", tmp_path / "im.gguf", "-t", 1)
    assert r.returncode == 0, r.stderr
    im = read_imatrix(tmp_path / "im.gguf")
    # llama-imatrix's defaults: whole 64-token chunks only, every token counted, blk.* weights only
    assert im.chunk_size == 64 and im.chunk_count >= 4 and im.datasets == [str(text)]
    assert all(n.startswith("blk.") for n in im.entries) and len(im.entries) == 5 * 7
    assert {float(e.counts[0]) for e in im.entries.values()} == {64.0 * im.chunk_count}
    # the same statistics the library call computes
    direct = collect_imatrix(f32, text.read_text(), n_ctx=64, threads=1)
    for name, e in direct.entries.items():
        np.testing.assert_allclose(im.entries[name].sums, e.sums.astype(np.float32), rtol=0, atol=0)

    # quantize --imatrix == write_gguf with those means; differs from no importance
    out = tmp_path / "q.gguf"
    r = run_cli("quantize", f32, out, "--type", "Q4_0", "--imatrix", tmp_path / "im.gguf", "-q", "-t", 1)
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(f32)
    imp = {n: e.mean()[0] for n, e in im.entries.items()}
    want = write_gguf(ck, tmp_path / "want.gguf", "Q4_0", importance=imp, progress=False)
    plain = write_gguf(ck, tmp_path / "plain.gguf", "Q4_0", progress=False)
    assert out.read_bytes() == want.read_bytes() != plain.read_bytes()
    # the .dat form of the same statistics gives the same file (means equal to float32 rounding:
    # compare the quantized tensors, which a one-ulp importance difference almost never moves)
    write_imatrix(tmp_path / "im.dat", im)
    q_dat = quantize(f32, tmp_path / "qd.gguf", "Q4_0", imatrix=tmp_path / "im.dat")
    a, b = GGUFReader(out), GGUFReader(q_dat)
    same = [np.array_equal(x.data, y.data) for x, y in zip(a.tensors, b.tensors)]
    assert sum(same) >= len(same) - 1


def test_quantize_imatrix_errors(stories_f32, tmp_path):
    from edgellama.quantize import quantize

    f32, text = stories_f32
    im = random_imatrix(np.random.default_rng(5), names=("blk.0.attn_q.weight",))  # 8 columns; the model has 64
    write_imatrix(tmp_path / "other.gguf", im)
    r = run_cli("quantize", f32, tmp_path / "q.gguf", "--type", "Q4_0", "--imatrix", tmp_path / "other.gguf", "-q")
    assert r.returncode == 1
    assert "other.gguf: tensor blk.0.attn_q.weight has 64 columns in the model but 8 values" in r.stderr
    assert not (tmp_path / "q.gguf").exists()
    with pytest.raises(ValueError, match="not both"):
        quantize(f32, tmp_path / "q.gguf", "Q4_0", calibrate=text, imatrix=tmp_path / "other.gguf")
    with pytest.raises(ValueError, match="rounding='reference' cannot"):
        quantize(f32, tmp_path / "q.gguf", "Q4_0", rounding="reference", imatrix=tmp_path / "other.gguf")
    r = run_cli("imatrix", f32, "-f", text, "-c", 4096, "-o", tmp_path / "x.gguf")
    assert r.returncode == 1 and "fewer than one chunk of 4096" in r.stderr and not (tmp_path / "x.gguf").exists()


# ------------------------------------------------------------------------------------------------
# cross-checks with llama.cpp's tools (skipped without a llama.cpp build; never needed in CI)
# ------------------------------------------------------------------------------------------------


def llamacpp_tool(name):
    p = LLAMACPP_BIN / name
    if not p.is_file():
        pytest.skip(f"{p} not found (set EDGELLAMA_LLAMACPP_BIN to a llama.cpp build's bin/ with {name})")
    return p


@pytest.fixture(scope="module")
def theirs(stories_f32, tmp_path_factory):
    tool = llamacpp_tool("llama-imatrix")
    f32, text = stories_f32
    d = tmp_path_factory.mktemp("theirs")
    out = {}
    for fmt in ("gguf", "dat"):
        out[fmt] = d / f"imatrix.{fmt}"
        r = subprocess.run([str(tool), "-m", str(f32), "-f", str(text), "-c", "64", "--no-ppl", "-t", "1",
                            "-o", str(out[fmt]), "--output-format", fmt], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_llama_imatrix_files_read_the_same_and_match_ours(stories_f32, theirs):
    from edgellama.quantize import collect_imatrix

    g, d = read_imatrix(theirs["gguf"]), read_imatrix(theirs["dat"])
    assert sorted(g.entries) == sorted(d.entries) and len(g.entries) == 35
    for name in g.entries:  # the .dat stores mean * ncall in float32: equal to float32 rounding
        np.testing.assert_allclose(d.entries[name].mean(), g.entries[name].mean(), rtol=3e-7)
    f32, text = stories_f32
    ours = collect_imatrix(f32, text.read_text(), n_ctx=64, threads=1)
    assert sorted(ours.entries) == sorted(g.entries)
    for name, e in g.entries.items():
        assert ours.entries[name].counts[0] == e.counts[0]
        # llama.cpp keeps the KV cache in F16: measured at most 2.1e-4 of the largest column
        err = np.abs(ours.entries[name].sums - e.sums).max() / e.sums.max()
        assert err < 1e-3, (name, err)


def test_our_files_are_byte_identical_to_llama_imatrix(theirs, tmp_path):
    im = read_imatrix(theirs["gguf"])
    assert write_imatrix(tmp_path / "a.gguf", im).read_bytes() == theirs["gguf"].read_bytes()
    assert write_imatrix(tmp_path / "a.dat", im).read_bytes() == theirs["dat"].read_bytes()


def test_llama_quantize_accepts_our_files(stories_f32, tmp_path):
    tool = llamacpp_tool("llama-quantize")
    from edgellama.quantize import collect_imatrix

    f32, text = stories_f32
    im = collect_imatrix(f32, text.read_text(), n_ctx=64, threads=1, dataset="calib.txt")
    outs = {}
    for name in ("ours.gguf", "ours.dat", None):
        args = [str(tool)]
        if name:
            args += ["--imatrix", str(write_imatrix(tmp_path / name, im))]
        outs[name] = tmp_path / f"q-{name}.gguf"
        r = subprocess.run(args + [str(f32), str(outs[name]), "Q4_0", "1"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        if name:
            assert f"loaded 35 importance matrix entries from {tmp_path / name}" in r.stdout + r.stderr
    # the importance reached the quantizer: the two forms (equal to float32 rounding) give nearly the
    # same bytes, further from those without importance
    a, b, c = ([np.asarray(t.data).view(np.uint8) for t in GGUFReader(outs[k]).tensors] for k in ("ours.gguf", "ours.dat", None))
    diff_ab = sum(int((x != y).sum()) for x, y in zip(a, b))
    diff_ac = sum(int((x != z).sum()) for x, z in zip(a, c))
    print("bytes differing: gguf vs dat", diff_ab, "gguf vs none", diff_ac)
    assert diff_ab * 20 < diff_ac
