// Scalar SwiGLU gate (SiluMulFn in kernels.h): the same expression the exact forward pass uses, so
// the scalar fast path keeps its bits.
#include <cmath>

#include "../entry_points.h"

namespace edgellama {

void scalar_silu_mul(float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

}  // namespace edgellama
