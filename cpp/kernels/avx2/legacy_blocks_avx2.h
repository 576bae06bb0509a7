// The 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1) as the 8-rows-per-vector kernels see them, and
// their fifth-bit unpacking in AVX2 registers. Shared by the AVX2 rows8 kernels and the AVX-512 (VL)
// packed decode kernels; include only from files compiled with AVX2 (or wider) flags (anonymous
// namespace: internal linkage, see the top of kernels_avx2.cpp).
#pragma once
#include <immintrin.h>

#include <cstddef>

namespace edgellama {
namespace {

// The 32-value block formats (one table): bytes per block, where the quant nibbles, the fifth bits
// (qh, bit j = value j; 0 = none) and the minimum (0 = none: cw = kOffset * dw) are.
//   Q4_0: d qs[16]           Q4_1: d m qs[16]
//   Q5_0: d qh[4] qs[16]     Q5_1: d m qh[4] qs[16]
template <size_t kW_, size_t kQs, size_t kQh, size_t kMin, int kOffset_>
struct Legacy {
  static constexpr size_t kW = kW_, kQsOff = kQs, kQhOff = kQh, kMinOff = kMin;
  static constexpr float kOffset = float(kOffset_);
  static constexpr bool kFiveBit = kQh != 0;
};
using Q4_0L = Legacy<18, 2, 0, 0, -8>;
using Q4_1L = Legacy<20, 4, 0, 2, 0>;
using Q5_0L = Legacy<22, 6, 2, 0, -16>;
using Q5_1L = Legacy<24, 8, 4, 2, 0>;

// Fifth bits of g[k] (values 4k..4k+3 of each lane's row) from lane r's qh word: byte k/2 of the
// word replicated to the lane's 4 bytes, the 4 bits of values 4k..4k+3 selected, 0x10 where set.
inline __m256i fifth_bits(__m256i qh, int k) {
  const char b = char(k / 2);
  const __m256i rep = _mm256_shuffle_epi8(
      qh, _mm256_setr_epi8(b, b, b, b, 4 + b, 4 + b, 4 + b, 4 + b, 8 + b, 8 + b, 8 + b, 8 + b, 12 + b, 12 + b, 12 + b,
                           12 + b, b, b, b, b, 4 + b, 4 + b, 4 + b, 4 + b, 8 + b, 8 + b, 8 + b, 8 + b, 12 + b, 12 + b,
                           12 + b, 12 + b));
  const __m256i bits = _mm256_set1_epi32(k % 2 ? int(0x80402010u) : 0x08040201);
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(rep, bits), bits), _mm256_set1_epi8(0x10));
}

}  // namespace
}  // namespace edgellama
