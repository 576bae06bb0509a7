"""edgellama: quantized CPU inference for LLaMA-family GGUF models."""

from ._core import GGUFError, UnsupportedError
from .gguf_file import GGUFFile, TensorInfo
from .llama import Llama
from .llama_grammar import LlamaGrammar
from .llama_speculative import LlamaDraftModel, LlamaPromptLookupDecoding

__version__ = "0.1.0"

__all__ = ["Llama", "LlamaGrammar", "LlamaDraftModel", "LlamaPromptLookupDecoding", "GGUFFile", "TensorInfo",
           "GGUFError", "UnsupportedError", "__version__"]
