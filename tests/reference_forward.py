"""Independent float64 NumPy forward pass for LLaMA-family GGUF models (every architecture of the C++
table: llama, qwen2, qwen3, gemma, gemma2, gemma3, phi3, granite, olmo2, smollm3).

Reads the file with the ``gguf`` package only (gguf.GGUFReader + gguf.quants.dequantize), never through
edgellama's loader or forward, so it can serve as a reference for edgellama's forward pass. The list of
architectures and each one's structural flags (which norms, QK-norm kind, activation, rope style, window
pattern) come from the one architecture table, ``_core.architectures()``; the arithmetic of every
operation is written out here (and checked against transformers in tests/test_architectures.py).

    reference_logits(path, tokens)                 -> float64 (n_tokens, n_vocab)
    reference_logits(path, tokens, kv_dtype="f16") -> same with K (after RoPE) and V rounded to float16,
                                                      to simulate an f16 KV cache when diagnosing tolerances.

Conventions (ggml/llama.cpp):
  * A weight with GGUF shape [n_in, n_out] (ne[0] = row length) is the numpy matrix (n_out, n_in); y = W @ x.
  * RoPE: llama uses ggml's "normal" mode, rotating adjacent pairs (x[2i], x[2i+1]); qwen2 uses NEOX mode,
    rotating (x[i], x[i + n_rot/2]).  theta_i = pos * base^(-2i/n_rot); dims >= n_rot are not rotated.
    Linear scaling divides positions by the factor; ``rope_freqs.weight`` divides theta_i by rope_freqs[i].
  * GQA: KV head j serves query heads j*g .. (j+1)*g-1, g = n_head / n_head_kv.
"""

from __future__ import annotations

import functools
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT

def _arch_table() -> Dict[str, dict]:
    from edgellama import _core

    return {a["name"]: a for a in _core.architectures()}


SUPPORTED_ARCHS = tuple(_arch_table())


@functools.lru_cache(maxsize=1)
def limit_blas_threads(n: int = 1) -> bool:
    """Run NumPy's OpenBLAS single-threaded: the reference's matmuls are small, and on a shared,
    oversubscribed machine OpenBLAS worker threads spin and cost several times the work itself.
    Best effort (Linux, OpenBLAS); returns whether a setter was found."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if len(line.split()) >= 6}
        libs = sorted(p for p in paths if "openblas" in os.path.basename(p).lower() and ".so" in p)
    except OSError:
        return False
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for sym in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(handle, sym, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                return True
    return False


@functools.lru_cache(maxsize=4)
def _cached_reader(path: str, mtime_ns: int, size: int) -> gguf.GGUFReader:
    return gguf.GGUFReader(path)


def shared_reader(path: "str | os.PathLike[str]") -> gguf.GGUFReader:
    """A gguf.GGUFReader cached per (path, mtime, size): opening a large vocabulary is slow in
    Python (seconds for SmolLM2), so test modules share one reader per file."""
    path = os.fspath(path)
    st = os.stat(path)
    return _cached_reader(path, st.st_mtime_ns, st.st_size)


def _field_value(field):
    """Python value of a metadata field (scalars, strings, arrays)."""
    return field.contents()


class ReferenceModel:
    """Lazily dequantizing float64 model read through gguf-py."""

    def __init__(self, path: "str | os.PathLike[str]", cache: bool = False, shared: bool = False):
        """cache=True keeps dequantized weights (as float32, which is exact) between forward calls;
        shared=True reuses a cached gguf.GGUFReader for the file (see shared_reader)."""
        limit_blas_threads()
        self.path = os.fspath(path)
        self.cache = cache
        self._cache: Dict[str, np.ndarray] = {}
        self.reader = shared_reader(self.path) if shared else gguf.GGUFReader(self.path)
        self.fields = self.reader.fields
        self.tensors = {t.name: t for t in self.reader.tensors}
        arch = self.meta("general.architecture")
        if arch not in SUPPORTED_ARCHS:
            raise ValueError(f"reference forward: unsupported architecture {arch!r}")
        self.arch = arch
        self.spec = spec = _arch_table()[arch]
        a = arch
        self.n_embd = int(self.meta(f"{a}.embedding_length"))
        self.n_layer = int(self.meta(f"{a}.block_count"))
        self.n_head = int(self.meta(f"{a}.attention.head_count"))
        self.n_head_kv = int(self.meta(f"{a}.attention.head_count_kv", self.n_head))
        self.n_ff = int(self.meta(f"{a}.feed_forward_length"))
        self.eps = float(self.meta(f"{a}.attention.layer_norm_rms_epsilon"))
        self.head_dim = int(self.meta(f"{a}.attention.key_length", self.n_embd // self.n_head))
        self.n_rot = int(self.meta(f"{a}.rope.dimension_count", self.head_dim))
        self.freq_base = float(self.meta(f"{a}.rope.freq_base", spec["default_rope_base"]))
        # architecture settings (see cpp/include/edgellama/arch.h for their meaning)
        self.attn_scale = float(self.meta(f"{a}.attention.scale", 0.0)) or 1.0 / np.sqrt(self.head_dim)
        if f"{a}.attention.scale" not in self.fields and spec["embd_per_head_scale_n_layer"] == self.n_layer:
            self.attn_scale = 1.0 / np.sqrt(self.n_embd // self.n_head)  # Gemma 2/3 27B
        self.embd_scale = np.sqrt(self.n_embd) if spec["embd_scale_sqrt"] else float(self.meta(f"{a}.embedding_scale", 1.0))
        self.residual_scale = float(self.meta(f"{a}.residual_scale", 1.0))
        self.logit_scale = float(self.meta(f"{a}.logit_scale", 1.0))
        self.attn_softcap = float(self.meta(f"{a}.attn_logit_softcapping", 0.0)) if spec["softcap"] else 0.0
        self.final_softcap = float(self.meta(f"{a}.final_logit_softcapping", 0.0)) if spec["softcap"] else 0.0
        self.window = [0] * self.n_layer
        self.swa_base = None
        pattern = spec["swa_pattern"]
        if pattern and f"{a}.attention.sliding_window" in self.fields:
            pattern = int(self.meta(f"{a}.attention.sliding_window_pattern", pattern))
            n_swa = int(self.meta(f"{a}.attention.sliding_window"))
            self.window = [n_swa if il % pattern < pattern - 1 else 0 for il in range(self.n_layer)]
            base_swa = float(self.meta(f"{a}.rope.freq_base_swa", spec["default_rope_base_swa"]))
            self.swa_base = base_swa or None
        every = spec["nope_every"]
        self.use_rope = [not every or (il + 1) % every != 0 for il in range(self.n_layer)]
        scaling_type = self.meta(f"{a}.rope.scaling.type", None)
        self.pos_scale = 1.0
        if scaling_type == "linear":
            self.pos_scale = 1.0 / float(self.meta(f"{a}.rope.scaling.factor", 1.0))
        elif scaling_type not in (None, "none", "longrope"):
            raise ValueError(f"reference forward: unsupported rope scaling {scaling_type!r}")
        self.neox = spec["rope_style"] == "neox"
        self.rope_freqs = self.weight("rope_freqs.weight") if "rope_freqs.weight" in self.tensors else None
        # LongRoPE (phi3 128k): the factor set is chosen per forward call by the sequence length, as transformers
        # does (long when longer than the pretraining context), unless n_ctx is set: then by n_ctx as llama.cpp
        # and edgellama do. cos/sin are multiplied by the attention factor either way.
        self.longrope = None
        if "rope_factors_long.weight" in self.tensors:
            self.longrope = (self.weight("rope_factors_short.weight").reshape(-1), self.weight("rope_factors_long.weight").reshape(-1))
        self.n_ctx_orig = int(self.meta(f"{a}.rope.scaling.original_context_length", 0)) or int(self.meta(f"{a}.context_length", 2048))
        self.rope_attn_factor = float(self.meta(f"{a}.rope.scaling.attn_factor", 1.0))
        self.n_ctx: Optional[int] = None
        self._rope_len = 0  # the current forward call's sequence length (for the LongRoPE choice)

    # ---- metadata / tensors -------------------------------------------------------------------
    _MISSING = object()

    def meta(self, key: str, default=_MISSING):
        f = self.fields.get(key)
        if f is None:
            if default is ReferenceModel._MISSING:
                raise KeyError(f"reference forward: metadata key {key!r} missing")
            return default
        return _field_value(f)

    def weight(self, name: str) -> np.ndarray:
        """Dequantized tensor as float64, numpy shape = reversed GGUF shape."""
        hit = self._cache.get(name)
        if hit is not None:
            return hit.astype(np.float64)
        t = self.tensors[name]
        shape = tuple(int(x) for x in reversed(list(t.shape)))
        qt = QT(int(t.tensor_type))
        if qt == QT.F32:
            arr = np.asarray(t.data, dtype=np.float32).astype(np.float64)
        elif qt == QT.F16:
            arr = np.asarray(t.data).view(np.float16).astype(np.float64)
        else:
            arr = gguf.quants.dequantize(np.asarray(t.data), qt).astype(np.float64)
        arr = arr.reshape(shape)
        if self.cache:
            self._cache[name] = arr.astype(np.float32)
        return arr

    def has(self, name: str) -> bool:
        return name in self.tensors

    # ---- tokenizer helpers ------------------------------------------------------------------------
    def vocab(self) -> List[str]:
        return list(self.meta("tokenizer.ggml.tokens"))

    # ---- forward --------------------------------------------------------------------------------
    def _rope(self, x: np.ndarray, positions: np.ndarray, local: bool = False) -> np.ndarray:
        """x: (n_tok, n_heads, head_dim) float64; returns rotated copy. local: a sliding-window layer with its
        own base (gemma3), unscaled."""
        n_rot = self.n_rot
        half = n_rot // 2
        i = np.arange(half, dtype=np.float64)
        if local:
            inv_freq = self.swa_base ** (-2.0 * i / n_rot)
            theta = positions.astype(np.float64)[:, None] * inv_freq[None, :]
        else:
            inv_freq = self.freq_base ** (-2.0 * i / n_rot)
            if self.rope_freqs is not None:
                inv_freq = inv_freq / self.rope_freqs.reshape(-1)[:half]
            elif self.longrope is not None:
                length = self.n_ctx if self.n_ctx is not None else self._rope_len
                inv_freq = inv_freq / self.longrope[1 if length > self.n_ctx_orig else 0][:half]
            theta = (positions.astype(np.float64) * self.pos_scale)[:, None] * inv_freq[None, :]  # (n_tok, half)
        mscale = 1.0 if local else self.rope_attn_factor
        cos = np.cos(theta)[:, None, :] * mscale
        sin = np.sin(theta)[:, None, :] * mscale
        out = x.copy()
        if self.neox:
            a = x[..., 0:half]
            b = x[..., half:n_rot]
            out[..., 0:half] = a * cos - b * sin
            out[..., half:n_rot] = a * sin + b * cos
        else:
            a = x[..., 0:n_rot:2]
            b = x[..., 1:n_rot:2]
            out[..., 0:n_rot:2] = a * cos - b * sin
            out[..., 1:n_rot:2] = a * sin + b * cos
        return out

    def _rmsnorm(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def forward(self, tokens: Sequence[int], kv_dtype: str = "f64") -> np.ndarray:
        """float64 logits (n_tokens, n_vocab) of one independent sequence starting at position 0."""
        return self.forward_many([tokens], [kv_dtype])[0]

    def forward_many(self, seqs: Sequence[Sequence[int]], kv_dtypes: Optional[Sequence[str]] = None,
                     hidden: bool = False) -> List[np.ndarray]:
        """Several independent sequences (each from position 0, with its own KV rounding) in one pass over
        the weights: the per-token matmuls are stacked, attention is per sequence. ``hidden=True``
        returns the final-norm hidden states (n_tokens, n_embd) instead of the logits."""
        seqs = [np.asarray(list(t), dtype=np.int64) for t in seqs]
        kv_dtypes = list(kv_dtypes) if kv_dtypes is not None else ["f64"] * len(seqs)
        assert len(kv_dtypes) == len(seqs)
        for kd in kv_dtypes:
            if kd not in ("f64", "f32", "f16"):
                raise ValueError(f"kv_dtype must be f64, f32 or f16, not {kd!r}")
        emb = self.weight("token_embd.weight")  # (n_vocab, n_embd)
        n_vocab = emb.shape[0]
        lens = [len(t) for t in seqs]
        offs = np.concatenate([[0], np.cumsum(lens)]).astype(int)
        tokens = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        N = len(tokens)
        if N == 0:
            return [np.zeros((0, n_vocab)) for _ in seqs]
        if tokens.min() < 0 or tokens.max() >= n_vocab:
            raise ValueError("reference forward: token id out of range")
        x = emb[tokens].copy() * self.embd_scale
        positions = np.concatenate([np.arange(n) for n in lens])
        self._rope_len = max(lens)  # LongRoPE without n_ctx: by the (longest) sequence, as transformers
        hd, nh, nkv = self.head_dim, self.n_head, self.n_head_kv
        g = nh // nkv
        scale = self.attn_scale
        spec = self.spec
        qw, kvw = nh * hd, nkv * hd
        for il in range(self.n_layer):
            p = f"blk.{il}."
            h = self._rmsnorm(x, self.weight(p + "attn_norm.weight")) if spec["pre_norms"] else x
            if spec["fused_qkv"]:
                qkv = h @ self.weight(p + "attn_qkv.weight").T
                q, k, v = qkv[:, :qw], qkv[:, qw : qw + kvw], qkv[:, qw + kvw :]
            else:
                q = h @ self.weight(p + "attn_q.weight").T
                k = h @ self.weight(p + "attn_k.weight").T
                v = h @ self.weight(p + "attn_v.weight").T
            if spec["qk_norm"] == "whole":
                q = self._rmsnorm(q, self.weight(p + "attn_q_norm.weight"))
                k = self._rmsnorm(k, self.weight(p + "attn_k_norm.weight"))
            elif spec["qk_norm"] == "per_head":
                q = self._rmsnorm(q.reshape(N, nh, hd), self.weight(p + "attn_q_norm.weight")).reshape(N, qw)
                k = self._rmsnorm(k.reshape(N, nkv, hd), self.weight(p + "attn_k_norm.weight")).reshape(N, kvw)
            if spec["qkv_bias"]:  # a missing bias counts as zero
                for nm in ("q", "k", "v"):
                    if self.has(p + f"attn_{nm}.bias"):
                        b = self.weight(p + f"attn_{nm}.bias")
                        if nm == "q":
                            q = q + b
                        elif nm == "k":
                            k = k + b
                        else:
                            v = v + b
            q = q.reshape(N, nh, hd)
            k = k.reshape(N, nkv, hd)
            if self.use_rope[il]:
                local = self.window[il] > 0 and self.swa_base is not None
                q = self._rope(q, positions, local)
                k = self._rope(k, positions, local)
            v = v.reshape(N, nkv, hd)
            win = self.window[il]
            attn = np.empty((N, nh, hd))
            for si, kd in enumerate(kv_dtypes):
                a, b = offs[si], offs[si + 1]
                n = b - a
                if n == 0:
                    continue
                ks, vs = k[a:b], v[a:b]
                if kd != "f64":
                    dt = np.float16 if kd == "f16" else np.float32
                    ks = ks.astype(dt).astype(np.float64)
                    vs = vs.astype(dt).astype(np.float64)
                mask = np.triu(np.full((n, n), -np.inf), k=1)
                if win > 0:  # query i sees keys i-win+1 .. i
                    mask = mask + np.tril(np.full((n, n), -np.inf), k=-win)
                for hq in range(nh):
                    j = hq // g
                    sc = (q[a:b, hq, :] @ ks[:, j, :].T) * scale
                    if self.attn_softcap > 0:
                        sc = self.attn_softcap * np.tanh(sc / self.attn_softcap)
                    sc = sc + mask
                    sc = sc - sc.max(axis=-1, keepdims=True)
                    pr = np.exp(sc)
                    pr /= pr.sum(axis=-1, keepdims=True)
                    attn[a:b, hq, :] = pr @ vs[:, j, :]
            o = attn.reshape(N, nh * hd) @ self.weight(p + "attn_output.weight").T
            if spec["post_norms"]:
                o = self._rmsnorm(o, self.weight(p + "post_attention_norm.weight"))
            x = x + self.residual_scale * o
            h = self._rmsnorm(x, self.weight(p + "ffn_norm.weight")) if spec["pre_norms"] else x
            if spec["fused_gate_up"]:
                gu = h @ self.weight(p + "ffn_up.weight").T
                gate, up = gu[:, : self.n_ff], gu[:, self.n_ff :]
            else:
                gate = h @ self.weight(p + "ffn_gate.weight").T
                up = h @ self.weight(p + "ffn_up.weight").T
            if spec["activation"] == "gelu_tanh":
                act = 0.5 * gate * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (gate + 0.044715 * gate**3))) * up
            else:
                act = gate / (1.0 + np.exp(-gate)) * up
            o = act @ self.weight(p + "ffn_down.weight").T
            if spec["post_norms"]:
                o = self._rmsnorm(o, self.weight(p + "post_ffw_norm.weight"))
            x = x + self.residual_scale * o
        x = self._rmsnorm(x, self.weight("output_norm.weight"))
        if hidden:  # the final-norm hidden states (what embeddings pool), not logits
            return [x[offs[i] : offs[i + 1]] for i in range(len(seqs))]
        out_w = self.weight("output.weight") if self.has("output.weight") else emb
        logits = x @ out_w.T / self.logit_scale
        if self.final_softcap > 0:
            logits = self.final_softcap * np.tanh(logits / self.final_softcap)
        return [logits[offs[i] : offs[i + 1]] for i in range(len(seqs))]


def reference_logits(path: "str | os.PathLike[str]", tokens: Sequence[int], kv_dtype: str = "f64") -> np.ndarray:
    """float64 logits (n_tokens, n_vocab) for every position of ``tokens``."""
    return ReferenceModel(path).forward(tokens, kv_dtype=kv_dtype)


def decode_tokens(vocab: Sequence[str], ids: Sequence[int]) -> str:
    """Decode GPT-2 byte-level BPE token strings (approximately: 'Ġ' -> ' ', 'Ċ' -> newline)."""
    byte_decoder = _gpt2_byte_decoder()
    data = bytearray()
    for i in ids:
        for ch in vocab[i]:
            if ch in byte_decoder:
                data.append(byte_decoder[ch])
            else:
                data.extend(ch.encode("utf-8"))
    return data.decode("utf-8", errors="replace")


def _gpt2_byte_decoder() -> Dict[str, int]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


REL_TOL = 1e-3  # tests: max |dlogit| <= REL_TOL * max |logit|


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - want)) / np.max(np.abs(want)))


def assert_matches(got: np.ndarray, want: np.ndarray, rel_tol: float = REL_TOL, what: str = "") -> float:
    """Shape, max |d| <= rel_tol * max|want|, and argmax equal at every position (a position whose top-2
    reference logits are closer than the tolerance may pick either)."""
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert got.dtype == np.float32
    assert np.all(np.isfinite(got)), what
    err = rel_err(got, want)
    tol_abs = rel_tol * float(np.max(np.abs(want)))
    am = got.argmax(axis=1)
    ok = want[np.arange(len(want)), am] >= want.max(axis=1) - 2 * tol_abs
    bad = np.flatnonzero(~ok)
    assert bad.size == 0, (
        f"{what}: argmax differs at positions {bad.tolist()}: edgellama {am[bad].tolist()}, "
        f"reference {want.argmax(axis=1)[bad].tolist()} (rel err {err:.3g})"
    )
    assert err <= rel_tol, f"{what}: max|dlogit|/max|logit| = {err:.3g} > {rel_tol}"
    return err


def greedy_continuation(path, tokens: Sequence[int], n_new: int, kv_dtype: str = "f64") -> List[int]:
    """Greedy continuation with the reference (re-runs the whole sequence each step; small n_new only)."""
    m = ReferenceModel(path, cache=True)
    seq = list(tokens)
    out = []
    for _ in range(n_new):
        logits = m.forward(seq, kv_dtype=kv_dtype)
        t = int(np.argmax(logits[-1]))
        out.append(t)
        seq.append(t)
    return out


if __name__ == "__main__":  # self-check on SmolLM2
    import sys
    import time

    path = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
    t0 = time.time()
    ids = greedy_continuation(path, [504, 3575, 282, 4649, 314], 3)
    vocab = ReferenceModel(path).vocab()
    print(ids, repr(decode_tokens(vocab, ids)), f"{time.time() - t0:.1f}s")
