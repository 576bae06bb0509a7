"""Crafted malformed GGUF files (tests/crafted_files.py) loaded through every public entry point:
edgellama.GGUFFile, Llama(path, n_ctx=32), Llama(path, vocab_only=True) and `edgellama info`.
Each must fail with a Python exception (a ValueError subclass or OSError) whose message names the
problem -- never a crash. The loads run in child processes so that a segfault fails the test that
caused it instead of killing pytest."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import crafted_files as cf

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUNNER = str(HERE / "crafted_files.py")

_BASE_DIR = tempfile.mkdtemp(prefix="edgellama-crafted-")
CASES = {c.name: c for c in cf.all_cases(_BASE_DIR)}


def child_env():
    env = dict(os.environ)
    import edgellama  # the package under test (src/, or the sanitizer build's copy)

    pkg_root = str(Path(edgellama.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, str(HERE), env.get("PYTHONPATH", "")])
    env.pop("EDGELLAMA_DEBUG", None)
    return env


def matches(pattern, msg):
    return bool(re.search(pattern, msg, re.I) or re.search(pattern, msg.replace("'", ""), re.I))


def run_cases(directory: str, names, timeout=300):
    """{case: {api: result}}; a case whose load killed the child gets {"crash": description}."""
    results: dict = {}
    todo = list(names)
    while todo:
        p = subprocess.run([sys.executable, RUNNER, "cases", directory, *todo], capture_output=True, text=True,
                           env=child_env(), timeout=timeout)
        started = None
        for line in p.stdout.splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "start" in r:
                started = (r["start"], r["api"])
            else:
                results.setdefault(r["case"], {})[r["api"]] = r
                started = None
        if p.returncode == 0:
            break
        if started is None:  # died outside a load
            raise AssertionError(f"runner failed (rc {p.returncode}): {p.stderr[-3000:]}")
        name, api = started
        sig = -p.returncode
        desc = signal.Signals(sig).name if sig > 0 else f"exit status {p.returncode}"
        results.setdefault(name, {})["crash"] = f"{api} load crashed the process ({desc}): {p.stderr[-2000:]}"
        todo = todo[todo.index(name) + 1 :]
    return results


@pytest.fixture(scope="module")
def case_results(tmp_path_factory):
    d = tmp_path_factory.mktemp("crafted")
    names = []
    for c in CASES.values():
        names.append(os.path.basename(cf.write_case(c, str(d))))
    by_file = run_cases(str(d), names)
    return {n.rsplit(".", 1)[0]: r for n, r in by_file.items()}


MUST_FAIL = {"parse": ("gguf", "llama", "vocab", "info"), "vocab": ("llama", "vocab"), "model": ("llama",)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_crafted_file(case_results, name):
    case = CASES[name]
    res = case_results.get(name)
    assert res is not None, f"{name}: no result (runner output lost)"
    assert "crash" not in res, f"{name}: {res['crash']}"
    for api in cf.APIS:
        r = res[api]
        if api == "info":
            if not r["ok"]:
                msg = r["msg"].strip()
                assert r["rc"] == 1, f"{name}: info exit code {r['rc']}: {msg}"
                assert "Traceback" not in msg and "this is a bug" not in msg, f"{name}: info: {msg}"
                assert len(msg.splitlines()) == 1 and msg.startswith("edgellama: error: "), f"{name}: info: {msg!r}"
            if api in MUST_FAIL[case.level]:
                assert not r["ok"], f"{name}: `edgellama info` succeeded on a malformed file"
                assert matches(case.pattern, r["msg"]), f"{name}: info message {r['msg']!r} !~ {case.pattern}"
            continue
        if r["ok"]:
            assert api not in MUST_FAIL[case.level], f"{name}: {api} loaded a malformed file without an error"
            continue
        assert r["value_error"] or r["os_error"], f"{name}: {api} raised {r['exc']}: {r['msg']}"
        assert r["msg"], f"{name}: {api} raised {r['exc']} with an empty message"
        if api in MUST_FAIL[case.level]:
            assert matches(case.pattern, r["msg"]), f"{name}: {api}: message {r['msg']!r} does not match {case.pattern!r}"


def test_info_subprocess_one_line_error(tmp_path):
    """The real console entry point (python -m edgellama info) on a few malformed files."""
    for name in ("bad_magic", "dims_overflow_int64", "dim_zero", "empty", "directory"):
        path = cf.write_case(CASES[name], str(tmp_path))
        p = subprocess.run([sys.executable, "-m", "edgellama", "info", path], capture_output=True, text=True,
                           env=child_env(), timeout=60)
        err = p.stderr.strip()
        assert p.returncode == 1, (name, p.returncode, err)
        assert len(err.splitlines()) == 1 and err.startswith("edgellama: error:"), (name, err)
        assert "Traceback" not in err, (name, err)


def _truncation_chunks(n, k):
    step = (n + k - 1) // k
    return [(a, min(a + step, n)) for a in range(0, n, step)]


@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("trunc")
    buf = cf.small_model_bytes(str(d))
    path = d / "small.gguf"
    path.write_bytes(buf)
    return str(path), buf


def test_truncated_at_every_position(small_model_file):
    """Every prefix of a small valid model fails with an exception (prefixes that still hold all
    tensor data, i.e. only the trailing padding is cut, may load)."""
    path, buf = small_model_file
    valid_from = cf.tensor_data_end(buf)
    assert 1000 < len(buf) < 64 * 1024, len(buf)
    bad = []
    procs = []
    for a, b in _truncation_chunks(len(buf), 2):
        procs.append(((a, b), subprocess.Popen([sys.executable, RUNNER, "truncate", path, str(a), str(b), str(valid_from)],
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())))
    for (a, b), p in procs:
        out, err = p.communicate(timeout=600)
        last = None
        done = None
        for line in out.splitlines():
            r = json.loads(line)
            if "start" in r:
                last = r["start"]
            else:
                done = r
        if p.returncode != 0 or done is None:
            bad.append(f"truncation to {last} bytes crashed the process (rc {p.returncode}): {err[-2000:]}")
        else:
            assert done["done"] == b - a
            bad += done["bad"]
    assert not bad, "\n".join(bad[:30])


REGRESSIONS = sorted(p for p in (HERE / "regressions").glob("*") if p.is_file() and p.name != "README.md")


def test_regression_files_never_crash(tmp_path):
    """Every file in tests/regressions/ (fuzzer findings and hand-made crash reproducers) loads with
    a result or a ValueError/OSError through every entry point, never a crash."""
    assert REGRESSIONS, f"no regression files under {HERE / 'regressions'}"
    names = []
    for p in REGRESSIONS:
        dst = tmp_path / p.name
        dst.write_bytes(p.read_bytes())
        names.append(p.name)
    results = run_cases(str(tmp_path), names)
    problems = []
    for name in names:
        res = results.get(name, {})
        if "crash" in res:
            problems.append(f"{name}: {res['crash']}")
            continue
        for api, r in res.items():
            if api == "info":
                if not r["ok"] and (r["rc"] != 1 or "this is a bug" in r["msg"] or "Traceback" in r["msg"]):
                    problems.append(f"{name}: info: rc {r['rc']}: {r['msg']}")
            elif not r["ok"] and not (r["value_error"] or r["os_error"]):
                problems.append(f"{name}: {api} raised {r['exc']}: {r['msg']}")
    assert not problems, "\n".join(problems)
