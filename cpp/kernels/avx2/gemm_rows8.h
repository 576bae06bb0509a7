// AVX2 kernels computing 8 weight rows per vector (cpp/kernels/avx2/gemm_rows8_avx2.cpp); GemmFn
// signature (edgellama/kernels.h). Declared here, defined with AVX2 flags: call only through a
// KernelSet that dispatch handed out.
#pragma once
#include <cstddef>
#include <cstdint>

#include "rows8_isa.h"

namespace edgellama {
namespace EDGELLAMA_ROWS8_NS {

void gemm_q4_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys);
void gemm_q4_1(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys);
void gemm_q5_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys);
void gemm_q5_1(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys);

void gemm_q8_0(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys);
void gemm_q4_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys);
void gemm_q2_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys);
void gemm_q3_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys);
void gemm_q5_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys);
void gemm_q6_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys);

// The same products from weights packed at load (edgellama/packed_layout.h): w = the first group of
// 8 rows, ws = bytes of one row, nr a multiple of 8. Bit-identical to the functions above.
void gemm_q4_0_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys);
void gemm_q8_0_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys);
void gemm_q4_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys);
void gemm_q5_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys);
void gemm_q6_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys);
void gemm_q2_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys);
void gemm_q3_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys);
void gemm_q4_1_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys);
void gemm_q5_0_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys);
void gemm_q5_1_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
               float* y, size_t ys);

}  // namespace EDGELLAMA_ROWS8_NS
}  // namespace edgellama
