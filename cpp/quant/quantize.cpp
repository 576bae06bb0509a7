// Reference rounding of the float and legacy 32-value types (bit-exact with gguf-py), the generic
// scale searches, the per-type search dispatcher and the threaded matrix driver.
#include "quantize.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif
#include <cstdlib>

#include "../kernels/cpu_features.h"

#include "edgellama/errors.h"
#include "edgellama/fp16.h"
#include "edgellama/iquant_blocks.h"
#include "edgellama/quant_blocks.h"
#include "edgellama/thread_pool.h"

namespace edgellama {

// AVX versions of the hot loops (reference rounding of Q4_0 / Q8_0, the searches' passes): GCC and
// Clang compile those functions for AVX by attribute, and they run when the CPU has it. Each does
// the scalar/SSE2 code's operations lane by lane, unfused and in the same order, so the bytes do not
// depend on which one ran. EDGELLAMA_QUANT_NO_AVX=1 keeps the baseline code (tests compare the two).
#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
#define EDGELLAMA_QUANT_AVX 1
#define QUANT_AVX_FN __attribute__((target("avx")))
namespace {
const bool kUseAvx = detect_cpu_features().avx2 && !std::getenv("EDGELLAMA_QUANT_NO_AVX");
// 16-value blocks (the sub-blocks of Q2_K, Q3_K, Q6_K) in one 512-bit register, and two candidates
// per register for the other block sizes (the 32-value Q4_0 / Q5_0 / Q8_0 searches), where the CPU has
// AVX-512 (same bits again; EDGELLAMA_QUANT_NO_AVX512=1 keeps the AVX code, for the tests).
#define QUANT_AVX512_FN __attribute__((target("avx,avx2,avx512f,avx512dq,avx512vl")))
const bool kUseAvx512 = kUseAvx && detect_cpu_features().avx512 && !std::getenv("EDGELLAMA_QUANT_NO_AVX512");
}
#endif

// ---------------------------------------------------------------------------------------------
// NumPy cast emulation. gguf-py converts float32 -> uint8/int8 with astype(), which on the
// platforms we support goes through a 32-bit integer conversion and keeps the low byte; NaN, inf
// and values outside the int32 range give 0. Writing the same thing keeps odd inputs bit-exact
// and avoids C++'s undefined float -> integer overflow.
// ---------------------------------------------------------------------------------------------
namespace {

inline int32_t np_to_i32(float v) {
  if (!(v > -2147483648.0f && v < 2147483648.0f)) return 0;
  return int32_t(v);  // truncates
}
inline uint8_t np_to_u8(float v) { return uint8_t(uint32_t(np_to_i32(v)) & 0xFF); }
inline int8_t np_to_i8(float v) { return int8_t(uint8_t(uint32_t(np_to_i32(v)) & 0xFF)); }

// gguf.quants.np_roundf: round half away from zero, written as floor(a) + floor(2 (a - floor(a))).
inline float np_roundf(float n) {
  const float a = std::fabs(n);
  const float fl = std::floor(a);
  const float b = fl + std::floor(2.0f * (a - fl));
  if (n > 0) return b;
  if (n < 0) return -b;
  return n == n ? 0.0f * b : n;  // sign(0) = 0; NaN stays NaN
}

inline float safe_inv(float d) { return d == 0.0f ? 0.0f : 1.0f / d; }

}  // namespace

void quantize_row_f32_ref(const float* x, void* y, int64_t n) { std::memcpy(y, x, size_t(n) * sizeof(float)); }

void quantize_row_f16_ref(const float* x, void* y, int64_t n) {
  uint16_t* o = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < n; ++i) o[i] = float_to_fp16(x[i]);
}

void quantize_row_bf16_ref(const float* x, void* y, int64_t n) {
  uint16_t* o = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < n; ++i) o[i] = float_to_bf16(x[i]);
}

// Signed absolute maximum: the first value whose |x| is largest (NumPy argmax picks the first).
static float signed_absmax(const float* x, int n) {
  float amax = std::fabs(x[0]), v = x[0];
  for (int j = 1; j < n; ++j) {
    const float a = std::fabs(x[j]);
    if (a > amax) {
      amax = a;
      v = x[j];
    }
  }
  return v;
}

#ifdef EDGELLAMA_QUANT_AVX
// 32 values whose x * id lies in [-2^22, 2^22] (finite x, finite id): the integer conversion of the
// scalar code (np_to_u8 of trunc) is then a plain truncating conversion.
QUANT_AVX_FN static bool q4_0_levels_avx(const float* x, float id, uint8_t* q) {
  const __m256 vid = _mm256_set1_ps(id), half = _mm256_set1_ps(8.5f), lim = _mm256_set1_ps(4194304.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  __m256 v[4];
  for (int k = 0; k < 4; ++k) {
    const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid);
    ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_andnot_ps(sign, p), lim, _CMP_LE_OQ));  // false for NaN
    v[k] = _mm256_add_ps(p, half);
  }
  if (_mm256_movemask_ps(ok) != 0xFF) return false;
  alignas(32) int32_t t[32];
  for (int k = 0; k < 4; ++k) _mm256_store_si256(reinterpret_cast<__m256i*>(t + 8 * k), _mm256_cvttps_epi32(v[k]));
  for (int j = 0; j < 32; ++j) q[j] = uint8_t(std::min<int32_t>(15, t[j] & 0xFF));
  return true;
}

// signed_absmax of 32 finite values (false when one is not finite: the caller keeps the scalar
// code): the first value of the largest magnitude, found as the first lane equal to the maximum.
QUANT_AVX_FN static bool signed_absmax32_avx(const float* x, float* v) {
  const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
  __m256 a[4], m = _mm256_setzero_ps(), fin = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int k = 0; k < 4; ++k) {
    a[k] = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k));
    fin = _mm256_and_ps(fin, _mm256_cmp_ps(a[k], inf, _CMP_LT_OQ));  // false for NaN and inf
    m = _mm256_max_ps(m, a[k]);
  }
  if (_mm256_movemask_ps(fin) != 0xFF) return false;
  m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 1));
  m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0x4E));
  m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0xB1));
  for (int k = 0; k < 4; ++k) {
    const int hit = _mm256_movemask_ps(_mm256_cmp_ps(a[k], m, _CMP_EQ_OQ));
    if (hit) {
      *v = x[8 * k + __builtin_ctz(unsigned(hit))];
      return true;
    }
  }
  return false;  // unreachable for finite values
}

QUANT_AVX_FN static bool q8_0_levels_avx(const float* x, float id, int8_t* q) {
  // np_roundf: floor(a) + floor(2 (a - floor(a))) with a = |x id|, the sign put back
  const __m256 vid = _mm256_set1_ps(id), two = _mm256_set1_ps(2.0f), lim = _mm256_set1_ps(4194304.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  __m256 r[4];
  for (int k = 0; k < 4; ++k) {
    const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid);
    const __m256 a = _mm256_andnot_ps(sign, p);
    ok = _mm256_and_ps(ok, _mm256_cmp_ps(a, lim, _CMP_LE_OQ));
    const __m256 fl = _mm256_floor_ps(a);
    const __m256 b = _mm256_add_ps(fl, _mm256_floor_ps(_mm256_mul_ps(two, _mm256_sub_ps(a, fl))));
    r[k] = _mm256_or_ps(b, _mm256_and_ps(p, sign));
  }
  if (_mm256_movemask_ps(ok) != 0xFF) return false;
  alignas(32) int32_t t[32];
  for (int k = 0; k < 4; ++k) _mm256_store_si256(reinterpret_cast<__m256i*>(t + 8 * k), _mm256_cvttps_epi32(r[k]));
  for (int j = 0; j < 32; ++j) q[j] = int8_t(uint8_t(t[j] & 0xFF));
  return true;
}
#endif

void quantize_row_q4_0_ref(const float* x, void* y, int64_t n) {
  block_q4_0* b = static_cast<block_q4_0*>(y);
  for (int64_t i = 0; i < n / QK4_0; ++i, x += QK4_0) {
    float max;
#ifdef EDGELLAMA_QUANT_AVX
    if (!(kUseAvx && signed_absmax32_avx(x, &max)))
#endif
      max = signed_absmax(x, QK4_0);
    const float d = max / -8.0f;
    const float id = safe_inv(d);
    b[i].d = float_to_fp16(d);
    uint8_t q[QK4_0];
#ifdef EDGELLAMA_QUANT_AVX
    if (!(kUseAvx && q4_0_levels_avx(x, id, q)))
#endif
      for (int j = 0; j < QK4_0; ++j) q[j] = std::min<uint8_t>(15, np_to_u8(std::trunc(x[j] * id + 8.5f)));
    for (int j = 0; j < QK4_0 / 2; ++j) b[i].qs[j] = uint8_t(q[j] | (q[j + 16] << 4));
  }
}

// Smallest and largest value of a block (the offset and range of the Q4_1 / Q5_1 grids).
static void block_min_max(const float* x, int n, float* mn, float* mx) {
  *mn = *mx = x[0];
  for (int j = 1; j < n; ++j) {
    *mn = std::min(*mn, x[j]);
    *mx = std::max(*mx, x[j]);
  }
}

void quantize_row_q4_1_ref(const float* x, void* y, int64_t n) {
  block_q4_1* b = static_cast<block_q4_1*>(y);
  for (int64_t i = 0; i < n / QK4_1; ++i, x += QK4_1) {
    float mn, mx;
    block_min_max(x, QK4_1, &mn, &mx);
    const float d = (mx - mn) / 15.0f;
    const float id = safe_inv(d);
    b[i].d = float_to_fp16(d);
    b[i].m = float_to_fp16(mn);
    uint8_t q[QK4_1];
    for (int j = 0; j < QK4_1; ++j) q[j] = std::min<uint8_t>(15, np_to_u8(std::trunc((x[j] - mn) * id + 0.5f)));
    for (int j = 0; j < QK4_1 / 2; ++j) b[i].qs[j] = uint8_t(q[j] | (q[j + 16] << 4));
  }
}

static void pack_q5(const uint8_t* q, uint8_t* qh, uint8_t* qs) {
  uint32_t h = 0;
  for (int j = 0; j < 32; ++j) h |= uint32_t((q[j] >> 4) & 1) << j;
  std::memcpy(qh, &h, 4);
  for (int j = 0; j < 16; ++j) qs[j] = uint8_t((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
}

void quantize_row_q5_0_ref(const float* x, void* y, int64_t n) {
  block_q5_0* b = static_cast<block_q5_0*>(y);
  for (int64_t i = 0; i < n / QK5_0; ++i, x += QK5_0) {
    const float max = signed_absmax(x, QK5_0);
    const float d = max / -16.0f;
    const float id = safe_inv(d);
    b[i].d = float_to_fp16(d);
    uint8_t q[QK5_0];
    for (int j = 0; j < QK5_0; ++j) q[j] = std::min<uint8_t>(31, np_to_u8(std::trunc(x[j] * id + 16.5f)));
    pack_q5(q, b[i].qh, b[i].qs);
  }
}

void quantize_row_q5_1_ref(const float* x, void* y, int64_t n) {
  block_q5_1* b = static_cast<block_q5_1*>(y);
  for (int64_t i = 0; i < n / QK5_1; ++i, x += QK5_1) {
    float mn, mx;
    block_min_max(x, QK5_1, &mn, &mx);
    const float d = (mx - mn) / 31.0f;
    const float id = safe_inv(d);
    b[i].d = float_to_fp16(d);
    b[i].m = float_to_fp16(mn);
    uint8_t q[QK5_1];
    for (int j = 0; j < QK5_1; ++j) q[j] = std::min<uint8_t>(31, np_to_u8(std::trunc((x[j] - mn) * id + 0.5f)));
    pack_q5(q, b[i].qh, b[i].qs);
  }
}

void quantize_row_q8_0_ref(const float* x, void* y, int64_t n) {
  block_q8_0* b = static_cast<block_q8_0*>(y);
  for (int64_t i = 0; i < n / QK8_0; ++i, x += QK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = safe_inv(d);
    b[i].d = float_to_fp16(d);
#ifdef EDGELLAMA_QUANT_AVX
    if (kUseAvx && q8_0_levels_avx(x, id, b[i].qs)) continue;
#endif
    for (int j = 0; j < QK8_0; ++j) b[i].qs[j] = np_to_i8(np_roundf(x[j] * id));
  }
}

void quantize_row_q8_1_ref(const float* x, void* y, int64_t n) {
  block_q8_1* b = static_cast<block_q8_1*>(y);
  for (int64_t i = 0; i < n / QK8_1; ++i, x += QK8_1) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_1; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = safe_inv(d);
    int sum = 0;
    for (int j = 0; j < QK8_1; ++j) {
      b[i].qs[j] = np_to_i8(np_roundf(x[j] * id));
      sum += b[i].qs[j];
    }
    b[i].d = float_to_fp16(d);
    b[i].s = float_to_fp16(float(sum) * d);
  }
}

// Ternary formats (gguf.quants TQ1_0 / TQ2_0): d = max |x| (NaN if any value is NaN, as NumPy's
// max), t = round(x / d) in -1..1 stored as t + 1; TQ2_0 packs 2 bits per value, TQ1_0 5 base-3
// digits per byte (most significant first) as ceil(n * 256 / 243). Layouts: iquant_blocks.h.
static float numpy_absmax(const float* x, int n) {
  float m = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (x[j] != x[j]) return x[j];
    m = std::max(m, std::fabs(x[j]));
  }
  return m;
}

static void ternary_digits(const float* x, uint8_t* q, uint16_t* d_out) {
  const float d = numpy_absmax(x, QK_K);
  const float id = d == 0.0f ? 0.0f : 1.0f / d;
  for (int j = 0; j < QK_K; ++j) q[j] = uint8_t(np_to_i8(np_roundf(x[j] * id)) + 1);
  *d_out = float_to_fp16(d);
}

void quantize_row_tq2_0_ref(const float* x, void* y, int64_t n) {
  iq::block_tq2_0* b = static_cast<iq::block_tq2_0*>(y);
  uint8_t q[QK_K];
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    ternary_digits(x, q, &b[i].d);
    for (int j = 0; j < 2; ++j)
      for (int m = 0; m < 32; ++m) {
        uint8_t v = 0;
        for (int l = 0; l < 4; ++l) v |= uint8_t(q[128 * j + 32 * l + m] << (2 * l));
        b[i].qs[32 * j + m] = v;
      }
  }
}

void quantize_row_tq1_0_ref(const float* x, void* y, int64_t n) {
  iq::block_tq1_0* b = static_cast<iq::block_tq1_0*>(y);
  static constexpr uint8_t kPow3[5] = {81, 27, 9, 3, 1};
  uint8_t q[QK_K];
  // n = sum_k digit_k * 3^(4 - k) as a byte: ceil(n * 256 / 243)
  auto pack = [](unsigned sum) { return uint8_t((sum * 256 + 242) / 243); };
  for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
    ternary_digits(x, q, &b[i].d);
    for (int m = 0; m < 32; ++m) {
      unsigned sum = 0;
      for (int k = 0; k < 5; ++k) sum += uint8_t(q[32 * k + m] * kPow3[k]);
      b[i].qs[m] = pack(sum);
    }
    for (int m = 0; m < 16; ++m) {
      unsigned sum = 0;
      for (int k = 0; k < 5; ++k) sum += uint8_t(q[160 + 16 * k + m] * kPow3[k]);
      b[i].qs[32 + m] = pack(sum);
    }
    for (int m = 0; m < 4; ++m) {
      unsigned sum = 0;
      for (int k = 0; k < 4; ++k) sum += uint8_t(q[240 + 4 * k + m] * kPow3[k]);
      b[i].qh[m] = pack(sum);
    }
  }
}

// MXFP4 (ggml's quantize_row_mxfp4_ref, gguf.quants.MXFP4): the block exponent is
// floor(log2(max |x|)) - 2 + 127 in e8m0, so the largest level, 12 * 2^(e - 128), is 1.5 times the
// block's power of two; every value takes the nearest of the 16 levels (the first on a tie, and
// level 0 = +0 before level 8 = -0). Bit for bit ggml's and gguf.quants' output for finite blocks.
// Where they leave it undefined (a float -> uint8 cast out of range) we choose: a block whose
// max |x| is below 2^-125 gets e = 0 (the finest scale), NaN and +-inf do not count towards the
// maximum, NaN takes level 0 (as their first-minimum search does) and +-inf the level +-12.
void quantize_row_mxfp4_ref(const float* x, void* y, int64_t n) {
  iq::block_mxfp4* b = static_cast<iq::block_mxfp4*>(y);
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j)
      if (std::isfinite(x[j])) amax = std::max(amax, std::fabs(x[j]));
    // log2f, as ggml calls it, so a max |x| a few ulp below a power of two rounds like theirs
    const float e_f = amax > 0.0f ? std::floor(std::log2(amax)) - 2.0f + 127.0f : 0.0f;
    const uint8_t e = uint8_t(std::clamp(e_f, 0.0f, 254.0f));
    const float d = iq::e8m0_to_float_half(e);
    b[i].e = e;
    auto nearest = [d](float v) -> uint8_t {
      if (std::isinf(v)) return v > 0 ? 7 : 15;
      int best = 0;
      float best_err = std::fabs(float(iq::kMxfp4Values[0]) * d - v);
      for (int k = 1; k < 16; ++k) {
        const float err = std::fabs(float(iq::kMxfp4Values[k]) * d - v);
        if (err < best_err) best = k, best_err = err;
      }
      return uint8_t(best);
    };
    for (int j = 0; j < 16; ++j) b[i].qs[j] = uint8_t(nearest(x[j]) | (nearest(x[j + 16]) << 4));
  }
}

// ---------------------------------------------------------------------------------------------
// Generic searches
// ---------------------------------------------------------------------------------------------
namespace detail {

void block_weights(int n, const float* importance, float* w) {
  if (importance) {
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += importance[i];
    if (sum > 0) {
      // A small floor keeps zero-importance values from being ignored completely (and the least
      // squares systems regular) without changing the objective measurably.
      const float floor = float(sum / n * 1e-4);
      for (int i = 0; i < n; ++i) w[i] = importance[i] + floor;
      return;
    }
  }
  for (int i = 0; i < n; ++i) w[i] = 1.0f;
}

static float search_sym_generic(int n, const float* x, const float* w, int lo, int hi, int8_t* L) {
  float amax = 0.0f, vmax = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      vmax = x[i];
    }
  }
  if (!(amax > 1e-30f) || !std::isfinite(amax)) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  double best_score = -1.0;
  float best_s = 0.0f;
  int8_t tmp[256];
  auto try_levels = [&](const int8_t* q) -> bool {
    double slx = 0, sl2 = 0;
    for (int i = 0; i < n; ++i) {
      slx += double(w[i]) * x[i] * q[i];
      sl2 += double(w[i]) * q[i] * q[i];
    }
    if (sl2 <= 0) return false;
    const double score = slx * slx / sl2;
    if (score > best_score) {
      best_score = score;
      best_s = float(slx / sl2);
      if (q != L) std::memcpy(L, q, size_t(n));
      return true;
    }
    return false;
  };
  auto try_iscale = [&](float iscale) {
    for (int i = 0; i < n; ++i) tmp[i] = int8_t(clampi(nearest_int(iscale * x[i]), lo, hi));
    try_levels(tmp);
  };
  // Map the largest value to either end of the level range, with small perturbations.
  for (int k = -10; k <= 10; ++k) {
    try_iscale((float(lo) + 0.1f * k) / vmax);
    try_iscale((float(hi) + 0.1f * k) / vmax);
  }
  // Alternate: levels for the best scale, then the best scale for those levels.
  for (int it = 0; it < 4 && best_s != 0.0f; ++it) {
    try_iscale(1.0f / best_s);
    if (std::memcmp(tmp, L, size_t(n)) != 0) break;
  }
  return best_s;
}

static float search_asym_generic(int n, const float* x, const float* w, int nmax, bool min_le_zero, uint8_t* L,
                                 float* m_out) {
  float mn = x[0], mx = x[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  if (min_le_zero && mn > 0) mn = 0;
  if (!(mx > mn) || !std::isfinite(mx - mn)) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *m_out = std::isfinite(mn) ? mn : 0.0f;
    return 0.0f;
  }
  double best_err = INFINITY;
  float best_s = 0.0f, best_m = mn;
  uint8_t tmp[256];
  auto error = [&](const uint8_t* q, float s, float m) {
    double e = 0;
    for (int i = 0; i < n; ++i) {
      const double diff = double(s) * q[i] + m - x[i];
      e += w[i] * diff * diff;
    }
    return e;
  };
  auto consider = [&](const uint8_t* q, float s, float m) {
    if (!(s >= 0)) return;
    const double e = error(q, s, m);
    if (e < best_err) {
      best_err = e;
      best_s = s;
      best_m = m;
      std::memcpy(L, q, size_t(n));
    }
  };
  auto fit = [&](const uint8_t* q) {
    double sw = 0, sl = 0, sl2 = 0, sx = 0, slx = 0;
    for (int i = 0; i < n; ++i) {
      sw += w[i];
      sl += double(w[i]) * q[i];
      sl2 += double(w[i]) * q[i] * q[i];
      sx += double(w[i]) * x[i];
      slx += double(w[i]) * q[i] * x[i];
    }
    const double det = sw * sl2 - sl * sl;
    if (!(det > 0)) return;
    double s = (sw * slx - sl * sx) / det;
    double m = (sl2 * sx - sl * slx) / det;
    if (min_le_zero && m > 0) {
      m = 0;
      s = sl2 > 0 ? slx / sl2 : 0;
    }
    consider(q, float(s), float(m));
  };
  auto levels = [&](float iscale, float m) {
    for (int i = 0; i < n; ++i) tmp[i] = uint8_t(clampi(nearest_int(iscale * (x[i] - m)), 0, nmax));
  };
  // The plain min/max rounding, as is, and refitted.
  const float iscale0 = float(nmax) / (mx - mn);
  levels(iscale0, mn);
  consider(tmp, (mx - mn) / float(nmax), mn);
  fit(tmp);
  for (int k = -10; k <= 10; ++k) {
    const float target = float(nmax) + 0.1f * k;
    if (target <= 0.5f) continue;
    levels(target / (mx - mn), mn);
    fit(tmp);
  }
  for (int it = 0; it < 4 && best_s > 0; ++it) {
    const double before = best_err;
    levels(1.0f / best_s, best_m);
    fit(tmp);
    if (!(best_err < before)) break;
  }
  *m_out = best_m;
  return best_s;
}

static double finish_sym_generic(int n, const float* x, const float* w, float dl, int lo, int hi, int8_t* L) {
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
  double e = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = int8_t(clampi(nearest_int(x[i] * id), lo, hi));
    const double diff = double(dl * float(L[i])) - x[i];
    e += w[i] * diff * diff;
  }
  return e;
}

static double finish_asym_generic(int n, const float* x, const float* w, float dl, float ml, int nmax, uint8_t* L) {
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
  double e = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = uint8_t(clampi(nearest_int((x[i] + ml) * id), 0, nmax));
    const double diff = double(dl * float(L[i]) - ml) - x[i];
    e += w[i] * diff * diff;
  }
  return e;
}

// ---------------------------------------------------------------------------------------------
// Fast searches (blocks of a multiple of 8 values, all finite): every candidate scale costs one
// pass over the block that rounds the levels and accumulates the three weighted sums the least
// squares fit and its error need (sum w q, sum w q^2, sum w q x); the error of a (scale, offset)
// pair follows from those sums in closed form, so no candidate re-reads the block a second time.
// The loops run over 8 independent float lanes, which the compiler turns into SIMD code on the
// baseline ISA (SSE2 on x86-64) without reassociating anything; rounding is the float
// magic-number trick (half to even) after clamping to the level range, so NaN-free inputs never
// reach an integer conversion out of range.
// ---------------------------------------------------------------------------------------------
namespace {

constexpr int kLanes = 8;
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: (v + M) - M rounds |v| < 2^22 to an integer

// One candidate scale of search_sym: its levels' score slx^2 / sll (larger is better) and
// least-squares scale slx / sll; ok is false when the levels are all zero (sll = 0).
struct SymScore {
  double score;
  float s;
  bool ok;
};
// One candidate of search_asym: the least-squares (scale s, offset m) of its levels, rounded to
// float, and the error of that pair; ok is false when the fit has no solution or s < 0.
struct AsymFit {
  double err;
  float s, m;
  bool ok;
};

inline float clampf(float v, float lo, float hi) {
  v = v > lo ? v : lo;  // NaN -> lo
  return v < hi ? v : hi;
}
inline float round_small(float v) { return (v + kRoundMagic) - kRoundMagic; }

inline double lane_sum(const float* a) {
  double s = 0;
  for (int k = 0; k < kLanes; ++k) s += a[k];
  return s;
}

// All values finite (one multiply-add pass; a NaN or infinity poisons the lane sums).
bool all_finite(int n, const float* x) {
  float acc[kLanes] = {};
  for (int i = 0; i < n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += x[i + k] * 0.0f;
  for (int k = 0; k < kLanes; ++k)
    if (acc[k] != 0.0f) return false;
  return true;
}

#if defined(__SSE2__)
// x86-64 baseline: the same lane arithmetic written with SSE2 intrinsics (two 4-float registers per
// 8 values), so the result does not depend on what the auto-vectoriser makes of the loops above.
// _mm_max_ps(v, lo) returns lo when v is NaN, like clampf.
inline double hsum2(__m128 a, __m128 b) {
  alignas(16) float t[8];
  _mm_store_ps(t, a);
  _mm_store_ps(t + 4, b);
  return lane_sum(t);
}

struct Moments {
  double sw = 0, sx = 0, sxx = 0;
};

Moments moments_sse(int n, const float* x, const float* w) {
  __m128 a0 = _mm_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0;
  for (int i = 0; i < n; i += 8) {
    const __m128 x0 = _mm_loadu_ps(x + i), x1 = _mm_loadu_ps(x + i + 4);
    const __m128 w0 = _mm_loadu_ps(w + i), w1 = _mm_loadu_ps(w + i + 4);
    const __m128 wx0 = _mm_mul_ps(w0, x0), wx1 = _mm_mul_ps(w1, x1);
    a0 = _mm_add_ps(a0, w0);
    a1 = _mm_add_ps(a1, w1);
    b0 = _mm_add_ps(b0, wx0);
    b1 = _mm_add_ps(b1, wx1);
    c0 = _mm_add_ps(c0, _mm_mul_ps(wx0, x0));
    c1 = _mm_add_ps(c1, _mm_mul_ps(wx1, x1));
  }
  return {hsum2(a0, a1), hsum2(b0, b1), hsum2(c0, c1)};
}

struct LevelSums {
  double sl, sll, slx;
};

#ifdef EDGELLAMA_QUANT_AVX
QUANT_AVX_FN Moments moments_avx(int n, const float* x, const float* w);
#endif
Moments moments_sse(int n, const float* x, const float* w);
Moments moments(int n, const float* x, const float* w) {
#ifdef EDGELLAMA_QUANT_AVX
  if (kUseAvx) return moments_avx(n, x, w);
#endif
  return moments_sse(n, x, w);
}

LevelSums level_sums_sse(int n, const float* x, const float* w, float iscale, float off, float lo, float hi) {
  const __m128 vis = _mm_set1_ps(iscale), voff = _mm_set1_ps(off), vlo = _mm_set1_ps(lo), vhi = _mm_set1_ps(hi);
  const __m128 vm = _mm_set1_ps(kRoundMagic);
  __m128 a0 = _mm_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0;
  for (int i = 0; i < n; i += 8) {
    const __m128 x0 = _mm_loadu_ps(x + i), x1 = _mm_loadu_ps(x + i + 4);
    const __m128 w0 = _mm_loadu_ps(w + i), w1 = _mm_loadu_ps(w + i + 4);
    __m128 q0 = _mm_min_ps(_mm_max_ps(_mm_mul_ps(vis, _mm_sub_ps(x0, voff)), vlo), vhi);
    __m128 q1 = _mm_min_ps(_mm_max_ps(_mm_mul_ps(vis, _mm_sub_ps(x1, voff)), vlo), vhi);
    q0 = _mm_sub_ps(_mm_add_ps(q0, vm), vm);
    q1 = _mm_sub_ps(_mm_add_ps(q1, vm), vm);
    const __m128 wq0 = _mm_mul_ps(w0, q0), wq1 = _mm_mul_ps(w1, q1);
    a0 = _mm_add_ps(a0, wq0);
    a1 = _mm_add_ps(a1, wq1);
    b0 = _mm_add_ps(b0, _mm_mul_ps(wq0, q0));
    b1 = _mm_add_ps(b1, _mm_mul_ps(wq1, q1));
    c0 = _mm_add_ps(c0, _mm_mul_ps(wq0, x0));
    c1 = _mm_add_ps(c1, _mm_mul_ps(wq1, x1));
  }
  return {hsum2(a0, a1), hsum2(b0, b1), hsum2(c0, c1)};
}

double error_affine_sse(int n, const float* x, const float* w, float dl, float ml, float nmax) {
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
  const __m128 vid = _mm_set1_ps(id), vdl = _mm_set1_ps(dl), vml = _mm_set1_ps(ml), vhi = _mm_set1_ps(nmax);
  const __m128 vlo = _mm_setzero_ps(), vm = _mm_set1_ps(kRoundMagic);
  __m128 a0 = _mm_setzero_ps(), a1 = a0;
  for (int i = 0; i < n; i += 8) {
    const __m128 x0 = _mm_loadu_ps(x + i), x1 = _mm_loadu_ps(x + i + 4);
    __m128 q0 = _mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_add_ps(x0, vml), vid), vlo), vhi);
    __m128 q1 = _mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_add_ps(x1, vml), vid), vlo), vhi);
    q0 = _mm_sub_ps(_mm_add_ps(q0, vm), vm);
    q1 = _mm_sub_ps(_mm_add_ps(q1, vm), vm);
    const __m128 d0 = _mm_sub_ps(_mm_sub_ps(_mm_mul_ps(vdl, q0), vml), x0);
    const __m128 d1 = _mm_sub_ps(_mm_sub_ps(_mm_mul_ps(vdl, q1), vml), x1);
    a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(w + i), d0), d0));
    a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(w + i + 4), d1), d1));
  }
  return hsum2(a0, a1);
}

double error_scaled_sse(int n, const float* x, const float* w, float dl, float lo, float hi) {
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
  const __m128 vid = _mm_set1_ps(id), vdl = _mm_set1_ps(dl), vlo = _mm_set1_ps(lo), vhi = _mm_set1_ps(hi);
  const __m128 vm = _mm_set1_ps(kRoundMagic);
  __m128 a0 = _mm_setzero_ps(), a1 = a0;
  for (int i = 0; i < n; i += 8) {
    const __m128 x0 = _mm_loadu_ps(x + i), x1 = _mm_loadu_ps(x + i + 4);
    __m128 q0 = _mm_min_ps(_mm_max_ps(_mm_mul_ps(x0, vid), vlo), vhi);
    __m128 q1 = _mm_min_ps(_mm_max_ps(_mm_mul_ps(x1, vid), vlo), vhi);
    q0 = _mm_sub_ps(_mm_add_ps(q0, vm), vm);
    q1 = _mm_sub_ps(_mm_add_ps(q1, vm), vm);
    const __m128 d0 = _mm_sub_ps(_mm_mul_ps(vdl, q0), x0);
    const __m128 d1 = _mm_sub_ps(_mm_mul_ps(vdl, q1), x1);
    a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(w + i), d0), d0));
    a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(w + i + 4), d1), d1));
  }
  return hsum2(a0, a1);
}

// The same 8 lanes in one 256-bit register where the CPU has AVX: lane k still accumulates values
// i + k in the same order with the same (unfused) operations, so the sums, and so every chosen
// scale, are bit for bit those of the SSE2 code above, in half the instructions. GCC/Clang compile
// these functions for AVX by attribute; the choice is made once at start-up (kUseAvx).
#ifdef EDGELLAMA_QUANT_AVX
QUANT_AVX_FN inline double hsum8(__m256 a) {
  alignas(32) float t[8];
  _mm256_store_ps(t, a);
  return lane_sum(t);
}

// Four 8-lane float sums as doubles, each added lane 0, 1, ..., 7 like lane_sum, in one 4-wide
// double register (lane j of the result: v_j's sum).
QUANT_AVX_FN inline __m256d lane_sums4(__m256 v0, __m256 v1, __m256 v2, __m256 v3) {
  // transpose: u_k holds lane k of v0..v3 in its low half and lane k + 4 in its high half
  const __m256 t0 = _mm256_unpacklo_ps(v0, v1), t1 = _mm256_unpackhi_ps(v0, v1);
  const __m256 t2 = _mm256_unpacklo_ps(v2, v3), t3 = _mm256_unpackhi_ps(v2, v3);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256d s = _mm256_setzero_pd();
  s = _mm256_add_pd(s, _mm256_cvtps_pd(_mm256_castps256_ps128(u0)));
  s = _mm256_add_pd(s, _mm256_cvtps_pd(_mm256_castps256_ps128(u1)));
  s = _mm256_add_pd(s, _mm256_cvtps_pd(_mm256_castps256_ps128(u2)));
  s = _mm256_add_pd(s, _mm256_cvtps_pd(_mm256_castps256_ps128(u3)));
  s = _mm256_add_pd(s, _mm256_cvtps_pd(_mm256_extractf128_ps(u0, 1)));
  s = _mm256_add_pd(s, _mm256_cvtps_pd(_mm256_extractf128_ps(u1, 1)));
  s = _mm256_add_pd(s, _mm256_cvtps_pd(_mm256_extractf128_ps(u2, 1)));
  s = _mm256_add_pd(s, _mm256_cvtps_pd(_mm256_extractf128_ps(u3, 1)));
  return s;
}

// moments_sse's 8 lanes in one register, reduced like lane_sum.
QUANT_AVX_FN Moments moments_avx(int n, const float* x, const float* w) {
  __m256 a = _mm256_setzero_ps(), b = a, c = a;
  for (int i = 0; i < n; i += 8) {
    const __m256 x0 = _mm256_loadu_ps(x + i), w0 = _mm256_loadu_ps(w + i);
    const __m256 wx = _mm256_mul_ps(w0, x0);
    a = _mm256_add_ps(a, w0);
    b = _mm256_add_ps(b, wx);
    c = _mm256_add_ps(c, _mm256_mul_ps(wx, x0));
  }
  alignas(32) double s[4];
  _mm256_store_pd(s, lane_sums4(a, b, c, c));
  return {s[0], s[1], s[2]};
}

QUANT_AVX_FN LevelSums level_sums_avx(int n, const float* x, const float* w, float iscale, float off, float lo,
                                      float hi) {
  const __m256 vis = _mm256_set1_ps(iscale), voff = _mm256_set1_ps(off), vlo = _mm256_set1_ps(lo);
  const __m256 vhi = _mm256_set1_ps(hi), vm = _mm256_set1_ps(kRoundMagic);
  __m256 a = _mm256_setzero_ps(), b = a, c = a;
  for (int i = 0; i < n; i += 8) {
    const __m256 x0 = _mm256_loadu_ps(x + i), w0 = _mm256_loadu_ps(w + i);
    __m256 q = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(vis, _mm256_sub_ps(x0, voff)), vlo), vhi);
    q = _mm256_sub_ps(_mm256_add_ps(q, vm), vm);
    const __m256 wq = _mm256_mul_ps(w0, q);
    a = _mm256_add_ps(a, wq);
    b = _mm256_add_ps(b, _mm256_mul_ps(wq, q));
    c = _mm256_add_ps(c, _mm256_mul_ps(wq, x0));
  }
  alignas(32) double s[4];
  _mm256_store_pd(s, lane_sums4(a, b, c, c));  // the three reductions side by side
  return {s[0], s[1], s[2]};
}

QUANT_AVX_FN double error_affine_avx(int n, const float* x, const float* w, float dl, float ml, float nmax) {
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
  const __m256 vid = _mm256_set1_ps(id), vdl = _mm256_set1_ps(dl), vml = _mm256_set1_ps(ml);
  const __m256 vhi = _mm256_set1_ps(nmax), vlo = _mm256_setzero_ps(), vm = _mm256_set1_ps(kRoundMagic);
  __m256 a = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) {
    const __m256 x0 = _mm256_loadu_ps(x + i);
    __m256 q = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_add_ps(x0, vml), vid), vlo), vhi);
    q = _mm256_sub_ps(_mm256_add_ps(q, vm), vm);
    const __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_mul_ps(vdl, q), vml), x0);
    a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), d), d));
  }
  return hsum8(a);
}

QUANT_AVX_FN double error_scaled_avx(int n, const float* x, const float* w, float dl, float lo, float hi) {
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
  const __m256 vid = _mm256_set1_ps(id), vdl = _mm256_set1_ps(dl), vlo = _mm256_set1_ps(lo);
  const __m256 vhi = _mm256_set1_ps(hi), vm = _mm256_set1_ps(kRoundMagic);
  __m256 a = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) {
    const __m256 x0 = _mm256_loadu_ps(x + i);
    __m256 q = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x0, vid), vlo), vhi);
    q = _mm256_sub_ps(_mm256_add_ps(q, vm), vm);
    const __m256 d = _mm256_sub_ps(_mm256_mul_ps(vdl, q), x0);
    a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), d), d));
  }
  return hsum8(a);
}

// Several candidate scales of one block at once (a search tries 10-14 scales per block, the K-quant
// scale refinement 3-9): groups of four candidates share the loads of x and w, and the four 8-lane
// float sums are turned into doubles and added lane 0, 1, ..., 7 in one 4-wide double register,
// in lane_sum's order, instead of eight dependent scalar adds per sum. Every candidate's float lane
// arithmetic is the single-candidate code's, operation for operation, so the results are bit for
// bit level_sums / error_scaled / error_affine of each candidate. Blocks of 16 values (Q2_K,
// Q3_K, Q6_K) spend most of a single-candidate pass in that reduction and the call around it.

// Candidates c0 .. c0 + 3 of a group; a short last group repeats its last candidate.
inline int group_member(int c0, int j, int nc) { return std::min(c0 + j, nc - 1); }

// The level sums of candidates c0 .. c0 + 3 as three 4-wide double vectors (sl, sll, slx).
QUANT_AVX_FN inline void level_sums4_avx(int n, const float* x, const float* w, const float* iscale, int c0, int nc,
                                         float off, float lo, float hi, __m256d* sl, __m256d* sll, __m256d* slx) {
  const __m256 voff = _mm256_set1_ps(off), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const __m256 vm = _mm256_set1_ps(kRoundMagic);
  __m256 vis[4], a[4], b[4], c[4];
  for (int j = 0; j < 4; ++j) {
    vis[j] = _mm256_set1_ps(iscale[group_member(c0, j, nc)]);
    a[j] = b[j] = c[j] = _mm256_setzero_ps();
  }
  for (int i = 0; i < n; i += 8) {
    const __m256 x0 = _mm256_loadu_ps(x + i), w0 = _mm256_loadu_ps(w + i);
    const __m256 xo = _mm256_sub_ps(x0, voff);
    for (int j = 0; j < 4; ++j) {
      __m256 q = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(vis[j], xo), vlo), vhi);
      q = _mm256_sub_ps(_mm256_add_ps(q, vm), vm);
      const __m256 wq = _mm256_mul_ps(w0, q);
      a[j] = _mm256_add_ps(a[j], wq);
      b[j] = _mm256_add_ps(b[j], _mm256_mul_ps(wq, q));
      c[j] = _mm256_add_ps(c[j], _mm256_mul_ps(wq, x0));
    }
  }
  *sl = lane_sums4(a[0], a[1], a[2], a[3]);
  *sll = lane_sums4(b[0], b[1], b[2], b[3]);
  *slx = lane_sums4(c[0], c[1], c[2], c[3]);
}

QUANT_AVX_FN inline void store_sums4(__m256d sl, __m256d sll, __m256d slx, int c0, int nc, LevelSums* out) {
  alignas(32) double sa[4], sb[4], sc[4];
  _mm256_store_pd(sa, sl);
  _mm256_store_pd(sb, sll);
  _mm256_store_pd(sc, slx);
  for (int j = 0; j < 4 && c0 + j < nc; ++j) out[c0 + j] = {sa[j], sb[j], sc[j]};
}

// score_sym of each candidate (see there), four at a time in double vectors: the same IEEE
// operations as the scalar code, so the same bits.
QUANT_AVX_FN void score_sym_many_avx(int n, const float* x, const float* w, const float* iscale, int nc, float lo,
                                     float hi, SymScore* out) {
  for (int c0 = 0; c0 < nc; c0 += 4) {
    __m256d sl, sll, slx;
    level_sums4_avx(n, x, w, iscale, c0, nc, 0.0f, lo, hi, &sl, &sll, &slx);
    const __m256d ok = _mm256_cmp_pd(sll, _mm256_setzero_pd(), _CMP_GT_OQ);
    alignas(32) double score[4];
    alignas(16) float sc[4];
    _mm256_store_pd(score, _mm256_div_pd(_mm256_mul_pd(slx, slx), sll));
    _mm_store_ps(sc, _mm256_cvtpd_ps(_mm256_div_pd(slx, sll)));
    const int okm = _mm256_movemask_pd(ok);
    for (int j = 0; j < 4 && c0 + j < nc; ++j)
      out[c0 + j] = (okm >> j) & 1 ? SymScore{score[j], sc[j], true} : SymScore{0.0, 0.0f, false};
  }
}

// fit_asym of each candidate (see there), four at a time; sums[c] receives candidate c's sums.
QUANT_AVX_FN void fit_asym_many_avx(int n, const float* x, const float* w, const float* iscale, int nc, float off,
                                    float fmax, const Moments& mo, bool min_le_zero, LevelSums* sums, AsymFit* out) {
  const __m256d zero = _mm256_setzero_pd(), two = _mm256_set1_pd(2.0);
  const __m256d sw = _mm256_set1_pd(mo.sw), sx = _mm256_set1_pd(mo.sx), sxx = _mm256_set1_pd(mo.sxx);
  for (int c0 = 0; c0 < nc; c0 += 4) {
    __m256d sl, sll, slx;
    level_sums4_avx(n, x, w, iscale, c0, nc, off, 0.0f, fmax, &sl, &sll, &slx);
    store_sums4(sl, sll, slx, c0, nc, sums);
    const __m256d det = _mm256_sub_pd(_mm256_mul_pd(sw, sll), _mm256_mul_pd(sl, sl));
    const __m256d ok_det = _mm256_cmp_pd(det, zero, _CMP_GT_OQ);
    __m256d s = _mm256_div_pd(_mm256_sub_pd(_mm256_mul_pd(sw, slx), _mm256_mul_pd(sl, sx)), det);
    __m256d m = _mm256_div_pd(_mm256_sub_pd(_mm256_mul_pd(sll, sx), _mm256_mul_pd(sl, slx)), det);
    if (min_le_zero) {
      const __m256d m_pos = _mm256_cmp_pd(m, zero, _CMP_GT_OQ);
      const __m256d s_alt = _mm256_and_pd(_mm256_div_pd(slx, sll), _mm256_cmp_pd(sll, zero, _CMP_GT_OQ));
      s = _mm256_blendv_pd(s, s_alt, m_pos);
      m = _mm256_andnot_pd(m_pos, m);
    }
    const __m128 sf = _mm256_cvtpd_ps(s), mf = _mm256_cvtpd_ps(m);
    const __m256d sd = _mm256_cvtps_pd(sf), md = _mm256_cvtps_pd(mf);
    const __m256d two_s = _mm256_mul_pd(two, sd);
    __m256d e = _mm256_sub_pd(sxx, _mm256_mul_pd(two_s, slx));
    e = _mm256_sub_pd(e, _mm256_mul_pd(_mm256_mul_pd(two, md), sx));
    e = _mm256_add_pd(e, _mm256_mul_pd(_mm256_mul_pd(sd, sd), sll));
    e = _mm256_add_pd(e, _mm256_mul_pd(_mm256_mul_pd(two_s, md), sl));
    e = _mm256_add_pd(e, _mm256_mul_pd(_mm256_mul_pd(md, md), sw));
    const __m128 ok_s = _mm_cmp_ps(sf, _mm_setzero_ps(), _CMP_GE_OQ);
    alignas(32) double ev[4];
    alignas(16) float sv[4], mv[4];
    _mm256_store_pd(ev, e);
    _mm_store_ps(sv, sf);
    _mm_store_ps(mv, mf);
    const int ok = _mm256_movemask_pd(ok_det) & _mm_movemask_ps(ok_s);
    for (int j = 0; j < 4 && c0 + j < nc; ++j)
      out[c0 + j] = (ok >> j) & 1 ? AsymFit{ev[j], sv[j], mv[j], true} : AsymFit{0.0, sv[j], mv[j], false};
  }
}

QUANT_AVX_FN void error_scaled_many_avx(int n, const float* x, const float* w, const float* dl, int nc, float lo,
                                        float hi, double* out) {
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi), vm = _mm256_set1_ps(kRoundMagic);
  for (int c0 = 0; c0 < nc; c0 += 4) {
    __m256 vid[4], vdl[4], a[4];
    for (int j = 0; j < 4; ++j) {
      const float d = dl[group_member(c0, j, nc)];
      vid[j] = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
      vdl[j] = _mm256_set1_ps(d);
      a[j] = _mm256_setzero_ps();
    }
    for (int i = 0; i < n; i += 8) {
      const __m256 x0 = _mm256_loadu_ps(x + i), w0 = _mm256_loadu_ps(w + i);
      for (int j = 0; j < 4; ++j) {
        __m256 q = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x0, vid[j]), vlo), vhi);
        q = _mm256_sub_ps(_mm256_add_ps(q, vm), vm);
        const __m256 d = _mm256_sub_ps(_mm256_mul_ps(vdl[j], q), x0);
        a[j] = _mm256_add_ps(a[j], _mm256_mul_ps(_mm256_mul_ps(w0, d), d));
      }
    }
    alignas(32) double s[4];
    _mm256_store_pd(s, lane_sums4(a[0], a[1], a[2], a[3]));
    for (int j = 0; j < 4 && c0 + j < nc; ++j) out[c0 + j] = s[j];
  }
}

QUANT_AVX_FN void error_affine_many_avx(int n, const float* x, const float* w, const float* dl, const float* ml,
                                        int nc, float nmax, double* out) {
  const __m256 vhi = _mm256_set1_ps(nmax), vlo = _mm256_setzero_ps(), vm = _mm256_set1_ps(kRoundMagic);
  for (int c0 = 0; c0 < nc; c0 += 4) {
    __m256 vid[4], vdl[4], vml[4], a[4];
    for (int j = 0; j < 4; ++j) {
      const int m = group_member(c0, j, nc);
      vid[j] = _mm256_set1_ps(dl[m] != 0.0f ? 1.0f / dl[m] : 0.0f);
      vdl[j] = _mm256_set1_ps(dl[m]);
      vml[j] = _mm256_set1_ps(ml[m]);
      a[j] = _mm256_setzero_ps();
    }
    for (int i = 0; i < n; i += 8) {
      const __m256 x0 = _mm256_loadu_ps(x + i), w0 = _mm256_loadu_ps(w + i);
      for (int j = 0; j < 4; ++j) {
        __m256 q = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_add_ps(x0, vml[j]), vid[j]), vlo), vhi);
        q = _mm256_sub_ps(_mm256_add_ps(q, vm), vm);
        const __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_mul_ps(vdl[j], q), vml[j]), x0);
        a[j] = _mm256_add_ps(a[j], _mm256_mul_ps(_mm256_mul_ps(w0, d), d));
      }
    }
    alignas(32) double s[4];
    _mm256_store_pd(s, lane_sums4(a[0], a[1], a[2], a[3]));
    for (int j = 0; j < 4 && c0 + j < nc; ++j) out[c0 + j] = s[j];
  }
}

// AVX-512 for blocks of exactly 16 values (Q2_K, Q3_K and Q6_K sub-blocks; Q6_K's whole search is
// these), where the 8-lane code above spends most of a pass in its two half-empty iterations and the
// reductions. The block is one 512-bit register; per candidate, the products of all 16 values are
// formed at once and the upper half added to the lower half. The 8-lane code's lane k holds
// (0 + p[k]) + p[k + 8]; the fold gives p[k] + p[k + 8], the same float except that p[k] = p[k + 8]
// = -0 gives -0 instead of +0, and the double lane sums start from +0 (lane_sum), where a zero's sign
// vanishes. So every sum, and every chosen scale, is bit for bit the AVX / SSE2 code's.
// GCC 12's AVX-512 intrinsics fill unused masked-off sources with _mm512_undefined_*(), which it
// then reports as used uninitialized when the functions are compiled by target attribute (GCC bug
// 105593): silenced for this block only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
QUANT_AVX512_FN inline __m256 fold16(__m512 v) {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// Clamped levels rounded half to even in one instruction instead of the magic-number add and
// subtract: the same value, except that a level in (-0.5, 0) becomes -0 instead of +0. That zero's
// sign reaches the sums only as a zero term, and a lane that is +0 or a non-zero value stays the
// same whatever zero is added (+0 + -0 = +0), so every sum keeps its bits (the tests compare).
QUANT_AVX512_FN inline __m512 round_levels512(__m512 q) {
  return _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// Eight 8-lane float sums as doubles, each added lane 0, 1, ..., 7 from +0 like lane_sum, in one
// 8-wide double register (lane j of the result: r[j]'s sum): an 8 x 8 transpose, then 8 adds.
QUANT_AVX512_FN inline __m512d lane_sums8(const __m256* r) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  // s[k] (k < 4): lane k of r[0..3] in its low half, lane k + 4 in its high half; s[k + 4]: r[4..7]
  const __m256 s[8] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                       _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE),
                       _mm256_shuffle_ps(t4, t6, 0x44), _mm256_shuffle_ps(t4, t6, 0xEE),
                       _mm256_shuffle_ps(t5, t7, 0x44), _mm256_shuffle_ps(t5, t7, 0xEE)};
  __m512d acc = _mm512_setzero_pd();
  for (int k = 0; k < 4; ++k)  // lanes 0..3
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_permute2f128_ps(s[k], s[k + 4], 0x20)));
  for (int k = 0; k < 4; ++k)  // lanes 4..7
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_permute2f128_ps(s[k], s[k + 4], 0x31)));
  return acc;
}

// level_sums_avx for n == 16.
QUANT_AVX512_FN LevelSums level_sums16_avx512(const float* x, const float* w, float iscale, float off, float lo,
                                              float hi) {
  const __m512 x0 = _mm512_loadu_ps(x), w0 = _mm512_loadu_ps(w);
  __m512 q = _mm512_mul_ps(_mm512_set1_ps(iscale), _mm512_sub_ps(x0, _mm512_set1_ps(off)));
  q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(lo)), _mm512_set1_ps(hi));
  q = round_levels512(q);
  const __m512 wq = _mm512_mul_ps(w0, q);
  const __m256 a = fold16(wq), b = fold16(_mm512_mul_ps(wq, q)), c = fold16(_mm512_mul_ps(wq, x0));
  alignas(32) double s[4];
  _mm256_store_pd(s, lane_sums4(a, b, c, c));
  return {s[0], s[1], s[2]};
}

// Candidates c0 .. c0 + 7's sums (weighted q^2, weighted x q) -> out[c0 + k] for those that exist:
// the score (sum x q)^2 / sum q^2 and the least-squares scale, or "not usable" when sum q^2 <= 0.
QUANT_AVX512_FN inline void store_sym_scores(__m512d sll, __m512d slx, int c0, int nc, SymScore* out) {
  const int okm = int(_mm512_cmp_pd_mask(sll, _mm512_setzero_pd(), _CMP_GT_OQ));
  alignas(64) double score[8];
  alignas(32) float sc[8];
  _mm512_store_pd(score, _mm512_div_pd(_mm512_mul_pd(slx, slx), sll));
  _mm256_store_ps(sc, _mm512_cvtpd_ps(_mm512_div_pd(slx, sll)));
  for (int j = 0; j < 8 && c0 + j < nc; ++j)
    out[c0 + j] = (okm >> j) & 1 ? SymScore{score[j], sc[j], true} : SymScore{0.0, 0.0f, false};
}
// score_sym_many_avx for n == 16: eight candidates per group (only sll and slx: the score needs no sl).
QUANT_AVX512_FN void score_sym_many16_avx512(const float* x, const float* w, const float* iscale, int nc, float lo,
                                             float hi, SymScore* out) {
  const __m512 x0 = _mm512_loadu_ps(x), w0 = _mm512_loadu_ps(w);
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  for (int c0 = 0; c0 < nc; c0 += 8) {
    __m256 b[8], c[8];
    for (int j = 0; j < 8; ++j) {
      const __m512 vis = _mm512_set1_ps(iscale[std::min(c0 + j, nc - 1)]);
      __m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(vis, x0), vlo), vhi);  // x - 0 = x
      q = round_levels512(q);
      const __m512 wq = _mm512_mul_ps(w0, q);
      b[j] = fold16(_mm512_mul_ps(wq, q));
      c[j] = fold16(_mm512_mul_ps(wq, x0));
    }
    const __m512d sll = lane_sums8(b), slx = lane_sums8(c);
    store_sym_scores(sll, slx, c0, nc, out);
  }
}

// One group of score_sym_many_paired_avx512: candidates c0 .. c0 + 2 * PAIRS - 1 (a short group
// repeats its last candidate), PAIRS registers; out[c0 + k] for those that exist.
template <int PAIRS>
QUANT_AVX512_FN inline void score_sym_group_paired_avx512(int n, const float* x, const float* w, const float* iscale,
                                                          int c0, int nc, float lo, float hi, SymScore* out) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  __m512 vis[PAIRS], b[PAIRS], c[PAIRS];
  for (int j = 0; j < PAIRS; ++j) {
    vis[j] = _mm512_insertf32x8(_mm512_set1_ps(iscale[std::min(c0 + 2 * j, nc - 1)]),
                                _mm256_set1_ps(iscale[std::min(c0 + 2 * j + 1, nc - 1)]), 1);
    b[j] = c[j] = _mm512_setzero_ps();
  }
  for (int i = 0; i < n; i += 8) {
    const __m512 x0 = _mm512_broadcast_f32x8(_mm256_loadu_ps(x + i));
    const __m512 w0 = _mm512_broadcast_f32x8(_mm256_loadu_ps(w + i));
    for (int j = 0; j < PAIRS; ++j) {
      __m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(vis[j], x0), vlo), vhi);  // x - 0 = x
      q = round_levels512(q);
      const __m512 wq = _mm512_mul_ps(w0, q);
      b[j] = _mm512_add_ps(b[j], _mm512_mul_ps(wq, q));
      c[j] = _mm512_add_ps(c[j], _mm512_mul_ps(wq, x0));
    }
  }
  __m256 rb[8], rc[8];  // candidate c0 + k's 8 lanes (a missing pair repeats the last one)
  for (int j = 0; j < 4; ++j) {
    const int jj = j < PAIRS ? j : PAIRS - 1;
    rb[2 * j] = _mm512_castps512_ps256(b[jj]);
    rb[2 * j + 1] = _mm512_extractf32x8_ps(b[jj], 1);
    rc[2 * j] = _mm512_castps512_ps256(c[jj]);
    rc[2 * j + 1] = _mm512_extractf32x8_ps(c[jj], 1);
  }
  const __m512d sll = lane_sums8(rb), slx = lane_sums8(rc);
  store_sym_scores(sll, slx, c0, nc, out);
}

// score_sym_many_avx for any n that is a multiple of 8 (the 32-value blocks of Q4_0 / Q5_0 / Q8_0):
// two candidates per 512-bit register, candidate 2j in the low 256 bits and 2j + 1 in the high ones,
// each half doing the 8-lane code's operations on the same 8 values (x and w loaded into both
// halves), so every lane sum is the 8-lane code's bit for bit; up to eight candidates per group and
// a last group only as wide as it needs (14 candidates: 4 + 3 registers), only sll and slx (the
// score needs no sl).
QUANT_AVX512_FN void score_sym_many_paired_avx512(int n, const float* x, const float* w, const float* iscale, int nc,
                                                  float lo, float hi, SymScore* out) {
  for (int c0 = 0; c0 < nc; c0 += 8) {
    switch (std::min(4, (nc - c0 + 1) / 2)) {
      case 4: score_sym_group_paired_avx512<4>(n, x, w, iscale, c0, nc, lo, hi, out); break;
      case 3: score_sym_group_paired_avx512<3>(n, x, w, iscale, c0, nc, lo, hi, out); break;
      case 2: score_sym_group_paired_avx512<2>(n, x, w, iscale, c0, nc, lo, hi, out); break;
      default: score_sym_group_paired_avx512<1>(n, x, w, iscale, c0, nc, lo, hi, out); break;
    }
  }
}

// score_sym_many_paired_avx512 of 14 candidates for two blocks at once (search_sym2): the two
// blocks' passes interleaved in one loop, which gives the CPU twice the independent work per
// dependency chain (the pass of one block is bound by its chains' latency, not by the arithmetic).
// Per block, the same operations as score_sym_many_paired_avx512 in the same order: the same bits.
template <int PAIRS>
QUANT_AVX512_FN inline void score_sym_group2_paired_avx512(int n, const float* const* x, const float* const* w,
                                                           const float* const* iscale, int c0, int nc, float lo,
                                                           float hi, SymScore* const* out) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  __m512 vis[2][PAIRS], b[2][PAIRS], c[2][PAIRS];
  for (int k = 0; k < 2; ++k)
    for (int j = 0; j < PAIRS; ++j) {
      vis[k][j] = _mm512_insertf32x8(_mm512_set1_ps(iscale[k][std::min(c0 + 2 * j, nc - 1)]),
                                     _mm256_set1_ps(iscale[k][std::min(c0 + 2 * j + 1, nc - 1)]), 1);
      b[k][j] = c[k][j] = _mm512_setzero_ps();
    }
  for (int i = 0; i < n; i += 8) {
    for (int k = 0; k < 2; ++k) {
      const __m512 x0 = _mm512_broadcast_f32x8(_mm256_loadu_ps(x[k] + i));
      const __m512 w0 = _mm512_broadcast_f32x8(_mm256_loadu_ps(w[k] + i));
      for (int j = 0; j < PAIRS; ++j) {
        __m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(vis[k][j], x0), vlo), vhi);
        q = round_levels512(q);
        const __m512 wq = _mm512_mul_ps(w0, q);
        b[k][j] = _mm512_add_ps(b[k][j], _mm512_mul_ps(wq, q));
        c[k][j] = _mm512_add_ps(c[k][j], _mm512_mul_ps(wq, x0));
      }
    }
  }
  for (int k = 0; k < 2; ++k) {
    __m256 rb[8], rc[8];
    for (int j = 0; j < 4; ++j) {
      const int jj = j < PAIRS ? j : PAIRS - 1;
      rb[2 * j] = _mm512_castps512_ps256(b[k][jj]);
      rb[2 * j + 1] = _mm512_extractf32x8_ps(b[k][jj], 1);
      rc[2 * j] = _mm512_castps512_ps256(c[k][jj]);
      rc[2 * j + 1] = _mm512_extractf32x8_ps(c[k][jj], 1);
    }
    store_sym_scores(lane_sums8(rb), lane_sums8(rc), c0, nc, out[k]);
  }
}

QUANT_AVX512_FN void score_sym_many2_paired_avx512(int n, const float* x0, const float* w0, const float* is0,
                                                   SymScore* out0, const float* x1, const float* w1,
                                                   const float* is1, SymScore* out1, float lo, float hi) {
  const float* const x[2] = {x0, x1};
  const float* const w[2] = {w0, w1};
  const float* const is[2] = {is0, is1};
  SymScore* const out[2] = {out0, out1};
  score_sym_group2_paired_avx512<4>(n, x, w, is, 0, 14, lo, hi, out);
  score_sym_group2_paired_avx512<3>(n, x, w, is, 8, 14, lo, hi, out);
}

// error_scaled_many_avx for n == 16 (groups of four: the K-quant refinement has 2-3 candidates).
QUANT_AVX512_FN void error_scaled_many16_avx512(const float* x, const float* w, const float* dl, int nc, float lo,
                                                float hi, double* out) {
  const __m512 x0 = _mm512_loadu_ps(x), w0 = _mm512_loadu_ps(w);
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  for (int c0 = 0; c0 < nc; c0 += 4) {
    __m256 a[4];
    for (int j = 0; j < 4; ++j) {
      const float d = dl[group_member(c0, j, nc)];
      const __m512 vid = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f), vdl = _mm512_set1_ps(d);
      __m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x0, vid), vlo), vhi);
      q = round_levels512(q);
      const __m512 diff = _mm512_sub_ps(_mm512_mul_ps(vdl, q), x0);
      a[j] = fold16(_mm512_mul_ps(_mm512_mul_ps(w0, diff), diff));
    }
    alignas(32) double s[4];
    _mm256_store_pd(s, lane_sums4(a[0], a[1], a[2], a[3]));
    for (int j = 0; j < 4 && c0 + j < nc; ++j) out[c0 + j] = s[j];
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // EDGELLAMA_QUANT_AVX

LevelSums level_sums(int n, const float* x, const float* w, float iscale, float off, float lo, float hi) {
#ifdef EDGELLAMA_QUANT_AVX
  if (kUseAvx512 && n == 16) return level_sums16_avx512(x, w, iscale, off, lo, hi);
  if (kUseAvx) return level_sums_avx(n, x, w, iscale, off, lo, hi);
#endif
  return level_sums_sse(n, x, w, iscale, off, lo, hi);
}
double error_affine(int n, const float* x, const float* w, float dl, float ml, float nmax) {
#ifdef EDGELLAMA_QUANT_AVX
  if (kUseAvx) return error_affine_avx(n, x, w, dl, ml, nmax);
#endif
  return error_affine_sse(n, x, w, dl, ml, nmax);
}
double error_scaled(int n, const float* x, const float* w, float dl, float lo, float hi) {
#ifdef EDGELLAMA_QUANT_AVX
  if (kUseAvx) return error_scaled_avx(n, x, w, dl, lo, hi);
#endif
  return error_scaled_sse(n, x, w, dl, lo, hi);
}
#else
struct Moments {
  double sw = 0, sx = 0, sxx = 0;
};

Moments moments(int n, const float* x, const float* w) {
  float a[kLanes] = {}, b[kLanes] = {}, c[kLanes] = {};
  for (int i = 0; i < n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const float wx = w[i + k] * x[i + k];
      a[k] += w[i + k];
      b[k] += wx;
      c[k] += wx * x[i + k];
    }
  return {lane_sum(a), lane_sum(b), lane_sum(c)};
}

struct LevelSums {
  double sl, sll, slx;
};

// Levels q = clamp(round(iscale * (x - off)), lo, hi) and their weighted sums.
LevelSums level_sums(int n, const float* x, const float* w, float iscale, float off, float lo, float hi) {
  float a[kLanes] = {}, b[kLanes] = {}, c[kLanes] = {};
  for (int i = 0; i < n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const float q = round_small(clampf(iscale * (x[i + k] - off), lo, hi));
      const float wq = w[i + k] * q;
      a[k] += wq;
      b[k] += wq * q;
      c[k] += wq * x[i + k];
    }
  return {lane_sum(a), lane_sum(b), lane_sum(c)};
}

// Weighted squared error of x ~= dl * q - ml with q = clamp(round((x + ml) / dl), 0, nmax).
double error_affine(int n, const float* x, const float* w, float dl, float ml, float nmax) {
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
  float a[kLanes] = {};
  for (int i = 0; i < n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const float q = round_small(clampf((x[i + k] + ml) * id, 0.0f, nmax));
      const float diff = dl * q - ml - x[i + k];
      a[k] += w[i + k] * diff * diff;
    }
  return lane_sum(a);
}

// Same for the symmetric grid x ~= dl * q, q in [lo, hi].
double error_scaled(int n, const float* x, const float* w, float dl, float lo, float hi) {
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
  float a[kLanes] = {};
  for (int i = 0; i < n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const float q = round_small(clampf(x[i + k] * id, lo, hi));
      const float diff = dl * q - x[i + k];
      a[k] += w[i + k] * diff * diff;
    }
  return lane_sum(a);
}

#endif  // __SSE2__

// error_scaled / error_affine of nc candidates (out[c] is what the single call for candidate c
// returns; the AVX code computes them in groups of four, see lane_sums4).
void error_scaled_many(int n, const float* x, const float* w, const float* dl, int nc, float lo, float hi,
                       double* out) {
#ifdef EDGELLAMA_QUANT_AVX
  if (kUseAvx512 && n == 16) return error_scaled_many16_avx512(x, w, dl, nc, lo, hi, out);
  if (kUseAvx) return error_scaled_many_avx(n, x, w, dl, nc, lo, hi, out);
#endif
  for (int c = 0; c < nc; ++c) out[c] = error_scaled(n, x, w, dl[c], lo, hi);
}
void error_affine_many(int n, const float* x, const float* w, const float* dl, const float* ml, int nc, float nmax,
                       double* out) {
#ifdef EDGELLAMA_QUANT_AVX
  if (kUseAvx) return error_affine_many_avx(n, x, w, dl, ml, nc, nmax, out);
#endif
  for (int c = 0; c < nc; ++c) out[c] = error_affine(n, x, w, dl[c], ml[c], nmax);
}

SymScore score_sym(const LevelSums& r) {
  if (!(r.sll > 0)) return {0.0, 0.0f, false};
  return {r.slx * r.slx / r.sll, float(r.slx / r.sll), true};
}

// Weighted squared error of x ~= s q + m for levels with sums r, in closed form.
double asym_error(const Moments& mo, const LevelSums& r, double s, double m) {
  return mo.sxx - 2 * s * r.slx - 2 * m * mo.sx + s * s * r.sll + 2 * s * m * r.sl + m * m * mo.sw;
}

// Least-squares scale and offset of the levels with sums r (offset clamped to <= 0 if
// min_le_zero, the scale then refitted alone), rounded to float, and their error.
AsymFit fit_asym(const Moments& mo, const LevelSums& r, bool min_le_zero) {
  const double det = mo.sw * r.sll - r.sl * r.sl;
  if (!(det > 0)) return {0.0, 0.0f, 0.0f, false};
  double s = (mo.sw * r.slx - r.sl * mo.sx) / det;
  double m = (r.sll * mo.sx - r.sl * r.slx) / det;
  if (min_le_zero && m > 0) {
    m = 0;
    s = r.sll > 0 ? r.slx / r.sll : 0;
  }
  const float sf = float(s), mf = float(m);
  if (!(sf >= 0)) return {0.0, sf, mf, false};
  return {asym_error(mo, r, sf, mf), sf, mf, true};
}

// score_sym / fit_asym of nc candidate scales (offset 0 / off), each from its level sums.
void score_sym_many(int n, const float* x, const float* w, const float* iscale, int nc, float lo, float hi,
                    SymScore* out) {
#ifdef EDGELLAMA_QUANT_AVX
  if (kUseAvx512 && n == 16) return score_sym_many16_avx512(x, w, iscale, nc, lo, hi, out);
  if (kUseAvx512 && nc > 4) return score_sym_many_paired_avx512(n, x, w, iscale, nc, lo, hi, out);
  if (kUseAvx) return score_sym_many_avx(n, x, w, iscale, nc, lo, hi, out);
#endif
  for (int c = 0; c < nc; ++c) out[c] = score_sym(level_sums(n, x, w, iscale[c], 0.0f, lo, hi));
}
void fit_asym_many(int n, const float* x, const float* w, const float* iscale, int nc, float off, float fmax,
                   const Moments& mo, bool min_le_zero, LevelSums* sums, AsymFit* out) {
#ifdef EDGELLAMA_QUANT_AVX
  if (kUseAvx) return fit_asym_many_avx(n, x, w, iscale, nc, off, fmax, mo, min_le_zero, sums, out);
#endif
  for (int c = 0; c < nc; ++c) {
    sums[c] = level_sums(n, x, w, iscale[c], off, 0.0f, fmax);
    out[c] = fit_asym(mo, sums[c], min_le_zero);
  }
}

#ifdef EDGELLAMA_QUANT_AVX
QUANT_AVX_FN bool finite_absmax_avx(int n, const float* x, float* amax, float* vmax) {
  const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
  __m256 m = _mm256_setzero_ps(), fin = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int i = 0; i < n; i += 8) {
    const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i));
    fin = _mm256_and_ps(fin, _mm256_cmp_ps(a, inf, _CMP_LT_OQ));  // false for NaN and inf
    m = _mm256_max_ps(m, a);
  }
  if (_mm256_movemask_ps(fin) != 0xFF) return false;
  m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 1));
  m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0x4E));
  m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0xB1));
  *amax = _mm256_cvtss_f32(m);
  *vmax = 0.0f;
  if (*amax == 0.0f) return true;
  for (int i = 0; i < n; i += 8) {
    const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), m, _CMP_EQ_OQ));
    if (hit) {
      *vmax = x[i + __builtin_ctz(unsigned(hit))];
      break;
    }
  }
  return true;
}
#endif

#ifdef EDGELLAMA_QUANT_AVX
// The smallest and largest value with min / max lane by lane; a zero result goes back to the scalar
// scan, whose first-of-equal rule decides between -0 and +0.
QUANT_AVX_FN bool finite_min_max_avx(int n, const float* x, float* mn, float* mx) {
  const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
  __m256 lo = _mm256_loadu_ps(x), hi = lo, fin = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int i = 0; i < n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    fin = _mm256_and_ps(fin, _mm256_cmp_ps(_mm256_andnot_ps(sign, v), inf, _CMP_LT_OQ));
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
  }
  if (_mm256_movemask_ps(fin) != 0xFF) return false;
  lo = _mm256_min_ps(lo, _mm256_permute2f128_ps(lo, lo, 1));
  lo = _mm256_min_ps(lo, _mm256_shuffle_ps(lo, lo, 0x4E));
  lo = _mm256_min_ps(lo, _mm256_shuffle_ps(lo, lo, 0xB1));
  hi = _mm256_max_ps(hi, _mm256_permute2f128_ps(hi, hi, 1));
  hi = _mm256_max_ps(hi, _mm256_shuffle_ps(hi, hi, 0x4E));
  hi = _mm256_max_ps(hi, _mm256_shuffle_ps(hi, hi, 0xB1));
  *mn = _mm256_cvtss_f32(lo);
  *mx = _mm256_cvtss_f32(hi);
  if (*mn == 0.0f || *mx == 0.0f) {
    *mn = *mx = x[0];
    for (int i = 1; i < n; ++i) {
      *mn = std::min(*mn, x[i]);
      *mx = std::max(*mx, x[i]);
    }
  }
  return true;
}
#endif

// All n values finite (else false), their smallest and largest value (std::min / std::max from
// x[0]: the first of equal values, so -0 or +0 as they come). Needs n % kLanes == 0.
bool finite_min_max(int n, const float* x, float* mn, float* mx) {
#ifdef EDGELLAMA_QUANT_AVX
  if (kUseAvx) return finite_min_max_avx(n, x, mn, mx);
#endif
  if (!all_finite(n, x)) return false;
  *mn = *mx = x[0];
  for (int i = 1; i < n; ++i) {
    *mn = std::min(*mn, x[i]);
    *mx = std::max(*mx, x[i]);
  }
  return true;
}

// All n values finite (else false), the largest magnitude and the first value that has it (0, 0
// for an all-zero block). Needs n % kLanes == 0.
bool finite_absmax(int n, const float* x, float* amax, float* vmax) {
#ifdef EDGELLAMA_QUANT_AVX
  if (kUseAvx) return finite_absmax_avx(n, x, amax, vmax);
#endif
  if (!all_finite(n, x)) return false;
  *amax = 0.0f;
  *vmax = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > *amax) {
      *amax = std::fabs(x[i]);
      *vmax = x[i];
    }
  }
  return true;
}


}  // namespace

namespace {
// search_sym's 14 candidates: the largest value mapped to either end of the level range, with small
// perturbations. (7 steps of 0.3 level per end: as good as 21 steps of 0.1 on Gaussian and
// t-distributed weights, within 0.1 % RMSE, at a third of the cost.)
void sym_candidates(float flo, float fhi, float vmax, float* iscales) {
  for (int k = -3; k <= 3; ++k) {
    iscales[2 * (k + 3)] = (flo + 0.3f * float(k)) / vmax;
    iscales[2 * (k + 3) + 1] = (fhi + 0.3f * float(k)) / vmax;
  }
}

// The rest of search_sym once the 14 candidates are scored: the best of them in the order listed,
// then alternately the levels for the best scale and the best scale for those levels. Returns the
// scale; *best_is receives the inverse scale whose levels it fits.
float sym_choose(int n, const float* x, const float* w, float flo, float fhi, const float* iscales,
                 const SymScore* scores, float* best_is_out) {
  double best_score = -1.0;
  float best_s = 0.0f, best_is = 0.0f;
  auto consider = [&](const SymScore& r, float iscale) -> bool {
    if (!r.ok) return false;
    if (r.score > best_score) {
      best_score = r.score;
      best_s = r.s;
      best_is = iscale;
      return true;
    }
    return false;
  };
  for (int c = 0; c < 14; ++c) consider(scores[c], iscales[c]);
  for (int it = 0; it < 4 && best_s != 0.0f; ++it) {
    const float iscale = 1.0f / best_s;
    if (!consider(score_sym(level_sums(n, x, w, iscale, 0.0f, flo, fhi)), iscale)) break;
  }
  *best_is_out = best_is;
  return best_s;
}
}  // namespace

float search_sym(int n, const float* x, const float* w, int lo, int hi, int8_t* L) {
  float amax = 0.0f, vmax = 0.0f;
  if (!(n > 0 && n % kLanes == 0 && n <= 256 && finite_absmax(n, x, &amax, &vmax))) {
    std::vector<int8_t> own(L || n <= 0 ? 0 : size_t(n));
    return search_sym_generic(n, x, w, lo, hi, L ? L : own.data());
  }
  if (!(amax > 1e-30f)) {
    if (L)
      for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  const float flo = float(lo), fhi = float(hi);
  // The 14 passes are independent: they run as one batch, then are compared in the order listed.
  float iscales[14];
  sym_candidates(flo, fhi, vmax, iscales);
  SymScore scores[14];
  score_sym_many(n, x, w, iscales, 14, flo, fhi, scores);
  float best_is = 0.0f;
  const float best_s = sym_choose(n, x, w, flo, fhi, iscales, scores, &best_is);
  if (L)
    for (int i = 0; i < n; ++i) L[i] = int8_t(round_small(clampf(best_is * x[i], flo, fhi)));
  return best_s;
}

void search_sym2(int n, const float* x0, const float* w0, const float* x1, const float* w1, int lo, int hi, float* s0,
                 float* s1) {
#ifdef EDGELLAMA_QUANT_AVX
  float amax0 = 0.0f, vmax0 = 0.0f, amax1 = 0.0f, vmax1 = 0.0f;
  if (kUseAvx512 && n > 0 && n % kLanes == 0 && n != 16 && n <= 256 && finite_absmax(n, x0, &amax0, &vmax0) &&
      finite_absmax(n, x1, &amax1, &vmax1) && amax0 > 1e-30f && amax1 > 1e-30f) {
    const float flo = float(lo), fhi = float(hi);
    float is0[14], is1[14], unused;
    sym_candidates(flo, fhi, vmax0, is0);
    sym_candidates(flo, fhi, vmax1, is1);
    SymScore sc0[14], sc1[14];
    score_sym_many2_paired_avx512(n, x0, w0, is0, sc0, x1, w1, is1, sc1, flo, fhi);
    *s0 = sym_choose(n, x0, w0, flo, fhi, is0, sc0, &unused);
    *s1 = sym_choose(n, x1, w1, flo, fhi, is1, sc1, &unused);
    return;
  }
#endif
  *s0 = search_sym(n, x0, w0, lo, hi, nullptr);
  *s1 = search_sym(n, x1, w1, lo, hi, nullptr);
}

float search_asym(int n, const float* x, const float* w, int nmax, bool min_le_zero, uint8_t* L, float* m_out) {
  float mn = 0.0f, mx = 0.0f;
  if (!(n > 0 && n % kLanes == 0 && n <= 256 && finite_min_max(n, x, &mn, &mx))) {
    std::vector<uint8_t> own(L || n <= 0 ? 0 : size_t(n));
    return search_asym_generic(n, x, w, nmax, min_le_zero, L ? L : own.data(), m_out);
  }
  if (min_le_zero && mn > 0) mn = 0;
  if (!(mx > mn) || !std::isfinite(mx - mn)) {
    if (L)
      for (int i = 0; i < n; ++i) L[i] = 0;
    *m_out = mn;
    return 0.0f;
  }
  const Moments mo = moments(n, x, w);
  const float fmax = float(nmax);
  double best_err = INFINITY;
  float best_s = 0.0f, best_m = mn, best_is = 0.0f, best_off = mn;
  auto consider = [&](double e, float s, float m, float iscale, float off) {
    if (e < best_err) {
      best_err = e;
      best_s = s;
      best_m = m;
      best_is = iscale;
      best_off = off;
      return true;
    }
    return false;
  };
  auto consider_fit = [&](const AsymFit& f, float iscale, float off) {
    return f.ok && consider(f.err, f.s, f.m, iscale, off);
  };
  // The plain min/max rounding, as is and refitted; then the min/max grid stretched by -1..+1
  // levels in steps of 0.2 (as good as steps of 0.1 within 0.05 % RMSE, at half the cost), refitted.
  // The passes are independent: one batch, then considered in the order listed.
  float iscales[11];
  LevelSums sums[11];
  AsymFit fits[11];
  int nc = 0;
  iscales[nc++] = fmax / (mx - mn);
  for (int k = -5; k <= 5; ++k) {
    if (k == 0) continue;  // the plain rounding, first
    const float target = fmax + 0.2f * float(k);
    if (target <= 0.5f) continue;
    iscales[nc++] = target / (mx - mn);
  }
  fit_asym_many(n, x, w, iscales, nc, mn, fmax, mo, min_le_zero, sums, fits);
  const float s_plain = (mx - mn) / fmax;
  if (s_plain >= 0) consider(asym_error(mo, sums[0], s_plain, mn), s_plain, mn, iscales[0], mn);
  for (int c = 0; c < nc; ++c) consider_fit(fits[c], iscales[c], mn);
  for (int it = 0; it < 4 && best_s > 0; ++it) {
    const float is = 1.0f / best_s;
    if (!consider_fit(fit_asym(mo, level_sums(n, x, w, is, best_m, 0.0f, fmax), min_le_zero), is, best_m)) break;
  }
  if (L)
    for (int i = 0; i < n; ++i) L[i] = uint8_t(round_small(clampf(best_is * (x[i] - best_off), 0.0f, fmax)));
  *m_out = best_m;
  return best_s;
}

// The error passes need no finiteness check: a NaN or infinity only makes the error NaN or infinite,
// which never wins a comparison.
double error_sym(int n, const float* x, const float* w, float dl, int lo, int hi) {
  if (n % kLanes != 0) {
    int8_t tmp[256];
    return n <= 256 ? finish_sym_generic(n, x, w, dl, lo, hi, tmp) : INFINITY;
  }
  return error_scaled(n, x, w, dl, float(lo), float(hi));
}

double error_asym(int n, const float* x, const float* w, float dl, float ml, int nmax) {
  if (n % kLanes != 0) {
    uint8_t tmp[256];
    return n <= 256 ? finish_asym_generic(n, x, w, dl, ml, nmax, tmp) : INFINITY;
  }
  return error_affine(n, x, w, dl, ml, float(nmax));
}

void error_sym_many(int n, const float* x, const float* w, const float* dl, int nc, int lo, int hi, double* out) {
  if (n % kLanes != 0) {
    for (int c = 0; c < nc; ++c) out[c] = error_sym(n, x, w, dl[c], lo, hi);
    return;
  }
  error_scaled_many(n, x, w, dl, nc, float(lo), float(hi), out);
}

void error_asym_many(int n, const float* x, const float* w, const float* dl, const float* ml, int nc, int nmax,
                     double* out) {
  if (n % kLanes != 0) {
    for (int c = 0; c < nc; ++c) out[c] = error_asym(n, x, w, dl[c], ml[c], nmax);
    return;
  }
  error_affine_many(n, x, w, dl, ml, nc, float(nmax), out);
}

// Levels and error for a fixed scale: the same rounding as the error passes (clamped, then
// rounded half to even; NaN -> the low end of the range).
double finish_sym(int n, const float* x, const float* w, float dl, int lo, int hi, int8_t* L) {
  if (n % kLanes != 0) return finish_sym_generic(n, x, w, dl, lo, hi, L);
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f, flo = float(lo), fhi = float(hi);
  for (int i = 0; i < n; ++i) L[i] = int8_t(round_small(clampf(x[i] * id, flo, fhi)));
  return error_scaled(n, x, w, dl, flo, fhi);
}

double finish_asym(int n, const float* x, const float* w, float dl, float ml, int nmax, uint8_t* L) {
  if (n % kLanes != 0) return finish_asym_generic(n, x, w, dl, ml, nmax, L);
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f, fmax = float(nmax);
  for (int i = 0; i < n; ++i) L[i] = uint8_t(round_small(clampf((x[i] + ml) * id, 0.0f, fmax)));
  return error_affine(n, x, w, dl, ml, fmax);
}

// finish_sym / finish_asym's levels without their error pass (callers that only need L).
void levels_sym(int n, const float* x, const float* w, float dl, int lo, int hi, int8_t* L) {
  if (n % kLanes != 0) {
    finish_sym_generic(n, x, w, dl, lo, hi, L);
    return;
  }
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f, flo = float(lo), fhi = float(hi);
  for (int i = 0; i < n; ++i) L[i] = int8_t(round_small(clampf(x[i] * id, flo, fhi)));
}

void levels_asym(int n, const float* x, const float* w, float dl, float ml, int nmax, uint8_t* L) {
  if (n % kLanes != 0) {
    finish_asym_generic(n, x, w, dl, ml, nmax, L);
    return;
  }
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f, fmax = float(nmax);
  for (int i = 0; i < n; ++i) L[i] = uint8_t(round_small(clampf((x[i] + ml) * id, 0.0f, fmax)));
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Search variants of the legacy types: best scale (and offset) per 32-value block, then the levels
// re-chosen for the half-precision scale that is actually stored.
// ---------------------------------------------------------------------------------------------
namespace {

using namespace detail;

// The three symmetric 32-value searches take the weights of the whole row, ready (block_weights of
// each block): they depend only on the column, so the matrix driver computes them once per matrix
// instead of once per row and block.

// search_sym's scale of each 32-value block of a row, asked for in order (block 0, 1, 2, ...):
// computed two blocks at a time by search_sym2 (the same floats as one at a time).
class RowSymScales {
 public:
  RowSymScales(const float* x, const float* wrow, int64_t n, int lo, int hi)
      : x_(x), w_(wrow), nb_(n / 32), lo_(lo), hi_(hi) {}
  float scale(int64_t i) {
    if (i % 2 == 1) return next_;
    const float* x = x_ + i * 32;
    const float* w = w_ + i * 32;
    if (i + 1 >= nb_) return search_sym(32, x, w, lo_, hi_, nullptr);
    float s = 0.0f;
    search_sym2(32, x, w, x + 32, w + 32, lo_, hi_, &s, &next_);
    return s;
  }

 private:
  const float* x_;
  const float* w_;
  int64_t nb_;
  int lo_, hi_;
  float next_ = 0.0f;
};

void search_q4_0_w(const float* x, void* y, int64_t n, const float* wrow) {
  block_q4_0* b = static_cast<block_q4_0*>(y);
  RowSymScales scales(x, wrow, n, -8, 7);
  int8_t L[32];
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    const float* w = wrow + i * 32;
    b[i].d = float_to_fp16(scales.scale(i));
    levels_sym(32, x, w, fp16_to_float(b[i].d), -8, 7, L);
    for (int j = 0; j < 16; ++j) b[i].qs[j] = uint8_t((L[j] + 8) | ((L[j + 16] + 8) << 4));
  }
}

void search_q5_0_w(const float* x, void* y, int64_t n, const float* wrow) {
  block_q5_0* b = static_cast<block_q5_0*>(y);
  RowSymScales scales(x, wrow, n, -16, 15);
  int8_t L[32];
  uint8_t q[32];
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    const float* w = wrow + i * 32;
    b[i].d = float_to_fp16(scales.scale(i));
    levels_sym(32, x, w, fp16_to_float(b[i].d), -16, 15, L);
    for (int j = 0; j < 32; ++j) q[j] = uint8_t(L[j] + 16);
    pack_q5(q, b[i].qh, b[i].qs);
  }
}

using SymSearchW = void (*)(const float* x, void* y, int64_t n, const float* wrow);

// The search of a type that takes ready row weights (search_*_w above), else nullptr.
SymSearchW sym_search_w(GGMLType type) {
  switch (type) {
    case GGMLType::Q4_0: return search_q4_0_w;
    case GGMLType::Q5_0: return search_q5_0_w;
    default: return nullptr;
  }
}

// block_weights of every 32-value block of a row of n values (importance: n weights or nullptr).
std::vector<float> row_block_weights(int64_t n, const float* imp) {
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n / 32; ++i) block_weights(32, imp ? imp + i * 32 : nullptr, w.data() + i * 32);
  return w;
}

void search_q4_0(const float* x, void* y, int64_t n, const float* imp) { search_q4_0_w(x, y, n, row_block_weights(n, imp).data()); }
void search_q5_0(const float* x, void* y, int64_t n, const float* imp) { search_q5_0_w(x, y, n, row_block_weights(n, imp).data()); }
// Q8_0 has its own search (quantize_q8_0.cpp), over groups of rows; a single row is a group of one.
void search_q8_0(const float* x, void* y, int64_t n, const float* imp) {
  quantize_q8_0_search_rows(x, 1, n, row_block_weights(n, imp).data(), y);
}

// Q4_1 / Q5_1: x = d * q + m with a free (signed) m.
// The search optimizes (d, m) in float, but the block stores both in fp16; rounding them can undo
// the search's gain. Data that already lies on a grid (a dequantized Q4_1 file) is reproduced exactly
// by a min/max rounding, d = (max-min)/k, m = min, with k the number of grid steps the block spans
// (k = NMAX for a block spanning a full Q4_1 grid, k = 30 for that grid in Q5_1, whose d is half of
// Q4_1's), which the rounded search result can miss by one fp16 step. So the stored pair is the one
// with the smallest weighted error after fp16 rounding among the search's and the min/max roundings
// with k from NMAX/2 to NMAX: never worse than the reference rounding (k = NMAX) in the objective
// the search minimizes. (Smol Q4_1/Q5_1 with an imatrix: KL ratio to llama-quantize 1.03/1.05 before.)
template <int NMAX>
void search_q_1(const float* x, uint16_t* d_out, uint16_t* m_out, uint8_t* q, const float* w) {
  float m = 0.0f;
  const float s = search_asym(32, x, w, NMAX, false, nullptr, &m);
  *d_out = float_to_fp16(s);
  *m_out = float_to_fp16(m);
  float mn = x[0], mx = x[0];
  for (int i = 1; i < 32; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  if (!std::isfinite(mx - mn)) return void(levels_asym(32, x, w, fp16_to_float(*d_out), -fp16_to_float(*m_out), NMAX, q));
  constexpr int kCands = NMAX - NMAX / 2 + 2;  // the search's pair, then k = NMAX/2 .. NMAX
  float dl[kCands], ml[kCands];
  uint16_t dh[kCands];
  dh[0] = *d_out;
  dl[0] = fp16_to_float(*d_out);
  const uint16_t m_ref = float_to_fp16(mn);
  for (int c = 0; c < kCands; ++c) ml[c] = -fp16_to_float(c == 0 ? *m_out : m_ref);  // error_asym: x = d*q - ml
  for (int c = 1; c < kCands; ++c) {
    dh[c] = float_to_fp16((mx - mn) / float(NMAX / 2 + c - 1));
    dl[c] = fp16_to_float(dh[c]);
  }
  double err[kCands];
  error_asym_many(32, x, w, dl, ml, kCands, NMAX, err);
  int best = 0;
  for (int c = 1; c < kCands; ++c)
    if (err[c] < err[best]) best = c;
  if (best != 0) {
    *d_out = dh[best];
    *m_out = m_ref;
  }
  // dequantization computes d * q + m; finish_asym takes the offset with the opposite sign
  levels_asym(32, x, w, fp16_to_float(*d_out), -fp16_to_float(*m_out), NMAX, q);
}

void search_q4_1(const float* x, void* y, int64_t n, const float* imp) {
  block_q4_1* b = static_cast<block_q4_1*>(y);
  float w[32];
  uint8_t q[32];
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    block_weights(32, imp ? imp + i * 32 : nullptr, w);
    search_q_1<15>(x, &b[i].d, &b[i].m, q, w);
    for (int j = 0; j < 16; ++j) b[i].qs[j] = uint8_t(q[j] | (q[j + 16] << 4));
  }
}

void search_q5_1(const float* x, void* y, int64_t n, const float* imp) {
  block_q5_1* b = static_cast<block_q5_1*>(y);
  float w[32];
  uint8_t q[32];
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    block_weights(32, imp ? imp + i * 32 : nullptr, w);
    search_q_1<31>(x, &b[i].d, &b[i].m, q, w);
    pack_q5(q, b[i].qh, b[i].qs);
  }
}

}  // namespace

// K-quant searches live in quantize_k.cpp.
void quantize_q2_K_search(const float* x, void* y, int64_t n, const float* imp);
void quantize_q3_K_search(const float* x, void* y, int64_t n, const float* imp);
void quantize_q4_K_search(const float* x, void* y, int64_t n, const float* imp);
void quantize_q5_K_search(const float* x, void* y, int64_t n, const float* imp);
void quantize_q6_K_search(const float* x, void* y, int64_t n, const float* imp);

void quantize_row_search(GGMLType type, const float* x, void* y, int64_t n, const float* imp) {
  switch (type) {
    case GGMLType::Q4_0: return search_q4_0(x, y, n, imp);
    case GGMLType::Q4_1: return search_q4_1(x, y, n, imp);
    case GGMLType::Q5_0: return search_q5_0(x, y, n, imp);
    case GGMLType::Q5_1: return search_q5_1(x, y, n, imp);
    case GGMLType::Q8_0: return search_q8_0(x, y, n, imp);
    case GGMLType::Q2_K: return quantize_q2_K_search(x, y, n, imp);
    case GGMLType::Q3_K: return quantize_q3_K_search(x, y, n, imp);
    case GGMLType::Q4_K: return quantize_q4_K_search(x, y, n, imp);
    case GGMLType::Q5_K: return quantize_q5_K_search(x, y, n, imp);
    case GGMLType::Q6_K: return quantize_q6_K_search(x, y, n, imp);
    case GGMLType::IQ4_NL: return quantize_iq4_nl_search(x, y, n, imp);
    case GGMLType::IQ4_XS: return quantize_iq4_xs_search(x, y, n, imp);
    case GGMLType::IQ2_XXS: return quantize_iq2_xxs_search(x, y, n, imp);
    case GGMLType::IQ2_XS: return quantize_iq2_xs_search(x, y, n, imp);
    case GGMLType::IQ2_S: return quantize_iq2_s_search(x, y, n, imp);
    case GGMLType::IQ3_XXS: return quantize_iq3_xxs_search(x, y, n, imp);
    case GGMLType::IQ3_S: return quantize_iq3_s_search(x, y, n, imp);
    case GGMLType::IQ1_S: return quantize_iq1_s_search(x, y, n, imp);
    case GGMLType::IQ1_M: return quantize_iq1_m_search(x, y, n, imp);
    default: {
      const TypeTraits& t = type_traits(type);
      if (!t.from_float) throw UnsupportedError(std::string("quantize: type ") + t.name + " has no quantizer");
      t.from_float(x, y, n);
    }
  }
}

static bool is_legacy(GGMLType t) {
  return t == GGMLType::Q4_0 || t == GGMLType::Q4_1 || t == GGMLType::Q5_0 || t == GGMLType::Q5_1 ||
         t == GGMLType::Q8_0;
}

void quantize_matrix(GGMLType type, const float* x, void* y, int64_t nrows, int64_t ncols, const float* importance,
                     QuantMethod method, int n_threads) {
  quantize_matrix_from(type, SourceFormat::kF32, x, y, nrows, ncols, importance, method, n_threads);
}

#ifdef EDGELLAMA_QUANT_AVX
// Halves to floats with F16C (every AVX2 CPU has it), 8 at a time: exact like the table, except that
// F16C quiets a signalling NaN; a group of 8 holding a NaN is converted by the table instead, so
// the floats are the table's bit for bit.
__attribute__((target("avx,f16c"))) static void widen_f16_f16c(const uint16_t* h, int64_t n, float* out) {
  const float* table = fp16_table();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i)));
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
      for (int k = 0; k < 8; ++k) out[i + k] = table[h[i + k]];
    } else {
      _mm256_storeu_ps(out + i, v);
    }
  }
  for (; i < n; ++i) out[i] = table[h[i]];
}
#endif

// One row of the source as float32: the row itself for F32, else widened into `buf` (ncols floats).
static const float* source_row(SourceFormat format, const void* x, int64_t r, int64_t ncols, float* buf) {
  switch (format) {
    case SourceFormat::kF32:
      return static_cast<const float*>(x) + r * ncols;
    case SourceFormat::kF16: {
      const uint16_t* h = static_cast<const uint16_t*>(x) + r * ncols;
#ifdef EDGELLAMA_QUANT_AVX
      if (kUseAvx) {
        widen_f16_f16c(h, ncols, buf);
        return buf;
      }
#endif
      const float* table = fp16_table();
      for (int64_t i = 0; i < ncols; ++i) buf[i] = table[h[i]];
      return buf;
    }
    case SourceFormat::kBF16: {
      const uint16_t* h = static_cast<const uint16_t*>(x) + r * ncols;
      for (int64_t i = 0; i < ncols; ++i) buf[i] = bits_to_float(uint32_t(h[i]) << 16);
      return buf;
    }
  }
  return nullptr;
}

void quantize_matrix_from(GGMLType type, SourceFormat format, const void* x, void* y, int64_t nrows, int64_t ncols,
                          const float* importance, QuantMethod method, int n_threads) {
  const TypeTraits& t = type_traits(type);
  if (!t.from_float) throw UnsupportedError(std::string("quantize: type ") + t.name + " has no quantizer");
  size_t row_bytes = 0;
  if (nrows < 0 || !row_size_checked(t, ncols, &row_bytes))
    throw ArgumentError("quantize: a row of " + std::to_string(ncols) + " values is not a whole number of " + t.name +
                        " blocks (" + std::to_string(t.block_size) + " values each)");
  if (method == QuantMethod::kReference && importance)
    throw ArgumentError("quantize: reference rounding does not take importance weights");
  const bool search = method == QuantMethod::kSearch ||
                      (method == QuantMethod::kAuto && (!is_legacy(type) || importance != nullptr));
  if (nrows == 0 || ncols == 0) return;

  // A row of importance weights repeated for each row: the search reads one weight per value. The
  // 32-value symmetric searches get the row's block weights computed here, once.
  const SymSearchW search_w = search ? sym_search_w(type) : nullptr;
  // Q8_0's search takes sixteen rows at a time (quantize_q8_0.cpp): F32 sources as they are, F16/BF16
  // widened sixteen rows at a time.
  const bool q8_0_search = search && type == GGMLType::Q8_0;
  const std::vector<float> wrow =
      search_w || q8_0_search ? row_block_weights(ncols, importance) : std::vector<float>();
  auto do_rows = [&](int64_t r0, int64_t r1) {
    if (q8_0_search) {
      uint8_t* dst = static_cast<uint8_t*>(y) + size_t(r0) * row_bytes;
      if (format == SourceFormat::kF32)
        return quantize_q8_0_search_rows(static_cast<const float*>(x) + r0 * ncols, r1 - r0, ncols, wrow.data(), dst);
      constexpr int64_t kRows = 16;
      std::vector<float> rows(size_t(kRows * ncols));
      for (int64_t r = r0; r < r1; r += kRows) {
        const int64_t m = std::min(kRows, r1 - r);
        for (int64_t k = 0; k < m; ++k) {
          float* buf = rows.data() + k * ncols;
          const float* src = source_row(format, x, r + k, ncols, buf);
          if (src != buf) std::memcpy(buf, src, size_t(ncols) * sizeof(float));
        }
        quantize_q8_0_search_rows(rows.data(), m, ncols, wrow.data(), static_cast<uint8_t*>(y) + size_t(r) * row_bytes);
      }
      return;
    }
    std::vector<float> row(format == SourceFormat::kF32 ? 0 : size_t(ncols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = source_row(format, x, r, ncols, row.data());
      void* dst = static_cast<uint8_t*>(y) + size_t(r) * row_bytes;
      if (search_w) {
        search_w(src, dst, ncols, wrow.data());
      } else if (search) {
        quantize_row_search(type, src, dst, ncols, importance);
      } else {
        t.from_float(src, dst, ncols);
      }
    }
  };

  int nth = n_threads > 0 ? n_threads : physical_core_count();
  const double work = double(nrows) * double(ncols);
  // tiny tensors: fewer threads (a thread costs tens of microseconds; 64 Ki values take about that to
  // round or to run Q8_0's search, an eighth of them to run the other searches)
  const double values_per_thread = search && !q8_0_search ? 8192.0 : 65536.0;
  nth = int(std::min<double>(nth, std::max(1.0, work / values_per_thread)));
  nth = int(std::min<int64_t>(nth, nrows));
  if (nth <= 1) {
    do_rows(0, nrows);
    return;
  }
  // Rows are handed out in chunks from a shared counter, about eight per thread (multiples of the 16
  // rows Q8_0's search takes at once), and the calling thread works too: a thread that the OS
  // leaves waiting (two tensors are quantized at once, on as many threads each as there are cores)
  // holds up only its current chunk, and one thread fewer is started per matrix. Rows are
  // independent, so the bytes do not depend on who did which chunk.
  const int64_t chunk = std::max<int64_t>(16, (nrows / (int64_t(nth) * 8) + 15) / 16 * 16);
  std::atomic<int64_t> next_row{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work_chunks = [&] {
    try {
      for (int64_t r0; (r0 = next_row.fetch_add(chunk)) < nrows;) do_rows(r0, std::min(nrows, r0 + chunk));
    } catch (...) {
      next_row = nrows;  // the others stop at their next chunk
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  for (int ith = 1; ith < nth; ++ith) {
    try {
      threads.emplace_back(work_chunks);
    } catch (const std::system_error&) {
      break;  // no more threads to be had: the ones running (and this one) do all the chunks
    }
  }
  work_chunks();
  for (auto& th : threads) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace edgellama
