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
