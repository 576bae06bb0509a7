// Memory for the weights a model repacks at load (model_packing.cpp): one block for all of them.
// On Linux it is an anonymous mapping aligned to 2 MiB with transparent huge pages requested
// (madvise MADV_HUGEPAGE: most distributions enable THP in "madvise" mode). Decode streams every
// weight once per token; with 4 KiB pages the hardware prefetchers stop at each page boundary and every
// page costs a TLB miss, with 2 MiB pages neither happens. One block instead of one per tensor keeps
// the rounding to 2 MiB to one page in all (resident memory stays about the file's size).
// Elsewhere (or if the mapping fails) an ordinary heap block.
#pragma once
#include <cstddef>
#include <cstdint>

namespace edgellama {

class WeightArena {
 public:
  explicit WeightArena(size_t bytes);  // throws std::bad_alloc
  ~WeightArena();
  WeightArena(const WeightArena&) = delete;
  WeightArena& operator=(const WeightArena&) = delete;

  uint8_t* data() const { return data_; }

 private:
  uint8_t* data_ = nullptr;
  void* mapped_ = nullptr;  // the whole mapping (Linux), or nullptr when data_ is from new[]
  size_t mapped_size_ = 0;
};

}  // namespace edgellama
