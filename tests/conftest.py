"""Shared fixtures. Real model files live in ../shared/models (beside the project root) or in
$EDGELLAMA_SHARED/models; tests that need them skip with a reason when they are absent (a user's
fresh clone), and run in CI where they are present. Under CI=true a missing file is an error: CI
must never pass by skipping the real-model tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    env = os.environ.get("EDGELLAMA_SHARED")
    return Path(env) if env else ROOT.parent / "shared"


def _shared_file(*parts: str) -> Path:
    p = shared_dir().joinpath("models", *parts)
    if not p.is_file():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"shared model file not found under CI=true: {p} (CI must run the real-model tests)")
        pytest.skip(f"shared model file not found: {p} (set EDGELLAMA_SHARED or place ../shared beside the project)")
    return p


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF (llama architecture, BPE 'smollm' tokenizer, chat template)."""
    return _shared_file("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def stories260k_dir() -> Path:
    """llama2.c stories260K fp32 checkpoint (stories260K.bin) and its tokenizer (tok512.bin)."""
    _shared_file("stories260K", "tok512.bin")
    return _shared_file("stories260K", "stories260K.bin").parent


@pytest.fixture(scope="session")
def llama2_tokenizer_model() -> Path:
    """The Llama 2 sentencepiece tokenizer.model."""
    return _shared_file("llama2-tokenizer", "tokenizer.model")


def subprocess_env(**extra: str) -> dict:
    """Environment for a child Python that must import the same edgellama as this test process
    (the installed package in CI, src/ with the dev-built module during development)."""
    import edgellama

    pkg_root = str(Path(edgellama.__file__).resolve().parents[1])
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH", "")) if p)
    return env
