"""edgellama.quantize.quantize(): convert a checkpoint (Hugging Face directory, llama2.c .bin, GGUF)
to a GGUF file of the chosen type, optionally calibrated on a text (imatrix-style importance)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from .convert import ConversionError, load_checkpoint, parse_file_type, write_gguf
from .convert.mixes import FILE_TYPES
from .imatrix_file import Imatrix, ImatrixEntry, importance_for_model, read_imatrix

__all__ = ["quantize", "collect_importance", "collect_imatrix", "FILE_TYPES", "ConversionError"]

log = logging.getLogger("edgellama.quantize")


def _activation_sums(llm, windows: Sequence[Sequence[int]]) -> Dict[str, "tuple[np.ndarray, int]"]:
    """Evaluate each window from an empty cache and return the runtime's per-weight statistics:
    {weight name: (float64 sum of squared inputs per column, rows seen)}."""
    llm.collect_activation_stats(True)
    for window in windows:
        llm.reset()
        llm.eval(list(window))
    return llm.activation_stats()


def collect_importance(
    model_path: "str | os.PathLike[str]",
    text: Optional[str] = None,
    *,
    tokens: Optional[Sequence[int]] = None,
    n_ctx: int = 512,
    threads: Optional[int] = None,
    max_chunks: Optional[int] = None,
) -> Dict[str, np.ndarray]:
    """Run the GGUF model over `text` (or pre-tokenized `tokens`) in windows of n_ctx tokens and
    return, per matmul weight name, the mean squared input activation of each column (the
    per-column importance used to weight the quantization search)."""
    from .llama import Llama

    llm = Llama(str(model_path), n_ctx=n_ctx, n_threads=threads, precision="exact")
    try:
        if tokens is None:
            tokens = list(llm.tokenize((text or "").encode("utf-8")))
        tokens = [int(t) for t in tokens]
        if len(tokens) < 2:
            raise ValueError("the calibration text is too short (fewer than 2 tokens)")
        windows = [tokens[s : s + n_ctx] for s in range(0, len(tokens), n_ctx)]
        windows = [w for w in windows if len(w) >= 2][: max_chunks if max_chunks is not None else None]
        stats = _activation_sums(llm, windows)
    finally:
        llm.close()
    out: Dict[str, np.ndarray] = {}
    for name, (sumsq, count) in stats.items():
        if count > 0:
            out[name] = (np.asarray(sumsq, dtype=np.float64) / float(count)).astype(np.float32)
    return out


def collect_imatrix(
    model_path: "str | os.PathLike[str]",
    text: str,
    *,
    n_ctx: int = 512,
    threads: Optional[int] = None,
    max_chunks: Optional[int] = None,
    dataset: str = "",
    process_output: bool = False,
) -> Imatrix:
    """llama-imatrix's computation: tokenize `text` (with BOS when the model adds one), cut it
    into chunks of n_ctx tokens (a shorter tail is dropped), start each chunk with BOS when the
    model adds one, run the model over every chunk and sum the squared inputs of every matmul
    weight's columns. Returns an Imatrix (write it with imatrix_file.write_imatrix); `dataset`
    is recorded in it as llama-imatrix records the text file's name. Like llama-imatrix, only the
    blocks' weights (blk.*) are kept, plus output.weight with `process_output`."""
    from .llama import Llama

    if not isinstance(n_ctx, int) or n_ctx < 2:
        raise ValueError(f"n_ctx must be an integer >= 2, got {n_ctx!r}")
    llm = Llama(str(model_path), n_ctx=n_ctx, n_threads=threads, precision="exact")
    try:
        tokens = list(llm.tokenize(text.encode("utf-8"), add_bos=True))
        bos = llm.token_bos()
        add_bos = bool(tokens) and tokens[0] == bos
        n_chunks = len(tokens) // n_ctx
        if max_chunks is not None:
            n_chunks = min(n_chunks, max_chunks)
        if n_chunks < 1:
            raise ValueError(
                f"the text tokenizes to {len(tokens)} tokens, fewer than one chunk of {n_ctx} (use a longer text or a smaller context)"
            )
        windows = []
        for i in range(n_chunks):
            w = tokens[i * n_ctx : (i + 1) * n_ctx]
            if add_bos:
                w[0] = bos
            windows.append(w)
        stats = _activation_sums(llm, windows)
    finally:
        llm.close()
    entries = {
        name: ImatrixEntry(np.asarray(sumsq, dtype=np.float64).reshape(1, -1), np.array([float(count)]))
        for name, (sumsq, count) in stats.items()
        if count > 0 and (name.startswith("blk.") or (process_output and name == "output.weight"))
    }
    if not entries:
        raise RuntimeError(f"{model_path}: the model recorded no activation statistics")
    return Imatrix(entries, datasets=[dataset] if dataset else [], chunk_count=n_chunks, chunk_size=n_ctx)


def quantize(
    input: "str | os.PathLike[str]",
    output: "str | os.PathLike[str]",
    type: str = "Q4_K_M",
    calibrate: "str | os.PathLike[str] | None" = None,
    threads: Optional[int] = None,
    *,
    tokenizer: "str | os.PathLike[str] | None" = None,
    progress: bool = False,
    calibrate_ctx: int = 512,
    calibrate_chunks: Optional[int] = None,
    rounding: str = "search",
    imatrix: "str | os.PathLike[str] | None" = None,
    on_note: Optional[Callable[[str], None]] = None,
) -> Path:
    """Convert/quantize INPUT to OUTPUT (a .gguf file) with file type `type` (F32, F16, BF16, Q8_0,
    Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K, IQ4_NL, IQ4_XS, IQ3_S, IQ3_M,
    and, with `imatrix` or `calibrate` as llama-quantize requires, IQ3_XS, IQ3_XXS, IQ2_M, IQ2_S, IQ2_XS,
    IQ2_XXS, IQ1_M, IQ1_S; per-tensor mixes as llama.cpp's llama_tensor_get_type).

    calibrate: a text file; the model is run over it and each matmul weight's quantization search
    is weighted by the mean squared input activation of its columns.
    imatrix: a llama.cpp importance-matrix file (GGUF or legacy .dat, from llama-imatrix or
    `edgellama imatrix`) used like `calibrate`'s statistics; not combinable with `calibrate`.
    rounding: "search" (default) chooses every block's scale (and offset) by an error-minimising
    search; "reference" rounds the legacy types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) exactly like
    llama.cpp / gguf-py's reference quantizers, so those tensors are byte-identical to theirs (it
    cannot be combined with `calibrate` or `imatrix`). K-quants always use the search. Returns OUTPUT's path.
    Raises FileNotFoundError for a missing input, ConversionError (a ValueError) for an input that
    cannot be converted, ValueError for bad arguments (ImatrixError, a ValueError, for an imatrix
    file that cannot be read or does not fit the model). OUTPUT is only created when complete."""
    ft = parse_file_type(type)
    if rounding not in ("search", "reference"):
        raise ValueError(f"rounding must be 'search' or 'reference', got {rounding!r}")
    if rounding == "reference" and (calibrate is not None or imatrix is not None):
        raise ValueError("rounding='reference' cannot use calibration (reference rounding takes no importance weights)")
    if calibrate is not None and imatrix is not None:
        raise ValueError("give either calibrate (a text to compute importance from) or imatrix (a computed file), not both")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads <= 0):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    inp = Path(input)
    out = Path(output)
    if not inp.exists():
        raise FileNotFoundError(f"{inp}: input not found")
    try:
        if out.exists() and os.path.samefile(inp, out):
            raise ConversionError(f"refusing to overwrite the input {inp} with the output")
    except OSError:
        pass
    text = None
    if calibrate is not None:
        cpath = Path(calibrate)
        if not cpath.is_file():
            raise FileNotFoundError(f"{cpath}: calibration text not found")
        text = cpath.read_text(encoding="utf-8", errors="replace")

    loaded_imatrix = read_imatrix(imatrix) if imatrix is not None else None  # errors before any work
    ck = load_checkpoint(inp, tokenizer)
    importance = None
    if loaded_imatrix is not None:
        importance, notes = importance_for_model(loaded_imatrix, [(t.name, t.shape) for t in ck.tensors], imatrix)
        for n in notes:
            (on_note or log.warning)(n)
    if text is not None:
        if ck.kind == "gguf":
            importance = collect_importance(inp, text, n_ctx=calibrate_ctx, threads=threads, max_chunks=calibrate_chunks)
        else:
            # Run the model from a temporary F32 (small models) or F16 GGUF of the same checkpoint.
            n_params = sum(int(np.prod(t.shape)) for t in ck.tensors)
            tmp_type = "F32" if n_params <= 2_000_000_000 // 4 else "F16"
            out_dir = out.resolve().parent
            with tempfile.TemporaryDirectory(prefix=".edgellama-calib-", dir=out_dir) as td:
                tmp_model = Path(td) / "calib.gguf"
                write_gguf(ck, tmp_model, tmp_type, threads=threads, progress=progress, on_note=lambda s: None)
                importance = collect_importance(
                    tmp_model, text, n_ctx=calibrate_ctx, threads=threads, max_chunks=calibrate_chunks
                )
        if not importance:
            raise RuntimeError("calibration produced no activation statistics")
    return write_gguf(
        ck,
        out,
        ft,
        importance=importance,
        threads=threads,
        input_path=inp,
        progress=progress,
        on_note=on_note,
        rounding=rounding,
    )
