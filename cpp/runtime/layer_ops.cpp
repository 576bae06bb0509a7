#include "layer_ops.h"

#include <cmath>

namespace edgellama {

void rms_norm_rows(const float* x, int64_t n_rows, int64_t width, const std::vector<float>& w, double eps, float* out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * width;
    float* o = out + r * width;
    double ss = 0.0;
    for (int64_t i = 0; i < width; ++i) ss += double(xr[i]) * double(xr[i]);
    const float scale = float(1.0 / std::sqrt(ss / double(width) + eps));
    for (int64_t i = 0; i < width; ++i) o[i] = (xr[i] * scale) * w[size_t(i)];
  }
}

void gelu_tanh_mul(float* g, const float* u, int64_t n) {
  const float k = 0.7978845608028654f;  // sqrt(2/pi)
  for (int64_t i = 0; i < n; ++i) {
    const float x = g[i];
    g[i] = 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x))) * u[i];
  }
}

void softcap_inplace(float* x, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
}

void add_scaled(float* x, const float* y, int64_t n, float s) {
  if (s == 1.0f) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
  } else {
    for (int64_t i = 0; i < n; ++i) x[i] += s * y[i];
  }
}

void scale_inplace(float* x, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

}  // namespace edgellama
