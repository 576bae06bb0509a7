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
#include "kquant_avx2.h"
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

// ---- K-quants: unpacking in kquant_avx2.h (shared with gemm_rows8_avx2.cpp) ------------------------

// Lane r (r < R <= 4) = the sum of the 8 int32 lanes of v[r]; lanes >= R are 0.
template <int R>
inline __m128i row_sums_i32(const __m256i* v) {
  const __m256i z = _mm256_setzero_si256();
  const __m256i h01 = _mm256_hadd_epi32(v[0], R > 1 ? v[1] : z);
  const __m256i h23 = R > 2 ? _mm256_hadd_epi32(v[2], R > 3 ? v[3] : z) : z;
  const __m256i h = _mm256_hadd_epi32(h01, h23);  // per 128-bit half: rows 0..3
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// K-quant row tiles (fewer than 4 tokens): per (row, token) the integer super-block sums are
// reduced exactly (R rows at once, one row per lane) and folded into one accumulator per output with
// the sequence of the rows8 kernels (gemm_rows8_avx2.cpp):
//   acc = fma(float(isum), d * da, acc); acc = fma(-float(msum), dmin * da, acc)
// or, for formats whose offset shares the scale (K::kCombined: Q3_K, Q6_K), one exact integer sum
// and one fma:  acc = fma(float(isum - msum), d * da, acc)
// so a token's result does not depend on which of the two kernels computed it.
template <class K, int R, int T>
void tile_k(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  static_assert(R <= 4, "R rows are kept in the lanes of one __m128");
  __m128 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk[R];
    float d[4] = {0, 0, 0, 0}, dm[4] = {0, 0, 0, 0};
    __m256i scv[R], mn[R];
    for (int r = 0; r < R; ++r) {
      blk[r] = w + size_t(r) * ws + size_t(b) * K::kBytes;
      for (size_t off = 0; off < K::kBytes; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(blk[r] + kPrefetchRows * ws + off), _MM_HINT_T0);
      K::prep(blk[r], &d[r], &dm[r], &scv[r], &mn[r]);
    }
    const block_q8_K* ab[T];
    for (int t = 0; t < T; ++t) ab[t] = reinterpret_cast<const block_q8_K*>(a + size_t(t) * as) + b;
    __m256i iacc[T][R];
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < R; ++r) iacc[t][r] = _mm256_setzero_si256();
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
          iacc[t][r] = _mm256_add_epi32(iacc[t][r], _mm256_madd_epi16(_mm256_maddubs_epi16(q[r], av), sc[r]));
      }
    }
    // From registers, not through memory: four scalar stores read back by one vector load would stall
    // on store forwarding once per super-block.
    const __m128 dv = _mm_setr_ps(d[0], d[1], d[2], d[3]), dmv = _mm_setr_ps(dm[0], dm[1], dm[2], dm[3]);
    for (int t = 0; t < T; ++t) {
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab[t]->bsums));
      const __m128 da = _mm_set1_ps(ab[t]->d);
      __m256i ms[R];
      for (int r = 0; r < R; ++r) ms[r] = _mm256_madd_epi16(mn[r], bs);
      if constexpr (K::kCombined) {
        for (int r = 0; r < R; ++r) iacc[t][r] = _mm256_sub_epi32(iacc[t][r], ms[r]);
        acc[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(row_sums_i32<R>(iacc[t])), _mm_mul_ps(dv, da), acc[t]);
      } else {
        acc[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(row_sums_i32<R>(iacc[t])), _mm_mul_ps(dv, da), acc[t]);
        acc[t] = _mm_fnmadd_ps(_mm_cvtepi32_ps(row_sums_i32<R>(ms)), _mm_mul_ps(dmv, da), acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) {
    alignas(16) float s4[4];
    _mm_store_ps(s4, acc[t]);
    for (int r = 0; r < R; ++r) y[size_t(t) * ys + size_t(r)] = s4[r];
  }
}

template <class K>
struct KTile {
  template <int R, int T>
  struct Of {
    static void run(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
      tile_k<K, R, T>(nb, w, ws, a, as, y, ys);
    }
  };
};

// K-quants: rows8 kernel (gemm_rows8_avx2.cpp) from 4 tokens up; below, the row tiles above with
// the same per-output arithmetic (decode: no transposition work to amortize).
template <class K>
void gemm_k(GemmFn rows8, int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
           int64_t nt, float* y, size_t ys) {
  if (nt >= 4) {
    rows8(n, w, ws, nr, a, as, nt, y, ys);
    return;
  }
  walk_tiles<KTile<K>::template Of, kRows, kTokens>(n / QK_K, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q4_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_k<Q4_KW>(avx2_rows8::gemm_q4_k, n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q2_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_k<Q2_KW>(avx2_rows8::gemm_q2_k, n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q3_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_k<Q3_KW>(avx2_rows8::gemm_q3_k, n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q5_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_k<Q5_KW>(avx2_rows8::gemm_q5_k, n, w, ws, nr, a, as, nt, y, ys);
}
void gemm_q6_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys) {
  gemm_k<Q6_KW>(avx2_rows8::gemm_q6_k, n, w, ws, nr, a, as, nt, y, ys);
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
  k.gemm[int(GGMLType::Q2_K)] = gemm_q2_k;
  k.gemm[int(GGMLType::Q3_K)] = gemm_q3_k;
  k.gemm[int(GGMLType::Q4_K)] = gemm_q4_k;
  k.gemm[int(GGMLType::Q5_K)] = gemm_q5_k;
  k.gemm[int(GGMLType::Q6_K)] = gemm_q6_k;
  k.gemm[int(GGMLType::IQ4_NL)] = avx2_gemm_iq4_nl;  // iquant_avx2.cpp
  k.gemm[int(GGMLType::IQ4_XS)] = avx2_gemm_iq4_xs;
  k.gemm[int(GGMLType::TQ1_0)] = avx2_gemm_tq1_0;
  k.gemm[int(GGMLType::IQ2_XXS)] = avx2_gemm_iq2_xxs;
  k.gemm[int(GGMLType::IQ2_XS)] = avx2_gemm_iq2_xs;
  k.gemm[int(GGMLType::IQ2_S)] = avx2_gemm_iq2_s;
  k.gemm[int(GGMLType::IQ3_XXS)] = avx2_gemm_iq3_xxs;
  k.gemm[int(GGMLType::IQ3_S)] = avx2_gemm_iq3_s;
  k.gemm[int(GGMLType::IQ1_S)] = avx2_gemm_iq1_s;
  k.gemm[int(GGMLType::IQ1_M)] = avx2_gemm_iq1_m;
  k.gemm[int(GGMLType::TQ2_0)] = avx2_gemm_tq2_0;
  k.gemm[int(GGMLType::MXFP4)] = avx2_gemm_mxfp4;
  k.attn_tile = avx2_attention_tile;
  k.silu_mul = avx2_silu_mul;
  // Packed weights: the rows8 kernels read the interleaved groups directly, for any token count.
  k.gemm_packed[int(GGMLType::Q4_0)] = avx2_rows8::gemm_q4_0_packed;
  k.gemm_packed[int(GGMLType::Q4_1)] = avx2_rows8::gemm_q4_1_packed;
  k.gemm_packed[int(GGMLType::Q5_0)] = avx2_rows8::gemm_q5_0_packed;
  k.gemm_packed[int(GGMLType::Q5_1)] = avx2_rows8::gemm_q5_1_packed;
  k.gemm_packed[int(GGMLType::Q8_0)] = avx2_rows8::gemm_q8_0_packed;
  k.gemm_packed[int(GGMLType::Q2_K)] = avx2_rows8::gemm_q2_k_packed;
  k.gemm_packed[int(GGMLType::Q3_K)] = avx2_rows8::gemm_q3_k_packed;
  k.gemm_packed[int(GGMLType::Q4_K)] = avx2_rows8::gemm_q4_k_packed;
  k.gemm_packed[int(GGMLType::Q5_K)] = avx2_rows8::gemm_q5_k_packed;
  k.gemm_packed[int(GGMLType::Q6_K)] = avx2_rows8::gemm_q6_k_packed;
  k.packed_max_tokens = 0;
  return k;
}

}  // namespace

const KernelSet kAvx2Kernels = make_avx2();

}  // namespace edgellama
