"""`edgellama` end to end in a subprocess on the real SmolLM2 (skips without the model/tokenizer/sampler)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env

from edgellama import _core

ROOT = Path(__file__).resolve().parents[1]


def edgellama(*args, stdin=None, env=None, timeout=300):
    e = subprocess_env(**(env or {}))
    return subprocess.run([sys.executable, "-m", "edgellama", *args], input=stdin, capture_output=True,
                          text=True, env=e, timeout=timeout)


@pytest.fixture(scope="module")
def model(smollm2_path):
    return str(smollm2_path)


def test_run_paris(model):
    r = edgellama("run", model, "-p", "The capital of France is", "--temp", "0", "-n", "4", "-c", "256")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(" Paris")


def test_run_via_pulled_name(model, tmp_path):
    # a pulled name resolves to the cache: place the shared file where `pull` would have put it
    models = tmp_path / "models"
    models.mkdir()
    (models / "SmolLM2-135M-Instruct.Q4_1.gguf").symlink_to(model)
    r = edgellama("run", "smollm2-135m-instruct", "-p", "The capital of France is", "--temp", "0", "-n", "2",
                  "-c", "128", env={"EDGELLAMA_CACHE": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(" Paris")


def test_chat_piped(model):
    r = edgellama("chat", model, "--temp", "0", "-n", "12", "-c", "512",
                  stdin="Name the capital of France.\nName the capital of Italy.\n")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout and "Rome" in r.stdout


@pytest.mark.parametrize("args, msg", [
    (["run", "MODEL", "-p", "word " * 400, "-c", "128"], "context window"),
    (["run", "MODEL", "-p", "x", "-n", "0"], "-n/--n-predict"),
    (["chat", "MODEL", "--chat-format", "vicuna"], "chatml"),
    (["run", "not-a-model", "-p", "x"], "unknown model 'not-a-model'"),
])
def test_cli_errors(model, args, msg):
    r = edgellama(*[model if a == "MODEL" else a for a in args], stdin="hi\n")
    assert r.returncode != 0
    assert msg in r.stderr and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
