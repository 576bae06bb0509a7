"""Resources are given back: memory over many create/destroy cycles, the file mapping on close()
and on garbage collection, file descriptors and threads. Linux (/proc) only."""

from __future__ import annotations

import gc
import os
import sys
import threading

import pytest

import edgellama
from model_factory import make_model

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc/self")

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def mapped(path: str) -> int:
    real = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if line.rstrip().endswith(real))


def n_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def n_tasks() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    # ~1 MB of weights, so a leaked copy per cycle would show up in RSS
    return make_model(tmp_path_factory.mktemp("res") / "r.gguf", n_layer=2, n_embd=128, n_head=4, n_head_kv=2,
                      n_ff=256, n_vocab=300)


def cycle(path, **kw):
    m = edgellama.Llama(path, n_ctx=64, n_threads=2, **kw)
    if not kw.get("vocab_only"):
        m.create_completion("ab cd", max_tokens=4, temperature=0.0)
    else:
        m.detokenize(m.tokenize("ab cd"))
    m.close()


@pytest.mark.skipif(bool(os.environ.get("EDGELLAMA_SANITIZED")), reason="ASan's quarantine holds freed memory")
def test_rss_stable_over_100_cycles(model_path):
    for _ in range(10):  # warm up allocator pools and caches
        cycle(model_path)
    gc.collect()
    before = rss_bytes()
    for i in range(100):
        cycle(model_path)
        if i % 2:
            cycle(model_path, vocab_only=True)
    gc.collect()
    grown = rss_bytes() - before
    size = os.path.getsize(model_path)
    # 150 cycles that each map the file and allocate a KV cache: growth must stay far below one
    # file's worth per cycle (allow 8 MiB of allocator slack).
    assert grown < 8 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 150 cycles (file {size / 2**20:.1f} MiB)"


def test_mmap_released_on_close(model_path):
    assert mapped(model_path) == 0
    m = edgellama.Llama(model_path, n_ctx=32, n_threads=1)
    assert mapped(model_path) >= 1
    m.close()
    assert mapped(model_path) == 0


def test_mmap_released_on_garbage_collection(model_path):
    m = edgellama.Llama(model_path, n_ctx=32, n_threads=1)
    m.create_completion("ab", max_tokens=2, temperature=0.0)
    assert mapped(model_path) >= 1
    del m
    gc.collect()
    assert mapped(model_path) == 0
    # a reference cycle through the object is collected too
    m = edgellama.Llama(model_path, vocab_only=True)
    m.self_ref = m
    del m
    gc.collect()
    assert mapped(model_path) == 0


def test_gguf_file_mapping_released(model_path):
    f = edgellama.GGUFFile(model_path)
    _ = f.metadata, f.tensors
    assert mapped(model_path) >= 1
    del f
    gc.collect()
    assert mapped(model_path) == 0


def test_no_fd_or_thread_leak(model_path, tmp_path):
    cycle(model_path)
    gc.collect()
    fds, tasks = n_fds(), n_tasks()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\0\0\0" + b"\xff" * 16)
    for _ in range(30):
        cycle(model_path)
        with pytest.raises(ValueError):
            edgellama.Llama(str(bad))
        with pytest.raises(OSError):
            edgellama.Llama(str(tmp_path))  # a directory
        with pytest.raises(ValueError):
            edgellama.Llama(model_path, n_ctx=2**24 + 1)
    gc.collect()
    assert n_fds() <= fds, f"file descriptors: {fds} -> {n_fds()}"
    assert n_tasks() <= tasks, f"threads: {tasks} -> {n_tasks()} ({threading.active_count()} Python threads)"


def test_failed_load_releases_the_mapping(model_path, tmp_path):
    """A file that parses but fails model validation is unmapped again."""
    import crafted_files as cf

    d = cf.Doc.parse(open(model_path, "rb").read())
    d.set_kv("llama.block_count", cf.U32, 3)
    p = tmp_path / "three_layers.gguf"
    p.write_bytes(d.to_bytes())
    for _ in range(5):
        with pytest.raises(ValueError, match="blk.2"):
            edgellama.Llama(str(p), n_ctx=32)
    gc.collect()
    assert mapped(str(p)) == 0
