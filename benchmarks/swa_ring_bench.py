"""Sliding-window KV ring (issue 15) vs full-size caches (swa_full=True) on a gemma2/gemma3 GGUF:
KV cache bytes, and single-token decode time deep into the context, measured interleaved in one process
(ring and full contexts alternate per repetition, so both see the same machine state). Also checks that
both give the same logits.

    python benchmarks/swa_ring_bench.py MODEL.gguf [--n-ctx 8192] [--depth 4096] [-t 2] [-r 5] [--json out.json]
    python benchmarks/swa_ring_bench.py --make-gemma3 DIR [--window 512]   # writes DIR/gemma3-bench.gguf

--make-gemma3 builds a random Gemma-3-like model with transformers (hidden 640, 12 layers, 4/1 heads of 256,
window 512, pattern 6) and converts it with `edgellama quantize` to Q8_0 (needs transformers + torch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from edgellama import _core  # noqa: E402


def make_gemma3(out_dir: Path, window: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    import hf_tiny_models as H
    from edgellama.quantize import quantize

    v = H.Variant("gemma3-bench", "gemma3", "Gemma3ForCausalLM", "Gemma3TextConfig",
                  dict(H.VARIANTS["gemma3"].config, sliding_window=window, hidden_size=640, intermediate_size=2048,
                       num_attention_heads=4, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
                       max_position_embeddings=32768, initializer_range=0.02), n_layer=12)
    hf_dir = H.build_hf(v, out_dir / "hf")
    path = out_dir / "gemma3-bench.gguf"
    quantize(hf_dir, path, "Q8_0", progress=False)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--make-gemma3", metavar="DIR")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--n-ctx", type=int, default=8192)
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--depth", type=int, default=4096, help="tokens in the cache before the timed decodes")
    ap.add_argument("--steps", type=int, default=16, help="single-token decodes per repetition")
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("-r", "--reps", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.make_gemma3:
        print(make_gemma3(Path(args.make_gemma3), args.window))
        return 0
    if not args.model:
        ap.error("MODEL.gguf (or --make-gemma3 DIR) is required")
    if args.steps > args.n_batch + 1:
        ap.error("--steps must be <= n_batch + 1 (the ring's rollback limit)")
    model = _core.Model(args.model)
    hp = model.hparams
    if not any(hp["layer_swa"]):
        print(f"{args.model}: no sliding-window layers; the ring does not apply", file=sys.stderr)
        return 1
    n_vocab = hp["n_vocab"]
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, n_vocab, size=args.depth).astype(np.int32)
    steps = rng.integers(0, n_vocab, size=args.steps).astype(np.int32)
    ctxs = {}
    for name, full in (("ring", False), ("full", True)):
        c = _core.Context(model, args.n_ctx, args.threads, args.n_batch, "f16", "f16", "fast", swa_full=full)
        c.decode(prompt, False, False)
        ctxs[name] = c
    times = {n: [] for n in ctxs}
    logits = {}
    for _ in range(args.reps):
        for name, c in ctxs.items():
            t0 = time.perf_counter()
            out = [c.decode(steps[i:i + 1], False) for i in range(args.steps)]
            times[name].append((time.perf_counter() - t0) / args.steps * 1e3)
            logits[name] = np.stack(out)
            c.truncate(args.depth)
    same = bool(np.array_equal(logits["ring"], logits["full"]))
    res = {
        "model": os.path.basename(args.model), "n_ctx": args.n_ctx, "n_batch": args.n_batch, "depth": args.depth,
        "window": hp["n_swa"], "windowed_layers": f"{sum(hp['layer_swa'])}/{hp['n_layer']}",
        "ring_positions": ctxs["ring"].kv_ring_size,
        "kv_bytes_ring": ctxs["ring"].kv_bytes, "kv_bytes_full": ctxs["full"].kv_bytes,
        "decode_ms_ring": statistics.median(times["ring"]), "decode_ms_full": statistics.median(times["full"]),
        "identical_logits": same,
    }
    print(f"{res['model']}: window {res['window']} on {res['windowed_layers']} layers, n_ctx {args.n_ctx}, "
          f"ring {res['ring_positions']} positions")
    print(f"  KV cache: full {res['kv_bytes_full'] / 2**20:.1f} MiB -> ring {res['kv_bytes_ring'] / 2**20:.1f} MiB "
          f"({1 - res['kv_bytes_ring'] / res['kv_bytes_full']:.0%} less)")
    print(f"  decode at depth {args.depth}: full {res['decode_ms_full']:.2f} ms/token, ring "
          f"{res['decode_ms_ring']:.2f} ms/token (median of {args.reps}); identical logits: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
