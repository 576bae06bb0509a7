"""edgellama: quantized CPU inference for LLaMA-family GGUF models.

The names llama-cpp-python users import from ``llama_cpp`` are importable from here too."""

import importlib as _importlib

from ._core import GGUFError, UnsupportedError
from .gguf_file import GGUFFile, TensorInfo
from . import llama_types as _llama_types
from .llama_types import *  # noqa: F401,F403  (llama_cpp re-exports its response types too)

# The inference stack (Llama, its cache, grammar and speculative decoding) is imported on first use
# of one of its names (PEP 562 module __getattr__): `from edgellama import Llama` works as before,
# while commands that do not run a model (`edgellama quantize`, `info`) start without importing it.
# name -> the module (relative to this package) that defines it
_LAZY = {
    "Llama": ".llama",
    "BaseLlamaCache": ".llama_cache", "LlamaCache": ".llama_cache", "LlamaDiskCache": ".llama_cache",
    "LlamaRAMCache": ".llama_cache",
    "LogitsProcessor": ".llama_hooks", "LogitsProcessorList": ".llama_hooks",
    "MinTokensLogitsProcessor": ".llama_hooks", "StoppingCriteria": ".llama_hooks",
    "StoppingCriteriaList": ".llama_hooks",
    "LlamaState": ".llama_state",
    "BaseLlamaTokenizer": ".llama_tokenizer", "LlamaHFTokenizer": ".llama_tokenizer",
    "LlamaTokenizer": ".llama_tokenizer",
    "LlamaGrammar": ".llama_grammar",
    "LlamaDraftModel": ".llama_speculative", "LlamaPromptLookupDecoding": ".llama_speculative",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

LLAMA_DEFAULT_SEED = 0xFFFFFFFF
# llama.cpp's enum llama_pooling_type and the ggml KV cache types edgellama stores
LLAMA_POOLING_TYPE_UNSPECIFIED, LLAMA_POOLING_TYPE_NONE, LLAMA_POOLING_TYPE_MEAN = -1, 0, 1
LLAMA_POOLING_TYPE_CLS, LLAMA_POOLING_TYPE_LAST = 2, 3
GGML_TYPE_F32, GGML_TYPE_F16 = 0, 1

__all__ = [
    "Llama", "LlamaState", "LlamaCache", "BaseLlamaCache", "LlamaRAMCache", "LlamaDiskCache",
    "LogitsProcessor", "LogitsProcessorList", "StoppingCriteria", "StoppingCriteriaList", "MinTokensLogitsProcessor",
    "BaseLlamaTokenizer", "LlamaTokenizer", "LlamaHFTokenizer",
    "GGUFFile", "TensorInfo", "GGUFError", "UnsupportedError", "__version__",
    "LLAMA_DEFAULT_SEED", "LLAMA_POOLING_TYPE_UNSPECIFIED", "LLAMA_POOLING_TYPE_NONE", "LLAMA_POOLING_TYPE_MEAN",
    "LLAMA_POOLING_TYPE_CLS", "LLAMA_POOLING_TYPE_LAST", "GGML_TYPE_F32", "GGML_TYPE_F16",
]
__all__ += ["LlamaGrammar", "LlamaDraftModel", "LlamaPromptLookupDecoding"]
__all__ += _llama_types.__all__
