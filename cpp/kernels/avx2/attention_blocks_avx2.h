// K and V block loaders of the fast-path attention tiles (AttnTileArgs in kernels.h), shared by the
// AVX2 tile (attention_avx2.cpp) and the AVX-512 one (cpp/kernels/avx512/attention_avx512.cpp): both
// keep a block of kAttnBlock keys as kt[d][kAttnBlock] (K transposed, f32) and vb[key][head_dim].
// Only included by ISA kernel files; static inline = internal linkage, so no AVX2 copy can leak to
// baseline code (see kernels_avx2.cpp). Requires head_dim % 8 == 0.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "edgellama/kernels.h"

namespace edgellama {
namespace attn_blocks {

// No std::min / std::exp here: those are inline functions with external linkage that baseline code
// also instantiates, and an AVX2-compiled copy must never be the one the linker keeps.
static inline int64_t min64(int64_t x, int64_t y) { return x < y ? x : y; }
static inline float maxf(float x, float y) { return x > y ? x : y; }

constexpr int64_t B = kAttnBlock;
static_assert(kAttnBlock == 64, "a block of scores is 8 AVX2 / 4 AVX-512 registers");

static inline __m256 load8(const uint8_t* row, bool f16, int64_t i) {
  if (f16) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
  return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
}

static inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Keys k0..k0+nk-1 into kt[d][B]; key slots nk..B-1 are zero (their scores are computed, then masked).
static inline void load_k_block(const AttnTileArgs& a, int64_t k0, int64_t nk, float* kt) {
  const int64_t hd = a.head_dim;
  for (int64_t kg = 0; kg < B; kg += 8) {
    for (int64_t d = 0; d < hd; d += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i)
        r[i] = kg + i < nk ? load8(a.k + size_t(k0 + kg + i) * a.k_stride, a.k_f16, d) : _mm256_setzero_ps();
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(kt + (d + i) * B + kg, r[i]);
    }
  }
}

static inline void load_v_block(const AttnTileArgs& a, int64_t k0, int64_t nk, float* vb) {
  const int64_t hd = a.head_dim;
  for (int64_t k = 0; k < nk; ++k) {
    const uint8_t* row = a.v + size_t(k0 + k) * a.v_stride;
    for (int64_t d = 0; d < hd; d += 8) _mm256_storeu_ps(vb + k * hd + d, load8(row, a.v_f16, d));
  }
}

}  // namespace attn_blocks
}  // namespace edgellama
