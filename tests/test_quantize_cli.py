"""`edgellama quantize` rough edges (issue 12): the output gets the usual file mode, SIGTERM leaves
no .partial file, and -t means threads as in every other command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import subprocess_env

from edgellama import cli
from model_factory import make_model


@pytest.fixture(scope="module")
def f32_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("q") / "m.gguf", n_layer=2, n_embd=64, n_head=4, n_head_kv=2,
                      n_ff=128, n_vocab=300)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_output_file_mode_follows_the_umask(f32_model, tmp_path, umask, mode):
    out = tmp_path / "q.gguf"
    old = os.umask(umask)
    try:
        assert cli.main(["quantize", f32_model, str(out), "--type", "Q8_0", "-q", "-t", "1"]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == mode


def test_dash_t_is_threads_not_the_type(f32_model, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["quantize", f32_model, str(tmp_path / "q.gguf"), "-t", "Q4_K_M"])
    assert e.value.code == 2
    assert "invalid int value: 'Q4_K_M'" in capsys.readouterr().err
    assert not (tmp_path / "q.gguf").exists()


SLOW_QUANTIZE = """
import sys, time
from edgellama import _core, cli
real = _core.quantize
def slow(*a, **k):  # one tensor per 0.3 s: time to send the signal mid-write
    time.sleep(0.3)
    return real(*a, **k)
_core.quantize = slow
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_leaves_no_partial_file(f32_model, tmp_path):
    out = tmp_path / "q.gguf"
    p = subprocess.Popen([sys.executable, "-c", SLOW_QUANTIZE, "quantize", f32_model, str(out), "--type", "Q8_0",
                          "-q"], env=subprocess_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("*.partial")):
        assert p.poll() is None, p.stderr.read()
        assert time.monotonic() < deadline, "no .partial file appeared"
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert list(tmp_path.iterdir()) == []  # neither the output nor a .partial file


def test_truncated_gguf_input_gets_the_same_message_as_info(f32_model, tmp_path, capsys):
    data = Path(f32_model).read_bytes()
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(data[: len(data) - 1000])
    assert cli.main(["info", str(bad)]) == 1
    info_err = capsys.readouterr().err.split("error: ", 1)[1]
    assert cli.main(["quantize", str(bad), str(tmp_path / "q.gguf"), "--type", "Q8_0", "-q"]) == 1
    q_err = capsys.readouterr().err
    assert q_err.startswith("edgellama: error: ")  # the prefix of every command (docs/usage.md)
    assert q_err.split("error: ", 1)[1] == info_err
    assert "extends past the end of the file" in q_err and "reshape" not in q_err


def test_every_command_uses_the_documented_error_prefix(f32_model, tmp_path, capsys):
    # docs/usage.md: "Errors print one line (`edgellama: error: ...`)"
    for argv in (["quantize", str(tmp_path / "none.gguf"), str(tmp_path / "q.gguf")],
                 ["quantize", f32_model, str(tmp_path / "q.gguf"), "-t", "0"],
                 ["perplexity", f32_model, "-f", str(tmp_path / "none.txt")],
                 ["info", str(tmp_path / "none.gguf")]):
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code in (1, 2) and err.startswith("edgellama: error: "), (argv, err)
