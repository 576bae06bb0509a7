// Whole positions of the K/V caches as bytes (kv_width values of one position, f16 or f32 each),
// in the caches' block layout (k_cache_index / v_cache_index in edgellama/kernels.h: the layout the
// attention tiles read): a K row is spread over its block, one value every kAttnBlock; a V row is
// one run of head_dim values per head. Used where positions move as a whole: the forward pass's K/V
// store, the state file (position-major whatever the layout in memory, so files do not depend on
// it), copies between sequences.
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

// Position `row` of a V cache of kv_width columns (heads of head_dim) -> out[kv_width].
inline void v_row_get(const uint8_t* cache, int64_t row, int64_t kv_width, int64_t head_dim, size_t es, uint8_t* out) {
  for (int64_t c = 0; c < kv_width; c += head_dim)
    std::memcpy(out + size_t(c) * es, cache + v_cache_index(row, c, kv_width, head_dim) * es, size_t(head_dim) * es);
}

// in[kv_width] -> position `row` of a V cache.
inline void v_row_put(uint8_t* cache, int64_t row, int64_t kv_width, int64_t head_dim, size_t es, const uint8_t* in) {
  for (int64_t c = 0; c < kv_width; c += head_dim)
    std::memcpy(cache + v_cache_index(row, c, kv_width, head_dim) * es, in + size_t(c) * es, size_t(head_dim) * es);
}

}  // namespace edgellama
