// Kernels that live in their own file (one concept per file) and are referenced from the KernelSet
// of their ISA. Plain non-inline functions with unique names: no ODR hazard between ISA files (see
// the header of cpp/kernels/avx2/kernels_avx2.cpp).
#pragma once
#include "edgellama/kernels.h"

namespace edgellama {

void scalar_attention_tile(const AttnTileArgs& a);
void scalar_silu_mul(float* g, const float* u, int64_t n);
#if defined(EDGELLAMA_X86)
void avx2_attention_tile(const AttnTileArgs& a);
void avx2_silu_mul(float* g, const float* u, int64_t n);
#endif

}  // namespace edgellama
