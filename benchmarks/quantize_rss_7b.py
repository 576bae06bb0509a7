"""Issue 17 item 5, memory: `edgellama quantize` of a 7B-shape F16 model (LLaMA-2-7B: n_embd 4096,
n_ff 11008, 32 layers, 32 heads, vocab 32000; 13.5 GB) to Q4_K_M, timed from outside with
os.wait4: wall seconds, CPU seconds and peak RSS, against the target peak RSS <= 2 GiB + the
largest tensor's size.

    PYTHONPATH=src python3 benchmarks/quantize_rss_7b.py [--dir /work/benchmodels] [--type Q4_K_M]
        [--threads N] [--llamacpp-bin DIR] [--delete] [--shape 7b|tiny]

The F16 source (random Student-t weights, written one tensor at a time: the generator holds one
tensor, never the model) is made once as DIR/llama2-7b-shape-random-F16.gguf and reused by later
runs; --delete removes it and the output at the end. --llamacpp-bin also runs llama-quantize on
the same file for comparison. --shape tiny runs the same steps on a 2-layer model of small
dimensions (a check of the script in seconds). Needs ~13.5 GB free for the source plus the output.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    "7b": dict(n_embd=4096, n_ff=11008, n_layer=32, n_head=32, n_head_kv=32, n_vocab=32000, ctx=4096),
    "tiny": dict(n_embd=256, n_ff=512, n_layer=2, n_head=4, n_head_kv=4, n_vocab=1024, ctx=256),
}
GIB = 1024**3


def tensor_list(sh: dict):
    """(name, numpy shape, dtype) of every tensor of a LLaMA-2 model, in llama.cpp's file order."""
    e, f, v = sh["n_embd"], sh["n_ff"], sh["n_vocab"]
    kv = e // sh["n_head"] * sh["n_head_kv"]
    out = [("token_embd.weight", (v, e), np.float16)]
    for i in range(sh["n_layer"]):
        p = f"blk.{i}."
        out += [(p + "attn_norm.weight", (e,), np.float32), (p + "ffn_norm.weight", (e,), np.float32)]
        out += [(p + n, s, np.float16) for n, s in (("attn_q.weight", (e, e)), ("attn_k.weight", (kv, e)),
                                                   ("attn_v.weight", (kv, e)), ("attn_output.weight", (e, e)),
                                                   ("ffn_gate.weight", (f, e)), ("ffn_up.weight", (f, e)),
                                                   ("ffn_down.weight", (e, f)))]
    out += [("output_norm.weight", (e,), np.float32), ("output.weight", (v, e), np.float16)]
    return out


def write_source(path: Path, sh: dict, seed: int = 0) -> None:
    """The F16 model, one tensor in memory at a time. Values: slices of one pool of Student-t
    (5 degrees of freedom) numbers at random offsets, each slice scaled by its own factor (making
    a fresh random tensor per weight would cost minutes of CPU for 6.7e9 values)."""
    import gguf

    rng = np.random.default_rng(seed)
    pool = (rng.standard_t(5, 1 << 23) / (np.sqrt(sh["n_embd"]) * 1.3)).astype(np.float16)
    chunk = 1 << 20
    e, v = sh["n_embd"], sh["n_vocab"]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("LLaMA-2-7B-shape random F16")
    w.add_context_length(sh["ctx"])
    w.add_embedding_length(e)
    w.add_block_count(sh["n_layer"])
    w.add_feed_forward_length(sh["n_ff"])
    w.add_head_count(sh["n_head"])
    w.add_head_count_kv(sh["n_head_kv"])
    w.add_rope_dimension_count(e // sh["n_head"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(1)
    w.add_vocab_size(v)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += [f"\u2581t{i}" for i in range(v - len(tokens))]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 259 + [-float(i) for i in range(v - 259)])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (v - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    tensors = tensor_list(sh)
    for name, shape, dt in tensors:
        w.add_tensor_info(name, shape, np.dtype(dt), int(np.prod(shape)) * np.dtype(dt).itemsize)
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape, dt in tensors:
        n = int(np.prod(shape))
        if dt == np.float32:
            data = np.ones(shape, np.float32)
        else:
            data = np.empty(n, np.float16)
            for s in range(0, n, chunk):
                k = min(chunk, n - s)
                off = int(rng.integers(0, pool.size - k))
                np.multiply(pool[off:off + k], np.float16(rng.uniform(0.5, 1.5)), out=data[s:s + k])
            data = data.reshape(shape)
        w.write_tensor_data(data)
        del data
    w.close()


def run_timed(cmd, env=None):
    """(wall s, CPU s, peak RSS bytes) of cmd run to completion, from the OS's accounting."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"failed: {' '.join(map(str, cmd))}\n{err.decode(errors='replace')[-2000:]}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024  # ru_maxrss: KiB on Linux


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("/work/benchmodels"), help="where the F16 source and output go")
    ap.add_argument("--type", default="Q4_K_M")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    ap.add_argument("--llamacpp-bin", type=Path, help="also run DIR/llama-quantize on the same source")
    ap.add_argument("--delete", action="store_true", help="remove the F16 source and the outputs at the end")
    ap.add_argument("--write-source", type=Path, help=argparse.SUPPRESS)  # internal: the generator child
    a = ap.parse_args(argv)
    sh = SHAPES[a.shape]
    if a.write_source:
        write_source(a.write_source, sh)
        return 0
    a.dir.mkdir(parents=True, exist_ok=True)
    tag = "llama2-7b-shape" if a.shape == "7b" else f"llama2-{a.shape}-shape"
    src = a.dir / f"{tag}-random-F16.gguf"
    tensors = tensor_list(sh)
    data_bytes = sum(int(np.prod(s)) * np.dtype(d).itemsize for _, s, d in tensors)
    largest_name, largest_shape, largest_dt = max(tensors, key=lambda t: int(np.prod(t[1])) * np.dtype(t[2]).itemsize)
    largest = int(np.prod(largest_shape)) * np.dtype(largest_dt).itemsize
    if not (src.exists() and src.stat().st_size > data_bytes):
        t0 = time.perf_counter()
        tmp = src.with_suffix(".partial")
        # in a child process: a forked child's peak RSS counts its parent's pages at the fork, so
        # this process must stay small for the measurements below
        subprocess.run([sys.executable, __file__, "--shape", a.shape, "--write-source", str(tmp)], check=True)
        os.replace(tmp, src)
        print(f"# wrote {src} ({src.stat().st_size / GIB:.2f} GiB) in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} load {os.getloadavg()} source={src.name} "
          f"({src.stat().st_size / GIB:.2f} GiB) type={a.type} threads={a.threads}", flush=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    runs = [("edgellama", [sys.executable, "-m", "edgellama", "quantize", str(src), str(a.dir / f"{tag}-{a.type}.gguf"),
                           "--type", a.type, "--threads", str(a.threads), "--quiet"])]
    if a.llamacpp_bin:
        runs.append(("llama-quantize", [str(a.llamacpp_bin / "llama-quantize"), str(src),
                                        str(a.dir / f"{tag}-{a.type}.lq.gguf"), a.type, str(a.threads)]))
    target = 2 * GIB + largest
    ok = True
    print(f"largest tensor: {largest_name} {list(largest_shape)} {largest / 2**20:.0f} MiB; "
          f"target peak RSS <= 2 GiB + that = {target / 2**20:.0f} MiB")
    print(f"{'quantizer':16s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS MiB':>13s}  target")
    for name, cmd in runs:
        wall, cpu, rss = run_timed(cmd, env)
        met = rss <= target
        ok &= met or name != "edgellama"
        print(f"{name:16s} {wall:8.1f} {cpu:8.1f} {rss / 2**20:13.0f}  {'met' if met else 'MISSED'}", flush=True)
    print(f"# load after {os.getloadavg()}")
    if a.delete:
        for p in [src] + [a.dir / f"{tag}-{a.type}.gguf", a.dir / f"{tag}-{a.type}.lq.gguf"]:
            p.unlink(missing_ok=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
