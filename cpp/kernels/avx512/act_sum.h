// The exact sum of an activation block's 32 int8 values (AVX2 instructions; included only by the
// AVX-512 kernel files, internal linkage like the rest of their helpers).
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace edgellama {
namespace {

// vpsadbw of the bytes + 128 against 0, then the 128s taken off.
inline int act_sum32(const int8_t* q) {
  const __m256i v = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)), _mm256_set1_epi8(-128));
  const __m256i s = _mm256_sad_epu8(v, _mm256_setzero_si256());
  __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  t = _mm_add_epi64(t, _mm_unpackhi_epi64(t, t));
  return _mm_cvtsi128_si32(t) - 32 * 128;
}

}  // namespace
}  // namespace edgellama
