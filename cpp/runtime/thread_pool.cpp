#include "edgellama/thread_pool.h"

#if defined(__linux__)
#include <sched.h>
#endif

#include <fstream>
#include <set>
#include <string>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EDGELLAMA_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define EDGELLAMA_PAUSE() asm volatile("yield")
#else
#define EDGELLAMA_PAUSE() ((void)0)
#endif

namespace edgellama {

namespace {
// How long a worker polls for the next job before it goes to sleep. A decode step issues a job
// every few microseconds, so spinning this long keeps workers hot during generation while an idle
// context falls asleep within about a millisecond.
constexpr int kSpinIterations = 20000;

// More threads than logical CPUs: a spinning thread then holds a CPU that a thread with work needs
// (a user passing n_threads=1000 on 2 CPUs made a 2-token call take 155 s). Such a pool never
// spins: workers sleep at once, the caller yields while it waits, and a job wakes at most as many
// workers as there are other CPUs.
// Logical CPUs this process may run on (the affinity mask under taskset / a container cpuset, where
// hardware_concurrency() still counts the whole machine).
unsigned usable_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return unsigned(n);
  }
#endif
  return std::thread::hardware_concurrency();
}

bool more_threads_than_cpus(int n_threads) {
  const unsigned cpus = usable_cpus();
  return cpus > 0 && unsigned(n_threads) > cpus;
}
}  // namespace

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads < 1 ? 1 : n_threads),
      oversubscribed_(more_threads_than_cpus(n_threads_)),
      spin_iterations_(oversubscribed_ ? 0 : kSpinIterations) {
  try {
    workers_.reserve(n_threads_ - 1);
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
  } catch (...) {
    // The OS refused a thread (or memory): stop and join those already started, since destroying a
    // joinable std::thread calls std::terminate.
    stop_workers();
    throw;
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (std::thread& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
}

void ThreadPool::run_tasks(int slot) noexcept {
  for (;;) {
    const int64_t task = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (task >= n_tasks_) return;
    try {
      (*fn_)(task, slot);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
      next_task_.store(n_tasks_, std::memory_order_relaxed);  // skip the tasks nobody started
    }
  }
}

// Join protocol (why a late worker can neither be waited for nor run a finished job's tasks):
//   caller:  publish job, open_job_ = gen  ...run tasks...  open_job_ = 0;  wait for active_ == 0
//   worker:  active_ += 1;  if (open_job_ == gen) run tasks;  active_ -= 1
// All four marked operations are sequentially consistent, so either the worker sees the job still
// open (and then the caller sees active_ > 0 and waits for it), or it sees the job closed and
// leaves without touching it. The caller never waits for a worker that has not joined.
void ThreadPool::parallel_for(int64_t n_tasks, const TaskFn& fn) {
  if (n_tasks <= 0) return;
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  fn_ = &fn;
  n_tasks_ = n_tasks;
  error_ = nullptr;
  next_task_.store(0, std::memory_order_relaxed);
  {
    // Under the mutex so a worker going to sleep either sees the new generation or is counted in
    // sleepers_ before we look at it.
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;
    open_job_.store(gen, std::memory_order_seq_cst);
    generation_.store(gen, std::memory_order_release);
  }
  const int sleepers = sleepers_.load(std::memory_order_relaxed);
  if (sleepers > 0) {
    if (!oversubscribed_) {
      wake_.notify_all();
    } else {
      // Each woken worker costs a context switch on a CPU that is already busy: wake no more than
      // can run beside the caller and have a task to take.
      const unsigned cpus = usable_cpus();
      const int64_t useful = std::min<int64_t>(n_tasks - 1, int64_t(cpus > 1 ? cpus - 1 : 1));
      for (int64_t i = 0; i < std::min<int64_t>(useful, sleepers); ++i) wake_.notify_one();
    }
  }

  run_tasks(0);

  open_job_.store(0, std::memory_order_seq_cst);
  // Only workers that are inside a task are left; they are running, so spin briefly, then yield the
  // core in case one of them was preempted and waits for it.
  for (int i = 0; active_.load(std::memory_order_seq_cst) != 0; ++i) {
    if (i < spin_iterations_) {
      EDGELLAMA_PAUSE();
    } else {
      std::this_thread::yield();
    }
  }
  fn_ = nullptr;
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void ThreadPool::worker(int slot) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int i = 0; gen == seen && i < spin_iterations_; ++i) {
      EDGELLAMA_PAUSE();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1, std::memory_order_relaxed);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stop_.load()) return;
    active_.fetch_add(1, std::memory_order_seq_cst);
    if (open_job_.load(std::memory_order_seq_cst) == gen) run_tasks(slot);
    active_.fetch_sub(1, std::memory_order_seq_cst);
  }
}

int physical_core_count() {
  // Linux: count distinct (package, core) pairs of the CPUs this process may run on; fall back to
  // the logical CPU count.
  std::set<std::pair<std::string, std::string>> cores;
  const unsigned n = std::thread::hardware_concurrency();
#if defined(__linux__)
  cpu_set_t allowed;
  const bool have_mask = sched_getaffinity(0, sizeof(allowed), &allowed) == 0;
#endif
  for (unsigned cpu = 0; cpu < n; ++cpu) {
#if defined(__linux__)
    if (have_mask && cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &allowed)) continue;
#endif
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream core(dir + "core_id"), pkg(dir + "physical_package_id");
    std::string c, p;
    if (!(core >> c) || !(pkg >> p)) {
      cores.clear();
      break;
    }
    cores.emplace(p, c);
  }
  if (!cores.empty()) return int(cores.size());
  const unsigned usable = usable_cpus();
  return usable > 0 ? int(usable) : 1;
}

}  // namespace edgellama
