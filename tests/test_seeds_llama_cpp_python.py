"""Same seed, same tokens as llama-cpp-python 0.3.36 (issue 12), on SmolLM2-135M.

llama-cpp-python runs in a child process (tests/llama_cpp_python_sampling.py) from its sdist with a
built libllama: $LLAMA_CPP_PYTHON_SDIST (default /work/llamacpp/llama_cpp_python-0.3.36) and
$LLAMA_CPP_LIB_PATH (default /work/llamacpp/build-native/bin); skipped with the reason when absent.

1. Replay: llama.cpp's own logits for every token it sampled, fed to edgellama's sampler with the
   call's seed, give exactly llama.cpp's tokens: same RNG stream, same truncation, same pick.
2. Seed chain: calls without seed= move the object's seed exactly as llama-cpp-python's do.
3. End to end: edgellama's own completions start with llama-cpp-python's tokens for every seed
   and share several, far more than with another seed's. They cannot be equal throughout:
   llama.cpp's logits on this model are up to ~1 away from a float64 forward (edgellama's fast
   path ~0.6, its exact path 0.02), so a draw that lands near a bucket boundary can go either way,
   and text after a divergence differs. The bounds are from measurement (see the test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgellama
from edgellama import _core

HERE = Path(__file__).resolve().parent
SDIST = Path(os.environ.get("LLAMA_CPP_PYTHON_SDIST", "/work/llamacpp/llama_cpp_python-0.3.36"))
LIB = Path(os.environ.get("LLAMA_CPP_LIB_PATH", "/work/llamacpp/build-native/bin"))

PROMPT = "Once upon a time, in a small village,"
MAX_TOKENS = 8
TRUNC = dict(top_k=40, top_p=0.95, min_p=0.05)  # create_completion's defaults
CALLS = (
    [dict(temperature=t, seed=s, **TRUNC) for t in (0.7, 1.0, 1.3) for s in range(8)]
    + [dict(temperature=1.0, seed=s, top_k=0, top_p=1.0, min_p=0.0) for s in (11, 12, 13)]  # no truncation: id order
    + [dict(temperature=0.9, seed=s, top_k=0, top_p=0.8, min_p=0.0) for s in (21, 22)]  # top-p alone sorts
    + [dict(temperature=1.0, seed=s, top_k=40, top_p=1.0, min_p=0.05, typical_p=0.9) for s in (31, 32)]  # typical order
    + [dict(temperature=1.0, seed=s, top_k=40, top_p=0.95, min_p=0.05, typical_p=0.9) for s in (33, 34)]
    + [dict(temperature=1.0, seed=s, repeat_penalty=1.5, frequency_penalty=0.3, presence_penalty=0.4, **TRUNC)
       for s in (41, 42)]  # penalties (llama-cpp-python's sampler sees only the tokens it sampled)
    + [dict(temperature=0.8, seed=2**32 + 5, **TRUNC)]  # ctypes c_uint32 truncation: seed 5
    + [dict(temperature=1.0, seed=None, **TRUNC) for _ in range(4)]  # the seed chain from object_seed / the last seed
)
OBJECT_SEED = 1234


@pytest.fixture(scope="module")
def llama_cpp_runs(smollm2_path, tmp_path_factory):
    if not (SDIST / "llama_cpp" / "llama.py").is_file():
        pytest.skip(f"llama-cpp-python sdist not found at {SDIST} (set LLAMA_CPP_PYTHON_SDIST)")
    if not any(LIB.glob("libllama.*")):
        pytest.skip(f"no libllama in {LIB} (set LLAMA_CPP_LIB_PATH to a llama.cpp build's bin/)")
    d = tmp_path_factory.mktemp("lcpp")
    (d / "cases.json").write_text(json.dumps(dict(prompt=PROMPT, max_tokens=MAX_TOKENS, calls=CALLS,
                                                  object_seed=OBJECT_SEED)))
    env = dict(os.environ, PYTHONPATH=str(SDIST), LLAMA_CPP_LIB_PATH=str(LIB))
    r = subprocess.run([sys.executable, str(HERE / "llama_cpp_python_sampling.py"), str(smollm2_path),
                        str(d / "cases.json"), str(d / "out.npz")], env=env, capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip(f"llama-cpp-python is not importable from {SDIST}: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-3000:]
    with np.load(d / "out.npz") as z:
        return [dict(text=str(z[f"text_{i}"]), tokens=z[f"tokens_{i}"], logits=z[f"logits_{i}"],
                     seed=int(z[f"seed_{i}"])) for i in range(len(CALLS))]


def test_replaying_llama_cpp_logits_gives_its_tokens(llama_cpp_runs):
    n_compared = 0
    for call, run in zip(CALLS, llama_cpp_runs):
        assert len(run["tokens"]) >= MAX_TOKENS - 1  # the last sampled token is not evaluated
        s = _core.Sampler(temperature=call["temperature"], top_k=call["top_k"], top_p=call["top_p"],
                          min_p=call["min_p"], typical_p=call.get("typical_p", 1.0),
                          repeat_penalty=call.get("repeat_penalty", 1.0),
                          frequency_penalty=call.get("frequency_penalty", 0.0),
                          presence_penalty=call.get("presence_penalty", 0.0), repeat_last_n=64,
                          seed=run["seed"] & 0xFFFFFFFF)
        got = []
        for row in run["logits"]:
            got.append(int(s.sample(row)))
            s.accept(got[-1])
        assert got == run["tokens"].tolist(), (call, run["seed"])
        n_compared += len(got)
    assert n_compared >= 5 * len(CALLS)


def test_seed_chain_is_llama_cpp_pythons(llama_cpp_runs, smollm2_path):
    # calls with seed=s leave s as the object's seed; calls without one set
    # random.Random(seed).randint(0, 2**32), as llama-cpp-python 0.3.36's create_completion does
    seeds = []
    with edgellama.Llama(smollm2_path, n_ctx=64, seed=OBJECT_SEED, verbose=False) as llm:
        for call in CALLS:
            llm.create_completion(PROMPT, max_tokens=1, **call)
            seeds.append(llm.seed)
    assert seeds == [run["seed"] for run in llama_cpp_runs]
    assert len(set(seeds[-4:])) == 4


def _common_prefix(a, b) -> int:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


def test_completions_follow_llama_cpp_python(llama_cpp_runs, smollm2_path):
    with edgellama.Llama(smollm2_path, n_ctx=256, seed=OBJECT_SEED, verbose=False) as llm:
        n_prompt = len(llm.tokenize(PROMPT.encode()))
        ours = []
        for call in CALLS:
            llm.create_completion(PROMPT, max_tokens=MAX_TOKENS, **call)
            ours.append([int(t) for t in llm.input_ids[n_prompt:llm.n_tokens]])
    theirs = [run["tokens"].tolist() for run in llama_cpp_runs]
    # (not the calls with penalties: edgellama's also look at the prompt, docs/compat.md)
    plain = [i for i, call in enumerate(CALLS) if "repeat_penalty" not in call]
    prefix = [_common_prefix(ours[i], theirs[i]) for i in plain]
    # the same comparison with each call against another seed's llama.cpp tokens (same settings)
    shifted = [_common_prefix(ours[i], theirs[i + 1 if i % 8 < 7 else i - 7]) for i in range(24)]
    # Measured on SmolLM2-135M Q4_1 (x86-64 AVX2, 90 calls: temperatures 0.7/1.0/1.3, seeds 0..29,
    # 8 tokens, default truncation): the first token equal for 100% of the calls, the first 3 for
    # 79%, all 7 compared for 30%, 4.1 tokens in common on average; against another seed's tokens
    # 69%, 34%, 2%, 1.5. The divergences come from the logits, not the draws: replaying llama.cpp's
    # logits gives its tokens exactly (test above).
    assert sum(k >= 1 for k in prefix) >= 0.9 * len(plain), (prefix, ours, theirs)
    assert sum(k >= 3 for k in prefix) >= 0.6 * len(plain), (prefix, ours, theirs)
    assert np.mean(prefix) >= 3.0, (prefix, ours, theirs)
    assert np.mean(prefix[:24]) >= 2 * np.mean(shifted), (prefix[:24], shifted)
