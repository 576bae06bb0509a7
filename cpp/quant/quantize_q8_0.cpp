// Q8_0's own scale search (the other 32-value types keep search_sym in quantize.cpp).
//
// What it chooses: per 32-value block, the fp16 scale d with the lowest weighted squared error
// sum_i w_i (x_i - d q_i)^2, q_i = x_i / d rounded to the nearest level in [-128, 127], among four
// candidates:
//   1. the largest value mapped to 127, d = fp16(vmax / 127) (llama.cpp's scale; its levels here are
//      rounded for the stored fp16 d, so this candidate alone is never worse than llama.cpp's rounding),
//   2. the largest value mapped to -128, d = fp16(vmax / -128) (one step finer),
//   3. and 4. twice: the weighted least-squares scale of the best candidate's levels, in fp16.
// With 255 levels the error is rounding noise, and which rounding pattern a scale gets matters more
// than how fine it is; these four give most of what search_sym's 14 candidates and 4 refinements
// give, in a third of the passes. On SmolLM2-135M with its imatrix (weighted error relative to
// plain max/127 rounding, mean over tensors): these four 0.61, search_sym 0.52; without importance
// 0.80 and 0.72. KL vs llama-quantize: see BENCHMARKS.md.
//
// How: sixteen blocks at once, one per SIMD lane: the blocks at the same column of sixteen rows, so
// every lane has the same importance weights (one broadcast per value) and no pass ends in a
// horizontal reduction. The group's 16 x 32 values are transposed once into position-major order
// (xt[j][k] = value j of row k's block); the absolute-maximum pass and the four candidate passes
// read that copy; the final levels are computed from the rows as stored. Every lane does the same
// float operations in the same order in every code path (portable loops, the same loops compiled
// for AVX2, AVX-512 intrinsics), so the bytes do not depend on the CPU (test_quantize_search_simd).
// The per-lane bookkeeping between passes (fp16 rounding of candidates, the best so far) is one
// scalar loop shared by all paths.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "../kernels/cpu_features.h"
#include "edgellama/fp16.h"
#include "edgellama/quant_blocks.h"
#include "quantize.h"

namespace edgellama {
namespace {

constexpr int kLanes = 16;  // blocks (rows) per group
constexpr int kBlock = 32;  // values per block
constexpr float kLo = -128.0f, kHi = 127.0f;
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: (v + M) - M rounds |v| < 2^22 half to even
constexpr float kHalfMax = 65504.0f;        // largest finite fp16

#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
#define Q8_SIMD 1
#endif

// One group's transposed values: xt[j * kLanes + k] = value j of lane k's block.
struct Group {
  alignas(64) float xt[kBlock * kLanes];
};

// Each lane's best candidate so far: its weighted error, its scale and the least-squares scale of
// its levels (the next candidate).
struct Best {
  alignas(64) float err[kLanes];
  alignas(64) float d[kLanes];
  alignas(64) float fit[kLanes];
};

// The steps of a group's search, one implementation per instruction set (the table below). Every
// lane does the same float operations in the same order in each, so all give the same bytes.
struct Q8Kernels {
  // rows[k] + col: lane k's block -> g (missing rows point at zeros)
  void (*transpose)(const float* const* rows, int64_t col, Group* g);
  // per lane: the signed value of the largest magnitude (the first one on ties); finite[k] false
  // when a value is NaN or infinite (x * 0 is 0 for finite x, NaN otherwise)
  void (*absmax)(const Group& g, float* vmax, bool* finite);
  // candidate scales d = fp16(v / divisor), NaN -> 0, saturated to the largest finite half, and
  // their inverses id (0 for d = 0)
  void (*candidates)(const float* v, float divisor, float* d, float* id);
  // one pass of candidate d (inverse id) per lane over the group, w: the column's 32 block weights;
  // the lanes whose error is lower than best->err (every lane when first) take the candidate
  void (*pass)(const Group& g, const float* w, const float* d, const float* id, bool first, Best* best);
  // the 32 levels of one block for inverse scale id
  void (*levels)(const float* x, float id, int8_t* q);
};

inline float clampf(float v, float lo, float hi) {
  v = v > lo ? v : lo;  // NaN -> lo
  return v < hi ? v : hi;
}
inline float round_level(float v) { return (v + kRoundMagic) - kRoundMagic; }
inline float inverse(float d) { return d != 0.0f ? 1.0f / d : 0.0f; }

// ---- portable: one lane at a time ----

void transpose_portable(const float* const* rows, int64_t col, Group* g) {
  for (int k = 0; k < kLanes; ++k)
    for (int j = 0; j < kBlock; ++j) g->xt[j * kLanes + k] = rows[k][col + j];
}

void absmax_portable(const Group& g, float* vmax, bool* finite) {
  float amax[kLanes] = {}, vm[kLanes] = {}, poison[kLanes] = {};
  for (int j = 0; j < kBlock; ++j) {
    const float* x = g.xt + j * kLanes;
    for (int k = 0; k < kLanes; ++k) {
      const float a = std::fabs(x[k]);
      const bool larger = a > amax[k];
      amax[k] = larger ? a : amax[k];
      vm[k] = larger ? x[k] : vm[k];
      poison[k] = poison[k] + x[k] * 0.0f;
    }
  }
  for (int k = 0; k < kLanes; ++k) {
    vmax[k] = vm[k];
    finite[k] = poison[k] == 0.0f;
  }
}

void candidates_portable(const float* v, float divisor, float* d, float* id) {
  for (int k = 0; k < kLanes; ++k) {
    float t = v[k] / divisor;
    t = t == t ? clampf(t, -kHalfMax, kHalfMax) : 0.0f;
    d[k] = fp16_to_float(float_to_fp16(t));
    id[k] = inverse(d[k]);
  }
}

void pass_portable(const Group& g, const float* w, const float* d, const float* id, bool first, Best* best) {
  // lanes innermost: the compiler can run the lanes side by side (each lane's sums still go j = 0..31)
  float err[kLanes] = {}, wqq[kLanes] = {}, wqr[kLanes] = {};
  for (int j = 0; j < kBlock; ++j) {
    const float* x = g.xt + j * kLanes;
    const float wj = w[j];
    for (int k = 0; k < kLanes; ++k) {
      const float q = round_level(clampf(x[k] * id[k], kLo, kHi));
      const float r = x[k] - d[k] * q;
      const float wq = wj * q;
      wqq[k] = wqq[k] + wq * q;
      wqr[k] = wqr[k] + wq * r;
      err[k] = err[k] + (wj * r) * r;
    }
  }
  for (int k = 0; k < kLanes; ++k) {
    if (first || err[k] < best->err[k]) {
      best->err[k] = err[k];
      best->d[k] = d[k];
      best->fit[k] = wqq[k] > 0.0f ? d[k] + wqr[k] / wqq[k] : d[k];
    }
  }
}

void levels_portable(const float* x, float id, int8_t* q) {
  for (int j = 0; j < kBlock; ++j) q[j] = int8_t(round_level(clampf(x[j] * id, kLo, kHi)));
}

constexpr Q8Kernels kPortable = {transpose_portable, absmax_portable, candidates_portable, pass_portable,
                                 levels_portable};

#ifdef Q8_SIMD
// The SIMD forms: clampf is max(v, lo) then min(., hi) (max_ps(a, b) = a > b ? a : b, min_ps
// likewise); levels are rounded half to even by the round instruction, the same value as the
// magic-number rounding except that a level in (-0.5, 0) becomes -0: as a zero factor it changes no
// sum (each starts at +0) and it stores as 0. fp16 rounding is F16C's round-to-nearest-even, as
// float_to_fp16 (fp16.h); sums run over j in the same order per lane.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push  // GCC bug 105593, as in quantize.cpp
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// ---- AVX2 (with FMA and F16C, which every AVX2 CPU has; no FMA is used): two 8-lane registers ----
#define Q8_AVX2_FN __attribute__((target("avx,avx2,f16c")))

// r[i] <- value i of the eight rows r[0..7] held
Q8_AVX2_FN inline void transpose8(__m256* r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  // u[4m + c], 128-bit half L: value 4L + c of rows 4m..4m+3
  for (int m = 0; m < 8; m += 4) {
    u[m] = _mm256_shuffle_ps(t[m], t[m + 2], 0x44);
    u[m + 1] = _mm256_shuffle_ps(t[m], t[m + 2], 0xEE);
    u[m + 2] = _mm256_shuffle_ps(t[m + 1], t[m + 3], 0x44);
    u[m + 3] = _mm256_shuffle_ps(t[m + 1], t[m + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[c + 4], 0x20);
    r[c + 4] = _mm256_permute2f128_ps(u[c], u[c + 4], 0x31);
  }
}

Q8_AVX2_FN void transpose_avx2(const float* const* rows, int64_t col, Group* g) {
  for (int k0 = 0; k0 < kLanes; k0 += 8)
    for (int h = 0; h < kBlock; h += 8) {
      __m256 r[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(rows[k0 + k] + col + h);
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_store_ps(g->xt + (h + i) * kLanes + k0, r[i]);
    }
}

Q8_AVX2_FN void absmax_avx2(const Group& g, float* vmax, bool* finite) {
  const __m256 zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
  for (int k0 = 0; k0 < kLanes; k0 += 8) {
    __m256 amax = zero, vm = zero, poison = zero;
    for (int j = 0; j < kBlock; ++j) {
      const __m256 x = _mm256_load_ps(g.xt + j * kLanes + k0);
      const __m256 a = _mm256_andnot_ps(sign, x);
      const __m256 larger = _mm256_cmp_ps(a, amax, _CMP_GT_OQ);
      amax = _mm256_blendv_ps(amax, a, larger);
      vm = _mm256_blendv_ps(vm, x, larger);
      poison = _mm256_add_ps(poison, _mm256_mul_ps(x, zero));
    }
    _mm256_storeu_ps(vmax + k0, vm);
    const int ok = _mm256_movemask_ps(_mm256_cmp_ps(poison, zero, _CMP_EQ_OQ));
    for (int k = 0; k < 8; ++k) finite[k0 + k] = (ok >> k) & 1;
  }
}

Q8_AVX2_FN void candidates_avx2(const float* v, float divisor, float* d, float* id) {
  const __m256 div = _mm256_set1_ps(divisor), lo = _mm256_set1_ps(-kHalfMax), hi = _mm256_set1_ps(kHalfMax);
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  for (int k0 = 0; k0 < kLanes; k0 += 8) {
    __m256 t = _mm256_div_ps(_mm256_loadu_ps(v + k0), div);
    t = _mm256_and_ps(t, _mm256_cmp_ps(t, t, _CMP_ORD_Q));  // NaN -> 0
    t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
    const __m256 dv = _mm256_cvtph_ps(_mm256_cvtps_ph(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    _mm256_storeu_ps(d + k0, dv);
    _mm256_storeu_ps(id + k0, _mm256_and_ps(_mm256_div_ps(one, dv), _mm256_cmp_ps(dv, zero, _CMP_NEQ_UQ)));
  }
}

Q8_AVX2_FN void pass_avx2(const Group& g, const float* w, const float* d, const float* id, bool first, Best* best) {
  const __m256 lo = _mm256_set1_ps(kLo), hi = _mm256_set1_ps(kHi), zero = _mm256_setzero_ps();
  const __m256 vd[2] = {_mm256_loadu_ps(d), _mm256_loadu_ps(d + 8)};
  const __m256 vid[2] = {_mm256_loadu_ps(id), _mm256_loadu_ps(id + 8)};
  __m256 err[2] = {zero, zero}, wqq[2] = {zero, zero}, wqr[2] = {zero, zero};
  for (int j = 0; j < kBlock; ++j) {
    const __m256 wj = _mm256_set1_ps(w[j]);
    for (int h = 0; h < 2; ++h) {
      const __m256 x = _mm256_load_ps(g.xt + j * kLanes + 8 * h);
      __m256 q = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x, vid[h]), lo), hi);
      q = _mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(vd[h], q));
      const __m256 wq = _mm256_mul_ps(wj, q);
      wqq[h] = _mm256_add_ps(wqq[h], _mm256_mul_ps(wq, q));
      wqr[h] = _mm256_add_ps(wqr[h], _mm256_mul_ps(wq, r));
      err[h] = _mm256_add_ps(err[h], _mm256_mul_ps(_mm256_mul_ps(wj, r), r));
    }
  }
  for (int h = 0; h < 2; ++h) {
    float* be = best->err + 8 * h;
    float* bd = best->d + 8 * h;
    float* bf = best->fit + 8 * h;
    const __m256 take = first ? _mm256_castsi256_ps(_mm256_set1_epi32(-1))
                              : _mm256_cmp_ps(err[h], _mm256_load_ps(be), _CMP_LT_OQ);
    __m256 fit = _mm256_add_ps(vd[h], _mm256_div_ps(wqr[h], wqq[h]));
    fit = _mm256_blendv_ps(vd[h], fit, _mm256_cmp_ps(wqq[h], zero, _CMP_GT_OQ));
    _mm256_store_ps(be, _mm256_blendv_ps(_mm256_load_ps(be), err[h], take));
    _mm256_store_ps(bd, _mm256_blendv_ps(_mm256_load_ps(bd), vd[h], take));
    _mm256_store_ps(bf, _mm256_blendv_ps(_mm256_load_ps(bf), fit, take));
  }
}

Q8_AVX2_FN void levels_avx2(const float* x, float id, int8_t* q) {
  const __m256 vid = _mm256_set1_ps(id), lo = _mm256_set1_ps(kLo), hi = _mm256_set1_ps(kHi);
  __m256i l[4];
  for (int i = 0; i < 4; ++i) {
    __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), vid), lo), hi);
    l[i] = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  // the packs work per 128-bit half; the permutation puts the eight 4-byte groups back in order
  const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(l[0], l[1]), _mm256_packs_epi32(l[2], l[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q),
                      _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// ---- AVX-512: one register holds the 16 lanes ----
#define Q8_AVX512_FN __attribute__((target("avx,avx2,f16c,avx512f,avx512dq,avx512vl,avx512bw")))

// r[i] <- value i of the sixteen rows r[0..15] held
Q8_AVX512_FN inline void transpose16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // r[4m + c], 128-bit lane L: value 4L + c of rows 4m..4m+3
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  // two rounds of 128-bit lane shuffles gather value i's four lanes (rows 0-3, 4-7, 8-11, 12-15)
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[c + 4], 0x88);
    t[c + 4] = _mm512_shuffle_f32x4(r[c], r[c + 4], 0xDD);
    t[c + 8] = _mm512_shuffle_f32x4(r[c + 8], r[c + 12], 0x88);
    t[c + 12] = _mm512_shuffle_f32x4(r[c + 8], r[c + 12], 0xDD);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[c + 8], 0x88);
    r[c + 8] = _mm512_shuffle_f32x4(t[c], t[c + 8], 0xDD);
    r[c + 4] = _mm512_shuffle_f32x4(t[c + 4], t[c + 12], 0x88);
    r[c + 12] = _mm512_shuffle_f32x4(t[c + 4], t[c + 12], 0xDD);
  }
}

Q8_AVX512_FN void transpose_avx512(const float* const* rows, int64_t col, Group* g) {
  for (int h = 0; h < kBlock; h += 16) {
    __m512 r[16];
    for (int k = 0; k < 16; ++k) r[k] = _mm512_loadu_ps(rows[k] + col + h);
    transpose16(r);
    for (int i = 0; i < 16; ++i) _mm512_store_ps(g->xt + (h + i) * kLanes, r[i]);
  }
}

Q8_AVX512_FN void absmax_avx512(const Group& g, float* vmax, bool* finite) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 amax = zero, vm = zero, poison = zero;
  for (int j = 0; j < kBlock; ++j) {
    const __m512 x = _mm512_load_ps(g.xt + j * kLanes);
    const __m512 a = _mm512_abs_ps(x);
    const __mmask16 larger = _mm512_cmp_ps_mask(a, amax, _CMP_GT_OQ);
    amax = _mm512_mask_mov_ps(amax, larger, a);
    vm = _mm512_mask_mov_ps(vm, larger, x);
    poison = _mm512_add_ps(poison, _mm512_mul_ps(x, zero));
  }
  _mm512_storeu_ps(vmax, vm);
  const __mmask16 ok = _mm512_cmp_ps_mask(poison, zero, _CMP_EQ_OQ);
  for (int k = 0; k < kLanes; ++k) finite[k] = (ok >> k) & 1;
}

Q8_AVX512_FN void candidates_avx512(const float* v, float divisor, float* d, float* id) {
  __m512 t = _mm512_div_ps(_mm512_loadu_ps(v), _mm512_set1_ps(divisor));
  t = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t, t, _CMP_ORD_Q), t);  // NaN -> 0
  t = _mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(-kHalfMax)), _mm512_set1_ps(kHalfMax));
  const __m512 dv = _mm512_cvtph_ps(_mm512_cvtps_ph(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  _mm512_storeu_ps(d, dv);
  const __mmask16 nz = _mm512_cmp_ps_mask(dv, _mm512_setzero_ps(), _CMP_NEQ_UQ);
  _mm512_storeu_ps(id, _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0f), dv));
}

Q8_AVX512_FN void pass_avx512(const Group& g, const float* w, const float* d, const float* id, bool first,
                              Best* best) {
  const __m512 vd = _mm512_loadu_ps(d), vid = _mm512_loadu_ps(id);
  const __m512 lo = _mm512_set1_ps(kLo), hi = _mm512_set1_ps(kHi);
  __m512 err = _mm512_setzero_ps(), wqq = err, wqr = err;
  for (int j = 0; j < kBlock; ++j) {
    const __m512 x = _mm512_load_ps(g.xt + j * kLanes);
    const __m512 wj = _mm512_set1_ps(w[j]);
    __m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x, vid), lo), hi);
    q = _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(vd, q));
    const __m512 wq = _mm512_mul_ps(wj, q);
    wqq = _mm512_add_ps(wqq, _mm512_mul_ps(wq, q));
    wqr = _mm512_add_ps(wqr, _mm512_mul_ps(wq, r));
    err = _mm512_add_ps(err, _mm512_mul_ps(_mm512_mul_ps(wj, r), r));
  }
  const __mmask16 take = first ? __mmask16(0xFFFF) : _mm512_cmp_ps_mask(err, _mm512_load_ps(best->err), _CMP_LT_OQ);
  const __mmask16 fits = _mm512_cmp_ps_mask(wqq, _mm512_setzero_ps(), _CMP_GT_OQ);
  const __m512 fit = _mm512_mask_add_ps(vd, fits, vd, _mm512_maskz_div_ps(fits, wqr, wqq));
  _mm512_mask_store_ps(best->err, take, err);
  _mm512_mask_store_ps(best->d, take, vd);
  _mm512_mask_store_ps(best->fit, take, fit);
}

Q8_AVX512_FN void levels_avx512(const float* x, float id, int8_t* q) {
  const __m512 vid = _mm512_set1_ps(id), lo = _mm512_set1_ps(kLo), hi = _mm512_set1_ps(kHi);
  for (int h = 0; h < kBlock; h += 16) {
    __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(x + h), vid), lo), hi);
    v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + h), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

constexpr Q8Kernels kAvx2 = {transpose_avx2, absmax_avx2, candidates_avx2, pass_avx2, levels_avx2};
constexpr Q8Kernels kAvx512 = {transpose_avx512, absmax_avx512, candidates_avx512, pass_avx512, levels_avx512};
#endif  // Q8_SIMD

// The kernels of this CPU, chosen once. EDGELLAMA_QUANT_NO_AVX=1 keeps the portable code,
// EDGELLAMA_QUANT_NO_AVX512=1 the AVX2 code (the switches of quantize.cpp's searches; the tests
// compare the three).
const Q8Kernels& pick_kernels() {
#ifdef Q8_SIMD
  const CpuFeatures f = detect_cpu_features();
  if (f.avx2 && !std::getenv("EDGELLAMA_QUANT_NO_AVX")) {
    if (f.avx512 && !std::getenv("EDGELLAMA_QUANT_NO_AVX512")) return kAvx512;
    return kAvx2;
  }
#endif
  return kPortable;
}
const Q8Kernels& kKernels = pick_kernels();

// The search of one group: lane k is the block at column offset col of rows[k]; w: that column's
// 32 block weights. Writes d and the levels of the first n_out lanes' blocks to out[k].
void search_group(const float* const* rows, int64_t col, const float* w, int n_out, block_q8_0* const* out) {
  const Q8Kernels& K = kKernels;
  Group g;
  K.transpose(rows, col, &g);
  alignas(64) float vmax[kLanes], d[kLanes], id[kLanes];
  bool finite[kLanes];
  K.absmax(g, vmax, finite);
  Best best;
  K.candidates(vmax, kHi, d, id);  // largest value -> 127
  K.pass(g, w, d, id, true, &best);
  K.candidates(vmax, kLo, d, id);  // largest value -> -128
  K.pass(g, w, d, id, false, &best);
  for (int it = 0; it < 2; ++it) {  // the least-squares scale of the best levels so far
    K.candidates(best.fit, 1.0f, d, id);
    K.pass(g, w, d, id, false, &best);
  }
  for (int k = 0; k < n_out; ++k) {
    block_q8_0* b = out[k];
    if (!finite[k]) {  // a NaN or infinity: the block stores zeros
      b->d = 0;
      std::memset(b->qs, 0, sizeof b->qs);
      continue;
    }
    b->d = float_to_fp16(best.d[k]);  // exact: best.d holds half values
    K.levels(rows[k] + col, inverse(best.d[k]), b->qs);
  }
}

}  // namespace

void quantize_q8_0_search_rows(const float* x, int64_t nrows, int64_t ncols, const float* wrow, void* y) {
  const int64_t nb = ncols / kBlock;
  const size_t row_bytes = size_t(nb) * sizeof(block_q8_0);
  std::vector<float> zeros;  // the missing rows of the last group
  const float* rows[kLanes];
  block_q8_0* out[kLanes];
  for (int64_t r0 = 0; r0 < nrows; r0 += kLanes) {
    const int n_out = int(std::min<int64_t>(kLanes, nrows - r0));
    if (n_out < kLanes && zeros.empty()) zeros.assign(size_t(ncols), 0.0f);
    for (int k = 0; k < kLanes; ++k) rows[k] = k < n_out ? x + (r0 + k) * ncols : zeros.data();
    for (int64_t c = 0; c < nb; ++c) {
      for (int k = 0; k < n_out; ++k)
        out[k] = reinterpret_cast<block_q8_0*>(static_cast<uint8_t*>(y) + size_t(r0 + k) * row_bytes) + c;
      search_group(rows, c * kBlock, wrow + c * kBlock, n_out, out);
    }
  }
}

}  // namespace edgellama
