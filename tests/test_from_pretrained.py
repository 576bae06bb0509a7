"""Llama.from_pretrained against a local HTTP server that speaks the part of the Hugging Face Hub
protocol huggingface_hub uses (file listing, resolve with commit/etag headers); never the internet."""

import hashlib
import http.server
import json
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("huggingface_hub")

import edgellama  # noqa: E402
from model_factory import make_model  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "someone/tiny-GGUF"


class _Hub(http.server.BaseHTTPRequestHandler):
    files: dict = {}  # path in repo -> bytes
    log: list = []

    def log_message(self, *a):
        pass

    def _file(self):
        path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
        prefix = f"/{REPO}/resolve/main/"
        return self.files.get(path[len(prefix):]) if path.startswith(prefix) else None

    def _headers_for(self, body: bytes):
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def do_HEAD(self):
        self.log.append(("HEAD", self.path))
        body = self._file()
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self._headers_for(body)

    def do_GET(self):
        self.log.append(("GET", self.path))
        path = urllib.parse.urlparse(self.path).path
        if path.startswith(f"/api/models/{REPO}/tree/main"):
            data = json.dumps([{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                               for p, b in self.files.items()]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        body = self._file()
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self._headers_for(body)
        self.wfile.write(body)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    model = Path(make_model(tmp_path / "m.gguf", n_layer=1, n_embd=32, n_head=4, n_head_kv=2, n_ff=64, n_vocab=300))
    _Hub.files = {"tiny-Q4_K_M.gguf": model.read_bytes(), "sub/tiny-Q8_0.gguf": model.read_bytes(),
                  "README.md": b"hello"}
    _Hub.log = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{srv.server_address[1]}")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield model, tmp_path / "hf-cache"
    srv.shutdown()
    srv.server_close()


def test_glob_filename_downloads_into_the_hf_cache_and_reuses_it(hub):
    model, cache = hub
    llm = edgellama.Llama.from_pretrained(REPO, "*Q4_K_M.gguf", cache_dir=cache, n_ctx=16, verbose=False)
    # the standard cache layout: models--OWNER--NAME/snapshots/COMMIT/FILE
    assert Path(llm.model_path).parent == cache / "models--someone--tiny-GGUF" / "snapshots" / COMMIT
    assert Path(llm.model_path).read_bytes() == model.read_bytes()
    assert llm.n_ctx() == 16
    with edgellama.Llama(str(model), n_ctx=16, verbose=False) as ref:
        np.testing.assert_array_equal(llm.eval([1, 5, 9]), ref.eval([1, 5, 9]))
    gets = [p for m, p in _Hub.log if m == "GET" and "/resolve/" in p]
    assert len(gets) == 1
    edgellama.Llama.from_pretrained(REPO, "tiny-Q4_K_M.gguf", cache_dir=cache, vocab_only=True, verbose=False)
    assert len([p for m, p in _Hub.log if m == "GET" and "/resolve/" in p]) == 1  # reused, not downloaded again


def test_subfolder_files_and_bad_patterns(hub):
    _, cache = hub
    llm = edgellama.Llama.from_pretrained(REPO, "*Q8_0.gguf", cache_dir=cache, vocab_only=True, verbose=False)
    assert llm.model_path.endswith("sub/tiny-Q8_0.gguf")
    with pytest.raises(ValueError, match="no file .* matches"):
        edgellama.Llama.from_pretrained(REPO, "*Q2_K.gguf", cache_dir=cache)
    with pytest.raises(ValueError, match="2 files"):
        edgellama.Llama.from_pretrained(REPO, "*.gguf", cache_dir=cache)


def test_pull_and_from_pretrained_read_the_same_endpoint(monkeypatch):
    from edgellama import hub

    monkeypatch.delenv("EDGELLAMA_HF_ENDPOINT", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.invalid/")
    assert hub.hf_url("hf://a/b/c.gguf") == "http://mirror.invalid/a/b/resolve/main/c.gguf"
    monkeypatch.setenv("EDGELLAMA_HF_ENDPOINT", "http://ours.invalid")
    assert hub.hf_url("hf://a/b/c.gguf").startswith("http://ours.invalid/")
