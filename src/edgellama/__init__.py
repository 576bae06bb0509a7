"""edgellama: quantized CPU inference for LLaMA-family GGUF models."""

from ._core import GGUFError, UnsupportedError
from .gguf_file import GGUFFile, TensorInfo
from .llama import Llama

__version__ = "0.1.0"

__all__ = ["Llama", "GGUFFile", "TensorInfo", "GGUFError", "UnsupportedError", "__version__"]
