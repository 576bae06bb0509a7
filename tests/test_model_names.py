"""One way to name a model everywhere (issue 12): a path, a pulled name, hf://... work the same in
Llama(...) and the commands; a missing path is "model file not found", not "unknown model"."""

import shutil

import pytest

import edgellama
from edgellama import cli, hub
from model_factory import make_model


@pytest.fixture
def pulled(tmp_path, monkeypatch):
    """A random model placed where `edgellama pull smollm2-135m-instruct` and an hf:// pull put files."""
    monkeypatch.setenv("EDGELLAMA_CACHE", str(tmp_path / "cache"))
    src = make_model(tmp_path / "m.gguf", n_layer=1, n_embd=32, n_head=4, n_head_kv=2, n_ff=64, n_vocab=300)
    for spec in ("smollm2-135m-instruct", "hf://someone/repo/x.gguf"):
        dst = hub.model_path(spec)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    return src


@pytest.mark.parametrize("spec", ["smollm2-135m-instruct", "hf://someone/repo/x.gguf"])
def test_llama_takes_pulled_names(pulled, spec):
    with edgellama.Llama(spec, n_ctx=16, verbose=False) as m, edgellama.Llama(pulled, n_ctx=16, verbose=False) as ref:
        assert m.model_path == str(hub.model_path(spec))
        assert (m.eval([1, 5]) == ref.eval([1, 5])).all()


@pytest.mark.parametrize("spec", ["models/nope.gguf", "./nope", "nope.gguf", "~/nope.bin"])
def test_a_missing_path_is_file_not_found(tmp_path, monkeypatch, capsys, spec):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        edgellama.Llama(spec)
    for cmd in (["info", spec], ["run", spec, "-p", "x"]):
        assert cli.main(cmd) == 1
        err = capsys.readouterr().err
        assert f"edgellama: error: {spec}: model file not found" in err and "unknown model" not in err


def test_an_unknown_name_says_how_to_pull(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGELLAMA_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="edgellama pull"):
        edgellama.Llama("no-such-model")
    assert cli.main(["info", "no-such-model"]) == 1
    assert "model file not found" in capsys.readouterr().err


def test_info_and_quantize_take_pulled_names(pulled, tmp_path, capsys):
    assert cli.main(["info", "smollm2-135m-instruct"]) == 0
    capsys.readouterr()
    out = tmp_path / "q.gguf"
    assert cli.main(["quantize", "smollm2-135m-instruct", str(out), "--type", "Q8_0", "-q"]) == 0
    assert out.is_file()
    assert cli.main(["quantize", "nope.gguf", str(tmp_path / "r.gguf"), "-q"]) == 1
    assert "edgellama: error: nope.gguf" in capsys.readouterr().err


@pytest.mark.parametrize("echo", [False, True])
def test_run_verbose_counts_the_prompt_with_and_without_echo(tmp_path, capsys, echo):
    import re

    path = make_model(tmp_path / "m.gguf", n_layer=1, n_embd=32, n_head=4, n_head_kv=2, n_ff=64, n_vocab=300)
    with edgellama.Llama(path, vocab_only=True) as v:
        n_prompt = len(v.tokenize(b"ab cd ef"))
    argv = ["run", path, "-p", "ab cd ef", "-n", "4", "--temp", "0", "-v", "-c", "64"] + (["--echo"] if echo else [])
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    m = re.search(r"\[prompt: (\d+) tokens? evaluated .*generation: (\d+) tokens? evaluated", err)
    assert m, err
    assert int(m.group(1)) == n_prompt
    assert int(m.group(2)) <= 4
    assert out.startswith("ab cd ef") == echo
