"""Issue-5 comparison: edgellama's quantizer vs llama.cpp's llama-quantize, on the same F32 base and
the same text, in one run. For each type: KL divergence of the quantized model against the F32 base
(ours without and with calibration, llama-quantize without imatrix), the ratio ours / llama.cpp, and
the wall time of each quantizer. Both quantized files are *evaluated* by edgellama (the formats are
byte-compatible), so the comparison measures the quantizers, not the engines. Finally llama.cpp's
llama-completion loads one of our files and generates, as an interoperability check.

    PYTHONPATH=src python3 benchmarks/quant_vs_llamacpp.py \
        --llamacpp-bin /path/to/llama.cpp/build/bin --out /tmp/qcmp [--types Q4_0 Q4_K_M ...] \
        [--models stories260K smollm2] [--ctx 256] [--windows 8] [--calib-windows 8]

Text: the calibration text is the first half of --text, KL is measured on the second half, so the
calibrated model is never scored on the text it was calibrated with. The base model's logits are
computed once per window and the calibration statistics once per model (not once per type).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from edgellama.convert import load_checkpoint, write_gguf
from edgellama.llama import Llama
from edgellama.perplexity import _bos, _tokenize, score_windows
from edgellama.quantize import collect_importance, quantize

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGELLAMA_SHARED", ROOT.parent / "shared")) / "models"
DEFAULT_TEXT = Path("/usr/share/common-licenses/GPL-3")


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llamacpp-bin", type=Path, required=True, help="folder with llama-quantize, llama-completion")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--text", type=Path, default=DEFAULT_TEXT)
    ap.add_argument("--types", nargs="+", default=["Q8_0", "Q4_0", "Q4_1", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M"])
    ap.add_argument("--models", nargs="+", default=["stories260K", "smollm2"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--windows", type=int, default=4, help="scored windows of --ctx tokens")
    ap.add_argument("--calib-windows", type=int, default=8, help="calibration windows of --ctx tokens")
    ap.add_argument("--rounding", default="search", choices=("search", "reference"), help="our uncalibrated rounding")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    text = a.text.read_text(encoding="utf-8", errors="replace")
    half = len(text) // 2
    calib_text = text[:half]
    eval_text = text[half:]

    sources = {
        "stories260K": SHARED / "stories260K" / "stories260K.bin",
        # SmolLM2 exists only as Q4_1; its dequantized F32 is the base both quantizers start from.
        "smollm2": SHARED / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf",
    }
    print(f"# quantizer comparison, text={a.text} (calibrate on 1st half: {a.calib_windows} windows; score 2nd half: "
          f"{a.windows} windows), ctx={a.ctx}, threads={a.threads}, our rounding={a.rounding}", flush=True)
    for name in a.models:
        base = a.out / f"{name}.F32.gguf"
        if not base.exists():
            tok = sources[name].parent / "tok512.bin" if name == "stories260K" else None
            quantize(sources[name], base, "F32", threads=a.threads, tokenizer=tok)
        ck = load_checkpoint(base)
        t0 = time.perf_counter()
        imp = collect_importance(base, calib_text, n_ctx=a.ctx, threads=a.threads, max_chunks=a.calib_windows)
        t_cal = time.perf_counter() - t0
        base_llm = Llama(str(base), n_ctx=a.ctx, n_threads=a.threads, n_batch=a.ctx)
        tokens = _tokenize(base_llm, eval_text)[: a.windows * a.ctx]
        bos = _bos(base_llm)
        cache = {}

        def base_eval(win, _llm=base_llm, _cache=cache):
            key = tuple(win)
            if key not in _cache:
                _llm.reset()
                _cache[key] = _llm.eval(win)
            return _cache[key]

        def kl_of(path):
            llm = Llama(str(path), n_ctx=a.ctx, n_threads=a.threads, n_batch=a.ctx)
            try:
                def f(win):
                    llm.reset()
                    return llm.eval(win)
                return score_windows(f, tokens, a.ctx, bos, base_eval).kl_mean
            finally:
                llm.close()

        print(f"\n## {name} (base {base.name}; calibration statistics {t_cal:.1f} s)")
        print(f"{'type':8} {'KL ours':>10} {'KL ours+cal':>12} {'KL llama.cpp':>13} {'ratio':>6} {'ratio cal':>9} "
              f"{'t ours s':>9} {'t llama.cpp s':>13}", flush=True)
        for t in a.types:
            ours, ours_cal, theirs = (a.out / f"{name}.{t}.{k}.gguf" for k in ("ours", "ourscal", "llamacpp"))
            t_ours = timed(lambda: write_gguf(ck, ours, t, threads=a.threads, progress=False, rounding=a.rounding,
                                              on_note=lambda s: None))
            write_gguf(ck, ours_cal, t, importance=imp, threads=a.threads, progress=False, on_note=lambda s: None)
            cmd = [str(a.llamacpp_bin / "llama-quantize"), str(base), str(theirs), t, str(a.threads)]
            t_theirs = timed(lambda: subprocess.run(cmd, check=True, capture_output=True))
            kl = {key: kl_of(f) for key, f in (("ours", ours), ("cal", ours_cal), ("theirs", theirs))}
            ratio = kl["ours"] / kl["theirs"] if kl["theirs"] > 0 else float("nan")
            ratio_cal = kl["cal"] / kl["theirs"] if kl["theirs"] > 0 else float("nan")
            print(f"{t:8} {kl['ours']:10.5f} {kl['cal']:12.5f} {kl['theirs']:13.5f} {ratio:6.2f} {ratio_cal:9.2f} "
                  f"{t_ours:9.1f} {t_theirs:13.1f}", flush=True)
        base_llm.close()

    # Interoperability: llama.cpp loads a file we wrote and generates from it.
    ours = next(a.out.glob("smollm2.Q4_K_M.ours.gguf"), None) or next(a.out.glob("*.ours.gguf"))
    cmd = [str(a.llamacpp_bin / "llama-completion"), "-m", str(ours), "-p", "The capital of France is", "-n", "12",
           "--temp", "0", "-no-cnv", "-t", str(a.threads)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(f"\n## llama.cpp on our {ours.name}: exit {r.returncode}\n{r.stdout.strip()[-300:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
