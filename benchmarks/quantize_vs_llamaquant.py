"""Issue 17 item 5: `edgellama quantize` vs llama.cpp's `llama-quantize`, whole process against whole
process, on every type both write, in one command:

    PYTHONPATH=src python3 benchmarks/quantize_vs_llamaquant.py /work/benchmodels/tinyllama-random-F16.gguf \
        --llamacpp-bin /path/to/llama.cpp/build/bin [--threads 2] [--reps 3] [--imatrix FILE|auto] \
        [--rounding search|reference] [--types Q4_0 Q4_K_M ...] [--text T.txt] [--out DIR] [--json results.json]

For each type the two commands run in turn (ours, theirs, ours, theirs, ...; pairing keeps the ratio
meaningful when the machine's speed drifts), each a fresh process timed from outside with os.wait4:
wall seconds, CPU seconds (user + system of the reaped child) and its peak RSS. Printed: the medians,
the median of the per-pair ratios ours/theirs (wall and CPU; > 1 means we are slower) and the peak
RSS of both. Then the KL divergence of each output against the source model on a short text (the
same engine, edgellama, evaluates both files, so this compares the quantizers, not the engines).

--rounding reference makes our Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 files byte-identical to llama-quantize's
(without an imatrix): the equal-KL speed comparison; the default, search, is our better-KL rounding.
--imatrix FILE passes the same llama.cpp importance matrix to both quantizers; --imatrix auto first
computes one with `edgellama imatrix` over the first half of --text (KL is measured on the second
half). Types that need an importance matrix (IQ3_XS, IQ3_XXS, IQ2_*, IQ1_*) get that 'auto' one when
no --imatrix is given (marked * in the table). Run it on a quiet machine; the first line records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS",
         "IQ3_S", "IQ3_M", "IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S"]
# File types both quantizers refuse without an importance matrix: without --imatrix they get an
# 'auto' one (computed once, used for these types only; their rows are tagged imat=auto).
NEEDS_IMATRIX = {"IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S"}
DEFAULT_TEXT = Path("/usr/share/common-licenses/GPL-3")


def run_timed(cmd, env=None, log=None):
    """Run cmd to completion; (wall s, cpu s, peak RSS MiB) from the OS's accounting of the child."""
    t0 = time.perf_counter()
    with open(log or os.devnull, "ab") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {' '.join(map(str, cmd))}" + (f" (log: {log})" if log else ""))
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0  # ru_maxrss is KiB on Linux


def kl_against(src, files, text, ctx, windows, threads, precision="exact"):
    """{file: (KL mean, top-1 agreement)} of each file against src on `text`, src evaluated once.
    precision "exact" (default) evaluates every file with float accumulation, so the KL is the
    quantizer's error alone; "fast" adds the int8-activation error of edgellama's fast path, which is
    chaotic (a last-bit change re-rolls it: SmolLM2, KL 9.5e-4 between two fast paths of the same
    weights) and, for a file whose weights equal the source exactly, is all that is left."""
    from edgellama.llama import Llama
    from edgellama.perplexity import _bos, _tokenize, score_windows

    base = Llama(str(src), n_ctx=ctx, n_threads=threads, n_batch=ctx, precision=precision)
    try:
        tokens = _tokenize(base, text)[: windows * ctx]
        bos = _bos(base)
        cache = {}

        def base_eval(win):
            key = tuple(win)
            if key not in cache:
                base.reset()
                cache[key] = base.eval(win)
            return cache[key]

        out = {}
        for f in files:
            llm = Llama(str(f), n_ctx=ctx, n_threads=threads, n_batch=ctx, precision=precision)
            try:
                def ev(win, llm=llm):
                    llm.reset()
                    return llm.eval(win)

                r = score_windows(ev, tokens, ctx, bos, base_eval)
                out[f] = (r.kl_mean, r.top1_agreement)
            finally:
                llm.close()
        return out
    finally:
        base.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="F16 (or F32/BF16) GGUF model both quantizers start from")
    ap.add_argument("--llamacpp-bin", type=Path, required=True, help="folder holding llama-quantize")
    ap.add_argument("--types", nargs="+", default=TYPES)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for both (default: all)")
    ap.add_argument("--reps", type=int, default=3, help="timed pairs per type (default 3)")
    ap.add_argument("--rounding", choices=("search", "reference"), default="search",
                    help="our rounding of the legacy types (edgellama quantize --rounding; default search)")
    ap.add_argument("--imatrix", help="llama.cpp imatrix file for both quantizers, or 'auto' to compute one")
    ap.add_argument("--calib-chunks", type=int, default=8, help="--imatrix auto: chunks of --ctx tokens (default 8)")
    ap.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="text for KL (2nd half) and --imatrix auto (1st)")
    ap.add_argument("--ctx", type=int, default=256, help="KL window length (default 256)")
    ap.add_argument("--windows", type=int, default=4, help="KL windows (default 4); 0 skips the KL column")
    ap.add_argument("--eval-precision", choices=("exact", "fast"), default="exact",
                    help="how edgellama evaluates both files for the KL (default exact: the quantizers' error alone)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the outputs (default: beside SOURCE)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args()
    if not a.source.is_file():
        ap.error(f"{a.source}: not found")
    if a.rounding == "reference" and a.imatrix:
        ap.error("--rounding reference takes no importance matrix (it is llama.cpp's plain rounding)")
    lq = a.llamacpp_bin / "llama-quantize"
    if not lq.is_file():
        ap.error(f"{lq}: not found")
    out_dir = a.out or a.source.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    text = a.text.read_text(encoding="utf-8", errors="replace")
    calib_text, eval_text = text[: len(text) // 2], text[len(text) // 2 :]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p))
    stem = a.source.stem
    log = out_dir / f"{stem}.quantize-bench.log"
    log.unlink(missing_ok=True)

    if a.rounding == "reference" and NEEDS_IMATRIX.intersection(a.types):
        if a.types is not TYPES:
            ap.error(f"--rounding reference takes no importance matrix, which {sorted(NEEDS_IMATRIX.intersection(a.types))} need")
        a.types = [t for t in TYPES if t not in NEEDS_IMATRIX]
    imatrix = a.imatrix
    auto_imatrix = None
    if imatrix == "auto" or (not imatrix and a.rounding == "search" and NEEDS_IMATRIX.intersection(a.types)):
        auto_imatrix = str(out_dir / f"{stem}.imatrix.gguf")
        calib = out_dir / f"{stem}.calib.txt"
        calib.write_text(calib_text)
        run_timed([sys.executable, "-m", "edgellama", "imatrix", str(a.source), "-f", str(calib), "-o", auto_imatrix,
                   "-c", str(a.ctx), "--chunks", str(a.calib_chunks), "-t", str(a.threads)], env=env, log=log)
        if imatrix == "auto":
            imatrix = auto_imatrix

    print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} load {open('/proc/loadavg').read().split()[:3]}"
          f" source={a.source.name} threads={a.threads} reps={a.reps} imatrix={imatrix or '-'} rounding={a.rounding}", flush=True)
    print(f"{'type':8} {'wall ours':>9} {'wall lq':>8} {'ratio':>6} {'cpu ours':>9} {'cpu lq':>8} {'ratio':>6} "
          f"{'RSS ours':>9} {'RSS lq':>8}  (s, s, ours/lq; MiB peak; * = with the auto imatrix)", flush=True)
    rows = []
    for t in a.types:
        t_imatrix = imatrix or (auto_imatrix if t in NEEDS_IMATRIX else None)
        im_args = ["--imatrix", t_imatrix] if t_imatrix else []
        tag = (".imat" if t_imatrix else "") + (".ref" if a.rounding == "reference" else "")
        ours_f, theirs_f = out_dir / f"{stem}.{t}{tag}.edgellama.gguf", out_dir / f"{stem}.{t}{tag}.llamaquant.gguf"
        ours_cmd = [sys.executable, "-m", "edgellama", "quantize", str(a.source), str(ours_f), "--type", t,
                    "-t", str(a.threads), "-q", "--rounding", a.rounding, *im_args]
        theirs_cmd = [str(lq), *im_args, str(a.source), str(theirs_f), t, str(a.threads)]
        ours, theirs = [], []
        for _ in range(a.reps):
            ours.append(run_timed(ours_cmd, env=env, log=log))
            theirs.append(run_timed(theirs_cmd, log=log))
        med = lambda v, i: statistics.median(x[i] for x in v)  # noqa: E731
        r_wall = statistics.median(o[0] / l[0] for o, l in zip(ours, theirs))
        r_cpu = statistics.median(o[1] / l[1] for o, l in zip(ours, theirs))
        row = dict(type=t, wall_ours=med(ours, 0), wall_lq=med(theirs, 0), wall_ratio=r_wall, cpu_ours=med(ours, 1),
                   cpu_lq=med(theirs, 1), cpu_ratio=r_cpu, rss_ours_mib=max(o[2] for o in ours),
                   rss_lq_mib=max(x[2] for x in theirs), ours=str(ours_f), theirs=str(theirs_f),
                   imatrix=t_imatrix)
        rows.append(row)
        print(f"{t:8}{'*' if t_imatrix and not imatrix else ' '}{row['wall_ours']:9.2f} {row['wall_lq']:8.2f} {r_wall:6.2f} {row['cpu_ours']:9.2f} "
              f"{row['cpu_lq']:8.2f} {r_cpu:6.2f} {row['rss_ours_mib']:9.0f} {row['rss_lq_mib']:8.0f}", flush=True)

    if a.windows > 0:
        sys.path.insert(0, str(ROOT / "src"))
        files = [p for r in rows for p in (r["ours"], r["theirs"])]
        kl = kl_against(a.source, files, eval_text, a.ctx, a.windows, a.threads, a.eval_precision)
        print(f"\n# KL vs {a.source.name} on {a.windows} x {a.ctx} tokens of {a.text} (2nd half), evaluated by edgellama, precision={a.eval_precision}")
        print(f"{'type':8} {'KL ours':>10} {'KL lq':>10} {'ratio':>6} {'top1 ours':>9} {'top1 lq':>8}")
        for r in rows:
            (ko, ao), (kt, at) = kl[r["ours"]], kl[r["theirs"]]
            r.update(kl_ours=ko, kl_lq=kt, top1_ours=ao, top1_lq=at)
            ratio = ko / kt if kt > 0 else float("nan")
            print(f"{r['type']:8} {ko:10.3e} {kt:10.3e} {ratio:6.2f} {100 * ao:8.1f}% {100 * at:7.1f}%")
    print(f"# load after {open('/proc/loadavg').read().split()[:3]}")
    if a.json:
        a.json.write_text(json.dumps(dict(source=str(a.source), threads=a.threads, imatrix=imatrix, rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
