"""llama-cpp-python 0.3.36's own high-level tests, adapted only to use the local SmolLM2 model and
to import edgellama as llama_cpp, must pass (see tests/llama_cpp_python_suite.py for what is
deselected and why). Needs the llama-cpp-python sdist: $LLAMA_CPP_PYTHON_SDIST or the default path."""

import os
import re
from pathlib import Path

import pytest

import llama_cpp_python_suite as suite


@pytest.fixture(scope="module")
def sdist():
    p = Path(os.environ.get("LLAMA_CPP_PYTHON_SDIST", suite.DEFAULT_SDIST))
    if not (p / "tests" / "test_llama.py").is_file():
        pytest.skip(f"llama-cpp-python sdist not found at {p} (set LLAMA_CPP_PYTHON_SDIST)")
    return p


def test_adapted_llama_cpp_python_suite_passes(sdist, smollm2_path):
    extra = [a for t in suite.README_SLOW for a in ("--deselect", t)]  # a few s each otherwise; see README_SLOW
    rc, out = suite.run(sdist, smollm2_path, extra, capture=True)
    assert rc == 0, out[-6000:]
    passed = re.findall(r"^PASSED (\S+)", out, flags=re.M)
    # the tests this runs at least: tokenizer-free ones that need nothing beyond this branch
    for name in ("test_llama.py::test_real_llama",  # sampled picks: needs llama.cpp's seeds and RNG stream
                 "test_llama.py::test_real_llama_repeated_prompt_cache",
                 "test_llama.py::test_ram_cache_exact_prompt_hit_matches_fresh[llama_cpp_transformer_model_path-False-False]",
                 "test_llama.py::test_loaded_exact_cached_prompt_reuse_matches_fresh[llama_cpp_transformer_model_path-False-False]",
                 "test_llama_chat_format.py::test_hf_tokenizer_config_str_to_chat_formatter",
                 "test_readme_high_level.py::test_readme_block[block00]",  # llm(prompt, echo=True, stop=...)
                 "test_readme_high_level.py::test_readme_block[block12]"):  # create_embedding
        assert any(p.endswith(name) for p in passed), (name, passed)
    deselected = int(re.search(r"(\d+) deselected", out).group(1))
    assert deselected <= len(suite.DESELECTED) + len(suite.NEEDS_MODULE) + len(suite.README_SLOW)


def test_deselection_is_exact(tmp_path, sdist):
    """--deselect would match prefixes (test_real_llama -> test_real_llama_*): check ours does not."""
    suite.prepare(sdist, tmp_path)
    text = (tmp_path / "conftest.py").read_text()
    assert "item.nodeid in DESELECTED" in text
    assert "test_llama.py::test_real_llama_repeated_prompt_cache" not in text
