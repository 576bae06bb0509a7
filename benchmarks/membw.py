"""Read bandwidth of this machine (the decode roofline) and, for a GGUF model, the bytes of weights
one decoded token reads and the tokens/s that bandwidth allows.

    python benchmarks/membw.py [MODEL.gguf ...] [-t 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from edgellama import _core  # noqa: E402


def weight_bytes_per_token(path: str) -> int:
    """Bytes of every 2-D weight a decode step multiplies with (all tensors except norms and the
    token embedding, which is read one row per token; a tied embedding counts as the output)."""
    import gguf

    r = gguf.GGUFReader(path)
    names = {t.name for t in r.tensors}
    total = 0
    for t in r.tensors:
        if len(t.shape) < 2:
            continue
        if t.name == "token_embd.weight" and "output.weight" in names:
            continue
        total += int(t.n_bytes)
    return total


def measure(threads=(1, 2), n_bytes=512 << 20, repeats=5):
    return {int(t): _core.read_bandwidth(n_bytes, int(t), repeats) for t in threads}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument("-t", "--threads", default="1,2")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    bw = measure([int(x) for x in args.threads.split(",")])
    out = {"read_bandwidth_GBps": bw, "models": {}}
    for m in args.models:
        wb = weight_bytes_per_token(m)
        out["models"][m] = {"weight_bytes_per_token": wb,
                            "roofline_tg_tps": {t: b * 1e9 / wb for t, b in bw.items()}}
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    for t, b in bw.items():
        print(f"read bandwidth, {t} thread(s): {b:.1f} GB/s")
    for m, d in out["models"].items():
        roof = ", ".join(f"{t}t {v:.1f}" for t, v in d["roofline_tg_tps"].items())
        print(f"{os.path.basename(m)}: {d['weight_bytes_per_token'] / 1e6:.0f} MB of weights per token -> "
              f"roofline tg t/s: {roof}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
