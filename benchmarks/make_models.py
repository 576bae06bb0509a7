"""Write random-weight GGUF models of real shapes for benchmarking (the weights are random but
well-formed blocks with sane scales, so both runtimes compute on finite numbers; tokens are
meaningless, speed is not).

    python benchmarks/make_models.py [--out benchmarks/models] [--shape tinyllama] [--types Q4_0,Q4_1,Q8_0,Q4_K_M]

Shapes: tinyllama = TinyLlama-1.1B (dim 2048, 22 layers, 32 heads, 4 KV heads, ffn 5632, vocab 32000).
F16 holds float weights with a trained-like distribution (quantizer benchmarks). Type mixes
of the quantized files follow llama.cpp's quantize defaults: Q4_0/Q4_1 keep output.weight as Q6_K; Q4_K_M
uses Q6_K for output, and for attn_v/ffn_down of the first/last eighth of the layers and every
third layer in between.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

SHAPES = {
    "tinyllama": dict(n_embd=2048, n_layer=22, n_head=32, n_head_kv=4, n_ff=5632, n_vocab=32000, ctx=2048,
                      name="TinyLlama-1.1B-shape"),
    "smollm2-135m": dict(n_embd=576, n_layer=30, n_head=9, n_head_kv=3, n_ff=1536, n_vocab=49152, ctx=8192,
                         name="SmolLM2-135M-shape"),
    # Qwen2-0.5B: n_embd 896 is not a multiple of 256, so llama-quantize's Q4_K_M falls back to
    # Q5_0/Q8_0 for most matrices (the mix real 0.5B "Q4_K_M" files have); q/k/v have biases and the
    # output matrix is tied to the embeddings.
    "qwen2-0.5b": dict(n_embd=896, n_layer=24, n_head=14, n_head_kv=2, n_ff=4864, n_vocab=151936, ctx=32768,
                       name="Qwen2-0.5B-shape", arch="qwen2", tied=True, qkv_bias=True, rope_base=1e6),
}

# type -> (values per block, bytes per block, [(offset of an fp16 field, scale)])
LAYOUT = {
    "Q4_0": (32, 18, [(0, 2e-3)]),
    "Q4_1": (32, 20, [(0, 2e-3), (2, -1.5e-2)]),
    "Q8_0": (32, 34, [(0, 2e-4)]),
    "Q4_K": (256, 144, [(0, 2e-4), (2, 2e-4)]),
    "Q6_K": (256, 210, [(208, 1e-4)]),
}
FTYPE = {"F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K_M": 15}


def random_blocks(t: str, n_out: int, n_in: int, rng: np.random.Generator) -> np.ndarray:
    qk, size, fields = LAYOUT[t]
    nb = n_out * (n_in // qk)
    raw = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
    for off, scale in fields:
        vals = rng.uniform(0.5, 1.0, nb).astype(np.float32) * scale
        raw[:, off:off + 2] = vals.astype(np.float16).view(np.uint8).reshape(nb, 2)
    if t == "Q4_1":  # m = -7.5 d: values centred on zero (an all-negative bias makes activations blow up)
        d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)
        raw[:, 2:4] = (-7.5 * d).astype(np.float16).view(np.uint8).reshape(nb, 2)
    if t == "Q6_K":
        raw[:, 192:208] = rng.integers(-32, 32, size=(nb, 16), dtype=np.int8).view(np.uint8)
    return raw.reshape(n_out, (n_in // qk) * size)


def random_f16(n_out: int, n_in: int, rng: np.random.Generator) -> np.ndarray:
    """Float weights shaped like a trained model's: heavy-tailed (Student t, 5 degrees of freedom),
    std ~ 1/sqrt(n_in), per-row scales varying by +-50 %, a few large outlier columns."""
    x = rng.standard_t(5, size=(n_out, n_in)).astype(np.float32)
    x *= (0.5 + rng.random((n_out, 1), dtype=np.float32)) / np.float32(np.sqrt(n_in) * 1.3)
    cols = rng.choice(n_in, size=max(1, n_in // 256), replace=False)
    x[:, cols] *= np.float32(4.0)
    return x.astype(np.float16)


def tensor_type(mix: str, name: str, layer: int, n_layer: int) -> str:
    if mix == "F16":
        return "F16"
    if mix in ("Q4_0", "Q4_1"):
        return "Q6_K" if name == "output" else mix
    if mix == "Q8_0":
        return "Q8_0"
    # Q4_K_M
    if name == "output":
        return "Q6_K"
    if name in ("attn_v", "ffn_down"):
        more_bits = layer < n_layer // 8 or layer >= 7 * n_layer // 8 or (layer - n_layer // 8) % 3 == 2
        return "Q6_K" if more_bits else "Q4_K"
    return "Q4_K"


def write_model(path: str, shape: dict, mix: str, seed: int = 0) -> None:
    import gguf

    rng = np.random.default_rng(seed)
    e, L, H, Hkv, F, V = (shape[k] for k in ("n_embd", "n_layer", "n_head", "n_head_kv", "n_ff", "n_vocab"))
    hd = e // H
    arch = shape.get("arch", "llama")
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"{shape['name']} random {mix}")
    w.add_context_length(shape["ctx"])
    w.add_embedding_length(e)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(Hkv)
    w.add_rope_dimension_count(hd)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(shape.get("rope_base", 10000.0))
    w.add_file_type(FTYPE[mix])
    w.add_vocab_size(V)
    # A minimal SPM vocabulary: <unk> <s> </s>, the 256 byte tokens, then placeholders.
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += [f"\u2581t{i}" for i in range(V - len(tokens))]
    types = [2, 3, 3] + [6] * 256 + [1] * (V - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(V - 259)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    def add(name: str, t: str, n_out: int, n_in: int):
        if t == "F16":
            w.add_tensor(name, random_f16(n_out, n_in, rng))
            return
        data = random_blocks(t, n_out, n_in, rng)
        w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=gguf.GGMLQuantizationType[t])

    emb_type = {"Q4_K_M": "Q4_K"}.get(mix, mix)
    add("token_embd.weight", emb_type, V, e)
    w.add_tensor("output_norm.weight", np.ones(e, np.float32))
    if not shape.get("tied"):
        add("output.weight", tensor_type(mix, "output", 0, L), V, e)
    for il in range(L):
        p = f"blk.{il}."
        w.add_tensor(p + "attn_norm.weight", np.ones(e, np.float32))
        w.add_tensor(p + "ffn_norm.weight", np.ones(e, np.float32))
        for name, n_out, n_in in (("attn_q", e, e), ("attn_k", Hkv * hd, e), ("attn_v", Hkv * hd, e),
                                  ("attn_output", e, e), ("ffn_gate", F, e), ("ffn_up", F, e), ("ffn_down", e, F)):
            add(p + name + ".weight", tensor_type(mix, name, il, L), n_out, n_in)
            if shape.get("qkv_bias") and name in ("attn_q", "attn_k", "attn_v"):
                w.add_tensor(p + name + ".bias", (0.02 * rng.standard_normal(n_out)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "models"))
    ap.add_argument("--shape", default="tinyllama", choices=sorted(SHAPES))
    ap.add_argument("--types", default="Q4_0,Q4_1,Q8_0,Q4_K_M")
    ap.add_argument("--force", action="store_true", help="rewrite files that exist")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for mix in args.types.split(","):
        path = os.path.join(args.out, f"{args.shape}-random-{mix}.gguf")
        if os.path.exists(path) and not args.force:
            print(f"exists: {path}")
            continue
        write_model(path + ".tmp", SHAPES[args.shape], mix)
        os.replace(path + ".tmp", path)
        print(f"wrote {path} ({os.path.getsize(path) / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
