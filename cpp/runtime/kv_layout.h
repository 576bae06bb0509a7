// Everything outside the attention kernels that reads or writes the K/V caches goes through here, so
// their block layout (k_cache_index / v_cache_index in edgellama/kernels.h: a K row is spread over
// its block, one value every kAttnBlock; a V row is one run of head_dim values per head) lives in
// one place besides the kernels:
// - whole positions as bytes (kv_width values, f16 or f32 each): the state file (position-major
//   whatever the layout in memory, so files do not depend on it), copies between sequences, the
//   kernel_attention binding;
// - values as floats: the forward pass's K/V store, the exact path's reads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "edgellama/context.h"
#include "edgellama/fp16.h"
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

// n consecutive cache values (one head's V of one position: v_cache_index) as floats. F16 values
// are widened through the exact lookup table; F32 values are used in place.
inline const float* v_values(const uint8_t* at, int64_t n, KVType t, const float* f16_table, float* tmp) {
  if (t == KVType::F32) return reinterpret_cast<const float*>(at);
  const uint16_t* h = reinterpret_cast<const uint16_t*>(at);
  for (int64_t i = 0; i < n; ++i) tmp[i] = f16_table[h[i]];
  return tmp;
}

// Head values off..off+n of position `row` of a K cache (k_cache_index: one value every
// kAttnBlock) as floats in tmp; F16 through the exact lookup table.
inline const float* k_values(const uint8_t* cache, int64_t row, int64_t kv_width, int64_t off, int64_t n, KVType t,
                             const float* f16_table, float* tmp) {
  for (int64_t i = 0; i < n; ++i) {
    const size_t at = k_cache_index(row, off + i, kv_width);
    if (t == KVType::F32) {
      std::memcpy(tmp + i, cache + 4 * at, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, cache + 2 * at, 2);
      tmp[i] = f16_table[h];
    }
  }
  return tmp;
}

// src[0..kv_width) -> position `row` of a K cache (k_cache_index).
inline void k_store(uint8_t* cache, int64_t row, const float* src, int64_t kv_width, KVType t) {
  for (int64_t c = 0; c < kv_width; ++c) {
    const size_t at = k_cache_index(row, c, kv_width);
    if (t == KVType::F16) {
      const uint16_t h = float_to_fp16(src[c]);
      std::memcpy(cache + 2 * at, &h, 2);
    } else {
      std::memcpy(cache + 4 * at, src + c, 4);
    }
  }
}

// src[0..kv_width) -> position `row` of a V cache (v_cache_index: one run of head_dim values per head).
inline void v_store(uint8_t* cache, int64_t row, const float* src, int64_t kv_width, int64_t head_dim, KVType t) {
  for (int64_t c = 0; c < kv_width; c += head_dim) {
    uint8_t* at = cache + v_cache_index(row, c, kv_width, head_dim) * kv_value_bytes(t);
    if (t == KVType::F16) {
      for (int64_t i = 0; i < head_dim; ++i) {
        const uint16_t h = float_to_fp16(src[c + i]);
        std::memcpy(at + 2 * i, &h, 2);
      }
    } else {
      std::memcpy(at, src + c, size_t(head_dim) * 4);
    }
  }
}

}  // namespace edgellama
