// The thread pool's contract, exposed for tests (tests/test_thread_pool.py):
//   thread_pool_check(n_threads, n_tasks, jobs, throw_at=-1) -> (runs_per_task, slot_collisions, max_slot)
// runs `jobs` parallel_for jobs of n_tasks tasks on one pool and counts how often each task ran,
// how often two threads were inside the same slot at once, and the largest slot seen. throw_at >= 0
// makes that task throw a ValueError-mapped ArgumentError in every job (the first job re-throws).
//   physical_core_count() -> int        the default n_threads of a context
#include <pybind11/stl.h>

#include <atomic>
#include <memory>
#include <thread>
#include <tuple>
#include <vector>

#include "bindings.h"
#include "edgellama/errors.h"
#include "edgellama/thread_pool.h"

using namespace edgellama;

namespace {

std::tuple<std::vector<int64_t>, int64_t, int> thread_pool_check(int n_threads, int64_t n_tasks, int jobs,
                                                                 int64_t throw_at) {
  if (n_threads < 1 || n_threads > 64) throw ArgumentError("n_threads must be 1..64");
  if (n_tasks < 0 || n_tasks > (int64_t(1) << 20)) throw ArgumentError("n_tasks must be 0..2^20");
  ThreadPool pool(n_threads);
  std::unique_ptr<std::atomic<int64_t>[]> runs(new std::atomic<int64_t>[size_t(n_tasks) + 1]);
  for (int64_t i = 0; i < n_tasks; ++i) runs[size_t(i)].store(0);
  std::unique_ptr<std::atomic<int>[]> in_slot(new std::atomic<int>[size_t(n_threads)]);
  for (int i = 0; i < n_threads; ++i) in_slot[size_t(i)].store(0);
  std::atomic<int64_t> collisions{0};
  std::atomic<int> max_slot{0};
  {
    py::gil_scoped_release release;
    for (int j = 0; j < jobs; ++j) {
      pool.parallel_for(n_tasks, [&](int64_t task, int slot) {
        if (slot < 0 || slot >= n_threads) {
          collisions.fetch_add(1000000);  // out-of-range slot: reported as a collision
          return;
        }
        if (in_slot[size_t(slot)].fetch_add(1) != 0) collisions.fetch_add(1);
        int seen = max_slot.load();
        while (slot > seen && !max_slot.compare_exchange_weak(seen, slot)) {
        }
        runs[size_t(task)].fetch_add(1);
        if ((task & 7) == 0) std::this_thread::yield();  // let other threads interleave
        in_slot[size_t(slot)].fetch_sub(1);
        if (task == throw_at) throw ArgumentError("task " + std::to_string(task) + " failed");
      });
    }
  }
  std::vector<int64_t> counts(static_cast<size_t>(n_tasks));
  for (int64_t i = 0; i < n_tasks; ++i) counts[size_t(i)] = runs[size_t(i)].load();
  return {counts, collisions.load(), max_slot.load()};
}

}  // namespace

void bind_threads(py::module_& m) {
  m.def("thread_pool_check", &thread_pool_check, py::arg("n_threads"), py::arg("n_tasks"), py::arg("jobs"),
        py::arg("throw_at") = -1);
  m.def("physical_core_count", &physical_core_count,
        "Physical cores of this machine (the default n_threads of a context).");
}
