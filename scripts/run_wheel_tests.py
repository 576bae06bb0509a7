"""Runs the wheel test subset against an *installed* edgellama (cibuildwheel's test-command and
scripts/cross_build.sh use it): first proves the package comes from site-packages, not from a source
tree (a test run that imported src/ would say nothing about the wheel), then runs pytest on the test
files listed below from the project's tests/ directory.

    python scripts/run_wheel_tests.py [extra pytest args]

The subset needs only the wheel's runtime dependencies plus pytest (no compiler, no torch): the GGUF
reader and crafted-file errors, every kernel against the scalar reference on this CPU, the forward
pass against the float64 NumPy reference, generation, sampling, streaming, chat formatting and the
CLI, and (when $EDGELLAMA_SHARED or ../shared has them) the real-model tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WHEEL_TESTS = [
    "tests/test_gguf_reader.py",
    "tests/test_crafted_files.py",
    "tests/test_model_errors.py",
    "tests/test_kernels.py",
    "tests/test_forward_random_models.py",
    "tests/test_forward_reference.py",
    "tests/test_generation.py",
    "tests/test_generation_real.py",
    "tests/test_sampler.py",
    "tests/test_streaming.py",
    "tests/test_chat_format.py",
    "tests/test_cli.py",
]


def main() -> int:
    import edgellama
    from edgellama import _core

    where = Path(_core.__file__).resolve()
    if (ROOT / "src") in where.parents:
        print(f"run_wheel_tests.py: edgellama._core was imported from the source tree ({where}), not from an "
              "installed wheel; run it without PYTHONPATH=src, from outside the project directory", file=sys.stderr)
        return 2
    print(f"edgellama {getattr(edgellama, '__version__', '?')} from {where}")
    import pytest

    # Under CI=true, tests/conftest.py fails (not skips) a real-model test whose file is missing. A
    # wheel-building job has no model files; the main CI job runs those tests with them.
    shared = Path(os.environ.get("EDGELLAMA_SHARED") or ROOT.parent / "shared")
    if not (shared / "models").is_dir() and os.environ.pop("CI", None) is not None:
        print(f"no model files under {shared}: real-model tests skip in this wheel test run")

    # cwd outside the project: `import edgellama` must not find ./src by accident either
    os.chdir(ROOT / "tests")
    return pytest.main(["-q", "-p", "no:cacheprovider", *[str(ROOT / t) for t in WHEEL_TESTS], *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
