"""Shipping (issue 16): the wheel configuration, the wheels workflow and the cross-build script.

Cheap checks run everywhere: the workflow parses and builds what issue 16 lists, the cibuildwheel
configuration selects CPython 3.9-3.13 on every platform and its test command exists, the wheel test
runner refuses a source tree, the ISA flags the scripts read are CMakeLists.txt's.

scripts/cross_build.sh itself (zig cross-compiles for Windows/macOS/aarch64, wine and qemu runs, a
manylinux wheel in a fresh venv: ~15-25 min on 2 cores the first time) runs only with
EDGELLAMA_CROSS_BUILD=1 and its tools present; otherwise that test skips with the reason."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, subprocess_env

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

WORKFLOW = ROOT / ".github" / "workflows" / "wheels.yml"
SCRIPT = ROOT / "scripts" / "cross_build.sh"
PYPROJECT = ROOT / "pyproject.toml"

pytestmark = pytest.mark.skipif(not (WORKFLOW.is_file() and SCRIPT.is_file()),
                                reason="the repository's CI files are not present (installed package?)")


def cibw_config() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["tool"]["cibuildwheel"]


def test_workflow_builds_every_platform_of_the_issue():
    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load(WORKFLOW.read_text())
    jobs = wf["jobs"]
    matrix = jobs["build-wheels"]["strategy"]["matrix"]["include"]
    got = {(m["os"].split("-")[0], m["archs"]) for m in matrix}
    assert got == {("ubuntu", "x86_64"), ("ubuntu", "aarch64"), ("macos", "x86_64"), ("macos", "arm64"),
                   ("windows", "AMD64")}
    # aarch64 and each macOS arch build on a native runner, so their tests run on that CPU
    runner = {(m["os"].split("-")[0], m["archs"]): m["os"] for m in matrix}
    assert runner[("ubuntu", "aarch64")].endswith("-arm")
    assert "intel" in runner[("macos", "x86_64")] and "intel" not in runner[("macos", "arm64")]
    steps = jobs["build-wheels"]["steps"]
    assert any(s.get("uses", "").startswith("pypa/cibuildwheel@") for s in steps)
    assert all(s.get("env", {}).get("CIBW_ARCHS") == "${{ matrix.archs }}" for s in steps if "cibuildwheel" in s.get("uses", ""))
    # every source compiled for every cross target on every push (the NEON kernels included)
    runs = " ".join(s.get("run", "") for s in jobs["cross-compile"]["steps"])
    assert "scripts/cross_build.sh --compile-only" in runs and "scripts/test_neon_qemu.sh" in runs
    assert "ziglang" in runs
    # publishing only on tags, after the tests
    assert set(jobs["publish"]["needs"]) == {"cross-compile", "build-wheels", "sdist"}
    assert "refs/tags/v" in jobs["publish"]["if"]


def test_cibuildwheel_selects_cpython_3_9_to_3_13():
    cfg = cibw_config()
    assert cfg["build"] == [f"cp3{m}-*" for m in range(9, 14)]
    assert cfg["linux"]["archs"] == ["x86_64", "aarch64"]
    assert cfg["macos"]["archs"] == ["x86_64", "arm64"]
    assert cfg["windows"]["archs"] == ["AMD64"]
    assert cfg["manylinux-x86_64-image"] == cfg["manylinux-aarch64-image"] == "manylinux_2_28"
    m = re.fullmatch(r"python \{project\}/(\S+)", cfg["test-command"])
    assert m and (ROOT / m.group(1)).is_file()


def test_cibuildwheel_build_identifiers():
    if importlib.util.find_spec("cibuildwheel") is None:
        pytest.skip("cibuildwheel not installed (pip install cibuildwheel)")
    want = {
        "linux": [f"cp3{m}-{p}" for p in ("manylinux_x86_64", "manylinux_aarch64", "musllinux_x86_64")
                  for m in range(9, 14)],
        "macos": [f"cp3{m}-macosx_{a}" for m in range(9, 14) for a in ("x86_64", "arm64")],
        "windows": [f"cp3{m}-win_amd64" for m in range(9, 14)],
    }
    for platform, ids in want.items():
        r = subprocess.run([sys.executable, "-m", "cibuildwheel", "--platform", platform, "--print-build-identifiers",
                            str(ROOT)], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        assert sorted(r.stdout.split()) == sorted(ids), platform


def test_wheel_test_list_exists_and_runner_refuses_a_source_tree():
    spec = importlib.util.spec_from_file_location("run_wheel_tests", ROOT / "scripts" / "run_wheel_tests.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert len(mod.WHEEL_TESTS) >= 10
    for t in mod.WHEEL_TESTS:
        assert (ROOT / t).is_file(), t
    import edgellama

    if (ROOT / "src") not in Path(edgellama.__file__).resolve().parents:
        pytest.skip("edgellama is installed here, not the source tree: the refusal is not exercised")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_wheel_tests.py")], capture_output=True,
                       text=True, timeout=120, env=subprocess_env())
    assert r.returncode == 2 and "source tree" in r.stderr, r.stdout + r.stderr


def test_isa_flags_are_cmakelists_rows_and_zig_spells_them():
    out = {isa: subprocess.run([sys.executable, str(ROOT / "scripts" / "isa_flags.py"), isa], capture_output=True,
                               text=True, check=True).stdout.split() for isa in ("avx2", "avx512", "neon", "neon_i8mm")}
    assert out["avx2"] == ["-mavx2", "-mfma", "-mf16c"]
    assert "-mavx512vnni" in out["avx512"] and "-mavx2" in out["avx512"]
    assert out["neon"] == ["-march=armv8.2-a+dotprod+fp16"]
    assert out["neon_i8mm"] == ["-march=armv8.2-a+dotprod+i8mm+fp16"]
    text = (ROOT / "CMakeLists.txt").read_text()
    assert 'set(EDGELLAMA_FLAGS_avx2 "/arch:AVX2")' in text and 'set(EDGELLAMA_FLAGS_avx512 "/arch:AVX512")' in text
    if shutil.which("bash") is None:
        pytest.skip("bash not available")
    fn = re.search(r"^zig_flags\(\) \{.*?^\}", SCRIPT.read_text(), re.S | re.M).group(0)
    r = subprocess.run(["bash", "-c", fn + '\nzig_flags "$1"', "_", " ".join(out["neon"] + ["-O2"])],
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["-mcpu=generic+v8_2a+dotprod+fullfp16", "-O2"]
    r = subprocess.run(["bash", "-c", fn + '\nzig_flags "$1"', "_", " ".join(out["neon_i8mm"])],
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["-mcpu=generic+v8_2a+dotprod+i8mm+fullfp16"]


@pytest.mark.skipif(os.environ.get("EDGELLAMA_CROSS_BUILD") != "1",
                    reason="slow (~15-25 min on 2 cores: zig cross builds, wine, qemu, a wheel): "
                           "set EDGELLAMA_CROSS_BUILD=1 to run scripts/cross_build.sh")
def test_cross_build_script(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=3600,
                       env=dict(os.environ, BUILD_DIR=str(tmp_path / "cross"), PYTHON=sys.executable))
    if r.returncode == 77:
        pytest.skip("a tool is missing: " + r.stderr.strip().splitlines()[-2:].__str__())
    assert r.returncode == 0, (r.stdout + r.stderr)[-8000:]
    assert r.stdout.rstrip().endswith("ALL PASSED")
    assert "FAIL" not in r.stdout
