"""llama-cpp-python's `Llama.__init__` settings that edgellama takes for compatibility: what each
means on a CPU runtime, in one table. Three kinds:

- ignored: GPU placement or memory residency; the results do not change (one debug log line);
- not implemented: would change the results; a non-default value raises NotImplementedError naming
  the parameter (never a silent ignore);
- mapped: translated to an edgellama setting (KV cache types, pooling, rope_freq_base/scale).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Union

logger = logging.getLogger("edgellama")

# name -> llama-cpp-python's default. A different value is accepted and has no effect on results.
IGNORED: Dict[str, Any] = {
    "n_gpu_layers": 0,        # GPU offload
    "split_mode": 1,          # multi-GPU split
    "main_gpu": 0,
    "tensor_split": None,
    "offload_kqv": True,      # KV cache on the GPU
    "op_offload": None,
    "flash_attn": False,      # edgellama's attention is always a fused, tiled kernel
    "use_mmap": True,         # edgellama always maps the file
    "use_mlock": False,       # residency only
    "numa": False,            # thread placement only
    "no_perf": False,         # llama.cpp's perf counters
    "spm_infill": False,      # fill-in-the-middle order; edgellama's `suffix` is appended text (docs/compat.md)
    "attention_type": -1,     # LLAMA_ATTENTION_TYPE_UNSPECIFIED: causal for every supported model
}

# name -> default meaning "as the model file says". Anything else changes the numbers and is not
# implemented: NotImplementedError.
NOT_IMPLEMENTED: Dict[str, Any] = {
    "yarn_ext_factor": -1.0,
    "yarn_attn_factor": 1.0,
    "yarn_beta_fast": 32.0,
    "yarn_beta_slow": 1.0,
    "yarn_orig_ctx": 0,
    "kv_overrides": None,
    "lora_path": None,
    "lora_base": None,
}

# ggml type ids (ggml.h) for the KV cache: the ones edgellama stores, and names of others for errors
_GGML_KV_TYPES = {0: "f32", 1: "f16"}
_GGML_OTHER = {2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 8: "q8_0", 30: "bf16"}

# llama.cpp's enum llama_pooling_type
POOLING_TYPES = {-1: "unspecified", 0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}
_POOLING_BY_NAME = {v: k for k, v in POOLING_TYPES.items()}


def check_compat_options(options: Dict[str, Any]) -> None:
    """Log the ignored settings that were changed; raise for unimplemented ones that were."""
    for name, default in NOT_IMPLEMENTED.items():
        value = options.get(name, default)
        if value != default and not (name == "kv_overrides" and not value):
            raise NotImplementedError(
                f"Llama({name}={value!r}) is not implemented by edgellama (it would change the results); "
                f"leave {name} at its default {default!r}")
    changed = [f"{n}={options[n]!r}" for n, d in IGNORED.items() if n in options and options[n] != d]
    if changed:
        logger.debug("edgellama runs on the CPU with its own memory layout; ignoring %s", ", ".join(changed))


def kv_type(value: Union[None, int, str], arg: str) -> str:
    """type_k / type_v: None (f16), a ggml type id as llama-cpp-python passes, or our name."""
    if value is None:
        return "f16"
    if isinstance(value, bool):
        raise TypeError(f"{arg} must be a ggml type id or 'f16'/'f32', got {value!r}")
    if isinstance(value, int):
        if value in _GGML_KV_TYPES:
            return _GGML_KV_TYPES[value]
        if value in _GGML_OTHER:
            raise NotImplementedError(f"{arg}={value} ({_GGML_OTHER[value]}): edgellama's KV cache is f16 or f32 only")
        raise ValueError(f"{arg}={value} is not a ggml type id (f32=0, f16=1)")
    if isinstance(value, str):
        return value  # checked by the core: 'f16' or 'f32'
    raise TypeError(f"{arg} must be a ggml type id or 'f16'/'f32', got {type(value).__name__}")


def pooling_type(value: Union[int, str, None], file_value: Optional[int]) -> int:
    """The pooling in effect (llama.cpp's enum): the argument, else the file's, else none."""
    if isinstance(value, str):
        if value.lower() not in _POOLING_BY_NAME:
            raise ValueError(f"pooling_type must be one of {sorted(_POOLING_BY_NAME)}, got {value!r}")
        value = _POOLING_BY_NAME[value.lower()]
    if value is None:
        value = -1
    if isinstance(value, bool) or not isinstance(value, int) or value not in POOLING_TYPES:
        raise ValueError(f"pooling_type must be one of {sorted(POOLING_TYPES)} (llama_pooling_type), got {value!r}")
    if value == -1:
        value = int(file_value) if file_value is not None and int(file_value) in POOLING_TYPES else 0
    if value == 4:
        raise NotImplementedError("pooling_type=4 (rank, for rerankers) is not implemented by edgellama")
    return value


# llama.cpp's enum llama_rope_scaling_type
ROPE_SCALING_TYPES = {-1: "unspecified", 0: "none", 1: "linear", 2: "yarn", 3: "longrope"}


def rope_freq_scale_for(rope_scaling_type: Optional[int], rope_freq_scale: float) -> float:
    """The position scale to give the context: ``none`` turns the file's linear scaling off (1.0)
    unless a scale is given; ``unspecified``/``linear`` keep the file's (or the given) scale; yarn
    and longrope are not implemented."""
    t = -1 if rope_scaling_type is None else rope_scaling_type
    if isinstance(t, bool) or t not in ROPE_SCALING_TYPES:
        raise ValueError(f"rope_scaling_type must be one of {sorted(ROPE_SCALING_TYPES)} (llama_rope_scaling_type), "
                         f"got {rope_scaling_type!r}")
    if t in (2, 3):
        raise NotImplementedError(f"rope_scaling_type={t} ({ROPE_SCALING_TYPES[t]}) is not implemented by edgellama")
    if t == 0 and not rope_freq_scale:
        return 1.0
    return rope_freq_scale
