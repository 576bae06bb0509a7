// Scalar reference kernels of the grid i-quants (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M)
// against block_q8_K activations: the shared loop (../iquant_grid_gemm.h) with a plain integer dot
// product. The AVX2 and NEON kernels compute the same integers and are tested against these.
#include "../entry_points.h"
#include "../iquant_grid_gemm.h"

namespace edgellama {
namespace {

int32_t dot_grid_scalar(const iq::GridBlock& u, const int8_t* a) {
  int32_t sum = 0;
  for (int j = 0; j < 16; ++j) {
    int32_t s = 0;
    for (int i = 16 * j; i < 16 * j + 16; ++i) s += int32_t(u.q[i]) * a[i];
    sum += (2 * int32_t(u.ls[j]) + 1) * s;
  }
  return sum;
}

}  // namespace

#define EL_GRID_FUSED(ns, type) nullptr  // no fused decode path
EL_GRID_GEMMS(scalar, iq, dot_grid_scalar)

}  // namespace edgellama
