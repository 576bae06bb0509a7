// Vectorized e^x for the AVX2 fast-path kernels (softmax, SiLU). Only included by files in
// cpp/kernels/avx2/; static inline = internal linkage, so no AVX2 copy can leak to baseline code.
//
// x = n*ln2 + r with n = round(x / ln2), |r| <= ln2/2 (two-constant Cody-Waite reduction), e^r by a
// degree-7 polynomial (Cephes expf coefficients), 2^n built in the exponent field; the constants
// are ../exp_poly.h's. Inputs are clamped to [-87, 88] so 2^n stays a normal float: e^x for x < -87
// comes out ~1.6e-38 instead of 0 or a subnormal, and x > 88 saturates at ~1.65e38 (finite). Measured max relative error against
// float64 exp, every float in [-87, 88]: 1.19e-7 (2^-23, about 1 ulp).
#pragma once
#include <immintrin.h>

#include "../exp_poly.h"

namespace edgellama {
namespace avx2_math {

static inline __m256 exp_ps(__m256 x) {
  using namespace exp_poly;
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kMinArg)), _mm256_set1_ps(kMaxArg));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP[0]);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP[1]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP[2]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP[3]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP[4]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP[5]));
  const __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

}  // namespace avx2_math
}  // namespace edgellama
