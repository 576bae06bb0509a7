// AVX2 kernels of the grid i-quants (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M): the shared
// loop (../iquant_grid_gemm.h: unpack a super-block once through edgellama/iquant_grid_blocks.h, use it
// for up to 16 tokens) with a 256-value dot product in AVX2. The products go through maddubs
// (unsigned x signed) as |q| x (a * sign(q)); no pair sum saturates (|q| <= 62, |a| <= 127:
// 2 * 62 * 127 < 32767), the 16-value group scales 2 ls + 1 (<= 31) are applied by madd, and the
// int32 total is the scalar reference's exactly, so the results are the scalar kernel's bits.
// The avx512 set takes these entries (dispatch.cpp's merge_over).
#include <immintrin.h>

#include "../entry_points.h"
#include "../iquant_grid_gemm.h"

namespace edgellama {
namespace {

int32_t dot_grid_avx2(const iq::GridBlock& u, const int8_t* a) {
  __m256i acc = _mm256_setzero_si256();
  for (int c = 0; c < 8; ++c) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u.q + 32 * c));
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32 * c));
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(x, q));
    // int16 lanes 0..7 hold values 32c..32c+15 (group 2c), lanes 8..15 group 2c + 1
    const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(int16_t(2 * u.ls[2 * c + 1] + 1)),
                                        _mm_set1_epi16(int16_t(2 * u.ls[2 * c] + 1)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, sc));
  }
  const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  const __m128i s2 = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, _MM_SHUFFLE(2, 3, 0, 1))));
}

}  // namespace

EL_GRID_GEMMS(avx2, dot_grid_avx2)

}  // namespace edgellama
