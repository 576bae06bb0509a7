"""API misuse: every bad call raises a Python exception and leaves the object usable; closed objects
raise RuntimeError; one Llama shared by threads is serialized; Ctrl-C during generation stops it
and the object keeps working. (Basic out-of-vocabulary / n_ctx cases are in test_model_errors.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import edgellama
from model_factory import make_model

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("misuse") / "m.gguf", n_layer=2, n_embd=32, n_head=4, n_head_kv=2,
                      n_ff=64, n_vocab=300, seed=3)


@pytest.fixture
def llm(model_path):
    with edgellama.Llama(model_path, n_ctx=64, n_threads=1) as m:
        yield m


PROMPT = [1, 270, 280, 290, 10, 20, 30]


def reference_logits(model_path, tokens=PROMPT):
    with edgellama.Llama(model_path, n_ctx=64, n_threads=1) as m:
        return m.eval(tokens)


def greedy(m, prompt="ab cd", n=12):
    return m.create_completion(prompt, max_tokens=n, temperature=0.0)["choices"][0]["text"]


def assert_usable(m, model_path):
    """The object still evaluates correctly after the failed call."""
    m.reset()
    np.testing.assert_array_equal(m.eval(PROMPT), reference_logits(model_path))
    m.reset()


# ----------------------------------------------------------------------------------------------
# bad arguments leave the object usable
# ----------------------------------------------------------------------------------------------

BAD_IDS = [-1, -2**31, 300, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, 2**100, -2**100]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_token_ids_everywhere(llm, model_path, bad):
    llm.eval([1, 2])
    for call in (lambda: llm.eval([5, bad]), lambda: llm.detokenize([5, bad]),
                 lambda: llm.create_completion([1, bad], max_tokens=2), lambda: next(llm.generate([1, bad]))):
        with pytest.raises(ValueError, match="outside the vocabulary|out of range"):
            call()
    assert llm.n_tokens <= 2  # the failed calls added nothing (generation may drop a cached suffix)
    assert_usable(llm, model_path)


@pytest.mark.parametrize("arr, exc", [
    (np.array([1.0, 2.0]), TypeError), (np.array([True, False]), TypeError), (np.array([[1, 2]]), ValueError),
    (np.array([], dtype=np.float32).reshape(0, 2), ValueError), (np.array(["1"]), TypeError),
    (np.array([2**64 - 1], dtype=np.uint64), ValueError), (np.array([2**40], dtype=np.int64), ValueError),
    (np.array([-1], dtype=np.int8), ValueError), (np.array([1, 2], dtype=object), TypeError),
])
def test_bad_numpy_token_arrays(llm, model_path, arr, exc):
    with pytest.raises(exc):
        llm.eval(arr)
    with pytest.raises(exc):
        llm.detokenize(arr)
    assert llm.n_tokens == 0
    assert_usable(llm, model_path)


def test_odd_but_valid_numpy_token_arrays(llm, model_path):
    ref = reference_logits(model_path)
    for arr in (np.array(PROMPT, dtype=np.uint16), np.repeat(np.array(PROMPT, dtype=np.int64), 2)[::2],
                np.array(PROMPT, dtype=np.int32)[::-1][::-1], np.asfortranarray(np.array(PROMPT))):
        llm.reset()
        np.testing.assert_array_equal(llm.eval(arr), ref)


@pytest.mark.parametrize("bad", [None, 1.5, "1", [[1]], [1.0], [True], b"\x01", "text"])
def test_bad_token_sequences(llm, model_path, bad):
    with pytest.raises((TypeError, ValueError)):
        llm.eval(bad)
    assert_usable(llm, model_path)


def test_prompt_longer_than_context(llm, model_path):
    long_ids = [5] * 65
    with pytest.raises(ValueError, match="n_ctx|context"):
        llm.eval(long_ids)
    with pytest.raises(ValueError, match="n_ctx|context"):
        llm.create_completion(long_ids, max_tokens=4)
    with pytest.raises(ValueError, match="n_ctx|context"):
        llm.create_completion("ab " * 200, max_tokens=4)
    assert_usable(llm, model_path)
    # filling the context exactly, then one more token
    llm.eval([5] * 64)
    with pytest.raises(ValueError, match="context window full"):
        llm.eval([5])
    assert llm.n_tokens == 64
    assert_usable(llm, model_path)


def test_empty_prompt_and_empty_text(llm, model_path):
    # an empty prompt is the BOS token alone (as in llama-cpp-python): it generates
    out = llm.create_completion("", max_tokens=3, temperature=0.0)
    assert out["usage"]["prompt_tokens"] == 1
    assert llm.tokenize(b"", add_bos=False) == []
    assert llm.detokenize([]) == b""
    with pytest.raises(ValueError):
        llm.create_completion([], max_tokens=3)
    assert_usable(llm, model_path)


@pytest.mark.parametrize("text", [b"\xff", b"abc\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"a\xc0\xafb",
                                  "\ud800", "a\udfffb"])
def test_invalid_utf8_and_surrogates(llm, model_path, text):
    with pytest.raises(ValueError):  # UnicodeEncodeError is a ValueError too
        llm.tokenize(text)
    with pytest.raises(ValueError):
        llm.create_completion(text, max_tokens=2)
    assert llm.tokenize(b"ab cd") == llm.tokenize("ab cd")
    assert_usable(llm, model_path)


@pytest.mark.parametrize("text", [b"\0\0\0", b"<s></s><s>" * 50, "\U0001F600" * 100, b" " * 2000, b"<0xFF>"])
def test_odd_but_valid_text(llm, text):
    ids = llm.tokenize(text, special=True)
    assert all(0 <= i < llm.n_vocab() for i in ids)
    llm.detokenize(ids, special=True)


@pytest.mark.parametrize("kw", [
    dict(n_ctx=-1),  # n_ctx=0 is the trained context (test_model_errors) dict(n_ctx=2**24 + 1), dict(n_ctx=2**40), dict(n_ctx=2**70), dict(n_ctx=1.5),
    dict(n_ctx="32"), dict(n_ctx=None), dict(n_ctx=True),
    dict(n_threads=0), dict(n_threads=-1), dict(n_threads=1025), dict(n_threads=10**6), dict(n_threads=2**70),
    dict(n_threads=2.0), dict(n_threads="2"),
    dict(n_batch=0), dict(n_batch=-5), dict(n_batch=1.0), dict(n_batch=None),
    dict(type_k="q4"), dict(precision="fastest"),
])
def test_bad_constructor_arguments(model_path, kw):
    with pytest.raises((ValueError, TypeError)):
        edgellama.Llama(model_path, **kw)


@pytest.mark.parametrize("kw", [dict(n_batch=2**40), dict(n_batch=2**70), dict(n_ctx=1), dict(n_threads=48, n_ctx=4)])
def test_extreme_but_valid_constructor_arguments(model_path, kw):
    with edgellama.Llama(model_path, **kw) as m:
        m.eval([1])


def test_n_threads_huge_starts_no_threads(model_path):
    before = threading.active_count(), len(os.listdir("/proc/self/task"))
    with pytest.raises(ValueError, match="n_threads"):
        edgellama.Llama(model_path, n_threads=100000)
    from edgellama import _core

    m = _core.Model(model_path)
    with pytest.raises(ValueError, match="n_threads"):  # the C++ check runs before any thread starts
        _core.Context(m, 32, 100000, 8, "f16", "f16", "fast")
    assert len(os.listdir("/proc/self/task")) <= before[1]


@pytest.mark.skipif(bool(os.environ.get("EDGELLAMA_SANITIZED")), reason="ASan needs more address space than the limit")
def test_thread_creation_failure_is_an_exception(model_path):
    """When the OS refuses threads (address space exhausted), the constructor raises instead of
    std::terminate (joinable std::threads destroyed while the pool's constructor unwinds)."""
    code = f"""
import resource, edgellama
m = edgellama.Llama({str(model_path)!r}, n_ctx=8, n_threads=1)  # warm: libraries loaded
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
for i in range(3):
    try:
        edgellama.Llama({str(model_path)!r}, n_ctx=8, n_threads=1024)
        print("created")
    except Exception as e:
        print("raised", type(e).__name__)
print(m.create_completion("ab", max_tokens=2, temperature=0)["choices"][0]["text"] is not None)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    assert p.stdout.strip().endswith("True"), p.stdout


# ----------------------------------------------------------------------------------------------
# closed objects
# ----------------------------------------------------------------------------------------------

def test_use_after_close_raises_runtime_error(model_path):
    m = edgellama.Llama(model_path, n_ctx=32, n_threads=1)
    gen = m.generate([1, 2], temp=0)
    next(gen)
    m.close()
    m.close()  # double close is fine
    calls = [lambda: m.eval([1]), lambda: m.tokenize("a"), lambda: m.detokenize([1]), lambda: m.reset(),
             lambda: m.create_completion("a", max_tokens=2), lambda: list(m.generate([1])), lambda: m.n_vocab(),
             lambda: m.token_eos(), lambda: m.create_chat_completion([{"role": "user", "content": "hi"}]),
             lambda: next(gen), lambda: m("a"), lambda: m.n_embd()]
    for c in calls:
        with pytest.raises(RuntimeError, match="closed"):
            c()
    with m:  # context manager on a closed object: closes again, no error
        pass


def test_close_while_a_stream_is_open(model_path):
    m = edgellama.Llama(model_path, n_ctx=32, n_threads=1)
    it = m.create_completion("ab", max_tokens=20, temperature=0.0, stream=True)
    next(it)
    m.close()
    with pytest.raises(RuntimeError, match="closed"):
        for _ in it:
            pass


def test_vocab_only_cannot_evaluate(model_path):
    with edgellama.Llama(model_path, vocab_only=True) as m:
        assert m.tokenize("ab")
        with pytest.raises(RuntimeError, match="vocab_only"):
            m.eval([1])
        with pytest.raises((RuntimeError, ValueError), match="vocab_only|n_ctx"):
            m.create_completion("ab", max_tokens=2)


# ----------------------------------------------------------------------------------------------
# threads
# ----------------------------------------------------------------------------------------------

def _run_threads(fns):
    out = [None] * len(fns)
    errs = []
    barrier = threading.Barrier(len(fns))

    def go(i):
        try:
            barrier.wait()
            out[i] = fns[i]()
        except BaseException as e:  # noqa: BLE001
            errs.append(e)

    ts = [threading.Thread(target=go, args=(i,)) for i in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errs, errs
    return out


def test_one_llama_two_threads_eval_is_serialized(model_path):
    a, b = [1, 10, 20, 30, 40], [1, 50, 60, 70]
    with edgellama.Llama(model_path, n_ctx=64, n_threads=2) as m:
        seq_ab = [m.eval(a), m.eval(b)]
        m.reset()
        seq_ba = [m.eval(b), m.eval(a)]
        for _ in range(10):
            m.reset()
            ra, rb = _run_threads([lambda: m.eval(a), lambda: m.eval(b)])
            # whichever ran first evaluated at positions 0.., the other after it
            assert (np.array_equal(ra, seq_ab[0]) and np.array_equal(rb, seq_ab[1])) or \
                   (np.array_equal(rb, seq_ba[0]) and np.array_equal(ra, seq_ba[1]))
            assert m.n_tokens == len(a) + len(b)


def test_one_llama_two_threads_generation(model_path):
    """Two completions on one object at once give the same texts as one after the other."""
    prompts = ["ab cd", "ef gh ij"]
    with edgellama.Llama(model_path, n_ctx=64, n_threads=1) as m:
        expected = [greedy(m, p, 16) for p in prompts]
        for _ in range(5):
            got = _run_threads([lambda p=p: greedy(m, p, 16) for p in prompts])
            assert got == expected
        # two interleaved streams in one thread as well
        its = [m.create_completion(p, max_tokens=16, temperature=0.0, stream=True) for p in prompts]
        texts = ["", ""]
        done = [False, False]
        while not all(done):
            for i, it in enumerate(its):
                if not done[i]:
                    try:
                        texts[i] += next(it)["choices"][0]["text"]
                    except StopIteration:
                        done[i] = True
        assert texts == expected


def test_two_llamas_same_file_two_threads(model_path):
    with edgellama.Llama(model_path, n_ctx=64, n_threads=1) as m:
        expected = [greedy(m, "ab cd", 16), m.eval(PROMPT)]

    def work():
        with edgellama.Llama(model_path, n_ctx=64, n_threads=1) as m2:
            return [greedy(m2, "ab cd", 16), m2.eval(PROMPT)]

    for r in _run_threads([work, work, work]):
        assert r[0] == expected[0]
        np.testing.assert_array_equal(r[1], expected[1])


def test_shared_llama_smollm2_two_threads(smollm2_path):
    """The real model, two threads, one object: equal to sequential runs."""
    prompts = ["The capital of France is", "1, 2, 3, 4,"]
    with edgellama.Llama(smollm2_path, n_ctx=128, n_threads=2) as m:
        expected = [greedy(m, p, 8) for p in prompts]
        got = _run_threads([lambda p=p: greedy(m, p, 8) for p in prompts])
    assert got == expected


# ----------------------------------------------------------------------------------------------
# Ctrl-C
# ----------------------------------------------------------------------------------------------

INTERRUPT_CHILD = r"""
import json, signal, sys, threading, time
import edgellama
# Ctrl-C raises KeyboardInterrupt even when this process inherited SIGINT as ignored (a test run
# started in the background by a non-interactive shell ignores it, and so do its children).
signal.signal(signal.SIGINT, signal.default_int_handler)
path = sys.argv[1]
m = edgellama.Llama(path, n_ctx=2048, n_threads=1)
fresh = edgellama.Llama(path, n_ctx=2048, n_threads=1)
expected = fresh.create_completion("ab cd", max_tokens=24, temperature=0.0)["choices"][0]["text"]
results = []
for delay in (0.02, 0.05, 0.1, 0.2):
    n = [0]
    t_sig = [None]
    def timer():
        time.sleep(delay)
        t_sig[0] = time.perf_counter()
        signal.raise_signal(signal.SIGINT)
    th = threading.Thread(target=timer)
    stopped = None
    try:
        # end-of-sequence suppressed and the timer started at the first streamed token, so the signal
        # lands while tokens are being generated (the packed kernels made this model fast enough to
        # finish before a 20 ms signal counted from the call)
        for chunk in m.create_completion("ef gh " * 20, max_tokens=1800, temperature=0.7, stream=True, seed=1,
                                         logit_bias={m.token_eos(): -1e9}):
            if n[0] == 0:
                th.start()
            n[0] += 1
    except KeyboardInterrupt:
        stopped = time.perf_counter()
    if stopped is None:
        # the generation ended (EOS) before the signal: take the signal here, where it is expected,
        # not in the next round's setup
        try:
            if th.is_alive() or n[0]:
                th.join()
            time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        results.append({"finished": True, "tokens": n[0]})
        continue
    latency = stopped - t_sig[0]
    # the object is still usable and gives the same output as a fresh one
    again = m.create_completion("ab cd", max_tokens=24, temperature=0.0)["choices"][0]["text"]
    results.append({"tokens_before": n[0], "latency": latency, "same": again == expected,
                    "cache_ok": len(m.tokens_in_cache) == m._ctx.n_past})
print(json.dumps(results))
"""


def test_keyboard_interrupt_during_generation(tmp_path):
    # a slower model so an interrupt lands in the middle of a long generation
    path = make_model(tmp_path / "slow.gguf", n_layer=6, n_embd=256, n_head=4, n_head_kv=2, n_ff=512, n_vocab=300)
    p = subprocess.run([sys.executable, "-c", INTERRUPT_CHILD, path], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads(p.stdout.strip().splitlines()[-1])
    interrupted = [r for r in results if "latency" in r]
    assert interrupted, results
    for r in interrupted:
        assert r["same"] and r["cache_ok"], results
        assert r["latency"] < 0.5, results  # within about one token (a token takes a few ms here)


# ----------------------------------------------------------------------------------------------
# hostile chat templates (they come from the model file)
# ----------------------------------------------------------------------------------------------

HOSTILE_TEMPLATES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",       # sandbox escape attempt
    "{{ cycler.__init__.__globals__.os }}",
    "{% for i in range(10**9) %}x{% endfor %}",              # the sandbox's range limit
    "{{ 'a' * 10**10 }}",                                    # 10 GB string: was an OOM kill
    "{{ (['a'] * 5000) * 5000 }}",
    "{{ 7 ** 100000000 }}",                                  # huge integer
    "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}",    # unbounded recursion
    "{{ raise_exception('no') }}", "{% if %}", "{{ messages[99]['content'] }}",
]


@pytest.mark.skipif(bool(os.environ.get("EDGELLAMA_SANITIZED")), reason="uses an address-space limit")
def test_hostile_chat_templates_are_value_errors(tmp_path):
    paths = []
    for i, t in enumerate(HOSTILE_TEMPLATES):
        paths.append(make_model(tmp_path / f"t{i}.gguf", n_layer=1, n_embd=16, n_head=2, n_head_kv=1, n_ff=32,
                                n_vocab=32, extra_kv=lambda w, t=t: w.add_chat_template(t)))
    code = r"""
import json, resource, sys, edgellama
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a runaway allocation fails here, not in the OOM killer
out = []
for p in sys.argv[1:]:
    m = edgellama.Llama(p, n_ctx=32, n_threads=1)
    try:
        m.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=2)
        out.append("ok")
    except ValueError as e:
        out.append("ValueError")
    except BaseException as e:
        out.append(f"{type(e).__name__}: {e}"[:200])
    m.close()
print(json.dumps(out))
"""
    p = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got == ["ValueError"] * len(HOSTILE_TEMPLATES), list(zip(HOSTILE_TEMPLATES, got))
