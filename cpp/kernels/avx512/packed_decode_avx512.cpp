// Decode (1-8 tokens) of packed groups (edgellama/packed_layout.h) with AVX-512 VNNI.
// Every format (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K..Q6_K, IQ4_XS) reads two 4-value units of a row per 64-bit lane
// pair ("unit pairs": lane 2r = row r's unit k, lane 2r + 1 its unit k + 1, from one 64-byte load of
// the packed group and a vpermd), so that one 64-bit broadcast of the token's 8 matching activation
// bytes feeds one 512-bit vpdpbusd (on Zen 4 a 512-bit vpdpbusd costs what a 256-bit one does:
// measured 1.6x the multiply-adds per second). The two lanes of a row hold parts of one exact int32
// sum, folded per block before the float steps, which are the 8-row kernels' (AVX2 gemm_rows8_avx2.cpp
// and the GGUF-layout kernels), so the bits are equal (tests/test_packed_weights.py).
// vpdpbusd sums four u8 x s8 products straight into int32 (signed weights - Q8_0, IQ4_NL, IQ4_XS - as
// w + 128, the offset taken off through the activation sums); the K-quants' sub-block scales are applied
// with one exact int32 multiply per sub-block (vpmulld) and the offsets with vpdpwssd. Weights are
// unpacked in registers once per block for all the tokens; 32 registers hold up to 8 tokens'
// accumulators (Q6_K: 6).
// With 2 or more tokens a turn (Q2_K/Q3_K: 8) each type has a 16-row form (direct_*_rows16, D::run16):
// two groups per vector, one row per 32-bit lane, no fold, float steps on 16 rows; gemm_packed pairs
// group i with group i + pairs (see there). Same sums and float steps per row, so the same bits.
// Compiled with the AVX-512 flags of this directory; only reached through the avx512 KernelSet.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../avx2/gemm_rows8.h"
#include "../avx2/legacy_blocks_avx2.h"
#include "../avx2/packed_src.h"
#include "edgellama/iquant_blocks.h"
#include "edgellama/kernels.h"
#include "edgellama/quant_blocks.h"
#include "act_sum.h"
#include "gemm_rows16.h"

// GCC 12's AVX-512 intrinsics start from _mm*_undefined_*() and trip -W(maybe-)uninitialized
// (GCC bug 105593, fixed in GCC 13): a false positive, silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace edgellama {
namespace avx512_packed {
namespace {

// One packed group (8 rows) at a time, one block at a time, in the order the group is stored (one
// sequential stream, as the hardware prefetcher likes it). Session 6 tried two blocks (or two groups)
// per 512-bit vector: for the 256-value blocks the two reads 1.1 KB apart streamed 3x slower from
// memory (decode_roofline dram: Q4_K 7-8 vs 19-23 GB/s; software prefetch did not help), and for the
// 32-value blocks each vpdpbusd needed two 32-bit activation broadcasts, one masked (measured the
// bottleneck with 2+ tokens). The unit pairs below use 512-bit vpdpbusd on one block instead.
namespace rows8 {
inline __m256i bcast4(const int8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return _mm256_set1_epi32(v);
}

// Byte c (0..3) of each 32-bit lane as int32, and as the (v, v) int16 pair.
inline __m256i byte_i32(__m256i x, int c) { return _mm256_and_si256(_mm256_srli_epi32(x, 8 * c), _mm256_set1_epi32(0xFF)); }
inline __m256i pair_of(__m256i v) { return _mm256_or_si256(v, _mm256_slli_epi32(v, 16)); }
// Shuffle controls, per 32-bit lane (= row): byte j of the lane zero-extended to int32; and bytes 2i,
// 2i + 1 of the lane zero-extended to the lane's two int16 halves.
inline __m256i byte_sel(int j) {
  const char z = char(0x80);
  return _mm256_setr_epi8(char(j), z, z, z, char(4 + j), z, z, z, char(8 + j), z, z, z, char(12 + j), z, z, z,
                          char(j), z, z, z, char(4 + j), z, z, z, char(8 + j), z, z, z, char(12 + j), z, z, z);
}
inline __m256i pair_sel(int i) {
  const char z = char(0x80), a = char(2 * i), b = char(2 * i + 1);
  return _mm256_setr_epi8(a, z, b, z, char(4 + a), z, char(4 + b), z, char(8 + a), z, char(8 + b), z, char(12 + a), z,
                          char(12 + b), z, a, z, b, z, char(4 + a), z, char(4 + b), z, char(8 + a), z, char(8 + b), z,
                          char(12 + a), z, char(12 + b), z);
}

// Two GROUPS of values of one block in a 512-bit vector: the packed layout keeps 4-value units k and
// k + 1 of the 8 rows next to each other (64 bytes); one load and a lane permutation give lane 2r =
// row r's unit k, lane 2r + 1 = its unit k + 1. The 8 activation bytes of the two units are adjacent
// too (one 64-bit broadcast), so one 512-bit vpdpbusd does the work of two 256-bit ones while the
// weights are read in the same order as before (one sequential stream). The two lanes of a row hold
// parts of one exact int32 sum, folded at the end of the block (fold_rows): the bits do not change.
inline __m512i unit_pairs(const uint8_t* p) {
  const __m512i idx = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
  return _mm512_permutexvar_epi32(idx, _mm512_loadu_si512(p));
}
inline __m512i bcast8(const int8_t* q) {
  int64_t v;
  std::memcpy(&v, q, 8);
  return _mm512_set1_epi64(v);
}
// Lane r of v in lanes 2r and 2r + 1 (a row's scale for both its lanes).
inline __m512i dup_rows(__m256i v) {
  const __m512i idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  return _mm512_permutexvar_epi32(idx, _mm512_castsi256_si512(v));
}
// Lanes 2r + 2r + 1 of v as lane r (exact int32 sums).
inline __m256i fold_rows(__m512i v) { return _mm512_cvtepi64_epi32(_mm512_add_epi32(v, _mm512_srli_epi64(v, 32))); }

// Software prefetch: every kernel prefetches each block's cache lines kPackedPrefetchBytes ahead
// (packed_src.h, where the measurements are), in both streams of the 16-row forms.

// ---- Q4_0 / Q4_1 by unit pairs: per block, vectors of units (0, 1) and (2, 3) of the 8 rows ----------
// lane 2r / 2r + 1 = row r's quant bytes 4k..4k+3 / 4k+4..4k+7 (low nibbles: values 4k.., high: 16+4k..);
// the token's 8 matching activation bytes are adjacent (one 64-bit broadcast from memory, where the
// two-blocks-per-vector form needs two 32-bit broadcasts, one of them masked, per vpdpbusd: measured the
// bottleneck with 2+ tokens). Per block, the two lanes of a row are folded (exact int32) and the float
// steps are those of direct_legacy: acc = fma(float(isum), dw * da, acc); acc = fma(cw, sa, acc).
// Q5_0 / Q5_1 fifth bits of values 8j..8j+7 (vector j: lanes 2r / 2r + 1 = values 8j.. / 8j+4.. of row r)
// from qh2 (row r's 32-bit qh in lanes 2r and 2r + 1; bit v = value v): 0x10 in each byte whose bit is set.
inline __m512i fifth_units(__m512i qh2, int j) {
  const __m512i shift = _mm512_set_epi32(8 * j + 4, 8 * j, 8 * j + 4, 8 * j, 8 * j + 4, 8 * j, 8 * j + 4, 8 * j,
                                         8 * j + 4, 8 * j, 8 * j + 4, 8 * j, 8 * j + 4, 8 * j, 8 * j + 4, 8 * j);
  const __m512i low_byte = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12));
  const __m512i rep = _mm512_shuffle_epi8(_mm512_srlv_epi32(qh2, shift), low_byte);
  return _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(rep, _mm512_set1_epi32(0x08040201)), _mm512_set1_epi8(0x10));
}

template <class L, int T>
void direct_legacy_units(int64_t nb, const PackedSrc& src, const uint8_t* a, size_t as, float* acc) {
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b) {
    if (kPrefetchPacked) src.prefetch(b);
    // qs bytes 0-7 / 8-15: low nibbles = values 0-7 / 8-15, high nibbles = values 16-23 / 24-31
    const __m512i x0 = unit_pairs(src.at(b, L::kQsOff)), x1 = unit_pairs(src.at(b, L::kQsOff + 8));
    __m512i w[4] = {_mm512_and_si512(x0, m4), _mm512_and_si512(x1, m4), _mm512_and_si512(_mm512_srli_epi16(x0, 4), m4),
                    _mm512_and_si512(_mm512_srli_epi16(x1, 4), m4)};
    if constexpr (L::kFiveBit) {
      const __m512i qh2 = dup_rows(src.word8(b, L::kQhOff));
      for (int j = 0; j < 4; ++j) w[j] = _mm512_or_si512(w[j], fifth_units(qh2, j));
    }
    const __m256 dw = src.half8(b, 0);
    const __m256 cw = L::kMinOff ? src.half8(b, L::kMinOff) : _mm256_mul_ps(dw, _mm256_set1_ps(L::kOffset));
    for (int t = 0; t < T; ++t) {
      const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as) + b;
      const __m512i p0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w[0], bcast8(ab->qs)), w[1], bcast8(ab->qs + 8));
      const __m512i p1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w[2], bcast8(ab->qs + 16)), w[3], bcast8(ab->qs + 24));
      const __m256i isum = fold_rows(_mm512_add_epi32(p0, p1));
      s[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, _mm256_set1_ps(ab->d)), s[t]);
      s[t] = _mm256_fmadd_ps(cw, _mm256_set1_ps(ab->s), s[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// ---- Q4_0 / Q4_1 / Q5_0 / Q5_1 on two groups at once, one row per 32-bit lane (2-8 tokens) --------------------------
// With several tokens the unit-pair kernel above is compute-bound, and a third of its vector work is
// the per-token, per-block fold of a row's two lanes (vpsrlq, vpaddd, vpmovqd) and 8-row float steps.
// Here the 8 rows of group A and the 8 of group B share each 512-bit vector (lane r = row r, lane
// 8 + r = row 8 + r): unit k of a block is one 32-byte load per group, one 32-bit activation broadcast
// feeds a vpdpbusd for 16 rows, the sums need no fold, and the float steps run on 16 rows at once. The
// two groups are two sequential streams (see gemm_packed for which two). Per row and block the exact
// int32 sum and the float steps are the unit-pair kernel's, so the bits are equal. Kernel alone
// (2048x2048 in cache, 1 thread): Q4_0 at 2 / 4 / 8 tokens 100 / 117 / 124 -> 125 / 151 / 158 GMAC/s.
// Block b's lines of both groups, kPackedPrefetchBytes ahead (both streams of a 16-row pass).
inline void prefetch_rows16(const PackedSrc& ga, const PackedSrc& gb, int64_t b) {
  ga.prefetch(b);
  gb.prefetch(b);
}
inline __m512i rows16_word(const PackedSrc& ga, const PackedSrc& gb, int64_t b, size_t o) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(ga.word8(b, o)), gb.word8(b, o), 1);
}
inline __m512 rows16_half(const PackedSrc& ga, const PackedSrc& gb, int64_t b, size_t o) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(ga.half8(b, o)), gb.half8(b, o), 1);
}
inline __m512i bcast4_512(const int8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return _mm512_set1_epi32(v);
}
// The exact int32 sum of a 32-value block for 16 rows: u[k] = values 4k..4k+3 of each row (u[0..3]
// values 0-15, u[4..7] values 16-31), q = the token's 32 activation bytes; two chains of 4 vpdpbusd.
// Always inlined: called out of line, u goes through memory (IQ4_XS at 2 tokens 100 -> 71 GMAC/s).
__attribute__((always_inline)) inline __m512i dot32_rows16(const __m512i* u, const int8_t* q) {
  __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[0], bcast4_512(q));
  __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[4], bcast4_512(q + 16));
  for (int k = 1; k < 4; ++k) {
    p0 = _mm512_dpbusd_epi32(p0, u[k], bcast4_512(q + 4 * k));
    p1 = _mm512_dpbusd_epi32(p1, u[4 + k], bcast4_512(q + 16 + 4 * k));
  }
  return _mm512_add_epi32(p0, p1);
}

// Byte i (0..3) of each 32-bit lane: 0x10 where bit i of the lane is set (the lane's next 4 fifth bits).
inline __m512i fifth_bytes(__m512i bits) {
  const __m512i low_byte = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12));
  const __m512i rep = _mm512_shuffle_epi8(bits, low_byte);
  return _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(rep, _mm512_set1_epi32(0x08040201)), _mm512_set1_epi8(0x10));
}

template <class L, int T>
void direct_legacy_rows16(int64_t nb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as,
                          float* acc) {
  __m512 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b) {
    if (kPrefetchPacked) prefetch_rows16(ga, gb, b);
    // u[k] / u[4 + k]: values 4k..4k+3 / 16+4k..16+4k+3 of each of the 16 rows (low / high nibbles)
    __m512i u[8];
    for (int k = 0; k < 4; ++k) {
      const __m512i x = rows16_word(ga, gb, b, L::kQsOff + 4 * k);
      u[k] = _mm512_and_si512(x, m4);
      u[4 + k] = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
    }
    if constexpr (L::kFiveBit) {  // Q5_0 / Q5_1: the fifth bit of value v is bit v of the row's qh
      const __m512i qh = rows16_word(ga, gb, b, L::kQhOff);
      for (int k = 0; k < 8; ++k) u[k] = _mm512_or_si512(u[k], fifth_bytes(_mm512_srli_epi32(qh, 4 * k)));
    }
    const __m512 dw = rows16_half(ga, gb, b, 0);
    const __m512 cw = L::kMinOff ? rows16_half(ga, gb, b, L::kMinOff) : _mm512_mul_ps(dw, _mm512_set1_ps(L::kOffset));
    for (int t = 0; t < T; ++t) {
      const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as) + b;
      const __m512i isum = dot32_rows16(u, ab->qs);
      s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, _mm512_set1_ps(ab->d)), s[t]);
      s[t] = _mm512_fmadd_ps(cw, _mm512_set1_ps(ab->s), s[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + 16 * t, s[t]);
}

// ---- Q8_0 / IQ4_NL by unit pairs, weights as uint8 (w + 128) against the token's activation bytes; the
// offset comes off through the block's activation sum (asum[t * nb + b], exact, computed once per call):
//   isum = sum (w + 128) a - 128 sum a = sum w a,   acc = fma(float(isum), dw * da, acc)
// (Q8_0's sequence). u[j] = values 8j..8j+7 (lanes 2r, 2r + 1 = row r): one 64-bit broadcast each.
template <int T>
inline void offset_unit_dots(const __m512i* u, __m256 dw, const uint8_t* a, size_t as, const int32_t* asum, int64_t nb,
                             int64_t b, __m256* s) {
  for (int t = 0; t < T; ++t) {
    const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as) + b;
    const __m512i p0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u[0], bcast8(ab->qs)), u[1], bcast8(ab->qs + 8));
    const __m512i p1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u[2], bcast8(ab->qs + 16)), u[3], bcast8(ab->qs + 24));
    const __m256i isum = _mm256_sub_epi32(fold_rows(_mm512_add_epi32(p0, p1)), _mm256_set1_epi32(128 * asum[t * nb + b]));
    s[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, _mm256_set1_ps(ab->d)), s[t]);
  }
}

template <int T>
void direct_q8_units(int64_t nb, const PackedSrc& src, const uint8_t* a, size_t as, const int32_t* asum, float* acc) {
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  const __m512i flip = _mm512_set1_epi8(char(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    if (kPrefetchPacked) src.prefetch(b);
    __m512i u[4];
    for (int j = 0; j < 4; ++j) u[j] = _mm512_xor_si512(unit_pairs(src.at(b, 2 + 8 * size_t(j))), flip);
    offset_unit_dots<T>(u, src.half8(b, 0), a, as, asum, nb, b, s);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// The 16 IQ4 levels + 128 (as uint8 for vpdpbusd) in every 128-bit lane, for vpshufb by nibble.
inline __m512i iq4_levels_u8() {
  alignas(16) int8_t lv[16];
  for (int i = 0; i < 16; ++i) lv[i] = int8_t(iq::kIq4Values[i] ^ 0x80);
  return _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(lv)));
}

// IQ4_NL: the levels + 128 looked up by vpshufb.
template <int T>
void direct_iq4nl_units(int64_t nb, const PackedSrc& src, const uint8_t* a, size_t as, const int32_t* asum, float* acc) {
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i levels = iq4_levels_u8();
  for (int64_t b = 0; b < nb; ++b) {
    if (kPrefetchPacked) src.prefetch(b);
    // qs bytes 0-7 / 8-15: low nibbles = values 0-7 / 8-15, high nibbles = values 16-23 / 24-31
    const __m512i x0 = unit_pairs(src.at(b, 2)), x1 = unit_pairs(src.at(b, 10));
    const __m512i u[4] = {_mm512_shuffle_epi8(levels, _mm512_and_si512(x0, m4)),
                          _mm512_shuffle_epi8(levels, _mm512_and_si512(x1, m4)),
                          _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(x0, 4), m4)),
                          _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(x1, 4), m4))};
    offset_unit_dots<T>(u, src.half8(b, 0), a, as, asum, nb, b, s);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// ---- Q8_0 / IQ4_NL on two groups at once, one row per 32-bit lane (2-8 tokens) -------------------
// As direct_legacy_rows16 (lane r = row r of group A, lane 8 + r = row r of group B): u[k] = values
// 4k..4k+3 of the 16 rows as w + 128, one 32-bit activation broadcast per vpdpbusd, no fold; the same
// exact int32 sum per row and block and the same float step as offset_unit_dots, so the bits are equal.
template <int T>
inline void offset_rows16_dots(const __m512i* u, __m512 dw, const uint8_t* a, size_t as, const int32_t* asum,
                               int64_t nb, int64_t b, __m512* s) {
  for (int t = 0; t < T; ++t) {
    const ActQ8x32* ab = reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as) + b;
    const __m512i isum = _mm512_sub_epi32(dot32_rows16(u, ab->qs), _mm512_set1_epi32(128 * asum[t * nb + b]));
    s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, _mm512_set1_ps(ab->d)), s[t]);
  }
}

// Q8_0: qs word k (bytes 2 + 4k) = values 4k..4k+3. Kernel alone (2048x2048, 1 thread, noisy under
// load; before = the unit-pair kernel): 2 / 4 / 8 tokens 88 / 107 / 108 -> 116 / 141 / 154 GMAC/s.
template <int T>
void direct_q8_rows16(int64_t nb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as,
                      const int32_t* asum, float* acc) {
  __m512 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm512_setzero_ps();
  const __m512i flip = _mm512_set1_epi8(char(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    if (kPrefetchPacked) prefetch_rows16(ga, gb, b);
    __m512i u[8];
    for (int k = 0; k < 8; ++k) u[k] = _mm512_xor_si512(rows16_word(ga, gb, b, 2 + 4 * size_t(k)), flip);
    offset_rows16_dots<T>(u, rows16_half(ga, gb, b, 0), a, as, asum, nb, b, s);
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + 16 * t, s[t]);
}

// IQ4_NL: qs word k (bytes 2 + 4k): low nibbles = values 4k..4k+3, high = 16 + 4k..; the levels + 128 by
// vpshufb. Kernel alone (as above): 2 / 4 / 8 tokens 82 / 102 / 104 -> 100 / 138 / 150 GMAC/s.
template <int T>
void direct_iq4nl_rows16(int64_t nb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as,
                         const int32_t* asum, float* acc) {
  __m512 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i levels = iq4_levels_u8();
  for (int64_t b = 0; b < nb; ++b) {
    if (kPrefetchPacked) prefetch_rows16(ga, gb, b);
    __m512i u[8];
    for (int k = 0; k < 4; ++k) {
      const __m512i x = rows16_word(ga, gb, b, 2 + 4 * size_t(k));
      u[k] = _mm512_shuffle_epi8(levels, _mm512_and_si512(x, m4));
      u[4 + k] = _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(x, 4), m4));
    }
    offset_rows16_dots<T>(u, rows16_half(ga, gb, b, 0), a, as, asum, nb, b, s);
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + 16 * t, s[t]);
}

// ---- Q4_K / Q5_K: d dmin scales[12] qs[128] (Q5_K: qh[32] before qs) --------------------------------
// Units k, k + 1 per vector (unit_pairs above); per token and super-block:
//   isum = sum_c sc_c * (sum over sub-block c of q a)   (exact int32), msum = sum_c mn_c * bsums pair
//   acc = fma(float(isum), d * da, acc); acc = fma(-float(msum), dmin * da, acc)
template <bool kFive, int T>
void direct_k45(int64_t nsb, const PackedSrc& src, const uint8_t* a, size_t as, float* acc) {
  constexpr size_t qs_off = kFive ? 48 : 16;
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
  const __m256i m6w = _mm256_set1_epi32(0x3f3f3f3f), m4w = _mm256_set1_epi32(0x0f0f0f0f),
                m2w = _mm256_set1_epi32(0x03030303);
  for (int64_t b = 0; b < nsb; ++b) {
    if (kPrefetchPacked) src.prefetch(b);
    // 6-bit scales and mins (kquant_scales.h's scale_min_k4), lane-wise on the rows' three words.
    const __m256i u0 = src.word8(b, 4), u1 = src.word8(b, 8), u2 = src.word8(b, 12);
    const __m256i s0 = _mm256_and_si256(u0, m6w);
    const __m256i s1 = _mm256_or_si256(_mm256_and_si256(u2, m4w),
                                       _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u0, 6), m2w), 4));
    const __m256i n0 = _mm256_and_si256(u1, m6w);
    const __m256i n1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), m4w),
                                       _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u1, 6), m2w), 4));
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m512i iacc[T];
    for (int t = 0; t < T; ++t) iacc[t] = _mm512_setzero_si512();
    __m512i xh[2][2];  // Q5_K: qh units 2kp, 2kp + 1 of bytes 16h..16h+15
    if constexpr (kFive)
      for (int h = 0; h < 2; ++h)
        for (int kp = 0; kp < 2; ++kp) xh[h][kp] = unit_pairs(src.at(b, 16 + 16 * size_t(h) + 8 * size_t(kp)));
    for (int i = 0; i < 4; ++i) {  // chunks 2i (low nibbles) and 2i+1 (high nibbles)
      __m512i lo[T], hi[T];
      for (int t = 0; t < T; ++t) lo[t] = hi[t] = _mm512_setzero_si512();
      for (int h = 0; h < 2; ++h) {
        for (int kp = 0; kp < 2; ++kp) {
          const __m512i x = unit_pairs(src.at(b, qs_off + 32 * size_t(i) + 16 * size_t(h) + 8 * size_t(kp)));
          __m512i l = _mm512_and_si512(x, m4), u = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
          if constexpr (kFive) {
            l = _mm512_or_si512(l, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(xh[h][kp], 2 * i), one), 4));
            u = _mm512_or_si512(u, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(xh[h][kp], 2 * i + 1), one), 4));
          }
          const int g = 4 * h + 2 * kp;
          for (int t = 0; t < T; ++t) {
            const int8_t* q = ab[t]->qs + 64 * i + 4 * g;
            lo[t] = _mm512_dpbusd_epi32(lo[t], l, bcast8(q));
            hi[t] = _mm512_dpbusd_epi32(hi[t], u, bcast8(q + 32));
          }
        }
      }
      const __m512i sc_lo = dup_rows(byte_i32(i < 2 ? s0 : s1, 2 * (i % 2)));
      const __m512i sc_hi = dup_rows(byte_i32(i < 2 ? s0 : s1, 2 * (i % 2) + 1));
      for (int t = 0; t < T; ++t)
        iacc[t] = _mm512_add_epi32(iacc[t], _mm512_add_epi32(_mm512_mullo_epi32(lo[t], sc_lo), _mm512_mullo_epi32(hi[t], sc_hi)));
    }
    const __m256 d = src.half8(b, 0), dm = src.half8(b, 2);
    for (int t = 0; t < T; ++t) {
      const int8_t* bs = reinterpret_cast<const int8_t*>(ab[t]->bsums);
      __m256i ms = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c)  // mn_c * (bsums[2c] + bsums[2c + 1])
        ms = _mm256_dpwssd_epi32(ms, pair_of(byte_i32(c < 4 ? n0 : n1, c % 4)), bcast4(bs + 4 * c));
      const __m256 da = _mm256_broadcast_ss(&ab[t]->d);
      s[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold_rows(iacc[t])), _mm256_mul_ps(d, da), s[t]);
      s[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(dm, da), s[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// ---- Q4_K / Q5_K on two groups at once, one row per 32-bit lane (2-8 tokens) ------------------------
// direct_k45 in the form of direct_legacy_rows16: lane r = row r of group A, lane 8 + r = row r of
// group B. Word u of chunk i (qs bytes 32i + 4u..+3, one 32-byte load per group) holds values 64i + 4u..
// in its low nibbles (sub-block 2i) and 64i + 32 + 4u.. in its high ones (sub-block 2i + 1): one 32-bit
// activation broadcast per vpdpbusd. The scales and mins are decoded once on 16 lanes, the scale
// vpmulld and the mins' vpdpwssd run once per 16 rows, nothing is folded, and the float steps are
// direct_k45's, per lane on 16 rows: the same exact int32 isum and msum and the same fma / fnmadd, so
// the bits are equal (tests/test_packed_weights.py). The chunk loop is left rolled: fully unrolled,
// GCC spilled the 8-token form (Q4_K 8 tokens 119 GMAC/s vs 154). Kernel alone (2048x2048 in cache,
// 1 thread, noisy, interleaved) at 2 / 4 / 8 tokens: Q4_K 102 / 124 / 128 -> 122 / 147 / 154 GMAC/s,
// Q5_K 78 / 103 / 109 -> 90 / 122 / 133 (its fifth bits by vptestmb + masked vpaddb: 2 tokens
// 86 -> 90 against direct_k45's shift-and-or form).
// From memory (16384x4096, best of 4, noisy) at 1 / 2 / 4 tokens, 1 thread: Q4_K 1.00 / 1.44 / 4.14 ->
// 1.03 / 1.69 / 2.66 ms (the two streams cost at 2 tokens on one thread), Q5_K 1.49 / 2.17 / 4.81 ->
// 1.49 / 2.06 / 3.28; 2 threads: Q4_K 0.72 / 1.04 / 2.17 -> 0.77 / 1.00 / 1.51, Q5_K 1.00 / 1.58 / 2.74
// -> 0.93 / 1.05 / 1.61 (1 token is the unit-pair kernel either way).
inline __m512i byte_i32_512(__m512i x, int c) { return _mm512_and_si512(_mm512_srli_epi32(x, 8 * c), _mm512_set1_epi32(0xFF)); }
inline __m512i pair_of_512(__m512i v) { return _mm512_or_si512(v, _mm512_slli_epi32(v, 16)); }

template <bool kFive, int T>
void direct_k45_rows16(int64_t nsb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as, float* acc) {
  constexpr size_t qs_off = kFive ? 48 : 16;
  __m512 s[T];
  #pragma GCC unroll 16
  for (int t = 0; t < T; ++t) s[t] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F), m10 = _mm512_set1_epi8(0x10);
  const __m512i m6w = _mm512_set1_epi32(0x3f3f3f3f), m4w = _mm512_set1_epi32(0x0f0f0f0f),
                m2w = _mm512_set1_epi32(0x03030303);
  for (int64_t b = 0; b < nsb; ++b) {
    if (kPrefetchPacked) prefetch_rows16(ga, gb, b);
    // 6-bit scales and mins (kquant_scales.h's scale_min_k4), lane-wise on the 16 rows' three words.
    const __m512i u0 = rows16_word(ga, gb, b, 4), u1 = rows16_word(ga, gb, b, 8), u2 = rows16_word(ga, gb, b, 12);
    const __m512i s0 = _mm512_and_si512(u0, m6w);
    const __m512i s1 = _mm512_or_si512(_mm512_and_si512(u2, m4w),
                                       _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), m2w), 4));
    const __m512i n0 = _mm512_and_si512(u1, m6w);
    const __m512i n1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m4w),
                                       _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), m2w), 4));
    const block_q8_K* ab[T];
    #pragma GCC unroll 16
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m512i iacc[T];
    #pragma GCC unroll 16
    for (int t = 0; t < T; ++t) iacc[t] = _mm512_setzero_si512();
    for (int i = 0; i < 4; ++i) {  // sub-blocks 2i (low nibbles) and 2i + 1 (high nibbles)
      __m512i lo[T], hi[T];
      #pragma GCC unroll 16
      for (int t = 0; t < T; ++t) lo[t] = hi[t] = _mm512_setzero_si512();
      // Q5_K: the qh bits of sub-blocks 2i and 2i + 1 in each byte
      const __m512i bit_lo = _mm512_set1_epi8(char(1 << (2 * i))), bit_hi = _mm512_set1_epi8(char(2 << (2 * i)));
      #pragma GCC unroll 8
      for (int u = 0; u < 8; ++u) {
        const __m512i x = rows16_word(ga, gb, b, qs_off + 32 * size_t(i) + 4 * size_t(u));
        __m512i l = _mm512_and_si512(x, m4), h = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
        if constexpr (kFive) {  // Q5_K: qh byte 4u.. bit 2i / 2i + 1 = the low / high value's fifth bit
          // as 0x10 added (bit 4 is clear) to each byte whose bit is set (one vptestmb, one masked vpaddb)
          const __m512i xh = rows16_word(ga, gb, b, 16 + 4 * size_t(u));
          l = _mm512_mask_add_epi8(l, _mm512_test_epi8_mask(xh, bit_lo), l, m10);
          h = _mm512_mask_add_epi8(h, _mm512_test_epi8_mask(xh, bit_hi), h, m10);
        }
        #pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
          const int8_t* q = ab[t]->qs + 64 * i + 4 * u;
          lo[t] = _mm512_dpbusd_epi32(lo[t], l, bcast4_512(q));
          hi[t] = _mm512_dpbusd_epi32(hi[t], h, bcast4_512(q + 32));
        }
      }
      const __m512i sc_lo = byte_i32_512(i < 2 ? s0 : s1, 2 * (i % 2));
      const __m512i sc_hi = byte_i32_512(i < 2 ? s0 : s1, 2 * (i % 2) + 1);
      #pragma GCC unroll 16
      for (int t = 0; t < T; ++t)
        iacc[t] = _mm512_add_epi32(iacc[t], _mm512_add_epi32(_mm512_mullo_epi32(lo[t], sc_lo), _mm512_mullo_epi32(hi[t], sc_hi)));
    }
    const __m512 d = rows16_half(ga, gb, b, 0), dm = rows16_half(ga, gb, b, 2);
    #pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const int8_t* bs = reinterpret_cast<const int8_t*>(ab[t]->bsums);
      __m512i ms = _mm512_setzero_si512();
      #pragma GCC unroll 8
      for (int c = 0; c < 8; ++c)  // mn_c * (bsums[2c] + bsums[2c + 1])
        ms = _mm512_dpwssd_epi32(ms, pair_of_512(byte_i32_512(c < 4 ? n0 : n1, c % 4)), bcast4_512(bs + 4 * c));
      const __m512 da = _mm512_set1_ps(ab[t]->d);
      s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[t]), _mm512_mul_ps(d, da), s[t]);
      s[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(dm, da), s[t]);
    }
  }
  #pragma GCC unroll 16
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + 16 * t, s[t]);
}

// ---- Q6_K: packed form (packed_layout.h: scales, d, then triples A B C); value = qu - 32 ----------------
template <int T>
void direct_q6k(int64_t nsb, const PackedSrc& src, const uint8_t* a, size_t as, float* acc) {
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  const __m512i m3f = _mm512_set1_epi8(0x3F), m0f = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  const __m512i idx_a = _mm512_setr_epi32(0, 24, 1, 25, 2, 26, 3, 27, 4, 28, 5, 29, 6, 30, 7, 31);
  const __m512i idx_b = _mm512_setr_epi32(8, 16, 9, 17, 10, 18, 11, 19, 12, 20, 13, 21, 14, 22, 15, 23);
  const __m512i idx_c = _mm512_setr_epi32(0, 24, 1, 25, 2, 26, 3, 27, 4, 28, 5, 29, 6, 30, 7, 31);
  const char z = char(0x80);
  const __m256i sel_mn = _mm256_setr_epi8(z, 0, z, 1, z, 4, z, 5, z, 8, z, 9, z, 12, z, 13, z, 0, z, 1, z, 4, z, 5, z,
                                          8, z, 9, z, 12, z, 13);
  for (int64_t b = 0; b < nsb; ++b) {
    if (kPrefetchPacked) src.prefetch(b);
    __m256i scw[4];  // the rows' 16 int8 scales, four per word
    for (int w = 0; w < 4; ++w) scw[w] = src.word8(b, kQ6PackedScales + size_t(4 * w));
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m512i iacc[T];
    for (int t = 0; t < T; ++t) iacc[t] = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      for (int half = 0; half < 2; ++half) {  // sub-blocks 2c + half of the four chunks c = 4h + k
        // triples g, g + 1 (A B C A' B' C', 192 bytes) for g = 4 half and 4 half + 2, as unit pairs:
        // lane 2r = row r's word of triple g, lane 2r + 1 of triple g + 1 (three 64-byte loads, three
        // two-source permutes per pair)
        __m512i A[2], B[2], C[2];
        for (int gp = 0; gp < 2; ++gp) {
          const uint8_t* p = src.at(b, q6k_packed_triple(h, 4 * half + 2 * gp));
          const __m512i l0 = _mm512_loadu_si512(p), l1 = _mm512_loadu_si512(p + 64), l2 = _mm512_loadu_si512(p + 128);
          A[gp] = _mm512_permutex2var_epi32(l0, idx_a, l1);  // l0 dwords 0-7, l1 dwords 8-15
          B[gp] = _mm512_permutex2var_epi32(l0, idx_b, l2);  // l0 dwords 8-15, l2 dwords 0-7
          C[gp] = _mm512_permutex2var_epi32(l1, idx_c, l2);  // l1 dwords 0-7, l2 dwords 8-15
        }
        for (int k = 0; k < 4; ++k) {
          // q1 = A & 63, q2 = B & 63, q3 = (C & 15) | (A >> 2 & 48), q4 = (C >> 4 & 15) | (B >> 2 & 48);
          // ternary-logic 0xEA = (x & y) | z
          __m512i v[2];
          for (int gp = 0; gp < 2; ++gp) {
            if (k == 0) v[gp] = _mm512_and_si512(A[gp], m3f);
            if (k == 1) v[gp] = _mm512_and_si512(B[gp], m3f);
            if (k == 2) v[gp] = _mm512_ternarylogic_epi32(C[gp], m0f, _mm512_and_si512(_mm512_srli_epi16(A[gp], 2), m30), 0xEA);
            if (k == 3)
              v[gp] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(C[gp], 4), m0f, _mm512_and_si512(_mm512_srli_epi16(B[gp], 2), m30), 0xEA);
          }
          const int sb = 2 * (4 * h + k) + half;  // int8 scale sb of each row, sign-extended
          const __m512i sc = dup_rows(_mm256_srai_epi32(_mm256_slli_epi32(scw[sb / 4], 24 - 8 * (sb % 4)), 24));
          for (int t = 0; t < T; ++t) {
            const int8_t* q = ab[t]->qs + 32 * (4 * h + k) + 16 * half;
            const __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), v[0], bcast8(q)), v[1], bcast8(q + 8));
            iacc[t] = _mm512_add_epi32(iacc[t], _mm512_mullo_epi32(sum, sc));
          }
        }
      }
    }
    const __m256 d = src.half8(b, kQ6PackedD);
    for (int t = 0; t < T; ++t) {
      const int8_t* bs = reinterpret_cast<const int8_t*>(ab[t]->bsums);
      __m256i ms = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c) {  // (32 v_2c, 32 v_2c+1) . (bsums[2c], bsums[2c + 1])
        const __m256i mn = _mm256_slli_epi16(
            _mm256_srai_epi16(_mm256_shuffle_epi8(scw[c / 2], _mm256_add_epi8(sel_mn, _mm256_set1_epi8(char(2 * (c % 2))))),
                              8),
            5);
        ms = _mm256_dpwssd_epi32(ms, mn, bcast4(bs + 4 * c));
      }
      const __m256 da = _mm256_broadcast_ss(&ab[t]->d);
      s[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(fold_rows(iacc[t]), ms)), _mm256_mul_ps(d, da), s[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// ---- Q6_K on two groups at once, one row per 32-bit lane (2-6 tokens a turn) ---------------------------
// As direct_legacy_rows16: lane r = row r of group A, lane 8 + r = row r of group B. Word A, B or C of
// triple g of the 8 rows of a group is one 32-byte load (the packed position q6k_packed_triple + 0 / 4 /
// 8, rows contiguous), so a sub-block's 16 values are 4 vpdpbusd on 16 rows with one 32-bit activation
// broadcast each (triple g = 4 half + j against activation bytes 4j..4j+3 of the sub-block), and the
// sub-block scale multiply (vpmulld), the offsets (vpdpwssd) and the float steps run once per 16 rows
// with no fold. Per row and super-block the int32 sum is the unit-pair kernel's exact sum and the float
// step the same (acc = fma(float(isum - msum), d * da, acc)), so the bits are equal. The h / half loops
// are unrolled (GCC kept iacc in memory across the rolled loop). Kernel alone (2048x2048 in cache,
// 1 thread, noisy under load): 2 / 4 / 8 tokens 68 / 91 / 92 -> 100 / 126 / 129 GMAC/s.
template <int T>
void direct_q6k_rows16(int64_t nsb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as,
                       float* acc) {
  __m512 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm512_setzero_ps();
  const __m512i m3f = _mm512_set1_epi8(0x3F), m0f = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  const char z = char(0x80);
  // int16 lane pairs (scale byte 0 / 1 of the row's word) from the high bytes (sign-extended by srai 8);
  // + 2 selects bytes 2 / 3
  const __m512i sel_mn = _mm512_broadcast_i32x4(_mm_setr_epi8(z, 0, z, 1, z, 4, z, 5, z, 8, z, 9, z, 12, z, 13));
  for (int64_t b = 0; b < nsb; ++b) {
    if (kPrefetchPacked) prefetch_rows16(ga, gb, b);
    __m512i scw[4];  // the 16 rows' 16 int8 scales, four per word
    for (int w = 0; w < 4; ++w) scw[w] = rows16_word(ga, gb, b, kQ6PackedScales + size_t(4 * w));
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m512i iacc[T];
    for (int t = 0; t < T; ++t) iacc[t] = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 2
      for (int half = 0; half < 2; ++half) {  // sub-blocks 2c + half of the four chunks c = 4h + k
        // words A, B, C of triples g = 4 half + j of the 16 rows
        __m512i A[4], B[4], C[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          const size_t p = q6k_packed_triple(h, 4 * half + j);
          A[j] = rows16_word(ga, gb, b, p);
          B[j] = rows16_word(ga, gb, b, p + 4);
          C[j] = rows16_word(ga, gb, b, p + 8);
        }
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
          // q1 = A & 63, q2 = B & 63, q3 = (C & 15) | (A >> 2 & 48), q4 = (C >> 4 & 15) | (B >> 2 & 48)
          __m512i v[4];
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) {
            if (k == 0) v[j] = _mm512_and_si512(A[j], m3f);
            if (k == 1) v[j] = _mm512_and_si512(B[j], m3f);
            if (k == 2) v[j] = _mm512_ternarylogic_epi32(C[j], m0f, _mm512_and_si512(_mm512_srli_epi16(A[j], 2), m30), 0xEA);
            if (k == 3)
              v[j] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(C[j], 4), m0f, _mm512_and_si512(_mm512_srli_epi16(B[j], 2), m30), 0xEA);
          }
          const int sb = 2 * (4 * h + k) + half;  // int8 scale sb of each row, sign-extended
          const __m512i sc = _mm512_srai_epi32(_mm512_slli_epi32(scw[sb / 4], 24 - 8 * (sb % 4)), 24);
          for (int t = 0; t < T; ++t) {
            const int8_t* q = ab[t]->qs + 32 * (4 * h + k) + 16 * half;
            __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[0], bcast4_512(q));
            for (int j = 1; j < 4; ++j) sum = _mm512_dpbusd_epi32(sum, v[j], bcast4_512(q + 4 * j));
            iacc[t] = _mm512_add_epi32(iacc[t], _mm512_mullo_epi32(sum, sc));
          }
        }
      }
    }
    __m512i mn[8];  // (32 v_2c, 32 v_2c+1) as int16 pairs
    for (int c = 0; c < 8; ++c)
      mn[c] = _mm512_slli_epi16(
          _mm512_srai_epi16(_mm512_shuffle_epi8(scw[c / 2], _mm512_add_epi8(sel_mn, _mm512_set1_epi8(char(2 * (c % 2))))), 8),
          5);
    const __m512 d = rows16_half(ga, gb, b, kQ6PackedD);
    for (int t = 0; t < T; ++t) {
      const int8_t* bs = reinterpret_cast<const int8_t*>(ab[t]->bsums);
      __m512i ms = _mm512_setzero_si512();
      for (int c = 0; c < 8; ++c) ms = _mm512_dpwssd_epi32(ms, mn[c], bcast4_512(bs + 4 * c));
      const __m512 da = _mm512_set1_ps(ab[t]->d);
      s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(iacc[t], ms)), _mm512_mul_ps(d, da), s[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + 16 * t, s[t]);
}

// ---- Q3_K / Q2_K: 2-bit quants (+ Q3_K's high bit), 16 sub-blocks of 16 with their own scale --------
// Q3_K: hmask[32] qs[64] scales[12] d, value = qu - 4 (offset folded: isum - msum, one fma);
// Q2_K: scales[16] qs[64] d dmin, offsets = mins (two fmas). As kquant_scales.h's scales_q3_K /
// scales_q2_K and kquant_avx2.h's Q3_KW::q / Q2_KW::q, lane r = row r.
template <bool kQ3, int T>
void direct_q23k(int64_t nsb, const PackedSrc& src, const uint8_t* a, size_t as, float* acc) {
  constexpr size_t qs_off = kQ3 ? 32 : 16;
  __m256 s[T];
  #pragma GCC unroll 16
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  const __m512i m3 = _mm512_set1_epi8(3), m4 = _mm512_set1_epi8(4);
  const __m256i m4w = _mm256_set1_epi32(0x0f0f0f0f), m2w = _mm256_set1_epi32(0x03030303);
  for (int64_t b = 0; b < nsb; ++b) {
    if (kPrefetchPacked) src.prefetch(b);
    // sw[j]: lane word j holds the unsigned 6-bit (Q3_K) or packed 4+4-bit (Q2_K) scale bytes 4j..4j+3.
    __m256i sw[4];
    if constexpr (kQ3) {
      const __m256i u0 = src.word8(b, 96), u1 = src.word8(b, 100), u2 = src.word8(b, 104);
      auto hi2 = [&](int shift) { return _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u2, shift), m2w), 4); };
      sw[0] = _mm256_or_si256(_mm256_and_si256(u0, m4w), hi2(0));
      sw[1] = _mm256_or_si256(_mm256_and_si256(u1, m4w), hi2(2));
      sw[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u0, 4), m4w), hi2(4));
      sw[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u1, 4), m4w), hi2(6));
    } else {
      #pragma GCC unroll 16
      for (int j = 0; j < 4; ++j) sw[j] = src.word8(b, size_t(4 * j));
    }
    // Q2_K's scale (low) and min (high) nibbles apart; Q3_K's 6-bit scales are whole bytes.
    __m256i swl[4], swh[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      swl[j] = kQ3 ? sw[j] : _mm256_and_si256(sw[j], m4w);
      swh[j] = kQ3 ? sw[j] : _mm256_and_si256(_mm256_srli_epi32(sw[j], 4), m4w);
    }
    const block_q8_K* ab[T];
    #pragma GCC unroll 16
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m512i iacc[T];
    #pragma GCC unroll 16
    for (int t = 0; t < T; ++t) iacc[t] = _mm512_setzero_si512();
    #pragma GCC unroll 16
    for (int h = 0; h < 2; ++h) {
      #pragma GCC unroll 16
      for (int half = 0; half < 2; ++half) {  // sub-blocks 2c + half of the chunks c = 4h + k
        // unit pairs of the quant words g, g + 1 (g = 4 half, 4 half + 2) and of Q3_K's hmask words
        __m512i x[2], hm[2];
        #pragma GCC unroll 16
        for (int gp = 0; gp < 2; ++gp) {
          const int g = 4 * half + 2 * gp;
          x[gp] = unit_pairs(src.at(b, qs_off + size_t(32 * h + 4 * g)));
          if constexpr (kQ3) hm[gp] = unit_pairs(src.at(b, size_t(4 * g)));
        }
        #pragma GCC unroll 16
        for (int k = 0; k < 4; ++k) {
          const int c = 4 * h + k;
          __m512i v[2];
          #pragma GCC unroll 16
          for (int gp = 0; gp < 2; ++gp) {
            v[gp] = _mm512_and_si512(_mm512_srli_epi16(x[gp], 2 * k), m3);
            if constexpr (kQ3) {  // bit c of hmask -> value bit 2
              const __m512i hb = c >= 2 ? _mm512_srli_epi16(hm[gp], c - 2) : _mm512_slli_epi16(hm[gp], 2 - c);
              v[gp] = _mm512_or_si512(v[gp], _mm512_and_si512(hb, m4));
            }
          }
          const int sb = 2 * c + half;
          __m256i sc = _mm256_shuffle_epi8(swl[sb / 4], byte_sel(sb % 4));  // byte sb % 4 as int32
          if constexpr (kQ3) sc = _mm256_sub_epi32(sc, _mm256_set1_epi32(32));
          const __m512i sc2 = dup_rows(sc);
          #pragma GCC unroll 16
          for (int t = 0; t < T; ++t) {
            const int8_t* q = ab[t]->qs + 32 * c + 16 * half;
            const __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), v[0], bcast8(q)), v[1], bcast8(q + 8));
            iacc[t] = _mm512_add_epi32(iacc[t], _mm512_mullo_epi32(sum, sc2));
          }
        }
      }
    }
    // Offsets per sub-block pair c as int16 pairs (mn_2c, mn_2c+1): Q3_K 4 * (scale - 32), Q2_K scale >> 4;
    // bytes 2(c % 2), 2(c % 2) + 1 of word c / 2 widened by one shuffle.
    __m256i mnp[8];
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      const __m256i src16 = kQ3 ? sw[c / 2] : swh[c / 2];
      __m256i m = _mm256_shuffle_epi8(src16, pair_sel(c % 2));
      if constexpr (kQ3) m = _mm256_sub_epi16(_mm256_slli_epi16(m, 2), _mm256_set1_epi16(128));
      mnp[c] = m;
    }
    const __m256 d = src.half8(b, kQ3 ? 108 : 80);
    const __m256 dm = kQ3 ? d : src.half8(b, 82);
    #pragma GCC unroll 16
    for (int t = 0; t < T; ++t) {
      const int8_t* bs = reinterpret_cast<const int8_t*>(ab[t]->bsums);
      __m256i ms = _mm256_setzero_si256();
      #pragma GCC unroll 16
      for (int c = 0; c < 8; ++c) ms = _mm256_dpwssd_epi32(ms, mnp[c], bcast4(bs + 4 * c));
      const __m256 da = _mm256_broadcast_ss(&ab[t]->d);
      if constexpr (kQ3) {
        s[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(fold_rows(iacc[t]), ms)), _mm256_mul_ps(d, da), s[t]);
      } else {
        s[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold_rows(iacc[t])), _mm256_mul_ps(d, da), s[t]);
        s[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(dm, da), s[t]);
      }
    }
  }
  #pragma GCC unroll 16
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// ---- IQ4_XS: d scales_h scales_l[4] qs[128]; value = (ls_j - 32) * kIq4Values[nibble] in sub-block j ------
// Unit pairs of the levels as uint8 (kIq4Values + 128, vpshufb); per token and block:
//   isum = sum_j sc_j * (sum over sub-block j of (v + 128) a) - sum_j 128 sc_j * (bsums[2j] + bsums[2j+1])
//        = sum_j sc_j * (sum v a)   (exact int32; the offset term by vpdpwssd into lane 2r of the pair)
//   acc = fma(float(isum), d * da, acc)
// the sequence of the avx512 set's IQ4_XS kernels in the file layout (the 16-row prefill kernel in
// gemm_rows16_avx512.cpp, and this one on groups packed on the fly), so every path gives the same bits.
template <int T>
void direct_iq4xs(int64_t nsb, const PackedSrc& src, const uint8_t* a, size_t as, float* acc) {
  __m256 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i levels = iq4_levels_u8();
  for (int64_t b = 0; b < nsb; ++b) {
    if (kPrefetchPacked) src.prefetch(b);
    // lane r: row r's scales_l word and its scales_h (a 2-byte unit, widened to the lane)
    const __m256i sl = src.word8(b, 4);
    const __m256i sh = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src.at(b, 2))));
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m512i iacc[T];
    for (int t = 0; t < T; ++t) iacc[t] = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) {
      const __m256i sc = _mm256_sub_epi32(
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(sl, 4 * j), _mm256_set1_epi32(0xF)),
                          _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(sh, 2 * j), _mm256_set1_epi32(3)), 4)),
          _mm256_set1_epi32(32));
      const __m512i sc2 = dup_rows(sc);
      // -128 sc as the int16 pair (m, m) in lane 2r, 0 in lane 2r + 1 (vpdpwssd against bsums 2j, 2j + 1)
      const __m256i m = _mm256_mullo_epi32(sc, _mm256_set1_epi32(-128));
      const __m512i mn = _mm512_cvtepu32_epi64(
          _mm256_or_si256(_mm256_and_si256(m, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(m, 16)));
      // qs bytes 16j..16j+7 / +8..+15: low nibbles = values 32j+0..7 / +8..15, high = +16..23 / +24..31
      const __m512i x0 = unit_pairs(src.at(b, 8 + 16 * size_t(j))), x1 = unit_pairs(src.at(b, 16 + 16 * size_t(j)));
      const __m512i w0 = _mm512_shuffle_epi8(levels, _mm512_and_si512(x0, m4));
      const __m512i w1 = _mm512_shuffle_epi8(levels, _mm512_and_si512(x1, m4));
      const __m512i w2 = _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(x0, 4), m4));
      const __m512i w3 = _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(x1, 4), m4));
      for (int t = 0; t < T; ++t) {
        const int8_t* q = ab[t]->qs + 32 * j;
        const __m512i p0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, bcast8(q)), w1, bcast8(q + 8));
        const __m512i p1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w2, bcast8(q + 16)), w3, bcast8(q + 24));
        iacc[t] = _mm512_add_epi32(iacc[t], _mm512_mullo_epi32(_mm512_add_epi32(p0, p1), sc2));
        int32_t bs;
        std::memcpy(&bs, ab[t]->bsums + 2 * j, 4);
        iacc[t] = _mm512_dpwssd_epi32(iacc[t], mn, _mm512_set1_epi32(bs));
      }
    }
    const __m256 d = src.half8(b, 0);
    for (int t = 0; t < T; ++t)
      s[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold_rows(iacc[t])), _mm256_mul_ps(d, _mm256_set1_ps(ab[t]->d)), s[t]);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(acc + 8 * t, s[t]);
}

// Q3_K / Q2_K on two groups at once (8 tokens a turn, Q23D; see direct_legacy_rows16): lane r = row r of group A,
// lane 8 + r = row r of group B; the sub-block scale multiply and the offsets' vpdpwssd run once per
// 16 rows, no fold. Same exact int32 sums and float steps per row as direct_q23k.
// Bytes 2i, 2i + 1 of each 32-bit lane as the lane's int16 pair (pair_sel's control repeats per 128
// bits, as vpshufb works).
inline __m512i pair_sel512(int i) { return _mm512_broadcast_i32x4(_mm256_castsi256_si128(pair_sel(i))); }

template <bool kQ3, int T>
void direct_q23k_rows16(int64_t nsb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as,
                        float* acc) {
  constexpr size_t qs_off = kQ3 ? 32 : 16;
  __m512 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm512_setzero_ps();
  const __m512i m3 = _mm512_set1_epi8(3), m4 = _mm512_set1_epi8(4);
  const __m512i m4w = _mm512_set1_epi32(0x0f0f0f0f), m2w = _mm512_set1_epi32(0x03030303);
  for (int64_t b = 0; b < nsb; ++b) {
    if (kPrefetchPacked) prefetch_rows16(ga, gb, b);
    __m512i sw[4];
    if constexpr (kQ3) {
      const __m512i u0 = rows16_word(ga, gb, b, 96), u1 = rows16_word(ga, gb, b, 100), u2 = rows16_word(ga, gb, b, 104);
      auto hi2 = [&](int shift) { return _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u2, shift), m2w), 4); };
      sw[0] = _mm512_or_si512(_mm512_and_si512(u0, m4w), hi2(0));
      sw[1] = _mm512_or_si512(_mm512_and_si512(u1, m4w), hi2(2));
      sw[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u0, 4), m4w), hi2(4));
      sw[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u1, 4), m4w), hi2(6));
    } else {
      for (int j = 0; j < 4; ++j) sw[j] = rows16_word(ga, gb, b, size_t(4 * j));
    }
    __m512i swl[4], swh[4];
    for (int j = 0; j < 4; ++j) {
      swl[j] = kQ3 ? sw[j] : _mm512_and_si512(sw[j], m4w);
      swh[j] = kQ3 ? sw[j] : _mm512_and_si512(_mm512_srli_epi32(sw[j], 4), m4w);
    }
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m512i iacc[T];
    for (int t = 0; t < T; ++t) iacc[t] = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      for (int half = 0; half < 2; ++half) {  // sub-blocks 2c + half of the chunks c = 4h + k
        // quant words (and Q3_K's hmask words) u = 4 half + 0..3 of the 16 rows
        __m512i x[4], hm[4];
        for (int u = 0; u < 4; ++u) {
          const int g = 4 * half + u;
          x[u] = rows16_word(ga, gb, b, qs_off + size_t(32 * h + 4 * g));
          if constexpr (kQ3) hm[u] = rows16_word(ga, gb, b, size_t(4 * g));
        }
        for (int k = 0; k < 4; ++k) {
          const int c = 4 * h + k;
          __m512i v[4];
          for (int u = 0; u < 4; ++u) {
            v[u] = _mm512_and_si512(_mm512_srli_epi16(x[u], 2 * k), m3);
            if constexpr (kQ3) {  // bit c of hmask -> value bit 2
              const __m512i hb = c >= 2 ? _mm512_srli_epi16(hm[u], c - 2) : _mm512_slli_epi16(hm[u], 2 - c);
              v[u] = _mm512_or_si512(v[u], _mm512_and_si512(hb, m4));
            }
          }
          const int sb = 2 * c + half;
          __m512i sc = byte_i32_512(swl[sb / 4], sb % 4);
          if constexpr (kQ3) sc = _mm512_sub_epi32(sc, _mm512_set1_epi32(32));
          for (int t = 0; t < T; ++t) {
            const int8_t* q = ab[t]->qs + 32 * c + 16 * half;
            __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[0], bcast4_512(q));
            __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[1], bcast4_512(q + 4));
            p0 = _mm512_dpbusd_epi32(p0, v[2], bcast4_512(q + 8));
            p1 = _mm512_dpbusd_epi32(p1, v[3], bcast4_512(q + 12));
            iacc[t] = _mm512_add_epi32(iacc[t], _mm512_mullo_epi32(_mm512_add_epi32(p0, p1), sc));
          }
        }
      }
    }
    __m512i mnp[8];
    for (int c = 0; c < 8; ++c) {
      const __m512i src16 = kQ3 ? sw[c / 2] : swh[c / 2];
      __m512i m = _mm512_shuffle_epi8(src16, pair_sel512(c % 2));
      if constexpr (kQ3) m = _mm512_sub_epi16(_mm512_slli_epi16(m, 2), _mm512_set1_epi16(128));
      mnp[c] = m;
    }
    const __m512 d = rows16_half(ga, gb, b, kQ3 ? 108 : 80);
    const __m512 dm = kQ3 ? d : rows16_half(ga, gb, b, 82);
    for (int t = 0; t < T; ++t) {
      const int8_t* bs = reinterpret_cast<const int8_t*>(ab[t]->bsums);
      __m512i ms = _mm512_setzero_si512();
      for (int c = 0; c < 8; ++c) ms = _mm512_dpwssd_epi32(ms, mnp[c], bcast4_512(bs + 4 * c));
      const __m512 da = _mm512_set1_ps(ab[t]->d);
      if constexpr (kQ3) {
        s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(iacc[t], ms)), _mm512_mul_ps(d, da), s[t]);
      } else {
        s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[t]), _mm512_mul_ps(d, da), s[t]);
        s[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(dm, da), s[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + 16 * t, s[t]);
}

// IQ4_XS on two groups at once (2-8 tokens; see direct_legacy_rows16): lane r = row r of group A,
// lane 8 + r = row r of group B; unit k of each sub-block is one 32-byte load per group and one 32-bit
// activation broadcast per vpdpbusd; the scale multiply and the offset's vpdpwssd run once per 16 rows
// and the sums need no fold. Same exact int32 sums and float steps per row as direct_iq4xs.
template <int T>
void direct_iq4xs_rows16(int64_t nsb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as,
                         float* acc) {
  __m512 s[T];
  for (int t = 0; t < T; ++t) s[t] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i levels = iq4_levels_u8();
  for (int64_t b = 0; b < nsb; ++b) {
    if (kPrefetchPacked) prefetch_rows16(ga, gb, b);
    // lane r: row r's scales_l word and its scales_h (a 2-byte unit, widened to the lane)
    const __m512i sl = rows16_word(ga, gb, b, 4);
    const __m512i sh = _mm512_cvtepu16_epi32(_mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ga.at(b, 2)))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(gb.at(b, 2))), 1));
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m512i iacc[T];
    for (int t = 0; t < T; ++t) iacc[t] = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) {
      const __m512i sc = _mm512_sub_epi32(
          _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(sl, 4 * j), _mm512_set1_epi32(0xF)),
                          _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(sh, 2 * j), _mm512_set1_epi32(3)), 4)),
          _mm512_set1_epi32(32));
      // -128 sc as the int16 pair (m, m) of every lane (vpdpwssd against bsums 2j, 2j + 1)
      const __m512i m = _mm512_mullo_epi32(sc, _mm512_set1_epi32(-128));
      const __m512i mn = _mm512_or_si512(_mm512_and_si512(m, _mm512_set1_epi32(0xFFFF)), _mm512_slli_epi32(m, 16));
      // unit k = qs bytes 16j+4k..+3: low nibbles = values 32j+4k.., high nibbles = values 32j+16+4k..
      __m512i u[8];
      for (int k = 0; k < 4; ++k) {
        const __m512i x = rows16_word(ga, gb, b, 8 + 16 * size_t(j) + 4 * size_t(k));
        u[k] = _mm512_shuffle_epi8(levels, _mm512_and_si512(x, m4));
        u[4 + k] = _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(x, 4), m4));
      }
      for (int t = 0; t < T; ++t) {
        iacc[t] = _mm512_add_epi32(iacc[t], _mm512_mullo_epi32(dot32_rows16(u, ab[t]->qs + 32 * j), sc));
        int32_t bs;
        std::memcpy(&bs, ab[t]->bsums + 2 * j, 4);
        iacc[t] = _mm512_dpwssd_epi32(iacc[t], mn, _mm512_set1_epi32(bs));
      }
    }
    const __m512 d = rows16_half(ga, gb, b, 0);
    for (int t = 0; t < T; ++t)
      s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[t]), _mm512_mul_ps(d, _mm512_set1_ps(ab[t]->d)), s[t]);
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + 16 * t, s[t]);
}

}  // namespace rows8

// The direct kernels as types (a template argument below).
template <class L>
struct LegacyD {
  template <int T>
  static void run(int64_t nb, const PackedSrc& s, const uint8_t* a, size_t as, const int32_t*, float* acc) { rows8::direct_legacy_units<L, T>(nb, s, a, as, acc); }
  // Two groups at once (16 rows), for several tokens.
  template <int T>
  static void run16(int64_t nb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as, const int32_t*,
                    float* acc) {
    rows8::direct_legacy_rows16<L, T>(nb, ga, gb, a, as, acc);
  }
};
struct Iq4NlD {
  static constexpr bool kActSums = true;
  template <int T>
  static void run(int64_t nb, const PackedSrc& s, const uint8_t* a, size_t as, const int32_t* asum, float* acc) {
    rows8::direct_iq4nl_units<T>(nb, s, a, as, asum, acc);
  }
  template <int T>
  static void run16(int64_t nb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as,
                    const int32_t* asum, float* acc) {
    rows8::direct_iq4nl_rows16<T>(nb, ga, gb, a, as, asum, acc);
  }
};
struct Iq4XsD {
  template <int T>
  static void run(int64_t nb, const PackedSrc& s, const uint8_t* a, size_t as, const int32_t*, float* acc) { rows8::direct_iq4xs<T>(nb, s, a, as, acc); }
  template <int T>
  static void run16(int64_t nb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as, const int32_t*,
                    float* acc) {
    rows8::direct_iq4xs_rows16<T>(nb, ga, gb, a, as, acc);
  }
};
struct Q8D {
  static constexpr bool kActSums = true;
  template <int T>
  static void run(int64_t nb, const PackedSrc& s, const uint8_t* a, size_t as, const int32_t* asum, float* acc) {
    rows8::direct_q8_units<T>(nb, s, a, as, asum, acc);
  }
  template <int T>
  static void run16(int64_t nb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as,
                    const int32_t* asum, float* acc) {
    rows8::direct_q8_rows16<T>(nb, ga, gb, a, as, asum, acc);
  }
};
template <bool kFive>
struct K45D {
  template <int T>
  static void run(int64_t nb, const PackedSrc& s, const uint8_t* a, size_t as, const int32_t*, float* acc) { rows8::direct_k45<kFive, T>(nb, s, a, as, acc); }
  // Two groups at once (16 rows), for several tokens.
  template <int T>
  static void run16(int64_t nb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as, const int32_t*,
                    float* acc) {
    rows8::direct_k45_rows16<kFive, T>(nb, ga, gb, a, as, acc);
  }
};
template <bool kQ3>
struct Q23D {
  template <int T>
  static void run(int64_t nb, const PackedSrc& s, const uint8_t* a, size_t as, const int32_t*, float* acc) { rows8::direct_q23k<kQ3, T>(nb, s, a, as, acc); }
  // The 2-bit unpack per sub-block weighs more here: the 16-row form only pays from 8 tokens a turn
  // (kernel alone, in cache, 1 thread, noisy: Q2_K 2 / 4 / 8 tokens 70-90 / 103 / 96-103 -> 73 / 101 /
  // 119 GMAC/s; Q3_K 70 / 81-93 / 87-96 -> 57 / 88 / 103).
  static constexpr int64_t kRows16From = 8;
  template <int T>
  static void run16(int64_t nb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as, const int32_t*,
                    float* acc) {
    rows8::direct_q23k_rows16<kQ3, T>(nb, ga, gb, a, as, acc);
  }
};
struct Q6D {
  template <int T>
  static void run(int64_t nb, const PackedSrc& s, const uint8_t* a, size_t as, const int32_t*, float* acc) { rows8::direct_q6k<T>(nb, s, a, as, acc); }
  template <int T>
  static void run16(int64_t nb, const PackedSrc& ga, const PackedSrc& gb, const uint8_t* a, size_t as, const int32_t*,
                    float* acc) {
    rows8::direct_q6k_rows16<T>(nb, ga, gb, a, as, acc);
  }
};

template <class D, int kMaxT>
void group_direct(int64_t nb, const PackedSrc& src, const uint8_t* a, size_t as, const int32_t* asum, int64_t nt,
                  float* acc) {
  with_token_count<kMaxT>(nt, [&](auto T) { D::template run<decltype(T)::value>(nb, src, a, as, asum, acc); });
}

// Whether D wants the exact sum of each activation block's 32 int8 values (per token and block,
// computed once per call for all row groups): D::kActSums, false when absent.
template <class D, class = void>
struct WantsActSums : std::false_type {};
template <class D>
struct WantsActSums<D, std::void_t<decltype(D::kActSums)>> : std::bool_constant<D::kActSums> {};

constexpr int64_t kMaxTokens = kPackedMaxTokens;

#ifndef EDGELLAMA_ROWS16_MIN_TOKENS
#define EDGELLAMA_ROWS16_MIN_TOKENS 2
#endif
// From this many tokens per turn on, packed groups go two at a time to D::run16 (see
// direct_legacy_rows16); a D may start later (D::kRows16From).
// One token stays on the unit-pair kernels: memory-bound there, and SmolLM2 decode read 5.57 / 4.89
// ms a token with them vs 5.94 / 5.47 with the 16-row form (1 / 2 threads; TinyLlama 26 vs 24 ms).
constexpr int64_t kRows16MinTokens = EDGELLAMA_ROWS16_MIN_TOKENS;
template <class D, class = void>
struct Rows16From : std::integral_constant<int64_t, kRows16MinTokens> {};
template <class D>
struct Rows16From<D, std::void_t<decltype(D::kRows16From)>> : std::integral_constant<int64_t, D::kRows16From> {};

// Packed groups x up to kMaxTokens tokens on D, kMaxT tokens per pass (weights unpacked in registers
// once per block and pass: server batches and speculative verification are 2-16 tokens): from
// Rows16From<D> tokens a pass two groups at a time (D::run16), else and for a lone last group one at a
// time (D::run); more tokens: the AVX2 packed kernel (scratch-tiled, same bits).
template <class D, GemmFn kAvx2Packed, size_t kW, int64_t kValues, int kMaxT, int64_t kMaxTok = kMaxTokens>
void gemm_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
                 size_t ys) {
  if constexpr (kAvx2Packed != nullptr) {
    if (nt > kMaxTok) {
      kAvx2Packed(n, w, ws, nr, a, as, nt, y, ys);
      return;
    }
  }
  alignas(64) float acc[kMaxT * 8];
  const int64_t nb = n / kValues;
  const int32_t* asum = nullptr;
  if constexpr (WantsActSums<D>::value) {
    thread_local std::vector<int32_t> sums;
    sums.resize(size_t(nt * nb));
    for (int64_t t = 0; t < nt; ++t)
      for (int64_t b = 0; b < nb; ++b)
        sums[size_t(t * nb + b)] = act_sum32(reinterpret_cast<const ActQ8x32*>(a + size_t(t) * as)[b].qs);
    asum = sums.data();
  }
  // More than kMaxT tokens: in equal turns (8 tokens with kMaxT 6: 4 + 4, not 6 + 2, since each turn
  // unpacks the weights again and a short turn pays that for few tokens).
  const int64_t turns = (nt + kMaxT - 1) / kMaxT, per_turn = (nt + turns - 1) / turns;
  int64_t r0 = 0;  // rows before r0 are done
  if (per_turn >= Rows16From<D>::value && nr >= 16) {
    // Group i with group i + pairs, not with its neighbour: two streams 8 rows apart read from
    // memory at 2/3 the speed of one (TinyLlama Q4_0, 1 thread, 1 token: 37.5 ms a pass with
    // neighbours, 24.8 ms half the task's rows apart, 26.1 ms the unit-pair kernel). A lone last
    // group goes to the 8-row kernel below.
    const int64_t pairs = nr / 16;
    alignas(64) float acc16[kMaxT * 16];
    for (int64_t i = 0; i < pairs; ++i) {
      const int64_t ra = 8 * i, rb = 8 * (i + pairs);
      const PackedSrc ga{w + size_t(ra) * ws, kW}, gb{w + size_t(rb) * ws, kW};
      for (int64_t t0 = 0; t0 < nt; t0 += per_turn) {
        const int64_t n_turn = std::min<int64_t>(per_turn, nt - t0);
        const int32_t* turn_sums = asum ? asum + t0 * nb : nullptr;
        with_token_count<kMaxT>(n_turn, [&](auto T) {
          D::template run16<decltype(T)::value>(nb, ga, gb, a + size_t(t0) * as, as, turn_sums, acc16);
        });
        for (int64_t t = 0; t < n_turn; ++t) {
          float* yt = y + size_t(t0 + t) * ys;
          _mm256_storeu_ps(yt + ra, _mm256_load_ps(acc16 + 16 * t));
          _mm256_storeu_ps(yt + rb, _mm256_load_ps(acc16 + 16 * t + 8));
        }
      }
    }
    r0 = 16 * pairs;
  }
  for (; r0 < nr; r0 += 8) {
    const PackedSrc src{w + size_t(r0) * ws, kW};
    for (int64_t t0 = 0; t0 < nt; t0 += per_turn) {
      group_direct<D, kMaxT>(nb, src, a + size_t(t0) * as, as, asum ? asum + t0 * nb : nullptr,
                             std::min<int64_t>(per_turn, nt - t0), acc);
      for (int64_t t = 0; t < std::min<int64_t>(per_turn, nt - t0); ++t)
        for (int r = 0; r < 8; ++r) y[size_t(t0 + t) * ys + size_t(r0 + r)] = acc[8 * t + r];
    }
  }
}


#ifndef EDGELLAMA_PACKED_DIRECT_MAX
#define EDGELLAMA_PACKED_DIRECT_MAX 8
#endif
constexpr int kLegacyMaxT = EDGELLAMA_PACKED_DIRECT_MAX;
#ifndef EDGELLAMA_PACKED_DIRECT_MAX_K
#define EDGELLAMA_PACKED_DIRECT_MAX_K 8
#endif
constexpr int kKMaxT = EDGELLAMA_PACKED_DIRECT_MAX_K;

}  // namespace

void gemm_q4_0_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  gemm_packed<LegacyD<Q4_0L>, avx2_rows8::gemm_q4_0_packed, Q4_0L::kW, 32, kLegacyMaxT>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q4_1_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  gemm_packed<LegacyD<Q4_1L>, avx2_rows8::gemm_q4_1_packed, Q4_1L::kW, 32, kLegacyMaxT>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q5_0_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  gemm_packed<LegacyD<Q5_0L>, avx2_rows8::gemm_q5_0_packed, Q5_0L::kW, 32, kLegacyMaxT>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q5_1_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  gemm_packed<LegacyD<Q5_1L>, avx2_rows8::gemm_q5_1_packed, Q5_1L::kW, 32, kLegacyMaxT>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_iq4_nl_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                        float* y, size_t ys) {
  gemm_packed<Iq4NlD, nullptr, sizeof(iq::block_iq4_nl), 32, kLegacyMaxT>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_iq4_xs_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                        float* y, size_t ys) {
  // every token count in passes of kKMaxT (no other IQ4_XS kernel has this sequence)
  gemm_packed<Iq4XsD, nullptr, sizeof(iq::block_iq4_xs), QK_K, kKMaxT>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q8_0_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  gemm_packed<Q8D, avx2_rows8::gemm_q8_0_packed, 34, 32, kLegacyMaxT>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q4_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  gemm_packed<K45D<false>, avx2_rows8::gemm_q4_k_packed, sizeof(block_q4_K), QK_K, kKMaxT>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q5_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  gemm_packed<K45D<true>, avx2_rows8::gemm_q5_k_packed, sizeof(block_q5_K), QK_K, kKMaxT>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q6_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  // Q6_K: turns of at most 6 tokens (its accumulators fill the registers)
  gemm_packed<Q6D, avx2_rows8::gemm_q6_k_packed, sizeof(block_q6_K), QK_K, (kKMaxT < 6 ? kKMaxT : 6)>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q3_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  gemm_packed<Q23D<true>, avx2_rows8::gemm_q3_k_packed, sizeof(block_q3_K), QK_K, kKMaxT>(n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q2_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys) {
  gemm_packed<Q23D<false>, avx2_rows8::gemm_q2_k_packed, sizeof(block_q2_K), QK_K, kKMaxT>(n, w, ws, nr, a, as, nt, y, ys);
}

}  // namespace avx512_packed
}  // namespace edgellama
