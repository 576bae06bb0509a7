// A persistent pool of worker threads, created once per context. run(fn) calls fn(ith, nth) on
// every thread (the caller is thread 0) and returns when all have finished. Workers spin briefly
// waiting for the next job (decode issues hundreds of small jobs per token) and then sleep, so an
// idle context costs no CPU.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace edgellama {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // fn(ith, nth) on all threads; exceptions thrown by fn are re-thrown here (the first one).
  void run(const std::function<void(int ith, int nth)>& fn);

 private:
  void worker(int ith);
  void call(int ith) noexcept;
  void stop_workers() noexcept;

  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

// Number of physical cores (hyper-threads of one core count once); at least 1.
int physical_core_count();

// [begin, end) of `n` items for thread ith of nth, in contiguous chunks.
inline void split_range(int64_t n, int ith, int nth, int64_t* begin, int64_t* end) {
  const int64_t per = (n + nth - 1) / nth;
  *begin = std::min<int64_t>(n, per * ith);
  *end = std::min<int64_t>(n, *begin + per);
}

}  // namespace edgellama
