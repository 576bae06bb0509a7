"""`Llama.from_pretrained(repo_id, filename, ...)`: a GGUF from a Hugging Face repository.

The ``huggingface_hub`` library does the work, so files land in (and are reused from) the standard
Hugging Face cache that other tools share (``HF_HUB_CACHE``, ``~/.cache/huggingface/hub``), and
its token, offline mode and endpoint settings apply. ``filename`` may be a glob
(``"*Q4_K_M.gguf"``) that must match exactly one file of the repository. The endpoint is
``$EDGELLAMA_HF_ENDPOINT`` or ``$HF_ENDPOINT`` read at call time, as for ``edgellama pull hf://...``
(huggingface_hub itself reads HF_ENDPOINT once, at import).
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import PurePosixPath
from typing import Any, List, Optional, Union

__all__ = ["download_pretrained"]


def _match_one(files: List[str], pattern: str, repo_id: str) -> str:
    hits = [f for f in files if fnmatch.fnmatch(f, pattern)]
    if not hits:
        raise ValueError(f"no file in {repo_id} matches {pattern!r}; files: {', '.join(files) or '(none)'}")
    if len(hits) > 1:
        raise ValueError(f"{len(hits)} files in {repo_id} match {pattern!r} ({', '.join(hits)}); "
                         "give a pattern that matches one")
    return hits[0]


def download_pretrained(repo_id: str, filename: str, additional_files: Optional[List[str]] = None,
                        local_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
                        cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None) -> str:
    """Download (or find in the cache) the file of ``repo_id`` matching ``filename`` and the
    ``additional_files`` patterns (e.g. the other shards); return the local path of the first."""
    try:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.utils import validate_repo_id
    except ImportError:
        raise ImportError("Llama.from_pretrained needs the huggingface-hub package: pip install huggingface-hub") from None
    if not isinstance(filename, str) or not filename:
        raise ValueError("from_pretrained: filename (a file name or glob pattern) is required")
    validate_repo_id(repo_id)
    endpoint = os.environ.get("EDGELLAMA_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or None  # as hub.py
    api = HfApi(endpoint=endpoint)
    if any(c in filename for c in "*?["):
        files = list(api.list_repo_files(repo_id))
        main = _match_one(files, filename, repo_id)
    else:
        files = None
        main = filename
    wanted = [main]
    for pattern in additional_files or []:
        if files is None:
            files = list(api.list_repo_files(repo_id))
        wanted.append(_match_one(files, pattern, repo_id))
    paths = []
    for f in wanted:
        p = PurePosixPath(f)
        paths.append(hf_hub_download(repo_id=repo_id, filename=p.name,
                                     subfolder=None if str(p.parent) == "." else str(p.parent),
                                     local_dir=local_dir, cache_dir=cache_dir, endpoint=endpoint))
    return paths[0]


def from_pretrained(cls: Any, repo_id: str, filename: Optional[str], additional_files: Optional[List] = None,
                    local_dir: Any = None, local_dir_use_symlinks: Any = "auto", cache_dir: Any = None, **kwargs: Any):
    """The body of Llama.from_pretrained (``local_dir_use_symlinks`` is accepted for compatibility;
    current huggingface_hub versions ignore it)."""
    path = download_pretrained(repo_id, filename, additional_files, local_dir=local_dir, cache_dir=cache_dir)
    return cls(model_path=path, **kwargs)
