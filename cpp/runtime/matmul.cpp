#include "edgellama/matmul.h"

#include <algorithm>

namespace edgellama {

void MatmulScratch::reserve(int n_threads, int64_t n_in, int64_t max_tokens) {
  max_n_in = n_in;
  dequant_rows.assign(size_t(n_threads) * size_t(n_in), 0.0f);
  (void)max_tokens;
}

float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  }
  for (; i < n; ++i) acc[i % 8] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// Rows are split across threads; each thread dequantizes one weight row at a time into its own
// scratch and reuses it for every token in the batch, so prompt processing reads each weight once.
void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool,
            MatmulScratch& scratch, MatmulPrecision precision) {
  (void)precision;
  const int64_t n_in = w.n_in(), n_out = w.n_out();
  pool.run([&](int ith, int nth) {
    int64_t r0, r1;
    split_range(n_out, ith, nth, &r0, &r1);
    float* row = scratch.dequant_rows.data() + size_t(ith) * size_t(scratch.max_n_in);
    for (int64_t r = r0; r < r1; ++r) {
      w.traits->to_float(w.row(r), row, n_in);
      for (int64_t t = 0; t < n_tokens; ++t) y[t * n_out + r] = dot_f32(row, x + t * n_in, n_in);
    }
  });
}

}  // namespace edgellama
