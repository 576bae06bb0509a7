"""The thread pool's contract (cpp/runtime/thread_pool.cpp): every task of a parallel_for job runs
exactly once, no two threads use the same slot at the same time, slots stay below the pool size, and
a task's exception reaches the caller. Oversubscribed pools (more threads than cores) are included:
that is where a late-waking worker could join a finished job."""
import pytest

from edgellama import _core


@pytest.mark.parametrize("n_threads", [1, 2, 3, 8])
@pytest.mark.parametrize("n_tasks", [0, 1, 2, 7, 1000])
def test_every_task_runs_once_per_job(n_threads, n_tasks):
    jobs = 200 if n_tasks <= 7 else 20
    runs, collisions, max_slot = _core.thread_pool_check(n_threads, n_tasks, jobs)
    assert runs == [jobs] * n_tasks
    assert collisions == 0
    assert 0 <= max_slot < n_threads


def test_many_tiny_jobs_back_to_back():
    # decode's pattern: hundreds of small jobs in a row; a worker still finishing job k must not
    # run tasks of job k+1 with job k's function or counters
    runs, collisions, _ = _core.thread_pool_check(4, 3, 5000)
    assert runs == [5000] * 3
    assert collisions == 0


@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_task_exception_reaches_caller(n_threads):
    with pytest.raises(ValueError, match="task 5 failed"):
        _core.thread_pool_check(n_threads, 64, 3, throw_at=5)


# ---- more threads than CPUs (issue #10: n_threads=1000 made a 2-token call take 155 s) ------------

import os
import time
import warnings

import numpy as np

from edgellama import Llama
from model_factory import make_model


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    # 8 layers: a 2-token call is ~70 pool jobs, each of which a spinning oversubscribed pool slowed down
    return make_model(tmp_path_factory.mktemp("threads") / "m.gguf", wtype="Q4_0", n_layer=8, n_embd=128, n_head=4,
                      n_head_kv=2, n_ff=256, n_vocab=300)


def _eval_two_tokens(path, n_threads):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        llm = Llama(path, n_ctx=32, n_threads=n_threads, verbose=False)
    t0 = time.perf_counter()
    logits = llm.eval([5, 7])
    elapsed = time.perf_counter() - t0
    return elapsed, np.array(logits, copy=True)


@pytest.mark.parametrize("n_threads", [64, 512])
def test_oversubscribed_pool_does_not_spin(small_model, n_threads):
    # Before the fix: ~0.1 s of spinning per job and thread beyond the CPUs. Now: the pool sleeps.
    _, ref = _eval_two_tokens(small_model, 1)
    elapsed, logits = _eval_two_tokens(small_model, n_threads)
    assert elapsed < 3.0, f"2-token eval with n_threads={n_threads} took {elapsed:.1f} s"
    assert np.array_equal(logits, ref)  # results never depend on the thread count


def _usable_cpus():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def test_more_threads_than_cpus_warns(small_model):
    with pytest.warns(RuntimeWarning, match="logical CPUs"):
        Llama(small_model, n_ctx=16, n_threads=_usable_cpus() + 1, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        Llama(small_model, n_ctx=16, n_threads=_usable_cpus(), verbose=False)


def test_default_threads_are_physical_cores(small_model):
    llm = Llama(small_model, n_ctx=16, verbose=False)
    assert llm.n_threads == _core.physical_core_count()
    assert 1 <= llm.n_threads <= _usable_cpus()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_default_threads_follow_cpu_affinity():
    # taskset / a container cpuset: the default must not exceed the CPUs this process may use
    import subprocess
    import sys

    from conftest import subprocess_env

    code = "from edgellama import _core; print(_core.physical_core_count())"
    cpu = sorted(os.sched_getaffinity(0))[0]
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                         check=True, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    assert int(out.stdout) == 1
