// AVX2 SwiGLU gate (SiluMulFn in kernels.h): g / (1 + e^-g) * u with the polynomial exp of
// exp_avx2.h (max rel err 1.19e-7; the clamp at -87/88 only matters where silu is ~0 or ~g, and
// 1 + e^88 is still finite). The tail goes through the same vector code on a padded copy, so every
// element is computed the same way wherever it sits.
#include <immintrin.h>

#include "../entry_points.h"
#include "exp_avx2.h"

namespace edgellama {
namespace {

inline __m256 silu_mul8(__m256 g, __m256 u) {
  const __m256 e = avx2_math::exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

}  // namespace

void avx2_silu_mul(float* g, const float* u, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(g + i, silu_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
  if (i < n) {
    float tg[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tu[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t j = i; j < n; ++j) {
      tg[j - i] = g[j];
      tu[j - i] = u[j];
    }
    _mm256_storeu_ps(tg, silu_mul8(_mm256_loadu_ps(tg), _mm256_loadu_ps(tu)));
    for (int64_t j = i; j < n; ++j) g[j] = tg[j - i];
  }
}

}  // namespace edgellama
