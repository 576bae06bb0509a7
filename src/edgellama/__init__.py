"""edgellama: quantized CPU inference for LLaMA-family GGUF models."""

from ._core import GGUFError, UnsupportedError
from .gguf_file import GGUFFile, TensorInfo
from .llama import Llama
from .llama_speculative import LlamaDraftModel, LlamaPromptLookupDecoding

__version__ = "0.1.0"

__all__ = ["Llama", "LlamaDraftModel", "LlamaPromptLookupDecoding", "GGUFFile", "TensorInfo", "GGUFError", "UnsupportedError", "__version__"]
