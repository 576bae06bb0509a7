// AVX-512 (F/BW/VL/DQ/VNNI) kernels and the table of what they override. Compiled with the AVX-512
// flags of this directory; everything here is only called after dispatch saw the CPU and the OS
// support AVX-512 with ZMM state. Same linkage rules as cpp/kernels/avx2/kernels_avx2.cpp: internal
// linkage, no header with external-linkage inline functions that baseline code also uses.
//
// kAvx512Overrides is data only: the types with an AVX-512 kernel. dispatch.cpp builds the avx512
// KernelSet from a copy of kAvx2Kernels with these entries replaced, so every type the AVX2 set
// handles is still handled (by its AVX2 kernel) and the activation quantizers, attention and SwiGLU
// stay the AVX2 ones (same bytes / bits as scalar where the tests require it).
// GCC 12's AVX-512 intrinsics start from _mm*_undefined_*() and trip -W(maybe-)uninitialized
// (GCC bug 105593, fixed in GCC 13): a false positive, silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "../entry_points.h"
#include "../kquant_scales.h"
#include "../tile_walk.h"
#include "edgellama/kernels.h"
#include "edgellama/quant_blocks.h"
#include "../avx2/gemm_rows8.h"
#include "gemm_rows16.h"

namespace edgellama {
namespace {

// ---- float weights (F32 / F16 / BF16 against float activations) ----------------------------------
// Per (row, token): 16-lane FMA accumulation over the multiples of 16, one fixed lane reduction, then
// the scalar tail; the tile shape never changes an output's sequence.

struct F32W {
  static __m512 load16(const uint8_t* p, int64_t i) { return _mm512_loadu_ps(reinterpret_cast<const float*>(p) + i); }
  static float load1(const uint8_t* p, int64_t i) {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
};
struct F16W {
  static __m512 load16(const uint8_t* p, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * i)));
  }
  static float load1(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return _cvtsh_ss(h);
  }
};
struct BF16W {
  static __m512 load16(const uint8_t* p, int64_t i) {
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * i)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
  static float load1(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

template <class F, int R, int T>
void tile_float(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = F::load16(w + size_t(r) * ws, i);
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_loadu_ps(reinterpret_cast<const float*>(a + size_t(t) * as) + i);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    const float* x = reinterpret_cast<const float*>(a + size_t(t) * as);
    for (int r = 0; r < R; ++r) {
      float s = _mm512_reduce_add_ps(acc[r][t]);
      for (int64_t j = i; j < n; ++j) s += F::load1(w + size_t(r) * ws, j) * x[j];
      y[size_t(t) * ys + size_t(r)] = s;
    }
  }
}

template <class F>
struct FloatTile {
  template <int R, int T>
  struct Of {
    static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile_float<F, R, T>(n, w, ws, a, as, y, ys);
    }
  };
};

constexpr int kFloatRows = 4, kFloatTokens = 4;

template <class F>
void gemm_float(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                float* y, size_t ys) {
  walk_tiles<FloatTile<F>::template Of, kFloatRows, kFloatTokens>(n, w, ws, nr, a, as, nt, y, ys);
}

// Prefill (>= 4 tokens) on the 16-row VNNI kernel; decode (1-3 tokens) on the AVX2 set's kernel of
// the type, which follows the same per-output sequence (gemm_rows8_ref), so an output's bits do not
// depend on the token count (tests/test_kernels_avx512.py checks it for every type). On Zen 4 the
// 512-bit datapath is two 256-bit halves: the 16-row transposition per block gives nothing back at
// 1 token (measured 0.85-1.0x of AVX2, noisy) while the repacked prefill tiles gain 1.5-2x.
template <GemmFn kPrefill, GGMLType kType>
void gemm_prefill16_decode_avx2(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                                int64_t nt, float* y, size_t ys) {
  if (nt >= 4)
    kPrefill(n, w, ws, nr, a, as, nt, y, ys);
  else
    kAvx2Kernels.gemm[int(kType)](n, w, ws, nr, a, as, nt, y, ys);
}

// ---- Q6_K decode: row tiles, no transposition ---------------------------------------------------
// Fewer than 4 tokens: the repack of the 16-row kernel costs more than it saves. Each row's
// super-block is unpacked two 32-value chunks per vector (64 quants: ql's 64 bytes give the low
// nibbles of chunks 4h, 4h+1 or the high nibbles of chunks 4h+2, 4h+3; qh's 32 bytes, broadcast to
// both halves, are shifted per half by a variable shift). maddubs (quants <= 63, pair sums <= 16002:
// no saturation) and madd with the sub-block scales give exact int32 partial sums. Per (row, token)
// the super-block's isum / msum are reduced exactly and folded with the sequence of the 16-row
// kernel (and of gemm_rows8_ref's Q6_K): acc = fma(float(isum - msum), d*da, acc).

// The exact sums of up to 4 rows' int32 vectors as lanes 0..3 (one hadd tree for 4 rows instead of
// 4 separate reductions), and the per-super-block float step of 4 rows at once: lane r computes
// acc = fma(float(isum), d*da, acc); acc = fma(-float(msum), dmin*da, acc), the same IEEE operations
// as the scalar sequence of gemm_rows8_ref. Rows beyond R are zero vectors and ignored.
inline __m128i sums4(__m256i y0, __m256i y1, __m256i y2, __m256i y3) {
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(y0, y1), _mm256_hadd_epi32(y2, y3));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}
inline __m256i fold(__m512i v) { return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)); }

// kCombined (Q3_K, Q6_K: dmin = d, the AVX2 kernels' sequence): acc = fma(float(isum - msum), d*da, acc).
template <int R, bool kCombined = false>
inline __m128 finish4(const __m512i* iacc, size_t stride, const __m256i* mn16, __m128 d, __m128 dm,
                      const block_q8_K* ab, __m128 acc) {
  const __m256i z = _mm256_setzero_si256();
  const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab->bsums));
  const __m128i is = sums4(fold(iacc[0]), R > 1 ? fold(iacc[stride]) : z, R > 2 ? fold(iacc[2 * stride]) : z,
                           R > 3 ? fold(iacc[3 * stride]) : z);
  const __m128i ms = sums4(_mm256_madd_epi16(mn16[0], bs), R > 1 ? _mm256_madd_epi16(mn16[1], bs) : z,
                           R > 2 ? _mm256_madd_epi16(mn16[2], bs) : z, R > 3 ? _mm256_madd_epi16(mn16[3], bs) : z);
  const __m128 da = _mm_set1_ps(ab->d);
  if constexpr (kCombined) return _mm_fmadd_ps(_mm_cvtepi32_ps(_mm_sub_epi32(is, ms)), _mm_mul_ps(d, da), acc);
  acc = _mm_fmadd_ps(_mm_cvtepi32_ps(is), _mm_mul_ps(d, da), acc);
  return _mm_fnmadd_ps(_mm_cvtepi32_ps(ms), _mm_mul_ps(dm, da), acc);
}

template <int R>
inline __m128 lanes4(const float* v) {
  return _mm_setr_ps(v[0], R > 1 ? v[1] : 0.0f, R > 2 ? v[2] : 0.0f, R > 3 ? v[3] : 0.0f);
}

template <int R, int T>
inline void store4(const __m128* acc, float* y, size_t ys) {
  for (int t = 0; t < T; ++t) {
    alignas(16) float v[4];
    _mm_store_ps(v, acc[t]);
    for (int r = 0; r < R; ++r) y[size_t(t) * ys + size_t(r)] = v[r];
  }
}

template <int R, int T>
void tile_q6k_rows(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  static_assert(R <= 4, "finish4 packs 4 rows");
  constexpr int kPrefetchRows = 4;
  __m128 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
  // per 16-bit element: the low 256 bits hold chunk 4h (+2), the high 256 bits chunk 4h+1 (+3)
  const __m512i shift_a = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
  const __m512i shift_b = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
  // element e of a pair's scale vector: sub-block 4P + e/8 (P = 0..3, 64 values per pair)
  __m512i idx[4];
  for (int P = 0; P < 4; ++P) {
    alignas(64) int16_t v[32];
    for (int e = 0; e < 32; ++e) v[e] = int16_t(4 * P + e / 8);
    idx[P] = _mm512_load_si512(v);
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m512i iacc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) iacc[r][t] = _mm512_setzero_si512();
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m256i mn16[R];
    float d[R];
    for (int r = 0; r < R; ++r) {
      const block_q6_K* q = reinterpret_cast<const block_q6_K*>(w + size_t(r) * ws) + b;
      const char* next = reinterpret_cast<const char*>(q) + kPrefetchRows * ws;
      for (int off = 0; off < int(sizeof(block_q6_K)); off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
      const __m512i sc16 = _mm512_cvtepi8_epi16(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q->scales))));
      for (int h = 0; h < 2; ++h) {
        const __m512i L = _mm512_loadu_si512(q->ql + 64 * h);
        const __m512i Q = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q->qh + 32 * h)));
        const __m512i qa = _mm512_or_si512(_mm512_and_si512(L, m4),
                                           _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(Q, shift_a), m2), 4));
        const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                           _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(Q, shift_b), m2), 4));
        const __m512i sca = _mm512_permutexvar_epi16(idx[2 * h], sc16);
        const __m512i scb = _mm512_permutexvar_epi16(idx[2 * h + 1], sc16);
        for (int t = 0; t < T; ++t) {
          const __m512i aa = _mm512_loadu_si512(ab[t]->qs + 128 * h);
          const __m512i av = _mm512_loadu_si512(ab[t]->qs + 128 * h + 64);
          iacc[r][t] = _mm512_add_epi32(iacc[r][t], _mm512_madd_epi16(_mm512_maddubs_epi16(qa, aa), sca));
          iacc[r][t] = _mm512_add_epi32(iacc[r][t], _mm512_madd_epi16(_mm512_maddubs_epi16(qb, av), scb));
        }
      }
      mn16[r] = _mm256_slli_epi16(_mm512_castsi512_si256(sc16), 5);  // value = qu - 32
      d[r] = _cvtsh_ss(q->d);
    }
    const __m128 d4 = lanes4<R>(d);
    for (int t = 0; t < T; ++t) acc[t] = finish4<R, true>(&iacc[0][t], T, mn16, d4, d4, ab[t], acc[t]);
  }
  store4<R, T>(acc, y, ys);
}

template <int R, int T>
struct Q6KRowTile {
  static void run(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
    tile_q6k_rows<R, T>(nb, w, ws, a, as, y, ys);
  }
};

// Q6_K: the 16-row VNNI kernel from 4 tokens up, the row tiles above below (same per-output sequence).
void gemm_q6_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys) {
  if (nt >= 4)
    avx512_rows16::gemm_q6_k(n, w, ws, nr, a, as, nt, y, ys);
  else
    walk_tiles<Q6KRowTile, 4, 3>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}

// ---- Q4_K / Q5_K decode: row tiles, no transposition ---------------------------------------------------
// Per row and pair of chunks (2i, 2i+1) = values 64i..64i+63: qs[32i..32i+31] broadcast to both
// halves and shifted per half (low nibbles: chunk 2i, high: 2i+1), qh's 32 bytes likewise (bits 2i,
// 2i+1); maddubs (quants <= 31) and madd with the chunk scales give exact int32 sums. Per (row, token)
// isum / msum are reduced exactly and folded with the sequence of the 16-row kernel (gemm_rows8_ref's
// Q4_K/Q5_K): acc = fma(float(isum), d*da, acc); acc = fma(-float(msum), dmin*da, acc).
template <bool kQ5, int R, int T>
void tile_q45k_rows(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  static_assert(R <= 4, "finish4 packs 4 rows");
  constexpr int kPrefetchRows = 4;
  __m128 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
  const __m512i nib_shift = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(4), 1);
  __m512i qh_shift[4], sc_idx[4];
  for (int i = 0; i < 4; ++i) {
    qh_shift[i] = _mm512_inserti64x4(_mm512_set1_epi16(int16_t(2 * i)), _mm256_set1_epi16(int16_t(2 * i + 1)), 1);
    sc_idx[i] = _mm512_inserti64x4(_mm512_set1_epi16(int16_t(2 * i)), _mm256_set1_epi16(int16_t(2 * i + 1)), 1);
  }
  for (int64_t b = 0; b < nb; ++b) {
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m512i iacc[R][T];
    __m256i mn16[R];
    float d[R], dm[R];
    for (int r = 0; r < R; ++r) {
      using Block = typename std::conditional<kQ5, block_q5_K, block_q4_K>::type;
      const Block* q = reinterpret_cast<const Block*>(w + size_t(r) * ws) + b;
      const char* next = reinterpret_cast<const char*>(q) + kPrefetchRows * ws;
      for (int off = 0; off < int(sizeof(Block)); off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
      uint32_t u[3];
      std::memcpy(u, q->scales, 12);
      const uint32_t m6 = 0x3f3f3f3f, k4 = 0x0f0f0f0f, k2 = 0x03030303;
      const uint32_t s0 = u[0] & m6, s1 = (u[2] & k4) | (((u[0] >> 6) & k2) << 4);
      const uint32_t n0 = u[1] & m6, n1 = ((u[2] >> 4) & k4) | (((u[1] >> 6) & k2) << 4);
      const __m512i sc16 = _mm512_cvtepu8_epi16(_mm256_castsi128_si256(_mm_setr_epi32(int(s0), int(s1), 0, 0)));
      const __m128i mn = _mm_setr_epi32(int(n0), int(n1), 0, 0);
      mn16[r] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));  // element k = min of chunk k/2
      __m512i QH = _mm512_setzero_si512();
      if constexpr (kQ5) QH = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q->qh)));
      for (int t = 0; t < T; ++t) iacc[r][t] = _mm512_setzero_si512();
      for (int i = 0; i < 4; ++i) {
        const __m512i L = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q->qs + 32 * i)));
        __m512i qv = _mm512_and_si512(_mm512_srlv_epi16(L, nib_shift), m4);
        if constexpr (kQ5)
          qv = _mm512_or_si512(qv, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(QH, qh_shift[i]), one), 4));
        const __m512i sc = _mm512_permutexvar_epi16(sc_idx[i], sc16);
        for (int t = 0; t < T; ++t)
          iacc[r][t] = _mm512_add_epi32(iacc[r][t], _mm512_madd_epi16(_mm512_maddubs_epi16(qv, _mm512_loadu_si512(ab[t]->qs + 64 * i)), sc));
      }
      d[r] = _cvtsh_ss(q->d);
      dm[r] = _cvtsh_ss(q->dmin);
    }
    const __m128 d4 = lanes4<R>(d), dm4 = lanes4<R>(dm);
    for (int t = 0; t < T; ++t) acc[t] = finish4<R>(&iacc[0][t], T, mn16, d4, dm4, ab[t], acc[t]);
  }
  store4<R, T>(acc, y, ys);
}

template <bool kQ5>
struct Q45KRowTile {
  template <int R, int T>
  struct Of {
    static void run(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile_q45k_rows<kQ5, R, T>(nb, w, ws, a, as, y, ys);
    }
  };
};

// Q4_K / Q5_K: the 16-row VNNI kernel from 4 tokens up, the row tiles above below (same sequence).
template <bool kQ5>
void gemm_q45_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
                size_t ys) {
  if (nt >= 4)
    (kQ5 ? avx512_rows16::gemm_q5_k_prefill : avx512_rows16::gemm_q4_k_prefill)(n, w, ws, nr, a, as, nt, y, ys);
  else
    walk_tiles<Q45KRowTile<kQ5>::template Of, 4, 3>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}

// ---- Q2_K / Q3_K decode: row tiles, no transposition -------------------------------------------
// Per row and pair of chunks (c, c+1), c = 4j + {0, 2} (values 32c..32c+63): qs[32j..32j+31] broadcast
// to both halves, shifted per half by 2*(c%4) / 2*(c%4)+2; Q3_K's hmask likewise by c / c+1. Sub-block
// scales (16 values each) and offsets from kquant_scales.h; the per-super-block sequence of the
// 16-row kernel (gemm_rows8_ref): Q2_K acc = fma(float(isum), d*da, acc); acc = fma(-float(msum), dmin*da, acc);
// Q3_K (dmin = d) acc = fma(float(isum - msum), d*da, acc), as the AVX2 kernels.
template <bool kQ3, int R, int T>
void tile_q23k_rows(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  using Block = typename std::conditional<kQ3, block_q3_K, block_q2_K>::type;
  static_assert(R <= 4, "finish4 packs 4 rows");
  constexpr int kPrefetchRows = 4;
  __m128 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps();
  const __m512i m2 = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
  __m512i q_shift[2], h_shift[4], sc_idx[4];
  for (int s2 = 0; s2 < 2; ++s2)
    q_shift[s2] = _mm512_inserti64x4(_mm512_set1_epi16(int16_t(4 * s2)), _mm256_set1_epi16(int16_t(4 * s2 + 2)), 1);
  for (int P = 0; P < 4; ++P) {  // pair P = chunks 2P, 2P+1
    h_shift[P] = _mm512_inserti64x4(_mm512_set1_epi16(int16_t(2 * P)), _mm256_set1_epi16(int16_t(2 * P + 1)), 1);
    alignas(64) int16_t v[32];
    for (int e = 0; e < 32; ++e) v[e] = int16_t(4 * P + e / 8);  // element e: values 2e, 2e+1 -> sub-block 4P + e/8
    sc_idx[P] = _mm512_load_si512(v);
  }
  for (int64_t b = 0; b < nb; ++b) {
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m512i iacc[R][T];
    __m256i mn16[R];
    float d[R], dm[R];
    for (int r = 0; r < R; ++r) {
      const Block* q = reinterpret_cast<const Block*>(w + size_t(r) * ws) + b;
      const char* next = reinterpret_cast<const char*>(q) + kPrefetchRows * ws;
      for (int off = 0; off < int(sizeof(Block)); off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
      // sub-block scales / offsets as 16 int16 (element k = sub-block k), built with vector and word
      // operations (kq::scales_* one value at a time then a vector load cost 5x the whole tile)
      __m256i sc16y;
      if constexpr (kQ3) {
        uint32_t u[3];
        std::memcpy(u, q->scales, 12);
        const uint32_t k4 = 0x0f0f0f0f, k2 = 0x03030303;
        const uint32_t w0 = (u[0] & k4) | ((u[2] & k2) << 4), w1 = (u[1] & k4) | (((u[2] >> 2) & k2) << 4);
        const uint32_t w2 = ((u[0] >> 4) & k4) | (((u[2] >> 4) & k2) << 4);
        const uint32_t w3 = ((u[1] >> 4) & k4) | (((u[2] >> 6) & k2) << 4);
        const __m128i sc8 = _mm_sub_epi8(_mm_setr_epi32(int(w0), int(w1), int(w2), int(w3)), _mm_set1_epi8(32));
        sc16y = _mm256_cvtepi8_epi16(sc8);
        mn16[r] = _mm256_slli_epi16(sc16y, 2);  // value = qu - 4
        dm[r] = _cvtsh_ss(q->d);
      } else {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q->scales));
        sc16y = _mm256_cvtepu8_epi16(_mm_and_si128(v, _mm_set1_epi8(0x0F)));
        mn16[r] = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F)));
        dm[r] = _cvtsh_ss(q->dmin);
      }
      const __m512i sc16 = _mm512_castsi256_si512(sc16y);
      __m512i H = _mm512_setzero_si512();
      if constexpr (kQ3) H = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q->hmask)));
      for (int t = 0; t < T; ++t) iacc[r][t] = _mm512_setzero_si512();
      for (int P = 0; P < 4; ++P) {
        const int j = P / 2, s2 = P % 2;  // chunks 2P, 2P+1 = 4j + 2*s2 + {0, 1}
        const __m512i L = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q->qs + 32 * j)));
        __m512i qv = _mm512_and_si512(_mm512_srlv_epi16(L, q_shift[s2]), m2);
        if constexpr (kQ3) qv = _mm512_or_si512(qv, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(H, h_shift[P]), one), 2));
        const __m512i sc = _mm512_permutexvar_epi16(sc_idx[P], sc16);
        for (int t = 0; t < T; ++t)
          iacc[r][t] = _mm512_add_epi32(iacc[r][t], _mm512_madd_epi16(_mm512_maddubs_epi16(qv, _mm512_loadu_si512(ab[t]->qs + 64 * P)), sc));
      }
      d[r] = _cvtsh_ss(q->d);
    }
    const __m128 d4 = lanes4<R>(d), dm4 = lanes4<R>(dm);
    for (int t = 0; t < T; ++t) acc[t] = finish4<R, kQ3>(&iacc[0][t], T, mn16, d4, dm4, ab[t], acc[t]);
  }
  store4<R, T>(acc, y, ys);
}

template <bool kQ3>
struct Q23KRowTile {
  template <int R, int T>
  struct Of {
    static void run(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile_q23k_rows<kQ3, R, T>(nb, w, ws, a, as, y, ys);
    }
  };
};

// Q2_K / Q3_K: the 16-row VNNI kernel from 4 tokens up, the row tiles above below (same sequence).
template <bool kQ3>
void gemm_q23_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
                size_t ys) {
  if (nt >= 4)
    (kQ3 ? avx512_rows16::gemm_q3_k_prefill : avx512_rows16::gemm_q2_k_prefill)(n, w, ws, nr, a, as, nt, y, ys);
  else
    walk_tiles<Q23KRowTile<kQ3>::template Of, 4, 3>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}

constexpr KernelSet make_overrides() {
  KernelSet k{};
  k.name = "avx512";
  k.gemm[int(GGMLType::F32)] = gemm_float<F32W>;
  k.gemm[int(GGMLType::F16)] = gemm_float<F16W>;
  k.gemm[int(GGMLType::BF16)] = gemm_float<BF16W>;
  k.gemm[int(GGMLType::Q4_0)] = gemm_prefill16_decode_avx2<avx512_rows16::gemm_q4_0, GGMLType::Q4_0>;
  k.gemm[int(GGMLType::Q4_1)] = gemm_prefill16_decode_avx2<avx512_rows16::gemm_q4_1, GGMLType::Q4_1>;
  k.gemm[int(GGMLType::Q5_0)] = avx512_rows16::gemm_q5_0;
  k.gemm[int(GGMLType::Q5_1)] = avx512_rows16::gemm_q5_1;
  // Q5_0 / Q5_1: the 16-row kernel at every token count (its decode path transposes in registers):
  // the AVX2 set of this branch computes them with another sequence (row tiles, vector accumulators).
  k.gemm[int(GGMLType::Q8_0)] = gemm_prefill16_decode_avx2<avx512_rows16::gemm_q8_0, GGMLType::Q8_0>;
  k.gemm[int(GGMLType::Q4_K)] = gemm_q45_k<false>;
  k.gemm[int(GGMLType::Q2_K)] = gemm_q23_k<false>;
  k.gemm[int(GGMLType::Q3_K)] = gemm_q23_k<true>;
  k.gemm[int(GGMLType::Q5_K)] = gemm_q45_k<true>;
  k.gemm[int(GGMLType::Q6_K)] = gemm_q6_k;
  k.gemm[int(GGMLType::IQ4_NL)] = avx512_gemm_iq4_nl;  // iquant_avx512.cpp
  k.gemm[int(GGMLType::IQ4_XS)] = avx512_gemm_iq4_xs;  // iquant_avx512.cpp
  // Packed weights (tests/test_packed_weights.py: same bits as the kernels above): VNNI passes of up
  // to 8 tokens over the packed groups (packed_decode_avx512.cpp) for up to kPackedMaxTokens tokens
  // (decode, server batches, speculative verification); beyond, matmul unpacks two groups at a time
  // for the 16-row VNNI kernels above.
  k.gemm_packed[int(GGMLType::Q4_0)] = avx512_packed::gemm_q4_0_packed;
  k.gemm_packed[int(GGMLType::Q4_1)] = avx512_packed::gemm_q4_1_packed;
  k.gemm_packed[int(GGMLType::Q5_0)] = avx512_packed::gemm_q5_0_packed;
  k.gemm_packed[int(GGMLType::Q5_1)] = avx512_packed::gemm_q5_1_packed;
  k.gemm_packed[int(GGMLType::Q8_0)] = avx512_packed::gemm_q8_0_packed;
  k.gemm_packed[int(GGMLType::Q2_K)] = avx512_packed::gemm_q2_k_packed;
  k.gemm_packed[int(GGMLType::Q3_K)] = avx512_packed::gemm_q3_k_packed;
  k.gemm_packed[int(GGMLType::Q4_K)] = avx512_packed::gemm_q4_k_packed;
  k.gemm_packed[int(GGMLType::Q5_K)] = avx512_packed::gemm_q5_k_packed;
  k.gemm_packed[int(GGMLType::Q6_K)] = avx512_packed::gemm_q6_k_packed;
  k.gemm_packed[int(GGMLType::IQ4_NL)] = avx512_packed::gemm_iq4_nl_packed;  // avx512 only: see packed_layout.cpp
  k.gemm_packed[int(GGMLType::IQ4_XS)] = avx512_packed::gemm_iq4_xs_packed;
  k.gemm_packed_many[int(GGMLType::Q4_0)] = avx512_rows16::gemm_q4_0_packed_prefill;
  k.gemm_packed_many[int(GGMLType::Q4_1)] = avx512_rows16::gemm_q4_1_packed_prefill;
  k.gemm_packed_many[int(GGMLType::Q5_0)] = avx512_rows16::gemm_q5_0_packed_prefill;
  k.gemm_packed_many[int(GGMLType::Q5_1)] = avx512_rows16::gemm_q5_1_packed_prefill;
  k.gemm_packed_many[int(GGMLType::Q8_0)] = avx512_rows16::gemm_q8_0_packed_prefill;
  k.gemm_packed_many[int(GGMLType::IQ4_NL)] = avx512_rows16::gemm_iq4_nl_packed_prefill;
  k.gemm_packed_many[int(GGMLType::Q2_K)] = avx512_rows16::gemm_q2_k_packed_prefill;
  k.gemm_packed_many[int(GGMLType::Q3_K)] = avx512_rows16::gemm_q3_k_packed_prefill;
  k.gemm_packed_many[int(GGMLType::Q4_K)] = avx512_rows16::gemm_q4_k_packed_prefill;
  k.gemm_packed_many[int(GGMLType::Q5_K)] = avx512_rows16::gemm_q5_k_packed_prefill;
  k.gemm_packed_many[int(GGMLType::Q6_K)] = avx512_rows16::gemm_q6_k_packed_prefill;
  k.gemm_packed_many[int(GGMLType::IQ4_XS)] = avx512_rows16::gemm_iq4_xs_packed_prefill;
  k.packed_max_tokens = avx512_packed::kPackedMaxTokens;
  k.attn_tile = avx512_attention_tile;  // attention_avx512.cpp
  return k;
}

}  // namespace

const KernelSet kAvx512Overrides = make_overrides();

}  // namespace edgellama
