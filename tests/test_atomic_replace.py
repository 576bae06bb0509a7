"""replace_file: the finished output takes OUTPUT's place (an atomic exchange, then the old file is
removed) without the writeback ext4 forces on a rename over an existing file."""

import os
import sys

import pytest

from edgellama.convert import atomic_replace as rf


def _files(d):
    return sorted(p.name for p in d.iterdir())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_exchange_swaps_two_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"new")
    b.write_bytes(b"old")
    ino_a = a.stat().st_ino
    assert rf.exchange(a, b) is True
    assert a.read_bytes() == b"old" and b.read_bytes() == b"new" and b.stat().st_ino == ino_a


def test_exchange_with_a_missing_target_says_it_could_not(tmp_path):
    a = tmp_path / "a"
    a.write_bytes(b"new")
    assert rf.exchange(a, tmp_path / "absent") is False
    assert a.read_bytes() == b"new"


@pytest.mark.parametrize("exchange_works", [True, False])
def test_replace_file_over_an_existing_output(tmp_path, monkeypatch, exchange_works):
    if not exchange_works:  # a system without renameat2 / RENAME_EXCHANGE: plain os.replace
        monkeypatch.setattr(rf, "exchange", lambda a, b: False)
    tmp, out = tmp_path / ".o.gguf.x.partial", tmp_path / "o.gguf"
    out.write_bytes(b"old contents")
    tmp.write_bytes(b"new")
    with open(out, "rb") as held:  # a reader of the old file keeps reading the old file
        rf.replace_file(tmp, out)
        assert held.read() == b"old contents"
    assert out.read_bytes() == b"new" and _files(tmp_path) == ["o.gguf"]


def test_replace_file_without_an_existing_output(tmp_path):
    tmp, out = tmp_path / ".o.partial", tmp_path / "o.gguf"
    tmp.write_bytes(b"new")
    rf.replace_file(tmp, out)
    assert out.read_bytes() == b"new" and _files(tmp_path) == ["o.gguf"]


def test_replace_file_over_a_symlink_replaces_the_link_like_os_replace(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"target")
    out, tmp = tmp_path / "o.gguf", tmp_path / ".o.partial"
    os.symlink(target, out)
    tmp.write_bytes(b"new")
    rf.replace_file(tmp, out)
    assert not out.is_symlink() and out.read_bytes() == b"new" and target.read_bytes() == b"target"
    assert _files(tmp_path) == ["o.gguf", "target"]
