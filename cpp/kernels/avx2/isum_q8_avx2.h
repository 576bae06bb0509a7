// Exact integer block sums of one group of 8 Q8_0 weight rows with 2-4 tokens: the integer core of
// gemm_rows8_avx2.cpp's Q8_0 tile (tile_q8<4>: isum_q8_4) and of its 2-4-token decode from packed
// groups (direct_q8<2..4>: isum_q8_packed<T>). Include only from files compiled with AVX2 flags
// (everything here has internal linkage).
//
// Q8_0 quants are signed, so every product goes through maddubs(|w|, sign(a, w)) and the int16 pairs
// (at most 2 * 128 * 127 = 32512) are widened by a madd with ones at once: five vector ops per 4 values
// x 8 rows x token (broadcast, sign, maddubs, madd, add), nothing shared between tokens except the
// two weight vectors. The order here is k outer (one weight vector pair loaded once per 4 tokens) with
// the 4 int32 sums in registers for the whole block. GCC compiled the same loop in intrinsics with the
// weights reloaded per token and the sums through the stack; pp512 on TinyLlama Q8_0 was 11-16%
// faster with this core (quiet interleaved runs, Zen 3).
//
// Inputs: wq = one repacked block (vectors 0..7: |w|, vectors 8..15: w; vector k lane r = quants
// 4k..4k+3 of row r) or, for isum_q8_packed, the packed group's block (the 8 w vectors), q = token
// 0's 32 int8 quants, token t's at q + t * as.
// Output: s[t] lane r = sum over the block of w[r][i] * a_t[i] (exact int32).
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
#if defined(EDGELLAMA_AVX_VNNI)
// AVX-VNNI (rows8_isa.h): vpdpbusd(|w|, sign(a, w)) adds into the token's int32 sums, zeroed by
// STORE = MOVE at the block's first vector (3 vector ops per product instead of 5).
#define EDGELLAMA_Q8_TOKEN(K, AT, S, STORE)                                                           \
  STORE(S)                                                                                           \
  "vpbroadcastd 4*" #K AT ", %[c]\n\t"                                                               \
  "vpsignb %[w], %[c], %[c]\n\t"                                                                     \
  "%{vex%} vpdpbusd %[c], %[x], %[" #S "]\n\t"
#define EDGELLAMA_Q8_MOVE(S) "vpxor %[" #S "], %[" #S "], %[" #S "]\n\t"
#define EDGELLAMA_Q8_ADD(S) ""
#else
#define EDGELLAMA_Q8_TOKEN(K, AT, S, STORE)                                                           \
  "vpbroadcastd 4*" #K AT ", %[c]\n\t"                                                               \
  "vpsignb %[w], %[c], %[c]\n\t"                                                                     \
  "vpmaddubsw %[c], %[x], %[c]\n\t"                                                                  \
  "vpmaddwd %[ones], %[c], %[c]\n\t"                                                                 \
  STORE(S)
#define EDGELLAMA_Q8_MOVE(S) "vmovdqa %[c], %[" #S "]\n\t"
#define EDGELLAMA_Q8_ADD(S) "vpaddd %[c], %[" #S "], %[" #S "]\n\t"
#endif
#define EDGELLAMA_Q8_STEP(K, STORE)                                                                   \
  "vmovdqa " #K "*32(%[wq]), %[x]\n\t"                                                               \
  "vmovdqa " #K "*32+256(%[wq]), %[w]\n\t"                                                           \
  EDGELLAMA_Q8_TOKEN(K, "(%[q])", s0, STORE)                                                         \
  EDGELLAMA_Q8_TOKEN(K, "(%[q],%[as],1)", s1, STORE)                                                 \
  EDGELLAMA_Q8_TOKEN(K, "(%[q],%[as],2)", s2, STORE)                                                 \
  EDGELLAMA_Q8_TOKEN(K, "(%[q],%[as3],1)", s3, STORE)

// The same sums straight from a packed group (decode of 2-4 tokens): wq = the block's 8 vectors of
// signed quants, |w| formed here (vpabsb) instead of read from the scratch.
#define EDGELLAMA_Q8_PACKED_LOAD(K)                                                                   \
  "vmovdqu " #K "*32(%[wq]), %[w]\n\t"                                                               \
  "vpabsb %[w], %[x]\n\t"
#define EDGELLAMA_Q8_PACKED_STEP2(K, STORE)                                                           \
  EDGELLAMA_Q8_PACKED_LOAD(K)                                                                        \
  EDGELLAMA_Q8_TOKEN(K, "(%[q])", s0, STORE)                                                         \
  EDGELLAMA_Q8_TOKEN(K, "(%[q],%[as],1)", s1, STORE)
#define EDGELLAMA_Q8_PACKED_STEP3(K, STORE)                                                           \
  EDGELLAMA_Q8_PACKED_STEP2(K, STORE)                                                                \
  EDGELLAMA_Q8_TOKEN(K, "(%[q],%[as],2)", s2, STORE)
#define EDGELLAMA_Q8_PACKED_STEP(K, STORE)                                                            \
  EDGELLAMA_Q8_PACKED_STEP3(K, STORE)                                                                \
  EDGELLAMA_Q8_TOKEN(K, "(%[q],%[as3],1)", s3, STORE)
#define EDGELLAMA_Q8_ALL(STEP)                                                                        \
  STEP(0, EDGELLAMA_Q8_MOVE) STEP(1, EDGELLAMA_Q8_ADD) STEP(2, EDGELLAMA_Q8_ADD) STEP(3, EDGELLAMA_Q8_ADD) \
      STEP(4, EDGELLAMA_Q8_ADD) STEP(5, EDGELLAMA_Q8_ADD) STEP(6, EDGELLAMA_Q8_ADD) STEP(7, EDGELLAMA_Q8_ADD)

// One asm statement per block (the compiler may not move the sums to memory in between); STEP reads
// weight vector pair K: from the scratch (isum_q8_4) or the packed group (isum_q8_packed<T>).
#define EDGELLAMA_Q8_BLOCK(STEP)                                                                      \
  const size_t as3 = 3 * as;                                                                         \
  const __m256i ones = _mm256_set1_epi16(1);                                                         \
  __m256i s0, s1, s2, s3, x, w, c;                                                                   \
  asm(EDGELLAMA_Q8_ALL(STEP)                                                                         \
      : [s0] "=&x"(s0), [s1] "=&x"(s1), [s2] "=&x"(s2), [s3] "=&x"(s3), [x] "=&x"(x), [w] "=&x"(w),    \
        [c] "=&x"(c)                                                                                 \
      : [wq] "r"(wq), [q] "r"(q), [as] "r"(as), [as3] "r"(as3), [ones] "x"(ones)                     \
      : "memory"); /* reads the weights and the activations through the pointers */                  \
  s[0] = s0, s[1] = s1, s[2] = s2, s[3] = s3;

// T = 2, 3, 4 tokens from a packed group (with the intrinsics GCC spilled at 2 and 3 tokens too: a
// 3-token call cost what a 4-token one does).
template <int T>
EDGELLAMA_ALWAYS_INLINE void isum_q8_packed(const uint8_t* wq, const int8_t* q, size_t as, __m256i* s) {
  static_assert(T >= 2 && T <= 4, "the asm cores take 2, 3 or 4 tokens");
  if constexpr (T == 4) {
    EDGELLAMA_Q8_BLOCK(EDGELLAMA_Q8_PACKED_STEP)
  } else {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s0, s1, x, w, c;
    if constexpr (T == 3) {
      __m256i s2;
      asm(EDGELLAMA_Q8_ALL(EDGELLAMA_Q8_PACKED_STEP3)
          : [s0] "=&x"(s0), [s1] "=&x"(s1), [s2] "=&x"(s2), [x] "=&x"(x), [w] "=&x"(w), [c] "=&x"(c)
          : [wq] "r"(wq), [q] "r"(q), [as] "r"(as), [ones] "x"(ones)
          : "memory");
      s[2] = s2;
    } else {
      asm(EDGELLAMA_Q8_ALL(EDGELLAMA_Q8_PACKED_STEP2)
          : [s0] "=&x"(s0), [s1] "=&x"(s1), [x] "=&x"(x), [w] "=&x"(w), [c] "=&x"(c)
          : [wq] "r"(wq), [q] "r"(q), [as] "r"(as), [ones] "x"(ones)
          : "memory");
    }
    s[0] = s0, s[1] = s1;
  }
}

EDGELLAMA_ALWAYS_INLINE void isum_q8_4(const uint8_t* wq, const int8_t* q, size_t as, __m256i* s) {
  EDGELLAMA_Q8_BLOCK(EDGELLAMA_Q8_STEP)
}
#undef EDGELLAMA_Q8_TOKEN
#undef EDGELLAMA_Q8_MOVE
#undef EDGELLAMA_Q8_ADD
#undef EDGELLAMA_Q8_STEP
#undef EDGELLAMA_Q8_PACKED_STEP
#undef EDGELLAMA_Q8_PACKED_STEP3
#undef EDGELLAMA_Q8_PACKED_STEP2
#undef EDGELLAMA_Q8_PACKED_LOAD
#undef EDGELLAMA_Q8_ALL
#undef EDGELLAMA_Q8_BLOCK
#else
// kPacked: wq = the packed group's 8 vectors of signed quants; otherwise the scratch's |w| / w pairs.
template <bool kPacked, int T = 4>
inline void isum_q8_4_any(const uint8_t* wq, const int8_t* q, size_t as, __m256i* s) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int k = 0; k < 8; ++k) {
    const __m256i* v = reinterpret_cast<const __m256i*>(wq);
    const __m256i w = kPacked ? _mm256_loadu_si256(v + k) : _mm256_load_si256(v + 8 + k);
    const __m256i x = kPacked ? _mm256_abs_epi8(w) : _mm256_load_si256(v + k);
    for (int t = 0; t < T; ++t) {
      int32_t a;
      std::memcpy(&a, q + size_t(t) * as + 4 * k, 4);
      const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(x, _mm256_sign_epi8(_mm256_set1_epi32(a), w)), ones);
      s[t] = k ? _mm256_add_epi32(s[t], p) : p;
    }
  }
}
template <int T>
inline void isum_q8_packed(const uint8_t* wq, const int8_t* q, size_t as, __m256i* s) { isum_q8_4_any<true, T>(wq, q, as, s); }
inline void isum_q8_4(const uint8_t* wq, const int8_t* q, size_t as, __m256i* s) { isum_q8_4_any<false>(wq, q, as, s); }
#endif

}  // namespace
}  // namespace EDGELLAMA_ROWS8_NS
}  // namespace edgellama
