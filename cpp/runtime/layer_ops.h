// Element-wise per-layer operations of the forward pass that vary by architecture (norms,
// activations, soft-capping, multipliers). Plain scalar C++: they are a small share of the time next
// to the matrix products; each is the same arithmetic on the exact and the fast path unless noted.
#pragma once
#include <cstdint>
#include <vector>

namespace edgellama {

// out[r] = x[r] / rms(x[r]) * w for n_rows rows of `width` values (rms in double). out may be x.
void rms_norm_rows(const float* x, int64_t n_rows, int64_t width, const std::vector<float>& w, double eps, float* out);

// g[i] = gelu_tanh(g[i]) * u[i]  (GeGLU; gelu_tanh(x) = x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))))
void gelu_tanh_mul(float* g, const float* u, int64_t n);

// x[i] = cap * tanh(x[i] / cap)
void softcap_inplace(float* x, int64_t n, float cap);

// x[i] += s * y[i]
void add_scaled(float* x, const float* y, int64_t n, float s);

// x[i] *= s
void scale_inplace(float* x, int64_t n, float s);

}  // namespace edgellama
