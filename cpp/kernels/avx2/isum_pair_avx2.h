// Exact integer block sums of two groups of 8 weight rows (16 rows) with 4 tokens: the integer core of
// gemm_rows8_avx2.cpp's pair tiles (isum_pair4: the 4-bit formats, quants 0..15; isum_pair4_sub16: the
// 16-value sub-block K formats; isum_pair2_five: the 5-bit formats, 2 tokens). Include only from
// files compiled with AVX2 flags (everything here has internal linkage).
//
// Why 16 rows: on AVX2 every maddubs needs one operand as a register of broadcast activation bytes, and
// those broadcasts (one load + one vector op each) were half of the 8-row tile's work. Two groups of
// rows share each broadcast, so a 32-value block of 16 rows x 4 tokens costs 16 weight loads, 32
// broadcasts and 64 maddubs instead of 16, 64 and 64.
//
// Why assembly: the 8 int16 sums, 2 weight vectors and 2 temporaries need 12 of the 16 ymm registers;
// GCC's allocation of the same code in intrinsics kept the sums on the stack (a store and a reload per
// product), which made it slower than the 8-row tile. Intrinsics are the fallback where GNU asm is not
// available (MSVC); both give the same integers (exact sums, bounded as below).
//
// Inputs: wa / wb = one repacked block of each group (8 vectors; vector k lane r = quants 4k..4k+3 of
// row r, uint8 0..15), q = token 0's 32 int8 quants of the block, token t's at q + t * as.
// Outputs: sa[t] / sb[t] = per row r (16-bit pairs of lane r) the block's products, summed in int16
// (16 products of at most 15 * 127 per pair lane: |sum| <= 30480, no overflow); madd with ones widens.
#pragma once
#include <immintrin.h>

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../always_inline.h"
#include "rows8_isa.h"

namespace edgellama {
namespace EDGELLAMA_ROWS8_NS {
namespace {

#if defined(__GNUC__) || defined(__clang__)
// One group k (4 values) of the block: weights of both groups, then for each token one broadcast and
// two maddubs, added to (or, for k = 0, moved into) the token's sums.
// TOKEN(K, ADD, address, sum a, sum b) is the per-token product (maddubs here, vpdpbusd in
// isum_pair4_i32's AVX-VNNI core).
#define EDGELLAMA_PAIR_STEP_OF(TOKEN, K, ADD)                                                         \
  "vmovdqa " #K "*32(%[wa]), %[x]\n\t"                                                               \
  "vmovdqa " #K "*32(%[wb]), %[y]\n\t"                                                               \
  TOKEN(K, ADD, "(%[q])", a0, b0)                                                                    \
  TOKEN(K, ADD, "(%[q],%[as],1)", a1, b1)                                                            \
  TOKEN(K, ADD, "(%[q],%[as],2)", a2, b2)                                                            \
  TOKEN(K, ADD, "(%[q],%[as3],1)", a3, b3)
#define EDGELLAMA_PAIR_STEP(K, ADD) EDGELLAMA_PAIR_STEP_OF(EDGELLAMA_PAIR_TOKEN, K, ADD)
#define EDGELLAMA_PAIR_TOKEN(K, ADD, AT, A, B)                                                        \
  "vpbroadcastd 4*" #K AT ", %[c]\n\t"                                                               \
  "vpmaddubsw %[c], %[x], %[r]\n\t"                                                                  \
  "vpmaddubsw %[c], %[y], %[c]\n\t"                                                                  \
  ADD(A, B)
#define EDGELLAMA_PAIR_MOVE(A, B) "vmovdqa %[r], %[" #A "]\n\tvmovdqa %[c], %[" #B "]\n\t"
#define EDGELLAMA_PAIR_ADD(A, B) "vpaddw %[r], %[" #A "], %[" #A "]\n\tvpaddw %[c], %[" #B "], %[" #B "]\n\t"

EDGELLAMA_ALWAYS_INLINE void isum_pair4(const uint8_t* wa, const uint8_t* wb, const int8_t* q, size_t as, __m256i* sa, __m256i* sb) {
  const size_t as3 = 3 * as;
  __m256i a0, a1, a2, a3, b0, b1, b2, b3, x, y, c, r;
  // One asm statement per block: the compiler may not move the sums to memory in between.
  asm(EDGELLAMA_PAIR_STEP(0, EDGELLAMA_PAIR_MOVE) EDGELLAMA_PAIR_STEP(1, EDGELLAMA_PAIR_ADD)
          EDGELLAMA_PAIR_STEP(2, EDGELLAMA_PAIR_ADD) EDGELLAMA_PAIR_STEP(3, EDGELLAMA_PAIR_ADD)
              EDGELLAMA_PAIR_STEP(4, EDGELLAMA_PAIR_ADD) EDGELLAMA_PAIR_STEP(5, EDGELLAMA_PAIR_ADD)
                  EDGELLAMA_PAIR_STEP(6, EDGELLAMA_PAIR_ADD) EDGELLAMA_PAIR_STEP(7, EDGELLAMA_PAIR_ADD)
      : [a0] "=&x"(a0), [a1] "=&x"(a1), [a2] "=&x"(a2), [a3] "=&x"(a3), [b0] "=&x"(b0), [b1] "=&x"(b1),
        [b2] "=&x"(b2), [b3] "=&x"(b3), [x] "=&x"(x), [y] "=&x"(y), [c] "=&x"(c), [r] "=&x"(r)
      : [wa] "r"(wa), [wb] "r"(wb), [q] "r"(q), [as] "r"(as), [as3] "r"(as3)
      : "memory");  // reads the weight scratch and the activations through the pointers
  sa[0] = a0, sa[1] = a1, sa[2] = a2, sa[3] = a3;
  sb[0] = b0, sb[1] = b1, sb[2] = b2, sb[3] = b3;
}

// The 16-value sub-block formats (Q2_K, Q3_K, Q6_K; quants at most 63): for one 32-value chunk, per
// group of 8 values j (two maddubs, 4 products of at most 63 * 127 per int16 lane, <= 32004) one madd
// with its sub-block's scale pairs (sc[0] for values 0..15, sc[1] for 16..31), added to the int32 sums
// ia[t] / ib[t] (tile_sub16's integers; exact, so the order of the additions does not matter). All 16
// ymm registers are used: the 8 sums, 4 weight vectors, 2 broadcasts, 2 temporaries; the scales are
// memory operands. Both groups' scratch must lie the same distance apart for weights and scales.
#define EDGELLAMA_SUB16_J(J, SC)                                                                      \
  "vmovdqa 64*" #J "(%[wa]), %[xa0]\n\t"                                                             \
  "vmovdqa 64*" #J "+32(%[wa]), %[xa1]\n\t"                                                          \
  "vmovdqa 64*" #J "(%[wa],%[dab],1), %[xb0]\n\t"                                                    \
  "vmovdqa 64*" #J "+32(%[wa],%[dab],1), %[xb1]\n\t"                                                 \
  EDGELLAMA_SUB16_TOKEN(J, SC, "(%[q])", a0, b0)                                                     \
  EDGELLAMA_SUB16_TOKEN(J, SC, "(%[q],%[as],1)", a1, b1)                                             \
  EDGELLAMA_SUB16_TOKEN(J, SC, "(%[q],%[as],2)", a2, b2)                                             \
  EDGELLAMA_SUB16_TOKEN(J, SC, "(%[q],%[as3],1)", a3, b3)
#define EDGELLAMA_SUB16_TOKEN(J, SC, AT, A, B)                                                        \
  "vpbroadcastd 8*" #J AT ", %[c0]\n\t"                                                              \
  "vpbroadcastd 8*" #J "+4" AT ", %[c1]\n\t"                                                         \
  "vpmaddubsw %[c0], %[xa0], %[p]\n\t"                                                               \
  "vpmaddubsw %[c1], %[xa1], %[u]\n\t"                                                               \
  "vpaddw %[u], %[p], %[p]\n\t"                                                                      \
  "vpmaddwd " SC "(%[sca]), %[p], %[p]\n\t"                                                          \
  "vpaddd %[p], %[" #A "], %[" #A "]\n\t"                                                            \
  "vpmaddubsw %[c0], %[xb0], %[p]\n\t"                                                               \
  "vpmaddubsw %[c1], %[xb1], %[u]\n\t"                                                               \
  "vpaddw %[u], %[p], %[p]\n\t"                                                                      \
  "vpmaddwd " SC "(%[sca],%[dab],1), %[p], %[p]\n\t"                                                 \
  "vpaddd %[p], %[" #B "], %[" #B "]\n\t"

EDGELLAMA_ALWAYS_INLINE void isum_pair4_sub16(const uint8_t* wa, const uint8_t* wb, const __m256i* sca, const __m256i* scb,
                             const int8_t* q, size_t as, __m256i* ia, __m256i* ib) {
  // Group B's weights and scales are addressed from group A's by one distance (asm takes at most 30
  // operands; the 8 read-write sums count twice).
  const ptrdiff_t dab = wb - wa;
  assert(reinterpret_cast<const uint8_t*>(scb) - reinterpret_cast<const uint8_t*>(sca) == dab);
  const size_t as3 = 3 * as;
  __m256i xa0, xa1, xb0, xb1, c0, c1, p, u;
  asm(EDGELLAMA_SUB16_J(0, "") EDGELLAMA_SUB16_J(1, "") EDGELLAMA_SUB16_J(2, "32") EDGELLAMA_SUB16_J(3, "32")
      : [a0] "+x"(ia[0]), [a1] "+x"(ia[1]), [a2] "+x"(ia[2]), [a3] "+x"(ia[3]), [b0] "+x"(ib[0]), [b1] "+x"(ib[1]),
        [b2] "+x"(ib[2]), [b3] "+x"(ib[3]), [xa0] "=&x"(xa0), [xa1] "=&x"(xa1), [xb0] "=&x"(xb0), [xb1] "=&x"(xb1),
        [c0] "=&x"(c0), [c1] "=&x"(c1), [p] "=&x"(p), [u] "=&x"(u)
      : [wa] "r"(wa), [dab] "r"(dab), [sca] "r"(sca), [q] "r"(q), [as] "r"(as), [as3] "r"(as3)
      : "memory");
}
#undef EDGELLAMA_SUB16_J
#undef EDGELLAMA_SUB16_TOKEN

// The 5-bit formats (Q5_0, Q5_1, Q5_K; quants 0..31): 16 products per lane would pass the int16 range,
// so each (group, token) keeps two sums, values 0..15 (lo) and 16..31 (hi), of 8 products each (at most
// 8 * 31 * 127 = 31496), as block_isum<true> / tile_q4k<true> do; with 2 tokens that is 8 sums.
#define EDGELLAMA_PAIR5_STEP(K, ADD, LA0, LB0, LA1, LB1)                                              \
  "vmovdqa " #K "*32(%[wa]), %[x]\n\t"                                                               \
  "vmovdqa " #K "*32(%[wb]), %[y]\n\t"                                                               \
  "vpbroadcastd 4*" #K "(%[q]), %[c]\n\t"                                                            \
  "vpmaddubsw %[c], %[x], %[r]\n\t"                                                                  \
  "vpmaddubsw %[c], %[y], %[c]\n\t"                                                                  \
  ADD(LA0, LB0)                                                                                      \
  "vpbroadcastd 4*" #K "(%[q],%[as],1), %[c]\n\t"                                                    \
  "vpmaddubsw %[c], %[x], %[r]\n\t"                                                                  \
  "vpmaddubsw %[c], %[y], %[c]\n\t"                                                                  \
  ADD(LA1, LB1)
#define EDGELLAMA_PAIR5_HALF(K0, K1, K2, K3, A0, B0, A1, B1)                                          \
  EDGELLAMA_PAIR5_STEP(K0, EDGELLAMA_PAIR_MOVE, A0, B0, A1, B1)                                      \
  EDGELLAMA_PAIR5_STEP(K1, EDGELLAMA_PAIR_ADD, A0, B0, A1, B1)                                       \
  EDGELLAMA_PAIR5_STEP(K2, EDGELLAMA_PAIR_ADD, A0, B0, A1, B1)                                       \
  EDGELLAMA_PAIR5_STEP(K3, EDGELLAMA_PAIR_ADD, A0, B0, A1, B1)

// lo[g][t] / hi[g][t]: group g (0 = wa, 1 = wb), token t (0, 1: q and q + as).
EDGELLAMA_ALWAYS_INLINE void isum_pair2_five(const uint8_t* wa, const uint8_t* wb, const int8_t* q, size_t as, __m256i (*lo)[2],
                            __m256i (*hi)[2]) {
  __m256i x, y, c, r;
  asm(EDGELLAMA_PAIR5_HALF(0, 1, 2, 3, la0, lb0, la1, lb1) EDGELLAMA_PAIR5_HALF(4, 5, 6, 7, ha0, hb0, ha1, hb1)
      : [la0] "=&x"(lo[0][0]), [la1] "=&x"(lo[0][1]), [lb0] "=&x"(lo[1][0]), [lb1] "=&x"(lo[1][1]),
        [ha0] "=&x"(hi[0][0]), [ha1] "=&x"(hi[0][1]), [hb0] "=&x"(hi[1][0]), [hb1] "=&x"(hi[1][1]), [x] "=&x"(x),
        [y] "=&x"(y), [c] "=&x"(c), [r] "=&x"(r)
      : [wa] "r"(wa), [wb] "r"(wb), [q] "r"(q), [as] "r"(as)
      : "memory");
}
#undef EDGELLAMA_PAIR5_STEP
#undef EDGELLAMA_PAIR5_HALF
#undef EDGELLAMA_PAIR_STEP
#undef EDGELLAMA_PAIR_TOKEN
#undef EDGELLAMA_PAIR_MOVE
#undef EDGELLAMA_PAIR_ADD
#else
EDGELLAMA_ALWAYS_INLINE void isum_pair4(const uint8_t* wa, const uint8_t* wb, const int8_t* q, size_t as, __m256i* sa, __m256i* sb) {
  for (int k = 0; k < 8; ++k) {
    const __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(wa) + k);
    const __m256i y = _mm256_load_si256(reinterpret_cast<const __m256i*>(wb) + k);
    for (int t = 0; t < 4; ++t) {
      int32_t v;
      std::memcpy(&v, q + size_t(t) * as + 4 * k, 4);
      const __m256i c = _mm256_set1_epi32(v);
      const __m256i pa = _mm256_maddubs_epi16(x, c), pb = _mm256_maddubs_epi16(y, c);
      sa[t] = k ? _mm256_add_epi16(sa[t], pa) : pa;
      sb[t] = k ? _mm256_add_epi16(sb[t], pb) : pb;
    }
  }
}
EDGELLAMA_ALWAYS_INLINE void isum_pair4_sub16(const uint8_t* wa, const uint8_t* wb, const __m256i* sca, const __m256i* scb,
                             const int8_t* q, size_t as, __m256i* ia, __m256i* ib) {
  for (int j = 0; j < 4; ++j) {
    const __m256i* va = reinterpret_cast<const __m256i*>(wa) + 2 * j;
    const __m256i* vb = reinterpret_cast<const __m256i*>(wb) + 2 * j;
    for (int t = 0; t < 4; ++t) {
      int32_t v0, v1;
      std::memcpy(&v0, q + size_t(t) * as + 8 * j, 4);
      std::memcpy(&v1, q + size_t(t) * as + 8 * j + 4, 4);
      const __m256i c0 = _mm256_set1_epi32(v0), c1 = _mm256_set1_epi32(v1);
      const __m256i pa = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_load_si256(va), c0),
                                          _mm256_maddubs_epi16(_mm256_load_si256(va + 1), c1));
      const __m256i pb = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_load_si256(vb), c0),
                                          _mm256_maddubs_epi16(_mm256_load_si256(vb + 1), c1));
      ia[t] = _mm256_add_epi32(ia[t], _mm256_madd_epi16(pa, _mm256_load_si256(sca + j / 2)));
      ib[t] = _mm256_add_epi32(ib[t], _mm256_madd_epi16(pb, _mm256_load_si256(scb + j / 2)));
    }
  }
}
EDGELLAMA_ALWAYS_INLINE void isum_pair2_five(const uint8_t* wa, const uint8_t* wb, const int8_t* q, size_t as, __m256i (*lo)[2],
                            __m256i (*hi)[2]) {
  for (int k = 0; k < 8; ++k) {
    const __m256i w[2] = {_mm256_load_si256(reinterpret_cast<const __m256i*>(wa) + k),
                          _mm256_load_si256(reinterpret_cast<const __m256i*>(wb) + k)};
    for (int t = 0; t < 2; ++t) {
      int32_t v;
      std::memcpy(&v, q + size_t(t) * as + 4 * k, 4);
      const __m256i c = _mm256_set1_epi32(v);
      for (int g = 0; g < 2; ++g) {
        const __m256i p = _mm256_maddubs_epi16(w[g], c);
        __m256i& s = k < 4 ? lo[g][t] : hi[g][t];
        s = (k % 4) ? _mm256_add_epi16(s, p) : p;
      }
    }
  }
}
#endif

// The 32-value formats' pair tile (no sub-block scales to madd with): each (group, token) sum as
// exact int32, sa[t] / sb[t]. AVX2: isum_pair4's int16 sums widened by a madd with ones. AVX-VNNI
// (rows8_isa.h): vpdpbusd adds each product into the int32 sums, one instruction per 4 values x 8 rows
// x token instead of maddubs + add, and no int16 bound: the 5-bit quants take this core too.
EDGELLAMA_ALWAYS_INLINE void isum_pair4_i32(const uint8_t* wa, const uint8_t* wb, const int8_t* q, size_t as, __m256i* sa,
                                            __m256i* sb) {
#if defined(EDGELLAMA_AVX_VNNI)
#define EDGELLAMA_VPAIR_TOKEN(K, ADD, AT, A, B)                                                       \
  "vpbroadcastd 4*" #K AT ", %[c]\n\t"                                                               \
  "%{vex%} vpdpbusd %[c], %[x], %[" #A "]\n\t"                                                         \
  "%{vex%} vpdpbusd %[c], %[y], %[" #B "]\n\t"
#define EDGELLAMA_VPAIR_STEP(K) EDGELLAMA_PAIR_STEP_OF(EDGELLAMA_VPAIR_TOKEN, K, )
#define EDGELLAMA_VPAIR_ZERO(A) "vpxor %[" #A "], %[" #A "], %[" #A "]\n\t"
  const size_t as3 = 3 * as;
  __m256i a0, a1, a2, a3, b0, b1, b2, b3, x, y, c;
  asm(EDGELLAMA_VPAIR_ZERO(a0) EDGELLAMA_VPAIR_ZERO(a1) EDGELLAMA_VPAIR_ZERO(a2) EDGELLAMA_VPAIR_ZERO(a3)
          EDGELLAMA_VPAIR_ZERO(b0) EDGELLAMA_VPAIR_ZERO(b1) EDGELLAMA_VPAIR_ZERO(b2) EDGELLAMA_VPAIR_ZERO(b3)
              EDGELLAMA_VPAIR_STEP(0) EDGELLAMA_VPAIR_STEP(1) EDGELLAMA_VPAIR_STEP(2) EDGELLAMA_VPAIR_STEP(3)
                  EDGELLAMA_VPAIR_STEP(4) EDGELLAMA_VPAIR_STEP(5) EDGELLAMA_VPAIR_STEP(6) EDGELLAMA_VPAIR_STEP(7)
      : [a0] "=&x"(a0), [a1] "=&x"(a1), [a2] "=&x"(a2), [a3] "=&x"(a3), [b0] "=&x"(b0), [b1] "=&x"(b1),
        [b2] "=&x"(b2), [b3] "=&x"(b3), [x] "=&x"(x), [y] "=&x"(y), [c] "=&x"(c)
      : [wa] "r"(wa), [wb] "r"(wb), [q] "r"(q), [as] "r"(as), [as3] "r"(as3)
      : "memory");  // reads the weight scratch and the activations through the pointers
  sa[0] = a0, sa[1] = a1, sa[2] = a2, sa[3] = a3;
  sb[0] = b0, sb[1] = b1, sb[2] = b2, sb[3] = b3;
#undef EDGELLAMA_VPAIR_TOKEN
#undef EDGELLAMA_VPAIR_STEP
#undef EDGELLAMA_VPAIR_ZERO
#else
  isum_pair4(wa, wb, q, as, sa, sb);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int t = 0; t < 4; ++t) sa[t] = _mm256_madd_epi16(sa[t], ones), sb[t] = _mm256_madd_epi16(sb[t], ones);
#endif
#undef EDGELLAMA_PAIR_STEP_OF  // (defined in the GNU asm part above)
}

// The 5-bit formats' AVX2 pair tile (2 tokens): s[g][t] = isum_pair2_five's two int16 halves of
// group g, token t, widened and added (exact int32).
EDGELLAMA_ALWAYS_INLINE void isum_pair2_five_i32(const uint8_t* wa, const uint8_t* wb, const int8_t* q, size_t as,
                                                 __m256i (*s)[2]) {
  __m256i lo[2][2], hi[2][2];
  isum_pair2_five(wa, wb, q, as, lo, hi);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int g = 0; g < 2; ++g)
    for (int t = 0; t < 2; ++t)
      s[g][t] = _mm256_add_epi32(_mm256_madd_epi16(lo[g][t], ones), _mm256_madd_epi16(hi[g][t], ones));
}

}  // namespace
}  // namespace EDGELLAMA_ROWS8_NS
}  // namespace edgellama
