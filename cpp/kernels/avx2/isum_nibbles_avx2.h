// Exact integer block sums of one packed group of 8 rows of a 4-bit format (Q4_0, Q4_1) with 2-4
// tokens, straight from the packed nibbles: the integer core of gemm_rows8_avx2.cpp's direct<2..4>,
// the kernel of a 2-4-token decode step (a server step with 2-4 streams, a draft verification) and of
// the last 2-3 tokens of longer steps' passes of 4 (with the intrinsics, 3 tokens took as long as 4:
// GCC spilled their sums too).
// Include only from files compiled with AVX2 flags (everything here has internal linkage).
//
// Why assembly: per block the 4 tokens' int16 sums, the two unpacked nibble vectors, a temporary and
// the nibble mask take 8 of the 16 ymm registers, and the 4 float sums of the caller 4 more. GCC's
// allocation of the intrinsics loop kept two int16 sums per token (low / high nibbles) and put the
// maddubs results on the stack (a store and a reload per product): the 4-token kernel ran at ~2/3 of
// the rate of the prefill tile on the same weights. Intrinsics are the fallback where GNU asm is not
// available (MSVC); both give the same integers.
//
// Inputs: x = the block's quant bytes in the packed group (4 vectors; vector k lane r = bytes
// 4k..4k+3 of row r's qs: values 4k..4k+3 in the low nibbles, 16+4k..16+4k+3 in the high ones),
// q = token 0's 32 int8 quants of the block, token t's at q + t * as (t < T).
// Output: s[t] lane r = row r's 32 products summed, exact int32. AVX2 sums them in int16 (16 maddubs
// pair sums of at most 2 * 15 * 127: |sum| <= 30480 in any order, so the same ints as block_isum's
// low + high halves) and widens with a madd with ones; AVX-VNNI adds them into int32 directly.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../always_inline.h"
#include "rows8_isa.h"

namespace edgellama {
namespace EDGELLAMA_ROWS8_NS {
namespace {

#if defined(__GNUC__) || defined(__clang__)
// One token's two products of vector k: low nibbles with activation bytes 4k.., high with 16+4k..
#if defined(EDGELLAMA_AVX_VNNI)
// AVX-VNNI (rows8_isa.h): vpdpbusd adds each product straight into the token's int32 sums, which
// FIRST zeroes at the block's first vector.
#define EDGELLAMA_NIB_TOKEN(K, AT, S, FIRST)                                                          \
  FIRST(S)                                                                                           \
  "vpbroadcastd 4*" #K AT ", %[c]\n\t"                                                               \
  "%{vex%} vpdpbusd %[c], %[l], %[" #S "]\n\t"                                                         \
  "vpbroadcastd 16+4*" #K AT ", %[c]\n\t"                                                            \
  "%{vex%} vpdpbusd %[c], %[h], %[" #S "]\n\t"
#define EDGELLAMA_NIB_MOVE(S) "vpxor %[" #S "], %[" #S "], %[" #S "]\n\t"
#define EDGELLAMA_NIB_ADD(S) ""
#else
#define EDGELLAMA_NIB_TOKEN(K, AT, S, FIRST)                                                          \
  "vpbroadcastd 4*" #K AT ", %[c]\n\t"                                                               \
  "vpmaddubsw %[c], %[l], %[c]\n\t"                                                                  \
  FIRST(S)                                                                                           \
  "vpbroadcastd 16+4*" #K AT ", %[c]\n\t"                                                            \
  "vpmaddubsw %[c], %[h], %[c]\n\t"                                                                  \
  "vpaddw %[c], %[" #S "], %[" #S "]\n\t"
#define EDGELLAMA_NIB_MOVE(S) "vmovdqa %[c], %[" #S "]\n\t"
#define EDGELLAMA_NIB_ADD(S) "vpaddw %[c], %[" #S "], %[" #S "]\n\t"
#endif
#define EDGELLAMA_NIB_UNPACK(K)                                                                       \
  "vmovdqu " #K "*32(%[x]), %[l]\n\t"                                                                \
  "vpsrlw $4, %[l], %[h]\n\t"                                                                        \
  "vpand %[m4], %[l], %[l]\n\t"                                                                      \
  "vpand %[m4], %[h], %[h]\n\t"
#define EDGELLAMA_NIB_T0(K, FIRST) EDGELLAMA_NIB_TOKEN(K, "(%[q])", s0, FIRST)
#define EDGELLAMA_NIB_T1(K, FIRST) EDGELLAMA_NIB_TOKEN(K, "(%[q],%[as],1)", s1, FIRST)
#define EDGELLAMA_NIB_T2(K, FIRST) EDGELLAMA_NIB_TOKEN(K, "(%[q],%[as],2)", s2, FIRST)
#define EDGELLAMA_NIB_T3(K, FIRST) EDGELLAMA_NIB_TOKEN(K, "(%[q],%[as3],1)", s3, FIRST)
#define EDGELLAMA_NIB_STEP4(K, FIRST) \
  EDGELLAMA_NIB_UNPACK(K) EDGELLAMA_NIB_T0(K, FIRST) EDGELLAMA_NIB_T1(K, FIRST) EDGELLAMA_NIB_T2(K, FIRST) EDGELLAMA_NIB_T3(K, FIRST)
#define EDGELLAMA_NIB_STEP3(K, FIRST) \
  EDGELLAMA_NIB_UNPACK(K) EDGELLAMA_NIB_T0(K, FIRST) EDGELLAMA_NIB_T1(K, FIRST) EDGELLAMA_NIB_T2(K, FIRST)
#define EDGELLAMA_NIB_STEP2(K, FIRST) EDGELLAMA_NIB_UNPACK(K) EDGELLAMA_NIB_T0(K, FIRST) EDGELLAMA_NIB_T1(K, FIRST)
// The whole block (vectors 0..3), the first vector's products moved into the sums.
#define EDGELLAMA_NIB_BLOCK(STEP) \
  STEP(0, EDGELLAMA_NIB_MOVE) STEP(1, EDGELLAMA_NIB_ADD) STEP(2, EDGELLAMA_NIB_ADD) STEP(3, EDGELLAMA_NIB_ADD)

// T = 2, 3, 4 tokens (a step of 2-4 streams, or the last 2-3 rows of a pass of 4 in a longer
// step). One asm statement per block: the compiler may not move the sums to memory in between.
template <int T>
EDGELLAMA_ALWAYS_INLINE void isum_nibbles(const uint8_t* x, const int8_t* q, size_t as, __m256i* s) {
  static_assert(T >= 2 && T <= 4, "the asm cores take 2, 3 or 4 tokens");
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  __m256i s0, s1, l, h, c;
  if constexpr (T == 4) {
    const size_t as3 = 3 * as;
    __m256i s2, s3;
    asm(EDGELLAMA_NIB_BLOCK(EDGELLAMA_NIB_STEP4)
        : [s0] "=&x"(s0), [s1] "=&x"(s1), [s2] "=&x"(s2), [s3] "=&x"(s3), [l] "=&x"(l), [h] "=&x"(h), [c] "=&x"(c)
        : [x] "r"(x), [q] "r"(q), [as] "r"(as), [as3] "r"(as3), [m4] "x"(m4)
        : "memory");  // reads the packed group and the activations through the pointers
    s[2] = s2, s[3] = s3;
  } else if constexpr (T == 3) {
    __m256i s2;
    asm(EDGELLAMA_NIB_BLOCK(EDGELLAMA_NIB_STEP3)
        : [s0] "=&x"(s0), [s1] "=&x"(s1), [s2] "=&x"(s2), [l] "=&x"(l), [h] "=&x"(h), [c] "=&x"(c)
        : [x] "r"(x), [q] "r"(q), [as] "r"(as), [m4] "x"(m4)
        : "memory");
    s[2] = s2;
  } else {
    asm(EDGELLAMA_NIB_BLOCK(EDGELLAMA_NIB_STEP2)
        : [s0] "=&x"(s0), [s1] "=&x"(s1), [l] "=&x"(l), [h] "=&x"(h), [c] "=&x"(c)
        : [x] "r"(x), [q] "r"(q), [as] "r"(as), [m4] "x"(m4)
        : "memory");
  }
  s[0] = s0, s[1] = s1;
  if constexpr (!kVnni)  // int16 pairs -> int32
    for (int t = 0; t < T; ++t) s[t] = _mm256_madd_epi16(s[t], _mm256_set1_epi16(1));
}
#undef EDGELLAMA_NIB_TOKEN
#undef EDGELLAMA_NIB_MOVE
#undef EDGELLAMA_NIB_ADD
#undef EDGELLAMA_NIB_UNPACK
#undef EDGELLAMA_NIB_T0
#undef EDGELLAMA_NIB_T1
#undef EDGELLAMA_NIB_T2
#undef EDGELLAMA_NIB_T3
#undef EDGELLAMA_NIB_STEP4
#undef EDGELLAMA_NIB_STEP3
#undef EDGELLAMA_NIB_STEP2
#undef EDGELLAMA_NIB_BLOCK
#else
template <int T>
EDGELLAMA_ALWAYS_INLINE void isum_nibbles(const uint8_t* x, const int8_t* q, size_t as, __m256i* s) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int k = 0; k < 4; ++k) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x) + k);
    const __m256i l = _mm256_and_si256(v, m4), h = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    for (int t = 0; t < T; ++t) {
      int32_t vl, vh;
      std::memcpy(&vl, q + size_t(t) * as + 4 * k, 4);
      std::memcpy(&vh, q + size_t(t) * as + 16 + 4 * k, 4);
      const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(l, _mm256_set1_epi32(vl)),
                                         _mm256_maddubs_epi16(h, _mm256_set1_epi32(vh)));
      s[t] = k ? _mm256_add_epi16(s[t], p) : p;
    }
  }
  for (int t = 0; t < T; ++t) s[t] = _mm256_madd_epi16(s[t], _mm256_set1_epi16(1));
}
#endif

}  // namespace
}  // namespace EDGELLAMA_ROWS8_NS
}  // namespace edgellama
