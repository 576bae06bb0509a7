// Scalar reference of the arithmetic sequence of the AVX2 rows8 kernels (gemm_rows8_avx2.cpp), for
// bit-exact tests: per (row, token), acc = 0; per block b: acc = fma(float(isum_b), dw_b * da_b, acc);
// acc = fma(cw_b, sa_b, acc). Supports Q4_0 / Q4_1 / Q8_0 (ActQ8x32 activations;
// Q8_0 has no offset term) and Q4_K / Q5_K (block_q8_K,
// per super-block: acc = fma(float(isum), d*da, acc); acc = fma(-float(msum), dmin*da, acc)) and Q6_K (the same with
// dmin = d, mn = 32 sc: the AVX-512 rows16 kernel's sequence); GemmFn signature.
#pragma once
#include <cstddef>
#include <cstdint>

#include "edgellama/quant_types.h"

namespace edgellama {

// nullptr if `type` has no rows8 reference.
using GemmRefFn = void (*)(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                           int64_t nt, float* y, size_t ys);
GemmRefFn gemm_rows8_ref(GGMLType type);

}  // namespace edgellama
