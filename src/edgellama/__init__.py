"""edgellama: quantized CPU inference for LLaMA-family GGUF models."""

from ._core import GGUFError, UnsupportedError
from .gguf_file import GGUFFile, TensorInfo

__version__ = "0.1.0"

__all__ = ["GGUFFile", "TensorInfo", "GGUFError", "UnsupportedError", "__version__"]
