"""Load-time weight packing (cpp/include/edgellama/packed_layout.h): the layout against an independent
NumPy construction of its definition, packed products bit-identical to the same rows in the GGUF
layout for every packable type, ISA and token count (packed kernels and the unpack fallback), and
a real model whose logits do not change and whose resident memory does not double."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgellama import _core
from conftest import subprocess_env

G = 8  # rows per packed group
# Block bytes and the offsets of the fp16 fields (2-byte units; every other byte is in 4-byte units),
# from ggml's block structs.
LAYOUT = {
    "Q4_0": (18, [0]), "Q4_1": (20, [0, 2]), "Q5_0": (22, [0]), "Q5_1": (24, [0, 2]), "Q8_0": (34, [0]),
    "Q2_K": (84, [80, 82]), "Q3_K": (110, [108]), "Q4_K": (144, [0, 2]), "Q5_K": (176, [0, 2]),
    "Q6_K": (210, [208]), "IQ4_NL": (18, [0]), "IQ4_XS": (136, [0, 2]),
}
BLOCK_VALUES = {t: (256 if t.endswith("_K") or t == "IQ4_XS" else 32) for t in LAYOUT}


def numpy_pack(rows: np.ndarray, block_bytes: int, halves: list[int]) -> np.ndarray:
    """rows [G, row_bytes] -> the packed group, built from the layout's definition: block b at
    b*G*B, the unit at offset o of row r at G*o + r*unit."""
    nb = rows.shape[1] // block_bytes
    out = np.zeros(G * rows.shape[1], np.uint8)
    for b in range(nb):
        base = b * G * block_bytes
        o = 0
        while o < block_bytes:
            unit = 2 if o in halves else 4
            for r in range(G):
                out[base + G * o + r * unit: base + G * o + (r + 1) * unit] = rows[r, b * block_bytes + o: b * block_bytes + o + unit]
            o += unit
    return out


def numpy_pack_q6k(rows: np.ndarray) -> np.ndarray:
    """Q6_K's packed group from its definition (packed_layout.h): per block the 4 scale words, d, then
    for each half h and group g the words A, B, C, each interleaved over the G rows like the other
    types' units; byte l = 4g + i of the triple holds the 6-bit quants q1..q4 of values
    128h + l + (0, 32, 64, 96) as A = q1 | (q3 >> 4) << 6, B = q2 | (q4 >> 4) << 6,
    C = (q3 & 15) | (q4 & 15) << 4. The quants are decoded here as gguf-py does."""
    nb = rows.shape[1] // 210
    out = np.zeros(G * rows.shape[1], np.uint8)
    for b in range(nb):
        blk = rows[:, b * 210:(b + 1) * 210].astype(np.int64)  # [G, 210]
        ql, qh = blk[:, :128], blk[:, 128:192]
        units = [blk[:, 192 + 4 * w: 196 + 4 * w] for w in range(4)] + [blk[:, 208:210]]
        for h in range(2):
            lo0, lo1, hb = ql[:, 64 * h: 64 * h + 32], ql[:, 64 * h + 32: 64 * h + 64], qh[:, 32 * h: 32 * h + 32]
            q1 = (lo0 & 15) | ((hb & 3) << 4)
            q2 = (lo1 & 15) | (((hb >> 2) & 3) << 4)
            q3 = (lo0 >> 4) | (((hb >> 4) & 3) << 4)
            q4 = (lo1 >> 4) | (((hb >> 6) & 3) << 4)
            A, B, C = q1 | ((q3 >> 4) << 6), q2 | ((q4 >> 4) << 6), (q3 & 15) | ((q4 & 15) << 4)
            for g in range(8):
                units += [A[:, 4 * g: 4 * g + 4], B[:, 4 * g: 4 * g + 4], C[:, 4 * g: 4 * g + 4]]
        packed = np.concatenate([u.reshape(-1) for u in units])  # unit o of row r at G*p + r*unit
        out[b * G * 210:(b + 1) * G * 210] = packed.astype(np.uint8)
    return out


@pytest.mark.parametrize("wtype", sorted(LAYOUT))
def test_packed_layout_matches_its_definition(wtype):
    block_bytes, halves = LAYOUT[wtype]
    rng = np.random.default_rng(1)
    n_in = 2 * BLOCK_VALUES[wtype]
    n_rows = 2 * G + 3  # two groups and a tail that stays as it is
    row_bytes = 2 * block_bytes
    w = rng.integers(0, 256, (n_rows, row_bytes), dtype=np.uint8)
    packed = np.frombuffer(_core.kernel_pack_rows(wtype, w.tobytes(), n_in), np.uint8)
    pack = (lambda r: numpy_pack_q6k(r)) if wtype == "Q6_K" else (lambda r: numpy_pack(r, block_bytes, halves))
    expected = np.concatenate([pack(w[0:G]), pack(w[G:2 * G]), w[2 * G:].reshape(-1)])
    np.testing.assert_array_equal(packed, expected)


def _weights(wtype: str, n_out: int, n_in: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_out, n_in)).astype(np.float32)
    x[1] *= 1e4    # extreme rows: large scales
    x[-1] *= 1e-4  # and tiny ones (the tail row when n_out % 8 != 0)
    x[2, :7] = 0.0
    return np.asarray(_core.quantize(wtype, x, None, 1, "reference")).tobytes()


@pytest.mark.parametrize("wtype", sorted(LAYOUT))
def test_packed_products_are_bit_identical_for_every_isa_and_token_count(wtype):
    n_in = 3 * BLOCK_VALUES[wtype]
    rng = np.random.default_rng(2)
    # one thread and 7 groups: a task of 56 rows, where the AVX-512 kernels pair group i with group
    # i + 3 for several tokens and leave the 7th to the 8-row kernel
    for n_out, threads in ((8, 2), (27, 2), (48, 2), (56, 1)):
        wb = _weights(wtype, n_out, n_in, seed=n_out)
        for isa in _core.available_isas():
            for nt in (1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17, 25, 33, 70):
                x = rng.standard_normal((nt, n_in)).astype(np.float32)
                x[0, :5] *= 50.0
                for name in ("blk.0.attn_q.weight", "output.weight"):  # the second takes the residual pass
                    plain = _core.kernel_matmul(wtype, wb, x, threads, "fast", isa, 1, name, False)[0]
                    packed = _core.kernel_matmul(wtype, wb, x, threads, "fast", isa, 1, name, True)[0]
                    assert np.isfinite(plain).all()
                    np.testing.assert_array_equal(packed, plain, err_msg=f"{wtype} {isa} n_out={n_out} nt={nt} {name}")
                exact_plain = _core.kernel_matmul(wtype, wb, x, 1, "exact", isa, 1, "w", False)[0]
                exact_packed = _core.kernel_matmul(wtype, wb, x, 1, "exact", isa, 1, "w", True)[0]
                np.testing.assert_array_equal(exact_packed, exact_plain)


def test_pack_rows_rejects_types_without_a_layout():
    with pytest.raises(ValueError, match="no packed layout"):
        _core.kernel_pack_rows("F16", b"\0" * 64, 32)


_CHILD = r"""
import json, sys
import numpy as np
import edgellama
path = sys.argv[1]
tokens = [1, 504, 3458, 282, 4649, 314, 7042, 28, 284, 3458, 282]
out = {}
with edgellama.Llama(path, n_ctx=64, n_threads=2, logits_all=True, verbose=False) as llm:
    llm.eval(tokens[:6])           # prefill
    for t in tokens[6:]:
        llm.eval([t])              # decode, one token at a time (the packed kernels)
    out["logits"] = np.asarray(llm.scores[: len(tokens)]).tolist()
    emb = llm.tokenize(b"Paris")   # token embeddings read from the tied (packed) output matrix
    out["rss_kb"] = int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
with edgellama.Llama(path, n_ctx=64, n_threads=2, precision="exact", logits_all=True, verbose=False) as llm:
    llm.eval(tokens[:3])
    out["exact"] = np.asarray(llm.scores[:3]).tolist()
print(json.dumps(out))
"""


def _run_child(path, **env):
    r = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=300,
                       env=subprocess_env(**env))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_real_model_logits_unchanged_and_memory_not_doubled(smollm2_path):
    packed = _run_child(smollm2_path)
    plain = _run_child(smollm2_path, EDGELLAMA_REPACK="0")
    np.testing.assert_array_equal(np.array(packed["logits"]), np.array(plain["logits"]))
    np.testing.assert_array_equal(np.array(packed["exact"]), np.array(plain["exact"]))
    file_kb = smollm2_path.stat().st_size / 1024
    # Packing replaces the mapped pages it copied: resident memory may not grow by more than a
    # fifth of the file (doubling would add the whole file).
    assert packed["rss_kb"] - plain["rss_kb"] < 0.2 * file_kb, (packed["rss_kb"], plain["rss_kb"], file_kb)
