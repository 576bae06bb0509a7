// Quantization: float32 -> ggml blocks.
//
// Two families of quantizers per type:
//  * reference rounding (the `from_float` column of the type table). For Q4_0, Q4_1, Q5_0, Q5_1 and
//    Q8_0 it is bit-for-bit gguf-py's `gguf.quants.quantize` (and ggml's quantize_row_*_ref): same
//    float operations in the same order, compiled without FMA contraction. For the K-quants it is
//    the error-minimising search with uniform weights (ggml's K-quant reference is a search too).
//  * search: per (sub-)block scale/min search minimising the weighted squared error
//    sum_i w_i (x_i - deq_i)^2, with w_i = importance of the value's column (imatrix-style), or 1.
#pragma once
#include <cstdint>

#include "edgellama/quant_types.h"

namespace edgellama {

void quantize_row_f32_ref(const float* x, void* y, int64_t n);
void quantize_row_f16_ref(const float* x, void* y, int64_t n);
void quantize_row_bf16_ref(const float* x, void* y, int64_t n);
void quantize_row_q4_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q4_1_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_1_ref(const float* x, void* y, int64_t n);
void quantize_row_q8_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q8_1_ref(const float* x, void* y, int64_t n);
void quantize_row_q2_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q3_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q4_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q6_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q8_K_ref(const float* x, void* y, int64_t n);
// TQ1_0 / TQ2_0: bit-for-bit gguf.quants.quantize (quantize.cpp).
void quantize_row_tq1_0_ref(const float* x, void* y, int64_t n);
void quantize_row_tq2_0_ref(const float* x, void* y, int64_t n);
// MXFP4: ggml's quantize_row_mxfp4_ref (quantize.cpp; bit-for-bit gguf.quants for finite blocks).
void quantize_row_mxfp4_ref(const float* x, void* y, int64_t n);
// IQ4_NL / IQ4_XS (quantize_iq4.cpp): the scale search with uniform weights.
void quantize_row_iq4_nl_ref(const float* x, void* y, int64_t n);
void quantize_row_iq4_xs_ref(const float* x, void* y, int64_t n);
void quantize_iq4_nl_search(const float* x, void* y, int64_t n, const float* importance);
void quantize_iq4_xs_search(const float* x, void* y, int64_t n, const float* importance);
// Grid i-quants (quantize_iq_grid.cpp): the grid search; _ref = the search with importance 1.
void quantize_row_iq2_xxs_ref(const float* x, void* y, int64_t n);
void quantize_row_iq2_xs_ref(const float* x, void* y, int64_t n);
void quantize_row_iq2_s_ref(const float* x, void* y, int64_t n);
void quantize_row_iq3_xxs_ref(const float* x, void* y, int64_t n);
void quantize_row_iq3_s_ref(const float* x, void* y, int64_t n);
void quantize_row_iq1_s_ref(const float* x, void* y, int64_t n);
void quantize_row_iq1_m_ref(const float* x, void* y, int64_t n);
void quantize_iq2_xxs_search(const float* x, void* y, int64_t n, const float* importance);
void quantize_iq2_xs_search(const float* x, void* y, int64_t n, const float* importance);
void quantize_iq2_s_search(const float* x, void* y, int64_t n, const float* importance);
void quantize_iq3_xxs_search(const float* x, void* y, int64_t n, const float* importance);
void quantize_iq3_s_search(const float* x, void* y, int64_t n, const float* importance);
void quantize_iq1_s_search(const float* x, void* y, int64_t n, const float* importance);
void quantize_iq1_m_search(const float* x, void* y, int64_t n, const float* importance);

// Q8_0's search (quantize_q8_0.cpp): nrows rows of ncols values (row stride ncols) into nrows rows of
// Q8_0 blocks at y; wrow: the block weights of a row (detail::block_weights of each 32-value block,
// ncols floats), the same for every row.
void quantize_q8_0_search_rows(const float* x, int64_t nrows, int64_t ncols, const float* wrow, void* y);

// Error-minimising search for one row of n values (n a multiple of the block size). `importance`
// holds n non-negative weights (one per value) or is nullptr for uniform weights. Types without a
// search (F32/F16/BF16, Q8_1, Q8_K, TQ1_0, TQ2_0) use their reference rounding. Throws
// UnsupportedError for a type that cannot be quantized.
void quantize_row_search(GGMLType type, const float* x, void* y, int64_t n, const float* importance);

enum class QuantMethod {
  kAuto,       // legacy types: reference without importance, search with; K-quants: search
  kReference,  // reference rounding only (importance must be null)
  kSearch,     // search for every type
};

// Quantize a row-major nrows x ncols matrix into nrows rows of row_size(type, ncols) bytes each,
// spreading rows over n_threads threads (0 = physical cores). `importance` holds ncols weights
// (per column) or is nullptr. Throws ArgumentError / UnsupportedError on bad arguments.
void quantize_matrix(GGMLType type, const float* x, void* y, int64_t nrows, int64_t ncols,
                     const float* importance, QuantMethod method, int n_threads);

// The stored format of the matrix handed to quantize_matrix_from.
enum class SourceFormat { kF32, kF16, kBF16 };

// quantize_matrix for a matrix stored as F16 or BF16 (F32: the same as quantize_matrix): each thread
// widens one row at a time into its own buffer (exact: half and bfloat16 widen losslessly), so the
// output is identical to quantizing the matrix converted to float32 first, without a float32 copy of
// the whole matrix (memory, page zeroing) and with the conversion spread over the threads.
void quantize_matrix_from(GGMLType type, SourceFormat format, const void* x, void* y, int64_t nrows, int64_t ncols,
                          const float* importance, QuantMethod method, int n_threads);

namespace detail {
// Building blocks, exposed for the K-quant file and for tests.
// x ~= s * L, L in [lo, hi]; returns s (may be negative). L receives the levels (nullptr: a
// caller that re-chooses them for the stored scale, with levels_sym, skips that pass).
float search_sym(int n, const float* x, const float* w, int lo, int hi, int8_t* L);
// search_sym's scales (no levels) of two blocks of n values: the same two floats, computed with the
// two blocks' candidate passes interleaved where the CPU has AVX-512 (one block's pass alone is
// bound by the latency of its sums).
void search_sym2(int n, const float* x0, const float* w0, const float* x1, const float* w1, int lo, int hi, float* s0,
                 float* s1);
// x ~= s * L + m, L in [0, nmax], s >= 0; if min_le_zero, m <= 0. Returns s, *m receives m;
// L receives the levels (or nullptr, as for search_sym).
float search_asym(int n, const float* x, const float* w, int nmax, bool min_le_zero, uint8_t* L, float* m);
// Levels for fixed scale dl (x ~= dl * L), returns weighted error.
double finish_sym(int n, const float* x, const float* w, float dl, int lo, int hi, int8_t* L);
// Levels for fixed dl, ml (x ~= dl * L - ml), returns weighted error.
double finish_asym(int n, const float* x, const float* w, float dl, float ml, int nmax, uint8_t* L);
// The levels of finish_sym / finish_asym without their error pass.
void levels_sym(int n, const float* x, const float* w, float dl, int lo, int hi, int8_t* L);
void levels_asym(int n, const float* x, const float* w, float dl, float ml, int nmax, uint8_t* L);
// Weighted error of finish_sym / finish_asym without writing the levels.
double error_sym(int n, const float* x, const float* w, float dl, int lo, int hi);
double error_asym(int n, const float* x, const float* w, float dl, float ml, int nmax);
// error_sym / error_asym of nc candidate scales at once (out[c]: the single call's result for dl[c],
// ml[c], bit for bit; the AVX code evaluates four candidates per pass over the block).
void error_sym_many(int n, const float* x, const float* w, const float* dl, int nc, int lo, int hi, double* out);
void error_asym_many(int n, const float* x, const float* w, const float* dl, const float* ml, int nc, int nmax,
                     double* out);
// Per-block weights: importance (with a small floor) or ones.
void block_weights(int n, const float* importance, float* w);
inline int nearest_int(float v) {
  if (!(v == v)) return 0;
  if (v > 1e9f) return 1000000000;
  if (v < -1e9f) return -1000000000;
  return int(v >= 0 ? v + 0.5f : v - 0.5f);
}
inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }
}  // namespace detail

}  // namespace edgellama
