// AVX2 unpacking of the K-quant super-blocks, shared by the row-tile kernels (kernels_avx2.cpp) and
// the rows8 kernels (gemm_rows8_avx2.cpp). Include only from files compiled with the AVX2 flags:
// everything is in an anonymous namespace (internal linkage), see the top of kernels_avx2.cpp.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "../kquant_scales.h"
#include "edgellama/quant_blocks.h"

namespace edgellama {
namespace {

// ---- K-quants --------------------------------------------------------------------------------------
// Per 32-value chunk c (0..7) of a super-block: 32 unsigned quants and the int16 madd scales (the
// scale of sub-block 2c in the low 128 bits, 2c+1 in the high 128 bits). The integer sums over a
// whole super-block are accumulated in int32 and converted to float once per super-block.

// kCombined: the offset shares the scale (dm = d), so the row tiles (kSeq) and the rows8 kernels
// fold isum - msum into one exact integer and one fma. scales(): the 16 sub-block scales / mins in
// kquant_scales.h's form (Q2_K, Q3_K, Q6_K: the formats with 16-value sub-blocks).
// prep(): d, dm, the int16 scales arranged so that chunk c's madd scale vector is
// shuffle_epi8(scv, kSel[c]) (low 128 bits: sub-block 2c, high: 2c+1), and mn16 (16 int16 to madd
// with the activation bsums). Built with SIMD/word operations: scalar stores followed by a vector
// load would stall on store forwarding.

inline __m256i even_odd_i16(__m128i bytes16, bool is_signed) {  // bytes k -> [evens | odds] as int16
  const __m128i eo = _mm_shuffle_epi8(bytes16, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
  return is_signed ? _mm256_cvtepi8_epi16(eo) : _mm256_cvtepu8_epi16(eo);
}

struct Q2_KW {
  static void scales(const uint8_t* p, kq::Scales* s) { kq::scales_q2_K(reinterpret_cast<const block_q2_K*>(p), s); }
  static constexpr bool kCombined = false;
  static constexpr size_t kBytes = sizeof(block_q2_K);
  static void prep(const uint8_t* p, float* d, float* dm, __m256i* scv, __m256i* mn16) {
    const block_q2_K* b = reinterpret_cast<const block_q2_K*>(p);
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales));
    const __m128i m4 = _mm_set1_epi8(0xF);
    *scv = even_odd_i16(_mm_and_si128(v, m4), false);
    *mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), m4));
    *d = _cvtsh_ss(b->d);
    *dm = _cvtsh_ss(b->dmin);
  }
  static __m256i q(const uint8_t* p, int c) {
    const block_q2_K* b = reinterpret_cast<const block_q2_K*>(p);
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs + 32 * (c / 4)));
    return _mm256_and_si256(_mm256_srli_epi16(v, 2 * (c % 4)), _mm256_set1_epi8(3));
  }
};
struct Q3_KW {
  static void scales(const uint8_t* p, kq::Scales* s) { kq::scales_q3_K(reinterpret_cast<const block_q3_K*>(p), s); }
  static constexpr bool kCombined = true;  // dmin = d (value = qu - 4): isum - msum in one exact int
  static constexpr size_t kBytes = sizeof(block_q3_K);
  static void prep(const uint8_t* p, float* d, float* dm, __m256i* scv, __m256i* mn16) {
    const block_q3_K* b = reinterpret_cast<const block_q3_K*>(p);
    uint32_t u[3];
    std::memcpy(u, b->scales, 12);
    const uint32_t m4 = 0x0f0f0f0f, m2 = 0x03030303;
    const uint32_t w0 = (u[0] & m4) | ((u[2] & m2) << 4);
    const uint32_t w1 = (u[1] & m4) | (((u[2] >> 2) & m2) << 4);
    const uint32_t w2 = ((u[0] >> 4) & m4) | (((u[2] >> 4) & m2) << 4);
    const uint32_t w3 = ((u[1] >> 4) & m4) | (((u[2] >> 6) & m2) << 4);
    const __m128i sc = _mm_sub_epi8(_mm_setr_epi32(int(w0), int(w1), int(w2), int(w3)), _mm_set1_epi8(32));
    *scv = even_odd_i16(sc, true);
    *mn16 = _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc), 2);  // value = qu - 4
    *d = *dm = _cvtsh_ss(b->d);
  }
  static __m256i q(const uint8_t* p, int c) {
    const block_q3_K* b = reinterpret_cast<const block_q3_K*>(p);
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs + 32 * (c / 4)));
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(v, 2 * (c % 4)), _mm256_set1_epi8(3));
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->hmask));
    const __m256i high = _mm256_and_si256(_mm256_srli_epi16(hm, c), _mm256_set1_epi8(1));
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 2));
  }
};
inline void prep_k45(const uint8_t* scales12, __m256i* scv, __m256i* mn16) {
  uint32_t u[3];
  std::memcpy(u, scales12, 12);
  const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
  const uint32_t s0 = u[0] & m6, s1 = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);
  const uint32_t n0 = u[1] & m6, n1 = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4);
  const __m128i sc = _mm_cvtepu8_epi16(_mm_setr_epi32(int(s0), int(s1), 0, 0));
  *scv = _mm256_broadcastsi128_si256(sc);
  const __m128i mn = _mm_setr_epi32(int(n0), int(n1), 0, 0);
  *mn16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));
}
struct Q4_KW {
  static constexpr bool kCombined = false;
  static constexpr size_t kBytes = sizeof(block_q4_K);
  static void prep(const uint8_t* p, float* d, float* dm, __m256i* scv, __m256i* mn16) {
    const block_q4_K* b = reinterpret_cast<const block_q4_K*>(p);
    prep_k45(b->scales, scv, mn16);
    *d = _cvtsh_ss(b->d);
    *dm = _cvtsh_ss(b->dmin);
  }
  static __m256i q(const uint8_t* p, int c) {
    const block_q4_K* b = reinterpret_cast<const block_q4_K*>(p);
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs + 32 * (c / 2)));
    return _mm256_and_si256(_mm256_srli_epi16(v, 4 * (c % 2)), _mm256_set1_epi8(0xF));
  }
};
struct Q5_KW {
  static constexpr bool kCombined = false;
  static constexpr size_t kBytes = sizeof(block_q5_K);
  static void prep(const uint8_t* p, float* d, float* dm, __m256i* scv, __m256i* mn16) {
    const block_q5_K* b = reinterpret_cast<const block_q5_K*>(p);
    prep_k45(b->scales, scv, mn16);
    *d = _cvtsh_ss(b->d);
    *dm = _cvtsh_ss(b->dmin);
  }
  static __m256i q(const uint8_t* p, int c) {
    const block_q5_K* b = reinterpret_cast<const block_q5_K*>(p);
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs + 32 * (c / 2)));
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(v, 4 * (c % 2)), _mm256_set1_epi8(0xF));
    const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qh));
    const __m256i high = _mm256_and_si256(_mm256_srli_epi16(hb, c), _mm256_set1_epi8(1));
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
  }
};
struct Q6_KW {
  static void scales(const uint8_t* p, kq::Scales* s) { kq::scales_q6_K(reinterpret_cast<const block_q6_K*>(p), s); }
  static constexpr bool kCombined = true;  // dmin = d (value = qu - 32): isum - msum in one exact int
  static constexpr size_t kBytes = sizeof(block_q6_K);
  static void prep(const uint8_t* p, float* d, float* dm, __m256i* scv, __m256i* mn16) {
    const block_q6_K* b = reinterpret_cast<const block_q6_K*>(p);
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales));
    *scv = even_odd_i16(sc, true);
    *mn16 = _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc), 5);  // value = qu - 32
    *d = *dm = _cvtsh_ss(b->d);
  }
  static __m256i q(const uint8_t* p, int c) {
    const block_q6_K* b = reinterpret_cast<const block_q6_K*>(p);
    const int h = c / 4, k = c % 4;
    const __m256i l = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->ql + h * 64 + 32 * (k % 2)));
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(l, 4 * (k / 2)), _mm256_set1_epi8(0xF));
    const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qh + h * 32));
    const __m256i high = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * k), _mm256_set1_epi8(3));
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
  }
};

}  // namespace
}  // namespace edgellama
