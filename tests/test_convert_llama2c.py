"""llama2.c checkpoints -> GGUF: stories260K greedy text against a NumPy forward that follows
llama2.c's run.c, tokenizer conversion, header variants and bad inputs."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from edgellama.convert import ConversionError
from edgellama.quantize import quantize

N_GREEDY = 32


def l2c_read(path: Path):
    raw = path.read_bytes()
    dim, hid, L, nh, nkv, vocab, seq = struct.unpack_from("<7i", raw, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    hs = dim // nh
    w = np.frombuffer(raw, dtype="<f4", offset=28).astype(np.float64)
    o = 0

    def take(*shape):
        nonlocal o
        n = int(np.prod(shape))
        a = w[o : o + n].reshape(shape)
        o += n
        return a

    p = dict(dim=dim, hid=hid, L=L, nh=nh, nkv=nkv, vocab=vocab, hs=hs)
    p["emb"] = take(vocab, dim)
    p["ra"] = take(L, dim)
    p["wq"] = take(L, dim, dim)
    p["wk"] = take(L, nkv * hs, dim)
    p["wv"] = take(L, nkv * hs, dim)
    p["wo"] = take(L, dim, dim)
    p["rf"] = take(L, dim)
    p["w1"] = take(L, hid, dim)
    p["w2"] = take(L, dim, hid)
    p["w3"] = take(L, hid, dim)
    p["rfin"] = take(dim)
    take(seq * hs)
    p["wcls"] = p["emb"] if shared else take(vocab, dim)
    return p


def l2c_forward(p, tokens):
    """float64 forward following run.c: RoPE on interleaved pairs, GQA, SwiGLU, eps 1e-5."""
    L, nh, nkv, hs, dim = p["L"], p["nh"], p["nkv"], p["hs"], p["dim"]

    def rms(x, g):
        return x / np.sqrt(np.mean(x * x) + 1e-5) * g

    kc = np.zeros((L, len(tokens), nkv * hs))
    vc = np.zeros_like(kc)
    out = []
    for pos, tok in enumerate(tokens):
        x = p["emb"][tok].copy()
        for layer in range(L):
            xb = rms(x, p["ra"][layer])
            q, k, v = p["wq"][layer] @ xb, p["wk"][layer] @ xb, p["wv"][layer] @ xb
            for vec in (q, k):
                i = np.arange(0, len(vec), 2)
                fr = 1.0 / 10000.0 ** ((i % hs) / hs)
                c, s = np.cos(pos * fr), np.sin(pos * fr)
                a, b = vec[i].copy(), vec[i + 1].copy()
                vec[i], vec[i + 1] = a * c - b * s, a * s + b * c
            kc[layer, pos], vc[layer, pos] = k, v
            att = np.zeros(dim)
            for h in range(nh):
                kh = h // (nh // nkv)
                sc = kc[layer, : pos + 1, kh * hs : (kh + 1) * hs] @ q[h * hs : (h + 1) * hs] / np.sqrt(hs)
                sc = np.exp(sc - sc.max())
                sc /= sc.sum()
                att[h * hs : (h + 1) * hs] = sc @ vc[layer, : pos + 1, kh * hs : (kh + 1) * hs]
            x = x + p["wo"][layer] @ att
            xb = rms(x, p["rf"][layer])
            hb = p["w1"][layer] @ xb
            hb = hb / (1 + np.exp(-hb)) * (p["w3"][layer] @ xb)
            x = x + p["w2"][layer] @ hb
        out.append(p["wcls"] @ rms(x, p["rfin"]))
    return np.array(out)


def l2c_tokenizer(path: Path, vocab: int):
    data = path.read_bytes()
    off = 4
    toks = []
    for _ in range(vocab):
        _score, n = struct.unpack_from("<fi", data, off)
        off += 8
        toks.append(data[off : off + n])
        off += n
    return toks


def l2c_decode(toks, ids):
    """run.c's decode(): strip the space after BOS, <0xXX> -> byte."""
    out = b""
    prev = 1
    for t in ids:
        piece = toks[t]
        if prev == 1 and piece.startswith(b" "):
            piece = piece[1:]
        if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
            piece = bytes([int(piece[3:5], 16)])
        out += piece
        prev = t
    return out


@pytest.fixture(scope="module")
def stories_f32(stories260k_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("l2c") / "stories260K-f32.gguf"
    quantize(stories260k_dir / "stories260K.bin", out, "F32", tokenizer=stories260k_dir / "tok512.bin")
    return out


def test_stories260k_greedy_matches_numpy_reference(stories260k_dir, stories_f32):
    from edgellama import Llama

    p = l2c_read(stories260k_dir / "stories260K.bin")
    # greedy continuation from BOS with the NumPy reference: one forward over the whole text
    ref_tokens = [1]
    for _ in range(N_GREEDY):
        ref_tokens.append(int(l2c_forward(p, ref_tokens)[-1].argmax()))
    ref_logits = l2c_forward(p, ref_tokens[:-1])

    llm = Llama(str(stories_f32), n_ctx=64, precision="exact", type_k="f32", type_v="f32")
    ours = [1]
    logits = []
    for _ in range(N_GREEDY):
        lg = llm.eval([ours[-1]])[-1]
        logits.append(lg)
        ours.append(int(np.argmax(lg)))
    assert ours == ref_tokens
    err = np.abs(np.array(logits) - ref_logits).max() / np.abs(ref_logits).max()
    assert err < 1e-5, err

    toks = l2c_tokenizer(stories260k_dir / "tok512.bin", p["vocab"])
    text = l2c_decode(toks, ref_tokens[1:]).decode("utf-8")
    assert len(text) > 20 and text.isprintable()
    if hasattr(llm, "detokenize"):
        assert llm.detokenize(ref_tokens[1:]).decode("utf-8").lstrip(" ") == text


def test_stories260k_vocab_and_metadata(stories260k_dir, stories_f32):
    r = GGUFReader(stories_f32)
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("tokenizer.ggml.") or k.endswith("_id") or k.endswith("model")}
    assert f["general.architecture"] == "llama"
    assert f["general.file_type"] == 0 and f["general.quantization_version"] == 2
    assert f["llama.embedding_length"] == 64 and f["llama.block_count"] == 5
    assert f["llama.attention.head_count"] == 8 and f["llama.attention.head_count_kv"] == 4
    assert f["llama.feed_forward_length"] == 172 and f["llama.context_length"] == 512
    assert f["llama.rope.dimension_count"] == 8
    assert f["tokenizer.ggml.model"] == "llama"
    assert (f["tokenizer.ggml.bos_token_id"], f["tokenizer.ggml.eos_token_id"], f["tokenizer.ggml.unknown_token_id"]) == (1, 2, 0)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and types[:3] == [2, 3, 3]
    assert tokens[3] == "<0x00>" and types[3] == 6
    src = l2c_tokenizer(stories260k_dir / "tok512.bin", 512)
    # every normal token is the llama2.c piece with spaces turned back into U+2581
    for i in range(259, 512):
        assert tokens[i].encode() == src[i].replace(b" ", "\u2581".encode()), i
        assert types[i] == 1
    # untied classifier absent: stories260K shares the embedding
    names = [t.name for t in r.tensors]
    assert "output.weight" not in names and "token_embd.weight" in names
    assert len(names) == 2 + 9 * 5


def test_stories260k_quantized_mix_fallbacks(stories260k_dir, tmp_path):
    notes = []
    out = quantize(
        stories260k_dir / "stories260K.bin", tmp_path / "q.gguf", "Q4_K_M",
        tokenizer=stories260k_dir / "tok512.bin", on_note=notes.append,
    )
    r = GGUFReader(out)
    types = {t.name: t.tensor_type.name for t in r.tensors}
    assert types["blk.0.attn_q.weight"] == "Q5_0"  # Q4_K cannot hold 64-value rows
    assert types["blk.0.ffn_down.weight"] == "F16"  # 172 is not a multiple of 32
    assert types["blk.2.attn_v.weight"] == "Q8_0"  # Q6_K bump (use_more_bits(2, 5)) -> Q8_0 fallback
    assert types["blk.0.attn_v.weight"] == "Q5_0"
    assert types["token_embd.weight"] == "Q8_0"  # tied output: Q8_0 when not a multiple of 256
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert r.fields["general.file_type"].contents() == 15
    assert any("row length 64 is not a multiple of the Q4_K block size 256" in n for n in notes)
    from edgellama import Llama

    llm = Llama(str(out), n_ctx=32)
    lg = llm.eval([1, 403, 407])
    assert lg.shape == (3, 512) and np.all(np.isfinite(lg))


def _write_legacy(path: Path, dim=16, hid=24, L=1, nh=2, nkv=1, vocab=-8, seq=4, truncate=0, seed=0):
    rng = np.random.default_rng(seed)
    hs = dim // nh
    v = abs(vocab)
    n = v * dim + L * dim + L * dim * dim + 2 * L * nkv * hs * dim + L * dim * dim + L * dim + 3 * L * hid * dim + dim + seq * hs
    if vocab < 0:
        n += v * dim
    body = rng.standard_normal(n).astype("<f4").tobytes()
    path.write_bytes(struct.pack("<7i", dim, hid, L, nh, nkv, vocab, seq) + body[: len(body) - truncate])


def _write_tok(path: Path, vocab=8):
    out = struct.pack("<i", 8)
    for i in range(vocab):
        t = [b"<unk>", b"\n<s>\n", b"\n</s>\n"][i] if i < 3 else b" a%d" % i
        out += struct.pack("<fi", -float(i), len(t)) + t
    path.write_bytes(out)


def test_untied_classifier_and_tokenizer_beside(tmp_path):
    _write_legacy(tmp_path / "m.bin", vocab=-8)
    _write_tok(tmp_path / "tokenizer.bin")
    out = quantize(tmp_path / "m.bin", tmp_path / "m.gguf", "F32")
    r = GGUFReader(out)
    names = [t.name for t in r.tensors]
    assert "output.weight" in names
    raw = (tmp_path / "m.bin").read_bytes()
    cls = np.frombuffer(raw[len(raw) - 8 * 16 * 4 :], dtype="<f4").reshape(8, 16)
    got = next(t for t in r.tensors if t.name == "output.weight").data
    assert np.array_equal(np.asarray(got).reshape(8, 16), cls)
    assert r.fields["tokenizer.ggml.tokens"].contents()[3] == "\u2581a3"


def test_version1_header(tmp_path):
    dim, hid, L, nh, nkv, vocab, seq = 16, 24, 1, 2, 1, 8, 4
    hs = dim // nh
    rng = np.random.default_rng(1)
    sizes = [dim] * L + [dim] * L + [dim] + [vocab * dim] + [dim * dim] * L + [nkv * hs * dim] * L * 2 + [dim * dim] * L
    sizes += [hid * dim] * L * 3
    body = rng.standard_normal(sum(sizes)).astype("<f4")
    header = struct.pack("<Ii7iB", 0x616B3432, 1, dim, hid, L, nh, nkv, vocab, seq, 1)
    header += b"\0" * (256 - len(header))
    (tmp_path / "v1.bin").write_bytes(header + body.tobytes())
    _write_tok(tmp_path / "tok.bin")
    out = quantize(tmp_path / "v1.bin", tmp_path / "v1.gguf", "F32", tokenizer=tmp_path / "tok.bin")
    r = GGUFReader(out)
    t = {x.name: np.asarray(x.data) for x in r.tensors}
    assert np.array_equal(t["blk.0.attn_norm.weight"], body[:dim])
    assert np.array_equal(t["token_embd.weight"].reshape(vocab, dim), body[3 * dim : 3 * dim + vocab * dim].reshape(vocab, dim))
    off = 3 * dim + vocab * dim
    assert np.array_equal(t["blk.0.attn_q.weight"].reshape(dim, dim), body[off : off + dim * dim].reshape(dim, dim))


def test_truncated_checkpoint(tmp_path):
    _write_legacy(tmp_path / "m.bin", truncate=40)
    _write_tok(tmp_path / "tokenizer.bin")
    with pytest.raises(ConversionError, match="truncated llama2.c checkpoint"):
        quantize(tmp_path / "m.bin", tmp_path / "m.gguf", "F32")
    assert not (tmp_path / "m.gguf").exists()


def test_missing_tokenizer(tmp_path):
    _write_legacy(tmp_path / "m.bin")
    with pytest.raises(ConversionError, match="no tokenizer: pass --tokenizer"):
        quantize(tmp_path / "m.bin", tmp_path / "m.gguf", "F32")


def test_unrecognised_input(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"\xff" * 100)
    with pytest.raises(ConversionError, match="unrecognised input"):
        quantize(tmp_path / "junk.bin", tmp_path / "o.gguf", "F32")
    with pytest.raises(FileNotFoundError, match="input not found"):
        quantize(tmp_path / "nope.bin", tmp_path / "o.gguf", "F32")
    with pytest.raises(ValueError, match="unknown --type 'Q7_K'"):
        quantize(tmp_path / "junk.bin", tmp_path / "o.gguf", "Q7_K")


@pytest.mark.parametrize("tok_vocab", [6, 9])
def test_tokenizer_of_another_size_is_an_error(tmp_path, tok_vocab):
    _write_legacy(tmp_path / "m.bin", vocab=-8)
    _write_tok(tmp_path / "tok.bin", vocab=tok_vocab)
    with pytest.raises(ConversionError, match=f"tokenizer has {tok_vocab} tokens but the model's vocabulary has 8"):
        quantize(tmp_path / "m.bin", tmp_path / "m.gguf", "F32", tokenizer=tmp_path / "tok.bin")
    assert not (tmp_path / "m.gguf").exists()


def test_sentencepiece_tokenizer_of_another_size_is_an_error(tmp_path, llama2_tokenizer_model):
    _write_legacy(tmp_path / "m.bin", vocab=-8)  # the Llama 2 tokenizer has 32000 pieces
    with pytest.raises(ConversionError, match="tokenizer has 32000 tokens but the model's vocabulary has 8"):
        quantize(tmp_path / "m.bin", tmp_path / "m.gguf", "F32", tokenizer=llama2_tokenizer_model)
