// Whole positions of the K/V caches as bytes (kv_width values of one position, f16 or f32 each).
// V rows are contiguous; a K row is spread over its block of kAttnBlock positions, one value every
// kAttnBlock (k_cache_index in edgellama/kernels.h: the layout the attention tiles read). Used where
// positions move as a whole: the forward pass's K/V store, the state file (row-major whatever the
// layout in memory, so files do not depend on it), copies between sequences.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "edgellama/context.h"
#include "edgellama/kernels.h"

namespace edgellama {

inline size_t kv_value_bytes(KVType t) { return t == KVType::F16 ? 2 : 4; }

// Position `row` of a K cache of kv_width columns -> out[kv_width] (es bytes per value).
inline void k_row_get(const uint8_t* cache, int64_t row, int64_t kv_width, size_t es, uint8_t* out) {
  for (int64_t c = 0; c < kv_width; ++c) std::memcpy(out + size_t(c) * es, cache + k_cache_index(row, c, kv_width) * es, es);
}

// in[kv_width] -> position `row` of a K cache.
inline void k_row_put(uint8_t* cache, int64_t row, int64_t kv_width, size_t es, const uint8_t* in) {
  for (int64_t c = 0; c < kv_width; ++c) std::memcpy(cache + k_cache_index(row, c, kv_width) * es, in + size_t(c) * es, es);
}

}  // namespace edgellama
