// A persistent pool of worker threads, created once per context, that runs jobs made of many small
// tasks. parallel_for(n, fn) calls fn(task, slot) for every task in [0, n); tasks are handed out
// one at a time from a shared counter, and the calling thread takes part as slot 0.
//
// Why tasks rather than "every thread runs its share": decode issues hundreds of jobs per token.
// When another process holds a core, a worker may not be scheduled for milliseconds; with fixed
// shares the caller would wait for it on every job (measured: 2-thread decode fell from 33 to
// 1.8 tokens/s). Here the caller simply runs the tasks nobody has picked up, and only waits for
// tasks a worker has already *started*. A worker that wakes up after the job is finished joins
// nothing (see the join protocol in thread_pool.cpp).
//
// Workers spin briefly waiting for the next job and then sleep, so an idle context costs no CPU.
// A pool with more threads than logical CPUs never spins (see thread_pool.cpp).
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace edgellama {

class ThreadPool {
 public:
  using TaskFn = std::function<void(int64_t task, int slot)>;

  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // fn(task, slot) for each task in [0, n_tasks), in any order, on any threads. slot is in
  // [0, size()) and no two concurrently running calls share one, so it can index per-thread
  // scratch. Returns when every task has finished. The first exception thrown by fn is re-thrown
  // here (tasks not yet started are then skipped). Not re-entrant: fn must not call parallel_for.
  void parallel_for(int64_t n_tasks, const TaskFn& fn);

 private:
  void worker(int slot);
  void run_tasks(int slot) noexcept;
  void stop_workers() noexcept;

  int n_threads_;
  bool oversubscribed_;   // more threads than logical CPUs: never spin (thread_pool.cpp)
  int spin_iterations_;   // polls before a waiting thread sleeps (worker) or yields (caller)
  std::vector<std::thread> workers_;

  // The current job (written by the caller before the job is published, read by workers that
  // have joined it).
  const TaskFn* fn_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_task_{0};

  // generation_: bumped once per job; workers wait for it to change.
  // open_job_: the generation a worker may still join (0 once the caller has closed the job).
  // active_: workers that have joined the current job and not yet left it.
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> open_job_{0};
  std::atomic<int> active_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;

  std::mutex error_mutex_;
  std::exception_ptr error_;
};

// Number of physical cores (hyper-threads of one core count once); at least 1.
int physical_core_count();

// [begin, end) of `n` items for part `i` of `parts`, in contiguous chunks.
inline void split_range(int64_t n, int64_t i, int64_t parts, int64_t* begin, int64_t* end) {
  const int64_t per = (n + parts - 1) / parts;
  *begin = std::min<int64_t>(n, per * i);
  *end = std::min<int64_t>(n, *begin + per);
}

}  // namespace edgellama
