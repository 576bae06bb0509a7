#!/usr/bin/env python3
"""Architecture coverage table -> docs/models.md.

For every variant in tests/hf_tiny_models.py (one tiny random transformers model per architecture of the
C++ table, plus Llama 3 rope scaling and Mistral), checks:

  llama.cpp conv.  llama.cpp's convert_hf_to_gguf.py converts it (F32 and Q8_0) and edgellama loads the files
  ours conv.       `edgellama quantize` converts the HF directory (F32)
  exact            exact path, F32 KV, both files vs transformers (float64): max|Δ|/max|logit| <= 1e-4 and
                   the same argmax at all 40 positions, in one chunk and in chunks of 7
  fast             fast path, F16 KV, F32 file vs transformers: <= 5e-3 and mean KL <= 1e-4; Q8_0 file:
                   fast vs exact mean KL <= 2e-3
  llama.cpp loads  llama.cpp's llama-perplexity runs our file and its perplexity is within 1% of edgellama's
  ours             (same windows and scoring)

    PYTHONPATH=src python scripts/model_coverage.py [--out docs/models.md] [--only gemma2,qwen3]

Needs transformers + torch (test dependencies), the llama-cpp-python sdist's llama.cpp tree
(EDGELLAMA_LLAMACPP_DIR) and, for the last column, llama-perplexity (EDGELLAMA_LLAMACPP_BIN). Takes a few
minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

import hf_tiny_models as H  # noqa: E402

EXACT_TOL, FAST_TOL, FAST_KL, Q8_KL, PPL_TOL = 1e-4, 5e-3, 1e-4, 2e-3, 0.01
TEXT = " ".join(["hello world, the quick brown fox jumps over the lazy dog"] * 12)


def check_exact(path, tokens, want):
    errs = []
    for n_batch in (64, 7):
        got = H.edgellama_logits(path, tokens, n_batch=n_batch)
        errs.append(H.rel_err(got, want))
        if not np.array_equal(got.argmax(1), want.argmax(1)):
            return False, "argmax differs"
    return max(errs) <= EXACT_TOL, f"{max(errs):.1e}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "models.md"))
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(H.VARIANTS)
    from edgellama import _core
    from edgellama.perplexity import perplexity
    from edgellama.quantize import quantize

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text_file = tmp / "text.txt"
        text_file.write_text(TEXT)
        dirs = {n: H.build_hf(H.VARIANTS[n], tmp / n) for n in names}
        jobs = [(dirs[n], tmp / f"{n}.f32.gguf", "f32") for n in names]
        jobs += [(dirs[n], tmp / f"{n}.q8_0.gguf", "q8_0") for n in names]
        conv_error = None
        if H.llamacpp_available():
            try:
                H.convert_llamacpp(jobs)
            except Exception as e:  # record and carry on: the per-variant cells say what is missing
                conv_error = str(e)[-300:]
        for n in names:
            v = H.VARIANTS[n]
            cells = {}
            f32, q8, ours = tmp / f"{n}.f32.gguf", tmp / f"{n}.q8_0.gguf", tmp / f"{n}.ours.gguf"
            tokens = H.sample_tokens(v)
            want = H.hf_logits(dirs[n], tokens)

            def cell(key, fn):
                try:
                    ok, note = fn()
                except Exception as e:
                    ok, note = False, f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
                    traceback.print_exc()
                cells[key] = (ok, note)

            def llamacpp_conv():
                if not f32.is_file() or not q8.is_file():
                    return False, conv_error or "converter not available"
                return _core.Model(str(f32)).architecture == v.gguf_arch and _core.Model(str(q8)) is not None, ""

            def ours_conv():
                quantize(dirs[n], ours, "F32", progress=False)
                return _core.Model(str(ours)).architecture == v.gguf_arch, ""

            def exact():
                ok1, e1 = check_exact(f32, tokens, want)
                ok2, e2 = check_exact(ours, tokens, want)
                return ok1 and ok2, f"{e1} / {e2}"

            def fast():
                got = H.edgellama_logits(f32, tokens, precision="fast", kv="f16")
                err, kl = H.rel_err(got, want), H.mean_kl(want, got)
                q_kl = H.mean_kl(H.edgellama_logits(q8, tokens), H.edgellama_logits(q8, tokens, "fast", "f16", 7))
                return err <= FAST_TOL and kl <= FAST_KL and q_kl <= Q8_KL, f"{err:.1e}, KL {kl:.0e}, Q8_0 KL {q_kl:.0e}"

            def llamacpp_loads():
                if not H.LLAMA_PERPLEXITY.is_file():
                    return False, "llama-perplexity not built"
                theirs = H.llamacpp_ppl(ours, text_file)
                mine = perplexity(ours, TEXT, 32).ppl
                return abs(theirs - mine) <= PPL_TOL * mine, f"PPL {theirs:.1f} vs {mine:.1f}"

            cell("llamacpp", llamacpp_conv)
            cell("ours", ours_conv)
            cell("exact", exact)
            cell("fast", fast)
            cell("loads", llamacpp_loads)
            rows.append((n, v, cells))
            print(n, {k: ("ok" if ok else "FAIL") + (f" ({note})" if note else "") for k, (ok, note) in cells.items()},
                  flush=True)

    mark = lambda ok: "✅" if ok else "❌"  # noqa: E731
    lines = [
        "# Model coverage",
        "",
        "Generated by `PYTHONPATH=src python scripts/model_coverage.py` "
        f"({datetime.date.today().isoformat()}, transformers {_version('transformers')}, torch {_version('torch')}).",
        "",
        "One tiny randomly initialised model per architecture (hidden 64, 2-6 layers, GQA 4/2 heads of 16, sliding",
        "window 8 where the architecture has one), built with Hugging Face transformers and compared over 40",
        "positions with transformers' own float64 forward. Columns:",
        "",
        "* **llama.cpp conv.**: llama.cpp's `convert_hf_to_gguf.py` converts it (F32 and Q8_0) and edgellama loads both",
        "* **ours conv.**: `edgellama quantize HF_DIR out.gguf --type F32` converts it",
        f"* **exact**: exact path, F32 KV cache: max|Δ|/max|logit| ≤ {EXACT_TOL:g}, argmax identical, for the",
        "  llama.cpp-converted file / ours (numbers: measured max relative error of each)",
        f"* **fast**: fast path, F16 KV cache, vs transformers: ≤ {FAST_TOL:g} and mean KL ≤ {FAST_KL:g}; Q8_0 file, fast vs",
        f"  exact: mean KL ≤ {Q8_KL:g}",
        f"* **llama.cpp loads ours**: llama.cpp's `llama-perplexity` runs our file; perplexity within {PPL_TOL:.0%} of edgellama's",
        "",
        "| variant | GGUF arch | HF class | llama.cpp conv. | ours conv. | exact | fast | llama.cpp loads ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, v, c in rows:
        def fmt(key):
            ok, note = c[key]
            return mark(ok) + (f" {note}" if note else "")

        lines.append(
            f"| {n} | `{v.gguf_arch}` | {v.hf_class} | {fmt('llamacpp')} | {fmt('ours')} | {fmt('exact')} | "
            f"{fmt('fast')} | {fmt('loads')} |"
        )
    lines += [
        "",
        "The same checks run in the test suite: tests/test_architectures.py (transformers vs edgellama, both",
        "converters, the NumPy reference forward, `edgellama info`), tests/test_attention_variants.py (soft-capping",
        "and sliding-window attention kernels vs float64).",
        "",
        'LongRoPE (phi3-longrope: Phi-3 128k, Phi-3.5): a context uses the long factor set when its n_ctx is larger',
        'than the pretraining context (`rope.scaling.original_context_length`), else the short set, for every',
        "position, and multiplies cos/sin by `rope.scaling.attn_factor` — llama.cpp's rule. transformers instead",
        'picks the set per forward call by the sequence length, which a KV cache cannot follow (keys already',
        'rotated with one set). The two agree when n_ctx and the sequence are on the same side of the pretraining',
        "context; the table's row runs 40 positions in a 64-token context (long set in both), and",
        'tests/test_architectures.py::test_longrope_factor_sets also checks the short regime (n_ctx 16, 12 tokens)',
        "and a short prompt in a long context against the first rows of transformers' long-set forward.",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {out}")
    return 0 if all(ok for _, _, c in rows for ok, _ in c.values()) else 1


def _version(mod: str) -> str:
    try:
        return __import__(mod).__version__
    except Exception:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
