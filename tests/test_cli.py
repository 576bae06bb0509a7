"""The `edgellama` command: discovery, help, run/chat/info behaviour and error reporting. Generation
goes through the fake model of test_generation (cli.load_llama is replaced); test_cli_real.py runs
the real model end to end."""

from __future__ import annotations

import io
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env

import edgellama.commands
from edgellama import cli
from test_generation import FakeLlama

ROOT = Path(__file__).resolve().parents[1]


def run_main(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fake(monkeypatch):
    """cli.load_llama returns this FakeLlama (set .reply etc. in the test)."""
    llm = FakeLlama("Hello world")
    seen = {}

    def load(args, **kw):
        seen.update(kw, model=args.model, ctx=args.ctx_size, threads=args.threads)
        if kw.get("chat_format") is not None:
            llm.chat_format = kw["chat_format"]
        return llm

    monkeypatch.setattr(cli, "load_llama", load)
    llm.seen = seen
    return llm


def test_help_lists_every_command_module(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    names = [m.name for m in pkgutil.iter_modules(edgellama.commands.__path__) if not m.name.startswith("_")]
    assert {"run", "chat", "info", "pull"} <= set(names)
    for n in names:  # argparse puts a long name on a line of its own, hence \s after the name
        assert re.search(rf"^    {n}\s", out, re.M), n
    assert "getting started" in out and "edgellama pull smollm2-135m-instruct" in out


def test_no_command_prints_help_and_fails(capsys):
    code, out, _ = run_main([], capsys)
    assert code == 2 and "usage: edgellama" in out


def test_python_dash_m_entry_point():
    env = subprocess_env()
    r = subprocess.run([sys.executable, "-m", "edgellama", "run", "--help"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0 and "--temp" in r.stdout and "--top-k" in r.stdout and "-n N" in r.stdout


def test_broken_command_module_does_not_break_the_cli(monkeypatch, capsys, tmp_path):
    (tmp_path / "zzbroken.py").write_text("raise ImportError('needs torch')\n")
    monkeypatch.setattr(edgellama.commands, "__path__", list(edgellama.commands.__path__) + [str(tmp_path)])
    code, out, err = run_main(["zzbroken"], capsys)
    assert code == 1 and "needs torch" in err and "Traceback" not in err
    code, out, err = run_main(["pull", "--list"], capsys)
    assert code == 0


def test_run_streams_continuation(fake, capsys):
    code, out, err = run_main(["run", "m.gguf", "-p", "Say:", "--temp", "0", "-c", "128", "-t", "2"], capsys)
    assert code == 0 and out == "Hello world\n"
    assert fake.seen["ctx"] == 128 and fake.seen["threads"] == 2
    code, out, _ = run_main(["run", "m.gguf", "-p", "Say:", "--temp", "0", "-n", "1", "--echo"], capsys)
    assert out == "Say:Hello\n"
    code, out, _ = run_main(["run", "m.gguf", "-p", "Say:", "--temp", "0", "--stop", " w"], capsys)
    assert out == "Hello\n"
    code, out, err = run_main(["run", "m.gguf", "-p", "Say:", "--temp", "0", "-v"], capsys)
    assert out == "Hello world\n" and "prompt: 1 token evaluated" in err  # the rest was cached and "generation: 2 tokens" in err


def test_run_prompt_from_stdin_and_file(fake, capsys, monkeypatch, tmp_path):
    fake.reply = fake.tokenize("!", add_bos=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin"))
    code, out, _ = run_main(["run", "m.gguf", "-p", "-", "--temp", "0", "--echo"], capsys)
    assert out == "from stdin!\n"
    f = tmp_path / "p.txt"
    f.write_bytes(b"bad \xff utf8")
    code, out, err = run_main(["run", "m.gguf", "-f", str(f)], capsys)
    assert code == 1 and "not UTF-8" in err


def test_run_chat_flag_uses_template(fake, capsys):
    fake.reply = fake.tokenize("Hi", add_bos=False)
    code, out, _ = run_main(["run", "m.gguf", "--chat", "-p", "hello", "--temp", "0"], capsys)
    assert out == "Hi\n"
    assert fake.tokens_in_cache[:2] == fake.tokenize("<|im_start|>", special=True)


@pytest.mark.parametrize("argv, msg", [
    (["run", "m.gguf", "-p", "x", "-n", "0"], "-n/--n-predict must be positive"),
    (["run", "m.gguf", "-p", "x" * 300], "context window"),
    (["chat", "m.gguf", "--chat-format", "nonsense"], "known formats: auto, chatml, llama-2, llama-3"),
])
def test_user_errors_are_one_line(fake, capsys, argv, msg, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
    code, out, err = run_main(argv, capsys)
    assert code == 1
    assert msg in err and err.startswith("edgellama: error: ") and err.count("\n") == 1, err


def test_chat_on_model_without_template_suggests_chat_format(fake, capsys, monkeypatch):
    fake.chat_template = None
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
    for argv in (["chat", "base.gguf"], ["run", "base.gguf", "--chat", "-p", "hi"]):
        code, out, err = run_main(argv, capsys)
        assert code == 1 and "base.gguf has no chat template" in err and "--chat-format chatml" in err
    code, out, err = run_main(["chat", "base.gguf", "--chat-format", "chatml", "--temp", "0"], capsys)
    assert code == 0 and out == "Hello world\n"


def test_unknown_model_name(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGELLAMA_CACHE", str(tmp_path))
    for cmd in (["run", "no-such-model", "-p", "x"], ["chat", "no-such-model"], ["info", "no-such-model"]):
        code, out, err = run_main(cmd, capsys)
        assert code == 1 and "unknown model 'no-such-model'" in err and "edgellama pull" in err
        assert "Traceback" not in err and err.count("\n") == 1


def test_bug_gets_hint_not_traceback(fake, capsys, monkeypatch):
    def boom(*a, **k):
        raise KeyError("oops")

    monkeypatch.setattr(fake, "create_completion", boom)
    code, out, err = run_main(["run", "m.gguf", "-p", "x"], capsys)
    assert code == 1 and "KeyError" in err and "EDGELLAMA_DEBUG" in err and "Traceback" not in err


# --------------------------------------------------------------------------- chat


def test_chat_piped_lines_are_turns(fake, capsys, monkeypatch):
    fake.reply = fake.tokenize("Fine", add_bos=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("How are you?\n\nAnd now?\n"))
    code, out, err = run_main(["chat", "m.gguf", "--system", "Be brief.", "--temp", "0"], capsys)
    assert code == 0 and out == "Fine\nFine\n"
    # the second turn's prompt holds the system prompt, both user turns and the first answer
    cache = fake.detokenize(fake.tokens_in_cache, special=True).decode()
    assert cache.startswith("<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n"
                            "<|im_start|>assistant\nFine<|im_end|>\n<|im_start|>user\nAnd now?<|im_end|>")


def test_chat_ctrl_c_stops_answer_not_session(fake, capsys, monkeypatch):
    real = fake.create_chat_completion
    calls = []

    def interrupted_once(messages, **kw):
        calls.append([dict(m) for m in messages])
        gen = real(messages, **kw)
        if len(calls) > 1:
            return gen

        def g():
            for i, c in enumerate(gen):
                if i == 2:
                    raise KeyboardInterrupt
                yield c
        return g()

    monkeypatch.setattr(fake, "create_chat_completion", interrupted_once)
    monkeypatch.setattr(sys, "stdin", io.StringIO("first\nsecond\n"))
    code, out, err = run_main(["chat", "m.gguf", "--temp", "0"], capsys)
    assert code == 0
    assert out == "Hello [stopped]\nHello world\n"
    assert calls[1][1] == {"role": "assistant", "content": "Hello"}  # the partial answer stays in history


def test_chat_interactive_ctrl_c_or_eof_at_prompt_exits(fake, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    inputs = iter(["hi", "/reset", KeyboardInterrupt])

    def fake_input(prompt=""):
        v = next(inputs)
        if v is KeyboardInterrupt:
            raise KeyboardInterrupt
        return v

    monkeypatch.setattr("builtins.input", fake_input)
    code, out, err = run_main(["chat", "m.gguf", "--temp", "0"], capsys)
    assert code == 0 and out == "Hello world\n" and "conversation cleared" in err

    def eof(prompt=""):
        raise EOFError

    monkeypatch.setattr("builtins.input", eof)
    assert run_main(["chat", "m.gguf"], capsys)[0] == 0


def test_chat_drops_oldest_turns_when_context_is_full(fake, capsys, monkeypatch):
    fake._n_ctx = 200
    fake.reply = fake.tokenize("A" * 20, add_bos=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"question number {i}\n" for i in range(6))))
    code, out, err = run_main(["chat", "m.gguf", "--temp", "0", "-n", "30"], capsys)
    assert code == 0 and out.count("A" * 20) == 6 and "forgot the oldest" in err


# --------------------------------------------------------------------------- info


def test_info_smollm2(smollm2_path, capsys):
    code, out, err = run_main(["info", str(smollm2_path)], capsys)
    assert code == 0, err
    assert "architecture:   llama" in out
    assert "layers:         30" in out and "9 (kv heads 3" in out and "8192" in out
    assert "Q4_1 x " in out and "gpt2 (pre: smollm), 49152 tokens" in out
    assert "eos 2 '<|im_end|>'" in out and "<|im_start|>assistant" in out
    code, out, err = run_main(["info", str(smollm2_path), "--json"], capsys)
    d = json.loads(out)
    assert d["layers"] == 30 and d["tokenizer"]["vocab_size"] == 49152
    assert sum(d["tensor_types"].values()) == d["tensors"] and 130e6 < d["parameters"] < 140e6


def test_info_not_a_gguf_file(tmp_path, capsys):
    f = tmp_path / "x.gguf"
    f.write_bytes(b"not a gguf file at all, sorry")
    code, out, err = run_main(["info", str(f)], capsys)
    assert code == 1 and err.startswith("edgellama: error:") and err.count("\n") == 1


def test_chat_slash_commands_are_not_sent_to_the_model(fake, capsys, monkeypatch):
    prompts = []
    real = fake.create_chat_completion

    def spy(messages, **kw):
        prompts.append([m["content"] for m in messages])
        return real(messages, **kw)

    monkeypatch.setattr(fake, "create_chat_completion", spy)
    monkeypatch.setattr(sys, "stdin", io.StringIO("/help\n/sytem be nice\n//etc/passwd is a path\n"))
    code, out, err = run_main(["chat", "m.gguf", "--temp", "0"], capsys)
    assert code == 0
    assert prompts == [["/etc/passwd is a path"]]  # /help and the typo never reached the model
    assert "/reset" in err and "/exit" in err  # /help listed the commands
    assert "unknown command /sytem" in err


def test_help_shows_defaults_and_that_model_may_be_a_name():
    import argparse

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, p in sub.choices.items():
        for a in p._actions:
            if not a.option_strings:
                if a.dest in ("model", "input") and "name" not in (a.help or ""):
                    missing.append((name, a.dest, "does not say MODEL may be a name"))
                continue
            if isinstance(a, (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreFalseAction,
                              argparse._VersionAction, argparse._AppendAction)) or a.help == argparse.SUPPRESS:
                continue
            if a.default is not None and "default" not in (a.help or ""):
                missing.append((name, a.option_strings, "no default in help"))
    assert missing == []


def test_dash_t_means_threads_in_every_command():
    import argparse

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for a in p._actions:
            if "-t" in a.option_strings:
                assert a.dest == "threads", (name, a.option_strings)
            if a.dest == "threads":
                assert "-t" in a.option_strings, name
