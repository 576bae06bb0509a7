// y = x · Wᵀ for a batch of tokens: x is [n_tokens][n_in] floats, W is a quantized [n_out][n_in]
// weight matrix, y is [n_tokens][n_out]. This is the one entry point the forward pass uses for
// every weight, whatever its type and whatever ISA the kernels behind it were built for.
#pragma once
#include <cstdint>
#include <vector>

#include "edgellama/kernels.h"
#include "edgellama/tensor.h"
#include "edgellama/thread_pool.h"

namespace edgellama {

// Exact: dequantize weight rows to float and accumulate in float (the reference path).
// Fast: quantize activations once per matmul to the weight type's activation format (shared by all
// threads) and run the active ISA's int8 / float kernels as a tiled GEMM. By WeightView::role: the
// logits projection (Output, or TokenEmbd when tied), the K/V projections (AttnK, AttnV) and FfnDown
// get a second, residual int8 pass of their activations (x ~ d1*q1 + d2*q2): their error is amplified
// downstream; the extra pass reuses the weights already unpacked in registers.
// EDGELLAMA_RESIDUAL=logits,kv,ffn_down,o,q,ffn_in or "none" picks the groups (measurements in matmul.cpp).
enum class MatmulPrecision { Exact, Fast };

// Per-context scratch sized once by reserve() (no allocation per token). If a call exceeds the
// reserved sizes the buffers grow (an allocation, correct but not free).
struct MatmulScratch {
  std::vector<float> dequant_rows;   // Exact: per thread one dequantized weight row
  std::vector<uint8_t> activations;  // Fast: activations in the kernels' input format
  std::vector<float> residual;       // Fast, logits: per thread one row of residual activations
  std::vector<float> tile_out;       // Fast, logits: per thread one task's (main, residual) outputs
  std::vector<uint8_t> unpacked;     // per thread a few packed weight rows back in the GGUF layout
  size_t unpacked_per_slot = 0;
  int64_t max_n_in = 0;
  int64_t max_tokens = 0;
  int n_threads = 0;
  void reserve(int n_threads, int64_t max_n_in, int64_t max_tokens);
};

// kernels = nullptr: the active (dispatched) set.
void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool,
            MatmulScratch& scratch, MatmulPrecision precision, const KernelSet* kernels = nullptr);

// Several weights applied to the same input x (Q/K/V, gate/up): the activations are quantized
// once and all the products run as one job. Each output equals what matmul() alone would produce.
struct MatmulOutput {
  const WeightView* w;
  float* y;
};
constexpr int kMaxSharedInput = 4;
void matmul_shared_input(const MatmulOutput* outs, int count, const float* x, int64_t n_tokens, ThreadPool& pool,
                         MatmulScratch& scratch, MatmulPrecision precision, const KernelSet* kernels = nullptr);

// Row r of w as floats, whatever its layout (token embeddings: get_rows).
void weight_row_to_float(const WeightView& w, int64_t r, float* out);

// Scalar float dot product with 8 partial sums (vectorizes on the baseline ISA and rounds the same
// way for every caller).
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace edgellama
