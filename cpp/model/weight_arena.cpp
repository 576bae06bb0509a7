#include "edgellama/weight_arena.h"

#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace edgellama {

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
}

WeightArena::WeightArena(size_t bytes) {
#if defined(__linux__)
  // Over-allocate by one huge page so that an aligned start exists; the unused head and tail are
  // never touched (no resident memory).
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  mapped_size_ = rounded + kHugePage;
  void* m = mmap(nullptr, mapped_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m != MAP_FAILED) {
    mapped_ = m;
    const uintptr_t start = (reinterpret_cast<uintptr_t>(m) + kHugePage - 1) / kHugePage * kHugePage;
    data_ = reinterpret_cast<uint8_t*>(start);
    madvise(data_, rounded, MADV_HUGEPAGE);  // advice: if refused, 4 KiB pages (same data)
    return;
  }
  mapped_size_ = 0;
#endif
  data_ = new uint8_t[bytes > 0 ? bytes : 1];
}

WeightArena::~WeightArena() {
#if defined(__linux__)
  if (mapped_) {
    munmap(mapped_, mapped_size_);
    return;
  }
#endif
  delete[] data_;
}

}  // namespace edgellama
