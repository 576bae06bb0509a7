// AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c; only called after dispatch saw the
// CPU and OS support them. Everything is in an anonymous namespace (internal linkage) and the file
// includes no header with external-linkage inline functions that baseline code also uses, so the
// linker can never pick an AVX2-compiled copy of a function for the baseline code.
//
// Register blocking: every kernel computes an R-row x T-token tile at a time, unpacking each weight
// block once into registers and reusing it for T tokens (prefill), while each activation block
// loaded is reused for R rows.
#include <immintrin.h>

#include <cstring>

#include "../entry_points.h"
#include "../kquant_scales.h"
#include "../tile_walk.h"
#include "reduce_avx2.h"
#include "gemm_rows8.h"
#include "edgellama/kernels.h"

namespace edgellama {
namespace {

using avx2_util::h2f;
using avx2_util::hsum;
using avx2_util::hsum_i32;

// ---- activation quantization (bit-identical to the scalar reference) ----------------------------

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

inline float max_abs(const float* x, int n) {  // n multiple of 32
  __m256 m0 = _mm256_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
  for (int i = 0; i < n; i += 32) {
    m0 = _mm256_max_ps(m0, abs_ps(_mm256_loadu_ps(x + i)));
    m1 = _mm256_max_ps(m1, abs_ps(_mm256_loadu_ps(x + i + 8)));
    m2 = _mm256_max_ps(m2, abs_ps(_mm256_loadu_ps(x + i + 16)));
    m3 = _mm256_max_ps(m3, abs_ps(_mm256_loadu_ps(x + i + 24)));
  }
  __m256 m = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 32 floats -> 32 int8 (round to nearest even), returns the 32 bytes and their sum.
inline __m256i quant32(const float* x, __m256 id) {
  const int mode = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), id), mode));
  __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id), mode));
  __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id), mode));
  __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id), mode));
  __m256i p01 = _mm256_packs_epi32(i0, i1);  // lanes interleaved by 128-bit halves
  __m256i p23 = _mm256_packs_epi32(i2, i3);
  __m256i b = _mm256_packs_epi16(p01, p23);
  return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline int sum_i8(__m256i q) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i s16 = _mm256_add_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(q)),
                                 _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1)));
  return hsum_i32(_mm256_madd_epi16(s16, ones));
}

void quantize_q8x32(const float* x, void* out, int64_t n) {
  ActQ8x32* y = static_cast<ActQ8x32*>(out);
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    const float d = max_abs(x, 32) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256i q = quant32(x, _mm256_set1_ps(id));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), q);
    y[b].d = d;
    y[b].s = d * float(sum_i8(q));
  }
}

void quantize_q8k(const float* x, void* out, int64_t n) {
  block_q8_K* y = static_cast<block_q8_K*>(out);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    const float d = max_abs(x, QK_K) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    for (int c = 0; c < 8; ++c) {
      const __m256i q = quant32(x + 32 * c, vid);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs + 32 * c), q);
      // sums of the two 16-value halves
      __m256i lo = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(q)), ones);
      __m256i hi = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1)), ones);
      y[b].bsums[2 * c] = int16_t(hsum_i32(lo));
      y[b].bsums[2 * c + 1] = int16_t(hsum_i32(hi));
    }
    y[b].d = d;
  }
}

#ifndef EDGELLAMA_PREFETCH_ROWS
#define EDGELLAMA_PREFETCH_ROWS 4
#endif
constexpr int kPrefetchRows = EDGELLAMA_PREFETCH_ROWS;  // prefetch distance, in weight rows

#ifndef EDGELLAMA_TILE_R
#define EDGELLAMA_TILE_R 4
#endif
#ifndef EDGELLAMA_TILE_T
#define EDGELLAMA_TILE_T 3
#endif
constexpr int kRows = EDGELLAMA_TILE_R;    // tile rows (weights)
constexpr int kTokens = EDGELLAMA_TILE_T;  // tile tokens (activations)

// ---- K-quants --------------------------------------------------------------------------------------
// Per 32-value chunk c (0..7) of a super-block: 32 unsigned quants and the int16 madd scales (the
// scale of sub-block 2c in the low 128 bits, 2c+1 in the high 128 bits). The integer sums over a
// whole super-block are accumulated in int32 and converted to float once per super-block.

// prep(): d, dm, the int16 scales arranged so that chunk c's madd scale vector is
// shuffle_epi8(scv, kSel[c]) (low 128 bits: sub-block 2c, high: 2c+1), and mn16 (16 int16 to madd
// with the activation bsums). Built with SIMD/word operations: scalar stores followed by a vector
// load would stall on store forwarding.

inline __m256i even_odd_i16(__m128i bytes16, bool is_signed) {  // bytes k -> [evens | odds] as int16
  const __m128i eo = _mm_shuffle_epi8(bytes16, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
  return is_signed ? _mm256_cvtepi8_epi16(eo) : _mm256_cvtepu8_epi16(eo);
}

struct Q2_KW {
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
  static constexpr bool kCombined = false;
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
  static constexpr bool kCombined = true;  // dmin = d: isum - msum in one exact int (tile_k)
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

// Lane r (r < R <= 4) = the sum of the 8 int32 lanes of v[r]; lanes >= R are 0.
template <int R>
inline __m128i row_sums_i32(const __m256i* v) {
  const __m256i z = _mm256_setzero_si256();
  const __m256i h01 = _mm256_hadd_epi32(v[0], R > 1 ? v[1] : z);
  const __m256i h23 = R > 2 ? _mm256_hadd_epi32(v[2], R > 3 ? v[3] : z) : z;
  const __m256i h = _mm256_hadd_epi32(h01, h23);  // per 128-bit half: rows 0..3
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// kSeq: per (row, token) the integer super-block sums are reduced exactly (R rows at once, one row
// per lane) and folded into one accumulator per output with the sequence of the rows8 kernels
// (gemm_rows8_avx2.cpp):
//   acc = fma(float(isum), d * da, acc); acc = fma(-float(msum), dmin * da, acc)
// or, for formats whose offset shares the scale (K::kCombined, Q6_K: value = q - 32), one exact
// integer sum and one fma:  acc = fma(float(isum - msum), d * da, acc)
// so a token's result does not depend on which of the two kernels computed it.
template <class K, int R, int T, bool kSeq = false>
void tile_k(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  static_assert(!kSeq || R <= 4, "kSeq keeps R rows in the lanes of one __m128");
  __m256 acc[R][T];
  __m128 sacc[T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int t = 0; t < T; ++t) sacc[t] = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk[R];
    float d[R], dm[R];
    __m256i scv[R], mn[R];
    for (int r = 0; r < R; ++r) {
      blk[r] = w + size_t(r) * ws + size_t(b) * K::kBytes;
      for (size_t off = 0; off < K::kBytes; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(blk[r] + kPrefetchRows * ws + off), _MM_HINT_T0);
      K::prep(blk[r], &d[r], &dm[r], &scv[r], &mn[r]);
    }
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m256i iacc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) iacc[r][t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      const __m256i sel = _mm256_set1_epi16(int16_t(((2 * c + 1) << 8) | (2 * c)));
      __m256i q[R], sc[R];
      for (int r = 0; r < R; ++r) {
        q[r] = K::q(blk[r], c);
        sc[r] = _mm256_shuffle_epi8(scv[r], sel);
      }
      for (int t = 0; t < T; ++t) {
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab[t]->qs + 32 * c));
        for (int r = 0; r < R; ++r)
          iacc[r][t] = _mm256_add_epi32(iacc[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[r], av), sc[r]));
      }
    }
    if constexpr (kSeq) {
      const __m128 dv = _mm_setr_ps(d[0], R > 1 ? d[1] : 0.0f, R > 2 ? d[2] : 0.0f, R > 3 ? d[3] : 0.0f);
      const __m128 dmv = _mm_setr_ps(dm[0], R > 1 ? dm[1] : 0.0f, R > 2 ? dm[2] : 0.0f, R > 3 ? dm[3] : 0.0f);
      for (int t = 0; t < T; ++t) {
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab[t]->bsums));
        const __m128 da = _mm_set1_ps(ab[t]->d);
        __m256i ms[R];
        for (int r = 0; r < R; ++r) ms[r] = _mm256_madd_epi16(mn[r], bs);
        if constexpr (K::kCombined) {
          __m256i v[R];
          for (int r = 0; r < R; ++r) v[r] = _mm256_sub_epi32(iacc[r][t], ms[r]);
          sacc[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(row_sums_i32<R>(v)), _mm_mul_ps(dv, da), sacc[t]);
        } else {
          __m256i v[R];
          for (int r = 0; r < R; ++r) v[r] = iacc[r][t];
          sacc[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(row_sums_i32<R>(v)), _mm_mul_ps(dv, da), sacc[t]);
          sacc[t] = _mm_fnmadd_ps(_mm_cvtepi32_ps(row_sums_i32<R>(ms)), _mm_mul_ps(dmv, da), sacc[t]);
        }
      }
      continue;
    }
    for (int t = 0; t < T; ++t) {
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab[t]->bsums));
      const float da = ab[t]->d;
      for (int r = 0; r < R; ++r) {
        const __m256 m = _mm256_cvtepi32_ps(_mm256_madd_epi16(mn[r], bs));
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[r][t]), _mm256_set1_ps(d[r] * da), acc[r][t]);
        acc[r][t] = _mm256_fnmadd_ps(m, _mm256_set1_ps(dm[r] * da), acc[r][t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) {
    alignas(16) float s4[4];
    _mm_store_ps(s4, sacc[t]);
    for (int r = 0; r < R; ++r) y[size_t(t) * ys + size_t(r)] = kSeq ? s4[r] : hsum(acc[r][t]);
  }
}

template <class K, bool kSeq = false>
struct KTile {
  template <int R, int T>
  struct Of {
    static void run(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile_k<K, R, T, kSeq>(nb, w, ws, a, as, y, ys);
    }
  };
};

template <class K>
void gemm_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
            size_t ys) {
  walk_tiles<KTile<K>::template Of, kRows, kTokens>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}

// Q4_K / Q5_K / Q6_K: rows8 kernel (gemm_rows8_avx2.cpp) from 4 tokens up; below, the row tiles above with
// the same per-output arithmetic (decode: no transposition work to amortize).
template <class K>
void gemm_k_seq(GemmFn rows8, int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                int64_t nt, float* y, size_t ys) {
  if (nt >= 4) {
    rows8(n, w, ws, nr, a, as, nt, y, ys);
    return;
  }
  walk_tiles<KTile<K, true>::template Of, kRows, kTokens>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q4_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_k_seq<Q4_KW>(avx2_rows8::gemm_q4_k, n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q5_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_k_seq<Q5_KW>(avx2_rows8::gemm_q5_k, n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q6_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_k_seq<Q6_KW>(avx2_rows8::gemm_q6_k, n, w, ws, nr, a, as, nt, y, ys);
}

// ---- float weights ----------------------------------------------------------------------------------

struct F32W {
  static __m256 load8(const uint8_t* p, int64_t i) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p) + i); }
  static float load1(const uint8_t* p, int64_t i) {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
};
struct F16W {
  static __m256 load8(const uint8_t* p, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i)));
  }
  static float load1(const uint8_t* p, int64_t i) { return h2f(p + 2 * i); }
};
struct BF16W {
  static __m256 load8(const uint8_t* p, int64_t i) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
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
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = F::load8(w + size_t(r) * ws, i);
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_loadu_ps(reinterpret_cast<const float*>(a + size_t(t) * as) + i);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    const float* x = reinterpret_cast<const float*>(a + size_t(t) * as);
    for (int r = 0; r < R; ++r) {
      float s = hsum(acc[r][t]);
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

template <class F>
void gemm_float(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                float* y, size_t ys) {
  walk_tiles<FloatTile<F>::template Of, kRows, kTokens>(n, w, ws, nr, a, as, nt, y, ys);
}

constexpr KernelSet make_avx2() {
  KernelSet k{};
  k.name = "avx2";
  k.quantize_q8x32 = quantize_q8x32;
  k.quantize_q8k = quantize_q8k;
  k.gemm[int(GGMLType::F32)] = gemm_float<F32W>;
  k.gemm[int(GGMLType::F16)] = gemm_float<F16W>;
  k.gemm[int(GGMLType::BF16)] = gemm_float<BF16W>;
  // Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0: 8 rows per vector (gemm_rows8_avx2.cpp), for prefill and decode
  // alike so that a token's result never depends on how many tokens share the call.
  k.gemm[int(GGMLType::Q4_0)] = avx2_rows8::gemm_q4_0;
  k.gemm[int(GGMLType::Q4_1)] = avx2_rows8::gemm_q4_1;
  k.gemm[int(GGMLType::Q5_0)] = avx2_rows8::gemm_q5_0;
  k.gemm[int(GGMLType::Q5_1)] = avx2_rows8::gemm_q5_1;
  k.gemm[int(GGMLType::Q8_0)] = avx2_rows8::gemm_q8_0;
  k.gemm[int(GGMLType::Q2_K)] = gemm_k<Q2_KW>;
  k.gemm[int(GGMLType::Q3_K)] = gemm_k<Q3_KW>;
  k.gemm[int(GGMLType::Q4_K)] = gemm_q4_k;
  k.gemm[int(GGMLType::Q5_K)] = gemm_q5_k;
  k.gemm[int(GGMLType::Q6_K)] = gemm_q6_k;
  k.attn_tile = avx2_attention_tile;
  k.silu_mul = avx2_silu_mul;
  return k;
}

}  // namespace

const KernelSet kAvx2Kernels = make_avx2();

}  // namespace edgellama
