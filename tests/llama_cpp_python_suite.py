"""Run llama-cpp-python 0.3.36's own high-level tests against edgellama (issue 12's "done when").

    python tests/llama_cpp_python_suite.py [--sdist DIR] [--model GGUF] [-- PYTEST ARGS]

copies its tests/test_llama.py, test_llama_chat_format.py (and test_llama_grammar.py,
test_llama_speculative.py once edgellama has those modules), and the Python blocks of its README's
"High-level API" section as test_readme_high_level.py, into a temporary directory, next to a
``llama_cpp`` package that is edgellama under llama-cpp-python's module names, and runs pytest
there. The only edits to the test files: the model fixtures (which download from the Hugging Face
hub) return a local model file instead, and the tokenizer test's relative vocab path is made
absolute. Tests of the low-level C API or of architectures edgellama does not claim are
deselected; DESELECTED says why for each (docs/compat.md lists them too).

The sdist is found at $LLAMA_CPP_PYTHON_SDIST (default /work/llamacpp/llama_cpp_python-0.3.36).
tests/test_llama_cpp_python_suite.py runs this and skips when the sdist is absent.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_SDIST = "/work/llamacpp/llama_cpp_python-0.3.36"

# test id -> why it is not run
DESELECTED: Dict[str, str] = {
    "test_llama.py::test_real_model": "drives llama.cpp's low-level C API (llama_model_default_params, "
                                      "llama_batch, ...), which edgellama does not expose",
    "test_llama.py::test_llama_cpp_tokenization": "asserts `llama._ctx.ctx is not None`, the ctypes handle of "
                                                  "llama.cpp's context (edgellama's vocab_only object has no context); "
                                                  "its tokenizer assertions are covered by tests/test_tokenizer_spm.py",
    "test_llama.py::test_recurrent_model_prompt_cache_reset": "Mamba (recurrent) architecture, not supported",
    "test_llama.py::test_hybrid_model_prompt_cache_reset": "Falcon-H1 (hybrid) architecture, not supported",
    "test_llama.py::test_real_llama_embeddings": "its model, bge-small-en-v1.5, is a BERT encoder (not supported); "
                                                 "it expects one pooled vector per input, which a causal LM with "
                                                 "pooling none (llama.cpp's default for it too) does not give",
}
for _name in ("test_exact_cached_prompt_reuse_matches_fresh", "test_loaded_exact_cached_prompt_reuse_matches_fresh",
              "test_ram_cache_exact_prompt_hit_matches_fresh", "test_shorter_prompt_prefix_reuse_matches_fresh"):
    DESELECTED[f"test_llama.py::{_name}[llama_cpp_recurrent_model_path-True-False]"] = "Mamba (recurrent), not supported"
    DESELECTED[f"test_llama.py::{_name}[llama_cpp_hybrid_model_path-False-True]"] = "Falcon-H1 (hybrid), not supported"

SMOLLM2_FOX = " is a classic example of a"

# test file -> the edgellama module it needs (copied only when that module exists)
TEST_FILES = {
    "test_llama.py": None,
    "test_llama_chat_format.py": None,
    "test_llama_grammar.py": "llama_grammar",
    "test_llama_speculative.py": "llama_speculative",
}
# tests that need a module another part of edgellama provides: deselected until it exists
NEEDS_MODULE: Dict[str, str] = {}
# README "High-level API" code blocks (written as test_readme_high_level.py, one test per block):
# a block containing the marker is not run, for the reason given
README_SKIP = {
    "from_pretrained(": "downloads from the Hugging Face Hub (Llama.from_pretrained is tested against a local "
                        "hub in tests/test_from_pretrained.py)",
    "ChatHandler": "multimodal chat handlers (LLaVA, Moondream) are not provided",
    "image_to_base64_data_uri": "part of the multimodal example (reads an image file)",
}
# slow blocks the test suite leaves to the standalone run (`python tests/llama_cpp_python_suite.py`):
# block03 chats with chat_format="llama-2", whose end-of-turn SmolLM2 never writes, so it generates
# until n_ctx (512) is full — about 40 s on two loaded cores
README_SLOW = ["test_readme_high_level.py::test_readme_block[block03]"]
# a block containing the marker runs once edgellama has the module
README_NEEDS = {"response_format": "llama_grammar", "LlamaPromptLookupDecoding": "llama_speculative"}

README_TEST = '''
import os

import pytest

BLOCKS = {blocks}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_readme_block(name):
    code = BLOCKS[name].replace("MODEL_PATH", repr(os.environ["EDGELLAMA_SUITE_MODEL"]))
    # the README's blocks read as one text: later ones use the `Llama` imported by the first
    namespace = {{"__name__": "readme"}}
    exec("from llama_cpp import Llama", namespace)
    exec(compile(code, "README " + name, "exec"), namespace)
'''


def readme_blocks(sdist: Path) -> Dict[str, str]:
    """The runnable Python blocks of the README's High-level API section, model paths replaced by
    the local model ({"block03": code, ...}, numbered in README order)."""
    text = (sdist / "README.md").read_text(encoding="utf-8")
    section = text.split("## High-level API", 1)[1].split("\n## ", 1)[0]
    out = {}
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", section, flags=re.S)):
        if code.lstrip().startswith("{"):  # an example output, not code
            continue
        if any(m in code for m in README_SKIP) or any(m in code and not _has_module(mod) for m, mod in README_NEEDS.items()):
            continue
        out[f"block{i:02d}"] = re.sub(r'model_path="[^"]*"', "model_path=MODEL_PATH", code)
    return out


SHIM = '''"""llama_cpp resolved to edgellama (written by tests/llama_cpp_python_suite.py)."""
import sys, types
import edgellama
from edgellama import *  # noqa: F401,F403
from edgellama import __version__  # noqa: F401
for _name in ("llama", "llama_types", "llama_cache", "llama_tokenizer", "llama_chat_format", "llama_grammar",
              "llama_speculative"):
    try:
        _mod = __import__("edgellama." + _name, fromlist=["*"])
    except ImportError:
        continue
    sys.modules[__name__ + "." + _name] = _mod
    globals()[_name] = _mod
# llama_cpp._internals holds llama.cpp's ctypes wrappers; only deselected tests use it
_internals = types.ModuleType(__name__ + "._internals")
sys.modules[_internals.__name__] = _internals
'''

CONFTEST = '''
DESELECTED = {skip}


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        (drop if item.nodeid in DESELECTED else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
'''

LOCAL_MODEL = '''
def _local_model(repo_id, filename, *args, **kwargs):
    """The suite's model fixtures download from the hub; use the local model instead."""
    import os
    return os.environ["EDGELLAMA_SUITE_MODEL"]
'''


def default_model() -> Path:
    shared = Path(os.environ.get("EDGELLAMA_SHARED", ROOT.parent / "shared"))
    return shared / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _has_module(name: str) -> bool:
    return (ROOT / "src" / "edgellama" / f"{name}.py").is_file()


def prepare(sdist: Path, work: Path) -> List[str]:
    """Write the shim and the adapted test files into ``work``; return the pytest arguments."""
    (work / "llama_cpp").mkdir(parents=True, exist_ok=True)
    (work / "llama_cpp" / "__init__.py").write_text(SHIM)
    files = []
    for name, needs in TEST_FILES.items():
        src = sdist / "tests" / name
        if not src.is_file() or (needs and not _has_module(needs)):
            continue
        text = src.read_text()
        if name == "test_llama.py":
            text = text.replace("from huggingface_hub import hf_hub_download", LOCAL_MODEL)
            text = re.sub(r"\bhf_hub_download\(", "_local_model(", text)
            text = text.replace('MODEL = "./vendor/', f'MODEL = "{sdist}/vendor/')
            # The suite's greedy continuation is its Qwen3.5-0.8B's; SmolLM2-135M-Instruct's, as
            # llama.cpp's own llama-server gives it (temperature 0, 6 tokens), is this:
            text = text.replace('== " jumps over the lazy dog."', f'== {SMOLLM2_FOX!r}')
        (work / name).write_text(text)
        files.append(name)
    blocks = readme_blocks(sdist) if (sdist / "README.md").is_file() else {}
    if blocks:
        (work / "test_readme_high_level.py").write_text(README_TEST.format(blocks=repr(blocks)))
        files.append("test_readme_high_level.py")
    # exact node ids (pytest's --deselect matches prefixes: test_real_llama would drop test_real_llama_*)
    skip = {t: why for t, why in DESELECTED.items()}
    skip.update({t: f"needs edgellama.{m}" for t, m in NEEDS_MODULE.items() if not _has_module(m)})
    (work / "conftest.py").write_text(CONFTEST.format(skip=repr(skip)))
    return [str(work / f) for f in files]


def run(sdist: Path, model: Path, extra: Optional[List[str]] = None, capture: bool = False):
    """Run the adapted suite; the exit status, or with ``capture`` (status, combined output)."""
    with tempfile.TemporaryDirectory(prefix="llama_cpp_suite_") as tmp:
        work = Path(tmp)
        args = prepare(sdist, work)
        env = dict(os.environ)
        # the same edgellama this process imports (the installed package in CI, src/ with the
        # dev-built module during development): src/ of a clean clone has no compiled module
        try:
            import edgellama

            pkg_root = str(Path(edgellama.__file__).resolve().parents[1])
        except ImportError:
            pkg_root = str(ROOT / "src")
        env["PYTHONPATH"] = os.pathsep.join([str(work), pkg_root, env.get("PYTHONPATH", "")])
        env["EDGELLAMA_SUITE_MODEL"] = str(model)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(work),
               "-o", "addopts=", "-rA", *args, *(extra or [])]
        if not capture:
            return subprocess.call(cmd, cwd=work, env=env)
        r = subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return r.returncode, r.stdout


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdist", default=os.environ.get("LLAMA_CPP_PYTHON_SDIST", DEFAULT_SDIST))
    ap.add_argument("--model", default=str(default_model()))
    ap.add_argument("pytest_args", nargs="*")
    a = ap.parse_args(argv)
    return run(Path(a.sdist), Path(a.model), a.pytest_args)


if __name__ == "__main__":
    sys.exit(main())
