"""`edgellama info MODEL`: what is inside a GGUF file (read from the header, no weights loaded)."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from typing import Any, Dict, List, Optional

from .. import _core, cli
from ..gguf_file import GGUFFile

NAME = "info"
HELP = "show a model's architecture, sizes, quantization, tokenizer and chat template"
EPILOG = """\
examples:
  edgellama info smollm2-135m-instruct
  edgellama info model.gguf --json | jq .tensor_types"""

_TOKEN_IDS = ["bos", "eos", "eot", "eom", "unknown", "padding", "sep", "cls", "mask"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    cli.add_model_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--metadata", action="store_true", help="also list every metadata key (long arrays shortened)")


def _file_type(v: Any) -> Optional[str]:
    if v is None:
        return None
    try:
        import gguf

        return gguf.LlamaFileType(int(v)).name.replace("MOSTLY_", "")
    except Exception:
        return str(v)


def _isa() -> Optional[str]:
    isa = getattr(_core, "isa", None)
    if isa is None:
        return None
    try:
        return str(isa() if callable(isa) else isa)
    except Exception:
        return None


def _int(v: Any) -> Optional[int]:
    """v when it is an integer, else None: metadata comes from the file and may have any type."""
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _num(v: Any) -> Any:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: Any) -> Optional[str]:
    return v if isinstance(v, str) else None


def collect(path: str) -> Dict[str, Any]:
    f = GGUFFile(path)
    md = f.metadata
    arch = _str(md.get("general.architecture")) or "?"

    def a(key: str) -> Any:
        return _int(md.get(f"{arch}.{key}"))

    tensors = f.tensors
    n_params = 0
    for t in tensors:
        n = 1
        for d in t.shape:
            n *= int(d)
        n_params += n
    tokens: List[str] = md.get("tokenizer.ggml.tokens") or []
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        tokens = []
    special = {}
    for k in _TOKEN_IDS:
        i = _int(md.get(f"tokenizer.ggml.{k}_token_id"))
        if i is not None:
            special[k] = {"id": int(i), "text": tokens[int(i)] if 0 <= int(i) < len(tokens) else None}
    head_count = a("attention.head_count")
    n_embd = a("embedding_length")
    return {
        "file": os.path.abspath(path),
        "file_size": os.path.getsize(path),
        "gguf_version": f.version,
        "name": _str(md.get("general.name")),
        "architecture": arch,
        "file_type": _file_type(md.get("general.file_type")),
        "parameters": n_params,
        "layers": a("block_count"),
        "embedding_length": n_embd,
        "feed_forward_length": a("feed_forward_length"),
        "heads": head_count,
        "heads_kv": a("attention.head_count_kv") or head_count,
        "head_dim": a("attention.key_length") or (n_embd // head_count if n_embd and head_count else None),
        "context_length": a("context_length"),
        "rope_freq_base": _num(md.get(f"{arch}.rope.freq_base")),
        "rms_norm_eps": _num(md.get(f"{arch}.attention.layer_norm_rms_epsilon")),
        "tensors": len(tensors),
        "tensor_types": dict(Counter(t.type for t in tensors).most_common()),
        "tokenizer": {
            "model": _str(md.get("tokenizer.ggml.model")),
            "pre": _str(md.get("tokenizer.ggml.pre")),
            "vocab_size": len(tokens) or a("vocab_size"),
            "add_bos_token": md.get("tokenizer.ggml.add_bos_token"),
            "special": special,
        },
        "chat_template": _str(md.get("tokenizer.chat_template")),
        "isa": _isa(),
        "arch_settings": arch_settings(path, arch),
        "_metadata": md,
    }


def arch_settings(path: str, arch: str) -> Dict[str, Any]:
    """What distinguishes this model's architecture (the C++ table row + the settings the loader read
    from metadata): {"supported": bool, "summary": [short phrases], ...}. Maps the file, loads no weights."""
    rows = {r["name"]: r for r in _core.architectures()}
    row = rows.get(arch)
    if row is None:
        return {"supported": False, "summary": [f"not supported (supported: {', '.join(rows)})"]}
    try:
        hp = _core.Model(path).hparams
    except Exception as e:  # a broken file: say why instead of failing the whole command
        return {"supported": True, "error": str(e), "summary": [f"cannot load: {e}"]}
    out: List[str] = [f"rope {row['rope_style']}"]
    if hp["rope_scaling_type"] == "linear":
        out[-1] += f" ({hp['rope_scaling_type']} x{hp['rope_linear_factor']:g})"
    if hp["rope_freq_factors"]:
        out[-1] += " (rope_freqs: Llama 3 scaling)"
    elif hp["longrope"]:  # the long set applies when the context is larger than n_ctx_orig
        out[-1] += f" (LongRoPE: long factors above n_ctx {hp['n_ctx_orig']}, attention factor {hp['rope_attn_factor']:.4g})"
    out.append("GeGLU (gelu tanh)" if row["activation"] == "gelu_tanh" else "SwiGLU")
    if row["qk_norm"] != "none":
        out.append(f"QK-norm ({row['qk_norm'].replace('_', ' ')})")
    if row["post_norms"]:
        out.append("post-norms" + ("" if row["pre_norms"] else " only"))
    if row["fused_qkv"] or row["fused_gate_up"]:
        out.append("fused " + "+".join(n for n, f in (("QKV", row["fused_qkv"]), ("gate/up", row["fused_gate_up"])) if f))
    if row["qkv_bias"]:
        out.append("QKV bias")
    n_win = sum(hp["layer_swa"])
    if n_win:
        local = f", local rope base {hp['rope_base_swa']:g}" if hp["rope_base_swa"] else ""
        out.append(f"sliding window {hp['n_swa']} on {n_win}/{hp['n_layer']} layers{local}")
    n_nope = hp["n_layer"] - sum(hp["layer_rope"])
    if n_nope:
        out.append(f"NoPE on {n_nope}/{hp['n_layer']} layers")
    if hp["attn_softcap"]:
        out.append(f"attention softcap {hp['attn_softcap']:g}")
    if hp["final_softcap"]:
        out.append(f"logit softcap {hp['final_softcap']:g}")
    if hp["embd_scale"] != 1.0:
        out.append(f"embedding x{hp['embd_scale']:.4g}")
    if hp["residual_scale"] != 1.0:
        out.append(f"residual x{hp['residual_scale']:g}")
    if hp["attn_scale"]:
        out.append(f"attention scale {hp['attn_scale']:g}")
    if hp["logit_scale"] != 1.0:
        out.append(f"logits /{hp['logit_scale']:g}")
    keys = ("n_swa", "rope_base_swa", "attn_scale", "attn_softcap", "final_softcap", "embd_scale", "residual_scale",
            "logit_scale", "layer_swa", "layer_rope", "rope_freq_factors", "longrope", "n_ctx_orig", "rope_attn_factor")
    return {"supported": True, "summary": out, "table": row, **{k: hp[k] for k in keys}}


def _fmt_count(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def _short(v: Any) -> Any:
    if isinstance(v, list) and len(v) > 8:
        return f"[{', '.join(map(repr, v[:5]))}, ... {len(v)} items]"
    if isinstance(v, str) and len(v) > 120:
        return repr(v[:117] + "...")
    return repr(v) if isinstance(v, str) else v


def run(args: argparse.Namespace) -> int:
    path = cli.resolve_model_arg(args.model)
    info = collect(path)
    md = info.pop("_metadata")
    if args.json:
        if args.metadata:
            info["metadata"] = {k: v for k, v in md.items() if not (isinstance(v, list) and len(v) > 64)}
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    tok = info["tokenizer"]
    rows = [
        ("file", f"{info['file']} ({info['file_size'] / 1e6:.1f} MB, GGUF v{info['gguf_version']})"),
        ("name", info["name"]),
        ("architecture", info["architecture"]),
        ("arch settings", ", ".join(info["arch_settings"]["summary"])),
        ("file type", info["file_type"]),
        ("parameters", f"{_fmt_count(info['parameters'])} ({info['parameters']:,})"),
        ("layers", info["layers"]),
        ("embedding", info["embedding_length"]),
        ("feed-forward", info["feed_forward_length"]),
        ("heads", f"{info['heads']} (kv heads {info['heads_kv']}, head dim {info['head_dim']})"),
        ("context", f"{info['context_length']} (trained)"),
        ("rope freq base", info["rope_freq_base"]),
        ("tensor types", ", ".join(f"{k} x {v}" for k, v in info["tensor_types"].items())
         + f" ({info['tensors']} tensors)"),
        ("tokenizer", f"{tok['model']} (pre: {tok['pre']}), {tok['vocab_size']} tokens, "
                      f"add_bos={tok['add_bos_token']}"),
        ("special tokens", ", ".join(f"{k} {v['id']} {v['text']!r}" for k, v in tok["special"].items()) or "-"),
    ]
    if info["isa"]:
        rows.append(("isa", info["isa"]))
    width = max(len(k) for k, _ in rows) + 1
    for k, v in rows:
        print(f"{k + ':':{width}} {v if v is not None else '-'}")
    t = info["chat_template"]
    if t:
        print(f"{'chat template:':{width}} ({len(t)} characters)")
        for line in t.splitlines():
            print(f"  {line}")
    else:
        print(f"{'chat template:':{width}} none (use --chat-format chatml|llama-2|llama-3|mistral-instruct to chat)")
    if args.metadata:
        print("metadata:")
        for k, v in md.items():
            print(f"  {k} = {_short(v)}")
    return 0
