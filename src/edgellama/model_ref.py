"""One way to name a model everywhere (``Llama(...)``, ``run``, ``chat``, ``info``, ``bench``,
``perplexity``, ``quantize``): a path to a file, a name pulled with ``edgellama pull``
(``smollm2-135m-instruct``), ``hf://OWNER/REPO/FILE.gguf`` or an https:// URL that was pulled.

A spec that looks like a path (has a directory separator, starts with ``.`` or ``~``, or ends in
``.gguf``/``.bin``) and does not exist is "file not found" — not "unknown model"."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["locate_model", "looks_like_path"]


def looks_like_path(spec: str) -> bool:
    if "://" in spec:
        return False
    return (os.sep in spec or (os.altsep is not None and os.altsep in spec) or spec.startswith((".", "~"))
            or spec.lower().endswith((".gguf", ".bin")))


def locate_model(model: "str | os.PathLike[str]", *, download: bool = False, progress: bool = True) -> Path:
    """The local file for ``model``; ``download=True`` pulls a known name/hf:// reference/URL that
    is not pulled yet. FileNotFoundError (message "...: model file not found", plus how to pull
    when it is a name) otherwise; IsADirectoryError for a directory."""
    from .hub import HubError, resolve_model

    spec = os.fspath(model)
    p = Path(spec).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        raise IsADirectoryError(f"{spec}: is a directory, not a model file")
    if looks_like_path(spec):
        raise FileNotFoundError(f"{spec}: model file not found")
    try:
        return resolve_model(spec, download=download, progress=progress)
    except HubError as e:
        raise FileNotFoundError(f"{spec}: model file not found ({e})") from None
