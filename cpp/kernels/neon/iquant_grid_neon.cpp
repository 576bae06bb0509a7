// NEON (dotprod) kernels of the grid i-quants (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M): the
// shared loop (../iquant_grid_gemm.h: unpack a super-block once through edgellama/iquant_grid_blocks.h,
// use it for up to 16 tokens) with a 256-value dot product of SDOTs, one per 16-value group, each
// multiplied by its group scale 2 ls + 1 in int32: the scalar reference's integers exactly.
#include <arm_neon.h>

#include "../entry_points.h"
#include "../iquant_grid_gemm.h"

namespace edgellama {
namespace {

int32_t dot_grid_neon(const iq::GridBlock& u, const int8_t* a) {
  int32x4_t acc = vdupq_n_s32(0);
  for (int j = 0; j < 16; ++j) {
    const int32x4_t s = vdotq_s32(vdupq_n_s32(0), vld1q_s8(u.q + 16 * j), vld1q_s8(a + 16 * j));
    acc = vmlaq_n_s32(acc, s, 2 * int32_t(u.ls[j]) + 1);
  }
  return vaddvq_s32(acc);
}

}  // namespace

EL_GRID_GEMMS(neon, iq, dot_grid_neon)

}  // namespace edgellama
