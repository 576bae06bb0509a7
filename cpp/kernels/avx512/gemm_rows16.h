// AVX-512 VNNI kernels computing 16 weight rows per vector (cpp/kernels/avx512/gemm_rows16_avx512.cpp);
// GemmFn signature (edgellama/kernels.h). Declared here, defined with AVX-512 flags: call only through
// the avx512 KernelSet that dispatch hands out.
#pragma once
#include <cstddef>
#include <cstdint>

namespace edgellama {
namespace avx512_rows16 {

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
void gemm_q6_k(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, float* y,
               size_t ys);
// Any token count, but meant for >= 4 (each call repacks the weights into a scratch).
void gemm_q4_k_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                       float* y, size_t ys);
void gemm_q2_k_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                       float* y, size_t ys);
void gemm_q3_k_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                       float* y, size_t ys);
void gemm_q5_k_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                       float* y, size_t ys);
void gemm_iq4_xs_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                         float* y, size_t ys);
// The same on packed groups (the set's gemm_packed_many): w = the first group, nr a multiple of
// kPackRows; same bits. IQ4_NL: the bits of the GGUF route (rows transcoded to Q8_0, gemm_q8_0).
void gemm_q4_0_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys);
void gemm_q4_1_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys);
void gemm_q5_0_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys);
void gemm_q5_1_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys);
void gemm_q8_0_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys);
void gemm_iq4_nl_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                                int64_t nt, float* y, size_t ys);
void gemm_q2_k_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys);
void gemm_q3_k_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys);
void gemm_q4_k_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys);
void gemm_q5_k_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys);
void gemm_q6_k_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                              int64_t nt, float* y, size_t ys);
void gemm_iq4_xs_packed_prefill(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as,
                                int64_t nt, float* y, size_t ys);

}  // namespace avx512_rows16
// Packed groups (packed_decode_avx512.cpp): VNNI decode, 1-8 tokens per pass (32-value blocks: two
// blocks per 512-bit vector); same bits as the GGUF-layout kernels.
namespace avx512_packed {
// Most tokens these kernels take (the avx512 set's packed_max_tokens): up to 32 tokens they run in
// passes of 8 (as fast as unpacking for the 16-row kernels at 32-128 tokens; 2048x2048, 1 thread,
// noisy), beyond that the set's 16-row kernels on unpacked groups (20-30% faster at 512 on K types).
constexpr int64_t kPackedMaxTokens = 32;
void gemm_q4_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys);
void gemm_q5_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys);
void gemm_q6_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys);
void gemm_q4_0_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys);
void gemm_q4_1_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys);
void gemm_q5_0_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys);
void gemm_q5_1_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys);
void gemm_q8_0_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys);
void gemm_iq4_nl_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                        float* y, size_t ys);
// Any token count (the avx512 set's IQ4_XS kernel in the file layout packs groups on the fly for it).
void gemm_iq4_xs_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                        float* y, size_t ys);
void gemm_q3_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys);
void gemm_q2_k_packed(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt,
                      float* y, size_t ys);
}  // namespace avx512_packed

}  // namespace edgellama
