// y = x · Wᵀ for a batch of tokens: x is [n_tokens][n_in] floats, W is a quantized [n_out][n_in]
// weight matrix, y is [n_tokens][n_out]. This is the one entry point the forward pass uses for
// every weight, whatever its type and whatever ISA the kernels behind it were built for.
#pragma once
#include <cstdint>
#include <vector>

#include "edgellama/tensor.h"
#include "edgellama/thread_pool.h"

namespace edgellama {

// Exact: dequantize weight rows to float and accumulate in float (the reference path).
// Fast: quantize activations once to the weight type's activation format and use int8 kernels
// (filled in by the SIMD work; until then it is the same as Exact).
enum class MatmulPrecision { Exact, Fast };

// Per-context scratch sized once (no allocation per token).
struct MatmulScratch {
  std::vector<float> dequant_rows;  // per thread: one dequantized weight row
  std::vector<uint8_t> activations; // activations converted to the kernels' input format
  void reserve(int n_threads, int64_t max_n_in, int64_t max_tokens);
  int64_t max_n_in = 0;
};

void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool,
            MatmulScratch& scratch, MatmulPrecision precision);

// Scalar float dot product with 8 partial sums (vectorizes on the baseline ISA and rounds the same
// way for every caller).
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace edgellama
