"""edgellama: quantized CPU inference for LLaMA-family GGUF models.

The names llama-cpp-python users import from ``llama_cpp`` are importable from here too."""

from ._core import GGUFError, UnsupportedError
from .gguf_file import GGUFFile, TensorInfo
from .llama import Llama
from .llama_cache import BaseLlamaCache, LlamaCache, LlamaDiskCache, LlamaRAMCache
from .llama_hooks import (LogitsProcessor, LogitsProcessorList, MinTokensLogitsProcessor, StoppingCriteria,
                          StoppingCriteriaList)
from .llama_state import LlamaState
from .llama_tokenizer import BaseLlamaTokenizer, LlamaHFTokenizer, LlamaTokenizer
from . import llama_types as _llama_types
from .llama_types import *  # noqa: F401,F403  (llama_cpp re-exports its response types too)

from .llama_grammar import LlamaGrammar
from .llama_speculative import LlamaDraftModel, LlamaPromptLookupDecoding

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
