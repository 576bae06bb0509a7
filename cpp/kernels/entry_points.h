// Kernels that live in their own file (one concept per file) and are referenced from the KernelSet
// of their ISA. Plain non-inline functions with unique names: no ODR hazard between ISA files (see
// the header of cpp/kernels/avx2/kernels_avx2.cpp).
#pragma once
#include "edgellama/kernels.h"

namespace edgellama {

void scalar_attention_tile(const AttnTileArgs& a);
void scalar_silu_mul(float* g, const float* u, int64_t n);
// IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4 (GemmFn): scalar/iquant_scalar.cpp, avx2/iquant_avx2.cpp,
// neon/iquant_neon.cpp
#define EL_DECLARE_GEMM(name)                                                                            \
  void name(int64_t n, const uint8_t* w, size_t ws, int64_t nr, const uint8_t* a, size_t as, int64_t nt, \
            float* y, size_t ys)
EL_DECLARE_GEMM(scalar_gemm_iq4_nl);
EL_DECLARE_GEMM(scalar_gemm_iq4_xs);
EL_DECLARE_GEMM(scalar_gemm_tq1_0);
EL_DECLARE_GEMM(scalar_gemm_tq2_0);
EL_DECLARE_GEMM(scalar_gemm_mxfp4);
// The grid i-quants: */iquant_grid_*.cpp (one loop, ../iquant_grid_gemm.h)
#define EL_DECLARE_GRID_GEMMS(prefix) \
  EL_DECLARE_GEMM(prefix##_gemm_iq2_xxs); \
  EL_DECLARE_GEMM(prefix##_gemm_iq2_xs); \
  EL_DECLARE_GEMM(prefix##_gemm_iq2_s); \
  EL_DECLARE_GEMM(prefix##_gemm_iq3_xxs); \
  EL_DECLARE_GEMM(prefix##_gemm_iq3_s); \
  EL_DECLARE_GEMM(prefix##_gemm_iq1_s); \
  EL_DECLARE_GEMM(prefix##_gemm_iq1_m);
EL_DECLARE_GRID_GEMMS(scalar)
#if defined(EDGELLAMA_X86)
EL_DECLARE_GEMM(avx2_gemm_iq4_nl);
EL_DECLARE_GEMM(avx2_gemm_iq4_xs);
EL_DECLARE_GEMM(avx2_gemm_tq1_0);
EL_DECLARE_GEMM(avx2_gemm_tq2_0);
EL_DECLARE_GEMM(avx2_gemm_mxfp4);
EL_DECLARE_GEMM(avx512_gemm_iq4_nl);
EL_DECLARE_GEMM(avx512_gemm_iq4_xs);
EL_DECLARE_GRID_GEMMS(avx2)
// IQ4_NL with a given Q8_0 prefill kernel (one that follows gemm_rows8_ref's Q8_0 sequence)
void avx2_gemm_iq4_nl_via(GemmFn q8_0_prefill, int64_t n, const uint8_t* w, size_t ws, int64_t nr,
                          const uint8_t* a, size_t as, int64_t nt, float* y, size_t ys);
#endif
#if defined(EDGELLAMA_ARM64)
EL_DECLARE_GEMM(neon_gemm_iq4_nl);
EL_DECLARE_GEMM(neon_gemm_iq4_xs);
EL_DECLARE_GEMM(neon_gemm_tq1_0);
EL_DECLARE_GEMM(neon_gemm_tq2_0);
EL_DECLARE_GEMM(neon_gemm_mxfp4);
EL_DECLARE_GRID_GEMMS(neon)
#endif
#undef EL_DECLARE_GRID_GEMMS
#undef EL_DECLARE_GEMM
#if defined(EDGELLAMA_X86)
void avx2_attention_tile(const AttnTileArgs& a);
void avx2_silu_mul(float* g, const float* u, int64_t n);
void avx512_attention_tile(const AttnTileArgs& a);
#endif

}  // namespace edgellama
